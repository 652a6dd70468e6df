"""
The forecast's report: the table of ``forecast.md`` and the figure ``forecast.png``.

One row per (series, neuron, library, method), medians over the seeds of a
``forecast.run``; see docs/forecast.md for a full run. ROS-free (matplotlib
only for the figure).
"""
from __future__ import annotations

import numpy as np

from .forecast import LAYOUT, VALID_ERROR


def _cell(summary: list[dict], **key) -> dict | None:
    found = [s for s in summary if all(s[k] == v for k, v in key.items())]
    return found[0] if found else None


def headline(result: dict) -> str:
    """Summarise Mackey-Glass one step: online vs offline, and against reservoirpy."""
    summary = result['summary']
    ours = {m: _cell(summary, series='mackey_glass', neuron='esn', library='lnn_control',
                     method=m) for m in ('ridge', 'rls')}
    if ours['ridge'] is None or ours['rls'] is None:
        return ''
    lines = [f"Mackey-Glass one step at N={result['size']} (esn, median of "
             f"{len(result['seeds'])} seeds): online RLS {ours['rls']['nrmse']:.3g}, offline "
             f"ridge {ours['ridge']['nrmse']:.3g} (RLS / ridge "
             f"{ours['rls']['nrmse'] / ours['ridge']['nrmse']:.2f})"]
    rpy = _cell(summary, series='mackey_glass', library='reservoirpy', method='rls')
    rpy_ridge = _cell(summary, series='mackey_glass', library='reservoirpy', method='ridge')
    if rpy is not None and rpy_ridge is not None:
        lines.append(f"reservoirpy {result['reservoirpy']} in the same run: RLS "
                     f"{rpy['nrmse']:.3g}, ridge {rpy_ridge['nrmse']:.3g} (lnn_control RLS / "
                     f"reservoirpy RLS {ours['rls']['nrmse'] / rpy['nrmse']:.2f})")
    return '; '.join(lines) + '.\n'


def markdown_table(result: dict) -> str:
    head = ('| series | neuron | library | method | one-step NRMSE (median) | worst seed | '
            'free-running valid steps (median) |\n|---|---|---|---|---|---|---|\n')
    body = ''.join(
        f"| {s['series']} | {s['neuron']} | {s['library']} | {s['method']} | "
        f"{s['nrmse']:.3g} | {s['nrmse_worst']:.3g} | {s['valid_steps']:g} |\n"
        for s in result['summary'])
    layout = ', '.join(f"{k}: washout {v['washout']}, train {v['train']}, test {v['test']}"
                       for k, v in result['layout'].items())
    seeds = ', '.join(map(str, result['seeds']))
    rpy = result['reservoirpy'] or 'not installed'
    if result['reservoirpy'] and not result.get('reservoirpy_compared', True):
        rpy += ' (not compared: --no-reservoirpy)'
    foot = (f"\nN={result['size']}, seeds {seeds}; samples ({layout}); valid steps: until "
            f'the free-running error first exceeds {VALID_ERROR:g} standard deviations (at '
            f'most the test length); reservoirpy: {rpy}.\n')
    return headline(result) + '\n' + head + body + foot


def figure(traces: dict, path: str, title: str = '') -> None:
    """Per series: one-step error of each neuron model's RLS; free-running esn vs truth."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    names = [n for n in LAYOUT if any(k[0] == n for k in traces)]
    fig, axes = plt.subplots(len(names), 2, figsize=(13, 3.6 * len(names)), squeeze=False)
    for row, name in zip(axes, names):
        for (series, neuron, method), (target, one_step, _, _) in traces.items():
            if series == name and method == 'rls':
                row[0].semilogy(np.abs(one_step - target) + 1e-12, lw=0.7, label=neuron)
        row[0].set_title(f'{name}: one-step |error| (online RLS)')
        row[0].set_xlabel('test step')
        row[0].legend(fontsize=8)
        truth = next(v[2] for k, v in traces.items() if k[0] == name)
        row[1].plot(truth, 'k', lw=1.2, label='truth')
        for method in ('ridge', 'rls', 'rls_control_defaults'):
            if (name, 'esn', method) in traces:
                row[1].plot(traces[(name, 'esn', method)][3], lw=0.8, label=f'esn {method}')
        row[1].set_ylim(-3, 3)
        row[1].set_title(f'{name}: free-running from the end of training')
        row[1].set_xlabel('step')
        row[1].legend(fontsize=8, loc='lower left')
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

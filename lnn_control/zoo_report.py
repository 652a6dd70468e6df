"""
The zoo's report: the tables of ``zoo.md`` and the ratio figure ``zoo.png``.

One row per run of ``zoo.run_member``; see docs/zoo.md for a full run. ROS-free
(matplotlib only for the figure).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .zoo import CHANGE_AT_S, DURATION_S


def markdown_table(rows: list[dict[str, Any]]) -> str:
    head = ('| plant | variant | seed | change | PD RMS | adaptive RMS | ratio | after change | '
            'recovery ratio | recovery ratio of perfect re-adaptation | readaptation ratio | '
            'recovery time [s] | readaptation time [s] | detected after [s] | '
            'worst 10 s window / PD | supervisor interventions |\n'
            '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n')
    body = ''.join(
        f"| {r['plant']} | {r['variant']} | {r['seed']} | {r['change']} | "
        f"{r['rms_pd']:.4f} | {r['rms_adaptive']:.4f} | {r['ratio']:.3f} | "
        f"{r['ratio_after_change']:.3f} | {r['recovery_ratio']:.2f} | "
        f"{r['recovery_ratio_floor']:.2f} | {r['readaptation_ratio']:.2f} | "
        f"{r['recovery_time_s']:.1f} | "
        f"{r['readaptation_time_s']:.1f} | "
        f"{_detected(r)} | {r['worst_window_ratio']:.2f} | {r['interventions']} |\n"
        for r in rows)
    col = {k: np.array([r[k] for r in rows]) for k in
           ('ratio', 'ratio_after_change', 'recovery_ratio', 'readaptation_ratio',
            'recovery_time_s', 'readaptation_time_s')}
    foot = (f"\nratio: median {np.median(col['ratio']):.3f}, worst {col['ratio'].max():.3f}; "
            f"after change: median {np.median(col['ratio_after_change']):.3f}, "
            f"worst {col['ratio_after_change'].max():.3f}; recovery ratio: median "
            f"{np.median(col['recovery_ratio']):.2f}, worst {col['recovery_ratio'].max():.2f}; "
            f"readaptation ratio: median {np.median(col['readaptation_ratio']):.2f}, worst "
            f"{col['readaptation_ratio'].max():.2f}; "
            f"recovery time: median {np.median(col['recovery_time_s']):.1f} s, worst "
            f"{col['recovery_time_s'].max():.1f} s; readaptation time: median "
            f"{np.median(col['readaptation_time_s']):.1f} s, worst "
            f"{col['readaptation_time_s'].max():.1f} s ({len(rows)} runs, {DURATION_S:g} s, "
            f'plant change at {CHANGE_AT_S:g} s; RMS over the 10 s before the change and '
            f'5-10 s after it; recovery time: until the rolling 2 s RMS stays within 1.5x '
            f'the pre-change RMS; readaptation: against the controller that learned the '
            f'changed plant from the start, over the same part of the reference).\n')
    return head + body + foot + pd_loop_notes(rows)


def pd_loop_notes(rows: list[dict[str, Any]]) -> str:
    """List the runs whose honest PD loop ``lnn-control gains`` flags (``zoo.pd_loop_check``)."""
    flagged = {}
    for r in rows:
        for note in r.get('pd_loop_check') or ():
            flagged.setdefault((r['plant'], note), []).append(r['variant'])
    if not flagged:
        return ''
    lines = ''.join(f"- {plant} ({', '.join(dict.fromkeys(variants))}): {note}\n"
                    for (plant, note), variants in flagged.items())
    return ('\nHonest PD loops that `lnn-control gains` flags: they can chatter or cycle '
            'whatever is learned (a feedforward does not stabilise the feedback loop), and '
            'where they do the supervisor holds the run near PD alone:\n' + lines)


def summary_table(rows: list[dict[str, Any]]) -> str:
    """Median / worst of each figure per plant change and variant."""
    keys = ('ratio', 'ratio_after_change', 'recovery_ratio', 'recovery_ratio_floor',
            'readaptation_ratio', 'recovery_time_s', 'readaptation_time_s',
            'worst_window_ratio')
    out = ['| change | variant | runs | ratio | after change | recovery ratio | '
           'recovery ratio of perfect re-adaptation | readaptation ratio | recovery time [s] | '
           'readaptation time [s] | worst window | detected within 5 s | false detections | '
           'interventions |',
           '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|']
    groups: dict[tuple[str, str], list] = {}
    for r in rows:
        groups.setdefault((r['change'], r['variant']), []).append(r)
    for (change, variant), sel in groups.items():
        cells = []
        for k in keys:
            v = np.array([r[k] for r in sel])
            cells.append(f'{np.median(v):.3g} / {v.max():.3g}' if k != 'worst_window_ratio'
                         else f'{v.max():.2f}')
        detected = sum(r['detection_delay_s'] is not None for r in sel)
        out.append(f"| {change} | {variant} | {len(sel)} | {' | '.join(cells)} | "
                   f"{detected} / {len(sel)} | {sum(r['false_detections'] for r in sel)} | "
                   f"{sum(r['interventions'] for r in sel)} |")
    return '\n'.join(out) + ('\n\n(median / worst over the runs; worst window: the largest; '
                             "'detected within 5 s': runs whose change the detector flagged "
                             "within 5 s of it; 'false detections': flags before the change.)\n")


def _detected(row: dict[str, Any]) -> str:
    """
    Describe the first detection within DETECTION_WINDOW_S of the change and any before it.

    Detections before the change are false alarms.
    """
    delay = row['detection_delay_s']
    text = 'not within 5 s' if delay is None else f'{delay:.2f}'
    if row['false_detections']:
        text += f" ({row['false_detections']} before the change)"
    return text


def figure(rows: list[dict[str, Any]], path: str) -> None:
    """Ratios per plant on a log scale, one marker per variant."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    def group(r):
        return r['variant'] if r['change'] == 'payload_x2' else f"{r['variant']}, {r['change']}"

    plants = list(dict.fromkeys(r['plant'] for r in rows))

    variants = list(dict.fromkeys(group(r) for r in rows))
    fig, ax = plt.subplots(figsize=(12, 5))
    x = {p: i for i, p in enumerate(plants)}
    for k, v in enumerate(variants):
        off = (k - (len(variants) - 1) / 2) * 0.2
        sel = [r for r in rows if group(r) == v]
        ax.semilogy([x[r['plant']] + off for r in sel], [r['ratio'] for r in sel], 'o',
                    label=f'{v}: ratio')
        ax.semilogy([x[r['plant']] + off for r in sel],
                    [r['ratio_after_change'] for r in sel], 'x', label=f'{v}: after change')
    ax.axhline(1.0, color='k', lw=1, ls='--', label='PD only')
    ax.set_xticks(range(len(plants)), plants, rotation=30, ha='right', fontsize=8)
    ax.set_ylabel('adaptive RMS / PD-only RMS')
    ax.grid(True, which='both', alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title('plant zoo, default learning settings')
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

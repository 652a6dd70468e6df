"""The tracking figure: reference vs measured, error, command, learning signal."""
from __future__ import annotations

from typing import Sequence

import numpy as np


def tracking_figure(traces: Sequence, path: str, title: str = '',
                    payload_change_at: float | None = None,
                    joint_names: Sequence[str] = (),
                    recovery_time_s: float | None = None) -> None:
    """
    Write a PNG comparing runs (each with t, q_d, q, command, learning_error).

    The plant change, the adaptive run's recovery time, supervisor interventions and
    detected plant changes are marked.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    predicting = [tr for tr in traces if tr.prediction is not None]
    wide = traces[0].q.shape[1] > 3        # legends beside the panels (below)
    fig, axes = plt.subplots(4 + bool(predicting), 1,
                             figsize=(14 if wide else 11, 11 + 2.5 * bool(predicting)),
                             sharex=True)
    colors = ('tab:red', 'tab:blue', 'tab:green', 'tab:purple')
    n_joints = traces[0].q.shape[1]
    names = list(joint_names) or [f'joint {j + 1}' for j in range(n_joints)]
    styles = ('-', ':', '-.', (0, (5, 1)))      # one per joint (then repeating)
    for j in range(n_joints):                  # every joint: an arm's elbow was not shown
        axes[0].plot(traces[0].t, traces[0].q_d[:, j], color='k', ls='--', lw=1.2 - 0.3 * (j > 0),
                     label=f'reference ({names[j]})')
    for tr, color in zip(traces, colors):
        for j in range(n_joints):
            axes[0].plot(tr.t, tr.q[:, j], color=color, lw=0.9, ls=styles[j % len(styles)],
                         label=f'{tr.label} ({names[j]})')
        err = np.sqrt(np.mean((tr.q_d - tr.q) ** 2, axis=1))
        axes[1].semilogy(tr.t, np.maximum(err, 1e-7), color=color, lw=0.7, label=tr.label)
        for j in range(n_joints):
            axes[2].plot(tr.t, tr.command[:, j], color=color, lw=0.7,
                         ls=styles[j % len(styles)], label=f'{tr.label} ({names[j]})')
        axes[3].semilogy(tr.t, np.maximum(tr.learning_error, 1e-7), color=color, lw=0.7,
                         label=tr.label)
    axes[0].set_ylabel('position')
    axes[1].set_ylabel('|tracking error| (RMS over joints)')
    axes[2].set_ylabel('command (effort)')
    axes[3].set_ylabel('|PD output| = learning error')
    axes[-1].set_xlabel('time [s]')
    if predicting:
        _prediction_panel(axes[4], predicting[-1], names[0])
    events = [e for tr in traces for e in tr.meta.get('interventions', ())]
    marks = {'rollback': 'tab:orange', 'pd_only': 'tab:red', 'pd_eased': 'tab:purple',
             'pd_detuned': 'tab:brown', 'pd_restored': 'tab:olive', 'gain_restored': 'tab:cyan',
             'resume': 'tab:green'}
    detections = [t for tr in traces for t in tr.meta.get('change_detections', ())]
    anomalies = [t for tr in traces for t in tr.meta.get('anomalies', ())]
    for ax in axes:
        if payload_change_at is not None:
            ax.axvline(payload_change_at, color='gray', ls='--', lw=1)
        for t_event, action, _ in events:
            ax.axvline(t_event, color=marks.get(action, 'k'), ls=':', lw=1.2)
        for t_event in detections:
            ax.axvline(t_event, color='tab:cyan', ls='-.', lw=1.0)
        for t_event in anomalies:
            ax.axvline(t_event, color='tab:pink', ls='-.', lw=1.0)
        ax.grid(True, alpha=0.3)
        if wide:      # a line per joint and arm: beside the panel, not over it
            entries = len(ax.get_legend_handles_labels()[0])
            ax.legend(loc='upper left', bbox_to_anchor=(1.01, 1.0), fontsize=6,
                      borderaxespad=0.0, ncol=max(1, -(-entries // 8)))
        else:
            ax.legend(loc='upper right', fontsize=8)
    if payload_change_at is not None:
        axes[0].annotate('payload x2', (payload_change_at, axes[0].get_ylim()[1]),
                         fontsize=8, color='gray', va='top')
    if payload_change_at is not None and recovery_time_s is not None:
        end = payload_change_at + recovery_time_s
        settled = end < traces[0].t[-1]
        axes[1].axvspan(payload_change_at, end, color='gold', alpha=0.25, lw=0)
        axes[1].annotate(f'recovery time {recovery_time_s:.1f} s' if settled else
                         'not back within 1.5x its pre-change error by the end',
                         (payload_change_at, axes[1].get_ylim()[0]), xytext=(4, 4),
                         textcoords='offset points', fontsize=8, color='darkgoldenrod',
                         va='bottom')
    for t_event, action, _ in events:
        axes[1].annotate(f'supervisor: {action}', (t_event, axes[1].get_ylim()[1]),
                         fontsize=7, color=marks.get(action, 'k'), va='top', rotation=90)
    for t_event in detections:
        axes[1].annotate('change detected', (t_event, axes[1].get_ylim()[1]), xytext=(3, 0),
                         textcoords='offset points', fontsize=7, color='tab:cyan', va='top',
                         rotation=90)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches='tight' if wide else None)
    plt.close(fig)


def _prediction_panel(ax, trace, joint: str) -> None:
    """One-step prediction error of the first joint's velocity, and the anomaly score."""
    h = trace.meta['horizons'][0]
    err = np.full(len(trace.t), np.nan)
    if trace.qd is not None and len(trace.t) > h:
        n = trace.q.shape[1]
        err[h:] = np.abs(trace.prediction[:-h, 0, n] - trace.qd[h:, 0])
    ax.semilogy(trace.t, np.maximum(err, 1e-7), color='tab:gray', lw=0.6,
                label=f'|velocity prediction error| ({joint}, {h} tick ahead)')
    ax.set_ylabel('prediction error [rad/s or m/s]')
    if trace.anomaly_score is not None:
        twin = ax.twinx()
        twin.plot(trace.t, trace.anomaly_score, color='tab:pink', lw=0.8,
                  label='anomaly score (1: flagged)')
        twin.set_ylabel('anomaly score')
        twin.legend(loc='upper left', fontsize=8)

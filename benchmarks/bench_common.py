"""
What the ROS benchmarks share: statistics of a series of event times, and a timed spin.

Imported by ``bench_loop.py`` and ``bench_fleet.py`` from their own directory (a script's
directory is first on ``sys.path``).
"""
from __future__ import annotations

import time

import numpy as np


def interval_stats(t_ns, period_s, over=(), min_intervals=1):
    """
    Return count, rate, p50 / p99 / max [ms] and p99 in periods of the intervals of ``t_ns``.

    ``over``: (name, k) pairs, each adding the fraction of intervals longer than k periods.
    With fewer than ``min_intervals`` intervals only the count is returned.
    """
    iv = np.diff(np.asarray(t_ns, dtype=np.int64)) * 1e-6      # ms
    if iv.size == 0 or iv.size < min_intervals:
        return {'n': int(iv.size)}
    period_ms = period_s * 1e3
    p99 = float(np.percentile(iv, 99))
    stats = {'n': int(iv.size), 'rate_hz': float(iv.size / (iv.sum() * 1e-3)),
             'p50_ms': float(np.percentile(iv, 50)), 'p99_ms': p99,
             'max_ms': float(iv.max()), 'p99_rel': p99 / period_ms}
    stats.update((name, float(np.mean(iv > k * period_ms))) for name, k in over)
    return stats


def spin_for(executor, seconds, until=None, timeout_s=0.02):
    """Spin ``executor`` for ``seconds``, or until ``until()`` holds; return ``until()``."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        executor.spin_once(timeout_sec=timeout_s)
        if until is not None and until():
            return True
    return until is not None and until()

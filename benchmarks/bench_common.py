"""
What the benchmarks share: statistics of event times, a timed spin, timed calls.

Imported by ``bench_loop.py``, ``bench_fleet.py`` and ``bench_tick.py`` from their own
directory (a script's directory is first on ``sys.path``).
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


def time_calls(owner, name: str, record, clock=time.perf_counter_ns) -> None:
    """
    Replace ``owner.name`` with a wrapper that passes each call's duration to ``record``.

    In ``clock``'s nanoseconds (``time.thread_time_ns``: the calling thread's CPU time).
    The wrapper's own two clock reads count against the call.
    """
    call = getattr(owner, name)

    def wrapper(*args):
        t0 = clock()
        out = call(*args)
        record(clock() - t0)
        return out
    setattr(owner, name, wrapper)

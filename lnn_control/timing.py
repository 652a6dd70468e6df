"""
Wall-clock timing of control ticks (ROS-free).

What the node reports on /diagnostics and the loop benchmark reads.
"""
from __future__ import annotations

import numpy as np


class TickStats:
    """
    Ring buffers of per-tick timings (wall clock), read by diagnostics and benchmarks.

    Preallocated so recording costs no allocation on the control path.
    """

    def __init__(self, capacity: int):
        self.capacity = int(capacity)
        self.starts_ns = np.zeros(self.capacity, dtype=np.int64)    # timer callback entry
        self.compute_ns = np.zeros(self.capacity, dtype=np.int64)   # entry -> tick done
        self.command_ns = np.zeros(self.capacity, dtype=np.int64)   # entry -> command published
        # sensor arrival -> command published
        self.latency_ns = np.zeros(self.capacity, dtype=np.int64)
        # header stamp of the joint_states the tick used (whatever clock the sensor
        # stamps with: on the monotonic clock, entry + command - stamp is the whole
        # sensor-to-command latency)
        self.sensor_stamp_ns = np.zeros(self.capacity, dtype=np.int64)
        self.count = 0          # ticks recorded (timer callbacks that published)
        self.callbacks = 0      # every timer callback, including before the first sensor data
        self.overruns = 0       # ticks whose compute time exceeded the control period

    def record(self, start_ns: int, command_ns: int, end_ns: int, sensor_arrival_ns: int,
               sensor_stamp_ns: int, period_ns: int) -> None:
        """Record one tick: entered, command published, done (the learning after the command)."""
        i = self.count % self.capacity
        self.starts_ns[i] = start_ns
        self.compute_ns[i] = end_ns - start_ns
        self.command_ns[i] = command_ns - start_ns
        self.latency_ns[i] = command_ns - sensor_arrival_ns
        self.sensor_stamp_ns[i] = sensor_stamp_ns
        if end_ns - start_ns > period_ns:
            self.overruns += 1
        self.count += 1

    def compute_ms(self, k: int, series: str = 'compute') -> tuple[float, float, float]:
        """Return p50, p99 and max [ms] of the latest ``k`` ``compute_ns`` or ``command_ns``."""
        values = self.last(getattr(self, f'{series}_ns'), k) * 1e-6
        if not values.size:
            return float('nan'), float('nan'), float('nan')
        return np.percentile(values, 50), np.percentile(values, 99), values.max()

    def last(self, series: np.ndarray, k: int) -> np.ndarray:
        """Return the latest ``k`` (at most ``capacity``) entries of a series, oldest first."""
        k = min(k, self.count, self.capacity)
        end = self.count % self.capacity
        if k <= end:
            return series[end - k:end].copy()
        return np.concatenate((series[self.capacity - (k - end):], series[:end]))

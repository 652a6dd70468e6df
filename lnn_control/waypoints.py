"""
A trajectory of timed waypoints, as a planner sends it (JointTrajectory), sampled per tick.

Interpolated as ros2_controllers' joint_trajectory_controller does with its ``spline``
method, so a trajectory planned for that controller (MoveIt, a teleop or a script) is
followed the same way here: waypoints with positions only are joined by straight lines
(the velocity steps at every waypoint, and so does the PD effort: send velocities),
with velocities by cubics, with velocities and accelerations by quintics.

It starts from the desired state it takes over from, at the tick it takes over: the
first segment runs from that state to the first waypoint still ahead (waypoints at or
before that tick are dropped, as the ROS 1 controller did: joining one in the past
would step the desired position), so the desired state stays continuous to the level
the waypoints give. After the last waypoint its position is held at rest (a last
waypoint sent with a velocity would otherwise leave PD pushing at kd times it).
"""
from __future__ import annotations

import math
from typing import Optional

from numba import njit
import numpy as np

LINEAR, CUBIC, QUINTIC = 1, 3, 5


@njit(cache=True)
def _sample_polynomials(c, x, out_q, out_qd, out_qdd):
    """Each joint's quintic (coefficients c[j, 0..5], lowest first) and its derivatives at x."""
    for j in range(c.shape[0]):
        a = c[j]
        out_q[j] = a[0] + x * (a[1] + x * (a[2] + x * (a[3] + x * (a[4] + x * a[5]))))
        out_qd[j] = a[1] + x * (2.0 * a[2] + x * (3.0 * a[3] + x * (4.0 * a[4] + x * 5.0 * a[5])))
        out_qdd[j] = 2.0 * a[2] + x * (6.0 * a[3] + x * (12.0 * a[4] + x * 20.0 * a[5]))


def warm_up() -> None:
    """Compile (or load from numba's cache) the sampling kernel before the first tick."""
    z = np.zeros(1)
    _sample_polynomials(np.zeros((1, 6)), 0.0, z, z.copy(), z.copy())


def segment_coefficients(order: int, T: float, start, end) -> np.ndarray:
    """
    Coefficients (n, 6), lowest first, of the segment from ``start`` to ``end`` over T s.

    ``start`` and ``end``: (q, qd, qdd), each (n,). LINEAR joins the positions, CUBIC
    matches positions and velocities, QUINTIC also the accelerations.
    """
    q0, v0, a0 = (np.asarray(x, float) for x in start)
    q1, v1, a1 = (np.asarray(x, float) for x in end)
    h = q1 - q0
    c = np.zeros((h.shape[0], 6))
    c[:, 0] = q0
    if order == LINEAR:
        c[:, 1] = h / T
    elif order == CUBIC:
        c[:, 1] = v0
        c[:, 2] = (3.0 * h - (2.0 * v0 + v1) * T) / T ** 2
        c[:, 3] = (-2.0 * h + (v0 + v1) * T) / T ** 3
    else:
        c[:, 1] = v0
        c[:, 2] = 0.5 * a0
        c[:, 3] = (20.0 * h - (8.0 * v1 + 12.0 * v0) * T - (3.0 * a0 - a1) * T * T) / (2 * T ** 3)
        c[:, 4] = (-30.0 * h + (14.0 * v1 + 16.0 * v0) * T + (3.0 * a0 - 2.0 * a1) * T * T) / (
            2 * T ** 4)
        c[:, 5] = (12.0 * h - 6.0 * (v1 + v0) * T + (a1 - a0) * T * T) / (2 * T ** 5)
    return c


class WaypointTrajectory:
    """
    Waypoints at ``start_ns`` + ``times_s``, followed from the state ``begin`` gives it.

    ``positions`` (m, n); ``velocities`` and ``accelerations`` (m, n) or None (the
    interpolation order follows from what is given; accelerations need velocities).
    ``times_s`` strictly increasing, from 0. ``continuous``: joints whose angle wraps;
    each of their waypoints is taken within half a turn of the one before (the first
    of the state it starts from), so they go the short way round. No waypoints: a stop,
    brought to rest within ``stop_s`` from the state it takes over (position,
    velocity and acceleration continuous).
    """

    def __init__(self, start_ns: int, times_s, positions, velocities=None, accelerations=None,
                 continuous=None, stop_s: float = 0.25):
        q = np.array(positions, float).reshape(len(times_s), -1) if len(times_s) else None
        if accelerations is not None and velocities is None:
            raise ValueError('accelerations need velocities')
        self.times_s = np.array(times_s, float)
        if self.times_s.size and (self.times_s[0] < 0.0 or np.any(np.diff(self.times_s) <= 0)):
            raise ValueError('waypoint times must start at or after 0 and increase')
        self.order = (QUINTIC if accelerations is not None else CUBIC if velocities is not None
                      else LINEAR) if q is not None else QUINTIC
        shape = None if q is None else q.shape
        self._points = [x if x is None else np.array(x, float).reshape(shape)
                        for x in (q, velocities, accelerations)]
        self.start_ns = int(start_ns)
        self.stop_s = float(stop_s)
        self._continuous = continuous
        self._knots_ns: Optional[np.ndarray] = None     # set by ``begin``
        self._coefficients: Optional[np.ndarray] = None
        self._segment = 0
        self._end = None

    @property
    def started(self) -> bool:
        """Whether ``begin`` has run (it has a state it starts from)."""
        return self._knots_ns is not None

    @property
    def is_stop(self) -> bool:
        return not self.times_s.size

    @property
    def end_ns(self) -> int:
        """When the last waypoint is reached (before ``begin``: as sent)."""
        if self._knots_ns is not None:
            return int(self._knots_ns[-1])
        return self.start_ns + int(round((self.times_s[-1] if self.times_s.size
                                          else self.stop_s) * 1e9))

    def begin(self, now_ns: int, q, qd, qdd) -> None:
        """Take over from the desired state (q, qd, qdd) at ``now_ns``: build the segments."""
        n = len(q)
        start = tuple(np.array(x, float) for x in (q, qd, qdd))
        if self.is_stop:
            T = self.stop_s
            knots = [now_ns, now_ns + int(round(T * 1e9))]
            ends = [(start[0] + 0.5 * start[1] * T, np.zeros(n), np.zeros(n))]
        else:
            at = self.start_ns + np.round(self.times_s * 1e9).astype(np.int64)
            ahead = np.flatnonzero(at > now_ns)
            # all behind (a set point sent for now): the last is held, reached at once
            keep = ahead if ahead.size else np.array([at.size - 1])
            knots = [now_ns] + [int(at[i]) for i in keep]
            pos, vel, acc = self._points
            ends = [(pos[i].copy(), np.zeros(n) if vel is None else vel[i],
                     np.zeros(n) if acc is None else acc[i]) for i in keep]
            if self._continuous is not None:
                mask = np.asarray(self._continuous, bool)
                previous = start[0]
                for end in ends:
                    end[0][mask] -= 2 * math.pi * np.round((end[0] - previous)[mask]
                                                           / (2 * math.pi))
                    previous = end[0]
        coefficients = np.zeros((len(ends), n, 6))
        before = start
        for i, end in enumerate(ends):
            T = (knots[i + 1] - knots[i]) * 1e-9
            if T > 0.0:
                coefficients[i] = segment_coefficients(self.order, T, before, end)
            else:       # reached at once
                coefficients[i, :, 0] = end[0]
            before = end
        self._knots_ns = np.array(knots, np.int64)
        self._coefficients = coefficients
        self._end = np.array(ends[-1][0])
        self._segment = 0

    def sample(self, now_ns: int, out_q, out_qd, out_qdd) -> None:
        """Write the state at ``now_ns`` (``begin`` first); at rest past the last waypoint."""
        knots = self._knots_ns
        if now_ns >= knots[-1]:
            out_q[:] = self._end
            out_qd[:] = 0.0
            out_qdd[:] = 0.0
            return
        i = self._segment
        if not knots[i] <= now_ns < knots[i + 1]:     # (the clock went back: search)
            i = min(max(int(np.searchsorted(knots, now_ns, 'right')) - 1, 0), len(knots) - 2)
            self._segment = i
        x = max(now_ns - int(knots[i]), 0) * 1e-9
        _sample_polynomials(self._coefficients[i], x, out_q, out_qd, out_qdd)

"""
A trajectory of timed waypoints, as a planner sends it (JointTrajectory), sampled per tick.

Interpolated as ros2_controllers' joint_trajectory_controller does with its ``spline``
method, so a trajectory planned for that controller (MoveIt, a teleop or a script) is
followed the same way here: waypoints with positions only are joined by straight lines
(the velocity steps at every waypoint, and so does the PD effort: send velocities),
with velocities by cubics, with velocities and accelerations by quintics.

It starts from the desired state at the tick it takes over (its start time, or that
tick if it has none): the first segment runs from that state to the first waypoint not
behind (waypoints before that tick are dropped, as the ROS 1 controller did: joining one
in the past would step the desired position), so the desired state stays continuous to
the level the waypoints give. A waypoint at that very tick (time_from_start 0, unstamped)
is where it starts, as joint_trajectory_controller does: a planner's first waypoint is
the robot's state. After the last waypoint its position is
held at rest (a last waypoint sent with a velocity would otherwise leave PD pushing at
kd times it). The segments between waypoints are computed when the trajectory is
built (in the message callback), so taking over costs one segment in the tick
(0.06-0.24 ms up to 10000 waypoints; the first version built them all there: 2.6 ms for
100, 294 ms for 10000).
"""
from __future__ import annotations

import math
from typing import Optional

from numba import njit
import numpy as np

LINEAR, CUBIC, QUINTIC = 1, 3, 5
TURN = 2.0 * math.pi


@njit(cache=True)
def sample_polynomials(c, x, out_q, out_qd, out_qdd):
    """Each joint's quintic (coefficients c[j, 0..5], lowest first) and its derivatives at x."""
    for j in range(c.shape[0]):
        a = c[j]
        out_q[j] = a[0] + x * (a[1] + x * (a[2] + x * (a[3] + x * (a[4] + x * a[5]))))
        out_qd[j] = a[1] + x * (2.0 * a[2] + x * (3.0 * a[3] + x * (4.0 * a[4] + x * 5.0 * a[5])))
        out_qdd[j] = 2.0 * a[2] + x * (6.0 * a[3] + x * (12.0 * a[4] + x * 20.0 * a[5]))


def warm_up() -> None:
    """Compile (or load from numba's cache) the sampling kernel before the first tick."""
    z = np.zeros(1)
    sample_polynomials(np.zeros((1, 6)), 0.0, z, z.copy(), z.copy())
    segment_peaks(np.zeros((1, 1, 6)), [0.0])


def whole_turns(x) -> np.ndarray:
    """Return the multiple of 2 pi nearest ``x``."""
    return TURN * np.round(np.asarray(x, float) / TURN)


def nearest_branch(q, ref, continuous) -> np.ndarray:
    """Return ``q``, its ``continuous`` joints moved by whole turns within half a turn of ref."""
    q = np.asarray(q, float)
    return q - np.where(continuous, whole_turns(q - ref), 0.0)


def stop_coefficients(T: float, q0, v0, a0) -> np.ndarray:
    """
    Coefficients (n, 6) of a quintic from (q0, v0, a0) to rest over T s.

    Position, velocity and acceleration continuous where it starts, velocity and
    acceleration 0 where it ends, half the distance the start velocity would cover.
    """
    q0, v0, a0 = (np.asarray(x, float) for x in (q0, v0, a0))
    h = 0.5 * v0 * T
    return np.stack([q0, v0, 0.5 * a0,
                     (20 * h - 12 * v0 * T - 3 * a0 * T * T) / (2 * T ** 3),
                     (-30 * h + 16 * v0 * T + 3 * a0 * T * T) / (2 * T ** 4),
                     (12 * h - 6 * v0 * T - a0 * T * T) / (2 * T ** 5)], axis=-1)


# Times per segment at which ``segment_peaks`` samples it, its ends included.
SAMPLES_PER_SEGMENT = 16


@njit(cache=True)
def _segment_peaks(c, spans, samples, out_q, out_qd):
    n = c.shape[1]
    q, qd, qdd = np.empty(n), np.empty(n), np.empty(n)
    for k in range(c.shape[0]):
        segment = c[k]
        for s in range(samples):
            sample_polynomials(segment, spans[k] * s / (samples - 1), q, qd, qdd)
            for j in range(n):
                a, b = abs(q[j]), abs(qd[j])
                out_q[j] = max(out_q[j], a) if a == a else np.inf   # (NaN: inf - inf)
                out_qd[j] = max(out_qd[j], b) if b == b else np.inf


def segment_peaks(c, spans) -> tuple[np.ndarray, np.ndarray]:
    """
    Return per joint the largest |position| and |velocity| of segments, sampled.

    ``c``: coefficients (k, n, 6) as ``segment_coefficients`` gives them; ``spans``: their
    k durations [s]. Each is sampled at ``SAMPLES_PER_SEGMENT`` evenly spaced times, its ends
    included: a check of plausibility (it finds a path flung far out, not a slight
    overshoot). inf where the values overflow.
    """
    c = np.ascontiguousarray(c, dtype=float)
    out_q, out_qd = np.zeros(c.shape[1]), np.zeros(c.shape[1])
    _segment_peaks(c, np.asarray(spans, float).reshape(-1), SAMPLES_PER_SEGMENT, out_q, out_qd)
    return out_q, out_qd


def segment_coefficients(order: int, T, start, end) -> np.ndarray:
    """
    Coefficients (..., n, 6), lowest first, of segments from ``start`` to ``end`` over T s.

    ``start`` and ``end``: (q, qd, qdd), each (..., n); T a number or (..., 1). LINEAR
    joins the positions, CUBIC matches positions and velocities, QUINTIC also the
    accelerations.
    """
    q0, v0, a0 = (np.asarray(x, float) for x in start)
    q1, v1, a1 = (np.asarray(x, float) for x in end)
    T = np.asarray(T, float)
    h = q1 - q0
    c = np.zeros(h.shape + (6,))
    c[..., 0] = q0
    if order == LINEAR:
        c[..., 1] = h / T
    elif order == CUBIC:
        c[..., 1] = v0
        c[..., 2] = (3.0 * h - (2.0 * v0 + v1) * T) / T ** 2
        c[..., 3] = (-2.0 * h + (v0 + v1) * T) / T ** 3
    else:
        c[..., 1] = v0
        c[..., 2] = 0.5 * a0
        c[..., 3] = (20.0 * h - (8.0 * v1 + 12.0 * v0) * T - (3.0 * a0 - a1) * T * T) / (
            2 * T ** 3)
        c[..., 4] = (-30.0 * h + (14.0 * v1 + 16.0 * v0) * T + (3.0 * a0 - 2.0 * a1) * T * T) / (
            2 * T ** 4)
        c[..., 5] = (12.0 * h - 6.0 * (v1 + v0) * T + (a1 - a0) * T * T) / (2 * T ** 5)
    return c


class WaypointTrajectory:
    """
    Waypoints at ``start_ns`` + ``times_s``, followed from the state ``begin`` gives it.

    ``start_ns`` None: it starts at the tick that takes it over (a JointTrajectory
    stamped 0). ``positions`` (m, n); ``velocities`` and ``accelerations`` (m, n) or None
    (the interpolation order follows from what is given; accelerations need velocities).
    ``times_s`` strictly increasing, from 0. ``continuous``: joints whose angle wraps;
    their waypoints are taken as sent, moved by whole turns so that the first is within
    half a turn of the state it starts from (joint_trajectory_controller's
    angle_wraparound: a sender's multi-turn move stays one). No waypoints: a stop,
    brought to rest within ``stop_s`` from the state it takes over (position, velocity
    and acceleration continuous).
    """

    def __init__(self, start_ns: Optional[int], times_s, positions, velocities=None,
                 accelerations=None, continuous=None, stop_s: float = 0.25):
        if accelerations is not None and velocities is None:
            raise ValueError('accelerations need velocities')
        self.times_s = np.array(times_s, float).reshape(-1)
        m = self.times_s.size
        if m and (self.times_s[0] < 0.0 or np.any(np.diff(self.times_s) <= 0)):
            raise ValueError('waypoint times must start at or after 0 and increase')
        self.start_ns = None if start_ns is None else int(start_ns)
        self.stop_s = float(stop_s)
        self.order = (QUINTIC if accelerations is not None else CUBIC if velocities is not None
                      else LINEAR) if m else QUINTIC
        if m:
            q = np.array(positions, float).reshape(m, -1)
            zeros = np.zeros_like(q)
            self._points = (q, zeros if velocities is None else
                            np.array(velocities, float).reshape(q.shape),
                            zeros if accelerations is None else
                            np.array(accelerations, float).reshape(q.shape))
            # the segments between waypoints, once (taking over adds the first)
            span = np.diff(self.times_s)[:, None]
            self._between = segment_coefficients(
                self.order, span, tuple(x[:-1] for x in self._points),
                tuple(x[1:] for x in self._points))
        self._continuous = None if continuous is None else np.asarray(continuous, bool)
        self._knots_ns: Optional[np.ndarray] = None     # set by ``begin``: its knots,
        self._first: Optional[np.ndarray] = None        # first segment, the index of the
        self._offset = 0                                # next in ``_between``, whole turns
        self._turns: Optional[np.ndarray] = None        # added to continuous joints
        self._segment = 0
        self._end = None

    @property
    def started(self) -> bool:
        """Whether ``begin`` has run (it has a state it starts from)."""
        return self._knots_ns is not None

    @property
    def is_stop(self) -> bool:
        return not self.times_s.size

    def peaks(self, now_ns: int) -> tuple[np.ndarray, np.ndarray] | None:
        """
        Return per joint the largest |position| and |velocity| of the waypoints still ahead.

        Once begun, those passed by ``now_ns`` no longer count (the last always does: the
        motion rests there). The velocity includes each remaining segment's mean speed
        (positions only: the speed between waypoints). None for a stop.
        """
        if self.is_stop:
            return None
        q, qd, _ = self._points
        first = 0
        if self._knots_ns is not None:
            ahead = np.flatnonzero(self._knots_ns[1:] >= now_ns)
            first = self._offset + (int(ahead[0]) if ahead.size else self._knots_ns.size - 2)
        speed = np.abs(qd[first:]).max(axis=0)
        if q.shape[0] - first > 1:
            mean = np.abs(np.diff(q[first:], axis=0)) / np.diff(self.times_s[first:])[:, None]
            speed = np.maximum(speed, mean.max(axis=0))
        return np.abs(q[first:]).max(axis=0), speed

    def between_peaks(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Return ``segment_peaks`` of the segments between the waypoints (None: none)."""
        if self.times_s.size < 2:
            return None
        return segment_peaks(self._between, np.diff(self.times_s))

    def first_peaks(self) -> tuple[np.ndarray, np.ndarray] | None:
        """
        Return ``segment_peaks`` of the segment from the state taken over (after ``begin``).

        None for a stop: its path is this package's own, from wherever the motion was.
        """
        if self._first is None or self.is_stop:
            return None
        return segment_peaks(self._first[None], [(self._knots_ns[1] - self._knots_ns[0]) * 1e-9])

    @property
    def end_ns(self) -> Optional[int]:
        """When the last waypoint is reached (before ``begin``: as stamped, else None)."""
        if self._knots_ns is not None:
            return int(self._knots_ns[-1])
        if self.start_ns is None:
            return None
        return self.start_ns + int(round((self.times_s[-1] if self.times_s.size
                                          else self.stop_s) * 1e9))

    def shift(self, step_ns: int) -> None:
        """Keep it where it was on a clock that stepped by ``step_ns``."""
        if self.start_ns is not None:
            self.start_ns += int(step_ns)
        if self._knots_ns is not None:
            self._knots_ns += int(step_ns)

    def begin(self, now_ns: int, q, qd, qdd, lead_ns: int = 0) -> bool:
        """
        Take over from the desired state (q, qd, qdd) at ``now_ns``: the first segment.

        A waypoint less than ``lead_ns`` (a control period) ahead, with another after it,
        is dropped too: no tick would sample the segment to it (stamped 0.985 s in the
        past, a waypoint 15 ms after arrival was a step of 1 rad).

        Returns False, and does nothing, for a stamped trajectory that ends before
        ``lead_ns`` from now (in the past, or too soon for a tick to follow it: the last
        waypoint 15 ms after a take-over at 100 Hz was a step of 1 rad).
        """
        n = len(q)
        start = tuple(np.array(x, float) for x in (q, qd, qdd))
        t0 = now_ns if self.start_ns is None else self.start_ns
        if self.is_stop:
            T = self.stop_s
            knots = np.array([now_ns, now_ns + int(round(T * 1e9))], np.int64)
            last = start[0] + 0.5 * start[1] * T
            first = stop_coefficients(T, *start)
            i, turns = 0, np.zeros(n)
        else:
            at = t0 + np.round(self.times_s * 1e9).astype(np.int64)
            ahead = np.flatnonzero(at >= now_ns)
            if ahead.size > 1 and now_ns < at[ahead[0]] < now_ns + lead_ns:
                ahead = ahead[1:]
            if self.start_ns is not None and (not ahead.size or at[-1] < now_ns + lead_ns):
                return False        # stamped, it ends before a tick could follow it
            i = int(ahead[0]) if ahead.size else at.size - 1
            pos, vel, acc = self._points
            turns = np.zeros(n)
            if self._continuous is not None:
                turns = np.where(self._continuous, whole_turns(start[0] - pos[i]), 0.0)
            end = (pos[i] + turns, vel[i], acc[i])
            T = (at[i] - now_ns) * 1e-9
            if T > 0.0:
                first = segment_coefficients(self.order, T, start, end)
            else:       # reached at once
                first = np.zeros((n, 6))
                first[:, 0] = end[0]
            first[:, 0] -= turns        # (added back to every segment in ``sample``)
            knots = np.concatenate(([now_ns], at[i:]))
            last = pos[-1] + turns
        self._knots_ns = knots
        self._first, self._offset = first, i
        self._turns = turns if turns.any() else None
        self._end = last
        self._segment = 0
        return True

    def sample(self, now_ns: int, out_q, out_qd, out_qdd) -> None:
        """Write the state at ``now_ns`` (``begin`` first); at rest past the last waypoint."""
        knots = self._knots_ns
        if now_ns >= knots[-1]:
            out_q[:] = self._end
            out_qd[:] = 0.0
            out_qdd[:] = 0.0
            return
        i = self._segment
        if not knots[i] <= now_ns < knots[i + 1]:     # (a later segment, or the clock went back)
            i = min(max(int(np.searchsorted(knots, now_ns, 'right')) - 1, 0), len(knots) - 2)
            self._segment = i
        x = max(now_ns - int(knots[i]), 0) * 1e-9
        c = self._first if i == 0 else self._between[self._offset + i - 1]
        sample_polynomials(c, x, out_q, out_qd, out_qdd)
        if self._turns is not None:
            out_q += self._turns

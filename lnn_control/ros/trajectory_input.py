"""
``~/joint_trajectory``: trajectory_msgs/JointTrajectory, as joint_trajectory_controller takes it.

A planner (MoveIt, a script) that drives ros2_controllers' joint_trajectory_controller
through its topic can drive this node the same way. The message is checked whole
before anything is kept (a refusal leaves the trajectory being followed as it was), and
the semantics are that controller's: ``header.stamp`` 0 starts it at the next tick, a
stamp when the node clock gets there (the reference followed until then runs on); every
joint of the controller must be named; waypoint times increase; a stamped trajectory
that ends before a control period after it would start is refused; one without
waypoints stops the motion (brought to rest within ``STOP_S``); the newest accepted
message, trajectory or ``~/reference``, is followed.
Interpolation and the take-over are in the core (``waypoints``). Effort fields are not
used: the feedforward is what the controller learns.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from trajectory_msgs.msg import JointTrajectory

from . import conversions as C
from ..trajectories import STOP_S
from ..waypoints import WaypointTrajectory

UNKNOWN_JOINT = 'unknown_joint'
ENDS_IN_THE_PAST = 'ends_in_the_past'
REASONS = C.REASONS[:3] + (C.MALFORMED, C.IMPLAUSIBLE, UNKNOWN_JOINT, ENDS_IN_THE_PAST)
# (take_over) it began; its start time has not come
STARTED, WAITING = 'started', 'waiting'
# A continuous joint's waypoint beyond this is garbage (whole turns of a float this large
# are no longer exact; limits.position does not bound continuous joints).
CONTINUOUS_BOUND = 1e9
# The splines between waypoints may overshoot them (a rest-to-rest cubic peaks at 1.5x its
# mean speed, a quintic at 1.875x): beyond this x the limits they are garbage, not overshoot
# (an acceleration of 1e9 at a waypoint: 4e6 rad).
SPLINE_MARGIN = 2.0


def _duration_s(d) -> float:
    return int(d.sec) + int(d.nanosec) * 1e-9


class TrajectoryFromMessages:
    """The latest accepted trajectory: ``pending`` until it starts, then ``active``."""

    def __init__(self, joints: Sequence[str], continuous=None):
        self.joints = list(joints)
        self._index = {name: i for i, name in enumerate(self.joints)}
        self.continuous = (np.zeros(len(self.joints), bool) if continuous is None
                           else np.array(continuous, bool))
        self.limits = np.full((2, len(self.joints)), np.inf)    # |position|, |velocity|
        self._position_bound = self.limits[0].copy()   # continuous joints': CONTINUOUS_BOUND
        self.pending: Optional[WaypointTrajectory] = None
        self.active: Optional[WaypointTrajectory] = None
        self.problem = ''           # why the latest refused message was refused (for the log)

    @property
    def received(self) -> bool:
        """Whether a trajectory has been accepted (and not forgotten since)."""
        return self.pending is not None or self.active is not None

    def set_limits(self, position, velocity) -> None:
        """Refuse waypoints whose |position| or |velocity| exceeds these (one per joint)."""
        self.limits[0] = position
        self.limits[1] = velocity
        self._position_bound = np.where(self.continuous, CONTINUOUS_BOUND, self.limits[0])

    def peaks(self, now_ns: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Return per trajectory held the largest |position| and |velocity| still ahead."""
        return [p for t in (self.active, self.pending) if t is not None
                for p in (t.peaks(now_ns),) if p is not None]

    def forget(self) -> None:
        """Follow no trajectory (a new clock, another input, a generated reference)."""
        self.pending = None
        self.active = None

    def update(self, msg: JointTrajectory, now_ns: int) -> Optional[str]:
        """Take one message (``pending`` from now on); returns None or why it was refused."""
        trajectory = self._read(msg, now_ns)
        if isinstance(trajectory, str):
            return trajectory
        self.pending = trajectory
        return None

    def take_over(self, now_ns: int, q, qd, qdd, period_ns: int = 0) -> Optional[str]:
        """
        Start the pending trajectory if its time has come, from the desired state at now.

        Returns None (none pending), ``WAITING``, ``STARTED`` (the reference followed
        until now is left from the next tick), ``ENDS_IN_THE_PAST`` (stamped, it had
        ended when its time came) or ``IMPLAUSIBLE`` (the spline from that state to its
        first waypoint leaves the limits); refused, it is dropped and the input followed
        runs on.
        """
        p = self.pending
        if p is None:
            return None
        if p.start_ns is not None and now_ns < p.start_ns:
            return WAITING
        self.pending = None
        if not p.begin(now_ns, q, qd, qdd, period_ns):
            self.problem = 'every waypoint was behind when its start time came'
            return ENDS_IN_THE_PAST
        if self._beyond_limits(p.first_peaks(), SPLINE_MARGIN):
            self.problem = (f'the spline to its first waypoint leaves {SPLINE_MARGIN:g}x '
                            'limits.position or limits.velocity (its velocity or acceleration '
                            'is garbage)')
            return C.IMPLAUSIBLE
        self.active = p
        return STARTED

    def shift_time(self, step_ns: int) -> None:
        """Keep the trajectories where they were on a node clock that stepped."""
        for t in (self.pending, self.active):
            if t is not None:
                t.shift(step_ns)

    def waits_s(self, now_ns: int) -> float:
        """How long the pending trajectory waits for its start time (0: none waits)."""
        p = self.pending
        return 0.0 if p is None or p.start_ns is None else max(p.start_ns - now_ns, 0) * 1e-9

    def sample(self, now_ns: int, q, qd, qdd) -> None:
        """Write the active trajectory at ``now_ns`` (as ``DesiredState`` samples a reference)."""
        self.active.sample(now_ns, q, qd, qdd)

    def moving(self, now_ns: int) -> bool:
        """Whether a trajectory is being followed and has not reached its last waypoint."""
        return self.active is not None and now_ns < self.active.end_ns

    def _read(self, msg: JointTrajectory, now_ns: int):
        """Return the trajectory in the controller's joint order, or why it is refused."""
        names = list(msg.joint_names)
        n = len(self.joints)
        if len(set(names)) != len(names):
            return self._refused(C.MALFORMED, 'a joint is named twice')
        unknown = [x for x in names if x not in self._index]
        if unknown:
            return self._refused(UNKNOWN_JOINT, f'not a joint of this controller: {unknown}')
        missing = [x for x in self.joints if x not in names]
        if missing and msg.points:
            return self._refused(C.MISSING_JOINT, f'every joint must be named; missing {missing}')
        if msg.header.stamp.nanosec >= 1_000_000_000:     # as joint_states: not a time
            return self._refused(C.MALFORMED, 'header.stamp.nanosec is 1e9 or more')
        start_ns = C.stamp_to_ns(msg.header.stamp) or None
        if not msg.points:
            return WaypointTrajectory(start_ns, [], [], stop_s=STOP_S)
        order = [names.index(x) for x in self.joints]
        points = msg.points
        m = len(points)
        if any(p.time_from_start.nanosec >= 1_000_000_000 for p in points):
            return self._refused(C.MALFORMED, 'a time_from_start.nanosec is 1e9 or more')
        times = np.fromiter((_duration_s(p.time_from_start) for p in points), float, m)
        fields = []
        for field in ('positions', 'velocities', 'accelerations'):
            rows = [getattr(p, field) for p in points]      # array('d') each
            lengths = set(map(len, rows))
            if lengths == {0}:
                fields.append(None)
                continue
            if lengths != {len(names)}:
                return self._refused(C.LENGTH_MISMATCH, f'every waypoint needs {len(names)} '
                                     f'{field} or none; got {sorted(lengths)}')
            # one copy of the buffers (a list of 10,000 arrays into numpy took 20 ms)
            values = np.frombuffer(b''.join(rows), float).reshape(m, n)
            fields.append(values[:, order])
        positions, velocities, accelerations = fields
        if positions is None:
            return self._refused(C.MALFORMED, 'waypoints without positions')
        if accelerations is not None and velocities is None:
            return self._refused(C.MALFORMED, 'accelerations without velocities')
        given = [x for x in fields if x is not None]
        if not all(np.isfinite(x).all() for x in given):
            return self._refused(C.NON_FINITE, 'a waypoint is not finite')
        if times[0] < 0.0 or np.any(np.diff(times) <= 0.0):
            return self._refused(C.MALFORMED, 'time_from_start must start at or after 0 and '
                                 'increase from waypoint to waypoint')
        if (np.abs(positions) > self._position_bound).any() or (
                velocities is not None and (np.abs(velocities) > self.limits[1]).any()):
            return self._refused(C.IMPLAUSIBLE, 'a waypoint is outside limits.position or '
                                 'limits.velocity')
        if m > 1 and (np.abs(np.diff(positions, axis=0))
                      > self.limits[1] * np.diff(times)[:, None]).any():
            return self._refused(C.IMPLAUSIBLE, 'waypoints further apart than limits.velocity '
                                 'covers in their time')
        if start_ns is not None:
            end_ns = start_ns + int(round(times[-1] * 1e9))
            if end_ns < now_ns:
                late = (now_ns - end_ns) * 1e-9
                return self._refused(ENDS_IN_THE_PAST,
                                     f'stamped to end {late:.3f} s before it arrived')
        trajectory = WaypointTrajectory(start_ns, times, positions, velocities, accelerations,
                                        continuous=self.continuous, stop_s=STOP_S)
        # waypoints within the limits, but velocities or accelerations that fling the
        # splines between them far out (an acceleration of 1e9: 4e6 rad, learned from)
        if self._beyond_limits(trajectory.between_peaks(), SPLINE_MARGIN):
            return self._refused(C.IMPLAUSIBLE, f'the splines between waypoints leave '
                                 f'{SPLINE_MARGIN:g}x limits.position or limits.velocity')
        return trajectory

    def _beyond_limits(self, peaks, margin: float) -> bool:
        """Whether ``peaks`` (|position|, |velocity| per joint) exceed margin x the limits."""
        if peaks is None:
            return False
        return not ((peaks[0] <= margin * self._position_bound).all()
                    and (peaks[1] <= margin * self.limits[1]).all())

    def _refused(self, reason: str, why: str) -> str:
        self.problem = why
        return reason

"""
Message <-> numpy conversions for the controller node.

Readers never raise on bad input: they return one of a few short reason keys
(``REASONS``) so the node can drop the message, count it by reason and keep
running, and they write their output arrays only when the whole message is
valid, so a rejected message can never leave half-updated state behind.
"""
from __future__ import annotations

import array
import collections
from typing import Optional, Sequence

import numpy as np
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray, MultiArrayDimension

from ..control_kernels import carry_on
from ..waypoints import nearest_branch

NON_FINITE = 'non_finite'
MISSING_JOINT = 'missing_joint'
LENGTH_MISMATCH = 'length_mismatch'
STAMP_BACKWARDS = 'stamp_backwards'
MALFORMED = 'malformed'
IMPLAUSIBLE = 'implausible'
STAMP_IN_FUTURE = 'stamp_in_future'
REASONS = (NON_FINITE, MISSING_JOINT, LENGTH_MISMATCH, STAMP_BACKWARDS, MALFORMED, IMPLAUSIBLE,
           STAMP_IN_FUTURE)
# Not a refusal: a joint_states message that names none of the controller's joints is
# another driver's (a gripper, a second arm publishing on the same topic) and is ignored.
NOT_OURS = 'none_of_our_joints'
# A stamp further ahead of the receiver's clock than this is refused: accepted, it would
# make every correctly stamped message after it look stamped backwards. Generous for
# clocks kept in step (NTP/chrony; a lock-step simulator's state runs a tick ahead).
FUTURE_TOLERANCE_NS = 1_000_000_000
# Stamps that go back and then run on consistently (a publisher restarted, an NTP step,
# one message stamped ahead, wall-clock stamps before the first /clock) are a new time
# base once this many messages in a row agree: they are followed from then on.
RESYNC_MESSAGES = 5


def stamp_to_ns(stamp) -> int:
    """builtin_interfaces/Time -> integer nanoseconds (0 means 'not stamped')."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def set_stamp(stamp, ns: int) -> None:
    """Write integer nanoseconds into a builtin_interfaces/Time in place."""
    stamp.sec, stamp.nanosec = divmod(int(ns), 1_000_000_000)


def _as_float_array(values) -> Optional[np.ndarray]:
    """Zero-copy float64 view of a message array field, or None if it is not numeric."""
    if len(values) == 0:
        return np.empty(0)
    try:
        if isinstance(values, array.array) and values.typecode == 'd':
            return np.frombuffer(values, dtype=np.float64)
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        return None


class JointStateReader:
    """
    Picks the controller's joints out of JointState messages, by name.

    Joints may come in any order and extra joints are ignored (a
    joint_state_broadcaster publishes every joint of the robot). With
    ``ignore_foreign`` a message that names none of our joints (another driver's,
    on a shared joint_states topic) is not judged at all: ``read`` returns
    ``NOT_OURS``, which is not a refusal. The
    name -> index map is cached while the publisher keeps the same name list,
    so the usual case is a list comparison plus a gather.

    ``require_velocity``: an empty velocity array counts as a length mismatch.
    Otherwise velocity is optional and ``has_velocity`` says whether the last
    accepted message had one; without it the velocity output is zero (a reference
    is then a set point) or, with ``differentiate`` (the controller's joint_states),
    the difference of successive positions (``VelocityFromPositions``), judged by the
    same finiteness and plausibility checks as a measured one. With ``differentiate``
    a velocity that is NaN for one of our joints counts as absent for that joint (its
    position is differenced, the others' measured velocities are kept): ros2_control's
    joint_state_broadcaster publishes NaN for a joint without a velocity interface.
    ``interval_s``: the interval expected between messages (the control period), the
    first guess of ``VelocityFromPositions``.

    Rejections, in the order they are checked: ``length_mismatch``
    (position/velocity/effort neither empty nor as long as ``name``; position is
    always required), ``malformed`` (one of our joints listed twice, or a field that
    is not numeric; another joint listed twice is not looked at), ``missing_joint``,
    ``non_finite`` (NaN/Inf in a value of one of OUR joints; other joints' values
    are not looked at), ``implausible`` (|position| or |velocity| of one of our
    joints above its limit, see ``set_limits``; none by default),
    ``stamp_in_future`` (a stamp more than ``FUTURE_TOLERANCE_NS`` ahead of the
    ``now_ns`` given to ``read``, when that is non-zero) and ``stamp_backwards``
    (a non-zero header stamp older than the last accepted one; unstamped
    messages skip both stamp checks). A stamp with ``nanosec`` >= 1e9 is
    ``malformed``. When ``RESYNC_MESSAGES`` messages in a row are older than the
    last accepted stamp but run forward among themselves, the last of them is
    accepted as the start of a new time base (``resyncs`` counts these, ``resync_ns``
    says by how much the stamps went back): otherwise one message stamped ahead, or a
    publisher whose clock stepped back, would stop control until the stamps caught up.
    """

    def __init__(self, joints: Sequence[str], require_velocity: bool = True,
                 ignore_foreign: bool = False, differentiate: bool = False,
                 interval_s: float = 0.0, continuous: Optional[np.ndarray] = None):
        self.joints = tuple(joints)
        self._ours = frozenset(self.joints)
        self.n = len(self.joints)
        self.require_velocity = bool(require_velocity)
        self.ignore_foreign = bool(ignore_foreign)
        # messages without velocity: the difference of successive positions (continuous
        # joints' the short way round: they may come wrapped)
        self.velocity = (VelocityFromPositions(self.n, interval_s, continuous)
                         if differentiate else None)
        self._foreign: Optional[list] = None     # the last name list without our joints
        self.last_stamp_ns = 0
        self.resyncs = 0
        self.resync_ns = 0
        self._behind = 0                 # messages in a row stamped before last_stamp_ns
        self._behind_stamp = 0           # ... the last of them
        self.measured = np.zeros(self.n, dtype=bool)   # per joint: velocity measured
        self._measuring = np.zeros(self.n, dtype=bool)  # ... in the message being read
        self._names: Optional[list] = None
        self._index = np.zeros(self.n, dtype=np.intp)
        self._state = np.zeros((2, self.n))    # position, velocity: one finiteness check
        self._q, self._qd = self._state
        self._limits = np.full((2, self.n), np.inf)   # |position|, |velocity| bounds
        self._magnitude = np.zeros((2, self.n))

    @property
    def has_velocity(self) -> bool:
        """Whether the last accepted message had every joint's velocity measured."""
        return bool(self.measured.all())

    def set_limits(self, position, velocity) -> None:
        """Refuse messages whose |position| or |velocity| exceeds these (one per joint)."""
        self._limits[0] = position
        self._limits[1] = velocity

    @property
    def limits(self) -> np.ndarray:
        """Return the |position| and |velocity| bounds (rows), per joint (inf: none)."""
        return self._limits

    def reset(self) -> None:
        """Forget the last stamp and position (e.g. after the clock was reset)."""
        self.last_stamp_ns = 0
        self._behind = self._behind_stamp = 0
        if self.velocity is not None:
            self.velocity.reset()

    def _is_foreign(self, names) -> bool:
        """Whether ``names`` holds none of our joints (the last such list is cached)."""
        if names == self._foreign:
            return True
        try:
            foreign = not any(name in self.joints for name in names)
        except TypeError:
            return False               # not names: judged (and refused) as malformed
        if foreign:
            self._foreign = list(names)
        return foreign

    def _lookup(self, names) -> Optional[str]:
        if self._names is not None and names == self._names:
            return None
        table = {}
        for i, name in enumerate(names):
            if name in table and name in self._ours:
                return MALFORMED       # which value is ours? (another joint twice: not ours)
            table.setdefault(name, i)
        try:        # the cached index changes only when every joint is found
            index = [table[joint] for joint in self.joints]
        except KeyError:
            return MISSING_JOINT
        self._index[:] = index
        self._names = list(names)
        return None

    def read(self, msg: JointState, out_position: np.ndarray,
             out_velocity: np.ndarray, now_ns: int = 0) -> Optional[str]:
        """
        Write our joints' position/velocity into the outputs; None or a reason.

        Without velocity (allowed only if not ``require_velocity``) the velocity
        output is set to zero. Outputs are untouched when the message is refused.
        ``now_ns``: the receiver's clock, for the future-stamp check (0: no check).
        """
        try:
            names = msg.name
            k = len(names)
            pos = _as_float_array(msg.position)
            vel = _as_float_array(msg.velocity)
            n_effort = len(msg.effort)
            stamp = stamp_to_ns(msg.header.stamp)
            normalised = msg.header.stamp.nanosec < 1_000_000_000
        except (AttributeError, TypeError):
            return MALFORMED
        if self.ignore_foreign and names != self._names and self._is_foreign(names):
            return NOT_OURS
        if pos is None or vel is None or not normalised:
            return MALFORMED
        if (pos.size != k or vel.size not in (0, k) or n_effort not in (0, k)
                or (self.require_velocity and vel.size != k)):
            return LENGTH_MISMATCH
        reason = self._lookup(names)
        if reason:
            return reason
        np.take(pos, self._index, out=self._q)
        measuring = self._measuring
        if vel.size == k:
            np.take(vel, self._index, out=self._qd)
            # joint_state_broadcaster fills the velocity of a joint without a velocity
            # interface with NaN: that joint is position-only, not the message broken
            np.isfinite(self._qd, out=measuring)
            if self.velocity is None or np.isinf(self._qd).any():
                measuring.fill(True)            # (judged below: non_finite)
            else:
                np.copyto(self._qd, 0.0, where=~measuring)
        else:
            self._qd[:] = 0.0
            measuring.fill(False)
        if not np.isfinite(self._state).all():
            return NON_FINITE
        if self.velocity is not None:     # every message: a joint's velocity that comes
            # only sometimes is differenced from the message before, not the last without
            estimate = self.velocity.estimate(self._q, stamp if stamp else now_ns, bool(stamp))
            if not measuring.all():        # judged below like a measured velocity
                np.copyto(self._qd, estimate, where=~measuring)
        np.abs(self._state, out=self._magnitude)
        if (self._magnitude > self._limits).any():
            return IMPLAUSIBLE
        if stamp and now_ns and stamp > now_ns + FUTURE_TOLERANCE_NS:
            return STAMP_IN_FUTURE
        if stamp and stamp < self.last_stamp_ns:
            self._behind = self._behind + 1 if stamp > self._behind_stamp else 1
            self._behind_stamp = stamp
            if self._behind < RESYNC_MESSAGES:
                return STAMP_BACKWARDS
            # a new time base: follow it (a differenced velocity has started over already)
            self.resyncs += 1
            self.resync_ns = self.last_stamp_ns - stamp
        self._behind = self._behind_stamp = 0
        if stamp:
            self.last_stamp_ns = stamp
        if self.velocity is not None:
            self.velocity.commit(self._q)
        self.measured[:] = measuring
        out_position[:] = self._q
        out_velocity[:] = self._qd
        return None


# Distinct sets of our joints kept as sources (at least one per joint and one naming all:
# a driver per joint beside a joint_state_broadcaster); past this the least recently
# heard is forgotten (publishers do not change their joint lists; this bounds a
# pathological one).
MAX_SOURCES = 16


class _Source:
    """One publisher's share of our joints: its own reader, so its own stamp order."""

    def __init__(self, joints: Sequence[str], index: np.ndarray, n: int, differentiate: bool,
                 interval_s: float, continuous: np.ndarray):
        self.reader = JointStateReader([joints[i] for i in index], require_velocity=False,
                                       differentiate=differentiate, interval_s=interval_s,
                                       continuous=continuous[index])
        self.index = index
        self.mask = np.zeros(n, dtype=bool)
        self.mask[index] = True
        self.q = np.zeros(index.size)
        self.qd = np.zeros(index.size)
        self.spread = np.zeros((2, n))     # q, qd at our joints' places
        self.measured = np.zeros(n, dtype=bool)     # velocity measured, at our joints' places

    def set_limits(self, position: np.ndarray, velocity: np.ndarray) -> None:
        self.reader.set_limits(position[self.index], velocity[self.index])


class MergedJointStates:
    """
    The controller's joints from one joint_states publisher or several, merged by name.

    A robot whose joints come from more than one driver (an arm and a wrist, a driver per
    joint) publishes each share on the same topic. Every distinct set of our joints a
    message names is a source with its own ``JointStateReader``: each publisher's stamps
    are ordered, its time-base resyncs followed and its velocity differenced on their
    own (one publisher a tick behind another is not "stamped backwards"). A single
    publisher naming every joint is one source: the usual case costs a dict lookup more.

    ``read`` returns None or a reason as ``JointStateReader.read`` does (a message naming
    none of our joints is ``NOT_OURS``) and writes the merged state into its outputs once
    ``complete`` (every joint heard). Per joint the newer stamp wins, so where two
    publishers name the same joint an older message does not roll it back. The merged
    state is as old as its oldest part: ``stamp_ns`` is the oldest joint's stamp (0 if
    one is unstamped; a lock-step tick waits for every driver's state of its time) and
    ``fresh_ns`` the arrival of the oldest joint's latest new sample (0: before the
    clock started), so one silent driver makes the state stale while another publishes.
    """

    def __init__(self, joints: Sequence[str], differentiate: bool = True,
                 interval_s: float = 0.0, continuous: Optional[np.ndarray] = None):
        self.joints = tuple(joints)
        self.n = n = len(self.joints)
        self.differentiate = bool(differentiate)
        self.interval_s = float(interval_s)      # see JointStateReader
        self.continuous = (np.zeros(n, dtype=bool) if continuous is None
                           else np.asarray(continuous, dtype=bool).copy())
        self.max_sources = max(MAX_SOURCES, n + 1)
        self._sources: dict[tuple, _Source] = {}
        self._names: Optional[list] = None     # the last name list and its source
        self._source: Optional[_Source] = None
        self._foreign: Optional[list] = None   # the last name list without our joints
        self._limits = np.full((2, n), np.inf)
        self._state = np.zeros((2, n))
        self._stamp = np.zeros(n, dtype=np.int64)
        self._arrival = np.zeros(n, dtype=np.int64)
        self._measured = np.zeros(n, dtype=bool)      # velocity measured, not differenced
        self._seen = np.zeros(n, dtype=bool)
        self._take = np.zeros(n, dtype=bool)
        self._new = np.zeros(n, dtype=bool)
        self.complete = False
        self.resyncs = 0
        self.resync_ns = 0

    @property
    def stamp_ns(self) -> int:
        return int(self._stamp.min())

    @property
    def fresh_ns(self) -> int:
        return int(self._arrival.min())

    @property
    def has_velocity(self) -> bool:
        """Whether every joint's latest velocity was measured (not differenced)."""
        return bool(self._measured.all())

    def differenced(self) -> list[str]:
        """Our joints whose latest velocity is the difference of positions (not measured)."""
        return [j for j, measured in zip(self.joints, self._measured) if not measured]

    @property
    def sources(self) -> int:
        return len(self._sources)

    def missing(self) -> list[str]:
        """Our joints not heard yet (since the start or the last ``reset``)."""
        return [j for j, seen in zip(self.joints, self._seen) if not seen]

    def arrived_by(self, now_ns: int) -> None:
        """Date the samples that came before the clock started (arrival 0) ``now_ns``."""
        self._arrival[self._arrival == 0] = now_ns

    def set_limits(self, position, velocity) -> None:
        """Plausibility limits per joint, as ``JointStateReader.set_limits``."""
        self._limits[0] = position
        self._limits[1] = velocity
        for source in self._sources.values():
            source.set_limits(*self._limits)

    def reset(self) -> None:
        """Forget every source and value (the clock was reset): wait for all joints again."""
        self._sources.clear()
        self._names = self._source = self._foreign = None
        for a in (self._stamp, self._arrival, self._measured, self._seen):
            a[:] = 0
        self.complete = False

    def _source_of(self, names) -> Optional[_Source]:
        """Return the source of a message naming ``names`` (None: none of our joints)."""
        try:
            named = set(names)
        except TypeError:
            named = set()
        key = tuple(i for i, joint in enumerate(self.joints) if joint in named)
        if not key:
            return None
        source = self._sources.pop(key, None)     # re-inserted: most recently heard last
        if source is None:
            source = _Source(self.joints, np.array(key, dtype=np.intp), self.n,
                             self.differentiate, self.interval_s, self.continuous)
            source.set_limits(*self._limits)
            if len(self._sources) >= self.max_sources:
                del self._sources[next(iter(self._sources))]
        self._sources[key] = source
        return source

    def read(self, msg: JointState, out_position: np.ndarray, out_velocity: np.ndarray,
             now_ns: int = 0) -> Optional[str]:
        """Merge one message; None or the reason it was refused (outputs untouched then)."""
        try:
            names = msg.name
            stamp = stamp_to_ns(msg.header.stamp)
        except (AttributeError, TypeError):
            return MALFORMED
        if names != self._names:
            if names == self._foreign:
                return NOT_OURS
            source = self._source_of(names)
            if source is None:
                self._foreign = list(names)
                return NOT_OURS
            self._names, self._source = list(names), source
        source = self._source
        reader = source.reader
        resyncs = reader.resyncs
        reason = reader.read(msg, source.q, source.qd, now_ns)
        if reason:
            return reason
        resynced = reader.resyncs != resyncs
        if resynced:
            self.resyncs += 1
            self.resync_ns = reader.resync_ns
        if source.index.size == self.n and len(self._sources) == 1:
            self._only_source(source, stamp, now_ns, reader.measured)
        else:
            self._merge(source, stamp, now_ns, resynced)
        if self.complete:
            out_position[:] = self._state[0]
            out_velocity[:] = self._state[1]
        return None

    def _only_source(self, source: _Source, stamp: int, now_ns: int,
                     measured: np.ndarray) -> None:
        """Take the whole state from the one publisher naming every joint (the usual case)."""
        if not stamp or stamp != self._stamp[0]:
            self._arrival.fill(now_ns)
        self._stamp.fill(stamp)
        self._measured[:] = measured
        self._state[0] = source.q       # (its joints in our order: keys are sorted)
        self._state[1] = source.qd
        if not self.complete:
            self._seen.fill(True)
            self.complete = True

    def _merge(self, source: _Source, stamp: int, now_ns: int, resynced: bool) -> None:
        """Take a source's joints into the state where they are not older than it holds."""
        reader = source.reader
        take = source.mask
        if stamp and not resynced:  # a joint another publisher sent newer keeps that value
            np.less_equal(self._stamp, stamp, out=self._take)
            self._take &= take
            take = self._take
        source.spread[0, source.index] = source.q
        source.spread[1, source.index] = source.qd
        np.copyto(self._state, source.spread, where=take)
        if stamp:       # the same stamp again is the same sample: not new
            np.not_equal(self._stamp, stamp, out=self._new)
            self._new &= take
        else:
            self._new[:] = take
        np.copyto(self._arrival, now_ns, where=self._new)
        np.copyto(self._stamp, stamp, where=take)
        source.measured[source.index] = reader.measured
        np.copyto(self._measured, source.measured, where=take)
        self._seen |= take
        if not self.complete:
            self.complete = bool(self._seen.all())


class VelocityFromPositions:
    """
    Joint velocity as the backward difference of successive positions.

    For joint_states without velocity (a driver, or a ros2_control hardware interface,
    that exports only position). Times are the header stamps, or the arrival times of
    unstamped messages; a switch between the two, or a time that goes backwards,
    starts over from that message (velocity 0: two clocks cannot be subtracted). A
    repeated time is the same sample: the position that came with that time first is
    kept (a 100 Hz clock timing 1 kHz messages would otherwise difference 1 ms of
    motion over 10 ms). dt is at least half the typical interval (messages queued
    during a slow tick and delivered back to back would otherwise divide by
    microseconds), which starts at ``interval_s`` (the control period; 0: the first
    interval seen) and follows the intervals seen, each counted as at most twice the
    typical one (a driver silent for seconds does not make the next differences
    divide by seconds). Unfiltered on purpose: a low-pass would add lag to the D term
    (two sensor periods at 100 Hz are 20 degrees of phase at the honest PD loop's
    natural frequency); the noise it leaves is sqrt(2) sigma_q / dt (0.07 rad/s for
    0.5 mrad at 100 Hz).
    """

    def __init__(self, n: int, interval_s: float = 0.0, continuous: Optional[np.ndarray] = None):
        self.qd = np.zeros(n)
        self._next = np.zeros(n)
        self._q = np.zeros(n)
        # angles that wrap: their difference taken within half a turn (a wheel reported
        # in [-pi, pi) read -627 rad/s at every wrap, or was refused as implausible)
        self._wrap = (np.zeros(n, dtype=bool) if continuous is None
                      else np.asarray(continuous, dtype=bool).copy())
        self._wraps = bool(self._wrap.any())
        self._t_ns: Optional[int] = None
        self._stamped = False
        self._prior_s = max(0.0, float(interval_s))
        self._interval_s = self._prior_s   # EWMA of the intervals seen (0: none yet)
        self._pending = (0, False, 0.0, False)   # time, kind, interval, repeat

    def reset(self) -> None:
        """Forget the previous position (after a clock jump: dt would be meaningless)."""
        self._t_ns = None
        self._interval_s = self._prior_s
        self.qd[:] = 0.0

    def estimate(self, q: np.ndarray, t_ns: int, stamped: bool) -> np.ndarray:
        """Return the velocity for positions ``q`` at ``t_ns``; ``commit`` keeps it."""
        dt = 0.0
        repeat = False
        if self._t_ns is None or stamped != self._stamped or t_ns < self._t_ns:
            self._next[:] = 0.0                         # start over from this message
        elif t_ns == self._t_ns:
            self._next[:] = self.qd                     # a repeat: nothing new
            repeat = True
        else:
            dt = (t_ns - self._t_ns) * 1e-9
            if self._wraps:      # the step within half a turn, as the error is taken
                np.subtract(nearest_branch(q, self._q, self._wrap), self._q, out=self._next)
            else:
                np.subtract(q, self._q, out=self._next)
            self._next /= max(dt, 0.5 * self._interval_s)
        self._pending = (t_ns, stamped, dt, repeat)
        return self._next

    def commit(self, q: np.ndarray) -> None:
        """Accept the last ``estimate`` (its message was accepted)."""
        t_ns, stamped, dt, repeat = self._pending
        if dt > 0.0:
            typical = self._interval_s
            self._interval_s = dt if typical == 0.0 else (
                typical + 0.1 * (min(dt, 2.0 * typical) - typical))
        self.qd[:] = self._next
        if not repeat:
            self._q[:] = q
        self._t_ns, self._stamped = t_ns, stamped


class ReferenceFromMessages:
    """
    Desired (position, velocity, acceleration) from ``~/reference`` messages.

    Position is required, velocity optional (absent: zero). The message has no
    acceleration, so it is estimated as a first-order low-pass filtered finite
    difference of successive reference velocities (time constant
    ``acceleration_time_constant_s``; dt from the header stamps when both are
    set, else from the arrival times). Without velocity it is zero: a
    position-only reference is treated as a sequence of set points.

    ``sample`` gives the state at a tick: a moving reference streamed slower than the
    control rate (a planner or a teleop node at 10-50 Hz) is carried on between its
    messages by its velocity and acceleration (from its header stamp where that is a
    plausible send time on the node's clock, else from its arrival), for up to
    ``EXTRAPOLATION_INTERVALS`` of its typical interval (the lower median of its latest
    five gaps; at most ``EXTRAPOLATION_MAX_S``); held at its last position
    it stepped every message, and the learner learned the steps (offline, a 20 Hz stream
    of the zoo's sum of sines: pendulum_5kg tracked at 0.0065 rad against 0.0007 carried
    on, arm_geared 0.0066 against 0.0009; 0.0002 and 0.0005 with the reference at every
    tick). A joint sent with velocity 0 is not carried (a stop is where it was sent),
    none past the point where its velocity would reach 0, and none beyond the
    plausibility limits a message is refused at. Noise on a message's velocity moves
    the carried position by that noise times up to the horizon.
    """

    EXTRAPOLATION_INTERVALS = 2.0
    EXTRAPOLATION_MAX_S = 0.25

    def __init__(self, joints: Sequence[str], acceleration_time_constant_s: float = 0.05):
        self.reader = JointStateReader(joints, require_velocity=False)
        n = self.reader.n
        self.q = np.zeros(n)
        self.qd = np.zeros(n)
        self.qdd = np.zeros(n)
        self.tau = float(acceleration_time_constant_s)
        self.received = False
        self.held = False               # a moving reference stopped coming: ``hold``
        self.time_ns = 0                # arrival of the latest accepted message
        self._from_ns = 0               # the time ``sample`` carries it on from (see update)
        self._q_in = np.zeros(n)
        self._qd_in = np.zeros(n)
        self._raw = np.zeros(n)
        self._prev_time_ns = 0
        self._prev_had_velocity = False
        self._gaps = collections.deque(maxlen=5)   # the latest gaps between messages [s]
        self._horizon_s = 0.0           # how far ``sample`` may carry the latest message on
        self._position_limit, self._velocity_limit = self.reader.limits   # (views)

    @property
    def moving(self) -> bool:
        """Whether the latest reference asks for motion (a velocity or acceleration)."""
        return bool(self.qd.any() or self.qdd.any())

    def stop(self) -> None:
        """Hold the latest position: zero velocity and acceleration until the next message."""
        self.qd[:] = 0.0
        self.qdd[:] = 0.0
        self._prev_had_velocity = False     # the next one does not difference against 0

    def hold(self, now_ns: int) -> None:
        """
        ``stop`` because the reference stopped coming; ``held`` until the next message.

        Held where ``sample`` has carried it to (at most its extrapolation horizon): back
        at the last message's position the desired state would step.
        """
        self.sample(now_ns, self._q_in, self._qd_in, self._raw)
        self.q[:] = self._q_in
        self.stop()
        self.held = True

    def reset(self) -> None:
        """Forget the references received (a new clock): none until the next message."""
        self.reader.reset()
        self.forget()

    def forget(self) -> None:
        """Forget the stream (not the reader's time base): none until the next message."""
        self.stop()
        self.received = False
        self.held = False
        self._prev_time_ns = 0
        self._gaps.clear()
        self._horizon_s = 0.0

    def sample(self, now_ns: int, q: np.ndarray, qd: np.ndarray, qdd: np.ndarray) -> None:
        """Write the reference at node time ``now_ns``, carried on from the latest message."""
        e = min(max(now_ns - self._from_ns, 0) * 1e-9, self._horizon_s)
        carry_on(self.q, self.qd, self.qdd, e, self._position_limit, self._velocity_limit,
                 q, qd, qdd)

    def update(self, msg: JointState, arrival_ns: int) -> Optional[str]:
        """Take one message; returns None or the reason it was refused."""
        reason = self.reader.read(msg, self._q_in, self._qd_in, arrival_ns)
        if reason:
            return reason
        if self.held or not self.moving:
            self._gaps.clear()          # after a stop or a hold the gap is no interval
        elif self.received and arrival_ns > self.time_ns:
            self._gaps.append((arrival_ns - self.time_ns) * 1e-9)
        # the typical interval, the lower median of the latest gaps: neither the first gap
        # after a pause nor a burst (two messages delivered together) sets it alone
        interval = sorted(self._gaps)[(len(self._gaps) - 1) // 2] if self._gaps else 0.0
        self._horizon_s = min(self.EXTRAPOLATION_INTERVALS * interval, self.EXTRAPOLATION_MAX_S)
        self.time_ns = arrival_ns
        stamp = stamp_to_ns(msg.header.stamp)
        # carried on from the time it is stamped with if that is a plausible send time on
        # the node's clock (a coarse /clock: ten messages at 1 kHz arrive at one clock value;
        # from it the latest would lead by up to 9 ms), else from its arrival
        early = (arrival_ns - stamp) * 1e-9
        self._from_ns = stamp if stamp and 0.0 <= early <= self._horizon_s else arrival_ns
        t = stamp if stamp else arrival_ns
        has_velocity = self.reader.has_velocity
        dt = (t - self._prev_time_ns) * 1e-9
        if has_velocity and self._prev_had_velocity and dt > 0.0:
            np.subtract(self._qd_in, self.qd, out=self._raw)
            self._raw /= dt
            self._raw -= self.qdd
            self._raw *= dt / (self.tau + dt)
            self.qdd += self._raw
        elif not has_velocity:
            self.qdd[:] = 0.0
        self.q[:] = self._q_in
        self.qd[:] = self._qd_in
        self._prev_time_ns = t
        self._prev_had_velocity = has_velocity
        self.received = True
        self.held = False
        return None


class CommandMessage:
    """
    A Float64MultiArray reused every tick: ``set`` copies into its data in place.

    The message's ``data`` is an ``array.array('d')`` and ``view`` a numpy view
    of the same memory, so publishing a command allocates nothing.
    """

    def __init__(self, n: int):
        self.msg = Float64MultiArray()
        self.msg.data = array.array('d', bytes(8 * int(n)))
        # The setter may copy (it does unless ROS_PYTHON_CHECK_FIELDS=1): view what it kept.
        self.view = np.frombuffer(self.msg.data, dtype=np.float64)

    def set(self, values) -> Float64MultiArray:  # noqa: A003 (the message's setter)
        self.view[:] = values
        return self.msg


class StateTableMessage(CommandMessage):
    """
    A joints x fields table as a Float64MultiArray, reused every tick (``table`` views it).

    Row-major with its layout filled in: dim[0] is labelled with the joint
    names, dim[1] with the field names (comma-separated), so a subscriber or a
    plotting tool can tell which column is which without this package.
    """

    def __init__(self, joints: Sequence[str], fields: Sequence[str]):
        n, m = len(joints), len(fields)
        super().__init__(n * m)
        self.msg.layout.dim = [
            MultiArrayDimension(label=','.join(joints), size=n, stride=n * m),
            MultiArrayDimension(label=','.join(fields), size=m, stride=m)]
        self.table = self.view.reshape(n, m)


def to_float64_multiarray(values, msg: Optional[Float64MultiArray] = None) -> Float64MultiArray:
    """One-off numpy -> Float64MultiArray (``CommandMessage`` for the hot path)."""
    msg = Float64MultiArray() if msg is None else msg
    msg.data = array.array('d', np.ascontiguousarray(values, dtype=np.float64).tobytes())
    return msg


def joint_state(names: Sequence[str], position, velocity=(), effort=(),
                stamp_ns: int = 0) -> JointState:
    """Build a JointState (tests, demos, benchmarks)."""
    msg = JointState()
    msg.name = list(names)
    msg.position = [float(v) for v in position]
    msg.velocity = [float(v) for v in velocity]
    msg.effort = [float(v) for v in effort]
    set_stamp(msg.header.stamp, stamp_ns)
    return msg

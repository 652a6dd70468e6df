"""
Joint-space references with analytic derivatives.

Controllers need q, qd and qdd of the desired trajectory (feedforward inputs and PD error),
so every reference writes all three into preallocated arrays without allocating per tick.
"""
from __future__ import annotations

import math
from typing import Sequence

from numba import njit
import numpy as np

from .waypoints import nearest_branch, sample_polynomials, stop_coefficients, whole_turns


def _finite(name: str, a: np.ndarray) -> np.ndarray:
    if not np.isfinite(a).all():
        raise ValueError(f'{name} must be finite, got {a}')
    return a


@njit(cache=True)
def _sample_sum_of_sines(t, w, phases, amplitudes, aw, aw2, offsets, out_q, out_qd, out_qdd):
    """
    One Numba call per tick (the numpy form took a dozen calls: 9 us, 22 us in a busy node).

    The numpy form's operations in its order (bit-identical for fewer than 8 sines per
    joint; from 8 on numpy sums pairwise, a last-bit difference).
    """
    for j in range(w.shape[0]):
        q = 0.0
        qd = 0.0
        qdd = 0.0
        for k in range(w.shape[1]):
            arg = w[j, k] * t + phases[j, k]
            s = np.sin(arg)
            q += amplitudes[j, k] * s
            qd += aw[j, k] * np.cos(arg)
            qdd += aw2[j, k] * s
        out_q[j] = q + offsets[j]
        out_qd[j] = qd
        out_qdd[j] = qdd


class SumOfSines:
    """
    Smooth multi-sine reference with analytic velocity and acceleration.

    q_i(t) = offset_i + sum_k A_ik sin(2 pi f_ik t + phi_ik). amplitudes, frequencies_hz and
    phases have shape (n_joints, k); a 1-D (k,) input means one joint. offsets: (n_joints,).
    """

    def __init__(self, amplitudes, frequencies_hz, phases=None, offsets=None):
        amp = np.atleast_2d(np.asarray(amplitudes, dtype=float))
        freq = np.broadcast_to(np.atleast_2d(np.asarray(frequencies_hz, dtype=float)), amp.shape)
        phase = np.zeros(amp.shape) if phases is None else np.broadcast_to(
            np.atleast_2d(np.asarray(phases, dtype=float)), amp.shape)
        self.n_joints = amp.shape[0]
        off = np.broadcast_to(np.asarray(0.0 if offsets is None else offsets, dtype=float),
                              (self.n_joints,))
        self.amplitudes = _finite('amplitudes', amp.copy())
        self.frequencies_hz = _finite('frequencies_hz', freq.copy())
        self.phases = _finite('phases', phase.copy())
        self.offsets = _finite('offsets', off.copy())
        self.max_frequency_hz = float(np.abs(freq).max(initial=0.0))
        w = 2.0 * np.pi * self.frequencies_hz
        self._w = w
        self._aw = amp * w
        self._aw2 = -amp * w * w
        self(0.0)        # compiles (or loads) the kernel now, not at the first control tick

    def sample(self, t: float, out_q, out_qd, out_qdd) -> None:
        """Write q, qd, qdd at time t into the given (n_joints,) arrays."""
        _sample_sum_of_sines(float(t), self._w, self.phases, self.amplitudes, self._aw,
                             self._aw2, self.offsets, out_q, out_qd, out_qdd)

    def __call__(self, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        out = np.empty((3, self.n_joints))
        self.sample(t, out[0], out[1], out[2])
        return out[0], out[1], out[2]

    @classmethod
    def standard(cls, n_joints: int, amplitude: float | Sequence[float] = 0.5,
                 max_frequency_hz: float = 0.55, seed: int = 0,
                 offsets=None) -> 'SumOfSines':
        """
        Build the demo reference: per joint 3 sines at (0.15, 0.3, 0.55) * max / 0.55 Hz.

        Amplitude is split 0.5/0.3/0.2 so the peak never exceeds `amplitude`; random
        phases (seeded, different per joint) keep the joints from moving in lockstep.
        """
        if n_joints < 1:
            raise ValueError(f'n_joints must be >= 1, got {n_joints}')
        amp = np.broadcast_to(np.asarray(amplitude, dtype=float), (n_joints,))
        freq = np.array([0.15, 0.3, 0.55]) * (max_frequency_hz / 0.55)
        phases = np.random.default_rng(seed).uniform(0.0, 2.0 * np.pi, (n_joints, 3))
        return cls(amp[:, None] * np.array([0.5, 0.3, 0.2]), np.tile(freq, (n_joints, 1)),
                   phases, offsets)


class Sine(SumOfSines):
    """One sine per joint: q = offset + amplitude sin(2 pi f t)."""

    def __init__(self, amplitude, frequency_hz, offset=None):
        amp, freq = np.broadcast_arrays(np.atleast_1d(np.asarray(amplitude, dtype=float)),
                                        np.atleast_1d(np.asarray(frequency_hz, dtype=float)))
        super().__init__(amp[:, None], freq[:, None], offsets=offset)


class Hold:
    """Constant position with zero velocity and acceleration (regulation tests)."""

    max_frequency_hz = 0.0

    def __init__(self, position):
        position = np.atleast_1d(np.asarray(position, dtype=float)).copy()
        self.position = _finite('position', position)
        self.n_joints = self.position.shape[0]

    def sample(self, t: float, out_q, out_qd, out_qdd) -> None:
        out_q[:] = self.position
        out_qd[:] = 0.0
        out_qdd[:] = 0.0

    def __call__(self, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.position.copy(), np.zeros(self.n_joints), np.zeros(self.n_joints)


class PointToPoint:
    """
    Set points reached by minimum-jerk moves: a move of 1/f s, then a hold of 1/f s.

    A user's task as a trajectory generator sends it (reach a pose, stay, move on), not
    steps: position, velocity and acceleration are continuous (zero velocity and
    acceleration at both ends of a move), and a move's content reaches about f, so the
    honest gains for f fit it. Set points are drawn uniformly within offset +- amplitude
    per joint (seeded, a cycle of ``SEGMENTS``); the first is the offset. No allocation
    per sample.
    """

    SEGMENTS = 256

    def __init__(self, amplitude, frequency_hz: float, offsets, seed: int = 0):
        offsets = _finite('offsets', np.atleast_1d(np.asarray(offsets, dtype=float)))
        amplitude = np.broadcast_to(np.asarray(amplitude, dtype=float), offsets.shape)
        amplitude = _finite('amplitude', amplitude)
        if not frequency_hz > 0.0:
            raise ValueError(f'point_to_point needs a frequency above 0 Hz; got {frequency_hz}')
        self.n_joints = offsets.shape[0]
        self.max_frequency_hz = float(frequency_hz)
        self.move_s = 1.0 / self.max_frequency_hz
        rng = np.random.default_rng(seed)
        self.points = offsets + amplitude * rng.uniform(-1.0, 1.0, (self.SEGMENTS, self.n_joints))
        self.points[0] = offsets
        self._step = np.zeros(self.n_joints)

    def sample(self, t: float, out_q, out_qd, out_qdd) -> None:
        if not math.isfinite(t):              # as the sines: no time, no reference
            out_q[:] = out_qd[:] = out_qdd[:] = np.nan
            return
        segment, tau = divmod(max(t, 0.0), 2.0 * self.move_s)
        k = int(segment) % self.SEGMENTS
        start, end = self.points[k], self.points[(k + 1) % self.SEGMENTS]
        if tau >= self.move_s:
            out_q[:] = end
            out_qd[:] = 0.0
            out_qdd[:] = 0.0
            return
        s, T = tau / self.move_s, self.move_s
        np.subtract(end, start, out=self._step)
        np.multiply(self._step, s * s * s * (10.0 - 15.0 * s + 6.0 * s * s), out=out_q)
        out_q += start
        np.multiply(self._step, 30.0 * s * s * (1.0 - s) ** 2 / T, out=out_qd)
        np.multiply(self._step, 60.0 * s * (1.0 - s) * (1.0 - 2.0 * s) / (T * T), out=out_qdd)

    def __call__(self, t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        q, qd, qdd = (np.zeros(self.n_joints) for _ in range(3))
        self.sample(t, q, qd, qdd)
        return q, qd, qdd


MODES = ('hold', 'sine', 'sum_of_sines', 'point_to_point')


def make_reference(mode: str, n_joints: int, amplitude, frequency_hz, offset=None, seed=0):
    """
    Build a reference by name; amplitude/frequency/offset are scalars or per joint.

    'hold' stays at `offset`; 'sum_of_sines' uses frequency_hz as its highest frequency;
    'point_to_point' moves between set points in 1/frequency_hz s and holds as long.
    """
    offsets = np.broadcast_to(np.asarray(0.0 if offset is None else offset, dtype=float),
                              (n_joints,))
    if mode == 'hold':
        return Hold(offsets)
    if mode == 'sine':
        return Sine(np.broadcast_to(amplitude, (n_joints,)),
                    np.broadcast_to(frequency_hz, (n_joints,)), offsets)
    if mode == 'sum_of_sines':
        return SumOfSines.standard(n_joints, amplitude, float(frequency_hz), seed, offsets)
    if mode == 'point_to_point':
        return PointToPoint(amplitude, float(frequency_hz), offsets, seed)
    raise ValueError(f'unknown reference mode {mode!r}; choose one of {", ".join(MODES)}')


def reach(mode: str, amplitude, frequency_hz: float, offset) -> tuple[np.ndarray, np.ndarray]:
    """
    Return per joint bounds of |position| and |velocity| a generated reference reaches.

    Every mode stays within offset +- amplitude (hold: at offset). Peak speeds: a sine
    2 pi f A; the sum of sines (amplitudes A x 0.5 / 0.3 / 0.2 at f x 0.15 / 0.3 / 0.55 /
    0.55) at most pi f A; a minimum-jerk move of up to 2 A in 1 / f s 1.875 x 2 A f.
    """
    amplitude, offset = (np.asarray(x, dtype=float) for x in (amplitude, offset))
    speed = {'hold': 0.0, 'sine': 2.0 * math.pi, 'sum_of_sines': math.pi,
             'point_to_point': 3.75}[mode] * float(frequency_hz) * amplitude
    return np.abs(offset) + (0.0 if mode == 'hold' else amplitude), speed


class DesiredState:
    """
    This tick's desired state (``q``, ``qd``, ``qdd``, one value per joint).

    It serves a front end that may be given a reference or generate one.

    Generated (``reference.mode`` hold, sine, sum_of_sines, point_to_point; time from the first
    ``update``) when configured so; otherwise the latest reference received; before the
    first one, ``hold`` (a front end sets it to the first measured position: the one set
    point that cannot make the robot move).

    Reconfigured while running (a ``reference.*`` parameter set live), it blends from the
    old reference to the new one with a minimum-jerk weight over one period of the new
    reference (``blend_s``): switching at once stepped the desired position (a frequency
    change mid-sine moved it by 0.6 rad in one tick, and PD answered with a step of effort).
    ``resume`` blends from a position at rest the same way when control resumes after a
    sensor drop-out and the generated reference moved on meanwhile.
    """

    def __init__(self, n_joints: int, continuous=None):
        self.n = n_joints
        # joints whose position wraps (``continuous_joints``): a measured position is
        # taken in the branch nearest the reference
        self.continuous = np.zeros(n_joints, bool) if continuous is None else np.array(
            continuous, bool)
        self.q, self.qd, self.qdd = (np.zeros(n_joints) for _ in range(3))
        self.hold = np.zeros(n_joints)
        self.generator = None
        self._t0_ns = None
        # the blend: the reference it leaves (None: the last desired position, held), its
        # start (ns; None until the next update) and length; scratch rows
        self._old = None
        self._blend_start_ns = None
        self.blend_s = 0.0
        self._from = np.zeros((3, n_joints))      # the old reference's q, qd, qdd
        self._mixed = np.zeros((3, n_joints))     # ... as mixed (turns added)
        # whole turns added to the old side of this blend (continuous joints: it goes the
        # short way round, see ``_blend``)
        self._turns = np.zeros(n_joints)
        self._new = np.zeros(n_joints)            # the new side's last position, as sampled
        self._new_turns = np.zeros(n_joints)      # ... and the turns added to keep it unbroken
        self._t_s = 0.0                           # the last update's time [s since t0]
        self._period_s = 1.0                      # the generated reference's period
        self._probe = np.zeros((3, n_joints))     # the generated reference now (``resume``)

    def configure(self, mode: str, amplitude, frequency_hz: float, offset, seed: int) -> None:
        """Generate ``mode`` (``topic``: follow the references received); blend if running."""
        n = self.n
        new = None if mode == 'topic' else make_reference(
            mode, n, np.broadcast_to(np.asarray(amplitude, float), (n,)), float(frequency_hz),
            np.broadcast_to(np.asarray(offset, float), (n,)), seed=int(seed))
        if new is None and self.generator is None:
            return          # following the topic before and after: nothing to blend
        period = 1.0 / frequency_hz if frequency_hz > 0 else 1.0
        seconds = period if new is not None else 1.0
        if self._t0_ns is None:
            pass
        elif self.blend_s > 0.0 and self._blend_start_ns is None:
            # changed again before the blend began (one request setting two reference.*
            # values, one by one): it still starts from where it was, into the latest
            self.blend_s = seconds
        elif self.blend_s > 0.0:        # from the blend in progress
            self._start_blend(self._in_progress(), self.q, seconds)
        elif self.generator is not None:
            self._start_blend(self.generator, self.q, seconds)
        else:       # from received references (sampled by node time): brought to rest
            self._start_blend(_Stop(self.q, self.qd, self.qdd, self._t_s, STOP_S), self.q,
                              seconds)
        self.generator = new
        self._period_s = period

    def _in_progress(self):
        """
        Return the running blend (begun: ``_blend`` has run) as a reference of its own.

        A change in mid-blend blends from it: from the old target it stepped (0.5-1 rad
        in one tick). Nested at most ``MAX_NESTED_BLENDS`` deep; beyond, or blending into
        received references (sampled by node time, not by ``t``), from where the desired
        state is, brought to rest (``_Stop``).
        """
        old = _active(self._old, self._t_s)       # blends within it that have ended: gone
        if self.generator is None or (isinstance(old, _Blend)
                                      and old.depth >= MAX_NESTED_BLENDS):
            return _Stop(self.q, self.qd, self.qdd, self._t_s, min(self.blend_s, STOP_S))
        start_s = (self._blend_start_ns - self._t0_ns) * 1e-9
        return _Blend(old, self._from[0].copy(), self.generator, start_s, self.blend_s,
                      self._turns.copy())

    def _start_blend(self, old, q, seconds: float) -> None:
        """Blend from ``old`` (a reference; None: ``q``, at rest) over ``seconds`` (``_blend``)."""
        self._old = old
        self._from[0] = q
        self._blend_start_ns = None
        self.blend_s = seconds

    def resume(self, now_ns: int, q, received=None) -> None:
        """
        Control resumes after ``update`` paused: blend from ``q`` if the reference moved on.

        From ``q`` (the measured position), at rest, over one period of a generated
        reference or ``RESUME_RECEIVED_S`` into ``received`` (what ``update`` is given:
        a ~/reference stream or a trajectory runs on through a drop-out; 0.5 s of a
        1 rad/s trajectory stepped the desired position 0.5 rad). A reference that did
        not move (hold, a dwell, a set point) is taken up as it is. A continuous joint's
        ``q`` is taken within half a turn of the reference (a blend from another branch
        would turn the joint round for nothing). A generated reference ``restart`` began
        again begins here (a bag looped, use_sim_time toggled: the robot was not reset with
        the clock; from its offset the effort stepped to the limit).
        """
        if self._t0_ns is None and self.generator is not None:
            self._t0_ns = now_ns    # restarted (a clock jump): from its start, from where q is
        if self._t0_ns is None:
            return
        if self.generator is not None:
            self.generator.sample((now_ns - self._t0_ns) * 1e-9, *self._probe)
            seconds = self._period_s
        elif received is not None:
            received.sample(now_ns, *self._probe)
            seconds = RESUME_RECEIVED_S
        else:
            return
        if not np.array_equal(self._probe[0], self.q):
            self._start_blend(None, nearest_branch(q, self._probe[0], self.continuous), seconds)

    def end_blend(self) -> None:
        """Follow the new reference alone from now (what it starts from has the blend in it)."""
        self.blend_s = 0.0
        self._old = None
        self._blend_start_ns = None

    def shift_time(self, step_ns: int) -> None:
        """Keep a generated reference where it was after the clock stepped by ``step_ns``."""
        if self._t0_ns is not None:
            self._t0_ns += step_ns
        if self._blend_start_ns is not None:
            self._blend_start_ns += step_ns

    def restart(self) -> None:
        """Start generated references again at the next ``update`` (no blend)."""
        self._t0_ns = None
        self.blend_s = 0.0

    def update(self, now_ns: int, received=None) -> None:
        """
        Set the state for time ``now_ns``.

        ``received``: the references received (``sample(now_ns, q, qd, qdd)`` writes the
        state at ``now_ns``) or None if none came yet.
        """
        if self._t0_ns is None:
            self._t0_ns = now_ns
        t = self._t_s = (now_ns - self._t0_ns) * 1e-9
        if self.generator is not None:
            self.generator.sample(t, self.q, self.qd, self.qdd)
        elif received is not None:
            received.sample(now_ns, self.q, self.qd, self.qdd)
        else:
            self.q[:] = self.hold
            self.qd[:] = 0.0
            self.qdd[:] = 0.0
        if self.blend_s > 0.0:
            self._blend(now_ns, t)

    def _blend(self, now_ns: int, t: float) -> None:
        """
        Blend the old reference into the new: q, qd, qdd stay continuous.

        A continuous joint goes the short way round: at the blend's first tick the old
        side is taken whole turns over, within half a turn of the new (the desired
        position then differs by whole turns, which the controller's unwrapping of the
        reference passes as no step; from -3 rad to 3 rad, -0.28, not +6).
        """
        starting = self._blend_start_ns is None
        if starting:
            self._blend_start_ns = now_ns
        T = self.blend_s
        tau = (now_ns - self._blend_start_ns) * 1e-9 / T
        if tau >= 1.0:
            self.blend_s = 0.0
            self._old = None
            return
        old_q, old_qd, old_qdd = self._from
        if self._old is not None:
            self._old.sample(t, old_q, old_qd, old_qdd)
        else:
            old_qd[:] = 0.0
            old_qdd[:] = 0.0
        # a received reference may come wrapped: its continuous joints' new side is kept
        # unbroken through the blend (whole turns added; at the end it is as received)
        if starting:
            self._new_turns[:] = 0.0
            self._turns[:] = np.where(self.continuous, whole_turns(self.q - old_q), 0.0)
        else:
            self._new_turns -= np.where(self.continuous, whole_turns(self.q - self._new), 0.0)
        self._new[:] = self.q
        self.q += self._new_turns
        mixed = self._mixed
        mixed[:] = self._from
        mixed[0] += self._turns
        _mix(*mixed, self.q, self.qd, self.qdd, tau, T)


MAX_NESTED_BLENDS = 8   # blends of blends kept (changes faster than a reference's period)
# A desired state left mid-motion comes to rest within this (``_Stop``): over a whole 20 s
# blend, 0.5 v0 T and the carried acceleration took it hundreds of radians out.
STOP_S = 0.25
# After a sensor drop-out, from the measured position into a received reference that moved on.
RESUME_RECEIVED_S = 1.0


def _active(ref, t: float):
    """Return ``ref`` without the blends in it that have ended by ``t`` (they are their new)."""
    while isinstance(ref, _Blend) and (t - ref.start_s) >= ref.seconds:
        ref = ref.new
    if isinstance(ref, _Blend):
        ref.old = _active(ref.old, t)
    return ref


def _mix(old_q, old_qd, old_qdd, q, qd, qdd, tau: float, T: float) -> None:
    """Set (q, qd, qdd) to old + w(tau) (new - old), w min-jerk 0 -> 1 over T seconds."""
    w = tau * tau * tau * (10.0 + tau * (-15.0 + 6.0 * tau))
    dw = tau * tau * (30.0 + tau * (-60.0 + 30.0 * tau)) / T
    ddw = tau * (60.0 + tau * (-180.0 + 120.0 * tau)) / (T * T)
    for j in range(q.shape[0]):    # derivatives by the product rule
        dq, dqd, dqdd = q[j] - old_q[j], qd[j] - old_qd[j], qdd[j] - old_qdd[j]
        q[j] = old_q[j] + w * dq
        qd[j] = old_qd[j] + w * dqd + dw * dq
        qdd[j] = old_qdd[j] + w * dqdd + 2.0 * dw * dqd + ddw * dq


class _Stop:
    """
    From a state (q0, qd0, qdd0) at ``start_s`` to rest over ``seconds``, as a reference.

    A quintic: position, velocity and acceleration continuous where it starts, velocity
    and acceleration 0 where it ends, half the distance the start velocity would cover.
    """

    def __init__(self, q0, qd0, qdd0, start_s: float, seconds: float):
        self.seconds = float(seconds)
        self.start_s = float(start_s)
        self._c = stop_coefficients(self.seconds, q0, qd0, qdd0)

    def sample(self, t: float, out_q, out_qd, out_qdd) -> None:
        x = min(max(t - self.start_s, 0.0), self.seconds)
        sample_polynomials(self._c, x, out_q, out_qd, out_qdd)


class _Blend:
    """
    A blend from ``old`` (a reference; None: ``q0`` at rest) into ``new``, as a reference.

    ``turns``: added to the old side's position (``DesiredState._blend``).
    """

    def __init__(self, old, q0: np.ndarray, new, start_s: float, seconds: float,
                 turns: np.ndarray):
        self.old, self.new, self.start_s, self.seconds = old, new, start_s, seconds
        self._turns = turns
        self._old_state = np.zeros((3, q0.shape[0]))     # (at rest if no ``old``)
        self._q0 = q0

    @property
    def depth(self) -> int:
        """Return how many blends deep it is (itself and those in its old side)."""
        return 1 + (self.old.depth if isinstance(self.old, _Blend) else 0)

    def sample(self, t: float, out_q, out_qd, out_qdd) -> None:
        tau = (t - self.start_s) / self.seconds
        self.new.sample(t, out_q, out_qd, out_qdd)
        if tau >= 1.0:
            return
        old = self._old_state
        if self.old is not None:
            self.old.sample(t, *old)
        else:
            old[0] = self._q0
        old[0] += self._turns
        _mix(*old, out_q, out_qd, out_qdd, max(tau, 0.0), self.seconds)

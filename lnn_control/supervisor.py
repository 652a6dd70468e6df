"""
The learning supervisor: learning may never make tracking worse than PD alone.

Feedback-error learning with RLS behaves like a high-gain integral loop on top of
the PD loop; whether it is stable depends on the feature scale, the covariance and
the forgetting together, so some setting on some plant will always be unstable. The
supervisor watches figures the controller has every tick and acts on them. The
measurements behind every threshold here are in the README ("Learning supervisor")
and docs/zoo.md.

The main figure, in the PD loop's error units (effort / kp)::

    rho = rms(u_pd / kp) / rms(u / kp)     over ``window_s``; u the applied command

is to first order the tracking error with learning over the error PD alone would
have on the same motion: 1 with no feedforward, near 0 with a good one, above 1 when
the feedforward fights the loop. It is computed from the efforts as they are and
low-passed at kp/kd rad/s (about the loop's bandwidth); the larger counts. A plant
change raises it towards 1 but not past it, so re-adaptation is left alone.

Trips (``control_kernels.supervise``):
- rho above ``trip_ratio`` over a full window, or above twice it over a quarter;
- the feedforward driving the command into saturation on more than a quarter of
  the ticks over a quarter window (under saturation rho reads about 1 whatever the
  error); after limits lowered live only saturation beyond what the limits alone
  cause counts (``limits_changed``);
- an RLS step refused as numerically unusable;
- the echo figure -- the feedforward's power above the loop's bandwidth over the
  command's within it -- above 1.3x the trip ratio: a self-excited learning loop
  echoes the PD effort a few ticks late while rho still reads low. Learning from
  scratch reads high for seconds, so it is armed by a good snapshot, or after
  ``ARM_AFTER_S`` against a capped fast learner only where the reference lies well
  below the bandwidth (``ARM_BANDWIDTH_MARGIN``). Its first trip while rho is low
  rolls back and cuts the fast learner only.

Responses, with hysteresis (``hold_s``) and escalation:
1. rollback: the readouts go back to the last good snapshot (taken every 2 windows
   while rho stayed below half the trip ratio, promoted after one more good
   interval), learning freezes for ``hold_s`` and the covariances restart. The fast
   learner is the first suspect (with a memory of a few ticks it is an integrator on
   the PD output that a tick of delay turns into an oscillation): the first trip caps
   every learner's step at ``GAIN_CAP`` x kp/kd x dt of its error (a weighted step,
   so P stays consistent), the second switches the fast learner off, further ones
   cut every covariance by ``GAIN_CUT``; an ``rls.initial_covariance`` above
   ``VALIDATED_COVARIANCE`` is brought to it at the first.
2. pd_only: still harmful after ``hold_s`` with the rolled-back readout (the snapshot
   is bad too): the feedforward is zeroed for another hold, backing off up to
   ``MAX_BACKOFF`` holds; then learning restarts from zero at the cut gain.
3. pd_eased: plain PD is only as good as PD alone if it starts where PD alone would
   be. With a tick of actuation delay some honest PD loops are bistable, and the
   first learning steps can kick them into a cycle at their limits. When the command
   sits at its limit on more than ``EASE_SATURATION`` of a hold's first quarter
   window, the PD output is scaled by ``EASE_GAIN`` for ``EASE_HOLD_S`` and ramped
   back over ``EASE_RAMP_S`` (once per hold): with less gain the loop has the phase
   margin the delay took, the cycle dies and the restored loop stays out of it. Only
   the learning arm does this; the PD-only arm of a comparison has nothing to ease.
4. pd_detuned: a loop that falls back into its cycle within ``DETUNE_WITHIN_S`` of
   an easing is unstable on this plant (the tick of delay, or a kd too high for the
   rate: ``lnn-control gains --delay-ticks 1``), not merely kicked: the PD output is
   kept at ``DETUNE_FACTOR`` x (kp and kd alike, down to ``DETUNE_MIN``) while learning
   is on, and the feedforward learns what the softer loop leaves, with one cut of
   adaptation gain given back (``_give_back_gain``). A plant change can make the
   full gains stable again (a heavier payload: PD alone then tracks 5x
   better), so after ``PROBE_AFTER_S`` the next step up is tried for ``PROBE_S``
   (pd_restored); the command at its limit on more than ``EASE_SATURATION`` of a
   quarter window, or any trip, in that time ends the trial at once (back down,
   eased; no rollback: the readout did nothing wrong) and doubles the wait (a detected
   plant change brings the next trial to ``TRIAL_AFTER_CHANGE_S`` after it); a trip
   while that cycle dies out rolls back without a cut (``_in_failed_trials_wake``). Full
   gains again when the gains are set, learning or the supervisor is switched off,
   or learning is reset.
5. resume: rho back below the trip ratio after ``hold_s``.
6. gain_restored: the trips that cut are mostly learning's start-up transients (from
   scratch, with a tick of delay); kept for good, their cuts left a model that had
   long learned well re-adapting at x0.01 or without its fast learner. After
   ``CLIMB_AFTER_S`` of learning without a trip (holds and learning off not counted),
   at the end of two snapshot intervals in which rho stayed below the trip ratio (a
   good snapshot asks half of it, which a learner cut to x0.01 can take 40 s to reach:
   random arms with delay tracked at 0.5x PD until then; a trip on probation then rolls
   back to the readouts as they were at the climb), one step of the ladder is
   given back: a 10x cut, up to one cut
   below the highest gain a trip cut (given back to the gain that tripped, the
   start-up trips came again; that gain is learned state, saved with the readout),
   else the fast learner back on; the step cap stays. A trip within
   ``CLIMB_PROBATION_S`` takes that step again instead of cutting further and doubles
   the wait. Not while the PD output is kept softer: response 4 gives back its own
   step, and its trials of more PD gain are judged on the learners as they are.

ROS-free; the per-tick part is one kernel (``control_kernels.supervise``) on
preallocated arrays, which also keeps the timers and says when to act; the
actions, rare, are Python.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import control_kernels as CK

LEARNING, FROZEN, PD_ONLY = STATES = ('learning', 'frozen', 'pd_only')   # SV_STATE codes
LEARNING_CODE = float(STATES.index(LEARNING))
# What an intervention does (``Intervention.action``; counted on /diagnostics as
# 'supervisor <action>').
ACTIONS = ('rollback', 'pd_only', 'pd_eased', 'pd_detuned', 'pd_restored', 'gain_restored',
           'resume')
GAIN_CUT = 0.1
GAIN_FLOOR = 1e-6            # cuts stop here (a zero gain means a learner switched off)
GOOD_FRACTION = 0.5          # snapshots are taken while rho < GOOD_FRACTION * trip_ratio
MAX_BACKOFF = 32             # PD-only holds grow to at most this many hold_s
# The largest initial covariance the sweep validated (benchmarks/bench_sweep.py DELTAS)
VALIDATED_COVARIANCE = 100.0
# The first trip caps the learners' gain: one step absorbs at most this x the PD loop's
# bandwidth kp/kd x dt of its error (a second trip switches the fast learner off).
GAIN_CAP = 3.0
# A PD loop kicked into a cycle at its limits is eased out of it (response 3 above).
EASE_SATURATION = 0.25
EASE_GAIN = 0.5
EASE_HOLD_S = 0.5
EASE_RAMP_S = 1.0
# A cycle back within this of an easing keeps the PD output scaled (response 4).
DETUNE_WITHIN_S = 30.0
DETUNE_FACTOR = 0.7
DETUNE_MIN = 0.25
PROBE_AFTER_S = (20.0, 320.0)   # wait before trying more PD gain, doubled after a failure
PROBE_S = 30.0                  # a trial of more PD gain lasts this long
TRIAL_AFTER_CHANGE_S = 5.0      # a detected plant change: the next trial this soon after it
# Learning this long since the last trip gives back one step of the trip ladder (response 6);
# doubled, up to the second value, after each step given back that a trip followed within
# CLIMB_PROBATION_S (that trip takes the step again instead of cutting further).
CLIMB_AFTER_S = (20.0, 320.0)
CLIMB_PROBATION_S = 10.0
# The echo figure is also armed after this much learning from zero (see the trips above), where
# the loop's bandwidth kp/kd is at least this x the reference's own frequency (the peak
# desired acceleration over the peak desired velocity; honest gains: 3.6-3.9x on the zoo's
# sum of sines, whatever its frequency).
ARM_AFTER_S = 10.0
ARM_BANDWIDTH_MARGIN = 2.0
# After limits lowered live the push base is measured over a period of the reference,
# within these bounds [s] (see ``limits_changed``).
PUSH_BASE_S = (2.0, 10.0)


@dataclass
class _Trials:
    """The trials of more PD gain while it is kept softer (response 4); ticks, -1: none."""

    until: int = -1             # the running trial ends at this tick
    at: int = -1                # the next trial starts at this tick
    saturated: float = 0.0      # the running trial's fraction of ticks at the limit
    before: float = 1.0         # the PD output's scale before the running trial
    wait_s: float = PROBE_AFTER_S[0]
    last: int = 0               # tick the last trial, or the detuning, ended
    failed: int = -1            # tick the last trial failed at


@dataclass
class _Climb:
    """Steps of the trip ladder given back after learning went well (response 6); ticks."""

    wait_s: float = CLIMB_AFTER_S[0]
    learned: int = 0            # ticks learned (not held, learning on) since the last trip
    at: int = -1                # tick of the last step given back (-1: none)
    tripped: float = 0.0        # the highest gain_scale a trip cut (one cut below: the most)
    gain: float = 1.0           # gain_scale and fast_cut before that step
    fast: float = 1.0


@dataclass
class Intervention:
    """One supervisor episode, as logged, counted and plotted."""

    tick: int
    time_s: float
    action: str          # one of ACTIONS
    reason: str


def _setting(name: str) -> property:
    """Return a live setting the kernel reads in its own units (see ``_derive``)."""
    return property(lambda self: getattr(self, '_' + name),
                    lambda self, value: self._derive(**{name: value}))


class LearningSupervisor:
    """
    Watches rho and rolls back, freezes or zeroes the readouts of an ``AdaptiveController``.

    rho: see the module docstring. The controller calls ``observe`` once per tick after
    computing its command.
    """

    def __init__(self, controller, trip_ratio: float, window_s: float, hold_s: float,
                 enabled: bool = True):
        self.ctrl = controller
        self._enabled = bool(enabled)
        n = controller.n
        self._stats = np.zeros(CK.SV_SIZE)         # statistics, timers, state, settings
        self._gains = np.zeros((3, n))             # command limit, 1/kp, low-pass coefficients
        self._lp = np.zeros((6, n))                # filters (error, effort, feedforward),
        #                                            the command's lag-1 statistics
        self._trip_ratio, self._window_s, self._hold_s = trip_ratio, window_s, hold_s
        self._derive()
        self._gain_capped = False       # the learners' gain is capped (GAIN_CAP)
        self.set_gains(controller.kp, controller.kd, controller.command_limit)
        self._good = [r.w.copy() for r in controller.readouts()]
        self._candidate = [r.w.copy() for r in controller.readouts()]
        self.state = LEARNING
        self.gain_scale = 1.0
        self.fast_cut = 1.0             # the fast learner's own extra cut; 0: switched off
        self._only_fast_cut = False     # the last rollback (PD only follows one) cut only fast
        self._owed_cut = False          # ... and PD only followed: the next trip cuts 2x
        self.interventions: list[Intervention] = []
        self.counts = dict.fromkeys(ACTIONS, 0)
        self.episodes = 0               # interventions so far (learning paused or restarted)
        self.snapshots = 0
        self._stats[CK.SV_HOLD_FACTOR] = 1   # this PD-only hold, in hold_s (see _pd_only)
        self._stats[CK.SV_CHATTER] = 1.0
        self._next_hold_factor = 1
        self._hold_mark = (0, 0)        # controller ticks, saturated ticks as this hold began
        self._ease_tick = -1            # tick the PD output was eased at (-1: not eased)
        self._last_ease = -1            # tick of the last easing (-1: none since full gains)
        self.detune = 1.0               # the PD output's kept scale (response 4)
        self._trials = _Trials()
        self._climb = _Climb()
        self._eased_hold = False        # this hold (frozen or PD only) has eased the PD output
        self._arm_tick = int(round(ARM_AFTER_S / controller.dt))   # learning from zero till then
        self._armed_by_time = False     # the echo figure judges the fast learner only
        self._push_base_tick = -1       # tick the push base is measured at (-1: not pending)
        self._push_max = 0.0            # the push fraction's peak while it is measured
        self._reset_timers()

    # -- configuration ---------------------------------------------------------
    trip_ratio = _setting('trip_ratio')
    window_s = _setting('window_s')
    hold_s = _setting('hold_s')

    @property
    def _hold_time_s(self) -> float:
        """Return how long a hold lasts: ``hold_s``, at least a window (the kernel's SV_HOLD)."""
        return float(self._stats[CK.SV_HOLD]) * self.ctrl.dt

    def _derive(self, **settings) -> None:
        """Carry the settings into the kernel's units (ticks, EWMA coefficient)."""
        for name, value in settings.items():
            setattr(self, '_' + name, float(value))
        dt, st = self.ctrl.dt, self._stats
        st[CK.SV_TRIP] = self._trip_ratio
        st[CK.SV_ALPHA] = min(1.0, dt / self._window_s)
        st[CK.SV_WINDOW] = max(1, int(self._window_s / dt + 0.5))
        st[CK.SV_HOLD] = max(st[CK.SV_WINDOW], int(self._hold_s / dt + 0.5))

    def set_gains(self, kp: np.ndarray, kd: np.ndarray, command_limit: np.ndarray) -> None:
        """
        Set the error units: effort / kp (effort / command_limit where kp is 0).

        The second estimate of rho low-passes both efforts at kp/kd rad/s, about the PD
        loop's bandwidth (2 zeta omega_n = kd/I, omega_n^2 = kp/I give omega_n = 2 zeta
        kp/kd), so the figure follows what moves the plant.
        """
        self._gains[0] = command_limit
        self._gains[1] = 1.0 / np.where(kp > 0, kp, command_limit)
        # A joint without kp or kd has no such bandwidth: its efforts are not low-passed
        # and it does not bound the gain cap (kp 0 there made the cap 0, i.e. none, and the
        # whole feedforward of that joint read as an echo).
        loop = (kp > 0) & (kd > 0)
        wc_dt = kp / np.where(loop, kd, 1.0) * self.ctrl.dt
        self._gains[2] = np.where(loop, wc_dt / (1.0 + wc_dt), 1.0)
        self._bandwidth_dt = float(np.min(wc_dt[loop])) if np.any(loop) else np.inf
        self.gain_capped = self._gain_capped      # the cap follows the gains

    @property
    def enabled(self) -> bool:
        """Whether the supervisor watches; switched off, a hold it was in ends at once."""
        return self._enabled

    @enabled.setter
    def enabled(self, enabled: bool) -> None:
        enabled = bool(enabled)
        if enabled == self._enabled:
            return
        self._enabled = enabled
        if not enabled and self.state != LEARNING:
            # nothing would end the hold: learning would stay frozen (or PD only) for good
            self._resume('supervisor disabled')
        elif enabled:   # a rollback goes back no further (to the zeros it had: all learned)
            self._snapshot_now()
        self.stop_easing()
        self.restore_pd('supervisor ' + ('enabled' if enabled else 'disabled'))
        self._reset_timers()        # re-enabled: judge from fresh statistics

    def _snapshot_now(self) -> None:
        """Take the readouts as they are for the snapshots a rollback returns to."""
        for good, cand, r in zip(self._good, self._candidate, self.ctrl.readouts()):
            good[:] = r.w
            cand[:] = r.w

    @property
    def gain_capped(self) -> bool:
        """Whether the learners' gain is capped (see ``gain_cap_per_step``)."""
        return self._gain_capped

    @gain_capped.setter
    def gain_capped(self, capped: bool) -> None:
        self._gain_capped = bool(capped)
        for readout in self.ctrl.readouts():
            readout.gain_cap = self.gain_cap_per_step if capped else 0.0

    @property
    def gain_tripped(self) -> float:
        """Return the highest adaptation gain a trip cut (0: none); learned state, saved."""
        return self._climb.tripped

    @gain_tripped.setter
    def gain_tripped(self, gain: float) -> None:
        self._climb.tripped = float(gain)

    @property
    def gain_cap_per_step(self) -> float:
        """Return the learners' cap: a fraction of the error per step (1: none here)."""
        return min(1.0, GAIN_CAP * self._bandwidth_dt)

    def limits_changed(self, lowered: bool) -> None:
        """
        Re-measure the push base: the command limits (or the feedforward bound) changed live.

        Lowered below what the motion needs, they put a good readout at its bound and the
        command at its limit on the reference's peaks: saturation the limits cause, which
        PD alone meets as well. Counted against the feedforward, it set off the trip ladder
        down to a readout zeroed (a pendulum's command_limit lowered from 0.77 N m to 0.7:
        what it had learned was wiped and its error tripled; with the supervisor off it
        tracked 2.6x better). So the push figure is off while the readout that met the
        old limits meets the new ones over a period of the reference (``PUSH_BASE_S``
        bounds), and the highest push fraction it reads then becomes the base: from then
        on only saturation beyond it counts (the fraction follows the reference's peaks:
        measured over one window, a quarter of the sine's period, the base was 51 % and
        the peaks read 77 %). Raised limits can only saturate less: the base goes back
        to 0 at once.
        """
        self._push_max = 0.0
        if lowered:
            self._stats[CK.SV_PUSH_BASE] = 1.0          # (SV_PUSH_TRIP + 1: never trips)
            rad_s = self._reference_rad_s()
            period = min(max(2.0 * np.pi / rad_s if rad_s > 0.0 else np.inf, PUSH_BASE_S[0]),
                         PUSH_BASE_S[1])
            self._push_base_tick = self._ticks_from_now(period)   # (window_s <= 1 s)
        else:
            self._stats[CK.SV_PUSH_BASE] = 0.0
            self._push_base_tick = -1

    @property
    def push_base(self) -> float:
        """Return the push fraction the limits alone account for (1 while it is measured)."""
        return float(self._stats[CK.SV_PUSH_BASE])

    def _measure_push_base(self) -> None:
        """Track the push fraction's peak; at the end of the period it becomes the base."""
        self._push_max = max(self._push_max, float(self._stats[CK.SV_PUSH]))
        if self.ctrl.ticks >= self._push_base_tick:
            self._push_base_tick = -1
            self._stats[CK.SV_PUSH_BASE] = min(self._push_max, 1.0 - CK.SV_PUSH_TRIP)

    def _ticks_from_now(self, seconds: float) -> int:
        return self.ctrl.ticks + int(round(seconds / self.ctrl.dt))

    def _reset_timers(self) -> None:
        self._stats[:CK.SV_CLEARED] = 0.0
        self._lp[:3] = 0.0          # the chatter statistics run on: they judge the loop
        self._candidate_ok = self._candidate_harmless = False

    @property
    def state(self) -> str:
        return STATES[int(self._stats[CK.SV_STATE])]

    @state.setter
    def state(self, value: str) -> None:
        self._stats[CK.SV_STATE] = STATES.index(value)

    def reset(self) -> None:
        """After ``reset_learning``: a fresh start at full gain."""
        self.state = LEARNING
        self.gain_scale = 1.0
        self.fast_cut = 1.0
        self.gain_capped = False
        self._owed_cut = False
        self._next_hold_factor = 1
        self._disarm()
        self.stop_easing()
        self.detune, self._last_ease, self._trials = 1.0, -1, _Trials()
        self._climb = _Climb()
        self._eased_hold = False
        self._snapshot_now()
        self._reset_timers()

    def rescale_snapshots(self, factors) -> None:
        """
        Keep the snapshots in the units the readouts now use (``RLSReadout.rescale_inputs``).

        ``factors``: per readout, new / old scale of each input. A snapshot kept in the old
        units would, rolled back, scale the feedforward's direct-input part by the factors.
        """
        for snapshots in (self._good, self._candidate):
            for w, readout, f in zip(snapshots, self.ctrl.readouts(), factors):
                w[int(readout.bias):] *= np.asarray(f, dtype=float)[:, None]

    def readout_gains(self) -> tuple[float, ...]:
        """Covariance restart scale of each readout (slow, fast), as ``ctrl.readouts()``; 0: off."""
        return (self.gain_scale, self.gain_scale * self.fast_cut)[:len(self.ctrl.readouts())]

    @property
    def ratio(self) -> float:
        """Latest estimate of rho (1 before there is data)."""
        return float(self._stats[CK.SV_RHO]) if self._stats[CK.SV_TOTAL] > 0 else 1.0

    @property
    def chatter(self) -> tuple[float, int]:
        """Lowest lag-1 correlation of a joint's command (-1: it flips every tick), joint."""
        st = self._stats
        return float(st[CK.SV_CHATTER]), int(st[CK.SV_CHATTER_JOINT])

    @property
    def hold_saturation(self) -> float:
        """Fraction of ticks at the command limit in this hold, frozen or PD only (0 learning)."""
        ticks, saturated = self._hold_mark
        elapsed = self.ctrl.ticks - ticks
        if self.state == LEARNING or elapsed <= 0:
            return 0.0
        return (self.ctrl.saturated_ticks - saturated) / elapsed

    @property
    def pd_only_saturation(self) -> float:
        """Fraction of ticks at the command limit in this PD-only hold (0 otherwise)."""
        return self.hold_saturation if self.state == PD_ONLY else 0.0

    @property
    def oscillation(self) -> float:
        """Latest echo figure: feedforward above the loop's bandwidth / command within it."""
        return float(self._stats[CK.SV_ECHO])

    @property
    def learning_allowed(self) -> bool:
        return self.state == LEARNING

    # -- the tick --------------------------------------------------------------
    def observe(self, pd: np.ndarray, ff: np.ndarray, command: np.ndarray,
                ff_at_bound: int, refused_step: bool = False) -> None:
        if not self.enabled:
            return
        if self._push_base_tick >= 0:
            self._measure_push_base()
        if self.detune < 1.0 or self._trials.until >= 0:
            self._trial()
        action = CK.supervise(pd, ff, command, self._gains, self._lp, ff_at_bound,
                              refused_step, self._stats)
        if action:
            self._act(action, refused_step)
        if (self._stats[CK.SV_STATE] != LEARNING_CODE and not self._eased_hold
                and 4 * (self.ctrl.ticks - self._hold_mark[0]) >= self._stats[CK.SV_WINDOW]
                and self.hold_saturation > EASE_SATURATION):
            self._eased_hold = True
            held = 'feedforward zeroed' if self.state == PD_ONLY else 'learning frozen'
            self._record('pd_eased', f'command at its limit {self.hold_saturation:.0%} of '
                                     f'the time with the {held}: PD output eased to '
                                     f'{EASE_GAIN:g}x for {EASE_HOLD_S:g} s, back over '
                                     f'{EASE_RAMP_S:g} s, to leave the cycle')
            self._ease_tick = self.ctrl.ticks + 1      # from the next tick's command on
            self._detune_if_recurring()

    def _detune_if_recurring(self) -> None:
        """Keep the PD output scaled down if its cycle came back soon after an easing."""
        now, last = self.ctrl.ticks, self._last_ease
        self._last_ease = now
        if (last < 0 or (now - last) * self.ctrl.dt > DETUNE_WITHIN_S
                or self.detune <= DETUNE_MIN or not self.ctrl.learning_enabled):
            return       # (learning off: a frozen readout's hold; PD runs at full gains)
        self.detune = max(DETUNE_MIN, self.detune * DETUNE_FACTOR)
        tr = self._trials
        tr.until, tr.last, tr.at = -1, now, now + round(tr.wait_s / self.ctrl.dt)
        self._record('pd_detuned', f'the PD loop fell back into its cycle at the limits '
                                   f'{(now - last) * self.ctrl.dt:.1f} s after it was eased out '
                                   'of it: its gains are unstable on this plant (a delay, or kd '
                                   'too high for the rate; see lnn-control gains --delay-ticks); '
                                   f'PD output kept at {self.detune:.3g}x while learning is on'
                                   + self._give_back_gain())

    def _give_back_gain(self, ceiling: float = 1.0) -> str:
        """
        Give the learners back one cut of adaptation gain as the PD output is detuned.

        The trips of a PD loop that cycles (the feedforward's first steps at the limits)
        were partly the loop's doing; kept, their cuts left re-adaptation at x0.01 (the
        zoo's arms with a tick of delay: 0.34-0.80x PD after payload x2; 0.27-0.60x with
        one cut back). All of them given back, a loop that is only bistable (PD alone
        stable) was kicked again by the full gain: windows up to 1.96x PD; one more per
        good snapshot, 1.89x. The step cap and a fast learner switched off stay. Weights
        are kept; the covariances restart. Never above ``ceiling``.
        """
        cap = min(1.0, self._gain_cap(), ceiling)
        if self.gain_scale >= cap * (1.0 - 1e-9):       # (x0.1 then /0.1: not exact)
            return ''
        raised = self.gain_scale / GAIN_CUT
        self.gain_scale = cap if raised >= cap * (1.0 - 1e-9) else raised
        for readout, gain in zip(self.ctrl.readouts(), self.readout_gains()):
            if gain > 0.0:
                readout.restart_covariance(gain)
        return f'; adaptation gain back up to x{self.gain_scale:g}'

    def _gain_cap(self) -> float:
        """
        Return the largest gain scale within the validated covariance.

        For what the slow readout starts from: a loaded file's, or the setting at the
        last reset (a live change of ``rls.initial_covariance`` applies at the next one).
        """
        start = self.ctrl.slow.initial_covariance * self.ctrl.feature_power
        return VALIDATED_COVARIANCE / start

    def _trial(self) -> None:
        """Try one step more PD gain now and then; end the trial at the first sign of the cycle."""
        tr, now = self._trials, self.ctrl.ticks
        if tr.until >= 0:
            tr.saturated += 4.0 / self._stats[CK.SV_WINDOW] * (self.ctrl.saturated
                                                               - tr.saturated)
            if tr.saturated > EASE_SATURATION:
                self._trial_failed(f'command at its limit {tr.saturated:.0%} of the time')
            elif now >= tr.until:             # it held: the next step after the first wait
                tr.until, tr.wait_s, tr.last = -1, PROBE_AFTER_S[0], now
                tr.at = now + round(tr.wait_s / self.ctrl.dt) if self.detune < 1.0 else -1
        elif ((0 <= tr.at <= now or self._worse_than_full_gains(now))
                and self._stats[CK.SV_STATE] == LEARNING_CODE and self._ease_tick < 0):
            tr.before, tr.at, tr.saturated = self.detune, -1, 0.0
            tr.until = now + round(PROBE_S / self.ctrl.dt)
            self.detune = min(1.0, self.detune / DETUNE_FACTOR)
            self._record('pd_restored', f'trial of the PD output at {self.detune:.3g}x for '
                                        f'{PROBE_S:g} s (the plant may have changed)',
                         episode=False)

    def _worse_than_full_gains(self, now: int) -> bool:
        """
        Whether the softer loop tracks worse than PD at full gains would, were it stable.

        rho / detune: the error over the error the applied command would leave a full-gain
        PD loop. Above 1 a stable full-gain loop would do better; a plant change may have
        made it stable (a heavier payload: PD alone then 5x better, the softer loop
        1.2-1.4x worse than it), so a trial is due after the first wait, not the doubled.
        """
        st = self._stats     # (a full window of statistics: rho reads 1 with none)
        return (st[CK.SV_TICKS] >= st[CK.SV_WINDOW] and self.ratio > self.detune
                and now - self._trials.last >= PROBE_AFTER_S[0] / self.ctrl.dt)

    def plant_changed(self) -> None:
        """
        Try more PD gain soon: a plant change voids what the failed trials showed.

        A heavier payload can make full gains stable again (random arms with a tick of
        delay, payload x2: PD alone then tracked 1.4-3.5x better) while the softer loop
        waited out a doubled wait. (Measured: 2 of 30 such runs changed, after the change
        0.356 -> 0.344 and 0.324 -> 0.292 of PD; the named zoo with delay unchanged.)
        """
        tr, now = self._trials, self.ctrl.ticks
        if self.detune >= 1.0 or tr.until >= 0:
            return
        soon = now + round(TRIAL_AFTER_CHANGE_S / self.ctrl.dt)
        tr.at = soon if tr.at < 0 else min(tr.at, soon)
        tr.wait_s = PROBE_AFTER_S[0]

    def _trial_failed(self, why: str) -> None:
        """Back to the scale before the trial, eased out of the cycle; wait twice as long."""
        tr, now = self._trials, self.ctrl.ticks
        self.detune = tr.before
        tr.wait_s = min(2.0 * tr.wait_s, PROBE_AFTER_S[1])
        tr.until, tr.at, tr.last, tr.failed = -1, now + round(tr.wait_s / self.ctrl.dt), now, now
        self._ease_tick = now + 1           # out of the cycle the trial started
        self._record('pd_detuned', f'{why} on the trial: PD output back to {self.detune:.3g}x, '
                                   f'eased; the next trial in {tr.wait_s:g} s')
        self._reset_timers()

    def restore_pd(self, reason: str) -> None:
        """Give the PD output its full gains again (a kept detuning ends; see response 4)."""
        self._last_ease, self._trials = -1, _Trials()
        if self.detune != 1.0:
            self.detune = 1.0
            self._record('pd_restored', f'{reason}: PD output back to its full gains')

    @property
    def pd_gain(self) -> float:
        """Return the PD output's kept scale (1: full gains; see response 4)."""
        return self.detune if self._enabled and self.ctrl.learning_enabled else 1.0

    @property
    def easing(self) -> bool:
        """Whether the PD output is being eased (see ``pd_scale``)."""
        return self._ease_tick >= 0

    def stop_easing(self) -> None:
        """End an easing now (the PD output at full scale from the next tick)."""
        self._ease_tick = -1

    def pd_scale(self, tick: int) -> float:
        """
        Return the PD output's scale for controller tick ``tick`` while ``easing``.

        EASE_GAIN for EASE_HOLD_S, then back to 1 over EASE_RAMP_S; at 1 (or once the
        supervisor is disabled) the easing ends; times ``pd_gain``. Kept by the controller's
        tick, not by ``observe``, so it ends even if learning or the supervisor is switched
        off.
        """
        ramp = ((tick - self._ease_tick) * self.ctrl.dt - EASE_HOLD_S) / EASE_RAMP_S
        scale = EASE_GAIN if ramp <= 0.0 else EASE_GAIN + (1.0 - EASE_GAIN) * ramp
        if scale >= 1.0 or not self.enabled:
            self._ease_tick = -1
            return self.pd_gain
        return scale * self.pd_gain

    def _act(self, action: int, refused_step: bool) -> None:
        """Do what ``CK.supervise`` asked for (rare: not every tick)."""
        rho = self.ratio
        if action == CK.SV_ROLLBACK and self._trials.until >= 0:
            self._trial_failed(self._harm())      # the trial's doing, not the readout's
            return
        if action == CK.SV_ROLLBACK:
            echo = not refused_step and int(self._stats[CK.SV_WHY]) == CK.SV_WHY_ECHO
            if echo and self._armed_by_time:
                if self._time_arming_holds():        # (gains or reference may have changed)
                    self._rollback(self._harm())     # the fast learner's next step: off
                else:
                    self._disarm()
            elif (echo and rho < GOOD_FRACTION * self.trip_ratio
                    and self.ctrl.fast is not None and self.fast_cut == 1.0
                    and self.ctrl.learning_enabled and not self._in_failed_trials_wake()):
                self._cut_fast(self._harm())
            elif refused_step:
                self._rollback('RLS step refused as numerically unusable', learners=True)
            else:
                self._rollback(self._harm())
        elif action == CK.SV_SNAPSHOT:
            self._take_snapshot()
        elif action == CK.SV_TO_PD_ONLY:
            self._pd_only(f'still harmful with the rolled-back readout ({self._harm()})')
        elif self.state == FROZEN:
            self._resume(f'error ratio {rho:.2f} after {self._hold_time_s:g} s frozen')
        else:
            hold = self._hold_time_s * self._stats[CK.SV_HOLD_FACTOR]
            self._resume(f'restart from zero after {hold:g} s of PD only'
                         if not any(r.w.any() for r in self.ctrl.readouts())
                         else f'the frozen readout applies again after {hold:g} s of PD only')

    def _harm(self) -> str:
        """Say which figure the kernel found harmful (``CK.SV_WHY``)."""
        st, why = self._stats, int(self._stats[CK.SV_WHY])
        if why == CK.SV_WHY_ECHO:
            return (f'feedforward above the loop bandwidth {st[CK.SV_ECHO]:.2f}x the command '
                    f'within it > {CK.SV_ECHO_FACTOR * self.trip_ratio:.3g} '
                    '(a self-excited oscillation)')
        if why == CK.SV_WHY_PUSH:
            base = (f' (the limits alone: {st[CK.SV_PUSH_BASE]:.0%})'
                    if st[CK.SV_PUSH_BASE] > 0.0 else '')
            return (f'feedforward drove the command into its limit {st[CK.SV_PUSH]:.0%} of the '
                    f'time{base}')
        return f'estimated error ratio to PD {self.ratio:.2f} > trip_ratio {self.trip_ratio:g}'

    def _take_snapshot(self) -> None:
        """
        Take a new snapshot candidate, promoting the previous one if rho stayed low since.

        Called every 2 windows: the previous candidate becomes the good snapshot if rho
        stayed low through the whole interval since it was taken; after two intervals
        with rho below the trip ratio a step of the trip ladder may come back (response 6).
        """
        good = self._stats[CK.SV_MAX] < GOOD_FRACTION * self.trip_ratio
        harmless = self._stats[CK.SV_MAX] < self.trip_ratio
        if good and self._candidate_ok:
            for g, c in zip(self._good, self._candidate):
                g[:] = c
            self.snapshots += 1
            if self._stats[CK.SV_ECHO_MAX] < GOOD_FRACTION * self.trip_ratio:
                self._stats[CK.SV_ARMED] = 1.0
                self._armed_by_time = False
            self._next_hold_factor = 1     # learning has worked again: back to short holds
            self._owed_cut = False
        if self.ctrl.learning_enabled:      # (called while learning, every 2 windows)
            self._climb.learned += int(self._stats[CK.SV_INTERVAL])
            if harmless and self._candidate_harmless:
                self._climb_if_due(good and self._candidate_ok)
        if (not self._stats[CK.SV_ARMED] and self.ctrl.ticks >= self._arm_tick
                and self._time_arming_holds()):
            self._stats[CK.SV_ARMED] = 1.0
            self._armed_by_time = True
        for c, r in zip(self._candidate, self.ctrl.readouts()):
            c[:] = r.w
        self._candidate_ok, self._candidate_harmless = good, harmless
        self._stats[CK.SV_INTERVAL] = 0.0
        self._stats[CK.SV_MAX] = 0.0
        self._stats[CK.SV_ECHO_MAX] = 0.0

    # -- responses -------------------------------------------------------------
    def _record(self, action: str, reason: str, episode: bool = True) -> None:
        """Log an intervention; an episode (learning paused or restarted) unless told not."""
        ctrl = self.ctrl
        self.interventions.append(Intervention(ctrl.ticks, ctrl.ticks * ctrl.dt, action, reason))
        self.counts[action] += 1
        self.episodes += episode
        if action in ('rollback', 'pd_only'):      # a trip: the next step back waits
            cl = self._climb
            if self._climb_on_probation():
                cl.wait_s = min(2.0 * cl.wait_s, CLIMB_AFTER_S[1])
            cl.at, cl.learned = -1, 0

    def _climb_if_due(self, at_good_snapshot: bool) -> None:
        """
        Give back one step of the trip ladder after learning did no harm (response 6).

        Not at a good snapshot, the readouts as they are become the one a trip on probation
        rolls back to (the last good one may be far older, or the zero readout a PD-only
        hold restarted from: the harmless learning since would be lost).
        """
        cl, ctrl = self._climb, self.ctrl
        if (self.state != LEARNING or self.detune < 1.0 or self._trials.until >= 0
                or self.easing or not ctrl.learning_enabled or cl.learned * ctrl.dt < cl.wait_s):
            return
        before = (self.gain_scale, self.fast_cut)
        given = self._give_back_gain(GAIN_CUT * cl.tripped)[2:]
        if (not given and self.fast_cut < 1.0 and ctrl.fast is not None
                and ctrl.mode == 'feedback_error'):    # (inverse_model: see _cut)
            if self.fast_cut == 0.0:        # from zero: a new start, judged by time later
                given, self._arm_tick = 'fast learner back on', self._ticks_from_now(ARM_AFTER_S)
            else:
                given = (f'fast learner back to x{self.gain_scale:g} from '
                         f'x{self.gain_scale * self.fast_cut:g}')
            self.fast_cut = 1.0
            ctrl.fast.restart_covariance(self.readout_gains()[1])   # weights: kept, or zero
        if given:
            if not at_good_snapshot:        # (the give-back keeps every weight)
                self._snapshot_now()
            cl.at, cl.learned, (cl.gain, cl.fast) = ctrl.ticks, 0, before
            self._record('gain_restored', f'{cl.wait_s:g} s of learning without a trip: '
                                          f'{given}')

    def _take_step_back(self) -> bool:
        """Undo the step given back (on probation); True if it was adaptation gain."""
        cl = self._climb
        if cl.gain < self.gain_scale:
            self.gain_scale = cl.gain
            return True
        self.fast_cut = min(self.fast_cut, cl.fast)
        return False

    def _climb_on_probation(self) -> bool:
        """Whether a step given back is still on probation (a trip then takes it again)."""
        cl = self._climb
        return cl.at >= 0 and (self.ctrl.ticks - cl.at) * self.ctrl.dt <= CLIMB_PROBATION_S

    def _rollback(self, reason: str, learners: bool = False) -> None:
        """Roll back, freeze and cut (``learners``: the readouts' own fault whenever)."""
        spared = not learners and self._in_failed_trials_wake()
        # Learning off: a frozen readout applied tripped; nothing learns, so nothing to cut
        # (cut on every such trip, the gain reached 0 in half an hour and zeroed the readout).
        idle = not self.ctrl.learning_enabled
        if spared or idle:
            self._only_fast_cut = False      # nothing cut: nothing owed by a PD-only hold
        response = ('no cut (learning is off)' if idle else
                    "no cut (the failed trial's cycle)" if spared else self._cut())
        for r, good, g in zip(self.ctrl.readouts(), self._good, self.readout_gains()):
            self._restore(r, good, g)
        self._hold(FROZEN)
        self._record('rollback', f'{reason}: readout rolled back to the last good snapshot, '
                                 f'learning frozen for {self._hold_time_s:g} s, {response}')
        self._reset_timers()
        self._disarm_time_if_done()

    def _in_failed_trials_wake(self) -> bool:
        """
        Whether a trip comes while a failed trial's cycle dies out: the loop's, not the learners'.

        That is the trial's easing and a quarter window after it (the push figure's span).
        Cut there, the fast learner went off after the first failed trial and the named
        zoo's arms with delay re-adapted to 0.27-0.60x PD after payload x2 (0.18-0.33x not
        cut; 2 s or 5 s of grace alike). The readout is still rolled back and frozen.
        """
        failed = self._trials.failed
        wake_s = EASE_HOLD_S + EASE_RAMP_S + 0.25 * self._window_s
        return failed >= 0 and (self.ctrl.ticks - failed) * self.ctrl.dt <= wake_s

    def _cut(self) -> str:
        """Cut the learners' gain for a trip (escalating, see the module docstring); say how."""
        # An initial covariance above the validated range is the first suspect: back into
        # it at once (from 1e6, ten-fold cuts took five trips, each a second at 2-4x PD's
        # error: windows of 1.67x PD on arm_heavy_tip; 0.19x with this).
        self.gain_scale = min(self.gain_scale, self._gain_cap())
        if self._climb_on_probation():      # the step given back was too much: take it again
            self._only_fast_cut = False
            if self._take_step_back():
                taken = f'adaptation gain back at x{self.gain_scale:g}'
            else:
                taken = ('fast learner off again' if self.fast_cut == 0.0 else
                         f'fast learner back at x{self.gain_scale * self.fast_cut:g}')
            return taken + ' (the step given back taken again)'
        # A trip after a PD-only hold (owed) is the slow learner's: see the module docstring.
        self._only_fast_cut = self._fast_suspect()
        # In inverse_model mode the fast learner reads the measured state: its frozen output
        # is a feedback law that a gain cap does not bound (heavy cart-pole with delay: a
        # rolled-back, capped fast learner made rho 6.4, a window of 1.71x PD), so it goes off.
        capping = self.ctrl.mode == 'feedback_error' and self.gain_cap_per_step < 1.0
        if self._only_fast_cut and not self.gain_capped and capping:
            self.gain_capped = True
            return f'learning gain capped at {self.gain_cap_per_step:.3g} of the error per step'
        if self._only_fast_cut:
            self.fast_cut = 0.0
            return 'fast learner switched off'
        self._climb.tripped = max(self._climb.tripped, self.gain_scale)
        cut = GAIN_CUT ** (2 if self._owed_cut else 1)
        self.gain_scale = max(GAIN_FLOOR, self.gain_scale * cut)
        self._owed_cut = False
        return f'adaptation gain now x{self.gain_scale:g}'

    def _hold(self, state: str) -> None:
        """Enter a hold (frozen or PD only): its saturation count and easing start afresh."""
        self.state = state
        self._hold_mark = (self.ctrl.ticks, self.ctrl.saturated_ticks)
        self._eased_hold = False

    def _restore(self, readout, good: np.ndarray, gain: float) -> None:
        """Put a readout back to its snapshot at covariance ``gain`` (0: switched off, zero)."""
        if gain > 0.0:
            readout.w[:] = good
            readout.restart_covariance(gain)
        else:                                   # the fast learner, switched off
            readout.w[:] = 0.0
            self.ctrl._ff_fast[:] = 0.0

    def _cut_fast(self, reason: str) -> None:
        """
        Roll back and cut only the fast learner; the slow readout keeps learning.

        On probation (response 6) the step given back is taken again as well: a fast learner
        just back on goes off again (cut to x0.1, its second trip came within a second).
        """
        taken = ''
        if self._climb_on_probation():
            if self._take_step_back():
                self.ctrl.slow.restart_covariance(self.gain_scale)      # weights kept
                taken = f', the adaptation gain back at x{self.gain_scale:g}'
            taken += ' (the step given back taken again)'
        else:
            self.fast_cut = GAIN_CUT
        self._restore(self.ctrl.fast, self._good[1], self.readout_gains()[1])
        now = (f'its gain now x{self.fast_cut * self.gain_scale:g}{taken}' if self.fast_cut > 0.0
               else 'switched off again' + taken)
        self._record('rollback', f'{reason}: fast learner rolled back to its last good '
                                 f'snapshot, {now}; the slow readout learns on')
        self._reset_timers()
        self._disarm_time_if_done()

    def _time_arming_holds(self) -> bool:
        """Whether time may arm the echo figure: a capped fast learner, a slow reference."""
        return self.gain_capped and self._fast_suspect() and self._reference_below_bandwidth()

    def _reference_below_bandwidth(self) -> bool:
        """
        Whether the reference's own feedforward lies well below the loop's bandwidth.

        Only then is power above that bandwidth a symptom: with gains below the honest
        rule a feedforward that learned well reads 1.4-2.5 there (the reference's peak
        frequency 2.3 rad/s, kp/kd 3.2). Judged from the automatic scales' peaks (the peak
        velocity and acceleration may come from different parts of the reference: a large
        slow one then a small fast one reads low); with fixed scales, or no motion yet, it
        cannot be judged and is taken as below.
        """
        return self._bandwidth_dt >= ARM_BANDWIDTH_MARGIN * self._reference_rad_s() * self.ctrl.dt

    def _reference_rad_s(self) -> float:
        """Return the reference's own frequency from the scales' peaks (0: no motion seen)."""
        if not self.ctrl.normalizer.auto:
            return 0.0      # fixed scales: not judged (their peaks are kept for FIXED_SLACK)
        n, envelope = self.ctrl.n, self.ctrl.normalizer.envelope
        qd, qdd = envelope[n:2 * n], envelope[2 * n:]
        moving = qd > 0.0
        return float(np.max(qdd[moving] / qd[moving])) if moving.any() else 0.0

    def _fast_suspect(self) -> bool:
        """Whether the next trip is the fast learner's (its gain capped, then off)."""
        return self.ctrl.fast is not None and self.fast_cut == 1.0 and not self._owed_cut

    def _disarm_time_if_done(self) -> None:
        """Armed by time, the figure judges the fast learner only: disarm once it is gone."""
        if self._armed_by_time and not self._fast_suspect():
            self._disarm()

    def _disarm(self) -> None:
        """Learning restarts from zero: the echo figure waits for a snapshot or the time."""
        self._stats[CK.SV_ARMED] = 0.0
        self._armed_by_time = False
        self._arm_tick = self._ticks_from_now(ARM_AFTER_S)

    def _pd_only(self, reason: str) -> None:
        # The fast learner alone was not the problem: the next trip owes the cut skipped.
        self._owed_cut = self._owed_cut or self._only_fast_cut
        # Learning restarts from zero after the hold. A frozen readout (learning off) is
        # kept, unused, and so is one that met limits lowered live below what the motion
        # needs (a push base): at such limits rho misreads too (the error a saturation left
        # behind reads as the feedforward's), and zeroing lost what was learned for good
        # (the 5 kg pendulum at 0.85x its peak command: PD's error either way).
        if self.ctrl.learning_enabled and not self._stats[CK.SV_PUSH_BASE] > 0.0:
            for r in self.ctrl.readouts():
                r.w[:] = 0.0
        self._hold(PD_ONLY)
        self._disarm()                      # learning restarts from zero: a transient again
        # Each retry that fails costs a few bad seconds: until a good snapshot
        # resets it, the next PD-only hold is twice as long.
        hold_factor = self._stats[CK.SV_HOLD_FACTOR] = self._next_hold_factor
        self._next_hold_factor = min(MAX_BACKOFF, 2 * hold_factor)
        self._record('pd_only', f'{reason}: feedforward zeroed (PD only) for '
                                f'{self._hold_time_s * hold_factor:g} s')
        self._reset_timers()

    def _resume(self, reason: str) -> None:
        self.stop_easing()             # learning judges and learns from the full PD output
        if self.state == PD_ONLY:      # learning restarts from zero now
            self._arm_tick = self._ticks_from_now(ARM_AFTER_S)
        self.state = LEARNING
        self._record('resume', f'{reason}: learning resumes')
        self._snapshot_now()
        self._reset_timers()

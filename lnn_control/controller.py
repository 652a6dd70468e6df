"""
The adaptive controller: PD feedback plus a feedforward learned online.

feedback_error mode (Kawato's feedback-error learning): the reservoir sees the
desired trajectory and the measured state; a readout of it is added to the PD
command and trained by RLS with the PD output as its error, so whatever the
PD loop still has to correct is learned as feedforward and the PD part fades.

inverse_model mode (Waegeman et al. 2012): the readout learns the command
u(t-1) from the states at t-1 and t; applied to (state now, desired next
state) it gives the command that should reach the desired state.

Two readouts share the features: a slow one (lambda ~ 0.9999) holds the model,
a fast-forgetting one follows plant changes (payload, friction) within ticks.
The slow one learns the whole feedforward (its error is the PD output plus
what the fast one supplies), the fast one only the slow one's residual, so
what the fast one picks up after a change is consolidated into the slow model
instead of staying with the learner that forgets it. A change detector
restarts the covariances when the slow model's error jumps and stays up, so
it re-learns at its initial rate (see change_detector.py).
"""
from __future__ import annotations

import functools
import math
from typing import Any, Mapping, Sequence

import numpy as np

from . import control_kernels as CK
from . import forward_kernels as FK
from . import readout_file
from .change_detector import ChangeDetector
from .config import Config
from .forward_model import ForwardModel
from .inverse_model import InverseModelTick
from .normalization import input_layout, InputNormalizer
from .reservoir import Reservoir
from .rls import RLSReadout
from .rls import warm_up as rls_warm_up
from .supervisor import LearningSupervisor, PD_ONLY
from .waypoints import warm_up as waypoints_warm_up

_WARMUP_TICKS = 300
# A detected plant change restarts the slow covariance at this x its initial value.
RESTART_GAIN = 0.3


class AdaptiveController(InverseModelTick):
    """
    ``command = controller.step(measured, desired)`` once per control tick.

    measured: (position, velocity); desired: (position, velocity, acceleration);
    each an array of one value per joint. The returned command is a read-only
    view of a buffer the controller reuses: copy it to keep it.
    Invalid input raises ValueError and leaves every learned quantity untouched.
    """

    def __init__(self, overrides: Mapping[str, Any] | None = None, dt: float | None = None):
        self.config = cfg = Config(overrides)
        self.joints: tuple[str, ...] = cfg.joints
        self.n = n = len(self.joints)
        if n == 0:
            raise ValueError('joints must name at least one joint')
        if dt is not None and (problems := cfg.problems(
                {'control_rate_hz': 1.0 / dt if dt > 0 else math.inf}, started=False)):
            raise ValueError(f'dt={dt}: ' + '; '.join(problems))
        self.dt = float(dt) if dt is not None else 1.0 / cfg.control_rate_hz
        self.mode = cfg.controller.mode
        m, input_index = input_layout(self.mode, n)
        self.normalizer = InputNormalizer(
            n, cfg.input.normalization == 'auto',
            (cfg.input.position_scale, cfg.input.velocity_scale, cfg.input.acceleration_scale),
            input_index)
        self._state_scale = self.normalizer.scale[:2 * n]    # a view: follows the scales
        self.reservoir = Reservoir(m, dt=self.dt, **cfg.section('reservoir'))
        self._train_reservoir = self.reservoir.twin() if self.mode == 'inverse_model' else None
        self._allocate(m)
        # Running the reservoir here is also its JIT warm-up.
        self.feature_power, self.input_power = self.reservoir.feature_power(_WARMUP_TICKS)
        self._make_readouts()
        self.kp = self.kd = self.command_limit = None
        self.learning_enabled = True
        self._ff_limit = np.zeros(n)
        self._ff_excess = np.zeros(n)     # what the feedforward bound took off this tick
        self.feedforward_clipped = 0      # ticks on which the feedforward bound acted
        self.saturated_ticks = 0          # ticks with the command at command_limit
        self._saturated = False           # the previous command saturated: do not learn
        self._was_saturated = False       # ... as seen by this tick's learning step
        self._at_bound = 0                # this tick's feedforward was at its bound
        self._refused = False             # this tick's inverse-model step was refused
        self._pending = False             # act ran, its adapt has not
        self.saturation_pauses = 0        # learning steps skipped for that
        self.refused_steps = 0            # RLS steps refused as numerically unusable
        self.supervisor = None
        self.change_detector = ChangeDetector(n, self.dt, cfg.change_detection.threshold,
                                              enabled=cfg.change_detection.enabled)
        self._detector_mark = 0           # supervisor episodes seen by the detector
        self._k_scale = 0.0               # this tick's slow RLS gain factor (0: no step)
        self.forward = fm = self._make_forward_model(cfg.prediction)
        if fm is not None:   # its step bound to the tick's arrays (all made once, above)
            self._forecast_step = functools.partial(fm.step, self._phi, self._measured,
                                                    self._command, self._state_scale,
                                                    self.slow._g)
        self._apply(cfg)
        sv = cfg.supervisor
        self.supervisor = LearningSupervisor(self, sv.trip_ratio, sv.window_s, sv.hold_s,
                                             enabled=sv.enabled)
        self.ticks = 0
        self.learning_error = 0.0     # |PD output| (feedback_error) or |a-priori error|
        self.reset_state()
        _warm_up_kernels()

    # -- configuration -----------------------------------------------------------
    @property
    def params(self) -> Config:
        """Parameters in use (a read-only mapping; change them with update_params)."""
        return self.config

    def _allocate(self, m: int) -> None:
        n = self.n
        self._u = np.zeros(m)
        self._u_train = np.zeros(m)
        self._phi = np.zeros(m + self.reservoir.size)
        self._phi_train = np.zeros_like(self._phi)
        self._io = np.zeros((5, n))            # q, qd, q_d, qd_d, qdd_d of this tick
        self._measured = self._io[:2].reshape(-1)   # a view: q then qd
        self._wrap = np.zeros((CK.WRAP_ROWS, n))   # continuous joints (CK.unwrap_angles)
        self._wrap[CK.WRAP_MASK] = [j in self.config.continuous_joints for j in self.joints]
        self._prev = np.zeros((3, n))          # q, qd, command of the previous tick
        self._has_prev = False
        self._pd = np.zeros(n)
        self._ff = np.zeros(n)
        self._ff_fast = np.zeros(n)
        self._err = np.zeros(n)
        self._command = np.zeros(n)
        self._command_view = self._command.view()
        self._command_view.flags.writeable = False

    def _make_readouts(self) -> None:
        rls = self.config.rls
        # P0 = delta I with delta relative to the mean squared feature norm, so the
        # same setting means the same first-step gain for every neuron model.
        self.slow = RLSReadout(len(self._phi), self.n, rls.forgetting_factor,
                               rls.initial_covariance / self.feature_power)
        # The fast readout sees only the direct inputs: few features, all excited by
        # the reference, so forgetting acts on every direction of its covariance.
        # In feedback_error mode only the desired-trajectory ones (Kawato's FEL):
        # with a memory of a few ticks, a regression of the PD output on the
        # measured q, qd fits their noise, whose PD reaction is -kp, -kd times it,
        # so the fast readout would learn a second PD loop that, with the tick of
        # delay, chatters at the Nyquist rate (measured: 2.8x PD on a zoo arm).
        self._n_fast = 6 * self.n if self.mode == 'feedback_error' else self._u.size
        self.fast = (RLSReadout(self._n_fast, self.n, rls.fast_forgetting_factor,
                                rls.initial_covariance / self.input_power,
                                forgetting='directional')
                     if rls.fast_learner else None)

    def _make_forward_model(self, p) -> ForwardModel | None:
        horizons = prediction_horizons(p.enabled, self.mode, p.horizon_ticks,
                                       p.long_horizon_s, self.dt)
        if horizons is None:
            return None
        return ForwardModel(self.n, self._phi.size, horizons[:1], self.dt,
                            p.anomaly_threshold, self.config.rls.forgetting_factor,
                            memory_horizon=horizons[1])

    def update_params(self, changes: Mapping[str, Any]) -> None:
        """
        Apply live settings (gains, limits, forgetting, learning on/off).

        Validates everything first (``Config.apply``), so a refused change
        applies nothing; a new value of a read-only setting is refused.
        """
        self.adapt()
        self._apply(self.config.apply(changes))

    def _apply(self, values: Mapping[str, Any]) -> None:
        """Carry validated settings into the parts that use them."""
        limits = (None if self.command_limit is None
                  else (self.command_limit.copy(), self._ff_limit.copy()))
        for name, value in values.items():
            group, _, attr = name.rpartition('.')
            if name in ('kp', 'kd', 'command_limit'):
                arr = np.broadcast_to(np.asarray(value, dtype=float), (self.n,)).copy()
                if (name != 'command_limit' and self.supervisor is not None
                        and not np.array_equal(arr, getattr(self, name))):
                    self.supervisor.restore_pd(f'{name} changed')   # new gains: judged afresh
                setattr(self, name, arr)
            elif group == 'supervisor' and self.supervisor is not None:
                setattr(self.supervisor, attr, type(getattr(self.supervisor, attr))(value))
            elif group == 'change_detection':
                setattr(self.change_detector, attr,
                        type(getattr(self.change_detector, attr))(value))
            elif name == 'prediction.anomaly_threshold' and self.forward is not None:
                self.forward.set_threshold(value)
            elif name == 'learning_enabled':
                if bool(value) != self.learning_enabled:
                    self.change_detector.restart()    # the error level before no longer applies
                self.learning_enabled = bool(value)
                if not self.learning_enabled and self.supervisor is not None:
                    self.supervisor.stop_easing()     # learning off: plain PD at once
                    self.supervisor.restore_pd('learning switched off')
            elif name in ('rls.forgetting_factor', 'rls.fast_forgetting_factor'):
                self._apply_forgetting()
        if self.command_limit is not None:
            np.multiply(self.command_limit, self.config.feedforward_limit, out=self._ff_limit)
            if self.supervisor is not None:
                self.supervisor.set_gains(self.kp, self.kd, self.command_limit)
                if limits is not None and not (np.array_equal(limits[0], self.command_limit)
                                               and np.array_equal(limits[1], self._ff_limit)):
                    self.supervisor.limits_changed(bool(np.any(self.command_limit < limits[0])
                                                        or np.any(self._ff_limit < limits[1])))
            self.change_detector.set_gains(self.kp, self.kd, self.command_limit)

    def readouts(self) -> Sequence[RLSReadout]:
        return (self.slow,) if self.fast is None else (self.slow, self.fast)

    @property
    def fast_active(self) -> bool:
        """Say whether the fast learner exists and the supervisor has not switched it off."""
        return self.fast is not None and self.supervisor.fast_cut > 0.0

    # -- learning state ----------------------------------------------------------
    def reset_state(self) -> None:
        """Forget the reservoir state and the previous tick (not the readout)."""
        self.adapt()
        self.change_detector.restart()    # the reservoir's restart is a transient
        if self.forward is not None:
            self.forward.restart()
        self.reservoir.reset()
        if self._train_reservoir is not None:
            self._train_reservoir.reset()
        self._has_prev = False

    def reset_learning(self) -> None:
        """
        Forget the learned readouts (P back to its initial value) and the automatic scales.

        The scales are learned too: one reference sent in the wrong unit (degrees) grew
        them for good, and a fresh start should not keep that.
        """
        self.adapt()
        self.normalizer.reset()
        relative = self.config.rls.initial_covariance
        self.slow.reset(relative / self.feature_power)
        if self.fast is not None:
            self.fast.reset(relative / self.input_power)
        self.supervisor.reset()
        self.change_detector.restart()
        if self.forward is not None:
            self.forward.reset()

    def save(self, path: str) -> None:
        """Save the readouts with their joints, mode, input scales and supervisor cut."""
        readout_file.save_controller(self, path)     # pending learning first (controller_arrays)

    def load(self, path: str | readout_file.LoadedReadout) -> str | None:
        """
        Load readouts saved by ``save``; refuses a file for other joints or shapes.

        ``path`` may also be a file already read and checked (``readout_file.read_controller``,
        off the control thread): then only the swap happens here. Returns how a fast readout
        only one side has was taken (``load_controller``).
        """
        self.adapt()
        before = self.normalizer.scale.copy()
        note = readout_file.load_controller(self, path)
        if self.forward is not None:    # not saved: its weights follow the loaded scales
            self.forward.rescale_inputs(self.normalizer.input_factors(before))
        self.change_detector.restart()
        self._apply_forgetting()    # the live parameters stay their source of truth
        return note

    def _apply_forgetting(self) -> None:
        """Give every readout its forgetting factor from the parameters (as at start-up)."""
        rls = self.config.rls
        self.slow.forgetting_factor = rls.forgetting_factor
        if self.fast is not None:
            self.fast.forgetting_factor = rls.fast_forgetting_factor
        if self.forward is not None:
            self.forward.set_forgetting_factor(rls.forgetting_factor)

    # -- the control tick ----------------------------------------------------------
    def _features(self, reservoir: Reservoir, u: np.ndarray, phi: np.ndarray) -> None:
        m = u.size
        phi[:m] = u
        phi[m:] = reservoir.step(u)

    def _load_io(self, measured, desired) -> bool:
        """Load and check this tick's inputs into ``self._io``; True when an input scale grew."""
        io, n, norm = self._io, self.n, self.normalizer
        try:
            lengths = len(measured), len(desired)
        except TypeError:           # None, a number: no length
            lengths = None
        if lengths != (2, 3):
            raise ValueError('measured is (position, velocity), desired is '
                             '(position, velocity, acceleration)')
        try:        # float64 vectors, the usual case: one kernel call
            code = CK.load_io(*measured, *desired, io, norm.table, norm.headroom, self._wrap)
        except TypeError:
            code = None     # other types: the same checks the slow way
        if code == CK.IO_VALID:
            return False
        if code == CK.IO_SCALES_GREW:
            norm.grew()
            return True
        values = []
        for value in (*measured, *desired):
            try:
                value = np.asarray(value, dtype=float)
            except (TypeError, ValueError):
                raise ValueError(f'expected {n} numbers per quantity (joints '
                                 f'{list(self.joints)}), got {type(value).__name__}') from None
            if value.shape != (n,):
                raise ValueError(f'expected {n} values per quantity (joints {list(self.joints)}), '
                                 f'got shape {value.shape}')
            values.append(value)
        if not np.abs(values).max() <= CK.MAX_INPUT:      # (NaN compares False: refused too)
            raise ValueError('non-finite measurement or reference refused (or one above '
                             f'{CK.MAX_INPUT:g} in magnitude)')
        io[:] = values          # only now: a refused tick leaves the last valid one in io
        CK.unwrap_angles(io, self._wrap)
        return norm.track(io)

    @property
    def position_offset(self) -> np.ndarray:
        """
        Per joint what the last tick added to the measured position (multiples of 2 pi).

        Non-zero only for ``continuous_joints`` (``CK.unwrap_angles``): subtracted from
        the positions the controller works with, they are in the measurement's own branch.
        """
        return self._wrap[CK.WRAP_MEASURED]

    @property
    def continuous(self) -> np.ndarray:
        """Return per joint whether it is one of ``continuous_joints`` (bool)."""
        return self._wrap[CK.WRAP_MASK] != 0.0

    def step(self, measured, desired) -> np.ndarray:
        """Run one whole tick: ``act``, then ``adapt``; return the command."""
        command = self.act(measured, desired)
        self.adapt()
        return command

    def act(self, measured, desired) -> np.ndarray:
        """
        Compute this tick's command from the readout as it stands; return it.

        The tick's learning waits for ``adapt``, so a front end can send the command
        first: the readout predicts before it learns, so the command never depended on
        the O(N^2) RLS step, the supervisor or the forward model, and they run after it
        is out. (In ``inverse_model`` mode the step on the previous tick's transition,
        which this command uses, stays here.) An ``act`` (or a reset, load or parameter
        change) finishes a previous tick's pending learning first.
        """
        self.adapt()
        try:
            grew = self._load_io(measured, desired)
        except ValueError:
            # refused: a front end applies zero (or holds), not the last command, so the
            # inverse model has no transition to learn from at the next tick
            self._has_prev = False
            raise
        if grew:
            self._rescale_readouts()
        io = self._io
        self._refused = False
        self._k_scale = 0.0
        self._was_saturated = self._saturated
        if self.mode == 'feedback_error':
            CK.feedback_error_inputs(io, self.normalizer.scale, self.kp, self.kd, self._pd, self._u)
            self._features(self.reservoir, self._u, self._phi)
            self._predict()
        else:
            q, qd, q_d, qd_d, _ = io
            np.subtract(q_d, q, out=self._pd)
            self._pd *= self.kp
            np.subtract(qd_d, qd, out=self._err)
            self._err *= self.kd
            self._pd += self._err
            self._refused = not self._inverse_model_tick(*io)
        if self.supervisor.state == PD_ONLY:   # a frozen readout keeps its weights: unused
            self._ff[:] = 0.0
        if self.supervisor.easing:      # out of a cycle at the limits (supervisor.py)
            self._pd *= self.supervisor.pd_scale(self.ticks)
        elif self.supervisor.pd_gain != 1.0:   # a loop that keeps cycling: kept softer
            self._pd *= self.supervisor.pd_gain
        code = CK.bounded_command(self._pd, self._ff, self._ff_limit, self.command_limit,
                                  self._command, self._ff_excess)
        self._at_bound = code & 1
        self._saturated = code >= 2
        if code:
            self.feedforward_clipped += self._at_bound
            self.saturated_ticks += self._saturated
        self._pending = True
        return self._command_view

    def adapt(self) -> None:
        """
        Learn from the tick ``act`` computed (RLS, supervisor, forward model); else nothing.

        Learning from this tick's PD output only changes the commands of later ticks.
        """
        if not self._pending:
            return
        self._pending = False
        refused = self._refused
        if self.mode == 'feedback_error':
            # Conditional learning (anti-windup): when the command saturates, the PD
            # output is no longer the error of what was applied; do not learn from it.
            if self._learning_now():
                if self._was_saturated:
                    self.saturation_pauses += 1
                else:
                    refused = not self._learn(self._phi, self._pd, self._ff_excess)
            self.learning_error = float(np.sqrt(self._pd @ self._pd))
        # nothing learned to judge: PD alone (a hold runs on, to its end)
        if self.learning_enabled or self._ff.any() or not self.supervisor.learning_allowed:
            self.supervisor.observe(self._pd, self._ff, self._command, self._at_bound, refused)
        if self.forward is not None and self._forecast_step(self._k_scale) & 1:
            self._anomaly()
        io = self._io
        self._prev[0], self._prev[1], self._prev[2] = io[0], io[1], self._command
        self._has_prev = True
        self.ticks += 1

    @property
    def saturated(self) -> bool:
        """Whether the last command was at its limit."""
        return self._saturated

    def tick_terms(self) -> tuple[np.ndarray, ...]:
        """Return views of the last tick's measured, desired position, PD effort, feedforward."""
        return self._io[0], self._io[2], self._pd, self._ff

    def _predict(self, phi: np.ndarray | None = None) -> None:
        phi = self._phi if phi is None else phi
        self.slow.predict(phi, self._ff)
        if self.fast_active:
            self.fast.predict(phi[:self._n_fast], self._ff_fast)
            self._ff += self._ff_fast

    def _learning_now(self) -> bool:
        return self.learning_enabled and self.supervisor.learning_allowed

    def _learn(self, phi: np.ndarray, error: np.ndarray,
               clipped: np.ndarray | None = None) -> bool:
        """
        Take one RLS step of both readouts; False when one was refused as numerically unusable.

        (That readout is then unchanged and the supervisor acts.) ``error`` less ``clipped``
        is the a-priori error of the summed readouts. Feedback-error learning passes the PD
        output and what the feedforward bound took off their prediction: their target is the
        feedforward applied plus the PD output (learned as if the unbounded prediction had
        been applied, a bounded or switched-off feedforward wound the readout up to 15x the
        command limit); the inverse model passes its own error, nothing clipped. The slow
        readout learns the whole feedforward: its own a-priori error adds back what the fast
        one supplied. The fast one learns what the slow one leaves after its step (its
        a-posteriori residual) minus its own prediction.
        """
        err = self._err
        if clipped is None:
            np.copyto(err, error)
        else:
            np.subtract(error, clipped, out=err)
        fast = self.fast_active
        if fast:
            err += self._ff_fast
        if self._detector_mark != self.supervisor.episodes:
            self._detector_mark = self.supervisor.episodes   # learning paused since
            self.change_detector.restart()
        if self.change_detector.observe(err):
            self.plant_changed('slow readout error rose and stayed up')
        try:
            factor = self.slow.update(phi, err)
            if not self.slow.frozen:
                self._k_scale = factor / self.slow.forgetting_factor   # 1 / (lambda + r)
            if fast:
                err *= factor                  # what the slow one left after its step
                err -= self._ff_fast
                self.fast.update(phi[:self._n_fast], err)
        except ValueError:
            self.refused_steps += 1
            return False
        return True

    def _anomaly(self) -> None:
        """Record the forward model's anomaly; it may restart the covariances."""
        self.forward.detector.record(self.ticks, 'one-step prediction error rose and stayed up')
        if self.config.prediction.anomaly_restarts_learning:
            self.plant_changed('the forward model flagged an anomaly')

    def plant_changed(self, reason: str) -> None:
        """
        Restart the covariances after a plant change, keeping the weights, to re-learn fast.

        Found by the change detector, or told by a user (a tool change, a grasp). Both restart
        at the supervisor's cuts, the slow one at RESTART_GAIN x its initial value: at the full
        value 2-link arms oscillated while re-learning (zoo arm_heavy_tip, seed 2), at 0.1 the
        pendulums kept half the benefit (docs/zoo.md). O(N^2): an event, not a tick.
        """
        self.adapt()                     # a pending tick learns on the old covariance
        self.supervisor.plant_changed()
        gains = self.supervisor.readout_gains()
        self.slow.restart_covariance(gains[0] * RESTART_GAIN)
        if self.fast_active:
            self.fast.restart_covariance(gains[1])
        self.change_detector.restart()
        self.change_detector.record(self.ticks, f'{reason}: covariances restarted')

    def _rescale_readouts(self) -> None:
        """Keep the direct inputs' weights consistent with a changed scale (reservoir: re-learn)."""
        factors = self.normalizer.input_factors()
        per_readout = (np.concatenate([factors, np.ones(self.reservoir.size)]),
                       factors[:self._n_fast])
        for readout, f, gain in zip(self.readouts(), per_readout,
                                    self.supervisor.readout_gains()):
            if gain > 0.0:                   # 0: the fast learner is off (weights zero)
                readout.rescale_inputs(f, gain)
        self.supervisor.rescale_snapshots(per_readout)    # a rollback restores these units
        if self.forward is not None:
            self.forward.rescale_inputs(factors)
        self.change_detector.restart()     # P restarted: a learning transient, not a change

    @property
    def scale_changes(self) -> int:
        return self.normalizer.changes

    @property
    def input_scales(self) -> dict[str, np.ndarray]:
        """Normalisers in use (automatic or explicit), per joint."""
        return self.normalizer.scales


def prediction_horizons(enabled: bool, mode: str, horizon_ticks: int, long_horizon_s: float,
                        dt: float) -> tuple[int, int] | None:
    """
    Return the forward model's horizons (ticks; the long one 0: none), or None for no model.

    From the ``prediction.*`` settings: what the node publishes on ``~/prediction`` and
    ``~/long_prediction``, and so what a recording of it holds.
    """
    if not enabled or mode != 'feedback_error':
        return None     # inverse_model: its slow readout learns on other features
    return int(horizon_ticks), int(round(long_horizon_s / dt))


def _warm_up_kernels() -> None:
    """
    Compile (or load from numba's cache) every per-tick kernel now.

    The first control tick then does not pay for it (the reservoir's run at construction).
    """
    rls_warm_up()
    CK.warm_up()
    FK.warm_up()
    waypoints_warm_up()

"""
One control tick for every front end: the ROS node, the offline loop, benchmarks.

Wraps the ``AdaptiveController`` (and through it the learning supervisor) with
what a tick needs besides the control law: sensor freshness and the stale-sensor
action, the reservoir restart when sensors resume or the clock jumps, and a
last guard that never lets a non-finite command out. ROS-free: times are plain
nanoseconds of whatever clock the front end runs on.
"""
from __future__ import annotations

import math

import numpy as np

from . import control_kernels as CK
from .controller import AdaptiveController
from .schema import by_name
from .supervisor import LEARNING

STALE_ACTIONS = by_name()['stale_sensor_action'].choices

# What ``tick`` reports, for the front end to log (once per episode).
STALE, RESUMED, REFUSED = 'stale', 'resumed', 'refused'
# Per joint, what ros2_controllers' pid_controller reports on ~/controller_state.
STATE_FIELDS = ('reference', 'feedback', 'error', 'pd_effort', 'feedforward', 'command')
# A joint's command whose lag-1 correlation is below this flips sign most ticks: the
# loop oscillates at the Nyquist frequency (a kd too high for the rate). A tracking
# command reads near +1, white measurement noise through kd near 0.
CHATTER_WARN = -0.5
# With the feedforward zeroed (PD only), the command at its limit this often: the PD
# loop itself saturates or oscillates (every such hold over the named zoo and 60 random
# plants was on a plant whose PD loop is unstable or in a limit cycle).
PD_ONLY_SATURATION_WARN = 0.1
# The time of the latest measurement after a clock jump: none on the new clock yet.
NO_MEASUREMENT_NS = -(1 << 62)


class ControlLoop:
    def __init__(self, controller: AdaptiveController, sensor_timeout_s: float,
                 stale_action: str = 'zero'):
        self.controller = controller
        self.command = np.zeros(controller.n)
        self.set_timeout(sensor_timeout_s)
        self.stale_action = stale_action
        self.sensor_time_ns = 0
        self.stale = False
        self.stale_episodes = 0
        self.refusal = ''                   # why the last refused tick was refused

    def set_timeout(self, sensor_timeout_s: float) -> None:
        """Set how old the latest measurement may be [s]; refuse a value not finite and > 0."""
        if not (math.isfinite(sensor_timeout_s) and sensor_timeout_s > 0.0):
            raise ValueError(f'sensor_timeout_s must be finite and > 0; got {sensor_timeout_s}')
        self.timeout_ns = int(sensor_timeout_s * 1e9)

    @property
    def stale_action(self) -> str:
        """Return what a stale tick commands: 'zero' effort or 'hold' the last command."""
        return self._stale_action

    @stale_action.setter
    def stale_action(self, action: str) -> None:
        # (a misspelt 'zeros' used to mean hold: a robot pushed on with its last torque)
        if action not in STALE_ACTIONS:
            raise ValueError(f"stale_action must be one of {', '.join(STALE_ACTIONS)}; "
                             f'got {action!r}')
        self._stale_action = action

    def sensor_received(self, time_ns: int) -> None:
        """Record that a valid measurement arrived (or was stamped) at ``time_ns``."""
        self.sensor_time_ns = time_ns

    def clock_jumped(self) -> None:
        """
        Handle time going backwards or a clock step: forget the reservoir state.

        A measurement from before the jump has no age on the new clock (taken as measured
        at 0 it was fresh again after a jump to near 0): the loop is stale until
        ``sensor_received``, and control then resumes as after any drop-out (RESUMED: a
        front end blends from where the robot is; a jump in a drop-out skipped that
        blend). Not counted as a stale episode. What was learned is kept.
        """
        self.stale = True
        self.sensor_time_ns = NO_MEASUREMENT_NS
        self.controller.reset_state()

    def tick(self, now_ns: int, measured, desired) -> str | None:
        """Run one whole tick, ``act`` then ``adapt``; return this tick's event or None."""
        event = self.act(now_ns, measured, desired)
        return self.adapt() or event

    def act(self, now_ns: int, measured, desired) -> str | None:
        """
        Compute ``self.command`` for time ``now_ns``; return this tick's event or None.

        Returns STALE when a stale episode starts, RESUMED when it ends, REFUSED when the
        controller refused the inputs (``self.refusal`` says why; zero effort), else None.
        The tick's learning runs in ``adapt``, after the front end has sent the command.
        """
        event = None
        if now_ns - self.sensor_time_ns > self.timeout_ns:
            if not self.stale:
                self.stale = True
                self.stale_episodes += 1
                event = STALE
            if self.stale_action == 'zero':
                self.command[:] = 0.0
            else:               # held, within the limit as it is now (it may be set lower)
                limit = self.controller.command_limit
                np.clip(self.command, -limit, limit, out=self.command)
        else:
            if self.stale:
                self.stale = False
                self.controller.reset_state()   # the reservoir must not bridge the gap
                event = RESUMED
            try:
                self.command[:] = self.controller.act(measured, desired)
            except ValueError as e:
                self.command[:] = 0.0
                self.refusal = str(e)
                event = REFUSED
        # (cannot happen with a finite readout; |command| <= 1e6: the square sum is finite
        # unless an entry is not, and it allocates no array)
        if not math.isfinite(self.command @ self.command):
            self.command[:] = 0.0
        return event

    def adapt(self) -> str | None:
        """
        Learn from the tick ``act`` computed (nothing after a stale or refused tick).

        Returns REFUSED (``self.refusal`` says why) if the learning step refused its
        inputs; the command already sent stands.
        """
        try:
            self.controller.adapt()
        except ValueError as e:
            self.refusal = str(e)
            return REFUSED
        return None

    def state(self, out: np.ndarray) -> np.ndarray:
        """
        Fill ``out`` (joints x STATE_FIELDS) with this tick's terms; allocates nothing.

        ``command`` is what was sent (zero or held while sensors are stale); the
        other columns are those of the controller's latest computed tick, positions in the
        branch the measurement came in (continuous joints, ``position_offset``).
        """
        q, q_d, pd, ff = self.controller.tick_terms()
        CK.state_table(q_d, q, pd, ff, self.command, self.controller.position_offset, out)
        return out

    def sensor_age_s(self, now_ns: int) -> float:
        """Age of the latest measurement (never negative: a stamp ahead of ``now_ns`` is 0)."""
        return max(0.0, (now_ns - self.sensor_time_ns) * 1e-9)

    def problems(self) -> list[str]:
        """Return what a front end should report as wrong with the loop or the learning."""
        state = self.controller.supervisor.state
        return ((['joint_states stale'] if self.stale else [])
                + ([f'learning supervisor: {state}'] if state != LEARNING else [])
                + list(self.pd_health().values()))

    def pd_health(self) -> dict[str, str]:
        """
        Return what is wrong with the PD loop itself, by kind ('chatter', 'saturation', 'detuned').

        Learning cannot fix any of them: a front end reports them (and logs each kind once
        when it appears).
        """
        sv = self.controller.supervisor
        correlation, joint = sv.chatter
        saturation = sv.pd_only_saturation
        out = {}
        if correlation < CHATTER_WARN:
            out['chatter'] = (f'command on {self.controller.joints[joint]} flips sign every '
                              f'tick (lag-1 correlation {correlation:.2f}): the PD loop '
                              'chatters at the control rate, lower its kd')
        if saturation > PD_ONLY_SATURATION_WARN:
            out['saturation'] = (f'with the feedforward zeroed the command is at its limit '
                                 f'{saturation:.0%} of the time: the PD loop itself '
                                 'saturates or oscillates (check kp, kd and command_limit '
                                 'against the actuation delay)')
        if sv.pd_gain < 1.0:
            out['detuned'] = (f'PD output kept at {sv.pd_gain:.3g}x: at full gains the loop '
                              'fell back into its cycle at the limits (unstable on this '
                              'plant: check kp and kd against the actuation delay, '
                              'lnn-control gains --delay-ticks)')
        return out

    def status(self) -> list[tuple[str, object]]:
        """
        Return the loop's and the learning's state as (label, value) pairs.

        What a front end reports (the node on /diagnostics).
        """
        ctrl = self.controller
        sv, detector = ctrl.supervisor, ctrl.change_detector
        return [
            ('learning', 'on' if ctrl.learning_enabled else 'off'),
            ('learning error', ctrl.learning_error),
            ('sensor stale', self.stale),
            ('stale episodes', self.stale_episodes),
            ('readout updates', ctrl.slow.updates),
            ('supervisor state', supervisor_state(ctrl)),
            ('supervisor error ratio estimate', sv.ratio),
            ('supervisor oscillation ratio', sv.oscillation),
            ('command lag-1 correlation (lowest joint)', sv.chatter[0]),
            ('PD-only hold: ticks at the command limit', sv.pd_only_saturation),
            ('supervisor saturation the limits alone cause', sv.push_base),
            *((f'supervisor {k}', v) for k, v in sv.counts.items()),
            ('supervisor last intervention', _last_intervention(sv)),
            ('supervisor gain scale', sv.gain_scale),
            ('supervisor PD output scale', sv.pd_gain),
            ('supervisor fast learner gain scale',
             sv.readout_gains()[1] if ctrl.fast is not None else 0.0),
            ('supervisor learning gain cap per step (0: none)', ctrl.slow.gain_cap),
            ('plant changes detected or reported', len(detector.detections)),
            ('change detector score', detector.score),
            ('feedforward limited ticks', ctrl.feedforward_clipped),
            ('command saturated ticks', ctrl.saturated_ticks),
            ('input scale changes', ctrl.scale_changes),
            *((f'input scale {k}', ' '.join(f'{x:.4g}' for x in v))
              for k, v in ctrl.input_scales.items()),
            *self._prediction_status(),
        ]

    def _prediction_status(self) -> list[tuple[str, object]]:
        fm = self.controller.forward
        if fm is None:
            return [('prediction', 'off')]
        return [*((f'prediction error {h} ticks ahead (RMS, input-scale units)', e)
                  for h, e in zip(fm.horizons, fm.error_rms)),
                ('prediction anomaly score', fm.detector.score),
                ('prediction anomalies', len(fm.detector.detections))]


def supervisor_state(controller: AdaptiveController) -> str:
    """
    Say the learning supervisor's state as a user reads it.

    With learning off it still watches the (frozen) readout, but nothing is learning.
    """
    sv = controller.supervisor
    if not sv.enabled:
        return 'disabled'
    if sv.state == LEARNING and not controller.learning_enabled:
        return 'watching (learning off)'
    return sv.state


def _last_intervention(supervisor) -> str:
    """Say the supervisor's last intervention as ``<action>: <reason>`` ('' if none yet)."""
    if not supervisor.interventions:
        return ''
    last = supervisor.interventions[-1]
    return f'{last.action}: {last.reason}'

"""
``lnn_sim``: a MuJoCo plant behind the same topics as a ros2_control robot.

Interface (what joint_state_broadcaster + a forward_command_controller with
``interface_name: effort`` offer, so ``lnn_controller`` needs no change
between this simulator and a real robot)::

    node -> joint_states  (sensor_msgs/JointState, RELIABLE, every 1-dof joint:
                           position, velocity and the applied effort)
    commands -> node      (std_msgs/Float64MultiArray, RELIABLE, one effort per
                           entry of ``joints``, in that order)
    node -> /clock        (rosgraph_msgs/Clock, lock-step mode only)
    node -> /diagnostics  (diagnostic_msgs/DiagnosticArray, 1 Hz wall clock)
    ~/reset               (std_srvs/Trigger)

Parameters: ``lnn_control.schema.SIMULATOR`` (``docs/parameters.md``).

Lock-step mode (``lockstep: true``, the default) -- deterministic on any load
------------------------------------------------------------------------------
The simulator owns simulated time and publishes it on ``/clock``; the
controller runs with ``use_sim_time: true``, so its control timer fires when
``/clock`` advances.

* On each valid command: hold that effort for ``control_period_s`` of physics
  (``control_period_s / timestep`` MuJoCo steps), then publish ``joint_states``
  stamped with the new simulated time and only THEN ``/clock`` with that time.
  Simulated time advances exactly ``control_period_s`` per command, never on
  its own.
* Start-up: a controller publishes nothing before its first timer tick, and
  that tick needs ``/clock`` to advance. So until the first valid command
  arrives the simulator *idles*: it advances time by one control period (state,
  then clock) every ``idle_period_s`` (50 ms) of wall time, and only every 0.5 s
  once a ``commands`` publisher is matched (its first command is then on the way,
  and idling on could overtake it). The robot is held at its initial state
  meanwhile, as on its brakes: stepped with zero effort, an arm loaded by gravity
  fell and swung for the seconds a controller takes to start (a user's 3-joint
  arm: 0.9 s of free fall, 2.8 rad, and control began at its limits). The first
  command is applied at the
  next idle tick, the latest one if several arrived meanwhile; from then on
  time advances ONLY on commands.
* Stall guard: if no command arrives for ``resend_after_s`` (1 s) of wall
  time after start-up, the last ``joint_states`` and ``/clock`` are published
  again with the SAME time (no advance). rclpy subscribes ``/clock`` best
  effort with depth 1, so one lost message would otherwise stop the loop; a
  repeated time is harmless (the timer does not fire twice for one time and
  the controller accepts a repeated stamp).
* Sim time never goes backwards: ``~/reset`` restores the initial state but
  time keeps running (a controller treats a backwards jump as a restart).

The protocol's known limits (ordering across topics) are in docs/architecture.md.

Real-time mode (``lockstep: false``): a wall-clock timer at
``publish_rate_hz`` advances the physics (timestep ``1 / physics_rate_hz``) to
the elapsed wall time and publishes ``joint_states`` stamped with the node
clock; no ``/clock``. The latest valid command is held (zero-order hold), so
its latency is up to one publish period. After a stall longer than 0.1 s the
lost time is skipped, not replayed (counted as ``dropped time``; /diagnostics is WARN
while any was dropped since its previous report).

Commands of the wrong length, with NaN/Inf or beyond MuJoCo's 1e10 limit for
controls are rejected: counted by reason (``length_mismatch``, ``non_finite``,
``implausible``; see /diagnostics: WARN while any came since its previous report), a
warning at most every 5 s per reason, the last valid effort is kept and, in lock-step,
time does not advance.

``payload_scale`` is a live parameter: it scales the mass and inertia of the
end link from the next physics step on.
"""
from __future__ import annotations

import sys
from typing import Any, Optional

from diagnostic_msgs.msg import DiagnosticArray
import numpy as np
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.parameter import Parameter
from rosgraph_msgs.msg import Clock as ClockMsg
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import Trigger

from . import common
from . import parameters as RP
from .conversions import set_stamp
from .. import schema
from ..config import Config
from ..plants import Plant

NODE_NAME = 'lnn_sim'
LENGTH_MISMATCH = 'length_mismatch'
NON_FINITE = 'non_finite'
IMPLAUSIBLE = 'implausible'
MAX_EFFORT = 1e10       # MuJoCo's mjMAXVAL: above it a control is 'huge' and zeroed

# Lock-step idle period once a controller is matched (see the module docstring).
IDLE_WITH_CONTROLLER_NS = 500_000_000


class SimNode(Node):
    """
    The ``lnn_sim`` node; see the module docstring.

    ``idle_period_s`` and ``resend_after_s`` (wall seconds, not ROS parameters)
    are the start-up idle tick and the lock-step stall guard. Invalid
    parameters raise ValueError (``main`` turns it into exit code 1).
    """

    def __init__(self, node_name: str = NODE_NAME, *, idle_period_s: float = 0.05,
                 resend_after_s: float = 1.0, **kwargs: Any):
        super().__init__(node_name, **kwargs)
        values = RP.declare(self, schema.SIMULATOR)     # (its ValueError says so already)
        try:
            self.config = cfg = Config(values, schema.SIMULATOR)
        except ValueError as e:
            raise ValueError(f'invalid parameters: {e}') from None
        self.lockstep = cfg.lockstep
        self.paused = cfg.paused and self.lockstep
        self.control_period_s = cfg.control_period_s
        self.period_ns = int(round(self.control_period_s * 1e9))
        self._make_plant()
        # Scheduled change, counted in control periods after the first command so a
        # lock-step run changes the plant at the same tick of the loop every time; in
        # real time, in simulated seconds after the first command.
        change_s = cfg.payload_change.time_s
        self._change_at_step = (int(round(change_s / self.control_period_s))
                                if self.lockstep and change_s > 0 else None)
        self._change_at_ns = (int(round(change_s * 1e9))
                              if not self.lockstep and change_s > 0 else None)
        self._first_command_ns: Optional[int] = None     # real time: sim time of it
        self._change_scale = cfg.payload_change.scale
        self._init_counters(resend_after_s)
        RP.attach(self, schema.SIMULATOR, None, self._apply_parameters,
                  combined=self.config.combined_problems)
        self._create_interfaces(idle_period_s)
        # (in real time stamped by the node clock, as every later state: not 1970)
        self._publish_state(self.time_ns if self.lockstep else self.get_clock().now().nanoseconds)
        if self.lockstep:
            self._publish_clock()
        self.get_logger().info(
            f'{cfg.model}: joints {list(self.joints)} (commands in this order), '
            + (f'lock-step, {self.control_period_s:g} s per command, publishing /clock'
               if self.lockstep else
               f'real time, physics {cfg.physics_rate_hz:g} Hz, '
               f'joint_states {cfg.publish_rate_hz:g} Hz'))

    def _make_plant(self) -> None:
        """Build the MuJoCo plant at its initial positions; ValueError on invalid settings."""
        cfg = self.config
        try:
            self.plant = plant = Plant(cfg.model, list(cfg.joints) or None)
        except ValueError as e:
            raise ValueError(f'invalid parameters: {e}') from e
        self.joints = plant.joint_names
        try:
            self._q0 = plant.initial_positions(cfg.initial_positions)
        except ValueError as e:
            raise ValueError(f'invalid parameters: {e}') from None
        if self.lockstep:
            try:
                plant.steps_per(self.control_period_s)
            except ValueError as e:
                raise ValueError(f'invalid parameters: control_period_s: {e}') from None
        else:
            plant.model.opt.timestep = 1.0 / cfg.physics_rate_hz
        plant.payload_scale = cfg.payload_scale
        plant.reset(self._q0)

    def _init_counters(self, resend_after_s: float) -> None:
        n = self.plant.n
        self._commanded_steps = 0
        self.time_ns = 0                 # simulated time (lock-step), never decreases
        self._effort = np.zeros(n)       # last valid command
        self._pending: Optional[np.ndarray] = None
        self.started = False             # lock-step: first valid command applied
        self.rejected = {LENGTH_MISMATCH: 0, NON_FINITE: 0, IMPLAUSIBLE: 0}
        self._refusal_log = common.RefusalLog(self)
        self.commands_accepted = 0
        self.steps = 0                   # control periods (lock-step) or physics chunks advanced
        self.idle_steps = 0
        self.resends = 0
        self.states_published = 0
        self.clocks_published = 0
        self.resets = 0
        self.dropped_time_s = 0.0
        self._steady = Clock(clock_type=ClockType.STEADY_TIME)
        self._last_progress_ns = self._steady.now().nanoseconds
        self._resend_after_ns = int(resend_after_s * 1e9)
        self._diag_mark = (self._last_progress_ns, 0)
        self._diag_rejected = 0          # commands rejected up to the last diagnostics
        self._diag_dropped_s = 0.0       # dropped time up to the last diagnostics
        self._diag_blow_ups = 0          # MuJoCo state resets up to the last diagnostics
        self._state = JointState()
        self._state.name = list(self.plant.all_joint_names)
        self._clock_msg = ClockMsg()

    def _create_interfaces(self, idle_period_s: float) -> None:
        """Topics, the reset service and the timers."""
        self._state_pub = self.create_publisher(JointState, 'joint_states', common.LATCHED_QOS)
        self._diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._clock_pub = (self.create_publisher(ClockMsg, '/clock', common.CLOCK_QOS)
                           if self.lockstep else None)
        sub = self.create_subscription(Float64MultiArray, 'commands', self._on_command,
                                       common.COMMAND_QOS)
        self._command_topic = sub.topic_name
        self.create_service(Trigger, '~/reset', self._srv_reset,
                            qos_profile=common.SERVICE_QOS)
        # Internal timers run on the steady clock: this node is the time source and
        # must keep working even if someone starts it with use_sim_time.
        if self.lockstep:
            self._timer = self.create_timer(idle_period_s, self._on_idle_tick,
                                            clock=self._steady)
        else:
            self._physics_dt = self.plant.timestep
            self._rt_start_ns = self._steady.now().nanoseconds
            self._rt_steps = 0
            self._max_chunk = max(1, int(round(0.1 / self._physics_dt)))
            self._timer = self.create_timer(1.0 / self.config.publish_rate_hz,
                                            self._on_realtime_tick, clock=self._steady)
        self._diag_timer = self.create_timer(1.0, self.publish_diagnostics, clock=self._steady)

    # -- parameters --------------------------------------------------------------------
    def _apply_parameters(self, changes: dict[str, Any]) -> None:
        """Post-set callback: apply validated changes through the one config path."""
        applied = self.config.apply(changes)
        if 'paused' in applied:
            self.paused = self.config.paused and self.lockstep
            self.get_logger().info('paused' if self.paused else 'running')
        if 'payload_scale' in applied:
            self.plant.payload_scale = self.config.payload_scale
            self.get_logger().info(f'payload_scale set to {self.config.payload_scale:g}')

    # -- commands --------------------------------------------------------------------------
    def _validate(self, msg: Float64MultiArray) -> Optional[np.ndarray]:
        try:
            data = np.array(msg.data, dtype=np.float64)
        except (TypeError, ValueError):
            data = None
        reason = None
        if data is None or data.shape != (self.plant.n,):
            reason = LENGTH_MISMATCH
        elif not np.isfinite(data).all():
            reason = NON_FINITE
        elif (np.abs(data) > MAX_EFFORT).any():    # MuJoCo would zero it, unstable
            reason = IMPLAUSIBLE
        if reason is None:
            return data
        self.rejected[reason] += 1
        got = (f'{len(msg.data)} values' if reason == LENGTH_MISMATCH else   # (the count: 1)
               ', '.join(f'{v:g}' for v in data[:8]) + (' ...' if data.size > 8 else ''))
        self._refusal_log.warn(
            reason,
            f'rejected command ({reason}: expected {self.plant.n} finite values, at most '
            f'{MAX_EFFORT:g} in size, for '
            f'{list(self.joints)}, got {got}); {self.rejected[reason]} so far; '
            'keeping the last valid effort' + ('' if not self.lockstep else ', time not advanced'))
        return None

    def _on_command(self, msg: Float64MultiArray) -> None:
        effort = self._validate(msg)
        if effort is None:
            return
        self.commands_accepted += 1
        if not self.lockstep:
            self._effort[:] = effort
            if self._first_command_ns is None:
                self._first_command_ns = self.time_ns
            return
        if not self.started or self.paused:
            self._pending = effort    # applied at the next idle tick (latest wins)
            return
        self._advance(effort)

    # -- lock-step -------------------------------------------------------------------------
    def _advance(self, effort: np.ndarray, held: bool = False) -> None:
        """
        Hold ``effort`` for one control period, then publish state, then /clock.

        ``held`` (idling before the first command): time advances, the robot does not.
        """
        self._effort[:] = effort
        if self.started:
            if self._commanded_steps == self._change_at_step:
                self._change_payload()
            self._commanded_steps += 1
        if not held:
            self.plant.step(self._effort, self.control_period_s)
        self.time_ns += self.period_ns
        self.steps += 1
        self._publish_state(self.time_ns)
        self._publish_clock()
        self._last_progress_ns = self._steady.now().nanoseconds

    def _on_idle_tick(self) -> None:
        if self.paused:
            self._republish_if_quiet()
            return
        if self.started and self._pending is not None:     # held while paused
            effort, self._pending = self._pending, None
            self._advance(effort)
            return
        if not self.started:
            if self._pending is not None:
                self.started = True
                effort, self._pending = self._pending, None
                self.get_logger().info('first command received: advancing on commands only')
                self._advance(effort)
                return
            # Once a controller is matched its first command is on the way: idling on
            # quickly could overtake it and leave two commands in flight for the run.
            now = self._steady.now().nanoseconds
            if (self.count_publishers(self._command_topic) > 0
                    and now - self._last_progress_ns < IDLE_WITH_CONTROLLER_NS):
                return
            self.idle_steps += 1
            self._advance(np.zeros(self.plant.n), held=True)
            return
        self._republish_if_quiet()

    def _republish_if_quiet(self) -> None:
        """Stall guard: the same state and time again after a quiet second."""
        now = self._steady.now().nanoseconds
        if now - self._last_progress_ns >= self._resend_after_ns:
            self.resends += 1
            self._publish_state(self.time_ns)
            self._publish_clock()
            self._last_progress_ns = now

    def _publish_clock(self) -> None:
        set_stamp(self._clock_msg.clock, self.time_ns)
        self._clock_pub.publish(self._clock_msg)
        self.clocks_published += 1

    # -- real time -----------------------------------------------------------------------------
    def _on_realtime_tick(self) -> None:
        now = self._steady.now().nanoseconds
        due = int((now - self._rt_start_ns) * 1e-9 / self._physics_dt) - self._rt_steps
        if due <= 0:
            return
        if due > self._max_chunk:            # stalled: skip the lost time, do not replay it
            self.dropped_time_s += (due - self._max_chunk) * self._physics_dt
            self._rt_steps += due - self._max_chunk
            due = self._max_chunk
        self.plant.step(self._effort, due * self._physics_dt)
        self._rt_steps += due
        self.steps += 1
        self.time_ns = int(round(self._rt_steps * self._physics_dt * 1e9))
        if (self._change_at_ns is not None and self._first_command_ns is not None
                and self.time_ns - self._first_command_ns >= self._change_at_ns):
            self._change_at_ns = None
            self._change_payload()
        self._publish_state(self.get_clock().now().nanoseconds)

    def _change_payload(self) -> None:
        """
        Apply the scheduled payload change (``payload_change.*``) as the parameter.

        So ``payload_scale`` reads what the plant has (it kept the old value).
        """
        self.get_logger().info(f'scheduled payload change: payload_scale {self._change_scale:g} '
                               f'at {self.time_ns * 1e-9:.2f} s sim time')
        (result,) = self.set_parameters([Parameter('payload_scale', value=self._change_scale)])
        if not result.successful:            # (the same range: cannot happen)
            self.plant.payload_scale = self._change_scale

    # -- state ---------------------------------------------------------------------------------
    def _publish_state(self, stamp_ns: int) -> None:
        msg = self._state
        set_stamp(msg.header.stamp, stamp_ns)
        plant = self.plant
        msg.position = plant.all_positions().tolist()
        msg.velocity = plant.all_velocities().tolist()
        msg.effort = plant.all_efforts().tolist()
        self._state_pub.publish(msg)
        self.states_published += 1

    # -- services --------------------------------------------------------------------------------
    def _srv_reset(self, request, response):
        self.plant.reset(self._q0)
        self._effort[:] = 0.0
        self.resets += 1
        stamp = self.time_ns if self.lockstep else self.get_clock().now().nanoseconds
        self._publish_state(stamp)
        response.success = True
        response.message = (f'state reset to initial_positions {self._q0.tolist()}; '
                            f'time kept at {self.time_ns * 1e-9:.3f} s'
                            if self.lockstep else
                            f'state reset to initial_positions {self._q0.tolist()}')
        self.get_logger().info(response.message)
        return response

    # -- diagnostics -----------------------------------------------------------------------------
    def diagnostics(self) -> DiagnosticArray:
        """
        Build the /diagnostics status, the interval since the previous call for rates.

        Also for the 'commands rejected' WARN (the counts stay cumulative): it checked the
        counts, so one bad command early on made every later report a WARN.
        """
        now = self._steady.now().nanoseconds
        wall0, sim0 = self._diag_mark
        self._diag_mark = (now, self.time_ns)
        elapsed = (now - wall0) * 1e-9
        rtf = (self.time_ns - sim0) * 1e-9 / elapsed if elapsed > 0 else float('nan')
        problems = []
        total = sum(self.rejected.values())
        rejected, self._diag_rejected = total - self._diag_rejected, total
        if rejected:
            problems.append(f'commands rejected ({rejected} since the last report)')
        if self.lockstep and not self.started:
            problems.append('waiting for the first command (idling)')
        dropped, self._diag_dropped_s = (self.dropped_time_s - self._diag_dropped_s,
                                         self.dropped_time_s)
        if dropped > 0:
            problems.append(f'real-time loop fell behind ({dropped:.3g} s of simulated time '
                            'dropped since the last report)')
        blow_ups, self._diag_blow_ups = (self.plant.blow_ups - self._diag_blow_ups,
                                         self.plant.blow_ups)
        if blow_ups:
            problems.append(f'MuJoCo reset the state in {blow_ups} steps since the last report: '
                            'accelerations not finite (an effort or payload_scale the model '
                            'cannot take); the motion is lost')
            self.get_logger().error(problems[-1])
        values = [
            ('mode', 'lock-step' if self.lockstep else 'real time'),
            ('simulated time [s]', self.time_ns * 1e-9),
            ('real-time factor', rtf),
            ('steps', self.steps),
            ('idle steps', self.idle_steps),
            ('resends', self.resends),
            ('commands accepted', self.commands_accepted),
            *((f'commands rejected: {k}', v) for k, v in self.rejected.items()),
            ('joint_states published', self.states_published),
            ('payload_scale', self.plant.payload_scale),
            ('resets', self.resets),
            ('MuJoCo state resets (accelerations not finite)', self.plant.blow_ups),
            ('dropped time [s]', self.dropped_time_s),
        ]
        return common.diagnostic_array(
            self.get_fully_qualified_name(), 'MuJoCo simulator', problems,
            values, 'running',
            self.time_ns if self.lockstep else self.get_clock().now().nanoseconds)

    def publish_diagnostics(self) -> None:
        self._diag_pub.publish(self.diagnostics())


def main(args: Optional[list] = None) -> int:
    """Console script ``lnn_sim``: spin until Ctrl-C / SIGTERM; exit 1 on bad parameters."""
    return common.run_node(SimNode, NODE_NAME, args,
                           'MuJoCo plant behind ros2_control-like topics.')


if __name__ == '__main__':
    sys.exit(main())

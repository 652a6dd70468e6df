"""``lnn_controller``: the adaptive reservoir controller as a ROS 2 node.

Drops into a ros2_control graph beside joint_state_broadcaster and a
forward_command_controller (``interface_name: effort``)::

    joint_states  (sensor_msgs/JointState, sensor-data QoS)   -> node
    ~/reference   (sensor_msgs/JointState, optional)          -> node
    node -> commands (std_msgs/Float64MultiArray, RELIABLE, one value per joint)
    node -> /diagnostics (diagnostic_msgs/DiagnosticArray, 1 Hz)

    ros2 run lnn_control lnn_controller --ros-args \\
        --params-file config/pendulum.yaml -r commands:=/effort_controller/commands

The control loop is a timer on the node clock, so ``use_sim_time`` with
``/clock`` drives it deterministically. Each tick uses the latest valid
joint_states (stored by the subscription) and a reference that is either
generated (``reference.mode`` hold/sine/sum_of_sines, time measured from the
first valid joint_states) or the last ``~/reference`` message. In topic mode,
before the first reference message the node holds the first measured position:
the one set point that cannot make the robot move.
"""
from __future__ import annotations

import os
import sys
import time
import zipfile
from typing import Any, Optional

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.clock import JumpThreshold
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import SetBool, Trigger

from .. import schema
from ..controller import LIVE, AdaptiveController
from ..loop import REFUSED, RESUMED, STALE, ControlLoop
from ..timing import TickStats
from ..trajectories import make_reference
from . import common
from . import conversions as C
from . import parameters as RP

NODE_NAME = 'lnn_controller'
# Node-level failure counted alongside the message rejections.
CONTROLLER_REFUSED = 'controller_refused'
# What reading a missing, foreign or corrupt readout file can raise.
LOAD_ERRORS = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile)


class LnnControllerNode(Node):
    """Adaptive reservoir controller node; see the module docstring for its interface.

    Parameters come from ROS (``-p``, ``--params-file``) and are declared from
    ``lnn_control.schema.CONTROLLER``; invalid values raise ValueError here
    (``main`` turns that into an error message and exit code 1).
    ``stats_window``: ticks kept for the timing statistics (not a ROS parameter).
    """

    def __init__(self, node_name: str = NODE_NAME, *, stats_window: Optional[int] = None,
                 **kwargs: Any):
        super().__init__(node_name, **kwargs)
        try:
            self._setup(stats_window)
        except BaseException:
            self.destroy_node()       # no half-built node left in the graph
            raise

    def _setup(self, stats_window: Optional[int]) -> None:
        values = RP.declare(self, schema.CONTROLLER)
        self.controller = AdaptiveController(values)
        ctrl = self.controller
        self.joints = ctrl.joints
        n = ctrl.n
        self.period_ns = int(round(1e9 / values['control_rate_hz']))
        self._readout_path = values['readout_path']
        self.loop = ControlLoop(ctrl, values['sensor_timeout_s'], values['stale_sensor_action'])
        if self._readout_path and os.path.exists(self._readout_path):
            try:
                self._load(self._readout_path)
            except LOAD_ERRORS as e:
                # Refuse to start rather than overwrite the file with fresh weights at exit.
                raise ValueError(f'cannot load readout_path {self._readout_path!r}: {e}') from e
            self.get_logger().info(f'loaded readout from {self._readout_path}')

        # Latest valid measurement and this tick's desired state.
        self._q = np.zeros(n)
        self._qd = np.zeros(n)
        self._q_d = np.zeros(n)
        self._qd_d = np.zeros(n)
        self._qdd_d = np.zeros(n)
        self._hold = np.zeros(n)       # topic mode before the first reference message
        self._have_sensor = False
        self._sensor_wall_ns = 0       # monotonic clock, for the latency statistics
        self._t0_ns = None             # node clock at the first commanding tick
        # sync_to_joint_state_stamps (sim time): the tick of time t waits, at most
        # until the next tick, for the joint_states stamped t, which a lock-step
        # simulator publishes just before /clock(t) but which may arrive after it.
        self._sync_stamps = (bool(values['sync_to_joint_state_stamps'])
                             and bool(self.get_parameter('use_sim_time').value))
        self._sensor_stamp_ns = 0      # header stamp of the latest valid joint_states
        self._deferred_tick_ns = None
        self._sensor = C.JointStateReader(self.joints, require_velocity=True)
        self._reference = C.ReferenceFromMessages(self.joints)
        self._generator = None
        self._configure_reference()
        self._command = C.CommandMessage(n)

        self.rejected = {reason: 0 for reason in (*C.REASONS, CONTROLLER_REFUSED)}
        self.rejected_reference = {reason: 0 for reason in C.REASONS}
        self.sensor_messages = 0
        self.reference_messages = 0
        self.commands_published = 0
        self._interventions_logged = 0
        self._detections_logged = 0
        rate = values['control_rate_hz']
        self.stats = TickStats(stats_window or max(256, int(2 * rate)))
        # (stats.count, stats.callbacks, node clock ns) at the previous diagnostics
        self._diag_mark = (0, 0, self.get_clock().now().nanoseconds)

        RP.attach(self, schema.CONTROLLER, n, self._apply_parameters)
        self._commands_pub = self.create_publisher(Float64MultiArray, 'commands',
                                                   common.LATCHED_QOS)
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._desired_pub = self.create_publisher(JointState, '~/desired', common.LATCHED_QOS)
        self._desired_msg = JointState()
        self._desired_msg.name = list(self.joints)
        self.create_subscription(JointState, 'joint_states', self._on_joint_states,
                                 common.SENSOR_QOS)
        self.create_subscription(JointState, '~/reference', self._on_reference,
                                 common.SENSOR_QOS)
        self.create_service(Trigger, '~/reset_learning', self._srv_reset_learning)
        self.create_service(SetBool, '~/set_learning', self._srv_set_learning)
        self.create_service(Trigger, '~/save_readout', self._srv_save_readout)
        self.create_service(Trigger, '~/load_readout', self._srv_load_readout)
        self.create_service(Trigger, '~/plant_changed', self._srv_plant_changed)
        self._jump_handle = self.get_clock().create_jump_callback(
            JumpThreshold(min_forward=None, min_backward=Duration(nanoseconds=-1),
                          on_clock_change=True),
            post_callback=self._on_clock_jump)
        self._timer = self.create_timer(1.0 / rate, self._on_tick)
        self._diagnostics_timer = self.create_timer(1.0, self.publish_diagnostics)
        self.get_logger().info(
            f'controlling {list(self.joints)} at {rate:g} Hz '
            f'({values["reservoir.neuron_model"]}, N={values["reservoir.size"]}, '
            f'{values["controller.mode"]}, reference {values["reference.mode"]}, '
            f'learning {"on" if ctrl.learning_enabled else "off"})')

    def destroy_node(self) -> None:
        handle = getattr(self, '_jump_handle', None)
        if handle is not None:
            handle.unregister()
            self._jump_handle = None
        super().destroy_node()

    # -- parameters ------------------------------------------------------------------
    def _apply_parameters(self, changes: dict[str, Any]) -> None:
        """Post-set callback: the values were validated, apply them without a rebuild."""
        live = {k: v for k, v in changes.items() if k in LIVE}
        try:
            self.controller.update_params(live)
        except ValueError as e:    # validated already; would be a schema/core mismatch
            self.get_logger().error(f'parameter change not applied: {e}')
            return
        if 'sensor_timeout_s' in changes:
            self.loop.set_timeout(changes['sensor_timeout_s'])
        if 'stale_sensor_action' in changes:
            self.loop.stale_action = changes['stale_sensor_action']
        if 'readout_path' in changes:
            self._readout_path = changes['readout_path']
        if any(k.startswith('reference.') for k in changes):
            self._configure_reference()

    def _configure_reference(self) -> None:
        cfg = self.controller.params
        if cfg['reference.mode'] == 'topic':
            self._generator = None
            return
        n = self.controller.n
        self._generator = make_reference(
            cfg['reference.mode'], n,
            np.broadcast_to(np.asarray(cfg['reference.amplitude'], float), (n,)),
            float(cfg['reference.frequency_hz']),
            np.broadcast_to(np.asarray(cfg['reference.offset'], float), (n,)),
            seed=int(cfg['reference.seed']))

    # -- inputs ------------------------------------------------------------------------
    def _on_joint_states(self, msg: JointState) -> None:
        reason = self._sensor.read(msg, self._q, self._qd)
        if reason:
            self._refuse(self.rejected, reason, 'a joint_states message')
            return
        self.sensor_messages += 1
        self._sensor_stamp_ns = C.stamp_to_ns(msg.header.stamp)
        # Sensor age from the stamp when it is the simulator's own time: the arrival
        # time reads 0 if this state comes before the first /clock.
        self.loop.sensor_received(self._sensor_stamp_ns if self._sync_stamps
                                  else self.get_clock().now().nanoseconds)
        self._sensor_wall_ns = time.perf_counter_ns()
        if not self._have_sensor:
            self._have_sensor = True
            self._hold[:] = self._q
            self.get_logger().info('first valid joint_states: control starts')
        if self._deferred_tick_ns is not None:
            self._tick(self._deferred_tick_ns)

    def _on_reference(self, msg: JointState) -> None:
        reason = self._reference.update(msg, self.get_clock().now().nanoseconds)
        if reason:
            self._refuse(self.rejected_reference, reason, 'a ~/reference message')
            return
        self.reference_messages += 1

    def _refuse(self, counts: dict, reason: str, what: str) -> None:
        counts[reason] += 1
        self.get_logger().warning(f'dropped {what} ({reason}); {counts[reason]} so far',
                                  throttle_duration_sec=5.0)

    def _on_clock_jump(self, jump) -> None:
        """Time went backwards (simulation reset, bag loop) or the clock type changed.

        Old stamps and arrival times are meaningless now: wait for fresh
        joint_states (no commands until then) and restart the reservoir state;
        what was learned is kept.
        """
        self._sensor.reset()
        self._reference.reader.reset()
        self._have_sensor = False
        self._t0_ns = None
        self._sensor_stamp_ns = 0
        self._deferred_tick_ns = None
        self.loop.clock_jumped()
        self.get_logger().warning('clock jumped backwards or changed: waiting for joint_states')

    # -- the control tick ----------------------------------------------------------
    def _desired(self, now_ns: int) -> None:
        if self._t0_ns is None:
            self._t0_ns = now_ns         # generated references start at the first command
        if self._generator is not None:
            self._generator.sample((now_ns - self._t0_ns) * 1e-9,
                                   self._q_d, self._qd_d, self._qdd_d)
        elif self._reference.received:
            self._q_d[:] = self._reference.q
            self._qd_d[:] = self._reference.qd
            self._qdd_d[:] = self._reference.qdd
        else:
            self._q_d[:] = self._hold
            self._qd_d[:] = 0.0
            self._qdd_d[:] = 0.0

    def _on_tick(self) -> None:
        self.stats.callbacks += 1
        if not self._have_sensor:
            return          # never command a robot we have not heard from
        now = self.get_clock().now().nanoseconds
        if self._deferred_tick_ns is not None:
            self._tick(self._deferred_tick_ns)     # its joint_states never came
        if self._sync_stamps and self._sensor_stamp_ns < now:
            self._deferred_tick_ns = now
            return
        self._tick(now)

    def _tick(self, now: int) -> None:
        start = time.perf_counter_ns()
        self._deferred_tick_ns = None
        view = self._command.view
        loop = self.loop
        if now - loop.sensor_time_ns <= loop.timeout_ns:
            self._desired(now)      # while stale the last desired state is kept
        event = loop.tick(now, (self._q, self._qd), (self._q_d, self._qd_d, self._qdd_d))
        if event == STALE:
            self.get_logger().warning(
                f'no valid joint_states for {loop.sensor_age_s(now):.3f} s '
                f'(sensor_timeout_s {loop.timeout_ns * 1e-9:g}): publishing '
                f'{"zero effort" if loop.stale_action == "zero" else "the last command"}')
        elif event == RESUMED:
            self.get_logger().info('joint_states resumed: control resumes')
        elif event == REFUSED:
            self._refuse(self.rejected, CONTROLLER_REFUSED, f'a tick: {loop.refusal}')
        if len(self.controller.supervisor.interventions) > self._interventions_logged:
            self._log_interventions()
        if len(self.controller.change_detector.detections) > self._detections_logged:
            self._log_detections()
        view[:] = loop.command
        self._commands_pub.publish(self._command.msg)
        self._publish_desired(now)      # every command has its desired state
        self.commands_published += 1
        self.stats.record(start, time.perf_counter_ns(), self._sensor_wall_ns,
                          self._sensor_stamp_ns, self.period_ns)

    def _log_interventions(self) -> None:
        """Each supervisor intervention once, as it happens (not per tick)."""
        events = self.controller.supervisor.interventions
        for event in events[self._interventions_logged:]:
            log = self.get_logger().info if event.action == 'resume' else \
                self.get_logger().warning
            log(f'learning supervisor: {event.action} at t={event.time_s:.2f} s: '
                f'{event.reason}')
        self._interventions_logged = len(events)

    def _log_detections(self) -> None:
        """Each detected plant change once, as it happens."""
        events = self.controller.change_detector.detections
        for event in events[self._detections_logged:]:
            self.get_logger().info(f'plant change detected at t={event.time_s:.2f} s: '
                                   f'{event.reason}')
        self._detections_logged = len(events)

    def _publish_desired(self, now: int) -> None:
        """The desired state of this tick (the last one while sensors are stale),
        stamped with the tick time, so a recording or a plot can set it against
        the joint_states of that time; one per published command."""
        msg = self._desired_msg
        C.set_stamp(msg.header.stamp, now)
        msg.position = self._q_d
        msg.velocity = self._qd_d
        self._desired_pub.publish(msg)

    # -- services ----------------------------------------------------------------------
    def _srv_reset_learning(self, request, response):
        self.controller.reset_learning()
        response.success = True
        response.message = 'learned readout reset'
        self.get_logger().info(response.message)
        return response

    def _srv_set_learning(self, request, response):
        # Through the parameter, so `ros2 param get ... learning_enabled` agrees.
        result = self.set_parameters([Parameter('learning_enabled', Parameter.Type.BOOL,
                                                bool(request.data))])[0]
        response.success = result.successful
        response.message = (f'learning {"on" if request.data else "off"}'
                            if result.successful else result.reason)
        return response

    def _srv_plant_changed(self, request, response):
        """A user who knows the plant changed (tool change, grasp) says so: the
        readouts re-learn fast at once instead of waiting for the detector."""
        self.controller.plant_changed('reported on ~/plant_changed')
        response.success = True
        response.message = 'covariances restarted: re-learning'
        return response

    def _srv_save_readout(self, request, response):
        response.success, response.message = self.save_readout()
        return response

    def _srv_load_readout(self, request, response):
        path = self._readout_path
        if not path:
            response.success, response.message = False, 'readout_path is empty'
            return response
        try:
            self._load(path)
        except LOAD_ERRORS as e:
            response.success, response.message = False, f'not loaded ({e}); nothing changed'
            return response
        response.success, response.message = True, f'loaded {path}'
        self.get_logger().info(response.message)
        return response

    def _load(self, path: str) -> None:
        self.controller.load(path)
        # The file carries forgetting factors too; the parameters are the truth.
        live = self.controller.params
        self.controller.update_params({k: live[k] for k in
                                       ('rls.forgetting_factor', 'rls.fast_forgetting_factor')})

    def save_readout(self, log: bool = True) -> tuple[bool, str]:
        """Write the learned readout to ``readout_path`` atomically; (ok, message)."""
        path = self._readout_path
        if not path:
            return False, 'readout_path is empty'
        try:
            self.controller.save(path)
        except (OSError, ValueError) as e:
            ok, message = False, f'saving readout to {path} failed: {e}'
        else:
            ok, message = True, f'saved readout to {path}'
        if log:
            (self.get_logger().info if ok else self.get_logger().error)(message)
        return ok, message

    def on_shutdown(self) -> Optional[tuple[bool, str]]:
        """Save the readout (when ``readout_path`` is set) so learning survives a restart.

        Does not log: after Ctrl-C the context is gone and logging through the
        node's /rosout publisher would fail; the caller logs the returned message.
        """
        return self.save_readout(log=False) if self._readout_path else None

    # -- diagnostics ---------------------------------------------------------------------
    def diagnostics(self) -> DiagnosticArray:
        """Build the status since the previous call (rates and percentiles over that window)."""
        now = self.get_clock().now()
        count0, callbacks0, t0 = self._diag_mark
        s = self.stats
        self._diag_mark = (s.count, s.callbacks, now.nanoseconds)
        elapsed = (now.nanoseconds - t0) * 1e-9
        rate = (s.callbacks - callbacks0) / elapsed if elapsed > 0 else 0.0
        compute = s.last(s.compute_ns, s.count - count0) * 1e-6
        if compute.size:
            p50, p99, worst = np.percentile(compute, 50), np.percentile(compute, 99), compute.max()
        else:
            p50 = p99 = worst = float('nan')
        age = (self.loop.sensor_age_s(now.nanoseconds) if self._have_sensor
               else float('nan'))
        problems = []
        if not self._have_sensor:
            problems.append('waiting for joint_states')
        if self.loop.stale:
            problems.append('joint_states stale')
        if compute.size and worst > self.period_ns * 1e-6:
            problems.append('tick overran the control period')
        sv = self.controller.supervisor
        if sv.state != 'learning':
            problems.append(f'learning supervisor: {sv.state}')
        values = [
            ('control rate target [Hz]', 1e9 / self.period_ns),
            ('control rate achieved [Hz]', rate),
            ('tick compute p50 [ms]', p50),
            ('tick compute p99 [ms]', p99),
            ('tick compute max [ms]', worst),
            ('overruns', s.overruns),
            ('commands published', self.commands_published),
            ('learning', 'on' if self.controller.learning_enabled else 'off'),
            ('learning error', self.controller.learning_error),
            ('sensor age [s]', age),
            ('sensor stale', self.loop.stale),
            ('stale episodes', self.loop.stale_episodes),
            ('joint_states received', self.sensor_messages),
            *((f'joint_states rejected: {k}', v) for k, v in self.rejected.items()),
            ('reference received', self.reference_messages),
            *((f'reference rejected: {k}', v) for k, v in self.rejected_reference.items()),
            ('readout updates', self.controller.slow.updates),
            ('supervisor state', sv.state if sv.enabled else 'disabled'),
            ('supervisor error ratio estimate', sv.ratio),
            *((f'supervisor {k}', v) for k, v in sv.counts.items()),
            ('supervisor gain scale', sv.gain_scale),
            ('plant changes detected or reported',
             len(self.controller.change_detector.detections)),
            ('change detector score', self.controller.change_detector.score),
            ('feedforward limited ticks', self.controller.feedforward_clipped),
            ('command saturated ticks', self.controller.saturated_ticks),
            ('input scale changes', self.controller.scale_changes),
            *((f'input scale {k}', ' '.join(f'{x:.4g}' for x in v))
              for k, v in self.controller.input_scales.items()),
        ]
        return common.diagnostic_array(
            f'{self.get_name()}: adaptive controller', self.get_fully_qualified_name(),
            problems, values,
            'learning' if self.controller.learning_enabled else 'running, learning off',
            now.nanoseconds)

    def publish_diagnostics(self) -> None:
        self._diagnostics_pub.publish(self.diagnostics())


def main(args: Optional[list] = None) -> int:
    """Console script ``lnn_controller``: spin until Ctrl-C / SIGTERM, then save the
    readout (when ``readout_path`` is set) and exit 0; invalid parameters: exit 1."""
    return common.run_node(LnnControllerNode, NODE_NAME, args,
                           'Adaptive reservoir-computing controller node.',
                           on_shutdown=LnnControllerNode.on_shutdown)


if __name__ == '__main__':
    sys.exit(main())

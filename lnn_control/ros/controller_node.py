r"""
``lnn_controller``: the adaptive reservoir controller as a ROS 2 node.

Drops into a ros2_control graph beside joint_state_broadcaster and a
forward_command_controller (``interface_name: effort``)::

    joint_states  (sensor_msgs/JointState, sensor-data QoS)   -> node
    ~/reference   (sensor_msgs/JointState, optional)          -> node
    ~/joint_trajectory (trajectory_msgs/JointTrajectory, optional, as
                  joint_trajectory_controller's topic)        -> node
    node -> commands (std_msgs/Float64MultiArray, RELIABLE, one value per joint)
    node -> /diagnostics (diagnostic_msgs/DiagnosticArray, 1 Hz)
    node -> ~/desired, ~/prediction, ~/long_prediction (sensor_msgs/JointState,
            every tick; the predictions stamped with the time they predict)
    node -> ~/controller_state (std_msgs/Float64MultiArray, joints x
            reference, feedback, error, pd_effort, feedforward, command;
            every ``controller_state_decimation`` ticks)

    ros2 run lnn_control lnn_controller --ros-args \\
        --params-file config/pendulum.yaml -r commands:=/effort_controller/commands

The control loop is a timer on the node clock on simulated time, so ``/clock``
drives it deterministically, and on the steady clock otherwise, so a step of the
system clock (NTP, ``date``) does not stop it. Each tick uses the latest valid
joint_states (stored by the subscription) and a reference that is either
generated (``reference.mode`` hold/sine/sum_of_sines/point_to_point, time measured from the
first valid joint_states) or the newest ``~/reference`` or ``~/joint_trajectory``
message. In topic mode, before the first of them the node holds the first measured
position: the one set point that cannot make the robot move.
"""
from __future__ import annotations

import sys
import time
from typing import Any, Optional

from diagnostic_msgs.msg import DiagnosticArray
import numpy as np
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType, JumpThreshold
from rclpy.duration import Duration
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import SetBool, Trigger
from trajectory_msgs.msg import JointTrajectory

from . import common
from . import conversions as C
from . import parameters as RP
from .controller_services import ControllerServices
from .trajectory_input import (ENDS_IN_THE_PAST, REASONS as TRAJECTORY_REASONS, STARTED,
                               TrajectoryFromMessages)
from .. import schema
from ..config import per_joint
from ..controller import AdaptiveController
from ..loop import ControlLoop, REFUSED, RESUMED, STALE, STATE_FIELDS
from ..readout_file import ReadoutStore
from ..timing import TickStats
from ..trajectories import DesiredState
from ..waypoints import nearest_branch

NODE_NAME = 'lnn_controller'
# Node-level failure counted alongside the message rejections.
CONTROLLER_REFUSED = 'controller_refused'
# Off simulated time, the node clock moving this much more or less than the steady clock
# between two ticks is a step of the system clock (a tick's own lateness moves both).
CLOCK_STEP_NS = 100_000_000
# A trajectory waiting longer than this for its header.stamp makes /diagnostics WARN.
TRAJECTORY_WAIT_WARN_S = 10.0


class LnnControllerNode(ControllerServices, Node):
    """
    Adaptive reservoir controller node; see the module docstring for its interface.

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
        self.controller = ctrl = AdaptiveController(RP.declare(self, schema.CONTROLLER))
        for warning in RP.startup_warnings(self, schema.CONTROLLER):
            self.get_logger().warning(warning)
        cfg = ctrl.config
        self.joints = ctrl.joints
        self.period_ns = int(round(1e9 / cfg.control_rate_hz))
        self.loop = ControlLoop(ctrl, cfg.sensor_timeout_s, cfg.stale_sensor_action)
        self.readout_store = ReadoutStore(ctrl, cfg.readout_path, cfg.readout_autosave_period_s)
        loaded = self.readout_store.load_at_start()
        if loaded:
            common.log_outcome(self.get_logger(), loaded[0], loaded[1], 'error')
        self._init_tick_state()
        self.rejected = dict.fromkeys((*C.REASONS, CONTROLLER_REFUSED), 0)
        self.rejected_reference = dict.fromkeys(C.REASONS, 0)
        self.rejected_trajectory = dict.fromkeys(TRAJECTORY_REASONS, 0)
        self.trajectory_messages = 0
        self._refusal_log = common.RefusalLog(self)
        self.sensor_messages = 0
        self.foreign_messages = 0       # joint_states naming none of our joints (ignored)
        self._resyncs_logged: dict[str, int] = {}   # per topic: new stamp time bases logged
        self.reference_messages = 0
        self.commands_published = 0
        self._publisher = common.PublishGuard(self.get_logger())
        self._interventions_logged = 0
        self._detections_logged = 0
        self._anomalies_logged = 0
        self._pd_health_logged: set[str] = set()    # kinds of PD-loop trouble logged
        self.stats = TickStats(stats_window or max(256, int(2 * cfg.control_rate_hz)))
        # (stats.count, stats.callbacks, node clock ns) at the previous diagnostics
        self._diag_mark = (0, 0, self.get_clock().now().nanoseconds)
        self._diag_dropped = ({}, {}, {})  # per input: dropped up to the last report
        self._diag_skipped = 0          # autosaves skipped (writer busy) up to the last report
        RP.attach(self, schema.CONTROLLER, ctrl.n, self._apply_parameters,
                  combined=lambda changes: (ctrl.config.combined_problems(changes)
                                            + self._limits_problems(changes)))
        self._create_interfaces()
        self.get_logger().info(
            f'controlling {list(self.joints)} at {cfg.control_rate_hz:g} Hz '
            f'({cfg.reservoir.neuron_model}, N={cfg.reservoir.size}, '
            f'{cfg.controller.mode}, reference {cfg.reference.mode}, '
            f'learning {"on" if ctrl.learning_enabled else "off"}'
            + (f', readout file {self.readout_store.path}' if self.readout_store.path else '')
            + ')')

    def _init_tick_state(self) -> None:
        """Buffers of the latest valid measurement and of this tick's desired state."""
        n = self.controller.n
        self._q = np.zeros(n)
        self._qd = np.zeros(n)
        self.desired = DesiredState(n, self.controller.continuous)
        self._have_sensor = False
        self._jumped_back = False       # the clock jumped back; no state accepted since
        self._silent_since_ns: Optional[int] = None   # a clock jump; no state accepted since
        self._sensor_wall_ns = 0       # monotonic clock, for the latency statistics
        # sync_to_joint_state_stamps (sim time): the tick of time t waits, at most
        # until the next tick, for the joint_states stamped t, which a lock-step
        # simulator publishes just before /clock(t) but which may arrive after it.
        self._sync_stamps = (self.controller.config.sync_to_joint_state_stamps
                             and bool(self.get_parameter('use_sim_time').value))
        self.add_post_set_parameters_callback(self._on_use_sim_time)   # ... and when it changes
        self._sensor_stamp_ns = 0      # header stamp of the latest valid joint_states
        self._refused_stamp_ns = 0     # ... and of the latest refused one
        self._fresh_at_first_tick = False  # a state came before the node clock started
        self._deferred_tick_ns = None
        self.reference_stale_episodes = 0
        # from one publisher or several (split drivers), merged by joint name; without
        # velocity the velocity is the positions' difference
        self._sensor = C.MergedJointStates(self.joints, differentiate=True,
                                           interval_s=self.period_ns * 1e-9,
                                           continuous=self.controller.continuous)
        self._differentiating_logged = False
        self._reference = C.ReferenceFromMessages(self.joints)
        self._trajectory = TrajectoryFromMessages(self.joints, self.controller.continuous)
        self._configure_inputs()
        self._command = C.CommandMessage(n)

    def _create_interfaces(self) -> None:
        """Topics, services, the clock-jump handler and the timers."""
        # the QoS of the topics a robot's driver shares can be overridden from a parameter
        # file (qos_overrides./<ns>/commands.publisher.reliability: best_effort, ...)
        self._commands_pub = self.create_publisher(
            Float64MultiArray, 'commands', common.overridable(common.LATCHED_QOS),
            qos_overriding_options=common.QOS_OVERRIDES)
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._desired_pub = self.create_publisher(JointState, '~/desired', common.LATCHED_QOS)
        self._desired_msg = JointState()
        self._desired_msg.name = list(self.joints)
        # control_msgs/MultiDOFStateStamped on a ROS install; std_msgs needs no extra
        # package, and its layout names the joints and the columns.
        self._state_pub = self.create_publisher(Float64MultiArray, '~/controller_state',
                                                common.LATCHED_QOS)
        self._state_msg = C.StateTableMessage(self.joints, STATE_FIELDS)
        self._state_countdown = 0
        forward = self.controller.forward
        # (horizon index, publisher, message, position buffer, how far ahead [ns]): each
        # prediction is stamped with the time it predicts
        self._predictions: list[tuple] = []
        if forward is not None:     # the reservoir readout's horizon, then the memory's
            period_ns = 1e9 / self.controller.config.control_rate_hz
            for i, topic in enumerate(('~/prediction', '~/long_prediction')[
                    :len(forward.horizons)]):
                publisher = self.create_publisher(JointState, topic, common.LATCHED_QOS)
                self._predictions.append((i, publisher, JointState(name=list(self.joints)),
                                          np.zeros(len(self.joints)),
                                          int(round(forward.horizons[i] * period_ns))))
        for topic, callback in (('joint_states', self._on_joint_states),
                                ('~/reference', self._on_reference)):
            self.create_subscription(JointState, topic, callback,
                                     common.overridable(common.SENSOR_QOS),
                                     qos_overriding_options=common.QOS_OVERRIDES)
        self.create_subscription(JointTrajectory, '~/joint_trajectory', self._on_trajectory,
                                 common.overridable(common.TRAJECTORY_QOS),
                                 qos_overriding_options=common.QOS_OVERRIDES)
        for warning in common.stray_qos_overrides(self):
            self.get_logger().warning(warning)
        self.create_service(Trigger, '~/reset_learning', self._srv_reset_learning,
                            qos_profile=common.SERVICE_QOS)
        self.create_service(SetBool, '~/set_learning', self._srv_set_learning,
                            qos_profile=common.SERVICE_QOS)
        # coroutines that await file work: a group of their own (controller_services)
        self._waiting: set = set()      # ... those waiting now (answered at shutdown)
        files = MutuallyExclusiveCallbackGroup()
        self.create_service(Trigger, '~/save_readout', self._srv_save_readout,
                            qos_profile=common.SERVICE_QOS,
                            callback_group=files)
        self.create_service(Trigger, '~/load_readout', self._srv_load_readout,
                            qos_profile=common.SERVICE_QOS,
                            callback_group=files)
        self.create_service(Trigger, '~/plant_changed', self._srv_plant_changed,
                            qos_profile=common.SERVICE_QOS)
        self.clock_refused = 0          # /clock messages rclpy cannot read (see _guard_clock)
        self._guard_clock()
        self._jump_handle = self.get_clock().create_jump_callback(
            JumpThreshold(min_forward=None, min_backward=Duration(nanoseconds=-1),
                          on_clock_change=True),
            post_callback=self._on_clock_jump)
        # The loop runs on the node clock on simulated time (/clock drives it), else on the
        # steady clock: on the system clock a step back (NTP, date) held the timer until the
        # clock caught up, the last command applied all the while (2 s back: 2 s with none).
        # One pair per clock, the other cancelled; use_sim_time set live switches them.
        period, steady = 1.0 / self.controller.config.control_rate_hz, Clock(
            clock_type=ClockType.STEADY_TIME)
        self._loop_timers = {on_sim: (
            self.create_timer(period, self._on_tick, clock=clock, autostart=False),
            self.create_timer(1.0, self.publish_diagnostics, clock=clock, autostart=False))
            for on_sim, clock in ((True, None), (False, steady))}
        self._ticking = True
        self._follow_time_source()
        # ... and on the wall clock while the node clock stands still (no /clock yet, or it
        # stopped): a silent node would not say why no commands come out.
        self._diagnostics_wall_ns = self._clock_moved_wall_ns = time.monotonic_ns()
        self._watched_clock_ns = self.get_clock().now().nanoseconds
        self._stall_zeroed = False         # zero effort sent since the last tick's command
        self._diagnostics_watchdog = self.create_timer(
            0.25, self._publish_diagnostics_if_stalled,
            clock=Clock(clock_type=ClockType.STEADY_TIME))

    def _guard_clock(self) -> None:
        """
        Refuse a ``/clock`` message rclpy cannot read, instead of exiting.

        A negative time (``sec`` < 0) made rclpy's time source raise ValueError in the
        executor: the node ended and control stopped. It is dropped, counted on
        ``/diagnostics`` and logged; the node clock stays where it was. Also for the
        subscription rclpy makes when ``use_sim_time`` is set live. (The time source's
        attributes are rclpy's own, not its API: where a release lacks them, no guard.)
        """
        source = getattr(self, '_time_source', None)
        read = getattr(source, 'clock_callback', None)
        if read is None:
            self.get_logger().debug('no /clock guard: rclpy time source without clock_callback')
            return

        def guarded(msg) -> None:
            if msg.clock.sec < 0:       # (nanosec is unsigned: the one time rclpy refuses)
                self.clock_refused += 1
                self._refusal_log.warn(('/clock', C.MALFORMED), 'dropped a /clock message '
                                       f'with a negative time (sec {msg.clock.sec}); '
                                       f'{self.clock_refused} so far')
                return
            read(msg)
        source.clock_callback = guarded
        subscription = getattr(source, '_clock_sub', None)
        if subscription is not None:
            subscription.callback = guarded

    def command_zero_effort(self, timeout_s: float = 1.0) -> bool:
        """
        Publish zero effort on ``commands``; wait (at most ``timeout_s``) until it is received.

        For a node that stops commanding: ros2_control's forward command controllers apply
        the last command received until another comes, so the robot would go on pushing
        with the last torque of a loop that no longer runs. Returns whether every reliable
        subscriber acknowledged it in time.
        """
        if not self._publish_zero_effort():
            return False
        acked = self._commands_pub.wait_for_all_acked(Duration(seconds=timeout_s))
        self.get_logger().info('stopped: zero effort commanded'
                               + ('' if acked else ' (not acknowledged by every subscriber)'))
        return acked

    def _publish_zero_effort(self) -> bool:
        """Publish zero effort on ``commands`` (counted); return whether it went out."""
        self._command.view[:] = 0.0
        sent = self._publisher.publish(self._commands_pub, self._command.msg)
        self.commands_published += sent
        return sent

    def destroy_node(self) -> None:
        handle = getattr(self, '_jump_handle', None)
        if handle is not None:
            handle.unregister()
            self._jump_handle = None
        if getattr(self, 'readout_store', None) is not None:
            self.readout_store.close()
        super().destroy_node()

    # -- parameters ------------------------------------------------------------------
    def _on_use_sim_time(self, parameters: list) -> None:
        """Follow ``use_sim_time`` set live: the lock-step wait is for sim time only."""
        for param in parameters:
            if param.name == 'use_sim_time':
                self._sync_stamps = (self.controller.config.sync_to_joint_state_stamps
                                     and bool(param.value))

    def _follow_time_source(self) -> None:
        """Run the loop's timers on the node clock on simulated time, else on the steady one."""
        self._on_sim_time = sim = self.get_clock().ros_time_is_active
        self._tick_clocks = None
        for on_sim, timers in self._loop_timers.items():
            for timer in timers:
                if on_sim == sim and self._ticking:
                    if timer.is_canceled():
                        timer.reset()
                elif not timer.is_canceled():
                    timer.cancel()
        self._timer, self._diagnostics_timer = self._loop_timers[sim]

    def stop_ticking(self) -> None:
        """Stop the control loop's timers for good (a clock change does not restart them)."""
        self._ticking = False
        self._follow_time_source()

    def _system_clock_step(self, now: int, steady: int) -> int:
        """
        Return how much more the node clock, off simulated time, moved than the steady one.

        ``now`` and ``steady``: the two clocks read back to back. 0 below ``CLOCK_STEP_NS``.
        Above it the system clock stepped (NTP, ``date``): arrival times on either side of
        the step do not compare, so it is handled as a clock jump (``_on_clock_jump``).
        """
        last = self._tick_clocks
        self._tick_clocks = (now, steady)
        step = 0 if last is None else (now - last[0]) - (steady - last[1])
        return step if abs(step) > CLOCK_STEP_NS else 0

    def _apply_parameters(self, changes: dict[str, Any]) -> None:
        """Post-set callback: the values were validated, apply them without a rebuild."""
        try:
            self.controller.update_params(changes)
        except ValueError as e:    # validated already; would be a schema/core mismatch
            self.get_logger().error(f'parameter change not applied: {e}')
            return
        cfg = self.controller.config
        self.loop.set_timeout(cfg.sensor_timeout_s)
        self.loop.stale_action = cfg.stale_sensor_action
        guarded = self.readout_store.guarded
        self.readout_store.configure(cfg.readout_path, cfg.readout_autosave_period_s)
        if 'readout_path' in changes and self.readout_store.not_a_file:
            self.get_logger().warning(
                f'readout_path {self.readout_store.not_a_file}: nothing can be saved there or '
                'loaded from it; set it to a file (.npz)')
        elif self.readout_store.guarded and self.readout_store.guarded != guarded:
            self.get_logger().warning(
                f'readout_path {cfg.readout_path} already exists: autosave will not overwrite '
                "it (it may hold another robot's learning) until ~/save_readout replaces it "
                'or ~/load_readout loads it')
        if any(k.startswith(('reference.', 'limits.')) for k in changes):
            # (a new reference blends in from where the old one is: only when there is one)
            self._configure_inputs(any(k.startswith('reference.') for k in changes))

    def _limits_problems(self, changes: dict[str, Any]) -> list[str]:
        """
        Return why new plausibility limits do not fit the robot, its desired state or path.

        Beyond them its own joint_states would be dropped as implausible: the sensor goes
        stale and the robot is left to the stale-sensor action (zero effort by default)
        while the reference pulls on (continuous joints are exempt from limits.position).
        """
        names = ('limits.position', 'limits.velocity')
        if not changes.keys() & set(names):
            return []
        ctrl = self.controller
        n = ctrl.n
        position, velocity = (per_joint(changes.get(name, ctrl.config[name]), n)
                              for name in names)
        if position is None or velocity is None:
            return []                    # refused on its own size
        position = self._plausible_positions(position)
        states = [('the desired state', np.abs(self.desired.q), np.abs(self.desired.qd))]
        if self._have_sensor:
            states = [('the measured state', np.abs(self._q), np.abs(self._qd)), *states]
        now = self.get_clock().now().nanoseconds
        states += [('the ~/joint_trajectory held', q, qd)
                   for q, qd in self._trajectory.peaks(now)]
        problems = []
        for what, q, qd in states:          # (position, then velocity)
            for name, value, limit in ((names[0], q, position), (names[1], qd, velocity)):
                for j in np.flatnonzero(value > limit):
                    problems.append(
                        f'{what} of {self.joints[j]} reaches {value[j]:g}, beyond the new '
                        f'{name} {limit[j]:g}: its joint_states would be dropped as '
                        'implausible and the robot left to the stale-sensor action')
        return problems

    def _configure_inputs(self, reference: bool = True) -> None:
        """Carry the reference (if ``reference``) and plausibility limits into their readers."""
        cfg = self.controller.config
        ref = cfg.reference
        if reference:
            if ref.mode == 'topic' and self.desired.generator is not None:
                # a set point received while generating was not followed: going to it now
                # would move the robot to a target nobody sent since; hold until one comes
                self._reference.forget()
                self._trajectory.forget()
                self.desired.hold[:] = self.desired.q
            self.desired.configure(ref.mode, ref.amplitude, ref.frequency_hz, ref.offset,
                                   ref.seed)
        position = self._plausible_positions(cfg.limits.position)
        for reader in (self._sensor, self._reference.reader, self._trajectory):
            reader.set_limits(position, cfg.limits.velocity)

    def _plausible_positions(self, limit) -> np.ndarray:
        """Return limits.position as the readers apply it: none on continuous joints."""
        return np.where(self.controller.continuous, np.inf, limit)

    # -- inputs ------------------------------------------------------------------------
    def _on_joint_states(self, msg: JointState) -> None:
        now = self.get_clock().now().nanoseconds
        reason = self._sensor.read(msg, self._q, self._qd, now)
        if reason == C.NOT_OURS:
            self.foreign_messages += 1        # another driver's joints: not for us
            if not self._have_sensor:         # or a joint name that is wrong
                self._refusal_log.warn(
                    ('joint_states', C.NOT_OURS),
                    f'waiting for joint_states naming {list(self.joints)}: got one naming '
                    f'{list(msg.name)[:8]}; {self.foreign_messages} such so far')
            return
        if not reason and self._jumped_back and not self._have_sensor:
            reason = self._sent_before_jump(msg, now)
        if reason:
            self._refuse(self.rejected, reason, 'a joint_states message')
            self._release_waiting_tick(msg, reason)
            return
        self._log_new_time_base(self._sensor, 'joint_states')
        self.sensor_messages += 1
        if not self._sensor.complete:   # split publishers: not every one heard yet
            self._refusal_log.warn(
                ('joint_states', 'partial'),
                f'joint_states so far without {self._sensor.missing()}: control starts '
                'when every joint has come (publishers naming some joints each are merged)')
            return
        # (once every joint has come: before, a joint not heard yet read as differenced)
        if not (self._sensor.has_velocity or self._differentiating_logged):
            self._differentiating_logged = True
            self.get_logger().info(f'joint_states carry no velocity for '
                                   f'{self._sensor.differenced()}: using the difference of '
                                   'successive positions there')
        stamp = self._sensor.stamp_ns   # the oldest joint's (split publishers)
        # The same stamp again is the same sample again (a driver re-publishing a frozen
        # sensor): it does not make the sensor fresh.
        if not (stamp and stamp == self._sensor_stamp_ns):
            self._sensor_fresh(stamp)
        self._sensor_stamp_ns = stamp
        self._sensor_wall_ns = time.perf_counter_ns()
        if not self._have_sensor:
            self._have_sensor = True
            self._jumped_back = False
            self._silent_since_ns = None
            self.desired.hold[:] = self._q
            self.get_logger().info('first valid joint_states: control starts')
        # Only the state of the waiting tick's time releases it (a repeat of the previous
        # state or an unstamped one would run that tick on the old state).
        if self._deferred_tick_ns is not None and stamp >= self._deferred_tick_ns:
            self._tick(self._deferred_tick_ns)

    def _sent_before_jump(self, msg: JointState, now: int) -> str | None:
        """
        After the clock jumped back, refuse a state stamped ahead of the new clock.

        A state published before a simulation reset and delivered after it carries a stamp
        of the old timeline, ahead of the new clock by less than the future-stamp tolerance:
        taken as the first valid state it would set the hold pose to where the robot was
        before the reset, and the reset's own states would then read as stamped backwards.
        Until the first state is accepted only a tick ahead is allowed (a lock-step
        simulator's state runs one ahead).
        """
        stamp = C.stamp_to_ns(msg.header.stamp)
        if stamp > now + 2 * self.period_ns:
            self._sensor.reset()        # (its readers took the refused stamp as the latest)
            return C.STAMP_IN_FUTURE
        return None

    def _release_waiting_tick(self, refused: JointState, reason: str) -> None:
        """
        Run the tick that waits for this refused state (sync) on the last valid one.

        A lock-step simulator advances only on a command: the waiting tick would never run,
        nor would any after it (one implausible state stopped the loop for good). On the
        last valid state, whose age then makes the sensor stale, as a dropped message does
        in real time. A stamp refused as ahead of the clock or malformed says nothing about
        the simulator's time: kept, it would release every later tick at once.
        """
        if reason in (C.STAMP_IN_FUTURE, C.MALFORMED):
            return
        stamp = C.stamp_to_ns(refused.header.stamp)
        self._refused_stamp_ns = max(self._refused_stamp_ns, stamp)   # (came before /clock)
        # as for a valid state: only one of the waiting tick's time releases it
        if self._deferred_tick_ns is not None and stamp >= self._deferred_tick_ns:
            self._tick(self._deferred_tick_ns)

    def _sensor_fresh(self, stamp: int) -> None:
        """
        Record when the state just read was measured, for the stale-sensor test.

        From the stamp when it is the simulator's own time (sync): the arrival time reads 0
        if this state comes before the first /clock. Otherwise, and for an unstamped
        state, from its arrival (split publishers: the oldest joint's stamp, or the arrival
        of its latest new sample); before the node clock has started that is unknown, so
        the first tick counts it as fresh (else a node joining a running simulation at
        t = 5 s found its first state 5 s old). A time ahead of the clock is brought back
        to it at each tick (``_tick``).
        """
        arrived = self._sensor.fresh_ns    # the oldest joint's latest new sample's arrival
        if self._sync_stamps and stamp:
            self.loop.sensor_received(stamp)
        elif arrived > 0:
            self.loop.sensor_received(arrived)
        else:
            self._fresh_at_first_tick = True

    def _on_reference(self, msg: JointState) -> None:
        was_held = self._reference.held
        reason = self._reference.update(msg, self.get_clock().now().nanoseconds)
        if reason:
            self._refuse(self.rejected_reference, reason, 'a ~/reference message')
            return
        self._log_new_time_base(self._reference.reader, '~/reference')
        self.reference_messages += 1
        self._trajectory.forget()       # the newest message is followed
        if was_held:
            self.get_logger().info('~/reference resumed')

    def _on_trajectory(self, msg: JointTrajectory) -> None:
        reason = self._trajectory.update(msg, self.get_clock().now().nanoseconds)
        if reason:
            self._refuse(self.rejected_trajectory, reason,
                         f'a ~/joint_trajectory message: {self._trajectory.problem}')
            return
        self.trajectory_messages += 1

    def _log_new_time_base(self, reader: C.JointStateReader, topic: str) -> None:
        """Warn once per event that ``topic``'s stamps went back and are followed now."""
        if reader.resyncs != self._resyncs_logged.get(topic, 0):
            self._resyncs_logged[topic] = reader.resyncs
            self.get_logger().warning(
                f'{topic} stamps went back {reader.resync_ns * 1e-9:.3f} s and ran on '
                f'consistently for {C.RESYNC_MESSAGES} messages: following the new time base '
                '(a publisher restarted, its clock stepped, or an earlier stamp was ahead)')

    def _refuse(self, counts: dict, reason: str, what: str) -> None:
        """Count a refusal; log it at most every 5 s per input and reason."""
        counts[reason] += 1
        self._refusal_log.warn((id(counts), reason),
                               f'dropped {what} ({reason}); {counts[reason]} so far')

    def _on_clock_jump(self, jump, what: str = 'clock jumped backwards or changed',
                       step_ns: Optional[int] = None) -> None:
        """
        Handle a clock that went back (simulation reset, bag loop), changed or stepped.

        Old stamps and arrival times are meaningless now: wait for fresh
        joint_states (no commands until then) and restart the reservoir state;
        what was learned is kept. ``step_ns``: the system clock stepped by this much, off
        simulated time (``_system_clock_step``): the robot did not move, so a generated
        reference runs on from where it was (restarted, it stepped the effort to kp times
        its offset), and a publisher on another machine, its clock a little ahead, is not
        refused as stamped before the jump (it never was again).
        """
        self._follow_time_source()      # (use_sim_time set live: the other clock's timers)
        self._sensor.reset()
        self._reference.reset()         # the old reference is not commanded on the new clock
        if step_ns is None:
            self._trajectory.forget()
        else:
            self._trajectory.shift_time(step_ns)
        self._have_sensor = False
        self._fresh_at_first_tick = False
        s = self.stats                  # the rate is measured on the new clock from here
        self._diag_mark = (s.count, s.callbacks, self.get_clock().now().nanoseconds)
        if step_ns is None:
            self.desired.restart()
        else:
            self.desired.shift_time(step_ns)
        self._sensor_stamp_ns = self._refused_stamp_ns = 0
        self._deferred_tick_ns = None
        self._jumped_back = step_ns is None
        self._silent_since_ns = self.get_clock().now().nanoseconds
        self.loop.clock_jumped()
        self.readout_store.restart_schedule()     # the next autosave is due on the new clock
        self.get_logger().warning(f'{what}: waiting for joint_states')

    # -- the control tick ----------------------------------------------------------
    def _on_tick(self) -> None:
        self.stats.callbacks += 1
        if not self._have_sensor:
            self._zero_if_silent_since_jump()
            return          # never command a robot we have not heard from
        now = self.get_clock().now().nanoseconds
        step = 0 if self._on_sim_time else self._system_clock_step(now, time.monotonic_ns())
        if step:
            self._on_clock_jump(None, f'the system clock stepped {step * 1e-9:+.3f} s', step)
            return
        if self._deferred_tick_ns is not None:
            self._tick(self._deferred_tick_ns)     # its joint_states never came
        if self._sync_stamps and max(self._sensor_stamp_ns, self._refused_stamp_ns) < now:
            self._deferred_tick_ns = now
            return
        self._tick(now)

    def _zero_if_silent_since_jump(self) -> None:
        """
        Command zero effort once if no joint_states came within sensor_timeout_s of a jump.

        No tick runs until one comes on the new clock, and a driver keeps applying the last
        command it got: a silent or refused sensor left that torque on for good.
        """
        since = self._silent_since_ns
        if (since is None or self.loop.stale_action != 'zero' or self._sync_stamps
                or self.get_clock().now().nanoseconds - since <= self.loop.timeout_ns):
            return
        self._silent_since_ns = None
        if self._command.view.any() and self._publish_zero_effort():
            self.get_logger().warning(
                f'no valid joint_states for sensor_timeout_s '
                f'{self.loop.timeout_ns * 1e-9:g} s since the clock jump: zero effort')

    def _tick(self, now: int) -> None:
        start = time.perf_counter_ns()
        self._deferred_tick_ns = None
        view = self._command.view
        loop = self.loop
        if self._fresh_at_first_tick or loop.sensor_time_ns > now:
            # (a state that came before the clock, or stamped ahead of it: no fresher
            # than now, else a stamp far ahead kept a silent sensor fresh for good)
            self._fresh_at_first_tick = False
            self._sensor.arrived_by(now)
            loop.sensor_received(now)
        self._check_reference_age(now)
        if now - loop.sensor_time_ns <= loop.timeout_ns:
            # generated references start at the first command; while stale the
            # last desired state is kept, and control resumes from where the robot is if
            # the reference (generated or received) moved on (a 0.5 s drop-out mid-sine stepped the
            # desired position by 0.66 rad, the command to 75 % of its limit)
            received = self._received()
            resuming = loop.stale
            if resuming:
                self.desired.resume(now, self._q, received)
            self.desired.update(now, received)
            self._take_over_trajectory(now, resuming)
        d = self.desired
        event = loop.act(now, (self._q, self._qd), (d.q, d.qd, d.qdd))
        view[:] = loop.command
        sent = self._publisher.publish(self._commands_pub, self._command.msg)
        self._stall_zeroed = False
        commanded = time.perf_counter_ns()
        learned = loop.adapt()   # learning, the supervisor and the forward model: after it
        if event == STALE:
            self.get_logger().warning(
                f'no valid joint_states for {loop.sensor_age_s(now):.3f} s '
                f'(sensor_timeout_s {loop.timeout_ns * 1e-9:g}): publishing '
                f'{"zero effort" if loop.stale_action == "zero" else "the last command"}')
        elif event == RESUMED:
            self.get_logger().info('joint_states resumed: control resumes')
        if REFUSED in (event, learned):
            self._refuse(self.rejected, CONTROLLER_REFUSED, f'a tick: {loop.refusal}')
        if self._events_pending():
            self._log_new_events()
        # Every command has its desired state (the last one while sensors are stale),
        # stamped with the tick time, so a recording can set it against joint_states.
        msg = self._desired_msg
        C.set_stamp(msg.header.stamp, now)
        msg.position, msg.velocity = self.desired.q, self.desired.qd
        self._publisher.publish(self._desired_pub, msg)
        if (self.controller.forward is not None and event is None and learned is None
                and not loop.stale):
            self._publish_prediction(now)
        self._publish_state()
        self.commands_published += sent
        self.stats.record(start, commanded, time.perf_counter_ns(), self._sensor_wall_ns,
                          self._sensor_stamp_ns, self.period_ns)
        self.readout_store.tick(now)    # autosave: after the command is out, written off thread

    def _received(self):
        """Return the received reference followed: the newest accepted message's, or None."""
        if self._trajectory.active is not None:
            return self._trajectory
        return self._reference if self._reference.received else None

    def _take_over_trajectory(self, now: int, resuming: bool) -> None:
        """
        Start a pending trajectory whose time has come, from this tick's desired state.

        The desired state runs on unbroken, and a blend running (a reference.* change, a
        resume) ends there: the trajectory starts from what it had mixed (blended on, it
        was mixed in twice: a step of 0.13 rad). Control resuming after a sensor drop-out
        (``resuming``), it starts from the measured position at rest (continuous joints
        in the branch of the desired position), whatever the reference before did.
        """
        d = self.desired
        if self._trajectory.pending is None or d.generator is not None:
            return
        if resuming:
            q = nearest_branch(self._q, d.q, self.controller.continuous)
            start = (q, np.zeros_like(q), np.zeros_like(q))
        else:
            start = (d.q, d.qd, d.qdd)
        outcome = self._trajectory.take_over(now, *start, self.period_ns)
        if outcome == STARTED:
            self._reference.forget()
            d.end_blend()
            self._trajectory.sample(now, d.q, d.qd, d.qdd)     # (its start: this tick's)
        elif outcome in (ENDS_IN_THE_PAST, C.IMPLAUSIBLE):
            self._refuse(self.rejected_trajectory, outcome,
                         f'a ~/joint_trajectory message: {self._trajectory.problem}')

    def _check_reference_age(self, now: int) -> None:
        """
        Hold a moving ``~/reference`` that stopped coming where it had got to.

        Its last velocity and acceleration would otherwise drive the robot on for good
        (the position frozen, PD alone pushing at kd times the velocity). A set point (no
        velocity) is meant to be held and never times out.
        """
        timeout = self.controller.config.reference_timeout_s
        ref = self._reference
        if ref.received and ref.time_ns == 0:
            ref.time_ns = now       # it came before the node clock started (as joint_states)
        if (timeout <= 0.0 or not ref.received or ref.held
                or self.desired.generator is not None or not ref.moving
                or now - ref.time_ns <= timeout * 1e9):
            return
        ref.hold(now)
        self.reference_stale_episodes += 1
        self.get_logger().warning(
            f'~/reference silent for {(now - ref.time_ns) * 1e-9:.3f} s while moving '
            f'(reference_timeout_s {timeout:g}): holding it where it had got to')

    def _publish_state(self) -> None:
        decimation = self.controller.config.controller_state_decimation
        if decimation == 0:
            return
        # (a decimation lowered live counts from now, not from the old countdown)
        self._state_countdown = min(self._state_countdown, decimation) - 1
        if self._state_countdown <= 0:
            self._state_countdown = decimation
            self.loop.state(self._state_msg.table)
            self._publisher.publish(self._state_pub, self._state_msg.msg)

    def _publish_prediction(self, now: int) -> None:
        forward, offset = self.controller.forward, self.controller.position_offset
        for i, publisher, msg, position, ahead_ns in self._predictions:
            predicted = forward.prediction(i)
            C.set_stamp(msg.header.stamp, now + ahead_ns)
            # (continuous joints: in the branch their joint_states came in)
            msg.position = np.subtract(predicted[0], offset, out=position)
            msg.velocity = predicted[1]
            self._publisher.publish(publisher, msg)

    def _events_pending(self) -> bool:
        ctrl = self.controller
        return (len(ctrl.supervisor.interventions) > self._interventions_logged
                or len(ctrl.change_detector.detections) > self._detections_logged
                or (ctrl.forward is not None
                    and len(ctrl.forward.detector.detections) > self._anomalies_logged))

    def _log_new_events(self) -> None:
        """Log each supervisor intervention, detected plant change and anomaly once."""
        ctrl, log = self.controller, self.get_logger()
        for event in ctrl.supervisor.interventions[self._interventions_logged:]:
            good = event.action in ('resume', 'gain_restored', 'pd_restored')   # not trips
            common.log_outcome(log, good, f'learning supervisor: '
                               f'{event.action} after {event.time_s:.2f} s of control: '
                               f'{event.reason}')
            self._interventions_logged += 1
        for event in ctrl.change_detector.detections[self._detections_logged:]:
            log.info(f'plant change detected after {event.time_s:.2f} s of control: '
                     f'{event.reason}')
            self._detections_logged += 1
        anomalies = ctrl.forward.detector.detections if ctrl.forward is not None else ()
        for event in anomalies[self._anomalies_logged:]:
            log.warning(f'prediction anomaly after {event.time_s:.2f} s of control: '
                        f'{event.reason}')
            self._anomalies_logged += 1

    def _log_pd_health(self) -> None:
        """Log each kind of PD-loop trouble once when it appears (again after it cleared)."""
        health = self.loop.pd_health()
        for kind in health.keys() - self._pd_health_logged:
            self.get_logger().warning(health[kind])
        self._pd_health_logged = set(health)

    # -- diagnostics ---------------------------------------------------------------------
    def diagnostics(self) -> DiagnosticArray:
        """Build the status since the previous call (rates and percentiles over that window)."""
        now = self.get_clock().now()
        count0, callbacks0, t0 = self._diag_mark
        s = self.stats
        self._diag_mark = (s.count, s.callbacks, now.nanoseconds)
        elapsed = (now.nanoseconds - t0) * 1e-9
        rate = (s.callbacks - callbacks0) / elapsed if elapsed > 0 else 0.0
        p50, p99, worst = s.compute_ms(s.count - count0)
        age = (self.loop.sensor_age_s(now.nanoseconds) if self._have_sensor
               else float('nan'))
        problems = [] if self._have_sensor else ['waiting for joint_states' + (
            f' of {self._sensor.missing()}' if self._sensor.sources else '')]
        problems += [] if elapsed > 0 else [
            'the node clock stands still (use_sim_time: is /clock published?)']
        problems += ['tick overran the control period'] if worst > self.period_ns * 1e-6 else []
        problems += self.loop.problems()
        problems += ['~/reference stopped while moving: held'] if self._reference.held else []
        waits = self._trajectory.waits_s(now.nanoseconds)
        problems += [f'~/joint_trajectory waits {waits:.1f} s for its header.stamp (a stamp on '
                     'another clock?)'] if waits > TRAJECTORY_WAIT_WARN_S else []
        problems += self._dropped_since_last_report()
        skipped, self._diag_skipped = (self.readout_store.skipped - self._diag_skipped,
                                       self.readout_store.skipped)
        problems += [f'readout writer busy: {skipped} autosave(s) skipped since the last '
                     'report (a slow or hung disk?)'] if skipped else []
        self._log_pd_health()
        problems += [self.readout_store.last_error] if self.readout_store.last_error else []
        # a guarded readout_path holds every automatic save until the operator acts
        guard = self.readout_store.guard_problem
        problems += [guard] if guard else []
        values = [
            ('control rate target [Hz]', 1e9 / self.period_ns),
            ('control rate achieved [Hz]', rate),
            ('tick compute p50 [ms]', p50),
            ('tick compute p99 [ms]', p99),
            ('tick compute max [ms]', worst),
            ('tick entry to command published p99 [ms]', s.compute_ms(s.count - count0,
                                                                      'command')[1]),
            ('overruns', s.overruns),
            ('commands published', self.commands_published),
            ('failed publishes', self._publisher.failures),
            ('sensor age [s]', age),
            ('joint_states received', self.sensor_messages),
            ('joint_states without our joints (ignored)', self.foreign_messages),
            ('joint_states publishers merged (joint sets)', self._sensor.sources),
            ('joint_states stamps: new time bases followed', self._sensor.resyncs),
            ('/clock rejected: malformed', self.clock_refused),
            ('joint_states velocity', 'position differences: '
             + ', '.join(self._sensor.differenced())
             if self.sensor_messages and not self._sensor.has_velocity else 'measured'),
            *((f'joint_states rejected: {k}', v) for k, v in self.rejected.items()),
            ('reference received', self.reference_messages),
            ('reference age [s]', (now.nanoseconds - self._reference.time_ns) * 1e-9
             if self._reference.received else float('nan')),
            ('reference stale episodes', self.reference_stale_episodes),
            *((f'reference rejected: {k}', v) for k, v in self.rejected_reference.items()),
            ('joint_trajectory received', self.trajectory_messages),
            ('joint_trajectory following', self._trajectory_state(now.nanoseconds)),
            *((f'joint_trajectory rejected: {k}', v)
              for k, v in self.rejected_trajectory.items()),
            *self.loop.status(),
            ('readout autosaves', self.readout_store.saves),
            ('readout autosaves skipped (writer busy)', self.readout_store.skipped),
            ('readout autosaves withheld (doubtful readout)', self.readout_store.withheld),
            ('readout autosave last withheld because', self.readout_store.withheld_because or ''),
        ]
        return common.diagnostic_array(
            self.get_fully_qualified_name(), 'adaptive controller',
            problems, values,
            'learning' if self.controller.learning_enabled else 'running, learning off',
            now.nanoseconds)

    def _trajectory_state(self, now: int) -> str:
        t = self._trajectory
        if not t.received:
            return 'no'
        if self.desired.generator is not None:
            return 'no: reference.mode generates the reference'
        if t.pending is not None:
            return f'pending: starts in {t.waits_s(now):.3f} s'
        return 'moving' if t.moving(now) else 'at its last waypoint'

    def _dropped_since_last_report(self) -> list[str]:
        """
        Say which inputs were dropped since the previous report, and why (a WARN).

        The counters alone left the level OK while every ~/reference was dropped (joint
        names that do not match, stamps on another clock) and the robot just held still.
        """
        problems = []
        for what, counts, before in zip(('joint_states', '~/reference', '~/joint_trajectory'),
                                        (self.rejected, self.rejected_reference,
                                         self.rejected_trajectory),
                                        self._diag_dropped):
            new = {k: v - before.get(k, 0) for k, v in counts.items() if v > before.get(k, 0)}
            if new:
                why = ', '.join(f'{k} {n}' for k, n in new.items())
                problems.append(f'{what} dropped since the last report ({why})')
        self._diag_dropped = (dict(self.rejected), dict(self.rejected_reference),
                              dict(self.rejected_trajectory))
        return problems

    def publish_diagnostics(self) -> None:
        self._diagnostics_wall_ns = time.monotonic_ns()
        self._publisher.publish(self._diagnostics_pub, self.diagnostics())

    def _publish_diagnostics_if_stalled(self) -> None:
        # Stalled: the node clock has not moved for 1.25 s of wall time. Not "no report for
        # 1.25 s": a simulation slower than 0.8x real time reports less often than that on
        # its own clock, and was zeroed mid-run. About 1 Hz while stalled.
        wall, clock = time.monotonic_ns(), self.get_clock().now().nanoseconds
        if clock != self._watched_clock_ns:
            self._watched_clock_ns, self._clock_moved_wall_ns = clock, wall
        if (wall - self._clock_moved_wall_ns > 1_250_000_000
                and wall - self._diagnostics_wall_ns > 1_000_000_000):
            self.publish_diagnostics()
            self._zero_effort_while_stalled()

    def _zero_effort_while_stalled(self) -> None:
        """
        Act on a node clock that stands still (use_sim_time, no /clock) as on stale sensors.

        No tick runs, so the last command stayed on ``commands``, and a forward command
        controller applies it until another comes (use_sim_time set live with no /clock
        left 0.73 N m on a pendulum for good). Once per stall, with ``stale_sensor_action``
        zero (the default); ``hold`` keeps it, as for stale sensors. Not in the lock-step
        protocol (``sync_to_joint_state_stamps``): there the simulator steps once per
        command, so a command of the node's own would move it (a demo arm stepped an extra
        period), and its clock stands still only while it waits for a command or is paused.
        """
        if self._stall_zeroed or self.loop.stale_action != 'zero' or self._sync_stamps:
            return
        self._stall_zeroed = True
        if self._command.view.any():
            self._publish_zero_effort()
            self.get_logger().warning('the node clock stands still (use_sim_time: is /clock '
                                      'published?): zero effort commanded until it runs')


def main(args: Optional[list] = None) -> int:
    """
    Run the console script ``lnn_controller``.

    Spins until Ctrl-C / SIGTERM, then saves the readout (when ``readout_path`` is set) and
    exits 0; invalid parameters: exit 1.
    """
    return common.run_node(LnnControllerNode, NODE_NAME, args,
                           'Adaptive reservoir-computing controller node.',
                           on_shutdown=LnnControllerNode.on_shutdown)


if __name__ == '__main__':
    sys.exit(main())

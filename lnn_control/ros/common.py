"""
ROS plumbing both nodes share: QoS profiles, diagnostics, executors, the main() runner.

The ``main()`` runner comes with its signal handling; stamps are in ``conversions``.

QoS, in one place (ROS 2 matching rules: a BEST_EFFORT subscription hears
RELIABLE publishers, a RELIABLE one does not hear BEST_EFFORT publishers):

* ``SENSOR_QOS`` -- the controller's joint_states and reference subscriptions
  (``qos_profile_sensor_data``: takes both kinds of publisher);
* ``LATCHED_QOS`` -- what the nodes publish for a robot and a recorder:
  commands, desired states, the simulator's joint_states. RELIABLE (as
  ros2_control's forward command controllers subscribe), depth 100 and
  transient-local, so a recorder that falls behind for a moment or is matched
  after the first ticks still gets everything; volatile subscribers get no
  replay;
* ``COMMAND_QOS`` -- the simulator's command subscription (what ros2_control's
  controllers use: RELIABLE, depth 10);
* ``CLOCK_QOS`` -- ``/clock``: RELIABLE reaches rclpy's best-effort
  TimeSource and reliable recorders alike;
* ``RECORD_QOS``, ``RECORD_BEST_EFFORT_QOS``, ``RECORD_LATCHED_QOS`` -- a
  recorder's subscriptions, deep (1000) so a burst loses nothing;
* ``SERVICE_QOS`` -- the nodes' services: ROS's service profile, but 100 requests
  deep instead of 10, so that a burst of calls (scripts, several tools at once) is
  queued, not dropped (20 calls at once: 11-15 answered at depth 10, all at 100 when
  the clients' own depth allows).
"""
from __future__ import annotations

import argparse
import copy
import signal
import sys
import threading
import time
from typing import Any, Callable, Iterable, Optional

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
import rclpy
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.qos import (DurabilityPolicy, qos_profile_sensor_data, qos_profile_services_default,
                       QoSProfile, ReliabilityPolicy)
from rclpy.qos_overriding_options import QoSOverridingOptions, QoSPolicyKind
from rclpy.signals import SignalHandlerOptions

from .conversions import set_stamp
from .. import realtime

SENSOR_QOS = qos_profile_sensor_data
LATCHED_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
COMMAND_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
# as joint_trajectory_controller's ~/joint_trajectory (reliable: a dropped plan is not resent)
TRAJECTORY_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
CLOCK_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
RECORD_QOS = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
RECORD_BEST_EFFORT_QOS = QoSProfile(depth=1000, reliability=ReliabilityPolicy.BEST_EFFORT)
RECORD_LATCHED_QOS = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE,
                                durability=DurabilityPolicy.TRANSIENT_LOCAL)
SERVICE_QOS = QoSProfile(depth=100, reliability=qos_profile_services_default.reliability,
                         durability=qos_profile_services_default.durability)
# What a parameter file may override on the topics a robot's driver shares (the commands
# publisher, the joint_states and reference subscriptions): rclpy declares read-only
# qos_overrides.<topic>.<publisher|subscription>.<policy> parameters for them.
QOS_OVERRIDES = QoSOverridingOptions(policy_kinds=(
    QoSPolicyKind.HISTORY, QoSPolicyKind.DEPTH, QoSPolicyKind.RELIABILITY,
    QoSPolicyKind.DURABILITY))


def overridable(profile: QoSProfile) -> QoSProfile:
    """
    Return a copy of ``profile`` for an entity created with ``QOS_OVERRIDES``.

    rclpy writes the overrides into the profile it is given: the shared one changed every
    later node's in the process (a test's best-effort commands reached the next test's).
    """
    return copy.copy(profile)      # (the policies are replaced, not changed in place)


RCLError = _rclpy.RCLError     # as rclpy.subscription does; not re-exported publicly
EXECUTORS = ('single', 'events')


# -- diagnostics ----------------------------------------------------------------------
def diagnostic_array(node: str, what: str, problems: Iterable[str],
                     values: Iterable[tuple[str, Any]], ok_message: str,
                     stamp_ns: int) -> DiagnosticArray:
    """
    Return a DiagnosticArray of one status: WARN if there are problems, else OK.

    Named '<node>: <what>' with the node's fully qualified name, also its hardware_id:
    diagnostic_aggregator keys items by name, so two robots' nodes in their namespaces
    need two. WARN has the problems joined as its message, OK has ``ok_message``; floats
    are written as 6 significant digits.
    """
    problems = list(problems)
    status = DiagnosticStatus(name=f'{node}: {what}', hardware_id=node)
    status.level = DiagnosticStatus.WARN if problems else DiagnosticStatus.OK
    status.message = '; '.join(problems) or ok_message
    status.values = [KeyValue(key=k, value=(f'{v:.6g}' if isinstance(v, float) else str(v)))
                     for k, v in values]
    msg = DiagnosticArray(status=[status])
    set_stamp(msg.header.stamp, stamp_ns)
    return msg


def log_outcome(logger, ok: bool, message: str, failure: str = 'warning') -> None:
    """
    Log ``message`` at info when ``ok``, else at ``failure`` (``warning`` or ``error``).

    One call site per severity: rclpy raises ValueError when the severity of one call site
    changes between calls, which ``(log.info if ok else log.warning)(message)`` does.
    """
    if ok:
        logger.info(message)
    elif failure == 'error':
        logger.error(message)
    else:
        logger.warning(message)


class RefusalLog:
    """
    Warn about refused inputs at most every ``period_s`` per key (an input's reason).

    rclpy's ``throttle_duration_sec`` throttles per call site, so one refusal site would
    let one reason's warnings hide another's. The logger is looked up at each warning
    (``node.get_logger()``), as the nodes' other log lines are.
    """

    def __init__(self, node, period_s: float = 5.0):
        self._node = node
        self._period_s = float(period_s)
        self._last: dict = {}           # key -> monotonic s last logged

    def warn(self, key, text: str) -> None:
        now = time.monotonic()
        if now - self._last.get(key, -self._period_s) >= self._period_s:
            self._last[key] = now
            self._node.get_logger().warning(text)


class PublishGuard:
    """
    Publish without letting a middleware failure stop the control loop.

    A RELIABLE publish can fail with RCLError when a subscriber's history is full and
    the middleware's threads are starved (Fast DDS, ros2/rmw#209; seen with 12 nodes
    under SCHED_FIFO): a slow recorder or driver must not end the controller. Failures
    are counted (diagnostics) and logged at most every 5 s.
    """

    def __init__(self, logger):
        self.failures = 0
        self._logger = logger

    def publish(self, publisher, msg) -> bool:
        try:
            publisher.publish(msg)
            return True
        except _rclpy.RCLError as exc:
            self.failures += 1
            self._logger.error(f'publishing on {publisher.topic_name} failed ({exc}); '
                               f'{self.failures} failed publishes so far; control goes on',
                               throttle_duration_sec=5.0)
            return False


# -- executors and main() ----------------------------------------------------------------
def make_executor(kind: str = 'single', context=None):
    """
    Make an executor of the given ``kind``.

    ``single``: rclpy's SingleThreadedExecutor; ``events``: the experimental EventsExecutor
    (a C++ event queue, far less overhead per callback).
    """
    if kind == 'events':
        from rclpy.experimental import EventsExecutor
        return EventsExecutor(context=context)
    if kind != 'single':
        raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}; got {kind!r}")
    return SingleThreadedExecutor(context=context)


def _resolve_executor(kind: str, node) -> str:
    """Resolve ``auto``: ordered (single) for sim time or lock-step, else events."""
    if kind != 'auto':
        return kind
    ordered = getattr(node, 'lockstep', False) or node.get_parameter('use_sim_time').value
    return 'single' if ordered else 'events'


def executor_option(prog: str, description: str, argv: list) -> argparse.Namespace:
    """Parse the nodes' one command-line option (``--executor``); ROS arguments removed."""
    parser = argparse.ArgumentParser(
        prog=prog, description=description,
        epilog='Node settings are ROS parameters: --ros-args -p name:=value / --params-file.')
    parser.add_argument(
        '--executor', choices=('auto', *EXECUTORS), default='auto',
        help='events: rclpy.experimental.EventsExecutor, far less overhead per callback (at '
             '1 kHz: more ticks on time, a third of the sensor-to-command latency, '
             'benchmarks/README.md); single: rclpy SingleThreadedExecutor, whose callback '
             'order the lock-step protocol is reproducible with (measured: the events one '
             'let a tick use the previous state under load); auto (default): single for a '
             'node on simulated time or in a lock-step protocol, else events')
    return parser.parse_args(rclpy.utilities.remove_ros_args(args=argv)[1:])


def apply_process_settings(node, logger) -> Optional[realtime.QuietGc]:
    """
    Apply a node's ``realtime.*`` parameters (when it declares them) to this process.

    Call from the thread that will spin the executor. SCHED_FIFO priority and CPU
    affinity are applied at once; each refusal by the OS is one warning and the node runs
    on. With ``realtime.quiet_gc`` the returned policy's ``start()`` is to be called once
    setup is done; its 1 Hz collection timer is created on the node here.
    """
    if not node.has_parameter('realtime.priority'):
        return None
    value = node.get_parameter
    for applied, message in (realtime.apply_affinity(value('realtime.cpu_affinity').value),
                             realtime.apply_priority(value('realtime.priority').value)):
        if message:
            log_outcome(logger, applied, message)
    if not value('realtime.quiet_gc').value:
        return None
    policy = realtime.QuietGc()
    node.create_timer(1.0, policy.collect)
    return policy


class _StopRequest:
    """
    SIGINT / SIGTERM handlers that only ask the spin loop to stop.

    Python runs them between bytecodes on the main thread, which also runs the
    callbacks: setting a flag is all they do, so a tick in progress completes, and the
    loop sees it when ``spin_once`` returns (the control timer's period, at most its
    timeout; the EventsExecutor has no guard conditions to wake it sooner). A second
    signal while stopping raises KeyboardInterrupt, as a user pressing Ctrl-C twice
    expects, but not once the shutdown work has begun (``shield``): raised there, it
    skipped the readout's save, silently, and the node exited 0 with its learning lost.
    """

    def __init__(self):
        self.requested = False
        self.shielded = False
        self.ignored = 0                # signals that came while shielded
        self._previous = {}
        if threading.current_thread() is threading.main_thread():   # else Python refuses
            self._previous = {sig: signal.signal(sig, self._handle)
                              for sig in (signal.SIGINT, signal.SIGTERM)}

    def _handle(self, signum, frame) -> None:
        if self.shielded:
            self.ignored += 1
            return
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def shield(self) -> None:
        """From now on signals are counted, not raised: the shutdown work runs to its end."""
        self.requested = self.shielded = True

    def restore(self) -> None:
        """Put back the handlers that were installed before."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def stray_qos_overrides(node) -> list[str]:
    """
    Name the qos_overrides a parameter file set that no topic of ``node`` took (typos).

    rclpy takes an override only where an entity declared it (``QOS_OVERRIDES``); any
    other is ignored without a word.
    """
    stray = sorted(name for name in node._parameter_overrides    # (rclpy: no accessor)
                   if name.startswith('qos_overrides.') and not node.has_parameter(name))
    if not stray:
        return []
    taken = sorted({name.rsplit('.', 1)[0] for name in node._parameters
                    if name.startswith('qos_overrides.')})
    return [f'ignored {", ".join(stray)}: no topic of this node takes it (these do, with '
            f'.history, .depth, .reliability or .durability: {", ".join(taken)})']


def run_node(make_node: Callable[[], Any], node_name: str, args: Optional[list] = None,
             description: str = '',
             on_shutdown: Optional[Callable[[Any], Optional[tuple[Optional[bool], str]]]] = None
             ) -> int:
    """
    Run a node as a console script's ``main``; return the exit code.

    Builds the node, applies its ``realtime.*`` parameters (``apply_process_settings``),
    spins until Ctrl-C / SIGTERM, then calls ``on_shutdown(node)`` (its (ok, message) is
    logged) and exits 0. ``args``: the command line after the program name
    (None: ``sys.argv``).

    Invalid parameters (``make_node`` raises ValueError, or rclpy a ParameterException for
    its own, such as use_sim_time): logged on one line, exit 1. SIGINT and
    SIGTERM only ask the spin loop to stop between callbacks (``_StopRequest``): rclpy's
    own handlers shut the context down wherever the signal lands, and Python's raised
    KeyboardInterrupt inside a control tick (a FATAL log line with a traceback, and a
    shutdown save of a half-run tick). The loop also ends when something else shuts the
    context down (rclpy then raises ExternalShutdownException, or an RCLError or
    RuntimeError from a take it interrupted): a shutdown, not a failure. A spin_once
    loop, not ``spin()``: the EventsExecutor's spin() of rclpy 9.1 does not return on
    SIGINT/SIGTERM.
    """
    argv = sys.argv if args is None else [sys.argv[0], *args]
    try:            # malformed --ros-args or parameter files: one line, not a traceback
        cli = executor_option(node_name, description, argv)
        # our handlers (_StopRequest) need the main thread; elsewhere rclpy's stay
        main = threading.current_thread() is threading.main_thread()
        context = rclpy.init(args=argv, signal_handler_options=(
            SignalHandlerOptions.NO if main else None))
    except RCLError as e:
        print(f'[FATAL] [{node_name}]: invalid ROS arguments: {e}', file=sys.stderr)
        return 1
    try:
        with context:
            stop = _StopRequest()       # from here a signal asks to stop, start-up included
            try:
                try:
                    node = make_node()
                except ValueError as e:
                    rclpy.logging.get_logger(node_name).fatal(str(e))
                    return 1
                except ParameterException as e:
                    # rclpy's own parameters, checked in Node.__init__ before ours
                    # (use_sim_time: "true" in a parameter file): one line too
                    rclpy.logging.get_logger(node_name).fatal(f'invalid parameters: {e}')
                    return 1
                except RCLError:
                    if rclpy.ok():
                        raise
                    return 0            # shut down while starting: nothing to keep
                gc_policy = apply_process_settings(node, rclpy.logging.get_logger(node_name))
                executor = make_executor(_resolve_executor(cli.executor, node))
                executor.add_node(node)
                if gc_policy:
                    gc_policy.start()   # last: everything set up so far is frozen
                try:
                    while rclpy.ok() and not stop.requested:
                        try:
                            executor.spin_once(timeout_sec=0.5)
                        except RuntimeError:
                            # RCLError, or a RuntimeError from taking a message while the
                            # context shuts down (measured: pybind's 'Unable to convert
                            # call argument'): the shutdown, not a failure.
                            if rclpy.ok():
                                raise
                finally:
                    stop.shield()
                    result = on_shutdown(node) if on_shutdown else None
                    executor.shutdown()
                    node.destroy_node()
                    logger = rclpy.logging.get_logger(node_name)
                    if stop.ignored:
                        logger.info('stop requested again while stopping: finished the '
                                    'shutdown work first (it takes at most a few seconds)')
                    if result:      # (ok None: not done on purpose, a warning)
                        log_outcome(logger, bool(result[0]), result[1],
                                    'warning' if result[0] is None else 'error')
            finally:
                stop.restore()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    return 0

"""
Real-time process settings: refused with one clear message where the OS does not permit them.

The OS is replaced by monkeypatched functions, so the outcome does not depend on the
machine's privileges; nothing here changes this process's scheduling or affinity.
"""
import errno
import gc
import os

from lnn_control import realtime
import pytest


def _refuse(*args):
    raise PermissionError(errno.EPERM, 'Operation not permitted')


@pytest.mark.unit
def test_priority_zero_and_negative_affinity_leave_the_process_alone(monkeypatch):
    monkeypatch.setattr(os, 'sched_setscheduler', _refuse)
    monkeypatch.setattr(os, 'sched_setaffinity', _refuse)
    assert realtime.apply_priority(0) == (False, '')
    assert realtime.apply_affinity(-1) == (False, '')


@pytest.mark.unit
def test_refused_priority_is_a_message_not_an_exception(monkeypatch):
    monkeypatch.setattr(os, 'sched_setscheduler', _refuse)
    applied, message = realtime.apply_priority(80)
    assert not applied
    assert 'realtime.priority 80 refused' in message and 'normal scheduling' in message


@pytest.mark.unit
def test_granted_priority_asks_for_sched_fifo_of_the_calling_thread(monkeypatch):
    calls = []
    monkeypatch.setattr(os, 'sched_setscheduler', lambda *a: calls.append(a))
    applied, message = realtime.apply_priority(50)
    assert applied and 'SCHED_FIFO priority 50' in message
    (pid, policy, param), = calls
    assert (pid, policy, param.sched_priority) == (0, os.SCHED_FIFO, 50)


@pytest.mark.unit
def test_refused_or_granted_affinity(monkeypatch):
    def invalid(*args):
        raise OSError(errno.EINVAL, 'Invalid argument')
    monkeypatch.setattr(os, 'sched_setaffinity', invalid)
    applied, message = realtime.apply_affinity(7)
    assert not applied and 'realtime.cpu_affinity 7 refused' in message
    calls = []
    monkeypatch.setattr(os, 'sched_setaffinity', lambda tid, cpus: calls.append((tid, cpus)))
    applied, message = realtime.apply_affinity(1)
    assert applied and 'CPU 1' in message
    assert calls and all(cpus == {1} for _, cpus in calls)     # every thread


@pytest.mark.unit
def test_quiet_gc_collects_cycles_only_when_asked():
    policy = realtime.QuietGc()
    policy.collect()                    # inactive: nothing
    assert policy.collections == 0
    policy.start()
    try:
        assert not gc.isenabled() and gc.get_freeze_count() > 0

        class Node:
            pass
        a, b = Node(), Node()
        a.other, b.other = b, a
        del a, b
        policy.collect()
        assert policy.collections == 1 and policy.collected >= 2
        assert policy.max_pause_ns >= policy.last_pause_ns >= 0
    finally:
        policy.stop()
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0


class _Log:

    def __init__(self):
        self.lines = []

    def info(self, msg):
        self.lines.append(('info', msg))

    def warning(self, msg):
        self.lines.append(('warning', msg))


@pytest.mark.ros
def test_node_parameters_refused_by_the_os_give_one_warning_each(context, monkeypatch):
    from rclpy.parameter import Parameter

    from lnn_control.ros import common
    from lnn_control.ros.controller_node import LnnControllerNode
    monkeypatch.setattr(os, 'sched_setscheduler', _refuse)
    monkeypatch.setattr(os, 'sched_setaffinity', _refuse)
    node = LnnControllerNode(context=context, parameter_overrides=[
        Parameter('realtime.priority', value=90), Parameter('realtime.cpu_affinity', value=0),
        Parameter('realtime.quiet_gc', value=False)])
    try:
        log = _Log()
        assert common.apply_process_settings(node, log) is None
        assert [level for level, _ in log.lines] == ['warning', 'warning']
        assert 'cpu_affinity 0 refused' in log.lines[0][1]
        assert 'priority 90 refused' in log.lines[1][1]
    finally:
        node.destroy_node()


@pytest.mark.ros
@pytest.mark.parametrize('quiet_gc', [False, True])
def test_defaults_change_nothing_and_quiet_gc_is_started_by_the_runner(
        context, monkeypatch, quiet_gc):
    from rclpy.parameter import Parameter

    from lnn_control.ros import common
    from lnn_control.ros.controller_node import LnnControllerNode
    monkeypatch.setattr(os, 'sched_setscheduler', _refuse)
    monkeypatch.setattr(os, 'sched_setaffinity', _refuse)
    node = LnnControllerNode(context=context, parameter_overrides=[
        Parameter('realtime.quiet_gc', value=quiet_gc)])
    try:
        log = _Log()
        policy = common.apply_process_settings(node, log)
        assert log.lines == []
        if quiet_gc:        # returned not started: run_node starts it once set up
            assert isinstance(policy, realtime.QuietGc) and not policy.active
        else:
            assert policy is None
    finally:
        node.destroy_node()


@pytest.mark.ros
def test_log_outcome_may_change_severity_between_calls(context):
    # (log.info if ok else log.warning)(...) is one rclpy call site whose severity
    # changes: rclpy raises ValueError on the second call (it did in the tick when the
    # learning supervisor froze learning after a resume).
    import rclpy

    from lnn_control.ros import common
    logger = rclpy.logging.get_logger('test_log_outcome')
    for ok in (True, False, True):
        common.log_outcome(logger, ok, 'resume' if ok else 'freeze')
        common.log_outcome(logger, ok, 'saved' if ok else 'not saved', 'error')


class _FakeNode:

    def __init__(self, sim_time, lockstep=None):
        self.sim_time = sim_time
        if lockstep is not None:
            self.lockstep = lockstep

    def get_parameter(self, name):
        assert name == 'use_sim_time'
        return type('P', (), {'value': self.sim_time})()


@pytest.mark.ros
@pytest.mark.parametrize('sim_time, lockstep, expected', [
    (True, None, 'single'), (False, None, 'events'), (False, True, 'single'),
    (False, False, 'events')])
def test_auto_executor_keeps_lockstep_and_sim_time_ordered(sim_time, lockstep, expected):
    from lnn_control.ros import common
    node = _FakeNode(sim_time, lockstep)
    assert common._resolve_executor('auto', node) == expected
    assert common._resolve_executor('events', node) == 'events'


@pytest.mark.ros
def test_a_second_stop_request_while_shutting_down_does_not_cut_the_shutdown_work():
    """
    Ctrl-C twice: the second raised KeyboardInterrupt inside the shutdown work.

    The readout's save was skipped, silently, and the node exited 0 with its learning
    lost. Now the shutdown work finishes and the second request is logged.
    """
    import signal
    import time

    import rclpy

    from lnn_control.ros import common
    finished = []

    def make_node():
        node = rclpy.create_node('stop_twice')
        node.create_timer(0.01, lambda: os.kill(os.getpid(), signal.SIGINT))   # Ctrl-C
        return node

    def on_shutdown(node):
        os.kill(os.getpid(), signal.SIGINT)                  # and again, while saving
        for _ in range(100):                                 # (handled between bytecodes)
            time.sleep(0.001)
        finished.append(True)
        return True, 'saved'

    previous = signal.getsignal(signal.SIGINT)
    assert common.run_node(make_node, 'stop_twice', [], on_shutdown=on_shutdown) == 0
    assert finished == [True]
    assert signal.getsignal(signal.SIGINT) is previous        # handlers put back

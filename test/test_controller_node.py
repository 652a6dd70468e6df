"""
The lnn_controller node on real rclpy: topics, parameters, services, faults.

In-process tests run the controller and a test node in one executor with
simulated time on a per-test ``/clock`` (remapped into the test's namespace,
so parallel tests and runs cannot drive each other's clocks): every control
period is one ``/clock`` message, and the test spins until the resulting
command has arrived. Wall-clock timeouts only guard against hangs.

One test starts the ``lnn_controller`` console script as a separate process.
"""
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from lnn_control import readout_file
from lnn_control.controller import AdaptiveController
from lnn_control.ros import conversions as C
from lnn_control.ros.controller_node import LnnControllerNode
import numpy as np
import pytest
import rclpy
from rclpy.impl.implementation_singleton import rclpy_implementation
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient
from rclpy.qos import qos_profile_sensor_data
from rigs import (clock_remap, key_values, PERIOD_NS, record_warnings, RELIABLE, Spinner,
                  unique_namespace)
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import SetBool, Trigger
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

pytestmark = pytest.mark.ros
RCLError = rclpy_implementation.RCLError

BASE = {'joints': ['j1', 'j2'], 'reservoir.size': 50, 'control_rate_hz': 100.0,
        'kp': [10.0], 'kd': [1.0]}


class Rig:
    """
    A controller node plus a test node publishing joint_states and /clock.

    ``sim_time=False``: the node runs on the wall clock (its timer ticks as the rig spins;
    ``tick`` does not apply).
    """

    def __init__(self, context, overrides=None, sensor_qos=10, namespace=None, sim_time=True):
        self.context = context
        self.ns = namespace or unique_namespace()
        self.params = {**BASE, **(overrides or {})}
        self.node = LnnControllerNode(
            context=context, namespace=self.ns,
            parameter_overrides=[Parameter('use_sim_time', value=sim_time)]
            + [Parameter(k, value=v) for k, v in self.params.items()],
            cli_args=clock_remap(self.ns))
        self.tester = rclpy.create_node('rig', context=context, namespace=self.ns)
        self.joint_states = self.tester.create_publisher(JointState, 'joint_states', sensor_qos)
        self.reference = self.tester.create_publisher(JointState, 'lnn_controller/reference', 10)
        self.trajectory = None      # (created by the first send_trajectory)
        self.clock = self.tester.create_publisher(Clock, 'clock', 10)
        self.commands = []
        self.tester.create_subscription(Float64MultiArray, 'commands',
                                        lambda m: self.commands.append(np.array(m.data)),
                                        RELIABLE)
        self.diagnostics = []
        self.tester.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics,
                                        RELIABLE)
        self.spinner = Spinner(context, self.node, self.tester)
        self.now_ns = 0
        self.wait(lambda: (self.joint_states.get_subscription_count() > 0
                           and (self.clock.get_subscription_count() > 0 or not sim_time)
                           and self.reference.get_subscription_count() > 0
                           and self.node._commands_pub.get_subscription_count() > 0),
                  'discovery')

    def _on_diagnostics(self, msg):
        mine = [s for s in msg.status if s.hardware_id == self.node.get_fully_qualified_name()]
        if mine:
            self.diagnostics.append(key_values(mine[0]))

    def wait(self, condition, what):
        self.spinner.wait(condition, what)

    def handled(self):
        return (self.node.sensor_messages + self.node.foreign_messages
                + sum(self.node.rejected[r] for r in C.REASONS))

    def send(self, q, qd=None, names=None, stamp_ns=None, msg=None):
        """Publish joint_states and spin until the node has accepted or refused it."""
        names = names or self.params['joints']
        if msg is None:
            msg = C.joint_state(names, q, np.zeros(len(q)) if qd is None else qd,
                                stamp_ns=self.now_ns if stamp_ns is None else stamp_ns)
        before = self.handled()
        self.joint_states.publish(msg)
        self.wait(lambda: self.handled() > before, 'joint_states to be handled')

    def send_reference(self, q, qd=()):
        before = self.node.reference_messages + sum(self.node.rejected_reference.values())
        self.reference.publish(C.joint_state(self.params['joints'], q, qd))
        self.wait(lambda: (self.node.reference_messages
                           + sum(self.node.rejected_reference.values())) > before,
                  'reference to be handled')

    def send_trajectory(self, points, names=None, stamp_ns=0, msg=None):
        """
        Publish a JointTrajectory and spin until the node has accepted or refused it.

        ``points``: (time_from_start s, positions, velocities or None, accelerations or None).
        """
        if msg is None:
            msg = JointTrajectory(joint_names=names or self.params['joints'])
            C.set_stamp(msg.header.stamp, stamp_ns)
            for t, q, qd, qdd in points:
                p = JointTrajectoryPoint(positions=list(q), velocities=list(qd or []),
                                         accelerations=list(qdd or []))
                p.time_from_start.sec, p.time_from_start.nanosec = divmod(round(t * 1e9), 10**9)
                msg.points.append(p)
        if self.trajectory is None:
            self.trajectory = self.tester.create_publisher(
                JointTrajectory, 'lnn_controller/joint_trajectory', 10)
            self.wait(lambda: self.trajectory.get_subscription_count() > 0, 'discovery')
        node = self.node
        before = node.trajectory_messages + sum(node.rejected_trajectory.values())
        self.trajectory.publish(msg)
        self.wait(lambda: (node.trajectory_messages
                           + sum(node.rejected_trajectory.values())) > before,
                  'joint_trajectory to be handled')

    def reset_clock(self, now_ns=PERIOD_NS):
        """Jump /clock back to ``now_ns`` (a simulation reset) and wait for the node's handler."""
        self.now_ns = now_ns
        msg = Clock()
        msg.clock.sec, msg.clock.nanosec = divmod(now_ns, 1_000_000_000)
        self.clock.publish(msg)
        self.wait(lambda: (self.node.get_clock().now().nanoseconds == now_ns
                           and not self.node._have_sensor), 'the clock-jump handler')

    def tick(self, n=1):
        """Advance simulated time by ``n`` control periods, one timer call each."""
        for _ in range(n):
            self.now_ns += PERIOD_NS
            msg = Clock()
            msg.clock.sec, msg.clock.nanosec = divmod(self.now_ns, 1_000_000_000)
            expected = self.node.stats.callbacks + 1
            self.clock.publish(msg)
            self.wait(lambda: self.node.stats.callbacks >= expected, 'the control tick')
            assert self.node.stats.callbacks == expected
            self.wait(lambda: len(self.commands) == self.node.commands_published,
                      'the command')
        return self.commands[-1] if self.commands else None

    def call(self, srv_type, name, request):
        client = self.tester.create_client(srv_type, f'{self.ns}/lnn_controller/{name}')
        self.wait(client.service_is_ready, f'service {name}')
        future = client.call_async(request)
        self.wait(future.done, f'response of {name}')
        self.tester.destroy_client(client)
        return future.result()

    def close(self):
        self.spinner.close()


@pytest.fixture
def rig(context, closing):
    def make(overrides=None, **kwargs):
        return closing(Rig(context, overrides, **kwargs))
    return make


def twin(params):
    """Return the core controller the node should be running, tick for tick."""
    return AdaptiveController(params)


# -- commands ------------------------------------------------------------------------

def test_commands_once_per_period_in_joints_order_and_bounded(rig):
    # Learning off: the readout stays zero, so each command is exactly the clipped PD term.
    r = rig({'joints': ['a', 'b', 'c'], 'kp': [1.0, 10.0, 100.0], 'kd': [0.0],
             'command_limit': [5.0, 5.0, 3.0], 'learning_enabled': False})
    r.send([0.0, 0.0, 0.0], names=['a', 'b', 'c'])
    r.tick()
    r.send_reference([0.1, 0.2, -0.3])
    for k in range(20):
        # joint_states in another order, with a joint the controller does not own
        r.send(None, msg=C.joint_state(['c', 'x', 'a', 'b'], [0.0, 5.0, 0.0, 0.0],
                                       [0.0] * 4, stamp_ns=r.now_ns))
        r.tick()
    assert len(r.commands) == r.node.commands_published == r.node.stats.callbacks == 21
    np.testing.assert_allclose(r.commands[-1], [0.1, 2.0, -3.0])   # 100 * -0.3 clipped to 3


def test_stopping_leaves_zero_effort_as_the_last_command(rig):
    """A forward command controller applies the last command until another comes."""
    r = rig({'learning_enabled': False})
    r.send([0.0, 0.0])
    r.send_reference([0.3, -0.2])
    assert np.abs(r.tick(5)).min() > 0.0          # pushing toward the reference
    published = len(r.commands)
    r.node.on_shutdown()                          # what main() does on Ctrl-C / SIGTERM
    r.wait(lambda: len(r.commands) > published, 'the last command')
    np.testing.assert_array_equal(r.commands[-1], [0.0, 0.0])


def test_command_equals_the_core_controller_with_learning(rig):
    r = rig({'learning_enabled': True})
    core = twin(r.params)
    rng = np.random.default_rng(1)
    hold = None
    for k in range(30):
        q, qd = np.array([0.2, -0.1]) + 0.01 * rng.standard_normal(2), rng.standard_normal(2)
        hold = q.copy() if hold is None else hold     # no reference: hold the first position
        r.send(q, qd)
        command = r.tick()
        expected = core.step((q, qd), (hold, np.zeros(2), np.zeros(2)))
        np.testing.assert_array_equal(command, expected)
        assert np.all(np.isfinite(command)) and np.all(np.abs(command) <= 20.0)
    assert r.node.controller.slow.updates == 30


def test_the_command_is_published_before_the_tick_learns(rig):
    """The learning step (O(N^2)), the supervisor and the forward model run after it."""
    r = rig({'learning_enabled': True})
    order = []
    publish, adapt = r.node._publisher.publish, r.node.loop.adapt
    r.node._publisher.publish = lambda pub, msg: (
        order.append('command' if pub is r.node._commands_pub else 'other'), publish(pub, msg))[1]
    r.node.loop.adapt = lambda: (order.append('learn'), adapt())[1]
    for k in range(5):
        r.send(np.array([0.1, 0.0]) + 0.01 * k)
        r.tick()
    assert order[:2] == ['command', 'learn'] and order.count('learn') == 5
    assert [order[i + 1] for i, e in enumerate(order) if e == 'command'] == ['learn'] * 5
    assert r.node.controller.slow.updates == 5
    stats = r.node.stats
    assert (stats.command_ns[:5] > 0).all() and (stats.command_ns[:5] <= stats.compute_ns[:5]).all()


def test_joint_states_without_velocity_use_the_difference_of_positions(rig):
    """A driver that exports only position: the D term gets dq / dt from the stamps."""
    r = rig({'learning_enabled': False, 'kp': [10.0], 'kd': [1.0], 'command_limit': [50.0]})
    hold, slope = np.array([0.1, 0.2]), np.array([2.0, -1.0])      # rad/s
    for k in range(4):
        r.now_ns += PERIOD_NS
        q = hold + slope * k * PERIOD_NS * 1e-9
        r.send(None, msg=C.joint_state(['j1', 'j2'], q, [], stamp_ns=r.now_ns))
        r.now_ns -= PERIOD_NS
        command = r.tick()
        velocity = np.zeros(2) if k == 0 else slope
        np.testing.assert_allclose(command, 10.0 * (hold - q) - 1.0 * velocity, atol=1e-9)
    values = key_values(r.node.diagnostics().status[0])
    assert values['joint_states velocity'] == 'position differences: j1, j2'
    # a position step that would mean more than limits.velocity: refused, state kept
    r.node.set_parameters([Parameter('limits.velocity', value=[5.0])])
    r.now_ns += PERIOD_NS
    r.send(None, msg=C.joint_state(['j1', 'j2'], q + [0.5, 0.0], [], stamp_ns=r.now_ns))
    r.now_ns -= PERIOD_NS
    assert r.node.rejected['implausible'] == 1
    np.testing.assert_array_equal(r.node._q, q)
    np.testing.assert_allclose(r.node._qd, slope)
    r.send(hold, np.array([0.5, 0.5]))          # velocity measured again: used as it is
    np.testing.assert_allclose(r.tick(), 10.0 * (hold - hold) - 1.0 * 0.5)
    assert key_values(r.node.diagnostics().status[0])['joint_states velocity'] == 'measured'
    assert sum(r.node.rejected.values()) == 1


def test_no_command_before_first_valid_joint_states(rig):
    r = rig()
    r.tick(5)
    r.send([math.nan, 0.0])
    r.tick(3)
    assert r.node.stats.callbacks == 8 and r.commands == []
    assert r.node.commands_published == 0
    r.send([0.0, 0.0])
    assert r.tick() is not None and len(r.commands) == 1


def test_implausible_joint_states_cannot_start_control(rig):
    r = rig()
    r.send([1e300, 0.0])
    r.tick(3)
    assert r.commands == [] and r.node.rejected['implausible'] == 1
    assert r.node.sensor_messages == 0
    r.send([0.0, 0.0])
    assert r.tick() is not None and len(r.commands) == 1


def test_plausibility_limits_are_live_and_apply_to_the_reference(rig):
    r = rig({'learning_enabled': False, 'kd': [0.0]})
    (result,) = r.node.set_parameters([Parameter('limits.position', value=[0.5, 2.0])])
    assert result.successful, result.reason
    r.send([0.6, 0.0])                                # joint j1 beyond 0.5 rad
    assert r.node.rejected['implausible'] == 1 and r.node.sensor_messages == 0
    r.send([0.0, 1.5])
    r.send_reference([0.4, 1.9])
    r.send_reference([0.4, 2.1])                      # j2 beyond 2 rad: dropped
    assert r.node.rejected_reference['implausible'] == 1
    np.testing.assert_allclose(r.tick(), [4.0, 4.0])  # kp 10 x (0.4, 1.9 - 1.5)
    (result,) = r.node.set_parameters([Parameter('limits.velocity', value=[0.0])])
    assert not result.successful and '> 0.0' in result.reason
    # a limits change leaves ~/reference followed as it was (it once froze the desired
    # position and blended from it for a second)
    (result,) = r.node.set_parameters([Parameter('limits.velocity', value=[900.0])])
    assert result.successful, result.reason
    r.send_reference([0.45, 1.8])
    np.testing.assert_allclose(r.tick(), [4.5, 3.0])  # kp 10 x (0.45, 1.8 - 1.5)


def test_limits_the_robot_or_its_trajectory_already_exceed_are_refused(rig):
    """
    Beyond them its own joint_states are dropped: the robot would be left without effort.

    (From a review: limits.position lowered under a joint at 1.5 rad was accepted; every
    joint_states was then refused as implausible and the command stayed zero.)
    """
    r = rig({'learning_enabled': False, 'kd': [0.0]})
    r.send([1.5, 0.0], qd=[0.8, 0.0])
    r.send_reference([1.5, 0.0])
    r.tick()

    def refused(name, value):
        (result,) = r.node.set_parameters([Parameter(name, value=value)])
        assert not result.successful
        return result.reason

    assert 'the measured state of j1 reaches 1.5, beyond the new limits.position 1' in \
        refused('limits.position', [1.0])
    assert 'the desired state of j1 reaches 1.5' in refused('limits.position', [1.0])
    assert 'the measured state of j1 reaches 0.8, beyond the new limits.velocity 0.5' \
        in refused('limits.velocity', [0.5])
    r.send([1.5, 0.0])
    r.send_reference([1.5, 0.0], qd=[0.0, 0.9])
    r.tick()
    assert 'the desired state of j2 reaches 0.9, beyond the new limits.velocity 0.5' \
        in refused('limits.velocity', [0.5])
    assert r.node.controller.config['limits.position'].tolist() == [1000.0] * 2   # unchanged
    r.send([0.2, 0.0])
    r.send_reference([0.2, 0.0])
    r.tick()
    r.send_trajectory([(0.0, [0.2, 0.0], None, None), (1.0, [1.6, 0.0], None, None),
                       (2.0, [0.2, 0.0], None, None)])
    r.tick()
    assert 'the ~/joint_trajectory held of j1 reaches 1.6' in refused('limits.position', [1.0])
    # positions only: 1.4 rad in 1 s between the waypoints (as their arrival is judged)
    assert 'the ~/joint_trajectory held of j1 reaches 1.4, beyond the new limits.velocity' \
        in refused('limits.velocity', [1.0])
    (result,) = r.node.set_parameters([Parameter('limits.position', value=[2.0, 1.0])])
    assert result.successful, result.reason
    for _ in range(210):                    # past the waypoint at 1.6 rad: it counts no more
        r.send([0.2, 0.0])
        r.tick()
    (result,) = r.node.set_parameters([Parameter('limits.position', value=[1.0])])
    assert result.successful, result.reason


def test_a_continuous_joint_is_controlled_the_shortest_way_in_the_branch_it_reports(rig):
    """A wheel's joint_states some turns out: no 2 pi errors, no implausible drops."""
    r = rig({'continuous_joints': ['j1'], 'learning_enabled': False, 'kd': [0.0],
             'limits.position': [1.0]})
    state, prediction = [], []
    r.tester.create_subscription(Float64MultiArray, 'lnn_controller/controller_state',
                                 state.append, RELIABLE)
    r.tester.create_subscription(JointState, 'lnn_controller/prediction', prediction.append,
                                 RELIABLE)
    r.wait(lambda: (r.node._state_pub.get_subscription_count() > 0
                    and r.node._predictions[0][1].get_subscription_count() > 0), 'discovery')
    r.send([2000.1, 1.5])                             # j2 beyond its limit: dropped
    assert r.node.rejected['implausible'] == 1 and r.node.sensor_messages == 0
    r.send([2000.1, 0.5])                             # j1 far beyond it: continuous
    r.send_reference([0.3 - 2 * np.pi, 0.2])          # any branch
    assert sum(r.node.rejected_reference.values()) == 0
    error = (0.3 - 2000.1 + np.pi) % (2 * np.pi) - np.pi
    np.testing.assert_allclose(r.tick(), [10.0 * error, 10.0 * (0.2 - 0.5)], atol=1e-9)
    r.wait(lambda: state and prediction, 'the state table and the prediction')
    table = np.array(state[-1].data).reshape(2, 6)
    np.testing.assert_allclose(table[:, 1], [2000.1, 0.5], atol=1e-9)      # as measured
    np.testing.assert_allclose(table[:, 2], [error, -0.3], atol=1e-9)
    assert abs(prediction[-1].position[0] - 2000.1) < 0.5
    # reported wrapped and without velocity: differenced the short way round
    np.testing.assert_array_equal(r.node._sensor.continuous, [True, False])


def test_an_unreadable_parameter_request_is_refused_and_control_goes_on(rig):
    """A ParameterValue of type 42 raised in rclpy's service callback and ended the node."""
    from rcl_interfaces.msg import Parameter as ParameterMsg, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters, SetParametersAtomically
    r = rig()
    r.send([0.0, 0.0])
    r.tick()
    bad = ParameterMsg(name='kp', value=ParameterValue(type=42))
    good = ParameterMsg(name='kd', value=ParameterValue(
        type=ParameterType.PARAMETER_DOUBLE_ARRAY, double_array_value=[2.0]))
    response = r.call(SetParameters, 'set_parameters', SetParameters.Request(
        parameters=[bad, good]))
    assert [x.successful for x in response.results] == [False, True]
    assert 'kp: not a ROS parameter value' in response.results[0].reason
    assert list(r.node.get_parameter('kd').value) == [2.0]
    response = r.call(SetParametersAtomically, 'set_parameters_atomically',
                      SetParametersAtomically.Request(parameters=[good, bad]))
    assert not response.result.successful and 'kp' in response.result.reason
    r.send([0.0, 0.0])
    assert r.tick() is not None          # still controlling


def test_a_parameter_whose_default_is_an_empty_list_can_be_read(rig):
    """Declared by type only, rclpy answered a get naming it with no values (ros2 param dump)."""
    from rcl_interfaces.msg import ParameterType
    from rcl_interfaces.srv import GetParameters
    r = rig()
    response = r.call(GetParameters, 'get_parameters', GetParameters.Request(
        names=['kp', 'continuous_joints']))
    assert [v.type for v in response.values] == [ParameterType.PARAMETER_DOUBLE_ARRAY,
                                                 ParameterType.PARAMETER_STRING_ARRAY]
    assert list(response.values[1].string_array_value) == []
    (result,) = r.node.set_parameters([Parameter('continuous_joints', value=['j1'])])
    assert not result.successful                    # read-only, as declared


def test_the_commands_qos_can_be_overridden_and_a_stray_override_is_named(context, closing):
    """ROS 2's qos_overrides parameters: a driver subscribing best-effort, volatile."""
    from lnn_control.ros import common
    ns = unique_namespace()
    node = closing(LnnControllerNode(
        context=context, namespace=ns, parameter_overrides=[
            Parameter('reservoir.size', value=50),
            Parameter(f'qos_overrides.{ns}/commands.publisher.reliability', value='best_effort'),
            Parameter(f'qos_overrides.{ns}/commands.publisher.durability', value='volatile'),
            Parameter(f'qos_overrides.{ns}/comands.publisher.depth', value=1)]),
        close='destroy_node')
    qos = node._commands_pub.qos_profile
    assert qos.reliability.name == 'BEST_EFFORT' and qos.durability.name == 'VOLATILE'
    assert common.LATCHED_QOS.reliability.name == 'RELIABLE'      # not for the next node
    (warning,) = common.stray_qos_overrides(node)
    assert warning.startswith(f'ignored qos_overrides.{ns}/comands.publisher.depth')
    assert f'qos_overrides.{ns}/joint_states.subscription' in warning


def test_a_reference_before_the_first_clock_is_not_taken_for_silent(rig):
    """Joining a simulation at 5 s: a reference that came before /clock was held as stale."""
    r = rig({'prediction.enabled': False})
    warnings = record_warnings(r.node)
    r.send([0.0, 0.0], stamp_ns=0)
    r.send_reference([0.1, 0.1], [0.5, 0.5])         # moving, arrived at node time 0
    r.now_ns = 5_000_000_000 - PERIOD_NS
    r.send([0.0, 0.0], stamp_ns=5_000_000_000)
    r.tick()                                         # first tick, t = 5 s
    assert not r.node._reference.held
    np.testing.assert_allclose(r.node.desired.qd, [0.5, 0.5])
    assert not [w for w in warnings if 'reference' in w]


def test_switching_to_topic_holds_until_a_reference_comes(rig):
    """A set point received while generating was not followed; switched, it drove to it."""
    r = rig({'reference.mode': 'hold', 'reference.offset': [0.0], 'learning_enabled': False})
    r.send([0.0, 0.0])
    r.tick()
    r.send_reference([1.2, 1.2])                 # while the mode ignores it
    (result,) = r.node.set_parameters([Parameter('reference.mode', value='topic')])
    assert result.successful
    for _ in range(150):                         # past the 1 s blend
        r.send([0.0, 0.0])
        r.tick()
    np.testing.assert_allclose(r.node.desired.q, [0.0, 0.0])
    r.send_reference([0.3, -0.3])                # a reference sent in topic mode is followed
    r.send([0.0, 0.0])
    r.tick()
    np.testing.assert_allclose(r.node.desired.q, [0.3, -0.3])


def test_best_effort_joint_states_publisher_is_accepted(rig):
    r = rig(sensor_qos=qos_profile_sensor_data)
    r.send([0.0, 0.0])
    assert r.node.sensor_messages == 1
    assert r.tick() is not None


# -- bad input -------------------------------------------------------------------------

BAD = {
    'non_finite': lambda t: C.joint_state(['j1', 'j2'], [math.nan, 0.0], [0.0, 0.0], stamp_ns=t),
    'non_finite_velocity': lambda t: C.joint_state(['j1', 'j2'], [0.0, 0.0], [0.0, math.inf],
                                                   stamp_ns=t),
    'length_mismatch': lambda t: C.joint_state(['j1', 'j2'], [3.0], [0.0, 0.0], stamp_ns=t),
    'stamp_backwards': lambda t: C.joint_state(['j1', 'j2'], [3.0, 3.0], [0.0, 0.0],
                                               stamp_ns=t - 5 * PERIOD_NS),
    'malformed': lambda t: C.joint_state(['j1', 'j2', 'j1'], [3.0] * 3, [0.0] * 3, stamp_ns=t),
    # beyond the default plausibility limits (1000 rad, 1000 rad/s)
    'implausible': lambda t: C.joint_state(['j1', 'j2'], [1e300, 0.0], [0.0, 0.0], stamp_ns=t),
    'implausible_velocity': lambda t: C.joint_state(['j1', 'j2'], [0.0, 0.0], [0.0, -5e3],
                                                    stamp_ns=t),
}


@pytest.mark.parametrize('kind', sorted(BAD))
def test_bad_joint_states_are_dropped_counted_and_never_learned(rig, kind):
    r = rig({'learning_enabled': True})
    core = twin(r.params)
    reason = kind.replace('_velocity', '')
    hold = np.array([0.1, 0.2])
    states = [(hold + 0.01 * k, np.full(2, 0.1 * k)) for k in range(6)]
    for k, (q, qd) in enumerate(states):
        r.send(q, qd)
        if k in (2, 4):                  # bad message after a good one, before the tick
            r.send(None, msg=BAD[kind](r.now_ns))
        command = r.tick()
        expected = core.step((q, qd), (hold, np.zeros(2), np.zeros(2)))
        np.testing.assert_array_equal(command, expected)   # the bad one changed nothing
    assert r.node.rejected[reason] == 2
    assert sum(r.node.rejected.values()) == 2
    assert r.node.sensor_messages == 6
    assert r.node.controller.slow.updates == core.slow.updates == 6
    keys = key_values(r.node.diagnostics().status[0])
    assert keys[f'joint_states rejected: {reason}'] == '2'


HOLD_AT_ZERO = {'learning_enabled': False, 'kd': [0.0], 'kp': [10.0], 'reference.mode': 'hold',
                'reference.offset': [0.0]}


def test_split_joint_states_publishers_are_merged_by_joint_name(rig):
    """A driver per joint on one topic was refused as 'missing_joint': now merged."""
    r = rig(HOLD_AT_ZERO)
    warnings = record_warnings(r.node)
    r.tick()
    r.send(None, msg=C.joint_state(['j1'], [0.1], [0.0], stamp_ns=r.now_ns))
    assert r.tick() is None                  # j2 not heard yet: no command
    assert len(warnings) == 1 and "without ['j2']" in warnings[0], warnings
    status = r.node.diagnostics().status[0]
    assert "waiting for joint_states of ['j2']" in status.message
    r.send(None, msg=C.joint_state(['j2', 'gripper'], [-0.2, 5.0], [0.0, 0.0],
                                   stamp_ns=r.now_ns))
    np.testing.assert_allclose(r.tick(), [-1.0, 2.0])
    r.send(None, msg=C.joint_state(['j1'], [0.3], [0.0], stamp_ns=r.now_ns))
    np.testing.assert_allclose(r.tick(), [-3.0, 2.0])     # j2 keeps its latest value
    keys = key_values(r.node.diagnostics().status[0])
    assert keys['joint_states publishers merged (joint sets)'] == '2'
    assert sum(r.node.rejected.values()) == 0 and r.node.sensor_messages == 3


def test_one_silent_split_publisher_makes_the_sensor_stale(rig):
    """The merged state is as old as its oldest joint: another publisher cannot hide it."""
    r = rig({**HOLD_AT_ZERO, 'sensor_timeout_s': 0.03})
    r.send(None, msg=C.joint_state(['j1'], [0.1], [0.0]))
    r.send(None, msg=C.joint_state(['j2'], [-0.2], [0.0]))
    np.testing.assert_allclose(r.tick(), [-1.0, 2.0])
    for _ in range(6):                       # j1's driver goes on, j2's has stopped
        r.send(None, msg=C.joint_state(['j1'], [0.1], [0.0], stamp_ns=r.now_ns))
        command = r.tick()
    assert r.node.loop.stale and (command == 0.0).all()
    r.send(None, msg=C.joint_state(['j2'], [-0.2], [0.0], stamp_ns=r.now_ns))
    np.testing.assert_allclose(r.tick(), [-1.0, 2.0])


def test_sync_the_tick_waits_for_every_split_publishers_state_of_its_time(rig):
    r = rig({**HOLD_AT_ZERO, 'sync_to_joint_state_stamps': True})
    r.send(None, msg=C.joint_state(['j1'], [0.0], [0.0]))
    r.send(None, msg=C.joint_state(['j2'], [0.0], [0.0]))
    r.tick()                                 # 0.01: waits for its state
    r.send(None, msg=C.joint_state(['j2'], [-0.2], [0.0], stamp_ns=r.now_ns))
    assert r.node.commands_published == 0    # j1's state of 0.01 is still to come
    r.send(None, msg=C.joint_state(['j1'], [0.1], [0.0], stamp_ns=r.now_ns))
    r.wait(lambda: len(r.commands) == 1, 'the deferred command')
    np.testing.assert_allclose(r.commands[-1], [-1.0, 2.0])


def test_joint_states_naming_none_of_our_joints_before_control_starts_are_reported(rig):
    """A misspelt ``joints`` parameter looks like another driver: say so while waiting."""
    r = rig()
    warnings = record_warnings(r.node)
    for _ in range(2):
        r.send(None, msg=C.joint_state(['arm_j1', 'arm_j2'], [0.0, 0.0], [0.0, 0.0]))
    assert r.node.foreign_messages == 2 and not r.node._have_sensor
    assert len(warnings) == 1 and "['j1', 'j2']" in warnings[0] and 'arm_j1' in warnings[0]


def test_another_drivers_joint_states_on_the_topic_are_ignored_quietly(rig):
    r = rig()
    warnings = record_warnings(r.node)
    r.send(np.array([0.1, 0.2]))
    gripper = C.joint_state(['finger'], [0.01], [0.0], stamp_ns=r.now_ns)
    for _ in range(3):
        r.send(None, msg=gripper)
        r.tick()
    assert r.node.foreign_messages == 3 and r.node.sensor_messages == 1
    assert sum(r.node.rejected.values()) == 0 and warnings == []
    assert len(r.commands) == 3 and not r.node.loop.stale
    values = key_values(r.node.diagnostics().status[0])
    assert values['joint_states without our joints (ignored)'] == '3'


def test_bad_reference_is_dropped_and_counted(rig):
    r = rig({'learning_enabled': False})
    r.send([0.0, 0.0])
    r.send_reference([0.5, 0.5])
    r.reference.publish(C.joint_state(['j1', 'j2'], [math.nan, 9.0]))
    r.wait(lambda: r.node.rejected_reference['non_finite'] == 1, 'the refusal')
    np.testing.assert_allclose(r.tick(), [5.0, 5.0])    # kp 10 * 0.5, old reference kept
    # a WARN while inputs are dropped (it stayed OK with every reference dropped)
    status = r.node.diagnostics().status[0]
    assert status.level == DiagnosticStatus.WARN, status.message
    assert '~/reference dropped since the last report (non_finite 1)' in status.message
    r.send([0.0, 0.0])
    r.tick()
    status = r.node.diagnostics().status[0]
    assert status.level == DiagnosticStatus.OK, status.message
    assert key_values(status)['reference rejected: non_finite'] == '1'    # still counted


# -- joint trajectories (joint_trajectory_controller's topic) -----------------------------

def _follow(r, ticks):
    """Tick with the robot held at 0; return the desired positions and commands."""
    desired, commands = [], []
    for _ in range(ticks):
        r.send([0.0, 0.0])
        commands.append(r.tick())
        desired.append(r.node.desired.q.copy())
    return np.array(desired), np.array(commands)


def test_a_joint_trajectory_is_followed_through_its_waypoints(rig):
    """Names in another order; a cubic from where the desired state was, then held."""
    r = rig({'learning_enabled': False, 'kd': [0.0]})
    r.send([0.0, 0.0])
    r.tick()
    r.send_trajectory([(0.5, [0.4, 0.2], [0.0, 0.0], None),
                       (1.0, [0.2, 0.6], [0.0, 0.0], None)], names=['j2', 'j1'])
    desired, commands = _follow(r, 120)     # taken over at the first, from the hold at 0
    t = PERIOD_NS * np.arange(120) * 1e-9          # since the take-over
    np.testing.assert_allclose(desired[np.isclose(t, 0.5)], [[0.2, 0.4]], atol=1e-9)
    np.testing.assert_allclose(desired[np.isclose(t, 1.0)], [[0.6, 0.2]], atol=1e-9)
    np.testing.assert_allclose(desired[-1], [0.6, 0.2])     # held after the last waypoint
    assert not r.node.desired.qd.any()
    assert np.abs(np.diff(desired, axis=0)).max() < 0.02   # no step anywhere
    np.testing.assert_allclose(commands, 10.0 * desired)   # PD (kp 10) on the robot at 0
    values = key_values(r.node.diagnostics().status[0])
    assert values['joint_trajectory received'] == '1'
    assert values['joint_trajectory following'] == 'at its last waypoint'


def test_a_stamped_trajectory_starts_at_its_stamp_and_the_reference_runs_until_then(rig):
    r = rig({'learning_enabled': False})
    r.send([0.0, 0.0])
    r.send_reference([0.3, 0.3])
    r.tick()
    begin = r.now_ns + 10 * PERIOD_NS
    r.send_trajectory([(0.5, [1.0, 1.0], [0.0, 0.0], [0.0, 0.0])], stamp_ns=begin)
    desired, _ = _follow(r, 9)
    assert r.node._trajectory.pending is not None
    np.testing.assert_array_equal(desired, 0.3)             # the reference, until then
    more, _ = _follow(r, 51)                  # from its stamp on, the trajectory
    assert r.node._trajectory.pending is None and not r.node._reference.received
    np.testing.assert_allclose(more[0], 0.3)
    np.testing.assert_allclose(more[-1], [1.0, 1.0])        # at begin + 0.5 s
    np.testing.assert_allclose(more[-2], [1.0, 1.0], atol=1e-4)
    assert (more[-2] < 1.0).all() and np.abs(np.diff(more[:, 0])).max() < 0.03


@pytest.mark.parametrize('mutate, reason', [
    (lambda m: m.joint_names.pop(), 'missing_joint'),
    (lambda m: m.joint_names.append('elbow'), 'unknown_joint'),
    (lambda m: m.joint_names.__setitem__(1, 'j1'), 'malformed'),
    (lambda m: setattr(m.points[1], 'time_from_start', m.points[0].time_from_start),
     'malformed'),
    (lambda m: m.points[1].positions.__setitem__(0, math.nan), 'non_finite'),
    (lambda m: m.points[1].velocities.pop(), 'length_mismatch'),
    (lambda m: m.points[1].positions.__setitem__(0, 5000.0), 'implausible'),
    (lambda m: m.points[1].positions.__setitem__(0, 200.0), 'implausible'),   # 2000 rad/s
    (lambda m: setattr(m.header.stamp, 'sec', 0) or setattr(m.header.stamp, 'nanosec', 1),
     'ends_in_the_past'),
    (lambda m: setattr(m.header.stamp, 'nanosec', 3_000_000_000), 'malformed'),   # (+3 s)
    (lambda m: setattr(m.points[1].time_from_start, 'nanosec', 1_100_000_000), 'malformed'),
    # waypoints within the limits, splines between them not (4e6 rad, was followed)
    (lambda m: [p.accelerations.extend([1e9, 0.0]) for p in m.points], 'implausible'),
])
def test_a_bad_trajectory_is_refused_with_its_reason_and_the_one_followed_runs_on(
        rig, mutate, reason):
    r = rig({'learning_enabled': False})
    r.send([0.0, 0.0])
    r.tick(100)                                 # 1 s: a stamp of 1 ns ends in the past
    r.send_trajectory([(0.2, [0.3, 0.3], None, None)])
    _follow(r, 30)
    bad = JointTrajectory(joint_names=['j1', 'j2'])
    for t, q in ((0.1, [0.5, 0.5]), (0.2, [0.6, 0.6])):
        p = JointTrajectoryPoint(positions=q, velocities=[0.0, 0.0])
        p.time_from_start.nanosec = int(t * 1e9)
        bad.points.append(p)
    mutate(bad)
    r.send_trajectory(None, msg=bad)
    assert r.node.rejected_trajectory[reason] == 1, r.node.rejected_trajectory
    assert sum(r.node.rejected_trajectory.values()) == 1
    desired, _ = _follow(r, 30)
    np.testing.assert_allclose(desired, 0.3)     # the accepted one, untouched
    status = r.node.diagnostics().status[0]
    assert status.level == DiagnosticStatus.WARN
    assert f'~/joint_trajectory dropped since the last report ({reason} 1)' in status.message


def test_a_splines_overshoot_within_twice_the_limits_is_followed(rig):
    """A rest-to-rest cubic at limits.velocity's mean speed peaks at 1.5x it: not garbage."""
    r = rig({'learning_enabled': False, 'limits.position': [1.0], 'limits.velocity': [2.0]})
    r.send([0.0, 0.0])
    r.send_trajectory([(0.5, [0.0, 0.0], [0.0, 0.0], None),
                       (1.0, [1.0, 1.0], [0.0, 0.0], None)])
    assert sum(r.node.rejected_trajectory.values()) == 0, r.node.rejected_trajectory
    desired, _ = _follow(r, 110)
    np.testing.assert_allclose(desired[-1], 1.0)


def test_a_trajectory_flung_beyond_the_limits_to_its_first_waypoint_is_refused(rig):
    """
    One waypoint within the limits, an acceleration of 1e9 there: refused at the take-over.

    The spline to it reached 4e6 rad: followed, the robot was driven at its command limit
    and the input scales grew for good.
    """
    r = rig({'learning_enabled': False})
    r.send([0.0, 0.0])
    r.send_trajectory([(0.2, [0.3, 0.3], None, None)])
    _follow(r, 30)
    scales = r.node.controller.normalizer.scale.copy()
    r.send_trajectory([(0.5, [0.1, 0.1], [0.0, 0.0], [1e9, 0.0])])
    desired, _ = _follow(r, 30)
    assert r.node.rejected_trajectory['implausible'] == 1, r.node.rejected_trajectory
    np.testing.assert_allclose(desired, 0.3)     # the accepted one, untouched
    np.testing.assert_array_equal(r.node.controller.normalizer.scale, scales)
    r.send_trajectory([(0.5, [0.1, 0.1], [0.0, 0.0], [1.0, 0.0])])   # a sane one: followed
    desired, _ = _follow(r, 60)
    np.testing.assert_allclose(desired[-1], 0.1)
    assert sum(r.node.rejected_trajectory.values()) == 1


def test_an_empty_trajectory_stops_the_motion_within_a_quarter_second(rig):
    r = rig({'learning_enabled': False})
    r.send([0.0, 0.0])
    r.tick()
    r.send_trajectory([(2.0, [2.0, -2.0], [0.0, 0.0], None)])
    _follow(r, 50)
    moving = r.node.desired.qd.copy()
    assert np.abs(moving).min() > 0.5
    r.send_trajectory([], names=[])
    desired, _ = _follow(r, 40)
    np.testing.assert_array_equal(desired[25:], desired[-1:].repeat(15, 0))   # at rest by 0.25 s
    assert not r.node.desired.qd.any()
    assert np.abs(np.diff(desired[:, 0])).max() <= np.abs(moving[0]) * 0.01 * 1.05


def test_the_newest_input_is_followed_reference_or_trajectory(rig):
    r = rig({'learning_enabled': False})
    r.send([0.0, 0.0])
    r.tick()
    r.send_trajectory([(0.1, [0.3, 0.3], None, None)])
    _follow(r, 20)
    r.send_reference([-0.2, -0.2])               # replaces the trajectory
    desired, _ = _follow(r, 5)
    np.testing.assert_allclose(desired, -0.2)
    assert not r.node._trajectory.received
    r.send_trajectory([(0.1, [0.1, 0.1], None, None)])    # and back
    desired, _ = _follow(r, 20)
    np.testing.assert_allclose(desired[-1], 0.1)
    assert not r.node._reference.received


def test_a_trajectory_before_the_first_joint_states_starts_from_the_robot(rig):
    """
    Unstamped, it starts when control does: from the arrival it jumped to its end.

    Sent before the first /clock (node time 0) or 3 s before the first joint_states, every
    waypoint was behind by then and the last one was commanded at once.
    """
    r = rig({'learning_enabled': False})
    r.send_trajectory([(0.5, [0.5, 0.5], [0.0, 0.0], None)])
    for _ in range(300):                        # 3 s without joint_states: no control
        r.tick()
    r.send([0.2, -0.2])
    r.tick()
    np.testing.assert_allclose(r.node.desired.q, [0.2, -0.2])    # from the robot
    _follow(r, 49)
    assert (r.node.desired.q[0] < 0.5) and np.abs(r.node.desired.q - 0.5).max() < 1e-3
    _follow(r, 1)
    np.testing.assert_allclose(r.node.desired.q, [0.5, 0.5])    # 0.5 s after it started


def test_a_stamped_trajectory_that_ended_before_its_time_came_is_refused(rig):
    r = rig({'learning_enabled': False})
    r.send([0.0, 0.0])
    r.send_reference([0.3, 0.3])
    r.tick()
    # stamped 1 s ago, it ends 5 ms after it arrives (before the next tick) or 15 ms
    # after (too soon after that tick for another to follow it: a step of 0.7 rad)
    for t, refused in ((1.005, 1), (1.015, 2)):
        r.send_trajectory([(t, [1.0, 1.0], None, None)], stamp_ns=r.now_ns - 10**9)
        desired, _ = _follow(r, 10)
        np.testing.assert_array_equal(desired, 0.3)        # not jumped to
        assert r.node.rejected_trajectory['ends_in_the_past'] == refused
        assert not r.node._trajectory.received


def test_a_trajectory_replacing_one_mid_motion_runs_on_without_a_stall(rig):
    """Taken over from the tick before, the desired position stood still for a tick."""
    r = rig({'learning_enabled': False})
    r.send([0.0, 0.0])
    r.tick()
    r.send_trajectory([(0.0, [0.0, 0.0], [1.0, 1.0], [0.0, 0.0]),
                       (5.0, [5.0, 5.0], [1.0, 1.0], [0.0, 0.0])])
    first, _ = _follow(r, 100)
    q = r.node.desired.q[0]
    # the same ramp, planned from the tick that takes it over
    r.send_trajectory([(1.0, [q + 1.01, q + 1.01], [1.0, 1.0], [0.0, 0.0])])
    second, _ = _follow(r, 50)
    steps = np.diff(np.concatenate([first[60:], second])[:, 0])
    np.testing.assert_allclose(steps, 0.01, atol=1e-9)


# PD alone (kp 10, no kd): a command is 10 x the desired position's distance from the robot
DROP_OUT = {'learning_enabled': False, 'kd': [0.0], 'kp': [10.0], 'command_limit': [100.0],
            'sensor_timeout_s': 0.05}


def _drop_out(r, sent=None, ticks=50):
    """Tick ``ticks`` periods without joint_states; half-way, send the trajectory ``sent``."""
    for k in range(ticks):
        if sent is not None and k == ticks // 2:
            r.send_trajectory(sent)
        r.tick()


def _ramping(rig):
    """Return a DROP_OUT rig that has followed a 1 rad/s trajectory on both joints 20 ticks."""
    r = rig(DROP_OUT)
    r.send([0.0, 0.0])
    r.tick()
    r.send_trajectory([(0.0, [0.0, 0.0], [1.0, -1.0], None),
                       (3.0, [3.0, -3.0], [1.0, -1.0], None)])
    _follow(r, 20)
    return r


def _resume(r, ticks, at=(0.3, -0.1)):
    """joint_states again, the robot moved to ``at`` meanwhile: the commands of ``ticks``."""
    commands = []
    for _ in range(ticks):
        r.send(list(at))
        commands.append(r.tick())
    return commands


def test_a_trajectory_sent_during_a_drop_out_starts_from_the_robot(rig):
    r = _ramping(rig)
    _drop_out(r, [(2.0, [1.0, 1.0], [0.0, 0.0], None)])     # 0.5 s without joint_states
    commands = _resume(r, 250)
    np.testing.assert_allclose(commands[0], [0.0, 0.0], atol=1e-9)   # from where it is
    assert np.abs(np.diff(commands, axis=0)).max() < 0.5
    np.testing.assert_allclose(r.node.desired.q, [1.0, 1.0])        # the new one, 2 s on


@pytest.mark.parametrize('before', ['hold', 'ended'])
def test_a_trajectory_sent_during_a_drop_out_from_a_set_point_starts_from_the_robot(
        rig, before):
    """The resume blend runs only where the reference moved on: from a hold it stepped."""
    r = rig(DROP_OUT)
    r.send([0.0, 0.0])
    r.tick()
    if before == 'ended':
        r.send_trajectory([(0.1, [0.0, 0.0], None, None)])
        _follow(r, 20)
    _drop_out(r, [(2.0, [1.0, 1.0], [0.0, 0.0], None)])
    commands = _resume(r, 3)
    np.testing.assert_allclose(commands[0], [0.0, 0.0], atol=1e-9)   # was [-3, 1]
    assert np.abs(commands).max() < 0.05


def test_a_trajectory_taken_over_during_a_blend_is_not_blended_again(rig):
    """From the blend's mix, blended on: a step of 0.13 rad and the trajectory at half speed."""
    r = rig(DROP_OUT)
    r.send([0.0, 0.0])
    r.tick()
    r.send_trajectory([(0.0, [0.0, 0.0], [1.0, 1.0], None),
                       (10.0, [10.0, 10.0], [1.0, 1.0], None)])
    _follow(r, 20)
    _drop_out(r)                                # the trajectory runs on
    before, _ = _follow(r, 30)                  # 0.3 s into the 1 s blend from the robot
    q = r.node.desired.q.copy()
    r.send_trajectory([(1.0, list(q + 1.01), [1.0, 1.0], None)])   # on at 1 rad/s
    after, _ = _follow(r, 150)
    steps = np.diff(np.concatenate([before, after])[:, 0])
    assert np.abs(steps).max() < 0.02
    np.testing.assert_allclose(after[100], q + 1.01, atol=1e-9)    # its waypoint, in time
    np.testing.assert_allclose(after[-1], q + 1.01, atol=1e-9)     # and held there


def test_diagnostics_say_what_a_trajectory_waits_for(rig):
    r = rig({'learning_enabled': False})
    r.send([0.0, 0.0])
    r.tick()
    r.send_trajectory([(1.0, [0.1, 0.1], None, None)], stamp_ns=r.now_ns + 20 * 10**9)
    _follow(r, 1)
    status = r.node.diagnostics().status[0]
    assert key_values(status)['joint_trajectory following'].startswith('pending: starts in 19.9')
    assert status.level == DiagnosticStatus.WARN and 'waits 20.0 s' in status.message


# -- stale sensors ---------------------------------------------------------------------

def test_stale_sensor_publishes_zero_warns_once_and_resumes(rig):
    r = rig({'sensor_timeout_s': 0.03, 'learning_enabled': False, 'kd': [0.0]})
    r.send([0.0, 0.0])
    r.tick()
    r.send([0.1, -0.2])
    active = r.tick()
    np.testing.assert_allclose(active, [-1.0, 2.0])
    commands = [r.tick() for _ in range(6)]   # sensor age 10..60 ms
    np.testing.assert_allclose(commands[:2], [active, active])   # age 20, 30 ms: not stale
    assert all((c == 0.0).all() for c in commands[3:])
    assert r.node.loop.stale_episodes == 1
    keys = key_values(r.node.diagnostics().status[0])
    assert keys['sensor stale'] == 'True'
    assert 'stale' in r.node.diagnostics().status[0].message
    r.send([0.1, -0.2])
    np.testing.assert_allclose(r.tick(), [-1.0, 2.0])
    assert not r.node.loop.stale
    r.tick(5)
    assert r.node.loop.stale_episodes == 2
    assert len(r.commands) == r.node.stats.callbacks   # published every tick throughout


def test_stale_sensor_hold_keeps_the_last_command(rig):
    r = rig({'sensor_timeout_s': 0.015, 'stale_sensor_action': 'hold',
             'learning_enabled': False, 'kd': [0.0]})
    r.send([0.0, 0.0])
    r.tick()
    r.send([0.1, 0.1])
    last = r.tick()
    held = [r.tick() for _ in range(4)]
    assert r.node.loop.stale_episodes == 1
    for c in held:
        np.testing.assert_array_equal(c, last)
    # a lower command_limit set while holding applies to the held command
    lower = 0.5 * np.abs(last)
    assert r.node.set_parameters([Parameter('command_limit', value=lower.tolist())])[0].successful
    np.testing.assert_allclose(np.abs(r.tick()), lower)


# -- parameters ----------------------------------------------------------------------

def _learn(r, ticks=20):
    rng = np.random.default_rng(0)
    for _ in range(ticks):
        r.send(0.1 * rng.standard_normal(2), rng.standard_normal(2))
        r.tick()


def test_live_parameters_through_the_parameter_service(rig):
    r = rig({'learning_enabled': True})
    _learn(r)
    weights = [ro.w.copy() for ro in r.node.controller.readouts()]
    assert np.abs(weights[0]).sum() > 0
    client = AsyncParameterClient(r.tester, f'{r.ns}/lnn_controller')
    r.wait(lambda: client.services_are_ready(), 'parameter services')

    def set_params(*params):
        future = client.set_parameters(list(params))
        r.wait(future.done, 'set_parameters')
        return future.result().results

    results = set_params(Parameter('kp', value=[20, 30]),            # ints are widened
                         Parameter('command_limit', value=[2.5]),
                         Parameter('rls.forgetting_factor', value=0.999),
                         Parameter('learning_enabled', value=False))
    assert all(res.successful for res in results), results
    ctrl = r.node.controller
    np.testing.assert_array_equal(ctrl.kp, [20.0, 30.0])
    np.testing.assert_array_equal(ctrl.command_limit, [2.5, 2.5])
    assert ctrl.slow.forgetting_factor == 0.999 and not ctrl.learning_enabled
    for before, ro in zip(weights, ctrl.readouts()):
        np.testing.assert_array_equal(before, ro.w)       # nothing learned was lost
    r.send([3.0, -3.0])
    assert np.abs(r.tick()).max() <= 2.5

    refused = set_params(Parameter('kp', value=[1.0, 2.0, 3.0]),
                         Parameter('kd', value=[math.nan]),
                         Parameter('command_limit', value=[-1.0]),
                         Parameter('rls.forgetting_factor', value=2.0),
                         Parameter('reservoir.size', value=100),
                         Parameter('stale_sensor_action', value='panic'))
    assert not any(res.successful for res in refused)
    reasons = [res.reason for res in refused]
    assert 'one value per joint' in reasons[0] and 'finite' in reasons[1]
    assert '>' in reasons[2] and 'out of range' in reasons[3]
    assert 'read-only' in reasons[4] and 'must be one of' in reasons[5]
    np.testing.assert_array_equal(ctrl.kp, [20.0, 30.0])
    assert r.node.get_parameter('reservoir.size').value == 50
    (ok,) = set_params(Parameter('use_sim_time', value=True))   # not ours: not refused
    assert ok.successful


def test_reference_parameters_change_the_generated_reference_live_without_a_step(rig):
    r = rig({'reference.mode': 'hold', 'reference.offset': [0.3, -0.3],
             'reference.frequency_hz': 1.0, 'learning_enabled': False, 'kd': [0.0]})
    r.send([0.0, 0.0])
    np.testing.assert_allclose(r.tick(), [3.0, -3.0])
    r.node.set_parameters([Parameter('reference.offset', value=[0.1])])

    def ticks(n):
        return np.array([r.send([0.0, 0.0]) or r.tick() for _ in range(n)])
    commands = ticks(101)                                   # blended over 1 / frequency_hz
    np.testing.assert_allclose(commands[0], [3.0, -3.0])    # from where it was
    assert np.abs(np.diff(commands, axis=0)).max() < 0.1    # no step (was 2 and 4 at once)
    np.testing.assert_allclose(commands[-1], [1.0, 1.0])
    r.node.set_parameters([Parameter('reference.mode', value='topic')])
    commands = ticks(101)
    assert np.abs(np.diff(commands, axis=0)).max() < 0.1
    # no reference yet: it holds where the generated one was (not the start pose)
    np.testing.assert_allclose(commands[-1], [1.0, 1.0], atol=1e-12)


def test_generated_sine_reference_follows_sim_time(rig):
    r = rig({'reference.mode': 'sine', 'reference.amplitude': [1.0],
             'reference.frequency_hz': 1.0, 'learning_enabled': False, 'kd': [0.0]})
    r.send([0.0, 0.0])
    command = r.tick()                       # first command: reference time 0 here
    np.testing.assert_allclose(command, [0.0, 0.0], atol=1e-9)
    for _ in range(25):                      # 25 periods later: sin(2 pi 0.25) = 1
        r.send([0.0, 0.0])
        command = r.tick()
    np.testing.assert_allclose(command, [10.0, 10.0], atol=1e-9)


def test_control_resumes_from_where_the_robot_is_after_a_sensor_drop_out(rig):
    """
    A generated reference runs on while joint_states are stale; control resumed with a step.

    A 0.5 s drop-out mid-sine stepped the desired position by 0.66 rad (the command to 75 %
    of its limit). Now the desired state blends from the measured position, at rest, into
    the reference over one of its periods, as a live change of the reference does.
    """
    r = rig({'reference.mode': 'sine', 'reference.amplitude': [1.0],
             'reference.frequency_hz': 0.5, 'learning_enabled': False, 'kd': [0.0],
             'kp': [10.0], 'command_limit': [100.0], 'sensor_timeout_s': 0.05})
    for _ in range(20):
        r.send([0.0, 0.0])
        r.tick()
    for _ in range(50):                         # 0.5 s without joint_states
        command = r.tick()
    assert not command.any()                    # stale: zero effort
    commands = []
    for _ in range(250):                        # one period of the sine and a half
        r.send([0.3, -0.1])
        commands.append(r.tick())
    np.testing.assert_allclose(commands[0], [0.0, 0.0], atol=1e-9)   # from where it is
    assert np.abs(np.diff(commands, axis=0)).max() < 0.5   # the sine: 0.31 a tick; was 6.6
    t = (r.now_ns - r.node.desired._t0_ns) * 1e-9                   # blended in
    np.testing.assert_allclose(commands[-1], 10.0 * (np.sin(np.pi * t) - np.array([0.3, -0.1])),
                               atol=1e-9)


def test_a_trajectory_that_ran_on_through_a_drop_out_is_blended_into_from_the_robot(rig):
    """A 1 rad/s trajectory through 0.5 s without joint_states stepped the position 0.5 rad."""
    r = _ramping(rig)
    _drop_out(r)                                # 0.5 s without joint_states
    commands = _resume(r, 150)
    np.testing.assert_allclose(commands[0], [0.0, 0.0], atol=1e-9)   # from where it is
    assert np.abs(np.diff(commands, axis=0)).max() < 0.5   # 10 kp x 1 rad/s: 0.1 a tick
    expected = np.zeros((3, 2))
    r.node._trajectory.active.sample(r.now_ns, *expected)
    np.testing.assert_allclose(r.node.desired.q, expected[0], atol=1e-9)   # blended in
    assert expected[1, 0] > 0.5                 # (still moving)


def test_sync_to_joint_state_stamps_waits_for_the_state_of_the_tick(rig):
    """
    Lock-step race: /clock(t) delivered before joint_states(t).

    With the option on, the tick of t is computed from the state stamped t,
    not the previous one.
    """
    r = rig({'sync_to_joint_state_stamps': True, 'learning_enabled': False, 'kd': [0.0],
             'kp': [10.0], 'reference.mode': 'hold', 'reference.offset': [0.0]})
    r.send([0.0, 0.0])                          # state of t = 0
    r.tick()                                    # clock 0.01 first: the tick waits
    assert r.node.commands_published == 0
    r.send([0.1, -0.2], stamp_ns=r.now_ns)      # the state of 0.01 arrives: tick runs
    r.wait(lambda: len(r.commands) == 1, 'the deferred command')
    np.testing.assert_allclose(r.commands[-1], [-1.0, 2.0])
    r.tick()                                    # 0.02: waits for its state, which never
    assert r.node.commands_published == 1       # comes, so the next tick runs it late on
    r.tick()                                    # what it has, then waits for 0.03's state
    r.wait(lambda: len(r.commands) == 2, 'the late command')
    assert r.node.commands_published == 2


def test_sync_to_joint_state_stamps_follows_use_sim_time_set_live(rig):
    """Decided once at start, the wait stayed off for a node switched to sim time live."""
    r = rig({'sync_to_joint_state_stamps': True, 'learning_enabled': False, 'kd': [0.0],
             'kp': [10.0], 'reference.mode': 'hold', 'reference.offset': [0.0]}, sim_time=False)
    assert not r.node._sync_stamps
    (result,) = r.node.set_parameters([Parameter('use_sim_time', value=True)])
    assert result.successful
    r.wait(lambda: r.clock.get_subscription_count() > 0, 'the /clock subscription')
    msg = Clock()                               # the clock jumps from wall time to 0.01
    msg.clock.nanosec = r.now_ns = PERIOD_NS
    r.clock.publish(msg)
    r.wait(lambda: r.node.get_clock().now().nanoseconds == PERIOD_NS, 'the sim clock')
    r.send([0.0, 0.0])                          # state of t = 0.01
    r.tick()                                    # clock 0.02 first: the tick waits
    assert r.node.commands_published == 0
    r.send([0.1, -0.2], stamp_ns=r.now_ns)      # the state of 0.02 arrives: tick runs on it
    r.wait(lambda: len(r.commands) == 1, 'the deferred command')
    np.testing.assert_allclose(r.commands[-1], [-1.0, 2.0])
    (result,) = r.node.set_parameters([Parameter('use_sim_time', value=False)])
    assert result.successful and not r.node._sync_stamps


def test_diagnostics_status_names_are_unique_per_namespace(rig):
    """
    diagnostic_aggregator keys its items by status name: two robots' nodes need two names.

    The name was the node's own ('lnn_controller: adaptive controller' for /pd and
    /adaptive alike), so an aggregator kept one of them.
    """
    names = [r.node.diagnostics().status[0].name for r in (rig(), rig())]
    assert names[0] != names[1]
    assert all(n.endswith('/lnn_controller: adaptive controller') for n in names)


def test_off_simulated_time_the_loop_runs_on_the_steady_clock_and_survives_a_clock_step(rig):
    """
    A step of the system clock (NTP, ``date``) no longer stops the control loop.

    On the node clock, a timer waited out a step back (2 s: no command for 2 s, the last
    effort applied all the while). Off simulated time the loop's timers run on the steady
    clock, and a tick that finds the node clock moved 2 s less than the steady one
    handles it as a clock jump: it waits for fresh joint_states, then commands again.
    use_sim_time set live moves the timers to the node clock, and back.
    """
    from rclpy.clock import ClockType
    r = rig({'learning_enabled': False, 'kd': [0.0], 'reference.mode': 'hold',
             'reference.offset': [0.0, 0.0], 'sensor_timeout_s': 1.0}, sim_time=False)
    node = r.node
    assert {t.clock.clock_type for t in (node._timer, node._diagnostics_timer)} == {
        ClockType.STEADY_TIME}
    r.send([0.1, -0.2], stamp_ns=0)
    r.wait(lambda: len(r.commands) >= 3, 'commands on the steady clock')
    warnings = record_warnings(node)
    r.wait(lambda: node._tick_clocks is not None, 'a tick')
    clock_ns, steady_ns = node._tick_clocks
    t0 = node.desired._t0_ns
    node._tick_clocks = (clock_ns + 2_000_000_000, steady_ns)   # the node clock: 2 s back
    r.wait(lambda: warnings, 'the step to be noticed')
    assert warnings == ['the system clock stepped -2.000 s: waiting for joint_states']
    assert not node._have_sensor
    # the generated reference runs on where it was (restarted, the effort stepped)
    assert abs(node.desired._t0_ns - (t0 - 2_000_000_000)) < 100_000_000
    sent = node.commands_published
    r.spinner.spin_for(0.1)
    assert node.commands_published == sent      # no state since the step: no command
    # a driver on another machine, its clock 50 ms ahead: taken (it was refused for good)
    r.send([0.1, -0.2], stamp_ns=node.get_clock().now().nanoseconds + 50_000_000)
    r.wait(lambda: node.commands_published >= sent + 3, 'commands after the step')
    np.testing.assert_allclose(r.commands[-1], [-1.0, 2.0])
    (result,) = node.set_parameters([Parameter('use_sim_time', value=True)])
    assert result.successful
    assert {t.clock.clock_type for t in (node._timer, node._diagnostics_timer)} == {
        ClockType.ROS_TIME}
    assert all(t.is_canceled() for t in node._loop_timers[False])
    (result,) = node.set_parameters([Parameter('use_sim_time', value=False)])
    assert result.successful and node._timer.clock.clock_type == ClockType.STEADY_TIME
    assert all(t.is_canceled() for t in node._loop_timers[True])
    assert not any(t.is_canceled() for t in node._loop_timers[False])


def test_sync_a_repeated_or_unstamped_state_does_not_release_the_waiting_tick(rig):
    """Only the state stamped with the waiting tick's time runs it, not an older one."""
    r = rig({'sync_to_joint_state_stamps': True, 'learning_enabled': False, 'kd': [0.0],
             'kp': [10.0], 'reference.mode': 'hold', 'reference.offset': [0.0]})
    r.send([0.0, 0.0])                          # state of t = 0
    r.tick()                                    # 0.01: waits for its state
    r.send([0.3, 0.3], stamp_ns=r.now_ns)       # which comes: the tick runs
    r.wait(lambda: len(r.commands) == 1, 'the deferred command')
    r.tick()                                    # 0.02: waits for its state
    r.send([0.3, 0.3], stamp_ns=r.now_ns - PERIOD_NS)   # a repeat of 0.01's
    r.send([0.3, 0.3], stamp_ns=0)                      # an unstamped one
    assert r.node.commands_published == 1
    r.send([0.1, -0.2], stamp_ns=r.now_ns)      # the state of 0.02
    r.wait(lambda: len(r.commands) == 2, 'the deferred command')
    np.testing.assert_allclose(r.commands[-1], [-1.0, 2.0])


@pytest.mark.parametrize('order', ['state_first', 'clock_first'])
def test_sync_a_refused_state_runs_its_tick_on_the_last_valid_one(rig, order):
    """
    Lock-step: the tick waiting for a state that is refused runs anyway, on the last one.

    The simulator advances only on a command, so the tick waited for good: one
    implausible state (a joint above limits.velocity) stopped the loop for the rest of
    the run, and /diagnostics blamed /clock. The simulator publishes the state first;
    /clock may overtake it.
    """
    r = rig({'sync_to_joint_state_stamps': True, 'learning_enabled': False, 'kd': [0.0],
             'kp': [10.0], 'reference.mode': 'hold', 'reference.offset': [0.0],
             'limits.velocity': [1.0, 1.0]})
    r.send([0.0, 0.0])                          # state of t = 0
    r.tick()
    r.send([0.1, -0.2], stamp_ns=r.now_ns)      # the state of 0.01: the tick runs
    r.wait(lambda: len(r.commands) == 1, 'the deferred command')
    implausible = [0.2, -0.2], [5.0, 0.0]       # positions, velocities above the limit
    if order == 'state_first':
        r.send(*implausible, stamp_ns=r.now_ns + PERIOD_NS)
        r.tick()                                # its tick does not wait
    else:
        r.tick()                                # 0.02 waits for its state ...
        assert r.node.commands_published == 1
        r.send(*implausible, stamp_ns=r.now_ns)  # ... which is refused: it runs now
        r.wait(lambda: len(r.commands) == 2, 'the released command')
    assert r.node.rejected['implausible'] == 1 and r.node.commands_published == 2
    np.testing.assert_allclose(r.commands[-1], [-1.0, 2.0])     # on the state of 0.01


def test_a_joint_state_stamped_far_in_the_future_is_refused(rig):
    """Accepted, it would have made every correctly stamped message after it 'backwards'."""
    r = rig({'learning_enabled': False})
    r.tick()                                    # the clock runs; no sensor yet
    r.send([0.0, 0.0], stamp_ns=r.now_ns + 10**18)
    assert r.node.rejected['stamp_in_future'] == 1
    r.send([0.0, 0.0], stamp_ns=r.now_ns)
    r.tick()
    assert r.node.commands_published == 1 and r.node.rejected['stamp_backwards'] == 0


@pytest.mark.parametrize('first', ['ahead', 'wall_clock'])
def test_stamps_from_another_time_base_do_not_stop_control_for_good(rig, first):
    """
    Follow the correct stamps after RESYNC_MESSAGES of them, logged and counted.

    A state stamped 0.9 s ahead (inside the future tolerance), or wall-clock stamps
    before the first /clock, made every correctly stamped state after it 'backwards':
    zero effort until the stamps caught up, or for good.
    """
    r = rig({'learning_enabled': False, 'sensor_timeout_s': 1.0})
    warnings = record_warnings(r.node)
    if first == 'ahead':
        r.tick()
        r.send([0.0, 0.0], stamp_ns=r.now_ns + 900_000_000)
    else:           # before any /clock (node time 0): not judged against it
        r.send([0.0, 0.0], stamp_ns=time.time_ns())
    for _ in range(C.RESYNC_MESSAGES + 3):
        r.tick()
        r.send([0.1, -0.2], stamp_ns=r.now_ns)
    assert r.node.rejected['stamp_backwards'] == C.RESYNC_MESSAGES - 1
    assert r.node._sensor.resyncs == 1
    assert any('joint_states stamps went back' in w for w in warnings), warnings
    assert not r.node.loop.stale
    np.testing.assert_allclose(r.tick(), r.node.controller.kp * [-0.1, 0.2], atol=1e-9)


def test_without_sync_the_tick_uses_the_latest_state_at_once(rig):
    r = rig({'learning_enabled': False, 'kd': [0.0], 'kp': [10.0],
             'reference.mode': 'hold', 'reference.offset': [0.0]})
    r.send([0.1, -0.2])
    np.testing.assert_allclose(r.tick(), [-1.0, 2.0])


# -- services --------------------------------------------------------------------------

def test_services(rig, tmp_path):
    path = tmp_path / 'readout.npz'
    r = rig({'readout_path': str(path)})
    _learn(r)
    ctrl = r.node.controller
    learned = ctrl.slow.w.copy()

    off = r.call(SetBool, 'set_learning', SetBool.Request(data=False))
    assert off.success and not ctrl.learning_enabled
    assert r.node.get_parameter('learning_enabled').value is False
    updates = ctrl.slow.updates
    _learn(r, 3)
    assert ctrl.slow.updates == updates
    assert r.call(SetBool, 'set_learning', SetBool.Request(data=True)).success
    assert ctrl.learning_enabled

    saved = r.call(Trigger, 'save_readout', Trigger.Request())
    assert saved.success and path.is_file()
    assert not list(tmp_path.glob('.readout-*'))        # atomic write left no temp file
    learned = ctrl.slow.w.copy()
    reset = r.call(Trigger, 'reset_learning', Trigger.Request())
    assert reset.success and not ctrl.slow.w.any() and ctrl.slow.updates == 0
    loaded = r.call(Trigger, 'load_readout', Trigger.Request())
    assert loaded.success, loaded.message
    np.testing.assert_array_equal(ctrl.slow.w, learned)

    # a readout of another robot is refused and nothing changes
    other = twin({**r.params, 'joints': ['x', 'y']})
    other.save(str(path))
    refused = r.call(Trigger, 'load_readout', Trigger.Request())
    assert not refused.success and 'joints' in refused.message
    np.testing.assert_array_equal(ctrl.slow.w, learned)

    r.node.set_parameters([Parameter('readout_path', value='')])
    assert not r.call(Trigger, 'save_readout', Trigger.Request()).success
    assert not r.call(Trigger, 'load_readout', Trigger.Request()).success


def _gate(monkeypatch, name):
    """
    Hold ``readout_file.<name>`` (the file work) until the returned release is set.

    Returns (started, release). On the old code the work ran in the service callback, on
    the executor's thread: the wait (bounded, so that such a test fails, not hangs) stopped
    the control loop with it.
    """
    started, release = threading.Event(), threading.Event()
    work = getattr(readout_file, name)

    def gated(*args):
        started.set()
        release.wait(5.0)
        return work(*args)
    monkeypatch.setattr(readout_file, name, gated)
    return started, release


def _ask(r, name):
    client = r.tester.create_client(Trigger, f'{r.ns}/lnn_controller/{name}')
    r.wait(client.service_is_ready, f'service {name}')
    return client.call_async(Trigger.Request())


def test_save_readout_answers_once_written_and_the_loop_runs_on(rig, tmp_path, monkeypatch):
    """
    The file is written on the readout store's I/O thread.

    Ticks go on meanwhile; success comes only once the file is complete, and it holds the
    readout as it was when asked for (the tick after the request learns on).
    """
    path = tmp_path / 'readout.npz'
    r = rig({'readout_path': str(path), 'learning_enabled': True})
    _learn(r)
    ctrl = r.node.controller
    asked = ctrl.slow.w.copy()
    started, release = _gate(monkeypatch, 'save_npz')
    future = _ask(r, 'save_readout')
    r.wait(started.is_set, 'the write to start')
    published = r.node.commands_published
    _learn(r, 3)                                  # three ticks during the write
    assert r.node.commands_published == published + 3
    assert not future.done() and not path.exists()
    assert not np.array_equal(ctrl.slow.w, asked)
    release.set()
    r.wait(future.done, 'the answer')
    assert future.result().success, future.result().message
    saved = twin(r.params)
    saved.load(str(path))                         # complete: it loads
    np.testing.assert_array_equal(saved.slow.w, asked)
    assert not list(tmp_path.glob('.readout-*'))


def test_a_burst_of_service_calls_is_queued_not_dropped(rig):
    """Twenty calls at once: ROS's service profile keeps 10 requests, the rest went unanswered."""
    from rclpy.qos import QoSProfile
    r = rig()
    client = r.tester.create_client(Trigger, f'{r.ns}/lnn_controller/plant_changed',
                                    qos_profile=QoSProfile(depth=100))
    r.wait(client.service_is_ready, 'the service')
    futures = [client.call_async(Trigger.Request()) for _ in range(20)]
    r.spinner.spin_until(lambda: all(f.done() for f in futures), timeout=5.0)
    assert sum(f.done() for f in futures) == 20


def test_a_save_still_writing_at_shutdown_is_answered_before_the_node_goes(
        rig, tmp_path, monkeypatch):
    """
    Ctrl-C while ~/save_readout waits for its write: the caller gets its answer.

    The spin loop has ended by then, so nothing resumed the waiting call: the node went
    and the client waited for ever. Its file is complete, and no tick runs after the
    zero effort.
    """
    path = tmp_path / 'readout.npz'
    r = rig({'readout_path': str(path), 'learning_enabled': True})
    _learn(r)
    started, release = _gate(monkeypatch, 'save_npz')
    future = _ask(r, 'save_readout')
    r.wait(started.is_set, 'the write to start')
    release.set()
    r.node.on_shutdown()                          # what main() does on Ctrl-C / SIGTERM
    published = r.node.commands_published
    r.spinner.executor.remove_node(r.node)        # main() spins no more for it
    r.spinner.spin_for(1.0)
    assert future.done(), 'the save was never answered'
    assert future.result().success, future.result().message
    assert r.node.commands_published == published
    twin(r.params).load(str(path))


def test_a_writer_that_hangs_is_a_warning_on_diagnostics(rig, tmp_path, monkeypatch):
    """Autosaves skipped while the writer hung on a file counted, but the level stayed OK."""
    r = rig({'readout_path': str(tmp_path / 'readout.npz'), 'learning_enabled': True,
             'readout_autosave_period_s': 0.02, 'supervisor.enabled': False})
    started, release = _gate(monkeypatch, 'save_npz')
    _learn(r, 10)
    r.wait(started.is_set, 'the first autosave to start')
    _learn(r, 10)                                     # due every 2 ticks: skipped
    status = r.node.diagnostics().status[0]
    assert status.level == DiagnosticStatus.WARN
    assert 'readout writer busy' in status.message and 'skipped since the last' in status.message
    release.set()
    r.node.readout_store.flush()
    status = r.node.diagnostics().status[0]
    assert 'readout writer busy' not in status.message       # none since the last report


def test_load_readout_reads_off_the_loop_and_swaps_between_ticks(rig, tmp_path, monkeypatch):
    """
    On the wall clock the file is read and checked on the I/O thread while commands go on.

    The readout is swapped in between ticks once the whole file is checked (none before);
    a truncated file is refused with the reason and what was learned stays. (On simulated
    time a load is synchronous, ``test_services``.)
    """
    path = tmp_path / 'readout.npz'
    r = rig({'readout_path': str(path), 'learning_enabled': False}, sim_time=False)
    ctrl = r.node.controller
    learned = twin({**BASE, 'learning_enabled': True})
    rng = np.random.default_rng(3)
    for _ in range(30):
        learned.step((0.1 * rng.standard_normal(2), rng.standard_normal(2)),
                     (np.zeros(2), np.zeros(2), np.zeros(2)))
    learned.save(str(path))
    assert learned.slow.w.any() and not ctrl.slow.w.any()
    r.send([0.0, 0.0])                            # the loop commands at 100 Hz from here
    started, release = _gate(monkeypatch, 'load_npz')
    future = _ask(r, 'load_readout')
    r.wait(started.is_set, 'the read to start')
    published = r.node.commands_published
    r.wait(lambda: r.node.commands_published >= published + 3, 'commands during the read')
    assert not future.done() and not ctrl.slow.w.any()      # nothing swapped in yet
    release.set()
    r.wait(future.done, 'the answer')
    assert future.result().success, future.result().message
    np.testing.assert_array_equal(ctrl.slow.w, learned.slow.w)

    path.write_bytes(path.read_bytes()[:4096])    # truncated (a copy cut short)
    refused = r.call(Trigger, 'load_readout', Trigger.Request())
    assert not refused.success
    assert refused.message.startswith('not loaded (') and 'nothing changed' in refused.message
    assert len(refused.message) > len('not loaded (); nothing changed')   # with the reason
    np.testing.assert_array_equal(ctrl.slow.w, learned.slow.w)
    published = r.node.commands_published
    r.wait(lambda: r.node.commands_published > published, 'the loop to go on')


def test_learning_survives_a_restart(rig, tmp_path):
    path = tmp_path / 'sub' / 'readout.npz'
    judged = rig({'readout_path': str(path)})
    _learn(judged, 30)                       # 0.3 s: too short for the supervisor to judge
    assert judged.node.on_shutdown()[0] and path.is_file()    # no file yet: nothing to lose
    again = rig({'readout_path': str(path)})
    _learn(again, 30)
    ok, message = again.node.on_shutdown()   # a file now: only a readout judged good
    assert not ok and 'not judged the readout good' in message
    path.unlink()
    # the supervisor off: nothing withholds the write (ReadoutStore.doubtful)
    first = rig({'readout_path': str(path), 'rls.forgetting_factor': 0.9995,
                 'supervisor.enabled': False})
    _learn(first, 30)
    weights = [ro.w.copy() for ro in first.node.controller.readouts()]
    first.node.on_shutdown()                 # what main() does on Ctrl-C / SIGTERM
    assert path.is_file()
    second = rig({'readout_path': str(path), 'rls.forgetting_factor': 0.999})
    for before, ro in zip(weights, second.node.controller.readouts()):
        np.testing.assert_array_equal(before, ro.w)
    # the parameter, not the file, decides the forgetting factor
    assert second.node.controller.slow.forgetting_factor == 0.999


def test_unloadable_readout_is_set_aside_and_the_node_starts_fresh(rig, tmp_path):
    path = tmp_path / 'readout.npz'
    twin({**BASE, 'joints': ['other']}).save(str(path))
    foreign = path.read_bytes()
    r = rig({'readout_path': str(path)})
    assert (tmp_path / 'readout.npz.refused').read_bytes() == foreign   # kept, untouched
    assert not path.exists() and not r.node.controller.slow.w.any()
    _learn(r, 5)
    assert r.node.save_readout()[0] and path.is_file()              # its own file now


def test_autosave_on_the_node_clock_survives_without_shutdown(rig, tmp_path):
    path = tmp_path / 'readout.npz'
    r = rig({'readout_path': str(path), 'readout_autosave_period_s': 0.05,
             'supervisor.enabled': False})          # nothing withholds a write
    _learn(r, 12)                                     # 120 ms of sim time: 2 autosaves due
    store = r.node.readout_store
    store.flush()
    # due twice; the second is skipped if the writer (wall clock) is still at the first
    assert store.saves + store.skipped == 2 and store.saves >= 1 and path.is_file()
    keys = key_values(r.node.diagnostics().status[0])
    assert keys['readout autosaves'] == str(store.saves)
    saved = twin(r.params)
    saved.load(str(path))                             # what a kill -9 now would leave
    assert saved.slow.w.any()
    (result,) = r.node.set_parameters([Parameter('readout_autosave_period_s', value=0.0)])
    assert result.successful
    done = store.saves + store.skipped
    _learn(r, 12)
    store.flush()
    assert store.saves + store.skipped == done        # autosave off


def test_invalid_startup_parameters_raise_with_every_reason(context):
    with pytest.raises(ValueError) as err:
        LnnControllerNode(context=context, parameter_overrides=[
            Parameter('kp', value=[math.nan]), Parameter('reservoir.size', value=5),
            Parameter('joints', value=['a', 'a'])])
    text = str(err.value)
    assert 'kp must be finite' in text and 'reservoir.size' in text and 'repeat' in text


# -- diagnostics -----------------------------------------------------------------------

def test_diagnostics_published_once_per_second_of_node_time(rig):
    r = rig()
    r.send([0.0, 0.0])
    r.tick(99)
    assert r.diagnostics == []
    r.tick(101)
    r.wait(lambda: len(r.diagnostics) >= 2, 'diagnostics')
    d = r.diagnostics[-1]
    assert float(d['control rate achieved [Hz]']) == pytest.approx(100.0)
    assert float(d['control rate target [Hz]']) == 100.0
    for key in ('tick compute p50 [ms]', 'tick compute p99 [ms]', 'tick compute max [ms]',
                'overruns', 'learning error', 'sensor age [s]',
                'joint_states rejected: non_finite', 'joint_states rejected: stamp_backwards'):
        assert key in d
    assert d['learning'] == 'on'


def test_clock_jumping_back_waits_for_fresh_joint_states(rig):
    r = rig()
    r.now_ns = 10**9
    r.send([0.0, 0.0])
    r.tick(3)
    published = r.node.commands_published
    r.reset_clock()                          # simulation reset: time goes back to 10 ms
    r.tick(2)                                # rcl restarts the timer one period after a jump
    assert r.node.commands_published == published       # old sensor data is not used
    r.send([0.0, 0.0])                       # stamped with the new, earlier time: accepted
    assert r.node.sensor_messages == 2
    assert r.tick() is not None


def test_a_clock_message_with_a_negative_time_is_dropped_and_control_goes_on(rig):
    """A negative /clock sec made rclpy's time source raise in the executor: the node ended."""
    r = rig({'learning_enabled': False})
    r.send([0.0, 0.0])
    r.tick(3)
    bad = Clock()
    bad.clock.sec = -1
    r.clock.publish(bad)
    # (the executor raised ValueError while spinning here)
    r.wait(lambda: getattr(r.node, 'clock_refused', 0) == 1, 'the refusal')
    assert r.node.get_clock().now().nanoseconds == r.now_ns      # the clock stayed
    assert key_values(r.node.diagnostics().status[0])['/clock rejected: malformed'] == '1'
    r.send([0.0, 0.0])
    assert r.tick() is not None and r.node.stats.callbacks == 4


def test_a_negative_clock_is_dropped_on_the_subscription_use_sim_time_set_live_makes(rig):
    r = rig({'learning_enabled': False}, sim_time=False)
    (result,) = r.node.set_parameters([Parameter('use_sim_time', value=True)])
    assert result.successful
    r.wait(lambda: r.clock.get_subscription_count() > 0, 'the /clock subscription')
    good = Clock()
    good.clock.nanosec = PERIOD_NS
    r.clock.publish(good)
    r.wait(lambda: r.node.get_clock().now().nanoseconds == PERIOD_NS, 'the sim clock')
    bad = Clock()
    bad.clock.sec = -1
    r.clock.publish(bad)
    r.wait(lambda: r.node.clock_refused == 1, 'the refusal')
    assert r.node.get_clock().now().nanoseconds == PERIOD_NS


def test_a_sensor_silent_after_a_clock_jump_gets_zero_effort(rig):
    """
    After a jump no tick runs until joint_states come; a driver keeps the last command.

    A sensor silent (or refused) after the jump left the last torque applied for good;
    now zero effort once sensor_timeout_s has passed, as for a drop-out without a jump.
    """
    r = rig({'learning_enabled': False, 'sensor_timeout_s': 0.05, 'reference.mode': 'hold',
             'reference.offset': [0.0, 0.0]})
    r.now_ns = 10**9
    r.send([0.3, -0.2])
    r.tick(3)
    assert np.abs(r.commands[-1]).max() > 0
    r.reset_clock()                          # simulation reset; the sensor stays silent
    published = r.node.commands_published
    r.tick(4)                                # 40 ms: within the timeout, nothing yet
    assert r.node.commands_published == published
    r.tick(3)            # (at once: the stall watchdog would zero it later, on wall time)
    assert r.node.commands_published == published + 1
    r.wait(lambda: not np.any(r.commands[-1]), 'the zero command received')
    r.tick(5)
    assert r.node.commands_published == published + 1      # once


def _following_a_sine(rig, ticks, **overrides):
    """Return a rig whose robot followed a generated sine for ``ticks``, and where it is."""
    r = rig({'learning_enabled': False, 'reference.mode': 'sine',
             'reference.amplitude': [0.5, 0.5], 'reference.frequency_hz': 0.5, **overrides})
    r.now_ns = 10**9
    for _ in range(ticks):
        r.send(list(r.node.desired.q))
        r.tick()
    return r, list(r.node.desired.q)


def test_a_clock_step_in_a_drop_out_still_resumes_from_where_the_robot_is(rig):
    """The jump cleared the drop-out, so the desired state stepped instead of blending."""
    r, held = _following_a_sine(rig, 30, sensor_timeout_s=0.05)
    r.tick(60)                               # 0.6 s drop-out: the reference runs on
    assert r.node.loop.stale
    r.node._on_clock_jump(None, 'the system clock stepped', step_ns=1)   # as _on_tick does
    r.send(held)
    r.tick()
    np.testing.assert_allclose(r.node.desired.q, held, atol=0.02)   # blended, not stepped
    assert r.node.desired.blend_s > 0


def test_a_generated_reference_restarted_by_a_jump_begins_from_where_the_robot_is(rig):
    """A bag loop or use_sim_time toggled: the sine began again at its offset, a step."""
    r, where = _following_a_sine(rig, 50)
    assert abs(where[0]) > 0.3
    r.reset_clock()                          # /clock loops back; the robot stays put
    r.send(where, stamp_ns=r.now_ns)
    r.tick()
    np.testing.assert_allclose(r.node.desired.q, where, atol=0.02)   # blended, not stepped


def test_after_a_reset_a_state_sent_before_it_is_not_the_hold_pose(rig):
    """
    A state of the old timeline delivered after /clock jumped back is refused.

    The simulator reset from q = 0.5 at 0.81 s to q = 0 at 0.01 s; its last pre-reset
    state (stamped 0.81 s, inside the 1 s future tolerance) came after the jump. Taken as
    the first state it set the hold pose to 0.5 and the reset's own states read as
    stamped backwards: the node pushed the robot to where it was before the reset.
    """
    r = rig({'learning_enabled': False, 'kd': [0.0], 'kp': [10.0], 'sensor_timeout_s': 1.0})
    r.now_ns = 700_000_000
    r.tick()
    for _ in range(10):
        r.send([0.5, 0.5], stamp_ns=r.now_ns)
        r.tick()
    before_reset = r.now_ns
    r.reset_clock()
    r.send([0.5, 0.5], stamp_ns=before_reset)           # in flight across the reset
    assert r.node.rejected[C.STAMP_IN_FUTURE] == 1 and not r.node._have_sensor
    for _ in range(3):
        r.send([0.0, 0.0], stamp_ns=r.now_ns)           # the reset's states: held at 0
        np.testing.assert_allclose(r.tick(), [0.0, 0.0])
    assert r.node.rejected[C.STAMP_BACKWARDS] == 0


def test_sync_a_state_refused_as_ahead_of_the_clock_does_not_end_the_waiting(rig):
    """
    Lock-step: one state stamped on the wall clock (a publisher without use_sim_time).

    Refused as stamped in the future, its stamp was still taken as the simulator's time,
    and every later tick ran at once on the previous state instead of waiting for its own.
    """
    r = rig({'sync_to_joint_state_stamps': True, 'learning_enabled': False, 'kd': [0.0],
             'kp': [10.0], 'reference.mode': 'hold', 'reference.offset': [0.0]})
    r.send([0.0, 0.0])
    r.tick()
    r.send([0.0, 0.0], stamp_ns=r.now_ns)
    r.wait(lambda: len(r.commands) == 1, 'the deferred command')
    r.send(None, msg=C.joint_state(['j1'], [0.0], [0.0], stamp_ns=time.time_ns()))
    assert r.node.rejected[C.STAMP_IN_FUTURE] == 1
    for k in range(1, 4):
        r.tick()
        assert r.node.commands_published == k            # the tick waits for its state
        r.send([0.1 * k, -0.2], stamp_ns=r.now_ns)
        r.wait(lambda: len(r.commands) == k + 1, 'the deferred command')
        np.testing.assert_allclose(r.commands[-1], [-1.0 * k, 2.0])


def test_a_stamp_ahead_of_the_clock_cannot_keep_a_silent_sensor_fresh(rig):
    # sync mode takes the sensor's age from its stamp: one stamp 0.9 s ahead (inside the
    # reader's tolerance) kept the sensor "fresh" for 0.9 s, one far ahead for good
    r = rig({'sync_to_joint_state_stamps': True, 'sensor_timeout_s': 0.03,
             'learning_enabled': False, 'reference.mode': 'hold'})
    r.now_ns = 10**9
    r.send([0.0, 0.0], stamp_ns=r.now_ns + 900_000_000)
    r.tick(6)                                   # then silence
    assert r.node.loop.stale and (r.commands[-1] == 0.0).all()
    assert r.node.loop.stale_episodes == 1
    assert 0.0 <= float(key_values(r.node.diagnostics().status[0])['sensor age [s]']) < 0.1


def test_the_same_sample_again_does_not_keep_the_sensor_fresh(rig):
    r = rig({'sensor_timeout_s': 0.03, 'learning_enabled': False})
    r.send([0.1, 0.0], stamp_ns=10_000_000)
    for _ in range(6):                          # a driver re-publishing a frozen sample
        r.tick()
        r.send([0.1, 0.0], stamp_ns=10_000_000)
    assert r.node.loop.stale and r.node.loop.stale_episodes == 1
    r.send([0.1, 0.0])                          # a new sample: fresh again
    r.tick()
    assert not r.node.loop.stale


def test_a_state_from_before_the_clock_started_is_fresh_at_the_first_tick(rig):
    # joining a running simulation: the state arrives at node time 0, /clock starts at 5 s
    r = rig({'sensor_timeout_s': 0.03, 'learning_enabled': False})
    r.send([0.1, -0.2], stamp_ns=5 * 10**9)
    r.now_ns = 5 * 10**9 - PERIOD_NS
    warnings = record_warnings(r.node)
    r.tick()
    assert not r.node.loop.stale and r.node.loop.stale_episodes == 0, warnings
    assert not [w for w in warnings if 'no valid joint_states' in w]


def test_after_a_clock_reset_diagnostics_measure_the_rate_on_the_new_clock(rig):
    r = rig({'learning_enabled': False})
    r.now_ns = 3 * 10**9
    r.send([0.0, 0.0])
    r.send_reference([0.2, 0.2])
    r.tick(3)
    r.node.diagnostics()                     # the window starts at 3.03 s
    r.reset_clock()                          # simulation reset
    assert not r.node._reference.received    # the old reference is not commanded on
    r.send([0.0, 0.0])
    r.tick(10)
    status = r.node.diagnostics().status[0]
    assert 'stands still' not in status.message, status.message
    assert float(key_values(status)['control rate achieved [Hz]']) > 50.0


def test_a_moving_reference_that_stops_coming_is_held_at_its_last_position(rig):
    r = rig({'learning_enabled': False, 'reference_timeout_s': 0.05})
    r.send([0.0, 0.0])
    r.send_reference([0.5, 0.5], [0.4, -0.4])
    r.tick(3)
    np.testing.assert_allclose(r.node.desired.qd, [0.4, -0.4])
    warnings = record_warnings(r.node)
    r.tick(5)                                # 80 ms since the last reference
    np.testing.assert_allclose(r.node.desired.q, [0.5, 0.5])
    assert not r.node.desired.qd.any() and not r.node.desired.qdd.any()
    assert r.node.reference_stale_episodes == 1 and len(warnings) == 1, warnings
    status = r.node.diagnostics().status[0]
    assert status.level == DiagnosticStatus.WARN and 'reference' in status.message
    r.send_reference([0.6, 0.6], [0.4, -0.4])   # it resumes
    r.tick()
    np.testing.assert_allclose(r.node.desired.qd, [0.4, -0.4])
    r.send_reference([0.7, 0.7])             # a set point (no velocity) is held for good
    r.tick(20)
    assert r.node.reference_stale_episodes == 1
    assert 'reference' not in r.node.diagnostics().status[0].message


def test_a_reference_streamed_slower_than_the_loop_is_carried_on_between_messages(rig):
    """
    A planner at 20 Hz into the 100 Hz loop: the desired position stepped every message.

    Held between messages it jumped 0.05 rad each fifth tick and stood still between;
    carried on by the message's velocity it moves a period's worth every tick, and a
    stream that stops is held where it had got to (at most two intervals on), not sent
    back to the last message's position.
    """
    r = rig({'learning_enabled': False, 'reference_timeout_s': 0.3})
    r.send([0.0, 0.0])
    start, positions = r.now_ns, []
    for k in range(4):                        # 1 rad/s and -1 rad/s, a message every 5 ticks
        t = (r.now_ns - start) * 1e-9
        r.send_reference([t, -t], [1.0, -1.0])
        for _ in range(5):
            r.send([0.0, 0.0])
            r.tick()
            positions.append(r.node.desired.q.copy())
    q = np.array(positions)[5:]               # from the second message on (its interval known)
    times = (start + PERIOD_NS * np.arange(6, 21)) * 1e-9 - start * 1e-9
    np.testing.assert_allclose(q[:, 0], times, atol=1e-9)
    np.testing.assert_allclose(q[:, 1], -times, atol=1e-9)
    np.testing.assert_allclose(r.node.desired.qd, [1.0, -1.0])
    last, held = (r.now_ns - start) * 1e-9 - 0.05, []   # the last message's position
    for _ in range(40):                       # silent past reference_timeout_s: held
        r.send([0.0, 0.0])
        r.tick()
        held.append(r.node.desired.q[0])
    assert r.node.reference_stale_episodes == 1 and not r.node.desired.qd.any()
    assert np.diff(held).min() >= 0.0         # carried on, then held there: never back
    assert last + 0.05 < held[-1] <= last + 0.1 + 1e-9 and r.node.desired.q[1] == -held[-1]


def _stream_reference(r, velocity, messages, q0=0.0, every=5):
    """Send ``messages`` references of a ramp at ``velocity``, one each ``every`` ticks."""
    start = r.now_ns
    for _ in range(messages):
        t = (r.now_ns - start) * 1e-9
        r.send_reference([q0 + velocity * t, 0.0], [velocity, 0.0])
        for _ in range(every):
            r.send([0.0, 0.0])
            r.tick()
    return q0 + velocity * (r.now_ns - start) * 1e-9     # where it would be now


def test_a_carried_on_reference_stops_where_sent_within_limits_and_horizon(rig):
    """
    Three ways carrying a stream on went wrong (a review of the first version).

    A stop (velocity 0 after a 20 Hz ramp) was carried back by the acceleration estimated
    from it and held 0.04 rad short; a ramp towards ``limits.position`` was held past it
    (a message there would be refused); and one long gap before a stream stretched the
    typical interval, so a stream that stopped ran on 0.5 rad, not at most two intervals.
    """
    r = rig({'learning_enabled': False, 'reference_timeout_s': 0.5,
             'limits.position': [1.0]})
    r.send([0.0, 0.0])
    stop = _stream_reference(r, 1.0, 8) - 0.05
    r.send_reference([stop, 0.0], [0.0, 0.0])
    for _ in range(80):
        r.send([0.0, 0.0])
        r.tick()
        assert r.node.desired.q[0] == stop and not r.node.desired.qd.any()
        assert not r.node.desired.qdd.any()  # at rest: the stop's deceleration is not asked
    _stream_reference(r, 1.0, 10, q0=0.05, every=10)       # 10 Hz up to 0.95
    for _ in range(80):
        r.send([0.0, 0.0])
        r.tick()
    assert r.node.desired.q[0] == 1.0
    r.send_reference([0.0, 0.0], [0.2, 0.0])               # one message, 3 s of silence
    for _ in range(300):
        r.send([0.0, 0.0])
        r.tick()
    last = _stream_reference(r, 1.0, 10, q0=0.3) - 0.05    # then a 20 Hz stream that stops
    for _ in range(80):
        r.send([0.0, 0.0])
        r.tick()
    assert last < r.node.desired.q[0] <= last + 0.1 + 1e-9


# -- across processes ------------------------------------------------------------------

def _console_script():
    """Return the installed ``lnn_controller`` script; ``-m`` only if it is not installed."""
    bindir = os.path.dirname(sys.executable)
    script = shutil.which('lnn_controller', path=os.pathsep.join(
        [bindir, os.environ.get('PATH', '')]))
    return [script] if script else [sys.executable, '-m', 'lnn_control.ros.controller_node']


@pytest.mark.slow
@pytest.mark.parametrize('sig, executor', [
    (signal.SIGINT, 'single'), (signal.SIGTERM, 'single'), (signal.SIGINT, 'events'),
], ids=['SIGINT', 'SIGTERM', 'SIGINT-events'])
def test_console_script_across_processes(context, spinner, tmp_path, sig, executor):
    ns = unique_namespace('xp')
    readout = tmp_path / 'readout.npz'
    log = open(tmp_path / 'node.log', 'w+')
    proc = subprocess.Popen(
        _console_script() + ['--executor', executor, '--ros-args', '-r', f'__ns:={ns}',
                             '-p', 'joints:=[j1, j2]', '-p', 'reservoir.size:=50',
                             '-p', 'control_rate_hz:=50.0', '-p', 'command_limit:=[1.5]',
                             '-p', f'readout_path:={readout}',
                             # nothing withholds the save (ReadoutStore.doubtful)
                             '-p', 'supervisor.enabled:=false'],
        stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
    node = rclpy.create_node('peer', context=context, namespace=ns)
    peer = spinner(node)
    try:
        commands = []
        node.create_subscription(Float64MultiArray, 'commands',
                                 lambda m: commands.append(list(m.data)), RELIABLE)
        publisher = node.create_publisher(JointState, 'joint_states', 10)
        deadline = time.monotonic() + 60.0          # discovery + JIT on a cold cache
        while len(commands) < 10 and time.monotonic() < deadline and proc.poll() is None:
            publisher.publish(C.joint_state(['x', 'j2', 'j1'], [0.0, 0.5, -0.5], [0.0] * 3))
            peer.spin_once(timeout_sec=0.02)
        running = proc.poll() is None
        returncode = None
        if running:
            proc.send_signal(sig)
            returncode = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        peer.close()
        log.seek(0)
        output = log.read()
        log.close()
    assert running, f'node exited early:\n{output}'
    assert len(commands) >= 10, f'no commands from the node:\n{output}'
    assert all(len(c) == 2 and all(abs(v) <= 1.5 for v in c) for c in commands)
    assert returncode == 0, output
    assert readout.is_file() and 'saved readout' in output, output   # saved on shutdown


def test_supervisor_state_and_interventions_on_diagnostics(rig):
    r = rig()
    r.send([0.0, 0.0])
    r.tick(3)
    keys = key_values(r.node.diagnostics().status[0])
    assert keys['supervisor state'] == 'learning'
    assert keys['supervisor rollback'] == '0'
    assert keys['supervisor last intervention'] == ''
    for key in ('supervisor error ratio estimate', 'supervisor oscillation ratio',
                'command lag-1 correlation (lowest joint)',
                'supervisor gain scale',
                'feedforward limited ticks', 'command saturated ticks',
                'input scale position'):
        assert key in keys
    # an intervention (as the core makes it when learning hurts) is logged and shown
    r.node.controller.supervisor._rollback('injected by the test')
    r.send([0.0, 0.0])
    r.tick()
    assert r.node._interventions_logged == 1
    status = r.node.diagnostics().status[0]
    keys = key_values(status)
    assert keys['supervisor state'] == 'frozen'
    assert keys['supervisor rollback'] == '1'
    assert keys['supervisor last intervention'].startswith('rollback: injected by the test')
    # the first trip only caps the learners' gain per step (see supervisor.py)
    assert float(keys['supervisor gain scale']) == pytest.approx(1.0)
    assert float(keys['supervisor fast learner gain scale']) == pytest.approx(1.0)
    assert 0.0 < float(keys['supervisor learning gain cap per step (0: none)']) < 1.0
    assert status.level == DiagnosticStatus.WARN and 'frozen' in status.message


def test_pd_loop_trouble_is_on_diagnostics_and_logged_once(rig):
    """A PD-only hold with the command at its limit: WARN, one log line per episode."""
    r = rig({'command_limit': [0.01, 0.01]})
    warnings = record_warnings(r.node)
    r.send([0.0, 0.0])
    r.tick()
    r.node.controller.supervisor._pd_only('injected by the test')
    for _ in range(5):
        r.send([0.5, -0.5])
        r.tick()
    for _ in range(3):
        status = r.node.diagnostics().status[0]
    assert status.level == DiagnosticStatus.WARN and 'feedforward zeroed' in status.message
    assert len([w for w in warnings if 'the PD loop itself' in w]) == 1, warnings
    assert float(key_values(status)['PD-only hold: ticks at the command limit']) == 1.0


def test_each_refusal_reason_is_logged_not_hidden_by_another(rig):
    """Throttled per reason: a NaN right after a short message is still logged, once."""
    r = rig()
    warnings = record_warnings(r.node)
    for _ in range(2):
        r.send([0.0])                                   # length_mismatch
        r.send([math.nan, 0.0])                         # non_finite
    reasons = [w.split('(')[1].split(')')[0] for w in warnings]
    assert reasons == ['length_mismatch', 'non_finite'], warnings
    assert r.node.rejected['length_mismatch'] == 2 and r.node.rejected['non_finite'] == 2


def test_a_failing_publish_is_counted_and_control_goes_on(rig):
    """A middleware refusal (RCLError, as Fast DDS gives under starvation) is no crash."""
    r = rig()
    r.send([0.0, 0.0])
    r.tick()

    class Refusing:
        topic_name = 'commands'

        def publish(self, msg):
            raise RCLError('cannot publish data')

    real, r.node._commands_pub = r.node._commands_pub, Refusing()
    r.send([0.0, 0.0])
    r.tick()
    r.node._commands_pub = real
    r.send([0.0, 0.0])
    r.tick()
    assert r.node.stats.callbacks == 3 and len(r.commands) == r.node.commands_published == 2
    assert key_values(r.node.diagnostics().status[0])['failed publishes'] == '1'


def test_plant_changes_on_diagnostics_and_the_plant_changed_service(rig):
    r = rig()
    r.send([0.0, 0.0])
    r.tick(3)
    keys = key_values(r.node.diagnostics().status[0])
    assert keys['plant changes detected or reported'] == '0'
    assert float(keys['change detector score']) == 0.0
    # a user who knows says so: the covariances restart, the weights stay,
    # it is logged once and counted, and it is not a problem (status OK)
    ctrl = r.node.controller
    ctrl.slow.w[:] = 0.25
    client = r.tester.create_client(Trigger, 'lnn_controller/plant_changed')
    assert client.wait_for_service(timeout_sec=5.0)
    future = client.call_async(Trigger.Request())
    r.wait(future.done, 'the plant_changed service')
    assert future.result().success
    np.testing.assert_array_equal(ctrl.slow.w, 0.25)
    r.send([0.0, 0.0])
    r.tick(2)
    assert r.node._detections_logged == 1
    assert 'reported on ~/plant_changed' in ctrl.change_detector.detections[0].reason
    status = r.node.diagnostics().status[0]
    keys = key_values(status)
    assert keys['plant changes detected or reported'] == '1'
    assert status.level == DiagnosticStatus.OK
    assert future.result().message == 'covariances restarted: re-learning'
    r.node.set_parameters([Parameter('learning_enabled', value=False)])
    future = client.call_async(Trigger.Request())       # learning off: it says when
    r.wait(future.done, 'the plant_changed service')
    assert future.result().message.endswith('once learning is on (~/set_learning)')


def test_prediction_published_stamped_with_the_time_it_predicts(rig):
    r = rig({'prediction.horizon_ticks': 3, 'prediction.long_horizon_s': 0.2})
    got, long = [], []
    r.tester.create_subscription(JointState, 'lnn_controller/prediction', got.append, RELIABLE)
    r.tester.create_subscription(JointState, 'lnn_controller/long_prediction', long.append,
                                 RELIABLE)
    r.wait(lambda: all(p.get_subscription_count() > 0 for _, p, *_ in r.node._predictions),
           'discovery')
    for k in range(6):
        r.send([0.1 * k, -0.05 * k], [0.3, -0.2])
        r.tick()
    r.wait(lambda: len(got) == 6 and len(long) == 6, 'six predictions of each horizon')
    ctrl = r.node.controller
    long_ticks = round(0.2 * 1e9 / PERIOD_NS)
    assert ctrl.forward.horizons == (3, long_ticks)
    for i, (ticks, received) in enumerate(((3, got), (long_ticks, long))):
        last = received[-1]
        assert list(last.name) == ['j1', 'j2']
        assert C.stamp_to_ns(last.header.stamp) == r.now_ns + ticks * PERIOD_NS
        np.testing.assert_array_equal(last.position, ctrl.forward.prediction(i)[0])
        np.testing.assert_array_equal(last.velocity, ctrl.forward.prediction(i)[1])
        assert [C.stamp_to_ns(m.header.stamp) for m in received] == [
            (k + 1 + ticks) * PERIOD_NS for k in range(6)]
    assert list(long[-1].position) != list(got[-1].position)    # another readout's
    keys = key_values(r.node.diagnostics().status[0])
    assert keys['prediction anomalies'] == '0'
    assert 'prediction error 3 ticks ahead (RMS, input-scale units)' in keys
    # a recorded anomaly is logged once and counted
    ctrl.forward.detector.record(ctrl.ticks, 'test')
    r.send([0.6, -0.3], [0.3, -0.2])
    r.tick()
    assert r.node._anomalies_logged == 1
    assert key_values(r.node.diagnostics().status[0])['prediction anomalies'] == '1'


def test_no_long_prediction_topic_without_a_long_horizon(rig):
    r = rig({'prediction.long_horizon_s': 0.0})
    topics = [p.topic_name for _, p, *_ in r.node._predictions]
    assert len(topics) == 1 and topics[0].endswith('/lnn_controller/prediction')
    assert r.node.controller.forward.memory is None


def test_controller_state_table_every_nth_tick(rig):
    r = rig({'controller_state_decimation': 2, 'kp': [10.0, 20.0], 'kd': [1.0, 2.0]})
    got = []
    r.tester.create_subscription(Float64MultiArray, 'lnn_controller/controller_state',
                                 got.append, RELIABLE)
    r.wait(lambda: r.node._state_pub.get_subscription_count() > 0, 'discovery')
    for k in range(3):
        r.send([0.1 * k, -0.05 * k], [0.3, -0.2])
        r.tick()
    r.wait(lambda: len(got) == 2, 'two state tables (ticks 1 and 3)')
    dims = got[-1].layout.dim
    assert [(d.label, d.size, d.stride) for d in dims] == [
        ('j1,j2', 2, 12), ('reference,feedback,error,pd_effort,feedforward,command', 6, 6)]
    table = np.array(got[-1].data).reshape(2, 6)
    q, q_d = np.array([0.2, -0.1]), r.node.desired.q
    np.testing.assert_array_equal(table[:, 0], q_d)
    np.testing.assert_array_equal(table[:, 1], q)
    np.testing.assert_allclose(table[:, 2], q_d - q)
    pd = np.array([10.0, 20.0]) * (q_d - q) + np.array([1.0, 2.0]) * (
        r.node.desired.qd - np.array([0.3, -0.2]))
    np.testing.assert_allclose(table[:, 3], pd, atol=1e-12)
    np.testing.assert_allclose(table[:, 3] + table[:, 4], table[:, 5], atol=1e-12)
    np.testing.assert_array_equal(table[:, 5], r.commands[-1])
    # decimation is live; out of range is refused with a reason; 0 stops the topic
    (result,) = r.node.set_parameters([Parameter('controller_state_decimation', value=-1)])
    assert not result.successful and 'controller_state_decimation' in result.reason
    (result,) = r.node.set_parameters([Parameter('controller_state_decimation', value=0)])
    assert result.successful
    r.send([0.3, -0.15], [0.3, -0.2])
    r.tick(3)
    r.spinner.wait(lambda: True, 'a last spin')
    assert len(got) == 2
    # lowered live, it counts from now, not from the old countdown
    for value in (1000, 1):
        (result,) = r.node.set_parameters([Parameter('controller_state_decimation',
                                                     value=value)])
        assert result.successful
        r.send([0.3, -0.15], [0.3, -0.2])
        r.tick()
    r.tick(4)
    r.wait(lambda: len(got) == 7, 'a table on each of the 5 ticks at decimation 1')


def test_good_supervisor_events_are_logged_as_info_and_trips_as_warnings(rig):
    """A step of gain given back (or a trial of more PD gain) is not a trip: it was a WARN."""
    r = rig({'prediction.enabled': False})
    warnings = record_warnings(r.node)
    sv = r.node.controller.supervisor
    for action in ('gain_restored', 'pd_restored', 'resume', 'rollback'):
        sv._record(action, f'injected {action}', episode=False)
    r.node._log_new_events()
    assert [w.split(':')[1].split()[0] for w in warnings] == ['rollback'], warnings

"""
MCAP recording of live topics, and reading the recording back without ROS.

Recording: lnn_control.tools.recorder; reading: lnn_control.mcap_io.
"""
import math

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from lnn_control import mcap_io
from lnn_control.ros.sim_node import SimNode
from lnn_control.tools.recorder import demo_topics, McapRecorder, message_definition
from mcap.reader import make_reader
from mcap_ros2._dynamic import generate_dynamic
import numpy as np
import pytest
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.serialization import serialize_message
from rigs import clock_remap, PERIOD_NS, Spinner, unique_namespace
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray, MultiArrayDimension

pytestmark = pytest.mark.ros

TYPES = [JointState, Float64MultiArray, DiagnosticArray, Clock]


def _samples():
    js = JointState(name=['a', 'b'], position=[0.5, -1.25], velocity=[1.0, 2.0], effort=[])
    js.header.stamp.sec, js.header.stamp.nanosec, js.header.frame_id = 3, 250, 'base'
    cmd = Float64MultiArray(data=[1.5, -2.0, math.pi])
    cmd.layout.dim = [MultiArrayDimension(label='joints', size=3, stride=3)]
    diag = DiagnosticArray(status=[DiagnosticStatus(
        level=DiagnosticStatus.WARN, name='x', message='m', hardware_id='h',
        values=[KeyValue(key='k', value='v')])])
    clock = Clock()
    clock.clock.sec, clock.clock.nanosec = 7, 9
    return [js, cmd, diag, clock]


def _same(decoded, msg):
    for field in msg.get_fields_and_field_types():
        a, b = getattr(decoded, field), getattr(msg, field)
        if hasattr(b, 'get_fields_and_field_types'):
            _same(a, b)
        elif isinstance(b, (list, tuple)) and b and hasattr(b[0], 'get_fields_and_field_types'):
            assert len(a) == len(b)
            for x, y in zip(a, b):
                _same(x, y)
        elif isinstance(b, bytes):                       # a 'byte' field
            assert (a == b[0]) if isinstance(a, int) else bytes(a) == b, field
        elif isinstance(b, (str, int, float)):
            assert a == b, field
        else:
            assert list(a) == list(b), field


@pytest.mark.parametrize('prefer_files', [True, False], ids=['msg-files', 'introspection'])
def test_definitions_decode_rclpy_serialisation(prefer_files):
    for msg in _samples():
        name = f'{type(msg).__module__.split(".")[0]}/msg/{type(msg).__name__}'
        text = message_definition(type(msg), prefer_files=prefer_files)
        decoder = generate_dynamic(name, text)[name]
        _same(decoder(serialize_message(msg)), msg)


def test_definition_is_rosbag2_complete_format():
    text = message_definition(JointState)
    parts = text.split('=' * 80 + '\n')
    assert 'string[] name' in parts[0] and 'std_msgs/Header header' in parts[0]
    headers = [p.splitlines()[0] for p in parts[1:]]
    assert headers == ['MSG: std_msgs/msg/Header', 'MSG: builtin_interfaces/msg/Time']
    diag = message_definition(DiagnosticArray)
    assert 'MSG: diagnostic_msgs/msg/DiagnosticStatus' in diag
    assert 'MSG: diagnostic_msgs/msg/KeyValue' in diag
    assert diag.count('MSG: builtin_interfaces/msg/Time') == 1


def test_short_lockstep_run_is_recorded_and_read_back(context, tmp_path):
    ns = unique_namespace()
    cli = clock_remap(ns)
    path = str(tmp_path / 'run.mcap')
    rec_node = rclpy.create_node('recorder', namespace=ns, context=context, cli_args=cli)
    topics = [('joint_states', JointState), ('commands', Float64MultiArray),
              ('/clock', Clock), ('/diagnostics', DiagnosticArray)]
    recorder = McapRecorder(rec_node, path, topics, metadata={'plant': 'pendulum'})
    sim = SimNode(context=context, namespace=ns, cli_args=cli, idle_period_s=0.02)
    probe = rclpy.create_node('probe', namespace=ns, context=context)
    pub = probe.create_publisher(Float64MultiArray, 'commands',
                                 QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    spinner = Spinner(context, rec_node, sim, probe)
    n = 25
    sent = [3.0 * math.sin(0.2 * k) for k in range(n)]
    try:
        clock_topic = f'{ns}/clock'
        # the recorder hears the simulator and the probe before anything counts
        spinner.wait(lambda: recorder.counts[f'{ns}/joint_states'] >= 1
                     and recorder.counts[clock_topic] >= 1
                     and pub.get_subscription_count() >= 2, 'discovery', timeout=5.0)
        matched = recorder.publisher_counts()
        assert matched[f'{ns}/commands'] == 1 and matched[f'{ns}/joint_states'] == 1
        for k, u in enumerate(sent):
            target = sim.time_ns + PERIOD_NS if sim.started else None
            pub.publish(Float64MultiArray(data=[u]))
            if target is None:
                spinner.wait(lambda: sim.started, 'the start', timeout=5.0)
            else:
                spinner.wait(lambda: sim.time_ns >= target, 'the step', timeout=5.0)
        spinner.wait(lambda: recorder.counts[f'{ns}/commands'] == n, 'the commands',
                     timeout=5.0)
        final_q = sim.plant.position()[0]
        assert sim.steps - sim.idle_steps == n        # every command: one period
        t_start = sim.time_ns - n * PERIOD_NS         # the time the first command was applied at
        sim.publish_diagnostics()
        spinner.wait(lambda: recorder.counts['/diagnostics'] >= 1, 'the diagnostics',
                     timeout=5.0)
        spinner.spin_once(timeout_sec=0.05)
    finally:
        recorder.close()
        recorder.close()                                   # idempotent
        spinner.close()

    counts = mcap_io.message_counts(path)
    assert counts[f'{ns}/commands'] == n
    assert counts == recorder.counts
    assert mcap_io.topic_types(path) == {
        f'{ns}/joint_states': 'sensor_msgs/msg/JointState',
        f'{ns}/commands': 'std_msgs/msg/Float64MultiArray',
        f'{ns}/clock': 'rosgraph_msgs/msg/Clock',
        '/diagnostics': 'diagnostic_msgs/msg/DiagnosticArray'}

    data = mcap_io.read(path)
    assert set(data) == set(counts)
    cmd = mcap_io.float64_arrays(data[f'{ns}/commands'])
    assert cmd['data'][:, 0].tolist() == sent
    js = mcap_io.joint_states(data[f'{ns}/joint_states'], joints=['joint1'])
    after = js['t'] > t_start * 1e-9
    # after the start every command produced exactly one state, one period apart
    assert after.sum() == n
    assert np.allclose(np.diff(js['t'][after]), PERIOD_NS * 1e-9)
    assert js['position'][-1, 0] == final_q
    assert js['effort'][after, 0].tolist() == pytest.approx(sent)
    clocks = mcap_io.clock_times(data[f'{ns}/clock'])
    assert (clocks > t_start * 1e-9).sum() == n
    assert np.all(np.diff(clocks) > 0)
    diags = mcap_io.diagnostics_values(data['/diagnostics'], 'lnn_sim')
    assert diags and diags[-1][2]['commands accepted'] == str(n)

    with open(path, 'rb') as f:
        reader = make_reader(f, validate_crcs=True)
        header = reader.get_header()
        summary = reader.get_summary()
        assert header.profile == 'ros2'
        assert {s.encoding for s in summary.schemas.values()} == {'ros2msg'}
        assert {c.message_encoding for c in summary.channels.values()} == {'cdr'}
        assert [(m.name, m.metadata) for m in reader.iter_metadata()] == [
            ('lnn_control', {'plant': 'pendulum'})]
    with open(path, 'rb') as f:
        reader = mcap_io._reader(f)
        for _schema, channel, message, decoded in reader.iter_decoded_messages():
            if channel.topic == f'{ns}/joint_states':    # publish time = header stamp (if set)
                t = mcap_io.stamp_ns(decoded.header.stamp)
                assert message.publish_time == (t or message.log_time)
            if channel.topic == f'{ns}/commands':        # no header: the receive time
                assert message.publish_time == message.log_time


def test_demo_topics_are_absolute_typed_and_match_their_publishers_qos():
    topics = {t: (msg_type, qos) for t, msg_type, qos in demo_topics()}
    assert set(topics) == {'/joint_states', '/commands', '/lnn_controller/reference',
                           '/diagnostics', '/clock'}
    assert topics['/joint_states'][0] is JointState and topics['/clock'][0] is Clock
    for topic, (_, qos) in topics.items():     # reliable publishers; reference: unknown
        expected = (ReliabilityPolicy.BEST_EFFORT if topic.endswith('/reference')
                    else ReliabilityPolicy.RELIABLE)
        assert qos.reliability == expected


def test_empty_recording_and_close_stops_recording(context, tmp_path):
    node = rclpy.create_node('recorder', namespace=unique_namespace(), context=context)
    topic = node.get_namespace() + '/x'
    path = str(tmp_path / 'empty.mcap')
    try:
        with McapRecorder(node, path, [('x', JointState)]) as recorder:
            assert recorder.counts == {topic: 0}
            assert [s.topic_name for s in node.subscriptions] == [topic]
        assert list(node.subscriptions) == []
    finally:
        node.destroy_node()
    assert mcap_io.message_counts(path) == {topic: 0}
    assert mcap_io.read(path) == {topic: []}


def test_a_recording_killed_mid_way_keeps_all_but_its_last_chunk(context, tmp_path):
    """30 s at 100 Hz sat in a 1 MiB chunk in memory (only the header on disk), unreadable."""
    node = rclpy.create_node('recorder', namespace=unique_namespace(), context=context)
    topic = node.get_namespace() + '/joint_states'
    path = tmp_path / 'run.mcap'
    recorder = McapRecorder(node, str(path), [('joint_states', JointState)],
                            metadata={'plant': 'pendulum'})
    try:
        for k in range(3000):
            msg = JointState(name=['j'], position=[0.001 * k], velocity=[0.0])
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(k * 10**7, 10**9)
            recorder._subscriptions[0].callback(serialize_message(msg))
        cut = tmp_path / 'killed.mcap'               # what a kill -9 now leaves on disk
        cut.write_bytes(path.read_bytes())
    finally:
        recorder.close()
        node.destroy_node()
    counts = mcap_io.message_counts(str(cut))
    assert 3000 - counts[topic] < 1000, counts       # all but the last 64 KiB chunk
    got = mcap_io.read(str(cut))[topic]
    assert len(got) == counts[topic]
    assert [m.position[0] for _, m in got] == [0.001 * k for k in range(len(got))]
    assert mcap_io.metadata(str(cut)) == {'plant': 'pendulum'}
    assert mcap_io.topic_types(str(cut)) == {topic: 'sensor_msgs/msg/JointState'}
    assert mcap_io.message_counts(str(path)) == {topic: 3000}       # closed: all


def test_predictions_are_matched_to_the_tick_that_made_them_with_the_stored_horizon():
    """
    In real time the recorder can match ~/prediction later than ~/desired.

    The first recorded prediction then was not made at the first recorded tick; with the
    horizon stored in the recording each prediction still lands on the tick that made it.
    """
    from builtin_interfaces.msg import Time
    from lnn_control import recording

    period = 10_000_000
    ticks = np.arange(100, 150) * period                  # desired recorded from tick 100
    messages = []
    for k in range(120, 150):                             # predictions only from tick 120
        stamp = (k + 1) * period                          # one tick ahead
        msg = JointState(name=['a'], position=[float(k)], velocity=[0.0])
        msg.header.stamp = Time(sec=stamp // 10**9, nanosec=stamp % 10**9)
        messages.append((stamp, msg))
    out, horizon = recording._predictions(messages, ['a'], ticks, horizon=1)
    assert horizon == 1
    made = out[:, 0, 0]
    assert np.isnan(made[:20]).all()                      # ticks 100-119 predicted nothing
    np.testing.assert_array_equal(made[20:], np.arange(120, 150))
    _, guessed = recording._predictions(messages, ['a'], ticks)   # old recordings: inferred
    assert guessed == 21                                  # what the inference got wrong


def test_the_ros_summary_gives_each_intervention_its_reason_from_diagnostics():
    """
    The node's 1 Hz /diagnostics carry the last intervention's reason beside the counts.

    The summary of a ROS run then says why, as the offline one does; of several in one
    second only the last has its reason, the others say where they were counted.
    """
    from builtin_interfaces.msg import Time
    from lnn_control import recording

    def status(sec, rollbacks, pd_only, last):
        values = {'supervisor state': 'frozen', 'supervisor gain scale': '1.0',
                  'supervisor rollback': str(rollbacks), 'supervisor pd_only': str(pd_only),
                  'supervisor last intervention': last}
        msg = DiagnosticArray(status=[DiagnosticStatus(
            name='lnn', hardware_id='arm', values=[KeyValue(key=k, value=v)
                                                   for k, v in values.items()])])
        msg.header.stamp = Time(sec=sec)
        return (sec * 10**9, msg)

    messages = [status(1, 0, 0, ''),
                status(2, 1, 0, 'rollback: estimated error ratio to PD 1.4 > trip_ratio 1.1'),
                status(3, 1, 0, 'rollback: estimated error ratio to PD 1.4 > trip_ratio 1.1'),
                status(4, 2, 1, 'pd_only: still harmful: feedforward zeroed (PD only) for 2 s')]
    meta = recording._supervisor_from_diagnostics(messages, 'arm', 0)
    assert meta['interventions'] == [
        (2.0, 'rollback', 'estimated error ratio to PD 1.4 > trip_ratio 1.1'),
        (4.0, 'pd_only', 'still harmful: feedforward zeroed (PD only) for 2 s'),
        (4.0, 'rollback', 'reported on /diagnostics')]

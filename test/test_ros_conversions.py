"""JointState / Float64MultiArray conversions (lnn_control.ros.conversions)."""
import array
import math

from lnn_control.ros import conversions as C
import numpy as np
import pytest

# ROS messages (sensor_msgs, std_msgs), no node.
pytestmark = pytest.mark.ros

JOINTS = ('j1', 'j2', 'j3')


def read(reader, msg):
    q, qd = np.full(reader.n, -7.0), np.full(reader.n, -7.0)
    reason = reader.read(msg, q, qd)
    return reason, q, qd


def test_matches_by_name_in_any_order_ignoring_extra_joints():
    reader = C.JointStateReader(JOINTS)
    msg = C.joint_state(['extra', 'j3', 'j1', 'j2'], [9.0, 3.0, 1.0, 2.0],
                        [90.0, 30.0, 10.0, 20.0])
    reason, q, qd = read(reader, msg)
    assert reason is None
    assert q.tolist() == [1.0, 2.0, 3.0]
    assert qd.tolist() == [10.0, 20.0, 30.0]
    # a different order from the same reader (the cached index map is rebuilt)
    msg = C.joint_state(['j2', 'j1', 'j3'], [2.5, 1.5, 3.5], [0.0, 0.0, 0.0])
    reason, q, _ = read(reader, msg)
    assert reason is None and q.tolist() == [1.5, 2.5, 3.5]


def test_extra_joints_values_are_not_inspected():
    reader = C.JointStateReader(('a',))
    msg = C.joint_state(['a', 'other'], [1.0, math.nan], [0.0, math.inf])
    assert read(reader, msg)[0] is None


def test_an_extra_joint_listed_twice_does_not_refuse_ours():
    """['j1', 'j2', 'finger', 'finger'] was refused whole as malformed."""
    reader = C.JointStateReader(('j1', 'j2'))
    msg = C.joint_state(['j1', 'finger', 'j2', 'finger'], [1.0, 5.0, 2.0, 6.0], [0.0] * 4)
    reason, q, _ = read(reader, msg)
    assert reason is None and q.tolist() == [1.0, 2.0]


@pytest.mark.parametrize('names, position, velocity, effort, reason', [
    (['j1', 'j2', 'j3'], [0.0, math.nan, 0.0], [0.0] * 3, [], C.NON_FINITE),
    (['j1', 'j2', 'j3'], [0.0] * 3, [0.0, 0.0, -math.inf], [], C.NON_FINITE),
    (['j1', 'j2'], [0.0] * 2, [0.0] * 2, [], C.MISSING_JOINT),
    ([], [], [], [], C.MISSING_JOINT),
    (['j1', 'j2', 'j3'], [0.0] * 2, [0.0] * 3, [], C.LENGTH_MISMATCH),
    (['j1', 'j2', 'j3'], [0.0] * 3, [0.0] * 4, [], C.LENGTH_MISMATCH),
    (['j1', 'j2', 'j3'], [0.0] * 3, [0.0] * 3, [0.0], C.LENGTH_MISMATCH),
    (['j1', 'j2', 'j3'], [0.0] * 3, [], [], C.LENGTH_MISMATCH),   # velocity required
    (['j1', 'j2', 'j3', 'j1'], [0.0] * 4, [0.0] * 4, [], C.MALFORMED),
])
def test_rejections_leave_outputs_untouched(names, position, velocity, effort, reason):
    reader = C.JointStateReader(JOINTS)
    got, q, qd = read(reader, C.joint_state(names, position, velocity, effort))
    assert got == reason
    assert reason in C.REASONS
    assert (q == -7.0).all() and (qd == -7.0).all()


def test_plausibility_limits_refuse_per_joint_and_leave_outputs_untouched():
    reader = C.JointStateReader(JOINTS)
    huge = C.joint_state(list(JOINTS), [1e300, 0.0, 0.0], [0.0] * 3)
    assert read(reader, huge)[0] is None                 # no limits until they are set
    reader.set_limits([1.0, 2.0, 3.0], [10.0, 10.0, 10.0])
    for position, velocity in (([1.5, 0.0, 0.0], [0.0] * 3), ([0.0, 0.0, -3.1], [0.0] * 3),
                               ([0.0] * 3, [0.0, 11.0, 0.0]), ([1e300, 0.0, 0.0], [0.0] * 3)):
        got, q, qd = read(reader, C.joint_state(list(JOINTS), position, velocity))
        assert got == C.IMPLAUSIBLE and (q == -7.0).all() and (qd == -7.0).all()
    reason, q, _ = read(reader, C.joint_state(list(JOINTS), [-1.0, 2.0, 3.0], [10.0] * 3))
    assert reason is None and q.tolist() == [-1.0, 2.0, 3.0]   # the limits themselves pass
    assert C.IMPLAUSIBLE in C.REASONS


def test_stamp_going_backwards_is_refused_but_unstamped_is_accepted():
    reader = C.JointStateReader(('a',))
    ok = C.joint_state(['a'], [1.0], [0.0], stamp_ns=2_000_000_000)
    assert read(reader, ok)[0] is None
    assert read(reader, C.joint_state(['a'], [1.0], [0.0], stamp_ns=2_000_000_000))[0] is None
    old = C.joint_state(['a'], [5.0], [0.0], stamp_ns=1_999_999_999)
    assert read(reader, old)[0] == C.STAMP_BACKWARDS
    assert reader.last_stamp_ns == 2_000_000_000
    assert read(reader, C.joint_state(['a'], [5.0], [0.0]))[0] is None   # stamp 0: unchecked
    reader.reset()
    assert read(reader, old)[0] is None


def test_stamps_that_went_back_and_run_on_consistently_become_the_new_time_base():
    """
    Follow RESYNC_MESSAGES in a row that went back but run forward among themselves.

    One message stamped ahead, or a publisher whose clock stepped back, must not stop
    control until the stamps catch up. A lone late message, or two interleaved time
    bases, are not followed.
    """
    second = 1_000_000_000
    reader = C.JointStateReader(['a'])
    assert read(reader, C.joint_state(['a'], [0.0], [0.0], stamp_ns=10 * second))[0] is None
    assert read(reader, C.joint_state(['a'], [0.0], [0.0], stamp_ns=60 * second))[0] is None
    steady = [C.joint_state(['a'], [0.1 * k], [0.0], stamp_ns=(11 + k) * second)
              for k in range(C.RESYNC_MESSAGES + 1)]
    reasons = [read(reader, m)[0] for m in steady]
    assert reasons == [C.STAMP_BACKWARDS] * (C.RESYNC_MESSAGES - 1) + [None, None]
    assert reader.resyncs == 1
    assert reader.resync_ns == (60 - 10 - C.RESYNC_MESSAGES) * second
    assert reader.last_stamp_ns == (11 + C.RESYNC_MESSAGES) * second
    # a lone late message between current ones: refused every time, never followed
    for k in range(3 * C.RESYNC_MESSAGES):
        now = (20 + k) * second
        assert read(reader, C.joint_state(['a'], [0.0], [0.0], stamp_ns=now))[0] is None
        late = C.joint_state(['a'], [0.0], [0.0], stamp_ns=now - second // 2)
        assert read(reader, late)[0] == C.STAMP_BACKWARDS
    # an older stream interleaved with the current one is never followed either
    for k in range(3 * C.RESYNC_MESSAGES):
        now = (40 + k) * second
        assert read(reader, C.joint_state(['a'], [0.0], [0.0], stamp_ns=now))[0] is None
        assert read(reader, C.joint_state(['a'], [0.0], [0.0], stamp_ns=(k + 1) * second))[0] \
            == C.STAMP_BACKWARDS
    assert reader.resyncs == 1
    stuck = C.joint_state(['a'], [0.3], [0.0], stamp_ns=second)    # one old message, repeated
    assert all(read(reader, stuck)[0] == C.STAMP_BACKWARDS for _ in range(3 * C.RESYNC_MESSAGES))


def test_a_refused_message_does_not_poison_the_cache():
    reader = C.JointStateReader(('a', 'b'))
    assert read(reader, C.joint_state(['a'], [1.0], [0.0]))[0] == C.MISSING_JOINT
    assert read(reader, C.joint_state(['b', 'a'], [2.0, 1.0], [0.0, 0.0]))[1].tolist() == [1, 2]


def test_a_message_missing_a_joint_leaves_the_cached_name_order_intact():
    """One of our joints found before the missing one must not rewrite the cached index."""
    reader = C.JointStateReader(('j1', 'j2'))
    usual = C.joint_state(['j1', 'j2'], [0.1, -0.2], [0.0, 0.0])
    assert read(reader, usual)[1].tolist() == [0.1, -0.2]
    assert read(reader, C.joint_state(['x', 'j1'], [5.0, 0.3], [0.0, 0.0]))[0] == C.MISSING_JOINT
    assert read(reader, usual)[1].tolist() == [0.1, -0.2]
    bad = C.joint_state(['j1', 'j2'], [math.nan, -0.2], [0.0, 0.0])
    assert read(reader, bad)[0] == C.NON_FINITE


def test_another_drivers_joint_states_are_ignored_not_refused():
    """A gripper's joint_states on the shared topic: not ours, not judged, not counted."""
    strict, lenient = C.JointStateReader(('j1', 'j2')), C.JointStateReader(
        ('j1', 'j2'), ignore_foreign=True)
    gripper = C.joint_state(['finger_l', 'finger_r'], [0.01, 0.01], [0.0, 0.0])
    broken_gripper = C.joint_state(['finger_l', 'finger_r'], [0.01], [])   # lengths wrong
    arm = C.joint_state(['j2', 'j1'], [0.2, 0.1], [0.0, 0.0])
    partial = C.joint_state(['j1', 'finger_l'], [0.1, 0.0], [0.0, 0.0])
    assert read(strict, gripper)[0] == C.MISSING_JOINT
    for _ in range(2):                      # the arm's and the gripper's messages alternate
        reason, q, _ = read(lenient, gripper)
        assert reason == C.NOT_OURS and reason not in C.REASONS and (q == -7.0).all()
        assert read(lenient, broken_gripper)[0] == C.NOT_OURS
        assert read(lenient, arm)[1].tolist() == [0.1, 0.2]
    assert read(lenient, partial)[0] == C.MISSING_JOINT    # one of ours missing: refused


def merged_read(merged, names, q, qd=None, stamp=0, now=0):
    out_q, out_qd = np.full(merged.n, -7.0), np.full(merged.n, -7.0)
    msg = C.joint_state(names, q, [0.0] * len(q) if qd is None else qd, stamp_ns=stamp)
    return merged.read(msg, out_q, out_qd, now), out_q, out_qd


def test_split_publishers_are_merged_each_with_its_own_stamp_order():
    """An arm driver and a wrist driver on one topic, the wrist a tick behind."""
    merged = C.MergedJointStates(JOINTS)
    reason, q, _ = merged_read(merged, ['j2', 'j1'], [2.0, 1.0], stamp=200, now=210)
    assert reason is None and (q == -7.0).all()          # j3 not heard: outputs untouched
    assert not merged.complete and merged.missing() == ['j3']
    reason, q, qd = merged_read(merged, ['j3'], [3.0], [30.0], stamp=190, now=215)
    assert reason is None and merged.complete              # not "stamped backwards"
    assert q.tolist() == [1.0, 2.0, 3.0] and qd.tolist() == [0.0, 0.0, 30.0]
    assert merged.stamp_ns == 190 and merged.fresh_ns == 210 and merged.sources == 2
    assert merged_read(merged, ['j3'], [3.5], stamp=180, now=220)[0] == C.STAMP_BACKWARDS
    assert merged_read(merged, ['j3'], [3.5], stamp=200, now=220)[1].tolist() == [1, 2, 3.5]
    assert merged.stamp_ns == 200 and merged.fresh_ns == 210
    merged.reset()
    assert not merged.complete and merged.missing() == list(JOINTS) and merged.sources == 0


def test_merged_joints_keep_the_newer_of_two_publishers_values():
    merged = C.MergedJointStates(('a', 'b'))
    merged_read(merged, ['a', 'b'], [1.0, 2.0], stamp=300)
    reason, q, _ = merged_read(merged, ['b'], [9.0], stamp=250)   # older: b kept
    assert reason is None and q.tolist() == [1.0, 2.0]
    assert merged_read(merged, ['b'], [9.0], stamp=310)[1].tolist() == [1.0, 9.0]


def test_merged_refusals_and_foreign_messages_change_nothing():
    merged = C.MergedJointStates(('a', 'b'))
    merged.set_limits([1.0, 1.0], [10.0, 10.0])
    merged_read(merged, ['a', 'b'], [0.1, 0.2], stamp=100)
    assert merged_read(merged, ['b'], [5.0], stamp=110)[0] == C.IMPLAUSIBLE   # limits: b's
    assert merged_read(merged, ['b'], [math.nan], stamp=110)[0] == C.NON_FINITE
    assert merged_read(merged, ['finger'], [0.0], stamp=110)[0] == C.NOT_OURS
    assert merged_read(merged, ['a', 'a'], [0.0, 0.0], stamp=110)[0] == C.MALFORMED
    reason, q, _ = merged_read(merged, ['b'], [0.3], stamp=110)
    assert reason is None and q.tolist() == [0.1, 0.3] and merged.stamp_ns == 100
    assert merged.has_velocity
    merged_read(merged, ['a'], [0.1], qd=[], stamp=120)    # a's driver: no velocity
    assert not merged.has_velocity


def test_merged_sources_are_bounded():
    joints = [f'j{i}' for i in range(6)]
    merged = C.MergedJointStates(joints)
    for k in range(1, 2 ** 6):                  # every subset of six joints, 63 sources
        names = [j for i, j in enumerate(joints) if k >> i & 1]
        assert merged_read(merged, names, [0.0] * len(names))[0] is None
    assert merged.sources == C.MAX_SOURCES and merged.complete


def test_velocity_from_positions_never_divides_two_clocks_or_a_burst():
    """
    Steady 2 rad/s at 100 Hz, then what a real topic does to it.

    A repeated stamp; a message queued and delivered 50 us after the previous; a switch
    from stamps to arrival times; time going backwards.
    """
    v = C.VelocityFromPositions(1)

    def take(q, t_ns, stamped=True):
        out = v.estimate(np.array([q]), t_ns, stamped)[0]
        v.commit(np.array([q]))
        return out

    period = 10_000_000
    assert take(0.0, period) == 0.0                        # nothing to difference yet
    for k in range(2, 6):
        assert take(0.02 * (k - 1), k * period) == pytest.approx(2.0)
    assert take(0.08, 5 * period) == pytest.approx(2.0)     # a repeat: the estimate stands
    burst = take(0.0801, 5 * period + 50_000)               # 0.1 mrad in 50 us
    assert burst == pytest.approx(0.0001 / 0.005)           # dt at least half the interval
    assert take(0.5, 123, stamped=False) == 0.0             # another clock: start over
    assert take(0.52, 123 + period, stamped=False) == pytest.approx(2.0)
    assert take(0.6, 50, stamped=False) == 0.0              # backwards: start over
    v.reset()
    assert take(0.7, 10 * period) == 0.0


def test_velocity_from_positions_survives_a_start_up_burst_a_silence_and_a_slow_clock():
    """
    1 rad/s, 100 Hz messages, control period 10 ms (the first guess of the interval).

    Five messages queued before the node spun, delivered 20 us apart, divided by 20 us read
    500 rad/s; after a driver's 5 s silence the interval average said 0.5 s and the next
    differences divided by 0.25 s; ten messages timed by one slow clock value each kept
    the last position, so the next difference spanned 10x the time of its motion.
    """
    v = C.VelocityFromPositions(1, interval_s=0.01)

    def take(q, t_ns, stamped=False):
        out = v.estimate(np.array([q]), t_ns, stamped)[0]
        v.commit(np.array([q]))
        return out

    burst = [take(0.01 * k, 10**9 + 20_000 * k) for k in range(5)]
    assert max(burst) < 3.0                    # dq over a few ms, not over 20 us (500)
    take(0.1, 2 * 10**9)
    for k in range(1, 100):                                # steady: 1 rad/s
        assert take(0.1 + 0.01 * k, 2 * 10**9 + 10**7 * k) == pytest.approx(1.0)
    silent_until = 8 * 10**9
    take(2.0, silent_until)                                # (the mean over the silence)
    after = [take(2.0 + 0.01 * k, silent_until + 10**7 * k) for k in range(1, 20)]
    assert after == pytest.approx([1.0] * 19)
    v = C.VelocityFromPositions(1, interval_s=0.001)
    for k in range(60):                                    # 1 kHz samples, 100 Hz clock
        qd = take(0.001 * k, (k // 10) * 10**7, stamped=True)
    assert qd == pytest.approx(1.0)


def test_merged_one_driver_per_joint_beyond_sixteen_joints():
    """Each joint's own driver is a source: 20 of them must all be kept (velocity too)."""
    joints = [f'j{i}' for i in range(20)]
    merged = C.MergedJointStates(joints, interval_s=0.01)
    for k in range(5):
        for j in joints:
            reason, q, qd = merged_read(merged, [j], [0.01 * k], [], stamp=10**7 * (k + 1))
            assert reason is None
    assert merged.sources == 20 and qd.tolist() == pytest.approx([1.0] * 20)


def test_nan_velocity_of_a_position_only_joint_is_differenced():
    """
    joint_state_broadcaster publishes NaN for a joint without a velocity interface.

    The controller's joint_states difference that joint's position then (control used
    never to start), and only that joint's: the others' measured velocities are kept
    (b's 0.5 rad/s read 2.0, its position difference, while a had no velocity). An
    infinite velocity is still refused, also beside a NaN, and so is NaN on a reference.
    """
    merged = C.MergedJointStates(('a', 'b'), interval_s=0.01)
    for k in range(3):
        reason, _, qd = merged_read(merged, ['a', 'b'], [0.01 * k, 0.02 * k],
                                    [math.nan, 0.5], stamp=10**7 * (k + 1))
        assert reason is None
    assert qd.tolist() == pytest.approx([1.0, 0.5]) and not merged.has_velocity
    assert merged.differenced() == ['a']
    assert merged_read(merged, ['a', 'b'], [0.03, 0.06], [0.7, 0.5],
                       stamp=4 * 10**7)[2].tolist() == [0.7, 0.5]
    assert merged.has_velocity and merged.differenced() == []
    for velocity in ([math.inf, 0.0], [math.nan, math.inf]):
        assert merged_read(merged, ['a', 'b'], [0.0, 0.0], velocity,
                           stamp=10**8)[0] == C.NON_FINITE
    reference = C.JointStateReader(('a',), require_velocity=False)
    assert read(reference, C.joint_state(['a'], [0.1], [math.nan]))[0] == C.NON_FINITE


def test_a_stamp_far_ahead_of_the_clock_is_refused_and_does_not_block_the_next():
    """Accepted, one future stamp would make every correct stamp after it 'backwards'."""
    reader = C.JointStateReader(('a',))
    now = 5_000_000_000

    def at(stamp_ns, now_ns=now):
        q, qd = np.zeros(1), np.zeros(1)
        return reader.read(C.joint_state(['a'], [1.0], [0.0], stamp_ns=stamp_ns), q, qd, now_ns)

    assert at(now + C.FUTURE_TOLERANCE_NS + 1) == C.STAMP_IN_FUTURE
    assert at(now + 10_000_000) is None          # a lock-step simulator's tick ahead
    assert at(now + 20_000_000) is None and reader.last_stamp_ns == now + 20_000_000
    assert at(2**62, now_ns=0) is None           # no clock yet (sim time before /clock)
    msg = C.joint_state(['a'], [1.0], [0.0], stamp_ns=now)
    msg.header.stamp.nanosec = 4_000_000_000     # not normalised
    assert reader.read(msg, np.zeros(1), np.zeros(1), now) == C.MALFORMED
    assert C.STAMP_IN_FUTURE in C.REASONS


def test_a_wrapped_continuous_joint_is_differenced_the_short_way_round():
    """A wheel reported in [-pi, pi) without velocity read -627 rad/s at every wrap."""
    merged = C.MergedJointStates(['wheel', 'arm'], differentiate=True, interval_s=0.01,
                                 continuous=np.array([True, False]))
    q, qd = np.zeros(2), np.zeros(2)
    t0 = 10_000_000_000
    for k, a in enumerate(math.pi + 0.01 * np.arange(-3, 4)):       # +1 rad/s through pi
        wrapped = (a + math.pi) % (2 * math.pi) - math.pi
        stamp = t0 + k * 10_000_000
        assert merged.read(C.joint_state(['wheel', 'arm'], [wrapped, 0.01 * k],
                                         stamp_ns=stamp), q, qd, now_ns=stamp) is None
        if k:
            np.testing.assert_allclose(qd, [1.0, 1.0], atol=1e-6)
    plain = C.MergedJointStates(['wheel'], differentiate=True, interval_s=0.01)
    plain.read(C.joint_state(['wheel'], [3.14], stamp_ns=t0), q[:1], qd[:1], now_ns=t0)
    plain.read(C.joint_state(['wheel'], [-3.14], stamp_ns=t0 + 10_000_000), q[:1], qd[:1],
               now_ns=t0 + 10_000_000)
    assert qd[0] < -600.0                    # not continuous: the difference as it is


def test_a_velocity_missing_now_and_then_is_differenced_from_the_message_before():
    """It was differenced from the last message without one (0.5 s back: 0.0 for -6.28)."""
    merged = C.MergedJointStates(['j'], differentiate=True, interval_s=0.01)
    q, qd = np.zeros(1), np.zeros(1)
    t0 = 10_000_000_000
    for k in range(101):                     # q = sin(2 pi t) at 100 Hz
        t = 0.01 * k
        velocity = math.nan if k in (0, 50, 75) else 2 * math.pi * math.cos(2 * math.pi * t)
        stamp = t0 + k * 10_000_000
        assert merged.read(C.joint_state(['j'], [math.sin(2 * math.pi * t)], [velocity],
                                         stamp_ns=stamp), q, qd, now_ns=stamp) is None
        if k in (50, 75):
            difference = (math.sin(2 * math.pi * t) - math.sin(2 * math.pi * (t - 0.01))) / 0.01
            assert qd[0] == pytest.approx(difference, abs=1e-9)


def test_velocity_optional_when_not_required():
    reader = C.JointStateReader(('a', 'b'), require_velocity=False)
    reason, q, qd = read(reader, C.joint_state(['b', 'a'], [2.0, 1.0]))
    assert reason is None and q.tolist() == [1.0, 2.0] and qd.tolist() == [0.0, 0.0]
    assert not reader.has_velocity


def test_reference_messages_position_velocity_and_filtered_acceleration():
    ref = C.ReferenceFromMessages(('a',), acceleration_time_constant_s=0.0)
    assert not ref.received
    assert ref.update(C.joint_state(['a'], [1.0], [0.0], stamp_ns=10**9), 0) is None
    assert ref.received and ref.q.tolist() == [1.0] and ref.qdd.tolist() == [0.0]
    # velocity 0 -> 0.5 in 0.1 s: with no filtering the acceleration is 5
    assert ref.update(C.joint_state(['a'], [1.0], [0.5], stamp_ns=int(1.1e9)), 0) is None
    assert ref.qd.tolist() == [0.5]
    assert ref.qdd[0] == pytest.approx(5.0)
    # position only: velocity and acceleration are zero (a set point)
    assert ref.update(C.joint_state(['a'], [2.0], stamp_ns=int(1.2e9)), 0) is None
    assert ref.qd.tolist() == [0.0] and ref.qdd.tolist() == [0.0]
    # refused message: nothing changes
    assert ref.update(C.joint_state(['a'], [math.nan]), 0) == C.NON_FINITE
    assert ref.q.tolist() == [2.0]


def test_reference_acceleration_is_low_pass_filtered_using_arrival_time():
    ref = C.ReferenceFromMessages(('a',), acceleration_time_constant_s=0.1)
    ref.update(C.joint_state(['a'], [0.0], [0.0]), arrival_ns=0)
    ref.update(C.joint_state(['a'], [0.0], [0.1]), arrival_ns=100_000_000)
    # raw 1.0 rad/s^2, alpha = dt / (tau + dt) = 0.5
    assert ref.qdd[0] == pytest.approx(0.5)


def test_a_streamed_reference_is_carried_on_by_its_velocity_and_acceleration():
    """Sent every 50 ms, q = t^2 is sampled between messages as q + qd e + qdd e^2 / 2."""
    ref = C.ReferenceFromMessages(('a',), acceleration_time_constant_s=0.0)
    q, qd, qdd = np.zeros(1), np.zeros(1), np.zeros(1)
    for k in range(1, 4):
        t = 0.05 * k
        ref.update(C.joint_state(['a'], [t * t], [2 * t]), arrival_ns=int(round(t * 1e9)))
    ref.sample(int(0.18e9), q, qd, qdd)       # 30 ms after the last message
    assert qdd[0] == pytest.approx(2.0)
    assert q[0] == pytest.approx(0.18 ** 2) and qd[0] == pytest.approx(0.36)
    ref.sample(int(1e9), q, qd, qdd)          # late: at most two intervals on
    assert q[0] == pytest.approx(0.25 ** 2) and qd[0] == pytest.approx(0.5)
    ref.sample(int(0.1e9), q, qd, qdd)        # a tick before the message: as it came
    assert q[0] == pytest.approx(0.15 ** 2) and qd[0] == pytest.approx(0.3)
    ref.hold(int(0.2e9))                      # held where it had got to, not sent back
    ref.sample(int(0.3e9), q, qd, qdd)
    assert q[0] == pytest.approx(0.2 ** 2) and qd[0] == 0.0 and qdd[0] == 0.0
    one = C.ReferenceFromMessages(('a',))     # one message: no interval known, as it came
    one.update(C.joint_state(['a'], [0.5], [1.0]), arrival_ns=10)
    one.sample(int(0.5e9), q, qd, qdd)
    assert q[0] == 0.5 and qd[0] == 1.0


def test_a_carried_on_reference_holds_a_joint_sent_at_rest_and_stops_at_zero_velocity():
    ref = C.ReferenceFromMessages(('a', 'b'), acceleration_time_constant_s=0.0)
    q, qd, qdd = np.zeros(2), np.zeros(2), np.zeros(2)
    # a decelerating at 12 rad/s^2, at 0.8 rad/s (stops 1/15 s on); b at rest
    for k, v in enumerate((2.0, 1.4, 0.8)):
        ref.update(C.joint_state(['a', 'b'], [0.05 * k, 0.5], [v, 0.0]),
                   arrival_ns=int(k * 0.05e9))
    assert ref.qdd[0] == pytest.approx(-12.0)
    ref.sample(int(0.15e9), q, qd, qdd)
    assert q[0] == pytest.approx(0.1 + 0.8 * 0.05 - 6.0 * 0.05 ** 2) and q[1] == 0.5
    ref.sample(int(0.19e9), q, qd, qdd)                # past 1/15 s: where qd reaches 0
    stop = 1.0 / 15.0
    assert q[0] == pytest.approx(0.1 + 0.8 * stop - 6.0 * stop ** 2)
    assert qd[0] == 0.0 and qdd[0] == 0.0              # stopped there: at rest
    ref.reader.set_limits([0.11, 1.0], [1.0, 1.0])     # the plausibility limits bound it:
    ref.sample(int(0.15e9), q, qd, qdd)                # at a position limit at rest,
    assert q[0] == 0.11 and qd[0] == 0.0 and qdd[0] == 0.0
    ref.reader.set_limits([1.0, 1.0], [0.1, 1.0])      # the velocity clipped
    ref.sample(int(0.15e9), q, qd, qdd)
    assert qd[0] == 0.1 and qdd[0] == 0.0


def test_a_carried_on_reference_starts_from_its_stamp_when_that_is_on_the_node_clock():
    """A coarse /clock: a message stamped 9 ms before the clock value it arrives at."""
    ref = C.ReferenceFromMessages(('a',))
    q, qd, qdd = np.zeros(1), np.zeros(1), np.zeros(1)
    for k in range(3):                          # 1 rad/s, every 10 ms, stamped when sent
        ref.update(C.joint_state(['a'], [0.01 * k + 0.001], [1.0], stamp_ns=10_000_000 * k
                                 + 1_000_000), arrival_ns=10_000_000 * (k + 1))
    ref.sample(30_000_000, q, qd, qdd)           # at the clock value it arrived at
    assert q[0] == pytest.approx(0.03)
    foreign = C.ReferenceFromMessages(('a',))  # stamps of another clock: from arrival
    for k in range(3):
        foreign.update(C.joint_state(['a'], [0.01 * k], [1.0], stamp_ns=10**9 + k),
                       arrival_ns=10**11 + 10_000_000 * k)
    foreign.sample(10**11 + 25_000_000, q, qd, qdd)
    assert q[0] == pytest.approx(0.025)


def test_neither_a_first_long_gap_nor_a_burst_sets_the_carry_on_horizon():
    """
    One message, 3 s of silence (no timeout), then 20 Hz; then two messages 1 ms apart.

    The typical interval is the lower median of the latest gaps: 50 ms after two of them
    (an average took the 3 s gap whole: carried 0.25 rad on, not 0.1), and a burst does
    not shrink it to 1 ms (which turned carrying on off for seconds).
    """
    ref = C.ReferenceFromMessages(('a',), acceleration_time_constant_s=0.0)
    q, qd, qdd = np.zeros(1), np.zeros(1), np.zeros(1)
    ref.update(C.joint_state(['a'], [0.0], [0.2]), arrival_ns=1)
    for k in range(10):
        t = 3.0 + 0.05 * k
        ref.update(C.joint_state(['a'], [t], [1.0]), arrival_ns=int(t * 1e9))
        if k == 2:
            ref.sample(int(10e9), q, qd, qdd)
            assert q[0] == pytest.approx(3.1 + 0.1)
    ref.sample(int(10e9), q, qd, qdd)                  # the stream stopped: two intervals on
    assert q[0] == pytest.approx(3.45 + 0.1)
    ref.update(C.joint_state(['a'], [3.451], [1.0]), arrival_ns=int(3.451e9))   # a burst
    ref.sample(int(10e9), q, qd, qdd)
    assert q[0] == pytest.approx(3.451 + 0.1)


def test_command_message_reuses_its_buffer():
    cmd = C.CommandMessage(3)
    data = cmd.msg.data
    assert isinstance(data, array.array) and data.typecode == 'd'
    msg = cmd.set(np.array([1.0, -2.0, 3.5]))
    assert msg is cmd.msg and msg.data is data
    assert list(msg.data) == [1.0, -2.0, 3.5]


def test_to_float64_multiarray():
    msg = C.to_float64_multiarray(np.arange(3, dtype=np.float32))
    assert list(msg.data) == [0.0, 1.0, 2.0]
    assert C.to_float64_multiarray(np.zeros(0)).data.tolist() == []

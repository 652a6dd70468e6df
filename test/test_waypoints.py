"""Waypoint trajectories (JointTrajectory): joint_trajectory_controller's splines, take-over."""
from lnn_control.trajectories import _Stop
from lnn_control.waypoints import (CUBIC, LINEAR, QUINTIC, sample_polynomials,
                                   segment_coefficients, segment_peaks, WaypointTrajectory)
import numpy as np
import pytest

pytestmark = pytest.mark.unit

S = 1_000_000_000       # ns per s
TIMES = [1.0, 2.0, 3.5]
POS = [[0.5, -1.0], [1.0, 0.0], [0.2, 0.3]]
VEL = [[0.4, 0.0], [0.0, 1.0], [0.0, 0.0]]
ACC = [[0.0, 1.0], [-1.0, 0.0], [0.0, 0.0]]


def _at(traj, t_s):
    out = np.zeros((3, traj._end.shape[0]))
    traj.sample(int(round(t_s * S)), *out)
    return out


def _run(traj, t0_s, t1_s, dt=0.001):
    return np.array([_at(traj, t) for t in np.arange(t0_s, t1_s, dt)])


def test_the_kernel_matches_numpys_polynomials():
    rng = np.random.default_rng(3)
    c = rng.standard_normal((4, 6))
    out = np.zeros((3, 4))
    sample_polynomials(c, 0.37, *out)
    for j in range(4):
        p = np.polynomial.Polynomial(c[j])
        np.testing.assert_allclose(out[:, j], [p(0.37), p.deriv()(0.37), p.deriv(2)(0.37)],
                                   rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize('order, fields', [(LINEAR, 1), (CUBIC, 2), (QUINTIC, 3)])
def test_each_segment_meets_its_waypoints_to_the_order_given(order, fields):
    given = [POS, VEL, ACC][:fields] + [None] * (3 - fields)
    traj = WaypointTrajectory(0, TIMES, *given)
    assert traj.order == order
    start = (np.array([0.1, 0.1]), np.array([0.3, -0.2]), np.array([0.5, 0.0]))
    traj.begin(0, *start)
    at_start = _at(traj, 0.0)
    np.testing.assert_allclose(at_start[0], start[0], atol=1e-12)   # no step, ever
    for level in range(1, fields):     # cubic: velocity too; quintic: acceleration too
        np.testing.assert_allclose(at_start[level], start[level], atol=1e-12)
    for k, t in enumerate(TIMES):
        for side in (t - 1e-9, t):     # both segments meet there
            state = _at(traj, side)
            np.testing.assert_allclose(state[0], POS[k], atol=1e-6)
            for level in range(1, fields):
                np.testing.assert_allclose(state[level], given[level][k] if k < 2
                                           else [0.0, 0.0], atol=1e-5)
    if order == LINEAR:                # straight: the slope of each segment
        np.testing.assert_allclose(_at(traj, 1.5)[1], np.subtract(POS[1], POS[0]), atol=1e-12)


def test_velocities_and_accelerations_are_the_positions_derivatives():
    traj = WaypointTrajectory(0, TIMES, POS, VEL, ACC)
    traj.begin(0, np.zeros(2), np.zeros(2), np.zeros(2))
    x = _run(traj, 0.0, 3.4, 1e-4)
    np.testing.assert_allclose(np.gradient(x[:, 0], 1e-4, axis=0)[1:-1], x[1:-1, 1], atol=2e-3)
    np.testing.assert_allclose(np.gradient(x[:, 1], 1e-4, axis=0)[1:-1], x[1:-1, 2], atol=2e-2)


def test_after_the_last_waypoint_its_position_is_held_at_rest():
    traj = WaypointTrajectory(0, [1.0], [[0.5, 0.5]], [[2.0, -2.0]])   # sent still moving
    traj.begin(0, np.zeros(2), np.zeros(2), np.zeros(2))
    assert traj.end_ns == S
    for t in (1.0, 1.5, 10.0):
        np.testing.assert_array_equal(_at(traj, t), [[0.5, 0.5], [0.0, 0.0], [0.0, 0.0]])


def test_it_starts_where_it_takes_over_and_drops_waypoints_behind():
    """Stamped in the past: joining a waypoint already behind would step the position."""
    traj = WaypointTrajectory(-2 * S, [1.0, 3.0, 4.0], [[9.0], [1.0], [2.0]])
    traj.begin(0, [0.0], [0.0], [0.0])        # 1 s into its second segment
    np.testing.assert_allclose(_at(traj, 0.0)[0], [0.0])
    np.testing.assert_allclose(_at(traj, 0.5)[0], [0.5])        # 0 -> 1 over 1 s
    np.testing.assert_allclose(_at(traj, 1.5)[0], [1.5])


def test_a_waypoint_closer_than_a_tick_is_dropped_when_another_follows():
    traj = WaypointTrajectory(-S, [1.005, 2.0], [[1.0], [1.2]])
    traj.begin(0, [-0.5], [0.0], [0.0], lead_ns=S // 100)
    np.testing.assert_allclose(_at(traj, 0.5)[0], [0.35])       # -0.5 -> 1.2 over 1 s
    last = WaypointTrajectory(-S, [1.005], [[1.0]])             # stamped: it ends too soon
    assert not last.begin(0, [-0.5], [0.0], [0.0], lead_ns=S // 100)
    soon = WaypointTrajectory(None, [0.005], [[1.0]])          # unstamped: a set point now
    assert soon.begin(0, [-0.5], [0.0], [0.0], lead_ns=S // 100)
    np.testing.assert_allclose(_at(soon, 0.005)[0], [1.0])


def test_a_waypoint_at_the_take_over_time_is_where_it_starts():
    """As joint_trajectory_controller: a first waypoint at time_from_start 0 is no segment."""
    before = WaypointTrajectory(S, [0.0, 1.0], [[0.2], [0.4]], [[0.0], [0.0]])
    before.begin(S - 1, [0.0], [0.0], [0.0])    # one ns before: a segment of 1 ns
    at = WaypointTrajectory(S, [0.0, 1.0], [[0.2], [0.4]], [[0.0], [0.0]])
    at.begin(S, [0.0], [0.0], [0.0])            # at it: from it
    after = WaypointTrajectory(S, [0.0, 1.0], [[0.2], [0.4]], [[0.0], [0.0]])
    after.begin(S + 1, [0.0], [0.0], [0.0])     # past it: dropped, 0 -> 0.4 over 1 s
    for traj in (before, at):
        np.testing.assert_allclose(_at(traj, 1.0 + 1e-9)[0], [0.2], atol=1e-9)
        np.testing.assert_allclose(_at(traj, 2.0)[0], [0.4])
    np.testing.assert_allclose(_at(after, 1.5)[0], [0.2], atol=1e-8)   # half-way: cubic
    np.testing.assert_allclose(_at(after, 2.0)[0], [0.4])
    unstamped = WaypointTrajectory(None, [0.0], [[0.5]])     # a set point sent for now
    assert unstamped.begin(2 * S, [0.0], [0.0], [0.0])
    np.testing.assert_array_equal(_at(unstamped, 2.0 + 1e-9), [[0.5], [0.0], [0.0]])


def test_no_waypoints_is_a_stop_continuous_and_at_rest_within_its_time():
    start = ([1.0, -1.0], [2.0, 0.5], [-3.0, 0.0])
    traj = WaypointTrajectory(123, [], [], stop_s=0.25)
    traj.begin(S, *start)
    stop = _Stop(*start, 0.0, 0.25)
    for t in np.linspace(0.0, 0.3, 31):
        expected = np.zeros((3, 2))
        stop.sample(t, *expected)
        np.testing.assert_allclose(_at(traj, 1.0 + t), expected, atol=1e-12)
    np.testing.assert_allclose(_at(traj, 1.0), start, atol=1e-12)
    np.testing.assert_array_equal(_at(traj, 1.25)[1:], 0.0)


def test_segment_peaks_sample_each_segment_on_its_own_time_and_flag_overflow_as_inf():
    # rest to rest from 1 to 2 over 2 s (a cubic): |q| peaks at 2, |qd| at 1.5 x 0.5
    c = segment_coefficients(CUBIC, np.array([[2.0]]), ([[1.0]], [[0.0]], [[0.0]]),
                             ([[2.0]], [[0.0]], [[0.0]]))
    q, qd = segment_peaks(c, [2.0])
    np.testing.assert_allclose(q, [2.0])
    assert 0.74 < qd[0] <= 0.75             # (16 samples: just off the peak at t = 1 s)
    # a second one, 0 to 1, on its own time from 0 (on the time since the first began,
    # 2-4 s, it would read |q| 3)
    q2, _ = segment_peaks(np.concatenate([c, c - [[[1.0, 0, 0, 0, 0, 0]]]]), [2.0, 2.0])
    np.testing.assert_allclose(q2, q)
    wild = c.copy()
    wild[0, 0, 5] = 1e308                   # overflows within the segment
    assert np.isinf(segment_peaks(wild, [2.0])[0]).all()
    wild[0, 0, 5] = np.nan
    assert np.isinf(segment_peaks(wild, [2.0])[1]).all()


def test_a_stop_has_no_first_segment_to_judge():
    """Its path is the package's own, from wherever the motion was: never refused."""
    stop = WaypointTrajectory(None, [], [], stop_s=0.25)
    assert stop.begin(S, [0.8, 0.0], [1.9, 0.0], [50.0, 0.0])
    assert stop.first_peaks() is None and stop.between_peaks() is None
    moving = WaypointTrajectory(None, [0.5], [[0.0, 0.0]], [[0.0, 0.0]])
    assert moving.begin(S, [0.8, 0.0], [1.9, 0.0], [50.0, 0.0])
    q, qd = moving.first_peaks()
    assert q[0] >= 0.8 and qd[0] >= 1.9


def test_continuous_joints_start_the_short_way_round_then_go_as_sent():
    """joint_trajectory_controller's angle_wraparound: whole turns to the first waypoint."""
    traj = WaypointTrajectory(0, [1.0, 2.0, 3.0], [[3.0, 3.0], [-3.0, -3.0], [4.0, 4.0]],
                              continuous=[True, False])
    traj.begin(0, [-3.0, -3.0], [0.0, 0.0], [0.0, 0.0])
    wrap = 2 * np.pi
    np.testing.assert_allclose(_at(traj, 1.0)[0], [3.0 - wrap, 3.0])   # -3.28, not +3
    np.testing.assert_allclose(_at(traj, 2.0)[0], [-3.0 - wrap, -3.0])  # as sent from there
    np.testing.assert_allclose(_at(traj, 3.0)[0], [4.0 - wrap, 4.0])    # a 7 rad move: one
    np.testing.assert_allclose(_at(traj, 9.0)[0], [4.0 - wrap, 4.0])    # held there
    x = _run(traj, 0.0, 1.0)
    assert np.abs(np.diff(x[:, 0, 0])).max() < 0.001


def test_a_stamped_trajectory_that_ended_is_not_begun():
    stamped = WaypointTrajectory(0, [1.0], [[0.5]])
    assert not stamped.begin(2 * S, [0.0], [0.0], [0.0]) and not stamped.started


def test_an_unstamped_trajectory_starts_when_it_is_taken_over():
    traj = WaypointTrajectory(None, [0.5, 1.0], [[1.0], [2.0]])
    assert traj.end_ns is None
    traj.begin(7 * S, [0.0], [0.0], [0.0])
    assert traj.end_ns == 8 * S
    np.testing.assert_allclose(_at(traj, 7.5)[0], [1.0])


def test_shift_keeps_it_where_it_was_on_a_stepped_clock():
    traj = WaypointTrajectory(0, TIMES, POS, VEL)
    traj.begin(0, np.zeros(2), np.zeros(2), np.zeros(2))
    before = _at(traj, 1.7)
    traj.shift(-5 * S)
    np.testing.assert_array_equal(_at(traj, 1.7 - 5.0), before)


def test_segments_between_waypoints_match_one_by_one_coefficients():
    traj = WaypointTrajectory(0, TIMES, POS, VEL, ACC)
    for k in range(2):
        one = segment_coefficients(QUINTIC, TIMES[k + 1] - TIMES[k],
                                   (POS[k], VEL[k], ACC[k]), (POS[k + 1], VEL[k + 1], ACC[k + 1]))
        np.testing.assert_allclose(traj._between[k], one, rtol=1e-14, atol=1e-14)


def test_sampling_back_in_time_finds_its_segment():
    traj = WaypointTrajectory(0, TIMES, POS, VEL)
    traj.begin(0, np.zeros(2), np.zeros(2), np.zeros(2))
    forward = _run(traj, 0.0, 3.5, 0.05)
    backward = np.array([_at(traj, t) for t in np.arange(0.0, 3.5, 0.05)[::-1]])[::-1]
    np.testing.assert_array_equal(forward, backward)


@pytest.mark.parametrize('kwargs, why', [
    ({'times_s': [1.0, 1.0], 'positions': [[0.0], [1.0]]}, 'increase'),
    ({'times_s': [-1.0], 'positions': [[0.0]]}, 'increase'),
    ({'times_s': [1.0], 'positions': [[0.0]], 'accelerations': [[0.0]]}, 'velocities'),
])
def test_malformed_waypoints_are_refused(kwargs, why):
    with pytest.raises(ValueError, match=why):
        WaypointTrajectory(0, **kwargs)


def test_segment_coefficients_of_a_quintic_meet_both_ends():
    T = 0.7
    c = segment_coefficients(QUINTIC, T, ([0.1], [0.2], [0.3]), ([1.0], [-0.5], [2.0]))
    p = np.polynomial.Polynomial(c[0])
    np.testing.assert_allclose([p(T), p.deriv()(T), p.deriv(2)(T)], [1.0, -0.5, 2.0])

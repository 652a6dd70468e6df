"""References: analytic derivatives, allocation-free sampling, factory."""
from lnn_control.trajectories import (DesiredState, Hold, make_reference, MODES, PointToPoint,
                                      reach, Sine, SumOfSines)
import numpy as np
import pytest

pytestmark = pytest.mark.unit


def _check_derivatives(ref, times=np.linspace(0.0, 7.0, 15), h=1e-5):
    for t in times:
        q_m, qd_m, _ = ref(t - h)
        q_p, qd_p, _ = ref(t + h)
        _, qd, qdd = ref(t)
        np.testing.assert_allclose(qd, (q_p - q_m) / (2 * h), atol=1e-6)
        np.testing.assert_allclose(qdd, (qd_p - qd_m) / (2 * h), atol=1e-6)


@pytest.mark.parametrize('ref', [
    SumOfSines.standard(3, amplitude=[0.5, 1.0, 0.2], seed=4),
    SumOfSines([0.3, 0.1], [0.2, 1.1], phases=[0.5, 1.0], offsets=[0.2]),
    Sine([0.4, 0.2], 0.5, offset=[0.1, -0.1]),
    Hold([0.3, -0.3]),
])
def test_derivatives_match_finite_differences(ref):
    _check_derivatives(ref)


def test_sample_writes_into_given_arrays():
    ref = SumOfSines.standard(2, offsets=[0.1, 0.2])
    q, qd, qdd = np.empty(2), np.empty(2), np.empty(2)
    ids = (id(q), id(qd), id(qdd))
    ref.sample(1.3, q, qd, qdd)
    assert ids == (id(q), id(qd), id(qdd))
    for got, want in zip((q, qd, qdd), ref(1.3)):
        np.testing.assert_array_equal(got, want)
    h = Hold([0.5, 0.6])
    h.sample(2.0, q, qd, qdd)
    np.testing.assert_array_equal(q, [0.5, 0.6])
    np.testing.assert_array_equal(qd, 0.0)


def test_sum_of_sines_shapes_and_values():
    ref = SumOfSines([[1.0, 0.5]], [[1.0, 2.0]], offsets=[0.3])
    assert ref.n_joints == 1 and ref.max_frequency_hz == 2.0
    q, qd, _ = ref(0.0)
    np.testing.assert_allclose(q, [0.3])
    np.testing.assert_allclose(qd, [2 * np.pi * (1.0 + 1.0)])
    with pytest.raises(ValueError):
        SumOfSines([np.nan], [1.0])


def test_standard_reference():
    ref = SumOfSines.standard(2, amplitude=0.5, max_frequency_hz=1.1, seed=0)
    assert ref.max_frequency_hz == pytest.approx(1.1)
    np.testing.assert_allclose(ref.frequencies_hz[0], [0.3, 0.6, 1.1])
    np.testing.assert_allclose(ref.amplitudes.sum(axis=1), [0.5, 0.5])
    assert not np.allclose(ref.phases[0], ref.phases[1])  # joints not in lockstep
    again = SumOfSines.standard(2, amplitude=0.5, max_frequency_hz=1.1, seed=0)
    np.testing.assert_array_equal(ref.phases, again.phases)
    assert SumOfSines.standard(1).max_frequency_hz == pytest.approx(0.55)


def test_make_reference():
    assert isinstance(make_reference('hold', 2, 0.5, 0.5, offset=0.1), Hold)
    np.testing.assert_allclose(make_reference('hold', 2, 0.5, 0.5, offset=0.1)(3.0)[0], 0.1)
    sine = make_reference('sine', 2, 0.5, 0.25)
    assert isinstance(sine, Sine) and sine.n_joints == 2 and sine.max_frequency_hz == 0.25
    sos = make_reference('sum_of_sines', 3, 0.4, 0.55, offset=[0.0, 0.1, 0.2], seed=1)
    assert sos.n_joints == 3 and sos.max_frequency_hz == pytest.approx(0.55)
    np.testing.assert_allclose(sos.offsets, [0.0, 0.1, 0.2])
    with pytest.raises(ValueError, match='hold.*sine.*sum_of_sines.*point_to_point'):
        make_reference('chirp', 1, 0.5, 0.5)


def test_point_to_point_moves_between_set_points_and_holds_them():
    """Minimum-jerk moves of 1/f s within offset +- amplitude, each set point held 1/f s."""
    f, amplitude, offset = 0.5, np.array([0.5, 0.2]), np.array([0.1, -0.2])
    ref = make_reference('point_to_point', 2, amplitude, f, offset, seed=7)
    assert isinstance(ref, PointToPoint) and ref.max_frequency_hz == f
    np.testing.assert_array_equal(ref(0.0)[0], offset)            # starts where it holds
    t = np.arange(0.0, 40.0, 0.01)
    q, qd, qdd = (np.array(x) for x in zip(*(ref(ti) for ti in t)))
    assert (np.abs(q - offset) <= amplitude + 1e-12).all()
    assert np.abs(np.diff(q, axis=0)).max() < 0.02                 # no steps
    holding = (t % (2 / f)) >= 1 / f
    np.testing.assert_array_equal(qd[holding], 0.0)
    np.testing.assert_array_equal(qdd[holding], 0.0)
    ends = [ref(k * 2 / f + 1 / f)[0] for k in range(1, 5)]       # a new set point each time
    assert all(np.abs(a - b).max() > 1e-3 for a, b in zip(ends, ends[1:]))
    _check_derivatives(ref, times=np.linspace(0.05, 7.05, 15))    # off the move/hold joints
    again = make_reference('point_to_point', 2, amplitude, f, offset, seed=7)
    np.testing.assert_array_equal(again(13.3)[0], ref(13.3)[0])    # reproducible by seed
    out = np.empty(2), np.empty(2), np.empty(2)
    ids = tuple(id(a) for a in out)
    ref.sample(0.4, *out)
    assert ids == tuple(id(a) for a in out)
    with pytest.raises(ValueError, match='above 0 Hz'):
        make_reference('point_to_point', 1, 0.5, 0.0)


def test_point_to_point_without_a_frequency_is_refused_as_a_setting():
    from lnn_control import zoo
    from lnn_control.controller import AdaptiveController
    with pytest.raises(ValueError, match='point_to_point needs reference.frequency_hz'):
        AdaptiveController({**zoo.controller_params('pendulum_viscous'),
                            'reference.mode': 'point_to_point',
                            'reference.frequency_hz': 0.0})


def test_a_reconfiguration_that_keeps_following_the_topic_does_not_blend():
    d = DesiredState(1)
    d.configure('topic', 0.5, 0.5, 0.0, 0)

    class Ref:
        q, qd, qdd = np.array([0.3]), np.array([1.0]), np.zeros(1)

        @classmethod
        def sample(cls, now_ns, q, qd, qdd):
            q[:], qd[:], qdd[:] = cls.q, cls.qd, cls.qdd

    d.update(0, Ref)
    d.configure('topic', 0.9, 0.2, 0.1, 3)     # settings only generated references use
    Ref.q = np.array([0.4])
    d.update(10_000_000, Ref)
    assert d.q[0] == 0.4 and d.qd[0] == 1.0 and d.blend_s == 0.0


def test_a_live_reconfiguration_blends_into_the_new_reference_without_a_step():
    d = DesiredState(2)
    d.configure('sine', [0.5, 0.3], 0.5, [0.0, 0.1], 0)
    dt, rows = 0.001, []
    for k in range(9000):
        if k == 5500:                              # mid-motion, far from the new reference
            d.configure('sum_of_sines', [0.5, 0.3], 0.55, [0.2, 0.1], 1)
        d.update(int(round(k * dt * 1e9)))
        rows.append(np.concatenate([d.q, d.qd, d.qdd]))
    x = np.array(rows)[5400:]
    q, qd, qdd = x[:, :2], x[:, 2:4], x[:, 4:]
    # continuous: position, velocity and acceleration consistent with each other
    np.testing.assert_allclose(np.gradient(q, dt, axis=0)[2:-2], qd[2:-2], atol=1e-4)
    np.testing.assert_allclose(np.gradient(qd, dt, axis=0)[2:-2], qdd[2:-2], atol=1e-2)
    assert np.abs(np.diff(q, axis=0)).max() < 0.005          # no step (one ms apart)
    # after one period of the new reference (1 / 0.55 s) it is the new reference
    ref, out = make_reference('sum_of_sines', 2, np.array([0.5, 0.3]), 0.55,
                              np.array([0.2, 0.1]), seed=1), np.zeros((3, 2))
    ref.sample(8.999, *out)
    np.testing.assert_allclose(np.array(rows)[-1].reshape(3, 2), out, atol=1e-12)


def test_resuming_blends_from_the_measured_position_only_if_the_reference_moved_on():
    """After a sensor drop-out: a sine that ran on is blended into, a set point taken up."""
    for mode, moved in (('sine', True), ('hold', False)):
        desired = DesiredState(1)
        desired.configure(mode, [1.0], 0.5, [0.2], 0)
        desired.update(0)
        frozen = desired.q.copy()
        desired.resume(500_000_000, np.array([-0.4]))       # 0.5 s later, the robot at -0.4
        desired.update(500_000_000)
        assert desired.q[0] == pytest.approx(-0.4 if moved else frozen[0])
        assert not moved or desired.qd[0] == 0.0              # from rest
        desired.update(2_500_000_000)                          # one period (2 s) later
        assert desired.q[0] == pytest.approx(0.2 + (np.sin(np.pi * 2.5) if moved else 0.0))


def test_resuming_a_continuous_joint_blends_from_within_half_a_turn_of_the_reference():
    """A wheel measured some turns away is not turned back those turns after a drop-out."""
    desired = DesiredState(2, continuous=[True, False])
    desired.configure('sine', [1.0], 0.5, [0.2], 0)
    desired.update(0)
    desired.resume(500_000_000, np.array([-0.4 + 6 * np.pi, -0.4 + 6 * np.pi]))
    desired.update(500_000_000)
    np.testing.assert_allclose(desired.q, [-0.4, -0.4 + 6 * np.pi])


@pytest.mark.parametrize('gap_ticks', [0, 10, 700])
def test_a_second_change_during_a_blend_blends_on_from_where_the_first_one_got(gap_ticks):
    """Two reference.* changes in one request (0 ticks apart) or mid-blend: no step."""
    d = DesiredState(1)
    d.configure('sine', [0.5], 1.0, [0.0], 0)
    dt, rows = 0.001, []
    for k in range(6000):
        if k == 1000:
            d.configure('sine', [0.5], 0.25, [0.0], 0)        # a 4 s blend
        if k == 1000 + gap_ticks:
            d.configure('sine', [1.0], 0.25, [0.6], 0)
        d.update(int(round(k * dt * 1e9)))
        rows.append(np.concatenate([d.q, d.qd, d.qdd]))
    x = np.array(rows)
    q, qd = x[:, 0], x[:, 1]
    assert np.abs(np.diff(q)).max() < 0.01          # no step (it was 0.5-1 rad in one tick)
    np.testing.assert_allclose(np.gradient(q, dt)[900:-2], qd[900:-2], atol=2e-3)
    np.testing.assert_allclose(np.gradient(qd, dt)[900:-2], x[900:-2, 2], atol=0.05)
    # four seconds after the last change it is the last reference
    ref, out = make_reference('sine', 1, np.array([1.0]), 0.25, np.array([0.6])), np.zeros((3, 1))
    ref.sample(5.999, *out)
    np.testing.assert_allclose(x[-1], out.ravel(), atol=1e-12)


@pytest.mark.parametrize('every_ms', [50, 1500])
def test_changes_faster_than_the_blends_stay_bounded_and_continuous(every_ms):
    """A slider sending a change every 50 ms, or changes 1.5 s apart into 2 s blends."""
    from lnn_control.trajectories import _Blend, MAX_NESTED_BLENDS
    d = DesiredState(1)
    d.configure('sine', [0.5], 0.5, [0.0], 0)
    x, depth = [], 0
    for k in range(12000):
        if k % every_ms == 0 and 0 < k < 9000:
            d.configure('sine', [0.5], 0.5, [0.3 * np.sin(k / 500.0)], 0)
        d.update(int(k * 1_000_000))
        x.append([d.q[0], d.qd[0], d.qdd[0]])
        depth = max(depth, d._old.depth if isinstance(d._old, _Blend) else 0)
    x = np.array(x)
    assert depth <= (MAX_NESTED_BLENDS if every_ms == 50 else 1)    # ended blends dropped
    # position and velocity continuous (1 ms ticks): no hold at rest in between
    assert np.abs(np.diff(x[:, 0])).max() < 0.005
    assert np.abs(np.diff(x[:, 1])).max() < 0.05, np.abs(np.diff(x[:, 1])).max()


def test_a_continuous_joint_is_blended_the_short_way_round():
    """A wrist roll set from offset -3 rad to 3 rad turns -0.28 rad, not +6 (a review)."""
    d = DesiredState(2, continuous=[True, False])
    d.configure('hold', [0.0], 1.0, [-3.0, -3.0], 0)
    d.update(0)
    d.configure('hold', [0.0], 1.0, [3.0, 3.0], 0)
    q = []
    for k in range(1, 1500):
        d.update(k * 1_000_000)
        q.append(d.q.copy())
    q = np.array(q)
    steps = (np.diff(q[:, 0]) + np.pi) % (2 * np.pi) - np.pi       # as the controller sees it
    assert np.abs(steps).max() < 0.01
    np.testing.assert_allclose(steps.sum() + (q[0, 0] - 2 * np.pi - -3.0), 6.0 - 2 * np.pi,
                               atol=1e-9)                        # -0.283 in all
    assert np.abs(np.diff(q[:, 1])).max() < 0.02 and q[-1, 1] == 3.0   # not continuous: +6


class _Received:
    """A received reference (sampled by node time), optionally wrapped into [-pi, pi)."""

    def __init__(self, amplitude=1.0, hz=2.0, offset=0.0, wrapped=False):
        self.a, self.w, self.c, self.wrapped = amplitude, 2 * np.pi * hz, offset, wrapped

    def sample(self, now_ns, q, qd, qdd):
        t = now_ns * 1e-9
        x = self.c + self.a * np.sin(self.w * t)
        q[:] = (x + np.pi) % (2 * np.pi) - np.pi if self.wrapped else x
        qd[:] = self.a * self.w * np.cos(self.w * t)
        qdd[:] = -self.a * self.w ** 2 * np.sin(self.w * t)


def test_leaving_a_fast_motion_for_slow_references_stays_near_them():
    """Nested past the cap, the desired state came to rest over a 20 s blend: 714 rad out."""
    d = DesiredState(1)
    d.configure('sine', [1.0], 2.0, [0.0], 0)
    peak = 0.0
    for k in range(12000):
        if 500 <= k < 600 and k % 10 == 0:
            d.configure('sine', [0.5], 0.05, [0.3 * (-1) ** (k // 10)], 0)
        d.update(k * 1_000_000)
        peak = max(peak, abs(d.q[0]))
    assert peak < 2.0, peak


def test_from_a_received_reference_to_a_generated_one_without_a_velocity_step():
    d = DesiredState(1)
    d.configure('topic', [0.0], 1.0, [0.0], 0)
    ref, qd = _Received(), []
    for k in range(1000):
        if k == 600:
            d.configure('sine', [0.5], 0.5, [0.0], 0)
        d.update(k * 1_000_000, ref)
        qd.append(d.qd[0])
    assert np.abs(np.diff(qd)).max() < 0.2         # it stepped from 12 rad/s to 0 before


def test_a_continuous_joint_blends_into_a_wrapped_received_reference_without_a_step():
    d = DesiredState(1, continuous=[True])
    d.configure('sine', [0.5], 0.5, [2.8], 0)
    ref, q = _Received(amplitude=0.5, hz=0.4, offset=3.0, wrapped=True), []
    for k in range(3000):
        if k == 200:
            d.configure('topic', [0.0], 1.0, [0.0], 0)     # a 1 s blend into it
        d.update(k * 1_000_000, ref)
        q.append(d.q[0])
    steps = (np.diff(q) + np.pi) % (2 * np.pi) - np.pi       # as the controller sees them
    assert np.abs(steps).max() < 0.01


def test_reach_bounds_what_every_generated_mode_reaches():
    """The plausibility check of a generated reference (config) relies on these bounds."""
    amplitude, frequency, offset = np.array([0.7, 0.2]), 0.9, np.array([0.2, -0.5])
    for mode in MODES:
        ref = make_reference(mode, 2, amplitude, frequency, offset, seed=3)
        samples = np.array([ref(t)[:2] for t in np.arange(0.0, 120.0, 0.002)])
        q_bound, qd_bound = reach(mode, amplitude, frequency, offset)
        peak_q, peak_qd = np.abs(samples).max(axis=0)
        assert (peak_q <= q_bound + 1e-12).all() and (peak_qd <= qd_bound + 1e-12).all(), mode
        if mode != 'hold':                      # and not far above what is reached
            assert (peak_qd > 0.5 * qd_bound).all(), mode

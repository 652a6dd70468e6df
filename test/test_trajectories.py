"""References: analytic derivatives, allocation-free sampling, factory."""
from lnn_control.trajectories import Hold, make_reference, Sine, SumOfSines
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
    with pytest.raises(ValueError, match='hold.*sine.*sum_of_sines'):
        make_reference('chirp', 1, 0.5, 0.5)

"""Reservoir: seeding, echo-state property, spectral radius, spiking, validation, twin."""
from lnn_control.reservoir import NEURON_MODELS, Reservoir
import numpy as np
import pytest

pytestmark = pytest.mark.unit


def _drive(n_inputs, ticks, seed=0):
    """Return a smooth multi-sine input plus a little noise, the kind the controller sees."""
    rng = np.random.default_rng(seed)
    t = np.arange(ticks)[:, None] * 0.01
    freqs = np.linspace(0.3, 1.5, n_inputs)[None, :]
    return np.sin(2 * np.pi * freqs * t + freqs) + 0.1 * rng.standard_normal((ticks, n_inputs))


def _trajectory(res, inputs):
    return np.array([res.step(u).copy() for u in inputs])


def _weights(res):
    out = [res.w_in, res.indptr, res.indices, res.data, res.bias]
    if res.neuron_model == 'ltc':
        out += [res.tau, res.reversal]
    return out


@pytest.mark.parametrize('model', NEURON_MODELS)
def test_same_seed_same_reservoir_and_trajectory(model):
    a = Reservoir(3, size=50, neuron_model=model, seed=12)
    b = Reservoir(3, size=50, neuron_model=model, seed=12)
    for wa, wb in zip(_weights(a), _weights(b)):
        np.testing.assert_array_equal(wa, wb)
    inputs = _drive(3, 100)
    ta, tb = _trajectory(a, inputs), _trajectory(b, inputs)
    np.testing.assert_array_equal(ta, tb)
    assert np.abs(ta).max() > 0.01
    # reset gives the same trajectory again
    a.reset()
    np.testing.assert_array_equal(_trajectory(a, inputs), ta)


@pytest.mark.parametrize('model', NEURON_MODELS)
def test_different_seed_different_reservoir_and_trajectory(model):
    a = Reservoir(3, size=50, neuron_model=model, seed=1)
    b = Reservoir(3, size=50, neuron_model=model, seed=2)
    assert not np.array_equal(a.w_in, b.w_in)
    assert not np.array_equal(a.data, b.data)
    assert not np.array_equal(a.bias, b.bias)
    inputs = _drive(3, 100)
    assert np.abs(_trajectory(a, inputs) - _trajectory(b, inputs)).max() > 0.01


@pytest.mark.parametrize('seed', [0, 1])
@pytest.mark.parametrize('model', ['esn', 'ltc'])
def test_echo_state_property(model, seed):
    """
    Default settings forget their initial state.

    Two different initial states converge under the same input.
    """
    a = Reservoir(3, size=100, neuron_model=model, seed=seed)
    b = a.twin()
    b.state[:] = np.random.default_rng(seed + 100).uniform(-1.0, 1.0, a.size)
    d0 = np.linalg.norm(a.state - b.state)
    assert d0 > 1.0
    for u in _drive(3, 400, seed):
        a.step(u)
        b.step(u)
    assert np.linalg.norm(a.state - b.state) < d0 * 1e-3


@pytest.mark.parametrize('rho', [0.5, 0.9, 1.2])
@pytest.mark.parametrize('seed', [0, 3])
def test_spectral_radius_as_requested(rho, seed):
    res = Reservoir(2, size=200, spectral_radius=rho, seed=seed)
    got = np.abs(np.linalg.eigvals(res.dense_recurrent())).max()
    assert abs(got - rho) <= 0.05 * rho, got


def test_zero_spectral_radius_means_no_recurrence():
    res = Reservoir(2, size=40, spectral_radius=0.0)
    assert not res.dense_recurrent().any()


def test_dense_recurrent_matches_density():
    res = Reservoir(2, size=200, density=0.05, seed=4)
    w = res.dense_recurrent()
    assert np.count_nonzero(w) == 200 * 10
    assert (np.count_nonzero(w, axis=1) == 10).all()


def test_lif_reservoir_spikes():
    res = Reservoir(3, size=100, neuron_model='lif', seed=0)
    traces = _trajectory(res, _drive(3, 300))
    rate_trace = traces[50:].mean(axis=0)   # mean trace = rate * tau_trace
    assert np.isfinite(traces).all() and (traces >= 0).all()
    assert (rate_trace > 0).mean() > 0.5          # most neurons fire
    assert rate_trace.std() > 0.1                  # at different rates
    # the fastest possible firing (refractory then integrate from reset) is at most
    # every other sub-step; no neuron is near that saturation
    h = res.dt / res.lif_substeps
    saturated = res.lif_trace_time_constant_s / (2 * h)
    assert rate_trace.max() < 0.5 * saturated
    # traces vary over time: the spikes carry the input, not just a tonic rate
    assert traces[50:].std(axis=0).max() > 0.1


@pytest.mark.parametrize('kwargs', [
    {'neuron_model': 'gru'},
    {'n_inputs': 0},
    {'size': 0},
    {'density': 0.0},
    {'density': 1.5},
    {'dt': 0.0},
    {'dt': -0.01},
    {'spectral_radius': -0.5},
    {'spectral_radius': float('nan')},
    {'leak_rate': 0.0},
    {'leak_rate': 1.5},
    {'input_scaling': -1.0},
    {'neuron_model': 'ltc', 'ltc_unfolds': 0},
    {'neuron_model': 'lif', 'lif_substeps': 0},
    {'neuron_model': 'lif', 'lif_trace_time_constant_s': 0.0},
], ids=lambda kw: ','.join(f'{k}={v}' for k, v in kw.items()))
def test_invalid_settings_raise_value_error(kwargs):
    args = {'n_inputs': 3, 'size': 20}
    args.update(kwargs)
    with pytest.raises(ValueError):
        Reservoir(**args)


@pytest.mark.parametrize('model', NEURON_MODELS)
def test_twin_shares_weights_not_state(model):
    a = Reservoir(3, size=40, neuron_model=model, seed=5)
    inputs = _drive(3, 60)
    for u in inputs[:30]:
        a.step(u)
    b = a.twin()
    for wa, wb in zip(_weights(a), _weights(b)):
        assert wa is wb
    assert not np.shares_memory(a.state, b.state)
    assert not b.state.any()                     # the twin starts from rest
    before = a.state.copy()
    for u in inputs[30:]:
        b.step(u)
    np.testing.assert_array_equal(a.state, before)   # stepping the twin left a alone
    # same weights: from the same (reset) state, the same trajectory
    a.reset()
    b.reset()
    np.testing.assert_array_equal(_trajectory(a, inputs), _trajectory(b, inputs))
    a.reset()
    assert b.state.any()                         # resetting a left b alone


def test_an_input_of_the_wrong_length_is_refused():
    """A 2-value input to a 4-input reservoir read the 2 floats after it in memory."""
    res = Reservoir(4, size=20, seed=1)
    for u in (np.zeros(2), np.zeros(5), np.zeros((4, 1))):
        with pytest.raises(ValueError, match='reservoir expects 4 inputs'):
            res.step(u)
    assert res.step(np.zeros(4)).shape == (20,)

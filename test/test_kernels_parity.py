"""
Numba kernels against the plain numpy reference (lnn_control/kernels_numpy.py).

The reservoir kernels are driven through ``Reservoir.step`` and compared tick by
tick with the reference on the dense recurrent matrix. The fused lazy RLS
kernel is driven through ``RLSReadout`` (bias=False, so its features are the
reference's) and compared with ``reference.RLS`` (exponential forgetting with
the trace cap) and with a textbook directional-forgetting RLS written below.
"""
import copy

from lnn_control import kernels as K
from lnn_control import kernels_numpy as R
from lnn_control.reservoir import Reservoir
from lnn_control.rls import RLSReadout
from numba import njit
import numpy as np
import pytest

pytestmark = pytest.mark.unit

TOL = {'rtol': 1e-10, 'atol': 1e-10}
TICKS = 50


def _inputs(n_inputs, ticks, seed, scale=1.0):
    rng = np.random.default_rng(seed)
    return scale * rng.uniform(-1.0, 1.0, (ticks, n_inputs))


@pytest.mark.parametrize('seed', [0, 7])
def test_esn_step_matches_reference(seed):
    res = Reservoir(4, size=60, neuron_model='esn', seed=seed, leak_rate=0.4)
    w = res.dense_recurrent()
    x = np.zeros(res.size)
    moved = 0.0
    for u in _inputs(4, TICKS, seed):
        got = res.step(u)
        x = R.esn_step(x, u, res.w_in, w, res.bias, res.leak_rate)
        np.testing.assert_allclose(got, x, **TOL)
        moved = max(moved, np.abs(x).max())
    assert moved > 0.1   # the comparison is not between two zero vectors


@pytest.mark.parametrize('seed', [0, 7])
def test_ltc_step_matches_reference(seed):
    res = Reservoir(4, size=60, neuron_model='ltc', seed=seed, ltc_unfolds=4)
    w = res.dense_recurrent()
    x = np.zeros(res.size)
    for u in _inputs(4, TICKS, seed):
        got = res.step(u)
        x = R.ltc_step(x, u, res.w_in, w, res.bias, res.tau, res.reversal, res.dt,
                       res.ltc_unfolds)
        np.testing.assert_allclose(got, x, **TOL)
    assert np.abs(x).max() > 0.05


@pytest.mark.parametrize('seed', [0, 7])
def test_lif_step_matches_reference(seed):
    res = Reservoir(4, size=60, neuron_model='lif', seed=seed, input_scaling=1.0)
    w = res.dense_recurrent()
    n = res.size
    trace, v, refractory, spikes = (np.zeros(n) for _ in range(4))
    total_spikes = np.zeros(n)
    for u in _inputs(4, TICKS, seed):
        got_trace = res.step(u)
        trace, v, refractory, spikes = R.lif_step(
            trace, v, refractory, spikes, u, res.w_in, w, res.bias, res.dt,
            res.lif_substeps, res.tau_m, res.t_ref, res.lif_trace_time_constant_s)
        np.testing.assert_allclose(got_trace, trace, **TOL)
        np.testing.assert_allclose(res._v, v, **TOL)
        np.testing.assert_allclose(res._refractory, refractory, **TOL)
        np.testing.assert_array_equal(res._spikes, spikes)
        total_spikes += spikes
    # The inputs made neurons fire, but not all of them on every tick.
    assert total_spikes.sum() > 0.1 * n
    assert (total_spikes < TICKS).any()


# -- RLS ----------------------------------------------------------------------------

def _phi_sequence(rng, steps, n):
    """
    Return random features in phases of 40 steps.

    None, one direction only (with exponential forgetting the trace of P grows
    there, so the cap binds), rich excitation, small features.
    """
    out = []
    for t in range(steps):
        phase = (t // 40) % 4
        if phase == 0:
            out.append(np.zeros(n))
        elif phase == 1:
            phi = np.zeros(n)
            phi[0] = rng.standard_normal()
            out.append(phi)
        elif phase == 2:
            out.append(rng.standard_normal(n))
        else:
            out.append(0.05 * rng.standard_normal(n))
    return out


def _covariance(readout):
    """Return the full P without flushing the readout's pending update."""
    return copy.deepcopy(readout).covariance()


@pytest.mark.parametrize('gain_cap', [0.0, 0.3])
def test_rls_exponential_matches_reference(gain_cap):
    n, m, lam, delta = 4, 2, 0.99, 2.0
    rng = np.random.default_rng(3)
    ours = RLSReadout(n, m, forgetting_factor=lam, initial_covariance=delta, bias=False)
    ours.gain_cap = gain_cap
    ref = R.RLS(n, m, delta, lam, gain_cap=gain_cap)
    w_true = rng.standard_normal((n, m))
    capped = uncapped = gain_bound = 0
    for t, phi in enumerate(_phi_sequence(rng, 400, n)):
        target = w_true.T @ phi + 0.1 * rng.standard_normal(m)
        p_before = ref.p.copy()
        err_ours = ours.train(phi, target)
        err_ref = ref.update(phi, target)
        # Did the trace cap bind on this step? (trace before capping above the cap)
        pphi = p_before @ phi
        r = phi @ pphi
        den = max(lam + r, r / gain_cap) if gain_cap else lam + r
        gain_bound += den > lam + r
        free = (p_before - np.outer(pphi, pphi) / den) / lam
        if np.trace(free) > ref.trace_cap * (1 + 1e-9):
            capped += 1
        else:
            uncapped += 1
        _assert_same_step(ours, ref, err_ours, err_ref, t)
    np.testing.assert_allclose(ours.covariance(), ref.p, **TOL)
    assert capped > 20 and uncapped > 20, (capped, uncapped)
    assert (gain_bound > 20) == (gain_cap > 0), gain_bound      # the gain cap bound too


def _assert_same_step(ours, ref, err_ours, err_ref, t):
    """Error, weights and trace every step; the full covariance now and then."""
    np.testing.assert_allclose(err_ours, err_ref, **TOL)
    np.testing.assert_allclose(ours.w, ref.w, **TOL)
    np.testing.assert_allclose(ours.trace, np.trace(ref.p), **TOL)
    if t % 7 == 0 or t > 380:
        np.testing.assert_allclose(_covariance(ours), ref.p, **TOL)


class DirectionalRLS:
    """Textbook directional forgetting (Kulhavy), non-negative beta."""

    def __init__(self, n, m, delta, lam, gain_cap=0.0):
        self.p = np.eye(n) * delta
        self.w = np.zeros((n, m))
        self.lam = lam
        self.gain_cap = gain_cap

    def update(self, phi, target):
        err = target - self.w.T @ phi
        pphi = self.p @ phi
        r = phi @ pphi
        forgot = r > 1.0 - self.lam
        c = self.lam + r if forgot else 1.0
        if self.gain_cap and r > self.gain_cap * c:     # the sample weighted down
            c = r / self.gain_cap
        k = pphi / c
        if forgot:
            self.p = self.p - np.outer(pphi, pphi) * (r - 1.0 + self.lam) / (r * c)
        self.w += np.outer(k, err)
        return err, forgot


@pytest.mark.parametrize('gain_cap', [0.0, 0.3])
@pytest.mark.parametrize('lam', [0.9, 0.99])
def test_rls_directional_matches_textbook(lam, gain_cap):
    n, m, delta = 4, 2, 1.5
    rng = np.random.default_rng(11)
    ours = RLSReadout(n, m, forgetting_factor=lam, initial_covariance=delta, bias=False,
                      forgetting='directional')
    ours.gain_cap = gain_cap
    ref = DirectionalRLS(n, m, delta, lam, gain_cap)
    w_true = rng.standard_normal((n, m))
    branches = {True: 0, False: 0}
    for t, phi in enumerate(_phi_sequence(rng, 400, n)):
        target = w_true.T @ phi + 0.1 * rng.standard_normal(m)
        err_ours = ours.train(phi, target)
        err_ref, forgot = ref.update(phi, target)
        branches[forgot] += 1
        _assert_same_step(ours, ref, err_ours, err_ref, t)
    np.testing.assert_allclose(ours.covariance(), ref.p, **TOL)
    # Both branches (forgetting along phi, and phi too weak to forget) were exercised.
    assert branches[True] > 20 and branches[False] > 20, branches


@pytest.mark.parametrize('gain_cap', [0.0, 0.2])
def test_rls_post_factor_is_a_posteriori_error_ratio(gain_cap):
    """update() returns (error after the step) / (error before); a gain cap bounds it."""
    rng = np.random.default_rng(5)
    for forgetting in RLSReadout.FORGETTING:
        r = RLSReadout(3, 1, forgetting_factor=0.95, bias=False, forgetting=forgetting)
        r.gain_cap = gain_cap
        for phi in _phi_sequence(rng, 200, 3):
            target = np.array([phi.sum() + 0.3])
            before = target - r.predict(phi)
            if abs(before[0]) < 1e-6:
                r.update(phi, before)
                continue
            factor = r.update(phi, before.copy())
            after = target - r.predict(phi)
            np.testing.assert_allclose(after, factor * before, rtol=1e-9, atol=1e-12)
            assert 1.0 - (gain_cap or 1.0) - 1e-12 <= factor <= 1.0
    with pytest.raises(ValueError, match='gain_cap'):
        r.gain_cap = 1.5


@pytest.mark.parametrize('n_inputs', [10, 37])
@pytest.mark.parametrize('forgetting', RLSReadout.FORGETTING)
def test_rls_blocked_pass_with_bias_matches_reference(n_inputs, forgetting):
    """Sizes that leave a partial block of rows (the pass takes four at a time), with bias."""
    lam, delta = 0.99, 2.0
    rng = np.random.default_rng(n_inputs)
    ours = RLSReadout(n_inputs, 3, forgetting_factor=lam, initial_covariance=delta,
                      forgetting=forgetting)
    ref = (R.RLS(n_inputs + 1, 3, delta, lam) if forgetting == 'exponential'
           else DirectionalRLS(n_inputs + 1, 3, delta, lam))
    w_true = rng.standard_normal((n_inputs + 1, 3))
    for t, phi in enumerate(_phi_sequence(rng, 400, n_inputs)):
        x = np.concatenate([[1.0], phi])
        target = w_true.T @ x + 0.1 * rng.standard_normal(3)
        err_ours = ours.train(phi, target)
        err_ref = ref.update(x, target)
        err_ref = err_ref[0] if forgetting == 'directional' else err_ref
        _assert_same_step(ours, ref, err_ours, err_ref, t)
    np.testing.assert_allclose(ours.covariance(), ref.p, **TOL)


def test_rls_scale_fold_changes_nothing():
    """
    P = S x the stored array; folding S into the array mid-run gives the same steps.

    One readout is put at S just under 2^32 (its array divided by S, the same P), so its
    next pass folds S back into the array; the other never folds.
    """
    rng = np.random.default_rng(2)
    a = RLSReadout(21, 2, forgetting_factor=0.95, initial_covariance=1.0)
    for phi in rng.standard_normal((30, 21)):
        a.update(phi, rng.standard_normal(2))
    b = copy.deepcopy(a)
    big = 2.0 ** 31.99 / b._st[K.ST_SCALE]
    b._st[K.ST_SCALE] *= big
    b.p /= big
    for t, phi in enumerate(rng.standard_normal((40, 21))):
        err = rng.standard_normal(2)
        np.testing.assert_allclose(a.update(phi, err), b.update(phi, err), **TOL)
        np.testing.assert_allclose(a.w, b.w, **TOL)
        if t == 0:
            assert b._st[K.ST_SCALE] == 1.0      # folded on that pass
    np.testing.assert_allclose(a.covariance(), b.covariance(), **TOL)


def test_vectorised_tanh_within_two_ulp_of_libm():
    """The esn step's tanh (kernels._tanh): 2 ulp of np.tanh, exact at 0, +-inf and NaN."""
    tanh = njit(lambda x: K._tanh(x))
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(-25, 25, 2000), rng.uniform(-1, 1, 2000),
                        np.linspace(-0.7, 0.7, 1001), [0.625, -0.625, 20.0, -20.0, 1e-300]])
    got = np.array([tanh(v) for v in x])
    np.testing.assert_array_less(np.abs(got - np.tanh(x)), 2.01 * np.spacing(np.tanh(np.abs(x))))
    assert tanh(0.0) == 0.0 and np.signbit(tanh(-0.0))
    assert tanh(np.inf) == 1.0 and tanh(-np.inf) == -1.0 and np.isnan(tanh(np.nan))


_BOUNDS_RUN = """
import numpy as np
from lnn_control import control_kernels, forward_kernels, rls
from lnn_control.controller import AdaptiveController
for module in (control_kernels, forward_kernels, rls):
    module.warm_up()
base = {'joints': ['j1', 'j2'], 'kp': [50.0, 20.0], 'kd': [5.0, 2.0],
        'command_limit': [40.0, 20.0], 'reservoir.size': 30}
w = 2 * np.pi * np.array([0.3, 0.5])
for extra in ({}, {'reservoir.neuron_model': 'ltc'}, {'reservoir.neuron_model': 'lif'},
              {'controller.mode': 'inverse_model'}):
    ctrl = AdaptiveController({**base, **extra})
    for k in range(300):
        t = k * 0.01
        q_d, qd_d = 0.5 * np.sin(w * t), 0.5 * w * np.cos(w * t)
        ctrl.step((0.9 * q_d, qd_d), (q_d, qd_d, -w * w * q_d))
"""


@pytest.mark.slow
def test_kernels_stay_inside_their_arrays(tmp_path):
    """
    Every kernel, compiled with bounds checks, on the warm-ups and 300 controller ticks.

    Numba does not check indices by default: a kernel handed an array smaller than it
    writes (the supervisor's filter states once were, in a warm-up) corrupts memory
    silently. Here an out-of-bounds index raises instead.
    """
    import os
    import subprocess
    import sys
    env = {**os.environ, 'NUMBA_BOUNDSCHECK': '1', 'NUMBA_CACHE_DIR': str(tmp_path)}
    root = os.path.join(os.path.dirname(__file__), '..')
    env['PYTHONPATH'] = os.pathsep.join([root, env.get('PYTHONPATH', '')])
    run = subprocess.run([sys.executable, '-c', _BOUNDS_RUN], env=env, cwd=root,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]


def _carry_on_reference(q0, v, a, e, position_limit, velocity_limit):
    """One joint of ``control_kernels.carry_on``, written out case by case."""
    if v == 0.0:
        return q0, 0.0, 0.0
    stop = -v / a if v * a < 0.0 else np.inf
    if stop <= e:
        x, xd, xdd = q0 + v * stop + 0.5 * a * stop ** 2, 0.0, 0.0
    else:
        x, xd, xdd = q0 + v * e + 0.5 * a * e ** 2, v + a * e, a
    if abs(x) > position_limit:
        x, xd, xdd = np.sign(x) * position_limit, 0.0, 0.0
    if abs(xd) > velocity_limit:
        xd, xdd = np.sign(xd) * velocity_limit, 0.0
    return x, xd, xdd


def test_carrying_a_reference_on_matches_its_cases_written_out():
    from lnn_control.control_kernels import carry_on
    rng = np.random.default_rng(3)
    n = 2000
    q0, v, a = rng.uniform(-1, 1, n), rng.uniform(-2, 2, n), rng.uniform(-20, 20, n)
    v[::7] = 0.0
    e = 0.1
    plim, vlim = rng.uniform(0.5, 2.0, n), rng.uniform(0.5, 3.0, n)
    q, qd, qdd = np.zeros(n), np.zeros(n), np.zeros(n)
    carry_on(q0, v, a, e, plim, vlim, q, qd, qdd)
    want = np.array([_carry_on_reference(*args, e, pl, vl)
                     for *args, pl, vl in zip(q0, v, a, plim, vlim)])
    np.testing.assert_allclose(np.stack([q, qd, qdd], axis=1), want, rtol=1e-12, atol=1e-12)
    assert 0 < (want[:, 1] == 0.0).sum() < n           # every case came up
    carry_on(q0, v, a, 0.0, plim + 2.0, vlim + 3.0, q, qd, qdd)   # e 0: as sent
    np.testing.assert_array_equal(q, q0)
    np.testing.assert_array_equal(qd, v)

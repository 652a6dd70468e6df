"""RLSReadout: the estimator it computes, tracking, windup, persistence, refusals."""
import copy

from lnn_control.rls import RLSReadout
import numpy as np
import pytest

pytestmark = pytest.mark.unit

MODES = RLSReadout.FORGETTING   # ('exponential', 'directional')


def _snapshot(r):
    """Everything an update may touch, without flushing the readout itself."""
    return {'w': r.w.copy(), 'p': copy.deepcopy(r).covariance(), 'trace': r.trace,
            'updates': r.updates}


def _assert_same(r, snap):
    np.testing.assert_array_equal(r.w, snap['w'])
    np.testing.assert_array_equal(copy.deepcopy(r).covariance(), snap['p'])
    assert r.trace == snap['trace']
    assert r.updates == snap['updates']


def _trained(forgetting='exponential', n_inputs=4, n_outputs=2, steps=60, seed=0, lam=0.99):
    rng = np.random.default_rng(seed)
    r = RLSReadout(n_inputs, n_outputs, lam, 2.0, forgetting=forgetting)
    w_true = rng.standard_normal((n_inputs, n_outputs))
    for _ in range(steps):
        x = rng.standard_normal(n_inputs)
        r.train(x, w_true.T @ x + 0.1 * rng.standard_normal(n_outputs))
    return r


# (1) ---------------------------------------------------------------------------------
@pytest.mark.parametrize('forgetting', MODES)
def test_no_forgetting_equals_batch_ridge_regression(forgetting):
    """
    Without forgetting (lambda = 1), RLS is exactly ridge regression.

    From W0 = 0, P0 = delta I, RLS is ridge regression with ridge 1/delta on
    the features [1, x]; P is (X'X + I/delta)^-1.
    """
    rng = np.random.default_rng(1)
    n, m, steps, delta = 5, 2, 400, 10.0
    x = rng.standard_normal((steps, n)) + 0.5
    xb = np.hstack([np.ones((steps, 1)), x])
    w_true = rng.standard_normal((n + 1, m))
    y = xb @ w_true + 0.3 * rng.standard_normal((steps, m))
    r = RLSReadout(n, m, forgetting_factor=1.0, initial_covariance=delta, bias=True,
                   forgetting=forgetting)
    for k in range(steps):
        r.train(x[k], y[k])
    gram = xb.T @ xb + np.eye(n + 1) / delta
    w_batch = np.linalg.solve(gram, xb.T @ y)
    np.testing.assert_allclose(r.w, w_batch, rtol=0, atol=1e-8)
    np.testing.assert_allclose(r.covariance(), np.linalg.inv(gram), rtol=1e-8, atol=1e-12)
    # and it is a different estimate from plain least squares (the ridge matters)
    w_ls = np.linalg.lstsq(xb, y, rcond=None)[0]
    assert np.abs(w_ls - w_batch).max() > 1e-5


# (2) ---------------------------------------------------------------------------------
# Memory of exponential forgetting: 1/(1-lambda) = 20 samples. Directional
# forgetting removes information only along the current feature direction, so its
# memory is about n_features times longer (~100 samples here) and it needs more
# samples to settle.
SETTLE = {'exponential': 200, 'directional': 1500}


def _switching_run(forgetting, lam, seed, before=500, after=1600):
    rng = np.random.default_rng(seed)
    n, m = 4, 2
    w1, w2 = rng.standard_normal((n + 1, m)), rng.standard_normal((n + 1, m))
    r = RLSReadout(n, m, forgetting_factor=lam, initial_covariance=10.0,
                   forgetting=forgetting)
    param_err = np.empty(before + after)
    for t in range(before + after):
        w = w1 if t < before else w2
        x = rng.standard_normal(n)
        r.train(x, w.T @ np.r_[1.0, x] + 0.01 * rng.standard_normal(m))
        param_err[t] = np.abs(r.w - w).max()
    return param_err[:before], param_err[before:]


@pytest.mark.parametrize('seed', [0, 1])
@pytest.mark.parametrize('forgetting', MODES)
def test_tracks_switching_linear_system(forgetting, seed):
    pre, post = _switching_run(forgetting, 0.95, seed)
    assert pre[-1] < 0.01                       # learned the first system
    assert post[0] > 1.0                        # the switch is a real change
    bound, within = 0.02, SETTLE[forgetting]
    assert np.all(post[within:] < bound), (
        f'{forgetting}: parameter error {post[within:].max():.3g} >= {bound} '
        f'more than {within} steps after the switch')


@pytest.mark.parametrize('forgetting', MODES)
def test_without_forgetting_the_switch_is_not_tracked(forgetting):
    """Control for the test above: lambda = 1 must fail the same bound."""
    _, post = _switching_run(forgetting, 1.0, 0)
    assert post[SETTLE[forgetting]:].max() > 0.1


# (3) ---------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize('forgetting', MODES)
def test_no_windup_over_a_million_steps_without_excitation(forgetting):
    r = RLSReadout(5, 1, forgetting_factor=0.99, initial_covariance=1.0,
                   forgetting=forgetting)
    initial = r.trace
    zero = np.zeros(5)
    errors = 1e-3 * np.random.default_rng(0).standard_normal((10**6, 1))
    update = r.update
    worst = initial
    for k in range(10**6):
        update(zero, errors[k])
        tr = r.trace
        if tr > worst:
            worst = tr
    assert worst <= initial * (1 + 1e-12), worst
    p = r.covariance()
    assert np.isfinite(p).all() and np.isfinite(r.w).all()
    assert np.trace(p) <= initial * (1 + 1e-12)
    assert np.linalg.eigvalsh(p).min() > 0
    assert np.abs(r.w).max() < 10.0
    assert r.updates == 10**6


# (4) ---------------------------------------------------------------------------------
@pytest.mark.parametrize('forgetting', MODES)
def test_save_load_round_trip(tmp_path, forgetting):
    a = _trained(forgetting)
    path = str(tmp_path / 'readout.npz')
    a.save(path)
    with np.load(path, allow_pickle=False) as data:   # plain arrays, no pickles
        assert 'w' in data.files and 'p' in data.files
    b = RLSReadout(4, 2, 0.5, 7.0, forgetting=forgetting)
    b.load(path)
    assert b.forgetting_factor == a.forgetting_factor
    assert b.initial_covariance == a.initial_covariance
    rng = np.random.default_rng(9)
    for _ in range(50):
        x = rng.standard_normal(4)
        np.testing.assert_array_equal(a.predict(x), b.predict(x))
        target = rng.standard_normal(2)
        np.testing.assert_array_equal(a.train(x, target), b.train(x, target))
        np.testing.assert_array_equal(a.w, b.w)
    np.testing.assert_array_equal(a.covariance(), b.covariance())


@pytest.mark.parametrize('other', [
    {'n_inputs': 5, 'n_outputs': 2, 'bias': True},
    {'n_inputs': 4, 'n_outputs': 3, 'bias': True},
    {'n_inputs': 4, 'n_outputs': 2, 'bias': False},
])
def test_load_refuses_other_shape(tmp_path, other):
    src = RLSReadout(**other)
    src.train(np.ones(other['n_inputs']), np.ones(other['n_outputs']))
    path = str(tmp_path / 'other.npz')
    src.save(path)
    target = _trained()
    snap = _snapshot(target)
    ff = target.forgetting_factor
    with pytest.raises(ValueError, match='inputs, outputs, bias'):
        target.load(path)
    _assert_same(target, snap)
    assert target.forgetting_factor == ff


@pytest.mark.parametrize('saved,loading', [('exponential', 'directional'),
                                           ('directional', 'exponential')])
def test_load_refuses_other_forgetting_mode(tmp_path, saved, loading):
    path = str(tmp_path / 'r.npz')
    _trained(saved, seed=3, lam=0.95).save(path)
    target = _trained(loading)
    snap = _snapshot(target)
    with pytest.raises(ValueError, match='forgetting'):
        target.load(path)
    _assert_same(target, snap)
    assert target.forgetting_factor == 0.99


@pytest.mark.parametrize('field,value', [
    ('forgetting_factor', 1.5),
    ('forgetting_factor', np.nan),
    ('p', np.full((5, 5), np.nan)),
    ('p', np.eye(4)),
])
def test_load_invalid_state_leaves_target_unchanged(field, value):
    """A corrupt file (shape header right, contents wrong) is refused as a whole."""
    state = _trained(seed=5).state_dict()
    state[field] = np.asarray(value, dtype=float)
    target = _trained()
    snap = _snapshot(target)
    with pytest.raises(ValueError):
        target.load_state_dict(state)
    _assert_same(target, snap)
    assert target.forgetting_factor == 0.99


# (5) ---------------------------------------------------------------------------------
@pytest.mark.parametrize('forgetting', MODES)
@pytest.mark.parametrize('phi,err,match', [
    (np.zeros(5), np.zeros(2), 'expects 4 features'),
    (np.zeros(3), np.zeros(2), 'expects 4 features'),
    (np.zeros((4, 1)), np.zeros(2), 'expects 4 features'),
    (np.zeros(4), np.zeros(3), 'expects 2 errors'),
    (np.zeros(4), np.zeros((2, 1)), 'expects 2 errors'),
    (np.array([0.0, np.nan, 1.0, 2.0]), np.zeros(2), 'non-finite'),
    (np.array([0.0, np.inf, 1.0, 2.0]), np.zeros(2), 'non-finite'),
    (np.ones(4), np.array([np.nan, 0.0]), 'non-finite'),
    (np.ones(4), np.array([0.0, -np.inf]), 'non-finite'),
], ids=['long', 'short', '2d-phi', 'long-err', '2d-err', 'nan-phi', 'inf-phi',
        'nan-err', 'inf-err'])
def test_update_refuses_bad_data_unchanged(forgetting, phi, err, match):
    r = _trained(forgetting)
    snap = _snapshot(r)
    with pytest.raises(ValueError, match=match):
        r.update(phi, err)
    _assert_same(r, snap)
    # still works afterwards
    r.update(np.ones(4), np.ones(2))
    assert r.updates == snap['updates'] + 1


@pytest.mark.parametrize('forgetting', MODES)
@pytest.mark.parametrize('bias', [True, False])
def test_train_is_predict_then_update_in_one_call(forgetting, bias):
    """Train (one kernel call) = predict, subtract, update, bit for bit; frozen: no step."""
    a = RLSReadout(5, 2, 0.99, 3.0, forgetting=forgetting, bias=bias)
    b = copy.deepcopy(a)
    rng = np.random.default_rng(4)
    out = np.empty(2)
    for k in range(60):
        x, target = rng.standard_normal(5), rng.standard_normal(2)
        if k == 40:
            a.frozen = b.frozen = True
        got = a.train(x, target, out)
        assert got is out
        expected = target - b.predict(x)
        b.update(x, expected.copy())
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_array_equal(a.w, b.w)
    np.testing.assert_array_equal(a.covariance(), b.covariance())
    assert a.updates == b.updates == 40
    snap = _snapshot(a)
    with pytest.raises(ValueError, match='non-finite'):     # frozen: still refused
        a.train(np.ones(5), np.array([np.inf, 0.0]), out)
    with pytest.raises(ValueError, match='2 outputs'):
        a.train(np.ones(5), np.ones(2), np.empty(3))
    readonly = np.empty(2)
    readonly.flags.writeable = False
    for bad in (np.empty(2, dtype=np.float32), np.empty(2, dtype=np.int64), readonly):
        with pytest.raises(ValueError, match='writeable float64'):
            a.train(np.ones(5), np.ones(2), bad)
    _assert_same(a, snap)


@pytest.mark.parametrize('frozen', [False, True])
def test_train_into_its_own_target(frozen):
    """Train into the target array itself: the a-priori error, the same step."""
    a = RLSReadout(3, 2, 0.99, 3.0)
    a.gain_cap = 0.5
    b = copy.deepcopy(a)
    a.frozen = b.frozen = frozen
    rng = np.random.default_rng(5)
    for _ in range(30):
        x, target = rng.standard_normal(3), rng.standard_normal(2)
        expected = b.train(x, target.copy())
        got = a.train(x, target, target)
        assert got is target
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_array_equal(a.w, b.w)
    np.testing.assert_array_equal(a.covariance(), b.covariance())


def test_train_and_predict_refuse_bad_shapes():
    r = _trained()
    snap = _snapshot(r)
    with pytest.raises(ValueError, match='expects 2 targets'):
        r.train(np.ones(4), np.ones(3))
    with pytest.raises(ValueError, match='non-finite'):
        r.train(np.ones(4), np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match='expects 4 features'):
        r.predict(np.ones(6))
    _assert_same(r, snap)


@pytest.mark.parametrize('kwargs', [
    {'n_inputs': 0, 'n_outputs': 1}, {'n_inputs': 3, 'n_outputs': 0},
    {'n_inputs': 3, 'n_outputs': 1, 'forgetting_factor': 0.0},
    {'n_inputs': 3, 'n_outputs': 1, 'forgetting_factor': 1.01},
    {'n_inputs': 3, 'n_outputs': 1, 'forgetting_factor': np.nan},
    {'n_inputs': 3, 'n_outputs': 1, 'initial_covariance': 0.0},
    {'n_inputs': 3, 'n_outputs': 1, 'initial_covariance': np.inf},
    {'n_inputs': 3, 'n_outputs': 1, 'forgetting': 'window'},
])
def test_constructor_refuses_invalid_settings(kwargs):
    with pytest.raises(ValueError):
        RLSReadout(**kwargs)


def test_forgetting_factor_setter_refuses_invalid_and_keeps_old():
    r = RLSReadout(3, 1, forgetting_factor=0.98)
    for bad in (0.0, -0.5, 1.0001, np.nan, np.inf):
        with pytest.raises(ValueError, match='forgetting_factor'):
            r.forgetting_factor = bad
        assert r.forgetting_factor == 0.98


# (6) ---------------------------------------------------------------------------------
@pytest.mark.parametrize('forgetting', MODES)
def test_frozen_readout_does_not_learn(forgetting):
    r = _trained(forgetting)
    r.frozen = True
    snap = _snapshot(r)
    rng = np.random.default_rng(2)
    for _ in range(20):
        assert r.update(rng.standard_normal(4), rng.standard_normal(2)) == 1.0
        r.train(rng.standard_normal(4), rng.standard_normal(2))
    _assert_same(r, snap)
    r.frozen = False
    r.update(np.ones(4), np.ones(2))
    assert not np.array_equal(r.w, snap['w'])


# (7) ---------------------------------------------------------------------------------
@pytest.mark.parametrize('forgetting,lam', [('exponential', 0.99), ('exponential', 1.0),
                                            ('directional', 0.98)])
def test_covariance_stays_symmetric_positive_definite(forgetting, lam):
    """
    Correlated features: the hard case for a covariance update in floating point.

    Low-rank plus a little noise, intermittent silence.
    """
    rng = np.random.default_rng(4)
    n = 12
    mix = rng.standard_normal((n, 3))
    r = RLSReadout(n, 2, forgetting_factor=lam, initial_covariance=5.0, forgetting=forgetting)
    for t in range(20000):
        if (t // 1000) % 5 == 4:
            x = np.zeros(n)
        else:
            x = mix @ rng.standard_normal(3) + 1e-4 * rng.standard_normal(n)
        r.train(x, np.array([x.sum(), x[0] - x[1]]) + 0.01 * rng.standard_normal(2))
        if t % 2500 == 2499:
            p = copy.deepcopy(r).covariance()
            np.testing.assert_array_equal(p, p.T)
            eig = np.linalg.eigvalsh(p)
            assert eig.min() > 0, (t, eig.min())
            assert np.trace(p) <= 5.0 * (n + 1) * (1 + 1e-9)
            assert abs(r.trace - np.trace(p)) <= 1e-8 * np.trace(p)


def test_predict_refuses_an_output_buffer_of_the_wrong_shape():
    """A 1-element out for 4 outputs was written 3 values past its end."""
    readout = RLSReadout(6, 4)
    with pytest.raises(ValueError, match='readout has 4 outputs'):
        readout.predict(np.ones(6), np.zeros(1))
    assert readout.predict(np.ones(6), np.zeros(4)).shape == (4,)

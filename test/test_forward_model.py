"""The forward model: shared-covariance bookkeeping, prediction and anomaly detection."""
from lnn_control import closed_loop as CL
from lnn_control import control_kernels as CK
from lnn_control import forward_kernels as FK
from lnn_control.change_detector import ChangeDetector
from lnn_control.controller import AdaptiveController
from lnn_control.forward_model import ForwardModel, MemoryReadout
from lnn_control.rls import RLSReadout
import numpy as np
import pytest

pytestmark = pytest.mark.unit

NOISE = {'position_noise': 0.5e-3, 'velocity_noise': 5e-3}


@pytest.mark.parametrize('horizons', [(1,), (1, 3), (2, 5)])
def test_reservoir_readouts_take_exact_delayed_rls_steps_on_the_shared_gain(horizons):
    """
    Each horizon's readout equals RLS run on (features of t, state of t + h) pairs.

    With the covariance of the readout whose gain it borrows: a numpy reference keeps its
    own P on the same features and applies each tick's gain when the target arrives.
    (One tick ahead alone, the kernel keeps no features: its a-priori error is that of
    the prediction it stored.)
    """
    rng = np.random.default_rng(3)
    n_in, ticks = 6, 60
    slow = RLSReadout(n_in, 1, 1.0, 0.5)             # lambda 1: no trace cap acting
    fm = ForwardModel(1, n_in, horizons, 0.01, 0.3, 0.9999, detect=False)
    p = 0.5 * np.eye(n_in + 1)
    w = np.zeros((len(horizons), 2, n_in + 1))
    phis, xs, gains, bases = [], [], [], []     # bases: the plant readout's one-step part
    for t in range(ticks):
        phi, x = rng.standard_normal(n_in), rng.standard_normal(2)
        factor = slow.update(phi, rng.standard_normal(1))
        f = np.concatenate([[1.0], phi])
        k = p @ f / (1.0 + f @ p @ f)
        p -= np.outer(k, f @ p)
        np.testing.assert_allclose(slow._g * factor, k, rtol=1e-9, atol=1e-12)
        for i, h in enumerate(horizons):
            if t >= h:
                ff = np.concatenate([[1.0], phis[t - h]])
                base = bases[t - h] if h == 1 else 0.0
                w[i] += np.outer(x - xs[t - h] - base - w[i] @ ff, gains[t - h])
        fm.step(phi, x, np.zeros(1), np.ones(2), slow._g, factor)
        phis.append(phi)
        xs.append(x)
        gains.append(k)
        bases.append(fm._base[0].copy())
    np.testing.assert_allclose(fm.w, w, rtol=1e-9, atol=1e-12)


def test_no_gain_no_step():
    fm = ForwardModel(1, 4, (1,), 0.01, 0.3, 0.9999, detect=False)
    for t in range(20):
        fm.step(np.full(4, 0.1 * t), np.array([0.01 * t, 0.1]), np.array([1.0]), np.ones(2),
                np.ones(5), 0.0)
    assert not fm.w.any()


@pytest.mark.slow
@pytest.mark.parametrize('plant', ['pendulum', 'arm2'])
def test_prediction_error_after_30_s_of_learning(plant):
    trace = CL.run(plant, CL.plant_params(plant), 40.0)
    one_step, long = CL.prediction_nrmse(trace, 30.0, 40.0)
    assert one_step <= 0.02, one_step
    assert long <= 0.15, long         # 0.5 s ahead, the memory readout


def test_memory_readout_predicts_a_sum_of_sines_half_a_second_ahead():
    # what a reservoir with a memory of tenths of a second cannot: tell the components
    # of a sum of sines apart (their future) from seconds of history
    mem = MemoryReadout(1, 50, 0.01, 0.9999)
    t = np.arange(6000) * 0.01
    q = 0.5 * np.sin(2 * np.pi * 0.3 * t) + 0.2 * np.sin(2 * np.pi * 0.55 * t + 1.0)
    qd = np.gradient(q, 0.01)
    out = np.empty((t.size, 2))
    for k in range(t.size):
        x = np.array([q[k], qd[k]])
        mem.step(x, x, np.ones(2))      # tracking perfectly: desired = measured
        out[k] = mem.out
    sel = np.arange(4000, t.size - 50)
    assert np.sqrt(np.mean((out[sel, 0] - q[sel + 50]) ** 2)) / np.std(q) < 0.03
    # a restart keeps what was learned; the traces start again from the next values
    mem.restart()
    mem.step(np.array([q[0], qd[0]]), np.array([q[0], qd[0]]), np.ones(2))
    assert mem.readout.w.any() and mem.power == 0.0
    mem.reset()
    assert not mem.readout.w.any()


def test_memory_readout_steps_every_few_ticks_and_tracks_its_error_every_tick():
    """Its RLS step every MEMORY_LEARN_EVERY ticks (the cost); the prediction every tick."""
    h = 3
    mem = MemoryReadout(1, h, 0.01, 0.9999)
    assert mem.readout.forgetting_factor == pytest.approx(0.9999 ** FK.MEMORY_LEARN_EVERY)
    stepped, powers, outs = [], [], []
    for k in range(40):
        x = np.array([np.sin(0.1 * k), np.cos(0.1 * k)])
        w = mem.readout.w.copy()
        mem.step(x, x, np.ones(2))
        stepped.append(not np.array_equal(w, mem.readout.w))
        powers.append(mem.power)
        outs.append(mem.out.copy())
    expected = [k >= h and k % FK.MEMORY_LEARN_EVERY == 0 for k in range(40)]
    assert stepped == expected
    assert all(a != b for a, b in zip(powers[h:], powers[h + 1:]))     # every tick
    first = FK.MEMORY_LEARN_EVERY       # (before its first step it predicts zeros)
    assert all(not np.array_equal(a, b) for a, b in zip(outs[first:], outs[first + 1:]))


def test_the_anomaly_test_follows_the_detectors_switch():
    """The kernel reads the detector's own state: switched off, a change is not flagged."""
    def flags(enabled_after):
        fm = ForwardModel(1, 4, (1,), 0.01, 0.05, 0.9999)
        rng = np.random.default_rng(0)
        out = []
        for t in range(1500):
            if t == 1000:
                fm.detector.enabled = enabled_after
            u = np.array([np.sin(0.05 * t) + 0.1 * rng.standard_normal()])
            gain = 2.0 if t >= 1000 else 1.0      # the plant's response to the command
            x = np.array([0.0, gain * u[0] + 0.01 * rng.standard_normal()])
            out.append(fm.step(np.full(4, 0.1), x, u, np.ones(2), np.ones(5), 0.0) & 1)
        return sum(out[1000:])

    assert flags(True) >= 1
    assert flags(False) == 0


def test_anomaly_statistic_is_the_errors_correlation_with_the_command():
    """Near 0 while the error ignores the command, 1 when it follows it; unit-free."""
    rng = np.random.default_rng(1)
    u, noise = rng.choice([-1.0, 1.0], size=(2000, 2)), rng.normal(size=(2000, 2))

    def statistic(err, command):
        corr = np.zeros(7)
        for e, c in zip(err, command):
            assert FK.command_correlation(e, c, 0.05, 0.01, corr)
        return corr[6] ** 2

    assert statistic(noise, u) < 0.2
    assert statistic(0.3 * u, u) == pytest.approx(2.0)        # both joints follow it
    mixed = np.column_stack([-2.0 * u[:, 0], noise[:, 1]])
    assert statistic(mixed, 1e3 * u) == pytest.approx(statistic(mixed, u))
    assert 1.0 < statistic(mixed, u) < 1.2
    assert not FK.command_correlation(np.array([np.nan, 0.0]), np.ones(2), 0.05, 0.01,
                                      np.zeros(7))


@pytest.mark.slow
def test_anomaly_flags_a_payload_change_and_stays_quiet_before_it():
    trace = CL.run('pendulum', CL.plant_params('pendulum'), 44.0, payload_change_at=40.0,
                   **NOISE)
    anomalies = trace.meta['anomalies']
    assert anomalies and all(t >= 40.0 for t in anomalies), anomalies
    assert anomalies[0] <= 40.5, anomalies          # (40.12 s; 40.25 s before 2026-12-06)


@pytest.mark.slow
def test_steady_run_with_noise_raises_no_anomaly():
    trace = CL.run('arm2', CL.plant_params('arm2'), 90.0, **NOISE)
    assert trace.meta['anomalies'] == []


@pytest.mark.slow
def test_ten_steady_minutes_raise_no_anomaly_where_the_old_baseline_did():
    """Seed 1, coulomb pendulum: 24 false alarms against the 90th percentile of 5 s."""
    from lnn_control import zoo
    plant = 'pendulum_small_coulomb'
    params = {**zoo.controller_params(plant), 'reservoir.seed': 1, 'reference.seed': 1}
    trace = CL.run(zoo.model_name(plant), params, 600.0, noise_seed=1, **NOISE)
    assert [t for t in trace.meta['anomalies'] if t >= 30.0] == []


def test_the_anomaly_test_reads_its_own_baseline_not_the_change_detectors():
    fm = ForwardModel(1, 10, (1,), 0.01, 0.05, 0.999)
    st = fm.detector._st
    assert st[CK.CD_QUANTILE] == pytest.approx(0.995)
    assert st[CK.CD_A_HIST] == pytest.approx(0.01 / 30.0)
    assert st[CK.CD_LOG_EXCESS] == pytest.approx(np.log(2.5))
    assert ChangeDetector(1, 0.01, 1.0)._st[CK.CD_QUANTILE] == pytest.approx(0.9)


def test_controller_reports_predictions_and_can_switch_them_off():
    params = {'joints': ['a', 'b'], 'kp': [10.0], 'kd': [1.0], 'reservoir.size': 40}
    ctrl = AdaptiveController(params)
    assert ctrl.forward.horizons == (1, 50)
    for k in range(5):
        q = np.array([0.1, 0.2]) * k
        ctrl.step((q, np.zeros(2)), (q, np.zeros(2), np.zeros(2)))
    assert ctrl.forward.prediction(0).shape == (2, 2)
    ctrl.update_params({'prediction.anomaly_threshold': 0.7})
    assert ctrl.forward.detector.threshold == 0.7
    assert AdaptiveController({**params, 'prediction.enabled': False}).forward is None
    assert AdaptiveController({**params, 'controller.mode': 'inverse_model'}).forward is None
    with pytest.raises(ValueError):
        ctrl.update_params({'prediction.horizon_ticks': 2})        # read-only


def test_a_loaded_readouts_input_scales_carry_the_forward_model_with_them(tmp_path):
    """The model is not saved; its weights stayed in the old units after a load."""
    params = {'joints': ['a', 'b'], 'kp': [10.0], 'kd': [1.0], 'reservoir.size': 40}

    def trained(amplitude):
        ctrl = AdaptiveController(params)
        for k in range(200):
            t = 0.01 * k
            q, qd = amplitude * np.sin([t, 2 * t]), amplitude * np.cos([t, 2 * t])
            ctrl.step((0.9 * q, 0.9 * qd), (q, qd, -q))
        return ctrl
    trained(0.3).save(str(tmp_path / 'small.npz'))
    ctrl = trained(3.0)
    w, scale = ctrl.forward.w.copy(), ctrl.normalizer.scale.copy()
    ctrl.load(str(tmp_path / 'small.npz'))
    factors = ctrl.normalizer.input_factors(scale)
    assert factors.min() < 0.5
    m = factors.size
    np.testing.assert_allclose(ctrl.forward.w[:, :, 1:1 + m], w[:, :, 1:1 + m] * factors)


def test_pack_copies_arrays_into_one_buffer_that_the_kernels_read_as_the_same_views():
    arrays = [np.arange(5.0), np.arange(6.0).reshape(2, 3), np.arange(24.0).reshape(2, 3, 4)]
    buf, index, views = FK.pack(arrays)
    assert np.all(index[:, 0] % FK.ALIGN == 0)
    for a, v in zip(arrays, views):
        assert np.array_equal(a, v) and np.shares_memory(v, buf)
    views[2][1, 2, 3] = -1.0                        # written through a view...
    assert FK._view3(buf, index, 2)[1, 2, 3] == -1.0   # ...read by the kernel's view
    assert np.array_equal(FK._view2(buf, index, 1), arrays[1])
    assert np.array_equal(FK._view1(buf, index, 0), arrays[0])
    with pytest.raises(ValueError):
        FK.pack([np.arange(3)])                    # int64: not a float64 array


def test_forward_model_state_stays_in_its_one_buffer():
    # the tick passes only the buffer: an array rebound elsewhere would stop learning
    fm = ForwardModel(2, 6, (1, 3), 0.01, 0.3, 0.9999, memory_horizon=5)
    fm.reset()
    fm.rescale_inputs(np.full(6, 2.0))
    fm.plant.restart_covariance(0.5)
    fm.memory.readout.restart_covariance(0.5)
    owned = [fm._wk, fm._ring, fm._st, fm.w, fm.plant.p, fm.plant.w, fm.plant._st,
             fm.detector._st, fm.detector._hist, fm.memory.readout.p, fm.memory.readout.w,
             fm.memory._traces, fm.memory.out]
    assert all(np.shares_memory(a, fm._buf) for a in owned)
    x = np.array([0.1, -0.2, 0.3, 0.0])
    for k in range(8):
        fm.step(np.full(6, 0.1 * k), x * k, np.array([1.0, -1.0]), np.ones(4),
                np.ones(7), 0.5)
    assert fm.w.any() and fm.memory.readout.w.any()    # both learned through the buffer

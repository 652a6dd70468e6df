"""AdaptiveController (ROS-free): the tick, refusals, live parameters, persistence."""
import os
import pkgutil
import subprocess
import sys

import lnn_control
from lnn_control import forward_kernels as FK
from lnn_control import readout_file, schema
from lnn_control.controller import AdaptiveController
import numpy as np
import pytest

pytestmark = pytest.mark.unit

JOINTS = ['j1', 'j2']
# The signals below are open loop (the measurement ignores the command), so there
# is no loop for the learning supervisor to judge: it is off here and tested on
# plants in test_supervisor.py.
BASE = {'joints': JOINTS, 'reservoir.size': 40, 'kp': [20.0, 10.0], 'kd': [2.0, 1.0],
        'command_limit': [5.0, 3.0], 'supervisor.enabled': False}


def make(**overrides):
    cfg = dict(BASE)
    cfg.update(overrides)
    return AdaptiveController(cfg, dt=0.01)


def signals(ticks, n=2, seed=0):
    """(measured, desired) per tick: a sine reference, a lagging noisy measurement."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(ticks):
        t = k * 0.01
        w = 2 * np.pi * np.linspace(0.4, 0.8, n)
        q_d, qd_d, qdd_d = 0.5 * np.sin(w * t), 0.5 * w * np.cos(w * t), -0.5 * w**2 * np.sin(w * t)
        q = 0.4 * np.sin(w * (t - 0.05)) + 0.01 * rng.standard_normal(n)
        qd = 0.4 * w * np.cos(w * (t - 0.05)) + 0.01 * rng.standard_normal(n)
        out.append(((q, qd), (q_d, qd_d, qdd_d)))
    return out


def learned_state(ctrl):
    """Copy everything learned or carried between ticks (no flush of P)."""
    import copy
    return {'slow.w': ctrl.slow.w.copy(), 'fast.w': ctrl.fast.w.copy(),
            'slow.p': copy.deepcopy(ctrl.slow).covariance(),
            'fast.p': copy.deepcopy(ctrl.fast).covariance(),
            'state': ctrl.reservoir.state.copy(), 'ticks': ctrl.ticks,
            'slow.updates': ctrl.slow.updates}


def assert_unchanged(ctrl, snap):
    now = learned_state(ctrl)
    for key, value in snap.items():
        np.testing.assert_array_equal(now[key], value, err_msg=key)


@pytest.fixture(scope='module')
def trained_ctrl_factory():
    def factory(**overrides):
        ctrl = make(**overrides)
        for measured, desired in signals(100, n=ctrl.n):
            ctrl.step(measured, desired)
        return ctrl
    return factory


# -- the tick -----------------------------------------------------------------------
@pytest.mark.parametrize('model', ['esn', 'ltc', 'lif'])
def test_step_returns_finite_limited_commands(model):
    ctrl = make(**{'reservoir.neuron_model': model})
    limit = np.array(BASE['command_limit'])
    clipped = 0
    for k, (measured, desired) in enumerate(signals(200)):
        if k % 50 == 49:   # a large tracking error drives the PD part into the limit
            measured = (measured[0] - 3.0, measured[1])
        cmd = ctrl.step(measured, desired)
        assert cmd.shape == (2,)
        assert np.isfinite(cmd).all()
        assert (np.abs(cmd) <= limit).all()
        clipped += int((np.abs(cmd) == limit).any())
    assert clipped >= 4
    assert ctrl.ticks == 200
    # learning pauses on the tick after a saturated command (anti-windup)
    assert 0 < ctrl.saturation_pauses <= clipped
    assert ctrl.slow.updates == 200 - ctrl.saturation_pauses
    assert np.abs(ctrl.slow.w).max() > 0      # it learned something


@pytest.mark.parametrize('supervised', [False, True])
@pytest.mark.parametrize('mode', ['feedback_error', 'inverse_model'])
def test_act_then_adapt_is_the_step_and_the_command_waits_for_nothing(mode, supervised):
    """
    A front end sends ``act``'s command before ``adapt`` learns.

    Same commands and learned state as ``step``, bit for bit; the command is final
    before the learning step runs (feedback_error: act takes no RLS step), and an
    ``act`` without ``adapt`` finishes the previous tick's learning.
    """
    settings = {'controller.mode': mode, 'supervisor.enabled': supervised}
    whole, split, skipping = make(**settings), make(**settings), make(**settings)
    for measured, desired in signals(150):
        expected = whole.step(measured, desired).copy()
        before = learned_state(split)
        command = split.act(measured, desired)
        sent = command.copy()
        if mode == 'feedback_error':       # act learns nothing
            assert split.slow.updates == before['slow.updates']
        split.adapt()
        split.adapt()                      # a second adapt has nothing left to do
        np.testing.assert_array_equal(command, sent)
        np.testing.assert_array_equal(sent, expected)
        np.testing.assert_array_equal(skipping.act(measured, desired), expected)
    (measured, desired), = signals(1, seed=7)
    whole.step(measured, desired)
    skipping.act(measured, desired)        # saved with its pending learning step
    np.testing.assert_equal(readout_file.controller_arrays(skipping),
                            readout_file.controller_arrays(whole))
    split.act(measured, desired)
    for ctrl in (split, skipping, whole):   # a pending step learns on the old covariance
        ctrl.plant_changed('test')
    # open loop, the supervisor freezes learning early (its interventions are compared)
    assert whole.slow.updates > (0 if supervised else 10)
    for ctrl in (split, skipping):
        assert_unchanged(ctrl, learned_state(whole))
        assert ctrl.supervisor.counts == whole.supervisor.counts


def test_command_is_read_only_view():
    ctrl = make()
    (measured, desired), = signals(1)
    cmd = ctrl.step(measured, desired)
    with pytest.raises(ValueError):
        cmd[0] = 1.0


def test_pd_part_without_learning():
    """With zero readouts the command is kp (q_d - q) + kd (qd_d - qd), clipped."""
    ctrl = make(**{'learning_enabled': False})
    q, qd = np.array([0.1, -0.2]), np.array([0.0, 0.3])
    q_d, qd_d = np.array([0.15, -0.1]), np.array([0.2, 0.1])
    cmd = ctrl.step((q, qd), (q_d, qd_d, np.zeros(2))).copy()
    expected = np.array([20.0, 10.0]) * (q_d - q) + np.array([2.0, 1.0]) * (qd_d - qd)
    np.testing.assert_allclose(cmd, np.clip(expected, -5.0, 5.0), rtol=1e-12)


BAD_INPUTS = {
    'measured-short': (([0.0], [0.0, 0.0]), ([0.0] * 2,) * 3),
    'measured-long': (([0.0] * 3, [0.0] * 2), ([0.0] * 2,) * 3),
    'desired-2d': (([0.0] * 2,) * 2, (np.zeros((2, 1)), [0.0] * 2, [0.0] * 2)),
    'measured-missing-velocity': (([0.0] * 2,), ([0.0] * 2,) * 3),
    'desired-missing-accel': (([0.0] * 2,) * 2, ([0.0] * 2,) * 2),
    'nan-position': (([np.nan, 0.0], [0.0] * 2), ([0.0] * 2,) * 3),
    'inf-velocity': (([0.0] * 2, [0.0, np.inf]), ([0.0] * 2,) * 3),
    'nan-desired': (([0.0] * 2,) * 2, ([0.0] * 2, [np.nan, 0.0], [0.0] * 2)),
    'inf-accel': (([0.0] * 2,) * 2, ([0.0] * 2, [0.0] * 2, [-np.inf, 0.0])),
    # finite but beyond any robot: its input scale made the rescaled weights inf, then
    # every later command NaN
    'huge-desired': (([0.0] * 2,) * 2, ([1e307, 0.0], [0.0] * 2, [0.0] * 2)),
    'huge-position': (([-1.5e308, 0.0], [0.0] * 2), ([0.0] * 2,) * 3),
}


def _as_float64_arrays(values):
    return tuple(np.asarray(v, dtype=float) for v in values)


@pytest.mark.parametrize('arrays', [False, True], ids=['lists', 'float64-arrays'])
@pytest.mark.parametrize('mode', ['feedback_error', 'inverse_model'])
@pytest.mark.parametrize('case', list(BAD_INPUTS))
def test_bad_input_raises_and_changes_nothing(trained_ctrl_factory, case, mode, arrays):
    """Float64 arrays take the one-kernel input check, anything else the Python one."""
    ctrl = trained_ctrl_factory(**{'controller.mode': mode})
    snap = learned_state(ctrl)
    terms = [t.copy() for t in ctrl.tick_terms()]
    measured, desired = BAD_INPUTS[case]
    if arrays:
        measured, desired = _as_float64_arrays(measured), _as_float64_arrays(desired)
    with pytest.raises(ValueError):
        ctrl.step(measured, desired)
    assert_unchanged(ctrl, snap)
    # ~/controller_state shows the last valid tick, not the refused values (it showed NaN)
    for before, after in zip(terms, ctrl.tick_terms()):
        np.testing.assert_array_equal(before, after)
    # and the controller carries on
    (m, d), = signals(1)
    assert np.isfinite(ctrl.step(m, d)).all()


@pytest.mark.parametrize('measured, desired', [
    (None, ([0.0] * 2,) * 3), (([0.0] * 2,) * 2, 1.0), ((1.0, 2.0), ([0.0] * 2,) * 3),
    ((['a', 'b'], [0.0] * 2), ([0.0] * 2,) * 3), (([0.0] * 2,) * 2, ({}, [0.0] * 2, None)),
])
def test_inputs_that_are_no_arrays_are_a_value_error_too(trained_ctrl_factory, measured,
                                                         desired):
    """None or a number raised TypeError, which a front end catching ValueError missed."""
    ctrl = trained_ctrl_factory()
    snap = learned_state(ctrl)
    with pytest.raises(ValueError, match='measured is|values per quantity|numbers per'):
        ctrl.step(measured, desired)
    assert_unchanged(ctrl, snap)


@pytest.mark.parametrize('dt', [1e-5, 2.0, 0.0, -0.01, float('nan')])
def test_a_time_step_outside_the_control_rates_range_is_refused(dt):
    """dt= skipped the control_rate_hz range that the parameter has."""
    with pytest.raises(ValueError, match='control_rate_hz'):
        AdaptiveController(BASE, dt=dt)


def test_params_cannot_be_changed_through_what_they_return():
    """params['kp'][0] = 99 changed the mapping the controller reports and saves."""
    ctrl = make()
    ctrl.params['kp'][0] = 99.0
    ctrl.params['joints'][0] = 'other'
    assert list(ctrl.params['kp']) == BASE['kp'] and list(ctrl.params['joints']) == JOINTS


def test_lists_float32_and_strided_inputs_give_the_float64_commands():
    """The fast input path (float64 vectors) and the general one load the same values."""
    a, b = make(), make()
    forms = (list, lambda v: v.astype(np.float32), lambda v: np.repeat(v, 2)[::2])
    for k, (m, d) in enumerate(signals(60)):
        m, d = tuple(map(forms[k % 3], m)), tuple(map(forms[k % 3], d))
        np.testing.assert_array_equal(a.step(_as_float64_arrays(m), _as_float64_arrays(d)),
                                      b.step(m, d))


# -- live parameters ------------------------------------------------------------------
def test_update_params_applies_live_settings_without_touching_weights(trained_ctrl_factory):
    ctrl = trained_ctrl_factory()
    snap = learned_state(ctrl)
    lam_slow = _valid_other('rls.forgetting_factor', ctrl.slow.forgetting_factor)
    lam_fast = _valid_other('rls.fast_forgetting_factor', ctrl.fast.forgetting_factor)
    ctrl.update_params({'kp': [1.0, 2.0], 'kd': [0.5], 'command_limit': [70.0, 80.0],
                        'learning_enabled': False, 'rls.forgetting_factor': lam_slow,
                        'rls.fast_forgetting_factor': lam_fast})
    np.testing.assert_array_equal(ctrl.kp, [1.0, 2.0])
    np.testing.assert_array_equal(ctrl.kd, [0.5, 0.5])           # broadcast
    np.testing.assert_array_equal(ctrl.command_limit, [70.0, 80.0])
    assert ctrl.learning_enabled is False
    assert ctrl.slow.forgetting_factor == lam_slow
    assert ctrl.fast.forgetting_factor == lam_fast
    # the forward model's own readouts take it live too, as they do at start-up
    assert ctrl.forward.plant.forgetting_factor == lam_slow
    # (the memory readout learns every MEMORY_LEARN_EVERY ticks: the same time constant)
    assert ctrl.forward.memory.readout.forgetting_factor == lam_slow ** FK.MEMORY_LEARN_EVERY
    assert ctrl.params['rls.forgetting_factor'] == lam_slow
    assert_unchanged(ctrl, snap)
    # the new gains act on the next tick
    cmd = ctrl.step((np.zeros(2), np.zeros(2)), (np.full(2, 0.1), np.zeros(2), np.zeros(2)))
    ff = ctrl._ff.copy()
    assert (np.abs(cmd) < [70.0, 80.0]).all()
    np.testing.assert_allclose(cmd, np.array([0.1, 0.2]) + ff, rtol=1e-12)


@pytest.mark.parametrize('changes,name', [
    ({'reservoir.size': 60}, 'reservoir.size'),
    ({'reservoir.neuron_model': 'lif'}, 'reservoir.neuron_model'),
    ({'controller.mode': 'inverse_model'}, 'controller.mode'),
    ({'joints': ['j1']}, 'joints'),
    ({'joints': ['j1', 'j2', 'j3']}, 'joints'),
    ({'input.position_scale': [2.0, 2.0]}, 'input.position_scale'),
    ({'rls.fast_learner': False}, 'rls.fast_learner'),
], ids=lambda v: str(v) if isinstance(v, str) else None)
def test_update_params_refuses_read_only(trained_ctrl_factory, changes, name):
    ctrl = trained_ctrl_factory()
    before = np.array(ctrl.params[name], copy=True)
    snap = learned_state(ctrl)
    with pytest.raises(ValueError, match=name.replace('.', r'\.')):
        ctrl.update_params(changes)
    np.testing.assert_array_equal(ctrl.params[name], before)
    assert_unchanged(ctrl, snap)


def test_update_params_accepts_read_only_at_current_value(trained_ctrl_factory):
    """
    Re-sending the configured value of a read-only setting is not a change.

    (As a full parameter file does.)
    """
    ctrl = trained_ctrl_factory()
    ctrl.update_params({'reservoir.size': 40, 'joints': list(JOINTS), 'kp': [3.0, 3.0]})
    np.testing.assert_array_equal(ctrl.kp, [3.0, 3.0])


def _out_of_range(name):
    p = schema.by_name()[name]
    return p.high + 1.0


def _valid_other(name, current):
    """Return a valid value of the live double ``name`` different from ``current``."""
    p = schema.by_name()[name]
    value = 0.5 * (p.low + p.high)
    assert value != current
    return value


@pytest.mark.parametrize('bad,name', [
    ({'kp': [1.0, 2.0, 3.0]}, 'kp'),               # wrong length
    ({'kd': []}, 'kd'),
    ({'kp': [np.nan, 1.0]}, 'kp'),                  # NaN
    ({'command_limit': [0.0, 1.0]}, 'command_limit'),   # out of range (open low)
    ({'kd': [-1.0]}, 'kd'),
    ({'rls.forgetting_factor': _out_of_range('rls.forgetting_factor')},
     'rls.forgetting_factor'),
    ({'rls.fast_forgetting_factor': -0.5}, 'rls.fast_forgetting_factor'),
    ({'rls.forgetting_factor': np.inf}, 'rls.forgetting_factor'),
    ({'learning_enabled': 'yes'}, 'learning_enabled'),
    ({'no.such.parameter': 1.0}, 'no.such.parameter'),
    ({'reservoir.size': 41}, 'reservoir.size'),     # read-only next to valid ones
    ({'kp': 5.0}, 'kp'),                            # a scalar for an array parameter
], ids=lambda v: None if isinstance(v, dict) else v)
def test_update_params_refuses_invalid_and_applies_nothing(trained_ctrl_factory, bad, name):
    ctrl = trained_ctrl_factory()
    snap = learned_state(ctrl)
    kp, kd, limit = ctrl.kp.copy(), ctrl.kd.copy(), ctrl.command_limit.copy()
    lam_slow, lam_fast = ctrl.slow.forgetting_factor, ctrl.fast.forgetting_factor
    params = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in ctrl.params.items()}
    # valid entries before and after the invalid one must not be applied either
    changes = {'kp': [1.0, 1.0], 'learning_enabled': False,
               'rls.forgetting_factor': _valid_other('rls.forgetting_factor', lam_slow)}
    changes.update(bad)
    changes.setdefault('command_limit', [9.0, 9.0])
    changes.setdefault('rls.fast_forgetting_factor',
                       _valid_other('rls.fast_forgetting_factor', lam_fast))
    with pytest.raises(ValueError, match=name.replace('.', r'\.')):
        ctrl.update_params(changes)
    np.testing.assert_array_equal(ctrl.kp, kp)
    np.testing.assert_array_equal(ctrl.kd, kd)
    np.testing.assert_array_equal(ctrl.command_limit, limit)
    assert ctrl.learning_enabled is True
    assert ctrl.slow.forgetting_factor == lam_slow
    assert ctrl.fast.forgetting_factor == lam_fast
    assert set(ctrl.params) == set(params)
    for k, v in params.items():
        np.testing.assert_array_equal(ctrl.params[k], v, err_msg=k)
    assert_unchanged(ctrl, snap)


@pytest.mark.parametrize('mode', ['feedback_error', 'inverse_model'])
def test_learning_disabled_keeps_weights(trained_ctrl_factory, mode):
    ctrl = trained_ctrl_factory(**{'controller.mode': mode})
    ctrl.update_params({'learning_enabled': False})
    w_slow, w_fast = ctrl.slow.w.copy(), ctrl.fast.w.copy()
    updates = ctrl.slow.updates
    commands = [ctrl.step(m, d).copy() for m, d in signals(100, seed=1)]
    np.testing.assert_array_equal(ctrl.slow.w, w_slow)
    np.testing.assert_array_equal(ctrl.fast.w, w_fast)
    assert ctrl.slow.updates == updates
    assert np.isfinite(commands).all()
    # the learned feedforward is still applied
    assert np.abs(ctrl._ff).max() > 0
    ctrl.update_params({'learning_enabled': True})
    for m, d in signals(5, seed=2):
        ctrl.step(m, d)
    assert not np.array_equal(ctrl.slow.w, w_slow)


# -- persistence ----------------------------------------------------------------------
@pytest.mark.parametrize('mode', ['feedback_error', 'inverse_model'])
def test_save_load_gives_identical_commands(tmp_path, trained_ctrl_factory, mode):
    a = trained_ctrl_factory(**{'controller.mode': mode})
    path = str(tmp_path / 'ctrl.npz')
    a.save(path)
    b = make(**{'controller.mode': mode})
    assert not np.array_equal(a.slow.w, b.slow.w)
    b.load(path)
    a.reset_state()
    for m, d in signals(150, seed=4):   # learning stays on: updates must match too
        np.testing.assert_array_equal(a.step(m, d), b.step(m, d))
    np.testing.assert_array_equal(a.slow.w, b.slow.w)
    np.testing.assert_array_equal(a.fast.w, b.fast.w)


def test_forward_model_keeps_stepping_its_own_state_after_every_rebuild_path(
        tmp_path, trained_ctrl_factory):
    """
    The controller steps the forward model through a call bound to arrays made once.

    After a reset, a load, a parameter change, a plant change and a scale growth it
    must still step the model's own state (a stale binding would leave it standing).
    """
    ctrl = trained_ctrl_factory()
    path = str(tmp_path / 'ctrl.npz')
    ctrl.save(path)
    big = [(np.full(2, 5.0), np.zeros(2)), (np.full(2, 5.0), np.zeros(2), np.zeros(2))]
    for change in (ctrl.reset_learning, lambda: ctrl.load(path),
                   lambda: ctrl.update_params({'kp': [3.0, 4.0]}),
                   lambda: ctrl.plant_changed('test'), lambda: ctrl.step(*big)):
        change()
        state, pred = ctrl.forward._buf.copy(), ctrl.forward.prediction(0).copy()
        for measured, desired in signals(3, seed=7, n=ctrl.n):
            ctrl.step(measured, desired)
        assert ctrl.forward.ticks >= 1           # (a scale growth restarts its ring)
        assert not np.array_equal(ctrl.forward._buf, state)
        assert not np.array_equal(ctrl.forward.prediction(0), pred)


def test_load_keeps_forgetting_factors_consistent_with_parameters(
        tmp_path, trained_ctrl_factory):
    """
    The readouts must run with the forgetting factors the parameters report.

    Whatever factors the loaded file was saved with.
    """
    path = str(tmp_path / 'lam.npz')
    saved = trained_ctrl_factory(**{'rls.forgetting_factor': 0.95,
                                    'rls.fast_forgetting_factor': 1.0})
    saved.save(path)
    target = make()
    target.load(path)
    np.testing.assert_array_equal(target.slow.w, saved.slow.w)
    assert target.slow.forgetting_factor == target.params['rls.forgetting_factor']
    assert target.fast.forgetting_factor == target.params['rls.fast_forgetting_factor']


@pytest.mark.parametrize('other', [
    {'joints': ['j1', 'x2']},                               # same shape, other names
    {'joints': ['j1'], 'kp': [1.0], 'kd': [1.0], 'command_limit': [1.0]},
    {'controller.mode': 'inverse_model'},
    {'reservoir.neuron_model': 'ltc'},                      # same shapes, other reservoir
    {'reservoir.seed': 7},
])
def test_load_refuses_file_for_other_controller(tmp_path, trained_ctrl_factory, other):
    path = str(tmp_path / 'other.npz')
    trained_ctrl_factory(**other).save(path)
    target = trained_ctrl_factory()
    snap = learned_state(target)
    with pytest.raises(ValueError):
        target.load(path)
    assert_unchanged(target, snap)


def test_load_names_the_reservoir_setting_and_the_rate_that_differ(
        tmp_path, trained_ctrl_factory):
    path = str(tmp_path / 'other.npz')
    trained_ctrl_factory(**{'reservoir.leak_rate': 0.5}).save(path)
    with pytest.raises(ValueError, match='reservoir.leak_rate 0.5 there, 0.3 here$'):
        trained_ctrl_factory().load(path)
    AdaptiveController(BASE, dt=0.004).save(path)        # the features' time base
    target = trained_ctrl_factory()
    snap = learned_state(target)
    with pytest.raises(ValueError, match='learned at 250 Hz, not at 100 Hz'):
        target.load(path)
    assert_unchanged(target, snap)


@pytest.mark.parametrize('dt', [0.0, -0.01, float('nan')])
def test_load_refuses_a_file_whose_control_period_is_no_period(tmp_path, trained_ctrl_factory,
                                                               dt):
    """A saved dt of 0 raised ZeroDivisionError while the refusal was worded."""
    arrays = readout_file.controller_arrays(trained_ctrl_factory())
    arrays['dt'] = np.float64(dt)
    path = str(tmp_path / 'odd.npz')
    readout_file.save_npz(path, arrays)
    target = trained_ctrl_factory()
    snap = learned_state(target)
    with pytest.raises(ValueError, match='invalid control period'):
        target.load(path)
    assert_unchanged(target, snap)


def test_load_refuses_other_joints_with_message(tmp_path, trained_ctrl_factory):
    path = str(tmp_path / 'other.npz')
    trained_ctrl_factory(joints=['j1', 'x2']).save(path)
    with pytest.raises(ValueError, match='joints'):
        make().load(path)


def test_inverse_model_runs_and_learns():
    ctrl = make(**{'controller.mode': 'inverse_model'})
    commands = [ctrl.step(m, d).copy() for m, d in signals(200)]
    assert np.isfinite(commands).all()
    assert (np.abs(commands) <= np.array(BASE['command_limit'])).all()
    assert ctrl.slow.updates == 199          # no training pair on the first tick
    assert np.abs(ctrl.slow.w).max() > 0
    assert np.isfinite(ctrl.learning_error)


@pytest.mark.parametrize('overrides', [{'joints': []}, {'reservoir.size': 5},
                                       {'kp': [1.0, 2.0, 3.0]}, {'bogus': 1}])
def test_constructor_refuses_invalid_configuration(overrides):
    with pytest.raises(ValueError):
        make(**overrides)


# -- no ROS in the core -------------------------------------------------------------------
# Every module of the ROS-free core: all of lnn_control but the ROS adapters
# (ros/), the tools built on them (tools/) and the command line.
CORE = sorted(m.name for m in pkgutil.iter_modules(lnn_control.__path__)
              if m.name not in ('ros', 'tools', 'cli'))


@pytest.mark.slow
def test_core_modules_do_not_import_rclpy():
    procs = {
        name: subprocess.Popen(
            [sys.executable, '-c',
             f"import lnn_control.{name}, sys; assert 'rclpy' not in sys.modules, "
             f"'lnn_control.{name} imports rclpy'"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=dict(os.environ))
        for name in CORE}
    failures = {}
    for name, proc in procs.items():
        out, _ = proc.communicate(timeout=120)
        if proc.returncode != 0:
            failures[name] = out.decode(errors='replace')[-500:]
    assert not failures, failures


def test_rclpy_import_would_be_detected():
    """The check above can fail: rclpy is importable in this environment."""
    out = subprocess.run([sys.executable, '-c',
                          "import rclpy, sys; assert 'rclpy' in sys.modules"],
                         capture_output=True, env=dict(os.environ))
    assert out.returncode == 0, out.stderr.decode()


# -- the shared control-loop tick -----------------------------------------------------
def test_control_loop_stale_zero_resume_and_refusal():
    from lnn_control.loop import REFUSED, RESUMED, STALE, STATE_FIELDS, ControlLoop

    ctrl = make()
    loop = ControlLoop(ctrl, sensor_timeout_s=0.02, stale_action='zero')
    (measured, desired), = signals(1)
    loop.sensor_received(0)
    assert loop.tick(10_000_000, measured, desired) is None
    assert np.abs(loop.command).max() > 0
    table = loop.state(np.zeros((ctrl.n, len(STATE_FIELDS))))
    np.testing.assert_array_equal(table[:, [0, 1]], np.column_stack([desired[0], measured[0]]))
    np.testing.assert_allclose(table[:, 3] + table[:, 4], loop.command, atol=1e-12)
    assert loop.tick(30_000_000, measured, desired) == STALE      # 30 ms > 20 ms
    assert (loop.command == 0).all() and loop.stale_episodes == 1
    # the table says what was sent: zero; the terms of the last computed tick stay
    stale = loop.state(np.zeros((ctrl.n, len(STATE_FIELDS))))
    assert (stale[:, 5] == 0).all() and (stale[:, :5] == table[:, :5]).all()
    assert loop.tick(40_000_000, measured, desired) is None       # logged once per episode
    loop.sensor_received(40_000_000)
    assert loop.tick(50_000_000, measured, desired) == RESUMED
    bad = (np.array([np.nan, 0.0]), measured[1])
    assert loop.tick(60_000_000, bad, desired) == REFUSED
    assert 'non-finite' in loop.refusal and (loop.command == 0).all()
    # a learning step that refuses (after the command went out) is reported, not raised
    loop.sensor_received(60_000_000)
    loop.controller._learn = lambda *args: (_ for _ in ()).throw(ValueError('refused'))
    assert loop.act(70_000_000, measured, desired) is None and np.abs(loop.command).max() > 0
    assert loop.adapt() == REFUSED and loop.refusal == 'refused'
    hold = ControlLoop(make(), sensor_timeout_s=0.02, stale_action='hold')
    hold.tick(10_000_000, measured, desired)
    last = hold.command.copy()
    hold.tick(40_000_000, measured, desired)
    np.testing.assert_array_equal(hold.command, last)


def test_the_inverse_model_learns_no_transition_across_a_refused_tick():
    """Zero was applied at the refused tick; the next one learned the command before it."""
    from lnn_control.loop import REFUSED, ControlLoop

    ctrl = make(**{'controller.mode': 'inverse_model'})
    loop = ControlLoop(ctrl, sensor_timeout_s=1.0)
    ticks = signals(60)
    for k, (measured, desired) in enumerate(ticks[:50]):
        loop.tick(k * 10_000_000, measured, desired)
    bad = (np.array([np.nan, 0.0]), ticks[50][0][1])
    assert loop.tick(500_000_000, bad, ticks[50][1]) == REFUSED
    updates = ctrl.slow.updates
    loop.tick(510_000_000, *ticks[51])       # its previous tick is unknown: nothing to learn
    assert ctrl.slow.updates == updates
    loop.tick(520_000_000, *ticks[52])
    assert ctrl.slow.updates == updates + 1


def test_a_supervisor_switched_on_live_rolls_back_no_further_than_what_it_found():
    """Its snapshot was the zeros from construction: the first trip wiped all learned."""
    ctrl = make(**{'supervisor.enabled': False})
    for measured, desired in signals(300):
        ctrl.step(measured, desired)
    learned = ctrl.slow.w.copy()
    assert np.abs(learned).max() > 0
    ctrl.update_params({'supervisor.enabled': True})
    ctrl.supervisor._rollback('injected by the test')
    np.testing.assert_array_equal(ctrl.slow.w, learned)


@pytest.mark.parametrize('bad', [np.nan, np.inf, -np.inf])
def test_the_loop_never_lets_a_non_finite_command_out(bad):
    from lnn_control.loop import ControlLoop

    ctrl = make()
    loop = ControlLoop(ctrl, sensor_timeout_s=1.0)
    (measured, desired), = signals(1)
    ctrl.act = lambda *args: np.array([1.0, bad])
    loop.act(0, measured, desired)
    assert (loop.command == 0).all()
    ctrl.act = lambda *args: np.array([1e6, -1e6])      # the largest limits: let through
    loop.act(0, measured, desired)
    np.testing.assert_array_equal(loop.command, [1e6, -1e6])


def test_after_a_clock_jump_the_old_measurement_is_never_fresh():
    """Back to near 0, the measurement from before the jump is stale until a new one comes."""
    from lnn_control.loop import RESUMED, ControlLoop

    loop = ControlLoop(make(), sensor_timeout_s=0.02, stale_action='zero')
    (measured, desired), = signals(1)
    loop.sensor_received(5_000_000_000)
    loop.tick(5_010_000_000, measured, desired)
    assert np.abs(loop.command).max() > 0
    loop.clock_jumped()                    # a simulation reset: the clock restarts at 0
    assert loop.stale and loop.tick(10_000_000, measured, desired) is None
    assert (loop.command == 0).all() and loop.stale_episodes == 0
    loop.sensor_received(20_000_000)       # resumed as after a drop-out (a front end blends)
    assert loop.tick(20_000_000, measured, desired) == RESUMED
    assert np.abs(loop.command).max() > 0


def test_with_learning_off_the_supervisor_is_reported_watching():
    """A PD-only node's /diagnostics and summary do not say its supervisor is learning."""
    from lnn_control.loop import ControlLoop, supervisor_state

    supervised = {'supervisor.enabled': True}
    loop = ControlLoop(make(learning_enabled=False, **supervised), sensor_timeout_s=1.0)
    assert dict(loop.status())['supervisor state'] == 'watching (learning off)'
    assert not [p for p in loop.problems() if 'supervisor' in p]
    assert supervisor_state(make(learning_enabled=False)) == 'disabled'
    on = make(**supervised)
    assert supervisor_state(on) == 'learning'
    on.supervisor._pd_only('injected by the test')
    assert supervisor_state(on) == 'pd_only'


@pytest.mark.slow
def test_a_pd_loop_chattering_at_the_control_rate_is_reported():
    """
    random_5_7's honest kd is too high for 100 Hz: its commands flip sign every tick.

    The loop says so (on /diagnostics from the node); a healthy arm's loop says nothing.
    """
    from lnn_control import closed_loop, zoo
    from lnn_control.loop import ControlLoop

    loops = []
    build = ControlLoop.__init__

    def keep(self, *args, **kwargs):
        build(self, *args, **kwargs)
        loops.append(self)

    for name, chatters in (('random_5_7', True), ('arm_geared', False)):
        loops.clear()
        ControlLoop.__init__ = keep
        try:
            closed_loop.run(zoo.model_name(name), zoo.controller_params(name), 10.0)
        finally:
            ControlLoop.__init__ = build
        problems = [p for p in loops[0].problems() if 'flips sign' in p]
        assert bool(problems) == chatters, (name, loops[0].problems())
        if chatters:     # the coupled arm chatters on both joints; either is named
            assert problems[0].startswith('command on joint'), problems


def test_a_pd_only_hold_at_the_command_limit_is_reported():
    """Feedforward zeroed and the command still at its limit: the PD loop is the problem."""
    from lnn_control.loop import ControlLoop

    for limit, warns in ((0.01, True), (100.0, False)):
        ctrl = make(command_limit=[limit, limit])
        loop = ControlLoop(ctrl, sensor_timeout_s=1.0)
        ctrl.supervisor._pd_only('injected by the test')
        for k, (measured, desired) in enumerate(signals(50)):
            loop.sensor_received(k * 10_000_000)
            loop.tick(k * 10_000_000, measured, desired)
        assert ctrl.supervisor.state == 'pd_only'
        found = [p for p in loop.problems() if 'feedforward zeroed' in p]
        assert bool(found) == warns, loop.problems()
        if warns:
            assert ctrl.supervisor.pd_only_saturation == 1.0 and '100%' in found[0]


def test_a_pd_output_kept_softer_is_reported_until_full_gains_return():
    """The supervisor's kept detuning (response 4) is a problem of the PD loop: a WARN."""
    from lnn_control.loop import ControlLoop

    ctrl = make(**{'supervisor.enabled': True})
    loop = ControlLoop(ctrl, sensor_timeout_s=1.0)
    assert 'detuned' not in loop.pd_health()
    ctrl.supervisor.detune = 0.7
    assert any(p.startswith('PD output kept at 0.7x') for p in loop.problems())
    ctrl.update_params({'kd': list(0.9 * ctrl.kd)})      # the user retunes: full gains
    assert 'detuned' not in loop.pd_health()


def test_reset_learning_also_forgets_the_automatic_input_scales():
    """One reference in the wrong unit (degrees) grew them for good; a reset starts clean."""
    ctrl = make()
    fresh = ctrl.input_scales
    zero = np.zeros(2)
    ctrl.step((zero, zero), (np.array([90.0, 0.0]), zero, zero))      # degrees, once
    assert ctrl.input_scales['position'][0] > 100.0
    ctrl.reset_learning()
    for name, scale in ctrl.input_scales.items():
        np.testing.assert_array_equal(scale, fresh[name])
    twin = make()
    for measured, desired in signals(50):       # the scales follow as a new controller's do
        ctrl.step(measured, desired)
        twin.step(measured, desired)
    for name, scale in ctrl.input_scales.items():
        np.testing.assert_array_equal(scale, twin.input_scales[name])
    fixed = make(**{'input.normalization': 'fixed'})
    before = fixed.input_scales
    fixed.reset_learning()
    np.testing.assert_array_equal(fixed.input_scales['position'], before['position'])


def test_a_fixed_input_scale_the_reference_outgrows_tenfold_grows(tmp_path):
    """
    input.normalization fixed with a scale far below the motion (1e-6 rad/s).

    Inputs a million times their scale saturated the reservoir, and learning made tracking
    worse than PD (10 s windows of 1.2-3.6x PD on random plants). A fixed scale now grows
    as an automatic one does where the reference exceeds it tenfold, and not below that;
    a readout saved with the grown scale loads; a reset goes back to the user's scales.
    """
    from lnn_control.normalization import AUTO_HEADROOM, FIXED_SLACK

    ctrl = make(**{'input.normalization': 'fixed', 'input.velocity_scale': [1e-6, 0.5]})
    zero = np.zeros(2)
    ctrl.step((zero, zero), (zero, np.array([1e-6 * FIXED_SLACK, 4.0]), zero))
    np.testing.assert_array_equal(ctrl.input_scales['velocity'], [1e-6, 0.5])  # up to 10x
    ctrl.step((zero, zero), (zero, np.array([0.3, 5.1]), zero))
    np.testing.assert_allclose(ctrl.input_scales['velocity'], [AUTO_HEADROOM * 0.3,
                                                               AUTO_HEADROOM * 5.1])
    ctrl.save(str(tmp_path / 'r.npz'))
    other = make(**{'input.normalization': 'fixed', 'input.velocity_scale': [1e-6, 0.5]})
    other.load(str(tmp_path / 'r.npz'))
    np.testing.assert_allclose(other.input_scales['velocity'], ctrl.input_scales['velocity'])
    larger = make(**{'input.normalization': 'fixed', 'input.velocity_scale': [1.0, 10.0]})
    with pytest.raises(ValueError, match='fixed at'):
        larger.load(str(tmp_path / 'r.npz'))           # below what this one is fixed at
    ctrl.reset_learning()
    np.testing.assert_array_equal(ctrl.input_scales['velocity'], [1e-6, 0.5])


def test_control_loop_refuses_an_unknown_stale_action_and_a_bad_timeout():
    """'zeros' meant hold: a robot with stale sensors pushed on with its last torque."""
    from lnn_control.loop import ControlLoop

    ctrl = make()
    for action in ('zeros', 'Zero', ''):
        with pytest.raises(ValueError, match='stale_action must be one of zero, hold'):
            ControlLoop(ctrl, 0.1, action)
    loop = ControlLoop(ctrl, 0.1, 'hold')
    with pytest.raises(ValueError, match='stale_action'):
        loop.stale_action = 'zeros'
    assert loop.stale_action == 'hold'
    for timeout in (-0.5, 0.0, float('nan'), float('inf')):
        with pytest.raises(ValueError, match='sensor_timeout_s must be finite and > 0'):
            loop.set_timeout(timeout)


def _wrapped(x):
    return (x + np.pi) % (2 * np.pi) - np.pi


def test_a_continuous_joint_in_any_branch_gets_the_commands_of_an_unwrapped_one():
    """ros2_controllers' angle_wraparound: a wheel reported in [-pi, pi) is not a 2 pi error."""
    # BASE's command limits would saturate a joint turning at 3 rad/s: looser ones here
    plain = make(command_limit=[50.0])
    wheel = make(command_limit=[50.0], continuous_joints=['j1'])
    np.testing.assert_array_equal(wheel.continuous, [True, False])
    for k in range(1500):
        t = 0.01 * k
        q_d = np.array([3.0 * t + np.sin(t), 0.5 * np.sin(t)])
        qd_d = np.array([3.0 + np.cos(t), 0.5 * np.cos(t)])
        q, qd = q_d - 0.02 * np.sin(3.0 * t), 0.98 * qd_d
        expected = plain.step((q, qd), (q_d, qd_d, np.zeros(2))).copy()
        # the measurement wrapped and then put some turns off, the reference wrapped
        q_seen = np.array([_wrapped(q[0]) + 2 * np.pi * (k % 3 - 1), q[1]])
        q_d_sent = np.array([_wrapped(q_d[0]), q_d[1]])
        got = wheel.step((q_seen, qd), (q_d_sent, qd_d, np.zeros(2)))
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)
        # what was added to the measurement takes it back to the branch it came in
        np.testing.assert_allclose(wheel.tick_terms()[0] - wheel.position_offset, q_seen,
                                   rtol=0, atol=1e-9)
    assert wheel.position_offset[1] == 0.0
    # a joint that is not continuous keeps its error as it is
    far = make(continuous_joints=['j1'], learning_enabled=False)
    far.step((np.array([2 * np.pi, 2 * np.pi]), np.zeros(2)), (np.zeros(2),) * 3)
    q, q_d, pd, _ = far.tick_terms()
    np.testing.assert_array_equal(q_d, [0.0, 0.0])
    np.testing.assert_allclose(q, [0.0, 2 * np.pi], atol=1e-12)
    np.testing.assert_allclose(pd, [0.0, -10.0 * 2 * np.pi], atol=1e-9)   # kp 10


def test_continuous_joints_must_be_controlled_joints():
    with pytest.raises(ValueError, match="continuous_joints names 'wheel', not among joints"):
        make(continuous_joints=['wheel'])
    with pytest.raises(ValueError, match='must not repeat'):
        make(continuous_joints=['j1', 'j1'])
    with pytest.raises(ValueError, match='read-only'):
        make().update_params({'continuous_joints': ['j1']})


def test_the_inverse_model_learns_from_its_own_error_whatever_the_feedforward_bound_took():
    """
    Only feedback-error learning subtracts what the bound took (its target is the applied).

    The inverse model's error is the command applied less its prediction already; it was
    given the previous tick's clip of another prediction as well (389 of 399 steps wrong
    with feedforward_limit 0.1).
    """
    ctrl = make(**{'controller.mode': 'inverse_model', 'feedforward_limit': 0.1,
                   'rls.fast_learner': False})
    seen = []
    update = ctrl.slow.update

    def spy(phi, err):
        seen.append((err.copy(), ctrl._prev[2] - ctrl.slow.predict(phi)))
        return update(phi, err)
    ctrl.slow.update = spy
    for measured, desired in signals(200):
        ctrl.step(measured, desired)
    assert ctrl.feedforward_clipped > 100 and len(seen) > 100
    for given, wanted in seen:
        np.testing.assert_allclose(given, wanted, rtol=1e-9, atol=1e-12)

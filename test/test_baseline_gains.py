"""
The PD baseline in config/ is what a competent engineer would pick.

Rule: closed-loop natural frequency at least 4x the highest reference
frequency, damping ratio 0.7-1, for the nominal plant (kp = I wn^2,
kd = 2 zeta wn I, I the nominal joint-space inertia).
"""
import json

from lnn_control import closed_loop as CL
from lnn_control import schema
from lnn_control.plants import Plant, PLANTS
import numpy as np
import pytest

pytestmark = pytest.mark.unit


@pytest.mark.parametrize('plant', PLANTS)
def test_config_gains_follow_the_honest_baseline_rule(plant):
    cfg = schema.resolve(schema.load_yaml_overrides(CL.config_path(plant), 'lnn_controller'))
    model = Plant(plant, joints=cfg['joints'])
    inertia = model.nominal_inertia()
    wn = np.sqrt(cfg['kp'] / inertia)
    zeta = cfg['kd'] / (2 * wn * inertia)
    f_max = cfg['reference.frequency_hz']
    assert np.all(wn >= 4 * 2 * np.pi * f_max * 0.99), (wn, f_max)
    assert np.all((zeta >= 0.7) & (zeta <= 1.0)), zeta
    assert np.all(cfg['command_limit'] <= model.effort_limit + 1e-9)


@pytest.mark.parametrize('plant', PLANTS)
def test_config_files_hold_only_valid_schema_parameters(plant):
    overrides = schema.load_yaml_overrides(CL.config_path(plant), 'lnn_controller')
    table = schema.by_name()
    assert set(overrides) <= set(table), set(overrides) - set(table)
    schema.resolve(overrides)     # raises on any invalid value


def test_pendulum_config_agrees_with_the_schema_defaults():
    """The schema's defaults are the pendulum's: the file may restate, never contradict."""
    overrides = schema.load_yaml_overrides(CL.config_path('pendulum'), 'lnn_controller')
    defaults = schema.resolve()
    for name, value in schema.resolve(overrides).items():
        if name in overrides:
            assert np.array_equal(np.asarray(value), np.asarray(defaults[name])), name


def test_rate_check_flags_a_kd_that_chatters_at_the_control_rate(tmp_path, capsys):
    """
    random_5_7's honest kd chatters at 100 Hz (kd dt / effective inertia 1.6), not at 160.

    Its diagonal inertia hides it: with the proximal joint free the distal joint's inertia
    is a seventh of the diagonal's. The named zoo's gains pass (largest figure 0.96).
    """
    from lnn_control import cli, zoo
    from lnn_control.plants import (advised_rate, honest_gains, kd_dt_per_effective_inertia,
                                    rate_check)

    for name in zoo.names():
        plant = Plant(zoo.model_name(name))
        assert rate_check(plant, honest_gains(plant)[1], 100.0) == [], name
    path = tmp_path / 'random_5_7.xml'
    path.write_text(zoo.mjcf('random_5_7'))
    plant = Plant(str(path))
    kd = honest_gains(plant)[1]
    assert plant.effective_inertia()[1] < plant.nominal_inertia()[1] / 6
    kp = honest_gains(plant)[0]
    warnings = rate_check(plant, kd, 100.0, kp)
    # 1.60 > 1: a rate 1.6 / 0.8 (ADVICE_MARGIN) x higher that the 1 ms step divides, or
    # kd and kp lowered together (kd alone lowers the damping ratio)
    assert len(warnings) == 2 and 'control at 200 Hz' in warnings[1], warnings
    s = 0.8 / kd_dt_per_effective_inertia(plant, kd, 100.0)[1]
    assert f'kd to <= {kd[1] * s:.3g} and kp to <= {kp[1] * s * s:.3g} together' in warnings[1]
    assert rate_check(plant, kd, 200.0) == [] and rate_check(plant, kd * s, 100.0) == []
    assert advised_rate(plant, 334.0) == 500.0 and advised_rate(plant, 2001.0) is None
    assert advised_rate(plant, 160.0) == 200.0      # not 166.667: no whole number of ms
    assert plant.steps_per(1.0 / advised_rate(plant, 101.0)) == 8      # 125 Hz, runnable
    plant.model.opt.timestep = 0.0004
    assert advised_rate(plant, 1900.0) is None      # 2500 Hz: above control_rate_hz's range
    plant.model.opt.timestep = 0.003                 # no whole-hertz rate at all
    assert advised_rate(plant, 131.0) == 0.0
    assert 'Hz up is a whole number of Hz and of the model' in rate_check(plant, kd, 100.0)[1]
    assert cli.main(['gains', '--plant', str(path)]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)['warnings'] == warnings and 'warning: joint2' in out.err


def test_pd_loop_radius_says_whether_the_sampled_loop_with_delay_decays():
    """The radius against the loop itself, stepped tick by tick from a kick."""
    from lnn_control.plants import pd_loop_radius

    m = np.array([[0.30, 0.08], [0.08, 0.05]])           # a 2-link arm's, coupled
    kp, kd = m.diagonal() * 13.8 ** 2, 2 * 0.8 * 13.8 * m.diagonal()
    for delay, gain in ((0, 1.0), (1, 1.0), (1, 3.0), (2, 1.0)):
        dt, m_inv = 0.01, np.linalg.inv(m)
        q, v = np.array([0.01, -0.01]), np.zeros(2)
        queue = [np.zeros(2)] * delay
        for _ in range(3000):
            queue.append(-(gain ** 2 * kp) * q - gain * kd * v)
            u = queue.pop(0)
            q, v = q + dt * v + 0.5 * dt * dt * m_inv @ u, v + dt * m_inv @ u
        radius = pd_loop_radius(m, gain ** 2 * kp, gain * kd, dt, delay)
        grown = np.abs(q).max() / 0.01
        assert (radius < 1.0) == (grown < 1.0), (delay, gain, radius, grown)


def test_delay_check_flags_the_arms_whose_pd_loop_cycles_with_a_tick_of_delay(capsys):
    """
    arm_friction, arm_heavy_tip and arm3_vertical cycle with a tick of delay at 100 Hz; no other.

    The advice (a lower natural frequency, or a higher rate) brings the radius below 1
    with a margin: the advised loop stays stable with kp 1.5x and kd 1.2x, and at 0.97x
    the advised rate; a rate beyond the node's range is said to be.
    """
    from lnn_control import cli, zoo
    from lnn_control.plants import delay_check, honest_gains, pd_loop_radius

    flagged = []
    for name in zoo.names():
        plant = Plant(zoo.model_name(name))
        kp, kd = honest_gains(plant)
        radius, warnings = delay_check(plant, kp, kd, 100.0, 1)
        assert (radius >= 1.0) == bool(warnings)
        if warnings:
            flagged.append(name)
            scale = float(warnings[0].split('frequency to ')[1].split('x')[0])
            rate = float(warnings[0].split('control at >= ')[1].split(' Hz')[0])
            m = plant.nominal_mass_matrix()
            assert pd_loop_radius(m, 1.5 * kp * scale ** 2, 1.2 * kd * scale, 0.01, 1) < 1.0
            assert pd_loop_radius(m, kp, kd, 1.0 / (0.97 * rate), 1) < 1.0
            assert 'above the node' not in warnings[0]
    assert flagged == ['arm_friction', 'arm_heavy_tip', 'arm3_vertical']
    plant = Plant(zoo.model_name('arm_heavy_tip'))
    _, warnings = delay_check(plant, *honest_gains(plant), 100.0, 20)   # needs > 2000 Hz
    assert "above the node's 2000 Hz" in warnings[0]
    assert cli.main(['gains', '--plant', 'zoo/arm_heavy_tip', '--delay-ticks', '1']) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)['pd_loop_spectral_radius_with_delay'] > 1.3
    assert 'warning: with 1 tick(s) of actuation delay' in out.err
    assert cli.main(['gains', '--plant', 'zoo/arm_heavy_tip', '--delay-ticks', '101']) == 2
    assert 'at most 100' in capsys.readouterr().err


def test_a_damping_ratio_below_the_honest_rule_is_flagged():
    """A kd lowered alone (damping ratio 0.42) made learning excite a 2-link arm's mode."""
    from lnn_control import zoo
    from lnn_control.plants import damping_ratios, pd_loop_check
    plant = Plant(zoo.model_name('arm_geared'))
    params = zoo.controller_params('arm_geared')
    np.testing.assert_allclose(damping_ratios(plant, params['kp'], params['kd']), 0.8,
                               rtol=1e-3)            # the honest rule's, from rounded gains
    assert pd_loop_check(plant, params) == []
    soft = {**params, 'kd': [0.5 * k for k in params['kd']]}
    (note,) = pd_loop_check(plant, soft)
    assert note.startswith('damping ratio 0.40 < 0.7 on joint1'), note
    assert pd_loop_check(plant, {**params, 'kp': [params['kp'][0], 0.0],
                                 'kd': [params['kd'][0], 0.0]}) == []   # no loop to damp


def test_delay_advice_gives_a_rate_the_model_runs_and_the_bandwidth_factor_to_type(
        capsys, two_link_arm):
    """
    A 2 ms model got '>= 181 Hz', which lnn_sim refuses, and 200 Hz went unflagged.

    The rate advised is a whole number of Hz and of the model's timesteps; the lower
    natural frequency is given as the --bandwidth-factor that makes it.
    """
    from lnn_control import cli, zoo
    from lnn_control.plants import delay_check, honest_gains
    plant = Plant(zoo.model_name('arm_heavy_tip'))
    _, warnings = delay_check(plant, *honest_gains(plant), 100.0, 1)
    rate = float(warnings[0].split('control at >= ')[1].split(' Hz')[0])
    assert plant.steps_per(1.0 / rate) >= 1 and rate == int(rate)
    factor = float(warnings[0].split('--bandwidth-factor ')[1].split(')')[0])
    scale = float(warnings[0].split('frequency to ')[1].split('x')[0])
    assert factor == pytest.approx(4.0 * scale, abs=0.011)
    assert cli.main(['gains', '--plant', 'zoo/arm_heavy_tip', '--control-rate-hz', '300']) == 0
    err = capsys.readouterr().err
    assert '--control-rate-hz 300' in err and 'refuse it' in err, err
    assert cli.main(['gains', '--plant', 'zoo/arm_heavy_tip', '--control-rate-hz', '250']) == 0
    assert 'refuse it' not in capsys.readouterr().err
    # A 0.2 ms model runs 2500, 1250, 1000 ... Hz: a rate needed between 1250 and 2000 Hz
    # was advised as itself and called above the node's 2000 Hz.
    fine = Plant(two_link_arm(0.0002))
    kp, kd = honest_gains(fine)
    said = [w[0] for w in (delay_check(fine, kp * s * s, kd * s, 500.0, 1)[1]
                           for s in np.linspace(1.0, 30.0, 300)) if w]
    assert any('no rate from' in w and 'largest control_rate_hz, 2000' in w for w in said)
    for w in said:
        if 'control at >= ' in w:
            rate = float(w.split('control at >= ')[1].split(' Hz')[0])
            assert (rate > 2000) == ('above the node' in w), w
            assert rate > 2000 or fine.steps_per(1.0 / rate) >= 1

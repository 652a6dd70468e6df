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
    from lnn_control.plants import honest_gains, rate_check

    for name in zoo.names():
        plant = Plant(zoo.model_name(name))
        assert rate_check(plant, honest_gains(plant)[1], 100.0) == [], name
    path = tmp_path / 'random_5_7.xml'
    path.write_text(zoo.mjcf('random_5_7'))
    plant = Plant(str(path))
    kd = honest_gains(plant)[1]
    assert plant.effective_inertia()[1] < plant.nominal_inertia()[1] / 6
    warnings = rate_check(plant, kd, 100.0)
    assert len(warnings) == 2 and 'control at >= 160 Hz' in warnings[1], warnings
    assert rate_check(plant, kd, 160.0) == []
    assert cli.main(['gains', '--plant', str(path)]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)['warnings'] == warnings and 'warning: joint2' in out.err

"""
The PD baseline in config/ is what a competent engineer would pick.

Rule: closed-loop natural frequency at least 4x the highest reference
frequency, damping ratio 0.7-1, for the nominal plant (kp = I wn^2,
kd = 2 zeta wn I, I the nominal joint-space inertia).
"""
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

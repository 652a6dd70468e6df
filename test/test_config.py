"""The typed configuration generated from the schema, and its one validate-and-apply path."""
from lnn_control import schema
from lnn_control.config import Config
import numpy as np
import pytest

pytestmark = pytest.mark.unit


def test_sections_are_typed_and_match_the_flat_values():
    cfg = Config({'joints': ['a', 'b'], 'kp': [3], 'reservoir.size': 120})
    assert cfg.joints == ('a', 'b')
    assert cfg.reservoir.size == 120 and isinstance(cfg.reservoir.size, int)
    assert isinstance(cfg.rls.forgetting_factor, float)
    assert isinstance(cfg.supervisor.enabled, bool)
    np.testing.assert_array_equal(cfg.kp, [3.0, 3.0])      # broadcast per joint
    assert cfg.kp.dtype == np.float64 and not cfg.kp.flags.writeable
    for p in schema.CONTROLLER:
        group, _, attr = p.name.rpartition('.')
        typed = getattr(getattr(cfg, group), attr) if group else getattr(cfg, attr)
        np.testing.assert_array_equal(np.asarray(typed, dtype=object),
                                      np.asarray(tuple(cfg[p.name])
                                                 if p.kind == schema.STRING_ARRAY
                                                 else cfg[p.name], dtype=object),
                                      err_msg=p.name)


def test_every_schema_entry_is_reachable_and_a_section_is_keyword_arguments():
    cfg = Config()
    assert set(cfg) == {p.name for p in schema.CONTROLLER}
    kwargs = cfg.section('reservoir')
    assert set(kwargs) == {p.name.split('.', 1)[1] for p in schema.CONTROLLER
                           if p.name.startswith('reservoir.')}


def test_apply_validates_everything_before_applying_anything():
    cfg = Config({'joints': ['a', 'b']})
    before = {k: np.copy(v) if isinstance(v, np.ndarray) else v for k, v in cfg.items()}
    with pytest.raises(ValueError) as info:
        cfg.apply({'kd': [0.5], 'kp': [float('nan')], 'no_such': 1})
    assert 'kp must be finite' in str(info.value) and "'no_such'" in str(info.value)
    for k, v in before.items():
        np.testing.assert_array_equal(cfg[k], v, err_msg=k)
    applied = cfg.apply({'kd': [0.5], 'rls.forgetting_factor': 0.999})
    np.testing.assert_array_equal(applied['kd'], [0.5, 0.5])
    assert cfg.rls.forgetting_factor == 0.999 and cfg['rls.forgetting_factor'] == 0.999
    np.testing.assert_array_equal(cfg.kd, [0.5, 0.5])


def test_read_only_settings_refuse_a_new_value_but_accept_the_current_one():
    cfg = Config({'joints': ['a', 'b']})
    assert cfg.problems({'reservoir.size': 100}) == [
        'reservoir.size is read-only: it needs a restart']
    assert cfg.problems({'reservoir.size': 100}, started=False) == []
    assert cfg.apply({'reservoir.size': 300, 'joints': ['a', 'b']}) == {}
    assert cfg.problems({'input.position_scale': [1.0]}) == []      # the same, broadcast


def test_per_joint_sizes_and_flags_come_from_the_schema():
    cfg = Config({'joints': ['a', 'b']})
    assert 'one value per joint (2)' in cfg.problems({'kp': [1.0, 2.0, 3.0]})[0]
    with pytest.raises(ValueError, match='joints must not repeat a name'):
        Config({'joints': ['a', 'a']})
    with pytest.raises(ValueError, match='joints must not repeat a name'):
        Config({'joints': ['x', 'x']}, schema.SIMULATOR)
    for names in ([''], ['a,b', 'c']):     # ~/controller_state's label could not be split
        with pytest.raises(ValueError, match='joints must not hold an empty name or a comma'):
            Config({'joints': names})


def test_the_simulator_schema_has_its_own_sections():
    cfg = Config({'payload_change.time_s': 40.0}, schema.SIMULATOR)
    assert cfg.payload_change.time_s == 40.0 and cfg.payload_change.scale == 2.0
    assert cfg.model == 'pendulum' and cfg.lockstep is True
    assert cfg.apply({'payload_scale': 1.5}) == {'payload_scale': 1.5}
    assert cfg.payload_scale == 1.5


def test_a_sensor_timeout_shorter_than_one_control_period_is_refused():
    """Every tick would find the sensor stale: refused at start and as a change."""
    with pytest.raises(ValueError, match='shorter than one control period'):
        Config({'joints': ['a'], 'control_rate_hz': 100.0, 'sensor_timeout_s': 0.005})
    cfg = Config({'joints': ['a'], 'control_rate_hz': 100.0})
    with pytest.raises(ValueError, match='shorter than one control period'):
        cfg.apply({'sensor_timeout_s': 1e-12})
    assert cfg['sensor_timeout_s'] == 0.1                       # nothing applied
    assert cfg.apply({'sensor_timeout_s': 0.01}) == {'sensor_timeout_s': 0.01}


def test_a_reference_timeout_shorter_than_one_control_period_is_refused():
    """0.001 s held a 20 Hz reference between every two messages: it moved in steps."""
    cfg = Config({'joints': ['a'], 'control_rate_hz': 100.0})
    with pytest.raises(ValueError, match='reference_timeout_s 0.001 is shorter than one'):
        cfg.apply({'reference_timeout_s': 0.001})
    assert cfg['reference_timeout_s'] == 0.5
    assert cfg.apply({'reference_timeout_s': 0.0}) == {'reference_timeout_s': 0.0}  # never
    assert cfg.apply({'reference_timeout_s': 0.01}) == {'reference_timeout_s': 0.01}


def test_a_generated_reference_beyond_the_plausibility_limits_is_refused():
    """The robot's joint_states there would be dropped as implausible (it went limp)."""
    with pytest.raises(ValueError, match='reference.mode hold.* reaches 2 on a, beyond '
                                         'limits.position 1'):
        Config({'joints': ['a'], 'limits.position': [1.0], 'reference.mode': 'hold',
                'reference.offset': [2.0]})
    cfg = Config({'joints': ['a', 'b'], 'limits.position': [1.0, 3.0],
                  'reference.mode': 'sine'})
    (problem,) = cfg.combined_problems({'reference.amplitude': [0.6, 2.0],
                                        'reference.offset': [0.5]})
    assert 'reaches 1.1 on a, beyond limits.position 1' in problem
    assert cfg.combined_problems({'reference.mode': 'topic', 'reference.offset': [5.0]}) == []
    assert cfg.combined_problems({'continuous_joints': ['a'], 'reference.offset': [5.0],
                                  'limits.position': [1.0, 6.0]}) == []
    (problem,) = cfg.combined_problems({'reference.frequency_hz': 0.5,
                                        'limits.velocity': [5.0, 1.0]})   # b: 2 pi 0.5 0.5
    assert 'moves at up to 1.5708 on b, beyond limits.velocity 1' in problem


def test_combined_problems_judge_the_changes_with_the_current_values():
    cfg = Config({'joints': ['a'], 'control_rate_hz': 100.0})
    assert cfg.combined_problems({}) == []
    assert cfg.combined_problems({'sensor_timeout_s': 0.005}) == [
        'sensor_timeout_s 0.005 is shorter than one control period (0.01 s): every tick '
        'would find the sensor stale']
    assert cfg.combined_problems({'sensor_timeout_s': 0.005, 'control_rate_hz': 200.0}) == []
    assert Config(entries=schema.SIMULATOR).combined_problems({'payload_scale': 2.0}) == []

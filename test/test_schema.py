"""The parameter schema: sanity, resolve(), check(), YAML parameter files."""
import math
import textwrap

from lnn_control import schema
import numpy as np
import pytest

pytestmark = pytest.mark.unit

SCHEMAS = list(schema.SCHEMAS.items())
ALL = [(schema_name, p) for schema_name, entries in SCHEMAS for p in entries]
KINDS = {schema.BOOL, schema.INT, schema.DOUBLE, schema.STRING, schema.DOUBLE_ARRAY,
         schema.STRING_ARRAY}


def _ids(item):
    return f'{item[0]}:{item[1].name}' if isinstance(item, tuple) else None


# -- schema sanity -----------------------------------------------------------------------
@pytest.mark.parametrize('schema_name,entries', SCHEMAS)
def test_names_unique(schema_name, entries):
    names = [p.name for p in entries]
    assert len(names) == len(set(names)), schema_name
    assert all(n and n == n.strip() and ' ' not in n for n in names)


@pytest.mark.parametrize('item', ALL, ids=_ids)
def test_default_valid_and_ranges_consistent(item):
    schema_name, p = item
    assert p.kind in KINDS
    assert p.description.strip()
    n_joints = len(schema.defaults(schema.SCHEMAS[schema_name]).get('joints', [])) or None
    assert schema.check(p, p.default, n_joints) is None, schema.check(p, p.default, n_joints)
    if p.low is not None and p.high is not None:
        assert p.low < p.high
    if p.low is not None or p.high is not None:
        assert p.kind in (schema.INT, schema.DOUBLE, schema.DOUBLE_ARRAY)
    if p.open_low:
        assert p.low is not None
    if p.choices:
        assert p.kind == schema.STRING and p.default in p.choices
        assert len(set(p.choices)) == len(p.choices)
    if p.per_joint:
        assert p.kind == schema.DOUBLE_ARRAY
        assert len(p.default) == 1
    if p.kind in (schema.DOUBLE_ARRAY, schema.STRING_ARRAY):
        assert isinstance(p.default, list)
    if p.kind == schema.DOUBLE:
        assert isinstance(p.default, float) and math.isfinite(p.default)
    if p.kind == schema.INT:
        assert isinstance(p.default, int) and not isinstance(p.default, bool)


def test_defaults_are_copies():
    d = schema.defaults()
    d['kp'].append(1.0)
    assert len(schema.defaults()['kp']) == 1
    assert len(schema.by_name()['kp'].default) == 1


@pytest.mark.parametrize('schema_name,entries', SCHEMAS)
def test_resolve_defaults(schema_name, entries):
    values = schema.resolve(None, entries)
    assert set(values) == {p.name for p in entries}
    for p in entries:
        if p.kind == schema.DOUBLE_ARRAY:
            assert isinstance(values[p.name], np.ndarray)
            assert values[p.name].dtype == np.float64


@pytest.mark.parametrize('item', [a for a in ALL if a[1].low is not None], ids=_ids)
def test_check_enforces_bounds(item):
    _, p = item
    wrap = (lambda v: [v]) if p.kind == schema.DOUBLE_ARRAY else (lambda v: v)
    below = p.low if p.open_low else \
        p.low - (1 if p.kind == schema.INT else 1e-9 * max(1, abs(p.low)))
    assert schema.check(p, wrap(below)) is not None
    if p.high is not None:
        above = p.high + (1 if p.kind == schema.INT else 1e-9 * max(1, abs(p.high)))
        assert schema.check(p, wrap(above)) is not None
        assert schema.check(p, wrap(p.high if p.kind != schema.INT else int(p.high))) is None
    if p.kind != schema.INT:
        assert p.name in schema.check(p, wrap(float('nan')))
        assert schema.check(p, wrap(float('inf'))) is not None


# -- check() by kind -------------------------------------------------------------------
@pytest.mark.parametrize('name,value', [
    ('learning_enabled', 1), ('learning_enabled', 'true'),
    ('reservoir.size', 100.0), ('reservoir.size', True), ('reservoir.size', '100'),
    ('reservoir.spectral_radius', 'x'), ('reservoir.spectral_radius', True),
    ('reservoir.neuron_model', 'gru'), ('reservoir.neuron_model', 3),
    ('joints', 'joint1'), ('joints', ['a', 'a']), ('joints', ['a', 2]),
    ('kp', ['a']), ('kp', [True]), ('kp', [1.0, float('nan')]),
    ('kp', 5.0), ('joints', 5),                # scalars where a list is expected
    ('readout_path', '/tmp/a\x00b.npz'), ('joints', ['j\x00']),   # os calls raise on a NUL
])
def test_check_refuses_wrong_types(name, value):
    reason = schema.check(schema.by_name()[name], value)
    assert isinstance(reason, str) and name in reason


def test_check_accepts_numpy_scalars():
    assert schema.check(schema.by_name()['reservoir.size'], np.int64(50)) is None
    assert schema.check(schema.by_name()['reservoir.spectral_radius'], np.float64(0.5)) is None
    assert schema.check(schema.by_name()['learning_enabled'], np.bool_(True)) is None
    assert schema.check(schema.by_name()['kp'], np.array([1.0, 2.0]), 2) is None


def test_check_per_joint_length():
    kp = schema.by_name()['kp']
    assert schema.check(kp, [1.0], 3) is None
    assert schema.check(kp, [1.0, 2.0, 3.0], 3) is None
    reason = schema.check(kp, [1.0, 2.0], 3)
    assert 'kp' in reason and '3' in reason
    assert schema.check(kp, [], 3) is not None


# -- resolve() ----------------------------------------------------------------------------
def test_resolve_broadcasts_per_joint_values():
    values = schema.resolve({'joints': ['a', 'b', 'c'], 'kd': [1.0, 2.0, 3.0]})
    per_joint = [p for p in schema.CONTROLLER if p.per_joint]
    assert per_joint
    for p in per_joint:
        assert values[p.name].shape == (3,), p.name
    np.testing.assert_array_equal(values['kp'], np.full(3, schema.by_name()['kp'].default[0]))
    np.testing.assert_array_equal(values['kd'], [1.0, 2.0, 3.0])
    assert values['joints'] == ['a', 'b', 'c']


def test_resolve_leaves_overrides_and_schema_untouched():
    overrides = {'joints': ['a', 'b'], 'kp': [2.0]}
    schema.resolve(overrides)
    assert overrides == {'joints': ['a', 'b'], 'kp': [2.0]}
    assert schema.by_name()['kp'].default == schema.defaults()['kp']


def test_resolve_lists_every_reason():
    with pytest.raises(ValueError) as info:
        schema.resolve({'no_such_thing': 1, 'kp': [float('nan')], 'reservoir.size': 3,
                        'reservoir.neuron_model': 'gru', 'learning_enabled': 'yes',
                        'joints': ['a', 'b'], 'kd': [1.0, 2.0, 3.0], 'also.unknown': 2})
    message = str(info.value)
    for name in ('no_such_thing', 'also.unknown', 'kp', 'reservoir.size',
                 'reservoir.neuron_model', 'learning_enabled', 'kd'):
        assert name in message, name
    assert 'command_limit' not in message


def test_resolve_refuses_a_scalar_for_an_array_parameter():
    with pytest.raises(ValueError, match='kp'):
        schema.resolve({'kp': 5.0})


def test_resolve_refuses_non_list_joints():
    with pytest.raises(ValueError, match='joints') as info:
        schema.resolve({'joints': 5, 'kp': [float('nan')]})
    assert 'kp' in str(info.value)


def test_resolve_simulator_schema():
    values = schema.resolve({'payload_scale': 2.0}, schema.SIMULATOR)
    assert values['payload_scale'] == 2.0
    with pytest.raises(ValueError, match='kp'):
        schema.resolve({'kp': [1.0]}, schema.SIMULATOR)     # a controller parameter


# -- YAML parameter files -------------------------------------------------------------
def _write(tmp_path, text):
    path = tmp_path / 'params.yaml'
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_yaml_wildcard_and_nested_keys(tmp_path):
    path = _write(tmp_path, """
        /**:
          ros__parameters:
            joints: [a, b]
            kp: [1.0, 2.0]
            rls:
              forgetting_factor: 0.99
            reservoir:
              size: 100
              neuron_model: ltc
    """)
    got = schema.load_yaml_overrides(path, 'lnn_controller')
    assert got == {'joints': ['a', 'b'], 'kp': [1.0, 2.0], 'rls.forgetting_factor': 0.99,
                   'reservoir.size': 100, 'reservoir.neuron_model': 'ltc'}
    values = schema.resolve(got)
    assert values['rls.forgetting_factor'] == 0.99
    assert values['reservoir.size'] == 100


def test_yaml_numbers_for_doubles_are_widened_as_the_node_widens_them(tmp_path):
    """`kp: 20` in a file: the node took it, lnn-control demo --params-file refused it."""
    path = _write(tmp_path, """
        /**:
          ros__parameters:
            joints: [a, b]
            kp: 20
            kd: [1, 2]
            reservoir:
              leak_rate: 1
              size: 100
    """)
    got = schema.load_yaml_overrides(path, 'lnn_controller')
    assert got['kp'] == [20.0] and got['kd'] == [1.0, 2.0]
    assert got['reservoir.leak_rate'] == 1.0 and isinstance(got['reservoir.leak_rate'], float)
    assert got['reservoir.size'] == 100 and isinstance(got['reservoir.size'], int)
    np.testing.assert_array_equal(schema.resolve(got)['kp'], [20.0, 20.0])
    assert schema.widen(schema.DOUBLE_ARRAY, True) is None       # a bool is no number


def test_yaml_node_forms_merge_more_specific_last(tmp_path):
    # written most specific first, so the merge order is not just file order
    path = _write(tmp_path, """
        /robot/lnn_controller:
          ros__parameters:
            kp: [3.0]
            reservoir: {seed: 7}
        lnn_controller:
          ros__parameters:
            kp: [2.0]
            kd: [0.2]
        /**:
          ros__parameters:
            kp: [1.0]
            kd: [0.1]
            command_limit: [5.0]
        other_node:
          ros__parameters:
            kp: [99.0]
            model: arm2
        /robot/other_node:
          ros__parameters:
            command_limit: [99.0]
    """)
    got = schema.load_yaml_overrides(path, 'lnn_controller')
    assert got == {'kp': [3.0], 'kd': [0.2], 'command_limit': [5.0], 'reservoir.seed': 7}
    other = schema.load_yaml_overrides(path, 'other_node')
    assert other == {'kp': [99.0], 'kd': [0.1], 'command_limit': [99.0], 'model': 'arm2'}


def test_yaml_without_matching_section_is_empty(tmp_path):
    path = _write(tmp_path, """
        some_node:
          ros__parameters:
            kp: [1.0]
    """)
    assert schema.load_yaml_overrides(path, 'lnn_controller') == {}
    empty = tmp_path / 'empty.yaml'
    empty.write_text('')
    assert schema.load_yaml_overrides(str(empty), 'lnn_controller') == {}


def test_yaml_unknown_or_invalid_values_refused_by_resolve(tmp_path):
    path = _write(tmp_path, """
        /**:
          ros__parameters:
            rls: {forgeting_factor: 0.99}
            reservoir: {size: 1}
    """)
    with pytest.raises(ValueError) as info:
        schema.resolve(schema.load_yaml_overrides(path, 'lnn_controller'))
    assert 'rls.forgeting_factor' in str(info.value)
    assert 'reservoir.size' in str(info.value)


def test_markdown_lists_every_parameter():
    text = schema.markdown(schema.CONTROLLER, 'Controller')
    for p in schema.CONTROLLER:
        assert f'`{p.name}`' in text
    assert text.count('\n| `') == len(schema.CONTROLLER)


def test_check_accepts_array_array_as_rclpy_returns_for_double_arrays():
    import array
    kp = schema.by_name()['kp']
    assert schema.check(kp, array.array('d', [1.0, 2.0]), 2) is None
    assert schema.check(kp, array.array('d', [float('nan')]), 1) is not None


def test_a_malformed_parameter_file_is_refused_with_a_reason(tmp_path):
    """A directory, bad YAML, a list or a scalar section raised from deep in the loader."""
    cases = {'syntax.yaml': ('a: [1, 2', 'not YAML'), 'list.yaml': ('- 1', 'no node names'),
             'scalar.yaml': ('lnn_controller: 5', 'no ros__parameters mapping')}
    for name, (text, says) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(ValueError, match=says):
            schema.load_yaml_overrides(str(tmp_path / name), 'lnn_controller')
    with pytest.raises(ValueError, match='is a directory'):
        schema.load_yaml_overrides(str(tmp_path), 'lnn_controller')

"""Schema -> ROS parameters (lnn_control.ros.parameters), on real rclpy nodes."""
import math

from lnn_control import schema
from lnn_control.ros import parameters as RP
import pytest
from rcl_interfaces.msg import ParameterType
import rclpy
from rclpy.parameter import Parameter

pytestmark = pytest.mark.ros


@pytest.fixture
def make_node(context, closing):
    def make(*overrides, name='params_under_test', cli=None):
        return closing(rclpy.create_node(
            name, context=context, parameter_overrides=list(overrides),
            cli_args=cli, start_parameter_services=False), 'destroy_node')
    return make


def test_descriptors_carry_schema_metadata():
    table = schema.by_name(schema.CONTROLLER)
    d = RP.descriptor(table['command_limit'])
    assert d.description == table['command_limit'].description
    assert d.type == ParameterType.PARAMETER_DOUBLE_ARRAY
    assert not d.read_only
    (rng,) = d.floating_point_range
    assert (rng.from_value, rng.to_value, rng.step) == (0.0, 1e6, 0.0)
    assert '> 0.0' in d.additional_constraints          # open interval, said in words
    assert 'per entry of joints' in d.additional_constraints
    d = RP.descriptor(table['reservoir.size'])
    assert d.read_only and d.type == ParameterType.PARAMETER_INTEGER
    (irng,) = d.integer_range
    assert (irng.from_value, irng.to_value) == (10, 5000)
    d = RP.descriptor(table['reservoir.neuron_model'])
    assert 'esn, ltc, lif' in d.additional_constraints
    assert not d.floating_point_range and not d.integer_range


@pytest.mark.parametrize('entries', [schema.CONTROLLER, schema.SIMULATOR],
                         ids=['controller', 'simulator'])
def test_declare_defaults_round_trip(make_node, entries):
    node = make_node()
    values = RP.declare(node, entries)
    assert values == schema.defaults(entries)
    assert RP.read(node, entries) == schema.defaults(entries)
    for p in entries:
        assert node.describe_parameter(p.name).description == p.description
        assert node.describe_parameter(p.name).read_only == p.read_only


def test_declare_takes_overrides_and_widens_integers_for_doubles(make_node):
    node = make_node(cli=['--ros-args', '-p', 'kp:=[20, 30]', '-p', 'control_rate_hz:=200',
                          '-p', 'joints:=[a, b]', '-p', 'reservoir.size:=60'])
    values = RP.declare(node, schema.CONTROLLER)
    assert values['kp'] == [20.0, 30.0] and all(isinstance(v, float) for v in values['kp'])
    assert values['control_rate_hz'] == 200.0 and isinstance(values['control_rate_hz'], float)
    assert values['reservoir.size'] == 60
    assert node.get_parameter('kp').type_ == Parameter.Type.DOUBLE_ARRAY
    assert node.describe_parameter('kp').floating_point_range    # descriptor kept
    assert node.describe_parameter('control_rate_hz').read_only


def test_empty_list_defaults_keep_their_type(make_node):
    node = make_node(cli=['--ros-args', '-p', 'initial_positions:=[1, 2]'])
    values = RP.declare(node, schema.SIMULATOR)
    assert values['joints'] == [] and values['initial_positions'] == [1.0, 2.0]
    assert node.describe_parameter('joints').type == ParameterType.PARAMETER_STRING_ARRAY


def test_declare_reports_every_invalid_override_at_once(make_node):
    node = make_node(cli=['--ros-args', '-p', 'kp:=[-1.0]', '-p', 'control_rate_hz:=1e5',
                          '-p', 'reservoir.size:=30.5', '-p', 'stale_sensor_action:=explode',
                          '-p', 'joints:=[a, b]', '-p', 'kd:=[1.0, 2.0, 3.0]',
                          '-p', 'command_limit:=[0.0]'])
    with pytest.raises(ValueError) as err:
        RP.declare(node, schema.CONTROLLER)
    text = str(err.value)
    for fragment in ('kp must be >= 0.0', 'control_rate_hz out of range',
                     'reservoir.size must be of type int', 'stale_sensor_action must be one of',
                     'kd needs one value per joint (2)', 'command_limit must be > 0.0'):
        assert fragment in text


@pytest.fixture
def attached(make_node):
    node = make_node(Parameter('joints', value=['a', 'b']))
    RP.declare(node, schema.CONTROLLER)
    applied = []
    RP.attach(node, schema.CONTROLLER, 2, applied.append)
    return node, applied


@pytest.mark.parametrize('name, value, reason', [
    ('kp', [1.0, 2.0, 3.0], 'one value per joint'),
    ('kp', [math.nan], 'finite'),
    ('kd', [-1.0], '>= 0.0'),
    ('command_limit', [0.0, 1.0], '> 0.0'),
    ('rls.forgetting_factor', 1.5, 'out of range'),
    ('sensor_timeout_s', math.inf, 'out of range'),
    ('reference.frequency_hz', math.nan, 'out of range'),
    ('stale_sensor_action', 'brake', 'must be one of'),
    ('reservoir.size', 100, 'read-only'),
    ('joints', ['x'], 'read-only'),
    ('learning_enabled', 'yes', 'Wrong parameter type'),
])
def test_invalid_changes_are_refused_with_a_reason(attached, name, value, reason):
    node, applied = attached
    before = node.get_parameter(name).value
    (result,) = node.set_parameters([Parameter(name, value=value)])
    assert not result.successful
    assert reason in result.reason
    assert node.get_parameter(name).value == before
    assert applied == []


def test_valid_changes_are_applied_after_set(attached):
    node, applied = attached
    (result,) = node.set_parameters([Parameter('kp', value=[3, 4])])   # ints widened
    assert result.successful, result.reason
    assert node.get_parameter('kp').type_ == Parameter.Type.DOUBLE_ARRAY
    result = node.set_parameters_atomically([Parameter('kd', value=[0.5]),
                                             Parameter('learning_enabled', value=False)])
    assert result.successful
    assert applied == [{'kp': [3.0, 4.0]}, {'kd': [0.5], 'learning_enabled': False}]


def test_atomic_set_with_one_bad_value_applies_nothing(attached):
    node, applied = attached
    result = node.set_parameters_atomically([Parameter('kd', value=[0.5]),
                                             Parameter('kp', value=[math.nan])])
    assert not result.successful and applied == []
    assert list(node.get_parameter('kd').value) == schema.defaults()['kd']


def test_unknown_parameters_are_not_refused(attached):
    node, applied = attached
    (result,) = node.set_parameters([Parameter('use_sim_time', value=True)])
    assert result.successful and applied == []


def test_validation_callback_with_unknown_joint_count():
    validate = RP.validation_callback(schema.SIMULATOR, n_joints=lambda: None)
    assert validate([Parameter('initial_positions', value=[1.0, 2.0, 3.0])]).successful
    assert not validate([Parameter('payload_scale', value=0.0)]).successful

"""Schema -> ROS parameters (lnn_control.ros.parameters), on real rclpy nodes."""
import math

from lnn_control import schema
from lnn_control.config import Config
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


def test_an_empty_list_is_an_override_where_the_default_is_empty(make_node):
    """-p x:=[] arrives untyped (NOT_SET), Parameter(x, value=[]) as a byte array."""
    node = make_node(Parameter('joints', value=[]),
                     cli=['--ros-args', '-p', 'initial_positions:=[]'], name='sim_empty')
    assert RP.declare(node, schema.SIMULATOR) == schema.defaults(schema.SIMULATOR)
    assert node.describe_parameter('joints').type == ParameterType.PARAMETER_STRING_ARRAY
    assert (node.describe_parameter('initial_positions').type
            == ParameterType.PARAMETER_DOUBLE_ARRAY)


@pytest.mark.parametrize('how', ['cli', 'params_file', 'constructor'])
def test_an_empty_list_override_is_refused_not_replaced_by_the_default(
        make_node, tmp_path, how):
    if how == 'cli':
        node = make_node(cli=['--ros-args', '-p', 'joints:=[]', '-p', 'kp:=[]'])
    elif how == 'params_file':
        path = tmp_path / 'params.yaml'
        path.write_text('/**:\n  ros__parameters:\n    joints: []\n    kp: []\n')
        node = make_node(cli=['--ros-args', '--params-file', str(path)])
    else:
        node = make_node(Parameter('joints', value=[]), Parameter('kp', value=[]))
    with pytest.raises(ValueError) as err:
        RP.declare(node, schema.CONTROLLER)
    assert 'joints: an empty list is not a value: name at least one joint' in str(err.value)
    assert ('kp: an empty list is not a value: give one value per joint or a single value '
            'for all') in str(err.value)


def test_a_single_number_for_a_per_joint_array_applies_to_every_joint(make_node):
    node = make_node(cli=['--ros-args', '-p', 'joints:=[a, b]', '-p', 'kp:=20',
                          '-p', 'kd:=1.5'])
    values = RP.declare(node, schema.CONTROLLER)
    assert values['kp'] == [20.0] and isinstance(values['kp'][0], float)
    assert values['kd'] == [1.5]
    assert node.get_parameter('kp').type_ == Parameter.Type.DOUBLE_ARRAY
    assert Config(values).kp.tolist() == [20.0, 20.0]


def test_a_wrong_type_at_start_is_said_in_words(make_node):
    node = make_node(cli=['--ros-args', '-p', 'kp:=abc', '-p', 'learning_enabled:=3',
                          '-p', 'joints:=[1, 2]'])
    with pytest.raises(ValueError) as err:
        RP.declare(node, schema.CONTROLLER)
    text = str(err.value)
    for fragment in ('kp must be a list of numbers (one per joint, or one for all); '
                     'got a string', 'learning_enabled must be true or false; got an integer',
                     'joints must be a list of strings; got a list of integers'):
        assert fragment in text
    assert "expected '" not in text and 'Trying to set' not in text


def test_a_combined_problem_of_the_overrides_is_reported_at_start(make_node):
    """Per parameter each is fine; Config, which the node builds from them, refuses both."""
    node = make_node(cli=['--ros-args', '-p', 'sensor_timeout_s:=0.001'])
    values = RP.declare(node, schema.CONTROLLER)
    with pytest.raises(ValueError, match=r'sensor_timeout_s 0.001 is shorter than one '
                                         r'control period \(0.01 s\)'):
        Config(values)


def test_declare_reports_every_invalid_override_at_once(make_node):
    node = make_node(cli=['--ros-args', '-p', 'kp:=[-1.0]', '-p', 'control_rate_hz:=1e5',
                          '-p', 'reservoir.size:=30.5', '-p', 'stale_sensor_action:=explode',
                          '-p', 'joints:=[a, b]', '-p', 'kd:=[1.0, 2.0, 3.0]',
                          '-p', 'command_limit:=[0.0]'])
    with pytest.raises(ValueError) as err:
        RP.declare(node, schema.CONTROLLER)
    text = str(err.value)
    for fragment in ('kp must be >= 0.0', 'control_rate_hz out of range',
                     'reservoir.size must be an integer; got a number',
                     'stale_sensor_action must be one of',
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
    ('learning_enabled', 'yes', 'learning_enabled must be true or false; got a string'),
    ('kp', 'abc', 'kp must be a list of numbers (one per joint, or one for all); got a string'),
    ('kd', True, 'kd must be a list of numbers (one per joint, or one for all); got a bool'),
    ('feedforward_limit', [0.5], 'feedforward_limit must be a number; got a list of numbers'),
    ('stale_sensor_action', 3, 'stale_sensor_action must be a string; got an integer'),
    ('kp', [], 'kp: an empty list is not a value: give one value per joint or a single '
               'value for all'),
    ('reservoir.size', 'big', 'read-only'),          # read-only is still said first
])
def test_invalid_changes_are_refused_with_a_reason(attached, name, value, reason):
    node, applied = attached
    before = node.get_parameter(name).value
    (result,) = node.set_parameters([Parameter(name, value=value)])
    assert not result.successful
    assert reason in result.reason
    assert node.get_parameter(name).value == before
    assert applied == []


def test_a_single_number_is_widened_at_run_time(attached):
    node, applied = attached
    for value in (20, 20.0):
        (result,) = node.set_parameters([Parameter('kp', value=value)])
        assert result.successful, result.reason
        assert list(node.get_parameter('kp').value) == [20.0]
    assert applied == [{'kp': [20.0]}, {'kp': [20.0]}]


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


def test_wrong_types_refused_in_words_by_the_callbacks_alone():
    """widening_callback passes a wrong type on for validation_callback to explain."""
    widen = RP.widening_callback(schema.CONTROLLER)
    validate = RP.validation_callback(schema.CONTROLLER, 1)
    (param,) = widen([Parameter('kp', value='abc')])
    assert param.type_ == Parameter.Type.DOUBLE_ARRAY
    result = validate([param])
    assert not result.successful
    assert result.reason == ('kp must be a list of numbers (one per joint, or one for all); '
                             'got a string')
    (param,) = widen([Parameter('kp', value=3)])
    assert param.value == [3.0] and validate([param]).successful


@pytest.fixture
def combined(make_node):
    """Return a node attached as the controller node is: with its Config's combined problems."""
    node = make_node(Parameter('joints', value=['a', 'b']),
                     Parameter('control_rate_hz', value=20.0))
    cfg = Config(RP.declare(node, schema.CONTROLLER))
    applied, judged = [], []

    def combined_problems(changes):
        judged.append(changes)
        return cfg.combined_problems(changes)
    RP.attach(node, schema.CONTROLLER, 2, applied.append, combined=combined_problems)
    return node, applied, judged


def test_a_combination_refused_by_the_config_is_refused_on_set(combined):
    node, applied, judged = combined
    (result,) = node.set_parameters([Parameter('sensor_timeout_s', value=0.01)])
    assert not result.successful
    assert result.reason == ('sensor_timeout_s 0.01 is shorter than one control period '
                             '(0.05 s): every tick would find the sensor stale')
    result = node.set_parameters_atomically([Parameter('kp', value=[50.0]),
                                             Parameter('sensor_timeout_s', value=0.02)])
    assert not result.successful and 'shorter than one control period' in result.reason
    assert node.get_parameter('sensor_timeout_s').value == 0.1
    assert list(node.get_parameter('kp').value) == schema.defaults()['kp']
    assert applied == []
    (result,) = node.set_parameters([Parameter('sensor_timeout_s', value=0.06)])  # > 1/20 s
    assert result.successful, result.reason
    assert applied == [{'sensor_timeout_s': 0.06}]


def test_the_combined_check_sees_only_the_schema_parameters_that_passed(combined):
    node, applied, judged = combined
    result = node.set_parameters_atomically([Parameter('use_sim_time', value=True),
                                             Parameter('kp', value=[3])])
    assert result.successful, result.reason
    (result,) = node.set_parameters([Parameter('kd', value=[-1.0])])
    assert not result.successful and '>= 0.0' in result.reason
    (result,) = node.set_parameters([Parameter('use_sim_time', value=False)])
    assert result.successful
    assert judged == [{'kp': [3.0]}]


def test_a_misspelled_parameter_and_gains_left_out_are_warned_about(make_node):
    """Both ran silently: the misspelling ignored, a 7-joint arm on the pendulum's gains."""
    joints = [f'j{k}' for k in range(7)]
    node = make_node(Parameter('joints', value=joints), Parameter('Kp', value=[300.0]),
                     Parameter('use_sim_time', value=True))
    RP.declare(node, schema.CONTROLLER)
    warnings = RP.startup_warnings(node, schema.CONTROLLER)
    assert len(warnings) == 2, warnings
    assert "'Kp' is not one of this node's: ignored (did you mean 'kp'?)" in warnings[0]
    assert 'joints set but not kp, kd, command_limit' in warnings[1]
    complete = make_node(*(Parameter(n, value=v) for n, v in (
        ('joints', joints), ('kp', [1.0]), ('kd', [0.1]), ('command_limit', [5.0]))),
        name='complete')
    RP.declare(complete, schema.CONTROLLER)
    assert RP.startup_warnings(complete, schema.CONTROLLER) == []

"""
Static checks of the launch and Gazebo/ros2_control files (no launch runtime here).

The Python launch files are read with ``ast`` and evaluated symbolically for
every combination of their arguments' ``choices``: every executable they start
exists, every file they reference is shipped (repo and installed share),
every parameter they set is declared by its node with a valid value, and the
topics they wire match those the nodes create and those of the ros2_control
configuration. The XML twin, the bridge YAML, the controllers YAML, the URDF
and the world are checked for the fields their consumers read.
"""
import ast
import itertools
from pathlib import Path
import re
import sys
import xml.etree.ElementTree as ET

from lnn_control import schema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PKG = 'lnn_control'
LAUNCH = REPO / 'launch'
CONFIG = REPO / 'config'
INSTALLED_SHARE = Path(sys.prefix) / 'share' / PKG
PY_LAUNCH_FILES = sorted(p.name for p in LAUNCH.glob('*.launch.py'))
EXPECTED_LAUNCH_FILES = {'controller.launch.py', 'mujoco_demo.launch.py', 'gazebo_demo.launch.py'}

# Node executables of other packages the launch files may start (checked by hand
# against ros_gz, ros2_control and robot_state_publisher sources).
EXTERNAL_EXECUTABLES = {
    ('ros_gz_sim', 'create'),
    ('ros_gz_bridge', 'parameter_bridge'),
    ('controller_manager', 'spawner'),
    ('robot_state_publisher', 'robot_state_publisher'),
}
# Parameters those external nodes are given here.
EXTERNAL_PARAMETERS = {
    'robot_state_publisher': {'robot_description', 'use_sim_time'},
    'parameter_bridge': {'config_file', 'use_sim_time'},
}
# Names launch files may import, by module (launch / launch_ros public API).
KNOWN_IMPORTS = {
    'launch': {'LaunchDescription'},
    'launch.actions': {'DeclareLaunchArgument', 'IncludeLaunchDescription',
                       'RegisterEventHandler', 'GroupAction', 'TimerAction', 'LogInfo',
                       'Shutdown'},
    'launch.substitutions': {'LaunchConfiguration', 'PathJoinSubstitution', 'Command',
                             'FindExecutable', 'TextSubstitution'},
    'launch.conditions': {'IfCondition', 'UnlessCondition'},
    'launch.event_handlers': {'OnProcessExit', 'OnProcessStart'},
    'launch.launch_description_sources': {'PythonLaunchDescriptionSource'},
    'launch_ros.actions': {'Node', 'SetParameter', 'PushRosNamespace'},
    'launch_ros.substitutions': {'FindPackageShare'},
    'launch_ros.parameter_descriptions': {'ParameterValue'},
}
NODE_KWARGS = {'package', 'executable', 'name', 'namespace', 'parameters', 'remappings',
               'arguments', 'ros_arguments', 'output', 'emulate_tty', 'condition', 'respawn',
               'respawn_delay', 'on_exit'}
SCHEMAS = {'lnn_controller': schema.CONTROLLER, 'lnn_sim': schema.SIMULATOR}
# Topics of our nodes, relative to their namespace, with direction; checked against
# the live nodes in test_node_topics_match_the_tables.
NODE_TOPICS = {
    'lnn_sim': {'joint_states': 'pub', 'commands': 'sub'},
    'lnn_controller': {'joint_states': 'sub', 'commands': 'pub'},
}
SHARE = f'<share:{PKG}>'


# --------------------------------------------------------------------------------------
# A tiny symbolic evaluator for the launch-file subset we use

class Opaque(str):
    """A value only known at launch time (xacro output, ...)."""


class LaunchModel:
    """Declared arguments and Node actions of one Python launch file."""

    def __init__(self, path: Path):
        self.path = path
        self.tree = ast.parse(path.read_text(), filename=str(path))
        self.imports = {}
        for node in ast.walk(self.tree):
            if isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    self.imports[alias.asname or alias.name] = node.module
        funcs = [n for n in self.tree.body if isinstance(n, ast.FunctionDef)
                 and n.name == 'generate_launch_description']
        assert len(funcs) == 1, f'{path.name}: needs one generate_launch_description()'
        self.func = funcs[0]
        self.symbols = {}
        for node in ast.walk(self.func):
            if isinstance(node, ast.Assign) and len(node.targets) == 1 \
                    and isinstance(node.targets[0], ast.Name):
                self.symbols[node.targets[0].id] = node.value
        self.calls = [n for n in ast.walk(self.func) if isinstance(n, ast.Call)
                      and isinstance(n.func, ast.Name)]
        self.arg_decls = [c for c in self.calls if c.func.id == 'DeclareLaunchArgument']
        self.node_calls = [c for c in self.calls if c.func.id == 'Node']

    # -- evaluation ------------------------------------------------------------------
    @staticmethod
    def kwargs(call):
        return {k.arg: k.value for k in call.keywords}

    def value(self, expr, args):
        """Evaluate an expression to a Python object: lists stay lists, dicts stay dicts."""
        if isinstance(expr, ast.Name) and expr.id in self.symbols:
            return self.value(self.symbols[expr.id], args)
        if isinstance(expr, ast.Constant):
            return expr.value
        if isinstance(expr, (ast.List, ast.Tuple)):
            return [self.value(e, args) for e in expr.elts]
        if isinstance(expr, ast.Dict):
            return {self.value(k, args): self.param_value(v, args)
                    for k, v in zip(expr.keys, expr.values)}
        return self.subst(expr, args)

    def param_value(self, expr, args):
        """Return a parameter value as launch_ros evaluates it: substitutions are YAML-parsed."""
        if isinstance(expr, ast.Constant):
            return expr.value
        text = self.subst(expr, args)
        if isinstance(text, Opaque):
            return text
        return yaml.safe_load(text)

    def subst(self, expr, args):
        """Evaluate SomeSubstitutionsType to the string it performs to."""
        if isinstance(expr, ast.Name) and expr.id in self.symbols:
            return self.subst(self.symbols[expr.id], args)
        if isinstance(expr, ast.Constant):
            assert isinstance(expr.value, str), ast.dump(expr)
            return expr.value
        if isinstance(expr, (ast.List, ast.Tuple)):
            parts = [self.subst(e, args) for e in expr.elts]
            joined = ''.join(parts)
            return Opaque(joined) if any(isinstance(p, Opaque) for p in parts) else joined
        assert isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name), \
            f'{self.path.name}:{expr.lineno}: unsupported expression {ast.unparse(expr)}'
        name, pos, kw = expr.func.id, expr.args, self.kwargs(expr)
        if name == 'LaunchConfiguration':
            arg = self.subst(pos[0], args)
            assert arg in args, f'{self.path.name}: LaunchConfiguration({arg!r}) not declared'
            return args[arg]
        if name == 'FindPackageShare':
            return f'<share:{self.subst(pos[0], args)}>'
        if name == 'PathJoinSubstitution':
            return '/'.join(self.subst(e, args) for e in pos[0].elts)
        if name == 'FindExecutable':
            return Opaque(self.subst(kw['name'], args))
        if name == 'Command':
            return Opaque('$(' + self.subst(pos[0], args) + ')')
        if name == 'ParameterValue':
            return Opaque(self.subst(pos[0], args))
        if name == 'TextSubstitution':
            return self.subst(kw['text'], args)
        raise AssertionError(f'{self.path.name}:{expr.lineno}: unsupported call {name}')

    # -- arguments ---------------------------------------------------------------------
    def declared(self):
        out = {}
        for call in self.arg_decls:
            kw = self.kwargs(call)
            name = call.args[0].value if call.args else kw['name'].value
            choices = [c.value for c in kw['choices'].elts] if 'choices' in kw else None
            out[name] = (kw.get('default_value'), choices, kw.get('description'))
        return out

    def scenarios(self):
        """Every combination of the choices of the declared arguments (others: defaults)."""
        decls = self.declared()
        with_choices = [n for n, (_, c, _) in decls.items() if c]
        for combo in itertools.product(*(decls[n][1] for n in with_choices)):
            chosen = dict(zip(with_choices, combo))
            args = {}
            for name, (default, _choices, _desc) in decls.items():
                args[name] = chosen[name] if name in chosen else self.subst(default, args)
            yield args

    def nodes(self, args):
        out = []
        for call in self.node_calls:
            kw = self.kwargs(call)
            out.append({
                'lineno': call.lineno,
                'kwargs': set(kw),
                'on_exit': ast.unparse(kw['on_exit']) if 'on_exit' in kw else None,
                'package': self.subst(kw['package'], args),
                'executable': self.subst(kw['executable'], args),
                'name': self.subst(kw['name'], args) if 'name' in kw else None,
                'namespace': self.subst(kw['namespace'], args) if 'namespace' in kw else '',
                'parameters': self.value(kw['parameters'], args) if 'parameters' in kw else [],
                'remappings': [tuple(r) for r in self.value(kw['remappings'], args)]
                if 'remappings' in kw else [],
                'arguments': self.value(kw['arguments'], args) if 'arguments' in kw else [],
            })
        return out


def share_path(text):
    """'<share:lnn_control>/config/x.yaml' -> Path in the repo (None for other packages)."""
    if not isinstance(text, str) or not text.startswith(SHARE + '/'):
        return None
    return REPO / text[len(SHARE) + 1:]


def resolve_topic(topic, namespace):
    if topic.startswith('/'):
        return topic
    ns = '/' + namespace.strip('/') if namespace.strip('/') else ''
    return f'{ns}/{topic}'


def node_topics(node):
    """Return {resolved topic: direction} of one of our nodes after remapping."""
    remaps = dict(node['remappings'])
    return {resolve_topic(remaps.get(t, t), node['namespace']): d
            for t, d in NODE_TOPICS[node['executable']].items()}


def console_scripts():
    tree = ast.parse((REPO / 'setup.py').read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for k, v in zip(node.keys, node.values):
                if isinstance(k, ast.Constant) and k.value == 'console_scripts':
                    return {e.value.split('=')[0].strip() for e in v.elts}
    raise AssertionError('no console_scripts in setup.py')


def ros_params(node):
    """Return the merged parameters of a node: files (by node name) then dicts, in order."""
    merged = {}
    for entry in node['parameters']:
        if isinstance(entry, dict):
            merged.update(entry)
        else:
            path = share_path(entry)
            assert path is not None, f'parameter file outside the package: {entry}'
            merged.update(schema.load_yaml_overrides(str(path), node['name'] or node['executable']))
    return merged


def gz_controllers():
    return yaml.safe_load((CONFIG / 'gz_controllers.yaml').read_text())


def forward_effort_controllers():
    """{name: joints} of the effort forward_command_controllers in gz_controllers.yaml."""
    doc = gz_controllers()
    cm = doc['controller_manager']['ros__parameters']
    out = {}
    for name, spec in cm.items():
        if isinstance(spec, dict) and spec.get('type') == \
                'forward_command_controller/ForwardCommandController':
            params = doc[name]['ros__parameters']
            if params['interface_name'] == 'effort':
                out[name] = list(params['joints'])
    return out


@pytest.fixture(scope='module', params=PY_LAUNCH_FILES)
def model(request):
    return LaunchModel(LAUNCH / request.param)


# --------------------------------------------------------------------------------------
# launch files

@pytest.mark.unit
def test_expected_launch_files_exist():
    assert EXPECTED_LAUNCH_FILES <= set(PY_LAUNCH_FILES)


@pytest.mark.unit
def test_imports_are_real_launch_api(model):
    for name, module in model.imports.items():
        if module in KNOWN_IMPORTS:
            assert name in KNOWN_IMPORTS[module], f'{model.path.name}: {module}.{name}?'
        else:
            assert module.split('.')[0] not in ('launch', 'launch_ros'), \
                f'{model.path.name}: unexpected module {module}'
    used = {c.func.id for c in model.calls}
    for name in used & set().union(*KNOWN_IMPORTS.values()):
        assert name in model.imports, f'{model.path.name}: {name} used but not imported'


@pytest.mark.unit
def test_arguments_have_descriptions_and_valid_defaults(model):
    for name, (default, choices, description) in model.declared().items():
        assert default is not None, f'{model.path.name}: argument {name} has no default'
        assert description is not None, f'{model.path.name}: argument {name} undocumented'
        if choices:
            assert isinstance(default, ast.Constant) and default.value in choices, \
                f'{model.path.name}: default of {name} is not one of its choices'


@pytest.mark.unit
def test_node_executables_exist(model):
    scripts = console_scripts()
    for args in model.scenarios():
        for node in model.nodes(args):
            assert node['kwargs'] <= NODE_KWARGS, \
                f'{model.path.name}:{node["lineno"]}: unknown Node kwargs ' \
                f'{node["kwargs"] - NODE_KWARGS}'
            if node['package'] == PKG:
                assert node['executable'] in scripts
                assert node['executable'] in SCHEMAS
            else:
                assert (node['package'], node['executable']) in EXTERNAL_EXECUTABLES


def _referenced_strings(model, args):
    strings = [model.subst(d, args) for d, _, _ in model.declared().values()]
    for node in model.nodes(args):
        strings += [p for p in node['parameters'] if isinstance(p, str)]
        strings += [v for p in node['parameters'] if isinstance(p, dict)
                    for v in p.values() if isinstance(v, str)]
        strings += [a for a in node['arguments'] if isinstance(a, str)]
    for call in model.calls:
        if call.func.id == 'PathJoinSubstitution':
            strings.append(model.subst(call, args))
    found = []
    for s in strings:
        found += re.findall(re.escape(SHARE) + r'/[\w./-]+', s)
    return found


@pytest.mark.unit
def test_referenced_files_are_in_the_package(model):
    seen = set()
    for args in model.scenarios():
        for ref in _referenced_strings(model, args):
            path = share_path(ref)
            assert path.is_file(), f'{model.path.name}: {ref} does not exist in the repo'
            assert path.parent.name in ('launch', 'config') and path.parent.parent == REPO, \
                f'{ref}: only launch/ and config/ are installed by setup.py'
            seen.add(path)
    if model.path.name != 'controller.launch.py':
        assert seen, f'{model.path.name} references no package file?'


@pytest.mark.unit
def test_referenced_files_are_installed(model):
    assert (INSTALLED_SHARE / 'package.xml').is_file(), \
        'lnn_control is not installed under sys.prefix (run `make test`)'
    for args in model.scenarios():
        for ref in _referenced_strings(model, args):
            rel = share_path(ref).relative_to(REPO)
            installed = INSTALLED_SHARE / rel
            assert installed.is_file(), f'{installed} not installed (stale install?)'


@pytest.mark.unit
def test_our_node_parameters_are_declared_and_valid(model):
    for args in model.scenarios():
        for node in model.nodes(args):
            if node['package'] != PKG:
                continue
            values = ros_params(node)
            sim_time = values.pop('use_sim_time', False)
            assert isinstance(sim_time, bool), f'use_sim_time must be a bool: {sim_time!r}'
            try:
                schema.resolve(values, SCHEMAS[node['executable']])
            except ValueError as e:
                pytest.fail(f'{model.path.name} {args}: {node["executable"]}: {e}')


@pytest.mark.unit
def test_external_node_parameters(model):
    for args in model.scenarios():
        for node in model.nodes(args):
            if node['package'] == PKG:
                continue
            allowed = EXTERNAL_PARAMETERS.get(node['executable'], set())
            for entry in node['parameters']:
                assert isinstance(entry, dict)
                assert set(entry) <= allowed, (node['executable'], set(entry) - allowed)
                assert entry.get('use_sim_time', True) is True


@pytest.mark.unit
def test_lockstep_and_sim_time_agree():
    """Lock-step publishes /clock: the controller must follow it, and only then."""
    model = LaunchModel(LAUNCH / 'mujoco_demo.launch.py')
    for args in model.scenarios():
        nodes = {n['executable']: n for n in model.nodes(args)}
        sim = schema.resolve(ros_params(nodes['lnn_sim']), schema.SIMULATOR)
        ctl = ros_params(nodes['lnn_controller'])
        assert ctl['use_sim_time'] is sim['lockstep']
        assert 'use_sim_time' not in ros_params(nodes['lnn_sim'])   # the clock source
        # one command per control period: the periods agree
        rate = schema.resolve({k: v for k, v in ctl.items()
                               if k != 'use_sim_time'})['control_rate_hz']
        assert sim['control_period_s'] == pytest.approx(1.0 / rate)


@pytest.mark.unit
def test_mujoco_demo_joints_and_topics_match():
    from lnn_control.plants import Plant
    model = LaunchModel(LAUNCH / 'mujoco_demo.launch.py')
    scenarios = list(model.scenarios())
    assert {a['plant'] for a in scenarios} == {'pendulum', 'arm2', 'cartpole'}
    for args in scenarios:
        nodes = {n['executable']: n for n in model.nodes(args)}
        sim = schema.resolve(ros_params(nodes['lnn_sim']), schema.SIMULATOR)
        ctl = schema.resolve({k: v for k, v in ros_params(nodes['lnn_controller']).items()
                              if k != 'use_sim_time'})
        plant = Plant(sim['model'], sim['joints'] or None)
        assert list(plant.joint_names) == list(ctl['joints']), args   # command order
        for node in nodes.values():     # one of the pair gone, the demo ends (it ran on)
            assert (node['on_exit'] or '').startswith('Shutdown('), args
        sim_topics = node_topics(nodes['lnn_sim'])
        ctl_topics = node_topics(nodes['lnn_controller'])
        assert set(sim_topics) == set(ctl_topics)
        for topic, direction in ctl_topics.items():
            assert sim_topics[topic] != direction, f'{topic}: both {direction}'


@pytest.mark.unit
def test_gazebo_demo_wiring_matches_ros2_control_config():
    model = LaunchModel(LAUNCH / 'gazebo_demo.launch.py')
    effort = forward_effort_controllers()
    for args in model.scenarios():
        nodes = model.nodes(args)
        ctl = [n for n in nodes if n['executable'] == 'lnn_controller']
        assert len(ctl) == 1
        ctl = ctl[0]
        values = ros_params(ctl)
        assert values.pop('use_sim_time') is True
        joints = list(schema.resolve(values)['joints'])
        topics = node_topics(ctl)
        (commands,) = [t for t, d in topics.items() if d == 'pub']
        m = re.fullmatch(r'/(\w+)/commands', commands)
        assert m and m.group(1) in effort, f'{commands} is no effort controller of ' \
                                           f'gz_controllers.yaml ({sorted(effort)})'
        assert effort[m.group(1)] == joints               # same joints, same order
        assert [t for t, d in topics.items() if d == 'sub'] == ['/joint_states']
        spawned = [n['arguments'][0] for n in nodes if n['executable'] == 'spawner']
        assert set(spawned) == {'joint_state_broadcaster', m.group(1)}
        for n in nodes:
            if n['executable'] == 'spawner':
                assert n['arguments'][0] in gz_controllers()['controller_manager'][
                    'ros__parameters']
            if n['executable'] == 'create':
                a = n['arguments']
                assert a[a.index('-topic') + 1] == 'robot_description'
            if n['executable'] == 'parameter_bridge':
                (entry,) = n['parameters']
                assert share_path(entry['config_file']) == CONFIG / 'gz_bridge.yaml'
    # gz sim itself comes from ros_gz_sim's launch file with our world in gz_args
    text = (LAUNCH / 'gazebo_demo.launch.py').read_text()
    assert "FindPackageShare('ros_gz_sim'), 'launch', 'gz_sim.launch.py'" in text
    args = next(model.scenarios())
    assert args['gz_args'].endswith(f'{SHARE}/config/empty_world.sdf')


@pytest.mark.unit
def test_controller_launch_default_targets_a_forward_command_controller():
    model = LaunchModel(LAUNCH / 'controller.launch.py')
    (args,) = list(model.scenarios())[:1]
    (node,) = model.nodes(args)
    assert node['namespace'] == '' and node['name'] == 'lnn_controller'
    topics = node_topics(node)
    (commands,) = [t for t, d in topics.items() if d == 'pub']
    assert commands == '/effort_controller/commands'
    assert 'effort_controller' in forward_effort_controllers()
    # with a namespace, the relative defaults follow it like a namespaced controller_manager
    node['namespace'] = 'robot1'
    assert set(node_topics(node)) == {'/robot1/effort_controller/commands',
                                      '/robot1/joint_states'}
    # remap keys are the node's real topic names
    assert {k for k, _ in node['remappings']} == set(NODE_TOPICS['lnn_controller'])


def xml_declared(root):
    """Return {name: (default, choices or None)} of the <arg> tags of an XML launch file."""
    out = {}
    for arg in root.findall('arg'):
        choices = [c.get('value') for c in arg.findall('choice')]
        out[arg.get('name')] = (arg.get('default'), choices or None)
    return out


def xml_subst(text):
    """Evaluate the substitutions of our XML launch files as LaunchModel.subst does."""
    return re.sub(r'\$\(find-pkg-share (\w+)\)', r'<share:\1>', text)


@pytest.mark.unit
def test_xml_twin_declares_the_same_arguments():
    """Same names, defaults and choices: a value one refuses, the other refuses too."""
    model = LaunchModel(LAUNCH / 'controller.launch.py')
    py = {name: (model.subst(default, {}), choices)
          for name, (default, choices, _) in model.declared().items()}
    xml = {name: (xml_subst(default), choices)
           for name, (default, choices) in
           xml_declared(ET.parse(LAUNCH / 'controller.launch.xml').getroot()).items()}
    assert list(xml) == list(py)                      # same arguments, same order
    for name in py:
        assert xml[name] == py[name], f'{name}: XML {xml[name]} vs Python {py[name]}'
    assert py['use_sim_time'][1] == ['true', 'false']
    assert py['log_level'][1] == ['debug', 'info', 'warn', 'error', 'fatal']
    # what `ros2 launch --show-args` prints is the same too (params_file's differed)
    xml_text = {a.get('name'): a.get('description')
                for a in ET.parse(LAUNCH / 'controller.launch.xml').getroot().findall('arg')}
    assert xml_text == {name: description.value
                        for name, (_, _, description) in model.declared().items()}
    for name, (default, choices) in xml.items():      # launch refuses such a file
        assert choices is None or default in choices, name


@pytest.mark.unit
def test_xml_twin_matches_python_launch():
    path = LAUNCH / 'controller.launch.xml'
    root = ET.parse(path).getroot()
    assert root.tag == 'launch'
    xml_args = {name: default for name, (default, _) in xml_declared(root).items()}
    assert xml_args['params_file'] == f'$(find-pkg-share {PKG})/config/pendulum.yaml'
    (node,) = root.findall('node')
    assert (node.get('pkg'), node.get('exec')) == (PKG, 'lnn_controller')
    assert (node.get('output'), node.get('emulate_tty')) == ('screen', 'true')   # as the .py
    assert node.get('exec') in console_scripts()
    assert node.get('namespace') == '$(var namespace)'
    remaps = {r.get('from'): r.get('to') for r in node.findall('remap')}
    assert remaps == {'commands': '$(var commands_topic)',
                      'joint_states': '$(var joint_states_topic)'}
    params = node.findall('param')
    assert [p.get('from') for p in params if p.get('from')] == ['$(var params_file)']
    assert {p.get('name'): p.get('value') for p in params if p.get('name')} == \
        {'use_sim_time': '$(var use_sim_time)'}
    for var in re.findall(r'\$\(var (\w+)\)', path.read_text()):
        assert var in xml_args


# --------------------------------------------------------------------------------------
# the nodes really use the topics of NODE_TOPICS

@pytest.mark.ros
def test_node_topics_match_the_tables(context):
    from lnn_control.ros.controller_node import LnnControllerNode
    from lnn_control.ros.sim_node import SimNode

    for cls, exe in ((SimNode, 'lnn_sim'), (LnnControllerNode, 'lnn_controller')):
        node = cls(context=context)
        try:
            pubs = {p.topic_name for p in node.publishers}
            subs = {s.topic_name for s in node.subscriptions}
            for topic, direction in NODE_TOPICS[exe].items():
                assert '/' + topic in (pubs if direction == 'pub' else subs), (exe, topic)
        finally:
            node.destroy_node()


# --------------------------------------------------------------------------------------
# Gazebo / ros2_control configuration

@pytest.mark.unit
def test_gz_bridge_yaml():
    entries = yaml.safe_load((CONFIG / 'gz_bridge.yaml').read_text())
    assert isinstance(entries, list) and entries
    required = {'ros_topic_name', 'gz_topic_name', 'ros_type_name', 'gz_type_name', 'direction'}
    for e in entries:
        assert required <= set(e), e
        assert set(e) <= required | {'subscriber_queue', 'publisher_queue', 'lazy', 'qos_profile'}
        assert e['direction'] in ('BIDIRECTIONAL', 'GZ_TO_ROS', 'ROS_TO_GZ')
        assert re.fullmatch(r'\w+/msg/\w+', e['ros_type_name'])
        assert re.fullmatch(r'gz\.msgs\.\w+', e['gz_type_name'])
    clock = [e for e in entries if e['ros_topic_name'] == '/clock']
    assert clock == [{'ros_topic_name': '/clock', 'gz_topic_name': '/clock',
                      'ros_type_name': 'rosgraph_msgs/msg/Clock', 'gz_type_name': 'gz.msgs.Clock',
                      'direction': 'GZ_TO_ROS'}]


@pytest.mark.unit
def test_gz_controllers_yaml():
    doc = gz_controllers()
    cm = doc['controller_manager']['ros__parameters']
    assert isinstance(cm['update_rate'], int) and cm['update_rate'] >= 100
    assert cm['joint_state_broadcaster']['type'] == 'joint_state_broadcaster/JointStateBroadcaster'
    assert forward_effort_controllers() == {'effort_controller': ['joint1']}
    # the controller's parameter file controls the same joints in the same order
    assert schema.resolve(schema.load_yaml_overrides(
        str(CONFIG / 'pendulum.yaml'), 'lnn_controller'))['joints'] == ['joint1']


def _urdf():
    return ET.parse(CONFIG / 'pendulum.urdf.xacro').getroot()


@pytest.mark.unit
def test_urdf_ros2_control_block():
    root = _urdf()
    assert root.tag == 'robot'
    (rc,) = root.findall('ros2_control')
    assert rc.find('hardware/plugin').text.strip() == 'gz_ros2_control/GazeboSimSystem'
    joints = {j.get('name'): j for j in root.findall('joint')}
    rc_joints = rc.findall('joint')
    effort_joints = [j.get('name') for j in rc_joints
                     if any(c.get('name') == 'effort' for c in j.findall('command_interface'))]
    assert effort_joints == forward_effort_controllers()['effort_controller']
    for j in rc_joints:
        assert j.get('name') in joints
        states = {s.get('name') for s in j.findall('state_interface')}
        assert {'position', 'velocity', 'effort'} <= states   # what the broadcaster publishes
    (plugin,) = root.findall('gazebo/plugin')
    assert plugin.get('filename') == 'gz_ros2_control-system'
    assert plugin.get('name') == 'gz_ros2_control::GazeboSimROS2ControlPlugin'
    params = plugin.find('parameters').text.strip()
    arg = {a.get('name'): a.get('default') for a in
           root.findall('{http://www.ros.org/wiki/xacro}arg')}
    m = re.fullmatch(r'\$\(arg (\w+)\)', params)
    path = arg[m.group(1)] if m else params
    m = re.fullmatch(r'\$\(find lnn_control\)/(.+)', path)
    assert m and (REPO / m.group(1)) == CONFIG / 'gz_controllers.yaml'


@pytest.mark.unit
def test_urdf_pendulum_matches_mujoco_model():
    from lnn_control.plants import Plant
    plant = Plant('pendulum')
    m = plant.model
    root = _urdf()
    joint = {j.get('name'): j for j in root.findall('joint')}['joint1']
    assert joint.get('type') == 'revolute'
    assert float(joint.find('limit').get('effort')) == float(plant.effort_limit[0]) == 20.0
    assert [float(v) for v in joint.find('axis').get('xyz').split()] == [0, 1, 0]
    assert float(joint.find('dynamics').get('damping')) == pytest.approx(m.dof_damping[0])
    base = {j.get('name'): j for j in root.findall('joint')}['base_joint']
    assert [float(v) for v in base.find('origin').get('xyz').split()] == \
        pytest.approx(list(m.body_pos[1]))                     # hinge height
    link = {li.get('name'): li for li in root.findall('link')}[joint.find('child').get('link')]
    inertial = link.find('inertial')
    assert float(inertial.find('mass').get('value')) == pytest.approx(m.body_mass[1])
    assert [float(v) for v in inertial.find('origin').get('xyz').split()] == \
        pytest.approx(list(m.body_ipos[1]))
    inertia = inertial.find('inertia')
    assert [float(inertia.get(k)) for k in ('ixx', 'iyy', 'izz')] == \
        pytest.approx(list(m.body_inertia[1]), rel=1e-5)


@pytest.mark.unit
def test_world_has_the_systems_gazebo_needs():
    root = ET.parse(CONFIG / 'empty_world.sdf').getroot()
    assert root.tag == 'sdf'
    (world,) = root.findall('world')
    plugins = {p.get('filename'): p.get('name') for p in world.findall('plugin')}
    assert plugins['gz-sim-physics-system'] == 'gz::sim::systems::Physics'
    assert plugins['gz-sim-user-commands-system'] == 'gz::sim::systems::UserCommands'
    assert plugins['gz-sim-scene-broadcaster-system'] == 'gz::sim::systems::SceneBroadcaster'
    assert float(world.find('physics/max_step_size').text) == pytest.approx(0.001)


@pytest.mark.unit
def test_sim_parameter_file_is_valid():
    from lnn_control.plants import Plant
    values = schema.resolve(
        schema.load_yaml_overrides(str(CONFIG / 'sim_pendulum.yaml'), 'lnn_sim'),
        schema.SIMULATOR)
    assert list(Plant(values['model']).joint_names) == list(values['joints'])
    # keyed by node name: it must not leak into the controller
    assert schema.load_yaml_overrides(str(CONFIG / 'sim_pendulum.yaml'), 'lnn_controller') == {}


@pytest.mark.unit
def test_gazebo_doc_lists_what_to_install():
    text = (REPO / 'docs' / 'gazebo.md').read_text()
    for pkg in ('ros-gz', 'gz-ros2-control', 'ros2-controllers', 'robot-state-publisher',
                'xacro'):
        assert f'ros-${{ROS_DISTRO}}-{pkg}' in text or f'ros-<distro>-{pkg}' in text, pkg
    for name in ('gazebo_demo.launch.py', 'controller.launch.py', 'commands_topic'):
        assert name in text

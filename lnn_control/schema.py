"""
The one parameter schema: names, types, defaults, ranges and descriptions.

The ROS node declares its parameters from here, the YAML files in ``config/``
are checked against it, the CLI resolves its settings through it and
``docs/parameters.md`` is generated from it, so a default lives in one place.
The learning defaults are chosen over the plant zoo (``lnn_control.zoo``), not
for one plant; the plant-specific ones (joints, gains, limits, reference)
default to the bundled pendulum's, so a node started without a parameter file
controls it, and ``config/pendulum.yaml`` states them explicitly. ROS-free.
"""
from __future__ import annotations

import array
from dataclasses import dataclass
import math
import os
from typing import Any, Iterable, Mapping

import numpy as np

# The MuJoCo plants shipped with the package (``lnn_control/models/<name>.xml``):
# the simulator's ``model`` choices besides zoo/<name> and MJCF paths.
BUNDLED_PLANTS = ('pendulum', 'arm2', 'cartpole')
# Parameters every node has (rclpy's own) or that rclpy reads itself: a node's parameter
# file may hold them; the schema has none of them.
ROS_OWN = ('use_sim_time', 'start_type_description_service', 'qos_overrides.')

# Parameter kinds (mirroring ROS parameter types).
BOOL, INT, DOUBLE, STRING, DOUBLE_ARRAY, STRING_ARRAY = (
    'bool', 'int', 'double', 'string', 'double[]', 'string[]')


@dataclass(frozen=True)
class Param:
    """
    One parameter.

    ``per_joint`` arrays hold one value per entry of ``joints`` (a single value
    applies to every joint). ``read_only`` marks settings whose change would
    need the reservoir or readout rebuilt; they are fixed once a node starts.
    """

    name: str
    kind: str
    default: Any
    description: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    read_only: bool = False
    per_joint: bool = False
    open_low: bool = False   # value must be strictly greater than ``low``
    unique: bool = False     # string[] of names: none repeated, empty or with a comma


CONTROLLER = (
    Param('joints', STRING_ARRAY, ['joint1'],
          'Controlled joints, in command order; joint_states are matched by name.',
          read_only=True, unique=True),
    Param('control_rate_hz', DOUBLE, 100.0,
          'Control loop rate (on the node clock with use_sim_time, else the steady clock).',
          1.0, 2000.0, read_only=True),
    Param('kp', DOUBLE_ARRAY, [16.64],
          'PD proportional gain per joint [effort/rad]. Also the learning signal scale.',
          0.0, 1e6, per_joint=True),
    Param('kd', DOUBLE_ARRAY, [1.926],
          'PD derivative gain per joint [effort*s/rad].', 0.0, 1e5, per_joint=True),
    Param('command_limit', DOUBLE_ARRAY, [20.0],
          'Symmetric saturation of the published effort per joint.',
          0.0, 1e6, per_joint=True, open_low=True),
    Param('continuous_joints', STRING_ARRAY, [],
          'Joints (of joints) whose position is an angle that wraps: wheels, turntables, '
          'wrist rolls (URDF continuous). Their position error is taken the shortest way '
          "round (ros2_controllers' angle_wraparound), measured and reference positions "
          'may come in any branch ([-pi, pi) or unwrapped) and limits.position does not '
          'apply to them.', read_only=True, unique=True),
    Param('limits.position', DOUBLE_ARRAY, [1000.0],
          'Plausibility limit per joint [rad or m]: joint_states, ~/reference or '
          '~/joint_trajectory waypoints with |position| above it are dropped (reason '
          'implausible), never learned from, and '
          'cannot start control. Generous by default: it catches garbage (a corrupt '
          'message, a unit mix-up), not a robot leaving its workspace; set to your '
          "joints' range, leave a margin for overshoot: beyond it the robot's own "
          'joint_states are dropped and it is left to stale_sensor_action. A value that '
          'the measured or desired state, the trajectory held or the generated reference '
          'already exceed is refused (continuous_joints are exempt).',
          0.0, 1e9, per_joint=True, open_low=True),
    Param('limits.velocity', DOUBLE_ARRAY, [1000.0],
          'Plausibility limit per joint [rad/s or m/s] on |velocity|, as limits.position.',
          0.0, 1e9, per_joint=True, open_low=True),
    Param('learning_enabled', BOOL, True,
          'Adapt the readout online; off keeps applying the learned feedforward.'),
    Param('controller.mode', STRING, 'feedback_error',
          'feedback_error: PD + learned feedforward trained by the PD output; '
          'inverse_model: readout learns u(t-1) from states at t-1 and t (Waegeman 2012).',
          choices=('feedback_error', 'inverse_model'), read_only=True),
    Param('input.normalization', STRING, 'auto',
          'auto: each input is divided by 1.25x the peak the reference has shown so far '
          '(per joint, position, velocity and acceleration; scales only grow, and the '
          'readouts are rescaled with them so nothing learned is lost); fixed: divide by '
          'input.position_scale, input.velocity_scale, input.acceleration_scale, each '
          'grown as an automatic one only where the reference exceeds it tenfold (inputs '
          'that far past their scale made learning worse than PD).',
          choices=('auto', 'fixed'), read_only=True),
    Param('input.position_scale', DOUBLE_ARRAY, [1.0],
          'input.normalization fixed: typical |q| range of the reference.',
          0.0, 1e6, per_joint=True, open_low=True, read_only=True),
    Param('input.velocity_scale', DOUBLE_ARRAY, [1.0],
          'input.normalization fixed: typical |qd| range of the reference.',
          0.0, 1e6, per_joint=True, open_low=True, read_only=True),
    Param('input.acceleration_scale', DOUBLE_ARRAY, [2.0],
          'input.normalization fixed: typical |qdd| range of the reference.',
          0.0, 1e6, per_joint=True, open_low=True, read_only=True),
    Param('feedforward_limit', DOUBLE, 0.8,
          'Bound of the learned feedforward as a fraction of command_limit, so the PD '
          'part always keeps authority.', 0.0, 1.0),
    Param('supervisor.enabled', BOOL, True,
          'Learning supervisor: roll back, freeze or zero the learned feedforward when it '
          'makes tracking worse than PD alone (docs: "Learning supervisor").'),
    Param('supervisor.trip_ratio', DOUBLE, 1.1,
          'Estimated tracking error with learning / PD alone above which the supervisor '
          "intervenes; 1.3x it bounds the settled feedforward's power above the "
          "loop's bandwidth / the command's within it (a self-excited oscillation). "
          'Stricter (lower) is allowed, looser is not: at 2-10 learning made arms with '
          'actuation delay 2.0-2.9x worse than PD over 10 s; to accept that, disable the '
          'supervisor.',
          0.5, 1.1),
    Param('supervisor.window_s', DOUBLE, 1.0,
          'Averaging time of that estimate [s]. At most 1 s: at 5-60 s the supervisor '
          'stepped in too late (10 s windows of 1.4-7.8x PD). At least 0.25 s: at 0.1 s '
          'its figures are too noisy to judge by, and it held the whole named zoo at PD '
          '(median ratio 0.99; 0.25 s: 0.039).', 0.25, 1.0),
    Param('supervisor.hold_s', DOUBLE, 2.0,
          'Learning stays frozen (or the feedforward zeroed) this long after an '
          'intervention [s].', 0.0, 600.0, open_low=True),
    Param('change_detection.enabled', BOOL, True,
          "Detect plant changes (payload, friction) from a jump of the slow readout's "
          'error and restart the covariances, so it re-learns in seconds rather than '
          'minutes (docs: "Re-adaptation").'),
    Param('change_detection.threshold', DOUBLE, 0.5,
          'Evidence a change needs [s]: the time integral of log(error power / 2x its '
          'typical level, the running 90th percentile). Lower flags smaller changes '
          'sooner, with more false alarms.', 0.0, 100.0, open_low=True),
    Param('prediction.enabled', BOOL, True,
          'Forward model: readouts of the reservoir predict the measured joint state '
          '(feedback_error mode; O(N) per tick, docs: "Forward model").', read_only=True),
    Param('prediction.horizon_ticks', INT, 1,
          'Horizon of the prediction published on ~/prediction [control ticks].', 1, 1000,
          read_only=True),
    Param('prediction.long_horizon_s', DOUBLE, 0.5,
          'A second, longer prediction horizon [s], published on ~/long_prediction '
          '(0: none).', 0.0, 5.0, read_only=True),
    Param('prediction.anomaly_threshold', DOUBLE, 0.05,
          'Evidence an anomaly needs [s]: the change-detection test on the one-step '
          "prediction error's correlation with the command. Lower flags smaller changes "
          'sooner, with more false alarms.',
          0.0, 100.0, open_low=True),
    Param('prediction.anomaly_restarts_learning', BOOL, False,
          "Treat a prediction anomaly as a plant change: restart the readouts' covariances "
          'as change_detection does.'),
    Param('reservoir.size', INT, 300, 'Number of reservoir neurons N.', 10, 5000,
          read_only=True),
    Param('reservoir.neuron_model', STRING, 'esn',
          'esn: leaky tanh; ltc: liquid time-constant; lif: spiking leaky integrate-and-fire.',
          choices=('esn', 'ltc', 'lif'), read_only=True),
    Param('reservoir.spectral_radius', DOUBLE, 0.9,
          'Spectral radius the sparse recurrent matrix is scaled to.', 0.0, 2.0,
          read_only=True),
    Param('reservoir.leak_rate', DOUBLE, 0.3, 'Leak rate of the esn neurons.',
          0.0, 1.0, open_low=True, read_only=True),
    Param('reservoir.input_scaling', DOUBLE, 0.5, 'Scale of the random input weights.',
          0.0, 100.0, open_low=True, read_only=True),
    Param('reservoir.bias_scaling', DOUBLE, 0.2, 'Scale of the random neuron biases.',
          0.0, 100.0, read_only=True),
    Param('reservoir.density', DOUBLE, 0.05,
          'Fraction of non-zero recurrent weights.', 0.0, 1.0, open_low=True,
          read_only=True),
    Param('reservoir.seed', INT, 0, 'Seed of the random reservoir (reproducible).',
          0, 2**31 - 1, read_only=True),
    Param('reservoir.ltc_unfolds', INT, 6,
          'Fused semi-implicit solver steps per control tick (ltc).', 1, 100,
          read_only=True),
    Param('reservoir.lif_substeps', INT, 5, 'Integration sub-steps per tick (lif).',
          1, 100, read_only=True),
    Param('reservoir.lif_trace_time_constant_s', DOUBLE, 0.05,
          'Time constant of the filtered spike traces the readout sees (lif).',
          0.0, 10.0, open_low=True, read_only=True),
    Param('rls.forgetting_factor', DOUBLE, 0.9999,
          'Forgetting factor lambda of the slow readout (1 = no forgetting).',
          0.9, 1.0),
    Param('rls.initial_covariance', DOUBLE, 1.0,
          'Initial covariance P0 = delta*I, relative to the mean squared feature '
          'norm; applies at the next reset. Large values learn aggressively; above '
          '100 the learning supervisor brings it to 100 at its first trip.',
          0.0, 1e6, open_low=True),
    Param('rls.fast_learner', BOOL, True,
          'Add a fast-forgetting readout on top of the slow one for quick '
          're-adaptation after plant changes. The learning supervisor caps the '
          "learners' gain per step at its first trip (with actuation delay: at "
          'start-up) and switches the fast learner off at the second.', read_only=True),
    Param('rls.fast_forgetting_factor', DOUBLE, 0.5,
          'Forgetting factor of the fast readout (directional forgetting, so no '
          'windup even this low; 0.5 remembers about two ticks, which measured '
          'best over the plant zoo, see docs/zoo.md).', 0.5, 1.0),
    Param('sensor_timeout_s', DOUBLE, 0.1,
          'joint_states older than this make the sensor stale (at least one control '
          'period).', 0.0, 60.0,
          open_low=True),
    Param('reference_timeout_s', DOUBLE, 0.5,
          'A ~/reference that asks for motion (a velocity) and then stops coming is held '
          'at its last position after this long (0: never); a set point is held anyway.',
          0.0, 60.0),
    Param('sync_to_joint_state_stamps', BOOL, False,
          'Sim time only: the tick of time t waits (at most one period) for the '
          'joint_states stamped t. For lock-step simulators such as lnn_sim, which '
          'publish the state of t just before /clock(t) (it may arrive after it).',
          read_only=True),
    Param('stale_sensor_action', STRING, 'zero',
          'Command while sensors are stale: zero effort or hold the last command.',
          choices=('zero', 'hold')),
    Param('controller_state_decimation', INT, 1,
          'Publish ~/controller_state every Nth control tick (0: never).', 0, 1000),
    Param('readout_path', STRING, '',
          'File (.npz; ~ expanded) the readout is loaded from at start and saved to '
          'periodically, at shutdown and by ~/save_readout; empty disables. A file that '
          'cannot be loaded (corrupt, truncated, another robot, reservoir or control rate) '
          'is renamed to <file>.refused (.refused.1, ... if taken) and the node starts '
          'fresh; a path that is not a regular file (a directory) is left as it is. A file '
          'saved with the other rls.fast_learner setting loads, its fast readout fresh or '
          'ignored. With the supervisor on, the automatic saves replace an existing file '
          'only with a readout the supervisor judged good since (none during its holds or '
          'after an intervention); ~/save_readout always writes. Set while running to an existing '
          'file not written by this node: not written automatically until ~/save_readout '
          'or ~/load_readout.'),
    Param('readout_autosave_period_s', DOUBLE, 10.0,
          'With readout_path set: save the readout this often [s, node clock], written '
          'off the control thread (durable, atomic), so a crash or kill -9 loses at most '
          'the learning since the last autosave (withheld while the readout is doubtful, '
          'see readout_path); 0 saves only at shutdown and on ~/save_readout.',
          0.0, 86400.0),
    Param('realtime.priority', INT, 0,
          'SCHED_FIFO priority (1-99) of the thread that runs the control loop, applied '
          'once at start; 0 keeps normal scheduling. Refused with a log line (the node '
          'runs on) where the OS does not permit it (no CAP_SYS_NICE or rtprio limit).',
          0, 99, read_only=True),
    Param('realtime.cpu_affinity', INT, -1,
          'Pin the node process (all its threads) to this CPU at start; -1 leaves it '
          'unpinned. Refused with a log line where the CPU is not available.',
          -1, 1023, read_only=True),
    Param('realtime.quiet_gc', BOOL, False,
          'After setup, freeze the objects that exist and disable the automatic '
          'generational garbage collection; a full collection of what is new runs once '
          'a second from a timer instead (cycles then live up to 1 s longer; measured '
          'pause up to 0.8 ms). Off by default: it did not measurably help '
          '(benchmarks/README.md).',
          read_only=True),
    Param('reference.mode', STRING, 'topic',
          'topic: follow ~/reference or ~/joint_trajectory (the newest message); hold, '
          'sine, sum_of_sines, point_to_point: generated '
          'internally (point_to_point: minimum-jerk moves of 1/frequency_hz s between set '
          'points within offset +- amplitude, each held as long).',
          choices=('topic', 'hold', 'sine', 'sum_of_sines', 'point_to_point')),
    Param('reference.amplitude', DOUBLE_ARRAY, [0.5],
          'Amplitude per joint of the generated reference [rad or m].',
          0.0, 1e3, per_joint=True),
    Param('reference.frequency_hz', DOUBLE, 0.55,
          'Frequency of sine; highest component of sum_of_sines; 1 / move time of '
          'point_to_point (which needs it above 0).', 0.0, 50.0),
    Param('reference.seed', INT, 0,
          'Seed of the sum_of_sines phases and the point_to_point set points '
          '(reproducible references).', 0, 2**31 - 1),
    Param('reference.offset', DOUBLE_ARRAY, [0.0],
          'Offset per joint of the generated reference (hold position).',
          -1e3, 1e3, per_joint=True),
)

SIMULATOR = (
    Param('model', STRING, 'pendulum',
          f'Bundled plant ({", ".join(BUNDLED_PLANTS)}), zoo/<name> (lnn-control zoo '
          '--list) or a path to an MJCF file.',
          read_only=True),
    Param('joints', STRING_ARRAY, [],
          'Actuated joints, in command order; empty: every motor-driven joint.',
          read_only=True, unique=True),
    Param('lockstep', BOOL, True,
          'Advance one control period per received command and publish /clock '
          '(deterministic); false: run in real time.', read_only=True),
    Param('control_period_s', DOUBLE, 0.01,
          'Simulated time advanced per command in lock-step mode.', 0.0, 1.0,
          open_low=True, read_only=True),
    Param('paused', BOOL, False,
          'Lock-step: hold simulated time (state and /clock are republished each second, '
          'commands wait) until set false; lets a recorder attach before the loop starts.'),
    Param('physics_rate_hz', DOUBLE, 1000.0, 'Physics rate in real-time mode.',
          1.0, 100000.0, read_only=True),
    Param('publish_rate_hz', DOUBLE, 100.0, 'joint_states rate in real-time mode.',
          1.0, 10000.0, read_only=True),
    Param('payload_scale', DOUBLE, 1.0,
          'Mass and inertia scale of the end link (watch the controller re-adapt); at '
          'least 0.01 (lighter, MuJoCo finds the inertia singular and resets the state).',
          0.01, 100.0),
    Param('payload_change.time_s', DOUBLE, 0.0,
          'Simulated seconds after the first command at which payload_scale becomes '
          'payload_change.scale (in lock-step a reproducible plant change, at the same '
          'tick every run); 0 disables.',
          0.0, 1e6, read_only=True),
    Param('payload_change.scale', DOUBLE, 2.0,
          'payload_scale applied at payload_change.time_s.', 0.01, 100.0, read_only=True),
    Param('initial_positions', DOUBLE_ARRAY, [],
          'Start positions of the actuated joints (empty: zeros); also where ~/reset puts '
          'them.', -1e3, 1e3, read_only=True),
)

SCHEMAS = {'controller': CONTROLLER, 'simulator': SIMULATOR}
NODE_SCHEMAS = {'lnn_controller': CONTROLLER, 'lnn_sim': SIMULATOR}   # by node name


def by_name(schema: Iterable[Param] = CONTROLLER) -> dict[str, Param]:
    return {p.name: p for p in schema}


def defaults(schema: Iterable[Param] = CONTROLLER) -> dict[str, Any]:
    return {p.name: (list(p.default) if isinstance(p.default, list) else p.default)
            for p in schema}


def check(param: Param, value: Any, n_joints: int | None = None) -> str | None:
    """Return why ``value`` is not valid for ``param``, or None when it is."""
    kind = param.kind
    if kind in (DOUBLE_ARRAY, STRING_ARRAY) and (
            isinstance(value, (str, bytes))
            or not isinstance(value, (list, tuple, np.ndarray, array.array))
            or np.ndim(value) != 1):
        what = 'numbers' if kind == DOUBLE_ARRAY else 'strings'
        each = ' (one per joint, or one for all)' if param.per_joint else ''
        return f'{param.name} must be a list of {what}{each}; got {value!r}'
    if kind == BOOL:
        return None if isinstance(value, (bool, np.bool_)) else f'{param.name} must be a bool'
    if kind == STRING:
        if not isinstance(value, str):
            return f'{param.name} must be a string'
        if '\x00' in value:        # no path, topic or name holds one (os calls raise on it)
            return f'{param.name} must not contain a NUL character'
        if param.choices and value not in param.choices:
            return f"{param.name} must be one of {', '.join(param.choices)}; got {value!r}"
        return None
    if kind == STRING_ARRAY:
        if isinstance(value, str) or not all(isinstance(v, str) for v in value):
            return f'{param.name} must be a list of strings'
        if any('\x00' in v for v in value):
            return f'{param.name} must not contain a NUL character'
        if param.unique and len(set(value)) != len(value):
            return f'{param.name} must not repeat a name'
        if param.unique and any(not v or ',' in v for v in value):
            return (f'{param.name} must not hold an empty name or a comma (the names are '
                    f'joined with commas in ~/controller_state and on the command line); '
                    f'got {list(value)}')
        return None
    values = list(value) if kind == DOUBLE_ARRAY else [value]
    if kind == INT and (isinstance(value, bool) or not isinstance(value, (int, np.integer))):
        return f'{param.name} must be an integer'
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            return f'{param.name} must be numeric'
        if not math.isfinite(v):
            return f'{param.name} must be finite; got {v}'
        if param.low is not None and (v <= param.low if param.open_low else v < param.low):
            op = '>' if param.open_low else '>='
            return f'{param.name} must be {op} {param.low}; got {v}'
        if param.high is not None and v > param.high:
            return f'{param.name} must be <= {param.high}; got {v}'
    if param.per_joint and n_joints is not None and len(values) not in (1, n_joints):
        return (f'{param.name} needs one value per joint ({n_joints}) or a single '
                f'value for all; got {len(values)}')
    return None


def widen(kind: str, value: Any) -> Any:
    """
    Widen int -> float, a number -> [float] and [int] -> [float]; None if not applicable.

    What a user writes for a double (``kp: [20]``, ``kp: 20``, ``reservoir.leak_rate: 1``)
    is taken as meant, in a parameter file, ``-p`` or the CLI's ``--param``: ROS's
    static typing would refuse it (one number for a per-joint array applies to every
    joint).
    """
    number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_))
    if kind == DOUBLE and number and isinstance(value, (int, np.integer)):
        return float(value)
    if kind == DOUBLE_ARRAY and number:
        return [float(value)]
    if (kind == DOUBLE_ARRAY and isinstance(value, (list, tuple, array.array))
            and value and all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        return [float(v) for v in value]
    return None


def widened(overrides: Mapping[str, Any], schema: Iterable[Param] = CONTROLLER) -> dict:
    """Return ``overrides``, the values of ``schema``'s parameters as ``widen`` takes them."""
    table = by_name(schema)
    out = dict(overrides)
    for name, value in overrides.items():
        if name in table and (wide := widen(table[name].kind, value)) is not None:
            out[name] = wide
    return out


def resolve(overrides: Mapping[str, Any] | None = None,
            schema: Iterable[Param] = CONTROLLER) -> dict[str, Any]:
    """
    Defaults updated by ``overrides``, validated; per-joint arrays broadcast.

    Raises ValueError naming every unknown or invalid entry.
    """
    schema = tuple(schema)
    table = by_name(schema)
    values = defaults(schema)
    errors = [f'unknown parameter {k!r}' for k in (overrides or {}) if k not in table]
    values.update({k: v for k, v in (overrides or {}).items() if k in table})
    joints = values.get('joints')
    n = len(joints) if isinstance(joints, (list, tuple, np.ndarray)) else None
    errors += [r for p in schema if (r := check(p, values[p.name], n))]
    if errors:
        raise ValueError('; '.join(errors))
    return {p.name: coerce(p, values[p.name], n) for p in schema}


def coerce(param: Param, value: Any, n_joints: int | None) -> Any:
    """
    Return a valid value in its stored form.

    Double arrays become float arrays, and a single per-joint value is broadcast to every
    joint.
    """
    if param.kind != DOUBLE_ARRAY:
        return value
    arr = np.asarray(value, dtype=np.float64)
    return np.full(n_joints, arr[0]) if param.per_joint and arr.size == 1 and n_joints else arr


def load_yaml_overrides(path: str, node_name: str) -> dict[str, Any]:
    """
    Parameters for ``node_name`` from a ROS 2 parameter file.

    Accepts the ``/**:``, ``<node>:`` and ``/<ns>/<node>:`` forms and merges
    them in that order (more specific wins), as ROS does.
    """
    import yaml

    if os.path.isdir(path):
        raise ValueError(f'{path} is a directory, not a ROS parameter file')
    with open(path, encoding='utf-8') as f:
        try:
            doc = yaml.safe_load(f) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as exc:    # (the latter said no path)
            raise ValueError(f'{path}: not YAML ({" ".join(str(exc).split())})') from None
    merged: dict[str, Any] = {}
    if not isinstance(doc, dict):
        raise ValueError(f'{path}: not a ROS parameter file (no node names at the top)')
    for key in node_sections(doc, node_name):
        section = doc[key]
        params = section.get('ros__parameters', {}) if isinstance(section, dict) else None
        if not isinstance(params, dict):
            raise ValueError(f'{path}: {key} has no ros__parameters mapping')
        merged.update(_flatten(params))
    node_schema = NODE_SCHEMAS.get(node_name)
    return widened(merged, node_schema) if node_schema else merged


def node_sections(doc: Mapping, node_name: str) -> list:
    """Return the top-level keys of a parameter file that apply to ``node_name``, in merge order."""
    return [key for key in sorted(doc, key=lambda k: (str(k) != '/**', str(k).count('/')))
            if key == '/**' or str(key).rstrip('/').split('/')[-1] == node_name]


def _flatten(tree: Mapping[str, Any], prefix: str = '') -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f'{prefix}{key}'
        if isinstance(value, Mapping):
            out.update(_flatten(value, name + '.'))
        else:
            out[name] = value
    return out


def markdown(schema: Iterable[Param], title: str) -> str:
    """Return a Markdown table of ``schema`` for the docs."""
    rows = [f'## {title}', '',
            '| name | type | default | range / choices | live | description |',
            '|---|---|---|---|---|---|']
    for p in schema:
        if p.choices:
            rng = ' \\| '.join(p.choices)
        elif p.low is not None:
            rng = f"{'(' if p.open_low else '['}{p.low}, {p.high}]"
        else:
            rng = ''
        live = 'no' if p.read_only else 'yes'
        kind = p.kind + (' (per joint)' if p.per_joint else '')
        rows.append(f'| `{p.name}` | {kind} | `{p.default}` | {rng} | {live} | {p.description} |')
    return '\n'.join(rows) + '\n'

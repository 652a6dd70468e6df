"""
``lnn-control``: the command line of the package.

demo    PD-only vs adaptive on a MuJoCo plant (bundled, zoo or your MJCF). --mode ros
        (default) runs lnn_sim and lnn_controller as ROS 2 nodes over real topics
        (lock-step) and records run.mcap; --mode offline runs the same loop without ROS.
        Writes summary.json and tracking.png.
plot    redraw tracking.png from a run.mcap recording.
params  the parameter schema as Markdown (docs) or a ROS 2 parameter file.
gains   the honest PD baseline gains of a bundled, zoo or MJCF plant.
zoo     the plant zoo with default learning settings: zoo.json, zoo.md, zoo.png.
forecast  the reservoirs on the classic time-series task (sine, Mackey-Glass):
        online RLS vs offline ridge vs reservoirpy; forecast.json, .md, .png.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from typing import Sequence

from . import schema

MAX_DURATION_S = 86400.0
MIN_DURATION_S = 1.0       # lnn-control demo: shorter has no figures to speak of
MAX_BANDWIDTH_FACTOR = 100.0   # lnn-control gains (the honest rule is 4)
MAX_DAMPING_RATIO = 10.0
MIN_DAMPING_RATIO = 0.05       # below it the loop has no damping to speak of
MIN_REFERENCE_HZ = 1e-3        # below it the rule's kp is all but 0
MAX_POSE = 1e3                 # rad or m (MuJoCo reset the state at 1e17 and beyond)
MAX_RANDOM_PLANTS = 1000       # lnn-control zoo --random
MAX_DELAY_TICKS = 100      # lnn-control gains --delay-ticks
SAG_WARNING = 0.1          # gains warns where gravity / kp is above this [rad] ...
SAG_WARNING_SLIDE = 0.02   # ... [m] (0.1 m let a lift's 4 cm pass unnamed)
STIFFNESS_WARNING = 0.25   # ... and where a joint spring is above this x kp
# What reading a recording that is not one can raise (mcap raises many types).
READ_ERRORS = (Exception,)


def _demo(args: argparse.Namespace) -> int:
    from . import closed_loop as CL
    from .plotting import tracking_figure

    if args.payload_change_at is not None and not 0 < args.payload_change_at < args.duration:
        raise ValueError('--payload-change-at must lie inside (0, --duration)')
    if not (args.plant in schema.BUNDLED_PLANTS or CL.zoo_member(args.plant)
            or os.path.isfile(args.plant)):
        raise ValueError(f'--plant {args.plant}: neither a bundled plant '
                         f'({", ".join(schema.BUNDLED_PLANTS)}), zoo/<name> (lnn-control zoo '
                         '--list) nor a file')
    if os.path.isfile(args.plant):          # (lnn_sim, another process, needs it whole)
        args.plant = os.path.abspath(args.plant)
    from_zoo = {}
    member = CL.zoo_member(args.plant)
    if member and args.plant != _plant_model(args.plant):
        # a random draw (zoo/random_<seed>_<k>): its MJCF written out, run with what the
        # zoo sets for it (joints, honest gains, limits, reference), as a named one is
        from . import zoo
        from_zoo, args.plant = zoo.controller_params(member), _plant_model(args.plant)
    from_file = (schema.load_yaml_overrides(args.params_file, 'lnn_controller')
                 if args.params_file else {})
    if args.params_file and not from_file:
        _check_applies(args.params_file)
    extra = {**from_zoo,
             **{k: v for k, v in from_file.items() if not k.startswith(schema.ROS_OWN)},
             **_param_overrides(args.param)}
    if 'learning_enabled' in extra and (reason := schema.check(       # (5 passed as false)
            schema.by_name()['learning_enabled'], extra['learning_enabled'])):
        raise ValueError(reason)
    ignored = ([] if extra.pop('learning_enabled', True) is True else   # (each arm's own)
               ['learning_enabled false is not used: the demo compares PD alone with the '
                'adaptive controller learning'])
    for name, option, value in (('reservoir.neuron_model', '--neuron', args.neuron),
                                ('reservoir.seed', '--seed', args.seed),
                                ('reference.seed', '--seed', args.seed)):
        if name in extra and extra[name] != value:
            raise ValueError(f'--param {name}={extra[name]} contradicts {option} {value}: '
                             f'use {option}')
    # refuse bad settings before any work
    resolved = schema.resolve(CL.plant_params(args.plant, extra))
    joints = resolved['joints']
    pd_check, modes, warnings = _comparison_warnings(args.plant, resolved, 'joints' in extra)
    warnings = ignored + warnings
    for line in warnings:
        print(f'warning: {line}', file=sys.stderr)
    if (readout := extra.get('readout_path', '')):    # (saved at the end: the run was lost)
        folder = os.path.dirname(os.path.realpath(os.path.expanduser(readout)))
        _make_out(folder, f'readout_path {readout}: its directory {folder}')
    _make_out(args.out)
    if args.mode == 'offline':
        traces, summary = _offline(args, extra)
    else:
        from .tools import demo as ros_demo
        summary, traces = ros_demo.run(args.plant, args.neuron, args.duration, args.out,
                                       payload_change_at=args.payload_change_at,
                                       seed=args.seed, lockstep=args.mode == 'ros',
                                       extra=extra, progress=not args.quiet)
    summary['controller'] = {k: getattr(resolved[k], 'tolist', lambda v=resolved[k]: v)()
                             for k in ('joints', 'kp', 'kd', 'command_limit', 'control_rate_hz',
                                       'reference.mode', 'reference.amplitude',
                                       'reference.offset', 'reference.frequency_hz')}
    summary['controller']['reference.mode'] = CL.generated_mode(       # what it tracked
        summary['controller']['reference.mode'])
    if args.payload_change_at is not None:       # (lnn_sim picks the same body)
        from .plants import Plant
        summary['payload_body'] = Plant(_plant_model(args.plant), joints=joints).payload_body
    summary['pd_loop_check'] = pd_check
    summary['unmeasured_modes'] = modes
    for line in (outcome := _outcome_warnings(summary, joints)):
        print(f'warning: {line}', file=sys.stderr)
    summary['warnings'] = warnings + outcome
    summary = _write_json(os.path.join(args.out, 'summary.json'), summary)
    tracking_figure(traces, os.path.join(args.out, 'tracking.png'),
                    title=f'{args.plant}, {args.neuron} reservoir ({summary["mode"]}): '
                          + (f'ratio {summary["ratio"]:.3f}' if summary['ratio'] is not None
                             else 'no ratio (PD tracks exactly)'),
                    payload_change_at=args.payload_change_at,
                    joint_names=list(joints),
                    recovery_time_s=summary.get('recovery_time_s'))
    print(json.dumps(summary, indent=2))
    written = ['summary.json', 'tracking.png'] + (['run.mcap'] if args.mode != 'offline' else [])
    print(f'wrote {", ".join(os.path.join(args.out, w) for w in written)}')
    return 0


def _outcome_warnings(summary: dict, joints) -> list[str]:
    """
    Name each joint that learning left worse than PD alone over some 10 s window.

    Judged per joint: the pooled figure adds the joints' errors, so one of millimetres
    beside one of centimetres could be 1.5x PD's while the pool read 0.13.
    """
    per_joint = summary.get('worst_window_ratio_per_joint') or [summary['worst_window_ratio']]
    return [f'{joint}: over its worst 10 s window the error was {ratio:.2f}x that of PD '
            'alone (worse than PD); try rls.fast_learner: false, and lnn-control gains '
            '--delay-ticks 1 for its PD loop'
            for joint, ratio in zip(joints, per_joint)
            if ratio is not None and ratio == ratio and ratio > 1.0]


def _model_warnings(plant, kp, command_limit=None) -> list[str]:
    """
    Say what the honest rule leaves out on this model at its design pose, with these kp.

    An actuator too weak to hold the joint against gravity (``command_limit``: no
    controller tracks there), gravity that PD alone holds off its target (a sag), Coulomb
    friction that stops it off its target (a dead band), joint springs that pull it:
    ``gains`` and the demo alike.
    """
    import numpy as np

    kp = np.broadcast_to(np.asarray(kp, dtype=float), (plant.n,))
    kp = np.where(kp > 0.0, kp, np.inf)        # (no position loop: nothing to hold off)
    gravity = plant.design_gravity()
    sag = np.where(plant.hinge, SAG_WARNING, SAG_WARNING_SLIDE)
    unit = np.where(plant.hinge, 'N m', 'N')
    limit = np.broadcast_to(np.inf if command_limit is None else
                            np.asarray(command_limit, dtype=float), (plant.n,))
    weak = [f'{joint}: gravity takes {g:.3g} {u} here, more than command_limit {c:.3g}: the '
            'actuator cannot hold the joint there, so neither PD nor learning can track '
            '(both arms fall; a stronger motor, a lighter load or another pose)'
            for joint, g, c, u in zip(plant.joint_names, gravity, limit, unit)
            if abs(g) > c]
    out = weak + [
        f'{joint}: gravity takes {g:.3g} {u} here, so PD alone holds it about {e:.2g} '
        f'{"rad" if u == "N m" else "m"} off its target (gravity / kp): the PD-only '
        'baseline sags there, learning takes that over'
        for joint, g, e, s, u, c in zip(plant.joint_names, gravity, np.abs(gravity) / kp,
                                        sag, unit, limit)
        if e > s and abs(g) <= c]
    # (a dead band matters against the joint's travel: a gripper's finger moves 0.04 m)
    width = np.diff(plant.position_range, axis=1)[:, 0]
    band = np.minimum(sag, np.where(np.isfinite(width), 0.1 * width, np.inf))
    out += [f'{joint}: Coulomb friction {f:.3g} stops PD alone up to {f / k:.2g} off its '
            'target (friction / kp, a dead band): the PD-only baseline sticks there, '
            'and learning a stick-slip plant was worse than PD in some 10 s windows'
            for joint, f, k, b in zip(plant.joint_names, plant.friction, kp, band)
            if f / k > b]
    out += [f'{joint}: a joint spring of {c:.3g} against kp {k:.3g}, which the rule '
            "leaves out: PD alone is pulled toward the spring's rest position (off by up "
            f'to {c / (c + k):.2g} of the way) and is less damped than designed'
            for joint, c, k in zip(plant.joint_names, plant.stiffness, kp)
            if c > STIFFNESS_WARNING * k]
    return out


def _comparison_warnings(plant_name: str, resolved: dict, chosen: bool):
    """
    Return what may spoil a demo's comparison: (pd_loop_check, unmeasured_modes, warnings).

    Both arms run one PD law: a loop that chatters makes the baseline a broken one; a
    lightly damped mode the controller does not measure can be pumped by learning; a
    reference beyond a joint's range judges both arms against its end stops. Each warning
    names the ``gains`` command that shows the same (this run's joints, rate and pose).
    """
    import numpy as np

    from . import closed_loop as CL
    from . import plants as PL

    joints = resolved['joints']
    plant = PL.Plant(plant_name, joints=joints)
    plant.set_design_pose(resolved['reference.offset'])
    pd_check = PL.pd_loop_check(plant, resolved)
    kp, kd = (np.broadcast_to(np.asarray(resolved[k], dtype=float), plant.n) for k in ('kp', 'kd'))
    natural_hz = float(np.max(np.sqrt(kp / plant.nominal_inertia()))) / (2 * math.pi)
    modes = PL.unmeasured_modes(plant, kp, kd, PL.MODE_SCAN_FACTOR * natural_hz)
    hint = f'lnn-control gains --plant {plant_name}'
    if chosen:
        hint += f' --joints {",".join(joints)}'
    if resolved['control_rate_hz'] != schema.by_name()['control_rate_hz'].default:
        hint += f' --control-rate-hz {resolved["control_rate_hz"]:g}'
    if np.any(plant.design_pose != 0.0):
        hint += ' --pose ' + ','.join(f'{q:g}' for q in plant.design_pose)
    warnings = [f'{line}; see {hint}' for line in (
        [f'the PD loop of both arms: {line}' for line in pd_check]
        + PL.unmeasured_mode_warnings(modes, natural_hz, bool(resolved['rls.fast_learner']),
                                      PL.unjudged_joints(plant))
        + _model_warnings(plant, kp, resolved['command_limit']))]
    span = np.broadcast_to(0.0 if resolved['reference.mode'] == 'hold' else
                           np.asarray(resolved['reference.amplitude'], dtype=float), plant.n)
    centre = np.broadcast_to(np.asarray(resolved['reference.offset'], dtype=float), plant.n)
    warnings += [f'the reference runs from {c - a:g} to {c + a:g} on {joint}, beyond its range '
                 f'in the model ({low:g} to {high:g}): both arms meet its end stops; set '
                 'reference.offset and reference.amplitude inside it'
                 for joint, c, a, (low, high) in zip(joints, centre, span, plant.position_range)
                 if c - a < low or c + a > high]
    # A range that left the reference a small fraction of the default amplitude: MJCF
    # reads hinge ranges in degrees unless <compiler angle="radian"/> (an elbow's
    # range="-1.5 1.5" fitted the reference into +-1.2 degrees without a word)
    default = schema.by_name()['reference.amplitude'].default[0]
    room = 0.5 * (1.0 - 2.0 * CL.RANGE_MARGIN)      # the amplitude a range leaves, per width
    warnings += [f'{joint}: its range in the model ({low:g} to {high:g}) leaves a reference '
                 f'at most {room * (high - low):g} of amplitude (default {default:g}); if the '
                 'range was meant in radians, MJCF reads hinge ranges in degrees unless '
                 '<compiler angle="radian"/>'
                 for joint, (low, high), hinge in zip(joints, plant.position_range, plant.hinge)
                 if hinge and room * (high - low) < 0.1 * default]
    return pd_check, modes, warnings


def _offline(args: argparse.Namespace, extra: dict):
    from tqdm import tqdm

    from . import closed_loop as CL

    overrides = CL.plant_params(args.plant, {'reservoir.neuron_model': args.neuron,
                                             'reservoir.seed': args.seed,
                                             'reference.seed': args.seed, **extra})
    # PD only, adaptive and, with a payload change, the adaptive controller on the
    # changed plant from the start (the reference for readaptation_ratio; not plotted).
    # Only the adaptive arm loads and saves readout_path, as the demo's adaptive node does.
    readout = extra.get('readout_path', '')
    arms = [('PD only', False, args.payload_change_at, ''),
            ('adaptive', True, args.payload_change_at, readout)]
    if args.payload_change_at is not None:
        arms.append(('settled', True, 0.0, ''))
    traces = []
    for label, learning, change_at, readout_path in arms:
        with tqdm(total=args.duration, desc=f'{label:>8}', unit='sim s',
                  bar_format='{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} {unit}',
                  disable=args.quiet) as bar:
            def progress(t, bar=bar):
                bar.update(t - bar.n)
            traces.append(CL.run(args.plant, overrides, args.duration, learning=learning,
                                 payload_change_at=change_at, progress=progress,
                                 readout_path=readout_path))
            bar.update(args.duration - bar.n)
    summary = CL.report('offline', args.plant, args.neuron, args.seed, traces[0], traces[1],
                        args.duration, args.payload_change_at,
                        settled=traces[2] if len(traces) > 2 else None)
    return traces[:2], summary


def _plot(args: argparse.Namespace) -> int:
    from .plotting import tracking_figure
    from .recording import traces_from_mcap

    try:
        traces, meta = traces_from_mcap(args.recording)
        joints = meta['joints'].split(',')
    except READ_ERRORS as exc:
        raise ValueError(f'{args.recording} is not a run.mcap written by lnn-control demo '
                         f'({type(exc).__name__}: {exc})') from None
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(args.recording)),
                                   'tracking.png')
    if os.path.isdir(out):
        out = os.path.join(out, 'tracking.png')
    elif not out.endswith('.png'):
        raise ValueError(f'--out {out}: give a .png path or a directory')
    change = float(meta.get('payload_change_at_s', 0.0)) or None
    recovery = None
    if change is not None and len(traces) > 1:
        from . import closed_loop as CL
        adaptive = traces[1]
        recovery = CL.recovery_time(adaptive, change,
                                    CL.rms(adaptive, change - CL.WINDOW_S, change))
    tracking_figure(traces, out, title=f"{meta.get('plant', '')}, {meta.get('neuron', '')} "
                                       f"reservoir ({meta.get('mode', '')})",
                    payload_change_at=change, joint_names=joints,
                    recovery_time_s=recovery)
    print(f'wrote {out}')
    return 0


def _params(args: argparse.Namespace) -> int:

    if args.plant and args.format != 'yaml':
        raise ValueError('--plant goes with --format yaml (a parameter file for that plant)')
    if args.param and not args.plant:
        raise ValueError('--param goes with --plant (and --format yaml)')
    if args.format == 'markdown':
        print('# Parameters\n\nGenerated from `lnn_control/schema.py` by '
              '`lnn-control params --format markdown`; do not edit.\n')
        for node, title in (('controller', 'lnn_controller'), ('simulator', 'lnn_sim')):
            if args.node in (None, node):
                print(schema.markdown(schema.SCHEMAS[node], title))
    else:
        import yaml
        args.node = args.node or 'controller'
        values = dict(schema.defaults(schema.SCHEMAS[args.node]))
        node = 'lnn_controller' if args.node == 'controller' else 'lnn_sim'
        extra = _param_overrides(args.param)
        if args.node == 'simulator':    # (they were dropped without a word)
            known = schema.by_name(schema.SIMULATOR)
            for name, value in extra.items():
                if name not in known:
                    raise ValueError(f'--param {name}: not a parameter of lnn_sim')
                if (reason := schema.check(known[name], value)):
                    raise ValueError(f'--param {name}: {reason}')
        if args.plant:      # a file to start from: the plant's joints, gains, limits
            from . import closed_loop as CL
            plant = os.path.abspath(args.plant) if os.path.isfile(args.plant) else args.plant
            if args.node == 'controller':
                params = CL.plant_params(plant, extra)
                schema.resolve(params)                  # refused here, not by the node
                values.update(params)
            else:           # its model and joints (an effort limit is not the simulator's)
                joints = CL.plant_params(plant, {'command_limit': 1.0})['joints']
                values.update(model=_plant_model(plant), joints=list(joints))
        if args.node == 'simulator':
            values.update(extra)
            if args.plant:      # refused here, not by lnn_sim (the file was written, exit 0)
                _check_simulator_plant(values)

        # a '<node>:' key applies only in the root namespace (under `namespace:=arm1` the
        # node ran on its defaults without a word): the controller's '/**' as
        # config/*.yaml, the simulator's '/**/lnn_sim' (never the controller's)
        key = '/**' if args.node == 'controller' else f'/**/{node}'
        print(f'# {node} parameters (lnn-control params); "{key}": whatever the namespace')
        print(yaml.safe_dump({key: {'ros__parameters': values}}, sort_keys=False), end='')
    return 0


def _check_simulator_plant(values: dict) -> None:
    """Refuse what lnn_sim would refuse at start: its model, joints and initial_positions."""
    from .plants import Plant

    plant = Plant(values['model'], list(values['joints']) or None)
    plant.initial_positions(values['initial_positions'])


def _gains(args: argparse.Namespace) -> int:
    from . import plants as PL

    # Unset options take the rule's values, which live in plants only.
    hz = PL.MAX_REFERENCE_HZ if args.max_reference_hz is None else args.max_reference_hz
    factor = PL.BANDWIDTH_FACTOR if args.bandwidth_factor is None else args.bandwidth_factor
    zeta = PL.DAMPING_RATIO if args.damping_ratio is None else args.damping_ratio
    params = schema.by_name()
    rate_param = params['control_rate_hz']
    rate = rate_param.default if args.control_rate_hz is None else args.control_rate_hz
    for option, param, value in (('--control-rate-hz', rate_param, rate),
                                 ('--max-reference-hz', params['reference.frequency_hz'], hz)):
        if (reason := schema.check(param, value)):
            raise ValueError(f'{option}: {reason}')
    for option, value, low, high in (
            ('--bandwidth-factor', factor, 0.0, MAX_BANDWIDTH_FACTOR),
            ('--damping-ratio', zeta, MIN_DAMPING_RATIO, MAX_DAMPING_RATIO),
            ('--max-reference-hz', hz, MIN_REFERENCE_HZ, math.inf)):
        if value > high:
            raise ValueError(f'{option}: at most {high:g}; got {value:g}')
        if value < low:     # (1e-300 Hz gave kp 0 as "honest" gains)
            raise ValueError(f'{option}: at least {low:g}; got {value:g}')
    if args.pose is not None and max(map(abs, args.pose)) > MAX_POSE:
        raise ValueError(f"--pose: at most {MAX_POSE:g} in magnitude (as lnn_sim's "
                         f'initial_positions); got {args.pose}')
    joints = None if args.joints is None else _names(args.joints, '--joints')
    plant = PL.Plant(_plant_model(args.plant), joints=joints)   # bundled, zoo/<name>, MJCF
    warnings = []
    if args.pose is not None:
        plant.set_design_pose(args.pose)
        low, high = plant.position_range.T
        warnings += [f'--pose puts {j} at {q:g}, outside its range ({lo:g} to {hi:g})'
                     for j, q, lo, hi in zip(plant.joint_names, plant.design_pose, low, high)
                     if not lo <= q <= hi]
    else:       # where the demo designs: its reference's centre
        from . import closed_loop as CL
        plant.set_design_pose(CL.design_pose(args.plant, plant))
    kp, kd = PL.honest_gains(plant, hz, factor, zeta)
    warnings += [f'{name} {value:.4g} on {joint} is above what the controller accepts '
                 f'({name} <= {params[name].high:g}): a lower natural frequency or reference'
                 for name, gains in (('kp', kp), ('kd', kd))
                 for joint, value in zip(plant.joint_names, gains) if value > params[name].high]
    try:
        plant.steps_per(1.0 / rate)
    except ValueError as exc:      # what lnn_sim and the demo say when they refuse it
        nearest = PL.advised_rate(plant, rate)
        warnings.append(f'--control-rate-hz {rate:g}: {exc}, so lnn_sim and the demo refuse it'
                        + (f'; {nearest:g} Hz is the next they run' if nearest else ''))
    warnings += PL.rate_check(plant, kd, rate, kp)
    warnings += _model_warnings(plant, kp, plant.effort_limit)
    # What the node's command_limit is: joint effort, the control range times gain and gear
    # (the control range itself would be off by the gear: 50-200x on a geared arm).
    limits = [PL.significant([x])[0] if math.isfinite(x) else None for x in plant.effort_limit]
    warnings += [f'{joint}: its actuator has no ctrlrange, so no command_limit follows from '
                 "the model: set it to the motor's peak joint effort"
                 for joint, x in zip(plant.joint_names, limits) if x is None]
    warnings += [f'{joint}: its actuator applies {low:g} to {high:g}; command_limit is '
                 f'symmetric, so it is the smaller side, {min(-low, high):g}'
                 for joint, (low, high) in zip(plant.joint_names, plant.effort_range)
                 if math.isfinite(low) and math.isfinite(high) and not math.isclose(-low, high)]
    bandwidth_hz = hz * factor        # the natural frequency [Hz]
    modes = PL.unmeasured_modes(plant, kp, kd, PL.MODE_SCAN_FACTOR * bandwidth_hz)
    warnings += PL.unmeasured_mode_warnings(modes, bandwidth_hz,
                                            unjudged=PL.unjudged_joints(plant))
    figure = PL.kd_dt_per_effective_inertia(plant, kd, rate)
    radius = None
    if args.delay_ticks:
        if args.delay_ticks > MAX_DELAY_TICKS:
            raise ValueError(f'--delay-ticks: at most {MAX_DELAY_TICKS}; got {args.delay_ticks}')
        radius, delay_warnings = PL.delay_check(plant, kp, kd, rate, args.delay_ticks, factor)
        warnings += delay_warnings
    print(json.dumps({'plant': args.plant, 'joints': list(plant.joint_names),
                      'pose': PL.significant(plant.design_pose),
                      'nominal_inertia': PL.significant(plant.nominal_inertia()),
                      'max_reference_hz': hz, 'bandwidth_factor': factor,
                      'natural_frequency_rad_s': round(2 * math.pi * hz * factor, 3),
                      'damping_ratio': zeta,
                      'kp': PL.significant(kp), 'kd': PL.significant(kd),
                      'command_limit': limits,
                      'effective_inertia': PL.significant(plant.effective_inertia()),
                      'control_rate_hz': rate,
                      'kd_dt_per_effective_inertia': PL.significant(figure, 3),
                      'delay_ticks': args.delay_ticks,
                      'pd_loop_spectral_radius_with_delay': (None if radius is None
                                                             else round(radius, 4)),
                      'unmeasured_modes': modes,
                      'warnings': warnings}, indent=2))
    for line in warnings:
        print(f'warning: {line}', file=sys.stderr)
    return 0


def _check_applies(path: str) -> None:
    """Refuse a parameter file with nothing for lnn_controller (it ran on the defaults)."""
    import yaml

    with open(path, encoding='utf-8') as f:
        doc = yaml.safe_load(f)
    if isinstance(doc, dict) and schema.node_sections(doc, 'lnn_controller'):
        return          # a section of ours that sets nothing: as intended
    if doc:             # (an empty file sets nothing, as intended)
        keys = ', '.join(map(str, doc)) if isinstance(doc, dict) else type(doc).__name__
        raise ValueError(f'--params-file {path} sets nothing for lnn_controller: its top level '
                         f'({keys}) has no "lnn_controller:" or "/**:" section with '
                         'ros__parameters (lnn-control params --format yaml shows the form)')


def _plant_model(plant: str) -> str:
    """Return what ``Plant`` takes for ``plant``; zoo/random_<seed>_<k> written out first."""
    from . import zoo

    name = plant[len('zoo/'):] if plant.startswith('zoo/') else None
    if name and name not in zoo.ZOO and zoo.is_member(name):
        return zoo.model_name(name)
    return plant


# The zoo's reference options, by the parameter each sets (for what a refusal names).
_REFERENCE_FLAGS = {'reference.frequency_hz': '--reference-hz',
                    'reference.amplitude': '--amplitude-scale',
                    'reference.offset': '--offset-scale'}


def _zoo(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from . import zoo, zoo_report

    if args.random > MAX_RANDOM_PLANTS:     # (1e8 drew for minutes before a word)
        raise ValueError(f'--random: at most {MAX_RANDOM_PLANTS}; got {args.random}')
    if args.random_seed > 2**31 - 1:
        raise ValueError(f'--random-seed: at most {2**31 - 1}; got {args.random_seed}')
    drawn = zoo.random_names(args.random_seed, args.random) if args.random > 0 else []
    plants = (_names(args.plants, '--plants') if args.plants
              else ([] if drawn and not args.list else list(zoo.names())))
    unknown = [p for p in plants if not zoo.is_member(p)]
    plants += [p for p in drawn if p not in plants]
    if args.list and not unknown:       # the plants a run with these options would take
        for name in plants:
            print(f'{name:26s} {zoo.ZOO[name].note}' if name in zoo.ZOO
                  else f'{name:26s} {zoo.spec(name)}')
        return 0
    variants = _names(args.variants, '--variants')
    unknown += [v for v in variants if v not in zoo.VARIANTS]
    changes = _names(args.changes, '--changes')
    unknown += [c for c in changes if c not in zoo.CHANGES]
    if unknown:
        own = [p for p in unknown if os.path.isfile(p)]
        raise ValueError(f'unknown zoo plants, variants or changes: {", ".join(unknown)}'
                         + (f' (an MJCF file of your own, {own[0]}: lnn-control demo --mode '
                            'offline --plant <file>)' if own else ''))
    seeds = _seeds(args.seeds)
    extra = _param_overrides(args.param)
    for name in ('reservoir.seed', 'reference.seed'):     # the zoo sets them per run
        if name in extra:
            raise ValueError(f'--param {name} would make every --seeds run the same: use '
                             '--seeds')
    reference = {'frequency_hz': args.reference_hz, 'amplitude_scale': args.amplitude_scale,
                 'offset_scale': args.offset_scale}
    for flag, value in (('--reference-hz', args.reference_hz),
                        ('--amplitude-scale', args.amplitude_scale)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f'{flag} must be a positive number; got {value}')
    if not math.isfinite(args.offset_scale):
        raise ValueError(f'--offset-scale must be a finite number; got {args.offset_scale}')
    total = len(zoo.jobs(plants, variants, seeds, extra, changes, reference))
    if not total:
        raise ValueError('no runs: friction changes apply only to plants with friction')
    if 'friction_x3' in changes:
        skipped = [p for p in plants if not zoo.change_applies('friction_x3', p)]
        if skipped:
            print(f'note: friction_x3 skips {", ".join(skipped)} (no friction to scale)',
                  file=sys.stderr)
    for plant in plants:      # before any work: a worker's refusal came after the directory
        try:
            schema.resolve({**zoo.controller_params(plant, reference), **extra})
        except ValueError as exc:
            flag = next((f for name, f in _REFERENCE_FLAGS.items()
                         if name in str(exc) and name not in extra), '--param')
            raise ValueError(f'{flag} on {plant}: {exc}') from None
    _make_out(args.out)
    with tqdm(total=total, desc='zoo', unit='run', disable=args.quiet) as bar:
        rows = zoo.run_zoo(plants, variants, seeds, extra, workers=args.workers,
                           progress=bar.update, changes=changes, reference=reference)
    _write_json(os.path.join(args.out, 'zoo.json'),
                {'params': extra, 'reference': reference, 'duration_s': zoo.DURATION_S,
                 'payload_change_at_s': zoo.CHANGE_AT_S, 'runs': rows})
    table = zoo_report.summary_table(rows) + '\n' + zoo_report.markdown_table(rows)
    with open(os.path.join(args.out, 'zoo.md'), 'w', encoding='utf-8') as f:
        f.write(table)
    zoo_report.figure(rows, os.path.join(args.out, 'zoo.png'))
    print(table)
    written = (os.path.join(args.out, w) for w in ('zoo.json', 'zoo.md', 'zoo.png'))
    print(f'wrote {", ".join(written)}')
    return 0


def _forecast(args: argparse.Namespace) -> int:
    from . import forecast, forecast_report

    names, neurons = _names(args.series, '--series'), _names(args.neurons, '--neurons')
    unknown = ([n for n in names if n not in forecast.SERIES]
               + [n for n in neurons if n not in forecast.NEURON_MODELS])
    if unknown:
        raise ValueError(f'unknown series or neuron models: {", ".join(unknown)} (series: '
                         f'{", ".join(forecast.SERIES)}; neuron models: '
                         f'{", ".join(forecast.NEURON_MODELS)})')
    seeds = _seeds(args.seeds)
    size = schema.by_name()['reservoir.size']
    if (reason := schema.check(size, args.size)):
        raise ValueError(f'--size: {reason}')
    _make_out(args.out)
    traces: dict = {}
    result = forecast.run(args.size, seeds, neurons, names,
                          use_reservoirpy=not args.no_reservoirpy, traces=traces,
                          progress=None if args.quiet else lambda what: print(what, flush=True))
    with open(os.path.join(args.out, 'forecast.json'), 'w', encoding='utf-8') as f:
        json.dump(result, f, indent=2)
    table = forecast_report.markdown_table(result)
    with open(os.path.join(args.out, 'forecast.md'), 'w', encoding='utf-8') as f:
        f.write(table)
    forecast_report.figure(traces, os.path.join(args.out, 'forecast.png'),
                           title=f'N={args.size}, seed {seeds[0]}')
    print(table)
    written = (os.path.join(args.out, w) for w in ('forecast.json', 'forecast.md',
                                                   'forecast.png'))
    print(f'wrote {", ".join(written)}')
    return 0


def _make_out(path: str, what: str | None = None) -> None:
    """
    Create the output directory, or say why it cannot be (before any work is done).

    ``what`` names it in the refusal (default: ``--out <path>``).
    """
    what = what or f'--out {path}'
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f'{what} exists and is not a directory')
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):    # writable? (a run's end is too late to say)
            pass
    except OSError as exc:
        raise ValueError(f'{what}: {exc.strerror or exc}') from None


def _write_json(path: str, value):
    """Write ``value`` as strict JSON (non-finite floats as null); return what was written."""
    value = _json_safe(value)
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(value, f, indent=2, allow_nan=False)
    return value


def _json_safe(value):
    """Non-finite floats as null: strict JSON readers refuse NaN (a run too short for a figure)."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _names(text: str, option: str) -> list[str]:
    names = text.split(',')
    if not all(names):
        raise ValueError(f'{option} {text!r}: an empty name (a stray comma?)')
    return names


def _int_list(text: str, option: str) -> list[int]:
    try:
        return [int(s) for s in _names(text, option)]
    except ValueError:
        raise ValueError(f'{option} expects comma-separated integers; got {text!r}') from None


def _seeds(text: str) -> list[int]:
    """--seeds: comma-separated integers in reservoir.seed's range."""
    seeds = _int_list(text, '--seeds')
    param = schema.by_name()['reservoir.seed']
    for seed in seeds:
        if (reason := schema.check(param, seed)):
            raise ValueError(f'--seeds: {reason}')
    return seeds


def _positive(text: str) -> float:
    """Argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'not a number: {text!r}') from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f'must be finite and > 0; got {text}')
    return value


def _duration(text: str) -> float:
    """Argparse type: simulated seconds, finite, at least a second and at most a day."""
    value = _positive(text)
    if not MIN_DURATION_S <= value <= MAX_DURATION_S:
        raise argparse.ArgumentTypeError(
            f'from {MIN_DURATION_S:g} s to {MAX_DURATION_S:g} s; got {text}')
    return value


def _numbers(text: str) -> list[float]:
    """Argparse type: comma-separated finite numbers."""
    try:
        values = [float(x) for x in text.split(',')]
    except ValueError:
        raise argparse.ArgumentTypeError(f'not comma-separated numbers: {text!r}') from None
    if not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f'not finite: {text!r}')
    return values


def _count(text: str) -> int:
    """Argparse type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'not an integer: {text!r}') from None
    if value < 0:
        raise argparse.ArgumentTypeError(f'must be >= 0; got {text}')
    return value


def _param_overrides(items: Sequence[str]) -> dict:
    """
    Parse NAME=VALUE items as ``ros2 run ... -p NAME:=VALUE`` does: VALUE is YAML.

    So ``joints=[wrist, lift]`` is a list of names (as JSON alone it was one string),
    numbers (``1e-3`` too) and ``true`` are typed, and what parses as neither is a string
    the schema then checks.
    """
    import yaml

    extra = {}
    for item in items:
        name, sep, value = item.partition('=')
        if not sep or not name:
            raise ValueError(f'--param expects NAME=VALUE; got {item!r}')
        try:            # JSON first: PyYAML reads 1e-3 as a string
            extra[name] = json.loads(value)
        except ValueError:
            try:
                extra[name] = yaml.safe_load(value)
            except yaml.YAMLError:
                extra[name] = value
    return schema.widened(extra)      # (kp=20: one number for every joint, as in a file)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='lnn-control', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest='command', required=True)

    demo = sub.add_parser('demo', help='PD-only vs adaptive closed loop on a MuJoCo plant')
    demo.add_argument('--mode', choices=('ros', 'ros-realtime', 'offline'), default='ros',
                      help='ros: ROS 2 nodes in lock-step (reproducible, default); '
                           'ros-realtime: nodes in real time; offline: no ROS')
    demo.add_argument('--plant', default='pendulum',
                      help=f'{", ".join(schema.BUNDLED_PLANTS)}, zoo/<name> (lnn-control zoo '
                           "--list; the zoo's gains, limits and reference) or an MJCF file of "
                           'your own (effort motors; joints, gains and command limits as '
                           "'lnn-control gains' gives them unless set; --param "
                           'joints=[a,b]: those joints only)')
    demo.add_argument('--params-file', default=None, metavar='YAML',
                      help="lnn_controller's ROS parameter file (the node's own format), "
                           'applied before --param')
    demo.add_argument('--neuron', choices=('esn', 'ltc', 'lif'), default='esn')
    demo.add_argument('--duration', type=_duration, default=60.0,
                      help='simulated seconds (default: 60)')
    demo.add_argument('--payload-change-at', type=_positive, default=None,
                      help='time [s] at which the end-link mass doubles (default: no change; '
                           'make demo and the figures in the README use 40)')
    demo.add_argument('--seed', type=_count, default=0,
                      help='reservoir.seed and reference.seed (reservoir and reference phases)')
    demo.add_argument('--param', action='append', default=[], metavar='NAME=VALUE',
                      help='override a controller parameter (repeatable), e.g. '
                           'rls.forgetting_factor=0.999')
    demo.add_argument('--out', default='runs/demo', help='output directory')
    demo.add_argument('--quiet', action='store_true', help='no progress bar')
    demo.set_defaults(func=_demo)

    plot = sub.add_parser('plot', help='redraw tracking.png from a run.mcap')
    plot.add_argument('recording', help='run.mcap written by lnn-control demo')
    plot.add_argument('--out', default=None, help='PNG path (default: beside the recording)')
    plot.set_defaults(func=_plot)

    params = sub.add_parser('params', help='print the parameter schema')
    params.add_argument('--format', choices=('markdown', 'yaml'), default='markdown')
    params.add_argument('--node', choices=('controller', 'simulator'), default=None,
                        help='which node (default: both for markdown, the controller for yaml)')
    params.add_argument('--plant', default=None,
                        help='with --format yaml: a file for this plant (a bundled one, '
                             'zoo/<name> or an MJCF file): the defaults with its joints, '
                             "honest gains and effort limits (a zoo plant's reference too); "
                             'for the simulator its model and joints')
    params.add_argument('--param', action='append', default=[], metavar='NAME=VALUE',
                        help='with --plant: set a controller parameter in the file '
                             '(repeatable), e.g. command_limit=5 for a model whose actuators '
                             'have no ctrlrange')
    params.set_defaults(func=_params)

    gains = sub.add_parser('gains', help='honest PD baseline gains for a plant')
    gains.add_argument('--plant', default='pendulum',
                       help='a bundled plant (pendulum, arm2, cartpole), zoo/<name> or the '
                            'path of an MJCF file (effort motors on hinge or slide joints)')
    gains.add_argument('--max-reference-hz', type=_positive, default=None,
                       help='highest reference frequency [Hz] (default: the honest-baseline rule)')
    gains.add_argument('--bandwidth-factor', type=_positive, default=None,
                       help='wn / (2 pi max-reference-hz) (default: the honest-baseline rule)')
    gains.add_argument('--damping-ratio', type=_positive, default=None,
                       help='(default: the honest-baseline rule)')
    gains.add_argument('--control-rate-hz', type=_positive, default=None,
                       help='the rate the gains will run at, for the chatter check '
                            "(default: control_rate_hz's default)")
    gains.add_argument('--pose', type=_numbers, default=None,
                       help='joint positions to design at, comma-separated (one, or one per '
                            "joint; default: where 'lnn-control demo' designs, the centre of "
                            "its reference: q = 0, or moved into a joint's range so that "
                            'the reference keeps 10 %% of the range clear of its ends): an '
                            "arm's inertia depends on its pose, so design where the robot "
                            'works')
    gains.add_argument('--delay-ticks', type=_count, default=0,
                       help='control periods between a command and its effect (actuation '
                            'delay): checks that the PD loop is stable with it (default 0: '
                            'no check)')
    gains.add_argument('--joints', default=None,
                       help='comma-separated joints to control (default: every joint a motor '
                            'drives; the others then apply no effort)')
    gains.set_defaults(func=_gains)

    from .zoo import REFERENCE as zoo_defaults
    zoo = sub.add_parser('zoo', help='run the plant zoo (offline, default settings)')
    zoo.add_argument('--plants', default='', help='comma-separated zoo plants (default: all)')
    zoo.add_argument('--variants', default='nominal,noise,delay',
                     help='comma-separated: nominal, noise (0.5 mrad, 5 mrad/s), '
                          'delay (one control period); default: all three')
    zoo.add_argument('--changes', default='payload_x2',
                     help='comma-separated plant changes at 40 s: payload_x2, payload_x0.5, '
                          'friction_x3 (friction plants only); default: payload_x2')
    zoo.add_argument('--seeds', default='0', help='comma-separated seeds (default: 0)')
    zoo.add_argument('--param', action='append', default=[], metavar='NAME=VALUE',
                     help='override a controller parameter on every plant (repeatable)')
    zoo.add_argument('--workers', type=_count, default=2, help='processes (default: 2 cores)')
    zoo.add_argument('--out', default='runs/zoo', help='output directory')
    zoo.add_argument('--random', type=_count, default=0, metavar='K',
                     help="K plants drawn at random from the zoo's family (pendulums, arms, "
                          'cart-poles over the same ranges), instead of the named ones '
                          '(with --plants: as well); plants no default was checked on')
    zoo.add_argument('--random-seed', type=_count, default=0,
                     help='seed of the --random draws')
    zoo.add_argument('--reference-hz', type=float, default=zoo_defaults['frequency_hz'],
                     help="the reference's highest frequency [Hz]; the PD gains follow the "
                          'honest rule for it, the command limits (the actuators) stay')
    zoo.add_argument('--amplitude-scale', type=float,
                     default=zoo_defaults['amplitude_scale'],
                     help="reference amplitude in units of the plant's (0.5 rad, 0.3 m)")
    zoo.add_argument('--offset-scale', type=float, default=zoo_defaults['offset_scale'],
                     help='reference offset (the position it moves about) in the same units')
    zoo.add_argument('--list', action='store_true', help='list the zoo plants and exit')
    zoo.add_argument('--quiet', action='store_true', help='no progress bar')
    zoo.set_defaults(func=_zoo)

    fc = sub.add_parser('forecast', help='time-series prediction: online RLS vs ridge vs '
                                         'reservoirpy (sine, Mackey-Glass)')
    fc.add_argument('--size', type=int, default=300, help='reservoir neurons N')
    fc.add_argument('--seeds', default='0,1,2',
                    help='comma-separated reservoir seeds (default: 0,1,2)')
    fc.add_argument('--neurons', default='esn,ltc,lif', help='comma-separated neuron models')
    fc.add_argument('--series', default='sine,mackey_glass', help='comma-separated series')
    fc.add_argument('--no-reservoirpy', action='store_true',
                    help='skip reservoirpy (compared by default when it is installed)')
    fc.add_argument('--out', default='runs/forecast', help='output directory')
    fc.add_argument('--quiet', action='store_true', help='no progress lines')
    fc.set_defaults(func=_forecast)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:     # `lnn-control params | head`: the reader has had enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (ValueError, OSError, TimeoutError, RuntimeError) as exc:   # (a file not written)
        print(f'lnn-control: error: {exc}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:   # Ctrl-C: what was written so far stays (a run.mcap plots)
        print('lnn-control: interrupted', file=sys.stderr)
        return 130


if __name__ == '__main__':
    sys.exit(main())

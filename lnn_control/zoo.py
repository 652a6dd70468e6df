"""
The plant zoo: MuJoCo plants the learning defaults are checked over.

The bundled demo plants were the ones the first defaults were tuned on; the
zoo is a sample of what users bring instead: pendulums from 0.3 to 5 kg and
0.2 to 1.2 m, with viscous and Coulomb friction and motor armature, 2-link
arms with different mass and length ratios, a 3-link arm, a horizontal (SCARA)
arm that gravity does not load, a vertical linear axis lifting its load, and
cart-poles. Each member is
described by a few numbers here and written out as MJCF into
``models/zoo/<name>.xml`` (shipped with the package, so ``lnn_sim`` takes
``model:=zoo/<name>`` too); ``test_zoo`` keeps the files equal to this table.

Each plant's PD gains come from the honest rule (``plants.honest_gains``) on
its own nominal inertia; its effort limit is four times the effort the
reference needs at nominal payload (gravity at the amplitude plus inertia
times the peak acceleration, plus friction), so a doubled payload stays inside.
ROS-free.
"""
from __future__ import annotations

from dataclasses import dataclass
import math
import os
from pathlib import Path
import tempfile
from typing import Any, Mapping

import numpy as np

from .schema import by_name

ZOO_DIR = Path(__file__).resolve().parent / 'models' / 'zoo'
AMPLITUDE_RAD = 0.5          # reference amplitude of the rotary plants
AMPLITUDE_M = 0.3            # reference amplitude of the linear axes (cart-poles, lifts)
# The reference the zoo tracks (sum of sines; ``lnn-control zoo --reference-hz`` etc.):
# its highest frequency [Hz], and amplitude and offset in units of the plant's amplitude.
REFERENCE = {'frequency_hz': by_name()['reference.frequency_hz'].default,
             'amplitude_scale': 1.0, 'offset_scale': 0.0}
G = 9.81


@dataclass(frozen=True)
class Pendulum:
    mass: float                # kg, rod (capsule) mass
    length: float              # m
    tip_mass: float = 0.0      # kg, point-like mass at the tip (sphere)
    damping: float = 0.01      # N m s / rad, viscous
    friction: float = 0.0      # N m, Coulomb (MuJoCo frictionloss)
    armature: float = 0.0      # kg m^2, reflected motor inertia
    note: str = ''


@dataclass(frozen=True)
class Arm:
    """A serial arm of capsule links, one hinge each: vertical (hanging) or horizontal."""

    masses: tuple[float, ...]
    lengths: tuple[float, ...]
    damping: tuple[float, ...] = (0.01, 0.01)
    friction: tuple[float, ...] = (0.0, 0.0)
    armature: tuple[float, ...] = (0.0, 0.0)
    note: str = ''
    horizontal: bool = False   # joint axes vertical (a SCARA): gravity loads no joint


@dataclass(frozen=True)
class Lift:
    """A vertical linear axis carrying its mass against gravity (a lift, a Z stage)."""

    mass: float                # kg, carriage and load
    damping: float = 1.0       # N s / m, viscous
    friction: float = 0.0      # N, Coulomb
    armature: float = 0.0      # kg, reflected motor and screw inertia
    note: str = ''


@dataclass(frozen=True)
class CartPole:
    cart_mass: float
    pole_mass: float
    pole_length: float
    rail_damping: float = 0.01
    rail_friction: float = 0.0
    note: str = ''


ZOO: dict[str, Any] = {
    'pendulum_tiny': Pendulum(0.3, 0.2, damping=0.002, note='0.3 kg at 0.2 m'),
    'pendulum_small_coulomb': Pendulum(0.5, 0.35, friction=0.05,
                                       note='light, Coulomb friction'),
    'pendulum_viscous': Pendulum(1.2, 0.6, damping=0.5, note='strong viscous damping'),
    'pendulum_heavy_coulomb': Pendulum(1.6, 0.7, friction=0.4,
                                       note='1.6 kg at 0.7 m, Coulomb 0.4 N m'),
    'pendulum_long': Pendulum(0.8, 1.2, damping=0.05, note='1.2 m'),
    'pendulum_5kg': Pendulum(5.0, 0.9, friction=1.5, armature=0.05,
                             note='5 kg, Coulomb friction, armature'),
    'pendulum_geared': Pendulum(2.5, 0.4, damping=0.3, armature=0.4,
                                note='armature dominates the inertia'),
    'pendulum_tip_mass': Pendulum(0.2, 1.0, tip_mass=3.0, friction=0.2,
                                  note='3 kg at the tip of a 1 m rod'),
    'arm_friction': Arm((1.2, 0.8), (0.45, 0.35), damping=(0.1, 0.05),
                        friction=(0.3, 0.15), note='vertical 2-link, friction'),
    'arm_heavy_base': Arm((3.0, 0.5), (0.6, 0.4), damping=(0.05, 0.02),
                          note='heavy first link'),
    'arm_heavy_tip': Arm((0.8, 1.2), (0.5, 0.4), damping=(0.02, 0.02),
                         friction=(0.1, 0.2), note='second link heavier than the first'),
    'arm_geared': Arm((1.0, 1.0), (0.5, 0.5), damping=(0.2, 0.1), friction=(0.5, 0.3),
                      armature=(0.1, 0.05), note='armature, viscous and Coulomb'),
    'arm3_vertical': Arm((2.0, 1.2, 0.6), (0.4, 0.35, 0.25), damping=(0.05, 0.03, 0.01),
                         friction=(0.3, 0.15, 0.05), armature=(0.05, 0.03, 0.01),
                         note='vertical 3-link, friction, armature'),
    'scara': Arm((3.0, 2.5), (0.45, 0.35), damping=(0.2, 0.1), friction=(0.4, 0.2),
                 armature=(0.05, 0.02), horizontal=True,
                 note='horizontal 2-link: inertia, coupling and friction, no gravity'),
    'lift': Lift(5.0, damping=5.0, friction=8.0, armature=2.0,
                 note='5 kg vertical linear axis, Coulomb friction, screw inertia'),
    'cartpole_heavy_load': CartPole(2.0, 1.0, 0.8, rail_damping=0.5,
                                    note='load half the cart mass'),
    'cartpole_light_friction': CartPole(0.5, 0.3, 0.4, rail_damping=0.1, rail_friction=1.0,
                                        note='light cart, rail friction'),
}

# The variants every zoo plant is also run with (``closed_loop.run`` applies them).
VARIANTS: dict[str, dict[str, float]] = {
    'nominal': {},
    'noise': {'position_noise': 0.5e-3, 'velocity_noise': 5e-3},   # rad, rad/s (sigma)
    'delay': {'delay_ticks': 1},                                   # one control period
}


def names() -> tuple[str, ...]:
    return tuple(ZOO)


# -- members drawn at random from the same family: plants no default was checked on -----
RANDOM_PREFIX = 'random'


def random_names(seed: int, count: int) -> list[str]:
    """Name ``count`` members drawn from the zoo's family (``random_<seed>_<k>``)."""
    return [f'{RANDOM_PREFIX}_{int(seed)}_{k}' for k in range(int(count))]


def _draw(seed: int, k: int):
    """
    Draw member k of seed: pendulum, arm, cart-pole in turn, over the zoo's ranges.

    Pendulums 0.3-5 kg, 0.2-1.2 m (a tip mass up to 3 kg in 30 %), viscous damping
    0.002-0.5 N m s, Coulomb friction up to 30 % of the gravity torque (60 %),
    armature up to 0.3 kg m^2 (40 %); arms 0.4-3 / 0.3-2 kg, 0.25-0.65 / 0.2-0.55 m;
    cart-poles 0.4-3 kg carts with 0.2-1.5 kg, 0.3-1 m poles.
    """
    rng = np.random.default_rng([int(seed), int(k)])
    u, maybe = rng.uniform, (lambda p: rng.random() < p)
    if k % 3 == 0:
        m, length = u(0.3, 5.0), u(0.2, 1.2)
        tip = u(0.0, 3.0) if maybe(0.3) else 0.0
        friction = u(0.0, 0.3) * (m / 2 + tip) * G * length if maybe(0.6) else 0.0
        return Pendulum(round(m, 3), round(length, 3), tip_mass=round(tip, 3),
                        damping=round(10 ** u(-2.7, -0.3), 4), friction=round(friction, 3),
                        armature=round(u(0.0, 0.3), 3) if maybe(0.4) else 0.0, note='random')
    if k % 3 == 1:
        friction = (round(u(0, 0.5), 3), round(u(0, 0.3), 3)) if maybe(0.6) else (0.0, 0.0)
        armature = (round(u(0, 0.1), 3), round(u(0, 0.05), 3)) if maybe(0.4) else (0.0, 0.0)
        return Arm((round(u(0.4, 3.0), 3), round(u(0.3, 2.0), 3)),
                   (round(u(0.25, 0.65), 3), round(u(0.2, 0.55), 3)),
                   damping=(round(u(0.01, 0.2), 3), round(u(0.01, 0.1), 3)),
                   friction=friction, armature=armature, note='random')
    return CartPole(round(u(0.4, 3.0), 3), round(u(0.2, 1.5), 3), round(u(0.3, 1.0), 3),
                    rail_damping=round(u(0.05, 0.6), 3),
                    rail_friction=round(u(0.0, 1.0), 3) if maybe(0.5) else 0.0, note='random')


def spec(name: str):
    """Return the description of a zoo member or of a random draw (``random_names``)."""
    if name in ZOO:
        return ZOO[name]
    parts = name.split('_')
    if len(parts) == 3 and parts[0] == RANDOM_PREFIX and all(p.isdigit() for p in parts[1:]):
        return _draw(int(parts[1]), int(parts[2]))
    raise ValueError(f'unknown zoo plant {name!r}; zoo: {", ".join(ZOO)} or '
                     f'{RANDOM_PREFIX}_<seed>_<k>')


def is_member(name: str) -> bool:
    """Whether ``name`` is a zoo plant: a named one or a random draw (``random_names``)."""
    try:
        spec(name)
    except ValueError:
        return False
    return True


def model_name(name: str) -> str:
    """
    Return the ``model`` value (``Plant``, ``lnn_sim``) of a zoo plant.

    A random draw is written as MJCF into the temporary directory first.
    """
    if name in ZOO:
        return f'zoo/{name}'
    text = mjcf(name)
    path = Path(tempfile.gettempdir()) / 'lnn_control_zoo' / f'{name}.xml'
    if not path.is_file() or path.read_text(encoding='utf-8') != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f'.{os.getpid()}.tmp')
        tmp.write_text(text, encoding='utf-8')
        tmp.replace(path)           # atomic: parallel workers may write the same draw
    return str(path)


def reference_amplitude(name: str) -> float:
    return AMPLITUDE_M if isinstance(spec(name), (CartPole, Lift)) else AMPLITUDE_RAD


def _arm_needs(member: Arm, a: float, acc: float) -> list[float]:
    """
    Per joint: gravity at twice the amplitude plus 1.5x the peak acceleration times the inertia.

    Both with the links beyond the joint stretched out (the largest lever): joint i carries
    the links from i on, link k's centre at the distance from joint i to the middle of k.
    """
    n, need = len(member.masses), []
    for i in range(n):
        moment, inertia, reach = 0.0, member.armature[i], 0.0
        for k in range(i, n):
            m, length = member.masses[k], member.lengths[k]
            centre = reach + length / 2
            moment += m * centre
            inertia += m * (centre ** 2 + length ** 2 / 12)
            reach += length
        grav = 0.0 if member.horizontal else G * math.sin(2 * a) * moment
        need.append(grav + inertia * acc * 1.5 + member.friction[i])
    return need


def effort_limits(name: str, max_frequency_hz: float = REFERENCE['frequency_hz']) -> list[float]:
    """Four times the effort the nominal reference needs, per actuated joint."""
    member = spec(name)
    a = reference_amplitude(name)
    acc = a * (2 * math.pi * max_frequency_hz) ** 2   # bound on the peak acceleration
    if isinstance(member, Pendulum):
        inertia = member.mass * member.length ** 2 / 3 + member.tip_mass * member.length ** 2 \
            + member.armature
        grav = G * math.sin(a) * (member.mass * member.length / 2 + member.tip_mass * member.length)
        need = [grav + inertia * acc + member.friction
                + member.damping * a * 2 * math.pi * max_frequency_hz]
    elif isinstance(member, Arm):
        need = _arm_needs(member, a, acc)
    elif isinstance(member, Lift):
        need = [member.mass * G + (member.mass + member.armature) * acc * 1.5
                + member.friction + member.damping * a * 2 * math.pi * max_frequency_hz]
    else:
        total = member.cart_mass + member.pole_mass
        need = [total * acc * 1.5 + member.rail_friction + member.rail_damping * 2]
    return [float(math.ceil(4 * x)) for x in need]


def mjcf(name: str) -> str:
    """Return the MJCF text of a zoo plant (what ``models/zoo/<name>.xml`` holds)."""
    member = spec(name)
    limits = effort_limits(name)
    head = (f'<!-- Zoo plant {name}: {member.note}. Generated by lnn_control/zoo.py '
            f'(python -m lnn_control.zoo); do not edit. -->\n'
            f'<mujoco model="{name}">\n'
            '  <compiler angle="radian" inertiafromgeom="true"/>\n'
            '  <option timestep="0.001" integrator="implicitfast" gravity="0 0 -9.81"/>\n'
            '  <default>\n    <geom contype="0" conaffinity="0"/>\n  </default>\n'
            '  <worldbody>\n')
    if isinstance(member, Pendulum):
        r = max(0.01, 0.05 * member.length)
        body = (f'    <body name="link1" pos="0 0 {member.length + 0.5:g}">\n'
                f'      <joint name="joint1" type="hinge" axis="0 1 0" '
                f'damping="{member.damping:g}" frictionloss="{member.friction:g}" '
                f'armature="{member.armature:g}"/>\n'
                f'      <geom name="link1" type="capsule" fromto="0 0 0 0 0 -{member.length:g}" '
                f'size="{r:g}" mass="{member.mass:g}"/>\n')
        if member.tip_mass:
            body += (f'      <geom name="tip" type="sphere" pos="0 0 -{member.length:g}" '
                     f'size="{2 * r:g}" mass="{member.tip_mass:g}"/>\n')
        body += '    </body>\n'
        motors = [('joint1', limits[0])]
    elif isinstance(member, Arm):
        body, motors = _arm_bodies(member, limits)
    elif isinstance(member, Lift):
        body = ('    <body name="carriage" pos="0 0 1">\n'
                '      <joint name="lift" type="slide" axis="0 0 1" limited="true" '
                f'range="-0.8 0.8" damping="{member.damping:g}" '
                f'frictionloss="{member.friction:g}" armature="{member.armature:g}"/>\n'
                f'      <geom name="carriage" type="box" size="0.1 0.1 0.05" '
                f'mass="{member.mass:g}"/>\n'
                '    </body>\n')
        motors = [('lift', limits[0])]
    else:
        body = ('    <geom name="rail" type="capsule" fromto="-2.2 0 1.5 2.2 0 1.5" size="0.01" '
                'mass="0"/>\n'
                '    <body name="cart" pos="0 0 1.5">\n'
                f'      <joint name="cart" type="slide" axis="1 0 0" limited="true" range="-2 2" '
                f'damping="{member.rail_damping:g}" frictionloss="{member.rail_friction:g}"/>\n'
                f'      <geom name="cart" type="box" size="0.1 0.05 0.05" '
                f'mass="{member.cart_mass:g}"/>\n'
                '      <body name="pole">\n'
                '        <joint name="pole" type="hinge" axis="0 1 0" damping="0.002"/>\n'
                '        <geom name="pole" type="capsule" '
                f'fromto="0 0 0 0 0 -{member.pole_length:g}" size="0.02" '
                f'mass="{member.pole_mass:g}"/>\n'
                '      </body>\n    </body>\n')
        motors = [('cart', limits[0])]
    acts = ''.join(f'    <motor name="{j}" joint="{j}" gear="1" ctrllimited="true" '
                   f'ctrlrange="-{lim:g} {lim:g}"/>\n' for j, lim in motors)
    return head + body + '  </worldbody>\n  <actuator>\n' + acts + '  </actuator>\n</mujoco>\n'


def _arm_bodies(member: Arm, limits: list[float]) -> tuple[str, list]:
    """Return the nested links of an arm, and its motors."""
    n = len(member.masses)
    axis, tip = ('0 0 1', '{} 0 0') if member.horizontal else ('0 1 0', '0 0 -{}')
    height = 0.5 if member.horizontal else sum(member.lengths) + 0.5
    body, close, pos = '', '', f'0 0 {height:g}'
    for i in range(n):
        pad = '  ' * (i + 2)
        m, length = member.masses[i], member.lengths[i]
        body += (f'{pad}<body name="link{i + 1}" pos="{pos}">\n'
                 f'{pad}  <joint name="joint{i + 1}" type="hinge" axis="{axis}" '
                 f'damping="{member.damping[i]:g}" frictionloss="{member.friction[i]:g}" '
                 f'armature="{member.armature[i]:g}"/>\n'
                 f'{pad}  <geom name="link{i + 1}" type="capsule" '
                 f'fromto="0 0 0 {tip.format(f"{length:g}")}" size="0.03" mass="{m:g}"/>\n')
        close = f'{pad}</body>\n' + close
        pos = tip.format(f'{length:g}')
    body += close
    return body, [(f'joint{i + 1}', limits[i]) for i in range(n)]


def controller_params(name: str, reference: Mapping[str, float] | None = None
                      ) -> dict[str, Any]:
    """
    Return what a PID user sets for a zoo plant: joints, honest gains, limits, reference.

    Everything else stays at the schema default: that is what the zoo tests.
    ``reference`` (``REFERENCE`` keys) changes the task, not the robot: the gains follow
    the honest rule for its highest frequency, the command limits (the actuators) stay.
    """
    from .plants import Plant, honest_gains

    ref = {**REFERENCE, **(reference or {})}
    plant = Plant(model_name(name))
    kp, kd = honest_gains(plant, max_reference_hz=ref['frequency_hz'])
    limit = np.asarray(effort_limits(name))
    n = plant.n
    amplitude = reference_amplitude(name)
    return {'joints': list(plant.joint_names), 'kp': kp.round(4).tolist(),
            'kd': kd.round(4).tolist(), 'command_limit': limit.tolist(),
            'reference.mode': 'sum_of_sines',
            'reference.frequency_hz': ref['frequency_hz'],
            'reference.amplitude': [amplitude * ref['amplitude_scale']] * n,
            'reference.offset': [amplitude * ref['offset_scale']] * n}


def write_models(directory: Path = ZOO_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name in ZOO:
        path = directory / f'{name}.xml'
        path.write_text(mjcf(name), encoding='utf-8')
        written.append(path)
    return written


if __name__ == '__main__':
    for p in write_models():
        print(p)


# -- running the zoo (``lnn-control zoo``) ---------------------------------------
DURATION_S = 60.0
CHANGE_AT_S = 40.0
DETECTION_WINDOW_S = 5.0     # a change counts as detected when flagged this soon
# The plant changes at CHANGE_AT_S: run.closed_loop keyword arguments per change.
CHANGES: dict[str, dict[str, Any]] = {
    'payload_x2': {'change': 'payload', 'payload_scale': 2.0},
    'payload_x0.5': {'change': 'payload', 'payload_scale': 0.5},
    'friction_x3': {'change': 'friction', 'friction_scale': 3.0},
}


def has_friction(name: str) -> bool:
    """Return whether a zoo plant has Coulomb friction (where a friction step means something)."""
    member = spec(name)
    return bool(np.any(np.asarray(getattr(member, 'friction', 0.0)) > 0)
                or getattr(member, 'rail_friction', 0.0) > 0)


def change_applies(change: str, plant: str) -> bool:
    """Return whether ``change`` runs on ``plant``: friction steps only on plants with friction."""
    return CHANGES[change]['change'] != 'friction' or has_friction(plant)


def jobs(plants=None, variants=('nominal',), seeds=(0,), extra=None,
         changes=('payload_x2',), reference=None) -> list[tuple]:
    """Return the ``run_member`` jobs of every (plant, change, variant, seed) that applies."""
    return [(p, v, s, dict(extra or {}), c, dict(reference or {})) for p in (plants or names())
            for c in changes if change_applies(c, p) for v in variants for s in seeds]


def run_member(job: tuple) -> dict[str, Any]:
    """
    Run PD-only and adaptive on one zoo plant, variant and change (defaults plus ``extra``).

    Also runs the adaptive controller on the changed plant from the start (for
    ``readaptation_ratio``); ``job`` is (plant, variant, seed, extra[, change[, reference]]).
    """
    from . import closed_loop as CL

    name, variant, seed, extra = job[:4]
    change = job[4] if len(job) > 4 else 'payload_x2'
    reference = job[5] if len(job) > 5 else None
    params = {**controller_params(name, reference), 'reservoir.seed': seed,
              'reference.seed': seed, **extra}
    pd, adaptive, settled = (
        CL.run(model_name(name), params, DURATION_S, learning=learning,
               payload_change_at=at, noise_seed=seed, **VARIANTS[variant], **CHANGES[change])
        for learning, at in ((False, CHANGE_AT_S), (True, CHANGE_AT_S), (True, 0.0)))
    summary = CL.summarize(pd, adaptive, DURATION_S, CHANGE_AT_S, settled)
    summary['pd_loop_check'] = pd_loop_check(name, params, VARIANTS[variant].get('delay_ticks', 0))
    summary['worst_window_ratio'] = CL.worst_window_ratio(pd, adaptive)
    detections = adaptive.meta['change_detections']
    drawn = {} if name in ZOO else {'drawn': repr(spec(name))}
    return {'plant': name, **drawn, 'variant': variant, 'seed': seed, 'change': change,
            **summary,
            'interventions': len([i for i in adaptive.meta['interventions']
                                  if i[1] != 'resume']),
            'intervention_log': adaptive.meta['interventions'],
            'change_detections_s': detections,
            'false_detections': sum(1 for t in detections if t < CHANGE_AT_S),
            'detection_delay_s': next((t - CHANGE_AT_S for t in detections
                                       if CHANGE_AT_S <= t < CHANGE_AT_S + DETECTION_WINDOW_S),
                                      None)}


def pd_loop_check(name: str, params: Mapping[str, Any], delay_ticks: int = 0) -> list[str]:
    """
    Say what ``lnn-control gains`` flags in a plant's honest PD loop (``plants.pd_loop_check``).

    A learned feedforward does not stabilise the feedback loop: where such a loop chatters
    or cycles, the supervisor holds the run near PD alone, and the report says why.
    """
    from .plants import Plant, pd_loop_check as check

    return check(Plant(model_name(name)), params, delay_ticks)


def run_zoo(plants=None, variants=('nominal',), seeds=(0,), extra=None, workers=2,
            progress=None, changes=('payload_x2',), reference=None) -> list[dict[str, Any]]:
    """Every job of ``jobs(...)``, on ``workers`` processes; rows in job order."""
    todo = jobs(plants, variants, seeds, extra, changes, reference)
    if workers <= 1:
        return _collect(map(run_member, todo), progress)
    import multiprocessing as mp
    with mp.get_context('spawn').Pool(workers) as pool:
        return _collect(pool.imap(run_member, todo), progress)


def _collect(results, progress) -> list[dict[str, Any]]:
    rows = []
    for row in results:
        rows.append(row)
        if progress:
            progress(1)
    return rows

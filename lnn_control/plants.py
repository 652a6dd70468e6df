"""
MuJoCo plants driven by joint efforts, plus the PD gain rule for honest baselines.

ROS-free on purpose: the node, benchmarks and tests all share this one simulator wrapper.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import mujoco
import numpy as np

from .schema import BUNDLED_PLANTS, by_name

PLANTS = BUNDLED_PLANTS
_MODEL_DIR = Path(__file__).resolve().parent / 'models'
# Plain ints: numpy ints do not compare equal to mujoco's enum objects.
_ONE_DOF = (int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE))
_TRN_JOINT = int(mujoco.mjtTrn.mjTRN_JOINT)
# MuJoCo's warning when accelerations are not finite; it then resets the state to the model's
_BAD_QACC = int(mujoco.mjtWarning.mjWARN_BADQACC)


# The honest-baseline rule (see README): wn = BANDWIDTH_FACTOR x the highest
# reference frequency (the default reference's), damping ratio DAMPING_RATIO.
MAX_REFERENCE_HZ = by_name()['reference.frequency_hz'].default
BANDWIDTH_FACTOR = 4.0
DAMPING_RATIO = 0.8
# The delay check advises a natural frequency this far below the stability boundary (kp
# 1/0.8^2 = 1.56x and kd 1.25x below it), or a rate this far above it (1/0.8): arms
# that read 1.02-1.26 were bistable (a kick sent them into a cycle at their limits), so
# advice that lands just inside the boundary (radius 0.996-0.9995 before) leaves no
# margin for what the model at q = 0 and nominal payload misses. (A margin in the radius
# itself would mean different things at different rates: it tends to 1 as rate grows.)
ADVICE_MARGIN = 0.8
MAX_CONTROL_RATE_HZ = by_name()['control_rate_hz'].high


def model_path(name_or_path: str) -> str:
    """Resolve a bundled plant name, ``zoo/<name>`` or an MJCF file to an absolute path."""
    if name_or_path in PLANTS:
        return str(_MODEL_DIR / f'{name_or_path}.xml')
    if name_or_path.startswith('zoo/') and (_MODEL_DIR / f'{name_or_path}.xml').is_file():
        return str(_MODEL_DIR / f'{name_or_path}.xml')
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return str(path.resolve())
    raise ValueError(
        f'unknown plant {name_or_path!r}: expected one of {", ".join(PLANTS)}, '
        'zoo/<name> (lnn-control zoo --list) or a path to an existing MJCF file')


def pd_gains(inertia: np.ndarray, natural_frequency: float,
             damping_ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """
    Kp = I wn^2, Kd = 2 zeta wn I: a critically-ish damped loop per joint.

    The honest-baseline rule picks wn >= 4x the highest reference frequency (rad/s)
    and zeta in [0.7, 1], so PD is tuned well rather than made weak for the learner.
    """
    if not (natural_frequency > 0 and damping_ratio >= 0):
        raise ValueError('natural_frequency must be > 0 and damping_ratio >= 0')
    inertia = np.asarray(inertia, dtype=float)
    return inertia * natural_frequency ** 2, 2.0 * damping_ratio * natural_frequency * inertia


def significant(values, digits: int = 4) -> list[float]:
    """Round to significant digits, not decimals (a finger's kd is 4e-4, not 0.0)."""
    return [float(f'{float(v):.{digits}g}') for v in values]


def honest_gains(plant: 'Plant', max_reference_hz: float = MAX_REFERENCE_HZ,
                 bandwidth_factor: float = BANDWIDTH_FACTOR,
                 damping_ratio: float = DAMPING_RATIO) -> tuple[np.ndarray, np.ndarray]:
    """Return the baseline PD gains of ``plant`` from its nominal inertia (the README's rule)."""
    wn = 2 * math.pi * max_reference_hz * bandwidth_factor
    return pd_gains(plant.nominal_inertia(), wn, damping_ratio)


# kd dt / effective inertia above this: the velocity feedback is near chattering at the
# control rate. Two random zoo arms chattered at 1.34 and 1.60 (PD alone at its limits
# 97-98 % of the time on the distal joint); none of the arms at or below 1.12 did.
KD_DT_PER_INERTIA_LIMIT = 1.0


def kd_dt_per_effective_inertia(plant: 'Plant', kd: np.ndarray, rate_hz: float) -> np.ndarray:
    """Per joint kd / (effective inertia x rate): the figure ``rate_check`` judges."""
    return np.asarray(kd, dtype=float) / (plant.effective_inertia() * rate_hz)


def rate_check(plant: 'Plant', kd: np.ndarray, rate_hz: float,
               kp: np.ndarray | None = None) -> list[str]:
    """
    Say which joints' kd is too high for ``rate_hz`` (empty: none), and what would do.

    The advice keeps ``ADVICE_MARGIN`` from the limit: a rate the model's timestep
    divides (the simulator steps whole timesteps per period), or kd and kp lowered
    together (kd by s, kp by s^2: the same damping ratio). kd lowered alone took a
    2-link arm's loop to a damping ratio of 0.42, whose coupled mode learning then
    excited (10 s windows up to 6x PD's error, a helper's review, 2026-12-06).
    """
    ratio = kd_dt_per_effective_inertia(plant, kd, rate_hz)
    kp = None if kp is None else np.broadcast_to(np.asarray(kp, dtype=float), ratio.shape)
    out = []
    for j, (name, r, k) in enumerate(zip(plant.joint_names, ratio, kd)):
        if r > KD_DT_PER_INERTIA_LIMIT:
            s = ADVICE_MARGIN * KD_DT_PER_INERTIA_LIMIT / r
            lower = (f'lower kd to <= {k * s:.3g}' if kp is None else
                     f'lower kd to <= {k * s:.3g} and kp to <= {kp[j] * s * s:.3g} together '
                     '(kd alone lowers the damping ratio)')
            rate = advised_rate(plant, rate_hz / s)
            fix = (f'control at {rate:g} Hz or {lower}' if rate else
                   f'{lower} (no rate from {rate_hz / s:.3g} Hz up '
                   + (f'to the largest control_rate_hz, {MAX_CONTROL_RATE_HZ:g}, would do)'
                      if rate is None else f"is a whole number of Hz and of the model's "
                      f'{plant.timestep:g} s timesteps)'))
            out.append(f'{name}: kd dt / effective inertia = {r:.2f} > '
                       f'{KD_DT_PER_INERTIA_LIMIT:g}: at {rate_hz:g} Hz the velocity feedback '
                       'is near or past chattering (the command flipping sign every tick); '
                       f'{fix}')
    return out


def advised_rate(plant: 'Plant', at_least_hz: float) -> float | None:
    """
    Return the lowest whole-hertz control rate >= ``at_least_hz`` the model can run.

    Its period is whole model timesteps (``Plant.steps_per``) and it is a whole number
    of hertz, so that it can be typed as advised (166.667 Hz is not 6 ms). None when it
    is above ``MAX_CONTROL_RATE_HZ``, 0 when no rate up to one per timestep qualifies.
    """
    if at_least_hz > MAX_CONTROL_RATE_HZ:
        return None
    at_least_hz = max(at_least_hz, 1.0)     # (the lowest control_rate_hz)
    for steps in range(math.floor(1.0 / (at_least_hz * plant.timestep) + 1e-9), 0, -1):
        rate = 1.0 / (steps * plant.timestep)
        if abs(rate - round(rate)) < 1e-6:
            return float(round(rate)) if rate <= MAX_CONTROL_RATE_HZ else None
    return 0.0


# The honest rule's lowest damping ratio (README, "Honest baseline"). Below it learning
# excited a 2-link arm's coupled mode: kd lowered alone to 0.42 of the rule's damping,
# 10 s windows up to 6x PD's error; the zoo's arms with kd halved (0.4) up to 1.55x.
MIN_DAMPING_RATIO = 0.7


def damping_ratios(plant: 'Plant', kp, kd) -> np.ndarray:
    """Per joint kd / (2 sqrt(kp I)), I the nominal inertia: the honest rule's damping ratio."""
    kp, kd = (np.broadcast_to(np.asarray(g, dtype=float), plant.n) for g in (kp, kd))
    with np.errstate(divide='ignore', invalid='ignore'):   # kp 0: no loop to damp (inf)
        return np.where(kp > 0.0, kd / (2.0 * np.sqrt(kp * plant.nominal_inertia())), np.inf)


def pd_loop_check(plant: 'Plant', params: Mapping[str, Any], delay_ticks: int = 0) -> list[str]:
    """
    Say what is wrong with the PD loop of ``params`` (kp, kd, control_rate_hz) on ``plant``.

    A kd that chatters at the control rate (``rate_check``), a damping ratio below the
    honest rule's (``damping_ratios``) or, with actuation delay, a sampled loop that is
    unstable at q = 0 (``delay_check``); empty: nothing. In short:
    ``lnn-control gains`` says how to fix them.
    """
    kp, kd = (np.broadcast_to(np.asarray(params[k], dtype=float), plant.n) for k in ('kp', 'kd'))
    rate = float(params.get('control_rate_hz', by_name()['control_rate_hz'].default))
    out = []
    figure = kd_dt_per_effective_inertia(plant, kd, rate)     # rate_check's figure and limit
    if np.any(figure > KD_DT_PER_INERTIA_LIMIT):
        out.append(f'kd chatters at {rate:g} Hz (kd dt / effective inertia '
                   f'{figure.max():.2f} > {KD_DT_PER_INERTIA_LIMIT:g})')
    zeta = damping_ratios(plant, kp, kd)
    if np.any(zeta < MIN_DAMPING_RATIO):
        j = int(np.argmin(zeta))
        out.append(f'damping ratio {zeta[j]:.2f} < {MIN_DAMPING_RATIO:g} on '
                   f'{plant.joint_names[j]} (kd / (2 sqrt(kp x nominal inertia))): a lightly '
                   'damped loop, which learning can excite (raise kd or lower kp)')
    if delay_ticks:
        radius, warnings = delay_check(plant, kp, kd, rate, delay_ticks)
        if warnings:
            ticks = f"{delay_ticks} tick{'s' if delay_ticks > 1 else ''}"
            out.append(f'PD loop unstable with {ticks} of delay (spectral radius {radius:.2f})')
    return out


def pd_loop_radius(mass_matrix: np.ndarray, kp: np.ndarray, kd: np.ndarray, dt: float,
                   delay_ticks: int = 0) -> float:
    """
    Spectral radius of the sampled PD loop on M q'' = u (< 1: stable), with actuation delay.

    The command computed from tick k's state is held over tick k + ``delay_ticks``
    (zero-order hold, exact for a double integrator). Gravity, friction and damping are
    left out: they hold small motions, so a loop above 1 may look fine until a kick
    sends it into a cycle at its limits. The mass matrix couples the joints: per joint,
    with each joint's own inertia, the check missed every cycling 2-link arm.
    """
    m = np.atleast_2d(np.asarray(mass_matrix, dtype=float))
    n, d = m.shape[0], int(delay_ticks)
    try:
        m_inv = np.linalg.inv(m)
    except np.linalg.LinAlgError:
        raise ValueError('the mass matrix is singular: a joint without inertia '
                         '(give it armature or mass)') from None
    a = np.eye(2 * n)
    a[:n, n:] = dt * np.eye(n)
    b = np.vstack([0.5 * dt * dt * m_inv, dt * m_inv])
    gain = np.hstack([np.diag(np.broadcast_to(kp, n)), np.diag(np.broadcast_to(kd, n))])
    if d == 0:
        return float(max(abs(np.linalg.eigvals(a - b @ gain))))
    size = 2 * n + d * n                  # state, then the commands queued, newest first
    loop = np.zeros((size, size))
    loop[:2 * n, :2 * n] = a
    loop[:2 * n, size - n:] = b           # the oldest queued command is applied
    loop[2 * n:3 * n, :2 * n] = -gain     # the newest one comes from the state now
    for j in range(1, d):
        loop[2 * n + j * n:3 * n + j * n, 2 * n + (j - 1) * n:2 * n + j * n] = np.eye(n)
    return float(max(abs(np.linalg.eigvals(loop))))


def delay_check(plant: 'Plant', kp: np.ndarray, kd: np.ndarray, rate_hz: float,
                delay_ticks: int, bandwidth_factor: float = BANDWIDTH_FACTOR
                ) -> tuple[float, list[str]]:
    """
    Judge the PD loop with ``delay_ticks`` of actuation delay at ``rate_hz``: (radius, warnings).

    At q = 0 and payload 1 (``pd_loop_radius``; over 60 random 2-link arms the largest
    radius over the elbow's range was always there). With one tick at 100 Hz the 29 of
    them whose PD loop cycled with the delay (1.2-12x its error without it) read 1.04-1.79,
    and so did the named zoo's arm_friction and arm_heavy_tip (1.14, 1.37); 24 arms that
    did not cycle read at most 0.99, 7 read 1.02-1.26, among them every arm that a kick
    sent into a cycle at its limits (bistable). The warning says how to get below 1 with a
    margin (``ADVICE_MARGIN``): a lower natural frequency (the same damping ratio; as the
    ``--bandwidth-factor`` that gives it, ``bandwidth_factor`` being the one used) or a
    higher rate the model runs (``advised_rate``), and whether it is within the node's range.
    """
    m = plant.nominal_mass_matrix()
    kp, kd = np.asarray(kp, dtype=float), np.asarray(kd, dtype=float)
    radius = pd_loop_radius(m, kp, kd, 1.0 / rate_hz, delay_ticks)
    if radius < 1.0:
        return radius, []

    def stable_scale(low: float, high: float, radius_at) -> float:
        for _ in range(50):                 # bisection: radius_at(low) < 1 <= radius_at(high)
            mid = math.sqrt(low * high)
            low, high = (mid, high) if radius_at(mid) < 1.0 else (low, mid)
        return low

    # the stability boundary, then the margin, rounded to the safe side
    boundary = stable_scale(1e-3, 1.0, lambda c: pd_loop_radius(
        m, kp * c * c, kd * c, 1.0 / rate_hz, delay_ticks))
    wn_scale = math.floor(100 * ADVICE_MARGIN * boundary) / 100
    advice = (f'lower the natural frequency to {wn_scale:.2f}x (kp x {wn_scale ** 2:.4g}, '
              f'kd x {wn_scale:.2f}: --bandwidth-factor '
              f'{math.floor(100 * wn_scale * bandwidth_factor) / 100:g})'
              if wn_scale >= 0.01 else 'no usable natural frequency is stable with the margin '
              f'(the boundary lies at {100 * boundary:.2g} % of this one)')
    if pd_loop_radius(m, kp, kd, 1.0 / (100.0 * rate_hz), delay_ticks) < 1.0:
        boundary = stable_scale(1e-2, 1.0, lambda c: pd_loop_radius(
            m, kp, kd, c / rate_hz, delay_ticks))
        least = rate_hz / (ADVICE_MARGIN * boundary)
        rate = advised_rate(plant, least)       # one the model's timesteps make
        when = (f'if the delay is {delay_ticks} period(s) of this loop whatever its rate (a '
                'fixed latency in seconds grows in ticks with the rate: there only the lower '
                'frequency helps)')
        if rate:
            advice += f', or control at >= {rate:g} Hz {when}'
        elif least > MAX_CONTROL_RATE_HZ:
            advice += (f', or control at >= {math.ceil(least)} Hz {when} -- above the '
                       f"node's {MAX_CONTROL_RATE_HZ:g} Hz, so not with this node")
        else:       # (None: the next the model runs is above the node's; 0: none runs)
            advice += (f' (no rate from {least:.3g} Hz up to the largest control_rate_hz, '
                       f'{MAX_CONTROL_RATE_HZ:g}, is a whole number of Hz and of the '
                       f"model's {plant.timestep:g} s timesteps)")
    pose = ', '.join(f'{x:.3g}' for x in plant.design_pose)
    return radius, [f'with {delay_ticks} tick(s) of actuation delay at {rate_hz:g} Hz the PD '
                    f'loop is unstable at q = ({pose}) (spectral radius {radius:.3f} >= 1): '
                    'friction may hold small motions, but a kick (the first learning steps '
                    'give one) sends it into a cycle at its limits that learning alone cannot '
                    'fix (the supervisor keeps the PD output softer then); '
                    + advice]


# An oscillating mode of the PD loop, damped less than this, inside its bandwidth and
# mostly in joints the controller does not measure, is one learning can pump.
UNMEASURED_MODE_DAMPING = 0.1
# ... up to this x the natural frequency: a feedforward excited a soft series-elastic
# link's 3.1 Hz mode (2.7x PD's link error over 10 s windows) with the loop at 2.2 Hz.
MODE_SCAN_FACTOR = 2.0


# ball and free joints: ``unmeasured_modes`` leaves their modes out (see there)
UNJUDGED_JOINT_TYPES = (int(mujoco.mjtJoint.mjJNT_BALL), int(mujoco.mjtJoint.mjJNT_FREE))


def unmeasured_modes(plant: 'Plant', kp: np.ndarray, kd: np.ndarray,
                     max_hz: float) -> list[dict]:
    """
    Return the PD loop's lightly damped modes up to ``max_hz`` that live in unmeasured joints.

    The model is linearised about the design pose (MuJoCo's finite-difference
    transition over one timestep, gravity and joint damping included) with the PD law on
    the controlled joints; each oscillating eigenvalue's frequency and damping ratio are
    read from it, and its joints from the eigenvector's share of position (velocity over
    frequency). A pole on a cart, a swinging load or a flexible link: the controller sees
    them only through what they do to its joints, and feedback-error learning, which
    tries to cancel that, can pump them (README, "Known limit": a cart-pole's pole at 0.92
    Hz, pumped to 2.55x PD over a run). Coulomb friction is not in the linearisation.
    Modes that live in ball or free joints are not judged: there the linearisation gave
    modes that do not exist (a neutral ball at its centre of mass: 0.35 Hz with damping
    ratio -0.71, nothing in simulation) and missed one that does (a load hanging 0.2 m
    below a ball joint: no 1.1 Hz mode).
    """
    m = plant.model
    d = mujoco.MjData(m)
    d.qpos[plant._qadr] = plant.design_pose       # where the gains are designed
    mujoco.mj_forward(m, d)
    nv, size = m.nv, 2 * m.nv + m.na
    a, b = np.zeros((size, size)), np.zeros((size, m.nu))
    mujoco.mjd_transitionFD(m, d, 1e-6, True, a, b, None, None)
    gain = np.zeros((m.nu, size))
    per_effort = plant._ctrl_per_effort
    for j, (act, dof) in enumerate(zip(plant._act, plant._vadr)):
        gain[act, dof] = -float(kp[j]) * per_effort[j]
        gain[act, nv + dof] = -float(kd[j]) * per_effort[j]
    z, vectors = np.linalg.eig(a + b @ gain)
    s = np.log(z.astype(complex)) / m.opt.timestep
    measured = np.zeros(nv, dtype=bool)
    measured[plant._vadr] = True
    rotational = np.isin(m.jnt_type[m.dof_jntid], UNJUDGED_JOINT_TYPES)
    found = []
    for k in np.argsort(s.imag):
        hz, size_s = s[k].imag / (2 * math.pi), abs(s[k])
        damping = -s[k].real / size_s if size_s > 0 else 1.0
        if not (0.0 < hz <= max_hz and damping < UNMEASURED_MODE_DAMPING):
            continue
        share = np.abs(vectors[:nv, k]) ** 2 + np.abs(vectors[nv:2 * nv, k] / size_s) ** 2
        if (share[~measured].sum() <= 0.5 * share.sum()
                or share[rotational].sum() > 0.5 * share.sum()):
            continue
        dofs = [i for i in np.argsort(-share) if not measured[i] and share[i] > 0.1 * share.max()]
        names = list(dict.fromkeys(_joint_name(m, int(m.dof_jntid[i])) for i in dofs))
        found.append({'hz': round(float(hz), 3), 'damping_ratio': round(float(damping), 4),
                      'joints': names})
    return found


def unjudged_joints(plant: 'Plant') -> list[str]:
    """Return the ball and free joints, whose modes ``unmeasured_modes`` does not judge."""
    m = plant.model
    return [_joint_name(m, j) or f'joint {j}' for j in range(m.njnt)
            if m.jnt_type[j] in UNJUDGED_JOINT_TYPES]


def unmeasured_mode_warnings(modes: list[dict], max_hz: float, fast_learner: bool = True,
                             unjudged: Sequence[str] = ()) -> list[str]:
    """
    Say what each mode of ``unmeasured_modes`` risks, and what to watch and do.

    ``unjudged``: ball and free joints (``unjudged_joints``), whose modes were not checked:
    said too, so a clean report is not read as a checked one.
    """
    advice = ('; if the command grows while the error does, set rls.fast_learner: false'
              if fast_learner else '')
    unchecked = ([f'{", ".join(unjudged)}: ball or free joints, whose modes are not checked '
                  '(linearised, they read wrong): a load swinging on them can be pumped by '
                  f'learning as an unmeasured mode can{advice}'] if unjudged else [])
    return unchecked + [
        f'a lightly damped mode at {mode["hz"]:g} Hz (damping ratio '
        f'{mode["damping_ratio"]:.3g}) in joints the controller does not measure '
        f'({", ".join(mode["joints"])}), within {MODE_SCAN_FACTOR:g}x the PD loop\'s '
        f'natural frequency ({max_hz:.3g} Hz): '
        f'learning can pump it (README "Known limit"){advice}'
        for mode in modes]


def _name(model: mujoco.MjModel, obj: mujoco.mjtObj, i: int) -> str:
    return mujoco.mj_id2name(model, obj, i) or ''


def _joint_name(model: mujoco.MjModel, j: int) -> str:
    """Return a joint's name; an unnamed one is named after its id (JointState names all)."""
    return mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, j) or f'unnamed_joint_{j}'


def _effort_range(m, actuator: int, joint: int, per_ctrl: float) -> tuple[float, float]:
    """
    Return the joint effort the actuator can apply, (low, high) (+-inf: unlimited).

    Every limit MuJoCo applies counts: the control range (times gain and gear), the
    actuator's force range (times gear) and the joint's actuator force range.
    """
    low, high = -math.inf, math.inf
    bounds = []
    if m.actuator_ctrllimited[actuator]:
        bounds.append(m.actuator_ctrlrange[actuator] * per_ctrl)
    if m.actuator_forcelimited[actuator]:
        bounds.append(m.actuator_forcerange[actuator] * m.actuator_gear[actuator, 0])
    if m.jnt_actfrclimited[joint]:
        bounds.append(m.jnt_actfrcrange[joint])
    for lo, hi in bounds:
        lo, hi = min(lo, hi), max(lo, hi)
        low, high = max(low, lo), min(high, hi)
    return low, high


def _effort_per_ctrl(model: str, m, actuators, joints) -> np.ndarray:
    """
    Return the joint effort per unit of each actuator's ctrl; refuse what is not a motor.

    A plain motor (fixed gain, no bias, no activation dynamics) applies gain x gear x ctrl.
    A position or velocity servo (a bias term) or an actuator with dynamics turns ctrl into
    a set point or a filtered signal: commanded as an effort it diverged (a <position>
    actuator with kp 50: NaN accelerations within seconds).
    """
    factor = m.actuator_gainprm[actuators, 0] * m.actuator_gear[actuators, 0]
    bad = [f'{j} ({_name(m, mujoco.mjtObj.mjOBJ_ACTUATOR, a) or f"actuator {a}"})'
           for a, j, f in zip(actuators, joints, factor)
           if f == 0 or m.actuator_biastype[a] != mujoco.mjtBias.mjBIAS_NONE
           or m.actuator_gaintype[a] != mujoco.mjtGain.mjGAIN_FIXED
           or m.actuator_dyntype[a] != mujoco.mjtDyn.mjDYN_NONE]
    if bad:
        raise ValueError(f'{model}: the actuators of {", ".join(bad)} are not effort motors '
                         '(a position or velocity servo, activation dynamics, or a zero gain '
                         'or gear): lnn_control commands joint effort; use <motor> actuators')
    return factor


def _end_link(m, joint_ids) -> int:
    """
    Return the body a payload rides on: the last body carried by the controlled joints.

    Bodies are stored depth-first, so that is the last descendant of the deepest
    controlled joint's body (a table or a loose box after the arm is not carried).
    """
    root = max(int(m.jnt_bodyid[j]) for j in joint_ids)
    end = root
    for b in range(root + 1, m.nbody):
        parent = b
        while parent > root:
            parent = int(m.body_parentid[parent])
        if parent == root:
            end = b
    return end


class Plant:
    """
    A MuJoCo plant driven by joint efforts with zero-order hold.

    Efforts are at the joint (a motor's gear and gain are divided out), as a robot's
    driver takes them and as JointState reports them.
    """

    def __init__(self, model: str = 'pendulum', joints: Sequence[str] | None = None,
                 payload_body: str | None = None):
        path = model_path(model)
        try:
            self.model = mujoco.MjModel.from_xml_path(path)
        except ValueError as exc:     # MuJoCo's parser: several lines, no file name
            detail = ' '.join(str(exc).split())
            raise ValueError(f'{path}: not a MuJoCo model ({detail})') from None
        if not self.model.opt.timestep > 0:     # (MuJoCo takes 0: a ZeroDivisionError later)
            raise ValueError(f'{path}: <option timestep> must be > 0; got '
                             f'{self.model.opt.timestep:g}')
        self.data = mujoco.MjData(self.model)
        m = self.model

        # Actuators acting directly on a joint, keyed by joint id (actuator order kept).
        driving: dict[int, list[int]] = {}
        for a in range(m.nu):
            if (m.actuator_trntype[a] == _TRN_JOINT
                    and m.jnt_type[m.actuator_trnid[a, 0]] in _ONE_DOF):
                driving.setdefault(int(m.actuator_trnid[a, 0]), []).append(a)
        motors = {j: acts[-1] for j, acts in driving.items()}
        by_name = {_joint_name(m, j): j for j in motors}
        if joints is None:
            joints = list(by_name)
        elif isinstance(joints, str):
            joints = [joints]
        if len(set(joints)) != len(joints):
            raise ValueError(f'duplicate joint names in {list(joints)}')
        missing = [j for j in joints if j not in by_name]
        if missing or not joints:
            hinges = [_joint_name(m, j) for j in range(m.njnt) if m.jnt_type[j] in _ONE_DOF]
            unknown = [j for j in missing if j not in hinges]
            passive = [j for j in missing if j in hinges]
            said = ([f'no hinge or slide joint named {unknown} in the model'] * bool(unknown)
                    + [f'joints {passive} are not actuated'] * bool(passive))
            what = '; '.join(said) or ('joints is empty: name the ones to control' if by_name
                                       else 'no joint to control')
            raise ValueError(
                f'{model}: {what}; actuated (a <motor> on a hinge or slide joint): '
                f'{", ".join(by_name) or "none"}'
                + (f'; hinge/slide joints: {", ".join(hinges)}' if hinges else ''))
        jids = [by_name[j] for j in joints]
        shared = [f'{_joint_name(m, j)} ('
                  + ', '.join(_name(m, mujoco.mjtObj.mjOBJ_ACTUATOR, a) or f'actuator {a}'
                              for a in driving[j]) + ')'
                  for j in jids if len(driving[j]) > 1]
        if shared:      # the effort applied would not be the effort commanded
            raise ValueError(f'{model}: several actuators drive {", ".join(shared)}: '
                             'lnn_control commands one effort per joint; keep one <motor> '
                             'on each controlled joint')
        self.joint_names = tuple(joints)
        self.n = len(jids)
        self._qadr = m.jnt_qposadr[jids].copy()
        # where each controlled joint can go (+-inf: no range in the model)
        self.position_range = np.where(m.jnt_limited[jids, None] > 0, m.jnt_range[jids],
                                       [-math.inf, math.inf])
        self.hinge = m.jnt_type[jids] == int(mujoco.mjtJoint.mjJNT_HINGE)   # else slide
        self._vadr = m.jnt_dofadr[jids].copy()
        # what the honest rule's inertia leaves out: Coulomb friction and joint springs
        self.friction = m.dof_frictionloss[self._vadr].copy()
        self.stiffness = m.jnt_stiffness[jids].copy()
        self._act = np.array([motors[j] for j in jids])
        # The controller commands joint effort (N m or N, as JointState.effort): a motor
        # applies gain x gear x ctrl to its joint, so ctrl = effort / (gain x gear), and the
        # effort limit is the control range times the same factor.
        per_ctrl = _effort_per_ctrl(model, m, self._act, joints)
        self._ctrl_per_effort = 1.0 / per_ctrl
        # The controller's limit is symmetric: the smaller side of what MuJoCo lets the
        # actuator apply, so that the effort reported is the effort applied.
        self.effort_range = np.array([_effort_range(m, a, j, f)
                                      for a, j, f in zip(self._act, jids, per_ctrl)])
        one_way = [f'{name} ({lo:g} to {hi:g})' for name, (lo, hi)
                   in zip(joints, self.effort_range) if not lo < 0.0 < hi]
        if one_way:
            raise ValueError(f'{model}: the actuators of {", ".join(one_way)} cannot push '
                             'both ways (control, force or actuator force range): lnn_control '
                             'commands effort in both directions')
        self.effort_limit = np.minimum(-self.effort_range[:, 0], self.effort_range[:, 1])

        all_ids = [j for j in range(m.njnt) if m.jnt_type[j] in _ONE_DOF]
        self.all_joint_names = tuple(_joint_name(m, j) for j in all_ids)
        self._all_qadr = m.jnt_qposadr[all_ids].copy()
        self._all_vadr = m.jnt_dofadr[all_ids].copy()
        self._in_all = np.array([all_ids.index(j) for j in jids])

        if payload_body is None:
            self._payload_id = _end_link(m, jids)
        else:
            self._payload_id = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, payload_body)
            if self._payload_id < 1:
                bodies = [_name(m, mujoco.mjtObj.mjOBJ_BODY, b) for b in range(1, m.nbody)]
                raise ValueError(f'unknown payload body {payload_body!r}; '
                                 f'available: {", ".join(bodies)}')
        self.payload_body = _name(m, mujoco.mjtObj.mjOBJ_BODY, self._payload_id)
        self._mass0 = float(m.body_mass[self._payload_id])
        self._inertia0 = m.body_inertia[self._payload_id].copy()
        self._payload_scale = 1.0
        self._frictionloss0 = m.dof_frictionloss.copy()
        self._friction_scale = 1.0

        self._effort = np.zeros(self.n)
        # steps in which MuJoCo found the accelerations not finite and reset the state
        # (an effort the model cannot take, a near-massless payload): the motion is lost
        self.blow_ups = 0
        self._scratch = mujoco.MjData(m)
        self._full_m = np.zeros((m.nv, m.nv))
        low, high = self.position_range.T
        self.set_design_pose(np.clip(0.0, low, high))
        self.reset()

    def initial_positions(self, values) -> np.ndarray:
        """
        Return the start state of ``values`` (none: zeros; one: every joint; or one per joint).

        ValueError with the reason for another count or a position outside a joint's range,
        where MuJoCo's joint limit would kick the robot back hard at start.
        """
        q0 = np.asarray(values, dtype=float).reshape(-1)
        if q0.size not in (0, 1, self.n):
            raise ValueError(f'initial_positions needs 0, 1 or {self.n} values (one per joint '
                             f'of {list(self.joint_names)}); got {q0.size}')
        q0 = np.broadcast_to(q0, (self.n,)).copy() if q0.size else np.zeros(self.n)
        outside = [f'{j} {q:g} (range {lo:g} to {hi:g})' for j, q, (lo, hi)
                   in zip(self.joint_names, q0, self.position_range) if not lo <= q <= hi]
        if outside:
            raise ValueError('initial_positions outside the joint range of the model: '
                             + ', '.join(outside))
        return q0

    def set_design_pose(self, q) -> None:
        """
        Evaluate the nominal matrices (gain design, rate and delay checks) at pose ``q``.

        q = 0 by default, or the nearest point of a joint's range that excludes it. An arm's
        inertia depends on its pose: a 7-joint arm's shoulder carried 4x at its working
        pose what it carried stretched out at q = 0, and the gains designed there left a
        lightly damped mode the learner pumped (docs/zoo.md); design where the robot works.
        """
        q = np.asarray(q, dtype=float).reshape(-1)
        if q.size not in (1, self.n) or not np.all(np.isfinite(q)):
            raise ValueError(f'a pose is {self.n} finite joint positions '
                             f'({", ".join(self.joint_names)}); got {q.tolist()}')
        self.design_pose = np.broadcast_to(q, (self.n,)).copy()
        self._nominal_m = self._mass_matrix_at(self.design_pose).copy()
        self._nominal = np.diag(self._nominal_m).copy()
        # with every other joint free (the full matrix: unactuated joints included)
        self._effective = 1.0 / np.diag(np.linalg.inv(self._full_m))[self._vadr]
        self._gravity = self._scratch.qfrc_bias[self._vadr].copy()   # at rest: gravity only

    def design_gravity(self) -> np.ndarray:
        """Return the joint effort that holds the robot at rest at the design pose (gravity)."""
        return self._gravity.copy()

    @property
    def timestep(self) -> float:
        return float(self.model.opt.timestep)

    @property
    def time(self) -> float:
        return float(self.data.time)

    def steps_per(self, period_s: float) -> int:
        """Return the physics steps in ``period_s``; refuse a period that is not a multiple."""
        steps = period_s / self.timestep
        if not (math.isfinite(steps) and round(steps) >= 1 and abs(steps - round(steps)) <= 1e-9):
            raise ValueError(f'control period {period_s:g} s must be a positive multiple of '
                             f'the model timestep {self.timestep:g} s (<option timestep>)')
        return int(round(steps))

    def reset(self, q=None, qd=None) -> None:
        """Restart from rest (or the given controlled-joint state); the payload is kept."""
        mujoco.mj_resetData(self.model, self.data)
        self.data.qpos[self._qadr] = 0.0 if q is None else np.broadcast_to(q, (self.n,))
        self.data.qvel[self._vadr] = 0.0 if qd is None else np.broadcast_to(qd, (self.n,))
        self._effort[:] = 0.0
        mujoco.mj_forward(self.model, self.data)

    def step(self, effort: np.ndarray, duration: float) -> None:
        """Clip the effort to the limits and hold it for round(duration / timestep) steps."""
        if not math.isfinite(duration) or duration < 0:
            raise ValueError(f'duration must be finite and >= 0, got {duration}')
        np.clip(effort, -self.effort_limit, self.effort_limit, out=self._effort)
        if not np.isfinite(self._effort).all():  # NaN would silently poison the simulation
            self._effort[:] = 0.0
            raise ValueError(f'effort must be finite, got {effort}')
        self.data.ctrl[self._act] = self._effort * self._ctrl_per_effort
        warning = self.data.warning[_BAD_QACC]
        before = warning.number
        mujoco.mj_step(self.model, self.data, max(1, round(duration / self.model.opt.timestep)))
        if warning.number != before:
            self.blow_ups += 1

    def position(self) -> np.ndarray:
        return self.data.qpos[self._qadr]  # fancy indexing already copies

    def velocity(self) -> np.ndarray:
        return self.data.qvel[self._vadr]

    def effort(self) -> np.ndarray:
        """Last applied (clipped) effort."""
        return self._effort.copy()

    def all_positions(self) -> np.ndarray:
        return self.data.qpos[self._all_qadr]

    def all_velocities(self) -> np.ndarray:
        return self.data.qvel[self._all_vadr]

    def all_efforts(self) -> np.ndarray:
        """Actuator effort on every 1-dof joint (0 on passive joints)."""
        out = np.zeros(len(self.all_joint_names))
        out[self._in_all] = self._effort
        return out

    @property
    def payload_scale(self) -> float:
        return self._payload_scale

    @payload_scale.setter
    def payload_scale(self, scale: float) -> None:
        """
        Scale mass and inertia of the payload body relative to nominal (not cumulative).

        No mj_setConst: it would overwrite the live state; the change acts at the next step.
        """
        scale = float(scale)
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f'payload_scale must be finite and > 0, got {scale}')
        self.model.body_mass[self._payload_id] = self._mass0 * scale
        self.model.body_inertia[self._payload_id] = self._inertia0 * scale
        self._payload_scale = scale

    @property
    def friction_scale(self) -> float:
        return self._friction_scale

    @friction_scale.setter
    def friction_scale(self, scale: float) -> None:
        """
        Scale the Coulomb friction (MuJoCo frictionloss) of every joint relative to nominal.

        Not cumulative; for wear, a dry bearing, a cold gearbox.
        """
        scale = float(scale)
        if not (math.isfinite(scale) and scale >= 0):
            raise ValueError(f'friction_scale must be finite and >= 0, got {scale}')
        self.model.dof_frictionloss[:] = self._frictionloss0 * scale
        self._friction_scale = scale

    def mass_matrix(self) -> np.ndarray:
        """
        (n, n) joint-space mass matrix of the controlled joints at the current state.

        Computed on a scratch MjData so a payload change is reflected immediately.
        """
        self._scratch.qpos[:] = self.data.qpos
        return self._mass_matrix_at(None)

    def nominal_inertia(self) -> np.ndarray:
        """Diagonal of the mass matrix at the design pose, payload 1 (for PD gain design)."""
        return self._nominal.copy()

    def nominal_mass_matrix(self) -> np.ndarray:
        """Joint-space mass matrix at the design pose, payload 1 (for the delay check)."""
        return self._nominal_m.copy()

    def effective_inertia(self) -> np.ndarray:
        """
        1 / diag(M^-1) at the design pose, payload 1: what a joint's own fast loop moves.

        Above the other joints' loop bandwidth they move freely, so a velocity gain meets
        this inertia, not the diagonal one: kd dt / this is the figure that says whether
        kd chatters at the control rate (``rate_check``).
        """
        return self._effective.copy()

    def _mass_matrix_at(self, q: np.ndarray | None) -> np.ndarray:
        if q is not None:
            mujoco.mj_resetData(self.model, self._scratch)
            self._scratch.qpos[self._qadr] = q
        mujoco.mj_forward(self.model, self._scratch)
        mujoco.mj_fullM(self.model, self._scratch, self._full_m)
        return self._full_m[np.ix_(self._vadr, self._vadr)]

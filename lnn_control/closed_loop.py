"""
Offline closed loop: a controller against a MuJoCo plant, no ROS in between.

Runs PD-only and adaptive on the same plant, reference and payload change so
their tracking errors compare directly, and computes the summary figures.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
import os
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from . import schema
from .controller import AdaptiveController
from .loop import ControlLoop, REFUSED, supervisor_state
from .plants import Plant
from .share import share_directory
from .trajectories import make_reference

PAYLOAD_SCALE = 2.0          # the payload change multiplies the end-link mass by this
FRICTION_SCALE = 3.0         # the friction step multiplies every joint's Coulomb friction
CHANGES = ('payload', 'friction')
RECOVERY_WINDOW_S = 2.0      # recovery time: rolling RMS over this window ...
RECOVERY_TOLERANCE = 1.5     # ... stays within this factor of the pre-change RMS
WINDOW_S = 10.0              # RMS window before the change / at the end
AFTER_WINDOW_S = (5.0, 10.0)  # RMS window after the change, seconds after it


def config_path(plant: str) -> str:
    """Return the installed parameter file of a bundled plant (``share/lnn_control/config``)."""
    path = os.path.join(share_directory(), 'config', f'{plant}.yaml')
    if not os.path.isfile(path):
        raise FileNotFoundError(f'no parameter file for plant {plant!r}: {path} does not exist')
    return path


def plant_params(plant: str, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """
    Return the controller parameters for a plant, then ``extra``.

    A bundled plant: its config file. A zoo plant (``zoo/<name>``): what the zoo sets for
    it (joints, honest gains, effort limits, its reference). An MJCF file of the user's:
    what ``lnn-control gains`` gives for it (its joints, the honest gains, the actuators'
    effort limits), so that it runs before any parameter file is written; for the joints
    in ``extra`` if it names some (the others' motors then apply no effort).
    """
    if extra and 'joints' in extra:     # (joints=5 ended in a TypeError traceback)
        reason = schema.check(schema.by_name()['joints'], extra['joints'])
        if reason:
            raise ValueError(reason)
    if plant in schema.BUNDLED_PLANTS:
        overrides = schema.load_yaml_overrides(config_path(plant), 'lnn_controller')
    elif zoo_member(plant):
        from . import zoo
        overrides = zoo.controller_params(zoo_member(plant))
    else:       # (a reference centre of the user's: the gains are designed there)
        overrides = model_params(plant, (extra or {}).get('joints'),
                                 (extra or {}).get('reference.offset'))
    _check_joints_kept(plant, overrides, extra or {})
    overrides.update(extra or {})
    if not np.all(np.isfinite(overrides.get('command_limit', 0.0))):
        raise ValueError(f'{plant}: an actuator has no ctrlrange, so no command_limit follows '
                         'from the model: give one (--param command_limit=... or a parameter '
                         'file)')
    return overrides


def _check_joints_kept(plant: str, own: Mapping[str, Any], extra: Mapping[str, Any]) -> None:
    """
    Refuse other ``joints`` for a plant whose per-joint values ``extra`` leaves as they are.

    (A bundled or zoo plant's kp, kd, ... belong to its joints: one message per parameter
    said 'needs one value per joint' without saying why.)
    """
    joints = extra.get('joints')
    old = own.get('joints')
    if joints is None or old is None or list(joints) == list(old):
        return
    kept = [p.name for p in schema.CONTROLLER if p.per_joint and p.name not in extra
            and np.size(own.get(p.name, 0.0)) == len(old) > 1]
    if kept:
        raise ValueError(f'joints {list(joints)}: {plant} sets {", ".join(kept)} per joint of '
                         f'{list(old)}; give them for the new joints too (--param '
                         f'{kept[0]}=[...]), or run its MJCF model, whose gains are designed '
                         'for the joints named (lnn-control gains --plant <model> --joints ...)')


def zoo_member(plant: str) -> str | None:
    """Return the zoo plant ``zoo/<name>`` stands for, named or a random draw (None: not one)."""
    from . import zoo
    name = plant[4:] if plant.startswith('zoo/') else None
    return name if name and zoo.is_member(name) else None


RANGE_MARGIN = 0.1    # the generated reference keeps this fraction of a joint's range clear


def model_params(path: str, joints: Sequence[str] | None = None,
                 offset: Any = None) -> dict[str, Any]:
    """
    Joints, honest gains, command limits and reference of an MJCF model (``Plant`` refuses others).

    ``joints``: the joints to control (default: every joint a motor drives).

    The reference is the default one, fitted into each joint's range where the model gives
    one (``RANGE_MARGIN`` clear of either end): a target the joint cannot reach would judge
    the controller against its end stops. The gains are designed at the reference's centre,
    where the robot works (``Plant.set_design_pose``): ``offset`` if given (the user's
    ``reference.offset``; a 7-joint arm's ready pose needs 1.8x the kp of its zero pose
    on the shoulder), else the fitted one.
    """
    from .plants import honest_gains, significant

    plant = Plant(path, joints=joints)
    amplitude, fitted = fitted_reference(plant)
    try:
        pose = fitted if offset is None else np.broadcast_to(np.asarray(offset, float),
                                                             (plant.n,))
    except (TypeError, ValueError):         # (its parameter check says what is wrong)
        pose = fitted
    if not np.all(np.isfinite(pose)):
        pose = fitted
    plant.set_design_pose(pose)             # the gains for where the robot works
    kp, kd = honest_gains(plant)
    return {'joints': list(plant.joint_names), 'kp': significant(kp, 6),
            'kd': significant(kd, 6), 'command_limit': plant.effort_limit.tolist(),
            'reference.amplitude': amplitude.round(6).tolist(),
            'reference.offset': fitted.round(6).tolist()}


def fitted_reference(plant: Plant) -> tuple[np.ndarray, np.ndarray]:
    """Return the default reference's amplitude and offset, fitted into the joints' ranges."""
    defaults = schema.by_name()
    amplitude = np.full(plant.n, defaults['reference.amplitude'].default[0])
    offset = np.full(plant.n, defaults['reference.offset'].default[0])
    low, high = plant.position_range.T
    margin = RANGE_MARGIN * np.where(np.isfinite(high - low), high - low, 0.0)
    low, high = low + margin, high - margin
    amplitude = np.minimum(amplitude, 0.5 * (high - low))
    return amplitude, np.clip(offset, low + amplitude, high - amplitude)


def design_pose(plant_name: str, plant: Plant) -> np.ndarray:
    """
    Return where a demo of ``plant_name`` designs its gains: its reference's centre.

    A bundled or zoo plant: the offset its parameters give (each joint of ``plant``); an
    MJCF file: the default reference's, fitted into each joint's range.
    """
    if plant_name in schema.BUNDLED_PLANTS or zoo_member(plant_name):
        params = plant_params(plant_name, {'command_limit': 1.0})
        default = schema.by_name()['reference.offset'].default
        offset = np.broadcast_to(np.asarray(params.get('reference.offset', default), float),
                                 (len(params['joints']),))
        by_joint = dict(zip(params['joints'], offset))
        return np.array([by_joint.get(j, 0.0) for j in plant.joint_names])
    return fitted_reference(plant)[1]


@dataclass
class Trace:
    """Per-tick log of one run (arrays of shape (ticks,) or (ticks, n_joints))."""

    t: np.ndarray
    q_d: np.ndarray
    q: np.ndarray
    command: np.ndarray
    learning_error: np.ndarray
    qd: np.ndarray | None = None
    prediction: np.ndarray | None = None      # (ticks, horizons, 2n): made at t for t + h
    anomaly_score: np.ndarray | None = None
    label: str = ''
    meta: dict = field(default_factory=dict)


def generated_mode(mode: str) -> str:
    """Return the reference mode a run tracks: its own, or with none ('topic') the sum of sines."""
    return 'sum_of_sines' if mode == 'topic' else mode


def generated_reference(n: int, mode: str, amplitude, frequency_hz, offset, seed: int):
    """Return the reference a run tracks (``generated_mode``)."""
    return make_reference(generated_mode(mode), n, amplitude, frequency_hz, offset, seed=seed)


def run(plant_name: str, controller_params: Mapping[str, Any], duration: float,
        learning: bool = True, payload_change_at: float | None = None,
        progress: Callable[[float], None] | None = None, payload_scale: float = PAYLOAD_SCALE,
        position_noise: float = 0.0, velocity_noise: float = 0.0, delay_ticks: int = 0,
        noise_seed: int = 0, change: str = 'payload', friction_scale: float = FRICTION_SCALE,
        on_change: Callable[[AdaptiveController], None] | None = None,
        readout_path: str = '', reference=None,
        on_step: Callable[[int, Plant, np.ndarray], None] | None = None) -> Trace:
    """
    Simulate one closed-loop run; ``learning=False`` gives the PD-only arm.

    The PD-only arm is the same controller with learning off (its feedforward stays zero),
    so both arms run one PD law, driven through the same ``ControlLoop`` tick as the ROS
    node.

    Imperfections of a real robot, applied to both arms alike: Gaussian measurement noise
    (``position_noise``, ``velocity_noise``: sigma) and ``delay_ticks`` control periods
    between command and actuation.

    At ``payload_change_at`` the plant changes: ``change`` 'payload' scales the end link's
    mass and inertia by ``payload_scale``, 'friction' every joint's Coulomb friction by
    ``friction_scale``; ``on_change(controller)``, if given, is called then (an oracle for
    re-adaptation mechanisms, see benchmarks/bench_adaptation.py).

    ``readout_path``: as the node's parameter: the readout is loaded from it when the file
    exists (a file this controller cannot use raises ValueError with the reason) and saved
    to it at the end.

    ``reference``: what the run tracks, an object whose ``sample(t, q, qd, qdd)`` writes
    the desired state at ``t`` seconds (default: the one ``reference.*`` generates).

    ``on_step(tick, plant, effort)``, if given, is called each tick just before the plant
    takes ``effort`` (the command applied, after any delay): lets a benchmark shadow the
    plant (benchmarks/bench_detection_bound.py).
    """
    if change not in CHANGES:
        raise ValueError(f"change must be one of {', '.join(CHANGES)}; got {change!r}")
    overrides = dict(controller_params)
    overrides['learning_enabled'] = bool(learning) and overrides.get('learning_enabled', True)
    ctrl = AdaptiveController(overrides)
    loop = ControlLoop(ctrl, ctrl.params['sensor_timeout_s'], ctrl.params['stale_sensor_action'])
    readout_path = os.path.expanduser(readout_path)
    if readout_path and os.path.exists(readout_path):
        ctrl.load(readout_path)
    plant = Plant(plant_name, joints=ctrl.joints)
    plant.steps_per(ctrl.dt)    # else the plant would run faster or slower than the controller
    cfg = ctrl.config.reference
    ref = reference if reference is not None else generated_reference(
        ctrl.n, cfg.mode, cfg.amplitude, cfg.frequency_hz, cfg.offset, cfg.seed)
    dt = ctrl.dt
    ticks = int(round(duration / dt))
    n = ctrl.n
    log_q_d, log_q, log_u = (np.zeros((ticks, n)) for _ in range(3))
    log_e = np.zeros(ticks)
    log_qd = np.zeros((ticks, n))
    fm = ctrl.forward
    log_pred = np.zeros((ticks, len(fm.horizons), 2 * n)) if fm is not None else None
    log_score = np.zeros(ticks) if fm is not None else None
    q_d, qd_d, qdd_d = np.zeros(n), np.zeros(n), np.zeros(n)
    rng = np.random.default_rng(noise_seed)
    pending = [np.zeros(n) for _ in range(int(delay_ticks))]
    ref.sample(0.0, q_d, qd_d, qdd_d)
    plant.reset(q=q_d)
    for k in range(ticks):
        t = k * dt
        if payload_change_at is not None and abs(t - payload_change_at) < dt / 2:
            if change == 'payload':
                plant.payload_scale = payload_scale
            else:
                plant.friction_scale = friction_scale
            if on_change is not None and learning:
                on_change(ctrl)
        ref.sample(t, q_d, qd_d, qdd_d)
        q, qd = plant.position(), plant.velocity()
        log_q_d[k], log_q[k], log_qd[k] = q_d, q, qd
        if position_noise or velocity_noise:
            q = q + rng.normal(0.0, position_noise, n)
            qd = qd + rng.normal(0.0, velocity_noise, n)
        now_ns = int(round(t * 1e9))
        loop.sensor_received(now_ns)             # the simulator's state is always fresh
        if loop.tick(now_ns, (q, qd), (q_d, qd_d, qdd_d)) == REFUSED:
            raise ValueError(f'controller refused a tick at t={t:.3f} s: {loop.refusal}')
        u = loop.command.copy()
        log_u[k] = u
        if pending:
            pending.append(u)
            u = pending.pop(0)
        if on_step is not None:
            on_step(k, plant, u)
        plant.step(u, dt)
        log_e[k] = ctrl.learning_error
        if fm is not None:
            for i in range(len(fm.horizons)):
                log_pred[k, i] = fm.prediction(i).reshape(-1)
            log_score[k] = fm.detector.score
        if progress is not None and k % 100 == 0:
            progress(t)
    if readout_path:
        ctrl.save(readout_path)
    sv = ctrl.supervisor
    meta = {'interventions': [(i.time_s, i.action, i.reason) for i in sv.interventions],
            'supervisor_state': supervisor_state(ctrl), 'gain_scale': sv.gain_scale,
            'pd_scale': sv.pd_gain,
            'change_detections': [d.time_s for d in ctrl.change_detector.detections]}
    if fm is not None:
        meta['anomalies'] = [d.time_s for d in fm.detector.detections]
        meta['horizons'] = fm.horizons
    return Trace(np.arange(ticks) * dt, log_q_d, log_q, log_u, log_e, log_qd, log_pred,
                 log_score, label='adaptive' if learning else 'PD only', meta=meta)


def rms(trace: Trace, start: float, stop: float) -> float:
    """RMS over joints and time of the tracking error in [start, stop) (NaN: no tick in it)."""
    sel = (trace.t >= start) & (trace.t < stop)
    if not sel.any():
        return float('nan')
    return float(np.sqrt(np.mean((trace.q_d[sel] - trace.q[sel]) ** 2)))


def rms_per_joint(trace: Trace, start: float, stop: float) -> np.ndarray:
    """RMS per joint of the tracking error in [start, stop): one figure per unit (m, rad)."""
    sel = (trace.t >= start) & (trace.t < stop)
    if not sel.any():
        return np.full(trace.q.shape[1], np.nan)
    return np.sqrt(np.mean((trace.q_d[sel] - trace.q[sel]) ** 2, axis=0))


def _ratios(a: np.ndarray, b: np.ndarray) -> list:
    return [ratio(float(x), float(y)) for x, y in zip(a, b)]


def ratio(a: float, b: float) -> float | None:
    """Return a / b; None where it means nothing (b zero: PD tracks exactly; or NaN)."""
    return a / b if b > 0.0 and np.isfinite(a) and np.isfinite(b) else None


def worst_window_ratio(pd: Trace, adaptive: Trace, window: float = WINDOW_S,
                       skip: float = WINDOW_S, step: float = 1.0) -> float:
    """Largest adaptive/PD RMS over any ``window`` s after the first ``skip`` s (NaN: none)."""
    end = float(pd.t[-1]) + (pd.t[1] - pd.t[0]) if pd.t.size > 1 else 0.0
    starts = np.arange(skip, end - window + 1e-9, step)
    ratios = (ratio(rms(adaptive, a, a + window), rms(pd, a, a + window)) for a in starts)
    return max((r for r in ratios if r is not None), default=float('nan'))


def _joint(trace: Trace, j: int) -> Trace:
    """Return the trace of joint ``j`` alone (for figures per joint)."""
    return replace(trace, q_d=trace.q_d[:, j:j + 1], q=trace.q[:, j:j + 1])


def _rolling_rms(trace: Trace, w: int) -> np.ndarray:
    """RMS error over the ``w`` ticks ending at each tick from the w-th on."""
    sq = np.concatenate([[0.0], np.cumsum(np.mean((trace.q_d - trace.q) ** 2, axis=1))])
    return np.sqrt(np.maximum(sq[w:] - sq[:-w], 0.0) / w)


def recovery_time(trace: Trace, change_at: float, pre_change_rms: float,
                  window: float = RECOVERY_WINDOW_S,
                  tolerance: float = RECOVERY_TOLERANCE, settled: Trace | None = None) -> float:
    """
    Return the seconds after ``change_at`` until the rolling RMS error stays within bounds.

    The rolling ``window`` RMS error (ending at each tick) has to stay within ``tolerance``
    x ``pre_change_rms`` to the end of the run: 0 when it never leaves, the whole remaining
    time when it does not settle before the end. With ``settled`` (see ``summarize``) the
    bound is ``tolerance`` x that run's rolling RMS at the same instant instead.
    """
    dt = float(trace.t[1] - trace.t[0])
    w = max(1, int(round(window / dt)))
    rolling = _rolling_rms(trace, w)
    bound = pre_change_rms if settled is None else _rolling_rms(settled, w)
    ends = trace.t[w - 1:] + dt
    after = ends > change_at + dt / 2
    outside = np.nonzero((rolling > tolerance * bound)[after])[0]
    if outside.size == 0:
        return 0.0
    return float(ends[after][outside[-1]] - change_at)


def prediction_nrmse(trace: Trace, start: float, stop: float) -> list[float]:
    """
    Per prediction horizon: the worst NRMSE over joints of position and velocity.

    Predictions of the states in [start, stop) against the true (noise-free) states;
    NRMSE = RMS error / standard deviation of the quantity over that stretch (NaN or inf
    where there is none, or the quantity never moved).
    """
    out = []
    true = np.concatenate([trace.q, trace.qd], axis=1)
    for i, h in enumerate(trace.meta['horizons']):
        sel = np.nonzero((trace.t >= start) & (trace.t < stop))[0]
        sel = sel[sel >= h]
        err = trace.prediction[sel - h, i] - true[sel]
        sel, err = sel[np.isfinite(err).all(axis=1)], err[np.isfinite(err).all(axis=1)]
        if sel.size == 0:
            out.append(float('nan'))
            continue
        spread = np.std(true[sel], axis=0)
        with np.errstate(divide='ignore', invalid='ignore'):    # a state that never moved
            nrmse = np.sqrt(np.mean(err ** 2, axis=0)) / spread
        out.append(float(np.max(nrmse)))
    return out


def summarize(pd: Trace, adaptive: Trace, duration: float,
              payload_change_at: float | None, settled: Trace | None = None) -> dict[str, float]:
    """
    Return the comparison figures.

    ``settled``: the adaptive controller run on the changed plant from the start
    (``run(..., payload_change_at=0.0)``); it gives ``readaptation_ratio``, the error 5-10 s
    after the change over the error a controller that has long known the changed plant has
    over the same stretch of the reference: 1 is perfect re-adaptation, whatever the change
    did to how well the plant can be tracked at all; and ``recovery_ratio_floor`` =
    ``rms_settled_after / rms_adaptive``: the ``recovery_ratio`` that instant, perfect
    re-adaptation would show.
    """
    end = payload_change_at if payload_change_at is not None else duration
    before = (max(0.0, end - WINDOW_S), end)
    out = {'rms_pd': rms(pd, *before), 'rms_adaptive': rms(adaptive, *before)}
    out['ratio'] = ratio(out['rms_adaptive'], out['rms_pd'])
    if pd.q.shape[1] > 1:       # the pooled figure mixes joints (and metres with radians)
        out['ratio_per_joint'] = _ratios(rms_per_joint(adaptive, *before),
                                         rms_per_joint(pd, *before))
    windows = {'before_s': [round(w, 6) for w in before]}
    if payload_change_at is not None:
        a, b = (min(payload_change_at + w, duration) for w in AFTER_WINDOW_S)
        windows['after_s'] = [round(a, 6), round(b, 6)]
        out['rms_pd_after'] = rms(pd, a, b)
        out['rms_adaptive_after'] = rms(adaptive, a, b)
        out['ratio_after_change'] = ratio(out['rms_adaptive_after'], out['rms_pd_after'])
        if pd.q.shape[1] > 1:
            out['ratio_after_change_per_joint'] = _ratios(rms_per_joint(adaptive, a, b),
                                                          rms_per_joint(pd, a, b))
        out['recovery_ratio'] = ratio(out['rms_adaptive_after'], out['rms_adaptive'])
        out['recovery_time_s'] = (recovery_time(adaptive, payload_change_at, out['rms_adaptive'])
                                  if b > a else None)
        if settled is not None:
            out['rms_settled_after'] = rms(settled, a, b)
            out['readaptation_ratio'] = ratio(out['rms_adaptive_after'],
                                              out['rms_settled_after'])
            # what instant, perfect re-adaptation would read as recovery_ratio
            out['recovery_ratio_floor'] = ratio(out['rms_settled_after'], out['rms_adaptive'])
            out['readaptation_time_s'] = (recovery_time(adaptive, payload_change_at,
                                                        out['rms_adaptive'], settled=settled)
                                          if b > a else None)
    notes = _window_notes(before, windows.get('after_s'), payload_change_at, out)
    if notes:
        out['windows'], out['notes'] = windows, notes
    return out


def _window_notes(before, after, change_at, out) -> list[str]:
    """Say where the run was too short for the nominal windows, or a ratio means nothing."""
    notes = []
    if before[1] - before[0] < WINDOW_S:
        notes.append(f'the RMS before {"the change" if change_at else "the end"} is over '
                     f'{before[1] - before[0]:g} s, not {WINDOW_S:g} s (start-up included)')
    if after is not None and after[1] - after[0] < AFTER_WINDOW_S[1] - AFTER_WINDOW_S[0]:
        notes.append(f'the RMS after the change is over {after[0] - change_at:g}-'
                     f'{after[1] - change_at:g} s after it, not {AFTER_WINDOW_S[0]:g}-'
                     f'{AFTER_WINDOW_S[1]:g} s' if after[1] > after[0] else
                     'the run ends before the window after the change begins: no figures '
                     'after it')
    if out['rms_pd'] == 0.0 or out.get('rms_pd_after') == 0.0:
        notes.append('PD alone tracks this reference exactly: no ratio to it')
    return notes


def report(mode: str, plant: str, neuron: str, seed: int, pd: Trace, adaptive: Trace,
           duration: float, payload_change_at: float | None,
           settled: Trace | None = None) -> dict[str, Any]:
    """
    Return the summary.json of a demo run, offline or over ROS.

    ``settled``: see ``summarize``; offline only.
    """
    out = {'mode': mode, 'plant': plant, 'neuron': neuron, 'duration_s': duration,
           'payload_change_at_s': payload_change_at,
           'payload_scale_after': PAYLOAD_SCALE if payload_change_at else 1.0,
           'seed': seed, **summarize(pd, adaptive, duration, payload_change_at, settled),
           'worst_window_ratio': worst_window_ratio(pd, adaptive)}
    if pd.q.shape[1] > 1:       # which joint it was (the pooled window adds m to rad)
        out['worst_window_ratio_per_joint'] = [
            worst_window_ratio(_joint(pd, j), _joint(adaptive, j)) for j in range(pd.q.shape[1])]
    events = adaptive.meta.get('interventions')
    if events is not None:
        out['supervisor'] = {
            'interventions': sum(1 for e in events if e[1] != 'resume'),
            'events': [{'time_s': round(t, 3), 'action': a, 'reason': r} for t, a, r in events],
            'final_state': adaptive.meta.get('supervisor_state'),
            'gain_scale': adaptive.meta.get('gain_scale'),
            'pd_scale': adaptive.meta.get('pd_scale')}
    detections = adaptive.meta.get('change_detections')
    if detections is not None:
        out['change_detections_s'] = [round(t, 3) for t in detections]
    if adaptive.prediction is not None and adaptive.qd is not None:
        end = payload_change_at if payload_change_at is not None else duration
        out['prediction'] = {
            'horizons_ticks': list(adaptive.meta['horizons']),
            'nrmse_before_change': prediction_nrmse(adaptive, end - WINDOW_S, end),
            'anomalies_s': [round(t, 3) for t in adaptive.meta.get('anomalies', ())]}
    return out

"""
What a demo recording (``run.mcap`` of ``lnn-control demo``) holds, as closed-loop traces.

ROS-free, so ``lnn-control plot`` and the analysis run without ROS.

The demo runs two arms side by side, each a simulator and a controller in a
namespace of its own (``ARMS``); the recording holds their joint_states,
commands, desired states and the nodes' ``/diagnostics``.
"""
from __future__ import annotations

import json

import numpy as np

from . import closed_loop as CL
from . import mcap_io
from .supervisor import ACTIONS

ARMS = (('pd', False), ('adaptive', True))     # namespace, learning on
CONTROL_PERIOD_S = 0.01


def traces_from_mcap(path: str) -> tuple[list[CL.Trace], dict[str, str]]:
    """
    PD and adaptive traces from a demo recording, on the loop's own time axis.

    Time zero is each arm's first control tick (its first ``desired``); the
    measured state of tick t is the latest joint_states stamped at or before t.
    The learning error is recomputed as the PD output from the recorded gains.
    """
    meta = mcap_io.metadata(path)
    joints = meta['joints'].split(',')
    kp, kd = np.array(json.loads(meta['kp'])), np.array(json.loads(meta['kd']))
    data = mcap_io.read(path)
    traces = []
    for ns, learning in ARMS:
        desired = mcap_io.joint_states(data.get(f'/{ns}/lnn_controller/desired', []), joints)
        measured = mcap_io.joint_states(data.get(f'/{ns}/joint_states', []), joints)
        commands = data.get(f'/{ns}/commands', [])
        if desired['stamp_ns'].size == 0:
            raise ValueError(f'{path} holds no /{ns}/lnn_controller/desired messages')
        # Pair each tick with the latest state stamped at or before it: in lock-step
        # that is the state stamped with the tick time itself.
        order = np.argsort(measured['stamp_ns'], kind='stable')
        stamps = measured['stamp_ns'][order]
        end_ns = desired['stamp_ns'][0] + int(round(float(meta['duration_s']) * 1e9))
        pos = np.searchsorted(stamps, desired['stamp_ns'], side='right') - 1
        d = np.flatnonzero((pos >= 0) & (desired['stamp_ns'] < end_ns))
        m = order[pos[d]]
        t = (desired['stamp_ns'][d] - desired['stamp_ns'][0]) * 1e-9
        q_d, qd_d = desired['position'][d], desired['velocity'][d]
        q, qd = measured['position'][m], measured['velocity'][m]
        # The node publishes each tick's command and desired state together, so the
        # k-th command belongs to the k-th desired.
        u = np.full((len(d), len(joints)), np.nan)
        for row, k in enumerate(d):
            if k < len(commands):
                u[row] = commands[k][1].data
        err = np.linalg.norm(kp * (q_d - q) + kd * (qd_d - qd), axis=1)
        meta_arm = _supervisor_from_diagnostics(data.get('/diagnostics', []),
                                                f'/{ns}/lnn_controller', desired['stamp_ns'][0])
        found = [_predictions(data.get(f'/{ns}/lnn_controller/{topic}', []), joints,
                              desired['stamp_ns'][d], int(meta.get(key, 0)))
                 for topic, key in (('prediction', 'prediction_horizon_ticks'),
                                    ('long_prediction', 'prediction_long_horizon_ticks'))]
        found = [(p, h) for p, h in found if p is not None]
        prediction = np.concatenate([p for p, _ in found], axis=1) if found else None
        if found:
            meta_arm['horizons'] = tuple(h for _, h in found)
        traces.append(CL.Trace(t, q_d, q, u, err, qd, prediction,
                               label='adaptive' if learning else 'PD only', meta=meta_arm))
    return traces, meta


def _predictions(messages, joints, tick_ns: np.ndarray,
                 horizon: int = 0) -> tuple[np.ndarray | None, int]:
    """
    Return the ~/prediction of each tick, (ticks, 1, 2n) (NaN where none), and its horizon.

    Each is stamped with the time it predicts, ``horizon`` ticks after the tick that made
    it. Recordings from before the horizon was stored (``horizon`` 0) assume that the
    first prediction was made at the first tick, which holds in lock-step only (in real
    time the recorder can match the two topics' publishers at different ticks).
    """
    pred = mcap_io.joint_states(messages, joints)
    if pred['stamp_ns'].size == 0 or tick_ns.size < 2:
        return None, 0
    period = float(np.median(np.diff(tick_ns)))
    if horizon <= 0:
        horizon = max(1, int(round((pred['stamp_ns'][0] - tick_ns[0]) / period)))
    ahead = pred['stamp_ns'] - int(round(horizon * period))     # when each was made
    k = np.clip(np.searchsorted(tick_ns, ahead - period / 2), 0, tick_ns.size - 1)
    ok = np.abs(tick_ns[k] - ahead) < period / 2
    out = np.full((tick_ns.size, 1, 2 * len(joints)), np.nan)
    out[k[ok], 0] = np.concatenate([pred['position'], pred['velocity']], axis=1)[ok]
    return out, horizon


def _supervisor_from_diagnostics(messages, hardware_id: str, t0_ns: int) -> dict:
    """
    Collect the learning supervisor's interventions and the detected plant changes.

    Both as the node reported them on /diagnostics (1 Hz: an event's time is that of the
    first status counting it).
    """
    events, last, state, gain, detections, anomalies = [], {}, None, None, [], []
    pd_scale = None
    for _, msg in messages:
        for status in msg.status:
            if status.hardware_id != hardware_id:
                continue
            values = {kv.key: kv.value for kv in status.values}
            if 'supervisor state' not in values:
                continue
            t = (mcap_io.stamp_ns(msg.header.stamp) - t0_ns) * 1e-9
            # the reason of the last one since the previous status; earlier ones in the same
            # second (several at once) only say where they were counted
            latest, _, reason = values.get('supervisor last intervention', '').partition(': ')
            for action in ACTIONS:
                count = int(values.get(f'supervisor {action}', 0))
                for _ in range(count - last.get(action, 0)):
                    events.append([t, action, 'reported on /diagnostics'])
                if count > last.get(action, 0) and action == latest and reason:
                    events[-1][2] = reason
                last[action] = count
            count = int(values.get('plant changes detected or reported', 0))
            detections += [t] * (count - len(detections))
            count = int(values.get('prediction anomalies', 0))
            anomalies += [t] * (count - len(anomalies))
            state, gain = values['supervisor state'], float(values['supervisor gain scale'])
            pd_scale = float(values.get('supervisor PD output scale', 1.0))
    if state is None:
        return {}
    return {'interventions': sorted(map(tuple, events)), 'supervisor_state': state,
            'gain_scale': gain,
            'pd_scale': pd_scale, 'change_detections': detections, 'anomalies': anomalies}

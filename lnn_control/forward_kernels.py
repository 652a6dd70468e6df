"""
Numba kernels of the forward model (``forward_model.py``): two calls per tick.

``forward_learn`` takes last tick's plant-readout step and the anomaly test and builds
this tick's plant inputs; ``forward_predict`` predicts with both learners and steps the
reservoir readouts through their ring of past features and gains.
"""
from __future__ import annotations

from numba import njit
import numpy as np

from .control_kernels import change_cusum, FRICTION_BAND
from .kernels import readout, rls_step

# Layout of the forward model's state vector (then one gain factor per ring slot).
FM_HEAD = 0      # ring slot of the next tick
FM_COUNT = 1     # ticks stored in the ring (up to its length)
FM_TICKS = 2     # ticks since the last restart
FM_SIZE = 3


@njit(cache=True)
def forward_learn(x, x_prev, plant_pred, z_prev, p, w, phi, g, y, rls_st, inv_scale, scale,
                  command, u_scale, headroom, factors, z, detect, cd_weights, cd_args, cd_st,
                  cd_hist, st):
    """
    Learn last tick's step, test for an anomaly, build this tick's plant inputs.

    Returns 1 on an anomaly, + 2 when the command's scale grew (the caller then rescales
    the plant readout, before ``forward_predict``), + 4 when the RLS step was refused.
    cd_args: a_short, a_hist, warm_ticks, quantile, log_excess, dt, threshold.
    """
    m = x.shape[0]
    n = m // 2
    code = 0
    for o in range(m):
        inv_scale[o] = 1.0 / scale[o]
    if st[FM_TICKS] > 0:
        for o in range(m):
            plant_pred[o] = x[o] - x_prev[o] - plant_pred[o]   # the a-priori error
        if rls_step(p, w, z_prev, True, plant_pred, phi, g, y, rls_st) < 0.0:
            code |= 4
        for o in range(m):
            plant_pred[o] *= inv_scale[o]
        if detect and change_cusum(plant_pred[n:], cd_weights, cd_args[0],
                                   cd_args[1], cd_args[2], cd_args[3], cd_args[4], cd_args[5],
                                   cd_args[6], cd_st, cd_hist):
            code |= 1
    if plant_inputs(x[:n], x[n:], command, scale, u_scale, headroom, factors, z):
        code |= 2
    return code


@njit(cache=True)
def forward_predict(w_plant, z, plant_pred, base, one_step, w, horizons, phi, g, k_scale, x,
                    inv_scale, buf_phi, buf_gain, buf_x, buf_base, buf_pred, st, pred, err,
                    power, a_err, z_prev, x_prev):
    """Predict with the plant readout and the reservoir readouts; keep this tick for the next."""
    readout(w_plant, z, True, plant_pred)
    m = x.shape[0]
    for o in range(m):
        base[0, o] = plant_pred[o] if one_step else 0.0
    forward_step(w, horizons, phi, g, k_scale, x, base, inv_scale, buf_phi, buf_gain, buf_x,
                 buf_base, buf_pred, st, pred, err)
    st[FM_TICKS] += 1.0
    for i in range(horizons.shape[0]):
        if st[FM_TICKS] > horizons[i]:
            e2 = 0.0
            for o in range(m):
                e2 += err[i, o] * err[i, o]
            power[i] += a_err * (e2 / m - power[i])
    for k in range(z.shape[0]):
        z_prev[k] = z[k]
    for o in range(m):
        x_prev[o] = x[o]


@njit(cache=True, fastmath=True)
def forward_step(w, horizons, phi, g, k_scale, x, base, inv_scale, buf_phi, buf_gain, buf_x,
                 buf_base, buf_pred, st, pred, err):
    """
    One tick of the forward model's reservoir readouts (see forward_model.py).

    w (H, m, F): per horizon h a readout of [1, phi] predicting x(t + h) - x(t) - base(t)
    (x: the measured (q, qd), m = 2n; base: what another predictor supplies). First, for
    each horizon, the prediction made h ticks ago is compared with x (the error, times
    ``inv_scale``, goes to ``err[i]``) and, if that tick learned, its readout takes an
    RLS step on that tick's features with that tick's gain: the slow readout's ``g``
    x ``k_scale`` (k_scale 0: no step). Then this tick's features, gain, state, base and
    predictions (into ``pred`` and the ring) are stored. st: ring head, ticks stored.
    """
    nh, m, nf = w.shape
    ring = buf_phi.shape[0]
    head, count = int(st[0]), int(st[1])
    for i in range(nh):
        h = horizons[i]
        if count < h:
            for o in range(m):
                err[i, o] = 0.0
            continue
        s = (head - h) % ring
        learn = st[FM_SIZE + s] != 0.0
        for o in range(m):
            err[i, o] = (x[o] - buf_pred[s, i, o]) * inv_scale[o]
            if learn:
                wo = w[i, o]
                acc = wo[0]
                for f in range(1, nf):
                    acc += wo[f] * buf_phi[s, f - 1]
                e = x[o] - buf_x[s, o] - buf_base[s, i, o] - acc
                for f in range(nf):
                    wo[f] += buf_gain[s, f] * e
    st[FM_SIZE + head] = k_scale
    for f in range(nf):
        buf_gain[head, f] = g[f] * k_scale
        if f > 0:
            buf_phi[head, f - 1] = phi[f - 1]
    for o in range(m):
        buf_x[head, o] = x[o]
    for i in range(nh):
        for o in range(m):
            wo = w[i, o]
            acc = wo[0]
            for f in range(1, nf):
                acc += wo[f] * phi[f - 1]
            buf_base[head, i, o] = base[i, o]
            pred[i, o] = x[o] + base[i, o] + acc
            buf_pred[head, i, o] = pred[i, o]
    st[FM_HEAD] = (head + 1) % ring
    st[FM_COUNT] = min(count + 1, ring)


@njit(cache=True)
def plant_inputs(q, qd, u, scale, u_scale, headroom, factors, z):
    """
    Build the forward model's plant-readout inputs, per joint blocks; True if a scale grew.

    q, qd (normalised), sin q, cos q, tanh(qd / (FRICTION_BAND scale)), u / u_scale: what
    the joint acceleration depends on, the command included. ``u_scale`` follows the
    command's peak as the input scales follow the reference (grows to headroom x peak);
    ``factors`` (6n) then holds new / old scale per input, for the readout's rescale.
    """
    n = q.shape[0]
    grew = False
    for j in range(n):
        factors[j] = factors[n + j] = factors[2 * n + j] = 1.0
        factors[3 * n + j] = factors[4 * n + j] = factors[5 * n + j] = 1.0
        a = abs(u[j])
        if a > u_scale[j]:
            factors[5 * n + j] = headroom * a / u_scale[j]
            u_scale[j] = headroom * a
            grew = True
        z[j] = q[j] / scale[j]
        z[n + j] = qd[j] / scale[n + j]
        z[2 * n + j] = np.sin(q[j])
        z[3 * n + j] = np.cos(q[j])
        z[4 * n + j] = np.tanh(qd[j] / (FRICTION_BAND * scale[n + j]))
        z[5 * n + j] = u[j] / u_scale[j]
    return grew


def warm_up() -> None:
    """Compile (or load from numba's cache) the forward model's kernels."""
    from .forward_model import ForwardModel

    fm = ForwardModel(1, 3, (1, 2), 0.01, 0.3, 0.999)
    for k in range(4):
        fm.step(np.full(3, 0.1 * k), np.array([0.1 * k, 0.2]), np.array([k + 1.0]),
                np.ones(2), np.ones(4), 0.5)

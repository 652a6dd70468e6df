"""
Numba kernel of the forward model (``forward_model.py``): one call per tick.

Every array the model keeps (its work rows, rings, readouts, anomaly test, memory
readout) is a view into one buffer, described by an index table (``pack``), so the
tick (``forecast``) passes 8 arguments, not 38 in two calls: through numba's
dispatcher each array argument costs ~0.05 us to pass and each call ~0.4 us, as much
as the work itself.
"""
from __future__ import annotations

from numba import njit
import numpy as np

# (compiled in as constants: see control_kernels' note on stale caches after a change)
from .control_kernels import CD_ENABLED, change_cusum, FRICTION_BAND
from .kernels import readout, rls_restart, rls_step

# Layout of the state vector (then one gain factor per ring slot).
FM_HEAD = 0      # ring slot of the next tick
FM_COUNT = 1     # ticks stored in the ring (up to its length)
FM_TICKS = 2     # ticks since the last restart
FM_SIZE = 3
# Rows of the work array: vectors carried from tick to tick, the horizons, then H rows
# each of the base (the plant readout's part of a prediction), predictions and errors.
W_X_PREV, W_PLANT, W_INV_SCALE, W_U_SCALE, W_FACTORS, W_Z, W_Z_PREV, W_POWER, W_ARGS, W_UNIT = (
    range(10))
W_CORR = 10      # the anomaly statistic's averages per joint (see command_correlation)
W_HORIZONS = 11  # the reservoir readouts' horizons [ticks], ascending
W_BASE = 12
# Columns of the W_ARGS row: the anomaly test's settings (see change_cusum), the plant
# readout's initial covariance, the command scale's headroom, the error average's rate,
# the memory readout's horizon (0: none).
(A_SHORT, A_HIST, A_WARM, A_QUANTILE, A_EXCESS, A_DT, A_THRESHOLD, A_P0, A_HEADROOM, A_ERR,
 A_MEMORY_H) = range(11)
N_ARGS = 11


@njit(cache=True, inline='always')
def forward_tick(x, command, scale, phi, gain, k_scale, wk, ring, st, w, p, wp, rphi, g, y,
                 rst, cd_st, cd_hist):
    """
    One tick of the forward model; returns 1 on an anomaly, + 2 if the command scale grew.

    + 4 when the plant readout's RLS step was refused. First the plant readout (P ``p``,
    weights ``wp``, scratch ``rphi``, ``g``, ``y``, state ``rst``) takes the step it
    predicted last tick and its velocity error goes through the anomaly test, if the
    detector's state ``cd_st`` has it on (an anomaly restarts its covariance: re-learn
    the changed plant fast). Then this tick's inputs are built (a grown command scale
    rescales their weights and restarts P), the plant readout predicts one tick ahead
    and ``forward_step`` does the reservoir readouts.
    """
    m = x.shape[0]
    n, nh = m // 2, w.shape[0]
    nz = 6 * n
    a, inv, e1 = wk[W_ARGS], wk[W_INV_SCALE, :m], wk[W_PLANT, :m]
    horizons = wk[W_HORIZONS, :nh]
    code = 0
    for o in range(m):
        inv[o] = 1.0 / scale[o]
    if st[FM_TICKS] > 0:
        for o in range(m):      # e1: last tick's plant prediction, now its a-priori error
            e1[o] = x[o] - wk[W_X_PREV, o] - e1[o]
        if rls_step(p, wp, wk[W_Z_PREV, :nz], True, e1, rphi, g, y, rst) < 0.0:
            code |= 4
        for o in range(m):
            e1[o] *= inv[o]
        corr = wk[W_CORR]
        if cd_st[CD_ENABLED] != 0.0 and \
                command_correlation(e1[n:], wk[W_Z_PREV, 5 * n:nz], a[A_SHORT],
                                    max(a[A_ERR], 1.0 / st[FM_TICKS]), corr) and \
                change_cusum(corr[3 * n:3 * n + 1], wk[W_UNIT, :1], 1.0, a[A_HIST], a[A_WARM],
                             a[A_QUANTILE], a[A_EXCESS], a[A_DT], a[A_THRESHOLD], cd_st,
                             cd_hist):
            code |= 1
            rls_restart(p, g, rst, a[A_P0])
    f = wk[W_FACTORS, :nz]
    if plant_inputs(x[:n], x[n:], command, scale, wk[W_U_SCALE, :n], a[A_HEADROOM], f,
                    wk[W_Z, :nz]):
        code |= 2
        for k in range(nz):
            for o in range(m):
                wp[1 + k, o] *= f[k]
        rls_restart(p, g, rst, a[A_P0])
    readout(wp, wk[W_Z, :nz], True, e1)
    base = wk[W_BASE:W_BASE + nh, :m]
    pred = wk[W_BASE + nh:W_BASE + 2 * nh, :m]
    err = wk[W_BASE + 2 * nh:W_BASE + 3 * nh, :m]
    for i in range(nh):
        for o in range(m):
            base[i, o] = e1[o] if horizons[i] == 1 else 0.0
    forward_step(w, horizons, phi, gain, k_scale, x, base, inv, ring, st, pred, err)
    st[FM_TICKS] += 1.0
    for i in range(nh):
        if st[FM_TICKS] > horizons[i]:
            e2 = 0.0
            for o in range(m):
                e2 += err[i, o] * err[i, o]
            wk[W_POWER, i] += a[A_ERR] * (e2 / m - wk[W_POWER, i])
    for k in range(nz):
        wk[W_Z_PREV, k] = wk[W_Z, k]
    for o in range(m):
        wk[W_X_PREV, o] = x[o]
    return code


@njit(cache=True)
def command_correlation(err, u, a_short, a_power, corr):
    """
    Update the anomaly statistic from the plant readout's velocity errors; True if defined.

    corr: per joint the short averages (rate ``a_short``) of u e and u^2, the error power's
    long average (``a_power``), then the statistic sum_j <u e>^2 / (<u^2> <e^2>), stored
    as its square root (``change_cusum`` squares it). The readout has the command among
    its inputs, so once learned its error is uncorrelated with the command; a payload or
    friction change alters the acceleration a command produces, and the error follows
    the command at once. A correlation is free of the plant's units and of the readout's
    covariance (restarted when the command's scale grows); measured against the error
    power it replaces, more changes are flagged within 0.5 s (docs/forward_model.md).
    """
    n = err.shape[0]
    for j in range(n):
        if not (np.isfinite(err[j]) and np.isfinite(u[j])):
            return False            # (nothing averaged: the statistic stays as it was)
    t2 = 0.0
    ok = False
    for j in range(n):
        e, c = err[j], u[j]
        corr[j] += a_short * (c * e - corr[j])
        corr[n + j] += a_short * (c * c - corr[n + j])
        corr[2 * n + j] += a_power * (e * e - corr[2 * n + j])
        den = corr[n + j] * corr[2 * n + j]
        if den > 0.0:
            t2 += corr[j] * corr[j] / den
            ok = True
    corr[3 * n] = np.sqrt(t2)
    return ok


@njit(cache=True, fastmath=True)
def forward_step(w, horizons, phi, g, k_scale, x, base, inv_scale, ring, st, pred, err):
    """
    Step the reservoir readouts of the forward model: learn from the ring, predict, store.

    w (H, m, F): per horizon h (``horizons``, ascending) a readout of [1, phi] predicting
    x(t + h) - x(t) - base(t) (x: the measured (q, qd), m = 2n; base: what the plant
    readout supplies). For each horizon, the prediction made h ticks ago is compared
    with x (the error, times ``inv_scale``, goes to ``err[i]``) and, if that tick
    learned, its readout takes an RLS step on that tick's features with that tick's
    gain: the slow readout's ``g`` x ``k_scale`` (k_scale 0: no step); then it predicts
    from this tick's phi. This tick's features, gain, state, base and predictions are
    stored in the ring: per slot phi (F - 1), gain (F), x (m), base and predictions
    (H m each). st: see FM_*, then the gain factor of each ring slot.
    At h = 1 nothing learned between that prediction and now, so its error is the
    a-priori error: phi is stored only for longer horizons.
    """
    nh, m, nf = w.shape
    slots = ring.shape[0]
    c_gain, c_x = nf - 1, 2 * nf - 1
    c_base, c_pred = c_x + m, c_x + m + nh * m
    head, count = int(st[FM_HEAD]), int(st[FM_COUNT])
    now = ring[head]            # (never a slot read below: slots = longest horizon + 1)
    st[FM_SIZE + head] = k_scale
    n_phi, n_gain = now[:nf - 1], now[c_gain:c_gain + nf]
    if horizons[nh - 1] > 1:
        for f in range(nf - 1):
            n_phi[f] = phi[f]
    for f in range(nf):
        n_gain[f] = g[f] * k_scale
    for o in range(m):
        now[c_x + o] = x[o]
    for i in range(nh):
        h = int(horizons[i])
        ready = count >= h
        slot = (head - h) % slots
        past = ring[slot]
        learn = ready and st[FM_SIZE + slot] != 0.0
        # slices indexed from 0: no wraparound checks, so LLVM vectorises the loops
        p_phi, p_gain = past[:nf - 1], past[c_gain + 1:c_gain + nf]
        for o in range(m):
            wo = w[i, o]
            wx = wo[1:]
            e = x[o] - past[c_pred + i * m + o]
            err[i, o] = e * inv_scale[o] if ready else 0.0
            acc = 0.0
            if learn:       # its RLS step and this tick's prediction in one pass over w
                if h > 1:
                    for f in range(nf - 1):
                        acc += wx[f] * p_phi[f]
                    e = x[o] - past[c_x + o] - past[c_base + i * m + o] - (wo[0] + acc)
                    acc = 0.0
                wo[0] += past[c_gain] * e
                for f in range(nf - 1):
                    wx[f] += p_gain[f] * e
                    acc += wx[f] * phi[f]
            else:
                for f in range(nf - 1):
                    acc += wx[f] * phi[f]
            pred[i, o] = x[o] + base[i, o] + wo[0] + acc
            now[c_base + i * m + o] = base[i, o]
            now[c_pred + i * m + o] = pred[i, o]
    st[FM_HEAD] = (head + 1) % slots
    st[FM_COUNT] = min(count + 1, slots)


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


# The memory readout's features per joint: the desired and measured q, qd, then their
# exponential traces at these time constants [s] (see forward_model.MemoryReadout).
MEMORY_TAUS_S = (0.1, 0.3, 1.0, 3.0)
MEMORY_SIGNALS = 4
MEMORY_FEATURES = MEMORY_SIGNALS * (1 + len(MEMORY_TAUS_S))
MEMORY_LEARN_EVERY = 3      # ticks per RLS step of the memory readout (see memory_step)


@njit(cache=True, inline='always')
def memory_step(x, phi, scale, decay, h, traces, ring, mst, p, w, rphi, g, y, rst, err, out,
                power, a_err):
    """
    Step the memory readout: learn (q, qd)(t) from the features of t - h, then predict.

    Per joint j the features are q_d, qd_d (from phi and the input scales), q, qd and
    their traces at rates ``decay``; one readout (P ``p``, weights ``w`` over [1, z], 2n
    outputs) takes one RLS step on the pair (z(t - h), x(t)) every
    ``MEMORY_LEARN_EVERY`` ticks (successive ticks' pairs differ little; its forgetting
    factor is the per-tick one to that power) and predicts from z(t) every tick.
    ring (slots, F + 2n): features and predictions per tick; mst: head, count, ticks;
    power: running squared error in input-scale units (rate a_err).
    """
    n = x.shape[0] // 2
    slots, nf = ring.shape[0], MEMORY_FEATURES * n
    head, count = int(mst[0]), int(mst[1])
    if count >= h:
        past = ring[(head - h) % slots]
        e2 = 0.0
        for o in range(2 * n):
            d = (x[o] - past[nf + o]) / scale[o]
            e2 += d * d
        power[0] += a_err * (e2 / (2 * n) - power[0])
        if mst[2] % MEMORY_LEARN_EVERY == 0.0:
            readout(w, past[:nf], True, err)
            for o in range(2 * n):
                err[o] = x[o] - err[o]
            rls_step(p, w, past[:nf], True, err, rphi, g, y, rst)
    z = ring[head]
    for j in range(n):
        b = MEMORY_FEATURES * j
        z[b] = phi[j] * scale[j]
        z[b + 1] = phi[n + j] * scale[n + j]
        z[b + 2] = x[j]
        z[b + 3] = x[n + j]
        for k in range(decay.shape[0]):
            for s in range(MEMORY_SIGNALS):
                if count == 0:      # (re)started: the traces start at the signals
                    traces[j, k, s] = z[b + s]
                else:
                    traces[j, k, s] += decay[k] * (z[b + s] - traces[j, k, s])
                z[b + MEMORY_SIGNALS * (1 + k) + s] = traces[j, k, s]
    readout(w, z[:nf], True, out)
    for o in range(2 * n):
        z[nf + o] = out[o]
    mst[0] = (head + 1) % slots
    mst[1] = min(count + 1, slots)
    mst[2] += 1.0


# -- one buffer for every array of the model (``pack``, ``forecast``) ----------------
ALIGN = 8           # float64 slots: each array starts on a 64-byte boundary


def pack(arrays) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """
    Copy float64 arrays (1-3 dimensions) into one buffer; return it, its index, the views.

    Index row i: offset of array i in the buffer and its shape (unused dimensions 1),
    as ``_view1``, ``_view2`` and ``_view3`` read it inside a kernel.
    """
    index = np.ones((len(arrays), 4), dtype=np.int64)
    offset = 0
    for i, a in enumerate(arrays):
        if a.dtype != np.float64 or not 1 <= a.ndim <= 3:
            raise ValueError(f'pack takes float64 arrays of 1-3 dimensions; got {a.dtype} '
                             f'{a.shape}')
        index[i, 0] = offset
        index[i, 1:1 + a.ndim] = a.shape
        offset += -(-a.size // ALIGN) * ALIGN
    buf = np.zeros(max(offset, 1))
    views = []
    for a, (o, *shape) in zip(arrays, index):
        view = buf[o:o + a.size].reshape(a.shape)
        view[...] = a
        views.append(view)
    return buf, index, views


@njit(cache=True, inline='always')   # (inlined: no variant per index)
def _view1(buf, index, i):
    o = index[i, 0]
    return buf[o:o + index[i, 1]]


@njit(cache=True, inline='always')   # (inlined: no variant per index)
def _view2(buf, index, i):
    o, r, c = index[i, 0], index[i, 1], index[i, 2]
    return buf[o:o + r * c].reshape((r, c))


@njit(cache=True, inline='always')   # (inlined: no variant per index)
def _view3(buf, index, i):
    o, a, b, c = index[i, 0], index[i, 1], index[i, 2], index[i, 3]
    return buf[o:o + a * b * c].reshape((a, b, c))


# Index rows of ``forecast``'s buffer: the forward model's arrays, then the memory
# readout's (present when ``memory_h`` > 0).
(I_WK, I_RING, I_ST, I_W, I_P, I_WP, I_RPHI, I_G, I_Y, I_RST, I_CD_ST, I_CD_HIST, I_DECAY,
 I_TRACES, I_MRING, I_MST, I_MP, I_MW, I_MPHI, I_MG, I_MY, I_MRST, I_MERR, I_MOUT,
 I_MPOWER) = range(25)
FORWARD_ARRAYS, MEMORY_ARRAYS = 12, 13


@njit(cache=True)
def forecast(buf, index, phi, x, command, scale, gain, k_scale):
    """
    One tick of the whole forward model: ``forward_tick``, then ``memory_step``.

    Their arrays are views of ``buf`` (rows ``I_*`` of ``index``, see ``pack``; first,
    so that ``ForwardModel.step`` can bind them); returns ``forward_tick``'s code.
    """
    b, ix = buf, index
    wk = _view2(b, ix, I_WK)
    code = forward_tick(x, command, scale, phi, gain, k_scale, wk, _view2(b, ix, I_RING),
                        _view1(b, ix, I_ST), _view3(b, ix, I_W), _view2(b, ix, I_P),
                        _view2(b, ix, I_WP), _view1(b, ix, I_RPHI), _view1(b, ix, I_G),
                        _view1(b, ix, I_Y), _view1(b, ix, I_RST), _view1(b, ix, I_CD_ST),
                        _view1(b, ix, I_CD_HIST))
    memory_h = int(wk[W_ARGS, A_MEMORY_H])
    if memory_h > 0:
        memory_step(x, phi, scale, _view1(b, ix, I_DECAY), memory_h, _view3(b, ix, I_TRACES),
                    _view2(b, ix, I_MRING), _view1(b, ix, I_MST), _view2(b, ix, I_MP),
                    _view2(b, ix, I_MW), _view1(b, ix, I_MPHI), _view1(b, ix, I_MG),
                    _view1(b, ix, I_MY), _view1(b, ix, I_MRST), _view1(b, ix, I_MERR),
                    _view1(b, ix, I_MOUT), _view1(b, ix, I_MPOWER), wk[W_ARGS, A_ERR])
    return code


def warm_up() -> None:
    """Compile (or load from numba's cache) the forward model's kernels."""
    from .forward_model import ForwardModel

    fm = ForwardModel(1, 3, (1, 2), 0.01, 0.3, 0.999, memory_horizon=2)
    for k in range(4):
        fm.step(np.full(3, 0.1 * k), np.array([0.1 * k, 0.2]), np.array([k + 1.0]),
                np.ones(2), np.ones(4), 0.5)

"""Numba kernels for the per-tick path: reservoir steps and the RLS update.

Every kernel writes into arrays the caller preallocated, so a control tick
allocates nothing. ``kernels_numpy.py`` holds the plain numpy versions the tests
compare these against.

The RLS update is fused: the rank-1 covariance update of step t is kept
pending and applied during step t+1's pass over P, which also computes
P @ phi. One read and one write of the upper triangle of P per step is the
whole memory traffic, half of what a full-matrix pass would move.
"""
from __future__ import annotations

import numpy as np
from numba import njit

# Reassociation lets LLVM vectorise the reductions; NaN/Inf semantics are kept
# (no 'nnan'/'ninf') because the callers check finiteness.
_FAST = {'reassoc', 'contract', 'nsz', 'arcp'}

# Layout of the RLS scalar state vector ``st``.
ST_PENDING_GAIN = 0    # 1 / c of the pending rank-1 update (0: none pending)
ST_PENDING_SCALE = 1   # factor applied after the pending update (1/lambda, trace cap)
ST_TRACE = 2           # trace of P once the pending update is applied
ST_TRACE_CAP = 3       # upper bound on trace(P): the anti-windup
ST_LAMBDA = 4          # forgetting factor
ST_DIRECTIONAL = 5     # 1: directional forgetting, 0: exponential
ST_SIZE = 6


@njit(cache=True)
def all_finite(a):
    """True when every entry of the 1-D array ``a`` is finite (no temporaries)."""
    for i in range(a.shape[0]):
        if not np.isfinite(a[i]):
            return False
    return True


@njit(cache=True)
def csr_matvec(indptr, indices, data, x, out):
    for i in range(out.shape[0]):
        s = 0.0
        for k in range(indptr[i], indptr[i + 1]):
            s += data[k] * x[indices[k]]
        out[i] = s


@njit(cache=True, fastmath=_FAST)
def _drive(w_in, u, indptr, indices, data, x, bias, out):
    """out = bias + w_in @ u + W @ x, the net input of every neuron.

    Row slices indexed from 0 let LLVM vectorise the sums (see rls_update).
    """
    n, m = w_in.shape
    for i in range(n):
        s = bias[i]
        w_row = w_in[i]
        for j in range(m):
            s += w_row[j] * u[j]
        cols = indices[indptr[i]:indptr[i + 1]]
        vals = data[indptr[i]:indptr[i + 1]]
        t = 0.0
        for k in range(cols.shape[0]):
            t += vals[k] * x[cols[k]]
        out[i] = s + t


@njit(cache=True)
def esn_step(x, u, w_in, indptr, indices, data, bias, leak, scratch):
    """Leaky-tanh echo state update: x <- (1-a) x + a tanh(W_in u + W x + b)."""
    _drive(w_in, u, indptr, indices, data, x, bias, scratch)
    for i in range(x.shape[0]):
        x[i] = (1.0 - leak) * x[i] + leak * np.tanh(scratch[i])


@njit(cache=True)
def ltc_step(x, u, w_in, indptr, indices, data, bias, tau, rev, dt, unfolds, scratch):
    """Liquid time-constant neurons, fused semi-implicit solver (Hasani et al. 2021).

    dx/dt = -(1/tau + f) x + f A with gate f = sigmoid(W_in u + W x + b):
    x <- (x + h f A) / (1 + h (1/tau + f)), ``unfolds`` steps of h = dt/unfolds.
    """
    h = dt / unfolds
    n = x.shape[0]
    for _ in range(unfolds):
        _drive(w_in, u, indptr, indices, data, x, bias, scratch)
        for i in range(n):
            f = 1.0 / (1.0 + np.exp(-scratch[i]))
            x[i] = (x[i] + h * f * rev[i]) / (1.0 + h * (1.0 / tau[i] + f))


@njit(cache=True)
def lif_step(trace, v, refractory, spikes, u, w_in, indptr, indices, data, bias,
             dt, substeps, tau_m, t_ref, tau_trace, scratch):
    """Leaky integrate-and-fire neurons; the readout sees filtered spike traces.

    Each of ``substeps`` Euler steps: v += h/tau_m (I - v) with
    I = b + W_in u + W s (s: last sub-step's spikes); v >= 1 spikes, resets to 0
    and holds for ``t_ref``; trace decays with ``tau_trace`` and jumps by 1 per spike.
    """
    h = dt / substeps
    decay = np.exp(-h / tau_trace)
    n = v.shape[0]
    for _ in range(substeps):
        _drive(w_in, u, indptr, indices, data, spikes, bias, scratch)
        for i in range(n):
            s = 0.0
            if refractory[i] > 0.0:
                refractory[i] -= h
            else:
                v[i] += h / tau_m * (scratch[i] - v[i])
                if v[i] >= 1.0:
                    v[i] = 0.0
                    refractory[i] = t_ref
                    s = 1.0
            spikes[i] = s
            trace[i] = trace[i] * decay + s


# Width, in normalised velocity, of the smooth sign of the desired velocity that
# the feedforward uses for Coulomb friction (which flips with the motion).
FRICTION_BAND = 0.05


@njit(cache=True)
def feedback_error_inputs(io, scale, kp, kd, pd, u):
    """PD output and reservoir inputs of one feedback-error-learning tick.

    io rows: q, qd, q_d, qd_d, qdd_d. scale: position, velocity, acceleration
    normalisers (3n). u blocks: q_d, qd_d, qdd_d (normalised), sin q_d,
    cos q_d, tanh(qd_d / (FRICTION_BAND scale)) -- gravity- and friction-like
    terms a readout cannot build well from smooth features -- then the
    measured q, qd (normalised).
    """
    n = io.shape[1]
    for j in range(n):
        q, qd, q_d, qd_d, qdd_d = io[0, j], io[1, j], io[2, j], io[3, j], io[4, j]
        pd[j] = kp[j] * (q_d - q) + kd[j] * (qd_d - qd)
        u[j] = q_d / scale[j]
        u[n + j] = qd_d / scale[n + j]
        u[2 * n + j] = qdd_d / scale[2 * n + j]
        u[3 * n + j] = np.sin(q_d)
        u[4 * n + j] = np.cos(q_d)
        u[5 * n + j] = np.tanh(qd_d / (FRICTION_BAND * scale[n + j]))
        u[6 * n + j] = q / scale[j]
        u[7 * n + j] = qd / scale[n + j]


# Layout of the supervisor's statistics vector (see supervisor.py).
SV_PD = 0       # EWMA of |u_pd / kp|^2: the error left with the feedforward
SV_TOTAL = 1    # EWMA of |u / kp|^2, u the applied command: the error PD alone would leave
SV_PUSH = 2     # EWMA of the fraction of ticks the feedforward drives a saturation
SV_RHO = 3      # the estimated error ratio to PD alone (the larger of the two below)
SV_MAX = 4      # largest SV_RHO since the supervisor last cleared it
SV_PD_LOW = 5   # SV_PD and SV_TOTAL of the low-passed efforts
SV_TOTAL_LOW = 6
SV_SIZE = 7


@njit(cache=True)
def supervisor_stats(pd, ff, command, limit, inv_kp, beta, lp, ff_at_bound, alpha, trip,
                     push_trip, warm, st):
    """Update the supervisor's EWMAs; True when learning looks harmful (``warm``
    and rho > ``trip`` or the push fraction > ``push_trip``).

    rho is the larger of two estimates: from the efforts as they are (quick)
    and from the efforts low-passed per joint (``lp`` (2, n) holds the filter
    states, ``beta`` the coefficients): effort above the closed loop's
    bandwidth does not move the plant, and a feedforward chattering there
    would otherwise inflate the denominator and hide the damage. A tick
    'pushes' when the feedforward is at its bound, or a joint's command is at
    its limit with the feedforward (more than a quarter of the limit) pushing
    the same way."""
    a = 0.0
    b = 0.0
    a_low = 0.0
    b_low = 0.0
    push = ff_at_bound
    for j in range(pd.shape[0]):
        e = pd[j] * inv_kp[j]
        t = command[j] * inv_kp[j]
        a += e * e
        b += t * t
        lp[0, j] += beta[j] * (e - lp[0, j])
        lp[1, j] += beta[j] * (t - lp[1, j])
        a_low += lp[0, j] * lp[0, j]
        b_low += lp[1, j] * lp[1, j]
        if abs(command[j]) >= limit[j] and ff[j] * command[j] > 0.25 * limit[j] * limit[j]:
            push = 1.0
    st[SV_PD] += alpha * (a - st[SV_PD])
    st[SV_TOTAL] += alpha * (b - st[SV_TOTAL])
    st[SV_PD_LOW] += alpha * (a_low - st[SV_PD_LOW])
    st[SV_TOTAL_LOW] += alpha * (b_low - st[SV_TOTAL_LOW])
    # pushing into saturation does damage fast: a four times shorter average
    st[SV_PUSH] += min(1.0, 4.0 * alpha) * (push - st[SV_PUSH])
    rho = np.sqrt(st[SV_PD] / st[SV_TOTAL]) if st[SV_TOTAL] > 0.0 else 1.0
    if st[SV_TOTAL_LOW] > 0.0:
        rho = max(rho, np.sqrt(st[SV_PD_LOW] / st[SV_TOTAL_LOW]))
    st[SV_RHO] = rho
    if rho > st[SV_MAX]:
        st[SV_MAX] = rho
    return warm and (rho > trip or st[SV_PUSH] > push_trip)


# Layout of the change detector's state vector (see change_detector.py).
CD_SHORT = 0    # EWMA of |e / kp|^2 over the short window
CD_BASE = 1     # the typical level: an upper quantile of log(CD_SHORT), recently
CD_CUSUM = 2    # the CUSUM statistic [s]
CD_TICKS = 3    # ticks observed since the last (re)start
CD_WEIGHT = 4   # weight of the next histogram entry (grows instead of decaying the rest)
CD_TOTAL = 5    # total weight in the histogram
CD_TOP = 6      # highest histogram bin filled since the last (re)start
CD_SIZE = 7
# The histogram of log(CD_SHORT) the typical level is read from.
CD_LOG_LOW, CD_LOG_HIGH, CD_BINS = -46.0, 18.0, 256


@njit(cache=True)
def change_cusum(err, inv_kp, a_short, a_hist, warm_ticks, quantile, log_excess, dt,
                 threshold, st, hist):
    """One tick of the plant-change detector; True when it fires.

    l = log(short-term power of err / kp). Its typical level b is the
    ``quantile`` of an exponentially weighted histogram of l (``a_hist`` per
    tick, so it follows the last few seconds up and down alike), so the bursts
    of a steady error at the hard parts of a reference sit below it. Page's
    CUSUM g <- max(0, g + (l - b - log_excess) dt) fires when g exceeds
    ``threshold``. No test during the first ``warm_ticks``; afterwards the
    histogram learns only while g = 0, so a change cannot raise b before it is
    detected. Firing starts a new warm-up: the re-learning a detection
    triggers is a transient of its own, not another change. A non-finite
    error is ignored. The histogram's decay is folded into a growing entry
    weight, and the quantile is read from the top, so a tick costs a few
    bins, not all of them.
    """
    x = 0.0
    for j in range(err.shape[0]):
        e = err[j] * inv_kp[j]
        x += e * e
    if not np.isfinite(x):
        return False
    ticks = st[CD_TICKS] + 1.0
    st[CD_TICKS] = ticks
    if ticks == 1.0:
        st[CD_SHORT] = x
        st[CD_CUSUM] = 0.0
        st[CD_WEIGHT] = 1.0
        st[CD_TOTAL] = 0.0
        st[CD_TOP] = 0.0
        for k in range(hist.shape[0]):
            hist[k] = 0.0
    else:
        st[CD_SHORT] += a_short * (x - st[CD_SHORT])
    level = np.log(st[CD_SHORT] + 1e-300)
    width = (CD_LOG_HIGH - CD_LOG_LOW) / hist.shape[0]
    if ticks > warm_ticks:
        tail = (1.0 - quantile) * st[CD_TOTAL]      # the weight above the quantile
        acc = 0.0
        base = CD_LOG_LOW
        for k in range(int(st[CD_TOP]), -1, -1):
            if acc + hist[k] >= tail and hist[k] > 0.0:
                base = CD_LOG_LOW + (k + 1.0 - (tail - acc) / hist[k]) * width
                break
            acc += hist[k]
        st[CD_BASE] = base
        g = st[CD_CUSUM] + (level - base - log_excess) * dt
        if g > threshold:
            st[CD_CUSUM] = 0.0
            st[CD_TICKS] = 0.0
            return True
        if g > 0.0:
            st[CD_CUSUM] = g
            return False
        st[CD_CUSUM] = 0.0
    k = int((min(max(level, CD_LOG_LOW), CD_LOG_HIGH - 1e-9) - CD_LOG_LOW) / width)
    w = st[CD_WEIGHT]
    hist[k] += w
    st[CD_TOTAL] += w
    if k > st[CD_TOP]:
        st[CD_TOP] = k
    w /= 1.0 - a_hist
    if w > 1e200:                                 # renormalise before overflow
        for i in range(hist.shape[0]):
            hist[i] /= w
        st[CD_TOTAL] /= w
        w = 1.0
    st[CD_WEIGHT] = w
    return False


@njit(cache=True)
def track_scales(io, envelope, scale, before, floor, headroom):
    """Automatic input normalisation: per joint, the running peak of |q_d|, |qd_d|
    and |qdd_d| (io rows 2..4) in ``envelope`` (3n); where a peak outgrows its
    scale the scale becomes headroom x the peak (so each change is at least
    ``headroom``-fold). Scales start at ``floor`` and only grow, so they settle
    once the reference has shown its range. ``before`` receives the scales as
    they were. Returns how many scales changed (the caller then rescales the
    readouts)."""
    n = io.shape[1]
    changed = 0
    for k in range(3):
        for j in range(n):
            v = abs(io[2 + k, j])
            i = k * n + j
            before[i] = scale[i]
            if v > envelope[i]:
                envelope[i] = v
                if v > scale[i]:
                    scale[i] = max(floor[i], headroom * v)
                    changed += 1
    return changed


@njit(cache=True)
def bounded_command(pd, ff, ff_limit, limit, out):
    """ff <- clip(ff, +-ff_limit); out = clip(pd + ff, +-limit).

    Returns 1 when the feedforward was clipped plus 2 when the command was."""
    code = 0
    for j in range(out.shape[0]):
        f = ff[j]
        if f > ff_limit[j] or f < -ff_limit[j]:
            f = min(max(f, -ff_limit[j]), ff_limit[j])
            ff[j] = f
            code |= 1
        v = pd[j] + f
        if v > limit[j] or v < -limit[j]:
            v = min(max(v, -limit[j]), limit[j])
            code |= 2
        out[j] = v
    return code


@njit(cache=True)
def readout(w, phi, out):
    """out = w.T @ phi for w of shape (n_features, n_outputs)."""
    n, m = w.shape
    for k in range(m):
        out[k] = 0.0
    for i in range(n):
        p = phi[i]
        for k in range(m):
            out[k] += w[i, k] * p


@njit(cache=True, fastmath=_FAST)
def rls_update(p, w, phi, err, g, y, st):
    """One RLS step with the a-priori error ``err`` = target - w.T @ phi.

    Applies the pending update P <- s (P - a g g^T) while computing y = P phi
    in the same pass over the upper triangle, then updates w and leaves the
    next covariance update pending in (g, st):
    exponential forgetting: P_t = (P - y y^T / c) / lambda, c = lambda + r,
    trace-capped; directional forgetting (Kulhavy, forgetting only along phi
    and never more than phi adds, so P never grows): with r = phi.T P phi,
    P_t = P - y y^T (r - 1 + lambda) / (r c) when r > 1 - lambda, else P.
    Returns the a-posteriori error factor (err after / err before), or -1.0
    without touching w when the step is numerically unusable.
    """
    n = phi.shape[0]
    a = st[ST_PENDING_GAIN]
    s = st[ST_PENDING_SCALE]
    lam = st[ST_LAMBDA]
    for i in range(n):
        y[i] = 0.0
    tr = 0.0
    for i in range(n):
        gi = a * g[i]
        pi = phi[i]
        # Row i from the diagonal on, as slices indexed from 0: numba then
        # drops its negative-index checks and LLVM vectorises the loop (5x).
        row, gr, xr, yr = p[i, i:], g[i:], phi[i:], y[i:]
        acc = 0.0
        for j in range(row.shape[0]):
            q = s * (row[j] - gi * gr[j])
            row[j] = q
            acc += q * xr[j]
            yr[j] += q * pi
        # j = 0 is the diagonal: it belongs to acc once, not also to yr[0].
        y[i] += acc - row[0] * pi
        tr += row[0]
    st[ST_PENDING_GAIN] = 0.0
    st[ST_PENDING_SCALE] = 1.0
    st[ST_TRACE] = tr
    r = 0.0
    yy = 0.0
    for i in range(n):
        r += phi[i] * y[i]
        yy += y[i] * y[i]
    if not (np.isfinite(r) and r >= 0.0 and np.isfinite(yy)):
        return -1.0
    directional = st[ST_DIRECTIONAL] != 0.0
    if directional:
        c = lam + r if r > 1.0 - lam else 1.0
    else:
        c = lam + r
    inv = 1.0 / c
    m = err.shape[0]
    for i in range(n):
        k = y[i] * inv
        for o in range(m):
            w[i, o] += k * err[o]
    if directional:
        gain = (r - 1.0 + lam) / (r * c) if r > 1.0 - lam else 0.0
        scale = 1.0
        tr_new = tr - yy * gain
        post = lam * inv if r > 1.0 - lam else 1.0 - r
    else:
        gain = inv
        scale = 1.0 / lam
        tr_new = (tr - yy * inv) * scale
        cap = st[ST_TRACE_CAP]
        if tr_new > cap:
            scale *= cap / tr_new
            tr_new = cap
        post = lam * inv
    for i in range(n):
        g[i] = y[i]
    st[ST_PENDING_GAIN] = gain
    st[ST_PENDING_SCALE] = scale
    st[ST_TRACE] = tr_new
    return post


@njit(cache=True)
def rls_flush(p, g, st):
    """Apply the pending update and mirror the upper triangle into the lower."""
    n = p.shape[0]
    a = st[ST_PENDING_GAIN]
    s = st[ST_PENDING_SCALE]
    for i in range(n):
        gi = a * g[i]
        row, gr = p[i, i:], g[i:]
        for j in range(row.shape[0]):
            row[j] = s * (row[j] - gi * gr[j])
    for i in range(n):
        for j in range(i + 1, n):
            p[j, i] = p[i, j]
    st[ST_PENDING_GAIN] = 0.0
    st[ST_PENDING_SCALE] = 1.0


@njit(cache=True)
def spectral_radius_estimate(indptr, indices, data, v, tmp, iterations):
    """|largest eigenvalue| of a sparse matrix by power iteration on norms.

    Averages the log growth over the second half of the iterations, which
    converges for complex dominant eigenvalue pairs too.
    """
    total = 0.0
    count = 0
    for it in range(iterations):
        csr_matvec(indptr, indices, data, v, tmp)
        norm = 0.0
        for i in range(tmp.shape[0]):
            norm += tmp[i] * tmp[i]
        norm = np.sqrt(norm)
        if norm == 0.0:
            return 0.0
        for i in range(v.shape[0]):
            v[i] = tmp[i] / norm
        if it >= iterations // 2:
            total += np.log(norm)
            count += 1
    return np.exp(total / count)

"""
Numba kernels of the learning core: reservoir steps and the RLS update.

Every kernel writes into arrays the caller preallocated, so a control tick
allocates nothing (the controller's own per-tick kernels are in
``control_kernels.py``). ``kernels_numpy.py`` holds the plain numpy versions the tests
compare these against.

The RLS update is fused: the rank-1 covariance update of step t is kept
pending and applied during step t+1's pass over P, which also computes
P @ phi. One read and one write of the upper triangle of P per step is the
whole memory traffic, half of what a full-matrix pass would move; rows go in
blocks of four (``_rls_pass``), and P is kept as a scale times the stored array
so the forgetting factor costs no multiply per element (``_apply_pending``).
"""
from __future__ import annotations

import math

from numba import njit
import numpy as np

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
ST_SCALE = 6           # P = ST_SCALE x the stored array (see _apply_pending)
ST_GAIN_CAP = 7        # largest fraction of the error one step may absorb (0: no cap)
ST_SIZE = 8


@njit(cache=True)
def all_finite(a):
    """Return True when every entry of the 1-D array ``a`` is finite (no temporaries)."""
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
    """
    Compute out = bias + w_in @ u + W @ x, the net input of every neuron.

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


# tanh by exp(2|x|) = 2^k exp(r), |r| <= ln2 / 2 (Cody-Waite), exp(r) by its Taylor series
# to r^13, and the rational approximation of Cephes' tanh below |x| = 0.625: within 2 ulp of
# libm's tanh (as numpy's own tanh is), and branch-free, so LLVM vectorises it (libm's is a
# call per neuron: half the esn step at N=300).
_LN2_HI, _LN2_LO, _LOG2E = 6.93147180369123816490e-01, 1.90821492927058770002e-10, 1.0 / np.log(2)
_E = tuple(1.0 / math.factorial(k) for k in range(14))
_TP = (-9.64399179425052238628e-1, -9.92877231001918586564e1, -1.61468768441708447952e3)
_TQ = (1.12811678491632931402e2, 2.23548839060100448583e3, 4.84406305325125486048e3)
_EXACT = {'contract'}     # fused multiply-add only: never less exact


@njit(inline='always', fastmath=_EXACT, error_model='numpy')
def _tanh(x):
    ax = abs(x)
    z = x * x
    two = 2.0 * min(ax, 20.0)      # tanh(20) is 1.0 in float64
    k = np.floor(two * _LOG2E + 0.5)
    r = (two - k * _LN2_HI) - k * _LN2_LO
    e = _E[13]
    for c in (_E[12], _E[11], _E[10], _E[9], _E[8], _E[7], _E[6], _E[5], _E[4], _E[3],
              _E[2], _E[1], _E[0]):
        e = e * r + c
    for b in (32.0, 16.0, 8.0, 4.0, 2.0, 1.0):   # e *= 2^k, k <= 58, exact
        take = k >= b
        e = e * 2.0 ** b if take else e
        k = k - b if take else k
    small = ax < 0.625
    num = z * ((_TP[0] * z + _TP[1]) * z + _TP[2]) if small else 2.0
    den = ((z + _TQ[0]) * z + _TQ[1]) * z + _TQ[2] if small else e + 1.0
    d = num / den
    t = x * (1.0 + d) if small else (1.0 - d if x >= 0.0 else d - 1.0)
    return t if ax == ax else x      # NaN stays NaN


@njit(cache=True, fastmath=_EXACT, error_model='numpy')
def esn_step(x, u, w_in, indptr, indices, data, bias, leak, scratch):
    """Leaky-tanh echo state update: x <- (1-a) x + a tanh(W_in u + W x + b)."""
    _drive(w_in, u, indptr, indices, data, x, bias, scratch)
    for i in range(x.shape[0]):
        x[i] = (1.0 - leak) * x[i] + leak * _tanh(scratch[i])


@njit(cache=True)
def ltc_step(x, u, w_in, indptr, indices, data, bias, tau, rev, dt, unfolds, scratch):
    """
    Liquid time-constant neurons, fused semi-implicit solver (Hasani et al. 2021).

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
    """
    Leaky integrate-and-fire neurons; the readout sees filtered spike traces.

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


@njit(cache=True, fastmath=_FAST)
def readout(w, x, bias, out):
    """
    Compute out = w.T @ [1, x] (``bias``) or w.T @ x, w of shape (n_features, n_outputs).

    Four rows per pass keep the running sums out of one long dependency chain.
    """
    n, m = w.shape
    off = 1 if bias else 0
    for k in range(m):
        out[k] = w[0, k] if bias else 0.0
    nb = off + (n - off) // 4 * 4
    for i in range(off, nb, 4):
        x0, x1, x2, x3 = x[i - off], x[i + 1 - off], x[i + 2 - off], x[i + 3 - off]
        w0, w1, w2, w3 = w[i], w[i + 1], w[i + 2], w[i + 3]
        for k in range(m):
            out[k] += (w0[k] * x0 + w1[k] * x1) + (w2[k] * x2 + w3[k] * x3)
    for i in range(nb, n):
        xi = x[i - off]
        for k in range(m):
            out[k] += w[i, k] * xi


@njit(cache=True, fastmath=_FAST)
def _rls_pass(p, phi, g, y, a, s):
    """
    Apply P <- s (P - a g g^T) to the upper triangle and compute y = P phi; return trace(P).

    ``s`` None skips the scaling (no multiply in the inner loop). Rows go in blocks of
    four: each element of P is loaded and stored once, y[j] once per block (not per
    row), and the loops are slices indexed from 0, which numba compiles without
    negative-index checks and LLVM vectorises.
    """
    n = phi.shape[0]
    for i in range(n):
        y[i] = 0.0
    tr = 0.0
    nb = n // 4 * 4
    for i0 in range(0, nb, 4):
        tr = _triangle_block(p, g, phi, y, a, s, i0, i0 + 4, tr)   # the 4 x 4 diagonal block
        j0 = i0 + 4
        r0, r1, r2, r3 = p[i0, j0:], p[i0 + 1, j0:], p[i0 + 2, j0:], p[i0 + 3, j0:]
        gs, xs, ys = g[j0:], phi[j0:], y[j0:]
        g0, g1, g2, g3 = a * g[i0], a * g[i0 + 1], a * g[i0 + 2], a * g[i0 + 3]
        x0, x1, x2, x3 = phi[i0], phi[i0 + 1], phi[i0 + 2], phi[i0 + 3]
        a0 = a1 = a2 = a3 = 0.0
        for j in range(gs.shape[0]):
            gj, xj = gs[j], xs[j]
            q0, q1, q2, q3 = r0[j] - g0 * gj, r1[j] - g1 * gj, r2[j] - g2 * gj, r3[j] - g3 * gj
            if s is not None:
                q0, q1, q2, q3 = q0 * s, q1 * s, q2 * s, q3 * s
            r0[j], r1[j], r2[j], r3[j] = q0, q1, q2, q3
            a0 += q0 * xj
            a1 += q1 * xj
            a2 += q2 * xj
            a3 += q3 * xj
            ys[j] += (q0 * x0 + q1 * x1) + (q2 * x2 + q3 * x3)
        y[i0] += a0
        y[i0 + 1] += a1
        y[i0 + 2] += a2
        y[i0 + 3] += a3
    return _triangle_block(p, g, phi, y, a, s, nb, n, tr)   # the last n % 4 rows


@njit(cache=True, inline='always')
def _triangle_block(p, g, phi, y, a, s, lo, hi, tr):
    """Run the pass over the upper triangle of the block [lo, hi)^2; return tr + its trace."""
    for r in range(lo, hi):
        gr, xr = a * g[r], phi[r]
        for j in range(r, hi):
            q = p[r, j] - gr * g[j]
            if s is not None:
                q *= s
            p[r, j] = q
            y[r] += q * phi[j]
            if j == r:
                tr += q
            else:
                y[j] += q * xr
    return tr


@njit(cache=True)
def _apply_pending(p, phi, g, y, st):
    """
    Apply the pending update during the pass computing y = P phi; return trace(P).

    P = S Q with Q stored and the scale S in ``st``: the pending P <- s (P - a g g^T) is
    Q <- Q - (a / S) g g^T, S <- s S, which needs no multiply per element. When S leaves
    [2^-32, 2^32] the pass folds it into Q (S back to 1) so Q never under- or overflows.
    """
    a, s, scale = st[ST_PENDING_GAIN], st[ST_PENDING_SCALE], st[ST_SCALE]
    scale_new = s * scale
    if 2.0 ** -32 < scale_new < 2.0 ** 32:
        tr = _rls_pass(p, phi, g, y, a / scale, None)
    else:
        tr = _rls_pass(p, phi, g, y, a / scale, scale_new)
        scale_new = 1.0
    st[ST_SCALE] = scale_new
    st[ST_PENDING_GAIN] = 0.0
    st[ST_PENDING_SCALE] = 1.0
    if scale_new != 1.0:
        for i in range(y.shape[0]):
            y[i] *= scale_new
    return tr * scale_new


@njit(cache=True, fastmath=_FAST)
def rls_update(p, w, phi, err, g, y, st):
    """
    One RLS step with the a-priori error ``err`` = target - w.T @ phi.

    Applies the pending update while computing y = P phi in the same pass over the
    upper triangle (``_apply_pending``), then updates w and leaves the next covariance
    update pending in (g, st):
    exponential forgetting: P_t = (P - y y^T / c) / lambda, c = lambda + r,
    trace-capped; directional forgetting (Kulhavy, forgetting only along phi
    and never more than phi adds, so P never grows): with r = phi.T P phi,
    P_t = P - y y^T (r - 1 + lambda) / (r c) when r > 1 - lambda, else P.
    A gain cap (``st[ST_GAIN_CAP]`` > 0) raises c to r / cap where the step would
    absorb more than that fraction of the error: the sample is weighted down, as if
    noisier, and P shrinks by as much less (a weighted RLS step, so P stays consistent).
    Returns the a-posteriori error factor (err after / err before), or -1.0
    without touching w when the step is numerically unusable.
    """
    n = phi.shape[0]
    lam = st[ST_LAMBDA]
    tr = _apply_pending(p, phi, g, y, st)
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
    cap = st[ST_GAIN_CAP]
    capped = cap > 0.0 and r > cap * c
    if capped:      # the sample counts less (as if noisier): it absorbs cap of the error
        c = r / cap
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
        if capped:
            post = 1.0 - r * inv
    else:
        gain = inv
        scale = 1.0 / lam
        tr_new = (tr - yy * inv) * scale
        if tr_new > st[ST_TRACE_CAP]:
            scale *= st[ST_TRACE_CAP] / tr_new
            tr_new = st[ST_TRACE_CAP]
        post = 1.0 - r * inv if capped else lam * inv
    for i in range(n):
        g[i] = y[i]
    st[ST_PENDING_GAIN] = gain
    st[ST_PENDING_SCALE] = scale
    st[ST_TRACE] = tr_new
    return post


@njit(cache=True)
def rls_step(p, w, x, bias, err, phi, g, y, st):
    """
    ``rls_update`` on the features [1, x] (``bias``) or x, loaded into ``phi``: one call.

    Returns -2.0, with nothing changed, when x or err holds a non-finite value.
    """
    off = 1 if bias else 0
    if bias:
        phi[0] = 1.0
    for i in range(x.shape[0]):
        phi[i + off] = x[i]
    if not (all_finite(x) and all_finite(err)):
        return -2.0
    return rls_update(p, w, phi, err, g, y, st)


@njit(cache=True)
def rls_train(p, w, x, bias, target, err, phi, g, y, st, out):
    """
    Take ``rls_step`` with the a-priori error ``target`` - w.T [1, x]; copy it to ``out``.

    The error is computed in the scratch ``err`` and copied last, so ``out`` may be any
    float64 array, even ``target`` or ``x``. (A supervised step, as a time-series readout
    learns; a controller, which sends its command between the prediction and the update,
    calls ``readout`` and ``rls_step``.)
    """
    readout(w, x, bias, err)
    for k in range(err.shape[0]):
        err[k] = target[k] - err[k]
    post = rls_step(p, w, x, bias, err, phi, g, y, st)
    for k in range(err.shape[0]):
        out[k] = err[k]
    return post


@njit(cache=True)
def rls_restart(p, g, st, d):
    """Set P = d I, trace cap d n, nothing pending (the weights are the caller's)."""
    n = p.shape[0]
    for i in range(n):
        g[i] = 0.0
        for j in range(n):
            p[i, j] = d if i == j else 0.0
    st[ST_PENDING_GAIN], st[ST_PENDING_SCALE], st[ST_SCALE] = 0.0, 1.0, 1.0
    st[ST_TRACE] = st[ST_TRACE_CAP] = d * n


@njit(cache=True)
def rls_flush(p, g, st):
    """Apply the pending update and the scale; mirror the upper triangle into the lower."""
    n = p.shape[0]
    a = st[ST_PENDING_GAIN] / st[ST_SCALE]
    s = st[ST_PENDING_SCALE] * st[ST_SCALE]
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
    st[ST_SCALE] = 1.0


@njit(cache=True)
def spectral_radius_estimate(indptr, indices, data, v, tmp, iterations):
    """|largest eigenvalue| by power iteration (mean log growth over the second half)."""
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

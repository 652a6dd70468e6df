"""
Numba kernels of the learning core: reservoir steps and the RLS update.

Every kernel writes into arrays the caller preallocated, so a control tick
allocates nothing (the controller's own per-tick kernels are in
``control_kernels.py``). ``kernels_numpy.py`` holds the plain numpy versions the tests
compare these against.

The RLS update is fused: the rank-1 covariance update of step t is kept
pending and applied during step t+1's pass over P, which also computes
P @ phi. One read and one write of the upper triangle of P per step is the
whole memory traffic, half of what a full-matrix pass would move.
"""
from __future__ import annotations

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
ST_SIZE = 6


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


@njit(cache=True)
def esn_step(x, u, w_in, indptr, indices, data, bias, leak, scratch):
    """Leaky-tanh echo state update: x <- (1-a) x + a tanh(W_in u + W x + b)."""
    _drive(w_in, u, indptr, indices, data, x, bias, scratch)
    for i in range(x.shape[0]):
        x[i] = (1.0 - leak) * x[i] + leak * np.tanh(scratch[i])


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


@njit(cache=True)
def readout(w, phi, out):
    """Compute out = w.T @ phi for w of shape (n_features, n_outputs)."""
    n, m = w.shape
    for k in range(m):
        out[k] = 0.0
    for i in range(n):
        p = phi[i]
        for k in range(m):
            out[k] += w[i, k] * p


@njit(cache=True, fastmath=_FAST)
def rls_update(p, w, phi, err, g, y, st):
    """
    One RLS step with the a-priori error ``err`` = target - w.T @ phi.

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
    """
    |largest eigenvalue| of a sparse matrix by power iteration on norms.

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

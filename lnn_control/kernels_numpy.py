"""
Plain numpy twins of the Numba kernels (``kernels.py``).

Reservoir steps, the RLS update and the change detector, written the textbook way (dense
matrices, full covariance update) so the tests can check the fused, allocation-free kernels
against them. Not used on the control path; the naive baseline in ``benchmarks/`` is this
code.
"""
from __future__ import annotations

import numpy as np


def esn_step(x, u, w_in, w, bias, leak):
    return (1.0 - leak) * x + leak * np.tanh(bias + w_in @ u + w @ x)


def ltc_step(x, u, w_in, w, bias, tau, rev, dt, unfolds):
    h = dt / unfolds
    for _ in range(unfolds):
        f = 1.0 / (1.0 + np.exp(-(bias + w_in @ u + w @ x)))
        x = (x + h * f * rev) / (1.0 + h * (1.0 / tau + f))
    return x


def lif_step(trace, v, refractory, spikes, u, w_in, w, bias, dt, substeps, tau_m,
             t_ref, tau_trace):
    """Return new (trace, v, refractory, spikes)."""
    h = dt / substeps
    decay = np.exp(-h / tau_trace)
    trace, v, refractory, spikes = (a.copy() for a in (trace, v, refractory, spikes))
    for _ in range(substeps):
        current = bias + w_in @ u + w @ spikes
        active = refractory <= 0.0
        refractory = np.where(active, refractory, refractory - h)
        v = np.where(active, v + h / tau_m * (current - v), v)
        spikes = (active & (v >= 1.0)).astype(float)
        v = np.where(spikes > 0, 0.0, v)
        refractory = np.where(spikes > 0, t_ref, refractory)
        trace = trace * decay + spikes
    return trace, v, refractory, spikes


class RLS:
    """
    Textbook exponentially weighted RLS with a trace cap on P.

    ``gain_cap`` > 0 weights a sample down so that one step absorbs at most that
    fraction of its error: the denominator lambda + r becomes r / gain_cap.
    """

    def __init__(self, n_features, n_outputs, delta, lam, trace_cap=None, gain_cap=0.0):
        self.p = np.eye(n_features) * delta
        self.w = np.zeros((n_features, n_outputs))
        self.lam = lam
        self.trace_cap = delta * n_features if trace_cap is None else trace_cap
        self.gain_cap = gain_cap

    def update(self, phi, target):
        err = target - self.w.T @ phi
        pphi = self.p @ phi
        r = phi @ pphi
        den = self.lam + r
        if self.gain_cap > 0 and r > self.gain_cap * den:
            den = r / self.gain_cap
        k = pphi / den
        self.w += np.outer(k, err)
        self.p = (self.p - np.outer(k, pphi)) / self.lam
        tr = np.trace(self.p)
        if tr > self.trace_cap:
            self.p *= self.trace_cap / tr
        return err


class ChangeCusum:
    """
    Page's CUSUM on the log short-term error power, written out plainly.

    The power is tested against an upper quantile of its recent history (see
    ``control_kernels.change_cusum`` and ``change_detector``).
    """

    def __init__(self, dt, short_s, history_s, warm_s, quantile, excess, threshold,
                 low=-46.0, high=18.0, bins=256):
        self.dt, self.threshold, self.quantile = dt, threshold, quantile
        self.a_short, self.a_hist = min(1.0, dt / short_s), min(1.0, dt / history_s)
        self.warm = round(warm_s / dt)
        self.log_excess = np.log(excess)
        self.edges = np.linspace(low, high, bins + 1)
        self.hist = np.zeros(bins)
        self.ticks, self.power, self.base, self.g = 0, 0.0, 0.0, 0.0

    def update(self, err, inv_kp):
        x = float(np.sum((err * inv_kp) ** 2))
        if not np.isfinite(x):
            return False
        self.ticks += 1
        if self.ticks == 1:
            self.power, self.g = x, 0.0
            self.hist[:] = 0.0
        else:
            self.power += self.a_short * (x - self.power)
        level = np.log(self.power + 1e-300)
        if self.ticks > self.warm:
            cum = np.cumsum(self.hist)
            k = int(np.searchsorted(cum, self.quantile * cum[-1]))
            below = cum[k - 1] if k > 0 else 0.0
            self.base = (self.edges[k] + (self.quantile * cum[-1] - below) / self.hist[k]
                         * (self.edges[1] - self.edges[0]))
            self.g = self.g + (level - self.base - self.log_excess) * self.dt
            if self.g > self.threshold:
                self.g, self.ticks = 0.0, 0     # a new warm-up
                return True
            if self.g > 0.0:
                return False
            self.g = 0.0
        self.hist *= 1.0 - self.a_hist
        bin_ = np.clip(np.searchsorted(self.edges, level, side='right') - 1, 0, self.hist.size - 1)
        self.hist[bin_] += self.a_hist
        return False

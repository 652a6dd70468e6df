"""Plain numpy reference of the reservoir steps and the RLS update.

Written the textbook way (dense matrices, full covariance update) so the tests
can check the fused, allocation-free Numba kernels against it. Not used on the
control path; the naive baseline in ``benchmarks/`` is this code.
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
    """Returns new (trace, v, refractory, spikes)."""
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
    """Textbook exponentially weighted RLS with a trace cap on P."""

    def __init__(self, n_features, n_outputs, delta, lam, trace_cap=None):
        self.p = np.eye(n_features) * delta
        self.w = np.zeros((n_features, n_outputs))
        self.lam = lam
        self.trace_cap = delta * n_features if trace_cap is None else trace_cap

    def update(self, phi, target):
        err = target - self.w.T @ phi
        pphi = self.p @ phi
        k = pphi / (self.lam + phi @ pphi)
        self.w += np.outer(k, err)
        self.p = (self.p - np.outer(k, pphi)) / self.lam
        tr = np.trace(self.p)
        if tr > self.trace_cap:
            self.p *= self.trace_cap / tr
        return err

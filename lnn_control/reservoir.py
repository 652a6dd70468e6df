"""
The fixed random recurrent network that turns input history into features.

Three neuron models share one construction (sparse recurrent matrix in CSR
scaled to a spectral radius, dense input weights, biases) so they can be
swapped by one setting. Seeded: the same settings give the same reservoir.
"""
from __future__ import annotations

import numpy as np

from . import kernels as K
from . import schema

# The settings and their ranges are the schema's ``reservoir.*`` parameters.
_SETTINGS = {p.name.split('.', 1)[1]: p for p in schema.CONTROLLER
             if p.name.startswith('reservoir.')}
NEURON_MODELS = _SETTINGS['neuron_model'].choices


class Reservoir:
    """
    A reservoir of ``size`` neurons driven by ``n_inputs`` inputs.

    Settings outside the ranges of the schema's ``reservoir.*`` parameters
    raise ValueError naming each.

    ``step(u)`` advances one control tick of ``dt`` seconds and returns the
    feature vector (the state for esn/ltc, filtered spike traces for lif).
    The returned array is owned by the reservoir and overwritten each step.
    """

    def __init__(self, n_inputs: int, size: int = 300, neuron_model: str = 'esn',
                 spectral_radius: float = 0.9, leak_rate: float = 0.3,
                 input_scaling: float = 0.5, bias_scaling: float = 0.2,
                 density: float = 0.05, seed: int = 0, dt: float = 0.01,
                 ltc_unfolds: int = 6, lif_substeps: int = 5,
                 lif_trace_time_constant_s: float = 0.05):
        problems = [reason for name, value in (
                        ('size', size), ('neuron_model', neuron_model),
                        ('spectral_radius', spectral_radius), ('leak_rate', leak_rate),
                        ('input_scaling', input_scaling), ('bias_scaling', bias_scaling),
                        ('density', density), ('seed', seed), ('ltc_unfolds', ltc_unfolds),
                        ('lif_substeps', lif_substeps),
                        ('lif_trace_time_constant_s', lif_trace_time_constant_s))
                    if (reason := schema.check(_SETTINGS[name], value))]
        if n_inputs < 1:
            problems.append('a reservoir needs at least one input')
        if not dt > 0:
            problems.append(f'dt must be > 0; got {dt}')
        if problems:
            raise ValueError('; '.join(problems))
        self.n_inputs, self.size, self.neuron_model = int(n_inputs), int(size), neuron_model
        self.dt, self.leak_rate = float(dt), float(leak_rate)
        self.ltc_unfolds, self.lif_substeps = int(ltc_unfolds), int(lif_substeps)
        self.lif_trace_time_constant_s = float(lif_trace_time_constant_s)
        rng = np.random.default_rng(seed)
        n = self.size
        self.w_in = rng.uniform(-input_scaling, input_scaling, (n, self.n_inputs))
        self._u_shape = (self.n_inputs,)
        self.indptr, self.indices, self.data = _sparse_recurrent(rng, n, density, spectral_radius)
        self.bias = rng.uniform(-bias_scaling, bias_scaling, n)
        if neuron_model == 'ltc':
            self.tau = rng.uniform(0.05, 0.5, n)     # seconds: slow and fast neurons
            self.reversal = rng.choice([-1.0, 1.0], n)
        if neuron_model == 'lif':
            self.bias += 1.0                          # threshold is 1: about half fire tonically
            self.tau_m, self.t_ref = 0.02, 0.002
        self.state = np.zeros(n)
        self._v = np.zeros(n)
        self._refractory = np.zeros(n)
        self._spikes = np.zeros(n)
        self._scratch = np.zeros(n)
        self.reset()
        self.step(np.zeros(self.n_inputs))   # JIT warm-up (or cache load) now, not on a tick
        self.reset()

    def reset(self) -> None:
        for a in (self.state, self._v, self._refractory, self._spikes):
            a[:] = 0.0

    def dense_recurrent(self) -> np.ndarray:
        w = np.zeros((self.size, self.size))
        for i in range(self.size):
            w[i, self.indices[self.indptr[i]:self.indptr[i + 1]]] = \
                self.data[self.indptr[i]:self.indptr[i + 1]]
        return w

    def step(self, u: np.ndarray) -> np.ndarray:
        """Advance one control period driven by ``u`` (n_inputs); return the state."""
        if getattr(u, 'shape', None) != self._u_shape:   # the kernels would read past it
            raise ValueError(f'reservoir expects {self._u_shape[0]} inputs, got shape '
                             f'{np.shape(u)}')
        if self.neuron_model == 'esn':
            K.esn_step(self.state, u, self.w_in, self.indptr, self.indices, self.data,
                       self.bias, self.leak_rate, self._scratch)
        elif self.neuron_model == 'ltc':
            K.ltc_step(self.state, u, self.w_in, self.indptr, self.indices, self.data,
                       self.bias, self.tau, self.reversal, self.dt, self.ltc_unfolds,
                       self._scratch)
        else:
            K.lif_step(self.state, self._v, self._refractory, self._spikes, u, self.w_in,
                       self.indptr, self.indices, self.data, self.bias, self.dt,
                       self.lif_substeps, self.tau_m, self.t_ref,
                       self.lif_trace_time_constant_s, self._scratch)
        return self.state

    def feature_power(self, ticks: int) -> tuple[float, float]:
        """
        Return the mean |[1, u, x]|^2 and |[1, u]|^2 under smooth unit-scale inputs u.

        What an RLS readout's initial covariance is scaled by. Leaves the state reset.
        """
        t = np.arange(ticks) * self.dt
        freqs = np.linspace(0.2, 1.0, self.n_inputs)
        total = total_u = 0.0
        for k in range(ticks):
            u = np.sin(2 * np.pi * freqs * t[k] + freqs)
            x = self.step(u)
            if k >= ticks // 3:
                total += 1.0 + float(u @ u) + float(x @ x)
                total_u += 1.0 + float(u @ u)
        self.reset()
        count = ticks - ticks // 3
        return total / count, total_u / count

    def twin(self) -> 'Reservoir':
        """Return a reservoir with the same weights and its own state."""
        other = object.__new__(Reservoir)
        other.__dict__.update(self.__dict__)
        for name in ('state', '_v', '_refractory', '_spikes', '_scratch'):
            setattr(other, name, np.zeros(self.size))
        return other


def _sparse_recurrent(rng, n, density, spectral_radius):
    """CSR arrays of a random sparse matrix scaled to ``spectral_radius``."""
    per_row = max(1, int(round(density * n)))
    indptr = np.arange(0, n * per_row + 1, per_row, dtype=np.int64)
    indices = np.concatenate([np.sort(rng.choice(n, per_row, replace=False))
                              for _ in range(n)]).astype(np.int64)
    data = rng.standard_normal(n * per_row)
    if spectral_radius > 0:
        v = rng.standard_normal(n)
        v /= np.linalg.norm(v)
        rho = K.spectral_radius_estimate(indptr, indices, data, v, np.empty(n), 400)
        data *= spectral_radius / rho if rho > 0 else 0.0
    else:
        data[:] = 0.0
    return indptr, indices, data

"""
Linear readout trained online by recursive least squares.

Two forgetting schemes, both free of covariance windup:

- exponential (the classic lambda): with lambda < 1 and no excitation P grows
  as lambda^-t, so trace(P) is capped at its initial value (constant-trace
  RLS, Lozano-Leal & Goodwin). The cap keeps the adaptation gain bounded and
  the direction information P has gathered (a reset would lose it), and costs
  O(1) per step because the trace of the rank-1 update is known in closed form.
  Its weakness: with correlated features the capped trace drifts into the
  unexcited directions and the excited ones stop forgetting, so it suits a
  slow learner (lambda ~ 0.9999), not a fast one.
- directional (Kulhavy): information is forgotten only along the current
  feature direction and never more than the sample adds, so P never grows
  (bounded by P0 without any cap) while every excited direction keeps a
  lambda-like memory. The fast learner uses it.
"""
from __future__ import annotations

import numpy as np

from . import kernels as K
from .readout_file import load_npz, save_npz


class RLSReadout:
    """
    Multi-output readout ``y = W.T @ [1, phi]`` adapted by exponentially weighted RLS.

    P is symmetric: only its upper triangle is stored and updated (see
    ``kernels.rls_update``). ``update`` allocates nothing.
    """

    FORGETTING = ('exponential', 'directional')

    def __init__(self, n_inputs: int, n_outputs: int, forgetting_factor: float = 1.0,
                 initial_covariance: float = 1.0, bias: bool = True,
                 forgetting: str = 'exponential'):
        if forgetting not in self.FORGETTING:
            raise ValueError(f"forgetting must be one of {', '.join(self.FORGETTING)}; "
                             f'got {forgetting!r}')
        if n_inputs < 1 or n_outputs < 1:
            raise ValueError('RLSReadout needs at least one input and one output')
        self.n_inputs, self.n_outputs, self.bias = int(n_inputs), int(n_outputs), bool(bias)
        self.n_features = self.n_inputs + int(self.bias)
        self._check_positive('initial_covariance', initial_covariance)
        self.initial_covariance = float(initial_covariance)
        n = self.n_features
        self.p = np.empty((n, n))
        self.w = np.zeros((n, self.n_outputs))
        self._g = np.zeros(n)
        self._y = np.zeros(n)
        self._phi = np.zeros(n)
        self._err = np.zeros(self.n_outputs)
        self._st = np.zeros(K.ST_SIZE)
        self.frozen = False
        self.updates = 0
        self.rejected = 0
        self.forgetting = forgetting
        self._st[K.ST_DIRECTIONAL] = float(forgetting == 'directional')
        self.forgetting_factor = forgetting_factor
        self.reset()

    @staticmethod
    def _check_positive(name, value):
        if not (np.isfinite(value) and value > 0):
            raise ValueError(f'{name} must be finite and > 0; got {value}')

    @property
    def forgetting_factor(self) -> float:
        return float(self._st[K.ST_LAMBDA])

    @forgetting_factor.setter
    def forgetting_factor(self, lam: float) -> None:
        if not (np.isfinite(lam) and 0.0 < lam <= 1.0):
            raise ValueError(f'forgetting_factor must be in (0, 1]; got {lam}')
        self._st[K.ST_LAMBDA] = lam

    @property
    def gain_cap(self) -> float:
        """Largest fraction of the a-priori error one step absorbs (0: no cap; see kernels)."""
        return float(self._st[K.ST_GAIN_CAP])

    @gain_cap.setter
    def gain_cap(self, cap: float) -> None:
        if not (np.isfinite(cap) and 0.0 <= cap <= 1.0):
            raise ValueError(f'gain_cap must be in [0, 1]; got {cap}')
        self._st[K.ST_GAIN_CAP] = cap

    def reset(self, initial_covariance: float | None = None) -> None:
        """Forget everything learned: W = 0, P = delta I."""
        if initial_covariance is not None:
            self._check_positive('initial_covariance', initial_covariance)
            self.initial_covariance = float(initial_covariance)
        self.w[:] = 0.0
        K.rls_restart(self.p, self._g, self._st, self.initial_covariance)
        self.updates = 0

    def _check_features(self, phi: np.ndarray) -> None:
        if phi.shape != (self.n_inputs,):
            raise ValueError(f'readout expects {self.n_inputs} features, got shape {phi.shape}')

    def predict(self, phi: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        self._check_features(phi)
        if out is None:
            out = np.empty(self.n_outputs)
        elif out.shape != (self.n_outputs,):   # the kernel would write past its end
            raise ValueError(f'readout has {self.n_outputs} outputs, out has shape {out.shape}')
        K.readout(self.w, phi, self.bias, out)
        return out

    def update(self, phi: np.ndarray, error: np.ndarray) -> float:
        """
        Adapt with the a-priori ``error`` (target minus the prediction for ``phi``).

        Returns the a-posteriori error factor (error left after the step over
        error before it, in (0, 1]), or 1.0 when frozen. Non-finite or
        mis-shaped data raise ValueError and leave W and P untouched.
        """
        self._check_features(phi)
        if error.shape != (self.n_outputs,):
            raise ValueError(f'readout expects {self.n_outputs} errors, got shape {error.shape}')
        if self.frozen:
            post = 1.0 if K.all_finite(phi) and K.all_finite(error) else -2.0
        else:   # one kernel call: features, finiteness check, the fused RLS step
            post = K.rls_step(self.p, self.w, phi, self.bias, error, self._phi, self._g,
                              self._y, self._st)
        return self._stepped(post)

    def _stepped(self, post: float) -> float:
        """Count a step's outcome; raise ValueError when the kernel refused it."""
        if post < 0.0:
            self.rejected += 1
            if post == -2.0:
                raise ValueError('non-finite features or error refused; readout unchanged')
            raise ValueError('RLS step numerically unusable (phi.T P phi not finite and >= 0); '
                             'weights unchanged')
        if not self.frozen:
            self.updates += 1
        return post

    def train(self, phi: np.ndarray, target: np.ndarray,
              out: np.ndarray | None = None) -> np.ndarray:
        """
        Make one update towards ``target``; return the a-priori error (into ``out``).

        Prediction, error and update in one kernel call (``kernels.rls_train``); with
        ``out`` (a writeable float64 array; it may be ``target``) and a float64 ``target``
        nothing is allocated. Refusals as ``update``; ``out`` then holds the refused error.
        """
        self._check_features(phi)
        target = np.asarray(target, dtype=float)
        if target.shape != (self.n_outputs,):
            raise ValueError(f'readout expects {self.n_outputs} targets, got shape {target.shape}')
        if out is None:
            out = np.empty(self.n_outputs)
        elif out.shape != (self.n_outputs,):   # the kernel would write past its end
            raise ValueError(f'readout has {self.n_outputs} outputs, out has shape {out.shape}')
        elif out.dtype != np.float64 or not out.flags.writeable:
            raise ValueError(f'out must be a writeable float64 array, got {out.dtype}'
                             f'{"" if out.flags.writeable else " (read-only)"}')
        if self.frozen:     # (no step: update's finiteness check and counting)
            self.predict(phi, self._err)
            np.subtract(target, self._err, out=self._err)
            out[:] = self._err
            self.update(phi, self._err)
        else:
            self._stepped(K.rls_train(self.p, self.w, phi, self.bias, target, self._err,
                                      self._phi, self._g, self._y, self._st, out))
        return out

    def restart_covariance(self, gain_scale: float = 1.0) -> None:
        """
        Reset P to ``gain_scale`` x its initial value (and the trace cap with it).

        The weights are kept: learning goes on from what was learned, with fresh (or cut)
        adaptation gain. O(n^2); for interventions, never per tick.
        """
        self._check_positive('gain_scale', gain_scale)
        keep, updates = self.w.copy(), self.updates
        self.reset()
        self.w[:] = keep
        self.updates = updates
        if gain_scale != 1.0:
            self.p *= gain_scale
            self._st[K.ST_TRACE] *= gain_scale
            self._st[K.ST_TRACE_CAP] *= gain_scale

    def rescale_inputs(self, factors: np.ndarray, gain_scale: float = 1.0) -> None:
        """
        Adapt to rescaled inputs: keep every prediction the same and restart P.

        Input i is now divided by ``factors[i]`` times what it was divided by: keep every
        prediction the same (w_i *= f_i) and restart P at ``gain_scale`` x its initial
        value. What P had gathered was gathered on inputs of another scale (and on reservoir
        states those inputs drove); carrying it over exactly (D P D) multiplies the gain
        along a grown input by f^2, which destabilised 2-link arms, and keeping it unchanged
        left learning slow. Used when automatic normalisation changes a scale: a few times
        while the reference first shows its range, never per tick.
        """
        self.w[int(self.bias):] *= np.asarray(factors, dtype=float)[:, None]
        self.restart_covariance(gain_scale)

    @property
    def trace(self) -> float:
        return float(self._st[K.ST_TRACE])

    def covariance(self, out: np.ndarray | None = None) -> np.ndarray:
        """Return the full symmetric P (applies the pending update first), a copy or ``out``."""
        K.rls_flush(self.p, self._g, self._st)
        if out is None:
            return self.p.copy()
        np.copyto(out, self.p)
        return out

    def state_dict(self, p_out: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Copy the readout (P into ``p_out`` if given: ``covariance``) for ``load_state_dict``."""
        return {'w': self.w.copy(), 'p': self.covariance(p_out),
                'forgetting_factor': np.float64(self.forgetting_factor),
                'initial_covariance': np.float64(self.initial_covariance),
                'trace_cap': np.float64(self._st[K.ST_TRACE_CAP]),
                'directional': np.float64(self._st[K.ST_DIRECTIONAL]),
                'shape': np.array([self.n_inputs, self.n_outputs, int(self.bias)])}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """
        Restore a readout.

        Everything is checked before anything is changed, so a file of another shape or with
        bad values leaves this one intact.
        """
        self.restore(self.checked_state(state))

    def checked_state(self, state: dict[str, np.ndarray]) -> dict:
        """
        Check a saved state against this readout; return it as ``restore`` takes it.

        Raises ValueError. Changes nothing and reads only what construction fixed (shapes,
        forgetting scheme), so it may run off the control thread: for N=2000 the checks of
        the 32 MB covariance take tens of ms.
        """
        try:
            shape = tuple(int(v) for v in np.asarray(state['shape']).ravel())
            directional = float(state.get('directional', 0.0))
            w = np.asarray(state['w'], dtype=float)
            p = np.asarray(state['p'], dtype=float)
            scalars = {k: float(state[k]) for k in
                       ('forgetting_factor', 'initial_covariance', 'trace_cap')}
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f'not a readout state: {exc}') from None
        if shape != (self.n_inputs, self.n_outputs, int(self.bias)):
            raise ValueError(f'saved readout has (inputs, outputs, bias) = {shape}, this one '
                             f'{(self.n_inputs, self.n_outputs, int(self.bias))}')
        if directional != self._st[K.ST_DIRECTIONAL]:
            raise ValueError(f'saved readout uses other forgetting than {self.forgetting}')
        if w.shape != self.w.shape or p.shape != self.p.shape:
            raise ValueError(f'saved readout arrays have shapes {w.shape}, {p.shape}; '
                             f'expected {self.w.shape}, {self.p.shape}')
        if not (np.isfinite(w).all() and np.isfinite(p).all()):
            raise ValueError('saved readout holds non-finite values')
        if not np.allclose(p, p.T, rtol=1e-9, atol=1e-12 * max(1.0, np.abs(p).max())):
            raise ValueError('saved covariance is not symmetric')
        lam = scalars['forgetting_factor']
        if not (np.isfinite(lam) and 0.0 < lam <= 1.0):
            raise ValueError(f'saved forgetting_factor {lam} is not in (0, 1]')
        for name in ('initial_covariance', 'trace_cap'):
            self._check_positive(f'saved {name}', scalars[name])
        return {'w': w, 'p': p, 'trace': float(np.trace(p)), **scalars}

    def restore(self, checked: dict) -> None:
        """Take a state ``checked_state`` returned (it cannot fail: all was checked)."""
        self.w[:] = checked['w']
        self.p[:] = checked['p']
        self._g[:] = 0.0
        self._st[K.ST_PENDING_GAIN] = 0.0
        self._st[K.ST_PENDING_SCALE] = 1.0
        self._st[K.ST_SCALE] = 1.0
        self._st[K.ST_TRACE] = checked['trace']
        self._st[K.ST_TRACE_CAP] = checked['trace_cap']
        self.initial_covariance = checked['initial_covariance']
        self._st[K.ST_LAMBDA] = checked['forgetting_factor']

    def save(self, path: str) -> None:
        save_npz(path, self.state_dict())

    def load(self, path: str) -> None:
        self.load_state_dict(load_npz(path))


def warm_up() -> None:
    """
    Compile (or load from numba's cache) the RLS kernels of both forgetting schemes.

    They run on a tiny readout, so a control tick never pays for it.
    """
    n = 3
    readonly = np.ones(n)
    readonly.flags.writeable = False
    # Features as the controller passes them (contiguous), read-only and strided.
    for phi in (np.ones(n), readonly, np.ones(2 * n)[::2]):
        for forgetting in RLSReadout.FORGETTING:
            for bias in (True, False):
                r = RLSReadout(n, 1, 0.99, 1.0, forgetting=forgetting, bias=bias)
                r.update(phi, np.ones(1))
                r.train(phi, np.ones(1), np.empty(1))
                r.predict(phi)
                r.covariance()
        r._st[K.ST_PENDING_SCALE] = 2.0 ** 40       # the pass that folds the scale into P
        r.update(phi, np.ones(1))

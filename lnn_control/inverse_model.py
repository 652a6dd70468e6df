"""
The inverse_model mode's tick (Waegeman et al. 2012), a part of ``AdaptiveController``.

The readout learns the command u(t-1) from the states at t-1 and t (through a twin
reservoir driven by them); applied to (state now, desired next state) it gives the
command that should reach the desired state. ROS-free.
"""
from __future__ import annotations

import numpy as np


class InverseModelTick:
    """Mixin: ``_inverse_model_tick`` on the controller's buffers and readouts."""

    def _inverse_model_tick(self, q, qd, q_d, qd_d, qdd_d) -> bool:
        n, s, dt = self.n, self.normalizer.scale, self.dt
        ok = True
        if self._has_prev and self._learning_now():
            ut = self._u_train
            np.divide(self._prev[0], s[:n], out=ut[:n])
            np.divide(self._prev[1], s[n:2 * n], out=ut[n:2 * n])
            np.divide(q, s[:n], out=ut[2 * n:3 * n])
            np.divide(qd, s[n:2 * n], out=ut[3 * n:4 * n])
            np.sin(self._prev[0], out=ut[4 * n:5 * n])
            np.cos(self._prev[0], out=ut[5 * n:])
            self._features(self._train_reservoir, ut, self._phi_train)
            self._predict(self._phi_train)
            np.subtract(self._prev[2], self._ff, out=self._ff)   # a-priori error
            self.learning_error = float(np.sqrt(self._ff @ self._ff))
            ok = self._learn(self._phi_train, self._ff)   # _predict() below overwrites it
        u = self._u
        np.divide(q, s[:n], out=u[:n])
        np.divide(qd, s[n:2 * n], out=u[n:2 * n])
        ahead = u[2 * n:4 * n]      # the desired state a tick ahead, scaled (in place)
        np.multiply(qd_d, dt, out=ahead[:n])
        ahead[:n] += q_d
        np.multiply(qdd_d, dt, out=ahead[n:])
        ahead[n:] += qd_d
        ahead /= s[:2 * n]
        np.sin(q, out=u[4 * n:5 * n])
        np.cos(q, out=u[5 * n:])
        self._features(self.reservoir, u, self._phi)
        self._predict()
        return ok

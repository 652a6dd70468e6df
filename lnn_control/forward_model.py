"""
The reservoir also predicts: an online forward model of the controlled robot.

Two learners predict the measured state x = (q, qd) as x(t) plus an increment:

- the plant readout, for one tick ahead, on what the joint acceleration depends
  on: the measured state (with sin, cos and a friction-like term) and the
  command applied (its own small covariance, O(n^2));
- per horizon h a readout of the controller's reservoir features [1, phi(t)],
  for what the plant readout misses (at one tick: its residual; further ahead
  the whole increment, the command to come included: phi holds the desired
  trajectory, and the PD law and the feedforward are readouts of phi).

It costs O(N) per tick, not O(N^2): readouts over the same features can share
the covariance P. The slow readout's RLS step computes the gain
k = P phi / (lambda + phi' P phi) anyway; the forward model keeps each tick's
features and gain in a ring and, when the state h ticks later is measured,
applies that gain to its own a-priori error. It learns on the ticks the slow
readout learns, at its adaptation gain (restarts and supervisor cuts alike).

The plant readout's one-step velocity error is the anomaly signal: a payload or
friction change moves the acceleration a command produces away from what the
model expects at once, while the control error still has to build up, and the
controller's own reactions (the fast learner re-learns within ticks) cannot
hide it, because the command is an input. The test on it is the change
detector's (scale-free CUSUM, ``change_detector.py``) with a shorter averaging
time; on an anomaly the plant readout's covariance restarts, so the model
re-learns the changed plant in seconds. ROS-free.
"""
from __future__ import annotations

import numpy as np

from . import change_detector as CD
from . import forward_kernels as FK
from .change_detector import ChangeDetector
from .rls import RLSReadout

ANOMALY_SHORT_S = 0.1     # averaging time of the prediction error power
ANOMALY_BASELINE_S = 5.0  # warm-up of the anomaly test after each restart
ERROR_AVERAGE_S = 5.0     # time constant of the running prediction error (diagnostics)
COMMAND_HEADROOM = 1.25   # the command's scale: this x its largest magnitude so far


class ForwardModel:
    """
    Predictions of the measured (q, qd) ``horizons`` ticks ahead, learned online.

    ``step`` once per control tick, after the command is computed; ``prediction(i)``
    is then the state predicted for ``horizons[i]`` ticks later (rows: position,
    velocity). ``error_rms[i]`` is the running RMS of that horizon's error in units
    of the input scales; ``detector`` the anomaly test on the one-step error.
    """

    def __init__(self, n_joints: int, n_inputs: int, horizons: tuple[int, ...], dt: float,
                 threshold: float, forgetting_factor: float, detect: bool = True):
        horizons = tuple(sorted({int(h) for h in horizons}))
        if not horizons or horizons[0] < 1:
            raise ValueError(f'prediction horizons must be >= 1 tick; got {horizons}')
        self.n, self.dt, self.horizons = n_joints, float(dt), horizons
        m, nh, nf, ring = 2 * n_joints, len(horizons), n_inputs + 1, horizons[-1] + 1
        self._horizons = np.array(horizons, dtype=np.int64)
        self.w = np.zeros((nh, m, nf))
        self._ring = (np.zeros((ring, n_inputs)), np.zeros((ring, nf)), np.zeros((ring, m)),
                      np.zeros((ring, nh, m)), np.zeros((ring, nh, m)))
        self._st = np.zeros(FK.FM_SIZE + ring)
        self._one_step = horizons[0] == 1
        self.plant = RLSReadout(6 * n_joints, m, forgetting_factor, 1.0 / (1 + 6 * n_joints))
        self._z, self._z_prev = np.zeros(6 * n_joints), np.zeros(6 * n_joints)
        self._factors = np.ones(6 * n_joints)
        self._u_scale = np.full(n_joints, 1e-3)    # grows to the command's range
        self._x, self._x_prev, self._d = np.zeros(m), np.zeros(m), np.zeros(m)
        self._base, self._plant_pred = np.zeros((nh, m)), np.zeros(m)
        self._inv_scale = np.ones(m)
        self._pred = np.zeros((nh, m))
        self._err = np.zeros((nh, m))
        self._power = np.zeros(nh)
        self._a_err = min(1.0, self.dt / ERROR_AVERAGE_S)
        self.detector = d = ChangeDetector(n_joints, dt, threshold, enabled=detect,
                                           short_s=ANOMALY_SHORT_S, baseline_s=ANOMALY_BASELINE_S)
        self._cd_args = np.array([d._a_short, d._a_hist, d._warm, CD.QUANTILE, d._log_excess,
                                  d.dt, d.threshold])

    def step(self, phi: np.ndarray, x: np.ndarray, command: np.ndarray, scale: np.ndarray,
             gain: np.ndarray, k_scale: float) -> bool:
        """
        Learn from what this tick measured and predict ahead; True on an anomaly.

        phi: the reservoir features (no bias); x: measured q then qd (2n); scale: the
        position and velocity input scales (2n); gain, k_scale: the slow readout's
        ``P [1, phi]`` and 1 / (lambda + phi' P phi) of this tick's step (k_scale 0: it
        did not learn). Two kernel calls, no allocation.
        """
        pl, det = self.plant, self.detector
        code = FK.forward_learn(x, self._x_prev, self._plant_pred, self._z_prev, pl.p, pl.w,
                                pl._phi, pl._g, pl._y, pl._st, self._inv_scale, scale, command,
                                self._u_scale, COMMAND_HEADROOM, self._factors, self._z,
                                det.enabled, det._inv_kp, self._cd_args, det._st, det._hist,
                                self._st)
        if code & 2:          # the command outgrew its scale
            pl.rescale_inputs(self._factors)
        if code & 1:          # re-learn the changed plant fast
            pl.restart_covariance()
        FK.forward_predict(pl.w, self._z, self._plant_pred, self._base, self._one_step, self.w,
                           self._horizons, phi, gain, k_scale, x, self._inv_scale, *self._ring,
                           self._st, self._pred, self._err, self._power, self._a_err,
                           self._z_prev, self._x_prev)
        return bool(code & 1)

    @property
    def ticks(self) -> int:
        """Ticks since the last restart."""
        return int(self._st[FK.FM_TICKS])

    def set_threshold(self, threshold: float) -> None:
        """Set the anomaly test's threshold (``prediction.anomaly_threshold``) [s]."""
        self.detector.threshold = self._cd_args[6] = float(threshold)

    def prediction(self, i: int = 0) -> np.ndarray:
        """Return (2, n) position and velocity predicted for horizons[i] ticks ahead."""
        return self._pred[i].reshape(2, self.n)

    @property
    def error_rms(self) -> np.ndarray:
        """Return the running RMS prediction error per horizon, in input-scale units."""
        return np.sqrt(self._power)

    def restart(self) -> None:
        """Forget the ring (the reservoir restarted: old features do not lead to new states)."""
        self._st[:] = 0.0
        self._power[:] = 0.0
        self.detector.restart()

    def rescale_inputs(self, factors: np.ndarray) -> None:
        """Keep predictions unchanged when direct input i is divided by factors[i] more."""
        self.w[:, :, 1:1 + factors.size] *= factors
        n = self.n     # the plant readout's q, qd inputs: the reservoir's last two blocks
        self.plant.rescale_inputs(np.concatenate([factors[-2 * n:], np.ones(4 * n)]))
        self.restart()

    def reset(self) -> None:
        """Forget what was learned."""
        self.w[:] = 0.0
        self.plant.reset()
        self.restart()

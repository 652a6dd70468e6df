"""
The reservoir also predicts: an online forward model of the controlled robot.

Three learners predict the measured state x = (q, qd):

- the plant readout, for one tick ahead, on what the joint acceleration depends
  on: the measured state (with sin, cos and a friction-like term) and the
  command applied (its own small covariance, O(n^2));
- per horizon h a readout of the controller's reservoir features [1, phi(t)],
  for what the plant readout misses (at one tick: its residual; further ahead
  the whole increment, the command to come included: phi holds the desired
  trajectory, and the PD law and the feedforward are readouts of phi);
- for the long horizon (``memory_horizon``, prediction.long_horizon_s) the
  ``MemoryReadout``: the reservoir remembers tenths of a second, where the robot
  is in 0.5 s depends on seconds of the reference's history.

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
hide it, because the command is an input. What is tested is the error's
correlation with the command over ``ANOMALY_SHORT_S`` (learned, the readout
leaves none; a change makes the error follow the command), with the change
detector's scale-free CUSUM (``change_detector.py``) against its own baseline
(``ANOMALY_QUANTILE`` of ``ANOMALY_HISTORY_S``) at ``ANOMALY_EXCESS``; on
an anomaly the plant readout's covariance restarts, so the model re-learns the
changed plant in seconds. ROS-free.
"""
from __future__ import annotations

import functools

import numpy as np

from . import forward_kernels as FK
from .change_detector import ChangeDetector
from .rls import RLSReadout

ANOMALY_SHORT_S = 0.1     # averaging time of the error's correlation with the command
# The test's baseline: the 99.5th percentile of the statistic over the last 30 s, and
# evidence above 2.5x it. (The change detector's 90th percentile of 5 s, with 4x, had
# 24, 17 and 7 false alarms in 10 min steady on three zoo plants at seed 1, none at
# seed 0, and flagged fewer changes: docs/forward_model.md.)
ANOMALY_HISTORY_S = 30.0
ANOMALY_QUANTILE = 0.995
ANOMALY_EXCESS = 2.5      # the statistic above this x its typical level is evidence
ANOMALY_BASELINE_S = 5.0  # warm-up of the anomaly test after each restart
ERROR_AVERAGE_S = 5.0     # time constant of the running prediction error (diagnostics)
COMMAND_HEADROOM = 1.25   # the command's scale: this x its largest magnitude so far
MEMORY_P0 = 1e6           # the memory readout's initial covariance: a weak prior


class ForwardModel:
    """
    Predictions of the measured (q, qd) ``horizons`` ticks ahead, learned online.

    ``step(phi, x, command, scale, gain, k_scale)`` once per control tick, after the
    command is computed, learns from what this tick measured and predicts ahead: phi the
    reservoir features (no bias), x the measured q then qd (2n), scale the position and
    velocity input scales (2n), gain and k_scale the slow readout's ``P [1, phi]`` and
    1 / (lambda + phi' P phi) of this tick's step (k_scale 0: it did not learn). One
    kernel call, no allocation; it returns the kernel's code, bit 0 set on an anomaly
    (``FK.forward_tick``). ``prediction(i)`` is then the state predicted for
    ``horizons[i]`` ticks later (rows: position, velocity). ``error_rms[i]`` is the
    running RMS of that horizon's error in units of the input scales; ``detector`` the
    anomaly test on the one-step error.
    """

    def __init__(self, n_joints: int, n_inputs: int, horizons: tuple[int, ...], dt: float,
                 threshold: float, forgetting_factor: float, detect: bool = True,
                 memory_horizon: int = 0):
        horizons = tuple(sorted({int(h) for h in horizons}))
        if not horizons or horizons[0] < 1 or memory_horizon < 0:
            raise ValueError(f'prediction horizons must be >= 1 tick; got {horizons}')
        self.n, self.dt = n_joints, float(dt)
        self.memory = (MemoryReadout(n_joints, int(memory_horizon), dt, forgetting_factor)
                       if memory_horizon else None)
        # the reservoir readouts' horizons, then the memory readout's
        self.horizons = horizons + ((int(memory_horizon),) if memory_horizon else ())
        m, nh, nf, slots = 2 * n_joints, len(horizons), n_inputs + 1, horizons[-1] + 1
        self._nh = nh
        self.w = np.zeros((nh, m, nf))
        self._ring = np.zeros((slots, 2 * nf - 1 + m + 2 * nh * m))
        self._st = np.zeros(FK.FM_SIZE + slots)
        self.plant = RLSReadout(6 * n_joints, m, forgetting_factor, 1.0 / (1 + 6 * n_joints))
        self.detector = d = ChangeDetector(n_joints, dt, threshold, enabled=detect,
                                           short_s=ANOMALY_SHORT_S, baseline_s=ANOMALY_BASELINE_S,
                                           excess=ANOMALY_EXCESS, history_s=ANOMALY_HISTORY_S,
                                           quantile=ANOMALY_QUANTILE)
        wk = self._wk = np.zeros((FK.W_BASE + 3 * nh, max(6 * n_joints, FK.N_ARGS, nh)))
        wk[FK.W_U_SCALE] = 1e-3                    # grows to the command's range
        wk[FK.W_UNIT] = 1.0
        wk[FK.W_ARGS, :FK.N_ARGS] = (*d.settings, self.plant.initial_covariance, COMMAND_HEADROOM,
                                     min(1.0, self.dt / ERROR_AVERAGE_S), memory_horizon)
        wk[FK.W_HORIZONS, :nh] = horizons
        self._pack()

    def _pack(self) -> None:
        """
        Move every array the tick touches into one buffer (``FK.pack``): one short call.

        The owners keep views of it under the same names, so everything else (resets,
        rescaling, the readouts' own methods) works on them in place as before.
        """
        pl, det, mem = self.plant, self.detector, self.memory
        owners = [(self, '_wk'), (self, '_ring'), (self, '_st'), (self, 'w'),
                  *((pl, a) for a in ('p', 'w', '_phi', '_g', '_y', '_st')),
                  (det, '_st'), (det, '_hist')]
        if mem is not None:
            r = mem.readout
            owners += [(mem, '_decay'), (mem, '_traces'), (mem, '_ring'), (mem, '_mst'),
                       *((r, a) for a in ('p', 'w', '_phi', '_g', '_y', '_st')),
                       (mem, '_err'), (mem, 'out'), (mem, '_power')]
        self._buf, self._index, views = FK.pack([getattr(o, a) for o, a in owners])
        for (owner, attr), view in zip(owners, views):
            setattr(owner, attr, view)
        nh, m = self._nh, 2 * self.n
        self._base = self._wk[FK.W_BASE:FK.W_BASE + nh, :m]
        self._pred = self._wk[FK.W_BASE + nh:FK.W_BASE + 2 * nh, :m]

        # step(phi, x, command, scale, gain, k_scale): the kernel bound to the buffer, so
        # a tick is one C-level call (a method in between cost 0.6 us of a 5 us model)
        self.step = functools.partial(FK.forecast, self._buf, self._index)

    @property
    def ticks(self) -> int:
        """Ticks since the last restart."""
        return int(self._st[FK.FM_TICKS])

    def set_threshold(self, threshold: float) -> None:
        """Set the anomaly test's threshold (``prediction.anomaly_threshold``) [s]."""
        self.detector.threshold = self._wk[FK.W_ARGS, FK.A_THRESHOLD] = float(threshold)

    def set_forgetting_factor(self, value: float) -> None:
        """Set the plant and memory readouts' (``rls.forgetting_factor``, as at start-up)."""
        self.plant.forgetting_factor = float(value)
        if self.memory is not None:
            self.memory.set_forgetting_factor(value)

    def prediction(self, i: int = 0) -> np.ndarray:
        """Return (2, n) position and velocity predicted for horizons[i] ticks ahead."""
        if i >= self._nh:
            return self.memory.out.reshape(2, self.n)
        return self._pred[i].reshape(2, self.n)

    @property
    def error_rms(self) -> np.ndarray:
        """Return the running RMS prediction error per horizon, in input-scale units."""
        power = self._wk[FK.W_POWER, :self._nh]
        if self.memory is not None:
            power = np.append(power, self.memory.power)
        return np.sqrt(power)

    def restart(self) -> None:
        """Forget the ring (the reservoir restarted: old features do not lead to new states)."""
        self._st[:] = 0.0
        self._wk[FK.W_POWER] = 0.0
        self._wk[FK.W_CORR] = 0.0
        self.detector.restart()
        if self.memory is not None:
            self.memory.restart()

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
        if self.memory is not None:
            self.memory.reset()
        self.restart()


class MemoryReadout:
    """
    Predict (q, qd) ``horizon`` ticks ahead from the recent history at several time scales.

    What the robot does in 0.5 s follows the reference, which the reservoir (a memory of
    a few tenths of a second at the default leak) cannot extrapolate that far: a sum of
    sines up to 0.55 Hz needs a memory of seconds to tell its components apart. Linear
    readouts of exponential traces of the desired and measured q, qd at
    ``forward_kernels.MEMORY_TAUS_S`` can (measured offline on the zoo: 0.5 s ahead
    NRMSE 0.01 instead of 0.37 on a pendulum). One RLS readout over every joint's
    features (a joint's motion depends on the others'), in physical units.
    """

    def __init__(self, n_joints: int, horizon: int, dt: float, forgetting_factor: float):
        n, nf = n_joints, FK.MEMORY_FEATURES * n_joints
        self.n, self.horizon = n, horizon
        self._decay = np.array([dt / (tau + dt) for tau in FK.MEMORY_TAUS_S])
        self._traces = np.zeros((n, len(FK.MEMORY_TAUS_S), FK.MEMORY_SIGNALS))
        self._ring = np.zeros((horizon + 1, nf + 2 * n))
        self._mst = np.zeros(3)
        self.readout = RLSReadout(nf, 2 * n, 1.0, MEMORY_P0)
        self.set_forgetting_factor(forgetting_factor)
        self._err = np.zeros(2 * n)
        self.out = np.zeros(2 * n)
        self._power = np.zeros(1)
        self._a_err = min(1.0, dt / ERROR_AVERAGE_S)   # as ForwardModel's (its W_ARGS)

    @property
    def power(self) -> float:
        return float(self._power[0])

    def set_forgetting_factor(self, per_tick: float) -> None:
        """Forget at ``per_tick`` per control tick: its RLS steps come every few ticks."""
        self.readout.forgetting_factor = float(per_tick) ** FK.MEMORY_LEARN_EVERY

    def step(self, x: np.ndarray, phi: np.ndarray, scale: np.ndarray) -> None:
        """Step on its own (a ``ForwardModel`` steps it inside its one kernel call)."""
        r = self.readout
        FK.memory_step(x, phi, scale, self._decay, self.horizon, self._traces, self._ring,
                       self._mst, r.p, r.w, r._phi, r._g, r._y, r._st, self._err, self.out,
                       self._power, self._a_err)

    def restart(self) -> None:
        """Forget the ring; the traces start again from the next values (weights stay)."""
        self._mst[:] = 0.0
        self._power[0] = 0.0

    def reset(self) -> None:
        """Forget what was learned."""
        self.readout.reset()
        self.restart()

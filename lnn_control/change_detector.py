"""
Plant-change detection: the slow readout's error jumps when the robot changes.

After a payload or friction change the torque the motion needs is no longer
what the slow readout has learned. Its a-priori error (what the PD loop and the
fast readout still supply, see the controller) then rises far above the level
it had settled to, and stays up until the readout has re-learned. A slow
readout that has learned for tens of seconds has a small covariance, so it
would re-learn only over tens of seconds; when the detector fires, the
controller restarts the covariances (Goodwin-style covariance resetting; the
slow one at a fraction of its initial value, see ``controller.RESTART_GAIN``),
keeping the weights, so the readouts re-learn from what they knew, fast.

The test is Page's CUSUM on the log of the short-term error power against the
90th percentile of its recent history (an exponentially weighted histogram
over ``HISTORY_S``), so it is scale-free (no threshold in plant units: the same
setting for a 0.3 kg pendulum and a cart-pole), and the bursts a steady error
has at the hard parts of a reference sit below that level. A change
keeps the error up for seconds, twice that level and more, and accumulates the
evidence; a burst does not. Measured over the plant zoo (docs/zoo.md).

The history is learned anew (``BASELINE_S``, no test meanwhile) at the start,
after each detection, after every learning pause of the supervisor, after
every covariance restart of the automatic normalisation, when the gains
change and when learning or the detector is switched back on: each of these
starts a transient whose error is not a plant change (without the warm-up
after a detection, the re-learning a detection starts set off further
detections on 2-link arms, each making the transient worse).

ROS-free; the per-tick part is one kernel on preallocated arrays.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import control_kernels as CK

SHORT_S = 0.25          # averaging time of the error power
HISTORY_S = 5.0         # time constant of the histogram the typical level is read from
BASELINE_S = 10.0       # warm-up before any test (at the start and after each restart)
QUANTILE = 0.9          # the typical level: this quantile of the log power's history
EXCESS = 2.0            # a change: the power above EXCESS x the typical level for
# ``change_detection.threshold`` seconds times log(excess ratio) in all


@dataclass
class Detection:
    tick: int
    time_s: float
    reason: str


class ChangeDetector:
    """CUSUM detector on a per-joint error (in effort units, weighted by 1/kp)."""

    def __init__(self, n: int, dt: float, threshold: float, enabled: bool = True,
                 short_s: float = SHORT_S, baseline_s: float = BASELINE_S,
                 excess: float = EXCESS, history_s: float = HISTORY_S,
                 quantile: float = QUANTILE):
        self.dt = float(dt)
        self._inv_kp = np.ones(n)
        self._kd = np.zeros(n)
        self._st = st = np.zeros(CK.CD_SIZE)     # the kernel's state, then its settings
        self._hist = np.zeros(CK.CD_BINS)
        st[CK.CD_A_SHORT] = min(1.0, self.dt / short_s)
        st[CK.CD_A_HIST] = min(1.0, self.dt / history_s)
        st[CK.CD_WARM] = float(round(baseline_s / self.dt))
        st[CK.CD_QUANTILE] = quantile
        st[CK.CD_LOG_EXCESS] = float(np.log(excess))
        st[CK.CD_DT] = self.dt
        self._enabled = False
        self.enabled = enabled
        self.threshold = threshold
        self.detections: list[Detection] = []

    @property
    def settings(self) -> np.ndarray:
        """Return the test's settings in ``CK.change_cusum``'s order (a_short ... threshold)."""
        return self._st[CK.CD_A_SHORT:CK.CD_THRESHOLD + 1]

    @property
    def threshold(self) -> float:
        return float(self._st[CK.CD_THRESHOLD])

    @threshold.setter
    def threshold(self, value: float) -> None:
        self._st[CK.CD_THRESHOLD] = float(value)

    @property
    def enabled(self) -> bool:
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        if bool(value) and not self._enabled:
            self.restart()       # what it saw before it was switched off is stale
        self._enabled = bool(value)
        self._st[CK.CD_ENABLED] = float(self._enabled)

    def set_gains(self, kp: np.ndarray, kd: np.ndarray, command_limit: np.ndarray) -> None:
        """
        Set the error units: effort / kp (effort / command_limit where kp is 0).

        New gains change the loop and the units: the history starts anew (kd too: it
        changes the error level, which would read as a plant change).
        """
        inv_kp = 1.0 / np.where(kp > 0, kp, command_limit)
        if not (np.array_equal(inv_kp, self._inv_kp) and np.array_equal(kd, self._kd)):
            self._inv_kp[:] = inv_kp
            self._kd[:] = kd
            self.restart()

    def restart(self) -> None:
        """
        Learn the history anew (after a learning pause, a reset, a detection).

        The error level before it no longer applies.
        """
        self._st[:CK.CD_CLEARED] = 0.0

    def observe(self, error: np.ndarray) -> bool:
        """One learning tick's a-priori error; True when a change is detected."""
        if not self._enabled:
            return False
        return CK.change_test(error, self._inv_kp, self._st, self._hist)

    @property
    def score(self) -> float:
        """CUSUM statistic as a fraction of the threshold (1: fires)."""
        return float(self._st[CK.CD_CUSUM]) / self.threshold

    def record(self, tick: int, reason: str) -> None:
        self.detections.append(Detection(tick, tick * self.dt, reason))

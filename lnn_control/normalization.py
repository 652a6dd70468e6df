"""
Input normalisation: each reservoir input divided by a scale of its quantity.

The reservoir's tanh units and the readouts' initial covariance assume inputs
of order one. A user's robot may move 0.05 rad or 3 m, so by default the
scales are automatic: 1.25x the peak the reference has shown so far, per joint
and quantity (position, velocity, acceleration), starting from small floors.
Scales only grow; when one does, the controller rescales what the readouts
learned on the inputs it divides (``input_factors``), so nothing learned is
lost. ``fixed`` uses the user's scales (``input.*_scale``) unless the reference outgrows
one ``FIXED_SLACK``-fold: inputs that far past their scale saturate the reservoir and
learning made tracking worse than PD (scales of 1e-6: 10 s windows of 1.2-3.6x PD on
random arms and pendulums), so that scale then grows as an automatic one does. ROS-free.
"""
from __future__ import annotations

import numpy as np

from . import control_kernels as CK

# Automatic normalisation: scales start here (position, velocity, acceleration;
# rad or m per s^k) and grow to AUTO_HEADROOM x the peak the reference shows.
AUTO_FLOOR = (0.05, 0.05, 0.1)
AUTO_HEADROOM = 1.25
# Fixed scales grow only where the reference exceeds one this many times over.
FIXED_SLACK = 10.0


def input_layout(mode: str, n: int) -> tuple[int, np.ndarray]:
    """
    Return the number of reservoir inputs for ``n`` joints and the scale dividing each.

    Each scale is given as its index in the 3n scales (positions, velocities,
    accelerations), -1 for an input no scale divides.

    One block of n per quantity:
    feedback_error: q_d, qd_d, qdd_d, sin q_d, cos q_d, sign-like qd_d, q, qd
    inverse_model:  q(t-1), qd(t-1), q, qd, sin, cos of q(t-1) (training);
                    q, qd, q_d(t+1), qd_d(t+1), sin, cos of q (control)
    """
    pos, vel, acc = (np.arange(n) + k * n for k in range(3))
    none = np.full(n, -1)
    blocks = ((pos, vel, acc, none, none, none, pos, vel) if mode == 'feedback_error'
              else (pos, vel, pos, vel, none, none))
    return len(blocks) * n, np.concatenate(blocks)


class InputNormalizer:
    """
    The 3n scales (positions, velocities, accelerations; n joints).

    ``input_index`` maps each reservoir input to the scale dividing it (-1:
    none), so a scale change can be carried into the readouts.
    """

    def __init__(self, n: int, auto: bool, fixed_scales, input_index: np.ndarray):
        self.n, self.auto = n, auto
        # One table for the kernel: the scales, the reference's peaks, the scales before
        # the last change, the floors, the slack (rows, each 3n; the attributes are views).
        self.table = np.zeros((5, 3 * n))
        self.headroom = AUTO_HEADROOM
        self.scale, self.envelope, self._before, self._floor, slack = self.table
        if auto:
            self.scale[:] = np.repeat(np.asarray(AUTO_FLOOR, dtype=float), n)
            slack[:] = 1.0
        else:
            self.scale[:] = np.concatenate([np.asarray(s, dtype=float) for s in fixed_scales])
            slack[:] = FIXED_SLACK
        self._floor[:] = self.scale
        self._before[:] = self.scale
        self.input_index = np.asarray(input_index)
        self.changes = 0

    def track(self, io: np.ndarray) -> bool:
        """
        Follow the reference of this tick (``io`` rows 2-4); True when a scale grew.

        The controller's fast path does this inside ``CK.load_io`` and calls ``grew``.
        """
        if CK.track_scales(io, self.table, self.headroom):
            self.grew()
            return True
        return False

    def grew(self) -> None:
        """Count a change of scale (``track`` or ``CK.load_io`` found one)."""
        self.changes += 1

    def input_factors(self, before: np.ndarray | None = None) -> np.ndarray:
        """Per input: new scale / scale ``before`` (default: before the last change); 1 unscaled."""
        idx = self.input_index
        ratio = self.scale / (self._before if before is None else before)
        return np.where(idx >= 0, ratio[np.maximum(idx, 0)], 1.0)

    @property
    def scales(self) -> dict[str, np.ndarray]:
        n = self.n
        return {'position': self.scale[:n].copy(), 'velocity': self.scale[n:2 * n].copy(),
                'acceleration': self.scale[2 * n:].copy()}

    def state(self) -> dict[str, np.ndarray]:
        return {'input/scale': self.scale.copy(), 'input/envelope': self.envelope.copy()}

    def check_state(self, path: str, scale: np.ndarray, envelope: np.ndarray) -> None:
        """Raise ValueError unless saved scales fit this normaliser."""
        if (scale.shape != self.scale.shape or envelope.shape != self.envelope.shape
                or not (np.isfinite(scale).all() and (scale > 0).all()
                        and np.isfinite(envelope).all())):
            raise ValueError(f'{path} holds invalid input scales or supervisor gain')
        # fixed: each scale the user's, or grown past FIXED_SLACK x it (a file learned with
        # automatic scales, or other fixed ones, is another normalisation: refused)
        grown = scale >= FIXED_SLACK * self._floor * (1.0 - 1e-9)
        if not self.auto and not np.all(np.isclose(scale, self._floor) | grown):
            raise ValueError(f'{path} was learned with input scales {scale.tolist()}, '
                             f'these are fixed at {self._floor.tolist()}')

    def reset(self) -> None:
        """Forget the peaks seen: the scales back to their floors (fixed: the user's)."""
        self.scale[:] = self._before[:] = self._floor
        self.envelope[:] = 0.0

    def load_state(self, scale: np.ndarray, envelope: np.ndarray) -> None:
        self.scale[:] = scale
        self.envelope[:] = envelope

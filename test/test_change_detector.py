"""
The plant-change detector (ROS-free, deterministic).

Kernel parity, what fires it and what does not, and what the controller does
when it fires.
"""
from lnn_control import change_detector as CD
from lnn_control import closed_loop as CL
from lnn_control import control_kernels as CK
from lnn_control.controller import AdaptiveController, RESTART_GAIN
from lnn_control.kernels_numpy import ChangeCusum
import numpy as np
import pytest

pytestmark = pytest.mark.unit

DT = 0.01


def _bursty(rng, ticks, level):
    """
    Return a steady error with bursts at 'hard parts' of a reference.

    Twice as large for 0.2 s every 1.7 s, plus noise; in effort units, two joints.
    """
    t = np.arange(ticks) * DT
    envelope = level * (1.0 + 1.0 * ((t % 1.7) < 0.2))
    return envelope[:, None] * (0.5 + rng.random((ticks, 2)))


def _fires(detector, errors):
    return [k for k, e in enumerate(errors) if detector.observe(e)]


def test_kernel_matches_the_plain_reference():
    rng = np.random.default_rng(1)
    errors = np.concatenate([_bursty(rng, 2000, 0.01), _bursty(rng, 500, 0.2),
                             _bursty(rng, 1000, 0.01)])
    det = CD.ChangeDetector(2, DT, threshold=0.5)
    det.set_gains(np.array([10.0, 0.0]), np.array([1.0, 0.1]),
                  np.array([5.0, 2.0]))                            # kp 0: command limit
    ref = ChangeCusum(DT, CD.SHORT_S, CD.HISTORY_S, CD.BASELINE_S, CD.QUANTILE, CD.EXCESS, 0.5)
    inv_kp = np.array([0.1, 0.5])
    fired = []
    for k, e in enumerate(errors):
        a, b = det.observe(e), ref.update(e, inv_kp)
        assert a == b, k
        np.testing.assert_allclose(det._st[:3], [ref.power, ref.base, ref.g], rtol=1e-9)
        fired += [k] * a
    assert fired and 2000 <= fired[0] < 2050       # within 0.5 s of the step


def test_fires_on_a_lasting_rise_not_on_bursts():
    rng = np.random.default_rng(0)
    det = CD.ChangeDetector(2, DT, threshold=0.5)
    steady = _bursty(rng, 60_000, 0.01)                 # 10 min of steady operation
    assert _fires(det, steady) == []
    # the error power up 10x (a payload doubling does 100-1000x on the zoo)
    rise = _bursty(rng, 300, 0.01 * np.sqrt(10))
    scores = []
    for e in rise:
        if det.observe(e):
            break
        scores.append(det.score)
    else:
        raise AssertionError('a lasting 10x rise was not detected')
    assert len(scores) * DT <= 1.0, len(scores)
    assert 0.5 < max(scores) < 1.0 and det.score == 0.0     # evidence built up, then reset


def test_warm_up_restart_and_disabled():
    rng = np.random.default_rng(2)
    det = CD.ChangeDetector(1, DT, threshold=0.5)
    # during the baseline's warm-up (BASELINE_S) nothing can fire, even a jump
    warm = int(CD.BASELINE_S / DT)
    assert _fires(det, np.concatenate([_bursty(rng, 500, 0.01)[:, :1],
                                       _bursty(rng, warm - 500, 1.0)[:, :1]])) == []
    det.restart()
    assert _fires(det, _bursty(rng, warm, 0.01)[:, :1]) == []
    assert _fires(det, _bursty(rng, 200, 1.0)[:, :1])
    det.enabled = False
    det.restart()
    assert _fires(det, np.concatenate([_bursty(rng, warm, 0.01)[:, :1],
                                       _bursty(rng, 200, 1.0)[:, :1]])) == []


def _pendulum_params(**extra):
    return CL.plant_params('pendulum', extra)


def test_new_gains_kd_too_start_the_history_anew():
    """A kd change moves the loop's error level as a kp change does; it was kept."""
    det = CD.ChangeDetector(2, DT, threshold=0.5)
    limit = np.array([5.0, 2.0])
    det.set_gains(np.array([10.0, 4.0]), np.array([1.0, 0.4]), limit)
    for k in range(100):
        det.observe(np.array([0.01, 0.02]))
    ticks = det._st[CK.CD_TICKS]
    det.set_gains(np.array([10.0, 4.0]), np.array([1.0, 0.4]), limit)    # the same: kept
    assert ticks > 0 and det._st[CK.CD_TICKS] == ticks
    det.set_gains(np.array([10.0, 4.0]), np.array([2.0, 0.4]), limit)
    assert det._st[CK.CD_TICKS] == 0


def test_a_payload_change_restarts_the_covariances_and_keeps_the_weights():
    """
    Offline pendulum, payload x2 at 30 s: detected within 1 s.

    Both covariances are restarted then (the slow one at RESTART_GAIN, both
    times the supervisor's gain), the weights are kept.
    """
    params = _pendulum_params()
    seen = {'slow': [], 'fast': []}

    def probe(ctrl):
        """At the change: record every covariance restart from now on."""
        seen['ctrl'] = ctrl
        for name in ('slow', 'fast'):
            readout = getattr(ctrl, name)
            original = readout.restart_covariance

            def restart(gain_scale=1.0, name=name, original=original):
                seen[name].append((ctrl.ticks, gain_scale, readout.w.copy()))
                original(gain_scale)
                np.testing.assert_array_equal(readout.w, seen[name][-1][2])   # weights kept
            readout.restart_covariance = restart

    trace = CL.run('pendulum', params, 32.0, payload_change_at=30.0, on_change=probe)
    ctrl = seen['ctrl']
    times = trace.meta['change_detections']
    assert len(times) >= 1 and 30.0 <= times[0] <= 31.0, times
    assert [d.time_s for d in ctrl.change_detector.detections] == times
    gains = {'slow': RESTART_GAIN * ctrl.supervisor.gain_scale,
             'fast': ctrl.supervisor.gain_scale}
    for name in ('slow', 'fast'):
        assert [t * ctrl.dt for t, _, _ in seen[name]] == pytest.approx(times)
        assert all(g == pytest.approx(gains[name]) for _, g, _ in seen[name])


@pytest.mark.slow
def test_no_detection_in_steady_operation_with_noise():
    params = _pendulum_params()
    trace = CL.run('pendulum', params, 120.0, position_noise=0.5e-3, velocity_noise=5e-3)
    assert trace.meta['change_detections'] == []


def test_detection_can_be_switched_off_live():
    ctrl = AdaptiveController(_pendulum_params())
    assert ctrl.change_detector.enabled
    ctrl.update_params({'change_detection.enabled': False, 'change_detection.threshold': 0.8})
    assert not ctrl.change_detector.enabled and ctrl.change_detector.threshold == 0.8
    state = ctrl.change_detector._st[:CK.CD_CLEARED]
    state[:] = 1.0                                    # as if it had been running
    ctrl.update_params({'change_detection.enabled': True})
    assert state.sum() == 0.0                         # switched back on: a fresh start
    assert ctrl.change_detector.threshold == 0.8      # ... with its settings kept
    with pytest.raises(ValueError):
        ctrl.update_params({'change_detection.threshold': 0.0})

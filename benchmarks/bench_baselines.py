#!/usr/bin/env python3
"""
The adaptive controller against textbook baselines, not only against PD.

On the bundled plants (their config: the honest PD gains, limits and reference), offline,
payload x2 at 40 s of 60 s, the tracking RMS over 30-40 s (before the change) and 45-50 s
(after it), as a ratio to PD alone (the package's baseline, run by ``closed_loop.run``):

- PID: the same PD plus an integral term, ki = kp * wn / 4 (integral time 4 / wn, wn the
  PD loop's design natural frequency from kp and the nominal inertia);
- PD + gravity feedforward from the nominal model (``mj_inverse`` at the desired pose,
  at rest);
- PD + computed torque from the nominal model (``mj_inverse`` at the desired pose,
  velocity and acceleration; unactuated joints as they are): what a perfect model of
  the nominal robot gives a fully actuated one;
- the adaptive controller (defaults), as the demo runs it offline.

Usage::

    PYTHONPATH=. python benchmarks/bench_baselines.py [--plants pendulum,arm2,cartpole]
"""
from __future__ import annotations

import argparse

from lnn_control import closed_loop as CL
from lnn_control import schema
from lnn_control.plants import Plant
import mujoco
import numpy as np

DURATION_S, CHANGE_AT_S = 60.0, 40.0
BEFORE, AFTER = (30.0, 40.0), (45.0, 50.0)


def textbook(plant_name: str, params: dict, law: str) -> CL.Trace:
    """Run one classic law on the plant, payload x2 at CHANGE_AT_S; a Trace for CL.rms."""
    cfg = schema.resolve(params)
    plant, nominal = Plant(plant_name, cfg['joints']), Plant(plant_name, cfg['joints'])
    kp, kd = np.asarray(cfg['kp'], float), np.asarray(cfg['kd'], float)
    dt = 1.0 / cfg['control_rate_hz']
    wn = np.sqrt(kp / plant.nominal_inertia())
    ki = kp * wn / 4.0 if law == 'pid' else np.zeros_like(kp)
    ref = CL.generated_reference(plant.n, cfg['reference.mode'], cfg['reference.amplitude'],
                                 cfg['reference.frequency_hz'], cfg['reference.offset'],
                                 cfg['reference.seed'])
    q_d, qd_d, qdd_d = np.zeros(plant.n), np.zeros(plant.n), np.zeros(plant.n)
    ref.sample(0.0, q_d, qd_d, qdd_d)
    plant.reset(q=q_d)
    nm, nd, vadr = nominal.model, nominal.data, nominal._vadr
    ticks = int(round(DURATION_S / dt))
    log_q_d, log_q, integral = np.zeros((ticks, plant.n)), np.zeros((ticks, plant.n)), 0.0
    for k in range(ticks):
        t = k * dt
        if abs(t - CHANGE_AT_S) < dt / 2:
            plant.payload_scale = CL.PAYLOAD_SCALE
        ref.sample(t, q_d, qd_d, qdd_d)
        q, qd = plant.position(), plant.velocity()
        log_q_d[k], log_q[k] = q_d, q
        e = q_d - q
        integral = integral + e * dt
        u = kp * e + kd * (qd_d - qd) + ki * integral
        if law in ('gravity', 'computed_torque'):      # the other joints as they are
            nd.qpos[:], nd.qacc[:] = plant.data.qpos, 0.0
            nd.qvel[:] = plant.data.qvel if law == 'computed_torque' else 0.0
            nd.qpos[nominal._qadr] = q_d
            nd.qvel[vadr] = qd_d if law == 'computed_torque' else 0.0
            nd.qacc[vadr] = qdd_d if law == 'computed_torque' else 0.0
            mujoco.mj_inverse(nm, nd)
            u = u + nd.qfrc_inverse[vadr]
        plant.step(u, dt)
    zeros = np.zeros((ticks, plant.n))
    return CL.Trace(np.arange(ticks) * dt, log_q_d, log_q, zeros, zeros, label=law)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--plants', default='pendulum,arm2,cartpole')
    args = ap.parse_args(argv)
    print('| plant | controller | RMS 30-40 s / PD | RMS 45-50 s (payload x2) / PD |')
    print('|---|---|---|---|')
    for name in args.plants.split(','):
        params = CL.plant_params(name)
        runs = {'PD (the baseline)': CL.run(name, params, DURATION_S, learning=False,
                                            payload_change_at=CHANGE_AT_S)}
        for law, label in (('pd', 'PD, this script'), ('pid', 'PID, ki = kp wn / 4'),
                           ('gravity', 'PD + nominal gravity'),
                           ('computed_torque', 'PD + nominal computed torque')):
            runs[label] = textbook(name, params, law)
        runs['adaptive (defaults)'] = CL.run(name, params, DURATION_S,
                                             payload_change_at=CHANGE_AT_S)
        pd = runs['PD (the baseline)']
        for label, tr in runs.items():
            before = CL.rms(tr, *BEFORE) / CL.rms(pd, *BEFORE)
            after = CL.rms(tr, *AFTER) / CL.rms(pd, *AFTER)
            print(f'| {name} | {label} | {before:.4f} | {after:.4f} |')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())

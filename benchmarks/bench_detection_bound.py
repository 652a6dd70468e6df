#!/usr/bin/env python3
"""
How much the noisy measurements tell about a plant change: a bound for any detector.

The zoo's change trials of ``bench_prediction.py`` (payload x2 and friction x3 at 40 s,
measurement noise, ``--trials`` seeds). At the change an unchanged twin of the plant
takes the real plant's exact MuJoCo state and, from then on, exactly the efforts the
changed plant gets; D(k) is the noise-free difference of the measured joints' q and qd.
The test that knows both models and the state at the change (the likelihood ratio of
i.i.d. Gaussian noise) separates the two hypotheses by

    d'(T) = sqrt(sum over the ticks within T of sum_j D_q,j^2 / sigma_q^2 + D_v,j^2 / sigma_v^2)

(exact in closed loop too: the efforts depend only on past measurements, which the
detector has). The estimated-state variant does not know the state: the whole state
2 s before the change is fitted, linearised, by least squares to the measurements from
then on (before and after the change); d' is the residual of D after that fit.

A sequential test checking every tick of 10 min (60 000 ticks) with no false alarm needs
a per-test false-alarm rate near 1e-5 (z about 4.3); flagging 95 % of changes on top of
it needs d' near 6 (printed: trials at d' >= 4, 6, 8 within 0.5 s).

Usage::

    PYTHONPATH=. python benchmarks/bench_detection_bound.py [--trials 5] [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics

from lnn_control import closed_loop as CL
from lnn_control import zoo
from lnn_control.config import Config
from lnn_control.plants import Plant
import mujoco
import numpy as np

CHANGE_AT_S, RUN_S, PRE_S = 40.0, 40.6, 2.0
TIMES = (0.1, 0.25, 0.5)
LEVELS = (4.0, 6.0, 8.0)
STATE = mujoco.mjtState.mjSTATE_INTEGRATION
FD_EPS = 1e-6


def _state(plant: Plant) -> np.ndarray:
    out = np.empty(mujoco.mj_stateSize(plant.model, STATE))
    mujoco.mj_getState(plant.model, plant.data, out, STATE)
    return out


def _set_state(plant: Plant, state: np.ndarray) -> None:
    mujoco.mj_setState(plant.model, plant.data, state, STATE)
    mujoco.mj_forward(plant.model, plant.data)


def _replay(plant: Plant, state: np.ndarray, efforts, dt: float) -> np.ndarray:
    """Measured q, qd (rows: ticks) of the unchanged plant from ``state`` under ``efforts``."""
    _set_state(plant, state)
    rows = [np.r_[plant.position(), plant.velocity()]]
    for u in efforts:
        plant.step(u, dt)
        rows.append(np.r_[plant.position(), plant.velocity()])
    return np.array(rows)


def trial(job) -> dict:
    plant, change, seed = job
    noise = zoo.VARIANTS['noise']
    params = {**zoo.controller_params(plant), 'reservoir.seed': seed, 'reference.seed': seed}
    model = zoo.model_name(plant)
    rec = {'efforts': [], 'diff': [], 'dt': 1.0 / Config(params).control_rate_hz}

    def on_step(k, real, u):
        t = k * rec['dt']
        if abs(t - (CHANGE_AT_S - PRE_S)) < rec['dt'] / 2:
            rec['pre_state'] = _state(real)
        if 'pre_state' in rec:
            rec['efforts'].append(np.array(u))
        if abs(t - CHANGE_AT_S) < rec['dt'] / 2:      # (the change acts from the next step)
            rec['twin'] = Plant(model, joints=real.joint_names)
            _set_state(rec['twin'], _state(real))
            rec['k0'] = len(rec['efforts']) - 1
        if 'twin' in rec:
            twin = rec['twin']
            rec['diff'].append(np.r_[real.position() - twin.position(),
                                     real.velocity() - twin.velocity()])
            twin.step(u, rec['dt'])

    CL.run(model, params, RUN_S, payload_change_at=CHANGE_AT_S, noise_seed=seed,
           on_step=on_step, **noise, **zoo.CHANGES[change])
    n = len(rec['diff'][0]) // 2
    sigma = np.r_[np.full(n, noise['position_noise']), np.full(n, noise['velocity_noise'])]
    white = np.array(rec['diff']) / sigma                 # row i: i ticks after the change
    cum = np.sqrt(np.cumsum((white ** 2).sum(1)))
    dt, k0 = rec['dt'], rec['k0']
    out = {'plant': plant, 'change': change, 'seed': seed}
    out['dprime'] = {f'{T:g}': float(cum[min(round(T / dt), len(cum) - 1)]) for T in TIMES}
    out['time_to'] = {f'{lv:g}': (round(float(np.argmax(cum >= lv)) * dt, 3)
                                  if (cum >= lv).any() else None) for lv in LEVELS}
    # the state 2 s before the change unknown: fit it (central differences) and keep the rest
    twin = rec['twin']          # (unchanged; each replay sets its whole state)
    ticks = k0 + round(max(TIMES) / dt)
    efforts, x0 = rec['efforts'][:ticks], rec['pre_state']
    base = _replay(twin, x0, efforts, dt)
    columns = []
    for i in range(1, 1 + twin.model.nq + twin.model.nv):     # qpos, qvel (after time)
        up, down = x0.copy(), x0.copy()
        up[i] += FD_EPS
        down[i] -= FD_EPS
        columns.append((_replay(twin, up, efforts, dt) - _replay(twin, down, efforts, dt))
                       / (2 * FD_EPS) / sigma)
    sens = np.stack(columns, axis=-1)
    target = np.zeros_like(base)
    target[k0:] = white[:ticks + 1 - k0]
    est = {}
    for T in TIMES:
        r = k0 + round(T / dt) + 1
        a, b = sens[:r].reshape(-1, sens.shape[-1]), target[:r].reshape(-1)
        theta, *_ = np.linalg.lstsq(a, b, rcond=None)
        est[f'{T:g}'] = float(np.linalg.norm(b - a @ theta))
    out['dprime_estimated_state'] = est
    return out


def report(rows) -> None:
    print("\n| plant | change | d'(0.5 s) >= 4 / 6 / 8 | d'(0.1 / 0.25 / 0.5 s) min | "
          "time to d' = 6, worst [s] | d'(0.5 s) min, state estimated |")
    print('|---|---|---|---|---|---|')
    keys = sorted({(r['plant'], r['change']) for r in rows}, key=lambda k: (k[1], k[0]))
    for plant, change in keys + [('all', 'payload_x2'), ('all', 'friction_x3')]:
        sel = [r for r in rows if r['change'] == change and plant in ('all', r['plant'])]
        if not sel:
            continue
        counts = ' / '.join(str(sum(r['dprime']['0.5'] >= lv for r in sel)) for lv in LEVELS)
        mins = ' / '.join(f"{min(r['dprime'][f'{T:g}'] for r in sel):.1f}" for T in TIMES)
        times = [r['time_to']['6'] for r in sel]
        worst = '-' if None in times else f'{max(times):.2f}'
        est = min(r['dprime_estimated_state']['0.5'] for r in sel)
        print(f'| {plant} | {change} | {counts} (of {len(sel)}) | {mins} | {worst} | {est:.1f} |')
    med = statistics.median(r['dprime']['0.5'] for r in rows)
    print(f"\nmedian d'(0.5 s) over {len(rows)} trials: {med:.0f}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--trials', type=int, default=5)
    ap.add_argument('--workers', type=int, default=2)
    ap.add_argument('--json', help='write the rows here')
    args = ap.parse_args(argv)
    jobs = [(p, c, s) for p in zoo.names() for c in ('payload_x2', 'friction_x3')
            if zoo.change_applies(c, p) for s in range(args.trials)]
    with mp.get_context('spawn').Pool(args.workers) as pool:
        rows = pool.map(trial, jobs)
    report(rows)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())

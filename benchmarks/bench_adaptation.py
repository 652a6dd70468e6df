#!/usr/bin/env python3
"""
Re-adaptation mechanisms compared in one run.

How fast, after the plant changes, the error returns to its own pre-change
level, and to the level a controller that has long known the changed plant
reaches.

Every mechanism runs the same plants, seeds, reference and plant changes
(payload x2, payload x0.5, friction x3 on plants that have friction, at 40 s
of 60 s), offline and deterministic, with the same PD-only arm and, for the
readaptation ratio, the same controller on the changed plant from the start:

- ``slow only``: one readout over the reservoir (lambda 0.9999), no fast learner
  (change detection on);
- ``fast 0.9``: the fast learner on the direct desired-trajectory inputs with a
  longer memory (lambda 0.9) than the default 0.5;
- ``no detection``: the defaults without change detection (the slow readout
  re-learns at the rate its covariance has shrunk to);
- ``default``: the shipped defaults (fast learner at lambda 0.5 whose output the
  slow readout consolidates, change detection restarting the slow covariance);
- ``oracle reset``: no detection, but the controller told of the change at the
  moment it happens (``AdaptiveController.plant_changed``, what the detector
  calls, and what ``~/plant_changed`` does): a perfect detector.

Prints one table (median and worst ratio, after-change ratio, recovery ratio,
readaptation ratio, recovery time, detections, interventions) and writes the
rows as JSON with ``--json``.

Usage::

    PYTHONPATH=. python benchmarks/bench_adaptation.py [--quick] [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import time

from lnn_control import closed_loop as CL
from lnn_control import zoo

MECHANISMS = {
    'slow only': {'rls.fast_learner': False},
    'fast 0.9': {'rls.fast_forgetting_factor': 0.9},
    'no detection': {'change_detection.enabled': False},
    'default': {},
    'oracle reset': {'change_detection.enabled': False},
}
PLANTS = ('pendulum_heavy_coulomb', 'pendulum_tip_mass', 'arm_geared', 'arm_heavy_base',
          'cartpole_light_friction')
QUICK_PLANTS = ('pendulum_heavy_coulomb', 'arm_geared')


def _told(ctrl) -> None:
    ctrl.plant_changed('told by the benchmark (oracle)')


def run_one(job):
    mechanism, plant, change, seed = job
    params = {**zoo.controller_params(plant), 'reservoir.seed': seed, 'reference.seed': seed,
              **MECHANISMS[mechanism]}
    hook = _told if mechanism == 'oracle reset' else None
    pd, adaptive, settled = (
        CL.run(zoo.model_name(plant), params, zoo.DURATION_S, learning=learning,
               payload_change_at=at, noise_seed=seed, on_change=hook, **zoo.CHANGES[change])
        for learning, at in ((False, zoo.CHANGE_AT_S), (True, zoo.CHANGE_AT_S), (True, 0.0)))
    summary = CL.summarize(pd, adaptive, zoo.DURATION_S, zoo.CHANGE_AT_S, settled)
    summary['interventions'] = sum(1 for e in adaptive.meta['interventions']
                                   if e[1] != 'resume')
    summary['detections'] = len(adaptive.meta['change_detections'])
    return {'mechanism': mechanism, 'plant': plant, 'change': change, 'seed': seed, **summary}


def table(rows) -> str:
    keys = ('ratio', 'ratio_after_change', 'recovery_ratio', 'readaptation_ratio',
            'recovery_time_s', 'readaptation_time_s')
    out = ['| mechanism | runs | ratio (median / worst) | after change | recovery ratio | '
           'readaptation ratio | recovery time [s] | readaptation time [s] | detections | '
           'interventions |', '|---|---|---|---|---|---|---|---|---|---|']
    for mechanism in MECHANISMS:
        sel = [r for r in rows if r['mechanism'] == mechanism]
        cells = [f'{statistics.median(r[k] for r in sel):.3g} / {max(r[k] for r in sel):.3g}'
                 for k in keys]
        out.append(f"| {mechanism} | {len(sel)} | {' | '.join(cells)} | "
                   f"{sum(r['detections'] for r in sel)} | "
                   f"{sum(r['interventions'] for r in sel)} |")
    return '\n'.join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--quick', action='store_true', help='two plants, payload x2 only')
    parser.add_argument('--seeds', default='0', help='comma-separated seeds')
    parser.add_argument('--workers', type=int, default=2)
    parser.add_argument('--json', default=None, help='write the rows here')
    args = parser.parse_args()
    plants = QUICK_PLANTS if args.quick else PLANTS
    changes = ('payload_x2',) if args.quick else tuple(zoo.CHANGES)
    jobs = [(m, p, c, int(s)) for m in MECHANISMS for p in plants for c in changes
            if zoo.change_applies(c, p) for s in args.seeds.split(',')]
    t0 = time.perf_counter()
    with mp.get_context('spawn').Pool(args.workers) as pool:
        rows = pool.map(run_one, jobs)
    print(table(rows))
    print(f'\n{len(jobs)} runs of {zoo.DURATION_S:g} s (plant change at {zoo.CHANGE_AT_S:g} s) '
          f'in {time.perf_counter() - t0:.0f} s wall; recovery ratio = RMS 5-10 s after the '
          'change / RMS of the 10 s before; readaptation ratio = RMS 5-10 s after the change / '
          'RMS over the same seconds of the controller that learned the changed plant from '
          'the start; recovery (readaptation) time = until the rolling 2 s RMS stays within '
          "1.5x the pre-change RMS (the settled run's rolling RMS); 20 s: not within the run.")
    if args.json:
        with open(args.json, 'w', encoding='utf-8') as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())

#!/usr/bin/env python3
"""
Sweep of the learning settings over their declared ranges.

No value may make the loop diverge.

Every combination of ``rls.initial_covariance`` (d) in {0.1, 1, 3, 10, 100},
``rls.forgetting_factor`` (l) in {0.9, 0.99, 0.9999, 1} and
``rls.fast_forgetting_factor`` (f) in {0.5, 0.9, 0.99}, plus the fast learner off
at every d, on three zoo plants (a pendulum, an arm, a cart-pole; seed 0,
nominal, 60 s, payload x2 at 40 s), everything else at its default. Prints one
line per run and the largest adaptive/PD RMS over any 10 s window after the
first 10 s (the target: <= 1.2, i.e. learning never makes tracking worse than
PD alone by more than that), and writes the rows as JSON with ``--json``.

Usage::

    PYTHONPATH=. python benchmarks/bench_sweep.py [--quick] [--json OUT]
"""
from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing as mp
import time

from lnn_control import closed_loop as CL
from lnn_control import zoo

PLANTS = ('pendulum_heavy_coulomb', 'arm_heavy_tip', 'cartpole_heavy_load')
DELTAS = (0.1, 1.0, 3.0, 10.0, 100.0)
LAMBDAS = (0.9, 0.99, 0.9999, 1.0)
FAST_LAMBDAS = (0.5, 0.9, 0.99)


def settings(quick: bool, deltas=None) -> list[dict]:
    default, lambdas, fast = ((0.1, 100.0), (0.9, 1.0), (0.5, 0.99)) if quick else \
        (DELTAS, LAMBDAS, FAST_LAMBDAS)
    deltas = deltas or default
    grid = [{'rls.initial_covariance': d, 'rls.forgetting_factor': lam,
             'rls.fast_forgetting_factor': f}
            for d, lam, f in itertools.product(deltas, lambdas, fast)]
    return grid + [{'rls.initial_covariance': d, 'rls.fast_learner': False} for d in deltas]


def run_one(job):
    plant, extra = job
    params = {**zoo.controller_params(plant), 'reservoir.seed': 0, 'reference.seed': 0, **extra}
    pd, adaptive = (CL.run(zoo.model_name(plant), params, zoo.DURATION_S, learning=learning,
                           payload_change_at=zoo.CHANGE_AT_S) for learning in (False, True))
    summary = CL.summarize(pd, adaptive, zoo.DURATION_S, zoo.CHANGE_AT_S)
    return {'plant': plant, 'settings': extra, 'ratio': summary['ratio'],
            'ratio_after_change': summary['ratio_after_change'],
            'worst_window_ratio': CL.worst_window_ratio(pd, adaptive),
            'interventions': sum(1 for e in adaptive.meta['interventions'] if e[1] != 'resume')}


def label(extra: dict) -> str:
    d = f"d={extra['rls.initial_covariance']:g}"
    if extra.get('rls.fast_learner') is False:
        return f'{d} fast off'
    return f"{d} l={extra['rls.forgetting_factor']:g} f={extra['rls.fast_forgetting_factor']:g}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--quick', action='store_true', help='the corners of the ranges only')
    parser.add_argument('--deltas', default='',
                        help='comma-separated initial covariances (default: the grid)')
    parser.add_argument('--workers', type=int, default=2)
    parser.add_argument('--json', default=None, help='write the rows here')
    args = parser.parse_args()
    deltas = [float(d) for d in args.deltas.split(',') if d]
    jobs = [(p, s) for s in settings(args.quick, deltas) for p in PLANTS]
    t0 = time.perf_counter()
    with mp.get_context('spawn').Pool(args.workers) as pool:
        rows = pool.map(run_one, jobs, chunksize=1)
    for r in rows:
        print(f"{label(r['settings']):24s} {r['plant']:24s} ratio {r['ratio']:.3f} after "
              f"{r['ratio_after_change']:.3f} worst {r['worst_window_ratio']:.2f} "
              f"iv {r['interventions']}")
    worst = max(rows, key=lambda r: r['worst_window_ratio'])
    print(f'\n{len(rows)} runs in {time.perf_counter() - t0:.0f} s wall; worst 10 s window '
          f"{worst['worst_window_ratio']:.2f}x PD ({label(worst['settings'])}, "
          f"{worst['plant']}; target <= 1.2); supervisor interventions in "
          f"{sum(r['interventions'] > 0 for r in rows)} runs, "
          f"{sum(r['interventions'] for r in rows)} in all.")
    if args.json:
        with open(args.json, 'w', encoding='utf-8') as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())

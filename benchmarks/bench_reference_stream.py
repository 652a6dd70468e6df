#!/usr/bin/env python3
"""
A ~/reference streamed slower than the control loop: held between messages, or carried on.

A planner or a teleop node publishes JointState references at 10-50 Hz into a 100 Hz
loop, each stamped when it is sent and received at the next tick. The node's reader
(``ros.conversions.ReferenceFromMessages``) is fed the zoo's sum of sines at each
stream rate and the offline closed loop (``closed_loop.run``) tracks
either each message's values until the next (as the node did before stop 40) or
``ReferenceFromMessages.sample``, which carries a moving reference on by its velocity
and estimated acceleration. The figure is the RMS error against the continuous
reference over the 10 s before the payload change (PD only and adaptive, defaults,
seed 0), so the steps a held reference makes count against it. Deterministic: no
timing. Prints a table; ``--json`` writes the rows.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_reference_stream.py
"""
from __future__ import annotations

import argparse
import json
import sys

from lnn_control import closed_loop as CL, zoo
from lnn_control.ros import conversions as C
import numpy as np


class StreamedReference:
    """The generated reference as a node receives it: one JointState every 1 / rate s."""

    def __init__(self, generated, n: int, rate_hz: float, carried: bool):
        self.generated, self.rate_hz, self.carried = generated, rate_hz, carried
        self.names = [f'j{i}' for i in range(n)]
        self.reader = C.ReferenceFromMessages(self.names)
        self.q, self.qd, self.qdd = np.zeros(n), np.zeros(n), np.zeros(n)
        self.next_s = 0.0

    def sample(self, t: float, q, qd, qdd) -> None:
        now = int(round(t * 1e9))
        while t >= self.next_s - 1e-9:           # the messages sent since the last tick,
            self.generated.sample(self.next_s, self.q, self.qd, self.qdd)   # stamped when
            self.reader.update(C.joint_state(self.names, self.q, self.qd,  # sent, arrive
                                             stamp_ns=int(round(self.next_s * 1e9))), now)
            self.next_s += 1.0 / self.rate_hz
        if self.carried:
            self.reader.sample(now, q, qd, qdd)
        else:
            q[:], qd[:], qdd[:] = self.reader.q, self.reader.qd, self.reader.qdd


def tracking_error(plant: str, rate_hz: float | None, carried: bool, learning: bool) -> float:
    """RMS error against the continuous reference, 30-40 s (payload x2 at 40 s)."""
    params = zoo.controller_params(plant)
    cfg = CL.AdaptiveController(params).config.reference

    def generated():
        return CL.generated_reference(len(params['joints']), cfg.mode, cfg.amplitude,
                                      cfg.frequency_hz, cfg.offset, cfg.seed)
    reference = (None if rate_hz is None else
                 StreamedReference(generated(), len(params['joints']), rate_hz, carried))
    trace = CL.run(zoo.model_name(plant), params, 60.0, learning=learning,
                   payload_change_at=40.0, reference=reference)
    truth, qd, qdd = np.zeros_like(trace.q), np.zeros(trace.q.shape[1]), np.zeros(trace.q.shape[1])
    continuous = generated()
    for i, t in enumerate(trace.t):
        continuous.sample(t, truth[i], qd, qdd)
    window = (trace.t >= 30.0) & (trace.t < 40.0)
    return float(np.sqrt(np.mean(np.square(trace.q - truth)[window])))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--plants', default='pendulum_5kg,arm_geared')
    parser.add_argument('--rates', default='10,20,50', help='stream rates [Hz]')
    parser.add_argument('--json', default=None, metavar='OUT')
    args = parser.parse_args(argv)
    rows = []
    print('| plant | stream | reference | PD only RMS | adaptive RMS |')
    print('|---|---|---|---|---|')
    for plant in args.plants.split(','):
        cases = [(None, False)] + [(float(r), c) for r in args.rates.split(',')
                                   for c in (False, True)]
        for rate, carried in cases:
            pd, adaptive = (tracking_error(plant, rate, carried, learning)
                            for learning in (False, True))
            stream = 'every tick' if rate is None else f'{rate:g} Hz'
            how = '-' if rate is None else ('carried on' if carried else 'held')
            print(f'| {plant} | {stream} | {how} | {pd:.4f} | {adaptive:.4f} |', flush=True)
            rows.append({'plant': plant, 'stream_hz': rate, 'carried_on': carried,
                         'rms_pd': pd, 'rms_adaptive': adaptive})
    if args.json:
        with open(args.json, 'w', encoding='utf-8') as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == '__main__':
    sys.exit(main())

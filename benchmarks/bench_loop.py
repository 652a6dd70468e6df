"""
Control-loop timing of the lnn_controller node against a bare rclpy timer, seen twice.

Per rate (default 1000 and 500 Hz), in one run, with four processes on the machine:

* plant (subprocess): publishes joint_states at the rate, stamped with its
  ``time.perf_counter_ns()`` at publish (CLOCK_MONOTONIC, system-wide on Linux);
* receiver (subprocess): subscribes to every subject's command topic, as a robot's
  driver does, and records each message's arrival (``perf_counter_ns`` in its
  callback, EventsExecutor);
* this process hosts three subjects in turn (the order reversed every other round), in the
  same executor kind and the same conditions: ``bare``, a node with nothing but a timer
  at the rate publishing a preallocated Float64MultiArray (carrying its publish time,
  so the receiver also measures the command's transport, and a second number as the
  minimal one does); ``minimal``, the same timer
  that also subscribes to joint_states (sensor QoS) and sends -K times the newest
  position: the least a controller written with rclpy does, so ``node - minimal`` is
  what the LnnControllerNode's own work costs and ``minimal - bare`` what receiving
  the sensor costs in rclpy; and ``node``, the LnnControllerNode (esn, N=300, learning
  on);
* load: ``quiet``, or ``loaded`` with a CPU-bound competing process
  (``python -c 'while True: pass'``) running through every subject's phases.

Each subject is timed in two views: ``timer`` (in-process: intervals between timer
callback entries, from the timers' records and the node's TickStats) and ``recv``
(intervals between command arrivals at the receiver). Printed: interval p50 / p99 /
max, late ticks (interval > 1.5 periods) and the achieved rate (messages / s); for the
node the sensor-to-command latency (plant publish of the joint_states a tick used ->
command published, same monotonic clock), the command's transport (bare: publish ->
arrival) and, inside the tick, when the command went out and when the tick (its
learning step after the command) was done; and the CPU time per tick of this process
and of its spinning thread (which runs every callback) while each subject ran (the
process's middleware threads also receive joint_states for the subscriptions of the
subjects not running). ``--breakdown`` adds the node's calls in a tick, each timed by
thread CPU time (wrapped: run it apart from the timing rows).
Options, each measured for every subject: ``--executors``, ``--gc`` (``default`` or
``quiet``: lnn_control.realtime.QuietGc, gc.freeze() + gc.disable() with a 1 Hz timed
collection), ``--priorities`` (SCHED_FIFO of the spinning thread).

Targets (1 kHz and 500 Hz): node p99 interval within 0.1 ms of the bare timer's and
no more late ticks, quiet and loaded. The exit code never depends on them.

    python benchmarks/bench_loop.py [--quick] [--rates 1000 500] [--json out.json]
"""
from __future__ import annotations

import argparse
import collections
import itertools
import json
import os
import signal
import subprocess
import sys
import time
import uuid

from bench_common import interval_stats, spin_for, time_calls
from lnn_control.ros import isolate_domain
import numpy as np

LATE = 1.5          # an interval over LATE periods is a late tick
SUBJECTS = ('bare', 'minimal', 'node')


def merged(windows, t_ns, period_s):
    """Interval statistics over several [t0, t1) windows of one series (no cross-window gap)."""
    t = np.asarray(t_ns, dtype=np.int64)
    parts = [np.diff(t[(t >= a) & (t < b)]) for a, b, *_ in windows]
    iv = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    return interval_stats(np.concatenate(([0], np.cumsum(iv))), period_s, (('late', LATE),))


def dist(values_ns):
    v = np.asarray(values_ns, dtype=np.float64) * 1e-6
    if v.size == 0:
        return {}
    return {'p50_ms': float(np.percentile(v, 50)), 'p99_ms': float(np.percentile(v, 99)),
            'max_ms': float(v.max())}


# -- helper processes ----------------------------------------------------------------
def _spin_until_signal(node):
    import rclpy

    from lnn_control.ros.common import make_executor
    executor = make_executor('events', None)     # the lightest: they are not subjects
    executor.add_node(node)
    stop = []
    signal.signal(signal.SIGINT, lambda *a: stop.append(1))
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    while not stop and rclpy.ok():
        executor.spin_once(timeout_sec=0.05)


def run_plant(args):
    import rclpy
    from sensor_msgs.msg import JointState

    from lnn_control.ros.conversions import set_stamp
    from rclpy.signals import SignalHandlerOptions
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node('bench_plant', namespace=args.namespace)
    pub = node.create_publisher(JointState, 'joint_states', 10)
    msg = JointState(name=['joint1'], position=[0.0], velocity=[0.0])
    t0 = time.monotonic()

    def publish():
        t = time.monotonic() - t0
        msg.position[0] = 0.3 * np.sin(2.0 * np.pi * 0.5 * t)
        msg.velocity[0] = 0.3 * np.pi * np.cos(2.0 * np.pi * 0.5 * t)
        set_stamp(msg.header.stamp, time.perf_counter_ns())
        pub.publish(msg)

    node.create_timer(1.0 / args.plant_rate, publish)
    _spin_until_signal(node)
    return 0


def run_receiver(args):
    import rclpy
    from std_msgs.msg import Float64MultiArray

    from lnn_control.ros.common import RECORD_QOS
    from rclpy.signals import SignalHandlerOptions
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node('bench_receiver', namespace=args.namespace)
    size = 1_000_000
    rec = {k: np.zeros(size, dtype=np.int64) for k in (*SUBJECTS, 'bare_sent')}
    count = dict.fromkeys(SUBJECTS, 0)

    def make(subject):
        arrivals, sent = rec[subject], rec['bare_sent']

        def on_command(msg):
            i = count[subject]
            if i < size:
                arrivals[i] = time.perf_counter_ns()
                if subject == 'bare':
                    sent[i] = int(msg.data[0])
                count[subject] = i + 1
        return on_command

    for subject in SUBJECTS:
        node.create_subscription(Float64MultiArray, f'{subject}/commands', make(subject),
                                 RECORD_QOS)
    _spin_until_signal(node)
    np.savez(args.out, **{k: rec[k][:count[k]] for k in SUBJECTS},
             bare_sent=rec['bare_sent'][:count['bare']])
    return 0


# -- subjects in this process ---------------------------------------------------------
class BareTimer:
    """
    A node with one timer that publishes a preallocated Float64MultiArray; its record.

    ``joint_states`` (a topic): it also subscribes to the plant's joint_states (sensor
    QoS, as the controller) and sends -K times the newest position: the least a
    controller written with rclpy does.
    """

    GAIN = 16.0         # K of the minimal controller's command -K q

    def __init__(self, context, namespace, rate, capacity, name='bare', joint_states=None):
        import rclpy
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Float64MultiArray

        from lnn_control.ros.common import LATCHED_QOS, SENSOR_QOS
        self.node = rclpy.create_node(f'{name}_timer', namespace=f'{namespace}/{name}',
                                      context=context)
        self.pub = self.node.create_publisher(Float64MultiArray, 'commands', LATCHED_QOS)
        self.msg = Float64MultiArray(data=[0.0, 0.0])
        self.position = 0.0
        self.starts = np.zeros(capacity, dtype=np.int64)
        self.count = 0
        self.timer = self.node.create_timer(1.0 / rate, self.tick)
        self.timer.cancel()
        if joint_states:
            self.node.create_subscription(JointState, joint_states, self.on_joint_states,
                                          SENSOR_QOS)

    def on_joint_states(self, msg):
        self.position = msg.position[0]

    def tick(self):
        t = time.perf_counter_ns()
        if self.count < self.starts.size:
            self.starts[self.count] = t
            self.count += 1
        self.msg.data[1] = -self.GAIN * self.position
        self.msg.data[0] = float(time.perf_counter_ns())
        self.pub.publish(self.msg)


def make_controller(context, namespace, rate, size, neuron, capacity, extra=None):
    from rclpy.parameter import Parameter

    from lnn_control.ros.controller_node import LnnControllerNode
    overrides = {'joints': ['joint1'], 'control_rate_hz': float(rate), 'reservoir.size': size,
                 'reservoir.neuron_model': neuron, 'learning_enabled': True,
                 'reference.mode': 'sine', 'sensor_timeout_s': 1.0, **(extra or {})}
    node = LnnControllerNode(
        context=context, namespace=namespace + '/node',
        cli_args=['--ros-args', '-r', f'joint_states:={namespace}/joint_states'],
        parameter_overrides=[Parameter(k, value=v) for k, v in overrides.items()],
        stats_window=capacity)
    node._timer.cancel()
    return node


def run_phase(executor, node, timer, duration, settle):
    """
    Spin one subject alone: its timer runs only now; return its measured window.

    (t0, t1, process CPU s, this thread's CPU s) over the window: the thread that spins
    runs the callbacks, the process's other threads are the middleware's.
    """
    executor.add_node(node)
    timer.reset()
    spin_for(executor, settle, timeout_s=0.05)
    t0, cpu0, thread0 = time.perf_counter_ns(), time.process_time(), time.thread_time()
    spin_for(executor, duration, timeout_s=0.05)
    t1, cpu1, thread1 = time.perf_counter_ns(), time.process_time(), time.thread_time()
    timer.cancel()
    executor.remove_node(node)
    return t0, t1, cpu1 - cpu0, thread1 - thread0


def instrument(node, calls):
    """
    Time the node's calls in a tick by thread CPU time (``--breakdown``) into ``calls``.

    ``calls``: a defaultdict(list), {what: [ns per call]}.

    Wrappers on the instance, and on the class for the joint_states callback (the
    subscription holds the method it was created with: patch before the node exists and
    call again after). Their own cost lands in the tick: use apart from the timing rows.
    """
    from lnn_control.ros.controller_node import LnnControllerNode
    clock = time.thread_time_ns

    def wrap(owner, name, label):
        time_calls(owner, name, calls[label].append, clock)
    if node is None:
        wrap(LnnControllerNode, '_on_joint_states', 'joint_states callback')
        return
    for owner, name, label in ((node.loop, 'act', 'ControlLoop.act (the command)'),
                               (node.loop, 'adapt', 'ControlLoop.adapt (learning)'),
                               (node.desired, 'update', 'desired state'),
                               (node, '_publish_prediction', 'prediction topics'),
                               (node, '_publish_state', '~/controller_state'),
                               (node, 'diagnostics', '/diagnostics message (1 Hz)')):
        wrap(owner, name, label)
    topics = {id(node._commands_pub): 'command publish', id(node._desired_pub): '~/desired publish'}
    publish = node._publisher.publish

    def timed_publish(publisher, msg):      # (its label depends on the publisher)
        t0 = clock()
        out = publish(publisher, msg)
        calls[topics.get(id(publisher), 'other publishes')].append(clock() - t0)
        return out
    node._publisher.publish = timed_publish


def run_rate(args, context, rate, combos, loads):
    """Measure every subject at one rate under every load and option; return raw windows."""
    from lnn_control.realtime import QuietGc
    from lnn_control.ros.common import make_executor

    ns = f'/bench_{uuid.uuid4().hex[:8]}'
    out = os.path.join(args.tmp, f'recv_{rate:g}.npz')
    me = [sys.executable, os.path.abspath(__file__), '--namespace', ns]
    plant = subprocess.Popen(me + ['--plant', '--plant-rate', str(rate)])
    receiver = subprocess.Popen(me + ['--receiver', '--out', out])
    phase_s = args.duration + args.settle
    capacity = int(rate * (len(combos) * len(loads) * args.rounds * phase_s + 60))
    bare = BareTimer(context, ns, rate, capacity)
    minimal = BareTimer(context, ns, rate, capacity, 'minimal', f'{ns}/joint_states')
    from lnn_control.cli import _param_overrides
    calls = collections.defaultdict(list) if args.breakdown else None
    if calls is not None:
        instrument(None, calls)
    node = make_controller(context, ns, rate, args.size, args.neuron, capacity,
                           _param_overrides(args.param))
    if calls is not None:
        instrument(node, calls)
    gc_policy = QuietGc()
    for n in (bare.node, minimal.node, node):
        n.create_timer(1.0, gc_policy.collect)
    windows = {}
    try:
        executor = make_executor('events', context)      # wait for the first joint_states
        executor.add_node(node)
        node._timer.reset()
        deadline = time.monotonic() + 60.0
        while node.commands_published == 0 and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        node._timer.cancel()
        executor.remove_node(node)
        executor.shutdown()
        if node.commands_published == 0:
            raise RuntimeError('no joint_states from the plant within 60 s')
        for recorded in (calls or {}).values():
            recorded.clear()            # (start-up: the first joint_states, warm-up)
        time.sleep(1.0)                 # the receiver's discovery of the publishers
        for load in loads:
            hog = (subprocess.Popen([sys.executable, '-c', 'while True: pass'])
                   if load == 'loaded' else None)
            try:
                for kind, gc_mode, prio in combos:
                    executor = make_executor(kind, context)
                    if gc_mode == 'quiet':
                        gc_policy.start()
                    if prio:
                        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(prio))
                    w = windows.setdefault((load, kind, gc_mode, prio),
                                           {k: [] for k in SUBJECTS})
                    order = [('bare', bare.node, bare.timer),
                             ('minimal', minimal.node, minimal.timer), ('node', node, node._timer)]
                    for r in range(args.rounds):     # every other round reversed
                        for name, n, timer in (order if r % 2 == 0 else order[::-1]):
                            w[name].append(run_phase(executor, n, timer, args.duration,
                                                     args.settle))
                    if prio:
                        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
                    if gc_mode == 'quiet':
                        gc_policy.stop()
                    executor.shutdown()
            finally:
                if hog:
                    hog.kill()
                    hog.wait()
    finally:
        for p in (plant, receiver):
            p.send_signal(signal.SIGINT)
        for p in (plant, receiver):
            p.wait(timeout=60)
    results = summarize(rate, windows, np.load(out), bare, minimal, node.stats)
    if results:
        results[0]['gc_collect_max_ms'] = gc_policy.max_pause_ns * 1e-6
        if calls is not None:
            results[0]['node_calls_cpu_us'] = {
                k: {'calls': len(v), 'p50': float(np.median(v)) * 1e-3,
                    'p99': float(np.percentile(v, 99)) * 1e-3} for k, v in calls.items() if v}
    for n in (bare.node, minimal.node, node):
        n.destroy_node()
    return results


def _in_windows(t, windows):
    sel = np.zeros(t.size, dtype=bool)
    for a, b, *_ in windows:
        sel |= (t >= a) & (t < b)
    return sel


def summarize(rate, windows, recv, bare, minimal, s):
    """One row per (load, option): every subject in both views, latency and transport."""
    n = min(s.count, s.capacity)
    node_starts, compute = s.starts_ns[:n], s.compute_ns[:n]
    results = []
    for (load, kind, gc_mode, prio), w in windows.items():
        period = 1.0 / rate
        row = {'rate_hz': rate, 'load': load, 'executor': kind, 'gc': gc_mode,
               'priority': prio,
               'bare_timer': merged(w['bare'], bare.starts[:bare.count], period),
               'minimal_timer': merged(w['minimal'], minimal.starts[:minimal.count], period),
               'node_timer': merged(w['node'], node_starts, period)}
        row.update((f'{k}_recv', merged(w[k], recv[k], period)) for k in SUBJECTS)
        sel = _in_windows(node_starts, w['node'])
        row['node_compute'] = dist(compute[sel])
        row['command_after_entry'] = dist(s.command_ns[:n][sel])
        row['latency_sensor_to_command'] = dist(
            (node_starts + s.command_ns[:n] - s.sensor_stamp_ns[:n])[sel])
        row['latency_arrival_to_command'] = dist(s.latency_ns[:n][sel])
        arr, sent = recv['bare'], recv['bare_sent']
        bsel = _in_windows(arr, w['bare'])
        row['command_transport'] = dist(arr[bsel] - sent[bsel])
        ticks = {'bare': int(_in_windows(bare.starts[:bare.count], w['bare']).sum()),
                 'minimal': int(_in_windows(minimal.starts[:minimal.count], w['minimal']).sum()),
                 'node': int(sel.sum())}
        row['cpu_per_tick_us'] = {
            subject: {'process': 1e6 * sum(x[2] for x in w[subject]) / max(1, ticks[subject]),
                      'callbacks': 1e6 * sum(x[3] for x in w[subject]) / max(1, ticks[subject])}
            for subject in SUBJECTS}
        results.append(row)
    return results


def report(row):
    def cells(r):
        if not r.get('n'):
            return '   (no data)'
        return (f'{r["p50_ms"]:6.3f} {r["p99_ms"]:6.3f} {r["max_ms"]:7.2f} '
                f'{100 * r["late"]:6.2f} {r["rate_hz"]:7.1f}')
    print(f'{row["rate_hz"]:g} Hz {row["load"]:<6} executor {row["executor"]:<6} '
          f'gc {row["gc"]:<7} priority {row["priority"]}')
    print('  subject view    p50 ms p99 ms  max ms late %  rate/s')
    for view in ('timer', 'recv'):
        for subject in SUBJECTS:
            print(f'  {subject:<7} {view:<6} {cells(row[f"{subject}_{view}"])}')
    for view in ('timer', 'recv'):
        for a, b in (('node', 'bare'), ('minimal', 'bare'), ('node', 'minimal')):
            x, y = row[f'{a}_{view}'], row[f'{b}_{view}']
            if x.get('n') and y.get('n'):
                print(f'  {view:<6} {a} - {b}: p99 {x["p99_ms"] - y["p99_ms"]:+.3f} ms, late '
                      f'{100 * (x["late"] - y["late"]):+.2f} points')
    lat, tr, c, out = (row['latency_sensor_to_command'], row['command_transport'],
                       row['node_compute'], row['command_after_entry'])
    if lat and tr and c and out:
        print(f'  joint_states published -> command published p50 {lat["p50_ms"]:.3f} '
              f'p99 {lat["p99_ms"]:.3f} ms; command transport p50 {tr["p50_ms"]:.3f} '
              f'p99 {tr["p99_ms"]:.3f} ms')
        print(f'  tick: command out after p50 {out["p50_ms"]:.3f} p99 {out["p99_ms"]:.3f} ms, '
              f'whole tick (learning included) p50 {c["p50_ms"]:.3f} p99 {c["p99_ms"]:.3f} ms')
    cpu = row['cpu_per_tick_us']
    print('  CPU per tick (process / the spinning thread): ' + ', '.join(
        f'{subject} {cpu[subject]["process"]:.0f} / {cpu[subject]["callbacks"]:.0f} us'
        for subject in SUBJECTS))
    sys.stdout.flush()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--rates', type=float, nargs='+', default=[1000.0, 500.0])
    parser.add_argument('--duration', type=float, default=4.0, help='s per phase')
    parser.add_argument('--settle', type=float, default=0.5, help='s before each phase')
    parser.add_argument('--rounds', type=int, default=2, help='phases per subject')
    parser.add_argument('--loads', nargs='+', default=['quiet', 'loaded'],
                        choices=('quiet', 'loaded'))
    parser.add_argument('--executors', nargs='+', default=['single', 'events'],
                        choices=('single', 'events'))
    parser.add_argument('--gc', nargs='+', default=['default', 'quiet'],
                        choices=('default', 'quiet'))
    parser.add_argument('--priorities', type=int, nargs='+', default=[0],
                        help='SCHED_FIFO priority of this process while spinning (0: off)')
    parser.add_argument('--breakdown', action='store_true',
                        help="time the node's calls in a tick (thread CPU per call); the "
                        'wrappers cost time of their own: run it apart from the timing rows')
    parser.add_argument('--size', type=int, default=300)
    parser.add_argument('--neuron', default='esn')
    parser.add_argument('--param', action='append', default=[], metavar='NAME=VALUE',
                        help="the node's parameter (repeatable), as lnn-control --param")
    parser.add_argument('--quick', action='store_true', help='2 s phases, 1 round')
    parser.add_argument('--json', help='write the results here')
    parser.add_argument('--plant', action='store_true', help=argparse.SUPPRESS)
    parser.add_argument('--receiver', action='store_true', help=argparse.SUPPRESS)
    parser.add_argument('--plant-rate', type=float, help=argparse.SUPPRESS)
    parser.add_argument('--namespace', help=argparse.SUPPRESS)
    parser.add_argument('--out', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    isolate_domain()
    if args.plant:
        return run_plant(args)
    if args.receiver:
        return run_receiver(args)
    if args.quick:
        args.duration, args.rounds = 2.0, 1

    import tempfile

    import rclpy
    combos = list(itertools.product(args.executors, args.gc, args.priorities))
    context = rclpy.Context()
    rclpy.init(context=context)
    results = []
    print(f'N={args.size} {args.neuron}, learning on; phases {args.duration:g} s x '
          f'{args.rounds} per subject; late = interval > {LATE} periods; load average '
          f'{os.getloadavg()[0]:.2f}', flush=True)
    try:
        with tempfile.TemporaryDirectory() as args.tmp:
            for rate in args.rates:
                rows = run_rate(args, context, rate, combos, args.loads)
                for row in rows:
                    report(row)
                print(f'  gc.collect() pause max {rows[0]["gc_collect_max_ms"]:.3f} ms',
                      flush=True)
                for what, c in rows[0].get('node_calls_cpu_us', {}).items():
                    print(f'  node, thread CPU per call: {what:<32} p50 {c["p50"]:7.1f} us  '
                          f'p99 {c["p99"]:7.1f} us  ({c["calls"]} calls)')
                results += rows
    finally:
        rclpy.try_shutdown(context=context)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, 'w') as f:
            json.dump({'size': args.size, 'neuron': args.neuron, 'duration_s': args.duration,
                       'rounds': args.rounds, 'late_periods': LATE, 'rows': results}, f,
                      indent=2)
    return 0


if __name__ == '__main__':
    sys.exit(main())

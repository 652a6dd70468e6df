"""
How many controller nodes one machine carries: K lnn_controller processes at 100 Hz.

Per K (default 1, 2, 4, 8, 12, 16), in real time:

* K controller processes, ``python -m lnn_control.ros.controller_node`` (the
  ``lnn_controller`` executable's entry point), each in its own namespace ``/robot_<i>``:
  esn, N=300, 100 Hz, learning on, a generated sine reference, otherwise the defaults
  (one joint, kp / kd / command_limit of the bundled pendulum);
* this process, the robots' side: one node that, for every robot, integrates a rigid
  pendulum (the bundled pendulum's mass, length and damping; gravity) driven by that
  robot's latest command, publishes its ``joint_states`` at the control rate, and records
  (a) the arrival of each command (``/robot_<i>/commands``, RELIABLE, as a ros2_control
  forward command controller subscribes) and (b) the header stamp of each
  ``/robot_<i>/lnn_controller/desired`` message (best effort, so that this observer never
  holds the node's writer back): the node stamps it with its clock read at the entry of
  the tick, so its intervals are the node's own tick intervals, seen without touching the
  node. It also reads the nodes' ``/diagnostics`` (tick compute time).

One process simulates all K robots (not one per robot): a source per robot is closer to a
fleet, but K extra Python processes would take CPU from the subjects on this 2-core machine
and measure the harness rather than the controller. The plant reacts to the commands (a
replayed sine would not), so the controller's learning stays meaningful.

Per K, after every node has sent commands and a warm-up (``--warmup``), ``--duration`` s
are measured. Reported per K (worst node unless said): ticks per second, tick interval p99
[ms] and relative to the period, the fraction of intervals over 1.1 periods (``>10%``) and
over 1.5 periods (``missed``, a skipped tick), the command-arrival interval p99 at the
robots' side (adds the transport and this process's own scheduling), the node-reported tick
compute p99, the CPU the nodes and this process used, the machine's 1-minute load average
(before / after) and the CPU steal time over the window (from /proc/stat), and whether
every node kept its p99 interval within 10 % of the period. The sweep stops after a K
whose worst p99 exceeds 1.5 periods (``--keep-going`` runs every K). Before the sweep one
node is started and stopped, so that the Numba cache is warm.

The exit code never depends on the timing.

    python benchmarks/bench_fleet.py [--ks 1 2 4 8 12 16] [--duration 20] [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

from bench_common import interval_stats, spin_for
from lnn_control.ros import isolate_domain
import numpy as np

TOLERANCE = 0.10        # pass: every node's p99 tick interval <= (1 + TOLERANCE) periods
MISSED = 1.5            # an interval over MISSED periods is a skipped tick
CLEAR_FAIL = 1.5        # stop the sweep after a K whose worst p99 exceeds this many periods
OVER = (('over_tol', 1 + TOLERANCE), ('missed', MISSED))   # interval_stats' fractions
# The bundled pendulum (lnn_control/models/pendulum.xml): a 1 kg, 0.5 m rod on a hinge.
MASS, LENGTH, DAMPING, GRAVITY = 1.0, 0.5, 0.01, 9.81
INERTIA = MASS * LENGTH ** 2 / 3.0
SUBSTEP_S = 0.001
# Parent-death signal for the children (Linux prctl PR_SET_PDEATHSIG = 1), so a killed
# harness leaves no controller behind; then exec the real command.
_EXEC_WITH_PDEATHSIG = ('import ctypes, os, signal, sys; '
                        'ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM); '
                        'os.execv(sys.argv[1], sys.argv[1:])')


# -- /proc readings ------------------------------------------------------------------------
def cpu_times():
    """Return the aggregate ``cpu`` line of /proc/stat as a dict of jiffies."""
    with open('/proc/stat') as f:
        fields = f.readline().split()
    names = ('user', 'nice', 'system', 'idle', 'iowait', 'irq', 'softirq', 'steal')
    return dict(zip(names, map(int, fields[1:9])))


def process_cpu_s(pid):
    """Return user + system CPU seconds of a process (0 if it is gone)."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            fields = f.read().rsplit(')', 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def machine_usage(before, after):
    """Return (busy cores, steal %, total %) over an interval of two cpu_times()."""
    d = {k: after[k] - before[k] for k in before}
    total = sum(d.values()) or 1
    busy = total - d['idle'] - d['iowait'] - d['steal']
    return busy / total * os.cpu_count(), 100.0 * d['steal'] / total


# -- the robots' side ------------------------------------------------------------------------
class Fleet:
    """
    K simulated robots in one node: plants, joint_states publishers, recorders.

    Per robot ``i``: ``/robot_<i>/joint_states`` out; ``/robot_<i>/commands`` and
    ``/robot_<i>/lnn_controller/desired`` in (arrival times, and the desired stamps); the
    nodes' ``/diagnostics`` are kept per node, with their arrival time.
    """

    def __init__(self, context, k, rate, capacity):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Float64MultiArray

        from lnn_control.ros.common import COMMAND_QOS, RECORD_BEST_EFFORT_QOS, RECORD_QOS
        self.k, self.period_s = k, 1.0 / rate
        self.node = rclpy.create_node('bench_fleet', context=context)
        self.q, self.qd, self.effort = np.zeros(k), np.zeros(k), np.zeros(k)
        self.commands = np.zeros((k, capacity), dtype=np.int64)     # arrival, perf_counter
        self.n_commands = np.zeros(k, dtype=np.int64)
        self.stamps = np.zeros((k, capacity), dtype=np.int64)       # desired header stamp
        self.stamp_arrivals = np.zeros((k, capacity), dtype=np.int64)
        self.n_stamps = np.zeros(k, dtype=np.int64)
        self.diagnostics = {f'/robot_{i}/lnn_controller': [] for i in range(k)}
        state_qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.pubs, self.msgs = [], []
        for i in range(k):
            ns = f'/robot_{i}'
            self.pubs.append(self.node.create_publisher(JointState, f'{ns}/joint_states',
                                                        state_qos))
            self.msgs.append(JointState(name=['joint1'], position=[0.0], velocity=[0.0],
                                        effort=[0.0]))
            self.node.create_subscription(Float64MultiArray, f'{ns}/commands',
                                          self._on_command(i), COMMAND_QOS)
            # best effort: an observer must not hold the node's RELIABLE writer back (a
            # starved reliable reader made nodes' publish() raise, measured with FIFO nodes)
            self.node.create_subscription(JointState, f'{ns}/lnn_controller/desired',
                                          self._on_desired(i), RECORD_BEST_EFFORT_QOS)
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics,
                                      RECORD_QOS)
        self._last_ns = time.perf_counter_ns()
        self.node.create_timer(self.period_s, self._step)

    def _on_command(self, i):
        def callback(msg):
            t = time.perf_counter_ns()
            if len(msg.data) == 1 and np.isfinite(msg.data[0]):
                self.effort[i] = msg.data[0]
            n = self.n_commands[i]
            if n < self.commands.shape[1]:
                self.commands[i, n] = t
                self.n_commands[i] = n + 1
        return callback

    def _on_desired(self, i):
        def callback(msg):
            n = self.n_stamps[i]
            if n < self.stamps.shape[1]:
                self.stamp_arrivals[i, n] = time.perf_counter_ns()
                self.stamps[i, n] = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
                self.n_stamps[i] = n + 1
        return callback

    def _on_diagnostics(self, msg):
        t = time.perf_counter_ns()
        for status in msg.status:
            record = self.diagnostics.get(status.hardware_id)
            if record is not None:
                record.append((t, {kv.key: kv.value for kv in status.values}))

    def _step(self):
        """Integrate every pendulum to now (1 ms sub-steps), then publish their states."""
        now = time.perf_counter_ns()
        dt = min((now - self._last_ns) * 1e-9, 5 * self.period_s)    # a stall is not replayed
        self._last_ns = now
        steps = max(1, int(round(dt / SUBSTEP_S)))
        h = dt / steps
        q, qd, u = self.q, self.qd, self.effort
        for _ in range(steps):          # semi-implicit Euler, all robots at once
            qd += h * (u - DAMPING * qd - MASS * GRAVITY * 0.5 * LENGTH * np.sin(q)) / INERTIA
            q += h * qd
        stamp = self.node.get_clock().now().to_msg()
        for i, (pub, msg) in enumerate(zip(self.pubs, self.msgs)):
            msg.header.stamp = stamp
            msg.position[0], msg.velocity[0], msg.effort[0] = q[i], qd[i], u[i]
            pub.publish(msg)

    def close(self):
        self.node.destroy_node()


# -- controller processes ---------------------------------------------------------------------
def write_params(path, args):
    """Write the controllers' parameter file (the same for every robot)."""
    params = {'joints': ['joint1'], 'kp': [16.64], 'kd': [1.926], 'command_limit': [20.0],
              'control_rate_hz': float(args.rate), 'reservoir.size': args.size,
              'reservoir.neuron_model': args.neuron, 'learning_enabled': True,
              'reference.mode': 'sine', 'realtime.priority': args.priority}
    with open(path, 'w') as f:
        f.write('/**:\n  ros__parameters:\n')
        for key, value in params.items():
            f.write(f'    {key}: {json.dumps(value)}\n')


def start_controller(i, params, log_dir):
    """Start robot i's controller process; its output goes to a log file."""
    cmd = [sys.executable, '-c', _EXEC_WITH_PDEATHSIG, sys.executable, '-m',
           'lnn_control.ros.controller_node', '--ros-args', '-r', f'__ns:=/robot_{i}',
           '--params-file', params]
    log = open(os.path.join(log_dir, f'robot_{i}.log'), 'w')
    try:
        # cwd: not the caller's, which ``-m`` would put first on sys.path; the nodes import
        # lnn_control from where this process does (PYTHONPATH or the installed package)
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=log_dir)
    finally:
        log.close()


def stop_all(procs, timeout=15.0):
    """SIGINT every process (the node's clean shutdown), then SIGKILL what is left."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    end = time.monotonic() + timeout
    for p in procs:
        try:
            p.wait(timeout=max(0.1, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def log_tail(log_dir, i, lines=15):
    try:
        with open(os.path.join(log_dir, f'robot_{i}.log')) as f:
            return ''.join(f.readlines()[-lines:])
    except OSError:
        return ''


# -- one K ------------------------------------------------------------------------------------
def run_k(args, context, k, params, log_dir):
    """Start K controllers, wait for them, measure one window; return the row."""
    from lnn_control.ros.common import make_executor
    span = args.startup_timeout + args.warmup + args.duration + 10
    fleet = Fleet(context, k, args.rate, int(args.rate * span * 1.2))
    executor = make_executor('events', context)
    executor.add_node(fleet.node)
    load_before = os.getloadavg()[0]
    cpu_before_start = cpu_times()
    procs = []
    try:
        t_launch = time.monotonic()
        procs = [start_controller(i, params, log_dir) for i in range(k)]

        def all_commanding():
            return bool((fleet.n_commands >= args.rate).all())  # a second of commands each
        ok = spin_for(executor, args.startup_timeout, until=all_commanding)
        started_s = time.monotonic() - t_launch
        dead = [i for i, p in enumerate(procs) if p.poll() is not None]
        if not ok or dead:
            silent = [i for i in range(k) if fleet.n_commands[i] < args.rate]
            i = (dead or silent)[0]
            raise RuntimeError(f'K={k}: robots {dead} exited, {silent} sent too few commands '
                               f'within {args.startup_timeout:g} s; robot_{i} log:\n'
                               + log_tail(log_dir, i))
        spin_for(executor, args.warmup)
        pids = [p.pid for p in procs]
        cpu0, own0 = cpu_times(), [process_cpu_s(p) for p in pids]
        self0, steal_before = process_cpu_s(os.getpid()), cpu0
        t0 = time.perf_counter_ns()
        spin_for(executor, args.duration)
        t1 = time.perf_counter_ns()
        cpu1, own1 = cpu_times(), [process_cpu_s(p) for p in pids]
        self1 = process_cpu_s(os.getpid())
        load_after = os.getloadavg()[0]
        dead = [i for i, p in enumerate(procs) if p.poll() is not None]
    finally:
        stop_all(procs)
        executor.shutdown()
    wall = (t1 - t0) * 1e-9
    busy, steal = machine_usage(cpu0, cpu1)
    _, steal_start = machine_usage(cpu_before_start, steal_before)
    nodes_cpu = [(b - a) / wall for a, b in zip(own0, own1)]
    row = summarize(fleet, k, t0, t1)
    fleet.close()
    row.update({
        'k': k, 'duration_s': wall, 'startup_s': started_s, 'exited_during_window': dead,
        'load1_before': load_before, 'load1_after': load_after,
        'steal_pct': steal, 'steal_pct_startup_warmup': steal_start,
        'machine_busy_cores': busy, 'nodes_cpu_cores': float(sum(nodes_cpu)),
        'node_cpu_pct_mean': 100.0 * float(np.mean(nodes_cpu)),
        'harness_cpu_pct': 100.0 * (self1 - self0) / wall,
        'others_busy_cores': busy - sum(nodes_cpu) - (self1 - self0) / wall})
    return row


def _window(times, values, t0, t1):
    sel = (times >= t0) & (times < t1)
    return values[sel]


def _diag_median(records, key, t0, t1):
    vals = []
    for t, values in records:
        if t0 <= t < t1 and key in values:
            try:
                vals.append(float(values[key]))
            except ValueError:
                pass
    vals = [v for v in vals if np.isfinite(v)]
    return float(np.median(vals)) if vals else float('nan')


def _nan_reduce(fn, values):
    values = [v for v in values if np.isfinite(v)]
    return float(fn(values)) if values else float('nan')


def summarize(fleet, k, t0, t1):
    """Per-node statistics over [t0, t1) and the fleet's worst case."""
    period = fleet.period_s
    nodes = []
    for i in range(k):
        n_s, n_c = fleet.n_stamps[i], fleet.n_commands[i]
        ticks = _window(fleet.stamp_arrivals[i, :n_s], fleet.stamps[i, :n_s], t0, t1)
        arrivals = _window(fleet.commands[i, :n_c], fleet.commands[i, :n_c], t0, t1)
        records = fleet.diagnostics[f'/robot_{i}/lnn_controller']
        nodes.append({
            'robot': i, 'tick': interval_stats(np.sort(ticks), period, OVER, min_intervals=2),
            'desired_lost': int(max(0, arrivals.size - ticks.size)),
            'recv': interval_stats(arrivals, period, OVER, min_intervals=2),
            'compute_p50_ms': _diag_median(records, 'tick compute p50 [ms]', t0, t1),
            'compute_p99_ms': _diag_median(records, 'tick compute p99 [ms]', t0, t1),
            'diag_rate_hz': _diag_median(records, 'control rate achieved [Hz]', t0, t1)})

    def worst(view, key, fn=max):
        vals = [n[view].get(key, float('nan')) for n in nodes]
        return float(fn(vals)) if all(np.isfinite(vals)) else float('nan')
    row = {'period_ms': period * 1e3, 'nodes': nodes,
           'rate_min_hz': worst('tick', 'rate_hz', min),
           'rate_mean_hz': float(np.mean([n['tick'].get('rate_hz', np.nan) for n in nodes])),
           'p99_median_ms': float(np.median([n['tick'].get('p99_ms', np.nan) for n in nodes])),
           'p99_worst_ms': worst('tick', 'p99_ms'), 'p99_rel_worst': worst('tick', 'p99_rel'),
           'max_worst_ms': worst('tick', 'max_ms'),
           'over_tol_worst': worst('tick', 'over_tol'), 'missed_worst': worst('tick', 'missed'),
           'recv_p99_worst_ms': worst('recv', 'p99_ms'),
           'recv_rate_min_hz': worst('recv', 'rate_hz', min),
           'desired_lost_max': max(n['desired_lost'] for n in nodes),
           'compute_p50_ms': _nan_reduce(np.median, [n['compute_p50_ms'] for n in nodes]),
           'compute_p99_worst_ms': _nan_reduce(max, [n['compute_p99_ms'] for n in nodes])}
    row['passed'] = bool(np.isfinite(row['p99_rel_worst'])
                         and row['p99_rel_worst'] <= 1 + TOLERANCE)
    return row


# -- report ------------------------------------------------------------------------------------
HEADER = ('   K  ticks/s  p99 ms    p99/T  >10%  missed  recv p99  compute  node CPU  harness'
          '  load1      steal  others  pass\n'
          '      min     med/worst  worst  worst worst   worst ms  p99 ms   % core    % core'
          '   bef->aft   %      cores')


def report_row(r):
    print(f'{r["k"]:4d}  {r["rate_min_hz"]:6.1f}  {r["p99_median_ms"]:5.2f}/'
          f'{r["p99_worst_ms"]:5.2f}  {r["p99_rel_worst"]:5.2f}  {100 * r["over_tol_worst"]:4.1f}  '
          f'{100 * r["missed_worst"]:5.2f}  {r["recv_p99_worst_ms"]:7.2f}  '
          f'{r["compute_p99_worst_ms"]:7.3f}  {r["node_cpu_pct_mean"]:7.1f}  '
          f'{r["harness_cpu_pct"]:7.1f}  {r["load1_before"]:4.2f}->{r["load1_after"]:4.2f}  '
          f'{r["steal_pct"]:5.1f}  {r["others_busy_cores"]:5.2f}  '
          f'{"yes" if r["passed"] else "NO"}', flush=True)


def largest_passing(rows):
    """Return (largest K passed with every smaller K passing, largest K passed at all)."""
    monotone = None
    for r in sorted(rows, key=lambda r: r['k']):
        if not r['passed']:
            break
        monotone = r['k']
    passed = [r['k'] for r in rows if r['passed']]
    return monotone, (max(passed) if passed else None)


def warm_cache(args, context, params, log_dir):
    """Start one controller until it commands, so the Numba cache is compiled; return s."""
    t = time.monotonic()
    row_args = argparse.Namespace(**vars(args))
    row_args.warmup, row_args.duration = 0.0, 0.5
    run_k(row_args, context, 1, params, log_dir)
    return time.monotonic() - t


def git_revision():
    """Return ``git describe`` of the lnn_control in use ('' outside a git checkout)."""
    import lnn_control
    here = os.path.dirname(os.path.abspath(lnn_control.__file__))
    try:
        out = subprocess.run(['git', 'describe', '--always', '--dirty'], cwd=here,
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ''


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--ks', type=int, nargs='+', default=[1, 2, 4, 8, 12, 16])
    parser.add_argument('--duration', type=float, default=20.0, help='measured s per K')
    parser.add_argument('--warmup', type=float, default=5.0,
                        help='s between every node commanding and the measurement')
    parser.add_argument('--startup-timeout', type=float, default=180.0,
                        help='s for all K nodes to start and command')
    parser.add_argument('--rate', type=float, default=100.0, help='control rate [Hz]')
    parser.add_argument('--size', type=int, default=300)
    parser.add_argument('--neuron', default='esn')
    parser.add_argument('--priority', type=int, default=0,
                        help='SCHED_FIFO priority of the nodes (their realtime.priority '
                             'parameter: the spinning thread) and of the spinning thread of '
                             'this process; 0 (default): normal scheduling')
    parser.add_argument('--keep-going', action='store_true',
                        help=f'measure every K, also after one whose p99 exceeds '
                             f'{CLEAR_FAIL} periods')
    parser.add_argument('--no-warm-cache', action='store_true',
                        help='skip starting one node before the sweep')
    parser.add_argument('--json', help='write the results here')
    args = parser.parse_args(argv)
    isolate_domain()        # keeps a ROS_DOMAIN_ID that is set; discovery on this machine

    import lnn_control
    import rclpy
    from rclpy.signals import SignalHandlerOptions
    # SIGTERM -> SystemExit, so the finally clauses stop the children (Ctrl-C: KeyboardInterrupt)
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(128 + signal.SIGTERM))
    context = rclpy.Context()
    rclpy.init(context=context, signal_handler_options=SignalHandlerOptions.NO)
    if args.priority:
        # this thread only (the middleware's threads exist already); not inherited by the
        # controller processes, which set their own from realtime.priority
        os.sched_setscheduler(0, os.SCHED_FIFO | os.SCHED_RESET_ON_FORK,
                              os.sched_param(args.priority))
    rows = []
    meta = {'rate_hz': args.rate, 'size': args.size, 'neuron': args.neuron,
            'duration_s': args.duration, 'warmup_s': args.warmup, 'tolerance': TOLERANCE,
            'priority': args.priority,
            'missed_periods': MISSED, 'cpus': os.cpu_count(), 'revision': git_revision(),
            'ros_domain_id': os.environ.get('ROS_DOMAIN_ID'),
            'lnn_control': os.path.dirname(os.path.abspath(lnn_control.__file__)),
            'started': time.strftime('%Y-%m-%d %H:%M:%S %Z')}
    try:
        with tempfile.TemporaryDirectory(prefix='bench_fleet_') as tmp:
            params = os.path.join(tmp, 'params.yaml')
            write_params(params, args)
            print(f'{args.neuron} N={args.size} at {args.rate:g} Hz, learning on, '
                  f'SCHED_FIFO priority {args.priority or "off"}; '
                  f'{args.duration:g} s per K after {args.warmup:g} s warm-up; '
                  f'{os.cpu_count()} CPUs; ROS_DOMAIN_ID {meta["ros_domain_id"]}; '
                  f'lnn_control {meta["lnn_control"]} (revision {meta["revision"] or "?"}); '
                  f'{meta["started"]}', flush=True)
            if not args.no_warm_cache:
                meta['warm_cache_s'] = warm_cache(args, context, params, tmp)
                print(f'Numba cache warm: one node started, commanded and stopped in '
                      f'{meta["warm_cache_s"]:.1f} s', flush=True)
            print(HEADER, flush=True)
            for k in args.ks:
                try:
                    row = run_k(args, context, k, params, tmp)
                except RuntimeError as e:       # a node died or never commanded
                    print(f'K={k} failed: {e}', flush=True)
                    rows.append({'k': k, 'passed': False, 'error': str(e)})
                    break
                rows.append(row)
                report_row(row)
                if not args.keep_going and row['p99_rel_worst'] > CLEAR_FAIL:
                    print(f'K={k} clearly fails (worst p99 {row["p99_rel_worst"]:.2f} periods '
                          f'> {CLEAR_FAIL}): larger K not measured', flush=True)
                    break
                time.sleep(2.0)     # the stopped participants leave the domain
    finally:
        rclpy.try_shutdown(context=context)
    monotone, any_k = largest_passing(rows)
    print(f'pass: every node p99 tick interval <= {1 + TOLERANCE:g} x period '
          f'({(1 + TOLERANCE) * 1e3 / args.rate:.1f} ms). Largest passing K: {monotone}'
          + (f' (K={any_k} also passed, above a failing K)' if any_k != monotone else ''),
          flush=True)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, 'w') as f:
            json.dump({**meta, 'largest_passing_k': monotone, 'rows': rows}, f, indent=2)
    return 0


if __name__ == '__main__':
    sys.exit(main())

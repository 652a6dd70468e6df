#!/usr/bin/env python3
"""
Per-tick cost of the adaptive readout: reservoir step + RLS update.

Compares, in one run and on one thread, for N in {100, 300, 1000, 2000}
reservoir neurons, 14 inputs (2 joints x 7) and 2 outputs, float64:

- ``lnn_control``: ``Reservoir.step`` (Numba, CSR) + ``RLSReadout.train`` (prediction,
  a-priori error and the fused lazy rank-1 RLS over the upper triangle of P: one call);
- ``reservoirpy``: ``(Reservoir >> RLS).partial_fit`` on one time step
  (reservoirpy 0.4.x, an optional benchmark dependency), with the very same
  W_in, W (scipy CSR), bias and leak as lnn_control's reservoir;
- ``numpy``: the naive version from ``lnn_control.kernels_numpy`` (dense W tanh
  step + textbook RLS on the full P).

Also measures the memory-bandwidth floor of one pass over P (a streaming
``np.copyto`` of an N_f x N_f float64 array, N_f = N + m + 1: one read and one
write) and prints lnn_control's medians over it, one read of P's upper triangle
(the least an exact RLS step does: P phi depends on all of it; the ratio to
reservoirpy it allows is printed beside the target), and the floors of one tick:
arithmetic (its FMAs at the FMA throughput measured in the same run) and
traffic (its bytes at the copy's bandwidth). Then rows for 1, 2 and 7 joints
(8 inputs and one output per joint) at N=300 and 1000.

Each tick is timed with ``time.perf_counter_ns`` after a warm-up, with the
garbage collector off. The implementations and the copy are timed in
interleaved rounds (order rotated each round) so that load drift on a shared
machine hits them alike. Before timing, lnn_control's predictions are checked
against the numpy reference and reservoirpy's reservoir states against
lnn_control's (N <= 300).

Usage::

    python benchmarks/bench_tick.py [--json OUT] [--quick] [--sizes 100,300]
        [--joints 1,2,7] [--joint-sizes 300,1000]

Targets are reported as text; the exit code does not depend on them.
"""
import argparse
import ctypes
import datetime
import gc
import json
import os
import platform
import sys
import time

# One thread for everyone: must be set before numpy / numba are imported.
_THREAD_VARS = ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS',
                'NUMBA_NUM_THREADS')
for _var in _THREAD_VARS:
    os.environ[_var] = '1'

try:
    import lnn_control
except ImportError:  # run from a source checkout without PYTHONPATH
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import lnn_control

from lnn_control import kernels_numpy  # noqa: E402
from lnn_control.reservoir import Reservoir  # noqa: E402
from lnn_control.rls import RLSReadout  # noqa: E402
import numpy as np  # noqa: E402

SIZES = (100, 300, 1000, 2000)
N_INPUTS = 16          # 2 joints x 8 controller inputs
N_OUTPUTS = 2
DENSITY = 0.05         # recurrent connectivity (lnn_control's default)
LEAK = 0.3
FORGETTING = 0.9999
DELTA = 1.0            # initial covariance P0 = DELTA * I (reservoirpy: alpha = 1/DELTA)
RPY_SKIP_STEP_S = 1.0  # skip reservoirpy at a size where one step takes longer

# (timed ticks, warm-up ticks) per N; --quick uses the second table.
TICKS = {100: (2000, 200), 300: (2000, 200), 1000: (1000, 100), 2000: (300, 30)}
TICKS_QUICK = {100: (200, 20), 300: (200, 20), 1000: (40, 5), 2000: (20, 3)}
ROUNDS = (10, 2)       # (full, quick) interleaved rounds per size

IMPLS = ('lnn_control', 'reservoirpy', 'numpy')


# --------------------------------------------------------------------------
# environment report
# --------------------------------------------------------------------------

def _openblas_ctypes_info():
    """
    Return the OpenBLAS libraries mapped into this process, with their thread counts.

    Fallback for when threadpoolctl is not installed: finds the loaded
    OpenBLAS shared objects in /proc/self/maps and asks each one directly
    (numpy >= 2 ships scipy-openblas with prefixed, ILP64-suffixed symbols).
    """
    paths = []
    try:
        with open('/proc/self/maps') as f:
            for line in f:
                fields = line.split()
                path = fields[5] if len(fields) >= 6 else ''
                if 'openblas' in os.path.basename(path).lower() and path not in paths:
                    paths.append(path)
    except OSError:
        return []
    spellings = ('scipy_openblas_{}64_', 'scipy_openblas_{}', 'openblas_{}64_', 'openblas_{}')
    info = []
    for path in paths:
        try:
            lib = ctypes.CDLL(path, mode=getattr(os, 'RTLD_NOLOAD', 0) | ctypes.RTLD_GLOBAL)
        except OSError:
            continue
        entry = {'filepath': path}
        for what, restype in (('get_num_threads', ctypes.c_int),
                              ('get_corename', ctypes.c_char_p),
                              ('get_config', ctypes.c_char_p)):
            for spelling in spellings:
                fn = getattr(lib, spelling.format(what), None)
                if fn is None:
                    continue
                fn.restype = restype
                value = fn()
                entry[what] = value.decode() if isinstance(value, bytes) else value
                break
        info.append(entry)
    return info


def report_threads():
    """Print what the BLAS and numba thread pools use; return a short summary."""
    print('thread settings:', ', '.join(f'{v}={os.environ.get(v)}' for v in _THREAD_VARS))
    for var in ('OPENBLAS_CORETYPE', 'OPENBLAS_L2_SIZE'):
        print(f'{var}={os.environ.get(var, "(unset)")}  (left as found)')
    import numba
    print(f'numba threads: {numba.get_num_threads()} '
          f'(NUMBA_NUM_THREADS={numba.config.NUMBA_NUM_THREADS})')
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        threadpool_info = None
    if threadpool_info is not None:
        pools = threadpool_info()
        print('threadpoolctl:')
        for p in pools:
            print(f"  {p.get('internal_api')} {p.get('version')} "
                  f"num_threads={p.get('num_threads')} arch={p.get('architecture')} "
                  f"({os.path.basename(p.get('filepath', ''))})")
        return [p.get('num_threads') for p in pools]
    pools = _openblas_ctypes_info()
    print('threadpoolctl not installed; asking the loaded OpenBLAS libraries directly:')
    if not pools:
        print('  (no OpenBLAS library found in this process)')
    for p in pools:
        print(f"  {os.path.basename(p['filepath'])}: num_threads={p.get('get_num_threads', '?')} "
              f"core={p.get('get_corename', '?')} config={p.get('get_config', '?')}")
    return [p.get('get_num_threads') for p in pools]


def machine_summary():
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    cpu = line.split(':', 1)[1].strip()
                    break
    except OSError:
        pass
    return f'{cpu}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}'


def versions():
    out = {'python': platform.python_version(), 'numpy': np.__version__}
    import numba
    out['numba'] = numba.__version__
    for mod in ('reservoirpy', 'scipy'):
        try:
            out[mod] = __import__(mod).__version__
        except ImportError:
            out[mod] = None
    return out


# --------------------------------------------------------------------------
# the three implementations: each returns a tick(u, y) closure
# --------------------------------------------------------------------------

def make_lnn(res, m, n_out=N_OUTPUTS):
    readout = RLSReadout(m + res.size, n_out, forgetting_factor=FORGETTING,
                         initial_covariance=DELTA)
    phi = np.empty(m + res.size)
    err = np.empty(n_out)
    step, train = res.step, readout.train

    def tick(u, y):
        """Return the a-priori error (target - prediction), as the numpy reference does."""
        x = step(u)
        phi[:m] = u
        phi[m:] = x
        return train(phi, y, err)       # prediction, error and RLS step: one Numba call
    return tick


def make_numpy(res, m, n_out=N_OUTPUTS):
    w_in, w, bias = res.w_in, res.dense_recurrent(), res.bias
    rls = kernels_numpy.RLS(m + res.size + 1, n_out, DELTA, FORGETTING)
    state = {'x': np.zeros(res.size)}
    esn_step, concatenate, one = kernels_numpy.esn_step, np.concatenate, np.ones(1)

    def tick(u, y):
        x = esn_step(state['x'], u, w_in, w, bias, LEAK)
        state['x'] = x
        return rls.update(concatenate((one, u, x)), y)
    return tick


def make_reservoirpy(res, m):
    """
    Build (Reservoir >> RLS) with lnn_control's W_in, W (CSR), bias and leak.

    RLS sees the N reservoir states (reservoirpy's ``>>`` feeds it only the
    reservoir), so its P is N x N, slightly smaller than lnn_control's
    (N+m+1) x (N+m+1); its bias is learned outside P (running mean).
    """
    import scipy.sparse
    from reservoirpy.nodes import RLS as RpyRLS, Reservoir as RpyReservoir
    w = scipy.sparse.csr_array((res.data.copy(), res.indices.copy(), res.indptr.copy()),
                               shape=(res.size, res.size))
    reservoir = RpyReservoir(units=res.size, lr=LEAK, Win=res.w_in.copy(), W=w,
                             bias=res.bias.copy(), input_dim=m, seed=0)
    readout = RpyRLS(alpha=1.0 / DELTA, forgetting=FORGETTING)
    model = reservoir >> readout
    partial_fit = model.partial_fit

    def tick(u, y):
        # one time step as a (1, dim) time series: the documented online path
        return partial_fit(u, y)
    tick.two_d = True
    tick.model = model
    return tick


# --------------------------------------------------------------------------
# timing
# --------------------------------------------------------------------------

def signals(n_ticks, m, seed=1, n_out=N_OUTPUTS):
    """Smooth, persistently exciting inputs and targets, shape (T, 1, dim)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_ticks)[:, None] * 0.01
    freq = rng.uniform(0.2, 3.0, (1, m))
    phase = rng.uniform(0, 2 * np.pi, (1, m))
    u = np.sin(2 * np.pi * freq * t + phase) + 0.05 * rng.standard_normal((n_ticks, m))
    y = np.stack([np.sin(2 * np.pi * (0.7 + 0.6 * k) * t[:, 0] + k) for k in range(n_out)], 1)
    return np.ascontiguousarray(u[:, None, :]), np.ascontiguousarray(y[:, None, :])


class TickRunner:
    """Runs one implementation's ticks in chunks; keeps its state between chunks."""

    def __init__(self, name, tick, u, y):
        self.name, self.tick = name, tick
        two_d = getattr(tick, 'two_d', False)
        self.u = u if two_d else u[:, 0, :]
        self.y = y if two_d else y[:, 0, :]
        self.next = 0
        self.times = []

    def warm_up(self, n):
        for _ in range(n):
            self.tick(self.u[self.next], self.y[self.next])
            self.next += 1

    def timed(self, n):
        """Time ``n`` ticks one by one (perf_counter_ns around each call)."""
        tick, uu, yy, clock = self.tick, self.u, self.y, time.perf_counter_ns
        times = np.empty(n, dtype=np.int64)
        start = self.next
        for k in range(n):
            i = start + k
            t0 = clock()
            tick(uu[i], yy[i])
            times[k] = clock() - t0
        self.next += n
        self.times.append(times)


class CopyRunner:
    """Streaming copy of an nf x nf float64 array: one read + one write pass over P."""

    name = 'copy_floor'

    def __init__(self, nf):
        self.src = np.random.default_rng(0).standard_normal((nf, nf))
        self.dst = np.empty_like(self.src)
        self.nbytes = self.src.nbytes
        self.times = []

    def warm_up(self, n):
        for _ in range(n):
            np.copyto(self.dst, self.src)

    def timed(self, n):
        src, dst, clock = self.src, self.dst, time.perf_counter_ns
        times = np.empty(n, dtype=np.int64)
        for k in range(n):
            t0 = clock()
            np.copyto(dst, src)
            times[k] = clock() - t0
        self.times.append(times)


_TRIANGLE_SUM = None


def triangle_sum(p):
    """Read the upper triangle of ``p`` once (its sum, vectorised): P phi reads no less."""
    global _TRIANGLE_SUM
    if _TRIANGLE_SUM is None:
        from numba import njit

        @njit(fastmath={'reassoc', 'contract'})
        def kernel(p):
            s = 0.0
            for i in range(p.shape[0]):
                row = p[i, i:]
                for j in range(row.shape[0]):
                    s += row[j]
            return s
        _TRIANGLE_SUM = kernel
    return _TRIANGLE_SUM(p)


class ReadRunner(CopyRunner):
    """
    One read of the upper triangle of an nf x nf float64 array: the least an exact RLS step does.

    P phi depends on every element of P's triangle, so a step reads each once at least
    (a step that only read P, with its updates deferred, measured no faster at N=1000).
    """

    name = 'read_floor'

    def __init__(self, nf):         # (no destination: nothing is written)
        self.src = np.random.default_rng(0).standard_normal((nf, nf))
        self.times = []

    def warm_up(self, n):
        for _ in range(n):
            triangle_sum(self.src)

    def timed(self, n):
        src, clock = self.src, time.perf_counter_ns
        times = np.empty(n, dtype=np.int64)
        for k in range(n):
            t0 = clock()
            triangle_sum(src)
            times[k] = clock() - t0
        self.times.append(times)


def run_interleaved(runners, counts, rounds):
    """
    Time every runner in ``rounds`` interleaved chunks (rotating the order).

    On a shared machine the load drifts; interleaving makes a slow period hit
    every implementation (and the copy floor) alike, so the ratios hold up
    better than with one long block per implementation.
    """
    chunks = {r.name: np.diff(np.linspace(0, counts[r.name], rounds + 1).astype(int))
              for r in runners}
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        for k in range(rounds):
            shift = k % len(runners)
            for r in runners[shift:] + runners[:shift]:
                if chunks[r.name][k]:
                    r.timed(int(chunks[r.name][k]))
    finally:
        if gc_was_enabled:
            gc.enable()
    return {r.name: np.concatenate(r.times) for r in runners}


def stats_us(times_ns):
    t = np.asarray(times_ns, dtype=float) / 1e3
    return float(np.median(t)), float(np.percentile(t, 99))


def rpy_reservoir_check(res, m, n_ticks=50):
    """Compare reservoirpy's reservoir states with lnn_control's on the same inputs."""
    tick, twin = make_reservoirpy(res, m), res.twin()
    u, y = signals(n_ticks, m, seed=7)
    worst = 0.0
    for k in range(n_ticks):
        tick(u[k], y[k])
        x = twin.step(u[k, 0])
        worst = max(worst, float(np.max(np.abs(tick.model.nodes[0].state['out'] - x))))
    return worst


def parity_check(res, m, n_ticks=50):
    """lnn_control vs the numpy reference on the same data: max |prediction diff| (= of errors)."""
    a, b = make_lnn(res.twin(), m), make_numpy(res, m)
    u, y = signals(n_ticks, m, seed=7)
    worst = 0.0
    for k in range(n_ticks):
        err_a = a(u[k, 0], y[k, 0]).copy()    # both return the a-priori error
        err_b = b(u[k, 0], y[k, 0])
        worst = max(worst, float(np.max(np.abs(err_a - err_b))))
    return worst


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------

def controller_overhead(n=300, ticks=2000, skip=200, extra=None):
    """
    Time AdaptiveController.step with the defaults and, inside the same ticks, its layers.

    Controllers built without a layer learn differently (a supervisor's hold skips RLS
    steps, the forward model's anomaly restarts the covariances), so comparing their
    ticks compared their states, not the layers (one run read -17 % for the safety
    layers and +38 % for the forward model). Here one controller with the defaults runs,
    and the calls of its forward model (``_forecast_step``), its learning supervisor
    (``supervisor.observe``) and its change detector (``change_detector.observe``) are
    timed inside its ticks (their wrappers' own cost, two clock reads, counts against
    them). Returns, over the ticks after the first ``skip`` (start-up), the median tick
    [us], each layer's median per tick, the medians of the tick less the layers (all of
    them; all but the forward model) and how many of those ticks took an RLS step; and the
    means of the forward model and of the tick without it. ``extra``: settings over the
    defaults.
    """
    from bench_common import time_calls
    from lnn_control.controller import AdaptiveController

    ctrl = AdaptiveController({'joints': ['j1', 'j2'], 'kp': [50.0, 20.0], 'kd': [5.0, 2.0],
                               'command_limit': [40.0, 20.0], 'reservoir.size': n,
                               **(extra or {})})
    spent = {'forward model': [], 'supervisor': [], 'change detector': []}
    clock = time.perf_counter_ns
    time_calls(ctrl, '_forecast_step', spent['forward model'].append, clock)
    time_calls(ctrl.supervisor, 'observe', spent['supervisor'].append, clock)
    time_calls(ctrl.change_detector, 'observe', spent['change detector'].append, clock)
    w = 2 * np.pi * np.array([0.3, 0.5])
    rows = []
    for k in range(ticks):
        t = k * 0.01
        q_d = 0.5 * np.sin(w * t)
        measured = (q_d * 0.98, 0.5 * w * np.cos(w * t))
        desired = (q_d, 0.5 * w * np.cos(w * t), -0.5 * w * w * np.sin(w * t))
        for calls in spent.values():
            calls.clear()
        updates = ctrl.slow.updates
        t0 = clock()
        ctrl.step(measured, desired)
        rows.append((clock() - t0, *map(sum, spent.values()), ctrl.slow.updates - updates))
    r = np.array(rows[skip:], dtype=np.float64)
    tick, forward, supervisor, detector, learned = r.T
    us = {'tick': tick, 'forward model': forward, 'supervisor': supervisor,
          'change detector': detector, 'without them': tick - forward - supervisor - detector,
          'without the forward model': tick - forward}
    out = {k: float(np.median(v)) / 1e3 for k, v in us.items()}
    out['learning ticks'], out['ticks'] = int(learned.sum()), int(learned.size)
    # the mean counts what the median leaves out: the memory readout's RLS step every
    # few ticks, and the outliers
    out['forward model mean'] = float(forward.mean()) / 1e3
    out['without the forward model mean'] = float((tick - forward).mean()) / 1e3
    return out


# --------------------------------------------------------------------------
# floors: what the machine needs at least for one tick's work
# --------------------------------------------------------------------------

_FMA_PEAK_KERNEL = None


def fma_peak_per_s(reps=200):
    """
    Measure the machine's double-precision FMA throughput (FMAs per second, one thread).

    A Numba loop of 8 independent accumulators fed by one load each 8 FMAs (in L1),
    vectorised as the RLS kernel is; the best of several timings.
    """
    global _FMA_PEAK_KERNEL
    if _FMA_PEAK_KERNEL is None:
        from numba import njit

        @njit(fastmath={'reassoc', 'contract'})
        def kernel(a, c, reps):
            s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
            for _ in range(reps):
                for j in range(a.shape[0]):
                    x = a[j]
                    s0 += x * c[0]
                    s1 += x * c[1]
                    s2 += x * c[2]
                    s3 += x * c[3]
                    s4 += x * c[4]
                    s5 += x * c[5]
                    s6 += x * c[6]
                    s7 += x * c[7]
            return s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7
        _FMA_PEAK_KERNEL = kernel
    a, c = np.full(512, 0.5), np.full(8, 0.999)
    _FMA_PEAK_KERNEL(a, c, 1)
    best = min(_timed_once(lambda: _FMA_PEAK_KERNEL(a, c, reps)) for _ in range(30))
    return 8 * a.size * reps / best


def bandwidth_at(n, m):
    """
    Bytes per second moved by a copy whose working set is the triangle of P (N_f = N + m + 1).

    The RLS pass works in place on N_f (N_f + 1) / 2 elements: a copy between two arrays of
    half that size has the same working set, so it streams from the same cache level.
    """
    nf = n + m + 1
    half = max(1, nf * (nf + 1) // 4)
    src, dst = np.ones(half), np.empty(half)
    np.copyto(dst, src)
    times = [_timed_once(lambda: np.copyto(dst, src)) for _ in range(50)]
    return 2 * src.nbytes / float(np.median(times))


def _timed_once(fn):
    t0 = time.perf_counter_ns()
    fn()
    return (time.perf_counter_ns() - t0) * 1e-9


def tick_work(n, m, n_out, nnz_per_row):
    """
    Return the FMAs and bytes of memory traffic of one lnn_control tick (reservoir + RLS).

    RLS: the fused pass over the upper triangle of P (N_f (N_f + 1) / 2 elements,
    N_f = N + m + 1) does 3 FMAs per element (rank-1 update, P phi's row sum and its
    column sum) and reads and writes each element once; the readout and the weight
    update add 2 N_f n_out. Reservoir: N (m + nnz per row) FMAs (the tanh is not
    counted), W_in, the CSR values and indices read once.
    """
    nf = n + m + 1
    tri = nf * (nf + 1) // 2
    fmas = 3 * tri + 2 * nf * n_out + n * (m + nnz_per_row)
    traffic = 2 * 8 * tri + 8 * n * m + 16 * n * nnz_per_row + 8 * nf * (3 + 2 * n_out)
    return fmas, traffic


def floors_us(n, m, n_out, nnz_per_row, fma_per_s, bytes_per_s):
    """Return (arithmetic floor, traffic floor) of one tick in us."""
    fmas, traffic = tick_work(n, m, n_out, nnz_per_row)
    return fmas / fma_per_s * 1e6, traffic / bytes_per_s * 1e6


def run_joints(sizes, joints, impls, have_rpy, quick, rounds):
    """
    Time lnn_control (and reservoirpy) for 1, 2, 7 joints: 8 inputs and 1 output per joint.

    Returns result rows {'n', 'joints', 'inputs', 'outputs', 'impl', 'median_us', 'p99_us',
    'fmas', 'bytes_moved'} (``print_joints`` adds the floors).
    """
    rows = []
    for n in sizes:
        n_timed, n_warm = (40, 5) if quick else ((1000, 100) if n <= 300 else (200, 20))
        for j in joints:
            m, n_out = 8 * j, j
            res = Reservoir(n_inputs=m, size=n, neuron_model='esn', density=DENSITY,
                            leak_rate=LEAK, seed=0)
            u, y = signals(n_warm + n_timed + 2, m, n_out=n_out)
            runners = [TickRunner('lnn_control', make_lnn(res.twin(), m, n_out), u, y)]
            if 'reservoirpy' in impls and have_rpy:
                runners.append(TickRunner('reservoirpy', make_reservoirpy(res, m), u, y))
            for r in runners:
                r.warm_up(n_warm)
            times = run_interleaved(runners, {r.name: n_timed for r in runners}, rounds)
            nnz = int(res.indptr[1] - res.indptr[0])
            fmas, traffic = tick_work(n, m, n_out, nnz)
            for r in runners:
                med, p99 = stats_us(times[r.name])
                rows.append({'n': n, 'joints': j, 'inputs': m, 'outputs': n_out,
                             'impl': r.name, 'median_us': round(med, 3), 'p99_us': round(p99, 3),
                             'fmas': fmas, 'bytes_moved': traffic})
            print(f'N={n:5d} joints={j}: ' + ', '.join(
                f'{r["impl"]} {r["median_us"]:.1f} us' for r in rows[-len(runners):]), flush=True)
    return rows


def print_joints(rows, fma_per_s, copy_bw):
    for r in rows:
        r['arith_floor_us'] = round(r['fmas'] / fma_per_s * 1e6, 3)
        r['traffic_floor_us'] = round(r['bytes_moved'] / copy_bw[r['n']] * 1e6, 3)
    by = {(r['n'], r['joints'], r['impl']): r for r in rows}
    print(f'\n{"N":>5} {"joints":>6} {"m":>3} {"out":>3} {"lnn us":>9} {"rpy us":>9} '
          f'{"x vs rpy":>8} {"arith fl":>9} {"traffic fl":>10} {"/ floor":>7}')
    for (n, j, impl), r in by.items():
        if impl != 'lnn_control':
            continue
        rpy = by.get((n, j, 'reservoirpy'))
        floor = max(r['arith_floor_us'], r['traffic_floor_us'])
        print(f'{n:5d} {j:6d} {r["inputs"]:3d} {r["outputs"]:3d} {r["median_us"]:9.1f} '
              + (f'{rpy["median_us"]:9.1f} {rpy["median_us"] / r["median_us"]:7.1f}x '
                 if rpy else f'{"-":>9} {"-":>8} ')
              + f'{r["arith_floor_us"]:9.1f} {r["traffic_floor_us"]:10.1f} '
              f'{r["median_us"] / floor:6.2f}x')


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--json', metavar='OUT', help='write the result rows to OUT (JSON list)')
    ap.add_argument('--quick', action='store_true', help='few ticks (smoke test)')
    ap.add_argument('--sizes', default=','.join(map(str, SIZES)),
                    help='comma-separated reservoir sizes (default: %(default)s)')
    ap.add_argument('--impls', default=','.join(IMPLS),
                    help='comma-separated subset of %(default)s')
    ap.add_argument('--joints', default='1,2,7',
                    help='joint counts of the joints rows (8 inputs, 1 output per joint); '
                         'empty: none (default: %(default)s)')
    ap.add_argument('--joint-sizes', default='300,1000',
                    help='reservoir sizes of the joints rows (default: %(default)s)')
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(',') if s]
    impls = [s for s in args.impls.split(',') if s]
    for name in impls:
        if name not in IMPLS:
            ap.error(f'unknown impl {name!r}; choose from {", ".join(IMPLS)}')
    ticks = TICKS_QUICK if args.quick else TICKS
    m = N_INPUTS

    print(f'bench_tick  {datetime.datetime.now().isoformat(timespec="seconds")}')
    print(f'machine: {machine_summary()}')
    print('versions:', ', '.join(f'{k} {v}' for k, v in versions().items()))
    print(f'lnn_control from {os.path.dirname(lnn_control.__file__)}')
    report_threads()
    load0 = os.getloadavg()
    print(f'load average at start: {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}'
          + ('  (WARNING: busy machine, expect noisy timings)' if load0[0] > 1.0 else ''))
    print(f'inputs m={m}, outputs {N_OUTPUTS}, density {DENSITY}, lambda {FORGETTING}, '
          f'P0 = {DELTA} I, float64{", QUICK run" if args.quick else ""}')

    have_rpy = True
    if 'reservoirpy' in impls:
        try:
            import reservoirpy  # noqa: F401
        except ImportError:
            have_rpy = False
            print('reservoirpy not installed (pip install -r requirements-bench.txt): skipped')

    rows, floors, reads, skipped = [], {}, {}, {}
    rounds = ROUNDS[1] if args.quick else ROUNDS[0]
    fma_per_s = fma_peak_per_s()
    print(f'FMA throughput (float64, one thread, measured): {fma_per_s / 1e9:.2f} GFMA/s')
    for n in sizes:
        n_timed, n_warm = ticks.get(n, (200, 20) if not args.quick else (20, 3))
        res = Reservoir(n_inputs=m, size=n, neuron_model='esn', density=DENSITY,
                        leak_rate=LEAK, seed=0)
        u, y = signals(n_warm + n_timed + 2, m)
        if 'lnn_control' in impls and 'numpy' in impls and n <= 300:
            print(f'N={n}: parity lnn_control vs numpy reference, max |pred diff| over 50 '
                  f'ticks = {parity_check(res, m):.2e}')
        if 'reservoirpy' in impls and have_rpy and n <= 300:
            print(f'N={n}: reservoirpy reservoir states vs lnn_control, max |diff| over 50 '
                  f'ticks = {rpy_reservoir_check(res, m):.2e}')
        runners = []
        for name in impls:
            if name == 'reservoirpy':
                if not have_rpy:
                    continue
                runner = TickRunner(name, make_reservoirpy(res, m), u, y)
                t0 = time.perf_counter()
                runner.warm_up(2)                    # the first call initialises the model
                one = (time.perf_counter() - t0) / 2
                if one > RPY_SKIP_STEP_S:
                    skipped[n] = f'one step took {one:.2f} s > {RPY_SKIP_STEP_S} s'
                    print(f'N={n}: reservoirpy skipped ({skipped[n]})')
                    continue
            elif name == 'lnn_control':
                runner = TickRunner(name, make_lnn(res.twin(), m), u, y)
            else:
                runner = TickRunner(name, make_numpy(res, m), u, y)
            runner.warm_up(n_warm)
            runners.append(runner)
        copier, reader = CopyRunner(n + m + 1), ReadRunner(n + m + 1)
        for r in (copier, reader):
            r.warm_up(3)
            runners.append(r)
        counts = {r.name: n_timed for r in runners}
        counts['copy_floor'] = counts['read_floor'] = max(rounds, n_timed // 2)
        t_start = time.perf_counter()
        times = run_interleaved(runners, counts, rounds)
        for r in runners:
            med_i, p99_i = stats_us(times[r.name])
            row = {'n': n, 'impl': r.name, 'median_us': round(med_i, 3),
                   'p99_us': round(p99_i, 3)}
            if r is copier:
                gbps = 2 * copier.nbytes / (med_i * 1e-6) / 1e9
                floors[n] = (med_i, gbps)
                row.update(gb_per_s=round(gbps, 2), bytes=int(copier.nbytes))
            elif r is reader:
                reads[n] = med_i
            rows.append(row)
            print(f'N={n:5d} {r.name:12s} median {med_i:10.1f} us  p99 {p99_i:10.1f} us  '
                  f'({counts[r.name]} timed)')
        print(f'N={n:5d}: {n_timed} ticks per impl after {n_warm} warm-up, in {rounds} '
              f'interleaved rounds, {time.perf_counter() - t_start:.1f} s', flush=True)
    joint_sizes = [int(v) for v in args.joint_sizes.split(',') if v]
    joints = [int(v) for v in args.joints.split(',') if v]
    copy_bw = {n: bandwidth_at(n, m) for n in sorted(set(sizes) | set(joint_sizes))}
    joint_rows = []
    if joints and 'lnn_control' in impls:
        joint_rows = run_joints(joint_sizes, joints, impls, have_rpy, args.quick, rounds)
    fma_per_s = max(fma_per_s, fma_peak_per_s())     # the better of two, against noise
    load1 = os.getloadavg()
    print(f'load average at end: {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}')

    # ---- table ----
    by = {(r['n'], r['impl']): r for r in rows}
    print()
    print(f'{"N":>5} {"impl":12} {"median us":>11} {"p99 us":>11} {"x vs rpy":>9} '
          f'{"x vs numpy":>10}')
    for n in sizes:
        for name in impls:
            r = by.get((n, name))
            if r is None:
                continue
            sp = []
            for ref in ('reservoirpy', 'numpy'):
                o = by.get((n, ref))
                sp.append(f'{o["median_us"] / r["median_us"]:.1f}x' if o else '-')
            print(f'{n:5d} {name:12} {r["median_us"]:11.1f} {r["p99_us"]:11.1f} '
                  f'{sp[0]:>9} {sp[1]:>10}')
    print()
    for n in sizes:
        med, gbps = floors[n]
        print(f'N={n:5d}: copy of P ({n + m + 1}^2 float64, {8 * (n + m + 1) ** 2 / 1e6:.1f} MB) '
              f'{med:9.1f} us = {gbps:5.1f} GB/s (read+write); one read of its upper triangle '
              f'{reads[n]:8.1f} us')
    print(f'\nfloors of one lnn_control tick ({fma_per_s / 1e9:.2f} GFMA/s measured; traffic at '
          f'the bandwidth of a copy with the working set of the triangle of P):')
    print(f'{"N":>5} {"FMAs":>10} {"MB moved":>9} {"GB/s":>6} {"arith us":>9} {"traffic us":>10} '
          f'{"measured":>9} {"/ floor":>7} {"/ copy":>7}')
    for n in sizes:
        r = by.get((n, 'lnn_control'))
        if r is None:
            continue
        fmas, traffic = tick_work(n, m, N_OUTPUTS, max(1, int(round(DENSITY * n))))
        arith, traf = floors_us(n, m, N_OUTPUTS, max(1, int(round(DENSITY * n))), fma_per_s,
                                copy_bw[n])
        r.update(arith_floor_us=round(arith, 3), traffic_floor_us=round(traf, 3))
        print(f'{n:5d} {fmas:10d} {traffic / 1e6:9.2f} {copy_bw[n] / 1e9:6.1f} {arith:9.1f} '
              f'{traf:10.1f} '
              f'{r["median_us"]:9.1f} {r["median_us"] / max(arith, traf):6.2f}x '
              f'{r["median_us"] / floors[n][0]:6.2f}x')
    if joint_rows:
        print_joints(joint_rows, fma_per_s, copy_bw)
        rows.extend(joint_rows)

    # ---- targets (report only) ----
    print('\ntargets:')

    def ratio(n, a, b):
        ra, rb = by.get((n, a)), by.get((n, b))
        return rb['median_us'] / ra['median_us'] if ra and rb else None

    for n, want in ((300, 20.0), (1000, 20.0)):
        got = ratio(n, 'lnn_control', 'reservoirpy')
        if got is None:
            why = skipped.get(n, 'not measured')
            print(f'  N={n}: lnn_control >= {want:.0f}x faster than reservoirpy: n/a ({why})')
        else:
            print(f'  N={n}: lnn_control >= {want:.0f}x faster than reservoirpy: '
                  f'{got:.1f}x -> {"MET" if got >= want else "NOT MET"}')
            if n in reads:     # a tick that only read P once, nothing else
                rpy = by[(n, 'reservoirpy')]['median_us']
                print(f'    at most {rpy / reads[n]:.1f}x on this machine: reservoirpy '
                      f'{rpy:.0f} us over one read of the upper triangle of P '
                      f'({reads[n]:.1f} us), which every exact RLS step needs')
    for n, want in ((300, 1.0), (2000, 0.6)):
        if n in floors and (n, 'lnn_control') in by:
            med, gbps = floors[n]
            r = by[(n, 'lnn_control')]['median_us'] / med
            print(f'  N={n}: lnn_control <= {want}x one copy of P ({med:.1f} us at '
                  f'{gbps:.1f} GB/s): {by[(n, "lnn_control")]["median_us"]:.1f} us = {r:.2f}x '
                  f'-> {"MET" if r <= want else "NOT MET"}')
        else:
            print(f'  N={n}: copy ratio n/a (N={n} or lnn_control not measured)')

    over = controller_overhead(ticks=700 if args.quick else 5000)
    tick, forward = over['tick'], over['forward model']
    supervisor, detector = over['supervisor'], over['change detector']
    bare, base = over['without them'], over['without the forward model']
    print(f'\ncontroller tick (N=300, 2 joints, learning on, defaults): {tick:.1f} us; inside '
          f'it the forward model {forward:.1f} us, the learning supervisor {supervisor:.1f} us, '
          f'the change detector {detector:.1f} us (medians over {over["ticks"]} ticks, '
          f'{over["learning ticks"]} of them with an RLS step; without all three '
          f'{bare:.1f} us)')
    print(f'  the supervisor adds {100 * supervisor / bare:+.1f} % -> '
          f'{"MET" if supervisor <= 0.05 * bare else "NOT MET"} (issue 7: supervisor and '
          'normalisation <= +5 %; the normalisation runs inside the input check kernel, not '
          'separable)')
    both = supervisor + detector
    print(f'  supervisor and change detector together add {100 * both / bare:+.1f} %')
    print(f'  the forward model (1 tick and 0.5 s ahead, anomaly test) adds '
          f'{100 * forward / base:+.1f} % -> {"MET" if forward <= 0.10 * base else "NOT MET"} '
          f'(target <= +10 %); in the mean {over["forward model mean"]:.1f} us, '
          f'{100 * over["forward model mean"] / over["without the forward model mean"]:+.1f} %')
    one = controller_overhead(ticks=700 if args.quick else 5000,
                              extra={'prediction.long_horizon_s': 0.0})
    mean = 100 * one['forward model mean'] / one['without the forward model mean']
    print(f'  without the 0.5 s horizon (prediction.long_horizon_s 0): the forward model '
          f'{one["forward model"]:.1f} us, '
          f'{100 * one["forward model"] / one["without the forward model"]:+.1f} % '
          f'(mean {mean:+.1f} %)')
    rows.append({'n': 300, 'impl': 'controller_forward_model_one_horizon',
                 'median_us': round(one['forward model'], 3)})
    rows.append({'n': 300, 'impl': 'controller_step_defaults', 'median_us': round(tick, 3)})
    for name in ('forward model', 'forward model mean', 'supervisor', 'change detector',
                 'without them'):
        rows.append({'n': 300, 'impl': 'controller_' + name.replace(' ', '_'),
                     'median_us': round(over[name], 3)})

    if args.json:
        directory = os.path.dirname(os.path.abspath(args.json))
        os.makedirs(directory, exist_ok=True)
        with open(args.json, 'w') as f:
            json.dump(rows, f, indent=1)
            f.write('\n')
        print(f'\nwrote {len(rows)} rows to {args.json}')
    return 0


if __name__ == '__main__':
    sys.exit(main())

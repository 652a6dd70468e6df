"""
``lnn-control forecast``: the reservoirs on the classic time-series task.

The first thing a reservoir was shown to do is predict a time series from its
own past with a linear readout. This runs that task properly for the three
neuron models of the package, so their readouts can be judged on something
other than a robot: a sine and the Mackey-Glass series (tau = 17), predicted
one step ahead (teacher-forced: the true value is the input) and free-running
(generative: the prediction is fed back as the next input), with the readout
trained online by the package's RLS (its default forgetting factor and initial
covariance, as the controller learns) and offline by ridge regression (the
ridge picked on a validation split), and the same with reservoirpy at the same
size and reservoir settings (its documented ``Reservoir >> Ridge`` and
``Reservoir >> RLS``; echo-state only) when it is installed.

Figures: NRMSE of the one-step prediction over the test segment (RMSE over the
standard deviation of the target) and, free-running, the valid prediction
time: steps until the error first exceeds ``VALID_ERROR`` standard deviations.
ROS-free; deterministic for a seed.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
import functools
import statistics
from typing import Callable, Iterable
import warnings

import numpy as np

from .config import Config
from .reservoir import Reservoir
from .rls import RLSReadout

SERIES = ('sine', 'mackey_glass')
NEURON_MODELS = ('esn', 'ltc', 'lif')
# ridge: offline; rls: online from the ridge's prior; rls_control_defaults: online
# with the controller's rls.forgetting_factor and rls.initial_covariance
METHODS = ('ridge', 'rls', 'rls_control_defaults')
# washout (reservoir transient, not learned from), train, test samples
LAYOUT = {'sine': (100, 1000, 500), 'mackey_glass': (200, 3000, 1000)}
SINE_STEP = 0.2                        # rad per sample: period 31.4 samples, not an integer
RIDGE_GRID = 10.0 ** np.arange(-10, 1)
VALIDATION = 0.2                       # last fraction of train used to pick the ridge
VALID_ERROR = 0.4                      # free-running error limit, in standard deviations
DIVERGED = 1e3                         # a free run is stopped beyond this (standardised units)


@dataclass
class Row:
    series: str
    neuron: str
    method: str
    library: str
    seed: int
    size: int
    nrmse: float            # one step ahead, test segment
    valid_steps: int        # free-running from the end of training
    alpha: float            # regularisation: ridge, or RLS prior P0 = I / alpha


# -- the series ------------------------------------------------------------------------
def mackey_glass(n: int, tau: float = 17.0, beta: float = 0.2, gamma: float = 0.1,
                 exponent: float = 10.0, x0: float = 1.2, dt: float = 0.1,
                 sample_every: int = 10, discard: int = 500) -> np.ndarray:
    """
    ``n`` samples, one per time unit, of dx/dt = beta x(t-tau)/(1+x(t-tau)^p) - gamma x.

    RK4 at ``dt`` (the delayed term linearly interpolated at half steps),
    constant history ``x0``; the first ``discard`` time units are dropped.
    """
    lag = int(round(tau / dt))
    total = (n + discard) * sample_every
    x = np.empty(total + lag + 1)
    x[:lag + 1] = x0

    def f(xt, xd):
        return beta * xd / (1.0 + xd ** exponent) - gamma * xt
    for i in range(lag, lag + total):
        d0, d1 = x[i - lag], x[i - lag + 1]
        dm = 0.5 * (d0 + d1)
        k1 = f(x[i], d0)
        k2 = f(x[i] + 0.5 * dt * k1, dm)
        k3 = f(x[i] + 0.5 * dt * k2, dm)
        k4 = f(x[i] + dt * k3, d1)
        x[i + 1] = x[i] + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
    return x[lag + discard * sample_every::sample_every][:n].copy()


def series(name: str, n: int) -> np.ndarray:
    """Return ``n`` samples of the named series, standardised (zero mean, unit variance)."""
    if name == 'sine':
        s = np.sin(SINE_STEP * np.arange(n))
    elif name == 'mackey_glass':
        s = mackey_glass(n)
    else:
        raise ValueError(f'series must be one of {", ".join(SERIES)}; got {name!r}')
    return (s - s.mean()) / s.std()


def nrmse(prediction: np.ndarray, target: np.ndarray) -> float:
    return float(np.sqrt(np.mean((prediction - target) ** 2)) / np.std(target))


def valid_steps(prediction: np.ndarray, target: np.ndarray, scale: float) -> int:
    """Count the steps until |prediction - target| first exceeds VALID_ERROR * scale."""
    bad = np.flatnonzero(~(np.abs(prediction - target) <= VALID_ERROR * scale))   # NaN: bad
    return int(bad[0]) if bad.size else int(target.size)


# -- the package's reservoirs and readouts ---------------------------------------------
@functools.lru_cache(maxsize=1)
def _defaults() -> Config:
    """Return the controller's defaults (validated once: every row reads them)."""
    return Config({'joints': ['x']})


def make_reservoir(neuron: str, size: int, seed: int) -> Reservoir:
    """Build a reservoir with the controller's default settings and one input."""
    cfg = _defaults()
    settings = {**cfg.section('reservoir'), 'neuron_model': neuron, 'size': size, 'seed': seed}
    return Reservoir(1, dt=1.0 / cfg.control_rate_hz, **settings)


def _features(res: Reservoir, inputs: np.ndarray) -> np.ndarray:
    """Teacher-forced features [u, x] for every input, from a reset reservoir."""
    res.reset()
    out = np.empty((inputs.size, 1 + res.size))
    u = np.empty(1)
    for k, value in enumerate(inputs):
        u[0] = value
        out[k, 0] = value
        out[k, 1:] = res.step(u)
    return out


def _ridge(features: np.ndarray, targets: np.ndarray, alpha: float) -> np.ndarray:
    """Weights over [1, features] minimising |Y - Phi W|^2 + alpha |W|^2."""
    phi = np.hstack([np.ones((features.shape[0], 1)), features])
    gram = phi.T @ phi
    gram[np.diag_indices_from(gram)] += alpha
    return np.linalg.solve(gram, phi.T @ targets)


def _pick(score: Callable[[float], float]) -> float:
    """Return the regularisation of RIDGE_GRID with the lowest validation error."""
    scores = [score(alpha) for alpha in RIDGE_GRID]
    return float(RIDGE_GRID[int(np.nanargmin(scores))])


def _split(train: slice) -> tuple[slice, slice]:
    """Train minus its last VALIDATION fraction, and that fraction."""
    cut = train.stop - int(VALIDATION * (train.stop - train.start))
    return slice(train.start, cut), slice(cut, train.stop)


def _generate(res: Reservoir, inputs: np.ndarray, readout: Callable[[np.ndarray], float],
              steps: int) -> np.ndarray:
    """Free-running from the end of ``inputs`` (teacher-forced through them)."""
    feats = _features(res, inputs)
    y = readout(feats[-1])
    out = np.full(steps, np.nan)
    phi, u = np.empty(1 + res.size), np.empty(1)
    for k in range(steps):
        if not abs(y) < DIVERGED:
            break
        out[k] = y
        u[0] = y
        phi[0] = y
        phi[1:] = res.step(u)
        y = readout(phi)
    return out


def _online(feats: np.ndarray, targets: np.ndarray, train: slice,
            forgetting_factor: float, initial_covariance: float) -> Callable:
    """Train the package's RLS readout, one update per sample; return its predictor."""
    readout = RLSReadout(feats.shape[1], 1, forgetting_factor=forgetting_factor,
                         initial_covariance=initial_covariance)
    target, out = np.empty(1), np.empty(1)
    for k in range(train.start, train.stop):
        target[0] = targets[k]
        readout.train(feats[k], target, out)     # (one kernel call, nothing allocated)
    return lambda phi: readout.predict(phi, out)[0]


def lnn_rows(name: str, neuron: str, size: int, seed: int,
             traces: dict | None = None) -> list[Row]:
    """Ridge, RLS and RLS with the control defaults on one reservoir (``traces``: outputs)."""
    washout, n_train, n_test = LAYOUT[name]
    s = series(name, washout + n_train + n_test + 1)
    inputs, targets = s[:-1], s[1:]
    train, test = slice(washout, washout + n_train), slice(washout + n_train, None)
    head, val = _split(train)
    res = make_reservoir(neuron, size, seed)
    feats = _features(res, inputs)

    def ridge(part: slice, alpha: float) -> Callable:
        w = _ridge(feats[part], targets[part], alpha)
        return lambda phi: w[0] + phi @ w[1:]

    def rls(part: slice, alpha: float) -> Callable:     # P0 = I / alpha: the ridge's prior
        return _online(feats, targets, part, 1.0, 1.0 / alpha)

    def score(fit: Callable) -> Callable[[float], float]:
        def error(alpha: float) -> float:
            predict = fit(head, alpha)
            return nrmse(np.array([predict(phi) for phi in feats[val]]), targets[val])
        return error
    defaults = _defaults().rls
    alpha_ridge, alpha_rls = _pick(score(ridge)), _pick(score(rls))
    predictors = (
        ('ridge', alpha_ridge, ridge(train, alpha_ridge)),
        ('rls', alpha_rls, rls(train, alpha_rls)),
        ('rls_control_defaults', 1.0 / defaults.initial_covariance,
         _online(feats, targets, train, defaults.forgetting_factor,
                 defaults.initial_covariance)))
    rows = []
    for method, alpha, predict in predictors:
        one_step = np.array([predict(phi) for phi in feats[test]])
        free = _generate(res, inputs[:test.start], predict, n_test)
        if traces is not None:
            traces[(name, neuron, method)] = (targets[test], one_step, inputs[test], free)
        rows.append(Row(name, neuron, method, 'lnn_control', seed, size,
                        nrmse(one_step, targets[test]), valid_steps(free, inputs[test], 1.0),
                        alpha))
    return rows


# -- reservoirpy ----------------------------------------------------------------------
def reservoirpy_version() -> str | None:
    try:
        import reservoirpy
    except ImportError:
        return None
    return reservoirpy.__version__


def reservoirpy_rows(name: str, size: int, seed: int) -> list[Row]:
    """
    Run the same task with reservoirpy's echo-state network at the same size and settings.

    Its own random weights from the package's default hyperparameters (leak,
    spectral radius, input scaling, density, bias scaling), its documented
    offline (``fit``) and online (``partial_fit`` with ``RLS``) paths.
    """
    from reservoirpy import mat_gen
    from reservoirpy.nodes import Reservoir as RpyReservoir, Ridge, RLS
    rc = _defaults().section('reservoir')
    washout, n_train, n_test = LAYOUT[name]
    s = series(name, washout + n_train + n_test + 1)
    x, y = s[:-1, None], s[1:, None]
    train_end = washout + n_train

    def reservoir():
        b = rc['bias_scaling']
        return RpyReservoir(units=size, lr=rc['leak_rate'], sr=rc['spectral_radius'],
                            input_scaling=rc['input_scaling'], input_connectivity=1.0,
                            rc_connectivity=rc['density'],
                            bias=mat_gen.uniform(low=-b, high=b), seed=seed)

    def ridge(stop: int, alpha: float):
        model = reservoir() >> Ridge(ridge=alpha)
        model.fit(x[:stop], y[:stop], warmup=washout)
        return model

    def rls(stop: int, alpha: float, forgetting: float = 1.0):
        model = reservoir() >> RLS(alpha=alpha, forgetting=forgetting, output_dim=1)
        model.run(x[:washout])
        model.partial_fit(x[washout:stop], y[washout:stop])
        return model

    def score(fit: Callable) -> Callable[[float], float]:
        cut = train_end - int(VALIDATION * n_train)

        def error(alpha: float) -> float:
            with warnings.catch_warnings():     # its solve warns at the grid's tiny ridges
                warnings.simplefilter('ignore')
                return nrmse(fit(cut, alpha).run(x[cut:train_end])[:, 0], y[cut:train_end, 0])
        return error
    defaults = _defaults().rls
    alpha_ridge, alpha_rls = _pick(score(ridge)), _pick(score(rls))
    rows = []
    for method, alpha, model in (
            ('ridge', alpha_ridge, ridge(train_end, alpha_ridge)),
            ('rls', alpha_rls, rls(train_end, alpha_rls)),
            ('rls_control_defaults', 1.0 / defaults.initial_covariance,
             rls(train_end, 1.0 / defaults.initial_covariance, defaults.forgetting_factor))):
        one_step = model.run(x[train_end:])[:, 0]    # continues from the end of training
        model.reset()
        value = model.run(x[:train_end])[-1]
        free = np.full(n_test, np.nan)
        for k in range(n_test):
            if not abs(value[0]) < DIVERGED:
                break
            free[k] = value[0]
            value = model.step(value)
        rows.append(Row(name, 'esn', method, 'reservoirpy', seed, size,
                        nrmse(one_step, y[train_end:, 0]),
                        valid_steps(free, x[train_end:, 0], 1.0), alpha))
    return rows


# -- the run and its summary -------------------------------------------------------------
def run(size: int = 300, seeds: Iterable[int] = (0, 1, 2), neurons: Iterable[str] = NEURON_MODELS,
        names: Iterable[str] = SERIES, use_reservoirpy: bool = True,
        progress: Callable[[str], None] | None = None,
        traces: dict | None = None) -> dict:
    """
    Every (series, neuron, method, library, seed); rows plus medians over seeds.

    ``traces`` collects the first seed's predictions (for the figure).
    """
    seeds, neurons = list(seeds), list(neurons)
    version = reservoirpy_version()
    rpy = version if use_reservoirpy else None
    rows: list[Row] = []
    for name in names:
        for seed in seeds:
            for neuron in neurons:
                if progress:
                    progress(f'{name} {neuron} seed {seed}')
                rows += lnn_rows(name, neuron, size, seed,
                                 traces if seed == seeds[0] else None)
            if rpy and 'esn' in neurons:
                if progress:
                    progress(f'{name} reservoirpy seed {seed}')
                rows += reservoirpy_rows(name, size, seed)
    return {'size': size, 'seeds': seeds, 'reservoirpy': version,
            'reservoirpy_compared': bool(rpy),
            'layout': {k: dict(zip(('washout', 'train', 'test'), v)) for k, v in LAYOUT.items()},
            'valid_error': VALID_ERROR, 'rows': [asdict(r) for r in rows],
            'summary': summarise(rows)}


def summarise(rows: list[Row]) -> list[dict]:
    """Median NRMSE and valid steps over seeds per (series, neuron, library, method)."""
    groups: dict[tuple, list[Row]] = {}
    for r in rows:
        groups.setdefault((r.series, r.neuron, r.library, r.method), []).append(r)
    return [{'series': k[0], 'neuron': k[1], 'library': k[2], 'method': k[3],
             'nrmse': statistics.median(r.nrmse for r in g),
             'nrmse_worst': max(r.nrmse for r in g),
             'valid_steps': statistics.median(r.valid_steps for r in g)}
            for k, g in groups.items()]

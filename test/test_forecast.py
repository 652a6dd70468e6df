"""``lnn-control forecast``: the series, the readouts and the report, on a fixed seed."""
import json
import os

from lnn_control import cli
from lnn_control import forecast as F
import numpy as np
import pytest

pytestmark = pytest.mark.unit


def test_mackey_glass_is_the_chaotic_tau_17_series():
    x = F.mackey_glass(600)
    assert x.shape == (600,)
    assert 0.2 < x.min() < 0.5 and 1.2 < x.max() < 1.4     # its well-known range
    # aperiodic: no lag up to 300 samples repeats the series
    lags = [np.max(np.abs(x[lag:] - x[:-lag])) for lag in range(1, 300)]
    assert min(lags) > 0.05
    s = F.series('mackey_glass', 600)
    assert abs(s.mean()) < 1e-12 and abs(s.std() - 1.0) < 1e-12
    with pytest.raises(ValueError, match='series must be one of'):
        F.series('lorenz', 10)


def test_valid_steps_counts_until_the_error_first_exceeds_the_limit():
    target = np.zeros(10)
    prediction = np.array([0.0, 0.1, 0.39, 0.41, 0.0, 0, 0, 0, 0, 0])
    assert F.valid_steps(prediction, target, 1.0) == 3
    assert F.valid_steps(np.zeros(10), target, 1.0) == 10


@pytest.fixture(scope='module')
def small_run():
    return F.run(size=60, seeds=[0], neurons=['esn', 'lif'], use_reservoirpy=False)


def test_online_rls_reaches_the_offline_ridge_solution(small_run):
    """Started from the ridge's prior (P0 = I / alpha) RLS computes the ridge solution."""
    rows = {(r['series'], r['neuron'], r['method']): r for r in small_run['rows']}
    for name in F.SERIES:
        for neuron in ('esn', 'lif'):
            ridge, rls = rows[(name, neuron, 'ridge')], rows[(name, neuron, 'rls')]
            assert rls['nrmse'] <= 1.5 * ridge['nrmse'], (name, neuron, rls, ridge)
    # the sine is easy for an echo-state network: near exact, free-running to the end
    sine = rows[('sine', 'esn', 'ridge')]
    assert sine['nrmse'] < 1e-3 and sine['valid_steps'] == F.LAYOUT['sine'][2]
    assert rows[('mackey_glass', 'esn', 'ridge')]['nrmse'] < 0.02
    # the control defaults (P0 = I, forgetting 0.9999) regularise far more
    mg = rows[('mackey_glass', 'esn', 'rls_control_defaults')]
    assert mg['alpha'] == 1.0 and mg['nrmse'] > rows[('mackey_glass', 'esn', 'rls')]['nrmse']


def test_the_table_reproduces_on_a_fixed_seed(small_run):
    again = F.run(size=60, seeds=[0], neurons=['esn', 'lif'], use_reservoirpy=False)
    assert again['rows'] == small_run['rows']
    assert len(small_run['summary']) == 2 * 2 * len(F.METHODS)


def test_cli_writes_json_table_and_figure(tmp_path, capsys):
    out = str(tmp_path / 'fc')
    assert cli.main(['forecast', '--size', '30', '--seeds', '0', '--neurons', 'esn',
                     '--series', 'sine,mackey_glass', '--no-reservoirpy', '--out', out,
                     '--quiet']) == 0
    with open(os.path.join(out, 'forecast.json'), encoding='utf-8') as f:
        result = json.load(f)
    # installed or not, it says which (the footnote said 'not installed' when it was)
    assert result['size'] == 30 and result['reservoirpy'] == F.reservoirpy_version()
    assert result['reservoirpy_compared'] is False
    table = open(os.path.join(out, 'forecast.md'), encoding='utf-8').read()
    assert (('not compared: --no-reservoirpy' in table) if result['reservoirpy']
            else 'reservoirpy: not installed' in table)
    assert table.startswith('Mackey-Glass one step at N=30')
    assert '| mackey_glass | esn | lnn_control | rls |' in table
    assert os.path.getsize(os.path.join(out, 'forecast.png')) > 10_000
    assert 'wrote' in capsys.readouterr().out
    assert cli.main(['forecast', '--neurons', 'gru', '--out', out]) == 2
    err = capsys.readouterr().err
    assert 'gru (series: sine, mackey_glass; neuron models: esn, ltc, lif)' in err
    assert cli.main(['forecast', '--neurons', 'esn,', '--out', out]) == 2
    assert 'an empty name' in capsys.readouterr().err
    fresh = str(tmp_path / 'never')
    assert cli.main(['forecast', '--size', '0', '--out', fresh]) == 2
    assert 'reservoir.size must be >=' in capsys.readouterr().err
    assert not os.path.exists(fresh)               # refused before the directory is made


def test_a_diverging_free_run_is_invalid_from_where_it_leaves_the_band():
    prediction = np.array([0.0, 0.1, np.nan, 0.0])
    assert F.valid_steps(prediction, np.zeros(4), 1.0) == 2

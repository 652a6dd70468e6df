"""The lnn-control command line."""
import json
import math
import os
import subprocess
import sys

from lnn_control import cli
from lnn_control import schema
import pytest

pytestmark = pytest.mark.unit


@pytest.mark.slow
def test_offline_demo_writes_summary_and_figure(tmp_path):
    out = tmp_path / 'run'
    code = cli.main(['demo', '--mode', 'offline', '--plant', 'pendulum', '--neuron', 'esn',
                     '--duration', '16', '--payload-change-at', '4', '--out', str(out),
                     '--quiet'])
    assert code == 0
    summary = json.loads((out / 'summary.json').read_text())
    for key in ('plant', 'neuron', 'rms_pd', 'rms_adaptive', 'ratio', 'rms_pd_after',
                'rms_adaptive_after', 'ratio_after_change', 'recovery_ratio'):
        assert key in summary
    assert summary['ratio'] == summary['rms_adaptive'] / summary['rms_pd']
    assert (out / 'tracking.png').stat().st_size > 10_000


def test_demo_refuses_a_change_outside_the_run(tmp_path, capsys):
    out = tmp_path / 'run'
    rc = cli.main(['demo', '--duration', '5', '--payload-change-at', '9', '--out', str(out)])
    assert rc == 2 and 'payload-change-at' in capsys.readouterr().err
    assert not out.exists()                     # nothing written for a refused run


@pytest.mark.parametrize('argv, message', [
    (['demo', '--duration', '0'], 'must be finite and > 0'),
    (['demo', '--duration', 'inf'], 'must be finite and > 0'),
    (['demo', '--duration', '1e12'], 'at most 86400'),
    (['zoo', '--random', '-3', '--list'], 'must be >= 0'),
    (['gains', '--control-rate-hz', '0'], 'must be finite and > 0'),
])
def test_bad_numbers_are_refused_by_the_parser(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize('argv, message', [
    (['demo', '--neuron', 'esn', '--param', 'reservoir.neuron_model=lif'], 'contradicts'),
    (['zoo', '--plants', 'pendulum_tiny', '--changes', 'friction_x3'], 'no runs'),
    (['zoo', '--seeds', 'a'], 'comma-separated integers'),
    (['zoo', '--plants', 'pendulum_tiny,'], 'an empty name'),
    (['gains', '--control-rate-hz', '5000'], 'control_rate_hz must be <= '),
])
def test_bad_arguments_are_refused_before_any_work(argv, message, tmp_path, capsys):
    out = tmp_path / 'out'
    argv = argv + (['--out', str(out)] if argv[0] != 'gains' else [])
    assert cli.main(argv) == 2 and message in capsys.readouterr().err
    assert not out.exists()


def test_out_that_is_a_file_and_a_recording_that_is_not_one_are_refused(tmp_path, capsys):
    afile = tmp_path / 'afile'
    afile.write_text('not a directory, not an MCAP file')
    assert cli.main(['zoo', '--plants', 'pendulum_tiny', '--out', str(afile)]) == 2
    assert 'not a directory' in capsys.readouterr().err
    assert cli.main(['plot', str(afile)]) == 2
    assert 'is not a run.mcap' in capsys.readouterr().err


def test_summary_json_is_strict_json_when_a_figure_is_undefined():
    summary = cli._json_safe({'worst_window_ratio': math.nan, 'runs': [{'x': math.inf}]})
    assert json.loads(json.dumps(summary, allow_nan=False)) == {
        'worst_window_ratio': None, 'runs': [{'x': None}]}


def test_docs_parameter_table_is_generated_from_the_schema(capsys):
    cli.main(['params', '--format', 'markdown'])
    generated = capsys.readouterr().out
    docs = os.path.join(os.path.dirname(__file__), '..', 'docs', 'parameters.md')
    with open(docs, encoding='utf-8') as f:
        assert f.read() == generated, \
            'regenerate: lnn-control params --format markdown > docs/parameters.md'


def test_yaml_export_round_trips_through_the_schema(tmp_path, capsys):
    cli.main(['params', '--format', 'yaml'])
    path = tmp_path / 'p.yaml'
    path.write_text(capsys.readouterr().out)
    assert schema.resolve(schema.load_yaml_overrides(
        str(path), 'lnn_controller'))['reservoir.size'] == 300


def test_console_script_is_installed():
    bindir = os.path.dirname(sys.executable)
    exe = os.path.join(bindir, 'lnn-control')
    result = subprocess.run([exe, 'gains', '--plant', 'pendulum'], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)['kp'][0] > 0


def test_param_overrides_take_json_values_and_plain_strings():
    # 'fixed' starts like 'false': it used to be fed to the JSON parser and fail
    assert cli._param_overrides(['input.normalization=fixed', 'reservoir.neuron_model=ltc',
                                 'rls.initial_covariance=1e6', 'rls.fast_learner=false',
                                 'kp=[1, 2]']) == {
        'input.normalization': 'fixed', 'reservoir.neuron_model': 'ltc',
        'rls.initial_covariance': 1e6, 'rls.fast_learner': False, 'kp': [1, 2]}
    with pytest.raises(ValueError, match='NAME=VALUE'):
        cli._param_overrides(['rls.initial_covariance'])

"""The lnn-control command line."""
import json
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
    try:
        cli.main(['demo', '--duration', '5', '--payload-change-at', '9', '--out', str(tmp_path)])
    except SystemExit as exc:
        assert 'payload-change-at' in str(exc)
    else:
        raise AssertionError('expected SystemExit')


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

"""Smoke test of benchmarks/bench_fleet.py: one node, two seconds, a row comes out."""
import json
import os
from pathlib import Path
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.ros, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]


def test_one_node_gives_a_row(tmp_path):
    """K=1 for 2 s: a row with a positive tick rate and interval statistics (no timing asserted)."""
    out = tmp_path / 'fleet.json'
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get('PYTHONPATH')])]))
    result = subprocess.run(
        [sys.executable, str(ROOT / 'benchmarks' / 'bench_fleet.py'), '--ks', '1',
         '--duration', '2', '--warmup', '0.5', '--no-warm-cache', '--startup-timeout', '120',
         '--json', str(out)],
        env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = json.loads(out.read_text())['rows']
    assert [r['k'] for r in rows] == [1]
    row = rows[0]
    assert 'error' not in row, row.get('error')
    assert row['rate_min_hz'] > 0
    assert row['nodes'][0]['tick']['n'] > 0
    assert row['p99_worst_ms'] > 0
    assert isinstance(row['passed'], bool)

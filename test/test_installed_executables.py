"""
The installed node executables start from where `ros2 run` and launch_ros look.

``<prefix>/lib/lnn_control/<executable>`` of the installed package (a launcher
on a pip install, the console script itself on a colcon install), run without
AMENT_PREFIX_PATH from another directory: each reaches its node's ``main``,
which refuses an invalid parameter with a clear message and exit code 1.
test_packaging.py checks the files themselves.
"""
import os
from pathlib import Path
import subprocess
import sys

import pytest

# Process-level: each test starts a node process (rclpy, DDS) that exits at once.
pytestmark = [pytest.mark.ros, pytest.mark.slow]

LIBEXEC = Path(sys.prefix) / 'lib' / 'lnn_control'


@pytest.mark.parametrize('name, parameter, message', [
    ('lnn_controller', 'control_rate_hz:=-5.0', 'control_rate_hz out of range'),
    ('lnn_sim', 'model:=no_such_plant', "unknown plant 'no_such_plant'"),
])
def test_executable_in_lib_runs_its_node(name, parameter, message, tmp_path):
    env = dict(os.environ)
    env.pop('AMENT_PREFIX_PATH', None)
    out = subprocess.run([str(LIBEXEC / name), '--ros-args', '-p', parameter],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, (out.stdout, out.stderr)
    log = out.stdout + out.stderr
    assert f'[{name}]: invalid parameters' in log and message in log, log


@pytest.mark.parametrize('name', ['lnn_controller', 'lnn_sim'])
def test_a_wrong_type_of_rclpys_own_parameter_is_one_line_too(name, tmp_path):
    """use_sim_time: "true" in a parameter file ended in a traceback (rclpy checks it)."""
    params = tmp_path / 'params.yaml'
    params.write_text('/**:\n  ros__parameters:\n    use_sim_time: "true"\n')
    out = subprocess.run([str(LIBEXEC / name), '--ros-args', '--params-file', str(params)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    log = out.stdout + out.stderr
    assert out.returncode == 1 and 'Traceback' not in log, log
    assert f"[{name}]: invalid parameters: Trying to set parameter 'use_sim_time'" in log, log

"""
The closed-loop demo over ROS 2: ``lnn_sim`` + ``lnn_controller`` as real processes.

Both arms run at once, each in a namespace of its own (``/pd`` and
``/adaptive``) with ``/clock`` remapped into it, exactly as two robots would
share one DDS domain. PD-only is the same controller with learning off (its
feedforward stays zero), so both arms share the gains of ``config/<plant>.yaml``.
In lock-step each simulator advances one control period per command, so the
figures do not depend on machine load. Everything is recorded from the live
topics into ``run.mcap``; the summary is computed from that recording.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from typing import Any, Mapping, Sequence

import numpy as np

from .. import closed_loop as CL
from .. import mcap_io
from .. import schema
from ..controller import prediction_horizons
from ..recording import ARMS, CONTROL_PERIOD_S, traces_from_mcap


def _executable(name: str) -> list[str]:
    """Find a console script: next to this interpreter (venv), else on PATH, else ``-m``."""
    local = os.path.join(os.path.dirname(sys.executable), name)
    if os.path.exists(local):
        return [local]
    found = shutil.which(name)
    if found:
        return [found]
    module = {'lnn_controller': 'lnn_control.ros.controller_node',
              'lnn_sim': 'lnn_control.ros.sim_node'}[name]
    return [sys.executable, '-m', module]


def _ros_value(value: Any) -> str:
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, (list, tuple, np.ndarray)):
        return '[' + ','.join(_ros_value(v) for v in value) + ']'
    if isinstance(value, str):      # rcl reads -p values as YAML: 'on', '1.5', 'a,b' stay strings
        return json.dumps(value)
    return str(value)


def _args(ns: str, params: Mapping[str, Any], params_file: str | None = None) -> list[str]:
    args = ['--ros-args', '-r', f'__ns:=/{ns}', '-r', f'/clock:=/{ns}/clock']
    if params_file:
        args += ['--params-file', params_file]
    for name, value in params.items():
        args += ['-p', f'{name}:={_ros_value(value)}']
    return args


def controller_command(ns: str, plant: str, learning: bool, extra: Mapping[str, Any],
                       lockstep: bool = True,
                       control_rate_hz: float = 1.0 / CONTROL_PERIOD_S) -> list[str]:
    # what makes an arm PD-only or adaptive, its clock, and what the demo tracks, after
    # the user's settings: a file from `lnn-control params` sets learning_enabled,
    # sync_to_joint_state_stamps false and reference.mode 'topic' (no one publishes a
    # reference here: the generated one)
    params = {**extra, 'use_sim_time': lockstep, 'sync_to_joint_state_stamps': lockstep,
              'reference.mode': CL.generated_mode(extra.get('reference.mode', 'topic')),
              'learning_enabled': learning, 'control_rate_hz': control_rate_hz}
    if not learning:        # the PD arm must not load, nor overwrite, the adaptive readout
        params['readout_path'] = ''
    params_file = CL.config_path(plant) if plant in schema.BUNDLED_PLANTS else None
    return _executable('lnn_controller') + _args(ns, params, params_file)


def sim_command(ns: str, plant: str, joints: Sequence[str], lockstep: bool,
                payload_change_at: float | None,
                control_period_s: float = CONTROL_PERIOD_S,
                initial_positions: Sequence[float] = ()) -> list[str]:
    # In lock-step the simulator advances one control period per command: the
    # controller's period (at another rate it waited for a tick that never came)
    params = {'model': plant, 'joints': list(joints), 'lockstep': lockstep,
              'paused': lockstep, 'control_period_s': control_period_s}
    if len(initial_positions):
        params['initial_positions'] = [float(x) for x in initial_positions]
    if payload_change_at:
        params['payload_change.time_s'] = payload_change_at
        params['payload_change.scale'] = CL.PAYLOAD_SCALE
    return _executable('lnn_sim') + _args(ns, params)


def _reference_start(cfg: Mapping[str, Any]) -> np.ndarray:
    """Where the reference starts: the robot starts there, as in an offline run."""
    n = len(cfg['joints'])
    ref = CL.generated_reference(n, cfg['reference.mode'], cfg['reference.amplitude'],
                                 cfg['reference.frequency_hz'], cfg['reference.offset'],
                                 cfg['reference.seed'])
    q, qd, qdd = np.zeros(n), np.zeros(n), np.zeros(n)
    ref.sample(0.0, q, qd, qdd)
    return q


def run(plant: str, neuron: str, duration: float, out: str, payload_change_at: float | None = None,
        seed: int = 0, lockstep: bool = True, extra: Mapping[str, Any] | None = None,
        progress: bool = True,
        timeout_s: float | None = None) -> tuple[dict[str, Any], list[CL.Trace]]:
    """
    Run both arms over ROS 2 and record ``out/run.mcap``.

    Returns the summary and the (PD, adaptive) traces computed from the recording.
    """
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from .recorder import McapRecorder

    os.makedirs(out, exist_ok=True)
    overrides = {'reservoir.neuron_model': neuron, 'reservoir.seed': seed,
                 'reference.seed': seed, **(extra or {})}
    cfg = schema.resolve(CL.plant_params(plant, overrides))
    if plant not in schema.BUNDLED_PLANTS:     # no parameter file: the nodes get them all
        overrides = CL.plant_params(plant, overrides)
    joints = list(cfg['joints'])
    mcap_path = os.path.join(out, 'run.mcap')
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node('lnn_demo_recorder', context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    watch = _TickWatch(node)
    # the forward model's topics, as the nodes will publish them (none: none recorded; a
    # topic without a publisher kept the demo waiting for the nodes until it timed out)
    horizons = prediction_horizons(cfg['prediction.enabled'], cfg['controller.mode'],
                                   cfg['prediction.horizon_ticks'],
                                   cfg['prediction.long_horizon_s'], 1.0 / cfg['control_rate_hz'])
    long_ticks = horizons[1] if horizons else 0
    predictions = (() if horizons is None else
                   ('prediction',) + (('long_prediction',) if long_ticks else ()))
    recorder = McapRecorder(node, mcap_path, _recording_topics(predictions), metadata={
        'plant': plant, 'neuron': neuron, 'duration_s': duration,
        'payload_change_at_s': payload_change_at or 0.0, 'seed': seed,
        'mode': 'ros-lockstep' if lockstep else 'ros-realtime', 'joints': ','.join(joints),
        'kp': json.dumps(list(cfg['kp'])), 'kd': json.dumps(list(cfg['kd'])),
        'prediction_horizon_ticks': str(cfg['prediction.horizon_ticks']),
        'prediction_long_horizon_ticks': str(long_ticks)})
    procs: list[subprocess.Popen] = []
    log = open(os.path.join(out, 'nodes.log'), 'w', encoding='utf-8')
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    try:
        # Lock-step simulators start paused, so nothing moves until the recorder is
        # matched to every publisher and has the simulators' first states; then both
        # loops are released. (Real time cannot wait: it records from when it can.)
        rate, start = float(cfg['control_rate_hz']), _reference_start(cfg)
        commands = ([sim_command(ns, plant, joints, lockstep, payload_change_at, 1.0 / rate,
                                 start) for ns, _ in ARMS]
                    + [controller_command(ns, plant, learning, overrides, lockstep, rate)
                       for ns, learning in ARMS])
        for command in commands:
            procs.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                          env=env))
        _spin_until(executor, lambda: all(
            n >= 1 for n in recorder.publisher_counts().values()) and all(
            recorder.counts[f'/{ns}/joint_states'] >= 1 for ns, _ in ARMS),
            timeout=120.0, procs=procs, what='the nodes to come up')
        if lockstep:
            _unpause(node, executor, [f'/{ns}/lnn_sim' for ns, _ in ARMS], procs)
        _wait_for_run(executor, watch, duration, timeout_s or 120.0 + 3.0 * duration,
                      procs, progress)
    finally:
        _stop(procs)
        _drain(executor, recorder)
        recorder.close()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=context)
        log.close()
    traces, _ = traces_from_mcap(mcap_path)
    summary = CL.report('ros-lockstep' if lockstep else 'ros-realtime', plant, neuron, seed,
                        traces[0], traces[1], duration, payload_change_at)
    summary['messages'] = mcap_io.message_counts(mcap_path)
    return summary, traces


def _recording_topics(predictions=('prediction', 'long_prediction')) -> list[tuple]:
    """
    Return what the demo records.

    Simulator states and controller outputs are published transient-local: what was sent
    before the recorder matched a publisher is replayed to it (real time).
    """
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray

    from ..ros.common import RECORD_LATCHED_QOS, RECORD_QOS

    topics = [('/diagnostics', DiagnosticArray, RECORD_QOS)]
    for ns, _ in ARMS:
        topics += [(f'/{ns}/joint_states', JointState, RECORD_LATCHED_QOS),
                   (f'/{ns}/commands', Float64MultiArray, RECORD_LATCHED_QOS),
                   (f'/{ns}/lnn_controller/desired', JointState, RECORD_LATCHED_QOS),
                   (f'/{ns}/lnn_controller/controller_state', Float64MultiArray,
                    RECORD_LATCHED_QOS),
                   *((f'/{ns}/lnn_controller/{topic}', JointState, RECORD_LATCHED_QOS)
                     for topic in predictions)]
    return topics


class _TickWatch:
    """Loop time of each arm: stamp of its latest tick minus that of its first."""

    def __init__(self, node):
        from sensor_msgs.msg import JointState

        from ..ros.common import RECORD_BEST_EFFORT_QOS

        self.first: dict[str, int] = {}
        self.latest = {ns: 0.0 for ns, _ in ARMS}
        for ns, _ in ARMS:
            node.create_subscription(JointState, f'/{ns}/lnn_controller/desired',
                                     self._callback(ns), RECORD_BEST_EFFORT_QOS)

    def _callback(self, ns: str):
        from ..ros.conversions import stamp_to_ns

        def cb(msg):
            t = stamp_to_ns(msg.header.stamp)
            self.first.setdefault(ns, t)
            self.latest[ns] = (t - self.first[ns]) * 1e-9
        return cb

    def elapsed(self) -> float | None:
        """Loop time both arms have reached (None before both ticked)."""
        return min(self.latest.values()) if len(self.first) == len(ARMS) else None


def _wait_for_run(executor, watch: _TickWatch, duration: float, timeout_s: float, procs,
                  progress: bool) -> None:
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=duration, unit='sim s', desc='PD + adaptive over ROS 2',
                   bar_format='{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} {unit}')

    def done():
        elapsed = watch.elapsed()
        if elapsed is None:
            return False
        if bar is not None:
            bar.update(max(0.0, min(elapsed, duration)) - bar.n)
        return elapsed >= duration + 2 * CONTROL_PERIOD_S
    _spin_until(executor, done, timeout=timeout_s, procs=procs, what='the run to finish')
    if bar is not None:
        bar.update(duration - bar.n)
        bar.close()


def _stop(procs: Sequence[subprocess.Popen]) -> None:
    """SIGINT every node (the controllers save their readouts), then wait 15 s at most."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    deadline = time.monotonic() + 15.0
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()


def _unpause(node, executor, sims: Sequence[str], procs) -> None:
    """Set ``paused: false`` on each simulator through its parameter service."""
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters

    for sim in sims:
        client = node.create_client(SetParameters, f'{sim}/set_parameters')
        _spin_until(executor, client.service_is_ready, timeout=60.0, procs=procs,
                    what=f'{sim}/set_parameters')
        request = SetParameters.Request(parameters=[Parameter(
            name='paused', value=ParameterValue(type=ParameterType.PARAMETER_BOOL,
                                                bool_value=False))])
        future = client.call_async(request)
        _spin_until(executor, future.done, timeout=30.0, procs=procs,
                    what=f'{sim} to unpause')
        if not future.result().results[0].successful:
            raise RuntimeError(f'{sim} refused to unpause: {future.result().results[0].reason}')
        node.destroy_client(client)


def _drain(executor, recorder, quiet_s: float = 0.3, limit_s: float = 5.0) -> None:
    """Take what the readers still hold: spin until nothing new came for ``quiet_s``."""
    end = time.monotonic() + limit_s
    total, quiet_since = -1, time.monotonic()
    while time.monotonic() < end and time.monotonic() - quiet_since < quiet_s:
        executor.spin_once(timeout_sec=0.02)
        now_total = sum(recorder.counts.values())
        if now_total != total:
            total, quiet_since = now_total, time.monotonic()


def _spin_until(executor, condition, timeout: float, procs, what: str) -> None:
    end = time.monotonic() + timeout
    while not condition():
        dead = [p for p in procs if p.poll() is not None]
        if dead:
            raise RuntimeError(f'a node exited (code {dead[0].returncode}) while waiting for '
                               f'{what}; see nodes.log')
        if time.monotonic() > end:
            raise TimeoutError(f'timed out after {timeout:.0f} s waiting for {what}')
        executor.spin_once(timeout_sec=0.05)

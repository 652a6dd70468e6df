"""
Safeguards of the lnn_controller node that the core tests cover, checked on real rclpy.

The diagnostics watchdog on the wall clock, the guard of a foreign readout file set
while running, autosaves withheld while the learning supervisor doubts the readout,
and the on-set check of parameters that are only wrong together. The controller runs
in-process on the rig of ``test_controller_node.py``, lock-step on its own ``/clock``;
only the watchdog test needs wall time (the node clock must stand still), and it
asserts no timing beyond a generous hang guard.
"""
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
import numpy as np
import pytest
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient
from rigs import key_values, record_warnings, RELIABLE
from std_srvs.srv import Trigger
from test_controller_node import _learn, BASE, Rig, twin

pytestmark = pytest.mark.ros

WITHHELD = 'readout autosaves withheld (doubtful readout)'
WITHHELD_BECAUSE = 'readout autosave last withheld because'
STANDS_STILL = 'the node clock stands still'


@pytest.fixture
def rig(context, closing):
    def make(overrides=None, **kwargs):
        return closing(Rig(context, overrides, **kwargs))
    return make


# -- the wall-clock diagnostics watchdog ------------------------------------------------

@pytest.mark.slow
def test_diagnostics_on_the_wall_clock_while_no_clock_is_published(rig):
    """use_sim_time and no /clock: the node time stands still, /diagnostics says so."""
    r = rig()
    mine = r.node.get_fully_qualified_name()
    statuses = []
    r.tester.create_subscription(
        DiagnosticArray, '/diagnostics',
        lambda m: statuses.extend(s for s in m.status if s.hardware_id == mine), RELIABLE)
    # the watchdog publishes about once a second of wall time: 5 s only guard a hang
    assert r.spinner.spin_until(lambda: statuses, timeout=5.0), \
        'no /diagnostics within 5 s of wall time while the node clock stood still'
    assert r.node.get_clock().now().nanoseconds == 0           # no /clock came
    assert r.node.stats.callbacks == 0 and r.commands == []
    status = statuses[0]
    assert status.level == DiagnosticStatus.WARN
    assert STANDS_STILL in status.message and 'is /clock published?' in status.message
    assert 'waiting for joint_states' in status.message
    assert float(key_values(status)['control rate achieved [Hz]']) == 0.0


@pytest.mark.slow
@pytest.mark.parametrize('action, lockstep', [('zero', False), ('hold', False),
                                              ('zero', True)])
def test_the_last_effort_does_not_stay_on_commands_once_the_node_clock_stands_still(
        rig, action, lockstep):
    """
    /clock stops (or use_sim_time is set with none): no tick runs, the last effort stayed.

    A forward command controller applied it for good (0.73 N m on a pendulum). Once per
    stall zero effort goes out, as for stale sensors; ``hold`` keeps it, as for them; and
    the lock-step protocol keeps it (each command steps its simulator).
    """
    r = rig({'learning_enabled': False, 'stale_sensor_action': action,
             'sync_to_joint_state_stamps': lockstep})
    r.send([0.0, 0.0])
    r.send_reference([0.3, -0.2])
    assert np.abs(r.tick(5)).min() > 0.0          # pushing toward the reference
    published = len(r.commands)
    warnings = record_warnings(r.node)
    # no more /clock: the watchdog reports on the wall clock (5 s only guard a hang)
    statuses = []
    r.tester.create_subscription(DiagnosticArray, '/diagnostics',
                                 lambda m: statuses.extend(m.status), RELIABLE)
    assert r.spinner.spin_until(lambda: len(statuses) >= 2, timeout=5.0)
    if action == 'zero' and not lockstep:
        assert len(r.commands) == published + 1 and not r.commands[-1].any()
        assert [w for w in warnings if 'zero effort commanded until it runs' in w]
    else:
        assert len(r.commands) == published
    if lockstep:
        r.send([0.0, 0.0], stamp_ns=r.now_ns + 10_000_000)    # the state of the next tick
    r.tick()                                       # the clock runs again: commands again
    assert np.abs(r.commands[-1]).min() > 0.0


def test_a_simulation_slower_than_real_time_is_not_a_clock_that_stands_still(
        rig, monkeypatch):
    """
    Sim time at 0.45x real time: the effort was zeroed, with 'the node clock stands still'.

    The watchdog took 1.25 s of wall time without a report for a stall, and the 1 s report
    runs on the node clock: 2.2 s of wall time apart at that speed. Wall time is a fake
    here, 22 ms per 10 ms tick; only a node clock that does not move is a stall.
    """
    from types import SimpleNamespace

    from lnn_control.ros import controller_node
    wall = [10**12]
    monkeypatch.setattr(controller_node, 'time', SimpleNamespace(
        monotonic_ns=lambda: wall[0], perf_counter_ns=controller_node.time.perf_counter_ns))
    r = rig({'learning_enabled': False})
    watchdog = r.node._publish_diagnostics_if_stalled
    warnings = record_warnings(r.node)
    r.send([0.0, 0.0])
    r.send_reference([0.3, -0.2])
    for _ in range(500):                   # 5 s of sim time, 11 s of wall time
        r.send([0.0, 0.0])
        r.tick()
        wall[0] += 22_000_000
        watchdog()
    assert all(c.any() for c in r.commands), 'zero effort while the clock ran'
    assert not [w for w in warnings if STANDS_STILL in w]
    published = len(r.commands)
    for _ in range(6):                     # now it stops: 1.5 s of wall time, no tick
        wall[0] += 250_000_000
        watchdog()
    r.wait(lambda: len(r.commands) > published, 'the zero effort')
    assert len(r.commands) == published + 1 and not r.commands[-1].any()
    assert [w for w in warnings if STANDS_STILL in w]


# -- a foreign readout file set while running -----------------------------------------

def _foreign_readout(path):
    """Write what another controller (other joints, learned weights) saved to ``path``."""
    other = twin({**BASE, 'joints': ['arm_j1', 'arm_j2']})
    for readout in other.readouts():
        readout.w[:] = 0.5
    other.save(str(path))


FOREIGN = {
    'another_controllers_readout': _foreign_readout,
    'any_existing_file': lambda path: path.write_bytes(b'not a readout, but not ours\n'),
}


@pytest.mark.parametrize('kind', sorted(FOREIGN))
def test_a_foreign_file_set_as_readout_path_is_only_written_on_request(rig, tmp_path, kind):
    own, foreign = tmp_path / 'own.npz', tmp_path / 'foreign.npz'
    FOREIGN[kind](foreign)
    original = foreign.read_bytes()
    # the supervisor off: nothing but the guard withholds a write (ReadoutStore.doubtful)
    r = rig({'readout_path': str(own), 'readout_autosave_period_s': 0.05,
             'supervisor.enabled': False})
    store = r.node.readout_store
    warnings = record_warnings(r.node)
    _learn(r, 6)                                  # due at 60 ms: the autosave writes
    store.flush()
    assert store.saves == 1 and own.is_file() and store.guarded is None
    (result,) = r.node.set_parameters([Parameter('readout_path', value=str(foreign))])
    assert result.successful, result.reason
    assert store.guarded == str(foreign)
    assert len(warnings) == 1, warnings
    assert str(foreign) in warnings[0] and 'autosave will not overwrite it' in warnings[0]
    _learn(r, 12)                                 # due at 120 and 170 ms: both withheld
    store.flush()
    assert (store.saves, store.skipped, store.withheld) == (1, 0, 2)
    assert foreign.read_bytes() == original
    status = r.node.diagnostics().status[0]
    keys = key_values(status)
    assert keys['readout autosaves'] == '1' and keys[WITHHELD] == '2'
    # held until the operator acts: a warning on /diagnostics, not only a counter
    assert status.level == DiagnosticStatus.WARN and str(foreign) in status.message
    because = keys[WITHHELD_BECAUSE]
    assert str(foreign) in because and 'existed when readout_path was set' in because
    ok, message = r.node.on_shutdown()            # what main() does on Ctrl-C / SIGTERM
    assert not ok and 'existed when readout_path was set' in message, message
    assert foreign.read_bytes() == original
    assert len(warnings) == 1                     # warned once, not at every due time
    # asked for: written, and the node's own file from then on
    saved = r.call(Trigger, 'save_readout', Trigger.Request())
    assert saved.success, saved.message
    assert foreign.read_bytes() != original and store.guarded is None
    assert 'existed when readout_path was set' not in r.node.diagnostics().status[0].message
    reloaded = twin(r.params)
    reloaded.load(str(foreign))
    for mine, theirs in zip(r.node.controller.readouts(), reloaded.readouts()):
        np.testing.assert_array_equal(mine.w, theirs.w)


# -- autosaves withheld while the supervisor doubts the readout -----------------------

def test_a_directory_set_as_readout_path_is_named_as_such(rig, tmp_path):
    """It was warned about as an existing file that autosave would not overwrite."""
    r = rig({'supervisor.enabled': False})
    warnings = record_warnings(r.node)
    (result,) = r.node.set_parameters([Parameter('readout_path', value=str(tmp_path))])
    assert result.successful, result.reason
    assert len(warnings) == 1 and 'is a directory, not a regular file' in warnings[0], warnings
    assert tmp_path.is_dir()


def test_autosaves_withheld_while_the_readout_is_not_judged_good(rig, tmp_path):
    path = tmp_path / 'readout.npz'
    r = rig({'readout_path': str(path), 'readout_autosave_period_s': 0.05})
    store, supervisor = r.node.readout_store, r.node.controller.supervisor
    assert supervisor.enabled                     # the default
    _learn(r, 6)                                  # due at 60 ms: no file yet, nothing to
    store.flush()                                 # lose, so it is written
    assert (store.saves, store.withheld) == (1, 0) and path.is_file()
    written = path.read_bytes()
    # to 1 s of node time, when the diagnostics timer publishes; the supervisor judges
    # (promotes a snapshot) every 2 windows (2 s): due at 110, 160, ... 960 ms: withheld
    _learn(r, 94)
    r.wait(lambda: r.diagnostics, '/diagnostics at 1 s of node time')
    assert supervisor.snapshots == 0 and supervisor.episodes == 0
    keys = r.diagnostics[-1]
    assert keys['readout autosaves'] == '1' and keys[WITHHELD] == '18'
    assert keys[WITHHELD_BECAUSE] == ('the learning supervisor has not judged the readout '
                                      'good since the last save')
    store.flush()
    assert path.read_bytes() == written
    # an intervention (as the core makes it when learning hurts): held, withheld again
    supervisor._rollback('injected by the test')
    _learn(r, 5)                                  # due at 1010 ms
    published = len(r.diagnostics)
    r.node.publish_diagnostics()
    r.wait(lambda: len(r.diagnostics) > published, 'the /diagnostics just published')
    keys = r.diagnostics[-1]
    assert keys['supervisor state'] == 'frozen'
    assert keys[WITHHELD] == '19'
    assert keys[WITHHELD_BECAUSE] == 'the learning supervisor holds the readout (frozen)'
    ok, message = r.node.on_shutdown()
    assert not ok and 'holds the readout (frozen)' in message and 'keeps the last save' in message
    assert path.read_bytes() == written
    assert store.saves == 1


# -- parameters that are only wrong together ------------------------------------------

SHORT = 'shorter than one control period'


def test_a_sensor_timeout_shorter_than_a_period_is_refused_and_nothing_applied(rig):
    r = rig({'learning_enabled': False, 'kd': [0.0]})      # 100 Hz: a period is 10 ms
    ctrl, loop = r.node.controller, r.node.loop
    assert ctrl.config.sensor_timeout_s == 0.1 and loop.timeout_ns == 100_000_000

    def unchanged():
        assert r.node.get_parameter('sensor_timeout_s').value == 0.1
        assert list(r.node.get_parameter('kp').value) == [10.0]
        assert ctrl.config.sensor_timeout_s == 0.1 and loop.timeout_ns == 100_000_000
        np.testing.assert_array_equal(ctrl.kp, [10.0, 10.0])

    (result,) = r.node.set_parameters([Parameter('sensor_timeout_s', value=0.005)])
    assert not result.successful and SHORT in result.reason, result.reason
    unchanged()
    result = r.node.set_parameters_atomically([Parameter('kp', value=[20.0]),
                                               Parameter('sensor_timeout_s', value=0.005)])
    assert not result.successful and SHORT in result.reason, result.reason
    unchanged()
    # through the parameter services, as `ros2 param` and other nodes set them
    client = AsyncParameterClient(r.tester, f'{r.ns}/lnn_controller')
    r.wait(client.services_are_ready, 'parameter services')
    future = client.set_parameters([Parameter('sensor_timeout_s', value=0.009)])
    r.wait(future.done, 'set_parameters')
    (result,) = future.result().results
    assert not result.successful and SHORT in result.reason, result.reason
    future = client.set_parameters_atomically([Parameter('kp', value=[20.0]),
                                               Parameter('sensor_timeout_s', value=0.005)])
    r.wait(future.done, 'set_parameters_atomically')
    result = future.result().result
    assert not result.successful and SHORT in result.reason, result.reason
    unchanged()
    # the loop runs on the old values: a state 20 ms old is not stale (at 5 ms it would be)
    r.send([0.0, 0.0])
    r.tick()
    r.send([0.1, -0.2])
    commands = [r.tick() for _ in range(3)]       # sensor age 0, 10, 20 ms
    np.testing.assert_allclose(commands, [[-1.0, 2.0]] * 3)     # kp 10 x (hold - q)
    assert not loop.stale and loop.stale_episodes == 0
    # a batch of the two without the bad combination is applied, both
    result = r.node.set_parameters_atomically([Parameter('kp', value=[20.0]),
                                               Parameter('sensor_timeout_s', value=0.01)])
    assert result.successful, result.reason
    assert ctrl.config.sensor_timeout_s == 0.01 and loop.timeout_ns == 10_000_000
    np.testing.assert_array_equal(ctrl.kp, [20.0, 20.0])

"""
Learning on disk (lnn_control.readout_file): refusals, set-aside, autosave, kills.

The kill test runs a process that autosaves every tick and SIGKILLs it at
random moments, many of them mid-write: every time, what is left on disk loads.
"""
import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time

from lnn_control.controller import AdaptiveController
from lnn_control.readout_file import (controller_arrays, ReadoutStore,
                                      remove_stale_temporaries, save_npz)
import numpy as np
import pytest

pytestmark = pytest.mark.unit

BASE = {'joints': ['j1', 'j2'], 'reservoir.size': 40, 'kp': [20.0, 10.0], 'kd': [2.0, 1.0],
        'command_limit': [5.0, 3.0], 'supervisor.enabled': False}


def trained(ticks=60, **overrides):
    ctrl = AdaptiveController({**BASE, **overrides}, dt=0.01)
    for k in range(ticks):
        t = 0.01 * k
        ctrl.step((np.full(2, 0.4 * np.sin(t)), np.full(2, 0.4 * np.cos(t))),
                  (np.full(2, 0.5 * np.sin(t)), np.full(2, 0.5 * np.cos(t)),
                   np.full(2, -0.5 * np.sin(t))))
    return ctrl


def corrupt(path):
    data = path.read_bytes()
    path.write_bytes(data[:100] + bytes(b ^ 0x5A for b in data[100:300]) + data[300:])


def truncate(path):
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


def pickled(path):
    np.save(path.with_suffix('.tmp.npy'), np.array([{'w': 1}], dtype=object),
            allow_pickle=True)
    os.replace(path.with_suffix('.tmp.npy'), path)


def empty(path):
    path.write_bytes(b'')


def foreign_reservoir(path):
    trained(**{'reservoir.neuron_model': 'lif'}).save(str(path))


def foreign_joints(path):
    trained(joints=['a', 'b']).save(str(path))


def _damaged(tmp_path, damage):
    """Return a saved readout file ``damage`` spoiled, its bytes, and a fresh controller."""
    path = tmp_path / 'readout.npz'
    trained().save(str(path))
    damage(path)
    return path, path.read_bytes(), AdaptiveController(BASE, dt=0.01)


@pytest.mark.parametrize('damage', [corrupt, truncate, pickled, empty, foreign_reservoir,
                                    foreign_joints])
def test_a_file_that_cannot_be_loaded_is_set_aside_and_learning_starts_fresh(tmp_path, damage):
    path, before, fresh = _damaged(tmp_path, damage)
    store = ReadoutStore(fresh, str(path), 0.0)
    try:
        ok, message = store.load_at_start()
    finally:
        store.close()
    assert not ok and 'refused' in message and 'starts fresh' in message, message
    assert 'nothing changed' not in message               # it was set aside
    assert not path.exists()
    assert (tmp_path / 'readout.npz.refused').read_bytes() == before   # kept, untouched
    assert not fresh.slow.w.any() and fresh.slow.updates == 0


def test_a_refused_file_that_cannot_be_set_aside_is_left_unwritten(tmp_path, monkeypatch):
    """A read-only directory: the rename raised out of load_at_start and the node never started."""
    import lnn_control.readout_file as RF

    def read_only(src, dst):
        raise PermissionError(13, 'Permission denied', src)
    path, before, fresh = _damaged(tmp_path, foreign_joints)
    store = ReadoutStore(fresh, str(path), 0.01)
    monkeypatch.setattr(RF.os, 'rename', read_only)
    try:
        ok, message = store.load_at_start()
        assert not ok and 'could not be set aside' in message and 'starts fresh' in message
        assert not fresh.slow.w.any()
        store.tick(0)
        assert not store.tick(20_000_000) and store.doubtful()   # never written automatically
        assert store.save_at_shutdown()[0] is None
    finally:
        store.close()
    assert path.read_bytes() == before


def test_a_file_a_requested_load_refused_is_not_autosaved_over(tmp_path):
    """
    Another robot's readout copied to readout_path, then ~/load_readout: refused.

    The next autosave replaced it with this node's readout (at start-up the same file is
    set aside as .refused so that nothing does). Now it is kept until ~/save_readout
    (replace it) or a load that succeeds.
    """
    path = tmp_path / 'r.npz'
    foreign_joints(path)
    theirs = path.read_bytes()
    ctrl = trained()
    store = ReadoutStore(ctrl, str(path), 0.05)
    try:
        assert store.tick(0) is False                 # the schedule starts
        ok, message = store.load()
        assert not ok and "saved for joints ['a', 'b']" in message
        assert 'was refused by a load: not overwritten until ~/save_readout' in message
        assert not store.tick(50_000_000) and 'refused by a load' in store.withheld_because
        store.flush()
        assert path.read_bytes() == theirs
        assert store.save()[0]                        # asked for: replaced
        assert store.guarded is None and path.read_bytes() != theirs
        assert store.tick(100_000_000)                # and autosaved again from then
    finally:
        store.close()


def test_a_file_another_process_wrote_is_not_written_over(tmp_path):
    """
    Two nodes started from one parameter file share its readout_path.

    Each autosave replaced the other's learning (and at a restart one loaded the other's).
    Now the first to find a write it did not make stops writing there, says why on
    /diagnostics (``last_error``), and writes again only when asked to.
    """
    path = tmp_path / 'r.npz'
    a, b = trained(), trained(ticks=90)
    first, second = ReadoutStore(a, str(path), 0.05), ReadoutStore(b, str(path), 0.05)
    try:
        for store in (first, second):
            assert store.tick(0) is False
        assert first.tick(50_000_000)
        first.flush()
        assert second.tick(50_000_000)               # a file second never wrote nor loaded
        second.flush()
        assert 'written by another process' in second.last_error and second.saves == 0
        assert not second.tick(100_000_000) and 'another process' in second.withheld_because
        ok, message = second.save_at_shutdown()
        assert ok is None and 'written by another process' in message
        assert first.tick(100_000_000)              # first's own file: written on
        first.flush()
        assert first.saves == 2 and first.last_error is None
        assert second.save()[0]                      # asked for: replaced, second's now
        assert first.tick(150_000_000)
        first.flush()
        assert 'written by another process' in first.last_error and first.saves == 2
    finally:
        first.close()
        second.close()
    other = AdaptiveController(BASE, dt=0.01)
    other.load(str(path))
    np.testing.assert_array_equal(other.slow.w, b.slow.w)


def test_autosave_is_periodic_off_thread_and_loadable(tmp_path):
    path = tmp_path / 'deep' / 'readout.npz'
    ctrl = trained()
    store = ReadoutStore(ctrl, str(path), 0.05)
    try:
        due = [store.tick(k * 10_000_000) for k in range(21)]      # 0 .. 200 ms
        store.flush()
        assert due.count(True) + store.skipped == 4                # at 50, 100, 150, 200 ms
        assert store.saves == due.count(True) and store.last_error is None
    finally:
        store.close()
    other = AdaptiveController(BASE, dt=0.01)
    other.load(str(path))
    np.testing.assert_array_equal(other.slow.w, ctrl.slow.w)
    assert [p.name for p in path.parent.iterdir()] == ['readout.npz']   # no temporaries


def test_reconfiguring_with_the_same_settings_keeps_the_schedule(tmp_path):
    store = ReadoutStore(trained(), str(tmp_path / 'r.npz'), 0.05)
    try:
        assert not store.tick(0)                          # next save due at 50 ms
        store.configure(str(tmp_path / 'r.npz'), 0.05)    # e.g. a gain changed meanwhile
        assert store.tick(50_000_000)
        store.flush()                                     # the writer is idle again
        store.configure(str(tmp_path / 'r.npz'), 0.1)     # a new period starts afresh
        assert not store.tick(100_000_000) and store.tick(200_000_000)
        store.flush()
        assert store.saves == 2 and store.skipped == 0
    finally:
        store.close()


def test_autosave_off_when_the_period_is_zero_or_the_path_empty(tmp_path):
    ctrl = trained()
    for path, period in ((str(tmp_path / 'x.npz'), 0.0), ('', 1.0)):
        store = ReadoutStore(ctrl, path, period)
        assert not any(store.tick(k * 1_000_000_000) for k in range(5))
        store.close()
    assert not list(tmp_path.iterdir())
    # a period too short for a nanosecond is accepted by the schema: every tick, not never
    store = ReadoutStore(ctrl, str(tmp_path / 'x.npz'), 5e-10)
    assert store.period_ns == 1
    store.close()


def test_automatic_writes_never_replace_the_file_with_a_doubtful_readout(tmp_path):
    """
    Write automatically only a readout the supervisor judged good since the last write.

    A robot held by its brakes had its learned readout rolled back, restarted and
    re-learned from a plant that does not move, and the autosave wrote that over the
    good file. (``snapshots += 1`` stands for the supervisor promoting a snapshot.)
    """
    path = tmp_path / 'r.npz'
    ctrl = trained()
    ctrl.update_params({'supervisor.enabled': True})
    sv = ctrl.supervisor
    store = ReadoutStore(ctrl, str(path), 0.05)
    try:
        assert store.tick(0) is False                 # the schedule starts
        assert store.tick(50_000_000)                 # no file yet: nothing to lose
        store.flush()
        assert not store.tick(100_000_000) and 'not judged' in store.withheld_because
        sv.snapshots += 1
        assert store.tick(150_000_000)                # judged good since: written
        store.flush()
        good = ctrl.slow.w.copy()
        sv.snapshots += 1
        sv._pd_only('injected: the readout made tracking worse')
        assert not ctrl.slow.w.any()
        assert not store.tick(200_000_000)
        assert 'holds the readout (pd_only)' in store.withheld_because
        ok, message = store.save_at_shutdown()
        assert ok is None and 'keeps the last save' in message     # on purpose: a warning
        sv._resume('injected')                        # learning again, from zero
        assert not store.tick(250_000_000) and 'intervened' in store.withheld_because
        # a clean period, but the promotion before the hold does not vouch for the readout
        # learned after it
        assert not store.tick(300_000_000) and 'not judged' in store.withheld_because
        assert store.withheld == 4 and store.saves == 2
    finally:
        store.close()
    other = AdaptiveController(BASE, dt=0.01)
    other.load(str(path))
    np.testing.assert_array_equal(other.slow.w, good)        # the file kept the good one
    sv.snapshots += 1
    assert store.save_at_shutdown()[0]
    ctrl.update_params({'supervisor.enabled': False})         # nothing judges: written
    assert store.save_at_shutdown()[0]


def test_a_readout_path_set_while_running_is_not_overwritten_until_asked(tmp_path):
    """An existing file named at runtime may be another robot's: no automatic write."""
    other_robot = tmp_path / 'other.npz'
    trained(joints=['a', 'b']).save(str(other_robot))
    before = other_robot.read_bytes()
    ctrl = trained()
    store = ReadoutStore(ctrl, str(tmp_path / 'mine.npz'), 0.05)
    try:
        store.configure(str(other_robot), 0.05)
        assert store.guarded == str(other_robot)
        assert not any(store.tick(k * 50_000_000) for k in range(4))
        assert 'not overwritten until' in store.withheld_because
        assert not store.save_at_shutdown()[0]
        assert not store.load()[0]                # another robot's: refused, still guarded
        assert store.guarded
        assert store.save()[0] and store.guarded is None     # asked for: replaced
        assert store.tick(10 * 50_000_000)
        store.flush()
    finally:
        store.close()
    assert other_robot.read_bytes() != before
    store = ReadoutStore(ctrl, str(other_robot), 0.05)   # at start: load_at_start's rules
    assert store.guarded is None
    store.close()
    mine = tmp_path / 'mine.npz'                      # back to a file this store wrote
    store = ReadoutStore(ctrl, str(mine), 0.05)
    try:
        assert store.save()[0]
        store.configure(str(other_robot), 0.05)
        store.configure(str(mine), 0.05)
        assert store.guarded is None
    finally:
        store.close()


def test_the_autosave_schedule_restarts_after_the_clock_jumped_back(tmp_path):
    store = ReadoutStore(trained(), str(tmp_path / 'r.npz'), 1.0)
    try:
        assert not store.tick(30_000_000_000)     # due at 31 s
        store.restart_schedule()                  # sim time went back to 1 s
        assert not store.tick(1_000_000_000) and store.tick(2_000_000_000)
    finally:
        store.close()


def test_a_busy_writer_skips_instead_of_queueing(tmp_path, monkeypatch):
    import lnn_control.readout_file as RF
    release = []

    def slow_save(path, arrays):
        while not release:
            time.sleep(0.001)
        save_npz(path, arrays)
    monkeypatch.setattr(RF, 'save_npz', slow_save)
    store = ReadoutStore(trained(), str(tmp_path / 'r.npz'), 0.01)
    try:
        assert not store.tick(10_000_000)                 # the first period starts
        assert store.tick(20_000_000)
        deadline = time.monotonic() + 10.0
        while store._autosave_waiting and time.monotonic() < deadline:
            time.sleep(0.001)                             # the writer took it and is busy
        assert store.tick(30_000_000)                     # waits behind it
        assert not store.tick(40_000_000) and not store.tick(50_000_000)
        assert store.skipped == 2
        release.append(True)
        store.flush()
        assert store.saves == 2
    finally:
        store.close()


@pytest.mark.parametrize('asynchronous', [False, True])
def test_an_autosave_copied_before_a_load_never_replaces_the_file_loaded(
        tmp_path, asynchronous):
    """
    The copy was queued behind a slow write; the load came before it was written.

    It then replaced the file just loaded with the readout from before the load (on
    simulated time, where ``~/load_readout`` is synchronous, every time).
    """
    path = tmp_path / 'r.npz'
    ctrl = trained()
    store = ReadoutStore(ctrl, str(path), 0.05)
    try:
        store.save()
        other = trained(300)                 # the operator puts a backup there and loads it
        other.save(str(tmp_path / 'backup.npz'))
        os.replace(tmp_path / 'backup.npz', path)
        gate = threading.Event()
        store._queue.put(gate.wait)          # a slow disk: the I/O thread is busy
        store.tick(0)
        assert store.tick(60_000_000)        # the old readout's copy waits behind it
        if asynchronous:
            request = store.load_request()
            gate.set()
            assert request.wait(10.0) and request.finish()[0]
        else:
            threading.Timer(0.05, gate.set).start()
            assert store.load()[0]
        np.testing.assert_array_equal(ctrl.slow.w, other.slow.w)
        store.flush()
        on_disk = np.load(path)
        np.testing.assert_array_equal(on_disk['slow/w'], other.slow.w)
        assert store.last_error is None
    finally:
        store.close()


def test_requests_do_the_file_work_on_the_io_thread_in_order(tmp_path, monkeypatch):
    """
    A save request copies the readout at once and says success only once it is written.

    A load asked for behind it reads what it wrote, and changes the controller only in
    ``finish`` (the front end's control thread, between ticks); failures are answered
    with the reason, and a refused file changes nothing.
    """
    import lnn_control.readout_file as RF
    release = threading.Event()
    write = RF.save_npz

    def gated(path, arrays):
        release.wait(10.0)
        write(path, arrays)
    monkeypatch.setattr(RF, 'save_npz', gated)
    ctrl = trained()
    path = tmp_path / 'r.npz'
    store = ReadoutStore(ctrl, str(path), 0.0)
    try:
        asked = ctrl.slow.w.copy()
        saving = store.save_request()
        loading = store.load_request()             # behind the save on the I/O thread
        ctrl.reset_learning()                      # the loop goes on meanwhile
        assert not saving.wait(0) and not loading.wait(0) and not path.exists()
        release.set()
        assert saving.wait(10.0) and saving.finish() == (True, f'saved readout to {path}')
        assert loading.wait(10.0) and not ctrl.slow.w.any()     # read, not swapped in
        ok, message = loading.finish()
        assert ok, message
        np.testing.assert_array_equal(ctrl.slow.w, asked)

        path.write_bytes(b'PK' + bytes(100))       # an archive's first bytes, then nothing
        refused = store.load_request()
        assert refused.wait(10.0)
        ok, message = refused.finish()
        assert not ok and message.startswith('not loaded (') and message.endswith(
            '); nothing changed; ' + store.guard_problem)
        assert len(message) > len('not loaded (); nothing changed; ' + store.guard_problem)
        np.testing.assert_array_equal(ctrl.slow.w, asked)

        def full(path, arrays):
            raise OSError(28, 'No space left on device')
        monkeypatch.setattr(RF, 'save_npz', full)
        failed = store.save_request()
        assert failed.wait(10.0)
        ok, message = failed.finish()
        assert not ok and message.startswith(f'saving readout to {path} failed: ')
        assert 'No space left' in message
    finally:
        store.close()


def test_a_load_still_pending_at_shutdown_keeps_the_shutdown_save_off_its_file(
        tmp_path, monkeypatch):
    """The client asked to use the file: the shutdown save wrote the old readout over it."""
    from lnn_control import readout_file
    path = tmp_path / 'r.npz'
    trained(ticks=120).save(str(path))
    wanted = path.read_bytes()
    release, read = threading.Event(), readout_file.read_controller
    monkeypatch.setattr(readout_file, 'read_controller',
                        lambda ctrl, p: (release.wait(10), read(ctrl, p))[1])
    store = ReadoutStore(trained(), str(path), 0.0)
    request = store.load_request()
    ok, message = store.save_at_shutdown()
    assert ok is None and 'a ~/load_readout of' in message and 'still pending' in message
    assert path.read_bytes() == wanted
    release.set()
    assert request.wait(10) and request.finish()[0]
    assert store.save_at_shutdown()[0]                  # finished: saved as usual
    store.close()


def test_the_snapshot_is_a_copy():
    ctrl = trained()
    arrays = controller_arrays(ctrl)
    w = arrays['slow/w'].copy()
    trained_more = ctrl
    trained_more.step((np.ones(2), np.ones(2)), (np.zeros(2), np.zeros(2), np.zeros(2)))
    np.testing.assert_array_equal(arrays['slow/w'], w)


WRITER = textwrap.dedent("""
    import sys
    import numpy as np
    from lnn_control.controller import AdaptiveController
    from lnn_control.readout_file import ReadoutStore
    # the supervisor off: nothing withholds a write (ReadoutStore.doubtful)
    ctrl = AdaptiveController({'joints': ['j1', 'j2'], 'reservoir.size': 200,
                               'supervisor.enabled': False}, dt=0.01)
    store = ReadoutStore(ctrl, sys.argv[1], 1e-9)      # a save due on every tick
    store.load_at_start()          # as the node does: the last run's file is this one's
    print('ready', flush=True)
    k = 0
    while True:
        k += 1
        t = 0.01 * k
        ctrl.step((np.full(2, np.sin(t)), np.zeros(2)), (np.zeros(2), np.zeros(2), np.zeros(2)))
        store.tick(k)
""")


@pytest.mark.slow
def test_kill_9_at_any_moment_leaves_a_loadable_file(tmp_path):
    path = tmp_path / 'readout.npz'
    rng = np.random.default_rng(0)
    fresh = AdaptiveController({'joints': ['j1', 'j2'], 'reservoir.size': 200}, dt=0.01)
    loaded = torn = 0
    for _ in range(12):
        proc = subprocess.Popen([sys.executable, '-c', WRITER, str(path)],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == 'ready'
        time.sleep(float(rng.uniform(0.05, 0.6)))     # mostly mid-write: it writes non-stop
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        torn += remove_stale_temporaries(str(path))     # killed mid-write
        if path.exists():
            store = ReadoutStore(fresh, str(path), 0.0)
            ok, message = store.load_at_start()        # also removes torn temporaries
            store.close()
            assert ok, message
            loaded += 1
        assert [p.name for p in tmp_path.iterdir()] in ([], ['readout.npz'])
    assert loaded >= 10
    print(f'{torn} of 12 kills interrupted a write')
    assert torn >= 3


def test_a_directory_as_readout_path_is_left_alone_and_set_aside_files_never_overwritten(
        tmp_path):
    ctrl = AdaptiveController(BASE, dt=0.01)
    folder = tmp_path / 'data'
    folder.mkdir()
    (folder / 'keep.txt').write_text('mine')
    ok, message = ReadoutStore(ctrl, str(folder), 0.0).load_at_start()
    assert not ok and 'not a regular file' in message
    assert (folder / 'keep.txt').read_text() == 'mine'          # not renamed
    path = tmp_path / 'readout.npz'
    for k in range(3):                                          # three refused files in turn
        path.write_bytes(b'not a readout %d' % k)
        assert not ReadoutStore(ctrl, str(path), 0.0).load_at_start()[0]
    kept = sorted(p.name for p in tmp_path.iterdir() if 'refused' in p.name)
    assert kept == ['readout.npz.refused', 'readout.npz.refused.1', 'readout.npz.refused.2']
    assert (tmp_path / 'readout.npz.refused').read_bytes() == b'not a readout 0'


def test_what_is_not_a_regular_file_is_never_written_over_nor_opened(tmp_path):
    """
    A device, a FIFO or a directory is refused by saves, autosaves and loads, with what it is.

    A save renamed a file over /dev/null (a root container lost it), an autosave did the
    same, and a load of a FIFO blocked the I/O thread for good.
    """
    ctrl = trained()
    fifo = tmp_path / 'pipe'
    os.mkfifo(fifo)
    store = ReadoutStore(ctrl, str(fifo), 0.01)
    ok, message = store.save()
    assert not ok and 'is a FIFO, not a regular file: nothing is written there' in message
    ok, message = store.load()                  # returns: the FIFO is never opened
    assert not ok and 'is a FIFO, not a regular file' in message
    store.tick(0)
    store.tick(10 ** 9)                          # an autosave is due
    store.flush()
    assert 'is a FIFO' in store.last_error and store.saves == 0
    store.close()
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    ok, message = ReadoutStore(ctrl, str(fifo), 0.0).load_at_start()
    assert not ok and 'is a FIFO, not a regular file: not loaded' in message


def test_a_save_through_a_symlink_replaces_its_target_and_keeps_the_link(tmp_path):
    """current.npz -> robots/arm1.npz: the link became a file and the target went stale."""
    (tmp_path / 'robots').mkdir()
    target, link = tmp_path / 'robots' / 'arm1.npz', tmp_path / 'current.npz'
    target.write_bytes(b'old')
    link.symlink_to(target)
    ctrl = trained()
    assert ReadoutStore(ctrl, str(link), 0.0).save()[0]
    assert link.is_symlink() and os.readlink(link) == str(target)
    fresh = AdaptiveController(BASE, dt=0.01)
    assert ReadoutStore(fresh, str(target), 0.0).load()[0]
    np.testing.assert_array_equal(fresh.slow.w, ctrl.slow.w)
    assert not list(tmp_path.rglob('.readout-*'))     # no temporary left


def test_readout_path_expands_the_home_directory(tmp_path, monkeypatch):
    monkeypatch.setenv('HOME', str(tmp_path))
    store = ReadoutStore(AdaptiveController(BASE, dt=0.01), '~/lnn/readout.npz', 0.0)
    assert store.path == str(tmp_path / 'lnn' / 'readout.npz')


@pytest.mark.parametrize('saved_fast', [False, True], ids=['saved_without', 'saved_with'])
def test_a_readout_saved_with_the_fast_learner_toggled_loads_its_slow_readout(
        tmp_path, saved_fast):
    """Only the fast readout (it forgets within ticks) is left out: the file was refused."""
    path = tmp_path / 'readout.npz'
    saved = trained(**{'rls.fast_learner': saved_fast})
    saved.save(str(path))
    ctrl = trained(**{'rls.fast_learner': not saved_fast})   # learned something of its own
    store = ReadoutStore(ctrl, str(path), 0.0)
    try:
        ok, message = store.load_at_start()
    finally:
        store.close()
    assert ok, message
    np.testing.assert_array_equal(ctrl.slow.w, saved.slow.w)
    assert path.exists() and not list(tmp_path.glob('*.refused*'))
    if saved_fast:
        assert 'its fast readout is ignored' in message, message
    else:
        assert 'the fast readout starts fresh' in message, message
        fresh = AdaptiveController(BASE, dt=0.01).fast
        assert not ctrl.fast.w.any() and ctrl.fast.updates == 0
        np.testing.assert_array_equal(ctrl.fast.covariance(), fresh.covariance())


def test_a_fast_readout_started_for_a_file_without_one_takes_the_files_cut_gain(tmp_path):
    """It restarted at full gain while the file's supervisor cuts said x0.01."""
    path = tmp_path / 'readout.npz'
    saved = trained(**{'rls.fast_learner': False})
    saved.supervisor.gain_scale, saved.supervisor.gain_tripped = 0.01, 0.1
    saved.save(str(path))
    ctrl = trained()
    ctrl.load(str(path))
    assert ctrl.supervisor.readout_gains() == (0.01, 0.01)
    fresh = AdaptiveController(BASE, dt=0.01).fast
    np.testing.assert_allclose(ctrl.fast.covariance(), 0.01 * fresh.covariance())


def test_saves_keep_the_files_permissions_and_give_a_new_one_what_open_would(tmp_path):
    """A save through mkstemp (0600) took a 0644 file's access from every other account."""
    path = tmp_path / 'readout.npz'
    ctrl = trained()
    old = os.umask(0o027)
    try:
        ctrl.save(str(path))
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640          # 0o666 less the umask
    path.chmod(0o644)
    store = ReadoutStore(ctrl, str(path), 0.0)
    try:
        assert store.save()[0]
    finally:
        store.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_a_file_that_is_no_readout_is_refused_without_pointing_at_unpickling(tmp_path):
    """The refusal said, as numpy's, to load it 'unsafely using allow_pickle=' (runs its code)."""
    text = tmp_path / 'version'                 # e.g. readout_path: /proc/version
    text.write_text('Linux version 6.1.0\n')
    objects = tmp_path / 'objects.npz'
    np.savez(objects, w=np.array([{'w': 1}], dtype=object))
    for path, reason in ((text, 'is not a readout file (not an .npz archive)'),
                         (objects, 'holds pickled (object) data, which is never loaded')):
        store = ReadoutStore(AdaptiveController(BASE, dt=0.01), str(path), 0.0)
        try:
            ok, message = store.load()
        finally:
            store.close()
        assert not ok and reason in message and 'allow_pickle' not in message, message


@pytest.mark.parametrize('mend', ['save', 'new_path'])
def test_a_failed_autosave_is_no_longer_reported_once_mended(tmp_path, mend):
    """The failure stayed on /diagnostics until a later autosave succeeded (never, with 0 s)."""
    blocker = tmp_path / 'afile'
    blocker.write_text('')
    store = ReadoutStore(trained(), str(blocker / 'readout.npz'), 0.05)   # under a file
    try:
        store.tick(0)
        store.tick(60_000_000)
        store.flush()
        assert store.last_error and 'autosave' in store.last_error
        if mend == 'save':                         # the cause removed, ~/save_readout
            blocker.unlink()
            blocker.mkdir()
            assert store.save()[0]
        else:                                      # readout_path set to a good place
            store.configure(str(tmp_path / 'readout.npz'), 0.05)
        assert store.last_error is None
    finally:
        store.close()


@pytest.mark.parametrize('damage', [truncate, corrupt])
def test_a_truncated_or_corrupt_file_is_a_value_error_that_says_so(tmp_path, damage):
    """The core API raised zipfile.BadZipFile, which a caller catching ValueError missed."""
    path = tmp_path / 'readout.npz'
    trained().save(str(path))
    damage(path)
    with pytest.raises(ValueError, match='truncated or corrupt'):
        AdaptiveController(BASE, dt=0.01).load(str(path))


def test_a_relative_readout_path_is_made_absolute_where_it_is_set(tmp_path, monkeypatch):
    """Resolved when set: the node's start log and every message give the file's place."""
    monkeypatch.chdir(tmp_path)
    store = ReadoutStore(AdaptiveController(BASE, dt=0.01), 'sub/readout.npz', 0.0)
    try:
        assert store.path == str(tmp_path / 'sub' / 'readout.npz')
    finally:
        store.close()

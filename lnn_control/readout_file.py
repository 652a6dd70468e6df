"""
What a controller has learned, on disk (.npz, no pickle).

A readout's weights only mean something with the joints, controller mode,
reservoir and input normalisation they were learned with, and a supervisor
gain cut belongs to what was learned, so all of it is saved together and a
file for other joints, another mode, another reservoir or other fixed scales
is refused with the reason (so is one learned at another control rate:
the reservoir's features change with it), leaving the controller as it was (a fast readout only
one side has is not: it is what rls.fast_learner toggled between runs leaves, and
forgets within ticks anyway; the slow one, the model, is loaded). Writes are
durable and atomic (temporary file, fsync, rename, fsync of the directory), so
a crash or a power cut at any moment leaves either the previous file or the
new one. ``ReadoutStore`` saves periodically, and saves and loads on request, with the
file work off the control thread. ROS-free.
"""
from __future__ import annotations

from dataclasses import dataclass
import functools
import json
import math
import os
import queue
import stat
import tempfile
import threading
from typing import Any, Callable, Optional
import zipfile
import zlib

import numpy as np

READOUT_NAMES = ('slow', 'fast')
# What reading a missing, foreign or corrupt readout file can raise: anything but a
# BaseException (a corrupt zip raises from deep inside zipfile and numpy, with many types).
LOAD_ERRORS = (Exception,)
NOT_LOADED = 'not loaded ({}); nothing changed'     # a refused request, with the reason


def _kind(path: str) -> Optional[str]:
    """Say what ``path`` is when it exists and is not a regular file (None otherwise)."""
    try:
        mode = os.stat(path).st_mode           # follows a symlink: what it points to
    except (OSError, ValueError):              # (ValueError: a NUL in the path)
        return None
    for test, kind in ((stat.S_ISREG, None), (stat.S_ISDIR, 'a directory'),
                       (stat.S_ISCHR, 'a character device'), (stat.S_ISBLK, 'a block device'),
                       (stat.S_ISFIFO, 'a FIFO'), (stat.S_ISSOCK, 'a socket')):
        if test(mode):
            return kind
    return 'not a regular file'


def file_identity(path: str) -> Optional[tuple[int, int, int, int]]:
    """Return what tells one write of ``path`` from another (None: no regular file)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size) if stat.S_ISREG(st.st_mode) else None


def not_a_file_problem(path: str) -> Optional[str]:
    """Say why ``path`` can never hold a readout file (None: it can, or does not exist)."""
    kind = _kind(path)
    return None if kind is None else f'{path} is {kind}, not a regular file'


def save_npz(path: str, arrays: dict[str, np.ndarray]) -> None:
    """
    Write ``arrays`` atomically: a crash mid-write never leaves a torn file.

    A symlink is followed (its target is replaced, the link stays); anything but a regular
    file is refused: renaming over it replaced /dev/null with a file.
    """
    path = os.path.realpath(path)
    problem = not_a_file_problem(path)
    if problem:
        raise ValueError(f'{problem}: nothing is written there')
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=_temp_prefix(path), suffix='.npz')
    try:
        # the file's own mode, or what open() gives a new one (mkstemp's 0600 took every
        # other account's access, a backup's or another node's, at the first autosave)
        os.fchmod(fd, _mode_of(path))
        with os.fdopen(fd, 'wb') as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)           # the rename itself survives a power cut
    finally:
        os.close(dir_fd)


def _mode_of(path: str) -> int:
    """Return the permission bits of ``path``, or 0o666 less the umask for a new file."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return 0o666 & ~_umask()


def _umask() -> int:
    """Read the process umask without setting it (os.umask would race other threads)."""
    try:
        with open('/proc/self/status', encoding='ascii') as f:
            for line in f:
                if line.startswith('Umask:'):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def _temp_prefix(path: str) -> str:
    return f'.readout-{os.path.basename(path)}-'


def remove_stale_temporaries(path: str) -> int:
    """Remove what writes of ``path`` killed mid-way left behind; return how many."""
    path = os.path.realpath(path)
    directory = os.path.dirname(path)
    prefix = _temp_prefix(path)
    stale = [f for f in (os.listdir(directory) if os.path.isdir(directory) else ())
             if f.startswith(prefix) and f.endswith('.npz')]
    for name in stale:
        os.unlink(os.path.join(directory, name))
    return len(stale)


def _open_npz(path: str):
    """
    Open an .npz archive (its index only); refuse anything else, with what it is.

    Given another file, ``np.load`` tries to unpickle it and its refusal points at
    ``allow_pickle=`` as the way out: unpickling runs whatever code the file holds.
    """
    problem = not_a_file_problem(path)          # opening a FIFO would block for good
    if problem:
        raise ValueError(problem)
    with open(path, 'rb') as f:
        if f.read(2) != b'PK':                  # every zip archive starts so
            raise ValueError(f'{path} is not a readout file (not an .npz archive)')
    return np.load(path, allow_pickle=False)


def load_npz(path: str) -> dict[str, np.ndarray]:
    """Read every array of an .npz archive; pickled (object) data is refused, never loaded."""
    try:
        with _open_npz(path) as data:
            return {k: data[k] for k in data.files}
    except ValueError as e:
        if 'allow_pickle' not in str(e):
            raise
        raise ValueError(f'{path} is not a readout file: it holds pickled (object) data, '
                         'which is never loaded') from None
    except (zipfile.BadZipFile, EOFError, zlib.error) as e:
        raise ValueError(f'{path} is truncated or corrupt ({e})') from None


def fast_readout_note(ctrl, saved: set[str]) -> Optional[str]:
    """
    Say how a fast readout saved without ``ctrl`` having one, or the reverse, is taken.

    None when both or neither have one. The slow readout is what was learned; the fast
    one forgets within ticks, so toggling rls.fast_learner between runs costs only it.
    """
    if 'fast' in saved and ctrl.fast is None:
        return 'its fast readout is ignored: rls.fast_learner is off'
    if 'fast' not in saved and ctrl.fast is not None:
        return 'saved with rls.fast_learner off: the fast readout starts fresh'
    return None


def controller_arrays(ctrl, spare: Optional[dict] = None) -> dict[str, np.ndarray]:
    """
    Copy what ``ctrl`` has learned, with what it needs to mean the same on load.

    ``spare``: an earlier copy no longer used, whose covariances are copied into: at
    N=2000 a copy into fresh memory took up to 63 ms here (page faults), into used 9 ms.
    """
    ctrl.adapt()                     # a tick's pending learning step first
    arrays = {}
    for name, r in zip(READOUT_NAMES, ctrl.readouts()):
        out = (spare or {}).get(f'{name}/p')
        out = out if out is not None and out.shape == r.p.shape else None
        arrays.update({f'{name}/{k}': v for k, v in r.state_dict(out).items()})
    arrays['joints'] = np.array(ctrl.joints)
    arrays['mode'] = np.array(ctrl.mode)
    arrays['reservoir'] = np.array(_reservoir_identity(ctrl))
    arrays['dt'] = np.float64(ctrl.dt)     # the features' time base (leak, LTC, LIF)
    arrays.update(ctrl.normalizer.state())
    arrays['supervisor/gain_scale'] = np.float64(ctrl.supervisor.gain_scale)
    arrays['supervisor/fast_cut'] = np.float64(ctrl.supervisor.fast_cut)
    arrays['supervisor/gain_capped'] = np.bool_(ctrl.supervisor.gain_capped)
    arrays['supervisor/gain_tripped'] = np.float64(ctrl.supervisor.gain_tripped)
    return arrays


def save_controller(ctrl, path: str) -> None:
    """Save ``ctrl``'s readouts with what they need to mean the same on load."""
    save_npz(path, controller_arrays(ctrl))


def _reservoir_identity(ctrl) -> str:
    """Return the settings that make the reservoir what it is, as canonical JSON."""
    return json.dumps(ctrl.config.section('reservoir'), sort_keys=True)


def _differences(saved: str, ours: str) -> str:
    """Say which reservoir settings differ between two ``_reservoir_identity`` strings."""
    try:
        a, b = json.loads(saved), json.loads(ours)
        keys = sorted(set(a) | set(b))
        return ', '.join(f'reservoir.{k} {a.get(k)} there, {b.get(k)} here'
                         for k in keys if a.get(k) != b.get(k))
    except (ValueError, TypeError, AttributeError):
        return f'{saved}, not this one ({ours})'


@dataclass(frozen=True)
class LoadedReadout:
    """A readout file read and checked against a controller (``read_controller``)."""

    path: str
    note: Optional[str]                 # how a fast readout only one side has is taken
    states: list                        # per readout, as ``RLSReadout.restore`` takes it
    scale: np.ndarray
    envelope: np.ndarray
    gain_scale: float
    fast_cut: float
    gain_capped: bool
    gain_tripped: float = 0.0


def read_controller(ctrl, path: str) -> LoadedReadout:
    """
    Read what ``save_controller`` wrote and check it against ``ctrl``, changing nothing.

    Raises ValueError for a file of other joints, mode, shapes or fixed input scales
    (anything ``load_npz`` raises for one that is no readout file). Reads only what is
    fixed when ``ctrl`` is built (joints, mode, reservoir, readout shapes, read-only
    parameters), so it may run off the control thread while ``ctrl`` ticks.
    """
    data = load_npz(path)
    note = fast_readout_note(ctrl, {k.split('/', 1)[0] for k in data})
    saved_joints = [str(j) for j in data.get('joints', ())]
    if tuple(saved_joints) != ctrl.joints:
        raise ValueError(f'{path} was saved for joints {saved_joints}, not {list(ctrl.joints)}')
    if str(data.get('mode')) != ctrl.mode:
        raise ValueError(f"{path} was saved in {data.get('mode')} mode, not {ctrl.mode}")
    if 'reservoir' in data and str(data['reservoir']) != _reservoir_identity(ctrl):
        raise ValueError(f'{path} was learned on another reservoir: '
                         + _differences(str(data['reservoir']), _reservoir_identity(ctrl)))
    saved_dt = float(data.get('dt', ctrl.dt))
    if not (math.isfinite(saved_dt) and saved_dt > 0):
        raise ValueError(f'{path} holds an invalid control period ({saved_dt:g} s)')
    if not np.isclose(saved_dt, ctrl.dt, rtol=1e-9, atol=0.0):
        raise ValueError(f'{path} was learned at {1.0 / saved_dt:g} Hz, not at '
                         f'{1.0 / ctrl.dt:g} Hz: the reservoir features change with the rate')
    norm = ctrl.normalizer
    scale = np.asarray(data.get('input/scale', norm.scale), dtype=float)
    envelope = np.asarray(data.get('input/envelope', norm.envelope), dtype=float)
    gain = float(data.get('supervisor/gain_scale', 1.0))
    fast_cut = float(data.get('supervisor/fast_cut', 1.0))
    gain_capped = bool(data.get('supervisor/gain_capped', False))
    # (files before it: a cut gain came from trips at full gain, as the ladder starts there)
    tripped = float(data.get('supervisor/gain_tripped', 1.0 if gain < 1 else 0.0))
    if not (0 < gain <= 1 and 0 <= fast_cut <= 1 and 0 <= tripped <= 1):
        raise ValueError(f'{path} holds invalid input scales or supervisor gain')
    norm.check_state(path, scale, envelope)
    states = []
    for name, r in zip(READOUT_NAMES, ctrl.readouts()):
        state = {k.split('/', 1)[1]: v for k, v in data.items() if k.startswith(name + '/')}
        if not state and name == 'fast':
            break                       # saved with rls.fast_learner off: reset on install
        if not state:
            raise ValueError(f'{path} has no {name} readout')
        states.append(r.checked_state(state))
    return LoadedReadout(path, note, states, scale, envelope, gain, fast_cut, gain_capped,
                         tripped)


def install_controller(ctrl, loaded: LoadedReadout) -> Optional[str]:
    """Put a readout ``read_controller`` checked into ``ctrl`` (cannot fail); return its note."""
    for r, state in zip(ctrl.readouts(), loaded.states):
        r.restore(state)
    if len(loaded.states) < len(ctrl.readouts()):
        ctrl.fast.reset(ctrl.config.rls.initial_covariance / ctrl.input_power)
    ctrl.normalizer.load_state(loaded.scale, loaded.envelope)
    ctrl.supervisor.reset()
    ctrl.supervisor.gain_scale = loaded.gain_scale
    ctrl.supervisor.fast_cut = loaded.fast_cut
    ctrl.supervisor.gain_capped = loaded.gain_capped
    ctrl.supervisor.gain_tripped = loaded.gain_tripped
    if len(loaded.states) < len(ctrl.readouts()):    # the fast readout started fresh above:
        gain = ctrl.supervisor.readout_gains()[1]      # at the gain the file's cuts left
        if 0.0 < gain < 1.0:
            ctrl.fast.restart_covariance(gain)
    return loaded.note


def load_controller(ctrl, path) -> Optional[str]:
    """
    Load what ``save_controller`` wrote into ``ctrl``, all or nothing.

    Raises ValueError (``ctrl`` unchanged) for a file of other joints, mode,
    shapes or fixed input scales. A fast readout only one side has is no reason to
    refuse: returns how it was taken (``fast_readout_note``), else None. ``path`` may also
    be what ``read_controller`` returned: ``ReadoutStore`` reads off the control thread and
    installs, through ``AdaptiveController.load``, on it.
    """
    loaded = path if isinstance(path, LoadedReadout) else read_controller(ctrl, path)
    return install_controller(ctrl, loaded)


def set_aside(path: str) -> str:
    """
    Rename a refused file out of the way (kept for inspection); return its new name.

    Never over an earlier one (``.refused``, then ``.refused.1``, ...): a refused file may
    be the learning of another run, set aside before.
    """
    aside, k = f'{path}.refused', 0
    while os.path.lexists(aside):
        k += 1
        aside = f'{path}.refused.{k}'
    os.rename(path, aside)
    return aside


class Request:
    """
    A save or load asked of a ``ReadoutStore``, in two parts.

    ``io`` (the file work) runs on the store's I/O thread, or at once for a synchronous
    request, then ``wake`` is called there; ``finish`` runs on the thread that asked, once
    ``wait`` says it is done, and returns (ok, message). So a front end's control thread
    only takes the snapshot before and swaps a loaded readout in after, between ticks.
    """

    def __init__(self, io: Optional[Callable[[], Any]],
                 finish: Callable[[Any, Optional[Exception]], tuple[bool, str]],
                 wake: Optional[Callable[[], None]] = None):
        self._io, self._finish, self._wake = io, finish, wake
        self._result: Any = None
        self._error: Optional[Exception] = None
        self._done = threading.Event()
        if io is None:
            self._done.set()

    @classmethod
    def answered(cls, ok: bool, message: str) -> 'Request':
        """Return a request with nothing to do but answer."""
        return cls(None, lambda result, error: (ok, message))

    def run(self) -> 'Request':
        """Do the file work (any exception goes to ``finish``), then call ``wake``."""
        try:
            self._result = self._io()
        except Exception as e:       # finish() re-raises what it does not expect
            self._error = e
        self._done.set()
        if self._wake is not None:
            self._wake()
        return self

    def wait(self, timeout_s: Optional[float] = None) -> bool:
        """Wait at most ``timeout_s`` for the file work; return whether it is done."""
        return self._done.wait(timeout_s)

    def finish(self) -> tuple[bool, str]:
        """Complete the request on the thread that asked (once done); return (ok, message)."""
        return self._finish(self._result, self._error)


class ReadoutStore:
    """
    Where a controller's learning lives on disk, for a front end (the node).

    ``load_at_start`` loads ``path`` if it exists; a file that cannot be loaded
    (corrupt, truncated, pickled, another robot or reservoir) is renamed to
    ``<path>.refused`` (``.refused.1``, ... when taken: ``set_aside``) so that nothing
    overwrites it, and learning starts fresh; a ``path`` that is not a regular file (a
    directory) is refused and left as it is.
    ``save``/``load`` serve requests on the calling thread and return (ok, message);
    ``save_request``/``load_request`` serve them with the file work on the I/O thread
    (``Request``), so that a control loop runs on meanwhile (at N=1000 a save is 30 ms of
    writing, a load as long of reading and checking); neither raises for a file problem.
    ``tick(now_ns)`` autosaves every ``period_s``: on the control thread, after
    the command is out, it copies what was learned (``controller_arrays``,
    0.23 ms at N=300, 4 ms at N=1000) and hands the copy to the I/O thread that writes it
    durably and atomically (``save_npz``), so a kill at any moment leaves the
    last completed save. An autosave due while the previous one still waits for the I/O
    thread is skipped (counted), never queued. Times are nanoseconds of the front end's clock.

    Automatic writes (the autosave, ``save_at_shutdown``) never replace a good file with
    a doubtful readout: with the learning supervisor on, they replace an existing file
    only after it judged the readout good (promoted a snapshot) since the last write, and
    never with an intervention since the previous due time or during its holds (withheld,
    counted). Before, a robot held by its brakes, learning from a plant that does not
    move, had its readout rolled back, restarted and re-learned wrong, and the autosave
    wrote that over the good file.
    A ``path`` set while running that names an existing file this store has not written or
    loaded is not written automatically until ``save`` (replace it) or ``load`` (use it)
    is asked for: it may hold another robot's learning. So is one a requested ``load``
    refused (another robot's file copied there: the next autosave replaced it), and one
    another process wrote since this store last wrote or loaded it (two nodes started
    from one parameter file with its ``readout_path``: each autosave replaced the
    other's learning, and at a restart one loaded the other's).
    """

    def __init__(self, ctrl, path: str, period_s: float):
        self.ctrl = ctrl
        self.saves = 0                # completed autosaves
        self.skipped = 0              # due while the writer was busy
        self.withheld = 0             # due while the readout was doubtful (see above)
        self.withheld_because: Optional[str] = None   # ... the last time, why
        self.last_error: Optional[str] = None
        self._loads_pending = 0       # load_request()s not finished (swapped in or refused)
        # loads asked for: an autosave snapshot taken before one is not written after it
        # (it replaced the file just loaded with the readout from before the load)
        self._loads_asked = 0
        self._file_lock = threading.Lock()   # an autosave's check and write; a load on the caller
        # the I/O thread's work, in order: autosaves, requests, flush marks; None stops it
        self._queue: queue.Queue = queue.Queue()
        self._autosave_waiting = False
        # a written snapshot, for the next one to copy into (``controller_arrays``)
        self._spare: Optional[dict] = None
        # the supervisor's interventions at the last due time or write, its promoted
        # snapshots at the last write (``doubtful``)
        self._episodes, self._snapshots = ctrl.supervisor.episodes, ctrl.supervisor.snapshots
        self._guarded: Optional[str] = None         # an existing file set while running
        self._guard_why = ''                         # ... or refused by a load: which
        self._own: set[str] = set()                  # files this store wrote or loaded
        self._on_disk: dict[str, Optional[tuple]] = {}   # ... and which write of each
        self.configure(path, period_s, running=False)
        if self.path:           # its memory touched now, so the first snapshot is as fast
            self._spare = {f'{name}/p': np.ones_like(r.p)
                           for name, r in zip(READOUT_NAMES, ctrl.readouts())}
        self._thread = threading.Thread(target=self._work_loop, name='readout-io',
                                        daemon=True)
        self._thread.start()

    def configure(self, path: str, period_s: float, running: bool = True) -> None:
        """
        Use ``path``, autosaving every ``period_s`` (0 or an empty path: never).

        The schedule restarts only when one of the two changes, so a front end may
        call this on every parameter change (a gain) without postponing the next save.
        ``running``: a new ``path`` naming an existing file is guarded (class docstring).
        """
        # rounded up: a period too short for a nanosecond is every tick, not never
        period_ns = math.ceil(period_s * 1e9)
        # '~/.ros/...' as a shell would; a relative path from the working directory now, so
        # it names one file for the node's life (and the logs give where it is)
        path = os.path.abspath(os.path.expanduser(path)) if path else path
        if (running and path and path != getattr(self, 'path', None)
                and path not in self._own and os.path.exists(path)):
            self._guard(path, 'existed when readout_path was set')
        if path != getattr(self, 'path', None):
            self.last_error = None      # it was about the old path
        if (path, period_ns) != (getattr(self, 'path', None), getattr(self, 'period_ns', None)):
            self.path, self.period_ns = path, period_ns
            self.restart_schedule()

    def restart_schedule(self) -> None:
        """Count the next autosave from the next ``tick`` (after the clock jumped back)."""
        self._next_ns: Optional[int] = None

    @property
    def not_a_file(self) -> Optional[str]:
        """Say what ``path`` is when it is not a regular file (a directory, a device), else None."""
        return not_a_file_problem(self.path) if self.path else None

    @property
    def guarded(self) -> Optional[str]:
        """Return ``path`` while automatic writes keep off it (class docstring)."""
        return self._guarded if self._guarded == self.path else None

    @property
    def guard_problem(self) -> Optional[str]:
        """Say why a guarded ``path`` is not written automatically (None: not guarded)."""
        if not self.guarded:
            return None
        return self._guard_text(self.path)

    def _guard(self, path: str, why: str) -> str:
        """Keep automatic writes off ``path`` (``why``: what it is); return the reason."""
        self._guard_why = why
        self._guarded = path        # (after its reason: the control thread reads both)
        return self._guard_text(path)

    def _guard_text(self, path: str) -> str:
        return (f'{path} {self._guard_why}: not overwritten until ~/save_readout (replace it) '
                'or ~/load_readout (use it)')

    def doubtful(self) -> Optional[str]:
        """
        Say why an automatic write should not replace the file now (None: it may).

        Interventions count since the previous due time or write (a clean period after
        one allows a write again); the judgement (a promoted snapshot) since the last
        write, and only when there is a file to lose. Call ``_checked`` when a write was due.
        """
        sv = self.ctrl.supervisor
        if self.guarded:
            return self.guard_problem
        if not sv.enabled:
            return None
        if sv.state != 'learning':
            return f'the learning supervisor holds the readout ({sv.state})'
        if sv.episodes != self._episodes:
            return 'the learning supervisor intervened since the last save'
        if sv.snapshots == self._snapshots and os.path.exists(self.path):
            return 'the learning supervisor has not judged the readout good since the last save'
        return None

    def _adopted(self, path: str, marks: Optional[tuple[int, int]] = None) -> None:
        """
        ``path`` was saved or loaded on request: this store's own file, judged from then.

        ``marks``: the supervisor's (episodes, snapshots) when a save's snapshot was taken
        (None: now), so the judgement counts from what the file holds.
        """
        if self._guarded == path:
            self._guarded = None
        self._own.add(path)
        self._on_disk[path] = file_identity(path)
        if marks is None:
            self._checked(written=True)
        else:
            self._episodes, self._snapshots = marks

    def _checked(self, written: bool) -> None:
        """
        Move the marks ``doubtful`` judges from: a write was due (and made, if ``written``).

        An intervention also voids earlier judgements: they vouched for the readout before it.
        """
        sv = self.ctrl.supervisor
        if written or sv.episodes != self._episodes:
            self._snapshots = sv.snapshots
        self._episodes = sv.episodes

    def load_at_start(self) -> Optional[tuple[bool, str]]:
        """
        Load ``path`` if it exists: None if there is none, else (ok, message).

        Temporary files of writes a kill interrupted are removed first.
        """
        if self.path:
            remove_stale_temporaries(self.path)
        if not (self.path and os.path.exists(self.path)):
            return None
        if self.not_a_file:                       # a directory, a device: never renamed
            return False, (f'readout_path {self.not_a_file}: not loaded, left as it is, and '
                           'nothing will be saved there; learning starts fresh')
        ok, message = self._load_request().run().finish()
        if not ok:
            try:
                kept = f'kept as {set_aside(self.path)}'
            except OSError as e:         # a read-only directory: it stays, never written
                kept = f'could not be set aside ({e}); ' + self._guard(
                    self.path, 'was refused at start')
            message = f'readout_path {self.path} refused ({message}); {kept}; learning starts fresh'
        return ok, message

    def save(self) -> tuple[bool, str]:
        """Save now, on the calling thread; (ok, message)."""
        return self._save_request().run().finish()

    def save_request(self, wake: Optional[Callable[[], None]] = None) -> Request:
        """
        Save with the writing on the I/O thread (``Request``).

        What was learned is copied now, on the calling thread; the I/O thread writes it after
        what it was given before. ``finish`` says success only once the file is complete.
        """
        return self._submit(self._save_request(wake))

    def _save_request(self, wake: Optional[Callable[[], None]] = None) -> Request:
        if not self.path:
            return Request.answered(False, 'readout_path is empty')
        path, arrays = self.path, self._snapshot()
        sv = self.ctrl.supervisor
        marks = (sv.episodes, sv.snapshots)

        def finish(result, error):
            if isinstance(error, (OSError, ValueError)):
                return False, f'saving readout to {path} failed: {error}'
            if error is not None:
                raise error
            self._adopted(path, marks)
            self.last_error = None          # an earlier autosave's failure is mended
            return True, f'saved readout to {path}'
        return Request(lambda: self._write(path, arrays), finish, wake)

    def save_at_shutdown(self) -> tuple[Optional[bool], str]:
        """
        Save unless the readout is doubtful now (``doubtful``); (ok, message).

        ok None: not saved on purpose (a warning, not a failure): a doubtful readout, a path
        that is no file, or a ``load_request`` still pending, whose file the readout it
        was to replace would have overwritten.
        """
        problem = self.not_a_file
        if problem:
            return None, f'readout not saved at shutdown: {problem}'
        if self._loads_pending:
            return None, (f'readout not saved at shutdown: a ~/load_readout of {self.path} '
                          'was still pending; the file is left as it is')
        why = self.doubtful() or self._written_by_another(self.path)
        if why:
            kept = (f'{self.path} keeps the last save' if os.path.exists(self.path)
                    else 'nothing written')
            return None, f'readout not saved at shutdown: {why}; {kept}'
        return self.save()

    def _written_by_another(self, path: str) -> Optional[str]:
        """
        Guard ``path`` if a file is there that this store did not write or load last; say so.

        Called where no write of this store is under way (the I/O thread, or after it ended).
        """
        now = file_identity(path)
        if now is None or now == self._on_disk.get(path):
            return None
        return self._guard(path, 'was written by another process since this node last wrote '
                                 'or loaded it (two nodes with one readout_path?)')

    def load(self) -> tuple[bool, str]:
        """Load ``path`` on the calling thread; (ok, message); a refused file is guarded."""
        request = self._load_request(refused=NOT_LOADED, guard=True)
        with self._file_lock:           # not while an autosave writes an older readout
            return request.run().finish()

    def load_request(self, wake: Optional[Callable[[], None]] = None) -> Request:
        """
        Load with the reading and checking on the I/O thread (``Request``, ``read_controller``).

        ``finish``, on the calling (control) thread between ticks, puts the readout in, so a
        tick never sees half of it; a refused file changes nothing and is guarded (class
        docstring).
        """
        return self._submit(self._load_request(wake, NOT_LOADED, pending=True, guard=True))

    def _load_request(self, wake: Optional[Callable[[], None]] = None,
                      refused: str = '{}', pending: bool = False,
                      guard: bool = False) -> Request:
        """
        Read and check ``path`` (``io``), then install it (``finish``); ``refused``: the why.

        ``pending``: counted in ``_loads_pending`` until ``finish`` (``save_at_shutdown``).
        ``guard``: a refused file is not written automatically (class docstring).
        """
        if not self.path:
            return Request.answered(False, 'readout_path is empty')
        path, ctrl = self.path, self.ctrl
        self._loads_pending += pending
        self._loads_asked += 1

        def finish(loaded, error):
            self._loads_pending -= pending
            if isinstance(error, LOAD_ERRORS):
                message = refused.format(error)
                if guard and path == self.path and os.path.isfile(path):
                    message += '; ' + self._guard(path, 'was refused by a load')
                return False, message
            note = ctrl.load(loaded)        # its pending learning first, then the swap
            self._adopted(path)
            self.last_error = None          # (an autosave's refusal of this file: resolved)
            return True, f'loaded {path}' + (f' ({note})' if note else '')
        return Request(lambda: read_controller(ctrl, path), finish, wake)

    def _submit(self, request: Request) -> Request:
        """Hand a request's file work to the I/O thread (done at once once it is stopped)."""
        if request.wait(0):
            return request
        if not self._thread.is_alive():
            return request.run()
        self._queue.put(request.run)
        return request

    def tick(self, now_ns: int) -> bool:
        """Autosave if due; return whether a snapshot was handed to the writer."""
        if not self.path or self.period_ns <= 0:
            return False
        if self._next_ns is None:
            self._next_ns = now_ns + self.period_ns
        if now_ns < self._next_ns:
            return False
        self._next_ns = now_ns + self.period_ns
        self.withheld_because = self.doubtful()
        if self.withheld_because:
            self.withheld += 1
            self._checked(written=False)
            return False
        if self._autosave_waiting:
            self.skipped += 1
            return False
        self._autosave_waiting = True
        self._queue.put(functools.partial(self._autosave, self.path, self._snapshot(),
                                          self._loads_asked))
        self._checked(written=True)
        return True

    def flush(self, timeout_s: float = 10.0) -> None:
        """Wait until the I/O thread has done what it was given."""
        done = threading.Event()
        self._queue.put(done.set)
        done.wait(timeout_s)

    def close(self, timeout_s: float = 10.0) -> None:
        """Finish the work given (the write in progress, requests) and stop the I/O thread."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout_s)

    def _work_loop(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            job()

    def _snapshot(self) -> dict[str, np.ndarray]:
        spare, self._spare = self._spare, None
        return controller_arrays(self.ctrl, spare)

    def _write(self, path: str, arrays: dict[str, np.ndarray]) -> None:
        """Write a snapshot, then keep it for the next one to copy into."""
        try:
            save_npz(path, arrays)
            self._on_disk[path] = file_identity(path)
        finally:
            self._spare = arrays

    def _autosave(self, path: str, arrays: dict[str, np.ndarray], loads_asked: int) -> None:
        self._autosave_waiting = False
        with self._file_lock:
            if loads_asked != self._loads_asked:    # a load was asked for since the copy
                self._spare = arrays
                return
            why = self._written_by_another(path)
            if why:
                self._spare = arrays
                self.last_error = f'autosave to {path} skipped: {why}'
                return
            try:
                self._write(path, arrays)
                self._own.add(path)
                self.saves += 1
                self.last_error = None
            except (OSError, ValueError) as e:
                self.last_error = f'autosave to {path} failed: {e}'

"""
What a controller has learned, on disk (.npz, no pickle).

A readout's weights only mean something with the joints, controller mode,
reservoir and input normalisation they were learned with, and a supervisor
gain cut belongs to what was learned, so all of it is saved together and a
file for other joints, another mode, another reservoir or other fixed scales
is refused with the reason, leaving the controller as it was (a fast readout only
one side has is not: it is what rls.fast_learner toggled between runs leaves, and
forgets within ticks anyway; the slow one, the model, is loaded). Writes are
durable and atomic (temporary file, fsync, rename, fsync of the directory), so
a crash or a power cut at any moment leaves either the previous file or the
new one. ``ReadoutStore`` saves periodically with the writing off the control
thread. ROS-free.
"""
from __future__ import annotations

import json
import os
import queue
import tempfile
import threading
from typing import Optional

import numpy as np

READOUT_NAMES = ('slow', 'fast')
# What reading a missing, foreign or corrupt readout file can raise: anything but a
# BaseException (a corrupt zip raises from deep inside zipfile and numpy, with many types).
LOAD_ERRORS = (Exception,)


def save_npz(path: str, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` atomically: a crash mid-write never leaves a torn file."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=_temp_prefix(path), suffix='.npz')
    try:
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


def _temp_prefix(path: str) -> str:
    return f'.readout-{os.path.basename(path)}-'


def remove_stale_temporaries(path: str) -> int:
    """Remove what writes of ``path`` killed mid-way left behind; return how many."""
    directory = os.path.dirname(os.path.abspath(path))
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
    with open(path, 'rb') as f:
        if f.read(2) != b'PK':                  # every zip archive starts so
            raise ValueError(f'{path} is not a readout file (not an .npz archive)')
    return np.load(path, allow_pickle=False)


def load_npz(path: str) -> dict[str, np.ndarray]:
    """Read every array of an .npz archive; pickled (object) data is refused, never loaded."""
    with _open_npz(path) as data:
        try:
            return {k: data[k] for k in data.files}
        except ValueError as e:
            if 'allow_pickle' not in str(e):
                raise
            raise ValueError(f'{path} is not a readout file: it holds pickled (object) data, '
                             'which is never loaded') from None


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


def controller_arrays(ctrl) -> dict[str, np.ndarray]:
    """Copy what ``ctrl`` has learned, with what it needs to mean the same on load."""
    ctrl.adapt()                     # a tick's pending learning step first
    arrays = {f'{name}/{k}': v for name, r in zip(READOUT_NAMES, ctrl.readouts())
              for k, v in r.state_dict().items()}
    arrays['joints'] = np.array(ctrl.joints)
    arrays['mode'] = np.array(ctrl.mode)
    arrays['reservoir'] = np.array(_reservoir_identity(ctrl))
    arrays.update(ctrl.normalizer.state())
    arrays['supervisor/gain_scale'] = np.float64(ctrl.supervisor.gain_scale)
    arrays['supervisor/fast_cut'] = np.float64(ctrl.supervisor.fast_cut)
    arrays['supervisor/gain_capped'] = np.bool_(ctrl.supervisor.gain_capped)
    return arrays


def save_controller(ctrl, path: str) -> None:
    """Save ``ctrl``'s readouts with what they need to mean the same on load."""
    save_npz(path, controller_arrays(ctrl))


def _reservoir_identity(ctrl) -> str:
    """Return the settings that make the reservoir what it is, as canonical JSON."""
    return json.dumps(ctrl.config.section('reservoir'), sort_keys=True)


def load_controller(ctrl, path: str) -> Optional[str]:
    """
    Load what ``save_controller`` wrote into ``ctrl``, all or nothing.

    Raises ValueError (``ctrl`` unchanged) for a file of other joints, mode,
    shapes or fixed input scales. A fast readout only one side has is no reason to
    refuse: returns how it was taken (``fast_readout_note``), else None.
    """
    data = load_npz(path)
    note = fast_readout_note(ctrl, {k.split('/', 1)[0] for k in data})
    if tuple(str(j) for j in data.get('joints', ())) != ctrl.joints:
        raise ValueError(f"{path} was saved for joints {list(data.get('joints', []))}, "
                         f'not {list(ctrl.joints)}')
    if str(data.get('mode')) != ctrl.mode:
        raise ValueError(f"{path} was saved in {data.get('mode')} mode, not {ctrl.mode}")
    if 'reservoir' in data and str(data['reservoir']) != _reservoir_identity(ctrl):
        raise ValueError(f"{path} was learned on another reservoir ({data['reservoir']}), "
                         f'not this one ({_reservoir_identity(ctrl)})')
    norm = ctrl.normalizer
    scale = np.asarray(data.get('input/scale', norm.scale), dtype=float)
    envelope = np.asarray(data.get('input/envelope', norm.envelope), dtype=float)
    gain = float(data.get('supervisor/gain_scale', 1.0))
    fast_cut = float(data.get('supervisor/fast_cut', 1.0))
    gain_capped = bool(data.get('supervisor/gain_capped', False))
    if not (0 < gain <= 1 and 0 <= fast_cut <= 1):
        raise ValueError(f'{path} holds invalid input scales or supervisor gain')
    norm.check_state(path, scale, envelope)
    states = []
    for name, r in zip(READOUT_NAMES, ctrl.readouts()):
        state = {k.split('/', 1)[1]: v for k, v in data.items() if k.startswith(name + '/')}
        if not state and name == 'fast':
            break                       # saved with rls.fast_learner off: reset below
        if not state:
            raise ValueError(f'{path} has no {name} readout')
        states.append(state)
    backup = [r.state_dict() for r in ctrl.readouts()]
    try:
        for r, s in zip(ctrl.readouts(), states):
            r.load_state_dict(s)
    except (ValueError, KeyError):
        for r, s in zip(ctrl.readouts(), backup):
            r.load_state_dict(s)
        raise
    if len(states) < len(ctrl.readouts()):
        ctrl.fast.reset(ctrl.config.rls.initial_covariance / ctrl.input_power)
    norm.load_state(scale, envelope)
    ctrl.supervisor.reset()
    ctrl.supervisor.gain_scale = gain
    ctrl.supervisor.fast_cut = fast_cut
    ctrl.supervisor.gain_capped = gain_capped
    return note


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


class ReadoutStore:
    """
    Where a controller's learning lives on disk, for a front end (the node).

    ``load_at_start`` loads ``path`` if it exists; a file that cannot be loaded
    (corrupt, truncated, pickled, another robot or reservoir) is renamed to
    ``<path>.refused`` (``.refused.1``, ... when taken: ``set_aside``) so that nothing
    overwrites it, and learning starts fresh; a ``path`` that is not a regular file (a
    directory) is refused and left as it is.
    ``save``/``load`` serve requests and return (ok, message), never raising.
    ``tick(now_ns)`` autosaves every ``period_s``: on the control thread, after
    the command is out, it copies what was learned (``controller_arrays``,
    0.23 ms at N=300, 4 ms at N=1000) and hands the copy to a writer thread that writes it
    durably and atomically (``save_npz``), so a kill at any moment leaves the
    last completed save. A save due while the writer is still busy is skipped
    (counted), never queued. Times are nanoseconds of the front end's clock.

    Automatic writes (the autosave, ``save_at_shutdown``) never replace a good file with
    a doubtful readout: with the learning supervisor on, they replace an existing file
    only after it judged the readout good (promoted a snapshot) since the last write, and
    never with an intervention since the previous due time or during its holds (withheld,
    counted). Before, a robot held by its brakes, learning from a plant that does not
    move, had its readout rolled back, restarted and re-learned wrong, and the autosave
    wrote that over the good file.
    A ``path`` set while running that names an existing file this store has not written or
    loaded is not written automatically until ``save`` (replace it) or ``load`` (use it)
    is asked for: it may hold another robot's learning.
    """

    def __init__(self, ctrl, path: str, period_s: float):
        self.ctrl = ctrl
        self.saves = 0                # completed autosaves
        self.skipped = 0              # due while the writer was busy
        self.withheld = 0             # due while the readout was doubtful (see above)
        self.withheld_because: Optional[str] = None   # ... the last time, why
        self.last_error: Optional[str] = None
        self._queue: queue.Queue = queue.Queue(maxsize=1)
        # the supervisor's interventions at the last due time or write, its promoted
        # snapshots at the last write (``doubtful``)
        self._episodes, self._snapshots = ctrl.supervisor.episodes, ctrl.supervisor.snapshots
        self._guarded: Optional[str] = None         # an existing file set while running
        self._own: set[str] = set()                  # files this store wrote or loaded
        self.configure(path, period_s, running=False)
        self._thread = threading.Thread(target=self._write_loop, name='readout-autosave',
                                        daemon=True)
        self._thread.start()

    def configure(self, path: str, period_s: float, running: bool = True) -> None:
        """
        Use ``path``, autosaving every ``period_s`` (0 or an empty path: never).

        The schedule restarts only when one of the two changes, so a front end may
        call this on every parameter change (a gain) without postponing the next save.
        ``running``: a new ``path`` naming an existing file is guarded (class docstring).
        """
        period_ns = int(period_s * 1e9)
        path = os.path.expanduser(path) if path else path   # '~/.ros/...' as a shell would
        if (running and path and path != getattr(self, 'path', None)
                and path not in self._own and os.path.exists(path)):
            self._guarded = path
        if path != getattr(self, 'path', None):
            self.last_error = None      # it was about the old path
        if (path, period_ns) != (getattr(self, 'path', None), getattr(self, 'period_ns', None)):
            self.path, self.period_ns = path, period_ns
            self.restart_schedule()

    def restart_schedule(self) -> None:
        """Count the next autosave from the next ``tick`` (after the clock jumped back)."""
        self._next_ns: Optional[int] = None

    @property
    def not_a_file(self) -> bool:
        """Whether ``path`` names something that is not a regular file (a directory)."""
        return bool(self.path) and os.path.exists(self.path) and not os.path.isfile(self.path)

    @property
    def guarded(self) -> Optional[str]:
        """Return a ``path`` set while running that named an existing file (until save or load)."""
        return self._guarded if self._guarded == self.path else None

    @property
    def guard_problem(self) -> Optional[str]:
        """Say why a guarded ``path`` is not written automatically (None: not guarded)."""
        if not self.guarded:
            return None
        return (f'{self.path} existed when readout_path was set: not overwritten until '
                '~/save_readout (replace it) or ~/load_readout (use it)')

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

    def _adopted(self) -> None:
        """``path`` was saved or loaded on request: this store's own file, judged from now."""
        self._guarded = None
        self._own.add(self.path)
        self._checked(written=True)

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
            return False, (f'readout_path {self.path} is not a regular file: not loaded, '
                           'left as it is, and nothing will be saved there; learning '
                           'starts fresh')
        ok, message = self._load()
        if not ok:
            message = (f'readout_path {self.path} refused ({message}); kept as '
                       f'{set_aside(self.path)}; learning starts fresh')
        return ok, message

    def save(self) -> tuple[bool, str]:
        """Save now, on the calling thread; (ok, message)."""
        if not self.path:
            return False, 'readout_path is empty'
        try:
            self.ctrl.save(self.path)
        except (OSError, ValueError) as e:
            return False, f'saving readout to {self.path} failed: {e}'
        self._adopted()
        self.last_error = None          # an earlier autosave's failure is mended
        return True, f'saved readout to {self.path}'

    def save_at_shutdown(self) -> tuple[bool, str]:
        """Save unless the readout is doubtful now (``doubtful``); (ok, message)."""
        why = self.doubtful()
        if why:
            kept = (f'{self.path} keeps the last save' if os.path.exists(self.path)
                    else 'nothing written')
            return False, f'readout not saved at shutdown: {why}; {kept}'
        return self.save()

    def load(self) -> tuple[bool, str]:
        """Load ``path``; (ok, message); a refused file changes nothing."""
        if not self.path:
            return False, 'readout_path is empty'
        ok, message = self._load()
        return ok, (message if ok else f'not loaded ({message}); nothing changed')

    def _load(self) -> tuple[bool, str]:
        """Load ``path``: (True, what was loaded) or (False, why not; ``ctrl`` unchanged)."""
        try:
            note = self.ctrl.load(self.path)
        except LOAD_ERRORS as e:
            return False, str(e)
        self._adopted()
        return True, f'loaded {self.path}' + (f' ({note})' if note else '')

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
        if self._queue.full():
            self.skipped += 1
            return False
        self._queue.put_nowait((self.path, controller_arrays(self.ctrl)))
        self._checked(written=True)
        return True

    def flush(self, timeout_s: float = 10.0) -> None:
        """Wait until the writer has written what it was given."""
        done = threading.Event()
        self._queue.put((None, done), timeout=timeout_s)
        done.wait(timeout_s)

    def close(self, timeout_s: float = 10.0) -> None:
        """Finish the write in progress and stop the writer thread."""
        if self._thread.is_alive():
            self._queue.put((None, None), timeout=timeout_s)
            self._thread.join(timeout_s)

    def _write_loop(self) -> None:
        while True:
            path, arrays = self._queue.get()
            if path is None:
                if arrays is None:
                    return
                arrays.set()            # a flush marker
                continue
            try:
                save_npz(path, arrays)
                self._own.add(path)
                self.saves += 1
                self.last_error = None
            except (OSError, ValueError) as e:
                self.last_error = f'autosave to {path} failed: {e}'

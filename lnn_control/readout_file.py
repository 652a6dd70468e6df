"""
What a controller has learned, on disk (.npz, no pickle).

A readout's weights only mean something with the joints, controller mode and
input normalisation they were learned with, and a supervisor gain cut belongs
to what was learned, so all of it is saved together and a file for other
joints, another mode or other fixed scales is refused with the reason,
leaving the controller as it was. Writes are atomic (temporary file, then
rename), so a crash mid-write never leaves a torn file. ROS-free.
"""
from __future__ import annotations

import os
import tempfile
import zipfile

import numpy as np

READOUT_NAMES = ('slow', 'fast')
# What reading a missing, foreign or corrupt readout file can raise.
LOAD_ERRORS = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile)


def save_npz(path: str, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` atomically: a crash mid-write never leaves a torn file."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix='.readout-', suffix='.npz')
    try:
        with os.fdopen(fd, 'wb') as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_npz(path: str) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def save_controller(ctrl, path: str) -> None:
    """Save ``ctrl``'s readouts with what they need to mean the same on load."""
    arrays = {f'{name}/{k}': v for name, r in zip(READOUT_NAMES, ctrl.readouts())
              for k, v in r.state_dict().items()}
    arrays['joints'] = np.array(ctrl.joints)
    arrays['mode'] = np.array(ctrl.mode)
    arrays.update(ctrl.normalizer.state())
    arrays['supervisor/gain_scale'] = np.float64(ctrl.supervisor.gain_scale)
    save_npz(path, arrays)


def load_controller(ctrl, path: str) -> None:
    """
    Load what ``save_controller`` wrote into ``ctrl``, all or nothing.

    Raises ValueError (``ctrl`` unchanged) for a file of other joints, mode,
    shapes or fixed input scales.
    """
    data = load_npz(path)
    if tuple(str(j) for j in data.get('joints', ())) != ctrl.joints:
        raise ValueError(f"{path} was saved for joints {list(data.get('joints', []))}, "
                         f'not {list(ctrl.joints)}')
    if str(data.get('mode')) != ctrl.mode:
        raise ValueError(f"{path} was saved in {data.get('mode')} mode, not {ctrl.mode}")
    norm = ctrl.normalizer
    scale = np.asarray(data.get('input/scale', norm.scale), dtype=float)
    envelope = np.asarray(data.get('input/envelope', norm.envelope), dtype=float)
    gain = float(data.get('supervisor/gain_scale', 1.0))
    if not 0 < gain <= 1:
        raise ValueError(f'{path} holds invalid input scales or supervisor gain')
    norm.check_state(path, scale, envelope)
    states = []
    for name, r in zip(READOUT_NAMES, ctrl.readouts()):
        state = {k.split('/', 1)[1]: v for k, v in data.items() if k.startswith(name + '/')}
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
    norm.load_state(scale, envelope)
    ctrl.supervisor.reset()
    ctrl.supervisor.gain_scale = gain


def try_save(ctrl, path: str) -> tuple[bool, str]:
    """``ctrl.save(path)`` for a front end: (ok, message), never raises."""
    if not path:
        return False, 'readout_path is empty'
    try:
        ctrl.save(path)
    except (OSError, ValueError) as e:
        return False, f'saving readout to {path} failed: {e}'
    return True, f'saved readout to {path}'


def try_load(ctrl, path: str) -> tuple[bool, str]:
    """``ctrl.load(path)`` for a front end: (ok, message); a refused file changes nothing."""
    if not path:
        return False, 'readout_path is empty'
    try:
        ctrl.load(path)
    except LOAD_ERRORS as e:
        return False, f'not loaded ({e}); nothing changed'
    return True, f'loaded {path}'

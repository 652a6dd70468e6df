"""
Find a package's ``share/<package>`` directory in whatever prefix it is installed into.

Looked up in order (the first that holds ``package.xml`` wins):

1. the ament index: the prefixes of ``AMENT_PREFIX_PATH`` (a ROS install, a sourced colcon
   workspace), as ``ros2 launch`` and ``FindPackageShare`` look;
2. the prefix the package's Python modules are installed into, derived from where they are:
   the install scheme (``sysconfig``) whose library directory they sit in gives the data
   directory, so ``<venv>/lib/python3.X/site-packages/lnn_control`` ->
   ``<venv>/share/lnn_control``, ``~/.local`` for ``pip install --user``, ``<prefix>`` for
   ``pip install --prefix`` and a colcon install, ``/usr/local`` for Debian's
   ``dist-packages``; no environment variable needed;
3. only when the package is imported from a source checkout (its parent directory holds
   ``package.xml`` and ``setup.py``, which no installed package's does): the checkout.

Nothing else: no current directory, no guessed paths. ROS-free (``ament_index_python`` is
used when it is importable).
"""
from __future__ import annotations

import importlib.util
import os
import sysconfig

__all__ = ['share_directory']

_BASE = os.sep + '@BASE@'          # stands for the prefix in the install schemes' paths
_BASE_VARS = ('base', 'platbase', 'installed_base', 'installed_platbase', 'userbase')


def share_directory(package: str = 'lnn_control') -> str:
    """
    Return ``share/<package>`` of the installed ``package`` (a directory with package.xml).

    Raises FileNotFoundError naming every place searched when none has it.
    """
    searched = []
    for candidate, how in _candidates(package):
        if candidate and os.path.isfile(os.path.join(candidate, 'package.xml')):
            return candidate
        searched.append(f'{candidate} ({how})' if candidate else how)
    raise FileNotFoundError(
        f'share directory of {package!r} not found (a directory with its package.xml); '
        f'searched: {"; ".join(searched)}. Install the package (pip install, colcon build) '
        'or source the workspace that has it.')


def _candidates(package: str):
    """Yield (share directory or None, how it was found) in the order of the module doc."""
    try:
        from ament_index_python.packages import get_package_share_directory
    except ImportError:
        yield None, 'ament index: ament_index_python not importable'
    else:
        try:
            yield get_package_share_directory(package), 'ament index'
        except (LookupError, OSError, ValueError):
            prefixes = os.environ.get('AMENT_PREFIX_PATH') or 'unset'
            yield None, f'ament index: not in AMENT_PREFIX_PATH ({prefixes})'
    site_dir = _site_dir(package)
    if site_dir is None:
        yield None, f'installed: no Python package {package!r} importable'
        return
    found = False
    for data_dir, scheme in _data_dirs(site_dir):
        found = True
        yield os.path.join(data_dir, 'share', package), f'installed, {scheme} scheme'
    if not found:
        yield None, f'installed: {site_dir} is the library directory of no install scheme'
    if os.path.isfile(os.path.join(site_dir, 'setup.py')):
        yield site_dir, 'source checkout'


def _site_dir(package: str) -> str | None:
    """Return the directory the package's Python modules are imported from (site-packages)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations:
        return None
    return os.path.dirname(os.path.abspath(locations[0]))


def _data_dirs(site_dir: str):
    """
    Yield (data directory, scheme) of every install scheme with ``site_dir`` as library.

    Each scheme's purelib/platlib is expanded with a placeholder prefix; where ``site_dir``
    ends like it, the prefix is what precedes, and the scheme's data directory (the prefix
    data_files are installed under) follows.
    """
    seen = set()
    placeholders = {name: _BASE for name in _BASE_VARS}
    for scheme in sysconfig.get_scheme_names():
        try:
            paths = sysconfig.get_paths(scheme, vars=placeholders)
        except KeyError:        # pragma: no cover - a scheme this platform cannot expand
            continue
        for key in ('purelib', 'platlib'):
            lib = os.path.normpath(paths[key])
            if not lib.startswith(_BASE + os.sep):
                continue
            suffix = lib[len(_BASE):]
            if not site_dir.endswith(suffix):
                continue
            prefix = site_dir[:-len(suffix)] or os.sep
            data = os.path.normpath(paths['data'].replace(_BASE, prefix, 1))
            if data not in seen:
                seen.add(data)
                yield data, scheme

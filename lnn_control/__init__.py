"""
lnn_control: an adaptive reservoir-computing ("liquid") controller for ROS 2.

An echo-state / liquid-state reservoir (numba-compiled) is trained online to
control a plant; ROS 2 nodes (``lnn_control.ros``) wrap it for real robots and
for the bundled MuJoCo simulator, and ``lnn-control`` is the command-line entry
point.

Importing this package does not import numba or rclpy.  It only makes sure
that numba's on-disk cache (``cache=True``) has somewhere writable to go: when
the package is installed in a read-only location and ``NUMBA_CACHE_DIR`` is not
set, ``NUMBA_CACHE_DIR`` is pointed at a per-user cache directory.  This must
run before numba is first imported, which is why it lives here.
"""
import os

__all__ = ['__version__']


def _read_version():
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover - Python < 3.8
        return '0.1.0'
    try:
        return version('lnn_control')
    except PackageNotFoundError:
        return '0.1.0'


__version__ = _read_version()


def _user_cache_dir(environ):
    home = environ.get('HOME') or os.path.expanduser('~')
    base = environ.get('XDG_CACHE_HOME') or os.path.join(home, '.cache')
    return os.path.join(base, 'lnn_control', 'numba')


def _numba_cache_fallback(package_dir, environ):
    """
    Point ``NUMBA_CACHE_DIR`` at a writable user dir if need be.

    Does nothing when ``NUMBA_CACHE_DIR`` is already set or ``package_dir`` is
    writable (numba then caches next to the sources, its default).  Otherwise
    sets ``environ['NUMBA_CACHE_DIR']`` to ``$XDG_CACHE_HOME/lnn_control/numba``
    (``~/.cache/lnn_control/numba`` by default), creating it; if even that
    cannot be created, a directory under the system temp dir is used.

    Returns the directory it set, or ``None`` when it changed nothing.
    """
    if environ.get('NUMBA_CACHE_DIR'):
        return None
    if os.path.isdir(package_dir) and os.access(package_dir, os.W_OK):
        return None
    candidates = [_user_cache_dir(environ)]
    try:
        import tempfile
        uid = os.getuid() if hasattr(os, 'getuid') else 'user'
        candidates.append(os.path.join(
            tempfile.gettempdir(), 'lnn_control-%s' % uid, 'numba'))
    except Exception:  # pragma: no cover
        pass
    for cache_dir in candidates:
        try:
            os.makedirs(cache_dir, exist_ok=True)
        except OSError:
            continue
        if os.access(cache_dir, os.W_OK):
            environ['NUMBA_CACHE_DIR'] = cache_dir
            return cache_dir
    return None


def _apply_numba_cache_fallback():
    import sys
    cache_dir = _numba_cache_fallback(
        os.path.dirname(os.path.abspath(__file__)), os.environ)
    # numba reads NUMBA_CACHE_DIR when it is first imported; if someone
    # imported it before us, update its live config too (without importing it).
    numba_config = sys.modules.get('numba.core.config')
    if cache_dir and numba_config is not None:
        numba_config.CACHE_DIR = cache_dir


_apply_numba_cache_fallback()

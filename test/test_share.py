"""
Finding a package's share directory (lnn_control/share.py) in fake install trees.

The installed lnn_control itself is checked in test_packaging.py, in a process
without AMENT_PREFIX_PATH.
"""
import importlib
import itertools
import os
from pathlib import Path
import sysconfig

from lnn_control import share
import pytest

pytestmark = pytest.mark.unit

SITE = Path('lib') / f'python{sysconfig.get_python_version()}' / 'site-packages'
_names = itertools.count()


def _package(site_dir: Path) -> str:
    """Create a fresh importable package under ``site_dir``; return its name."""
    name = f'lnn_share_probe_{os.getpid()}_{next(_names)}'
    (site_dir / name).mkdir(parents=True)
    (site_dir / name / '__init__.py').write_text('')
    return name


def _share(prefix: Path, name: str) -> Path:
    share_dir = prefix / 'share' / name
    share_dir.mkdir(parents=True)
    (share_dir / 'package.xml').write_text(f'<package><name>{name}</name></package>')
    return share_dir


@pytest.fixture
def importable(monkeypatch):
    """Return ``add(dir)``: put ``dir`` on sys.path for this test (no AMENT_PREFIX_PATH)."""
    monkeypatch.delenv('AMENT_PREFIX_PATH', raising=False)

    def add(directory: Path) -> None:
        monkeypatch.syspath_prepend(str(directory))
        importlib.invalidate_caches()
    return add


def test_found_in_the_prefix_the_package_is_installed_into(tmp_path, importable):
    prefix = tmp_path / 'venv'
    name = _package(prefix / SITE)
    expected = _share(prefix, name)
    importable(prefix / SITE)
    assert share.share_directory(name) == str(expected)


def test_install_schemes_map_the_library_directory_to_the_data_directory():
    home = os.sep + os.path.join('home', 'u', '.local')
    venv = os.sep + os.path.join('opt', 'venv')
    assert home in [d for d, _ in share._data_dirs(os.path.join(home, str(SITE)))]
    assert venv in [d for d, _ in share._data_dirs(os.path.join(venv, str(SITE)))]
    assert list(share._data_dirs(os.path.join(venv, 'src'))) == []
    base = os.sep + os.path.join('opt', 'p')
    for scheme in sysconfig.get_scheme_names():    # Debian's posix_local and deb_system too
        paths = sysconfig.get_paths(scheme, vars=dict.fromkeys(share._BASE_VARS, base))
        if os.path.isabs(paths['purelib']) and paths['purelib'].startswith(base + os.sep):
            found = [d for d, _ in share._data_dirs(os.path.normpath(paths['purelib']))]
            assert os.path.normpath(paths['data']) in found, scheme


def test_ament_index_comes_first(tmp_path, importable, monkeypatch):
    pytest.importorskip('ament_index_python')
    installed = tmp_path / 'venv'
    name = _package(installed / SITE)
    _share(installed, name)
    importable(installed / SITE)
    workspace = tmp_path / 'ws'
    expected = _share(workspace, name)
    marker = workspace / 'share' / 'ament_index' / 'resource_index' / 'packages'
    marker.mkdir(parents=True)
    (marker / name).write_text('')
    monkeypatch.setenv('AMENT_PREFIX_PATH', str(workspace))
    assert share.share_directory(name) == str(expected)


def test_not_found_names_what_was_searched_and_never_takes_the_cwd(
        tmp_path, importable, monkeypatch):
    prefix = tmp_path / 'venv'
    name = _package(prefix / SITE)          # installed without its share files
    importable(prefix / SITE)
    _share(tmp_path, name)                  # cwd/share/<name> and a cwd/package.xml
    (tmp_path / 'package.xml').write_text('<package/>')
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as exc:
        share.share_directory(name)
    message = str(exc.value)
    assert str(prefix / 'share' / name) in message
    assert 'ament index' in message
    with pytest.raises(FileNotFoundError, match='no Python package'):
        share.share_directory(f'{name}_missing')


def test_source_checkout_only_when_imported_from_it(tmp_path, importable):
    checkout = tmp_path / 'src'
    name = _package(checkout)
    (checkout / 'package.xml').write_text(f'<package><name>{name}</name></package>')
    importable(checkout)
    with pytest.raises(FileNotFoundError):          # no setup.py: not a checkout
        share.share_directory(name)
    (checkout / 'setup.py').write_text('')
    assert share.share_directory(name) == str(checkout)

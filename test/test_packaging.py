"""
Packaging checks.

package.xml, setup.py/setup.cfg, the installed dist, the executables where
`ros2 run` looks, ament index / share files (found without AMENT_PREFIX_PATH),
requirement pins and the numba cache fallback.

These tests look at the INSTALLED package (`make test` does a regular
`pip install .` into .venv and runs pytest with `python -P`), because that is
what `ros2 run`, `ament_index_python` and users see.
"""
import importlib.metadata as md
import os
from pathlib import Path
import re
import shutil
import subprocess
import sys
import sysconfig
import xml.etree.ElementTree as ET

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[1]
PKG = 'lnn_control'

REQUIRED_EXEC_DEPENDS = {
    'rclpy', 'std_msgs', 'sensor_msgs', 'std_srvs', 'diagnostic_msgs',
    'rosgraph_msgs', 'trajectory_msgs', 'builtin_interfaces', 'ament_index_python',
    'launch', 'launch_ros',
    'python3-numpy', 'python3-numba', 'python3-yaml', 'python3-matplotlib',
    # rosdep keys of the PyPI-only ones (rosdistro rosdep/python.yaml): pip installs them
    'python3-mujoco-pip', 'mcap-ros2-support', 'python3-tqdm',
}

CONSOLE_SCRIPTS = {
    'lnn_controller': 'lnn_control.ros.controller_node:main',
    'lnn_sim': 'lnn_control.ros.sim_node:main',
    'lnn-control': 'lnn_control.cli:main',
}

ROS_PYPI_WHEELS = {
    'ros-kilted-rclpy', 'ros-kilted-rmw-fastrtps-cpp', 'ros-kilted-fastdds',
    'ros-kilted-std-msgs', 'ros-kilted-sensor-msgs', 'ros-kilted-std-srvs',
    'ros-kilted-diagnostic-msgs', 'ros-kilted-rosgraph-msgs', 'ros-kilted-trajectory-msgs',
    'ros-kilted-builtin-interfaces', 'ros-kilted-ament-index-python',
}


def _norm(name):
    return re.sub(r'[-_.]+', '-', name).lower()


def _repo_files(top):
    """Regular files under REPO/top, relative to REPO/top (caches ignored)."""
    root = REPO / top
    if not root.is_dir():
        return []
    return sorted(
        p.relative_to(root) for p in root.rglob('*')
        if p.is_file() and '__pycache__' not in p.parts
        and p.suffix not in ('.pyc', '.pyo', '.nbi', '.nbc'))


def _parse_pins(path):
    """{normalised name: (line, version)} of a requirements file; '-r' skipped."""
    pins = {}
    for raw in path.read_text().splitlines():
        line = raw.split('#', 1)[0].strip()
        if not line or line.startswith('-r '):
            continue
        m = re.fullmatch(r'([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!_-]+)', line)
        assert m, f'{path.name}: not an exact "name==version" pin: {raw!r}'
        key = _norm(m.group(1))
        assert key not in pins, f'{path.name}: {m.group(1)} pinned twice'
        pins[key] = (raw, m.group(2))
    return pins


@pytest.fixture(scope='module')
def dist():
    try:
        return md.distribution(PKG)
    except md.PackageNotFoundError:  # pragma: no cover - reported as failure
        pytest.fail('lnn_control is not installed; run `make test`')


@pytest.fixture(scope='module')
def package_xml():
    return ET.parse(REPO / 'package.xml').getroot()


# --------------------------------------------------------------------------
# package.xml

def test_package_xml_format3_ament_python(package_xml):
    assert package_xml.tag == 'package'
    assert package_xml.get('format') == '3'
    assert package_xml.findtext('name') == PKG
    assert re.fullmatch(r'\d+\.\d+\.\d+', package_xml.findtext('version'))
    assert package_xml.findtext('description').strip()
    assert package_xml.findtext('license') == 'Apache-2.0'
    maint = package_xml.find('maintainer')
    assert maint is not None and maint.get('email') == 'maintainers@lnn-control.dev'
    assert package_xml.findtext('export/build_type') == 'ament_python'
    # ament_python packages are not built with ament_cmake
    assert 'ament_cmake' not in {e.text for e in package_xml.iter('buildtool_depend')}


def _ros_packages_imported():
    """Return the ROS packages the installed code imports (rclpy, *_msgs, *_interfaces)."""
    pattern = re.compile(r'^\s*(?:from|import) (rclpy|[a-z_]+_(?:msgs|srvs|interfaces|python))\b',
                         re.M)
    return {m.group(1) for path in (REPO / PKG).rglob('*.py')
            for m in pattern.finditer(path.read_text(encoding='utf-8'))}


def test_package_xml_dependencies(package_xml):
    exec_deps = {e.text.strip() for e in package_xml.iter('exec_depend')}
    # rcl_interfaces was imported but not declared: rosdep would not install it
    missing = (REQUIRED_EXEC_DEPENDS | _ros_packages_imported()) - exec_deps
    assert not missing, f'package.xml lacks exec_depend: {sorted(missing)}'
    test_deps = {e.text.strip() for e in package_xml.iter('test_depend')}
    assert 'python3-pytest' in test_deps


def test_source_distribution_carries_every_tracked_file(tmp_path):
    """
    The sdist lacked test/conftest.py, test/rigs.py, docs/, benchmarks/ and pytest.ini.

    A ROS source package is built and tested from it, so it carries what the tests,
    docs and benchmarks need. Built from a copy of the tracked files.
    """
    if shutil.which('git') is None or not (REPO / '.git').exists():
        pytest.skip('not a git checkout')
    tracked = subprocess.run(['git', 'ls-files'], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.split()
    src = tmp_path / 'src'
    for name in tracked:
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, src / name)
    subprocess.run([sys.executable, 'setup.py', '-q', 'sdist', '-d', str(tmp_path / 'dist'),
                    '--formats=tar'], cwd=src, check=True, capture_output=True, timeout=300)
    import tarfile
    archive, = (tmp_path / 'dist').glob('*.tar')
    with tarfile.open(archive) as tar:
        packed = {name.split('/', 1)[1] for name in tar.getnames() if '/' in name}
    missing = set(tracked) - packed - {'.gitignore'}
    assert not missing, f'not in the sdist (MANIFEST.in): {sorted(missing)}'


def test_versions_agree(package_xml, dist):
    import lnn_control
    xml_version = package_xml.findtext('version')
    assert dist.version == xml_version
    assert lnn_control.__version__ == xml_version


# --------------------------------------------------------------------------
# setup.py / setup.cfg / installed dist

def test_console_scripts_entry_points(dist):
    eps = {ep.name: ep.value for ep in dist.entry_points
           if ep.group == 'console_scripts'}
    assert eps == CONSOLE_SCRIPTS
    # the same entry points are visible through the global registry
    global_eps = {ep.name: ep.value
                  for ep in md.entry_points(group='console_scripts')
                  if ep.name in CONSOLE_SCRIPTS}
    assert global_eps == CONSOLE_SCRIPTS


def test_console_scripts_installed(dist):
    """Pip's layout: console scripts in <prefix>/bin, generated for this interpreter."""
    for name in CONSOLE_SCRIPTS:
        script = Path(sys.prefix) / 'bin' / name
        assert script.is_file() and os.access(script, os.X_OK), f'{script} missing'


def _installed(dist):
    """Return {absolute path: RECORD entry} of every file of the installed distribution."""
    return {Path(os.path.normpath(dist.locate_file(f))): str(f) for f in dist.files or []}


def test_executables_installed_where_ros2_run_looks(dist):
    """
    <prefix>/lib/lnn_control/<executable>: where `ros2 run` and launch_ros look.

    pip ignores setup.cfg's install_scripts; setup.py's InstallData puts a launcher
    there, executable, and recorded in the distribution (so pip uninstalls it).
    """
    libexec = Path(sys.prefix) / 'lib' / PKG
    recorded = _installed(dist)
    for name in CONSOLE_SCRIPTS:
        path = libexec / name
        assert path.is_file(), f'{path} missing'
        assert os.access(path, os.X_OK), f'{path} is not executable'
        assert path in recorded, f'{path} not in the RECORD of {PKG}'


def test_setup_cfg_script_dirs_for_ros2_run():
    import configparser
    cfg = configparser.RawConfigParser()
    cfg.read(REPO / 'setup.cfg')
    assert cfg.get('develop', 'script_dir') == '$base/lib/lnn_control'
    assert cfg.get('install', 'install_scripts') == '$base/lib/lnn_control'


def test_dist_metadata(dist):
    assert dist.metadata['Name'] == PKG
    assert dist.metadata['License'] == 'Apache-2.0'
    assert dist.metadata['Requires-Python'] == '>=3.10'
    reqs = [r.split(';')[0].strip() for r in dist.requires or []
            if 'extra ==' not in r]
    names = {_norm(re.split(r'[<>=!~ \[]', r, 1)[0]) for r in reqs}
    assert {'numpy', 'numba', 'pyyaml', 'mujoco', 'matplotlib', 'mcap',
            'mcap-ros2-support', 'tqdm'} <= names
    # rclpy comes from apt on ROS installs, from the ros-pypi extra otherwise
    assert not any(n.startswith(('rclpy', 'ros-')) for n in names)
    extras = set(dist.metadata.get_all('Provides-Extra') or [])
    assert {'test', 'ros-pypi', 'bench'} <= extras


def test_python_sources_all_installed(dist):
    """
    Every .py file in the source package ends up in the installed one.

    (Catches sub-packages missing an __init__.py.)
    """
    installed = {str(f).replace(os.sep, '/') for f in dist.files or []}
    missing = [f'{PKG}/{rel.as_posix()}' for rel in _repo_files(PKG)
               if rel.suffix == '.py'
               and f'{PKG}/{rel.as_posix()}' not in installed]
    assert not missing, f'not installed (missing __init__.py?): {missing}'


def test_models_installed_as_package_data():
    import lnn_control
    pkg_dir = Path(lnn_control.__file__).parent
    for rel in _repo_files(f'{PKG}/models'):
        if rel.suffix == '.xml':
            installed = pkg_dir / 'models' / rel
            assert installed.is_file(), f'{installed} missing'
            assert installed.read_bytes() == (REPO / PKG / 'models' / rel).read_bytes()


def test_tests_are_not_installed_as_package(dist):
    top = {str(f).replace(os.sep, '/').split('/')[0] for f in dist.files or []}
    assert 'test' not in top


# --------------------------------------------------------------------------
# ament index and share/ files

def test_resource_marker_in_repo():
    marker = REPO / 'resource' / PKG
    assert marker.is_file()


def test_ament_index_marker_installed():
    marker = (Path(sys.prefix) / 'share' / 'ament_index' / 'resource_index'
              / 'packages' / PKG)
    assert marker.is_file(), f'{marker} missing (editable install?)'


def test_package_xml_installed():
    installed = Path(sys.prefix) / 'share' / PKG / 'package.xml'
    assert installed.is_file()
    assert installed.read_bytes() == (REPO / 'package.xml').read_bytes()


@pytest.mark.parametrize('subdir', ['launch', 'config'])
def test_share_files_installed(subdir):
    share = Path(sys.prefix) / 'share' / PKG / subdir
    missing, differ = [], []
    for rel in _repo_files(subdir):
        if len(rel.parts) != 1:
            continue  # data_files globs are flat; nested dirs are not shipped
        installed = share / rel
        if not installed.is_file():
            missing.append(str(rel))
        elif installed.read_bytes() != (REPO / subdir / rel).read_bytes():
            differ.append(str(rel))
    assert not missing, f'not installed under {share}: {missing}'
    assert not differ, f'stale copies under {share} (re-install): {differ}'


def test_ament_index_finds_package(monkeypatch):
    """With the venv on AMENT_PREFIX_PATH (a sourced workspace would add it), ROS finds it."""
    from ament_index_python.packages import get_package_share_directory
    monkeypatch.setenv('AMENT_PREFIX_PATH', sys.prefix)
    share = Path(get_package_share_directory(PKG))
    assert share.resolve() == (Path(sys.prefix) / 'share' / PKG).resolve()
    assert (share / 'package.xml').is_file()


def _env_without_ament():
    """Return this environment without AMENT_PREFIX_PATH: a plain activated virtualenv."""
    env = dict(os.environ)
    env.pop('AMENT_PREFIX_PATH', None)
    return env


def test_share_files_found_without_ament_prefix_path(dist, tmp_path):
    """
    The installed package finds its own share files in the prefix it is installed into.

    A fresh interpreter without AMENT_PREFIX_PATH, outside the source tree (-P, another
    cwd), must resolve config/pendulum.yaml to the copy pip installed: the file the
    distribution's RECORD lists.
    """
    code = ('import lnn_control, lnn_control.share as s, lnn_control.closed_loop as CL; '
            'print(lnn_control.__file__); print(s.share_directory()); '
            'print(CL.config_path("pendulum"))')
    out = subprocess.run([sys.executable, '-P', '-c', code], cwd=tmp_path,
                         env=_env_without_ament(), capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    module, share, config = (Path(line) for line in out.stdout.split())
    recorded = _installed(dist)
    assert module in recorded                     # the installed copy, not the source tree
    assert share == Path(sys.prefix) / 'share' / PKG
    assert config == share / 'config' / 'pendulum.yaml'
    assert config in recorded
    assert config.read_bytes() == (REPO / 'config' / 'pendulum.yaml').read_bytes()


def test_cli_demo_starts_without_ament_prefix_path(tmp_path):
    """`source .venv/bin/activate && lnn-control demo`: nothing more is needed."""
    env = _env_without_ament()
    env['PATH'] = str(Path(sys.prefix) / 'bin') + os.pathsep + env.get('PATH', '')
    for exe in ('lnn-control', str(Path(sys.prefix) / 'lib' / PKG / 'lnn-control')):
        out = subprocess.run([exe, 'demo', '--help'], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert out.stdout.startswith('usage: lnn-control demo'), out.stdout


@pytest.mark.slow
def test_colcon_like_install_keeps_its_own_layout(tmp_path):
    """
    A colcon-like `setup.py install` (setup.cfg's install_scripts) works as before.

    The console scripts themselves go to <prefix>/lib/lnn_control (InstallData writes
    no launcher over them), nothing to bin/, and the share files are found in that
    prefix without AMENT_PREFIX_PATH (an unsourced install).
    """
    src, prefix = tmp_path / 'src', tmp_path / 'install'
    skip = shutil.ignore_patterns('__pycache__', '*.py[co]', '*.nbi', '*.nbc')
    src.mkdir()
    for item in ('setup.py', 'setup.cfg', 'package.xml', 'resource', 'launch', 'config', PKG):
        if (REPO / item).is_dir():
            shutil.copytree(REPO / item, src / item, ignore=skip)
        else:
            shutil.copy2(REPO / item, src / item)
    site = Path(sysconfig.get_path('purelib', vars={'base': str(prefix)}))
    site.mkdir(parents=True)
    env = dict(_env_without_ament(), PYTHONPATH=str(site))
    build = tmp_path / 'build'
    build.mkdir()
    out = subprocess.run(
        [sys.executable, 'setup.py', 'egg_info', '--egg-base', str(build),
         'build', '--build-base', str(build / 'build'),
         'install', '--prefix', str(prefix), '--record', str(build / 'install.log'),
         '--install-scripts', '$base/lib/lnn_control', '--single-version-externally-managed',
         'install_data'],
        cwd=src, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    for name in CONSOLE_SCRIPTS:
        script = prefix / 'lib' / PKG / name
        assert script.is_file() and os.access(script, os.X_OK), script
        assert script.read_text().startswith(f'#!{sys.executable}'), script.read_text()
    assert not (prefix / 'bin').exists()
    code = 'import lnn_control.share as s; print(s.share_directory())'
    out = subprocess.run([sys.executable, '-P', '-c', code], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()) == prefix / 'share' / PKG


# --------------------------------------------------------------------------
# requirements

def test_requirements_pinned_and_match_installed(dist):
    pins = _parse_pins(REPO / 'requirements.txt')
    needed = {'pytest'} | ROS_PYPI_WHEELS
    for r in dist.requires or []:
        spec, _, marker = r.partition(';')
        if 'bench' in marker:
            continue
        needed.add(_norm(re.split(r'[<>=!~ \[]', spec.strip(), 1)[0]))
    missing = sorted(needed - set(pins))
    assert not missing, f'requirements.txt lacks pins for {missing}'
    wrong = {}
    for name, (_, version) in pins.items():
        try:
            have = md.version(name)
        except md.PackageNotFoundError:
            have = None
        if have != version:
            wrong[name] = (version, have)
    assert not wrong, f'pinned vs installed differ: {wrong}'


def test_ros_pypi_extra_matches_requirements(dist):
    pins = _parse_pins(REPO / 'requirements.txt')
    extra = {}
    for r in dist.requires or []:
        spec, _, marker = r.partition(';')
        if 'ros-pypi' in marker:
            name, version = spec.strip().split('==')
            extra[_norm(name)] = version.strip()
    assert set(extra) == ROS_PYPI_WHEELS
    assert all(pins[n][1] == v for n, v in extra.items())


def test_bench_requirements():
    text = (REPO / 'requirements-bench.txt').read_text().splitlines()
    assert '-r requirements.txt' in [line.strip() for line in text]
    pins = _parse_pins(REPO / 'requirements-bench.txt')
    assert pins['reservoirpy'][1] == '0.4.2'


# --------------------------------------------------------------------------
# numba cache fallback (lnn_control/__init__.py)

def test_import_does_not_pull_numba_or_rclpy(tmp_path):
    env = dict(os.environ)
    env.pop('NUMBA_CACHE_DIR', None)
    code = ('import sys, lnn_control; '
            'print(lnn_control.__version__, "numba" in sys.modules, '
            '"rclpy" in sys.modules)')
    out = subprocess.run([sys.executable, '-c', code], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-2:] == ['False', 'False']


def test_fallback_sets_cache_dir_when_package_dir_missing(tmp_path):
    from lnn_control import _numba_cache_fallback
    environ = {'XDG_CACHE_HOME': str(tmp_path / 'xdg'), 'HOME': str(tmp_path)}
    result = _numba_cache_fallback(str(tmp_path / 'does-not-exist'), environ)
    expected = tmp_path / 'xdg' / 'lnn_control' / 'numba'
    assert result == str(expected)
    assert environ['NUMBA_CACHE_DIR'] == str(expected)
    assert expected.is_dir() and os.access(expected, os.W_OK)


def test_fallback_when_package_dir_read_only(tmp_path, monkeypatch):
    from lnn_control import _numba_cache_fallback
    pkg_dir = tmp_path / 'site-packages' / 'lnn_control'
    pkg_dir.mkdir(parents=True)
    pkg_dir.chmod(0o555)  # root ignores this, hence the os.access patch
    real_access = os.access

    def fake_access(path, mode, *args, **kwargs):
        if Path(path) == pkg_dir:
            return False
        return real_access(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, 'access', fake_access)
    environ = {'HOME': str(tmp_path / 'home')}  # no XDG_CACHE_HOME: ~/.cache
    result = _numba_cache_fallback(str(pkg_dir), environ)
    expected = tmp_path / 'home' / '.cache' / 'lnn_control' / 'numba'
    assert result == str(expected)
    assert environ['NUMBA_CACHE_DIR'] == str(expected)
    assert expected.is_dir() and real_access(expected, os.W_OK)
    pkg_dir.chmod(0o755)


def test_fallback_to_tempdir_when_user_cache_unusable(tmp_path):
    from lnn_control import _numba_cache_fallback
    blocker = tmp_path / 'not-a-dir'
    blocker.write_text('')
    environ = {'XDG_CACHE_HOME': str(blocker)}
    result = _numba_cache_fallback(str(tmp_path / 'missing'), environ)
    assert result is not None
    assert environ['NUMBA_CACHE_DIR'] == result
    assert not result.startswith(str(blocker))
    assert os.path.isdir(result) and os.access(result, os.W_OK)


def test_fallback_respects_existing_setting(tmp_path):
    from lnn_control import _numba_cache_fallback
    environ = {'NUMBA_CACHE_DIR': '/somewhere/else',
               'XDG_CACHE_HOME': str(tmp_path)}
    assert _numba_cache_fallback(str(tmp_path / 'missing'), environ) is None
    assert environ['NUMBA_CACHE_DIR'] == '/somewhere/else'


def test_fallback_noop_when_package_dir_writable(tmp_path):
    from lnn_control import _numba_cache_fallback
    environ = {'XDG_CACHE_HOME': str(tmp_path / 'xdg')}
    assert _numba_cache_fallback(str(tmp_path), environ) is None
    assert 'NUMBA_CACHE_DIR' not in environ
    assert not (tmp_path / 'xdg').exists()

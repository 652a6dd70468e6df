"""
Test-process set-up, tiers and fixtures shared by the test modules.

ROS isolation: ``make test`` exports a per-run ROS_DOMAIN_ID; a bare
``pytest`` run gets one derived from its PID here (101..200, so it cannot
collide with make's 1..100), and discovery stays on this machine, so parallel
runs do not talk to each other. Set before any test imports rclpy, because the
domain is read when a context is initialised.

Tiers (markers registered in pytest.ini): every test is ``unit`` (no ROS) or
``ros`` (rclpy, ROS messages, nodes or node processes), and also ``slow`` when
it takes more than ~1.5 s; collection fails for a test that has no tier.
``pytest -m "not slow"`` is the fast tier, plain ``pytest`` runs everything.

Nothing here imports rclpy at import time, so the unit tier needs no ROS; the
ROS rigs themselves are in ``rigs.py`` beside this file.
"""
from pathlib import Path

from lnn_control.ros import isolate_domain
import pytest

isolate_domain()

TIERS = ('unit', 'ros')


def pytest_collection_modifyitems(config, items):
    """Refuse to run tests that have not picked a tier."""
    untiered = [item.nodeid for item in items
                if not any(item.get_closest_marker(tier) for tier in TIERS)]
    if untiered:
        raise pytest.UsageError(
            'every test needs a tier marker (%s), e.g. a module-level '
            '`pytestmark = pytest.mark.unit`; missing on:\n  %s'
            % (' or '.join(TIERS), '\n  '.join(untiered)))


@pytest.fixture
def context():
    """Return a ROS context of the test's own, so nodes of one test never outlive it."""
    import rclpy
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    yield ctx
    rclpy.try_shutdown(context=ctx)


@pytest.fixture
def closing(context):
    """
    Return ``register(thing, close='close')``, which closes ``thing`` after the test.

    ``register`` returns ``thing``; at teardown ``getattr(thing, close)()`` is
    called for every registered thing, in the order they were registered, and
    before the test's ``context`` is shut down (nodes, executors, rigs).
    """
    registered = []

    def register(thing, close='close'):
        registered.append(getattr(thing, close))
        return thing
    yield register
    for close in registered:
        close()


@pytest.fixture
def spinner(context, closing):
    """Return ``make(*nodes)``: a rigs.Spinner over ``nodes``, closed after the test."""
    from rigs import Spinner

    def make(*nodes):
        return closing(Spinner(context, *nodes))
    return make


@pytest.fixture
def lint_paths(monkeypatch):
    """
    Return what the linters check, relative to the repository root, which becomes the cwd.

    ament_flake8 walks the working directory (for AMENT_IGNORE markers), so the
    lint tests run from the repository root whatever directory pytest was started in.
    """
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    return ['lnn_control', 'test', 'benchmarks', 'launch', 'setup.py']


TWO_LINK_ARM = """<mujoco><option timestep="{timestep}"/><worldbody>
  <body name="upper"><joint name="shoulder" axis="0 1 0"/>
    <geom type="capsule" fromto="0 0 0 0.4 0 0" size="0.03" mass="1.5"/>
    <body name="fore" pos="0.4 0 0"><joint name="elbow" axis="0 1 0"/>
      <geom type="capsule" fromto="0 0 0 0.35 0 0" size="0.03" mass="1"/></body></body>
</worldbody><actuator><motor joint="shoulder" ctrllimited="true" ctrlrange="-60 60"/>
  <motor joint="elbow" ctrllimited="true" ctrlrange="-30 30"/></actuator></mujoco>"""


@pytest.fixture
def two_link_arm(tmp_path):
    """Return ``write(timestep)``: a user's MJCF of a plain vertical 2-link arm, its path."""
    def write(timestep=0.002):
        path = tmp_path / f'arm_{timestep:g}.xml'
        path.write_text(TWO_LINK_ARM.format(timestep=timestep))
        return str(path)
    return write

"""
Rigs shared by the ROS test modules: spinning, namespaces, QoS, diagnostics.

Test modules import it as ``rigs``: pytest puts ``test/`` on ``sys.path`` when
it loads ``test/conftest.py`` (there is no ``test/__init__.py``), also under
``python -P -m pytest test`` as ``make test`` runs it. The fixtures that hand
these rigs out (``context``, ``spinner``, ``closing``) are in ``conftest.py``.

Every wait here is a loop of ``executor.spin_once(timeout_sec=0.01)`` on the
test's own thread until a condition holds; the wall-clock timeouts only guard
against hangs, no test asserts on timing.
"""
import time
import uuid

from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy

# Hang guard of the in-process controller tests: generous, it is never reached
# when things work and a shared machine can be slow.
HANG_GUARD_S = 30.0
PERIOD_NS = 10_000_000          # one control period of the default 100 Hz, in ns
RELIABLE = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
BEST_EFFORT = QoSProfile(depth=100, reliability=ReliabilityPolicy.BEST_EFFORT)


def unique_namespace(prefix='t'):
    """Return a namespace no other test (or run on this ROS domain) uses."""
    return f'/{prefix}_{uuid.uuid4().hex[:10]}'


def clock_remap(namespace):
    """
    Return node arguments remapping ``/clock`` into ``namespace``.

    Parallel tests and runs cannot drive each other's simulated clocks.
    """
    return ['--ros-args', '-r', f'/clock:={namespace}/clock']


def key_values(status):
    """Return the key/value pairs of a DiagnosticStatus as a dict."""
    return {kv.key: kv.value for kv in status.values}


def record_warnings(node) -> list:
    """Replace ``node``'s logger by one that keeps its warnings (and drops the rest)."""
    warnings = []

    class Recorder:

        def warning(self, text, **kwargs):
            warnings.append(text)

        def __getattr__(self, name):
            return lambda *args, **kwargs: None

    node.get_logger = Recorder
    return warnings


class Spinner:
    """Nodes of one context on a SingleThreadedExecutor spun from the test thread."""

    def __init__(self, context, *nodes):
        self.executor = SingleThreadedExecutor(context=context)
        self.nodes = []
        self.closed = False
        self.add(*nodes)

    def add(self, *nodes):
        """Add nodes to the executor; close() destroys them."""
        for node in nodes:
            self.executor.add_node(node)
            self.nodes.append(node)

    def spin_once(self, timeout_sec=0.01):
        """Run at most one callback, waiting up to ``timeout_sec`` for one."""
        self.executor.spin_once(timeout_sec=timeout_sec)

    def spin_until(self, condition, timeout=5.0):
        """Spin until ``condition()`` holds; return False if ``timeout`` s passed first."""
        end = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > end:
                return False
            self.spin_once()
        return True

    def spin_for(self, seconds):
        """Spin for ``seconds`` of wall time, whatever happens."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.spin_once()

    def wait(self, condition, what, timeout=HANG_GUARD_S):
        """Spin until ``condition()`` holds; raise AssertionError after ``timeout`` s."""
        if not self.spin_until(condition, timeout):
            raise AssertionError(f'timed out waiting for {what}')

    def close(self):
        """Shut the executor down and destroy its nodes (once; later calls do nothing)."""
        if self.closed:
            return
        self.closed = True
        self.executor.shutdown()
        for node in self.nodes:
            node.destroy_node()

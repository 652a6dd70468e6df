"""
Record live ROS 2 topics to an MCAP file that Foxglove, PlotJuggler and rosbag2 read.

Each topic gets a channel with ``cdr`` message encoding and a ``ros2msg``
schema: the message definition with every nested type appended after a line of
80 ``=`` and ``MSG: pkg/msg/Type`` (rosbag2's "complete message definition").
Messages are taken raw (already CDR-serialised by the middleware), so recording
costs no deserialisation. Log time is the receive time (wall clock, ns since
the epoch, like rosbag2); publish time is the message's header stamp (or the
``clock`` of rosgraph_msgs/Clock) when it has one, else the receive time.

    recorder = McapRecorder(node, 'run.mcap', demo_topics())
    ...spin...
    recorder.close()          # writes the summary; the file is complete only now

Discovery takes time (measured here: up to ~2 s between processes), and what
is published before the recorder is matched is lost. For complete lock-step
runs start the simulators paused (``lnn_sim`` ``paused: true``: nothing moves),
spin until ``publisher_counts()`` shows every publisher matched and the first
states have arrived, then set ``paused: false``; from then on every command,
state and desired state is recorded (one of each per control period). That is
what ``lnn-control demo`` does (``lnn_control.tools.demo``).

Definitions come from the ``.msg`` files of the installed interface packages
(``share/<pkg>/msg``, found by ``lnn_control.share.share_directory``); when
a package ships none, one is generated from the Python type's introspection
data (same wire layout; comments and constants are lost).
"""
from __future__ import annotations

import os
import re
import struct
import threading
import time
from typing import Any, Callable, Iterable, Optional, Sequence

from rclpy.node import Node
from rclpy.qos import QoSProfile

from ..ros.common import RECORD_BEST_EFFORT_QOS, RECORD_QOS
from ..share import share_directory

__all__ = ['McapRecorder', 'demo_topics',
           'message_definition', 'type_name']

# Deep enough that a burst (a slow disk, a busy executor) loses nothing on RELIABLE
# topics. A RELIABLE subscription does not match best-effort publishers: record
# those with RECORD_BEST_EFFORT_QOS (which also hears reliable publishers, but may drop).
_DELIMITER = '=' * 80
_PRIMITIVES = {
    'bool', 'byte', 'char', 'float32', 'float64', 'int8', 'uint8', 'int16', 'uint16',
    'int32', 'uint32', 'int64', 'uint64', 'string', 'wstring',
}
_IDL_TO_MSG = {'boolean': 'bool', 'octet': 'byte', 'float': 'float32', 'double': 'float64'}
_STAMPED_FIRST_FIELDS = ('std_msgs/Header', 'builtin_interfaces/Time')


def type_name(msg_type: type) -> str:
    """``sensor_msgs/msg/JointState`` for the Python class of that message."""
    parts = msg_type.__module__.split('.')
    return f'{parts[0]}/{parts[1]}/{msg_type.__name__}'


def _msg_file_text(package: str, name: str) -> Optional[str]:
    try:
        path = os.path.join(share_directory(package), 'msg', name + '.msg')
    except FileNotFoundError:
        return None
    if not os.path.isfile(path):
        return None
    with open(path, encoding='utf-8') as f:
        return f.read()


def _dependencies_from_msg(package: str, text: str) -> list[str]:
    """``pkg/Type`` of every non-primitive field of a .msg text, in order."""
    deps = []
    for raw in text.splitlines():
        line = raw.split('#', 1)[0].strip()
        if not line:
            continue
        field_type = line.split()[0]      # constants ('byte OK=0') have primitive types
        base = re.split(r'[\[<]', field_type, 1)[0]
        if base in _PRIMITIVES or base in ('time', 'duration'):
            continue
        if '/' not in base:
            base = f'{package}/{base}'
        pkg, _, name = base.rpartition('/')
        deps.append(f'{pkg.split("/")[0]}/{name}')
    return deps


def _idl_to_msg_type(idl: str) -> tuple[str, Optional[str]]:
    """Map an introspection type string to (.msg field type, nested 'pkg/Type' or None)."""
    m = re.fullmatch(r'sequence<(.+?)(?:,\s*(\d+))?>', idl)
    if m:
        inner, nested = _idl_to_msg_type(m.group(1))
        return inner + (f'[<={m.group(2)}]' if m.group(2) else '[]'), nested
    m = re.fullmatch(r'(.+)\[(\d+)\]', idl)
    if m:
        inner, nested = _idl_to_msg_type(m.group(1))
        return f'{inner}[{m.group(2)}]', nested
    m = re.fullmatch(r'(w?string)<(\d+)>', idl)
    if m:
        return f'{m.group(1)}<={m.group(2)}', None
    if '/' in idl:
        return idl, idl
    return _IDL_TO_MSG.get(idl, idl), None


def _import_type(full_name: str) -> type:
    import importlib
    pkg, name = full_name.split('/')
    return getattr(importlib.import_module(f'{pkg}.msg'), name)


def _introspected_text(msg_type: type) -> tuple[str, list[str]]:
    lines, deps = [], []
    for field, idl in msg_type.get_fields_and_field_types().items():
        msg_field, nested = _idl_to_msg_type(idl)
        lines.append(f'{msg_field} {field}')
        if nested:
            deps.append(nested)
    return '\n'.join(lines) + '\n', deps


def _definition_and_deps(full_name: str, prefer_files: bool) -> tuple[str, list[str]]:
    pkg, name = full_name.split('/')
    text = _msg_file_text(pkg, name) if prefer_files else None
    if text is not None:
        return text, _dependencies_from_msg(pkg, text)
    return _introspected_text(_import_type(full_name))


def message_definition(msg_type: type, prefer_files: bool = True) -> str:
    """Return the ``ros2msg`` complete message definition of ``msg_type`` (rosbag2's format)."""
    parts = type_name(msg_type).split('/')
    root = f'{parts[0]}/{parts[2]}'
    text, deps = _definition_and_deps(root, prefer_files)
    out = [text.rstrip('\n')]
    seen = {root}
    queue = list(deps)
    while queue:
        dep = queue.pop(0)
        if dep in seen:
            continue
        seen.add(dep)
        dep_text, dep_deps = _definition_and_deps(dep, prefer_files)
        pkg, name = dep.split('/')
        out += [_DELIMITER, f'MSG: {pkg}/msg/{name}', dep_text.rstrip('\n')]
        queue += dep_deps
    return '\n'.join(out) + '\n'


def _stamp_reader(msg_type: type) -> Optional[Callable[[bytes], Optional[int]]]:
    """Return a reader of the leading header stamp / Time straight from the CDR bytes, if any."""
    fields = list(msg_type.get_fields_and_field_types().values())
    if not fields or fields[0] not in _STAMPED_FIRST_FIELDS:
        return None

    def read(data: bytes) -> Optional[int]:
        if len(data) < 12:
            return None
        fmt = '<iI' if data[1] & 1 else '>iI'     # encapsulation: CDR_LE = 0x0001
        sec, nanosec = struct.unpack_from(fmt, data, 4)
        ns = sec * 1_000_000_000 + nanosec
        return ns if ns > 0 else None
    return read


CHUNK_BYTES = 64 * 1024      # messages held in memory before they are written


def demo_topics(controller: str = 'lnn_controller') -> list[tuple]:
    """
    (topic, type, QoS) of a simulator + controller run, absolute names.

    Everything RELIABLE (what lnn_sim, lnn_controller and ros2_control publish),
    except the reference: its publisher is the user's, and the controller itself
    subscribes best effort, so record it best effort too.
    """
    from diagnostic_msgs.msg import DiagnosticArray
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray
    return [
        ('/joint_states', JointState, RECORD_QOS),
        ('/commands', Float64MultiArray, RECORD_QOS),
        (f'/{controller}/reference', JointState, RECORD_BEST_EFFORT_QOS),
        ('/diagnostics', DiagnosticArray, RECORD_QOS),
        ('/clock', Clock, RECORD_QOS),
    ]


class McapRecorder:
    """
    Subscribe to ``topics`` on ``node`` and write every message to ``path``.

    ``topics``: (name, message class) or (name, message class, QoS) tuples;
    relative names resolve against the node's namespace and the file holds the
    resolved names. ``time_source`` gives the log (receive) time in ns.
    ``counts`` holds the messages written per topic. Thread-safe; call
    ``close()`` (or use ``with``) to finish the file.
    """

    def __init__(self, node: Node, path: str, topics: Iterable[Sequence[Any]], *,
                 qos: QoSProfile = RECORD_QOS, compression: str = 'zstd',
                 time_source: Callable[[], int] = time.time_ns,
                 metadata: Optional[dict[str, str]] = None):
        from mcap.writer import CompressionType, Writer

        self.node = node
        self.path = str(path)
        self._time = time_source
        self._lock = threading.Lock()
        # In chunks of CHUNK_BYTES, each handed to the OS when written (``callback``): a
        # recording killed mid-way keeps all but its last chunk (1 MiB chunks and the file
        # buffer kept 30 s at 100 Hz in memory: only the header was on disk); ``mcap_io``
        # reads such a file up to where it ends.
        self._file = open(self.path, 'wb')
        self._writer = Writer(self._file, chunk_size=CHUNK_BYTES,
                              compression=CompressionType[compression.upper()])
        self._writer.start(profile='ros2', library='lnn_control recorder')
        if metadata:
            self._writer.add_metadata('lnn_control', {str(k): str(v) for k, v in metadata.items()})
        self._schemas: dict[type, int] = {}
        self._subscriptions = []
        self.counts: dict[str, int] = {}
        self._closed = False
        try:
            for entry in topics:
                topic, msg_type = entry[0], entry[1]
                self._add(topic, msg_type, entry[2] if len(entry) > 2 else qos)
        except Exception:
            self.close()
            raise

    def _add(self, topic: str, msg_type: type, qos: QoSProfile) -> None:
        schema_id = self._schemas.get(msg_type)
        if schema_id is None:
            schema_id = self._writer.register_schema(
                name=type_name(msg_type), encoding='ros2msg',
                data=message_definition(msg_type).encode())
            self._schemas[msg_type] = schema_id
        stamp = _stamp_reader(msg_type)
        holder: dict[str, Any] = {}

        def callback(data: bytes) -> None:
            received = self._time()
            published = (stamp(data) if stamp else None) or received
            with self._lock:
                if self._closed:
                    return
                self._writer.add_message(channel_id=holder['channel'], log_time=received,
                                         data=bytes(data), publish_time=published,
                                         sequence=self.counts[holder['topic']])
                self._file.flush()      # (a no-op unless a chunk was written)
                self.counts[holder['topic']] += 1

        sub = self.node.create_subscription(msg_type, topic, callback, qos, raw=True)
        resolved = sub.topic_name
        holder['topic'] = resolved
        holder['channel'] = self._writer.register_channel(
            topic=resolved, message_encoding='cdr', schema_id=schema_id)
        self.counts[resolved] = 0
        self._subscriptions.append(sub)

    def publisher_counts(self) -> dict[str, int]:
        """
        Return {topic: matched publishers}.

        DDS discovery takes a while (up to seconds): messages sent before a publisher is
        matched are not recorded, so start the recorder first and wait until the publishers
        that matter are matched.
        """
        return {sub.topic_name: sub.get_publisher_count() for sub in self._subscriptions}

    def close(self) -> None:
        """Stop recording and write the MCAP summary (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for sub in self._subscriptions:
            try:
                self.node.destroy_subscription(sub)
            except Exception:  # node already destroyed
                pass
        self._subscriptions.clear()
        with self._lock:
            try:
                self._writer.finish()
            finally:
                self._file.close()

    def __enter__(self) -> 'McapRecorder':
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

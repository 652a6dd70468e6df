"""
Read the MCAP files written by ``lnn_control.tools.recorder`` (or rosbag2) without ROS.

Decoding uses the ``ros2msg`` schemas stored in the file (``mcap_ros2``), so
no ROS installation or message packages are needed::

    from lnn_control import mcap_io
    topics = mcap_io.read('run.mcap')                 # {topic: [(log_time_ns, msg), ...]}
    js = mcap_io.joint_states(topics['/joint_states'], joints=['joint1'])
    js['t'], js['position']                            # (k,), (k, n) numpy arrays
    cmd = mcap_io.float64_arrays(topics['/commands'])  # {'t', 'data'}
    mcap_io.message_counts('run.mcap')                 # {topic: count} from the summary
"""
from __future__ import annotations

from typing import Any, Iterable, Optional, Sequence

import numpy as np

__all__ = ['read', 'message_counts', 'metadata', 'topic_types', 'joint_states', 'float64_arrays',
           'clock_times', 'diagnostics_values', 'stamp_ns']


MAGIC = b'\x89MCAP0\r\n'     # an MCAP file begins and, once closed, ends with it


def _reader(f):
    """
    Return a reader of ``f``: by its summary if it was closed, else from its start.

    A recording killed mid-way has no summary; read as a stream (``_until_cut``) it gives
    what reached the disk (the seeking reader raised on it).
    """
    from mcap.reader import make_reader, NonSeekingReader
    from mcap_ros2.decoder import DecoderFactory
    factories = [DecoderFactory()]
    tail = f.seek(max(0, f.seek(0, 2) - len(MAGIC)))    # where the last magic would be
    closed = tail >= len(MAGIC) and f.read(len(MAGIC)) == MAGIC
    f.seek(0)
    return (make_reader(f, decoder_factories=factories) if closed
            else NonSeekingReader(f, decoder_factories=factories))


def _until_cut(records):
    """Yield ``records`` up to where a file cut short ends (a partial record: dropped)."""
    from mcap.exceptions import McapError
    try:
        yield from records
    except McapError:
        return


def _summary(reader):
    """Return the reader's summary; None for a file read as a stream (not closed)."""
    from mcap.reader import NonSeekingReader
    return None if isinstance(reader, NonSeekingReader) else reader.get_summary()


def read(path: str, topics: Optional[Iterable[str]] = None) -> dict[str, list[tuple[int, Any]]]:
    """
    Every message (or those of ``topics``) as {topic: [(log_time_ns, decoded), ...]}.

    Messages are in log-time order; every requested topic, and every channel of
    the file when ``topics`` is None, is present (maybe empty).
    """
    wanted = None if topics is None else list(topics)
    out: dict[str, list[tuple[int, Any]]] = {t: [] for t in wanted or ()}
    with open(path, 'rb') as f:
        reader = _reader(f)
        summary = _summary(reader)
        if wanted is None and summary is not None:
            out.update({ch.topic: [] for ch in summary.channels.values()})
        # (read as a stream, in file order: sorted, it yielded nothing before a cut end)
        for _schema, channel, message, decoded in _until_cut(reader.iter_decoded_messages(
                topics=wanted, log_time_order=summary is not None)):
            out.setdefault(channel.topic, []).append((message.log_time, decoded))
    if summary is None:         # read as a stream: in file order
        for messages in out.values():
            messages.sort(key=lambda m: m[0])
    return out


def message_counts(path: str) -> dict[str, int]:
    """{topic: number of messages}, from the file summary (falls back to a full scan)."""
    with open(path, 'rb') as f:
        reader = _reader(f)
        summary = _summary(reader)
        if summary is not None and summary.statistics is not None:
            counts = {ch.topic: 0 for ch in summary.channels.values()}
            for cid, n in summary.statistics.channel_message_counts.items():
                topic = summary.channels[cid].topic
                counts[topic] = counts.get(topic, 0) + n
            return counts
        counts = {}
        for _schema, channel, _message in _until_cut(reader.iter_messages(log_time_order=False)):
            counts[channel.topic] = counts.get(channel.topic, 0) + 1
        return counts


def metadata(path: str, name: str = 'lnn_control') -> dict[str, str]:
    """Return the key/value metadata record ``name`` the recorder wrote (empty if none)."""
    with open(path, 'rb') as f:
        for record in _until_cut(_reader(f).iter_metadata()):
            if record.name == name:
                return dict(record.metadata)
    return {}


def topic_types(path: str) -> dict[str, str]:
    """{topic: schema name, e.g. 'sensor_msgs/msg/JointState'}."""
    with open(path, 'rb') as f:
        reader = _reader(f)
        summary = _summary(reader)
        if summary is None:     # not closed (or no summary written): the channels seen
            return {channel.topic: schema.name for schema, channel, _ in
                    _until_cut(reader.iter_messages(log_time_order=False))
                    if schema is not None}
    return {ch.topic: summary.schemas[ch.schema_id].name
            for ch in summary.channels.values() if ch.schema_id in summary.schemas}


def stamp_ns(stamp: Any) -> int:
    """builtin_interfaces/Time (decoded) -> integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def joint_states(messages: Sequence[tuple[int, Any]],
                 joints: Optional[Sequence[str]] = None) -> dict[str, Any]:
    """
    Convert JointState messages to arrays, columns in ``joints`` order.

    The default order is the first message's names. Returns ``names``, ``t`` (header stamp,
    s), ``stamp_ns`` (header stamp, integer ns, for exact matching), ``log_time`` (ns),
    ``position``, ``velocity``, ``effort`` ((k, n); NaN where a message lacks the field or
    the joint). Messages are matched by name, so joint order may differ between them.
    """
    if joints is None:
        joints = list(messages[0][1].name) if messages else []
    joints = list(joints)
    k, n = len(messages), len(joints)
    out = {'names': joints, 't': np.empty(k), 'stamp_ns': np.empty(k, dtype=np.int64),
           'log_time': np.empty(k, dtype=np.int64)}
    fields = ('position', 'velocity', 'effort')
    for field in fields:
        out[field] = np.full((k, n), np.nan)
    for i, (log_time, msg) in enumerate(messages):
        out['log_time'][i] = log_time
        out['stamp_ns'][i] = stamp_ns(msg.header.stamp)
        out['t'][i] = out['stamp_ns'][i] * 1e-9
        index = {name: j for j, name in enumerate(msg.name)}
        cols = [(c, index[name]) for c, name in enumerate(joints) if name in index]
        for field in fields:
            values = getattr(msg, field)
            if len(values) == len(msg.name):
                for c, j in cols:
                    out[field][i, c] = values[j]
    return out


def float64_arrays(messages: Sequence[tuple[int, Any]]) -> dict[str, np.ndarray]:
    """
    Convert Float64MultiArray messages to ``log_time`` (ns), ``t`` (log time, s) and ``data``.

    ``data`` is (k, n); rows of a different length are NaN-padded/truncated to the first.
    """
    k = len(messages)
    n = len(messages[0][1].data) if messages else 0
    data = np.full((k, n), np.nan)
    log_time = np.empty(k, dtype=np.int64)
    for i, (t, msg) in enumerate(messages):
        log_time[i] = t
        row = np.asarray(msg.data, dtype=float)[:n]
        data[i, :row.size] = row
    return {'log_time': log_time, 't': log_time * 1e-9, 'data': data}


def clock_times(messages: Sequence[tuple[int, Any]]) -> np.ndarray:
    """rosgraph_msgs/Clock messages -> simulated times (s)."""
    return np.array([stamp_ns(msg.clock) * 1e-9 for _, msg in messages])


def diagnostics_values(messages: Sequence[tuple[int, Any]],
                       name_contains: str = '') -> list[tuple[int, str, dict[str, str]]]:
    """Convert DiagnosticArray messages to [(log_time_ns, status name, {key: value}), ...]."""
    out = []
    for log_time, msg in messages:
        for status in msg.status:
            if name_contains in status.name:
                out.append((log_time, status.name, {kv.key: kv.value for kv in status.values}))
    return out

"""
Typed, grouped configuration generated from the one schema.

What generate_parameter_library is to ros2_controllers: ``Config`` holds the
validated values of a schema (``lnn_control.schema``), flat by parameter name
(``cfg['rls.forgetting_factor']``) and as typed sections built from the
dotted names (``cfg.rls.forgetting_factor``, ``cfg.reservoir.size``; names
without a dot are attributes of ``cfg`` itself). ``problems`` and ``apply``
are the one validate-and-apply path of the core and both nodes: every change
is checked against the schema (ranges, choices, per-joint sizes, read-only)
before any is applied, so a refused change applies nothing. ROS-free.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, make_dataclass
from typing import Any, Iterable, Iterator

import numpy as np

from . import schema, trajectories

_TYPES = {schema.BOOL: bool, schema.INT: int, schema.DOUBLE: float, schema.STRING: str,
          schema.DOUBLE_ARRAY: np.ndarray, schema.STRING_ARRAY: tuple}


def per_joint(values: Any, n: int) -> np.ndarray | None:
    """Broadcast a per-joint array to n joints; None if it has another size (refused anyway)."""
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    return np.broadcast_to(arr, (n,)) if arr.size in (1, n) else None


def _reference_beyond_limits(value) -> list[str]:
    """
    Return why a generated reference leaves limits.position or limits.velocity.

    Beyond them the robot's own joint_states are dropped as implausible while it follows:
    the sensor goes stale and the node applies its stale-sensor action while the reference
    pulls on (continuous joints have no position limit).
    """
    mode, joints = value('reference.mode'), list(value('joints'))
    n = len(joints)
    if mode == 'topic' or not n:
        return []
    arrays = [per_joint(value(name), n) for name in (
        'reference.offset', 'reference.amplitude', 'limits.position', 'limits.velocity')]
    if any(a is None for a in arrays):
        return []
    offset, amplitude, position, velocity = arrays
    reach = trajectories.reach(mode, amplitude, value('reference.frequency_hz'), offset)
    continuous = set(value('continuous_joints'))
    problems = []
    for what, peak, name, limit in (('reaches', reach[0], 'limits.position', position),
                                    ('moves at up to', reach[1], 'limits.velocity', velocity)):
        problems += [
            f'the generated reference (reference.mode {mode}) {what} {peak[j]:g} on '
            f'{joints[j]}, beyond {name} {limit[j]:g}: joint_states there would be dropped '
            'as implausible and the robot left to the stale-sensor action; raise the limit '
            'or bring reference.offset, amplitude or frequency_hz within it'
            for j in range(n) if peak[j] > limit[j]
            and not (name == 'limits.position' and joints[j] in continuous)]
    return problems


def _typed(p: schema.Param, value: Any) -> Any:
    if p.kind == schema.DOUBLE_ARRAY:
        arr = np.array(value, dtype=np.float64)
        arr.flags.writeable = False
        return arr
    if p.kind == schema.STRING_ARRAY:
        return tuple(value)
    return _TYPES[p.kind](value)


def _section_classes(entries: tuple[schema.Param, ...]) -> dict[str, type]:
    """One frozen dataclass per dotted prefix (``reservoir`` -> ReservoirConfig)."""
    groups: dict[str, list[tuple[str, type]]] = {}
    for p in entries:
        name = p.name.split('.', 1)[0]
        if hasattr(Config, name):
            raise ValueError(f'schema name {p.name!r} collides with Config.{name}')
        if '.' in p.name:
            group, attr = p.name.split('.', 1)
            groups.setdefault(group, []).append((attr, _TYPES[p.kind]))
    return {group: make_dataclass(
                ''.join(w.title() for w in group.split('_')) + 'Config', fields, frozen=True)
            for group, fields in groups.items()}


_CLASSES: dict[tuple, dict[str, type]] = {}   # per schema (names and kinds)


class Config(Mapping):
    """
    Validated values of ``entries`` (the controller schema by default).

    ``overrides`` update the defaults; per-joint arrays are broadcast to one
    value per joint. Raises ValueError naming every invalid entry.
    """

    def __init__(self, overrides: Mapping[str, Any] | None = None,
                 entries: Iterable[schema.Param] = schema.CONTROLLER):
        self.entries = tuple(entries)
        self._table = schema.by_name(self.entries)
        key = tuple((p.name, p.kind) for p in self.entries)
        if key not in _CLASSES:
            _CLASSES[key] = _section_classes(self.entries)
        self._classes = _CLASSES[key]
        self._values = schema.resolve(overrides, self.entries)
        if (problems := self.combined_problems({})):
            raise ValueError('; '.join(problems))
        self._sections: dict[str, Any] = {}
        self._rebuild(self._table)

    # -- read access -------------------------------------------------------------------
    def __getitem__(self, name: str) -> Any:
        value = self._values[name]
        return value.copy() if isinstance(value, (list, np.ndarray)) else value  # read-only

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __getattr__(self, name: str) -> Any:
        sections = self.__dict__.get('_sections', {})
        if name in sections:
            return sections[name]
        raise AttributeError(name)

    def section(self, group: str) -> dict[str, Any]:
        """Return the settings of one group as keyword arguments (``reservoir`` -> size=...)."""
        return asdict(self._sections[group])

    @property
    def n_joints(self) -> int | None:
        joints = self._values.get('joints')
        return len(joints) if joints else None

    # -- the one validate-and-apply path -----------------------------------------------
    def problems(self, changes: Mapping[str, Any], started: bool = True) -> list[str]:
        """
        Why ``changes`` cannot be applied (empty: they can).

        Unknown names and values the schema refuses are problems; once
        ``started``, so is a new value of a read-only setting (re-stating the
        current one is fine).
        """
        out = []
        for name, value in changes.items():
            p = self._table.get(name)
            if p is None:
                out.append(f'unknown parameter {name!r}')
            elif p.read_only and started:
                if not self._same(p, value):
                    out.append(f'{name} is read-only: it needs a restart')
            elif (reason := schema.check(p, value, self.n_joints)):
                out.append(reason)
        if not out:
            out.extend(self.combined_problems(changes))
        return out

    def combined_problems(self, changes: Mapping[str, Any]) -> list[str]:
        """
        Problems of settings that are only wrong together, ``changes`` with the current values.

        The one place of these rules: ``problems`` and the ROS nodes' on-set
        check (``lnn_control.ros.parameters.attach``) both ask here.
        """
        def value(name):
            return changes.get(name, self._values[name])

        if 'lockstep' in self._table:           # the simulator's schema
            return (['paused holds simulated time in lock-step only (lockstep is false: '
                     'the physics runs in real time)']
                    if value('paused') and not value('lockstep') else [])
        if not {'sensor_timeout_s', 'control_rate_hz'} <= self._table.keys():
            return []           # another schema
        timeout, rate = float(value('sensor_timeout_s')), float(value('control_rate_hz'))
        problems = []
        if timeout * rate < 1.0:
            problems.append(f'sensor_timeout_s {timeout:g} is shorter than one control period '
                            f'({1.0 / rate:g} s): every tick would find the sensor stale')
        reference_timeout = float(value('reference_timeout_s'))
        if 0.0 < reference_timeout * rate < 1.0:
            problems.append(f'reference_timeout_s {reference_timeout:g} is shorter than one '
                            f'control period ({1.0 / rate:g} s): a moving ~/reference would be '
                            'held between any two messages (0 never holds it)')
        if (value('reference.mode') == 'point_to_point'
                and not float(value('reference.frequency_hz')) > 0.0):
            problems.append('reference.mode point_to_point needs reference.frequency_hz above '
                            '0 (its moves take 1 / frequency_hz s)')
        if (stray := [j for j in value('continuous_joints') if j not in value('joints')]):
            problems.append(f'continuous_joints names {", ".join(map(repr, stray))}, not among '
                            f'joints {list(value("joints"))}')
        return problems + _reference_beyond_limits(value)

    def apply(self, changes: Mapping[str, Any], started: bool = True) -> dict[str, Any]:
        """
        Validate all of ``changes``, then apply them; return the applied values.

        The returned per-joint arrays are broadcast. Re-stated read-only values are skipped.
        """
        problems = self.problems(changes, started)
        if problems:
            raise ValueError('; '.join(problems))
        applied = {}
        for name, value in changes.items():
            p = self._table[name]
            if p.read_only and started:
                continue
            applied[name] = self._values[name] = schema.coerce(p, value, self.n_joints)
        self._rebuild({name: self._table[name] for name in applied})
        return applied

    def _same(self, p: schema.Param, value: Any) -> bool:
        new, old = np.asarray(value), np.asarray(self._values[p.name])
        if p.per_joint and new.size == 1:
            new = np.broadcast_to(new.ravel(), old.shape)
        return new.shape == old.shape and bool(np.all(new == old))

    def _rebuild(self, changed: Mapping[str, schema.Param]) -> None:
        groups = set()
        for name, p in changed.items():
            if '.' in name:
                groups.add(name.split('.', 1)[0])
            else:
                self.__dict__[name] = _typed(p, self._values[name])
        for group in groups:
            prefix = group + '.'
            self._sections[group] = self._classes[group](**{
                p.name[len(prefix):]: _typed(p, self._values[p.name])
                for p in self.entries if p.name.startswith(prefix)})

"""
Declare a core parameter schema (``lnn_control.schema``) as ROS 2 parameters.

One schema, so ``ros2 param describe`` shows the same description, range and
read-only flag the CLI and the docs use. What a ROS descriptor cannot express
(open intervals, NaN/Inf, choices, one value per joint) is checked by
``lnn_control.schema.check`` in the on-set-parameters callback and stated in
``additional_constraints``.

Integers where doubles are expected (``kp: [20]`` in YAML, ``ros2 param set
... kp "[20]"``) are accepted and widened to doubles: rclpy would otherwise
refuse them as the wrong type (its static typing does not widen), which is a
needless trap for users. Nothing else is converted.
"""
from __future__ import annotations

import array
from typing import Any, Callable, Iterable, Mapping, Optional, Union

from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                SetParametersResult)
from rclpy.exceptions import (InvalidParameterTypeException, InvalidParameterValueException,
                              ParameterException)
from rclpy.node import Node
from rclpy.parameter import Parameter

from .. import schema

ROS_TYPES = {
    schema.BOOL: Parameter.Type.BOOL,
    schema.INT: Parameter.Type.INTEGER,
    schema.DOUBLE: Parameter.Type.DOUBLE,
    schema.STRING: Parameter.Type.STRING,
    schema.DOUBLE_ARRAY: Parameter.Type.DOUBLE_ARRAY,
    schema.STRING_ARRAY: Parameter.Type.STRING_ARRAY,
}

JointCount = Union[None, int, Callable[[], Optional[int]]]


def descriptor(p: schema.Param) -> ParameterDescriptor:
    """Return the ParameterDescriptor of one schema entry."""
    d = ParameterDescriptor(description=p.description, read_only=p.read_only)
    d.type = ROS_TYPES[p.kind].value
    notes = []
    if p.low is not None and p.high is not None:
        if p.kind == schema.INT:
            d.integer_range = [IntegerRange(from_value=int(p.low), to_value=int(p.high),
                                            step=1)]
        elif p.kind in (schema.DOUBLE, schema.DOUBLE_ARRAY):
            d.floating_point_range = [FloatingPointRange(
                from_value=float(p.low), to_value=float(p.high), step=0.0)]
            if p.kind == schema.DOUBLE_ARRAY:
                notes.append(f'every element in [{p.low}, {p.high}]')
    if p.open_low:
        notes.append(f'must be > {p.low} (lower bound excluded)')
    if p.kind in (schema.DOUBLE, schema.DOUBLE_ARRAY):
        notes.append('finite (no NaN/Inf); integers are accepted')
    if p.choices:
        notes.append('one of: ' + ', '.join(p.choices))
    if p.per_joint:
        notes.append('one value per entry of joints, or a single value for all joints')
    if p.unique:
        notes.append('unique names')
    if p.read_only:
        notes.append('read-only: set at start (-p / --params-file); changing it needs a restart')
    d.additional_constraints = '; '.join(notes)
    return d


def to_python(value: Any) -> Any:
    """Parameter value -> plain Python (array.array and tuples become lists)."""
    if isinstance(value, (array.array, tuple)):
        return list(value)
    return value


def _widen(kind: str, value: Any) -> Any:
    """Widen int -> float and [int] -> [float] for double kinds; None if not applicable."""
    if kind == schema.DOUBLE and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if (kind == schema.DOUBLE_ARRAY and isinstance(value, (list, tuple, array.array))
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        return [float(v) for v in value]
    return None


def _declare_one(node: Node, p: schema.Param) -> Any:
    default: Any = p.default
    if isinstance(default, list) and not default:
        # rclpy infers BYTE_ARRAY from [], so declare by type: uninitialised unless set.
        default = ROS_TYPES[p.kind]
    try:
        return node.declare_parameter(p.name, default, descriptor(p)).value
    except InvalidParameterTypeException:
        if p.kind not in (schema.DOUBLE, schema.DOUBLE_ARRAY):
            raise
        original = node.declare_parameter(
            p.name, None, ParameterDescriptor(dynamic_typing=True)).value
        node.undeclare_parameter(p.name)
        widened = _widen(p.kind, original)
        if widened is None:
            raise ValueError(f'{p.name} must be of type {p.kind}; got {original!r}') from None
        return node.declare_parameter(p.name, widened, descriptor(p),
                                      ignore_override=True).value


def _reason(p: schema.Param, error: Exception) -> str:
    """Return a one-line reason from rclpy's exception text ('<message>: <name>')."""
    text = str(error)
    if isinstance(error, ParameterException) and text.endswith(f': {p.name}'):
        text = text[:-len(p.name) - 2]
    if isinstance(error, InvalidParameterValueException):
        return text.split('Reason: ', 1)[-1]       # refused by the descriptor's range
    if isinstance(error, InvalidParameterTypeException):
        return f'{p.name} must be of type {p.kind} ({text})'
    return text if text.startswith(p.name) else f'{p.name}: {text}'


def _joint_count(values: Mapping[str, Any]) -> Optional[int]:
    joints = values.get('joints')
    return len(joints) if joints else None


def declare(node: Node, entries: Iterable[schema.Param]) -> dict[str, Any]:
    """
    Declare every schema parameter on ``node`` and return their values.

    Values come from the overrides (``-p``, ``--params-file``) or the schema
    default. Raises ValueError naming every invalid override, so a bad launch
    fails at once with one message listing all problems.
    """
    entries = tuple(entries)
    values: dict[str, Any] = {}
    errors = []
    for p in entries:
        try:
            value = _declare_one(node, p)
        except (ParameterException, ValueError, TypeError) as e:
            errors.append(_reason(p, e))
            continue
        values[p.name] = schema.defaults([p])[p.name] if value is None else to_python(value)
    n = _joint_count(values)
    errors += [r for p in entries
               if p.name in values and (r := schema.check(p, values[p.name], n))]
    if errors:
        raise ValueError('invalid parameters: ' + '; '.join(errors))
    return values


def read(node: Node, entries: Iterable[schema.Param]) -> dict[str, Any]:
    """Return the current values of the declared schema parameters, as plain Python."""
    out = {}
    for p in entries:
        param = node.get_parameter_or(p.name, Parameter(p.name, value=None))
        out[p.name] = (schema.defaults([p])[p.name] if param.value is None
                       else to_python(param.value))
    return out


def widening_callback(entries: Iterable[schema.Param]) -> Callable[[list], list]:
    """Pre-set-parameters callback widening integers to doubles for double parameters."""
    kinds = {p.name: p.kind for p in entries if p.kind in (schema.DOUBLE, schema.DOUBLE_ARRAY)}

    def widen(parameters: list) -> list:
        out = []
        for param in parameters:
            kind = kinds.get(param.name)
            if kind is not None and param.type_ in (Parameter.Type.INTEGER,
                                                    Parameter.Type.INTEGER_ARRAY):
                widened = _widen(kind, to_python(param.value))
                if widened is not None:
                    param = Parameter(param.name, ROS_TYPES[kind], widened)
            out.append(param)
        return out
    return widen


def validation_callback(entries: Iterable[schema.Param],
                        n_joints: JointCount = None) -> Callable[[list], SetParametersResult]:
    """
    On-set-parameters callback: refuse values the schema refuses, with the reason.

    ``n_joints`` (int or callable) is what per-joint arrays must match. Unknown
    parameters (``use_sim_time``, other components') are left alone, as the rclpy
    docs ask; types, ranges and read-only are enforced by rclpy from the descriptor.
    """
    table = schema.by_name(entries)

    def validate(parameters: list) -> SetParametersResult:
        n = n_joints() if callable(n_joints) else n_joints
        for param in parameters:
            p = table.get(param.name)
            if p is None or param.type_ == Parameter.Type.NOT_SET:
                continue
            reason = schema.check(p, to_python(param.value), n)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
        return SetParametersResult(successful=True)
    return validate


def attach(node: Node, entries: Iterable[schema.Param], n_joints: JointCount,
           apply: Callable[[dict[str, Any]], None]) -> None:
    """
    Register widening, validation and ``apply({name: value})`` after a successful set.

    ``apply`` runs in the post-set callback (side effects belong there, not in
    validation) with only this schema's parameters.
    """
    entries = tuple(entries)
    names = {p.name for p in entries}
    node.add_pre_set_parameters_callback(widening_callback(entries))
    node.add_on_set_parameters_callback(validation_callback(entries, n_joints))

    def post(parameters: list) -> None:
        changes = {p.name: to_python(p.value) for p in parameters if p.name in names}
        if changes:
            apply(changes)
    node.add_post_set_parameters_callback(post)


__all__ = ['ROS_TYPES', 'attach', 'declare', 'descriptor', 'read', 'to_python',
           'validation_callback', 'widening_callback']

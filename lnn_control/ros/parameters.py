"""
Declare a core parameter schema (``lnn_control.schema``) as ROS 2 parameters.

One schema, so ``ros2 param describe`` shows the same description, range and
read-only flag the CLI and the docs use. What a ROS descriptor cannot express
(open intervals, NaN/Inf, choices, one value per joint) is checked by
``lnn_control.schema.check`` in the on-set-parameters callback and stated in
``additional_constraints``.

Integers where doubles are expected (``kp: [20]`` in YAML, ``ros2 param set
... kp "[20]"``) are accepted and widened to doubles, and a single number for a
double array (``kp: 20``) to a one-element array, which per-joint arrays apply
to every joint: rclpy would otherwise refuse them as the wrong type (its static
typing does not widen), which is a needless trap for users. Nothing else is
converted; other wrong types are refused with a reason in words, not rclpy's
type codes, and an empty list (which reaches rclpy untyped) is refused where
the default is not empty, not replaced by the default.
"""
from __future__ import annotations

import array
import difflib
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


_FORMS = {schema.BOOL: 'true or false', schema.INT: 'an integer', schema.DOUBLE: 'a number',
          schema.STRING: 'a string', schema.DOUBLE_ARRAY: 'a list of numbers',
          schema.STRING_ARRAY: 'a list of strings'}
_GOT = {Parameter.Type.BOOL: 'a bool', Parameter.Type.INTEGER: 'an integer',
        Parameter.Type.DOUBLE: 'a number', Parameter.Type.STRING: 'a string',
        Parameter.Type.BYTE_ARRAY: 'a list of bytes', Parameter.Type.BOOL_ARRAY: 'a list of bools',
        Parameter.Type.INTEGER_ARRAY: 'a list of integers',
        Parameter.Type.DOUBLE_ARRAY: 'a list of numbers',
        Parameter.Type.STRING_ARRAY: 'a list of strings'}


def _empty(value: Any) -> bool:
    """Return whether ``value`` is an empty list: untyped, rclpy makes it NOT_SET or bytes."""
    return value is None or (isinstance(value, (list, tuple, array.array)) and not value)


def _type_reason(p: schema.Param, type_: Parameter.Type, value: Any) -> str:
    """Why a value of ``type_`` is not one for ``p``, in words (rclpy says type codes)."""
    if _empty(value):
        hint = ('name at least one joint' if p.name == 'joints' else
                'give one value per joint or a single value for all' if p.per_joint else
                f'give {_FORMS[p.kind]}')
        return f'{p.name}: an empty list is not a value: {hint}'
    form = _FORMS[p.kind] + (' (one per joint, or one for all)' if p.per_joint else '')
    return f'{p.name} must be {form}; got {_GOT.get(type_, type_.name)}'


def _declare_one(node: Node, p: schema.Param) -> Any:
    # rclpy has no public accessor for the overrides (-p, --params-file, constructor).
    override = node._parameter_overrides.get(p.name)
    empty_default = isinstance(p.default, list) and not p.default
    if override is not None and _empty(override.value):
        if not empty_default:    # else rclpy would silently keep the default
            raise ValueError(_type_reason(p, override.type_, override.value))
        override = None
    # rclpy infers BYTE_ARRAY from [], so declare by type: uninitialised unless set.
    default = ROS_TYPES[p.kind] if empty_default else p.default
    try:
        value = node.declare_parameter(p.name, default, descriptor(p),
                                       ignore_override=override is None).value
        if value is None and empty_default:
            # uninitialised, rclpy answers a get naming it with no values at all (ros2
            # param get and dump showed nothing): a typed empty list instead (no public
            # setter skips the read-only check and the callbacks)
            node._parameters[p.name] = Parameter(p.name, ROS_TYPES[p.kind], [])
            value = []
        return value
    except InvalidParameterTypeException:
        widened = schema.widen(p.kind, to_python(override.value))
        if widened is None:
            raise ValueError(_type_reason(p, override.type_, override.value)) from None
        return node.declare_parameter(p.name, widened, descriptor(p),
                                      ignore_override=True).value


def _reason(p: schema.Param, error: Exception) -> str:
    """Return a one-line reason from rclpy's exception text ('<message>: <name>')."""
    text = str(error)
    if isinstance(error, ParameterException) and text.endswith(f': {p.name}'):
        text = text[:-len(p.name) - 2]
    if isinstance(error, InvalidParameterValueException):
        return text.split('Reason: ', 1)[-1]       # refused by the descriptor's range
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


ROBOT_SPECIFIC = ('kp', 'kd', 'command_limit')


def startup_warnings(node: Node, entries: Iterable[schema.Param]) -> list[str]:
    """
    Name what a parameter file probably got wrong, though every value is valid.

    An override no schema parameter has (``Kp``, a misspelling, a section of another
    node) is ignored by ROS without a word; and gains or limits left out with ``joints``
    set run the user's robot on the bundled pendulum's (one value for every joint).
    """
    names = [p.name for p in entries]
    lower = {n.lower(): n for n in names}
    warnings = []
    for name in sorted(node._parameter_overrides):
        if name in names or name.startswith(schema.ROS_OWN):
            continue
        close = difflib.get_close_matches(name.lower(), lower, n=1)
        warnings.append(f"parameter '{name}' is not one of this node's: ignored"
                        + (f" (did you mean '{lower[close[0]]}'?)" if close else ''))
    if 'joints' in node._parameter_overrides:
        missing = [n for n in ROBOT_SPECIFIC if n not in node._parameter_overrides]
        if missing:
            defaults = schema.defaults([p for p in entries if p.name in missing])
            warnings.append(
                'joints set but not ' + ', '.join(missing) + ': using the defaults ('
                + ', '.join(f'{n} {defaults[n]}' for n in missing)
                + ', those of the bundled pendulum, for every joint); set them for your robot')
    return warnings


def read(node: Node, entries: Iterable[schema.Param]) -> dict[str, Any]:
    """Return the current values of the declared schema parameters, as plain Python."""
    out = {}
    for p in entries:
        param = node.get_parameter_or(p.name, Parameter(p.name, value=None))
        out[p.name] = (schema.defaults([p])[p.name] if param.value is None
                       else to_python(param.value))
    return out


class _WrongType(Parameter):
    """A value of the wrong type, passed on typed right for ``validation_callback`` to refuse."""

    def __init__(self, p: schema.Param, reason: str):
        super().__init__(p.name, ROS_TYPES[p.kind], p.default)
        self.reason = reason


def widening_callback(entries: Iterable[schema.Param]) -> Callable[[list], list]:
    """
    Pre-set-parameters callback widening numbers for double parameters (``schema.widen``).

    Other wrong types become ``_WrongType``: rclpy refuses a wrong type before
    the on-set callbacks, with a reason in type codes ("expected '8' got '4'"),
    and a pre-set callback cannot refuse. Register ``validation_callback``
    too (``attach`` does); it refuses them with the reason in words.
    """
    table = schema.by_name(entries)

    def widen(parameters: list) -> list:
        out = []
        for param in parameters:
            p = table.get(param.name)
            if p is not None and param.type_ not in (ROS_TYPES[p.kind], Parameter.Type.NOT_SET):
                value = to_python(param.value)
                widened = schema.widen(p.kind, value)
                param = (_WrongType(p, _type_reason(p, param.type_, value)) if widened is None
                         else Parameter(p.name, ROS_TYPES[p.kind], widened))
            out.append(param)
        return out
    return widen


Combined = Callable[[dict[str, Any]], list[str]]


def validation_callback(entries: Iterable[schema.Param], n_joints: JointCount = None, *,
                        combined: Optional[Combined] = None
                        ) -> Callable[[list], SetParametersResult]:
    """
    On-set-parameters callback: refuse values the schema refuses, with the reason.

    ``n_joints`` (int or callable) is what per-joint arrays must match. Unknown
    parameters (``use_sim_time``, other components') are left alone, as the rclpy
    docs ask; ranges and read-only are enforced by rclpy from the descriptor.
    ``combined({name: value})`` (e.g. ``Config.combined_problems``) then judges
    the batch's values of this schema together with the current ones, so a
    combination the apply step would refuse is refused here, as a whole, and
    not accepted and then left unapplied.
    """
    table = schema.by_name(entries)

    def validate(parameters: list) -> SetParametersResult:
        n = n_joints() if callable(n_joints) else n_joints
        changes = {}
        for param in parameters:
            p = table.get(param.name)
            if p is None or param.type_ == Parameter.Type.NOT_SET:
                continue
            value = to_python(param.value)
            reason = (param.reason if isinstance(param, _WrongType)
                      else schema.check(p, value, n))
            if reason:
                return SetParametersResult(successful=False, reason=reason)
            changes[p.name] = value
        problems = combined(changes) if combined and changes else []
        return SetParametersResult(successful=not problems, reason='; '.join(problems))
    return validate


def attach(node: Node, entries: Iterable[schema.Param], n_joints: JointCount,
           apply: Callable[[dict[str, Any]], None], *,
           combined: Optional[Combined] = None) -> None:
    """
    Register widening, validation and ``apply({name: value})`` after a successful set.

    ``apply`` runs in the post-set callback (side effects belong there, not in
    validation) with only this schema's parameters; ``combined``: see
    ``validation_callback``.
    """
    entries = tuple(entries)
    names = {p.name for p in entries}
    node.add_pre_set_parameters_callback(widening_callback(entries))
    node.add_on_set_parameters_callback(validation_callback(entries, n_joints,
                                                            combined=combined))

    def post(parameters: list) -> None:
        changes = {p.name: to_python(p.value) for p in parameters if p.name in names}
        if changes:
            apply(changes)
    node.add_post_set_parameters_callback(post)
    guard_set_services(node)


# rclpy's parameter services that turn each request entry into a Parameter first
SET_SERVICES = ('set_parameters', 'set_parameters_atomically')


def guard_set_services(node: Node) -> None:
    """
    Answer a set request rclpy cannot even read with a refusal, instead of exiting.

    A ParameterValue of a type ROS does not have (type 42, from a hand-built request)
    makes rclpy's service callback raise ValueError, which ended the node: control
    stopped. The refusal names the entry; the other entries of a non-atomic request
    are set one by one as rclpy sets them.
    """
    for srv in node.services:
        kind = srv.srv_name.rsplit('/', 1)[-1]
        if kind in SET_SERVICES:
            srv.callback = _guarded(srv.callback, kind == SET_SERVICES[1], node)


def _guarded(callback: Callable, atomic: bool, node: Node) -> Callable:
    def refusal(entry, error: Exception) -> SetParametersResult:
        reason = f'{entry.name}: not a ROS parameter value (type {entry.value.type}: {error})'
        node.get_logger().warning(f'parameter request refused: {reason}')
        return SetParametersResult(successful=False, reason=reason)

    def answer(request, response):
        if atomic:
            try:
                return callback(request, response)
            except (ValueError, TypeError) as e:
                bad = next((p for p in request.parameters if not _readable(p)),
                           request.parameters[0])
                response.result = refusal(bad, e)
                return response
        for entry in request.parameters:        # as rclpy does, one entry at a time
            one = type(request)(parameters=[entry])
            try:
                response.results.extend(callback(one, type(response)()).results)
            except (ValueError, TypeError) as e:
                response.results.append(refusal(entry, e))
        return response
    return answer


def _readable(entry) -> bool:
    try:
        Parameter.from_parameter_msg(entry)
    except (ValueError, TypeError):
        return False
    return True


__all__ = ['ROS_TYPES', 'attach', 'declare', 'descriptor', 'guard_set_services', 'read',
           'to_python', 'validation_callback', 'widening_callback']

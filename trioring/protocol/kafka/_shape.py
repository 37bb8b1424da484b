"""A pre-pass over a request (or response) body that checks its shape before kio decodes it.

kio's native decoder reserves room for an array from the count the client
sent before it reads one element, and an allocation that fails aborts the
process (Rust's out-of-memory handler), whatever Python does around it. A
20-byte Metadata request claiming 2**31 topics asked for 16 GiB; a
CreatePartitions v2 claiming 2**32 compact elements asked for 32 GiB and
stopped the broker. Kafka's own parser refuses such a request, so this pass
walks the body by its schema, reading only lengths, and raises ProtocolError
where:

- an array claims more elements than the bytes left could hold (each element
  takes at least its minimum encoded size);
- a string or bytes field is longer than the bytes left;
- a field the schema does not allow to be null came as null (kio decodes a
  null array as None whatever the schema says, and handlers trust the
  schema);
- the body ends early.

Only then does kio decode, and its reservations are bounded by the frame.
The client side runs the same pass over responses (a broken or hostile
broker, or an answer read as the wrong API, must cost a ProtocolError, not
the client's process).
A step for each field is built once per schema; arrays of fixed-size
elements (Fetch's partitions) are checked by arithmetic, not by a loop.
"""

from __future__ import annotations

import dataclasses
import functools
import struct
import types
import typing
from collections.abc import Callable
from typing import Any

from trioring.errors import ProtocolError
from trioring.protocol.kafka._headers import read_unsigned_varint, skip_tagged_fields

__all__ = ["check_request_shape", "check_response_shape"]

#: A step reads the field at ``offset`` of ``frame`` and returns the offset after it.
_Step = Callable[[bytes, int], int]

_INT16 = struct.Struct(">h")
_INT32 = struct.Struct(">i")

#: Encoded width of kio's fixed-size field types.
_FIXED_BYTES: dict[str, int] = {
    "bool": 1,
    "int8": 1,
    "int16": 2,
    "error_code": 2,
    "uint16": 2,
    "int32": 4,
    "uint32": 4,
    "timedelta_i32": 4,
    "int64": 8,
    "timedelta_i64": 8,
    "datetime_i64": 8,
    "float64": 8,
    "uuid": 16,
}
_STRING_TYPES = frozenset({"string"})
_BYTES_TYPES = frozenset({"bytes", "records"})


def check_request_shape(schema: type, frame: bytes, offset: int) -> None:
    """Raise ProtocolError unless the body at ``offset`` has the shape of ``schema``.

    Trailing bytes are left to the caller (kio reports how much it read).
    """
    _entity_step(schema)(frame, offset)


#: Responses are checked as requests are: the schema says the shape either way.
check_response_shape = check_request_shape


def _underflow(what: str, needed: int, frame: bytes, offset: int) -> ProtocolError:
    left = len(frame) - offset
    return ProtocolError(f"{what} needs {needed} bytes but {left} are left")


def _length_step(name: str, flexible: bool, nullable: bool, is_bytes: bool) -> _Step:
    """A string or bytes field: its length prefix, then that many bytes."""
    kind = "bytes" if is_bytes else "string"

    if flexible:

        def compact(frame: bytes, offset: int) -> int:
            length, offset = read_unsigned_varint(frame, offset)
            if length == 0:
                if not nullable:
                    raise ProtocolError(f"non-nullable {kind} {name} was sent as null")
                return offset
            if length - 1 > len(frame) - offset:
                raise _underflow(f"{kind} {name}", length - 1, frame, offset)
            return offset + length - 1

        return compact

    prefix = _INT32 if is_bytes else _INT16

    def legacy(frame: bytes, offset: int) -> int:
        if prefix.size > len(frame) - offset:
            raise _underflow(f"{name} length", prefix.size, frame, offset)
        length: int = prefix.unpack_from(frame, offset)[0]
        offset += prefix.size
        if length < 0:
            if length != -1 or not nullable:
                raise ProtocolError(f"{kind} {name} has length {length}")
            return offset
        if length > len(frame) - offset:
            raise _underflow(f"{kind} {name}", length, frame, offset)
        return offset + length

    return legacy


def _nullable_entity_step(name: str, present: _Step) -> _Step:
    """A nullable struct (DescribeTopicPartitions' cursor): an int8 marker, -1 null, 1 present."""

    def nullable_entity(frame: bytes, offset: int) -> int:
        if offset >= len(frame):
            raise _underflow(f"struct {name} marker", 1, frame, offset)
        marker = frame[offset]
        if marker == 0xFF:
            return offset + 1
        if marker != 1:
            raise ProtocolError(f"struct {name} has presence marker {marker}, neither -1 nor 1")
        return present(frame, offset + 1)

    return nullable_entity


def _fixed_step(name: str, width: int) -> _Step:
    def fixed(frame: bytes, offset: int) -> int:
        if width > len(frame) - offset:
            raise _underflow(name, width, frame, offset)
        return offset + width

    return fixed


def _array_step(
    name: str, flexible: bool, nullable: bool, element: _Step, *, element_min: int, fixed: bool
) -> _Step:
    """An array: its count (checked against the bytes left), then its elements."""
    # The loop below runs at most (bytes left / element_min) times.
    assert element_min >= 1, f"array {name} has elements that may take no bytes"

    def array(frame: bytes, offset: int) -> int:
        if flexible:
            encoded, offset = read_unsigned_varint(frame, offset)
            count = encoded - 1
        else:
            if len(frame) - offset < 4:
                raise _underflow(f"{name} count", 4, frame, offset)
            (count,) = _INT32.unpack_from(frame, offset)
            offset += 4
        if count < 0:
            if count != -1 or not nullable:
                raise ProtocolError(f"non-nullable array {name} was sent as null")
            return offset
        left = len(frame) - offset
        if count * element_min > left:
            raise ProtocolError(
                f"array {name} claims {count} elements of at least {element_min} bytes "
                f"but {left} bytes are left"
            )
        if fixed:
            return offset + count * element_min
        for _ in range(count):
            offset = element(frame, offset)
        return offset

    return array


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """The type inside ``X | None`` and whether None was allowed."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        arguments = typing.get_args(annotation)
        inner = [a for a in arguments if a is not type(None)]
        assert len(inner) == 1, f"unsupported union {annotation!r}"
        return inner[0], type(None) in arguments
    return annotation, False


def _field_step(field: dataclasses.Field[Any], flexible: bool) -> tuple[_Step, int, bool]:
    """The step of one field, its minimum encoded size and whether that size is fixed."""
    name = field.name
    annotation, nullable = _unwrap(field.type)
    kafka_type = field.metadata.get("kafka_type")
    if typing.get_origin(annotation) is tuple:
        element_type, _ellipsis = typing.get_args(annotation)
        element_type, _element_nullable = _unwrap(element_type)
        if dataclasses.is_dataclass(element_type):
            assert isinstance(element_type, type)
            element = _entity_step(element_type)
            element_min, element_fixed = _entity_size(element_type)
        else:
            assert isinstance(kafka_type, str), f"array {name} has no kafka_type"
            element, element_min, element_fixed = _primitive_step(name, kafka_type, flexible, False)
        count_min = 1 if flexible else 4
        step = _array_step(
            name, flexible, nullable, element, element_min=element_min, fixed=element_fixed
        )
        return step, count_min, False
    if dataclasses.is_dataclass(annotation):
        assert isinstance(annotation, type)
        size, fixed = _entity_size(annotation)
        if nullable:
            return _nullable_entity_step(name, _entity_step(annotation)), 1, False
        return _entity_step(annotation), size, fixed
    assert isinstance(kafka_type, str), f"field {name} has no kafka_type"
    return _primitive_step(name, kafka_type, flexible, nullable)


def _primitive_step(
    name: str, kafka_type: str, flexible: bool, nullable: bool
) -> tuple[_Step, int, bool]:
    width = _FIXED_BYTES.get(kafka_type)
    if width is not None:
        return _fixed_step(name, width), width, True
    if kafka_type in _STRING_TYPES or kafka_type in _BYTES_TYPES:
        is_bytes = kafka_type in _BYTES_TYPES
        prefix_bytes = 1 if flexible else (4 if is_bytes else 2)
        return _length_step(name, flexible, nullable, is_bytes), prefix_bytes, False
    # A type this pass does not know would let a request through unchecked:
    # fail loudly when the schema is first met (the codec tests meet them all).
    raise AssertionError(f"field {name} has kafka_type {kafka_type!r} the shape check lacks")


@functools.cache
def _entity_parts(schema: type) -> tuple[tuple[_Step, ...], int, bool]:
    flexible = bool(getattr(schema, "__flexible__", False))
    steps: list[_Step] = []
    size = 0
    fixed = True
    for field in dataclasses.fields(schema):
        if "tag" in field.metadata:
            continue  # tagged: encoded in the tagged section, skipped by size
        step, field_min, field_fixed = _field_step(field, flexible)
        steps.append(step)
        size += field_min
        fixed = fixed and field_fixed
    if flexible:
        # None of the request schemas we speak declares a tagged field, so every
        # tag is skipped by its size (kio rejects tags it does not know).
        steps.append(skip_tagged_fields)
        size += 1
        fixed = False
    return tuple(steps), size, fixed


def _entity_size(schema: type) -> tuple[int, bool]:
    """Minimum encoded size of an entity, and whether every encoding has that size."""
    _steps, size, fixed = _entity_parts(schema)
    return size, fixed


@functools.cache
def _entity_step(schema: type) -> _Step:
    steps, size, fixed = _entity_parts(schema)
    if fixed:
        return _fixed_step(schema.__name__, size)

    def entity(frame: bytes, offset: int) -> int:
        for step in steps:
            offset = step(frame, offset)
        return offset

    return entity

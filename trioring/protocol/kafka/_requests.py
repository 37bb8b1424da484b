"""Request bodies, decoded by kio; every kio failure becomes ProtocolError."""

from __future__ import annotations

import dataclasses
import functools
import struct
import types
import typing
from typing import Any

import attrs
from kio.serial import entity_reader
from kio.serial.errors import SerialError
from kio.serial.readers import Reader
from kio.static.protocol import RequestPayload

from trioring.errors import ProtocolError
from trioring.protocol.kafka._headers import RequestHeader, parse_request_header
from trioring.protocol.kafka._schemas import api_name, request_schema

#: What kio's decoders raise on malformed input (measured by fuzzing kio 0.6):
#: SerialError subclasses (BufferUnderflow, NegativeByteLength, InvalidUnicode,
#: UnexpectedNull); ValueError ("negative array length", an over-long varint,
#: an unknown error code); KeyError (an unknown tag in a flexible body);
#: OverflowError (an int64 duration beyond datetime.timedelta). The rest are
#: there in case a kio release moves an error between these families.
KIO_DECODE_ERRORS: tuple[type[Exception], ...] = (
    SerialError,
    ValueError,
    KeyError,
    IndexError,
    OverflowError,
    TypeError,
    EOFError,
    struct.error,
)


#: Per entity class: (field name, nullable, element entity class or None) of
#: each array field.
_ArrayFields = tuple[tuple[str, bool, type | None], ...]


@functools.cache
def _array_fields(cls: type) -> _ArrayFields:
    fields: list[tuple[str, bool, type | None]] = []
    for field in dataclasses.fields(cls):
        annotation: Any = field.type
        nullable = False
        if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
            arguments = typing.get_args(annotation)
            nullable = type(None) in arguments
            annotation = next(a for a in arguments if a is not type(None))
        if typing.get_origin(annotation) is not tuple:
            continue
        element = typing.get_args(annotation)[0]
        # Recurse only into elements that hold arrays themselves.
        element_entity: type | None = None
        if isinstance(element, type) and dataclasses.is_dataclass(element):
            element_entity = element if _array_fields(element) else None
        if nullable and element_entity is None:
            continue  # nothing to check
        fields.append((field.name, nullable, element_entity))
    return tuple(fields)


def check_non_nullable_arrays(entity: Any, path: str = "") -> None:
    """Raise ProtocolError where an array the schema says is not nullable came as null.

    kio decodes a -1 array length as None whatever the schema says, and
    code that trusts the schema then fails on None (a DescribeConfigs v1
    with a null resources array stopped the broker). Kafka's own parser
    rejects such a request as malformed. Strings and bytes kio checks itself.
    """
    entity_class: type = type(entity)
    for name, nullable, element_entity in _array_fields(entity_class):
        value = getattr(entity, name)
        if value is None:
            if not nullable:
                raise ProtocolError(f"non-nullable array {path}{name} was sent as null")
        elif element_entity is not None:
            for index, element in enumerate(value):
                check_non_nullable_arrays(element, f"{path}{name}[{index}].")


@functools.cache
def _reader(api_key: int, api_version: int) -> Reader[RequestPayload]:
    schema = request_schema(api_key, api_version)
    return entity_reader(schema)


def decode_request_body(header: RequestHeader, frame: bytes) -> RequestPayload:
    """Decode the body after ``header`` into kio's request object of that version.

    ``header`` must come from :func:`parse_request_header` of the same frame
    with no error. Raises ProtocolError if the body is malformed or leaves
    bytes unread.
    """
    if header.body_offset is None:
        raise ValueError("header was not fully parsed; its error must be handled instead")
    reader = _reader(header.api_key, header.api_version)
    try:
        body, size = reader(frame, header.body_offset)
    except KIO_DECODE_ERRORS as error:
        raise ProtocolError(
            f"{api_name(header.api_key)} v{header.api_version} request body is malformed: "
            f"{type(error).__name__}: {error}"
        ) from error
    trailing_bytes = len(frame) - header.body_offset - size
    if trailing_bytes:
        raise ProtocolError(
            f"{api_name(header.api_key)} v{header.api_version} request body leaves "
            f"{trailing_bytes} trailing bytes"
        )
    try:
        check_non_nullable_arrays(body)
    except ProtocolError as error:
        raise ProtocolError(
            f"{api_name(header.api_key)} v{header.api_version} request body is malformed: {error}"
        ) from None
    return body


@attrs.frozen
class Request:
    """A decoded request frame: its header and either its body or the error met.

    ``error`` is an :class:`UnsupportedVersionError` for an API or version we
    do not speak, and a ProtocolError for a malformed header or body.
    """

    header: RequestHeader
    body: RequestPayload | None
    error: ProtocolError | None


def decode_request(frame: bytes) -> Request:
    """Header and body of a request frame.

    Raises ProtocolError only when the frame is too short to hold a
    correlation id; every other problem is returned in ``Request.error``.
    """
    header, error = parse_request_header(frame)
    if error is not None:
        return Request(header, None, error)
    try:
        body = decode_request_body(header, frame)
    except ProtocolError as body_error:
        return Request(header, None, body_error)
    return Request(header, body, None)

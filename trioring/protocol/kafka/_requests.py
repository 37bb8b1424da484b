"""Request bodies, decoded by kio; every kio failure becomes ProtocolError."""

from __future__ import annotations

import functools
import struct

import attrs
from kio.serial import entity_reader
from kio.serial.errors import SerialError
from kio.serial.readers import Reader
from kio.static.protocol import RequestPayload

from trioring.errors import ProtocolError
from trioring.protocol.kafka._headers import RequestHeader, parse_request_header
from trioring.protocol.kafka._schemas import api_name, request_schema
from trioring.protocol.kafka._shape import check_request_shape

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


@functools.cache
def _reader(api_key: int, api_version: int) -> Reader[RequestPayload]:
    schema = request_schema(api_key, api_version)
    return entity_reader(schema)


def decode_request_body(header: RequestHeader, frame: bytes) -> RequestPayload:
    """Decode the body after ``header`` into kio's request object of that version.

    ``header`` must come from :func:`parse_request_header` of the same frame
    with no error. Raises ProtocolError if the body is malformed; bytes
    after it are ignored, as Kafka ignores them.
    """
    if header.body_offset is None:
        raise ValueError("header was not fully parsed; its error must be handled instead")
    schema = request_schema(header.api_key, header.api_version)
    reader = _reader(header.api_key, header.api_version)
    try:
        # Before kio: its reservations follow the counts the client sent.
        check_request_shape(schema, frame, header.body_offset)
    except ProtocolError as error:
        raise ProtocolError(
            f"{api_name(header.api_key)} v{header.api_version} request body is malformed: {error}"
        ) from None
    try:
        body, _size = reader(frame, header.body_offset)
    except KIO_DECODE_ERRORS as error:
        raise ProtocolError(
            f"{api_name(header.api_key)} v{header.api_version} request body is malformed: "
            f"{type(error).__name__}: {error}"
        ) from error
    # Bytes after the body are ignored, as Kafka's parser ignores them: real
    # clients send some (librdkafka 2.16's all-topics Metadata v9+ leaves the
    # 3 extra bytes of its array-count placeholder after the body).
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

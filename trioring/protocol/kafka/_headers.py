"""Request and response headers, and the tagged-field sections of flexible versions.

Request header v1 (non-flexible requests)::

    api_key int16, api_version int16, correlation_id int32, client_id nullable int16 string

Request header v2 (flexible requests) is v1 followed by tagged fields.
``client_id`` stays an int16-length string even in v2, so a broker can read it
before knowing which versions the client speaks. Response header v0 is the
correlation id; v1 adds tagged fields. The ApiVersions response always uses v0.
"""

from __future__ import annotations

import struct

import attrs

from trioring._constants import REQUEST_HEADER_FIXED_BYTES
from trioring.errors import ProtocolError
from trioring.protocol.kafka._errors import UnsupportedVersionError
from trioring.protocol.kafka._schemas import SUPPORTED_VERSIONS, api_name, is_flexible

_PREFIX = struct.Struct(">hhi")
assert _PREFIX.size == REQUEST_HEADER_FIXED_BYTES
_INT16 = struct.Struct(">h")
#: Kafka's unsigned varints carry 32 bits: at most five 7-bit groups.
_UNSIGNED_VARINT_BYTES_MAX = 5


@attrs.frozen
class RequestHeader:
    """A parsed request header.

    ``header_version`` and ``body_offset`` are None when the API or version is
    unsupported or the header is malformed: then only the fields before them
    are known (``client_id`` is None too if it could not be read).
    """

    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    #: 1 for non-flexible requests, 2 for flexible ones (adds tagged fields).
    header_version: int | None
    #: Where the request body starts in the frame.
    body_offset: int | None


def read_unsigned_varint(buffer: bytes, position: int) -> tuple[int, int]:
    """Read a 32-bit unsigned varint; return ``(value, next_position)``."""
    end = len(buffer)
    value = 0
    for index in range(_UNSIGNED_VARINT_BYTES_MAX):
        if position >= end:
            raise ProtocolError("unsigned varint runs past the end of the frame")
        byte = buffer[position]
        position += 1
        value |= (byte & 0x7F) << (7 * index)
        if not byte & 0x80:
            if value >> 32:
                raise ProtocolError(f"unsigned varint {value} does not fit in 32 bits")
            return value, position
    raise ProtocolError(f"unsigned varint is longer than {_UNSIGNED_VARINT_BYTES_MAX} bytes")


def skip_tagged_fields(buffer: bytes, position: int) -> int:
    """Step over a tagged-field section; return the position after it.

    trioring defines no tagged fields of its own, and Kafka requires unknown
    tags to be ignored, so each one is skipped by its length.
    """
    count, position = read_unsigned_varint(buffer, position)
    # Each field takes at least two bytes (tag, size), so the loop ends within
    # the frame even for a huge count.
    for _ in range(count):
        _tag, position = read_unsigned_varint(buffer, position)
        size, position = read_unsigned_varint(buffer, position)
        if size > len(buffer) - position:
            raise ProtocolError(
                f"tagged field of {size} bytes runs past the end of the frame "
                f"({len(buffer) - position} bytes remain)"
            )
        position += size
    return position


def _read_client_id(frame: bytes, position: int) -> tuple[str | None, int]:
    if len(frame) - position < _INT16.size:
        raise ProtocolError("request header ends before its client id")
    (length,) = _INT16.unpack_from(frame, position)
    position += _INT16.size
    if length == -1:
        return None, position
    if length < 0:
        raise ProtocolError(f"request header client id has negative length {length}")
    end = position + length
    if end > len(frame):
        raise ProtocolError(
            f"request header client id of {length} bytes runs past the end of the frame"
        )
    try:
        return frame[position:end].decode(), end
    except UnicodeDecodeError:
        raise ProtocolError("request header client id is not UTF-8") from None


def parse_request_header(frame: bytes) -> tuple[RequestHeader, ProtocolError | None]:
    """Parse the header at the start of a request frame.

    Raises ProtocolError only when the frame is shorter than the 8-byte prefix
    holding the correlation id: then there is nothing to answer and the
    connection must close. Every later problem comes back as the error of the
    pair, with the header fields read so far, so the server can still answer
    (ApiVersions with UNSUPPORTED_VERSION) or log the correlation id and
    close: :class:`UnsupportedVersionError` for an API key or version outside
    :data:`SUPPORTED_VERSIONS`, ProtocolError for a malformed header.
    """
    if len(frame) < REQUEST_HEADER_FIXED_BYTES:
        raise ProtocolError(
            f"request frame of {len(frame)} bytes is shorter than the "
            f"{REQUEST_HEADER_FIXED_BYTES}-byte header prefix (api key, version, correlation id)"
        )
    api_key, api_version, correlation_id = _PREFIX.unpack_from(frame, 0)
    client_id: str | None = None
    error: ProtocolError
    try:
        client_id, position = _read_client_id(frame, REQUEST_HEADER_FIXED_BYTES)
        versions = SUPPORTED_VERSIONS.get(api_key)
        if versions is None:
            raise UnsupportedVersionError(
                f"API key {api_key} is not supported by this broker",
                api_key=api_key,
                api_version=api_version,
            )
        if not versions[0] <= api_version <= versions[1]:
            raise UnsupportedVersionError(
                f"{api_name(api_key)} v{api_version} is not supported; "
                f"this broker speaks v{versions[0]}-v{versions[1]}",
                api_key=api_key,
                api_version=api_version,
            )
        if is_flexible(api_key, api_version):
            position = skip_tagged_fields(frame, position)
            header_version = 2
        else:
            header_version = 1
    except ProtocolError as caught:
        error = caught
    else:
        header = RequestHeader(
            api_key, api_version, correlation_id, client_id, header_version, position
        )
        return header, None
    return RequestHeader(api_key, api_version, correlation_id, client_id, None, None), error


def encode_request_header(
    api_key: int,
    api_version: int,
    correlation_id: int,
    client_id: str | None,
    *,
    flexible: bool,
) -> bytes:
    """Request header v1, or v2 with an empty tagged-field section (for clients and tests)."""
    if client_id is None:
        client_id_bytes = _INT16.pack(-1)
    else:
        encoded = client_id.encode()
        client_id_bytes = _INT16.pack(len(encoded)) + encoded
    tagged_fields = b"\x00" if flexible else b""
    return _PREFIX.pack(api_key, api_version, correlation_id) + client_id_bytes + tagged_fields

"""The client side of the Kafka wire protocol, sans-IO: requests out, responses in.

``encode_request`` frames a kio request object of a supported version (size
prefix, request header v1 or v2, body). ``ResponseDecoder`` takes the
frames a broker sends back and returns (correlation id, kio response) for
the request that correlation id belongs to. Every malformed response is a
:class:`~trioring.errors.ProtocolError`, as on the server side.
"""

from __future__ import annotations

import io
import struct
from typing import Any

from kio.serial import entity_reader, entity_writer

from trioring.errors import ProtocolError
from trioring.protocol.kafka._headers import encode_request_header
from trioring.protocol.kafka._requests import KIO_DECODE_ERRORS
from trioring.protocol.kafka._schemas import ApiKey, is_flexible, response_schema
from trioring.protocol.kafka._shape import check_response_shape

__all__ = ["decode_response", "encode_request"]

_INT32 = struct.Struct(">i")


def encode_request(
    api_key: int, api_version: int, correlation_id: int, client_id: str | None, body: Any
) -> bytes:
    """One framed request: ``body`` is the kio request object of ``api_version``."""
    buffer = io.BytesIO()
    entity_writer(type(body))(buffer, body)
    header = encode_request_header(
        api_key, api_version, correlation_id, client_id, flexible=is_flexible(api_key, api_version)
    )
    payload = header + buffer.getvalue()
    return _INT32.pack(len(payload)) + payload


def response_correlation_id(frame: bytes) -> int:
    """The correlation id a response frame (without its size prefix) answers."""
    if len(frame) < _INT32.size:
        raise ProtocolError("a response shorter than its correlation id")
    return int(_INT32.unpack_from(frame)[0])


def decode_response(api_key: int, api_version: int, frame: bytes) -> Any:
    """The kio response object in ``frame`` (the bytes after the size prefix).

    The response header is v0 (the correlation id), or v1 (plus tagged fields)
    for flexible versions, except ApiVersions, whose header is always v0.
    """
    position = _INT32.size
    try:
        if is_flexible(api_key, api_version) and api_key != ApiKey.API_VERSIONS:
            if position >= len(frame):
                raise ProtocolError("a flexible response without its tagged fields")
            tagged = frame[position]
            if tagged != 0:
                raise ProtocolError("tagged fields in a response header are not expected")
            position += 1
        schema = response_schema(api_key, api_version)
        # Before kio, whose reservations follow the counts the broker sent: a
        # failed one aborts the process (a 17 GiB Metadata answer of 8 bytes).
        check_response_shape(schema, frame, position)
        response, size = entity_reader(schema)(frame, position)
    except ProtocolError:
        raise
    except KIO_DECODE_ERRORS as error:
        raise ProtocolError(
            f"malformed response to API {api_key} v{api_version}: {error}"
        ) from None
    if position + size != len(frame):
        raise ProtocolError(f"{len(frame) - position - size} bytes after a response body")
    return response

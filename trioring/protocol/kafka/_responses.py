"""Framed responses: size prefix, response header, body.

Produce and Fetch bodies given as :mod:`._fast_responses` tuples go through
the hand-written encoders; every other body is a kio response object and is
written by kio. Encoding never raises ProtocolError: a response that does not
fit its schema is a bug of the caller and raises what kio or struct raise
(TypeError, ValueError, struct.error, kio's OutOfBoundValue).
"""

from __future__ import annotations

import io
import struct
from typing import NamedTuple

from kio.serial import entity_writer
from kio.static.protocol import ResponsePayload

from trioring._constants import FRAME_BYTES_MAX_LIMIT, FRAME_SIZE_BYTES
from trioring.protocol.kafka._fast_responses import (
    Chunk,
    FetchResponseBody,
    ProduceResponseBody,
    encode_fetch_response_chunks,
    encode_produce_response,
)
from trioring.protocol.kafka._schemas import ApiKey, api_name

_FRAME_HEADER = struct.Struct(">ii")  # frame size, correlation id
#: Response header v1 = v0 + tagged fields; trioring sends none.
_EMPTY_TAGGED_FIELDS = b"\x00"


class EncodedBody(NamedTuple):
    """A response body encoded once, to be framed again for other requests.

    For responses worth caching (Metadata of many topics costs milliseconds
    to build and encode with kio): :func:`encode_response_body` makes one,
    :func:`encode_response_chunks` frames it with each request's correlation id.
    """

    api_key: int
    api_version: int
    flexible_header: bool
    body: bytes


ResponseBody = ResponsePayload | ProduceResponseBody | FetchResponseBody | EncodedBody


def encode_response_body(response: ResponsePayload) -> EncodedBody:
    """Encode a kio response's body alone (no size, no header), for reuse."""
    buffer = io.BytesIO()
    entity_writer(type(response))(buffer, response)
    return EncodedBody(
        int(response.__api_key__),
        int(response.__version__),
        uses_flexible_response_header(response),
        buffer.getvalue(),
    )


def uses_flexible_response_header(response: ResponsePayload) -> bool:
    """Header v1 for flexible versions, v0 otherwise, and v0 for ApiVersions always.

    Clients read the ApiVersions response before they know our versions, so
    Kafka pins its header to v0 (kio's schemas agree; checked here anyway).
    """
    if int(response.__api_key__) == ApiKey.API_VERSIONS:
        return False
    return response.__header_schema__.__version__ >= 1


def _encode_kio_response(correlation_id: int, response: ResponsePayload) -> bytes:
    buffer = io.BytesIO()
    buffer.write(_FRAME_HEADER.pack(0, correlation_id))
    if uses_flexible_response_header(response):
        buffer.write(_EMPTY_TAGGED_FIELDS)
    entity_writer(type(response))(buffer, response)
    size = buffer.tell() - FRAME_SIZE_BYTES
    if size > FRAME_BYTES_MAX_LIMIT:
        raise ValueError(f"response of {size} bytes does not fit an int32 frame size")
    with buffer.getbuffer() as view:
        _FRAME_HEADER.pack_into(view, 0, size, correlation_id)
    return buffer.getvalue()


def _check_matches(api_key: int, api_version: int, expected_api_key: int, what: str) -> None:
    if api_key != expected_api_key:
        raise ValueError(
            f"{what} cannot answer {api_name(api_key)} v{api_version} "
            f"(it is a {api_name(expected_api_key)} response)"
        )


def encode_response_chunks(
    api_key: int, api_version: int, correlation_id: int, response: ResponseBody
) -> list[Chunk]:
    """Encode a framed response as chunks to write in order (fast path for Fetch).

    ``response`` is a :class:`ProduceResponseBody`, a :class:`FetchResponseBody`
    or a kio response object of exactly ``api_key`` / ``api_version``.
    Only a Fetch response has more than one chunk: records larger than
    ``FETCH_RECORDS_COPY_BYTES_MAX`` come back as the objects passed in.
    """
    if isinstance(response, ProduceResponseBody):
        _check_matches(api_key, api_version, ApiKey.PRODUCE, "a ProduceResponseBody")
        return [encode_produce_response(api_version, correlation_id, response)]
    if isinstance(response, FetchResponseBody):
        _check_matches(api_key, api_version, ApiKey.FETCH, "a FetchResponseBody")
        return encode_fetch_response_chunks(api_version, correlation_id, response)
    if isinstance(response, EncodedBody):
        if (response.api_key, response.api_version) != (api_key, api_version):
            raise ValueError(
                f"an encoded {api_name(response.api_key)} v{response.api_version} body "
                f"cannot answer {api_name(api_key)} v{api_version}"
            )
        header = _EMPTY_TAGGED_FIELDS if response.flexible_header else b""
        size = FRAME_SIZE_BYTES + len(header) + len(response.body)  # correlation id + rest
        if size > FRAME_BYTES_MAX_LIMIT:
            raise ValueError(f"response of {size} bytes does not fit an int32 frame size")
        return [b"".join((_FRAME_HEADER.pack(size, correlation_id), header, response.body))]
    schema = type(response)
    if schema.__api_key__ != api_key or schema.__version__ != api_version:
        raise ValueError(
            f"{schema.__module__}.{schema.__qualname__} (API key {schema.__api_key__} "
            f"v{schema.__version__}) cannot answer {api_name(api_key)} v{api_version}"
        )
    return [_encode_kio_response(correlation_id, response)]


def encode_response(
    api_key: int, api_version: int, correlation_id: int, response: ResponseBody
) -> bytes:
    """Encode a framed response as one bytes object (see :func:`encode_response_chunks`)."""
    chunks = encode_response_chunks(api_key, api_version, correlation_id, response)
    if len(chunks) == 1 and isinstance(chunks[0], bytes):
        return chunks[0]
    return b"".join(chunks)

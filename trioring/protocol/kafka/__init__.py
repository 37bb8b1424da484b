"""The Kafka wire protocol, sans-IO: bytes in, objects out, objects in, bytes out.

Layers, each usable on its own (the server stacks them per connection)::

    FrameDecoder / encode_frame   int32 size prefix; bounded by frame_bytes_max
    parse_request_header          api key, version, correlation id, client id;
                                  header v1, or v2 (tagged fields) for flexible versions
    decode_request_body           the body, as kio's request object of that version
    decode_request                both of the above, errors returned, not raised
    encode_response[_chunks]      size + header v0/v1 + body: kio for most APIs,
                                  hand-written encoders for Produce and Fetch
    encode_api_versions_response  SUPPORTED_VERSIONS, and the UNSUPPORTED_VERSION answer
    response_object               any response body as a kio object, not encoded (in-process)

One error boundary: every malformed input raises (or returns)
:class:`~trioring.errors.ProtocolError` or a subclass, never IndexError,
struct.error, UnicodeDecodeError or kio's own exceptions. That is what lets
the whole package be fuzzed with random bytes. Once the 8-byte header prefix
is read, errors are returned next to the header instead of raised, so the
server always has the correlation id to answer (ApiVersions) or to log
before it closes the connection. Encoding errors are bugs of the caller and
are not converted.

Nothing here imports trio or touches a socket.

Typical server loop::

    decoder = FrameDecoder()
    while data := await stream.receive_some(RECEIVE_BYTES):
        decoder.feed(data)                      # ProtocolError: close
        for frame in decoder.frames():
            request = decode_request(frame)     # ProtocolError: close
            header = request.header
            if request.error is not None:
                if header.api_key == ApiKey.API_VERSIONS:
                    send(encode_api_versions_response(header.correlation_id, header.api_version))
                    continue
                close()
            ... body = request.body (a kio object, e.g. kio.schema.produce.v7.ProduceRequest)
            send(encode_response_chunks(header.api_key, header.api_version,
                                        header.correlation_id, response))
"""

from __future__ import annotations

from trioring._constants import (
    FETCH_RECORDS_COPY_BYTES_MAX,
    FRAME_BYTES_MAX_DEFAULT,
    FRAME_SIZE_BYTES,
)
from trioring.protocol.kafka._api_versions import (
    FINALIZED_FEATURES,
    SUPPORTED_FEATURES,
    build_api_versions_response,
    encode_api_versions_response,
)
from trioring.protocol.kafka._errors import UnsupportedVersionError
from trioring.protocol.kafka._fast_responses import (
    Chunk,
    FetchResponseBody,
    FetchResponsePartition,
    FetchResponseTopic,
    ProduceResponseBody,
    ProduceResponsePartition,
    ProduceResponseTopic,
    SentChunk,
    encode_fetch_response,
    encode_fetch_response_chunks,
    encode_produce_response,
)
from trioring.protocol.kafka._framing import FrameDecoder, encode_frame
from trioring.protocol.kafka._headers import (
    RequestHeader,
    encode_request_header,
    parse_request_header,
    read_unsigned_varint,
    skip_tagged_fields,
)
from trioring.protocol.kafka._requests import (
    KIO_DECODE_ERRORS,
    Request,
    decode_request,
    decode_request_body,
)
from trioring.protocol.kafka._responses import (
    EncodedBody,
    ResponseBody,
    encode_response,
    encode_response_body,
    encode_response_chunks,
    response_object,
    uses_flexible_response_header,
)
from trioring.protocol.kafka._schemas import (
    ADVERTISED_VERSIONS,
    SUPPORTED_VERSIONS,
    ApiKey,
    api_name,
    is_flexible,
    is_supported,
    request_schema,
    response_schema,
)

__all__ = [
    "ADVERTISED_VERSIONS",
    "FETCH_RECORDS_COPY_BYTES_MAX",
    "FINALIZED_FEATURES",
    "FRAME_BYTES_MAX_DEFAULT",
    "FRAME_SIZE_BYTES",
    "KIO_DECODE_ERRORS",
    "SUPPORTED_FEATURES",
    "SUPPORTED_VERSIONS",
    "ApiKey",
    "Chunk",
    "EncodedBody",
    "FetchResponseBody",
    "FetchResponsePartition",
    "FetchResponseTopic",
    "FrameDecoder",
    "ProduceResponseBody",
    "ProduceResponsePartition",
    "ProduceResponseTopic",
    "Request",
    "RequestHeader",
    "ResponseBody",
    "SentChunk",
    "UnsupportedVersionError",
    "api_name",
    "build_api_versions_response",
    "decode_request",
    "decode_request_body",
    "encode_api_versions_response",
    "encode_fetch_response",
    "encode_fetch_response_chunks",
    "encode_frame",
    "encode_produce_response",
    "encode_request_header",
    "encode_response",
    "encode_response_body",
    "encode_response_chunks",
    "is_flexible",
    "is_supported",
    "parse_request_header",
    "read_unsigned_varint",
    "request_schema",
    "response_object",
    "response_schema",
    "skip_tagged_fields",
    "uses_flexible_response_header",
]

"""Framed responses: size prefix, response header, body.

Produce and Fetch bodies given as :mod:`._fast_responses` tuples go through
the hand-written encoders; every other body is a kio response object and is
written by kio. Encoding never raises ProtocolError: a response that does not
fit its schema is a bug of the caller and raises what kio or struct raise
(TypeError, ValueError, struct.error, kio's OutOfBoundValue).

:func:`response_object` is the other way out, for callers in the same
process (the client's in-process transport): any response body as the kio
object a client would decode from its bytes, without encoding it.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import io
import struct
import types
import typing
import uuid
from typing import Any, NamedTuple

from kio.serial import entity_reader, entity_writer
from kio.static.primitive import i32Timedelta
from kio.static.protocol import ResponsePayload

from trioring._constants import FRAME_BYTES_MAX_LIMIT, FRAME_SIZE_BYTES
from trioring.protocol.kafka._build import NO_THROTTLE, build, sibling
from trioring.protocol.kafka._fast_responses import (
    FETCH_TOPIC_ID_VERSION,
    FetchResponseBody,
    ProduceResponseBody,
    SentChunk,
    encode_fetch_response_chunks,
    encode_produce_response,
)
from trioring.protocol.kafka._schemas import ApiKey, api_name, response_schema

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
) -> list[SentChunk]:
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
    buffers = [chunk for chunk in chunks if isinstance(chunk, bytes | bytearray | memoryview)]
    if len(buffers) != len(chunks):
        raise TypeError("records that are not buffers cannot be encoded into one bytes")
    return b"".join(buffers)


def response_object(api_key: int, api_version: int, response: ResponseBody) -> Any:
    """The kio response object of ``api_key`` / ``api_version`` that ``response`` stands
    for: what a client decodes from the bytes :func:`encode_response_chunks` writes.

    A kio object is returned as it is (but for zero UUIDs, which kio reads as
    None: see below); Produce and Fetch bodies are built into kio objects field
    by field (records that are ``bytes``, as a log's reads are, are passed on,
    not copied); an :class:`EncodedBody` is decoded from its bytes, the one
    case that costs what the wire costs.
    """
    if isinstance(response, ProduceResponseBody):
        _check_matches(api_key, api_version, ApiKey.PRODUCE, "a ProduceResponseBody")
        return _produce_object(api_version, response)
    if isinstance(response, FetchResponseBody):
        _check_matches(api_key, api_version, ApiKey.FETCH, "a FetchResponseBody")
        return _fetch_object(api_version, response)
    schema = response_schema(api_key, api_version)
    if isinstance(response, EncodedBody):
        if (response.api_key, response.api_version) != (api_key, api_version):
            raise ValueError(
                f"an encoded {api_name(response.api_key)} v{response.api_version} body "
                f"cannot answer {api_name(api_key)} v{api_version}"
            )
        decoded, size = entity_reader(schema)(response.body, 0)
        if size != len(response.body):
            raise ValueError(f"{len(response.body) - size} bytes after an encoded body")
        return decoded
    if type(response) is not schema:
        raise ValueError(
            f"{type(response).__qualname__} cannot answer {api_name(api_key)} v{api_version}"
        )
    return _zero_uuids_as_none(response)


# kio writes a None topic id as 16 zero bytes and reads those as None, so a
# response built with uuid.UUID(int=0) comes out of the wire with None: the
# objects handed over in-process must say None too.


def _zero_uuids_as_none(entity: Any) -> Any:
    """``entity`` with every zero UUID in it (nested entities included) as None."""
    changes: dict[str, Any] = {}
    entity_class: type = type(entity)
    for name, kind in _uuid_fields(entity_class):
        value = getattr(entity, name)
        if value is None:
            continue
        if kind == _UUID:
            if value.int == 0:
                changes[name] = None
        elif kind == _ENTITY:
            new = _zero_uuids_as_none(value)
            if new is not value:
                changes[name] = new
        else:
            items = tuple(_zero_uuids_as_none(item) for item in value)
            if any(new is not old for new, old in zip(items, value, strict=True)):
                changes[name] = items
    return dataclasses.replace(entity, **changes) if changes else entity


_UUID, _ENTITY, _ENTITIES = "uuid", "entity", "entities"


@functools.cache
def _uuid_fields(cls: type) -> tuple[tuple[str, str], ...]:
    """The fields of a kio entity class where a UUID can be: one, or inside an entity
    or a tuple of entities (worked out once per class, from the field types)."""
    found = []
    for field in dataclasses.fields(cls):
        kind = None
        union = typing.get_origin(field.type) in (types.UnionType, typing.Union)
        for option in typing.get_args(field.type) if union else (field.type,):  # X | None, X
            if option is uuid.UUID:
                kind = _UUID
            elif dataclasses.is_dataclass(option) and _uuid_fields(option):  # type: ignore[arg-type]
                kind = _ENTITY
            elif typing.get_origin(option) is tuple:
                (item, *_) = typing.get_args(option)
                if dataclasses.is_dataclass(item) and _uuid_fields(item):  # type: ignore[arg-type]
                    kind = _ENTITIES
        if kind is not None:
            found.append((field.name, kind))
    return tuple(found)


def _throttle(throttle_time_ms: int) -> i32Timedelta:
    if throttle_time_ms == 0:
        return NO_THROTTLE
    return i32Timedelta.parse(datetime.timedelta(milliseconds=throttle_time_ms))


def _topic_key(by_id: bool, name: str | bytes) -> dict[str, Any]:
    """A Fetch topic's name (up to v12) or id (v13 on), as kio's fields (kio reads
    the zero id as None)."""
    if by_id:
        assert isinstance(name, bytes), "Fetch v13+ names topics by their 16-byte id"
        topic_id = uuid.UUID(bytes=name)
        return {"topic_id": None if topic_id.int == 0 else topic_id}
    return {"topic": name}


def _records(records: SentChunk | None) -> bytes | None:
    """As kio reads them: bytes (a log's read already is; a view is copied)."""
    if records is None or isinstance(records, bytes):
        return records
    if not isinstance(records, bytearray | memoryview):
        raise TypeError(f"records must be bytes-like here, not {type(records).__name__}")
    return bytes(records)


def _produce_object(api_version: int, body: ProduceResponseBody) -> Any:
    response_class = response_schema(ApiKey.PRODUCE, api_version)
    topic_class = sibling(response_class, "TopicProduceResponse")
    partition_class = sibling(response_class, "PartitionProduceResponse")
    return build(
        response_class,
        responses=tuple(
            build(
                topic_class,
                name=name,
                partition_responses=tuple(
                    build(
                        partition_class,
                        index=index,
                        error_code=error_code,
                        base_offset=base_offset,
                        # -1: the topic does not use LogAppendTime (kio reads -1 as None).
                        log_append_time=None
                        if log_append_time_ms == -1
                        else datetime.datetime.fromtimestamp(
                            log_append_time_ms / 1000, tz=datetime.UTC
                        ),
                        log_start_offset=log_start_offset,
                        record_errors=(),
                        error_message=error_message,
                    )
                    for (
                        index,
                        error_code,
                        base_offset,
                        log_append_time_ms,
                        log_start_offset,
                        error_message,
                    ) in partitions
                ),
            )
            for name, partitions in body.topics
        ),
        throttle_time=_throttle(body.throttle_time_ms),
    )


def _fetch_object(api_version: int, body: FetchResponseBody) -> Any:
    response_class = response_schema(ApiKey.FETCH, api_version)
    topic_class = sibling(response_class, "FetchableTopicResponse")
    partition_class = sibling(response_class, "PartitionData")
    aborted_class = sibling(response_class, "AbortedTransaction")
    by_id = api_version >= FETCH_TOPIC_ID_VERSION
    topics, throttle_time_ms, error_code, session_id = body
    return build(
        response_class,
        throttle_time=_throttle(throttle_time_ms),
        error_code=error_code,
        session_id=session_id,
        responses=tuple(
            build(
                topic_class,
                **_topic_key(by_id, name),
                partitions=tuple(
                    build(
                        partition_class,
                        partition_index=partition.partition_index,
                        error_code=partition.error_code,
                        high_watermark=partition.high_watermark,
                        last_stable_offset=partition.last_stable_offset,
                        log_start_offset=partition.log_start_offset,
                        aborted_transactions=None
                        if partition.aborted_transactions is None
                        else tuple(
                            aborted_class(producer_id=producer_id, first_offset=first_offset)
                            for producer_id, first_offset in partition.aborted_transactions
                        ),
                        preferred_read_replica=partition.preferred_read_replica,
                        records=_records(partition.records),
                    )
                    for partition in partitions
                ),
            )
            for name, partitions in topics
        ),
    )

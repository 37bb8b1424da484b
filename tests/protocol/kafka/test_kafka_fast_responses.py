"""The hand-written Produce and Fetch response encoders write exactly kio's bytes."""

from __future__ import annotations

import dataclasses
import datetime
import importlib
import io
import struct
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kio.schema.errors import ErrorCode
from kio.serial import entity_writer
from kio.static.primitive import Records, i32Timedelta

from trioring.protocol.kafka import (
    FETCH_RECORDS_COPY_BYTES_MAX,
    FetchResponseBody,
    FetchResponsePartition,
    FetchResponseTopic,
    ProduceResponseBody,
    ProduceResponsePartition,
    ProduceResponseTopic,
    encode_fetch_response,
    encode_fetch_response_chunks,
    encode_produce_response,
    encode_response,
    encode_response_body,
    encode_response_chunks,
    response_object,
)
from trioring.protocol.kafka._client import decode_response

PRODUCE_VERSIONS = range(3, 13)
FETCH_VERSIONS = range(4, 18)
INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
INT32 = st.integers(min_value=-(2**31), max_value=2**31 - 1)
ERROR_CODES = st.sampled_from([0, 1, 2, 3, 6, 10, 35, 56, 87, -1])


def build(schema: type[Any], **values: Any) -> Any:
    """Instantiate a kio class with those of ``values`` its version has."""
    names = {field.name for field in dataclasses.fields(schema)}
    return schema(**{name: value for name, value in values.items() if name in names})


def milliseconds(value: int) -> i32Timedelta:
    return i32Timedelta.parse(datetime.timedelta(milliseconds=value))


def kio_frame(correlation_id: int, response: Any) -> bytes:
    buffer = io.BytesIO()
    entity_writer(type(response))(buffer, response)
    # Flexible versions: response header v1 (an empty tagged-field section).
    header = struct.pack(">i", correlation_id) + (b"\x00" if response.__flexible__ else b"")
    body = header + buffer.getvalue()
    return struct.pack(">i", len(body)) + body


def topic_id(name: str) -> bytes:
    return uuid.uuid5(uuid.NAMESPACE_URL, name).bytes


def with_topic_ids(api_version: int, body: FetchResponseBody) -> FetchResponseBody:
    """From Fetch v13 on topics are named by id: the same body with ids for names."""
    if api_version < 13:
        return body
    return body._replace(
        topics=[
            topic._replace(name=topic_id(topic.name)) if isinstance(topic.name, str) else topic
            for topic in body.topics
        ]
    )


def kio_produce(api_version: int, body: ProduceResponseBody) -> Any:
    module = importlib.import_module(f"kio.schema.produce.v{api_version}.response")
    return module.ProduceResponse(
        responses=tuple(
            module.TopicProduceResponse(
                name=topic.name,
                partition_responses=tuple(
                    build(
                        module.PartitionProduceResponse,
                        index=partition.partition_index,
                        error_code=ErrorCode(partition.error_code),
                        base_offset=partition.base_offset,
                        log_append_time=None
                        if partition.log_append_time_ms == -1
                        else datetime.datetime.fromtimestamp(
                            partition.log_append_time_ms / 1000, tz=datetime.UTC
                        ),
                        log_start_offset=partition.log_start_offset,
                        record_errors=(),
                        error_message=partition.error_message,
                    )
                    for partition in topic.partitions
                ),
            )
            for topic in body.topics
        ),
        throttle_time=milliseconds(body.throttle_time_ms),
    )


def kio_fetch(api_version: int, body: FetchResponseBody) -> Any:
    module = importlib.import_module(f"kio.schema.fetch.v{api_version}.response")

    def aborted(pairs: Any) -> Any:
        if pairs is None:
            return None
        return tuple(
            module.AbortedTransaction(producer_id=producer_id, first_offset=first_offset)
            for producer_id, first_offset in pairs
        )

    return build(
        module.FetchResponse,
        throttle_time=milliseconds(body.throttle_time_ms),
        error_code=ErrorCode(body.error_code),
        session_id=body.session_id,
        responses=tuple(
            build(
                module.FetchableTopicResponse,
                topic=topic.name,
                topic_id=uuid.UUID(bytes=topic.name) if api_version >= 13 else None,
                partitions=tuple(
                    build(
                        module.PartitionData,
                        partition_index=partition.partition_index,
                        error_code=ErrorCode(partition.error_code),
                        high_watermark=partition.high_watermark,
                        last_stable_offset=partition.last_stable_offset,
                        log_start_offset=partition.log_start_offset,
                        aborted_transactions=aborted(partition.aborted_transactions),
                        preferred_read_replica=partition.preferred_read_replica,
                        records=None
                        if partition.records is None
                        else Records(bytes(partition.records)),
                    )
                    for partition in topic.partitions
                ),
            )
            for topic in body.topics
        ),
    )


PRODUCE_BODY = ProduceResponseBody(
    topics=[
        ProduceResponseTopic(
            "orders",
            [
                ProduceResponsePartition(0, 0, 1000, -1, 0),
                ProduceResponsePartition(1, 0, 0, 1_763_726_400_123, 17),
                ProduceResponsePartition(2, 3, -1, -1, -1, "no such partition"),
                ProduceResponsePartition(3, 87, -1, -1, -1, ""),
            ],
        ),
        ProduceResponseTopic("évènements", [ProduceResponsePartition(7, 10, -1)]),
        ProduceResponseTopic("empty", []),
    ],
    throttle_time_ms=250,
)


@pytest.mark.parametrize("api_version", PRODUCE_VERSIONS)
def test_produce_response_matches_kio(api_version: int) -> None:
    expected = kio_frame(-7, kio_produce(api_version, PRODUCE_BODY))
    assert encode_produce_response(api_version, -7, PRODUCE_BODY) == expected
    assert encode_response(0, api_version, -7, PRODUCE_BODY) == expected
    assert encode_response_chunks(0, api_version, -7, PRODUCE_BODY) == [expected]


@pytest.mark.parametrize("api_version", PRODUCE_VERSIONS)
def test_empty_produce_response_matches_kio(api_version: int) -> None:
    body = ProduceResponseBody([])
    assert encode_produce_response(api_version, 1, body) == kio_frame(
        1, kio_produce(api_version, body)
    )


def fetch_body(records: list[Any]) -> FetchResponseBody:
    return FetchResponseBody(
        topics=[
            FetchResponseTopic(
                "orders",
                [
                    FetchResponsePartition(index, 0, 100 + index, 100 + index, index, payload)
                    for index, payload in enumerate(records)
                ],
            ),
            FetchResponseTopic(
                "missing",
                [
                    FetchResponsePartition(0, 3, -1, -1, -1, None, None, 2),
                    FetchResponsePartition(1, 1, 50, 50, 10, b"", [(5, 40), (6, 41)], -1),
                ],
            ),
        ],
        throttle_time_ms=3,
        error_code=0,
        session_id=0,
    )


SMALL_RECORDS = [bytes(range(61)), b"", b"\x00" * 1000]


@pytest.mark.parametrize("api_version", FETCH_VERSIONS)
def test_fetch_response_matches_kio(api_version: int) -> None:
    body = with_topic_ids(api_version, fetch_body(SMALL_RECORDS))
    expected = kio_frame(42, kio_fetch(api_version, body))
    assert encode_fetch_response(api_version, 42, body) == expected
    assert encode_response(1, api_version, 42, body) == expected
    # Small records are copied: the whole response is one chunk.
    assert len(encode_fetch_response_chunks(api_version, 42, body)) == 1


@pytest.mark.parametrize("api_version", FETCH_VERSIONS)
def test_fetch_response_with_top_level_error_and_session(api_version: int) -> None:
    body = FetchResponseBody([], throttle_time_ms=1000, error_code=35, session_id=99)
    assert encode_fetch_response(api_version, 1, body) == kio_frame(1, kio_fetch(api_version, body))


@pytest.mark.parametrize("api_version", FETCH_VERSIONS)
def test_large_records_are_passed_by_reference(api_version: int) -> None:
    large = bytes(range(256)) * (FETCH_RECORDS_COPY_BYTES_MAX // 256 + 1)
    view = memoryview(bytes(range(256)) * 1024)  # 256 KiB, given as a view
    at_limit = b"L" * FETCH_RECORDS_COPY_BYTES_MAX
    body = with_topic_ids(api_version, fetch_body([large, b"small", view, at_limit, large]))
    chunks = encode_fetch_response_chunks(api_version, 5, body)
    assert b"".join(chunks) == kio_frame(5, kio_fetch(api_version, body))
    referenced = [chunk for chunk in chunks if chunk is large or chunk is view]
    assert len(referenced) == 3
    assert not any(chunk is at_limit for chunk in chunks)
    assert encode_response(1, api_version, 5, body) == b"".join(chunks)


def one_partition_fetch(records: bytes | memoryview) -> FetchResponseBody:
    partition = FetchResponsePartition(0, 0, 1, 1, 0, records)
    return FetchResponseBody([FetchResponseTopic("t", [partition])])


def test_large_records_at_the_end_leave_no_empty_chunk() -> None:
    large = b"x" * (FETCH_RECORDS_COPY_BYTES_MAX + 1)
    body = FetchResponseBody(
        [FetchResponseTopic("t", [FetchResponsePartition(0, 0, 1, 1, 0, large)])]
    )
    chunks = encode_fetch_response_chunks(11, 5, body)
    assert len(chunks) == 2
    assert chunks[1] is large
    assert b"".join(chunks) == kio_frame(5, kio_fetch(11, body))


def test_memoryview_records_count_bytes_not_items() -> None:
    records = memoryview(bytes(range(64))).cast("I")
    body = FetchResponseBody(
        [FetchResponseTopic("t", [FetchResponsePartition(0, 0, 1, 1, 0, records)])]
    )
    assert encode_fetch_response(11, 1, body) == kio_frame(1, kio_fetch(11, body))


def test_fast_encoders_refuse_other_versions_and_apis() -> None:
    with pytest.raises(ValueError, match="Produce response v13 has no fast encoder"):
        encode_produce_response(13, 1, PRODUCE_BODY)
    with pytest.raises(ValueError, match="Fetch response v3 has no fast encoder"):
        encode_fetch_response(3, 1, fetch_body([]))
    with pytest.raises(ValueError, match="cannot answer Fetch v4"):
        encode_response(1, 4, 1, PRODUCE_BODY)
    with pytest.raises(ValueError, match="cannot answer Produce v7"):
        encode_response(0, 7, 1, fetch_body([]))


produce_partitions = st.builds(
    ProduceResponsePartition,
    partition_index=INT32,
    error_code=ERROR_CODES,
    base_offset=INT64,
    log_append_time_ms=st.one_of(st.just(-1), st.integers(0, 4_102_444_800_000)),
    log_start_offset=INT64,
    error_message=st.one_of(st.none(), st.text(max_size=30)),
)
topic_names = st.text(max_size=20)
produce_bodies = st.builds(
    ProduceResponseBody,
    topics=st.lists(
        st.builds(
            ProduceResponseTopic,
            name=topic_names,
            partitions=st.lists(produce_partitions, max_size=4),
        ),
        max_size=3,
    ),
    throttle_time_ms=st.integers(0, 2**31 - 1),
)
fetch_partitions = st.builds(
    FetchResponsePartition,
    partition_index=INT32,
    error_code=ERROR_CODES,
    high_watermark=INT64,
    last_stable_offset=INT64,
    log_start_offset=INT64,
    records=st.one_of(st.none(), st.binary(max_size=200)),
    aborted_transactions=st.one_of(st.none(), st.lists(st.tuples(INT64, INT64), max_size=3)),
    preferred_read_replica=INT32,
)
fetch_bodies = st.builds(
    FetchResponseBody,
    topics=st.lists(
        st.builds(
            FetchResponseTopic, name=topic_names, partitions=st.lists(fetch_partitions, max_size=4)
        ),
        max_size=3,
    ),
    throttle_time_ms=st.integers(0, 2**31 - 1),
    error_code=ERROR_CODES,
    session_id=INT32,
)


@settings(max_examples=150, deadline=None)
@given(api_version=st.sampled_from(PRODUCE_VERSIONS), correlation_id=INT32, body=produce_bodies)
def test_any_produce_response_matches_kio(
    api_version: int, correlation_id: int, body: ProduceResponseBody
) -> None:
    expected = kio_frame(correlation_id, kio_produce(api_version, body))
    assert encode_produce_response(api_version, correlation_id, body) == expected


@settings(max_examples=150, deadline=None)
@given(api_version=st.sampled_from(FETCH_VERSIONS), correlation_id=INT32, body=fetch_bodies)
def test_any_fetch_response_matches_kio(
    api_version: int, correlation_id: int, body: FetchResponseBody
) -> None:
    body = with_topic_ids(api_version, body)
    expected = kio_frame(correlation_id, kio_fetch(api_version, body))
    assert encode_fetch_response(api_version, correlation_id, body) == expected


LARGE_RECORDS = b"R" * (FETCH_RECORDS_COPY_BYTES_MAX + 1)


@pytest.mark.parametrize("api_version", FETCH_VERSIONS)
@pytest.mark.parametrize("records", [None, b"", b"batch", LARGE_RECORDS])
@pytest.mark.parametrize("aborted_transactions", [None, (), [(1, 2)]])
def test_one_partition_shapes_match_kio(
    api_version: int, records: bytes | None, aborted_transactions: Any
) -> None:
    # One topic of one partition has its own fast path; compare it in every shape.
    partition = FetchResponsePartition(3, 1, 9, 8, 7, records, aborted_transactions, 2)
    body = with_topic_ids(
        api_version, FetchResponseBody([FetchResponseTopic("t", [partition])], 5, 0, 6)
    )
    expected = kio_frame(-1, kio_fetch(api_version, body))
    chunks = encode_fetch_response_chunks(api_version, -1, body)
    assert b"".join(chunks) == expected
    assert encode_fetch_response(api_version, -1, body) == expected
    # Large records are passed on by reference (flexible versions end with tags after them).
    assert any(chunk is LARGE_RECORDS for chunk in chunks) == (records is LARGE_RECORDS)


@pytest.mark.parametrize("api_version", PRODUCE_VERSIONS)
@pytest.mark.parametrize("name", ["", "t", "ünïcode-topic"])
def test_one_partition_produce_matches_kio(api_version: int, name: str) -> None:
    body = ProduceResponseBody(
        [ProduceResponseTopic(name, [ProduceResponsePartition(2, 6, 11, 1_700_000_000_000, 4)])],
        throttle_time_ms=1,
    )
    expected = kio_frame(3, kio_produce(api_version, body))
    assert encode_produce_response(api_version, 3, body) == expected


# --- response_object: the same answers, not encoded (the client's in-process transport) ---


def decoded(api_key: int, api_version: int, body: Any) -> Any:
    """What a client decodes from the bytes the server writes for ``body``."""
    frame = encode_response(api_key, api_version, 1, body)
    return decode_response(api_key, api_version, frame[4:])


@settings(max_examples=150, deadline=None)
@given(api_version=st.sampled_from(PRODUCE_VERSIONS), body=produce_bodies)
def test_any_produce_response_object_is_what_a_client_decodes(
    api_version: int, body: ProduceResponseBody
) -> None:
    assert response_object(0, api_version, body) == decoded(0, api_version, body)


@settings(max_examples=150, deadline=None)
@given(api_version=st.sampled_from(FETCH_VERSIONS), body=fetch_bodies)
def test_any_fetch_response_object_is_what_a_client_decodes(
    api_version: int, body: FetchResponseBody
) -> None:
    body = with_topic_ids(api_version, body)
    assert response_object(1, api_version, body) == decoded(1, api_version, body)


@pytest.mark.parametrize("api_version", [13, 17])
def test_fetch_response_object_of_an_unknown_topic_id_says_none(api_version: int) -> None:
    # The zero id (an id no topic has) is read as None by kio, so it is None here too.
    partition = FetchResponsePartition(0, 100, -1, -1, -1, memoryview(b"\x00\x01"))
    body = FetchResponseBody([FetchResponseTopic(bytes(16), [partition])])
    answer = response_object(1, api_version, body)
    assert answer == decoded(1, api_version, body)
    assert answer.responses[0].topic_id is None
    assert type(answer.responses[0].partitions[0].records) is bytes


@pytest.mark.parametrize("api_version", [1, 9, 12])
def test_kio_and_encoded_response_objects_are_what_a_client_decodes(api_version: int) -> None:
    schema = importlib.import_module(f"kio.schema.metadata.v{api_version}.response")
    topic = build(
        schema.MetadataResponseTopic,
        error_code=ErrorCode.unknown_topic_or_partition,
        name="gone",
        topic_id=uuid.UUID(int=0),
        is_internal=False,
        partitions=(),
        topic_authorized_operations=-(2**31),
    )
    response = build(
        schema.MetadataResponse,
        throttle_time=milliseconds(0),
        brokers=(build(schema.MetadataResponseBroker, node_id=0, host="h", port=1, rack=None),),
        cluster_id="c",
        controller_id=0,
        topics=(topic,),
        cluster_authorized_operations=-(2**31),
    )
    expected = decoded(3, api_version, response)
    assert response_object(3, api_version, response) == expected
    assert response_object(3, api_version, encode_response_body(response)) == expected
    if api_version >= 10:
        assert expected.topics[0].topic_id is None
    with pytest.raises(ValueError, match="cannot answer"):
        response_object(3, 4 if api_version != 4 else 5, response)
    with pytest.raises(ValueError, match="cannot answer"):
        response_object(1, 12, PRODUCE_BODY)

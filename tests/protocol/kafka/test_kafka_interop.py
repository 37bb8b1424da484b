"""Cross-check with kafka-python's independent protocol code, both directions."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import struct
import uuid
import warnings
from typing import Any

import pytest

with warnings.catch_warnings():
    # kafka-python 3 loads its JSON schemas with the deprecated importlib.resources.read_text.
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        from kafka.protocol.consumer.fetch import FetchRequest, FetchResponse
        from kafka.protocol.consumer.group import JoinGroupRequest
        from kafka.protocol.metadata.api_versions import ApiVersionsRequest, ApiVersionsResponse
        from kafka.protocol.metadata.metadata import MetadataRequest, MetadataResponse
        from kafka.protocol.producer.produce import ProduceRequest, ProduceResponse
    except ImportError:
        pytest.skip("needs kafka-python 3 (its protocol classes)", allow_module_level=True)

from kafka_codec_support import Variant, example_response

from trioring.protocol.kafka import (
    ADVERTISED_VERSIONS,
    SUPPORTED_VERSIONS,
    ApiKey,
    FetchResponseBody,
    FetchResponsePartition,
    FetchResponseTopic,
    FrameDecoder,
    ProduceResponseBody,
    ProduceResponsePartition,
    ProduceResponseTopic,
    UnsupportedVersionError,
    decode_request,
    encode_api_versions_response,
    encode_response,
)
from trioring.protocol.records import Record, build_batch

BATCH = build_batch(
    [Record(key=b"k", value=b"v" * 100), Record(value=b"second")], now_ms=1_763_726_400_000
)


def normalize(value: Any) -> Any:
    """kio values in kafka-python's to_dict() shape: durations become ``<name>_ms`` ints."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        result = {}
        for field in dataclasses.fields(value):
            item = getattr(value, field.name)
            name = field.name
            if isinstance(item, datetime.timedelta):
                name += "_ms"
            result[name] = normalize(item)
        return result
    if isinstance(value, datetime.timedelta):
        return round(value / datetime.timedelta(milliseconds=1))
    if isinstance(value, tuple):
        return [normalize(item) for item in value]
    if isinstance(value, enum.IntEnum):
        return int(value)
    return value


#: Fields kafka-python names otherwise than Kafka's message definitions (and kio).
KAFKA_PYTHON_NAMES = {
    "topic_authorized_operations": "authorized_operations",
    "cluster_authorized_operations": "authorized_operations",
}


def assert_same(ours: Any, theirs: Any, path: str = "") -> None:
    """Every field kio has for this version equals kafka-python's (which lists all versions')."""
    if isinstance(ours, dict):
        if theirs is None:
            # A tagged struct kafka-python did not send: kio fills in its defaults.
            assert all(value in (-1, None, 0, "", []) for value in ours.values()), (path, ours)
            return
        for name, value in ours.items():
            item = value
            their_name = KAFKA_PYTHON_NAMES.get(name, name)
            assert their_name in theirs, f"{path}.{name} missing from kafka-python's message"
            if name.endswith("authorized_operations") and not name.startswith("include"):
                # kafka-python gives the bit field as a set of operation codes.
                item = None if item == -(2**31) else {b for b in range(32) if item >> b & 1}
            assert_same(item, theirs[their_name], f"{path}.{name}")
    elif isinstance(ours, list):
        assert len(ours) == len(theirs), path
        for index, (mine, other) in enumerate(zip(ours, theirs, strict=True)):
            assert_same(mine, other, f"{path}[{index}]")
    else:
        assert ours == theirs, f"{path}: {ours!r} != {theirs!r}"


def decode_framed(message: Any, correlation_id: int = 11, client_id: str = "kafka-python") -> Any:
    message.with_header(correlation_id=correlation_id, client_id=client_id)
    decoder = FrameDecoder()
    decoder.feed(bytes(message.encode(header=True, framed=True)))
    frame = decoder.next_frame()
    assert frame is not None
    assert decoder.next_frame() is None
    request = decode_request(frame)
    assert request.error is None, request.error
    assert request.header.correlation_id == correlation_id
    assert request.header.client_id == client_id
    assert (request.header.api_key, request.header.api_version) == (
        message.API_KEY,
        message.API_VERSION,
    )
    assert_same(normalize(request.body), message.to_dict(json=False))
    return request.body


def versions(api_key: int) -> list[int]:
    low, high = SUPPORTED_VERSIONS[api_key]
    return list(range(low, high + 1))


@pytest.mark.parametrize("api_version", versions(ApiKey.PRODUCE))
@pytest.mark.parametrize("transactional_id", [None, "tx-é"])
def test_produce_request(api_version: int, transactional_id: str | None) -> None:
    topic = ProduceRequest.TopicProduceData
    partition = topic.PartitionProduceData
    message = ProduceRequest[api_version](
        transactional_id=transactional_id,
        acks=-1,
        timeout_ms=1500,
        topic_data=[
            topic(name="orders", partition_data=[partition(index=0, records=BATCH)]),
            topic(
                name="logs",
                partition_data=[
                    partition(index=3, records=BATCH),
                    partition(index=4, records=None),
                ],
            ),
        ],
    )
    body = decode_framed(message)
    assert body.topic_data[0].partition_data[0].records == BATCH


@pytest.mark.parametrize("api_version", versions(ApiKey.FETCH))
def test_fetch_request(api_version: int) -> None:
    topic = FetchRequest.FetchTopic
    partition = topic.FetchPartition
    message = FetchRequest[api_version](
        replica_id=-1,
        max_wait_ms=500,
        min_bytes=1,
        max_bytes=52_428_800,
        isolation_level=1,
        session_id=0,
        session_epoch=-1,
        topics=[
            topic(
                topic="orders",
                partitions=[
                    partition(
                        partition=index,
                        current_leader_epoch=-1,
                        fetch_offset=42 + index,
                        log_start_offset=-1,
                        partition_max_bytes=1_048_576,
                    )
                    for index in range(3)
                ],
            )
        ],
        forgotten_topics_data=[],
        rack_id="rack-a",
    )
    decode_framed(message)


@pytest.mark.parametrize(
    ("api_version", "topics"),
    [
        (api_version, topics)
        for api_version in versions(ApiKey.METADATA)
        for topics in ([], ["orders", "logs"], None)
        # Null ("all topics") exists from v1; v0 says it with an empty list.
        if topics is not None or api_version >= 1
    ],
)
def test_metadata_request(api_version: int, topics: list[str] | None) -> None:
    message = MetadataRequest[api_version](
        topics=None
        if topics is None
        else [MetadataRequest.MetadataRequestTopic(name=name) for name in topics],
        allow_auto_topic_creation=False,
    )
    decode_framed(message)


@pytest.mark.parametrize("api_version", versions(ApiKey.API_VERSIONS))
def test_api_versions_request(api_version: int) -> None:
    message = ApiVersionsRequest[api_version](
        client_software_name="kafka-python", client_software_version="3.0.12"
    )
    decode_framed(message, correlation_id=1)


def test_api_versions_v5_gets_the_unsupported_version_answer_kafka_python_reads() -> None:
    message = ApiVersionsRequest[4](
        client_software_name="kafka-python", client_software_version="3"
    )
    message.with_header(correlation_id=77, client_id="kafka-python")
    # A future client: kafka-python's v4 request relabelled v5.
    encoded = bytearray(message.encode(header=True))
    struct.pack_into(">h", encoded, 2, 5)
    request = decode_request(bytes(encoded))
    assert isinstance(request.error, UnsupportedVersionError)
    header = request.header
    answer = encode_api_versions_response(header.correlation_id, header.api_version)
    response = ApiVersionsResponse.decode(answer, version=0, header=True, framed=True)
    assert response.header.correlation_id == 77
    assert response.error_code == 35
    ranges = {item.api_key: (item.min_version, item.max_version) for item in response.api_keys}
    assert ranges == dict(ADVERTISED_VERSIONS)


@pytest.mark.parametrize("api_version", versions(ApiKey.API_VERSIONS))
def test_api_versions_response_kafka_python_reads(api_version: int) -> None:
    answer = encode_api_versions_response(5, api_version, throttle_time_ms=12)
    response = ApiVersionsResponse.decode(answer, version=api_version, header=True, framed=True)
    assert response.header.correlation_id == 5
    assert response.error_code == 0
    ranges = {item.api_key: (item.min_version, item.max_version) for item in response.api_keys}
    assert ranges == dict(ADVERTISED_VERSIONS)
    if api_version >= 1:
        assert response.throttle_time_ms == 12


@pytest.mark.parametrize("api_version", versions(ApiKey.JOIN_GROUP))
def test_join_group_request(api_version: int) -> None:
    protocol = JoinGroupRequest.JoinGroupRequestProtocol
    message = JoinGroupRequest[api_version](
        group_id="group-1",
        session_timeout_ms=10_000,
        rebalance_timeout_ms=300_000,
        member_id="",
        group_instance_id="static-1" if api_version >= 5 else None,
        protocol_type="consumer",
        protocols=[
            protocol(name="range", metadata=b"\x00\x01subscription"),
            protocol(name="roundrobin", metadata=b""),
        ],
    )
    decode_framed(message)


@pytest.mark.parametrize("api_version", versions(ApiKey.PRODUCE))
def test_produce_response_kafka_python_reads(api_version: int) -> None:
    body = ProduceResponseBody(
        [
            ProduceResponseTopic(
                "orders",
                [ProduceResponsePartition(0, 0, 100, -1, 5), ProduceResponsePartition(1, 6, -1)],
            )
        ],
        throttle_time_ms=9,
    )
    answer = encode_response(ApiKey.PRODUCE, api_version, 21, body)
    response = ProduceResponse.decode(answer, version=api_version, header=True, framed=True)
    assert response.header.correlation_id == 21
    assert response.throttle_time_ms == 9
    (topic,) = response.responses
    assert topic.name == "orders"
    first, second = topic.partition_responses
    assert (first.index, first.error_code, first.base_offset, first.log_append_time_ms) == (
        0,
        0,
        100,
        -1,
    )
    assert (second.index, second.error_code, second.base_offset) == (1, 6, -1)
    if api_version >= 5:
        assert (first.log_start_offset, second.log_start_offset) == (5, -1)


ORDERS_ID = uuid.UUID("6f726465-7273-4000-8000-000000000001")


@pytest.mark.parametrize("api_version", versions(ApiKey.FETCH))
def test_fetch_response_kafka_python_reads(api_version: int) -> None:
    large = BATCH * 1000  # over the copy threshold: passed as its own chunk
    body = FetchResponseBody(
        [
            FetchResponseTopic(
                "orders",
                [
                    FetchResponsePartition(0, 0, 10, 10, 0, BATCH),
                    FetchResponsePartition(1, 0, 2000, 2000, 0, large),
                    FetchResponsePartition(2, 1, 5, 5, 0, b"", [(7, 3)]),
                ],
            )
        ],
        throttle_time_ms=4,
    )
    if api_version >= 13:  # topics by id
        body = body._replace(topics=[body.topics[0]._replace(name=ORDERS_ID.bytes)])
    answer = encode_response(ApiKey.FETCH, api_version, 33, body)
    response = FetchResponse.decode(answer, version=api_version, header=True, framed=True)
    assert response.header.correlation_id == 33
    assert response.throttle_time_ms == 4
    (topic,) = response.responses
    if api_version >= 13:
        assert topic.topic_id == ORDERS_ID
    else:
        assert topic.topic == "orders"
    partitions = topic.partitions
    assert [p.partition_index for p in partitions] == [0, 1, 2]
    assert [p.high_watermark for p in partitions] == [10, 2000, 5]
    assert partitions[2].error_code == 1
    assert [(a.producer_id, a.first_offset) for a in partitions[2].aborted_transactions] == [(7, 3)]
    records = [bytes(p.records) if p.records is not None else None for p in partitions]
    assert records[:2] == [BATCH, large]


@pytest.mark.parametrize("api_version", versions(ApiKey.METADATA))
def test_metadata_response_kafka_python_reads(api_version: int) -> None:
    ours = example_response(ApiKey.METADATA, api_version, Variant.FULL)
    answer = encode_response(ApiKey.METADATA, api_version, 8, ours)
    response = MetadataResponse.decode(answer, version=api_version, header=True, framed=True)
    assert response.header.correlation_id == 8
    assert_same(normalize(ours), response.to_dict(json=False))

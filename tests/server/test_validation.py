"""Each row of docs/protocol.md's "Behaviour on bad input" table, checked over the wire.

A well-formed request with a value Kafka refuses gets Kafka's error code for
that entry (or the code we document where we differ), and the rest of the
request is served.
"""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio
from kio.schema.api_versions.v3.request import ApiVersionsRequest
from kio.schema.create_topics.v3 import request as create_topics
from kio.schema.delete_topics.v2.request import DeleteTopicsRequest
from kio.schema.describe_configs.v1.request import DescribeConfigsRequest, DescribeConfigsResource
from kio.schema.errors import ErrorCode
from kio.schema.fetch.v11 import request as fetch
from kio.schema.find_coordinator.v1.request import FindCoordinatorRequest
from kio.schema.join_group.v5.request import JoinGroupRequest, JoinGroupRequestProtocol
from kio.schema.list_offsets.v2 import request as list_offsets
from kio.schema.metadata.v4.request import MetadataRequest, MetadataRequestTopic
from kio.schema.offset_commit.v3 import request as offset_commit
from kio.schema.offset_fetch.v3.request import OffsetFetchRequest
from kio.schema.produce.v7 import request as produce
from kio.static.primitive import i8, i16, i32, i32Timedelta, i64, i64Timedelta
from server_support import KafkaWire, running_server

import trioring
from trioring import Record
from trioring.protocol.kafka import ApiKey
from trioring.protocol.records import build_batch

TOPIC = "validated"


def ms(milliseconds: int) -> Any:
    return i32Timedelta.parse(datetime.timedelta(milliseconds=milliseconds))


@pytest.fixture
async def wire(tmp_path: Path) -> AsyncIterator[KafkaWire]:
    async with running_server(tmp_path / "data") as (broker, server):
        await broker.create_topic(TOPIC, partitions=2)
        await broker.produce(TOPIC, 0, [Record(value=b"one")])
        connection = await KafkaWire.connect(server.port)
        yield connection
        await connection.aclose()


def codes(entries: Any, field: str = "partitions") -> list[int]:
    return [int(p.error_code) for entry in entries for p in getattr(entry, field)]


# --- Fetch ------------------------------------------------------------------------------------


async def test_fetch_leader_epochs_and_negative_limits(wire: KafkaWire) -> None:
    def partition(index: int, epoch: int) -> Any:
        return fetch.FetchPartition(
            partition=i32(index),
            current_leader_epoch=i32(epoch),
            fetch_offset=i64(0),
            partition_max_bytes=i32(1024),
        )

    request = fetch.FetchRequest(
        max_wait=ms(-5),
        min_bytes=i32(-1),
        max_bytes=i32(-1),
        topics=(
            fetch.FetchTopic(
                topic=TOPIC,  # type: ignore[arg-type]
                partitions=(partition(0, 3), partition(0, -1), partition(1, 0)),
            ),
        ),
        forgotten_topics_data=(),
        rack_id="",
    )
    with trio.fail_after(5):  # negative waits answer at once
        response = await wire.request(ApiKey.FETCH, 11, request)
    assert sorted(codes(response.responses)) == [0, 0, ErrorCode.unknown_leader_epoch]


# --- Produce ----------------------------------------------------------------------------------


def produce_request(acks: int, *partitions: tuple[int, bytes | None]) -> Any:
    return produce.ProduceRequest(
        transactional_id=None,
        acks=i16(acks),
        timeout=ms(5000),
        topic_data=(
            produce.TopicProduceData(
                name=TOPIC,  # type: ignore[arg-type]
                partition_data=tuple(
                    produce.PartitionProduceData(index=i32(index), records=records)  # type: ignore[arg-type]
                    for index, records in partitions
                ),
            ),
        ),
    )


async def test_produce_bad_acks_duplicates_and_null_records(wire: KafkaWire) -> None:
    batch = build_batch([Record(value=b"v")])
    response = await wire.request(ApiKey.PRODUCE, 7, produce_request(5, (0, batch)))
    assert codes(response.responses, "partition_responses") == [ErrorCode.invalid_required_acks]
    response = await wire.request(
        ApiKey.PRODUCE, 7, produce_request(1, (0, batch), (1, batch), (0, batch), (1, None))
    )
    results = [
        (int(p.index), int(p.error_code)) for t in response.responses for p in t.partition_responses
    ]
    assert results == [
        (0, ErrorCode.invalid_request),
        (1, ErrorCode.invalid_request),
        (0, ErrorCode.invalid_request),
        (1, ErrorCode.invalid_request),
    ]
    response = await wire.request(ApiKey.PRODUCE, 7, produce_request(1, (1, None)))
    assert codes(response.responses, "partition_responses") == [ErrorCode.invalid_request]
    # Nothing was appended by any of these: partition 0 still ends at 1.
    response = await wire.request(ApiKey.PRODUCE, 7, produce_request(1, (0, batch)))
    assert [int(p.base_offset) for p in response.responses[0].partition_responses] == [1]


# --- ListOffsets ------------------------------------------------------------------------------


async def test_list_offsets_duplicates_special_timestamps_and_isolation(wire: KafkaWire) -> None:
    def request(isolation: int, *entries: tuple[int, int]) -> Any:
        return list_offsets.ListOffsetsRequest(
            replica_id=-1,  # type: ignore[arg-type]
            isolation_level=i8(isolation),
            topics=(
                list_offsets.ListOffsetsTopic(
                    name=TOPIC,  # type: ignore[arg-type]
                    partitions=tuple(
                        list_offsets.ListOffsetsPartition(
                            partition_index=i32(index), timestamp=i64(timestamp)
                        )
                        for index, timestamp in entries
                    ),
                ),
            ),
        )

    response = await wire.request(ApiKey.LIST_OFFSETS, 2, request(0, (0, -1), (1, -3), (0, -2)))
    assert codes(response.topics) == [
        ErrorCode.invalid_request,
        ErrorCode.unsupported_version,
        ErrorCode.invalid_request,
    ]
    response = await wire.request(ApiKey.LIST_OFFSETS, 2, request(0, (0, -1)))
    assert codes(response.topics) == [0] and response.topics[0].partitions[0].offset == 1
    response = await wire.request(ApiKey.LIST_OFFSETS, 2, request(9, (0, -1)))
    assert codes(response.topics) == [ErrorCode.invalid_request]


# --- Metadata, groups, coordinator ------------------------------------------------------------


@pytest.mark.parametrize("allow", [True, False])
async def test_metadata_names_no_topic_can_have(wire: KafkaWire, allow: bool) -> None:
    request = MetadataRequest(
        topics=tuple(MetadataRequestTopic(name=n) for n in ("a/b", "..", TOPIC, "missing-x")),  # type: ignore[arg-type]
        allow_auto_topic_creation=allow,
    )
    response = await wire.request(ApiKey.METADATA, 4, request)
    found = {topic.name: int(topic.error_code) for topic in response.topics}
    assert found == {
        "a/b": ErrorCode.invalid_topic_exception,
        "..": ErrorCode.invalid_topic_exception,
        TOPIC: 0,
        "missing-x": 0 if allow else ErrorCode.unknown_topic_or_partition,
    }


def commit_request(group: str, *entries: tuple[int, int, str]) -> Any:
    return offset_commit.OffsetCommitRequest(
        group_id=group,  # type: ignore[arg-type]
        generation_id_or_member_epoch=i32(-1),
        member_id="",
        retention_time=i64Timedelta.parse(datetime.timedelta(milliseconds=-1)),
        topics=(
            offset_commit.OffsetCommitRequestTopic(
                name=TOPIC,  # type: ignore[arg-type]
                partitions=tuple(
                    offset_commit.OffsetCommitRequestPartition(
                        partition_index=i32(index),
                        committed_offset=i64(offset),
                        committed_metadata=metadata,
                    )
                    for index, offset, metadata in entries
                ),
            ),
        ),
    )


async def test_offset_commit_and_fetch_validation(wire: KafkaWire) -> None:
    response = await wire.request(
        ApiKey.OFFSET_COMMIT, 3, commit_request("g", (0, 1, "x" * 4097), (1, -1, ""))
    )
    assert codes(response.topics) == [
        ErrorCode.offset_metadata_too_large,
        ErrorCode.invalid_request,
    ]
    response = await wire.request(ApiKey.OFFSET_COMMIT, 3, commit_request("g", (0, 1, "x" * 4096)))
    assert codes(response.topics) == [0]
    response = await wire.request(ApiKey.OFFSET_COMMIT, 3, commit_request("", (0, 1, "")))
    assert codes(response.topics) == [ErrorCode.invalid_group_id]
    response = await wire.request(
        ApiKey.OFFSET_FETCH,
        3,
        OffsetFetchRequest(group_id="", topics=None),  # type: ignore[arg-type]
    )
    assert int(response.error_code) == ErrorCode.invalid_group_id


async def test_join_group_validation_and_coordinator_key_types(wire: KafkaWire) -> None:
    def join(group: str, session_ms: int) -> Any:
        return JoinGroupRequest(
            group_id=group,  # type: ignore[arg-type]
            session_timeout=ms(session_ms),
            rebalance_timeout=ms(1000),
            member_id="",
            group_instance_id=None,
            protocol_type="consumer",
            protocols=(JoinGroupRequestProtocol(name="range", metadata=b""),),
        )

    response = await wire.request(ApiKey.JOIN_GROUP, 5, join("", 10_000))
    assert int(response.error_code) == ErrorCode.invalid_group_id
    response = await wire.request(ApiKey.JOIN_GROUP, 5, join("g", 1))
    assert int(response.error_code) == ErrorCode.invalid_session_timeout
    response = await wire.request(
        ApiKey.FIND_COORDINATOR, 1, FindCoordinatorRequest(key="g", key_type=i8(5))
    )
    assert int(response.error_code) == ErrorCode.invalid_request
    response = await wire.request(
        ApiKey.FIND_COORDINATOR, 1, FindCoordinatorRequest(key="t", key_type=i8(1))
    )
    assert int(response.error_code) == ErrorCode.coordinator_not_available


# --- admin ------------------------------------------------------------------------------------


def creatable(
    name: str,
    partitions: int = 1,
    factor: int = 1,
    assignments: tuple[tuple[int, tuple[int, ...]], ...] = (),
    configs: tuple[tuple[str, str | None], ...] = (),
) -> Any:
    return create_topics.CreatableTopic(
        name=name,  # type: ignore[arg-type]
        num_partitions=i32(partitions),
        replication_factor=i16(factor),
        assignments=tuple(
            create_topics.CreatableReplicaAssignment(
                partition_index=i32(index),
                broker_ids=tuple(i32(b) for b in brokers),  # type: ignore[misc]
            )
            for index, brokers in assignments
        ),
        configs=tuple(
            create_topics.CreatableTopicConfig(name=key, value=value) for key, value in configs
        ),
    )


async def create(wire: KafkaWire, *topics: Any, validate_only: bool = False) -> list[int]:
    request = create_topics.CreateTopicsRequest(
        topics=topics, timeout=ms(5000), validate_only=validate_only
    )
    response = await wire.request(ApiKey.CREATE_TOPICS, 3, request)
    return [int(result.error_code) for result in response.topics]


async def test_create_topics_validation(wire: KafkaWire) -> None:
    assert await create(wire, creatable("twice"), creatable("twice")) == [
        ErrorCode.invalid_request,
        ErrorCode.invalid_request,
    ]
    for factor in (0, -2, 3):
        assert await create(wire, creatable("f", factor=factor)) == [
            ErrorCode.invalid_replication_factor
        ]
    for partitions in (0, -2, 10_001, 2**31 - 1):
        assert await create(wire, creatable("p", partitions=partitions)) == [
            ErrorCode.invalid_partitions
        ]
    both = creatable("a", partitions=2, assignments=((0, (0,)), (1, (0,))))
    assert await create(wire, both) == [ErrorCode.invalid_request]
    for assignments in (((0, (1,)),), ((1, (0,)),), ((0, (0, 0)),), ((0, (0,)), (0, (0,)))):
        assert await create(
            wire, creatable("a", partitions=-1, factor=-1, assignments=assignments)
        ) == [ErrorCode.invalid_replica_assignment], assignments
    assigned = creatable("assigned", partitions=-1, factor=-1, assignments=((1, (0,)), (0, (0,))))
    assert await create(wire, assigned) == [0]
    for configs in (
        (("retention.ms", None),),
        (("no.such.config", "1"),),
        (("segment.bytes", "5"),),
        (("segment.bytes", "lots"),),
        (("retention.ms", "-5"),),
        (("cleanup.policy", "compact"),),
    ):
        assert await create(wire, creatable("c", configs=configs)) == [ErrorCode.invalid_config], (
            configs
        )
    assert await create(wire, creatable(TOPIC), validate_only=True) == [
        ErrorCode.topic_already_exists
    ]
    assert await create(wire, creatable("a/b"), validate_only=True) == [
        ErrorCode.invalid_topic_exception
    ]
    assert await create(wire, creatable("fine", partitions=3), validate_only=True) == [0]
    metadata = await wire.request(
        ApiKey.METADATA, 4, MetadataRequest(topics=None, allow_auto_topic_creation=False)
    )
    names = {topic.name: len(topic.partitions) for topic in metadata.topics}
    assert names == {TOPIC: 2, "assigned": 2}, names


async def test_delete_topics_duplicates(wire: KafkaWire) -> None:
    response = await wire.request(
        ApiKey.DELETE_TOPICS,
        2,
        DeleteTopicsRequest(topic_names=(TOPIC, TOPIC, "missing"), timeout=ms(5000)),  # type: ignore[arg-type]
    )
    assert [int(r.error_code) for r in response.responses] == [
        ErrorCode.invalid_request,
        ErrorCode.invalid_request,
        ErrorCode.unknown_topic_or_partition,
    ]


async def test_describe_configs_validation(wire: KafkaWire) -> None:
    def resource(kind: int, name: str) -> Any:
        return DescribeConfigsResource(
            resource_type=i8(kind), resource_name=name, configuration_keys=None
        )

    async def describe(*resources: Any) -> list[int]:
        response = await wire.request(
            ApiKey.DESCRIBE_CONFIGS, 1, DescribeConfigsRequest(resources=resources)
        )
        return [int(result.error_code) for result in response.results]

    assert await describe(resource(2, TOPIC), resource(3, "x")) == [ErrorCode.invalid_request] * 2
    assert await describe(
        resource(4, "7"), resource(4, "0"), resource(4, ""), resource(2, "a/b"), resource(2, "gone")
    ) == [
        ErrorCode.invalid_request,
        0,
        0,
        ErrorCode.invalid_topic_exception,
        ErrorCode.unknown_topic_or_partition,
    ]


async def test_api_versions_v3_client_software_is_checked(wire: KafkaWire) -> None:
    good = await wire.request(
        ApiKey.API_VERSIONS,
        3,
        ApiVersionsRequest(client_software_name="librdkafka", client_software_version="2.6.0"),
    )
    assert int(good.error_code) == 0 and good.api_keys
    bad = await wire.request(
        ApiKey.API_VERSIONS,
        3,
        ApiVersionsRequest(client_software_name="-bad name", client_software_version="1"),
    )
    assert int(bad.error_code) == ErrorCode.invalid_request and bad.api_keys == ()


async def test_a_pending_join_answers_not_coordinator_when_the_server_stops(
    tmp_path: Path,
) -> None:
    config = trioring.BrokerConfig(
        data_dir=str(tmp_path / "data"),
        groups=trioring.config.GroupConfig(initial_rebalance_delay_ms=60_000),
    )
    async with running_server(tmp_path / "data", broker_config=config) as (_broker, server):
        wire = await KafkaWire.connect(server.port)
        join = JoinGroupRequest(
            group_id="slow",  # type: ignore[arg-type]
            session_timeout=ms(10_000),
            rebalance_timeout=ms(60_000),
            member_id="",
            group_instance_id=None,
            protocol_type="consumer",
            protocols=(JoinGroupRequestProtocol(name="range", metadata=b""),),
        )
        async with trio.open_nursery() as nursery:
            answers: list[Any] = []

            async def join_group() -> None:
                # v3: no MEMBER_ID_REQUIRED round trip; the join waits for the delay.
                answers.append(await wire.request(ApiKey.JOIN_GROUP, 3, join))

            nursery.start_soon(join_group)
            await trio.sleep(0.2)
            assert not answers, "the join waits for the rebalance delay"
            with trio.fail_after(2):
                await server.drain()
        assert int(answers[0].error_code) == ErrorCode.not_coordinator
        await wire.aclose()

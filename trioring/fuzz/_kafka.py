"""The Kafka requests the player sends: one function each, built for whichever
version the broker speaks, answering only the fields the player checks.

Sans policy: no retries, no checks; ``_play.py`` decides what an answer means.
"""

from __future__ import annotations

import datetime
from typing import Any

from kio.schema.errors import ErrorCode
from kio.static.primitive import i32Timedelta

from trioring.client._connection import BrokerConnection
from trioring.protocol.kafka import ApiKey, request_schema
from trioring.protocol.kafka._build import build, sibling
from trioring.protocol.kafka._client import encode_request
from trioring.protocol.records import Record, build_batch

#: Largest Fetch answer the player asks for, per partition and in all.
FETCH_BYTES_MAX = 1 << 20
#: What the misbehaving connections' Fetches ask for (never read).
STALLED_FETCH_BYTES = 64 << 20
_CLIENT_ID = "trioring-fuzz"
_REQUEST_TIMEOUT_MS = 10_000
EARLIEST, LATEST = -2, -1


def timeout(milliseconds: int) -> i32Timedelta:
    return i32Timedelta.parse(datetime.timedelta(milliseconds=milliseconds))


async def create_topic(connection: BrokerConnection, name: str, partitions: int) -> int:
    version = connection.version(ApiKey.CREATE_TOPICS)
    topic_class = sibling(request_schema(ApiKey.CREATE_TOPICS, version), "CreatableTopic")
    _, response = await connection.request(
        ApiKey.CREATE_TOPICS,
        topics=(
            build(
                topic_class,
                name=name,
                num_partitions=partitions,
                replication_factor=1,
                assignments=(),
                configs=(),
            ),
        ),
        timeout=timeout(_REQUEST_TIMEOUT_MS),
        validate_only=False,
    )
    return int(response.topics[0].error_code)


async def delete_topics(connection: BrokerConnection, names: tuple[str, ...]) -> int:
    """DeleteTopics; the first topic's error code."""
    _, response = await connection.request(
        ApiKey.DELETE_TOPICS, topic_names=names, topics=(), timeout=timeout(_REQUEST_TIMEOUT_MS)
    )
    return int(response.responses[0].error_code) if response.responses else ErrorCode.none


async def create_partitions(connection: BrokerConnection, name: str, total: int) -> int:
    version = connection.version(ApiKey.CREATE_PARTITIONS)
    topic_class = sibling(
        request_schema(ApiKey.CREATE_PARTITIONS, version), "CreatePartitionsTopic"
    )
    _, response = await connection.request(
        ApiKey.CREATE_PARTITIONS,
        topics=(build(topic_class, name=name, count=total, assignments=None),),
        timeout=timeout(_REQUEST_TIMEOUT_MS),
        validate_only=False,
    )
    return int(response.results[0].error_code)


async def init_producer_id(connection: BrokerConnection) -> tuple[int, int, int]:
    """(error, producer id, epoch) of a new idempotent producer."""
    _, response = await connection.request(
        ApiKey.INIT_PRODUCER_ID,
        transactional_id=None,
        transaction_timeout=timeout(60_000),
        producer_id=-1,
        producer_epoch=-1,
    )
    return int(response.error_code), int(response.producer_id), int(response.producer_epoch)


def _produce_fields(version: int, name: str, partition: int, acks: int, batch: bytes) -> Any:
    request_class = request_schema(ApiKey.PRODUCE, version)
    return {
        "transactional_id": None,
        "acks": acks,
        "timeout": timeout(_REQUEST_TIMEOUT_MS),
        "topic_data": (
            build(
                sibling(request_class, "TopicProduceData"),
                name=name,
                partition_data=(
                    build(
                        sibling(request_class, "PartitionProduceData"),
                        index=partition,
                        records=batch,
                    ),
                ),
            ),
        ),
    }


async def produce(
    connection: BrokerConnection, name: str, partition: int, acks: int, batch: bytes
) -> tuple[int, int]:
    """(error, base offset); acks=0 is sent without an answer: (NONE, -1)."""
    fields = _produce_fields(connection.version(ApiKey.PRODUCE), name, partition, acks, batch)
    if acks == 0:
        await connection.send_only(ApiKey.PRODUCE, **fields)
        return ErrorCode.none, -1
    _, response = await connection.request(ApiKey.PRODUCE, **fields)
    answer = response.responses[0].partition_responses[0]
    return int(answer.error_code), int(answer.base_offset)


def _fetch_fields(name: str, partition: int, offset: int, bytes_max: int, schema: Any) -> Any:
    return {
        "replica_id": -1,
        "max_wait": timeout(0),
        "min_bytes": 0,
        "max_bytes": bytes_max,
        "isolation_level": 0,
        "session_id": 0,
        "session_epoch": -1,
        "topics": (
            build(
                sibling(schema, "FetchTopic"),
                topic=name,
                partitions=(
                    build(
                        sibling(schema, "FetchPartition"),
                        partition=partition,
                        current_leader_epoch=-1,
                        fetch_offset=offset,
                        last_fetched_epoch=-1,
                        log_start_offset=-1,
                        partition_max_bytes=bytes_max,
                    ),
                ),
            ),
        ),
        "forgotten_topics_data": (),
        "rack_id": "",
    }


async def fetch(
    connection: BrokerConnection, name: str, partition: int, offset: int
) -> tuple[int, int, int, bytes]:
    """(error, high watermark, log start, record bytes) of one Fetch at ``offset``."""
    schema = request_schema(ApiKey.FETCH, connection.version(ApiKey.FETCH))
    _, response = await connection.request(
        ApiKey.FETCH, **_fetch_fields(name, partition, offset, FETCH_BYTES_MAX, schema)
    )
    code = int(getattr(response, "error_code", ErrorCode.none))
    if code != ErrorCode.none:
        return code, -1, -1, b""
    answer = response.responses[0].partitions[0]
    return (
        int(answer.error_code),
        int(answer.high_watermark),
        int(getattr(answer, "log_start_offset", -1)),
        bytes(answer.records or b""),
    )


async def list_offset(
    connection: BrokerConnection, name: str, partition: int, timestamp: int
) -> tuple[int, int]:
    """(error, offset) of ``timestamp`` (EARLIEST or LATEST)."""
    schema = request_schema(ApiKey.LIST_OFFSETS, connection.version(ApiKey.LIST_OFFSETS))
    _, response = await connection.request(
        ApiKey.LIST_OFFSETS,
        replica_id=-1,
        isolation_level=0,
        timeout_ms=_REQUEST_TIMEOUT_MS,
        topics=(
            build(
                sibling(schema, "ListOffsetsTopic"),
                name=name,
                partitions=(
                    build(
                        sibling(schema, "ListOffsetsPartition"),
                        partition_index=partition,
                        current_leader_epoch=-1,
                        timestamp=timestamp,
                    ),
                ),
            ),
        ),
    )
    answer = response.topics[0].partitions[0]
    return int(answer.error_code), int(answer.offset)


async def delete_records(
    connection: BrokerConnection, name: str, partition: int, offset: int
) -> tuple[int, int]:
    """(error, the new low watermark)."""
    schema = request_schema(ApiKey.DELETE_RECORDS, connection.version(ApiKey.DELETE_RECORDS))
    _, response = await connection.request(
        ApiKey.DELETE_RECORDS,
        topics=(
            build(
                sibling(schema, "DeleteRecordsTopic"),
                name=name,
                partitions=(
                    build(
                        sibling(schema, "DeleteRecordsPartition"),
                        partition_index=partition,
                        offset=offset,
                    ),
                ),
            ),
        ),
        timeout=timeout(_REQUEST_TIMEOUT_MS),
    )
    answer = response.topics[0].partitions[0]
    return int(answer.error_code), int(answer.low_watermark)


async def offset_commit(
    connection: BrokerConnection,
    group: str,
    member: tuple[str, int] | None,
    *,
    name: str,
    partition: int,
    offset: int,
) -> int:
    """OffsetCommit as ``member`` (member id, generation), or standalone (None)."""
    schema = request_schema(ApiKey.OFFSET_COMMIT, connection.version(ApiKey.OFFSET_COMMIT))
    member_id, generation = member if member is not None else ("", -1)
    _, response = await connection.request(
        ApiKey.OFFSET_COMMIT,
        group_id=group,
        generation_id_or_member_epoch=generation,
        generation_id=generation,
        member_id=member_id,
        group_instance_id=None,
        topics=(
            build(
                sibling(schema, "OffsetCommitRequestTopic"),
                name=name,
                partitions=(
                    build(
                        sibling(schema, "OffsetCommitRequestPartition"),
                        partition_index=partition,
                        committed_offset=offset,
                        committed_leader_epoch=-1,
                        committed_metadata="",
                    ),
                ),
            ),
        ),
    )
    return int(response.topics[0].partitions[0].error_code)


async def offset_fetch(
    connection: BrokerConnection, group: str, partitions: dict[str, list[int]]
) -> tuple[int, dict[tuple[str, int], tuple[int, int]]]:
    """(group error, {(topic, partition): (error, committed offset)})."""
    schema = request_schema(ApiKey.OFFSET_FETCH, connection.version(ApiKey.OFFSET_FETCH))
    _, response = await connection.request(
        ApiKey.OFFSET_FETCH,
        group_id=group,
        topics=tuple(
            build(
                sibling(schema, "OffsetFetchRequestTopic"),
                name=name,
                partition_indexes=tuple(indexes),
            )
            for name, indexes in partitions.items()
        ),
        require_stable=False,
    )
    answers = {
        (topic.name, int(p.partition_index)): (int(p.error_code), int(p.committed_offset))
        for topic in response.topics
        for p in topic.partitions
    }
    return int(getattr(response, "error_code", ErrorCode.none)), answers


async def join_group(
    connection: BrokerConnection,
    group: str,
    member_id: str,
    subscription: bytes,
    *,
    session_timeout_ms: int,
    rebalance_timeout_ms: int,
) -> Any:
    """JoinGroup with the range assignor; the kio response (error, member, generation, leader)."""
    schema = request_schema(ApiKey.JOIN_GROUP, connection.version(ApiKey.JOIN_GROUP))
    _, response = await connection.request(
        ApiKey.JOIN_GROUP,
        timeout_s=(rebalance_timeout_ms + _REQUEST_TIMEOUT_MS) / 1000,
        group_id=group,
        session_timeout=timeout(session_timeout_ms),
        rebalance_timeout=timeout(rebalance_timeout_ms),
        member_id=member_id,
        group_instance_id=None,
        protocol_type="consumer",
        protocols=(
            build(sibling(schema, "JoinGroupRequestProtocol"), name="range", metadata=subscription),
        ),
        reason=None,
    )
    return response


async def sync_group(
    connection: BrokerConnection,
    group: str,
    member_id: str,
    generation: int,
    *,
    assignments: dict[str, bytes],
    rebalance_timeout_ms: int,
) -> tuple[int, bytes]:
    """SyncGroup (the leader gives ``assignments``; followers give none): (error, this
    member's assignment)."""
    schema = request_schema(ApiKey.SYNC_GROUP, connection.version(ApiKey.SYNC_GROUP))
    _, answer = await connection.request(
        ApiKey.SYNC_GROUP,
        timeout_s=(rebalance_timeout_ms + _REQUEST_TIMEOUT_MS) / 1000,
        group_id=group,
        generation_id=generation,
        member_id=member_id,
        group_instance_id=None,
        protocol_type="consumer",
        protocol_name="range",
        assignments=tuple(
            build(sibling(schema, "SyncGroupRequestAssignment"), member_id=member, assignment=data)
            for member, data in assignments.items()
        ),
    )
    return int(answer.error_code), bytes(answer.assignment or b"")


async def leave_group(connection: BrokerConnection, group: str, member_id: str) -> tuple[int, int]:
    """(group error, the member's error: NONE when the version answers none per member)."""
    schema = request_schema(ApiKey.LEAVE_GROUP, connection.version(ApiKey.LEAVE_GROUP))
    _, response = await connection.request(
        ApiKey.LEAVE_GROUP,
        group_id=group,
        member_id=member_id,
        members=(
            build(sibling(schema, "MemberIdentity"), member_id=member_id, group_instance_id=None),
        ),
    )
    members = getattr(response, "members", None)
    member_code = int(members[0].error_code) if members else ErrorCode.none
    return int(response.error_code), member_code


def produce_frame(connection: BrokerConnection, name: str, values: list[bytes]) -> bytes:
    """A whole Produce request frame (acks=1, partition 0), for a raw socket."""
    version = connection.version(ApiKey.PRODUCE)
    body = build(
        request_schema(ApiKey.PRODUCE, version),
        **_produce_fields(
            version, name, 0, 1, build_batch([Record(value=value) for value in values])
        ),
    )
    return encode_request(ApiKey.PRODUCE, version, 1, _CLIENT_ID, body)


def fetch_frame(connection: BrokerConnection, name: str, correlation_id: int) -> bytes:
    """A Fetch request frame asking for STALLED_FETCH_BYTES of partition 0, for a raw socket."""
    version = connection.version(ApiKey.FETCH)
    schema = request_schema(ApiKey.FETCH, version)
    body = build(schema, **_fetch_fields(name, 0, 0, STALLED_FETCH_BYTES, schema))
    return encode_request(ApiKey.FETCH, version, correlation_id, _CLIENT_ID, body)

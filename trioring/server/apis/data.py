"""Wire adapters of the data path: Produce, Fetch, ListOffsets, DeleteRecords.

Each turns a decoded kio request into handler messages and the handler's
answer into the response the hand-written encoders (Produce, Fetch) or kio
(ListOffsets) write. Checks that are about Kafka's wire fields (fetch
sessions, leader epochs, isolation levels, duplicates) are made here;
everything else is the handlers'.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio
from kio.schema.errors import ErrorCode

from trioring._logging import printable
from trioring.errors import InvalidArgumentError, InvalidRequiredAcksError
from trioring.handlers.messages import (
    DeleteRecordsRequest,
    FetchPartition,
    FetchRequest,
    ListOffsetsRequest,
    ProduceRequest,
)
from trioring.protocol.kafka import (
    ApiKey,
    FetchResponseBody,
    FetchResponsePartition,
    FetchResponseTopic,
    ProduceResponseBody,
    ProduceResponsePartition,
    ProduceResponseTopic,
    UnsupportedVersionError,
    response_schema,
)
from trioring.server.apis._build import ZERO_UUID, build, sibling
from trioring.server.apis._context import NONE, ApiContext, client_log, duplicates, error_code

__all__ = ["delete_records", "fetch", "list_offsets", "produce"]

#: Fetch and ListOffsets isolation levels: read_uncommitted, read_committed.
ISOLATION_LEVELS = (0, 1)
#: The ListOffsets version that brought each special timestamp: latest (-1)
#: and earliest (-2) are in every version, max timestamp (-3, KIP-734) from
#: v7, earliest local (-4, KIP-405) from v8, latest tiered (-5, KIP-1005) from v9.
LIST_OFFSETS_SPECIAL_TIMESTAMP_VERSIONS = {-1: 0, -2: 0, -3: 7, -4: 8, -5: 9}
#: From Fetch v13 on, requests and responses name topics by topic id.
FETCH_TOPIC_ID_VERSION = 13


# --- Produce ---------------------------------------------------------------------------


async def produce(
    ctx: ApiContext,
    version: int,
    request: Any,
    order_released: Callable[[], None] | None = None,
) -> ProduceResponseBody | None:
    """Append to every partition of the request; answer once each is as durable as asked.

    ``order_released`` (the server's pipelining hook, see HandlerContext) is
    called once every partition has appended or failed.
    """
    acks = int(request.acks)
    # A partition named twice is refused, and not appended (Kafka keeps the
    # last; a client that sends such a request has a bug worth seeing).
    repeated = duplicates(
        [(topic.name, data.index) for topic in request.topic_data for data in topic.partition_data]
    )
    results: dict[tuple[str, int], ProduceResponsePartition] = {}
    partitions_unordered = sum(len(topic.partition_data) for topic in request.topic_data)

    def partition_ordered() -> None:
        nonlocal partitions_unordered
        partitions_unordered -= 1
        if partitions_unordered == 0 and order_released is not None:
            order_released()

    async def one(topic: str, partition: int, records: bytes | None) -> None:
        ordered = False

        def appended() -> None:
            nonlocal ordered
            if not ordered:
                ordered = True
                partition_ordered()

        handler_context = ctx.handler_context(appended)
        try:
            if acks not in (0, 1, -1):
                raise InvalidRequiredAcksError(f"acks must be 0, 1 or -1, not {acks}")
            if records is None:
                raise InvalidArgumentError("produce request partition has null records")
            response = await ctx.handlers.produce(
                handler_context, ProduceRequest(topic, partition, records, acks)
            )
            results[(topic, partition)] = ProduceResponsePartition(
                partition, NONE, response.base_offset, -1, response.log_start_offset
            )
        except Exception as error:
            if acks == 0:
                client_log.warning(
                    "acks=0 produce to %s-%d failed: %s",
                    printable(topic),
                    partition,
                    printable(error),
                )
            results[(topic, partition)] = ProduceResponsePartition(
                partition, error_code(error), -1, -1, -1, str(error)
            )
        finally:
            appended()

    for key in repeated:
        results[key] = ProduceResponsePartition(
            key[1], ErrorCode.invalid_request, -1, -1, -1, "partition named twice in one request"
        )
    if partitions_unordered == 0 and order_released is not None:
        order_released()  # a request naming no partition
    async with trio.open_nursery() as nursery:
        # Partitions are independent: their writes and fdatasyncs overlap.
        for topic in request.topic_data:
            for data in topic.partition_data:
                if (topic.name, data.index) in repeated:
                    partition_ordered()
                    continue
                nursery.start_soon(one, topic.name, data.index, data.records)
    if acks == 0:
        return None
    return ProduceResponseBody(
        tuple(
            ProduceResponseTopic(
                topic.name,
                tuple(results[(topic.name, data.index)] for data in topic.partition_data),
            )
            for topic in request.topic_data
        )
    )


# --- Fetch -----------------------------------------------------------------------------


def _fetch_session_error(version: int, request: Any) -> int:
    """Kafka's answer to fetch-session fields from a broker that keeps no sessions.

    Session 0 with epoch 0 asks for a new session, -1 for none: both are full
    fetches, answered with session id 0 (the client then keeps sending full
    fetches). Anything else names a session this broker cannot have.
    """
    if version < 7:
        return NONE
    if int(request.session_id) != 0 or int(request.session_epoch) not in (0, -1):
        return ErrorCode.fetch_session_id_not_found
    return NONE


def _leader_epoch_error(partition: Any) -> int:
    """Every partition's leader epoch is 0 (one replica, never re-elected)."""
    epoch = int(getattr(partition, "current_leader_epoch", -1))
    if epoch > 0:
        return ErrorCode.unknown_leader_epoch
    return NONE  # 0, or negative: the client does not know it, no check (as Kafka)


async def fetch(ctx: ApiContext, version: int, request: Any) -> FetchResponseBody:
    session_error = _fetch_session_error(version, request)
    if session_error != NONE:
        return FetchResponseBody((), error_code=session_error)
    isolation_level = int(getattr(request, "isolation_level", 0))
    if isolation_level not in ISOLATION_LEVELS:
        raise InvalidArgumentError(f"isolation level {isolation_level} is neither 0 nor 1")
    by_id = version >= FETCH_TOPIC_ID_VERSION
    topics_by_id = ctx.base.cluster.current.topics_by_id if by_id else {}
    wanted = []
    refused: dict[tuple[str | bytes, int], int] = {}
    #: Fetch v13+: each topic name's id, as the response names it.
    ids: dict[str, bytes] = {}
    for topic in request.topics:
        if by_id:
            # kio reads the zero id (no topic) as None.
            topic_id = ZERO_UUID if topic.topic_id is None else topic.topic_id
            info = topics_by_id.get(topic_id.hex)
            if info is None:
                for partition in topic.partitions:
                    refused[(topic_id.bytes, partition.partition)] = ErrorCode.unknown_topic_id
                continue
            name = info.name
            ids[name] = topic_id.bytes
        else:
            name = topic.topic
        for partition in topic.partitions:
            code = _leader_epoch_error(partition)
            if code != NONE:
                refused[(ids.get(name, name), partition.partition)] = code
                continue
            wanted.append(
                FetchPartition(
                    name,
                    partition.partition,
                    partition.fetch_offset,
                    partition.partition_max_bytes,
                )
            )
    max_wait_ms = int(request.max_wait.total_seconds() * 1000)
    # Negative limits answer at once, as Kafka's do (they are not errors there).
    response = await ctx.handlers.fetch(
        ctx.handler_context(),
        FetchRequest(
            wanted,
            max_wait_ms=max(0, max_wait_ms),
            min_bytes=max(0, int(request.min_bytes)),
            max_bytes=max(0, int(getattr(request, "max_bytes", 0x7FFFFFFF))),
        ),
    )
    by_topic: dict[str | bytes, list[FetchResponsePartition]] = {}
    for fetched in response.partitions:
        code = NONE if fetched.error is None else fetched.error.kafka_error_code
        key = ids[fetched.topic] if by_id else fetched.topic
        by_topic.setdefault(key, []).append(
            FetchResponsePartition(
                fetched.partition,
                code,
                fetched.high_watermark,
                # One replica, no transactions: everything below the high
                # watermark is stable (read_committed consumers need this).
                fetched.high_watermark,
                fetched.log_start_offset,
                fetched.records,
            )
        )
    for (topic_key, partition_index), code in refused.items():
        by_topic.setdefault(topic_key, []).append(
            FetchResponsePartition(partition_index, code, -1, -1, -1, b"")
        )
    return FetchResponseBody(
        tuple(FetchResponseTopic(key, tuple(parts)) for key, parts in by_topic.items())
    )


# --- ListOffsets -----------------------------------------------------------------------


async def list_offsets(ctx: ApiContext, version: int, request: Any) -> Any:
    response_class = response_schema(ApiKey.LIST_OFFSETS, version)
    topic_class = sibling(response_class, "ListOffsetsTopicResponse")
    partition_class = sibling(response_class, "ListOffsetsPartitionResponse")
    isolation_level = int(getattr(request, "isolation_level", 0))
    if isolation_level not in ISOLATION_LEVELS:
        raise InvalidArgumentError(f"isolation level {isolation_level} is neither 0 nor 1")
    repeated = duplicates(
        [(topic.name, p.partition_index) for topic in request.topics for p in topic.partitions]
    )
    topics = []
    for topic in request.topics:
        partitions = []
        for partition in topic.partitions:
            timestamp_ms = int(partition.timestamp)
            try:
                if (topic.name, partition.partition_index) in repeated:
                    raise InvalidArgumentError("partition listed twice in one request")
                if (
                    timestamp_ms < 0
                    and LIST_OFFSETS_SPECIAL_TIMESTAMP_VERSIONS.get(timestamp_ms, 99) > version
                ):
                    # As Kafka: a special timestamp this version does not have.
                    raise UnsupportedVersionError(
                        f"timestamp {timestamp_ms} needs a newer ListOffsets version",
                        api_key=ApiKey.LIST_OFFSETS,
                        api_version=version,
                    )
                code = _leader_epoch_error(partition)
                if code != NONE:
                    offset = timestamp = -1
                else:
                    response = await ctx.handlers.list_offsets(
                        ctx.handler_context(),
                        ListOffsetsRequest(topic.name, partition.partition_index, timestamp_ms),
                    )
                    offset, timestamp = response.offset, response.timestamp_ms
            except Exception as error:
                code, offset, timestamp = error_code(error), -1, -1
            partitions.append(
                build(
                    partition_class,
                    partition_index=partition.partition_index,
                    error_code=code,
                    timestamp=timestamp,
                    offset=offset,
                    # Every offset was written in leader epoch 0 (one replica).
                    leader_epoch=-1 if offset < 0 else 0,
                )
            )
        topics.append(build(topic_class, name=topic.name, partitions=tuple(partitions)))
    return build(response_class, topics=tuple(topics))


# --- DeleteRecords ----------------------------------------------------------------------


async def delete_records(ctx: ApiContext, version: int, request: Any) -> Any:
    """Each partition's log start moves up; partitions are done concurrently (each syncs)."""
    response_class = response_schema(ApiKey.DELETE_RECORDS, version)
    topic_class = sibling(response_class, "DeleteRecordsTopicResult")
    partition_class = sibling(response_class, "DeleteRecordsPartitionResult")
    repeated = duplicates(
        [(topic.name, p.partition_index) for topic in request.topics for p in topic.partitions]
    )
    results: dict[tuple[str, int], tuple[int, int]] = {}

    async def one(topic: str, partition: int, offset: int) -> None:
        try:
            if (topic, partition) in repeated:
                raise InvalidArgumentError("partition listed twice in one request")
            response = await ctx.handlers.delete_records(
                ctx.handler_context(), DeleteRecordsRequest(topic, partition, offset)
            )
            results[(topic, partition)] = (NONE, response.low_watermark)
        except Exception as error:
            results[(topic, partition)] = (error_code(error), -1)

    async with trio.open_nursery() as nursery:
        for topic in request.topics:
            for partition in topic.partitions:
                nursery.start_soon(
                    one, topic.name, partition.partition_index, int(partition.offset)
                )
    return build(
        response_class,
        topics=tuple(
            build(
                topic_class,
                name=topic.name,
                partitions=tuple(
                    build(
                        partition_class,
                        partition_index=partition.partition_index,
                        error_code=results[(topic.name, partition.partition_index)][0],
                        low_watermark=results[(topic.name, partition.partition_index)][1],
                    )
                    for partition in topic.partitions
                ),
            )
            for topic in request.topics
        ),
    )

"""One function per Kafka API: a decoded kio request in, a response out.

These translate between the wire's shapes and the handlers' messages; Kafka
semantics live in the handlers. Each function returns a kio response object
(or a fast-encoder body for Produce and Fetch), or None for acks=0 produces,
which Kafka answers with nothing.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import attrs
import trio
from kio.schema.errors import ErrorCode

from trioring._logging import RateLimitedLogger, printable
from trioring.core.metadata import validate_partitions, validate_topic_name
from trioring.core.offsets import CommittedOffset
from trioring.core.shard import Shard
from trioring.errors import (
    GroupCoordinatorError,
    InvalidArgumentError,
    InvalidConfigError,
    InvalidPartitionsError,
    InvalidRequiredAcksError,
    InvalidTopicError,
    ReplicaAssignmentError,
    ReplicationFactorError,
    TopicExistsError,
    TrioringError,
    UnknownTopicOrPartitionError,
)
from trioring.handlers import HandlerContext, Handlers
from trioring.handlers.messages import (
    CreateTopicRequest,
    FetchPartition,
    FetchRequest,
    ListOffsetsRequest,
    OffsetCommitRequest,
    OffsetFetchRequest,
    ProduceRequest,
)
from trioring.protocol.kafka import (
    ApiKey,
    EncodedBody,
    FetchResponseBody,
    FetchResponsePartition,
    FetchResponseTopic,
    ProduceResponseBody,
    ProduceResponsePartition,
    ProduceResponseTopic,
    UnsupportedVersionError,
    encode_response_body,
    response_schema,
)
from trioring.server._build import build, sibling
from trioring.storage.log import LogConfig

logger = logging.getLogger("trioring.server")
client_log = RateLimitedLogger(logger)

#: Distinct Metadata answers kept encoded (a few per client configuration).
METADATA_CACHE_ENTRIES_MAX = 64

NONE: int = ErrorCode.none
#: Kafka's offset.metadata.max.bytes (counted in characters, as Kafka does).
OFFSET_METADATA_CHARACTERS_MAX = 4096
#: Fetch and ListOffsets isolation levels: read_uncommitted, read_committed.
ISOLATION_LEVELS = (0, 1)
#: ListOffsets special timestamps of versions 1-2: latest (-1), earliest (-2).
LIST_OFFSETS_SPECIAL_TIMESTAMPS = (-1, -2)


def error_code(error: BaseException) -> int:
    """The Kafka code of an operating error; a bug is logged and answered UNKNOWN_SERVER_ERROR."""
    if isinstance(error, TrioringError):
        return error.kafka_error_code
    client_log.error(
        "a request failed unexpectedly (%r); answered UNKNOWN_SERVER_ERROR for its entry",
        error,
        exc_info=error,
    )
    return ErrorCode.unknown_server_error


def duplicates(keys: list[Any]) -> set[Any]:
    """Keys that occur more than once."""
    counts = Counter(keys)
    return {key for key, count in counts.items() if count > 1}


@attrs.frozen
class Node:
    node_id: int
    host: str
    port: int


class MetadataCache:
    """Encoded Metadata response bodies by what they say, bounded.

    Building and encoding a Metadata response with kio costs about 27 us per
    partition (2.8 ms for 100 topics of 3 partitions, measured), and clients
    ask for the same answer again and again (refreshes, every new
    connection). The key is the whole content (version, and per topic its
    name, error code and partition count, in request order), so a topic
    created or deleted simply makes a new key; no invalidation is needed.
    """

    def __init__(self, entries_max: int = METADATA_CACHE_ENTRIES_MAX) -> None:
        self._entries_max = entries_max
        self._bodies: dict[object, EncodedBody] = {}
        self.hits = 0
        self.misses = 0

    def get(self, key: object) -> EncodedBody | None:
        body = self._bodies.get(key)
        if body is None:
            self.misses += 1
        else:
            self.hits += 1
        return body

    def put(self, key: object, body: EncodedBody) -> None:
        if len(self._bodies) >= self._entries_max:
            del self._bodies[next(iter(self._bodies))]  # the oldest
        self._bodies[key] = body


@attrs.define
class ApiContext:
    """What every API function needs: the shard, handlers and how we are addressed."""

    shard: Shard
    handlers: Handlers
    node: Node
    cluster_id: str
    auto_create_topics: bool
    client_id: str = ""
    client_host: str = ""
    #: Encoded Metadata responses, shared by the server's connections.
    metadata_cache: MetadataCache = attrs.field(factory=MetadataCache)
    #: Set when the server stops (see HandlerContext.stopping).
    stopping: trio.Event | None = None

    def handler_context(self, order_released: Callable[[], None] | None = None) -> HandlerContext:
        return HandlerContext(
            self.shard,
            client_id=self.client_id or "kafka",
            order_released=order_released,
            stopping=self.stopping,
        )


ApiFunction = Callable[[ApiContext, int, Any], Awaitable[Any]]


# --- Metadata ------------------------------------------------------------------------


async def metadata(ctx: ApiContext, version: int, request: Any) -> Any:
    known = ctx.shard.topics
    if request.topics is None or (version == 0 and not request.topics):
        names = sorted(known)
    else:
        names = [topic.name for topic in request.topics]
    # v4 lets the client say no (librdkafka consumers do); earlier versions always allow.
    allow_create = ctx.auto_create_topics and getattr(request, "allow_auto_topic_creation", True)
    # (name, error code, partition count) per topic, creating topics first.
    entries: list[tuple[str, int, int]] = []
    for name in names:
        code: int = NONE
        info = known.get(name)
        if info is None:
            try:
                # Kafka answers INVALID_TOPIC_EXCEPTION for a name no topic can have.
                validate_topic_name(name)
            except InvalidTopicError as error:
                code = error.kafka_error_code
        if info is None and allow_create and code == NONE:
            try:
                info = (
                    await ctx.handlers.create_topic(ctx.handler_context(), CreateTopicRequest(name))
                ).topic
                logger.info("auto-created topic %s for client %s", name, printable(ctx.client_id))
            except TrioringError as error:
                code = error.kafka_error_code
                if code == ErrorCode.topic_already_exists:  # created concurrently
                    info, code = ctx.shard.topics.get(name), NONE
        if info is None and code == NONE:
            code = UnknownTopicOrPartitionError.kafka_error_code
        entries.append((name, code, info.partitions if info is not None else 0))
    key = (version, ctx.node, ctx.cluster_id, tuple(entries))
    cached = ctx.metadata_cache.get(key)
    if cached is None:
        cached = encode_response_body(_metadata_response(ctx, version, entries))
        ctx.metadata_cache.put(key, cached)
    await trio.lowlevel.checkpoint()
    return cached


def _metadata_response(ctx: ApiContext, version: int, entries: list[tuple[str, int, int]]) -> Any:
    response_class = response_schema(ApiKey.METADATA, version)
    topic_class = sibling(response_class, "MetadataResponseTopic")
    partition_class = sibling(response_class, "MetadataResponsePartition")
    broker_class = sibling(response_class, "MetadataResponseBroker")
    node_id = ctx.node.node_id
    topics = [
        build(
            topic_class,
            error_code=code,
            name=name,
            is_internal=False,
            partitions=tuple(
                build(
                    partition_class,
                    error_code=NONE,
                    partition_index=index,
                    leader_id=node_id,
                    leader_epoch=0,
                    replica_nodes=(node_id,),
                    isr_nodes=(node_id,),
                    offline_replicas=(),
                )
                for index in range(partitions)
            ),
        )
        for name, code, partitions in entries
    ]
    broker = build(broker_class, node_id=node_id, host=ctx.node.host, port=ctx.node.port, rack=None)
    return build(
        response_class,
        brokers=(broker,),
        cluster_id=ctx.cluster_id,
        controller_id=node_id,
        topics=tuple(topics),
    )


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
                partition, error_code(error), -1, -1, -1
            )
        finally:
            appended()

    # A partition named twice is refused, and not appended (Kafka keeps the
    # last; a client that sends such a request has a bug worth seeing).
    repeated = duplicates(
        [(topic.name, data.index) for topic in request.topic_data for data in topic.partition_data]
    )
    for key in repeated:
        results[key] = ProduceResponsePartition(key[1], ErrorCode.invalid_request, -1, -1, -1)
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
    wanted = []
    refused: dict[tuple[str, int], int] = {}
    for topic in request.topics:
        for partition in topic.partitions:
            code = _leader_epoch_error(partition)
            if code != NONE:
                refused[(topic.topic, partition.partition)] = code
                continue
            wanted.append(
                FetchPartition(
                    topic.topic,
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
    by_topic: dict[str, list[FetchResponsePartition]] = {}
    for fetched in response.partitions:
        code = NONE if fetched.error is None else fetched.error.kafka_error_code
        by_topic.setdefault(fetched.topic, []).append(
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
    for (topic_name, partition_index), code in refused.items():
        by_topic.setdefault(topic_name, []).append(
            FetchResponsePartition(partition_index, code, -1, -1, -1, b"")
        )
    return FetchResponseBody(
        tuple(FetchResponseTopic(name, tuple(parts)) for name, parts in by_topic.items())
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
                if timestamp_ms < 0 and timestamp_ms not in LIST_OFFSETS_SPECIAL_TIMESTAMPS:
                    # As Kafka: a special timestamp this version does not have.
                    raise UnsupportedVersionError(
                        f"timestamp {timestamp_ms} needs a newer ListOffsets version",
                        api_key=ApiKey.LIST_OFFSETS,
                        api_version=version,
                    )
                response = await ctx.handlers.list_offsets(
                    ctx.handler_context(),
                    ListOffsetsRequest(topic.name, partition.partition_index, timestamp_ms),
                )
                code, offset, timestamp = NONE, response.offset, response.timestamp_ms
            except Exception as error:
                code, offset, timestamp = error_code(error), -1, -1
            partitions.append(
                build(
                    partition_class,
                    partition_index=partition.partition_index,
                    error_code=code,
                    timestamp=timestamp,
                    offset=offset,
                )
            )
        topics.append(build(topic_class, name=topic.name, partitions=tuple(partitions)))
    return build(response_class, topics=tuple(topics))


# --- Committed offsets ---------------------------------------------------------------------


async def find_coordinator(ctx: ApiContext, version: int, request: Any) -> Any:
    response_class = response_schema(ApiKey.FIND_COORDINATOR, version)
    key_type = int(getattr(request, "key_type", 0))
    if key_type not in (0, 1):  # group, transaction
        raise InvalidArgumentError(f"coordinator key type {key_type} is neither 0 nor 1")
    if key_type == 1:
        return build(
            response_class,
            error_code=ErrorCode.coordinator_not_available,
            error_message="transactions are not supported",
            node_id=-1,
            host="",
            port=-1,
        )
    return build(
        response_class,
        error_code=NONE,
        error_message=None,
        node_id=ctx.node.node_id,
        host=ctx.node.host,
        port=ctx.node.port,
    )


async def offset_fetch(ctx: ApiContext, version: int, request: Any) -> Any:
    response_class = response_schema(ApiKey.OFFSET_FETCH, version)
    topic_class = sibling(response_class, "OffsetFetchResponseTopic")
    partition_class = sibling(response_class, "OffsetFetchResponsePartition")
    try:
        response = await ctx.handlers.fetch_offsets(
            ctx.handler_context(), OffsetFetchRequest(request.group_id)
        )
        committed = response.offsets
        top_code = NONE
    except Exception as error:
        committed, top_code = {}, error_code(error)
    if request.topics is None:
        requested: dict[str, list[int]] = {}
        for topic, partition in sorted(committed):
            requested.setdefault(topic, []).append(partition)
    else:
        requested = {t.name: list(t.partition_indexes) for t in request.topics}
    topics = []
    for name, partitions in requested.items():
        entries = []
        for partition in partitions:
            value = committed.get((name, partition))
            entries.append(
                build(
                    partition_class,
                    partition_index=partition,
                    committed_offset=-1 if value is None else value.offset,
                    metadata="" if value is None else value.metadata,
                    error_code=top_code if version < 2 else NONE,
                )
            )
        topics.append(build(topic_class, name=name, partitions=tuple(entries)))
    return build(response_class, topics=tuple(topics), error_code=top_code)


async def offset_commit(ctx: ApiContext, version: int, request: Any) -> Any:
    response_class = response_schema(ApiKey.OFFSET_COMMIT, version)
    topic_class = sibling(response_class, "OffsetCommitResponseTopic")
    partition_class = sibling(response_class, "OffsetCommitResponsePartition")
    codes: dict[tuple[str, int], int] = {}
    group_code: int = NONE
    offsets = {}
    for topic in request.topics:
        for partition in topic.partitions:
            key = (topic.name, partition.partition_index)
            metadata = partition.committed_metadata or ""
            if len(metadata) > OFFSET_METADATA_CHARACTERS_MAX:
                codes[key] = ErrorCode.offset_metadata_too_large
                continue
            offsets[key] = CommittedOffset(partition.committed_offset, metadata)
    try:
        response = await ctx.handlers.commit_offsets(
            ctx.handler_context(),
            OffsetCommitRequest(
                request.group_id,
                offsets,
                generation_id=int(request.generation_id_or_member_epoch),
                member_id=request.member_id,
            ),
        )
        codes.update(
            (tp, NONE if error is None else error.kafka_error_code)
            for tp, error in response.errors.items()
        )
    except Exception as error:
        group_code = error_code(error)
    topics = tuple(
        build(
            topic_class,
            name=topic.name,
            partitions=tuple(
                build(
                    partition_class,
                    partition_index=partition.partition_index,
                    error_code=codes.get((topic.name, partition.partition_index), group_code),
                )
                for partition in topic.partitions
            ),
        )
        for topic in request.topics
    )
    return build(response_class, topics=topics)


# --- Topics --------------------------------------------------------------------------------

#: Kafka topic config name -> LogConfig field, and how to parse the value.
_TOPIC_CONFIGS: dict[str, str] = {
    "retention.ms": "retention_ms",
    "retention.bytes": "retention_bytes",
    "segment.bytes": "segment_bytes",
    "segment.ms": "segment_ms",
    "index.interval.bytes": "index_interval_bytes",
}


def log_config_from_kafka(base: LogConfig, configs: dict[str, str | None]) -> LogConfig:
    """A topic's LogConfig from Kafka config entries; InvalidConfigError names the bad one."""
    changes: dict[str, int | None] = {}
    for name, value in configs.items():
        if value is None:
            # As Kafka: a null value in CreateTopics is refused, not "unset".
            raise InvalidConfigError(f"null value not supported for topic config {name!r}")
        if name == "cleanup.policy":
            if value != "delete":
                raise InvalidConfigError(
                    f"cleanup.policy='{printable(value)}' is not supported: only 'delete'"
                )
            continue
        field = _TOPIC_CONFIGS.get(name)
        if field is None:
            raise InvalidConfigError(f"topic config '{printable(name)}' is not supported")
        try:
            number = int(value)
        except ValueError:
            raise InvalidConfigError(
                f"topic config {name}='{printable(value)}' is not a number"
            ) from None
        if field in ("retention_ms", "retention_bytes") and number < 0:
            if number != -1:
                raise InvalidConfigError(f"{name} must be -1 (unlimited) or >= 0, not {number}")
            changes[field] = None  # Kafka's -1: unlimited
        else:
            changes[field] = number
    try:
        return attrs.evolve(base, **changes)  # type: ignore[arg-type]
    except InvalidArgumentError as error:
        raise InvalidConfigError(str(error)) from None


def kafka_topic_configs(config: LogConfig, batch_bytes_max: int) -> dict[str, str]:
    return {
        "cleanup.policy": "delete",
        "retention.ms": str(-1 if config.retention_ms is None else config.retention_ms),
        "retention.bytes": str(-1 if config.retention_bytes is None else config.retention_bytes),
        "segment.bytes": str(config.segment_bytes),
        "segment.ms": str(config.segment_ms),
        "index.interval.bytes": str(config.index_interval_bytes),
        "max.message.bytes": str(batch_bytes_max),
        "message.timestamp.type": "CreateTime",
    }


def _create_topic_partitions(ctx: ApiContext, topic: Any) -> int | None:
    """The partition count a CreateTopics entry asks for (None: the broker's default).

    Checks in Kafka's order: replication factor, partition count, then
    manual assignments, which trioring accepts when they place every
    partition, numbered from 0, on this one node.
    """
    replication_factor = int(topic.replication_factor)
    partitions = int(topic.num_partitions)
    if replication_factor == 0 or replication_factor < -1:
        raise ReplicationFactorError(
            f"replication factor must be -1 or 1, not {replication_factor}"
        )
    if replication_factor > 1:
        raise ReplicationFactorError(
            f"replication factor {replication_factor} is larger than the 1 broker available: "
            "trioring keeps one replica per partition"
        )
    if partitions == 0 or partitions < -1:
        raise InvalidPartitionsError(f"a topic needs at least 1 partition, not {partitions}")
    if not topic.assignments:
        return None if partitions == -1 else partitions
    if replication_factor != -1 or partitions != -1:
        raise InvalidArgumentError(
            "give either assignments or a partition count and replication factor, not both"
        )
    indexes = sorted(int(assignment.partition_index) for assignment in topic.assignments)
    if indexes != list(range(len(indexes))):
        raise ReplicaAssignmentError("assigned partitions must be numbered 0, 1, 2, ... once each")
    for assignment in topic.assignments:
        if list(assignment.broker_ids) != [ctx.node.node_id]:
            raise ReplicaAssignmentError(
                f"partition {assignment.partition_index} is assigned to brokers "
                f"{list(assignment.broker_ids)}; the only broker is {ctx.node.node_id}"
            )
    return len(indexes)


async def create_topics(ctx: ApiContext, version: int, request: Any) -> Any:
    response_class = response_schema(ApiKey.CREATE_TOPICS, version)
    result_class = sibling(response_class, "CreatableTopicResult")
    repeated = duplicates([topic.name for topic in request.topics])
    results = []
    for topic in request.topics:
        code: int = NONE
        message = None
        try:
            if topic.name in repeated:
                raise InvalidArgumentError(f"topic {topic.name!r} is named twice in the request")
            partitions = _create_topic_partitions(ctx, topic)
            config = log_config_from_kafka(
                ctx.shard.config.log, {c.name: c.value for c in topic.configs}
            )
            if request.validate_only:
                validate_topic_name(topic.name)
                if partitions is not None:
                    validate_partitions(partitions)
                if topic.name in ctx.shard.topics:
                    raise TopicExistsError(f"topic {topic.name!r} already exists")
            else:
                await ctx.handlers.create_topic(
                    ctx.handler_context(), CreateTopicRequest(topic.name, partitions, config)
                )
        except Exception as error:
            code, message = error_code(error), str(error)
        results.append(build(result_class, name=topic.name, error_code=code, error_message=message))
    return build(response_class, topics=tuple(results))


async def delete_topics(ctx: ApiContext, version: int, request: Any) -> Any:
    response_class = response_schema(ApiKey.DELETE_TOPICS, version)
    result_class = sibling(response_class, "DeletableTopicResult")
    repeated = duplicates(list(request.topic_names))
    results = []
    for name in request.topic_names:
        try:
            if name in repeated:
                raise InvalidArgumentError(f"topic {name!r} is named twice in the request")
            await ctx.shard.delete_topic(name)
            code: int = NONE
        except Exception as error:
            code = error_code(error)
        results.append(build(result_class, name=name, error_code=code))
    return build(response_class, responses=tuple(results))


#: DescribeConfigs resource types (Kafka's ConfigResource.Type).
_TOPIC_RESOURCE = 2
_BROKER_RESOURCE = 4


async def describe_configs(ctx: ApiContext, version: int, request: Any) -> Any:
    response_class = response_schema(ApiKey.DESCRIBE_CONFIGS, version)
    result_class = sibling(response_class, "DescribeConfigsResult")
    entry_class = sibling(response_class, "DescribeConfigsResourceResult")
    for resource in request.resources:
        if resource.resource_type not in (_TOPIC_RESOURCE, _BROKER_RESOURCE):
            # As Kafka: one unknown resource type refuses the whole request.
            raise InvalidArgumentError(
                f"resource type {resource.resource_type} is not supported: "
                f"use {_TOPIC_RESOURCE} (topic) or {_BROKER_RESOURCE} (broker)"
            )
    results = []
    for resource in request.resources:
        code: int = NONE
        message = None
        entries = []
        if resource.resource_type == _TOPIC_RESOURCE:
            info = ctx.shard.topics.get(resource.resource_name)
            if info is None:
                try:
                    validate_topic_name(resource.resource_name)
                    code = UnknownTopicOrPartitionError.kafka_error_code
                    message = f"unknown topic {resource.resource_name!r}"
                except InvalidTopicError as error:
                    code, message = error.kafka_error_code, str(error)
            else:
                batch_bytes_max = ctx.shard.config.batch_bytes_max
                configs = kafka_topic_configs(info.config, batch_bytes_max)
                defaults = kafka_topic_configs(ctx.shard.config.log, batch_bytes_max)
                keys = resource.configuration_keys
                for name, value in sorted(configs.items()):
                    if keys is not None and name not in keys:
                        continue
                    entries.append(
                        build(
                            entry_class,
                            name=name,
                            value=value,
                            read_only=False,
                            is_default=value == defaults[name],
                            # DEFAULT_CONFIG (5) unless the topic overrides it (1).
                            config_source=5 if value == defaults[name] else 1,
                            is_sensitive=False,
                            synonyms=(),
                        )
                    )
        elif resource.resource_name not in ("", str(ctx.node.node_id)):
            code = ErrorCode.invalid_request
            message = (
                f"unexpected broker id '{printable(resource.resource_name)}', "
                f"expected {ctx.node.node_id}"
            )
        # A broker resource of this node: no broker configs are exposed yet,
        # an empty, successful answer.
        results.append(
            build(
                result_class,
                error_code=code,
                error_message=message,
                resource_type=resource.resource_type,
                resource_name=resource.resource_name,
                configs=tuple(entries),
            )
        )
    return build(response_class, results=tuple(results))


async def init_producer_id(ctx: ApiContext, version: int, request: Any) -> Any:
    response_class = response_schema(ApiKey.INIT_PRODUCER_ID, version)
    if request.transactional_id is not None:
        client_log.warning(
            "client %s asked for transactional id %s: transactions are not supported",
            printable(ctx.client_id),
            printable(request.transactional_id),
        )
        return build(
            response_class,
            error_code=ErrorCode.transactional_id_authorization_failed,
            producer_id=-1,
            producer_epoch=-1,
        )
    try:
        producer_id = await ctx.shard.allocate_producer_id()
        code = NONE
    except Exception as error:
        producer_id, code = -1, error_code(error)
    return build(
        response_class,
        error_code=code,
        producer_id=producer_id,
        producer_epoch=0 if code == NONE else -1,
    )


# --- Consumer groups (classic protocol) -----------------------------------------------------


_T = TypeVar("_T")


async def _unless_stopping(ctx: ApiContext, wait: Callable[[], Awaitable[_T]]) -> _T:
    """Run a request that may wait long (a group join); NOT_COORDINATOR if the server stops.

    Kafka answers pending joins NOT_COORDINATOR when a coordinator goes away,
    and clients then find the coordinator again: a stop does not wait out a
    rebalance timeout.
    """
    stopping = ctx.stopping
    if stopping is None:
        return await wait()
    outcome: list[_T] = []
    async with trio.open_nursery() as nursery:

        async def run() -> None:
            outcome.append(await wait())
            nursery.cancel_scope.cancel()

        async def stop() -> None:
            await stopping.wait()
            nursery.cancel_scope.cancel()

        nursery.start_soon(run)
        nursery.start_soon(stop)
    if not outcome:
        raise GroupCoordinatorError("the broker is stopping", ErrorCode.not_coordinator)
    return outcome[0]


def _milliseconds(value: Any) -> int:
    return int(value.total_seconds() * 1000)


async def join_group(ctx: ApiContext, version: int, request: Any) -> Any:
    response_class = response_schema(ApiKey.JOIN_GROUP, version)
    member_class = sibling(response_class, "JoinGroupResponseMember")
    rebalance_timeout = getattr(request, "rebalance_timeout", None)
    join = functools.partial(
        ctx.shard.groups.join_group,
        group_id=request.group_id,
        member_id=request.member_id,
        group_instance_id=getattr(request, "group_instance_id", None),
        protocol_type=request.protocol_type,
        protocols=[(protocol.name, protocol.metadata) for protocol in request.protocols],
        session_timeout_ms=_milliseconds(request.session_timeout),
        rebalance_timeout_ms=None
        if rebalance_timeout is None
        else _milliseconds(rebalance_timeout),
        client_id=ctx.client_id,
        client_host=ctx.client_host,
        api_version=version,
    )
    result = await _unless_stopping(ctx, join)
    return build(
        response_class,
        error_code=result.error_code,
        generation_id=result.generation_id,
        protocol_name=result.protocol_name or "",
        leader=result.leader,
        member_id=result.member_id,
        members=tuple(
            build(
                member_class,
                member_id=member.member_id,
                group_instance_id=member.group_instance_id,
                metadata=member.metadata,
            )
            for member in result.members
        ),
    )


async def sync_group(ctx: ApiContext, version: int, request: Any) -> Any:
    response_class = response_schema(ApiKey.SYNC_GROUP, version)
    sync = functools.partial(
        ctx.shard.groups.sync_group,
        group_id=request.group_id,
        generation_id=int(request.generation_id),
        member_id=request.member_id,
        group_instance_id=getattr(request, "group_instance_id", None),
        assignments={item.member_id: item.assignment for item in request.assignments},
    )
    result = await _unless_stopping(ctx, sync)
    return build(response_class, error_code=result.error_code, assignment=result.assignment)


async def heartbeat(ctx: ApiContext, version: int, request: Any) -> Any:
    response_class = response_schema(ApiKey.HEARTBEAT, version)
    code = ctx.shard.groups.heartbeat(
        group_id=request.group_id,
        generation_id=int(request.generation_id),
        member_id=request.member_id,
    )
    await trio.lowlevel.checkpoint()
    return build(response_class, error_code=code)


async def leave_group(ctx: ApiContext, version: int, request: Any) -> Any:
    response_class = response_schema(ApiKey.LEAVE_GROUP, version)
    result = ctx.shard.groups.leave_group(group_id=request.group_id, member_ids=[request.member_id])
    code = result.error_code
    if code == NONE and result.members:
        # v0-2 carry one member: its outcome is the answer.
        code = result.members[0].error_code
    await trio.lowlevel.checkpoint()
    return build(response_class, error_code=code)


async def describe_groups(ctx: ApiContext, version: int, request: Any) -> Any:
    response_class = response_schema(ApiKey.DESCRIBE_GROUPS, version)
    group_class = sibling(response_class, "DescribedGroup")
    member_class = sibling(response_class, "DescribedGroupMember")
    descriptions = ctx.shard.groups.describe_groups(list(request.groups))
    await trio.lowlevel.checkpoint()
    return build(
        response_class,
        groups=tuple(
            build(
                group_class,
                error_code=description.error_code,
                group_id=description.group_id,
                group_state=description.state,
                protocol_type=description.protocol_type,
                protocol_data=description.protocol_data,
                members=tuple(
                    build(
                        member_class,
                        member_id=member.member_id,
                        group_instance_id=member.group_instance_id,
                        client_id=member.client_id,
                        client_host=member.client_host,
                        member_metadata=member.metadata,
                        member_assignment=member.assignment,
                    )
                    for member in description.members
                ),
            )
            for description in descriptions
        ),
    )


async def list_groups(ctx: ApiContext, version: int, request: Any) -> Any:
    response_class = response_schema(ApiKey.LIST_GROUPS, version)
    listed_class = sibling(response_class, "ListedGroup")
    result = ctx.shard.groups.list_groups()
    await trio.lowlevel.checkpoint()
    return build(
        response_class,
        error_code=result.error_code,
        groups=tuple(
            build(listed_class, group_id=group.group_id, protocol_type=group.protocol_type)
            for group in result.groups
        ),
    )


APIS: dict[int, ApiFunction] = {
    ApiKey.JOIN_GROUP: join_group,
    ApiKey.SYNC_GROUP: sync_group,
    ApiKey.HEARTBEAT: heartbeat,
    ApiKey.LEAVE_GROUP: leave_group,
    ApiKey.DESCRIBE_GROUPS: describe_groups,
    ApiKey.LIST_GROUPS: list_groups,
    ApiKey.INIT_PRODUCER_ID: init_producer_id,
    ApiKey.METADATA: metadata,
    ApiKey.PRODUCE: produce,
    ApiKey.FETCH: fetch,
    ApiKey.LIST_OFFSETS: list_offsets,
    ApiKey.FIND_COORDINATOR: find_coordinator,
    ApiKey.OFFSET_FETCH: offset_fetch,
    ApiKey.OFFSET_COMMIT: offset_commit,
    ApiKey.CREATE_TOPICS: create_topics,
    ApiKey.DELETE_TOPICS: delete_topics,
    ApiKey.DESCRIBE_CONFIGS: describe_configs,
}

"""One function per Kafka API: a decoded kio request in, a response out.

These translate between the wire's shapes and the handlers' messages; Kafka
semantics live in the handlers. Each function returns a kio response object
(or a fast-encoder body for Produce and Fetch), or None for acks=0 produces,
which Kafka answers with nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import trio

from trioring.core.offsets import CommittedOffset
from trioring.core.shard import Shard
from trioring.errors import (
    InvalidArgumentError,
    InvalidPartitionsError,
    InvalidRequiredAcksError,
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
    encode_response_body,
    response_schema,
)
from trioring.server._build import build, sibling
from trioring.storage.log import LogConfig

logger = logging.getLogger("trioring.server")

#: Distinct Metadata answers kept encoded (a few per client configuration).
METADATA_CACHE_ENTRIES_MAX = 64

NONE = 0
UNKNOWN_SERVER_ERROR = -1
INVALID_TOPIC_EXCEPTION = 17
INVALID_REPLICATION_FACTOR = 38
INVALID_CONFIG = 40
TOPIC_AUTHORIZATION_FAILED = 29
COORDINATOR_NOT_AVAILABLE = 15
INVALID_REQUEST = 42
TRANSACTIONAL_ID_AUTHORIZATION_FAILED = 53


def error_code(error: BaseException) -> int:
    if isinstance(error, TrioringError):
        return error.kafka_error_code
    logger.error("unexpected error while handling a request", exc_info=error)
    return UNKNOWN_SERVER_ERROR


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

    def handler_context(self, order_released: Callable[[], None] | None = None) -> HandlerContext:
        return HandlerContext(
            self.shard, client_id=self.client_id or "kafka", order_released=order_released
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
        code = NONE
        info = known.get(name)
        if info is None and allow_create:
            try:
                info = (
                    await ctx.handlers.create_topic(ctx.handler_context(), CreateTopicRequest(name))
                ).topic
                logger.info("auto-created topic %s for client %s", name, ctx.client_id)
            except TrioringError as error:
                code = error.kafka_error_code
                if code == 36:  # created concurrently
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
                logger.warning("acks=0 produce to %s-%d failed: %s", topic, partition, error)
            results[(topic, partition)] = ProduceResponsePartition(
                partition, error_code(error), -1, -1, -1
            )
        finally:
            appended()

    if partitions_unordered == 0 and order_released is not None:
        order_released()  # a request naming no partition
    async with trio.open_nursery() as nursery:
        # Partitions are independent: their writes and fdatasyncs overlap.
        for topic in request.topic_data:
            for data in topic.partition_data:
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


async def fetch(ctx: ApiContext, version: int, request: Any) -> FetchResponseBody:
    wanted = [
        FetchPartition(
            topic.topic, partition.partition, partition.fetch_offset, partition.partition_max_bytes
        )
        for topic in request.topics
        for partition in topic.partitions
    ]
    max_wait_ms = int(request.max_wait.total_seconds() * 1000)
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
    return FetchResponseBody(
        tuple(FetchResponseTopic(name, tuple(parts)) for name, parts in by_topic.items())
    )


# --- ListOffsets -----------------------------------------------------------------------


async def list_offsets(ctx: ApiContext, version: int, request: Any) -> Any:
    response_class = response_schema(ApiKey.LIST_OFFSETS, version)
    topic_class = sibling(response_class, "ListOffsetsTopicResponse")
    partition_class = sibling(response_class, "ListOffsetsPartitionResponse")
    topics = []
    for topic in request.topics:
        partitions = []
        for partition in topic.partitions:
            try:
                response = await ctx.handlers.list_offsets(
                    ctx.handler_context(),
                    ListOffsetsRequest(topic.name, partition.partition_index, partition.timestamp),
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
    if key_type != 0:
        return build(
            response_class,
            error_code=COORDINATOR_NOT_AVAILABLE,
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
    group_code = NONE
    offsets = {
        (topic.name, partition.partition_index): CommittedOffset(
            partition.committed_offset, partition.committed_metadata or ""
        )
        for topic in request.topics
        for partition in topic.partitions
    }
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
        codes = {
            tp: NONE if error is None else error.kafka_error_code
            for tp, error in response.errors.items()
        }
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
    changes: dict[str, int | None] = {}
    for name, value in configs.items():
        if name == "cleanup.policy" and value in (None, "delete"):
            continue
        field = _TOPIC_CONFIGS.get(name)
        if field is None:
            raise InvalidArgumentError(f"topic config {name!r} is not supported")
        try:
            number = None if value is None else int(value)
        except ValueError:
            raise InvalidArgumentError(f"topic config {name}={value!r} is not a number") from None
        if field in ("retention_ms", "retention_bytes") and number is not None and number < 0:
            number = None  # Kafka's -1: unlimited
        changes[field] = number
    return attrs.evolve(base, **changes)  # type: ignore[arg-type]


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


async def create_topics(ctx: ApiContext, version: int, request: Any) -> Any:
    response_class = response_schema(ApiKey.CREATE_TOPICS, version)
    result_class = sibling(response_class, "CreatableTopicResult")
    results = []
    for topic in request.topics:
        code, message = NONE, None
        try:
            if topic.replication_factor not in (-1, 1):
                code = INVALID_REPLICATION_FACTOR
                message = "trioring keeps one replica per partition: use replication factor 1"
            elif topic.assignments:
                raise InvalidArgumentError("manual replica assignments are not supported")
            else:
                partitions = None if topic.num_partitions == -1 else int(topic.num_partitions)
                if partitions is not None and partitions < 1:
                    raise InvalidPartitionsError(
                        f"a topic needs at least 1 partition, not {partitions}"
                    )
                config = log_config_from_kafka(
                    ctx.shard.config.log, {c.name: c.value for c in topic.configs}
                )
                if request.validate_only:
                    if topic.name in ctx.shard.topics:
                        code, message = 36, f"topic {topic.name!r} already exists"
                else:
                    await ctx.handlers.create_topic(
                        ctx.handler_context(), CreateTopicRequest(topic.name, partitions, config)
                    )
        except Exception as error:
            code, message = error_code(error), str(error)
            if isinstance(error, InvalidArgumentError) and "config" in str(error):
                code = INVALID_CONFIG
        results.append(build(result_class, name=topic.name, error_code=code, error_message=message))
    return build(response_class, topics=tuple(results))


async def delete_topics(ctx: ApiContext, version: int, request: Any) -> Any:
    response_class = response_schema(ApiKey.DELETE_TOPICS, version)
    result_class = sibling(response_class, "DeletableTopicResult")
    results = []
    for name in request.topic_names:
        try:
            await ctx.shard.delete_topic(name)
            code = NONE
        except Exception as error:
            code = error_code(error)
        results.append(build(result_class, name=name, error_code=code))
    return build(response_class, responses=tuple(results))


async def describe_configs(ctx: ApiContext, version: int, request: Any) -> Any:
    response_class = response_schema(ApiKey.DESCRIBE_CONFIGS, version)
    result_class = sibling(response_class, "DescribeConfigsResult")
    entry_class = sibling(response_class, "DescribeConfigsResourceResult")
    topic_resource, broker_resource = 2, 4
    results = []
    for resource in request.resources:
        code, message, entries = NONE, None, []
        if resource.resource_type == topic_resource:
            info = ctx.shard.topics.get(resource.resource_name)
            if info is None:
                code = UnknownTopicOrPartitionError.kafka_error_code
                message = f"unknown topic {resource.resource_name!r}"
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
        elif resource.resource_type == broker_resource:
            pass  # no broker configs are exposed yet: an empty, successful answer
        else:
            code, message = INVALID_REQUEST, f"resource type {resource.resource_type} unsupported"
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
        logger.warning(
            "client %s asked for transactional id %r: transactions are not supported",
            ctx.client_id,
            request.transactional_id,
        )
        return build(
            response_class,
            error_code=TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
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


def _milliseconds(value: Any) -> int:
    return int(value.total_seconds() * 1000)


async def join_group(ctx: ApiContext, version: int, request: Any) -> Any:
    response_class = response_schema(ApiKey.JOIN_GROUP, version)
    member_class = sibling(response_class, "JoinGroupResponseMember")
    rebalance_timeout = getattr(request, "rebalance_timeout", None)
    result = await ctx.shard.groups.join_group(
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
    result = await ctx.shard.groups.sync_group(
        group_id=request.group_id,
        generation_id=int(request.generation_id),
        member_id=request.member_id,
        group_instance_id=getattr(request, "group_instance_id", None),
        assignments={item.member_id: item.assignment for item in request.assignments},
    )
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

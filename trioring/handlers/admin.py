"""Topic administration: CreateTopics, DeleteTopics, CreatePartitions, InitProducerId,
DescribeLogDirs, with Kafka's rules for every field (configs: ``handlers.configs``).

Changes to topics are requests to the controller (``ctx.cluster``), which
validates names and counts, places partitions, persists, and answers once
every worker has the change.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import trio
from kio.schema.errors import ErrorCode

from trioring._logging import RateLimitedLogger, printable
from trioring.cluster.model import validate_partitions, validate_topic_name
from trioring.errors import (
    InvalidArgumentError,
    InvalidPartitionsError,
    KafkaError,
    ReplicaAssignmentError,
    ReplicationFactorError,
    TopicExistsError,
    TrioringError,
    UnknownTopicOrPartitionError,
)
from trioring.handlers.configs import (
    describe_configs,
    kafka_topic_configs,
    log_config_from_kafka,
    topic_config_entries,
    topic_defaults,
)
from trioring.handlers.context import HandlerContext
from trioring.handlers.messages import (
    CreatedTopic,
    CreatePartitionsRequest,
    CreatePartitionsResponse,
    CreateTopicRequest,
    CreateTopicResponse,
    CreateTopicsRequest,
    CreateTopicsResponse,
    DeleteTopicsRequest,
    DeleteTopicsResponse,
    DescribeLogDirsRequest,
    DescribeLogDirsResponse,
    DescribeProducersRequest,
    DescribeProducersResponse,
    InitProducerIdRequest,
    InitProducerIdResponse,
    LogDirPartition,
    NewPartitions,
    NewTopic,
    TopicResult,
)
from trioring.storage.producers import ActiveProducer

logger = logging.getLogger("trioring.admin")
client_log = RateLimitedLogger(logger)

__all__ = [
    "create_partitions",
    "create_topic",
    "create_topics",
    "delete_topics",
    "describe_configs",
    "describe_log_dirs",
    "describe_producers",
    "init_producer_id",
    "kafka_topic_configs",
    "log_config_from_kafka",
]


_Entry = TypeVar("_Entry")


async def _each_topic(
    entries: Sequence[_Entry],
    name_of: Callable[[_Entry], str],
    one: Callable[[_Entry], Awaitable[CreatedTopic | None]],
) -> tuple[TopicResult, ...]:
    """Run ``one`` for each entry of a topic request; each TrioringError is that topic's result.

    A topic named twice gets INVALID_REQUEST in both entries and nothing is
    done for it, as Kafka answers.
    """
    names = [name_of(entry) for entry in entries]
    repeated = {name for name, count in Counter(names).items() if count > 1}
    results = []
    for name, entry in zip(names, entries, strict=True):
        error: TrioringError | None = None
        created = None
        try:
            if name in repeated:
                raise InvalidArgumentError(f"topic {name!r} is named twice in the request")
            created = await one(entry)
        except TrioringError as caught:
            error = caught
        results.append(TopicResult(name, error, created))
    return tuple(results)


def _node_ids(ctx: HandlerContext) -> set[int]:
    """The node ids a manual assignment may name: every worker's (this one's when alone)."""
    return {node.node_id for node in ctx.cluster.current_nodes} or {ctx.cluster.worker_index}


# --- CreateTopics ---------------------------------------------------------------------


async def create_topic(ctx: HandlerContext, request: CreateTopicRequest) -> CreateTopicResponse:
    """One topic with trioring's own settings (the embedded API and auto-creation)."""
    topic = await ctx.cluster.create_topic(request.name, request.partitions, request.config)
    return CreateTopicResponse(topic)


def _partition_count(ctx: HandlerContext, topic: NewTopic) -> int | None:
    """The partition count a CreateTopics entry asks for (None: the broker's default).

    Checks in Kafka's order: replication factor, partition count, then
    manual assignments, which trioring accepts when they place every
    partition, numbered from 0, on one node (that node's worker then owns it
    only if the controller places it there: placement is the controller's).
    """
    factor, partitions = topic.replication_factor, topic.partitions
    if factor == 0 or factor < -1:
        raise ReplicationFactorError(f"replication factor must be -1 or 1, not {factor}")
    if factor > 1:
        raise ReplicationFactorError(
            f"replication factor {factor} is larger than the 1 replica trioring keeps per partition"
        )
    if partitions == 0 or partitions < -1:
        raise InvalidPartitionsError(f"a topic needs at least 1 partition, not {partitions}")
    if not topic.assignments:
        return None if partitions == -1 else partitions
    if factor != -1 or partitions != -1:
        raise InvalidArgumentError(
            "give either assignments or a partition count and replication factor, not both"
        )
    indexes = sorted(index for index, _ in topic.assignments)
    if indexes != list(range(len(indexes))):
        raise ReplicaAssignmentError("assigned partitions must be numbered 0, 1, 2, ... once each")
    node_ids = _node_ids(ctx)
    for index, brokers in topic.assignments:
        if len(brokers) != 1 or brokers[0] not in node_ids:
            raise ReplicaAssignmentError(
                f"partition {index} is assigned to brokers {list(brokers)}; give one of "
                f"{sorted(node_ids)} (one replica per partition)"
            )
    return len(indexes)


async def create_topics(ctx: HandlerContext, request: CreateTopicsRequest) -> CreateTopicsResponse:
    async def create(topic: NewTopic) -> CreatedTopic:
        partitions = _partition_count(ctx, topic)
        overrides = {name: str(value) for name, value in topic.configs}
        config = log_config_from_kafka(topic_defaults(ctx), dict(topic.configs))
        if request.validate_only:
            validate_topic_name(topic.name)
            if partitions is not None:
                validate_partitions(partitions)
            if topic.name in ctx.cluster.current.topics:
                raise TopicExistsError(f"topic {topic.name!r} already exists")
            await trio.lowlevel.checkpoint()
            count = ctx.shard.config.default_partitions if partitions is None else partitions
            return CreatedTopic(count, "", topic_config_entries(ctx, config, overrides, None))
        info = await ctx.cluster.create_topic(topic.name, partitions, config, overrides)
        return CreatedTopic(
            info.partitions,
            info.topic_id,
            topic_config_entries(ctx, info.config, overrides, None),
        )

    return CreateTopicsResponse(await _each_topic(request.topics, _name_of, create))


async def delete_topics(ctx: HandlerContext, request: DeleteTopicsRequest) -> DeleteTopicsResponse:
    async def delete(name: str) -> None:
        await ctx.cluster.delete_topic(name)

    return DeleteTopicsResponse(await _each_topic(request.names, str, delete))


async def create_partitions(
    ctx: HandlerContext, request: CreatePartitionsRequest
) -> CreatePartitionsResponse:
    """Kafka's CreatePartitions: grow topics; manual placement is the controller's to make."""

    async def grow(topic: NewPartitions) -> None:
        info = ctx.cluster.current.topics.get(topic.name)
        if info is None or info.internal:
            raise UnknownTopicOrPartitionError(f"unknown topic {topic.name!r}")
        if topic.count <= info.partitions:
            raise InvalidPartitionsError(
                f"topic {topic.name!r} has {info.partitions} partitions; the new count must "
                f"be larger, not {topic.count}"
            )
        validate_partitions(topic.count)
        if topic.assignments is not None:
            added = topic.count - info.partitions
            if len(topic.assignments) != added:
                raise ReplicaAssignmentError(
                    f"{len(topic.assignments)} assignments for {added} new partitions"
                )
            node_ids = _node_ids(ctx)
            for brokers in topic.assignments:
                if len(brokers) != 1 or brokers[0] not in node_ids:
                    raise ReplicaAssignmentError(
                        f"assignment {list(brokers)} must name one of {sorted(node_ids)}"
                    )
        if request.validate_only:
            await trio.lowlevel.checkpoint()
        else:
            await ctx.cluster.create_partitions(topic.name, topic.count)

    return CreatePartitionsResponse(await _each_topic(request.topics, _name_of, grow))


def _name_of(topic: NewTopic | NewPartitions) -> str:
    return topic.name


# --- InitProducerId ---------------------------------------------------------------------


async def init_producer_id(
    ctx: HandlerContext, request: InitProducerIdRequest
) -> InitProducerIdResponse:
    """A producer id for an idempotent producer; transactions are refused."""
    if request.transactional_id is not None:
        client_log.warning(
            "client %s asked for transactional id %s: transactions are not supported",
            printable(ctx.client_id),
            printable(request.transactional_id),
        )
        raise KafkaError(
            "transactions are not supported", ErrorCode.transactional_id_authorization_failed
        )
    producer_id = await ctx.cluster.allocate_producer_id()
    return InitProducerIdResponse(producer_id, 0)


# --- DescribeProducers -------------------------------------------------------------------


async def describe_producers(
    ctx: HandlerContext, request: DescribeProducersRequest
) -> DescribeProducersResponse:
    """The idempotent producers each partition remembers (Kafka's DescribeProducers).

    A partition of another worker gets NOT_LEADER_OR_FOLLOWER, an unknown one
    UNKNOWN_TOPIC_OR_PARTITION. Without transactions there is no coordinator
    epoch and no open transaction: -1 in both fields, as Kafka for an
    idempotent producer.
    """
    results: dict[tuple[str, int], tuple[ActiveProducer, ...] | TrioringError] = {}
    for topic, partition in request.partitions:
        try:
            results[(topic, partition)] = tuple(ctx.shard.log(topic, partition).producers.active())
        except TrioringError as error:
            results[(topic, partition)] = error
    await trio.lowlevel.checkpoint()
    return DescribeProducersResponse(results)


# --- DescribeLogDirs --------------------------------------------------------------------


async def describe_log_dirs(
    ctx: HandlerContext, request: DescribeLogDirsRequest
) -> DescribeLogDirsResponse:
    """This worker's partitions in the data directory: sizes on disk and offset lags.

    Partitions this worker does not own, unknown ones and offline ones are
    left out, as a Kafka broker answers for the replicas it hosts.
    """
    log_dir = os.path.abspath(ctx.shard.config.data_dir)  # noqa: ASYNC240 - no disk I/O
    usage = await trio.to_thread.run_sync(os.statvfs, log_dir)
    wanted = request.partitions
    partitions = tuple(
        LogDirPartition(
            topic,
            partition,
            log.size_bytes,
            # One replica: it is the leader, its log end is the high watermark.
            max(log.high_watermark.value - log.log_end_offset, 0),
        )
        for topic, partition, log in sorted(ctx.shard.partition_logs(), key=lambda e: e[:2])
        if wanted is None or partition in wanted.get(topic, ())
    )
    return DescribeLogDirsResponse(
        log_dir,
        usage.f_blocks * usage.f_frsize,
        usage.f_bavail * usage.f_frsize,
        partitions,
    )

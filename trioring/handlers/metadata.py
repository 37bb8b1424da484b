"""Metadata and FindCoordinator: where clients send what.

Every worker is a Kafka node (node id = worker index, its own advertised
address), and each partition's leader is the worker that owns it, so
clients send every request straight to the right worker. A group's
coordinator is the owner of its ``__consumer_offsets`` partition.
"""

from __future__ import annotations

import logging
import time

import trio
from kio.schema.errors import ErrorCode

from trioring._logging import printable
from trioring.cluster.model import validate_topic_name
from trioring.errors import (
    InvalidArgumentError,
    InvalidTopicError,
    KafkaError,
    TrioringError,
    UnknownTopicOrPartitionError,
)
from trioring.handlers.context import HandlerContext
from trioring.handlers.messages import (
    CLUSTER_METADATA_TOPIC,
    GROUP_KEY,
    TRANSACTION_KEY,
    DescribeQuorumRequest,
    DescribeQuorumResponse,
    FindCoordinatorRequest,
    FindCoordinatorResponse,
    MetadataRequest,
    MetadataResponse,
    PartitionMetadata,
    TopicMetadata,
)

logger = logging.getLogger("trioring.metadata")

__all__ = ["describe_quorum", "find_coordinator", "metadata"]

#: The controller's node id, as Metadata and DescribeCluster report it.
CONTROLLER_ID = 0
#: The controller never changes (there is one, the supervisor): one epoch.
CONTROLLER_EPOCH = 0


async def metadata(ctx: HandlerContext, request: MetadataRequest) -> MetadataResponse:
    """Topics, their partitions' leaders and every node, auto-creating topics if allowed."""
    known = ctx.cluster.current.user_topics()
    if request.topics is None:
        names: list[str] = sorted(known)
    else:
        names = list(request.topics)
    allow_create = ctx.auto_create_topics and request.allow_auto_topic_creation
    topics = []
    for name in names:
        code: int = ErrorCode.none
        info = known.get(name)
        if info is None:
            try:
                # Kafka answers INVALID_TOPIC_EXCEPTION for a name no topic can have.
                validate_topic_name(name)
            except InvalidTopicError as error:
                code = error.kafka_error_code
        if info is None and allow_create and code == ErrorCode.none:
            try:
                info = await ctx.cluster.create_topic(name)
                logger.info("auto-created topic %s for client %s", name, printable(ctx.client_id))
            except TrioringError as error:
                code = error.kafka_error_code
                if code == ErrorCode.topic_already_exists:  # created concurrently
                    info = ctx.cluster.current.topics.get(name)
                    code = ErrorCode.none
        if info is None:
            if code == ErrorCode.none:
                code = UnknownTopicOrPartitionError.kafka_error_code
            topics.append(TopicMetadata(name, code))
            continue
        partitions = tuple(
            PartitionMetadata(index, owner) for index, owner in enumerate(info.owners)
        )
        topics.append(TopicMetadata(name, ErrorCode.none, partitions, info.internal, info.topic_id))
    await trio.lowlevel.checkpoint()
    view = ctx.cluster
    return MetadataResponse(
        view.cluster_id,
        # The controller is the supervisor, not a node: clients only need a
        # node id here, and node 0 is the bootstrap node.
        CONTROLLER_ID,
        view.nodes.value,
        tuple(topics),
    )


async def find_coordinator(
    ctx: HandlerContext, request: FindCoordinatorRequest
) -> FindCoordinatorResponse:
    await trio.lowlevel.checkpoint()
    if request.key_type not in (GROUP_KEY, TRANSACTION_KEY):
        raise InvalidArgumentError(f"coordinator key type {request.key_type} is neither 0 nor 1")
    if request.key_type == TRANSACTION_KEY:
        return FindCoordinatorResponse(
            None,
            KafkaError("transactions are not supported", ErrorCode.coordinator_not_available),
        )
    coordinator = ctx.cluster.current.coordinator(request.key)
    node = None if coordinator is None else ctx.cluster.node(coordinator)
    if node is None:
        return FindCoordinatorResponse(
            None,
            KafkaError("the coordinator is not available yet", ErrorCode.coordinator_not_available),
        )
    return FindCoordinatorResponse(node)


async def describe_quorum(
    ctx: HandlerContext, request: DescribeQuorumRequest
) -> DescribeQuorumResponse:
    """The metadata quorum: one voter, the controller, leading since it started.

    Its log end and high watermark are the count of metadata changes applied
    (the version this worker holds). As Kafka: anything but exactly
    ``__cluster_metadata`` partition 0 gets UNKNOWN_TOPIC_OR_PARTITION.
    """
    await trio.lowlevel.checkpoint()
    error = None
    if request.partitions != ((CLUSTER_METADATA_TOPIC, 0),):
        error = UnknownTopicOrPartitionError(
            f"DescribeQuorum describes {CLUSTER_METADATA_TOPIC} partition 0 only"
        )
    return DescribeQuorumResponse(
        error,
        CONTROLLER_ID,
        CONTROLLER_EPOCH,
        ctx.cluster.current.version,
        int(time.time() * 1000),
        ctx.cluster.node(CONTROLLER_ID),
    )

"""Metadata and FindCoordinator: where clients send what.

Every worker is a Kafka node (node id = worker index, its own advertised
address), and each partition's leader is the worker that owns it, so
clients send every request straight to the right worker. A group's
coordinator is the owner of its ``__consumer_offsets`` partition.
"""

from __future__ import annotations

import logging

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
    GROUP_KEY,
    TRANSACTION_KEY,
    FindCoordinatorRequest,
    FindCoordinatorResponse,
    MetadataRequest,
    MetadataResponse,
    PartitionMetadata,
    TopicMetadata,
)

logger = logging.getLogger("trioring.metadata")

__all__ = ["find_coordinator", "metadata"]


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
        0,
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

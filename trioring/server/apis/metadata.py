"""Wire adapters of Metadata (with its encoded-answer cache) and FindCoordinator."""

from __future__ import annotations

from typing import Any

import trio

from trioring.handlers.messages import FindCoordinatorRequest, MetadataRequest, MetadataResponse
from trioring.protocol.kafka import ApiKey, encode_response_body, response_schema
from trioring.server.apis._build import build, sibling
from trioring.server.apis._context import NONE, ApiContext, error_code, error_message

__all__ = ["find_coordinator", "metadata"]


async def metadata(ctx: ApiContext, version: int, request: Any) -> Any:
    if request.topics is None or (version == 0 and not request.topics):
        names = None  # every topic
    else:
        names = tuple(topic.name for topic in request.topics)
    # v4 lets the client say no (librdkafka consumers do); earlier versions always allow.
    allow_create = getattr(request, "allow_auto_topic_creation", True)
    response = await ctx.handlers.metadata(
        ctx.handler_context(), MetadataRequest(names, allow_auto_topic_creation=allow_create)
    )
    key = (version, response)  # the whole answer: attrs values compare by content
    cached = ctx.metadata_cache.get(key)
    if cached is None:
        cached = encode_response_body(_metadata_response(version, response))
        ctx.metadata_cache.put(key, cached)
    await trio.lowlevel.checkpoint()
    return cached


def _metadata_response(version: int, response: MetadataResponse) -> Any:
    response_class = response_schema(ApiKey.METADATA, version)
    topic_class = sibling(response_class, "MetadataResponseTopic")
    partition_class = sibling(response_class, "MetadataResponsePartition")
    broker_class = sibling(response_class, "MetadataResponseBroker")
    topics = [
        build(
            topic_class,
            error_code=topic.error_code,
            name=topic.name,
            is_internal=topic.internal,
            partitions=tuple(
                build(
                    partition_class,
                    error_code=partition.error_code,
                    partition_index=partition.partition,
                    leader_id=partition.leader,
                    leader_epoch=0,
                    replica_nodes=(partition.leader,),
                    isr_nodes=(partition.leader,),
                    offline_replicas=(),
                )
                for partition in topic.partitions
            ),
        )
        for topic in response.topics
    ]
    brokers = tuple(
        build(broker_class, node_id=node.node_id, host=node.host, port=node.port, rack=None)
        for node in response.nodes
    )
    return build(
        response_class,
        brokers=brokers,
        cluster_id=response.cluster_id,
        controller_id=response.controller_id,
        topics=tuple(topics),
    )


async def find_coordinator(ctx: ApiContext, version: int, request: Any) -> Any:
    response_class = response_schema(ApiKey.FIND_COORDINATOR, version)
    response = await ctx.handlers.find_coordinator(
        ctx.handler_context(),
        FindCoordinatorRequest(request.key, int(getattr(request, "key_type", 0))),
    )
    node = response.node
    if node is None or response.error is not None:
        return build(
            response_class,
            error_code=error_code(response.error),
            error_message=error_message(response.error),
            node_id=-1,
            host="",
            port=-1,
        )
    return build(
        response_class,
        error_code=NONE,
        error_message=None,
        node_id=node.node_id,
        host=node.host,
        port=node.port,
    )

"""Wire adapters of ListPartitionReassignments, AlterPartitionReassignments, ElectLeaders."""

from __future__ import annotations

from typing import Any

from trioring.handlers.messages import (
    AlterReassignmentsRequest,
    ElectLeadersRequest,
    ListReassignmentsRequest,
)
from trioring.protocol.kafka import ApiKey, response_schema
from trioring.server.apis._build import build, sibling
from trioring.server.apis._context import NONE, ApiContext, error_code, error_message

__all__ = ["alter_partition_reassignments", "elect_leaders", "list_partition_reassignments"]


async def list_partition_reassignments(ctx: ApiContext, version: int, request: Any) -> Any:
    response_class = response_schema(ApiKey.LIST_PARTITION_REASSIGNMENTS, version)
    topic_class = sibling(response_class, "OngoingTopicReassignment")
    partition_class = sibling(response_class, "OngoingPartitionReassignment")
    wanted = None
    if request.topics is not None:
        wanted = {t.name: tuple(int(p) for p in t.partition_indexes) for t in request.topics}
    response = await ctx.handlers.list_reassignments(
        ctx.handler_context(), ListReassignmentsRequest(wanted)
    )
    by_topic: dict[str, list[Any]] = {}
    for topic, partition, replicas, adding, removing in response.ongoing:
        by_topic.setdefault(topic, []).append(
            build(
                partition_class,
                partition_index=partition,
                replicas=replicas,
                adding_replicas=adding,
                removing_replicas=removing,
            )
        )
    return build(
        response_class,
        error_code=NONE,
        error_message=None,
        topics=tuple(
            build(topic_class, name=name, partitions=tuple(partitions))
            for name, partitions in by_topic.items()
        ),
    )


async def alter_partition_reassignments(ctx: ApiContext, version: int, request: Any) -> Any:
    response_class = response_schema(ApiKey.ALTER_PARTITION_REASSIGNMENTS, version)
    topic_class = sibling(response_class, "ReassignableTopicResponse")
    partition_class = sibling(response_class, "ReassignablePartitionResponse")
    targets = tuple(
        (
            topic.name,
            int(partition.partition_index),
            None if partition.replicas is None else tuple(int(r) for r in partition.replicas),
        )
        for topic in request.topics
        for partition in topic.partitions
    )
    response = await ctx.handlers.alter_reassignments(
        ctx.handler_context(), AlterReassignmentsRequest(targets)
    )
    results = iter(response.results)
    answers = []
    for topic in request.topics:
        partitions = []
        for partition in topic.partitions:
            error = next(results)
            partitions.append(
                build(
                    partition_class,
                    partition_index=partition.partition_index,
                    error_code=error_code(error),
                    error_message=error_message(error),
                )
            )
        answers.append(build(topic_class, name=topic.name, partitions=tuple(partitions)))
    return build(response_class, error_code=NONE, error_message=None, responses=tuple(answers))


async def elect_leaders(ctx: ApiContext, version: int, request: Any) -> Any:
    response_class = response_schema(ApiKey.ELECT_LEADERS, version)
    topic_class = sibling(response_class, "ReplicaElectionResult")
    partition_class = sibling(response_class, "PartitionResult")
    # v0 has no election type: it always asks for the preferred leader.
    election_type = int(getattr(request, "election_type", 0))
    partitions = None
    if request.topic_partitions is not None:
        partitions = tuple(
            (topic.topic, int(partition))
            for topic in request.topic_partitions
            for partition in topic.partitions
        )
    response = await ctx.handlers.elect_leaders(
        ctx.handler_context(), ElectLeadersRequest(election_type, partitions)
    )
    by_topic: dict[str, list[Any]] = {}
    for (topic, partition), error in zip(partitions or (), response.results, strict=True):
        by_topic.setdefault(topic, []).append(
            build(
                partition_class,
                partition_id=partition,
                error_code=error_code(error),
                error_message=error_message(error),
            )
        )
    return build(
        response_class,
        error_code=NONE,
        replica_election_results=tuple(
            build(topic_class, topic=topic, partition_result=tuple(results))
            for topic, results in by_topic.items()
        ),
    )

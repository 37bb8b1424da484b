"""Replica placement: ListPartitionReassignments, AlterPartitionReassignments, ElectLeaders.

trioring keeps one replica per partition, on the worker that owns it, so
these answer as a Kafka cluster whose every partition has replication factor
1 answers: no reassignment is ever in progress, the leader is always the
preferred one and there is no other replica to elect. Requests are validated
as Kafka validates them; what Kafka would do but trioring cannot (adding
replicas, moving a partition to another worker at run time) is refused with
Kafka's error code and a message, never acknowledged without being done.
"""

from __future__ import annotations

import trio
from kio.schema.errors import ErrorCode

from trioring.errors import (
    InvalidArgumentError,
    KafkaError,
    ReplicaAssignmentError,
    ReplicationFactorError,
    TrioringError,
    UnknownTopicOrPartitionError,
)
from trioring.handlers.context import HandlerContext
from trioring.handlers.messages import (
    AlterReassignmentsRequest,
    AlterReassignmentsResponse,
    ElectLeadersRequest,
    ElectLeadersResponse,
    ListReassignmentsRequest,
    ListReassignmentsResponse,
)

__all__ = ["alter_reassignments", "elect_leaders", "list_reassignments"]

#: ElectLeaders election types: preferred (0) and unclean (1).
ELECTION_TYPES = (0, 1)


def _owner(ctx: HandlerContext, topic: str, partition: int) -> int:
    """The node holding the partition's one replica; UNKNOWN_TOPIC_OR_PARTITION if none."""
    info = ctx.cluster.current.topics.get(topic)
    if info is None or info.internal or not 0 <= partition < info.partitions:
        raise UnknownTopicOrPartitionError(f"unknown partition {topic}-{partition}")
    return info.owners[partition]


async def list_reassignments(
    ctx: HandlerContext, request: ListReassignmentsRequest
) -> ListReassignmentsResponse:
    """The reassignments in progress: none can be, as AlterPartitionReassignments completes
    (or refuses) at once. Unknown topics and partitions are left out, as in Kafka."""
    await trio.lowlevel.checkpoint()
    return ListReassignmentsResponse(())


async def alter_reassignments(
    ctx: HandlerContext, request: AlterReassignmentsRequest
) -> AlterReassignmentsResponse:
    """Check each target against the partition's one replica.

    The replica it already has: done (Kafka completes a reassignment to the
    current replicas at once). Cancelling (None): NO_REASSIGNMENT_IN_PROGRESS.
    Other targets are refused: more than one replica INVALID_REPLICATION_FACTOR,
    an empty, repeated or unknown node INVALID_REPLICA_ASSIGNMENT, another
    worker INVALID_REPLICA_ASSIGNMENT (partitions do not move at run time).
    """
    node_ids = {node.node_id for node in ctx.cluster.current_nodes} or {ctx.cluster.worker_index}
    results: list[TrioringError | None] = []
    for topic, partition, replicas in request.targets:
        try:
            owner = _owner(ctx, topic, partition)
            if replicas is None:
                raise KafkaError(
                    f"no reassignment of {topic}-{partition} is in progress",
                    ErrorCode.no_reassignment_in_progress,
                )
            if not replicas:
                raise ReplicaAssignmentError(f"the replica list of {topic}-{partition} is empty")
            if len(set(replicas)) != len(replicas):
                raise ReplicaAssignmentError(
                    f"the replica list of {topic}-{partition} repeats a node"
                )
            unknown = sorted(set(replicas) - node_ids)
            if unknown:
                raise ReplicaAssignmentError(
                    f"nodes {unknown} do not exist (nodes: {sorted(node_ids)})"
                )
            if len(replicas) > 1:
                raise ReplicationFactorError(
                    f"{topic}-{partition} cannot have {len(replicas)} replicas: "
                    "trioring keeps one replica per partition"
                )
            if replicas[0] != owner:
                raise ReplicaAssignmentError(
                    f"{topic}-{partition} is on node {owner}; trioring does not move "
                    "partitions between workers at run time"
                )
            results.append(None)
        except TrioringError as error:
            results.append(error)
    await trio.lowlevel.checkpoint()
    return AlterReassignmentsResponse(tuple(results))


async def elect_leaders(ctx: HandlerContext, request: ElectLeadersRequest) -> ElectLeadersResponse:
    """ELECTION_NOT_NEEDED for every partition named: its one replica leads already.

    All partitions (None) answers no partitions, as Kafka leaves out those
    that need no election. An election type other than preferred (0) or
    unclean (1) refuses the request (INVALID_REQUEST).
    """
    if request.election_type not in ELECTION_TYPES:
        raise InvalidArgumentError(
            f"election type {request.election_type} is neither 0 (preferred) nor 1 (unclean)"
        )
    await trio.lowlevel.checkpoint()
    if request.partitions is None:
        return ElectLeadersResponse(())
    results: list[TrioringError] = []
    for topic, partition in request.partitions:
        try:
            owner = _owner(ctx, topic, partition)
            raise KafkaError(
                f"{topic}-{partition}'s one replica, node {owner}, is its leader already",
                ErrorCode.election_not_needed,
            )
        except TrioringError as error:
            results.append(error)
    return ElectLeadersResponse(tuple(results))

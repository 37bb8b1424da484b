"""The consumer-group APIs: the classic protocol (JoinGroup, SyncGroup, Heartbeat,
LeaveGroup), the consumer protocol of KIP-848 (ConsumerGroupHeartbeat,
ConsumerGroupDescribe), and DescribeGroups, ListGroups, DeleteGroups, OffsetDelete.

Each group has one coordinator, the worker that owns its
``__consumer_offsets`` partition; a request for a group coordinated
elsewhere gets NOT_COORDINATOR, and the client asks FindCoordinator again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import attrs
import trio
from kio.schema.errors import ErrorCode

from trioring.core.groups import (
    ConsumerGroupDescription,
    ConsumerHeartbeatResult,
    GroupDescription,
    JoinGroupResult,
    LeaveGroupResult,
    ListGroupsResult,
    SyncGroupResult,
)
from trioring.core.offsets import validate_group
from trioring.errors import GroupCoordinatorError, TrioringError
from trioring.handlers.context import HandlerContext
from trioring.handlers.messages import (
    ConsumerGroupDescribeRequest,
    ConsumerGroupDescribeResponse,
    ConsumerGroupHeartbeatRequest,
    DeleteGroupsRequest,
    DeleteGroupsResponse,
    DescribeGroupsRequest,
    DescribeGroupsResponse,
    HeartbeatRequest,
    HeartbeatResponse,
    JoinGroupRequest,
    LeaveGroupRequest,
    ListGroupsRequest,
    OffsetDeleteRequest,
    OffsetDeleteResponse,
    SyncGroupRequest,
)

__all__ = [
    "consumer_group_describe",
    "consumer_group_heartbeat",
    "delete_groups",
    "describe_groups",
    "heartbeat",
    "join_group",
    "leave_group",
    "list_groups",
    "offset_delete",
    "sync_group",
]

_T = TypeVar("_T")


async def _unless_stopping(ctx: HandlerContext, wait: Callable[[], Awaitable[_T]]) -> _T:
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


async def join_group(ctx: HandlerContext, request: JoinGroupRequest) -> JoinGroupResult:
    ctx.shard.coordinator_check(request.group_id)

    async def join() -> JoinGroupResult:
        return await ctx.shard.coordinator.join_group(
            group_id=request.group_id,
            member_id=request.member_id,
            group_instance_id=request.group_instance_id,
            protocol_type=request.protocol_type,
            protocols=request.protocols,
            session_timeout_ms=request.session_timeout_ms,
            rebalance_timeout_ms=request.rebalance_timeout_ms,
            client_id=ctx.client_id,
            client_host=ctx.client_host,
            api_version=request.api_version,
            metadata=ctx.cluster.current,
        )

    return await _unless_stopping(ctx, join)


async def sync_group(ctx: HandlerContext, request: SyncGroupRequest) -> SyncGroupResult:
    ctx.shard.coordinator_check(request.group_id)

    async def sync() -> SyncGroupResult:
        return await ctx.shard.coordinator.sync_group(
            group_id=request.group_id,
            generation_id=request.generation_id,
            member_id=request.member_id,
            group_instance_id=request.group_instance_id,
            assignments=dict(request.assignments),
        )

    result = await _unless_stopping(ctx, sync)
    # Checked on the answer, where the group's protocol is known; Kafka checks
    # first, but no client sends a protocol other than the one it joined with.
    if result.error_code == ErrorCode.none and (
        (request.protocol_type is not None and request.protocol_type != result.protocol_type)
        or (request.protocol_name is not None and request.protocol_name != result.protocol_name)
    ):
        return SyncGroupResult(ErrorCode.inconsistent_group_protocol)
    return result


async def heartbeat(ctx: HandlerContext, request: HeartbeatRequest) -> HeartbeatResponse:
    ctx.shard.coordinator_check(request.group_id)
    code = ctx.shard.coordinator.heartbeat(
        group_id=request.group_id,
        generation_id=request.generation_id,
        member_id=request.member_id,
        group_instance_id=request.group_instance_id,
    )
    await trio.lowlevel.checkpoint()
    return HeartbeatResponse(code)


async def leave_group(ctx: HandlerContext, request: LeaveGroupRequest) -> LeaveGroupResult:
    ctx.shard.coordinator_check(request.group_id)
    result = ctx.shard.coordinator.leave_group(
        group_id=request.group_id,
        member_ids=request.member_ids,
        group_instance_ids=request.group_instance_ids,
    )
    await trio.lowlevel.checkpoint()
    return result


async def describe_groups(
    ctx: HandlerContext, request: DescribeGroupsRequest
) -> DescribeGroupsResponse:
    """Groups this worker coordinates are described; the others get NOT_COORDINATOR each."""
    ours = []
    elsewhere: dict[str, TrioringError] = {}
    for group_id in request.group_ids:
        try:
            ctx.shard.coordinator_check(group_id)
            ours.append(group_id)
        except TrioringError as error:
            elsewhere[group_id] = error
    described = {d.group_id: d for d in ctx.shard.coordinator.describe_groups(ours)}
    groups = []
    for group_id in request.group_ids:
        refusal = elsewhere.get(group_id)
        if refusal is None:
            groups.append(described[group_id])
        else:
            groups.append(GroupDescription(refusal.kafka_error_code, group_id, "", "", ""))
    await trio.lowlevel.checkpoint()
    return DescribeGroupsResponse(tuple(groups))


async def list_groups(ctx: HandlerContext, request: ListGroupsRequest) -> ListGroupsResult:
    """The groups this worker coordinates (clients ask every node, as with Kafka)."""
    result = ctx.shard.coordinator.list_groups(request.states)
    await trio.lowlevel.checkpoint()
    return result


async def delete_groups(ctx: HandlerContext, request: DeleteGroupsRequest) -> DeleteGroupsResponse:
    """Delete Empty groups and their committed offsets, durably, one result per group.

    As Kafka: a group with members is NON_EMPTY_GROUP, one with neither
    members nor offsets GROUP_ID_NOT_FOUND, one coordinated elsewhere
    NOT_COORDINATOR.
    """
    results: list[tuple[str, TrioringError | None]] = []
    for group_id in request.group_ids:
        try:
            validate_group(group_id)
            ctx.shard.coordinator_check(group_id)
            code = ctx.shard.coordinator.delete_group(group_id)
            if code is not None and code != ErrorCode.none:
                raise GroupCoordinatorError(f"group {group_id!r} has members", code)
            store = ctx.shard.offsets_if_open(group_id)
            if code is None and (store is None or not store.committed(group_id)):
                raise GroupCoordinatorError(
                    f"group {group_id!r} does not exist", ErrorCode.group_id_not_found
                )
            if store is not None:
                await store.delete_group(group_id)
            results.append((group_id, None))
        except TrioringError as error:
            results.append((group_id, error))
    await trio.lowlevel.checkpoint()
    return DeleteGroupsResponse(tuple(results))


async def offset_delete(ctx: HandlerContext, request: OffsetDeleteRequest) -> OffsetDeleteResponse:
    """Delete a group's committed offsets of some partitions, durably (OffsetDelete).

    The group-level refusals (INVALID_GROUP_ID, NOT_COORDINATOR,
    GROUP_ID_NOT_FOUND, NON_EMPTY_GROUP) are raised; a partition of a topic a
    member subscribes to gets GROUP_SUBSCRIBED_TO_TOPIC, as in Kafka.
    """
    group_id = request.group_id
    validate_group(group_id)
    ctx.shard.coordinator_check(group_id)
    code, subscribed = ctx.shard.coordinator.offset_delete_check(group_id, ctx.cluster.current)
    if code != ErrorCode.none:
        raise GroupCoordinatorError(
            f"group {group_id!r} has members that do not use the consumer protocol", code
        )
    store = ctx.shard.offsets_if_open(group_id)
    known = store is not None and bool(store.committed(group_id))
    if not known and not ctx.shard.coordinator.has_group(group_id):
        raise GroupCoordinatorError(
            f"group {group_id!r} does not exist", ErrorCode.group_id_not_found
        )
    results: dict[tuple[str, int], TrioringError | None] = {}
    doomed = []
    for topic, partition in request.partitions:
        if subscribed is None or topic in subscribed:
            results[(topic, partition)] = GroupCoordinatorError(
                f"a member of group {group_id!r} subscribes to topic {topic!r}",
                ErrorCode.group_subscribed_to_topic,
            )
        else:
            results[(topic, partition)] = None
            doomed.append((topic, partition))
    if store is not None:
        await store.delete(group_id, doomed)
    else:
        await trio.lowlevel.checkpoint()
    return OffsetDeleteResponse(results)


async def consumer_group_heartbeat(
    ctx: HandlerContext, request: ConsumerGroupHeartbeatRequest
) -> ConsumerHeartbeatResult:
    """ConsumerGroupHeartbeat (KIP-848): the member's next assignment, computed here."""
    ctx.shard.coordinator_check(request.group_id)
    result = ctx.shard.coordinator.consumer_group_heartbeat(
        attrs.evolve(request, client_id=ctx.client_id, client_host=ctx.client_host),
        ctx.cluster.current,
    )
    await trio.lowlevel.checkpoint()
    return result


async def consumer_group_describe(
    ctx: HandlerContext, request: ConsumerGroupDescribeRequest
) -> ConsumerGroupDescribeResponse:
    """ConsumerGroupDescribe; groups coordinated elsewhere get NOT_COORDINATOR each."""
    groups = []
    for group_id in request.group_ids:
        try:
            ctx.shard.coordinator_check(group_id)
        except TrioringError as error:
            groups.append(ConsumerGroupDescription(error.kafka_error_code, group_id, str(error)))
            continue
        groups.append(ctx.shard.coordinator.consumer_group_describe(group_id))
    topics_by_id = ctx.cluster.current.topics_by_id
    names = {
        topic_id: topics_by_id[topic_id].name
        for group in groups
        for member in group.members
        for topic_id, _ in member.assignment | member.target_assignment
        if topic_id in topics_by_id
    }
    await trio.lowlevel.checkpoint()
    return ConsumerGroupDescribeResponse(tuple(groups), names)

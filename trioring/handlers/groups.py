"""The classic consumer-group APIs: JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
DescribeGroups, ListGroups.

Each group has one coordinator, the worker that owns its
``__consumer_offsets`` partition; a request for a group coordinated
elsewhere gets NOT_COORDINATOR, and the client asks FindCoordinator again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio
from kio.schema.errors import ErrorCode

from trioring.core.groups import (
    GroupDescription,
    JoinGroupResult,
    LeaveGroupResult,
    ListGroupsResult,
    SyncGroupResult,
)
from trioring.errors import GroupCoordinatorError, TrioringError
from trioring.handlers.context import HandlerContext
from trioring.handlers.messages import (
    DescribeGroupsRequest,
    DescribeGroupsResponse,
    HeartbeatRequest,
    HeartbeatResponse,
    JoinGroupRequest,
    LeaveGroupRequest,
    ListGroupsRequest,
    SyncGroupRequest,
)

__all__ = [
    "describe_groups",
    "heartbeat",
    "join_group",
    "leave_group",
    "list_groups",
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
    )
    await trio.lowlevel.checkpoint()
    return HeartbeatResponse(code)


async def leave_group(ctx: HandlerContext, request: LeaveGroupRequest) -> LeaveGroupResult:
    ctx.shard.coordinator_check(request.group_id)
    result = ctx.shard.coordinator.leave_group(
        group_id=request.group_id, member_ids=request.member_ids
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

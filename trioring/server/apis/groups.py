"""Wire adapters of the classic group protocol: JoinGroup, SyncGroup, Heartbeat,
LeaveGroup, DescribeGroups, ListGroups."""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode

from trioring.handlers.messages import (
    DescribeGroupsRequest,
    HeartbeatRequest,
    JoinGroupRequest,
    LeaveGroupRequest,
    ListGroupsRequest,
    SyncGroupRequest,
)
from trioring.protocol.kafka import ApiKey, response_schema
from trioring.server.apis._build import build, sibling
from trioring.server.apis._context import ApiContext

__all__ = [
    "describe_groups",
    "heartbeat",
    "join_group",
    "leave_group",
    "list_groups",
    "sync_group",
]


def _milliseconds(value: Any) -> int:
    return int(value.total_seconds() * 1000)


async def join_group(ctx: ApiContext, version: int, request: Any) -> Any:
    response_class = response_schema(ApiKey.JOIN_GROUP, version)
    member_class = sibling(response_class, "JoinGroupResponseMember")
    rebalance_timeout = getattr(request, "rebalance_timeout", None)
    result = await ctx.handlers.join_group(
        ctx.handler_context(),
        JoinGroupRequest(
            group_id=request.group_id,
            member_id=request.member_id,
            protocol_type=request.protocol_type,
            protocols=tuple((protocol.name, protocol.metadata) for protocol in request.protocols),
            session_timeout_ms=_milliseconds(request.session_timeout),
            rebalance_timeout_ms=(
                None if rebalance_timeout is None else _milliseconds(rebalance_timeout)
            ),
            group_instance_id=getattr(request, "group_instance_id", None),
            api_version=version,
        ),
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
    result = await ctx.handlers.sync_group(
        ctx.handler_context(),
        SyncGroupRequest(
            group_id=request.group_id,
            generation_id=int(request.generation_id),
            member_id=request.member_id,
            assignments=tuple((item.member_id, item.assignment) for item in request.assignments),
            group_instance_id=getattr(request, "group_instance_id", None),
        ),
    )
    return build(response_class, error_code=result.error_code, assignment=result.assignment)


async def heartbeat(ctx: ApiContext, version: int, request: Any) -> Any:
    response_class = response_schema(ApiKey.HEARTBEAT, version)
    result = await ctx.handlers.heartbeat(
        ctx.handler_context(),
        HeartbeatRequest(
            group_id=request.group_id,
            generation_id=int(request.generation_id),
            member_id=request.member_id,
        ),
    )
    return build(response_class, error_code=result.error_code)


async def leave_group(ctx: ApiContext, version: int, request: Any) -> Any:
    response_class = response_schema(ApiKey.LEAVE_GROUP, version)
    result = await ctx.handlers.leave_group(
        ctx.handler_context(),
        LeaveGroupRequest(group_id=request.group_id, member_ids=(request.member_id,)),
    )
    code = result.error_code
    if code == ErrorCode.none and result.members:
        # v0-2 carry one member: its outcome is the answer.
        code = result.members[0].error_code
    return build(response_class, error_code=code)


async def describe_groups(ctx: ApiContext, version: int, request: Any) -> Any:
    response_class = response_schema(ApiKey.DESCRIBE_GROUPS, version)
    group_class = sibling(response_class, "DescribedGroup")
    member_class = sibling(response_class, "DescribedGroupMember")
    response = await ctx.handlers.describe_groups(
        ctx.handler_context(), DescribeGroupsRequest(tuple(request.groups))
    )
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
            for description in response.groups
        ),
    )


async def list_groups(ctx: ApiContext, version: int, request: Any) -> Any:
    response_class = response_schema(ApiKey.LIST_GROUPS, version)
    listed_class = sibling(response_class, "ListedGroup")
    result = await ctx.handlers.list_groups(ctx.handler_context(), ListGroupsRequest())
    return build(
        response_class,
        error_code=result.error_code,
        groups=tuple(
            build(listed_class, group_id=group.group_id, protocol_type=group.protocol_type)
            for group in result.groups
        ),
    )

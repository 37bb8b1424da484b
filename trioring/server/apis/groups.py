"""Wire adapters of the classic group protocol: JoinGroup, SyncGroup, Heartbeat,
LeaveGroup, DescribeGroups, ListGroups, DeleteGroups, OffsetDelete."""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode

from trioring.handlers.messages import (
    DeleteGroupsRequest,
    DescribeGroupsRequest,
    HeartbeatRequest,
    JoinGroupRequest,
    LeaveGroupRequest,
    ListGroupsRequest,
    OffsetDeleteRequest,
    SyncGroupRequest,
)
from trioring.protocol.kafka import ApiKey, response_schema
from trioring.server.apis._build import OPERATIONS_NOT_REQUESTED, build, sibling
from trioring.server.apis._context import NONE, ApiContext, error_code

__all__ = [
    "delete_groups",
    "describe_groups",
    "heartbeat",
    "join_group",
    "leave_group",
    "list_groups",
    "offset_delete",
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
        # v7+ send null where there is none; earlier versions "".
        protocol_name=result.protocol_name if version >= 7 else result.protocol_name or "",
        protocol_type=result.protocol_type,
        skip_assignment=result.skip_assignment,
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
            protocol_type=getattr(request, "protocol_type", None),
            protocol_name=getattr(request, "protocol_name", None),
        ),
    )
    return build(
        response_class,
        error_code=result.error_code,
        assignment=result.assignment,
        protocol_type=result.protocol_type,
        protocol_name=result.protocol_name,
    )


async def heartbeat(ctx: ApiContext, version: int, request: Any) -> Any:
    response_class = response_schema(ApiKey.HEARTBEAT, version)
    result = await ctx.handlers.heartbeat(
        ctx.handler_context(),
        HeartbeatRequest(
            group_id=request.group_id,
            generation_id=int(request.generation_id),
            member_id=request.member_id,
            group_instance_id=getattr(request, "group_instance_id", None),
        ),
    )
    return build(response_class, error_code=result.error_code)


#: LeaveGroup v3+ removes many members at once (KIP-345).
LEAVE_GROUP_BATCH_VERSION = 3
#: DescribeGroups v6+ answers GROUP_ID_NOT_FOUND for a group that does not exist (KIP-1043).
DESCRIBE_GROUPS_NOT_FOUND_VERSION = 6
#: Authorized operations of a group (KIP-430) as Kafka reports them without an
#: authorizer: READ (3), DELETE (6), DESCRIBE (8).
GROUP_OPERATIONS = (1 << 3) | (1 << 6) | (1 << 8)
#: The only group type trioring has (ListGroups v5 type filter, KIP-848).
CLASSIC_GROUP_TYPE = "classic"


async def leave_group(ctx: ApiContext, version: int, request: Any) -> Any:
    response_class = response_schema(ApiKey.LEAVE_GROUP, version)
    if version < LEAVE_GROUP_BATCH_VERSION:
        result = await ctx.handlers.leave_group(
            ctx.handler_context(),
            LeaveGroupRequest(group_id=request.group_id, member_ids=(request.member_id,)),
        )
        code = result.error_code
        if code == ErrorCode.none and result.members:
            # v0-2 carry one member: its outcome is the answer.
            code = result.members[0].error_code
        return build(response_class, error_code=code)
    member_class = sibling(response_class, "MemberResponse")
    result = await ctx.handlers.leave_group(
        ctx.handler_context(),
        LeaveGroupRequest(
            group_id=request.group_id,
            member_ids=tuple(member.member_id for member in request.members),
            group_instance_ids=tuple(member.group_instance_id for member in request.members),
        ),
    )
    codes = [member.error_code for member in result.members]
    if len(codes) != len(request.members):
        codes = [result.error_code] * len(request.members)
    return build(
        response_class,
        error_code=result.error_code,
        members=tuple(
            build(
                member_class,
                member_id=member.member_id,
                group_instance_id=member.group_instance_id,
                error_code=code,
            )
            for member, code in zip(request.members, codes, strict=True)
        ),
    )


async def describe_groups(ctx: ApiContext, version: int, request: Any) -> Any:
    response_class = response_schema(ApiKey.DESCRIBE_GROUPS, version)
    group_class = sibling(response_class, "DescribedGroup")
    member_class = sibling(response_class, "DescribedGroupMember")
    operations = (
        GROUP_OPERATIONS
        if getattr(request, "include_authorized_operations", False)
        else OPERATIONS_NOT_REQUESTED
    )
    response = await ctx.handlers.describe_groups(
        ctx.handler_context(), DescribeGroupsRequest(tuple(request.groups))
    )
    groups = []
    for description in response.groups:
        code, message = description.error_code, None
        if (
            version >= DESCRIBE_GROUPS_NOT_FOUND_VERSION
            and code == ErrorCode.none
            and description.state == "Dead"
        ):
            code = ErrorCode.group_id_not_found
            message = f"Group {description.group_id} not found."
        groups.append(
            build(
                group_class,
                error_code=code,
                error_message=message,
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
                authorized_operations=operations
                if code == ErrorCode.none
                else (OPERATIONS_NOT_REQUESTED),
            )
        )
    return build(response_class, groups=tuple(groups))


async def list_groups(ctx: ApiContext, version: int, request: Any) -> Any:
    response_class = response_schema(ApiKey.LIST_GROUPS, version)
    listed_class = sibling(response_class, "ListedGroup")
    states = tuple(getattr(request, "states_filter", ())) or None
    types = {value.lower() for value in getattr(request, "types_filter", ())}
    result = await ctx.handlers.list_groups(ctx.handler_context(), ListGroupsRequest(states))
    # Every group here is a classic group; a filter without that type matches none.
    listed = result.groups if not types or CLASSIC_GROUP_TYPE in types else ()
    return build(
        response_class,
        error_code=result.error_code,
        groups=tuple(
            build(
                listed_class,
                group_id=group.group_id,
                protocol_type=group.protocol_type,
                group_state=group.state,
                group_type=CLASSIC_GROUP_TYPE,
            )
            for group in listed
        ),
    )


async def delete_groups(ctx: ApiContext, version: int, request: Any) -> Any:
    response_class = response_schema(ApiKey.DELETE_GROUPS, version)
    result_class = sibling(response_class, "DeletableGroupResult")
    response = await ctx.handlers.delete_groups(
        ctx.handler_context(), DeleteGroupsRequest(tuple(request.groups_names))
    )
    return build(
        response_class,
        results=tuple(
            build(result_class, group_id=group_id, error_code=error_code(error))
            for group_id, error in response.results
        ),
    )


async def offset_delete(ctx: ApiContext, version: int, request: Any) -> Any:
    response_class = response_schema(ApiKey.OFFSET_DELETE, version)
    topic_class = sibling(response_class, "OffsetDeleteResponseTopic")
    partition_class = sibling(response_class, "OffsetDeleteResponsePartition")
    partitions = tuple(
        (topic.name, int(partition.partition_index))
        for topic in request.topics
        for partition in topic.partitions
    )
    try:
        response = await ctx.handlers.offset_delete(
            ctx.handler_context(), OffsetDeleteRequest(request.group_id, partitions)
        )
    except Exception as error:
        # A refusal of the whole group: Kafka answers it with no topics.
        return build(response_class, error_code=error_code(error), topics=())
    return build(
        response_class,
        error_code=NONE,
        topics=tuple(
            build(
                topic_class,
                name=topic.name,
                partitions=tuple(
                    build(
                        partition_class,
                        partition_index=partition.partition_index,
                        error_code=error_code(
                            response.partitions[(topic.name, int(partition.partition_index))]
                        ),
                    )
                    for partition in topic.partitions
                ),
            )
            for topic in request.topics
        ),
    )

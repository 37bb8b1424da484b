"""Wire adapters of the group APIs: the classic protocol (JoinGroup, SyncGroup,
Heartbeat, LeaveGroup), KIP-848's ConsumerGroupHeartbeat and ConsumerGroupDescribe,
DescribeGroups, ListGroups, DeleteGroups, OffsetDelete."""

from __future__ import annotations

import datetime
import uuid
from typing import Any

from kio.schema.errors import ErrorCode
from kio.static.primitive import i32Timedelta

from trioring.handlers.messages import (
    ConsumerGroupDescribeRequest,
    ConsumerGroupHeartbeatRequest,
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
from trioring.server.apis._build import OPERATIONS_NOT_REQUESTED, ZERO_UUID, build, sibling
from trioring.server.apis._context import NONE, ApiContext, error_code

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
    listed = tuple(group for group in result.groups if not types or group.group_type in types)
    return build(
        response_class,
        error_code=result.error_code,
        groups=tuple(
            build(
                listed_class,
                group_id=group.group_id,
                protocol_type=group.protocol_type,
                group_state=group.state,
                group_type=group.group_type,
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


def _topic_id_hex(topic_id: uuid.UUID | None) -> str:
    return (topic_id or ZERO_UUID).hex


async def consumer_group_heartbeat(ctx: ApiContext, version: int, request: Any) -> Any:
    response_class = response_schema(ApiKey.CONSUMER_GROUP_HEARTBEAT, version)
    assignment_class = sibling(response_class, "Assignment")
    partitions_class = sibling(response_class, "TopicPartitions")
    owned = None
    if request.topic_partitions is not None:
        owned = frozenset(
            (_topic_id_hex(topic.topic_id), int(partition))
            for topic in request.topic_partitions
            for partition in topic.partitions
        )
    names = request.subscribed_topic_names
    result = await ctx.handlers.consumer_group_heartbeat(
        ctx.handler_context(),
        ConsumerGroupHeartbeatRequest(
            group_id=request.group_id,
            member_id=request.member_id,
            member_epoch=int(request.member_epoch),
            instance_id=request.instance_id,
            rack_id=request.rack_id,
            rebalance_timeout_ms=_milliseconds(request.rebalance_timeout),
            subscribed_topic_names=None if names is None else tuple(names),
            subscribed_topic_regex=getattr(request, "subscribed_topic_regex", None),
            server_assignor=request.server_assignor,
            owned=owned,
            api_version=version,
        ),
    )
    assignment = None
    if result.assignment is not None:
        by_topic: dict[str, list[int]] = {}
        for topic_id, partition in sorted(result.assignment):
            by_topic.setdefault(topic_id, []).append(partition)
        assignment = assignment_class(
            topic_partitions=tuple(
                partitions_class(topic_id=uuid.UUID(topic_id), partitions=tuple(partitions))
                for topic_id, partitions in by_topic.items()
            )
        )
    return build(
        response_class,
        error_code=result.error_code,
        error_message=result.error_message,
        member_id=result.member_id,
        member_epoch=result.member_epoch,
        heartbeat_interval=i32Timedelta.parse(
            datetime.timedelta(milliseconds=result.heartbeat_interval_ms)
        ),
        assignment=assignment,
    )


#: ConsumerGroupDescribe's member_type (v1): the classic or the consumer protocol.
_CLASSIC_MEMBER_TYPE = 0
_CONSUMER_MEMBER_TYPE = 1


async def consumer_group_describe(ctx: ApiContext, version: int, request: Any) -> Any:
    response_class = response_schema(ApiKey.CONSUMER_GROUP_DESCRIBE, version)
    group_class = sibling(response_class, "DescribedGroup")
    member_class = sibling(response_class, "Member")
    assignment_class = sibling(response_class, "Assignment")
    partitions_class = sibling(response_class, "TopicPartitions")
    response = await ctx.handlers.consumer_group_describe(
        ctx.handler_context(), ConsumerGroupDescribeRequest(tuple(request.group_ids))
    )
    operations = (
        GROUP_OPERATIONS if request.include_authorized_operations else OPERATIONS_NOT_REQUESTED
    )

    def assignment(keys: frozenset[tuple[str, int]]) -> Any:
        by_topic: dict[str, list[int]] = {}
        for topic_id, partition in sorted(keys):
            by_topic.setdefault(topic_id, []).append(partition)
        return assignment_class(
            topic_partitions=tuple(
                partitions_class(
                    topic_id=uuid.UUID(topic_id),
                    topic_name=response.topic_names.get(topic_id, ""),
                    partitions=tuple(partitions),
                )
                for topic_id, partitions in by_topic.items()
            )
        )

    return build(
        response_class,
        groups=tuple(
            build(
                group_class,
                error_code=group.error_code,
                error_message=group.error_message,
                group_id=group.group_id,
                group_state=group.state,
                group_epoch=group.group_epoch,
                assignment_epoch=group.assignment_epoch,
                assignor_name=group.assignor_name,
                members=tuple(
                    build(
                        member_class,
                        member_id=member.member_id,
                        instance_id=member.instance_id,
                        rack_id=member.rack_id,
                        member_epoch=member.member_epoch,
                        client_id=member.client_id,
                        client_host=member.client_host,
                        subscribed_topic_names=member.subscribed_topic_names,
                        subscribed_topic_regex=member.subscribed_topic_regex,
                        assignment=assignment(member.assignment),
                        target_assignment=assignment(member.target_assignment),
                        member_type=(
                            _CLASSIC_MEMBER_TYPE if member.classic else _CONSUMER_MEMBER_TYPE
                        ),
                    )
                    for member in group.members
                ),
                authorized_operations=operations,
            )
            for group in response.groups
        ),
    )

"""Handlers: Kafka semantics as composable async functions, one per operation.

``async def handler(ctx, request) -> response``, over the typed messages of
``trioring.handlers.messages``. The embedded Broker and the Kafka listener
call the same handlers, so a middleware (auth, quotas, metrics, routing,
fault injection) sees every request either way; the listener's wire
adapters only translate between Kafka's bytes and these messages.
"""

from __future__ import annotations

from typing import Any

import attrs

from trioring.core.groups import (
    JoinGroupResult,
    LeaveGroupResult,
    ListGroupsResult,
    SyncGroupResult,
)
from trioring.handlers import admin, configs, groups, replicas
from trioring.handlers import metadata as metadata_handlers
from trioring.handlers.context import Handler, HandlerContext, Middleware, compose
from trioring.handlers.fetch import fetch
from trioring.handlers.messages import (
    AlterConfigsRequest,
    AlterConfigsResponse,
    AlterReassignmentsRequest,
    AlterReassignmentsResponse,
    ConsumerGroupDescribeRequest,
    ConsumerGroupDescribeResponse,
    ConsumerGroupHeartbeatRequest,
    ConsumerHeartbeatResult,
    CreatePartitionsRequest,
    CreatePartitionsResponse,
    CreateTopicRequest,
    CreateTopicResponse,
    CreateTopicsRequest,
    CreateTopicsResponse,
    DeleteGroupsRequest,
    DeleteGroupsResponse,
    DeleteRecordsRequest,
    DeleteRecordsResponse,
    DeleteTopicsRequest,
    DeleteTopicsResponse,
    DescribeConfigsRequest,
    DescribeConfigsResponse,
    DescribeGroupsRequest,
    DescribeGroupsResponse,
    DescribeLogDirsRequest,
    DescribeLogDirsResponse,
    DescribeProducersRequest,
    DescribeProducersResponse,
    DescribeQuorumRequest,
    DescribeQuorumResponse,
    ElectLeadersRequest,
    ElectLeadersResponse,
    FetchRequest,
    FetchResponse,
    FindCoordinatorRequest,
    FindCoordinatorResponse,
    HeartbeatRequest,
    HeartbeatResponse,
    IncrementalAlterConfigsRequest,
    InitProducerIdRequest,
    InitProducerIdResponse,
    JoinGroupRequest,
    LeaveGroupRequest,
    ListGroupsRequest,
    ListOffsetsRequest,
    ListOffsetsResponse,
    ListReassignmentsRequest,
    ListReassignmentsResponse,
    MetadataRequest,
    MetadataResponse,
    OffsetCommitRequest,
    OffsetCommitResponse,
    OffsetDeleteRequest,
    OffsetDeleteResponse,
    OffsetFetchRequest,
    OffsetFetchResponse,
    ProduceRequest,
    ProduceResponse,
    SyncGroupRequest,
)
from trioring.handlers.offsets import (
    commit_offsets,
    delete_records,
    fetch_offsets,
    list_offsets,
)
from trioring.handlers.produce import produce, validate_batches

create_topic = admin.create_topic


@attrs.frozen
class Handlers:
    """The handler of each operation; ``wrap`` applies middleware to all of them."""

    produce: Handler[ProduceRequest, ProduceResponse] = produce
    fetch: Handler[FetchRequest, FetchResponse] = fetch
    list_offsets: Handler[ListOffsetsRequest, ListOffsetsResponse] = list_offsets
    delete_records: Handler[DeleteRecordsRequest, DeleteRecordsResponse] = delete_records
    commit_offsets: Handler[OffsetCommitRequest, OffsetCommitResponse] = commit_offsets
    fetch_offsets: Handler[OffsetFetchRequest, OffsetFetchResponse] = fetch_offsets
    metadata: Handler[MetadataRequest, MetadataResponse] = metadata_handlers.metadata
    find_coordinator: Handler[FindCoordinatorRequest, FindCoordinatorResponse] = (
        metadata_handlers.find_coordinator
    )
    describe_quorum: Handler[DescribeQuorumRequest, DescribeQuorumResponse] = (
        metadata_handlers.describe_quorum
    )
    create_topic: Handler[CreateTopicRequest, CreateTopicResponse] = admin.create_topic
    create_topics: Handler[CreateTopicsRequest, CreateTopicsResponse] = admin.create_topics
    delete_topics: Handler[DeleteTopicsRequest, DeleteTopicsResponse] = admin.delete_topics
    create_partitions: Handler[CreatePartitionsRequest, CreatePartitionsResponse] = (
        admin.create_partitions
    )
    describe_configs: Handler[DescribeConfigsRequest, DescribeConfigsResponse] = (
        configs.describe_configs
    )
    alter_configs: Handler[AlterConfigsRequest, AlterConfigsResponse] = configs.alter_configs
    incremental_alter_configs: Handler[IncrementalAlterConfigsRequest, AlterConfigsResponse] = (
        configs.incremental_alter_configs
    )
    describe_log_dirs: Handler[DescribeLogDirsRequest, DescribeLogDirsResponse] = (
        admin.describe_log_dirs
    )
    describe_producers: Handler[DescribeProducersRequest, DescribeProducersResponse] = (
        admin.describe_producers
    )
    init_producer_id: Handler[InitProducerIdRequest, InitProducerIdResponse] = (
        admin.init_producer_id
    )
    list_reassignments: Handler[ListReassignmentsRequest, ListReassignmentsResponse] = (
        replicas.list_reassignments
    )
    alter_reassignments: Handler[AlterReassignmentsRequest, AlterReassignmentsResponse] = (
        replicas.alter_reassignments
    )
    elect_leaders: Handler[ElectLeadersRequest, ElectLeadersResponse] = replicas.elect_leaders
    join_group: Handler[JoinGroupRequest, JoinGroupResult] = groups.join_group
    sync_group: Handler[SyncGroupRequest, SyncGroupResult] = groups.sync_group
    heartbeat: Handler[HeartbeatRequest, HeartbeatResponse] = groups.heartbeat
    leave_group: Handler[LeaveGroupRequest, LeaveGroupResult] = groups.leave_group
    describe_groups: Handler[DescribeGroupsRequest, DescribeGroupsResponse] = groups.describe_groups
    list_groups: Handler[ListGroupsRequest, ListGroupsResult] = groups.list_groups
    delete_groups: Handler[DeleteGroupsRequest, DeleteGroupsResponse] = groups.delete_groups
    offset_delete: Handler[OffsetDeleteRequest, OffsetDeleteResponse] = groups.offset_delete
    consumer_group_heartbeat: Handler[ConsumerGroupHeartbeatRequest, ConsumerHeartbeatResult] = (
        groups.consumer_group_heartbeat
    )
    consumer_group_describe: Handler[
        ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse
    ] = groups.consumer_group_describe

    def wrap(self, *middleware: Middleware) -> Handlers:
        wrapped: dict[str, Any] = {
            field.name: compose(getattr(self, field.name), *middleware)
            for field in attrs.fields(Handlers)
        }
        return Handlers(**wrapped)


__all__ = [
    "Handler",
    "HandlerContext",
    "Handlers",
    "Middleware",
    "commit_offsets",
    "compose",
    "create_topic",
    "delete_records",
    "fetch",
    "fetch_offsets",
    "list_offsets",
    "produce",
    "validate_batches",
]

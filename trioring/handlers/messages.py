"""Requests and responses the handlers take and return.

Kafka-shaped but decoded: the network server converts wire messages to
these, the embedded Broker builds them directly. Record data stays as raw
RecordBatch v2 bytes end to end.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, NamedTuple

import attrs

from trioring.cluster.model import Node, TopicInfo
from trioring.core.groups import (
    ConsumerGroupDescription,
    ConsumerHeartbeat,
    ConsumerHeartbeatResult,
    GroupDescription,
    JoinGroupResult,
    LeaveGroupResult,
    ListGroupsResult,
    SyncGroupResult,
)
from trioring.core.offsets import CommittedOffset, TopicPartition
from trioring.errors import TrioringError
from trioring.storage.log import LogConfig
from trioring.storage.producers import ActiveProducer
from trioring.storage.slices import LogSlice

#: Kafka's acks values: 0 (no response), 1 (written), -1 (all: durable).
Acks = Literal[0, 1, -1]

#: ListOffsets special timestamps (Kafka's).
LATEST_TIMESTAMP = -1
EARLIEST_TIMESTAMP = -2
#: ListOffsets v7+ (KIP-734): the record with the largest timestamp.
MAX_TIMESTAMP = -3
#: ListOffsets v8+ (KIP-405): the first offset on local disk, which without
#: tiered storage is the log start offset.
EARLIEST_LOCAL_TIMESTAMP = -4
#: ListOffsets v9+ (KIP-1005): the last offset in tiered storage; without
#: tiered storage there is none, and Kafka answers offset -1.
LATEST_TIERED_TIMESTAMP = -5


# Produce's request and response are named tuples rather than attrs classes,
# as other per-request values on the produce path are: a frozen attrs class
# with four fields took 0.8 us to build on the 2-core CI machine, a tuple 0.3.


class ProduceRequest(NamedTuple):
    topic: str
    partition: int
    records: bytes | bytearray | memoryview
    acks: int = -1


class ProduceResponse(NamedTuple):
    base_offset: int
    last_offset: int
    #: -1 unless the topic uses LogAppendTime (Kafka's convention).
    log_append_time_ms: int
    log_start_offset: int


@attrs.frozen
class FetchPartition:
    topic: str
    partition: int
    offset: int
    max_bytes: int


def _partitions_tuple(partitions: Iterable[FetchPartition]) -> tuple[FetchPartition, ...]:
    return tuple(partitions)


@attrs.frozen
class FetchRequest:
    partitions: tuple[FetchPartition, ...] = attrs.field(converter=_partitions_tuple)
    max_wait_ms: int = 0
    min_bytes: int = 1
    max_bytes: int = 50 * 1024 * 1024


@attrs.frozen
class FetchedPartition:
    topic: str
    partition: int
    #: Whole RecordBatch v2 bytes, starting with the batch holding the requested offset;
    #: a LogSlice (file ranges) only for a listener that asked for them (HandlerContext.hold_slice).
    records: bytes | LogSlice
    high_watermark: int
    log_start_offset: int
    error: TrioringError | None = None


@attrs.frozen
class FetchResponse:
    partitions: tuple[FetchedPartition, ...]


@attrs.frozen
class ListOffsetsRequest:
    topic: str
    partition: int
    #: A timestamp in ms, or one of the special *_TIMESTAMP values above.
    timestamp_ms: int


@attrs.frozen
class ListOffsetsResponse:
    #: -1 when no record has a timestamp at or after the one asked for.
    offset: int
    timestamp_ms: int


@attrs.frozen
class DeleteRecordsRequest:
    """Make ``offset`` the partition's log start (-1: its high watermark)."""

    topic: str
    partition: int
    offset: int


@attrs.frozen
class DeleteRecordsResponse:
    #: The log start offset after the deletion (Kafka's low watermark).
    low_watermark: int


@attrs.frozen
class OffsetCommitRequest:
    group: str
    offsets: dict[TopicPartition, CommittedOffset]
    #: -1 and "" for a commit outside group membership (as the embedded API does).
    generation_id: int = -1
    member_id: str = ""
    #: A static member's instance id (OffsetCommit v7+); fenced if another holds it.
    group_instance_id: str | None = None
    #: The OffsetCommit version on the wire (None: the embedded API); members of
    #: a consumer-protocol group must use v9+, as in Kafka.
    api_version: int | None = None


@attrs.frozen
class OffsetCommitResponse:
    errors: dict[TopicPartition, TrioringError | None]


@attrs.frozen
class OffsetFetchRequest:
    group: str
    #: None: every partition the group has committed.
    partitions: tuple[TopicPartition, ...] | None = None
    #: OffsetFetch v9: a consumer-protocol member asking (checked as Kafka: its
    #: epoch must be current); None and -1 for anyone else.
    member_id: str | None = None
    member_epoch: int = -1


@attrs.frozen
class OffsetFetchResponse:
    offsets: dict[TopicPartition, CommittedOffset]


@attrs.frozen
class CreateTopicRequest:
    name: str
    partitions: int | None = None
    config: LogConfig | None = None


@attrs.frozen
class CreateTopicResponse:
    topic: TopicInfo


# --- Topic administration (CreateTopics, DeleteTopics, CreatePartitions) -----------


@attrs.frozen
class NewTopic:
    """One topic of a Kafka CreateTopics request, as the client sent it."""

    name: str
    #: -1: the broker's default (KIP-464).
    partitions: int = -1
    #: -1: the broker's default; trioring keeps 1 replica.
    replication_factor: int = -1
    #: (partition, broker ids) pairs; manual placement.
    assignments: tuple[tuple[int, tuple[int, ...]], ...] = ()
    #: Kafka topic config names and values (None: a null value, refused).
    configs: tuple[tuple[str, str | None], ...] = ()


@attrs.frozen
class CreateTopicsRequest:
    topics: tuple[NewTopic, ...]
    validate_only: bool = False


@attrs.frozen
class CreatedTopic:
    """What CreateTopics v5+ reports of a topic created (or that would be, validate_only)."""

    partitions: int
    #: 32 hex digits; "" when only validated (the topic has no id yet).
    topic_id: str
    configs: tuple[ConfigEntry, ...]


@attrs.frozen
class TopicResult:
    """One topic's outcome in CreateTopics, DeleteTopics or CreatePartitions."""

    name: str
    error: TrioringError | None = None
    #: CreateTopics only, when it succeeded.
    created: CreatedTopic | None = None


@attrs.frozen
class CreateTopicsResponse:
    results: tuple[TopicResult, ...]


@attrs.frozen
class DeleteTopicsRequest:
    names: tuple[str, ...]


@attrs.frozen
class DeleteTopicsResponse:
    results: tuple[TopicResult, ...]


@attrs.frozen
class NewPartitions:
    name: str
    #: The topic's partition count after the request.
    count: int
    #: Placement of the new partitions, or None for the broker's choice.
    assignments: tuple[tuple[int, ...], ...] | None = None


@attrs.frozen
class CreatePartitionsRequest:
    topics: tuple[NewPartitions, ...]
    validate_only: bool = False


@attrs.frozen
class CreatePartitionsResponse:
    results: tuple[TopicResult, ...]


# --- DescribeConfigs ------------------------------------------------------------------

#: DescribeConfigs resource types (Kafka's ConfigResource.Type).
TOPIC_RESOURCE = 2
BROKER_RESOURCE = 4


@attrs.frozen
class ConfigResource:
    resource_type: int
    name: str
    #: None: every config.
    keys: tuple[str, ...] | None = None


#: Kafka's ConfigSource values.
TOPIC_CONFIG_SOURCE = 1
DYNAMIC_BROKER_CONFIG_SOURCE = 2
DYNAMIC_DEFAULT_BROKER_CONFIG_SOURCE = 3
STATIC_BROKER_CONFIG_SOURCE = 4
DEFAULT_CONFIG_SOURCE = 5


@attrs.frozen
class ConfigSynonym:
    """Where else a config's value may come from (DescribeConfigs v1+ include_synonyms)."""

    name: str
    value: str | None
    source: int


@attrs.frozen
class ConfigEntry:
    name: str
    value: str | None
    read_only: bool
    is_default: bool
    #: Kafka's ConfigSource: 1 a topic override, 4 the broker's static config, 5 the default.
    source: int
    sensitive: bool = False
    #: Kafka's ConfigType (DescribeConfigs v3+): 2 string, 3 int, 5 long, 7 list, ...
    config_type: int = 0
    #: What the config does (DescribeConfigs v3+ with include_documentation).
    documentation: str | None = None
    #: The config itself first, then the broker configs it falls back to
    #: (only when the request asks for synonyms).
    synonyms: tuple[ConfigSynonym, ...] = ()


@attrs.frozen
class ConfigResourceResult:
    resource: ConfigResource
    error: TrioringError | None = None
    entries: tuple[ConfigEntry, ...] = ()


@attrs.frozen
class DescribeConfigsRequest:
    resources: tuple[ConfigResource, ...]
    include_synonyms: bool = False


# --- AlterConfigs, IncrementalAlterConfigs ------------------------------------------------

#: IncrementalAlterConfigs operations (Kafka's AlterConfigOp.OpType).
SET_CONFIG = 0
DELETE_CONFIG = 1
APPEND_CONFIG = 2
SUBTRACT_CONFIG = 3


@attrs.frozen
class ConfigChange:
    name: str
    #: None only with DELETE_CONFIG (a null value elsewhere is refused).
    value: str | None
    operation: int = SET_CONFIG


@attrs.frozen
class AlterConfigsResource:
    resource_type: int
    name: str
    changes: tuple[ConfigChange, ...]


@attrs.frozen
class AlterConfigsRequest:
    """AlterConfigs: each resource's changes replace all of its configs (Kafka semantics:
    what is not named reverts to its default). Every change is SET_CONFIG."""

    resources: tuple[AlterConfigsResource, ...]
    validate_only: bool = False


@attrs.frozen
class IncrementalAlterConfigsRequest:
    """IncrementalAlterConfigs: each change sets, deletes, appends to or subtracts from
    one config; the others keep their values."""

    resources: tuple[AlterConfigsResource, ...]
    validate_only: bool = False


@attrs.frozen
class AlterConfigsResponse:
    #: One per resource, in request order; ``entries`` are empty.
    results: tuple[ConfigResourceResult, ...]


@attrs.frozen
class DescribeConfigsResponse:
    results: tuple[ConfigResourceResult, ...]


# --- Metadata, FindCoordinator, InitProducerId ------------------------------------------


@attrs.frozen
class DescribeProducersRequest:
    partitions: tuple[TopicPartition, ...]


@attrs.frozen
class DescribeProducersResponse:
    #: Per partition asked for: its producers, or why it cannot be described here.
    partitions: dict[TopicPartition, tuple[ActiveProducer, ...] | TrioringError]


@attrs.frozen
class DescribeLogDirsRequest:
    #: Topic -> partitions to describe; None: every partition of the worker.
    partitions: dict[str, tuple[int, ...]] | None = None


@attrs.frozen
class LogDirPartition:
    topic: str
    partition: int
    size_bytes: int
    #: How far this replica is behind the high watermark (0: one replica is the leader).
    offset_lag: int


@attrs.frozen
class DescribeLogDirsResponse:
    #: The data directory, absolute (every partition of a worker lives there).
    log_dir: str
    total_bytes: int
    usable_bytes: int
    partitions: tuple[LogDirPartition, ...]


@attrs.frozen
class ListReassignmentsRequest:
    #: Topic -> partitions; None: every partition.
    partitions: dict[str, tuple[int, ...]] | None = None


@attrs.frozen
class ListReassignmentsResponse:
    #: (topic, partition, replicas, adding, removing) of each reassignment in progress.
    ongoing: tuple[tuple[str, int, tuple[int, ...], tuple[int, ...], tuple[int, ...]], ...]


@attrs.frozen
class AlterReassignmentsRequest:
    #: (topic, partition, target replicas or None to cancel), in request order.
    targets: tuple[tuple[str, int, tuple[int, ...] | None], ...]


@attrs.frozen
class AlterReassignmentsResponse:
    #: One per target, in order: None (done) or why not.
    results: tuple[TrioringError | None, ...]


@attrs.frozen
class ElectLeadersRequest:
    #: 0 preferred, 1 unclean.
    election_type: int
    #: (topic, partition) pairs; None: every partition.
    partitions: tuple[tuple[str, int], ...] | None


@attrs.frozen
class ElectLeadersResponse:
    #: One per partition asked for, in order (none when all were asked for
    #: and none needs an election): None (elected) or why not.
    results: tuple[TrioringError | None, ...]


@attrs.frozen
class MetadataRequest:
    #: None: every topic.
    topics: tuple[str, ...] | None
    allow_auto_topic_creation: bool = True


@attrs.frozen
class PartitionMetadata:
    partition: int
    leader: int
    error_code: int = 0


@attrs.frozen
class TopicMetadata:
    name: str
    error_code: int
    partitions: tuple[PartitionMetadata, ...] = ()
    internal: bool = False
    #: The topic id (32 hex digits); "" for a topic that does not exist.
    topic_id: str = ""


@attrs.frozen
class MetadataResponse:
    cluster_id: str
    controller_id: int
    nodes: tuple[Node, ...]
    topics: tuple[TopicMetadata, ...]


#: FindCoordinator key types.
GROUP_KEY = 0
TRANSACTION_KEY = 1


#: The KRaft metadata log DescribeQuorum asks about (one partition, 0).
CLUSTER_METADATA_TOPIC = "__cluster_metadata"


@attrs.frozen
class DescribeQuorumRequest:
    #: (topic, partition) pairs asked for; Kafka's only valid answer is
    #: exactly one: (__cluster_metadata, 0).
    partitions: tuple[tuple[str, int], ...]


@attrs.frozen
class DescribeQuorumResponse:
    #: None, or why the partitions asked for are not the metadata log's.
    error: TrioringError | None
    #: The controller: the one voter, and the leader.
    leader_id: int
    leader_epoch: int
    #: Metadata changes applied (the controller's log end, as this worker has it).
    high_watermark: int
    #: When this answer was made, in ms since the epoch (the leader's own fetch times).
    now_ms: int
    #: The controller's node (its listener), for DescribeQuorum v2.
    leader_node: Node | None


@attrs.frozen
class FindCoordinatorRequest:
    key: str
    key_type: int = GROUP_KEY


@attrs.frozen
class FindCoordinatorResponse:
    node: Node | None
    error: TrioringError | None = None


@attrs.frozen
class InitProducerIdRequest:
    transactional_id: str | None = None
    transaction_timeout_ms: int = -1


@attrs.frozen
class InitProducerIdResponse:
    producer_id: int
    producer_epoch: int


# --- Consumer groups (classic protocol) -------------------------------------------------


@attrs.frozen
class JoinGroupRequest:
    group_id: str
    member_id: str
    protocol_type: str
    protocols: tuple[tuple[str, bytes], ...]
    session_timeout_ms: int
    #: None: the session timeout (JoinGroup v0).
    rebalance_timeout_ms: int | None = None
    group_instance_id: str | None = None
    #: The JoinGroup version the client speaks (v4+ need MEMBER_ID_REQUIRED).
    api_version: int = 5


@attrs.frozen
class SyncGroupRequest:
    group_id: str
    generation_id: int
    member_id: str
    assignments: tuple[tuple[str, bytes], ...] = ()
    group_instance_id: str | None = None
    #: SyncGroup v5+: what the member believes the group's protocol is; a
    #: mismatch is INCONSISTENT_GROUP_PROTOCOL.
    protocol_type: str | None = None
    protocol_name: str | None = None


@attrs.frozen
class HeartbeatRequest:
    group_id: str
    generation_id: int
    member_id: str
    group_instance_id: str | None = None


@attrs.frozen
class HeartbeatResponse:
    error_code: int


@attrs.frozen
class LeaveGroupRequest:
    group_id: str
    member_ids: tuple[str, ...]
    #: Parallel to member_ids (LeaveGroup v3+); empty: none. A static member
    #: may be named by its instance id with member id "".
    group_instance_ids: tuple[str | None, ...] = ()


@attrs.frozen
class DescribeGroupsRequest:
    group_ids: tuple[str, ...]


@attrs.frozen
class DescribeGroupsResponse:
    groups: tuple[GroupDescription, ...]


@attrs.frozen
class DeleteGroupsRequest:
    group_ids: tuple[str, ...]


@attrs.frozen
class DeleteGroupsResponse:
    #: (group id, None or why it was not deleted), in request order.
    results: tuple[tuple[str, TrioringError | None], ...]


@attrs.frozen
class OffsetDeleteRequest:
    group_id: str
    partitions: tuple[TopicPartition, ...]


@attrs.frozen
class OffsetDeleteResponse:
    #: Per partition: None (deleted, or there was nothing to delete) or why not.
    partitions: dict[TopicPartition, TrioringError | None]


#: ConsumerGroupHeartbeat (KIP-848) as the coordinator reads it; the handler fills in
#: the client's id and host.
ConsumerGroupHeartbeatRequest = ConsumerHeartbeat


@attrs.frozen
class ConsumerGroupDescribeRequest:
    group_ids: tuple[str, ...]


@attrs.frozen
class ConsumerGroupDescribeResponse:
    #: One per requested group, in request order; topic names resolved by the handler.
    groups: tuple[ConsumerGroupDescription, ...]
    #: Topic id (hex) -> name, for every topic an assignment names.
    topic_names: dict[str, str] = attrs.Factory(dict)


@attrs.frozen
class ListGroupsRequest:
    #: None or empty: groups in any state.
    states: tuple[str, ...] | None = None


__all__ = [
    "APPEND_CONFIG",
    "DEFAULT_CONFIG_SOURCE",
    "DELETE_CONFIG",
    "DYNAMIC_BROKER_CONFIG_SOURCE",
    "DYNAMIC_DEFAULT_BROKER_CONFIG_SOURCE",
    "EARLIEST_LOCAL_TIMESTAMP",
    "EARLIEST_TIMESTAMP",
    "LATEST_TIERED_TIMESTAMP",
    "LATEST_TIMESTAMP",
    "MAX_TIMESTAMP",
    "SET_CONFIG",
    "STATIC_BROKER_CONFIG_SOURCE",
    "SUBTRACT_CONFIG",
    "TOPIC_CONFIG_SOURCE",
    "Acks",
    "AlterConfigsRequest",
    "AlterConfigsResource",
    "AlterConfigsResponse",
    "ConfigChange",
    "ConfigEntry",
    "ConfigResource",
    "ConfigResourceResult",
    "ConfigSynonym",
    "ConsumerGroupDescribeRequest",
    "ConsumerGroupDescribeResponse",
    "ConsumerGroupHeartbeatRequest",
    "ConsumerHeartbeatResult",
    "CreatePartitionsRequest",
    "CreatePartitionsResponse",
    "CreateTopicRequest",
    "CreateTopicResponse",
    "CreateTopicsRequest",
    "CreateTopicsResponse",
    "CreatedTopic",
    "DeleteTopicsRequest",
    "DeleteTopicsResponse",
    "DescribeConfigsRequest",
    "DescribeConfigsResponse",
    "DescribeGroupsRequest",
    "DescribeGroupsResponse",
    "FetchPartition",
    "FetchRequest",
    "FetchResponse",
    "FetchedPartition",
    "FindCoordinatorRequest",
    "FindCoordinatorResponse",
    "HeartbeatRequest",
    "HeartbeatResponse",
    "IncrementalAlterConfigsRequest",
    "InitProducerIdRequest",
    "InitProducerIdResponse",
    "JoinGroupRequest",
    "JoinGroupResult",
    "LeaveGroupRequest",
    "LeaveGroupResult",
    "ListGroupsRequest",
    "ListGroupsResult",
    "ListOffsetsRequest",
    "ListOffsetsResponse",
    "MetadataRequest",
    "MetadataResponse",
    "NewPartitions",
    "NewTopic",
    "OffsetCommitRequest",
    "OffsetCommitResponse",
    "OffsetFetchRequest",
    "OffsetFetchResponse",
    "PartitionMetadata",
    "ProduceRequest",
    "ProduceResponse",
    "SyncGroupRequest",
    "SyncGroupResult",
    "TopicMetadata",
    "TopicResult",
]

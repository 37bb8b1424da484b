"""The answer to a request whose handling failed: every entry carries one error code.

Kafka answers a request its API layer could not handle with that API's
error response (``AbstractRequest.getErrorResponse``): the request's topics,
partitions, groups or resources echoed back, each with the error code. The
server's per-request error boundary uses :func:`error_response`, so a bug or
an unexpected failure in one handler costs that one request an error code,
never the connection of other clients or the server.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from kio.schema.errors import ErrorCode

from trioring._logging import printable
from trioring.errors import TrioringError
from trioring.protocol.kafka import (
    ApiKey,
    FetchResponseBody,
    FetchResponsePartition,
    FetchResponseTopic,
    ProduceResponseBody,
    ProduceResponsePartition,
    ProduceResponseTopic,
    api_name,
    response_schema,
)
from trioring.server.apis._build import (
    NO_THROTTLE,
    OPERATIONS_NOT_REQUESTED,
    ZERO_UUID,
    build,
    sibling,
)
from trioring.server.apis._context import client_log
from trioring.server.apis.admin import DELETE_TOPICS_BY_ID_VERSION
from trioring.server.apis.data import FETCH_TOPIC_ID_VERSION
from trioring.server.apis.groups import LEAVE_GROUP_BATCH_VERSION
from trioring.server.apis.metadata import (
    FIND_COORDINATOR_BATCH_VERSION,
    METADATA_TOPIC_ID_VERSION,
)
from trioring.server.apis.offsets import OFFSET_FETCH_BATCH_VERSION

__all__ = ["error_response", "failed_response", "has_error_response"]

_Builder = Callable[[int, Any, ErrorCode, str], Any]


def _produce(version: int, request: Any, code: ErrorCode, message: str) -> Any:
    if int(request.acks) == 0:
        return None  # Kafka never answers acks=0, not even with an error
    return ProduceResponseBody(
        tuple(
            ProduceResponseTopic(
                topic.name,
                tuple(
                    ProduceResponsePartition(data.index, code, -1, -1, -1, message)
                    for data in topic.partition_data
                ),
            )
            for topic in request.topic_data
        )
    )


def _fetch(version: int, request: Any, code: ErrorCode, message: str) -> Any:
    return FetchResponseBody(
        tuple(
            FetchResponseTopic(
                (topic.topic_id or ZERO_UUID).bytes
                if version >= FETCH_TOPIC_ID_VERSION
                else topic.topic,
                tuple(
                    FetchResponsePartition(partition.partition, code, -1, -1, -1, b"")
                    for partition in topic.partitions
                ),
            )
            for topic in request.topics
        ),
        error_code=code,
    )


def _list_offsets(version: int, request: Any, code: ErrorCode, message: str) -> Any:
    response_class = response_schema(ApiKey.LIST_OFFSETS, version)
    topic_class = sibling(response_class, "ListOffsetsTopicResponse")
    partition_class = sibling(response_class, "ListOffsetsPartitionResponse")
    return build(
        response_class,
        topics=tuple(
            build(
                topic_class,
                name=topic.name,
                partitions=tuple(
                    build(
                        partition_class,
                        partition_index=partition.partition_index,
                        error_code=code,
                        timestamp=-1,
                        offset=-1,
                    )
                    for partition in topic.partitions
                ),
            )
            for topic in request.topics
        ),
    )


def _metadata(version: int, request: Any, code: ErrorCode, message: str) -> Any:
    response_class = response_schema(ApiKey.METADATA, version)
    topic_class = sibling(response_class, "MetadataResponseTopic")
    return build(
        response_class,
        brokers=(),
        cluster_id=None,
        controller_id=-1,
        topics=tuple(
            build(
                topic_class,
                error_code=code,
                # Names are nullable in responses from v12 on only.
                name=topic.name if version >= METADATA_TOPIC_ID_VERSION else topic.name or "",
                topic_id=getattr(topic, "topic_id", None) or ZERO_UUID,
                is_internal=False,
                partitions=(),
                topic_authorized_operations=OPERATIONS_NOT_REQUESTED,
            )
            for topic in request.topics or ()
        ),
        cluster_authorized_operations=OPERATIONS_NOT_REQUESTED,
        error_code=code,
    )


def _offset_commit(version: int, request: Any, code: ErrorCode, message: str) -> Any:
    response_class = response_schema(ApiKey.OFFSET_COMMIT, version)
    topic_class = sibling(response_class, "OffsetCommitResponseTopic")
    partition_class = sibling(response_class, "OffsetCommitResponsePartition")
    return build(
        response_class,
        topics=tuple(
            build(
                topic_class,
                name=topic.name,
                partitions=tuple(
                    build(partition_class, partition_index=p.partition_index, error_code=code)
                    for p in topic.partitions
                ),
            )
            for topic in request.topics
        ),
    )


def _offset_fetch(version: int, request: Any, code: ErrorCode, message: str) -> Any:
    response_class = response_schema(ApiKey.OFFSET_FETCH, version)
    batched = version >= OFFSET_FETCH_BATCH_VERSION
    suffix = "s" if batched else ""
    topic_class = sibling(response_class, f"OffsetFetchResponseTopic{suffix}")
    partition_class = sibling(response_class, f"OffsetFetchResponsePartition{suffix}")

    def topics(requested: Any) -> tuple[Any, ...]:
        return tuple(
            build(
                topic_class,
                name=topic.name,
                partitions=tuple(
                    build(
                        partition_class,
                        partition_index=index,
                        committed_offset=-1,
                        committed_leader_epoch=-1,
                        metadata="",
                        error_code=code,
                    )
                    for index in topic.partition_indexes
                ),
            )
            for topic in requested or ()
        )

    if not batched:
        return build(response_class, error_code=code, topics=topics(request.topics))
    group_class = sibling(response_class, "OffsetFetchResponseGroup")
    return build(
        response_class,
        groups=tuple(
            build(
                group_class, group_id=group.group_id, topics=topics(group.topics), error_code=code
            )
            for group in request.groups
        ),
    )


def _find_coordinator(version: int, request: Any, code: ErrorCode, message: str) -> Any:
    response_class = response_schema(ApiKey.FIND_COORDINATOR, version)
    fields = {"error_code": code, "error_message": message, "node_id": -1, "host": "", "port": -1}
    if version < FIND_COORDINATOR_BATCH_VERSION:
        return build(response_class, **fields)
    coordinator_class = sibling(response_class, "Coordinator")
    return build(
        response_class,
        coordinators=tuple(
            build(coordinator_class, key=key, **fields) for key in request.coordinator_keys
        ),
    )


def _join_group(version: int, request: Any, code: ErrorCode, message: str) -> Any:
    return build(
        response_schema(ApiKey.JOIN_GROUP, version),
        error_code=code,
        generation_id=-1,
        protocol_name=None if version >= 7 else "",
        protocol_type=None,
        skip_assignment=False,
        leader="",
        member_id=request.member_id,
        members=(),
    )


def _error_code_only(api_key: ApiKey) -> _Builder:
    def builder(version: int, request: Any, code: ErrorCode, message: str) -> Any:
        return build(response_schema(api_key, version), error_code=code)

    return builder


def _leave_group(version: int, request: Any, code: ErrorCode, message: str) -> Any:
    response_class = response_schema(ApiKey.LEAVE_GROUP, version)
    if version < LEAVE_GROUP_BATCH_VERSION:
        return build(response_class, error_code=code)
    member_class = sibling(response_class, "MemberResponse")
    return build(
        response_class,
        error_code=code,
        members=tuple(
            build(
                member_class,
                member_id=member.member_id,
                group_instance_id=member.group_instance_id,
                error_code=code,
            )
            for member in request.members
        ),
    )


def _sync_group(version: int, request: Any, code: ErrorCode, message: str) -> Any:
    return build(response_schema(ApiKey.SYNC_GROUP, version), error_code=code, assignment=b"")


def _describe_groups(version: int, request: Any, code: ErrorCode, message: str) -> Any:
    response_class = response_schema(ApiKey.DESCRIBE_GROUPS, version)
    group_class = sibling(response_class, "DescribedGroup")
    return build(
        response_class,
        groups=tuple(
            build(
                group_class,
                error_code=code,
                group_id=group_id,
                error_message=message,
                group_state="",
                protocol_type="",
                protocol_data="",
                members=(),
                authorized_operations=OPERATIONS_NOT_REQUESTED,
            )
            for group_id in request.groups
        ),
    )


def _list_groups(version: int, request: Any, code: ErrorCode, message: str) -> Any:
    return build(response_schema(ApiKey.LIST_GROUPS, version), error_code=code, groups=())


def _create_topics(version: int, request: Any, code: ErrorCode, message: str) -> Any:
    response_class = response_schema(ApiKey.CREATE_TOPICS, version)
    result_class = sibling(response_class, "CreatableTopicResult")
    return build(
        response_class,
        topics=tuple(
            build(
                result_class,
                name=topic.name,
                topic_id=ZERO_UUID,
                error_code=code,
                error_message=message,
                num_partitions=-1,
                replication_factor=-1,
                configs=(),
            )
            for topic in request.topics
        ),
    )


def _delete_topics(version: int, request: Any, code: ErrorCode, message: str) -> Any:
    response_class = response_schema(ApiKey.DELETE_TOPICS, version)
    result_class = sibling(response_class, "DeletableTopicResult")
    entries: list[tuple[str | None, uuid.UUID | None]]
    if version < DELETE_TOPICS_BY_ID_VERSION:
        entries = [(name, None) for name in request.topic_names]
    else:
        entries = [(topic.name, topic.topic_id or ZERO_UUID) for topic in request.topics]
    return build(
        response_class,
        responses=tuple(
            build(
                result_class,
                name=name,
                topic_id=topic_id,
                error_code=code,
                error_message=message,
            )
            for name, topic_id in entries
        ),
    )


def _init_producer_id(version: int, request: Any, code: ErrorCode, message: str) -> Any:
    return build(
        response_schema(ApiKey.INIT_PRODUCER_ID, version),
        error_code=code,
        producer_id=-1,
        producer_epoch=-1,
    )


def _describe_configs(version: int, request: Any, code: ErrorCode, message: str) -> Any:
    response_class = response_schema(ApiKey.DESCRIBE_CONFIGS, version)
    result_class = sibling(response_class, "DescribeConfigsResult")
    return build(
        response_class,
        results=tuple(
            build(
                result_class,
                error_code=code,
                error_message=message,
                resource_type=resource.resource_type,
                resource_name=resource.resource_name,
                configs=(),
            )
            for resource in request.resources
        ),
    )


def _alter_configs_for(api_key: ApiKey) -> _Builder:
    """AlterConfigs' and IncrementalAlterConfigs' answer: one shape for both."""

    def answer(version: int, request: Any, code: ErrorCode, message: str) -> Any:
        response_class = response_schema(api_key, version)
        result_class = sibling(response_class, "AlterConfigsResourceResponse")
        return build(
            response_class,
            responses=tuple(
                build(
                    result_class,
                    error_code=code,
                    error_message=message,
                    resource_type=resource.resource_type,
                    resource_name=resource.resource_name,
                )
                for resource in request.resources
            ),
        )

    return answer


def _create_partitions(version: int, request: Any, code: ErrorCode, message: str) -> Any:
    response_class = response_schema(ApiKey.CREATE_PARTITIONS, version)
    result_class = sibling(response_class, "CreatePartitionsTopicResult")
    return build(
        response_class,
        results=tuple(
            build(result_class, name=topic.name, error_code=code, error_message=message)
            for topic in request.topics
        ),
    )


def _describe_cluster(version: int, request: Any, code: ErrorCode, message: str) -> Any:
    return build(
        response_schema(ApiKey.DESCRIBE_CLUSTER, version),
        error_code=code,
        error_message=message,
        endpoint_type=getattr(request, "endpoint_type", 1),
        cluster_id="",
        controller_id=-1,
        brokers=(),
        cluster_authorized_operations=OPERATIONS_NOT_REQUESTED,
    )


def _delete_records(version: int, request: Any, code: ErrorCode, message: str) -> Any:
    response_class = response_schema(ApiKey.DELETE_RECORDS, version)
    topic_class = sibling(response_class, "DeleteRecordsTopicResult")
    partition_class = sibling(response_class, "DeleteRecordsPartitionResult")
    return build(
        response_class,
        topics=tuple(
            build(
                topic_class,
                name=topic.name,
                partitions=tuple(
                    build(
                        partition_class,
                        partition_index=partition.partition_index,
                        low_watermark=-1,
                        error_code=code,
                    )
                    for partition in topic.partitions
                ),
            )
            for topic in request.topics
        ),
    )


def _delete_groups(version: int, request: Any, code: ErrorCode, message: str) -> Any:
    response_class = response_schema(ApiKey.DELETE_GROUPS, version)
    result_class = sibling(response_class, "DeletableGroupResult")
    return build(
        response_class,
        results=tuple(
            build(result_class, group_id=group_id, error_code=code)
            for group_id in request.groups_names
        ),
    )


def _offset_delete(version: int, request: Any, code: ErrorCode, message: str) -> Any:
    return build(response_schema(ApiKey.OFFSET_DELETE, version), error_code=code, topics=())


def _describe_log_dirs(version: int, request: Any, code: ErrorCode, message: str) -> Any:
    # v3+ carry a top-level code; v1-2 can only answer no log dirs.
    return build(response_schema(ApiKey.DESCRIBE_LOG_DIRS, version), error_code=code, results=())


def _describe_topic_partitions(version: int, request: Any, code: ErrorCode, message: str) -> Any:
    response_class = response_schema(ApiKey.DESCRIBE_TOPIC_PARTITIONS, version)
    topic_class = sibling(response_class, "DescribeTopicPartitionsResponseTopic")
    return build(
        response_class,
        topics=tuple(
            build(
                topic_class,
                error_code=code,
                name=topic.name,
                topic_id=ZERO_UUID,
                is_internal=False,
                partitions=(),
                topic_authorized_operations=OPERATIONS_NOT_REQUESTED,
            )
            for topic in request.topics
        ),
        next_cursor=None,
    )


def _elect_leaders(version: int, request: Any, code: ErrorCode, message: str) -> Any:
    # v1+ have a top-level code; v0 can only answer per partition.
    response_class = response_schema(ApiKey.ELECT_LEADERS, version)
    topic_class = sibling(response_class, "ReplicaElectionResult")
    partition_class = sibling(response_class, "PartitionResult")
    return build(
        response_class,
        error_code=code,
        replica_election_results=tuple(
            build(
                topic_class,
                topic=topic.topic,
                partition_result=tuple(
                    build(
                        partition_class,
                        partition_id=partition,
                        error_code=code,
                        error_message=message,
                    )
                    for partition in topic.partitions
                ),
            )
            for topic in request.topic_partitions or ()
        ),
    )


def _alter_partition_reassignments(
    version: int, request: Any, code: ErrorCode, message: str
) -> Any:
    response_class = response_schema(ApiKey.ALTER_PARTITION_REASSIGNMENTS, version)
    return build(response_class, error_code=code, error_message=message, responses=())


def _list_partition_reassignments(version: int, request: Any, code: ErrorCode, message: str) -> Any:
    response_class = response_schema(ApiKey.LIST_PARTITION_REASSIGNMENTS, version)
    return build(response_class, error_code=code, error_message=message, topics=())


def _describe_quorum(version: int, request: Any, code: ErrorCode, message: str) -> Any:
    return build(
        response_schema(ApiKey.DESCRIBE_QUORUM, version),
        error_code=code,
        error_message=message,
        topics=(),
        nodes=(),
    )


def _consumer_group_heartbeat(version: int, request: Any, code: ErrorCode, message: str) -> Any:
    return build(
        response_schema(ApiKey.CONSUMER_GROUP_HEARTBEAT, version),
        error_code=code,
        error_message=message,
        member_id=None,
        member_epoch=0,
        heartbeat_interval=NO_THROTTLE,
        assignment=None,
    )


def _consumer_group_describe(version: int, request: Any, code: ErrorCode, message: str) -> Any:
    response_class = response_schema(ApiKey.CONSUMER_GROUP_DESCRIBE, version)
    group_class = sibling(response_class, "DescribedGroup")
    return build(
        response_class,
        groups=tuple(
            build(
                group_class,
                error_code=code,
                error_message=message,
                group_id=group_id,
                group_state="",
                group_epoch=0,
                assignment_epoch=0,
                assignor_name="",
                members=(),
            )
            for group_id in request.group_ids
        ),
    )


def _describe_producers(version: int, request: Any, code: ErrorCode, message: str) -> Any:
    response_class = response_schema(ApiKey.DESCRIBE_PRODUCERS, version)
    topic_class = sibling(response_class, "TopicResponse")
    partition_class = sibling(response_class, "PartitionResponse")
    return build(
        response_class,
        topics=tuple(
            build(
                topic_class,
                name=topic.name,
                partitions=tuple(
                    build(
                        partition_class,
                        partition_index=partition,
                        error_code=code,
                        error_message=message,
                        active_producers=(),
                    )
                    for partition in topic.partition_indexes
                ),
            )
            for topic in request.topics
        ),
    )


_BUILDERS: dict[int, _Builder] = {
    ApiKey.PRODUCE: _produce,
    ApiKey.FETCH: _fetch,
    ApiKey.LIST_OFFSETS: _list_offsets,
    ApiKey.METADATA: _metadata,
    ApiKey.OFFSET_COMMIT: _offset_commit,
    ApiKey.OFFSET_FETCH: _offset_fetch,
    ApiKey.FIND_COORDINATOR: _find_coordinator,
    ApiKey.JOIN_GROUP: _join_group,
    ApiKey.HEARTBEAT: _error_code_only(ApiKey.HEARTBEAT),
    ApiKey.LEAVE_GROUP: _leave_group,
    ApiKey.SYNC_GROUP: _sync_group,
    ApiKey.DESCRIBE_GROUPS: _describe_groups,
    ApiKey.LIST_GROUPS: _list_groups,
    ApiKey.CREATE_TOPICS: _create_topics,
    ApiKey.DELETE_TOPICS: _delete_topics,
    ApiKey.INIT_PRODUCER_ID: _init_producer_id,
    ApiKey.DESCRIBE_CONFIGS: _describe_configs,
    ApiKey.ALTER_CONFIGS: _alter_configs_for(ApiKey.ALTER_CONFIGS),
    ApiKey.INCREMENTAL_ALTER_CONFIGS: _alter_configs_for(ApiKey.INCREMENTAL_ALTER_CONFIGS),
    ApiKey.CREATE_PARTITIONS: _create_partitions,
    ApiKey.DESCRIBE_CLUSTER: _describe_cluster,
    ApiKey.DELETE_RECORDS: _delete_records,
    ApiKey.DELETE_GROUPS: _delete_groups,
    ApiKey.OFFSET_DELETE: _offset_delete,
    ApiKey.DESCRIBE_LOG_DIRS: _describe_log_dirs,
    ApiKey.DESCRIBE_TOPIC_PARTITIONS: _describe_topic_partitions,
    ApiKey.ELECT_LEADERS: _elect_leaders,
    ApiKey.ALTER_PARTITION_REASSIGNMENTS: _alter_partition_reassignments,
    ApiKey.LIST_PARTITION_REASSIGNMENTS: _list_partition_reassignments,
    ApiKey.DESCRIBE_QUORUM: _describe_quorum,
    ApiKey.DESCRIBE_PRODUCERS: _describe_producers,
    ApiKey.CONSUMER_GROUP_HEARTBEAT: _consumer_group_heartbeat,
    ApiKey.CONSUMER_GROUP_DESCRIBE: _consumer_group_describe,
}


def has_error_response(api_key: int) -> bool:
    return api_key in _BUILDERS


def error_response(api_key: int, version: int, request: Any, code: int, message: str) -> Any:
    """``request``'s answer with ``code`` everywhere an error code goes (None for acks=0)."""
    return _BUILDERS[api_key](version, request, ErrorCode(code), message)


def failed_response(
    api_key: int, version: int, request: Any, error: Exception, client_id: str
) -> Any:
    """The per-request error boundary: the request gets an error code, nothing else breaks.

    An operating error (a TrioringError) carries its own Kafka code; any
    other exception is a bug, answered with UNKNOWN_SERVER_ERROR and
    logged (rate-limited) with its traceback. The Kafka server and the
    client's in-process transport both answer so.
    """
    if isinstance(error, TrioringError):
        code = error.kafka_error_code
    else:
        code = ErrorCode.unknown_server_error
        client_log.error(
            "%s v%d from client %s failed unexpectedly; answered UNKNOWN_SERVER_ERROR",
            api_name(api_key),
            version,
            printable(client_id),
            exc_info=error,
            key=("handler bug", api_key),
        )
    return error_response(api_key, version, request, code, str(error))

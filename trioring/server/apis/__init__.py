"""Thin wire adapters: one async function per Kafka API, kio request in, response out.

They translate between the wire's shapes and the handlers' messages; Kafka
semantics live in ``trioring.handlers``, so middleware sees every request.
Each returns a kio response object (or a fast-encoder body for Produce and
Fetch, or an encoded body for Metadata), or None for acks=0 produces, which
Kafka answers with nothing.
"""

from __future__ import annotations

from trioring.protocol.kafka import ApiKey
from trioring.server.apis._context import ApiContext, ApiFunction, MetadataCache
from trioring.server.apis.admin import (
    alter_configs,
    create_partitions,
    create_topics,
    delete_topics,
    describe_configs,
    describe_log_dirs,
    describe_producers,
    incremental_alter_configs,
    init_producer_id,
)
from trioring.server.apis.data import delete_records, fetch, list_offsets, produce
from trioring.server.apis.groups import (
    consumer_group_describe,
    consumer_group_heartbeat,
    delete_groups,
    describe_groups,
    heartbeat,
    join_group,
    leave_group,
    list_groups,
    offset_delete,
    sync_group,
)
from trioring.server.apis.metadata import (
    describe_cluster,
    describe_quorum,
    describe_topic_partitions,
    find_coordinator,
    metadata,
)
from trioring.server.apis.offsets import offset_commit, offset_fetch
from trioring.server.apis.replicas import (
    alter_partition_reassignments,
    elect_leaders,
    list_partition_reassignments,
)

APIS: dict[int, ApiFunction] = {
    ApiKey.PRODUCE: produce,
    ApiKey.FETCH: fetch,
    ApiKey.LIST_OFFSETS: list_offsets,
    ApiKey.METADATA: metadata,
    ApiKey.OFFSET_COMMIT: offset_commit,
    ApiKey.OFFSET_FETCH: offset_fetch,
    ApiKey.FIND_COORDINATOR: find_coordinator,
    ApiKey.JOIN_GROUP: join_group,
    ApiKey.HEARTBEAT: heartbeat,
    ApiKey.LEAVE_GROUP: leave_group,
    ApiKey.SYNC_GROUP: sync_group,
    ApiKey.DESCRIBE_GROUPS: describe_groups,
    ApiKey.LIST_GROUPS: list_groups,
    ApiKey.CREATE_TOPICS: create_topics,
    ApiKey.DELETE_TOPICS: delete_topics,
    ApiKey.INIT_PRODUCER_ID: init_producer_id,
    ApiKey.DESCRIBE_CONFIGS: describe_configs,
    ApiKey.ALTER_CONFIGS: alter_configs,
    ApiKey.INCREMENTAL_ALTER_CONFIGS: incremental_alter_configs,
    ApiKey.CREATE_PARTITIONS: create_partitions,
    ApiKey.DESCRIBE_CLUSTER: describe_cluster,
    ApiKey.DELETE_RECORDS: delete_records,
    ApiKey.DELETE_GROUPS: delete_groups,
    ApiKey.OFFSET_DELETE: offset_delete,
    ApiKey.DESCRIBE_LOG_DIRS: describe_log_dirs,
    ApiKey.DESCRIBE_TOPIC_PARTITIONS: describe_topic_partitions,
    ApiKey.LIST_PARTITION_REASSIGNMENTS: list_partition_reassignments,
    ApiKey.ALTER_PARTITION_REASSIGNMENTS: alter_partition_reassignments,
    ApiKey.ELECT_LEADERS: elect_leaders,
    ApiKey.DESCRIBE_QUORUM: describe_quorum,
    ApiKey.DESCRIBE_PRODUCERS: describe_producers,
    ApiKey.CONSUMER_GROUP_HEARTBEAT: consumer_group_heartbeat,
    ApiKey.CONSUMER_GROUP_DESCRIBE: consumer_group_describe,
}

__all__ = ["APIS", "ApiContext", "ApiFunction", "MetadataCache", "produce"]

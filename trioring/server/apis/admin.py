"""Wire adapters of the admin APIs: CreateTopics, DeleteTopics, CreatePartitions,
DescribeConfigs, AlterConfigs, IncrementalAlterConfigs, DescribeLogDirs, InitProducerId."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from kio.schema.errors import ErrorCode

from trioring.errors import TrioringError
from trioring.handlers.messages import (
    AlterConfigsRequest,
    AlterConfigsResource,
    AlterConfigsResponse,
    ConfigChange,
    ConfigResource,
    CreatePartitionsRequest,
    CreateTopicsRequest,
    DeleteTopicsRequest,
    DescribeConfigsRequest,
    DescribeLogDirsRequest,
    DescribeProducersRequest,
    IncrementalAlterConfigsRequest,
    InitProducerIdRequest,
    NewPartitions,
    NewTopic,
    TopicResult,
)
from trioring.protocol.kafka import ApiKey, response_schema
from trioring.server.apis._build import ZERO_UUID, build, sibling
from trioring.server.apis._context import NONE, ApiContext, error_code, error_message

#: CreateTopics v5+ reports each created topic's partitions, replication and configs.
CREATE_TOPICS_DETAILS_VERSION = 5
#: DescribeConfigs v1+ carries each config's synonyms.
SYNONYMS_VERSION = 1
#: DeleteTopics v6+ may name topics by id.
DELETE_TOPICS_BY_ID_VERSION = 6

__all__ = [
    "alter_configs",
    "create_partitions",
    "create_topics",
    "delete_topics",
    "describe_configs",
    "describe_log_dirs",
    "incremental_alter_configs",
    "init_producer_id",
]


def _topic_results(
    result_class: type, results: Sequence[TopicResult], config_class: type | None = None
) -> tuple[Any, ...]:
    """CreateTopics' and CreatePartitions' per-topic answers: name, code and message,
    and for CreateTopics v5+ the partition count, replication factor, configs and id."""
    answers = []
    for result in results:
        created = result.created
        fields: dict[str, Any] = {}
        if config_class is not None:
            fields = {
                "topic_id": ZERO_UUID
                if not created or not created.topic_id
                else (uuid.UUID(created.topic_id)),
                "num_partitions": -1 if created is None else created.partitions,
                "replication_factor": -1 if created is None else 1,
                "configs": ()
                if created is None
                else tuple(
                    build(
                        config_class,
                        name=entry.name,
                        value=entry.value,
                        read_only=entry.read_only,
                        config_source=entry.source,
                        is_sensitive=entry.sensitive,
                    )
                    for entry in created.configs
                ),
            }
        answers.append(
            build(
                result_class,
                name=result.name,
                error_code=error_code(result.error),
                error_message=error_message(result.error),
                **fields,
            )
        )
    return tuple(answers)


async def create_topics(ctx: ApiContext, version: int, request: Any) -> Any:
    response_class = response_schema(ApiKey.CREATE_TOPICS, version)
    result_class = sibling(response_class, "CreatableTopicResult")
    response = await ctx.handlers.create_topics(
        ctx.handler_context(),
        CreateTopicsRequest(
            tuple(
                NewTopic(
                    name=topic.name,
                    partitions=int(topic.num_partitions),
                    replication_factor=int(topic.replication_factor),
                    assignments=tuple(
                        (int(a.partition_index), tuple(int(b) for b in a.broker_ids))
                        for a in topic.assignments
                    ),
                    configs=tuple((config.name, config.value) for config in topic.configs),
                )
                for topic in request.topics
            ),
            validate_only=bool(request.validate_only),
        ),
    )
    config_class = (
        sibling(response_class, "CreatableTopicConfigs")
        if version >= CREATE_TOPICS_DETAILS_VERSION
        else None
    )
    return build(
        response_class,
        topics=_topic_results(result_class, response.results, config_class),
    )


async def delete_topics(ctx: ApiContext, version: int, request: Any) -> Any:
    response_class = response_schema(ApiKey.DELETE_TOPICS, version)
    result_class = sibling(response_class, "DeletableTopicResult")
    if version < DELETE_TOPICS_BY_ID_VERSION:
        response = await ctx.handlers.delete_topics(
            ctx.handler_context(), DeleteTopicsRequest(tuple(request.topic_names))
        )
        return build(
            response_class,
            responses=tuple(
                build(
                    result_class,
                    name=result.name,
                    error_code=error_code(result.error),
                    error_message=error_message(result.error),
                )
                for result in response.results
            ),
        )
    # v6: each topic by name or by id (KIP-516).
    topics_by_id = ctx.base.cluster.current.topics_by_id
    answers: list[Any] = [None] * len(request.topics)
    names: list[str] = []
    places: list[tuple[int, uuid.UUID]] = []
    for place, topic in enumerate(request.topics):
        topic_id = topic.topic_id if topic.topic_id is not None else ZERO_UUID
        refusal: tuple[int, str] | None = None
        name = topic.name
        if topic_id.int != 0:
            info = topics_by_id.get(topic_id.hex)
            if topic.name is not None:
                refusal = (ErrorCode.invalid_request, "give a topic's name or its id, not both")
            elif info is None or info.internal:
                refusal = (ErrorCode.unknown_topic_id, f"no topic has id {topic_id}")
            else:
                name = info.name
        elif name is None:
            refusal = (ErrorCode.invalid_request, "a topic needs a name or an id")
        if refusal is not None:
            answers[place] = build(
                result_class,
                name=topic.name,
                topic_id=topic_id,
                error_code=refusal[0],
                error_message=refusal[1],
            )
            continue
        assert name is not None
        names.append(name)
        places.append((place, topic_id))
    response = await ctx.handlers.delete_topics(
        ctx.handler_context(), DeleteTopicsRequest(tuple(names))
    )
    for (place, topic_id), result in zip(places, response.results, strict=True):
        answers[place] = build(
            result_class,
            name=result.name,
            topic_id=topic_id,
            error_code=error_code(result.error),
            error_message=error_message(result.error),
        )
    return build(response_class, responses=tuple(answers))


async def create_partitions(ctx: ApiContext, version: int, request: Any) -> Any:
    response_class = response_schema(ApiKey.CREATE_PARTITIONS, version)
    result_class = sibling(response_class, "CreatePartitionsTopicResult")
    response = await ctx.handlers.create_partitions(
        ctx.handler_context(),
        CreatePartitionsRequest(
            tuple(
                NewPartitions(
                    name=topic.name,
                    count=int(topic.count),
                    assignments=None
                    if topic.assignments is None
                    else tuple(tuple(int(b) for b in a.broker_ids) for a in topic.assignments),
                )
                for topic in request.topics
            ),
            validate_only=bool(request.validate_only),
        ),
    )
    return build(
        response_class,
        results=_topic_results(result_class, response.results),
    )


async def describe_configs(ctx: ApiContext, version: int, request: Any) -> Any:
    response_class = response_schema(ApiKey.DESCRIBE_CONFIGS, version)
    result_class = sibling(response_class, "DescribeConfigsResult")
    entry_class = sibling(response_class, "DescribeConfigsResourceResult")
    documentation = bool(getattr(request, "include_documentation", False))
    response = await ctx.handlers.describe_configs(
        ctx.handler_context(),
        DescribeConfigsRequest(
            tuple(
                ConfigResource(
                    int(resource.resource_type),
                    resource.resource_name,
                    None
                    if resource.configuration_keys is None
                    else tuple(resource.configuration_keys),
                )
                for resource in request.resources
            ),
            include_synonyms=bool(getattr(request, "include_synonyms", False)),
        ),
    )
    synonym_class = (
        sibling(response_class, "DescribeConfigsSynonym") if version >= SYNONYMS_VERSION else None
    )
    return build(
        response_class,
        results=tuple(
            build(
                result_class,
                error_code=error_code(result.error),
                error_message=error_message(result.error),
                resource_type=result.resource.resource_type,
                resource_name=result.resource.name,
                configs=tuple(
                    build(
                        entry_class,
                        name=entry.name,
                        value=entry.value,
                        read_only=entry.read_only,
                        is_default=entry.is_default,
                        config_source=entry.source,
                        is_sensitive=entry.sensitive,
                        synonyms=()
                        if synonym_class is None
                        else tuple(
                            build(
                                synonym_class,
                                name=synonym.name,
                                value=synonym.value,
                                source=synonym.source,
                            )
                            for synonym in entry.synonyms
                        ),
                        config_type=entry.config_type,
                        documentation=entry.documentation if documentation else None,
                    )
                    for entry in result.entries
                ),
            )
            for result in response.results
        ),
    )


def _alter_resources(request: Any, incremental: bool) -> tuple[AlterConfigsResource, ...]:
    return tuple(
        AlterConfigsResource(
            int(resource.resource_type),
            resource.resource_name,
            tuple(
                ConfigChange(
                    config.name,
                    config.value,
                    int(config.config_operation) if incremental else 0,
                )
                for config in resource.configs
            ),
        )
        for resource in request.resources
    )


def _alter_answer(api_key: ApiKey, version: int, response: AlterConfigsResponse) -> Any:
    response_class = response_schema(api_key, version)
    result_class = sibling(response_class, "AlterConfigsResourceResponse")
    return build(
        response_class,
        responses=tuple(
            build(
                result_class,
                error_code=error_code(result.error),
                error_message=error_message(result.error),
                resource_type=result.resource.resource_type,
                resource_name=result.resource.name,
            )
            for result in response.results
        ),
    )


async def alter_configs(ctx: ApiContext, version: int, request: Any) -> Any:
    response = await ctx.handlers.alter_configs(
        ctx.handler_context(),
        AlterConfigsRequest(_alter_resources(request, False), bool(request.validate_only)),
    )
    return _alter_answer(ApiKey.ALTER_CONFIGS, version, response)


async def incremental_alter_configs(ctx: ApiContext, version: int, request: Any) -> Any:
    response = await ctx.handlers.incremental_alter_configs(
        ctx.handler_context(),
        IncrementalAlterConfigsRequest(
            _alter_resources(request, True), bool(request.validate_only)
        ),
    )
    return _alter_answer(ApiKey.INCREMENTAL_ALTER_CONFIGS, version, response)


async def describe_log_dirs(ctx: ApiContext, version: int, request: Any) -> Any:
    response_class = response_schema(ApiKey.DESCRIBE_LOG_DIRS, version)
    result_class = sibling(response_class, "DescribeLogDirsResult")
    topic_class = sibling(response_class, "DescribeLogDirsTopic")
    partition_class = sibling(response_class, "DescribeLogDirsPartition")
    wanted: dict[str, tuple[int, ...]] | None = None
    if request.topics is not None:
        wanted = {}
        for topic in request.topics:
            wanted[topic.topic] = wanted.get(topic.topic, ()) + tuple(
                int(p) for p in topic.partitions
            )
    response = await ctx.handlers.describe_log_dirs(
        ctx.handler_context(), DescribeLogDirsRequest(wanted)
    )
    by_topic: dict[str, list[Any]] = {}
    for entry in response.partitions:
        by_topic.setdefault(entry.topic, []).append(
            build(
                partition_class,
                partition_index=entry.partition,
                partition_size=entry.size_bytes,
                offset_lag=entry.offset_lag,
                is_future_key=False,
            )
        )
    return build(
        response_class,
        error_code=NONE,
        results=(
            build(
                result_class,
                error_code=NONE,
                log_dir=response.log_dir,
                topics=tuple(
                    build(topic_class, name=name, partitions=tuple(partitions))
                    for name, partitions in by_topic.items()
                ),
                total_bytes=response.total_bytes,
                usable_bytes=response.usable_bytes,
            ),
        ),
    )


async def describe_producers(ctx: ApiContext, version: int, request: Any) -> Any:
    response_class = response_schema(ApiKey.DESCRIBE_PRODUCERS, version)
    topic_class = sibling(response_class, "TopicResponse")
    partition_class = sibling(response_class, "PartitionResponse")
    state_class = sibling(response_class, "ProducerState")
    asked = [
        (topic.name, int(partition))
        for topic in request.topics
        for partition in topic.partition_indexes
    ]
    response = await ctx.handlers.describe_producers(
        ctx.handler_context(), DescribeProducersRequest(tuple(asked))
    )

    def partition_answer(topic: str, partition: int) -> Any:
        result = response.partitions[(topic, partition)]
        if isinstance(result, TrioringError):
            return build(
                partition_class,
                partition_index=partition,
                error_code=error_code(result),
                error_message=str(result),
                active_producers=(),
            )
        return build(
            partition_class,
            partition_index=partition,
            error_code=NONE,
            error_message=None,
            active_producers=tuple(
                build(
                    state_class,
                    producer_id=producer.producer_id,
                    producer_epoch=producer.epoch,
                    last_sequence=producer.last_sequence,
                    last_timestamp=producer.last_timestamp_ms,
                    coordinator_epoch=-1,
                    current_txn_start_offset=-1,
                )
                for producer in result
            ),
        )

    return build(
        response_class,
        topics=tuple(
            build(
                topic_class,
                name=topic.name,
                partitions=tuple(
                    partition_answer(topic.name, int(p)) for p in topic.partition_indexes
                ),
            )
            for topic in request.topics
        ),
    )


async def init_producer_id(ctx: ApiContext, version: int, request: Any) -> Any:
    response_class = response_schema(ApiKey.INIT_PRODUCER_ID, version)
    try:
        response = await ctx.handlers.init_producer_id(
            ctx.handler_context(),
            InitProducerIdRequest(
                request.transactional_id,
                int(request.transaction_timeout.total_seconds() * 1000),
            ),
        )
    except Exception as error:
        return build(
            response_class, error_code=error_code(error), producer_id=-1, producer_epoch=-1
        )
    return build(
        response_class,
        error_code=NONE,
        producer_id=response.producer_id,
        producer_epoch=response.producer_epoch,
    )

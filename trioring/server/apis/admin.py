"""Wire adapters of the admin APIs: CreateTopics, DeleteTopics, CreatePartitions,
DescribeConfigs, InitProducerId."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from trioring.handlers.messages import (
    ConfigResource,
    CreatePartitionsRequest,
    CreateTopicsRequest,
    DeleteTopicsRequest,
    DescribeConfigsRequest,
    InitProducerIdRequest,
    NewPartitions,
    NewTopic,
    TopicResult,
)
from trioring.protocol.kafka import ApiKey, response_schema
from trioring.server.apis._build import build, sibling
from trioring.server.apis._context import NONE, ApiContext, error_code, error_message

__all__ = [
    "create_partitions",
    "create_topics",
    "delete_topics",
    "describe_configs",
    "init_producer_id",
]


def _topic_results(result_class: type, results: Sequence[TopicResult]) -> tuple[Any, ...]:
    """CreateTopics' and CreatePartitions' per-topic answers: name, code and message."""
    return tuple(
        build(
            result_class,
            name=result.name,
            error_code=error_code(result.error),
            error_message=error_message(result.error),
        )
        for result in results
    )


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
    return build(
        response_class,
        topics=_topic_results(result_class, response.results),
    )


async def delete_topics(ctx: ApiContext, version: int, request: Any) -> Any:
    response_class = response_schema(ApiKey.DELETE_TOPICS, version)
    result_class = sibling(response_class, "DeletableTopicResult")
    response = await ctx.handlers.delete_topics(
        ctx.handler_context(), DeleteTopicsRequest(tuple(request.topic_names))
    )
    return build(
        response_class,
        responses=tuple(
            build(result_class, name=result.name, error_code=error_code(result.error))
            for result in response.results
        ),
    )


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
            )
        ),
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
                        synonyms=(),
                    )
                    for entry in result.entries
                ),
            )
            for result in response.results
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

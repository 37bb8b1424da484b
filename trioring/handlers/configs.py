"""Configs: DescribeConfigs, AlterConfigs and IncrementalAlterConfigs, with Kafka's rules.

A topic has its own configs (overrides, Kafka names to values) over the
broker's defaults; its LogConfig is what they make of the defaults. A
change goes to the controller, which persists the topic's new overrides
and LogConfig in the metadata log and answers once every worker has them;
the workers owning its partitions give their open logs the new LogConfig
(retention uses it at its next pass, a new segment size applies from the
next roll).

What trioring applies at run time is listed in ``_TOPIC_CONFIGS``; every
other Kafka topic config is described with Kafka's default and refused
with INVALID_CONFIG, the answer Kafka gives a value it cannot accept.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping

import attrs
import trio

from trioring._constants import BATCH_BYTES_MAX_DEFAULT
from trioring._logging import printable
from trioring.cluster.model import TopicInfo, validate_topic_name
from trioring.errors import (
    InvalidArgumentError,
    InvalidConfigError,
    InvalidTopicError,
    TrioringError,
    UnknownTopicOrPartitionError,
)
from trioring.handlers._kafka_configs import INT, LIST, TOPIC_CONFIGS
from trioring.handlers.context import HandlerContext
from trioring.handlers.messages import (
    APPEND_CONFIG,
    BROKER_RESOURCE,
    DEFAULT_CONFIG_SOURCE,
    DELETE_CONFIG,
    SET_CONFIG,
    STATIC_BROKER_CONFIG_SOURCE,
    SUBTRACT_CONFIG,
    TOPIC_CONFIG_SOURCE,
    TOPIC_RESOURCE,
    AlterConfigsRequest,
    AlterConfigsResource,
    AlterConfigsResponse,
    ConfigEntry,
    ConfigResource,
    ConfigResourceResult,
    ConfigSynonym,
    DescribeConfigsRequest,
    DescribeConfigsResponse,
    IncrementalAlterConfigsRequest,
)
from trioring.storage.log import LogConfig

__all__ = [
    "alter_configs",
    "describe_configs",
    "incremental_alter_configs",
    "kafka_topic_configs",
    "log_config_from_kafka",
    "topic_config_entries",
]

#: Kafka topic config name -> LogConfig field: what trioring applies at run time.
_TOPIC_CONFIGS: dict[str, str] = {
    "retention.ms": "retention_ms",
    "retention.bytes": "retention_bytes",
    "segment.bytes": "segment_bytes",
    "segment.ms": "segment_ms",
    "index.interval.bytes": "index_interval_bytes",
}
#: Configs a topic may have of its own: the above and cleanup.policy=delete.
_SETTABLE = frozenset(_TOPIC_CONFIGS) | {"cleanup.policy"}

#: What Java's Integer.parseInt / Long.parseLong accept (after ConfigDef's trim).
_INTEGER = re.compile(r"[+-]?[0-9]+")
_INT_MAX = 2**31 - 1
_LONG_MAX = 2**63 - 1

_OPERATION_NAMES = {SET_CONFIG: "SET", DELETE_CONFIG: "DELETE", APPEND_CONFIG: "APPEND"}
_OPERATION_NAMES[SUBTRACT_CONFIG] = "SUBTRACT"


def log_config_from_kafka(base: LogConfig, configs: Mapping[str, str | None]) -> LogConfig:
    """A topic's LogConfig from Kafka config entries; InvalidConfigError names the bad one."""
    changes: dict[str, int | None] = {}
    for name, value in configs.items():
        if value is None:
            # As Kafka: a null value in CreateTopics is refused, not "unset".
            raise InvalidConfigError(f"null value not supported for topic config {name!r}")
        if name == "cleanup.policy":
            if value != "delete":
                raise InvalidConfigError(
                    f"cleanup.policy='{printable(value)}' is not supported: only 'delete'"
                )
            continue
        field = _TOPIC_CONFIGS.get(name)
        if field is None:
            if name in TOPIC_CONFIGS:
                raise InvalidConfigError(
                    f"topic config '{name}' is not supported by trioring (it cannot be set)"
                )
            raise InvalidConfigError(f"Unknown topic config name: '{printable(name)}'")
        if not _INTEGER.fullmatch(value.strip()):
            raise InvalidConfigError(f"topic config {name}='{printable(value)}' is not a number")
        number = int(value.strip())
        largest = _INT_MAX if TOPIC_CONFIGS[name].config_type == INT else _LONG_MAX
        if not -largest - 1 <= number <= largest:
            raise InvalidConfigError(f"topic config {name}={number} is out of range")
        if field in ("retention_ms", "retention_bytes") and number < 0:
            if number != -1:
                raise InvalidConfigError(f"{name} must be -1 (unlimited) or >= 0, not {number}")
            changes[field] = None  # Kafka's -1: unlimited
        else:
            changes[field] = number
    try:
        return attrs.evolve(base, **changes)  # type: ignore[arg-type]
    except InvalidArgumentError as error:
        raise InvalidConfigError(str(error)) from None


def kafka_topic_configs(config: LogConfig, batch_bytes_max: int) -> dict[str, str]:
    """The values trioring really has for a topic of ``config``, Kafka names."""
    return {
        "cleanup.policy": "delete",
        "retention.ms": str(-1 if config.retention_ms is None else config.retention_ms),
        "retention.bytes": str(-1 if config.retention_bytes is None else config.retention_bytes),
        "segment.bytes": str(config.segment_bytes),
        "segment.ms": str(config.segment_ms),
        "index.interval.bytes": str(config.index_interval_bytes),
        "max.message.bytes": str(batch_bytes_max),
        "message.timestamp.type": "CreateTime",
        "compression.type": "producer",
    }


def topic_overrides(ctx: HandlerContext, info: TopicInfo) -> dict[str, str]:
    """A topic's own configs. A topic made before trioring recorded them has its
    LogConfig only: what differs from the broker's defaults is its own."""
    overrides = dict(info.overrides)
    batch_bytes_max = ctx.shard.config.batch_bytes_max
    values = kafka_topic_configs(info.config, batch_bytes_max)
    defaults = kafka_topic_configs(ctx.shard.config.log, batch_bytes_max)
    for name in _TOPIC_CONFIGS:
        if name not in overrides and values[name] != defaults[name]:
            overrides[name] = values[name]
    return overrides


def topic_config_entries(
    ctx: HandlerContext,
    config: LogConfig,
    overrides: Mapping[str, str],
    keys: tuple[str, ...] | None,
    include_synonyms: bool = False,
) -> tuple[ConfigEntry, ...]:
    """Every Kafka 4.0 topic config (only ``keys`` unless None) as trioring has it.

    Source: TOPIC_CONFIG for the topic's own, STATIC_BROKER_CONFIG where the
    broker's setting differs from trioring's built-in default, DEFAULT_CONFIG
    otherwise. Configs trioring does not apply show Kafka's default and are
    read-only (altering them is refused).
    """
    batch_bytes_max = ctx.shard.config.batch_bytes_max
    values = kafka_topic_configs(config, batch_bytes_max)
    broker = kafka_topic_configs(ctx.shard.config.log, batch_bytes_max)
    built_in = kafka_topic_configs(LogConfig(), BATCH_BYTES_MAX_DEFAULT)
    entries = []
    for name, kafka in sorted(TOPIC_CONFIGS.items()):
        if keys is not None and name not in keys:
            continue
        broker_name = kafka.synonyms[0] if kafka.synonyms else name
        synonyms: list[ConfigSynonym] = []
        if name in values:
            value: str | None = values[name]
            if name in overrides:
                source = TOPIC_CONFIG_SOURCE
                synonyms.append(ConfigSynonym(name, value, TOPIC_CONFIG_SOURCE))
            elif broker[name] != built_in[name]:
                source = STATIC_BROKER_CONFIG_SOURCE
            else:
                source = DEFAULT_CONFIG_SOURCE
            if broker[name] != built_in[name]:
                synonyms.append(
                    ConfigSynonym(broker_name, broker[name], STATIC_BROKER_CONFIG_SOURCE)
                )
            synonyms.append(ConfigSynonym(broker_name, built_in[name], DEFAULT_CONFIG_SOURCE))
        else:
            value = kafka.kafka_default
            source = DEFAULT_CONFIG_SOURCE
            synonyms.append(ConfigSynonym(broker_name, value, DEFAULT_CONFIG_SOURCE))
        entries.append(
            ConfigEntry(
                name,
                value,
                read_only=name not in _SETTABLE,
                is_default=source == DEFAULT_CONFIG_SOURCE,
                source=source,
                config_type=kafka.config_type,
                documentation=kafka.documentation,
                synonyms=tuple(synonyms) if include_synonyms else (),
            )
        )
    return tuple(entries)


# --- DescribeConfigs --------------------------------------------------------------------


def _existing_topic(ctx: HandlerContext, name: str) -> TopicInfo:
    """The topic a config request names; InvalidTopicError or UnknownTopicOrPartitionError."""
    info = ctx.cluster.current.topics.get(name)
    if info is None or info.internal:
        validate_topic_name(name)
        raise UnknownTopicOrPartitionError(f"unknown topic {name!r}")
    return info


def _node_ids(ctx: HandlerContext) -> set[str]:
    node_ids = {str(node.node_id) for node in ctx.cluster.current_nodes}
    node_ids.add(str(ctx.cluster.worker_index))
    return node_ids


async def describe_configs(
    ctx: HandlerContext, request: DescribeConfigsRequest
) -> DescribeConfigsResponse:
    for resource in request.resources:
        if resource.resource_type not in (TOPIC_RESOURCE, BROKER_RESOURCE):
            # As Kafka: one unknown resource type refuses the whole request.
            raise InvalidArgumentError(
                f"resource type {resource.resource_type} is not supported: "
                f"use {TOPIC_RESOURCE} (topic) or {BROKER_RESOURCE} (broker)"
            )
    results = []
    node_ids = _node_ids(ctx)
    for resource in request.resources:
        error: TrioringError | None = None
        entries: tuple[ConfigEntry, ...] = ()
        if resource.resource_type == TOPIC_RESOURCE:
            try:
                info = _existing_topic(ctx, resource.name)
                entries = topic_config_entries(
                    ctx,
                    info.config,
                    topic_overrides(ctx, info),
                    resource.keys,
                    request.include_synonyms,
                )
            except (InvalidTopicError, UnknownTopicOrPartitionError) as caught:
                error = caught
        elif resource.name not in ("", *node_ids):
            error = InvalidArgumentError(
                f"unexpected broker id '{printable(resource.name)}', expected one of "
                f"{sorted(node_ids)}"
            )
        # A broker resource of a node: no broker configs are exposed yet, an
        # empty, successful answer.
        results.append(ConfigResourceResult(resource, error, entries))
    await trio.lowlevel.checkpoint()
    return DescribeConfigsResponse(tuple(results))


# --- AlterConfigs, IncrementalAlterConfigs ---------------------------------------------


async def alter_configs(ctx: HandlerContext, request: AlterConfigsRequest) -> AlterConfigsResponse:
    """Kafka's AlterConfigs: a resource's configs become exactly those given."""
    return await _alter(ctx, request.resources, request.validate_only, incremental=False)


async def incremental_alter_configs(
    ctx: HandlerContext, request: IncrementalAlterConfigsRequest
) -> AlterConfigsResponse:
    """Kafka's IncrementalAlterConfigs: SET, DELETE, APPEND, SUBTRACT one config at a time."""
    return await _alter(ctx, request.resources, request.validate_only, incremental=True)


async def _alter(
    ctx: HandlerContext,
    resources: tuple[AlterConfigsResource, ...],
    validate_only: bool,
    *,
    incremental: bool,
) -> AlterConfigsResponse:
    """Each resource on its own: its error (or none) is its result.

    Checks in Kafka's order (ConfigAdminManager, then the controller): a
    resource named twice, a config named twice, a null value, the resource
    type, then the resource and its configs.
    """
    counts = Counter((resource.resource_type, resource.name) for resource in resources)
    results = []
    for resource in resources:
        error: TrioringError | None = None
        try:
            if counts[(resource.resource_type, resource.name)] > 1:
                raise InvalidArgumentError("Each resource must appear at most once.")
            names = Counter(change.name for change in resource.changes)
            repeated = sorted(name for name, count in names.items() if count > 1)
            if repeated:
                raise InvalidArgumentError(
                    f"Error due to duplicate config keys: {', '.join(map(printable, repeated))}"
                )
            nulls = [
                change.name
                for change in resource.changes
                if change.value is None and change.operation != DELETE_CONFIG
            ]
            if nulls:
                raise InvalidArgumentError(
                    f"Null value not supported for : {', '.join(map(printable, nulls))}"
                )
            if resource.resource_type == TOPIC_RESOURCE:
                await _alter_topic(ctx, resource, validate_only, incremental)
            elif resource.resource_type == BROKER_RESOURCE:
                await _alter_broker(ctx, resource, incremental)
            else:
                # Kafka: BROKER_LOGGER (8) in IncrementalAlterConfigs sets log4j
                # levels; GROUP (32) and CLIENT_METRICS (16) configs belong to
                # features trioring does not have.
                raise InvalidArgumentError(
                    f"Unknown resource type {resource.resource_type}: trioring alters "
                    f"topic ({TOPIC_RESOURCE}) and broker ({BROKER_RESOURCE}) configs"
                )
        except TrioringError as caught:
            error = caught
        results.append(
            ConfigResourceResult(ConfigResource(resource.resource_type, resource.name), error)
        )
    await trio.lowlevel.checkpoint()
    return AlterConfigsResponse(tuple(results))


def _apply_changes(
    current: Mapping[str, str], resource: AlterConfigsResource, incremental: bool
) -> dict[str, str]:
    """A topic's own configs after the changes (not yet validated)."""
    if not incremental:
        return {change.name: str(change.value) for change in resource.changes}
    configs = dict(current)
    for change in resource.changes:
        operation, name = change.operation, change.name
        if operation == SET_CONFIG:
            configs[name] = str(change.value)
        elif operation == DELETE_CONFIG:
            configs.pop(name, None)
        elif operation in (APPEND_CONFIG, SUBTRACT_CONFIG):
            kafka = TOPIC_CONFIGS.get(name)
            if kafka is None or kafka.config_type != LIST:
                raise InvalidConfigError(
                    f"Can't {_OPERATION_NAMES[operation]} to key {printable(name)} because "
                    "its type is not LIST."
                )
            now = configs.get(name, kafka.kafka_default or "")
            items = [item.strip() for item in now.split(",") if item.strip()]
            given = [item.strip() for item in str(change.value).split(",") if item.strip()]
            if operation == APPEND_CONFIG:
                items += [item for item in given if item not in items]
            else:
                items = [item for item in items if item not in given]
            configs[name] = ",".join(items)
        else:
            raise InvalidArgumentError(f"Unknown operation type {operation}")
    return configs


async def _alter_topic(
    ctx: HandlerContext, resource: AlterConfigsResource, validate_only: bool, incremental: bool
) -> None:
    if resource.name == "":
        raise InvalidArgumentError("Default topic resources are not allowed.")
    info = _existing_topic(ctx, resource.name)
    overrides = _apply_changes(topic_overrides(ctx, info), resource, incremental)
    config = log_config_from_kafka(ctx.shard.config.log, overrides)
    if validate_only:
        await trio.lowlevel.checkpoint()
        return
    await ctx.cluster.alter_topic_config(info.name, config, overrides)


async def _alter_broker(
    ctx: HandlerContext, resource: AlterConfigsResource, incremental: bool
) -> None:
    """Broker configs are static in trioring: every change is refused, as Kafka refuses
    a config it cannot update dynamically (INVALID_REQUEST)."""
    name = resource.name
    if name:
        try:
            broker_id = int(name)
        except ValueError:
            raise InvalidArgumentError("Unable to parse broker name as a base 10 number.") from None
        if str(broker_id) not in _node_ids(ctx):
            raise InvalidArgumentError(
                f"Unexpected broker id, expected one of {sorted(_node_ids(ctx))} or empty "
                f"string, but received {printable(name)}"
            )
    for change in resource.changes:
        if incremental and change.operation not in _OPERATION_NAMES:
            raise InvalidArgumentError(f"Unknown operation type {change.operation}")
    if resource.changes:
        names = ", ".join(sorted(printable(change.name) for change in resource.changes))
        raise InvalidArgumentError(
            f"Cannot update these configs dynamically: {names} (broker configs are static "
            "in trioring: set them in its configuration and restart)"
        )
    await trio.lowlevel.checkpoint()

"""Configs: DescribeConfigs, AlterConfigs and IncrementalAlterConfigs, with Kafka's rules.

A topic has its own configs (overrides, Kafka names to values) over the
broker's defaults; its LogConfig is what they make of the defaults. A
change goes to the controller, which persists the topic's new overrides
and LogConfig in the metadata log and answers once every worker has them;
the workers owning its partitions give their open logs the new LogConfig
(retention uses it at its next pass, a new segment size applies from the
next roll).

The defaults are the broker's ``[log]`` settings, with the ``log.*``
broker configs changed at run time over them: for the whole cluster
(resource name "") or for one node (Kafka's per-broker dynamic configs,
applied by that worker to its partitions). Every other broker config is
static in trioring.

What trioring applies at run time is listed in ``cluster.topic_configs``;
every other Kafka config is described with Kafka's default and refused:
topic configs with INVALID_CONFIG, the answer Kafka gives a value it
cannot accept, broker configs with INVALID_REQUEST, Kafka's answer for a
config it cannot change at run time.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Mapping

import attrs
import trio

from trioring._constants import (
    BATCH_BYTES_MAX_DEFAULT,
    CONFIG_CHANGE_ATTEMPTS_MAX,
    CONFIG_CHANGE_WAIT_SECONDS,
    DESCRIBE_TOPIC_PARTITIONS_MAX,
    OFFSETS_TOPIC_PARTITIONS,
)
from trioring._logging import printable
from trioring.cluster.model import Node, TopicInfo, validate_topic_name
from trioring.cluster.topic_configs import (
    BROKER_DEFAULTS,
    TOPIC_FIELDS,
    derive_overrides,
    effective_config,
    log_defaults,
)
from trioring.config import BrokerConfig, ServerConfig
from trioring.core.groups.assignors import ASSIGNORS
from trioring.errors import (
    ConfigsChangedError,
    InvalidArgumentError,
    InvalidConfigError,
    InvalidTopicError,
    TrioringError,
    UnknownTopicOrPartitionError,
)
from trioring.handlers._kafka_configs import BROKER_CONFIGS, INT, LIST, PASSWORD, TOPIC_CONFIGS
from trioring.handlers.context import HandlerContext
from trioring.handlers.messages import (
    APPEND_CONFIG,
    BROKER_RESOURCE,
    DEFAULT_CONFIG_SOURCE,
    DELETE_CONFIG,
    DYNAMIC_BROKER_CONFIG_SOURCE,
    DYNAMIC_DEFAULT_BROKER_CONFIG_SOURCE,
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
    "broker_config_entries",
    "describe_configs",
    "incremental_alter_configs",
    "kafka_topic_configs",
    "log_config_from_kafka",
    "topic_config_entries",
    "topic_defaults",
]

#: Configs a topic may have of its own: the above and cleanup.policy=delete.
_SETTABLE = frozenset(TOPIC_FIELDS) | {"cleanup.policy"}

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
        field = TOPIC_FIELDS.get(name)
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


def _node_defaults(ctx: HandlerContext) -> Mapping[str, str]:
    """This node's own dynamic broker configs (Kafka's per-broker ones)."""
    return ctx.cluster.current.node_defaults.get(str(ctx.cluster.worker_index), {})


def topic_config_here(ctx: HandlerContext, info: TopicInfo) -> LogConfig:
    """A topic's LogConfig on this node (its own dynamic broker configs may change it)."""
    current = ctx.cluster.current
    return effective_config(
        info, ctx.shard.config.log, current.broker_defaults, _node_defaults(ctx)
    )


def topic_defaults(ctx: HandlerContext) -> LogConfig:
    """What a topic's LogConfig falls back to: the broker's ``[log]`` settings with the
    cluster-wide dynamic broker configs over them."""
    return log_defaults(ctx.shard.config.log, ctx.cluster.current.broker_defaults)


def topic_overrides(ctx: HandlerContext, info: TopicInfo) -> dict[str, str]:
    """A topic's own configs. A topic made before trioring recorded them has its
    LogConfig only: what differs from the broker's defaults is its own."""
    if info.overrides is not None:
        return dict(info.overrides)
    return derive_overrides(info.config, topic_defaults(ctx))


def topic_config_entries(
    ctx: HandlerContext,
    config: LogConfig,
    overrides: Mapping[str, str],
    keys: tuple[str, ...] | None,
    include_synonyms: bool = False,
) -> tuple[ConfigEntry, ...]:
    """Every Kafka 4.0 topic config (only ``keys`` unless None) as trioring has it.

    Source: TOPIC_CONFIG for the topic's own, DYNAMIC_BROKER_CONFIG where
    this node's broker config set at run time gives it,
    DYNAMIC_DEFAULT_BROKER_CONFIG where the cluster-wide one does,
    STATIC_BROKER_CONFIG where the broker's setting differs from trioring's
    built-in default, DEFAULT_CONFIG otherwise; the synonyms list them in that
    order. Configs trioring does not apply show Kafka's default and are
    read-only (altering them is refused).
    """
    batch_bytes_max = ctx.shard.config.batch_bytes_max
    values = kafka_topic_configs(config, batch_bytes_max)
    broker = kafka_topic_configs(ctx.shard.config.log, batch_bytes_max)
    built_in = kafka_topic_configs(LogConfig(), BATCH_BYTES_MAX_DEFAULT)
    dynamic = ctx.cluster.current.broker_defaults
    node = _node_defaults(ctx)
    entries = []
    for name, kafka in sorted(TOPIC_CONFIGS.items()):
        if keys is not None and name not in keys:
            continue
        broker_name = kafka.synonyms[0] if kafka.synonyms else name
        synonyms: list[ConfigSynonym] = []
        if name in values:
            value: str | None = values[name]
            if name in overrides:
                synonyms.append(ConfigSynonym(name, value, TOPIC_CONFIG_SOURCE))
            if broker_name in node:
                synonyms.append(
                    ConfigSynonym(broker_name, node[broker_name], DYNAMIC_BROKER_CONFIG_SOURCE)
                )
            if broker_name in dynamic:
                synonyms.append(
                    ConfigSynonym(
                        broker_name, dynamic[broker_name], DYNAMIC_DEFAULT_BROKER_CONFIG_SOURCE
                    )
                )
            if broker[name] != built_in[name]:
                synonyms.append(
                    ConfigSynonym(broker_name, broker[name], STATIC_BROKER_CONFIG_SOURCE)
                )
            synonyms.append(ConfigSynonym(broker_name, built_in[name], DEFAULT_CONFIG_SOURCE))
            source = synonyms[0].source
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


# --- broker configs ---------------------------------------------------------------------

#: Documentation of the Kafka broker configs trioring has no setting for.
_BROKER_NOT_USED = (
    "trioring has no such setting: the value is Kafka 4.0's default, listed because a Kafka "
    "4.0 broker lists it."
)


def _broker_values(ctx: HandlerContext) -> dict[str, tuple[str | None, bool, str]]:
    """The Kafka broker configs trioring really has: name -> (value, set by the operator
    (not trioring's default), what it is in trioring)."""
    config = ctx.shard.config
    default = BrokerConfig(data_dir=config.data_dir)
    log, default_log = config.log, default.log
    groups, default_groups = config.groups, default.groups
    worker = str(ctx.cluster.worker_index)
    values: dict[str, tuple[str | None, bool, str]] = {}

    def our(name: str, value: object, changed: bool, documentation: str) -> None:
        text = (
            None if value is None else str(value).lower() if isinstance(value, bool) else str(value)
        )
        values[name] = (text, changed, documentation)

    def unlimited(value: int | None) -> int:
        return -1 if value is None else value

    our("node.id", worker, True, "This worker's index: every worker is a Kafka node.")
    our("broker.id", worker, True, "The same as node.id.")
    our("process.roles", "broker", True, "Workers are brokers; the supervisor is the controller.")
    data_dir = os.path.abspath(config.data_dir)
    our("log.dirs", data_dir, True, "The data directory (--data-dir); all workers share it.")
    our("log.dir", data_dir, True, "The same as log.dirs.")
    our("metadata.log.dir", None, False, "The metadata log is in log.dirs (__cluster_metadata-0).")
    our(
        "num.partitions",
        config.default_partitions,
        config.default_partitions != 1,
        "Partitions of a topic created without a count (default_partitions).",
    )
    our(
        "message.max.bytes",
        config.batch_bytes_max,
        config.batch_bytes_max != default.batch_bytes_max,
        "The largest record batch a producer may send (batch_bytes_max).",
    )
    our(
        "log.retention.ms",
        unlimited(log.retention_ms),
        log.retention_ms != default_log.retention_ms,
        "Retention by age of topics without their own retention.ms ([log] retention_ms).",
    )
    our("log.retention.minutes", None, False, "trioring's setting is log.retention.ms.")
    our("log.retention.hours", None, False, "trioring's setting is log.retention.ms.")
    our(
        "log.retention.bytes",
        unlimited(log.retention_bytes),
        log.retention_bytes != default_log.retention_bytes,
        "Retention by size of topics without their own retention.bytes ([log] retention_bytes).",
    )
    our(
        "log.segment.bytes",
        log.segment_bytes,
        log.segment_bytes != default_log.segment_bytes,
        "Segment size of topics without their own segment.bytes ([log] segment_bytes).",
    )
    our(
        "log.roll.ms",
        log.segment_ms,
        log.segment_ms != default_log.segment_ms,
        "Segment age of topics without their own segment.ms ([log] segment_ms).",
    )
    our("log.roll.hours", None, False, "trioring's setting is log.roll.ms.")
    our(
        "log.index.interval.bytes",
        log.index_interval_bytes,
        log.index_interval_bytes != default_log.index_interval_bytes,
        "Bytes between sparse index entries ([log] index_interval_bytes).",
    )
    our("log.cleanup.policy", "delete", False, "Old segments are deleted; no compaction.")
    our(
        "log.retention.check.interval.ms",
        config.retention_check_interval_ms,
        config.retention_check_interval_ms != default.retention_check_interval_ms,
        "How often retention runs (retention_check_interval_ms).",
    )
    our(
        "log.flush.interval.ms",
        config.flush_interval_ms,
        config.flush_interval_ms != default.flush_interval_ms,
        "acks=1 data is flushed at least this often (flush_interval_ms); acks=all is "
        "flushed before the answer.",
    )
    our(
        "log.flush.offset.checkpoint.interval.ms",
        config.recovery_checkpoint_interval_ms,
        config.recovery_checkpoint_interval_ms != default.recovery_checkpoint_interval_ms,
        "How often the recovery points are checkpointed (recovery_checkpoint_interval_ms).",
    )
    our(
        "offsets.topic.num.partitions",
        OFFSETS_TOPIC_PARTITIONS,
        False,
        "Partitions of __consumer_offsets (fixed in trioring).",
    )
    our("offsets.topic.replication.factor", 1, False, "One replica per partition.")
    our(
        "offsets.topic.segment.bytes",
        config.offsets_log_compact_bytes,
        config.offsets_log_compact_bytes != default.offsets_log_compact_bytes,
        "The committed-offsets logs' segment size and compaction threshold "
        "(offsets_log_compact_bytes).",
    )
    our("default.replication.factor", 1, False, "One replica per partition.")
    our("min.insync.replicas", 1, False, "One replica per partition.")
    our("unclean.leader.election.enable", False, False, "One replica: there is nothing to elect.")
    our("delete.topic.enable", True, False, "Topics can always be deleted.")
    our("compression.type", "producer", False, "Batches are stored as the producer sent them.")
    our("log.message.timestamp.type", "CreateTime", False, "Records keep the producer's time.")
    our(
        "group.coordinator.rebalance.protocols",
        "classic,consumer",
        False,
        "Both group protocols: classic, and consumer (KIP-848), mixed in one group as Kafka "
        "4.0 allows.",
    )
    our(
        "group.consumer.session.timeout.ms",
        groups.consumer_session_timeout_ms,
        groups.consumer_session_timeout_ms != default_groups.consumer_session_timeout_ms,
        "A consumer-protocol member silent this long is removed ([groups] "
        "consumer_session_timeout_ms).",
    )
    our(
        "group.consumer.heartbeat.interval.ms",
        groups.consumer_heartbeat_interval_ms,
        groups.consumer_heartbeat_interval_ms != default_groups.consumer_heartbeat_interval_ms,
        "How often consumer-protocol members heartbeat ([groups] consumer_heartbeat_interval_ms).",
    )
    our(
        "group.consumer.assignors",
        ",".join(ASSIGNORS),
        False,
        "The server assignors of the consumer protocol; the first is the default.",
    )
    our(
        "group.consumer.migration.policy",
        "bidirectional",
        False,
        "Classic and consumer members mix in one group, both ways (not configurable).",
    )
    our(
        "group.consumer.max.size",
        groups.group_members_max,
        groups.group_members_max != default_groups.group_members_max,
        "Members of one group ([groups] group_members_max).",
    )
    our(
        "group.min.session.timeout.ms",
        groups.group_min_session_timeout_ms,
        groups.group_min_session_timeout_ms != default_groups.group_min_session_timeout_ms,
        "Shortest session timeout a member may ask for ([groups]).",
    )
    our(
        "group.max.session.timeout.ms",
        groups.group_max_session_timeout_ms,
        groups.group_max_session_timeout_ms != default_groups.group_max_session_timeout_ms,
        "Longest session timeout a member may ask for ([groups]).",
    )
    our(
        "group.initial.rebalance.delay.ms",
        groups.initial_rebalance_delay_ms,
        groups.initial_rebalance_delay_ms != default_groups.initial_rebalance_delay_ms,
        "How long the first rebalance of an empty group waits for more members ([groups]).",
    )
    our(
        "group.max.size",
        groups.group_members_max,
        groups.group_members_max != default_groups.group_members_max,
        "Members of one group ([groups] group_members_max).",
    )
    our("broker.rack", None, False, "No racks.")
    our(
        "max.request.partition.size.limit",
        DESCRIBE_TOPIC_PARTITIONS_MAX,
        False,
        "Partitions one DescribeTopicPartitions answer holds.",
    )
    server = ctx.server
    if server is not None:
        base = ServerConfig()
        node = ctx.cluster.node(ctx.cluster.worker_index)
        our(
            "listeners",
            f"PLAINTEXT://{server.host}:{server.port}",
            (server.host, server.port) != (base.host, base.port),
            "This worker's listener (--listen; worker i listens on the base port + i).",
        )
        advertised = node or Node(0, server.advertised_host or server.host, server.port)
        our(
            "advertised.listeners",
            f"PLAINTEXT://{advertised.host}:{advertised.port}",
            server.advertised_host is not None or server.advertised_port is not None,
            "The address Metadata gives clients for this worker (--advertised).",
        )
        our(
            "listener.security.protocol.map",
            "PLAINTEXT:PLAINTEXT",
            False,
            "Only PLAINTEXT: no TLS or SASL.",
        )
        our(
            "auto.create.topics.enable",
            server.auto_create_topics,
            server.auto_create_topics != base.auto_create_topics,
            "Metadata requests create the topics they name ([server] auto_create_topics).",
        )
        our(
            "connections.max.idle.ms",
            server.connections_max_idle_ms,
            server.connections_max_idle_ms != base.connections_max_idle_ms,
            "Idle connections are closed after this ([server]).",
        )
        our(
            "queued.max.request.bytes",
            server.queued_request_bytes_max,
            server.queued_request_bytes_max != base.queued_request_bytes_max,
            "Bytes of requests read and not answered before reading pauses, per worker "
            "([server] queued_request_bytes_max).",
        )
        our(
            "socket.request.max.bytes",
            server.frame_bytes_max,
            server.frame_bytes_max != base.frame_bytes_max,
            "The largest request ([server] frame_bytes_max).",
        )
        our(
            "max.connections",
            server.connections_max,
            server.connections_max != base.connections_max,
            "Connections per worker ([server] connections_max).",
        )
    return values


def broker_config_entries(
    ctx: HandlerContext, keys: tuple[str, ...] | None, include_synonyms: bool
) -> tuple[ConfigEntry, ...]:
    """Every broker config Kafka 4.0 lists: trioring's real value where it has the
    setting, Kafka's default documented as unused where it has not.

    Source: DYNAMIC_DEFAULT_BROKER_CONFIG for a ``log.*`` default changed at
    run time, STATIC_BROKER_CONFIG where the operator changed trioring's
    default, DEFAULT_CONFIG otherwise. Only the ``log.*`` topic defaults of
    ``BROKER_DEFAULTS`` can change at run time; every other entry is read-only.
    """
    ours = _broker_values(ctx)
    dynamic = ctx.cluster.current.broker_defaults
    node = _node_defaults(ctx)
    entries = []
    for name, (config_type, kafka_default) in sorted(BROKER_CONFIGS.items()):
        if keys is not None and name not in keys:
            continue
        found = ours.get(name)
        synonyms: list[ConfigSynonym] = []
        if name in node:
            synonyms.append(ConfigSynonym(name, node[name], DYNAMIC_BROKER_CONFIG_SOURCE))
        if name in dynamic:
            synonyms.append(
                ConfigSynonym(name, dynamic[name], DYNAMIC_DEFAULT_BROKER_CONFIG_SOURCE)
            )
        if found is None:
            documentation = _BROKER_NOT_USED
            synonyms.append(ConfigSynonym(name, kafka_default, DEFAULT_CONFIG_SOURCE))
        else:
            static_value, changed, documentation = found
            static_source = STATIC_BROKER_CONFIG_SOURCE if changed else DEFAULT_CONFIG_SOURCE
            synonyms.append(ConfigSynonym(name, static_value, static_source))
        value, source = synonyms[0].value, synonyms[0].source
        sensitive = config_type == PASSWORD
        if sensitive:
            # As Kafka: secrets are never described.
            value = None
            synonyms = [attrs.evolve(synonym, value=None) for synonym in synonyms]
        entries.append(
            ConfigEntry(
                name,
                value,
                read_only=name not in BROKER_DEFAULTS,
                is_default=source == DEFAULT_CONFIG_SOURCE,
                source=source,
                sensitive=sensitive,
                config_type=config_type,
                documentation=documentation,
                synonyms=tuple(synonyms) if include_synonyms else (),
            )
        )
    return tuple(entries)


_DYNAMIC_DOCUMENTATION = (
    "The default of topics that do not set this config themselves, changed at run time for "
    "the whole cluster."
)


def _cluster_default_entries(
    ctx: HandlerContext, keys: tuple[str, ...] | None, include_synonyms: bool
) -> tuple[ConfigEntry, ...]:
    """The broker configs changed at run time for the whole cluster (resource name "")."""
    entries = []
    for name, value in sorted(ctx.cluster.current.broker_defaults.items()):
        if keys is not None and name not in keys:
            continue
        source = DYNAMIC_DEFAULT_BROKER_CONFIG_SOURCE
        entries.append(
            ConfigEntry(
                name,
                value,
                read_only=False,
                is_default=False,
                source=source,
                config_type=BROKER_CONFIGS[name][0],
                documentation=_DYNAMIC_DOCUMENTATION,
                synonyms=(ConfigSynonym(name, value, source),) if include_synonyms else (),
            )
        )
    return tuple(entries)


def _this_broker(ctx: HandlerContext, name: str) -> None:
    """A broker resource names this worker's node id or "" (the cluster default), as Kafka."""
    if name == "":
        return
    if not _INTEGER.fullmatch(name):
        raise InvalidArgumentError(f"Broker id must be an integer, but it is: {printable(name)}")
    if int(name) != ctx.cluster.worker_index:
        raise InvalidArgumentError(
            f"Unexpected broker id, expected {ctx.cluster.worker_index} or empty string, but "
            f"received {printable(name)}"
        )


# --- DescribeConfigs --------------------------------------------------------------------


def _existing_topic(ctx: HandlerContext, name: str) -> TopicInfo:
    """The topic a config request names; InvalidTopicError or UnknownTopicOrPartitionError."""
    info = ctx.cluster.current.topics.get(name)
    if info is None or info.internal:
        validate_topic_name(name)
        raise UnknownTopicOrPartitionError(f"unknown topic {name!r}")
    return info


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
    for resource in request.resources:
        error: TrioringError | None = None
        entries: tuple[ConfigEntry, ...] = ()
        if resource.resource_type == TOPIC_RESOURCE:
            try:
                info = _existing_topic(ctx, resource.name)
                entries = topic_config_entries(
                    ctx,
                    topic_config_here(ctx, info),
                    topic_overrides(ctx, info),
                    resource.keys,
                    request.include_synonyms,
                )
            except (InvalidTopicError, UnknownTopicOrPartitionError) as caught:
                error = caught
        else:
            try:
                _this_broker(ctx, resource.name)
                if resource.name:
                    entries = broker_config_entries(ctx, resource.keys, request.include_synonyms)
                else:  # "": the cluster-wide dynamic configs, as Kafka
                    entries = _cluster_default_entries(ctx, resource.keys, request.include_synonyms)
            except InvalidArgumentError as caught:
                error = caught
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
                await _alter_broker(ctx, resource, validate_only, incremental)
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
    for attempt in range(CONFIG_CHANGE_ATTEMPTS_MAX):
        version = ctx.cluster.current.version
        info = _existing_topic(ctx, resource.name)
        overrides = _apply_changes(topic_overrides(ctx, info), resource, incremental)
        config = log_config_from_kafka(topic_defaults(ctx), overrides)
        if validate_only:
            await trio.lowlevel.checkpoint()
            return
        try:
            # An incremental change holds only if nothing changed the configs it read.
            await ctx.cluster.alter_topic_config(
                info.name, config, overrides, info if incremental else None
            )
            return
        except ConfigsChangedError:
            if attempt == CONFIG_CHANGE_ATTEMPTS_MAX - 1:
                raise
            await _wait_newer_than(ctx, version)


async def _alter_broker(
    ctx: HandlerContext, resource: AlterConfigsResource, validate_only: bool, incremental: bool
) -> None:
    """The ``log.*`` topic defaults of ``BROKER_DEFAULTS`` change at run time, for the whole
    cluster (resource name "") or for this node (its id: its partitions); every other
    broker config is static in trioring and refused as Kafka refuses a config it cannot
    update dynamically (INVALID_REQUEST)."""
    _this_broker(ctx, resource.name)
    for change in resource.changes:
        if incremental and change.operation not in _OPERATION_NAMES:
            raise InvalidArgumentError(f"Unknown operation type {change.operation}")
    static = sorted({change.name for change in resource.changes} - set(BROKER_DEFAULTS))
    if static:
        raise InvalidArgumentError(
            f"Cannot update these configs dynamically: {', '.join(map(printable, static))} "
            "(static in trioring: set them in its configuration and restart; what changes at "
            f"run time: {', '.join(sorted(BROKER_DEFAULTS))})"
        )
    # "": the whole cluster; a node id ("+0" is 0, as Java parses it): this node.
    node = str(ctx.cluster.worker_index) if resource.name else ""
    for attempt in range(CONFIG_CHANGE_ATTEMPTS_MAX):
        version = ctx.cluster.current.version
        try:
            await _alter_broker_once(ctx, resource, node, validate_only, incremental)
            return
        except ConfigsChangedError:
            if attempt == CONFIG_CHANGE_ATTEMPTS_MAX - 1:
                raise
            await _wait_newer_than(ctx, version)


async def _wait_newer_than(ctx: HandlerContext, version: int) -> None:
    """Until this worker has metadata newer than ``version`` (the change that won a race
    reaches every worker before its answer; bounded all the same)."""
    with trio.move_on_after(CONFIG_CHANGE_WAIT_SECONDS):
        await ctx.cluster.metadata.wait_value(lambda metadata: metadata.version > version)


async def _alter_broker_once(
    ctx: HandlerContext,
    resource: AlterConfigsResource,
    node: str,
    validate_only: bool,
    incremental: bool,
) -> None:
    current = ctx.cluster.current
    before = dict(current.node_defaults.get(node, {}) if node else current.broker_defaults)
    if incremental:
        configs = dict(before)
        for change in resource.changes:
            if change.operation == SET_CONFIG:
                configs[change.name] = str(change.value)
            elif change.operation == DELETE_CONFIG:
                configs.pop(change.name, None)
            else:
                raise InvalidConfigError(
                    f"Config value {_OPERATION_NAMES[change.operation].lower()} is not allowed "
                    f"for config key: {change.name}"
                )
    else:
        configs = {change.name: str(change.value) for change in resource.changes}
    for name, value in configs.items():
        try:
            log_config_from_kafka(ctx.shard.config.log, {BROKER_DEFAULTS[name]: value})
        except InvalidConfigError as error:
            raise InvalidConfigError(f"{name}='{printable(value)}' is invalid: {error}") from None
    if validate_only:
        await trio.lowlevel.checkpoint()
        return
    await ctx.cluster.alter_broker_defaults(configs, node, before if incremental else None)

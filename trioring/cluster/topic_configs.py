"""A topic's LogConfig from its own configs over the broker's defaults, in Kafka's names.

The controller recomputes topics' LogConfigs when a broker default changes
at run time (Kafka's dynamic ``log.*`` configs): each topic keeps its own
configs and takes the new default for the rest. Values reaching here were
validated by the handlers (``handlers.configs``) before they were persisted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import attrs

from trioring.storage.log import LogConfig

if TYPE_CHECKING:
    from trioring.cluster.model import TopicInfo

__all__ = [
    "BROKER_DEFAULTS",
    "TOPIC_FIELDS",
    "derive_overrides",
    "effective_config",
    "kafka_value",
    "log_defaults",
    "with_values",
]

#: Kafka topic config -> the LogConfig field trioring applies at run time.
TOPIC_FIELDS: dict[str, str] = {
    "retention.ms": "retention_ms",
    "retention.bytes": "retention_bytes",
    "segment.bytes": "segment_bytes",
    "segment.ms": "segment_ms",
    "index.interval.bytes": "index_interval_bytes",
}
#: Kafka broker config -> the topic config it is the default of: the broker
#: configs trioring can change at run time, cluster-wide.
BROKER_DEFAULTS: dict[str, str] = {
    "log.retention.ms": "retention.ms",
    "log.retention.bytes": "retention.bytes",
    "log.segment.bytes": "segment.bytes",
    "log.roll.ms": "segment.ms",
    "log.index.interval.bytes": "index.interval.bytes",
}
#: Fields where Kafka's -1 means "no limit" (None in LogConfig).
_UNLIMITED = frozenset({"retention_ms", "retention_bytes"})


def kafka_value(config: LogConfig, name: str) -> str:
    """The value of topic config ``name`` (one of TOPIC_FIELDS) as Kafka writes it."""
    value = getattr(config, TOPIC_FIELDS[name])
    return "-1" if value is None else str(value)


def with_values(base: LogConfig, values: Mapping[str, str]) -> LogConfig:
    """``base`` with validated topic config values (other names, like cleanup.policy=delete,
    change nothing trioring stores)."""
    changes: dict[str, int | None] = {}
    for name, value in values.items():
        field = TOPIC_FIELDS.get(name)
        if field is None:
            continue
        number = int(value)
        changes[field] = None if field in _UNLIMITED and number == -1 else number
    return attrs.evolve(base, **changes)  # type: ignore[arg-type]


def log_defaults(static: LogConfig, dynamic: Mapping[str, str]) -> LogConfig:
    """The defaults topics fall back to: the broker's static ``[log]`` settings with the
    cluster-wide dynamic broker configs over them."""
    return with_values(
        static,
        {
            BROKER_DEFAULTS[name]: value
            for name, value in dynamic.items()
            if name in BROKER_DEFAULTS
        },
    )


def effective_config(
    info: TopicInfo, static: LogConfig, cluster: Mapping[str, str], node: Mapping[str, str]
) -> LogConfig:
    """The LogConfig of a topic's partitions on a node with its own dynamic defaults:
    the topic's own configs over the node's, the cluster's and the static defaults."""
    if not node:
        return info.config
    own = (
        derive_overrides(info.config, log_defaults(static, cluster))
        if info.overrides is None
        else dict(info.overrides)
    )
    return with_values(log_defaults(static, {**cluster, **node}), own)


def derive_overrides(config: LogConfig, default: LogConfig) -> dict[str, str]:
    """A topic's own configs when only its LogConfig is known: what differs from ``default``."""
    return {
        name: kafka_value(config, name)
        for name in TOPIC_FIELDS
        if kafka_value(config, name) != kafka_value(default, name)
    }

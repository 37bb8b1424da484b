"""Broker configuration: frozen values, validated on construction."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, Literal

import attrs

from trioring._constants import (
    BATCH_BYTES_MAX_DEFAULT,
    FLUSH_INTERVAL_MS_DEFAULT,
    GROUP_MAX_SESSION_TIMEOUT_MS_DEFAULT,
    GROUP_MEMBERS_MAX_DEFAULT,
    GROUP_MIN_SESSION_TIMEOUT_MS_DEFAULT,
    GROUPS_MAX_DEFAULT,
    INITIAL_REBALANCE_DELAY_MS_DEFAULT,
    OFFSETS_LOG_COMPACT_BYTES_DEFAULT,
    PARTITIONS_MAX,
    RECOVERY_CHECKPOINT_INTERVAL_MS_DEFAULT,
    RETENTION_CHECK_INTERVAL_MS_DEFAULT,
    SEGMENT_BYTES_MAX,
    SEGMENT_BYTES_MIN,
)
from trioring.errors import InvalidArgumentError
from trioring.storage.log import LogConfig
from trioring.uring import BackendChoice

__all__ = ["BrokerConfig", "GroupConfig", "LogConfig"]


def _positive(name: str) -> Callable[[object, attrs.Attribute[int], int], None]:
    def check(_instance: object, _attribute: attrs.Attribute[int], value: int) -> None:
        if not isinstance(value, int) or value <= 0:
            raise InvalidArgumentError(f"{name} must be a positive integer, not {value!r}")

    return check


def _non_negative(name: str) -> Callable[[object, attrs.Attribute[int], int], None]:
    def check(_instance: object, _attribute: attrs.Attribute[int], value: int) -> None:
        if not isinstance(value, int) or value < 0:
            raise InvalidArgumentError(f"{name} must be a non-negative integer, not {value!r}")

    return check


@attrs.frozen
class GroupConfig:
    """Settings of the group coordinator; Kafka's broker settings of the same names."""

    #: Shortest session timeout a member may ask for (group.min.session.timeout.ms).
    group_min_session_timeout_ms: int = attrs.field(
        default=GROUP_MIN_SESSION_TIMEOUT_MS_DEFAULT,
        validator=_positive("group_min_session_timeout_ms"),
    )
    #: Longest session timeout a member may ask for (group.max.session.timeout.ms).
    group_max_session_timeout_ms: int = attrs.field(
        default=GROUP_MAX_SESSION_TIMEOUT_MS_DEFAULT,
        validator=_positive("group_max_session_timeout_ms"),
    )
    #: How long the first rebalance of an Empty group waits for more members,
    #: extended by each newcomer up to the rebalance timeout
    #: (group.initial.rebalance.delay.ms).
    initial_rebalance_delay_ms: int = attrs.field(
        default=INITIAL_REBALANCE_DELAY_MS_DEFAULT,
        validator=_non_negative("initial_rebalance_delay_ms"),
    )
    #: Members of one group (group.max.size).
    group_members_max: int = attrs.field(
        default=GROUP_MEMBERS_MAX_DEFAULT, validator=_positive("group_members_max")
    )
    #: Groups kept in memory; the oldest Empty group is forgotten past it.
    groups_max: int = attrs.field(default=GROUPS_MAX_DEFAULT, validator=_positive("groups_max"))

    def __attrs_post_init__(self) -> None:
        if self.group_min_session_timeout_ms > self.group_max_session_timeout_ms:
            raise InvalidArgumentError(
                f"group_min_session_timeout_ms ({self.group_min_session_timeout_ms}) is larger "
                f"than group_max_session_timeout_ms ({self.group_max_session_timeout_ms})"
            )


@attrs.frozen
class BrokerConfig:
    """Everything a broker needs to start. Only ``data_dir`` is required.

    ``log`` holds the default storage settings of new topics; each topic may
    override them at creation.
    """

    data_dir: str = attrs.field(converter=os.fspath)
    log: LogConfig = attrs.field(factory=LogConfig)
    io_backend: BackendChoice = "auto"
    #: Partitions of a topic created without a count (Kafka: num.partitions).
    default_partitions: int = attrs.field(default=1, validator=_positive("default_partitions"))
    #: Largest record batch a producer may send (Kafka: message.max.bytes).
    batch_bytes_max: int = attrs.field(
        default=BATCH_BYTES_MAX_DEFAULT, validator=_positive("batch_bytes_max")
    )
    #: Flush acks=1 data at least this often (None: leave it to the OS, as Kafka does).
    flush_interval_ms: int | None = FLUSH_INTERVAL_MS_DEFAULT
    recovery_checkpoint_interval_ms: int = attrs.field(
        default=RECOVERY_CHECKPOINT_INTERVAL_MS_DEFAULT,
        validator=_positive("recovery_checkpoint_interval_ms"),
    )
    retention_check_interval_ms: int = attrs.field(
        default=RETENTION_CHECK_INTERVAL_MS_DEFAULT,
        validator=_positive("retention_check_interval_ms"),
    )
    #: The committed-offsets log is rewritten as a snapshot past this size; it is
    #: also that log's segment size, so it obeys segment_bytes' bounds.
    offsets_log_compact_bytes: int = OFFSETS_LOG_COMPACT_BYTES_DEFAULT
    #: What produce checks: "header" (framing, magic, counts, size, CRC32C; no
    #: per-record work, the default) or "records" (also decodes every record,
    #: decompressing if needed, as Kafka's broker does; costs CPU per record).
    produce_validation: Literal["header", "records"] = "header"
    #: Consumer-group coordinator settings (session timeouts, rebalance delay, limits).
    groups: GroupConfig = attrs.field(factory=GroupConfig)
    #: Wall clock in seconds: record timestamps, roll and retention by age.
    clock: Callable[[], float] = attrs.field(default=time.time, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.default_partitions > PARTITIONS_MAX:
            raise InvalidArgumentError(f"default_partitions must be <= {PARTITIONS_MAX}")
        if self.flush_interval_ms is not None and self.flush_interval_ms <= 0:
            raise InvalidArgumentError("flush_interval_ms must be positive or None")
        if not SEGMENT_BYTES_MIN <= self.offsets_log_compact_bytes <= SEGMENT_BYTES_MAX:
            raise InvalidArgumentError(
                f"offsets_log_compact_bytes must be between {SEGMENT_BYTES_MIN} and "
                f"{SEGMENT_BYTES_MAX}, not {self.offsets_log_compact_bytes}"
            )
        if self.produce_validation not in ("header", "records"):
            raise InvalidArgumentError(
                f"produce_validation must be 'header' or 'records', not {self.produce_validation!r}"
            )
        if self.io_backend not in ("auto", "uring", "fallback"):
            raise InvalidArgumentError(
                f"io_backend must be 'auto', 'uring' or 'fallback', not {self.io_backend!r}"
            )


def broker_config_to_json(config: BrokerConfig) -> dict[str, Any]:
    """The settings of ``config`` as JSON values (the clock stays behind: it is code)."""
    return attrs.asdict(config, filter=lambda attribute, _: attribute.name != "clock")


def broker_config_from_json(data: dict[str, Any]) -> BrokerConfig:
    values = dict(data)
    log = LogConfig(**values.pop("log"))
    groups = GroupConfig(**values.pop("groups"))
    return BrokerConfig(log=log, groups=groups, **values)

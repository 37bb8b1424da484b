"""Broker and listener configuration: frozen values, validated on construction."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, Literal

import attrs

from trioring._constants import (
    BATCH_BYTES_MAX_DEFAULT,
    CONNECTIONS_MAX_DEFAULT,
    CONNECTIONS_MAX_IDLE_MS_DEFAULT,
    CONSUMER_HEARTBEAT_INTERVAL_MS_DEFAULT,
    CONSUMER_SESSION_TIMEOUT_MS_DEFAULT,
    FLUSH_INTERVAL_MS_DEFAULT,
    FRAME_BYTES_MAX_DEFAULT,
    GROUP_MAX_SESSION_TIMEOUT_MS_DEFAULT,
    GROUP_MEMBERS_MAX_DEFAULT,
    GROUP_MIN_SESSION_TIMEOUT_MS_DEFAULT,
    GROUPS_MAX_DEFAULT,
    IN_FLIGHT_REQUESTS_LIMIT,
    IN_FLIGHT_REQUESTS_MAX_DEFAULT,
    INITIAL_REBALANCE_DELAY_MS_DEFAULT,
    OFFSETS_LOG_COMPACT_BYTES_DEFAULT,
    PARTITIONS_MAX,
    PORT_MAX,
    QUEUED_REQUEST_BYTES_MAX_DEFAULT,
    RECOVERY_CHECKPOINT_INTERVAL_MS_DEFAULT,
    RETENTION_CHECK_INTERVAL_MS_DEFAULT,
    SEGMENT_BYTES_MAX,
    SEGMENT_BYTES_MIN,
    SHUTDOWN_GRACE_DEFAULT_SECONDS,
)
from trioring.errors import InvalidArgumentError
from trioring.storage.log import LogConfig
from trioring.uring import BackendChoice

__all__ = ["BrokerConfig", "GroupConfig", "LogConfig", "ServerConfig"]


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
    #: Consumer group protocol (KIP-848): a member that does not heartbeat for
    #: this long is removed (group.consumer.session.timeout.ms).
    consumer_session_timeout_ms: int = attrs.field(
        default=CONSUMER_SESSION_TIMEOUT_MS_DEFAULT,
        validator=_positive("consumer_session_timeout_ms"),
    )
    #: How often consumer-protocol members heartbeat (group.consumer.heartbeat.interval.ms).
    consumer_heartbeat_interval_ms: int = attrs.field(
        default=CONSUMER_HEARTBEAT_INTERVAL_MS_DEFAULT,
        validator=_positive("consumer_heartbeat_interval_ms"),
    )

    def __attrs_post_init__(self) -> None:
        if self.consumer_heartbeat_interval_ms >= self.consumer_session_timeout_ms:
            raise InvalidArgumentError(
                f"consumer_heartbeat_interval_ms ({self.consumer_heartbeat_interval_ms}) must be "
                f"smaller than consumer_session_timeout_ms ({self.consumer_session_timeout_ms})"
            )
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


@attrs.frozen
class ServerConfig:
    """Kafka listener settings (one per worker; the supervisor hands them out)."""

    host: str = "127.0.0.1"
    #: 0 picks a free port (tests).
    port: int = 9092
    #: Address clients are told to connect to (Metadata); defaults to host:bound port.
    advertised_host: str | None = None
    advertised_port: int | None = None
    #: Largest request accepted (Kafka: socket.request.max.bytes, 100 MiB).
    frame_bytes_max: int = FRAME_BYTES_MAX_DEFAULT
    connections_max: int = CONNECTIONS_MAX_DEFAULT
    #: Pipelined requests per connection: produces beyond the first append
    #: while earlier ones wait for their fdatasync; 1 handles one at a time.
    in_flight_requests_max: int = IN_FLIGHT_REQUESTS_MAX_DEFAULT
    #: Create topics named in Metadata requests that allow it (Kafka: auto.create.topics.enable).
    auto_create_topics: bool = True
    shutdown_grace_seconds: float = SHUTDOWN_GRACE_DEFAULT_SECONDS
    #: Memory budget for requests read and not yet answered, all connections
    #: together; past it connections stop being read (back-pressure).
    queued_request_bytes_max: int = QUEUED_REQUEST_BYTES_MAX_DEFAULT
    connections_max_idle_ms: int = CONNECTIONS_MAX_IDLE_MS_DEFAULT
    #: Fetch sends large records from the segment files straight to the socket
    #: (splice over io_uring, sendfile otherwise); False reads them into memory,
    #: CRC-checks and copies them (the copy path, for comparison).
    fetch_zero_copy: bool = True

    def __attrs_post_init__(self) -> None:
        if not 0 <= self.port <= PORT_MAX:
            raise InvalidArgumentError(f"port must be 0-{PORT_MAX}, not {self.port}")
        if self.frame_bytes_max < 1024:
            raise InvalidArgumentError("frame_bytes_max must be at least 1024 bytes")
        if self.connections_max < 1:
            raise InvalidArgumentError("connections_max must be at least 1")
        if self.queued_request_bytes_max < self.frame_bytes_max:
            raise InvalidArgumentError(
                f"queued_request_bytes_max ({self.queued_request_bytes_max}) must be at least "
                f"frame_bytes_max ({self.frame_bytes_max}): one whole request must fit"
            )
        if self.connections_max_idle_ms <= 0:
            raise InvalidArgumentError(
                f"connections_max_idle_ms must be positive, not {self.connections_max_idle_ms}"
            )
        if self.shutdown_grace_seconds < 0:
            raise InvalidArgumentError(
                f"shutdown_grace_seconds must be >= 0, not {self.shutdown_grace_seconds}"
            )
        if not 1 <= self.in_flight_requests_max <= IN_FLIGHT_REQUESTS_LIMIT:
            raise InvalidArgumentError(
                f"in_flight_requests_max must be 1-{IN_FLIGHT_REQUESTS_LIMIT}, "
                f"not {self.in_flight_requests_max}"
            )

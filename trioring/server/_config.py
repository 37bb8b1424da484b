"""Kafka listener settings."""

from __future__ import annotations

import attrs

from trioring._constants import (
    CONNECTIONS_MAX_DEFAULT,
    CONNECTIONS_MAX_IDLE_MS_DEFAULT,
    FRAME_BYTES_MAX_DEFAULT,
    IN_FLIGHT_REQUESTS_LIMIT,
    IN_FLIGHT_REQUESTS_MAX_DEFAULT,
    QUEUED_REQUEST_BYTES_MAX_DEFAULT,
    SHUTDOWN_GRACE_DEFAULT_SECONDS,
)
from trioring.errors import InvalidArgumentError


@attrs.frozen
class ServerConfig:
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

    def __attrs_post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise InvalidArgumentError(f"port must be 0-65535, not {self.port}")
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

"""BrokerConnection: what the client needs of a connection to one broker, and the
wire transport, WireConnection: one TCP connection, requests pipelined on it.

The producer, the consumer and the admin client see only
:class:`BrokerConnection`. Two transports implement it: WireConnection
(here), and InProcessConnection (``_inprocess.py``), which calls an embedded
broker's API adapters directly.

Kafka answers the requests of one connection in the order they were sent, each
response carrying its request's correlation id. A connection here has one
reader task that matches each response to its waiting request; senders take
turns writing whole frames. The versions spoken are negotiated once, with
ApiVersions, as the newest both sides know (``CLIENT_VERSIONS``).

A request whose caller is cancelled stays registered until its response
arrives (and is then dropped), so the stream never falls out of step. Any
I/O or protocol error, or a request timing out, breaks the connection: every
waiting request gets :class:`ConnectionBrokenError`, and the cluster opens a
new connection for the next one.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from types import MappingProxyType
from typing import Any, Final, Protocol

import attrs
import trio
from kio.schema.errors import ErrorCode

from trioring._constants import (
    CLIENT_CONNECT_TIMEOUT_MS_DEFAULT,
    CLIENT_FRAME_BYTES_MAX,
    CLIENT_IN_FLIGHT_REQUESTS_MAX,
    CLIENT_RECEIVE_BYTES,
    CLIENT_REQUEST_TIMEOUT_MS_DEFAULT,
)
from trioring._exception_groups import BodyError, body_exception_unwrapped
from trioring.errors import ProtocolError, TrioringError
from trioring.protocol.kafka import ApiKey, FrameDecoder, request_schema
from trioring.protocol.kafka._build import build
from trioring.protocol.kafka._client import (
    decode_response,
    encode_request,
    response_correlation_id,
)

__all__ = [
    "CLIENT_VERSIONS",
    "BrokerConnection",
    "ConnectionBrokenError",
    "UnsupportedApiError",
    "WireConnection",
    "negotiated_versions",
    "unsupported_api",
]

logger = logging.getLogger("trioring.client")

#: The versions of each API this client speaks: (oldest, newest). The newest
#: both sides know is used. Bodies are built for whichever version it is.
CLIENT_VERSIONS: Final[Mapping[int, tuple[int, int]]] = MappingProxyType(
    {
        ApiKey.API_VERSIONS: (0, 3),
        ApiKey.METADATA: (1, 12),
        ApiKey.PRODUCE: (3, 9),
        ApiKey.FETCH: (4, 12),
        ApiKey.LIST_OFFSETS: (1, 7),
        ApiKey.INIT_PRODUCER_ID: (0, 4),
        ApiKey.FIND_COORDINATOR: (0, 3),
        ApiKey.OFFSET_COMMIT: (2, 8),
        ApiKey.OFFSET_FETCH: (1, 7),
        ApiKey.CREATE_TOPICS: (2, 5),
        ApiKey.DELETE_TOPICS: (1, 4),
        ApiKey.DELETE_RECORDS: (0, 2),
        ApiKey.CREATE_PARTITIONS: (0, 3),
        ApiKey.LIST_GROUPS: (0, 5),
        ApiKey.DESCRIBE_GROUPS: (0, 5),
        ApiKey.DELETE_GROUPS: (0, 2),
        ApiKey.DESCRIBE_CONFIGS: (1, 4),
        ApiKey.DESCRIBE_LOG_DIRS: (1, 4),
        ApiKey.JOIN_GROUP: (1, 9),
        ApiKey.SYNC_GROUP: (0, 5),
        ApiKey.HEARTBEAT: (0, 4),
        ApiKey.LEAVE_GROUP: (0, 5),
    }
)


class ConnectionBrokenError(TrioringError):
    """The connection to a broker failed; the request may be retried on a new one."""

    kafka_error_code = ErrorCode.network_exception


class UnsupportedApiError(TrioringError):
    """The broker speaks no version of an API that this client speaks."""

    kafka_error_code = ErrorCode.unsupported_version


class BrokerConnection(Protocol):
    """A connection to one broker, whichever the transport; the Cluster hands them out."""

    #: Where it goes, for messages ("host:port", or "in-process").
    address: str
    #: Why it no longer works (None while it does); the Cluster then opens another.
    broken: ConnectionBrokenError | None
    #: Set once it is closed or broken.
    closed: trio.Event

    def version(self, api_key: int) -> int:
        """The version of ``api_key`` spoken; UnsupportedApiError if none."""
        ...

    async def request(
        self, api_key: int, *, timeout_s: float | None = None, **fields: Any
    ) -> tuple[int, Any]:
        """A request of that version built from ``fields``: (version, kio response).
        ``timeout_s`` replaces the request timeout (JoinGroup waits for a rebalance)."""
        ...

    async def send_only(self, api_key: int, **fields: Any) -> int:
        """A request Kafka does not answer (Produce with acks=0); returns its version."""
        ...

    def statistics(self) -> dict[str, Any]: ...


def negotiated_versions(offered: Iterable[tuple[int, int, int]]) -> dict[int, int]:
    """For each API of (api key, oldest, newest) the broker offers, the newest version
    both it and ``CLIENT_VERSIONS`` know; APIs without a common version are left out."""
    versions = {}
    for api_key, offered_min, offered_max in offered:
        ours = CLIENT_VERSIONS.get(api_key)
        if ours is None:
            continue
        version = min(ours[1], offered_max)
        if version >= max(ours[0], offered_min):
            versions[int(api_key)] = int(version)
    return versions


def unsupported_api(address: str, api_key: int) -> UnsupportedApiError:
    return UnsupportedApiError(
        f"{address} speaks no version of API {ApiKey(api_key).name} that this "
        f"client speaks ({CLIENT_VERSIONS[api_key][0]}-{CLIENT_VERSIONS[api_key][1]})"
    )


@attrs.define(eq=False)
class _Waiter:
    api_key: int
    api_version: int
    event: trio.Event = attrs.Factory(trio.Event)
    response: Any = None
    error: BaseException | None = None


class WireConnection:
    """One TCP connection to one broker, speaking the Kafka protocol. Open it with
    :meth:`open`."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        *,
        client_id: str,
        request_timeout_ms: int,
        address: str,
    ) -> None:
        self._stream = stream
        self.client_id = client_id
        self.address = address
        self._request_timeout_s = request_timeout_ms / 1000
        self._send_lock = trio.Lock()
        self._slots = trio.Semaphore(CLIENT_IN_FLIGHT_REQUESTS_MAX)
        self._correlation_ids = itertools.count(1)
        self._waiters: dict[int, _Waiter] = {}
        self._versions: dict[int, int] = {}
        self.broken: ConnectionBrokenError | None = None
        self.closed = trio.Event()

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        host: str,
        port: int,
        *,
        client_id: str = "trioring",
        connect_timeout_ms: int = CLIENT_CONNECT_TIMEOUT_MS_DEFAULT,
        request_timeout_ms: int = CLIENT_REQUEST_TIMEOUT_MS_DEFAULT,
    ) -> AsyncIterator[WireConnection]:
        """Connect, negotiate versions, and keep the connection for the block."""
        address = f"{host}:{port}"
        try:
            with trio.fail_after(connect_timeout_ms / 1000):
                stream = await trio.open_tcp_stream(host, port)
        except (OSError, trio.TooSlowError) as error:
            raise ConnectionBrokenError(f"cannot connect to {address}: {error}") from None
        body = BodyError()
        async with stream, body_exception_unwrapped(body), trio.open_nursery() as nursery:
            connection = cls(
                stream,
                client_id=client_id,
                request_timeout_ms=request_timeout_ms,
                address=address,
            )
            nursery.start_soon(connection._read, name=f"kafka reader {address}")
            try:
                await connection._negotiate()
                yield connection
            except BaseException as error:
                body.error = error
                raise
            finally:
                connection._break(ConnectionBrokenError(f"connection to {address} closed"))
                nursery.cancel_scope.cancel()

    # --- versions ------------------------------------------------------------------------

    async def _negotiate(self) -> None:
        low, high = CLIENT_VERSIONS[ApiKey.API_VERSIONS]
        body = build(
            request_schema(ApiKey.API_VERSIONS, high),
            client_software_name="trioring",
            client_software_version="1",
        )
        response = await self._exchange(ApiKey.API_VERSIONS, high, body)
        if response.error_code == ErrorCode.unsupported_version:
            # The broker answered in v0 with its ranges; ask again in its newest we know.
            offered = {key.api_key: key.max_version for key in response.api_keys}
            version = max(low, min(high, offered.get(ApiKey.API_VERSIONS, 0)))
            response = await self._exchange(
                ApiKey.API_VERSIONS, version, build(request_schema(ApiKey.API_VERSIONS, version))
            )
        if response.error_code != ErrorCode.none:
            raise ConnectionBrokenError(
                f"{self.address} refused ApiVersions: {ErrorCode(response.error_code).name}"
            )
        self._versions = negotiated_versions(
            (key.api_key, key.min_version, key.max_version) for key in response.api_keys
        )

    def version(self, api_key: int) -> int:
        """The version of ``api_key`` spoken on this connection; UnsupportedApiError if none."""
        version = self._versions.get(api_key)
        if version is None:
            raise unsupported_api(self.address, api_key)
        return version

    # --- requests ------------------------------------------------------------------------

    async def request(
        self, api_key: int, *, timeout_s: float | None = None, **fields: Any
    ) -> tuple[int, Any]:
        """Send a request of the negotiated version built from ``fields`` (those the
        version declares are kept); return (version, kio response). ``timeout_s``
        replaces the request timeout for requests the broker may hold longer
        (JoinGroup waits for the whole rebalance)."""
        version = self.version(api_key)
        body = build(request_schema(api_key, version), **fields)
        return version, await self._exchange(api_key, version, body, timeout_s)

    async def send_only(self, api_key: int, **fields: Any) -> int:
        """Send a request that gets no response (Produce with acks=0); return its version."""
        version = self.version(api_key)
        body = build(request_schema(api_key, version), **fields)
        await self._send(api_key, version, body, None)
        return version

    async def _exchange(
        self, api_key: int, version: int, body: Any, timeout_s: float | None = None
    ) -> Any:
        timeout_s = self._request_timeout_s if timeout_s is None else timeout_s
        async with self._slots:
            waiter = _Waiter(api_key, version)
            await self._send(api_key, version, body, waiter)
            with trio.move_on_after(timeout_s) as scope:
                await waiter.event.wait()
            if scope.cancelled_caught:
                self._break(
                    ConnectionBrokenError(
                        f"{self.address} did not answer {ApiKey(api_key).name} within "
                        f"{timeout_s:g} s"
                    )
                )
        if waiter.error is not None:
            raise waiter.error
        return waiter.response

    async def _send(self, api_key: int, version: int, body: Any, waiter: _Waiter | None) -> None:
        if self.broken is not None:
            raise self.broken
        async with self._send_lock:
            if self.broken is not None:
                raise self.broken
            correlation_id = next(self._correlation_ids)
            frame = encode_request(api_key, version, correlation_id, self.client_id, body)
            if waiter is not None:
                # Registered only once the frame is surely sent whole (shielded below).
                self._waiters[correlation_id] = waiter
            try:
                # Shielded: a frame half written would leave the stream out of step.
                with trio.CancelScope(shield=True):
                    await self._stream.send_all(frame)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as error:
                self._break(ConnectionBrokenError(f"cannot send to {self.address}: {error}"))
                raise self.broken from None  # type: ignore[misc]

    async def _read(self) -> None:
        decoder = FrameDecoder(CLIENT_FRAME_BYTES_MAX)
        try:
            while True:
                data = await self._stream.receive_some(CLIENT_RECEIVE_BYTES)
                if not data:
                    raise ConnectionBrokenError(f"{self.address} closed the connection")
                decoder.feed(data)
                while (frame := decoder.next_frame()) is not None:
                    self._answer(frame)
        except ConnectionBrokenError as error:
            self._break(error)
        except ProtocolError as error:
            self._break(ConnectionBrokenError(f"{self.address} sent a malformed response: {error}"))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as error:
            self._break(ConnectionBrokenError(f"cannot read from {self.address}: {error}"))

    def _answer(self, frame: bytes) -> None:
        correlation_id = response_correlation_id(frame)
        waiter = self._waiters.pop(correlation_id, None)
        if waiter is None:
            raise ProtocolError(f"a response to correlation id {correlation_id}, never sent")
        waiter.response = decode_response(waiter.api_key, waiter.api_version, frame)
        waiter.event.set()

    def _break(self, error: ConnectionBrokenError) -> None:
        if self.broken is None:
            self.broken = error
            logger.debug("%s", error)
        waiters, self._waiters = self._waiters, {}
        for waiter in waiters.values():
            waiter.error = self.broken
            waiter.event.set()
        self.closed.set()

    def statistics(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "in_flight": len(self._waiters),
            "broken": self.broken is not None,
            "versions": dict(self._versions),
        }

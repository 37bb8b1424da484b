"""InProcessConnection: the client's requests to an embedded broker, with no socket.

Give ``Cluster.open`` (or ``open_producer``, ``open_consumer``,
``open_admin``) an embedded :class:`~trioring.Broker` instead of addresses
and every connection is one of these. A request is the kio request object
the wire transport would encode; here it goes straight to the Kafka
listener's adapter for its API (``trioring.server.apis.APIS``), which checks
it and calls the broker's handlers, middleware included, exactly as for a
request read from a socket. The answer comes back as the kio response
object a wire client would decode (``response_object``): no frame is
encoded or decoded, and record batches are handed over as the ``bytes``
they are.

The same as the wire: the versions spoken (the newest both this client and
the server know), the checks, the error codes, and the error boundary: an
adapter that raises answers its request with the error code the server
would send (UNKNOWN_SERVER_ERROR for a bug, logged), never with the
exception. What differs:

- No ApiVersions round trip: the versions are known when the connection opens.
- A request runs in its caller's task. Cancelling the caller cancels the
  handler too, as a call to the embedded API does; over the wire the broker
  would finish the request and drop the answer. For the same reason the
  requests of one connection run side by side, not one after another as the
  listener runs a connection's requests (the producer keeps one request in
  flight per partition, so its appends keep their order either way).
- A request slower than its timeout is cancelled and raises
  ConnectionBrokenError, as over the wire, but the connection stays usable:
  there is no byte stream to fall out of step.
- Requests are not framed, so the listener's frame size limit and request
  memory budget do not apply to them.

A handler that drops the connection (``HandlerContext.drop_connection``,
fault injection) breaks it as the listener would close a socket: every
request running on it raises ConnectionBrokenError.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from types import MappingProxyType
from typing import Any, Final

import trio

from trioring._broker import IN_PROCESS_HOST, Broker
from trioring._constants import CLIENT_IN_FLIGHT_REQUESTS_MAX, CLIENT_REQUEST_TIMEOUT_MS_DEFAULT
from trioring.client._connection import (
    ConnectionBrokenError,
    negotiated_versions,
    unsupported_api,
)
from trioring.errors import InvalidArgumentError
from trioring.protocol.kafka import ApiKey, request_schema, response_object
from trioring.protocol.kafka._build import build
from trioring.server import advertised_versions
from trioring.server.apis import APIS, ApiContext, ApiFunction
from trioring.server.apis.errors import failed_response
from trioring.server.apis.metadata import metadata_object

__all__ = ["InProcessConnection"]

#: The listener's adapters, but Metadata's answer as a kio object (cached as
#: such): the listener's adapter returns it encoded (and caches the bytes),
#: which a caller in this process would only decode again.
_APIS: Final[Mapping[int, ApiFunction]] = MappingProxyType(
    {**APIS, ApiKey.METADATA: metadata_object}
)


class InProcessConnection:
    """Requests to an embedded broker, each a call in the caller's task. Open with
    :meth:`open`."""

    def __init__(self, broker: Broker, *, client_id: str, request_timeout_ms: int) -> None:
        self.client_id = client_id
        self.address = IN_PROCESS_HOST
        self._request_timeout_s = request_timeout_ms / 1000
        # What the listener gives each connection: the handlers, the broker's
        # context, the client's id and where it is.
        self._context = ApiContext(
            broker.handlers,
            broker.handler_context(client_host=IN_PROCESS_HOST, drop_connection=self._drop),
            client_id=client_id,
        )
        self._versions = negotiated_versions(
            (api_key, oldest, newest)
            for api_key, (oldest, newest) in advertised_versions().items()
            if api_key in _APIS
        )
        self._slots = trio.Semaphore(CLIENT_IN_FLIGHT_REQUESTS_MAX)
        #: The requests running, each in its caller's task, cancelled by a close.
        self._running: set[trio.CancelScope] = set()
        self.broken: ConnectionBrokenError | None = None
        self.closed = trio.Event()

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        broker: Broker,
        *,
        client_id: str = "trioring",
        request_timeout_ms: int = CLIENT_REQUEST_TIMEOUT_MS_DEFAULT,
    ) -> AsyncIterator[InProcessConnection]:
        """A connection to ``broker`` for the block; requests still running at its end
        get ConnectionBrokenError, as those waiting on a closed wire connection do."""
        connection = cls(broker, client_id=client_id, request_timeout_ms=request_timeout_ms)
        await trio.lowlevel.checkpoint()
        try:
            yield connection
        finally:
            connection._close(ConnectionBrokenError("in-process connection closed"))

    def version(self, api_key: int) -> int:
        """The version of ``api_key`` spoken; UnsupportedApiError if none."""
        version = self._versions.get(api_key)
        if version is None:
            raise unsupported_api(self.address, api_key)
        return version

    async def request(
        self, api_key: int, *, timeout_s: float | None = None, **fields: Any
    ) -> tuple[int, Any]:
        """A request of the negotiated version built from ``fields`` (those the version
        declares are kept): (version, kio response). ``timeout_s`` replaces the request
        timeout."""
        if api_key == ApiKey.PRODUCE and fields.get("acks") == 0:
            raise InvalidArgumentError("Kafka answers no acks=0 Produce: send it with send_only")
        version = self.version(api_key)
        body = build(request_schema(api_key, version), **fields)
        response = await self._exchange(api_key, version, body, timeout_s)
        assert response is not None, "only an acks=0 Produce has no answer"
        return version, response

    async def send_only(self, api_key: int, **fields: Any) -> int:
        """A request Kafka does not answer (Produce with acks=0): it returns once the
        broker has handled it; failures are logged by the broker, not raised, as
        Kafka sends nothing back."""
        version = self.version(api_key)
        body = build(request_schema(api_key, version), **fields)
        await self._exchange(api_key, version, body, None)
        return version

    async def _exchange(
        self, api_key: int, version: int, body: Any, timeout_s: float | None
    ) -> Any:
        if self.broken is not None:
            raise self.broken
        timeout_s = self._request_timeout_s if timeout_s is None else timeout_s
        async with self._slots:
            with trio.CancelScope(deadline=trio.current_time() + timeout_s) as scope:
                self._running.add(scope)
                try:
                    return await self._answer(api_key, version, body)
                finally:
                    self._running.discard(scope)
            # Only the scope's own cancellation gets here: a close, or the timeout.
            # If the caller is being cancelled too, that wins.
            await trio.lowlevel.checkpoint_if_cancelled()
            if self.broken is not None:
                raise self.broken
            raise ConnectionBrokenError(
                f"the in-process broker did not answer {ApiKey(api_key).name} within "
                f"{timeout_s:g} s"
            )

    async def _answer(self, api_key: int, version: int, body: Any) -> Any:
        """The adapter's answer as a kio object, behind the listener's error boundary."""
        try:
            response = await _APIS[api_key](self._context, version, body)
        except Exception as error:
            response = failed_response(api_key, version, body, error, self.client_id)
        if response is None:  # acks=0
            return None
        try:
            return response_object(api_key, version, response)
        except Exception as error:
            # An answer that does not fit its schema is a bug of ours; as the
            # listener does for one it cannot encode, answer the error instead.
            fallback = failed_response(api_key, version, body, error, self.client_id)
            return None if fallback is None else response_object(api_key, version, fallback)

    def _drop(self) -> None:
        """A handler dropped this connection (fault injection): as a wire connection
        the broker closed, every request on it fails and the client opens a new one."""
        self._close(ConnectionBrokenError("the in-process broker dropped the connection"))

    def _close(self, error: ConnectionBrokenError) -> None:
        if self.broken is None:
            self.broken = error
        for scope in self._running:
            scope.cancel()
        self.closed.set()

    def statistics(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "in_flight": len(self._running),
            "broken": self.broken is not None,
            "versions": dict(self._versions),
        }

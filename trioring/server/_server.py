"""The Kafka listener: a Trio task per connection, bytes <-> codec <-> API functions.

Requests on one connection start in arrival order and are answered in that
order; up to ``in_flight_requests_max`` are read ahead (librdkafka keeps up
to 5 in flight). A produce lets the next request start once its appends are
written, while it waits for its fdatasync, so appends keep request order and
their fdatasyncs overlap; every other request runs to its end first, as in
Kafka. Read-ahead is bounded by the frame decoder (one receive buffer plus
one partial frame) and the in-flight limit. See docs/protocol.md.

Bad input closes that connection and logs one line with the peer address;
other connections are unaffected.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Mapping
from typing import Any

import trio

from trioring._broker import Broker
from trioring.core.metadata import METADATA_DIRECTORY
from trioring.errors import ProtocolError
from trioring.protocol.kafka import (
    SUPPORTED_VERSIONS,
    ApiKey,
    FrameDecoder,
    RequestHeader,
    api_name,
    decode_request,
    encode_api_versions_response,
    encode_response_chunks,
)
from trioring.server._apis import APIS, ApiContext, MetadataCache, Node, produce
from trioring.server._config import RECEIVE_BYTES, ServerConfig
from trioring.storage.files import read_file, replace_file
from trioring.uring import Buffer, FileBackend, TcpStream, open_tcp_listeners_for

logger = logging.getLogger("trioring.server")

#: Join response chunks smaller than this into one send (fewer system calls);
#: larger ones (big fetches) are sent as they are, without copying.
_JOIN_BYTES_MAX = 256 * 1024


def advertised_versions() -> Mapping[int, tuple[int, int]]:
    """Exactly the APIs this server implements, at the codec's versions."""
    return {
        key: versions
        for key, versions in SUPPORTED_VERSIONS.items()
        if key in APIS or key == ApiKey.API_VERSIONS
    }


class KafkaServer:
    """Serves one broker on one listener. Use :func:`serve_kafka`."""

    def __init__(self, broker: Broker, config: ServerConfig, cluster_id: str) -> None:
        self.broker = broker
        self.config = config
        self.cluster_id = cluster_id
        self.versions = advertised_versions()
        self.port = 0
        self._connections: set[trio.CancelScope] = set()
        self._idle: dict[trio.CancelScope, bool] = {}
        self._draining = False
        self._all_closed = trio.Event()
        self._connection_slots = trio.Semaphore(config.connections_max)
        #: Encoded Metadata answers, shared by every connection.
        self.metadata_cache = MetadataCache()

    def _node(self) -> Node:
        return Node(
            0,
            self.config.advertised_host or self.config.host,
            self.config.advertised_port or self.port,
        )

    async def serve(
        self, *, task_status: trio.TaskStatus[KafkaServer] = trio.TASK_STATUS_IGNORED
    ) -> None:
        listeners = await open_tcp_listeners_for(
            self.broker.shard.backend, self.config.port, host=self.config.host
        )
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            self._connection_nursery = nursery
            task_status.started(self)
            try:
                await trio.serve_listeners(self._handle_connection, listeners)
            finally:
                for listener in listeners:
                    with trio.CancelScope(shield=True):
                        await listener.aclose()

    async def drain(self) -> None:
        """Stop reading new requests: idle connections close, busy ones after their request."""
        self._draining = True
        for scope, idle in list(self._idle.items()):
            if idle:
                scope.cancel()
        await trio.lowlevel.checkpoint()

    @property
    def connection_count(self) -> int:
        return len(self._idle)

    async def wait_closed(self) -> None:
        """After :meth:`drain`: return once every connection has closed."""
        assert self._draining, "call drain() first"
        if self._idle:
            await self._all_closed.wait()
        else:
            await trio.lowlevel.checkpoint()

    async def _handle_connection(self, stream: TcpStream) -> None:
        try:
            peer_host, peer_port = stream.socket.getpeername()[:2]
            peer = f"{peer_host}:{peer_port}"
        except OSError:
            peer_host, peer = "", "unknown peer"
        if self._draining:
            await stream.aclose()
            return
        if self._connection_slots.value == 0:
            logger.warning("%s: refused, %d connections open", peer, self.config.connections_max)
            await stream.aclose()
            return
        async with self._connection_slots:
            with trio.CancelScope() as scope:
                self._idle[scope] = True
                try:
                    await self._serve_connection(stream, peer, peer_host, scope)
                except* ProtocolError as group:
                    logger.warning("%s: closing connection: %s", peer, group.exceptions[0])
                except* (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
                finally:
                    del self._idle[scope]
                    if self._draining and not self._idle:
                        self._all_closed.set()
                    with trio.CancelScope(shield=True):
                        await stream.aclose()

    async def _serve_connection(
        self,
        stream: trio.abc.HalfCloseableStream,
        peer: str,
        peer_host: str,
        scope: trio.CancelScope,
    ) -> None:
        decoder = FrameDecoder(self.config.frame_bytes_max)
        context = ApiContext(
            self.broker.shard,
            self.broker.handlers,
            self._node(),
            self.cluster_id,
            self.config.auto_create_topics,
            client_host=peer_host,
            metadata_cache=self.metadata_cache,
        )
        connection = _Connection(self.config.in_flight_requests_max)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._send_responses, stream, connection, scope)
            try:
                while not self._draining:
                    self._idle[scope] = connection.in_flight == 0
                    data = None
                    with trio.CancelScope() as connection.receive_scope:
                        data = await stream.receive_some(RECEIVE_BYTES)
                    connection.receive_scope = None
                    self._idle[scope] = False
                    if data is None:
                        continue  # the drain ended the wait; the loop ends
                    if not data:
                        return
                    decoder.feed(data)
                    for frame in decoder.frames():
                        await self._start_request(nursery, connection, context, frame)
            finally:
                # Requests already read still run and are answered, in order.
                connection.send_slots.close()

    async def _start_request(
        self,
        nursery: trio.Nursery,
        connection: _Connection,
        context: ApiContext,
        frame: bytes,
    ) -> None:
        """Start one request; return once the next may start (see _Connection)."""
        request = decode_request(frame)
        header = request.header
        api_versions = header.api_key == ApiKey.API_VERSIONS
        api = APIS.get(header.api_key)
        if not api_versions:
            if request.error is not None or request.body is None:
                raise ProtocolError(
                    f"{api_name(header.api_key)} v{header.api_version} "
                    f"(correlation id {header.correlation_id}, client {header.client_id!r}): "
                    f"{request.error}"
                )
            if api is None or header.api_key not in self.versions:
                raise ProtocolError(
                    f"{api_name(header.api_key)} (key {header.api_key}) is not implemented"
                )
        await connection.slots_free.acquire()
        slot = _ResponseSlot()
        connection.send_slots.send_nowait(slot)  # room: the channel holds every slot
        context.client_id = header.client_id or ""
        if api_versions:
            # Answered even for versions we do not speak, in a v0 body that
            # lists our ranges: the client retries with one we share.
            response = encode_api_versions_response(
                header.correlation_id, header.api_version, supported_versions=self.versions
            )
            slot.finish([response])
            return
        assert api is not None
        if header.api_key != ApiKey.PRODUCE or connection.slots_total == 1:
            # Everything but produce runs to its end before the next request
            # starts, as in Kafka (a long-polling fetch holds the connection).
            slot.finish(self._encode(header, await api(context, header.api_version, request.body)))
            return
        # A produce runs in its own task; the next request starts once its
        # appends are done (or it failed), while it waits for the fdatasync.
        ordered = trio.Event()
        nursery.start_soon(self._run_produce, context, header, request.body, slot, ordered)
        await ordered.wait()

    async def _run_produce(
        self,
        context: ApiContext,
        header: RequestHeader,
        body: Any,
        slot: _ResponseSlot,
        ordered: trio.Event,
    ) -> None:
        try:
            response = await produce(context, header.api_version, body, ordered.set)
        finally:
            ordered.set()
        slot.finish(self._encode(header, response))

    @staticmethod
    def _encode(header: RequestHeader, response: Any) -> list[Buffer] | None:
        if response is None:  # acks=0: Kafka sends nothing back
            return None
        chunks = encode_response_chunks(
            header.api_key, header.api_version, header.correlation_id, response
        )
        if len(chunks) > 1 and sum(len(c) for c in chunks) <= _JOIN_BYTES_MAX:
            return [b"".join(chunks)]
        return chunks

    async def _send_responses(
        self, stream: trio.abc.HalfCloseableStream, connection: _Connection, scope: trio.CancelScope
    ) -> None:
        """Send each request's response in request order, as soon as it is ready."""
        async for slot in connection.receive_slots:
            await slot.done.wait()
            # Large chunks (big fetches) go as they are, without copying.
            for chunk in slot.chunks or ():
                await stream.send_all(chunk)
            connection.slots_free.release()
            if connection.in_flight == 0 and connection.receive_scope is not None:
                if self._draining:
                    connection.receive_scope.cancel()  # drained: nothing left to answer
                else:
                    self._idle[scope] = True


class _ResponseSlot:
    """The response to one request, filled when its handler finishes."""

    __slots__ = ("chunks", "done")

    def __init__(self) -> None:
        self.done = trio.Event()
        #: Encoded response; None for requests that get none (acks=0 produce).
        self.chunks: list[Buffer] | None = None

    def finish(self, chunks: list[Buffer] | None) -> None:
        self.chunks = chunks
        self.done.set()


class _Connection:
    """Per-connection pipelining state.

    Requests start in arrival order, each once the one before it allows:
    at its end, or for a produce once its appends are done, so appends keep
    request order while fdatasyncs overlap (group commit). Responses go back
    in request order. At most ``slots_total`` requests are read and not yet
    answered; past that the connection is not read (TCP pushes back).
    """

    def __init__(self, in_flight_requests_max: int) -> None:
        self.slots_total = in_flight_requests_max
        self.slots_free = trio.Semaphore(in_flight_requests_max)
        # Holds every slot that can exist at once, so sending never blocks.
        self.send_slots, self.receive_slots = trio.open_memory_channel[_ResponseSlot](
            in_flight_requests_max
        )
        self.receive_scope: trio.CancelScope | None = None

    @property
    def in_flight(self) -> int:
        return self.slots_total - self.slots_free.value


async def load_cluster_id(backend: FileBackend, data_dir: str) -> str:
    """The cluster id clients see, created once and kept in the data directory."""
    path = os.path.join(data_dir, METADATA_DIRECTORY, "cluster-id")
    existing = await read_file(backend, path)
    if existing and existing.strip():
        return existing.decode("ascii", "replace").strip()
    cluster_id = uuid.uuid4().hex[:22]
    await replace_file(backend, path, f"{cluster_id}\n".encode())
    return cluster_id


async def serve_kafka(
    broker: Broker,
    config: ServerConfig | None = None,
    *,
    task_status: trio.TaskStatus[KafkaServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``broker`` over the Kafka protocol until cancelled.

    ``task_status.started`` receives the KafkaServer (its ``port`` is the bound
    port, useful with ``port=0``)::

        server = await nursery.start(serve_kafka, broker, ServerConfig(port=0))
    """
    config = config or ServerConfig()
    cluster_id = await load_cluster_id(broker.shard.backend, broker.config.data_dir)
    server = KafkaServer(broker, config, cluster_id)
    await server.serve(task_status=task_status)

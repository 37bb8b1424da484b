"""The Kafka listener: a Trio task per connection, bytes <-> codec <-> API functions.

Requests on one connection are handled one at a time in arrival order, as
Kafka's broker does: clients may pipeline (librdkafka keeps up to 5 in
flight) and get responses in request order, and two produces to one
partition on one connection are appended in the order they were sent.
Read-ahead is bounded by the frame decoder: at most one receive buffer plus
one partial frame is held per connection.

Bad input closes that connection and logs one line with the peer address;
other connections are unaffected.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Mapping

import trio

from trioring._broker import Broker
from trioring.core.metadata import METADATA_DIRECTORY
from trioring.errors import ProtocolError
from trioring.protocol.kafka import (
    SUPPORTED_VERSIONS,
    ApiKey,
    FrameDecoder,
    api_name,
    decode_request,
    encode_api_versions_response,
    encode_response_chunks,
)
from trioring.server._apis import APIS, ApiContext, Node
from trioring.server._config import RECEIVE_BYTES, ServerConfig
from trioring.storage.files import read_file, replace_file
from trioring.uring import FileBackend

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

    def _node(self) -> Node:
        return Node(
            0,
            self.config.advertised_host or self.config.host,
            self.config.advertised_port or self.port,
        )

    async def serve(
        self, *, task_status: trio.TaskStatus[KafkaServer] = trio.TASK_STATUS_IGNORED
    ) -> None:
        listeners = await trio.open_tcp_listeners(self.config.port, host=self.config.host)
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

    async def _handle_connection(self, stream: trio.SocketStream) -> None:
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
                except ProtocolError as error:
                    logger.warning("%s: closing connection: %s", peer, error)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
                finally:
                    del self._idle[scope]
                    if self._draining and not self._idle:
                        self._all_closed.set()
                    with trio.CancelScope(shield=True):
                        await stream.aclose()

    async def _serve_connection(
        self, stream: trio.SocketStream, peer: str, peer_host: str, scope: trio.CancelScope
    ) -> None:
        decoder = FrameDecoder(self.config.frame_bytes_max)
        context = ApiContext(
            self.broker.shard,
            self.broker.handlers,
            self._node(),
            self.cluster_id,
            self.config.auto_create_topics,
            client_host=peer_host,
        )
        while not self._draining:
            self._idle[scope] = True
            data = await stream.receive_some(RECEIVE_BYTES)
            self._idle[scope] = False
            if not data:
                return
            decoder.feed(data)
            for frame in decoder.frames():
                await self._handle_frame(stream, peer, context, frame)

    async def _handle_frame(
        self, stream: trio.SocketStream, peer: str, context: ApiContext, frame: bytes
    ) -> None:
        request = decode_request(frame)
        header = request.header
        context.client_id = header.client_id or ""
        if header.api_key == ApiKey.API_VERSIONS:
            # Answered even for versions we do not speak, in a v0 body that
            # lists our ranges: the client retries with one we share.
            await stream.send_all(
                encode_api_versions_response(
                    header.correlation_id, header.api_version, supported_versions=self.versions
                )
            )
            return
        if request.error is not None or request.body is None:
            raise ProtocolError(
                f"{api_name(header.api_key)} v{header.api_version} "
                f"(correlation id {header.correlation_id}, client {header.client_id!r}): "
                f"{request.error}"
            )
        api = APIS.get(header.api_key)
        if api is None or header.api_key not in self.versions:
            raise ProtocolError(
                f"{api_name(header.api_key)} (key {header.api_key}) is not implemented"
            )
        response = await api(context, header.api_version, request.body)
        if response is None:  # acks=0: Kafka sends nothing back
            return
        chunks = encode_response_chunks(
            header.api_key, header.api_version, header.correlation_id, response
        )
        if len(chunks) == 1:
            await stream.send_all(chunks[0])
        elif sum(len(c) for c in chunks) <= _JOIN_BYTES_MAX:
            await stream.send_all(b"".join(chunks))
        else:
            for chunk in chunks:
                await stream.send_all(chunk)


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

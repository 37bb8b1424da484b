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

A client that does not read its answers stalls only itself: its connection
starts no new request while more than RESPONSE_BYTES_UNSENT_MAX of its
answers wait to be sent (so it holds at most that plus one answer), and it
is closed once it has taken none of their bytes for
``connections_max_idle_ms``.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import trio
from kio.schema.errors import ErrorCode

from trioring._broker import Broker
from trioring._constants import (
    HEAP_TRIM_DELAY_SECONDS,
    RECEIVE_BYTES,
    RESPONSE_BYTES_UNSENT_MAX,
    SEND_PIECE_BYTES,
)
from trioring._heap import return_free_heap
from trioring._logging import RateLimitedLogger, printable
from trioring.cluster.model import Node
from trioring.config import ServerConfig
from trioring.errors import ProtocolError
from trioring.handlers import HandlerContext
from trioring.protocol.kafka import (
    ADVERTISED_VERSIONS,
    ApiKey,
    EncodedBody,
    FrameDecoder,
    RequestHeader,
    SentChunk,
    api_name,
    decode_request,
    encode_api_versions_response,
    encode_response_chunks,
)
from trioring.server._memory import RequestMemory, RequestMemoryStatistics
from trioring.server.apis import APIS, ApiContext, MetadataCache, produce
from trioring.server.apis.errors import failed_response
from trioring.storage.slices import LogSlice
from trioring.uring import Buffer, TcpStream, send_file_range

logger = logging.getLogger("trioring.server")
#: Every line a client can cause goes through this (see trioring._logging).
client_log = RateLimitedLogger(logger)

#: Join response chunks smaller than this into one send (fewer system calls);
#: larger ones (big fetches) are sent as they are, without copying.
_JOIN_BYTES_MAX = 256 * 1024


def advertised_versions() -> Mapping[int, tuple[int, int]]:
    """Exactly the APIs this server implements, at the codec's versions."""
    return {
        key: versions
        for key, versions in ADVERTISED_VERSIONS.items()
        if key in APIS or key == ApiKey.API_VERSIONS
    }


class KafkaServer:
    """Serves one broker on one listener. Use :func:`serve_kafka`."""

    def __init__(self, broker: Broker, config: ServerConfig, *, publish_node: bool = True) -> None:
        self.broker = broker
        self.config = config
        #: Whether this server tells the broker's cluster view its own address
        #: (a lone broker); the supervisor publishes its workers' instead.
        self.publish_node = publish_node
        self.versions = advertised_versions()
        self.port = 0
        self._connections: dict[trio.CancelScope, _Connection] = {}
        self._draining = False
        #: Set by drain(): long-polling requests answer at once with what they have.
        self._stopping = trio.Event()
        self._all_closed = trio.Event()
        self._connection_slots = trio.Semaphore(config.connections_max)
        #: Bytes of requests read and not yet answered, all connections together.
        self.memory = RequestMemory(config.queued_request_bytes_max)
        #: Encoded Metadata answers, shared by every connection.
        self.metadata_cache: MetadataCache[EncodedBody] = MetadataCache()
        self._idle_closed_total = 0
        #: Fetch records sent straight from segment files (zero-copy), and in how many ranges.
        self._file_bytes_sent_total = 0
        self._file_ranges_sent_total = 0

    @property
    def node(self) -> Node:
        """How clients reach this listener (the advertised address)."""
        return Node(
            self.broker.cluster.worker_index,
            self.config.advertised_host or self.config.host,
            self.config.advertised_port or self.port,
        )

    async def serve(
        self, *, task_status: trio.TaskStatus[KafkaServer] = trio.TASK_STATUS_IGNORED
    ) -> None:
        listeners = await self.broker.shard.backend.open_tcp_listeners(
            self.config.port, host=self.config.host
        )
        self.port = listeners[0].socket.getsockname()[1]
        if self.publish_node:
            self.broker.cluster.nodes.value = (self.node,)
        async with trio.open_nursery() as nursery:
            self._connection_nursery = nursery
            nursery.start_soon(self._return_free_heap)
            task_status.started(self)
            try:
                await trio.serve_listeners(self._handle_connection, listeners)
            finally:
                for listener in listeners:
                    with trio.CancelScope(shield=True):
                        await listener.aclose()

    async def _return_free_heap(self) -> None:
        """Give the heap that large requests' buffers held back to the system, now and then."""
        while True:
            await self.memory.heap_trim_due.wait()
            # By then the buffers of the requests (and connections) that
            # released the budget are gone too; later releases join this trim.
            await trio.sleep(HEAP_TRIM_DELAY_SECONDS)
            self.memory.heap_trimmed()
            if not await trio.to_thread.run_sync(return_free_heap):
                return  # not glibc: nothing to do, ever

    async def drain(self) -> None:
        """Stop reading new requests: idle connections close, busy ones after their request.

        Long-polling fetches (and group joins waiting for a rebalance) answer
        at once, so a stop does not wait out their ``max_wait``.
        """
        self._draining = True
        self._stopping.set()
        for scope, connection in list(self._connections.items()):
            if connection.in_flight == 0:
                scope.cancel()
            elif connection.receive_scope is not None:
                connection.receive_scope.cancel()
        await trio.lowlevel.checkpoint()

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    def statistics(self) -> dict[str, Any]:
        """Connections, request memory and idle closes, for monitoring and tests."""
        memory: RequestMemoryStatistics = self.memory.statistics()
        return {
            "connections": len(self._connections),
            "request_bytes_max": memory.bytes_max,
            "request_bytes_used": memory.bytes_used,
            "connections_waiting_for_memory": memory.waiting,
            "memory_waits_total": memory.waits_total,
            "idle_connections_closed_total": self._idle_closed_total,
            "file_bytes_sent_total": self._file_bytes_sent_total,
            "file_ranges_sent_total": self._file_ranges_sent_total,
        }

    async def wait_closed(self) -> None:
        """After :meth:`drain`: return once every connection has closed."""
        assert self._draining, "call drain() first"
        if self._connections:
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
            client_log.warning(
                "%s: refused, %d connections open", peer, self.config.connections_max
            )
            await stream.aclose()
            return
        async with self._connection_slots:
            connection = _Connection(self.config.in_flight_requests_max)
            with trio.CancelScope() as scope:
                connection.scope = scope
                self._connections[scope] = connection

                def drop() -> None:
                    # A handler's request to close (fault injection): the
                    # whole connection ends, unanswered requests included.
                    logger.info("%s: closing connection: a handler dropped it", peer)
                    scope.cancel()

                try:
                    await self._serve_connection(stream, peer, peer_host, connection, drop)
                except* ProtocolError as group:
                    client_log.warning(
                        "%s: closing connection: %s", peer, printable(group.exceptions[0])
                    )
                except* (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
                except* Exception as group:
                    # The last error boundary: whatever went wrong costs this
                    # one connection, never the listener or other clients.
                    client_log.error(
                        "%s: closing connection after an unexpected error: %r",
                        peer,
                        group.exceptions[0],
                        exc_info=group.exceptions[0],
                    )
                finally:
                    del self._connections[scope]
                    try:
                        connection.release_all(self.memory)
                    except Exception as error:
                        # The clean-up is inside the boundary too: a bug here
                        # (once: a failed assertion in the memory budget's
                        # bookkeeping) must cost one connection, not the broker.
                        client_log.error(
                            "%s: releasing the connection's request memory failed: %r",
                            peer,
                            error,
                            exc_info=error,
                        )
                    with trio.CancelScope(shield=True):
                        try:
                            await connection.release_all_slices()
                        except Exception as error:
                            client_log.error(
                                "%s: releasing the connection's unsent file ranges failed: %r",
                                peer,
                                error,
                                exc_info=error,
                            )
                    if self._draining and not self._connections:
                        self._all_closed.set()
                    with trio.CancelScope(shield=True):
                        await stream.aclose()

    async def _serve_connection(
        self,
        stream: trio.abc.HalfCloseableStream,
        peer: str,
        peer_host: str,
        connection: _Connection,
        drop: Callable[[], None],
    ) -> None:
        decoder = FrameDecoder(self.config.frame_bytes_max)
        context = ApiContext(
            self.broker.handlers,
            HandlerContext(
                self.broker.shard,
                self.broker.cluster,
                client_host=peer_host,
                stopping=self._stopping,
                auto_create_topics=self.config.auto_create_topics,
                server=attrs.evolve(self.config, port=self.port),
                drop_connection=drop,
                hold_slice=connection.hold_slice if self.config.fetch_zero_copy else None,
            ),
            metadata_cache=self.metadata_cache,
        )
        idle_seconds = self.config.connections_max_idle_ms / 1000
        connection.idle_seconds = idle_seconds
        memory = self.memory
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._send_responses, stream, peer, connection)
            try:
                while not self._draining:
                    if connection.reserved_bytes == 0:
                        # Between frames: read on only while the budget has
                        # room (a reserved partial frame reads on regardless,
                        # so reservations always complete).
                        await connection.wait_for_room(memory, self.config.frame_bytes_max)
                    data = None
                    with trio.CancelScope() as connection.receive_scope:
                        if connection.in_flight == 0:
                            connection.receive_scope.deadline = trio.current_time() + idle_seconds
                        data = await stream.receive_some(RECEIVE_BYTES)
                    receive_scope, connection.receive_scope = connection.receive_scope, None
                    if data is None:
                        if self._draining:
                            continue  # the drain ended the wait; the loop ends
                        if receive_scope.cancelled_caught and connection.in_flight == 0:
                            self._idle_closed_total += 1
                            logger.info(
                                "%s: closing connection idle for %.0f s (connections_max_idle_ms)",
                                peer,
                                idle_seconds,
                            )
                            return
                        continue
                    if not data:
                        return
                    decoder.feed(data)
                    for frame in decoder.frames():
                        self._account_frame(connection, len(frame))
                        await self._start_request(nursery, connection, context, frame)
                    partial = decoder.partial_frame_bytes
                    if partial and connection.reserved_bytes == 0:
                        await connection.reserve(memory, partial, self.config.frame_bytes_max)
            finally:
                # Requests already read still run and are answered, in order.
                connection.send_slots.close()

    def _account_frame(self, connection: _Connection, size: int) -> None:
        """Hand a whole frame its bytes of the budget: its reservation, or a charge."""
        if connection.reserved_bytes:
            assert connection.reserved_bytes == size, (connection.reserved_bytes, size)
            connection.reserved_bytes = 0  # the reservation becomes the request's
        else:
            connection.charge(self.memory, size)
        connection.next_request_bytes = size

    async def _start_request(
        self,
        nursery: trio.Nursery,
        connection: _Connection,
        context: ApiContext,
        frame: bytes,
    ) -> None:
        """Start one request; return once the next may start (see _Connection)."""
        request_bytes, connection.next_request_bytes = connection.next_request_bytes, 0
        request = decode_request(frame)
        del frame  # the request holds what it needs; the frame's bytes can go
        header = request.header
        api_versions = header.api_key == ApiKey.API_VERSIONS
        api = APIS.get(header.api_key)
        if not api_versions:
            if request.error is not None or request.body is None:
                connection.release(self.memory, request_bytes)
                raise ProtocolError(
                    f"{api_name(header.api_key)} v{header.api_version} "
                    f"(correlation id {header.correlation_id}, "
                    f"client '{printable(header.client_id)}'): {request.error}"
                )
            if api is None or header.api_key not in self.versions:
                connection.release(self.memory, request_bytes)
                raise ProtocolError(
                    f"{api_name(header.api_key)} (key {header.api_key}) is not implemented"
                )
        await connection.slots_free.acquire()
        # A client that does not read its answers stops here (see the module docstring).
        await connection.wait_for_answers_sent(RESPONSE_BYTES_UNSENT_MAX)
        slot = _ResponseSlot(connection, request_bytes)
        connection.send_slots.send_nowait(slot)  # room: the channel holds every slot
        context.client_id = header.client_id or ""
        if api_versions:
            # Answered even for versions we do not speak, in a v0 body that
            # lists our ranges: the client retries with one we share.
            response = encode_api_versions_response(
                header.correlation_id,
                header.api_version,
                error_code=_api_versions_error(request.body),
                supported_versions=self.versions,
            )
            slot.finish([response])
            return
        assert api is not None
        if header.api_key != ApiKey.PRODUCE or connection.slots_total == 1:
            # Everything but produce runs to its end before the next request
            # starts, as in Kafka (a long-polling fetch holds the connection).
            try:
                response = await api(context, header.api_version, request.body)
            except Exception as error:
                response = self._failed(context, header, request.body, error)
            finally:
                # Only this request runs: the slices held meanwhile are its answer's.
                slot.slices = connection.take_request_slices()
            slot.finish(self._encode(context, header, request.body, response))
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
        except Exception as error:
            response = self._failed(context, header, body, error)
        finally:
            ordered.set()
        slot.finish(self._encode(context, header, body, response))

    def _failed(
        self, context: ApiContext, header: RequestHeader, body: Any, error: Exception
    ) -> Any:
        return failed_response(header.api_key, header.api_version, body, error, context.client_id)

    def _encode(
        self, context: ApiContext, header: RequestHeader, body: Any, response: Any
    ) -> list[SentChunk] | None:
        if response is None:  # acks=0: Kafka sends nothing back
            return None
        try:
            chunks = encode_response_chunks(
                header.api_key, header.api_version, header.correlation_id, response
            )
        except Exception as error:
            # A response that does not encode is a bug of ours; the client
            # still gets an answer it can parse.
            fallback = self._failed(context, header, body, error)
            if fallback is None:
                return None
            chunks = encode_response_chunks(
                header.api_key, header.api_version, header.correlation_id, fallback
            )
        if len(chunks) > 1 and sum(len(c) for c in chunks) <= _JOIN_BYTES_MAX:
            buffers = [c for c in chunks if isinstance(c, bytes | bytearray | memoryview)]
            if len(buffers) == len(chunks):
                return [b"".join(buffers)]
        return chunks

    async def _send_responses(
        self, stream: trio.abc.HalfCloseableStream, peer: str, connection: _Connection
    ) -> None:
        """Send each request's response in request order, as soon as it is ready.

        A client that takes no piece of an answer for connections_max_idle_ms
        is closed: it would hold the answer's memory for good.
        """
        async for slot in connection.receive_slots:
            await slot.done.wait()
            # Large chunks (big fetches) go as they are, without copying;
            # LogSlices from the segment files to the socket (zero-copy).
            for chunk in slot.chunks or ():
                if isinstance(chunk, LogSlice):
                    sent = await self._send_slice(stream, peer, connection, chunk)
                else:
                    sent = await self._send_buffer(stream, peer, connection, chunk)
                if not sent:
                    return
            await connection.release_slices(slot.slices)
            slot.chunks = None
            connection.release(self.memory, slot.request_bytes)
            connection.slots_free.release()
            receive_scope = connection.receive_scope
            if connection.in_flight == 0 and receive_scope is not None:
                if self._draining:
                    receive_scope.cancel()  # drained: nothing left to answer
                else:
                    # Idle from now on, unless the client sends again.
                    receive_scope.deadline = trio.current_time() + connection.idle_seconds

    async def _send_buffer(
        self,
        stream: trio.abc.HalfCloseableStream,
        peer: str,
        connection: _Connection,
        chunk: SentChunk,
    ) -> bool:
        """Send one chunk of an answer; False if the connection is being closed."""
        assert isinstance(chunk, bytes | bytearray | memoryview), type(chunk)
        for piece in _pieces(chunk):
            with trio.move_on_after(connection.idle_seconds) as send_scope:
                await stream.send_all(piece)
            if send_scope.cancelled_caught:
                self._close_idle(peer, connection)
                return False
            connection.answer_sent(_size(piece))
        return True

    async def _send_slice(
        self,
        stream: trio.abc.HalfCloseableStream,
        peer: str,
        connection: _Connection,
        records: LogSlice,
    ) -> bool:
        """Send records straight from their segment files; False if the connection is being
        closed. A send cut short (the client went, a file ended) leaves half an answer
        on the wire: the connection is closed, never reused."""
        # Released, its descriptors may be closed and their numbers reused.
        assert not records.released, "a LogSlice sent after its release"
        for file_range in records.ranges:
            for start in range(0, file_range.count, SEND_PIECE_BYTES):
                size = min(SEND_PIECE_BYTES, file_range.count - start)
                with trio.move_on_after(connection.idle_seconds) as send_scope:
                    try:
                        await send_file_range(
                            stream, file_range.fd, file_range.position + start, size
                        )
                    except (EOFError, OSError) as error:
                        # The file side failed (a disk error, a file cut shorter
                        # meanwhile); stream errors are trio's own exceptions.
                        client_log.error(
                            "%s: closing connection: sending %d bytes of a segment file failed: %s",
                            peer,
                            size,
                            error,
                        )
                        self._close(connection)
                        return False
                if send_scope.cancelled_caught:
                    self._close_idle(peer, connection)
                    return False
                connection.answer_sent(size)
                self._file_bytes_sent_total += size
            self._file_ranges_sent_total += 1
        return True

    def _close_idle(self, peer: str, connection: _Connection) -> None:
        self._idle_closed_total += 1
        logger.info(
            "%s: closing connection: it took none of its answers for %.0f s "
            "(connections_max_idle_ms)",
            peer,
            connection.idle_seconds,
        )
        self._close(connection)

    @staticmethod
    def _close(connection: _Connection) -> None:
        assert connection.scope is not None
        connection.scope.cancel()


#: What Kafka accepts as ApiVersions v3+ client_software_name and _version.
_CLIENT_SOFTWARE = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?")


def _api_versions_error(body: Any) -> int:
    """INVALID_REQUEST for a v3+ ApiVersions whose client software fields Kafka would refuse."""
    name = getattr(body, "client_software_name", None)
    version = getattr(body, "client_software_version", None)
    if name is None or version is None:
        return ErrorCode.none  # before v3, or a body we could not decode
    if _CLIENT_SOFTWARE.fullmatch(name) and _CLIENT_SOFTWARE.fullmatch(version):
        return ErrorCode.none
    return ErrorCode.invalid_request


def _size(chunk: SentChunk) -> int:
    if isinstance(chunk, bytes | LogSlice):
        return len(chunk)
    assert isinstance(chunk, bytearray | memoryview), type(chunk)
    return memoryview(chunk).nbytes


def _pieces(chunk: Buffer) -> list[Buffer]:
    """``chunk`` in pieces of at most SEND_PIECE_BYTES (views: no copy)."""
    size = _size(chunk)
    if size <= SEND_PIECE_BYTES:
        return [chunk]
    view = memoryview(chunk).cast("B")
    return [view[start : start + SEND_PIECE_BYTES] for start in range(0, size, SEND_PIECE_BYTES)]


class _ResponseSlot:
    """The response to one request, filled when its handler finishes."""

    __slots__ = ("_connection", "chunks", "done", "request_bytes", "slices")

    def __init__(self, connection: _Connection, request_bytes: int) -> None:
        self._connection = connection
        self.done = trio.Event()
        #: Encoded response; None for requests that get none (acks=0 produce).
        self.chunks: list[SentChunk] | None = None
        #: Bytes of the request frame, held in the memory budget until answered.
        self.request_bytes = request_bytes
        #: Records the handler read as LogSlices (in ``chunks`` or not): released
        #: once the answer is sent.
        self.slices: list[LogSlice] = []

    def finish(self, chunks: list[SentChunk] | None) -> None:
        self.chunks = chunks
        if chunks:
            self._connection.unsent_bytes += sum(_size(c) for c in chunks)
        self.done.set()


class _Connection:
    """Per-connection state: pipelining, memory held, idleness.

    Requests start in arrival order, each once the one before it allows:
    at its end, or for a produce once its appends are done, so appends keep
    request order while fdatasyncs overlap (group commit). Responses go back
    in request order. At most ``slots_total`` requests are read and not yet
    answered; past that the connection is not read (TCP pushes back).

    Memory: ``held_bytes`` is what this connection holds of the server's
    budget (requests not yet answered, and the reservation of a partial
    frame, ``reserved_bytes``); it is all given back when the connection ends,
    small and large frames' bytes apart (``held_large_bytes``), as the budget
    counts them.
    """

    def __init__(self, in_flight_requests_max: int) -> None:
        self.slots_total = in_flight_requests_max
        self.slots_free = trio.Semaphore(in_flight_requests_max)
        # Holds every slot that can exist at once, so sending never blocks.
        self.send_slots, self.receive_slots = trio.open_memory_channel[_ResponseSlot](
            in_flight_requests_max
        )
        self.receive_scope: trio.CancelScope | None = None
        #: The whole connection's scope (cancelled to close it).
        self.scope: trio.CancelScope | None = None
        self.idle_seconds = math.inf
        #: Bytes of finished answers not yet handed to the socket.
        self.unsent_bytes = 0
        self._answers_sent = trio.Event()
        self.held_bytes = 0
        #: Of ``held_bytes``, those of frames the budget counts as large.
        self.held_large_bytes = 0
        self.reserved_bytes = 0
        #: Bytes of the frame being started (set by the reader, taken by the request).
        self.next_request_bytes = 0
        self._released = trio.Event()
        #: Every LogSlice a request of this connection read and nobody released yet.
        self.slices: set[LogSlice] = set()
        #: Those of the request running (see take_request_slices).
        self._request_slices: list[LogSlice] = []

    def hold_slice(self, records: LogSlice) -> None:
        """HandlerContext.hold_slice: the connection releases it, sent or not."""
        self.slices.add(records)
        self._request_slices.append(records)

    def take_request_slices(self) -> list[LogSlice]:
        """The slices of the request that just ended (the one running alone)."""
        taken, self._request_slices = self._request_slices, []
        return taken

    async def release_slices(self, slices: list[LogSlice]) -> None:
        for records in slices:
            await records.release()
            self.slices.discard(records)

    async def release_all_slices(self) -> None:
        """When the connection has ended: answers never sent keep no segment open."""
        await self.release_slices(list(self.slices))

    @property
    def in_flight(self) -> int:
        return self.slots_total - self.slots_free.value

    async def wait_for_room(self, memory: RequestMemory, connection_bytes_max: int) -> None:
        """Before reading between frames: the server's budget and this connection's share."""
        while self.held_bytes >= connection_bytes_max:
            self._released = trio.Event()
            await self._released.wait()
        await memory.wait_for_room()

    async def reserve(self, memory: RequestMemory, size: int, connection_bytes_max: int) -> None:
        """Reserve a partial frame's size before reading its body (back-pressure)."""
        # One connection's requests together stay within one frame's limit,
        # unless it has nothing else in flight.
        while self.held_bytes and self.held_bytes + size > connection_bytes_max:
            self._released = trio.Event()
            await self._released.wait()
        await memory.reserve(size)
        self.reserved_bytes = size
        self._hold(memory, size)

    def charge(self, memory: RequestMemory, size: int) -> None:
        """Hold a whole frame that arrived without a reservation."""
        memory.charge(size)
        self._hold(memory, size)

    def _hold(self, memory: RequestMemory, size: int) -> None:
        self.held_bytes += size
        if memory.is_large(size):
            self.held_large_bytes += size

    async def wait_for_answers_sent(self, unsent_bytes_max: int) -> None:
        """Return once at most ``unsent_bytes_max`` of this connection's answers wait."""
        while self.unsent_bytes > unsent_bytes_max:
            self._answers_sent = trio.Event()
            await self._answers_sent.wait()
        await trio.lowlevel.checkpoint_if_cancelled()

    def answer_sent(self, size: int) -> None:
        self.unsent_bytes -= size
        assert self.unsent_bytes >= 0
        self._answers_sent.set()

    def release(self, memory: RequestMemory, size: int) -> None:
        """Give back one frame's bytes."""
        if size:
            assert size <= self.held_bytes
            self.held_bytes -= size
            if memory.is_large(size):
                self.held_large_bytes -= size
            memory.release(size)
            self._released.set()

    def release_all(self, memory: RequestMemory) -> None:
        """Give back everything held, once the connection has ended."""
        large, small = self.held_large_bytes, self.held_bytes - self.held_large_bytes
        self.held_bytes = self.held_large_bytes = 0
        if small:
            memory.release(small, large=False)
        if large:
            memory.release(large, large=True)


async def serve_kafka(
    broker: Broker,
    config: ServerConfig | None = None,
    *,
    publish_node: bool = True,
    task_status: trio.TaskStatus[KafkaServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``broker`` over the Kafka protocol until cancelled.

    ``task_status.started`` receives the KafkaServer (its ``port`` is the bound
    port, useful with ``port=0``)::

        server = await nursery.start(serve_kafka, broker, ServerConfig(port=0))
    """
    config = config or ServerConfig()
    server = KafkaServer(broker, config, publish_node=publish_node)
    await server.serve(task_status=task_status)

"""Sockets over the ring: RingSocketStream passes Trio's generic stream checks,
cancellation loses and duplicates no byte and no connection, closing ends the
requests in flight without leaking descriptors, and file ranges are served
byte-exact over either backend's streams."""

from __future__ import annotations

import errno
import os
import random
import socket
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from pathlib import Path

import pytest
import trio
import trio.testing
from uring_support import cancel_after, open_fds, pause_randomly, requires_uring

from trioring._constants import RECEIVE_BUFFER_BYTES_MIN, RECEIVE_BYTES_MAX, SPLICE_PIPE_BYTES
from trioring.uring import (
    FallbackBackend,
    RingListener,
    RingSocketStream,
    UringBackend,
    open_tcp_listeners_for,
    send_file_range,
)
from trioring.uring._ring import Ring

pytestmark = requires_uring

RACES = 400
#: Bytes queued on a clogged stream before sends block (kernel buffers shrunk first).
CLOG_BUFFER_BYTES = 4096


@pytest.fixture
async def ring() -> AsyncIterator[Ring]:
    backend = UringBackend()
    socket_ring = backend.socket_ring()
    assert socket_ring is not None, "this kernel's io_uring has fast poll (Linux 5.7+)"
    try:
        yield socket_ring
    finally:
        await backend.aclose()


def tcp_socket_pair() -> tuple[socket.socket, socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        accepted, _ = server.accept()
    return client, accepted


def socket_pair(family: str) -> tuple[socket.socket, socket.socket]:
    return tcp_socket_pair() if family == "tcp" else socket.socketpair()


def ring_pair(
    ring: Ring, family: str = "tcp", *, receive_on_ring: bool = True
) -> tuple[RingSocketStream, RingSocketStream]:
    """Two connected streams; their receives wait on the ring unless told otherwise
    (most tests here are about the ring's receive path, the harder one)."""
    left, right = socket_pair(family)
    return (
        RingSocketStream(ring, left, receive_on_ring=receive_on_ring),
        RingSocketStream(ring, right, receive_on_ring=receive_on_ring),
    )


def shrink_buffers(stream: RingSocketStream, peer: RingSocketStream) -> None:
    """Small kernel buffers from ``stream`` to ``peer``: a few KiB fill them."""
    peer.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, CLOG_BUFFER_BYTES)
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, CLOG_BUFFER_BYTES)


def clog(stream: RingSocketStream, peer: RingSocketStream) -> None:
    """Fill the kernel buffers from ``stream`` to ``peer`` so that sends block."""
    shrink_buffers(stream, peer)
    while True:
        try:
            stream.socket.send(b"x" * CLOG_BUFFER_BYTES)
        except BlockingIOError:
            return


async def receive_exactly(stream: trio.abc.ReceiveStream, count: int) -> bytes:
    received = bytearray()
    while len(received) < count:
        data = await stream.receive_some(count - len(received))
        assert data, f"EOF after {len(received)} of {count} bytes"
        received += data
    return bytes(received)


async def _cancel_now(scope: trio.CancelScope) -> None:
    scope.cancel()


# --- Trio's generic stream checks -----------------------------------------------------


@pytest.mark.parametrize("receive_on_ring", [False, True], ids=["epoll-receive", "ring-receive"])
@pytest.mark.parametrize("family", ["tcp", "unix"])
async def test_ring_socket_stream_passes_trio_half_closeable_checks(
    ring: Ring, family: str, receive_on_ring: bool
) -> None:
    async def make() -> tuple[RingSocketStream, RingSocketStream]:
        return ring_pair(ring, family, receive_on_ring=receive_on_ring)

    async def make_clogged() -> tuple[RingSocketStream, RingSocketStream]:
        # Both ways: the checks also run with the pair flipped.
        stream, peer = ring_pair(ring, family, receive_on_ring=receive_on_ring)
        clog(stream, peer)
        clog(peer, stream)
        return stream, peer

    before = open_fds()
    with trio.fail_after(30):
        await trio.testing.check_half_closeable_stream(make, make_clogged)
    assert open_fds() == before
    assert ring.statistics()["owned_operations_in_flight"] == 0


async def test_ring_and_trio_streams_talk_to_each_other(ring: Ring) -> None:
    ring_end, trio_end = tcp_socket_pair()
    stream = RingSocketStream(ring, ring_end)
    peer = trio.SocketStream(trio.socket.from_stdlib_socket(trio_end))
    data = os.urandom(3 << 20)
    async with stream, peer:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream.send_all, data)
            assert await receive_exactly(peer, len(data)) == data
        await peer.send_all(b"back")
        await peer.send_eof()
        assert await receive_exactly(stream, 4) == b"back"
        assert await stream.receive_some() == b""
        host, port = stream.getpeername()
        assert (host, port) == peer.socket.getsockname()
        assert stream.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


# --- receive cancellation -------------------------------------------------------------


@pytest.mark.parametrize("receive_on_ring", [False, True], ids=["epoll-receive", "ring-receive"])
async def test_cancelled_idle_receive_raises_and_takes_nothing(
    ring: Ring, receive_on_ring: bool
) -> None:
    stream, peer = ring_pair(ring, receive_on_ring=receive_on_ring)
    async with stream, peer:
        with trio.move_on_after(0.02) as scope:
            await stream.receive_some(10)
        assert scope.cancelled_caught
        statistics = stream.statistics()
        assert statistics["operations_in_flight"] == statistics["pending_receive_bytes"] == 0
        await peer.send_all(b"after")
        assert await stream.receive_some(10) == b"after"


async def receive_on_the_ring(
    stream: RingSocketStream, peer: RingSocketStream, data: bytes, max_bytes: int
) -> bytes | None:
    """Receive while ``data`` arrives and the receive is cancelled at once.

    The receive waits in the ring (no bytes were waiting, so it did not take
    the direct recv), then the peer's send(2) completes it (the kernel posts
    the completion before that syscall returns) and the receiving task is
    cancelled before it runs again. Returns what receive_some returned, or
    None if it raised Cancelled.
    """
    returned: list[bytes] = []
    async with trio.open_nursery() as nursery:

        async def receive(task_status: trio.TaskStatus[trio.CancelScope]) -> None:
            with trio.CancelScope() as scope:
                task_status.started(scope)
                returned.append(await stream.receive_some(max_bytes))

        scope = await nursery.start(receive)
        await trio.testing.wait_all_tasks_blocked()
        assert stream.statistics()["operations_in_flight"] == 1, "the receive is on the ring"
        assert peer.socket.send(data) == len(data)
        scope.cancel()
    return returned[0] if returned else None


async def test_receive_completed_despite_cancel_keeps_its_bytes_for_the_next_call(
    ring: Ring,
) -> None:
    stream, peer = ring_pair(ring)
    outcomes: Counter[str] = Counter()
    async with stream, peer:
        for index in range(20):
            message = b"message %d" % index
            returned = await receive_on_the_ring(stream, peer, message, 100)
            if returned is None:
                outcomes["kept"] += 1
                assert stream.statistics()["pending_receive_bytes"] == len(message)
                returned = await stream.receive_some(100)
            else:
                outcomes["returned"] += 1
            assert returned == message
        assert outcomes["kept"] > 0, outcomes


async def test_pending_bytes_come_back_in_order_in_pieces(ring: Ring) -> None:
    stream, peer = ring_pair(ring)
    async with stream, peer:
        for _ in range(20):
            if await receive_on_the_ring(stream, peer, b"0123456789", 10) is None:
                break
            pytest.fail("returned although cancelled")  # pragma: no cover
        await peer.send_all(b"after")
        assert await stream.receive_some(4) == b"0123"
        assert await stream.receive_some(4) == b"4567"
        assert await stream.receive_some(100) == b"89", "pending bytes first, alone"
        assert await stream.receive_some(100) == b"after"


@pytest.mark.parametrize("seed", [1, 2])
async def test_receive_cancel_races_lose_and_duplicate_nothing(ring: Ring, seed: int) -> None:
    """Hundreds of receives, each cancelled at a random moment while the peer
    sends: every byte sent is received exactly once, in order."""
    chooser = random.Random(seed)
    stream, peer = ring_pair(ring)
    sent = bytearray()
    received = bytearray()
    outcomes: Counter[str] = Counter()
    message_count = RACES

    async def send_messages() -> None:
        for index in range(message_count):
            message = index.to_bytes(4, "big")
            await peer.send_all(message)
            sent.extend(message)
            await pause_randomly(chooser)

    async with stream, peer:
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(send_messages)
                while len(received) < 4 * message_count:
                    data = None
                    cancelled_before_return = False
                    with trio.CancelScope() as scope:
                        async with trio.open_nursery() as canceller:
                            delay_s = chooser.choice([0, chooser.random() * 0.0003])
                            canceller.start_soon(cancel_after, scope, chooser.randrange(4), delay_s)
                            data = await stream.receive_some(4 * chooser.randrange(1, 4))
                            received.extend(data)
                            cancelled_before_return = scope.cancel_called
                            scope.cancel()  # done: stop the canceller
                    if data is not None:
                        outcome = "completed despite cancel" if cancelled_before_return else "done"
                    elif stream.statistics()["pending_receive_bytes"]:
                        outcome = "completed, kept for the next call"
                    else:
                        outcome = "cancelled"
                    outcomes[outcome] += 1
        assert received == sent
        assert outcomes["cancelled"] > 0, outcomes
        assert outcomes["done"] > 0, outcomes
        assert outcomes["completed, kept for the next call"] > 0, outcomes
        assert stream.statistics()["operations_in_flight"] == 0


async def test_receive_buffer_grows_for_bulk_data_and_shrinks_for_small(ring: Ring) -> None:
    """Receives that wait in the ring use a buffer sized to what arrives."""
    stream, peer = ring_pair(ring)
    chunk = os.urandom(RECEIVE_BYTES_MAX)
    sizes = []

    async def receive_waiting(data: bytes) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive_exactly, stream, len(data))
            await trio.testing.wait_all_tasks_blocked()
            await peer.send_all(data)
        sizes.append(stream.statistics()["receive_buffer_bytes"])

    async with stream, peer:
        assert stream.statistics()["receive_buffer_bytes"] == RECEIVE_BUFFER_BYTES_MIN
        for _ in range(10):
            await receive_waiting(chunk)
        assert max(sizes) > 16 * RECEIVE_BUFFER_BYTES_MIN
        for _ in range(10):
            await receive_waiting(b"small")
        assert sizes[-1] == RECEIVE_BUFFER_BYTES_MIN


# --- send cancellation ----------------------------------------------------------------


async def test_send_cancelled_before_any_byte_leaves_the_stream_usable(ring: Ring) -> None:
    # A Unix socket pair: TCP with shrunk buffers reopens its window slowly.
    stream, peer = ring_pair(ring, "unix")
    async with stream, peer:
        clog(stream, peer)
        clogged = stream.socket.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        with trio.move_on_after(0.05) as scope:
            await stream.send_all(b"never")
        assert scope.cancelled_caught

        async def drain() -> bytes:
            received = bytearray()
            while not received.endswith(b"y"):
                received += await peer.receive_some()
            return bytes(received)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream.send_all, b"y")
            received = await drain()
        assert set(received[:-1]) == {ord("x")}, "the cancelled bytes never went"
        assert len(received) > clogged // 2


async def test_send_cancelled_part_way_breaks_the_stream(ring: Ring) -> None:
    stream, peer = ring_pair(ring)
    async with stream, peer:
        shrink_buffers(stream, peer)
        with trio.move_on_after(0.05) as scope:
            await stream.send_all(b"z" * (4 << 20))  # more than the buffers hold
        assert scope.cancelled_caught
        with pytest.raises(trio.BrokenResourceError, match="interrupted after"):
            await stream.send_all(b"more")
        with pytest.raises(trio.BrokenResourceError):
            await stream.send_all(b"")
        # Receiving still works; the peer got a prefix of the data.
        await peer.send_all(b"hi")
        assert await stream.receive_some(2) == b"hi"


async def test_a_bytearray_can_be_resized_after_send_all(ring: Ring) -> None:
    stream, peer = ring_pair(ring)
    async with stream, peer:
        data = bytearray(b"abc")
        await stream.send_all(data)
        data.clear()  # BufferError if the stream still exported the buffer
        assert await receive_exactly(peer, 3) == b"abc"


# --- accept -------------------------------------------------------------------------------


def ring_listener(ring: Ring) -> RingListener:
    return RingListener(ring, socket.create_server(("127.0.0.1", 0)))


async def connect(listener: RingListener) -> trio.SocketStream:
    host, port = listener.socket.getsockname()
    return await trio.open_tcp_stream(host, port)


async def test_accept_through_the_ring(ring: Ring) -> None:
    async with ring_listener(ring) as listener:
        client = await connect(listener)
        async with client, await listener.accept() as server_side:
            assert isinstance(server_side, RingSocketStream)
            assert server_side.getpeername() == client.socket.getsockname()
            await client.send_all(b"ping")
            assert await server_side.receive_some(4) == b"ping"
            await server_side.send_all(b"pong")
            assert await client.receive_some(4) == b"pong"


async def test_cancelled_accept(ring: Ring) -> None:
    async with ring_listener(ring) as listener:
        with trio.move_on_after(0.02) as scope:
            await listener.accept()
        assert scope.cancelled_caught
        assert ring.statistics()["owned_operations_in_flight"] == 0
        client = await connect(listener)
        async with client, await listener.accept():
            pass


async def test_accept_completed_despite_cancel_keeps_the_connection(ring: Ring) -> None:
    outcomes: Counter[str] = Counter()
    async with ring_listener(ring) as listener:
        for _ in range(30):
            client = await connect(listener)
            await trio.sleep(0.001)  # the connection waits in the backlog
            accepted = None
            with trio.CancelScope() as scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_cancel_now, scope)
                    accepted = await listener.accept()
            if accepted is None:
                outcomes["kept"] += 1
                accepted = await listener.accept()
            else:
                outcomes["returned"] += 1
            async with client, accepted:
                await client.send_all(b"!")
                assert await accepted.receive_some(1) == b"!", "the same connection"
    assert outcomes["kept"] > 0, outcomes


async def test_concurrent_accepts_are_refused(ring: Ring) -> None:
    async with ring_listener(ring) as listener:
        with pytest.raises(ExceptionGroup) as raised:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(listener.accept)
                nursery.start_soon(listener.accept)
        assert raised.group_contains(trio.BusyResourceError)


def test_ring_listener_requires_a_listening_socket() -> None:
    async def main() -> None:
        backend = UringBackend()
        ring = backend.socket_ring()
        assert ring is not None
        with socket.socket() as unbound, pytest.raises(ValueError, match="listening"):
            RingListener(ring, unbound)
        await backend.aclose()

    trio.run(main)


FILE_BYTES = 3 * SPLICE_PIPE_BYTES + 12345


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    """A file bigger than three splice pipes, and its content."""
    path = tmp_path_factory.mktemp("files") / "segment"
    content = random.Random(7).randbytes(FILE_BYTES)
    path.write_bytes(content)
    return path, content


# --- closing with requests in flight ------------------------------------------------------


@pytest.mark.parametrize("receive_on_ring", [False, True], ids=["epoll-receive", "ring-receive"])
async def test_aclose_ends_a_receive_in_flight(ring: Ring, receive_on_ring: bool) -> None:
    before = open_fds()
    stream, peer = ring_pair(ring, receive_on_ring=receive_on_ring)
    failures: list[BaseException] = []

    async def receive() -> None:
        try:
            await stream.receive_some(10)
        except trio.ClosedResourceError as error:
            failures.append(error)

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive)
            await trio.testing.wait_all_tasks_blocked()
            # On the ring, or on Trio's epoll (no ring request).
            assert stream.statistics()["operations_in_flight"] == int(receive_on_ring)
            await stream.aclose()
    await peer.aclose()
    assert len(failures) == 1
    assert "closed" in str(failures[0])
    assert open_fds() == before


async def test_aclose_closes_a_kept_connection(ring: Ring) -> None:
    before = open_fds()
    listener = ring_listener(ring)
    clients = []
    for _ in range(30):
        clients.append(await connect(listener))
        await trio.sleep(0.001)
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_cancel_now, scope)
                await (await listener.accept()).aclose()  # returned: not kept
        if listener.statistics()["pending_connections"]:
            break
    assert listener.statistics()["pending_connections"] == 1, "an accept was kept"
    with trio.fail_after(5):
        await listener.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await listener.accept()
    for client in clients:
        await client.aclose()
    assert open_fds() == before


async def test_aclose_ends_an_accept_waiting(ring: Ring) -> None:
    before = open_fds()
    listener = ring_listener(ring)
    failures: list[BaseException] = []

    async def accept() -> None:
        try:
            await listener.accept()
        except trio.ClosedResourceError as error:
            failures.append(error)

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(accept)
            await trio.testing.wait_all_tasks_blocked()
            await listener.aclose()
    assert len(failures) == 1
    assert open_fds() == before


async def test_ring_teardown_with_socket_requests_in_flight(
    data_file: tuple[Path, bytes],
) -> None:
    """The backend (ring) closes while a receive, an accept and a file range
    sent to a peer that reads nothing wait: each learns the ring closed,
    nothing hangs, no descriptor leaks."""
    before = open_fds()
    backend = UringBackend()
    ring = backend.socket_ring()
    assert ring is not None
    stream, peer = ring_pair(ring)
    sender, clogged_peer = ring_pair(ring)
    shrink_buffers(sender, clogged_peer)
    listener = ring_listener(ring)
    file_fd = os.open(data_file[0], os.O_RDONLY | os.O_CLOEXEC)
    failures: list[str] = []

    async def expect_closed(
        name: str, operation: Callable[..., Awaitable[object]], *arguments: object
    ) -> None:
        with pytest.raises(trio.ClosedResourceError, match="io_uring ring"):
            await operation(*arguments)
        failures.append(name)

    try:
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(expect_closed, "receive", stream.receive_some, 10)
                nursery.start_soon(expect_closed, "accept", listener.accept)
                nursery.start_soon(
                    expect_closed, "file", send_file_range, sender, file_fd, 0, FILE_BYTES
                )
                await trio.testing.wait_all_tasks_blocked()
                await backend.aclose()
        assert sorted(failures) == ["accept", "file", "receive"]
    finally:
        for resource in (stream, peer, sender, clogged_peer, listener):
            await resource.aclose()
        os.close(file_fd)
    assert open_fds() == before


async def test_stream_aclose_with_a_file_range_waiting_for_the_peer(
    ring: Ring, data_file: tuple[Path, bytes]
) -> None:
    before = open_fds()
    stream, peer = ring_pair(ring)
    shrink_buffers(stream, peer)
    failures: list[BaseException] = []
    file_fd = os.open(data_file[0], os.O_RDONLY | os.O_CLOEXEC)

    async def serve_file() -> None:
        try:
            await send_file_range(stream, file_fd, 0, FILE_BYTES)
        except trio.ClosedResourceError as error:
            failures.append(error)

    try:
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(serve_file)
                # The peer reads nothing; the cushion lets splices in kernel
                # threads finish, so the transfer waits for the socket.
                await trio.testing.wait_all_tasks_blocked(cushion=0.02)
                assert stream.statistics()["operations_in_flight"] == 1
                await stream.aclose()
        assert len(failures) == 1
    finally:
        os.close(file_fd)
        await peer.aclose()
    # The pipe that held unsent bytes was closed, not kept for reuse.
    assert open_fds() == before


# --- serving file ranges ------------------------------------------------------------------

RANGES = [
    (0, 0),
    (0, 1),
    (1, 4095),
    (4097, 2 * SPLICE_PIPE_BYTES + 777),  # more than a pipe, not page aligned
    (0, FILE_BYTES),
    (FILE_BYTES - 3, 3),
]


#: "trio-threads": Trio's sockets with ``cached_inline=False``, every piece by
#: sendfile in a worker thread (by default pieces in the page cache go in the loop).
FILE_RANGE_KINDS = ["ring", "trio", "trio-threads", "memory"]


async def stream_pair_of(
    kind: str, ring: Ring
) -> tuple[trio.abc.HalfCloseableStream, trio.abc.HalfCloseableStream]:
    if kind == "ring":
        return ring_pair(ring)
    if kind in ("trio", "trio-threads"):
        left, right = tcp_socket_pair()
        return (
            trio.SocketStream(trio.socket.from_stdlib_socket(left)),
            trio.SocketStream(trio.socket.from_stdlib_socket(right)),
        )
    return trio.testing.memory_stream_pair()


@pytest.mark.parametrize("kind", FILE_RANGE_KINDS)
async def test_send_file_range_is_byte_exact(
    ring: Ring, data_file: tuple[Path, bytes], kind: str
) -> None:
    path, content = data_file
    file_fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    stream, peer = await stream_pair_of(kind, ring)
    try:
        async with stream, peer:
            for offset, count in RANGES:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(
                        partial(send_file_range, cached_inline=kind != "trio-threads"),
                        stream,
                        file_fd,
                        offset,
                        count,
                    )
                    received = await receive_exactly(peer, count) if count else b""
                assert received == content[offset : offset + count], (offset, count)
            # The ranges were back to back on the stream: nothing extra arrived.
            await stream.send_eof()
            assert await peer.receive_some() == b""
        assert os.lseek(file_fd, 0, os.SEEK_CUR) == 0, "the file position is untouched"
    finally:
        os.close(file_fd)


@pytest.mark.parametrize("kind", FILE_RANGE_KINDS)
async def test_send_file_range_past_the_end_raises_eof(
    ring: Ring, data_file: tuple[Path, bytes], kind: str
) -> None:
    file_fd = os.open(data_file[0], os.O_RDONLY | os.O_CLOEXEC)
    stream, peer = await stream_pair_of(kind, ring)
    try:
        async with stream, peer:

            async def drain() -> None:
                while await peer.receive_some():
                    pass

            async with trio.open_nursery() as nursery:
                nursery.start_soon(drain)
                with pytest.raises(EOFError):
                    await send_file_range(
                        stream, file_fd, FILE_BYTES - 10, 20, cached_inline=kind != "trio-threads"
                    )
                await stream.aclose()
    finally:
        os.close(file_fd)


async def test_send_file_range_reuses_a_few_pipes(
    ring: Ring, data_file: tuple[Path, bytes]
) -> None:
    file_fd = os.open(data_file[0], os.O_RDONLY | os.O_CLOEXEC)
    pairs = [ring_pair(ring) for _ in range(4)]
    before = open_fds()
    try:
        for _ in range(3):
            async with trio.open_nursery() as nursery:
                for stream, peer in pairs:
                    nursery.start_soon(send_file_range, stream, file_fd, 5, 100_000)
                    nursery.start_soon(receive_exactly, peer, 100_000)
        # One pipe pair per concurrent transfer, kept for the next ones.
        assert len(open_fds()) <= len(before) + 2 * len(pairs)
    finally:
        os.close(file_fd)
        for stream, peer in pairs:
            await stream.aclose()
            await peer.aclose()


async def test_send_file_range_rejects_negative_arguments(ring: Ring) -> None:
    stream, peer = ring_pair(ring)
    async with stream, peer:
        with pytest.raises(ValueError, match="negative"):
            await send_file_range(stream, 0, -1, 10)


# --- choosing the backend -----------------------------------------------------------------


async def test_open_tcp_listeners_for_follows_the_backend() -> None:
    backend = UringBackend()
    try:
        listeners = await open_tcp_listeners_for(backend, 0, host="127.0.0.1")
        assert listeners and all(isinstance(item, RingListener) for item in listeners)
        for listener in listeners:
            await listener.aclose()
    finally:
        await backend.aclose()
    fallback_listeners = await open_tcp_listeners_for(FallbackBackend(), 0, host="127.0.0.1")
    assert all(isinstance(item, trio.SocketListener) for item in fallback_listeners)
    for listener in fallback_listeners:
        await listener.aclose()


async def test_idle_receives_take_no_file_io_slot() -> None:
    """A socket keeps a receive in flight while idle; file I/O must not wait behind them."""
    backend = UringBackend(operations_in_flight_max=2)
    ring = backend.socket_ring()
    assert ring is not None
    pairs = [ring_pair(ring) for _ in range(5)]
    read_end, write_end = os.pipe()
    try:
        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                for stream, _ in pairs:
                    nursery.start_soon(stream.receive_some, 1)
                await trio.testing.wait_all_tasks_blocked()
                assert ring.statistics()["owned_operations_in_flight"] == 5
                os.write(write_end, b"file")
                assert await backend.pread(read_end, 4, 0) == b"file"
                for _, peer in pairs:
                    await peer.send_all(b"!")
    finally:
        for stream, peer in pairs:
            await stream.aclose()
            await peer.aclose()
        os.close(read_end)
        os.close(write_end)
        await backend.aclose()


def test_errors_map_to_stream_errors() -> None:
    from trioring.uring._socket import _stream_error  # noqa: PLC0415

    assert isinstance(_stream_error(-errno.EBADF), trio.ClosedResourceError)
    broken = _stream_error(-errno.ECONNRESET)
    assert isinstance(broken, trio.BrokenResourceError)
    assert isinstance(broken.__cause__, ConnectionResetError)

"""Over Trio's sockets (the fallback backend's), file ranges the page cache holds go
to the socket by sendfile in the loop, the others by sendfile in a worker thread,
and a range that is partly cached takes both, byte-exact either way."""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from trioring._constants import FILE_CHUNK_BYTES_MAX
from trioring.uring import _pagecache, send_file_range

FILE_BYTES = 3 * FILE_CHUNK_BYTES_MAX + 4321
#: Kernel buffer sizes that make a 3 MiB range wait for the reader many times.
SMALL_BUFFER_BYTES = 16 * 1024
#: Where the tests that drop part of the file start dropping: 2 MiB, since the
#: kernel may cache the file in folios of up to 2 MiB and drops only whole ones.
CACHED_PREFIX_BYTES = 2 * FILE_CHUNK_BYTES_MAX


@pytest.fixture
def data(tmp_path: Path) -> Iterator[tuple[int, bytes]]:
    """A read-only fd on a file written to disk (and still in the page cache), its bytes."""
    content = os.urandom(FILE_BYTES)
    path = tmp_path / "segment"
    with open(path, "wb") as file:
        file.write(content)
        file.flush()
        os.fsync(file.fileno())
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.pread(fd, FILE_BYTES, 0)  # every page cached
        if not _pagecache.holds(fd, 0, FILE_BYTES):
            pytest.skip("no cachestat here (Linux 6.5+), or the page cache dropped the file")
        yield fd, content
    finally:
        os.close(fd)


def drop_from_cache(fd: int, offset: int = 0) -> None:
    """Drop the file's pages from ``offset`` to its end from the page cache."""
    os.posix_fadvise(fd, offset, 0, os.POSIX_FADV_DONTNEED)
    if _pagecache.holds(fd, offset, FILE_BYTES - offset):
        pytest.skip("the page cache kept the file (POSIX_FADV_DONTNEED ignored)")


def tcp_pair() -> tuple[socket.socket, socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        accepted, _ = server.accept()
    return client, accepted


def stream_pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    """A sending Trio stream over TCP and its peer."""
    left, right = tcp_pair()
    return (
        trio.SocketStream(trio.socket.from_stdlib_socket(left)),
        trio.SocketStream(trio.socket.from_stdlib_socket(right)),
    )


class SendfileCalls:
    """Counts os.sendfile calls made in the loop's thread and in other threads."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.in_loop = 0
        self.off_loop = 0
        self.would_block = 0
        #: "loop" or "thread" for each call, in order.
        self.order: list[str] = []
        loop_thread = threading.current_thread()
        real_sendfile = os.sendfile

        def counting_sendfile(*arguments: Any) -> int:
            if threading.current_thread() is loop_thread:
                self.in_loop += 1
                self.order.append("loop")
            else:
                self.off_loop += 1
                self.order.append("thread")
            try:
                return real_sendfile(*arguments)
            except BlockingIOError:
                self.would_block += 1
                raise

        monkeypatch.setattr(os, "sendfile", counting_sendfile)


async def send_and_receive(
    stream: trio.abc.HalfCloseableStream,
    peer: trio.abc.ReceiveStream,
    fd: int,
    offset: int,
    count: int,
    *,
    cached_inline: bool = True,
) -> bytes:
    received = bytearray()

    async def receive() -> None:
        while len(received) < count:
            data = await peer.receive_some(1 << 20)
            assert data, "EOF before the whole range"
            received.extend(data)

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive)
            await send_file_range(stream, fd, offset, count, cached_inline=cached_inline)
    return bytes(received)


def test_holds_answers_for_cached_dropped_and_missing_ranges(data: tuple[int, bytes]) -> None:
    fd, _ = data
    assert _pagecache.holds(fd, 0, FILE_BYTES)
    assert _pagecache.holds(fd, FILE_BYTES - 1, 1)
    page = os.sysconf("SC_PAGE_SIZE")
    past_the_end = (FILE_BYTES + page - 1) // page * page  # the first page not in the file
    assert not _pagecache.holds(fd, past_the_end - 1, 2), "a page past the end is not held"
    assert not _pagecache.holds(fd, past_the_end, 10)
    assert not _pagecache.holds(fd, 0, 0)
    assert not _pagecache.holds(fd, -1, 10)
    spare = os.dup(fd)
    os.close(spare)
    assert not _pagecache.holds(spare, 0, 10), "a closed fd: False, not an error"
    drop_from_cache(fd, CACHED_PREFIX_BYTES)
    assert _pagecache.holds(fd, 0, CACHED_PREFIX_BYTES)
    assert not _pagecache.holds(fd, 0, CACHED_PREFIX_BYTES + 1)


async def test_a_cached_range_is_sent_in_the_loop(
    data: tuple[int, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    fd, content = data
    calls = SendfileCalls(monkeypatch)
    stream, peer = stream_pair()
    async with stream, peer:
        for offset, count in ((0, FILE_BYTES), (4097, 2 * FILE_CHUNK_BYTES_MAX + 5), (7, 1)):
            received = await send_and_receive(stream, peer, fd, offset, count)
            assert received == content[offset : offset + count]
    assert calls.in_loop >= 4
    assert calls.off_loop == 0


def paths_taken(order: list[str]) -> list[str]:
    """``order`` with repeats in a row collapsed: ["loop", "thread"] for a range
    whose first pieces went in the loop and the rest in threads."""
    return [path for index, path in enumerate(order) if index == 0 or order[index - 1] != path]


@pytest.mark.parametrize(
    ("dropped_from", "cached_inline", "first_paths"),
    [
        # The thread's read brings later pages in ahead of need (readahead),
        # so later pieces may go in the loop again.
        pytest.param(0, True, ["thread"], id="not-cached"),
        pytest.param(CACHED_PREFIX_BYTES, True, ["loop", "thread"], id="partly-cached"),
        pytest.param(None, False, ["thread"], id="cached-inline-false"),
    ],
)
async def test_pieces_not_cached_or_not_inline_go_to_threads_in_order(
    data: tuple[int, bytes],
    monkeypatch: pytest.MonkeyPatch,
    dropped_from: int | None,
    cached_inline: bool,
    first_paths: list[str],
) -> None:
    fd, content = data
    if dropped_from is not None:
        drop_from_cache(fd, dropped_from)
    calls = SendfileCalls(monkeypatch)
    stream, peer = stream_pair()
    async with stream, peer:
        received = await send_and_receive(
            stream, peer, fd, 0, FILE_BYTES, cached_inline=cached_inline
        )
        assert received == content
    paths = paths_taken(calls.order)
    assert paths[: len(first_paths)] == first_paths
    if not cached_inline:
        assert paths == ["thread"]


async def test_a_slow_reader_makes_the_loop_wait_for_room(
    data: tuple[int, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    fd, content = data
    calls = SendfileCalls(monkeypatch)
    stream, peer = stream_pair()
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER_BYTES)
    peer.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_BUFFER_BYTES)
    received = bytearray()

    async def read_slowly() -> None:
        while len(received) < FILE_BYTES:
            await trio.sleep(0.001)
            data = await peer.receive_some(64 * 1024)
            assert data
            received.extend(data)

    async with stream, peer:
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(read_slowly)
                await send_file_range(stream, fd, 0, FILE_BYTES)
    assert bytes(received) == content
    assert calls.would_block >= 1, "the socket's buffer filled at least once"
    assert calls.off_loop == 0


async def test_a_peer_that_closes_breaks_the_send(data: tuple[int, bytes]) -> None:
    fd, _ = data
    stream, peer = stream_pair()
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER_BYTES)
    async with stream:
        await peer.aclose()
        with trio.fail_after(10), pytest.raises(trio.BrokenResourceError):
            for _ in range(10):  # the first sends may still land in the buffer
                await send_file_range(stream, fd, 0, FILE_BYTES)


async def test_a_send_waiting_for_room_can_be_cancelled(
    data: tuple[int, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The peer reads nothing: part of the range went out in the loop, the rest
    waits for room, and a cancel ends that wait."""
    fd, _ = data
    calls = SendfileCalls(monkeypatch)
    stream, peer = stream_pair()
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER_BYTES)
    async with stream, peer:
        with trio.fail_after(10), trio.move_on_after(0.2) as scope:
            await send_file_range(stream, fd, 0, FILE_BYTES)
        assert scope.cancelled_caught
    assert calls.in_loop >= 1
    assert calls.would_block >= 1


async def test_closing_the_stream_ends_a_send_waiting_for_room(data: tuple[int, bytes]) -> None:
    fd, _ = data
    stream, peer = stream_pair()
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SMALL_BUFFER_BYTES)
    failures: list[BaseException] = []

    async def serve() -> None:
        try:
            await send_file_range(stream, fd, 0, FILE_BYTES)
        except trio.ClosedResourceError as error:
            failures.append(error)

    async with peer:
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(serve)
                await trio.testing.wait_all_tasks_blocked()
                await stream.aclose()
    assert len(failures) == 1


async def test_without_cachestat_every_range_leaves_the_loop(
    data: tuple[int, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kernel without cachestat (ENOSYS) or a sandbox that refuses it: holds()
    answers False from then on, and sends take the other paths."""
    fd, content = data
    cachestat = _pagecache._cachestat()
    assert cachestat is not None
    monkeypatch.setattr(cachestat, "available", True)

    def refused(*arguments: Any) -> int:
        ctypes.set_errno(errno.ENOSYS)
        return -1

    monkeypatch.setattr(cachestat, "_syscall", refused)
    calls = SendfileCalls(monkeypatch)
    assert not _pagecache.holds(fd, 0, 10)
    assert not cachestat.available
    stream, peer = stream_pair()
    async with stream, peer:
        assert await send_and_receive(stream, peer, fd, 0, FILE_BYTES) == content
    assert calls.in_loop == 0

"""Portable backend: buffered writes in the loop, syncs and reads in threads.

A buffered write of a batch lands in the page cache and returns in
microseconds, cheaper than a thread round trip (measured ~5x cheaper than an
io_uring write of 4 KiB on ext4), so writes run inline. fdatasync can take
milliseconds and reads may miss the cache, so they run in worker threads;
threads hold no Trio state, so a sync that the caller stops waiting for can't
corrupt anything, but we still wait for it (uncancellable) so callers learn
its real outcome.

Reads the page cache holds whole are the exception (both backends): they
are read in the loop with preadv2(RWF_NOWAIT), which fails with EAGAIN
rather than wait for the disk, and only the others go to a thread (or the
ring). Measured (docs/uring.md, case d): a cached 4 KiB read costs 6-8 us
of CPU this way, Trio's schedule point included (2 us for the read and its
copy alone), against 138-161 us through a thread and 10-28 through the
ring; a cached 1 MiB read 66 us against about 180 and 103.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import trio

from trioring._constants import CACHED_READ_BYTES_MAX, READ_THREADS_MAX
from trioring.uring._base import Buffer

_IOV_MAX = 1024
#: preadv2's "fail rather than wait for I/O" (Linux 4.14; buffered reads on
#: ext4, XFS and btrfs since about 5.x); 0 where Python does not have it.
_RWF_NOWAIT: int = getattr(os, "RWF_NOWAIT", 0)


class FallbackBackend:
    def __init__(
        self, *, read_threads_max: int = READ_THREADS_MAX, cached_reads_inline: bool = True
    ) -> None:
        #: Whether reads the page cache holds are made in the loop (see the
        #: module docstring); False sends every read off the loop (tests of
        #: that path, and benchmarks of it).
        self._cached_reads_inline = cached_reads_inline and bool(_RWF_NOWAIT)
        self._read_limiter = trio.CapacityLimiter(read_threads_max)
        self._sync_limiter = trio.CapacityLimiter(read_threads_max)
        #: Why this backend runs, for the start-up line (set by open_backend).
        self.selection_reason = ""
        #: What cached reads land in before they are copied out; grown to the
        #: largest such read, at most CACHED_READ_BYTES_MAX.
        self._cached_read_buffer = bytearray()

    @property
    def name(self) -> str:
        return "fallback"

    async def open_tcp_listeners(
        self, port: int, *, host: str | None = None, backlog: int | None = None
    ) -> list[trio.SocketListener]:
        """Trio's own TCP listeners (see FileBackend.open_tcp_listeners)."""
        return list(await trio.open_tcp_listeners(port, host=host, backlog=backlog))

    async def open(self, path: str, flags: int, mode: int = 0o644) -> int:
        return await trio.to_thread.run_sync(os.open, path, flags | os.O_CLOEXEC, mode)

    async def close(self, fd: int) -> None:
        await trio.lowlevel.checkpoint()
        os.close(fd)

    @property
    def writes_inline(self) -> bool:
        return True

    async def pwritev(self, fd: int, buffers: Sequence[Buffer], offset: int) -> int:
        # A schedule point, never a cancel point (see _base.py): the caller
        # has committed to this write.
        await trio.lowlevel.cancel_shielded_checkpoint()
        return write_all(fd, buffers, offset)

    def write_now(self, fd: int, buffers: Sequence[Buffer], offset: int) -> int:
        return write_all(fd, buffers, offset)

    async def pread(self, fd: int, size: int, offset: int) -> bytes:
        await trio.lowlevel.checkpoint_if_cancelled()
        data = self._read_cached(fd, size, offset)
        if data is not None:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return data
        return await trio.to_thread.run_sync(os.pread, fd, size, offset, limiter=self._read_limiter)

    def _read_cached(self, fd: int, size: int, offset: int) -> bytes | None:
        """The ``size`` bytes at ``offset`` if the page cache holds all of them, read
        in the loop; None if not (or unknown): then read off the loop.

        None too for a read that comes back short, whether the rest is not
        cached or the file ends: the off-loop read tells which. Any error
        also gives None, so the off-loop read reports it as before.
        """
        if not self._cached_reads_inline or not 0 < size <= CACHED_READ_BYTES_MAX or offset < 0:
            return None
        buffer = self._cached_read_buffer
        if len(buffer) < size:
            buffer = self._cached_read_buffer = bytearray(size)
        with memoryview(buffer) as view, view[:size] as window:
            try:
                count = os.preadv(fd, (window,), offset, _RWF_NOWAIT)
            except OSError:
                return None  # EAGAIN: not cached; EOPNOTSUPP: a file system without it
            return bytes(window) if count == size else None

    async def fdatasync(self, fd: int) -> None:
        await trio.to_thread.run_sync(os.fdatasync, fd, limiter=self._sync_limiter)

    async def fsync_directory(self, path: str) -> None:
        await trio.to_thread.run_sync(_fsync_directory, path, limiter=self._sync_limiter)

    async def ftruncate(self, fd: int, size: int) -> None:
        await trio.to_thread.run_sync(os.ftruncate, fd, size, limiter=self._sync_limiter)

    async def file_size(self, fd: int) -> int:
        await trio.lowlevel.checkpoint()
        return os.fstat(fd).st_size

    async def rename(self, source: str, destination: str) -> None:
        await trio.to_thread.run_sync(os.replace, source, destination)

    async def unlink(self, path: str) -> None:
        await trio.to_thread.run_sync(os.unlink, path)

    async def make_directory(self, path: str) -> bool:
        return await trio.to_thread.run_sync(_make_directory, path)

    async def list_directory(self, path: str) -> list[str]:
        return await trio.to_thread.run_sync(os.listdir, path)

    async def aclose(self) -> None:
        await trio.lowlevel.checkpoint()


def write_all(fd: int, buffers: Sequence[Buffer], offset: int) -> int:
    """pwritev(2) all of ``buffers`` at ``offset``, continuing short writes; or raise OSError."""
    assert len(buffers) <= _IOV_MAX, "callers bound iovecs per write"
    written = os.pwritev(fd, buffers, offset)
    if written != sum(map(len, buffers)):
        # A short write (e.g. the disk filled part-way); finish or raise.
        views = _advance([memoryview(b) for b in buffers], written)
        while views:
            more = os.pwritev(fd, views, offset + written)
            if more == 0:
                raise OSError(28, "no progress writing to file (disk full?)")
            written += more
            views = _advance(views, more)
    return written


def _advance(views: list[memoryview], count: int) -> list[memoryview]:
    while views and count >= len(views[0]):
        count -= len(views[0])
        views = views[1:]
    if views and count:
        views = [views[0][count:], *views[1:]]
    return views


def _make_directory(path: str) -> bool:
    if os.path.isdir(path):
        return False
    os.makedirs(path, exist_ok=True)
    return True


def _fsync_directory(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

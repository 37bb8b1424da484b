"""Reads the page cache holds are made in the loop (preadv2 with RWF_NOWAIT), on both
backends; the others go to the ring or a thread, with the same results."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import trio
from uring_support import requires_uring

from trioring._constants import CACHED_READ_BYTES_MAX
from trioring.uring import FallbackBackend, FileBackend, UringBackend


@pytest.fixture(
    params=[
        pytest.param(FallbackBackend, id="fallback"),
        pytest.param(UringBackend, id="uring", marks=requires_uring),
    ]
)
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[FileBackend]:
    make: Callable[[], FileBackend] = request.param
    backend = make()
    yield backend
    await backend.aclose()


#: Tries at dropping a file from the page cache, and at a read the cache lacks
#: (see their comments).
MISS_TRIES = 5


def _write_file(path: Path, data: bytes) -> int:
    """``data`` written, synced and dropped from the page cache; a read-only fd on it."""
    with open(path, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    fd = os.open(path, os.O_RDONLY)
    _drop_from_cache(fd)
    return fd


def _drop_from_cache(fd: int) -> None:
    # The kernel may keep a page it is still handling (just written back, in
    # another CPU's batch): a few tries.
    for _ in range(MISS_TRIES):
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        try:
            os.preadv(fd, [bytearray(1)], 0, os.RWF_NOWAIT)
        except BlockingIOError:
            return
        except OSError as error:
            pytest.skip(f"this file system has no RWF_NOWAIT reads: {error}")
        time.sleep(0.01)
    pytest.skip("the page cache kept the file (POSIX_FADV_DONTNEED ignored)")


class _OffLoopReads:
    """Counts the reads that leave the loop: a thread's os.pread, or a ring request."""

    def __init__(self, backend: FileBackend, monkeypatch: pytest.MonkeyPatch) -> None:
        self.backend = backend
        self.thread_reads = 0
        real_pread = os.pread

        def counting_pread(*arguments: Any) -> bytes:
            self.thread_reads += 1
            return real_pread(*arguments)

        monkeypatch.setattr(os, "pread", counting_pread)

    def count(self) -> int:
        ring = 0
        if isinstance(self.backend, UringBackend):
            ring = self.backend.statistics().get("completions", 0)
        return self.thread_reads + ring


async def test_cached_reads_stay_in_the_loop_and_misses_leave_it(
    backend: FileBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(3 << 20)
    fd = _write_file(tmp_path / "segment", data)
    off_loop = _OffLoopReads(backend, monkeypatch)
    try:
        # Not cached: off the loop, the same bytes. The in-loop attempt (RWF_NOWAIT)
        # starts the kernel's readahead, and a fast disk can finish it before
        # that attempt looks at the pages, which then needs no wait: a few tries.
        for _ in range(MISS_TRIES):
            before = off_loop.count()
            assert await backend.pread(fd, 1 << 20, 1 << 20) == data[1 << 20 : 2 << 20]
            if off_loop.count() > before:
                break
            _drop_from_cache(fd)
        else:
            raise AssertionError(f"a page-cache miss stayed in the loop {MISS_TRIES} times")
        # Now cached (that read, and the kernel's readahead): in the loop, by
        # many tasks at once (they share one buffer between awaits).
        before = off_loop.count()
        reads = [((1 << 20) + index * 4096, 4096 + index) for index in range(64)]
        reads.append((1 << 20, 1 << 20))
        results: dict[tuple[int, int], bytes] = {}

        async def read(position: int, size: int) -> None:
            results[position, size] = await backend.pread(fd, size, position)

        async with trio.open_nursery() as nursery:
            for position, size in reads:
                nursery.start_soon(read, position, size)
        assert off_loop.count() == before, "cached reads left the loop"
        for (position, size), result in results.items():
            assert result == data[position : position + size]
        assert len(results) == len(reads)
        # Past the end: short, told by the off-loop read; empty at the end.
        assert await backend.pread(fd, 100, len(data) - 10) == data[-10:]
        assert await backend.pread(fd, 100, len(data)) == b""
        assert await backend.pread(fd, 0, 0) == b""
    finally:
        os.close(fd)


async def test_large_reads_and_failures_take_the_off_loop_path(
    backend: FileBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(CACHED_READ_BYTES_MAX + 4096)
    fd = _write_file(tmp_path / "large", data)
    try:
        assert await backend.pread(fd, len(data), 0) == data  # now cached
        off_loop = _OffLoopReads(backend, monkeypatch)
        before = off_loop.count()
        assert await backend.pread(fd, len(data), 0) == data
        assert off_loop.count() > before, "larger than CACHED_READ_BYTES_MAX: off the loop"
        assert await backend.pread(fd, 4096, 0) == data[:4096]
        assert off_loop.count() == before + 1
    finally:
        os.close(fd)
    # A closed descriptor: the in-loop attempt fails, the off-loop read reports it.
    with pytest.raises(OSError):
        await backend.pread(fd, 10, 0)


async def test_a_cancelled_caller_reads_nothing(backend: FileBackend, tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"cached")
    fd = os.open(path, os.O_RDONLY)
    try:
        with trio.CancelScope() as scope:
            scope.cancel()
            await backend.pread(fd, 6, 0)
            raise AssertionError("pread passed a cancel point")
        assert await backend.pread(fd, 6, 0) == b"cached"
    finally:
        os.close(fd)

"""The io_uring backend's file operations, submission batching, a full
submission queue and completion-queue overflow."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
import trio.testing
from uring_support import close_all, requires_uring

from trioring._constants import READ_BUFFERS_KEPT_BYTES_MAX
from trioring.uring import UringBackend, _ring
from trioring.uring._uring import _advance

pytestmark = requires_uring


@pytest.fixture
async def backend() -> AsyncIterator[UringBackend]:
    backend = UringBackend(write_on_ring=True, cached_reads_inline=False)
    yield backend
    await backend.aclose()


async def open_file(backend: UringBackend, path: Path) -> int:
    return await backend.open(str(path), os.O_RDWR | os.O_CREAT)


async def test_write_read_sync_round_trip(backend: UringBackend, tmp_path: Path) -> None:
    fd = await open_file(backend, tmp_path / "f")
    parts = [b"hello ", bytearray(b"io"), memoryview(b"_uring world")[3:], b""]
    assert await backend.pwritev(fd, parts, 0) == 17
    await backend.fdatasync(fd)
    assert await backend.pread(fd, 100, 0) == b"hello ioing world"
    assert await backend.pread(fd, 5, 6) == b"ioing"
    assert await backend.pread(fd, 10, 100) == b"", "past the end: empty"
    assert await backend.pread(fd, 0, 0) == b""
    assert await backend.pwritev(fd, [b"X"], 1) == 1
    assert await backend.file_size(fd) == 17
    assert await backend.pread(fd, 3, 0) == b"hXl"
    await backend.close(fd)
    assert (tmp_path / "f").read_bytes() == b"hXllo ioing world"


async def test_large_multi_buffer_write(backend: UringBackend, tmp_path: Path) -> None:
    fd = await open_file(backend, tmp_path / "f")
    buffers = [bytes([i]) * (i * 997) for i in range(1, 200)]
    expected = b"".join(buffers)
    assert await backend.pwritev(fd, buffers, 10) == len(expected)
    assert await backend.pread(fd, len(expected) + 100, 10) == expected
    await backend.close(fd)


async def test_write_and_fdatasync(backend: UringBackend, tmp_path: Path) -> None:
    fd = await open_file(backend, tmp_path / "f")
    assert await backend.write_and_fdatasync(fd, [b"abc", b"def"], 0) == 6
    assert await backend.write_and_fdatasync(fd, [b"gh"], 6) == 2
    assert await backend.write_and_fdatasync(fd, [], 8) == 0  # just the sync
    await backend.close(fd)
    assert (tmp_path / "f").read_bytes() == b"abcdefgh"


async def test_errors_are_oserrors_with_errno(backend: UringBackend) -> None:
    fd = 1_000_000  # never open (a just-closed number may be reused by the ring itself)
    with pytest.raises(OSError) as info:
        await backend.pread(fd, 10, 0)
    assert info.value.errno == errno.EBADF
    with pytest.raises(OSError) as info:
        await backend.pwritev(fd, [b"x"], 0)
    assert info.value.errno == errno.EBADF
    with pytest.raises(OSError) as info:
        await backend.fdatasync(fd)
    assert info.value.errno == errno.EBADF
    with pytest.raises(OSError) as info:
        await backend.pread(0, 10, -1)
    assert info.value.errno == errno.EINVAL
    read_end, write_end = os.pipe()
    try:
        # A link breaks on the failed sync: the write lands, the error is the sync's.
        with pytest.raises(OSError) as info:
            await backend.write_and_fdatasync(write_end, [b"x"], 0)
        assert info.value.errno == errno.EINVAL
        assert os.read(read_end, 10) == b"x"
    finally:
        close_all(read_end, write_end)


#: Runs in a child process: RLIMIT_FSIZE applies to the whole process, and
#: in this one it would also fail pytest's own writes to a log file that is
#: already past the limit (CI's is).
SHORT_WRITE_SCRIPT = """
import errno, os, resource, signal, sys
import trio
from trioring.uring import UringBackend

LIMIT = 4096
path, sync = sys.argv[1], sys.argv[2] == "sync"

async def main():
    backend = UringBackend(write_on_ring=True, cached_reads_inline=False)
    fd = await backend.open(path, os.O_RDWR | os.O_CREAT)
    data = [b"a" * 3000, b"b" * 3000]
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, resource.RLIM_INFINITY))
    try:
        if sync:
            await backend.write_and_fdatasync(fd, data, 0)
        else:
            await backend.pwritev(fd, data, 0)
    except OSError as error:
        outcome = errno.errorcode[error.errno]
    else:
        outcome = "no error"
    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY,) * 2)
    await backend.close(fd)
    await backend.aclose()
    print(outcome)

trio.run(main)
"""


@pytest.mark.parametrize("sync", [False, True])
def test_short_write_is_continued_until_it_fails(tmp_path: Path, sync: bool) -> None:
    """RLIMIT_FSIZE at 4 KiB: a write across it comes back short, the next fails EFBIG."""
    path = tmp_path / "f"
    completed = subprocess.run(
        [sys.executable, "-c", SHORT_WRITE_SCRIPT, str(path), "sync" if sync else "write"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "EFBIG"
    assert path.read_bytes() == (b"a" * 3000 + b"b" * 3000)[:4096]


def test_advance_over_pieces() -> None:
    pieces = [(0, 3), (100, 5), (200, 2)]
    assert _advance(pieces, 0) == pieces
    assert _advance(pieces, 3) == [(100, 5), (200, 2)]
    assert _advance(pieces, 4) == [(101, 4), (200, 2)]
    assert _advance(pieces, 9) == [(201, 1)]
    assert _advance(pieces, 10) == []


async def test_large_reads_reuse_bounded_buffers(backend: UringBackend, tmp_path: Path) -> None:
    """Reads of 64 KiB and more read into buffers kept for the next read (fresh
    ones cost page faults): concurrent reads never share one, every read gets
    its own bytes, and what is kept stays bounded."""
    data = os.urandom(3 << 20)
    fd = await open_file(backend, tmp_path / "f")
    await backend.pwritev(fd, [data], 0)
    sizes = [64 << 10, 100_000, 1 << 20, (1 << 20) + 1, 3 << 20]
    results: dict[tuple[int, int], bytes] = {}

    async def read(size: int, offset: int) -> None:
        results[size, offset] = await backend.pread(fd, size, offset)

    with trio.fail_after(20):
        for round_ in range(3):
            async with trio.open_nursery() as nursery:
                for index, size in enumerate(sizes * 3):
                    nursery.start_soon(read, size, (index * 4099 + round_) % len(data))
            for (size, offset), got in results.items():
                assert got == data[offset : offset + size]
            results.clear()
            kept = backend.statistics()["read_buffers_kept_bytes"]
            assert 0 < kept <= READ_BUFFERS_KEPT_BYTES_MAX
        # A failed read gives its buffer back too, and raises.
        directory = os.open(tmp_path, os.O_RDONLY)
        try:
            with pytest.raises(OSError) as info:
                await backend.pread(directory, 1 << 20, 0)
            assert info.value.errno == errno.EISDIR
        finally:
            os.close(directory)
    await backend.close(fd)


async def test_one_submit_per_scheduler_batch(backend: UringBackend, tmp_path: Path) -> None:
    fd = await open_file(backend, tmp_path / "f")
    await backend.pwritev(fd, [bytes(range(256)) * 16], 0)
    before = backend.statistics()["submit_calls"]
    results: dict[int, bytes] = {}

    async def read(position: int) -> None:
        results[position] = await backend.pread(fd, 4, position)

    async with trio.open_nursery() as nursery:
        for position in range(100):
            nursery.start_soon(read, position)
    assert results == {p: bytes(range(p, p + 4)) for p in range(100)}
    # All 100 were queued in one scheduler batch: one io_uring_enter took them.
    assert backend.statistics()["submit_calls"] - before == 1
    await backend.close(fd)


class _IoWaitCounter(trio.abc.Instrument):
    def __init__(self) -> None:
        self.count = 0

    def before_io_wait(self, timeout: float) -> None:
        self.count += 1


async def test_a_read_needs_one_scheduler_pass(backend: UringBackend, tmp_path: Path) -> None:
    """The run loop hooks submit and reap: a page-cache read wakes its task in
    the batch after the one that asked (tasks alone took a batch more)."""
    fd = await open_file(backend, tmp_path / "f")
    await backend.pwritev(fd, [b"data"], 0)
    await backend.pread(fd, 4, 0)
    assert backend.statistics()["loop_hooks"] == 1
    assert backend.statistics()["cooperative_task_run"] == 1, "Linux 5.19 or newer here"
    assert await _io_waits_for_reads(backend, fd, 10) == 10
    await backend.close(fd)


async def _io_waits_for_reads(backend: UringBackend, fd: int, count: int) -> int:
    """The run loop's I/O waits while ``count`` reads of b"data" are made one by one."""
    counter = _IoWaitCounter()
    trio.lowlevel.add_instrument(counter)
    try:
        for _ in range(count):
            assert await backend.pread(fd, 4, 0) == b"data"
    finally:
        trio.lowlevel.remove_instrument(counter)
    return counter.count


@pytest.mark.parametrize("hook", ["_before_io_wait", "_after_io_wait"])
async def test_the_tasks_take_over_when_the_hooks_fail(
    backend: UringBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hook: str
) -> None:
    fd = await open_file(backend, tmp_path / "f")
    await backend.pwritev(fd, [b"data"], 0)
    ring = backend.socket_ring()
    assert ring is not None
    calls = 0

    def fail_once(*arguments: float) -> None:
        nonlocal calls
        calls += 1
        if hook == "_before_io_wait":
            # As if it failed between taking the submit request and submitting.
            ring._submit_requested = False
        raise RuntimeError("a bug in the hook")

    monkeypatch.setattr(ring, hook, fail_once)
    with trio.fail_after(10):
        # Trio logs the hook's exception and removes the instrument; the
        # submitter and reaper tasks serve the read, and what follows.
        assert await backend.pread(fd, 4, 0) == b"data"
        assert calls == 1
        assert backend.statistics()["loop_hooks"] == 0
        await trio.sleep(0.05)  # an idle loop, then a read
        assert await backend.pread(fd, 4, 0) == b"data"
        results = await _read_concurrently(backend, fd, 20)
    assert results == [b"data"[position:] for position in range(20)]
    await backend.close(fd)


async def _read_concurrently(backend: UringBackend, fd: int, count: int) -> list[bytes]:
    results: list[bytes] = [b""] * count

    async def read(position: int) -> None:
        results[position] = await backend.pread(fd, 4, position)

    async with trio.open_nursery() as nursery:
        for position in range(count):
            nursery.start_soon(read, position)
    return results


async def test_full_submission_queue_loses_nothing(tmp_path: Path) -> None:
    backend = UringBackend(write_on_ring=True, cached_reads_inline=False, ring_entries=4)
    fd = await open_file(backend, tmp_path / "f")
    data = os.urandom(4096)
    await backend.pwritev(fd, [data], 0)
    results: dict[int, bytes] = {}

    async def read(position: int) -> None:
        results[position] = await backend.pread(fd, 16, position)

    async with trio.open_nursery() as nursery:
        for position in range(200):
            nursery.start_soon(read, position)
    assert results == {p: data[p : p + 16] for p in range(200)}
    statistics = backend.statistics()
    assert statistics["submission_entries"] == 4
    assert statistics["submit_calls"] >= 200 // 4
    await backend.close(fd)
    await backend.aclose()


async def test_completion_queue_overflow_loses_nothing() -> None:
    """200 reads complete while the ring's 8-entry completion queue is not drained."""
    backend = UringBackend(
        write_on_ring=True, cached_reads_inline=False, ring_entries=4, completion_entries=8
    )
    pipes = [os.pipe() for _ in range(200)]
    results: dict[int, bytes] = {}

    async def read(index: int) -> None:
        results[index] = await backend.pread(pipes[index][0], 16, 0)

    try:
        async with trio.open_nursery() as nursery:
            for index in range(len(pipes)):
                nursery.start_soon(read, index)
            # Every read is submitted and parked in the kernel.
            await trio.testing.wait_all_tasks_blocked(cushion=0.01)
            assert backend.statistics()["requests_in_flight"] == len(pipes)
            # No checkpoint while all 200 complete: the completion queue overflows.
            for index, (_, write_end) in enumerate(pipes):
                os.write(write_end, index.to_bytes(2, "big"))
        assert results == {i: i.to_bytes(2, "big") for i in range(len(pipes))}
        statistics = backend.statistics()
        assert statistics["completion_entries"] == 8
        assert statistics["overflow_flushes"] > 0, "the overflow path ran"
    finally:
        close_all(*(fd for pipe in pipes for fd in pipe))
        await backend.aclose()


async def test_operations_in_flight_are_bounded(tmp_path: Path) -> None:
    backend = UringBackend(
        write_on_ring=True, cached_reads_inline=False, operations_in_flight_max=3
    )
    read_end, write_end = os.pipe()
    received: list[bytes] = []

    async def read() -> None:
        received.append(await backend.pread(read_end, 1, 0))

    try:
        async with trio.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(read)
            await trio.sleep(0.05)
            assert backend.statistics()["operations_in_flight"] == 3
            os.write(write_end, b"0123456789")
        assert sorted(received) == [bytes([b]) for b in b"0123456789"]
    finally:
        close_all(read_end, write_end)
        await backend.aclose()


async def test_ring_is_set_up_again_after_aclose(tmp_path: Path) -> None:
    backend = UringBackend(write_on_ring=True, cached_reads_inline=False)
    fd = await open_file(backend, tmp_path / "f")
    await backend.pwritev(fd, [b"one"], 0)
    await backend.aclose()
    assert backend.statistics() == {}
    assert await backend.pread(fd, 3, 0) == b"one"
    await backend.close(fd)
    await backend.aclose()


class _FailingSubmitLibrary:
    """The cffi library, except that the next submits fail with the given errnos."""

    def __init__(self, real: object, errors: list[int]) -> None:
        self._real = real
        self.errors = errors

    def __getattr__(self, name: str) -> object:
        return getattr(self._real, name)

    def trioring_submit(self, handle: object) -> int:
        if self.errors:
            return -self.errors.pop(0)
        return self._real.trioring_submit(handle)  # type: ignore[attr-defined,no-any-return]


@pytest.mark.parametrize("idle", [False, True], ids=["busy-loop", "idle-loop"])
@pytest.mark.parametrize(
    ("errors", "raised"),
    [
        ([errno.EAGAIN, errno.EBUSY], None),  # transient: retried
        ([errno.EINVAL], errno.EINVAL),  # not transient: the queued requests fail
        ([errno.EAGAIN] * 4, errno.EAGAIN),  # transient, but past SUBMIT_FAILURES_MAX
    ],
)
async def test_submit_failures(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    errors: list[int],
    raised: int | None,
    idle: bool,
) -> None:
    """A refused submit is retried or fails its requests, and the ring goes on
    submitting from the run loop's hooks afterwards. ``idle``: the loop has
    nothing else to run when the submit is refused (it is about to sleep),
    so whatever wakes the waiting task must also wake the loop."""
    backend = UringBackend(write_on_ring=True, cached_reads_inline=False)
    fd = await open_file(backend, tmp_path / "f")
    await backend.pwritev(fd, [b"data"], 0)
    library = _FailingSubmitLibrary(_ring.lib, list(errors))
    monkeypatch.setattr(_ring, "lib", library)
    monkeypatch.setattr(_ring, "SUBMIT_FAILURES_MAX", 3)
    try:
        with trio.fail_after(10):
            if idle:
                await trio.sleep(0.05)
            if raised is None:
                assert await backend.pread(fd, 4, 0) == b"data"
            else:
                with pytest.raises(OSError) as info:
                    await backend.pread(fd, 4, 0)
                assert info.value.errno == raised
            assert library.errors == []
            assert backend.statistics()["operations_in_flight"] == 0
            assert await backend.pread(fd, 4, 0) == b"data", "the ring still works"
            # ... and submits from the hooks again: one I/O wait per read.
            assert await _io_waits_for_reads(backend, fd, 10) == 10
    finally:
        await backend.close(fd)
        await backend.aclose()

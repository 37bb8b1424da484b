"""Teardown: aclose and the end of the Trio run cancel and drain every
request in flight, then close the ring; no descriptor leaks, nothing hangs."""

from __future__ import annotations

import os

import pytest
import trio
from uring_support import close_all, open_fds, requires_uring

from trioring.uring import UringBackend

pytestmark = requires_uring


def test_aclose_with_reads_in_flight_leaks_no_fds() -> None:
    failures: list[BaseException] = []

    async def main() -> None:
        backend = UringBackend(write_on_ring=True, cached_reads_inline=False)
        pipes = [os.pipe() for _ in range(20)]

        async def read(read_end: int) -> None:
            try:
                await backend.pread(read_end, 10, 0)
            except trio.ClosedResourceError as error:
                failures.append(error)

        try:
            with trio.fail_after(5):
                async with trio.open_nursery() as nursery:
                    for read_end, _ in pipes:
                        nursery.start_soon(read, read_end)
                    await trio.sleep(0.02)
                    assert backend.statistics()["operations_in_flight"] == len(pipes)
                    await backend.aclose()
                    assert backend.statistics() == {}
        finally:
            close_all(*(fd for pipe in pipes for fd in pipe))

    before = open_fds()
    trio.run(main)
    assert open_fds() == before
    assert len(failures) == 20, "every reader learnt that the ring closed"


def test_end_of_run_tears_the_ring_down() -> None:
    """No aclose: the ring's system task closes it when the run ends."""

    async def main() -> None:
        backend = UringBackend(write_on_ring=True, cached_reads_inline=False)
        read_end, write_end = os.pipe()
        try:
            os.write(write_end, b"x")
            assert await backend.pread(read_end, 1, 0) == b"x"
            assert backend.statistics()["operations_in_flight"] == 0
        finally:
            close_all(read_end, write_end)

    before = open_fds()
    trio.run(main)
    assert open_fds() == before


def test_end_of_run_with_a_system_task_read_in_flight() -> None:
    """A read still waiting when the run ends is cancelled and drained."""
    outcome: list[BaseException] = []

    async def reader(backend: UringBackend, read_end: int) -> None:
        try:
            await backend.pread(read_end, 10, 0)
        except BaseException as error:  # Cancelled or ClosedResourceError
            outcome.append(error)
            raise

    async def main() -> None:
        backend = UringBackend(write_on_ring=True, cached_reads_inline=False)
        read_end, write_end = os.pipe()
        pipe.extend((read_end, write_end))
        trio.lowlevel.spawn_system_task(reader, backend, read_end)
        await trio.sleep(0.02)
        assert backend.statistics()["operations_in_flight"] == 1

    pipe: list[int] = []
    before = open_fds()
    trio.run(main)
    close_all(*pipe)
    assert open_fds() == before
    assert len(outcome) == 1


async def test_aclose_waits_for_a_write_in_flight() -> None:
    """Teardown does not cancel writes: it refuses new requests, lets the write
    finish (every round of it: a pipe takes 1 MiB in short rounds), then closes."""
    backend = UringBackend(write_on_ring=True, cached_reads_inline=False)
    read_end, write_end = os.pipe()
    data = os.urandom(1 << 20)
    written: list[int] = []
    closed = trio.Event()

    async def write() -> None:
        written.append(await backend.pwritev(write_end, [data], 0))

    async def close() -> None:
        await backend.aclose()
        closed.set()

    def drain() -> bytes:
        chunks = []
        remaining = len(data)
        while remaining:
            chunk = os.read(read_end, remaining)
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)

    try:
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(write)
                await trio.sleep(0.02)
                nursery.start_soon(close)
                await trio.sleep(0.02)
                assert not closed.is_set(), "teardown waits for the write"
                with pytest.raises(trio.ClosedResourceError):
                    await backend.pread(read_end, 1, 0)
                assert await trio.to_thread.run_sync(drain) == data
        assert closed.is_set()
        assert written == [len(data)]
    finally:
        close_all(read_end, write_end)

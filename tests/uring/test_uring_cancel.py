"""Cancellation of ring requests: a cancelled read either returns its data
(it completed first) or raises Cancelled having read nothing; writes and
syncs run to completion whatever happens to their caller."""

from __future__ import annotations

import os
import random
from collections import Counter
from pathlib import Path

import pytest
import trio
import trio.testing
from uring_support import cancel_after, close_all, pause_randomly, requires_uring

from trioring.uring import UringBackend

pytestmark = requires_uring

#: Messages a race test sends at least, and at most while waiting to see every
#: outcome (how the races fall depends on the machine's timing: on a busy one
#: the writer can run ahead, so that reads find data and nothing is cancelled).
RACES = 400
RACES_MAX = 4000


async def test_cancelled_blocked_read_raises_and_reads_nothing() -> None:
    backend = UringBackend(write_on_ring=True, cached_reads_inline=False)
    read_end, write_end = os.pipe()
    try:
        with trio.move_on_after(0.02) as scope:
            await backend.pread(read_end, 10, 0)
        assert scope.cancelled_caught
        assert backend.statistics()["operations_in_flight"] == 0
        os.write(write_end, b"after")
        assert await backend.pread(read_end, 10, 0) == b"after", "the cancelled read took nothing"
    finally:
        close_all(read_end, write_end)
        await backend.aclose()


async def test_read_completed_despite_cancel_returns_its_data() -> None:
    """A read that completed while its cancel was on the way returns its data.

    The read waits on an empty pipe; in one later batch a task writes to the
    pipe (the kernel completes the read before the write returns) and then
    cancels the reader, whose abort queues an async-cancel. The cancel finds
    nothing left to cancel, the completion is reaped, and the bytes come back.
    """
    backend = UringBackend(write_on_ring=True, cached_reads_inline=False)
    read_end, write_end = os.pipe()
    try:
        await backend.pread(read_end, 0, 0)  # the ring is up
        for _ in range(50):
            returned = b""
            with trio.CancelScope() as scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_write_then_cancel, write_end, scope)
                    returned = await backend.pread(read_end, 10, 0)
            assert returned == b"ready"
            assert scope.cancel_called
        assert backend.statistics()["cancel_requests"] >= 50, "the abort path ran"
    finally:
        close_all(read_end, write_end)
        await backend.aclose()


async def _write_then_cancel(write_end: int, scope: trio.CancelScope) -> None:
    # Started in the reader's batch, this runs once its read is submitted.
    os.write(write_end, b"ready")
    scope.cancel()


async def _cancel_now(scope: trio.CancelScope) -> None:
    scope.cancel()


@pytest.mark.parametrize("seed", [1, 2])
async def test_read_cancel_races_lose_and_duplicate_nothing(seed: int) -> None:
    """Hundreds of reads, each cancelled at a random moment while a writer feeds
    the pipe: every byte written is read exactly once, in order. The races go on
    (up to RACES_MAX messages) until each outcome has happened."""
    chooser = random.Random(seed)
    backend = UringBackend(write_on_ring=True, cached_reads_inline=False)
    read_end, write_end = os.pipe()
    sent = bytearray()
    received = bytearray()
    outcomes: Counter[str] = Counter()
    enough = trio.Event()  # every outcome seen, RACES messages read: stop writing
    writing_done = trio.Event()

    async def write_messages() -> None:
        for index in range(RACES_MAX):
            if enough.is_set():
                break
            message = index.to_bytes(4, "big")
            os.write(write_end, message)
            sent.extend(message)
            await pause_randomly(chooser)
        writing_done.set()

    def every_outcome_seen() -> bool:
        return (
            len(received) >= 4 * RACES
            and outcomes["cancelled"] > 0
            and outcomes["completed"] > 0
            and outcomes["completed despite cancel"] > 0
            # Some reads completed although their async-cancel had been queued.
            and backend.statistics()["cancel_requests"] > outcomes["cancelled"]
        )

    try:
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(write_messages)
                while True:
                    if enough.is_set() or len(sent) >= 4 * RACES_MAX:
                        # No read may wait for a write that will not come.
                        await writing_done.wait()
                        if len(received) == len(sent):
                            break
                    data = None
                    cancelled_before_return = False
                    with trio.CancelScope() as scope:
                        async with trio.open_nursery() as canceller:
                            delay_s = chooser.choice([0, chooser.random() * 0.0003])
                            canceller.start_soon(cancel_after, scope, chooser.randrange(4), delay_s)
                            data = await backend.pread(read_end, 4 * chooser.randrange(1, 4), 0)
                            received.extend(data)
                            cancelled_before_return = scope.cancel_called
                            scope.cancel()  # done: stop the canceller
                    if data is None:
                        outcomes["cancelled"] += 1
                    elif cancelled_before_return:
                        outcomes["completed despite cancel"] += 1
                    else:
                        outcomes["completed"] += 1
                    if every_outcome_seen():
                        enough.set()
        assert received == sent
        assert every_outcome_seen(), f"not every race outcome happened: {dict(outcomes)}"
        assert backend.statistics()["operations_in_flight"] == 0
    finally:
        close_all(read_end, write_end)
        await backend.aclose()


async def test_write_is_not_cancelled_mid_flight() -> None:
    """A write blocked on a full pipe finishes although its caller was cancelled."""
    backend = UringBackend(write_on_ring=True, cached_reads_inline=False)
    read_end, write_end = os.pipe()
    data = os.urandom(1 << 20)  # far more than the pipe holds
    written = 0

    async def write() -> None:
        nonlocal written
        with trio.move_on_after(0.01):
            written = await backend.pwritev(write_end, [data], 0)

    def drain() -> bytes:
        chunks = []
        remaining = len(data)
        while remaining:
            chunk = os.read(read_end, remaining)
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(write)
            await trio.sleep(0.05)  # the cancel has been delivered; the write still waits
            assert written == 0
            assert await trio.to_thread.run_sync(drain) == data
        assert written == len(data)
    finally:
        close_all(read_end, write_end)
        await backend.aclose()


async def test_sync_is_not_cancelled(tmp_path: Path) -> None:
    backend = UringBackend(write_on_ring=True, cached_reads_inline=False)
    fd = await backend.open(str(tmp_path / "f"), os.O_RDWR | os.O_CREAT)
    try:
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_cancel_now, scope)
                await backend.write_and_fdatasync(fd, [b"durable"], 0)
                finished = True
        assert finished, "the linked write and sync reported their outcome"
        assert scope.cancel_called
    finally:
        await backend.close(fd)
        await backend.aclose()
    assert (tmp_path / "f").read_bytes() == b"durable"


async def test_checkpoints_even_when_complete() -> None:
    backend = UringBackend(write_on_ring=True, cached_reads_inline=False)
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, b"x")
        with trio.testing.assert_checkpoints():
            assert await backend.pread(read_end, 1, 0) == b"x"
        # A write is a schedule point but never a cancel point (_base.py):
        # even an empty one in a cancelled scope completes.
        with trio.CancelScope() as scope:
            scope.cancel()
            assert await backend.pwritev(write_end, [], 0) == 0
            assert await backend.pwritev(write_end, [b"y"], 0) == 1
        assert os.read(read_end, 2) == b"y"
    finally:
        close_all(read_end, write_end)
        await backend.aclose()

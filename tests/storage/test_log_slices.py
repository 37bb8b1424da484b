"""PartitionLog.read_sliced: the zero-copy read gives what read gives, as file ranges.

Every test runs over both backends (see conftest.py).
"""

from __future__ import annotations

import random

import pytest
import trio
from storage_support import (
    FakeClock,
    TestBackend,
    batch,
    exists,
    log_config,
    read_file,
    segment_files,
)

from trioring.errors import CorruptLogError
from trioring.protocol.records import iterate_batches
from trioring.storage.log import PartitionLog
from trioring.storage.slices import LogSlice

#: Budgets around the index interval (500 bytes), batch sizes and segment sizes.
BUDGETS = [0, 1, 61, 499, 500, 501, 1500, 4000, 9000, 30_000, 1 << 20]


@pytest.fixture
def backend() -> TestBackend:
    return TestBackend()


async def open_log(directory: str, backend: TestBackend, clock: FakeClock) -> PartitionLog:
    return await PartitionLog.open(directory, log_config(segment_bytes=12_000), backend, clock)


async def fill(log: PartitionLog, clock: FakeClock, seed: int, batches: int) -> None:
    """Batches of 1-12 records of 10-900 bytes: many per index entry, and some
    larger than an index interval, over several segments."""
    rng = random.Random(seed)
    for _ in range(batches):
        values = [rng.randbytes(rng.randint(10, 900)) for _ in range(rng.randint(1, 12))]
        await log.append(batch(values, now_ms=clock.now_ms()))


async def as_bytes(data: bytes | LogSlice) -> bytes:
    if isinstance(data, bytes):
        return data
    try:
        return await data.read()
    finally:
        await data.release()


def next_offset_after(data: bytes, offset: int) -> int:
    for _, header in iterate_batches(data):
        offset = header.next_offset
    return offset


@pytest.mark.parametrize("first_batch_may_exceed", [True, False])
async def test_a_sliced_read_gives_the_bytes_a_read_gives(
    directory: str, backend: TestBackend, clock: FakeClock, first_batch_may_exceed: bool
) -> None:
    log = await open_log(directory, backend, clock)
    await fill(log, clock, seed=7, batches=120)
    assert log.segment_count >= 4
    slices = 0
    for offset in range(0, log.log_end_offset + 1, 3):
        for budget in BUDGETS:
            expected = await log.read(offset, budget, first_batch_may_exceed=first_batch_may_exceed)
            sliced = await log.read_sliced(
                offset, budget, first_batch_may_exceed=first_batch_may_exceed, bytes_min=0
            )
            if isinstance(sliced.data, LogSlice):
                slices += 1
                assert sliced.data.next_offset == next_offset_after(expected.data, offset)
                assert len(sliced.data) == len(expected.data)
            else:
                assert expected.data == b""
            assert await as_bytes(sliced.data) == expected.data, (offset, budget)
            assert sliced.high_watermark == expected.high_watermark
    assert slices > 100
    # Every slice was released: only the log's own files are open.
    assert len(backend.open_paths) == 2 * log.segment_count


async def test_small_data_comes_back_as_checked_bytes(
    directory: str, backend: TestBackend, clock: FakeClock
) -> None:
    log = await open_log(directory, backend, clock)
    await fill(log, clock, seed=8, batches=40)
    small = await log.read_sliced(0, 3000, bytes_min=10_000)
    assert isinstance(small.data, bytes)
    assert small.data == (await log.read(0, 3000)).data
    large = await log.read_sliced(0, 1 << 20, bytes_min=10_000)
    assert isinstance(large.data, LogSlice)
    await large.data.release()
    await large.data.release()  # idempotent


async def test_a_slice_keeps_a_segment_deleted_meanwhile_until_released(
    directory: str, backend: TestBackend, clock: FakeClock
) -> None:
    log = await open_log(directory, backend, clock)
    await fill(log, clock, seed=9, batches=60)
    expected = (await log.read(0, 1 << 20)).data
    sliced = await log.read_sliced(0, 1 << 20, bytes_min=0)
    assert isinstance(sliced.data, LogSlice)
    first_segment = segment_files(directory)[0][1]
    # DeleteRecords past the first segments: their files are unlinked now...
    await log.delete_records_before(log.log_end_offset - 1)
    await log.delete_segments_before(log.log_start_offset, reason="test")
    assert not exists(first_segment)
    assert first_segment in backend.open_paths  # ...but stay open for the slice
    assert await sliced.data.read() == expected
    await sliced.data.release()
    assert first_segment not in backend.open_paths


async def test_a_slice_stops_at_a_damaged_batch_header_it_reads(
    directory: str, backend: TestBackend, clock: FakeClock
) -> None:
    """A sliced read reads the headers at its start and end only (the rest never
    passes through Python): damage met there ends the slice as it ends a read,
    and a read that starts at the damage fails. Damage between them reaches
    the client, whose CRC check reports it, as with Kafka's sendfile path
    (docs/uring.md)."""
    log = await open_log(directory, backend, clock)
    for index in range(6):
        await log.append(batch([bytes([index]) * 700] * 3, now_ms=clock.now_ms()))
    whole = (await log.read(0, 1 << 20)).data
    positions = [position for position, _ in iterate_batches(whole)]
    await log.aclose()
    path = segment_files(directory)[0][1]
    damage = bytearray(read_file(path))
    damage[positions[3] + 8 : positions[3] + 12] = b"\xff\xff\xff\x7f"  # batch 3's length
    await trio.Path(path).write_bytes(bytes(damage))
    log = await open_log(directory, TestBackend(), clock)
    # The budget ends inside batch 3: the end's scan meets its header.
    sliced = await log.read_sliced(0, positions[3] + 100, bytes_min=0)
    assert await as_bytes(sliced.data) == whole[: positions[3]]
    with pytest.raises(CorruptLogError):
        await log.read_sliced(9, 1 << 20, bytes_min=0)
    await log.aclose()

"""Focused tests of PartitionLog: offsets, index, reads, rolls, retention,
recovery, group commit and disk faults."""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import struct
import tempfile
from collections.abc import Sequence

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st
from storage_support import (
    FakeClock,
    Gate,
    TestBackend,
    batch,
    exists,
    file_batches,
    file_size,
    log_config,
    read_file,
    segment_files,
)

import trioring.storage.log as log_module
from trioring.errors import (
    BrokerClosedError,
    InvalidArgumentError,
    OffsetOutOfRangeError,
    StorageError,
)
from trioring.protocol.records import (
    Record,
    build_batch,
    decode_batch,
    encode_base_offset,
    iterate_batches,
)
from trioring.storage.index import ENTRY, ENTRY_BYTES
from trioring.storage.log import RECOVERY_POINT_FILE, PartitionLog
from trioring.uring import FallbackBackend

STORAGE_LOGGER = "trioring.storage"


# --- helpers -------------------------------------------------------------------------


@pytest.fixture
def backend() -> TestBackend:
    return TestBackend()


async def open_log(
    directory: str, backend: TestBackend, clock: FakeClock, **overrides: object
) -> PartitionLog:
    return await PartitionLog.open(directory, log_config(**overrides), backend, clock)


def value_of(offset: int, size: int = 40) -> bytes:
    return (f"value-{offset}-".encode() * size)[:size]


async def append_values(
    log: PartitionLog, clock: FakeClock, counts: Sequence[int], size: int = 40
) -> list[tuple[int, int]]:
    """Append one batch per count; record values encode their offsets. Returns (base, last)."""
    ranges = []
    for count in counts:
        first = log.log_end_offset
        values = [value_of(first + i, size) for i in range(count)]
        info = await log.append(batch(values, now_ms=clock.now_ms()))
        assert info.base_offset == first
        ranges.append((info.base_offset, info.last_offset))
    return ranges


async def read_all(log: PartitionLog) -> list[tuple[int, bytes | None]]:
    """(offset, value) of every record from the log start to the high watermark."""
    out: list[tuple[int, bytes | None]] = []
    offset = log.log_start_offset
    while offset < log.high_watermark.value:
        result = await log.read(offset, 1 << 20)
        assert result.data, offset
        for position, _ in iterate_batches(result.data):
            header, records = decode_batch(result.data, position)
            out.extend((r.offset, r.value) for r in records)  # type: ignore[misc]
            offset = header.next_offset
    return out


def check_values(pairs: list[tuple[int, bytes | None]], start: int, end: int) -> None:
    assert [o for o, _ in pairs] == list(range(start, end))
    for offset, value in pairs:
        assert value is not None and value.startswith(f"value-{offset}-".encode()[: len(value)])


def write_file(path: str, data: bytes) -> None:
    with open(path, "wb") as file:
        file.write(data)


def append_file(path: str, data: bytes) -> None:
    with open(path, "ab") as file:
        file.write(data)


def flip_bit(path: str, position: int, bit: int = 0) -> None:
    with open(path, "r+b") as file:
        file.seek(position)
        byte = file.read(1)[0]
        file.seek(position)
        file.write(bytes([byte ^ (1 << bit)]))


def index_entries(directory: str, base: int) -> list[tuple[int, int, int]]:
    raw = read_file(os.path.join(directory, f"{base:020d}.index"))
    assert len(raw) % ENTRY_BYTES == 0
    return [(base + rel, position, ts) for rel, position, ts in ENTRY.iter_unpack(raw)]


def check_index_points_at_batches(directory: str) -> int:
    """Every index entry names the base offset of the batch at its position. Returns entries."""
    total = 0
    for base, path in segment_files(directory):
        starts = {position: offset for position, offset, _ in file_batches(path)}
        for offset, position, _ in index_entries(directory, base):
            assert starts.get(position) == offset, (path, offset, position)
            total += 1
    return total


def storage_messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == STORAGE_LOGGER]


# --- offsets and bytes on disk ---------------------------------------------------------


async def test_offsets_are_contiguous_and_only_base_offset_is_rewritten(
    directory: str, backend: TestBackend, clock: FakeClock
) -> None:
    log = await open_log(directory, backend, clock)
    inputs = []
    expected_base = 0
    for count, producer_base in [(1, 0), (3, 777), (5, -1), (2, 2**40)]:
        raw = build_batch(
            [Record(key=b"k", value=value_of(i)) for i in range(count)],
            base_offset=producer_base,
            now_ms=clock.now_ms(),
        )
        info = await log.append(raw)
        assert (info.base_offset, info.last_offset) == (expected_base, expected_base + count - 1)
        assert info.log_start_offset == 0
        assert info.log_append_time_ms == clock.now_ms()
        inputs.append((expected_base, raw))
        expected_base += count
    # Several batches in one append: each gets its own consecutive base offset.
    multi = [batch([b"a", b"b"], now_ms=clock.now_ms()), batch([b"c"], now_ms=clock.now_ms())]
    info = await log.append(b"".join(multi))
    assert (info.base_offset, info.last_offset) == (expected_base, expected_base + 2)
    inputs += [(expected_base, multi[0]), (expected_base + 2, multi[1])]
    assert log.log_end_offset == log.high_watermark.value == expected_base + 3
    await log.aclose()

    data = read_file(segment_files(directory)[0][1])
    position = 0
    for base, raw in inputs:
        assert data[position : position + 8] == encode_base_offset(base)
        assert data[position + 8 : position + len(raw)] == raw[8:]
        position += len(raw)
    assert position == len(data)


async def test_one_append_with_more_batches_than_one_write_carries(
    directory: str, backend: TestBackend, clock: FakeClock
) -> None:
    log = await open_log(directory, backend, clock)
    now = clock.now_ms()
    payload = b"".join(batch([value_of(i), value_of(i + 1)], now_ms=now) for i in range(0, 1200, 2))
    info = await log.append(payload)
    assert (info.base_offset, info.last_offset) == (0, 1199)
    await log.append(batch([value_of(1200)], now_ms=now))
    check_values(await read_all(log), 0, 1201)
    await log.aclose()
    assert [b for _, b, _ in file_batches(segment_files(directory)[0][1])] == list(
        range(0, 1201, 2)
    )


async def test_append_rejects_empty_and_closed(
    directory: str, backend: TestBackend, clock: FakeClock
) -> None:
    log = await open_log(directory, backend, clock)
    with pytest.raises(InvalidArgumentError):
        await log.append(b"")
    await log.aclose()
    await log.aclose()  # idempotent
    with pytest.raises(BrokerClosedError):
        await log.append(batch([b"x"], now_ms=clock.now_ms()))
    with pytest.raises(BrokerClosedError):
        await log.read(0, 100)
    assert backend.open_paths == []


@pytest.mark.parametrize(
    "overrides",
    [
        {"segment_bytes": 10},
        {"segment_bytes": 1 << 31},
        {"segment_ms": 0},
        {"retention_bytes": -1},
        {"retention_ms": -1},
        {"index_interval_bytes": 0},
    ],
)
def test_config_validation(overrides: dict[str, int]) -> None:
    with pytest.raises(InvalidArgumentError):
        log_config(**overrides)


# --- the sparse index and reads -----------------------------------------------------------


async def test_sparse_index_density_and_lookups(
    directory: str, backend: TestBackend, clock: FakeClock
) -> None:
    interval = 500
    log = await open_log(directory, backend, clock, index_interval_bytes=interval)
    sizes = [(i * 37) % 300 for i in range(300)]
    ranges = []
    for size in sizes:
        ranges += await append_values(log, clock, [1 + size % 3], size=size)
    await log.aclose()

    [(_, path)] = segment_files(directory)
    segment_size = file_size(path)
    biggest = max(size for _, _, size in file_batches(path))
    entries = check_index_points_at_batches(directory)
    # About one entry per interval: at most size/interval, and a batch can
    # overshoot the interval by at most its own size.
    assert segment_size // (interval + biggest) - 1 <= entries <= segment_size // interval

    log = await open_log(directory, backend, clock, index_interval_bytes=interval)
    for base, last in ranges:
        for offset in {base, last, (base + last) // 2}:
            result = await log.read(offset, 1)
            [(_, header)] = list(iterate_batches(result.data))
            assert (header.base_offset, header.last_offset) == (base, last)
    # The index bounds the scan: reading near the end reads a few intervals, not the segment.
    backend.pread_bytes = 0
    await log.read(ranges[-3][0], 1)
    assert backend.pread_bytes < 4 * (interval + biggest + 200)
    assert backend.pread_bytes < segment_size // 10
    await log.aclose()


async def test_index_entry_rule(directory: str, backend: TestBackend, clock: FakeClock) -> None:
    """An entry at the first batch starting interval bytes or more past the previous one."""
    log = await open_log(directory, backend, clock)
    await append_values(log, clock, [1])
    size = file_size(segment_files(directory)[0][1])
    await log.aclose()
    for interval, every in [(2 * size, 2), (2 * size - 1, 2), (2 * size + 1, 3)]:
        shutil.rmtree(directory)
        log = await open_log(directory, backend, clock, index_interval_bytes=interval)
        await append_values(log, clock, [1] * 12)
        await log.aclose()
        entries = index_entries(directory, 0)
        assert [(o, p) for o, p, _ in entries] == [(i, i * size) for i in range(every, 12, every)]


async def test_reads_return_whole_batches(
    directory: str, backend: TestBackend, clock: FakeClock
) -> None:
    log = await open_log(directory, backend, clock)
    ranges = await append_values(log, clock, [4, 4, 4, 4], size=200)
    sizes = [size for _, _, size in file_batches(segment_files(directory)[0][1])]

    # Inside a batch: that batch, from its base offset.
    result = await log.read(6, sizes[1])
    [(_, header)] = list(iterate_batches(result.data))
    assert (header.base_offset, header.last_offset) == ranges[1]

    # The first batch comes back whole even when larger than max_bytes.
    for max_bytes in (0, 1, 61, sizes[0] - 1):
        result = await log.read(0, max_bytes)
        assert len(result.data) == sizes[0]

    # max_bytes bounds the rest: whole batches only, never a partial one.
    result = await log.read(0, sizes[0] + sizes[1] + sizes[2] - 1)
    assert [h.base_offset for _, h in iterate_batches(result.data)] == [0, 4]
    result = await log.read(0, 1 << 20)
    assert [h.base_offset for _, h in iterate_batches(result.data)] == [0, 4, 8, 12]
    assert result.high_watermark == 16 and result.log_start_offset == 0

    # At the high watermark: nothing, no error.
    result = await log.read(16, 1000)
    assert result.data == b"" and result.high_watermark == 16
    await log.aclose()


async def test_out_of_range_reads(directory: str, backend: TestBackend, clock: FakeClock) -> None:
    log = await open_log(directory, backend, clock, segment_bytes=1024, retention_bytes=0)
    await append_values(log, clock, [3] * 12, size=100)
    assert await log.enforce_retention() > 0
    start, end = log.log_start_offset, log.high_watermark.value
    assert start > 0
    for offset in (-1, 0, start - 1, end + 1, 2**62):
        with pytest.raises(OffsetOutOfRangeError) as caught:
            await log.read(offset, 1000)
        assert (caught.value.log_start_offset, caught.value.high_watermark) == (start, end)
        assert caught.value.kafka_error_code == 1
    check_values(await read_all(log), start, end)
    await log.aclose()


async def test_wait_for_data_wakes_on_append(
    directory: str, backend: TestBackend, clock: FakeClock
) -> None:
    log = await open_log(directory, backend, clock)
    await append_values(log, clock, [2])
    woke = trio.Event()

    async def waiter() -> None:
        await log.wait_for_data(2)
        woke.set()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter)
            await trio.testing.wait_all_tasks_blocked()
            assert not woke.is_set()
            await append_values(log, clock, [1])
    assert woke.is_set()
    await log.aclose()


# --- rolls ------------------------------------------------------------------------------


async def test_roll_by_size(directory: str, backend: TestBackend, clock: FakeClock) -> None:
    log = await open_log(directory, backend, clock, segment_bytes=1024)
    await append_values(log, clock, [2] * 20, size=120)
    files = segment_files(directory)
    assert len(files) > 3
    for i, (base, path) in enumerate(files):
        batches = file_batches(path)
        assert batches[0][1] == base, "a segment starts with a batch"
        assert file_size(path) <= 1024
        if i + 1 < len(files):
            # It rolled because the next batch did not fit.
            assert file_size(path) + file_batches(files[i + 1][1])[0][2] > 1024
    # A batch larger than a segment gets a segment of its own.
    big_first = log.log_end_offset
    await append_values(log, clock, [1], size=3000)
    assert segment_files(directory)[-1][0] == big_first
    await append_values(log, clock, [1])
    assert segment_files(directory)[-1][0] == big_first + 1
    check_values(await read_all(log), 0, log.log_end_offset)
    await log.aclose()


async def test_roll_by_age(directory: str, backend: TestBackend, clock: FakeClock) -> None:
    log = await open_log(directory, backend, clock, segment_ms=1000)
    await append_values(log, clock, [1])
    clock.advance_ms(999)
    await append_values(log, clock, [1])
    assert [b for b, _ in segment_files(directory)] == [0]
    clock.advance_ms(1)
    await append_values(log, clock, [1])
    assert [b for b, _ in segment_files(directory)] == [0, 2]
    # The age counts from the segment's first batch, and survives a reopen.
    clock.advance_ms(600)
    await append_values(log, clock, [1])
    await log.aclose()
    log = await open_log(directory, backend, clock, segment_ms=1000)
    clock.advance_ms(399)
    await append_values(log, clock, [1])
    assert [b for b, _ in segment_files(directory)] == [0, 2]
    clock.advance_ms(1)
    await append_values(log, clock, [1])
    assert [b for b, _ in segment_files(directory)] == [0, 2, 5]
    # An explicit roll of an empty segment does nothing.
    await log.roll()
    await log.roll()
    assert [b for b, _ in segment_files(directory)] == [0, 2, 5, 6]
    await log.aclose()


# --- retention --------------------------------------------------------------------------


async def test_retention_by_size_deletes_whole_old_segments(
    directory: str, backend: TestBackend, clock: FakeClock
) -> None:
    log = await open_log(directory, backend, clock, retention_bytes=None)
    for _ in range(5):
        await append_values(log, clock, [2, 2, 2], size=100)
        await log.roll()
    await append_values(log, clock, [1])
    files = segment_files(directory)
    sizes = [file_size(p) for _, p in files]
    assert len(files) == 6
    assert await log.enforce_retention() == 0

    # Keep at least 3 segments' worth: the two oldest go.
    log.config = log_config(retention_bytes=sum(sizes[2:]))  # type: ignore[misc]
    assert await log.enforce_retention() == 2
    assert log.log_start_offset == files[2][0]
    assert [b for b, _ in segment_files(directory)] == [b for b, _ in files[2:]]
    assert not exists(files[0][1]) and not exists(files[1][1])
    assert not exists(files[0][1].replace(".log", ".index"))
    assert log.size_bytes == sum(sizes[2:])

    # Retention 0: everything but the active segment.
    log.config = log_config(retention_bytes=0)  # type: ignore[misc]
    assert await log.enforce_retention() == 3
    assert [b for b, _ in segment_files(directory)] == [files[-1][0]]
    assert await log.enforce_retention() == 0
    check_values(await read_all(log), files[-1][0], log.log_end_offset)
    assert backend.open_paths == sorted(
        [files[-1][1], files[-1][1].replace(".log", ".index")]
    ) or backend.open_paths == [files[-1][1]]
    await log.aclose()

    # The log start survives a reopen.
    log = await open_log(directory, backend, clock)
    assert log.log_start_offset == files[-1][0]
    await log.aclose()


async def test_retention_by_age(directory: str, backend: TestBackend, clock: FakeClock) -> None:
    log = await open_log(directory, backend, clock, retention_ms=12_000)
    bases = []
    for _ in range(3):
        bases.append(log.log_end_offset)
        await append_values(log, clock, [2])
        await log.roll()
        clock.advance_ms(10_000)
    bases.append(log.log_end_offset)
    await append_values(log, clock, [1])  # active segment, at t0 + 30 s
    clock.advance_ms(-5_000)  # now t0 + 25 s: segments at t0 and t0 + 10 s are older than 12 s
    assert await log.enforce_retention() == 2
    assert log.log_start_offset == bases[2]
    clock.advance_ms(7_000)  # t0 + 32 s: the t0 + 20 s segment is exactly 12 s old, kept
    assert await log.enforce_retention() == 0
    clock.advance_ms(1)  # older than retention.ms: expires
    assert await log.enforce_retention() == 1
    assert log.log_start_offset == bases[3]
    # The active segment is never deleted, however old.
    clock.advance_ms(10**9)
    assert await log.enforce_retention() == 0
    assert log.log_start_offset == bases[3]
    assert log.high_watermark.value == bases[3] + 1
    await log.aclose()


async def test_retention_by_age_after_reopen_uses_segment_timestamps(
    directory: str, backend: TestBackend, clock: FakeClock
) -> None:
    """Old segments' max timestamps load lazily after a reopen (from the index)."""
    log = await open_log(directory, backend, clock, index_interval_bytes=100)
    for _ in range(3):
        await append_values(log, clock, [1] * 10, size=60)
        await log.roll()
        clock.advance_ms(10_000)
    await log.aclose()
    log = await open_log(directory, backend, clock, retention_ms=15_000, index_interval_bytes=100)
    files = segment_files(directory)
    assert await log.enforce_retention() == 2
    assert log.log_start_offset == files[2][0]
    await log.aclose()


async def test_read_survives_concurrent_deletion(
    directory: str, backend: TestBackend, clock: FakeClock
) -> None:
    log = await open_log(directory, backend, clock, retention_bytes=0)
    await append_values(log, clock, [3] * 4, size=200)
    await log.roll()
    await append_values(log, clock, [3] * 4, size=200)
    await log.roll()
    await append_values(log, clock, [1])
    first_path = segment_files(directory)[0][1]
    gate = Gate(os.path.basename(first_path))
    backend.read_gate = gate
    results = []

    async def reader() -> None:
        results.append(await log.read(4, 1 << 20))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await gate.reached.wait()
            assert await log.enforce_retention() == 2
            assert not exists(first_path)
            # The reader still holds the descriptor of the deleted file.
            assert first_path in backend.open_paths
            gate.release.set()
    [result] = results
    headers = [h for _, h in iterate_batches(result.data)]
    # Reads continue across segments: the deleted one's rest, then the others.
    assert [h.base_offset for h in headers] == [3, 6, 9, 12, 15, 18, 21, 24]
    for position, _ in iterate_batches(result.data):
        decode_batch(result.data, position)
    assert first_path not in backend.open_paths, "the last reader closes a deleted segment"
    await log.aclose()
    assert backend.open_paths == []


async def test_offset_for_timestamp_survives_concurrent_deletion(
    directory: str, backend: TestBackend, clock: FakeClock
) -> None:
    log = await open_log(directory, backend, clock, retention_bytes=0)
    for _ in range(3):
        await append_values(log, clock, [1], size=100)
        await log.roll()
    await log.aclose()
    # Reopened: old segments' max timestamps are loaded lazily, by reading the file.
    log = await open_log(directory, backend, clock, retention_bytes=0)
    first_path = segment_files(directory)[0][1]
    gate = Gate(os.path.basename(first_path))
    backend.read_gate = gate
    results = []

    async def finder() -> None:
        results.append(await log.offset_for_timestamp(clock.now_ms()))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(finder)
            await gate.reached.wait()
            backend.read_gate = None
            assert await log.enforce_retention() == 3
            gate.release.set()
    [header] = results
    # The answer as of the request's start (offset 0) or after the deletion (3).
    assert header is not None and header.base_offset in (0, 3)
    assert first_path not in backend.open_paths
    await log.aclose()
    assert backend.open_paths == []


async def test_read_during_append_reports_a_covering_high_watermark(
    directory: str, backend: TestBackend, clock: FakeClock
) -> None:
    """A read that overlaps an append must not return batches at or past the
    high watermark it reports."""
    log = await open_log(directory, backend, clock)
    await append_values(log, clock, [2] * 3, size=100)
    gate = Gate(".log")
    backend.read_gate = gate
    results = []

    async def reader() -> None:
        results.append(await log.read(0, 1 << 20))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await gate.reached.wait()
            backend.read_gate = None
            await append_values(log, clock, [2] * 2, size=100)
            gate.release.set()
    [result] = results
    headers = [h for _, h in iterate_batches(result.data)]
    assert headers[0].base_offset == 0
    assert all(h.last_offset < result.high_watermark for h in headers)
    await log.aclose()


async def test_read_survives_concurrent_close(
    directory: str, backend: TestBackend, clock: FakeClock
) -> None:
    """Closing the log must not close a descriptor under a read in progress
    (its number could be reused by another file)."""
    log = await open_log(directory, backend, clock)
    await append_values(log, clock, [2] * 3, size=100)
    gate = Gate(".log")
    backend.read_gate = gate
    results = []

    async def reader() -> None:
        results.append(await log.read(2, 1 << 20))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await gate.reached.wait()
            backend.read_gate = None
            await log.aclose()
            assert segment_files(directory)[0][1] in backend.open_paths
            gate.release.set()
    [result] = results
    assert [h.base_offset for _, h in iterate_batches(result.data)] == [2, 4]
    assert backend.open_paths == [], "the last reader closes the files"
    with pytest.raises(BrokerClosedError):
        await log.read(0, 100)


# --- timestamps ---------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    steps=st.lists(st.tuples(st.integers(-3000, 3000), st.integers(1, 3)), min_size=1, max_size=40),
    targets=st.lists(st.integers(-60_000, 160_000), max_size=15),
)
async def test_offset_for_timestamp(steps: list[tuple[int, int]], targets: list[int]) -> None:
    clock = FakeClock()
    base_ms = clock.now_ms()
    with tempfile.TemporaryDirectory() as tmp:
        directory = os.path.join(tmp, "t-0")
        backend = TestBackend()
        log = await open_log(
            directory, backend, clock, segment_bytes=1024, index_interval_bytes=150
        )
        model = []  # (base offset, max timestamp)
        now = base_ms
        for jump, count in steps:
            now += 2000
            timestamps = [now + jump - 10 * i for i in range(count)]
            info = await log.append(batch([b"v" * 60] * count, now_ms=now, timestamps=timestamps))
            model.append((info.base_offset, max(timestamps)))
        all_targets = [base_ms + t for t in targets] + [ts for _, ts in model]

        def expected(target: int) -> tuple[int, int] | None:
            return next(((b, ts) for b, ts in model if ts >= target), None)

        for reopen in (False, True):
            if reopen:
                await log.aclose()
                log = await open_log(
                    directory, backend, clock, segment_bytes=1024, index_interval_bytes=150
                )
            for target in all_targets:
                header = await log.offset_for_timestamp(target)
                got = None if header is None else (header.base_offset, header.max_timestamp_ms)
                assert got == expected(target), target
        await log.aclose()


# --- durability, recovery point, recovery ---------------------------------------------------


async def test_clean_reopen_scans_nothing(
    directory: str, backend: TestBackend, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=STORAGE_LOGGER)
    log = await open_log(
        directory, backend, clock, segment_bytes=600_000, index_interval_bytes=4096
    )
    for _ in range(20):
        await append_values(log, clock, [20] * 10, size=500)
    end = log.log_end_offset
    await log.aclose()
    total = sum(file_size(p) for _, p in segment_files(directory))
    assert total > 1_500_000 and len(segment_files(directory)) >= 3
    recovery_point = read_file(os.path.join(directory, RECOVERY_POINT_FILE)).split()
    assert recovery_point == [b"trioring-recovery-point-v2", str(end).encode(), b"{}"]

    caplog.clear()
    reopened_backend = TestBackend()
    log = await open_log(
        directory, reopened_backend, clock, segment_bytes=600_000, index_interval_bytes=4096
    )
    assert (log.log_end_offset, log.durable_offset) == (end, end)
    noisy = [
        m
        for m in storage_messages(caplog)
        if any(w in m for w in ("recovered", "truncating", "rebuilding", "unreadable"))
    ]
    assert noisy == []
    # Start-up reads a bounded amount, not the log.
    assert reopened_backend.pread_bytes < 150_000
    await log.aclose()

    # Control: without the recovery point everything is checked (and logged).
    os.unlink(os.path.join(directory, RECOVERY_POINT_FILE))
    caplog.clear()
    scanning_backend = TestBackend()
    log = await open_log(
        directory, scanning_backend, clock, segment_bytes=600_000, index_interval_bytes=4096
    )
    assert log.log_end_offset == end
    assert any("recovered" in m for m in storage_messages(caplog))
    assert scanning_backend.pread_bytes >= total
    await log.aclose()


async def test_unflushed_data_survives_a_process_crash(
    directory: str, backend: TestBackend, clock: FakeClock
) -> None:
    log = await open_log(directory, backend, clock, segment_bytes=2048)
    await append_values(log, clock, [3] * 10, size=100)
    await log.flush()
    durable = log.durable_offset
    await append_values(log, clock, [3] * 10, size=100)
    end = log.log_end_offset
    backend.crash()
    log = await open_log(directory, TestBackend(), clock, segment_bytes=2048)
    assert durable < end == log.log_end_offset == log.durable_offset
    check_values(await read_all(log), 0, end)
    await log.aclose()


async def test_recovery_truncates_a_torn_tail(
    directory: str, backend: TestBackend, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=STORAGE_LOGGER)
    log = await open_log(directory, backend, clock, index_interval_bytes=200)
    await append_values(log, clock, [2] * 10, size=100)
    await log.flush()
    await log.checkpoint()
    durable = log.durable_offset
    ranges = await append_values(log, clock, [2] * 10, size=100)
    backend.crash()
    [(_, path)] = segment_files(directory)
    batches = file_batches(path)
    torn_position, torn_base, torn_size = batches[15]
    os.truncate(path, torn_position + torn_size // 2)

    log = await open_log(directory, backend, clock, index_interval_bytes=200)
    assert log.log_end_offset == log.durable_offset == torn_base == ranges[5][0]
    assert durable <= torn_base
    assert file_size(path) == torn_position
    assert any("truncating" in m for m in storage_messages(caplog))
    check_values(await read_all(log), 0, torn_base)
    assert all(position < torn_position for _, position, _ in index_entries(directory, 0))
    # Appends continue at the cut, and the index stays consistent.
    await append_values(log, clock, [2] * 5, size=100)
    await log.aclose()
    check_index_points_at_batches(directory)
    log = await open_log(directory, backend, clock, index_interval_bytes=200)
    check_values(await read_all(log), 0, torn_base + 10)
    await log.aclose()


@pytest.mark.parametrize("cut", [0, 1, 30, 60, 61, 100])
async def test_recovery_with_torn_batch_at_the_recovery_point(
    directory: str, backend: TestBackend, clock: FakeClock, cut: int
) -> None:
    """The first batch after the recovery point is torn (even its header)."""
    log = await open_log(directory, backend, clock)
    await append_values(log, clock, [2] * 5, size=100)
    await log.flush()
    await log.checkpoint()
    durable = log.durable_offset
    await append_values(log, clock, [2], size=100)
    backend.crash()
    [(_, path)] = segment_files(directory)
    position = file_batches(path)[-1][0]
    os.truncate(path, position + cut)

    log = await open_log(directory, backend, clock)
    assert log.log_end_offset == durable
    assert file_size(path) == position, "the torn batch is cut off"
    await append_values(log, clock, [1])
    check_values(await read_all(log), 0, durable + 1)
    await log.aclose()


@pytest.mark.parametrize(
    "garbage",
    [b"\x00", bytes(61), bytes(5000), b"\xff" * 100],
    ids=["one-zero", "zero-header", "zero-pages", "ones"],
)
async def test_recovery_removes_garbage_after_a_clean_close(
    directory: str, backend: TestBackend, clock: FakeClock, garbage: bytes
) -> None:
    """E.g. a filesystem that extended the file with zeros: the recovery point is the log end."""
    log = await open_log(directory, backend, clock)
    await append_values(log, clock, [2] * 5, size=100)
    end = log.log_end_offset
    await log.aclose()
    [(_, path)] = segment_files(directory)
    size = file_size(path)
    append_file(path, garbage)

    log = await open_log(directory, backend, clock)
    assert log.log_end_offset == end
    assert file_size(path) == size
    await append_values(log, clock, [1])
    check_values(await read_all(log), 0, end + 1)
    await log.aclose()


async def test_recovery_of_a_new_log_with_garbage(
    directory: str, backend: TestBackend, clock: FakeClock
) -> None:
    log = await open_log(directory, backend, clock)
    backend.crash()
    [(_, path)] = segment_files(directory)
    append_file(path, b"\x00")
    log = await open_log(directory, backend, clock)
    assert log.log_end_offset == 0 and file_size(path) == 0
    await append_values(log, clock, [1])
    check_values(await read_all(log), 0, 1)
    await log.aclose()


async def test_recovery_deletes_segments_after_a_corrupt_batch(
    directory: str, backend: TestBackend, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A corrupt byte in an older, never-synced segment past the recovery point."""
    caplog.set_level(logging.INFO, logger=STORAGE_LOGGER)
    log = await open_log(directory, backend, clock, segment_bytes=2048)
    await append_values(log, clock, [2] * 4, size=100)
    await log.flush()
    await log.checkpoint()
    durable = log.durable_offset
    await append_values(log, clock, [2] * 40, size=100)  # several segments, none synced
    files = segment_files(directory)
    assert len(files) >= 3
    backend.crash()
    first_path = files[0][1]
    position, corrupt_base, size = [b for b in file_batches(first_path) if b[1] > durable][1]
    flip_bit(first_path, position + size - 3)  # in the records: only the CRC notices

    log = await open_log(directory, backend, clock, segment_bytes=2048)
    assert log.log_end_offset == corrupt_base
    assert [b for b, _ in segment_files(directory)] == [files[0][0]]
    for _, later_path in files[1:]:
        assert not exists(later_path)
        assert not exists(later_path.replace(".log", ".index"))
    messages = storage_messages(caplog)
    assert any("truncating" in m and "CRC" in m for m in messages)
    assert sum("deleting segment" in m for m in messages) == len(files) - 1
    check_values(await read_all(log), 0, corrupt_base)
    await log.aclose()


async def test_recovery_drops_segments_after_a_lost_segment_tail(
    directory: str, backend: TestBackend, clock: FakeClock
) -> None:
    """An unsynced segment lost its tail at a batch boundary while the next one
    survived (power loss): the log must not keep a gap."""
    log = await open_log(directory, backend, clock, segment_bytes=2048)
    await append_values(log, clock, [2] * 2, size=100)
    await log.flush()
    await log.checkpoint()
    durable = log.durable_offset
    await append_values(log, clock, [2] * 30, size=100)
    files = segment_files(directory)
    backend.crash()
    first_path = files[0][1]
    position, lost_base, _ = [b for b in file_batches(first_path) if b[1] >= durable][1]
    os.truncate(first_path, position)

    log = await open_log(directory, backend, clock, segment_bytes=2048)
    assert log.log_end_offset == lost_base
    assert [b for b, _ in segment_files(directory)] == [files[0][0]]
    check_values(await read_all(log), 0, lost_base)
    info = await log.append(batch([b"next"], now_ms=clock.now_ms()))
    assert info.base_offset == lost_base
    await log.aclose()


async def test_recovery_with_damaged_index_over_corrupt_data(
    directory: str, backend: TestBackend, clock: FakeClock
) -> None:
    """The index's last entry points at an unsynced batch whose base offset got
    corrupted: the rebuild must not trip over the bad offset."""
    log = await open_log(directory, backend, clock, index_interval_bytes=150)
    await append_values(log, clock, [1] * 8, size=50)
    await log.flush()
    await append_values(log, clock, [1] * 2, size=50)
    await log.checkpoint()  # writes index entries, including one for offset 8
    backend.crash()
    [(_, path)] = segment_files(directory)
    assert index_entries(directory, 0)[-1][0] == 8
    position = next(p for p, base, _ in file_batches(path) if base == 8)
    flip_bit(path, position + 3)  # base offset 8 + 2**32

    log = await open_log(directory, backend, clock, index_interval_bytes=150)
    assert log.log_end_offset == 8
    check_values(await read_all(log), 0, 8)
    await log.aclose()
    check_index_points_at_batches(directory)


async def test_recovery_point_inside_a_batch_falls_back_to_a_full_check(
    directory: str, backend: TestBackend, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=STORAGE_LOGGER)
    log = await open_log(directory, backend, clock)
    await append_values(log, clock, [3] * 4)
    await log.aclose()
    write_file(os.path.join(directory, RECOVERY_POINT_FILE), b"trioring-recovery-point-v1 4\n")
    log = await open_log(directory, backend, clock)
    assert log.log_end_offset == 12
    assert any("not a batch boundary" in m for m in storage_messages(caplog))
    check_values(await read_all(log), 0, 12)
    await log.aclose()


@pytest.mark.parametrize("content", [b"", b"nonsense", b"trioring-recovery-point-v1 -3\n"])
async def test_unreadable_recovery_point_checks_everything(
    directory: str, backend: TestBackend, clock: FakeClock, content: bytes
) -> None:
    log = await open_log(directory, backend, clock)
    await append_values(log, clock, [3] * 4)
    await log.aclose()
    write_file(os.path.join(directory, RECOVERY_POINT_FILE), content)
    append_file(segment_files(directory)[0][1], b"junk")
    log = await open_log(directory, backend, clock)
    assert log.log_end_offset == 12
    check_values(await read_all(log), 0, 12)
    await log.aclose()


async def test_damaged_and_missing_indexes_are_rebuilt(
    directory: str, backend: TestBackend, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=STORAGE_LOGGER)
    interval = 300
    log = await open_log(
        directory, backend, clock, segment_bytes=20_000, index_interval_bytes=interval
    )
    ranges = await append_values(log, clock, [2] * 150, size=120)
    await log.aclose()
    files = segment_files(directory)
    assert len(files) >= 3
    before = check_index_points_at_batches(directory)
    index_path = [p.replace(".log", ".index") for _, p in files]
    os.unlink(index_path[0])  # missing
    write_file(index_path[1], b"\x00" * 40 + b"\x07")  # garbage
    write_file(index_path[-1], struct.pack("<IIq", 5, 10**6, 0))  # points past the log end

    log = await open_log(
        directory, backend, clock, segment_bytes=20_000, index_interval_bytes=interval
    )
    for base, last in ranges:
        result = await log.read(last, 1)
        [(_, header)] = list(iterate_batches(result.data))
        assert (header.base_offset, header.last_offset) == (base, last)
    # Rebuilt, so lookups are cheap again: a read near the end of the first segment
    # reads a few intervals, not the whole segment.
    near_end = [b for b, _ in ranges if b < files[1][0]][-2]
    backend.pread_bytes = 0
    await log.read(near_end, 1)
    assert backend.pread_bytes < 4 * (interval + 400)
    await log.aclose()
    assert all(exists(p) for p in index_path)
    assert check_index_points_at_batches(directory) == before
    assert sum("rebuilding index" in m for m in storage_messages(caplog)) == 3


async def test_debris_is_removed_on_open(
    directory: str, backend: TestBackend, clock: FakeClock
) -> None:
    log = await open_log(directory, backend, clock)
    await append_values(log, clock, [1])
    await log.aclose()
    write_file(os.path.join(directory, f"{12345:020d}.index"), b"x" * 16)
    write_file(os.path.join(directory, RECOVERY_POINT_FILE + ".tmp"), b"half")
    log = await open_log(directory, backend, clock)
    assert sorted(os.listdir(directory)) == [
        f"{0:020d}.index",
        f"{0:020d}.log",
        RECOVERY_POINT_FILE,
    ]
    await log.aclose()


# --- group commit -------------------------------------------------------------------------


async def test_concurrent_appends_get_disjoint_ranges_and_share_syncs(
    directory: str, backend: TestBackend, clock: FakeClock
) -> None:
    log = await open_log(directory, backend, clock)
    await append_values(log, clock, [1])
    await log.flush()
    syncs_before = backend.log_sync_count()
    writes_before = backend.log_write_count()
    infos: dict[int, tuple[int, int]] = {}

    async def producer(i: int) -> None:
        count = 1 + i % 4
        info = await log.append(
            batch([f"p{i}-{j}".encode() for j in range(count)], now_ms=clock.now_ms())
        )
        await log.flush(info.last_offset + 1)
        assert log.durable_offset > info.last_offset
        assert info.last_offset - info.base_offset + 1 == count
        infos[i] = (info.base_offset, info.last_offset)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for i in range(50):
                nursery.start_soon(producer, i)
    ranges = sorted(infos.values())
    assert len(ranges) == 50
    assert ranges[0][0] == 1
    for (_, last), (base, _) in itertools.pairwise(ranges):
        assert base == last + 1, "disjoint and contiguous"
    assert log.log_end_offset == ranges[-1][1] + 1 == log.durable_offset
    syncs = backend.log_sync_count() - syncs_before
    writes = backend.log_write_count() - writes_before
    assert 1 <= syncs <= 3, f"group commit: {syncs} fdatasyncs for 50 flushes"
    assert 1 <= writes <= 3, f"coalescing: {writes} writes for 50 appends"
    # Each producer's records are where its AppendInfo says.
    by_offset = dict(await read_all(log))
    for i, (base, last) in infos.items():
        assert [by_offset[o] for o in range(base, last + 1)] == [
            f"p{i}-{j}".encode() for j in range(last - base + 1)
        ]
    await log.aclose()


async def test_flush_covers_only_what_was_written_before_its_sync(
    directory: str, backend: TestBackend, clock: FakeClock
) -> None:
    log = await open_log(directory, backend, clock)
    await append_values(log, clock, [2])
    gate = Gate(".log")
    backend.sync_gate = gate
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(log.flush)
            await gate.reached.wait()
            # Written while the sync runs: not covered by it.
            await append_values(log, clock, [3])
            gate.release.set()
    assert log.durable_offset == 2
    assert log.log_end_offset == 5
    backend.sync_gate = None
    syncs = backend.log_sync_count()
    await log.flush(3)
    assert log.durable_offset == 5
    assert backend.log_sync_count() == syncs + 1
    await log.aclose()


async def test_flush_of_durable_offsets_does_not_sync(
    directory: str, backend: TestBackend, clock: FakeClock
) -> None:
    log = await open_log(directory, backend, clock)
    await append_values(log, clock, [2, 2])
    await log.flush(2)
    assert log.durable_offset == 4  # one sync covers everything written
    syncs = backend.log_sync_count()
    await log.flush(3)
    await log.flush()
    await log.flush(0)
    assert backend.log_sync_count() == syncs
    await log.aclose()


# --- disk faults --------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["enospc", "half"])
async def test_failed_write_acknowledges_nothing(
    directory: str, backend: TestBackend, clock: FakeClock, fault: str
) -> None:
    log = await open_log(directory, backend, clock)
    await append_values(log, clock, [2] * 3, size=100)
    await log.flush()
    end = log.log_end_offset
    [(_, path)] = segment_files(directory)
    size = file_size(path)

    backend.write_fault = fault
    with pytest.raises(StorageError) as caught:
        await log.append(batch([b"lost"] * 3, now_ms=clock.now_ms()))
    assert caught.value.kafka_error_code == 56
    assert isinstance(caught.value.__cause__, OSError)
    # Concurrent appends in one write all fail alike.
    failures = []

    async def doomed(i: int) -> None:
        with pytest.raises(StorageError):
            await log.append(batch([b"lost-%d" % i], now_ms=clock.now_ms()))
        failures.append(i)

    async with trio.open_nursery() as nursery:
        for i in range(5):
            nursery.start_soon(doomed, i)
    assert len(failures) == 5
    assert (log.log_end_offset, log.high_watermark.value) == (end, end)
    assert file_size(path) == size, "the partial write was cut off"
    assert [b for _, b, _ in file_batches(path)] == [0, 2, 4]

    backend.write_fault = None
    info = await log.append(batch([value_of(end)], now_ms=clock.now_ms()))
    assert info.base_offset == end
    await log.flush()
    await log.aclose()
    log = await open_log(directory, TestBackend(), clock)
    check_values(await read_all(log), 0, end + 1)
    await log.aclose()


async def test_failed_write_and_failed_cleanup_take_the_log_offline(
    directory: str, backend: TestBackend, clock: FakeClock
) -> None:
    log = await open_log(directory, backend, clock)
    await append_values(log, clock, [2] * 3, size=100)
    end = log.log_end_offset
    backend.write_fault = "half"
    backend.truncate_fault = True
    with pytest.raises(StorageError):
        await log.append(batch([b"lost"] * 3, now_ms=clock.now_ms()))
    backend.write_fault = None
    backend.truncate_fault = False
    with pytest.raises(StorageError, match="offline"):
        await log.append(batch([b"later"], now_ms=clock.now_ms()))
    await log.aclose()
    assert backend.open_paths == []
    # A restart recovers: the half-written batch is a torn tail.
    log = await open_log(directory, TestBackend(), clock)
    assert log.log_end_offset == end
    check_values(await read_all(log), 0, end)
    await log.aclose()


@pytest.mark.parametrize("suffix", [".index", ".log"])
async def test_failed_roll_acknowledges_nothing_and_is_retried(
    directory: str, backend: TestBackend, clock: FakeClock, suffix: str
) -> None:
    """E.g. EMFILE while opening a new segment's files: a StorageError, no
    descriptor leaked, no half-made segment blocking the next attempt."""
    log = await open_log(directory, backend, clock, segment_bytes=1024)
    await append_values(log, clock, [1] * 2, size=400)
    end = log.log_end_offset
    files = segment_files(directory)
    backend.open_fault_suffix = suffix
    backend.open_faults = 1
    with pytest.raises(StorageError) as caught:
        await append_values(log, clock, [1], size=400)
    assert isinstance(caught.value.__cause__, OSError)
    assert log.log_end_offset == end
    assert segment_files(directory) == files
    info = await log.append(batch([value_of(end, 400)], now_ms=clock.now_ms()))
    assert info.base_offset == end
    assert segment_files(directory)[-1][0] == end
    await log.aclose()
    assert backend.open_paths == []
    log = await open_log(directory, backend, clock, segment_bytes=1024)
    check_values(await read_all(log), 0, end + 1)
    await log.aclose()


async def test_failed_fdatasync_takes_the_log_offline(
    directory: str, backend: TestBackend, clock: FakeClock
) -> None:
    log = await open_log(directory, backend, clock)
    await append_values(log, clock, [2] * 3)
    await log.flush()
    durable = log.durable_offset
    await append_values(log, clock, [2])
    backend.sync_fault = True
    with pytest.raises(StorageError):
        await log.flush()
    assert log.durable_offset == durable
    backend.sync_fault = False  # a retry could falsely succeed: the log must stay offline
    with pytest.raises(StorageError):
        await log.flush()
    with pytest.raises(StorageError):
        await log.append(batch([b"x"], now_ms=clock.now_ms()))
    with pytest.raises(StorageError):
        await log.roll()
    assert await log.enforce_retention() == 0
    await log.aclose()
    assert backend.open_paths == []

    # The close cut what the failed fdatasync left in the page cache only.
    log = await open_log(directory, TestBackend(), clock)
    end = log.log_end_offset
    assert end == durable == log.durable_offset
    check_values(await read_all(log), 0, end)
    await log.append(batch([value_of(end)], now_ms=clock.now_ms()))
    await log.flush()
    await log.aclose()


async def test_concurrent_flush_waiters_all_see_a_sync_failure(
    directory: str, backend: TestBackend, clock: FakeClock
) -> None:
    log = await open_log(directory, backend, clock)
    backend.sync_fault = True
    errors = []
    # Appended before any flush starts: an append that came after the failed
    # sync would (rightly) be refused by the offline log, which is not what
    # this test is about (and made it flaky when the sync failed quickly).
    infos = [await log.append(batch([b"v%d" % i], now_ms=clock.now_ms())) for i in range(10)]

    async def flusher(end_offset: int) -> None:
        try:
            await log.flush(end_offset)
        except StorageError as error:
            errors.append(error)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for info in infos:
                nursery.start_soon(flusher, info.last_offset + 1)
    assert len(errors) == 10
    assert log.durable_offset == 0
    await log.aclose()


async def test_cancelled_appenders_leave_no_waiter_without_an_outcome(
    directory: str, backend: TestBackend, clock: FakeClock
) -> None:
    """The writer's scope and a queued appender's scope are cancelled mid-write.

    The writer's group is already on its way to the disk: it completes and the
    writer gets its offsets (cancellation lands at its next checkpoint). The
    queued append is withdrawn, so it is neither written nor waited for; the
    append queued behind it is written next, right after the first.
    """
    log = await open_log(directory, backend, clock)
    gate = Gate(".log")
    backend.write_gate = gate
    outcomes: dict[str, object] = {}

    async def appender(name: str, scope: trio.CancelScope) -> None:
        with scope:
            info = await log.append(batch([name.encode()], now_ms=clock.now_ms()))
            outcomes[name] = info.base_offset
            await trio.lowlevel.checkpoint()
            outcomes[name + " after"] = "not cancelled"
        if scope.cancelled_caught:
            outcomes.setdefault(name, "cancelled")

    scopes = {name: trio.CancelScope() for name in ("writer", "queued", "behind")}
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(appender, "writer", scopes["writer"])
            await gate.reached.wait()
            for name in ("queued", "behind"):
                nursery.start_soon(appender, name, scopes[name])
            await trio.testing.wait_all_tasks_blocked()
            scopes["writer"].cancel()
            scopes["queued"].cancel()
            await trio.testing.wait_all_tasks_blocked()
            backend.write_gate = None
            gate.release.set()
    assert outcomes == {
        "writer": 0,
        "queued": "cancelled",
        "behind": 1,
        "behind after": "not cancelled",
    }
    assert log.log_end_offset == 2
    result = await log.read(0, 1 << 20)
    values = [
        record.value
        for position, _ in iterate_batches(result.data)
        for record in decode_batch(result.data, position)[1]
    ]
    assert values == [b"writer", b"behind"]
    await log.aclose()


async def test_role_is_not_leaked_when_acquire_is_cancelled() -> None:
    """Regression: acquire took the role, then a cancelled checkpoint raised before the
    caller's try/finally, so the role stayed held and aclose waited forever."""
    role = log_module._Role()
    with trio.CancelScope() as scope:
        scope.cancel()
        await role.acquire()
    assert not role.held
    with trio.fail_after(5):
        await role.acquire()
    role.release()


# --- schedule points of inline appends -------------------------------------------------


class StepCounter(trio.abc.Instrument):
    """Counts the steps of one task: each is a resumption after a schedule point."""

    def __init__(self, task: trio.lowlevel.Task) -> None:
        self.task = task
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task is self.task:
            self.steps += 1


async def test_inline_appends_skip_schedule_points_taken_moments_ago(
    directory: str, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(log_module, "monotonic", lambda: now[0])
    log = await PartitionLog.open(directory, log_config(), FallbackBackend(), clock)
    assert log._backend.writes_inline
    counter = StepCounter(trio.lowlevel.current_task())
    trio.lowlevel.add_instrument(counter)
    try:
        for _ in range(10):
            await log.append(batch([b"x"], now_ms=clock.now_ms()))
        assert counter.steps == 1, "the first append yields, the next nine do not"
        now[0] += 1.5 * log_module.APPEND_SCHEDULE_INTERVAL_SECONDS
        await log.append(batch([b"x"], now_ms=clock.now_ms()))
        assert counter.steps == 2, "an interval later, an append yields again"
        for _ in range(5):
            await log.append(batch([b"x"], now_ms=clock.now_ms()))
        assert counter.steps == 2
    finally:
        trio.lowlevel.remove_instrument(counter)
    assert log.log_end_offset == 16
    await log.aclose()


async def test_an_append_that_skips_its_schedule_point_is_still_a_cancel_point(
    directory: str, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(log_module, "monotonic", lambda: 1000.0)
    log = await PartitionLog.open(directory, log_config(), FallbackBackend(), clock)
    await log.append(batch([b"first"], now_ms=clock.now_ms()))  # takes the schedule point
    with trio.CancelScope() as scope:
        scope.cancel()
        await log.append(batch([b"never"], now_ms=clock.now_ms()))
    assert scope.cancelled_caught
    assert log.log_end_offset == 1
    await log.aclose()


async def test_a_looping_producer_lets_other_tasks_run(directory: str, clock: FakeClock) -> None:
    """With the real clock: another task runs while a producer appends in a loop.

    2000 appends take far longer than the schedule interval (tens of ms), and
    none of them rolls a segment (a roll would yield on its own).
    """
    log = await PartitionLog.open(
        directory, log_config(segment_bytes=64 << 20), FallbackBackend(), clock
    )
    other_ran = trio.Event()

    async def other() -> None:
        other_ran.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(other)
        for _ in range(2000):
            await log.append(batch([b"y" * 1000], now_ms=clock.now_ms()))
            if other_ran.is_set():
                break
        assert other_ran.is_set()
    assert log.segment_count == 1
    await log.aclose()


async def test_one_append_of_more_batches_than_one_write_carries(
    directory: str, backend: TestBackend, clock: FakeClock
) -> None:
    """An append of 300 batches needs 600 iovecs, more than one pwritev takes:
    it goes out in several writes, in order, with every offset assigned once."""
    log = await open_log(directory, backend, clock)
    await append_values(log, clock, [2])
    data = b"".join(batch([value_of(2 + i)], now_ms=clock.now_ms()) for i in range(300))
    writes_before = backend.log_write_count()
    info = await log.append(data)
    assert (info.base_offset, info.last_offset) == (2, 301)
    assert backend.log_write_count() - writes_before >= 2
    check_values(await read_all(log), 0, 302)
    ((_, path),) = segment_files(directory)
    assert [base for _, base, _ in file_batches(path)] == [0, *range(2, 302)]
    await log.aclose()
    reopened = await open_log(directory, backend, clock)
    check_values(await read_all(reopened), 0, 302)
    await reopened.aclose()


async def test_delete_records_moves_the_log_start_durably(
    directory: str, backend: TestBackend, clock: FakeClock
) -> None:
    log = await open_log(directory, backend, clock)
    for _ in range(3):
        await append_values(log, clock, [2, 2])  # 4 records per segment
        await log.roll()
    await append_values(log, clock, [3])
    assert [b for b, _ in segment_files(directory)] == [0, 4, 8, 12]

    # Inside the second segment: the first is deleted, the second stays on disk.
    assert await log.delete_records_before(6) == 6
    assert log.log_start_offset == 6
    assert [b for b, _ in segment_files(directory)] == [4, 8, 12]
    with pytest.raises(OffsetOutOfRangeError):
        await log.read(5, 1 << 20)
    result = await log.read(6, 1 << 20)
    assert result.log_start_offset == 6
    # Lower than the start: nothing changes; past the high watermark: refused.
    assert await log.delete_records_before(2) == 6
    with pytest.raises(OffsetOutOfRangeError):
        await log.delete_records_before(16)
    await log.aclose()

    # A reopen keeps it.
    log = await open_log(directory, backend, clock)
    assert log.log_start_offset == 6
    # To the high watermark: every closed segment goes, the active one stays.
    assert await log.delete_records_before(log.high_watermark.value) == 15
    assert [b for b, _ in segment_files(directory)] == [12]
    assert (await log.read(15, 1 << 20)).data == b""
    await append_values(log, clock, [1])
    assert log.log_end_offset == 16
    await log.aclose()


async def test_a_log_start_past_a_lost_tail_starts_the_log_empty_there(
    directory: str, backend: TestBackend, clock: FakeClock
) -> None:
    # Before: the log started at its recovered end (4), so the log start went
    # back from 9 and offsets 4-8, already deleted once, were handed out again
    # (found by trioring.fuzz: DeleteRecords past acks=0 data, then a power loss).
    # Kafka starts the log empty at the log start (truncateFullyAndStartAt).
    log = await open_log(directory, backend, clock)
    await append_values(log, clock, [2, 2])
    await log.delete_records_before(3)
    await log.aclose()
    # The tail the start pointed into is gone (as after a crash with acks=1 data).
    write_file(os.path.join(directory, "log-start-offset"), b"9\n")
    log = await open_log(directory, backend, clock)
    assert log.log_start_offset == log.log_end_offset == log.high_watermark.value == 9
    assert (await log.read(9, 1 << 20)).data == b""
    await append_values(log, clock, [1])
    assert log.log_end_offset == 10
    await log.aclose()
    log = await open_log(directory, backend, clock)
    assert (log.log_start_offset, log.log_end_offset) == (9, 10)
    await log.aclose()

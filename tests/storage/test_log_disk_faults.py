"""PartitionLog under disk faults: a failed fdatasync, failing writes and reads,
torn tails at every byte, and a damaged batch in the trusted middle of a segment.

Before: after a failed fdatasync the log stayed offline until a restart, and
the restart trusted the page cache (it kept the unsynced tail, which the disk
may not hold); a pread EIO escaped as an OSError; a damaged batch before the
recovery point was served as it was (and a damaged header on the way to an
offset made the read skip to the next segment).
"""

from __future__ import annotations

import errno
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest
import trio
from storage_support import (
    FakeClock,
    Gate,
    TestBackend,
    batch,
    file_batches,
    file_size,
    log_config,
    read_file,
    segment_files,
)

from trioring.errors import CorruptLogError, OffsetOutOfRangeError, StorageError
from trioring.protocol.records import decode_batch, iterate_batches
from trioring.storage.log import DurableEnd, PartitionLog

STORAGE_LOGGER = "trioring.storage"


@pytest.fixture
def backend() -> TestBackend:
    return TestBackend()


async def open_log(
    directory: str,
    backend: TestBackend,
    clock: FakeClock,
    *,
    discard_after: DurableEnd | None = None,
    **overrides: object,
) -> PartitionLog:
    return await PartitionLog.open(
        directory, log_config(**overrides), backend, clock, discard_after=discard_after
    )


def value_of(offset: int, size: int = 100) -> bytes:
    return (f"value-{offset}-".encode() * size)[:size]


async def append_values(log: PartitionLog, clock: FakeClock, counts: Sequence[int]) -> None:
    for count in counts:
        first = log.log_end_offset
        values = [value_of(first + i) for i in range(count)]
        info = await log.append(batch(values, now_ms=clock.now_ms()))
        assert info.base_offset == first


async def read_all(log: PartitionLog) -> list[int]:
    """Offsets of every record from the log start to the high watermark, values checked."""
    offsets: list[int] = []
    offset = log.log_start_offset
    while offset < log.high_watermark.value:
        result = await log.read(offset, 1 << 20)
        assert result.data, offset
        for position, _ in iterate_batches(result.data):
            header, records = decode_batch(result.data, position)
            for record in records:
                assert record.value == value_of(record.offset or 0)
                offsets.append(record.offset or 0)
            offset = header.next_offset
    return offsets


def storage_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == STORAGE_LOGGER and r.levelno >= logging.ERROR
    ]


# --- a failed fdatasync ------------------------------------------------------------------


async def test_a_failed_fdatasync_stops_reads_at_the_durable_offset_and_the_reopen_cuts_there(
    directory: str, backend: TestBackend, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    log = await open_log(directory, backend, clock, segment_bytes=2048)
    await append_values(log, clock, [2] * 9)
    await log.flush()
    durable = log.durable_offset
    # acks=1 data, over several segments, none of it synced.
    await append_values(log, clock, [2] * 20)
    written = log.log_end_offset
    assert log.segment_count >= 3
    backend.sync_fault = True
    with pytest.raises(StorageError, match="fdatasync"):
        await log.flush()
    # Linux may have dropped the pages it failed to write: nothing past the
    # durable offset is served, even though the page cache still holds it.
    assert log.failure is not None
    assert log.untrusted_after is not None and log.untrusted_after.offset == durable
    assert log.high_watermark.value == durable
    assert await read_all(log) == list(range(durable))
    with pytest.raises(OffsetOutOfRangeError):
        await log.read(durable + 1, 1 << 20)
    with pytest.raises(StorageError, match="being recovered"):
        await log.append(batch([b"refused"], now_ms=clock.now_ms()))
    assert any("written but not synced" in m for m in storage_errors(caplog))
    # A retried fdatasync would succeed: the log must not trust it.
    backend.sync_fault = False
    with pytest.raises(StorageError):
        await log.flush()
    untrusted_after = log.untrusted_after
    await log.aclose()
    assert backend.open_paths == []

    # The close cut the untrusted bytes off the files; the reopen finds the
    # durable end and nothing past it.
    files = segment_files(directory)
    assert sum(file_size(path) for _, path in files) == untrusted_after.position + sum(
        file_size(path) for base, path in files if base < untrusted_after.segment_base
    )
    log = await open_log(
        directory, TestBackend(), clock, segment_bytes=2048, discard_after=untrusted_after
    )
    assert durable <= log.log_end_offset <= written
    assert log.log_end_offset == durable == log.durable_offset == log.high_watermark.value
    assert await read_all(log) == list(range(durable))
    await append_values(log, clock, [3])
    await log.flush()
    assert await read_all(log) == list(range(durable + 3))
    await log.aclose()


async def test_a_write_that_lands_as_an_fdatasync_fails_is_neither_acknowledged_nor_shown(
    directory: str, backend: TestBackend, clock: FakeClock
) -> None:
    log = await open_log(directory, backend, clock)
    await append_values(log, clock, [2] * 2)
    await log.flush()
    durable = log.log_end_offset
    await append_values(log, clock, [2])  # unsynced
    sync_gate, write_gate = Gate(".log"), Gate(".log")
    backend.sync_gate, backend.write_gate = sync_gate, write_gate
    outcomes: list[object] = []

    async def append_late() -> None:
        try:
            outcomes.append(await log.append(batch([b"late"], now_ms=clock.now_ms())))
        except StorageError as error:
            outcomes.append(error)

    async def flush() -> None:
        with pytest.raises(StorageError):
            await log.flush()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(flush)
            await sync_gate.reached.wait()  # the flush syncs...
            nursery.start_soon(append_late)
            await write_gate.reached.wait()  # ... while an append writes
            backend.sync_fault = True
            sync_gate.release.set()
            while log.failure is None:  # noqa: ASYNC110 - nothing to wait on
                await trio.sleep(0.001)
            write_gate.release.set()
    [outcome] = outcomes
    assert isinstance(outcome, StorageError), outcome
    assert log.high_watermark.value == durable
    backend.sync_fault, backend.sync_gate, backend.write_gate = False, None, None
    untrusted_after = log.untrusted_after
    await log.aclose()
    log = await open_log(directory, backend, clock, discard_after=untrusted_after)
    assert log.log_end_offset == durable
    await log.aclose()


async def test_the_reopen_makes_the_cut_the_close_could_not(
    directory: str, backend: TestBackend, clock: FakeClock
) -> None:
    log = await open_log(directory, backend, clock)
    await append_values(log, clock, [2] * 4)
    await log.flush()
    durable = log.durable_offset
    await append_values(log, clock, [2] * 4)
    backend.sync_fault = True
    with pytest.raises(StorageError):
        await log.flush()
    untrusted_after = log.untrusted_after
    assert untrusted_after is not None
    backend.truncate_fault = True  # the disk refuses the cut too
    await log.aclose()
    [(_, path)] = segment_files(directory)
    assert file_size(path) > untrusted_after.position, "the close could not cut"

    with pytest.raises(OSError, match="Input/output error"):
        await open_log(directory, backend, clock, discard_after=untrusted_after)
    assert backend.open_paths == []
    backend.truncate_fault = backend.sync_fault = False
    log = await open_log(directory, backend, clock, discard_after=untrusted_after)
    assert log.log_end_offset == durable
    assert file_size(path) == untrusted_after.position
    assert await read_all(log) == list(range(durable))
    await log.aclose()


async def test_a_failed_fdatasync_of_a_log_with_no_durable_record(
    directory: str, backend: TestBackend, clock: FakeClock
) -> None:
    log = await open_log(directory, backend, clock, segment_bytes=1024)
    await append_values(log, clock, [2] * 10)
    backend.sync_fault = True
    with pytest.raises(StorageError):
        await log.flush()
    assert log.high_watermark.value == 0
    untrusted_after = log.untrusted_after
    backend.sync_fault = False
    await log.aclose()
    log = await open_log(
        directory, backend, clock, segment_bytes=1024, discard_after=untrusted_after
    )
    assert (log.log_start_offset, log.log_end_offset) == (0, 0)
    assert [base for base, _ in segment_files(directory)] == [0]
    await append_values(log, clock, [1])
    assert await read_all(log) == [0]
    await log.aclose()


# --- failing writes and reads --------------------------------------------------------------


@pytest.mark.parametrize("fault", ["enospc", "half"])
async def test_a_write_that_fails_with_eio_acknowledges_nothing_and_the_log_goes_on(
    directory: str, backend: TestBackend, clock: FakeClock, fault: str
) -> None:
    log = await open_log(directory, backend, clock)
    await append_values(log, clock, [2] * 3)
    end = log.log_end_offset
    [(_, path)] = segment_files(directory)
    size = file_size(path)
    backend.write_fault, backend.write_fault_errno = fault, errno.EIO
    with pytest.raises(StorageError, match="Input/output error") as caught:
        await log.append(batch([b"lost"] * 2, now_ms=clock.now_ms()))
    assert caught.value.kafka_error_code == 56  # KAFKA_STORAGE_ERROR
    assert (log.log_end_offset, log.high_watermark.value) == (end, end)
    assert file_size(path) == size, "the partial write was cut off"
    backend.write_fault = None
    await append_values(log, clock, [1])
    await log.flush()
    assert await read_all(log) == list(range(end + 1))
    await log.aclose()


async def test_a_read_that_fails_with_eio_is_a_storage_error_logged_once(
    directory: str, backend: TestBackend, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    log = await open_log(directory, backend, clock)
    await append_values(log, clock, [2] * 3)
    backend.read_fault = True
    for _ in range(3):
        with pytest.raises(StorageError, match=r"reading .* failed: Input/output error") as caught:
            await log.read(0, 1 << 20)
        assert caught.value.kafka_error_code == 56
    assert len([m for m in storage_errors(caplog) if "failed" in m]) == 1
    # Reads failing take nothing offline: writes go on.
    assert log.failure is None
    await append_values(log, clock, [1])
    backend.read_fault = False
    assert await read_all(log) == list(range(7))
    await log.aclose()


# --- torn tails -------------------------------------------------------------------------------


@pytest.mark.parametrize("filler", [None, b"\x00"], ids=["cut", "zero-filled"])
async def test_recovery_cuts_a_batch_torn_at_any_byte(
    tmp_path: Path, backend: TestBackend, clock: FakeClock, filler: bytes | None
) -> None:
    """Power loss tore the last batch at every possible byte (or the file system
    kept its length and filled the rest with zeros): recovery ends the log at
    the last whole batch."""
    pristine = str(tmp_path / "pristine")
    log = await open_log(pristine, backend, clock)
    await append_values(log, clock, [2] * 3)
    await log.flush()
    await log.checkpoint()
    durable = log.durable_offset
    await append_values(log, clock, [3])
    backend.crash()
    [(_, pristine_path)] = segment_files(pristine)
    position, base, size = file_batches(pristine_path)[-1]
    assert base == durable
    content = read_file(pristine_path)
    for cut in range(size):
        directory = str(tmp_path / f"cut-{cut}")
        shutil.copytree(pristine, directory)
        [(_, path)] = segment_files(directory)
        torn = content[: position + cut]
        if filler is not None:
            torn += filler * (size - cut)
        write_file(path, torn)
        log = await open_log(directory, backend, clock)
        if torn == content:  # the zeros filled in were the batch's own last bytes
            assert log.log_end_offset == durable + 3, cut
        else:
            assert log.log_end_offset == durable, cut
            assert file_size(path) == position, cut
        assert await read_all(log) == list(range(log.log_end_offset))
        await log.aclose()
        shutil.rmtree(directory)


# --- a damaged batch in the trusted part --------------------------------------------------------


def write_file(path: str, data: bytes) -> None:
    with open(path, "wb") as file:
        file.write(data)


def flip_bit(path: str, position: int) -> None:
    with open(path, "r+b") as file:
        file.seek(position)
        byte = file.read(1)[0]
        file.seek(position)
        file.write(bytes([byte ^ 1]))


@pytest.mark.parametrize("where", ["records", "magic"])
async def test_a_damaged_batch_before_the_recovery_point_is_reported_and_fenced(
    directory: str,
    backend: TestBackend,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
    where: str,
) -> None:
    # Index entries every other batch or so: start-up walks only the batches
    # between the last entry and the recovery point, never the damaged one.
    log = await open_log(directory, backend, clock, index_interval_bytes=500)
    await append_values(log, clock, [2] * 20)
    end = log.log_end_offset
    await log.aclose()  # synced, and the recovery point is the log end: trusted
    [(_, path)] = segment_files(directory)
    batches = file_batches(path)
    damaged_position, damaged_base, damaged_size = batches[10]
    # A bit in the records only the CRC notices, or the magic byte (framing).
    flip_bit(path, damaged_position + (damaged_size - 3 if where == "records" else 16))

    log = await open_log(directory, backend, clock, index_interval_bytes=500)
    assert log.log_end_offset == end, "start-up does not rescan the trusted part"
    # Readable up to the damage: a read from the start stops before it.
    result = await log.read(0, 1 << 20)
    assert [h.base_offset for _, h in iterate_batches(result.data)] == [
        base for _, base, _ in batches[:10]
    ]
    # A read at (or through) the damage: CORRUPT_MESSAGE, with the file and byte.
    for offset in (damaged_base, damaged_base + 1):
        with pytest.raises(CorruptLogError) as caught:
            await log.read(offset, 1 << 20)
        assert caught.value.kafka_error_code == 2  # CORRUPT_MESSAGE
        assert (caught.value.path, caught.value.position) == (path, damaged_position)
        assert f"byte {damaged_position}" in str(caught.value)
    lines = [m for m in storage_errors(caplog) if path in m and f"byte {damaged_position}" in m]
    assert len(lines) == 1, "logged once a minute, not per read"
    # Past the damage (an index entry lies after it): readable again.
    later = await log.read(batches[12][1], 1 << 20)
    assert [h.base_offset for _, h in iterate_batches(later.data)] == [
        base for _, base, _ in batches[12:]
    ]
    # Writing goes on after the damage.
    assert log.failure is None
    await append_values(log, clock, [1])
    assert log.log_end_offset == end + 1
    await log.aclose()


async def test_a_damaged_base_offset_is_not_served(
    directory: str, backend: TestBackend, clock: FakeClock
) -> None:
    """The base offset is outside the CRC: reads check that batches follow on."""
    log = await open_log(directory, backend, clock)
    await append_values(log, clock, [2] * 5)
    await log.aclose()
    [(_, path)] = segment_files(directory)
    position = file_batches(path)[3][0]
    flip_bit(path, position + 7)  # the low byte of batch 3's base offset
    log = await open_log(directory, backend, clock)
    result = await log.read(0, 1 << 20)
    assert [h.base_offset for _, h in iterate_batches(result.data)] == [0, 2, 4]
    with pytest.raises(CorruptLogError):
        await log.read(6, 1 << 20)
    await log.aclose()


@pytest.mark.parametrize("fault", ["enospc", "half"])
async def test_index_writes_refused_by_a_full_disk_fail_no_flush_and_lose_nothing(
    directory: str, backend: TestBackend, clock: FakeClock, fault: str
) -> None:
    """The index is a cache: a full disk refusing it must not take the log
    offline (which would drop acknowledged acks=1 data)."""
    log = await open_log(directory, backend, clock, index_interval_bytes=200)
    await append_values(log, clock, [2] * 5)
    await log.flush()
    backend.fault_suffix, backend.write_fault = ".index", fault
    await append_values(log, clock, [2] * 5)  # acks=1: acknowledged once written
    end = log.log_end_offset
    await log.flush()
    assert log.failure is None
    assert log.durable_offset == log.high_watermark.value == end
    # No recovery point past index entries that are not on disk.
    with pytest.raises(StorageError, match="syncing index"):
        await log.checkpoint()
    await append_values(log, clock, [1])
    backend.write_fault = None
    await log.checkpoint()
    await log.aclose()
    log = await open_log(directory, TestBackend(), clock, index_interval_bytes=200)
    assert log.log_end_offset == end + 1
    assert await read_all(log) == list(range(end + 1))
    await log.aclose()

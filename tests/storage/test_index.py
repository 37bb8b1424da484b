"""Tests of OffsetIndex, the sparse offset/timestamp index of one segment."""

from __future__ import annotations

import bisect
import os
import tempfile

import pytest
import trio
import trio.lowlevel
from hypothesis import given, settings
from hypothesis import strategies as st
from storage_support import exists, file_size, read_file

from trioring.storage.index import ENTRY, ENTRY_BYTES, NO_TIMESTAMP, IndexDamagedError, OffsetIndex
from trioring.uring import FallbackBackend

BASE = 1000

# Entries as a segment writes them: offsets and positions strictly increase,
# max-timestamp-before never decreases.
entries_strategy = st.lists(
    st.tuples(st.integers(1, 50), st.integers(1, 5000), st.integers(0, 1000)),
    max_size=60,
).map(
    lambda steps: [
        (
            BASE + sum(s[0] for s in steps[: i + 1]),
            sum(s[1] for s in steps[: i + 1]),
            sum(s[2] for s in steps[: i + 1]),
        )
        for i in range(len(steps))
    ]
)


def brute_lookup(entries: list[tuple[int, int, int]], offset: int) -> tuple[int, int]:
    found = (BASE, 0)
    for entry_offset, position, _ in entries:
        if entry_offset <= offset:
            found = (entry_offset, position)
    return found


def brute_lookup_timestamp(entries: list[tuple[int, int, int]], timestamp_ms: int) -> int:
    found = 0
    for _, position, max_before in entries:
        if max_before < timestamp_ms:
            found = position
    return found


async def open_index(path: str, log_size: int | None = None) -> tuple[OffsetIndex, FallbackBackend]:
    """Open (a new index belongs to a new, empty segment)."""
    if log_size is None:
        log_size = (1 << 31) if exists(path) else 0
    backend = FallbackBackend()
    index = OffsetIndex(path, BASE)
    await index.open(backend, log_size=log_size)
    return index, backend


def write_raw(path: str, entries: list[tuple[int, int, int]], tail: bytes = b"") -> None:
    with open(path, "wb") as file:
        for offset, position, timestamp in entries:
            file.write(ENTRY.pack(offset - BASE, position, timestamp))
        file.write(tail)


@settings(max_examples=60, deadline=None)
@given(entries=entries_strategy, data=st.data())
async def test_lookups_match_brute_force_and_survive_reopen(
    entries: list[tuple[int, int, int]], data: st.DataObject
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "x.index")
        index, backend = await open_index(path)
        for entry in entries:
            index.append(*entry)
        await index.write_pending(backend)
        await index.close(backend)
        assert file_size(path) == ENTRY_BYTES * len(entries)

        reopened, backend = await open_index(path)
        assert len(reopened) == len(entries)
        expected_last = entries[-1] if entries else (BASE, 0, NO_TIMESTAMP)
        assert reopened.last_entry() == expected_last
        top_offset = entries[-1][0] + 10 if entries else BASE + 10
        top_timestamp = entries[-1][2] + 10 if entries else 10
        probes = data.draw(st.lists(st.integers(BASE - 5, top_offset), max_size=30))
        probes += [e[0] for e in entries] + [e[0] - 1 for e in entries]
        for offset in probes:
            assert reopened.lookup(offset) == brute_lookup(entries, offset), offset
        timestamps = data.draw(st.lists(st.integers(-2, top_timestamp), max_size=30))
        timestamps += [e[2] for e in entries] + [e[2] + 1 for e in entries]
        for timestamp in timestamps:
            assert reopened.lookup_timestamp(timestamp) == brute_lookup_timestamp(
                entries, timestamp
            ), timestamp
        await reopened.close(backend)


@settings(max_examples=40, deadline=None)
@given(
    batches=st.lists(
        st.tuples(st.integers(61, 900), st.integers(1, 5), st.integers(0, 10_000)),
        min_size=1,
        max_size=80,
    ),
    interval=st.integers(1, 3000),
    data=st.data(),
)
async def test_lookups_over_a_segment(
    batches: list[tuple[int, int, int]], interval: int, data: st.DataObject
) -> None:
    """Index a segment as LogSegment does; lookups must bound the scan correctly.

    ``lookup(offset)`` must return a batch boundary at or before the batch
    holding ``offset``; ``lookup_timestamp(t)`` a boundary before which every
    batch has max timestamp < t and at or before the first batch with one >= t.
    """
    layout = []  # (position, base offset, record count, max timestamp)
    position, offset = 0, BASE
    for size, count, timestamp in batches:
        layout.append((position, offset, count, timestamp))
        position += size
        offset += count
    with tempfile.TemporaryDirectory() as directory:
        index, backend = await open_index(os.path.join(directory, "x.index"))
        since, max_before = 0, NO_TIMESTAMP
        for (batch_position, base, _, timestamp), (size, _, _) in zip(layout, batches, strict=True):
            if batch_position > 0 and since >= interval:
                index.append(base, batch_position, max_before)
                since = 0
            max_before = max(max_before, timestamp)
            since += size
        total_bytes = position
        # About one entry per interval bytes.
        assert len(index) <= total_bytes // interval
        positions = [entry[0] for entry in layout]
        for target in data.draw(st.lists(st.integers(BASE, offset - 1), max_size=20)):
            found_offset, found_position = index.lookup(target)
            slot = positions.index(found_position)  # a batch boundary
            assert layout[slot][1] == found_offset
            holding = max(i for i, entry in enumerate(layout) if entry[1] <= target)
            assert slot <= holding
        top = max(b[2] for b in batches) + 2
        for timestamp in data.draw(st.lists(st.integers(-1, top), max_size=20)):
            found_position = index.lookup_timestamp(timestamp)
            slot = positions.index(found_position)
            assert all(entry[3] < timestamp for entry in layout[:slot])
        await index.close(backend)


@settings(max_examples=40, deadline=None)
@given(data=st.data())
async def test_append_truncate_write_pending_against_model(data: st.DataObject) -> None:
    """Random appends, lazy writes, truncations and reopens keep file and memory in step."""
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "x.index")
        index, backend = await open_index(path)
        model: list[tuple[int, int, int]] = []
        persisted = 0
        for _ in range(data.draw(st.integers(1, 25))):
            action = data.draw(st.sampled_from(["append", "write", "truncate", "reopen"]))
            if action == "append":
                last = model[-1] if model else (BASE, 0, NO_TIMESTAMP)
                entry = (
                    last[0] + data.draw(st.integers(1, 9)),
                    last[1] + data.draw(st.integers(1, 900)),
                    max(last[2], 0) + data.draw(st.integers(0, 9)),
                )
                index.append(*entry)
                model.append(entry)
            elif action == "write":
                await index.write_pending(backend)
                persisted = len(model)
            elif action == "truncate":
                top = model[-1][1] + 10 if model else 10
                cut = data.draw(st.integers(0, top))
                await index.truncate_to_position(backend, cut)
                model = [e for e in model if e[1] < cut]
                persisted = min(persisted, len(model))
            else:
                await index.close(backend)
                index, backend = await open_index(path)
                model = model[:persisted]
            assert [index.lookup(e[0]) for e in model] == [(e[0], e[1]) for e in model]
            assert len(index) == len(model)
            # The file holds exactly the entries written so far, none past a truncation.
            assert file_size(path) == persisted * ENTRY_BYTES
        await index.write_pending(backend)
        await index.close(backend)
        raw = read_file(path)
        assert [(BASE + o, p, t) for o, p, t in ENTRY.iter_unpack(raw)] == model


async def test_torn_trailing_entry_is_dropped(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "x.index")
    entries = [(BASE + 3, 100, 5), (BASE + 9, 250, 7), (BASE + 20, 900, 7)]
    write_raw(path, entries, tail=ENTRY.pack(40, 1200, 9)[:7])
    index, backend = await open_index(path, log_size=2000)
    assert len(index) == 3
    assert index.last_entry() == entries[-1]
    assert file_size(path) == 3 * ENTRY_BYTES
    # The next entry lands where the torn one was.
    index.append(BASE + 40, 1200, 9)
    await index.write_pending(backend)
    await index.close(backend)
    index, backend = await open_index(path, log_size=2000)
    assert index.last_entry() == (BASE + 40, 1200, 9)
    await index.close(backend)


@pytest.mark.parametrize(
    "entries",
    [
        pytest.param([(BASE + 9, 100, 5), (BASE + 3, 250, 7)], id="offset-decreases"),
        pytest.param([(BASE + 3, 100, 5), (BASE + 3, 250, 7)], id="offset-repeats"),
        pytest.param([(BASE + 3, 300, 5), (BASE + 9, 250, 7)], id="position-decreases"),
        pytest.param([(BASE + 3, 100, 5), (BASE + 9, 100, 7)], id="position-repeats"),
        pytest.param([(BASE + 3, 100, 9), (BASE + 9, 250, 7)], id="timestamp-decreases"),
        pytest.param([(BASE + 3, 100, 5), (BASE + 9, 2000, 7)], id="position-past-log-end"),
        pytest.param([(BASE + 3, 100, -7)], id="timestamp-below-none"),
    ],
)
async def test_damaged_index_raises(
    tmp_path: os.PathLike[str], entries: list[tuple[int, int, int]]
) -> None:
    path = os.path.join(tmp_path, "x.index")
    write_raw(path, entries)
    backend = FallbackBackend()
    index = OffsetIndex(path, BASE)
    with pytest.raises(IndexDamagedError):
        await index.open(backend, log_size=2000)
    # The descriptor stays usable so the segment can rebuild in place.
    assert index.is_open
    await index.reset(backend)
    assert len(index) == 0
    assert file_size(path) == 0
    await index.close(backend)


async def test_empty_index_lookups_point_at_segment_start(tmp_path: os.PathLike[str]) -> None:
    index, backend = await open_index(os.path.join(tmp_path, "x.index"))
    assert index.lookup(BASE + 123) == (BASE, 0)
    assert index.lookup_timestamp(10**12) == 0
    assert index.last_entry() == (BASE, 0, NO_TIMESTAMP)
    await index.close(backend)


async def test_lookup_timestamp_uses_max_before() -> None:
    """Entry timestamps are the max *before* the entry: the scan starts one entry earlier."""
    with tempfile.TemporaryDirectory() as directory:
        index, backend = await open_index(os.path.join(directory, "x.index"))
        index.append(BASE + 10, 1000, 50)
        index.append(BASE + 20, 2000, 80)
        index.append(BASE + 30, 3000, 80)
        index.append(BASE + 40, 4000, 95)
        timestamps = [50, 80, 80, 95]
        for target, expected in [(0, 0), (50, 0), (51, 1000), (80, 1000), (81, 3000), (96, 4000)]:
            assert index.lookup_timestamp(target) == expected, target
            slot = bisect.bisect_left(timestamps, target) - 1
            assert expected == (0 if slot < 0 else (slot + 1) * 1000)
        await index.close(backend)


async def test_missing_index_of_a_non_empty_segment_is_damaged(tmp_path: os.PathLike[str]) -> None:
    """A missing index must be rebuilt, not taken as an empty one (every read would scan)."""
    path = os.path.join(tmp_path, "x.index")
    backend = FallbackBackend()
    index = OffsetIndex(path, BASE)
    with pytest.raises(IndexDamagedError, match="missing"):
        await index.open(backend, log_size=5000)
    assert index.is_open and exists(path)
    await index.reset(backend)
    index.append(BASE + 4, 600, 3)
    await index.write_pending(backend)
    await index.close(backend)
    index, backend = await open_index(path, log_size=5000)
    assert index.last_entry() == (BASE + 4, 600, 3)
    await index.close(backend)


class _SlowWrites(FallbackBackend):
    """A backend whose writes take a scheduler pass, as io_uring's do."""

    async def pwritev(self, fd: int, buffers: list[bytes], offset: int) -> int:
        await trio.lowlevel.checkpoint()
        return await super().pwritev(fd, buffers, offset)


async def test_entries_appended_during_a_write_are_written_by_the_next(
    tmp_path: os.PathLike[str],
) -> None:
    """Entries appended while write_pending waited were counted as written: the next
    write started past the file's end, and the hole of zero entries failed the next
    open (every partition's index was rebuilt after a clean stop under load)."""
    path = os.path.join(tmp_path, "x.index")
    backend = _SlowWrites()
    index = OffsetIndex(path, BASE)
    await index.open(backend, log_size=0)
    index.append(BASE + 1, 100, 1)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(index.write_pending, backend)
        await trio.lowlevel.checkpoint()  # the write has started and waits
        index.append(BASE + 2, 200, 2)
    index.append(BASE + 3, 300, 3)
    await index.write_pending(backend)
    await index.close(backend)
    assert file_size(path) == 3 * ENTRY_BYTES
    reopened, backend = await open_index(path, log_size=1000)
    assert reopened.last_entry() == (BASE + 3, 300, 3)
    assert len(reopened) == 3
    await reopened.close(backend)

"""OffsetIndex: the sparse index of one segment.

One entry per ``index_interval_bytes`` of log data, 16 bytes each,
little-endian: ``relative_offset u32, position u32, max_timestamp_before i64``.
``relative_offset`` is the base offset of the batch at ``position`` minus the
segment's base offset; ``max_timestamp_before`` is the largest batch
timestamp strictly before that position in the segment (-1 if none), which
makes timestamp lookups a binary search too (Kafka keeps a separate
``.timeindex``; we fold it into one file).

Indexes are caches: the log rebuilds a missing or damaged index from the
segment, so this file is never the only copy of anything.
"""

from __future__ import annotations

import bisect
import os
import struct
from array import array

from trioring.uring import FileBackend

ENTRY = struct.Struct("<IIq")
ENTRY_BYTES = ENTRY.size
NO_TIMESTAMP = -1


class IndexDamagedError(Exception):
    """The index file is inconsistent and must be rebuilt (internal)."""


class OffsetIndex:
    def __init__(self, path: str, base_offset: int) -> None:
        self.path = path
        self.base_offset = base_offset
        self._offsets = array("q")
        self._positions = array("q")
        self._timestamps = array("q")
        self._fd: int | None = None
        self._persisted_entries = 0  # entries already written to the file
        self._file_entries = 0  # entries the file holds (may be more if truncated lazily)

    # --- lifecycle ----------------------------------------------------------------

    async def open(self, backend: FileBackend, *, log_size: int) -> None:
        """Open (creating if missing) and load; IndexDamagedError if inconsistent.

        ``log_size`` bounds positions: an entry past the end of the log means
        the index and log disagree, so the index must be rebuilt.
        """
        try:
            self._fd = await backend.open(self.path, os.O_RDWR)
            missing = False
        except FileNotFoundError:
            self._fd = await backend.open(self.path, os.O_RDWR | os.O_CREAT)
            missing = True
        if missing and log_size > 0:
            raise IndexDamagedError(f"{self.path} is missing")
        size = await backend.file_size(self._fd)
        data = await backend.pread(self._fd, size, 0) if size else b""
        whole = len(data) - len(data) % ENTRY_BYTES
        self._file_entries = len(data) // ENTRY_BYTES
        self._clear_memory()
        last_offset = -1
        last_position = -1
        last_timestamp = NO_TIMESTAMP
        for relative, position, timestamp in ENTRY.iter_unpack(data[:whole]):
            if (
                relative <= last_offset
                or position <= last_position
                or position >= log_size
                or timestamp < last_timestamp
            ):
                raise IndexDamagedError(
                    f"{self.path}: entry ({relative}, {position}, {timestamp}) after "
                    f"({last_offset}, {last_position}, {last_timestamp}) is out of order "
                    f"or past the end of a {log_size}-byte log"
                )
            self._offsets.append(self.base_offset + relative)
            self._positions.append(position)
            self._timestamps.append(timestamp)
            last_offset, last_position, last_timestamp = relative, position, timestamp
        self._persisted_entries = len(self._offsets)
        if len(data) != whole:
            # A torn entry at the end: drop it.
            await backend.ftruncate(self._fd, whole)
            self._file_entries = self._persisted_entries

    async def reset(self, backend: FileBackend) -> None:
        """Empty the index (before a rebuild)."""
        assert self._fd is not None
        self._clear_memory()
        await backend.ftruncate(self._fd, 0)
        self._persisted_entries = 0
        self._file_entries = 0

    async def close(self, backend: FileBackend) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            await backend.close(fd)

    def _clear_memory(self) -> None:
        self._offsets = array("q")
        self._positions = array("q")
        self._timestamps = array("q")

    @property
    def is_open(self) -> bool:
        return self._fd is not None

    # --- entries ------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._offsets)

    @property
    def last_position(self) -> int:
        return self._positions[-1] if self._positions else 0

    def last_entry(self) -> tuple[int, int, int]:
        """(offset, position, max_timestamp_before) of the last entry, or the segment start."""
        if not self._offsets:
            return self.base_offset, 0, NO_TIMESTAMP
        return self._offsets[-1], self._positions[-1], self._timestamps[-1]

    def append(self, offset: int, position: int, max_timestamp_before: int) -> None:
        assert not self._offsets or (
            offset > self._offsets[-1] and position > self._positions[-1]
        ), "index offsets and positions increase"
        assert offset - self.base_offset < 1 << 32
        self._offsets.append(offset)
        self._positions.append(position)
        self._timestamps.append(max_timestamp_before)

    def lookup(self, offset: int) -> tuple[int, int]:
        """(offset, position) of the last entry at or before ``offset`` (or the segment start)."""
        slot = bisect.bisect_right(self._offsets, offset) - 1
        if slot < 0:
            return self.base_offset, 0
        return self._offsets[slot], self._positions[slot]

    def lookup_position(self, position: int) -> tuple[int, int]:
        """(offset, position) of the last entry at or before byte ``position`` (or the segment
        start): a batch boundary, and the base offset of the batch that starts there."""
        slot = bisect.bisect_right(self._positions, position) - 1
        if slot < 0:
            return self.base_offset, 0
        return self._offsets[slot], self._positions[slot]

    def lookup_timestamp(self, timestamp_ms: int) -> int:
        """Position from which to scan for the first batch with max timestamp >= ``timestamp_ms``.

        Every batch before the returned position has timestamps below the target.
        """
        slot = bisect.bisect_left(self._timestamps, timestamp_ms) - 1
        if slot < 0:
            return 0
        return self._positions[slot]

    async def truncate_to_position(self, backend: FileBackend, position: int) -> None:
        """Drop entries at or past ``position`` (the log was truncated there)."""
        keep = bisect.bisect_left(self._positions, position)
        if keep == len(self._positions):
            return
        del self._offsets[keep:]
        del self._positions[keep:]
        del self._timestamps[keep:]
        if self._persisted_entries > keep:
            self._persisted_entries = keep
            assert self._fd is not None
            await backend.ftruncate(self._fd, keep * ENTRY_BYTES)
            self._file_entries = keep

    async def write_pending(self, backend: FileBackend) -> None:
        """Write entries added since the last call to the file (no fsync)."""
        if self._persisted_entries == len(self._offsets):
            return
        assert self._fd is not None
        start = self._persisted_entries
        end = len(self._offsets)
        payload = b"".join(
            ENTRY.pack(self._offsets[i] - self.base_offset, self._positions[i], self._timestamps[i])
            for i in range(start, end)
        )
        await backend.pwritev(self._fd, [payload], start * ENTRY_BYTES)
        # Only what this call wrote: entries appended while it waited are the next
        # call's. (Counting them as written made the next write start past the
        # file's end, leaving a hole of zero entries that failed the next open.)
        self._persisted_entries = max(self._persisted_entries, end)
        self._file_entries = max(self._file_entries, self._persisted_entries)

    async def sync(self, backend: FileBackend) -> None:
        await self.write_pending(backend)
        assert self._fd is not None
        await backend.fdatasync(self._fd)

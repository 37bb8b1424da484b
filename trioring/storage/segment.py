"""LogSegment: one ``%020d.log`` file of whole record batches and its index.

A segment knows byte positions, batch headers and its index; it knows
nothing of partitions, offsets assignment or requests.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Sequence
from typing import NamedTuple

import trio

from trioring._constants import BATCH_HEADER_BYTES, KIB, WRITE_BATCHES_MAX
from trioring._logging import RateLimitedLogger
from trioring.errors import CorruptLogError, ProtocolError
from trioring.protocol.records import BatchHeader, check_batch_crc, read_batch_header
from trioring.storage.index import NO_TIMESTAMP, IndexDamagedError, OffsetIndex
from trioring.uring import Buffer, FileBackend

logger = logging.getLogger("trioring.storage")
#: Failed index writes (a full disk): one line per partition per minute.
index_failures_log = RateLimitedLogger(logger, burst=1, interval_seconds=60.0)

#: Bytes a header scan reads at a time.
SCAN_CHUNK_BYTES = 64 * KIB
LOG_SUFFIX = ".log"
INDEX_SUFFIX = ".index"
#: iovecs one pwritev carries (two per batch; within Linux's IOV_MAX of 1024).
IOVECS_PER_WRITE_MAX = 2 * WRITE_BATCHES_MAX


def segment_file_name(base_offset: int, suffix: str) -> str:
    return f"{base_offset:020d}{suffix}"


class AppendedBatch(NamedTuple):
    """What a segment needs to know of a batch it appends (a tuple: cheap per batch)."""

    base_offset: int
    size_bytes: int
    max_timestamp_ms: int


class BatchScanner:
    """Walks batch headers of a file region in order, reading in chunks.

    Stops at the region's end or at the first batch that does not parse (or,
    with ``check_crc``, whose CRC fails); ``stop_reason`` says which.
    """

    def __init__(
        self,
        backend: FileBackend,
        fd: int,
        start: int,
        end: int,
        *,
        check_crc: bool,
        chunk_bytes: int = SCAN_CHUNK_BYTES,
    ) -> None:
        self._backend = backend
        self._fd = fd
        self.position = start
        self._end = end
        self._check_crc = check_crc
        self._chunk_bytes = chunk_bytes
        self._buffer = b""
        self._buffer_start = start
        self.stop_reason: str | None = None

    async def _ensure(self, size: int) -> bool:
        """Make [position, position+size) available in the buffer; False at EOF."""
        offset = self.position - self._buffer_start
        if offset + size <= len(self._buffer):
            return True
        read_bytes = max(size, min(self._chunk_bytes, self._end - self.position))
        self._buffer = await self._backend.pread(self._fd, read_bytes, self.position)
        self._buffer_start = self.position
        return len(self._buffer) >= size

    async def next(self) -> tuple[int, BatchHeader] | None:
        if self.position >= self._end:
            return None
        if self._end - self.position < BATCH_HEADER_BYTES or not await self._ensure(
            BATCH_HEADER_BYTES
        ):
            self.stop_reason = f"torn batch header ({self._end - self.position} bytes)"
            return None
        try:
            header = read_batch_header(self._buffer, self.position - self._buffer_start)
        except ProtocolError as error:
            self.stop_reason = str(error)
            return None
        if self.position + header.size_bytes > self._end:
            self.stop_reason = (
                f"batch at base offset {header.base_offset} claims {header.size_bytes} bytes, "
                f"{self._end - self.position} remain"
            )
            return None
        if self._check_crc:
            if not await self._ensure(header.size_bytes):
                self.stop_reason = "batch body is truncated"
                return None
            try:
                check_batch_crc(self._buffer, self.position - self._buffer_start, header)
            except ProtocolError as error:
                self.stop_reason = str(error)
                return None
        position = self.position
        self.position += header.size_bytes
        return position, header


def _write_chunks(buffers: Sequence[Buffer]) -> Sequence[Sequence[Buffer]]:
    """The iovec lists of one append's writes: one, unless the append holds
    more batches than one write's iovecs allow."""
    if len(buffers) <= IOVECS_PER_WRITE_MAX:
        return (buffers,)
    return [
        buffers[start : start + IOVECS_PER_WRITE_MAX]
        for start in range(0, len(buffers), IOVECS_PER_WRITE_MAX)
    ]


class LogSegment:
    def __init__(self, directory: str, base_offset: int, index_interval_bytes: int) -> None:
        self.directory = directory
        self.base_offset = base_offset
        self.log_path = os.path.join(directory, segment_file_name(base_offset, LOG_SUFFIX))
        self.index = OffsetIndex(
            os.path.join(directory, segment_file_name(base_offset, INDEX_SUFFIX)), base_offset
        )
        self._index_interval_bytes = index_interval_bytes
        self._fd: int | None = None
        #: Bytes of whole batches in the file.
        self.size = 0
        #: Bytes covered by a completed fdatasync.
        self.synced_size = 0
        #: Offset after the last batch in this segment.
        self.next_offset = base_offset
        #: Largest batch max-timestamp in the segment; None until known (old segments load lazily).
        self._max_timestamp_ms: int | None = None
        #: Max timestamp of the first batch (segment age for time-based rolls).
        self.first_timestamp_ms: int | None = None
        self._index_loaded = False
        self._bytes_since_index_entry = 0
        self._readers = 0
        self._deleted = False
        self._closing = False

    @property
    def fd(self) -> int:
        assert self._fd is not None, "segment is closed"
        return self._fd

    @property
    def is_deleted(self) -> bool:
        return self._deleted

    # --- lifecycle ----------------------------------------------------------------

    async def open(self, backend: FileBackend, *, create: bool) -> None:
        flags = os.O_RDWR | (os.O_CREAT | os.O_EXCL if create else 0)
        self._fd = await backend.open(self.log_path, flags)
        try:
            self.size = await backend.file_size(self._fd)
            # Whatever is in the file when we open it is on disk or in the page
            # cache; the log decides what is durable (recovery syncs it).
            self.synced_size = self.size
            if create:
                self._max_timestamp_ms = NO_TIMESTAMP
                await self.index.open(backend, log_size=0)
                self._index_loaded = True
        except BaseException:
            # Leave nothing half-open, and no new (empty) file behind that
            # would make the next attempt to create this segment fail.
            with trio.CancelScope(shield=True):
                await self.index.close(backend)
                fd, self._fd = self._fd, None
                await backend.close(fd)
                if create:
                    await backend.unlink(self.log_path)
            raise

    async def ensure_index(self, backend: FileBackend) -> None:
        """Load the index on first use; rebuild it by scanning if damaged or missing."""
        if self._index_loaded:
            return
        try:
            await self.index.open(backend, log_size=self.size)
            await self._check_last_index_entry(backend)
        except IndexDamagedError as error:
            await self.rebuild_index(backend, reason=str(error))
        self._index_loaded = True

    async def _check_last_index_entry(self, backend: FileBackend) -> None:
        """The last entry must point at a batch whose base offset matches it."""
        if not len(self.index):
            return
        offset, position, _ = self.index.last_entry()
        data = await backend.pread(self.fd, BATCH_HEADER_BYTES, position)
        try:
            header = read_batch_header(data)
        except ProtocolError as error:
            raise IndexDamagedError(
                f"{self.index.path}: last entry points at position {position}: {error}"
            ) from None
        if header.base_offset != offset:
            raise IndexDamagedError(
                f"{self.index.path}: last entry says offset {offset} at position {position}, "
                f"the log has {header.base_offset} there"
            )

    async def rebuild_index(self, backend: FileBackend, *, reason: str) -> None:
        """Recreate the index from the whole segment (indexes are caches)."""
        logger.warning("rebuilding index %s: %s", self.index.path, reason)
        if not self.index.is_open:
            await self.index.open(backend, log_size=0)
        await self.index.reset(backend)
        self._bytes_since_index_entry = 0
        self._max_timestamp_ms = NO_TIMESTAMP
        scanner = BatchScanner(backend, self.fd, 0, self.size, check_crc=False)
        expected_offset = self.base_offset
        while (item := await scanner.next()) is not None:
            position, header = item
            if header.base_offset != expected_offset:
                # A corrupt (unsynced) tail: index only what continues the offsets;
                # recovery truncates the rest.
                break
            self._note_batch(
                position, header.base_offset, header.size_bytes, header.max_timestamp_ms
            )
            expected_offset = header.next_offset
        await self.index.write_pending(backend)
        self._index_loaded = True

    async def close(self, backend: FileBackend) -> None:
        """Close the files now, or when the last reader releases the segment.

        A descriptor must not be closed under a read in progress: its number
        could be reused by another open and the read would see that file.
        """
        self._closing = True
        if self._readers > 0:
            return
        if self._index_loaded and self.index.is_open:
            await self._write_index(backend)
        await self.index.close(backend)
        if self._fd is not None:
            fd, self._fd = self._fd, None
            await backend.close(fd)

    # --- readers and deletion -------------------------------------------------------

    def acquire(self) -> None:
        """Keep the file descriptor open for a read in progress."""
        assert not self._deleted or self._readers > 0 or self._fd is not None
        self._readers += 1

    async def release(self, backend: FileBackend) -> None:
        self._readers -= 1
        assert self._readers >= 0
        if (self._deleted or self._closing) and self._readers == 0:
            await self.close(backend)

    async def delete(self, backend: FileBackend) -> None:
        """Unlink both files now; close descriptors once the last reader is done."""
        self._deleted = True
        for path in (self.log_path, self.index.path):
            with contextlib.suppress(FileNotFoundError):
                await backend.unlink(path)
        if self._readers == 0:
            await self.close(backend)

    # --- appends ------------------------------------------------------------------

    def _note_batch(
        self, position: int, base_offset: int, size_bytes: int, max_timestamp_ms: int
    ) -> None:
        """Account for a batch at ``position``: index entry, timestamps, sizes."""
        assert self._max_timestamp_ms is not None
        if position > 0 and self._bytes_since_index_entry >= self._index_interval_bytes:
            self.index.append(base_offset, position, self._max_timestamp_ms)
            self._bytes_since_index_entry = size_bytes
        else:
            self._bytes_since_index_entry += size_bytes
        if self.first_timestamp_ms is None:
            self.first_timestamp_ms = max_timestamp_ms
        self._max_timestamp_ms = max(self._max_timestamp_ms, max_timestamp_ms)

    async def append(
        self,
        backend: FileBackend,
        buffers: Sequence[Buffer],
        batches: Sequence[AppendedBatch],
        next_offset: int,
        size_bytes: int,
    ) -> None:
        """Write whole batches (``size_bytes`` in all) at the end of the file, then index them."""
        assert self._index_loaded and not self._deleted
        written = 0
        for chunk in _write_chunks(buffers):
            written += await backend.pwritev(self.fd, chunk, self.size + written)
        self._appended(batches, next_offset, size_bytes, written)

    def append_now(
        self,
        backend: FileBackend,
        buffers: Sequence[Buffer],
        batches: Sequence[AppendedBatch],
        next_offset: int,
        size_bytes: int,
    ) -> None:
        """:meth:`append` without yielding, for backends that write inline."""
        assert self._index_loaded and not self._deleted
        written = 0
        for chunk in _write_chunks(buffers):
            written += backend.write_now(self.fd, chunk, self.size + written)
        self._appended(batches, next_offset, size_bytes, written)

    def _appended(
        self, batches: Sequence[AppendedBatch], next_offset: int, size_bytes: int, written: int
    ) -> None:
        assert written == size_bytes, "backends write all or raise"
        position = self.size
        for batch in batches:
            self._note_batch(position, batch.base_offset, batch.size_bytes, batch.max_timestamp_ms)
            position += batch.size_bytes
        self.size = position
        self.next_offset = next_offset

    async def truncate(self, backend: FileBackend, position: int) -> None:
        """Cut the file at ``position`` (a batch boundary) and drop index entries past it."""
        assert 0 <= position <= self.size or position <= await backend.file_size(self.fd)
        await backend.ftruncate(self.fd, position)
        await self.index.truncate_to_position(backend, position)
        self.size = position
        self.synced_size = min(self.synced_size, position)

    async def _write_index(self, backend: FileBackend) -> None:
        """Write pending index entries; a failure (a full disk) keeps them for the next try.

        The index is a cache, rebuilt if damaged: failing to write it must
        not fail a flush of the log data, nor keep a close from closing.
        """
        try:
            await self.index.write_pending(backend)
        except OSError as error:
            index_failures_log.warning(
                "writing index %s failed (%s); its entries are written later, or the "
                "index is rebuilt",
                self.index.path,
                error.strerror or error,
                key=self.directory,
            )

    async def sync(self, backend: FileBackend) -> None:
        """fdatasync everything written so far."""
        size = self.size
        if self._index_loaded and self.index.is_open:
            await self._write_index(backend)
        if self.synced_size < size:
            await backend.fdatasync(self.fd)
            self.synced_size = max(self.synced_size, size)

    # --- recovery -------------------------------------------------------------------

    async def recover(
        self,
        backend: FileBackend,
        start_position: int,
        *,
        on_batch: Callable[[BatchHeader], None] | None = None,
    ) -> tuple[int, str | None]:
        """CRC-check batches from ``start_position`` (a batch boundary) to the end of the file.

        Everything before ``start_position`` is trusted (it was synced). Index
        entries at or past it are rebuilt, and batches must continue the
        offsets of the trusted part without gaps. Returns the position of the
        first bad batch (or the file size) and why it is bad (None if none).
        """
        await self.ensure_index(backend)
        await self.index.truncate_to_position(backend, start_position)
        expected_offset, position, max_before = self.index.last_entry()
        self._max_timestamp_ms = max_before
        self._bytes_since_index_entry = 0
        self.first_timestamp_ms = None
        # Walk the trusted batches between the last index entry and
        # start_position to restore the running state the writer keeps.
        scanner = BatchScanner(backend, self.fd, position, start_position, check_crc=False)
        while (item := await scanner.next()) is not None:
            self._note_batch(
                item[0], item[1].base_offset, item[1].size_bytes, item[1].max_timestamp_ms
            )
            expected_offset = item[1].next_offset
        file_size = await backend.file_size(self.fd)
        scanner = BatchScanner(backend, self.fd, start_position, file_size, check_crc=True)
        reason: str | None = None
        while (item := await scanner.next()) is not None:
            batch_position, header = item
            if header.base_offset != expected_offset:
                scanner.position = batch_position
                reason = (
                    f"batch at position {batch_position} has base offset {header.base_offset}, "
                    f"expected {expected_offset}"
                )
                break
            self._note_batch(
                batch_position, header.base_offset, header.size_bytes, header.max_timestamp_ms
            )
            if on_batch is not None:
                on_batch(header)
            expected_offset = header.next_offset
        else:
            reason = scanner.stop_reason
        self.next_offset = expected_offset
        self.size = scanner.position
        if self.size > 0:
            first = await BatchScanner(backend, self.fd, 0, self.size, check_crc=False).next()
            self.first_timestamp_ms = first[1].max_timestamp_ms if first else None
        return scanner.position, reason

    async def max_timestamp_ms(self, backend: FileBackend) -> int:
        """Largest batch timestamp in the segment (computed once for old segments)."""
        if self._max_timestamp_ms is None:
            await self.ensure_index(backend)
            if self._max_timestamp_ms is None:
                _, position, max_before = self.index.last_entry()
                result = max_before
                scanner = BatchScanner(backend, self.fd, position, self.size, check_crc=False)
                while (item := await scanner.next()) is not None:
                    result = max(result, item[1].max_timestamp_ms)
                self._max_timestamp_ms = result
        return self._max_timestamp_ms

    # --- reads ----------------------------------------------------------------------

    async def find_position(self, backend: FileBackend, offset: int) -> int | None:
        """Position of the batch holding ``offset`` (or the next one); None past the end."""
        await self.ensure_index(backend)
        _, position = self.index.lookup(offset)
        scanner = BatchScanner(
            backend,
            self.fd,
            position,
            self.size,
            check_crc=False,
            chunk_bytes=self._index_interval_bytes + 2 * BATCH_HEADER_BYTES,
        )
        while (item := await scanner.next()) is not None:
            batch_position, header = item
            if header.last_offset >= offset:
                return batch_position
        if scanner.stop_reason is not None:
            # The segment holds only whole batches up to its size: a batch
            # that does not parse on the way to ``offset`` is damage, and
            # skipping to the next segment would skip records silently.
            raise self._corrupt(scanner.position, scanner.stop_reason)
        return None

    def _corrupt(self, position: int, reason: str) -> CorruptLogError:
        return CorruptLogError(
            f"{self.log_path} is damaged at byte {position}: {reason}; the records "
            "before it stay readable; restore the file, or move the log start past "
            "the damage with DeleteRecords",
            path=self.log_path,
            position=position,
        )

    async def boundary_position(self, backend: FileBackend, offset: int) -> int | None:
        """Position where the batch starting at ``offset`` begins, for recovery.

        Walks only the batches before ``offset`` (trusted: they were synced),
        never the batch at ``offset``, which may be torn or corrupt. None if
        those batches do not end exactly at ``offset``.
        """
        await self.ensure_index(backend)
        expected, position = self.index.lookup(offset)
        scanner = BatchScanner(backend, self.fd, position, self.size, check_crc=False)
        while expected < offset:
            item = await scanner.next()
            if item is None or item[1].base_offset != expected:
                return None
            expected = item[1].next_offset
        return scanner.position if expected == offset else None

    async def find_timestamp_position(
        self, backend: FileBackend, timestamp_ms: int
    ) -> tuple[int, BatchHeader] | None:
        """First batch whose max timestamp is >= ``timestamp_ms``, or None."""
        await self.ensure_index(backend)
        position = self.index.lookup_timestamp(timestamp_ms)
        scanner = BatchScanner(backend, self.fd, position, self.size, check_crc=False)
        while (item := await scanner.next()) is not None:
            if item[1].max_timestamp_ms >= timestamp_ms:
                return item
        return None

    async def read(
        self,
        backend: FileBackend,
        position: int,
        max_bytes: int,
        *,
        oversized_first_batch: bool = True,
        end: int | None = None,
        first_offset: int | None = None,
    ) -> bytes:
        """Whole, intact batches from ``position``, at most ``max_bytes``, up to ``end``.

        A first batch larger than ``max_bytes`` is returned whole if
        ``oversized_first_batch``, else nothing is. Every batch returned is
        checked as it was written (framing, CRC32C, offsets following on from
        ``first_offset``, which the first batch must hold): the data stops
        before a damaged batch, and CorruptLogError is raised if the first one
        is damaged. ``end`` (default: the segment's size) keeps the read below
        a byte position.
        """
        limit = self.size if end is None else min(end, self.size)
        available = limit - position
        if available <= 0 or (max_bytes <= 0 and not oversized_first_batch):
            await trio.lowlevel.checkpoint()
            return b""
        data = await backend.pread(
            self.fd, min(available, max(max_bytes, BATCH_HEADER_BYTES)), position
        )
        try:
            first = read_batch_header(data)
        except ProtocolError as error:
            raise self._corrupt(position, str(error)) from None
        if first.size_bytes > available:
            raise self._corrupt(
                position,
                f"the batch claims {first.size_bytes} bytes, {available} remain in the segment",
            )
        if first.size_bytes > max_bytes and not oversized_first_batch:
            return b""
        if first.size_bytes > len(data):
            data = await backend.pread(self.fd, first.size_bytes, position)
        whole = self._intact_prefix(data, position, first_offset)
        return data if whole == len(data) else data[:whole]

    async def whole_batches_end(
        self,
        backend: FileBackend,
        position: int,
        max_bytes: int,
        *,
        oversized_first_batch: bool = True,
        end: int | None = None,
    ) -> tuple[int, int]:
        """Where the whole batches from ``position`` that fit ``max_bytes`` end, and the
        offset after them: what :meth:`read` would return, found from batch headers only.

        Returns ``(position, -1)`` when nothing fits. Used for zero-copy reads,
        whose bytes never pass through Python: the index gives the last batch
        boundary before the budget's end, and the headers after it (less than
        one index interval of them, or one large batch) are read to find the
        exact one. Batches are framed but not CRC-checked here (the client
        checks CRCs, as with Kafka's sendfile path). A batch that does not
        parse ends the run; CorruptLogError if it is the first.
        """
        await self.ensure_index(backend)
        limit = self.size if end is None else min(end, self.size)
        if limit <= position or (max_bytes <= 0 and not oversized_first_batch):
            return position, -1
        if limit == self.size and limit - position <= max_bytes:
            # To the segment's end: its size and next offset move together.
            return limit, self.next_offset
        target = min(limit, position + max(max_bytes, 0))
        entry_offset, entry_position = self.index.lookup_position(target)
        found, next_offset = position, -1
        if entry_position > position:
            found, next_offset = entry_position, entry_offset
        scanner = BatchScanner(
            backend,
            self.fd,
            found,
            limit,
            check_crc=False,
            chunk_bytes=self._index_interval_bytes + 2 * BATCH_HEADER_BYTES,
        )
        while (item := await scanner.next()) is not None:
            batch_position, header = item
            batch_end = batch_position + header.size_bytes
            if batch_end > target:
                if batch_position == position and oversized_first_batch:
                    return batch_end, header.next_offset
                return found, next_offset
            found, next_offset = batch_end, header.next_offset
        if scanner.stop_reason is not None and found == position:
            raise self._corrupt(scanner.position, scanner.stop_reason)
        return found, next_offset

    def _intact_prefix(self, data: bytes, position: int, first_offset: int | None) -> int:
        """Bytes of the whole, intact batches at the start of ``data`` (read at ``position``).

        A partial batch at the end (the byte budget ended inside it) is left
        out; a damaged batch ends the run, and raises if it is the first.
        """
        end = 0
        expected_offset: int | None = None
        size = len(data)
        while size - end >= BATCH_HEADER_BYTES:
            try:
                header = read_batch_header(data, end)
                if end + header.size_bytes > size:
                    if position + end + header.size_bytes <= self.size:
                        break  # whole in the file, cut by the budget
                    raise ProtocolError(
                        f"the batch claims {header.size_bytes} bytes, past the segment's end"
                    )
                # CRC valid after read: what left the disk is what was written.
                check_batch_crc(data, end, header)
                if expected_offset is None:
                    # The base offset is outside the CRC: check it against
                    # the offset the read was for.
                    if first_offset is not None and not (
                        header.base_offset <= first_offset <= header.last_offset
                    ):
                        raise ProtocolError(
                            f"the batch at offsets {header.base_offset}-{header.last_offset} "
                            f"should hold offset {first_offset}"
                        )
                elif header.base_offset != expected_offset:
                    raise ProtocolError(
                        f"batch base offset {header.base_offset} does not follow "
                        f"the previous batch's end {expected_offset}"
                    )
            except ProtocolError as error:
                if end == 0:
                    raise self._corrupt(position, str(error)) from None
                break  # serve what came before; the next read reports the damage
            expected_offset = header.next_offset
            end += header.size_bytes
        if end == 0:
            raise self._corrupt(position, f"{size} bytes do not hold a whole batch")
        return end

"""PartitionLog: one partition's ordered segments, appends, durability, recovery.

Offsets, per partition::

    log_start_offset <= log_end_offset == high_watermark
    durable_offset <= log_end_offset

- ``log_end_offset``: offset after the last batch written to the file (in
  the page cache, readable).
- ``durable_offset``: everything below it is covered by a completed
  fdatasync (and the directory entries of its files are synced). It may lag
  below ``log_start_offset`` when retention deleted segments that were never
  synced; the next flush moves it up.
- ``high_watermark``: what readers may see. trioring has one replica per
  partition, so, as in Kafka with replication factor 1, it equals the log end
  offset; it is a watchable value that wakes long-poll fetches.

Appends are coalesced: whoever holds the write lock writes every pending
batch with one pwritev, so under load many producers share each system call.
Flushes are group commits: one fdatasync covers every batch written before
it started, and callers waiting for an offset it covered return together.

A failed fdatasync takes the log offline for writes (PostgreSQL's fsyncgate
lesson): Linux may have dropped the dirty pages it could not write, and a
retried fdatasync could then report success for data that is not on disk,
so nothing past the durable offset is trusted again. The high watermark
drops to the durable offset at once (acks=1 data past it is lost, as it
would be in a power cut; acks=all data past it was never acknowledged), and
reads stop there. Whoever owns the log (the shard) then closes it, which cuts
the untrusted bytes off the files, and reopens it with ``discard_after`` set
to :attr:`PartitionLog.untrusted_after`, which cuts them again if the close
could not, before the usual recovery.

The recovery point (``recovery-point`` file) is a checkpoint of the durable
offset. On open, batches from the recovery point to the end of the log are
CRC-checked and a torn or corrupt tail is truncated; everything before the
recovery point was synced and is trusted, so start-up never rescans old
segments.
"""

from __future__ import annotations

import bisect
import json
import logging
import os
from collections.abc import Callable
from time import monotonic
from typing import NamedTuple

import attrs
import trio
import trio_util

from trioring._constants import (
    APPEND_SCHEDULE_INTERVAL_SECONDS,
    APPENDS_PENDING_MAX,
    BATCH_LOG_OVERHEAD_BYTES,
    INDEX_INTERVAL_BYTES_DEFAULT,
    RETENTION_MS_DEFAULT,
    SEGMENT_BYTES_DEFAULT,
    SEGMENT_BYTES_MAX,
    SEGMENT_BYTES_MIN,
    SEGMENT_MS_DEFAULT,
    WRITE_BATCHES_MAX,
    WRITE_BYTES_MAX,
)
from trioring._logging import RateLimitedLogger
from trioring.errors import (
    BrokerClosedError,
    CorruptLogError,
    InvalidArgumentError,
    OffsetOutOfRangeError,
    StorageError,
)
from trioring.protocol.records import (
    NO_PRODUCER_ID,
    BatchHeader,
    encode_base_offset,
    list_batches,
)
from trioring.storage.files import TEMPORARY_SUFFIX, read_file, replace_file
from trioring.storage.index import NO_TIMESTAMP
from trioring.storage.producers import ProducerStateTable
from trioring.storage.segment import (
    INDEX_SUFFIX,
    LOG_SUFFIX,
    AppendedBatch,
    LogSegment,
)
from trioring.storage.slices import FileRange, LogSlice
from trioring.uring import Buffer, FileBackend

logger = logging.getLogger("trioring.storage")
#: Failed appends: one line per partition per minute, with the count of the
#: others (a full disk fails every produce, and each would log a line).
append_failures_log = RateLimitedLogger(logger, burst=1, interval_seconds=60.0)
#: Failed reads (EIO): one line per partition per minute.
read_failures_log = RateLimitedLogger(logger, burst=1, interval_seconds=60.0)
#: Damaged batches: one line per damaged position per minute, however many
#: consumers trip over it.
corruption_log = RateLimitedLogger(logger, burst=1, interval_seconds=60.0)

RECOVERY_POINT_FILE = "recovery-point"
#: The log start offset DeleteRecords set, when it lies inside the first segment
#: (Kafka keeps it in log-start-offset-checkpoint); written durably before the
#: DeleteRecords is answered.
LOG_START_OFFSET_FILE = "log-start-offset"
_RECOVERY_POINT_MAGIC = "trioring-recovery-point-v2"
_RECOVERY_POINT_MAGIC_V1 = "trioring-recovery-point-v1"
#: Idempotent producers silent this long are forgotten (Kafka: producer.id.expiration.ms).
PRODUCER_EXPIRATION_MS = 24 * 3600 * 1000

Clock = Callable[[], float]
"""Wall clock in seconds (injected so tests control time-based roll and retention)."""


@attrs.frozen
class LogConfig:
    """Per-partition storage settings (Kafka's topic-level config names in comments)."""

    segment_bytes: int = SEGMENT_BYTES_DEFAULT  # segment.bytes
    segment_ms: int = SEGMENT_MS_DEFAULT  # segment.ms
    retention_bytes: int | None = None  # retention.bytes (None = unlimited)
    retention_ms: int | None = RETENTION_MS_DEFAULT  # retention.ms (None = forever)
    index_interval_bytes: int = INDEX_INTERVAL_BYTES_DEFAULT  # index.interval.bytes

    def __attrs_post_init__(self) -> None:
        if not SEGMENT_BYTES_MIN <= self.segment_bytes <= SEGMENT_BYTES_MAX:
            raise InvalidArgumentError(
                f"segment_bytes must be between {SEGMENT_BYTES_MIN} and {SEGMENT_BYTES_MAX}, "
                f"not {self.segment_bytes}"
            )
        if self.segment_ms <= 0:
            raise InvalidArgumentError(f"segment_ms must be positive, not {self.segment_ms}")
        if self.retention_bytes is not None and self.retention_bytes < 0:
            raise InvalidArgumentError("retention_bytes must be >= 0 or None for unlimited")
        if self.retention_ms is not None and self.retention_ms < 0:
            raise InvalidArgumentError("retention_ms must be >= 0 or None for forever")
        if self.index_interval_bytes <= 0:
            raise InvalidArgumentError("index_interval_bytes must be positive")


@attrs.frozen
class DurableEnd:
    """Where a log's durable part ends: its offset, and that offset's byte
    position in the segment it falls in."""

    offset: int
    segment_base: int
    position: int


class AppendInfo(NamedTuple):
    """Where an append landed (a tuple: one is made per append)."""

    base_offset: int
    last_offset: int
    log_append_time_ms: int
    log_start_offset: int


@attrs.frozen
class ReadResult:
    """Whole batches starting with the one that holds the requested offset."""

    data: bytes
    high_watermark: int
    log_start_offset: int


@attrs.frozen
class SlicedReadResult:
    """What :meth:`PartitionLog.read_sliced` returns: the data may be file ranges."""

    data: bytes | LogSlice
    high_watermark: int
    log_start_offset: int


class _Role:
    """An exclusive role (the writer, the syncer) that waiters do not queue for.

    Unlike trio.Lock, releasing it wakes every waiter at once; each re-checks
    whether its work was done meanwhile and returns, and one of the rest
    takes the role. A producer whose batch another task wrote, or whose
    offsets another task's fdatasync covered, never holds the role: that is
    what keeps coalesced writes and group commit cheap.
    """

    def __init__(self) -> None:
        self.held = False
        # A parking lot rather than an Event per release: releasing with
        # nobody waiting (a lone producer, every append) allocates nothing.
        self._waiters = trio.lowlevel.ParkingLot()

    def try_acquire(self) -> bool:
        if self.held:
            return False
        self.held = True
        return True

    def release(self) -> None:
        assert self.held
        self.held = False
        if self._waiters:
            self._waiters.unpark_all()

    async def wait_released(self) -> None:
        """Wait for the next release (the caller saw the role held)."""
        await self._waiters.park()

    async def acquire(self) -> None:
        """Take the role, waiting for the holder if needed (for rare exclusive work)."""
        await trio.lowlevel.checkpoint_if_cancelled()
        if not self.try_acquire():
            while True:
                await self.wait_released()
                if self.try_acquire():
                    return
        # Held from here: a Cancelled now would leak the role, because callers
        # enter their try/finally only after acquire returns.
        await trio.lowlevel.cancel_shielded_checkpoint()


@attrs.define(eq=False)
class _PendingAppend:
    data: bytes | bytearray | memoryview
    headers: list[tuple[int, BatchHeader]]
    size_bytes: int
    taken: bool = False
    result: AppendInfo | None = None
    error: BaseException | None = None


class PartitionLog:
    """Use :meth:`open`; see the module docstring for the model."""

    def __init__(
        self,
        directory: str,
        config: LogConfig,
        backend: FileBackend,
        clock: Clock,
        on_failure: Callable[[], None] | None = None,
    ) -> None:
        self.directory = directory
        self.config = config
        self._backend = backend
        self._clock = clock
        self._segments: list[LogSegment] = []
        self._segment_bases: list[int] = []
        self._log_end_offset = 0
        self._durable_offset = 0
        #: The start DeleteRecords asked for; the first segment's base may pass it.
        self._start_offset = 0
        #: One DeleteRecords at a time writes the start offset file.
        self._start_lock = trio.Lock()
        self.high_watermark: trio_util.AsyncValue[int] = trio_util.AsyncValue(0)
        self._pending: list[_PendingAppend] = []
        self._writer = _Role()
        self._syncer = _Role()
        #: monotonic() after the last schedule point an append took.
        self._scheduled_at = -APPEND_SCHEDULE_INTERVAL_SECONDS
        #: Idempotent producers' sequences, as of the log end offset.
        self.producers = ProducerStateTable()
        self._directory_dirty = False
        self._checkpointed_offset = -1
        self._failure: StorageError | None = None
        #: Where the durable part ends, kept with the durable offset.
        self._durable_end = DurableEnd(0, 0, 0)
        #: Set by a failed fdatasync: nothing past it is trusted or read.
        self._untrusted_after: DurableEnd | None = None
        #: Called once when the log goes offline (its owner recovers it).
        self._on_failure = on_failure
        self._closed = False

    # --- offsets ----------------------------------------------------------------

    @property
    def log_start_offset(self) -> int:
        return max(self._start_offset, self._segments[0].base_offset)

    @property
    def log_end_offset(self) -> int:
        return self._log_end_offset

    @property
    def durable_offset(self) -> int:
        return self._durable_offset

    @property
    def failure(self) -> StorageError | None:
        """Why the log is offline for writes (None while it is not)."""
        return self._failure

    @property
    def untrusted_after(self) -> DurableEnd | None:
        """After a failed fdatasync, the durable end past which the files are not trusted."""
        return self._untrusted_after

    @property
    def size_bytes(self) -> int:
        return sum(s.size for s in self._segments)

    @property
    def segment_count(self) -> int:
        return len(self._segments)

    def statistics(self) -> dict[str, int]:
        return {
            "log_start_offset": self.log_start_offset,
            "durable_offset": self._durable_offset,
            "log_end_offset": self._log_end_offset,
            "high_watermark": self.high_watermark.value,
            "segments": len(self._segments),
            "size_bytes": self.size_bytes,
        }

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    # --- open and recovery ------------------------------------------------------

    @classmethod
    async def open(
        cls,
        directory: str,
        config: LogConfig,
        backend: FileBackend,
        clock: Clock,
        *,
        discard_after: DurableEnd | None = None,
        on_failure: Callable[[], None] | None = None,
    ) -> PartitionLog:
        """Open (creating if needed) the log in ``directory``, recovering after a crash.

        ``discard_after``: the :attr:`untrusted_after` of this log's last
        incarnation; everything past it is cut off before recovery.
        ``on_failure`` is called when the log goes offline for writes.
        """
        log = cls(directory, config, backend, clock, on_failure)
        try:
            await log._load(discard_after)
        except BaseException:
            with trio.CancelScope(shield=True):
                await log._close_segments()
            raise
        return log

    async def _load(self, discard_after: DurableEnd | None) -> None:
        backend = self._backend
        # abspath only consults the working directory: no disk I/O.
        parent = os.path.dirname(os.path.abspath(self.directory))  # noqa: ASYNC240
        if await backend.make_directory(self.directory):
            await backend.fsync_directory(parent)
        names = await backend.list_directory(self.directory)
        bases = sorted(
            int(name[: -len(LOG_SUFFIX)])
            for name in names
            if name.endswith(LOG_SUFFIX) and name[: -len(LOG_SUFFIX)].isdigit()
        )
        for name in names:
            # An index without its log, or a half-written checkpoint, is debris.
            stem = name.rpartition(".")[0]
            if (
                name.endswith(INDEX_SUFFIX) and stem.isdigit() and int(stem) not in bases
            ) or name.endswith(TEMPORARY_SUFFIX):
                await backend.unlink(os.path.join(self.directory, name))
        if not bases and discard_after is not None and discard_after.offset > 0:
            # Every segment file is gone, yet the log had durable data: a new
            # log at 0 would hand out its offsets again.
            raise StorageError(
                f"{self.directory} lost its segment files; it held offsets up to "
                f"{discard_after.offset}: restore them or delete the partition"
            )
        if not bases:
            await self._add_segment(0, create=True)
            await backend.fsync_directory(self.directory)
            self._log_end_offset = self._durable_offset = 0
            self.high_watermark.value = 0
            await self.checkpoint()
            return
        for base in bases:
            await self._add_segment(base, create=False)
        for earlier, later in zip(self._segments, self._segments[1:], strict=False):
            earlier.next_offset = later.base_offset
        recovery_point = await self._read_recovery_point()
        if discard_after is not None:
            await self._discard_after(discard_after)
            if recovery_point is not None:
                recovery_point = min(recovery_point, discard_after.offset)
        await self._recover(recovery_point)
        await self._read_start_offset()

    async def _read_start_offset(self) -> None:
        raw = await read_file(self._backend, os.path.join(self.directory, LOG_START_OFFSET_FILE))
        if raw is None:
            return
        try:
            offset = int(raw.decode("ascii").strip())
        except (UnicodeDecodeError, ValueError):
            logger.warning(
                "%s: unreadable %s %r; the log starts at its first segment",
                self.directory,
                LOG_START_OFFSET_FILE,
                raw[:40],
            )
            return
        if offset > self._log_end_offset:
            # Records were deleted up to an offset whose data (acks=0/1, not yet
            # synced) did not survive the crash. The log start is durable and
            # was reported: start the log empty there, as Kafka does
            # (truncateFullyAndStartAt), so no offset below it is handed out
            # again and the log start never goes back.
            logger.warning(
                "%s: the log start offset %d is past the recovered log end %d; "
                "the log starts empty at %d",
                self.directory,
                offset,
                self._log_end_offset,
                offset,
            )
            await self._start_empty_at(offset)
        self._start_offset = max(offset, 0)

    async def _start_empty_at(self, offset: int) -> None:
        """Replace every segment with one empty segment at ``offset`` (recovery only)."""
        backend = self._backend
        for segment in self._segments:
            await segment.delete(backend)
        self._segments.clear()
        self._segment_bases.clear()
        active = await self._add_segment(offset, create=True)
        await backend.fsync_directory(self.directory)
        self._log_end_offset = self._durable_offset = offset
        self._durable_end = DurableEnd(offset, active.base_offset, 0)
        self.high_watermark.value = offset
        # The batches the producer state described are gone with their segments.
        self.producers = ProducerStateTable()
        await self.checkpoint()

    async def _add_segment(self, base_offset: int, *, create: bool) -> LogSegment:
        segment = LogSegment(self.directory, base_offset, self.config.index_interval_bytes)
        await segment.open(self._backend, create=create)
        self._segments.append(segment)
        self._segment_bases.append(base_offset)
        return segment

    async def _read_recovery_point(self) -> int | None:
        """The checkpointed offset, loading the producer state saved with it."""
        path = os.path.join(self.directory, RECOVERY_POINT_FILE)
        raw = await read_file(self._backend, path)
        if raw is None:
            return None
        text = raw.decode("utf-8", "replace")
        fields = text.split(maxsplit=2)
        try:
            if len(fields) == 2 and fields[0] == _RECOVERY_POINT_MAGIC_V1:
                return int(fields[1])
            if len(fields) == 3 and fields[0] == _RECOVERY_POINT_MAGIC:
                offset = int(fields[1])
                self.producers = ProducerStateTable.from_json(json.loads(fields[2]))
                return offset
        except (ValueError, TypeError, KeyError):
            self.producers = ProducerStateTable()
        logger.warning("%s: unreadable recovery point %r; checking the whole log", path, text[:200])
        return None

    async def _recover(self, recovery_point: int | None) -> None:
        """Validate from the recovery point to the end; truncate a bad tail."""
        backend = self._backend
        segments = self._segments
        slot, start_position = 0, 0
        if recovery_point is not None and recovery_point >= segments[0].base_offset:
            slot = bisect.bisect_right(self._segment_bases, recovery_point) - 1
            # Not find_position: the batch at the recovery point is unsynced
            # and may be torn or corrupt; only the batches before it are trusted.
            position = await segments[slot].boundary_position(backend, recovery_point)
            if position is None:
                logger.warning(
                    "%s: recovery point %d is not a batch boundary; checking the whole log",
                    self.directory,
                    recovery_point,
                )
                slot = 0
            else:
                start_position = position
        if slot == 0 and start_position == 0:
            # Everything is replayed: the saved producer state would count twice.
            self.producers = ProducerStateTable()
        scanned_bytes = 0
        for index in range(slot, len(segments)):
            segment = segments[index]
            if index > slot:
                start_position = 0
            file_size = await backend.file_size(segment.fd)
            end, reason = await segment.recover(
                backend, start_position, on_batch=self._replay_producer_batch
            )
            scanned_bytes += end - start_position
            if (
                reason is None
                and index + 1 < len(segments)
                and segment.next_offset != segments[index + 1].base_offset
            ):
                # A segment ends where the next begins; if not, the end of this
                # one was lost (unsynced) and what follows must go too.
                reason = (
                    f"segment ends at offset {segment.next_offset} but the next segment "
                    f"starts at {segments[index + 1].base_offset}"
                )
            if end < file_size or reason is not None:
                logger.warning(
                    "%s: truncating %d bytes at position %d (offset %d): %s",
                    segment.log_path,
                    file_size - end,
                    end,
                    segment.next_offset,
                    reason,
                )
                await segment.truncate(backend, end)
                for later in segments[index + 1 :]:
                    logger.warning(
                        "%s: deleting segment after the truncation point", later.log_path
                    )
                    await later.delete(backend)
                del segments[index + 1 :]
                del self._segment_bases[index + 1 :]
                self._directory_dirty = True
                break
        active = segments[-1]
        await active.ensure_index(backend)
        self._log_end_offset = active.next_offset
        # What survived the crash may still be only in the page cache: make it
        # durable before calling it durable.
        for segment in segments[slot:]:
            segment.synced_size = 0
            await segment.sync(backend)
        if self._directory_dirty:
            await backend.fsync_directory(self.directory)
            self._directory_dirty = False
        self._durable_offset = self._log_end_offset
        self._durable_end = DurableEnd(self._log_end_offset, active.base_offset, active.size)
        self.high_watermark.value = self._log_end_offset
        if scanned_bytes:
            logger.info(
                "%s: recovered, checked %d bytes from offset %s; log end offset %d",
                self.directory,
                scanned_bytes,
                recovery_point,
                self._log_end_offset,
            )
        await self.checkpoint()

    async def _discard_after(self, end: DurableEnd) -> None:
        """Cut everything past ``end`` off the files (see the module docstring).

        Idempotent: a close may have made the cut already, or made part of it.
        """
        backend = self._backend
        segments = self._segments
        bases = self._segment_bases
        position: int | None = end.position
        if end.segment_base in bases:
            slot = bases.index(end.segment_base)
        elif end.segment_base < bases[0]:
            # Retention deleted the segment the durable end was in (it lagged
            # below the log start): nothing left was ever synced.
            slot, position = 0, 0
        else:  # not found but older ones are: those were wholly durable
            slot, position = bisect.bisect_right(bases, end.segment_base) - 1, None
        discarded = 0
        for later in segments[slot + 1 :]:
            discarded += later.size
            await later.delete(backend)
        del segments[slot + 1 :]
        del bases[slot + 1 :]
        segment = segments[slot]
        if position is not None and segment.size > position:
            discarded += segment.size - position
            await segment.ensure_index(backend)
            await segment.truncate(backend, position)
            # The cut must outlive a power cut too, or recovery would find
            # the untrusted bytes again (if the disk kept them).
            await backend.fdatasync(segment.fd)
        await backend.fsync_directory(self.directory)
        if discarded:
            logger.warning(
                "%s: discarded %d bytes past offset %d, the last one a successful "
                "fdatasync covered (after a failed fdatasync the page cache may hold "
                "data the disk does not)",
                self.directory,
                discarded,
                end.offset,
            )

    def _replay_producer_batch(self, header: BatchHeader) -> None:
        self.producers.record(header, header.base_offset, header.max_timestamp_ms)

    # --- appends ------------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._closed:
            raise BrokerClosedError(f"partition log {self.directory} is closed")
        if self._failure is not None:
            raise StorageError(
                f"partition log {self.directory} is offline after a disk error "
                f"({self._failure}); it is being recovered from disk, retry"
            )

    def _fail(self, failure: StorageError, *, untrusted: bool) -> None:
        """Take the log offline for writes; ``untrusted``: after a failed fdatasync."""
        logger.error("%s is offline for writes: %s", self.directory, failure)
        first = self._failure is None
        self._failure = self._failure or failure
        if untrusted and self._untrusted_after is None:
            self._untrusted_after = self._durable_end
            # Readers see only what is on disk from now on; the recovery
            # cuts the rest off the files.
            visible = max(self._durable_offset, self.log_start_offset)
            if visible < self.high_watermark.value:
                logger.error(
                    "%s: offsets %d-%d were written but not synced and are lost; "
                    "the high watermark goes back to %d",
                    self.directory,
                    visible,
                    self.high_watermark.value - 1,
                    visible,
                )
                self.high_watermark.value = visible
        if first and self._on_failure is not None:
            self._on_failure()

    async def append(
        self,
        data: bytes | bytearray | memoryview,
        headers: list[tuple[int, BatchHeader]] | None = None,
    ) -> AppendInfo:
        """Append one or more whole RecordBatch v2 and assign their offsets.

        ``data`` must already be validated (magic, CRC, sizes: the produce
        handler does that, and may pass the ``headers`` it parsed); only the
        base offsets are rewritten. Returns after the data is written
        (readable), not after it is durable: call :meth:`flush` with
        ``info.last_offset + 1`` for that.

        Always a cancel point. A schedule point too, except that with a
        backend that writes inline, appends within
        ``APPEND_SCHEDULE_INTERVAL_SECONDS`` of this log's last schedule
        point skip theirs (as trio#1757 proposes for Trio): a producer looping
        on acks=1 appends lets other tasks run at least that often.
        """
        # The cancel point of an append is here, before anything is queued:
        # from the moment a group is taken for writing nothing in the write
        # path raises Cancelled (backend writes never do; rolls and undoing a
        # failed write are shielded), so no waiter is left without an outcome.
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._closed or self._failure is not None:
            self._check_usable()
        if headers is None:
            headers = list_batches(data)
        if not headers:
            raise InvalidArgumentError("append needs at least one record batch")
        entry = _PendingAppend(data, headers, len(data))
        if not self._pending and self._writer.try_acquire():
            # Nothing queued and nobody writing (a lone producer): this append
            # is a group of its own and skips the queue.
            entry.taken = True
            try:
                await self._write_group([entry], entry.size_bytes)
            finally:
                self._writer.release()
        else:
            await self._append_queued(entry)
        if entry.error is not None:
            raise entry.error
        assert entry.result is not None
        return entry.result

    async def _append_queued(self, entry: _PendingAppend) -> None:
        """Queue ``entry``; write groups (taking turns as the writer) until it is written."""
        while len(self._pending) >= APPENDS_PENDING_MAX:
            await self._writer.wait_released()
        self._pending.append(entry)
        try:
            while entry.result is None and entry.error is None:
                if self._writer.try_acquire():
                    try:
                        await self._write_next_group()
                    finally:
                        self._writer.release()
                else:
                    await self._writer.wait_released()
        except BaseException:
            if not entry.taken:
                self._pending.remove(entry)
            raise

    async def _write_next_group(self) -> None:
        """Write the oldest pending appends, up to the write limits (writer role held).

        Each append learns its own outcome through its entry; a failed group
        does not stop later groups from trying.
        """
        group: list[_PendingAppend] = []
        batch_count = 0
        group_bytes = 0
        for entry in self._pending:
            if group and (
                batch_count + len(entry.headers) > WRITE_BATCHES_MAX
                or group_bytes + entry.size_bytes > WRITE_BYTES_MAX
            ):
                break
            group.append(entry)
            batch_count += len(entry.headers)
            group_bytes += entry.size_bytes
        del self._pending[: len(group)]
        for entry in group:
            entry.taken = True
        # A WAL write cannot be taken back once issued; its waiters must
        # learn its real outcome. No cancel scope shields this (entering one
        # cost about a quarter of a lone producer's overhead): backend writes
        # are never cancelled, and the rare steps that could be (a roll,
        # undoing a failed write) shield themselves.
        await self._write_group(group, group_bytes)

    def _must_roll(self, incoming_bytes: int, first_offset: int, now_ms: int) -> bool:
        """Whether ``incoming_bytes`` starting at ``first_offset`` go to a new segment."""
        active = self._segments[-1]
        if active.size == 0:
            return False
        return (
            active.size + incoming_bytes > self.config.segment_bytes
            or (
                active.first_timestamp_ms is not None
                and now_ms - active.first_timestamp_ms >= self.config.segment_ms
            )
            or first_offset - active.base_offset > (1 << 31)  # relative offsets are int32
        )

    async def _roll(self) -> LogSegment:
        active = self._segments[-1]
        await active.index.write_pending(self._backend)
        segment = await self._add_segment(self._log_end_offset, create=True)
        self._directory_dirty = True
        logger.debug("%s: rolled to segment %d", self.directory, segment.base_offset)
        return segment

    async def roll(self) -> None:
        """Start a new segment now (if the active one holds data)."""
        self._check_usable()
        await self._writer.acquire()
        try:
            if self._segments[-1].size:
                await self._roll()
        finally:
            self._writer.release()

    async def _write_group(self, group: list[_PendingAppend], group_bytes: int) -> None:
        now_ms = self._now_ms()
        next_offset = self._log_end_offset
        try:
            if self._closed or self._failure is not None:
                self._check_usable()
            try:
                if self._must_roll(group_bytes, next_offset, now_ms):
                    with trio.CancelScope(shield=True):  # see _write_next_group
                        segment = await self._roll()
                else:
                    segment = self._segments[-1]
            except OSError as error:
                raise StorageError(
                    f"starting a new segment in {self.directory} failed: {error}; "
                    "nothing from this request was acknowledged"
                ) from error
            # The hot path of every produce: locals, positional tuples.
            buffers: list[Buffer] = []
            batches: list[AppendedBatch] = []
            results: list[AppendInfo] = []
            log_start_offset = self._segments[0].base_offset
            for entry in group:
                view = memoryview(entry.data)
                base = next_offset
                for position, header in entry.headers:
                    size = BATCH_LOG_OVERHEAD_BYTES + header.batch_length
                    # The base offset sits outside the CRC: write it as its
                    # own iovec and the rest of the batch verbatim.
                    buffers.append(encode_base_offset(next_offset))
                    buffers.append(view[position + 8 : position + size])
                    batches.append(AppendedBatch(next_offset, size, header.max_timestamp_ms))
                    next_offset += header.last_offset_delta + 1
                results.append(AppendInfo(base, next_offset - 1, now_ms, log_start_offset))
            previous_size = segment.size
            try:
                if self._backend.writes_inline:
                    # The append's schedule point, unless this log took one
                    # moments ago (see APPEND_SCHEDULE_INTERVAL_SECONDS). It
                    # is taken holding the writer role, so producers arriving
                    # meanwhile queue up and go out together in the next write.
                    if monotonic() - self._scheduled_at >= APPEND_SCHEDULE_INTERVAL_SECONDS:
                        await trio.lowlevel.cancel_shielded_checkpoint()
                        self._scheduled_at = monotonic()
                    segment.append_now(self._backend, buffers, batches, next_offset, group_bytes)
                else:
                    await segment.append(self._backend, buffers, batches, next_offset, group_bytes)
            except OSError as error:
                await self._undo_failed_write(segment, previous_size, error)
                raise StorageError(
                    f"writing {group_bytes} bytes to {segment.log_path} failed: {error}; "
                    "nothing from this request was acknowledged"
                ) from error
        except Exception as error:  # every append in the group gets the same outcome
            for entry in group:
                entry.error = error
            if isinstance(error, StorageError):
                append_failures_log.warning(
                    "%s: appends fail: %s", self.directory, error, key=self.directory
                )
            return
        if self._failure is not None:
            # An fdatasync failed while this group was being written: the log
            # is offline, its recovery cuts these bytes; they are neither
            # acknowledged nor shown to readers.
            self._log_end_offset = next_offset
            offline = StorageError(
                f"partition log {self.directory} went offline while this was written "
                f"({self._failure}); nothing from this request was acknowledged"
            )
            for entry in group:
                entry.error = offline
            return
        for entry, result in zip(group, results, strict=True):
            entry.result = result
            base = result.base_offset
            for _, header in entry.headers:
                if header.producer_id != NO_PRODUCER_ID:
                    self.producers.record(header, base, header.max_timestamp_ms)
                base += header.last_offset_delta + 1
        self._log_end_offset = next_offset
        self.high_watermark.value = next_offset

    async def _undo_failed_write(self, segment: LogSegment, size: int, error: OSError) -> None:
        """Cut a partial write off so the file holds only whole batches."""
        try:
            with trio.CancelScope(shield=True):  # see _write_next_group
                await segment.truncate(self._backend, size)
        except OSError as truncate_error:
            # The page cache is sound (nothing failed to sync): recovery
            # finds the partial write as a torn tail and cuts it.
            self._fail(
                StorageError(
                    f"{segment.log_path}: write failed ({error}) and truncating the partial "
                    f"write failed too ({truncate_error})"
                ),
                untrusted=False,
            )

    # --- durability ---------------------------------------------------------------

    async def flush(self, offset: int | None = None) -> None:
        """Return once every offset below ``offset`` (default: all written) is durable.

        Group commit: concurrent callers share fdatasyncs. A failed fdatasync
        takes the partition offline: after such a failure Linux may have
        dropped the dirty pages, so retrying could falsely report success.
        """
        target = self._log_end_offset if offset is None else offset
        assert target <= self._log_end_offset, "cannot flush offsets not yet written"
        if self._durable_offset >= target:
            await trio.lowlevel.checkpoint()
            return
        while self._durable_offset < target:
            self._check_usable()
            if self._syncer.try_acquire():
                try:
                    with trio.CancelScope(shield=True):
                        await self._sync_all()
                finally:
                    self._syncer.release()
            else:
                await self._syncer.wait_released()

    async def _sync_all(self) -> None:
        covered = self._log_end_offset
        # The active segment ends exactly at the log end offset here (both
        # move together, without a checkpoint between).
        active = self._segments[-1]
        covered_end = DurableEnd(covered, active.base_offset, active.size)
        try:
            for segment in list(self._segments):
                if segment.synced_size < segment.size and not segment.is_deleted:
                    await segment.sync(self._backend)
            if self._directory_dirty:
                self._directory_dirty = False
                await self._backend.fsync_directory(self.directory)
        except OSError as error:
            failure = StorageError(
                f"fdatasync in {self.directory} failed: {error.strerror or error}; nothing "
                f"past offset {self._durable_offset} was acknowledged as durable"
            )
            self._fail(failure, untrusted=True)
            raise failure from error
        if covered >= self._durable_offset:
            self._durable_offset = covered
            self._durable_end = covered_end

    async def checkpoint(self) -> None:
        """Persist a recovery point and the producer state as of it (one atomic file).

        Flushes up to the log end first, so the point is durable and the
        producer state saved with it describes exactly the log below it.
        """
        offset = self._log_end_offset
        if offset == self._checkpointed_offset or self._failure is not None or self._closed:
            await trio.lowlevel.checkpoint()
            return
        self.producers.expire(self._now_ms(), PRODUCER_EXPIRATION_MS)
        # Captured together, before any await: the state as of ``offset``.
        producers = json.dumps(self.producers.to_json(), separators=(",", ":"))
        await self.flush(offset)
        backend = self._backend
        # Index entries below the recovery point are trusted at start-up:
        # no recovery point without them on disk.
        for segment in self._segments[-2:]:
            if segment.index.is_open and not segment.is_deleted:
                try:
                    await segment.index.sync(backend)
                except OSError as error:
                    raise StorageError(
                        f"syncing index {segment.index.path} failed: {error.strerror or error}; "
                        "the recovery point stays where it was"
                    ) from error
        payload = f"{_RECOVERY_POINT_MAGIC} {offset} {producers}\n".encode()
        # No directory fsync: an older recovery point after a power cut only
        # means a longer check at start-up.
        await replace_file(
            backend,
            os.path.join(self.directory, RECOVERY_POINT_FILE),
            payload,
            sync_directory=False,
        )
        self._checkpointed_offset = offset

    # --- reads --------------------------------------------------------------------

    def _check_offset(self, offset: int) -> None:
        high_watermark = self.high_watermark.value
        if not self.log_start_offset <= offset <= high_watermark:
            raise OffsetOutOfRangeError(
                f"offset {offset} is outside {self.directory}'s range "
                f"[{self.log_start_offset}, {high_watermark}]",
                log_start_offset=self.log_start_offset,
                high_watermark=high_watermark,
            )

    async def read(
        self, offset: int, max_bytes: int, *, first_batch_may_exceed: bool = True
    ) -> ReadResult:
        """Whole batches from the one holding ``offset``, up to ``max_bytes``, across segments.

        Empty at the high watermark. With ``first_batch_may_exceed`` (the
        default) the first batch is returned even if larger than
        ``max_bytes``, as Kafka does so a consumer never stalls on a big batch;
        without it, nothing is returned then (for later partitions of a fetch).

        Batches are checked as they are read: the data stops before a
        damaged one, and a read that starts at one raises CorruptLogError
        (logged with the file and byte position). A failed read raises
        StorageError; neither takes the log offline.
        """
        data, high_watermark, log_start_offset = await self._read(
            offset, max_bytes, first_batch_may_exceed, None
        )
        assert isinstance(data, bytes)
        return ReadResult(data, high_watermark, log_start_offset)

    async def read_sliced(
        self,
        offset: int,
        max_bytes: int,
        *,
        first_batch_may_exceed: bool = True,
        bytes_min: int,
    ) -> SlicedReadResult:
        """What :meth:`read` returns, but data of at least ``bytes_min`` bytes comes back
        as a :class:`LogSlice`: file ranges whose segments stay open until its
        ``release``, for a zero-copy send. Its batches are framed but not
        CRC-checked (the bytes never pass through Python; clients check CRCs,
        as with Kafka's sendfile path). Smaller data is read and checked as
        :meth:`read` checks it.
        """
        data, high_watermark, log_start_offset = await self._read(
            offset, max_bytes, first_batch_may_exceed, bytes_min
        )
        return SlicedReadResult(data, high_watermark, log_start_offset)

    async def _read(
        self,
        offset: int,
        max_bytes: int,
        first_batch_may_exceed: bool,
        zero_copy_bytes_min: int | None,
    ) -> tuple[bytes | LogSlice, int, int]:
        if self._closed:
            raise BrokerClosedError(f"partition log {self.directory} is closed")
        self._check_offset(offset)
        high_watermark = self.high_watermark.value
        if offset == high_watermark:
            # Capture before the checkpoint: an append may land during it, and
            # an empty result must not claim a watermark past what it read.
            await trio.lowlevel.checkpoint()
            return b"", high_watermark, self.log_start_offset
        slot = bisect.bisect_right(self._segment_bases, offset) - 1
        # Hold every segment we may read before the first await, so retention
        # cannot close one under us.
        segments = self._segments[slot:]
        for segment in segments:
            segment.acquire()
        # After a failed fdatasync only the durable part is read.
        untrusted_after = self._untrusted_after
        chunks: list[bytes] = []
        #: (segment, position, end) of what each segment gives.
        parts: list[tuple[LogSegment, int, int]] = []
        next_offset = offset
        total = 0
        sliced: LogSlice | None = None
        try:
            for segment in segments:
                if self._closed:
                    raise BrokerClosedError(f"partition log {self.directory} is closed")
                end: int | None = None
                if untrusted_after is not None:
                    if segment.base_offset > untrusted_after.segment_base:
                        break
                    if segment.base_offset == untrusted_after.segment_base:
                        end = untrusted_after.position
                oversized_first_batch = first_batch_may_exceed and not parts
                try:
                    if parts:
                        position: int | None = 0
                    else:
                        position = await segment.find_position(self._backend, offset)
                    if position is None:
                        continue
                    if zero_copy_bytes_min is None:
                        data = await segment.read(
                            self._backend,
                            position,
                            max_bytes - total,
                            oversized_first_batch=oversized_first_batch,
                            end=end,
                            first_offset=segment.base_offset if parts else offset,
                        )
                        part_end = position + len(data)
                        if data:
                            chunks.append(data)
                    else:
                        part_end, part_next = await segment.whole_batches_end(
                            self._backend,
                            position,
                            max_bytes - total,
                            oversized_first_batch=oversized_first_batch,
                            end=end,
                        )
                        if part_end > position:
                            next_offset = part_next
                except CorruptLogError as error:
                    self._log_corruption(offset, error)
                    if parts:
                        break  # serve what precedes the damage
                    raise
                except OSError as error:
                    raise self._read_failure(segment, error) from error
                if part_end > position:
                    parts.append((segment, position, part_end))
                    total += part_end - position
                if part_end < segment.size or total >= max_bytes:
                    break  # the budget (or the damage) ended the read inside this segment
            if zero_copy_bytes_min is not None and parts:
                if total >= zero_copy_bytes_min:
                    ranges = [FileRange(s.fd, start, stop - start) for s, start, stop in parts]
                    sliced = LogSlice(self._backend, [p[0] for p in parts], ranges, next_offset)
                else:
                    chunks = await self._read_parts(parts, offset)
        finally:
            # A slice keeps its segments until its release; the read lets go of the rest.
            kept = [part[0] for part in parts] if sliced is not None else []
            for segment in segments:
                if not any(segment is held for held in kept):
                    await segment.release(self._backend)
        # Appends may have landed while we read, and the data may include them:
        # report the high watermark as of now, which covers all of it.
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        result = data if sliced is None else sliced
        return result, self.high_watermark.value, self.log_start_offset

    async def _read_parts(
        self, parts: list[tuple[LogSegment, int, int]], offset: int
    ) -> list[bytes]:
        """The bytes of a zero-copy read too small to send as file ranges, checked as
        :meth:`read` checks them: the data stops before a damaged batch."""
        chunks: list[bytes] = []
        for segment, position, end in parts:
            try:
                data = await segment.read(
                    self._backend,
                    position,
                    end - position,
                    end=end,
                    first_offset=segment.base_offset if chunks else offset,
                )
            except CorruptLogError as error:
                self._log_corruption(offset, error)
                if chunks:
                    break
                raise
            except OSError as error:
                raise self._read_failure(segment, error) from error
            if data:
                chunks.append(data)
            if position + len(data) < end:
                break
        return chunks

    def _log_corruption(self, offset: int, error: CorruptLogError) -> None:
        corruption_log.error(
            "%s: reading offset %d: %s",
            self.directory,
            offset,
            error,
            key=(error.path, error.position),
        )

    def _read_failure(self, segment: LogSegment, error: OSError) -> StorageError:
        """Log a failed read; the StorageError to raise for it (writes go on)."""
        read_failures_log.error(
            "%s: reading %s failed: %s",
            self.directory,
            segment.log_path,
            error,
            key=self.directory,
        )
        return StorageError(
            f"reading {segment.log_path} failed: {error.strerror or error}; "
            "check the disk (writes go on)"
        )

    async def wait_for_data(self, offset: int) -> None:
        """Return once the high watermark passes ``offset`` (long-poll fetch)."""
        await self.high_watermark.wait_value(lambda value: value > offset)

    async def max_timestamp_ms(self) -> int:
        """The largest batch timestamp in the log; -1 (NO_TIMESTAMP) when it holds none."""
        result = NO_TIMESTAMP
        for segment in list(self._segments):
            if self._closed:
                raise BrokerClosedError(f"partition log {self.directory} is closed")
            if segment.is_deleted:
                continue
            segment.acquire()
            try:
                if segment.size > 0:
                    result = max(result, await segment.max_timestamp_ms(self._backend))
            finally:
                await segment.release(self._backend)
        await trio.lowlevel.checkpoint()
        return result

    async def offset_for_timestamp(self, timestamp_ms: int) -> BatchHeader | None:
        """Header of the first batch with max timestamp >= ``timestamp_ms`` (None if none)."""
        for segment in list(self._segments):
            if self._closed:
                raise BrokerClosedError(f"partition log {self.directory} is closed")
            if segment.is_deleted:  # by retention meanwhile: below the log start now
                continue
            # Hold the segment from the first read on, so retention cannot close it under us.
            segment.acquire()
            try:
                if await segment.max_timestamp_ms(self._backend) < timestamp_ms:
                    continue
                found = await segment.find_timestamp_position(self._backend, timestamp_ms)
            finally:
                await segment.release(self._backend)
            if found is not None:
                # Never past what readers may see (after a failed fdatasync).
                return found[1] if found[1].base_offset < self.high_watermark.value else None
        return None

    # --- retention ----------------------------------------------------------------

    async def enforce_retention(self) -> int:
        """Delete whole old segments past retention by size or age; return how many.

        The active segment is never deleted, as in Kafka.
        """
        if self._closed or self._failure is not None:
            await trio.lowlevel.checkpoint()
            return 0
        now_ms = self._now_ms()
        retention_ms = self.config.retention_ms
        retention_bytes = self.config.retention_bytes
        total = self.size_bytes
        doomed = 0
        for segment in self._segments[:-1]:
            expired = (
                retention_ms is not None
                and now_ms - await segment.max_timestamp_ms(self._backend) > retention_ms
            )
            oversize = retention_bytes is not None and total - segment.size >= retention_bytes
            if not (expired or oversize):
                break
            total -= segment.size
            doomed += 1
        if doomed:
            await self.delete_segments_before(self._segments[doomed].base_offset)
        return doomed

    async def delete_records_before(self, offset: int) -> int:
        """Move the log start offset up to ``offset`` (DeleteRecords); return the new start.

        ``offset`` must lie in [log start, high watermark] (at or below the
        current start nothing changes). The new start is written durably
        before this returns; whole segments below it are then deleted, the
        rest of the first segment stays on disk but is no longer readable.
        """
        self._check_usable()
        high_watermark = self.high_watermark.value
        if not 0 <= offset <= high_watermark:
            raise OffsetOutOfRangeError(
                f"cannot delete records before offset {offset} of {self.directory}: "
                f"the high watermark is {high_watermark}",
                log_start_offset=self.log_start_offset,
                high_watermark=high_watermark,
            )
        async with self._start_lock:
            if offset <= self.log_start_offset:
                return self.log_start_offset
            await replace_file(
                self._backend,
                os.path.join(self.directory, LOG_START_OFFSET_FILE),
                f"{offset}\n".encode(),
            )
            self._start_offset = offset
        await self.delete_segments_before(offset, reason="DeleteRecords")
        return self.log_start_offset

    async def delete_segments_before(self, offset: int, *, reason: str = "retention") -> None:
        """Delete every segment wholly below ``offset``; the log then starts at the next one."""
        await self._writer.acquire()
        try:
            while len(self._segments) > 1 and self._segments[1].base_offset <= offset:
                segment = self._segments.pop(0)
                self._segment_bases.pop(0)
                logger.info(
                    "%s: deleting segment %d (%s)", self.directory, segment.base_offset, reason
                )
                await segment.delete(self._backend)
            self._directory_dirty = True
        finally:
            self._writer.release()

    # --- close ----------------------------------------------------------------------

    async def aclose(self) -> None:
        """Flush everything, write the recovery point, close files."""
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        with trio.CancelScope(shield=True):
            await self._writer.acquire()
            await self._syncer.acquire()
            try:
                failure: StorageError | None = None
                if self._failure is None:
                    try:
                        await self._sync_all()
                        await self.checkpoint()
                    except StorageError as error:
                        failure = error
                if self._untrusted_after is not None:
                    try:
                        await self._discard_after(self._untrusted_after)
                    except OSError as error:
                        # Reopening makes the cut before anything else.
                        logger.error(
                            "%s: discarding what a failed fdatasync left untrusted failed: %s",
                            self.directory,
                            error,
                        )
                if failure is not None:
                    raise failure
            finally:
                self._closed = True
                self._syncer.release()
                self._writer.release()
                await self._close_segments()

    async def _close_segments(self) -> None:
        for segment in self._segments:
            if not segment.is_deleted:
                await segment.close(self._backend)

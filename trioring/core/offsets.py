"""OffsetStore: consumer groups' committed offsets, durable in an internal log.

Kafka's ``__consumer_offsets`` idea on one partition: each commit appends
records keyed by (group, topic, partition) to a PartitionLog and returns once
they are durable; start-up replays the log into memory. When the log grows
past ``compact_bytes`` it rolls and writes the whole live state as one append
(a snapshot), then deletes the segments before the snapshot, so the log stays
about as large as the live state.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping

import attrs
import trio
from kio.schema.errors import ErrorCode

from trioring._constants import GROUP_NAME_LENGTH_MAX, OFFSETS_SNAPSHOT_BATCH_RECORDS_MAX
from trioring.errors import (
    GroupCoordinatorError,
    InvalidGroupIdError,
    ProtocolError,
    StorageError,
)
from trioring.protocol.records import Record, build_batch, decode_batch, iterate_batches
from trioring.storage.log import Clock, DurableEnd, LogConfig, PartitionLog
from trioring.uring import FileBackend

logger = logging.getLogger("trioring.offsets")

TopicPartition = tuple[str, int]


@attrs.frozen
class CommittedOffset:
    offset: int
    metadata: str = ""
    leader_epoch: int = -1
    commit_timestamp_ms: int = -1


def _key(group: str, topic: str, partition: int) -> bytes:
    return json.dumps([group, topic, partition], separators=(",", ":")).encode()


def _value(committed: CommittedOffset) -> bytes:
    return json.dumps(attrs.asdict(committed), separators=(",", ":")).encode()


def validate_group(group: str) -> None:
    if not isinstance(group, str) or not group:
        raise InvalidGroupIdError("a consumer group id must be a non-empty string")
    if len(group) > GROUP_NAME_LENGTH_MAX:
        raise InvalidGroupIdError(f"group id is longer than {GROUP_NAME_LENGTH_MAX} characters")


@contextlib.contextmanager
def _storage_error_as_not_coordinator() -> Iterator[None]:
    """A disk error of the offsets log, answered as Kafka's group coordinator answers it.

    Kafka turns KAFKA_STORAGE_ERROR from its offsets topic into
    NOT_COORDINATOR, which clients retry after finding the coordinator
    again; a storage error code is not one OffsetCommit clients expect.
    """
    try:
        yield
    except StorageError as error:
        raise GroupCoordinatorError(
            f"the committed offsets log failed: {error}", ErrorCode.not_coordinator
        ) from error


class OffsetStore:
    def __init__(self, log: PartitionLog, clock: Clock, compact_bytes: int) -> None:
        self._log = log
        self._clock = clock
        self._compact_bytes = compact_bytes
        self._groups: dict[str, dict[TopicPartition, CommittedOffset]] = {}
        # Commits and snapshots append one at a time so a snapshot always
        # includes every commit written before it (see module docstring).
        self._append_lock = trio.Lock()

    @classmethod
    async def open(
        cls,
        directory: str,
        backend: FileBackend,
        clock: Clock,
        *,
        compact_bytes: int,
        discard_after: DurableEnd | None = None,
        on_failure: Callable[[], None] | None = None,
    ) -> OffsetStore:
        """Open (creating if needed) the store whose log is in ``directory``.

        ``discard_after`` and ``on_failure`` are PartitionLog.open's.
        """
        config = LogConfig(retention_ms=None, retention_bytes=None, segment_bytes=compact_bytes)
        log = await PartitionLog.open(
            directory,
            config,
            backend,
            clock,
            discard_after=discard_after,
            on_failure=on_failure,
        )
        store = cls(log, clock, compact_bytes)
        try:
            await store._replay()
        except BaseException:
            with trio.CancelScope(shield=True):
                await log.aclose()
            raise
        return store

    async def _replay(self) -> None:
        offset = self._log.log_start_offset
        end = self._log.log_end_offset
        count = 0
        while offset < end:
            result = await self._log.read(offset, 1 << 20)
            for position, _ in iterate_batches(result.data):
                header, records = decode_batch(result.data, position)
                for record in records:
                    self._apply(record)
                    count += 1
                offset = header.next_offset
        logger.debug("replayed %d committed-offset records", count)

    def _apply(self, record: Record) -> None:
        try:
            group, topic, partition = json.loads(record.key or b"")
            if record.value is None:
                self._groups.get(group, {}).pop((topic, partition), None)
                return
            committed = CommittedOffset(**json.loads(record.value))
        except (ValueError, TypeError) as error:
            raise ProtocolError(
                f"offsets log record {record.offset} is malformed: {error}"
            ) from None
        self._groups.setdefault(group, {})[(topic, partition)] = committed

    @property
    def log(self) -> PartitionLog:
        return self._log

    def groups(self) -> list[str]:
        return sorted(group for group, offsets in self._groups.items() if offsets)

    def committed(self, group: str) -> dict[TopicPartition, CommittedOffset]:
        return dict(self._groups.get(group, {}))

    async def commit(self, group: str, offsets: Mapping[TopicPartition, CommittedOffset]) -> None:
        """Durably record ``offsets`` for ``group``; return once they survive a crash."""
        validate_group(group)
        if not offsets:
            await trio.lowlevel.checkpoint()
            return
        now_ms = int(self._clock() * 1000)
        records = [
            Record(key=_key(group, topic, partition), value=_value(committed), timestamp_ms=now_ms)
            for (topic, partition), committed in offsets.items()
        ]
        with _storage_error_as_not_coordinator():
            async with self._append_lock:
                info = await self._log.append(build_batch(records, now_ms=now_ms))
                self._groups.setdefault(group, {}).update(offsets)
            await self._log.flush(info.last_offset + 1)

    async def delete_group(self, group: str) -> None:
        """Forget every committed offset of ``group`` (durably)."""
        await self.delete(group, list(self._groups.get(group, {})))

    async def delete(self, group: str, partitions: Iterable[TopicPartition]) -> None:
        """Forget ``group``'s committed offsets of ``partitions`` (durably; absent ones skipped)."""
        wanted = list(dict.fromkeys(partitions))
        async with self._append_lock:
            # Under the lock: a commit racing this one is either before it
            # (and deleted) or after it (and kept), in memory as in the log.
            offsets = self._groups.get(group, {})
            doomed = [tp for tp in wanted if tp in offsets]
            if not doomed:
                return
            now_ms = int(self._clock() * 1000)
            records = [
                Record(key=_key(group, topic, partition), value=None, timestamp_ms=now_ms)
                for topic, partition in doomed
            ]
            with _storage_error_as_not_coordinator():
                info = await self._log.append(build_batch(records, now_ms=now_ms))
            for tp in doomed:
                del offsets[tp]
            if not offsets:
                self._groups.pop(group, None)
        with _storage_error_as_not_coordinator():
            await self._log.flush(info.last_offset + 1)

    async def maybe_compact(self) -> bool:
        """Rewrite the log as a snapshot when it has grown past the threshold."""
        if self._log.size_bytes <= self._compact_bytes or self._log.segment_count < 2:
            await trio.lowlevel.checkpoint()
            return False
        now_ms = int(self._clock() * 1000)
        async with self._append_lock:
            await self._log.roll()
            records = [
                Record(
                    key=_key(group, topic, partition), value=_value(committed), timestamp_ms=now_ms
                )
                for group, offsets in self._groups.items()
                for (topic, partition), committed in offsets.items()
            ]
            snapshot_start = self._log.log_end_offset
            if records:
                batches = b"".join(
                    build_batch(records[i : i + OFFSETS_SNAPSHOT_BATCH_RECORDS_MAX], now_ms=now_ms)
                    for i in range(0, len(records), OFFSETS_SNAPSHOT_BATCH_RECORDS_MAX)
                )
                info = await self._log.append(batches)
                await self._log.flush(info.last_offset + 1)
        await self._log.delete_segments_before(snapshot_start)
        logger.info("compacted the offsets log to %d live offsets", len(records))
        return True

    async def aclose(self) -> None:
        await self._log.aclose()


async def move_legacy_offsets(
    data_dir: str,
    moving_directory: str,
    backend: FileBackend,
    clock: Clock,
    *,
    compact_bytes: int,
    partition_of: Callable[[str], int],
    partition_directory: Callable[[int], str],
) -> int:
    """Commit every group's offsets from a trioring 0.1 offsets log to its partition.

    0.1 kept all groups in one log; the controller set it aside as
    ``moving_directory``. Each group's offsets go to the OffsetStore of
    ``partition_of(group)``, then the old log is removed. Idempotent: a crash
    midway repeats the same commits at the next start. Returns the number of
    groups moved (0 if there was nothing to move).
    """
    if not os.path.isdir(moving_directory):  # noqa: ASYNC240 - start-up, one stat
        return 0
    old = await OffsetStore.open(moving_directory, backend, clock, compact_bytes=compact_bytes)
    stores: dict[int, OffsetStore] = {}
    try:
        for group in old.groups():
            partition = partition_of(group)
            store = stores.get(partition)
            if store is None:
                store = await OffsetStore.open(
                    partition_directory(partition), backend, clock, compact_bytes=compact_bytes
                )
                stores[partition] = store
            await store.commit(group, old.committed(group))
        moved = len(old.groups())
    finally:
        with trio.CancelScope(shield=True):
            await old.aclose()
            for store in stores.values():
                await store.aclose()
    await trio.to_thread.run_sync(shutil.rmtree, moving_directory)
    await backend.fsync_directory(data_dir)
    logger.warning("moved the committed offsets of %d groups to their partitions", moved)
    return moved

"""Shard: one worker's partitions, the committed offsets and groups it coordinates, upkeep.

A shard owns the PartitionLogs of the partitions the cluster metadata gives
its worker, and nothing else: a request for another worker's partition gets
NotLeaderOrFollowerError (the client then asks the owner), a group another
worker coordinates gets NotCoordinatorError. The metadata comes from the
controller (:meth:`apply`): new partitions are opened (their directories
created), partitions of deleted topics are closed and their directories
removed. It also runs one maintenance task for all its logs: it flushes
acks=1 data every ``flush_interval_ms``, checkpoints recovery points,
applies retention and compacts the offsets logs.

Committed offsets live in the internal ``__consumer_offsets`` topic; each
of its partitions is an OffsetStore, opened when the shard starts if its
directory exists, and created when the first group that hashes to it
commits.

A log that goes offline after a disk error (a failed fdatasync, or a failed
write it could not undo) is recovered without a restart: a recovery task
closes it (which cuts off what a failed fdatasync left untrusted), and
reopens it through the normal start-up recovery, retrying with backoff while
that fails. Meanwhile its produces, and then its reads, get
KAFKA_STORAGE_ERROR. Partitions that could not be opened at all (a full
disk) are retried by the same task.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager

import trio
from kio.schema.errors import ErrorCode

from trioring._constants import (
    PARTITION_RECOVERY_DELAY_FIRST_SECONDS,
    PARTITION_RECOVERY_DELAY_LAST_SECONDS,
)
from trioring._logging import RateLimitedLogger
from trioring.cluster.model import OFFSETS_TOPIC, ClusterMetadata, TopicInfo
from trioring.cluster.topic_configs import effective_config
from trioring.config import BrokerConfig
from trioring.core.groups import GroupCoordinator
from trioring.core.offsets import OffsetStore
from trioring.errors import (
    BrokerClosedError,
    CorruptLogError,
    GroupCoordinatorError,
    NotLeaderOrFollowerError,
    ProtocolError,
    StorageError,
    UnknownTopicOrPartitionError,
)
from trioring.storage.layout import partition_directory, set_aside
from trioring.storage.log import DurableEnd, LogConfig, PartitionLog
from trioring.uring import FileBackend

logger = logging.getLogger("trioring.shard")
upkeep_log = RateLimitedLogger(logger, burst=1, interval_seconds=60.0)

__all__ = ["Shard"]


class Shard:
    def __init__(
        self,
        config: BrokerConfig,
        backend: FileBackend,
        metadata: ClusterMetadata,
        worker_index: int = 0,
    ) -> None:
        self.config = config
        self.backend = backend
        self.worker_index = worker_index
        self._metadata = metadata
        #: Open logs of owned partitions, keyed (topic, partition); topic ids
        #: tell a deleted topic from a new one of the same name.
        self._logs: dict[tuple[str, int], PartitionLog] = {}
        self._topic_ids: dict[str, str] = {}
        #: Owned partitions that could not be opened (a full disk) or went
        #: offline after a disk error: retried by the recovery task.
        self._offline: dict[tuple[str, int], StorageError] = {}
        #: Of those, the ones a failed fdatasync left with untrusted bytes to cut.
        self._discard_after: dict[tuple[str, int], DurableEnd] = {}
        self._offset_stores: dict[int, OffsetStore] = {}
        #: __consumer_offsets partitions offline after a disk error, and their cuts.
        self._offline_offset_stores: dict[int, StorageError] = {}
        self._offset_stores_discard_after: dict[int, DurableEnd] = {}
        #: Set when a log goes offline, or an offline partition should be tried again.
        self._recovery_due = trio.Event()
        self._offsets_lock = trio.Lock()
        self._apply_lock = trio.Lock()
        self._groups: GroupCoordinator | None = None
        self._closed = False

    # --- lifecycle ----------------------------------------------------------------

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        config: BrokerConfig,
        backend: FileBackend,
        metadata: ClusterMetadata,
        *,
        worker_index: int = 0,
    ) -> AsyncIterator[Shard]:
        """Open the partitions ``metadata`` gives worker ``worker_index``."""
        shard = cls(config, backend, metadata, worker_index)
        try:
            if await shard._open_owned(metadata):
                shard._recovery_due.set()  # tried again soon, with backoff
            await shard._open_existing_offset_stores()
            logger.info(
                "worker %d opened %d partitions in %s",
                worker_index,
                len(shard._logs),
                config.data_dir,
            )
            async with (
                GroupCoordinator.open(config.groups, offsets=shard) as groups,
                trio.open_nursery() as nursery,
            ):
                shard._groups = groups
                nursery.start_soon(shard._maintain)
                try:
                    yield shard
                finally:
                    nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await shard._close()

    async def _close(self) -> None:
        self._closed = True
        for log in self._logs.values():
            try:
                await log.aclose()
            except Exception:
                logger.exception("closing %s failed", log.directory)
        for store in self._offset_stores.values():
            try:
                await store.aclose()
            except Exception:
                logger.exception("closing %s failed", store.log.directory)

    # --- partitions -----------------------------------------------------------------

    @property
    def metadata(self) -> ClusterMetadata:
        return self._metadata

    @property
    def topics(self) -> dict[str, TopicInfo]:
        """Every topic of the cluster (not only this worker's), the internal one left out."""
        return self._metadata.user_topics()

    def log(self, topic: str, partition: int) -> PartitionLog:
        """The log of an owned partition.

        Raises UnknownTopicOrPartitionError, NotLeaderOrFollowerError (another
        worker owns it), StorageError (it could not be opened) or
        BrokerClosedError.
        """
        if self._closed:
            raise BrokerClosedError("the broker is closed")
        found = self._logs.get((topic, partition))
        if found is not None:
            return found
        info = self._metadata.topics.get(topic)
        if info is None or info.internal:
            raise UnknownTopicOrPartitionError(f"unknown topic {topic!r}; create it first")
        if not 0 <= partition < info.partitions:
            raise UnknownTopicOrPartitionError(
                f"topic {topic!r} has partitions 0-{info.partitions - 1}, not {partition}"
            )
        owner = info.owners[partition]
        if owner != self.worker_index:
            raise NotLeaderOrFollowerError(
                f"{topic}-{partition} is served by node {owner}, not {self.worker_index}"
            )
        offline = self._offline.get((topic, partition))
        if offline is not None:
            raise StorageError(f"{topic}-{partition} is offline: {offline}; retry")
        raise BrokerClosedError(f"{topic}-{partition} is not open yet")

    def owned_logs(self) -> Iterator[tuple[str, int, PartitionLog]]:
        for (topic, partition), log in self._logs.items():
            yield topic, partition, log

    def partition_logs(self) -> Iterator[tuple[str, int, PartitionLog]]:
        """Every open partition log of this worker, ``__consumer_offsets``' included."""
        yield from self.owned_logs()
        for partition, store in self._offset_stores.items():
            yield OFFSETS_TOPIC, partition, store.log

    async def apply(self, metadata: ClusterMetadata) -> dict[tuple[str, int], StorageError]:
        """Follow new cluster metadata: open what is now ours, remove what was deleted.

        Returns the partitions that could not be opened (a full disk), with
        why: they are offline (requests get KAFKA_STORAGE_ERROR) and the
        upkeep task tries them again.
        """
        async with self._apply_lock:
            if self._closed:
                return {}
            previous, self._metadata = self._metadata, metadata
            for name, old in previous.topics.items():
                new = metadata.topics.get(name)
                if new is None or new.topic_id != old.topic_id:
                    await self._remove_topic(old)
            failures = await self._open_owned(metadata)
            if failures:
                self._recovery_due.set()  # tried again soon, with backoff
            # Altered configs (the topic's or the broker defaults it follows):
            # retention uses them at its next pass, a new segment size applies
            # from the next roll.
            for (topic, _partition), log in self._logs.items():
                info = metadata.topics.get(topic)
                if info is not None:
                    log.config = self._log_config(info, metadata)
            # Partitions another worker owns now (only after a restart with a
            # new placement): close, keep the data.
            for (topic, partition), log in list(self._logs.items()):
                if metadata.owner(topic, partition) != self.worker_index:
                    del self._logs[(topic, partition)]
                    await log.aclose()
            return failures

    async def _open_owned(self, metadata: ClusterMetadata) -> dict[tuple[str, int], StorageError]:
        failures: dict[tuple[str, int], StorageError] = {}
        for info, partition in metadata.owned_by(self.worker_index):
            key = (info.name, partition)
            if info.internal or key in self._logs:
                continue
            try:
                log = await PartitionLog.open(
                    partition_directory(self.config.data_dir, info.name, partition),
                    self._log_config(info, metadata),
                    self.backend,
                    self.config.clock,
                    discard_after=self._discard_after.get(key),
                    on_failure=self._log_failed,
                )
            except (OSError, StorageError) as error:
                failure = (
                    error
                    if isinstance(error, StorageError)
                    else StorageError(f"opening it failed: {error.strerror or error}")
                )
                self._offline[(info.name, partition)] = failures[(info.name, partition)] = failure
                upkeep_log.warning(
                    "%s-%d is offline: %s", info.name, partition, failure, key="offline"
                )
                continue
            if self._offline.pop(key, None) is not None:
                logger.warning(
                    "%s-%d is back online, recovered from disk: log end offset %d",
                    info.name,
                    partition,
                    log.log_end_offset,
                )
            self._discard_after.pop(key, None)
            self._logs[key] = log
            self._topic_ids[info.name] = info.topic_id
        return failures

    def _log_config(self, info: TopicInfo, metadata: ClusterMetadata) -> LogConfig:
        """A topic's LogConfig here: this node's dynamic broker defaults may change it."""
        return effective_config(
            info,
            self.config.log,
            metadata.broker_defaults,
            metadata.node_defaults.get(str(self.worker_index), {}),
        )

    async def _remove_topic(self, info: TopicInfo) -> None:
        """Close this worker's partitions of a deleted topic and remove their directories."""
        data_dir = self.config.data_dir
        removed: list[str] = []
        for partition in range(info.partitions):
            offline = self._offline.pop((info.name, partition), None)
            self._discard_after.pop((info.name, partition), None)
            log = self._logs.pop((info.name, partition), None)
            entry = f"{info.name}-{partition}"
            # A partition that failed to open may have left its directory.
            exists = os.path.isdir(os.path.join(data_dir, entry))  # noqa: ASYNC240 - rare, one stat
            if log is None and (offline is None or not exists):
                continue
            try:
                if log is not None:
                    await log.aclose()
                removed.append(await set_aside(self.backend, data_dir, entry))
            except (OSError, StorageError) as error:
                # The topic is gone from the metadata; start-up removes what is left.
                # (Closing a log on a full disk fails its last checkpoint: StorageError.)
                logger.warning(
                    "removing %s-%d failed: %s; it is removed at the next start",
                    info.name,
                    partition,
                    error,
                )
        self._topic_ids.pop(info.name, None)
        if removed:
            await self.backend.fsync_directory(data_dir)
            for entry in removed:
                await trio.to_thread.run_sync(shutil.rmtree, os.path.join(data_dir, entry), True)

    # --- committed offsets and groups -------------------------------------------------

    def coordinator_check(self, group_id: str) -> None:
        """Raise NOT_COORDINATOR unless this worker coordinates ``group_id``."""
        coordinator = self._metadata.coordinator(group_id)
        if coordinator != self.worker_index:
            raise GroupCoordinatorError(
                f"group {group_id!r} is coordinated by node {coordinator}, not {self.worker_index}",
                ErrorCode.not_coordinator,
            )

    async def offsets(self, group_id: str) -> OffsetStore:
        """The OffsetStore of ``group_id`` (created on first use); NOT_COORDINATOR if not ours."""
        if self._closed:
            raise BrokerClosedError("the broker is closed")
        self.coordinator_check(group_id)
        partition = self._metadata.offsets_partition(group_id)
        store = self._offset_stores.get(partition)
        if store is not None and store.log.failure is None:
            await trio.lowlevel.checkpoint()
            return store
        if store is not None or partition in self._offline_offset_stores:
            # Kafka's coordinator answers a storage error as NOT_COORDINATOR:
            # clients find the coordinator again and retry.
            await trio.lowlevel.checkpoint()
            reason = store.log.failure if store is not None else None
            raise GroupCoordinatorError(
                f"the committed offsets of group {group_id!r} are offline after a disk error "
                f"({reason or self._offline_offset_stores[partition]}); retry",
                ErrorCode.not_coordinator,
            )
        async with self._offsets_lock:
            store = self._offset_stores.get(partition)
            if store is None:
                try:
                    store = await self._open_offset_store(partition)
                except StorageError as error:  # e.g. a full disk: as Kafka answers it
                    raise GroupCoordinatorError(
                        f"the committed offsets of group {group_id!r} cannot be stored: {error}",
                        ErrorCode.not_coordinator,
                    ) from error
        return store

    def offsets_if_open(self, group_id: str) -> OffsetStore | None:
        """The group's store if it exists already (reads need not create one).

        NOT_COORDINATOR while it is offline after a disk error: an empty
        answer would tell the group it has no committed offsets.
        """
        self.coordinator_check(group_id)
        partition = self._metadata.offsets_partition(group_id)
        offline = self._offline_offset_stores.get(partition)
        if offline is not None:
            raise GroupCoordinatorError(
                f"the committed offsets of group {group_id!r} are offline after a disk error "
                f"({offline}); retry",
                ErrorCode.not_coordinator,
            )
        return self._offset_stores.get(partition)

    async def _open_offset_store(self, partition: int) -> OffsetStore:
        directory = partition_directory(self.config.data_dir, OFFSETS_TOPIC, partition)
        try:
            store = await OffsetStore.open(
                directory,
                self.backend,
                self.config.clock,
                compact_bytes=self.config.offsets_log_compact_bytes,
                discard_after=self._offset_stores_discard_after.get(partition),
                on_failure=self._log_failed,
            )
        except OSError as error:
            raise StorageError(
                f"opening the committed offsets in {directory} failed: {error.strerror or error}"
            ) from error
        except (CorruptLogError, ProtocolError) as error:
            raise StorageError(
                f"the committed offsets in {directory} are damaged: {error}; the groups "
                "they hold get NOT_COORDINATOR until the files are restored or removed"
            ) from error
        if self._offline_offset_stores.pop(partition, None) is not None:
            logger.warning("%s-%d is back online, recovered from disk", OFFSETS_TOPIC, partition)
        self._offset_stores_discard_after.pop(partition, None)
        self._offset_stores[partition] = store
        return store

    async def _open_existing_offset_stores(self) -> None:
        for info, partition in self._metadata.owned_by(self.worker_index):
            if info.name != OFFSETS_TOPIC:
                continue
            directory = partition_directory(self.config.data_dir, OFFSETS_TOPIC, partition)
            if os.path.isdir(directory):  # noqa: ASYNC240 - start-up, one stat each
                try:
                    await self._open_offset_store(partition)
                except StorageError as error:
                    # One damaged or unreadable partition costs its groups, not the broker.
                    logger.error("%s-%d is offline: %s", OFFSETS_TOPIC, partition, error)
                    self._offline_offset_stores[partition] = error
                    self._recovery_due.set()

    def groups(self) -> list[str]:
        """Groups with committed offsets in this worker's stores (CommittedGroups)."""
        return sorted(group for store in self._offset_stores.values() for group in store.groups())

    @property
    def coordinator(self) -> GroupCoordinator:
        assert self._groups is not None, "shard is not open"
        return self._groups

    # --- recovery from disk errors -----------------------------------------------------

    async def _recover_offline(self) -> bool:
        """Reopen logs that went offline, from disk, without a restart; True if all are back.

        The upkeep task runs this as soon as a log reports its failure, then,
        while some partition stays offline (the disk still fails, or is
        full), after pauses that double up to
        PARTITION_RECOVERY_DELAY_LAST_SECONDS.
        """
        async with self._apply_lock:
            if self._closed:
                return True
            for key, log in list(self._logs.items()):
                if log.failure is not None:
                    # Offline before the first await: requests meanwhile must
                    # not find the partition missing.
                    del self._logs[key]
                    self._offline[key] = StorageError(f"recovering it from disk: {log.failure}")
                    await self._take_offline(f"{key[0]}-{key[1]}", log)
                    if log.untrusted_after is not None:
                        self._discard_after[key] = log.untrusted_after
            await self._open_owned(self._metadata)
        async with self._offsets_lock:
            await self._recover_offset_stores()
        return not self._offline and not self._offline_offset_stores

    def _log_failed(self) -> None:
        # Not a bound Event.set handed to the logs: the event is replaced each round.
        self._recovery_due.set()

    async def _take_offline(self, name: str, log: PartitionLog) -> None:
        """Close a failed log for its recovery (the close cuts what is untrusted)."""
        logger.warning("%s: recovering it from disk after a disk error: %s", name, log.failure)
        try:
            await log.aclose()
        except Exception as error:  # the reopen retries what the close could not do
            logger.warning("%s: closing it after the disk error failed: %s", name, error)

    async def _recover_offset_stores(self) -> None:
        for partition, store in list(self._offset_stores.items()):
            failure = store.log.failure
            if failure is None:
                continue
            # Offline before the first await: a read of committed offsets
            # meanwhile must not find the store missing (and answer "none").
            del self._offset_stores[partition]
            self._offline_offset_stores[partition] = StorageError(
                f"recovering it from disk: {failure}"
            )
            await self._take_offline(f"{OFFSETS_TOPIC}-{partition}", store.log)
            if store.log.untrusted_after is not None:
                self._offset_stores_discard_after[partition] = store.log.untrusted_after
        for partition in list(self._offline_offset_stores):
            try:
                await self._open_offset_store(partition)
            except StorageError as error:
                self._offline_offset_stores[partition] = error
                upkeep_log.warning(
                    "%s-%d is offline: %s", OFFSETS_TOPIC, partition, error, key="offline"
                )

    # --- upkeep ---------------------------------------------------------------------

    async def _maintain(self) -> None:
        """Periodic upkeep; one task for all partitions, so idle shards cost nothing."""
        config = self.config
        periods_s = {
            "checkpoint": config.recovery_checkpoint_interval_ms / 1000,
            "retention": config.retention_check_interval_ms / 1000,
        }
        if config.flush_interval_ms is not None:
            periods_s["flush"] = config.flush_interval_ms / 1000
        now = trio.current_time()
        due = {name: now + period for name, period in periods_s.items()}
        recovery_delay_s = PARTITION_RECOVERY_DELAY_FIRST_SECONDS
        recovery_retry_at = math.inf
        while True:
            # A log going offline wakes this at once: its recovery is upkeep too.
            with trio.move_on_at(min(*due.values(), recovery_retry_at)):
                await self._recovery_due.wait()
            if self._recovery_due.is_set() or trio.current_time() >= recovery_retry_at:
                self._recovery_due = trio.Event()
                try:
                    recovered = await self._recover_offline()
                except Exception:
                    upkeep_log.error("recovering partitions failed", exc_info=True, key="recover")
                    recovered = False
                if recovered:
                    recovery_delay_s = PARTITION_RECOVERY_DELAY_FIRST_SECONDS
                    recovery_retry_at = math.inf
                else:
                    recovery_retry_at = trio.current_time() + recovery_delay_s
                    recovery_delay_s = min(
                        2 * recovery_delay_s, PARTITION_RECOVERY_DELAY_LAST_SECONDS
                    )
            now = trio.current_time()
            for name in [name for name, deadline in due.items() if deadline <= now]:
                due[name] = now + periods_s[name]
                try:
                    await getattr(self, f"_run_{name}")()
                except StorageError as error:
                    # Upkeep must go on; a partition with a disk error is
                    # already offline and says so to its producers. A full
                    # disk fails every round: one line a minute per job.
                    upkeep_log.warning("periodic %s failed: %s", name, error, key=name)
                except Exception:
                    upkeep_log.error("periodic %s failed", name, exc_info=True, key=name)

    def _all_logs(self) -> list[PartitionLog]:
        logs = list(self._logs.values())
        logs.extend(store.log for store in self._offset_stores.values())
        return logs

    async def _each_log(
        self, logs: list[PartitionLog], job: Callable[[PartitionLog], Awaitable[object]]
    ) -> None:
        """Run ``job`` on every log; one log's disk error does not skip the others."""
        failure: StorageError | None = None
        for log in logs:
            try:
                await job(log)
            except StorageError as error:
                failure = failure or error
        if failure is not None:
            raise failure

    async def _run_flush(self) -> None:
        async def flush(log: PartitionLog) -> None:
            if log.durable_offset < log.log_end_offset:
                await log.flush()

        await self._each_log(self._all_logs(), flush)

    async def _run_checkpoint(self) -> None:
        await self._each_log(self._all_logs(), PartitionLog.checkpoint)

    async def _run_retention(self) -> None:
        if self._offline:
            # Try the partitions that could not be opened again (space may be free).
            async with self._apply_lock:
                await self._open_owned(self._metadata)
        await self._each_log(list(self._logs.values()), PartitionLog.enforce_retention)
        for store in list(self._offset_stores.values()):
            await store.maybe_compact()

    async def run_upkeep_now(self) -> None:
        """Run every periodic job once (tests and ``trioring`` tools)."""
        await self._run_flush()
        await self._run_checkpoint()
        await self._run_retention()

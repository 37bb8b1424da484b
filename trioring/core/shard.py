"""Shard: one worker's partitions, topic list, committed offsets and upkeep.

A shard owns its PartitionLogs and one maintenance task that flushes acks=1
data every ``flush_interval_ms``, checkpoints recovery points, applies
retention and compacts the offsets log. Handlers reach partitions through it.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import trio

from trioring._logging import RateLimitedLogger
from trioring.config import BrokerConfig
from trioring.core.groups import GroupCoordinator
from trioring.core.metadata import (
    ProducerIdAllocator,
    TopicInfo,
    TopicStore,
    validate_partitions,
    validate_topic_name,
)
from trioring.core.offsets import OffsetStore
from trioring.errors import (
    BrokerClosedError,
    InvalidArgumentError,
    StorageError,
    TopicExistsError,
    UnknownTopicOrPartitionError,
)
from trioring.storage.log import LogConfig, PartitionLog
from trioring.uring import FileBackend

logger = logging.getLogger("trioring.shard")
upkeep_log = RateLimitedLogger(logger, burst=1, interval_seconds=60.0)

#: Ends the name of a deleted partition's directory until it is removed.
DELETED_SUFFIX = "-delete"
#: Longest file name Linux file systems take (NAME_MAX).
_NAME_BYTES_MAX = 255
_PARTITION_DIRECTORY = re.compile(r"(.+)-(\d+)")


def partition_directory(data_dir: str, topic: str, partition: int) -> str:
    """Kafka's naming: ``<data_dir>/<topic>-<partition>``."""
    return os.path.join(data_dir, f"{topic}-{partition}")


def deleted_directory_name(entry: str) -> str:
    """The name a partition directory ``entry`` takes while it waits for removal.

    Kafka's scheme: a unique id and the suffix, with the topic part cut so the
    name stays within NAME_MAX (a 249-character topic name plus "-0.deleted"
    does not fit, and the rename failed).
    """
    suffix = f".{uuid.uuid4().hex}{DELETED_SUFFIX}"
    return entry[: _NAME_BYTES_MAX - len(suffix)] + suffix


class Shard:
    def __init__(self, config: BrokerConfig, backend: FileBackend) -> None:
        self.config = config
        self.backend = backend
        self._topic_store = TopicStore(config.data_dir, backend)
        self._producer_ids = ProducerIdAllocator(config.data_dir, backend)
        self._logs: dict[tuple[str, int], PartitionLog] = {}
        self._offsets: OffsetStore | None = None
        self._groups: GroupCoordinator | None = None
        self._topics_lock = trio.Lock()
        self._closed = False

    # --- lifecycle ----------------------------------------------------------------

    @classmethod
    @asynccontextmanager
    async def open(cls, config: BrokerConfig, backend: FileBackend) -> AsyncIterator[Shard]:
        shard = cls(config, backend)
        try:
            await shard._load()
            async with (
                GroupCoordinator.open(config.groups, offsets=shard.offsets) as groups,
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

    async def _load(self) -> None:
        config = self.config
        await self.backend.make_directory(config.data_dir)
        await self._topic_store.load()
        await self._producer_ids.load()
        await self._set_aside_orphans()
        await self._remove_deleted_directories()
        for topic in self._topic_store.topics.values():
            for partition in range(topic.partitions):
                await self._open_log(topic, partition)
        self._offsets = await OffsetStore.open(
            config.data_dir,
            self.backend,
            config.clock,
            compact_bytes=config.offsets_log_compact_bytes,
        )
        logger.info(
            "opened %d topics, %d partitions in %s",
            len(self._topic_store.topics),
            len(self._logs),
            config.data_dir,
        )

    async def _open_log(self, topic: TopicInfo, partition: int) -> PartitionLog:
        log = await PartitionLog.open(
            partition_directory(self.config.data_dir, topic.name, partition),
            topic.config,
            self.backend,
            self.config.clock,
        )
        self._logs[(topic.name, partition)] = log
        return log

    async def _close(self) -> None:
        self._closed = True
        for log in self._logs.values():
            try:
                await log.aclose()
            except Exception:
                logger.exception("closing %s failed", log.directory)
        if self._offsets is not None:
            await self._offsets.aclose()

    # --- topics -------------------------------------------------------------------

    @property
    def topics(self) -> dict[str, TopicInfo]:
        return dict(self._topic_store.topics)

    @property
    def groups(self) -> GroupCoordinator:
        assert self._groups is not None, "shard is not open"
        return self._groups

    @property
    def offsets(self) -> OffsetStore:
        assert self._offsets is not None, "shard is not open"
        return self._offsets

    def log(self, topic: str, partition: int) -> PartitionLog:
        if self._closed:
            raise BrokerClosedError("the broker is closed")
        try:
            return self._logs[(topic, partition)]
        except KeyError:
            if topic in self._topic_store.topics:
                raise UnknownTopicOrPartitionError(
                    f"topic {topic!r} has partitions 0-"
                    f"{self._topic_store.topics[topic].partitions - 1}, not {partition}"
                ) from None
            raise UnknownTopicOrPartitionError(
                f"unknown topic {topic!r}; create it first"
            ) from None

    async def create_topic(
        self, name: str, partitions: int | None = None, config: LogConfig | None = None
    ) -> TopicInfo:
        """Create a topic durably, or not at all.

        The partition directories come first and the topic list last: a
        failure on the way (a full disk) removes the new directories and
        leaves the list as it was, and a crash on the way leaves directories
        of no topic, which start-up removes. The topic exists once the list
        naming it is durable.
        """
        if self._closed:
            raise BrokerClosedError("the broker is closed")
        validate_topic_name(name)
        partitions = self.config.default_partitions if partitions is None else partitions
        validate_partitions(partitions)
        if config is not None and not isinstance(config, LogConfig):
            raise InvalidArgumentError("config must be a trioring.LogConfig")
        async with self._topics_lock:
            if name in self._topic_store.topics:
                raise TopicExistsError(f"topic {name!r} already exists")
            topic = self._topic_store.new_topic(name, partitions, config or self.config.log)
            try:
                for partition in range(partitions):
                    await self._open_log(topic, partition)
                await self._topic_store.save({**self._topic_store.topics, name: topic})
            except BaseException as error:
                with trio.CancelScope(shield=True):
                    await self._discard_new_partitions(topic)
                if isinstance(error, OSError):
                    raise StorageError(
                        f"creating topic {name!r} failed: {error.strerror or error}; "
                        "nothing was created"
                    ) from error
                raise
        logger.info("created topic %s with %d partitions", name, partitions)
        return topic

    async def _discard_new_partitions(self, topic: TopicInfo) -> None:
        """Undo a creation that failed midway (best effort: start-up removes what is left)."""
        for partition in range(topic.partitions):
            log = self._logs.pop((topic.name, partition), None)
            try:
                if log is not None:
                    await log.aclose()
                directory = partition_directory(self.config.data_dir, topic.name, partition)
                if os.path.isdir(directory):  # noqa: ASYNC240 - a stat, after a failure
                    await trio.to_thread.run_sync(shutil.rmtree, directory, True)
            except Exception:
                logger.exception("cleaning up after the failed creation of %s", topic.name)

    async def allocate_producer_id(self) -> int:
        """A new idempotent producer id (Kafka's InitProducerId without transactions)."""
        if self._closed:
            raise BrokerClosedError("the broker is closed")
        return await self._producer_ids.allocate()

    async def delete_topic(self, name: str) -> None:
        """Delete a topic and its data.

        The topic list is persisted first, so a crash midway leaves directories
        that start-up recognises as deleted and removes.
        """
        if self._closed:
            raise BrokerClosedError("the broker is closed")
        async with self._topics_lock:
            info = self._topic_store.topics.get(name)
            if info is None:
                raise UnknownTopicOrPartitionError(f"unknown topic {name!r}")
            remaining = {
                key: value for key, value in self._topic_store.topics.items() if key != name
            }
            await self._topic_store.save(remaining)
            try:
                for partition in range(info.partitions):
                    log = self._logs.pop((name, partition))
                    await log.aclose()
                    directory = partition_directory(self.config.data_dir, name, partition)
                    await self.backend.rename(
                        directory,
                        os.path.join(
                            self.config.data_dir,
                            deleted_directory_name(os.path.basename(directory)),
                        ),
                    )
                await self.backend.fsync_directory(self.config.data_dir)
            except OSError as error:
                # The topic is gone (the list says so); start-up removes what is left.
                raise StorageError(
                    f"topic {name!r} is deleted, but removing its files failed: "
                    f"{error.strerror or error}; they are removed at the next start"
                ) from error
            finally:
                for partition in range(info.partitions):
                    leftover = self._logs.pop((name, partition), None)
                    if leftover is not None:
                        with trio.CancelScope(shield=True):
                            await leftover.aclose()
        await self._remove_deleted_directories()
        logger.info("deleted topic %s", name)

    async def _remove_deleted_directories(self) -> None:
        data_dir = self.config.data_dir
        for entry in await self.backend.list_directory(data_dir):
            # ".deleted": what trioring 0.1 named them.
            if entry.endswith((DELETED_SUFFIX, ".deleted")):
                await trio.to_thread.run_sync(shutil.rmtree, os.path.join(data_dir, entry))

    async def _set_aside_orphans(self) -> None:
        """Partition directories of topics the list does not have: left by an interrupted delete."""
        topics = self._topic_store.topics
        data_dir = self.config.data_dir
        for entry in await self.backend.list_directory(data_dir):
            match = _PARTITION_DIRECTORY.fullmatch(entry)
            if match is None or entry.startswith("__"):
                continue
            topic, partition = match.group(1), int(match.group(2))
            info = topics.get(topic)
            if info is None or partition >= info.partitions:
                logger.warning("%s: belongs to no topic (interrupted delete); removing it", entry)
                await self.backend.rename(
                    os.path.join(data_dir, entry),
                    os.path.join(data_dir, deleted_directory_name(entry)),
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
        while True:
            await trio.sleep_until(min(due.values()))
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
        if self._offsets is not None:
            logs.append(self._offsets.log)
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
        await self._each_log(list(self._logs.values()), PartitionLog.enforce_retention)
        await self.offsets.maybe_compact()

    async def run_upkeep_now(self) -> None:
        """Run every periodic job once (tests and ``trioring`` tools)."""
        await self._run_flush()
        await self._run_checkpoint()
        await self._run_retention()

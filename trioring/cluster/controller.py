"""Controller: the one writer of cluster metadata, durable in the metadata log.

Kafka's KRaft controller on one node. Topics, their configs, which worker
owns each partition, the cluster id and the producer-id blocks live in one
small log, ``<data_dir>/__cluster_metadata-0``: each change is one JSON
event appended as a record batch and fdatasynced before it takes effect, so
a crash leaves every acknowledged change and none that was not. Start-up
replays the log into a :class:`ClusterMetadata`. When the log grows past
``METADATA_LOG_COMPACT_BYTES`` it is rewritten as one snapshot event.

The supervisor runs the controller for its workers; the embedded broker
runs one for its single in-process worker. Workers never write metadata:
they ask the controller (CreateTopics, DeleteTopics, CreatePartitions,
auto-creation, producer ids), which validates, places new partitions on
the least loaded workers, persists, and publishes the new metadata in
:attr:`Controller.metadata`.

A data directory of trioring 0.1 (``__cluster_metadata/topics.json``, one
``__consumer_offsets-0`` for all groups) is converted on first start: its
topics, cluster id and producer-id high mark become events, and its
offsets log is set aside for ``core.offsets.move_legacy_offsets``, which
commits each group's offsets to its partition of the new offsets topic.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio
import trio_util

from trioring._constants import (
    METADATA_LOG_COMPACT_BYTES,
    OFFSETS_TOPIC_PARTITIONS,
    PARTITIONS_MAX,
    PRODUCER_ID_BLOCK_SIZE,
)
from trioring.cluster.model import (
    METADATA_LOG_DIRECTORY,
    OFFSETS_TOPIC,
    ClusterMetadata,
    TopicInfo,
    config_from_json,
    config_to_json,
    overrides_from_json,
    validate_partitions,
    validate_topic_name,
)
from trioring.cluster.topic_configs import derive_overrides, log_defaults, with_values
from trioring.config import BrokerConfig
from trioring.errors import (
    ConfigsChangedError,
    InvalidArgumentError,
    InvalidPartitionsError,
    StorageError,
    TopicExistsError,
    UnknownTopicOrPartitionError,
)
from trioring.protocol.records import Record, build_batch, decode_batch, iterate_batches
from trioring.storage.files import read_file
from trioring.storage.layout import remove_deleted_directories, set_aside_orphans
from trioring.storage.log import DurableEnd, LogConfig, PartitionLog
from trioring.uring import FileBackend

__all__ = [
    "LEGACY_OFFSETS_MOVING",
    "Controller",
    "Distribute",
    "create_topic_everywhere",
    "offsets_log_config",
]

logger = logging.getLogger("trioring.controller")

#: The 0.1 layout, converted on first start.
LEGACY_METADATA_DIRECTORY = "__cluster_metadata"
LEGACY_OFFSETS_DIRECTORY = "__consumer_offsets-0"
#: Where the 0.1 offsets wait until core.offsets.move_legacy_offsets moves
#: them to their groups' partitions (before any worker starts).
LEGACY_OFFSETS_MOVING = "__consumer_offsets.moving"
_LEGACY_PRODUCER_IDS_MAGIC = "trioring-producer-ids-v1"


def offsets_log_config(config: BrokerConfig) -> LogConfig:
    """The offsets topic's logs keep everything; their size is bounded by compaction."""
    return LogConfig(
        retention_ms=None, retention_bytes=None, segment_bytes=config.offsets_log_compact_bytes
    )


async def _open_metadata_log(
    config: BrokerConfig, backend: FileBackend, discard_after: DurableEnd | None
) -> PartitionLog:
    log_config = LogConfig(
        retention_ms=None, retention_bytes=None, segment_bytes=METADATA_LOG_COMPACT_BYTES
    )
    return await PartitionLog.open(
        os.path.join(config.data_dir, METADATA_LOG_DIRECTORY),
        log_config,
        backend,
        config.clock,
        discard_after=discard_after,
    )


class Controller:
    """Owns the cluster metadata. Open with :meth:`open`."""

    def __init__(self, config: BrokerConfig, backend: FileBackend, log: PartitionLog) -> None:
        self._config = config
        self._backend = backend
        self._log = log
        #: After a failed fdatasync: where the metadata log's files stop being trusted.
        self._untrusted_after: DurableEnd | None = None
        self._lock = trio.Lock()
        #: Producer ids below this are handed out (durably reserved).
        self._producer_ids_end = 0
        #: The current metadata; every change makes a new value (watchable).
        self.metadata: trio_util.AsyncValue[ClusterMetadata] = trio_util.AsyncValue(
            ClusterMetadata("", 1)
        )

    @property
    def current(self) -> ClusterMetadata:
        """``metadata.value``, typed."""
        value: ClusterMetadata = self.metadata.value
        return value

    @classmethod
    @asynccontextmanager
    async def open(
        cls, config: BrokerConfig, backend: FileBackend, *, workers: int
    ) -> AsyncIterator[Controller]:
        """Replay (or create) the metadata log and place every partition over ``workers``."""
        if workers < 1:
            raise InvalidArgumentError(f"a broker needs at least 1 worker, not {workers}")
        log = await _open_metadata_log(config, backend, None)
        controller = cls(config, backend, log)
        try:
            await controller._replay()
            await controller._start(workers)
            yield controller
        finally:
            with trio.CancelScope(shield=True):
                await controller._log.aclose()

    # --- the log --------------------------------------------------------------------

    async def _replay(self) -> None:
        offset, end = self._log.log_start_offset, self._log.log_end_offset
        metadata: ClusterMetadata | None = None
        while offset < end:
            result = await self._log.read(offset, 1 << 20)
            for position, _ in iterate_batches(result.data):
                header, records = decode_batch(result.data, position)
                for record in records:
                    metadata = self._replay_event(metadata, _decode_event(record))
                offset = header.next_offset
        if metadata is not None:
            self.metadata.value = metadata

    def _replay_event(
        self, metadata: ClusterMetadata | None, event: Mapping[str, Any]
    ) -> ClusterMetadata:
        kind = event.get("type")
        if kind == "snapshot":
            self._producer_ids_end = int(event["next_producer_id"])
            return ClusterMetadata.from_json(event["metadata"])
        if kind == "cluster":
            return ClusterMetadata(str(event["cluster_id"]), int(event["workers"]), {}, 1)
        if metadata is None:
            raise StorageError(
                f"the metadata log {self._log.directory} does not start with the cluster "
                "record; restore it from a backup"
            )
        if kind == "producer_ids":
            self._producer_ids_end = int(event["next"])
        return metadata.apply(event)

    async def _recover_log(self) -> None:
        """After a failed fdatasync, reopen the metadata log from disk (not the page cache).

        Its events are applied only once durable, so what the failed sync
        covered was never current: cutting it off loses nothing promised. The
        next change tries again while the disk still fails (each answers
        KAFKA_STORAGE_ERROR meanwhile).
        """
        failed = self._log
        if failed.failure is None:
            return
        if failed.untrusted_after is not None:
            self._untrusted_after = failed.untrusted_after
        logger.warning(
            "%s: recovering the cluster metadata log from disk after a disk error: %s",
            failed.directory,
            failed.failure,
        )
        try:
            await failed.aclose()
        except Exception as error:  # the reopen cuts what the close could not
            logger.warning("closing the cluster metadata log failed: %s", error)
        try:
            self._log = await _open_metadata_log(self._config, self._backend, self._untrusted_after)
        except (OSError, StorageError) as error:
            raise StorageError(
                f"the cluster metadata log is offline after a disk error and reopening it "
                f"failed ({error}); it is tried again at the next change"
            ) from error
        self._untrusted_after = None
        logger.warning("%s: the cluster metadata log is back online", failed.directory)

    async def _append(self, events: list[dict[str, Any]]) -> None:
        """Make ``events`` durable, then current. The caller holds the lock."""
        await self._recover_log()
        metadata = self.metadata.value
        for event in events:
            if event["type"] == "cluster":
                metadata = ClusterMetadata(event["cluster_id"], event["workers"], {}, 1)
            else:
                metadata = metadata.apply(event)
        metadata.check()
        now_ms = int(self._config.clock() * 1000)
        records = [
            Record(value=json.dumps(event).encode(), timestamp_ms=now_ms) for event in events
        ]
        info = await self._log.append(build_batch(records, now_ms=now_ms))
        await self._log.flush(info.last_offset + 1)
        self.metadata.value = metadata
        await self._maybe_compact()

    async def _maybe_compact(self) -> None:
        if self._log.size_bytes <= METADATA_LOG_COMPACT_BYTES or self._log.segment_count < 2:
            return
        await self._log.roll()
        snapshot = {
            "type": "snapshot",
            "metadata": self.metadata.value.to_json(),
            "next_producer_id": self._producer_ids_end,
        }
        now_ms = int(self._config.clock() * 1000)
        start = self._log.log_end_offset
        info = await self._log.append(
            build_batch([Record(value=json.dumps(snapshot).encode())], now_ms=now_ms)
        )
        await self._log.flush(info.last_offset + 1)
        await self._log.delete_segments_before(start)
        logger.info("compacted the metadata log to one snapshot")

    # --- start-up -------------------------------------------------------------------

    async def _start(self, workers: int) -> None:
        async with self._lock:
            if self.metadata.value.cluster_id == "":
                await self._create(workers)
            metadata = self.metadata.value
            if OFFSETS_TOPIC not in metadata.topics:
                await self._append(
                    [self._create_topic_event(metadata, _offsets_topic(self._config))]
                )
            await self._follow_static_defaults()
            if self.metadata.value.workers != workers:
                previous = self.metadata.value.workers
                placement = self.metadata.value.placement_for(workers)
                await self._append(
                    [
                        {
                            "type": "place",
                            "workers": workers,
                            "owners": {name: list(owners) for name, owners in placement.items()},
                        }
                    ]
                )
                logger.warning(
                    "placed every partition anew: %d workers now, %d before (no data moves)",
                    workers,
                    previous,
                )
        await self._remove_legacy_metadata()
        # What an interrupted delete or creation left, before any worker opens anything.
        data_dir = self._config.data_dir
        partitions = {name: info.partitions for name, info in self.metadata.value.topics.items()}
        await set_aside_orphans(self._backend, data_dir, partitions)
        await remove_deleted_directories(self._backend, data_dir)

    async def _create(self, workers: int) -> None:
        """A new metadata log: empty, or converted from the 0.1 layout."""
        legacy = await _read_legacy_metadata(self._backend, self._config.data_dir)
        cluster_id = legacy.cluster_id if legacy else uuid.uuid4().hex[:22]
        events: list[dict[str, Any]] = [
            {"type": "cluster", "cluster_id": cluster_id, "workers": workers}
        ]
        if legacy is not None:
            # The 0.1 offsets log holds every group: set it aside before the
            # new offsets topic's partition 0 takes its directory name.
            old = os.path.join(self._config.data_dir, LEGACY_OFFSETS_DIRECTORY)
            if os.path.isdir(old):  # noqa: ASYNC240 - start-up, one stat
                await self._backend.rename(
                    old, os.path.join(self._config.data_dir, LEGACY_OFFSETS_MOVING)
                )
                await self._backend.fsync_directory(self._config.data_dir)
            metadata = ClusterMetadata(cluster_id, workers, {}, 1)
            for name in sorted(legacy.topics):
                event = self._create_topic_event(metadata, legacy.topics[name])
                metadata = metadata.apply(event)
                events.append(event)
            events.append({"type": "producer_ids", "next": legacy.producer_ids_end})
            logger.warning(
                "converted the data directory of trioring 0.1: %d topics", len(legacy.topics)
            )
        await self._append(events)
        self._producer_ids_end = legacy.producer_ids_end if legacy else 0

    async def _remove_legacy_metadata(self) -> None:
        legacy = os.path.join(self._config.data_dir, LEGACY_METADATA_DIRECTORY)
        if os.path.isdir(legacy):  # noqa: ASYNC240 - start-up, one stat
            await trio.to_thread.run_sync(shutil.rmtree, legacy)

    # --- changes workers ask for ------------------------------------------------------

    def _create_topic_event(self, metadata: ClusterMetadata, topic: TopicInfo) -> dict[str, Any]:
        placed = attrs_evolve_owners(topic, metadata.place(topic.partitions))
        return {"type": "create_topic", "topic": placed.to_json()}

    async def create_topic(
        self,
        name: str,
        partitions: int | None = None,
        config: LogConfig | None = None,
        overrides: Mapping[str, str] | None = None,
    ) -> TopicInfo:
        """Create a topic durably, its partitions on the least loaded workers.

        ``overrides`` are the Kafka configs the client gave, which made
        ``config``. Raises TopicExistsError, InvalidTopicError or
        InvalidPartitionsError.
        """
        validate_topic_name(name)
        partitions = self._config.default_partitions if partitions is None else partitions
        validate_partitions(partitions)
        if config is not None and not isinstance(config, LogConfig):
            raise InvalidArgumentError("config must be a trioring.LogConfig")
        async with self._lock:
            metadata = self.metadata.value
            if name in metadata.topics:
                raise TopicExistsError(f"topic {name!r} already exists")
            default = self.log_defaults()
            config = config or default
            if overrides is None:
                overrides = derive_overrides(config, default)
            topic = TopicInfo(
                name,
                partitions,
                uuid.uuid4().hex,
                config,
                overrides=overrides_from_json(overrides),
            )
            await self._append([self._create_topic_event(metadata, topic)])
            created = self.current.topics[name]
        logger.info("created topic %s with %d partitions", name, partitions)
        return created

    async def create_partitions(self, name: str, total: int) -> TopicInfo:
        """Grow a topic to ``total`` partitions (Kafka's CreatePartitions); never shrinks."""
        async with self._lock:
            info = self.metadata.value.topics.get(name)
            if info is None or info.internal:
                raise UnknownTopicOrPartitionError(f"unknown topic {name!r}")
            if total <= info.partitions:
                raise InvalidPartitionsError(
                    f"topic {name!r} has {info.partitions} partitions; the new count must be "
                    f"larger, not {total}"
                )
            if total > PARTITIONS_MAX:
                raise InvalidPartitionsError(
                    f"a topic can have at most {PARTITIONS_MAX} partitions, not {total}"
                )
            owners = self.metadata.value.place(total - info.partitions)
            await self._append(
                [{"type": "create_partitions", "name": name, "owners": list(owners)}]
            )
            grown = self.current.topics[name]
        logger.info("topic %s now has %d partitions", name, total)
        return grown

    async def alter_topic_config(
        self,
        name: str,
        config: LogConfig,
        overrides: Mapping[str, str],
        expected: TopicInfo | None = None,
    ) -> TopicInfo:
        """Give a topic new configs (Kafka's AlterConfigs): ``overrides`` replace its own
        configs, ``config`` is what they make of the broker's defaults.

        ``expected``: the topic the change was computed from (IncrementalAlterConfigs);
        ConfigsChangedError if its configs changed meanwhile.
        """
        if not isinstance(config, LogConfig):
            raise InvalidArgumentError("config must be a trioring.LogConfig")
        async with self._lock:
            info = self.current.topics.get(name)
            if info is None or info.internal:
                raise UnknownTopicOrPartitionError(f"unknown topic {name!r}")
            if expected is not None and (expected.config, expected.overrides) != (
                info.config,
                info.overrides,
            ):
                raise ConfigsChangedError(f"the configs of topic {name!r} changed meanwhile")
            await self._append(
                [
                    {
                        "type": "alter_topic_config",
                        "name": name,
                        "config": config_to_json(config),
                        "overrides": dict(overrides),
                    }
                ]
            )
            altered = self.current.topics[name]
        logger.info("topic %s has new configs %s", name, dict(overrides))
        return altered

    def log_defaults(self) -> LogConfig:
        """What topics fall back to: the ``[log]`` settings, dynamic defaults over them."""
        return log_defaults(self._config.log, self.current.broker_defaults)

    async def alter_broker_defaults(
        self,
        configs: Mapping[str, str],
        node: str = "",
        expected: Mapping[str, str] | None = None,
    ) -> ClusterMetadata:
        """Replace the dynamic broker configs (``log.*`` topic defaults, Kafka names,
        validated by the caller) of the whole cluster (``node`` ""), where every topic
        gets the new default for each config it does not set itself in the same event,
        or of one node, whose worker applies them to its partitions over the topics'
        configs (``topic_configs.effective_config``). ``expected``: the configs the
        change was computed from (IncrementalAlterConfigs); ConfigsChangedError if they
        changed meanwhile."""
        if node:
            async with self._lock:
                if expected is not None and dict(expected) != dict(
                    self.current.node_defaults.get(node, {})
                ):
                    raise ConfigsChangedError(f"the configs of broker {node} changed meanwhile")
                await self._append(
                    [
                        {
                            "type": "alter_broker_defaults",
                            "node": node,
                            "configs": dict(configs),
                            "topics": {},
                        }
                    ]
                )
            logger.info("broker %s configs now %s", node, dict(configs))
            return self.current
        async with self._lock:
            metadata = self.current
            if expected is not None and dict(expected) != dict(metadata.broker_defaults):
                raise ConfigsChangedError("the cluster-wide broker configs changed meanwhile")
            static = self._config.log
            old_default = log_defaults(static, metadata.broker_defaults)
            new_default = log_defaults(static, configs)
            topics = _following(metadata, new_default, old_default)
            await self._append(
                [{"type": "alter_broker_defaults", "configs": dict(configs), "topics": topics}]
            )
            logger.info(
                "cluster-wide broker configs now %s (%d topics follow)", dict(configs), len(topics)
            )
            return self.current

    async def _follow_static_defaults(self) -> None:
        """Topics follow ``[log]`` settings changed since the last start, as Kafka's topics
        follow its static broker defaults. The caller holds the lock."""
        metadata = self.current
        topics = _following(metadata, self.log_defaults(), None)
        if topics:
            await self._append(
                [
                    {
                        "type": "alter_broker_defaults",
                        "configs": dict(metadata.broker_defaults),
                        "topics": topics,
                    }
                ]
            )
            logger.info("%d topics follow the changed [log] settings", len(topics))

    async def delete_topic(self, name: str) -> TopicInfo:
        """Delete a topic from the metadata; the owners then remove its partitions."""
        async with self._lock:
            info = self.current.topics.get(name)
            if info is None or info.internal:
                raise UnknownTopicOrPartitionError(f"unknown topic {name!r}")
            await self._append([{"type": "delete_topic", "name": name}])
        logger.info("deleted topic %s", name)
        return info

    async def allocate_producer_ids(self, count: int = PRODUCER_ID_BLOCK_SIZE) -> int:
        """Reserve ``count`` producer ids, durably; return the first (AllocateProducerIds).

        Ids are never handed out twice, even across crashes: the end of the
        block is persisted before any id of it is used. A worker that
        restarts skips the rest of its block.
        """
        assert count >= 1
        async with self._lock:
            first = self._producer_ids_end
            await self._append([{"type": "producer_ids", "next": first + count}])
            self._producer_ids_end = first + count
        return first


#: Publishes new metadata to every worker and returns, once they have it, the
#: partitions that failed to open, with why.
Distribute = Callable[[ClusterMetadata], Awaitable[Mapping[tuple[str, int], StorageError]]]


async def create_topic_everywhere(
    controller: Controller,
    distribute: Distribute,
    name: str,
    partitions: int | None = None,
    config: LogConfig | None = None,
    *,
    overrides: Mapping[str, str] | None = None,
) -> TopicInfo:
    """Create a topic and have every owner open its partitions, or create nothing.

    A partition that cannot be opened (a full disk) undoes the creation: the
    client gets KAFKA_STORAGE_ERROR and no topic exists, as when the
    metadata itself cannot be written.
    """
    topic = await controller.create_topic(name, partitions, config, overrides)
    failures = await distribute(controller.current)
    failed = [error for (topic_name, _), error in failures.items() if topic_name == name]
    if failed:
        await controller.delete_topic(name)
        await distribute(controller.current)
        raise StorageError(f"creating topic {name!r} failed: {failed[0]}; nothing was created")
    return topic


def _following(
    metadata: ClusterMetadata, new_default: LogConfig, old_default: LogConfig | None
) -> dict[str, Any]:
    """The topics whose LogConfig changes with new defaults: their new config and own
    configs, as an alter_broker_defaults event carries them. A topic whose own configs
    were not recorded keeps what differs from ``old_default`` (None: it keeps its config)."""
    topics: dict[str, Any] = {}
    for name, info in metadata.topics.items():
        if info.internal or (info.overrides is None and old_default is None):
            continue
        own = (
            derive_overrides(info.config, old_default)
            if info.overrides is None and old_default is not None
            else dict(info.overrides or ())
        )
        config = with_values(new_default, own)
        if config != info.config or info.overrides is None:
            topics[name] = {"config": config_to_json(config), "overrides": own}
    return topics


def attrs_evolve_owners(topic: TopicInfo, owners: tuple[int, ...]) -> TopicInfo:
    return attrs.evolve(topic, owners=owners)


def _offsets_topic(config: BrokerConfig) -> TopicInfo:
    return TopicInfo(
        OFFSETS_TOPIC,
        OFFSETS_TOPIC_PARTITIONS,
        uuid.uuid4().hex,
        offsets_log_config(config),
        internal=True,
    )


def _decode_event(record: Record) -> dict[str, Any]:
    try:
        event = json.loads(record.value or b"")
    except ValueError as error:
        raise StorageError(f"metadata log record {record.offset} is unreadable: {error}") from None
    if not isinstance(event, dict) or "type" not in event:
        raise StorageError(f"metadata log record {record.offset} is not an event")
    return event


class _LegacyMetadata:
    def __init__(self, cluster_id: str, topics: dict[str, TopicInfo], producer_ids_end: int):
        self.cluster_id = cluster_id
        self.topics = topics
        self.producer_ids_end = producer_ids_end


async def _read_legacy_metadata(backend: FileBackend, data_dir: str) -> _LegacyMetadata | None:
    """The 0.1 metadata files, or None if there are none."""
    directory = os.path.join(data_dir, LEGACY_METADATA_DIRECTORY)
    raw_topics = await read_file(backend, os.path.join(directory, "topics.json"))
    raw_cluster_id = await read_file(backend, os.path.join(directory, "cluster-id"))
    raw_producer_ids = await read_file(backend, os.path.join(directory, "producer-ids"))
    if raw_topics is None and raw_cluster_id is None and raw_producer_ids is None:
        return None
    topics: dict[str, TopicInfo] = {}
    try:
        if raw_topics is not None:
            document = json.loads(raw_topics)
            for entry in document["topics"]:
                topics[entry["name"]] = TopicInfo(
                    name=str(entry["name"]),
                    partitions=int(entry["partitions"]),
                    topic_id=str(entry["topic_id"]),
                    config=config_from_json(entry["config"]),
                )
        producer_ids_end = 0
        if raw_producer_ids is not None:
            magic, end = raw_producer_ids.decode("ascii").split()
            if magic != _LEGACY_PRODUCER_IDS_MAGIC:
                raise ValueError(f"unknown producer-ids format {magic!r}")
            producer_ids_end = int(end)
    except (ValueError, KeyError, TypeError) as error:
        raise StorageError(
            f"the trioring 0.1 metadata in {directory} is unreadable ({error}); restore it from "
            "a backup or remove the data directory to start empty"
        ) from None
    cluster_id = (raw_cluster_id or b"").decode("ascii", "replace").strip() or uuid.uuid4().hex[:22]
    return _LegacyMetadata(cluster_id, topics, producer_ids_end)

"""The embedded broker: ``async with trioring.open_broker(data_dir) as broker``.

Each method builds a handler request, calls the (possibly wrapped) handler
and turns the response into Python values. Nothing here knows more of
Kafka than the handlers do.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Literal, NamedTuple

import attrs
import trio

from trioring._exception_groups import BodyError, body_exception_unwrapped
from trioring.cluster.controller import LEGACY_OFFSETS_MOVING, Controller
from trioring.cluster.model import OFFSETS_TOPIC, ClusterMetadata, Node, TopicInfo
from trioring.cluster.view import ClusterView, LocalClusterView
from trioring.config import BrokerConfig
from trioring.core.offsets import CommittedOffset, move_legacy_offsets
from trioring.core.shard import Shard
from trioring.errors import BrokerClosedError, InvalidArgumentError, InvalidRequiredAcksError
from trioring.handlers import HandlerContext, Handlers, Middleware
from trioring.handlers.messages import (
    EARLIEST_TIMESTAMP,
    LATEST_TIMESTAMP,
    CreatePartitionsRequest,
    CreateTopicRequest,
    DeleteTopicsRequest,
    FetchPartition,
    FetchRequest,
    ListOffsetsRequest,
    NewPartitions,
    OffsetCommitRequest,
    OffsetFetchRequest,
    ProduceRequest,
)
from trioring.protocol.compression import Compression
from trioring.protocol.records import Record, build_batch, decode_batch, iterate_batches
from trioring.storage.layout import partition_directory
from trioring.storage.lock import DataDirectoryLock
from trioring.storage.log import LogConfig
from trioring.uring import FileBackend, open_backend

logger = logging.getLogger("trioring")

AcksArgument = Literal[0, 1, -1, "all"]

#: The address Metadata gives an embedded broker that serves no Kafka listener
#: (port 0): no socket reaches it, but the in-process client transport
#: (trioring.client) needs the node to route to, as a partition's leader and
#: a group's coordinator. serve_kafka replaces it with the listener's address.
IN_PROCESS_HOST = "in-process"


class ProduceResult(NamedTuple):
    """Where a produce landed (a named tuple: one is made per produce)."""

    #: Offset of the first record; -1 for acks=0, whose outcome is not awaited.
    base_offset: int
    last_offset: int
    log_start_offset: int


@attrs.frozen
class FetchResult:
    #: Records at or after the offset asked for, each with ``.offset`` set.
    records: list[Record]
    high_watermark: int
    log_start_offset: int

    @property
    def next_offset(self) -> int | None:
        """Offset to fetch next, or None when nothing was returned."""
        if not self.records:
            return None
        last = self.records[-1].offset
        assert last is not None
        return last + 1


_ACKS: dict[object, Literal[0, 1, -1]] = {"all": -1, -1: -1, 0: 0, 1: 1}


def _acks(acks: AcksArgument) -> Literal[0, 1, -1]:
    try:
        return _ACKS[acks]
    except (KeyError, TypeError):  # TypeError: unhashable
        raise InvalidRequiredAcksError(f'acks must be 0, 1 or "all", not {acks!r}') from None


class Broker:
    """An open broker. Get one from :func:`open_broker`."""

    def __init__(
        self, shard: Shard, cluster: ClusterView, handlers: Handlers, nursery: trio.Nursery
    ) -> None:
        self._shard = shard
        self._cluster = cluster
        self._handlers = handlers
        self._context = HandlerContext(shard, cluster)
        self._nursery = nursery

    @property
    def config(self) -> BrokerConfig:
        return self._shard.config

    @property
    def shard(self) -> Shard:
        return self._shard

    @property
    def cluster(self) -> ClusterView:
        """The cluster as this broker's worker sees it (metadata, nodes)."""
        return self._cluster

    def handler_context(self, **changes: object) -> HandlerContext:
        """The context handlers get from this broker (e.g. to call one directly)."""
        return attrs.evolve(self._context, **changes)  # type: ignore[arg-type]

    @property
    def handlers(self) -> Handlers:
        """The handlers with the broker's middleware applied (the Kafka listener uses them)."""
        return self._handlers

    @property
    def io_backend(self) -> str:
        return self._shard.backend.name

    @property
    def io_backend_reason(self) -> str:
        """Why that backend runs, e.g. "io_uring unavailable: ..." ("" if not chosen by config)."""
        return getattr(self._shard.backend, "selection_reason", "")

    def topics(self) -> dict[str, TopicInfo]:
        return self._cluster.current.user_topics()

    async def create_topic(
        self, name: str, partitions: int | None = None, *, config: LogConfig | None = None
    ) -> TopicInfo:
        """Create ``name`` with ``partitions`` (default: ``config.default_partitions``).

        Raises TopicExistsError, InvalidTopicError or InvalidPartitionsError.
        """
        response = await self._handlers.create_topic(
            self._context, CreateTopicRequest(name, partitions, config)
        )
        topic: TopicInfo = response.topic
        return topic

    async def produce(
        self,
        topic: str,
        partition: int,
        records: Sequence[Record],
        *,
        acks: AcksArgument = "all",
        compression: Compression | str | None = None,
    ) -> ProduceResult:
        """Append ``records`` as one batch.

        ``acks="all"`` returns once the records are durable (fdatasync),
        ``acks=1`` once written, ``acks=0`` at once (errors are logged).
        Always a cancel point; an acks=1 produce skips its schedule point if
        the partition took one less than 0.5 ms ago (docs/architecture.md,
        "Checkpoints").
        """
        if not records:
            raise InvalidArgumentError("produce needs at least one record")
        if not all(isinstance(r, Record) for r in records):
            raise InvalidArgumentError("records must be trioring.Record instances")
        now_ms = int(self._shard.config.clock() * 1000)
        batch = build_batch(records, compression=compression, now_ms=now_ms)
        return await self.produce_batch(topic, partition, batch, acks=acks)

    async def produce_batch(
        self,
        topic: str,
        partition: int,
        batch: bytes | bytearray | memoryview,
        *,
        acks: AcksArgument = "all",
    ) -> ProduceResult:
        """Append one or more encoded RecordBatch v2, as a Kafka producer sends them.

        Validated as the Kafka server validates them; checkpoints as :meth:`produce`.
        """
        request = ProduceRequest(topic, partition, batch, _acks(acks))
        if request.acks == 0:
            try:
                self._nursery.start_soon(self._produce_unacknowledged, request)
            except RuntimeError:  # the nursery closed: the broker is shutting down
                raise BrokerClosedError("the broker is closed") from None
            await trio.lowlevel.checkpoint()
            return ProduceResult(-1, -1, -1)
        response = await self._handlers.produce(self._context, request)
        return ProduceResult(response.base_offset, response.last_offset, response.log_start_offset)

    async def _produce_unacknowledged(self, request: ProduceRequest) -> None:
        try:
            await self._handlers.produce(self._context, request)
        except Exception:
            logger.exception("acks=0 produce to %s-%d failed", request.topic, request.partition)

    async def fetch(
        self,
        topic: str,
        partition: int,
        offset: int,
        *,
        max_bytes: int = 1 << 20,
        max_wait: float = 0.0,
        min_bytes: int = 1,
    ) -> FetchResult:
        """Records from ``offset`` on, waiting up to ``max_wait`` seconds for ``min_bytes``.

        Raises OffsetOutOfRangeError if ``offset`` is below the log start or
        above the high watermark, UnknownTopicOrPartitionError for unknown
        partitions.
        """
        if max_wait < 0:
            raise InvalidArgumentError("max_wait must be >= 0 seconds")
        request = FetchRequest(
            (FetchPartition(topic, partition, offset, max_bytes),),
            max_wait_ms=round(max_wait * 1000),
            min_bytes=min_bytes,
            max_bytes=max_bytes,
        )
        response = await self._handlers.fetch(self._context, request)
        (fetched,) = response.partitions
        if fetched.error is not None:
            raise fetched.error
        data = fetched.records
        assert isinstance(data, bytes), "the embedded API's context takes no LogSlices"
        records: list[Record] = []
        for position, header in iterate_batches(data):
            if header.is_control:
                continue
            _, batch_records = decode_batch(data, position)
            records.extend(r for r in batch_records if r.offset is not None and r.offset >= offset)
        return FetchResult(records, fetched.high_watermark, fetched.log_start_offset)

    async def list_offset(
        self, topic: str, partition: int, timestamp: int | Literal["earliest", "latest"]
    ) -> int:
        """Offset for a timestamp in ms (first record at or after it; -1 if none),
        or the partition's earliest / latest (next to be written) offset."""
        if timestamp == "earliest":
            timestamp_ms = EARLIEST_TIMESTAMP
        elif timestamp == "latest":
            timestamp_ms = LATEST_TIMESTAMP
        elif isinstance(timestamp, int) and timestamp >= 0:
            timestamp_ms = timestamp
        else:
            raise InvalidArgumentError(
                f'timestamp must be milliseconds >= 0, "earliest" or "latest", not {timestamp!r}'
            )
        response = await self._handlers.list_offsets(
            self._context, ListOffsetsRequest(topic, partition, timestamp_ms)
        )
        offset: int = response.offset
        return offset

    async def commit_offsets(
        self, group: str, offsets: Mapping[tuple[str, int], int | CommittedOffset]
    ) -> None:
        """Durably commit ``{(topic, partition): offset}`` for ``group``.

        Raises the error of the first partition that could not be committed
        (e.g. UnknownTopicOrPartitionError); the others are committed.
        """
        normalized = {
            tp: value if isinstance(value, CommittedOffset) else CommittedOffset(int(value))
            for tp, value in offsets.items()
        }
        response = await self._handlers.commit_offsets(
            self._context, OffsetCommitRequest(group, normalized)
        )
        for error in response.errors.values():
            if error is not None:
                raise error

    async def committed_offsets(self, group: str) -> dict[tuple[str, int], int]:
        """``{(topic, partition): offset}`` committed by ``group`` (empty if none)."""
        response = await self._handlers.fetch_offsets(self._context, OffsetFetchRequest(group))
        return {tp: committed.offset for tp, committed in response.offsets.items()}

    async def delete_topic(self, name: str) -> None:
        """Delete a topic and its data (UnknownTopicOrPartitionError if there is none)."""
        response = await self._handlers.delete_topics(self._context, DeleteTopicsRequest((name,)))
        (result,) = response.results
        if result.error is not None:
            raise result.error

    async def create_partitions(self, name: str, total: int) -> TopicInfo:
        """Grow a topic to ``total`` partitions (InvalidPartitionsError if not more)."""
        response = await self._handlers.create_partitions(
            self._context, CreatePartitionsRequest((NewPartitions(name, total),))
        )
        (result,) = response.results
        if result.error is not None:
            raise result.error
        return self._cluster.current.topics[name]

    def statistics(self) -> dict[str, dict[str, int]]:
        """Offsets and sizes of this broker's partitions, keyed ``"topic-partition"``."""
        return {
            f"{topic}-{partition}": log.statistics()
            for topic, partition, log in sorted(self._shard.owned_logs())
        }


@asynccontextmanager
async def open_broker(
    config: BrokerConfig | str | os.PathLike[str],
    *,
    middleware: Sequence[Middleware] = (),
    backend: FileBackend | None = None,
) -> AsyncIterator[Broker]:
    """Open (creating if needed) a broker on a data directory, recovering after a crash.

    ``config`` is a BrokerConfig or just the data directory. ``middleware``
    wraps every handler. On exit, all data is flushed and files are closed.

    The data directory is locked for as long as the broker is open: another
    process (broker, demo) opening it raises DataDirectoryInUseError naming
    the holder. An exception raised in the ``async with`` body comes back
    as it was raised, not wrapped in an ExceptionGroup.
    """
    if not isinstance(config, BrokerConfig):
        config = BrokerConfig(data_dir=os.fspath(config))
    # Before anything in the directory is read or written: one owner at a time.
    lock = await DataDirectoryLock.acquire(config.data_dir)
    try:
        owned_backend = backend is None
        file_backend = open_backend(config.io_backend) if backend is None else backend
        try:
            body = BodyError()
            async with (
                body_exception_unwrapped(body),
                Controller.open(config, file_backend, workers=1) as controller,
            ):
                await move_legacy_offsets_of(config, file_backend)
                async with (
                    Shard.open(config, file_backend, controller.current) as shard,
                    trio.open_nursery() as nursery,
                ):
                    cluster = LocalClusterView(controller, shard.apply)
                    cluster.nodes.value = (Node(cluster.worker_index, IN_PROCESS_HOST, 0),)
                    try:
                        yield Broker(shard, cluster, Handlers().wrap(*middleware), nursery)
                    except BaseException as error:
                        body.error = error
                        raise
        finally:
            if owned_backend:
                with trio.CancelScope(shield=True):
                    await file_backend.aclose()
    finally:
        lock.release()


async def move_legacy_offsets_of(config: BrokerConfig, backend: FileBackend) -> None:
    """Move a trioring 0.1 data directory's committed offsets to their partitions."""
    data_dir = config.data_dir
    await move_legacy_offsets(
        data_dir,
        os.path.join(data_dir, LEGACY_OFFSETS_MOVING),
        backend,
        config.clock,
        compact_bytes=config.offsets_log_compact_bytes,
        partition_of=ClusterMetadata.offsets_partition,
        partition_directory=lambda partition: partition_directory(
            data_dir, OFFSETS_TOPIC, partition
        ),
    )

"""The Trio producer: batching, idempotence, retries and back-pressure.

``send_nowait`` puts a record in its partition's open batch and returns a
:class:`SendHandle`; ``send`` does the same, waiting for room in the buffer
and then for the broker's acknowledgement. One sender task drains batches
that are full, or older than ``linger_ms`` (or all of them on ``flush``),
groups them by leader and sends one Produce request per broker, one batch per
partition in flight at a time, so a partition's batches arrive in order.

Idempotence (on by default, as in Kafka 3+): the producer asks for a producer
id once, and numbers each partition's records. A batch is encoded once, with
its sequence, and resent as it is when a retriable error (a leader moved, a
broken connection, a timeout) makes it try again: the broker answers a
duplicate with the offsets it gave the first time, so nothing is written
twice. Batches that cannot be delivered within ``delivery_timeout_ms`` fail.
"""

from __future__ import annotations

import datetime
import logging
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Literal

import attrs
import trio
from kio.schema.errors import ErrorCode
from kio.static.primitive import i32Timedelta

from trioring._broker import Broker
from trioring._constants import (
    CLIENT_REQUEST_TIMEOUT_MS_DEFAULT,
    CLIENT_RETRY_BACKOFF_MAX_MS_DEFAULT,
    CLIENT_RETRY_BACKOFF_MS_DEFAULT,
    PRODUCER_BATCH_BYTES_DEFAULT,
    PRODUCER_BUFFER_BYTES_DEFAULT,
    PRODUCER_DELIVERY_TIMEOUT_MS_DEFAULT,
    PRODUCER_LINGER_MS_DEFAULT,
    PRODUCER_REQUEST_BYTES_MAX_DEFAULT,
)
from trioring._exception_groups import BodyError, body_exception_unwrapped
from trioring.client._cluster import Cluster
from trioring.client._connection import ConnectionBrokenError, UnsupportedApiError
from trioring.client._partitioner import StickyPartitioner, partition_for_key
from trioring.errors import InvalidArgumentError, KafkaError, TrioringError
from trioring.protocol.compression import Compression
from trioring.protocol.kafka import ApiKey, request_schema
from trioring.protocol.kafka._build import build, sibling
from trioring.protocol.records import (
    NO_PRODUCER_ID,
    Header,
    RecordFields,
    build_batch_from_fields,
    estimate_fields_bytes,
)

__all__ = ["Producer", "RecordMetadata", "SendHandle", "open_producer"]

logger = logging.getLogger("trioring.client")

Acks = Literal[0, 1, -1, "all"]

#: Errors after which the same batch may be sent again (Kafka's RetriableException).
_RETRIABLE = frozenset(
    {
        ErrorCode.not_leader_or_follower,
        ErrorCode.leader_not_available,
        ErrorCode.unknown_topic_or_partition,
        ErrorCode.request_timed_out,
        ErrorCode.not_enough_replicas,
        ErrorCode.not_enough_replicas_after_append,
        ErrorCode.network_exception,
        ErrorCode.kafka_storage_error,
        ErrorCode.coordinator_load_in_progress,
        ErrorCode.throttling_quota_exceeded,
    }
)
#: Of those, the ones that mean the metadata (the partition's leader) is stale.
_STALE_METADATA = frozenset(
    {
        ErrorCode.not_leader_or_follower,
        ErrorCode.leader_not_available,
        ErrorCode.unknown_topic_or_partition,
        ErrorCode.network_exception,
        ErrorCode.kafka_storage_error,
    }
)
_SEQUENCE_MODULUS = 1 << 31


@attrs.frozen
class RecordMetadata:
    """Where an acknowledged record was written (offset -1 with acks=0)."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int


class SendHandle:
    """The outcome of one queued record: ``await handle.wait()``.

    Light on purpose (one per record): it points at its batch, whose one
    event tells every record in it at once.
    """

    __slots__ = ("_batch", "_error", "_index", "_placed", "partition", "topic")

    def __init__(self, topic: str, partition: int | None) -> None:
        self.topic = topic
        self.partition = partition
        self._batch: _Batch | None = None
        self._index = 0
        self._error: BaseException | None = None
        #: Only for a record queued before its topic's partitions were known.
        self._placed: trio.Event | None = None

    def done(self) -> bool:
        if self._error is not None:
            return True
        return self._batch is not None and self._batch.event.is_set()

    async def wait(self) -> RecordMetadata:
        """The record's metadata once acknowledged; its error if it could not be delivered."""
        if self._batch is None and self._error is None:
            assert self._placed is not None
            await self._placed.wait()
        if self._batch is not None:
            await self._batch.event.wait()
        return self.result()

    def result(self) -> RecordMetadata:
        if not self.done():
            raise trio.WouldBlock("the record is not acknowledged yet")
        if self._error is not None:
            raise self._error
        batch = self._batch
        assert batch is not None and self.partition is not None
        if batch.error is not None:
            raise batch.error
        return RecordMetadata(
            self.topic,
            self.partition,
            batch.base_offset + self._index if batch.base_offset >= 0 else -1,
            batch.records[self._index][3],
        )


@attrs.define(eq=False)
class _Batch:
    topic: str
    partition: int
    created: float
    records: list[RecordFields] = attrs.Factory(list)
    size_bytes: int = 0
    #: Set once every record of the batch is acknowledged (base_offset) or failed (error).
    event: trio.Event = attrs.Factory(trio.Event)
    base_offset: int = -1
    error: BaseException | None = None
    #: Encoded when first drained (its sequence is fixed then), resent as it is.
    data: bytes | None = None
    attempts: int = 0
    retry_at: float = -math.inf


@attrs.frozen
class _Settings:
    acks: int
    linger_ms: int
    batch_bytes: int
    buffer_bytes_max: int
    request_bytes_max: int
    compression: Compression
    idempotence: bool
    delivery_timeout_ms: int
    request_timeout_ms: int
    retry_backoff_ms: int
    retry_backoff_max_ms: int


def _fields(
    key: bytes | None, value: bytes | None, headers: Iterable[Header], timestamp_ms: int | None
) -> RecordFields:
    # As Kafka's producer: a record without a timestamp gets the time it is sent.
    if timestamp_ms is None:
        timestamp_ms = int(time.time() * 1000)
    return (key, value, headers if type(headers) is tuple else tuple(headers), timestamp_ms)


class Producer:
    """A Kafka producer on Trio. Open it with :func:`open_producer`."""

    def __init__(self, cluster: Cluster, settings: _Settings) -> None:
        self._cluster = cluster
        self._settings = settings
        self._partitioner = StickyPartitioner()
        #: (topic, partition) -> its batches, oldest first; the first may be in flight.
        self._batches: dict[tuple[str, int], deque[_Batch]] = {}
        #: Records whose topic's partitions are not known yet (send_nowait), and those
        #: queued behind them; a topic is in ``_placements`` while it has some here.
        self._unpartitioned: list[tuple[RecordFields, SendHandle, int]] = []
        self._in_flight: set[tuple[str, int]] = set()
        self._buffered_bytes = 0
        self._space = trio.Event()
        self._wakeup = trio.Event()
        self._idle = trio.Event()
        self._idle.set()
        self._flushing = 0
        self._producer_id = NO_PRODUCER_ID
        self._producer_epoch = -1
        self._sequences: dict[tuple[str, int], int] = {}
        self._closed = False
        self._fatal: BaseException | None = None
        self._sent_records = 0
        self._buffer_bytes_max = settings.buffer_bytes_max
        self._request_bytes_max = settings.request_bytes_max
        #: Records queued before their topic's partitions were known: one event per topic.
        self._placements: dict[str, trio.Event] = {}
        self._acknowledged_records = 0
        self._retries = 0

    # --- the API -------------------------------------------------------------------------

    async def send(
        self,
        topic: str,
        value: bytes | None = None,
        *,
        key: bytes | None = None,
        headers: Iterable[Header] = (),
        partition: int | None = None,
        timestamp_ms: int | None = None,
    ) -> RecordMetadata:
        """Send one record and return where it was written once acknowledged.

        Waits while the buffer is full (``buffer_bytes_max``): a fast caller
        is slowed to the rate the brokers take, the buffer never grows past it.
        """
        record = _fields(key, value, headers, timestamp_ms)
        size = self._check(topic, record)
        while (
            self._buffered_bytes + size > self._settings.buffer_bytes_max and self._buffered_bytes
        ):
            await self._space.wait()
        if partition is None and topic not in self._cluster.topics:
            await self._cluster.topic(topic)
        handle = self._enqueue(topic, record, partition, size)
        return await handle.wait()

    def send_nowait(
        self,
        topic: str,
        value: bytes | None = None,
        *,
        key: bytes | None = None,
        headers: Iterable[Header] = (),
        partition: int | None = None,
        timestamp_ms: int | None = None,
    ) -> SendHandle:
        """Queue one record; ``trio.WouldBlock`` if the buffer is full. Await the handle."""
        # The hot path of a fast producer: kept to plain operations.
        if timestamp_ms is None:
            timestamp_ms = time.time_ns() // 1_000_000
        if headers:
            record = _fields(key, value, headers, timestamp_ms)
            size = self._check(topic, record)
        else:
            record = (key, value, (), timestamp_ms)
            size = estimate_fields_bytes(key, value, ())
            if (
                size > self._request_bytes_max
                or self._closed
                or self._fatal is not None
                or not topic
            ):
                self._check(topic, record)
        if self._buffered_bytes + size > self._buffer_bytes_max and self._buffered_bytes:
            raise trio.WouldBlock(
                f"the producer's buffer holds {self._buffered_bytes} bytes "
                f"(buffer_bytes_max {self._settings.buffer_bytes_max}): await send() instead"
            )
        return self._enqueue(topic, record, partition, size)

    async def flush(self) -> None:
        """Wait until every record queued so far is acknowledged or has failed."""
        self._flushing += 1
        try:
            self._wake()
            while not self._idle.is_set():
                await self._idle.wait()
            await trio.lowlevel.checkpoint()
        finally:
            self._flushing -= 1

    def statistics(self) -> dict[str, Any]:
        return {
            "buffered_bytes": self._buffered_bytes,
            "queued_batches": sum(len(batches) for batches in self._batches.values()),
            "in_flight_batches": len(self._in_flight),
            "records_sent": self._sent_records,
            "records_acknowledged": self._acknowledged_records,
            "retries": self._retries,
            "producer_id": self._producer_id,
        }

    # --- queueing ------------------------------------------------------------------------

    def _check(self, topic: str, record: RecordFields) -> int:
        if self._closed:
            raise trio.ClosedResourceError("the producer is closed")
        if self._fatal is not None:
            raise self._fatal
        if not topic:
            raise InvalidArgumentError("a record needs a topic")
        size = estimate_fields_bytes(record[0], record[1], record[2])
        if size > self._settings.request_bytes_max:
            raise KafkaError(
                f"a record of {size} bytes exceeds request_bytes_max "
                f"({self._settings.request_bytes_max})",
                ErrorCode.message_too_large,
            )
        return size

    def _enqueue(
        self, topic: str, record: RecordFields, partition: int | None, size: int
    ) -> SendHandle:
        info = self._cluster.topics.get(topic)
        count = len(info.partitions) if info is not None and info.partitions else 0
        if partition is not None and count and not 0 <= partition < count:
            raise KafkaError(
                f"topic {topic!r} has {count} partitions, not {partition + 1}",
                ErrorCode.unknown_topic_or_partition,
            )
        if partition is None and count:
            key = record[0]
            partition = (
                partition_for_key(key, count)
                if key is not None
                else self._partitioner.partition(topic, count)
            )
        handle = SendHandle(topic, partition)
        self._buffered_bytes += size
        if self._idle.is_set():
            self._idle = trio.Event()
        if partition is None or topic in self._placements:
            # Waiting for the topic's partitions, or behind records that are: a
            # record must not overtake those sent before it.
            placed = self._placements.get(topic)
            if placed is None:
                placed = self._placements[topic] = trio.Event()
            handle._placed = placed
            self._unpartitioned.append((record, handle, size))
        else:
            self._append(topic, partition, record, handle, size)
        self._wake()
        return handle

    def _append(
        self, topic: str, partition: int, record: RecordFields, handle: SendHandle, size: int
    ) -> None:
        key = (topic, partition)
        batches = self._batches.setdefault(key, deque())
        batch = batches[-1] if batches else None
        if (
            batch is None
            or batch.data is not None
            or (batch.records and batch.size_bytes + size > self._settings.batch_bytes)
        ):
            if batch is not None and batch.data is None and record[0] is None:
                info = self._cluster.topics.get(topic)
                count = len(info.partitions) if info is not None else 1
                self._partitioner.batch_sent(topic, partition, count)
            batch = _Batch(topic, partition, trio.current_time())
            batches.append(batch)
        handle._batch = batch
        handle._index = len(batch.records)
        batch.records.append(record)
        batch.size_bytes += size

    def _wake(self) -> None:
        if not self._wakeup.is_set():
            self._wakeup.set()

    def _release(self, batch: _Batch) -> None:
        self._buffered_bytes -= batch.size_bytes
        self._space.set()
        self._space = trio.Event()
        if not self._buffered_bytes:
            self._idle.set()

    def _fail(self, batch: _Batch, error: BaseException) -> None:
        batch.error = error
        batch.event.set()
        self._release(batch)

    # --- the sender ----------------------------------------------------------------------

    async def run(self) -> None:
        """The sender task: drain ready batches to their leaders until cancelled."""
        while True:
            self._wakeup = trio.Event()
            await self._partition_pending()
            now = trio.current_time()
            ready, next_deadline = self._ready(now)
            if ready:
                await self._dispatch(ready)
                continue
            with trio.move_on_at(next_deadline):
                await self._wakeup.wait()

    async def _partition_pending(self) -> None:
        if not self._unpartitioned:
            return
        # Look the topics up first: if this is cancelled (the producer closes),
        # the records are still queued and the close gives them their outcome.
        topics: dict[str, int | TrioringError] = {}
        for name in {handle.topic for _, handle, _ in self._unpartitioned}:
            try:
                topics[name] = len((await self._cluster.topic(name)).partitions)
            except TrioringError as error:
                topics[name] = error
        pending, self._unpartitioned = self._unpartitioned, []
        placements, self._placements = self._placements, {}
        for record, handle, size in pending:
            count = topics.get(handle.topic)
            if count is None:
                # Queued for another topic while the lookups ran: next time.
                handle._placed = self._placements.setdefault(handle.topic, trio.Event())
                self._unpartitioned.append((record, handle, size))
            elif isinstance(count, TrioringError):
                handle._error = count
                self._buffered_bytes -= size
            elif handle.partition is not None and not 0 <= handle.partition < count:
                handle._error = KafkaError(
                    f"topic {handle.topic!r} has {count} partitions, not {handle.partition + 1}",
                    ErrorCode.unknown_topic_or_partition,
                )
                self._buffered_bytes -= size
            else:
                if handle.partition is None:
                    handle.partition = (
                        partition_for_key(record[0], count)
                        if record[0] is not None
                        else self._partitioner.partition(handle.topic, count)
                    )
                self._append(handle.topic, handle.partition, record, handle, size)
        for placed in placements.values():
            placed.set()
        if not self._buffered_bytes:
            self._idle.set()

    def _ready(self, now: float) -> tuple[list[_Batch], float]:
        """The first batch of each partition that may go now, and when to look again."""
        settings = self._settings
        linger_s = settings.linger_ms / 1000
        expiry_s = settings.delivery_timeout_ms / 1000
        ready = []
        next_deadline = math.inf
        for key, batches in list(self._batches.items()):
            if not batches:
                del self._batches[key]
                continue
            if key in self._in_flight:
                continue
            batch = batches[0]
            if now - batch.created >= expiry_s:
                batches.popleft()
                self._fail(
                    batch,
                    KafkaError(
                        f"{len(batch.records)} records for {key[0]}-{key[1]} could not be "
                        f"delivered within delivery_timeout_ms ({settings.delivery_timeout_ms})",
                        ErrorCode.request_timed_out,
                    ),
                )
                continue
            due = max(
                batch.retry_at,
                batch.created + linger_s
                if batch.data is None
                and len(batches) == 1
                and batch.size_bytes < settings.batch_bytes
                and not self._flushing
                and not self._closed
                else -math.inf,
            )
            if due <= now:
                ready.append(batch)
            else:
                next_deadline = min(next_deadline, due)
            next_deadline = min(next_deadline, batch.created + expiry_s)
        return ready, next_deadline

    async def _dispatch(self, ready: list[_Batch]) -> None:
        if self._settings.idempotence and self._producer_id == NO_PRODUCER_ID:
            await self._init_producer_id()
        by_node: dict[int, list[_Batch]] = {}
        refresh = False
        for batch in ready:
            leader = self._cluster.leader(batch.topic, batch.partition)
            if leader is None:
                refresh = True
                self._backoff(batch)
                continue
            by_node.setdefault(leader, []).append(batch)
        if refresh:
            try:
                await self._cluster.refresh({batch.topic for batch in ready})
            except TrioringError as error:
                logger.debug("metadata refresh failed: %s", error)
        for node, batches in by_node.items():
            request_bytes = 0
            chosen: list[_Batch] = []
            for batch in batches:
                self._encode(batch)
                assert batch.data is not None
                if chosen and request_bytes + len(batch.data) > self._settings.request_bytes_max:
                    continue  # the next request takes it
                chosen.append(batch)
                request_bytes += len(batch.data)
                self._in_flight.add((batch.topic, batch.partition))
            self._nursery.start_soon(self._produce, node, chosen)

    def _encode(self, batch: _Batch) -> None:
        if batch.data is not None:
            return
        base_sequence = -1
        if self._settings.idempotence:
            key = (batch.topic, batch.partition)
            base_sequence = self._sequences.get(key, 0)
            self._sequences[key] = (base_sequence + len(batch.records)) % _SEQUENCE_MODULUS
        info = self._cluster.topics.get(batch.topic)
        if info is not None and info.partitions:
            # Keyless records move on to another partition once a batch goes (KIP-480).
            self._partitioner.batch_sent(batch.topic, batch.partition, len(info.partitions))
        batch.data = build_batch_from_fields(
            batch.records,
            compression=self._settings.compression,
            producer_id=self._producer_id,
            producer_epoch=self._producer_epoch,
            base_sequence=base_sequence,
        )
        self._sent_records += len(batch.records)

    def _backoff(self, batch: _Batch) -> None:
        batch.attempts += 1
        self._retries += 1
        settings = self._settings
        delay_ms = min(
            settings.retry_backoff_ms * 2 ** min(batch.attempts - 1, 16),
            settings.retry_backoff_max_ms,
        )
        batch.retry_at = trio.current_time() + delay_ms / 1000

    async def _init_producer_id(self) -> None:
        while True:
            try:
                connection = await self._cluster.any_connection()
                _, response = await connection.request(
                    ApiKey.INIT_PRODUCER_ID,
                    transactional_id=None,
                    transaction_timeout=i32Timedelta.parse(datetime.timedelta(seconds=60)),
                    producer_id=-1,
                    producer_epoch=-1,
                )
            except ConnectionBrokenError as error:
                logger.debug("InitProducerId: %s", error)
                await trio.sleep(self._settings.retry_backoff_ms / 1000)
                continue
            if response.error_code in _RETRIABLE or response.error_code in (
                ErrorCode.coordinator_not_available,
                ErrorCode.not_coordinator,
            ):
                await trio.sleep(self._settings.retry_backoff_ms / 1000)
                continue
            if response.error_code != ErrorCode.none:
                self._fatal = KafkaError(
                    f"the broker refused a producer id: {ErrorCode(response.error_code).name}",
                    ErrorCode(response.error_code),
                )
                raise self._fatal
            self._producer_id = int(response.producer_id)
            self._producer_epoch = int(response.producer_epoch)
            return

    async def _produce(self, node: int, batches: list[_Batch]) -> None:
        settings = self._settings
        try:
            try:
                connection = await self._cluster.connection(node)
                version = connection.version(ApiKey.PRODUCE)
                request_class = request_schema(ApiKey.PRODUCE, version)
                topic_class = sibling(request_class, "TopicProduceData")
                partition_class = sibling(request_class, "PartitionProduceData")
                by_topic: dict[str, list[_Batch]] = {}
                for batch in batches:
                    by_topic.setdefault(batch.topic, []).append(batch)
                fields: dict[str, Any] = {
                    "transactional_id": None,
                    "acks": settings.acks,
                    "timeout": i32Timedelta.parse(
                        datetime.timedelta(milliseconds=settings.request_timeout_ms)
                    ),
                    "topic_data": tuple(
                        build(
                            topic_class,
                            name=topic,
                            partition_data=tuple(
                                build(partition_class, index=b.partition, records=b.data)
                                for b in topic_batches
                            ),
                        )
                        for topic, topic_batches in by_topic.items()
                    ),
                }
                if settings.acks == 0:
                    await connection.send_only(ApiKey.PRODUCE, **fields)
                    for batch in batches:
                        self._done(batch, -1)
                    return
                _, response = await connection.request(ApiKey.PRODUCE, **fields)
            except (ConnectionBrokenError, UnsupportedApiError) as error:
                logger.debug("produce to node %d: %s", node, error)
                for batch in batches:
                    self._retry(batch, ErrorCode.network_exception, str(error))
                return
            answers = {
                (topic.name, int(p.index)): p
                for topic in response.responses
                for p in topic.partition_responses
            }
            for batch in batches:
                answer = answers.get((batch.topic, batch.partition))
                if answer is None:
                    self._retry(batch, ErrorCode.network_exception, "no answer for the partition")
                elif answer.error_code == ErrorCode.none:
                    self._done(batch, int(answer.base_offset))
                else:
                    self._retry(batch, ErrorCode(answer.error_code), answer.error_message)
        finally:
            for batch in batches:
                self._in_flight.discard((batch.topic, batch.partition))
            self._wake()

    def _done(self, batch: _Batch, base_offset: int) -> None:
        batches = self._batches.get((batch.topic, batch.partition))
        assert batches and batches[0] is batch
        batches.popleft()
        batch.base_offset = base_offset
        batch.event.set()
        self._acknowledged_records += len(batch.records)
        self._release(batch)

    def _retry(self, batch: _Batch, code: ErrorCode, message: str | None) -> None:
        if code in _RETRIABLE:
            if code in _STALE_METADATA:
                self._cluster.topics.pop(batch.topic, None)  # looked up again before the retry
            self._backoff(batch)
            return
        batches = self._batches.get((batch.topic, batch.partition))
        assert batches and batches[0] is batch
        batches.popleft()
        self._fail(
            batch,
            KafkaError(
                f"{batch.topic}-{batch.partition}: {code.name}"
                + (f": {message}" if message else ""),
                code,
            ),
        )

    # set by open_producer
    _nursery: trio.Nursery


def _acks(acks: Acks) -> int:
    if acks == "all":
        return -1
    if acks not in (0, 1, -1):
        raise InvalidArgumentError(f"acks must be 0, 1, -1 or 'all', not {acks!r}")
    return int(acks)


@asynccontextmanager
async def open_producer(
    bootstrap_or_broker: str | Sequence[str] | Broker,
    *,
    acks: Acks = "all",
    linger_ms: int = PRODUCER_LINGER_MS_DEFAULT,
    batch_bytes: int = PRODUCER_BATCH_BYTES_DEFAULT,
    buffer_bytes_max: int = PRODUCER_BUFFER_BYTES_DEFAULT,
    request_bytes_max: int = PRODUCER_REQUEST_BYTES_MAX_DEFAULT,
    compression: Compression | str | None = None,
    idempotence: bool = True,
    delivery_timeout_ms: int = PRODUCER_DELIVERY_TIMEOUT_MS_DEFAULT,
    request_timeout_ms: int = CLIENT_REQUEST_TIMEOUT_MS_DEFAULT,
    retry_backoff_ms: int = CLIENT_RETRY_BACKOFF_MS_DEFAULT,
    retry_backoff_max_ms: int = CLIENT_RETRY_BACKOFF_MAX_MS_DEFAULT,
    client_id: str = "trioring-producer",
) -> AsyncIterator[Producer]:
    """A producer for the block; on a clean exit every queued record is flushed first.

    ``bootstrap_or_broker``: ``"host:port,..."`` (or a list of them), or an
    embedded Broker, reached in-process.

    Settings are Kafka's producer settings under Python names (``linger_ms``
    is linger.ms, ``batch_bytes`` batch.size, ``buffer_bytes_max``
    buffer.memory, ``request_bytes_max`` max.request.size). Idempotence needs
    acks="all", as in Kafka.
    """
    acks_value = _acks(acks)
    if idempotence and acks_value != -1:
        raise InvalidArgumentError(
            "an idempotent producer needs acks='all' (as in Kafka): pass idempotence=False "
            "for acks=0 or 1"
        )
    for name, value in (
        ("linger_ms", linger_ms),
        ("delivery_timeout_ms", delivery_timeout_ms),
        ("request_timeout_ms", request_timeout_ms),
    ):
        if value < 0:
            raise InvalidArgumentError(f"{name} must be >= 0, not {value}")
    for name, value in (
        ("batch_bytes", batch_bytes),
        ("buffer_bytes_max", buffer_bytes_max),
        ("request_bytes_max", request_bytes_max),
    ):
        if value <= 0:
            raise InvalidArgumentError(f"{name} must be > 0, not {value}")
    settings = _Settings(
        acks=acks_value,
        linger_ms=linger_ms,
        batch_bytes=batch_bytes,
        buffer_bytes_max=buffer_bytes_max,
        request_bytes_max=request_bytes_max,
        compression=Compression.parse(compression),
        idempotence=idempotence,
        delivery_timeout_ms=delivery_timeout_ms,
        request_timeout_ms=request_timeout_ms,
        retry_backoff_ms=retry_backoff_ms,
        retry_backoff_max_ms=retry_backoff_max_ms,
    )
    body = BodyError()
    async with (
        body_exception_unwrapped(body),
        Cluster.open(
            bootstrap_or_broker, client_id=client_id, request_timeout_ms=request_timeout_ms
        ) as cluster,
        trio.open_nursery() as nursery,
    ):
        producer = Producer(cluster, settings)
        producer._nursery = nursery
        nursery.start_soon(producer.run, name="producer sender")
        try:
            yield producer
            await producer.flush()
        except BaseException as error:
            body.error = error
            raise
        finally:
            producer._closed = True
            nursery.cancel_scope.cancel()
            closed = trio.ClosedResourceError("the producer closed before delivery")
            for batches in producer._batches.values():
                for batch in batches:
                    if not batch.event.is_set():
                        batch.error = closed
                        batch.event.set()
            for _, handle, _ in producer._unpartitioned:
                handle._error = closed
                if handle._placed is not None:
                    handle._placed.set()

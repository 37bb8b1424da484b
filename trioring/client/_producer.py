"""The Trio producer: batching, idempotence, retries and back-pressure.

``send_nowait`` puts a record in its partition's open batch and returns a
:class:`SendHandle`; ``send`` does the same, waiting for the topic's metadata
and for room in the buffer, then for the broker's acknowledgement. One sender
task drains batches that are full, or older than ``linger_ms`` (or all of them
on ``flush``), groups them by leader and sends one Produce request per broker,
one batch per partition in flight at a time, so a partition's batches arrive
in order. A metadata task looks topics up (retrying until the records' time
runs out) and refreshes known topics older than ``metadata_max_age_ms``, so
that neither ever holds up the sender.

Idempotence (on by default, as in Kafka 3+): the producer asks for a producer
id, and numbers each partition's records. A batch is encoded with its
sequence when first drained, and resent as it is when a retriable error (a
leader moved, a broken connection, a timeout) makes it try again: the broker
answers a duplicate with the offsets it gave the first time, so nothing is
written twice. Batches that cannot be delivered within
``delivery_timeout_ms`` fail. A batch that fails for good after it was
numbered leaves a gap the broker would refuse every later batch of the
partition for (OUT_OF_ORDER_SEQUENCE_NUMBER): as the Java client does for an
idempotent producer (KIP-360), the producer then gets a new producer id and
numbers the partition's batches from 0 again.
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
    CLIENT_METADATA_MAX_AGE_MS_DEFAULT,
    CLIENT_REQUEST_TIMEOUT_MS_DEFAULT,
    CLIENT_RETRY_BACKOFF_MAX_MS_DEFAULT,
    CLIENT_RETRY_BACKOFF_MS_DEFAULT,
    PRODUCER_BATCH_BYTES_DEFAULT,
    PRODUCER_BUFFER_BYTES_DEFAULT,
    PRODUCER_DELIVERY_TIMEOUT_MS_DEFAULT,
    PRODUCER_LINGER_MS_DEFAULT,
    PRODUCER_MAX_BLOCK_MS_DEFAULT,
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
#: The broker refused the batch's producer id, epoch or sequence: it did not
#: write it. An idempotent producer sends it again under a new producer id,
#: numbered from 0 (KIP-360); anything else would fail every later batch of
#: the partition the same way.
_SEQUENCE_REFUSED = frozenset(
    {
        ErrorCode.out_of_order_sequence_number,
        ErrorCode.unknown_producer_id,
        ErrorCode.invalid_producer_epoch,
    }
)
#: InitProducerId answers after which asking again may help.
_PRODUCER_ID_RETRIABLE = _RETRIABLE | {
    ErrorCode.coordinator_not_available,
    ErrorCode.not_coordinator,
}
#: A topic's answer in Metadata after which asking again may help (the
#: topic is being created, or its leader elected). UNKNOWN_TOPIC_OR_PARTITION
#: too while the producer lets the broker create topics.
_METADATA_RETRIABLE = frozenset(
    {
        ErrorCode.leader_not_available,
        ErrorCode.not_leader_or_follower,
        ErrorCode.request_timed_out,
        ErrorCode.network_exception,
        ErrorCode.kafka_storage_error,
        ErrorCode.coordinator_load_in_progress,
    }
)
_SEQUENCE_MODULUS = 1 << 31
#: A record's timestamp: milliseconds since the epoch, a signed 64-bit field
#: the Java producer also refuses to be negative.
_TIMESTAMP_MS_LIMIT = 1 << 63


def _name(code: int) -> str:
    """An error code as Kafka spells it (UPPER_CASE), for messages."""
    return ErrorCode(code).name.upper()


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

    __slots__ = ("_batch", "_error", "_index", "_pending", "partition", "topic")

    def __init__(self, topic: str, partition: int | None) -> None:
        self.topic = topic
        self.partition = partition
        self._batch: _Batch | None = None
        self._index = 0
        self._error: BaseException | None = None
        #: Only for a record queued before its topic's partitions were known.
        self._pending: _Pending | None = None

    def done(self) -> bool:
        if self._error is not None:
            return True
        return self._batch is not None and self._batch.event.is_set()

    async def wait(self) -> RecordMetadata:
        """The record's metadata once acknowledged; its error if it could not be delivered."""
        await self._settled()
        return self.result()

    async def _settled(self) -> None:
        # A record waiting for its topic's partitions wakes whenever some of
        # its topic's records get an outcome, not necessarily its own: loop
        # until it has a batch (or an error), then wait for the batch.
        while self._error is None and self._batch is None:
            assert self._pending is not None
            await self._pending.placed.wait()
        if self._batch is not None and self._error is None:
            await self._batch.event.wait()

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
    #: Drained once: no record joins it any more.
    sealed: bool = False
    #: Encoded when drained (its sequence is fixed then), resent as it is; encoded
    #: again only if the broker refused its sequence (under a new producer id).
    data: bytes | None = None
    #: The producer id and epoch ``data`` is numbered under.
    producer_id: int = NO_PRODUCER_ID
    producer_epoch: int = -1
    attempts: int = 0
    retry_at: float = -math.inf
    #: Why the last attempt did not succeed (for the expiry's message).
    last_error: str | None = None


@attrs.define(eq=False)
class _Lookup:
    """A topic's metadata, asked for by the metadata task until it comes or cannot."""

    #: Set when the topic's partitions are known, or ``error`` says why they will not be.
    done: trio.Event = attrs.Factory(trio.Event)
    error: BaseException | None = None
    #: Why the last answer was not enough (for a timeout's message).
    last_error: TrioringError | None = None
    #: send() calls waiting for it (a lookup nobody needs any more is dropped).
    waiters: int = 0


@attrs.define(eq=False)
class _Pending:
    """Records of one topic queued before its partitions were known, oldest first."""

    lookup: _Lookup
    #: Set (and replaced) whenever some of the records get an outcome.
    placed: trio.Event = attrs.Factory(trio.Event)
    #: (record, handle, size, when it was queued)
    records: deque[tuple[RecordFields, SendHandle, int, float]] = attrs.Factory(deque)


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
    max_block_ms: int
    request_timeout_ms: int
    retry_backoff_ms: int
    retry_backoff_max_ms: int


def _bytes_or_none(what: str, data: object) -> bytes | None:
    if data is None or type(data) is bytes:
        return data
    if isinstance(data, bytes | bytearray | memoryview):
        # A copy: the caller may reuse its buffer before the batch is encoded.
        return bytes(data)
    hint = f" (encode it: {what}.encode())" if isinstance(data, str) else ""
    raise InvalidArgumentError(f"{what} must be bytes or None, not {type(data).__name__}{hint}")


def _headers(headers: object) -> tuple[Header, ...]:
    try:
        pairs = list(headers)  # type: ignore[call-overload]
    except TypeError:
        raise InvalidArgumentError(
            f"headers must be (name, value) pairs, not {type(headers).__name__}"
        ) from None
    checked = []
    for pair in pairs:
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise InvalidArgumentError(
                f"headers must be (name, value) pairs: (str, bytes or None), not {pair!r}"
            )
        name, value = pair
        if not isinstance(name, str):
            raise InvalidArgumentError(
                f"a header name must be a str, not {type(name).__name__} ({name!r})"
            )
        try:
            name.encode()
        except UnicodeEncodeError:
            raise InvalidArgumentError(
                f"header name {name!r} is not valid Unicode (it holds a lone surrogate)"
            ) from None
        checked.append((name, _bytes_or_none(f"the value of header {name!r}", value)))
    return tuple(checked)


def _fields(key: object, value: object, headers: object, timestamp_ms: object) -> RecordFields:
    """The record as the sender encodes it, checked now, in the caller's task: a wrong
    type found by the sender would fail every record queued with it."""
    if timestamp_ms is None:
        # As Kafka's producer: a record without a timestamp gets the time it is sent.
        timestamp_ms = time.time_ns() // 1_000_000
    elif not isinstance(timestamp_ms, int) or isinstance(timestamp_ms, bool):
        raise InvalidArgumentError(
            f"timestamp_ms must be an int (milliseconds since the epoch) or None, "
            f"not {type(timestamp_ms).__name__}"
        )
    if not 0 <= timestamp_ms < _TIMESTAMP_MS_LIMIT:
        raise InvalidArgumentError(
            f"timestamp_ms must be milliseconds since the epoch, 0 to {_TIMESTAMP_MS_LIMIT - 1}, "
            f"not {timestamp_ms}"
        )
    return (
        _bytes_or_none("key", key),
        _bytes_or_none("value", value),
        _headers(headers) if headers else (),
        int(timestamp_ms),
    )


class Producer:
    """A Kafka producer on Trio. Open it with :func:`open_producer`."""

    def __init__(self, cluster: Cluster, settings: _Settings) -> None:
        self._cluster = cluster
        self._settings = settings
        self._partitioner = StickyPartitioner()
        #: (topic, partition) -> its batches, oldest first; the first may be in flight.
        self._batches: dict[tuple[str, int], deque[_Batch]] = {}
        #: Records whose topic's partitions are not known yet, and those queued
        #: behind them (a record must not overtake those sent before it).
        self._pending: dict[str, _Pending] = {}
        #: Topics the metadata task is asked to look up.
        self._lookups: dict[str, _Lookup] = {}
        self._in_flight: set[tuple[str, int]] = set()
        self._buffered_bytes = 0
        self._space = trio.Event()
        self._wakeup = trio.Event()
        self._metadata_wakeup = trio.Event()
        self._flushing = 0
        self._producer_id = NO_PRODUCER_ID
        self._producer_epoch = -1
        #: InitProducerId runs in a task of its own; the sender goes on meanwhile.
        self._producer_id_running = False
        self._producer_id_failures = 0
        self._producer_id_retry_at = -math.inf
        self._producer_id_error: TrioringError | None = None
        #: Per partition: the producer id and epoch its sequence counts under, and
        #: the next sequence. Under another id than the current one, it starts at 0.
        self._sequences: dict[tuple[str, int], tuple[int, int, int]] = {}
        #: Partitions whose sequence under the current producer id has a gap: their
        #: next batch waits for a new producer id.
        self._sequence_gaps: set[tuple[str, int]] = set()
        self._closed = False
        self._fatal: BaseException | None = None
        self._sent_records = 0
        self._buffer_bytes_max = settings.buffer_bytes_max
        self._request_bytes_max = settings.request_bytes_max
        self._acknowledged_records = 0
        self._retries = 0
        self._producer_id_resets = 0

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

        Waits for the topic's metadata, then while the buffer is full
        (``buffer_bytes_max``): a fast caller is slowed to the rate the brokers
        take, the buffer never grows past it. Waiting for both together
        takes at most ``max_block_ms``; then it raises KafkaError
        (REQUEST_TIMED_OUT).
        """
        record = _fields(key, value, headers, timestamp_ms)
        size = self._check(topic, record, partition)
        deadline = trio.current_time() + self._settings.max_block_ms / 1000
        if partition is None:
            await self._wait_for_topic(topic, deadline)
        await self._wait_for_room(size, deadline)
        # Checked again after the waits, and nothing awaited since: the room
        # seen is the room taken.
        self._check(topic, record, partition)
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
        # The hot path of a fast producer: kept to plain operations. Anything
        # out of the ordinary goes through the full checks.
        if timestamp_ms is None:
            timestamp_ms = time.time_ns() // 1_000_000
        if (
            headers
            or type(timestamp_ms) is not int
            or not 0 <= timestamp_ms < _TIMESTAMP_MS_LIMIT
            or (key is not None and type(key) is not bytes)
            or (value is not None and type(value) is not bytes)
        ):
            record = _fields(key, value, headers, timestamp_ms)
            size = self._check(topic, record, partition)
        else:
            record = (key, value, (), timestamp_ms)
            size = estimate_fields_bytes(key, value, ())
            if (
                size > self._request_bytes_max
                or self._closed
                or self._fatal is not None
                or type(topic) is not str
                or not topic
                or partition is not None
            ):
                self._check(topic, record, partition)
        if self._buffered_bytes + size > self._buffer_bytes_max and self._buffered_bytes:
            raise trio.WouldBlock(
                f"the producer's buffer holds {self._buffered_bytes} bytes "
                f"(buffer_bytes_max {self._settings.buffer_bytes_max}): await send() instead"
            )
        return self._enqueue(topic, record, partition, size)

    async def flush(self) -> None:
        """Wait until every record queued before the call is acknowledged or has failed.

        Records queued meanwhile (by other tasks) are not waited for, so a
        steady sender cannot keep a flush waiting.
        """
        # The partitions' batches complete in order: each one's last batch now
        # stands for all of its records queued so far.
        batches = [queue[-1] for queue in self._batches.values() if queue]
        # Records still waiting for their topic get an outcome in order too, and
        # the topic's partitions all at once when they are placed.
        pending = [
            (topic, entry.records[-1][1]) for topic, entry in self._pending.items() if entry.records
        ]
        self._flushing += 1
        try:
            self._wake()
            for batch in batches:
                if not batch.event.is_set():
                    await batch.event.wait()
            for topic, handle in pending:
                await handle._settled()
                placed = [
                    queue[-1]
                    for (name, _), queue in self._batches.items()
                    if name == topic and queue
                ]
                for batch in placed:
                    if not batch.event.is_set():
                        await batch.event.wait()
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
            "producer_id_resets": self._producer_id_resets,
        }

    # --- queueing ------------------------------------------------------------------------

    def _check(self, topic: object, record: RecordFields, partition: object) -> int:
        if self._closed:
            raise trio.ClosedResourceError("the producer is closed")
        if self._fatal is not None:
            raise self._fatal
        if not isinstance(topic, str) or not topic:
            raise InvalidArgumentError(f"a record needs a topic, a non-empty str, not {topic!r}")
        if partition is not None and (
            not isinstance(partition, int) or isinstance(partition, bool) or partition < 0
        ):
            raise InvalidArgumentError(
                f"partition must be an int >= 0, or None to let the partitioner choose, "
                f"not {partition!r}"
            )
        size = estimate_fields_bytes(record[0], record[1], record[2])
        if size > self._settings.request_bytes_max:
            raise KafkaError(
                f"a record of {size} bytes exceeds request_bytes_max "
                f"({self._settings.request_bytes_max})",
                ErrorCode.message_too_large,
            )
        return size

    async def _wait_for_topic(self, topic: str, deadline: float) -> None:
        while True:
            info = self._cluster.topics.get(topic)
            if info is not None and info.partitions and not info.error_code:
                return
            lookup = self._want_topic(topic)
            lookup.waiters += 1
            try:
                with trio.move_on_at(deadline):
                    await lookup.done.wait()
            finally:
                lookup.waiters -= 1
            if not lookup.done.is_set():
                raise KafkaError(
                    f"topic {topic!r} is not in the metadata after max_block_ms "
                    f"({self._settings.max_block_ms}): "
                    f"{lookup.last_error or 'no broker answered yet'}; check that a broker is "
                    "reachable and that the topic exists (or that the brokers create topics)",
                    ErrorCode.request_timed_out,
                )
            if lookup.error is not None:
                raise lookup.error

    async def _wait_for_room(self, size: int, deadline: float) -> None:
        while self._buffered_bytes + size > self._buffer_bytes_max and self._buffered_bytes:
            if self._closed:
                raise trio.ClosedResourceError("the producer is closed")
            with trio.move_on_at(deadline):
                await self._space.wait()
                continue
            raise KafkaError(
                f"no room for a record of {size} bytes in the producer's buffer "
                f"({self._buffered_bytes} of buffer_bytes_max {self._buffer_bytes_max} bytes "
                f"held) within max_block_ms ({self._settings.max_block_ms}): the brokers take "
                "records slower than they come, or cannot be reached",
                ErrorCode.request_timed_out,
            )

    def _enqueue(
        self, topic: str, record: RecordFields, partition: int | None, size: int
    ) -> SendHandle:
        info = self._cluster.topics.get(topic)
        count = len(info.partitions) if info is not None and not info.error_code else 0
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
        pending = self._pending.get(topic)
        if partition is None or pending is not None:
            # Waiting for the topic's partitions, or behind records that are: a
            # record must not overtake those sent before it.
            if pending is None:
                pending = self._pending[topic] = _Pending(self._want_topic(topic))
            handle._pending = pending
            pending.records.append((record, handle, size, trio.current_time()))
        else:
            self._append(topic, partition, record, handle, size)
        self._wake()
        return handle

    def _append(
        self,
        topic: str,
        partition: int,
        record: RecordFields,
        handle: SendHandle,
        size: int,
        *,
        queued: float | None = None,
    ) -> None:
        key = (topic, partition)
        batches = self._batches.setdefault(key, deque())
        batch = batches[-1] if batches else None
        if (
            batch is None
            or batch.sealed
            or (batch.records and batch.size_bytes + size > self._settings.batch_bytes)
        ):
            if batch is not None and not batch.sealed and record[0] is None:
                info = self._cluster.topics.get(topic)
                count = len(info.partitions) if info is not None else 1
                self._partitioner.batch_sent(topic, partition, count)
            # A record that waited for its topic's metadata has spent part of
            # its delivery_timeout_ms already (and need not linger any more).
            batch = _Batch(topic, partition, trio.current_time() if queued is None else queued)
            batches.append(batch)
        handle._batch = batch
        handle._index = len(batch.records)
        batch.records.append(record)
        batch.size_bytes += size

    def _wake(self) -> None:
        if not self._wakeup.is_set():
            self._wakeup.set()

    def _free(self, size: int) -> None:
        self._buffered_bytes -= size
        self._space.set()
        self._space = trio.Event()

    def _fail(self, batch: _Batch, error: BaseException) -> None:
        batch.error = error
        batch.event.set()
        self._free(batch.size_bytes)
        if (
            batch.data is not None
            and batch.producer_id == self._producer_id
            and batch.producer_epoch == self._producer_epoch
            and self._producer_id != NO_PRODUCER_ID
        ):
            # Its sequence numbers are spent, and the broker may or may not have
            # them (a batch that timed out may have been written): the
            # partition's next batch would leave a gap, refused as
            # OUT_OF_ORDER_SEQUENCE_NUMBER, or would be taken for a duplicate.
            # It waits for a new producer id and starts again from 0.
            self._sequence_gaps.add((batch.topic, batch.partition))

    def _close(self) -> None:
        """Every record without an outcome fails; every waiting send() wakes."""
        self._closed = True
        closed = trio.ClosedResourceError("the producer closed before delivery")
        for batches in self._batches.values():
            for batch in batches:
                if not batch.event.is_set():
                    batch.error = closed
                    batch.event.set()
        for pending in self._pending.values():
            for _, handle, _, _ in pending.records:
                handle._error = closed
            pending.placed.set()
        for lookup in self._lookups.values():
            lookup.error = closed
            lookup.done.set()
        self._batches.clear()
        self._pending.clear()
        self._lookups.clear()
        self._free(self._buffered_bytes)

    # --- the sender ----------------------------------------------------------------------

    async def run(self) -> None:
        """The sender task: drain ready batches to their leaders until cancelled."""
        while True:
            self._wakeup = trio.Event()
            now = trio.current_time()
            next_deadline = self._place_pending(now)
            ready, ready_deadline = self._ready(now)
            next_deadline = min(next_deadline, ready_deadline)
            if ready and self._dispatch(ready):
                await trio.lowlevel.checkpoint()
                continue
            with trio.move_on_at(next_deadline):
                await self._wakeup.wait()

    def _place_pending(self, now: float) -> float:
        """Place records whose topic's partitions are known now, fail those that cannot be
        delivered; returns when to look again."""
        expiry_s = self._settings.delivery_timeout_ms / 1000
        next_deadline = math.inf
        for topic, pending in list(self._pending.items()):
            info = self._cluster.topics.get(topic)
            if info is not None and info.partitions and not info.error_code:
                self._place(topic, pending, len(info.partitions))
                continue
            lookup = pending.lookup
            if lookup.error is not None:
                self._fail_pending(topic, pending, len(pending.records), lookup.error)
                continue
            if lookup.done.is_set():
                # Known when the lookup ended, gone since (deleted, or dropped by
                # a refresh): ask again.
                lookup = pending.lookup = self._want_topic(topic)
            records = pending.records
            expired = 0
            for entry in records:
                if now - entry[3] < expiry_s:
                    break
                expired += 1
            if expired:
                self._fail_pending(
                    topic,
                    pending,
                    expired,
                    KafkaError(
                        f"records for topic {topic!r} could not be delivered within "
                        f"delivery_timeout_ms ({self._settings.delivery_timeout_ms}): its "
                        f"metadata did not come ({lookup.last_error or 'no broker answered'})",
                        ErrorCode.request_timed_out,
                    ),
                )
            if records:
                next_deadline = min(next_deadline, records[0][3] + expiry_s)
        return next_deadline

    def _place(self, topic: str, pending: _Pending, count: int) -> None:
        for record, handle, size, queued in pending.records:
            if handle.partition is not None and not 0 <= handle.partition < count:
                handle._error = KafkaError(
                    f"topic {topic!r} has {count} partitions, not {handle.partition + 1}",
                    ErrorCode.unknown_topic_or_partition,
                )
                self._free(size)
                continue
            if handle.partition is None:
                handle.partition = (
                    partition_for_key(record[0], count)
                    if record[0] is not None
                    else self._partitioner.partition(topic, count)
                )
            self._append(topic, handle.partition, record, handle, size, queued=queued)
        del self._pending[topic]
        pending.placed.set()

    def _fail_pending(
        self, topic: str, pending: _Pending, count: int, error: BaseException
    ) -> None:
        """Fail the ``count`` oldest of a topic's pending records."""
        for _ in range(count):
            _, handle, size, _ = pending.records.popleft()
            handle._error = error
            self._free(size)
        if not pending.records:
            del self._pending[topic]
        pending.placed.set()
        # The others wait on a fresh event.
        pending.placed = trio.Event()

    def _needs_producer_id(self, batch: _Batch) -> bool:
        return (
            self._settings.idempotence
            and batch.data is None
            and (
                self._producer_id == NO_PRODUCER_ID
                or (batch.topic, batch.partition) in self._sequence_gaps
            )
        )

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
            # A failed batch makes way for the next one of its partition at once.
            while batches and now - batches[0].created >= expiry_s:
                batch = batches.popleft()
                self._fail(batch, self._expired(batch))
            while batches and self._fatal is not None and self._needs_producer_id(batches[0]):
                self._fail(batches.popleft(), self._fatal)
            if not batches:
                continue
            batch = batches[0]
            next_deadline = min(next_deadline, batch.created + expiry_s)
            if batch.topic in self._lookups:
                continue  # its leader is being looked up: the metadata task wakes us
            if self._needs_producer_id(batch):
                next_deadline = min(next_deadline, self._want_producer_id(now))
                continue
            due = max(
                batch.retry_at,
                batch.created + linger_s
                if not batch.sealed
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
        return ready, next_deadline

    def _expired(self, batch: _Batch) -> KafkaError:
        lookup = self._lookups.get(batch.topic)
        if self._needs_producer_id(batch):
            reason = f"no producer id ({self._producer_id_error or 'InitProducerId unanswered'})"
        elif lookup is not None:
            reason = f"no leader known ({lookup.last_error or 'metadata unanswered'})"
        else:
            reason = batch.last_error or "not sent yet"
        return KafkaError(
            f"{len(batch.records)} records for {batch.topic}-{batch.partition} could not be "
            f"delivered within delivery_timeout_ms ({self._settings.delivery_timeout_ms}): "
            f"{reason}",
            ErrorCode.request_timed_out,
        )

    def _dispatch(self, ready: list[_Batch]) -> bool:
        """Send the ready batches, one request per leader; True if some must wait for
        the next request (too many bytes for one)."""
        by_node: dict[int, list[_Batch]] = {}
        for batch in ready:
            leader = self._cluster.leader(batch.topic, batch.partition)
            if leader is None:
                batch.last_error = "no leader known"
                self._want_topic(batch.topic)
                self._backoff(batch)
                continue
            by_node.setdefault(leader, []).append(batch)
        deferred = False
        for node, batches in by_node.items():
            request_bytes = 0
            chosen: list[_Batch] = []
            for batch in batches:
                self._encode(batch)
                assert batch.data is not None
                if chosen and request_bytes + len(batch.data) > self._settings.request_bytes_max:
                    deferred = True  # the next request takes it
                    continue
                chosen.append(batch)
                request_bytes += len(batch.data)
                self._in_flight.add((batch.topic, batch.partition))
            self._nursery.start_soon(self._produce, node, chosen)
        return deferred

    def _encode(self, batch: _Batch) -> None:
        if batch.data is not None:
            return
        if not batch.sealed:
            batch.sealed = True
            self._sent_records += len(batch.records)
            info = self._cluster.topics.get(batch.topic)
            if info is not None and info.partitions:
                # Keyless records move on to another partition once a batch goes (KIP-480).
                self._partitioner.batch_sent(batch.topic, batch.partition, len(info.partitions))
        base_sequence = -1
        if self._settings.idempotence:
            assert self._producer_id != NO_PRODUCER_ID, "held back until there is one"
            key = (batch.topic, batch.partition)
            producer_id, epoch = self._producer_id, self._producer_epoch
            # Only a partition's first batch is ever numbered and unanswered, so
            # this is the partition's next sequence (0 under a new producer id).
            counted = self._sequences.get(key)
            base_sequence = (
                counted[2]
                if counted is not None and counted[0] == producer_id and counted[1] == epoch
                else 0
            )
            self._sequences[key] = (
                producer_id,
                epoch,
                (base_sequence + len(batch.records)) % _SEQUENCE_MODULUS,
            )
            batch.producer_id, batch.producer_epoch = producer_id, epoch
        batch.data = build_batch_from_fields(
            batch.records,
            compression=self._settings.compression,
            producer_id=self._producer_id,
            producer_epoch=self._producer_epoch,
            base_sequence=base_sequence,
        )

    def _backoff_s(self, attempts: int) -> float:
        settings = self._settings
        delay_ms: int = min(
            settings.retry_backoff_ms * 2 ** min(attempts - 1, 16),
            settings.retry_backoff_max_ms,
        )
        return delay_ms / 1000

    def _backoff(self, batch: _Batch) -> None:
        batch.attempts += 1
        self._retries += 1
        batch.retry_at = trio.current_time() + self._backoff_s(batch.attempts)

    # --- the producer id -----------------------------------------------------------------

    def _want_producer_id(self, now: float) -> float:
        """Ask for a producer id unless that is under way; returns when to ask again."""
        if self._producer_id_running:
            return math.inf  # the task wakes the sender when it ends
        if now < self._producer_id_retry_at:
            return self._producer_id_retry_at
        self._producer_id_running = True
        self._nursery.start_soon(self._init_producer_id, name="producer id")
        return math.inf

    async def _init_producer_id(self) -> None:
        """One InitProducerId: a new producer id, or why not (the sender retries it, and
        fails the batches waiting for it once their delivery_timeout_ms is up)."""
        try:
            try:
                connection = await self._cluster.any_connection()
                _, response = await connection.request(
                    ApiKey.INIT_PRODUCER_ID,
                    transactional_id=None,
                    transaction_timeout=i32Timedelta.parse(datetime.timedelta(seconds=60)),
                    producer_id=-1,
                    producer_epoch=-1,
                )
            except TrioringError as error:
                logger.debug("InitProducerId: %s", error)
                self._producer_id_failed(error)
                return
            code = ErrorCode(response.error_code)
            if code in _PRODUCER_ID_RETRIABLE:
                self._producer_id_failed(KafkaError(f"InitProducerId: {_name(code)}", code))
                return
            if code != ErrorCode.none:
                self._fatal = KafkaError(
                    f"the broker refused a producer id ({_name(code)}): an idempotent producer "
                    "cannot send without one; pass idempotence=False if the brokers give none",
                    code,
                )
                return
            if self._producer_id != NO_PRODUCER_ID:
                self._producer_id_resets += 1
                logger.info(
                    "producer id %d replaced by %d: partitions %s start again from sequence 0",
                    self._producer_id,
                    int(response.producer_id),
                    sorted(self._sequence_gaps),
                )
            self._producer_id = int(response.producer_id)
            self._producer_epoch = int(response.producer_epoch)
            # Every partition's next numbered batch starts at 0 under the new id
            # (``_encode``), those with a gap too.
            self._sequence_gaps.clear()
            self._producer_id_failures = 0
            self._producer_id_error = None
        finally:
            self._producer_id_running = False
            self._wake()

    def _producer_id_failed(self, error: TrioringError) -> None:
        self._producer_id_error = error
        self._producer_id_failures += 1
        self._producer_id_retry_at = trio.current_time() + self._backoff_s(
            self._producer_id_failures
        )

    # --- metadata ------------------------------------------------------------------------

    def _want_topic(self, topic: str) -> _Lookup:
        lookup = self._lookups.get(topic)
        if lookup is None:
            lookup = self._lookups[topic] = _Lookup()
            if not self._metadata_wakeup.is_set():
                self._metadata_wakeup.set()
        return lookup

    async def _metadata_loop(self) -> None:
        """The metadata task: look topics up until they come (or cannot), and refresh
        known topics older than metadata_max_age_ms, without holding up the sender."""
        failures = 0
        retry_at = -math.inf
        last_round = -math.inf
        backoff_s = self._settings.retry_backoff_ms / 1000
        while True:
            self._metadata_wakeup = trio.Event()
            self._drop_unneeded_lookups()
            now = trio.current_time()
            # Known topics are refreshed no more often than retry_backoff_ms, however
            # small metadata_max_age_ms is.
            stale_at = max(self._cluster.next_stale_at(), last_round + backoff_s)
            wake_at = max(retry_at, now if self._lookups else stale_at)
            if wake_at > now:
                with trio.move_on_at(wake_at):
                    await self._metadata_wakeup.wait()
                continue
            lookups = sorted(self._lookups)
            stale = (
                sorted(set(self._cluster.stale_topics()) - set(lookups)) if stale_at <= now else []
            )
            failure: TrioringError | None = None
            unresolved = False
            if lookups:
                try:
                    await self._cluster.refresh(lookups)
                except TrioringError as error:
                    logger.debug("metadata of %s: %s", lookups, error)
                    failure = error
                # Told at once: the stale topics' refresh may take long, or fail.
                unresolved = self._resolve_lookups(lookups, failure)
                self._wake()
            if stale and failure is None:
                try:
                    # Only refreshed, not about to be used: a topic deleted since
                    # must not be created again.
                    await self._cluster.refresh(stale, auto_create=False)
                except TrioringError as error:
                    logger.debug("metadata of %s: %s", stale, error)
                    failure = error
                self._wake()
            last_round = trio.current_time()
            if failure is not None or unresolved:
                failures += 1
                retry_at = last_round + self._backoff_s(failures)
            else:
                failures = 0
                retry_at = -math.inf

    def _resolve_lookups(self, topics: list[str], failure: TrioringError | None) -> bool:
        """Tell those waiting for ``topics`` what the metadata said; True if some are
        still to be asked for again."""
        unresolved = False
        retriable = _METADATA_RETRIABLE
        if self._cluster.allow_auto_create_topics:
            retriable |= {ErrorCode.unknown_topic_or_partition}
        for topic in topics:
            lookup = self._lookups.get(topic)
            if lookup is None:
                continue
            if failure is not None:
                lookup.last_error = failure
                unresolved = True
                continue
            info = self._cluster.topics.get(topic)
            code = (
                ErrorCode.unknown_topic_or_partition
                if info is None
                else ErrorCode(info.error_code)
                if info.error_code or info.partitions
                else ErrorCode.leader_not_available
            )
            if code == ErrorCode.none:
                pass
            elif code in retriable:
                lookup.last_error = KafkaError(f"topic {topic!r}: {_name(code)}", code)
                unresolved = True
                continue
            else:
                lookup.error = KafkaError(
                    f"the metadata of topic {topic!r} says {_name(code)}: records for it cannot "
                    "be sent",
                    code,
                )
            del self._lookups[topic]
            lookup.done.set()
        return unresolved

    def _drop_unneeded_lookups(self) -> None:
        if not self._lookups:
            return
        needed = set(self._pending)
        needed.update(topic for (topic, _), batches in self._batches.items() if batches)
        for topic, lookup in list(self._lookups.items()):
            if not lookup.waiters and topic not in needed:
                del self._lookups[topic]

    # --- produce requests ----------------------------------------------------------------

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
                    if not self._closed:
                        for batch in batches:
                            self._done(batch, -1)
                    return
                _, response = await connection.request(ApiKey.PRODUCE, **fields)
            except (ConnectionBrokenError, UnsupportedApiError) as error:
                logger.debug("produce to node %d: %s", node, error)
                if not self._closed:
                    for batch in batches:
                        self._retry(batch, ErrorCode.network_exception, str(error))
                return
            if self._closed:
                # An answer that came as the producer closed: its records have
                # their outcome (closed) already.
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
        self._free(batch.size_bytes)

    def _retry(self, batch: _Batch, code: ErrorCode, message: str | None) -> None:
        batch.last_error = _name(code) + (f": {message}" if message else "")
        if code in _RETRIABLE:
            if code in _STALE_METADATA:
                # Asked for again before the retry; the topic stays known meanwhile,
                # so records keep being placed by its partition count.
                self._want_topic(batch.topic)
            self._backoff(batch)
            return
        if self._settings.idempotence and code in _SEQUENCE_REFUSED:
            # Not written: renumbered under a new producer id and sent again.
            if (
                batch.producer_id == self._producer_id
                and batch.producer_epoch == self._producer_epoch
            ):
                self._sequence_gaps.add((batch.topic, batch.partition))
            batch.data = None
            self._backoff(batch)
            return
        batches = self._batches.get((batch.topic, batch.partition))
        assert batches and batches[0] is batch
        batches.popleft()
        self._fail(batch, KafkaError(f"{batch.topic}-{batch.partition}: {batch.last_error}", code))

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
    max_block_ms: int = PRODUCER_MAX_BLOCK_MS_DEFAULT,
    request_timeout_ms: int = CLIENT_REQUEST_TIMEOUT_MS_DEFAULT,
    retry_backoff_ms: int = CLIENT_RETRY_BACKOFF_MS_DEFAULT,
    retry_backoff_max_ms: int = CLIENT_RETRY_BACKOFF_MAX_MS_DEFAULT,
    metadata_max_age_ms: int = CLIENT_METADATA_MAX_AGE_MS_DEFAULT,
    client_id: str = "trioring-producer",
) -> AsyncIterator[Producer]:
    """A producer for the block; on a clean exit every queued record is flushed first.

    ``bootstrap_or_broker``: ``"host:port,..."`` (or a list of them), or an
    embedded Broker, reached in-process.

    Settings are Kafka's producer settings under Python names (``linger_ms``
    is linger.ms, ``batch_bytes`` batch.size, ``buffer_bytes_max``
    buffer.memory, ``request_bytes_max`` max.request.size, ``max_block_ms``
    max.block.ms). Idempotence needs acks="all", as in Kafka.
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
        ("max_block_ms", max_block_ms),
        ("request_timeout_ms", request_timeout_ms),
        ("retry_backoff_ms", retry_backoff_ms),
        ("retry_backoff_max_ms", retry_backoff_max_ms),
        ("metadata_max_age_ms", metadata_max_age_ms),
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
        max_block_ms=max_block_ms,
        request_timeout_ms=request_timeout_ms,
        retry_backoff_ms=retry_backoff_ms,
        retry_backoff_max_ms=retry_backoff_max_ms,
    )
    body = BodyError()
    async with (
        body_exception_unwrapped(body),
        Cluster.open(
            bootstrap_or_broker,
            client_id=client_id,
            request_timeout_ms=request_timeout_ms,
            metadata_max_age_ms=metadata_max_age_ms,
        ) as cluster,
        trio.open_nursery() as nursery,
    ):
        producer = Producer(cluster, settings)
        producer._nursery = nursery
        nursery.start_soon(producer.run, name="producer sender")
        nursery.start_soon(producer._metadata_loop, name="producer metadata")
        try:
            yield producer
            await producer.flush()
        except BaseException as error:
            body.error = error
            raise
        finally:
            nursery.cancel_scope.cancel()
            producer._close()

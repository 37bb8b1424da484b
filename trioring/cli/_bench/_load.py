"""One process's load: ``bench produce``, ``consume`` or ``e2e`` against one topic.

The command runs it itself (``--processes 1``) or starts worker processes that
each run it and report a :class:`Measurement` (``_workers``).

What is measured:

- produce: records acknowledged, over the time from the first send to the
  last acknowledgement. Latency is from ``send_nowait`` to the moment the
  bench sees the record acknowledged, for every record: each partition's
  records wait in send order (a partition's batches are acknowledged in
  order), and one task per partition wakes when its oldest record's batch is
  answered and times every record done by then (about 1 µs of the client's
  ~15 µs per record). The first record is sent alone and awaited: it fetches
  the topic's metadata and (acks=all) the producer id, which the others
  would queue behind; it is counted and timed like them. At full speed the
  latency is mostly time spent waiting in the producer's buffer
  (``buffer_bytes_max``, 32 MiB): give ``--rate`` to see it at a given load.
- consume: records read, over the time from the first read (after the
  partitions are assigned and sought to their beginning) to the last record;
  start-up, the time to the first record, is part of it and reported apart.
- e2e: records consumed, over the time from the first send to the last
  record consumed. Latency is from the moment a value was made
  (``time.time_ns()`` in its first 8 bytes, big-endian) to the moment the
  consumer took it, so producer and consumer must share a clock: here they
  run in one process.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import trio

from trioring._constants import (
    CLI_BENCH_CONSUME_RECORDS_MAX,
    CLI_BENCH_DRAIN_SECONDS,
    CLI_BENCH_END_CHECK_SECONDS,
    CLI_BENCH_RATE_STEP_SECONDS,
    CLI_BENCH_VALUE_POOL_BYTES,
    CLI_BENCH_YIELD_RECORDS,
)
from trioring.cli._bench._histogram import LatencyHistogram
from trioring.client import Consumer, Producer, SendHandle, open_consumer, open_producer

#: The bytes of a value that hold its creation time (e2e).
STAMP_BYTES = 8
CLIENT_ID = "trioring-bench"


@attrs.frozen
class LoadSettings:
    mode: str
    topic: str
    record_bytes: int
    count: int | None
    seconds: float | None
    acks: str
    compression: str | None
    linger_ms: int
    batch_bytes: int
    rate: float | None
    #: The partitions this process reads (consume, e2e; all of them with a group).
    read_partitions: tuple[int, ...] = ()
    #: The partitions this process writes, in turn; empty: the producer's partitioner chooses.
    write_partitions: tuple[int, ...] = ()
    group: str | None = None
    #: consume: each read partition's end offset when the run was planned.
    end_offsets: dict[int, int] = attrs.Factory(dict)


@attrs.define
class Measurement:
    """What one run measured (several processes' add up with :meth:`merge`)."""

    mode: str
    #: produce: records acknowledged; consume and e2e: records consumed.
    records: int = 0
    #: Bytes of record values in ``records``.
    bytes: int = 0
    #: Records handed to the producer (produce, e2e).
    sent: int = 0
    #: Records the producer could not deliver.
    failed: int = 0
    #: time.monotonic_ns() (one clock for every process of a machine) of the
    #: start of the measured load and of its last record.
    started_ns: int = 0
    ended_ns: int = 0
    #: consume: from the first read to the first record (joining the group, the first
    #: fetch); part of the measured time.
    startup_ns: int = 0
    latency: LatencyHistogram | None = None
    interrupted: bool = False
    #: consume: stopped because every partition was read to its end.
    reached_end: bool = False
    #: consume: stopped because the group gave this member no partitions (its
    #: other members hold them all): it would wait for some for ever.
    unassigned: bool = False
    #: e2e: records produced that were not consumed within CLI_BENCH_DRAIN_SECONDS.
    missing: int = 0
    first_error: str | None = None

    def elapsed_seconds(self) -> float:
        return max(self.ended_ns - self.started_ns, 0) / 1e9

    def merge(self, other: Measurement) -> None:
        if other.started_ns and (not self.started_ns or other.started_ns < self.started_ns):
            self.started_ns = other.started_ns
        self.ended_ns = max(self.ended_ns, other.ended_ns)
        self.startup_ns = max(self.startup_ns, other.startup_ns)
        self.records += other.records
        self.bytes += other.bytes
        self.sent += other.sent
        self.failed += other.failed
        self.missing += other.missing
        self.interrupted = self.interrupted or other.interrupted
        self.reached_end = self.reached_end or other.reached_end
        self.unassigned = self.unassigned or other.unassigned
        self.first_error = self.first_error or other.first_error
        if other.latency is not None:
            if self.latency is None:
                self.latency = LatencyHistogram()
            self.latency.merge(other.latency)

    def to_json(self) -> dict[str, Any]:
        data = attrs.asdict(self, filter=lambda field, _: field.name != "latency")
        data["latency"] = None if self.latency is None else self.latency.to_json()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Measurement:
        fields = dict(data)
        latency = fields.pop("latency")
        return cls(
            **fields, latency=None if latency is None else LatencyHistogram.from_json(latency)
        )


class Control:
    """Starts the measured load and ends it early (Ctrl-C, or a parent's "stop")."""

    def __init__(self) -> None:
        #: Cancelled to end the load; entered around the measured part only.
        self.scope = trio.CancelScope()
        self.interrupted = False
        #: trio.current_time() when the measured load started (for the progress bar).
        self.started_at: float | None = None

    def stop(self) -> None:
        self.interrupted = True
        self.scope.cancel()


class Values:
    """Record values of one size cut from random bytes, each stamped with its
    creation time (``time.time_ns()``) when it has room for it."""

    def __init__(self, record_bytes: int) -> None:
        self._size = record_bytes
        self._pool = os.urandom(CLI_BENCH_VALUE_POOL_BYTES + record_bytes)
        self._offset = 0

    def next(self) -> bytes:
        offset = self._offset
        # A step that shares no factor with the pool's size visits every offset.
        self._offset = (offset + 4099) % CLI_BENCH_VALUE_POOL_BYTES
        if self._size < STAMP_BYTES:
            return self._pool[offset : offset + self._size]
        stamp = time.time_ns().to_bytes(STAMP_BYTES, "big")
        return stamp + self._pool[offset + STAMP_BYTES : offset + self._size]


def producer_options(settings: LoadSettings) -> dict[str, Any]:
    return {
        "acks": "all" if settings.acks == "all" else int(settings.acks),
        "idempotence": settings.acks == "all",
        "compression": settings.compression,
        "linger_ms": settings.linger_ms,
        "batch_bytes": settings.batch_bytes,
        "client_id": CLIENT_ID,
    }


async def run_load(
    bootstrap: str,
    settings: LoadSettings,
    measurement: Measurement,
    control: Control,
    ready: Callable[[], Awaitable[None]],
) -> None:
    """Run the load ``settings`` describes into ``measurement``; ``ready`` is
    awaited once everything is connected, just before the measured part."""
    if settings.mode == "produce":
        await _run_produce(bootstrap, settings, measurement, control, ready)
    elif settings.mode == "consume":
        await _run_consume(bootstrap, settings, measurement, control, ready)
    else:
        await _run_e2e(bootstrap, settings, measurement, control, ready)
    measurement.interrupted = control.interrupted


# --- produce -----------------------------------------------------------------------------


@attrs.define(eq=False)
class _Lane:
    """One partition's records not yet seen acknowledged, in send order."""

    handles: deque[SendHandle] = attrs.Factory(deque)
    sent_ns: deque[int] = attrs.Factory(deque)
    wakeup: trio.Event = attrs.Factory(trio.Event)
    idle: bool = False


class _Acknowledgements:
    """Times every record from send to acknowledgement, and tells the sender
    when there is room again in the producer's buffer."""

    def __init__(
        self,
        nursery: trio.Nursery,
        measurement: Measurement,
        latency: LatencyHistogram | None,
        record_bytes: int,
        *,
        counts_records: bool,
    ) -> None:
        self._nursery = nursery
        self._measurement = measurement
        self._latency = latency
        self._record_bytes = record_bytes
        self._counts_records = counts_records
        self._lanes: dict[int | None, _Lane] = {}
        self._room = trio.Event()
        self._closed = False
        self.acknowledged = 0

    def add(self, handle: SendHandle, sent_ns: int) -> None:
        # By partition: a partition's batches are acknowledged in order, so its
        # oldest record is always the first to be done.
        lane = self._lanes.get(handle.partition)
        if lane is None:
            lane = self._lanes[handle.partition] = _Lane()
            self._nursery.start_soon(self._watch, lane)
        lane.handles.append(handle)
        lane.sent_ns.append(sent_ns)
        if lane.idle:
            lane.idle = False
            lane.wakeup.set()

    async def wait_for_room(self) -> None:
        """Until some record is acknowledged (room in the buffer), or fails."""
        await self._room.wait()

    def close(self) -> None:
        """Every record added has its outcome (after a flush): the watchers end."""
        self._closed = True
        for lane in self._lanes.values():
            lane.wakeup.set()

    async def _watch(self, lane: _Lane) -> None:
        handles, sent_ns, latency = lane.handles, lane.sent_ns, self._latency
        while True:
            if not handles:
                if self._closed:
                    return
                lane.idle = True
                lane.wakeup = trio.Event()
                await lane.wakeup.wait()
                continue
            try:
                await handles[0].wait()
            except Exception as error:  # the record failed: count it, go on
                delivered = self._settle_failed(handles, sent_ns, error)
            else:
                now_ns = time.perf_counter_ns()
                delivered = 0
                while handles and handles[0].done():
                    handles.popleft()
                    delivered += 1
                sent = [sent_ns.popleft() for _ in range(delivered)]
                if latency is not None:
                    latency.record_many([(now_ns - started) // 1000 for started in sent])
            self._acknowledge(delivered)
            room, self._room = self._room, trio.Event()
            room.set()

    def _acknowledge(self, delivered: int) -> None:
        self.acknowledged += delivered
        if self._counts_records:
            self._measurement.records += delivered
            self._measurement.bytes += delivered * self._record_bytes

    async def send_first(self, producer: Producer, settings: LoadSettings) -> None:
        """The first record, alone and awaited: it fetches the topic's metadata and
        (acks=all) the producer id, which the records after it would otherwise queue
        behind. It is counted and timed as any other."""
        partition = settings.write_partitions[0] if settings.write_partitions else None
        value = Values(settings.record_bytes).next()
        sent_ns = time.perf_counter_ns()
        await producer.send(settings.topic, value, partition=partition)
        if self._latency is not None:
            self._latency.record((time.perf_counter_ns() - sent_ns) // 1000)
        self._measurement.sent += 1
        self._acknowledge(1)

    def _settle_failed(
        self, handles: deque[SendHandle], sent_ns: deque[int], error: Exception
    ) -> int:
        """Pop the records that are done after a failed one; those delivered (not
        timed: a failure is rare and its neighbours' times are not the common case)."""
        measurement = self._measurement
        if measurement.first_error is None:
            measurement.first_error = " ".join(str(error).split())
        delivered = 0
        while handles and handles[0].done():
            sent_ns.popleft()
            try:
                handles.popleft().result()
            except Exception:
                measurement.failed += 1
            else:
                delivered += 1
        return delivered


async def _send(
    producer: Producer,
    settings: LoadSettings,
    acknowledgements: _Acknowledgements,
    measurement: Measurement,
) -> None:
    """Send records until ``settings.count`` are sent or ``settings.seconds`` are up."""
    topic, count, rate = settings.topic, settings.count, settings.rate
    values = Values(settings.record_bytes)
    partitions = settings.write_partitions
    step = CLI_BENCH_YIELD_RECORDS
    if rate is not None:
        step = max(1, min(step, round(rate * CLI_BENCH_RATE_STEP_SECONDS)))
    started = trio.current_time()
    deadline = started + settings.seconds if settings.seconds is not None else float("inf")
    index = measurement.sent
    with trio.move_on_at(deadline):
        while count is None or index < count:
            if rate is not None:
                # Paced from the start, so a slow moment is caught up, not lost.
                await trio.sleep_until(started + index / rate)
            else:
                # The producer's sender task must run alongside this loop.
                await trio.lowlevel.checkpoint()
            partition = partitions[(index // step) % len(partitions)] if partitions else None
            end = index + step if count is None else min(index + step, count)
            while index < end:
                value = values.next()
                sent_ns = time.perf_counter_ns()
                try:
                    handle = producer.send_nowait(topic, value, partition=partition)
                except trio.WouldBlock:
                    await acknowledgements.wait_for_room()
                    continue
                acknowledgements.add(handle, sent_ns)
                index += 1
                measurement.sent = index


async def _run_produce(
    bootstrap: str,
    settings: LoadSettings,
    measurement: Measurement,
    control: Control,
    ready: Callable[[], Awaitable[None]],
) -> None:
    measurement.latency = LatencyHistogram()
    async with (
        open_producer(bootstrap, **producer_options(settings)) as producer,
        trio.open_nursery() as nursery,
    ):
        acknowledgements = _Acknowledgements(
            nursery, measurement, measurement.latency, settings.record_bytes, counts_records=True
        )
        await ready()
        control.started_at = trio.current_time()
        measurement.started_ns = time.monotonic_ns()
        with control.scope:
            await acknowledgements.send_first(producer, settings)
            await _send(producer, settings, acknowledgements, measurement)
        await producer.flush()
        measurement.ended_ns = time.monotonic_ns()
        acknowledgements.close()
    measurement.failed = measurement.sent - measurement.records


# --- consume -----------------------------------------------------------------------------


async def _at_end(consumer: Consumer, topic: str, ends: dict[int, int]) -> bool:
    """Whether every partition the consumer reads is read to its planned end."""
    assigned = consumer.assignment()
    if not assigned:
        return False  # a group member before its first assignment
    for name, partition in assigned:
        end = ends.get(partition)
        if name == topic and end is not None and await consumer.position(name, partition) < end:
            return False
    return True


async def _run_consume(
    bootstrap: str,
    settings: LoadSettings,
    measurement: Measurement,
    control: Control,
    ready: Callable[[], Awaitable[None]],
) -> None:
    topic, count, group = settings.topic, settings.count, settings.group
    #: Whether the group's last assignment, with no rebalance since, gave this member nothing.
    given_nothing = False

    async def assigned(partitions: set[tuple[str, int]]) -> None:
        nonlocal given_nothing
        given_nothing = not consumer.assignment()

    async def rebalancing(partitions: set[tuple[str, int]]) -> None:
        nonlocal given_nothing
        given_nothing = False

    async with open_consumer(
        bootstrap,
        group_id=group,
        topics=[topic] if group is not None else None,
        auto_offset_reset="earliest",
        client_id=CLIENT_ID,
        on_assigned=assigned,
        on_revoked=rebalancing,
        on_lost=rebalancing,
    ) as consumer:
        if group is None:
            consumer.assign([(topic, partition) for partition in settings.read_partitions])
            await consumer.seek_to_beginning()
        await ready()
        control.started_at = trio.current_time()
        measurement.started_ns = time.monotonic_ns()
        seconds = settings.seconds
        deadline = float("inf") if seconds is None else control.started_at + seconds
        with control.scope, trio.move_on_at(deadline):
            while count is None or measurement.records < count:
                wanted = CLI_BENCH_CONSUME_RECORDS_MAX
                if count is not None:
                    wanted = min(wanted, count - measurement.records)
                records = await consumer.getmany(
                    timeout_s=CLI_BENCH_END_CHECK_SECONDS, max_records=wanted
                )
                if records:
                    now_ns = time.monotonic_ns()
                    if not measurement.startup_ns:
                        measurement.startup_ns = now_ns - measurement.started_ns
                    measurement.bytes += sum(len(record.value or b"") for record in records)
                    measurement.records += len(records)
                    measurement.ended_ns = now_ns
                if given_nothing and not consumer.assignment():
                    measurement.unassigned = True
                    break
                if len(records) < wanted and await _at_end(consumer, topic, settings.end_offsets):
                    measurement.reached_end = True
                    break


# --- e2e ---------------------------------------------------------------------------------


async def _run_e2e(
    bootstrap: str,
    settings: LoadSettings,
    measurement: Measurement,
    control: Control,
    ready: Callable[[], Awaitable[None]],
) -> None:
    topic = settings.topic
    measurement.latency = latency = LatencyHistogram()
    #: Records the consumer is to read: known at once with a count, else once
    #: the producer is done (then the consumer drains until ``drain_deadline``).
    target: int | None = settings.count
    drain_deadline = float("inf")
    async with (
        open_producer(bootstrap, **producer_options(settings)) as producer,
        open_consumer(bootstrap, auto_offset_reset="latest", client_id=CLIENT_ID) as consumer,
        trio.open_nursery() as nursery,
    ):
        acknowledgements = _Acknowledgements(
            nursery, measurement, None, settings.record_bytes, counts_records=False
        )
        consumer.assign([(topic, partition) for partition in settings.read_partitions])
        await consumer.seek_to_end()
        for partition in settings.read_partitions:
            await consumer.position(topic, partition)  # known before the first send
        await ready()

        async def produce() -> None:
            nonlocal target, drain_deadline
            await acknowledgements.send_first(producer, settings)
            await _send(producer, settings, acknowledgements, measurement)
            await producer.flush()
            target = measurement.sent
            drain_deadline = trio.current_time() + CLI_BENCH_DRAIN_SECONDS

        async def consume() -> None:
            while target is None or measurement.records < target:
                if target is not None and trio.current_time() > drain_deadline:
                    measurement.missing = target - measurement.records
                    return
                records = await consumer.getmany(
                    timeout_s=CLI_BENCH_END_CHECK_SECONDS, max_records=CLI_BENCH_CONSUME_RECORDS_MAX
                )
                if not records:
                    continue
                now_ns = time.time_ns()
                values = [record.value or b"" for record in records]
                latency.record_many(
                    [
                        (now_ns - int.from_bytes(value[:STAMP_BYTES], "big")) // 1000
                        for value in values
                        if len(value) >= STAMP_BYTES
                    ]
                )
                size = sum(map(len, values))
                measurement.records += len(records)
                measurement.bytes += size
                measurement.ended_ns = time.monotonic_ns()

        control.started_at = trio.current_time()
        measurement.started_ns = time.monotonic_ns()
        with control.scope:
            async with trio.open_nursery() as load:
                load.start_soon(produce)
                load.start_soon(consume)
        await producer.flush()
        acknowledgements.close()
    measurement.failed = measurement.sent - acknowledgements.acknowledged

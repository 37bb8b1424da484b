"""trioring.client's consumer (no group membership) against real broker processes, and
against an embedded broker reached in-process (``target``: the same test bodies).

Records are produced by confluent-kafka (librdkafka), an independent
implementation, or by the embedded broker's own API, and must come back
byte-exact, in order, at dense offsets. Tests about processes (restarts, two
workers) are wire-only. Every wait is bounded: a stuck consumer fails the
test, it does not hang it.
"""

from __future__ import annotations

import dataclasses
import struct
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace

import attrs
import pytest
import trio

from trioring.client import (
    Cluster,
    Consumer,
    ConsumerRecord,
    NoOffsetError,
    open_consumer,
)
from trioring.client._consumer import _PartitionState
from trioring.errors import CorruptRecordError, InvalidArgumentError, OffsetOutOfRangeError
from trioring.protocol import records as batches
from trioring.testing import BrokerProcess

# The interop suite's helpers: confluent-kafka driven as there, raw CreateTopics.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "interop"))
from client_support import EMBEDDED, WIRE, Target, open_target, run_broker_process
from interop_clients import Record, confluent_produce
from interop_wire import create_topic

#: Seconds any one consumer step may take before the test fails.
STEP_SECONDS = 20.0
#: Short fetch waits keep the tests quick; the semantics are the same.
FETCH_WAIT_MS = 100


def _run_broker(data_dir: Path, workers: int = 1) -> Iterator[BrokerProcess]:
    yield from run_broker_process(data_dir, workers)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    yield from _run_broker(tmp_path / "data")


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[BrokerProcess]:
    yield from _run_broker(tmp_path / "data", workers=2)


@pytest.fixture(params=[WIRE, EMBEDDED])
def process(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[BrokerProcess | None]:
    """A broker process (the wire), or None: an embedded broker (in-process)."""
    if request.param == WIRE:
        yield from _run_broker(tmp_path / "data")
    else:
        yield None


@pytest.fixture
async def target(process: BrokerProcess | None, tmp_path: Path) -> AsyncIterator[Target]:
    async with open_target(process, tmp_path / "embedded") as target:
        yield target


@pytest.fixture
def topic() -> str:
    return f"consumer-{uuid.uuid4().hex[:12]}"


def sample(count: int, partition: int = 0, tag: str = "") -> list[Record]:
    """Records with keys, values and headers, and some null keys, values and header values."""
    records = []
    for index in range(count):
        key = None if index % 7 == 3 else f"key-{tag}{index}".encode()
        value = None if index % 11 == 5 else bytes([index % 256]) * (index % 50) + b"|%d" % index
        headers: tuple[tuple[str, bytes | None], ...] = ()
        if index % 3 == 0:
            headers = (("h1", b"v%d" % index), ("h-null", None), ("h1", b"\x00\xff"))
        records.append(Record(key, value, headers, partition=partition))
    return records


async def produce(
    bootstrap: str,
    topic: str,
    records: list[Record],
    compression: str = "none",
    batch_bytes: int = 1_000_000,
) -> list[tuple[int, int]]:
    config = {"compression.type": compression, "batch.size": batch_bytes}
    return await trio.to_thread.run_sync(
        lambda: confluent_produce(bootstrap, topic, records, **config)
    )


async def read(consumer: Consumer, count: int) -> list[ConsumerRecord]:
    """Exactly ``count`` records (getmany until then), bounded by STEP_SECONDS."""
    got: list[ConsumerRecord] = []
    with trio.fail_after(STEP_SECONDS):
        while len(got) < count:
            got += await consumer.getmany(timeout_s=1, max_records=count - len(got))
    return got


def check(got: list[ConsumerRecord], sent: list[Record], topic: str, first_offset: int) -> None:
    assert [r.offset for r in got] == list(range(first_offset, first_offset + len(sent)))
    for record, expected in zip(got, sent, strict=True):
        assert record.topic == topic
        assert record.partition == expected.partition
        assert (record.key, record.value, record.headers) == (
            expected.key,
            expected.value,
            expected.headers,
        )
        assert record.timestamp_ms > 0


@pytest.mark.parametrize("compression", ["none", "gzip", "snappy", "lz4", "zstd"])
async def test_reads_byte_exact_in_order(target: Target, topic: str, compression: str) -> None:
    await target.create_topic(topic, 2)
    sent = {p: sample(300, p, tag=compression) for p in (0, 1)}
    await target.produce(topic, sent[0] + sent[1], compression)
    async with open_consumer(
        target.connect, auto_offset_reset="earliest", fetch_max_wait_ms=FETCH_WAIT_MS
    ) as consumer:
        consumer.assign([(topic, 0), (topic, 1)])
        got = await read(consumer, 600)
        for partition in (0, 1):
            check([r for r in got if r.partition == partition], sent[partition], topic, 0)
        assert await consumer.position(topic, 0) == 300
        statistics = consumer.statistics()
        assert statistics["records_delivered"] == 600
        assert statistics["partitions"][f"{topic}-1"]["high_watermark"] == 300


async def test_async_for_and_seek(target: Target, topic: str) -> None:
    await target.create_topic(topic, 1)
    sent = sample(20)
    await target.produce(topic, sent)
    async with open_consumer(target.connect, fetch_max_wait_ms=FETCH_WAIT_MS) as consumer:
        consumer.assign([(topic, 0)])
        assert consumer.assignment() == {(topic, 0)}
        # "latest": a fresh partition starts at the end.
        assert await consumer.position(topic, 0) == 20
        consumer.seek(topic, 0, 5)
        got = []
        with trio.fail_after(STEP_SECONDS):
            async for record in consumer:
                got.append(record)
                if len(got) == 15:
                    break
        check(got, sent[5:], topic, 5)
        await consumer.seek_to_beginning()
        check(await read(consumer, 20), sent, topic, 0)
        consumer.seek(topic, 0, 18)
        check(await read(consumer, 2), sent[18:], topic, 18)
        consumer.seek(topic, 0, 3)
        await consumer.seek_to_end((topic, 0))
        assert await consumer.position(topic, 0) == 20
        more = sample(3, tag="more")
        await target.produce(topic, more)
        check(await read(consumer, 3), more, topic, 20)
        with pytest.raises(InvalidArgumentError, match="not assigned"):
            consumer.seek(topic, 1, 0)


async def test_a_seek_right_after_assign_wins_over_auto_offset_reset(
    target: Target, topic: str
) -> None:
    """The resolver's "latest" answer could land first and void the seek (found by
    ``trioring consume --timestamp``, which read nothing)."""
    await target.create_topic(topic, 1)
    base_ms = 1_700_000_000_000
    sent = [
        dataclasses.replace(record, timestamp_ms=base_ms + 1000 * index)
        for index, record in enumerate(sample(10))
    ]
    await target.produce(topic, sent)
    async with open_consumer(target.connect, fetch_max_wait_ms=FETCH_WAIT_MS) as consumer:
        for seek in (
            consumer.seek_to_beginning(),
            consumer.seek_to_timestamp(0),
            consumer.seek_to_timestamp(base_ms + 4000),
        ):
            consumer.assign([])
            consumer.assign([(topic, 0)])  # fresh: its position is being resolved
            await seek
            assert await consumer.position(topic, 0) in (0, 4)
        assert await consumer.position(topic, 0) == 4
        await consumer.seek_to_timestamp(base_ms + 1_000_000)
        assert await consumer.position(topic, 0) == 10  # nothing at or after: the end
        with pytest.raises(InvalidArgumentError, match="not a timestamp"):
            await consumer.seek_to_timestamp(-1)


async def test_a_seek_right_after_assign_is_not_undone(target: Target, topic: str) -> None:
    """A fresh partition's position is looked up in the background ("latest" here); a
    seek made meanwhile is what the user asked for, and wins. (It was dropped when
    the lookup answered first: a tail asked to start from the beginning started at
    the end.)"""
    await target.create_topic(topic, 1)
    sent = sample(5)
    await target.produce(topic, sent)
    for _ in range(5):
        async with open_consumer(target.connect, fetch_max_wait_ms=FETCH_WAIT_MS) as consumer:
            consumer.assign([(topic, 0)])
            await consumer.seek_to_beginning()
            assert await consumer.position(topic, 0) == 0
            check(await read(consumer, 5), sent, topic, 0)
        async with open_consumer(
            target.connect, auto_offset_reset="earliest", fetch_max_wait_ms=FETCH_WAIT_MS
        ) as consumer:
            consumer.assign([(topic, 0)])
            await consumer.seek_to_end()
            assert await consumer.position(topic, 0) == 5


async def test_pause_and_resume(target: Target, topic: str) -> None:
    await target.create_topic(topic, 2)
    sent = {p: sample(10, p) for p in (0, 1)}
    await target.produce(topic, sent[0] + sent[1])
    async with open_consumer(
        target.connect, auto_offset_reset="earliest", fetch_max_wait_ms=FETCH_WAIT_MS
    ) as consumer:
        consumer.assign([(topic, 0), (topic, 1)])
        consumer.pause((topic, 0))
        assert consumer.paused() == {(topic, 0)}
        with trio.fail_after(STEP_SECONDS):
            await consumer.position(topic, 1)
        # timeout_s=0: what is buffered now, without waiting.
        got = []
        with trio.fail_after(STEP_SECONDS):
            while len(got) < 10:
                got += await consumer.getmany(timeout_s=0)
                await trio.sleep(0.01)
        check(got, sent[1], topic, 0)
        assert await consumer.getmany(timeout_s=0.5) == []
        consumer.resume((topic, 0))
        check(await read(consumer, 10), sent[0], topic, 0)


async def test_tailing_gets_later_records(target: Target, topic: str) -> None:
    await target.create_topic(topic, 1)
    async with open_consumer(target.connect, fetch_max_wait_ms=500) as consumer:
        consumer.assign([(topic, 0)])
        assert await consumer.position(topic, 0) == 0
        assert await consumer.getmany(timeout_s=0.3) == []
        sent = sample(5)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(target.produce, topic, sent)
            # Waiting at the end: the records come within one long poll of being written.
            check(await read(consumer, 5), sent, topic, 0)


@pytest.mark.parametrize("reset", ["earliest", "latest", "none"])
async def test_offset_out_of_range(target: Target, topic: str, reset: str) -> None:
    await target.create_topic(topic, 1)
    sent = sample(5)
    await target.produce(topic, sent)
    async with open_consumer(
        target.connect,
        auto_offset_reset=reset,  # type: ignore[arg-type]
        fetch_max_wait_ms=FETCH_WAIT_MS,
    ) as consumer:
        consumer.assign([(topic, 0)])
        if reset == "none":
            # A fresh partition without a group has nothing to start from.
            with trio.fail_after(STEP_SECONDS), pytest.raises(NoOffsetError, match="'none'"):
                await consumer.getmany(timeout_s=STEP_SECONDS)
        consumer.seek(topic, 0, 1000)
        if reset == "earliest":
            check(await read(consumer, 5), sent, topic, 0)
        elif reset == "latest":
            with trio.fail_after(STEP_SECONDS):
                while consumer.statistics()["offset_resets"] == 0:
                    await consumer.getmany(timeout_s=0.2)
            assert await consumer.position(topic, 0) == 5
            more = sample(2, tag="more")
            await target.produce(topic, more)
            check(await read(consumer, 2), more, topic, 5)
        else:
            with trio.fail_after(STEP_SECONDS), pytest.raises(OffsetOutOfRangeError) as caught:
                await consumer.getmany(timeout_s=STEP_SECONDS)
            assert "offset 1000" in str(caught.value)
            assert "out of range" in str(caught.value)
            # Still out of range until the user seeks.
            with trio.fail_after(STEP_SECONDS), pytest.raises(OffsetOutOfRangeError):
                await consumer.getmany(timeout_s=STEP_SECONDS)
            consumer.seek(topic, 0, 2)
            check(await read(consumer, 3), sent[2:], topic, 2)


async def test_commit_and_committed(target: Target, topic: str) -> None:
    await target.create_topic(topic, 2)
    sent = sample(10)
    await target.produce(topic, sent)
    group = f"group-{topic}"
    async with open_consumer(target.connect, fetch_max_wait_ms=FETCH_WAIT_MS) as consumer:
        with pytest.raises(InvalidArgumentError, match="group_id"):
            await consumer.committed(topic, 0)
        with pytest.raises(InvalidArgumentError, match="group_id"):
            await consumer.commit({(topic, 0): 1})
    async with open_consumer(
        target.connect,
        group_id=group,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=FETCH_WAIT_MS,
    ) as consumer:
        assert await consumer.committed(topic, 0) is None
        consumer.assign([(topic, 0), (topic, 1)])
        check(await read(consumer, 4), sent[:4], topic, 0)
        await consumer.commit()  # current positions: 4 and 0
        assert await consumer.committed(topic, 0) == 4
        assert await consumer.committed(topic, 1) == 0
        await consumer.commit({(topic, 1): 0, (topic, 0): 7})
        assert await consumer.committed(topic, 0) == 7

    # Seen from outside the client (confluent-kafka, or the embedded broker's API).
    assert await target.committed(group, [(topic, 0), (topic, 1)]) == [7, 0]
    # A fresh consumer of the group starts at the committed offset.
    async with open_consumer(
        target.connect, group_id=group, fetch_max_wait_ms=FETCH_WAIT_MS
    ) as consumer:
        consumer.assign([(topic, 0)])
        check(await read(consumer, 3), sent[7:], topic, 7)


async def test_two_workers_read_each_leader(two_workers: BrokerProcess, topic: str) -> None:
    create_topic(two_workers.port, topic, 4)
    sent = {p: sample(50, p) for p in range(4)}
    await produce(two_workers.bootstrap, topic, [r for p in range(4) for r in sent[p]])
    async with Cluster.open(two_workers.bootstrap) as cluster:
        info = await cluster.topic(topic)
        leaders = {p.leader for p in info.partitions}
        assert len(leaders) == 2, f"partitions all led by {leaders}"
        async with open_consumer(
            cluster=cluster, auto_offset_reset="earliest", fetch_max_wait_ms=FETCH_WAIT_MS
        ) as consumer:
            consumer.assign([(topic, p) for p in range(4)])
            got = await read(consumer, 200)
            for p in range(4):
                check([r for r in got if r.partition == p], sent[p], topic, 0)
            assert consumer.statistics()["fetches"] >= 2


async def test_cancelling_and_closing_leave_no_tasks(target: Target, topic: str) -> None:
    await target.create_topic(topic, 1)
    await target.produce(topic, sample(5))
    before = trio.lowlevel.current_statistics().tasks_living
    async with open_consumer(
        target.connect, auto_offset_reset="earliest", fetch_max_wait_ms=FETCH_WAIT_MS
    ) as consumer:
        consumer.assign([(topic, 0)])
        got = []
        with trio.move_on_after(1.0) as scope:
            async for record in consumer:
                got.append(record)
        assert scope.cancelled_caught
        assert len(got) == 5
        # A long-polling fetch, a getmany cancelled mid-wait: still cancellable.
        with trio.move_on_after(0.3) as scope:
            await consumer.getmany()
        assert scope.cancelled_caught
        assert trio.lowlevel.current_statistics().tasks_living > before
    await trio.testing.wait_all_tasks_blocked()
    assert trio.lowlevel.current_statistics().tasks_living == before


async def test_body_exception_comes_back_unwrapped(target: Target) -> None:
    with pytest.raises(KeyError, match="mine"):
        async with open_consumer(target.connect):
            raise KeyError("mine")


@pytest.mark.parametrize("kill", [False, True], ids=["stop", "kill"])
async def test_broker_restart_mid_stream(broker: BrokerProcess, topic: str, kill: bool) -> None:
    create_topic(broker.port, topic, 2)
    first = {p: sample(100, p, tag="a") for p in (0, 1)}
    await produce(broker.bootstrap, topic, first[0] + first[1])
    async with open_consumer(
        broker.bootstrap, auto_offset_reset="earliest", fetch_max_wait_ms=FETCH_WAIT_MS
    ) as consumer:
        consumer.assign([(topic, 0), (topic, 1)])
        got = await read(consumer, 120)
        await trio.to_thread.run_sync(lambda: broker.restart(kill=kill))
        second = {p: sample(100, p, tag="b") for p in (0, 1)}
        await produce(broker.bootstrap, topic, second[0] + second[1])
        got += await read(consumer, 280)
        assert await consumer.getmany(timeout_s=0.5) == []
        for p in (0, 1):
            check([r for r in got if r.partition == p], first[p] + second[p], topic, 0)
        assert consumer.statistics()["fetch_failures"] >= 1


async def test_unread_buffer_stops_fetching(target: Target, topic: str) -> None:
    await target.create_topic(topic, 1)
    sent = sample(2000)
    # Small batches, so that one Fetch of 4 KiB takes only some of them.
    await target.produce(topic, sent, batch_bytes=1000)
    async with open_consumer(
        target.connect,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=FETCH_WAIT_MS,
        max_partition_fetch_bytes=4096,
    ) as consumer:
        consumer.assign([(topic, 0)])
        for _ in range(int(STEP_SECONDS / 0.05)):
            if consumer.statistics()["partitions"][f"{topic}-0"]["buffered_records"]:
                break
            await trio.sleep(0.05)
        else:
            pytest.fail(f"nothing fetched in {STEP_SECONDS} s")
        await trio.sleep(0.5)
        fetches = consumer.statistics()["fetches"]
        await trio.sleep(0.5)
        # Nobody reads: the full buffer is not fetched into again.
        statistics = consumer.statistics()
        assert statistics["fetches"] == fetches
        assert 0 < statistics["partitions"][f"{topic}-0"]["buffered_records"] < len(sent)
        check(await read(consumer, len(sent)), sent, topic, 0)


async def test_stale_leader_is_refreshed(two_workers: BrokerProcess, topic: str) -> None:
    create_topic(two_workers.port, topic, 2)
    sent = {p: sample(20, p) for p in (0, 1)}
    await produce(two_workers.bootstrap, topic, sent[0] + sent[1])
    async with Cluster.open(two_workers.bootstrap) as cluster:
        info = await cluster.topic(topic)
        nodes = sorted(cluster.brokers)
        # Metadata that names the wrong worker as each partition's leader: the
        # worker answers NOT_LEADER_OR_FOLLOWER, and the consumer asks again.
        wrong = [attrs.evolve(p, leader=nodes[1 - nodes.index(p.leader)]) for p in info.partitions]
        cluster.topics[topic] = attrs.evolve(info, partitions=tuple(wrong))
        async with open_consumer(
            cluster=cluster, auto_offset_reset="earliest", fetch_max_wait_ms=FETCH_WAIT_MS
        ) as consumer:
            consumer.assign([(topic, 0), (topic, 1)])
            consumer.seek(topic, 0, 0)
            consumer.seek(topic, 1, 0)
            got = await read(consumer, 40)
            for p in (0, 1):
                check([r for r in got if r.partition == p], sent[p], topic, 0)
            statistics = consumer.statistics()
            assert statistics["fetch_failures"] >= 1
            assert statistics["metadata_refreshes"] >= 1


async def test_worker_killed_mid_stream(two_workers: BrokerProcess, topic: str) -> None:
    create_topic(two_workers.port, topic, 4)
    first = {p: sample(50, p, tag="a") for p in range(4)}
    await produce(two_workers.bootstrap, topic, [r for p in range(4) for r in first[p]])
    async with open_consumer(
        two_workers.bootstrap, auto_offset_reset="earliest", fetch_max_wait_ms=FETCH_WAIT_MS
    ) as consumer:
        consumer.assign([(topic, p) for p in range(4)])
        got = await read(consumer, 120)
        await trio.to_thread.run_sync(two_workers.kill_worker, 1)
        second = {p: sample(50, p, tag="b") for p in range(4)}
        await produce(two_workers.bootstrap, topic, [r for p in range(4) for r in second[p]])
        got += await read(consumer, 280)
        assert await consumer.getmany(timeout_s=0.5) == []
        for p in range(4):
            check([r for r in got if r.partition == p], first[p] + second[p], topic, 0)


def _control_batch(base_offset: int) -> bytes:
    """A transaction marker batch (the broker refuses to store these, so it is built here)."""
    batch = bytearray(
        batches.build_batch(
            [batches.Record(key=b"\x00\x00\x00\x00", value=b"")], base_offset=base_offset
        )
    )
    struct.pack_into(">h", batch, 21, batches.ATTRIBUTE_CONTROL | batches.ATTRIBUTE_TRANSACTIONAL)
    struct.pack_into(">I", batch, 17, batches.compute_batch_crc(batch, 0, len(batch)))
    return bytes(batch)


def test_fetched_data_from_the_position_on_without_control_batches() -> None:
    """What a Fetch answer becomes, without a broker: a batch that starts before the
    position, a transaction marker, and a partial batch at the end (KIP-74)."""
    consumer = Consumer(
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        group_id=None,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=0,
        fetch_min_bytes=1,
        max_partition_fetch_bytes=1 << 20,
        fetch_max_bytes=1 << 20,
        isolation_level="read_uncommitted",
    )
    first = batches.build_batch(
        [batches.Record(key=b"k%d" % i, value=b"v%d" % i) for i in range(3)],
        compression="zstd",
    )
    second = batches.build_batch(
        [batches.Record(key=None, value=b"v%d" % i, headers=[("h", None)]) for i in (4, 5)],
        base_offset=4,
    )
    partial = batches.build_batch([batches.Record(value=b"x" * 100)], base_offset=6)[:40]
    state = _PartitionState(position=1, reset="earliest", fetch_offset=1)
    answer = SimpleNamespace(
        error_code=0,
        high_watermark=7,
        log_start_offset=0,
        records=first + _control_batch(3) + second + partial,
    )
    assert consumer._apply_fetched(("t", 0), state, answer) is False
    assert state.buffered_records == 4
    assert (state.fetch_offset, state.high_watermark, state.error) == (6, 7, None)

    corrupt = bytearray(batches.build_batch([batches.Record(value=b"abc")], base_offset=6))
    corrupt[-1] ^= 0xFF
    answer = SimpleNamespace(
        error_code=0, high_watermark=7, log_start_offset=0, records=bytes(corrupt)
    )
    consumer._apply_fetched(("t", 0), state, answer)
    assert isinstance(state.error, CorruptRecordError)
    # The records before the corrupt batch are read first, then the error is raised.
    consumer._partitions[("t", 0)] = state
    buffered = consumer._take(10)
    assert [(r.offset, r.key, r.value) for r in buffered] == [
        (1, b"k1", b"v1"),
        (2, b"k2", b"v2"),
        (4, None, b"v4"),
        (5, None, b"v5"),
    ]
    assert buffered[-1].headers == (("h", None),)
    assert (state.position, state.buffered_records, state.buffered_bytes) == (6, 0, 0)
    with pytest.raises(CorruptRecordError, match="CRC32C"):
        consumer._take(10)

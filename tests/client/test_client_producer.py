"""trioring.client's producer against a real broker process (1 and 2 workers), read back by
confluent-kafka, and against an embedded broker reached in-process, read back by its own
API (``target``: the same test bodies): batching, partitioning as librdkafka and Java,
idempotence across restarts, back-pressure, acks, compression, cancellation."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from client_support import EMBEDDED, Target, open_target, topic_name
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from trioring.client import RecordMetadata, open_producer
from trioring.client._partitioner import murmur2, partition_for_key
from trioring.errors import InvalidArgumentError, KafkaError
from trioring.testing import BrokerProcess

confluent_kafka = pytest.importorskip("confluent_kafka")
confluent_admin = pytest.importorskip("confluent_kafka.admin")

READ_SECONDS = 20.0


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Broker processes of 1 and 2 workers for every test; an embedded broker too, but
    for tests that take ``broker`` (the wire only)."""
    if "process" in metafunc.fixturenames:
        workers = [1, 2] + ([] if "broker" in metafunc.fixturenames else [0])
        ids = {1: "1-worker", 2: "2-workers", 0: EMBEDDED}
        metafunc.parametrize(
            "process", workers, ids=[ids[w] for w in workers], indirect=True, scope="module"
        )


@pytest.fixture(scope="module")
def process(
    tmp_path_factory: pytest.TempPathFactory, request: Any
) -> Iterator[BrokerProcess | None]:
    """A broker process of ``request.param`` workers, or None (0): an embedded broker."""
    if request.param == 0:
        yield None
        return
    with BrokerProcess(
        tmp_path_factory.mktemp("producer") / "data", workers=request.param
    ) as process:
        yield process
        code = process.stop()
    assert code == 0


@pytest.fixture
def broker(process: BrokerProcess | None) -> BrokerProcess:
    """The wire only (tests that produce or read with confluent-kafka)."""
    assert process is not None
    return process


@pytest.fixture
async def target(process: BrokerProcess | None, tmp_path: Path) -> AsyncIterator[Target]:
    async with open_target(process, tmp_path / "embedded") as target:
        yield target


@pytest.fixture
def restartable(tmp_path: Path) -> Iterator[BrokerProcess]:
    with BrokerProcess(tmp_path / "data") as process:
        yield process
        process.stop()


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[BrokerProcess]:
    with BrokerProcess(tmp_path / "data", workers=2) as process:
        yield process
        process.stop()


def create_topic(bootstrap: str, partitions: int) -> str:
    topic = f"client-{uuid.uuid4().hex[:10]}"
    admin = confluent_admin.AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([confluent_admin.NewTopic(topic, partitions, 1)]).values():
        future.result(READ_SECONDS)
    return topic


async def new_topic(target: Target, partitions: int) -> str:
    topic = topic_name()
    await target.create_topic(topic, partitions)
    return topic


def read_all(bootstrap: str, topic: str, count: int) -> list[Any]:
    """Every record of the topic, by confluent-kafka, from the beginning."""
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    messages = []
    deadline = time.monotonic() + READ_SECONDS
    try:
        while len(messages) < count and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                messages.append(message)
        # Anything beyond ``count`` (a duplicate) would come now.
        extra = consumer.poll(0.5)
        if extra is not None and extra.error() is None:
            messages.append(extra)
    finally:
        consumer.close()
    return messages


def test_murmur2_is_javas() -> None:
    # Kafka's UtilsTest vectors.
    assert murmur2(b"21") == -973932308
    assert murmur2(b"foobar") == -790332482
    assert murmur2(b"a-little-bit-long-string") == -985981536
    assert murmur2(b"a-little-bit-longer-string") == -1486304829
    assert murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") == -58897971
    assert murmur2(b"abc") == 479470107


@pytest.mark.parametrize("compression", ["none", "gzip", "snappy", "lz4", "zstd"])
async def test_records_are_read_back_byte_exact_with_their_offsets(
    target: Target, compression: str
) -> None:
    topic = await new_topic(target, 3)
    sent = [
        (
            None if i % 5 == 0 else b"key-%d" % i,
            None if i % 7 == 0 else b"value-%d-" % i + bytes(range(i % 50)),
            [("h", b"x%d" % i), ("empty", None)] if i % 3 == 0 else [],
        )
        for i in range(300)
    ]
    async with open_producer(target.connect, compression=compression, linger_ms=2) as producer:
        handles = [
            producer.send_nowait(topic, value, key=key, headers=headers)
            for key, value, headers in sent
        ]
        first = await producer.send(topic, b"last", partition=2)
    results = [handle.result() for handle in handles]
    assert first.partition == 2
    by_position = {(r.partition, r.offset): i for i, r in enumerate(results)}
    assert len(by_position) == len(results), "two records at one offset"
    for result, (key, _, _) in zip(results, sent, strict=True):
        if key is not None:
            assert result.partition == partition_for_key(key, 3)
    messages = await target.read_all(topic, len(sent) + 1)
    assert len(messages) == len(sent) + 1
    for message in messages:
        if message.value == b"last":
            assert (message.partition, message.offset) == (first.partition, first.offset)
            continue
        index = by_position[(message.partition, message.offset)]
        key, value, headers = sent[index]
        assert (message.key, message.value) == (key, value)
        assert list(message.headers) == headers
        assert message.timestamp_ms == results[index].timestamp_ms
    # Dense offsets from 0 in every partition.
    for partition in range(3):
        offsets = sorted(o for p, o in by_position if p == partition)
        offsets += [first.offset] if partition == 2 else []
        assert sorted(offsets) == list(range(len(offsets)))


async def test_keys_land_where_librdkafka_puts_them(broker: BrokerProcess) -> None:
    """The same keys, produced by confluent-kafka (murmur2_random, Java's partitioner) and
    by us, go to the same partitions."""
    topic = create_topic(broker.bootstrap, 7)
    keys = [b"user-%d" % i for i in range(200)] + [b"", b"\x00\xff" * 9]
    producer = confluent_kafka.Producer(
        {"bootstrap.servers": broker.bootstrap, "partitioner": "murmur2_random"}
    )
    theirs: dict[bytes, int] = {}

    def report(error: Any, message: Any) -> None:
        assert error is None
        theirs[message.key()] = message.partition()

    for key in keys:
        producer.produce(topic, b"v", key=key, on_delivery=report)
    assert producer.flush(READ_SECONDS) == 0
    async with open_producer(broker.bootstrap) as ours:
        results = [await ours.send(topic, b"v", key=key) for key in keys[:20]]
        handles = [ours.send_nowait(topic, b"v", key=key) for key in keys[20:]]
    results += [handle.result() for handle in handles]
    assert {key: r.partition for key, r in zip(keys, results, strict=True)} == theirs


async def test_keyless_records_stick_to_a_partition_per_batch(target: Target) -> None:
    topic = await new_topic(target, 4)
    async with open_producer(target.connect, linger_ms=50) as producer:
        handles = [producer.send_nowait(topic, b"x") for _ in range(50)]
    partitions = {handle.result().partition for handle in handles}
    assert len(partitions) == 1, "one open batch, one partition (KIP-480)"


@pytest.mark.parametrize("acks", [0, 1])
async def test_acks_zero_and_one(target: Target, acks: int) -> None:
    topic = await new_topic(target, 1)
    async with open_producer(target.connect, acks=acks, idempotence=False) as producer:
        results = [await producer.send(topic, b"r%d" % i) for i in range(20)]
    if acks == 0:
        assert {r.offset for r in results} == {-1}
    else:
        assert [r.offset for r in results] == list(range(20))
    assert [m.value for m in await target.read_all(topic, 20)] == [b"r%d" % i for i in range(20)]


async def test_a_full_buffer_makes_send_wait_and_send_nowait_refuse(
    target: Target,
) -> None:
    topic = await new_topic(target, 1)
    value = b"v" * 1000
    async with open_producer(
        target.connect, buffer_bytes_max=8_000, batch_bytes=4_000, linger_ms=100
    ) as producer:
        handles = []
        with pytest.raises(trio.WouldBlock):
            for _ in range(100):
                handles.append(producer.send_nowait(topic, value))
        assert 0 < len(handles) <= 8
        assert producer.statistics()["buffered_bytes"] <= 8_000
        # send() waits for room instead; everything goes through.
        results = [await producer.send(topic, value) for _ in range(30)]
    assert all(handle.done() for handle in handles)
    assert results[-1].offset == len(handles) + 29


async def test_idempotent_producer_across_broker_restarts_writes_each_record_once(
    restartable: BrokerProcess,
) -> None:
    """Records keep flowing while the broker restarts (gracefully, then by SIGKILL):
    retried batches are deduplicated by their sequence numbers, so every acknowledged
    record is there once, in order, at a dense offset."""
    topic = create_topic(restartable.bootstrap, 2)
    total = 3000
    results: list[RecordMetadata] = []
    async with open_producer(
        restartable.bootstrap, linger_ms=1, delivery_timeout_ms=60_000, retry_backoff_ms=50
    ) as producer:
        thirds = [trio.Event(), trio.Event()]

        async def produce() -> None:
            for i in range(total):
                results.append(await producer.send(topic, b"%06d" % i, key=b"k%d" % (i % 2)))
                if len(results) in (total // 3, 2 * total // 3):
                    thirds[len(results) * 3 // total - 1].set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(produce)
            for third, kill in zip(thirds, (False, True), strict=True):
                await third.wait()
                await trio.to_thread.run_sync(lambda kill=kill: restartable.restart(kill=kill))
    assert len(results) == total
    messages = read_all(restartable.bootstrap, topic, total)
    assert len(messages) == total, "a record lost or written twice"
    for partition in (0, 1):
        values = [m.value() for m in messages if m.partition() == partition]
        assert values == sorted(values), "out of order"
        offsets = [m.offset() for m in messages if m.partition() == partition]
        assert offsets == list(range(len(offsets)))
    assert sorted(m.value() for m in messages) == [b"%06d" % i for i in range(total)]


async def test_idempotent_producer_across_a_killed_worker_writes_each_record_once(
    two_workers: BrokerProcess,
) -> None:
    """A worker of a two-worker broker is SIGKILLed mid-stream (the supervisor starts it
    again): its partitions' batches are retried, nothing is lost or written twice."""
    topic = create_topic(two_workers.bootstrap, 4)
    total = 2000
    results: list[RecordMetadata] = []
    async with open_producer(
        two_workers.bootstrap, linger_ms=1, delivery_timeout_ms=60_000, retry_backoff_ms=50
    ) as producer:
        half = trio.Event()

        async def produce() -> None:
            for i in range(total):
                results.append(await producer.send(topic, b"%06d" % i, key=b"k%d" % (i % 4)))
                if len(results) == total // 2:
                    half.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(produce)
            await half.wait()
            await trio.to_thread.run_sync(lambda: two_workers.kill_worker(1))
    assert len(results) == total
    messages = read_all(two_workers.bootstrap, topic, total)
    assert len(messages) == total, "a record lost or written twice"
    assert sorted(m.value() for m in messages) == [b"%06d" % i for i in range(total)]
    for partition in range(4):
        values = [m.value() for m in messages if m.partition() == partition]
        assert values == sorted(values), "out of order"
        offsets = [m.offset() for m in messages if m.partition() == partition]
        assert offsets == list(range(len(offsets)))


async def test_cancelled_sends_and_close_leave_no_task_running(target: Target) -> None:
    topic = await new_topic(target, 1)
    before = trio.lowlevel.current_statistics().tasks_living
    async with open_producer(target.connect, linger_ms=200) as producer:
        with trio.move_on_after(0.01):
            await producer.send(topic, b"cancelled while waiting")
        result = await producer.send(topic, b"after")
    assert result.offset in (0, 1)
    await trio.testing.wait_all_tasks_blocked()
    assert trio.lowlevel.current_statistics().tasks_living == before


async def test_operator_mistakes_and_oversized_records(target: Target) -> None:
    with pytest.raises(InvalidArgumentError, match="acks='all'"):
        async with open_producer(target.connect, acks=1):
            pass
    with pytest.raises(InvalidArgumentError, match="HOST:PORT"):
        async with open_producer("nowhere"):
            pass
    topic = await new_topic(target, 1)
    async with open_producer(target.connect, request_bytes_max=1000) as producer:
        with pytest.raises(KafkaError, match="request_bytes_max"):
            await producer.send(topic, b"x" * 2000)

    class Mine(Exception):
        pass

    with pytest.raises(Mine):
        async with open_producer(target.connect):
            raise Mine


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["send", "send_nowait", "flush"]),
            st.sampled_from([None, 0.0, 0.001, 0.005, 0.02]),
        ),
        min_size=1,
        max_size=25,
    ),
    st.sampled_from([None, 0.0, 0.01]),
)
# Found by this test: records queued before their topic's metadata, then the
# producer closed while that metadata was being looked up, were left without
# an outcome.
@example(operations=[("send_nowait", None), ("send", None)], close_after=0.0)
def test_cancellation_at_any_point_leaves_no_task_and_no_record_doubled(
    process: BrokerProcess | None,
    tmp_path: Path,
    operations: list[tuple[str, float | None]],
    close_after: float | None,
) -> None:
    """Sends, flushes and the producer's close cancelled at random points: afterwards no
    task runs, every handle has an outcome, and every acknowledged record is in the log
    once (idempotence: a record is never written twice)."""

    async def run() -> tuple[list[bytes], list[bytes], int]:
        # Embedded: one broker per example, on one data directory (examples run in turn).
        async with open_target(process, tmp_path / "embedded") as target:
            topic = await new_topic(target, 2)
            before = trio.lowlevel.current_statistics().tasks_living
            acknowledged: list[bytes] = []
            handles: list[Any] = []
            with trio.move_on_after(1000 if close_after is None else close_after):
                async with open_producer(target.connect, linger_ms=2) as producer:
                    for index, (kind, cancel_after) in enumerate(operations):
                        value = b"%04d" % index
                        with trio.move_on_after(1000 if cancel_after is None else cancel_after):
                            if kind == "send":
                                await producer.send(topic, value)
                                acknowledged.append(value)
                            elif kind == "send_nowait":
                                handles.append((value, producer.send_nowait(topic, value)))
                            else:
                                await producer.flush()
            for value, handle in handles:
                assert handle.done(), "a record left without an outcome"
                try:
                    handle.result()
                    acknowledged.append(value)
                except (trio.ClosedResourceError, KafkaError):
                    pass
            await trio.testing.wait_all_tasks_blocked()
            leaked = trio.lowlevel.current_statistics().tasks_living - before
            values = [m.value for m in await target.read_all(topic, await target.records_in(topic))]
        return acknowledged, values, leaked

    acknowledged, values, leaked = trio.run(run)
    assert leaked == 0
    assert len(values) == len(set(values)), "a record written twice"
    assert set(acknowledged) <= set(values), "an acknowledged record is missing"

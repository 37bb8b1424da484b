"""trioring.client's producer against a real broker process (1 and 2 workers), read back by
confluent-kafka, and against an embedded broker reached in-process, read back by its own
API (``target``: the same test bodies): batching, partitioning as librdkafka and Java,
idempotence across restarts, back-pressure, acks, compression, cancellation."""

from __future__ import annotations

import contextlib
import math
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from client_support import EMBEDDED, EmbeddedTarget, Target, open_target, topic_name
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from kio.schema.errors import ErrorCode

import trioring
from trioring.client import RecordMetadata, SendHandle, open_producer
from trioring.client._partitioner import murmur2, partition_for_key
from trioring.errors import InvalidArgumentError, KafkaError
from trioring.handlers import HandlerContext
from trioring.handlers.messages import (
    InitProducerIdRequest,
    MetadataRequest,
    MetadataResponse,
    ProduceRequest,
)
from trioring.storage.producers import (
    InvalidProducerEpochError,
    OutOfOrderSequenceError,
    UnknownProducerIdError,
)
from trioring.testing import BrokerProcess

confluent_kafka = pytest.importorskip("confluent_kafka")
confluent_admin = pytest.importorskip("confluent_kafka.admin")

READ_SECONDS = 20.0


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Broker processes of 1 and 2 workers for every test; an embedded broker too, but
    for tests that take ``broker`` (the wire only)."""
    if "process" in metafunc.fixturenames:
        workers = [1, 2] + ([] if "broker" in metafunc.fixturenames else [0])
        if (
            metafunc.function.__name__
            == "test_cancellation_at_any_point_leaves_no_task_and_no_record_doubled"
        ):
            # The slowest test here (hypothesis, ~10 s a broker): one worker and
            # embedded cover the producer's cancellation; workers do not change it.
            workers = [1, 0]
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
    total = 1000
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


# --- failures that must not spread, waits that must end ---------------------------------


@asynccontextmanager
async def embedded(
    tmp_path: Path, middleware: Sequence[trioring.Middleware] = (), **config: Any
) -> AsyncIterator[trioring.Broker]:
    """An embedded broker of its own (settings or middleware the shared target lacks)."""
    broker_config = trioring.BrokerConfig(data_dir=tmp_path / "own", **config)
    async with trioring.open_broker(broker_config, middleware=middleware) as broker:
        yield broker


def values_by_partition(read: list[Any]) -> dict[int, list[bytes]]:
    by_partition: dict[int, list[bytes]] = {}
    for record in sorted(read, key=lambda r: (r.partition, r.offset)):
        by_partition.setdefault(record.partition, []).append(record.value)
    return by_partition


async def test_a_refused_record_does_not_fail_the_records_after_it(tmp_path: Path) -> None:
    """The broker refuses a record for good (larger than its batch_bytes_max): its
    sequence numbers are spent, and the partition's next batch would leave a gap the
    broker refuses (OUT_OF_ORDER_SEQUENCE_NUMBER, or UNKNOWN_PRODUCER_ID if the refused
    batch was the partition's first). The producer takes a new producer id and numbers
    the partition from 0 again: every other record is written, once, in order."""
    async with embedded(tmp_path, batch_bytes_max=4096) as broker:
        target = EmbeddedTarget(broker)
        topic = await new_topic(target, 2)
        big = b"x" * 8000
        # One record a batch: the refused record fails alone.
        async with open_producer(broker, batch_bytes=1000, linger_ms=1) as producer:
            # Partition 0: written, refused, then more; partition 1 starts refused.
            first = [await producer.send(topic, b"p0-%02d" % i, partition=0) for i in range(3)]
            with pytest.raises(KafkaError) as refused:
                await producer.send(topic, big, partition=0)
            assert refused.value.kafka_error_code == ErrorCode.message_too_large
            refused_handles = [producer.send_nowait(topic, big, partition=1)]
            handles = []
            for i in range(3, 40):
                handles.append(producer.send_nowait(topic, b"p0-%02d" % i, partition=0))
                handles.append(producer.send_nowait(topic, b"p1-%02d" % i, partition=1))
                if i == 20:
                    refused_handles.append(producer.send_nowait(topic, big, partition=0))
            await producer.flush()
            resets = producer.statistics()["producer_id_resets"]
        for handle in refused_handles:
            with pytest.raises(KafkaError) as refused:
                handle.result()
            assert refused.value.kafka_error_code == ErrorCode.message_too_large
        assert [r.offset for r in first] == [0, 1, 2]
        assert [h.result().offset for h in handles[::2]] == list(range(3, 40))
        assert [h.result().offset for h in handles[1::2]] == list(range(37))
        read = values_by_partition(await target.read_all(topic, 3 + 2 * 37))
        assert read[0] == [b"p0-%02d" % i for i in range(40)]
        assert read[1] == [b"p1-%02d" % i for i in range(3, 40)]
        assert resets >= 1


async def test_a_batch_that_timed_out_does_not_fail_the_batches_after_it(
    tmp_path: Path,
) -> None:
    """A batch the broker never answers (its requests time out) expires after being
    numbered: the partition's next batches still go, under a new producer id."""

    def stall(handler: trioring.Handler) -> trioring.Handler:
        async def wrapped(ctx: HandlerContext, request: object) -> object:
            if isinstance(request, ProduceRequest) and b"stall" in bytes(request.records):
                await trio.sleep_forever()
            return await handler(ctx, request)

        return wrapped

    async with embedded(tmp_path, middleware=[stall]) as broker:
        target = EmbeddedTarget(broker)
        topic = await new_topic(target, 1)
        async with open_producer(
            broker, request_timeout_ms=100, delivery_timeout_ms=600, retry_backoff_ms=20
        ) as producer:
            await producer.send(topic, b"before")
            with trio.fail_after(10), pytest.raises(KafkaError, match="delivery_timeout_ms"):
                await producer.send(topic, b"stall")
            after = [await producer.send(topic, b"after-%d" % i) for i in range(5)]
        assert [r.offset for r in after] == list(range(1, 6))
        read = await target.read_all(topic, 6)
        assert [r.value for r in read] == [b"before"] + [b"after-%d" % i for i in range(5)]


@pytest.mark.parametrize(
    "refusal", [OutOfOrderSequenceError, UnknownProducerIdError, InvalidProducerEpochError]
)
async def test_a_batch_refused_for_its_sequence_is_sent_again_under_a_new_producer_id(
    tmp_path: Path, refusal: type[trioring.TrioringError]
) -> None:
    """The broker refuses a batch's producer id, epoch or sequence (it lost the
    producer's state, say): the batch was not written, so it goes again, numbered
    from 0 under a new producer id, and so do the batches after it."""
    refused = [False]

    def refuse_once(handler: trioring.Handler) -> trioring.Handler:
        async def wrapped(ctx: HandlerContext, request: object) -> object:
            if (
                isinstance(request, ProduceRequest)
                and b"refused" in bytes(request.records)
                and not refused[0]
            ):
                refused[0] = True
                raise refusal("refused for the test")
            return await handler(ctx, request)

        return wrapped

    async with embedded(tmp_path, middleware=[refuse_once]) as broker:
        target = EmbeddedTarget(broker)
        topic = await new_topic(target, 1)
        async with open_producer(broker, retry_backoff_ms=10) as producer:
            await producer.send(topic, b"before")
            first_id = producer.statistics()["producer_id"]
            results = [await producer.send(topic, b"refused")]
            results += [await producer.send(topic, b"after-%d" % i) for i in range(3)]
            statistics = producer.statistics()
        assert refused[0]
        assert [r.offset for r in results] == [1, 2, 3, 4]
        assert statistics["producer_id_resets"] == 1
        assert statistics["producer_id"] != first_id
        values = [r.value for r in await target.read_all(topic, 5)]
        assert values == [b"before", b"refused", b"after-0", b"after-1", b"after-2"]


def leader_not_available(topic: str, answers: int | None) -> trioring.Middleware:
    """Metadata says LEADER_NOT_AVAILABLE for ``topic`` (as Kafka may for a topic being
    auto-created), ``answers`` times (None: always)."""
    left = [math.inf if answers is None else answers]

    def middleware(handler: trioring.Handler) -> trioring.Handler:
        async def wrapped(ctx: HandlerContext, request: object) -> object:
            response = await handler(ctx, request)
            if not isinstance(request, MetadataRequest) or not isinstance(
                response, MetadataResponse
            ):
                return response
            if left[0] <= 0 or request.topics is None or topic not in request.topics:
                return response
            left[0] -= 1
            return attrs.evolve(
                response,
                topics=tuple(
                    attrs.evolve(t, error_code=ErrorCode.leader_not_available, partitions=())
                    if t.name == topic
                    else t
                    for t in response.topics
                ),
            )

        return wrapped

    return middleware


async def test_metadata_that_is_not_ready_yet_is_asked_for_again(tmp_path: Path) -> None:
    """A topic's first Metadata answers say LEADER_NOT_AVAILABLE: send() and
    send_nowait() ask again (backing off) instead of failing the records."""
    topic, other = topic_name(), topic_name()
    async with embedded(
        tmp_path, middleware=[leader_not_available(topic, 3), leader_not_available(other, 3)]
    ) as broker:
        target = EmbeddedTarget(broker)
        await target.create_topic(topic, 1)
        await target.create_topic(other, 1)
        async with open_producer(broker, retry_backoff_ms=10) as producer:
            with trio.fail_after(10):
                assert (await producer.send(topic, b"a")).offset == 0
                handles = [producer.send_nowait(other, b"%d" % i) for i in range(10)]
                await producer.flush()
        assert [h.result().offset for h in handles] == list(range(10))


async def test_metadata_that_never_comes_fails_after_max_block_and_delivery_timeout(
    tmp_path: Path,
) -> None:
    topic = topic_name()
    async with embedded(tmp_path, middleware=[leader_not_available(topic, None)]) as broker:
        await broker.create_topic(topic, 1)
        async with open_producer(
            broker, max_block_ms=200, delivery_timeout_ms=300, retry_backoff_ms=10
        ) as producer:
            with trio.fail_after(5):
                with pytest.raises(KafkaError, match=r"max_block_ms.*LEADER_NOT_AVAILABLE") as sent:
                    await producer.send(topic, b"a")
                assert sent.value.kafka_error_code == ErrorCode.request_timed_out
                handle = producer.send_nowait(topic, b"b")
                with pytest.raises(KafkaError, match=r"delivery_timeout_ms.*LEADER_NOT_AVAILABLE"):
                    await handle.wait()
            assert producer.statistics()["buffered_bytes"] == 0


async def test_records_sent_while_the_broker_restarts_are_all_delivered_once(
    restartable: BrokerProcess,
) -> None:
    """send_nowait() keeps queueing while the broker is down: to a known topic (whose
    metadata a broken connection must not throw away) and to a topic first named while
    the broker is down (auto-created once it is back). Every record is acknowledged
    and written once."""
    topic = create_topic(restartable.bootstrap, 2)
    fresh = f"client-{uuid.uuid4().hex[:10]}"
    total = 1500
    handles: list[tuple[str, SendHandle]] = []
    async with open_producer(
        restartable.bootstrap, linger_ms=2, retry_backoff_ms=50, delivery_timeout_ms=60_000
    ) as producer:
        stopped, started = trio.Event(), trio.Event()

        async def send(to: str, value: bytes, key: bytes) -> None:
            while True:
                try:
                    handles.append((to, producer.send_nowait(to, value, key=key)))
                    return
                except trio.WouldBlock:
                    await trio.sleep(0.01)

        async def produce() -> None:
            for i in range(total):
                await send(topic, b"%06d" % i, b"k%d" % (i % 2))
                if i == total // 3:
                    await stopped.wait()
                if stopped.is_set() and not started.is_set():
                    await send(fresh, b"%06d" % i, b"k")
                await trio.sleep(0.001 if i % 10 == 0 else 0)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(produce)
            await trio.sleep(0.2)
            await trio.to_thread.run_sync(restartable.stop)
            stopped.set()
            await trio.sleep(1.0)
            await trio.to_thread.run_sync(restartable.start)
            started.set()
    sent = {name: [h.result() for to, h in handles if to == name] for name in (topic, fresh)}
    assert len(sent[topic]) == total
    assert sent[fresh], "nothing was sent while the broker was down"
    for name, results in sent.items():
        messages = read_all(restartable.bootstrap, name, len(results))
        assert len(messages) == len(results), "a record lost or written twice"
        for partition in {m.partition() for m in messages}:
            values = [m.value() for m in messages if m.partition() == partition]
            assert values == sorted(values), "out of order"


async def test_a_record_for_a_new_topic_never_wakes_its_waiter_too_early(
    tmp_path: Path,
) -> None:
    """While the sender looks one topic up, a record for another new topic is queued:
    its wait() returns once the record is acknowledged, never trio.WouldBlock (a caller
    retrying on that would write the record twice)."""
    slow = topic_name()

    def slow_metadata(handler: trioring.Handler) -> trioring.Handler:
        async def wrapped(ctx: HandlerContext, request: object) -> object:
            if isinstance(request, MetadataRequest) and slow in (request.topics or ()):
                await trio.sleep(0.3)
            return await handler(ctx, request)

        return wrapped

    async with embedded(tmp_path, middleware=[slow_metadata]) as broker:
        target = EmbeddedTarget(broker)
        other = await new_topic(target, 1)
        await target.create_topic(slow, 1)
        async with open_producer(broker) as producer:
            first = producer.send_nowait(slow, b"slow")
            await trio.sleep(0.05)  # the slow lookup is under way
            second = producer.send_nowait(other, b"other")
            with trio.fail_after(5):
                assert (await second.wait()).offset == 0
                assert (await first.wait()).offset == 0
        assert [r.value for r in await target.read_all(other, 1)] == [b"other"]


async def test_producer_id_that_never_comes_fails_the_records_after_delivery_timeout(
    tmp_path: Path,
) -> None:
    """InitProducerId answers a retriable error for ever: the records fail once their
    delivery_timeout_ms is up, with an error that says why, and the block can be left."""

    def no_producer_id(handler: trioring.Handler) -> trioring.Handler:
        async def wrapped(ctx: HandlerContext, request: object) -> object:
            if isinstance(request, InitProducerIdRequest):
                raise KafkaError("not now", ErrorCode.coordinator_not_available)
            return await handler(ctx, request)

        return wrapped

    async with embedded(tmp_path, middleware=[no_producer_id]) as broker:
        target = EmbeddedTarget(broker)
        topic = await new_topic(target, 1)
        with trio.fail_after(10):
            async with open_producer(
                broker, delivery_timeout_ms=400, retry_backoff_ms=20
            ) as producer:
                handle = producer.send_nowait(topic, b"a")
                with pytest.raises(KafkaError, match=r"producer id.*COORDINATOR_NOT_AVAILABLE"):
                    await producer.send(topic, b"b")
                with pytest.raises(KafkaError, match="delivery_timeout_ms"):
                    await handle.wait()
        assert await target.records_in(topic) == 0


async def test_an_unreachable_broker_fails_the_records_after_delivery_timeout() -> None:
    """Nothing listens at the address: neither metadata nor a producer id ever comes;
    the records fail in time, and leaving the block does not hang."""
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
    # Long backoffs: nothing but the records' own deadlines wakes the sender.
    with trio.fail_after(3):
        async with open_producer(
            f"127.0.0.1:{port}",
            delivery_timeout_ms=300,
            max_block_ms=300,
            retry_backoff_ms=5000,
            retry_backoff_max_ms=5000,
            batch_bytes=200,
        ) as producer:
            # Several batches of one partition: they all fail, not just the first.
            queued = [producer.send_nowait("nowhere", b"x" * 100, partition=0) for _ in range(9)]
            with pytest.raises(KafkaError, match=r"delivery_timeout_ms.*no producer id"):
                await producer.send("nowhere", b"a", partition=0)
            for handle in queued:
                with pytest.raises(KafkaError, match=r"delivery_timeout_ms.*no producer id"):
                    await handle.wait()
            with pytest.raises(KafkaError, match="max_block_ms"):
                await producer.send("nowhere", b"b")
            handle = producer.send_nowait("nowhere", b"c")
        with pytest.raises(KafkaError, match="delivery_timeout_ms"):
            handle.result()


async def test_flush_waits_for_records_queued_before_it_not_after(tmp_path: Path) -> None:
    """Another task queues records without pause: flush() still returns once the
    records queued before it have their outcome (Kafka's contract)."""
    async with embedded(tmp_path) as broker:
        target = EmbeddedTarget(broker)
        topic, fresh = await new_topic(target, 3), topic_name()
        async with open_producer(broker, linger_ms=50) as producer:
            before = [producer.send_nowait(topic, b"before-%d" % i) for i in range(50)]
            # Queued before its topic is known: flush waits for these too.
            before += [producer.send_nowait(fresh, b"fresh-%d" % i) for i in range(5)]

            async def steady() -> None:
                i = 0
                while True:
                    with contextlib.suppress(trio.WouldBlock):
                        producer.send_nowait(topic, b"during-%d" % i)
                    i += 1
                    await trio.lowlevel.checkpoint()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(steady)
                await trio.sleep(0.01)
                with trio.fail_after(5):
                    await producer.flush()
                assert all(handle.done() for handle in before)
                nursery.cancel_scope.cancel()
        assert all(handle.result().offset >= 0 for handle in before)


async def test_freed_room_wakes_a_waiting_send_and_is_never_overshot(tmp_path: Path) -> None:
    """Room freed by records that fail before they are placed, and by the producer's
    close, wakes send() calls waiting for it; concurrent send() calls that waited for
    metadata never hold more than buffer_bytes_max between them."""
    async with embedded(tmp_path) as broker:
        target = EmbeddedTarget(broker)
        topic = await new_topic(target, 1)
        value = b"v" * 1000
        # Records for a topic no broker can have fail when its metadata comes.
        async with open_producer(broker, buffer_bytes_max=3000) as producer:
            doomed = [producer.send_nowait("no such topic!", value) for _ in range(2)]
            with trio.fail_after(5):
                assert (await producer.send(topic, value)).offset == 0
                assert (await producer.send(topic, value)).offset == 1
            for handle in doomed:
                with pytest.raises(KafkaError) as invalid:
                    handle.result()
                assert invalid.value.kafka_error_code == ErrorCode.invalid_topic_exception
        # Ten send() calls at once for a topic not known yet.
        fresh = topic_name()
        most = 0
        async with open_producer(broker, buffer_bytes_max=3000, linger_ms=100) as producer:
            results: list[RecordMetadata] = []

            async def send_one() -> None:
                results.append(await producer.send(fresh, value))

            async with trio.open_nursery() as nursery:
                for _ in range(10):
                    nursery.start_soon(send_one)
                while len(results) < 10:
                    most = max(most, producer.statistics()["buffered_bytes"])
                    await trio.sleep(0.001)
        assert 0 < most <= 3000
        assert sorted(r.offset for r in results) == list(range(10))
        # A send() waiting for room, in a task the producer's block does not own,
        # hears of the close.
        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                with trio.CancelScope() as scope:
                    async with open_producer(
                        broker, buffer_bytes_max=3000, linger_ms=60_000
                    ) as producer:
                        for _ in range(2):
                            producer.send_nowait(topic, value)
                        waiting: list[BaseException] = []

                        async def wait_for_room() -> None:
                            try:
                                await producer.send(topic, value)
                            except trio.ClosedResourceError as error:
                                waiting.append(error)

                        nursery.start_soon(wait_for_room)
                        await trio.testing.wait_all_tasks_blocked()
                        scope.cancel()
        assert len(waiting) == 1


async def test_wrong_argument_types_are_refused_where_they_are_passed(tmp_path: Path) -> None:
    """A value of the wrong type raises InvalidArgumentError in the caller; it never
    reaches the sender, where it would fail the producer and every queued record."""
    async with embedded(tmp_path) as broker:
        await _wrong_argument_types(EmbeddedTarget(broker))


async def _wrong_argument_types(target: Target) -> None:
    topic = await new_topic(target, 1)
    wrong: list[tuple[dict[str, Any], str]] = [
        ({"value": "text"}, "value must be bytes"),
        ({"key": "text"}, "key must be bytes"),
        ({"headers": [("h", "text")]}, "header 'h' must be bytes"),
        ({"headers": [(b"h", b"v")]}, "header name must be a str"),
        ({"headers": [("\ud800", b"v")]}, "not valid Unicode"),
        ({"headers": ["h"]}, r"\(name, value\) pairs"),
        ({"headers": 5}, r"\(name, value\) pairs"),
        ({"timestamp_ms": 1.5}, "timestamp_ms must be an int"),
        ({"timestamp_ms": True}, "timestamp_ms must be an int"),
        ({"timestamp_ms": -1}, "timestamp_ms must be milliseconds"),
        ({"timestamp_ms": 1 << 63}, "timestamp_ms must be milliseconds"),
        ({"partition": "0"}, "partition must be an int"),
        ({"partition": -1}, "partition must be an int"),
    ]
    async with open_producer(target.connect, linger_ms=20) as producer:
        queued = [producer.send_nowait(topic, b"queued-%d" % i) for i in range(5)]
        for arguments, message in wrong:
            with pytest.raises(InvalidArgumentError, match=message):
                producer.send_nowait(topic, **{"value": b"v", **arguments})
            with pytest.raises(InvalidArgumentError, match=message):
                await producer.send(topic, **{"value": b"v", **arguments})
        with pytest.raises(InvalidArgumentError, match="a non-empty str"):
            producer.send_nowait(b"topic", b"v")  # type: ignore[arg-type]
        # Buffers are taken as bytes, copied: reusing one does not change the record.
        buffer = bytearray(b"buffer")
        handle = producer.send_nowait(topic, buffer, key=memoryview(b"key"))
        buffer[:] = b"reused"
        last = await producer.send(topic, b"last", headers=[("h", bytearray(b"x"))])
    assert [h.result().offset for h in queued] == [0, 1, 2, 3, 4]
    assert (handle.result().offset, last.offset) == (5, 6)
    read = await target.read_all(topic, 7)
    assert [(m.key, m.value) for m in read[5:]] == [(b"key", b"buffer"), (None, b"last")]


async def test_partitions_added_later_are_used_once_the_metadata_is_old(
    tmp_path: Path,
) -> None:
    """Metadata older than metadata_max_age_ms is refreshed in the background: a topic
    grown by CreatePartitions gets records in its new partitions."""
    async with embedded(tmp_path) as broker:
        target = EmbeddedTarget(broker)
        topic = await new_topic(target, 1)
        key = next(b"k%d" % i for i in range(100) if partition_for_key(b"k%d" % i, 3) == 2)
        async with open_producer(broker, metadata_max_age_ms=100, linger_ms=0) as producer:
            assert (await producer.send(topic, b"v", key=key)).partition == 0
            await broker.create_partitions(topic, 3)
            # Until the background refresh has seen the new partitions.
            for _ in range(250):
                if (await producer.send(topic, b"v", key=key)).partition == 2:
                    break
                await trio.sleep(0.02)
            else:
                raise AssertionError("the new partitions were never used")


async def test_a_slow_metadata_refresh_does_not_hold_up_sends(tmp_path: Path) -> None:
    slow = [False]

    def slow_refreshes(handler: trioring.Handler) -> trioring.Handler:
        async def wrapped(ctx: HandlerContext, request: object) -> object:
            if isinstance(request, MetadataRequest) and slow[0]:
                await trio.sleep(2)
            return await handler(ctx, request)

        return wrapped

    async with embedded(tmp_path, middleware=[slow_refreshes]) as broker:
        target = EmbeddedTarget(broker)
        topic = await new_topic(target, 1)
        async with open_producer(broker, metadata_max_age_ms=50, linger_ms=0) as producer:
            await producer.send(topic, b"first")
            slow[0] = True
            await trio.sleep(0.2)  # a refresh is under way (and waits)
            with trio.fail_after(1):
                for i in range(20):
                    await producer.send(topic, b"%d" % i)


async def test_a_deleted_topic_is_not_created_again_by_a_background_refresh(
    tmp_path: Path,
) -> None:
    async with embedded(tmp_path) as broker:
        target = EmbeddedTarget(broker)
        topic = await new_topic(target, 1)
        async with open_producer(broker, metadata_max_age_ms=50) as producer:
            await producer.send(topic, b"v")
            await broker.delete_topic(topic)
            await trio.sleep(0.5)  # several refreshes
            assert topic not in broker.topics()

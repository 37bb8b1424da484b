"""Tests of the fetch handler: several partitions, byte budgets, errors and long-polling."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing

import trioring
from trioring import LogConfig, Record
from trioring.errors import (
    InvalidArgumentError,
    OffsetOutOfRangeError,
    UnknownTopicOrPartitionError,
)
from trioring.handlers import fetch
from trioring.handlers.messages import FetchedPartition, FetchPartition, FetchRequest
from trioring.protocol.records import build_batch, iterate_batches

PARTITIONS = 3
BIG = 1 << 20


@pytest.fixture
async def broker(tmp_path) -> AsyncIterator[trioring.Broker]:
    async with trioring.open_broker(tmp_path) as opened:
        await opened.create_topic("t", partitions=PARTITIONS)
        yield opened


def make_batch(tag: bytes, size: int = 100) -> bytes:
    return build_batch([Record(key=tag, value=tag * size)])


BATCH_BYTES = len(make_batch(b"x"))


async def fill(broker: trioring.Broker, partition: int, count: int) -> None:
    for i in range(count):
        await broker.produce_batch("t", partition, make_batch(b"%d" % i), acks=1)


def request(
    offsets: dict[int, int] | None = None,
    *,
    partition_max_bytes: int = BIG,
    max_bytes: int = BIG,
    max_wait_ms: int = 0,
    min_bytes: int = 1,
    topic: str = "t",
) -> FetchRequest:
    offsets = {p: 0 for p in range(PARTITIONS)} if offsets is None else offsets
    return FetchRequest(
        [FetchPartition(topic, p, offset, partition_max_bytes) for p, offset in offsets.items()],
        max_wait_ms=max_wait_ms,
        min_bytes=min_bytes,
        max_bytes=max_bytes,
    )


def batch_count(fetched: FetchedPartition) -> int:
    return sum(1 for _ in iterate_batches(fetched.records))


async def run(broker: trioring.Broker, fetch_request: FetchRequest) -> list[FetchedPartition]:
    response = await fetch(broker.handler_context(), fetch_request)
    return list(response.partitions)


async def test_batch_size_is_what_the_log_stores(broker):
    await fill(broker, 0, 1)
    assert broker.statistics()["t-0"]["size_bytes"] == BATCH_BYTES


async def test_fetches_every_partition_in_request_order(broker):
    for partition in range(PARTITIONS):
        await fill(broker, partition, partition + 1)
    results = await run(broker, request({2: 0, 0: 0, 1: 1}))
    assert [(r.topic, r.partition) for r in results] == [("t", 2), ("t", 0), ("t", 1)]
    assert [batch_count(r) for r in results] == [3, 1, 1]
    assert [r.high_watermark for r in results] == [3, 1, 2]
    assert all(r.error is None and r.log_start_offset == 0 for r in results)


async def test_request_max_bytes_is_shared_across_partitions(broker):
    for partition in range(PARTITIONS):
        await fill(broker, partition, 2)
    # Exactly two batches fit: both from the first partition, none from the others.
    results = await run(broker, request(max_bytes=2 * BATCH_BYTES))
    assert [batch_count(r) for r in results] == [2, 0, 0]
    assert [r.high_watermark for r in results] == [2, 2, 2]
    # Room for three: the budget left after partition 0 covers one batch of partition 1.
    results = await run(broker, request(max_bytes=3 * BATCH_BYTES))
    assert [batch_count(r) for r in results] == [2, 1, 0]
    assert sum(len(r.records) for r in results) == 3 * BATCH_BYTES


async def test_request_max_bytes_is_not_exceeded_after_the_first_partition(broker):
    for partition in range(PARTITIONS):
        await fill(broker, partition, 2)
    limit = 2 * BATCH_BYTES + 10
    results = await run(broker, request(max_bytes=limit))
    assert batch_count(results[0]) == 2
    assert sum(len(r.records) for r in results) <= limit


async def test_partition_max_bytes_is_not_exceeded_after_the_first_partition(broker):
    await fill(broker, 0, 1)
    await fill(broker, 1, 1)
    fetch_request = FetchRequest(
        [FetchPartition("t", 0, 0, BIG), FetchPartition("t", 1, 0, BATCH_BYTES // 2)]
    )
    results = await run(broker, fetch_request)
    assert batch_count(results[0]) == 1
    assert len(results[1].records) <= BATCH_BYTES // 2


async def test_first_batch_is_returned_even_if_larger_than_the_limits(broker):
    await fill(broker, 0, 2)
    await fill(broker, 1, 2)
    for limits in ({"max_bytes": 10}, {"max_bytes": 0}):
        results = await run(broker, request(**limits))
        assert [batch_count(r) for r in results] == [1, 0, 0], limits
        assert len(results[0].records) == BATCH_BYTES
    results = await run(broker, request({0: 0, 2: 0}, partition_max_bytes=10))
    assert [batch_count(r) for r in results] == [1, 0]


async def test_first_non_empty_partition_gets_the_oversized_batch(broker):
    await fill(broker, 0, 1)
    await fill(broker, 1, 2)
    # Partition 0 is read at its high watermark: nothing there, so partition 1 is first.
    for max_bytes in (0, 10):
        results = await run(broker, request({0: 1, 1: 0, 2: 0}, max_bytes=max_bytes))
        assert [batch_count(r) for r in results] == [0, 1, 0], max_bytes
        assert results[0].error is None


async def test_partition_max_bytes_limits_each_partition(broker):
    await fill(broker, 0, 3)
    await fill(broker, 1, 3)
    results = await run(broker, request(partition_max_bytes=2 * BATCH_BYTES + 5))
    assert [batch_count(r) for r in results] == [2, 2, 0]


async def test_errors_are_per_partition(broker):
    await fill(broker, 0, 2)
    await fill(broker, 1, 1)
    fetch_request = FetchRequest(
        [
            FetchPartition("t", 0, 0, BIG),
            FetchPartition("t", 7, 0, BIG),
            FetchPartition("missing", 0, 0, BIG),
            FetchPartition("t", 1, 5, BIG),
            FetchPartition("t", 1, 0, BIG),
        ],
        max_wait_ms=60_000,
    )
    # An error completes the fetch at once, as in Kafka.
    with trio.fail_after(5):
        results = await run(broker, fetch_request)
    assert [r.error is None for r in results] == [True, False, False, False, True]
    assert batch_count(results[0]) == 2
    assert batch_count(results[4]) == 1
    assert isinstance(results[1].error, UnknownTopicOrPartitionError)
    assert isinstance(results[2].error, UnknownTopicOrPartitionError)
    assert "missing" in str(results[2].error)
    out_of_range = results[3].error
    assert isinstance(out_of_range, OffsetOutOfRangeError)
    assert out_of_range.high_watermark == 1
    for failed in results[1:4]:
        assert failed.records == b""
        assert (failed.high_watermark, failed.log_start_offset) == (-1, -1)


async def test_invalid_limits_are_rejected_whole(broker):
    context = broker.handler_context()
    for bad in [request(max_wait_ms=-1), request(min_bytes=-1), request(max_bytes=-1)]:
        with pytest.raises(InvalidArgumentError):
            await fetch(context, bad)


async def test_a_bad_partition_is_that_partitions_error_only(broker):
    """As Kafka: a negative offset is OFFSET_OUT_OF_RANGE and a negative partition
    limit INVALID_REQUEST for that partition; the others are served.

    (Before, either made the handler raise, and the server let the exception
    stop the whole process: kafka-python with max_partition_fetch_bytes=-1
    was enough.)
    """
    await fill(broker, 0, 2)
    await fill(broker, 1, 1)
    results = await run(
        broker,
        FetchRequest(
            [
                FetchPartition("t", 0, -1, BIG),
                FetchPartition("t", 1, 0, -1),
                FetchPartition("t", 0, 0, BIG),
            ],
            max_bytes=BIG,
        ),
    )
    negative_offset, negative_limit, good = results
    assert isinstance(negative_offset.error, OffsetOutOfRangeError)
    assert negative_offset.error.high_watermark == 2
    assert negative_offset.error.kafka_error_code == 1
    assert isinstance(negative_limit.error, InvalidArgumentError)
    assert negative_limit.error.kafka_error_code == 42
    assert good.error is None and batch_count(good) == 2
    # An unknown partition is still UNKNOWN_TOPIC_OR_PARTITION, offset or not.
    (unknown,) = await run(broker, FetchRequest([FetchPartition("t", 9, -1, BIG)]))
    assert isinstance(unknown.error, UnknownTopicOrPartitionError)


async def test_a_stopping_server_ends_long_polls_at_once(broker, autojump_clock):
    stopping = trio.Event()
    context = broker.handler_context(stopping=stopping)
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(fetch, context, request(max_wait_ms=60_000))
        await trio.sleep(1)
        stopping.set()
    assert trio.current_time() - start == pytest.approx(1.0)
    # Already stopping: answered without waiting at all.
    response = await fetch(context, request(max_wait_ms=60_000))
    assert trio.current_time() - start == pytest.approx(1.0)
    assert all(p.records == b"" and p.error is None for p in response.partitions)


async def test_empty_request_waits_and_returns_nothing(broker, autojump_clock):
    start = trio.current_time()
    results = await run(broker, FetchRequest([], max_wait_ms=5_000))
    assert results == []
    assert trio.current_time() - start == pytest.approx(5.0)


async def test_no_data_and_no_wait_returns_at_once(broker, autojump_clock):
    start = trio.current_time()
    results = await run(broker, request(max_wait_ms=0))
    assert trio.current_time() == start
    assert all(r.records == b"" and r.error is None for r in results)


async def test_waits_across_partitions_and_wakes_on_any(broker):
    await fill(broker, 1, 1)
    outcome: list[list[FetchedPartition]] = []

    async def fetcher() -> None:
        outcome.append(await run(broker, request({0: 0, 1: 1, 2: 0}, max_wait_ms=60_000)))

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(fetcher)
            await trio.testing.wait_all_tasks_blocked()
            assert outcome == []
            await broker.produce_batch("t", 2, make_batch(b"late"), acks=1)
    results = outcome[0]
    assert [batch_count(r) for r in results] == [0, 0, 1]
    assert [r.high_watermark for r in results] == [0, 1, 1]


async def test_min_bytes_counts_all_partitions(broker):
    await fill(broker, 0, 1)
    outcome: list[list[FetchedPartition]] = []

    async def fetcher() -> None:
        fetch_request = request(max_wait_ms=60_000, min_bytes=2 * BATCH_BYTES)
        outcome.append(await run(broker, fetch_request))

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(fetcher)
            await trio.testing.wait_all_tasks_blocked()
            assert outcome == []
            await broker.produce_batch("t", 1, make_batch(b"more"), acks=1)
    assert [batch_count(r) for r in outcome[0]] == [1, 1, 0]


async def test_min_bytes_not_reached_returns_at_max_wait(broker):
    """Real time (autojump would jump while reads run in threads)."""
    await fill(broker, 0, 1)
    start = trio.current_time()
    results = await run(broker, request(max_wait_ms=200, min_bytes=10 * BATCH_BYTES))
    assert 0.19 <= trio.current_time() - start < 2.0
    assert [batch_count(r) for r in results] == [1, 0, 0]


async def test_min_bytes_available_across_a_segment_boundary_returns_at_once(tmp_path):
    config = trioring.BrokerConfig(data_dir=tmp_path, log=LogConfig(segment_bytes=1024))
    async with trioring.open_broker(config) as broker:
        await broker.create_topic("t")
        for i in range(20):
            await broker.produce_batch("t", 0, make_batch(b"%d" % i), acks=1)
        assert broker.statistics()["t-0"]["segments"] > 2
        start = trio.current_time()
        fetched = await run(broker, request({0: 0}, max_wait_ms=1_000, min_bytes=3 * 1024))
        assert trio.current_time() - start < 0.5
        assert fetched[0].records


async def test_long_poll_sees_an_append_that_races_the_first_read(tmp_path):
    """Regression: a read at the high watermark that an append overtook reported the
    new watermark with no data, and the long poll then waited past that data."""
    async with trioring.open_broker(tmp_path) as broker:
        for round_number in range(50):
            topic = f"race-{round_number}"
            await broker.create_topic(topic)
            await broker.produce(topic, 0, [Record(value=b"fire")], acks=0)
            with trio.fail_after(5):
                fetched = await broker.fetch(topic, 0, 0, max_wait=10)
            assert [r.value for r in fetched.records] == [b"fire"]


async def test_a_partition_cut_by_its_byte_limit_does_not_make_the_wait_read_again(
    broker, monkeypatch
):
    """min_bytes out of reach because partition_max_bytes cuts the read: the fetch waits
    out max_wait (as Kafka's does), reading again only when new data arrives, instead
    of reading the same bytes again and again."""
    await fill(broker, 0, 30)
    log = broker.shard.log("t", 0)
    reads = 0
    read = log.read

    async def counted_read(*args, **kwargs):
        nonlocal reads
        reads += 1
        return await read(*args, **kwargs)

    monkeypatch.setattr(log, "read", counted_read)
    fetch_request = request(
        {0: 0}, partition_max_bytes=2 * BATCH_BYTES, min_bytes=10_000, max_wait_ms=300
    )
    start = trio.current_time()
    (result,) = await run(broker, fetch_request)
    assert trio.current_time() - start >= 0.3
    assert batch_count(result) == 2
    # The first read, one more that shows the budget is the limit, and the last.
    assert reads <= 3, reads

"""Tests of the embedded broker: trioring.open_broker and trioring.Broker."""

from __future__ import annotations

import functools
import os
from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing

import trioring
from trioring import (
    BrokerConfig,
    InvalidArgumentError,
    InvalidPartitionsError,
    InvalidRequiredAcksError,
    InvalidTopicError,
    LogConfig,
    OffsetOutOfRangeError,
    Record,
    TopicExistsError,
    TrioringError,
    UnknownTopicOrPartitionError,
)
from trioring._exception_groups import leaf_exceptions
from trioring.handlers import HandlerContext
from trioring.handlers import fetch as fetch_handler
from trioring.handlers.messages import (
    CreateTopicRequest,
    FetchPartition,
    FetchRequest,
    ListOffsetsRequest,
    OffsetCommitRequest,
    OffsetFetchRequest,
    ProduceRequest,
)
from trioring.protocol.records import build_batch

STATISTICS_KEYS = {
    "log_start_offset",
    "durable_offset",
    "log_end_offset",
    "high_watermark",
    "segments",
    "size_bytes",
}


class FakeClock:
    """Wall clock in seconds that only moves when told to."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def broker(tmp_path) -> AsyncIterator[trioring.Broker]:
    async with trioring.open_broker(tmp_path / "data") as opened:
        yield opened


def values(result: trioring.FetchResult) -> list[bytes | None]:
    return [record.value for record in result.records]


def tasks_living() -> int:
    return trio.lowlevel.current_statistics().tasks_living


# --- the README flow and round trips --------------------------------------------------


async def test_readme_flow(tmp_path):
    async with trioring.open_broker(tmp_path) as broker:
        info = await broker.create_topic("events", partitions=3)
        assert info.name == "events"
        assert info.partitions == 3
        assert broker.topics() == {"events": info}

        result = await broker.produce("events", 0, [Record(key=b"k", value=b"v")], acks="all")
        assert result == trioring.ProduceResult(0, 0, 0)

        fetched = await broker.fetch("events", 0, offset=0, max_bytes=1 << 20, max_wait=0.5)
        assert [(r.key, r.value, r.offset) for r in fetched.records] == [(b"k", b"v", 0)]
        assert fetched.high_watermark == 1
        assert fetched.log_start_offset == 0
        assert fetched.next_offset == 1

        await broker.commit_offsets("group-a", {("events", 0): 42})
        assert await broker.committed_offsets("group-a") == {("events", 0): 42}
        assert await broker.committed_offsets("group-b") == {}
        # The other partitions were not touched.
        for partition in (1, 2):
            assert await broker.list_offset("events", partition, "latest") == 0


async def test_open_broker_accepts_str_path_and_config(tmp_path):
    async with trioring.open_broker(str(tmp_path / "a")) as broker:
        assert broker.config.data_dir == str(tmp_path / "a")
        assert broker.io_backend in ("fallback", "uring")
    config = BrokerConfig(data_dir=tmp_path / "b", default_partitions=4)
    async with trioring.open_broker(config) as broker:
        assert broker.config is config
        info = await broker.create_topic("defaulted")
        assert info.partitions == 4


@pytest.mark.parametrize("compression", [None, "gzip", "snappy", "lz4", "zstd"])
async def test_records_round_trip(broker, compression):
    await broker.create_topic("t")
    records = [
        Record(key=b"key", value=b"value", timestamp_ms=1_000),
        Record(key=None, value=b"no key", timestamp_ms=1_001),
        Record(key=b"tombstone", value=None, timestamp_ms=999),
        Record(key=None, value=None, timestamp_ms=5_000),
        Record(
            key=b"h",
            value=b"x" * 10_000,
            headers=[("trace", b"abc"), ("empty", b""), ("null", None), ("trace", b"dup")],
            timestamp_ms=2_000,
        ),
        Record(key=b"\x00\xff" * 50, value=bytes(range(256)), timestamp_ms=0),
    ]
    result = await broker.produce("t", 0, records, acks=1, compression=compression)
    assert (result.base_offset, result.last_offset) == (0, len(records) - 1)
    fetched = await broker.fetch("t", 0, 0)
    assert fetched.records == [
        Record(r.key, r.value, r.headers, r.timestamp_ms, offset=i) for i, r in enumerate(records)
    ]
    assert fetched.high_watermark == len(records)


async def test_records_without_timestamp_get_the_configured_clock(tmp_path):
    clock = FakeClock(1_234_567.891)
    async with trioring.open_broker(BrokerConfig(data_dir=tmp_path, clock=clock)) as broker:
        await broker.create_topic("t")
        await broker.produce("t", 0, [Record(value=b"a"), Record(value=b"b", timestamp_ms=7)])
        fetched = await broker.fetch("t", 0, 0)
    assert [r.timestamp_ms for r in fetched.records] == [1_234_567_891, 7]


async def test_offsets_are_contiguous_and_fetch_mid_batch(broker):
    await broker.create_topic("t")
    first = await broker.produce("t", 0, [Record(value=b"%d" % i) for i in range(5)])
    second = await broker.produce("t", 0, [Record(value=b"5")])
    assert (first.base_offset, first.last_offset) == (0, 4)
    assert (second.base_offset, second.last_offset) == (5, 5)
    # An offset inside a batch: the batch is read whole, earlier records dropped.
    fetched = await broker.fetch("t", 0, 2)
    assert values(fetched) == [b"2", b"3", b"4", b"5"]
    assert [r.offset for r in fetched.records] == [2, 3, 4, 5]
    assert fetched.next_offset == 6
    at_end = await broker.fetch("t", 0, 6)
    assert at_end.records == []
    assert at_end.next_offset is None
    assert at_end.high_watermark == 6


async def test_small_max_bytes_still_returns_one_batch(broker):
    await broker.create_topic("t")
    for i in range(3):
        await broker.produce("t", 0, [Record(value=bytes([i]) * 1000)])
    fetched = await broker.fetch("t", 0, 0, max_bytes=1)
    assert values(fetched) == [b"\x00" * 1000]
    fetched = await broker.fetch("t", 0, 0)
    assert len(fetched.records) == 3


async def test_partitions_are_independent(broker):
    await broker.create_topic("t", partitions=3)
    for partition in range(3):
        for i in range(partition + 1):
            record = Record(value=b"p%d-%d" % (partition, i))
            result = await broker.produce("t", partition, [record])
            assert result.base_offset == i
    for partition in range(3):
        fetched = await broker.fetch("t", partition, 0)
        assert values(fetched) == [b"p%d-%d" % (partition, i) for i in range(partition + 1)]


async def test_concurrent_producers_get_distinct_contiguous_offsets(broker):
    await broker.create_topic("t")
    offsets: list[int] = []

    async def producer(name: int) -> None:
        for i in range(10):
            acks = "all" if i % 2 else 1
            result = await broker.produce("t", 0, [Record(value=b"%d-%d" % (name, i))], acks=acks)
            offsets.append(result.base_offset)

    async with trio.open_nursery() as nursery:
        for name in range(20):
            nursery.start_soon(producer, name)
    assert sorted(offsets) == list(range(200))
    fetched = await broker.fetch("t", 0, 0)
    assert [r.offset for r in fetched.records] == list(range(200))
    # Each producer's records appear in the order it sent them.
    by_producer: dict[bytes, list[int]] = {}
    for record in fetched.records:
        assert record.value is not None
        name, i = record.value.split(b"-")
        by_producer.setdefault(name, []).append(int(i))
    assert all(sequence == list(range(10)) for sequence in by_producer.values())
    assert len(by_producer) == 20


# --- persistence ------------------------------------------------------------------------


async def test_topics_records_and_offsets_survive_reopen(tmp_path):
    custom = LogConfig(segment_bytes=4096, retention_ms=None, retention_bytes=1 << 20)
    async with trioring.open_broker(tmp_path) as broker:
        events = await broker.create_topic("events", partitions=3)
        other = await broker.create_topic("other.topic_1", partitions=1, config=custom)
        for i in range(4):
            await broker.produce("events", i % 3, [Record(key=b"%d" % i, value=b"v%d" % i)])
        await broker.produce("other.topic_1", 0, [Record(value=b"x")] * 3, acks=1)
        await broker.commit_offsets("g1", {("events", 0): 2, ("events", 2): 1})
        await broker.commit_offsets("g2", {("other.topic_1", 0): 3})
        await broker.commit_offsets("g1", {("events", 0): 5})
        statistics = broker.statistics()

    async with trioring.open_broker(tmp_path) as broker:
        assert broker.topics() == {"events": events, "other.topic_1": other}
        assert broker.topics()["other.topic_1"].config == custom
        assert await broker.committed_offsets("g1") == {("events", 0): 5, ("events", 2): 1}
        assert await broker.committed_offsets("g2") == {("other.topic_1", 0): 3}
        reopened = broker.statistics()
        assert {k: v["log_end_offset"] for k, v in reopened.items()} == {
            k: v["log_end_offset"] for k, v in statistics.items()
        }
        assert values(await broker.fetch("events", 0, 0)) == [b"v0", b"v3"]
        assert values(await broker.fetch("events", 1, 0)) == [b"v1"]
        assert values(await broker.fetch("other.topic_1", 0, 0)) == [b"x"] * 3
        # Offsets continue where they were.
        result = await broker.produce("events", 0, [Record(value=b"after")])
        assert result.base_offset == 2
        result = await broker.produce("other.topic_1", 0, [Record(value=b"after")])
        assert result.base_offset == 3
        with pytest.raises(TopicExistsError):
            await broker.create_topic("events")

    async with trioring.open_broker(tmp_path) as broker:
        assert values(await broker.fetch("events", 0, 0)) == [b"v0", b"v3", b"after"]


async def test_empty_broker_reopens_empty(tmp_path):
    async with trioring.open_broker(tmp_path) as broker:
        assert broker.topics() == {}
        assert broker.statistics() == {}
    async with trioring.open_broker(tmp_path) as broker:
        assert broker.topics() == {}


# --- errors ---------------------------------------------------------------------------


async def test_unknown_topic_errors_name_the_topic(broker):
    await broker.create_topic("known", partitions=2)
    calls = [
        lambda: broker.produce("missing-topic", 0, [Record(value=b"x")]),
        lambda: broker.produce("missing-topic", 0, [Record(value=b"x")], acks=1),
        lambda: broker.fetch("missing-topic", 0, 0),
        lambda: broker.list_offset("missing-topic", 0, "latest"),
        lambda: broker.commit_offsets("g", {("missing-topic", 0): 1}),
    ]
    for call in calls:
        with pytest.raises(UnknownTopicOrPartitionError, match="missing-topic"):
            await call()


async def test_unknown_partition(broker):
    await broker.create_topic("known", partitions=2)
    for partition in (2, -1, 100):
        with pytest.raises(UnknownTopicOrPartitionError, match="known") as raised:
            await broker.produce("known", partition, [Record(value=b"x")])
        assert str(partition) in str(raised.value)
        with pytest.raises(UnknownTopicOrPartitionError):
            await broker.fetch("known", partition, 0)
        with pytest.raises(UnknownTopicOrPartitionError):
            await broker.list_offset("known", partition, "earliest")
        with pytest.raises(UnknownTopicOrPartitionError):
            await broker.commit_offsets("g", {("known", partition): 0})
    assert await broker.committed_offsets("g") == {}


async def test_create_existing_topic(broker):
    first = await broker.create_topic("t", partitions=2)
    with pytest.raises(TopicExistsError, match="'t'"):
        await broker.create_topic("t", partitions=5)
    assert broker.topics() == {"t": first}


async def test_concurrent_create_of_the_same_topic(broker):
    outcomes: list[object] = []

    async def create() -> None:
        try:
            outcomes.append(await broker.create_topic("race", partitions=2))
        except TopicExistsError as error:
            outcomes.append(error)

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(create)
    created = [o for o in outcomes if isinstance(o, trioring.TopicInfo)]
    assert len(created) == 1
    assert sum(isinstance(o, TopicExistsError) for o in outcomes) == 4
    assert broker.topics() == {"race": created[0]}


@pytest.mark.parametrize(
    "name", ["", "a/b", "..", ".", "x" * 250, "__consumer_offsets", "__cluster_metadata", "a b"]
)
async def test_invalid_topic_names(broker, name):
    with pytest.raises(InvalidTopicError):
        await broker.create_topic(name)
    assert broker.topics() == {}


async def test_longest_topic_name_is_allowed(broker):
    await broker.create_topic("x" * 249)
    await broker.produce("x" * 249, 0, [Record(value=b"v")])


@pytest.mark.parametrize("partitions", [0, -1, 10_001])
async def test_invalid_partition_counts(broker, partitions):
    with pytest.raises(InvalidPartitionsError):
        await broker.create_topic("t", partitions=partitions)
    assert broker.topics() == {}


async def test_fetch_offset_out_of_range(broker):
    await broker.create_topic("t")
    await broker.produce("t", 0, [Record(value=b"a"), Record(value=b"b")])
    with pytest.raises(OffsetOutOfRangeError) as raised:
        await broker.fetch("t", 0, 3)
    assert raised.value.high_watermark == 2
    assert raised.value.log_start_offset == 0
    # Out of range is reported at once, not after max_wait.
    with trio.fail_after(5), pytest.raises(OffsetOutOfRangeError):
        await broker.fetch("t", 0, 100, max_wait=30)
    # A negative offset is out of range too, as in Kafka.
    with pytest.raises(OffsetOutOfRangeError):
        await broker.fetch("t", 0, -1)
    with pytest.raises(InvalidArgumentError):
        await broker.fetch("t", 0, 0, max_wait=-1)


@pytest.mark.parametrize("acks", ["2", 5, 2, -2, "one", None])
async def test_invalid_acks(broker, acks):
    await broker.create_topic("t")
    with pytest.raises(InvalidRequiredAcksError):
        await broker.produce("t", 0, [Record(value=b"x")], acks=acks)
    assert broker.statistics()["t-0"]["log_end_offset"] == 0


async def test_invalid_produce_arguments(broker):
    await broker.create_topic("t")
    with pytest.raises(InvalidArgumentError):
        await broker.produce("t", 0, [])
    with pytest.raises(InvalidArgumentError):
        await broker.produce("t", 0, [b"not a record"])  # type: ignore[list-item]
    with pytest.raises(trioring.UnsupportedCompressionError):
        await broker.produce("t", 0, [Record(value=b"x")], compression="brotli")
    assert broker.statistics()["t-0"]["log_end_offset"] == 0


async def test_invalid_group_ids(broker):
    await broker.create_topic("t")
    with pytest.raises(InvalidArgumentError):
        await broker.commit_offsets("", {("t", 0): 1})
    with pytest.raises(InvalidArgumentError):
        await broker.committed_offsets("")
    with pytest.raises(InvalidArgumentError):
        await broker.commit_offsets("g", {("t", 0): -1})
    assert await broker.committed_offsets("g") == {}


async def test_commit_reports_the_bad_partition_and_commits_the_rest(broker):
    await broker.create_topic("t", partitions=2)
    with pytest.raises(UnknownTopicOrPartitionError, match="nope"):
        await broker.commit_offsets("g", {("t", 0): 7, ("nope", 0): 1, ("t", 1): 8})
    assert await broker.committed_offsets("g") == {("t", 0): 7, ("t", 1): 8}


async def test_commit_offset_metadata_is_kept(broker):
    await broker.create_topic("t")
    committed = trioring.CommittedOffset(12, metadata="hello", leader_epoch=3)
    await broker.commit_offsets("g", {("t", 0): committed})
    assert await broker.committed_offsets("g") == {("t", 0): 12}
    assert broker.shard.offsets_if_open("g").committed("g") == {("t", 0): committed}


async def test_list_offset_rejects_bad_timestamps(broker):
    await broker.create_topic("t")
    for timestamp in (-1, -2, "first", 1.5):
        with pytest.raises(InvalidArgumentError):
            await broker.list_offset("t", 0, timestamp)  # type: ignore[arg-type]


def test_every_public_error_is_a_trioring_error():
    errors = [
        getattr(trioring, name)
        for name in trioring.__all__
        if name.endswith("Error") and isinstance(getattr(trioring, name), type)
    ]
    assert len(errors) >= 13
    for error in errors:
        assert issubclass(error, TrioringError), error
    assert issubclass(InvalidTopicError, InvalidArgumentError)
    assert issubclass(InvalidPartitionsError, InvalidArgumentError)
    assert issubclass(InvalidRequiredAcksError, InvalidArgumentError)
    assert issubclass(trioring.CorruptRecordError, trioring.ProtocolError)


async def test_closed_broker_raises_broker_closed(tmp_path):
    async with trioring.open_broker(tmp_path) as broker:
        await broker.create_topic("t")
    with pytest.raises(trioring.BrokerClosedError):
        await broker.produce("t", 0, [Record(value=b"x")], acks=1)
    with pytest.raises(trioring.BrokerClosedError):
        await broker.fetch("t", 0, 0)
    with pytest.raises(trioring.BrokerClosedError):
        await broker.create_topic("u")


async def test_acks_zero_produce_on_closed_broker_raises_broker_closed(tmp_path):
    async with trioring.open_broker(tmp_path) as broker:
        await broker.create_topic("t")
    with pytest.raises(trioring.BrokerClosedError):
        await broker.produce("t", 0, [Record(value=b"x")], acks=0)


async def test_small_offsets_log_compact_bytes_is_rejected_up_front_or_works(tmp_path):
    try:
        config = BrokerConfig(data_dir=tmp_path, offsets_log_compact_bytes=100)
    except InvalidArgumentError as error:
        assert "offsets_log_compact_bytes" in str(error)
        return
    async with trioring.open_broker(config) as broker:
        await broker.create_topic("t")
        await broker.commit_offsets("g", {("t", 0): 1})


# --- long-poll ------------------------------------------------------------------------


async def test_long_poll_wakes_on_produce(broker):
    """Real time: a waiting fetch returns soon after a produce, not at max_wait."""
    await broker.create_topic("t")

    async def produce_soon() -> None:
        await trio.sleep(0.05)
        await broker.produce("t", 0, [Record(value=b"wake")], acks=1)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(produce_soon)
        start = trio.current_time()
        fetched = await broker.fetch("t", 0, 0, max_wait=5)
        elapsed = trio.current_time() - start
    assert values(fetched) == [b"wake"]
    assert elapsed < 1.0


async def test_long_poll_times_out_empty(broker):
    """Real time: nothing arrives, so the fetch returns empty at max_wait."""
    await broker.create_topic("t")
    start = trio.current_time()
    fetched = await broker.fetch("t", 0, 0, max_wait=0.2)
    elapsed = trio.current_time() - start
    assert fetched.records == []
    assert fetched.high_watermark == 0
    assert 0.19 <= elapsed < 2.0


async def test_zero_max_wait_returns_at_once(broker):
    await broker.create_topic("t")
    with trio.fail_after(2):
        fetched = await broker.fetch("t", 0, 0, max_wait=0, min_bytes=1 << 20)
    assert fetched.records == []


async def test_long_poll_timeout_is_exact_in_virtual_time(broker, autojump_clock):
    """Autojump only advances the clock when every task is blocked, so a fetch that
    polled or spun could not return exactly at its deadline."""
    await broker.create_topic("t")
    start = trio.current_time()
    fetched = await broker.fetch("t", 0, 0, max_wait=1000)
    elapsed = trio.current_time() - start
    assert fetched.records == []
    assert 1000 <= elapsed < 1000.5


class _StepCounter(trio.abc.Instrument):
    """Count the scheduling steps of one task; cancel it if it looks like it spins."""

    def __init__(self, task: trio.lowlevel.Task, scope: trio.CancelScope, limit: int) -> None:
        self.task = task
        self.scope = scope
        self.limit = limit
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task is self.task:
            self.steps += 1
            if self.steps == self.limit:
                trio.lowlevel.current_trio_token().run_sync_soon(self.scope.cancel)


async def test_long_poll_does_not_poll(tmp_path, autojump_clock):
    """The waiting fetch task is scheduled a handful of times over 1000 virtual
    seconds: it sleeps on the high watermark instead of re-reading."""
    config = BrokerConfig(
        data_dir=tmp_path,
        flush_interval_ms=None,
        recovery_checkpoint_interval_ms=10**9,
        retention_check_interval_ms=10**9,
    )
    async with trioring.open_broker(config) as broker:
        await broker.create_topic("t", partitions=3)
        await broker.produce("t", 1, [Record(value=b"old")])
        request = FetchRequest(
            [FetchPartition("t", p, 1 if p == 1 else 0, 1 << 20) for p in range(3)],
            max_wait_ms=1_000_000,
        )
        with trio.CancelScope() as scope:
            counter = _StepCounter(trio.lowlevel.current_task(), scope, limit=10_000)
            trio.lowlevel.add_instrument(counter)
            try:
                start = trio.current_time()
                response = await fetch_handler(broker.handler_context(), request)
                elapsed = trio.current_time() - start
            finally:
                trio.lowlevel.remove_instrument(counter)
        assert not scope.cancelled_caught, "the fetch spun: it was scheduled 10000 times"
        assert [p.records for p in response.partitions] == [b"", b"", b""]
        assert 1000 <= elapsed < 1000.5
        assert counter.steps < 100, counter.steps


async def test_long_poll_wakes_in_virtual_time(broker, autojump_clock):
    await broker.create_topic("t")

    async def produce_later() -> None:
        await trio.sleep(30)
        await broker.produce("t", 0, [Record(value=b"late")], acks=1)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(produce_later)
        start = trio.current_time()
        fetched = await broker.fetch("t", 0, 0, max_wait=1000)
        elapsed = trio.current_time() - start
    assert values(fetched) == [b"late"]
    # Woke on the produce, long before max_wait. (Not exactly at 30: reads run in
    # threads, and autojump may advance the clock while one runs.)
    assert 30 <= elapsed < 500


async def test_min_bytes_waits_for_enough_data(broker):
    await broker.create_topic("t")
    one_batch = len(build_batch([Record(value=b"a" * 100)], now_ms=0))
    done = trio.Event()
    results: list[trioring.FetchResult] = []

    async def fetcher() -> None:
        results.append(
            await broker.fetch("t", 0, 0, max_wait=10, min_bytes=one_batch + one_batch // 2)
        )
        done.set()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(fetcher)
            await trio.testing.wait_all_tasks_blocked()
            await broker.produce("t", 0, [Record(value=b"a" * 100)], acks=1)
            await trio.sleep(0.05)
            assert not done.is_set(), "returned with fewer than min_bytes"
            await broker.produce("t", 0, [Record(value=b"b" * 100)], acks=1)
            await done.wait()
    assert values(results[0]) == [b"a" * 100, b"b" * 100]


async def test_min_bytes_not_reached_returns_what_there_is_at_max_wait(broker):
    await broker.create_topic("t")
    await broker.produce("t", 0, [Record(value=b"small")])
    start = trio.current_time()
    fetched = await broker.fetch("t", 0, 0, max_wait=0.1, min_bytes=1 << 20)
    assert 0.09 <= trio.current_time() - start < 2.0
    assert values(fetched) == [b"small"]


async def test_fetch_with_data_available_does_not_wait(broker):
    await broker.create_topic("t")
    await broker.produce("t", 0, [Record(value=b"ready")])
    with trio.fail_after(2):
        fetched = await broker.fetch("t", 0, 0, max_wait=60)
    assert values(fetched) == [b"ready"]


# --- cancellation ---------------------------------------------------------------------


async def test_cancelled_fetch_leaves_no_tasks(broker):
    await broker.create_topic("t")
    baseline = tasks_living()
    finished: list[object] = []

    async def fetcher() -> None:
        finished.append(await broker.fetch("t", 0, 0, max_wait=600))

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(fetcher)
            await trio.testing.wait_all_tasks_blocked()
            # The fetch task and its watcher are alive while it waits.
            assert tasks_living() >= baseline + 2
            nursery.cancel_scope.cancel()
    assert finished == []
    assert tasks_living() == baseline
    # The partition still works and a new long-poll still wakes.
    async with trio.open_nursery() as nursery:
        nursery.start_soon(functools.partial(broker.fetch, "t", 0, 0, max_wait=600))
        await trio.testing.wait_all_tasks_blocked()
        await broker.produce("t", 0, [Record(value=b"x")], acks=1)
    assert tasks_living() == baseline


async def test_cancelled_multi_partition_fetch_leaves_no_tasks(broker):
    await broker.create_topic("t", partitions=4)
    context = broker.handler_context()
    request = FetchRequest(
        [FetchPartition("t", p, 0, 1 << 20) for p in range(4)], max_wait_ms=600_000
    )
    baseline = tasks_living()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(fetch_handler, context, request)
            await trio.testing.wait_all_tasks_blocked()
            # The fetch task plus one watcher per partition.
            assert tasks_living() == baseline + 5
            nursery.cancel_scope.cancel()
    assert tasks_living() == baseline
    with trio.move_on_after(0.05) as scope:
        await fetch_handler(context, request)
    assert scope.cancelled_caught
    assert tasks_living() == baseline
    await broker.produce("t", 3, [Record(value=b"x")], acks=1)
    response = await fetch_handler(context, request)
    assert [bool(p.records) for p in response.partitions] == [False, False, False, True]


# --- acks -------------------------------------------------------------------------------


async def test_acks_zero_returns_at_once_and_data_arrives(broker):
    await broker.create_topic("t")
    result = await broker.produce("t", 0, [Record(value=b"fire")], acks=0)
    assert result == trioring.ProduceResult(-1, -1, -1)
    with trio.fail_after(5):
        fetched = await broker.fetch("t", 0, 0, max_wait=5)
    assert values(fetched) == [b"fire"]


async def test_acks_zero_many_in_order(broker):
    await broker.create_topic("t")
    for i in range(50):
        await broker.produce("t", 0, [Record(value=b"%d" % i)], acks=0)
    with trio.fail_after(5):
        await broker.shard.log("t", 0).high_watermark.wait_value(lambda value: value >= 50)
    assert values(await broker.fetch("t", 0, 0)) == [b"%d" % i for i in range(50)]


async def test_acks_zero_errors_are_logged_not_raised(broker, caplog):
    result = await broker.produce("missing", 0, [Record(value=b"x")], acks=0)
    assert result.base_offset == -1
    await trio.testing.wait_all_tasks_blocked()
    assert any("missing" in r.getMessage() for r in caplog.records)


async def test_acks_one_may_lag_durability_until_upkeep(tmp_path):
    config = BrokerConfig(data_dir=tmp_path, flush_interval_ms=None)
    async with trioring.open_broker(config) as broker:
        await broker.create_topic("t")
        result = await broker.produce("t", 0, [Record(value=b"a"), Record(value=b"b")], acks=1)
        assert (result.base_offset, result.last_offset) == (0, 1)
        stats = broker.statistics()["t-0"]
        assert stats["log_end_offset"] == stats["high_watermark"] == 2
        assert stats["durable_offset"] == 0
        # Written means readable.
        assert values(await broker.fetch("t", 0, 0)) == [b"a", b"b"]
        await broker.shard.run_upkeep_now()
        assert broker.statistics()["t-0"]["durable_offset"] == 2

        await broker.produce("t", 0, [Record(value=b"c")], acks=1)
        assert broker.statistics()["t-0"]["durable_offset"] == 2
        result = await broker.produce("t", 0, [Record(value=b"d")], acks="all")
        stats = broker.statistics()["t-0"]
        assert stats["durable_offset"] == stats["log_end_offset"] == 4


@pytest.mark.parametrize("acks", ["all", -1])
async def test_acks_all_is_durable_on_return(tmp_path, acks):
    config = BrokerConfig(data_dir=tmp_path, flush_interval_ms=None)
    async with trioring.open_broker(config) as broker:
        await broker.create_topic("t")
        for i in range(5):
            result = await broker.produce("t", 0, [Record(value=b"x")] * (i + 1), acks=acks)
            assert broker.statistics()["t-0"]["durable_offset"] >= result.last_offset + 1


# --- list_offset ----------------------------------------------------------------------


async def test_list_offset(broker):
    await broker.create_topic("t")
    assert await broker.list_offset("t", 0, "earliest") == 0
    assert await broker.list_offset("t", 0, "latest") == 0
    assert await broker.list_offset("t", 0, 0) == -1
    for timestamp in (1000, 2000, 3000):
        await broker.produce("t", 0, [Record(value=b"x", timestamp_ms=timestamp)])
    await broker.produce("t", 0, [Record(value=b"y", timestamp_ms=t) for t in (4000, 5000, 6000)])
    assert await broker.list_offset("t", 0, "earliest") == 0
    assert await broker.list_offset("t", 0, "latest") == 6
    expected = {
        0: 0,
        1000: 0,
        1001: 1,
        1999: 1,
        2000: 1,
        2500: 2,
        3000: 2,
        3001: 3,
        4000: 3,
        4500: 4,
        5000: 4,
        5999: 5,
        6000: 5,
        6001: -1,
        10**12: -1,
    }
    for timestamp, offset in expected.items():
        assert await broker.list_offset("t", 0, timestamp) == offset, timestamp


async def test_list_offset_across_segments(tmp_path):
    config = BrokerConfig(data_dir=tmp_path, log=LogConfig(segment_bytes=1024))
    async with trioring.open_broker(config) as broker:
        await broker.create_topic("t")
        for i in range(40):
            await broker.produce("t", 0, [Record(value=b"v" * 100, timestamp_ms=10 * i)], acks=1)
        assert broker.statistics()["t-0"]["segments"] > 3
        for i in range(40):
            assert await broker.list_offset("t", 0, 10 * i) == i
            assert await broker.list_offset("t", 0, 10 * i - 5 if i else 0) == i
        assert await broker.list_offset("t", 0, 391) == -1


# --- middleware ---------------------------------------------------------------------------


async def test_middleware_sees_every_call_in_order(tmp_path):
    seen: list[tuple[str, object]] = []

    def tracer(name: str) -> trioring.Middleware:
        def middleware(handler: trioring.Handler) -> trioring.Handler:
            async def wrapped(ctx: HandlerContext, request: object) -> object:
                assert isinstance(ctx, HandlerContext)
                seen.append((name, request))
                return await handler(ctx, request)

            return wrapped

        return middleware

    async with trioring.open_broker(tmp_path, middleware=[tracer("outer"), tracer("inner")]) as b:
        await b.create_topic("t")
        await b.produce("t", 0, [Record(value=b"x")])
        await b.fetch("t", 0, 0)
        await b.list_offset("t", 0, "latest")
        await b.commit_offsets("g", {("t", 0): 1})
        await b.committed_offsets("g")

    assert [name for name, _ in seen] == ["outer", "inner"] * 6
    requests = [request for name, request in seen if name == "outer"]
    assert [type(r) for r in requests] == [
        CreateTopicRequest,
        ProduceRequest,
        FetchRequest,
        ListOffsetsRequest,
        OffsetCommitRequest,
        OffsetFetchRequest,
    ]
    produce_request = requests[1]
    assert isinstance(produce_request, ProduceRequest)
    assert (produce_request.topic, produce_request.partition, produce_request.acks) == ("t", 0, -1)
    commit_request = requests[4]
    assert isinstance(commit_request, OffsetCommitRequest)
    assert commit_request.group == "g"
    assert commit_request.offsets == {("t", 0): trioring.CommittedOffset(1)}


async def test_middleware_can_reject_a_produce(tmp_path):
    class Forbidden(trioring.TrioringError):
        pass

    def deny_secret(handler: trioring.Handler) -> trioring.Handler:
        async def wrapped(ctx: HandlerContext, request: object) -> object:
            if isinstance(request, ProduceRequest) and request.topic == "secret":
                raise Forbidden(f"producing to {request.topic} is not allowed")
            return await handler(ctx, request)

        return wrapped

    async with trioring.open_broker(tmp_path, middleware=[deny_secret]) as broker:
        await broker.create_topic("secret")
        await broker.create_topic("public")
        with pytest.raises(Forbidden):
            await broker.produce("secret", 0, [Record(value=b"x")])
        await broker.produce("public", 0, [Record(value=b"x")])
        assert broker.statistics()["secret-0"]["log_end_offset"] == 0
        assert broker.statistics()["public-0"]["log_end_offset"] == 1


# --- retention ------------------------------------------------------------------------


def segment_files(data_dir: str, name: str) -> list[str]:
    return sorted(f for f in os.listdir(os.path.join(data_dir, name)) if f.endswith(".log"))


async def test_retention_by_size(tmp_path):
    log = LogConfig(segment_bytes=1024, retention_bytes=2048, retention_ms=None)
    config = BrokerConfig(data_dir=tmp_path, log=log, flush_interval_ms=None)
    async with trioring.open_broker(config) as broker:
        await broker.create_topic("t")
        for i in range(40):
            await broker.produce("t", 0, [Record(value=b"%03d" % i + b"." * 200)], acks=1)
        before = broker.statistics()["t-0"]
        assert before["segments"] >= 8
        assert len(segment_files(str(tmp_path), "t-0")) == before["segments"]
        await broker.shard.run_upkeep_now()
        after = broker.statistics()["t-0"]
        assert after["segments"] < before["segments"]
        assert 2048 - 1024 <= after["size_bytes"] < 2048 + 1024
        assert len(segment_files(str(tmp_path), "t-0")) == after["segments"]
        earliest = await broker.list_offset("t", 0, "earliest")
        assert earliest == after["log_start_offset"] > 0
        assert after["log_end_offset"] == 40
        with pytest.raises(OffsetOutOfRangeError) as raised:
            await broker.fetch("t", 0, 0)
        assert raised.value.log_start_offset == earliest
        assert raised.value.high_watermark == 40
        with pytest.raises(OffsetOutOfRangeError):
            await broker.fetch("t", 0, earliest - 1)
        fetched = await broker.fetch("t", 0, earliest)
        assert fetched.log_start_offset == earliest
        assert fetched.records[0].offset == earliest
        assert fetched.records[0].value is not None
        assert fetched.records[0].value.startswith(b"%03d" % earliest)
        # Running retention again changes nothing.
        await broker.shard.run_upkeep_now()
        assert broker.statistics()["t-0"]["log_start_offset"] == earliest

    async with trioring.open_broker(config) as broker:
        assert await broker.list_offset("t", 0, "earliest") == earliest
        with pytest.raises(OffsetOutOfRangeError):
            await broker.fetch("t", 0, 0)
        assert (await broker.produce("t", 0, [Record(value=b"x")])).base_offset == 40


async def test_retention_never_deletes_the_active_segment(tmp_path):
    log = LogConfig(retention_bytes=0, retention_ms=0)
    async with trioring.open_broker(BrokerConfig(data_dir=tmp_path, log=log)) as broker:
        await broker.create_topic("t")
        await broker.produce("t", 0, [Record(value=b"x", timestamp_ms=0)])
        await broker.shard.run_upkeep_now()
        assert values(await broker.fetch("t", 0, 0)) == [b"x"]


async def test_retention_by_time_with_fake_clock(tmp_path):
    clock = FakeClock()
    log = LogConfig(segment_ms=1_000, retention_ms=10_000)
    config = BrokerConfig(data_dir=tmp_path, log=log, clock=clock)
    async with trioring.open_broker(config) as broker:
        await broker.create_topic("t")
        await broker.produce("t", 0, [Record(value=b"0")])
        clock.now += 2
        await broker.produce("t", 0, [Record(value=b"1")])  # rolls: segment 0 is 2 s old
        clock.now += 2
        await broker.produce("t", 0, [Record(value=b"2")])  # rolls again
        assert broker.statistics()["t-0"]["segments"] == 3

        clock.now += 5  # newest deletable segment is 7 s old: nothing expires yet
        await broker.shard.run_upkeep_now()
        assert broker.statistics()["t-0"]["log_start_offset"] == 0

        clock.now += 4  # segment 0 is 13 s old, segment 1 is 11 s old
        await broker.shard.run_upkeep_now()
        stats = broker.statistics()["t-0"]
        assert stats["log_start_offset"] == 2
        assert stats["segments"] == 1
        assert await broker.list_offset("t", 0, "earliest") == 2
        with pytest.raises(OffsetOutOfRangeError):
            await broker.fetch("t", 0, 1)
        assert values(await broker.fetch("t", 0, 2)) == [b"2"]


async def test_per_topic_log_config_overrides_the_default(tmp_path):
    config = BrokerConfig(data_dir=tmp_path, log=LogConfig(retention_bytes=None))
    async with trioring.open_broker(config) as broker:
        await broker.create_topic("kept")
        await broker.create_topic(
            "trimmed", config=LogConfig(segment_bytes=1024, retention_bytes=1024)
        )
        for topic in ("kept", "trimmed"):
            for _ in range(20):
                await broker.produce(topic, 0, [Record(value=b"." * 200)], acks=1)
        await broker.shard.run_upkeep_now()
        assert await broker.list_offset("kept", 0, "earliest") == 0
        assert await broker.list_offset("trimmed", 0, "earliest") > 0


# --- statistics -----------------------------------------------------------------------


async def test_statistics_shape(broker):
    assert broker.statistics() == {}
    await broker.create_topic("a", partitions=2)
    await broker.create_topic("b-c")
    await broker.produce("a", 1, [Record(value=b"x")] * 3)
    stats = broker.statistics()
    assert set(stats) == {"a-0", "a-1", "b-c-0"}
    for partition_stats in stats.values():
        assert set(partition_stats) == STATISTICS_KEYS
        assert all(isinstance(v, int) for v in partition_stats.values())
        assert partition_stats["segments"] == 1
    assert stats["a-0"]["log_end_offset"] == 0
    assert stats["a-0"]["size_bytes"] == 0
    assert stats["a-1"]["log_end_offset"] == stats["a-1"]["high_watermark"] == 3
    assert stats["a-1"]["durable_offset"] == 3
    assert stats["a-1"]["log_start_offset"] == 0
    assert stats["a-1"]["size_bytes"] > 0


# --- Library manners: the body's exceptions come back as raised ---------------------------


async def test_an_exception_from_the_body_comes_back_unwrapped(tmp_path):
    """The README's example on its second run: ``except TopicExistsError`` must match."""
    async with trioring.open_broker(tmp_path) as broker:
        await broker.create_topic("events")
    with pytest.raises(trioring.TopicExistsError) as raised:
        async with trioring.open_broker(tmp_path) as broker:
            await broker.create_topic("events")
    assert type(raised.value) is trioring.TopicExistsError
    assert not isinstance(raised.value.__context__, BaseExceptionGroup)

    class UserError(Exception):
        pass

    with pytest.raises(UserError):
        async with trioring.open_broker(tmp_path):
            raise UserError("raised by user code")
    # The broker closed cleanly all the same: it opens again.
    async with trioring.open_broker(tmp_path) as broker:
        assert "events" in broker.topics()


async def test_cancellation_of_the_body_passes_through(tmp_path):
    with trio.move_on_after(0.05) as scope:
        async with trioring.open_broker(tmp_path):
            await trio.sleep_forever()
    assert scope.cancelled_caught


async def test_a_failing_background_task_is_not_hidden_behind_the_body_error(tmp_path):
    """If the broker's own task failed too, both errors are raised, in a group."""

    class UserError(Exception):
        pass

    async def fail() -> None:
        raise RuntimeError("background failure")

    with pytest.raises(BaseExceptionGroup) as raised:
        async with trioring.open_broker(tmp_path) as broker:
            broker._nursery.start_soon(fail)
            await trio.sleep(0.01)
            raise UserError("body")
    leaves = list(leaf_exceptions(raised.value))
    assert [type(leaf) for leaf in leaves] == [RuntimeError], leaves


async def test_a_locked_data_directory_is_refused_naming_the_holder(tmp_path):
    async with trioring.open_broker(tmp_path):
        with pytest.raises(trioring.DataDirectoryInUseError, match=f"process {os.getpid()}"):
            async with trioring.open_broker(tmp_path):
                pass
    # Released on close: it opens again.
    async with trioring.open_broker(tmp_path):
        pass

"""Tests of Shard: its own partitions only, following metadata, and the upkeep task."""

from __future__ import annotations

import logging
import os

import pytest
import trio

import trioring
from trioring import BrokerConfig, LogConfig, Record
from trioring.cluster.model import ClusterMetadata, TopicInfo
from trioring.core.shard import Shard
from trioring.errors import (
    BrokerClosedError,
    NotLeaderOrFollowerError,
    UnknownTopicOrPartitionError,
)
from trioring.protocol.records import build_batch
from trioring.storage.layout import partition_directory
from trioring.uring import FallbackBackend


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now
        self.broken = False
        self.broken_calls = 0

    def __call__(self) -> float:
        if self.broken:
            self.broken_calls += 1
            raise RuntimeError("clock is broken")
        return self.now


def directory_exists(path: str) -> bool:
    return os.path.isdir(path)


async def wait_until(predicate) -> None:
    """Poll ``predicate`` (upkeep state has nothing to wait on) until true, for 5 s at most."""
    with trio.fail_after(5):
        while not predicate():  # noqa: ASYNC110
            await trio.sleep(0.005)


def test_partition_directory_uses_kafka_naming():
    assert partition_directory("/data", "events", 3) == os.path.join("/data", "events-3")


def metadata_with(*topics: tuple[str, tuple[int, ...]], workers: int = 2) -> ClusterMetadata:
    """Cluster metadata with topics of the given owners (and no offsets topic)."""
    return ClusterMetadata(
        "cluster",
        workers,
        {
            name: TopicInfo(name, len(owners), f"id-{name}", LogConfig(), owners)
            for name, owners in topics
        },
        1,
    )


async def test_a_shard_opens_only_its_own_partitions(tmp_path):
    config = BrokerConfig(data_dir=tmp_path / "data")
    backend = FallbackBackend()
    baseline = trio.lowlevel.current_statistics().tasks_living
    metadata = metadata_with(("t", (0, 1, 0)))
    async with Shard.open(config, backend, metadata, worker_index=0) as shard:
        # One upkeep task for the whole shard (and none for groups yet).
        assert trio.lowlevel.current_statistics().tasks_living == baseline + 1
        assert directory_exists(partition_directory(config.data_dir, "t", 0))
        assert not directory_exists(partition_directory(config.data_dir, "t", 1))
        assert shard.log("t", 2) is shard.log("t", 2)
        assert shard.log("t", 0) is not shard.log("t", 2)
        with pytest.raises(NotLeaderOrFollowerError, match="node 1"):
            shard.log("t", 1)
        with pytest.raises(UnknownTopicOrPartitionError, match=r"0-2, not 3"):
            shard.log("t", 3)
        with pytest.raises(UnknownTopicOrPartitionError, match="create it first"):
            shard.log("nope", 0)
        assert sorted((t, p) for t, p, _ in shard.owned_logs()) == [("t", 0), ("t", 2)]
    assert trio.lowlevel.current_statistics().tasks_living == baseline
    with pytest.raises(BrokerClosedError):
        shard.log("t", 0)
    await backend.aclose()


async def test_a_shard_follows_new_metadata(tmp_path):
    config = BrokerConfig(data_dir=tmp_path / "data")
    backend = FallbackBackend()
    async with Shard.open(config, backend, metadata_with(("t", (0, 1))), worker_index=1) as shard:
        await shard.log("t", 1).append(build_batch([Record(value=b"kept")]))
        # A new topic: this worker's partitions open.
        await shard.apply(metadata_with(("t", (0, 1)), ("u", (1, 1, 0))))
        assert sorted((t, p) for t, p, _ in shard.owned_logs()) == [("t", 1), ("u", 0), ("u", 1)]
        # A deleted topic: its partitions close and their directories go.
        await shard.apply(metadata_with(("u", (1, 1, 0))))
        assert not directory_exists(partition_directory(config.data_dir, "t", 1))
        with pytest.raises(UnknownTopicOrPartitionError):
            shard.log("t", 1)
        # The same name again is a new topic, with no data.
        await shard.apply(metadata_with(("u", (1, 1, 0)), ("t", (1,))))
        assert shard.log("t", 0).log_end_offset == 0
        assert not [e for e in os.listdir(config.data_dir) if e.endswith("-delete")]
    await backend.aclose()


async def test_periodic_flush_makes_acks_one_durable(tmp_path):
    config = BrokerConfig(data_dir=tmp_path, flush_interval_ms=20)
    async with trioring.open_broker(config) as broker:
        await broker.create_topic("t")
        await broker.produce("t", 0, [Record(value=b"x")] * 3, acks=1)
        log = broker.shard.log("t", 0)
        await wait_until(lambda: log.durable_offset == 3)
        await broker.commit_offsets("g", {("t", 0): 1})
        offsets_log = broker.shard.offsets_if_open("g").log
        assert offsets_log.durable_offset == offsets_log.log_end_offset


async def test_no_periodic_flush_when_disabled(tmp_path, autojump_clock):
    config = BrokerConfig(data_dir=tmp_path, flush_interval_ms=None)
    async with trioring.open_broker(config) as broker:
        await broker.create_topic("t")
        await broker.produce("t", 0, [Record(value=b"x")], acks=1)
        await trio.sleep(3600)
        assert broker.statistics()["t-0"]["durable_offset"] == 0


async def test_periodic_retention_and_offsets_compaction(tmp_path):
    clock = FakeClock()
    config = BrokerConfig(
        data_dir=tmp_path,
        clock=clock,
        log=LogConfig(segment_bytes=1024, retention_ms=60_000),
        retention_check_interval_ms=10,
        offsets_log_compact_bytes=1024,
    )
    async with trioring.open_broker(config) as broker:
        await broker.create_topic("t")
        for i in range(20):
            await broker.produce("t", 0, [Record(value=b"." * 200)], acks=1)
            await broker.commit_offsets("g", {("t", 0): i})
        offsets_log = broker.shard.offsets_if_open("g").log
        # Compaction needs no clock change: the offsets log is past its size.
        await wait_until(lambda: offsets_log.log_start_offset > 0)
        assert broker.statistics()["t-0"]["log_start_offset"] == 0
        clock.now += 61
        await wait_until(lambda: broker.statistics()["t-0"]["segments"] == 1)
        assert broker.statistics()["t-0"]["log_start_offset"] > 0
        assert await broker.committed_offsets("g") == {("t", 0): 19}


async def test_upkeep_goes_on_after_a_failing_job(tmp_path, caplog):
    clock = FakeClock()
    config = BrokerConfig(
        data_dir=tmp_path,
        clock=clock,
        flush_interval_ms=10,
        retention_check_interval_ms=10,
        log=LogConfig(retention_ms=1000),
    )
    caplog.set_level(logging.ERROR, logger="trioring.shard")
    async with trioring.open_broker(config) as broker:
        await broker.create_topic("t")
        clock.broken = True  # retention reads the clock and fails

        def failures() -> int:
            return sum("periodic retention failed" in r.getMessage() for r in caplog.records)

        await wait_until(lambda: failures() >= 1)
        # The job runs again and fails again; the log says so once a minute.
        calls = clock.broken_calls
        await wait_until(lambda: clock.broken_calls >= calls + 2)
        assert failures() == 1
        clock.broken = False
        await broker.produce("t", 0, [Record(value=b"x")], acks=1)
        log = broker.shard.log("t", 0)
        await wait_until(lambda: log.durable_offset == 1)

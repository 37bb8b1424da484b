"""Tests of the Controller: durable metadata events, placement, producer-id blocks, and the
conversion of a trioring 0.1 data directory."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import trioring
from trioring import BrokerConfig, LogConfig, Record
from trioring._constants import OFFSETS_TOPIC_PARTITIONS, PRODUCER_ID_BLOCK_SIZE
from trioring.cluster.controller import Controller
from trioring.cluster.model import METADATA_LOG_DIRECTORY, OFFSETS_TOPIC, ClusterMetadata
from trioring.core.offsets import CommittedOffset, OffsetStore
from trioring.errors import (
    InvalidPartitionsError,
    InvalidTopicError,
    StorageError,
    TopicExistsError,
    UnknownTopicOrPartitionError,
)
from trioring.protocol.records import build_batch
from trioring.storage.log import PartitionLog
from trioring.uring import FallbackBackend


def config_for(path: Path) -> BrokerConfig:
    return BrokerConfig(data_dir=str(path))


async def test_metadata_survives_reopening(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    backend = FallbackBackend()
    async with Controller.open(config, backend, workers=2) as controller:
        first = controller.current
        assert first.cluster_id and first.workers == 2
        offsets = first.topics[OFFSETS_TOPIC]
        assert offsets.internal and offsets.partitions == OFFSETS_TOPIC_PARTITIONS
        created = await controller.create_topic("a", 3, LogConfig(retention_ms=5000))
        assert created.owners == (0, 1, 0) or sorted(created.owners) == [0, 0, 1]
        await controller.create_topic("b", 1)
        grown = await controller.create_partitions("b", 3)
        assert grown.partitions == 3
        altered = await controller.alter_topic_config(
            "b", LogConfig(retention_bytes=1000), {"retention.bytes": "1000"}
        )
        assert altered.overrides == (("retention.bytes", "1000"),)
        assert altered.owners == grown.owners
        await controller.delete_topic("a")
        final = controller.current
    async with Controller.open(config, backend, workers=2) as controller:
        assert controller.current == final
        assert controller.current.topics["b"].partitions == 3
        assert controller.current.topics["b"].config.retention_bytes == 1000
        assert "a" not in controller.current.topics
    await backend.aclose()


async def test_controller_refuses_what_kafka_refuses(tmp_path: Path) -> None:
    backend = FallbackBackend()
    async with Controller.open(config_for(tmp_path), backend, workers=1) as controller:
        await controller.create_topic("a")
        with pytest.raises(TopicExistsError):
            await controller.create_topic("a")
        with pytest.raises(InvalidTopicError):
            await controller.create_topic(OFFSETS_TOPIC)
        with pytest.raises(InvalidPartitionsError):
            await controller.create_topic("b", 0)
        with pytest.raises(InvalidPartitionsError, match="larger"):
            await controller.create_partitions("a", 1)
        with pytest.raises(UnknownTopicOrPartitionError):
            await controller.create_partitions(OFFSETS_TOPIC, 100)
        with pytest.raises(UnknownTopicOrPartitionError):
            await controller.delete_topic(OFFSETS_TOPIC)
        with pytest.raises(UnknownTopicOrPartitionError):
            await controller.delete_topic("nope")
        with pytest.raises(UnknownTopicOrPartitionError):
            await controller.alter_topic_config("nope", LogConfig(), {})
        with pytest.raises(UnknownTopicOrPartitionError):
            await controller.alter_topic_config(OFFSETS_TOPIC, LogConfig(), {})
    await backend.aclose()


async def test_a_new_worker_count_places_every_partition_anew(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    backend = FallbackBackend()
    async with Controller.open(config, backend, workers=1) as controller:
        await controller.create_topic("a", 4)
        assert set(controller.current.topics["a"].owners) == {0}
    async with Controller.open(config, backend, workers=2) as controller:
        two = controller.current
        assert two.workers == 2
        assert sorted(two.topics["a"].owners) == [0, 0, 1, 1]
        counts = two.partition_counts()
        assert abs(counts[0] - counts[1]) <= 1
        groups = {two.coordinator(f"group-{i}") for i in range(50)}
        assert groups == {0, 1}, "coordination spreads over both workers"
    async with Controller.open(config, backend, workers=2) as controller:
        assert controller.current == two, "the same count keeps the placement"
    async with Controller.open(config, backend, workers=1) as controller:
        assert set(controller.current.topics["a"].owners) == {0}
    await backend.aclose()


async def test_producer_id_blocks_are_never_handed_out_twice(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    backend = FallbackBackend()
    seen: set[int] = set()
    for _ in range(3):
        async with Controller.open(config, backend, workers=1) as controller:
            for _ in range(2):
                first = await controller.allocate_producer_ids(PRODUCER_ID_BLOCK_SIZE)
                block = set(range(first, first + PRODUCER_ID_BLOCK_SIZE))
                assert not block & seen
                seen |= block
    await backend.aclose()


async def test_the_metadata_log_is_compacted(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    backend = FallbackBackend()
    async with Controller.open(config, backend, workers=1) as controller:
        for round_ in range(60):
            await controller.create_topic(f"t{round_}-" + "x" * 200, 50)
            await controller.delete_topic(f"t{round_}-" + "x" * 200)
        await controller.create_topic("kept", 2)
        final = controller.current
        log_directory = os.path.join(str(tmp_path), METADATA_LOG_DIRECTORY)
        assert len([n for n in os.listdir(log_directory) if n.endswith(".log")]) <= 3
    async with Controller.open(config, backend, workers=1) as controller:
        assert controller.current.topics == final.topics
    await backend.aclose()


async def test_a_damaged_metadata_log_is_a_storage_error(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    backend = FallbackBackend()
    log = await PartitionLog.open(
        os.path.join(str(tmp_path), METADATA_LOG_DIRECTORY), LogConfig(), backend, config.clock
    )
    info = await log.append(build_batch([Record(value=b"not json")]))
    await log.flush(info.last_offset + 1)
    await log.aclose()
    with pytest.raises(StorageError, match="unreadable"):
        async with Controller.open(config, backend, workers=1):
            pass
    await backend.aclose()


# --- a trioring 0.1 data directory --------------------------------------------------------


async def write_legacy_data_directory(data_dir: Path) -> None:
    """The layout trioring 0.1 wrote: topics.json, cluster-id, producer-ids, one offsets log."""
    metadata = data_dir / "__cluster_metadata"
    metadata.mkdir(parents=True)
    topic_config = {
        "segment_bytes": 1 << 20,
        "segment_ms": 604800000,
        "retention_bytes": None,
        "retention_ms": 1234,
        "index_interval_bytes": 4096,
    }
    (metadata / "topics.json").write_text(
        json.dumps(
            {
                "version": 1,
                "topics": [
                    {"name": "old", "partitions": 2, "topic_id": "abc", "config": topic_config}
                ],
            }
        )
    )
    (metadata / "cluster-id").write_text("legacycluster\n")
    (metadata / "producer-ids").write_text("trioring-producer-ids-v1 3000\n")
    backend = FallbackBackend()
    store = await OffsetStore.open(
        str(data_dir / "__consumer_offsets-0"),
        backend,
        lambda: 1_700_000_000.0,
        compact_bytes=1 << 20,
    )
    for group in ("group-a", "group-b", "polygenelubricants"):
        await store.commit(group, {("old", 0): CommittedOffset(7, "m")})
    await store.aclose()
    # A partition with data, as 0.1 named it.
    log = await PartitionLog.open(
        str(data_dir / "old-1"), LogConfig(), backend, lambda: 1_700_000_000.0
    )
    info = await log.append(build_batch([Record(value=b"from 0.1")]))
    await log.flush(info.last_offset + 1)
    await log.aclose()
    await backend.aclose()


async def test_a_data_directory_of_trioring_0_1_is_converted(tmp_path: Path) -> None:
    data = tmp_path / "data"
    await write_legacy_data_directory(data)
    async with trioring.open_broker(data) as broker:
        topics = broker.topics()
        assert set(topics) == {"old"}
        assert topics["old"].partitions == 2 and topics["old"].config.retention_ms == 1234
        assert broker.cluster.cluster_id == "legacycluster"
        assert [r.value for r in (await broker.fetch("old", 1, 0)).records] == [b"from 0.1"]
        for group in ("group-a", "group-b", "polygenelubricants"):
            assert await broker.committed_offsets(group) == {("old", 0): 7}
        assert await broker.cluster.allocate_producer_id() >= 3000
    assert not (data / "__cluster_metadata").exists()
    assert not (data / "__consumer_offsets.moving").exists()
    partitions = {ClusterMetadata.offsets_partition(g) for g in ("group-a", "group-b")}
    for partition in partitions:
        assert (data / f"{OFFSETS_TOPIC}-{partition}").is_dir()
    # And it stays converted.
    async with trioring.open_broker(data) as broker:
        assert await broker.committed_offsets("group-b") == {("old", 0): 7}
        assert broker.cluster.cluster_id == "legacycluster"


async def test_a_failed_fdatasync_of_the_metadata_log_is_recovered_from_disk(
    tmp_path: Path,
) -> None:
    # Before: the metadata log stayed offline until a restart, so every topic
    # change and every InitProducerId failed for good (found by trioring.fuzz).
    from trioring.fuzz import FaultyBackend  # noqa: PLC0415
    from trioring.fuzz._backend import Fault  # noqa: PLC0415

    config = config_for(tmp_path)
    backend = FaultyBackend()
    async with Controller.open(config, backend, workers=1) as controller:
        await controller.create_topic("kept", 1)
        backend.inject(Fault("eio-sync", "sync", 5, 1))  # one fdatasync fails
        with pytest.raises(StorageError):
            await controller.create_topic("lost", 1)
        assert "lost" not in controller.current.topics
        # The next change reopens the log from disk and goes through.
        created = await controller.create_topic("after", 2)
        assert created.partitions == 2
        first = await controller.allocate_producer_ids(PRODUCER_ID_BLOCK_SIZE)
        final = controller.current
    backend.crash()  # what was never synced stays lost; the rest reaches the disk
    async with Controller.open(config, FaultyBackend(), workers=1) as controller:
        assert controller.current == final
        assert {"kept", "after"} <= set(controller.current.topics)
        assert "lost" not in controller.current.topics
        assert await controller.allocate_producer_ids(PRODUCER_ID_BLOCK_SIZE) > first

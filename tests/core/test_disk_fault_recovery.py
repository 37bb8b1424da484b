"""The embedded broker under disk faults, through its handlers.

- fdatasync EIO: what the failed sync covered is never acknowledged, the
  partition goes offline for writes, and the shard recovers it from disk by
  itself (no restart): acknowledged data intact, the untrusted tail gone.
- ENOSPC: produces get KAFKA_STORAGE_ERROR, reads go on, writing resumes by
  itself once space is free; OffsetCommit gets NOT_COORDINATOR (Kafka's
  answer to a storage error of its offsets topic), not a crash.
- pread EIO: that partition's fetch gets KAFKA_STORAGE_ERROR, others are served.
- a damaged batch: that partition's fetch gets CORRUPT_MESSAGE.

Before: a failed fdatasync left the partition offline until a restart, and
the restart served the unsynced tail from the page cache; a pread EIO
failed the whole fetch (every partition) as UNKNOWN_SERVER_ERROR; a commit
on a full disk answered KAFKA_STORAGE_ERROR, which OffsetCommit clients do
not retry.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import pytest
import trio
from kio.schema.errors import ErrorCode

import trioring
from trioring import Record
from trioring.errors import GroupCoordinatorError, StorageError, TrioringError
from trioring.handlers.messages import FetchPartition, FetchRequest
from trioring.uring import Buffer, FallbackBackend

#: Seconds the shard gets to bring a partition back once the disk works again.
RECOVERY_SECONDS = 10.0


class FaultyDisk(FallbackBackend):
    """Fails writes, fdatasyncs or reads of files whose path contains ``where``."""

    def __init__(self) -> None:
        super().__init__()
        self._paths: dict[int, str] = {}
        #: operation ("write", "sync", "read") -> errno
        self.faults: dict[str, int] = {}
        self.where = ""
        self.injected = 0

    def fail(self, operation: str, code: int, where: str = "") -> None:
        self.faults[operation] = code
        self.where = where

    def heal(self) -> None:
        self.faults.clear()

    def _check(self, operation: str, path: str) -> None:
        code = self.faults.get(operation)
        if code is not None and self.where in path:
            self.injected += 1
            raise OSError(code, f"{os.strerror(code)} (injected)")

    @property
    def writes_inline(self) -> bool:
        return False  # every write through pwritev, so it can fail

    async def open(self, path: str, flags: int, mode: int = 0o644) -> int:
        if flags & os.O_CREAT:
            self._check("write", path)
        fd = await super().open(path, flags, mode)
        self._paths[fd] = path
        return fd

    async def close(self, fd: int) -> None:
        self._paths.pop(fd, None)
        await super().close(fd)

    async def make_directory(self, path: str) -> bool:
        self._check("write", path + os.sep)
        return await super().make_directory(path)

    async def pwritev(self, fd: int, buffers: Sequence[Buffer], offset: int) -> int:
        self._check("write", self._paths.get(fd, ""))
        return await super().pwritev(fd, buffers, offset)

    async def fdatasync(self, fd: int) -> None:
        self._check("sync", self._paths.get(fd, ""))
        await super().fdatasync(fd)

    async def fsync_directory(self, path: str) -> None:
        self._check("sync", path + os.sep)
        await super().fsync_directory(path)

    async def pread(self, fd: int, size: int, offset: int) -> bytes:
        self._check("read", self._paths.get(fd, ""))
        return await super().pread(fd, size, offset)


def records(*values: bytes) -> list[Record]:
    return [Record(value=value) for value in values]


async def values_of(broker: trioring.Broker, topic: str) -> list[bytes | None]:
    result = await broker.fetch(topic, 0, 0)
    assert [r.offset for r in result.records] == list(range(len(result.records)))
    return [r.value for r in result.records]


async def produce_until_accepted(broker: trioring.Broker, topic: str, value: bytes) -> int:
    """Produce (acks=all) until the partition takes it: it recovers by itself."""
    with trio.fail_after(RECOVERY_SECONDS):
        while True:
            try:
                return (await broker.produce(topic, 0, records(value))).base_offset
            except StorageError:
                await trio.sleep(0.02)


def config(data: Path) -> trioring.BrokerConfig:
    # No periodic flush: the test decides what is synced.
    return trioring.BrokerConfig(data_dir=str(data), flush_interval_ms=None)


async def test_a_failed_fdatasync_is_never_acknowledged_and_the_partition_recovers_by_itself(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    disk = FaultyDisk()
    async with trioring.open_broker(config(tmp_path / "data"), backend=disk) as broker:
        await broker.create_topic("a", 1)
        await broker.create_topic("b", 1)
        for i in range(5):
            await broker.produce("a", 0, records(b"acked-%d" % i))
        await broker.produce("b", 0, records(b"b-acked"))
        durable = 5
        # acks=1: written, not synced.
        await broker.produce("a", 0, records(b"unsynced-5", b"unsynced-6"), acks=1)
        written = 7
        assert broker.statistics()["a-0"]["high_watermark"] == written

        disk.fail("sync", errno.EIO, "a-0")
        with pytest.raises(StorageError) as caught:
            await broker.produce("a", 0, records(b"never-acked"))
        assert caught.value.kafka_error_code == ErrorCode.kafka_storage_error
        # Offline for writes while the disk fails: the recovery keeps failing too.
        with pytest.raises(StorageError):
            await broker.produce("a", 0, records(b"refused"), acks=1)
        # Other partitions are served meanwhile.
        assert await values_of(broker, "b") == [b"b-acked"]
        await broker.produce("b", 0, records(b"b-more"))

        disk.heal()
        offset = await produce_until_accepted(broker, "a", b"after")
        # The page cache past the durable offset was not trusted: the acks=1
        # records whose sync failed are gone; every acknowledged one is there.
        statistics = broker.statistics()["a-0"]
        assert durable <= offset <= written
        assert offset == durable
        assert await values_of(broker, "a") == [b"acked-%d" % i for i in range(5)] + [b"after"]
        assert statistics["durable_offset"] == statistics["log_end_offset"] == durable + 1
    messages = [r.getMessage() for r in caplog.records]
    assert any("offline for writes" in m and "fdatasync" in m for m in messages)
    assert any("recovering it from disk" in m for m in messages)
    assert any("back online" in m for m in messages)

    # A restart finds the same log.
    async with trioring.open_broker(config(tmp_path / "data")) as broker:
        assert await values_of(broker, "a") == [b"acked-%d" % i for i in range(5)] + [b"after"]
        assert await values_of(broker, "b") == [b"b-acked", b"b-more"]


async def test_a_full_disk_fails_produces_and_commits_cleanly_and_writing_resumes_by_itself(
    tmp_path: Path,
) -> None:
    disk = FaultyDisk()
    async with trioring.open_broker(config(tmp_path / "data"), backend=disk) as broker:
        await broker.create_topic("a", 1)
        await broker.create_topic("b", 1)
        await broker.produce("a", 0, records(b"a-0", b"a-1"))
        await broker.produce("b", 0, records(b"b-0"))
        await broker.commit_offsets("group", {("a", 0): 1})

        disk.fail("write", errno.ENOSPC)
        for acks in ("all", 1):
            with pytest.raises(StorageError, match="No space left") as caught:
                await broker.produce("a", 0, records(b"lost"), acks=acks)  # type: ignore[arg-type]
            assert caught.value.kafka_error_code == ErrorCode.kafka_storage_error
        # Reads go on: other partitions, and this one's acknowledged data.
        assert await values_of(broker, "a") == [b"a-0", b"a-1"]
        assert await values_of(broker, "b") == [b"b-0"]
        # A commit (the group's offsets log, and a group new to this worker's
        # other offsets partitions) answers as Kafka does: NOT_COORDINATOR.
        for group in ("group", "new-group"):
            with pytest.raises(GroupCoordinatorError) as refused:
                await broker.commit_offsets(group, {("a", 0): 2})
            assert refused.value.kafka_error_code == ErrorCode.not_coordinator
            assert "No space left" in str(refused.value)
        assert await broker.committed_offsets("group") == {("a", 0): 1}
        assert disk.injected

        disk.heal()
        # No restart: the next produce and commit just work.
        assert (await broker.produce("a", 0, records(b"a-2"))).base_offset == 2
        await broker.commit_offsets("group", {("a", 0): 3})
        await broker.commit_offsets("new-group", {("b", 0): 1})
        assert await values_of(broker, "a") == [b"a-0", b"a-1", b"a-2"]
        assert await broker.committed_offsets("group") == {("a", 0): 3}


async def test_a_failed_fdatasync_of_the_offsets_log_is_recovered_too(tmp_path: Path) -> None:
    disk = FaultyDisk()
    async with trioring.open_broker(config(tmp_path / "data"), backend=disk) as broker:
        await broker.create_topic("a", 1)
        await broker.commit_offsets("group", {("a", 0): 1})
        disk.fail("sync", errno.EIO, "__consumer_offsets")
        with pytest.raises(GroupCoordinatorError) as refused:
            await broker.commit_offsets("group", {("a", 0): 2})
        assert refused.value.kafka_error_code == ErrorCode.not_coordinator
        # Produce to user partitions is untouched.
        await broker.produce("a", 0, records(b"fine"))
        disk.heal()
        with trio.fail_after(RECOVERY_SECONDS):
            while True:
                try:
                    committed = await broker.committed_offsets("group")
                    break
                except GroupCoordinatorError:
                    await trio.sleep(0.02)
        # The commit whose sync failed was never acknowledged, and is gone.
        assert committed == {("a", 0): 1}
        await broker.commit_offsets("group", {("a", 0): 3})
        assert await broker.committed_offsets("group") == {("a", 0): 3}


async def fetch_both(broker: trioring.Broker) -> dict[str, tuple[int, bytes]]:
    """One Fetch of a-0 and b-0: each partition's (error code, records bytes)."""
    response = await broker.handlers.fetch(
        broker.handler_context(),
        FetchRequest((FetchPartition("a", 0, 0, 1 << 20), FetchPartition("b", 0, 0, 1 << 20))),
    )
    out = {}
    for fetched in response.partitions:
        error: TrioringError | None = fetched.error
        out[fetched.topic] = (0 if error is None else error.kafka_error_code, fetched.records)
    return out


async def test_a_failed_read_fails_that_partition_only(tmp_path: Path) -> None:
    disk = FaultyDisk()
    async with trioring.open_broker(config(tmp_path / "data"), backend=disk) as broker:
        await broker.create_topic("a", 1)
        await broker.create_topic("b", 1)
        await broker.produce("a", 0, records(b"a-0"))
        await broker.produce("b", 0, records(b"b-0"))
        disk.fail("read", errno.EIO, "a-0")
        fetched = await fetch_both(broker)
        assert fetched["a"] == (ErrorCode.kafka_storage_error, b"")
        assert fetched["b"][0] == 0 and fetched["b"][1]
        # A failed read takes nothing offline.
        await broker.produce("a", 0, records(b"a-1"))
        disk.heal()
        assert await values_of(broker, "a") == [b"a-0", b"a-1"]


async def test_a_damaged_batch_is_corrupt_message_for_that_partition_only(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with trioring.open_broker(config(data)) as broker:
        await broker.create_topic("a", 1)
        await broker.create_topic("b", 1)
        await broker.produce("a", 0, records(b"first"))
        await broker.produce("a", 0, records(b"damaged"))
        await broker.produce("b", 0, records(b"b-0"))
    segment = data / "a-0" / f"{0:020d}.log"
    content = bytearray(segment.read_bytes())
    content[-3] ^= 1  # inside the last batch's records: only the CRC notices
    segment.write_bytes(bytes(content))
    async with trioring.open_broker(config(data)) as broker:
        # Readable up to the damage...
        assert [r.value for r in (await broker.fetch("a", 0, 0)).records] == [b"first"]
        # ... and the damaged batch itself is CORRUPT_MESSAGE, not its bytes.
        response = await broker.handlers.fetch(
            broker.handler_context(),
            FetchRequest((FetchPartition("a", 0, 1, 1 << 20), FetchPartition("b", 0, 0, 1 << 20))),
        )
        codes = {
            p.topic: (0 if p.error is None else p.error.kafka_error_code)
            for p in response.partitions
        }
        assert codes == {"a": ErrorCode.corrupt_message, "b": 0}
        await broker.produce("a", 0, records(b"after"))


async def test_a_partition_going_offline_during_a_long_poll_is_that_partitions_error_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with trioring.open_broker(config(tmp_path / "data")) as broker:
        await broker.create_topic("a", 1)
        await broker.create_topic("b", 1)
        shard = broker.shard
        original = shard.log
        calls = 0

        def log(topic: str, partition: int) -> object:
            # a-0 goes offline (a disk error) right after the fetch's first read.
            nonlocal calls
            if topic == "a":
                calls += 1
                if calls > 1:
                    raise StorageError("a-0 is offline: recovering it from disk")
            return original(topic, partition)

        monkeypatch.setattr(shard, "log", log)
        with trio.fail_after(5):
            response = await broker.handlers.fetch(
                broker.handler_context(),
                FetchRequest(
                    (FetchPartition("a", 0, 0, 1 << 20), FetchPartition("b", 0, 0, 1 << 20)),
                    max_wait_ms=3000,
                ),
            )
        codes = {
            p.topic: (0 if p.error is None else p.error.kafka_error_code)
            for p in response.partitions
        }
        assert codes == {"a": ErrorCode.kafka_storage_error, "b": 0}


async def test_a_damaged_offsets_log_costs_its_groups_not_the_broker(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with trioring.open_broker(config(data)) as broker:
        await broker.create_topic("a", 1)
        metadata = broker.cluster.current
        damaged_group = "group-0"
        healthy_group = next(
            f"group-{i}"
            for i in range(1, 100)
            if metadata.offsets_partition(f"group-{i}") != metadata.offsets_partition(damaged_group)
        )
        await broker.commit_offsets(damaged_group, {("a", 0): 1})
        await broker.commit_offsets(healthy_group, {("a", 0): 2})
        damaged_partition = metadata.offsets_partition(damaged_group)
    segment = data / f"__consumer_offsets-{damaged_partition}" / f"{0:020d}.log"
    content = bytearray(segment.read_bytes())
    content[-3] ^= 1  # the commit's records: only the CRC notices
    segment.write_bytes(bytes(content))

    async with trioring.open_broker(config(data)) as broker:
        with pytest.raises(GroupCoordinatorError) as refused:
            await broker.committed_offsets(damaged_group)
        assert refused.value.kafka_error_code == ErrorCode.not_coordinator
        assert "damaged" in str(refused.value)
        assert await broker.committed_offsets(healthy_group) == {("a", 0): 2}
        await broker.produce("a", 0, records(b"fine"))

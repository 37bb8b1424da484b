"""A full disk: Kafka's KAFKA_STORAGE_ERROR, no debris, a log line a minute, recovery.

Before: CreateTopics on a full disk answered UNKNOWN (-1) with a logged
traceback and left ``topics.json.tmp`` behind for good, and failed produces
logged nothing.
"""

from __future__ import annotations

import datetime
import errno
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from kio.schema.create_topics.v3.request import CreatableTopic, CreateTopicsRequest
from kio.schema.errors import ErrorCode
from kio.schema.produce.v7.request import PartitionProduceData, ProduceRequest, TopicProduceData
from kio.static.primitive import i16, i32, i32Timedelta
from server_support import exchange, running_server

import trioring
from trioring import Record
from trioring.cluster.model import METADATA_LOG_DIRECTORY
from trioring.protocol.kafka import ApiKey
from trioring.protocol.records import build_batch
from trioring.testing import BrokerProcess
from trioring.uring import FallbackBackend

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "interop"))
from interop_wire import broker_log


def create_topics_request(name: str, partitions: int = 2) -> Any:
    return CreateTopicsRequest(
        topics=(
            CreatableTopic(
                name=name,  # type: ignore[arg-type]
                num_partitions=i32(partitions),
                replication_factor=i16(1),
                assignments=(),
                configs=(),
            ),
        ),
        timeout=i32Timedelta.parse(datetime.timedelta(seconds=5)),
        validate_only=False,
    )


def produce_request(topic: str, value: bytes, acks: int = 1) -> Any:
    return ProduceRequest(
        transactional_id=None,
        acks=i16(acks),
        timeout=i32Timedelta.parse(datetime.timedelta(seconds=5)),
        topic_data=(
            TopicProduceData(
                name=topic,  # type: ignore[arg-type]
                partition_data=(
                    PartitionProduceData(index=i32(0), records=build_batch([Record(value=value)])),
                ),
            ),
        ),
    )


def metadata_log_bytes(data: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted((data / METADATA_LOG_DIRECTORY).glob("*.log")))


def temporary_files(directory: Path) -> list[Path]:
    return sorted(path for path in directory.rglob("*.tmp"))


class FullDiskBackend(FallbackBackend):
    """Creating files and directories and writing them fail with ENOSPC once ``full``."""

    def __init__(self) -> None:
        super().__init__()
        self.full = False

    def _refuse(self) -> None:
        if self.full:
            raise OSError(errno.ENOSPC, "No space left on device (injected)")

    async def open(self, path: str, flags: int, mode: int = 0o644) -> int:
        if flags & os.O_CREAT:
            self._refuse()
        return await super().open(path, flags, mode)

    async def make_directory(self, path: str) -> bool:
        self._refuse()
        return await super().make_directory(path)

    @property
    def writes_inline(self) -> bool:
        return False  # every write through pwritev, so it can fail

    async def pwritev(self, fd: int, buffers: Any, offset: int) -> int:
        self._refuse()
        return await super().pwritev(fd, buffers, offset)


async def test_create_topics_on_a_full_disk_is_a_storage_error_and_leaves_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    backend = FullDiskBackend()
    data = tmp_path / "data"
    async with running_server(data, backend=backend) as (broker, server):
        await broker.create_topic("existing")
        metadata_before = metadata_log_bytes(data)
        backend.full = True
        response = await trioring_exchange(server.port, create_topics_request("new", 3))
        (result,) = response.topics
        assert int(result.error_code) == ErrorCode.kafka_storage_error
        assert "No space left" in (result.error_message or "")
        assert temporary_files(data) == []
        assert not list(data.glob("new-*")), "no partition directory of the failed topic"
        assert metadata_log_bytes(data) == metadata_before
        assert "new" not in broker.topics()
        # Space again: the same request succeeds.
        backend.full = False
        response = await trioring_exchange(server.port, create_topics_request("new", 3))
        assert int(response.topics[0].error_code) == 0
        assert sorted(p.name for p in data.glob("new-*")) == ["new-0", "new-1", "new-2"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


async def trioring_exchange(port: int, request: Any) -> Any:
    """The blocking helper, off the Trio thread."""
    return await trio.to_thread.run_sync(exchange, port, ApiKey.CREATE_TOPICS, 3, request)


async def test_temporary_files_left_by_a_crash_are_removed_at_start(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with trioring.open_broker(data) as broker:
        await broker.create_topic("kept")
    debris = data / "kept-0" / "recovery-point.tmp"
    debris.write_bytes(b"half a recovery po")
    async with trioring.open_broker(data) as broker:
        assert "kept" in broker.topics()
    assert not debris.exists()


# --- a real full file system -----------------------------------------------------------------


@pytest.fixture
def small_file_system(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs, mounted for the test (root only; skipped where mounting is refused)."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(directory: Path) -> Path:
    """Write a file until the file system is full; return it."""
    filler = directory / "filler"
    with open(filler, "wb") as handle:
        try:
            while True:
                handle.write(b"\x00" * 65536)
                handle.flush()
        except OSError as error:
            assert error.errno == errno.ENOSPC
    return filler


@pytest.mark.slow
def test_a_real_full_disk(small_file_system: Path, tmp_path: Path) -> None:
    data = small_file_system / "data"
    with BrokerProcess(
        data, extra_arguments=["--segment-bytes", "65536"], log_path=tmp_path / "broker.log"
    ) as broker:
        assert (
            int(
                exchange(broker.port, ApiKey.CREATE_TOPICS, 3, create_topics_request("a", 1))
                .topics[0]
                .error_code
            )
            == 0
        )
        filler = fill(small_file_system)
        # CreateTopics: KAFKA_STORAGE_ERROR, nothing left behind.
        response = exchange(broker.port, ApiKey.CREATE_TOPICS, 3, create_topics_request("b", 4))
        assert int(response.topics[0].error_code) == ErrorCode.kafka_storage_error
        assert temporary_files(data) == []
        assert not list(data.glob("b-*"))
        # Produces fail with KAFKA_STORAGE_ERROR (the disk is full), the broker stays up...
        codes = set()
        for index in range(30):
            produced = exchange(
                broker.port, ApiKey.PRODUCE, 7, produce_request("a", b"x" * 8192 + bytes([index]))
            )
            codes.add(int(produced.responses[0].partition_responses[0].error_code))
        assert ErrorCode.kafka_storage_error in codes, codes
        # ... and logs the failures once a minute per partition, not once each.
        failure_lines = [line for line in broker_log(broker).splitlines() if "appends fail" in line]
        assert len(failure_lines) == 1, failure_lines
        # Space again: writing resumes by itself.
        filler.unlink()
        produced = exchange(broker.port, ApiKey.PRODUCE, 7, produce_request("a", b"after"))
        assert int(produced.responses[0].partition_responses[0].error_code) == 0
        response = exchange(broker.port, ApiKey.CREATE_TOPICS, 3, create_topics_request("b", 4))
        assert int(response.topics[0].error_code) == 0
        code = broker.stop()
    assert code == 0
    log = broker_log(broker)
    assert "Traceback" not in log, log[-3000:]

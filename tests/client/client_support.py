"""The two transports the client tests run over (not a test module).

A :class:`Target` is what a test body needs of the broker besides the client
under test: what to pass as ``bootstrap_or_broker``, and independent ways to
create topics, write records and look at what the broker holds.

- :class:`WireTarget`: a trioring broker process; the client speaks the Kafka
  protocol to it, and the test's own writes and reads go through
  confluent-kafka (librdkafka) or raw CreateTopics.
- :class:`EmbeddedTarget`: ``trioring.open_broker`` in the test's Trio run;
  the client reaches it in-process, and the test writes and reads through
  the embedded broker's own API (its handlers, not the client's code).
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

import trioring
from trioring.testing import BrokerProcess
from trioring.uring._uring import uring_unavailable_reason

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "interop"))
from interop_clients import Consumed, Record, confluent_consumer, confluent_produce
from interop_wire import broker_log, unexpected_log_lines
from interop_wire import create_topic as create_topic_raw

#: Seconds a test's own read of a topic may take.
READ_SECONDS = 20.0
#: The test ids of the two transports.
WIRE, EMBEDDED = "wire", "embedded"


class Target:
    """One broker to test the client against (see the module docstring)."""

    #: WIRE or EMBEDDED.
    transport: str
    #: What the client is given: "host:port", or the embedded Broker.
    connect: str | trioring.Broker

    async def create_topic(self, name: str, partitions: int) -> None:
        raise NotImplementedError

    async def produce(
        self,
        topic: str,
        records: Sequence[Record],
        compression: str = "none",
        batch_bytes: int = 1_000_000,
    ) -> None:
        """Write ``records`` (each to its ``partition``), in batches of about ``batch_bytes``."""
        raise NotImplementedError

    async def read_all(self, topic: str, count: int) -> list[Consumed]:
        """Every record of ``topic`` from the beginning: ``count`` of them, and any
        more that are there (a record written twice shows)."""
        raise NotImplementedError

    async def records_in(self, topic: str) -> int:
        """How many records the topic's partitions hold (their log end offsets)."""
        raise NotImplementedError

    async def partition_count(self, topic: str) -> int:
        raise NotImplementedError

    async def commit(self, group: str, offsets: dict[tuple[str, int], int]) -> None:
        """Commit for ``group`` from outside the client under test."""
        raise NotImplementedError

    async def committed(self, group: str, partitions: Iterable[tuple[str, int]]) -> list[int]:
        """The group's committed offsets, as seen from outside the client (-1: none)."""
        raise NotImplementedError


def topic_name(prefix: str = "client") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class WireTarget(Target):
    transport = WIRE

    def __init__(self, process: BrokerProcess) -> None:
        self.process = process
        self.connect = process.bootstrap

    async def create_topic(self, name: str, partitions: int) -> None:
        create_topic_raw(self.process.port, name, partitions)
        await trio.lowlevel.checkpoint()

    async def produce(
        self,
        topic: str,
        records: Sequence[Record],
        compression: str = "none",
        batch_bytes: int = 1_000_000,
    ) -> None:
        config = {"compression.type": compression, "batch.size": batch_bytes}
        await trio.to_thread.run_sync(
            lambda: confluent_produce(self.process.bootstrap, topic, records, **config)
        )

    async def read_all(self, topic: str, count: int) -> list[Consumed]:
        return await trio.to_thread.run_sync(self._read_all, topic, count)

    def _read_all(self, topic: str, count: int) -> list[Consumed]:
        consumer = confluent_consumer(
            self.process.bootstrap, **{"group.id": f"reader-{uuid.uuid4().hex[:8]}"}
        )
        consumer.subscribe([topic])
        read: list[Consumed] = []
        deadline = time.monotonic() + READ_SECONDS
        try:
            while len(read) < count and time.monotonic() < deadline:
                message = consumer.poll(0.2)
                if message is not None and message.error() is None:
                    read.append(_consumed(message))
            # Anything beyond ``count`` (a duplicate) would come now.
            extra = consumer.poll(0.5)
            if extra is not None and extra.error() is None:
                read.append(_consumed(extra))
        finally:
            consumer.close()
        return read

    async def records_in(self, topic: str) -> int:
        return await trio.to_thread.run_sync(self._records_in, topic)

    def _records_in(self, topic: str) -> int:
        confluent_kafka = pytest.importorskip("confluent_kafka")
        consumer = confluent_consumer(self.process.bootstrap)
        try:
            partitions = consumer.list_topics(topic, timeout=READ_SECONDS).topics[topic].partitions
            return sum(
                consumer.get_watermark_offsets(
                    confluent_kafka.TopicPartition(topic, partition), timeout=READ_SECONDS
                )[1]
                for partition in partitions
            )
        finally:
            consumer.close()

    async def partition_count(self, topic: str) -> int:
        def count() -> int:
            admin = pytest.importorskip("confluent_kafka.admin")
            client = admin.AdminClient({"bootstrap.servers": self.process.bootstrap})
            return len(client.list_topics(topic, timeout=10).topics[topic].partitions)

        return await trio.to_thread.run_sync(count)

    async def commit(self, group: str, offsets: dict[tuple[str, int], int]) -> None:
        def commit() -> None:
            confluent_kafka = pytest.importorskip("confluent_kafka")
            consumer = confluent_consumer(self.process.bootstrap, **{"group.id": group})
            try:
                consumer.commit(
                    offsets=[
                        confluent_kafka.TopicPartition(topic, partition, offset)
                        for (topic, partition), offset in offsets.items()
                    ],
                    asynchronous=False,
                )
            finally:
                consumer.close()

        await trio.to_thread.run_sync(commit)

    async def committed(self, group: str, partitions: Iterable[tuple[str, int]]) -> list[int]:
        wanted = list(partitions)

        def committed() -> list[int]:
            confluent_kafka = pytest.importorskip("confluent_kafka")
            reader = confluent_consumer(self.process.bootstrap, **{"group.id": group})
            try:
                found = reader.committed(
                    [confluent_kafka.TopicPartition(t, p) for t, p in wanted],
                    timeout=READ_SECONDS,
                )
            finally:
                reader.close()
            return [tp.offset for tp in found]

        return await trio.to_thread.run_sync(committed)


def _consumed(message: Any) -> Consumed:
    return Consumed(
        message.partition(),
        message.offset(),
        message.key(),
        message.value(),
        tuple((str(name), value) for name, value in message.headers() or ()),
        message.timestamp()[1],
    )


class EmbeddedTarget(Target):
    transport = EMBEDDED

    def __init__(self, broker: trioring.Broker) -> None:
        self.broker = broker
        self.connect = broker

    async def create_topic(self, name: str, partitions: int) -> None:
        await self.broker.create_topic(name, partitions)

    async def produce(
        self,
        topic: str,
        records: Sequence[Record],
        compression: str = "none",
        batch_bytes: int = 1_000_000,
    ) -> None:
        # One batch per run of records of a partition, cut at about batch_bytes.
        batch: list[trioring.Record] = []
        batch_partition, size = None, 0
        for record in [*records, None]:
            if batch and (
                record is None
                or record.partition != batch_partition
                or size + _size(record) > batch_bytes
            ):
                assert batch_partition is not None
                await self.broker.produce(topic, batch_partition, batch, compression=compression)
                batch, size = [], 0
            if record is None:
                break
            assert record.partition is not None, "the embedded target has no partitioner"
            batch_partition = record.partition
            size += _size(record)
            batch.append(
                trioring.Record(
                    key=record.key,
                    value=record.value,
                    headers=record.headers,
                    timestamp_ms=record.timestamp_ms,
                )
            )

    async def read_all(self, topic: str, count: int) -> list[Consumed]:
        read = []
        for partition in range(len(self.broker.topics()[topic].owners)):
            offset = 0
            while True:
                fetched = await self.broker.fetch(topic, partition, offset)
                for record in fetched.records:
                    assert record.offset is not None and record.timestamp_ms is not None
                    read.append(
                        Consumed(
                            partition,
                            record.offset,
                            record.key,
                            record.value,
                            tuple(record.headers),
                            record.timestamp_ms,
                        )
                    )
                if fetched.next_offset is None:
                    break
                offset = fetched.next_offset
        return read

    async def records_in(self, topic: str) -> int:
        return sum(
            [
                await self.broker.list_offset(topic, partition, "latest")
                for partition in range(len(self.broker.topics()[topic].owners))
            ]
        )

    async def partition_count(self, topic: str) -> int:
        await trio.lowlevel.checkpoint()
        return len(self.broker.topics()[topic].owners)

    async def commit(self, group: str, offsets: dict[tuple[str, int], int]) -> None:
        await self.broker.commit_offsets(group, offsets)

    async def committed(self, group: str, partitions: Iterable[tuple[str, int]]) -> list[int]:
        offsets = await self.broker.committed_offsets(group)
        return [offsets.get(tp, -1) for tp in partitions]


def _size(record: Record) -> int:
    return len(record.key or b"") + len(record.value or b"") + 20


@asynccontextmanager
async def open_target(process: BrokerProcess | None, data_dir: Path) -> AsyncIterator[Target]:
    """The process's WireTarget, or (None) an embedded broker on ``data_dir``."""
    if process is not None:
        await trio.lowlevel.checkpoint()
        yield WireTarget(process)
        return
    async with trioring.open_broker(data_dir) as broker:
        yield EmbeddedTarget(broker)


def run_broker_process(
    data_dir: Path, workers: int = 1, config: str | None = None
) -> Iterator[BrokerProcess]:
    """A broker process (io_uring where it works) for a fixture to yield from: stopped
    afterwards, and failed on a non-zero exit or an error in its log. ``config`` is
    the text of a TOML config file."""
    arguments = ["--io-backend", "uring" if uring_unavailable_reason() is None else "fallback"]
    if config is not None:
        path = data_dir.parent / "broker.toml"
        path.write_text(config)
        arguments += ["--config", str(path)]
    with BrokerProcess(data_dir, extra_arguments=arguments, workers=workers) as broker:
        yield broker
        running = broker.process is not None
        code = broker.stop()
    assert not running or code == 0, f"broker exited {code}; log:\n{broker_log(broker)[-3000:]}"
    bad = unexpected_log_lines(broker)
    assert not bad, "broker logged errors:\n" + "\n".join(bad[:20])

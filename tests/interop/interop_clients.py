"""Real Kafka clients driven the same way: produce a list of records, consume them back.

Each client's module is imported lazily (the test skips if it is missing);
kafka-python 3 is imported with its DeprecationWarning silenced, as its JSON
schema loader uses the deprecated importlib.resources.read_text at import time.

Every loop here is bounded by a deadline.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
import warnings
from collections.abc import Iterable, Sequence
from types import ModuleType
from typing import Any

import pytest

#: Seconds a produce or consume helper may take before the test fails.
CLIENT_SECONDS = 60.0

Headers = tuple[tuple[str, bytes | None], ...]


def import_kafka_python() -> ModuleType:
    """kafka-python 3 (``kafka``) with its admin and error modules, or skip."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        kafka = pytest.importorskip("kafka")
        if not hasattr(kafka, "KafkaAdminClient"):
            pytest.skip("needs kafka-python with KafkaAdminClient")
        pytest.importorskip("kafka.admin")
        pytest.importorskip("kafka.errors")
    version = tuple(int(part) for part in kafka.__version__.split(".")[:1])
    if version < (3,):
        pytest.skip(f"needs kafka-python 3, found {kafka.__version__}")
    return kafka


@dataclasses.dataclass(frozen=True)
class Record:
    """What a test sends. ``partition`` None lets the client's partitioner choose."""

    key: bytes | None
    value: bytes | None
    headers: Headers = ()
    timestamp_ms: int | None = None
    partition: int | None = None


@dataclasses.dataclass(frozen=True)
class Consumed:
    """What a client returned, normalised across clients."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers
    timestamp_ms: int

    def same_content(self, record: Record) -> bool:
        return (self.key, self.value, self.headers) == (
            record.key,
            record.value,
            record.headers,
        ) and (record.timestamp_ms is None or record.timestamp_ms == self.timestamp_ms)


def normalise_headers(headers: Iterable[Any] | None) -> Headers:
    return tuple((str(name), value) for name, value in (headers or ()))


def sample_records(
    count: int,
    *,
    partitions: int,
    null_record_ok: bool,
    null_header_ok: bool,
    seed: int = 7,
) -> list[Record]:
    """A varied, deterministic set of records: null/empty keys and values, big
    compressible and incompressible values, duplicate/unicode/empty headers,
    explicit CreateTime timestamps, and every tenth record on an explicit
    partition (so every partition gets data whatever the partitioner does).
    """
    rng = random.Random(seed)
    base_ms = int(time.time() * 1000) - 3_600_000
    records = []
    for index in range(count):
        values: list[bytes | None] = [
            None,
            b"",
            (b"interop text %d, " % index) * 1200,  # ~20 KiB, compresses well
            rng.randbytes(rng.randrange(1, 400)),
            bytes(range(256)),
            "välue ✓ %d".encode() % index,
            b"\x00" * 100,
            b"v%d" % index,
        ]
        value = values[index % len(values)]
        keys: list[bytes | None] = [None, b"", b"key-%d" % (index % 7), b"\xff\x00key"]
        key = keys[index % len(keys)]
        if key is None and value is None and not null_record_ok:
            key = b"key-for-null-value"
        header_sets: list[Headers] = [
            (),
            (("h", b"v"),),
            (("dup", b"1"), ("dup", b"2")),
            (("empty", b""),),
            (("ключ", b"\x00\xff"), ("null", None if null_header_ok else b"-")),
            tuple((f"h{j}", b"%d" % j) for j in range(10)),
        ]
        headers = header_sets[index % len(header_sets)]
        partition = (index // 10) % partitions if index % 10 == 0 else None
        records.append(Record(key, value, headers, base_ms + index * 7, partition))
    return records


def check_round_trip(
    sent: Sequence[Record],
    delivered: Sequence[tuple[int, int]],
    consumed: Sequence[Consumed],
    partitions: int,
) -> None:
    """Every record arrives exactly once, byte-exact, in send order per partition.

    ``delivered[i]`` is the (partition, offset) the client reported for
    ``sent[i]``; the topic was empty before.
    """
    assert len(delivered) == len(sent)
    positions = [(c.partition, c.offset) for c in consumed]
    assert len(set(positions)) == len(positions), "a record was consumed twice"
    assert sorted(positions) == sorted(delivered), "consumed records differ from delivered ones"
    for record, (partition, _offset) in zip(sent, delivered, strict=True):
        if record.partition is not None:
            assert partition == record.partition, "an explicit partition was not honoured"
    used = set()
    for partition in range(partitions):
        offsets = [offset for p, offset in delivered if p == partition]
        if offsets:
            used.add(partition)
        # Send order is offset order, starting at 0 with no gap.
        assert offsets == list(range(len(offsets))), f"partition {partition}: offsets {offsets}"
        here = [c for c in consumed if c.partition == partition]
        assert [c.offset for c in here] == offsets, f"partition {partition} consumed out of order"
        expected = [r for r, (p, _) in zip(sent, delivered, strict=True) if p == partition]
        for got, want in zip(here, expected, strict=True):
            assert got.same_content(want), (
                f"partition {partition} offset {got.offset}: {got} != {want}"
            )
    assert used == set(range(partitions)), f"only partitions {sorted(used)} got records"


# --- confluent-kafka (librdkafka) ---------------------------------------------------------


def confluent_produce(
    bootstrap: str, topic: str, records: Sequence[Record], **config: Any
) -> list[tuple[int, int]]:
    """Produce and wait for every delivery report; (partition, offset) per record."""
    confluent_kafka = pytest.importorskip("confluent_kafka")
    producer = confluent_kafka.Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 5, "message.timeout.ms": 60_000, **config}
    )
    results: list[tuple[int, int] | None] = [None] * len(records)
    errors: list[str] = []

    def report(index: int, error: Any, message: Any) -> None:
        if error is not None:
            errors.append(f"record {index}: {error}")
        else:
            results[index] = (message.partition(), message.offset())

    try:
        for index, record in enumerate(records):
            arguments: dict[str, Any] = {
                "key": record.key,
                "value": record.value,
                "on_delivery": lambda error, message, index=index: report(index, error, message),
            }
            if record.headers:
                arguments["headers"] = list(record.headers)
            if record.timestamp_ms is not None:
                arguments["timestamp"] = record.timestamp_ms
            if record.partition is not None:
                arguments["partition"] = record.partition
            producer.produce(topic, **arguments)
            producer.poll(0)
        deadline = time.monotonic() + CLIENT_SECONDS
        while len(producer) and time.monotonic() < deadline:
            producer.flush(0.5)
        assert len(producer) == 0, f"{len(producer)} records undelivered after {CLIENT_SECONDS} s"
    finally:
        close_confluent_producer(producer)
    assert not errors, errors[:5]
    assert None not in results
    return [result for result in results if result is not None]


def close_confluent_producer(producer: Any) -> None:
    """Close without waiting: close() flushes, which could outlast a dead broker."""
    if len(producer):
        producer.purge()
        producer.flush(1)
    producer.close()


def confluent_consumer(bootstrap: str, **config: Any) -> Any:
    confluent_kafka = pytest.importorskip("confluent_kafka")
    return confluent_kafka.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "interop-reader",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "check.crcs": True,
            **config,
        }
    )


def confluent_consume(
    bootstrap: str, topic: str, partitions: int, count: int, **config: Any
) -> list[Consumed]:
    """Assign every partition from the beginning (no group) and read ``count`` records."""
    confluent_kafka = pytest.importorskip("confluent_kafka")
    consumer = confluent_consumer(bootstrap, **config)
    consumed: list[Consumed] = []
    try:
        consumer.assign(
            [
                confluent_kafka.TopicPartition(topic, partition, confluent_kafka.OFFSET_BEGINNING)
                for partition in range(partitions)
            ]
        )
        deadline = time.monotonic() + CLIENT_SECONDS
        while len(consumed) < count:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"consumed {len(consumed)} of {count} in {CLIENT_SECONDS} s"
            for message in consumer.consume(num_messages=1000, timeout=min(remaining, 0.5)):
                assert message.error() is None, message.error()
                timestamp_type, timestamp_ms = message.timestamp()
                assert timestamp_type == confluent_kafka.TIMESTAMP_CREATE_TIME
                consumed.append(
                    Consumed(
                        message.partition(),
                        message.offset(),
                        message.key(),
                        message.value(),
                        normalise_headers(message.headers()),
                        timestamp_ms,
                    )
                )
    finally:
        consumer.close()
    return consumed


# --- kafka-python ------------------------------------------------------------------------


def kafka_python_produce(
    bootstrap: str, topic: str, records: Sequence[Record], **config: Any
) -> list[tuple[int, int]]:
    kafka = import_kafka_python()
    producer = kafka.KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, **config)
    try:
        futures = [
            producer.send(
                topic,
                value=record.value,
                key=record.key,
                headers=list(record.headers),
                partition=record.partition,
                timestamp_ms=record.timestamp_ms,
            )
            for record in records
        ]
        producer.flush(timeout=CLIENT_SECONDS)
        metadata = [future.get(timeout=CLIENT_SECONDS) for future in futures]
    finally:
        producer.close(timeout=10)
    return [(m.partition, m.offset) for m in metadata]


def kafka_python_consume(
    bootstrap: str, topic: str, partitions: int, count: int, **config: Any
) -> list[Consumed]:
    kafka = import_kafka_python()
    consumer = kafka.KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        check_crcs=True,
        **config,
    )
    consumed: list[Consumed] = []
    try:
        consumer.assign([kafka.TopicPartition(topic, p) for p in range(partitions)])
        consumer.seek_to_beginning()
        deadline = time.monotonic() + CLIENT_SECONDS
        while len(consumed) < count:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"consumed {len(consumed)} of {count} in {CLIENT_SECONDS} s"
            batches = consumer.poll(timeout_ms=int(min(remaining, 0.5) * 1000), max_records=1000)
            for messages in batches.values():
                for message in messages:
                    assert message.timestamp_type == 0  # CreateTime
                    consumed.append(
                        Consumed(
                            message.partition,
                            message.offset,
                            message.key,
                            message.value,
                            normalise_headers(message.headers),
                            message.timestamp,
                        )
                    )
    finally:
        consumer.close()
    return consumed


# --- aiokafka (asyncio) ------------------------------------------------------------------------


def aiokafka_produce(
    bootstrap: str, topic: str, records: Sequence[Record], **config: Any
) -> list[tuple[int, int]]:
    aiokafka = pytest.importorskip("aiokafka")

    async def main() -> list[tuple[int, int]]:
        producer = aiokafka.AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, **config)
        await producer.start()
        try:
            async with asyncio.timeout(CLIENT_SECONDS):
                futures = [
                    await producer.send(
                        topic,
                        value=record.value,
                        key=record.key,
                        headers=list(record.headers),
                        partition=record.partition,
                        timestamp_ms=record.timestamp_ms,
                    )
                    for record in records
                ]
                metadata = await asyncio.gather(*futures)
        finally:
            await producer.stop()
        return [(m.partition, m.offset) for m in metadata]

    return asyncio.run(main())


def aiokafka_consume(
    bootstrap: str, topic: str, partitions: int, count: int, **config: Any
) -> list[Consumed]:
    aiokafka = pytest.importorskip("aiokafka")

    async def main() -> list[Consumed]:
        consumer = aiokafka.AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            check_crcs=True,
            **config,
        )
        await consumer.start()
        consumed: list[Consumed] = []
        try:
            consumer.assign([aiokafka.TopicPartition(topic, p) for p in range(partitions)])
            await consumer.seek_to_beginning()
            async with asyncio.timeout(CLIENT_SECONDS):
                while len(consumed) < count:
                    batches = await consumer.getmany(timeout_ms=500, max_records=1000)
                    for messages in batches.values():
                        for message in messages:
                            assert message.timestamp_type == 0  # CreateTime
                            consumed.append(
                                Consumed(
                                    message.partition,
                                    message.offset,
                                    message.key,
                                    message.value,
                                    normalise_headers(message.headers),
                                    message.timestamp,
                                )
                            )
        finally:
            await consumer.stop()
        return consumed

    return asyncio.run(main())


PRODUCERS = {
    "confluent-kafka": confluent_produce,
    "kafka-python": kafka_python_produce,
    "aiokafka": aiokafka_produce,
}
CONSUMERS = {
    "confluent-kafka": confluent_consume,
    "kafka-python": kafka_python_consume,
    "aiokafka": aiokafka_consume,
}
#: Which unusual shapes each client can send.
NULL_RECORD_OK = {"confluent-kafka": True, "kafka-python": False, "aiokafka": False}
NULL_HEADER_OK = {"confluent-kafka": True, "kafka-python": False, "aiokafka": True}
#: How each client names its compression setting.
COMPRESSION_OPTION = {
    "confluent-kafka": "compression.type",
    "kafka-python": "compression_type",
    "aiokafka": "compression_type",
}

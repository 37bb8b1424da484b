"""trioring.client with the other Python clients: what the Trio producer writes, kafka-python
and aiokafka read byte-exact; what they write, the Trio consumer reads byte-exact."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from trioring.client import open_consumer, open_producer
from trioring.testing import BrokerProcess

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "interop"))
from interop_clients import (
    Consumed,
    Record,
    aiokafka_consume,
    aiokafka_produce,
    check_round_trip,
    kafka_python_consume,
    kafka_python_produce,
    sample_records,
)
from interop_wire import create_topic

PARTITIONS = 3
COUNT = 120
READERS = {"kafka-python": kafka_python_consume, "aiokafka": aiokafka_consume}
WRITERS = {"kafka-python": kafka_python_produce, "aiokafka": aiokafka_produce}


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    with BrokerProcess(tmp_path_factory.mktemp("interop") / "data", workers=2) as process:
        yield process
        code = process.stop()
    assert code == 0


def new_topic(broker: BrokerProcess) -> str:
    topic = f"trio-interop-{uuid.uuid4().hex[:8]}"
    create_topic(broker.port, topic, PARTITIONS)
    return topic


@pytest.mark.parametrize("compression", ["none", "zstd"])
@pytest.mark.parametrize("reader", sorted(READERS))
def test_trio_producer_records_are_read_byte_exact(
    broker: BrokerProcess, reader: str, compression: str
) -> None:
    topic = new_topic(broker)
    sent = sample_records(COUNT, partitions=PARTITIONS, null_record_ok=True, null_header_ok=True)

    async def produce() -> list[tuple[int, int]]:
        async with open_producer(broker.bootstrap, compression=compression) as producer:
            handles = [
                producer.send_nowait(
                    topic,
                    record.value,
                    key=record.key,
                    headers=record.headers,
                    partition=record.partition,
                    timestamp_ms=record.timestamp_ms,
                )
                for record in sent
            ]
        return [(h.result().partition, h.result().offset) for h in handles]

    delivered = trio.run(produce)
    consumed = READERS[reader](broker.bootstrap, topic, PARTITIONS, len(sent))
    check_round_trip(sent, delivered, consumed, PARTITIONS)


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_records_of_other_clients_are_read_byte_exact_by_the_trio_consumer(
    broker: BrokerProcess, writer: str
) -> None:
    topic = new_topic(broker)
    # Neither client sends a record with a null key and value, nor a null header value.
    sent: list[Record] = sample_records(
        COUNT, partitions=PARTITIONS, null_record_ok=False, null_header_ok=False
    )
    delivered = WRITERS[writer](broker.bootstrap, topic, sent)

    async def consume() -> list[Consumed]:
        consumed: list[Consumed] = []
        async with open_consumer(broker.bootstrap, auto_offset_reset="earliest") as consumer:
            consumer.assign([(topic, p) for p in range(PARTITIONS)])
            with trio.fail_after(30):
                async for record in consumer:
                    consumed.append(
                        Consumed(
                            record.partition,
                            record.offset,
                            record.key,
                            record.value,
                            tuple(record.headers),
                            record.timestamp_ms,
                        )
                    )
                    if len(consumed) == len(sent):
                        break
        return consumed

    check_round_trip(sent, delivered, trio.run(consume), PARTITIONS)

"""trioring.client's consumer against aiokafka and confluent-kafka, in one run, as ratios.

One trioring broker process (defaults) on 127.0.0.1. For each record size a
one-partition topic is filled once with ``--mib`` MiB of record values (by
confluent-kafka, batched, uncompressed); then each client in turn reads the
whole topic from offset 0, ``--repeat`` times in rotating order so drift in
the machine's other load is spread over all three. Reported: MB/s (10^6 bytes
of record values per second, the median of the repeats) from the first record
in the reader's hands to the last, the ratio of trioring.client to each other
client, and each client's start-up (from assign to the first record):
librdkafka takes about a second to start, which would otherwise swamp a short
run.

Every client reads by assignment (no group), with the same fetch sizes:
1 MiB per partition, 50 MiB per fetch, and batches of up to 500 records
handed to the reader (max.poll.records).

    python benchmarks/client_consumer.py --mib 64 --repeat 3
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import trio
from aiokafka import AIOKafkaConsumer, TopicPartition
from confluent_kafka import Consumer, Producer
from confluent_kafka import TopicPartition as ConfluentPartition
from confluent_kafka.admin import AdminClient, NewTopic

from trioring.client import open_consumer
from trioring.testing import BrokerProcess

PARTITION_FETCH_BYTES = 1 << 20
FETCH_BYTES = 50 << 20
RECORDS_PER_READ = 500


def fill_topic(bootstrap: str, size: int, count: int) -> str:
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, 1, 1)]).values():
        future.result(30)
    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 5, "batch.size": 1 << 20, "acks": "1"}
    )
    value = b"x" * size
    for _ in range(count):
        while True:
            try:
                producer.produce(topic, value)
                break
            except BufferError:
                producer.poll(0.01)
    assert producer.flush(120) == 0
    return topic


#: (seconds to the first record, seconds from it to the last, records read).
Timing = tuple[float, float, int]


def run_trioring(bootstrap: str, topic: str, count: int) -> Timing:
    async def main() -> float:
        async with open_consumer(
            bootstrap,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=PARTITION_FETCH_BYTES,
            fetch_max_bytes=FETCH_BYTES,
        ) as consumer:
            start = time.perf_counter()
            consumer.assign([(topic, 0)])
            got = len(await consumer.getmany(max_records=RECORDS_PER_READ))
            first = time.perf_counter()
            while got < count:
                got += len(await consumer.getmany(max_records=RECORDS_PER_READ))
            return first - start, time.perf_counter() - first, got

    return trio.run(main)


def run_aiokafka(bootstrap: str, topic: str, count: int) -> Timing:
    async def main() -> float:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=PARTITION_FETCH_BYTES,
            fetch_max_bytes=FETCH_BYTES,
        )
        await consumer.start()
        try:
            start = time.perf_counter()
            consumer.assign([TopicPartition(topic, 0)])
            got = 0
            while not got:
                batches = await consumer.getmany(timeout_ms=1000, max_records=RECORDS_PER_READ)
                got += sum(map(len, batches.values()))
            first = time.perf_counter()
            while got < count:
                batches = await consumer.getmany(timeout_ms=1000, max_records=RECORDS_PER_READ)
                got += sum(map(len, batches.values()))
            return first - start, time.perf_counter() - first, got
        finally:
            await consumer.stop()

    return asyncio.run(main())


def run_confluent(bootstrap: str, topic: str, count: int) -> Timing:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "bench",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "max.partition.fetch.bytes": PARTITION_FETCH_BYTES,
            "fetch.max.bytes": FETCH_BYTES,
        }
    )
    try:
        start = time.perf_counter()
        consumer.assign([ConfluentPartition(topic, 0, 0)])
        got = 0
        first = 0.0
        while got < count:
            # consume() waits for as many as it is asked for: never ask for more than are left.
            messages = consumer.consume(min(RECORDS_PER_READ, count - got), 1.0)
            for message in messages:
                assert message.error() is None, message.error()
            if messages and not got:
                first = time.perf_counter()
            got += len(messages)
        return first - start, time.perf_counter() - first, got
    finally:
        consumer.close()


CLIENTS = {"trioring": run_trioring, "aiokafka": run_aiokafka, "confluent": run_confluent}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    arguments = parser.parse_args()
    print(f"{'case':<12} " + " ".join(f"{name:>10}" for name in CLIENTS) + "   ratios")
    with (
        tempfile.TemporaryDirectory() as directory,
        BrokerProcess(Path(directory) / "data") as broker,
    ):
        for size in (100, 1024):
            count = arguments.mib * (1 << 20) // size
            topic = fill_topic(broker.bootstrap, size, count)
            rates: dict[str, list[float]] = {name: [] for name in CLIENTS}
            startups: dict[str, list[float]] = {name: [] for name in CLIENTS}
            names = list(CLIENTS)
            for round_ in range(arguments.repeat):
                for name in names[round_ % 3 :] + names[: round_ % 3]:
                    startup, seconds, got = CLIENTS[name](broker.bootstrap, topic, count)
                    assert got == count, f"{name} read {got} records, not {count}"
                    startups[name].append(startup)
                    # The records after the first read call's, over the time they took.
                    rates[name].append((count - RECORDS_PER_READ) * size / seconds / 1e6)
            rate = {name: statistics.median(values) for name, values in rates.items()}
            print(
                f"{size:>5} B      "
                + " ".join(f"{rate[name]:>10.1f}" for name in CLIENTS)
                + f"   vs aiokafka {rate['trioring'] / rate['aiokafka']:.2f}x,"
                f" vs confluent {rate['trioring'] / rate['confluent']:.2f}x;  start-up s: "
                + ", ".join(f"{name} {statistics.median(startups[name]):.2f}" for name in CLIENTS),
                flush=True,
            )


if __name__ == "__main__":
    main()

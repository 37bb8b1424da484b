"""trioring.client's producer against aiokafka and confluent-kafka, in one run, as ratios.

One trioring broker process (defaults: log segments on disk, fdatasync before
acks=all is answered) on 127.0.0.1; each case produces ``--mib`` MiB of record
values to a fresh one-partition topic, timed from the first send to the end of
the flush, with each client in turn, ``--repeat`` times in rotating order so
drift in the machine's other load is spread over all three. Reported: MB/s
(10^6 bytes of record values per second, the median of the repeats) and the
ratio of trioring.client to each other client.

Settings are the same for every client: linger 5 ms, batches up to 1 MiB, no
compression; acks=all with idempotence on, acks=1 with it off.

    python benchmarks/client_producer.py --mib 64 --repeat 3
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
from aiokafka import AIOKafkaProducer
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from trioring.client import open_producer
from trioring.testing import BrokerProcess

BATCH_BYTES = 1 << 20
#: How often the Trio client's loop lets other tasks run (see run_trioring).
YIELD_EVERY_RECORDS = 100


def create_topic(bootstrap: str) -> str:
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, 1, 1)]).values():
        future.result(30)
    return topic


def run_trioring(bootstrap: str, topic: str, value: bytes, count: int, acks: str) -> float:
    async def main() -> float:
        async with open_producer(
            bootstrap,
            acks="all" if acks == "all" else 1,
            idempotence=acks == "all",
            linger_ms=5,
            batch_bytes=BATCH_BYTES,
        ) as producer:
            start = time.perf_counter()
            for index in range(count):
                try:
                    producer.send_nowait(topic, value)
                except trio.WouldBlock:
                    await producer.send(topic, value)
                if index % YIELD_EVERY_RECORDS == 0:
                    # An app producing from async code yields now and then (aiokafka's
                    # loop awaits every send); without it the sender could not run
                    # until the whole run is queued.
                    await trio.lowlevel.checkpoint()
            await producer.flush()
            return time.perf_counter() - start

    return trio.run(main)


def run_aiokafka(bootstrap: str, topic: str, value: bytes, count: int, acks: str) -> float:
    async def main() -> float:
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all" if acks == "all" else 1,
            enable_idempotence=acks == "all",
            linger_ms=5,
            max_batch_size=BATCH_BYTES,
            max_request_size=2 * BATCH_BYTES,
        )
        await producer.start()
        try:
            start = time.perf_counter()
            for _ in range(count):
                await producer.send(topic, value)
            await producer.flush()
            return time.perf_counter() - start
        finally:
            await producer.stop()

    return asyncio.run(main())


def run_confluent(bootstrap: str, topic: str, value: bytes, count: int, acks: str) -> float:
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all" if acks == "all" else "1",
            "enable.idempotence": acks == "all",
            "linger.ms": 5,
            "batch.size": BATCH_BYTES,
        }
    )
    start = time.perf_counter()
    for _ in range(count):
        while True:
            try:
                producer.produce(topic, value)
                break
            except BufferError:
                producer.poll(0.01)
    producer.flush(120)
    return time.perf_counter() - start


CLIENTS = {"trioring": run_trioring, "aiokafka": run_aiokafka, "confluent": run_confluent}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    arguments = parser.parse_args()
    print(f"{'case':<22} " + " ".join(f"{name:>10}" for name in CLIENTS) + "   ratios")
    with (
        tempfile.TemporaryDirectory() as directory,
        BrokerProcess(Path(directory) / "data") as broker,
    ):
        for size in (100, 1024):
            for acks in ("1", "all"):
                value = b"x" * size
                count = arguments.mib * (1 << 20) // size
                times: dict[str, list[float]] = {name: [] for name in CLIENTS}
                names = list(CLIENTS)
                for round_ in range(arguments.repeat):
                    for name in names[round_ % 3 :] + names[: round_ % 3]:
                        topic = create_topic(broker.bootstrap)
                        times[name].append(
                            CLIENTS[name](broker.bootstrap, topic, value, count, acks)
                        )
                rates = {
                    name: count * size / statistics.median(seconds) / 1e6
                    for name, seconds in times.items()
                }
                print(
                    f"{size:>5} B acks={acks:<3}        "
                    + " ".join(f"{rates[name]:>10.1f}" for name in CLIENTS)
                    + f"   vs aiokafka {rates['trioring'] / rates['aiokafka']:.2f}x,"
                    f" vs confluent {rates['trioring'] / rates['confluent']:.2f}x",
                    flush=True,
                )


if __name__ == "__main__":
    main()

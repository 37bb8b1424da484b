"""Child process for tests/test_crash.py: produce with acks="all" until killed.

Usage: python crash_producer.py DATA_DIR ACKS_FILE BACKEND(fallback|volatile)

After each acknowledgement it appends "base_offset producer sequence count"
to ACKS_FILE with an unbuffered write, so a line exists only for data the
broker acknowledged.
"""

from __future__ import annotations

import hashlib
import os
import sys

import trio

import trioring

PRODUCERS = 8
TOPIC = "crash"


def record_value(producer: int, sequence: int, index: int) -> bytes:
    seed = f"{producer}:{sequence}:{index}".encode()
    body = hashlib.sha256(seed).digest() * (1 + (sequence * 7 + index) % 40)
    return seed + b"|" + body


async def main(data_dir: str, acks_path: str, backend_name: str) -> None:
    backend = None
    if backend_name == "volatile":
        sys.path.insert(0, os.path.dirname(__file__))
        from volatile_backend import VolatileBackend  # noqa: PLC0415 - only the child has it on sys.path

        backend = VolatileBackend()
    acks_fd = os.open(acks_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    config = trioring.BrokerConfig(data_dir=data_dir, flush_interval_ms=None)
    async with trioring.open_broker(config, backend=backend) as broker:
        if TOPIC not in broker.topics():
            await broker.create_topic(TOPIC, partitions=1)
        start = os.getpid()

        async def produce(producer: int) -> None:
            sequence = 0
            while True:
                count = 1 + (sequence + producer) % 5
                records = [
                    trioring.Record(key=b"%d" % producer, value=record_value(producer, sequence, i))
                    for i in range(count)
                ]
                result = await broker.produce(TOPIC, 0, records, acks="all")
                os.write(
                    acks_fd,
                    f"{result.base_offset} {producer}:{start} {sequence} {count}\n".encode(),
                )
                sequence += 1

        async with trio.open_nursery() as nursery:
            for producer in range(PRODUCERS):
                nursery.start_soon(produce, producer)


if __name__ == "__main__":
    trio.run(main, *sys.argv[1:4])

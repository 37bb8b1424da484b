"""An idempotent producer of keyed records, printing where each one was written.

Start a broker (``python -m trioring``), then run::

    python examples/producer.py

It writes ``--count`` orders to the topic (``orders``, created with 6
partitions if missing), keyed by customer: records with the same key go to
the same partition, in the order they were sent. Each line it prints is a
delivery result: the partition and offset the broker acknowledged.

The producer is idempotent (the default, with acks="all"): a batch resent
after a timeout or a broken connection is written once, not twice, and
acknowledged only once it is on disk.
"""

from __future__ import annotations

import argparse

import trio

from trioring.client import Admin, SendHandle, open_admin, open_producer
from trioring.errors import KafkaError

PARTITIONS = 6


async def ensure_topic(admin: Admin, topic: str) -> None:
    """Create ``topic`` with 6 partitions, unless it exists."""
    if topic in await admin.list_topics():
        return
    try:
        await admin.create_topic(topic, partitions=PARTITIONS)
    except KafkaError:
        if topic in await admin.list_topics():
            return  # another script created it meanwhile
        raise
    print(f"created topic {topic} with {PARTITIONS} partitions")


async def main(args: argparse.Namespace) -> None:
    async with open_admin(args.bootstrap) as admin:
        await ensure_topic(admin, args.topic)
    async with open_producer(args.bootstrap, acks="all", idempotence=True) as producer:
        handles: list[tuple[bytes, SendHandle]] = []
        for number in range(args.count):
            key = b"customer-%d" % (number % args.keys)
            value = b"order %d" % number
            # send_nowait queues the record and returns at once: records sent
            # together share batches and requests. (await producer.send(...)
            # waits for each record's acknowledgement instead.)
            try:
                handle = producer.send_nowait(args.topic, value, key=key)
            except trio.WouldBlock:  # the buffer is full: let what is queued go first
                await producer.flush()
                handle = producer.send_nowait(args.topic, value, key=key)
            handles.append((key, handle))
        for key, handle in handles:
            where = await handle.wait()  # raises if the record could not be written
            print(f"{key.decode()}: partition {where.partition} offset {where.offset}")
        statistics = producer.statistics()
    print(f"sent {args.count} records as producer id {statistics['producer_id']}")


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092", help="broker address(es)")
    parser.add_argument("--topic", default="orders")
    parser.add_argument("--count", type=int, default=20, help="records to send")
    parser.add_argument("--keys", type=int, default=5, help="distinct keys (customers)")
    return parser.parse_args()


if __name__ == "__main__":
    trio.run(main, parse_arguments())

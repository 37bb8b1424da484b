"""Follow a topic: print its records as they arrive, as ``tail -f`` does a file.

Start a broker (``python -m trioring``), then run::

    python examples/tail.py

and, in another terminal, ``python examples/producer.py``. It reads every
partition of the topic (``orders``, created with 6 partitions if missing)
from its end, so it prints only what is written after it started
(``--from-beginning`` for everything). It is no group member: it commits
nothing, and any number of tails can follow one topic. Each wait for new
records is a long poll at the broker, which answers as soon as one arrives.
It stops after ``--count`` records, or ``--idle-seconds`` without one, if
given; otherwise at Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
from typing import Literal

import trio

from trioring.client import Admin, open_admin, open_consumer
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


async def topic_partitions(bootstrap: str, topic: str) -> list[int]:
    async with open_admin(bootstrap) as admin:
        await ensure_topic(admin, topic)
        info = await admin.describe_topic(topic)
    return [partition.partition for partition in info.partitions]


async def main(args: argparse.Namespace) -> None:
    partitions = [(args.topic, p) for p in await topic_partitions(args.bootstrap, args.topic)]
    # Where a partition starts when no group has a committed offset for it: here, always.
    start: Literal["earliest", "latest"] = "earliest" if args.from_beginning else "latest"
    async with open_consumer(args.bootstrap, auto_offset_reset=start) as consumer:
        consumer.assign(partitions)
        # position() waits until the consumer has asked where each partition starts.
        starts = [f"{p}:{await consumer.position(topic, p)}" for topic, p in partitions]
        # So from here on, nothing written is missed.
        print(f"following {args.topic} from offsets {' '.join(starts)}", flush=True)
        count = 0
        while args.count is None or count < args.count:
            records = await consumer.getmany(
                timeout_s=args.idle_seconds or math.inf,
                max_records=args.count - count if args.count is not None else 1000,
            )
            if not records:
                print(f"nothing new for {args.idle_seconds} s: stopping")
                break
            for record in records:
                key = "-" if record.key is None else record.key.decode(errors="replace")
                value = "-" if record.value is None else record.value.decode(errors="replace")
                print(f"partition {record.partition} offset {record.offset} {key}: {value}")
            count += len(records)
            sys.stdout.flush()  # when piped: one write per batch, but no waiting for more


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092", help="broker address(es)")
    parser.add_argument("--topic", default="orders")
    parser.add_argument("--from-beginning", action="store_true", help="read what is there too")
    parser.add_argument("--count", type=int, help="stop after this many records")
    parser.add_argument("--idle-seconds", type=float, help="stop after this long without one")
    return parser.parse_args()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: stop without a traceback
        trio.run(main, parse_arguments())

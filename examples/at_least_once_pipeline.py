"""Read, process, write: a topic-to-topic pipeline with idempotent writes and late commits.

Start a broker (``python -m trioring``), then run::

    python examples/at_least_once_pipeline.py

As a member of a consumer group it reads the input topic (``orders``; if it
is empty, ``--seed`` sample orders are written to it first), turns each
record into an output record (the value upper-cased, the key kept, so one
customer's orders stay in order), writes it to the output topic
(``orders-processed``) with the idempotent producer, and commits the input
offsets only once the broker has acknowledged every output before them.
It stops after ``--idle-seconds`` without input (0: run until Ctrl-C).
Several copies of it share the input's partitions (one group).

What it guarantees: at-least-once, with idempotent writes.

- Every input record reaches the output: an input offset is committed only
  after the outputs of the records before it are on disk (acks="all"). If a
  write fails, nothing more is committed and the script stops with the error:
  the next run starts again from the last commit.
- Producer retries cause no duplicates: the idempotent producer numbers its
  batches, and a batch sent again after a timeout or a broken connection is
  written once.
- But a crash (or a rebalance that takes a partition away) between the write
  and the commit makes the next owner process those records again and write
  their outputs a second time: the output can hold duplicates. Removing those
  takes Kafka's transactions (outputs and input offsets committed atomically,
  read with isolation_level="read_committed"), which trioring does not have
  yet: so this is not exactly-once. A reader that must not see duplicates can
  drop them by the ``source`` header each output carries (input partition and
  offset).
"""

from __future__ import annotations

import argparse
import contextlib
import math

import trio

from trioring.client import (
    Admin,
    CommitFailedError,
    ConsumerRecord,
    open_admin,
    open_consumer,
    open_producer,
)
from trioring.errors import KafkaError

PARTITIONS = 6
#: Records processed per round: read, write, wait for the acknowledgements, commit.
BATCH_RECORDS_MAX = 500


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


async def prepare_topics(args: argparse.Namespace) -> None:
    async with open_admin(args.bootstrap) as admin:
        for topic in (args.input, args.output):
            await ensure_topic(admin, topic)
        info = await admin.describe_topic(args.input)
        ends = await admin.list_offsets([(args.input, p.partition) for p in info.partitions])
    if not any(ends.values()) and args.seed:
        async with open_producer(args.bootstrap) as producer:
            handles = [
                producer.send_nowait(args.input, b"order %d" % n, key=b"customer-%d" % (n % 5))
                for n in range(args.seed)
            ]
            for handle in handles:
                await handle.wait()  # raises if the record could not be written
        print(f"the input was empty: wrote {args.seed} sample orders to {args.input}")


def transform(record: ConsumerRecord) -> bytes | None:
    return None if record.value is None else record.value.upper()


async def main(args: argparse.Namespace) -> None:
    await prepare_topics(args)
    processed = 0
    assigned = trio.Event()

    async def on_assigned(partitions: set[tuple[str, int]]) -> None:
        print(f"assigned {sorted(p for _, p in partitions)} of {args.input}")
        assigned.set()

    async def on_revoked(partitions: set[tuple[str, int]]) -> None:
        if partitions:
            print(f"revoked {sorted(p for _, p in partitions)}")

    async with (
        open_producer(args.bootstrap, acks="all", idempotence=True) as producer,
        open_consumer(
            args.bootstrap,
            group_id=args.group,
            topics=[args.input],
            auto_offset_reset="earliest",
            # Commits are this script's: after the outputs are acknowledged, never before.
            enable_auto_commit=False,
            on_assigned=on_assigned,
            on_revoked=on_revoked,
        ) as consumer,
    ):
        await assigned.wait()  # the idle time counts from here, not from joining
        idle_seconds = args.idle_seconds or math.inf
        while records := await consumer.getmany(
            timeout_s=idle_seconds, max_records=BATCH_RECORDS_MAX
        ):
            handles = []
            for record in records:
                source = f"{record.topic}/{record.partition}/{record.offset}".encode()
                handles.append(
                    producer.send_nowait(
                        args.output, transform(record), key=record.key, headers=[("source", source)]
                    )
                )
            await producer.flush()  # every output acknowledged, or failed for good
            for handle in handles:
                handle.result()  # a failed one raises here, and nothing is committed
            processed += len(records)
            next_offsets = {(r.topic, r.partition): r.offset + 1 for r in records}
            try:
                await consumer.commit(next_offsets)
            except CommitFailedError as error:
                # The group took partitions away before the commit: their next owner
                # processes these records again (the duplicates said above).
                print(f"processed {processed} records; not committed: {error}")
            else:
                print(f"processed {processed} records; committed {format_offsets(next_offsets)}")
    print(f"no input for {args.idle_seconds} s: stopping after {processed} records")


def format_offsets(offsets: dict[tuple[str, int], int]) -> str:
    return " ".join(f"{partition}:{offset}" for (_, partition), offset in sorted(offsets.items()))


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092", help="broker address(es)")
    parser.add_argument("--input", default="orders", help="topic to read")
    parser.add_argument("--output", default="orders-processed", help="topic to write")
    parser.add_argument("--group", default="order-pipeline", help="consumer group id")
    parser.add_argument("--seed", type=int, default=20, help="orders to write if input is empty")
    parser.add_argument(
        "--idle-seconds", type=float, default=5.0, help="stop after this long without input"
    )
    return parser.parse_args()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: stop without a traceback
        trio.run(main, parse_arguments())

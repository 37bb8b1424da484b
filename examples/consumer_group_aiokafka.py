"""The consumer group of consumer_group.py, with aiokafka (asyncio) members.

Start a broker (``python -m trioring``), then run::

    python examples/consumer_group_aiokafka.py

Same topic (``orders``, created with 6 partitions if missing), same group
(``order-readers``) and same steps as ``consumer_group.py``: a producer writes
``--records`` keyed records while member-1, member-2 and member-3 join one
after another and member-2 leaves early, each step once the group has
settled (plus ``--stagger`` seconds); every member prints the partitions the
group gives it and takes back. Offsets are committed automatically (every
second, and when a member stops), so the next run, of this script or of
another group example, resumes where this one stopped.

The members can share the group with Trio and librdkafka members: run this
script while ``consumer_group.py`` runs, and the partitions are split between
all of them. aiokafka offers only "roundrobin" by default; the members here
offer "range" instead, which the Trio and librdkafka members offer first, so
that the group finds an assignor every member speaks. Only one: aiokafka 0.14
sends a JoinGroup for each assignor it offers, one after the other, and each
one costs the whole group a rebalance (aio-libs/aiokafka#1168).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections import Counter
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import TopicAlreadyExistsError, for_code
from aiokafka.structs import RecordMetadata

PARTITIONS = 6
MEMBERS = ("member-1", "member-2", "member-3")
#: The last members leave once they have read every record written, or after
#: this long without one (members of other processes may have read the rest).
IDLE_SECONDS = 3.0


class Members:
    """What the members hold and have read, as they say, and ways to wait for a state of it."""

    def __init__(self) -> None:
        #: None from a revocation to the next assignment (which may be empty).
        self.partitions: dict[str, list[int] | None] = {}
        #: How many assignments each member has had.
        self.assignments: Counter[str] = Counter()
        self.read: Counter[str] = Counter()
        #: Per partition, the offset after the last record read, and after the last written.
        self.read_to: dict[int, int] = {}
        self.written_to: dict[int, int] = {}
        self._changed = asyncio.Condition()

    async def update(self, name: str, partitions: list[int] | None, *, assigned: bool) -> None:
        async with self._changed:
            self.partitions[name] = partitions
            self.assignments[name] += assigned
            self._changed.notify_all()

    async def count_read(self, name: str, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        async with self._changed:
            self.read[name] += len(records)
            for record in records:
                self.read_to[record.partition] = max(
                    self.read_to.get(record.partition, 0), record.offset + 1
                )
            self._changed.notify_all()

    def count_written(self, where: RecordMetadata) -> None:
        self.written_to[where.partition] = max(
            self.written_to.get(where.partition, 0), where.offset + 1
        )

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        async with self._changed:
            await self._changed.wait_for(condition)

    async def wait_read_all(self, idle_seconds: float) -> None:
        """Until the members have read every record written, or none for ``idle_seconds``
        (members of other processes in the group may have read the rest)."""
        async with self._changed:
            while any(self.read_to.get(p, 0) < end for p, end in self.written_to.items()):
                try:
                    await asyncio.wait_for(self._changed.wait(), idle_seconds)
                except TimeoutError:
                    return


class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, name: str, members: Members) -> None:
        self.name = name
        self.members = members

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        if revoked:
            print(f"{self.name}: revoked {sorted(tp.partition for tp in revoked)}")
        await self.members.update(self.name, None, assigned=False)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        numbers = sorted(tp.partition for tp in assigned)
        print(f"{self.name}: assigned {numbers}")
        await self.members.update(self.name, numbers, assigned=True)


async def ensure_topic(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        if topic in await admin.list_topics():
            return
        response = await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
        # aiokafka returns the broker's answer: the errors are in it.
        ((_, code, *_),) = response.topic_errors
        if code == TopicAlreadyExistsError.errno:
            return  # another script created it meanwhile
        if code:
            raise for_code(code)()
        print(f"created topic {topic} with {PARTITIONS} partitions")
    finally:
        await admin.close()


async def print_committed(bootstrap: str, group: str, when: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    if committed:
        offsets = " ".join(
            f"{tp.partition}:{meta.offset}"
            for tp, meta in sorted(committed.items(), key=lambda item: item[0].partition)
        )
        print(f"{when}: group {group} committed offsets {offsets}")
    else:
        print(f"{when}: group {group} has no committed offsets: it starts from the beginning")


async def produce(args: argparse.Namespace, members: Members) -> None:
    # Idempotent: a batch aiokafka sends again is written once.
    producer = AIOKafkaProducer(bootstrap_servers=args.bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        for number in range(args.records):
            # Orders of one customer share a key, so they land in one partition, in order.
            key = b"customer-%d" % (number % 10)
            members.count_written(
                await producer.send_and_wait(args.topic, b"order %d" % number, key=key)
            )
            await asyncio.sleep(1 / args.rate)
    finally:
        await producer.stop()
    print(f"producer: sent {args.records} records")


async def member(
    name: str,
    args: argparse.Namespace,
    members: Members,
    leave: asyncio.Event,
) -> None:
    print(f"{name}: joining")
    consumer = AIOKafkaConsumer(
        bootstrap_servers=args.bootstrap,
        group_id=args.group,
        client_id=name,
        # One assignor, which the Trio and librdkafka members offer too: aiokafka
        # 0.14 sends one JoinGroup per assignor it offers, each a rebalance.
        partition_assignment_strategy=(RangePartitionAssignor,),
        # Where a partition without a committed offset starts.
        auto_offset_reset="earliest",
        enable_auto_commit=True,
        auto_commit_interval_ms=1000,
        # As in consumer_group.py: quicker rebalances than the defaults.
        heartbeat_interval_ms=500,
        session_timeout_ms=10_000,
    )
    consumer.subscribe([args.topic], listener=Listener(name, members))
    first_offsets: dict[int, int] = {}
    await consumer.start()
    try:
        while not leave.is_set():
            batches = await consumer.getmany(timeout_ms=200)
            for tp, records in batches.items():
                first_offsets.setdefault(tp.partition, records[0].offset)
                await members.count_read(name, records)
        print(f"{name}: leaving")
    finally:
        # stop() commits what was read (auto-commit) and leaves the group.
        await consumer.stop()
    starts = " ".join(f"{p}:{offset}" for p, offset in sorted(first_offsets.items())) or "-"
    print(f"{name}: left after reading {members.read[name]} records (first offsets {starts})")


async def main(args: argparse.Namespace) -> None:
    await ensure_topic(args.bootstrap, args.topic)
    await print_committed(args.bootstrap, args.group, "before")
    members = Members()
    leave = {name: asyncio.Event() for name in MEMBERS}

    def settled(*names: str) -> Callable[[], bool]:
        """Each of these members has its assignment (others' members may take them all)."""
        return lambda: all(members.partitions.get(name) is not None for name in names)

    async with asyncio.TaskGroup() as tasks:
        producing = tasks.create_task(produce(args, members))
        # Each member joins once the one before it has its assignment.
        for index, name in enumerate(MEMBERS):
            if index:
                await members.wait_until(settled(MEMBERS[index - 1]))
                await asyncio.sleep(args.stagger)
            tasks.create_task(member(name, args, members, leave[name]))
        await members.wait_until(settled(*MEMBERS))
        await asyncio.sleep(args.stagger)
        # member-2 leaves; the others are assigned its partitions.
        before = members.assignments.copy()
        leave["member-2"].set()
        await members.wait_until(
            lambda: all(members.assignments[n] > before[n] for n in ("member-1", "member-3"))
        )
        await producing
        await members.wait_read_all(IDLE_SECONDS)
        leave["member-1"].set()
        leave["member-3"].set()
    print(f"read {sum(members.read.values())} records in all")
    await print_committed(args.bootstrap, args.group, "after")


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092", help="broker address(es)")
    parser.add_argument("--topic", default="orders")
    parser.add_argument("--group", default="order-readers", help="consumer group id")
    parser.add_argument("--records", type=int, default=60, help="records to produce")
    parser.add_argument("--rate", type=float, default=10.0, help="records produced per second")
    parser.add_argument(
        "--stagger", type=float, default=2.0, help="seconds between one step and the next"
    )
    return parser.parse_args()


if __name__ == "__main__":
    # aiokafka warns of every rebalance it hears of in a heartbeat; the callbacks say more.
    logging.getLogger("aiokafka.consumer.group_coordinator").setLevel(logging.ERROR)
    try:
        asyncio.run(main(parse_arguments()))
    except KeyboardInterrupt:
        # asyncio cancelled main(): each member's block closed its consumer, which
        # committed what it read and left the group.
        print("Ctrl-C: the members left the group, committing what they read")

"""A consumer group of three Trio members in one nursery.

Start a broker (``python -m trioring``), then run::

    python examples/consumer_group.py

A producer writes ``--records`` keyed records to the topic (``orders``,
created with 6 partitions if missing) while the members come and go: member-1
joins, then member-2, then member-3, then member-2 leaves, and the last two
leave once they have read every record written. Each step waits for the
group to settle (plus ``--stagger`` seconds, to follow it), and every member
prints the partitions the group gives it and takes back (``on_assigned`` /
``on_revoked``). Offsets are committed automatically:
every second, before each rebalance, and when a member leaves. So a second
run resumes where the first one stopped: it prints the group's committed
offsets first, and each member's first offsets read are those.

``consumer_group_confluent.py`` and ``consumer_group_aiokafka.py`` use the
same topic and group: run one of them at the same time as this script and
their members share the 6 partitions with these (all of them speak the
"range" assignor).
"""

from __future__ import annotations

import argparse
import signal
from collections import Counter
from collections.abc import Callable, Iterable

import trio

from trioring.client import (
    Admin,
    ConsumerRecord,
    RecordMetadata,
    open_admin,
    open_consumer,
    open_producer,
)
from trioring.errors import KafkaError

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
        self._changed = trio.Event()

    def update(self, name: str, partitions: list[int] | None, *, assigned: bool) -> None:
        self.partitions[name] = partitions
        self.assignments[name] += assigned
        self._notify()

    def count_read(self, name: str, records: list[ConsumerRecord]) -> None:
        self.read[name] += len(records)
        for record in records:
            self.read_to[record.partition] = max(
                self.read_to.get(record.partition, 0), record.offset + 1
            )
        self._notify()

    def count_written(self, where: RecordMetadata) -> None:
        self.written_to[where.partition] = where.offset + 1

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        while not condition():
            await self._changed.wait()

    async def wait_read_all(self, idle_seconds: float) -> None:
        """Until the members have read every record written, or none for ``idle_seconds``
        (members of other processes in the group may have read the rest)."""
        while any(self.read_to.get(p, 0) < end for p, end in self.written_to.items()):
            with trio.move_on_after(idle_seconds) as idle:
                await self._changed.wait()
            if idle.cancelled_caught:
                return


def numbers(partitions: Iterable[tuple[str, int]]) -> list[int]:
    return sorted(partition for _, partition in partitions)


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


async def print_committed(bootstrap: str, group: str, when: str) -> None:
    async with open_admin(bootstrap) as admin:
        lags = await admin.group_lag(group)
    if lags:
        offsets = " ".join(f"{p}:{lag.committed}" for (_, p), lag in sorted(lags.items()))
        total = sum(lag.lag for lag in lags.values())
        print(f"{when}: group {group} committed offsets {offsets} (lag {total})")
    else:
        print(f"{when}: group {group} has no committed offsets: it starts from the beginning")


async def produce(
    args: argparse.Namespace, members: Members, done: trio.Event, steps: trio.CancelScope
) -> None:
    async with open_producer(args.bootstrap) as producer:
        for number in range(args.records):
            if steps.cancel_called:
                return  # Ctrl-C: what is queued is flushed as the block ends
            # Orders of one customer share a key, so they land in one partition, in order.
            key = b"customer-%d" % (number % 10)
            members.count_written(await producer.send(args.topic, b"order %d" % number, key=key))
            await trio.sleep(1 / args.rate)
    print(f"producer: sent {args.records} records")
    done.set()


async def member(name: str, args: argparse.Namespace, members: Members, leave: trio.Event) -> None:
    async def on_assigned(partitions: set[tuple[str, int]]) -> None:
        print(f"{name}: assigned {numbers(partitions)}")
        members.update(name, numbers(partitions), assigned=True)

    async def on_revoked(partitions: set[tuple[str, int]]) -> None:
        if partitions:
            print(f"{name}: revoked {numbers(partitions)}")
        members.update(name, None, assigned=False)

    print(f"{name}: joining")
    first_offsets: dict[int, int] = {}
    async with open_consumer(
        args.bootstrap,
        group_id=args.group,
        topics=[args.topic],
        # Where a partition without a committed offset starts; one with a
        # committed offset starts there.
        auto_offset_reset="earliest",
        on_assigned=on_assigned,
        on_revoked=on_revoked,
        auto_commit_interval_ms=1000,
        # Quicker rebalances than Kafka's defaults (3 s and 45 s), for a demo:
        # members notice a join within half a second, and a member of a run that
        # was killed (and so could not leave the group) is dropped after 10 s.
        heartbeat_interval_ms=500,
        session_timeout_ms=10_000,
    ) as consumer:
        while not leave.is_set():
            records = await consumer.getmany(timeout_s=0.2)
            for record in records:
                first_offsets.setdefault(record.partition, record.offset)
            if records:
                members.count_read(name, records)
        print(f"{name}: leaving")
    # Leaving the block without an exception committed what this member read
    # and left the group, so the others rebalance at once.
    starts = " ".join(f"{p}:{offset}" for p, offset in sorted(first_offsets.items())) or "-"
    print(f"{name}: left after reading {members.read[name]} records (first offsets {starts})")


async def main(args: argparse.Namespace) -> None:
    async with open_admin(args.bootstrap) as admin:
        await ensure_topic(admin, args.topic)
    await print_committed(args.bootstrap, args.group, "before")
    members = Members()
    leave = {name: trio.Event() for name in MEMBERS}
    produced = trio.Event()
    # Ctrl-C stops the producer and the steps, and asks every member to leave:
    # a member that leaves its block normally commits what it read and sends
    # LeaveGroup (a cancelled one could not), so the next run resumes there.
    steps = trio.CancelScope()

    def settled(*names: str) -> Callable[[], bool]:
        """Each of these members has its assignment (others' members may take them all)."""
        return lambda: all(members.partitions.get(name) is not None for name in names)

    async def on_ctrl_c(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with trio.open_signal_receiver(signal.SIGINT) as signals:
            task_status.started()
            async for _ in signals:
                print("Ctrl-C: the members leave the group, committing what they read")
                steps.cancel()
                for event in leave.values():
                    event.set()
                return

    async with trio.open_nursery() as watching:
        await watching.start(on_ctrl_c)
        async with trio.open_nursery() as nursery:
            with steps:
                nursery.start_soon(produce, args, members, produced, steps)
                # Each member joins once the one before it has its assignment.
                for index, name in enumerate(MEMBERS):
                    if index:
                        await members.wait_until(settled(MEMBERS[index - 1]))
                        await trio.sleep(args.stagger)
                    nursery.start_soon(member, name, args, members, leave[name])
                await members.wait_until(settled(*MEMBERS))
                await trio.sleep(args.stagger)
                # member-2 leaves; the others are assigned its partitions.
                before = members.assignments.copy()
                leave["member-2"].set()
                await members.wait_until(
                    lambda: all(
                        members.assignments[n] > before[n] for n in ("member-1", "member-3")
                    )
                )
                await produced.wait()
                await members.wait_read_all(IDLE_SECONDS)
                leave["member-1"].set()
                leave["member-3"].set()
        watching.cancel_scope.cancel()
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
    trio.run(main, parse_arguments())

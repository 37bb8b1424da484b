"""The consumer group of consumer_group.py, with confluent-kafka (librdkafka) members.

Start a broker (``python -m trioring``), then run::

    python examples/consumer_group_confluent.py

Same topic (``orders``, created with 6 partitions if missing), same group
(``order-readers``) and same steps as ``consumer_group.py``: a producer writes
``--records`` keyed records while member-1, member-2 and member-3 join one
after another and member-2 leaves early, each step once the group has
settled (plus ``--stagger`` seconds); every member prints the partitions the
group gives it and takes back. Offsets are committed automatically (every
second, and when a member closes), so the next run, of this script or of
another group example, resumes where this one stopped.

The members can share the group with Trio and aiokafka members: run this
script while ``consumer_group.py`` runs, and the partitions are split between
all of them ("range", the assignor librdkafka offers first, is one the
others speak too).

librdkafka's consumer is blocking: the members are polled in turn from one
thread (each has threads of its own that heartbeat).
"""

from __future__ import annotations

import argparse
import signal
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

PARTITIONS = 6
MEMBERS = ("member-1", "member-2", "member-3")
#: The last members leave once they have read every record written, or after
#: this long without one (members of other processes may have read the rest).
IDLE_SECONDS = 3.0


def ensure_topic(bootstrap: str, topic: str) -> None:
    # log_level 4: warnings and worse (not the notice librdkafka logs as the client closes).
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 4})
    if topic in admin.list_topics(timeout=30).topics:
        return
    for future in admin.create_topics([NewTopic(topic, PARTITIONS, 1)]).values():
        try:
            future.result()  # raises if the broker refused
        except KafkaException as error:
            if error.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                return  # another script created it meanwhile
            raise
    print(f"created topic {topic} with {PARTITIONS} partitions")


def print_committed(bootstrap: str, topic: str, group: str, when: str) -> None:
    # A consumer that never subscribes reads the group's offsets without joining it.
    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        metadata = reader.list_topics(topic, timeout=30).topics[topic]
        wanted = [TopicPartition(topic, p) for p in sorted(metadata.partitions)]
        committed = [tp for tp in reader.committed(wanted, timeout=30) if tp.offset >= 0]
    finally:
        reader.close()
    if committed:
        offsets = " ".join(f"{tp.partition}:{tp.offset}" for tp in committed)
        print(f"{when}: group {group} committed offsets {offsets}")
    else:
        print(f"{when}: group {group} has no committed offsets: it starts from the beginning")


class Interrupted(Exception):
    """Ctrl-C, raised from Python code between polls (see main)."""


class Group:
    """The members, the producer, and one loop that polls them all."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.members: dict[str, Consumer] = {}
        #: None from a revocation to the next assignment (which may be empty).
        self.partitions: dict[str, list[int] | None] = {}
        #: How many assignments each member has had.
        self.assignments = dict.fromkeys(MEMBERS, 0)
        self.read = dict.fromkeys(MEMBERS, 0)
        self.last_read = time.monotonic()
        #: Per partition, the offset after the last record read, and after the last written.
        self.read_to: dict[int, int] = {}
        self.written_to: dict[int, int] = {}
        self.first_offsets: dict[str, dict[int, int]] = {name: {} for name in MEMBERS}
        #: Set by Ctrl-C (see main).
        self.interrupted = False
        # Idempotent: a batch librdkafka sends again is written once.
        self.producer = Producer({"bootstrap.servers": args.bootstrap, "enable.idempotence": True})
        self.started = time.monotonic()
        self.sent = 0

    def join(self, name: str) -> None:
        print(f"{name}: joining")
        consumer = Consumer(
            {
                "bootstrap.servers": self.args.bootstrap,
                "group.id": self.args.group,
                "client.id": name,
                # Where a partition without a committed offset starts.
                "auto.offset.reset": "earliest",
                "enable.auto.commit": True,
                "auto.commit.interval.ms": 1000,
                # As in consumer_group.py: quicker rebalances than the defaults.
                "heartbeat.interval.ms": 500,
                "session.timeout.ms": 10_000,
            }
        )

        def on_assign(_: Consumer, partitions: list[TopicPartition]) -> None:
            numbers = sorted(tp.partition for tp in partitions)
            print(f"{name}: assigned {numbers}")
            self.partitions[name] = numbers
            self.assignments[name] += 1

        def on_revoke(_: Consumer, partitions: list[TopicPartition]) -> None:
            if partitions:
                print(f"{name}: revoked {sorted(tp.partition for tp in partitions)}")
            self.partitions[name] = None

        consumer.subscribe([self.args.topic], on_assign=on_assign, on_revoke=on_revoke)
        self.members[name] = consumer

    def leave(self, name: str) -> None:
        print(f"{name}: leaving")
        # close() commits what was read (auto-commit) and leaves the group at once.
        self.members.pop(name).close()
        self.partitions.pop(name, None)
        starts = " ".join(f"{p}:{o}" for p, o in sorted(self.first_offsets[name].items())) or "-"
        print(f"{name}: left after reading {self.read[name]} records (first offsets {starts})")

    def poll_once(self) -> None:
        due = min(self.args.records, int((time.monotonic() - self.started) * self.args.rate))
        while self.sent < due:
            # Orders of one customer share a key, so they land in one partition, in order.
            key = b"customer-%d" % (self.sent % 10)
            self.producer.produce(
                self.args.topic, b"order %d" % self.sent, key=key, on_delivery=self.delivered
            )
            self.sent += 1
            if self.sent == self.args.records:
                self.producer.flush()
                print(f"producer: sent {self.sent} records")
        self.producer.poll(0)
        for name, consumer in list(self.members.items()):
            message = consumer.poll(0.05)  # rebalance callbacks run in here
            if message is None:
                continue
            if message.error() is not None:
                print(f"{name}: {message.error()}")
                continue
            partition, offset = message.partition(), message.offset()
            assert partition is not None and offset is not None  # set on every record
            self.first_offsets[name].setdefault(partition, offset)
            self.read[name] += 1
            self.last_read = time.monotonic()
            self.read_to[partition] = max(self.read_to.get(partition, 0), offset + 1)

    def delivered(self, error: KafkaError | None, message: Message) -> None:
        """Called by producer.poll() and flush() with each record's delivery result."""
        if error is not None:
            raise KafkaException(error)
        partition, offset = message.partition(), message.offset()
        assert partition is not None and offset is not None
        self.written_to[partition] = max(self.written_to.get(partition, 0), offset + 1)

    def read_all(self) -> bool:
        """The members have read every record written, or none for IDLE_SECONDS."""
        behind = any(self.read_to.get(p, 0) < end for p, end in self.written_to.items())
        return not behind or time.monotonic() - self.last_read >= IDLE_SECONDS

    def poll_until(self, condition: Callable[[], Any], then_seconds: float = 0.0) -> None:
        while not condition():
            self.poll_once()
            self.check_interrupted()
        deadline = time.monotonic() + then_seconds
        while time.monotonic() < deadline:
            self.poll_once()
            self.check_interrupted()

    def check_interrupted(self) -> None:
        if self.interrupted:
            raise Interrupted


def main(args: argparse.Namespace) -> None:
    ensure_topic(args.bootstrap, args.topic)
    print_committed(args.bootstrap, args.topic, args.group, "before")
    group = Group(args)

    def on_ctrl_c(signal_number: int, frame: object) -> None:
        # Only a flag: a KeyboardInterrupt raised inside librdkafka's poll()
        # can break the client (SystemError: returned NULL without an exception).
        group.interrupted = True

    signal.signal(signal.SIGINT, on_ctrl_c)
    try:
        run_steps(group, args)
    except Interrupted:
        # Ctrl-C: the members still leave the group, committing what they read
        # (close() does both), so the next run resumes there.
        print("Ctrl-C: the members leave the group, committing what they read")
        for name in list(group.members):
            group.leave(name)
        group.producer.flush()
        return
    print(f"read {sum(group.read.values())} records in all")
    print_committed(args.bootstrap, args.topic, args.group, "after")


def run_steps(group: Group, args: argparse.Namespace) -> None:
    def settled(*names: str) -> Callable[[], bool]:
        """Each of these members has its assignment (others' members may take them all)."""
        return lambda: all(group.partitions.get(name) is not None for name in names)

    # Each member joins once the one before it has its assignment.
    for index, name in enumerate(MEMBERS):
        if index:
            group.poll_until(settled(MEMBERS[index - 1]), args.stagger)
        group.join(name)
    group.poll_until(settled(*MEMBERS), args.stagger)
    # member-2 leaves; the others are assigned its partitions.
    before = dict(group.assignments)
    group.leave("member-2")
    group.poll_until(
        lambda: all(group.assignments[n] > before[n] for n in ("member-1", "member-3"))
    )
    group.poll_until(lambda: group.sent == args.records and group.read_all())
    group.leave("member-1")
    group.leave("member-3")


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
    main(parse_arguments())

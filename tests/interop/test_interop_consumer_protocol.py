"""The consumer group protocol of Kafka 4.0 (KIP-848) with librdkafka's
``group.protocol=consumer``: server-side assignment, incremental revocation,
exactly-once consumption with commits across a member joining and leaving, and
the admin view (ConsumerGroupDescribe, ListGroups by type).

Each member is a thread of its own; every wait is bounded.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from typing import Any

import pytest

confluent_kafka = pytest.importorskip("confluent_kafka")
confluent_admin = pytest.importorskip("confluent_kafka.admin")

PARTITIONS = 4
RECORDS = 600
PHASE_SECONDS = 30.0
#: A consumer's pause after each record, as an application's work.
PER_RECORD_SECONDS = 0.001


class Member:
    """A confluent-kafka consumer (group.protocol=consumer unless told), committing each record."""

    def __init__(
        self, name: str, bootstrap: str, group: str, topic: str, protocol: str = "consumer"
    ) -> None:
        self.name = name
        self.consumed: list[tuple[int, int, bytes]] = []
        self.events: list[tuple[str, frozenset[int]]] = []
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self._config = {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "group.protocol": protocol,
            "client.id": name,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
        if protocol == "classic":
            self._config.update(
                {
                    "partition.assignment.strategy": "cooperative-sticky",
                    "session.timeout.ms": 6000,
                    "heartbeat.interval.ms": 500,
                }
            )
        self._topic = topic
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def owned(self) -> frozenset[int]:
        owned: set[int] = set()
        for kind, partitions in self.events:
            if kind == "assign":
                owned |= partitions
            else:
                owned -= partitions
        return frozenset(owned)

    def _run(self) -> None:
        try:
            consumer = confluent_kafka.Consumer(self._config)
            consumer.subscribe(
                [self._topic],
                on_assign=lambda _, ps: self.events.append(
                    ("assign", frozenset(p.partition for p in ps))
                ),
                on_revoke=lambda _, ps: self.events.append(
                    ("revoke", frozenset(p.partition for p in ps))
                ),
            )
            deadline = time.monotonic() + 3 * PHASE_SECONDS
            while not self.stop.is_set() and time.monotonic() < deadline:
                message = consumer.poll(0.1)
                if message is None or message.error():
                    continue
                self.consumed.append((message.partition(), message.offset(), message.value()))
                consumer.commit(message, asynchronous=False)
                time.sleep(PER_RECORD_SECONDS)
            consumer.close()
        except BaseException as error:  # reported by the test
            self.error = error

    def close(self) -> None:
        self.stop.set()
        self.thread.join(PHASE_SECONDS)
        assert not self.thread.is_alive(), f"{self.name} did not close"
        assert self.error is None, self.error


def wait_for(condition: Any, what: str) -> None:
    deadline = time.monotonic() + PHASE_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_confluent_consumer_protocol_members_join_and_leave_exactly_once(  # type: ignore[no-untyped-def]
    fast_groups_broker,
) -> None:
    join_and_leave(fast_groups_broker.bootstrap)


def test_consumer_protocol_over_two_workers(fast_groups_cluster) -> None:  # type: ignore[no-untyped-def]
    """The group's coordinator and its partitions' leaders spread over two workers."""
    join_and_leave(fast_groups_cluster.bootstrap)


def join_and_leave(bootstrap: str) -> None:
    topic, group = f"kip848-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    admin = confluent_admin.AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([confluent_admin.NewTopic(topic, PARTITIONS, 1)]).values():
        future.result(PHASE_SECONDS)
    producer = confluent_kafka.Producer({"bootstrap.servers": bootstrap})
    produced = 0

    def produce(count: int) -> None:
        nonlocal produced
        for index in range(produced, produced + count):
            producer.produce(topic, value=b"v%d" % index, partition=index % PARTITIONS)
        assert producer.flush(PHASE_SECONDS) == 0
        produced += count

    def consumed() -> int:
        return len(first.consumed) + len(second.consumed)

    phase = RECORDS // 3
    first = Member("first", bootstrap, group, topic)
    second = Member("second", bootstrap, group, topic)
    produce(phase)
    first.thread.start()
    wait_for(lambda: first.owned() == set(range(PARTITIONS)), "the lone member's assignment")
    wait_for(lambda: consumed() >= phase, "the first records")

    second.thread.start()
    wait_for(lambda: len(second.owned()) == PARTITIONS // 2, "the newcomer's share")
    wait_for(lambda: len(first.owned()) == PARTITIONS // 2, "the first member's share")
    # Incremental: the first member gave up only what moved, never all at once.
    revoked = [partitions for kind, partitions in first.events if kind == "revoke"]
    assert revoked and all(len(partitions) < PARTITIONS for partitions in revoked), first.events

    def describe() -> Any:
        return admin.describe_consumer_groups([group])[group].result(PHASE_SECONDS)

    # Stable once each member's heartbeat has confirmed its new assignment.
    wait_for(lambda: str(describe().state).endswith("STABLE"), "a Stable group")
    described = describe()
    assert str(described.type).endswith("CONSUMER"), described.type
    assert {member.client_id for member in described.members} == {"first", "second"}
    assigned = [
        tp.partition for member in described.members for tp in member.assignment.topic_partitions
    ]
    assert sorted(assigned) == list(range(PARTITIONS))

    produce(phase)
    wait_for(lambda: consumed() >= 2 * phase, "records for both members")
    assert second.consumed, "the newcomer consumed its share"
    first.close()
    wait_for(lambda: second.owned() == set(range(PARTITIONS)), "the survivor taking over")
    produce(RECORDS - 2 * phase)
    wait_for(lambda: consumed() >= RECORDS, "every record consumed")
    time.sleep(0.5)  # anything consumed twice would show up now
    second.close()

    seen = Counter((p, o) for p, o, _ in first.consumed + second.consumed)
    assert len(seen) == RECORDS, "every record consumed"
    assert max(seen.values()) == 1, [key for key, count in seen.items() if count > 1][:5]
    values = sorted(v for _, _, v in first.consumed + second.consumed)
    assert values == sorted(b"v%d" % index for index in range(RECORDS))

    listed = admin.list_consumer_groups().result(PHASE_SECONDS)
    [listing] = [g for g in listed.valid if g.group_id == group]
    assert str(listing.type).endswith("CONSUMER")
    assert str(listing.state).endswith("EMPTY")
    committed = admin.list_consumer_group_offsets(
        [confluent_kafka.ConsumerGroupTopicPartitions(group)]
    )[group].result(PHASE_SECONDS)
    assert sorted(tp.offset for tp in committed.topic_partitions) == [RECORDS // PARTITIONS] * 4
    for future in admin.delete_consumer_groups([group]).values():
        future.result(PHASE_SECONDS)


def test_rolling_upgrade_from_classic_members_and_back(fast_groups_broker) -> None:  # type: ignore[no-untyped-def]
    """Kafka 4.0's online upgrade and downgrade: two classic (cooperative-sticky) members
    consume; a consumer-protocol member joins the same group, which becomes a consumer
    group with the classic members in it, assigned by the broker; it leaves again and
    the group goes back to the classic protocol. Every record exactly once."""
    bootstrap = fast_groups_broker.bootstrap
    topic, group = f"mixed-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    admin = confluent_admin.AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([confluent_admin.NewTopic(topic, PARTITIONS, 1)]).values():
        future.result(PHASE_SECONDS)
    producer = confluent_kafka.Producer({"bootstrap.servers": bootstrap})
    produced = 0

    def produce(count: int) -> None:
        nonlocal produced
        for index in range(produced, produced + count):
            producer.produce(topic, value=b"v%d" % index, partition=index % PARTITIONS)
        assert producer.flush(PHASE_SECONDS) == 0
        produced += count

    classic = [Member(name, bootstrap, group, topic, "classic") for name in ("a", "b")]
    modern = Member("c", bootstrap, group, topic)
    members = [*classic, modern]

    def consumed() -> int:
        return sum(len(member.consumed) for member in members)

    def describe() -> Any:
        return admin.describe_consumer_groups([group])[group].result(PHASE_SECONDS)

    phase = RECORDS // 3
    produce(phase)
    for member in classic:
        member.thread.start()
    wait_for(lambda: consumed() >= phase, "the classic members' records")
    assert str(describe().type).endswith("CLASSIC")

    modern.thread.start()
    wait_for(modern.owned, "the consumer-protocol member's share")
    wait_for(
        lambda: sorted(p for member in members for p in member.owned()) == list(range(PARTITIONS)),
        "every partition owned once",
    )
    wait_for(lambda: str(describe().state).endswith("STABLE"), "a Stable mixed group")
    described = describe()
    assert str(described.type).endswith("CONSUMER")
    assert {member.client_id for member in described.members} == {"a", "b", "c"}
    produce(phase)
    wait_for(lambda: consumed() >= 2 * phase, "records across the mixed group")

    modern.close()
    wait_for(lambda: str(describe().type).endswith("CLASSIC"), "the group back to classic")
    wait_for(
        lambda: sorted(p for member in classic for p in member.owned()) == list(range(PARTITIONS)),
        "the classic members owning every partition",
    )
    produce(RECORDS - 2 * phase)
    wait_for(lambda: consumed() >= RECORDS, "every record consumed")
    time.sleep(0.5)  # anything consumed twice would show up now
    for member in classic:
        member.close()

    seen = Counter((p, o) for member in members for p, o, _ in member.consumed)
    assert len(seen) == RECORDS
    assert max(seen.values()) == 1, [key for key, count in seen.items() if count > 1][:5]
    assert modern.consumed, "the consumer-protocol member had a share"

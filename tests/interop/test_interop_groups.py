"""Consumer groups with real clients: confluent-kafka, kafka-python and aiokafka.

For each client, against a broker of its own:

1. three members of one group share a 6-partition topic: a lone first member
   is assigned everything within seconds of subscribing, then each of the
   three gets 2 partitions, and records produced once the group is stable are
   consumed exactly once across the members, with synchronous commits;
2. one member leaves (close()): the other two take over its partitions and
   consume everything produced afterwards exactly once;
3. after a graceful restart and after a SIGKILL, a fresh member of the group
   sees the committed offsets and receives exactly the records nobody had
   consumed: no re-delivery, nothing lost.

Plus librdkafka's admin view of a running group (ListGroups, DescribeGroups,
committed offsets) and its consumer's committed().

Each member runs in a thread of its own with its own ``asyncio.run`` loop, so
the three members poll concurrently as real applications would; the sync
clients' blocking calls are simply made from that loop. Every wait is bounded
by a deadline.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import threading
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from trioring.testing import BrokerProcess

# kafka-python 3.0.12 leaks the socket of a refused connection (kafka/net/inet.py
# connect() raises without closing it), so its members reconnecting while the
# broker restarts warn when the garbage is collected: by the broker fixture, or
# in a later test of this module if a failed test's traceback kept them alive.
pytestmark = pytest.mark.filterwarnings("ignore:unclosed <socket.socket:ResourceWarning")

confluent_kafka = pytest.importorskip("confluent_kafka")
confluent_admin = pytest.importorskip("confluent_kafka.admin")

PARTITIONS = 6
ALL_PARTITIONS = frozenset(range(PARTITIONS))
GROUP_RECORDS = 600
AFTER_LEAVE_RECORDS = 90
AFTER_RESTART_RECORDS = 60
#: Seconds a lone consumer may take from subscribing to its first assignment.
#: The broker's initial rebalance delay is 0.3 s; 5 s leaves room for a busy machine.
STABLE_SECONDS_MAX = 5.0
#: Seconds any one phase (a rebalance, consuming a batch of records) may take.
PHASE_SECONDS = 30.0
#: Seconds a member thread may live at all.
MEMBER_SECONDS_MAX = 90.0
#: Seconds a member may take to close.
CLOSE_SECONDS = 20.0
SESSION_TIMEOUT_MS = 6000
HEARTBEAT_INTERVAL_MS = 500
#: Also the rebalance timeout: how long a join phase waits for a silent member.
MAX_POLL_INTERVAL_MS = 10000
POLL_SECONDS = 0.1
BAD_LOG_MARKERS = ("Traceback", " ERROR ", " CRITICAL ")
CLIENTS = ["confluent-kafka", "kafka-python", "aiokafka"]

#: Measured seconds from subscribe() to the first assignment, for the report.
TIME_TO_STABLE: dict[str, list[float]] = {}


# --- the broker -------------------------------------------------------------------------


def _broker_log(broker: BrokerProcess) -> str:
    try:
        return broker.log_path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def _log_tail(broker: BrokerProcess, characters: int = 4000) -> str:
    return f"\n--- broker log tail ({broker.log_path}) ---\n{_broker_log(broker)[-characters:]}"


@pytest.fixture
def group_broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    """A broker of its own, logging group changes (INFO); checked clean at teardown."""
    with BrokerProcess(tmp_path / "data", log_level="INFO") as broker:
        yield broker
        running = broker.process is not None
        code = broker.stop()
    # Clients' leaked objects warn now, under the test's warning filters.
    gc.collect()
    assert not running or code == 0, f"broker exited with {code}{_log_tail(broker)}"
    bad = [
        line
        for line in _broker_log(broker).splitlines()
        if any(marker in line for marker in BAD_LOG_MARKERS)
    ]
    assert not bad, "broker logged errors:\n" + "\n".join(bad[:20])


@pytest.fixture
def group_topic() -> str:
    return f"groups-{uuid.uuid4().hex[:12]}"


def _create_topic(bootstrap: str, topic: str) -> None:
    admin = confluent_admin.AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [confluent_admin.NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)],
        request_timeout=PHASE_SECONDS,
    )
    futures[topic].result(timeout=PHASE_SECONDS)


Delivered = tuple[int, int, bytes]  # partition, offset, key


def _produce(bootstrap: str, topic: str, count: int, prefix: str) -> set[Delivered]:
    """``count`` keyed records, acks=all; returns where each landed."""
    producer = confluent_kafka.Producer(
        {"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5}
    )
    delivered: set[Delivered] = set()
    failures: list[str] = []

    def on_delivery(error: Any, message: Any) -> None:
        if error is not None:
            failures.append(str(error))
        else:
            delivered.add((message.partition(), message.offset(), message.key()))

    for index in range(count):
        key = f"{prefix}-{index}".encode()
        producer.produce(topic, key=key, value=b"value-" + key, on_delivery=on_delivery)
        producer.poll(0)
    remaining = producer.flush(PHASE_SECONDS)
    assert remaining == 0 and not failures, (remaining, failures[:5])
    assert len(delivered) == count
    assert {partition for partition, _, _ in delivered} == ALL_PARTITIONS, "keys left a gap"
    return delivered


def _end_offsets(delivered: set[Delivered]) -> dict[int, int]:
    ends: dict[int, int] = {}
    for partition, offset, _ in delivered:
        ends[partition] = max(ends.get(partition, 0), offset + 1)
    return ends


# --- the clients, behind one async interface --------------------------------------------


def _consumer_settings(client: str, bootstrap: str, group: str, client_id: str) -> dict[str, Any]:
    if client == "confluent-kafka":
        return {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "client.id": client_id,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": SESSION_TIMEOUT_MS,
            "heartbeat.interval.ms": HEARTBEAT_INTERVAL_MS,
            "max.poll.interval.ms": MAX_POLL_INTERVAL_MS,
        }
    settings = {
        "bootstrap_servers": bootstrap,
        "group_id": group,
        "client_id": client_id,
        "auto_offset_reset": "earliest",
        "enable_auto_commit": False,
        "session_timeout_ms": SESSION_TIMEOUT_MS,
        "heartbeat_interval_ms": HEARTBEAT_INTERVAL_MS,
        "max_poll_interval_ms": MAX_POLL_INTERVAL_MS,
    }
    if client == "aiokafka":
        settings["rebalance_timeout_ms"] = MAX_POLL_INTERVAL_MS
    return settings


def _import_kafka_python() -> Any:
    # kafka-python 3 calls the deprecated importlib.resources.read_text at import.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        kafka = pytest.importorskip("kafka")
        pytest.importorskip("kafka.structs")
        pytest.importorskip("kafka.errors")
    return kafka


def _require(client: str) -> None:
    if client == "kafka-python":
        _import_kafka_python()
    elif client == "aiokafka":
        pytest.importorskip("aiokafka")


class ConfluentConsumer:
    def __init__(self, settings: dict[str, Any], topic: str) -> None:
        self.topic = topic
        self.consumer = confluent_kafka.Consumer(settings)

    async def subscribe(self) -> None:
        self.consumer.subscribe([self.topic])

    async def poll(self) -> list[Delivered]:
        records = []
        for message in self.consumer.consume(num_messages=500, timeout=POLL_SECONDS):
            if message.error() is not None:
                raise confluent_kafka.KafkaException(message.error())
            records.append((message.partition(), message.offset(), message.key()))
        return records

    async def commit(self, offsets: dict[int, int]) -> None:
        result = self.consumer.commit(
            offsets=[
                confluent_kafka.TopicPartition(self.topic, partition, offset)
                for partition, offset in offsets.items()
            ],
            asynchronous=False,
        )
        errors = [each for each in result or () if each.error is not None]
        assert not errors, errors

    def assignment(self) -> frozenset[int]:
        return frozenset(each.partition for each in self.consumer.assignment())

    async def committed(self, partitions: frozenset[int]) -> dict[int, int | None]:
        answer = self.consumer.committed(
            [confluent_kafka.TopicPartition(self.topic, partition) for partition in partitions],
            timeout=PHASE_SECONDS,
        )
        for each in answer:
            assert each.error is None, each
        return {each.partition: (each.offset if each.offset >= 0 else None) for each in answer}

    async def close(self) -> None:
        self.consumer.close()


class KafkaPythonConsumer:
    def __init__(self, settings: dict[str, Any], topic: str) -> None:
        kafka = _import_kafka_python()
        self.structs = kafka.structs
        self.errors = kafka.errors
        self.topic = topic
        self.consumer = kafka.KafkaConsumer(**settings)

    async def subscribe(self) -> None:
        self.consumer.subscribe([self.topic])

    async def poll(self) -> list[Delivered]:
        try:
            batches = self.consumer.poll(timeout_ms=int(POLL_SECONDS * 1000), max_records=500)
        except self.errors.KafkaError as error:
            # kafka-python 3.0.12's poll() raises KafkaConnectionError (retriable)
            # while the broker is down instead of retrying; applications retry.
            if not error.retriable:
                raise
            return []
        return [
            (record.partition, record.offset, record.key)
            for records in batches.values()
            for record in records
        ]

    async def commit(self, offsets: dict[int, int]) -> None:
        self.consumer.commit(
            {
                self.structs.TopicPartition(self.topic, partition): self.structs.OffsetAndMetadata(
                    offset, "", -1
                )
                for partition, offset in offsets.items()
            }
        )

    def assignment(self) -> frozenset[int]:
        return frozenset(each.partition for each in self.consumer.assignment())

    async def committed(self, partitions: frozenset[int]) -> dict[int, int | None]:
        return {
            partition: self.consumer.committed(self.structs.TopicPartition(self.topic, partition))
            for partition in partitions
        }

    async def close(self) -> None:
        self.consumer.close()


class AiokafkaConsumer:
    def __init__(self, settings: dict[str, Any], topic: str) -> None:
        import aiokafka  # noqa: PLC0415 - optional

        self.aiokafka = aiokafka
        self.topic = topic
        # Created inside the member's running loop, as aiokafka requires.
        self.consumer = aiokafka.AIOKafkaConsumer(**settings)
        self.started = False

    async def subscribe(self) -> None:
        self.consumer.subscribe([self.topic])
        await self.consumer.start()
        self.started = True

    async def poll(self) -> list[Delivered]:
        batches = await self.consumer.getmany(timeout_ms=int(POLL_SECONDS * 1000), max_records=500)
        return [
            (record.partition, record.offset, record.key)
            for records in batches.values()
            for record in records
        ]

    async def commit(self, offsets: dict[int, int]) -> None:
        await self.consumer.commit(
            {
                self.aiokafka.TopicPartition(self.topic, partition): offset
                for partition, offset in offsets.items()
            }
        )

    def assignment(self) -> frozenset[int]:
        return frozenset(each.partition for each in self.consumer.assignment())

    async def committed(self, partitions: frozenset[int]) -> dict[int, int | None]:
        return {
            partition: await self.consumer.committed(
                self.aiokafka.TopicPartition(self.topic, partition)
            )
            for partition in partitions
        }

    async def close(self) -> None:
        await self.consumer.stop()


CONSUMER_CLASSES: dict[str, type[Any]] = {
    "confluent-kafka": ConfluentConsumer,
    "kafka-python": KafkaPythonConsumer,
    "aiokafka": AiokafkaConsumer,
}


# --- a group member: one consumer polling in a thread of its own ------------------------


class Member:
    """Polls, records what it got, commits synchronously after each batch.

    ``call`` runs a coroutine function on the member's consumer between polls.
    """

    def __init__(
        self,
        client: str,
        bootstrap: str,
        topic: str,
        group: str,
        name: str,
        *,
        committed_first: bool = False,
        settings: dict[str, Any] | None = None,
    ) -> None:
        self.client = client
        #: Read the group's committed offsets (OffsetFetch) before the first poll.
        self.committed_first = committed_first
        self.committed_at_start: dict[int, int | None] | None = None
        self.name = name
        self.settings = _consumer_settings(client, bootstrap, group, f"{client}-{name}")
        self.settings.update(settings or {})
        self.topic = topic
        self.lock = threading.Lock()
        self.assignment: frozenset[int] = frozenset()
        self.consumed: list[Delivered] = []
        self.committed: dict[int, int] = {}
        self.seconds_to_assignment: float | None = None
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._calls: list[tuple[Callable[[Any], Awaitable[Any]], concurrent.futures.Future]] = []
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._main()), name=f"member {name}", daemon=True
        )
        self._thread.start()

    async def _main(self) -> None:
        consumer = None
        try:
            consumer = CONSUMER_CLASSES[self.client](self.settings, self.topic)
            started = time.monotonic()
            await consumer.subscribe()
            if self.committed_first:
                self.committed_at_start = await consumer.committed(ALL_PARTITIONS)
            while not self._stop.is_set():
                assert time.monotonic() < started + MEMBER_SECONDS_MAX, "member lived too long"
                records = await consumer.poll()
                if records:
                    with self.lock:
                        self.consumed.extend(records)
                    offsets: dict[int, int] = {}
                    for partition, offset, _ in records:
                        offsets[partition] = max(offsets.get(partition, 0), offset + 1)
                    await consumer.commit(offsets)
                    with self.lock:
                        self.committed.update(offsets)
                assignment = consumer.assignment()
                with self.lock:
                    self.assignment = assignment
                    if assignment and self.seconds_to_assignment is None:
                        self.seconds_to_assignment = time.monotonic() - started
                    calls, self._calls = self._calls, []
                for function, future in calls:
                    try:
                        future.set_result(await function(consumer))
                    except Exception as error:
                        future.set_exception(error)
        except BaseException as error:
            self.error = error
        finally:
            if consumer is not None:
                try:
                    await consumer.close()
                except Exception as error:
                    self.error = self.error or error

    def call(self, function: Callable[[Any], Awaitable[Any]]) -> Any:
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self.lock:
            self._calls.append((function, future))
        return future.result(timeout=PHASE_SECONDS)

    def check(self) -> None:
        if self.error is not None:
            raise AssertionError(f"member {self.name} failed: {self.error!r}") from self.error

    def close(self) -> None:
        self._stop.set()
        self._thread.join(CLOSE_SECONDS)
        assert not self._thread.is_alive(), f"member {self.name} did not close"
        self.check()


def _wait_until(
    condition: Callable[[], bool],
    members: list[Member],
    broker: BrokerProcess,
    what: Callable[[], str],
    seconds: float = PHASE_SECONDS,
) -> float:
    """Wait for ``condition``; returns the seconds it took."""
    started = time.monotonic()
    while not condition():
        for member in members:
            member.check()
        if time.monotonic() > started + seconds:
            raise AssertionError(f"timed out after {seconds} s: {what()}{_log_tail(broker)}")
        time.sleep(0.05)
    return time.monotonic() - started


def _assignments(members: list[Member]) -> list[frozenset[int]]:
    return [member.assignment for member in members]


def _balanced(members: list[Member], each: int) -> Callable[[], bool]:
    def condition() -> bool:
        assignments = _assignments(members)
        return (
            all(len(assignment) == each for assignment in assignments)
            and frozenset().union(*assignments) == ALL_PARTITIONS
        )

    return condition


def _consumed(members: list[Member]) -> Counter[Delivered]:
    counts: Counter[Delivered] = Counter()
    for member in members:
        with member.lock:
            counts.update(member.consumed)
    return counts


def _committed(members: list[Member]) -> dict[int, int]:
    committed: dict[int, int] = {}
    for member in members:
        with member.lock:
            for partition, offset in member.committed.items():
                committed[partition] = max(committed.get(partition, 0), offset)
    return committed


def _check_exactly_once(counts: Counter[Delivered], expected: set[Delivered]) -> None:
    duplicates = {record: count for record, count in counts.items() if count > 1}
    assert not duplicates, f"consumed more than once: {sorted(duplicates.items())[:10]}"
    unexpected = set(counts) - expected
    assert not unexpected, f"consumed but not expected: {sorted(unexpected)[:10]}"
    missing = expected - set(counts)
    assert not missing, f"never consumed: {sorted(missing)[:10]}"


class Group:
    """Members of one group, closed on exit whatever happens."""

    def __init__(
        self,
        client: str,
        broker: BrokerProcess,
        topic: str,
        group: str,
        settings: dict[str, Any] | None = None,
    ) -> None:
        self.client = client
        #: Client settings on top of _consumer_settings, for every member.
        self.settings = settings
        self.broker = broker
        self.topic = topic
        self.group = group
        self.members: list[Member] = []
        self.all_members: list[Member] = []

    def add(
        self, name: str, *, committed_first: bool = False, settings: dict[str, Any] | None = None
    ) -> Member:
        member = Member(
            self.client,
            self.broker.bootstrap,
            self.topic,
            self.group,
            name,
            committed_first=committed_first,
            settings={**(self.settings or {}), **(settings or {})},
        )
        self.members.append(member)
        self.all_members.append(member)
        return member

    def remove(self, member: Member) -> None:
        self.members.remove(member)
        member.close()

    def wait(self, condition: Callable[[], bool], what: Callable[[], str]) -> float:
        return _wait_until(condition, self.members, self.broker, what)

    def wait_consumed(self, expected: set[Delivered], members: list[Member]) -> None:
        """Wait until ``members`` consumed and committed every record of ``expected``."""
        ends = _end_offsets(expected)

        def done() -> bool:
            committed = _committed(members)
            return set(_consumed(members)) >= expected and all(
                committed.get(partition, 0) >= end for partition, end in ends.items()
            )

        self.wait(
            done,
            lambda: (
                f"consumed {len(set(_consumed(members)) & expected)} of {len(expected)}; "
                f"committed {_committed(members)}, want {ends}; "
                f"assignments {_assignments(members)}"
            ),
        )

    def __enter__(self) -> Group:
        return self

    def __exit__(self, *exc_info: object) -> None:
        errors = []
        for member in self.members:
            try:
                member.close()
            except AssertionError as error:
                errors.append(error)
        self.members.clear()
        if errors and exc_info[0] is None:
            raise errors[0]


# --- the scenario -----------------------------------------------------------------------


def _resume_after_restart(
    client: str,
    broker: BrokerProcess,
    topic: str,
    group_id: str,
    committed: dict[int, int],
    *,
    kill: bool,
) -> dict[int, int]:
    """Produce, restart the broker, and check a fresh member resumes where the group stopped."""
    new = _produce(
        broker.bootstrap, topic, AFTER_RESTART_RECORDS, f"after-{'kill' if kill else 'stop'}"
    )
    ends = _end_offsets(new)
    assert all(
        min(offset for partition, offset, _ in new if partition == each) == committed[each]
        for each in ALL_PARTITIONS
    ), "the new records do not start at the committed offsets"
    broker.restart(kill=kill)
    with Group(client, broker, topic, group_id) as group:
        fresh = group.add("fresh-" + ("kill" if kill else "stop"), committed_first=True)
        group.wait(
            lambda: fresh.assignment == ALL_PARTITIONS,
            lambda: f"a lone member after restart has {fresh.assignment}",
        )
        assert fresh.seconds_to_assignment is not None
        TIME_TO_STABLE.setdefault(client, []).append(fresh.seconds_to_assignment)
        seen = fresh.committed_at_start
        assert seen == committed, (
            f"committed offsets after {'SIGKILL' if kill else 'graceful restart'}: "
            f"{seen}, before: {committed}"
        )
        group.wait_consumed(new, [fresh])
        _check_exactly_once(_consumed([fresh]), new)
        after = _committed([fresh])
    assert after == committed | ends
    return after


@pytest.mark.parametrize("client", CLIENTS)
def test_group_shares_rebalances_and_resumes(
    group_broker: BrokerProcess, group_topic: str, client: str
) -> None:
    _require(client)
    broker = group_broker
    topic = group_topic
    group_id = f"group-{client}"
    _create_topic(broker.bootstrap, topic)

    with Group(client, broker, topic, group_id) as group:
        # 1. A lone member is assigned everything promptly.
        first = group.add("first")
        group.wait(
            lambda: first.assignment == ALL_PARTITIONS, lambda: f"first has {first.assignment}"
        )
        assert first.seconds_to_assignment is not None
        TIME_TO_STABLE.setdefault(client, []).append(first.seconds_to_assignment)
        print(f"{client}: lone member assigned after {first.seconds_to_assignment:.2f} s")
        assert first.seconds_to_assignment < STABLE_SECONDS_MAX, (
            f"a lone {client} member took {first.seconds_to_assignment:.2f} s to be assigned"
            f"{_log_tail(broker)}"
        )

        # Two more join; once stable each of the three has 2 partitions.
        group.add("second")
        group.add("third")
        seconds = group.wait(
            _balanced(group.members, 2),
            lambda: f"assignments of three members: {_assignments(group.members)}",
        )
        print(f"{client}: three members balanced {seconds:.2f} s after two joined")

        records = _produce(broker.bootstrap, topic, GROUP_RECORDS, "group")
        group.wait_consumed(records, group.members)
        _check_exactly_once(_consumed(group.all_members), records)
        for member in group.members:
            # Each consumed from its own partitions only.
            assert {partition for partition, _, _ in member.consumed} <= member.assignment

        # 2. One member leaves: the other two take over its partitions.
        leaving = group.members[1]
        group.remove(leaving)
        seconds = group.wait(
            _balanced(group.members, 3),
            lambda: f"assignments after a leave: {_assignments(group.members)}",
        )
        print(f"{client}: two members balanced {seconds:.2f} s after one left")
        more = _produce(broker.bootstrap, topic, AFTER_LEAVE_RECORDS, "after-leave")
        group.wait_consumed(more, group.members)
        _check_exactly_once(_consumed(group.all_members), records | more)
        committed = _committed(group.all_members)
        assert committed == _end_offsets(records | more)

    # 3. Everything consumed is committed; the group resumes there after a
    # graceful restart and after a crash.
    committed = _resume_after_restart(client, broker, topic, group_id, committed, kill=False)
    _resume_after_restart(client, broker, topic, group_id, committed, kill=True)
    print(f"{client}: seconds to first assignment {TIME_TO_STABLE[client]}")


def _describe(admin: Any, group_id: str, seconds: float = PHASE_SECONDS) -> Any:
    future = admin.describe_consumer_groups([group_id], request_timeout=seconds)[group_id]
    return future.result(timeout=seconds + 5)


def test_confluent_admin_sees_stable_group_and_commits(
    group_broker: BrokerProcess, group_topic: str
) -> None:
    """ListGroups / DescribeGroups / OffsetFetch through librdkafka while members run."""
    broker = group_broker
    topic = group_topic
    group_id = "group-admin"
    _create_topic(broker.bootstrap, topic)
    admin = confluent_admin.AdminClient({"bootstrap.servers": broker.bootstrap})
    with Group("confluent-kafka", broker, topic, group_id) as group:
        members = [group.add("left"), group.add("right")]
        group.wait(_balanced(members, 3), lambda: f"assignments: {_assignments(members)}")
        records = _produce(broker.bootstrap, topic, 60, "admin")
        group.wait_consumed(records, members)

        listed = admin.list_consumer_groups(request_timeout=PHASE_SECONDS).result(
            timeout=PHASE_SECONDS
        )
        assert not listed.errors, listed.errors
        assert group_id in {listing.group_id for listing in listed.valid}, listed.valid

        described = _describe(admin, group_id)
        assert described.group_id == group_id
        assert described.state == confluent_kafka.ConsumerGroupState.STABLE, described.state
        assert not described.is_simple_consumer_group
        assert described.partition_assignor in ("range", "roundrobin"), described
        assert sorted(member.client_id for member in described.members) == [
            "confluent-kafka-left",
            "confluent-kafka-right",
        ]
        described_assignments = {
            member.client_id: frozenset(
                each.partition for each in member.assignment.topic_partitions if each.topic == topic
            )
            for member in described.members
        }
        assert described_assignments == {
            f"confluent-kafka-{member.name}": member.assignment for member in members
        }

        # What each member committed is what its committed() and the admin say.
        for member in members:
            seen = member.call(
                lambda consumer, member=member: consumer.committed(member.assignment)
            )
            assert seen == member.committed, (member.name, seen, member.committed)
        offsets = admin.list_consumer_group_offsets(
            [confluent_kafka.ConsumerGroupTopicPartitions(group_id)],
            request_timeout=PHASE_SECONDS,
        )[group_id].result(timeout=PHASE_SECONDS)
        assert (
            {
                each.partition: each.offset
                for each in offsets.topic_partitions
                if each.topic == topic
            }
            == _committed(members)
            == _end_offsets(records)
        )


@pytest.mark.parametrize("client", CLIENTS)
def test_running_members_rejoin_after_broker_restart(
    group_broker: BrokerProcess, group_topic: str, client: str
) -> None:
    """Members that keep running while the broker restarts (gracefully, then SIGKILL)
    find the group gone, rejoin, and consume what is produced afterwards exactly once."""
    _require(client)
    broker = group_broker
    topic = group_topic
    group_id = f"group-rejoin-{client}"
    _create_topic(broker.bootstrap, topic)
    expected: set[Delivered] = set()
    with Group(client, broker, topic, group_id) as group:
        group.add("one")
        group.add("two")
        group.wait(
            _balanced(group.members, 3), lambda: f"assignments {_assignments(group.members)}"
        )
        records = _produce(broker.bootstrap, topic, 60, "before")
        expected |= records
        group.wait_consumed(records, group.members)
        for kill in (False, True):
            broker.restart(kill=kill)
            started = time.monotonic()
            # A new admin client: librdkafka 2.16's that saw the broker down
            # re-bootstraps and can lose its coordinator lookup (the request then
            # hangs until its timeout; once it even failed an assertion in
            # rd_kafka_enq_once_del_source_return and aborted).
            admin = confluent_admin.AdminClient({"bootstrap.servers": broker.bootstrap})

            def stable(admin: Any = admin) -> bool:
                try:
                    description = _describe(admin, group_id, seconds=5.0)
                except confluent_kafka.KafkaException:
                    return False
                return (
                    description.state == confluent_kafka.ConsumerGroupState.STABLE
                    and len(description.members) == 2
                )

            # Stable with both members: both have the new generation, so
            # their commits from now on are accepted.
            group.wait(
                stable, lambda admin=admin: f"not stable again: {_describe(admin, group_id)}"
            )
            seconds = time.monotonic() - started
            print(f"{client}: group stable again {seconds:.2f} s after restart (kill={kill})")
            group.wait(
                _balanced(group.members, 3), lambda: f"assignments {_assignments(group.members)}"
            )
            records = _produce(broker.bootstrap, topic, 60, f"after-{kill}")
            expected |= records
            group.wait_consumed(records, group.members)
            _check_exactly_once(_consumed(group.all_members), expected)


def test_confluent_cooperative_sticky_group(group_broker: BrokerProcess, group_topic: str) -> None:
    """librdkafka's incremental (cooperative-sticky) rebalancing: members keep
    their partitions across rebalances, which take two JoinGroup rounds."""
    broker = group_broker
    topic = group_topic
    _create_topic(broker.bootstrap, topic)
    settings = {"partition.assignment.strategy": "cooperative-sticky"}
    with Group("confluent-kafka", broker, topic, "group-cooperative", settings) as group:
        first = group.add("first")
        group.wait(
            lambda: first.assignment == ALL_PARTITIONS, lambda: f"first has {first.assignment}"
        )
        group.add("second")
        group.add("third")
        group.wait(
            _balanced(group.members, 2), lambda: f"assignments: {_assignments(group.members)}"
        )
        records = _produce(broker.bootstrap, topic, 120, "cooperative")
        group.wait_consumed(records, group.members)
        kept = {member.name: member.assignment for member in group.members}
        group.remove(group.members[1])
        group.wait(
            _balanced(group.members, 3), lambda: f"assignments: {_assignments(group.members)}"
        )
        for member in group.members:
            assert kept[member.name] <= member.assignment, "a cooperative rebalance moved it"
        more = _produce(broker.bootstrap, topic, 60, "cooperative-after-leave")
        group.wait_consumed(more, group.members)
        _check_exactly_once(_consumed(group.all_members), records | more)
        described = _describe(
            confluent_admin.AdminClient({"bootstrap.servers": broker.bootstrap}),
            "group-cooperative",
        )
        assert described.state == confluent_kafka.ConsumerGroupState.STABLE
        assert described.partition_assignor == "cooperative-sticky"


def test_confluent_static_members_restart_without_a_rebalance(
    group_broker: BrokerProcess, group_topic: str
) -> None:
    """KIP-345: a static member (group.instance.id) that restarts within its session
    gets its partitions back with no rebalance; the other member keeps consuming."""
    broker = group_broker
    topic = group_topic
    _create_topic(broker.bootstrap, topic)
    with Group("confluent-kafka", broker, topic, "group-static") as group:
        first = group.add("first", settings={"group.instance.id": "static-1"})
        second = group.add("second", settings={"group.instance.id": "static-2"})
        group.wait(
            _balanced(group.members, 3), lambda: f"assignments: {_assignments(group.members)}"
        )
        records = _produce(broker.bootstrap, topic, 120, "static")
        group.wait_consumed(records, group.members)
        kept = {member.name: member.assignment for member in group.members}
        rebalances = _broker_log(broker).count("preparing to rebalance group group-static")

        # A static member does not leave on close: its place waits for it.
        group.remove(second)
        again = group.add("second-again", settings={"group.instance.id": "static-2"})
        group.wait(
            lambda: again.assignment == kept["second"],
            lambda: f"the restarted member has {again.assignment}, had {kept['second']}",
        )
        assert first.assignment == kept["first"]
        more = _produce(broker.bootstrap, topic, 60, "static-after-restart")
        group.wait_consumed(more, group.members)
        _check_exactly_once(_consumed(group.all_members), records | more)
        log = _broker_log(broker)
        assert log.count("preparing to rebalance group group-static") == rebalances, (
            "the restart caused a rebalance" + _log_tail(broker)
        )
        assert "static member static-2 of group group-static is back" in log
        described = _describe(
            confluent_admin.AdminClient({"bootstrap.servers": broker.bootstrap}), "group-static"
        )
        assert described.state == confluent_kafka.ConsumerGroupState.STABLE
        assert sorted(m.group_instance_id for m in described.members) == ["static-1", "static-2"]

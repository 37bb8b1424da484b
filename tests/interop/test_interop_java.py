"""The official Java Kafka client 4.3 against a trioring broker process.

The client is ``java/TrioringJavaClient.java``, compiled once per session and
driven as a subprocess (its header describes the event lines it prints). The
jars come from a PyPI wheel into a cache outside the repository
(``java_clients.py``); without a JDK or the jars the tests skip, unless
``TRIORING_REQUIRE_JAVA=1`` (CI) makes that a failure.

1. Records produced by Java's idempotent, acks=all producer (uncompressed,
   zstd and snappy) are read back byte-exact by confluent-kafka, in order with dense
   offsets, stored in batches of one producer id with sequences that match
   the offsets; and records from confluent-kafka are read back byte-exact by
   a Java consumer.
In the group tests confluent-kafka produces (one JVM less per batch) and
Java members consume.

2. A classic group (range assignor) of two Java members splits a topic's
   partitions and consumes every record exactly once with synchronous
   commits; after both leave (one on SIGTERM), a fresh member starts exactly
   at the committed offsets. After a member is SIGKILLed mid-stream, the next
   one re-reads exactly what the killed member had not committed. A static
   member (KIP-345) closed and started again takes its partitions back in
   the same generation, and the other member sees no rebalance.
3. Cooperative rebalancing (CooperativeStickyAssignor): a member joins while
   records flow and later the first one leaves; the rebalances are
   incremental (a member keeping partitions is only told to revoke the ones
   that move) and every record is consumed exactly once across the group.
4. The same with ``group.protocol=consumer`` (KIP-848), expected to fail until
   the broker implements ConsumerGroupHeartbeat.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from interop_clients import (
    Consumed,
    Record,
    check_round_trip,
    confluent_consume,
    confluent_consumer,
    confluent_produce,
    sample_records,
)
from interop_wire import create_topic, served_batch_headers, served_codecs
from java_clients import (
    JavaClient,
    JavaClientsUnavailable,
    JavaProcess,
    compile_client,
    ensure_jars,
    java_produce,
    jdk_unavailable_reason,
    parse_offsets,
    parse_partitions,
    parse_record,
    record_line,
    wait_until,
)

from trioring.testing import BrokerProcess

pytest.importorskip("confluent_kafka")

#: Seconds one phase of a group test may take (a rebalance, consuming a batch).
PHASE_SECONDS = 30.0
#: A Java member's heartbeats (classic protocol): short, so rebalances are quick.
SESSION_TIMEOUT_MS = 6000
HEARTBEAT_INTERVAL_MS = 300
#: Also the classic rebalance timeout: how long a join waits for a silent member.
MAX_POLL_INTERVAL_MS = 10000


def _unavailable(reason: str) -> NoReturn:
    """Skip, or fail where the Java tests must run (CI sets TRIORING_REQUIRE_JAVA=1)."""
    if os.environ.get("TRIORING_REQUIRE_JAVA") == "1":
        pytest.fail(f"TRIORING_REQUIRE_JAVA=1 but the Java client cannot run: {reason}")
    pytest.skip(f"Java Kafka client unavailable: {reason}")


@pytest.fixture(scope="session")
def java_client(tmp_path_factory: pytest.TempPathFactory) -> JavaClient:
    reason = jdk_unavailable_reason()
    if reason is not None:
        _unavailable(reason)
    try:
        jars = ensure_jars()
    except JavaClientsUnavailable as error:
        _unavailable(str(error))
    assert any(jar.name.startswith("kafka-clients-4.3.") for jar in jars), jars
    return compile_client(jars, tmp_path_factory.mktemp("java-client"))


@pytest.fixture
def java(java_client: JavaClient, tmp_path: Path) -> Iterator[Callable[..., JavaProcess]]:
    """Starts Java clients for a test (``java("name", "consume", ...)``); kills leftovers."""
    processes: list[JavaProcess] = []

    def start(name: str, *arguments: str) -> JavaProcess:
        process = JavaProcess(java_client, arguments, tmp_path / f"{name}.log")
        processes.append(process)
        return process

    yield start
    for process in processes:
        process.kill()


# --- produce and consume ----------------------------------------------------------------------

PARTITIONS = 3
RECORDS = 240


@pytest.mark.parametrize("codec", ["none", "zstd", "snappy"])
def test_java_producer_records_read_byte_exact_by_confluent(
    module_broker: BrokerProcess, java_client: JavaClient, topic_name: str, codec: str
) -> None:
    create_topic(module_broker.port, topic_name, PARTITIONS)
    records = sample_records(
        RECORDS, partitions=PARTITIONS, null_record_ok=True, null_header_ok=True
    )

    delivered = java_produce(
        java_client, module_broker.bootstrap, topic_name, records, compression=codec
    )
    consumed = confluent_consume(module_broker.bootstrap, topic_name, PARTITIONS, len(records))

    check_round_trip(records, delivered, consumed, PARTITIONS)
    codecs, high_watermarks = served_codecs(module_broker.port, topic_name, PARTITIONS)
    assert high_watermarks == len(records), "the topic holds records nobody sent"
    assert set(codecs) <= {codec, "none"}, codecs
    assert codecs[codec] > 0, f"no {codec} batch was stored: {codecs}"
    # Idempotence: every batch carries the producer's id, and its sequence
    # numbers count records from 0 in each partition, as the offsets do.
    producer_ids = set()
    for partition in range(PARTITIONS):
        headers, _ = served_batch_headers(module_broker.port, topic_name, partition)
        for header in headers:
            assert header.producer_id >= 0 and header.producer_epoch >= 0, header
            assert header.base_sequence == header.base_offset, header
            producer_ids.add(header.producer_id)
    assert len(producer_ids) == 1, producer_ids


def _records_of(process: JavaProcess, topic: str) -> list[Consumed]:
    records = []
    for event in process.events("RECORD"):
        record_topic, record = parse_record(event[1:])
        assert record_topic == topic, event
        records.append(record)
    return records


def test_confluent_records_read_byte_exact_by_java_consumer(
    module_broker: BrokerProcess, java: Callable[..., JavaProcess], topic_name: str
) -> None:
    create_topic(module_broker.port, topic_name, PARTITIONS)
    records = sample_records(
        RECORDS, partitions=PARTITIONS, null_record_ok=True, null_header_ok=True
    )
    delivered = confluent_produce(
        module_broker.bootstrap, topic_name, records, **{"compression.type": "lz4"}
    )

    consumer = java(
        "reader",
        "consume",
        "--bootstrap",
        module_broker.bootstrap,
        "--topic",
        topic_name,
        "--group",
        f"java-reader-{uuid.uuid4().hex[:8]}",
        "--max-records",
        str(len(records)),
    )
    wait_until(lambda: consumer.events("EXIT"), "the consumer's exit after all records", [consumer])
    assert consumer.wait_exit() == 0, consumer.describe()

    consumed = _records_of(consumer, topic_name)
    check_round_trip(records, delivered, consumed, PARTITIONS)


# --- consumer groups: reading the members' events ------------------------------------------


class Member:
    """What one Java consumer group member reported, replayed from its events."""

    def __init__(self, process: JavaProcess, topic: str) -> None:
        self.process = process
        self.topic = topic

    @property
    def name(self) -> str:
        return self.process.name

    def owned(self) -> frozenset[int]:
        """Its partitions now: assignments minus revocations and losses, in order."""
        owned: set[int] = set()
        for event in self.process.events():
            if event[0] == "ASSIGNED":
                owned |= parse_partitions(event[1])
            elif event[0] in ("REVOKED", "LOST"):
                owned -= parse_partitions(event[1])
        return frozenset(owned)

    def records(self) -> list[Consumed]:
        return _records_of(self.process, self.topic)

    def positions(self) -> list[tuple[int, int]]:
        return [(record.partition, record.offset) for record in self.records()]

    def committed(self) -> dict[int, int]:
        """The highest offset it committed per partition."""
        committed: dict[int, int] = {}
        for event in self.process.events("COMMITTED"):
            for partition, offset in parse_offsets(event[1]).items():
                assert offset is not None, event
                committed[partition] = max(committed.get(partition, 0), offset)
        return committed

    def exited(self) -> bool:
        return bool(self.process.events("EXIT"))


def _start_member(
    java: Callable[..., JavaProcess],
    broker: BrokerProcess,
    name: str,
    topic: str,
    group: str,
    *options: str,
) -> Member:
    process = java(
        name,
        "consume",
        "--bootstrap",
        broker.bootstrap,
        "--topic",
        topic,
        "--group",
        group,
        "--client-id",
        name,
        *options,
    )
    return Member(process, topic)


def _classic(strategy: str) -> tuple[str, ...]:
    return (
        "--protocol",
        "classic",
        "--assignment-strategy",
        strategy,
        "--session-timeout-ms",
        str(SESSION_TIMEOUT_MS),
        "--heartbeat-interval-ms",
        str(HEARTBEAT_INTERVAL_MS),
        "--max-poll-interval-ms",
        str(MAX_POLL_INTERVAL_MS),
    )


def _group_records(count: int, partitions: int, start: int = 0) -> list[Record]:
    """Keyed records, every partition explicitly used, each with a unique value."""
    return [
        Record(
            key=b"key-%d" % index,
            value=b"value-%d-" % index + bytes([index % 256]) * (index % 40),
            headers=(("index", b"%d" % index),),
            partition=index % partitions if index % 2 == 0 else None,
        )
        for index in range(start, start + count)
    ]


def _check_contents(
    members: list[Member], sent: list[Record], delivered: list[tuple[int, int]]
) -> None:
    """Every consumed record is the one produced at its position, byte-exact."""
    expected = dict(zip(delivered, sent, strict=True))
    for member in members:
        for record in member.records():
            want = expected.get((record.partition, record.offset))
            assert want is not None, f"{member.name} read a record nobody sent: {record}"
            assert (record.key, record.value, record.headers) == (
                want.key,
                want.value,
                want.headers,
            ), f"{member.name} at {record.partition}/{record.offset}: {record} != {want}"


def _check_exactly_once(members: list[Member], delivered: list[tuple[int, int]]) -> None:
    """Each produced record consumed once across the group, in offset order per member.

    At-least-once allows a re-read only of what the first reader never
    committed: a record read twice must lie at or past some reader's last
    commit on its partition. The members commit after every poll and, for the
    partitions they give up, in onPartitionsRevoked, so no re-read is expected
    at all unless a member lost partitions or a commit failed.
    """
    readers: dict[tuple[int, int], list[Member]] = defaultdict(list)
    for member in members:
        positions = member.positions()
        for partition in {p for p, _ in positions}:
            offsets = [o for p, o in positions if p == partition]
            assert offsets == sorted(offsets), f"{member.name} read {partition} out of order"
        for position in positions:
            readers[position].append(member)
    assert set(readers) == set(delivered), (
        f"lost: {sorted(set(delivered) - set(readers))[:10]}, "
        f"never produced: {sorted(set(readers) - set(delivered))[:10]}"
    )
    twice = {position: names for position, names in readers.items() if len(names) > 1}
    wrongly_twice = {
        position: [member.name for member in names]
        for position, names in twice.items()
        if all(member.committed().get(position[0], 0) > position[1] for member in names)
    }
    assert not wrongly_twice, f"re-read although committed: {sorted(wrongly_twice.items())[:10]}"
    excused = [
        event
        for member in members
        for event in member.process.events()
        if event[0] in ("LOST", "COMMIT_FAILED")
    ]
    assert excused or not twice, (
        f"{len(twice)} records read twice although every commit succeeded: {sorted(twice)[:10]}"
    )


def _end_offsets(delivered: list[tuple[int, int]]) -> dict[int, int]:
    ends: dict[int, int] = {}
    for partition, offset in delivered:
        ends[partition] = max(ends.get(partition, 0), offset + 1)
    return ends


def _stop(member: Member, *, signal: bool = False) -> None:
    """Stop a member by closing its stdin (or SIGTERM); it commits, leaves and exits 0."""
    if signal:
        member.process.terminate()
    else:
        member.process.close_stdin()
    assert member.process.wait_exit() == 0, member.process.describe()
    reason = "sigterm" if signal else "stdin-closed"
    assert member.process.events("EXIT")[-1][1] == reason, member.process.describe()
    assert not member.process.events("ERROR"), member.process.describe()


# --- a classic group ----------------------------------------------------------------------------

GROUP_PARTITIONS = 4


def test_classic_group_splits_partitions_and_resumes_at_commits(
    broker: BrokerProcess,
    java: Callable[..., JavaProcess],
    topic_name: str,
) -> None:
    create_topic(broker.port, topic_name, GROUP_PARTITIONS)
    group = f"java-classic-{uuid.uuid4().hex[:8]}"
    everything = frozenset(range(GROUP_PARTITIONS))
    first = _start_member(java, broker, "first", topic_name, group, *_classic("range"))
    second = _start_member(java, broker, "second", topic_name, group, *_classic("range"))
    members = [first, second]

    def split() -> bool:
        owned = [member.owned() for member in members]
        return all(owned) and owned[0].isdisjoint(owned[1]) and owned[0] | owned[1] == everything

    wait_until(split, "two members splitting the partitions", [m.process for m in members])
    # Range over 4 partitions and 2 members: two each.
    assert sorted(len(member.owned()) for member in members) == [2, 2]

    sent = _group_records(400, GROUP_PARTITIONS)
    delivered = confluent_produce(broker.bootstrap, topic_name, sent)
    ends = _end_offsets(delivered)
    assert set(ends) == everything

    def all_committed() -> bool:
        committed = {**first.committed(), **second.committed()}
        return committed == ends

    wait_until(all_committed, "every record consumed and committed", [m.process for m in members])
    assert split(), "the group rebalanced while consuming"
    for member in members:
        assert {partition for partition, _ in member.positions()} <= member.owned()
    _check_exactly_once(members, delivered)
    _check_contents(members, sent, delivered)

    _stop(first, signal=True)
    _stop(second)

    # A fresh member starts exactly where the group committed.
    more = _group_records(120, GROUP_PARTITIONS, start=400)
    more_delivered = confluent_produce(broker.bootstrap, topic_name, more)
    third = _start_member(java, broker, "third", topic_name, group, *_classic("range"))
    wait_until(lambda: len(third.records()) >= len(more), "the new records", [third.process])
    starts = parse_offsets(third.process.events("STARTS")[0][1])
    assert starts == ends, "the new member did not start at the committed offsets"
    assert sorted(third.positions()) == sorted(more_delivered), "re-read or lost records"
    _check_contents([third], more, more_delivered)

    _stop(third)


def _generations(member: Member) -> list[int]:
    return [int(event[2]) for event in member.process.events("ASSIGNED")]


def test_classic_static_member_comes_back_without_a_rebalance(
    broker: BrokerProcess,
    java: Callable[..., JavaProcess],
    topic_name: str,
) -> None:
    """KIP-345 with the Java client: a static member closes (staying in the group)
    and a new process with its group.instance.id takes its place and partitions
    back in the same generation; the other member sees no rebalance at all."""
    create_topic(broker.port, topic_name, GROUP_PARTITIONS)
    group = f"java-static-{uuid.uuid4().hex[:8]}"
    everything = frozenset(range(GROUP_PARTITIONS))
    options = _classic("range")
    steady = _start_member(
        java, broker, "steady", topic_name, group, *options, "--group-instance-id", "steady"
    )
    leaving = _start_member(
        java, broker, "leaving", topic_name, group, *options, "--group-instance-id", "restarts"
    )
    members = [steady, leaving]

    def split() -> bool:
        owned = [member.owned() for member in members]
        return all(owned) and owned[0].isdisjoint(owned[1]) and owned[0] | owned[1] == everything

    wait_until(split, "two static members splitting the partitions", [m.process for m in members])
    sent = _group_records(200, GROUP_PARTITIONS)
    delivered = confluent_produce(broker.bootstrap, topic_name, sent)
    ends = _end_offsets(delivered)
    wait_until(
        lambda: {**steady.committed(), **leaving.committed()} == ends,
        "every record consumed and committed",
        [m.process for m in members],
    )
    # The steady member may have seen one generation or two by now (two
    # when the second member joined after the first rebalance ended).
    steady_generations = _generations(steady)
    steady_revocations = len(steady.process.events("REVOKED"))
    generation = steady_generations[-1]
    assert _generations(leaving)[-1] == generation
    its_partitions = leaving.owned()
    _stop(leaving)

    more = _group_records(80, GROUP_PARTITIONS, start=len(sent))
    more_delivered = confluent_produce(broker.bootstrap, topic_name, more)
    back = _start_member(
        java, broker, "back", topic_name, group, *options, "--group-instance-id", "restarts"
    )
    more_ends = _end_offsets(more_delivered)
    wait_until(
        lambda: {**steady.committed(), **back.committed()} == more_ends,
        "the records produced while it was away",
        [steady.process, back.process],
    )
    assert [parse_partitions(e[1]) for e in back.process.events("ASSIGNED")] == [its_partitions]
    assert _generations(back) == [generation], "the returning static member caused a rebalance"
    assert _generations(steady) == steady_generations, "the other member saw a rebalance"
    revocations = steady.process.events("REVOKED")
    assert len(revocations) == steady_revocations, steady.process.describe()
    starts = parse_offsets(back.process.events("STARTS")[0][1])
    assert starts == {partition: ends[partition] for partition in its_partitions}
    members.append(back)
    _check_exactly_once(members, delivered + more_delivered)
    _check_contents(members, sent + more, delivered + more_delivered)
    _stop(back)
    _stop(steady)


def _confluent_commit(bootstrap: str, topic: str, group: str, offsets: dict[int, int]) -> None:
    """Commit offsets for a group without joining it (librdkafka, generation -1)."""
    confluent_kafka = pytest.importorskip("confluent_kafka")
    consumer = confluent_consumer(bootstrap, **{"group.id": group})
    try:
        answer = consumer.commit(
            offsets=[
                confluent_kafka.TopicPartition(topic, partition, offset)
                for partition, offset in offsets.items()
            ],
            asynchronous=False,
        )
    finally:
        consumer.close()
    assert all(each.error is None for each in answer), answer


def test_classic_member_killed_mid_stream_its_uncommitted_records_are_reread(
    broker: BrokerProcess,
    java: Callable[..., JavaProcess],
    topic_name: str,
) -> None:
    """A slow member is SIGKILLed after some commits; the next member re-reads exactly
    what it had not committed, and nothing before."""
    create_topic(broker.port, topic_name, GROUP_PARTITIONS)
    group = f"java-crash-{uuid.uuid4().hex[:8]}"
    everything = frozenset(range(GROUP_PARTITIONS))
    # Some records already consumed: committed by another client, outside the group.
    head = _group_records(80, GROUP_PARTITIONS)
    before = _end_offsets(confluent_produce(broker.bootstrap, topic_name, head))
    _confluent_commit(broker.bootstrap, topic_name, group, before)

    crash_sent = _group_records(200, GROUP_PARTITIONS, start=len(head))
    crashing = _start_member(
        java,
        broker,
        "crashing",
        topic_name,
        group,
        *_classic("range"),
        "--max-poll-records",
        "5",
        "--pause-ms",
        "50",
    )
    wait_until(
        lambda: crashing.owned() == everything, "the member's assignment", [crashing.process]
    )
    crash_delivered = confluent_produce(broker.bootstrap, topic_name, crash_sent)
    wait_until(
        lambda: len(crashing.records()) >= 40, "the slow member's first records", [crashing.process]
    )
    crashing.process.kill()
    read_before_crash = set(crashing.positions())
    assert len(read_before_crash) < len(crash_sent), "the member read everything before the kill"
    assert parse_offsets(crashing.process.events("STARTS")[0][1]) == before
    # What the member said it committed; a commit it had sent when it was killed
    # (covering all it had read) may have reached the broker unreported.
    reported = {**before, **crashing.committed()}
    read_ends = {**before, **_end_offsets(sorted(read_before_crash))}

    # The dead member stays in the group until its session times out.
    last = _start_member(java, broker, "last", topic_name, group, *_classic("range"))
    crash_ends = _end_offsets(crash_delivered)

    def caught_up() -> bool:
        if not last.process.events("STARTS"):
            return False
        starts = parse_offsets(last.process.events("STARTS")[0][1])
        return {**starts, **last.committed()} == crash_ends

    wait_until(
        caught_up,
        "the records after the crash",
        [last.process],
        seconds=PHASE_SECONDS + SESSION_TIMEOUT_MS / 1000,
    )
    starts = parse_offsets(last.process.events("STARTS")[0][1])
    for partition in range(GROUP_PARTITIONS):
        assert starts[partition] in (reported[partition], read_ends[partition]), (
            f"partition {partition}: the next member starts at {starts[partition]}, but the "
            f"killed member's commits were {reported[partition]} (reported) or "
            f"{read_ends[partition]} (in flight)"
        )
    committed = {(p, o) for p, o in crash_delivered if o < (starts[p] or 0)}
    assert committed <= read_before_crash, "the member committed records it never read"
    assert Counter(last.positions()).most_common(1)[0][1] == 1, "a record was read twice"
    assert set(last.positions()) == set(crash_delivered) - committed, (
        "the next member did not read exactly what the killed one had not committed"
    )
    _check_contents([crashing, last], crash_sent, crash_delivered)
    _stop(last)


# --- incremental rebalancing: cooperative (classic protocol) and KIP-848 ----------------------

FLOW_PARTITIONS = 6
#: Records produced per tick while the members change, and the tick.
FLOW_RECORDS_PER_TICK = 4
FLOW_TICK_SECONDS = 0.025
#: Enough for a minute of flow: KIP-848 rebalances take a few heartbeat intervals.
FLOW_RECORDS_MAX = 12000
#: Records each member must have consumed in a phase before the group changes again.
RECORDS_PER_PHASE = 150


class FlowingProducer:
    """A Java producer fed records at a steady rate from a thread, until stopped."""

    def __init__(self, java: Callable[..., JavaProcess], broker: BrokerProcess, topic: str) -> None:
        self.records = _group_records(FLOW_RECORDS_MAX, FLOW_PARTITIONS)
        self.process = java(
            "producer", "produce", "--bootstrap", broker.bootstrap, "--topic", topic
        )
        self.sent = 0
        #: Why feeding stopped early (the producer died), for stop() to report.
        self.feed_error: OSError | ValueError | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._feed, name="java-producer-feed", daemon=True)
        self._thread.start()

    def _feed(self) -> None:
        while not self._stop.is_set() and self.sent < len(self.records):
            batch = self.records[self.sent : self.sent + FLOW_RECORDS_PER_TICK]
            try:
                self.process.send("".join(map(record_line, batch)))
            except (OSError, ValueError) as error:
                # It exited (stop() fails with its output), or the test ended
                # and its teardown closed the pipe.
                self.feed_error = error
                return
            self.sent += len(batch)
            self._stop.wait(FLOW_TICK_SECONDS)

    def stop(self) -> tuple[list[Record], list[tuple[int, int]]]:
        """Stop feeding, wait for every acknowledgement; (records sent, where each landed)."""
        self._stop.set()
        self._thread.join(PHASE_SECONDS)
        assert self.feed_error is None, f"{self.feed_error}{self.process.describe()}"
        assert not self.process.events("ERROR"), self.process.describe()
        assert self.sent < len(self.records), "the producer ran out of records: raise the max"
        self.process.close_stdin()
        assert self.process.wait_exit() == 0, self.process.describe()
        assert self.process.events()[-1] == ["DONE", str(self.sent), "0"], self.process.describe()
        delivered: dict[int, tuple[int, int]] = {}
        for event in self.process.events("ACK"):
            index, partition, offset = map(int, event[1:])
            delivered[index] = (partition, offset)
        assert sorted(delivered) == list(range(self.sent)), self.process.describe()
        return self.records[: self.sent], [delivered[index] for index in range(self.sent)]


def _check_incremental(member: Member, everything: frozenset[int]) -> list[frozenset[int]]:
    """Replays a member's events: every revocation before it closed names only some of
    what it owned (never all it owned), every assignment adds partitions it did not own,
    nothing is lost, and each newly owned partition is read from its committed offset.
    Returns the revocations before it closed."""
    revocations = []
    owned: set[int] = set()
    closing = False
    starts: dict[int, int] = {}
    first_read: dict[int, int] = {}
    for event in member.process.events():
        kind = event[0]
        if kind == "CLOSING":
            closing = True
        elif kind == "LOST":
            raise AssertionError(f"{member.name} lost partitions: {event}")
        elif kind == "ASSIGNED":
            added = parse_partitions(event[1])
            assert not (added & owned), f"{member.name} re-assigned {added & owned}: {event}"
            owned |= added
            for partition in added:
                first_read.pop(partition, None)
        elif kind == "STARTS":
            for partition, offset in parse_offsets(event[1]).items():
                starts[partition] = 0 if offset is None else offset
        elif kind == "REVOKED":
            revoked = parse_partitions(event[1])
            assert revoked <= owned, f"{member.name} revoked what it did not own: {event}"
            if not closing:
                assert revoked, f"{member.name} was told to revoke nothing: {event}"
                assert revoked != owned, (
                    f"{member.name} had to revoke all it owned ({sorted(owned)}) in a "
                    "rebalance: not incremental"
                )
                revocations.append(revoked)
            owned -= revoked
        elif kind == "RECORD":
            _, record = parse_record(event[1:])
            assert record.partition in owned, f"{member.name} read a partition it does not own"
            if record.partition not in first_read:
                first_read[record.partition] = record.offset
                assert record.offset == starts[record.partition], (
                    f"{member.name} began {record.partition} at {record.offset}, "
                    f"not at the committed {starts[record.partition]}"
                )
    assert owned <= everything
    return revocations


def _incremental_rebalance_scenario(
    broker: BrokerProcess,
    java: Callable[..., JavaProcess],
    topic: str,
    member_options: tuple[str, ...],
    second_options: tuple[str, ...] | None = None,
) -> None:
    """A member joins while records flow, later the first member leaves; checks that both
    rebalances are incremental and every record is consumed exactly once.

    ``second_options`` (default: the first member's) may name the other group
    protocol: the group then holds a classic and a consumer-protocol member.
    """
    create_topic(broker.port, topic, FLOW_PARTITIONS)
    group = f"java-incremental-{uuid.uuid4().hex[:8]}"
    everything = frozenset(range(FLOW_PARTITIONS))
    pacing = ("--max-poll-records", "20", "--pause-ms", "10")
    first = _start_member(java, broker, "first", topic, group, *member_options, *pacing)
    wait_until(
        lambda: first.owned() == everything, "the first member's assignment", [first.process]
    )

    producer = FlowingProducer(java, broker, topic)
    processes = [first.process, producer.process]
    wait_until(lambda: len(first.records()) >= RECORDS_PER_PHASE, "records flowing", processes)

    second = _start_member(
        java, broker, "second", topic, group, *(second_options or member_options), *pacing
    )
    processes.append(second.process)

    def split() -> bool:
        owned = first.owned(), second.owned()
        return all(owned) and owned[0].isdisjoint(owned[1]) and owned[0] | owned[1] == everything

    wait_until(split, "the joined member's share", processes, seconds=PHASE_SECONDS)
    wait_until(
        lambda: len(second.records()) >= RECORDS_PER_PHASE, "the joined member consuming", processes
    )
    # The first member kept part of its partitions and gave up only the others.
    moved = everything - first.owned()
    revocations = [parse_partitions(event[1]) for event in first.process.events("REVOKED")]
    assert revocations == [moved], (
        f"the first member kept {sorted(first.owned())} but was told to revoke "
        f"{[sorted(each) for each in revocations]}: not only the {sorted(moved)} that moved"
    )

    first.process.close_stdin()
    wait_until(first.exited, "the first member's exit", processes)
    assert first.process.wait_exit() == 0, first.process.describe()
    wait_until(lambda: second.owned() == everything, "the remaining member's takeover", processes)
    read = len(second.records())
    wait_until(
        lambda: len(second.records()) >= read + RECORDS_PER_PHASE,
        "the remaining member consuming all partitions",
        processes,
    )

    sent, delivered = producer.stop()
    ends = _end_offsets(delivered)
    assert set(ends) == everything
    wait_until(
        lambda: second.committed() == ends,
        "the remaining member committing everything",
        [second.process],
    )
    _stop(second)

    members = [first, second]
    assert _check_incremental(first, everything) == [moved]
    assert _check_incremental(second, everything) == [], "the joined member had to revoke"
    _check_exactly_once(members, delivered)
    _check_contents(members, sent, delivered)


def test_cooperative_sticky_rebalances_incrementally_and_consumes_exactly_once(
    broker: BrokerProcess, java: Callable[..., JavaProcess], topic_name: str
) -> None:
    _incremental_rebalance_scenario(
        broker,
        java,
        topic_name,
        _classic("org.apache.kafka.clients.consumer.CooperativeStickyAssignor"),
    )


def test_consumer_protocol_rebalances_incrementally_and_consumes_exactly_once(
    fast_groups_broker: BrokerProcess, java: Callable[..., JavaProcess], topic_name: str
) -> None:
    # KIP-848: the broker assigns with its default assignor (a client may name one
    # with --remote-assignor); the client sets no partition.assignment.strategy,
    # session timeout or heartbeat interval, and rebalances advance at the
    # broker's heartbeat interval (Kafka's default 5 s; 0.5 s for this broker).
    _incremental_rebalance_scenario(
        fast_groups_broker, java, topic_name, ("--protocol", "consumer")
    )


def test_a_consumer_protocol_member_joins_a_classic_group(
    fast_groups_broker: BrokerProcess, java: Callable[..., JavaProcess], topic_name: str
) -> None:
    """Kafka 4.0's rolling upgrade: a classic (cooperative-sticky) member is joined by a
    group.protocol=consumer member; the group becomes a consumer group with the classic
    member in it, assigned by the broker, still incrementally and exactly once."""
    _incremental_rebalance_scenario(
        fast_groups_broker,
        java,
        topic_name,
        _classic("org.apache.kafka.clients.consumer.CooperativeStickyAssignor"),
        ("--protocol", "consumer"),
    )

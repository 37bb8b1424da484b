"""trioring.client's consumer as a group member, alone and next to confluent-kafka's.

A group splits a topic's partitions between its members, whoever the leader
is (Trio or librdkafka), and with commits every record is read once: the
tests count every record each member got. Every wait is bounded. The groups
of Trio members alone run over both transports: the wire, and an embedded
broker reached in-process (``bootstrap_or_broker``).
"""

from __future__ import annotations

import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
from kio.schema.errors import ErrorCode

import trioring
from trioring.client import (
    CommitFailedError,
    Consumer,
    open_admin,
    open_consumer,
    open_producer,
)
from trioring.client._assignors import MemberSubscription, assign
from trioring.config import GroupConfig
from trioring.errors import InvalidArgumentError, KafkaError
from trioring.testing import BrokerProcess

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "interop"))
from client_support import run_broker_process
from interop_clients import confluent_consumer

#: Seconds a whole group scenario may take before the test fails.
SCENARIO_SECONDS = 60.0
#: Group timings short enough for tests, as Kafka's tests shorten them.
GROUP_SETTINGS: dict[str, Any] = {
    "session_timeout_ms": 6000,
    "heartbeat_interval_ms": 300,
    "rebalance_timeout_ms": 10_000,
    "auto_commit_interval_ms": 300,
    "fetch_max_wait_ms": 100,
    "auto_offset_reset": "earliest",
}
CONFLUENT_SETTINGS = {
    "session.timeout.ms": 6000,
    "heartbeat.interval.ms": 300,
    "enable.auto.commit": True,
    "auto.commit.interval.ms": 300,
    "fetch.wait.max.ms": 100,
}
ASSIGNORS = ["range", "roundrobin", "cooperative-sticky"]
#: The broker waits this long for more members before a new group's first rebalance.
BROKER_CONFIG = "[groups]\ninitial_rebalance_delay_ms = 300\n"


def _run_broker(data_dir: Path, workers: int = 1) -> Iterator[BrokerProcess]:
    yield from run_broker_process(data_dir, workers, BROKER_CONFIG)


@pytest.fixture(scope="module")
def shared_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """One broker for the module's tests that neither stop nor restart it."""
    yield from _run_broker(tmp_path_factory.mktemp("groups") / "data")


@pytest.fixture(scope="module")
def shared_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """One broker of two workers for the module's tests that neither stop nor restart it."""
    yield from _run_broker(tmp_path_factory.mktemp("groups-2") / "data", workers=2)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests given ``bootstrap_or_broker`` run over the wire and in-process; those that
    split a group's partitions also against two workers (coordinator and leaders on
    either)."""
    if "shared_process" in metafunc.fixturenames:
        kinds = ["wire", "embedded"]
        if metafunc.function.__name__ in _ON_TWO_WORKERS_TOO:
            kinds.insert(1, "wire-2-workers")
        metafunc.parametrize("shared_process", kinds, indirect=True)


_ON_TWO_WORKERS_TOO = {
    "test_trio_group_splits_partitions_and_reads_once",
    "test_commits_resume_where_the_group_left_off",
    "test_a_static_member_replaced_by_another_instance_is_fenced",
}


@pytest.fixture
def shared_process(request: pytest.FixtureRequest) -> BrokerProcess | None:
    """A shared broker process (one worker or two), or None: an embedded broker."""
    if request.param == "wire":
        process: BrokerProcess = request.getfixturevalue("shared_broker")
        return process
    if request.param == "wire-2-workers":
        cluster: BrokerProcess = request.getfixturevalue("shared_cluster")
        return cluster
    return None


@pytest.fixture
async def bootstrap_or_broker(
    shared_process: BrokerProcess | None, tmp_path: Path
) -> AsyncIterator[str | trioring.Broker]:
    """What the client is given: the shared broker process's address, or an embedded
    broker (with the process's group settings) that it reaches in-process."""
    if shared_process is not None:
        yield shared_process.bootstrap
        return
    config = trioring.BrokerConfig(
        data_dir=str(tmp_path / "embedded"), groups=GroupConfig(initial_rebalance_delay_ms=300)
    )
    async with trioring.open_broker(config) as broker:
        yield broker


@pytest.fixture(params=["restart", "sigkill", "worker-sigkill"])
def fault(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, BrokerProcess]]:
    """A broker of its own and the fault to inflict on it (two workers to kill one)."""
    kind: str = request.param
    for broker in _run_broker(tmp_path / "data", workers=2 if kind == "worker-sigkill" else 1):
        yield kind, broker


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def _create(bootstrap: str | trioring.Broker, topic: str, partitions: int) -> None:
    async with open_admin(bootstrap) as admin:
        await admin.create_topic(topic, partitions=partitions)


async def _produce(bootstrap: str | trioring.Broker, topic: str, values: list[bytes]) -> None:
    async with open_producer(bootstrap, linger_ms=2) as producer:
        for index, value in enumerate(values):
            producer.send_nowait(topic, value, key=b"key-%d" % index)
        await producer.flush()


class Tally:
    """What every member read: value -> the members that read it."""

    def __init__(self) -> None:
        self.readers: dict[bytes, list[str]] = {}
        self.by_member: Counter[str] = Counter()
        self._lock = threading.Lock()

    def add(self, member: str, value: bytes) -> None:
        with self._lock:
            self.readers.setdefault(value, []).append(member)
            self.by_member[member] += 1

    def duplicates(self) -> dict[bytes, list[str]]:
        with self._lock:
            return {value: who for value, who in self.readers.items() if len(who) > 1}

    def __len__(self) -> int:
        with self._lock:
            return len(self.readers)


async def _trio_member(
    bootstrap: str | trioring.Broker,
    group: str,
    topics: list[str],
    tally: Tally,
    name: str,
    stop: trio.Event,
    assignor: str,
    events: list[tuple[str, str, frozenset[tuple[str, int]]]] | None = None,
) -> None:
    async def note(kind: str, partitions: set[tuple[str, int]]) -> None:
        if events is not None:
            events.append((name, kind, frozenset(partitions)))

    async def assigned(partitions: set[tuple[str, int]]) -> None:
        await note("assigned", partitions)

    async def revoked(partitions: set[tuple[str, int]]) -> None:
        await note("revoked", partitions)

    async def lost(partitions: set[tuple[str, int]]) -> None:
        await note("lost", partitions)

    async with open_consumer(
        bootstrap,
        group_id=group,
        topics=topics,
        assignors=[assignor],
        on_assigned=assigned,
        on_revoked=revoked,
        on_lost=lost,
        client_id=name,
        **GROUP_SETTINGS,
    ) as consumer:
        while not stop.is_set():
            for record in await consumer.getmany(timeout_s=0.2):
                assert record.value is not None
                tally.add(name, record.value)


def _confluent_member(
    bootstrap: str,
    group: str,
    topics: list[str],
    tally: Tally,
    name: str,
    stop: threading.Event,
    assignor: str,
) -> None:
    consumer = confluent_consumer(
        bootstrap,
        **{
            "group.id": group,
            "client.id": name,
            "partition.assignment.strategy": assignor,
            **CONFLUENT_SETTINGS,
        },
    )
    try:
        consumer.subscribe(topics)
        deadline = time.monotonic() + SCENARIO_SECONDS
        while not stop.is_set() and time.monotonic() < deadline:
            message = consumer.poll(0.1)
            if message is None:
                continue
            assert message.error() is None, message.error()
            tally.add(name, message.value())
    finally:
        consumer.close()  # commits what was read, then leaves


async def _until(condition: Any, what: str, seconds: float = SCENARIO_SECONDS) -> None:
    with trio.fail_after(seconds):
        # Polled: librdkafka members count from their own threads.
        while not condition():  # noqa: ASYNC110
            await trio.sleep(0.05)
    assert condition(), what


# --- the assignors, alone ---------------------------------------------------------------------


def _members(count: int, topics: frozenset[str]) -> list[MemberSubscription]:
    return [MemberSubscription(f"member-{i}", None, topics) for i in range(count)]


def test_range_and_roundrobin_match_kafkas_examples() -> None:
    # Kafka's RangeAssignor and RoundRobinAssignor javadoc: two members, two topics of 3.
    members = _members(2, frozenset({"t0", "t1"}))
    assert assign("range", {"t0": 3, "t1": 3}, members) == {
        "member-0": [("t0", 0), ("t0", 1), ("t1", 0), ("t1", 1)],
        "member-1": [("t0", 2), ("t1", 2)],
    }
    assert assign("roundrobin", {"t0": 3, "t1": 3}, members) == {
        "member-0": [("t0", 0), ("t0", 2), ("t1", 1)],
        "member-1": [("t0", 1), ("t1", 0), ("t1", 2)],
    }
    # Static members come first, by instance id.
    static = [*members, MemberSubscription("member-9", "a-static", frozenset({"t0"}))]
    assert assign("range", {"t0": 3}, static)["member-9"] == [("t0", 0)]


def test_cooperative_sticky_keeps_owners_and_holds_back_moves() -> None:
    topics = frozenset({"t"})
    first = assign("cooperative-sticky", {"t": 6}, _members(2, topics))
    assert sorted(map(len, first.values())) == [3, 3]
    # A third member joins: each old member keeps 2 of its 3, and the two
    # partitions that must move are given to nobody until they are revoked.
    members = [
        MemberSubscription(m, None, topics, tuple(first[m]), 1) for m in ("member-0", "member-1")
    ] + [MemberSubscription("member-2", None, topics)]
    second = assign("cooperative-sticky", {"t": 6}, members)
    for member in ("member-0", "member-1"):
        assert len(second[member]) == 2
        assert set(second[member]) <= set(first[member])
    assert second["member-2"] == []
    # After the revocations, the next rebalance gives them to the new member.
    members = [
        MemberSubscription(m, None, topics, tuple(second[m]), 2) for m in ("member-0", "member-1")
    ] + [MemberSubscription("member-2", None, topics, (), 2)]
    third = assign("cooperative-sticky", {"t": 6}, members)
    assert sorted(map(len, third.values())) == [2, 2, 2]
    assert third["member-0"] == second["member-0"]
    # A claim from an older generation loses to a newer one.
    stale = [
        MemberSubscription("member-0", None, topics, (("t", 0),), 1),
        MemberSubscription("member-1", None, topics, (("t", 0),), 2),
    ]
    assert ("t", 0) in assign("cooperative-sticky", {"t": 1}, stale)["member-1"]


def test_assignors_give_every_partition_once_with_uneven_subscriptions() -> None:
    members = [
        MemberSubscription("a", None, frozenset({"x"})),
        MemberSubscription("b", None, frozenset({"x", "y"})),
        MemberSubscription("c", None, frozenset({"y", "z"})),
    ]
    counts = {"x": 4, "y": 3, "z": 2}
    for name in ASSIGNORS:
        result = assign(name, counts, members)
        given = [tp for share in result.values() for tp in share]
        assert sorted(given) == sorted((t, p) for t, n in counts.items() for p in range(n))
        for member in members:
            assert all(t in member.topics for t, _ in result[member.member_id])


# --- groups of Trio consumers -------------------------------------------------------------------


@pytest.mark.parametrize("assignor", ASSIGNORS)
async def test_trio_group_splits_partitions_and_reads_once(
    bootstrap_or_broker: str | trioring.Broker, assignor: str
) -> None:
    bootstrap = bootstrap_or_broker
    topic, group = _name("grp"), _name("g")
    await _create(bootstrap, topic, 6)
    values = [b"v%d" % i for i in range(600)]
    await _produce(bootstrap, topic, values)
    tally, stop = Tally(), trio.Event()
    events: list[tuple[str, str, frozenset[tuple[str, int]]]] = []
    async with trio.open_nursery() as nursery:
        for index in range(3):
            nursery.start_soon(
                _trio_member, bootstrap, group, [topic], tally, f"m{index}", stop, assignor, events
            )
        await _until(lambda: len(tally) == len(values), "every record read")
        await trio.sleep(0.5)  # time for a stray duplicate to show
        stop.set()
    assert tally.duplicates() == {}
    assert len(tally.by_member) == 3, tally.by_member  # each member got a share
    # Members left cleanly, so everything read is committed: no lag.
    async with open_admin(bootstrap) as admin:
        lag = await admin.group_lag(group)
    assert sorted(lag) == [(topic, p) for p in range(6)]
    assert all(entry.lag == 0 for entry in lag.values()), lag


async def test_commits_resume_where_the_group_left_off(
    bootstrap_or_broker: str | trioring.Broker,
) -> None:
    bootstrap = bootstrap_or_broker
    topic, group = _name("resume"), _name("g")
    await _create(bootstrap, topic, 2)
    await _produce(bootstrap, topic, [b"a%d" % i for i in range(100)])
    first: list[bytes] = []
    async with open_consumer(bootstrap, group_id=group, topics=[topic], **GROUP_SETTINGS) as c:
        with trio.fail_after(SCENARIO_SECONDS):
            while len(first) < 100:
                first += [r.value for r in await c.getmany(timeout_s=0.5) if r.value]
        await c.commit()
    await _produce(bootstrap, topic, [b"b%d" % i for i in range(50)])
    second: list[bytes] = []
    async with open_consumer(
        bootstrap, group_id=group, topics=[topic], **GROUP_SETTINGS | {"auto_offset_reset": "none"}
    ) as c:
        with trio.fail_after(SCENARIO_SECONDS):
            while len(second) < 50:
                second += [r.value for r in await c.getmany(timeout_s=0.5) if r.value]
        assert await c.getmany(timeout_s=0.5) == []
    assert sorted(second) == sorted(b"b%d" % i for i in range(50))


@pytest.mark.parametrize("assignor", ["range", "cooperative-sticky"])
async def test_eager_revokes_everything_cooperative_only_what_moves(
    bootstrap_or_broker: str | trioring.Broker, assignor: str
) -> None:
    bootstrap = bootstrap_or_broker
    topic, group = _name("callbacks"), _name("g")
    await _create(bootstrap, topic, 4)
    events: list[tuple[str, str, frozenset[tuple[str, int]]]] = []
    tally, stop_first, stop_second = Tally(), trio.Event(), trio.Event()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            _trio_member, bootstrap, group, [topic], tally, "a", stop_first, assignor, events
        )
        await _until(lambda: any(e[:2] == ("a", "assigned") for e in events), "a assigned")
        nursery.start_soon(
            _trio_member, bootstrap, group, [topic], tally, "b", stop_second, assignor, events
        )
        await _until(
            lambda: any(e[0] == "b" and e[1] == "assigned" and e[2] for e in events),
            "b assigned partitions",
        )
        stop_first.set()
        stop_second.set()
    everything = frozenset((topic, p) for p in range(4))
    a_events = [(kind, partitions) for name, kind, partitions in events if name == "a"]
    assert a_events[0] == ("assigned", everything)
    if assignor == "range":
        assert a_events[1] == ("revoked", everything)
        assert a_events[2][0] == "assigned" and len(a_events[2][1]) == 2
    else:
        # Cooperative: a gives up exactly the two partitions b gets, nothing more.
        assert a_events[1][0] == "revoked" and len(a_events[1][1]) == 2
        b_share = frozenset().union(
            *(p for name, kind, p in events if name == "b" and kind == "assigned")
        )
        assert a_events[1][1] == b_share
    assert not [e for e in events if e[1] == "lost"]


async def test_pattern_subscription_follows_new_topics(
    bootstrap_or_broker: str | trioring.Broker,
) -> None:
    bootstrap = bootstrap_or_broker
    prefix = _name("pat")
    await _create(bootstrap, f"{prefix}-one", 1)
    await _produce(bootstrap, f"{prefix}-one", [b"one"])
    got: list[tuple[str, bytes | None]] = []
    async with open_consumer(
        bootstrap,
        group_id=_name("g"),
        pattern=rf"{prefix}-.*",
        metadata_max_age_ms=300,
        **GROUP_SETTINGS,
    ) as consumer:
        with trio.fail_after(SCENARIO_SECONDS):
            while not got:
                got += [(r.topic, r.value) for r in await consumer.getmany(timeout_s=0.5)]
            await _create(bootstrap, f"{prefix}-two", 1)
            await _produce(bootstrap, f"{prefix}-two", [b"two"])
            await _create(bootstrap, f"other-{prefix}", 1)
            while len(got) < 2:
                got += [(r.topic, r.value) for r in await consumer.getmany(timeout_s=0.5)]
        assert consumer.assignment() == {(f"{prefix}-one", 0), (f"{prefix}-two", 0)}
    assert got == [(f"{prefix}-one", b"one"), (f"{prefix}-two", b"two")]


async def test_group_settings_are_checked() -> None:
    for settings, words in [
        ({"topics": ["t"]}, "group_id"),
        ({"group_id": "g", "topics": ["t"], "pattern": "t"}, "not both"),
        ({"group_id": "g", "topics": "t"}, "list"),
        ({"group_id": "g", "topics": ["t"], "assignors": ["sticky"]}, "unknown assignors"),
        ({"group_id": "g", "pattern": "("}, "regex"),
        ({"group_id": "g", "topics": ["t"], "heartbeat_interval_ms": 50_000}, "heartbeat"),
    ]:
        with pytest.raises(InvalidArgumentError, match=words):
            async with open_consumer("127.0.0.1:9", **settings):
                pass  # pragma: no cover
    async with open_consumer("127.0.0.1:9", group_id="g", topics=["t"]) as consumer:
        with pytest.raises(InvalidArgumentError, match="assign"):
            consumer.assign([("t", 0)])


# --- Trio and librdkafka members in one group ---------------------------------------------------


@pytest.mark.parametrize("assignor", ASSIGNORS)
async def test_mixed_group_with_confluent_reads_everything_once(
    shared_broker: BrokerProcess, assignor: str
) -> None:
    bootstrap = shared_broker.bootstrap
    topic, group = _name("mixed"), _name("g")
    await _create(bootstrap, topic, 6)
    values = [b"m%d" % i for i in range(1200)]
    await _produce(bootstrap, topic, values)
    tally, stop, thread_stop = Tally(), trio.Event(), threading.Event()
    async with trio.open_nursery() as nursery:
        for index in range(2):
            nursery.start_soon(
                trio.to_thread.run_sync,
                _confluent_member,
                bootstrap,
                group,
                [topic],
                tally,
                f"confluent-{index}",
                thread_stop,
                assignor,
            )
            nursery.start_soon(
                _trio_member, bootstrap, group, [topic], tally, f"trio-{index}", stop, assignor
            )
        try:
            await _until(lambda: len(tally) == len(values), "every record read")
            await trio.sleep(0.5)
        finally:
            stop.set()
            thread_stop.set()
    assert tally.duplicates() == {}
    assert {name.split("-")[0] for name in tally.by_member} == {"trio", "confluent"}, (
        tally.by_member
    )


@pytest.mark.parametrize("assignor", ["cooperative-sticky", "range"])
async def test_members_join_and_leave_mid_stream(
    shared_broker: BrokerProcess, assignor: str
) -> None:
    """Records keep coming while a librdkafka member and a Trio member join and leave a
    group (cooperative, and eager): every record is read, and none twice."""
    bootstrap = shared_broker.bootstrap
    topic, group = _name("churn"), _name("g")
    await _create(bootstrap, topic, 6)
    total = 3000
    tally = Tally()
    events: list[tuple[str, str, frozenset[tuple[str, int]]]] = []
    stops = {name: trio.Event() for name in ("a", "c")}
    confluent_stop = threading.Event()

    async def stream() -> None:
        async with open_producer(bootstrap, linger_ms=2) as producer:
            for index in range(total):
                producer.send_nowait(topic, b"c%d" % index, key=b"k%d" % index)
                if index % 100 == 99:
                    await producer.flush()
                    await trio.sleep(0.1)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            _trio_member, bootstrap, group, [topic], tally, "a", stops["a"], assignor, events
        )
        nursery.start_soon(stream)
        await _until(lambda: len(tally) >= 300, "a reads")
        nursery.start_soon(
            trio.to_thread.run_sync,
            _confluent_member,
            bootstrap,
            group,
            [topic],
            tally,
            "b",
            confluent_stop,
            assignor,
        )
        await _until(lambda: tally.by_member["b"] > 0, "the librdkafka member reads")
        nursery.start_soon(
            _trio_member, bootstrap, group, [topic], tally, "c", stops["c"], assignor, events
        )
        await _until(lambda: tally.by_member["c"] > 0, "the second Trio member reads")
        confluent_stop.set()
        await trio.sleep(1)
        stops["c"].set()
        try:
            await _until(lambda: len(tally) == total, "every record read")
            await trio.sleep(0.5)
        finally:
            stops["a"].set()
            confluent_stop.set()
    assert tally.duplicates() == {}
    a_events = [(kind, partitions) for name, kind, partitions in events if name == "a"]
    assert a_events[-1][0] == "revoked"  # leaving
    revocations = [p for kind, p in a_events[:-1] if kind == "revoked"]
    assert revocations, "a rebalanced while records were coming"
    if assignor == "cooperative-sticky":
        # Until it left, a never gave up everything at once: cooperative
        # rebalances move only what must move.
        assert all(len(p) < 6 for p in revocations)
    else:
        assert any(len(p) == 6 for p in revocations)  # eager: everything, every time
    assert not [e for e in events if e[1] == "lost"]


# --- faults -----------------------------------------------------------------------------------


async def test_group_resumes_from_commits_after_a_fault(fault: tuple[str, BrokerProcess]) -> None:
    """The broker restarts, or is SIGKILLed, or one worker of two is: the members
    resume from their committed offsets, so nothing committed before is read again,
    and everything is read.

    Group state lives in memory (docs/protocol.md): when its coordinator goes,
    members rejoin, and records read after the fault but not yet committed when
    they rejoin may be read again by the partition's next owner (at-least-once)."""
    kind, broker = fault
    bootstrap = broker.bootstrap
    topic, group = _name(kind), _name("g")
    await _create(bootstrap, topic, 4)
    await _produce(bootstrap, topic, [b"before-%d" % i for i in range(400)])
    tally, stop = Tally(), trio.Event()
    async with trio.open_nursery() as nursery:
        for index in range(2):
            nursery.start_soon(
                _trio_member, bootstrap, group, [topic], tally, f"m{index}", stop, "range"
            )
        await _until(lambda: len(tally) == 400, "the first records read")
        await trio.sleep(0.6)  # auto-commits go by: everything read is committed
        if kind == "worker-sigkill":
            await trio.to_thread.run_sync(lambda: broker.kill_worker(1))
        else:
            await trio.to_thread.run_sync(lambda: broker.restart(kill=kind == "sigkill"))
        await _produce(bootstrap, topic, [b"after-%d" % i for i in range(400)])
        await _until(lambda: len(tally) == 800, "every record read after the fault")
        stop.set()
    assert not any(value.startswith(b"before") for value in tally.duplicates())


async def test_a_static_member_replaced_by_another_instance_is_fenced(
    bootstrap_or_broker: str | trioring.Broker,
) -> None:
    """Two consumers with one group_instance_id: the second takes the first's place.
    The first loses its partitions (on_lost), cannot commit, and every read raises
    the fencing, as Java's FencedInstanceIdException; the second reads everything."""
    bootstrap = bootstrap_or_broker
    topic, group = _name("static"), _name("g")
    await _create(bootstrap, topic, 2)
    await _produce(bootstrap, topic, [b"s%d" % i for i in range(50)])
    lost: list[set[tuple[str, int]]] = []

    async def on_lost(partitions: set[tuple[str, int]]) -> None:
        lost.append(partitions)

    settings = GROUP_SETTINGS | {"group_instance_id": "instance-1"}
    async with open_consumer(
        bootstrap, group_id=group, topics=[topic], on_lost=on_lost, **settings
    ) as first:
        with trio.fail_after(SCENARIO_SECONDS):
            while not await first.getmany(timeout_s=0.5):
                pass
        async with open_consumer(bootstrap, group_id=group, topics=[topic], **settings) as second:
            got: list[bytes] = []
            with trio.fail_after(SCENARIO_SECONDS):
                while len(got) < 50:
                    got += [r.value for r in await second.getmany(timeout_s=0.5) if r.value]
            with trio.fail_after(SCENARIO_SECONDS), pytest.raises(KafkaError, match="took this"):
                async for _ in first:
                    pass
            with pytest.raises(KafkaError, match="took this"):
                await first.getmany(timeout_s=0)  # and again: the membership has ended
            with pytest.raises(KafkaError, match="took this"):
                await first.commit()
    assert lost == [{(topic, 0), (topic, 1)}]


async def test_an_inconsistent_group_protocol_is_raised_to_a_waiting_reader(
    bootstrap_or_broker: str | trioring.Broker,
) -> None:
    """A member whose assignors share none with the group's cannot join: the reader,
    already waiting in ``async for``, gets INCONSISTENT_GROUP_PROTOCOL."""
    bootstrap = bootstrap_or_broker
    topic, group = _name("protocols"), _name("g")
    await _create(bootstrap, topic, 1)
    async with open_consumer(
        bootstrap, group_id=group, topics=[topic], assignors=["roundrobin"], **GROUP_SETTINGS
    ) as first:
        await _until(lambda: first.assignment() == {(topic, 0)}, "the first member assigned")
        async with open_consumer(
            bootstrap, group_id=group, topics=[topic], assignors=["range"], **GROUP_SETTINGS
        ) as second:
            with trio.fail_after(SCENARIO_SECONDS), pytest.raises(KafkaError) as raised:
                async for _ in second:
                    pass
    assert raised.value.kafka_error_code == ErrorCode.inconsistent_group_protocol


async def test_a_commit_while_joining_fails_clearly(
    bootstrap_or_broker: str | trioring.Broker,
) -> None:
    """Until it has joined (the broker waits 300 ms for more members of a new group),
    a member owns nothing and cannot commit; once joined, it can."""
    bootstrap = bootstrap_or_broker
    topic, group = _name("joining"), _name("g")
    await _create(bootstrap, topic, 1)
    async with open_consumer(bootstrap, group_id=group, topics=[topic], **GROUP_SETTINGS) as c:
        with pytest.raises(CommitFailedError, match="joining"):
            await c.commit({(topic, 0): 0})
        await _until(lambda: c.assignment() == {(topic, 0)}, "assigned")
        await c.commit({(topic, 0): 0})


async def test_a_raising_callback_is_raised_by_the_next_read(
    bootstrap_or_broker: str | trioring.Broker,
) -> None:
    bootstrap = bootstrap_or_broker
    topic, group = _name("callback"), _name("g")
    await _create(bootstrap, topic, 1)

    async def on_assigned(partitions: set[tuple[str, int]]) -> None:
        raise ValueError(f"the application refuses {sorted(partitions)}")

    async with open_consumer(
        bootstrap, group_id=group, topics=[topic], on_assigned=on_assigned, **GROUP_SETTINGS
    ) as consumer:
        with trio.fail_after(SCENARIO_SECONDS), pytest.raises(ValueError, match="refuses"):
            async for _ in consumer:
                pass
        # Raised once; the membership goes on.
        await _produce(bootstrap, topic, [b"after"])
        with trio.fail_after(SCENARIO_SECONDS):
            record = await consumer.__anext__()
    assert record.value == b"after"


async def test_heartbeats_during_a_slow_revocation_cause_no_second_rebalance(
    shared_broker: BrokerProcess,
) -> None:
    """An eager member revoking while its reader holds records keeps heartbeating, and
    those heartbeats are answered REBALANCE_IN_PROGRESS: the join under way answers
    them. (They used to make the member join again as soon as the rebalance was done,
    so every join or leave cost the group two rebalances.)"""
    bootstrap = shared_broker.bootstrap
    topic, group = _name("slow-revoke"), _name("g")
    await _create(bootstrap, topic, 2)
    await _produce(bootstrap, topic, [b"%d" % i for i in range(200)])

    async def slow_reader(consumer: Consumer, stop: trio.Event) -> None:
        while not stop.is_set():
            if await consumer.getmany(timeout_s=0.1, max_records=1):
                # Holds its record for several heartbeat intervals: a revocation waits.
                await trio.sleep(1.0)

    settings = {**GROUP_SETTINGS, "assignors": ["range"]}
    stop = trio.Event()
    async with (
        open_consumer(bootstrap, group_id=group, topics=[topic], **settings) as first,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(slow_reader, first, stop)
        await _until(lambda: len(first.assignment()) == 2, "the first member has both")
        async with open_consumer(bootstrap, group_id=group, topics=[topic], **settings) as second:
            nursery.start_soon(slow_reader, second, stop)
            await _until(
                lambda: len(first.assignment()) == len(second.assignment()) == 1,
                "one partition each",
                # Less than the rebalance timeout, which a revocation once waited out.
                seconds=GROUP_SETTINGS["rebalance_timeout_ms"] / 1000 / 2,
            )
            await trio.sleep(2.0)  # a second rebalance, if any, starts within a heartbeat
            rebalances = first.statistics()["group"]["rebalances"]
            stop.set()
    assert rebalances == 2  # alone, then with the second member

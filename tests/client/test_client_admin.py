"""trioring.client's admin client against a real broker process (1 and 2 workers), checked
against what confluent-kafka sees, and against an embedded broker reached in-process,
checked against its own API (``target``: the same test bodies).

Following leaders and coordinators: a two-worker broker whose workers are SIGKILLed
between calls (each call needs the worker just killed), and an embedded broker whose
middleware refuses requests with the errors that say "ask elsewhere" or "ask later",
reached in-process and through its Kafka listener.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from client_support import EMBEDDED, WIRE, Target, WireTarget, open_target
from kio.schema.errors import ErrorCode

import trioring
from trioring import Middleware, Record
from trioring._constants import CLIENT_COORDINATOR_ATTEMPTS_MAX
from trioring.client import Admin, open_admin, open_producer
from trioring.errors import InvalidArgumentError, KafkaError
from trioring.server import ServerConfig, serve_kafka
from trioring.testing import BrokerProcess

pytest.importorskip("confluent_kafka")

#: Seconds one admin call may take, retries included, before the test fails.
CALL_SECONDS = 30.0


@pytest.fixture(scope="module", params=[1, 2, 0], ids=["1-worker", "2-workers", EMBEDDED])
def process(
    tmp_path_factory: pytest.TempPathFactory, request: Any
) -> Iterator[BrokerProcess | None]:
    """A broker process of ``request.param`` workers, or None (0): an embedded broker."""
    if request.param == 0:
        yield None
        return
    with BrokerProcess(tmp_path_factory.mktemp("admin") / "data", workers=request.param) as process:
        yield process
        code = process.stop()
    assert code == 0


@pytest.fixture
async def target(process: BrokerProcess | None, tmp_path: Path) -> AsyncIterator[Target]:
    async with open_target(process, tmp_path / "embedded") as target:
        yield target


def name() -> str:
    return f"admin-{uuid.uuid4().hex[:10]}"


async def group_coordinated_by(admin: Admin, node: int) -> str:
    """A new group id whose coordinator is ``node`` (groups hash to offsets partitions)."""
    for _ in range(200):
        group = name()
        if (await admin.describe_group(group)).coordinator == node:
            return group
    raise AssertionError(f"no group of 200 is coordinated by node {node}")


async def test_topics_are_created_grown_described_and_deleted(target: Target) -> None:
    topic = name()
    async with open_admin(target.connect) as admin:
        await admin.create_topic(topic, partitions=3, configs={"retention.ms": "60000"})
        with pytest.raises(KafkaError) as exists:
            await admin.create_topic(topic, partitions=1)
        assert exists.value.kafka_error_code == ErrorCode.topic_already_exists
        info = await admin.describe_topic(topic)
        assert [p.partition for p in info.partitions] == [0, 1, 2]
        assert topic in await admin.list_topics()
        assert (await admin.describe_topic_configs(topic))["retention.ms"] == "60000"
        await admin.create_partitions(topic, 5)
        assert len((await admin.describe_topic(topic)).partitions) == 5
        with pytest.raises(KafkaError) as smaller:
            await admin.create_partitions(topic, 2)
        assert smaller.value.kafka_error_code == ErrorCode.invalid_partitions
        # confluent-kafka (or the embedded broker's API) sees the same topic.
        assert await target.partition_count(topic) == 5
        await admin.delete_topic(topic)
        assert topic not in await admin.list_topics()
        with pytest.raises(KafkaError) as unknown:
            await admin.delete_topic(topic)
        assert unknown.value.kafka_error_code == ErrorCode.unknown_topic_or_partition


async def test_offsets_and_a_groups_lag(target: Target) -> None:
    topic, group = name(), name()
    async with open_admin(target.connect) as admin:
        await admin.create_topic(topic, partitions=2)
        async with open_producer(target.connect) as producer:
            for i in range(10):
                await producer.send(topic, b"v", partition=i % 2)
        assert await admin.list_offsets([(topic, 0), (topic, 1)], "latest") == {
            (topic, 0): 5,
            (topic, 1): 5,
        }
        assert await admin.list_offsets([(topic, 0)], "earliest") == {(topic, 0): 0}
        # A consumer of the group (or the embedded broker's API) commits 3 of partition 0.
        await target.commit(group, {(topic, 0): 3})
        lag = await admin.group_lag(group)
        assert {key: (value.committed, value.end, value.lag) for key, value in lag.items()} == {
            (topic, 0): (3, 5, 2)
        }
        listed = {listing.group_id: listing for listing in await admin.list_groups()}
        assert group in listed and listed[group].state == "Empty"
        described = await admin.describe_group(group)
        assert (described.group_id, described.state, described.members) == (group, "Empty", ())
        await admin.delete_group(group)
        assert await admin.group_lag(group) == {}
        with pytest.raises(KafkaError) as unknown:
            await admin.list_offsets([(topic, 7)])
        assert unknown.value.kafka_error_code == ErrorCode.unknown_topic_or_partition


async def test_every_call_reaches_every_node(target: Target, process: BrokerProcess | None) -> None:
    """Partitions led by each node, a group coordinated by each node, each node's configs:
    every call goes where Kafka sends it (on two workers, to both)."""
    nodes = list(range(process.workers)) if process is not None else [0]
    topic = name()
    async with open_admin(target.connect) as admin:
        await admin.create_topic(topic, partitions=2 * len(nodes))
        info = await admin.describe_topic(topic)
        assert {p.leader for p in info.partitions} == set(nodes)
        assert sorted(admin.statistics()["cluster"]["brokers"]) == nodes
        async with open_producer(target.connect) as producer:
            for partition in range(2 * len(nodes)):
                for _ in range(partition + 1):
                    await producer.send(topic, b"v", partition=partition)
        everything = [(topic, p) for p in range(2 * len(nodes))]
        assert await admin.list_offsets(everything, "latest") == {
            (topic, p): p + 1 for p in range(2 * len(nodes))
        }
        assert await admin.list_offsets(everything, "earliest") == dict.fromkeys(everything, 0)
        # One ListOffsets per leader, each answered.
        list_offsets = admin.statistics()["apis"]["LIST_OFFSETS"]
        assert list_offsets == {"requests": 2 * len(nodes), "retries": 0, "failures": 0}

        groups = [await group_coordinated_by(admin, node) for node in nodes]
        for index, group in enumerate(groups):
            await target.commit(group, {(topic, index): 1})
        for index, group in enumerate(groups):
            lag = await admin.group_lag(group)
            assert {key: (v.committed, v.end, v.lag) for key, v in lag.items()} == {
                (topic, index): (1, index + 1, index)
            }
            described = await admin.describe_group(group)
            assert (described.state, described.coordinator) == ("Empty", nodes[index])
        listed = {listing.group_id for listing in await admin.list_groups()}
        assert set(groups) <= listed
        for node in nodes:
            configs = await admin.describe_broker_configs(node)
            assert configs["node.id"] == str(node)
        for group in groups:
            await admin.delete_group(group)
            assert await admin.group_lag(group) == {}
        statistics = admin.statistics()
        assert statistics["retries"] == 0, statistics
        assert statistics["failures"] == 0, statistics


# --- a worker of two SIGKILLed between calls ---------------------------------------------


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[BrokerProcess]:
    """A broker of two workers of its own: its workers are killed."""
    with BrokerProcess(tmp_path / "data", workers=2) as process:
        yield process
        code = process.stop()
    assert code == 0


async def test_calls_after_a_worker_is_killed_succeed(two_workers: BrokerProcess) -> None:
    """Each worker of two is SIGKILLed in turn (worker 0 is also the bootstrap address and
    the controller the metadata names). Each call runs on an admin client of its own,
    once before the kill (so it holds connections to both workers) and once after: the
    calls that need the killed worker (its partition, its group, its configs, its
    groups) fail at first, and succeed once the supervisor has restarted it."""
    target = WireTarget(two_workers)
    topic = name()
    async with open_admin(two_workers.bootstrap) as admin:
        await admin.create_topic(topic, partitions=2)
        info = await admin.describe_topic(topic)
        leader_of = {p.leader: p.partition for p in info.partitions}
        assert sorted(leader_of) == [0, 1]
        groups = {node: await group_coordinated_by(admin, node) for node in (0, 1)}
    async with open_producer(two_workers.bootstrap) as producer:
        for partition in (0, 1):
            for _ in range(3):
                await producer.send(topic, b"v", partition=partition)
    for node, group in groups.items():
        await target.commit(group, {(topic, leader_of[node]): 1})

    async def list_offsets(admin: Admin, killed: int) -> None:
        partition = leader_of[killed]
        assert await admin.list_offsets([(topic, partition)]) == {(topic, partition): 3}

    async def group_lag(admin: Admin, killed: int) -> None:
        lag = await admin.group_lag(groups[killed])
        assert {key: (v.committed, v.end) for key, v in lag.items()} == {
            (topic, leader_of[killed]): (1, 3)
        }

    async def describe_group(admin: Admin, killed: int) -> None:
        described = await admin.describe_group(groups[killed])
        assert (described.state, described.coordinator) == ("Empty", killed)

    async def describe_broker_configs(admin: Admin, killed: int) -> None:
        assert (await admin.describe_broker_configs(killed))["node.id"] == str(killed)

    async def list_groups(admin: Admin, killed: int) -> None:
        assert set(groups.values()) <= {g.group_id for g in await admin.list_groups()}

    async def topic_changes(admin: Admin, killed: int) -> None:
        # To the controller the metadata names (node 0), or to any worker.
        created = name()
        await admin.create_topic(created, partitions=2)
        await admin.create_partitions(created, 3)
        assert len((await admin.describe_topic(created)).partitions) == 3
        assert (await admin.describe_topic_configs(created))["cleanup.policy"] == "delete"
        await admin.delete_topic(created)

    needing_the_killed_worker = [
        list_offsets,
        group_lag,
        describe_group,
        describe_broker_configs,
        list_groups,
    ]
    calls = [*needing_the_killed_worker, topic_changes]
    for killed in (1, 0):
        async with AsyncExitStack() as stack:
            admins = [await stack.enter_async_context(open_admin(target.connect)) for _ in calls]
            for call, admin in zip(calls, admins, strict=True):
                await call(admin, killed)
                assert admin.statistics()["retries"] == 0
            await trio.to_thread.run_sync(two_workers.kill_worker, killed)
            with trio.fail_after(CALL_SECONDS):
                async with trio.open_nursery() as nursery:
                    for call, admin in zip(calls, admins, strict=True):
                        nursery.start_soon(call, admin, killed)
            for call, admin in zip(calls, admins, strict=True):
                if call in needing_the_killed_worker:
                    assert admin.statistics()["retries"] >= 1, (call.__name__, killed)


# --- refusals that say "ask elsewhere" or "ask later" ------------------------------------


def refusing(faults: dict[str, list[int]]) -> Middleware:
    """Middleware: the next request of each handler named in ``faults`` is refused with
    the first code left in its list (as a broker whose leader or coordinator moved)."""

    def wrap(handler: Callable[[Any, Any], Awaitable[Any]]) -> Any:
        codes = faults.get(getattr(handler, "__name__", ""))

        async def refused(ctx: Any, request: Any) -> Any:
            if codes:
                code = ErrorCode(codes.pop(0))
                raise KafkaError(f"refused by the test: {code.name}", code)
            return await handler(ctx, request)

        return refused if codes is not None else handler

    return wrap  # type: ignore[return-value]


@asynccontextmanager
async def faulty_broker(
    data_dir: Path, transport: str, faults: dict[str, list[int]]
) -> AsyncIterator[tuple[trioring.Broker, str | trioring.Broker]]:
    """An embedded broker with ``refusing(faults)``, and what to give open_admin: the
    broker itself (in-process) or its Kafka listener's address (wire)."""
    async with (
        trioring.open_broker(data_dir, middleware=[refusing(faults)]) as broker,
        trio.open_nursery() as nursery,
    ):
        if transport == EMBEDDED:
            yield broker, broker
        else:
            server = await nursery.start(serve_kafka, broker, ServerConfig(port=0))
            yield broker, f"127.0.0.1:{server.port}"
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("transport", [EMBEDDED, WIRE])
async def test_refusals_naming_another_leader_or_coordinator_are_retried(
    tmp_path: Path, transport: str
) -> None:
    faults: dict[str, list[int]] = {
        "create_topics": [ErrorCode.not_controller],
        "create_partitions": [ErrorCode.not_controller],
        "list_offsets": [ErrorCode.not_leader_or_follower, ErrorCode.leader_not_available],
        "find_coordinator": [ErrorCode.coordinator_not_available],
        "fetch_offsets": [ErrorCode.not_coordinator, ErrorCode.coordinator_load_in_progress],
        "describe_groups": [ErrorCode.coordinator_load_in_progress],
        "list_groups": [ErrorCode.coordinator_not_available],
        "delete_groups": [ErrorCode.not_coordinator],
    }
    retries_expected = {
        "CREATE_TOPICS": 1,
        "CREATE_PARTITIONS": 1,
        # The broker asks its handler once per partition: both are refused, once.
        "LIST_OFFSETS": 1,
        "FIND_COORDINATOR": 1,
        "OFFSET_FETCH": 2,
        "DESCRIBE_GROUPS": 1,
        "LIST_GROUPS": 1,
        "DELETE_GROUPS": 1,
    }
    topic, group = name(), name()
    async with (
        faulty_broker(tmp_path / "data", transport, faults) as (broker, connect),
        open_admin(connect, retry_backoff_ms=1, retry_backoff_max_ms=4) as admin,
    ):
        with trio.fail_after(CALL_SECONDS):
            await admin.create_topic(topic, partitions=1)
            await admin.create_partitions(topic, 2)
            await broker.produce(topic, 1, [Record(value=b"v%d" % i) for i in range(4)])
            assert await admin.list_offsets([(topic, 0), (topic, 1)]) == {
                (topic, 0): 0,
                (topic, 1): 4,
            }
            await broker.commit_offsets(group, {(topic, 1): 1})
            lag = await admin.group_lag(group)
            assert {key: v.lag for key, v in lag.items()} == {(topic, 1): 3}
            assert (await admin.describe_group(group)).state == "Empty"
            assert group in {listing.group_id for listing in await admin.list_groups()}
            await admin.delete_group(group)
            assert await admin.group_lag(group) == {}
        assert all(not codes for codes in faults.values()), faults
        statistics = admin.statistics()
        assert {
            api: counters["retries"]
            for api, counters in statistics["apis"].items()
            if counters["retries"]
        } == retries_expected
        for api, retries in retries_expected.items():
            assert statistics["apis"][api]["failures"] == retries


@pytest.mark.parametrize("transport", [EMBEDDED, WIRE])
async def test_a_refusal_that_persists_is_raised_after_the_last_attempt(
    tmp_path: Path, transport: str
) -> None:
    attempts = CLIENT_COORDINATOR_ATTEMPTS_MAX
    faults: dict[str, list[int]] = {
        "list_offsets": [ErrorCode.not_leader_or_follower] * (attempts + 1),
        "describe_groups": [ErrorCode.group_authorization_failed],
    }
    topic = name()
    async with (
        faulty_broker(tmp_path / "data", transport, faults) as (broker, connect),
        open_admin(connect, retry_backoff_ms=1, retry_backoff_max_ms=4) as admin,
    ):
        await broker.create_topic(topic, 1)
        with trio.fail_after(CALL_SECONDS), pytest.raises(KafkaError) as persisting:
            await admin.list_offsets([(topic, 0)])
        assert persisting.value.kafka_error_code == ErrorCode.not_leader_or_follower
        assert f"failed {attempts} times" in str(persisting.value)
        assert admin.statistics()["apis"]["LIST_OFFSETS"] == {
            "requests": attempts,
            "retries": attempts - 1,
            "failures": attempts,
        }
        # An error no retry cures is raised at once.
        with pytest.raises(KafkaError) as refused:
            await admin.describe_group("g")
        assert refused.value.kafka_error_code == ErrorCode.group_authorization_failed
        assert admin.statistics()["apis"]["DESCRIBE_GROUPS"] == {
            "requests": 1,
            "retries": 0,
            "failures": 1,
        }
        # A node the cluster does not have: asked for until the last attempt (it may be
        # a worker restarting), then named with the nodes there are.
        with trio.fail_after(CALL_SECONDS), pytest.raises(KafkaError) as no_node:
            await admin.describe_broker_configs(7)
        assert no_node.value.kafka_error_code == ErrorCode.broker_not_available
        assert "node 7 is not in the metadata (nodes: 0); name one of those" in str(no_node.value)
    with pytest.raises(InvalidArgumentError, match="raise retry_backoff_max_ms"):
        async with open_admin(connect, retry_backoff_ms=2000, retry_backoff_max_ms=1000):
            pass

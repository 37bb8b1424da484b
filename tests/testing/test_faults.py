"""FaultInjector on the embedded broker: the faults act on the requests chosen and on no
others, through the embedded API, the in-process client and the Kafka listener, with
real clients retrying (trioring.client, and confluent-kafka in a thread)."""

from __future__ import annotations

import math
import typing
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from kio.schema.errors import ErrorCode

from trioring import Record
from trioring.client import (
    ConnectionBrokenError,
    InProcessConnection,
    WireConnection,
    open_consumer,
    open_producer,
)
from trioring.errors import InvalidArgumentError, KafkaError
from trioring.handlers import Handler, HandlerContext, Handlers
from trioring.handlers.messages import JoinGroupRequest
from trioring.protocol.kafka import ApiKey
from trioring.testing import EmbeddedBroker, Fault, FaultInjector, open_embedded_broker
from trioring.testing._faults import API_OF_REQUEST

#: Seconds any one step may take before the test fails.
STEP_SECONDS = 20.0


def test_every_handler_request_has_an_api_name() -> None:
    """A handler added without a line in the table could not be faulted: caught here."""
    hints = typing.get_type_hints(Handlers)
    for field in attrs.fields(Handlers):
        request_type = typing.get_args(hints[field.name])[0][1]
        assert request_type in API_OF_REQUEST, f"{field.name}: {request_type} has no API name"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda f: f.fail("Produc", "NOT_LEADER_OR_FOLLOWER"), "the APIs are"),
        (lambda f: f.fail("ApiVersions", "NOT_LEADER_OR_FOLLOWER"), "the APIs are"),
        (lambda f: f.fail("Produce", "NOT_AN_ERROR"), "unknown Kafka error"),
        (lambda f: f.fail("Produce", ErrorCode.none), "not an error"),
        (lambda f: f.fail("Produce", 6), "ErrorCode or its name"),
        (lambda f: f.fail("Produce", "INVALID_RECORD", count=0), "count must be"),
        (lambda f: f.fail("Produce", "INVALID_RECORD", count=True), "count must be"),
        (lambda f: f.fail("Produce", "INVALID_RECORD", count=None), "count must be"),
        (lambda f: f.delay("Fetch", -1), "delay must be"),
        (lambda f: f.delay("Fetch", math.inf), "delay must be"),
        (lambda f: f.delay("Fetch", 601), "delay must be"),
        (lambda f: f.drop_connection("Fetch", count=None), "count must be"),
    ],
)
def test_arguments_are_checked(call: Any, message: str) -> None:
    faults = FaultInjector()
    with pytest.raises(InvalidArgumentError, match=message):
        call(faults)
    assert faults.pending() == []


def test_names_and_json() -> None:
    faults = FaultInjector()
    faults.fail("offset_commit", "not_leader_or_follower")
    faults.fail(ApiKey.OFFSET_COMMIT, ErrorCode.not_coordinator, count=3)
    faults.delay("FETCH", 0.5)
    faults.drop_connection("JoinGroup", 2)
    pending = faults.pending()
    assert [(f.api, f.action, f.count) for f in pending] == [
        ("OffsetCommit", "fail", 1),
        ("OffsetCommit", "fail", 3),
        ("Fetch", "delay", None),
        ("JoinGroup", "drop_connection", 2),
    ]
    assert [Fault.from_json(fault.to_json()) for fault in pending] == pending
    assert pending[0].to_json()["error"] == "NOT_LEADER_OR_FOLLOWER"
    with pytest.raises(InvalidArgumentError, match="unknown field"):
        Fault.from_json({"action": "delay", "api": "Fetch", "seconds": 1, "error": "X"})
    with pytest.raises(InvalidArgumentError, match="action is one of"):
        Fault.from_json({"action": "explode", "api": "Fetch"})
    with pytest.raises(InvalidArgumentError, match="JSON object"):
        Fault.from_json(["fail"])


def test_pending_faults_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("trioring.testing._faults.FAULT_RULES_MAX", 3)
    faults = FaultInjector()
    for _ in range(3):
        faults.delay("Fetch", 0)
    with pytest.raises(InvalidArgumentError, match="clear"):
        faults.delay("Fetch", 0)
    faults.clear()
    faults.delay("Fetch", 0)


async def test_fails_queue_up_and_touch_nothing(trioring_broker: EmbeddedBroker) -> None:
    broker = trioring_broker.broker
    faults = trioring_broker.faults
    topic = await trioring_broker.create_topic(partitions=1)
    faults.fail("Produce", "NOT_LEADER_OR_FOLLOWER", count=2)
    faults.fail("Produce", "INVALID_RECORD")
    codes = []
    for _ in range(3):
        with pytest.raises(KafkaError) as raised:
            await broker.produce(topic, 0, [Record(value=b"v")])
        codes.append(raised.value.kafka_error_code)
    assert codes == [ErrorCode.not_leader_or_follower] * 2 + [ErrorCode.invalid_record]
    # Nothing was appended by the failed requests, and the faults are used up.
    assert (await broker.produce(topic, 0, [Record(value=b"v")])).base_offset == 0
    assert faults.pending() == []
    assert [(i.api, i.error) for i in faults.injected()] == [
        ("Produce", "NOT_LEADER_OR_FOLLOWER"),
        ("Produce", "NOT_LEADER_OR_FOLLOWER"),
        ("Produce", "INVALID_RECORD"),
    ]
    # Other APIs were never touched.
    assert await broker.list_offset(topic, 0, "latest") == 1


async def test_delays_add_up_and_a_drop_without_connection_raises(
    trioring_broker: EmbeddedBroker,
) -> None:
    broker = trioring_broker.broker
    faults = trioring_broker.faults
    topic = await trioring_broker.create_topic()
    faults.delay("ListOffsets", 0.1, count=1)
    faults.delay("ListOffsets", 0.15, count=1)
    faults.drop_connection("ListOffsets")
    start = trio.current_time()
    with pytest.raises(KafkaError) as raised:
        await broker.list_offset(topic, 0, "latest")
    assert trio.current_time() - start >= 0.25
    assert raised.value.kafka_error_code == ErrorCode.network_exception
    assert [(i.action, i.seconds) for i in faults.injected()] == [
        ("delay", 0.1),
        ("delay", 0.15),
        ("drop_connection", 0.0),
    ]
    assert await broker.list_offset(topic, 0, "latest") == 0


async def test_in_process_consumer_sees_latency(trioring_broker: EmbeddedBroker) -> None:
    broker = trioring_broker.broker
    topic = await trioring_broker.create_topic()
    await broker.produce(topic, 0, [Record(value=b"first")])
    trioring_broker.faults.delay("Fetch", 0.3, count=1)
    with trio.fail_after(STEP_SECONDS):
        async with open_consumer(broker, auto_offset_reset="earliest") as consumer:
            consumer.assign([(topic, 0)])
            start = trio.current_time()
            records = await consumer.getmany(timeout_s=STEP_SECONDS)
            elapsed = trio.current_time() - start
    assert [record.value for record in records] == [b"first"]
    assert elapsed >= 0.3
    ((injection),) = trioring_broker.faults.injected()
    assert (injection.api, injection.seconds, injection.client_id) == (
        "Fetch",
        0.3,
        "trioring-consumer",
    )


async def test_in_process_producer_reconnects_after_a_drop(
    trioring_broker: EmbeddedBroker,
) -> None:
    broker = trioring_broker.broker
    topic = await trioring_broker.create_topic()
    trioring_broker.faults.drop_connection("Produce")
    with trio.fail_after(STEP_SECONDS):
        async with open_producer(broker, linger_ms=0) as producer:
            sent = await producer.send(topic, b"once", partition=0)
    assert sent.offset == 0
    # Dropped before the handler ran: the retry appended it once.
    assert await broker.list_offset(topic, 0, "latest") == 1
    assert [i.action for i in trioring_broker.faults.injected()] == ["drop_connection"]


async def test_a_drop_breaks_the_connection_either_way(trioring_broker: EmbeddedBroker) -> None:
    """Not an error code: the connection ends, over the wire and in-process."""
    trioring_broker.faults.drop_connection("Metadata", count=2)
    metadata = {
        "topics": None,
        "allow_auto_topic_creation": False,
        "include_cluster_authorized_operations": False,
        "include_topic_authorized_operations": False,
    }
    host, port = trioring_broker.bootstrap.rsplit(":", 1)
    with trio.fail_after(STEP_SECONDS):
        async with WireConnection.open(host, int(port)) as wire:
            with pytest.raises(ConnectionBrokenError):
                await wire.request(ApiKey.METADATA, **metadata)
        async with InProcessConnection.open(trioring_broker.broker) as connection:
            with pytest.raises(ConnectionBrokenError, match="dropped"):
                await connection.request(ApiKey.METADATA, **metadata)
            assert connection.broken is not None
            with pytest.raises(ConnectionBrokenError):
                await connection.request(ApiKey.METADATA, **metadata)
        # The faults are used up: a new connection is answered.
        async with WireConnection.open(host, int(port)) as wire:
            _, response = await wire.request(ApiKey.METADATA, **metadata)
    assert response.topics == ()
    assert len(trioring_broker.faults.injected()) == 2


async def test_group_consumer_rejoins_through_injected_errors(tmp_path: Path) -> None:
    """Rebalance logic under test: a coordinator still loading, then a rebalance."""
    faults = FaultInjector()
    #: At each JoinGroup that got past the faults: how many faults had acted.
    joined_after: list[int] = []

    def watch_joins(handler: Handler[Any, Any]) -> Handler[Any, Any]:
        async def watched(ctx: HandlerContext, request: Any) -> Any:
            if isinstance(request, JoinGroupRequest):
                joined_after.append(faults.injections_total)
            return await handler(ctx, request)

        return watched

    async with open_embedded_broker(
        tmp_path / "data", faults=faults, middleware=[watch_joins]
    ) as embedded:
        topic = await embedded.create_topic(partitions=2)
        await embedded.broker.produce(topic, 1, [Record(value=b"one")])
        faults.fail("JoinGroup", "COORDINATOR_LOAD_IN_PROGRESS", count=2)
        faults.fail("Heartbeat", "REBALANCE_IN_PROGRESS")
        with trio.fail_after(STEP_SECONDS):
            async with open_consumer(
                embedded.broker,
                group_id="rejoins",
                topics=[topic],
                auto_offset_reset="earliest",
                heartbeat_interval_ms=50,
            ) as consumer:
                records = await consumer.getmany(timeout_s=STEP_SECONDS)
                # The member joins again after the heartbeat's REBALANCE_IN_PROGRESS,
                # while it reads (as Kafka's consumer does in poll()).
                while 3 not in joined_after:
                    assert await consumer.getmany(timeout_s=0.05) == []
                assert consumer.assignment() == {(topic, 0), (topic, 1)}
    assert [record.value for record in records] == [b"one"]
    assert joined_after[0] == 2  # the first two joins were refused
    assert [(i.api, i.error) for i in faults.injected()] == [
        ("JoinGroup", "COORDINATOR_LOAD_IN_PROGRESS"),
        ("JoinGroup", "COORDINATOR_LOAD_IN_PROGRESS"),
        ("Heartbeat", "REBALANCE_IN_PROGRESS"),
    ]


def _confluent_produce(bootstrap: str, topic: str, value: bytes) -> tuple[Any, int]:
    """(error, offset) of one record's delivery, from librdkafka (run in a thread)."""
    confluent_kafka = pytest.importorskip("confluent_kafka")
    producer = confluent_kafka.Producer(
        {
            "bootstrap.servers": bootstrap,
            "linger.ms": 0,
            "retry.backoff.ms": 20,
            "reconnect.backoff.ms": 20,
            "message.timeout.ms": int(STEP_SECONDS * 1000),
        }
    )
    outcome: list[tuple[Any, int]] = []
    producer.produce(
        topic, value, partition=0, on_delivery=lambda e, m: outcome.append((e, m.offset()))
    )
    producer.flush(STEP_SECONDS)
    assert outcome, "no delivery report"
    return outcome[0]


async def test_confluent_producer_retries_through_failures(
    trioring_broker: EmbeddedBroker,
) -> None:
    topic = await trioring_broker.create_topic()
    trioring_broker.faults.fail("Produce", "NOT_LEADER_OR_FOLLOWER", count=2)
    error, offset = await trio.to_thread.run_sync(
        _confluent_produce, trioring_broker.bootstrap, topic, b"retried"
    )
    assert (error, offset) == (None, 0)
    assert [i.error for i in trioring_broker.faults.injected()] == ["NOT_LEADER_OR_FOLLOWER"] * 2
    assert await trioring_broker.broker.list_offset(topic, 0, "latest") == 1


async def test_confluent_producer_reconnects_after_a_drop(
    trioring_broker: EmbeddedBroker,
) -> None:
    topic = await trioring_broker.create_topic()
    trioring_broker.faults.drop_connection("Produce")
    error, offset = await trio.to_thread.run_sync(
        _confluent_produce, trioring_broker.bootstrap, topic, b"once"
    )
    assert (error, offset) == (None, 0)
    assert await trioring_broker.broker.list_offset(topic, 0, "latest") == 1
    assert [i.client_id for i in trioring_broker.faults.injected()] == ["rdkafka"]


async def test_restart_keeps_data_port_and_faults(trioring_broker: EmbeddedBroker) -> None:
    topic = await trioring_broker.create_topic()
    await trioring_broker.broker.produce(topic, 0, [Record(value=b"kept")])
    bootstrap = trioring_broker.bootstrap
    trioring_broker.faults.delay("Produce", 600)
    async with trio.open_nursery() as nursery:
        # A request held by a long delay over the wire does not hold up the stop.
        producer_gone = trio.Event()

        async def send() -> None:
            try:
                async with open_producer(bootstrap, linger_ms=0) as producer:
                    await producer.send(topic, b"held", partition=0)
            finally:
                producer_gone.set()

        nursery.start_soon(send)
        with trio.fail_after(STEP_SECONDS):
            await trioring_broker.faults.wait_injected()
            await trioring_broker.restart()
        nursery.cancel_scope.cancel()
    assert trioring_broker.bootstrap == bootstrap
    assert [f.action for f in trioring_broker.faults.pending()] == ["delay"]
    # The stop ended the delay and the request ran, as requests in flight do.
    fetched = await trioring_broker.broker.fetch(topic, 0, 0)
    assert [record.value for record in fetched.records] == [b"kept", b"held"]


async def test_clear_ends_the_delays_under_way(trioring_broker: EmbeddedBroker) -> None:
    topic = await trioring_broker.create_topic()
    trioring_broker.faults.delay("ListOffsets", 600)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trioring_broker.broker.list_offset, topic, 0, "latest")
        with trio.fail_after(STEP_SECONDS):
            await trioring_broker.faults.wait_injected()
            trioring_broker.faults.clear()
    assert trioring_broker.faults.pending() == []

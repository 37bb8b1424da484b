"""The in-process transport: an embedded Broker given instead of addresses.

It opens no socket, answers exactly what the wire answers (the same kio
objects a wire client decodes, error codes included, also when an adapter
raises), and its requests can be cancelled, time out and end with the
connection. The client's producer, consumer and admin tests run over it too
(their ``embedded`` variants).
"""

from __future__ import annotations

import datetime
import logging
import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from kio.schema.errors import ErrorCode
from kio.static.primitive import i32Timedelta

import trioring
from trioring import Handler, Middleware, Record
from trioring.client import (
    Cluster,
    ConnectionBrokenError,
    InProcessConnection,
    open_admin,
    open_consumer,
    open_producer,
)
from trioring.client._connection import CLIENT_VERSIONS
from trioring.errors import InvalidArgumentError
from trioring.protocol.kafka import ApiKey, request_schema
from trioring.protocol.kafka._build import build, sibling
from trioring.server import KafkaServer, ServerConfig, advertised_versions, serve_kafka

TOPIC = "inprocess"
GROUP = "inprocess-group"
#: Seconds any one step may take before the test fails.
STEP_SECONDS = 10.0


def ms(milliseconds: int) -> i32Timedelta:
    return i32Timedelta.parse(datetime.timedelta(milliseconds=milliseconds))


@asynccontextmanager
async def served(
    data_dir: Path, middleware: Sequence[Middleware] = ()
) -> AsyncIterator[tuple[trioring.Broker, KafkaServer]]:
    """An embedded broker that also serves a Kafka listener, for the same requests
    sent both ways."""
    async with (
        trioring.open_broker(data_dir, middleware=middleware) as broker,
        trio.open_nursery() as nursery,
    ):
        server: KafkaServer = await nursery.start(serve_kafka, broker, ServerConfig(port=0))
        yield broker, server
        nursery.cancel_scope.cancel()


def fetch_fields(version: int, offset: int = 0, max_wait_ms: int = 0) -> dict[str, Any]:
    request = request_schema(ApiKey.FETCH, version)
    return {
        "replica_id": -1,
        "max_wait": ms(max_wait_ms),
        "min_bytes": 1,
        "max_bytes": 1 << 20,
        "isolation_level": 0,
        "session_id": 0,
        "session_epoch": -1,
        "topics": (
            build(
                sibling(request, "FetchTopic"),
                topic=TOPIC,
                partitions=(
                    build(
                        sibling(request, "FetchPartition"),
                        partition=0,
                        current_leader_epoch=-1,
                        fetch_offset=offset,
                        last_fetched_epoch=-1,
                        log_start_offset=-1,
                        partition_max_bytes=1 << 20,
                    ),
                ),
            ),
        ),
        "forgotten_topics_data": (),
        "rack_id": "",
    }


async def test_no_socket_and_no_listener(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A broker that serves no listener, and every socket forbidden: producer, consumer
    (with committed offsets) and admin all work, and the metadata names the broker's
    node at its in-process address."""

    def no_socket(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the in-process transport opened a socket")

    async with trioring.open_broker(tmp_path / "data") as broker:
        # Patched only now: Trio's own wake-up socket pair exists already.
        monkeypatch.setattr(socket, "socket", no_socket)
        monkeypatch.setattr(trio.socket, "socket", no_socket)
        monkeypatch.setattr(trio, "open_tcp_stream", no_socket)
        with trio.fail_after(STEP_SECONDS):
            async with open_admin(broker) as admin:
                await admin.create_topic(TOPIC, partitions=2)
            async with open_producer(broker) as producer:
                sent = [await producer.send(TOPIC, b"v%d" % i, partition=i % 2) for i in range(6)]
            async with open_producer(broker, acks=0, idempotence=False) as producer:
                assert (await producer.send(TOPIC, b"unacknowledged", partition=0)).offset == -1
            assert [r.offset for r in sent] == [0, 0, 1, 1, 2, 2]
            async with Cluster.open(broker) as cluster:
                await cluster.refresh()
                assert cluster.brokers == {0: ("in-process", 0)}
                connection = await cluster.connection(0)
                assert isinstance(connection, InProcessConnection)
                statistics = connection.statistics()
                assert statistics["address"] == "in-process"
                # The newest version both know, without an ApiVersions round trip.
                versions = advertised_versions()
                assert statistics["versions"] == {
                    key: min(high, versions[key][1])
                    for key, (_, high) in CLIENT_VERSIONS.items()
                    if key != ApiKey.API_VERSIONS
                }
                async with open_consumer(
                    cluster=cluster,
                    group_id=GROUP,
                    auto_offset_reset="earliest",
                    fetch_max_wait_ms=100,
                ) as consumer:
                    consumer.assign([(TOPIC, 0), (TOPIC, 1)])
                    got: list[Any] = []
                    while len(got) < 7:
                        got += await consumer.getmany(timeout_s=1)
                    await consumer.commit()
            assert await broker.committed_offsets(GROUP) == {(TOPIC, 0): 4, (TOPIC, 1): 3}
            async with open_admin(broker) as admin:
                lag = await admin.group_lag(GROUP)
                assert {tp: value.lag for tp, value in lag.items()} == {
                    (TOPIC, 0): 0,
                    (TOPIC, 1): 0,
                }


def same_requests(version_of: dict[int, int]) -> list[tuple[int, dict[str, Any]]]:
    """Requests of many APIs, answered alike by whichever transport (versions as spoken)."""

    def schema(api_key: int, name: str) -> type:
        return sibling(request_schema(api_key, version_of[api_key]), name)

    metadata_topic = schema(ApiKey.METADATA, "MetadataRequestTopic")
    list_offsets_topic = schema(ApiKey.LIST_OFFSETS, "ListOffsetsTopic")
    list_offsets_partition = schema(ApiKey.LIST_OFFSETS, "ListOffsetsPartition")
    return [
        (
            ApiKey.METADATA,
            {
                # A topic, one there is not, a name no topic can have.
                "topics": tuple(
                    build(metadata_topic, name=name, topic_id=None)
                    for name in (TOPIC, "no-such-topic", "bad name!")
                ),
                "allow_auto_topic_creation": False,
                "include_cluster_authorized_operations": False,
                "include_topic_authorized_operations": False,
            },
        ),
        (ApiKey.FETCH, fetch_fields(version_of[ApiKey.FETCH])),
        (ApiKey.FETCH, fetch_fields(version_of[ApiKey.FETCH], offset=99)),  # out of range
        (
            ApiKey.LIST_OFFSETS,
            {
                "replica_id": -1,
                "isolation_level": 0,
                "topics": (
                    build(
                        list_offsets_topic,
                        name=TOPIC,
                        partitions=tuple(
                            build(
                                list_offsets_partition,
                                partition_index=partition,
                                current_leader_epoch=-1,
                                timestamp=timestamp,
                                max_num_offsets=1,
                            )
                            for partition, timestamp in ((0, -1), (0, -2), (7, -1))
                        ),
                    ),
                ),
            },
        ),
        (ApiKey.FIND_COORDINATOR, {"key": GROUP, "key_type": 0}),
        (ApiKey.FIND_COORDINATOR, {"key": GROUP, "key_type": 5}),  # no such key type
        (
            ApiKey.OFFSET_FETCH,
            {"group_id": GROUP, "topics": None, "require_stable": False},
        ),
        (ApiKey.LIST_GROUPS, {"states_filter": (), "types_filter": ()}),
        (
            ApiKey.DESCRIBE_GROUPS,
            {"groups": (GROUP, "no-such-group"), "include_authorized_operations": False},
        ),
        (ApiKey.DELETE_TOPICS, {"topic_names": ("no-such-topic",), "timeout": ms(5000)}),
    ]


async def test_the_same_answers_over_both_transports(tmp_path: Path) -> None:
    """The kio objects the in-process transport hands back equal those a wire client
    decodes, for the same requests to the same broker."""
    async with served(tmp_path / "data") as (broker, server):
        await broker.create_topic(TOPIC, 1)
        await broker.produce(TOPIC, 0, [Record(key=b"k", value=b"v%d" % i) for i in range(3)])
        await broker.commit_offsets(GROUP, {(TOPIC, 0): 2})
        async with (
            Cluster.open(f"127.0.0.1:{server.port}") as wire_cluster,
            Cluster.open(broker) as inprocess_cluster,
        ):
            wire = await wire_cluster.any_connection()
            inprocess = await inprocess_cluster.any_connection()
            versions = {key: inprocess.version(key) for key in CLIENT_VERSIONS if key != 18}
            assert versions == {key: wire.version(key) for key in versions}
            for api_key, fields in same_requests(versions):
                with trio.fail_after(STEP_SECONDS):
                    over_wire = await wire.request(api_key, **fields)
                    in_process = await inprocess.request(api_key, **fields)
                assert in_process == over_wire, ApiKey(api_key).name


def raising(*operations: str) -> Middleware:
    """A middleware whose handlers named ``operations`` fail with a bug (RuntimeError)."""

    def middleware(handler: Handler[Any, Any]) -> Handler[Any, Any]:
        async def wrapped(ctx: Any, request: Any) -> Any:
            if handler.__name__ in operations:
                raise RuntimeError(f"{handler.__name__} bug, on purpose")
            return await handler(ctx, request)

        wrapped.__name__ = handler.__name__
        return wrapped

    return middleware


async def test_an_adapter_that_raises_answers_what_the_wire_answers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug in a handler comes back as the error code the listener sends,
    UNKNOWN_SERVER_ERROR, logged as the listener logs it, not as an exception in the
    caller's tasks."""
    caplog.set_level(logging.ERROR, logger="trioring.server")
    async with served(tmp_path / "data", [raising("fetch", "find_coordinator")]) as (
        broker,
        server,
    ):
        await broker.create_topic(TOPIC, 1)
        async with (
            Cluster.open(f"127.0.0.1:{server.port}") as wire_cluster,
            Cluster.open(broker) as inprocess_cluster,
        ):
            wire = await wire_cluster.any_connection()
            inprocess = await inprocess_cluster.any_connection()
            fields = fetch_fields(inprocess.version(ApiKey.FETCH))
            with trio.fail_after(STEP_SECONDS):
                version, response = await inprocess.request(ApiKey.FETCH, **fields)
                assert (version, response) == await wire.request(ApiKey.FETCH, **fields)
            assert response.error_code == ErrorCode.unknown_server_error
            [topic] = response.responses
            assert [p.error_code for p in topic.partitions] == [ErrorCode.unknown_server_error]
            logged = [r.getMessage() for r in caplog.records]
            assert any(
                "Fetch" in line and "failed unexpectedly; answered UNKNOWN_SERVER_ERROR" in line
                for line in logged
            ), logged
            # FindCoordinator's adapter catches its handler's errors itself.
            code, message, connection = await inprocess_cluster.coordinator(GROUP)
            assert (code, connection) == (ErrorCode.unknown_server_error, None)
            assert (code, message) == (await wire_cluster.coordinator(GROUP))[:2]
            # The connection goes on; a consumer retries the failing fetch (as over the
            # wire: a whole Fetch refused is worth retrying), nothing escapes into its tasks.
            assert inprocess.broken is None
            async with open_consumer(
                cluster=inprocess_cluster, auto_offset_reset="earliest", fetch_max_wait_ms=0
            ) as consumer:
                consumer.assign([(TOPIC, 0)])
                with trio.fail_after(STEP_SECONDS):
                    while consumer.statistics()["fetch_failures"] < 2:
                        assert await consumer.getmany(timeout_s=0.1) == []


async def test_cancel_timeout_and_close(tmp_path: Path) -> None:
    """A waiting request is cancelled with its caller; one slower than the request
    timeout raises ConnectionBrokenError and leaves the connection usable; closing the
    connection ends the requests still running with ConnectionBrokenError."""
    async with trioring.open_broker(tmp_path / "data") as broker:
        await broker.create_topic(TOPIC, 1)
        async with InProcessConnection.open(broker, request_timeout_ms=300) as connection:
            version = connection.version(ApiKey.FETCH)
            # A long poll at the end of an empty partition, cancelled by its caller.
            with trio.move_on_after(0.1) as scope:
                await connection.request(ApiKey.FETCH, **fetch_fields(version, max_wait_ms=5000))
            assert scope.cancelled_caught
            with pytest.raises(ConnectionBrokenError, match=r"did not answer FETCH within 0\.3 s"):
                await connection.request(ApiKey.FETCH, **fetch_fields(version, max_wait_ms=5000))
            assert connection.broken is None
            _, response = await connection.request(ApiKey.FETCH, **fetch_fields(version))
            assert response.responses[0].partitions[0].high_watermark == 0
            with pytest.raises(InvalidArgumentError, match="send_only"):
                await connection.request(ApiKey.PRODUCE, acks=0, topic_data=())
        assert connection.broken is not None
        with pytest.raises(ConnectionBrokenError, match="closed"):
            await connection.request(ApiKey.FETCH, **fetch_fields(version))

        outcome: list[BaseException] = []

        async def long_poll(connection: InProcessConnection) -> None:
            try:
                await connection.request(
                    ApiKey.FETCH, timeout_s=60, **fetch_fields(version, max_wait_ms=30_000)
                )
            except ConnectionBrokenError as error:
                outcome.append(error)

        with trio.fail_after(STEP_SECONDS):
            async with (
                trio.open_nursery() as nursery,
                InProcessConnection.open(broker) as connection,
            ):
                nursery.start_soon(long_poll, connection)
                await trio.testing.wait_all_tasks_blocked()
        assert [str(error) for error in outcome] == ["in-process connection closed"]

"""One request's failure is that request's error code, never the server's end.

Regression tests for requests that used to stop the whole broker process
(a Fetch with a negative offset or partition limit, a DescribeConfigs v1
with a null resources array), and a handler that raises on purpose: the
request gets an error code, its connection and every other connection keep
working, and the server task keeps running.
"""

from __future__ import annotations

import datetime
import logging
import struct
from pathlib import Path
from typing import Any

import pytest
import trio
from kio.schema.describe_configs.v1.request import DescribeConfigsRequest, DescribeConfigsResource
from kio.schema.errors import ErrorCode
from kio.schema.fetch.v11.request import FetchPartition, FetchRequest, FetchTopic
from kio.schema.list_offsets.v2.request import (
    ListOffsetsPartition,
    ListOffsetsRequest,
    ListOffsetsTopic,
)
from kio.schema.metadata.v4.request import MetadataRequest, MetadataRequestTopic
from kio.schema.produce.v7.request import PartitionProduceData, ProduceRequest, TopicProduceData
from kio.static.primitive import i8, i32, i32Timedelta, i64
from server_support import SIZE, KafkaWire, ServerClosed, running_server

from trioring import Handler, Record
from trioring.protocol.kafka import ApiKey, encode_request_header
from trioring.protocol.records import build_batch

TOPIC = "boundary"


def fetch_request(*partitions: tuple[int, int, int], max_wait_ms: int = 0, **fields: Any) -> Any:
    """Fetch v11 of (partition, offset, partition max bytes) entries of TOPIC."""
    return FetchRequest(
        max_wait=i32Timedelta.parse(datetime.timedelta(milliseconds=max_wait_ms)),
        min_bytes=i32(1),
        topics=(
            FetchTopic(
                topic=TOPIC,  # type: ignore[arg-type]
                partitions=tuple(
                    FetchPartition(
                        partition=i32(partition),
                        fetch_offset=i64(offset),
                        partition_max_bytes=i32(limit),
                    )
                    for partition, offset, limit in partitions
                ),
            ),
        ),
        forgotten_topics_data=(),
        rack_id="",
        **fields,
    )


def metadata_request() -> Any:
    return MetadataRequest(
        topics=(MetadataRequestTopic(name=TOPIC),),  # type: ignore[arg-type]
        allow_auto_topic_creation=False,
    )


def partition_codes(response: Any) -> list[int]:
    return [
        int(partition.error_code) for topic in response.responses for partition in topic.partitions
    ]


async def assert_serves(port: int) -> None:
    """A new connection gets a Metadata answer that knows the topic."""
    wire = await KafkaWire.connect(port)
    try:
        response = await wire.request(ApiKey.METADATA, 4, metadata_request())
        assert [int(topic.error_code) for topic in response.topics] == [0]
    finally:
        await wire.aclose()


async def test_negative_fetch_offset_and_partition_limit_get_partition_errors(
    tmp_path: Path,
) -> None:
    async with running_server(tmp_path / "data") as (broker, server):
        await broker.create_topic(TOPIC, partitions=2)
        await broker.produce(TOPIC, 0, [Record(value=b"kept")])
        wire = await KafkaWire.connect(server.port)
        response = await wire.request(
            ApiKey.FETCH, 11, fetch_request((0, -1, 1 << 20), (1, 0, -1), (0, 0, 1 << 20))
        )
        # As Kafka: OFFSET_OUT_OF_RANGE for the negative offset; INVALID_REQUEST
        # (Kafka: UNKNOWN_SERVER_ERROR) for the negative limit; the rest served.
        assert sorted(partition_codes(response)) == [
            ErrorCode.none,
            ErrorCode.offset_out_of_range,
            ErrorCode.invalid_request,
        ]
        served = [p for t in response.responses for p in t.partitions if p.error_code == 0]
        assert served[0].records, "the good partition's records are returned"
        # The same connection goes on, and so does the server.
        assert (await wire.request(ApiKey.METADATA, 4, metadata_request())).topics
        await wire.aclose()
        await assert_serves(server.port)


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"session_id": i32(17), "session_epoch": i32(1)}, ErrorCode.fetch_session_id_not_found),
        ({"session_id": i32(0), "session_epoch": i32(5)}, ErrorCode.fetch_session_id_not_found),
    ],
)
async def test_fetch_sessions_this_broker_cannot_have_are_refused(
    tmp_path: Path, fields: dict[str, Any], code: int
) -> None:
    async with running_server(tmp_path / "data") as (broker, server):
        await broker.create_topic(TOPIC)
        wire = await KafkaWire.connect(server.port)
        response = await wire.request(ApiKey.FETCH, 11, fetch_request((0, 0, 1024), **fields))
        assert int(response.error_code) == code
        assert response.session_id == 0 and response.responses == ()
        # Asking for a new session (0, epoch 0) is a plain full fetch, session id 0.
        response = await wire.request(
            ApiKey.FETCH,
            11,
            fetch_request((0, 0, 1024), session_id=i32(0), session_epoch=i32(0)),
        )
        assert int(response.error_code) == 0 and response.session_id == 0
        await wire.aclose()


async def test_fetch_with_a_bad_isolation_level_gets_invalid_request(tmp_path: Path) -> None:
    async with running_server(tmp_path / "data") as (broker, server):
        await broker.create_topic(TOPIC)
        wire = await KafkaWire.connect(server.port)
        response = await wire.request(
            ApiKey.FETCH, 11, fetch_request((0, 0, 1024), isolation_level=i8(7))
        )
        assert partition_codes(response) == [ErrorCode.invalid_request]
        await wire.aclose()
        await assert_serves(server.port)


async def test_null_non_nullable_array_closes_only_that_connection(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """DescribeConfigs v1 with a null resources array used to stop the broker (TypeError)."""
    async with running_server(tmp_path / "data") as (broker, server):
        await broker.create_topic(TOPIC)
        bystander = await KafkaWire.connect(server.port)
        wire = await KafkaWire.connect(server.port)
        header = encode_request_header(ApiKey.DESCRIBE_CONFIGS, 1, 7, "null-array", flexible=False)
        payload = header + struct.pack(">ib", -1, 0)  # resources: null, include_synonyms
        await wire.send_raw(SIZE.pack(len(payload)) + payload)
        with pytest.raises(ServerClosed):
            await wire.read_frame()
        await wire.aclose()
        # A well-formed DescribeConfigs still works, on another connection.
        response = await bystander.request(
            ApiKey.DESCRIBE_CONFIGS,
            1,
            DescribeConfigsRequest(
                resources=(
                    DescribeConfigsResource(
                        resource_type=i8(2), resource_name=TOPIC, configuration_keys=None
                    ),
                )
            ),
        )
        assert int(response.results[0].error_code) == 0 and response.results[0].configs
        await bystander.aclose()
    lines = [r.getMessage() for r in caplog.records if "closing connection" in r.getMessage()]
    assert len(lines) == 1 and "non-nullable array resources" in lines[0]


def raising(operation: str) -> Any:
    """A middleware whose ``operation`` handler fails with a bug (RuntimeError)."""

    def middleware(handler: Handler) -> Handler:
        async def wrapped(ctx: Any, request: Any) -> Any:
            if handler.__name__ == operation:
                raise RuntimeError(f"{operation} bug, on purpose")
            return await handler(ctx, request)

        wrapped.__name__ = handler.__name__
        return wrapped

    return middleware


@pytest.mark.parametrize("operation", ["fetch", "produce", "list_offsets"])
async def test_a_handler_that_raises_costs_its_request_an_error_code(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, operation: str
) -> None:
    requests = {
        "fetch": (ApiKey.FETCH, 11, fetch_request((0, 0, 1024))),
        "produce": (
            ApiKey.PRODUCE,
            7,
            ProduceRequest(
                transactional_id=None,
                acks=1,  # type: ignore[arg-type]
                timeout=i32Timedelta.parse(datetime.timedelta(seconds=5)),
                topic_data=(
                    TopicProduceData(
                        name=TOPIC,  # type: ignore[arg-type]
                        partition_data=(
                            PartitionProduceData(
                                index=i32(0), records=build_batch([Record(value=b"x")])
                            ),
                        ),
                    ),
                ),
            ),
        ),
        "list_offsets": (
            ApiKey.LIST_OFFSETS,
            2,
            ListOffsetsRequest(
                replica_id=-1,  # type: ignore[arg-type]
                isolation_level=i8(0),
                topics=(
                    ListOffsetsTopic(
                        name=TOPIC,  # type: ignore[arg-type]
                        partitions=(
                            ListOffsetsPartition(partition_index=i32(0), timestamp=i64(-1)),
                        ),
                    ),
                ),
            ),
        ),
    }
    caplog.set_level(logging.ERROR, logger="trioring.server")
    async with running_server(tmp_path / "data", middleware=[raising(operation)]) as (
        broker,
        server,
    ):
        await broker.create_topic(TOPIC)
        bystander = await KafkaWire.connect(server.port)
        wire = await KafkaWire.connect(server.port)
        api_key, version, body = requests[operation]
        with trio.fail_after(10):
            response = await wire.request(api_key, version, body)
        codes = [
            int(p.error_code)
            for t in getattr(response, "responses", None) or response.topics
            for p in getattr(t, "partitions", None) or t.partition_responses
        ]
        assert codes == [ErrorCode.unknown_server_error]
        # The connection, other connections and the server go on.
        assert (await wire.request(ApiKey.METADATA, 4, metadata_request())).topics
        assert (await bystander.request(ApiKey.METADATA, 4, metadata_request())).topics
        await assert_serves(server.port)
        await wire.aclose()
        await bystander.aclose()
    bugs = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(bugs) == 1, [r.getMessage() for r in bugs]
    assert "failed unexpectedly" in bugs[0].getMessage() and bugs[0].exc_info is not None


async def test_a_flood_of_bad_connections_logs_a_bounded_number_of_escaped_lines(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Before: a fuzzing client produced 110,943 WARNING lines, with raw control
    bytes from its client ids in them."""
    caplog.set_level(logging.INFO, logger="trioring")
    evil = "evil\x1b[2J\r\nforged 2026-01-01 ERROR line"
    async with running_server(tmp_path / "data") as (broker, server):
        await broker.create_topic(TOPIC)
        for attempt in range(200):
            wire = await KafkaWire.connect(server.port)
            # A request for an unknown topic with an evil client id, then garbage.
            header = encode_request_header(ApiKey.METADATA, 4, attempt, evil, flexible=False)
            payload = header + b"\xff\xff"  # a body that does not decode
            await wire.send_raw(SIZE.pack(len(payload)) + payload)
            with pytest.raises(ServerClosed):
                await wire.read_frame()
            await wire.aclose()
        await assert_serves(server.port)
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("trioring.server")]
    closing = [line for line in lines if "closing connection" in line]
    assert 1 <= len(closing) <= 20, len(closing)
    assert all("\x1b" not in line and "\n" not in line and "\r" not in line for line in lines)
    assert any("evil\\x1b[2J\\r\\nforged" in line for line in closing), closing[:1]


async def test_a_bug_in_a_connections_clean_up_costs_that_connection_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The clean-up after a connection ends was outside the error boundary: a failed
    assertion in the memory budget's bookkeeping there (found by the wire fuzzer)
    stopped the whole broker."""
    from trioring.server import _server  # noqa: PLC0415

    def broken(self: Any, memory: Any) -> None:
        raise AssertionError("bookkeeping bug, on purpose")

    monkeypatch.setattr(_server._Connection, "release_all", broken)
    async with running_server(tmp_path / "data") as (broker, server):
        await broker.create_topic(TOPIC)
        for _ in range(3):
            wire = await KafkaWire.connect(server.port)
            await wire.aclose()
        await trio.sleep(0.1)
        # Still serving.
        wire = await KafkaWire.connect(server.port)
        response = await wire.request(
            ApiKey.METADATA, 4, MetadataRequest(topics=None, allow_auto_topic_creation=False)
        )
        assert any(topic.name == TOPIC for topic in response.topics)
        await wire.aclose()
    lines = [r.getMessage() for r in caplog.records if "releasing the connection" in r.getMessage()]
    assert lines and "bookkeeping bug" in lines[0]

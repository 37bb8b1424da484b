"""Helpers for the in-process server tests (not a test module).

- :func:`running_server`: an embedded broker serving Kafka on 127.0.0.1 at a
  free port, inside the test's own Trio run.
- :class:`KafkaWire`: one connection that sends kio request objects and
  decodes kio response objects, or reports that the server closed it.
"""

from __future__ import annotations

import datetime
import io
import socket
import struct
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from kio.schema.api_versions.v0.request import ApiVersionsRequest
from kio.schema.fetch.v11.request import FetchPartition, FetchRequest, FetchTopic
from kio.serial import entity_reader, entity_writer
from kio.static.primitive import i32, i32Timedelta, i64

import trioring
from trioring.handlers import Middleware
from trioring.protocol.kafka import (
    ApiKey,
    encode_request_header,
    is_flexible,
    request_schema,
    response_schema,
)
from trioring.server import KafkaServer, ServerConfig, serve_kafka
from trioring.uring import FileBackend
from trioring.uring._uring import uring_unavailable_reason

SIZE = struct.Struct(">i")
_URING_UNAVAILABLE = uring_unavailable_reason()
#: Fixture params for tests that run over both I/O backends ("uring" skips
#: without io_uring; CI's TRIORING_REQUIRE_URING turns that skip into a failure).
BACKEND_PARAMS = [
    "fallback",
    pytest.param(
        "uring",
        marks=pytest.mark.skipif(
            _URING_UNAVAILABLE is not None, reason=f"io_uring unavailable: {_URING_UNAVAILABLE}"
        ),
    ),
]
#: Seconds any one exchange with the server may take.
EXCHANGE_SECONDS = 10.0


@asynccontextmanager
async def running_server(
    data_dir: Path,
    *,
    backend: FileBackend | None = None,
    middleware: Sequence[Middleware] = (),
    broker_config: trioring.BrokerConfig | None = None,
    **server_settings: Any,
) -> AsyncIterator[tuple[trioring.Broker, KafkaServer]]:
    config = broker_config or trioring.BrokerConfig(data_dir=str(data_dir))
    async with (
        trioring.open_broker(config, backend=backend, middleware=middleware) as broker,
        trio.open_nursery() as nursery,
    ):
        server: KafkaServer = await nursery.start(
            serve_kafka, broker, ServerConfig(port=0, **server_settings)
        )
        yield broker, server
        nursery.cancel_scope.cancel()


def long_poll(topic: str, max_wait_ms: int, partition: int = 0) -> FetchRequest:
    """A Fetch v11 from offset 0 that waits up to max_wait_ms for one byte."""
    return FetchRequest(
        max_wait=i32Timedelta.parse(datetime.timedelta(milliseconds=max_wait_ms)),
        min_bytes=i32(1),
        topics=(
            FetchTopic(
                topic=topic,  # type: ignore[arg-type]
                partitions=(
                    FetchPartition(
                        partition=i32(partition), fetch_offset=i64(0), partition_max_bytes=i32(1024)
                    ),
                ),
            ),
        ),
        forgotten_topics_data=(),
        rack_id="",
    )


def encode_request(
    api_key: int, version: int, body: Any, correlation_id: int, client_id: str | None = "tests"
) -> bytes:
    """A whole request frame (size prefix, header, body) for a kio request object."""
    writer = entity_writer(request_schema(api_key, version))
    buffer = io.BytesIO()
    writer(buffer, body)
    payload = (
        encode_request_header(
            api_key,
            version,
            correlation_id,
            client_id,
            flexible=is_flexible(api_key, version),
        )
        + buffer.getvalue()
    )
    return SIZE.pack(len(payload)) + payload


class ServerClosed(Exception):
    """The server closed the connection instead of answering."""


class KafkaWire:
    """A raw Kafka connection for tests: kio objects in and out."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self._buffer = bytearray()
        self._correlation_id = 0

    @classmethod
    async def connect(cls, port: int) -> KafkaWire:
        return cls(await trio.open_tcp_stream("127.0.0.1", port))

    async def aclose(self) -> None:
        await self.stream.aclose()

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def read_frame(self) -> bytes:
        """The next response frame without its size prefix; ServerClosed at EOF."""
        with trio.fail_after(EXCHANGE_SECONDS):
            while (
                len(self._buffer) < 4 or len(self._buffer) < 4 + SIZE.unpack_from(self._buffer)[0]
            ):
                try:
                    data = await self.stream.receive_some(1 << 16)
                except trio.BrokenResourceError:
                    data = b""
                if not data:
                    raise ServerClosed("the server closed the connection")
                self._buffer += data
        size = SIZE.unpack_from(self._buffer)[0]
        frame = bytes(self._buffer[4 : 4 + size])
        del self._buffer[: 4 + size]
        return frame

    async def request(
        self, api_key: int, version: int, body: Any, *, client_id: str | None = "tests"
    ) -> Any:
        """Send ``body`` and return the decoded response; ServerClosed if the server hung up."""
        self._correlation_id += 1
        correlation_id = self._correlation_id
        await self.send_raw(encode_request(api_key, version, body, correlation_id, client_id))
        if api_key == ApiKey.PRODUCE and int(body.acks) == 0:
            return None
        frame = await self.read_frame()
        (answered,) = SIZE.unpack_from(frame)
        assert answered == correlation_id, (answered, correlation_id)
        offset = 4
        if is_flexible(api_key, version) and api_key != ApiKey.API_VERSIONS:
            offset += 1  # response header v1: an empty tagged-field section
        response, size = entity_reader(response_schema(api_key, version))(frame, offset)
        assert offset + size == len(frame), "trailing bytes after the response"
        return response


# --- blocking sockets, for tests against a broker process ----------------------------------


def _receive_frame(connection: socket.socket) -> bytes | None:
    """The next frame, or None if the broker closed the connection."""
    data = b""
    while len(data) < 4 or len(data) < 4 + SIZE.unpack_from(data)[0]:
        try:
            chunk = connection.recv(1 << 16)
        except ConnectionResetError:
            return None
        if not chunk:
            return None
        data += chunk
    size = SIZE.unpack_from(data)[0]
    assert len(data) == 4 + size, "more than one frame for one request"
    return data[4:]


def exchange(
    port: int, api_key: int, version: int, body: Any, client_id: str | None = "tests"
) -> Any:
    """Send one request on a new connection; its decoded response, None for an acks=0
    produce (checked to leave the connection served), or "closed"."""
    frame = encode_request(api_key, version, body, 42, client_id)
    with socket.create_connection(("127.0.0.1", port), timeout=EXCHANGE_SECONDS) as connection:
        connection.sendall(frame)
        if api_key == ApiKey.PRODUCE and int(body.acks) == 0:
            # No answer comes; ApiVersions right after shows the connection is served.
            connection.sendall(
                encode_request(ApiKey.API_VERSIONS, 0, ApiVersionsRequest(), 43, "tests")
            )
            answer = _receive_frame(connection)
            if answer is None:
                return "closed"
            assert SIZE.unpack_from(answer)[0] == 43
            return None
        answer = _receive_frame(connection)
    if answer is None:
        return "closed"
    assert SIZE.unpack_from(answer)[0] == 42, "wrong correlation id"
    offset = 4 + (1 if is_flexible(api_key, version) and api_key != ApiKey.API_VERSIONS else 0)
    response, size = entity_reader(response_schema(api_key, version))(answer, offset)
    assert offset + size == len(answer), "trailing bytes in the response"
    return response

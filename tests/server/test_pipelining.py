"""Pipelined requests on one connection (in-process server, raw frames).

Responses go back in request order; produces append in request order; a
produce waiting for its fdatasync does not hold back the next produce's
append (their syncs can then be shared), unless in_flight_requests_max is 1;
at most in_flight_requests_max requests are read and not yet answered.
"""

from __future__ import annotations

import datetime
import io
import struct
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
import trio.testing
from kio.schema.produce.v7.request import PartitionProduceData, ProduceRequest, TopicProduceData
from kio.schema.produce.v7.response import ProduceResponse
from kio.serial import entity_reader, entity_writer
from kio.static.primitive import i16, i32, i32Timedelta

import trioring
from trioring.protocol.kafka import ApiKey, encode_request_header
from trioring.protocol.records import Record, build_batch
from trioring.server import KafkaServer, ServerConfig, serve_kafka

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "storage"))
from server_support import BACKEND_PARAMS
from storage_support import Gate, TestBackend, UringTestBackend

TOPIC = "pipelined"
SIZE = struct.Struct(">i")


def produce_frame(correlation_id: int, value: bytes, acks: int = -1) -> bytes:
    request = ProduceRequest(
        transactional_id=None,
        acks=i16(acks),
        timeout=i32Timedelta.parse(datetime.timedelta(seconds=30)),
        topic_data=(
            TopicProduceData(
                name=TOPIC,  # type: ignore[arg-type]
                partition_data=(
                    PartitionProduceData(index=i32(0), records=build_batch([Record(value=value)])),
                ),
            ),
        ),
    )
    body = io.BytesIO()
    entity_writer(ProduceRequest)(body, request)
    payload = (
        encode_request_header(ApiKey.PRODUCE, 7, correlation_id, "pipelining-test", flexible=False)
        + body.getvalue()
    )
    return SIZE.pack(len(payload)) + payload


async def read_response(stream: trio.SocketStream, buffer: bytearray) -> tuple[int, int, int]:
    """(correlation id, error code, base offset) of the next Produce v7 response."""
    while len(buffer) < 4 or len(buffer) < 4 + SIZE.unpack_from(buffer)[0]:
        data = await stream.receive_some(65536)
        assert data, "the broker closed the connection"
        buffer += data
    size = SIZE.unpack_from(buffer)[0]
    frame = bytes(buffer[4 : 4 + size])
    del buffer[: 4 + size]
    (correlation_id,) = SIZE.unpack_from(frame)
    response, _ = entity_reader(ProduceResponse)(frame, 4)
    partition = response.responses[0].partition_responses[0]
    return correlation_id, int(partition.error_code.value), int(partition.base_offset)


class Server:
    def __init__(self, broker: trioring.Broker, backend: TestBackend, server: KafkaServer) -> None:
        self.broker = broker
        self.backend = backend
        self.server = server
        self.port = server.port

    @property
    def log_end_offset(self) -> int:
        return self.broker.shard.log(TOPIC, 0).log_end_offset


@pytest.fixture(params=BACKEND_PARAMS)
def backend_class(request: pytest.FixtureRequest) -> type[TestBackend]:
    """The gated test backend over the fallback, or over the ring (files and sockets)."""
    return UringTestBackend if request.param == "uring" else TestBackend


async def start(
    nursery: trio.Nursery, tmp_path: Path, in_flight: int, backend_class: type[TestBackend]
) -> Server:
    backend = backend_class()
    broker = await nursery.start(_run_broker, tmp_path, backend)
    await broker.create_topic(TOPIC, partitions=1)
    server = await nursery.start(
        serve_kafka, broker, ServerConfig(port=0, in_flight_requests_max=in_flight)
    )
    return Server(broker, backend, server)


async def start_gated(
    nursery: trio.Nursery, tmp_path: Path, in_flight: int, backend_class: type[TestBackend]
) -> tuple[Server, Gate, trio.SocketStream]:
    """A server whose log fdatasyncs wait at a gate, and a connection to it."""
    server = await start(nursery, tmp_path, in_flight, backend_class)
    gate = Gate(f"{TOPIC}-0/00000000000000000000.log")
    server.backend.sync_gate = gate
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    return server, gate, stream


async def _run_broker(
    tmp_path: Path, backend: TestBackend, task_status: trio.TaskStatus[trioring.Broker]
) -> None:
    async with trioring.open_broker(str(tmp_path / "data"), backend=backend) as broker:
        task_status.started(broker)
        await trio.sleep_forever()


@pytest.fixture
async def nursery() -> AsyncIterator[trio.Nursery]:
    async with trio.open_nursery() as nursery:
        yield nursery
        nursery.cancel_scope.cancel()


async def wait_for_log_end(server: Server, offset: int) -> None:
    log = server.broker.shard.log(TOPIC, 0)
    await log.high_watermark.wait_value(lambda value: value >= offset)


async def test_produce_appends_while_the_previous_waits_for_its_sync(
    nursery: trio.Nursery, tmp_path: Path, backend_class: type[TestBackend]
) -> None:
    server, gate, stream = await start_gated(nursery, tmp_path, 5, backend_class)
    buffer = bytearray()
    with trio.fail_after(10):
        await stream.send_all(b"".join(produce_frame(i, b"v%d" % i) for i in range(3)))
        await gate.reached.wait()
        # The first produce waits for its fdatasync; the next two are appended.
        await wait_for_log_end(server, 3)
        server.backend.sync_gate = None
        gate.release.set()
        responses = [await read_response(stream, buffer) for _ in range(3)]
    assert responses == [(0, 0, 0), (1, 0, 1), (2, 0, 2)]
    fetched = await server.broker.fetch(TOPIC, 0, offset=0)
    assert [r.value for r in fetched.records] == [b"v0", b"v1", b"v2"]
    # One fdatasync for the first, one shared by the two appended meanwhile.
    segment = f"/{TOPIC}-0/00000000000000000000.log"
    syncs = sum(n for path, n in server.backend.sync_calls.items() if path.endswith(segment))
    assert syncs <= 2
    await stream.aclose()


async def test_in_flight_requests_max_bounds_what_is_read(
    nursery: trio.Nursery, tmp_path: Path, backend_class: type[TestBackend]
) -> None:
    server, gate, stream = await start_gated(nursery, tmp_path, 2, backend_class)
    buffer = bytearray()
    with trio.fail_after(10):
        await stream.send_all(b"".join(produce_frame(i, b"v%d" % i) for i in range(4)))
        await gate.reached.wait()
        await wait_for_log_end(server, 2)
        # Two requests are in flight (both waiting on the sync): the third is
        # not started until the first is answered.
        await trio.sleep(0.05)
        assert server.log_end_offset == 2
        server.backend.sync_gate = None
        gate.release.set()
        responses = [await read_response(stream, buffer) for _ in range(4)]
    assert [r[:2] for r in responses] == [(i, 0) for i in range(4)]
    assert [r[2] for r in responses] == [0, 1, 2, 3]
    await stream.aclose()


async def test_one_in_flight_handles_requests_one_at_a_time(
    nursery: trio.Nursery, tmp_path: Path, backend_class: type[TestBackend]
) -> None:
    server, gate, stream = await start_gated(nursery, tmp_path, 1, backend_class)
    buffer = bytearray()
    with trio.fail_after(10):
        await stream.send_all(b"".join(produce_frame(i, b"v%d" % i) for i in range(2)))
        await gate.reached.wait()
        await trio.sleep(0.05)
        assert server.log_end_offset == 1, "the second waits for the first's answer"
        server.backend.sync_gate = None
        gate.release.set()
        responses = [await read_response(stream, buffer) for _ in range(2)]
    assert responses == [(0, 0, 0), (1, 0, 1)]
    await stream.aclose()


async def test_acks_zero_between_pipelined_produces_gets_no_response(
    nursery: trio.Nursery, tmp_path: Path, backend_class: type[TestBackend]
) -> None:
    server = await start(nursery, tmp_path, 5, backend_class)
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    buffer = bytearray()
    frames = [produce_frame(0, b"a"), produce_frame(1, b"b", acks=0), produce_frame(2, b"c")]
    with trio.fail_after(10):
        await stream.send_all(b"".join(frames))
        responses = [await read_response(stream, buffer) for _ in range(2)]
        await wait_for_log_end(server, 3)
    assert responses == [(0, 0, 0), (2, 0, 2)]
    await stream.aclose()


async def test_a_connection_closed_with_requests_in_flight_gives_their_memory_back(
    nursery: trio.Nursery, tmp_path: Path, backend_class: type[TestBackend]
) -> None:
    """Found by the wire fuzzer: the bytes of the requests a closing connection still
    held went back to the server's budget in one lump, which the budget took for one
    large frame (over 1 MiB). Three small frames of 600 KiB failed its assertion, and
    the assertion, in the connection's cleanup, took the whole broker down."""
    server, gate, stream = await start_gated(nursery, tmp_path, 5, backend_class)
    padded = [
        # Bytes after a request's body are ignored, as Kafka ignores them.
        SIZE.pack(600 * 1024) + frame[4:] + bytes(600 * 1024 - len(frame) + 4)
        for frame in (produce_frame(i, b"v%d" % i) for i in range(3))
    ]
    with trio.fail_after(10):
        await stream.send_all(b"".join(padded))
        await gate.reached.wait()
        await wait_for_log_end(server, 3)  # all three read, none answered
        assert server.server.statistics()["request_bytes_used"] == 3 * 600 * 1024
        # An API nobody serves: the server closes the connection, requests and all
        # (once the first one's fdatasync, which is not cancelled, has returned).
        await stream.send_all(SIZE.pack(8) + struct.pack(">hhi", 999, 0, 3))
        await trio.testing.wait_all_tasks_blocked()
        server.backend.sync_gate = None
        gate.release.set()
        while await stream.receive_some(65536):
            pass
        await stream.aclose()
        while server.server.connection_count:  # noqa: ASYNC110
            await trio.sleep(0.01)
    assert server.server.statistics()["request_bytes_used"] == 0
    assert server.server.memory.statistics().large_bytes_used == 0
    # The broker serves on.
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    with trio.fail_after(10):
        await stream.send_all(produce_frame(7, b"after"))
        assert (await read_response(stream, bytearray()))[:2] == (7, 0)
    await stream.aclose()


def test_in_flight_requests_max_is_validated() -> None:
    with pytest.raises(trioring.InvalidArgumentError, match="in_flight_requests_max"):
        ServerConfig(in_flight_requests_max=0)

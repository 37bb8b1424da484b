"""Zero-copy Fetch: records go from the segment files to the socket, and the answers are
byte for byte those of the copy path.

Each test runs over both backends: io_uring splices, the fallback uses
``os.sendfile``. A zero-copy server and a copy-path server
(``fetch_zero_copy=False``) serve the same broker, so every answer can be
compared with the copy path's, bytes and all.
"""

from __future__ import annotations

import datetime
import os
import random
import struct
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from kio.schema.fetch.v11.request import FetchPartition as FetchPartitionV11
from kio.schema.fetch.v11.request import FetchRequest as FetchRequestV11
from kio.schema.fetch.v11.request import FetchTopic as FetchTopicV11
from kio.schema.fetch.v12.request import FetchPartition as FetchPartitionV12
from kio.schema.fetch.v12.request import FetchRequest as FetchRequestV12
from kio.schema.fetch.v12.request import FetchTopic as FetchTopicV12
from kio.serial import entity_reader
from kio.static.primitive import i32, i32Timedelta, i64
from server_support import BACKEND_PARAMS, SIZE, KafkaWire, ServerClosed, encode_request

import trioring
from trioring.handlers.messages import DeleteRecordsRequest
from trioring.protocol.kafka import (
    ApiKey,
    FetchResponseBody,
    FetchResponsePartition,
    FetchResponseTopic,
    encode_response_chunks,
    response_schema,
)
from trioring.protocol.records import Record, build_batch, decode_batch, iterate_batches
from trioring.server import KafkaServer, ServerConfig, serve_kafka
from trioring.storage.log import LogConfig
from trioring.uring import FallbackBackend, FileBackend, UringBackend

TOPIC = "zero-copy"
PARTITIONS = 3


@attrs.define
class Servers:
    broker: trioring.Broker
    zero_copy: KafkaServer
    copy: KafkaServer
    #: The records each partition holds, in offset order.
    values: dict[int, list[bytes]]


@pytest.fixture(params=BACKEND_PARAMS)
def backend(request: pytest.FixtureRequest) -> FileBackend:
    return UringBackend() if request.param == "uring" else FallbackBackend()


@pytest.fixture
async def servers(tmp_path: Path, backend: FileBackend) -> AsyncIterator[Servers]:
    config = trioring.BrokerConfig(data_dir=str(tmp_path / "data"))
    async with (
        trioring.open_broker(config, backend=backend) as broker,
        trio.open_nursery() as nursery,
    ):
        # Small segments: fetches cross them, and DeleteRecords deletes some.
        await broker.create_topic(
            TOPIC, PARTITIONS, config=LogConfig(segment_bytes=300_000, retention_ms=None)
        )
        rng = random.Random(17)
        values: dict[int, list[bytes]] = {p: [] for p in range(PARTITIONS)}
        for partition in range(PARTITIONS):
            # Partition 0 holds more than the socket buffers take (about 8 MB).
            for _ in range(400 if partition == 0 else 60):
                batch = [rng.randbytes(rng.randint(100, 4000)) for _ in range(rng.randint(1, 20))]
                await broker.produce_batch(
                    TOPIC, partition, build_batch([Record(value=v) for v in batch], now_ms=1)
                )
                values[partition].extend(batch)
        zero_copy = await nursery.start(
            partial(serve_kafka, broker, ServerConfig(port=0), publish_node=False)
        )
        copy = await nursery.start(
            partial(
                serve_kafka, broker, ServerConfig(port=0, fetch_zero_copy=False), publish_node=False
            )
        )
        yield Servers(broker, zero_copy, copy, values)
        nursery.cancel_scope.cancel()


#: The kio request, topic and partition classes of the Fetch versions the tests send.
FETCH_CLASSES: dict[int, tuple[Any, Any, Any]] = {
    11: (FetchRequestV11, FetchTopicV11, FetchPartitionV11),
    12: (FetchRequestV12, FetchTopicV12, FetchPartitionV12),
}


def fetch_request(
    offsets: dict[int, int],
    partition_max_bytes: int,
    max_bytes: int,
    *,
    version: int = 11,
    min_bytes: int = 1,
    max_wait_ms: int = 0,
) -> Any:
    request_class, topic_class, partition_class = FETCH_CLASSES[version]
    return request_class(
        max_wait=i32Timedelta.parse(datetime.timedelta(milliseconds=max_wait_ms)),
        min_bytes=i32(min_bytes),
        max_bytes=i32(max_bytes),
        topics=(
            topic_class(
                topic=TOPIC,
                partitions=tuple(
                    partition_class(
                        partition=i32(p),
                        fetch_offset=i64(offset),
                        partition_max_bytes=i32(partition_max_bytes),
                    )
                    for p, offset in offsets.items()
                ),
            ),
        ),
        forgotten_topics_data=(),
        rack_id="",
    )


async def raw_answers(port: int, frames: list[bytes]) -> list[bytes]:
    """Send every frame at once (pipelined) and read as many answers, in order."""
    wire = await KafkaWire.connect(port)
    try:
        await wire.send_raw(b"".join(frames))
        return [await wire.read_frame() for _ in frames]
    finally:
        await wire.aclose()


def records_of(frame: bytes, version: int) -> list[bytes]:
    """Every record value of a Fetch answer, partitions in order."""
    offset = 4 + (1 if version >= 12 else 0)
    response, _ = entity_reader(response_schema(ApiKey.FETCH, version))(frame, offset)
    values = []
    for topic in response.responses:
        for partition in topic.partitions:
            assert int(partition.error_code) == 0, partition
            data = partition.records or b""
            for position, _ in iterate_batches(data):
                _, records = decode_batch(data, position)
                values.extend(r.value for r in records)
    return values


def held_segments(broker: trioring.Broker) -> int:
    """Reads holding a segment open, all partitions together (0 once every send ended)."""
    return sum(
        segment._readers  # the count under test
        for p in range(PARTITIONS)
        for segment in broker.shard.log(TOPIC, p)._segments
    )


async def no_segment_held(broker: trioring.Broker) -> None:
    """Wait (bounded) until the server's sends have let every segment go: the client
    may read an answer's last byte before the server's task is back to release it."""
    with trio.fail_after(10):
        while held_segments(broker):  # noqa: ASYNC110
            await trio.sleep(0.01)


def deleted_files_open(data_dir: str) -> list[str]:
    """Files of ``data_dir`` this process still has open though they are deleted."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(data_dir) and target.endswith(" (deleted)"):
            found.append(target)
    return found


async def test_answers_are_byte_for_byte_those_of_the_copy_path(servers: Servers) -> None:
    rng = random.Random(5)
    ends = {p: len(servers.values[p]) for p in range(PARTITIONS)}
    frames_v11, frames_v12 = [], []
    for correlation_id in range(60):
        offsets = {p: rng.randrange(ends[p] + 1) for p in rng.sample(range(PARTITIONS), 2)}
        partition_max_bytes = rng.choice([1, 10_000, 70_000, 200_000, 1 << 20, 8 << 20])
        max_bytes = rng.choice([1, 100_000, 500_000, 50 << 20])
        frames_v11.append(
            encode_request(
                ApiKey.FETCH,
                11,
                fetch_request(offsets, partition_max_bytes, max_bytes),
                correlation_id,
            )
        )
        frames_v12.append(
            encode_request(
                ApiKey.FETCH,
                12,
                fetch_request(offsets, partition_max_bytes, max_bytes, version=12),
                correlation_id,
            )
        )
    for frames in (frames_v11, frames_v12):
        # Pipelined: the answers come back in request order on both paths.
        zero_copy = await raw_answers(servers.zero_copy.port, frames)
        copy = await raw_answers(servers.copy.port, frames)
        assert [SIZE.unpack_from(a)[0] for a in zero_copy] == list(range(len(frames)))
        assert zero_copy == copy
    statistics = servers.zero_copy.statistics()
    assert statistics["file_ranges_sent_total"] > 30
    assert servers.copy.statistics()["file_bytes_sent_total"] == 0
    # A whole partition from its start, over several segments.
    (whole,) = await raw_answers(
        servers.zero_copy.port,
        [encode_request(ApiKey.FETCH, 11, fetch_request({1: 0}, 50 << 20, 50 << 20), 1)],
    )
    assert records_of(whole, 11) == servers.values[1]
    await no_segment_held(servers.broker)


async def test_a_segment_deleted_during_a_send_is_sent_whole_and_then_closed(
    servers: Servers, tmp_path: Path
) -> None:
    request = encode_request(ApiKey.FETCH, 11, fetch_request({0: 0}, 50 << 20, 50 << 20), 7)
    (expected,) = await raw_answers(servers.copy.port, [request])
    assert len(expected) > 6_000_000  # more than the socket buffers hold
    reader = await KafkaWire.connect(servers.zero_copy.port)
    leaver = await KafkaWire.connect(servers.zero_copy.port)
    # Neither reads yet: the server's sends stall with the segments held.
    await reader.send_raw(request)
    await leaver.send_raw(request)
    with trio.fail_after(10):
        while held_segments(servers.broker) == 0:  # noqa: ASYNC110
            await trio.sleep(0.01)
    end = len(servers.values[0])
    answer = await servers.broker.handlers.delete_records(
        servers.broker.handler_context(), DeleteRecordsRequest(TOPIC, 0, end)
    )
    assert answer.low_watermark == end
    data_dir = str(tmp_path / "data")
    assert deleted_files_open(data_dir), "the sends keep the deleted segments open"
    # One client leaves mid-answer: its connection's hold goes.
    await leaver.aclose()
    # The other reads on: the whole answer, from files that no longer exist.
    frame = await reader.read_frame()
    assert frame == expected
    await reader.aclose()
    with trio.fail_after(10):
        while held_segments(servers.broker) or deleted_files_open(data_dir):  # noqa: ASYNC110
            await trio.sleep(0.01)


async def test_a_long_poll_that_reads_again_holds_nothing_between_reads(
    servers: Servers,
) -> None:
    """min_bytes above what the partitions hold: each read's slices are let go
    before the wait, and the answer after max_wait is the copy path's."""
    body = fetch_request({0: 0, 2: 0}, 1 << 20, 50 << 20, min_bytes=40 << 20, max_wait_ms=300)
    frame = encode_request(ApiKey.FETCH, 11, body, 3)
    held_while_waiting: list[int] = []
    async with trio.open_nursery() as nursery:

        async def produce_meanwhile() -> None:
            await trio.sleep(0.1)
            held_while_waiting.append(held_segments(servers.broker))
            # New data wakes the wait; the handler reads again, and waits again.
            await servers.broker.produce(TOPIC, 2, [Record(value=b"late")])
            await trio.sleep(0.1)
            held_while_waiting.append(held_segments(servers.broker))

        nursery.start_soon(produce_meanwhile)
        (zero_copy,) = await raw_answers(servers.zero_copy.port, [frame])
    assert held_while_waiting == [0, 0]
    (copy,) = await raw_answers(servers.copy.port, [frame])
    assert zero_copy == copy
    assert servers.zero_copy.statistics()["file_ranges_sent_total"] >= 2
    await no_segment_held(servers.broker)


async def test_a_client_that_takes_nothing_is_closed_and_its_ranges_released(
    tmp_path: Path, backend: FileBackend
) -> None:
    config = trioring.BrokerConfig(data_dir=str(tmp_path / "data"))
    async with (
        trioring.open_broker(config, backend=backend) as broker,
        trio.open_nursery() as nursery,
    ):
        await broker.create_topic(TOPIC, PARTITIONS)
        for _ in range(40):
            await broker.produce(TOPIC, 0, [Record(value=os.urandom(100_000))])
        server: KafkaServer = await nursery.start(
            serve_kafka, broker, ServerConfig(port=0, connections_max_idle_ms=500)
        )
        wire = await KafkaWire.connect(server.port)
        await wire.send_raw(
            encode_request(ApiKey.FETCH, 11, fetch_request({0: 0}, 50 << 20, 50 << 20), 1)
        )
        with trio.fail_after(10):
            while server.statistics()["idle_connections_closed_total"] == 0:  # noqa: ASYNC110
                await trio.sleep(0.05)
            while held_segments(broker):  # noqa: ASYNC110
                await trio.sleep(0.01)
        with pytest.raises(ServerClosed):
            while True:
                await wire.read_frame()
        await wire.aclose()
        nursery.cancel_scope.cancel()


def test_the_fetch_answer_records_are_not_copied_into_the_frame_header() -> None:
    """The encoder hands non-buffer records back as their own chunk, whatever their size."""

    class Ranges:
        def __len__(self) -> int:
            return 10

    ranges = Ranges()
    for version in (4, 11, 12):
        body = FetchResponseBody(
            (FetchResponseTopic(TOPIC, (FetchResponsePartition(0, 0, 5, 5, 0, ranges),)),)
        )
        chunks = encode_response_chunks(ApiKey.FETCH, version, 1, body)
        assert any(chunk is ranges for chunk in chunks), version
        (size,) = struct.unpack_from(">i", chunks[0])
        assert size == sum(len(c) for c in chunks) - 4

"""Tests of the produce handler and validate_batches (what a producer may send)."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator

import pytest

import trioring
from trioring import Record
from trioring.errors import (
    CorruptRecordError,
    InvalidRecordError,
    InvalidRequiredAcksError,
    ProtocolError,
    RecordTooLargeError,
    UnknownTopicOrPartitionError,
)
from trioring.handlers import produce, validate_batches
from trioring.handlers.messages import ProduceRequest, ProduceResponse
from trioring.protocol.records import (
    ATTRIBUTE_CONTROL,
    ATTRIBUTE_TRANSACTIONAL,
    build_batch,
    compute_batch_crc,
)

LIMIT = 1 << 20
RECORD_COUNT_POSITION = 57
LAST_OFFSET_DELTA_POSITION = 23
ATTRIBUTES_POSITION = 21
MAGIC_POSITION = 16
CRC_POSITION = 17


@pytest.fixture
async def broker(tmp_path) -> AsyncIterator[trioring.Broker]:
    async with trioring.open_broker(tmp_path) as opened:
        await opened.create_topic("t")
        yield opened


def batch(count: int = 3, compression: str | None = None) -> bytes:
    # Timestamps are the wall clock's: old ones would make the log roll (segment_ms).
    return build_batch(
        [Record(key=b"k%d" % i, value=b"value %d" % i) for i in range(count)],
        compression=compression,
    )


def fix_crc(buffer: bytearray, position: int = 0) -> bytearray:
    size = 12 + struct.unpack_from(">i", buffer, position + 8)[0]
    crc = compute_batch_crc(buffer, position, size)
    struct.pack_into(">I", buffer, position + CRC_POSITION, crc)
    return buffer


def edited(data: bytes, fmt: str, position: int, value: int, *, crc: bool = True) -> bytes:
    buffer = bytearray(data)
    struct.pack_into(fmt, buffer, position, value)
    return bytes(fix_crc(buffer) if crc else buffer)


def log_end(broker: trioring.Broker) -> int:
    return broker.shard.log("t", 0).log_end_offset


# --- validate_batches -------------------------------------------------------------------


@pytest.mark.parametrize("compression", [None, "gzip", "snappy", "lz4", "zstd"])
def test_valid_batches_are_counted(compression):
    one = batch(compression=compression)
    assert len(validate_batches(one, LIMIT)) == 1
    assert len(validate_batches(one + batch(1) + one, LIMIT)) == 3
    assert len(validate_batches(bytearray(one), LIMIT)) == 1
    assert len(validate_batches(memoryview(one), LIMIT)) == 1


def test_edit_helper_keeps_a_valid_batch_valid():
    data = batch(3)
    assert len(validate_batches(edited(data, ">i", RECORD_COUNT_POSITION, 3), LIMIT)) == 1


def test_bad_crc():
    corrupt = bytearray(batch())
    corrupt[-1] ^= 0x01
    with pytest.raises(CorruptRecordError, match="CRC"):
        validate_batches(bytes(corrupt), LIMIT)
    header_corrupt = bytearray(batch())
    header_corrupt[CRC_POSITION] ^= 0x80
    with pytest.raises(CorruptRecordError):
        validate_batches(bytes(header_corrupt), LIMIT)
    # A bad batch after a good one is found too.
    with pytest.raises(CorruptRecordError):
        validate_batches(batch() + bytes(corrupt), LIMIT)


@pytest.mark.parametrize(
    ("position", "value"),
    [
        (RECORD_COUNT_POSITION, 2),
        (RECORD_COUNT_POSITION, 4),
        (RECORD_COUNT_POSITION, 0),
        (LAST_OFFSET_DELTA_POSITION, 5),
        (LAST_OFFSET_DELTA_POSITION, 0),
    ],
)
def test_record_count_must_match_last_offset_delta(position, value):
    data = edited(batch(3), ">i", position, value)
    with pytest.raises(CorruptRecordError, match="lastOffsetDelta"):
        validate_batches(data, LIMIT)


def test_batch_over_the_size_limit():
    data = batch(3)
    assert len(validate_batches(data, len(data))) == 1
    with pytest.raises(RecordTooLargeError, match=str(len(data) - 1)):
        validate_batches(data, len(data) - 1)
    with pytest.raises(RecordTooLargeError):
        validate_batches(batch(1) + data, len(data) - 1)


@pytest.mark.parametrize("magic", [0, 1, 3])
def test_other_magic_is_a_protocol_error(magic):
    data = edited(batch(), ">b", MAGIC_POSITION, magic)
    with pytest.raises(ProtocolError, match="magic"):
        validate_batches(data, LIMIT)


@pytest.mark.parametrize("cut", [1, 10, 30, 60])
def test_truncated_is_a_protocol_error(cut):
    data = batch()
    with pytest.raises(ProtocolError):
        validate_batches(data[:-cut], LIMIT)
    with pytest.raises(ProtocolError):
        validate_batches(data[:cut], LIMIT)
    with pytest.raises(ProtocolError):
        validate_batches(data + data[:cut], LIMIT)


@pytest.mark.parametrize("flag", [ATTRIBUTE_TRANSACTIONAL, ATTRIBUTE_CONTROL])
def test_transactional_and_control_batches_are_invalid_records(flag):
    data = edited(batch(), ">h", ATTRIBUTES_POSITION, flag)
    with pytest.raises(InvalidRecordError):
        validate_batches(data, LIMIT)
    data = build_batch([Record(value=b"x")], transactional=True, producer_id=1, producer_epoch=0)
    with pytest.raises(InvalidRecordError, match="transactions"):
        validate_batches(data, LIMIT)


@pytest.mark.parametrize(
    ("fmt", "position", "value"),
    [
        (">h", ATTRIBUTES_POSITION, ATTRIBUTE_CONTROL),
        (">h", ATTRIBUTES_POSITION, ATTRIBUTE_TRANSACTIONAL),
        (">i", RECORD_COUNT_POSITION, 7),
    ],
)
def test_checks_run_in_kafkas_order(fmt, position, value):
    """Size, then CRC, then fields: a field damaged in transit is corruption."""
    damaged = edited(batch(), fmt, position, value, crc=False)
    with pytest.raises(CorruptRecordError, match="CRC"):
        validate_batches(damaged, LIMIT)
    with pytest.raises(RecordTooLargeError):
        validate_batches(damaged, len(damaged) - 1)


@pytest.mark.parametrize("empty", [b"", bytearray(), memoryview(b"")])
def test_empty_is_rejected(empty):
    with pytest.raises(ProtocolError):
        validate_batches(empty, LIMIT)


def test_negative_batch_length_is_a_protocol_error():
    with pytest.raises(ProtocolError):
        validate_batches(edited(batch(), ">i", 8, -1, crc=False), LIMIT)


# --- the handler -----------------------------------------------------------------------


async def test_produce_handler_appends_and_reports_offsets(broker):
    context = broker.handler_context()
    response = await produce(context, ProduceRequest("t", 0, batch(3) + batch(2), acks=1))
    assert response == ProduceResponse(0, 4, -1, 0)
    response = await produce(context, ProduceRequest("t", 0, batch(1), acks=-1))
    assert response == ProduceResponse(5, 5, -1, 0)
    assert broker.shard.log("t", 0).durable_offset == 6
    assert broker.statistics()["t-0"]["segments"] == 1
    fetched = await broker.fetch("t", 0, 0)
    assert [r.offset for r in fetched.records] == list(range(6))
    assert [r.value for r in fetched.records][3:5] == [b"value 0", b"value 1"]


async def test_produce_handler_rejects_bad_acks(broker):
    context = broker.handler_context()
    for acks in (2, -2, 100):
        with pytest.raises(InvalidRequiredAcksError):
            await produce(context, ProduceRequest("t", 0, batch(), acks=acks))
    assert log_end(broker) == 0


async def test_produce_handler_unknown_partition(broker):
    context = broker.handler_context()
    with pytest.raises(UnknownTopicOrPartitionError):
        await produce(context, ProduceRequest("t", 1, batch()))
    with pytest.raises(UnknownTopicOrPartitionError):
        await produce(context, ProduceRequest("other", 0, batch()))


def invalid_payloads() -> list[tuple[bytes, type[Exception]]]:
    good = batch()
    corrupt = bytearray(good)
    corrupt[-1] ^= 0xFF
    transactional = edited(good, ">h", ATTRIBUTES_POSITION, ATTRIBUTE_TRANSACTIONAL)
    return [
        (b"", ProtocolError),
        (bytes(corrupt), CorruptRecordError),
        (good + bytes(corrupt), CorruptRecordError),
        (good + good[:-1], ProtocolError),
        (edited(good, ">i", RECORD_COUNT_POSITION, 2), CorruptRecordError),
        (edited(good, ">b", MAGIC_POSITION, 1), ProtocolError),
        (good + transactional, InvalidRecordError),
        (edited(good, ">h", ATTRIBUTES_POSITION, ATTRIBUTE_CONTROL), InvalidRecordError),
    ]


@pytest.mark.parametrize(("payload", "error"), invalid_payloads())
async def test_rejected_produce_writes_nothing(broker, payload, error):
    await broker.produce("t", 0, [Record(value=b"before")])
    statistics = broker.statistics()["t-0"]
    with pytest.raises(error):
        await broker.produce_batch("t", 0, payload, acks=1)
    assert broker.statistics()["t-0"] == statistics
    fetched = await broker.fetch("t", 0, 0)
    assert [r.value for r in fetched.records] == [b"before"]
    assert (await broker.produce("t", 0, [Record(value=b"after")])).base_offset == 1


async def test_batch_bytes_max_comes_from_the_broker_config(tmp_path):
    small = batch(1)
    config = trioring.BrokerConfig(data_dir=tmp_path, batch_bytes_max=len(small))
    async with trioring.open_broker(config) as broker:
        await broker.create_topic("t")
        await broker.produce_batch("t", 0, small)
        with pytest.raises(RecordTooLargeError):
            await broker.produce_batch("t", 0, batch(2))
        with pytest.raises(RecordTooLargeError):
            await broker.produce("t", 0, [Record(value=b"x" * 100)])
        assert log_end(broker) == 1


async def test_base_offset_sent_by_the_producer_is_ignored(broker):
    data = edited(batch(2), ">q", 0, 12345, crc=False)
    result = await broker.produce_batch("t", 0, data)
    assert (result.base_offset, result.last_offset) == (0, 1)
    fetched = await broker.fetch("t", 0, 0)
    assert [r.offset for r in fetched.records] == [0, 1]


def _records_garbage_with_valid_crc() -> bytes:
    good = bytearray(batch(2))
    good[61:] = b"\x7f" * (len(good) - 61)  # garbage records with a correct CRC
    return bytes(fix_crc(good))


async def test_records_validation_rejects_batch_whose_records_do_not_decode(tmp_path):
    config = trioring.BrokerConfig(data_dir=tmp_path, produce_validation="records")
    async with trioring.open_broker(config) as records_broker:
        await records_broker.create_topic("t")
        with pytest.raises((ProtocolError, InvalidRecordError)):
            await records_broker.produce_batch("t", 0, _records_garbage_with_valid_crc())
        assert log_end(records_broker) == 0
        result = await records_broker.produce_batch("t", 0, batch(3))
        assert result.last_offset == 2


async def test_header_validation_stores_undecodable_records_as_documented(broker):
    """The default does no per-record work (docs/storage.md: differences from Kafka)."""
    await broker.produce_batch("t", 0, _records_garbage_with_valid_crc())
    assert log_end(broker) == 2
    with pytest.raises(ProtocolError):
        await broker.fetch("t", 0, 0)

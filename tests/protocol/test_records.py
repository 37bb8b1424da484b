"""Tests of the sans-IO RecordBatch v2 codec in trioring.protocol.records."""

from __future__ import annotations

import platform
import random
import struct
import sys
import time

import attrs
import cramjam
import crc32c
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import trioring.protocol.records as records_module
from trioring._constants import BATCH_RECORDS_MAX, RECORD_HEADERS_MAX
from trioring.errors import CorruptRecordError, ProtocolError
from trioring.protocol.compression import Compression, compress
from trioring.protocol.records import (
    ATTRIBUTE_CONTROL,
    ATTRIBUTE_LOG_APPEND_TIME,
    ATTRIBUTE_TRANSACTIONAL,
    BatchHeader,
    Record,
    build_batch,
    check_batch_crc,
    compute_batch_crc,
    decode_batch,
    encode_base_offset,
    estimate_record_bytes,
    iterate_batches,
    read_batch_header,
    set_base_offset,
)

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
HEADER = struct.Struct(">qiibIhiqqqhii")
XERIAL_MAGIC = b"\x82SNAPPY\x00"


# --- an independent encoder, written from the Kafka spec --------------------------


def varint(value: int) -> bytes:
    """Zig-zag LEB128 (protobuf sint64), written without trioring's helpers."""
    zigzag = value * 2 if value >= 0 else -value * 2 - 1
    return leb128(zigzag)


def leb128(unsigned: int) -> bytes:
    out = bytearray()
    while True:
        low = unsigned & 0x7F
        unsigned >>= 7
        if unsigned:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def nullable(data: bytes | None) -> bytes:
    return varint(-1) if data is None else varint(len(data)) + data


def encode_record(
    *,
    timestamp_delta: int,
    offset_delta: int,
    key: bytes | None,
    value: bytes | None,
    headers: tuple[tuple[str, bytes | None], ...] = (),
) -> bytes:
    body = b"\x00" + varint(timestamp_delta) + varint(offset_delta)
    body += nullable(key) + nullable(value) + varint(len(headers))
    for name, header_value in headers:
        body += nullable(name.encode()) + nullable(header_value)
    return varint(len(body)) + body


def assemble(
    section: bytes,
    *,
    record_count: int,
    attributes: int = 0,
    last_offset_delta: int | None = None,
    base_offset: int = 0,
    base_timestamp: int = 1_000,
    max_timestamp: int = 1_000,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    leader_epoch: int = -1,
    magic: int = 2,
) -> bytearray:
    """A batch around an (already compressed) records section, with a correct CRC."""
    batch = bytearray(61) + section
    HEADER.pack_into(
        batch,
        0,
        base_offset,
        len(batch) - 12,
        leader_epoch,
        magic,
        0,
        attributes,
        record_count - 1 if last_offset_delta is None else last_offset_delta,
        base_timestamp,
        max_timestamp,
        producer_id,
        producer_epoch,
        base_sequence,
        record_count,
    )
    struct.pack_into(">I", batch, 17, crc32c.crc32c(bytes(batch[21:])))
    return batch


def fix_crc(batch: bytearray, position: int = 0) -> None:
    header = read_batch_header(batch, position)
    crc = compute_batch_crc(batch, position, header.size_bytes)
    struct.pack_into(">I", batch, position + 17, crc)


def fix_crc_manually(batch: bytearray) -> None:
    """Recompute the CRC without parsing the header (which may be invalid)."""
    struct.pack_into(">I", batch, 17, crc32c.crc32c(bytes(batch[21:])))


# --- strategies ------------------------------------------------------------------

header_names = st.text(max_size=12) | st.sampled_from(["", "ключ", "日本語", "emoji-😀", "a\x00b"])
record_headers = st.lists(
    st.tuples(header_names, st.none() | st.binary(max_size=16)), max_size=4
).map(tuple)
timestamps = st.none() | st.integers(-(2**40), 2**45)
records_strategy = st.lists(
    st.builds(
        Record,
        key=st.none() | st.binary(max_size=40),
        value=st.none() | st.binary(max_size=200),
        headers=record_headers,
        timestamp_ms=timestamps,
    ),
    min_size=1,
    max_size=50,
)
codecs = st.sampled_from(list(Compression))


def sample_records(count: int = 5, value_size: int = 30) -> list[Record]:
    return [
        Record(
            key=None if i % 3 == 0 else f"key-{i}".encode(),
            value=(f"value-{i}-".encode() * value_size)[: value_size + i],
            headers=(("h", b"v"), ("ü", None)) if i % 2 else (),
            timestamp_ms=1_700_000_000_000 + (7 * i) % 5 - 2,
        )
        for i in range(count)
    ]


# --- round trip ------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    records=records_strategy,
    codec=codecs,
    base_offset=st.integers(0, 2**62),
    producer_id=st.integers(-1, 2**62),
    producer_epoch=st.integers(-1, 2**15 - 1),
    base_sequence=st.integers(-1, 2**31 - 1),
    leader_epoch=st.integers(-1, 2**31 - 1),
    transactional=st.booleans(),
    now_ms=st.integers(0, 2**45),
)
def test_round_trip(
    records: list[Record],
    codec: Compression,
    base_offset: int,
    producer_id: int,
    producer_epoch: int,
    base_sequence: int,
    leader_epoch: int,
    transactional: bool,
    now_ms: int,
) -> None:
    batch = build_batch(
        records,
        base_offset=base_offset,
        compression=codec,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=base_sequence,
        partition_leader_epoch=leader_epoch,
        transactional=transactional,
        now_ms=now_ms,
    )
    assert isinstance(batch, bytes)
    expected_times = [now_ms if r.timestamp_ms is None else r.timestamp_ms for r in records]

    header, decoded = decode_batch(batch)

    assert header == read_batch_header(batch)
    assert header.base_offset == base_offset
    assert header.batch_length == len(batch) - 12
    assert header.size_bytes == len(batch)
    assert header.partition_leader_epoch == leader_epoch
    assert header.magic == 2
    assert header.crc == crc32c.crc32c(batch[21:])
    assert header.attributes == int(codec) | (ATTRIBUTE_TRANSACTIONAL if transactional else 0)
    assert header.compression is codec
    assert header.is_transactional is transactional
    assert not header.is_log_append_time
    assert not header.is_control
    assert header.record_count == len(records)
    assert header.last_offset_delta == len(records) - 1
    assert header.last_offset == base_offset + len(records) - 1
    assert header.next_offset == base_offset + len(records)
    assert header.base_timestamp_ms == min(expected_times)
    assert header.max_timestamp_ms == max(expected_times)
    assert header.producer_id == producer_id
    assert header.producer_epoch == producer_epoch
    assert header.base_sequence == base_sequence

    assert len(decoded) == len(records)
    for index, (original, got) in enumerate(zip(records, decoded, strict=True)):
        assert got.key == original.key
        assert got.value == original.value
        assert got.headers == tuple(original.headers)
        assert got.timestamp_ms == expected_times[index]
        assert got.offset == base_offset + index
        assert got == attrs.evolve(
            original, timestamp_ms=expected_times[index], offset=base_offset + index
        )


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_decode_accepts_buffer_types_and_positions(kind: type) -> None:
    first = build_batch(sample_records(3), base_offset=10, compression="gzip")
    second = build_batch(sample_records(4), base_offset=13, compression="lz4")
    buffer = kind(b"junk" + first + second)
    header, records = decode_batch(buffer, 4 + len(first))
    assert header.base_offset == 13
    assert [r.offset for r in records] == [13, 14, 15, 16]
    assert [r.value for r in records] == [r.value for r in sample_records(4)]


def test_build_matches_independent_encoding() -> None:
    """Uncompressed build_batch output is byte-for-byte what the spec says."""
    records = [
        Record(key=b"k", value=b"v1", headers=(("h", b"x"), ("n", None)), timestamp_ms=1_005),
        Record(key=None, value=None, timestamp_ms=1_000),
        Record(key=b"", value=b"\x00" * 200, timestamp_ms=1_300),
    ]
    batch = build_batch(
        records,
        base_offset=42,
        producer_id=7,
        producer_epoch=3,
        base_sequence=11,
        partition_leader_epoch=5,
    )
    section = (
        encode_record(
            timestamp_delta=5,
            offset_delta=0,
            key=b"k",
            value=b"v1",
            headers=(("h", b"x"), ("n", None)),
        )
        + encode_record(timestamp_delta=0, offset_delta=1, key=None, value=None)
        + encode_record(timestamp_delta=300, offset_delta=2, key=b"", value=b"\x00" * 200)
    )
    expected = assemble(
        section,
        record_count=3,
        base_offset=42,
        base_timestamp=1_000,
        max_timestamp=1_300,
        producer_id=7,
        producer_epoch=3,
        base_sequence=11,
        leader_epoch=5,
    )
    assert batch == bytes(expected)


def test_crc_is_crc32c_castagnoli() -> None:
    # Standard CRC-32C check value; guards against the library computing plain CRC-32.
    assert crc32c.crc32c(b"123456789") == 0xE3069283
    batch = build_batch(sample_records(2))
    assert read_batch_header(batch).crc == crc32c.crc32c(batch[21:])
    assert compute_batch_crc(batch, 0, len(batch)) == crc32c.crc32c(batch[21:])


@given(st.binary(max_size=4096), st.integers(min_value=0, max_value=64))
def test_crc32c_in_use_matches_the_reference_package(data: bytes, start: int) -> None:
    """The CRC32C the codec uses (crc32c-rs where it installs) against the crc32c package."""
    view = memoryview(data)[min(start, len(data)) :]
    assert records_module._crc32c(view) == crc32c.crc32c(bytes(view))


@pytest.mark.parametrize(
    ("start", "stop"),
    [(0, 300_000), (21, 103_397), (1, 65_537), (13, 200_013), (7, 7), (3, 259)],
)
def test_crc32c_in_use_matches_the_reference_on_large_unaligned_buffers(
    start: int, stop: int
) -> None:
    # Sizes past the vector kernels' block sizes, views starting off alignment.
    data = bytes(random.Random(start * 1_000_003 + stop).randbytes(300_000))
    view = memoryview(data)[start:stop]
    assert records_module._crc32c(view) == crc32c.crc32c(bytes(view))


def test_the_fast_crc32c_is_in_use_where_pyproject_installs_it() -> None:
    """pyproject installs crc32c-rs on these platforms; losing it would cost ~3 us per batch."""
    if (
        sys.platform == "linux"
        and platform.machine() in ("x86_64", "aarch64")
        and platform.python_implementation() == "CPython"
        and sys.version_info < (3, 15)
    ):
        assert records_module.CRC32C_IMPLEMENTATION == "crc32c_rs"
    else:
        assert records_module.CRC32C_IMPLEMENTATION in ("crc32c_rs", "crc32c")


def test_records_without_timestamp_get_now() -> None:
    before = int(time.time() * 1000)
    batch = build_batch([Record(value=b"a"), Record(value=b"b", timestamp_ms=5)])
    after = int(time.time() * 1000)
    header, records = decode_batch(batch)
    assert before <= records[0].timestamp_ms <= after
    assert records[1].timestamp_ms == 5
    assert header.base_timestamp_ms == 5
    assert header.max_timestamp_ms == records[0].timestamp_ms


def test_unsorted_timestamps_use_negative_free_deltas() -> None:
    records = [Record(value=b"x", timestamp_ms=t) for t in (500, 100, 900, 100, 300)]
    batch = build_batch(records, compression="none")
    header, decoded = decode_batch(batch)
    assert header.base_timestamp_ms == 100
    assert header.max_timestamp_ms == 900
    assert [r.timestamp_ms for r in decoded] == [500, 100, 900, 100, 300]


def test_negative_timestamp_deltas_decode() -> None:
    """Other clients use the first record's time as base, giving negative deltas."""
    section = b"".join(
        encode_record(timestamp_delta=d, offset_delta=i, key=None, value=b"v")
        for i, d in enumerate([0, -400, 250, -1])
    )
    batch = assemble(section, record_count=4, base_timestamp=10_000, max_timestamp=10_250)
    _, records = decode_batch(batch)
    assert [r.timestamp_ms for r in records] == [10_000, 9_600, 10_250, 9_999]


def test_build_rejects_empty_and_unknown_codec() -> None:
    with pytest.raises(ValueError):
        build_batch([])
    with pytest.raises(ProtocolError):
        build_batch([Record(value=b"x")], compression="brotli")


@settings(max_examples=50, deadline=None)
@given(
    record=st.builds(
        Record,
        key=st.none() | st.binary(max_size=300),
        value=st.none() | st.binary(max_size=300),
        headers=record_headers,
    )
)
def test_estimate_record_bytes_is_an_upper_bound(record: Record) -> None:
    batch = build_batch([attrs.evolve(record, timestamp_ms=0)], compression="none")
    assert len(batch) - 61 <= estimate_record_bytes(record)


# --- header ----------------------------------------------------------------------


def test_read_batch_header_without_records() -> None:
    batch = build_batch(
        sample_records(6),
        base_offset=1234,
        compression="zstd",
        producer_id=99,
        producer_epoch=2,
        base_sequence=17,
        transactional=True,
    )
    full = decode_batch(batch)[0]
    truncated = batch[:61]
    header = read_batch_header(truncated)
    assert header == full
    assert header.record_count == 6
    assert header.size_bytes == len(batch)
    assert header.next_offset == 1240
    assert header.compression is Compression.ZSTD
    assert header.is_transactional
    # Also at a position inside a larger buffer, and the body is not looked at.
    padded = b"\xff" * 9 + truncated + b"\xff" * 3
    assert read_batch_header(padded, 9) == full
    with pytest.raises(ProtocolError):
        decode_batch(truncated)


@pytest.mark.parametrize("length", [0, 1, 60])
def test_read_batch_header_short_buffer(length: int) -> None:
    batch = build_batch(sample_records(2))
    with pytest.raises(ProtocolError, match="61"):
        read_batch_header(batch[:length])
    with pytest.raises(ProtocolError):
        read_batch_header(batch, len(batch) - length)


def test_read_batch_header_bad_positions() -> None:
    batch = build_batch(sample_records(2))
    with pytest.raises(ProtocolError):
        read_batch_header(batch, -1)
    with pytest.raises(ProtocolError):
        read_batch_header(batch, len(batch) + 100)


def test_header_flags() -> None:
    batch = bytearray(build_batch(sample_records(2), compression="snappy"))
    struct.pack_into(">h", batch, 21, int(Compression.SNAPPY) | ATTRIBUTE_CONTROL)
    header = read_batch_header(batch)
    assert header.is_control and not header.is_transactional and not header.is_log_append_time
    assert header.compression is Compression.SNAPPY
    assert isinstance(header, BatchHeader)


@pytest.mark.parametrize("code", [5, 6, 7])
def test_unknown_codec_in_attributes(code: int) -> None:
    batch = bytearray(build_batch(sample_records(2)))
    struct.pack_into(">h", batch, 21, code)
    fix_crc(batch)
    with pytest.raises(ProtocolError) as info:
        decode_batch(batch)
    assert str(code) in str(info.value)


@pytest.mark.parametrize("magic", [0, 1, 3, -1, 127])
def test_magic_other_than_2_is_rejected(magic: int) -> None:
    batch = bytearray(build_batch(sample_records(2)))
    batch[16] = magic & 0xFF
    for call in (
        lambda: read_batch_header(batch),
        lambda: decode_batch(batch),
        lambda: list(iterate_batches(batch)),
        lambda: list(iterate_batches(batch, allow_partial_tail=True)),
    ):
        with pytest.raises(ProtocolError) as info:
            call()
        message = str(info.value)
        assert f"magic is {magic}" in message
        assert "magic 2" in message


@pytest.mark.parametrize("batch_length", [-1, 0, 48, -(2**31)])
def test_batch_length_shorter_than_header(batch_length: int) -> None:
    batch = bytearray(build_batch(sample_records(2)))
    struct.pack_into(">i", batch, 8, batch_length)
    with pytest.raises(ProtocolError, match="length"):
        read_batch_header(batch)
    with pytest.raises(ProtocolError):
        list(iterate_batches(batch, allow_partial_tail=True))


def test_batch_length_of_exactly_the_header_is_valid_and_empty() -> None:
    batch = assemble(b"", record_count=0, last_offset_delta=0)
    assert read_batch_header(batch).batch_length == 49
    header, records = decode_batch(batch)
    assert records == []
    assert header.record_count == 0


@pytest.mark.parametrize(("offset", "field"), [(23, "lastOffsetDelta"), (57, "record count")])
def test_negative_counts_are_rejected(offset: int, field: str) -> None:
    batch = bytearray(build_batch(sample_records(2)))
    struct.pack_into(">i", batch, offset, -1)
    fix_crc_manually(batch)
    with pytest.raises(ProtocolError, match=field):
        read_batch_header(batch)


# --- base offset -----------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    new_base=st.integers(INT64_MIN, INT64_MAX - 10),
    codec=codecs,
    prefix=st.integers(0, 30),
)
def test_set_base_offset_touches_only_first_eight_bytes(
    new_base: int, codec: Compression, prefix: int
) -> None:
    batch = build_batch(sample_records(5), base_offset=3, compression=codec)
    buffer = bytearray(b"\xaa" * prefix + batch + b"\xbb" * 5)
    before = bytes(buffer)
    set_base_offset(buffer, prefix, new_base)
    assert buffer[:prefix] == before[:prefix]
    assert buffer[prefix : prefix + 8] == struct.pack(">q", new_base)
    assert buffer[prefix + 8 :] == before[prefix + 8 :]
    assert encode_base_offset(new_base) == struct.pack(">q", new_base)
    header = read_batch_header(buffer, prefix)
    assert header.base_offset == new_base
    check_batch_crc(buffer, prefix, header)
    _, records = decode_batch(buffer, prefix)
    assert [r.offset for r in records] == [new_base + i for i in range(5)]


def test_set_base_offset_on_memoryview() -> None:
    buffer = bytearray(build_batch(sample_records(2), base_offset=0))
    set_base_offset(memoryview(buffer), 0, 2**62)
    assert decode_batch(buffer)[1][1].offset == 2**62 + 1


@pytest.mark.parametrize("index", [*range(8), *range(12, 16)])
def test_base_offset_and_leader_epoch_are_outside_the_crc(index: int) -> None:
    batch = bytearray(build_batch(sample_records(3), base_offset=100))
    batch[index] ^= 0x01
    header, records = decode_batch(batch)
    assert len(records) == 3
    assert records[0].offset == header.base_offset


# --- CRC -------------------------------------------------------------------------

CRC_BATCHES = {
    codec: build_batch(sample_records(4), base_offset=77, compression=codec)
    for codec in Compression
}


@settings(max_examples=300, deadline=None)
@given(codec=codecs, raw_index=st.integers(0, 2**16), bit=st.integers(0, 7))
# The sign bits of lastOffsetDelta (byte 23) and recordCount (byte 57) are CRC-covered too.
@example(codec=Compression.NONE, raw_index=23 - 21, bit=7)
@example(codec=Compression.ZSTD, raw_index=57 - 21, bit=7)
def test_any_bit_flip_after_crc_field_is_corrupt(
    codec: Compression, raw_index: int, bit: int
) -> None:
    batch = bytearray(CRC_BATCHES[codec])
    index = 21 + raw_index % (len(batch) - 21)
    batch[index] ^= 1 << bit
    with pytest.raises(CorruptRecordError):
        decode_batch(batch)


def test_crc_flip_in_crc_field_itself() -> None:
    batch = bytearray(CRC_BATCHES[Compression.GZIP])
    batch[17] ^= 0x10
    with pytest.raises(CorruptRecordError, match="CRC32C"):
        decode_batch(batch)
    with pytest.raises(CorruptRecordError):
        check_batch_crc(batch, 0, read_batch_header(batch))


def test_check_batch_crc_on_short_buffer() -> None:
    batch = CRC_BATCHES[Compression.NONE]
    header = read_batch_header(batch)
    with pytest.raises(CorruptRecordError):
        check_batch_crc(batch[:-1], 0, header)
    check_batch_crc(batch, 0, header)


# --- iterate_batches -------------------------------------------------------------


def make_log() -> tuple[bytes, list[bytes]]:
    batches = []
    offset = 0
    for count, codec in zip((3, 1, 7, 2, 4), Compression, strict=True):
        batches.append(build_batch(sample_records(count), base_offset=offset, compression=codec))
        offset += count
    return b"".join(batches), batches


def test_iterate_batches_over_concatenated_batches() -> None:
    log, batches = make_log()
    found = list(iterate_batches(log))
    positions = [position for position, _ in found]
    expected_positions = [sum(len(b) for b in batches[:i]) for i in range(len(batches))]
    assert positions == expected_positions
    next_offset = 0
    for (position, header), batch, codec in zip(found, batches, Compression, strict=True):
        assert header == read_batch_header(batch)
        assert header.compression is codec
        assert header.base_offset == next_offset
        check_batch_crc(log, position, header)
        _, records = decode_batch(log, position)
        assert [r.offset for r in records] == list(range(next_offset, header.next_offset))
        next_offset = header.next_offset
    assert next_offset == 17
    assert list(iterate_batches(memoryview(log))) == found
    assert list(iterate_batches(b"")) == []


def test_iterate_batches_partial_tail() -> None:
    log, batches = make_log()
    whole = len(log) - len(batches[-1])
    for cut in range(whole + 1, len(log)):
        with pytest.raises(ProtocolError):
            list(iterate_batches(log[:cut]))
        found = list(iterate_batches(log[:cut], allow_partial_tail=True))
        assert len(found) == len(batches) - 1
        assert found[-1][0] + found[-1][1].size_bytes == whole


def test_iterate_batches_garbage_tail_is_not_a_partial_batch() -> None:
    log, _ = make_log()
    tail = bytearray(build_batch(sample_records(1)))
    tail[16] = 1  # an old-format message, not a truncated v2 batch
    with pytest.raises(ProtocolError, match="magic"):
        list(iterate_batches(log + bytes(tail), allow_partial_tail=True))


# --- LogAppendTime ---------------------------------------------------------------


@pytest.mark.parametrize("codec", list(Compression))
def test_log_append_time_uses_max_timestamp(codec: Compression) -> None:
    records = sample_records(5)
    batch = bytearray(build_batch(records, compression=codec))
    attributes = struct.unpack_from(">h", batch, 21)[0] | ATTRIBUTE_LOG_APPEND_TIME
    struct.pack_into(">h", batch, 21, attributes)
    struct.pack_into(">q", batch, 35, 1_800_000_000_000)  # broker sets maxTimestamp
    fix_crc(batch)
    header, decoded = decode_batch(batch)
    assert header.is_log_append_time
    assert header.compression is codec
    assert [r.timestamp_ms for r in decoded] == [1_800_000_000_000] * 5
    assert [r.value for r in decoded] == [r.value for r in records]


# --- snappy framings -------------------------------------------------------------


def test_snappy_xerial_multi_block() -> None:
    records = [Record(value=bytes([i]) * 20_000, timestamp_ms=i) for i in range(5)]
    batch = build_batch(records, compression="snappy")
    section = batch[61:]
    assert section.startswith(XERIAL_MAGIC)
    # first block is 32 KiB of input: more than one block follows the 16-byte header
    (first_block,) = struct.unpack_from(">i", section, 16)
    assert 16 + 4 + first_block < len(section)
    _, decoded = decode_batch(batch)
    assert [r.value for r in decoded] == [r.value for r in records]


def test_snappy_raw_framing_decodes() -> None:
    records = sample_records(6)
    plain = build_batch(records, base_offset=5, compression="none")
    raw = bytes(cramjam.snappy.compress_raw(plain[61:]))
    assert not raw.startswith(XERIAL_MAGIC)
    header = read_batch_header(plain)
    batch = assemble(
        raw,
        record_count=6,
        attributes=int(Compression.SNAPPY),
        base_offset=5,
        base_timestamp=header.base_timestamp_ms,
        max_timestamp=header.max_timestamp_ms,
    )
    decoded_header, decoded = decode_batch(batch)
    assert decoded_header.compression is Compression.SNAPPY
    assert decoded == decode_batch(plain)[1]


# --- hand-made malformed records with a valid CRC ---------------------------------


def one_record_batch(section: bytes, record_count: int = 1) -> bytearray:
    return assemble(section, record_count=record_count, last_offset_delta=0)


GOOD_RECORD = encode_record(
    timestamp_delta=0, offset_delta=0, key=b"k", value=b"v", headers=(("h", b"1"),)
)


def test_hand_made_record_decodes() -> None:
    _, records = decode_batch(one_record_batch(GOOD_RECORD))
    assert records == [
        Record(key=b"k", value=b"v", headers=(("h", b"1"),), timestamp_ms=1_000, offset=0)
    ]


def record_body(*parts: bytes) -> bytes:
    body = b"".join(parts)
    return varint(len(body)) + body


MALFORMED_RECORDS = {
    "header name not utf-8": record_body(
        b"\x00",
        varint(0),
        varint(0),
        nullable(None),
        nullable(None),
        varint(1),
        nullable(b"\xff\xfe"),
        nullable(None),
    ),
    "record length too long": varint(len(GOOD_RECORD) + 5) + GOOD_RECORD[1:],
    "record length too short": varint(len(GOOD_RECORD) - 3) + GOOD_RECORD[1:],
    "record length negative": varint(-5) + GOOD_RECORD[1:],
    "key runs past end": record_body(b"\x00", varint(0), varint(0), varint(100), b"kk"),
    "key length below -1": record_body(
        b"\x00", varint(0), varint(0), varint(-2), nullable(None), varint(0)
    ),
    "value runs past end": record_body(
        b"\x00", varint(0), varint(0), nullable(None), varint(2**40), b"v"
    ),
    "negative header count": record_body(
        b"\x00", varint(0), varint(0), nullable(None), nullable(None), varint(-1)
    ),
    "too many headers": record_body(
        b"\x00",
        varint(0),
        varint(0),
        nullable(None),
        nullable(None),
        varint(RECORD_HEADERS_MAX + 1),
    ),
    "header name null": record_body(
        b"\x00",
        varint(0),
        varint(0),
        nullable(None),
        nullable(None),
        varint(1),
        varint(-1),
        nullable(None),
    ),
    "varint longer than 10 bytes": record_body(b"\x00", b"\x80" * 10 + b"\x01"),
    "varint cut off": b"\x80",
    "empty record": varint(0),
    "trailing bytes": GOOD_RECORD + b"\x00",
    "missing record": b"",
}


@pytest.mark.parametrize("name", list(MALFORMED_RECORDS))
@pytest.mark.parametrize("codec", list(Compression))
def test_malformed_records_are_corrupt(name: str, codec: Compression) -> None:
    section = compress(codec, MALFORMED_RECORDS[name])
    batch = assemble(section, record_count=1, attributes=int(codec))
    with pytest.raises(CorruptRecordError):
        decode_batch(batch)


def test_more_records_claimed_than_present() -> None:
    with pytest.raises(CorruptRecordError):
        decode_batch(one_record_batch(GOOD_RECORD, record_count=2))


def test_record_count_over_limit_is_corrupt() -> None:
    batch = assemble(GOOD_RECORD, record_count=BATCH_RECORDS_MAX + 1, last_offset_delta=0)
    with pytest.raises(CorruptRecordError, match="limit"):
        decode_batch(batch)


def test_ten_byte_varint_is_accepted() -> None:
    """A timestamp delta of -2**63 needs all 10 varint bytes; it must decode."""
    delta = varint(INT64_MIN)
    assert len(delta) == 10
    section = record_body(b"\x00", delta, varint(0), nullable(None), nullable(b"v"), varint(0))
    batch = assemble(section, record_count=1, base_timestamp=INT64_MAX, max_timestamp=INT64_MAX)
    _, records = decode_batch(batch)
    assert records[0].timestamp_ms == -1


@pytest.mark.parametrize("field", ["timestamp_delta", "offset_delta"])
def test_varints_beyond_64_bits_do_not_escape_int64(field: str) -> None:
    """A 10-byte varint can carry 70 bits; decoded offsets/timestamps must stay int64.

    Kafka reads offsetDelta as an int32 varint (at most 5 bytes) and timestamp
    deltas as int64; here the 10th byte sets bits 64..69, which only a decoder
    that does not bound the varint keeps.
    """
    huge = leb128(2**65)  # zig-zag of 2**64: 10 bytes, fits no int64
    assert len(huge) == 10
    deltas = {"timestamp_delta": varint(0), "offset_delta": varint(0)}
    deltas[field] = huge
    section = record_body(
        b"\x00",
        deltas["timestamp_delta"],
        deltas["offset_delta"],
        nullable(None),
        nullable(b"v"),
        varint(0),
    )
    batch = assemble(section, record_count=1, last_offset_delta=0)
    try:
        _, records = decode_batch(batch)
    except CorruptRecordError:
        return
    record = records[0]
    assert record.offset is not None and record.timestamp_ms is not None
    assert INT64_MIN <= record.offset <= INT64_MAX, f"offset {record.offset} is not an int64"
    assert INT64_MIN <= record.timestamp_ms <= INT64_MAX, (
        f"timestamp {record.timestamp_ms} is not an int64"
    )


# --- the consumer's parser (parse_batch) -----------------------------------------------------


class _Consumed(tuple):  # type: ignore[type-arg]
    __slots__ = ()


def test_the_c_record_parser_is_built_where_the_io_uring_extension_is() -> None:
    """Both come from one setup.py build: where one is built, so must the other be."""
    from trioring.protocol import records as records_module  # noqa: PLC0415
    from trioring.uring._uring import uring_unavailable_reason  # noqa: PLC0415

    if uring_unavailable_reason() is None:
        assert records_module._records_ffi is not None


@settings(max_examples=150, deadline=None)
@given(
    records=records_strategy,
    codec=codecs,
    base_offset=st.integers(0, 2**40),
    skip=st.integers(0, 60),
    python=st.booleans(),
    take=st.integers(1, 20),
)
def test_parse_batch_builds_what_decode_batch_decodes(
    records: list[Record], codec: Compression, base_offset: int, skip: int, python: bool, take: int
) -> None:
    from trioring.protocol import records as records_module  # noqa: PLC0415

    batch = build_batch(records, base_offset=base_offset, compression=codec, now_ms=1_000)
    _, decoded = decode_batch(batch)
    saved = records_module._records_ffi
    if python:
        records_module._records_ffi = None
    try:
        _, parsed = records_module.parse_batch(
            batch, 0, _Consumed, topic="t", partition=3, from_offset=base_offset + skip
        )
    finally:
        records_module._records_ffi = saved
    wanted = [
        ("t", 3, r.offset, r.key, r.value, tuple(r.headers), r.timestamp_ms)
        for r in decoded
        if r.offset is not None and r.offset >= base_offset + skip
    ]
    assert len(parsed) == len(wanted)
    built: list[tuple[object, ...]] = []
    while parsed:
        chunk = parsed.take(take)
        assert 0 < len(chunk) <= take
        built += chunk
    assert built == wanted
    assert all(type(record) is _Consumed for record in built)

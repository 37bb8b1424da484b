"""Cross-check the RecordBatch v2 codec against kafka-python, an independent implementation."""

from __future__ import annotations

import importlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("kafka")

from kafka.record.default_records import (
    DefaultRecordBatch,
    DefaultRecordBatchBuilder,
)

from trioring.protocol.compression import Compression
from trioring.protocol.records import (
    Record,
    build_batch,
    check_batch_crc,
    decode_batch,
    iterate_batches,
    read_batch_header,
    set_base_offset,
)

#: The module kafka-python needs for each codec (gzip uses the standard library).
CODEC_MODULES = {
    Compression.NONE: None,
    Compression.GZIP: None,
    Compression.SNAPPY: "snappy",
    Compression.LZ4: "lz4.frame",
    Compression.ZSTD: "zstandard",
}


def require_codec(codec: Compression) -> None:
    module = CODEC_MODULES[codec]
    if module is not None:
        pytest.importorskip(module)


def codec_available(codec: Compression) -> bool:
    module = CODEC_MODULES[codec]
    if module is None:
        return True
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


AVAILABLE_CODECS = [codec for codec in Compression if codec_available(codec)]

header_names = st.text(max_size=12) | st.sampled_from(["ключ", "日本語", "😀"])
records_strategy = st.lists(
    st.builds(
        Record,
        key=st.none() | st.binary(max_size=40),
        value=st.none() | st.binary(max_size=200) | st.binary(max_size=8).map(lambda b: b * 50),
        headers=st.lists(
            st.tuples(header_names, st.none() | st.binary(max_size=16)), max_size=4
        ).map(tuple),
        timestamp_ms=st.integers(0, 2**42),
    ),
    min_size=1,
    max_size=50,
)


def kafka_python_build(
    records: list[Record],
    codec: Compression,
    *,
    producer: tuple[int, int, int] | None = None,
) -> bytearray:
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=int(codec),
        is_transactional=False,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 30,
    )
    if producer is not None:
        builder.set_producer_state(*producer, is_transactional=True)
    for index, record in enumerate(records):
        metadata = builder.append(
            index,
            timestamp=record.timestamp_ms,
            key=record.key,
            value=record.value,
            headers=list(record.headers),
        )
        assert metadata is not None
    return builder.build()


def compressible_records(count: int = 8) -> list[Record]:
    # Timestamps out of order: kafka-python uses the first one as base (negative deltas).
    return [
        Record(
            key=None if i == 2 else f"key-{i}".encode(),
            value=None if i == 3 else b"payload " * (20 + i),
            headers=(("trace", b"abc" * i), ("Ωmega", None)) if i % 2 else (),
            timestamp_ms=1_700_000_000_000 + (5, -3, 9, 0, -7, 2, 11, -1, 4, 6)[i % 10],
        )
        for i in range(count)
    ]


# --- trioring writes, kafka-python reads -----------------------------------------


@settings(max_examples=100, deadline=None)
@given(
    records=records_strategy,
    codec=st.sampled_from(AVAILABLE_CODECS),
    base_offset=st.integers(0, 2**62),
    producer=st.tuples(st.integers(-1, 2**62), st.integers(-1, 2**15 - 1), st.integers(-1, 2**30)),
    transactional=st.booleans(),
)
def test_kafka_python_reads_trioring_batches(
    records: list[Record],
    codec: Compression,
    base_offset: int,
    producer: tuple[int, int, int],
    transactional: bool,
) -> None:
    producer_id, producer_epoch, base_sequence = producer
    batch = build_batch(
        records,
        base_offset=base_offset,
        compression=codec,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=base_sequence,
        partition_leader_epoch=9,
        transactional=transactional,
    )
    theirs = DefaultRecordBatch(batch)
    assert theirs.validate_crc()
    assert theirs.magic == 2
    assert theirs.size_in_bytes == len(batch)
    assert theirs.base_offset == base_offset
    assert theirs.leader_epoch == 9
    assert theirs.compression_type == int(codec)
    assert theirs.is_transactional is transactional
    assert not theirs.is_control_batch
    assert theirs.timestamp_type == 0
    assert theirs.records_count == len(records)
    assert theirs.last_offset_delta == len(records) - 1
    assert theirs.first_timestamp == min(r.timestamp_ms for r in records)
    assert theirs.max_timestamp == max(r.timestamp_ms for r in records)
    assert theirs.producer_id == producer_id
    assert theirs.producer_epoch == producer_epoch
    assert theirs.base_sequence == base_sequence
    decoded = list(theirs)
    assert len(decoded) == len(records)
    for index, (ours, their) in enumerate(zip(records, decoded, strict=True)):
        assert their.offset == base_offset + index
        assert their.timestamp == ours.timestamp_ms
        assert their.key == ours.key
        assert their.value == ours.value
        assert [(name, value) for name, value in their.headers] == list(ours.headers)


# --- kafka-python writes, trioring reads -----------------------------------------


@settings(max_examples=100, deadline=None)
@given(
    records=records_strategy,
    codec=st.sampled_from(AVAILABLE_CODECS),
    base_offset=st.integers(0, 2**62),
)
def test_trioring_reads_kafka_python_batches(
    records: list[Record], codec: Compression, base_offset: int
) -> None:
    batch = kafka_python_build(records, codec)
    set_base_offset(batch, 0, base_offset)
    header, decoded = decode_batch(batch)
    # kafka-python falls back to no compression when it does not shrink the data.
    assert header.compression in (codec, Compression.NONE)
    assert header.base_offset == base_offset
    assert header.record_count == len(records)
    assert header.last_offset_delta == len(records) - 1
    assert header.base_timestamp_ms == records[0].timestamp_ms  # kafka-python's base
    assert header.max_timestamp_ms == max(r.timestamp_ms for r in records)
    assert header.size_bytes == len(batch)
    assert decoded == [
        Record(
            key=r.key,
            value=r.value,
            headers=r.headers,
            timestamp_ms=r.timestamp_ms,
            offset=base_offset + index,
        )
        for index, r in enumerate(records)
    ]


@pytest.mark.parametrize("codec", list(Compression), ids=lambda c: c.name.lower())
def test_kafka_python_compressed_batches(codec: Compression) -> None:
    require_codec(codec)
    records = compressible_records()
    batch = kafka_python_build(records, codec, producer=(123456789, 4, 1000))
    header, decoded = decode_batch(batch)
    assert header.compression is codec  # the data compresses, so the codec is really used
    assert header.is_transactional
    assert (header.producer_id, header.producer_epoch, header.base_sequence) == (
        123456789,
        4,
        1000,
    )
    assert header.base_timestamp_ms == records[0].timestamp_ms
    assert any(r.timestamp_ms < header.base_timestamp_ms for r in records)  # negative deltas
    assert [r.timestamp_ms for r in decoded] == [r.timestamp_ms for r in records]
    assert [r.key for r in decoded] == [r.key for r in records]
    assert [r.value for r in decoded] == [r.value for r in records]
    assert [r.headers for r in decoded] == [r.headers for r in records]
    assert [r.offset for r in decoded] == list(range(len(records)))


def test_mixed_producers_in_one_log() -> None:
    """A log holding batches from both encoders iterates and decodes in order."""
    codecs = AVAILABLE_CODECS
    log = bytearray()
    next_offset = 0
    expected_values: list[bytes | None] = []
    for index, codec in enumerate(codecs):
        records = compressible_records(3 + index)
        if index % 2:
            batch = kafka_python_build(records, codec)
        else:
            batch = bytearray(build_batch(records, compression=codec))
        set_base_offset(batch, 0, next_offset)
        log += batch
        next_offset += len(records)
        expected_values += [r.value for r in records]
    values: list[bytes | None] = []
    offsets: list[int | None] = []
    for position, header in iterate_batches(log):
        check_batch_crc(log, position, header)
        assert read_batch_header(log, position) == header
        _, records = decode_batch(log, position)
        values += [r.value for r in records]
        offsets += [r.offset for r in records]
    assert values == expected_values
    assert offsets == list(range(next_offset))


def test_kafka_python_rejects_tampered_trioring_batch() -> None:
    """Sanity check of the oracle: it notices a corrupted trioring batch too."""
    batch = bytearray(build_batch(compressible_records(), compression="gzip"))
    batch[-3] ^= 0xFF
    assert not DefaultRecordBatch(batch).validate_crc()

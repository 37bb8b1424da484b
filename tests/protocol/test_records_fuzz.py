"""Decode fuzzing: malformed bytes may only ever raise ProtocolError (or a subclass)."""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trioring.errors import ProtocolError
from trioring.protocol import records as records_module
from trioring.protocol.compression import Compression, compress
from trioring.protocol.records import (
    Record,
    build_batch,
    compute_batch_crc,
    decode_batch,
    iterate_batches,
    parse_batch,
    read_batch_header,
)

HEADER = struct.Struct(">qiibIhiqqqhii")
FUZZ = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])

RECORDS = [
    Record(
        key=None if i == 1 else f"k{i}".encode(),
        value=None if i == 2 else bytes(range(i, i + 40)) + b"abc" * i,
        headers=(("h", b"x"), ("é", None)) if i % 2 else (),
        timestamp_ms=1_000 + (3, -2, 7, 0, 5)[i],
    )
    for i in range(5)
]
BATCHES = {codec: build_batch(RECORDS, base_offset=100, compression=codec) for codec in Compression}
#: The uncompressed records section every batch above carries.
PLAIN_SECTION = BATCHES[Compression.NONE][61:]


class Consumed(tuple):  # type: ignore[type-arg]
    """A tuple class, as the client's ConsumerRecord is."""

    __slots__ = ()


@contextlib.contextmanager
def _c_parser() -> Iterator[None]:
    yield


@contextlib.contextmanager
def _python_parser() -> Iterator[None]:
    saved = records_module._records_ffi
    records_module._records_ffi = None
    try:
        yield
    finally:
        records_module._records_ffi = saved


#: The consumer's record parsers: Python, and C when it is built (a test in
#: test_records.py requires it where the build can work).
PARSERS = (_python_parser,) + ((_c_parser,) if records_module._records_ffi is not None else ())


def exercise(buffer: bytes | bytearray) -> None:
    """Run every decoder entry point over ``buffer``; allow only ProtocolError."""
    try:
        header = read_batch_header(buffer)
    except ProtocolError:
        header = None
    for allow in (False, True):
        try:
            for position, found in iterate_batches(buffer, allow_partial_tail=allow):
                assert position + found.size_bytes <= len(buffer)
        except ProtocolError:
            pass
    try:
        decoded_header, records = decode_batch(buffer)
    except ProtocolError:
        # The consumer's parsers refuse what decode_batch refuses.
        for parser in PARSERS:
            with pytest.raises(ProtocolError), parser():
                parse_batch(buffer, 0, Consumed, topic="t", partition=0, from_offset=0)
        return
    # ... and accept what it accepts, record for record.
    for parser in PARSERS:
        with parser():
            _, parsed = parse_batch(buffer, 0, Consumed, topic="t", partition=0, from_offset=0)
            assert parsed.take(len(records) + 1) == [
                ("t", 0, r.offset, r.key, r.value, tuple(r.headers), r.timestamp_ms)
                for r in records
            ]
    assert header == decoded_header
    assert len(records) == decoded_header.record_count
    assert decoded_header.size_bytes <= len(buffer)


def with_crc(buffer: bytearray) -> bytearray:
    """Fix batchLength to the buffer and recompute the CRC so mutations get past it."""
    if len(buffer) >= 21:
        struct.pack_into(">i", buffer, 8, len(buffer) - 12)
        struct.pack_into(">I", buffer, 17, compute_batch_crc(buffer, 0, len(buffer)))
    return buffer


# --- (a) random bytes ------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes(data: bytes) -> None:
    exercise(data)
    exercise(with_crc(bytearray(data)))


@st.composite
def header_shaped(draw: st.DrawFn) -> bytearray:
    """A plausible v2 header (magic 2, sane-ish lengths) over random records bytes."""
    tail = draw(st.binary(max_size=200))
    small = st.integers(-3, 60)
    any_int32 = st.integers(-(2**31), 2**31 - 1)
    buffer = bytearray(61) + tail
    HEADER.pack_into(
        buffer,
        0,
        draw(st.integers(-(2**63), 2**63 - 1)),
        draw(st.sampled_from([len(buffer) - 12, 49]) | st.integers(-(2**31), 2**31 - 1)),
        draw(any_int32),
        2,
        0,
        draw(st.integers(0, 0x3F) | st.integers(-(2**15), 2**15 - 1)),
        draw(small | any_int32),
        draw(st.integers(-(2**63), 2**63 - 1)),
        draw(st.integers(-(2**63), 2**63 - 1)),
        -1,
        -1,
        -1,
        draw(small | any_int32),
    )
    if draw(st.booleans()):
        size = HEADER.unpack_from(buffer)[1] + 12
        if 21 <= size <= len(buffer):
            struct.pack_into(">I", buffer, 17, compute_batch_crc(buffer, 0, size))
    return buffer


@FUZZ
@given(header_shaped(), st.binary(max_size=80))
def test_random_header_shaped_bytes(buffer: bytearray, trailer: bytes) -> None:
    exercise(buffer)
    exercise(buffer + trailer)


# --- (b) truncations -------------------------------------------------------------


@pytest.mark.parametrize("codec", list(Compression), ids=lambda c: c.name.lower())
def test_every_truncation(codec: Compression) -> None:
    batch = BATCHES[codec]
    full_header = read_batch_header(batch)
    for cut in range(len(batch)):
        prefix = batch[:cut]
        if cut >= 61:
            assert read_batch_header(prefix) == full_header
        else:
            with pytest.raises(ProtocolError):
                read_batch_header(prefix)
        with pytest.raises(ProtocolError):
            decode_batch(prefix)
        if cut:
            with pytest.raises(ProtocolError):
                list(iterate_batches(prefix))
        assert list(iterate_batches(prefix, allow_partial_tail=True)) == []
        # The same prefix as a self-consistent batch (length and CRC fixed up), so the
        # truncated compressed stream / records section reaches the decoders.
        if cut >= 61:
            consistent = with_crc(bytearray(prefix))
            try:
                _, records = decode_batch(consistent)
            except ProtocolError:
                continue
            # Only a decoder that recovered every record may succeed.
            assert [r.value for r in records] == [r.value for r in RECORDS], cut


# --- (c) mutations behind a recomputed CRC ---------------------------------------

mutation = st.one_of(
    st.tuples(st.just("set"), st.integers(0, 2**16), st.integers(0, 255)),
    st.tuples(st.just("flip"), st.integers(0, 2**16), st.integers(0, 7)),
    st.tuples(st.just("insert"), st.integers(0, 2**16), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("delete"), st.integers(0, 2**16), st.integers(1, 16)),
    st.tuples(
        st.just("varint"),
        st.integers(0, 2**16),
        st.sampled_from(
            [b"\x01", b"\x7f", b"\xff\xff\xff\xff\x0f", b"\x80" * 9 + b"\x01", b"\xff" * 11]
        ),
    ),
)


def mutate(data: bytes, operations: list[tuple[str, int, object]]) -> bytes:
    buffer = bytearray(data)
    for kind, raw_position, argument in operations:
        position = raw_position % (len(buffer) + 1)
        if kind == "set" and buffer:
            assert isinstance(argument, int)
            buffer[position % len(buffer)] = argument
        elif kind == "flip" and buffer:
            assert isinstance(argument, int)
            buffer[position % len(buffer)] ^= 1 << argument
        elif kind in ("insert", "varint"):
            assert isinstance(argument, bytes)
            buffer[position:position] = argument
        elif kind == "delete":
            assert isinstance(argument, int)
            del buffer[position : position + argument]
    return bytes(buffer)


@FUZZ
@given(
    codec=st.sampled_from(list(Compression)),
    operations=st.lists(mutation, min_size=1, max_size=4),
    recompress=st.booleans(),
)
def test_mutated_records_behind_valid_crc(
    codec: Compression, operations: list[tuple[str, int, object]], recompress: bool
) -> None:
    """Mutate the records (compressed bytes, or plain records then recompressed)."""
    batch = BATCHES[codec]
    if recompress:
        section = compress(codec, mutate(PLAIN_SECTION, operations))
    else:
        section = mutate(batch[61:], operations)
    exercise(with_crc(bytearray(batch[:61]) + section))


@FUZZ
@given(
    codec=st.sampled_from(list(Compression)),
    field=st.sampled_from([(21, ">h"), (23, ">i"), (27, ">q"), (35, ">q"), (57, ">i")]),
    value=st.integers(-8, 8) | st.integers(-(2**31), 2**31 - 1),
)
def test_mutated_header_fields_behind_valid_crc(
    codec: Compression, field: tuple[int, str], value: int
) -> None:
    """Attributes, lastOffsetDelta, timestamps and recordCount set to odd values."""
    offset, fmt = field
    buffer = bytearray(BATCHES[codec])
    if fmt == ">h":
        value = max(-(2**15), min(2**15 - 1, value))
    struct.pack_into(fmt, buffer, offset, value)
    exercise(with_crc(buffer))


@pytest.mark.parametrize("codec", list(Compression), ids=lambda c: c.name.lower())
def test_every_single_byte_of_plain_records_behind_valid_crc(codec: Compression) -> None:
    """Systematically: each byte of the uncompressed records set to a few values."""
    header = bytearray(BATCHES[codec][:61])
    for index in range(len(PLAIN_SECTION)):
        for value in (0x00, 0x01, 0x7F, 0x80, 0xFF):
            section = bytearray(PLAIN_SECTION)
            section[index] = value
            exercise(with_crc(header + compress(codec, bytes(section))))

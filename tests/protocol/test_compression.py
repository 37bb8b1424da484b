"""Tests of the batch compression codecs in trioring.protocol.compression."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import cramjam
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trioring.errors import CorruptRecordError, ProtocolError, UnsupportedCompressionError
from trioring.protocol import compression
from trioring.protocol.compression import Compression, compress, decompress

XERIAL_HEADER = b"\x82SNAPPY\x00" + struct.pack(">ii", 1, 1)
COMPRESSED = [codec for codec in Compression if codec is not Compression.NONE]


# --- Compression.parse -----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, Compression.NONE),
        ("none", Compression.NONE),
        ("gzip", Compression.GZIP),
        ("GZIP", Compression.GZIP),
        ("Snappy", Compression.SNAPPY),
        ("lz4", Compression.LZ4),
        ("zstd", Compression.ZSTD),
        ("ZsTd", Compression.ZSTD),
        (0, Compression.NONE),
        (1, Compression.GZIP),
        (2, Compression.SNAPPY),
        (3, Compression.LZ4),
        (4, Compression.ZSTD),
        (Compression.LZ4, Compression.LZ4),
    ],
)
def test_parse_names_and_codes(
    value: Compression | str | int | None, expected: Compression
) -> None:
    parsed = Compression.parse(value)
    assert parsed is expected
    assert type(parsed) is Compression


def test_codes_are_kafkas() -> None:
    assert {c.name: int(c) for c in Compression} == {
        "NONE": 0,
        "GZIP": 1,
        "SNAPPY": 2,
        "LZ4": 3,
        "ZSTD": 4,
    }


@pytest.mark.parametrize("value", ["brotli", "", " gzip", "gzip ", "snappy-raw", "xz", "0"])
def test_parse_unknown_names(value: str) -> None:
    with pytest.raises(UnsupportedCompressionError) as info:
        Compression.parse(value)
    message = str(info.value)
    assert repr(value) in message
    for name in ("none", "gzip", "snappy", "lz4", "zstd"):
        assert name in message  # the error lists the valid names
    assert isinstance(info.value, ProtocolError)
    assert info.value.kafka_error_code == 76


@pytest.mark.parametrize("value", [5, 6, 7, -1, 8, 2**40])
def test_parse_unknown_codes(value: int) -> None:
    with pytest.raises(UnsupportedCompressionError, match=str(value)):
        Compression.parse(value)


# --- round trips -----------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(codec=st.sampled_from(list(Compression)), data=st.binary(max_size=5000))
def test_round_trip(codec: Compression, data: bytes) -> None:
    packed = compress(codec, data)
    assert isinstance(packed, bytes)
    assert decompress(codec, packed) == data
    assert decompress(codec, memoryview(packed)) == data


@pytest.mark.parametrize("codec", list(Compression), ids=lambda c: c.name.lower())
def test_compressible_data_shrinks(codec: Compression) -> None:
    data = b"all work and no play " * 1000
    packed = compress(codec, data)
    if codec is Compression.NONE:
        assert packed == data
    else:
        assert len(packed) < len(data) // 4
    assert decompress(codec, packed) == data


def test_each_codec_uses_its_kafka_framing() -> None:
    data = b"framing " * 100
    assert compress(Compression.GZIP, data)[:2] == b"\x1f\x8b"
    assert compress(Compression.LZ4, data)[:4] == b"\x04\x22\x4d\x18"  # LZ4 frame magic
    assert compress(Compression.ZSTD, data)[:4] == b"\x28\xb5\x2f\xfd"  # zstd frame magic
    assert compress(Compression.SNAPPY, data)[:16] == XERIAL_HEADER


def test_snappy_xerial_blocks_are_32_kib() -> None:
    data = os.urandom(100_000)
    packed = compress(Compression.SNAPPY, data)
    position = 16
    sizes = []
    while position < len(packed):
        (length,) = struct.unpack_from(">i", packed, position)
        block = packed[position + 4 : position + 4 + length]
        sizes.append(len(cramjam.snappy.decompress_raw(block)))
        position += 4 + length
    assert position == len(packed)
    assert sizes == [32768, 32768, 32768, 100_000 - 3 * 32768]
    assert decompress(Compression.SNAPPY, packed) == data


def test_snappy_raw_and_xerial_both_decode() -> None:
    data = b"raw or framed? " * 50
    assert decompress(Compression.SNAPPY, bytes(cramjam.snappy.compress_raw(data))) == data
    framed = XERIAL_HEADER + b"".join(
        struct.pack(">i", len(block)) + block
        for block in (bytes(cramjam.snappy.compress_raw(part)) for part in (data[:100], data[100:]))
    )
    assert decompress(Compression.SNAPPY, framed) == data
    assert decompress(Compression.SNAPPY, XERIAL_HEADER) == b""


# --- garbage ---------------------------------------------------------------------

GARBAGE = {
    Compression.GZIP: [b"", b"\x00", b"not gzip at all", b"\x1f\x8b\x08" + b"\xff" * 20],
    Compression.SNAPPY: [
        b"",
        b"\xff\xff\xff\xff\xff\xff",  # raw: length varint too long
        b"\x0a\x00",  # raw: claims 10 bytes, has none
        XERIAL_HEADER[:9],  # xerial magic, header cut short
        XERIAL_HEADER + b"\x00\x00",  # block length cut short
        XERIAL_HEADER + struct.pack(">i", 100) + b"abc",  # block overruns
        XERIAL_HEADER + struct.pack(">i", -1) + b"abc",  # negative block length
        XERIAL_HEADER + struct.pack(">i", 3) + b"\xff\xff\xff",  # block is not snappy
    ],
    Compression.LZ4: [b"", b"\x00", b"not lz4 at all", b"\x04\x22\x4d\x18" + b"\xff" * 20],
    Compression.ZSTD: [b"", b"\x00", b"not zstd at all", b"\x28\xb5\x2f\xfd" + b"\xff" * 20],
}


@pytest.mark.parametrize(
    ("codec", "garbage"),
    [(codec, data) for codec, items in GARBAGE.items() for data in items],
    ids=lambda value: value.name.lower() if isinstance(value, Compression) else None,
)
def test_decompress_garbage_is_corrupt(codec: Compression, garbage: bytes) -> None:
    with pytest.raises(CorruptRecordError) as info:
        decompress(codec, garbage)
    assert codec.name.lower() in str(info.value).lower() or "xerial" in str(info.value)
    assert info.value.kafka_error_code == 2


@pytest.mark.parametrize("codec", COMPRESSED, ids=lambda c: c.name.lower())
def test_decompress_truncated_stream_is_corrupt(codec: Compression) -> None:
    packed = compress(codec, os.urandom(2000))
    for cut in range(len(packed)):
        try:
            result = decompress(codec, packed[:cut])
        except CorruptRecordError:
            continue
        # Raw snappy of a prefix can be valid by accident; it cannot be the whole data.
        assert len(result) < 2000


@settings(max_examples=300, deadline=None)
@given(codec=st.sampled_from(COMPRESSED), data=st.binary(max_size=200))
def test_decompress_random_bytes_only_raises_corrupt(codec: Compression, data: bytes) -> None:
    for candidate in (data, XERIAL_HEADER + data):
        try:
            result = decompress(codec, candidate)
        except CorruptRecordError:
            continue
        assert isinstance(result, bytes)


def test_decompress_none_is_identity() -> None:
    assert decompress(Compression.NONE, b"") == b""
    assert decompress(Compression.NONE, memoryview(b"\xff\x00")) == b"\xff\x00"


# --- decompressed size limit -----------------------------------------------------


@pytest.mark.parametrize("codec", list(Compression), ids=lambda c: c.name.lower())
def test_decompressed_size_limit(codec: Compression, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compression, "BATCH_DECOMPRESSED_BYTES_MAX", 40_000)
    at_limit = b"z" * 40_000
    assert decompress(codec, compress(codec, at_limit)) == at_limit
    with pytest.raises(CorruptRecordError, match="limit"):
        decompress(codec, compress(codec, at_limit + b"z"))


def zstd_rle_bomb(total_bytes: int) -> bytes:
    """A zstd frame of RLE blocks: 4 bytes of input per 128 KiB of output."""
    block = 128 * 1024
    frame = bytearray(struct.pack("<I", 0xFD2FB528))
    frame += bytes([0x00, 0x38])  # no content size, 128 KiB window
    count = total_bytes // block
    for index in range(count):
        last = 1 if index == count - 1 else 0
        frame += (last | (1 << 1) | (block << 3)).to_bytes(3, "little") + b"\x00"
    return bytes(frame)


def test_zstd_bomb_helper_is_valid() -> None:
    assert bytes(cramjam.zstd.decompress(zstd_rle_bomb(1 << 20))) == b"\x00" * (1 << 20)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs RLIMIT_AS semantics")
def test_decompression_bomb_is_refused_without_materialising_it() -> None:
    """A 128 KiB zstd batch that inflates to 4 GiB must be refused, not decompressed.

    BATCH_DECOMPRESSED_BYTES_MAX (256 MiB) is documented as the zip-bomb guard, so a
    process with 1 GiB of address space must get CorruptRecordError back.
    """
    script = textwrap.dedent(
        """
        import resource, struct, sys
        from trioring.errors import CorruptRecordError
        from trioring.protocol.compression import Compression, decompress
        block = 128 * 1024
        frame = bytearray(struct.pack("<I", 0xFD2FB528)) + bytes([0x00, 0x38])
        count = (4 << 30) // block
        for index in range(count):
            last = 1 if index == count - 1 else 0
            frame += (last | 2 | (block << 3)).to_bytes(3, "little") + b"\\x00"
        assert len(frame) < 1 << 20  # fits a default Kafka batch
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
        try:
            decompress(Compression.ZSTD, bytes(frame))
        except CorruptRecordError as error:
            print("refused:", error)
        else:
            print("decompressed")
        """
    )
    root = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root), *filter(None, [os.environ.get("PYTHONPATH")])]),
    }
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, (
        f"decompressing a 4 GiB zstd bomb killed the process (rc {result.returncode}): "
        f"{result.stderr[-500:]}"
    )
    assert result.stdout.startswith("refused:"), result.stdout

"""Kafka batch compression codecs (attributes bits 0-2).

Kafka's framing per codec:
- gzip: a gzip stream (stdlib zlib).
- snappy: the Java client writes xerial framing (magic header, then blocks of
  [int32 length][raw snappy]); librdkafka may write raw snappy. We decode
  both and write xerial, which every client reads (cramjam).
- lz4: the standard LZ4 frame format, KIP-57 (python-lz4).
- zstd: zstd frames (zstandard).

Decompression is bounded: it stops with CorruptRecordError once the output
passes ``BATCH_DECOMPRESSED_BYTES_MAX``, without materialising more, so a
small hostile batch cannot exhaust memory. Each library was chosen because it
can decompress with an output bound.
"""

from __future__ import annotations

import enum
import io
import struct
import zlib

import cramjam
import lz4.frame
import zstandard

from trioring._constants import BATCH_DECOMPRESSED_BYTES_MAX
from trioring.errors import CorruptRecordError, UnsupportedCompressionError

_READ_CHUNK_BYTES = 1 << 20


class Compression(enum.IntEnum):
    NONE = 0
    GZIP = 1
    SNAPPY = 2
    LZ4 = 3
    ZSTD = 4

    @classmethod
    def parse(cls, value: Compression | str | int | None) -> Compression:
        """Accept the names Kafka clients use (``"zstd"``) as well as codes."""
        if value is None:
            return cls.NONE
        if isinstance(value, Compression):
            return value
        if isinstance(value, str):
            try:
                return cls[value.upper()]
            except KeyError:
                names = ", ".join(c.name.lower() for c in cls)
                raise UnsupportedCompressionError(
                    f"unknown compression {value!r}; use one of {names}"
                ) from None
        try:
            return cls(value)
        except ValueError:
            raise UnsupportedCompressionError(
                f"unknown compression code {value}; Kafka defines 0-4"
            ) from None


_XERIAL_MAGIC = b"\x82SNAPPY\x00"
_XERIAL_HEADER = _XERIAL_MAGIC + struct.pack(">ii", 1, 1)
_XERIAL_BLOCK_BYTES = 32 * 1024


def compress(codec: Compression, data: bytes) -> bytes:
    if codec is Compression.NONE:
        return data
    if codec is Compression.GZIP:
        compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
        return compressor.compress(data) + compressor.flush()
    if codec is Compression.SNAPPY:
        parts = [_XERIAL_HEADER]
        for start in range(0, len(data), _XERIAL_BLOCK_BYTES):
            block = bytes(cramjam.snappy.compress_raw(data[start : start + _XERIAL_BLOCK_BYTES]))
            parts.append(struct.pack(">i", len(block)))
            parts.append(block)
        return b"".join(parts)
    if codec is Compression.LZ4:
        return bytes(lz4.frame.compress(data))
    if codec is Compression.ZSTD:
        return bytes(zstandard.ZstdCompressor().compress(data))
    raise AssertionError(f"unhandled codec {codec!r}")


def decompress(
    codec: Compression, data: bytes | memoryview, *, limit_bytes: int | None = None
) -> bytes:
    """Decompress one batch's records section; any failure is CorruptRecordError.

    ``limit_bytes`` defaults to ``BATCH_DECOMPRESSED_BYTES_MAX``.
    """
    if limit_bytes is None:
        limit_bytes = BATCH_DECOMPRESSED_BYTES_MAX
    raw = bytes(data)
    try:
        if codec is Compression.NONE:
            if len(raw) > limit_bytes:
                raise _too_big("uncompressed", limit_bytes)
            return raw
        if codec is Compression.GZIP:
            return _gzip_decompress(raw, limit_bytes)
        if codec is Compression.SNAPPY:
            return _snappy_decompress(raw, limit_bytes)
        if codec is Compression.LZ4:
            return _lz4_decompress(raw, limit_bytes)
        if codec is Compression.ZSTD:
            return _zstd_decompress(raw, limit_bytes)
    except (
        cramjam.DecompressionError,
        zlib.error,
        zstandard.ZstdError,
        RuntimeError,
        ValueError,
        OSError,
    ) as error:
        raise CorruptRecordError(
            f"{codec.name.lower()} data does not decompress: {error}"
        ) from None
    raise AssertionError(f"unhandled codec {codec!r}")


def _too_big(codec: str, limit_bytes: int) -> CorruptRecordError:
    return CorruptRecordError(
        f"{codec} batch decompresses past the {limit_bytes}-byte limit; refusing it"
    )


def _gzip_decompress(raw: bytes, limit_bytes: int) -> bytes:
    decompressor = zlib.decompressobj(47)  # 32 + 15: gzip or zlib header
    result = decompressor.decompress(raw, limit_bytes + 1)
    if len(result) > limit_bytes or decompressor.unconsumed_tail:
        raise _too_big("gzip", limit_bytes)
    if not decompressor.eof:
        raise CorruptRecordError("gzip data is truncated")
    return result


def _lz4_decompress(raw: bytes, limit_bytes: int) -> bytes:
    decompressor = lz4.frame.LZ4FrameDecompressor()
    result = decompressor.decompress(raw, max_length=limit_bytes + 1)
    if len(result) > limit_bytes:
        raise _too_big("lz4", limit_bytes)
    if not decompressor.eof:
        raise CorruptRecordError("lz4 frame is truncated")
    return bytes(result)


def _zstd_decompress(raw: bytes, limit_bytes: int) -> bytes:
    reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw), read_across_frames=True)
    chunks: list[bytes] = []
    total = 0
    while chunk := reader.read(min(_READ_CHUNK_BYTES, limit_bytes + 1 - total)):
        chunks.append(chunk)
        total += len(chunk)
        if total > limit_bytes:
            raise _too_big("zstd", limit_bytes)
    if not raw:
        raise CorruptRecordError("zstd data is empty")
    return b"".join(chunks)


def _snappy_raw(block: bytes, limit_bytes: int) -> bytes:
    # Raw snappy states its uncompressed length up front: check before allocating.
    if cramjam.snappy.decompress_raw_len(block) > limit_bytes:
        raise _too_big("snappy", limit_bytes)
    return bytes(cramjam.snappy.decompress_raw(block))


def _snappy_decompress(raw: bytes, limit_bytes: int) -> bytes:
    if not raw.startswith(_XERIAL_MAGIC):
        return _snappy_raw(raw, limit_bytes)
    position = len(_XERIAL_HEADER)
    if len(raw) < position:
        raise CorruptRecordError("xerial snappy header is truncated")
    blocks: list[bytes] = []
    total = 0
    while position < len(raw):
        if position + 4 > len(raw):
            raise CorruptRecordError("xerial snappy block length is truncated")
        (length,) = struct.unpack_from(">i", raw, position)
        position += 4
        if length < 0 or position + length > len(raw):
            raise CorruptRecordError(f"xerial snappy block of {length} bytes overruns the data")
        block = _snappy_raw(raw[position : position + length], limit_bytes - total)
        total += len(block)
        blocks.append(block)
        position += length
    return b"".join(blocks)

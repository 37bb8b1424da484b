"""Kafka batch compression codecs (attributes bits 0-2), over cramjam.

Kafka's framing per codec:
- gzip: a gzip stream.
- snappy: the Java client writes xerial framing (magic header, then blocks of
  [int32 length][raw snappy]); librdkafka accepts and may write raw snappy.
  We decode both and write xerial, which every client reads.
- lz4: the standard LZ4 frame format (KIP-57).
- zstd: a zstd frame.
"""

from __future__ import annotations

import enum
import struct

import cramjam

from trioring._constants import BATCH_DECOMPRESSED_BYTES_MAX
from trioring.errors import CorruptRecordError, UnsupportedCompressionError


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
        return bytes(cramjam.gzip.compress(data))
    if codec is Compression.SNAPPY:
        parts = [_XERIAL_HEADER]
        for start in range(0, len(data), _XERIAL_BLOCK_BYTES):
            block = bytes(cramjam.snappy.compress_raw(data[start : start + _XERIAL_BLOCK_BYTES]))
            parts.append(struct.pack(">i", len(block)))
            parts.append(block)
        return b"".join(parts)
    if codec is Compression.LZ4:
        return bytes(cramjam.lz4.compress(data))
    if codec is Compression.ZSTD:
        return bytes(cramjam.zstd.compress(data))
    raise AssertionError(f"unhandled codec {codec!r}")


def decompress(codec: Compression, data: bytes | memoryview) -> bytes:
    """Decompress one batch's records section; any failure is CorruptRecordError."""
    raw = bytes(data)
    try:
        if codec is Compression.NONE:
            result = raw
        elif codec is Compression.GZIP:
            result = bytes(cramjam.gzip.decompress(raw))
        elif codec is Compression.SNAPPY:
            result = _snappy_decompress(raw)
        elif codec is Compression.LZ4:
            result = bytes(cramjam.lz4.decompress(raw))
        elif codec is Compression.ZSTD:
            result = bytes(cramjam.zstd.decompress(raw))
        else:  # pragma: no cover - Compression.parse rejects other codes
            raise AssertionError(f"unhandled codec {codec!r}")
    except (cramjam.DecompressionError, ValueError, OSError) as error:
        raise CorruptRecordError(
            f"{codec.name.lower()} data does not decompress: {error}"
        ) from None
    if len(result) > BATCH_DECOMPRESSED_BYTES_MAX:
        raise CorruptRecordError(
            f"batch decompresses to {len(result)} bytes, over the "
            f"{BATCH_DECOMPRESSED_BYTES_MAX}-byte limit"
        )
    return result


def _snappy_decompress(raw: bytes) -> bytes:
    if not raw.startswith(_XERIAL_MAGIC):
        return bytes(cramjam.snappy.decompress_raw(raw))
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
        block = bytes(cramjam.snappy.decompress_raw(raw[position : position + length]))
        total += len(block)
        if total > BATCH_DECOMPRESSED_BYTES_MAX:
            raise CorruptRecordError("snappy data decompresses past the batch size limit")
        blocks.append(block)
        position += length
    return b"".join(blocks)

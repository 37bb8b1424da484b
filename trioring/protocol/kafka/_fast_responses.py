"""Hand-written encoders of the hot-path responses: Produce v3-12 and Fetch v4-17.

kio's generic writer is 4-7x slower on small responses, and a Fetch response
through kio copies every records section; these pack many fields per struct
call and hand large records back uncopied (see
:func:`encode_fetch_response_chunks`). Tests check them byte for byte
against kio for every version.

The inputs are NamedTuples: cheap to build per request, and the encoders
unpack them as plain tuples. Error codes are ints (an exception's
``kafka_error_code``); times are int milliseconds, -1 where Kafka means
"none".
"""

from __future__ import annotations

import struct
from collections.abc import Sequence, Sized
from typing import NamedTuple, TypeAlias

from trioring._constants import (
    FETCH_RECORDS_COPY_BYTES_MAX,
    FRAME_BYTES_MAX_LIMIT,
    FRAME_SIZE_BYTES,
)

#: One piece of an encoded response; the caller writes the pieces in order.
Chunk: TypeAlias = bytes | bytearray | memoryview
_BUFFERS = (bytes, bytearray, memoryview)
#: What an encoded response is written from: buffers, and (Fetch) records
#: that are not buffers, which the caller sends itself (file ranges).
SentChunk: TypeAlias = Chunk | Sized

PRODUCE_VERSIONS = (3, 12)
FETCH_VERSIONS = (4, 17)
#: From these versions on the bodies are flexible (KIP-482): compact lengths,
#: tagged-field sections, and response header v1 (a tagged-field section
#: after the correlation id). trioring writes every tagged-field section empty.
PRODUCE_FLEXIBLE_VERSION = 9
FETCH_FLEXIBLE_VERSION = 12
#: From Fetch v13 on a topic is named by its 16-byte topic id, not its name.
FETCH_TOPIC_ID_VERSION = 13

_INT16 = struct.Struct(">h")
_INT32 = struct.Struct(">i")
_FRAME_HEADER = struct.Struct(">ii")  # frame size, correlation id (response header v0)
# Response header v1: frame size, correlation id, empty tagged fields.
_FRAME_HEADER_V1 = struct.Struct(">iiB")
_NULL_LENGTH = _INT32.pack(-1)
_PRODUCE_PARTITION_V3 = struct.Struct(">ihqq")  # index, error, base offset, append time
_PRODUCE_PARTITION_V5 = struct.Struct(">ihqqq")  # ... log start offset
# One topic of one partition: frame header, topic count, name length | name |
# partition count, the partition, throttle time.
_PRODUCE_ONE_TOPIC_HEAD = struct.Struct(">iiih")
_PRODUCE_ONE_PARTITION_TAIL_V3 = struct.Struct(">iihqqi")
_PRODUCE_ONE_PARTITION_TAIL_V5 = struct.Struct(">iihqqqi")
# v8 adds per partition an empty record_errors array and a null error_message.
_PRODUCE_PARTITION_V8 = struct.Struct(">ihqqqih")
_PRODUCE_ONE_PARTITION_TAIL_V8 = struct.Struct(">iihqqqihi")
# Flexible: index, error, base offset, append time, log start offset, then
# record_errors (compact array, 1 = empty); the error message and the
# partition's tagged fields follow.
_PRODUCE_PARTITION_V9 = struct.Struct(">ihqqqB")
_PRODUCE_EMPTY_V8_TAIL = b"\x00\x00\x00\x00\xff\xff"  # no record errors, null message
_FETCH_TOP_V4 = struct.Struct(">ii")  # throttle time, topic count
_FETCH_TOP_V7 = struct.Struct(">ihii")  # throttle time, error, session id, topic count
_FETCH_PARTITION_V4 = struct.Struct(">ihqq")  # index, error, high watermark, last stable
_FETCH_PARTITION_V5 = struct.Struct(">ihqqq")  # ... log start offset
# One topic of one partition: frame header, top-level fields, topic count,
# name length | name | partition count, the partition up to its records length.
_FETCH_ONE_TOPIC_HEAD_V4 = struct.Struct(">iiiih")
_FETCH_ONE_TOPIC_HEAD_V7 = struct.Struct(">iiihiih")
_FETCH_ONE_PARTITION_V4 = struct.Struct(">iihqqii")
_FETCH_ONE_PARTITION_V5 = struct.Struct(">iihqqqii")
_FETCH_ONE_PARTITION_V11 = struct.Struct(">iihqqqiii")
# A partition without aborted transactions, up to its records length:
_FETCH_PLAIN_PARTITION_V4 = struct.Struct(">ihqqii")  # ..., aborted count, records length
_FETCH_PLAIN_PARTITION_V5 = struct.Struct(">ihqqqii")  # log start offset added
_FETCH_PLAIN_PARTITION_V11 = struct.Struct(">ihqqqiii")  # preferred read replica added
_ABORTED_TRANSACTION = struct.Struct(">qq")  # producer id, first offset
# Flexible Fetch: throttle time, error, session id (the topic count follows as a varint).
_FETCH_TOP_V12 = struct.Struct(">ihi")
# A flexible partition up to its aborted transactions (compact nullable array).
_FETCH_PARTITION_V12 = struct.Struct(">ihqqq")
# A flexible partition without aborted transactions, up to its records'
# length: ..., aborted count (0 = null, 1 = empty), preferred read replica.
_FETCH_PLAIN_PARTITION_V12 = struct.Struct(">ihqqqBi")
_EMPTY_TAGS = b"\x00"


class ProduceResponsePartition(NamedTuple):
    partition_index: int
    error_code: int
    base_offset: int
    #: -1 unless the topic uses LogAppendTime.
    log_append_time_ms: int = -1
    #: Sent from v5 on.
    log_start_offset: int = -1
    #: Sent from v8 on: why the partition failed (None when it did not).
    error_message: str | None = None


class ProduceResponseTopic(NamedTuple):
    name: str
    partitions: Sequence[ProduceResponsePartition]


class ProduceResponseBody(NamedTuple):
    topics: Sequence[ProduceResponseTopic]
    throttle_time_ms: int = 0


class FetchResponsePartition(NamedTuple):
    partition_index: int
    error_code: int
    high_watermark: int
    #: Without transactions, the high watermark (read_committed clients stop here).
    last_stable_offset: int
    #: Sent from v5 on.
    log_start_offset: int
    #: Whole RecordBatch bytes, passed through as they are; None encodes null.
    #: Anything else with a len() (file ranges the caller sends itself) is
    #: always handed back by reference as one chunk, never copied.
    records: Chunk | Sized | None
    #: (producer_id, first_offset) pairs; None encodes null. Empty suits
    #: read_committed clients of a broker without transactions.
    aborted_transactions: Sequence[tuple[int, int]] | None = ()
    #: Sent from v11 on; -1: read from the leader.
    preferred_read_replica: int = -1


_ABORTED_INDEX = FetchResponsePartition._fields.index("aborted_transactions")


class FetchResponseTopic(NamedTuple):
    #: The topic's name up to v12; from v13 on its 16-byte topic id (``UUID.bytes``).
    name: str | bytes
    partitions: Sequence[FetchResponsePartition]


class FetchResponseBody(NamedTuple):
    topics: Sequence[FetchResponseTopic]
    throttle_time_ms: int = 0
    #: Sent from v7 on (fetch sessions); 0 is fine without sessions.
    error_code: int = 0
    session_id: int = 0


def _check_version(name: str, api_version: int, versions: tuple[int, int]) -> None:
    if not versions[0] <= api_version <= versions[1]:
        raise ValueError(
            f"{name} response v{api_version} has no fast encoder (v{versions[0]}-v{versions[1]} do)"
        )


def _frame_size(total_bytes: int) -> int:
    size = total_bytes - FRAME_SIZE_BYTES
    if size > FRAME_BYTES_MAX_LIMIT:
        raise ValueError(f"response of {size} bytes does not fit an int32 frame size")
    return size


def _uvarint(value: int) -> bytes:
    """An unsigned varint (compact lengths are the length + 1, 0 meaning null)."""
    if value < 0x80:
        return _SMALL_VARINTS[value]
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


_SMALL_VARINTS = tuple(bytes((value,)) for value in range(0x80))


def _compact_string(value: str) -> bytes:
    encoded = value.encode()
    return _uvarint(len(encoded) + 1) + encoded


def _compact_nullable_string(value: str | None) -> bytes:
    return b"\x00" if value is None else _compact_string(value)


def _nullable_string(value: str | None) -> bytes:
    if value is None:
        return b"\xff\xff"
    encoded = value.encode()
    return _INT16.pack(len(encoded)) + encoded


# Speed notes, measured on CPython 3.11: one struct call costs ~0.1 µs, so the
# encoders pack as many fields per call as the layout allows; parts are
# collected in a list and joined once (growing a bytearray reallocates in
# 12.5% steps, which copies large fetches many times over).


def encode_produce_response(
    api_version: int, correlation_id: int, body: ProduceResponseBody
) -> bytes:
    """A whole framed Produce response (size prefix, header v0 or v1, body)."""
    if not PRODUCE_VERSIONS[0] <= api_version <= PRODUCE_VERSIONS[1]:
        _check_version("Produce", api_version, PRODUCE_VERSIONS)
    if api_version >= PRODUCE_FLEXIBLE_VERSION:
        return _encode_produce_flexible(correlation_id, body)
    with_log_start_offset = api_version >= 5
    with_errors = api_version >= 8
    topics, throttle_time_ms = body
    if (
        len(topics) == 1
        and len(topics[0][1]) == 1
        and (not with_errors or topics[0][1][0][5] is None)
    ):
        # The common shape (one partition per request) in three struct calls.
        name, (partition,) = topics[0]
        encoded_name = name.encode()
        name_bytes = len(encoded_name)
        if with_errors:
            tail = _PRODUCE_ONE_PARTITION_TAIL_V8.pack(1, *partition[:5], 0, -1, throttle_time_ms)
        elif with_log_start_offset:
            tail = _PRODUCE_ONE_PARTITION_TAIL_V5.pack(1, *partition[:5], throttle_time_ms)
        else:
            tail = _PRODUCE_ONE_PARTITION_TAIL_V3.pack(1, *partition[:4], throttle_time_ms)
        head = _PRODUCE_ONE_TOPIC_HEAD.pack(
            _PRODUCE_ONE_TOPIC_HEAD.size - FRAME_SIZE_BYTES + name_bytes + len(tail),
            correlation_id,
            1,
            name_bytes,
        )
        return head + encoded_name + tail
    pack_int16 = _INT16.pack
    pack_int32 = _INT32.pack
    # The first part is a placeholder for the frame header, packed once the size is known.
    parts = [b"", pack_int32(len(topics))]
    append = parts.append
    for name, partitions in topics:
        encoded_name = name.encode()
        append(pack_int16(len(encoded_name)))
        append(encoded_name)
        append(pack_int32(len(partitions)))
        if with_errors:
            pack_partition = _PRODUCE_PARTITION_V5.pack
            for partition in partitions:
                append(pack_partition(*partition[:5]))
                message = partition[5]
                if message is None:
                    append(_PRODUCE_EMPTY_V8_TAIL)
                else:
                    append(b"\x00\x00\x00\x00")  # no record errors
                    append(_nullable_string(message))
        elif with_log_start_offset:
            pack_partition = _PRODUCE_PARTITION_V5.pack
            for partition in partitions:
                append(pack_partition(*partition[:5]))
        else:
            pack_partition = _PRODUCE_PARTITION_V3.pack
            for partition in partitions:
                append(pack_partition(*partition[:4]))
    append(pack_int32(throttle_time_ms))
    parts[0] = _FRAME_HEADER.pack(
        _frame_size(_FRAME_HEADER.size + sum(map(len, parts))), correlation_id
    )
    return b"".join(parts)


def _encode_produce_flexible(correlation_id: int, body: ProduceResponseBody) -> bytes:
    """Produce v9-12: compact lengths and empty tagged fields (no KIP-951 leader hints)."""
    topics, throttle_time_ms = body
    pack_partition = _PRODUCE_PARTITION_V9.pack
    parts: list[bytes] = [b"", _uvarint(len(topics) + 1)]
    append = parts.append
    for name, partitions in topics:
        append(_compact_string(name))
        append(_uvarint(len(partitions) + 1))
        for partition in partitions:
            # record_errors empty (1); then the message, and the partition's tags.
            append(pack_partition(*partition[:5], 1))
            message = partition[5]
            append(b"\x00\x00" if message is None else _compact_string(message) + _EMPTY_TAGS)
        append(_EMPTY_TAGS)  # the topic's tagged fields
    append(_INT32.pack(throttle_time_ms))
    append(_EMPTY_TAGS)
    parts[0] = _FRAME_HEADER_V1.pack(
        _frame_size(_FRAME_HEADER_V1.size + sum(map(len, parts))), correlation_id, 0
    )
    return b"".join(parts)


def _encode_fetch(
    api_version: int, correlation_id: int, body: FetchResponseBody, copy_bytes_max: int
) -> list[SentChunk]:
    if not FETCH_VERSIONS[0] <= api_version <= FETCH_VERSIONS[1]:
        _check_version("Fetch", api_version, FETCH_VERSIONS)
    if api_version >= FETCH_FLEXIBLE_VERSION:
        return _encode_fetch_flexible(api_version, correlation_id, body, copy_bytes_max)
    topics = body[0]
    # One partition without aborted transactions: the common shape, done apart.
    # (Indexes, not names: callers may pass plain tuples of the same layout.)
    if len(topics) == 1 and len(topics[0][1]) == 1 and not topics[0][1][0][_ABORTED_INDEX]:
        return _encode_fetch_one_partition(api_version, correlation_id, body, copy_bytes_max)
    with_log_start_offset = api_version >= 5
    with_preferred_read_replica = api_version >= 11
    pack_int16 = _INT16.pack
    pack_int32 = _INT32.pack
    pack_aborted = _ABORTED_TRANSACTION.pack
    pack_partition = _FETCH_PARTITION_V5.pack if with_log_start_offset else _FETCH_PARTITION_V4.pack
    # Without aborted transactions (the usual case) a partition's fields up to
    # the records length are contiguous: one struct call.
    if with_preferred_read_replica:
        pack_plain_partition = _FETCH_PLAIN_PARTITION_V11.pack
    elif with_log_start_offset:
        pack_plain_partition = _FETCH_PLAIN_PARTITION_V5.pack
    else:
        pack_plain_partition = _FETCH_PLAIN_PARTITION_V4.pack
    topics, throttle_time_ms, error_code, session_id = body
    # Runs of small parts, each joined into one chunk at the end, separated by
    # records passed by reference. The first part is the frame header's placeholder.
    runs: list[list[Chunk]] = []
    referenced: list[SentChunk] = []
    referenced_bytes = 0
    parts: list[Chunk] = [b""]
    append = parts.append
    if api_version >= 7:
        append(_FETCH_TOP_V7.pack(throttle_time_ms, error_code, session_id, len(topics)))
    else:
        append(_FETCH_TOP_V4.pack(throttle_time_ms, len(topics)))
    for name, partitions in topics:
        encoded_name = name.encode()  # type: ignore[union-attr]  # names up to v12
        append(pack_int16(len(encoded_name)))
        append(encoded_name)
        append(pack_int32(len(partitions)))
        for (
            index,
            partition_error_code,
            high_watermark,
            last_stable_offset,
            log_start_offset,
            given_records,
            aborted_transactions,
            preferred_read_replica,
        ) in partitions:
            records = given_records
            if records is None:
                size = -1
            else:
                if isinstance(records, memoryview) and records.itemsize != 1:
                    # len() of a view counts items; a byte view makes len() a byte count.
                    records = records.cast("B")
                size = len(records)
            if not aborted_transactions:
                aborted_count = -1 if aborted_transactions is None else 0
                if with_preferred_read_replica:
                    append(
                        pack_plain_partition(
                            index,
                            partition_error_code,
                            high_watermark,
                            last_stable_offset,
                            log_start_offset,
                            aborted_count,
                            preferred_read_replica,
                            size,
                        )
                    )
                elif with_log_start_offset:
                    append(
                        pack_plain_partition(
                            index,
                            partition_error_code,
                            high_watermark,
                            last_stable_offset,
                            log_start_offset,
                            aborted_count,
                            size,
                        )
                    )
                else:
                    append(
                        pack_plain_partition(
                            index,
                            partition_error_code,
                            high_watermark,
                            last_stable_offset,
                            aborted_count,
                            size,
                        )
                    )
            else:
                if with_log_start_offset:
                    append(
                        pack_partition(
                            index,
                            partition_error_code,
                            high_watermark,
                            last_stable_offset,
                            log_start_offset,
                        )
                    )
                else:
                    append(
                        pack_partition(
                            index, partition_error_code, high_watermark, last_stable_offset
                        )
                    )
                append(pack_int32(len(aborted_transactions)))
                for producer_id, first_offset in aborted_transactions:
                    append(pack_aborted(producer_id, first_offset))
                if with_preferred_read_replica:
                    append(pack_int32(preferred_read_replica))
                append(pack_int32(size))
            if records is None:
                continue
            if size <= copy_bytes_max and isinstance(records, _BUFFERS):
                append(records)
            else:
                runs.append(parts)
                referenced.append(records)
                referenced_bytes += size
                parts = []
                append = parts.append
    runs.append(parts)
    copied_bytes = 0
    for run in runs:
        copied_bytes += sum(map(len, run))
    runs[0][0] = _FRAME_HEADER.pack(
        _frame_size(_FRAME_HEADER.size + copied_bytes + referenced_bytes), correlation_id
    )
    if not referenced:
        return [b"".join(parts)]
    chunks: list[SentChunk] = [b"".join(runs[0])]
    for records, run in zip(referenced, runs[1:], strict=True):
        chunks.append(records)
        if run:
            chunks.append(b"".join(run))
    return chunks


def _encode_fetch_flexible(
    api_version: int, correlation_id: int, body: FetchResponseBody, copy_bytes_max: int
) -> list[SentChunk]:
    """Fetch v12-17: compact lengths, empty tagged fields, topic ids from v13.

    Records are chunked as in the older versions: large ones are passed on
    by reference. No KIP-951 leader hints and no diverging epochs are sent
    (one replica, leader epoch 0: there is nothing to diverge from).
    """
    topics, throttle_time_ms, error_code, session_id = body
    by_id = api_version >= FETCH_TOPIC_ID_VERSION
    pack_plain_partition = _FETCH_PLAIN_PARTITION_V12.pack
    pack_partition = _FETCH_PARTITION_V12.pack
    pack_aborted = _ABORTED_TRANSACTION.pack
    runs: list[list[Chunk]] = []
    referenced: list[SentChunk] = []
    referenced_bytes = 0
    parts: list[Chunk] = [b"", _FETCH_TOP_V12.pack(throttle_time_ms, error_code, session_id)]
    append = parts.append
    append(_uvarint(len(topics) + 1))
    for name, partitions in topics:
        if by_id:
            assert isinstance(name, bytes) and len(name) == 16, "v13+ names topics by id"
            append(name)
        else:
            assert isinstance(name, str)
            append(_compact_string(name))
        append(_uvarint(len(partitions) + 1))
        for (
            index,
            partition_error_code,
            high_watermark,
            last_stable_offset,
            log_start_offset,
            given_records,
            aborted_transactions,
            preferred_read_replica,
        ) in partitions:
            records = given_records
            if records is None:
                size = -1
            else:
                if isinstance(records, memoryview) and records.itemsize != 1:
                    records = records.cast("B")
                size = len(records)
            if not aborted_transactions:
                append(
                    pack_plain_partition(
                        index,
                        partition_error_code,
                        high_watermark,
                        last_stable_offset,
                        log_start_offset,
                        0 if aborted_transactions is None else 1,
                        preferred_read_replica,
                    )
                )
            else:
                append(
                    pack_partition(
                        index,
                        partition_error_code,
                        high_watermark,
                        last_stable_offset,
                        log_start_offset,
                    )
                )
                append(_uvarint(len(aborted_transactions) + 1))
                for producer_id, first_offset in aborted_transactions:
                    append(pack_aborted(producer_id, first_offset))
                    append(_EMPTY_TAGS)
                append(_INT32.pack(preferred_read_replica))
            append(_uvarint(size + 1))
            if records is not None:
                if size <= copy_bytes_max and isinstance(records, _BUFFERS):
                    append(records)
                else:
                    runs.append(parts)
                    referenced.append(records)
                    referenced_bytes += size
                    parts = []
                    append = parts.append
            append(_EMPTY_TAGS)  # the partition's tagged fields
        append(_EMPTY_TAGS)  # the topic's
    append(_EMPTY_TAGS)  # the response's
    runs.append(parts)
    copied_bytes = 0
    for run in runs:
        copied_bytes += sum(map(len, run))
    runs[0][0] = _FRAME_HEADER_V1.pack(
        _frame_size(_FRAME_HEADER_V1.size + copied_bytes + referenced_bytes), correlation_id, 0
    )
    if not referenced:
        return [b"".join(parts)]
    chunks: list[SentChunk] = [b"".join(runs[0])]
    for records, run in zip(referenced, runs[1:], strict=True):
        chunks.append(records)
        if run:
            chunks.append(b"".join(run))
    return chunks


def _encode_fetch_one_partition(
    api_version: int, correlation_id: int, body: FetchResponseBody, copy_bytes_max: int
) -> list[SentChunk]:
    """The common shape (one partition, no aborted transactions) in three struct calls."""
    topics, throttle_time_ms, error_code, session_id = body
    name, (partition,) = topics[0]
    (
        index,
        partition_error_code,
        high_watermark,
        last_stable_offset,
        log_start_offset,
        records,
        aborted_transactions,
        preferred_read_replica,
    ) = partition
    aborted_count = -1 if aborted_transactions is None else 0
    if records is None:
        size = -1
    else:
        if isinstance(records, memoryview) and records.itemsize != 1:
            records = records.cast("B")
        size = len(records)
    if api_version >= 11:
        tail = _FETCH_ONE_PARTITION_V11.pack(
            1,
            index,
            partition_error_code,
            high_watermark,
            last_stable_offset,
            log_start_offset,
            aborted_count,
            preferred_read_replica,
            size,
        )
    elif api_version >= 5:
        tail = _FETCH_ONE_PARTITION_V5.pack(
            1,
            index,
            partition_error_code,
            high_watermark,
            last_stable_offset,
            log_start_offset,
            aborted_count,
            size,
        )
    else:
        tail = _FETCH_ONE_PARTITION_V4.pack(
            1, index, partition_error_code, high_watermark, last_stable_offset, aborted_count, size
        )
    encoded_name = name.encode()  # type: ignore[union-attr]  # names up to v12
    name_bytes = len(encoded_name)
    if api_version >= 7:
        total_bytes = _FETCH_ONE_TOPIC_HEAD_V7.size + name_bytes + len(tail) + max(size, 0)
        head = _FETCH_ONE_TOPIC_HEAD_V7.pack(
            _frame_size(total_bytes),
            correlation_id,
            throttle_time_ms,
            error_code,
            session_id,
            1,
            name_bytes,
        )
    else:
        total_bytes = _FETCH_ONE_TOPIC_HEAD_V4.size + name_bytes + len(tail) + max(size, 0)
        head = _FETCH_ONE_TOPIC_HEAD_V4.pack(
            _frame_size(total_bytes), correlation_id, throttle_time_ms, 1, name_bytes
        )
    if records is None:
        return [b"".join((head, encoded_name, tail))]
    if size <= copy_bytes_max and isinstance(records, _BUFFERS):
        return [b"".join((head, encoded_name, tail, records))]
    return [b"".join((head, encoded_name, tail)), records]


def encode_fetch_response_chunks(
    api_version: int, correlation_id: int, body: FetchResponseBody
) -> list[SentChunk]:
    """A whole framed Fetch response as chunks to write in order.

    Records sections up to ``FETCH_RECORDS_COPY_BYTES_MAX`` are copied into
    the surrounding chunk; larger ones are returned as the very objects the
    caller passed (a memoryview of items wider than a byte is cast to a
    byte view first), never copied, ready for a vectored write. The other
    chunks are ``bytes``.
    """
    return _encode_fetch(api_version, correlation_id, body, FETCH_RECORDS_COPY_BYTES_MAX)


def encode_fetch_response(api_version: int, correlation_id: int, body: FetchResponseBody) -> bytes:
    """Like :func:`encode_fetch_response_chunks` but one ``bytes``: copies every record once."""
    # No records section exceeds the frame limit, so everything joins into one chunk.
    chunks = _encode_fetch(api_version, correlation_id, body, FRAME_BYTES_MAX_LIMIT)
    if len(chunks) != 1 or not isinstance(chunks[0], bytes):
        raise TypeError("records that are not buffers cannot be encoded into one bytes")
    return chunks[0]

"""Produce: validate batches as Kafka does, append, wait for the durability asked for."""

from __future__ import annotations

from trioring.errors import (
    CorruptRecordError,
    InvalidRecordError,
    InvalidRequiredAcksError,
    RecordTooLargeError,
)
from trioring.handlers.context import HandlerContext
from trioring.handlers.messages import ProduceRequest, ProduceResponse
from trioring.protocol.records import (
    BatchHeader,
    check_batch_crc,
    decode_batch,
    iterate_batches,
)


def validate_batches(
    records: bytes | bytearray | memoryview, batch_bytes_max: int, *, decode_records: bool = False
) -> list[tuple[int, BatchHeader]]:
    """Check what a producer sent; return each batch's (position, header).

    Raises ProtocolError/CorruptRecordError (framing, magic, CRC, counts),
    RecordTooLargeError or InvalidRecordError. With ``decode_records`` every
    record is decoded too (Kafka's broker does this; it costs per-record CPU).
    """
    headers: list[tuple[int, BatchHeader]] = []
    for position, header in iterate_batches(records):
        if header.size_bytes > batch_bytes_max:
            raise RecordTooLargeError(
                f"record batch of {header.size_bytes} bytes exceeds the broker's "
                f"batch_bytes_max of {batch_bytes_max}; send smaller batches or raise the limit"
            )
        if header.last_offset_delta + 1 != header.record_count:
            raise CorruptRecordError(
                f"record batch says {header.record_count} records but lastOffsetDelta "
                f"{header.last_offset_delta}"
            )
        if header.is_control:
            raise InvalidRecordError("producers may not send control batches")
        if header.is_transactional:
            raise InvalidRecordError("transactions are not supported by trioring yet")
        check_batch_crc(records, position, header)
        if decode_records:
            decode_batch(records, position)
        headers.append((position, header))
    if not headers:
        raise CorruptRecordError("produce request holds no record batch")
    return headers


async def produce(ctx: HandlerContext, request: ProduceRequest) -> ProduceResponse:
    if request.acks not in (0, 1, -1):
        raise InvalidRequiredAcksError(f"acks must be 0, 1 or -1 (all), not {request.acks!r}")
    log = ctx.shard.log(request.topic, request.partition)
    config = ctx.shard.config
    headers = validate_batches(
        request.records,
        config.batch_bytes_max,
        decode_records=config.produce_validation == "records",
    )
    info = await log.append(request.records, headers)
    if request.acks == -1:
        await log.flush(info.last_offset + 1)
    return ProduceResponse(
        base_offset=info.base_offset,
        last_offset=info.last_offset,
        log_append_time_ms=-1,
        log_start_offset=info.log_start_offset,
    )

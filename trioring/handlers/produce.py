"""Produce: validate batches as Kafka does, append, wait for the durability asked for."""

from __future__ import annotations

import itertools

import trio

from trioring.errors import (
    CorruptRecordError,
    InvalidRecordError,
    InvalidRequiredAcksError,
    RecordTooLargeError,
)
from trioring.handlers.context import HandlerContext
from trioring.handlers.messages import ProduceRequest, ProduceResponse
from trioring.protocol.records import (
    NO_PRODUCER_ID,
    BatchHeader,
    check_batch_crc,
    decode_batch,
    iterate_batches,
)
from trioring.storage.producers import ProducerBatch, ProducerStateTable, last_sequence


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
    duplicate = check_producer_sequences(log.producers, headers)
    if duplicate is not None:
        # A retry of a batch already appended: answer with its offsets.
        if request.acks == -1:
            if ctx.order_released is not None:
                ctx.order_released()
            await log.flush(duplicate.last_offset + 1)
        else:
            await trio.lowlevel.checkpoint()
        return ProduceResponse(
            base_offset=duplicate.base_offset,
            last_offset=duplicate.last_offset,
            log_append_time_ms=-1,
            log_start_offset=log.log_start_offset,
        )
    info = await log.append(request.records, headers)
    if request.acks == -1:
        if ctx.order_released is not None:
            ctx.order_released()
        await log.flush(info.last_offset + 1)
    return ProduceResponse(
        base_offset=info.base_offset,
        last_offset=info.last_offset,
        log_append_time_ms=-1,
        log_start_offset=info.log_start_offset,
    )


def check_producer_sequences(
    producers: ProducerStateTable, headers: list[tuple[int, BatchHeader]]
) -> ProducerBatch | None:
    """Idempotence checks for the batches of one request (before appending).

    Returns the earlier batch if the request retries one already appended.
    Kafka producers send one batch per partition per request; a request with
    several batches of one producer must continue its own sequence.
    """
    idempotent = [header for _, header in headers if header.producer_id != NO_PRODUCER_ID]
    if not idempotent:
        return None
    first = idempotent[0]
    duplicate = producers.check(first)
    if duplicate is not None:
        if len(headers) != 1:
            raise InvalidRecordError("a retried idempotent batch must be sent alone")
        return duplicate
    for previous, header in itertools.pairwise(idempotent):
        if (
            header.producer_id != previous.producer_id
            or header.producer_epoch != previous.producer_epoch
            or header.base_sequence != last_sequence(previous) + 1
        ):
            raise InvalidRecordError(
                "batches of one request must come from one producer in sequence order"
            )
    return None

"""Produce: validate batches as Kafka does, append, wait for the durability asked for."""

from __future__ import annotations

import itertools

import trio

from trioring._constants import BATCH_LOG_OVERHEAD_BYTES
from trioring.errors import (
    CorruptRecordError,
    InvalidRecordError,
    InvalidRequiredAcksError,
    RecordTooLargeError,
)
from trioring.handlers.context import HandlerContext
from trioring.handlers.messages import ProduceRequest, ProduceResponse
from trioring.protocol.records import (
    ATTRIBUTE_CONTROL,
    ATTRIBUTE_TRANSACTIONAL,
    NO_PRODUCER_ID,
    BatchHeader,
    check_batch_crc,
    decode_batch,
    list_batches,
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
    headers = list_batches(records)
    if not headers:
        raise CorruptRecordError("produce request holds no record batch")
    for position, header in headers:
        # Kafka's order: the size, then the CRC (damage to any field it
        # covers is corruption, not a policy violation), then the fields.
        if header.batch_length > batch_bytes_max - BATCH_LOG_OVERHEAD_BYTES:
            raise RecordTooLargeError(
                f"record batch of {header.size_bytes} bytes exceeds the broker's "
                f"batch_bytes_max of {batch_bytes_max}; send smaller batches or raise the limit"
            )
        check_batch_crc(records, position, header)
        if header.last_offset_delta + 1 != header.record_count:
            raise CorruptRecordError(
                f"record batch says {header.record_count} records but lastOffsetDelta "
                f"{header.last_offset_delta}"
            )
        if header.attributes & (ATTRIBUTE_CONTROL | ATTRIBUTE_TRANSACTIONAL):
            if header.is_control:
                raise InvalidRecordError("producers may not send control batches")
            raise InvalidRecordError("transactions are not supported by trioring yet")
        if decode_records:
            decode_batch(records, position)
    return headers


async def produce(ctx: HandlerContext, request: ProduceRequest) -> ProduceResponse:
    acks = request.acks
    if acks not in (0, 1, -1):
        raise InvalidRequiredAcksError(f"acks must be 0, 1 or -1 (all), not {acks!r}")
    shard = ctx.shard
    log = shard.log(request.topic, request.partition)
    config = shard.config
    records = request.records
    headers = validate_batches(
        records, config.batch_bytes_max, decode_records=config.produce_validation == "records"
    )
    duplicate = check_producer_sequences(log.producers, headers)
    if duplicate is not None:
        # A retry of a batch already appended: answer with its offsets.
        if acks == -1:
            if ctx.order_released is not None:
                ctx.order_released()
            await log.flush(duplicate.last_offset + 1)
        else:
            await trio.lowlevel.checkpoint()
        return ProduceResponse(
            duplicate.base_offset, duplicate.last_offset, -1, log.log_start_offset
        )
    info = await log.append(records, headers)
    if acks == -1:
        if ctx.order_released is not None:
            ctx.order_released()
        await log.flush(info.last_offset + 1)
    # log_append_time_ms: -1 (CreateTime), as Kafka answers for such topics.
    return ProduceResponse(info.base_offset, info.last_offset, -1, info.log_start_offset)


def check_producer_sequences(
    producers: ProducerStateTable, headers: list[tuple[int, BatchHeader]]
) -> ProducerBatch | None:
    """Idempotence checks for the batches of one request (before appending).

    Returns the earlier batch if the request retries one already appended.
    Kafka producers send one batch per partition per request; a request with
    several batches of one producer must continue its own sequence.
    """
    if len(headers) == 1 and headers[0][1].producer_id == NO_PRODUCER_ID:
        return None  # the common case, answered without building a list
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

"""ListOffsets, DeleteRecords, OffsetCommit and OffsetFetch."""

from __future__ import annotations

import trio
from kio.schema.errors import ErrorCode

from trioring.core.offsets import validate_group
from trioring.errors import (
    GroupCoordinatorError,
    InvalidArgumentError,
    InvalidTopicError,
    OffsetOutOfRangeError,
    TrioringError,
    UnknownTopicOrPartitionError,
)
from trioring.handlers.context import HandlerContext
from trioring.handlers.messages import (
    EARLIEST_LOCAL_TIMESTAMP,
    EARLIEST_TIMESTAMP,
    LATEST_TIERED_TIMESTAMP,
    LATEST_TIMESTAMP,
    MAX_TIMESTAMP,
    DeleteRecordsRequest,
    DeleteRecordsResponse,
    ListOffsetsRequest,
    ListOffsetsResponse,
    OffsetCommitRequest,
    OffsetCommitResponse,
    OffsetFetchRequest,
    OffsetFetchResponse,
)
from trioring.protocol.records import decode_batch


async def list_offsets(ctx: HandlerContext, request: ListOffsetsRequest) -> ListOffsetsResponse:
    log = ctx.shard.log(request.topic, request.partition)
    if request.timestamp_ms == LATEST_TIMESTAMP:
        return ListOffsetsResponse(log.high_watermark.value, -1)
    if request.timestamp_ms in (EARLIEST_TIMESTAMP, EARLIEST_LOCAL_TIMESTAMP):
        return ListOffsetsResponse(log.log_start_offset, -1)
    if request.timestamp_ms == LATEST_TIERED_TIMESTAMP:
        await trio.lowlevel.checkpoint()
        return ListOffsetsResponse(-1, -1)
    target_ms = request.timestamp_ms
    if target_ms == MAX_TIMESTAMP:
        # The first record carrying the largest timestamp, as Kafka finds it:
        # the first batch reaching that timestamp holds it.
        target_ms = await log.max_timestamp_ms()
        if target_ms < 0:
            return ListOffsetsResponse(-1, -1)  # an empty log
    elif target_ms < 0:
        raise InvalidArgumentError(
            f"timestamp {target_ms} is neither a time nor one of -1 (latest), -2 (earliest), "
            "-3 (max timestamp), -4 (earliest local), -5 (latest tiered)"
        )
    header = await log.offset_for_timestamp(target_ms)
    if header is None:
        return ListOffsetsResponse(-1, -1)
    # The index finds the batch; the exact record needs its timestamps. Records
    # below the log start (DeleteRecords inside a segment) are not answers, so
    # when the batch found holds only such, the search goes on batch by batch.
    offset = max(header.base_offset, log.log_start_offset)
    while offset < log.high_watermark.value:
        result = await log.read(offset, 1)
        if not result.data:
            break
        batch, records = decode_batch(result.data)
        for record in records:
            assert record.timestamp_ms is not None and record.offset is not None
            if record.offset >= offset and record.timestamp_ms >= target_ms:
                return ListOffsetsResponse(record.offset, record.timestamp_ms)
        offset = batch.base_offset + batch.last_offset_delta + 1
    return ListOffsetsResponse(-1, -1)


#: DeleteRecords' offset meaning "up to the high watermark".
DELETE_TO_HIGH_WATERMARK = -1


async def delete_records(
    ctx: HandlerContext, request: DeleteRecordsRequest
) -> DeleteRecordsResponse:
    """Move a partition's log start offset up, durably, as Kafka's DeleteRecords does.

    Records below it are no longer readable; whole segments below it are
    deleted. An offset past the high watermark, or negative other than -1,
    is OFFSET_OUT_OF_RANGE; an internal topic is INVALID_TOPIC_EXCEPTION.
    """
    info = ctx.cluster.current.topics.get(request.topic)
    if info is not None and info.internal:
        raise InvalidTopicError(f"cannot delete records of internal topic {request.topic!r}")
    log = ctx.shard.log(request.topic, request.partition)
    offset = request.offset
    if offset == DELETE_TO_HIGH_WATERMARK:
        offset = log.high_watermark.value
    if offset < 0:
        raise OffsetOutOfRangeError(
            f"cannot delete records before offset {offset}: give an offset or -1 (the end)",
            log_start_offset=log.log_start_offset,
            high_watermark=log.high_watermark.value,
        )
    return DeleteRecordsResponse(await log.delete_records_before(offset))


async def commit_offsets(ctx: HandlerContext, request: OffsetCommitRequest) -> OffsetCommitResponse:
    """Durably commit offsets; partitions of unknown topics get an error each, as in Kafka.

    Only the group's coordinator commits (NOT_COORDINATOR elsewhere).
    """
    validate_group(request.group)
    store = await ctx.shard.offsets(request.group)
    code = ctx.shard.coordinator.validate_offset_commit(
        group_id=request.group,
        generation_id=request.generation_id,
        member_id=request.member_id,
        group_instance_id=request.group_instance_id,
        api_version=request.api_version,
    )
    if code != ErrorCode.none:
        refusal = GroupCoordinatorError(
            f"group {request.group!r} refused the commit of member {request.member_id!r} "
            f"generation {request.generation_id}",
            code,
        )
        return OffsetCommitResponse({tp: refusal for tp in request.offsets})
    errors: dict[tuple[str, int], TrioringError | None] = {}
    accepted = {}
    metadata = ctx.cluster.current
    for (topic, partition), committed in request.offsets.items():
        error: TrioringError | None = None
        info = metadata.topics.get(topic)
        if info is None or info.internal or not 0 <= partition < info.partitions:
            # Any worker's partition may be committed: the coordinator keeps
            # the group's offsets, whoever owns the partition.
            error = UnknownTopicOrPartitionError(f"unknown partition {topic}-{partition}")
        elif committed.offset < 0:
            error = InvalidArgumentError(
                f"cannot commit negative offset {committed.offset} for {topic}-{partition}"
            )
        errors[(topic, partition)] = error
        if error is None:
            accepted[(topic, partition)] = committed
    await store.commit(request.group, accepted)
    return OffsetCommitResponse(errors)


async def fetch_offsets(ctx: HandlerContext, request: OffsetFetchRequest) -> OffsetFetchResponse:
    validate_group(request.group)
    store = ctx.shard.offsets_if_open(request.group)
    if request.member_id is not None or request.member_epoch >= 0:
        code, message = ctx.shard.coordinator.validate_offset_fetch(
            request.group, request.member_id, request.member_epoch
        )
        if code != ErrorCode.none:
            raise GroupCoordinatorError(message, code)
    await trio.lowlevel.checkpoint()
    committed = {} if store is None else store.committed(request.group)
    if request.partitions is not None:
        wanted = set(request.partitions)
        committed = {tp: value for tp, value in committed.items() if tp in wanted}
    return OffsetFetchResponse(committed)

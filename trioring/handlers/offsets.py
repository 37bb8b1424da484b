"""ListOffsets, OffsetCommit and OffsetFetch."""

from __future__ import annotations

from trioring.core.offsets import validate_group
from trioring.errors import GroupCoordinatorError, InvalidArgumentError, TrioringError
from trioring.handlers.context import HandlerContext
from trioring.handlers.messages import (
    EARLIEST_TIMESTAMP,
    LATEST_TIMESTAMP,
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
    if request.timestamp_ms == EARLIEST_TIMESTAMP:
        return ListOffsetsResponse(log.log_start_offset, -1)
    if request.timestamp_ms < 0:
        raise InvalidArgumentError(
            f"timestamp {request.timestamp_ms} is neither a time nor -1 (latest) / -2 (earliest)"
        )
    header = await log.offset_for_timestamp(request.timestamp_ms)
    if header is None:
        return ListOffsetsResponse(-1, -1)
    # The index finds the batch; the exact record needs its timestamps.
    result = await log.read(header.base_offset, header.size_bytes)
    _, records = decode_batch(result.data)
    for record in records:
        assert record.timestamp_ms is not None and record.offset is not None
        if record.timestamp_ms >= request.timestamp_ms:
            return ListOffsetsResponse(record.offset, record.timestamp_ms)
    raise AssertionError("a batch with max timestamp >= target holds such a record")


async def commit_offsets(ctx: HandlerContext, request: OffsetCommitRequest) -> OffsetCommitResponse:
    """Durably commit offsets; partitions of unknown topics get an error each, as in Kafka."""
    validate_group(request.group)
    code = ctx.shard.groups.validate_offset_commit(
        group_id=request.group, generation_id=request.generation_id, member_id=request.member_id
    )
    if code != 0:
        refusal = GroupCoordinatorError(
            f"group {request.group!r} refused the commit of member {request.member_id!r} "
            f"generation {request.generation_id}",
            code,
        )
        return OffsetCommitResponse({tp: refusal for tp in request.offsets})
    errors: dict[tuple[str, int], TrioringError | None] = {}
    accepted = {}
    for (topic, partition), committed in request.offsets.items():
        try:
            ctx.shard.log(topic, partition)
            if committed.offset < 0:
                raise InvalidArgumentError(
                    f"cannot commit negative offset {committed.offset} for {topic}-{partition}"
                )
        except TrioringError as error:
            errors[(topic, partition)] = error
            continue
        accepted[(topic, partition)] = committed
        errors[(topic, partition)] = None
    await ctx.shard.offsets.commit(request.group, accepted)
    return OffsetCommitResponse(errors)


async def fetch_offsets(ctx: HandlerContext, request: OffsetFetchRequest) -> OffsetFetchResponse:
    validate_group(request.group)
    committed = ctx.shard.offsets.committed(request.group)
    if request.partitions is not None:
        wanted = set(request.partitions)
        committed = {tp: value for tp, value in committed.items() if tp in wanted}
    return OffsetFetchResponse(committed)

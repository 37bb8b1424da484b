"""Fetch: read whole batches from several partitions, long-polling for new data.

Waiting is done on each partition's watchable high watermark, never by
polling: the handler returns as soon as ``min_bytes`` are available, an
error is found, or ``max_wait_ms`` passes.
"""

from __future__ import annotations

import contextlib

import trio

from trioring._constants import FETCH_BYTES_MAX, FETCH_RESPONSE_BYTES_MAX, FETCH_ZERO_COPY_BYTES_MIN
from trioring.errors import InvalidArgumentError, OffsetOutOfRangeError, TrioringError
from trioring.handlers.context import HandlerContext
from trioring.handlers.messages import FetchedPartition, FetchPartition, FetchRequest, FetchResponse
from trioring.protocol.records import iterate_batches
from trioring.storage.log import ReadResult, SlicedReadResult
from trioring.storage.slices import LogSlice


async def _read(
    ctx: HandlerContext, want: FetchPartition, budget_bytes: int, first: bool
) -> FetchedPartition:
    """Read one partition within the byte limits.

    As in Kafka (KIP-74), only the first batch of the first partition with
    data may exceed the limits, so a consumer never stalls on a big batch;
    every other partition returns only whole batches that fit. A bad offset
    or limit is that partition's error, as in Kafka, not the whole fetch's.
    """
    try:
        if want.offset < 0:
            log = ctx.shard.log(want.topic, want.partition)
            raise OffsetOutOfRangeError(
                f"{want.topic}-{want.partition}: offset {want.offset} is negative",
                log_start_offset=log.log_start_offset,
                high_watermark=log.high_watermark.value,
            )
        if want.max_bytes < 0:
            raise InvalidArgumentError(
                f"{want.topic}-{want.partition}: partition max bytes {want.max_bytes} is negative"
            )
        log = ctx.shard.log(want.topic, want.partition)
        max_bytes = max(0, min(want.max_bytes, budget_bytes, FETCH_BYTES_MAX))
        result: ReadResult | SlicedReadResult
        if ctx.hold_slice is None:
            result = await log.read(want.offset, max_bytes, first_batch_may_exceed=first)
        else:
            result = await log.read_sliced(
                want.offset,
                max_bytes,
                first_batch_may_exceed=first,
                bytes_min=FETCH_ZERO_COPY_BYTES_MIN,
            )
            if isinstance(result.data, LogSlice):
                ctx.hold_slice(result.data)  # before any await: the holder releases it
        return FetchedPartition(
            want.topic, want.partition, result.data, result.high_watermark, result.log_start_offset
        )
    except TrioringError as error:
        return FetchedPartition(want.topic, want.partition, b"", -1, -1, error)


async def _read_all(ctx: HandlerContext, request: FetchRequest) -> list[FetchedPartition]:
    # Kafka's broker caps the client's max_bytes with its fetch.max.bytes too.
    budget = min(request.max_bytes, FETCH_RESPONSE_BYTES_MAX)
    results: list[FetchedPartition] = []
    for want in request.partitions:
        first = not any(r.records for r in results)
        result = await _read(ctx, want, budget, first)
        budget -= len(result.records)
        results.append(result)
    return results


async def fetch(ctx: HandlerContext, request: FetchRequest) -> FetchResponse:
    if request.max_wait_ms < 0 or request.min_bytes < 0 or request.max_bytes < 0:
        raise InvalidArgumentError("max_wait_ms, min_bytes and max_bytes must be >= 0")
    deadline = trio.current_time() + request.max_wait_ms / 1000
    stopping = ctx.stopping
    ends: list[int] | None = None
    while True:
        results = await _read_all(ctx, request)
        total = sum(len(r.records) for r in results)
        if (
            total >= request.min_bytes
            or any(r.error is not None for r in results)
            or trio.current_time() >= deadline
            or (stopping is not None and stopping.is_set())
        ):
            return FetchResponse(tuple(results))
        # Not answered yet: the slices read go back now, the next read makes new ones.
        await _release(results)
        ends = _watch_offsets(request, results, ends)
        with trio.move_on_at(deadline):
            await _wait_for_any(ctx, request, ends)


async def _release(results: list[FetchedPartition]) -> None:
    for result in results:
        if isinstance(result.records, LogSlice):
            await result.records.release()


def _next_offset(want: FetchPartition, fetched: FetchedPartition) -> int:
    """The offset after the data returned (the requested one if none)."""
    if isinstance(fetched.records, LogSlice):
        return fetched.records.next_offset
    next_offset = want.offset
    for _, header in iterate_batches(fetched.records):
        next_offset = header.next_offset
    return next_offset


def _watch_offsets(
    request: FetchRequest, results: list[FetchedPartition], previous: list[int] | None
) -> list[int]:
    """Per partition, the offset past which new data could add to this fetch.

    The end of the data returned, not the reported high watermark: the
    watermark may already cover batches appended while the read ran. But a
    read that ended where the one before it did, below the watermark, was
    cut by its byte budget: more data there cannot add to this fetch, so
    only data past the watermark counts (else the fetch would read again
    and again until max_wait; Kafka waits).
    """
    ends = []
    for index, (want, result) in enumerate(zip(request.partitions, results, strict=True)):
        end = _next_offset(want, result)
        if previous is not None and previous[index] >= end and result.high_watermark > end:
            end = max(previous[index], result.high_watermark)
        ends.append(end)
    return ends


async def _wait_for_any(ctx: HandlerContext, request: FetchRequest, ends: list[int]) -> None:
    """Return once any partition has data past its offset in ``ends``."""
    arrived = trio.Event()

    async def watch(topic: str, partition: int, next_offset: int) -> None:
        # E.g. the partition went offline after a disk error: the next read
        # reports it as that partition's error, not the whole fetch's.
        with contextlib.suppress(TrioringError):
            await ctx.shard.log(topic, partition).wait_for_data(next_offset)
        arrived.set()

    async def stop() -> None:
        assert ctx.stopping is not None
        await ctx.stopping.wait()
        arrived.set()

    async with trio.open_nursery() as nursery:
        for want, end in zip(request.partitions, ends, strict=True):
            nursery.start_soon(watch, want.topic, want.partition, end)
        if ctx.stopping is not None:
            nursery.start_soon(stop)
        await arrived.wait()
        nursery.cancel_scope.cancel()

"""Fetch: read whole batches from several partitions, long-polling for new data.

Waiting is done on each partition's watchable high watermark, never by
polling: the handler returns as soon as ``min_bytes`` are available, an
error is found, or ``max_wait_ms`` passes.
"""

from __future__ import annotations

import contextlib

import trio

from trioring._constants import FETCH_BYTES_MAX, FETCH_RESPONSE_BYTES_MAX
from trioring.errors import InvalidArgumentError, OffsetOutOfRangeError, TrioringError
from trioring.handlers.context import HandlerContext
from trioring.handlers.messages import FetchedPartition, FetchPartition, FetchRequest, FetchResponse
from trioring.protocol.records import iterate_batches


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
        result = await log.read(want.offset, max_bytes, first_batch_may_exceed=first)
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
        with trio.move_on_at(deadline):
            await _wait_for_any(ctx, request, results)


def _next_offset(want: FetchPartition, fetched: FetchedPartition) -> int:
    """The offset after the data returned (the requested one if none)."""
    next_offset = want.offset
    for _, header in iterate_batches(fetched.records):
        next_offset = header.next_offset
    return next_offset


async def _wait_for_any(
    ctx: HandlerContext, request: FetchRequest, seen: list[FetchedPartition]
) -> None:
    """Return once any partition has data past what this fetch returned.

    Watch the end of the data returned, not the reported high watermark: the
    watermark may already cover batches the read did not include.
    """
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
        for want, result in zip(request.partitions, seen, strict=True):
            nursery.start_soon(watch, want.topic, want.partition, _next_offset(want, result))
        if ctx.stopping is not None:
            nursery.start_soon(stop)
        await arrived.wait()
        nursery.cancel_scope.cancel()

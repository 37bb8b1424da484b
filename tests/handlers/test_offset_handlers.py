"""Tests of list_offsets, commit_offsets, fetch_offsets, create_topic and handler composition."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

import trioring
from trioring import CommittedOffset, Record
from trioring.errors import (
    InvalidArgumentError,
    TopicExistsError,
    UnknownTopicOrPartitionError,
)
from trioring.handlers import (
    HandlerContext,
    Handlers,
    commit_offsets,
    compose,
    create_topic,
    fetch_offsets,
    list_offsets,
)
from trioring.handlers.messages import (
    EARLIEST_LOCAL_TIMESTAMP,
    EARLIEST_TIMESTAMP,
    LATEST_TIERED_TIMESTAMP,
    LATEST_TIMESTAMP,
    MAX_TIMESTAMP,
    CreateTopicRequest,
    ListOffsetsRequest,
    ListOffsetsResponse,
    OffsetCommitRequest,
    OffsetFetchRequest,
)


@pytest.fixture
async def broker(tmp_path) -> AsyncIterator[trioring.Broker]:
    async with trioring.open_broker(tmp_path) as opened:
        await opened.create_topic("t", partitions=2)
        yield opened


@pytest.fixture
async def context(broker) -> HandlerContext:
    return broker.handler_context()


async def test_handler_context_defaults(broker):
    context = broker.handler_context()
    assert context.client_id == "embedded"
    assert broker.handler_context(client_id="c1").client_id == "c1"


# --- list_offsets --------------------------------------------------------------------------


async def test_list_offsets_special_timestamps(broker, context):
    await broker.produce("t", 0, [Record(value=b"a", timestamp_ms=t) for t in (10, 20, 30)])
    latest = await list_offsets(context, ListOffsetsRequest("t", 0, LATEST_TIMESTAMP))
    earliest = await list_offsets(context, ListOffsetsRequest("t", 0, EARLIEST_TIMESTAMP))
    assert latest == ListOffsetsResponse(3, -1)
    assert earliest == ListOffsetsResponse(0, -1)
    assert await list_offsets(context, ListOffsetsRequest("t", 1, LATEST_TIMESTAMP)) == (
        ListOffsetsResponse(0, -1)
    )


async def test_list_offsets_by_timestamp_reports_the_record_timestamp(broker, context):
    await broker.produce("t", 0, [Record(value=b"a", timestamp_ms=t) for t in (10, 20, 30)])
    await broker.produce("t", 0, [Record(value=b"b", timestamp_ms=t) for t in (50, 40)])
    cases = {0: (0, 10), 10: (0, 10), 11: (1, 20), 30: (2, 30), 31: (3, 50), 45: (3, 50)}
    for timestamp, (offset, found) in cases.items():
        response = await list_offsets(context, ListOffsetsRequest("t", 0, timestamp))
        assert response == ListOffsetsResponse(offset, found), timestamp
    assert await list_offsets(context, ListOffsetsRequest("t", 0, 51)) == ListOffsetsResponse(
        -1, -1
    )


async def test_list_offsets_kafka_4_special_timestamps(broker, context):
    # -3 max timestamp (KIP-734), -4 earliest local (KIP-405), -5 latest tiered (KIP-1005).
    assert await list_offsets(context, ListOffsetsRequest("t", 0, MAX_TIMESTAMP)) == (
        ListOffsetsResponse(-1, -1)  # an empty log has no max
    )
    await broker.produce("t", 0, [Record(value=b"a", timestamp_ms=t) for t in (10, 70, 30)])
    await broker.produce("t", 0, [Record(value=b"b", timestamp_ms=t) for t in (50, 70, 40)])
    # The first record carrying the largest timestamp.
    assert await list_offsets(context, ListOffsetsRequest("t", 0, MAX_TIMESTAMP)) == (
        ListOffsetsResponse(1, 70)
    )
    assert await list_offsets(context, ListOffsetsRequest("t", 0, EARLIEST_LOCAL_TIMESTAMP)) == (
        ListOffsetsResponse(0, -1)
    )
    assert await list_offsets(context, ListOffsetsRequest("t", 0, LATEST_TIERED_TIMESTAMP)) == (
        ListOffsetsResponse(-1, -1)
    )


async def test_list_offsets_errors(context):
    with pytest.raises(InvalidArgumentError):
        await list_offsets(context, ListOffsetsRequest("t", 0, -6))
    with pytest.raises(UnknownTopicOrPartitionError):
        await list_offsets(context, ListOffsetsRequest("t", 2, LATEST_TIMESTAMP))
    with pytest.raises(UnknownTopicOrPartitionError):
        await list_offsets(context, ListOffsetsRequest("u", 0, 0))


# --- commit_offsets / fetch_offsets --------------------------------------------------------


async def test_commit_reports_errors_per_partition(context):
    request = OffsetCommitRequest(
        "g",
        {
            ("t", 0): CommittedOffset(5),
            ("t", 9): CommittedOffset(1),
            ("u", 0): CommittedOffset(1),
            ("t", 1): CommittedOffset(-1),
        },
    )
    response = await commit_offsets(context, request)
    assert set(response.errors) == set(request.offsets)
    assert response.errors[("t", 0)] is None
    assert isinstance(response.errors[("t", 9)], UnknownTopicOrPartitionError)
    assert isinstance(response.errors[("u", 0)], UnknownTopicOrPartitionError)
    assert isinstance(response.errors[("t", 1)], InvalidArgumentError)
    fetched = await fetch_offsets(context, OffsetFetchRequest("g"))
    assert fetched.offsets == {("t", 0): CommittedOffset(5)}


async def test_commit_with_every_partition_rejected_writes_nothing(broker, context):
    offsets_log = (await broker.shard.offsets("g")).log
    end = offsets_log.log_end_offset
    response = await commit_offsets(
        context, OffsetCommitRequest("g", {("nope", 0): CommittedOffset(1)})
    )
    assert isinstance(response.errors[("nope", 0)], UnknownTopicOrPartitionError)
    assert offsets_log.log_end_offset == end
    assert (await fetch_offsets(context, OffsetFetchRequest("g"))).offsets == {}


async def test_fetch_offsets_filters_partitions(context):
    offsets = {("t", 0): CommittedOffset(1, "meta"), ("t", 1): CommittedOffset(2)}
    await commit_offsets(context, OffsetCommitRequest("g", offsets))
    everything = await fetch_offsets(context, OffsetFetchRequest("g"))
    assert everything.offsets == offsets
    some = await fetch_offsets(context, OffsetFetchRequest("g", (("t", 1), ("t", 7))))
    assert some.offsets == {("t", 1): CommittedOffset(2)}
    none = await fetch_offsets(context, OffsetFetchRequest("g", ()))
    assert none.offsets == {}
    other = await fetch_offsets(context, OffsetFetchRequest("other"))
    assert other.offsets == {}


async def test_group_ids_are_validated(context):
    with pytest.raises(InvalidArgumentError):
        await commit_offsets(context, OffsetCommitRequest("", {("t", 0): CommittedOffset(1)}))
    with pytest.raises(InvalidArgumentError):
        await fetch_offsets(context, OffsetFetchRequest(""))


# --- create_topic -----------------------------------------------------------------------------


async def test_create_topic_handler(broker, context):
    config = trioring.LogConfig(retention_bytes=1 << 20)
    response = await create_topic(context, CreateTopicRequest("new", 3, config))
    assert response.topic.name == "new"
    assert response.topic.partitions == 3
    assert response.topic.config == config
    assert broker.topics()["new"] == response.topic
    defaulted = await create_topic(context, CreateTopicRequest("defaulted"))
    assert defaulted.topic.partitions == broker.config.default_partitions
    assert defaulted.topic.config == broker.config.log
    with pytest.raises(TopicExistsError):
        await create_topic(context, CreateTopicRequest("new", 1))


# --- composition --------------------------------------------------------------------------------


async def test_compose_runs_the_first_middleware_outermost():
    calls: list[str] = []

    def tag(name: str) -> trioring.Middleware:
        def middleware(handler: trioring.Handler) -> trioring.Handler:
            async def wrapped(ctx, request):
                calls.append(f"{name} in")
                result = await handler(ctx, request)
                calls.append(f"{name} out")
                return f"{name}({result})"

            return wrapped

        return middleware

    async def base(ctx, request):
        calls.append("base")
        return request

    handler = compose(base, tag("a"), tag("b"))
    assert await handler(None, "r") == "a(b(r))"
    assert calls == ["a in", "b in", "base", "b out", "a out"]
    assert compose(base) is base


async def test_handlers_wrap_applies_to_every_handler_and_keeps_the_original():
    seen: list[str] = []

    def spy(handler: trioring.Handler) -> trioring.Handler:
        async def wrapped(ctx, request):
            seen.append(type(request).__name__)
            raise RuntimeError("stop")

        return wrapped

    plain = Handlers()
    wrapped = plain.wrap(spy)
    assert plain.produce is not wrapped.produce
    names = ["produce", "fetch", "list_offsets", "commit_offsets", "fetch_offsets", "create_topic"]
    for name in names:
        with pytest.raises(RuntimeError, match="stop"):
            await getattr(wrapped, name)(None, name)
    assert seen == ["str"] * len(names)
    assert Handlers().wrap() == Handlers()

"""Tests of OffsetStore: committed offsets in an internal log, with snapshot compaction."""

from __future__ import annotations

import os
import tempfile

import pytest
import trio
from hypothesis import event, given, settings
from hypothesis import strategies as st

import trioring
from trioring.core.offsets import CommittedOffset, OffsetStore
from trioring.errors import InvalidArgumentError, ProtocolError
from trioring.protocol.records import Record, build_batch
from trioring.storage.log import LogConfig, PartitionLog
from trioring.uring import FallbackBackend

OFFSETS_DIRECTORY = "__consumer_offsets-0"

COMPACT_BYTES = 1024

Model = dict[str, dict[tuple[str, int], CommittedOffset]]


def clock() -> float:
    return 1_700_000_000.0


async def open_store(data_dir: str, compact_bytes: int = COMPACT_BYTES) -> OffsetStore:
    return await OffsetStore.open(
        os.path.join(str(data_dir), OFFSETS_DIRECTORY),
        FallbackBackend(),
        clock,
        compact_bytes=compact_bytes,
    )


def state(store: OffsetStore) -> Model:
    return {group: store.committed(group) for group in store.groups()}


def log_files(data_dir: str) -> list[str]:
    directory = os.path.join(str(data_dir), OFFSETS_DIRECTORY)
    return sorted(name for name in os.listdir(directory) if name.endswith(".log"))


async def test_commits_survive_reopen(tmp_path):
    store = await open_store(tmp_path)
    try:
        assert store.groups() == []
        assert store.committed("g") == {}
        await store.commit("g", {("t", 0): CommittedOffset(5, metadata="m", leader_epoch=2)})
        await store.commit("g", {("t", 1): CommittedOffset(7), ("t", 0): CommittedOffset(6)})
        await store.commit("h", {("u", 3): CommittedOffset(0, commit_timestamp_ms=123)})
        expected = {
            "g": {("t", 0): CommittedOffset(6), ("t", 1): CommittedOffset(7)},
            "h": {("u", 3): CommittedOffset(0, commit_timestamp_ms=123)},
        }
        assert state(store) == expected
        # committed() returns a copy.
        store.committed("g").clear()
        assert state(store) == expected
        # A commit returns once durable.
        assert store.log.durable_offset == store.log.log_end_offset
    finally:
        await store.aclose()
    store = await open_store(tmp_path)
    try:
        assert store.groups() == ["g", "h"]
        assert state(store) == expected
    finally:
        await store.aclose()


async def test_commit_validation(tmp_path):
    store = await open_store(tmp_path)
    try:
        with pytest.raises(InvalidArgumentError):
            await store.commit("", {("t", 0): CommittedOffset(1)})
        with pytest.raises(InvalidArgumentError):
            await store.commit("g" * 32_768, {("t", 0): CommittedOffset(1)})
        end = store.log.log_end_offset
        await store.commit("empty", {})
        assert store.log.log_end_offset == end
        assert store.groups() == []
        await store.commit("g" * 32_767, {("t", 0): CommittedOffset(1)})
        assert store.groups() == ["g" * 32_767]
    finally:
        await store.aclose()


async def test_delete_group(tmp_path):
    store = await open_store(tmp_path)
    try:
        await store.commit("doomed", {("t", 0): CommittedOffset(1), ("t", 1): CommittedOffset(2)})
        await store.commit("kept", {("t", 0): CommittedOffset(3)})
        await store.delete_group("doomed")
        await store.delete_group("never-existed")
        assert store.groups() == ["kept"]
        assert store.committed("doomed") == {}
    finally:
        await store.aclose()
    store = await open_store(tmp_path)
    try:
        assert state(store) == {"kept": {("t", 0): CommittedOffset(3)}}
        await store.commit("doomed", {("t", 5): CommittedOffset(9)})
    finally:
        await store.aclose()
    store = await open_store(tmp_path)
    try:
        assert state(store) == {
            "kept": {("t", 0): CommittedOffset(3)},
            "doomed": {("t", 5): CommittedOffset(9)},
        }
    finally:
        await store.aclose()


async def test_maybe_compact_does_nothing_while_small(tmp_path):
    store = await open_store(tmp_path)
    try:
        assert not await store.maybe_compact()
        await store.commit("g", {("t", 0): CommittedOffset(1)})
        assert not await store.maybe_compact()
        assert store.log.log_start_offset == 0
    finally:
        await store.aclose()


async def test_maybe_compact_shrinks_the_log(tmp_path):
    store = await open_store(tmp_path)
    try:
        for i in range(100):
            await store.commit(f"g{i % 3}", {("t", i % 4): CommittedOffset(i, metadata="x" * 20)})
        before = state(store)
        size_before = store.log.size_bytes
        end_before = store.log.log_end_offset
        assert size_before > 4 * COMPACT_BYTES
        assert store.log.segment_count >= 4
        assert len(log_files(tmp_path)) == store.log.segment_count

        assert await store.maybe_compact()
        assert state(store) == before
        live = sum(len(offsets) for offsets in before.values())
        assert live == 12
        # The log is now the snapshot alone.
        assert store.log.log_start_offset == end_before
        assert store.log.log_end_offset == end_before + live
        assert store.log.size_bytes < size_before / 4
        assert len(log_files(tmp_path)) == store.log.segment_count == 1
        assert not await store.maybe_compact()
    finally:
        await store.aclose()
    store = await open_store(tmp_path)
    try:
        assert state(store) == before
        await store.commit("g0", {("t", 0): CommittedOffset(1000)})
    finally:
        await store.aclose()
    store = await open_store(tmp_path)
    try:
        assert store.committed("g0")[("t", 0)] == CommittedOffset(1000)
    finally:
        await store.aclose()


async def test_compaction_after_deleting_every_group_leaves_an_empty_log(tmp_path):
    store = await open_store(tmp_path)
    try:
        for i in range(40):
            await store.commit(f"g{i % 2}", {("t", i): CommittedOffset(i, metadata="y" * 30)})
        await store.delete_group("g0")
        await store.delete_group("g1")
        await store.commit("g2", {("t", 0): CommittedOffset(0)})
        await store.delete_group("g2")
        assert store.groups() == []
        assert await store.maybe_compact()
        assert store.log.log_start_offset == store.log.log_end_offset
        assert store.log.size_bytes == 0
    finally:
        await store.aclose()
    store = await open_store(tmp_path)
    try:
        assert store.groups() == []
        await store.commit("g0", {("t", 1): CommittedOffset(1)})
        assert state(store) == {"g0": {("t", 1): CommittedOffset(1)}}
    finally:
        await store.aclose()


async def test_commits_during_compaction_are_kept(tmp_path):
    store = await open_store(tmp_path)
    model: Model = {}
    compactions = 0
    try:

        async def committer(name: str) -> None:
            for i in range(150):
                offsets = {("t", i % 5): CommittedOffset(i, metadata=name * 10)}
                await store.commit(name, offsets)
                model.setdefault(name, {}).update(offsets)

        async def compactor(done: trio.Event) -> None:
            nonlocal compactions
            while not done.is_set():
                compactions += await store.maybe_compact()
                await trio.lowlevel.checkpoint()

        done = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(compactor, done)
            async with trio.open_nursery() as committers:
                committers.start_soon(committer, "a")
                committers.start_soon(committer, "b")
            done.set()
        assert compactions > 0
        assert state(store) == model
    finally:
        await store.aclose()
    store = await open_store(tmp_path)
    try:
        assert state(store) == model
    finally:
        await store.aclose()


async def test_malformed_offsets_log_record_is_a_protocol_error(tmp_path):
    backend = FallbackBackend()
    log = await PartitionLog.open(
        os.path.join(str(tmp_path), OFFSETS_DIRECTORY), LogConfig(), backend, clock
    )
    info = await log.append(build_batch([Record(key=b"not json", value=b"{}")], now_ms=0))
    await log.flush(info.last_offset + 1)
    await log.aclose()
    with pytest.raises(ProtocolError, match="malformed"):
        await open_store(tmp_path)


async def test_broker_compacts_the_offsets_log_in_upkeep(tmp_path):
    config = trioring.BrokerConfig(data_dir=tmp_path, offsets_log_compact_bytes=COMPACT_BYTES)
    async with trioring.open_broker(config) as broker:
        await broker.create_topic("t", partitions=2)
        for i in range(60):
            await broker.commit_offsets("g", {("t", i % 2): i})
        segments = broker.shard.offsets_if_open("g").log.segment_count
        assert segments >= 3
        await broker.shard.run_upkeep_now()
        assert broker.shard.offsets_if_open("g").log.segment_count < segments
        assert await broker.committed_offsets("g") == {("t", 0): 58, ("t", 1): 59}
    async with trioring.open_broker(config) as broker:
        assert await broker.committed_offsets("g") == {("t", 0): 58, ("t", 1): 59}


# --- model-based: any sequence of commits, deletes, compactions and reopens -------------

groups = st.sampled_from(["g0", "g1", "g2", "group with spaces ✓"])
partitions = st.tuples(st.sampled_from(["t", "u.v"]), st.integers(0, 3))
committed_offsets = st.builds(
    CommittedOffset,
    offset=st.integers(0, 2**62),
    metadata=st.text(max_size=150),
    leader_epoch=st.integers(-1, 100),
)
operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("commit"),
            groups,
            st.dictionaries(partitions, committed_offsets, min_size=1, max_size=5),
        ),
        st.tuples(st.just("commit"), groups, st.dictionaries(partitions, committed_offsets)),
        st.tuples(st.just("delete"), groups),
        st.just(("compact",)),
        st.just(("reopen",)),
    ),
    min_size=5,
    max_size=60,
)


def normalize(model: Model) -> Model:
    return {group: dict(offsets) for group, offsets in model.items() if offsets}


async def run_model(data_dir: str, ops: list[tuple[object, ...]]) -> None:
    model: Model = {}
    store = await open_store(data_dir)
    try:
        for op in ops:
            kind = op[0]
            if kind == "commit":
                group, offsets = op[1], op[2]
                assert isinstance(group, str) and isinstance(offsets, dict)
                await store.commit(group, offsets)
                model.setdefault(group, {}).update(offsets)
            elif kind == "delete":
                group = op[1]
                assert isinstance(group, str)
                await store.delete_group(group)
                model.pop(group, None)
            elif kind == "compact":
                end_before = store.log.log_end_offset
                if await store.maybe_compact():
                    event("compacted")
                    live = sum(len(offsets) for offsets in model.values())
                    assert store.log.log_start_offset == end_before
                    assert store.log.log_end_offset == end_before + live
                    assert len(log_files(data_dir)) == store.log.segment_count
            else:
                await store.aclose()
                store = await open_store(data_dir)
            assert state(store) == normalize(model)
    finally:
        await store.aclose()
    store = await open_store(data_dir)
    try:
        assert state(store) == normalize(model)
        assert store.groups() == sorted(normalize(model))
    finally:
        await store.aclose()


@settings(max_examples=80, deadline=None)
@given(ops=operations)
def test_state_matches_a_dict_model_across_compactions_and_reopens(ops):
    with tempfile.TemporaryDirectory() as data_dir:
        trio.run(run_model, data_dir, ops)

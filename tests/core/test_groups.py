"""Tests of GroupCoordinator: Kafka's classic consumer-group protocol, in virtual time."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Sequence

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from kio.schema.errors import ErrorCode

from trioring._constants import (
    GROUP_PROTOCOLS_MAX,
    MEMBER_ASSIGNMENT_BYTES_MAX,
    MEMBER_METADATA_BYTES_MAX,
)
from trioring.cluster.model import ClusterMetadata
from trioring.core.groups import (
    GroupConfig,
    GroupCoordinator,
    JoinGroupMember,
    JoinGroupResult,
    LeaveGroupMemberResult,
    SyncGroupResult,
)
from trioring.core.groups.state import subscribed_topics
from trioring.core.offsets import CommittedOffset, OffsetStore
from trioring.errors import InvalidArgumentError
from trioring.uring import FallbackBackend

OFFSETS_DIRECTORY = "__consumer_offsets-0"
NONE = ErrorCode.none
COORDINATOR_NOT_AVAILABLE = ErrorCode.coordinator_not_available
GROUP_MAX_SIZE_REACHED = ErrorCode.group_max_size_reached
ILLEGAL_GENERATION = ErrorCode.illegal_generation
INCONSISTENT_GROUP_PROTOCOL = ErrorCode.inconsistent_group_protocol
INVALID_GROUP_ID = ErrorCode.invalid_group_id
INVALID_REQUEST = ErrorCode.invalid_request
INVALID_SESSION_TIMEOUT = ErrorCode.invalid_session_timeout
MEMBER_ID_REQUIRED = ErrorCode.member_id_required
REBALANCE_IN_PROGRESS = ErrorCode.rebalance_in_progress
UNKNOWN_MEMBER_ID = ErrorCode.unknown_member_id

GROUP = "g"
SESSION_MS = 10_000
REBALANCE_MS = 30_000
RANGE = (("range", b"range-metadata"),)


@pytest.fixture
async def offsets(tmp_path) -> AsyncIterator[OffsetStore]:
    store = await OffsetStore.open(
        str(tmp_path / OFFSETS_DIRECTORY), FallbackBackend(), time.time, compact_bytes=1 << 20
    )
    try:
        yield store
    finally:
        await store.aclose()


@pytest.fixture
async def coordinator(offsets) -> AsyncIterator[GroupCoordinator]:
    async with GroupCoordinator.open(offsets=offsets) as opened:
        yield opened
        opened._assert_invariants()


async def join(
    coordinator: GroupCoordinator,
    member_id: str = "",
    *,
    group_id: str = GROUP,
    protocols: Sequence[tuple[str, bytes]] = RANGE,
    protocol_type: str = "consumer",
    session_timeout_ms: int = SESSION_MS,
    rebalance_timeout_ms: int | None = REBALANCE_MS,
    client_id: str = "client",
    api_version: int = 5,
) -> JoinGroupResult:
    return await coordinator.join_group(
        group_id=group_id,
        member_id=member_id,
        protocol_type=protocol_type,
        protocols=protocols,
        session_timeout_ms=session_timeout_ms,
        rebalance_timeout_ms=rebalance_timeout_ms,
        client_id=client_id,
        client_host="/127.0.0.1",
        api_version=api_version,
    )


async def join_new(coordinator: GroupCoordinator, **kwargs) -> JoinGroupResult:
    """A new member's JoinGroup v4+: ask for a member id, then join with it."""
    first = await join(coordinator, **kwargs)
    assert first.error_code == MEMBER_ID_REQUIRED, first
    assert first.member_id
    return await join(coordinator, first.member_id, **kwargs)


async def sync(
    coordinator: GroupCoordinator,
    joined: JoinGroupResult,
    assignments: dict[str, bytes] | None = None,
    *,
    group_id: str = GROUP,
) -> SyncGroupResult:
    return await coordinator.sync_group(
        group_id=group_id,
        generation_id=joined.generation_id,
        member_id=joined.member_id,
        assignments=assignments or {},
    )


def heartbeat(coordinator: GroupCoordinator, joined: JoinGroupResult) -> int:
    return coordinator.heartbeat(
        group_id=GROUP, generation_id=joined.generation_id, member_id=joined.member_id
    )


def describe(coordinator: GroupCoordinator, group_id: str = GROUP):
    [description] = coordinator.describe_groups([group_id])
    return description


async def join_all(coordinator: GroupCoordinator, joins) -> list[JoinGroupResult]:
    """Run JoinGroup calls (zero-argument async functions) concurrently."""
    results: list[JoinGroupResult | None] = [None] * len(joins)

    async def run(index: int) -> None:
        results[index] = await joins[index]()

    async with trio.open_nursery() as nursery:
        for index in range(len(joins)):
            nursery.start_soon(run, index)
    assert all(result is not None for result in results)
    return results  # type: ignore[return-value]


async def stable_group(
    coordinator: GroupCoordinator, count: int, **kwargs
) -> list[JoinGroupResult]:
    """``count`` members join at once and sync; the leader assigns ``b"a-" + member id``."""
    joined = await join_all(coordinator, [lambda: join_new(coordinator, **kwargs)] * count)
    [leader] = [result for result in joined if result.member_id == result.leader]
    assignments = {member.member_id: b"a-" + member.member_id.encode() for member in leader.members}
    synced: dict[str, SyncGroupResult] = {}
    group_id = kwargs.get("group_id", GROUP)

    async def run_sync(result: JoinGroupResult) -> None:
        synced[result.member_id] = await sync(
            coordinator, result, assignments if result is leader else None, group_id=group_id
        )

    async with trio.open_nursery() as nursery:
        for result in joined:
            nursery.start_soon(run_sync, result)
    for result in joined:
        assert synced[result.member_id].assignment == b"a-" + result.member_id.encode()
    assert describe(coordinator, group_id).state == "Stable"
    coordinator._assert_invariants()
    return joined


# --- One member ---------------------------------------------------------------------


async def test_single_member_is_stable_within_the_initial_delay(coordinator, autojump_clock):
    start = trio.current_time()
    first = await join(coordinator, client_id="consumer-1", api_version=4)
    assert first == JoinGroupResult(MEMBER_ID_REQUIRED, member_id=first.member_id)
    assert first.member_id.startswith("consumer-1-")
    assert describe(coordinator).state == "Empty"

    joined = await join(coordinator, first.member_id, client_id="consumer-1", api_version=4)
    assert joined == JoinGroupResult(
        NONE,
        generation_id=1,
        protocol_type="consumer",
        protocol_name="range",
        leader=first.member_id,
        member_id=first.member_id,
        members=(JoinGroupMember(first.member_id, None, b"range-metadata"),),
    )
    assert trio.current_time() - start == pytest.approx(0.3)
    assert describe(coordinator).state == "CompletingRebalance"
    assert heartbeat(coordinator, joined) == NONE

    synced = await sync(coordinator, joined, {joined.member_id: b"all partitions"})
    assert synced == SyncGroupResult(NONE, b"all partitions", "consumer", "range")
    assert trio.current_time() - start < 1.0
    description = describe(coordinator)
    assert description.state == "Stable"
    assert description.protocol_type == "consumer"
    assert description.protocol_data == "range"
    assert description.generation_id == 1
    [member] = description.members
    assert (member.member_id, member.client_id, member.client_host) == (
        joined.member_id,
        "consumer-1",
        "/127.0.0.1",
    )
    assert (member.metadata, member.assignment) == (b"range-metadata", b"all partitions")

    # Heartbeats keep it stable far past the session timeout.
    for _ in range(10):
        await trio.sleep(3)
        assert heartbeat(coordinator, joined) == NONE
    # Syncing again in Stable returns the same assignment.
    assert (await sync(coordinator, joined)).assignment == b"all partitions"
    coordinator._assert_invariants()


async def test_old_join_versions_get_a_member_id_at_once(coordinator, autojump_clock):
    joined = await join(coordinator, client_id="old", api_version=3)
    assert joined.error_code == NONE
    assert joined.member_id.startswith("old-")
    assert joined.leader == joined.member_id
    assert joined.generation_id == 1


async def test_v0_join_uses_the_session_timeout_as_rebalance_timeout(coordinator, autojump_clock):
    start = trio.current_time()
    joined = await join(coordinator, api_version=0, rebalance_timeout_ms=None)
    assert joined.error_code == NONE
    assert trio.current_time() - start == pytest.approx(0.3)


async def test_unused_member_id_expires_after_the_session_timeout(coordinator, autojump_clock):
    first = await join(coordinator, api_version=4)
    await trio.sleep(SESSION_MS / 1000 + 0.1)
    late = await join(coordinator, first.member_id, api_version=4)
    assert late.error_code == UNKNOWN_MEMBER_ID
    coordinator._assert_invariants()


async def test_initial_delay_is_extended_by_newcomers_up_to_the_rebalance_timeout(
    coordinator, autojump_clock
):
    start = trio.current_time()
    joined_at: dict[int, float] = {}

    async def member(index: int) -> JoinGroupResult:
        await trio.sleep(0.25 * index)
        result = await join_new(coordinator, rebalance_timeout_ms=1000)
        joined_at[index] = trio.current_time() - start
        return result

    results = await join_all(coordinator, [lambda i=i: member(i) for i in range(4)])
    # Newcomers every 0.25 s keep extending the 0.3 s delay, but the join
    # phase ends at the 1 s rebalance timeout.
    assert joined_at == dict.fromkeys(range(4), pytest.approx(1.0))
    assert {result.generation_id for result in results} == {1}
    [leader] = [result for result in results if result.members]
    assert len(leader.members) == 4


# --- Several members ------------------------------------------------------------------


async def test_three_members_join_one_generation(coordinator, autojump_clock):
    joined = await join_all(coordinator, [lambda: join_new(coordinator)] * 3)
    ids = {result.member_id for result in joined}
    assert len(ids) == 3
    assert {result.generation_id for result in joined} == {1}
    assert {result.protocol_name for result in joined} == {"range"}
    [leader_id] = {result.leader for result in joined}
    assert leader_id in ids
    for result in joined:
        if result.member_id == leader_id:
            assert {member.member_id for member in result.members} == ids
            assert {member.metadata for member in result.members} == {b"range-metadata"}
        else:
            assert result.members == ()

    # Followers wait for the leader's SyncGroup, then get their own share.
    [leader] = [result for result in joined if result.member_id == leader_id]
    followers = [result for result in joined if result is not leader]
    assignments = {member_id: f"part-{member_id}".encode() for member_id in ids}
    synced: dict[str, SyncGroupResult] = {}

    async def run_sync(result: JoinGroupResult, assignment: dict[str, bytes] | None) -> None:
        synced[result.member_id] = await sync(coordinator, result, assignment)

    async with trio.open_nursery() as nursery:
        for follower in followers:
            nursery.start_soon(run_sync, follower, None)
        await trio.testing.wait_all_tasks_blocked()
        assert synced == {}
        assert describe(coordinator).state == "CompletingRebalance"
        nursery.start_soon(run_sync, leader, assignments)
    assert {member_id: result.assignment for member_id, result in synced.items()} == assignments
    assert describe(coordinator).state == "Stable"
    for result in joined:
        assert heartbeat(coordinator, result) == NONE


async def test_leader_may_leave_members_unassigned(coordinator, autojump_clock):
    joined = await join_all(coordinator, [lambda: join_new(coordinator)] * 2)
    [leader] = [result for result in joined if result.members]
    [follower] = [result for result in joined if not result.members]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sync, coordinator, follower)
        await trio.testing.wait_all_tasks_blocked()
        # Assignments for unknown members are ignored.
        await sync(coordinator, leader, {leader.member_id: b"x", "stranger": b"y"})
    assert (await sync(coordinator, follower)).assignment == b""


async def test_member_leaves_and_the_others_rebalance(coordinator, autojump_clock):
    joined = await stable_group(coordinator, 3)
    leaver = next(result for result in joined if result.member_id == result.leader)
    stayers = [result for result in joined if result is not leaver]
    result = coordinator.leave_group(group_id=GROUP, member_ids=[leaver.member_id])
    assert result.error_code == NONE
    assert result.members == (LeaveGroupMemberResult(leaver.member_id, NONE),)
    assert describe(coordinator).state == "PreparingRebalance"
    for stayer in stayers:
        assert heartbeat(coordinator, stayer) == REBALANCE_IN_PROGRESS
    assert heartbeat(coordinator, leaver) == UNKNOWN_MEMBER_ID

    rejoined = await join_all(
        coordinator, [lambda s=stayer: join(coordinator, s.member_id) for stayer in stayers]
    )
    assert {result.generation_id for result in rejoined} == {2}
    [leader] = [result for result in rejoined if result.members]
    assert {member.member_id for member in leader.members} == {s.member_id for s in stayers}
    assert leader.leader in {s.member_id for s in stayers}
    # Leaving twice: the member is unknown now.
    again = coordinator.leave_group(group_id=GROUP, member_ids=[leaver.member_id])
    assert again.members == (LeaveGroupMemberResult(leaver.member_id, UNKNOWN_MEMBER_ID),)


async def test_last_member_leaving_empties_the_group(coordinator, autojump_clock):
    [joined] = await stable_group(coordinator, 1)
    coordinator.leave_group(group_id=GROUP, member_ids=[joined.member_id])
    description = describe(coordinator)
    assert (description.state, description.members) == ("Empty", ())
    assert description.protocol_type == "consumer"
    assert description.generation_id == 2
    # A new member starts the next generation.
    rejoined = await join_new(coordinator)
    assert rejoined.generation_id == 3


async def test_session_timeout_removes_a_silent_member(coordinator, autojump_clock, caplog):
    caplog.set_level(logging.INFO, logger="trioring.groups")
    joined = await stable_group(coordinator, 3)
    silent, *alive = joined
    start = trio.current_time()

    async def heartbeat_until_rebalance(member: JoinGroupResult) -> float:
        for _ in range(10):
            await trio.sleep(3)
            code = heartbeat(coordinator, member)
            if code == REBALANCE_IN_PROGRESS:
                return trio.current_time() - start
            assert code == NONE
        raise AssertionError("the silent member was never removed")

    told = await join_all(coordinator, [lambda m=m: heartbeat_until_rebalance(m) for m in alive])
    assert told == pytest.approx(
        [12.0, 12.0]
    )  # heartbeats at 3 s intervals; the session ends at 10 s
    assert silent.member_id not in {member.member_id for member in describe(coordinator).members}
    assert "session timed out" in caplog.text

    rejoined = await join_all(
        coordinator, [lambda m=m: join(coordinator, m.member_id) for m in alive]
    )
    assert {result.generation_id for result in rejoined} == {2}
    [leader] = [result for result in rejoined if result.members]
    assert {member.member_id for member in leader.members} == {m.member_id for m in alive}
    await join_all(
        coordinator,
        [lambda r=r: sync(coordinator, r, {m.member_id: b"" for m in alive}) for r in rejoined],
    )
    assert describe(coordinator).state == "Stable"


async def test_all_members_silent_empties_the_group(coordinator, autojump_clock):
    await stable_group(coordinator, 2)
    await trio.sleep(SESSION_MS / 1000 - 0.1)
    assert describe(coordinator).state == "Stable"
    await trio.sleep(0.2)
    description = describe(coordinator)
    assert (description.state, description.members) == ("Empty", ())
    coordinator._assert_invariants()


async def test_rebalance_timeout_drops_members_that_do_not_rejoin(coordinator, autojump_clock):
    joined = await stable_group(
        coordinator, 3, session_timeout_ms=60_000, rebalance_timeout_ms=8000
    )
    straggler, *others = joined
    start = trio.current_time()
    times: list[float] = []

    async def newcomer() -> JoinGroupResult:
        result = await join_new(coordinator, session_timeout_ms=60_000, rebalance_timeout_ms=8000)
        times.append(trio.current_time() - start)
        return result

    async def rejoin(member: JoinGroupResult) -> JoinGroupResult:
        # It learns about the rebalance from its heartbeat.
        await trio.sleep(1)
        assert heartbeat(coordinator, member) == REBALANCE_IN_PROGRESS
        return await join(coordinator, member.member_id, session_timeout_ms=60_000)

    async def straggle() -> JoinGroupResult:
        # Heartbeats keep the straggler's session alive, but it never rejoins.
        await trio.sleep(1)
        assert heartbeat(coordinator, straggler) == REBALANCE_IN_PROGRESS
        return straggler

    results = await join_all(
        coordinator, [newcomer, straggle, *(lambda m=m: rejoin(m) for m in others)]
    )
    del results[1]
    assert times == pytest.approx([8.0])
    assert {result.generation_id for result in results} == {2}
    [leader] = [result for result in results if result.members]
    assert {member.member_id for member in leader.members} == {r.member_id for r in results}
    assert straggler.member_id not in {r.member_id for r in results}
    assert heartbeat(coordinator, straggler) == UNKNOWN_MEMBER_ID


async def test_follower_rejoin_in_stable_answers_at_once_but_leader_rejoin_rebalances(
    coordinator, autojump_clock
):
    joined = await stable_group(coordinator, 2)
    [leader] = [result for result in joined if result.members]
    [follower] = [result for result in joined if not result.members]
    again = await join(coordinator, follower.member_id)
    assert again == follower
    assert describe(coordinator).state == "Stable"

    async def leader_rejoins() -> JoinGroupResult:
        return await join(coordinator, leader.member_id)

    async def follower_rejoins() -> JoinGroupResult:
        await trio.testing.wait_all_tasks_blocked()
        assert describe(coordinator).state == "PreparingRebalance"
        assert heartbeat(coordinator, follower) == REBALANCE_IN_PROGRESS
        return await join(coordinator, follower.member_id)

    results = await join_all(coordinator, [leader_rejoins, follower_rejoins])
    assert {result.generation_id for result in results} == {2}


async def test_a_follower_waiting_for_the_assignment_stays_alive(coordinator, autojump_clock):
    joined = await join_all(coordinator, [lambda: join_new(coordinator)] * 2)
    [leader] = [result for result in joined if result.members]
    [follower] = [result for result in joined if not result.members]

    async def slow_leader() -> SyncGroupResult:
        # The leader takes longer than a session timeout to assign, heartbeating meanwhile.
        for _ in range(5):
            await trio.sleep(3)
            assert heartbeat(coordinator, leader) == NONE
        return await sync(coordinator, leader, {follower.member_id: b"f"})

    results = await join_all(coordinator, [slow_leader, lambda: sync(coordinator, follower)])
    assert [result.error_code for result in results] == [NONE, NONE]
    assert results[1].assignment == b"f"
    # Its session starts again once it has its assignment.
    assert heartbeat(coordinator, follower) == NONE


async def test_next_leader_is_the_oldest_remaining_member(coordinator, autojump_clock):
    async def member(index: int) -> JoinGroupResult:
        await trio.sleep(0.01 * index)
        return await join_new(coordinator)

    first, second, third = await join_all(coordinator, [lambda i=i: member(i) for i in range(3)])
    assert first.leader == first.member_id
    coordinator.leave_group(group_id=GROUP, member_ids=[first.member_id])
    assert describe(coordinator).leader == second.member_id
    rejoined = await join_all(
        coordinator,
        [lambda: join(coordinator, third.member_id), lambda: join(coordinator, second.member_id)],
    )
    assert {result.leader for result in rejoined} == {second.member_id}


async def test_a_member_that_never_syncs_is_removed(coordinator, autojump_clock):
    joined = await join_all(
        coordinator, [lambda: join_new(coordinator, rebalance_timeout_ms=5000)] * 2
    )
    [leader] = [result for result in joined if result.members]
    [follower] = [result for result in joined if not result.members]
    start = trio.current_time()
    # The follower heartbeats but never sends SyncGroup: it is removed when
    # the rebalance timeout has passed since the join phase ended.
    await sync(coordinator, leader, {})
    assert heartbeat(coordinator, follower) == NONE
    await trio.sleep(4.9)
    assert heartbeat(coordinator, follower) == NONE
    await trio.sleep(0.2)
    assert heartbeat(coordinator, follower) == UNKNOWN_MEMBER_ID
    assert heartbeat(coordinator, leader) == REBALANCE_IN_PROGRESS
    assert trio.current_time() - start == pytest.approx(5.1)


# --- Protocols ----------------------------------------------------------------------


async def test_protocol_chosen_by_votes(coordinator, autojump_clock):
    preferences = [
        (("range", b"r1"), ("roundrobin", b"rr1")),
        (("roundrobin", b"rr2"), ("range", b"r2")),
        (("sticky", b"s3"), ("roundrobin", b"rr3"), ("range", b"r3")),
    ]

    async def member(index: int) -> JoinGroupResult:
        # The first to join leads; it prefers range, but the others outvote it.
        await trio.sleep(0.01 * index)
        return await join_new(coordinator, protocols=preferences[index])

    results = await join_all(coordinator, [lambda i=i: member(i) for i in range(3)])
    assert {result.protocol_name for result in results} == {"roundrobin"}
    [leader] = [result for result in results if result.members]
    assert leader.leader == results[0].member_id
    assert [member.metadata for member in leader.members] == [b"rr1", b"rr2", b"rr3"]


async def test_protocol_vote_tie_goes_to_the_leaders_preference(coordinator, autojump_clock):
    async def member(index: int) -> JoinGroupResult:
        await trio.sleep(0.01 * index)
        protocols = [(("b", b""), ("a", b"")), (("a", b""), ("b", b""))][index]
        return await join_new(coordinator, protocols=protocols)

    results = await join_all(coordinator, [lambda i=i: member(i) for i in range(2)])
    assert {result.protocol_name for result in results} == {"b"}


async def test_inconsistent_protocols_are_refused(coordinator, autojump_clock):
    [joined] = await stable_group(coordinator, 1)
    # No protocol in common: refused for new members (both join versions) ...
    assert (await join(coordinator, protocols=(("sticky", b""),))).error_code == (
        INCONSISTENT_GROUP_PROTOCOL
    )
    assert (await join(coordinator, protocols=(("sticky", b""),), api_version=3)).error_code == (
        INCONSISTENT_GROUP_PROTOCOL
    )
    # ... and another protocol type is refused.
    assert (await join(coordinator, protocol_type="connect")).error_code == (
        INCONSISTENT_GROUP_PROTOCOL
    )
    assert (await join(coordinator, protocols=())).error_code == INCONSISTENT_GROUP_PROTOCOL
    # A lone member may not change the protocol type ...
    result = await join(coordinator, joined.member_id, protocol_type="connect")
    assert result.error_code == INCONSISTENT_GROUP_PROTOCOL
    # ... but may change its protocols: only the others constrain it.
    changed = await join(coordinator, joined.member_id, protocols=(("sticky", b"s"),))
    assert (changed.error_code, changed.protocol_name, changed.generation_id) == (NONE, "sticky", 2)
    assert describe(coordinator).state == "CompletingRebalance"
    coordinator._assert_invariants()


async def test_inconsistent_protocols_for_an_existing_member(coordinator, autojump_clock):
    joined = await stable_group(coordinator, 2)
    result = await join(coordinator, joined[0].member_id, protocols=(("sticky", b""),))
    assert result.error_code == INCONSISTENT_GROUP_PROTOCOL
    assert describe(coordinator).state == "Stable"


# --- Error paths ----------------------------------------------------------------------


async def test_join_errors(offsets, autojump_clock):
    config = GroupConfig(group_members_max=2)
    async with GroupCoordinator.open(config, offsets=offsets) as coordinator:
        for session_timeout_ms in (5_999, 1_800_001):
            result = await join(coordinator, session_timeout_ms=session_timeout_ms)
            assert result.error_code == INVALID_SESSION_TIMEOUT
        assert (await join(coordinator, group_id="")).error_code == INVALID_GROUP_ID
        assert (await join(coordinator, "nobody")).error_code == UNKNOWN_MEMBER_ID
        assert describe(coordinator).state == "Dead"  # failed joins create no group
        joined = await stable_group(coordinator, 2)
        assert (await join(coordinator, "nobody")).error_code == UNKNOWN_MEMBER_ID
        assert (await join(coordinator)).error_code == GROUP_MAX_SIZE_REACHED
        assert (await join(coordinator, api_version=3)).error_code == GROUP_MAX_SIZE_REACHED
        # A member leaving makes room again.
        coordinator.leave_group(group_id=GROUP, member_ids=[joined[0].member_id])
        assert (await join(coordinator)).error_code == MEMBER_ID_REQUIRED
        coordinator._assert_invariants()


def test_config_is_validated():
    with pytest.raises(InvalidArgumentError):
        GroupConfig(group_min_session_timeout_ms=10_000, group_max_session_timeout_ms=9_000)
    with pytest.raises(InvalidArgumentError):
        GroupConfig(initial_rebalance_delay_ms=-1)
    with pytest.raises(InvalidArgumentError):
        GroupConfig(group_members_max=0)


async def test_oversized_requests_are_refused(coordinator, autojump_clock):
    too_many = tuple((f"p{i}", b"") for i in range(GROUP_PROTOCOLS_MAX + 1))
    assert (await join(coordinator, protocols=too_many)).error_code == INVALID_REQUEST
    too_big = (("range", bytes(MEMBER_METADATA_BYTES_MAX + 1)),)
    assert (await join(coordinator, protocols=too_big)).error_code == INVALID_REQUEST
    assert (await join(coordinator, rebalance_timeout_ms=0)).error_code == INVALID_REQUEST
    [joined] = await join_all(coordinator, [lambda: join_new(coordinator)])
    big_assignment = {joined.member_id: bytes(MEMBER_ASSIGNMENT_BYTES_MAX + 1)}
    assert (await sync(coordinator, joined, big_assignment)).error_code == INVALID_REQUEST
    # The refusal changed nothing: a proper assignment still goes through.
    assert (await sync(coordinator, joined, {joined.member_id: b"ok"})).assignment == b"ok"


async def test_leave_group_errors_and_pending_members(coordinator, autojump_clock):
    assert coordinator.leave_group(group_id="", member_ids=["m"]).error_code == INVALID_GROUP_ID
    unknown = coordinator.leave_group(group_id="nope", member_ids=["m"])
    assert unknown.members == (LeaveGroupMemberResult("m", UNKNOWN_MEMBER_ID),)
    first = await join(coordinator, api_version=4)
    left = coordinator.leave_group(group_id=GROUP, member_ids=[first.member_id, "stranger"])
    assert left.members == (
        LeaveGroupMemberResult(first.member_id, NONE),
        LeaveGroupMemberResult("stranger", UNKNOWN_MEMBER_ID),
    )
    assert (await join(coordinator, first.member_id)).error_code == UNKNOWN_MEMBER_ID
    coordinator._assert_invariants()


async def test_pending_member_holds_back_a_rebalance_until_it_joins(coordinator, autojump_clock):
    [old] = await stable_group(coordinator, 1)
    start = trio.current_time()
    newcomer = await join(coordinator, api_version=4)
    assert newcomer.error_code == MEMBER_ID_REQUIRED

    async def newcomer_joins() -> JoinGroupResult:
        await trio.sleep(2)
        return await join(coordinator, newcomer.member_id)

    async def old_member_rejoins() -> JoinGroupResult:
        # The leader asks for a rebalance; the member id handed out above is
        # expected to join it, so the join phase waits for it.
        return await join(coordinator, old.member_id)

    results = await join_all(coordinator, [old_member_rejoins, newcomer_joins])
    assert trio.current_time() - start == pytest.approx(2)
    assert {result.generation_id for result in results} == {2}
    assert {member.member_id for member in results[0].members} == {
        old.member_id,
        newcomer.member_id,
    }


async def test_heartbeat_errors(coordinator, autojump_clock):
    assert coordinator.heartbeat(group_id="", generation_id=1, member_id="m") == INVALID_GROUP_ID
    assert coordinator.heartbeat(group_id="x", generation_id=1, member_id="m") == UNKNOWN_MEMBER_ID
    joined = await join_all(coordinator, [lambda: join_new(coordinator)] * 2)
    member = joined[0]
    # CompletingRebalance: heartbeats are fine.
    assert heartbeat(coordinator, member) == NONE
    assert (
        coordinator.heartbeat(group_id=GROUP, generation_id=1, member_id="stranger")
        == UNKNOWN_MEMBER_ID
    )
    assert (
        coordinator.heartbeat(group_id=GROUP, generation_id=0, member_id=member.member_id)
        == ILLEGAL_GENERATION
    )
    # A new member starts a rebalance: the others are told to rejoin.
    async with trio.open_nursery() as nursery:
        nursery.start_soon(join_new, coordinator)
        await trio.testing.wait_all_tasks_blocked()
        assert describe(coordinator).state == "PreparingRebalance"
        assert heartbeat(coordinator, member) == REBALANCE_IN_PROGRESS
        coordinator.leave_group(group_id=GROUP, member_ids=[result.member_id for result in joined])


async def test_sync_errors(coordinator, autojump_clock):
    async def sync_as(member_id: str, generation_id: int, group_id: str = GROUP) -> int:
        result = await coordinator.sync_group(
            group_id=group_id, generation_id=generation_id, member_id=member_id, assignments={}
        )
        return result.error_code

    assert await sync_as("m", 1, group_id="") == INVALID_GROUP_ID
    assert await sync_as("m", 1, group_id="unknown") == UNKNOWN_MEMBER_ID
    joined = await join_all(coordinator, [lambda: join_new(coordinator)] * 2)
    [leader] = [result for result in joined if result.members]
    assert await sync_as("stranger", 1) == UNKNOWN_MEMBER_ID
    assert await sync_as(leader.member_id, 2) == ILLEGAL_GENERATION
    wrong_protocol = await coordinator.sync_group(
        group_id=GROUP,
        generation_id=1,
        member_id=leader.member_id,
        assignments={},
        protocol_type="consumer",
        protocol_name="roundrobin",
    )
    assert wrong_protocol.error_code == INCONSISTENT_GROUP_PROTOCOL
    async with trio.open_nursery() as nursery:
        nursery.start_soon(join_new, coordinator)
        await trio.testing.wait_all_tasks_blocked()
        assert await sync_as(leader.member_id, 1) == REBALANCE_IN_PROGRESS
        coordinator.leave_group(group_id=GROUP, member_ids=[result.member_id for result in joined])


async def test_rebalance_while_followers_wait_for_sync(coordinator, autojump_clock):
    joined = await join_all(coordinator, [lambda: join_new(coordinator)] * 3)
    followers = [result for result in joined if not result.members]
    results = await join_all(
        coordinator,
        [
            lambda: sync(coordinator, followers[0]),
            lambda: sync(coordinator, followers[1]),
            # A member leaves while the followers wait: they must rejoin.
            lambda: leave_soon(coordinator, followers[1].member_id),
        ],
    )
    assert [result.error_code for result in results[:2]] == [REBALANCE_IN_PROGRESS] * 2
    assert describe(coordinator).state == "PreparingRebalance"


async def leave_soon(coordinator: GroupCoordinator, member_id: str) -> SyncGroupResult:
    await trio.testing.wait_all_tasks_blocked()
    coordinator.leave_group(group_id=GROUP, member_ids=[member_id])
    return SyncGroupResult(NONE)


async def test_offset_commit_validation(coordinator, autojump_clock):
    def validate(generation_id: int, member_id: str = "", group_id: str = GROUP) -> int:
        return coordinator.validate_offset_commit(
            group_id=group_id, generation_id=generation_id, member_id=member_id
        )

    # No group: simple commits are fine, generation-aware ones are stale.
    assert validate(-1) == NONE
    assert validate(3, "m") == ILLEGAL_GENERATION
    assert validate(-1, group_id="") == INVALID_GROUP_ID

    joined = await join_all(coordinator, [lambda: join_new(coordinator)] * 2)
    [leader] = [result for result in joined if result.members]
    [follower] = [result for result in joined if not result.members]
    assert validate(-1) == UNKNOWN_MEMBER_ID
    assert validate(1, "stranger") == UNKNOWN_MEMBER_ID
    assert validate(2, leader.member_id) == ILLEGAL_GENERATION
    assert validate(1, leader.member_id) == REBALANCE_IN_PROGRESS  # CompletingRebalance
    await join_all(
        coordinator,
        [lambda: sync(coordinator, follower), lambda: sync(coordinator, leader, {})],
    )
    assert validate(1, leader.member_id) == NONE

    # A commit counts as a heartbeat: a member that only commits stays.
    for _ in range(5):
        await trio.sleep(4)
        assert validate(1, leader.member_id) == NONE
        assert heartbeat(coordinator, follower) == NONE
    assert describe(coordinator).state == "Stable"

    # PreparingRebalance: still allowed (a consumer commits before rejoining).
    async with trio.open_nursery() as nursery:
        nursery.start_soon(join_new, coordinator)
        await trio.testing.wait_all_tasks_blocked()
        assert describe(coordinator).state == "PreparingRebalance"
        assert validate(1, leader.member_id) == NONE
        coordinator.leave_group(group_id=GROUP, member_ids=[leader.member_id, follower.member_id])

    # Members gone: simple commits are allowed again.
    coordinator.leave_group(
        group_id=GROUP, member_ids=[m.member_id for m in describe(coordinator).members]
    )
    assert describe(coordinator).state == "Empty"
    assert validate(-1) == NONE


# --- Cancellation ---------------------------------------------------------------------


async def test_cancelled_join_leaves_the_member_until_its_session_ends(coordinator, autojump_clock):
    first = await join(coordinator, api_version=4)
    with trio.move_on_after(0.1) as scope:
        await join(coordinator, first.member_id, api_version=4)
    assert scope.cancelled_caught
    coordinator._assert_invariants()
    description = describe(coordinator)
    assert description.state == "PreparingRebalance"
    assert [member.member_id for member in description.members] == [first.member_id]

    # Another member joins; the join phase ends with both (the first one's
    # JoinGroup counts, as Kafka cannot see the client went away).
    other = await join_new(coordinator)
    assert other.generation_id == 1
    assert other.leader == first.member_id
    coordinator._assert_invariants()

    # The lost leader never syncs: its session ends, the group rebalances and
    # the waiting follower is told to rejoin.
    start = trio.current_time()
    waited = await sync(coordinator, other)
    assert waited.error_code == REBALANCE_IN_PROGRESS
    assert trio.current_time() - start == pytest.approx(SESSION_MS / 1000)
    alone = await join(coordinator, other.member_id)
    assert (alone.generation_id, alone.leader) == (2, other.member_id)
    assert (await sync(coordinator, alone, {other.member_id: b"all"})).assignment == b"all"
    coordinator._assert_invariants()


async def test_cancelled_sync_does_not_corrupt_the_group(coordinator, autojump_clock):
    joined = await join_all(coordinator, [lambda: join_new(coordinator)] * 2)
    [leader] = [result for result in joined if result.members]
    [follower] = [result for result in joined if not result.members]
    with trio.move_on_after(1) as scope:
        await sync(coordinator, follower)
    assert scope.cancelled_caught
    coordinator._assert_invariants()
    # The follower reconnects and syncs again while the leader syncs.
    results = await join_all(
        coordinator,
        [
            lambda: sync(coordinator, follower),
            lambda: sync(coordinator, follower),
            lambda: sync(coordinator, leader, {follower.member_id: b"f", leader.member_id: b"l"}),
        ],
    )
    assert [result.assignment for result in results] == [b"f", b"f", b"l"]
    assert describe(coordinator).state == "Stable"
    coordinator._assert_invariants()


async def test_closing_answers_waiting_callers(offsets, autojump_clock):
    results: list[object] = []
    async with trio.open_nursery() as nursery:
        async with GroupCoordinator.open(offsets=offsets) as coordinator:

            async def run_join() -> None:
                results.append(await join(coordinator, api_version=3))

            nursery.start_soon(run_join)
            await trio.testing.wait_all_tasks_blocked()
        await trio.testing.wait_all_tasks_blocked()
        assert results == [JoinGroupResult(COORDINATOR_NOT_AVAILABLE)]
    assert (await join(coordinator)).error_code == COORDINATOR_NOT_AVAILABLE
    assert coordinator.heartbeat(group_id=GROUP, generation_id=1, member_id="m") == (
        COORDINATOR_NOT_AVAILABLE
    )
    assert coordinator.list_groups().error_code == COORDINATOR_NOT_AVAILABLE
    assert describe(coordinator).error_code == COORDINATOR_NOT_AVAILABLE


# --- Describe and list -------------------------------------------------------------------


async def test_describe_and_list_groups(offsets, autojump_clock):
    await offsets.commit("offsets-only", {("t", 0): CommittedOffset(5)})
    async with GroupCoordinator.open(offsets=offsets) as coordinator:
        await stable_group(coordinator, 2)
        [empty] = await stable_group(coordinator, 1, group_id="emptied")
        coordinator.leave_group(group_id="emptied", member_ids=[empty.member_id])

        descriptions = {
            description.group_id: description
            for description in coordinator.describe_groups(
                [GROUP, "offsets-only", "unknown", "emptied"]
            )
        }
        assert {group_id: d.state for group_id, d in descriptions.items()} == {
            GROUP: "Stable",
            "offsets-only": "Empty",
            "unknown": "Dead",
            "emptied": "Empty",
        }
        assert all(d.error_code == NONE for d in descriptions.values())
        assert descriptions["offsets-only"].protocol_type == ""
        assert descriptions["offsets-only"].members == ()
        assert descriptions["emptied"].protocol_type == "consumer"
        assert len(descriptions[GROUP].members) == 2

        listed = coordinator.list_groups()
        assert listed.error_code == NONE
        assert [(g.group_id, g.protocol_type, g.state) for g in listed.groups] == [
            ("emptied", "consumer", "Empty"),
            (GROUP, "consumer", "Stable"),
            ("offsets-only", "", "Empty"),
        ]
        stable = coordinator.list_groups(states=["Stable"])
        assert [g.group_id for g in stable.groups] == [GROUP]


async def test_describe_hides_metadata_until_stable(coordinator, autojump_clock):
    await join_new(coordinator)
    description = describe(coordinator)
    assert description.state == "CompletingRebalance"
    assert description.protocol_data == ""
    [member] = description.members
    assert (member.metadata, member.assignment) == (b"", b"")


async def test_oldest_empty_group_is_forgotten_at_the_group_limit(offsets, autojump_clock):
    async with GroupCoordinator.open(GroupConfig(groups_max=2), offsets=offsets) as coordinator:
        [a] = await stable_group(coordinator, 1, group_id="a")
        await stable_group(coordinator, 1, group_id="b")
        # Both groups have members: no room for a third.
        assert (await join(coordinator, group_id="c")).error_code == GROUP_MAX_SIZE_REACHED
        coordinator.leave_group(group_id="a", member_ids=[a.member_id])
        assert (await join(coordinator, group_id="c")).error_code == MEMBER_ID_REQUIRED
        assert [g.group_id for g in coordinator.list_groups().groups] == ["b", "c"]


# --- Randomized -----------------------------------------------------------------------


class NoCommittedOffsets:
    def groups(self) -> list[str]:
        return []


class Client:
    """A simulated consumer: ``step`` does what a real one would do next."""

    def __init__(self, index: int, protocols: Sequence[str]) -> None:
        self.index = index
        self.protocols = tuple((name, name.encode()) for name in protocols)
        self.member_id = ""
        self.generation_id = -1
        self.synced_generation_id = -1
        self.must_rejoin = True
        self.leader = False
        self.member_ids: list[str] = []
        self.busy: trio.CancelScope | None = None

    def forget(self) -> None:
        self.member_id = ""
        self.generation_id = -1
        self.synced_generation_id = -1
        self.must_rejoin = True
        self.leader = False


OPERATIONS = st.lists(
    st.tuples(
        st.sampled_from(["step"] * 6 + ["leave", "commit", "cancel"] + ["sleep"] * 3),
        st.integers(0, 3),
        st.sampled_from([0.1, 0.1, 0.5, 3.0, 11.0, 25.0]),
    ),
    min_size=30,
    max_size=100,
)
PROTOCOL_LISTS = st.lists(
    st.lists(
        st.sampled_from(["range", "roundrobin", "sticky"]), min_size=1, max_size=3, unique=True
    ),
    min_size=4,
    max_size=4,
)


#: (initial_rebalance_delay_ms, rebalance_timeout_ms, JoinGroup version)
TIMINGS = st.sampled_from([(300, 20_000, 4), (0, 1_000, 3), (3_000, 6_000, 5)])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations=OPERATIONS, protocol_lists=PROTOCOL_LISTS, timing=TIMINGS)
def test_random_operations_keep_the_invariants(operations, protocol_lists, timing):
    clock = trio.testing.MockClock(autojump_threshold=0)
    trio.run(run_operations, operations, protocol_lists, timing, clock=clock)


async def run_operations(operations, protocol_lists, timing=(300, 20_000, 4)) -> None:
    initial_rebalance_delay_ms, rebalance_timeout_ms, api_version = timing
    config = GroupConfig(initial_rebalance_delay_ms=initial_rebalance_delay_ms)
    clients = [Client(index, protocols) for index, protocols in enumerate(protocol_lists)]
    generations_seen = [0]
    stable_sizes = [0]

    async with GroupCoordinator.open(config, offsets=NoCommittedOffsets()) as coordinator:

        async def run_join(client: Client) -> None:
            with trio.CancelScope() as scope:
                client.busy = scope
                for _ in range(2):  # the MEMBER_ID_REQUIRED dance takes two calls
                    result = await coordinator.join_group(
                        group_id=GROUP,
                        member_id=client.member_id,
                        protocol_type="consumer",
                        protocols=client.protocols,
                        session_timeout_ms=SESSION_MS,
                        rebalance_timeout_ms=rebalance_timeout_ms,
                        client_id=f"c{client.index}",
                        client_host="h",
                        api_version=api_version,
                    )
                    if result.error_code != MEMBER_ID_REQUIRED:
                        break
                    client.member_id = result.member_id
                event(f"join error {result.error_code}")
                if result.error_code == NONE:
                    assert result.generation_id >= generations_seen[-1]
                    generations_seen.append(result.generation_id)
                    assert result.protocol_name in dict(client.protocols)
                    client.generation_id = result.generation_id
                    client.must_rejoin = False
                    client.leader = result.leader == result.member_id
                    client.member_ids = [member.member_id for member in result.members]
                    assert client.leader == bool(result.members)
                elif result.error_code in (UNKNOWN_MEMBER_ID, INCONSISTENT_GROUP_PROTOCOL):
                    client.forget()
                else:
                    raise AssertionError(result)
            client.busy = None
            if scope.cancelled_caught:
                # A client that lost its connection mid-join starts over.
                client.forget()

        async def run_sync(client: Client) -> None:
            with trio.CancelScope() as scope:
                client.busy = scope
                generation_id, member_id = client.generation_id, client.member_id
                assignments = {}
                if client.leader:
                    assignments = {m: f"{m}@{generation_id}".encode() for m in client.member_ids}
                result = await coordinator.sync_group(
                    group_id=GROUP,
                    generation_id=generation_id,
                    member_id=member_id,
                    assignments=assignments,
                )
                event(f"sync error {result.error_code}")
                if result.error_code == NONE:
                    # Each member gets what this generation's leader gave it.
                    assert result.assignment == f"{member_id}@{generation_id}".encode()
                    client.synced_generation_id = generation_id
                elif result.error_code == UNKNOWN_MEMBER_ID:
                    client.forget()
                else:
                    assert result.error_code in (ILLEGAL_GENERATION, REBALANCE_IN_PROGRESS)
                    client.must_rejoin = True
            client.busy = None

        def step(client: Client) -> None:
            if client.busy is not None:
                return
            if client.must_rejoin:
                nursery.start_soon(run_join, client)
            elif client.synced_generation_id != client.generation_id:
                nursery.start_soon(run_sync, client)
            else:
                code = coordinator.heartbeat(
                    group_id=GROUP, generation_id=client.generation_id, member_id=client.member_id
                )
                event(f"heartbeat error {code}")
                if code == UNKNOWN_MEMBER_ID:
                    client.forget()
                elif code != NONE:
                    assert code in (ILLEGAL_GENERATION, REBALANCE_IN_PROGRESS)
                    client.must_rejoin = True

        async with trio.open_nursery() as nursery:
            last_generation = 0
            for operation, index, seconds in operations:
                client = clients[index]
                if operation == "step":
                    step(client)
                elif operation == "leave" and client.member_id and client.busy is None:
                    coordinator.leave_group(group_id=GROUP, member_ids=[client.member_id])
                    client.forget()
                elif operation == "commit":
                    code = coordinator.validate_offset_commit(
                        group_id=GROUP,
                        generation_id=client.generation_id,
                        member_id=client.member_id,
                    )
                    assert code in (
                        NONE,
                        ILLEGAL_GENERATION,
                        UNKNOWN_MEMBER_ID,
                        REBALANCE_IN_PROGRESS,
                    )
                elif operation == "cancel" and client.busy is not None:
                    client.busy.cancel()
                elif operation == "sleep":
                    await trio.sleep(seconds)
                await trio.testing.wait_all_tasks_blocked()

                coordinator._assert_invariants()
                description = describe(coordinator)
                if description.state != "Dead":
                    assert description.generation_id >= last_generation
                    last_generation = description.generation_id
                member_ids = {member.member_id for member in description.members}
                if description.state != "Dead":
                    assert (description.state == "Empty") == (not member_ids)
                if member_ids:
                    assert description.leader in member_ids
                if description.state == "Stable":
                    stable_sizes.append(len(member_ids))
                    for each in clients:
                        if each.member_id in member_ids and each.busy is None:
                            assert each.generation_id == description.generation_id
            event(f"highest generation {min(last_generation, 5)}")
            event(f"largest stable group {max(stable_sizes)}")
            nursery.cancel_scope.cancel()


def _subscription(*topics: str, version: int = 1) -> bytes:
    body = b"".join(len(t.encode()).to_bytes(2, "big") + t.encode() for t in topics)
    return version.to_bytes(2, "big") + len(topics).to_bytes(4, "big") + body + b"\xff\xff\xff\xff"


def test_subscribed_topics_reads_every_subscription_version() -> None:
    for version in range(4):
        assert subscribed_topics(_subscription("a", "bé", version=version)) == {"a", "bé"}
    assert subscribed_topics(b"") is None
    assert subscribed_topics(b"\x00\x00\x00\x00\x00\x02\x00\x01a") is None  # one topic short
    assert subscribed_topics(b"\x00\x00\xff\xff\xff\xff") is None  # a negative count


@given(st.binary(max_size=64))
def test_subscribed_topics_never_raises(metadata: bytes) -> None:
    found = subscribed_topics(metadata)
    assert found is None or isinstance(found, frozenset)


_NO_TOPICS = ClusterMetadata("cluster", 1)


async def test_delete_group_and_offset_delete_checks(coordinator: GroupCoordinator) -> None:
    assert coordinator.delete_group("unknown") is None
    joined = await join_new(
        coordinator, protocols=[("range", _subscription("t1")), ("rr", _subscription("t2"))]
    )
    assert joined.error_code == ErrorCode.none
    # Every protocol's subscription counts: the next rebalance may choose any.
    assert coordinator.offset_delete_check(GROUP, _NO_TOPICS) == (ErrorCode.none, {"t1", "t2"})
    assert coordinator.delete_group(GROUP) == ErrorCode.non_empty_group
    other = await join_new(coordinator, group_id="connect", protocol_type="connect")
    assert other.error_code == ErrorCode.none
    assert coordinator.offset_delete_check("connect", _NO_TOPICS) == (
        ErrorCode.non_empty_group,
        frozenset(),
    )
    unreadable = await join_new(coordinator, group_id="odd", protocols=[("range", b"\x00")])
    assert unreadable.error_code == ErrorCode.none
    assert coordinator.offset_delete_check("odd", _NO_TOPICS) == (ErrorCode.none, None)
    leave = coordinator.leave_group(group_id=GROUP, member_ids=[joined.member_id])
    assert leave.error_code == ErrorCode.none
    assert coordinator.has_group(GROUP)
    assert coordinator.delete_group(GROUP) == ErrorCode.none
    assert not coordinator.has_group(GROUP)


# --- Static membership (KIP-345) -------------------------------------------------------


async def join_static(
    coordinator: GroupCoordinator,
    instance: str,
    member_id: str = "",
    protocols: Sequence[tuple[str, bytes]] = RANGE,
    api_version: int = 9,
) -> JoinGroupResult:
    return await coordinator.join_group(
        group_id=GROUP,
        member_id=member_id,
        group_instance_id=instance,
        protocol_type="consumer",
        protocols=protocols,
        session_timeout_ms=SESSION_MS,
        rebalance_timeout_ms=REBALANCE_MS,
        client_id="static",
        client_host="/127.0.0.1",
        api_version=api_version,
    )


async def static_group(coordinator: GroupCoordinator) -> dict[str, JoinGroupResult]:
    """Static members i-a and i-b, Stable; each assigned ``b"a-" + instance``."""
    joined = dict(
        zip(
            ("i-a", "i-b"),
            await join_all(
                coordinator,
                [lambda: join_static(coordinator, "i-a"), lambda: join_static(coordinator, "i-b")],
            ),
            strict=True,
        )
    )
    # No MEMBER_ID_REQUIRED round trip: the instance id names the member.
    assert all(result.error_code == ErrorCode.none for result in joined.values())
    [leader] = [r for r in joined.values() if r.member_id == r.leader]
    by_member = {m.member_id: m.group_instance_id for m in leader.members}
    assert sorted(by_member.values()) == ["i-a", "i-b"]
    assignments = {
        member_id: b"a-" + instance.encode() for member_id, instance in by_member.items()
    }
    async with trio.open_nursery() as nursery:
        for result in joined.values():
            nursery.start_soon(sync, coordinator, result, assignments if result is leader else None)
    assert describe(coordinator).state == "Stable"
    return joined


async def test_a_static_member_rejoins_without_a_rebalance(coordinator, autojump_clock):
    joined = await static_group(coordinator)
    follower = "i-b" if joined["i-a"].member_id == joined["i-a"].leader else "i-a"
    old = joined[follower]
    generation = old.generation_id
    # The follower restarts: it rejoins with no member id and gets its place back at once.
    back = await join_static(coordinator, follower)
    assert back.error_code == ErrorCode.none
    assert back.member_id != old.member_id
    assert (back.generation_id, back.skip_assignment, back.members) == (generation, False, ())
    assert describe(coordinator).state == "Stable"
    synced = await sync(coordinator, back)
    assert synced.assignment == b"a-" + follower.encode()
    # The old incarnation is fenced everywhere; the others see no rebalance.
    assert (
        coordinator.heartbeat(
            group_id=GROUP,
            generation_id=generation,
            member_id=old.member_id,
            group_instance_id=follower,
        )
        == ErrorCode.fenced_instance_id
    )
    assert (
        coordinator.validate_offset_commit(
            group_id=GROUP,
            generation_id=generation,
            member_id=old.member_id,
            group_instance_id=follower,
        )
        == ErrorCode.fenced_instance_id
    )
    fenced = await join_static(coordinator, follower, member_id=old.member_id)
    assert fenced.error_code == ErrorCode.fenced_instance_id
    leader = joined["i-a" if follower == "i-b" else "i-b"]
    assert heartbeat(coordinator, leader) == ErrorCode.none


async def test_a_static_leader_rejoins_with_skip_assignment(coordinator, autojump_clock):
    joined = await static_group(coordinator)
    [leader_instance] = [i for i, r in joined.items() if r.member_id == r.leader]
    back = await join_static(coordinator, leader_instance)
    assert back.error_code == ErrorCode.none
    assert back.leader == back.member_id and back.skip_assignment
    assert sorted(m.group_instance_id for m in back.members) == ["i-a", "i-b"]
    assert back.generation_id == joined[leader_instance].generation_id
    assert (await sync(coordinator, back)).assignment == b"a-" + leader_instance.encode()
    assert describe(coordinator).state == "Stable"


async def test_a_static_member_with_new_metadata_rebalances(coordinator, autojump_clock):
    joined = await static_group(coordinator)
    changed = join_static(coordinator, "i-a", protocols=(("range", b"other-topics"),))
    other = joined["i-b"]

    async def other_rejoins() -> JoinGroupResult:
        await trio.sleep(0.1)  # after i-a's join has started the rebalance
        assert heartbeat(coordinator, other) == ErrorCode.rebalance_in_progress
        return await join_static(coordinator, "i-b", member_id=other.member_id)

    results = await join_all(coordinator, [lambda: changed, other_rejoins])
    assert all(r.error_code == ErrorCode.none for r in results)
    assert results[0].generation_id == other.generation_id + 1


async def test_static_members_leave_by_instance_id(coordinator, autojump_clock):
    joined = await static_group(coordinator)
    a, b = joined["i-a"], joined["i-b"]
    result = coordinator.leave_group(
        group_id=GROUP,
        member_ids=["", a.member_id, "", "someone"],
        group_instance_ids=["i-a", "i-b", "i-zzz", None],
    )
    assert [m.error_code for m in result.members] == [
        ErrorCode.none,  # removed by its instance id alone, as Kafka's admin tools do
        ErrorCode.fenced_instance_id,  # a's id does not hold i-b
        ErrorCode.unknown_member_id,
        ErrorCode.unknown_member_id,
    ]
    assert [m.group_instance_id for m in describe(coordinator).members] == ["i-b"]
    result = coordinator.leave_group(
        group_id=GROUP, member_ids=[b.member_id], group_instance_ids=["i-b"]
    )
    assert [m.error_code for m in result.members] == [ErrorCode.none]
    assert describe(coordinator).members == ()


async def test_a_silent_static_member_is_removed_after_its_session(coordinator, autojump_clock):
    joined = await static_group(coordinator)
    b = joined["i-b"]
    with trio.move_on_after(SESSION_MS / 1000 + 1):
        while True:
            heartbeat(coordinator, b)
            await trio.sleep(1)
    assert [m.group_instance_id for m in describe(coordinator).members] == ["i-b"]
    # i-a's id is free again: a new client under it is a new member (a rebalance).
    again = await join_static(coordinator, "i-a")
    assert again.error_code == ErrorCode.none

"""The consumer group protocol (KIP-848): ConsumerGroupStateMachine, and its place in the
GroupCoordinator next to classic groups."""

from __future__ import annotations

import time

import attrs
import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kio.schema.errors import ErrorCode

from trioring.cluster.model import ClusterMetadata, TopicInfo
from trioring.core.groups import (
    ConsumerGroupStateMachine,
    ConsumerHeartbeat,
    GroupConfig,
    GroupCoordinator,
)
from trioring.core.groups.consumer import LEAVE_GROUP_EPOCH, LEAVE_GROUP_STATIC_EPOCH
from trioring.core.offsets import OffsetStore
from trioring.protocol.kafka.consumer_protocol import encode_assignment, parse_assignment
from trioring.storage.log import LogConfig
from trioring.uring import FallbackBackend

NONE = ErrorCode.none
GROUP = "g"
SESSION_S = GroupConfig().consumer_session_timeout_ms / 1000


def heartbeat(  # type: ignore[no-untyped-def]
    machine: ConsumerGroupStateMachine, now: float, *, metadata: ClusterMetadata, **fields
):
    names = fields.pop("subscribed_topic_names", None)
    request = ConsumerHeartbeat(
        subscribed_topic_names=None if names is None else tuple(names), **fields
    )
    return machine.heartbeat(now, request, metadata)


def coordinator_heartbeat(coordinator, *, metadata, **fields):  # type: ignore[no-untyped-def]
    return coordinator.consumer_group_heartbeat(ConsumerHeartbeat(**fields), metadata)


def metadata(version: int = 1, **topics: int) -> ClusterMetadata:
    return ClusterMetadata(
        "cluster",
        1,
        {
            name: TopicInfo(name, count, f"{name}-id".ljust(32, "0"), LogConfig(), (0,) * count)
            for name, count in topics.items()
        },
        version,
    )


def tid(name: str) -> str:
    return f"{name}-id".ljust(32, "0")


def parts(name: str, *partitions: int) -> frozenset[tuple[str, int]]:
    return frozenset((tid(name), partition) for partition in partitions)


@attrs.define
class Client:
    """A consumer as the protocol expects one to behave: it owns what it was last given."""

    machine: ConsumerGroupStateMachine
    member_id: str
    topics: tuple[str, ...] = ("t",)
    instance_id: str | None = None
    epoch: int = 0
    owned: frozenset[tuple[str, int]] = frozenset()

    def beat(self, now: float, meta: ClusterMetadata, **fields):  # type: ignore[no-untyped-def]
        joining = self.epoch == 0
        result = heartbeat(
            self.machine,
            now,
            group_id=GROUP,
            member_id=self.member_id,
            member_epoch=self.epoch,
            instance_id=self.instance_id,
            rebalance_timeout_ms=30_000 if joining else -1,
            subscribed_topic_names=self.topics if joining else None,
            owned=self.owned,
            metadata=meta,
            **fields,
        )
        if result.error_code == NONE:
            self.epoch = result.member_epoch
            if result.assignment is not None:
                self.owned = result.assignment
        self.machine.assert_invariants()
        return result


def test_a_lone_member_gets_every_partition_at_epoch_one() -> None:
    machine = ConsumerGroupStateMachine(GroupConfig())
    meta = metadata(t=3)
    client = Client(machine, "m1")
    result = client.beat(0, meta)
    assert (result.error_code, result.member_epoch) == (NONE, 1)
    assert result.assignment == parts("t", 0, 1, 2)
    assert result.heartbeat_interval_ms == GroupConfig().consumer_heartbeat_interval_ms
    # Nothing changed: the next heartbeat carries no assignment.
    assert client.beat(1, meta).assignment is None
    assert machine.describe(GROUP).state == "Stable"


def test_a_second_member_gets_partitions_only_after_the_first_revoked_them() -> None:
    machine = ConsumerGroupStateMachine(GroupConfig())
    meta = metadata(t=4)
    first, second = Client(machine, "m1"), Client(machine, "m2")
    first.beat(0, meta)
    joined = second.beat(1, meta)
    # Epoch 2 is the target; m1 still owns everything, so m2 waits with nothing.
    assert joined.member_epoch == 2 and joined.assignment == frozenset()
    assert machine.describe(GROUP).state == "Reconciling"
    # m1 is asked to give up half: its epoch stays until it has.
    revoking = first.beat(2, meta)
    assert revoking.member_epoch == 1
    assert revoking.assignment is not None and len(revoking.assignment) == 2
    kept = revoking.assignment
    # Still waiting for m1: m2 gets nothing yet.
    assert second.beat(3, meta).assignment is None
    assert second.owned == frozenset()
    # m1 reports it owns only what it kept: it moves to epoch 2.
    assert first.beat(4, meta).member_epoch == 2
    given_ = second.beat(5, meta)
    assert given_.assignment == parts("t", 0, 1, 2, 3) - kept
    assert machine.describe(GROUP).state == "Stable"


def test_leaving_hands_the_partitions_to_the_others() -> None:
    machine = ConsumerGroupStateMachine(GroupConfig())
    meta = metadata(t=2)
    first, second = Client(machine, "m1"), Client(machine, "m2")
    for now in range(4):
        first.beat(now, meta)
        second.beat(now, meta)
    assert len(first.owned) == len(second.owned) == 1
    left = heartbeat(
        machine, 5, group_id=GROUP, member_id="m1", member_epoch=LEAVE_GROUP_EPOCH, metadata=meta
    )
    assert (left.error_code, left.member_epoch) == (NONE, LEAVE_GROUP_EPOCH)
    assert second.beat(6, meta).assignment == parts("t", 0, 1)


def test_a_silent_member_is_removed_after_the_session_timeout() -> None:
    machine = ConsumerGroupStateMachine(GroupConfig())
    meta = metadata(t=2)
    first, second = Client(machine, "m1"), Client(machine, "m2")
    for now in range(4):
        first.beat(now, meta)
        second.beat(now, meta)
    assert machine.next_deadline(GROUP) == 3 + SESSION_S
    second.beat(10, meta)
    machine.expire(GROUP, 3 + SESSION_S)
    machine.assert_invariants()
    assert [m.member_id for m in machine.describe(GROUP).members] == ["m2"]
    assert second.beat(11, meta).assignment == parts("t", 0, 1)
    # The removed member must rejoin.
    assert first.beat(12, meta).error_code == ErrorCode.unknown_member_id


def test_a_member_that_does_not_revoke_in_its_rebalance_timeout_is_fenced() -> None:
    machine = ConsumerGroupStateMachine(GroupConfig())
    meta = metadata(t=2)
    first, second = Client(machine, "m1"), Client(machine, "m2")
    first.beat(0, meta)
    second.beat(1, meta)
    # m1 is told to revoke but then keeps reporting the revoked partition.
    first.beat(2, meta)
    stubborn = heartbeat(
        machine,
        3,
        group_id=GROUP,
        member_id="m1",
        member_epoch=first.epoch,
        owned=parts("t", 0, 1),
        metadata=meta,
    )
    assert stubborn.error_code == NONE and stubborn.member_epoch == 1
    assert machine.next_deadline(GROUP) == 2 + 30
    second.beat(20, meta)
    machine.expire(GROUP, 32)
    assert [m.member_id for m in machine.describe(GROUP).members] == ["m2"]
    assert second.beat(33, meta).assignment == parts("t", 0, 1)


def test_member_epochs_are_checked_and_a_lost_answer_is_tolerated() -> None:
    machine = ConsumerGroupStateMachine(GroupConfig())
    meta = metadata(t=2)
    client = Client(machine, "m1")
    client.beat(0, meta)
    assert client.epoch == 1

    def beat(epoch: int, owned: frozenset[tuple[str, int]] | None) -> int:
        result = heartbeat(
            machine,
            1,
            group_id=GROUP,
            member_id="m1",
            member_epoch=epoch,
            owned=owned,
            metadata=meta,
        )
        return result.error_code

    assert beat(2, None) == ErrorCode.fenced_member_epoch
    # Epoch 0 was the previous one and it owns a subset of its assignment: the
    # answer that moved it to epoch 1 may have been lost.
    assert beat(0, parts("t", 0)) == ErrorCode.invalid_request  # epoch 0 is a (re)join
    Client(machine, "m2").beat(2, meta)  # bumps the group to epoch 2
    client.beat(3, meta)
    client.beat(4, meta)
    assert client.epoch == 2
    assert beat(1, parts("t", 0) & client.owned) == NONE
    assert beat(1, parts("t", 0, 1)) == ErrorCode.fenced_member_epoch


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"member_epoch": -3}, ErrorCode.invalid_request),
        ({"member_epoch": 0, "rebalance_timeout_ms": -1}, ErrorCode.invalid_request),
        ({"member_epoch": 0, "owned": None}, ErrorCode.invalid_request),
        ({"member_epoch": 0, "owned": frozenset({("x", 0)})}, ErrorCode.invalid_request),
        ({"member_epoch": 0, "subscribed_topic_names": None}, ErrorCode.invalid_request),
        ({"member_epoch": 0, "member_id": ""}, ErrorCode.invalid_request),
        ({"member_epoch": 5, "member_id": ""}, ErrorCode.invalid_request),
        ({"instance_id": ""}, ErrorCode.invalid_request),
        ({"rack_id": ""}, ErrorCode.invalid_request),
        ({"group_id": ""}, ErrorCode.invalid_group_id),
        ({"server_assignor": "sticky"}, ErrorCode.unsupported_assignor),
        ({"subscribed_topic_regex": "(a"}, ErrorCode.invalid_regular_expression),
        ({"member_epoch": LEAVE_GROUP_STATIC_EPOCH}, ErrorCode.invalid_request),
        ({"member_epoch": 3}, ErrorCode.unknown_member_id),
    ],
)
def test_invalid_heartbeats_get_kafkas_errors(fields, code) -> None:  # type: ignore[no-untyped-def]
    machine = ConsumerGroupStateMachine(GroupConfig())
    request = {
        "group_id": GROUP,
        "member_id": "m1",
        "member_epoch": 0,
        "rebalance_timeout_ms": 30_000,
        "subscribed_topic_names": ("t",),
        "owned": frozenset(),
        "metadata": metadata(t=1),
    }
    request.update(fields)
    result = heartbeat(machine, 0, **request)
    assert result.error_code == code
    assert result.error_message
    machine.assert_invariants()


def test_version_zero_gets_a_member_id_from_the_coordinator() -> None:
    machine = ConsumerGroupStateMachine(GroupConfig(), new_member_id=lambda: "given")
    result = heartbeat(
        machine,
        0,
        group_id=GROUP,
        member_id="",
        member_epoch=0,
        rebalance_timeout_ms=1000,
        subscribed_topic_names=("t",),
        owned=frozenset(),
        api_version=0,
        metadata=metadata(t=1),
    )
    assert (result.error_code, result.member_id) == (NONE, "given")


def test_a_static_member_comes_back_to_its_partitions_without_a_new_epoch() -> None:
    machine = ConsumerGroupStateMachine(GroupConfig())
    meta = metadata(t=4)
    first = Client(machine, "a1", instance_id="a")
    second = Client(machine, "b1", instance_id="b")
    for now in range(4):
        first.beat(now, meta)
        second.beat(now, meta)
    mine, epoch = first.owned, machine.describe(GROUP).group_epoch
    left = heartbeat(
        machine,
        5,
        group_id=GROUP,
        member_id="a1",
        member_epoch=LEAVE_GROUP_STATIC_EPOCH,
        instance_id="a",
        metadata=meta,
    )
    assert left.member_epoch == LEAVE_GROUP_STATIC_EPOCH
    # Nobody takes its partitions meanwhile.
    assert second.beat(6, meta).assignment is None
    # Another process may not take an instance id that is held...
    third = Client(machine, "x1", instance_id="b")
    assert third.beat(7, meta).error_code == ErrorCode.unreleased_instance_id
    # ...but the instance that left comes back, under a new member id.
    back = Client(machine, "a2", instance_id="a")
    assert back.beat(8, meta).assignment == mine
    assert machine.describe(GROUP).group_epoch == epoch
    # Its old incarnation is fenced.
    assert first.beat(9, meta).error_code == ErrorCode.fenced_instance_id


def test_new_partitions_and_matching_topics_reach_the_group() -> None:
    machine = ConsumerGroupStateMachine(GroupConfig())
    client = Client(machine, "m1", topics=())
    result = client.beat(0, metadata(1, t=1), subscribed_topic_regex="ev-.*")
    assert result.error_code == NONE and result.assignment == frozenset()
    assert client.beat(1, metadata(2, t=1, **{"ev-1": 2})).assignment == parts("ev-1", 0, 1)
    grown = metadata(3, t=1, **{"ev-1": 3, "ev-2": 1})
    assert client.beat(2, grown).assignment == parts("ev-1", 0, 1, 2) | parts("ev-2", 0)
    assert machine.subscribed_topics(GROUP, grown) == {"ev-1", "ev-2"}


def test_offset_commits_are_checked_against_the_member_epoch() -> None:
    machine = ConsumerGroupStateMachine(GroupConfig())
    client = Client(machine, "m1")
    client.beat(0, metadata(t=1))

    def commit(member_id: str, epoch: int) -> int:
        code, _ = machine.validate_offset_commit(
            1, group_id=GROUP, member_id=member_id, member_epoch=epoch
        )
        return code

    assert commit("m1", 1) == NONE
    assert commit("m1", 0) == ErrorCode.stale_member_epoch
    assert commit("other", 1) == ErrorCode.unknown_member_id
    assert commit("", -1) == ErrorCode.unknown_member_id  # the group has members
    code, message = machine.validate_offset_commit(
        1, group_id=GROUP, member_id="m1", member_epoch=1, api_version=8
    )
    assert code == ErrorCode.unsupported_version and "version 9" in message
    assert machine.validate_offset_fetch(GROUP, "m1", 1) == (NONE, "")
    assert machine.validate_offset_fetch(GROUP, "m1", 2)[0] == ErrorCode.stale_member_epoch
    assert machine.validate_offset_fetch(GROUP, None, 1)[0] == ErrorCode.unknown_member_id


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["beat", "beat", "beat", "join", "leave", "expire", "grow", "lose"]),
            st.integers(0, 4),
        ),
        max_size=60,
    ),
    st.sampled_from(["uniform", "range"]),
)
def test_any_history_keeps_one_owner_per_partition_and_converges(steps, assignor) -> None:  # type: ignore[no-untyped-def]
    """Members that follow the protocol, joining, leaving, dying and seeing topics grow:
    no partition is ever owned by two members, and once things quieten down every
    member is stable and every partition owned."""
    machine = ConsumerGroupStateMachine(GroupConfig())
    counts = {"t": 3, "u": 2}
    version = 1
    meta = metadata(version, **counts)
    clients: dict[int, Client] = {}
    now = 0.0

    def owned_by_clients() -> None:
        seen: set[tuple[str, int]] = set()
        for client in clients.values():
            assert not seen & client.owned, "two clients own one partition"
            seen |= client.owned

    for action, index in steps:
        now += 1
        client = clients.get(index)
        if action == "join" and client is None:
            clients[index] = Client(machine, f"m{index}", topics=("t", "u")[: 1 + index % 2])
            clients[index].beat(now, meta, server_assignor=assignor)
        elif action == "beat" and client is not None:
            result = client.beat(now, meta)
            if result.error_code != NONE:
                # Fenced or unknown: the client gives up its partitions and rejoins.
                client.owned, client.epoch = frozenset(), 0
        elif action == "leave" and client is not None:
            heartbeat(
                machine,
                now,
                group_id=GROUP,
                member_id=client.member_id,
                member_epoch=LEAVE_GROUP_EPOCH,
                metadata=meta,
            )
            del clients[index]
        elif action == "expire" and client is not None:
            # The client dies: it owns nothing any more; its session runs out.
            del clients[index]
            now += SESSION_S
            for other in clients.values():
                if other.beat(now, meta).error_code != NONE:
                    other.owned, other.epoch = frozenset(), 0
            machine.expire(GROUP, now)
        elif action in ("grow", "lose"):
            topic = "t" if index % 2 else "u"
            counts[topic] += 1 if action == "grow" else 0
            version += 1
            meta = metadata(version, **counts)
        machine.assert_invariants()
        owned_by_clients()
    for _ in range(2 * len(clients) + 2):
        now += 1
        for client in clients.values():
            client.beat(now, meta)
            owned_by_clients()
    if clients:
        description = machine.describe(GROUP)
        assert description.state == "Stable", description
        wanted = {
            (tid(topic), partition)
            for client in clients.values()
            for topic in client.topics
            for partition in range(counts[topic])
        }
        assert set().union(*(client.owned for client in clients.values())) == wanted


# --- in the coordinator, next to classic groups --------------------------------------


@pytest.fixture
async def coordinator(tmp_path):  # type: ignore[no-untyped-def]
    store = await OffsetStore.open(
        str(tmp_path / "__consumer_offsets-0"), FallbackBackend(), time.time, compact_bytes=1 << 20
    )
    try:
        async with GroupCoordinator.open(GroupConfig(), offsets=store) as coordinator:
            yield coordinator
    finally:
        await store.aclose()


async def test_a_group_holds_members_of_one_protocol(coordinator, autojump_clock) -> None:  # type: ignore[no-untyped-def]
    meta = metadata(t=1)
    joined = coordinator_heartbeat(
        coordinator,
        group_id=GROUP,
        member_id="m1",
        member_epoch=0,
        rebalance_timeout_ms=1000,
        subscribed_topic_names=("t",),
        owned=frozenset(),
        metadata=meta,
    )
    assert joined.error_code == NONE
    classic = await coordinator.join_group(
        group_id=GROUP,
        member_id="",
        protocol_type="consumer",
        protocols=(("range", b""),),
        session_timeout_ms=10_000,
        client_id="c",
        client_host="h",
        api_version=5,
    )
    assert classic.error_code == ErrorCode.inconsistent_group_protocol
    # The classic APIs see no such group; ListGroups names its type.
    assert [d.state for d in coordinator.describe_groups([GROUP])] == ["Dead"]
    [listing] = coordinator.list_groups().groups
    assert (listing.group_type, listing.protocol_type, listing.state) == (
        "consumer",
        "consumer",
        "Stable",
    )
    assert coordinator.consumer_group_describe("other").error_code == ErrorCode.group_id_not_found
    assert coordinator.delete_group(GROUP) == ErrorCode.non_empty_group
    coordinator_heartbeat(
        coordinator, group_id=GROUP, member_id="m1", member_epoch=-1, metadata=meta
    )
    # Empty: a classic member may take the group over.
    with trio.move_on_after(5):
        classic = await coordinator.join_group(
            group_id=GROUP,
            member_id="",
            protocol_type="consumer",
            protocols=(("range", b""),),
            session_timeout_ms=10_000,
            client_id="c",
            client_host="h",
            api_version=3,
        )
    assert classic.error_code == NONE
    refused = coordinator_heartbeat(
        coordinator,
        group_id=GROUP,
        member_id="m2",
        member_epoch=0,
        rebalance_timeout_ms=1000,
        subscribed_topic_names=("t",),
        owned=frozenset(),
        metadata=meta,
    )
    assert refused.error_code == ErrorCode.group_id_not_found
    coordinator._assert_invariants()


async def test_the_coordinator_times_out_silent_members(coordinator, autojump_clock) -> None:  # type: ignore[no-untyped-def]
    meta = metadata(t=1)
    coordinator_heartbeat(
        coordinator,
        group_id=GROUP,
        member_id="m1",
        member_epoch=0,
        rebalance_timeout_ms=1000,
        subscribed_topic_names=("t",),
        owned=frozenset(),
        metadata=meta,
    )
    coordinator._assert_invariants()
    await trio.sleep(SESSION_S + 1)
    assert coordinator.consumer_group_describe(GROUP).members == ()
    assert coordinator.list_groups().groups[0].state == "Empty"


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


# --- classic members in a consumer group: Kafka 4.0's online upgrade and downgrade ----


def _subscription(*topics: str, owned: tuple[tuple[str, tuple[int, ...]], ...] = ()) -> bytes:
    """ConsumerProtocolSubscription v1 (topics, no user data, owned partitions)."""
    out = [b"\x00\x01", len(topics).to_bytes(4, "big")]
    out += [len(t).to_bytes(2, "big") + t.encode() for t in topics]
    out.append(b"\xff\xff\xff\xff")
    out.append(len(owned).to_bytes(4, "big"))
    for topic, partitions in owned:
        out.append(len(topic).to_bytes(2, "big") + topic.encode())
        out.append(len(partitions).to_bytes(4, "big"))
        out += [p.to_bytes(4, "big") for p in partitions]
    return b"".join(out)


async def test_a_consumer_member_upgrades_a_classic_group_and_its_leaving_downgrades_it(
    coordinator, autojump_clock
) -> None:  # type: ignore[no-untyped-def]
    meta = metadata(t=4)

    async def classic_join(member_id: str, owned=()):  # type: ignore[no-untyped-def]
        return await coordinator.join_group(
            group_id=GROUP,
            member_id=member_id,
            protocol_type="consumer",
            protocols=(("range", _subscription("t", owned=owned)),),
            session_timeout_ms=10_000,
            rebalance_timeout_ms=20_000,
            client_id=member_id or "new",
            client_host="h",
            api_version=3,
            metadata=meta,
        )

    async with trio.open_nursery() as nursery:
        joined: dict[str, object] = {}

        async def join(name: str) -> None:
            joined[name] = await classic_join("")

        nursery.start_soon(join, "a")
        nursery.start_soon(join, "b")
    a, b = joined["a"], joined["b"]
    leader, follower = (a, b) if a.leader == a.member_id else (b, a)
    halves = {leader.member_id: [("t", [0, 1])], follower.member_id: [("t", [2, 3])]}
    async with trio.open_nursery() as nursery:
        for member in (leader, follower):
            nursery.start_soon(
                lambda m=member: coordinator.sync_group(
                    group_id=GROUP,
                    generation_id=m.generation_id,
                    member_id=m.member_id,
                    assignments=(
                        {k: encode_assignment(1, v) for k, v in halves.items()}
                        if m is leader
                        else {}
                    ),
                )
            )
    generation = leader.generation_id

    # A consumer-protocol member joins: the group becomes a consumer group.
    joined_modern = coordinator_heartbeat(
        coordinator,
        group_id=GROUP,
        member_id="modern",
        member_epoch=0,
        rebalance_timeout_ms=20_000,
        subscribed_topic_names=("t",),
        owned=frozenset(),
        metadata=meta,
    )
    assert joined_modern.error_code == NONE and joined_modern.assignment == frozenset()
    coordinator._assert_invariants()
    described = coordinator.consumer_group_describe(GROUP)
    assert sorted(m.classic for m in described.members) == [False, True, True]
    assert {m.member_id: m.assignment for m in described.members if m.classic} == {
        leader.member_id: parts("t", 0, 1),
        follower.member_id: parts("t", 2, 3),
    }
    assert coordinator.list_groups().groups[0].group_type == "consumer"

    # The classic members are told to rejoin; they give up what moves and get their share.
    owned = {leader.member_id: ("t", (0, 1)), follower.member_id: ("t", (2, 3))}
    epochs = {leader.member_id: generation, follower.member_id: generation}
    modern_epoch = joined_modern.member_epoch
    modern_owned: frozenset[tuple[str, int]] = frozenset()
    for _ in range(6):
        for member_id in list(owned):
            code = coordinator.heartbeat(
                group_id=GROUP, generation_id=epochs[member_id], member_id=member_id
            )
            if code == ErrorCode.rebalance_in_progress:
                rejoined = await classic_join(member_id, owned=(owned[member_id],))
                assert rejoined.error_code == NONE and rejoined.leader == ""
                synced = await coordinator.sync_group(
                    group_id=GROUP,
                    generation_id=rejoined.generation_id,
                    member_id=member_id,
                    assignments={},
                )
                assert synced.error_code == NONE
                [(topic, partitions)] = parse_assignment(synced.assignment) or [("t", ())]
                owned[member_id] = (topic, tuple(partitions))
                epochs[member_id] = rejoined.generation_id
            else:
                assert code == NONE
        beat = coordinator_heartbeat(
            coordinator,
            group_id=GROUP,
            member_id="modern",
            member_epoch=modern_epoch,
            owned=modern_owned,
            metadata=meta,
        )
        assert beat.error_code == NONE
        modern_epoch = beat.member_epoch
        if beat.assignment is not None:
            modern_owned = beat.assignment
        coordinator._assert_invariants()
        every = [p for _, ps in owned.values() for p in ps] + [p for _, p in modern_owned]
        assert len(every) == len(set(every)), "a partition owned twice"
    assert sorted(every) == [0, 1, 2, 3] and modern_owned
    assert coordinator.consumer_group_describe(GROUP).state == "Stable"

    # The consumer-protocol member leaves: the group is classic again and rebalances.
    coordinator_heartbeat(
        coordinator, group_id=GROUP, member_id="modern", member_epoch=-1, metadata=meta
    )
    coordinator._assert_invariants()
    [listing] = coordinator.list_groups().groups
    assert (listing.group_type, listing.state) == ("classic", "PreparingRebalance")
    code = coordinator.heartbeat(
        group_id=GROUP, generation_id=epochs[leader.member_id], member_id=leader.member_id
    )
    assert code == ErrorCode.rebalance_in_progress


@attrs.define
class ClassicClient:
    """A cooperative classic consumer in a consumer group: it owns what SyncGroup gave it
    and reports it when it rejoins."""

    machine: ConsumerGroupStateMachine
    name: str
    topics: tuple[str, ...]
    member_id: str = ""
    generation: int = -1
    owned: frozenset[tuple[str, int]] = frozenset()

    def join(self, now: float, meta: ClusterMetadata) -> None:
        names = {info.topic_id: name for name, info in meta.topics.items()}
        by_topic: dict[str, list[int]] = {}
        for topic_id, partition in sorted(self.owned):
            by_topic.setdefault(names[topic_id], []).append(partition)
        joined = self.machine.mixed.classic_join(
            now,
            group_id=GROUP,
            member_id=self.member_id,
            instance_id=None,
            protocol_type="consumer",
            protocols=(
                (
                    "cooperative-sticky",
                    _subscription(
                        *self.topics, owned=tuple((t, tuple(p)) for t, p in by_topic.items())
                    ),
                ),
            ),
            session_timeout_ms=10_000,
            rebalance_timeout_ms=30_000,
            client_id=self.name,
            client_host="h",
            api_version=3,
            metadata=meta,
        )
        assert joined.error_code == NONE, joined
        assert joined.leader == "" and joined.members == ()
        self.member_id = joined.member_id
        synced = self.machine.mixed.classic_sync(
            now,
            group_id=GROUP,
            generation_id=joined.generation_id,
            member_id=self.member_id,
            instance_id=None,
        )
        if synced.error_code == NONE:
            assignment = parse_assignment(synced.assignment)
            assert assignment is not None
            self.owned = frozenset(
                (meta.topics[topic].topic_id, p)
                for topic, partitions in assignment
                for p in partitions
            )
            self.generation = joined.generation_id
        else:
            assert synced.error_code == ErrorCode.rebalance_in_progress

    def beat(self, now: float, meta: ClusterMetadata) -> None:
        code = self.machine.mixed.classic_heartbeat(
            now,
            group_id=GROUP,
            generation_id=self.generation,
            member_id=self.member_id,
            instance_id=None,
        )
        if code in (ErrorCode.unknown_member_id, ErrorCode.illegal_generation):
            self.owned, self.member_id = frozenset(), ""
        if code != NONE:
            self.join(now, meta)
        self.machine.assert_invariants()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["beat", "beat", "beat", "join", "leave", "expire", "grow"]),
            st.integers(1, 4),
        ),
        max_size=50,
    )
)
def test_a_mixed_group_keeps_one_owner_per_partition_and_converges(steps) -> None:  # type: ignore[no-untyped-def]
    """Classic (even indexes) and consumer-protocol (odd) members of one group joining,
    leaving and dying while topics grow; member 0 (consumer protocol) stays, so the group
    stays a consumer group."""
    machine = ConsumerGroupStateMachine(GroupConfig())
    counts = {"t": 3, "u": 2}
    version = 1
    meta = metadata(version, **counts)
    anchor = Client(machine, "m0", topics=("t", "u"))
    anchor.beat(0, meta)
    clients: dict[int, Client | ClassicClient] = {}
    now = 0.0

    def everyone() -> list[Client | ClassicClient]:
        return [anchor, *clients.values()]

    def beat(client: Client | ClassicClient) -> None:
        if isinstance(client, ClassicClient):
            client.beat(now, meta)
        elif client.beat(now, meta).error_code != NONE:
            client.owned, client.epoch = frozenset(), 0

    def one_owner() -> None:
        seen: set[tuple[str, int]] = set()
        for client in everyone():
            assert not seen & client.owned, "two clients own one partition"
            seen |= client.owned

    for action, index in steps:
        now += 1
        client = clients.get(index)
        topics = ("t", "u")[: 1 + index % 2]
        if action == "join" and client is None:
            if index % 2:
                clients[index] = Client(machine, f"m{index}", topics=topics)
                beat(clients[index])
            else:
                clients[index] = ClassicClient(machine, f"c{index}", topics)
                clients[index].join(now, meta)
        elif action == "beat" and client is not None:
            beat(client)
        elif action == "leave" and client is not None:
            if isinstance(client, ClassicClient):
                machine.mixed.classic_leave(
                    now, group_id=GROUP, member_ids=[client.member_id], instance_ids=[None]
                )
            else:
                heartbeat(
                    machine,
                    now,
                    group_id=GROUP,
                    member_id=client.member_id,
                    member_epoch=LEAVE_GROUP_EPOCH,
                    metadata=meta,
                )
            del clients[index]
        elif action == "expire" and client is not None:
            del clients[index]
            # Past every session (classic 10 s, consumer 45 s) and rebalance timeout (30 s).
            now += SESSION_S + 1
            for other in everyone():
                beat(other)
            machine.expire(GROUP, now)
        elif action == "grow":
            counts["t" if index % 2 else "u"] += 1
            version += 1
            meta = metadata(version, **counts)
        machine.assert_invariants()
        one_owner()
    for _ in range(3 * len(everyone()) + 3):
        now += 1
        for client in everyone():
            beat(client)
            one_owner()
    description = machine.describe(GROUP)
    assert description is not None and description.state == "Stable", description
    wanted = {
        (tid(topic), partition)
        for client in everyone()
        for topic in client.topics
        for partition in range(counts[topic])
    }
    assert set().union(*(client.owned for client in everyone())) == wanted

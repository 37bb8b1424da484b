"""Client-side partition assignors of the classic group protocol: range, roundrobin,
cooperative-sticky.

The group's leader runs one of them over every member's subscription and sends
each member its share in SyncGroup. They are interoperable with the Java
client's and librdkafka's assignors of the same name: any member may be the
leader, so the assignment is valid whoever computes it, and the member order
is theirs (static members by instance id first, then the others by member id).

cooperative-sticky (KIP-429) keeps every partition with the member that owns
it where balance allows, and never hands a partition to a new owner in the
same rebalance as its old owner still holds it: such a partition is left out
of the assignment, the old owner revokes it and rejoins, and the next
rebalance gives it to the new owner.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence

import attrs

__all__ = [
    "ASSIGNORS",
    "MemberSubscription",
    "assign",
    "cooperative_user_data",
    "is_cooperative",
]

TopicPartition = tuple[str, int]
Assignment = dict[str, list[TopicPartition]]


@attrs.frozen
class MemberSubscription:
    member_id: str
    group_instance_id: str | None
    topics: frozenset[str]
    #: Partitions the member says it owns (cooperative members; empty for eager ones).
    owned: tuple[TopicPartition, ...] = ()
    #: The generation ``owned`` is from (-1: unknown).
    generation_id: int = -1


def _member_order(member: MemberSubscription) -> tuple[int, str]:
    """Java's and librdkafka's order: static members by instance id, then by member id."""
    if member.group_instance_id is not None:
        return (0, member.group_instance_id)
    return (1, member.member_id)


def _range(partitions: Mapping[str, int], members: Sequence[MemberSubscription]) -> Assignment:
    """Per topic, consecutive ranges: the first ``count % members`` members get one more."""
    result: Assignment = {m.member_id: [] for m in members}
    ordered = sorted(members, key=_member_order)
    for topic in sorted(partitions):
        subscribers = [m for m in ordered if topic in m.topics]
        if not subscribers:
            continue
        share, extra = divmod(partitions[topic], len(subscribers))
        for index, member in enumerate(subscribers):
            start = share * index + min(index, extra)
            length = share + (1 if index < extra else 0)
            result[member.member_id] += [(topic, p) for p in range(start, start + length)]
    return result


def _roundrobin(partitions: Mapping[str, int], members: Sequence[MemberSubscription]) -> Assignment:
    """All partitions in (topic, partition) order dealt to the members in turn, each going
    to the next member subscribed to its topic."""
    result: Assignment = {m.member_id: [] for m in members}
    ordered = sorted(members, key=_member_order)
    if not ordered:
        return result
    turn = 0
    for topic in sorted(partitions):
        if not any(topic in m.topics for m in ordered):
            continue
        for partition in range(partitions[topic]):
            while topic not in ordered[turn % len(ordered)].topics:
                turn += 1
            result[ordered[turn % len(ordered)].member_id].append((topic, partition))
            turn += 1
    return result


def _cooperative_sticky(
    partitions: Mapping[str, int], members: Sequence[MemberSubscription]
) -> Assignment:
    """Balanced and sticky, then without the partitions that change owner (KIP-429)."""
    ordered = sorted(members, key=_member_order)
    eligible: dict[TopicPartition, list[str]] = {}
    for topic in sorted(partitions):
        subscribers = [m.member_id for m in ordered if topic in m.topics]
        if subscribers:
            for partition in range(partitions[topic]):
                eligible[(topic, partition)] = subscribers
    # Who owns what now: a partition claimed twice stays with the newest
    # generation's claim; a tie (which a correct group never has) with nobody.
    claims: dict[TopicPartition, list[tuple[int, str]]] = {}
    for member in ordered:
        for tp in member.owned:
            if tp in eligible and member.member_id in eligible[tp]:
                claims.setdefault(tp, []).append((member.generation_id, member.member_id))
    owner: dict[TopicPartition, str] = {}
    for tp, claimed in claims.items():
        claimed.sort(reverse=True)
        if len(claimed) == 1 or claimed[0][0] > claimed[1][0]:
            owner[tp] = claimed[0][1]
    current: dict[str, list[TopicPartition]] = {m.member_id: [] for m in ordered}
    for tp in eligible:
        if tp in owner:
            current[owner[tp]].append(tp)
    # Members with more than a fair share give up their newest extras first.
    # With identical subscriptions the shares are exact; otherwise the moves
    # below even out what they can.
    if ordered and all(m.topics == ordered[0].topics for m in ordered):
        share, extra = divmod(len(eligible), len(ordered))
        by_load = sorted(ordered, key=lambda m: -len(current[m.member_id]))
        for index, member in enumerate(by_load):
            quota = share + (1 if index < extra else 0)
            del current[member.member_id][quota:]
    assigned = {tp for owned in current.values() for tp in owned}
    # Unassigned partitions, the most constrained first, to the least loaded.
    for tp in sorted(set(eligible) - assigned, key=lambda tp: (len(eligible[tp]), tp)):
        target = min(eligible[tp], key=lambda member_id: len(current[member_id]))
        current[target].append(tp)
    # Even out: move a partition while someone eligible has two fewer. Every
    # move lowers the sum of squared loads, so this ends.
    moved = True
    while moved:
        moved = False
        for member_id in sorted(current, key=lambda m: -len(current[m])):
            for tp in list(current[member_id]):
                target = min(eligible[tp], key=lambda other: len(current[other]))
                if len(current[target]) + 1 < len(current[member_id]):
                    current[member_id].remove(tp)
                    current[target].append(tp)
                    moved = True
    # KIP-429: a partition another member still owns waits for the next rebalance.
    for member_id, assigned_partitions in current.items():
        current[member_id] = [
            tp for tp in assigned_partitions if owner.get(tp, member_id) == member_id
        ]
    for assigned_partitions in current.values():
        assigned_partitions.sort()
    return current


ASSIGNORS = {
    "range": _range,
    "roundrobin": _roundrobin,
    "cooperative-sticky": _cooperative_sticky,
}
_COOPERATIVE = frozenset({"cooperative-sticky"})


def is_cooperative(name: str) -> bool:
    return name in _COOPERATIVE


def assign(
    name: str, partitions: Mapping[str, int], members: Sequence[MemberSubscription]
) -> Assignment:
    """Each member's partitions under assignor ``name``; ``partitions`` maps every topic
    the members subscribe to that exists to its partition count."""
    result = ASSIGNORS[name](partitions, members)
    assert sum(map(len, result.values())) == len(
        {tp for share in result.values() for tp in share}
    ), "a partition given to two members"
    return result


def cooperative_user_data(owned: Iterable[TopicPartition], generation_id: int) -> bytes:
    """The sticky assignors' user data, ``[topic [partition]] generation``, as librdkafka
    writes it. The generation also travels in the subscription (v2+), which newer
    clients read instead."""
    by_topic: dict[str, list[int]] = {}
    for topic, partition in sorted(owned):
        by_topic.setdefault(topic, []).append(partition)
    out = [struct.pack(">i", len(by_topic))]
    for topic, numbers in by_topic.items():
        name = topic.encode("utf-8")
        out.append(struct.pack(">h", len(name)) + name)
        out.append(struct.pack(f">i{len(numbers)}i", len(numbers), *numbers))
    out.append(struct.pack(">i", generation_id))
    return b"".join(out)

"""The server-side assignors of the consumer group protocol (KIP-848): uniform and range.

An assignor maps each member to the partitions it should own (its target
assignment), given what each member subscribes to and how many partitions
each topic has. Topics are named by their id, so a topic deleted and created
again under the same name is a different topic. Both assignors are
deterministic: the same input gives the same assignment, whatever the order
of the mappings.

``uniform`` (Kafka's default) balances the number of partitions per member
among the members subscribed to each partition, and is sticky: a member
keeps the partitions of its previous target assignment unless balance needs
them elsewhere. ``range`` gives each member a contiguous range of every
topic it subscribes to (the same range of topics with the same partition
count: co-partitioning), recomputed from scratch.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping

__all__ = ["ASSIGNORS", "Assignment", "range_assign", "uniform_assign"]

#: A member's partitions as (topic id, partition) pairs.
Assignment = frozenset[tuple[str, int]]

#: members' subscribed topic ids, partitions per topic id, previous targets -> new targets.
Assignor = Callable[
    [Mapping[str, frozenset[str]], Mapping[str, int], Mapping[str, Assignment]],
    dict[str, Assignment],
]


def uniform_assign(
    subscriptions: Mapping[str, frozenset[str]],
    partitions: Mapping[str, int],
    previous: Mapping[str, Assignment],
) -> dict[str, Assignment]:
    """Balanced and sticky: partition counts per member differ by at most one among
    members that could take each other's partitions, and few partitions move."""
    members = sorted(subscriptions)
    owned: dict[str, set[tuple[str, int]]] = {member: set() for member in members}
    taken: set[tuple[str, int]] = set()
    # 1. Keep what each member had, if it still subscribes to it and it exists.
    for member in members:
        topics = subscriptions[member]
        for topic, partition in sorted(previous.get(member, ())):
            key = (topic, partition)
            if (
                topic in topics
                and partition < partitions.get(topic, 0)
                and key not in taken  # two previous owners: the first keeps it
            ):
                owned[member].add(key)
                taken.add(key)
    subscribers: dict[str, list[str]] = {}
    for member in members:
        for topic in subscriptions[member]:
            if topic in partitions:
                subscribers.setdefault(topic, []).append(member)
    # 2. Shed: with one subscription for all (the common case) a member keeps at
    # most its quota; the rest goes back to the pool.
    homogeneous = len({subscriptions[member] for member in members}) == 1
    if homogeneous and members:
        total = sum(partitions.get(topic, 0) for topic in subscriptions[members[0]])
        quota, extra = divmod(total, len(members))
        # The members that hold the most keep the extra partitions: fewer moves.
        by_size = sorted(members, key=lambda member: (-len(owned[member]), member))
        for rank, member in enumerate(by_size):
            allowed = quota + (1 if rank < extra else 0)
            while len(owned[member]) > allowed:
                key = max(owned[member])
                owned[member].remove(key)
                taken.remove(key)
    # 3. Every free partition to the eligible member that has the fewest.
    for topic in sorted(subscribers):
        eligible = subscribers[topic]
        heap = [(len(owned[member]), member) for member in eligible]
        heapq.heapify(heap)
        for partition in range(partitions[topic]):
            if (topic, partition) in taken:
                continue
            while True:
                count, member = heapq.heappop(heap)
                if count == len(owned[member]):
                    break
                heapq.heappush(heap, (len(owned[member]), member))  # stale entry
            owned[member].add((topic, partition))
            taken.add((topic, partition))
            heapq.heappush(heap, (count + 1, member))
    # 4. Different subscriptions: move partitions from a member with two more
    # than another member that could own them, until no such pair is left.
    if not homogeneous:
        _balance(owned, subscriptions)
    return {member: frozenset(owned[member]) for member in members}


def _balance(
    owned: dict[str, set[tuple[str, int]]], subscriptions: Mapping[str, frozenset[str]]
) -> None:
    # Each move lowers the sum of squared counts, so the loop ends.
    moved = True
    while moved:
        moved = False
        by_count = sorted(owned, key=lambda member: (len(owned[member]), member))
        for receiver in by_count:
            for giver in reversed(by_count):
                if len(owned[giver]) - len(owned[receiver]) < 2:
                    break
                topics = subscriptions[receiver]
                candidates = sorted(key for key in owned[giver] if key[0] in topics)
                if candidates:
                    key = candidates[-1]
                    owned[giver].remove(key)
                    owned[receiver].add(key)
                    moved = True
                    break
            if moved:
                break


def range_assign(
    subscriptions: Mapping[str, frozenset[str]],
    partitions: Mapping[str, int],
    previous: Mapping[str, Assignment],
) -> dict[str, Assignment]:
    """Per topic, the subscribed members in member-id order get contiguous ranges;
    the first ``partitions % members`` get one more."""
    del previous  # recomputed from scratch, as the client-side range assignor
    owned: dict[str, set[tuple[str, int]]] = {member: set() for member in subscriptions}
    subscribers: dict[str, list[str]] = {}
    for member in sorted(subscriptions):
        for topic in subscriptions[member]:
            if topic in partitions:
                subscribers.setdefault(topic, []).append(member)
    for topic, eligible in subscribers.items():
        quota, extra = divmod(partitions[topic], len(eligible))
        start = 0
        for rank, member in enumerate(eligible):
            count = quota + (1 if rank < extra else 0)
            owned[member].update((topic, partition) for partition in range(start, start + count))
            start += count
    return {member: frozenset(keys) for member, keys in owned.items()}


#: Server assignors by the name clients give (group.remote.assignor); the first is the default.
ASSIGNORS: dict[str, Assignor] = {"uniform": uniform_assign, "range": range_assign}

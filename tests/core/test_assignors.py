"""The server assignors of the consumer group protocol (KIP-848): uniform and range."""

from __future__ import annotations

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from trioring.core.groups.assignors import ASSIGNORS, Assignment, range_assign, uniform_assign

TOPICS = ("a", "b", "c")


@st.composite
def groups(
    draw: st.DrawFn, homogeneous: bool | None = None
) -> tuple[dict[str, frozenset[str]], dict[str, int], dict[str, Assignment]]:
    partitions = {topic: draw(st.integers(0, 12)) for topic in TOPICS}
    member_ids = draw(st.lists(st.text("mnxyz", min_size=1, max_size=3), max_size=6, unique=True))
    same = draw(st.booleans()) if homogeneous is None else homogeneous
    common = frozenset(draw(st.sets(st.sampled_from(TOPICS), min_size=1)))
    subscriptions = {
        member: common if same else frozenset(draw(st.sets(st.sampled_from(TOPICS))))
        for member in member_ids
    }
    # A previous target, possibly stale: partitions that no longer exist,
    # topics no longer subscribed, a partition claimed twice.
    previous = {
        member: frozenset(
            draw(st.sets(st.tuples(st.sampled_from(TOPICS), st.integers(0, 14)), max_size=8))
        )
        for member in member_ids
        if draw(st.booleans())
    }
    return subscriptions, partitions, previous


def _check_complete(
    assignment: dict[str, Assignment],
    subscriptions: dict[str, frozenset[str]],
    partitions: dict[str, int],
) -> None:
    assert set(assignment) == set(subscriptions)
    owners = Counter(key for keys in assignment.values() for key in keys)
    assert all(count == 1 for count in owners.values()), "a partition assigned twice"
    for member, keys in assignment.items():
        for topic, partition in keys:
            assert topic in subscriptions[member], (member, topic)
            assert 0 <= partition < partitions[topic]
    wanted = {
        (topic, partition)
        for topics in subscriptions.values()
        for topic in topics
        for partition in range(partitions[topic])
    }
    assert set(owners) == wanted, "every subscribed partition has exactly one owner"


@given(groups())
def test_every_assignor_assigns_every_subscribed_partition_once(group) -> None:
    subscriptions, partitions, previous = group
    for assignor in ASSIGNORS.values():
        first = assignor(subscriptions, partitions, previous)
        _check_complete(first, subscriptions, partitions)
        # Deterministic, whatever the order of the mappings.
        again = assignor(
            dict(reversed(list(subscriptions.items()))), dict(partitions), dict(previous)
        )
        assert again == first


@given(groups(homogeneous=True))
def test_uniform_is_balanced_when_every_member_subscribes_to_the_same_topics(group) -> None:
    subscriptions, partitions, previous = group
    assignment = uniform_assign(subscriptions, partitions, previous)
    if assignment:
        sizes = [len(keys) for keys in assignment.values()]
        assert max(sizes) - min(sizes) <= 1


@given(groups(homogeneous=False))
def test_uniform_leaves_no_member_two_behind_one_it_could_take_from(group) -> None:
    subscriptions, partitions, previous = group
    assignment = uniform_assign(subscriptions, partitions, previous)
    for receiver, mine in assignment.items():
        for theirs in assignment.values():
            if len(theirs) - len(mine) >= 2:
                assert not any(topic in subscriptions[receiver] for topic, _ in theirs)


@given(groups(homogeneous=True), st.text("pq", min_size=1, max_size=2))
def test_uniform_is_sticky_a_new_member_takes_only_its_share(group, newcomer) -> None:
    subscriptions, partitions, _ = group
    if newcomer in subscriptions or not subscriptions:
        return
    before = uniform_assign(subscriptions, partitions, {})
    common = next(iter(subscriptions.values()))
    after = uniform_assign({**subscriptions, newcomer: common}, partitions, before)
    moved = sum(len(before[member] - after[member]) for member in before)
    total = sum(partitions[topic] for topic in common)
    # The newcomer's share is at most ceil(total / members); only that moves.
    assert moved <= -(-total // (len(subscriptions) + 1))
    assert moved == len(after[newcomer])


def test_uniform_keeps_the_previous_target_when_it_is_balanced() -> None:
    subscriptions = {"m1": frozenset({"a"}), "m2": frozenset({"a"})}
    previous = {"m1": frozenset({("a", 1), ("a", 3)}), "m2": frozenset({("a", 0), ("a", 2)})}
    assert uniform_assign(subscriptions, {"a": 4}, previous) == previous


def test_range_gives_contiguous_ranges_and_co_partitions_topics() -> None:
    subscriptions = {"m2": frozenset({"a", "b"}), "m1": frozenset({"a", "b"})}
    assignment = range_assign(subscriptions, {"a": 5, "b": 5}, {})
    assert assignment == {
        "m1": frozenset({("a", 0), ("a", 1), ("a", 2), ("b", 0), ("b", 1), ("b", 2)}),
        "m2": frozenset({("a", 3), ("a", 4), ("b", 3), ("b", 4)}),
    }

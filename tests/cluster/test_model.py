"""Tests of the cluster model: name and partition rules, placement, group -> coordinator."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trioring._constants import OFFSETS_TOPIC_PARTITIONS
from trioring.cluster.model import (
    ClusterMetadata,
    TopicInfo,
    java_string_hash,
    validate_partitions,
    validate_topic_name,
)
from trioring.errors import InvalidPartitionsError, InvalidTopicError
from trioring.storage.log import LogConfig


@pytest.mark.parametrize(
    "name",
    ["a", "A", "0", "topic", "a.b", "a_b", "a-b", "...", "a..b", "_", "-", "x" * 249, "Zz.-_09"],
)
def test_valid_topic_names(name):
    validate_topic_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "",
        ".",
        "..",
        "x" * 250,
        "a/b",
        "/",
        "../etc",
        "a\\b",
        "a b",
        " a",
        "a\tb",
        "é",
        "a:b",
        "a*",
        "__consumer_offsets",
        "__cluster_metadata",
        "\x00",
        None,
        5,
        b"bytes",
    ],
)
def test_invalid_topic_names(name):
    with pytest.raises(InvalidTopicError):
        validate_topic_name(name)


def test_topic_name_length_limit_is_in_the_message():
    with pytest.raises(InvalidTopicError, match="249"):
        validate_topic_name("x" * 250)
    with pytest.raises(InvalidTopicError, match="reserved"):
        validate_topic_name("__consumer_offsets")


def test_topic_name_with_trailing_newline_is_invalid():
    with pytest.raises(InvalidTopicError):
        validate_topic_name("abc\n")


@pytest.mark.parametrize("partitions", [1, 2, 10_000])
def test_valid_partition_counts(partitions):
    validate_partitions(partitions)


@pytest.mark.parametrize("partitions", [0, -1, 10_001, 1.5, "3", None])
def test_invalid_partition_counts(partitions):
    with pytest.raises(InvalidPartitionsError):
        validate_partitions(partitions)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", 0),
        ("a", 97),
        ("hello", 99162322),
        # Java's famous one: "polygenelubricants".hashCode() == Integer.MIN_VALUE.
        ("polygenelubricants", -(2**31)),
        ("\u00e9t\u00e9", 227742),  # UTF-16 code units, not UTF-8 bytes
        ("\U0001f600", 1772899),  # a surrogate pair counts as two units
    ],
)
def test_java_string_hash_matches_java(text, expected):
    assert java_string_hash(text) == expected


def test_group_partition_uses_kafkas_abs():
    # Utils.abs(Integer.MIN_VALUE) is 0 in Kafka, not MIN_VALUE.
    assert ClusterMetadata.offsets_partition("polygenelubricants") == 0
    assert ClusterMetadata.offsets_partition("hello") == 99162322 % OFFSETS_TOPIC_PARTITIONS


def topic(name: str, partitions: int, owners: tuple[int, ...] = ()) -> TopicInfo:
    return TopicInfo(name, partitions, f"id-{name}", LogConfig(), owners)


def test_new_partitions_go_to_the_least_loaded_workers():
    metadata = ClusterMetadata("c", 3, {}, 1)
    assert metadata.place(4) == (0, 1, 2, 0)
    metadata = metadata.apply(
        {"type": "create_topic", "topic": topic("a", 4, (0, 1, 2, 0)).to_json()}
    )
    assert metadata.partition_counts() == [2, 1, 1]
    assert metadata.place(3) == (1, 2, 0)


@given(
    st.dictionaries(st.from_regex(r"[a-z]{1,5}", fullmatch=True), st.integers(1, 9), max_size=6),
    st.integers(1, 5),
)
def test_placement_for_a_worker_count_is_deterministic_and_even(partitions, workers):
    metadata = ClusterMetadata(
        "c", 1, {name: topic(name, count, (0,) * count) for name, count in partitions.items()}, 1
    )
    placement = metadata.placement_for(workers)
    assert placement == metadata.placement_for(workers)
    placed = metadata.apply(
        {"type": "place", "workers": workers, "owners": {k: list(v) for k, v in placement.items()}}
    )
    placed.check()
    counts = placed.partition_counts()
    assert max(counts) - min(counts) <= 1


def test_events_change_the_metadata_and_its_version():
    metadata = ClusterMetadata("c", 2, {}, 1)
    metadata = metadata.apply({"type": "create_topic", "topic": topic("a", 2, (0, 1)).to_json()})
    metadata = metadata.apply({"type": "create_partitions", "name": "a", "owners": [0]})
    assert metadata.topics["a"].partitions == 3 and metadata.owner("a", 2) == 0
    assert metadata.version == 3
    assert ClusterMetadata.from_json(metadata.to_json()) == metadata
    metadata = metadata.apply({"type": "delete_topic", "name": "a"})
    assert metadata.topics == {} and metadata.owner("a", 0) is None
    with pytest.raises(ValueError, match="unknown metadata event"):
        metadata.apply({"type": "nonsense"})


def test_config_events_survive_a_snapshot():
    metadata = ClusterMetadata("c", 2, {}, 1).apply(
        {"type": "create_topic", "topic": topic("a", 2, (0, 1)).to_json()}
    )
    assert metadata.topics["a"].overrides is None  # written before overrides were recorded
    metadata = metadata.apply(
        {
            "type": "alter_broker_defaults",
            "configs": {"log.retention.ms": "1000"},
            "topics": {
                "a": {
                    "config": {**topic("a", 2).to_json()["config"], "retention_ms": 1000},
                    "overrides": {},
                }
            },
        }
    )
    metadata = metadata.apply(
        {
            "type": "alter_broker_defaults",
            "node": "1",
            "configs": {"log.roll.ms": "5000"},
            "topics": {},
        }
    )
    assert metadata.broker_defaults == {"log.retention.ms": "1000"}
    assert metadata.node_defaults == {"1": {"log.roll.ms": "5000"}}
    assert metadata.topics["a"].config.retention_ms == 1000
    assert metadata.topics["a"].overrides == ()
    assert ClusterMetadata.from_json(metadata.to_json()) == metadata
    placed = metadata.apply({"type": "place", "workers": 1, "owners": {"a": [0, 0]}})
    assert placed.broker_defaults == metadata.broker_defaults

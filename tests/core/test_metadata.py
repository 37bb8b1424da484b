"""Tests of TopicStore (topics.json) and the topic name and partition rules."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

import trioring
from trioring.core.metadata import (
    METADATA_DIRECTORY,
    TOPICS_FILE,
    TopicInfo,
    TopicStore,
    validate_partitions,
    validate_topic_name,
)
from trioring.errors import InvalidPartitionsError, InvalidTopicError, StorageError
from trioring.storage.log import LogConfig
from trioring.uring import FallbackBackend


def topics_path(data_dir) -> str:
    return os.path.join(str(data_dir), METADATA_DIRECTORY, TOPICS_FILE)


def write_topics_file(data_dir, content: bytes) -> None:
    os.makedirs(os.path.join(str(data_dir), METADATA_DIRECTORY), exist_ok=True)
    with open(topics_path(data_dir), "wb") as file:
        file.write(content)


def read_topics_file(data_dir) -> dict[str, Any]:
    with open(topics_path(data_dir), "rb") as file:
        document: dict[str, Any] = json.load(file)
    return document


def metadata_directory_listing(data_dir) -> list[str] | None:
    directory = os.path.join(str(data_dir), METADATA_DIRECTORY)
    return sorted(os.listdir(directory)) if os.path.isdir(directory) else None


async def load(data_dir) -> TopicStore:
    store = TopicStore(str(data_dir), FallbackBackend())
    await store.load()
    return store


async def test_empty_store_loads_empty_and_creates_its_directory(tmp_path):
    store = await load(tmp_path)
    assert store.topics == {}
    assert metadata_directory_listing(tmp_path) == []


async def test_save_load_round_trip(tmp_path):
    store = await load(tmp_path)
    custom = LogConfig(
        segment_bytes=4096,
        segment_ms=60_000,
        retention_bytes=123_456,
        retention_ms=None,
        index_interval_bytes=128,
    )
    a = store.new_topic("a", 3, LogConfig())
    b = store.new_topic("b.b_b-b", 1, custom)
    assert a.topic_id != b.topic_id
    assert len(a.topic_id) == 32
    await store.save({"a": a, "b.b_b-b": b})
    assert store.topics == {"a": a, "b.b_b-b": b}
    # Nothing half-written is left behind.
    assert metadata_directory_listing(tmp_path) == [TOPICS_FILE]
    document = read_topics_file(tmp_path)
    assert document["version"] == 1
    assert [entry["name"] for entry in document["topics"]] == ["a", "b.b_b-b"]

    reloaded = await load(tmp_path)
    assert reloaded.topics == {"a": a, "b.b_b-b": b}
    assert reloaded.topics["b.b_b-b"].config == custom

    # A later save replaces the list.
    c = store.new_topic("c", 2, LogConfig())
    await store.save({"c": c})
    assert (await load(tmp_path)).topics == {"c": c}


async def test_unknown_config_keys_are_ignored_on_load(tmp_path):
    """A newer version may add settings; an older one must still start."""
    store = await load(tmp_path)
    topic = store.new_topic("t", 1, LogConfig())
    await store.save({"t": topic})
    document = read_topics_file(tmp_path)
    document["topics"][0]["config"]["future_setting"] = 1
    write_topics_file(tmp_path, json.dumps(document).encode())
    assert (await load(tmp_path)).topics == {"t": topic}


def good_document() -> dict[str, object]:
    return {
        "version": 1,
        "topics": [{"name": "t", "partitions": 1, "topic_id": "0" * 32, "config": {}}],
    }


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"{",
        b"\xff\xfe garbage",
        json.dumps({"version": 2, "topics": []}).encode(),
        json.dumps({"topics": []}).encode(),
        json.dumps({"version": 1}).encode(),
        json.dumps({"version": 1, "topics": [{"name": "t"}]}).encode(),
        json.dumps({"version": 1, "topics": [1]}).encode(),
        json.dumps(
            {
                "version": 1,
                "topics": [{"name": "t", "partitions": "many", "topic_id": "x", "config": {}}],
            }
        ).encode(),
        json.dumps(
            {
                "version": 1,
                "topics": [
                    {"name": "t", "partitions": 1, "topic_id": "x", "config": {"segment_bytes": 1}}
                ],
            }
        ).encode(),
    ],
)
async def test_corrupt_topics_file_is_a_storage_error_that_says_what_to_do(tmp_path, content):
    write_topics_file(tmp_path, content)
    with pytest.raises(StorageError) as raised:
        await load(tmp_path)
    message = str(raised.value)
    assert topics_path(tmp_path) in message
    assert "backup" in message
    assert "remove" in message


@pytest.mark.parametrize(
    "content",
    [
        b"[]",
        b"null",
        b'"text"',
        json.dumps(
            {
                "version": 1,
                "topics": [{"name": "t", "partitions": 1, "topic_id": "x", "config": None}],
            }
        ).encode(),
    ],
)
async def test_wrongly_shaped_topics_file_is_a_storage_error(tmp_path, content):
    write_topics_file(tmp_path, content)
    with pytest.raises(StorageError, match="backup"):
        await load(tmp_path)


async def test_corrupt_topics_file_stops_the_broker_from_opening(tmp_path):
    write_topics_file(tmp_path, b"not json")
    with pytest.raises(StorageError, match=r"topics\.json"):
        async with trioring.open_broker(tmp_path):
            pass  # pragma: no cover


async def test_good_document_fixture_loads(tmp_path):
    write_topics_file(tmp_path, json.dumps(good_document()).encode())
    assert (await load(tmp_path)).topics == {"t": TopicInfo("t", 1, "0" * 32, LogConfig())}


# --- name and partition rules ---------------------------------------------------------


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

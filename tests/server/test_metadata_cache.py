"""Encoded Metadata answers are cached, and never stale.

The cache key is the answer's whole content, so creating or deleting a
topic gives a new key; these tests check that, that a cached answer is
byte-for-byte what encoding the kio response gives, and the bound.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from kio.serial import entity_reader

import trioring
from trioring.cluster.model import Node
from trioring.protocol.kafka import (
    ApiKey,
    EncodedBody,
    encode_response,
    encode_response_body,
    request_schema,
    response_schema,
)
from trioring.server.apis import ApiContext, MetadataCache
from trioring.server.apis.metadata import metadata


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[trioring.Broker]:
    async with trioring.open_broker(str(tmp_path / "data")) as broker:
        yield broker


def context(
    broker: trioring.Broker, cache: MetadataCache, *, auto_create: bool = True
) -> ApiContext:
    broker.cluster.nodes.value = (Node(0, "127.0.0.1", 9092),)
    return ApiContext(
        broker.handlers,
        broker.handler_context(auto_create_topics=auto_create),
        metadata_cache=cache,
    )


def request(version: int, topics: list[str] | None, allow_create: bool = True) -> Any:
    schema = request_schema(ApiKey.METADATA, version)
    module = __import__(schema.__module__, fromlist=["MetadataRequestTopic"])
    requested = (
        None if topics is None else tuple(module.MetadataRequestTopic(name=n) for n in topics)
    )
    if version >= 4:
        return schema(topics=requested, allow_auto_topic_creation=allow_create)
    return schema(topics=requested if requested is not None else ())


def decoded(body: EncodedBody) -> Any:
    schema = response_schema(ApiKey.METADATA, body.api_version)
    response, size = entity_reader(schema)(body.body, 0)
    assert size == len(body.body)
    return response


def topic_partitions(body: EncodedBody) -> dict[str, int]:
    return {str(t.name): len(t.partitions) for t in decoded(body).topics}


@pytest.mark.parametrize("version", [0, 1, 2, 3, 4])
async def test_cached_answer_is_the_encoded_response(broker: trioring.Broker, version: int) -> None:
    await broker.create_topic("orders", partitions=3)
    cache = MetadataCache()
    first = await metadata(context(broker, cache), version, request(version, ["orders"]))
    second = await metadata(context(broker, cache), version, request(version, ["orders"]))
    assert isinstance(first, EncodedBody) and second is first
    assert (cache.misses, cache.hits) == (1, 1)
    # Framed with any correlation id, it is what encoding the kio object gives.
    response = decoded(first)
    assert encode_response(ApiKey.METADATA, version, 7, first) == encode_response(
        ApiKey.METADATA, version, 7, response
    )
    assert encode_response_body(response) == first


async def test_created_and_deleted_topics_are_never_answered_from_a_stale_entry(
    broker: trioring.Broker,
) -> None:
    cache = MetadataCache()
    ctx = context(broker, cache)
    await broker.create_topic("a", partitions=1)
    assert topic_partitions(await metadata(ctx, 4, request(4, None))) == {"a": 1}
    await broker.create_topic("b", partitions=2)
    assert topic_partitions(await metadata(ctx, 4, request(4, None))) == {"a": 1, "b": 2}
    await broker.delete_topic("a")
    assert topic_partitions(await metadata(ctx, 4, request(4, None))) == {"b": 2}
    # Auto-creation happens before the lookup: the answer names the new topic.
    answer = decoded(await metadata(ctx, 4, request(4, ["fresh"])))
    assert [(str(t.name), t.error_code.value, len(t.partitions)) for t in answer.topics] == [
        ("fresh", 0, broker.shard.config.default_partitions)
    ]
    # Not allowed to create: UNKNOWN_TOPIC_OR_PARTITION, and a different entry.
    answer = decoded(await metadata(ctx, 4, request(4, ["absent"], allow_create=False)))
    assert [(str(t.name), t.error_code.value) for t in answer.topics] == [("absent", 3)]


async def test_cache_is_bounded(broker: trioring.Broker) -> None:
    cache = MetadataCache(entries_max=2)
    ctx = context(broker, cache, auto_create=False)
    for name in ("x", "y", "z"):
        await metadata(ctx, 4, request(4, [name]))
    assert len(cache._bodies) == 2
    await metadata(ctx, 4, request(4, ["z"]))
    assert cache.hits == 1

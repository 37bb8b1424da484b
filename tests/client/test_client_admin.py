"""trioring.client's admin client against a real broker process (1 and 2 workers), checked
against what confluent-kafka sees, and against an embedded broker reached in-process,
checked against its own API (``target``: the same test bodies)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from client_support import EMBEDDED, Target, open_target
from kio.schema.errors import ErrorCode

from trioring.client import open_admin, open_producer
from trioring.errors import KafkaError
from trioring.testing import BrokerProcess

pytest.importorskip("confluent_kafka")


@pytest.fixture(scope="module", params=[1, 2, 0], ids=["1-worker", "2-workers", EMBEDDED])
def process(
    tmp_path_factory: pytest.TempPathFactory, request: Any
) -> Iterator[BrokerProcess | None]:
    """A broker process of ``request.param`` workers, or None (0): an embedded broker."""
    if request.param == 0:
        yield None
        return
    with BrokerProcess(tmp_path_factory.mktemp("admin") / "data", workers=request.param) as process:
        yield process
        code = process.stop()
    assert code == 0


@pytest.fixture
async def target(process: BrokerProcess | None, tmp_path: Path) -> AsyncIterator[Target]:
    async with open_target(process, tmp_path / "embedded") as target:
        yield target


def name() -> str:
    return f"admin-{uuid.uuid4().hex[:10]}"


async def test_topics_are_created_grown_described_and_deleted(target: Target) -> None:
    topic = name()
    async with open_admin(target.connect) as admin:
        await admin.create_topic(topic, partitions=3, configs={"retention.ms": "60000"})
        with pytest.raises(KafkaError) as exists:
            await admin.create_topic(topic, partitions=1)
        assert exists.value.kafka_error_code == ErrorCode.topic_already_exists
        info = await admin.describe_topic(topic)
        assert [p.partition for p in info.partitions] == [0, 1, 2]
        assert topic in await admin.list_topics()
        assert (await admin.describe_topic_configs(topic))["retention.ms"] == "60000"
        await admin.create_partitions(topic, 5)
        assert len((await admin.describe_topic(topic)).partitions) == 5
        with pytest.raises(KafkaError) as smaller:
            await admin.create_partitions(topic, 2)
        assert smaller.value.kafka_error_code == ErrorCode.invalid_partitions
        # confluent-kafka (or the embedded broker's API) sees the same topic.
        assert await target.partition_count(topic) == 5
        await admin.delete_topic(topic)
        assert topic not in await admin.list_topics()
        with pytest.raises(KafkaError) as unknown:
            await admin.delete_topic(topic)
        assert unknown.value.kafka_error_code == ErrorCode.unknown_topic_or_partition


async def test_offsets_and_a_groups_lag(target: Target) -> None:
    topic, group = name(), name()
    async with open_admin(target.connect) as admin:
        await admin.create_topic(topic, partitions=2)
        async with open_producer(target.connect) as producer:
            for i in range(10):
                await producer.send(topic, b"v", partition=i % 2)
        assert await admin.list_offsets([(topic, 0), (topic, 1)], "latest") == {
            (topic, 0): 5,
            (topic, 1): 5,
        }
        assert await admin.list_offsets([(topic, 0)], "earliest") == {(topic, 0): 0}
        # A consumer of the group (or the embedded broker's API) commits 3 of partition 0.
        await target.commit(group, {(topic, 0): 3})
        lag = await admin.group_lag(group)
        assert {key: (value.committed, value.end, value.lag) for key, value in lag.items()} == {
            (topic, 0): (3, 5, 2)
        }
        listed = {listing.group_id: listing for listing in await admin.list_groups()}
        assert group in listed and listed[group].state == "Empty"
        described = await admin.describe_group(group)
        assert (described.group_id, described.state, described.members) == (group, "Empty", ())
        await admin.delete_group(group)
        assert await admin.group_lag(group) == {}
        with pytest.raises(KafkaError) as unknown:
            await admin.list_offsets([(topic, 7)])
        assert unknown.value.kafka_error_code == ErrorCode.leader_not_available

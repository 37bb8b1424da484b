"""The client's Cluster (its metadata table) against an embedded broker: what a refresh
keeps, drops, and never creates."""

from __future__ import annotations

from pathlib import Path

import trio
from kio.schema.errors import ErrorCode

import trioring
from trioring.client import Cluster


async def test_a_refresh_of_every_topic_forgets_deleted_ones(tmp_path: Path) -> None:
    async with trioring.open_broker(tmp_path / "data") as broker:
        await broker.create_topic("kept", 1)
        await broker.create_topic("deleted", 2)
        async with Cluster.open(broker) as cluster:
            await cluster.refresh(None)
            assert {"kept", "deleted"} <= set(cluster.topics)
            await broker.delete_topic("deleted")
            await cluster.refresh(None)
            assert "deleted" not in cluster.topics
            assert cluster.topics["kept"].error_code == ErrorCode.none


async def test_a_refresh_of_named_topics_never_creates_others(tmp_path: Path) -> None:
    """Asking for one topic does not ask again for every topic ever seen: on a broker
    that auto-creates topics, that would create a deleted topic again."""
    async with trioring.open_broker(tmp_path / "data") as broker:
        await broker.create_topic("deleted", 1)
        async with Cluster.open(broker, allow_auto_create_topics=True) as cluster:
            await cluster.refresh(["deleted"])
            assert "deleted" in cluster.topics
            await broker.delete_topic("deleted")
            await cluster.refresh(["auto-created"])
            assert "deleted" not in broker.topics()
            assert "auto-created" in broker.topics()
            assert "auto-created" in cluster.topics
            # Refreshed without auto-creation: it stays deleted and leaves the table.
            await cluster.refresh(["deleted"], auto_create=False)
            assert "deleted" not in broker.topics()
            assert "deleted" not in cluster.topics


async def test_a_topic_answered_unknown_leaves_the_table(tmp_path: Path) -> None:
    async with trioring.open_broker(tmp_path / "data") as broker:
        await broker.create_topic("gone", 1)
        async with Cluster.open(broker, allow_auto_create_topics=False) as cluster:
            await cluster.refresh(["gone"])
            assert not cluster.stale("gone")
            await broker.delete_topic("gone")
            await cluster.refresh(["gone"])
            assert "gone" not in cluster.topics
            assert cluster.stale("gone"), "an unknown topic's metadata is never fresh"


async def test_each_topic_ages_on_its_own(tmp_path: Path) -> None:
    async with trioring.open_broker(tmp_path / "data") as broker:
        await broker.create_topic("old", 1)
        await broker.create_topic("new", 1)
        async with Cluster.open(broker, metadata_max_age_ms=100) as cluster:
            await cluster.refresh(["old"])
            await trio.sleep(0.15)
            await cluster.refresh(["new"])
            assert cluster.stale_topics() == ["old"]
            assert cluster.stale("old") and not cluster.stale("new")
            assert cluster.next_stale_at() <= trio.current_time()

"""ClusterMetadata: topics, their configs and which worker owns each partition.

The controller changes it only by events (``apply``); the same events,
replayed from the metadata log at start-up or pushed over the control
channel, give every worker the same picture. The value is immutable: a
change makes a new one, so a worker can hold it in a watchable value and
compare versions.

Placement. Each partition has one owner, a worker index. New partitions go
to the workers that own the fewest (ties to the lowest index), so load
spreads evenly as topics come and go. When the broker restarts with another
worker count, every partition is placed anew, deterministically: the
partitions in (topic name, partition) order are dealt round-robin over the
workers. Partition directories never move (all workers share the data
directory), so a new placement copies no data.

Consumer groups as Kafka does them: committed offsets live in the internal
``__consumer_offsets`` topic of a fixed partition count; a group belongs to
partition ``abs(java_hash(group_id)) % count`` and its coordinator is that
partition's owner.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from typing import Any

import attrs

from trioring._constants import (
    OFFSETS_TOPIC_PARTITIONS,
    PARTITIONS_MAX,
    TOPIC_NAME_LENGTH_MAX,
)
from trioring.errors import InvalidPartitionsError, InvalidTopicError
from trioring.storage.log import LogConfig

__all__ = [
    "METADATA_LOG_DIRECTORY",
    "OFFSETS_TOPIC",
    "RESERVED_TOPIC_NAMES",
    "ClusterMetadata",
    "Node",
    "TopicInfo",
    "java_string_hash",
    "overrides_from_json",
    "validate_partitions",
    "validate_topic_name",
]

#: The internal topic of committed offsets (Kafka's name).
OFFSETS_TOPIC = "__consumer_offsets"
#: Where the controller's metadata log lives (KRaft's name).
METADATA_LOG_DIRECTORY = "__cluster_metadata-0"
#: Names trioring uses for its own directories (and the 0.1 metadata directory).
RESERVED_TOPIC_NAMES = frozenset({"__cluster_metadata", OFFSETS_TOPIC})
_TOPIC_NAME = re.compile(r"[a-zA-Z0-9._-]+")


def validate_topic_name(name: str) -> None:
    """Kafka's rules: 1-249 of ``[a-zA-Z0-9._-]``, not ``.`` or ``..``; not ours."""
    if not isinstance(name, str) or not name:
        raise InvalidTopicError("a topic name must be a non-empty string")
    if len(name) > TOPIC_NAME_LENGTH_MAX:
        raise InvalidTopicError(
            f"topic name is {len(name)} characters; the limit is {TOPIC_NAME_LENGTH_MAX}"
        )
    if name in {".", ".."} or not _TOPIC_NAME.fullmatch(name):
        raise InvalidTopicError(
            f"topic name {name!r} is not allowed: use letters, digits, '.', '_' and '-'"
        )
    if name in RESERVED_TOPIC_NAMES:
        raise InvalidTopicError(f"topic name {name!r} is reserved for trioring's own use")


def validate_partitions(partitions: int) -> None:
    if not isinstance(partitions, int) or not 1 <= partitions <= PARTITIONS_MAX:
        raise InvalidPartitionsError(
            f"a topic needs between 1 and {PARTITIONS_MAX} partitions, not {partitions!r}"
        )


def java_string_hash(text: str) -> int:
    """Java's ``String.hashCode`` (UTF-16 code units, 32-bit signed), as Kafka hashes group ids."""
    value = 0
    encoded = text.encode("utf-16-be")
    for index in range(0, len(encoded), 2):
        value = (31 * value + ((encoded[index] << 8) | encoded[index + 1])) & 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def config_to_json(config: LogConfig) -> dict[str, Any]:
    return attrs.asdict(config)


def config_from_json(data: Mapping[str, Any]) -> LogConfig:
    known = {field.name for field in attrs.fields(LogConfig)}
    return LogConfig(**{key: value for key, value in data.items() if key in known})


@attrs.frozen
class TopicInfo:
    name: str
    partitions: int
    topic_id: str
    config: LogConfig
    #: The worker that owns each partition (``owners[p]`` for partition p).
    owners: tuple[int, ...] = ()
    #: trioring's own topic (the committed offsets), hidden from topic listings.
    internal: bool = False
    #: The topic's own configs, Kafka names to values (sorted pairs);
    #: ``config`` is what they make of the broker's defaults. None for topics
    #: of trioring before it recorded them: their ``config`` is all there is.
    overrides: tuple[tuple[str, str], ...] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "partitions": self.partitions,
            "topic_id": self.topic_id,
            "config": config_to_json(self.config),
            "owners": list(self.owners),
            "internal": self.internal,
            **({} if self.overrides is None else {"overrides": dict(self.overrides)}),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TopicInfo:
        return cls(
            name=str(data["name"]),
            partitions=int(data["partitions"]),
            topic_id=str(data["topic_id"]),
            config=config_from_json(data["config"]),
            owners=tuple(int(owner) for owner in data.get("owners", ())),
            internal=bool(data.get("internal", False)),
            overrides=None if "overrides" not in data else overrides_from_json(data["overrides"]),
        )


def overrides_from_json(data: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((str(name), str(value)) for name, value in data.items()))


@attrs.frozen
class Node:
    """One worker as clients see it: a Kafka node."""

    node_id: int
    host: str
    port: int


@attrs.frozen
class ClusterMetadata:
    cluster_id: str
    #: The worker count the placement is for.
    workers: int
    topics: Mapping[str, TopicInfo] = attrs.field(factory=dict)
    #: Events applied so far; a worker acknowledges the version it has.
    version: int = 0
    #: Broker configs changed at run time for the whole cluster (Kafka's
    #: dynamic cluster-wide defaults): ``log.*`` topic defaults by Kafka name.
    broker_defaults: Mapping[str, str] = attrs.field(factory=dict)
    #: The same for one node (Kafka's per-broker dynamic configs), by node id:
    #: they apply to that worker's partitions, over the cluster-wide ones.
    node_defaults: Mapping[str, Mapping[str, str]] = attrs.field(factory=dict)

    # --- reading ------------------------------------------------------------------

    def topic(self, name: str) -> TopicInfo | None:
        return self.topics.get(name)

    @functools.cached_property
    def topics_by_id(self) -> Mapping[str, TopicInfo]:
        """Topics by their id (hex, as stored): Fetch v13+ and Metadata v10+ name topics so."""
        return {info.topic_id: info for info in self.topics.values()}

    def user_topics(self) -> dict[str, TopicInfo]:
        """Topics clients created (the internal offsets topic left out)."""
        return {name: info for name, info in self.topics.items() if not info.internal}

    def owner(self, topic: str, partition: int) -> int | None:
        info = self.topics.get(topic)
        if info is None or not 0 <= partition < info.partitions:
            return None
        return info.owners[partition]

    def owned_by(self, worker: int) -> Iterator[tuple[TopicInfo, int]]:
        """Every (topic, partition) the worker owns."""
        for info in self.topics.values():
            for partition, owner in enumerate(info.owners):
                if owner == worker:
                    yield info, partition

    def partition_counts(self) -> list[int]:
        """Partitions each worker owns."""
        counts = [0] * self.workers
        for info in self.topics.values():
            for owner in info.owners:
                counts[owner] += 1
        return counts

    @staticmethod
    def offsets_partition(group_id: str) -> int:
        """The ``__consumer_offsets`` partition of a group (Kafka's formula, Utils.abs)."""
        hashed = java_string_hash(group_id)
        return (0 if hashed == -(1 << 31) else abs(hashed)) % OFFSETS_TOPIC_PARTITIONS

    def coordinator(self, group_id: str) -> int | None:
        """The worker that coordinates ``group_id`` (None before the offsets topic exists)."""
        return self.owner(OFFSETS_TOPIC, self.offsets_partition(group_id))

    # --- placement ----------------------------------------------------------------

    def place(self, count: int) -> tuple[int, ...]:
        """Owners for ``count`` new partitions: the least loaded workers first."""
        counts = self.partition_counts()
        owners = []
        for _ in range(count):
            worker = min(range(self.workers), key=lambda index: (counts[index], index))
            counts[worker] += 1
            owners.append(worker)
        return tuple(owners)

    def placement_for(self, workers: int) -> dict[str, tuple[int, ...]]:
        """Every partition placed anew over ``workers``, deterministically (module docstring)."""
        owners: dict[str, list[int]] = {}
        dealt = 0
        for name in sorted(self.topics):
            owners[name] = []
            for _ in range(self.topics[name].partitions):
                owners[name].append(dealt % workers)
                dealt += 1
        return {name: tuple(worker_list) for name, worker_list in owners.items()}

    # --- changing -----------------------------------------------------------------

    def apply(self, event: Mapping[str, Any]) -> ClusterMetadata:
        """The metadata after one event of the metadata log (see controller.py)."""
        kind = event["type"]
        topics = dict(self.topics)
        if kind == "create_topic":
            info = TopicInfo.from_json(event["topic"])
            assert info.name not in topics, f"topic {info.name} created twice"
            assert len(info.owners) == info.partitions
            topics[info.name] = info
        elif kind == "create_partitions":
            info = topics[event["name"]]
            added = tuple(int(owner) for owner in event["owners"])
            topics[info.name] = attrs.evolve(
                info, partitions=info.partitions + len(added), owners=info.owners + added
            )
        elif kind == "delete_topic":
            del topics[event["name"]]
        elif kind == "alter_topic_config":
            info = topics[event["name"]]
            topics[info.name] = attrs.evolve(
                info,
                config=config_from_json(event["config"]),
                overrides=overrides_from_json(event["overrides"]),
            )
        elif kind == "alter_broker_defaults":
            # The topics that follow a changed default come with their new configs.
            for name, change in event["topics"].items():
                topics[name] = attrs.evolve(
                    topics[name],
                    config=config_from_json(change["config"]),
                    overrides=overrides_from_json(change["overrides"]),
                )
            defaults = {str(key): str(value) for key, value in event["configs"].items()}
            node = str(event.get("node", ""))
            if node:
                nodes = dict(self.node_defaults)
                nodes[node] = defaults
                if not defaults:
                    del nodes[node]
                return attrs.evolve(
                    self, topics=topics, version=self.version + 1, node_defaults=nodes
                )
            return attrs.evolve(
                self, topics=topics, version=self.version + 1, broker_defaults=defaults
            )
        elif kind == "place":
            workers = int(event["workers"])
            for name, owners in event["owners"].items():
                topics[name] = attrs.evolve(topics[name], owners=tuple(int(o) for o in owners))
            return attrs.evolve(self, workers=workers, topics=topics, version=self.version + 1)
        elif kind in ("cluster", "producer_ids"):
            pass  # the cluster id is set on creation; producer ids are the controller's
        else:
            raise ValueError(f"unknown metadata event type {kind!r}")
        return attrs.evolve(self, topics=topics, version=self.version + 1)

    def check(self) -> None:
        """Assert the invariants of a placement (tests, and the controller after changes)."""
        for name, info in self.topics.items():
            assert name == info.name
            assert len(info.owners) == info.partitions, info
            assert all(0 <= owner < self.workers for owner in info.owners), info

    def to_json(self) -> dict[str, Any]:
        return {
            "cluster_id": self.cluster_id,
            "workers": self.workers,
            "version": self.version,
            "topics": [info.to_json() for info in self.topics.values()],
            "broker_defaults": dict(self.broker_defaults),
            "node_defaults": {node: dict(configs) for node, configs in self.node_defaults.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ClusterMetadata:
        topics = {info.name: info for info in map(TopicInfo.from_json, data["topics"])}
        defaults = {str(k): str(v) for k, v in data.get("broker_defaults", {}).items()}
        nodes = {
            str(node): {str(k): str(v) for k, v in configs.items()}
            for node, configs in data.get("node_defaults", {}).items()
        }
        return cls(
            str(data["cluster_id"]),
            int(data["workers"]),
            topics,
            int(data["version"]),
            defaults,
            nodes,
        )

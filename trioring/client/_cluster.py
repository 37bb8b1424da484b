"""Cluster: what the client knows of the brokers, and one connection to each.

It bootstraps from the addresses it is given (or from an embedded Broker:
then every connection is in-process, see ``_inprocess.py``), keeps the
cluster's metadata (brokers, and for each topic its partitions' leaders), and
hands out one connection per broker, opening a new one when the old one
broke. A producer or consumer asks it for the leader of a partition; an
answer that says the metadata is stale (NOT_LEADER_OR_FOLLOWER,
UNKNOWN_TOPIC_OR_PARTITION, a broken connection) makes it refresh before the
next try.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import attrs
import trio
from kio.schema.errors import ErrorCode

from trioring._broker import IN_PROCESS_HOST, Broker
from trioring._constants import (
    CLIENT_CONNECT_TIMEOUT_MS_DEFAULT,
    CLIENT_METADATA_MAX_AGE_MS_DEFAULT,
    CLIENT_REQUEST_TIMEOUT_MS_DEFAULT,
)
from trioring._exception_groups import BodyError, body_exception_unwrapped
from trioring.client._connection import BrokerConnection, ConnectionBrokenError, WireConnection
from trioring.client._inprocess import InProcessConnection
from trioring.errors import InvalidArgumentError, KafkaError
from trioring.protocol.kafka import ApiKey, request_schema
from trioring.protocol.kafka._build import build, sibling

__all__ = [
    "Cluster",
    "PartitionInfo",
    "TopicInfo",
    "coordinator_key",
    "node_of",
    "parse_bootstrap",
    "rebalance_key",
]

logger = logging.getLogger("trioring.client")

#: FindCoordinator's key type of a consumer group.
_GROUP_KEY_TYPE = 0


#: Keys below this one are rebalance connections; from it to -1, coordinator ones.
_REBALANCE_KEYS = -(2**31)


def coordinator_key(node: int) -> int:
    """The key of the coordinator connection to ``node`` (node ids are int32, 0 or more)."""
    return -1 - node


def rebalance_key(node: int) -> int:
    """The key of the connection to ``node`` that carries a member's JoinGroup and SyncGroup."""
    return _REBALANCE_KEYS - 1 - node


def node_of(key: int) -> int:
    """The node a connection key is for."""
    if key >= 0:
        return key
    if key >= _REBALANCE_KEYS:
        return -1 - key
    return _REBALANCE_KEYS - 1 - key


def parse_bootstrap(bootstrap: str | Sequence[str]) -> list[tuple[str, int]]:
    """``"host:port,host:port"`` (or a list of them) as (host, port) pairs."""
    items = bootstrap.split(",") if isinstance(bootstrap, str) else list(bootstrap)
    addresses = []
    for item in items:
        host, _, port = item.strip().rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise InvalidArgumentError(
                f"bootstrap address {item!r} is not HOST:PORT (for example 127.0.0.1:9092)"
            )
        addresses.append((host.strip("[]"), int(port)))
    if not addresses:
        raise InvalidArgumentError("give at least one bootstrap address, HOST:PORT")
    return addresses


@attrs.frozen
class PartitionInfo:
    partition: int
    leader: int
    #: The partition's error in the last metadata (NONE, or e.g. LEADER_NOT_AVAILABLE).
    error_code: int = ErrorCode.none


@attrs.frozen
class TopicInfo:
    name: str
    error_code: int
    partitions: tuple[PartitionInfo, ...] = ()
    topic_id: str = ""


class Cluster:
    """The brokers, the topics' leaders, and a connection per broker. Open with :meth:`open`."""

    def __init__(
        self,
        bootstrap: list[tuple[str, int]],
        nursery: trio.Nursery,
        *,
        client_id: str,
        request_timeout_ms: int,
        connect_timeout_ms: int,
        metadata_max_age_ms: int,
        allow_auto_create_topics: bool,
        broker: Broker | None = None,
    ) -> None:
        self._bootstrap = bootstrap
        #: An embedded broker: every connection, to whichever node, is in-process.
        self._broker = broker
        self._nursery = nursery
        self.client_id = client_id
        self._request_timeout_ms = request_timeout_ms
        self._connect_timeout_ms = connect_timeout_ms
        self._metadata_max_age_s = metadata_max_age_ms / 1000
        self._allow_auto_create = allow_auto_create_topics
        self.brokers: dict[int, tuple[str, int]] = {}
        self.topics: dict[str, TopicInfo] = {}
        #: When each topic in ``topics`` was last answered for (trio.current_time()).
        self._topic_times: dict[str, float] = {}
        self.controller_id = -1
        self._metadata_time = -math.inf
        self._connections: dict[int | tuple[str, int], BrokerConnection] = {}
        self._connecting: dict[int | tuple[str, int], trio.Event] = {}
        self._refresh_lock = trio.Lock()

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        bootstrap_or_broker: str | Sequence[str] | Broker,
        *,
        client_id: str = "trioring",
        request_timeout_ms: int = CLIENT_REQUEST_TIMEOUT_MS_DEFAULT,
        connect_timeout_ms: int = CLIENT_CONNECT_TIMEOUT_MS_DEFAULT,
        metadata_max_age_ms: int = CLIENT_METADATA_MAX_AGE_MS_DEFAULT,
        allow_auto_create_topics: bool = True,
    ) -> AsyncIterator[Cluster]:
        """The cluster for the block: ``"host:port,..."`` (or a list of them) to bootstrap
        from over the wire, or an embedded Broker to reach in-process."""
        broker = None
        if isinstance(bootstrap_or_broker, Broker):
            # The node the embedded broker's Metadata names (any key would do).
            broker, addresses = bootstrap_or_broker, [(IN_PROCESS_HOST, 0)]
        else:
            # A mistake is raised bare, before any task.
            addresses = parse_bootstrap(bootstrap_or_broker)
        body = BodyError()
        async with body_exception_unwrapped(body), trio.open_nursery() as nursery:
            cluster = cls(
                addresses,
                nursery,
                client_id=client_id,
                request_timeout_ms=request_timeout_ms,
                connect_timeout_ms=connect_timeout_ms,
                metadata_max_age_ms=metadata_max_age_ms,
                allow_auto_create_topics=allow_auto_create_topics,
                broker=broker,
            )
            try:
                yield cluster
            except BaseException as error:
                body.error = error
                raise
            finally:
                nursery.cancel_scope.cancel()

    # --- connections ---------------------------------------------------------------------

    async def connection(self, node: int | tuple[str, int]) -> BrokerConnection:
        """The connection to a broker (by node id, or address for bootstrap), opened if needed.

        A negative node, ``coordinator_key(node)``, is a second connection to
        broker ``node`` for its group coordinator's requests; a third one,
        ``rebalance_key(node)``, carries a member's JoinGroup and SyncGroup.
        The broker holds JoinGroup for the whole rebalance and answers one
        connection's requests in order, so neither fetches nor commits and
        heartbeats may queue behind it.
        """
        while True:
            existing = self._connections.get(node)
            if existing is not None and existing.broken is None:
                return existing
            pending = self._connecting.get(node)
            if pending is not None:
                await pending.wait()
                continue
            if isinstance(node, int):
                node_id = node_of(node)
                address = self.brokers.get(node_id)
                if address is None:
                    raise ConnectionBrokenError(f"node {node_id} is not in the metadata")
            else:
                address = node
            done = self._connecting[node] = trio.Event()
            try:
                self._connections[node] = await self._nursery.start(self._keep, *address)
            finally:
                del self._connecting[node]
                done.set()

    async def _keep(
        self, host: str, port: int, *, task_status: trio.TaskStatus[BrokerConnection]
    ) -> None:
        opened: AbstractAsyncContextManager[BrokerConnection]
        if self._broker is not None:
            # In-process, whatever address the metadata gives the node.
            opened = InProcessConnection.open(
                self._broker, client_id=self.client_id, request_timeout_ms=self._request_timeout_ms
            )
        else:
            opened = WireConnection.open(
                host,
                port,
                client_id=self.client_id,
                connect_timeout_ms=self._connect_timeout_ms,
                request_timeout_ms=self._request_timeout_ms,
            )
        async with opened as connection:
            task_status.started(connection)
            await connection.closed.wait()

    async def any_connection(self) -> BrokerConnection:
        """A connection to some broker: a known one if any is up, else a bootstrap address."""
        candidates: list[int | tuple[str, int]] = list(self.brokers) or []
        random.shuffle(candidates)
        candidates += list(self._bootstrap)
        last: Exception | None = None
        for node in candidates:
            try:
                return await self.connection(node)
            except ConnectionBrokenError as error:
                last = error
        raise ConnectionBrokenError(f"no broker is reachable: {last}")

    # --- metadata ------------------------------------------------------------------------

    async def refresh(
        self, topics: Iterable[str] | None = None, *, auto_create: bool = True
    ) -> None:
        """Ask a broker for the brokers and ``topics``.

        None asks for every topic and replaces the topic table, so a deleted
        topic leaves it. Named topics are asked for alone, with auto-creation
        if the cluster allows it and ``auto_create`` (False for topics only
        refreshed, not about to be used): asking again for every topic ever
        seen would re-create, on a broker that auto-creates, a topic deleted
        since. A named topic answered UNKNOWN_TOPIC_OR_PARTITION leaves the
        table.
        """
        names = None if topics is None else sorted(set(topics))
        async with self._refresh_lock:
            connection = await self.any_connection()
            version = connection.version(ApiKey.METADATA)
            topic_class = sibling(request_schema(ApiKey.METADATA, version), "MetadataRequestTopic")
            wanted = None
            if names is not None:
                wanted = tuple(build(topic_class, name=n, topic_id=None) for n in names)
            _, response = await connection.request(
                ApiKey.METADATA,
                topics=wanted,
                allow_auto_topic_creation=self._allow_auto_create and auto_create,
                include_cluster_authorized_operations=False,
                include_topic_authorized_operations=False,
            )
            self._apply(response, names)

    def _apply(self, response: Any, asked: list[str] | None) -> None:
        now = trio.current_time()
        self.brokers = {int(b.node_id): (b.host, int(b.port)) for b in response.brokers}
        self.controller_id = int(getattr(response, "controller_id", -1))
        if asked is None:
            self.topics = {}
            self._topic_times = {}
        else:
            # A topic the broker did not answer for is as unknown as one it says is.
            for name in asked:
                self.topics.pop(name, None)
                self._topic_times.pop(name, None)
        for topic in response.topics:
            if int(topic.error_code) == ErrorCode.unknown_topic_or_partition:
                continue
            topic_id = getattr(topic, "topic_id", None)
            self.topics[topic.name] = TopicInfo(
                topic.name,
                int(topic.error_code),
                tuple(
                    sorted(
                        (
                            PartitionInfo(
                                int(p.partition_index), int(p.leader_id), int(p.error_code)
                            )
                            for p in topic.partitions
                        ),
                        key=lambda info: info.partition,
                    )
                ),
                "" if topic_id is None else topic_id.hex,
            )
            self._topic_times[topic.name] = now
        self._metadata_time = now
        for node in [n for n in self._connections if isinstance(n, int)]:
            if node not in self.brokers:
                self._connections.pop(node)

    async def list_offsets_at(
        self, node: int, timestamps: Mapping[tuple[str, int], int], isolation_level: int = 0
    ) -> dict[tuple[str, int], tuple[int, int]]:
        """One ListOffsets request to ``node`` (the partitions' leader): for each partition,
        (error code, the offset of its timestamp; -1 latest, -2 earliest)."""
        connection = await self.connection(node)
        request = request_schema(ApiKey.LIST_OFFSETS, connection.version(ApiKey.LIST_OFFSETS))
        topic_class = sibling(request, "ListOffsetsTopic")
        partition_class = sibling(request, "ListOffsetsPartition")
        topics: dict[str, list[int]] = {}
        for topic, partition in timestamps:
            topics.setdefault(topic, []).append(partition)
        _, response = await connection.request(
            ApiKey.LIST_OFFSETS,
            replica_id=-1,
            isolation_level=isolation_level,
            topics=tuple(
                build(
                    topic_class,
                    name=topic,
                    partitions=tuple(
                        build(
                            partition_class,
                            partition_index=partition,
                            current_leader_epoch=-1,
                            timestamp=timestamps[(topic, partition)],
                            max_num_offsets=1,
                        )
                        for partition in partitions
                    ),
                )
                for topic, partitions in topics.items()
            ),
        )
        return {
            (topic.name, int(answer.partition_index)): (int(answer.error_code), int(answer.offset))
            for topic in response.topics
            for answer in topic.partitions
        }

    async def coordinator(
        self, group_id: str, *, rebalance: bool = False
    ) -> tuple[int, str | None, BrokerConnection | None]:
        """FindCoordinator of a group: (error code, the broker's message, a connection to
        the coordinator when there is one: the rebalance connection if asked for).
        Retrying is the caller's to decide."""
        connection = await self.any_connection()
        _, response = await connection.request(
            ApiKey.FIND_COORDINATOR, key=group_id, key_type=_GROUP_KEY_TYPE
        )
        code = int(response.error_code)
        if code != ErrorCode.none:
            return code, response.error_message, None
        node = int(response.node_id)
        if node not in self.brokers:
            await self.refresh([])
        key = rebalance_key(node) if rebalance else coordinator_key(node)
        return code, None, await self.connection(key)

    @property
    def allow_auto_create_topics(self) -> bool:
        """Whether Metadata requests for named topics ask the broker to create them."""
        return self._allow_auto_create

    def stale(self, topic: str | None = None) -> bool:
        """Whether the brokers' metadata (or ``topic``'s: True if it is not known) is older
        than metadata_max_age_ms."""
        times = self._topic_times
        fetched = self._metadata_time if topic is None else times.get(topic, -math.inf)
        return trio.current_time() - fetched > self._metadata_max_age_s

    def stale_topics(self) -> list[str]:
        """The known topics whose metadata is older than metadata_max_age_ms."""
        oldest = trio.current_time() - self._metadata_max_age_s
        times = self._topic_times
        return [name for name in self.topics if times.get(name, -math.inf) < oldest]

    def next_stale_at(self) -> float:
        """When the first known topic's metadata becomes stale (inf: no topic is known)."""
        # Over ``topics``: a caller may drop a topic from it without telling.
        times = self._topic_times
        fetched = min((times.get(name, -math.inf) for name in self.topics), default=math.inf)
        return fetched + self._metadata_max_age_s

    async def topic(self, name: str) -> TopicInfo:
        """A topic's partitions and leaders, asked for if not known (KafkaError if it fails)."""
        info = self.topics.get(name)
        if info is None or info.error_code != ErrorCode.none or self.stale(name):
            await self.refresh([name])
            info = self.topics.get(name)
        if info is None:
            raise KafkaError(
                f"topic {name!r} is not in the metadata", ErrorCode.unknown_topic_or_partition
            )
        if info.error_code != ErrorCode.none:
            raise KafkaError(
                f"topic {name!r}: {ErrorCode(info.error_code).name}", ErrorCode(info.error_code)
            )
        return info

    def leader(self, topic: str, partition: int) -> int | None:
        info = self.topics.get(topic)
        if info is None or not 0 <= partition < len(info.partitions):
            return None
        leader = info.partitions[partition].leader
        return leader if leader >= 0 and leader in self.brokers else None

    def statistics(self) -> dict[str, Any]:
        return {
            "brokers": dict(self.brokers),
            "topics": len(self.topics),
            "connections": {
                str(node): connection.statistics() for node, connection in self._connections.items()
            },
        }

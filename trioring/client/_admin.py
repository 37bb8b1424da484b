"""The Trio admin client: topics, partitions, groups (with lag), offsets, configs.

Every call is one or a few Kafka requests sent where Kafka wants them: topic
changes to the controller (any broker forwards them in KRaft, and every
trioring worker takes them), ListOffsets to each partition's leader, group
requests to the group's coordinator (FindCoordinator), ListGroups to every
broker. Refusals come back as :class:`~trioring.errors.KafkaError` with
Kafka's code and the broker's message.
"""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Literal

import attrs
import trio
from kio.schema.errors import ErrorCode
from kio.static.primitive import i32Timedelta

from trioring._broker import Broker
from trioring._constants import CLIENT_REQUEST_TIMEOUT_MS_DEFAULT
from trioring._exception_groups import BodyError, body_exception_unwrapped
from trioring.client._cluster import Cluster, TopicInfo
from trioring.client._connection import BrokerConnection
from trioring.errors import KafkaError
from trioring.protocol.kafka import ApiKey, request_schema
from trioring.protocol.kafka._build import build, sibling

__all__ = [
    "Admin",
    "GroupDescription",
    "GroupListing",
    "GroupMember",
    "PartitionLag",
    "open_admin",
]

#: ListOffsets' special timestamps.
_LATEST, _EARLIEST = -1, -2
_TOPIC_RESOURCE = 2


@attrs.frozen
class GroupListing:
    group_id: str
    protocol_type: str
    state: str
    #: "classic" or "consumer" where the broker says (ListGroups v5+), else "".
    group_type: str = ""


@attrs.frozen
class GroupMember:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str


@attrs.frozen
class GroupDescription:
    group_id: str
    state: str
    protocol_type: str
    protocol: str
    members: tuple[GroupMember, ...]


@attrs.frozen
class PartitionLag:
    """A group's position in one partition: committed offset (-1: none), log end, lag."""

    committed: int
    end: int

    @property
    def lag(self) -> int:
        return self.end - self.committed if self.committed >= 0 else self.end


def _raise_for(code: int, what: str, message: str | None = None) -> None:
    if code != ErrorCode.none:
        detail = f": {message}" if message else ""
        raise KafkaError(f"{what}: {ErrorCode(code).name}{detail}", ErrorCode(code))


def _timeout(milliseconds: int) -> i32Timedelta:
    return i32Timedelta.parse(datetime.timedelta(milliseconds=milliseconds))


class Admin:
    """Administration of a Kafka cluster. Open it with :func:`open_admin`."""

    def __init__(self, cluster: Cluster, request_timeout_ms: int) -> None:
        self._cluster = cluster
        self._timeout_ms = request_timeout_ms

    async def _controller(self) -> BrokerConnection:
        if self._cluster.controller_id < 0 or self._cluster.stale():
            await self._cluster.refresh([])
        controller = self._cluster.controller_id
        if controller in self._cluster.brokers:
            return await self._cluster.connection(controller)
        # KRaft brokers forward admin requests to the controller themselves.
        return await self._cluster.any_connection()

    # --- topics --------------------------------------------------------------------------

    async def create_topic(
        self,
        name: str,
        *,
        partitions: int = -1,
        replication_factor: int = -1,
        configs: Mapping[str, str] | None = None,
        validate_only: bool = False,
    ) -> None:
        """Create a topic; -1 takes the broker's default (KIP-464)."""
        connection = await self._controller()
        request = request_schema(ApiKey.CREATE_TOPICS, connection.version(ApiKey.CREATE_TOPICS))
        topic_class = sibling(request, "CreatableTopic")
        config_class = sibling(request, "CreatableTopicConfig")
        _, response = await connection.request(
            ApiKey.CREATE_TOPICS,
            topics=(
                build(
                    topic_class,
                    name=name,
                    num_partitions=partitions,
                    replication_factor=replication_factor,
                    assignments=(),
                    configs=tuple(
                        build(config_class, name=key, value=value)
                        for key, value in (configs or {}).items()
                    ),
                ),
            ),
            timeout=_timeout(self._timeout_ms),
            validate_only=validate_only,
        )
        [topic] = response.topics
        _raise_for(
            topic.error_code, f"create topic {name!r}", getattr(topic, "error_message", None)
        )
        await self._cluster.refresh([name])

    async def delete_topic(self, name: str) -> None:
        connection = await self._controller()
        _, response = await connection.request(
            ApiKey.DELETE_TOPICS,
            topic_names=(name,),
            topics=(),
            timeout=_timeout(self._timeout_ms),
        )
        [result] = response.responses
        _raise_for(
            result.error_code, f"delete topic {name!r}", getattr(result, "error_message", None)
        )
        self._cluster.topics.pop(name, None)

    async def create_partitions(
        self, name: str, total: int, *, validate_only: bool = False
    ) -> None:
        """Grow a topic to ``total`` partitions."""
        connection = await self._controller()
        version = connection.version(ApiKey.CREATE_PARTITIONS)
        topic_class = sibling(
            request_schema(ApiKey.CREATE_PARTITIONS, version), "CreatePartitionsTopic"
        )
        _, response = await connection.request(
            ApiKey.CREATE_PARTITIONS,
            topics=(build(topic_class, name=name, count=total, assignments=None),),
            timeout=_timeout(self._timeout_ms),
            validate_only=validate_only,
        )
        [result] = response.results
        _raise_for(result.error_code, f"create partitions of {name!r}", result.error_message)
        await self._cluster.refresh([name])

    async def list_topics(self) -> list[str]:
        await self._cluster.refresh(None)
        return sorted(name for name, info in self._cluster.topics.items() if not info.error_code)

    async def describe_topic(self, name: str) -> TopicInfo:
        """Its partitions and their leaders (fresh metadata)."""
        await self._cluster.refresh([name])
        return await self._cluster.topic(name)

    # --- offsets -------------------------------------------------------------------------

    async def list_offsets(
        self,
        partitions: Iterable[tuple[str, int]],
        spec: Literal["earliest", "latest"] | int = "latest",
    ) -> dict[tuple[str, int], int]:
        """Each partition's earliest or latest offset, or the first at or after a timestamp
        (ms; -1 if there is none), asked of each partition's leader."""
        if spec == "earliest":
            timestamp = _EARLIEST
        elif spec == "latest":
            timestamp = _LATEST
        else:
            timestamp = int(spec)
        by_leader: dict[int, list[tuple[str, int]]] = {}
        for topic, partition in partitions:
            await self._cluster.topic(topic)
            leader = self._cluster.leader(topic, partition)
            if leader is None:
                await self._cluster.refresh([topic])
                leader = self._cluster.leader(topic, partition)
            if leader is None:
                raise KafkaError(
                    f"{topic}-{partition} has no leader", ErrorCode.leader_not_available
                )
            by_leader.setdefault(leader, []).append((topic, partition))
        offsets: dict[tuple[str, int], int] = {}
        for leader, asked in by_leader.items():
            answers = await self._cluster.list_offsets_at(leader, dict.fromkeys(asked, timestamp))
            for (topic, partition), (code, offset) in answers.items():
                _raise_for(code, f"list offsets of {topic}-{partition}")
                offsets[(topic, partition)] = offset
        return offsets

    # --- groups --------------------------------------------------------------------------

    async def _coordinator(self, group_id: str) -> BrokerConnection:
        for _ in range(10):
            code, message, connection = await self._cluster.coordinator(group_id)
            if code == ErrorCode.coordinator_not_available:
                await trio.sleep(0.1)
                continue
            _raise_for(code, f"find the coordinator of group {group_id!r}", message)
            assert connection is not None
            return connection
        raise KafkaError(
            f"no coordinator for group {group_id!r}", ErrorCode.coordinator_not_available
        )

    async def list_groups(self) -> list[GroupListing]:
        """Every group of every broker (each coordinates some)."""
        await self._cluster.refresh([])
        listings: dict[str, GroupListing] = {}
        for node in sorted(self._cluster.brokers):
            connection = await self._cluster.connection(node)
            _, response = await connection.request(
                ApiKey.LIST_GROUPS, states_filter=(), types_filter=()
            )
            _raise_for(response.error_code, f"list the groups of node {node}")
            for group in response.groups:
                listings[group.group_id] = GroupListing(
                    group.group_id,
                    group.protocol_type,
                    getattr(group, "group_state", ""),
                    getattr(group, "group_type", ""),
                )
        return sorted(listings.values(), key=lambda listing: listing.group_id)

    async def describe_group(self, group_id: str) -> GroupDescription:
        """A classic group's state and members (DescribeGroups, at its coordinator)."""
        connection = await self._coordinator(group_id)
        _, response = await connection.request(
            ApiKey.DESCRIBE_GROUPS, groups=(group_id,), include_authorized_operations=False
        )
        [group] = response.groups
        _raise_for(
            group.error_code, f"describe group {group_id!r}", getattr(group, "error_message", None)
        )
        return GroupDescription(
            group.group_id,
            group.group_state,
            group.protocol_type,
            group.protocol_data,
            tuple(
                GroupMember(
                    m.member_id,
                    getattr(m, "group_instance_id", None),
                    m.client_id,
                    m.client_host,
                )
                for m in group.members
            ),
        )

    async def group_lag(self, group_id: str) -> dict[tuple[str, int], PartitionLag]:
        """The group's committed offset, the log end and the lag of every partition it
        committed in."""
        connection = await self._coordinator(group_id)
        # CLIENT_VERSIONS stops OffsetFetch at v7: one group per request, at the top level.
        _, response = await connection.request(
            ApiKey.OFFSET_FETCH, group_id=group_id, topics=None, require_stable=False
        )
        _raise_for(
            getattr(response, "error_code", ErrorCode.none),
            f"fetch the offsets of group {group_id!r}",
        )
        topics = response.topics
        committed = {
            (topic.name, int(p.partition_index)): int(p.committed_offset)
            for topic in topics
            for p in topic.partitions
            if int(p.committed_offset) >= 0
        }
        ends = await self.list_offsets(committed, "latest") if committed else {}
        return {key: PartitionLag(offset, ends[key]) for key, offset in sorted(committed.items())}

    async def delete_group(self, group_id: str) -> None:
        connection = await self._coordinator(group_id)
        _, response = await connection.request(ApiKey.DELETE_GROUPS, groups_names=(group_id,))
        [result] = response.results
        _raise_for(result.error_code, f"delete group {group_id!r}")

    # --- configs -------------------------------------------------------------------------

    async def describe_topic_configs(self, name: str) -> dict[str, str | None]:
        connection = await self._controller()
        version = connection.version(ApiKey.DESCRIBE_CONFIGS)
        resource_class = sibling(
            request_schema(ApiKey.DESCRIBE_CONFIGS, version), "DescribeConfigsResource"
        )
        _, response = await connection.request(
            ApiKey.DESCRIBE_CONFIGS,
            resources=(
                build(
                    resource_class,
                    resource_type=_TOPIC_RESOURCE,
                    resource_name=name,
                    configuration_keys=None,
                ),
            ),
            include_synonyms=False,
            include_documentation=False,
        )
        [result] = response.results
        _raise_for(result.error_code, f"describe the configs of {name!r}", result.error_message)
        return {entry.name: entry.value for entry in result.configs}


@asynccontextmanager
async def open_admin(
    bootstrap_or_broker: str | Sequence[str] | Broker,
    *,
    client_id: str = "trioring-admin",
    request_timeout_ms: int = CLIENT_REQUEST_TIMEOUT_MS_DEFAULT,
) -> AsyncIterator[Admin]:
    """An admin client for the block, of the brokers at ``"host:port,..."`` or of an
    embedded Broker (in-process)."""
    body = BodyError()
    async with (
        body_exception_unwrapped(body),
        Cluster.open(
            bootstrap_or_broker,
            client_id=client_id,
            request_timeout_ms=request_timeout_ms,
            allow_auto_create_topics=False,
        ) as cluster,
    ):
        try:
            yield Admin(cluster, request_timeout_ms)
        except BaseException as error:
            body.error = error
            raise

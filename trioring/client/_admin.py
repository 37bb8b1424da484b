"""The Trio admin client: topics, partitions, groups (with lag), offsets, configs.

Every call is one or a few Kafka requests sent where Kafka wants them: topic
changes to the controller (any broker forwards them in KRaft, and every
trioring worker takes them), ListOffsets to each partition's leader, group
requests to the group's coordinator (FindCoordinator), ListGroups to every
broker, a broker's configs to that broker. Refusals come back as
:class:`~trioring.errors.KafkaError` with Kafka's code and the broker's
message.

Calls follow leaders and coordinators as Kafka's admin client does: an
answer that says the request went to the wrong place or too early
(NOT_LEADER_OR_FOLLOWER, NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS, ...:
``_RETRIABLE``), or a connection that broke, is tried again after a pause
that doubles from ``retry_backoff_ms`` up to ``retry_backoff_max_ms``, with
fresh metadata and a new FindCoordinator, at most
``CLIENT_COORDINATOR_ATTEMPTS_MAX`` times. A worker of a multi-worker broker
that is killed and restarted costs the calls that needed it a few retries.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Literal, TypeVar

import attrs
import trio
from kio.schema.errors import ErrorCode
from kio.static.primitive import i32Timedelta

from trioring._broker import Broker
from trioring._constants import (
    CLIENT_COORDINATOR_ATTEMPTS_MAX,
    CLIENT_REQUEST_TIMEOUT_MS_DEFAULT,
    CLIENT_RETRY_BACKOFF_MAX_MS_DEFAULT,
    CLIENT_RETRY_BACKOFF_MS_DEFAULT,
)
from trioring._exception_groups import BodyError, body_exception_unwrapped
from trioring.client._cluster import Cluster, TopicInfo
from trioring.client._connection import BrokerConnection, ConnectionBrokenError
from trioring.client._offsets import GroupOffsets, by_topic
from trioring.errors import InvalidArgumentError, KafkaError
from trioring.handlers.messages import EARLIEST_TIMESTAMP, LATEST_TIMESTAMP
from trioring.protocol.kafka import ApiKey, request_schema
from trioring.protocol.kafka._build import build, sibling
from trioring.protocol.kafka.consumer_protocol import parse_assignment

__all__ = [
    "Admin",
    "GroupDescription",
    "GroupListing",
    "GroupMember",
    "PartitionLag",
    "open_admin",
]

logger = logging.getLogger("trioring.client")

T = TypeVar("T")

#: ListOffsets' special timestamps.
#: DescribeConfigs' resource types.
_TOPIC_RESOURCE, _BROKER_RESOURCE = 2, 4
#: FindCoordinator's key type of a consumer group.
_GROUP_KEY_TYPE = 0

#: The errors a call tries again (after a pause, with fresh metadata and a new
#: FindCoordinator), by where its request went; any other error is raised.
#: A broken connection is tried again wherever the request went.
_RETRIABLE: Mapping[str, frozenset[int]] = {
    # ListOffsets and Metadata: the partition's leader moved, or is not known yet.
    "leader": frozenset(
        {
            ErrorCode.not_leader_or_follower,
            ErrorCode.leader_not_available,
            ErrorCode.unknown_topic_or_partition,
            ErrorCode.fenced_leader_epoch,
            ErrorCode.unknown_leader_epoch,
            ErrorCode.replica_not_available,
            ErrorCode.offset_not_available,
            ErrorCode.kafka_storage_error,
            ErrorCode.request_timed_out,
        }
    ),
    # FindCoordinator and the group's requests: the coordinator moved or is loading.
    "coordinator": frozenset(
        {
            ErrorCode.not_coordinator,
            ErrorCode.coordinator_not_available,
            ErrorCode.coordinator_load_in_progress,
        }
    ),
    # ListGroups, to every broker: its groups are loading.
    "broker": frozenset(
        {ErrorCode.coordinator_not_available, ErrorCode.coordinator_load_in_progress}
    ),
    # Topic changes and topic configs: the controller moved.
    "controller": frozenset({ErrorCode.not_controller}),
}


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
    #: The partitions the group's leader assigned it, for a consumer group
    #: (protocol type "consumer"); empty while the group rebalances.
    assignment: tuple[tuple[str, int], ...] = ()


@attrs.frozen
class GroupDescription:
    group_id: str
    state: str
    protocol_type: str
    protocol: str
    members: tuple[GroupMember, ...]
    #: The node id of the group's coordinator (FindCoordinator's answer).
    coordinator: int = -1


@attrs.frozen
class PartitionLag:
    """A group's position in one partition: committed offset (-1: none), log end (-1:
    the partition no longer exists, its topic deleted), lag (-1 where the end is)."""

    committed: int
    end: int

    @property
    def lag(self) -> int:
        if self.end < 0:
            return -1
        return self.end - self.committed if self.committed >= 0 else self.end


@attrs.define
class _ApiCounters:
    #: Requests sent, or tried: a connection that cannot be opened counts too.
    requests: int = 0
    #: Requests sent again after a retriable error or a broken connection.
    retries: int = 0
    #: Requests that failed: an error in the answer, or no answer (broken connection).
    failures: int = 0


class _Retriable(Exception):
    """A failure another try may cure (``_RETRIABLE``, or a broken connection)."""

    def __init__(self, api_key: int, code: int, message: str) -> None:
        super().__init__(message)
        self.api_key = api_key
        self.code = ErrorCode(code)


def _timeout(milliseconds: int) -> i32Timedelta:
    return i32Timedelta.parse(datetime.timedelta(milliseconds=milliseconds))


def _describe(code: int, message: str | None) -> str:
    return ErrorCode(code).name + (f": {message}" if message else "")


class Admin:
    """Administration of a Kafka cluster. Open it with :func:`open_admin`."""

    def __init__(
        self,
        cluster: Cluster,
        request_timeout_ms: int = CLIENT_REQUEST_TIMEOUT_MS_DEFAULT,
        *,
        retry_backoff_ms: int = CLIENT_RETRY_BACKOFF_MS_DEFAULT,
        retry_backoff_max_ms: int = CLIENT_RETRY_BACKOFF_MAX_MS_DEFAULT,
    ) -> None:
        self._cluster = cluster
        self._timeout_ms = request_timeout_ms
        self._retry_backoff_ms = retry_backoff_ms
        self._retry_backoff_max_ms = retry_backoff_max_ms
        self._counters: dict[str, _ApiCounters] = {}
        #: Set by a retriable failure: the next attempt asks for the metadata first.
        self._metadata_wanted = False

    # --- requests, their failures and retries --------------------------------------------

    def _api(self, api_key: int) -> _ApiCounters:
        name = ApiKey(api_key).name
        counters = self._counters.get(name)
        if counters is None:
            counters = self._counters[name] = _ApiCounters()
        return counters

    async def _connect(self, api_key: int, node: int | None) -> BrokerConnection:
        """The connection to ``node`` (None: any broker) for a request of ``api_key``."""
        try:
            if node is None:
                return await self._cluster.any_connection()
            return await self._cluster.connection(node)
        except ConnectionBrokenError as error:
            counters = self._api(api_key)
            counters.requests += 1
            counters.failures += 1
            raise _Retriable(api_key, ErrorCode.network_exception, str(error)) from None

    async def _exchange(self, connection: BrokerConnection, api_key: int, **fields: Any) -> Any:
        counters = self._api(api_key)
        counters.requests += 1
        try:
            _, response = await connection.request(api_key, **fields)
        except ConnectionBrokenError as error:
            counters.failures += 1
            raise _Retriable(api_key, ErrorCode.network_exception, str(error)) from None
        return response

    def _check(
        self, api_key: int, code: int, what: str, message: str | None, retriable: str
    ) -> None:
        """Raise for an error in an answer: _Retriable if it is in ``_RETRIABLE[retriable]``,
        else KafkaError."""
        if code == ErrorCode.none:
            return
        self._api(api_key).failures += 1
        if code in _RETRIABLE[retriable]:
            raise _Retriable(api_key, code, f"{what}: {_describe(code, message)}")
        raise KafkaError(f"{what}: {_describe(code, message)}", ErrorCode(code))

    def _backoff_s(self, failures: int) -> float:
        milliseconds = min(
            self._retry_backoff_ms * 2 ** min(failures - 1, 16), self._retry_backoff_max_ms
        )
        return float(milliseconds) / 1000

    async def _retrying(self, what: str, attempt: Callable[[], Awaitable[T]]) -> T:
        """``attempt()``, tried again after each retriable failure with a growing pause
        and fresh metadata, at most CLIENT_COORDINATOR_ATTEMPTS_MAX times."""
        failures = 0
        while True:
            try:
                return await attempt()
            except _Retriable as error:
                failures += 1
                if failures >= CLIENT_COORDINATOR_ATTEMPTS_MAX:
                    raise KafkaError(
                        f"{what} failed {failures} times, the last time with {error}; a "
                        "broker it needs may be down or restarting: check that the brokers "
                        "run and try again (open_admin's retry_backoff_max_ms makes the "
                        "tries wait longer)",
                        error.code,
                    ) from None
                logger.debug("admin: %s: %s; trying again", what, error)
                self._api(error.api_key).retries += 1
                self._metadata_wanted = True
                await trio.sleep(self._backoff_s(failures))

    async def _refresh(self, topics: Iterable[str] | None) -> None:
        """Ask for the brokers and ``topics`` (None: every topic); ``[]``: the brokers."""
        counters = self._api(ApiKey.METADATA)
        counters.requests += 1
        try:
            await self._cluster.refresh(topics)
        except ConnectionBrokenError as error:
            counters.failures += 1
            raise _Retriable(ApiKey.METADATA, ErrorCode.network_exception, str(error)) from None
        self._metadata_wanted = False

    async def _metadata(self, topics: Iterable[str] = ()) -> None:
        """Metadata of the brokers and ``topics``: asked for if a retry wants it, it is
        old, or a topic is not in it or was in error (it may exist now)."""
        names = set(topics)
        cluster = self._cluster
        if (
            self._metadata_wanted
            or cluster.stale()
            or not cluster.brokers
            or any(name not in cluster.topics or cluster.topics[name].error_code for name in names)
        ):
            await self._refresh(names)

    async def _controller(self, api_key: int) -> BrokerConnection:
        await self._metadata()
        controller = self._cluster.controller_id
        if controller in self._cluster.brokers:
            try:
                return await self._cluster.connection(controller)
            except ConnectionBrokenError as error:
                counters = self._api(api_key)
                counters.requests += 1
                counters.failures += 1
                logger.debug("admin: the controller is unreachable (%s): asking another", error)
        # KRaft brokers forward admin requests to the controller themselves.
        return await self._connect(api_key, None)

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
        """Create a topic; -1 takes the broker's default (KIP-464).

        A retry after a connection broke mid-request may find the topic that
        the first try created: TOPIC_ALREADY_EXISTS, as in Kafka's admin client.
        """
        what = f"create topic {name!r}"

        async def attempt() -> None:
            connection = await self._controller(ApiKey.CREATE_TOPICS)
            request = request_schema(ApiKey.CREATE_TOPICS, connection.version(ApiKey.CREATE_TOPICS))
            topic_class = sibling(request, "CreatableTopic")
            config_class = sibling(request, "CreatableTopicConfig")
            response = await self._exchange(
                connection,
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
            self._check(
                ApiKey.CREATE_TOPICS,
                topic.error_code,
                what,
                getattr(topic, "error_message", None),
                "controller",
            )

        await self._retrying(what, attempt)
        await self._refreshed_after_change(name)

    async def _refreshed_after_change(self, name: str) -> None:
        """The topic's new metadata, if a broker answers: the change is made either way."""
        try:
            await self._refresh([name])
        except _Retriable as error:
            logger.debug("admin: metadata after changing %r: %s", name, error)
            self._metadata_wanted = True

    async def delete_topic(self, name: str) -> None:
        """Delete a topic. A retry after a connection broke mid-request may find it gone
        already: UNKNOWN_TOPIC_OR_PARTITION, as in Kafka's admin client."""
        what = f"delete topic {name!r}"

        async def attempt() -> None:
            connection = await self._controller(ApiKey.DELETE_TOPICS)
            response = await self._exchange(
                connection,
                ApiKey.DELETE_TOPICS,
                topic_names=(name,),
                topics=(),
                timeout=_timeout(self._timeout_ms),
            )
            [result] = response.responses
            self._check(
                ApiKey.DELETE_TOPICS,
                result.error_code,
                what,
                getattr(result, "error_message", None),
                "controller",
            )

        await self._retrying(what, attempt)
        self._cluster.topics.pop(name, None)

    async def create_partitions(
        self, name: str, total: int, *, validate_only: bool = False
    ) -> None:
        """Grow a topic to ``total`` partitions."""
        what = f"create partitions of {name!r}"

        async def attempt() -> None:
            connection = await self._controller(ApiKey.CREATE_PARTITIONS)
            version = connection.version(ApiKey.CREATE_PARTITIONS)
            topic_class = sibling(
                request_schema(ApiKey.CREATE_PARTITIONS, version), "CreatePartitionsTopic"
            )
            response = await self._exchange(
                connection,
                ApiKey.CREATE_PARTITIONS,
                topics=(build(topic_class, name=name, count=total, assignments=None),),
                timeout=_timeout(self._timeout_ms),
                validate_only=validate_only,
            )
            [result] = response.results
            self._check(
                ApiKey.CREATE_PARTITIONS,
                result.error_code,
                what,
                result.error_message,
                "controller",
            )

        await self._retrying(what, attempt)
        await self._refreshed_after_change(name)

    async def list_topics(self) -> list[str]:
        async def attempt() -> list[str]:
            await self._refresh(None)
            topics = self._cluster.topics
            return sorted(name for name, info in topics.items() if not info.error_code)

        return await self._retrying("list topics", attempt)

    async def describe_topics(self) -> dict[str, TopicInfo]:
        """Every topic's partitions and leaders, from one Metadata request."""

        async def attempt() -> dict[str, TopicInfo]:
            await self._refresh(None)
            return {
                name: info
                for name, info in sorted(self._cluster.topics.items())
                if not info.error_code
            }

        return await self._retrying("describe topics", attempt)

    async def _ask_every_broker(
        self,
        api_key: int,
        what: str,
        ask: Callable[[int, BrokerConnection], Awaitable[Any]],
        take: Callable[[Any], None],
    ) -> None:
        """``ask(node, connection)`` of every broker, retried as :meth:`_retrying` does;
        ``take`` each answer. A broker that answered is not asked again, and one that
        left the metadata meanwhile is not asked at all."""
        done: set[int] = set()

        async def attempt() -> None:
            await self._refresh([])
            retry: _Retriable | None = None
            for node in sorted(set(self._cluster.brokers) - done):
                try:
                    response = await ask(node, await self._connect(api_key, node))
                    self._check(
                        api_key,
                        getattr(response, "error_code", ErrorCode.none),
                        f"{what} of node {node}",
                        None,
                        "broker",
                    )
                except _Retriable as error:
                    retry = error
                    continue
                take(response)
                done.add(node)
            if retry is not None:
                raise retry

        await self._retrying(what, attempt)

    async def log_sizes(
        self, partitions: Iterable[tuple[str, int]] | None = None
    ) -> dict[tuple[str, int], int]:
        """The bytes each partition's log holds (all partitions if None), asked of every
        broker (DescribeLogDirs). Where several brokers hold a partition (replicas of a
        Kafka cluster), the largest copy's size: the leader's, or close to it."""
        sizes: dict[tuple[str, int], int] = {}
        wanted = None if partitions is None else by_topic(sorted(set(partitions)))

        async def ask(node: int, connection: BrokerConnection) -> Any:
            request = request_schema(
                ApiKey.DESCRIBE_LOG_DIRS, connection.version(ApiKey.DESCRIBE_LOG_DIRS)
            )
            topic_class = sibling(request, "DescribableLogDirTopic")
            topics = (
                None
                if wanted is None
                else tuple(
                    build(topic_class, topic=topic, partitions=tuple(indexes))
                    for topic, indexes in wanted.items()
                )
            )
            return await self._exchange(connection, ApiKey.DESCRIBE_LOG_DIRS, topics=topics)

        def take(response: Any) -> None:
            for result in response.results:
                for topic in result.topics:
                    for p in topic.partitions:
                        key = (str(topic.name), int(p.partition_index))
                        sizes[key] = max(sizes.get(key, 0), int(p.partition_size))

        await self._ask_every_broker(
            ApiKey.DESCRIBE_LOG_DIRS, "describe the log directories", ask, take
        )
        return dict(sorted(sizes.items()))

    async def describe_topic(self, name: str) -> TopicInfo:
        """Its partitions and their leaders (fresh metadata)."""
        what = f"describe topic {name!r}"

        async def attempt() -> TopicInfo:
            await self._refresh([name])
            info = self._cluster.topics.get(name)
            if info is None or info.error_code == ErrorCode.unknown_topic_or_partition:
                self._api(ApiKey.METADATA).failures += 1
                raise KafkaError(
                    f"{what}: it does not exist: create it first, or check the name",
                    ErrorCode.unknown_topic_or_partition,
                )
            self._check(ApiKey.METADATA, info.error_code, what, None, "leader")
            return info

        return await self._retrying(what, attempt)

    # --- offsets -------------------------------------------------------------------------

    async def list_offsets(
        self,
        partitions: Iterable[tuple[str, int]],
        spec: Literal["earliest", "latest"] | int = "latest",
    ) -> dict[tuple[str, int], int]:
        """Each partition's earliest or latest offset, or the first at or after a timestamp
        (ms; -1 if there is none), asked of each partition's leader.

        A partition the topic does not have raises UNKNOWN_TOPIC_OR_PARTITION (as
        Kafka's admin client); one whose leader moved or is down is asked again
        of its leader in fresh metadata.
        """
        if spec == "earliest":
            timestamp = EARLIEST_TIMESTAMP
        elif spec == "latest":
            timestamp = LATEST_TIMESTAMP
        else:
            timestamp = int(spec)
        #: The partitions not answered yet (a dict: ordered, and each removed in O(1)).
        remaining = dict.fromkeys((str(topic), int(p)) for topic, p in partitions)
        offsets: dict[tuple[str, int], int] = {}

        async def attempt() -> dict[tuple[str, int], int]:
            by_leader = await self._leaders(list(remaining))
            retry: _Retriable | None = None
            for leader, asked in by_leader.items():
                try:
                    answers = await self._list_offsets_at(leader, asked, timestamp)
                except _Retriable as error:
                    retry = error
                    continue
                failed = False
                for key in asked:
                    code, offset = answers.get(key, (ErrorCode.unknown_server_error, -1))
                    refusal = f"list offsets of {key[0]}-{key[1]}: {_describe(code, None)}"
                    if code in _RETRIABLE["leader"]:
                        failed = True
                        retry = _Retriable(ApiKey.LIST_OFFSETS, code, refusal)
                        continue
                    if code != ErrorCode.none:
                        self._api(ApiKey.LIST_OFFSETS).failures += 1
                        raise KafkaError(refusal, ErrorCode(code))
                    offsets[key] = offset
                    del remaining[key]
                if failed:
                    self._api(ApiKey.LIST_OFFSETS).failures += 1
            if retry is not None:
                raise retry
            return offsets

        if not remaining:
            await trio.lowlevel.checkpoint()
            return offsets
        if len(remaining) == 1:
            what = "list offsets of {}-{}".format(*next(iter(remaining)))
        else:
            what = f"list offsets of {len(remaining)} partitions"
        return await self._retrying(what, attempt)

    async def _leaders(
        self, partitions: Sequence[tuple[str, int]]
    ) -> dict[int, list[tuple[str, int]]]:
        """The partitions by their leader in the metadata. A partition the topic does not
        have: UNKNOWN_TOPIC_OR_PARTITION, once fresh metadata says so too."""
        topics = {topic for topic, _ in partitions}
        await self._metadata(topics)
        for fresh in (False, True):
            by_leader: dict[int, list[tuple[str, int]]] = {}
            unknown: tuple[str, int] | None = None
            for topic, partition in partitions:
                leader = self._leader(topic, partition)
                if leader is None:
                    unknown = (topic, partition)
                    break
                by_leader.setdefault(leader, []).append((topic, partition))
            if unknown is None:
                return by_leader
            if not fresh:
                # It may be new since the metadata was asked for: ask again, once.
                await self._refresh(topics)
        assert unknown is not None
        topic, partition = unknown
        count = len(self._cluster.topics[topic].partitions)
        self._api(ApiKey.METADATA).failures += 1
        raise KafkaError(
            f"{topic}-{partition} does not exist: topic {topic!r} has {count} partitions "
            f"(0 to {count - 1}); ask for one of those, or grow the topic with "
            "create_partitions",
            ErrorCode.unknown_topic_or_partition,
        )

    def _leader(self, topic: str, partition: int) -> int | None:
        """The leader of a partition (None: the topic has no such partition); raises for a
        topic in error, _Retriable for a partition without a reachable leader."""
        what = f"find the leader of {topic}-{partition}"
        info = self._cluster.topics.get(topic)
        if info is None:
            info = TopicInfo(topic, ErrorCode.unknown_topic_or_partition)
        if info.error_code == ErrorCode.unknown_topic_or_partition:
            self._api(ApiKey.METADATA).failures += 1
            raise KafkaError(
                f"{what}: topic {topic!r} does not exist: create it first, or check the name",
                ErrorCode.unknown_topic_or_partition,
            )
        self._check(ApiKey.METADATA, info.error_code, what, None, "leader")
        found = [p for p in info.partitions if p.partition == partition]
        if not found:
            return None
        [answer] = found
        if answer.leader < 0 or answer.leader not in self._cluster.brokers:
            code = answer.error_code or ErrorCode.leader_not_available
            self._api(ApiKey.METADATA).failures += 1
            raise _Retriable(ApiKey.METADATA, code, f"{what}: {_describe(code, None)}")
        return answer.leader

    async def _list_offsets_at(
        self, node: int, partitions: Sequence[tuple[str, int]], timestamp: int
    ) -> dict[tuple[str, int], tuple[int, int]]:
        await self._connect(ApiKey.LIST_OFFSETS, node)
        counters = self._api(ApiKey.LIST_OFFSETS)
        counters.requests += 1
        try:
            return await self._cluster.list_offsets_at(node, dict.fromkeys(partitions, timestamp))
        except ConnectionBrokenError as error:
            counters.failures += 1
            raise _Retriable(ApiKey.LIST_OFFSETS, ErrorCode.network_exception, str(error)) from None

    # --- groups --------------------------------------------------------------------------

    async def _coordinator(self, group_id: str, api_key: int) -> tuple[int, BrokerConnection]:
        """FindCoordinator of a group, asked anew each time (the coordinator may have
        moved): its node id and a connection to it, for a request of ``api_key``."""
        await self._metadata()
        connection = await self._connect(ApiKey.FIND_COORDINATOR, None)
        response = await self._exchange(
            connection, ApiKey.FIND_COORDINATOR, key=group_id, key_type=_GROUP_KEY_TYPE
        )
        self._check(
            ApiKey.FIND_COORDINATOR,
            response.error_code,
            f"find the coordinator of group {group_id!r}",
            getattr(response, "error_message", None),
            "coordinator",
        )
        node = int(response.node_id)
        if node not in self._cluster.brokers:
            await self._refresh([])
        return node, await self._connect(api_key, node)

    async def list_groups(self) -> list[GroupListing]:
        """Every group of every broker (each coordinates some)."""
        listings: dict[str, GroupListing] = {}

        async def ask(node: int, connection: BrokerConnection) -> Any:
            return await self._exchange(
                connection, ApiKey.LIST_GROUPS, states_filter=(), types_filter=()
            )

        def take(response: Any) -> None:
            for group in response.groups:
                listings[group.group_id] = GroupListing(
                    group.group_id,
                    group.protocol_type,
                    getattr(group, "group_state", ""),
                    getattr(group, "group_type", ""),
                )

        await self._ask_every_broker(ApiKey.LIST_GROUPS, "list the groups", ask, take)
        return sorted(listings.values(), key=lambda listing: listing.group_id)

    async def describe_group(self, group_id: str) -> GroupDescription:
        """A classic group's state and members (DescribeGroups, at its coordinator)."""
        what = f"describe group {group_id!r}"

        async def attempt() -> GroupDescription:
            node, connection = await self._coordinator(group_id, ApiKey.DESCRIBE_GROUPS)
            response = await self._exchange(
                connection,
                ApiKey.DESCRIBE_GROUPS,
                groups=(group_id,),
                include_authorized_operations=False,
            )
            [group] = response.groups
            self._check(
                ApiKey.DESCRIBE_GROUPS,
                group.error_code,
                what,
                getattr(group, "error_message", None),
                "coordinator",
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
                        _assigned(group.protocol_type, m.member_assignment),
                    )
                    for m in group.members
                ),
                node,
            )

        return await self._retrying(what, attempt)

    async def group_lag(self, group_id: str) -> dict[tuple[str, int], PartitionLag]:
        """The group's committed offset, the log end and the lag of every partition it
        committed in."""
        what = f"fetch the offsets of group {group_id!r}"

        async def attempt() -> dict[tuple[str, int], int]:
            _, connection = await self._coordinator(group_id, ApiKey.OFFSET_FETCH)
            # CLIENT_VERSIONS stops OffsetFetch at v7: one group per request, at the top level.
            response = await self._exchange(
                connection,
                ApiKey.OFFSET_FETCH,
                group_id=group_id,
                topics=None,
                require_stable=False,
            )
            self._check(
                ApiKey.OFFSET_FETCH,
                getattr(response, "error_code", ErrorCode.none),
                what,
                None,
                "coordinator",
            )
            committed = {}
            for topic in response.topics:
                for p in topic.partitions:
                    self._check(
                        ApiKey.OFFSET_FETCH,
                        p.error_code,
                        f"{what} in {topic.name}-{p.partition_index}",
                        None,
                        "coordinator",
                    )
                    if int(p.committed_offset) >= 0:
                        committed[(topic.name, int(p.partition_index))] = int(p.committed_offset)
            return committed

        committed = await self._retrying(what, attempt)
        # Offsets committed in a topic since deleted (Kafka drops them; a broker
        # may keep them a while) have no end: -1, rather than failing the call.
        topics = await self.describe_topics() if committed else {}
        existing = [
            (topic, partition)
            for topic, partition in committed
            if topic in topics and partition < len(topics[topic].partitions)
        ]
        ends = await self.list_offsets(existing, "latest") if existing else {}
        return {
            key: PartitionLag(offset, ends.get(key, -1))
            for key, offset in sorted(committed.items())
        }

    async def alter_group_offsets(
        self, group_id: str, offsets: Mapping[tuple[str, int], int]
    ) -> None:
        """Set the group's committed offsets, as Kafka's alterConsumerGroupOffsets: an
        OffsetCommit from no member, which the coordinator takes only while the group
        has no members (UNKNOWN_MEMBER_ID otherwise: stop its consumers first)."""
        for (topic, partition), offset in offsets.items():
            if offset < 0:
                raise InvalidArgumentError(
                    f"offset {offset} for {topic}-{partition} is negative: give 0 or more"
                )
        refusal = await GroupOffsets(self._cluster, group_id).commit(offsets)
        if refusal is not None:
            raise KafkaError(
                f"group {group_id!r} refused the new offsets ({refusal.name}): it has "
                "active members; stop its consumers and try again",
                refusal,
            )

    async def delete_group(self, group_id: str) -> None:
        what = f"delete group {group_id!r}"

        async def attempt() -> None:
            _, connection = await self._coordinator(group_id, ApiKey.DELETE_GROUPS)
            response = await self._exchange(
                connection, ApiKey.DELETE_GROUPS, groups_names=(group_id,)
            )
            [result] = response.results
            self._check(ApiKey.DELETE_GROUPS, result.error_code, what, None, "coordinator")

        await self._retrying(what, attempt)

    # --- configs -------------------------------------------------------------------------

    async def describe_topic_configs(self, name: str) -> dict[str, str | None]:
        """A topic's configs (DescribeConfigs, at the controller)."""

        async def attempt() -> dict[str, str | None]:
            connection = await self._controller(ApiKey.DESCRIBE_CONFIGS)
            return await self._describe_configs(
                connection, _TOPIC_RESOURCE, name, f"describe the configs of topic {name!r}"
            )

        return await self._retrying(f"describe the configs of topic {name!r}", attempt)

    async def describe_broker_configs(self, node_id: int) -> dict[str, str | None]:
        """A broker's configs (DescribeConfigs of the BROKER resource, at that broker:
        only it answers for itself)."""
        what = f"describe the configs of node {node_id}"

        async def attempt() -> dict[str, str | None]:
            await self._metadata()
            if node_id not in self._cluster.brokers:
                # It may be restarting: the metadata leaves out a worker without a port.
                known = ", ".join(map(str, sorted(self._cluster.brokers)))
                self._api(ApiKey.METADATA).failures += 1
                raise _Retriable(
                    ApiKey.METADATA,
                    ErrorCode.broker_not_available,
                    f"{what}: node {node_id} is not in the metadata (nodes: {known}); "
                    "name one of those",
                )
            connection = await self._connect(ApiKey.DESCRIBE_CONFIGS, node_id)
            return await self._describe_configs(connection, _BROKER_RESOURCE, str(node_id), what)

        return await self._retrying(what, attempt)

    async def _describe_configs(
        self, connection: BrokerConnection, resource_type: int, name: str, what: str
    ) -> dict[str, str | None]:
        version = connection.version(ApiKey.DESCRIBE_CONFIGS)
        resource_class = sibling(
            request_schema(ApiKey.DESCRIBE_CONFIGS, version), "DescribeConfigsResource"
        )
        response = await self._exchange(
            connection,
            ApiKey.DESCRIBE_CONFIGS,
            resources=(
                build(
                    resource_class,
                    resource_type=resource_type,
                    resource_name=name,
                    configuration_keys=None,
                ),
            ),
            include_synonyms=False,
            include_documentation=False,
        )
        [result] = response.results
        self._check(
            ApiKey.DESCRIBE_CONFIGS, result.error_code, what, result.error_message, "controller"
        )
        return {entry.name: entry.value for entry in result.configs}

    # --- statistics ----------------------------------------------------------------------

    def statistics(self) -> dict[str, Any]:
        """Per Kafka API (by name): requests sent, retries (requests sent again after a
        retriable error or a broken connection) and failures (requests answered with an
        error, or not at all); their totals; and the cluster's brokers and connections."""
        apis = {name: attrs.asdict(counters) for name, counters in sorted(self._counters.items())}
        return {
            "requests": sum(c.requests for c in self._counters.values()),
            "retries": sum(c.retries for c in self._counters.values()),
            "failures": sum(c.failures for c in self._counters.values()),
            "apis": apis,
            "cluster": self._cluster.statistics(),
        }


def _assigned(protocol_type: str, data: bytes) -> tuple[tuple[str, int], ...]:
    """A consumer group member's assignment, sorted; () for other groups or none yet."""
    if protocol_type != "consumer" or not data:
        return ()
    parsed = parse_assignment(bytes(data))
    if parsed is None:
        return ()
    return tuple(sorted((topic, p) for topic, partitions in parsed for p in partitions))


@asynccontextmanager
async def open_admin(
    bootstrap_or_broker: str | Sequence[str] | Broker,
    *,
    client_id: str = "trioring-admin",
    request_timeout_ms: int = CLIENT_REQUEST_TIMEOUT_MS_DEFAULT,
    retry_backoff_ms: int = CLIENT_RETRY_BACKOFF_MS_DEFAULT,
    retry_backoff_max_ms: int = CLIENT_RETRY_BACKOFF_MAX_MS_DEFAULT,
) -> AsyncIterator[Admin]:
    """An admin client for the block, of the brokers at ``"host:port,..."`` or of an
    embedded Broker (in-process).

    ``retry_backoff_ms`` and ``retry_backoff_max_ms`` are Kafka's retry.backoff.ms
    and retry.backoff.max.ms: the first and the largest pause before a retry.
    """
    for setting, value in (
        ("request_timeout_ms", request_timeout_ms),
        ("retry_backoff_ms", retry_backoff_ms),
        ("retry_backoff_max_ms", retry_backoff_max_ms),
    ):
        if value < 0:
            raise InvalidArgumentError(f"{setting} must be >= 0, not {value}")
    if retry_backoff_ms > retry_backoff_max_ms:
        raise InvalidArgumentError(
            f"retry_backoff_ms ({retry_backoff_ms}) is larger than retry_backoff_max_ms "
            f"({retry_backoff_max_ms}): raise retry_backoff_max_ms or lower retry_backoff_ms"
        )
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
            yield Admin(
                cluster,
                request_timeout_ms,
                retry_backoff_ms=retry_backoff_ms,
                retry_backoff_max_ms=retry_backoff_max_ms,
            )
        except BaseException as error:
            body.error = error
            raise

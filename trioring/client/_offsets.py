"""GroupOffsets: a group's committed offsets, read and written through its coordinator.

OffsetCommit and OffsetFetch go to the group's coordinator (FindCoordinator
first); a coordinator that moves, loads or cannot be reached is asked again
after a backoff, up to ``CLIENT_COORDINATOR_ATTEMPTS_MAX`` times. A commit is
made as a member of a generation, or as nobody (generation -1, member id ""),
Kafka's commit outside group membership.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TypeVar

import trio
from kio.schema.errors import ErrorCode

from trioring._constants import CLIENT_COORDINATOR_ATTEMPTS_MAX
from trioring.client._backoff import backoff_s
from trioring.client._cluster import Cluster
from trioring.client._connection import BrokerConnection, ConnectionBrokenError
from trioring.errors import KafkaError
from trioring.protocol.kafka import ApiKey, request_schema
from trioring.protocol.kafka._build import build, sibling

__all__ = ["COORDINATOR_RETRY_ERRORS", "GroupOffsets", "by_topic"]

logger = logging.getLogger("trioring.client")

TopicPartition = tuple[str, int]
_T = TypeVar("_T")

#: Coordinator errors after which asking again (a new coordinator) may succeed.
COORDINATOR_RETRY_ERRORS = frozenset(
    {
        ErrorCode.not_coordinator,
        ErrorCode.coordinator_not_available,
        ErrorCode.coordinator_load_in_progress,
        ErrorCode.unstable_offset_commit,
        ErrorCode.request_timed_out,
    }
)
#: OffsetCommit refusals that concern the member, not the offsets: the group's to handle.
_MEMBERSHIP_ERRORS = frozenset(
    {
        ErrorCode.rebalance_in_progress,
        ErrorCode.unknown_member_id,
        ErrorCode.illegal_generation,
        ErrorCode.fenced_instance_id,
    }
)


class _Retry(Exception):
    """A refusal that a new coordinator, or the same one later, may not repeat."""


def by_topic(partitions: Iterable[TopicPartition]) -> dict[str, list[int]]:
    """Partition indexes per topic, in the order first seen."""
    topics: dict[str, list[int]] = {}
    for topic, partition in partitions:
        topics.setdefault(topic, []).append(partition)
    return topics


class GroupOffsets:
    """The committed offsets of ``group_id``."""

    def __init__(self, cluster: Cluster, group_id: str) -> None:
        self._cluster = cluster
        self.group_id = group_id

    async def commit(
        self,
        offsets: Mapping[TopicPartition, int],
        *,
        generation_id: int = -1,
        member_id: str = "",
        group_instance_id: str | None = None,
    ) -> ErrorCode | None:
        """Commit as a member (or, by default, as nobody); the group's refusal code
        (REBALANCE_IN_PROGRESS, UNKNOWN_MEMBER_ID, ...) if it refused the member."""

        async def send(connection: BrokerConnection) -> ErrorCode | None:
            return await self._offset_commit(
                connection,
                offsets,
                generation_id=generation_id,
                member_id=member_id,
                group_instance_id=group_instance_id,
            )

        return await self._at_coordinator(send)

    async def fetch(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int | None]:
        """Each partition's committed offset; None where nothing is committed."""

        async def send(connection: BrokerConnection) -> dict[TopicPartition, int | None]:
            return await self._offset_fetch(connection, partitions)

        return await self._at_coordinator(send)

    async def _at_coordinator(self, send: Callable[[BrokerConnection], Awaitable[_T]]) -> _T:
        """``send(connection)`` at the group's coordinator, asked again if it moves."""
        error: Exception | None = None
        for attempt in range(CLIENT_COORDINATOR_ATTEMPTS_MAX):
            await trio.sleep(backoff_s(attempt))
            try:
                return await send(await self._coordinator())
            except (_Retry, ConnectionBrokenError) as retriable:
                logger.debug("group %s: coordinator request failed: %s", self.group_id, retriable)
                error = retriable
        raise KafkaError(
            f"the coordinator of group {self.group_id!r} did not answer after "
            f"{CLIENT_COORDINATOR_ATTEMPTS_MAX} tries: {error}",
            ErrorCode.coordinator_not_available,
        )

    async def _coordinator(self) -> BrokerConnection:
        code, _, connection = await self._cluster.coordinator(self.group_id)
        error = ErrorCode(code)
        if error in COORDINATOR_RETRY_ERRORS:
            raise _Retry(f"FindCoordinator: {error.name}")
        if error != ErrorCode.none:
            raise KafkaError(f"FindCoordinator for group {self.group_id!r}: {error.name}", error)
        assert connection is not None
        return connection

    async def _offset_commit(
        self,
        connection: BrokerConnection,
        offsets: Mapping[TopicPartition, int],
        *,
        generation_id: int,
        member_id: str,
        group_instance_id: str | None,
    ) -> ErrorCode | None:
        version = connection.version(ApiKey.OFFSET_COMMIT)
        schema = request_schema(ApiKey.OFFSET_COMMIT, version)
        topic_class = sibling(schema, "OffsetCommitRequestTopic")
        partition_class = sibling(schema, "OffsetCommitRequestPartition")
        _, response = await connection.request(
            ApiKey.OFFSET_COMMIT,
            group_id=self.group_id,
            generation_id_or_member_epoch=generation_id,
            generation_id=generation_id,
            member_id=member_id,
            group_instance_id=group_instance_id,
            topics=tuple(
                build(
                    topic_class,
                    name=topic,
                    partitions=tuple(
                        build(
                            partition_class,
                            partition_index=p,
                            committed_offset=offsets[(topic, p)],
                            committed_leader_epoch=-1,
                            committed_metadata="",
                        )
                        for p in indexes
                    ),
                )
                for topic, indexes in by_topic(offsets).items()
            ),
        )
        for topic in response.topics:
            for answer in topic.partitions:
                code = ErrorCode(answer.error_code)
                if code in COORDINATOR_RETRY_ERRORS:
                    raise _Retry(f"OffsetCommit: {code.name}")
                if code in _MEMBERSHIP_ERRORS:
                    return code
                if code != ErrorCode.none:
                    raise KafkaError(
                        f"OffsetCommit {topic.name}-{answer.partition_index} for group "
                        f"{self.group_id!r}: {code.name}",
                        code,
                    )
        return None

    async def _offset_fetch(
        self, connection: BrokerConnection, partitions: Sequence[TopicPartition]
    ) -> dict[TopicPartition, int | None]:
        version = connection.version(ApiKey.OFFSET_FETCH)
        topic_class = sibling(
            request_schema(ApiKey.OFFSET_FETCH, version), "OffsetFetchRequestTopic"
        )
        _, response = await connection.request(
            ApiKey.OFFSET_FETCH,
            group_id=self.group_id,
            topics=tuple(
                build(topic_class, name=topic, partition_indexes=tuple(indexes))
                for topic, indexes in by_topic(partitions).items()
            ),
            require_stable=False,
        )
        code = ErrorCode(getattr(response, "error_code", ErrorCode.none))
        if code in COORDINATOR_RETRY_ERRORS:
            raise _Retry(f"OffsetFetch: {code.name}")
        if code != ErrorCode.none:
            raise KafkaError(f"OffsetFetch for group {self.group_id!r}: {code.name}", code)
        result: dict[TopicPartition, int | None] = {}
        for topic in response.topics:
            for answer in topic.partitions:
                code = ErrorCode(answer.error_code)
                if code in COORDINATOR_RETRY_ERRORS:
                    raise _Retry(f"OffsetFetch: {code.name}")
                if code != ErrorCode.none:
                    raise KafkaError(
                        f"OffsetFetch {topic.name}-{answer.partition_index} for group "
                        f"{self.group_id!r}: {code.name}",
                        code,
                    )
                offset = int(answer.committed_offset)
                result[(topic.name, int(answer.partition_index))] = offset if offset >= 0 else None
        return result

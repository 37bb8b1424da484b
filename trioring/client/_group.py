"""GroupMembership: the consumer's membership of a group, Kafka's classic group protocol
from the client side.

One task joins (FindCoordinator, JoinGroup, SyncGroup; the leader assigns
with the group's chosen assignor) and applies each new assignment to the
consumer; one heartbeats while the member is stable; one commits positions
every ``auto_commit_interval_ms`` if asked to; one watches the metadata so
that a pattern subscription follows new topics and a leader notices added
partitions. JoinGroup and SyncGroup go over a connection of their own
(``rebalance_key``), and heartbeats, commits and offset fetches over another
(``coordinator_key``), so a JoinGroup the broker holds for a whole rebalance
delays neither them nor a Fetch. The member heartbeats whenever it has a
generation and is not inside JoinGroup or SyncGroup, so a slow revocation
does not cost it its session. Rebalance callbacks all run in the joining
task, one at a time, as Java runs them in poll().

The rebalance protocol is cooperative (KIP-429) when every assignor the
member offers is cooperative, else eager, as in the Java client. Eager:
before every JoinGroup the member revokes everything it owns. Cooperative:
it keeps consuming through the rebalance, revokes only what the new
assignment takes away, and then joins again so that those partitions can
move.

Records handed to the reader are the reader's until its next read call
starts (Java's "until the next poll"). A revocation waits, up to the
rebalance timeout, for the reader to come back, then commits (auto-commit)
what the reader has finished with, so a rebalance neither loses records nor
repeats any beyond those the reader was still holding when its time ran out.
"""

from __future__ import annotations

import datetime
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import trio
from kio.schema.errors import ErrorCode

from trioring._constants import (
    CLIENT_JOIN_GRACE_MS,
)
from trioring.client._assignors import (
    MemberSubscription,
    assign,
    cooperative_user_data,
    is_cooperative,
)
from trioring.client._backoff import backoff_s
from trioring.client._cluster import Cluster
from trioring.client._connection import BrokerConnection, ConnectionBrokenError
from trioring.client._offsets import GroupOffsets, by_topic
from trioring.errors import KafkaError
from trioring.protocol.kafka import ApiKey, request_schema
from trioring.protocol.kafka._build import build, sibling
from trioring.protocol.kafka.consumer_protocol import (
    SUBSCRIPTION_VERSION_MAX,
    Subscription,
    encode_assignment,
    encode_subscription,
    parse_assignment,
    parse_subscription,
)

if TYPE_CHECKING:
    from trioring.client._consumer import Consumer

__all__ = ["CommitFailedError", "GroupMembership", "RebalanceCallback"]

logger = logging.getLogger("trioring.client")

TopicPartition = tuple[str, int]
RebalanceCallback = Callable[[set[TopicPartition]], Awaitable[None]]

#: The protocol type of consumer groups.
_CONSUMER = "consumer"
#: Errors after which the coordinator must be found again.
_COORDINATOR_ERRORS = frozenset(
    {
        ErrorCode.not_coordinator,
        ErrorCode.coordinator_not_available,
        ErrorCode.coordinator_load_in_progress,
        ErrorCode.request_timed_out,
    }
)
#: Errors meaning this member's partitions may already be someone else's.
_LOST_ERRORS = frozenset(
    {ErrorCode.unknown_member_id, ErrorCode.illegal_generation, ErrorCode.fenced_instance_id}
)
#: Errors retrying cannot cure: the membership stops and the reader gets the error.
_FATAL_JOIN_ERRORS = frozenset(
    {
        ErrorCode.inconsistent_group_protocol,
        ErrorCode.invalid_group_id,
        ErrorCode.invalid_session_timeout,
        ErrorCode.group_authorization_failed,
        ErrorCode.group_max_size_reached,
        ErrorCode.fenced_instance_id,
        ErrorCode.unsupported_version,
        ErrorCode.group_id_not_found,
    }
)


class CommitFailedError(KafkaError):
    """A commit the group refused because it rebalanced: the partitions may have moved.

    The member joins again; records after the last successful commit may be
    read again by whoever owns their partition next (at-least-once)."""


class _Retry(Exception):
    """A failure a new try may cure (after finding the coordinator again)."""


def _ordered(partitions: Iterable[TopicPartition]) -> list[tuple[str, list[int]]]:
    """Partition indexes per topic, topics and indexes sorted."""
    return list(by_topic(sorted(partitions)).items())


class GroupMembership:
    """The consumer's membership of ``group_id``; created and run by ``open_consumer``."""

    def __init__(
        self,
        consumer: Consumer,
        cluster: Cluster,
        *,
        group_id: str,
        topics: Sequence[str] | None,
        pattern: re.Pattern[str] | None,
        group_instance_id: str | None,
        assignors: Sequence[str],
        session_timeout_ms: int,
        rebalance_timeout_ms: int,
        heartbeat_interval_ms: int,
        auto_commit_interval_ms: int | None,
        metadata_interval_ms: int,
        on_assigned: RebalanceCallback | None,
        on_revoked: RebalanceCallback | None,
        on_lost: RebalanceCallback | None,
    ) -> None:
        assert (topics is None) != (pattern is None)
        self._consumer = consumer
        self._cluster = cluster
        self._offsets = GroupOffsets(cluster, group_id)
        self.group_id = group_id
        self._topics = tuple(sorted(set(topics))) if topics is not None else ()
        self._pattern = pattern
        self.group_instance_id = group_instance_id
        self._assignors = tuple(assignors)
        self.cooperative = all(is_cooperative(name) for name in assignors)
        self._session_timeout_ms = session_timeout_ms
        self._rebalance_timeout_ms = rebalance_timeout_ms
        self._heartbeat_interval_s = heartbeat_interval_ms / 1000
        self._auto_commit_interval_s = (
            None if auto_commit_interval_ms is None else auto_commit_interval_ms / 1000
        )
        self._metadata_interval_s = metadata_interval_ms / 1000
        self._callbacks = {"assigned": on_assigned, "revoked": on_revoked, "lost": on_lost}
        self.member_id = ""
        self.generation_id = -1
        self.protocol: str | None = None
        self.leader_id = ""
        #: The partitions the group gave this member, as the consumer reads them.
        self.owned: set[TopicPartition] = set()
        #: The topics this member subscribes to now (a pattern's matches change).
        self.subscribed: tuple[str, ...] = self._topics
        #: Set when the member must join (again); replaced after each join.
        self._rejoin = trio.Event()
        self._rejoin.set()
        self._stable = False
        #: Partition counts of the group's topics at the last assignment (leader only).
        self._assigned_counts: dict[str, int] = {}
        self._coordinator: BrokerConnection | None = None
        self._rebalance_connection: BrokerConnection | None = None
        #: True while JoinGroup or SyncGroup is under way (heartbeats pause).
        self._joining = False
        #: Why the membership was lost, until the joining task reports it (on_lost).
        self._lost: ErrorCode | None = None
        self.fatal: KafkaError | None = None
        self._counters = {"joins": 0, "rebalances": 0, "heartbeats": 0, "commits": 0}

    # --- tasks -----------------------------------------------------------------------------

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._heartbeat_loop, name="group heartbeat")
            nursery.start_soon(self._metadata_loop, name="group metadata")
            if self._auto_commit_interval_s is not None:
                nursery.start_soon(self._auto_commit_loop, name="group auto-commit")
            failures = 0
            while True:
                await self._rejoin.wait()
                self._rejoin = trio.Event()
                try:
                    await self._report_lost()
                    if self.fatal is not None:
                        break
                    await trio.sleep(backoff_s(failures))
                    await self._join()
                    failures = 0
                except (_Retry, ConnectionBrokenError) as error:
                    logger.debug("group %s: join failed, will retry: %s", self.group_id, error)
                    self._coordinator = self._rebalance_connection = None
                    failures += 1
                    self._rejoin.set()
                except KafkaError as error:
                    logger.warning("group %s: cannot join: %s", self.group_id, error)
                    self.fatal = error
                    self._consumer._raise_to_reader(error)
            nursery.cancel_scope.cancel()

    def request_rejoin(self) -> None:
        self._stable = False
        self._rejoin.set()

    async def _heartbeat_loop(self) -> None:
        while True:
            await trio.sleep(self._heartbeat_interval_s)
            if self.generation_id < 0 or self._joining:
                continue
            sent = self.generation_id, self.member_id, self._counters["joins"]
            generation, member_id, _ = sent
            try:
                connection = await self._coordinator_connection()
                _, response = await connection.request(
                    ApiKey.HEARTBEAT,
                    group_id=self.group_id,
                    generation_id=generation,
                    member_id=member_id,
                    group_instance_id=self.group_instance_id,
                )
            except (_Retry, ConnectionBrokenError, KafkaError) as error:
                # A coordinator that cannot be found now may be found later; the
                # broker's session timeout decides whether the member survives.
                logger.debug("group %s: heartbeat failed: %s", self.group_id, error)
                self._coordinator = None
                continue
            self._counters["heartbeats"] += 1
            if sent != (self.generation_id, self.member_id, self._counters["joins"]):
                continue  # a join started meanwhile: this answer is about the old generation
            code = ErrorCode(response.error_code)
            if code == ErrorCode.none:
                continue
            if code == ErrorCode.rebalance_in_progress:
                self.request_rejoin()
            elif code in _LOST_ERRORS:
                self._lose(code)
            elif code in _COORDINATOR_ERRORS:
                self._coordinator = None
            else:
                logger.warning("group %s: heartbeat answered %s", self.group_id, code.name)

    async def _auto_commit_loop(self) -> None:
        assert self._auto_commit_interval_s is not None
        while True:
            await trio.sleep(self._auto_commit_interval_s)
            if self._stable:
                await self.commit_finished()

    async def _metadata_loop(self) -> None:
        """Follow a pattern's matching topics; as leader, the group's partition counts."""
        while True:
            await trio.sleep(self._metadata_interval_s)
            if not self._stable or (self._pattern is None and self.leader_id != self.member_id):
                continue
            try:
                # The leader watches every topic the group reads, not only its own.
                await self._cluster.refresh(
                    None if self._pattern is not None else set(self._assigned_counts)
                )
            except (ConnectionBrokenError, KafkaError) as error:
                logger.debug("group %s: metadata refresh failed: %s", self.group_id, error)
                continue
            if self._matching_topics() != self.subscribed:
                self.request_rejoin()
            elif self.leader_id == self.member_id and self._assigned_counts:
                counts = self._partition_counts(self._assigned_counts)
                if counts != self._assigned_counts:
                    self.request_rejoin()

    # --- joining ---------------------------------------------------------------------------

    def _matching_topics(self) -> tuple[str, ...]:
        if self._pattern is None:
            return self._topics
        pattern = self._pattern
        return tuple(
            sorted(
                name
                for name, info in self._cluster.topics.items()
                if info.error_code == ErrorCode.none and pattern.fullmatch(name)
            )
        )

    async def _join(self) -> None:
        self._stable = False
        if not self.cooperative and self.owned:
            # Eager: the revocation commits (auto-commit), once the reader is done.
            await self._revoke(set(self.owned))
        elif self.generation_id >= 0 and self._auto_commit_interval_s is not None:
            await self.commit_finished()
        await self._report_lost()
        if self._pattern is not None:
            await self._cluster.refresh(None)
        # This join answers every request to join made until now: heartbeats keep
        # going while the member revokes, and each is answered REBALANCE_IN_PROGRESS
        # (a request kept would cost the group a second rebalance at once).
        self._rejoin = trio.Event()
        self.subscribed = self._matching_topics()
        self._counters["joins"] += 1
        self._joining = True
        try:
            response = await self._join_group()
            self.generation_id = int(response.generation_id)
            self.member_id = response.member_id
            self.protocol = response.protocol_name
            self.leader_id = response.leader
            assignments: dict[str, bytes] = {}
            if self.leader_id == self.member_id:
                assignments = await self._assign(response.members)
            assigned = await self._sync_group(assignments)
        finally:
            self._joining = False
        if self._lost is not None:
            # SyncGroup said so, or the membership was lost before JoinGroup went
            # out (its request to join was answered by this one): the run loop
            # reports it and joins again.
            self._rejoin.set()
            return
        self._counters["rebalances"] += 1
        await self._apply(assigned)

    def _subscription(self, assignor: str) -> bytes:
        owned = sorted(self.owned) if self.cooperative else []
        user_data = (
            cooperative_user_data(owned, self.generation_id) if is_cooperative(assignor) else None
        )
        return encode_subscription(
            Subscription(
                version=SUBSCRIPTION_VERSION_MAX,
                topics=self.subscribed,
                owned=tuple((t, tuple(p)) for t, p in _ordered(owned)),
                rack_id=None,
                user_data=user_data,
                generation_id=self.generation_id,
            )
        )

    async def _join_group(self) -> Any:
        """JoinGroup until it succeeds; _Retry or KafkaError when it cannot."""
        timeout_s = (self._rebalance_timeout_ms + CLIENT_JOIN_GRACE_MS) / 1000
        failures = 0
        while True:
            await trio.sleep(backoff_s(failures))
            connection = await self._coordinator_connection(rebalance=True)
            version = connection.version(ApiKey.JOIN_GROUP)
            protocol_class = sibling(
                request_schema(ApiKey.JOIN_GROUP, version), "JoinGroupRequestProtocol"
            )
            _, response = await connection.request(
                ApiKey.JOIN_GROUP,
                timeout_s=timeout_s,
                group_id=self.group_id,
                session_timeout=_timedelta_ms(self._session_timeout_ms),
                rebalance_timeout=_timedelta_ms(self._rebalance_timeout_ms),
                member_id=self.member_id,
                group_instance_id=self.group_instance_id,
                protocol_type=_CONSUMER,
                protocols=tuple(
                    build(protocol_class, name=name, metadata=self._subscription(name))
                    for name in self._assignors
                ),
                reason=None,
            )
            code = ErrorCode(response.error_code)
            if code == ErrorCode.none:
                return response
            if code == ErrorCode.member_id_required:
                self.member_id = response.member_id  # KIP-394: join again with it, at once
                continue
            failures += 1
            if code == ErrorCode.unknown_member_id:
                self.member_id = ""
                continue
            if code in (ErrorCode.illegal_generation, ErrorCode.rebalance_in_progress):
                continue
            if code in _COORDINATOR_ERRORS:
                raise _Retry(f"JoinGroup: {code.name}")
            if code in _FATAL_JOIN_ERRORS:
                raise KafkaError(f"JoinGroup of group {self.group_id!r}: {code.name}", code)
            logger.warning(
                "group %s: JoinGroup answered %s; trying again", self.group_id, code.name
            )
            raise _Retry(f"JoinGroup: {code.name}")

    async def _assign(self, members: Sequence[Any]) -> dict[str, bytes]:
        """As the leader: every member's share, under the assignor the group chose."""
        assert self.protocol is not None
        subscriptions = []
        for member in members:
            parsed = parse_subscription(member.metadata)
            if parsed is None:
                logger.warning(
                    "group %s: member %s sent a subscription that cannot be read; it gets nothing",
                    self.group_id,
                    member.member_id,
                )
                parsed = Subscription(0, ())
            generation = parsed.generation_id
            if generation < 0 and parsed.user_data is not None and len(parsed.user_data) >= 4:
                # Older sticky members put the generation at the end of their user data.
                generation = int.from_bytes(parsed.user_data[-4:], "big", signed=True)
            subscriptions.append(
                MemberSubscription(
                    member_id=member.member_id,
                    group_instance_id=member.group_instance_id,
                    topics=frozenset(parsed.topics),
                    owned=tuple((t, p) for t, ps in parsed.owned for p in ps),
                    generation_id=generation,
                )
            )
        topics = sorted({t for s in subscriptions for t in s.topics})
        await self._cluster.refresh(topics)
        counts = self._partition_counts(dict.fromkeys(topics, 0))
        self._assigned_counts = dict.fromkeys(topics, 0) | counts
        shares = assign(self.protocol, counts, subscriptions)
        return {
            member_id: encode_assignment(3, _ordered(share)) for member_id, share in shares.items()
        }

    def _partition_counts(self, topics: Iterable[str]) -> dict[str, int]:
        counts = {}
        for topic in topics:
            info = self._cluster.topics.get(topic)
            if info is not None and info.error_code == ErrorCode.none and info.partitions:
                counts[topic] = len(info.partitions)
        return counts

    async def _sync_group(self, assignments: dict[str, bytes]) -> set[TopicPartition]:
        connection = await self._coordinator_connection(rebalance=True)
        version = connection.version(ApiKey.SYNC_GROUP)
        assignment_class = sibling(
            request_schema(ApiKey.SYNC_GROUP, version), "SyncGroupRequestAssignment"
        )
        _, response = await connection.request(
            ApiKey.SYNC_GROUP,
            timeout_s=(self._rebalance_timeout_ms + CLIENT_JOIN_GRACE_MS) / 1000,
            group_id=self.group_id,
            generation_id=self.generation_id,
            member_id=self.member_id,
            group_instance_id=self.group_instance_id,
            protocol_type=_CONSUMER,
            protocol_name=self.protocol,
            assignments=tuple(
                build(assignment_class, member_id=member_id, assignment=data)
                for member_id, data in assignments.items()
            ),
        )
        code = ErrorCode(response.error_code)
        if code == ErrorCode.none:
            parsed = parse_assignment(response.assignment)
            if parsed is None:
                raise _Retry("SyncGroup: the leader's assignment cannot be read")
            return {(topic, p) for topic, partitions in parsed for p in partitions}
        if code in _LOST_ERRORS:
            self._lose(code)
            return set()
        if code in _FATAL_JOIN_ERRORS:
            raise KafkaError(f"SyncGroup of group {self.group_id!r}: {code.name}", code)
        raise _Retry(f"SyncGroup: {code.name}")

    async def _apply(self, assigned: set[TopicPartition]) -> None:
        """Take a new assignment: revoke what it takes away, read what it adds."""
        revoked = self.owned - assigned
        added = assigned - self.owned
        if revoked:
            await self._revoke(revoked)
        if self._lost is not None:
            return  # lost meanwhile: the run loop reports it and joins again
        self.owned = set(assigned)
        self._consumer._set_group_assignment(self.owned)
        self._stable = True
        logger.debug(
            "group %s: generation %d, member %s, assigned %s",
            self.group_id,
            self.generation_id,
            self.member_id,
            sorted(assigned),
        )
        # Java's listener gets the added partitions (cooperative) or all of them (eager).
        await self._callback("assigned", added if self.cooperative else set(assigned))
        if revoked and self.cooperative:
            self.request_rejoin()  # KIP-429: the revoked partitions can now move

    async def _revoke(self, partitions: set[TopicPartition], *, wait: bool = True) -> None:
        """Give partitions back: once the reader is done with them, commit and call back."""
        if wait:
            with trio.move_on_after(self._rebalance_timeout_ms / 1000):
                await self._consumer._reader_done_with(partitions)
        if self._lost is not None:
            return  # lost meanwhile: reported as lost, not revoked, and not committed
        finished = self._consumer._finished_offsets(partitions)
        self.owned -= partitions
        self._consumer._set_group_assignment(self.owned)
        if self._auto_commit_interval_s is not None and finished and self.generation_id >= 0:
            try:
                await self.commit(finished)
            except (KafkaError, ConnectionBrokenError) as error:
                logger.warning("group %s: commit before revoking failed: %s", self.group_id, error)
        await self._callback("revoked", partitions)

    def _lose(self, code: ErrorCode) -> None:
        """The group moved on without this member: its partitions are gone, uncommitted.

        The reader stops reading them at once; ``on_lost`` is called by the run
        loop (:meth:`_report_lost`), which then joins again."""
        if self._lost is None:
            self._lost = code
        if code == ErrorCode.fenced_instance_id and self.fatal is None:
            # Java's FencedInstanceIdException: two consumers share one instance
            # id; joining again would only fence the other one in turn.
            self.fatal = KafkaError(
                f"another consumer joined group {self.group_id!r} with group_instance_id "
                f"{self.group_instance_id!r} and took this member's place: give each "
                "consumer an instance id of its own",
                code,
            )
            logger.warning("group %s: %s", self.group_id, self.fatal)
            self._consumer._raise_to_reader(self.fatal)
        else:
            logger.info("group %s: membership lost (%s); joining again", self.group_id, code.name)
        self._consumer._set_group_assignment(())
        self.generation_id = -1
        if code == ErrorCode.unknown_member_id:
            self.member_id = ""
        self.request_rejoin()

    async def _report_lost(self) -> None:
        if self._lost is None:
            return
        lost, self.owned = set(self.owned), set()
        self._lost = None
        if lost:
            await self._callback("lost", lost)

    async def _callback(self, kind: str, partitions: set[TopicPartition]) -> None:
        callback = self._callbacks[kind]
        if callback is None:
            return
        try:
            await callback(set(partitions))
        except Exception as error:  # the reader gets it, as Java's poll() would
            logger.debug("group %s: on_%s raised %r", self.group_id, kind, error)
            self._consumer._raise_to_reader(error)

    # --- commits and leaving ---------------------------------------------------------------

    async def commit_finished(self) -> None:
        """Auto-commit: what the reader has finished with, best effort."""
        offsets = self._consumer._finished_offsets(self.owned)
        if not offsets:
            return
        try:
            await self.commit(offsets)
        except (KafkaError, ConnectionBrokenError) as error:
            logger.info("group %s: auto-commit failed: %s", self.group_id, error)

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        """OffsetCommit as this member of this generation; CommitFailedError if the group
        has moved on (and the member then joins again)."""
        generation, member_id = self.generation_id, self.member_id
        if generation < 0:
            await trio.lowlevel.checkpoint()
            raise CommitFailedError(
                f"not committed: this consumer is joining group {self.group_id!r} and "
                "owns no partitions until it has; records after the last commit may be "
                "read again by their next owner",
                ErrorCode.illegal_generation,
            )
        error = await self._offsets.commit(
            offsets,
            generation_id=generation,
            member_id=member_id,
            group_instance_id=self.group_instance_id,
        )
        if error is None:
            self._counters["commits"] += 1
            return
        if error in (ErrorCode.rebalance_in_progress, *_LOST_ERRORS):
            if error in _LOST_ERRORS and (generation, member_id) == (
                self.generation_id,
                self.member_id,
            ):
                self._lose(error)
            else:
                self.request_rejoin()
            raise CommitFailedError(
                f"commit refused ({error.name}): group {self.group_id!r} has rebalanced; "
                "records after the last commit may be read again by their new owner",
                error,
            )
        raise KafkaError(f"OffsetCommit for group {self.group_id!r}: {error.name}", error)

    async def close(self, *, reader_finished: bool) -> None:
        """Leave: commit (auto-commit), revoke, and send LeaveGroup (dynamic members).

        ``reader_finished``: the reader left cleanly, so the records it holds
        are finished (and committed); after an error they are not."""
        self._stable = False
        if self.generation_id >= 0:
            if reader_finished:
                self._consumer._release_held()
            if self.owned:
                await self._revoke(set(self.owned), wait=False)
        if self.group_instance_id is not None or not self.member_id:
            return  # a static member keeps its place until its session times out
        # Also while joining: the group need not wait for this member's session to end.
        try:
            connection = await self._coordinator_connection()
        except _Retry as error:
            logger.info("group %s: cannot leave, no coordinator: %s", self.group_id, error)
            return
        version = connection.version(ApiKey.LEAVE_GROUP)
        identity = sibling(request_schema(ApiKey.LEAVE_GROUP, version), "MemberIdentity")
        await connection.request(
            ApiKey.LEAVE_GROUP,
            group_id=self.group_id,
            member_id=self.member_id,
            members=(build(identity, member_id=self.member_id, group_instance_id=None),),
        )
        self.generation_id = -1

    # --- the coordinator -------------------------------------------------------------------

    async def _coordinator_connection(self, *, rebalance: bool = False) -> BrokerConnection:
        """The coordinator connection, or (``rebalance``) the one for JoinGroup/SyncGroup."""
        connection = self._rebalance_connection if rebalance else self._coordinator
        if connection is not None and connection.broken is None:
            return connection
        code, message, connection = await self._cluster.coordinator(
            self.group_id, rebalance=rebalance
        )
        error = ErrorCode(code)
        if error != ErrorCode.none or connection is None:
            if error in _COORDINATOR_ERRORS:
                raise _Retry(f"FindCoordinator: {error.name}")
            raise KafkaError(
                f"FindCoordinator for group {self.group_id!r}: {error.name} ({message})", error
            )
        if rebalance:
            self._rebalance_connection = connection
        else:
            self._coordinator = connection
        return connection

    def statistics(self) -> dict[str, Any]:
        return {
            **self._counters,
            "member_id": self.member_id,
            "generation_id": self.generation_id,
            "protocol": self.protocol,
            "leader": self.leader_id == self.member_id and bool(self.member_id),
            "stable": self._stable,
            "rebalance_protocol": "cooperative" if self.cooperative else "eager",
            "subscribed": list(self.subscribed),
            "owned": sorted(f"{t}-{p}" for t, p in self.owned),
        }


def _timedelta_ms(milliseconds: int) -> datetime.timedelta:
    return datetime.timedelta(milliseconds=milliseconds)

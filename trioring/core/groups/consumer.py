"""The consumer group protocol of Kafka 4.0 (KIP-848): one heartbeat API, server-side
assignment, member epochs and incremental reconciliation.

A member joins by heartbeating with epoch 0 and its subscription; the
coordinator computes a target assignment for the whole group with a server
assignor (``assignors.py``) whenever the group epoch moves (a member joins,
leaves or changes its subscription, or a subscribed topic changes), and walks
each member towards its target one heartbeat at a time, as Kafka's
CurrentAssignmentBuilder does:

- a member first gives up what it must lose (UNREVOKED_PARTITIONS: it keeps
  its epoch and its reduced assignment until its heartbeat no longer reports
  the revoked partitions),
- then takes the new epoch and every partition of its target that no other
  member still owns (UNRELEASED_PARTITIONS while some are still owned
  elsewhere), so no partition is ever owned by two members.

A member silent for ``consumer_session_timeout_ms`` is removed; one that
does not revoke within its rebalance timeout is fenced. Like ``state.py``
nothing here awaits or reads a clock: transitions take ``now`` and the
coordinator runs the deadlines (:attr:`ConsumerGroupStateMachine.timer_changes`).

Differences from Kafka 4.0, documented in docs/protocol.md: group state is
kept in memory (after a coordinator restart members get UNKNOWN_MEMBER_ID
and rejoin, resuming from their committed offsets). Classic members may
join a consumer group, and a classic group becomes a consumer group when a
consumer-protocol member joins it, and back when the last one leaves (Kafka
4.0's mixed groups; docs/protocol.md). Regular expressions are RE2's, as Kafka's RE2J:
linear in time, so no pattern a client sends can stall the coordinator.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections import Counter
from collections.abc import Callable

import attrs
import re2
from kio.schema.errors import ErrorCode

from trioring._constants import GROUP_NAME_LENGTH_MAX, GROUP_STRING_LENGTH_MAX
from trioring._logging import RateLimitedLogger, printable
from trioring.cluster.model import ClusterMetadata
from trioring.config import GroupConfig
from trioring.core.groups.assignors import ASSIGNORS, Assignment
from trioring.core.groups.consumer_model import (
    CONSUMER_PROTOCOL_TYPE,
    EMPTY,
    LEAVE_GROUP_EPOCH,
    LEAVE_GROUP_STATIC_EPOCH,
    ConsumerGroupState,
    ConsumerHeartbeat,
    Group,
    Member,
    MemberState,
    Refused,
    compile_regex,
    resolve,
)
from trioring.core.groups.mixed import MixedGroups
from trioring.core.groups.results import (
    ClassicGroupExport,
    ConsumerGroupDescription,
    ConsumerGroupMemberDescription,
    ConsumerHeartbeatResult,
    GroupListing,
)

__all__ = [
    "LEAVE_GROUP_EPOCH",
    "LEAVE_GROUP_STATIC_EPOCH",
    "ConsumerGroupState",
    "ConsumerGroupStateMachine",
]

logger = logging.getLogger("trioring.groups")
group_log = RateLimitedLogger(logger)

#: ConsumerGroupHeartbeat v1 (Kafka 4.0) makes the client choose its member id.
_CLIENT_MEMBER_ID_VERSION = 1
#: OffsetCommit v9 is the first that carries a member epoch (KIP-848).
_OFFSET_COMMIT_MEMBER_EPOCH_VERSION = 9


class ConsumerGroupStateMachine:
    """Every consumer-protocol group of one coordinator."""

    def __init__(
        self,
        config: GroupConfig,
        other_groups: Callable[[], int] = lambda: 0,
        new_member_id: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> None:
        self.config = config
        self._other_groups = other_groups
        self._new_member_id = new_member_id
        self._groups: dict[str, Group] = {}
        self.closed = False
        #: Group id -> the earliest deadline that may have moved (-inf: recompute).
        self.timer_changes: dict[str, float] = {}
        #: Groups whose last consumer-protocol member left while classic members
        #: remain: the coordinator hands them to the classic state machine.
        self.downgrades: list[ClassicGroupExport] = []
        #: JoinGroup, SyncGroup, Heartbeat and LeaveGroup of classic members in these groups.
        self.mixed = MixedGroups(self)

    def take_downgrades(self) -> list[ClassicGroupExport]:
        downgrades, self.downgrades = self.downgrades, []
        return downgrades

    def take_timer_changes(self) -> dict[str, float]:
        changes, self.timer_changes = self.timer_changes, {}
        return changes

    def _timer_changed(self, group: Group, deadline: float = -math.inf) -> None:
        if not self.closed:
            previous = self.timer_changes.get(group.group_id, math.inf)
            self.timer_changes[group.group_id] = min(previous, deadline)

    # --- ConsumerGroupHeartbeat ---------------------------------------------------------

    def heartbeat(
        self, now: float, request: ConsumerHeartbeat, metadata: ClusterMetadata
    ) -> ConsumerHeartbeatResult:
        """One ConsumerGroupHeartbeat: join (epoch 0), keep alive and reconcile, or leave."""
        try:
            if self.closed:
                raise Refused(ErrorCode.coordinator_not_available, "the coordinator is stopping")
            self._validate(request)
            if request.member_epoch in (LEAVE_GROUP_EPOCH, LEAVE_GROUP_STATIC_EPOCH):
                return self._leave(now, request)
            return self._heartbeat(
                now, request, request.member_id or self._new_member_id(), metadata
            )
        except Refused as refused:
            return ConsumerHeartbeatResult(
                refused.error_code,
                refused.message,
                request.member_id or None,
                request.member_epoch,
            )

    @staticmethod
    def _validate(request: ConsumerHeartbeat) -> None:
        """Kafka's checks of a heartbeat's fields, in Kafka's order and with its messages."""
        invalid = ErrorCode.invalid_request
        group_id, member_id, member_epoch = (
            request.group_id,
            request.member_id,
            request.member_epoch,
        )
        instance_id, rack_id, regex = (
            request.instance_id,
            request.rack_id,
            request.subscribed_topic_regex,
        )
        if not group_id or len(group_id) > GROUP_NAME_LENGTH_MAX:
            raise Refused(ErrorCode.invalid_group_id, "GroupId can't be empty.")
        if instance_id == "":
            raise Refused(invalid, "InstanceId can't be empty.")
        if rack_id == "":
            raise Refused(invalid, "RackId can't be empty.")
        strings = (request.client_id, request.client_host, member_id, instance_id, rack_id, regex)
        if any(len(string or "") > GROUP_STRING_LENGTH_MAX for string in strings):
            raise Refused(invalid, "a string of the request is too long.")
        if member_epoch > 0 or member_epoch in (LEAVE_GROUP_EPOCH, LEAVE_GROUP_STATIC_EPOCH):
            if not member_id:
                raise Refused(invalid, "MemberId can't be empty.")
            if member_epoch == LEAVE_GROUP_STATIC_EPOCH and instance_id is None:
                raise Refused(invalid, "InstanceId can't be null.")
        elif member_epoch == 0:
            if request.api_version >= _CLIENT_MEMBER_ID_VERSION and not member_id:
                raise Refused(invalid, "MemberId can't be empty.")
            if request.rebalance_timeout_ms == -1:
                raise Refused(invalid, "RebalanceTimeoutMs must be provided in first request.")
            if request.owned is None or request.owned:
                raise Refused(invalid, "TopicPartitions must be empty when (re-)joining.")
            if request.subscribed_topic_names is None and regex is None:
                raise Refused(
                    invalid,
                    "Either SubscribedTopicNames or SubscribedTopicRegex must be non-null "
                    "when (re-)joining.",
                )
        else:
            raise Refused(invalid, "MemberEpoch is invalid.")
        if request.rebalance_timeout_ms != -1 and request.rebalance_timeout_ms <= 0:
            raise Refused(invalid, "RebalanceTimeoutMs must be positive.")
        if regex is not None:
            try:
                compile_regex(regex)
            except re2.error as error:
                reason = error.args[0] if error.args else b""
                if isinstance(reason, bytes):
                    reason = reason.decode("utf-8", "replace")
                raise Refused(
                    ErrorCode.invalid_regular_expression,
                    f"SubscribedTopicRegex {printable(regex)} is invalid: {printable(str(reason))}",
                ) from None
        assignor = request.server_assignor
        if assignor is not None and assignor not in ASSIGNORS:
            raise Refused(
                ErrorCode.unsupported_assignor,
                f"ServerAssignor {printable(assignor)} is not supported. "
                f"Supported assignors: {', '.join(ASSIGNORS)}.",
            )

    def _group(self, group_id: str, create: bool) -> Group:
        group = self._groups.get(group_id)
        if group is not None:
            return group
        if not create:
            # Kafka would name the group unknown (GROUP_ID_NOT_FOUND, fatal for
            # clients); here a group is forgotten on a coordinator restart, and
            # UNKNOWN_MEMBER_ID makes the member rejoin.
            raise Refused(
                ErrorCode.unknown_member_id, f"Consumer group {printable(group_id)} not found."
            )
        if len(self._groups) + self._other_groups() >= self.config.groups_max:
            evictable = next((old for old in self._groups.values() if not old.members), None)
            if evictable is None:
                group_log.warning("cannot create group %s: too many groups", printable(group_id))
                raise Refused(
                    ErrorCode.coordinator_not_available,
                    f"the coordinator holds {self.config.groups_max} groups already",
                )
            del self._groups[evictable.group_id]
        group = self._groups[group_id] = Group(group_id)
        return group

    def _heartbeat(
        self, now: float, request: ConsumerHeartbeat, member_id: str, metadata: ClusterMetadata
    ) -> ConsumerHeartbeatResult:
        member_epoch, instance_id, owned = (
            request.member_epoch,
            request.instance_id,
            request.owned,
        )
        names = request.subscribed_topic_names
        if names is not None:
            names = tuple(sorted(set(names)))
        regex = request.subscribed_topic_regex
        joining = member_epoch == 0
        group = self._group(request.group_id, create=joining)
        if (
            joining
            and member_id not in group.members
            and (instance_id is None or instance_id not in group.static_members)
            and len(group.members) >= self.config.group_members_max
        ):
            raise Refused(
                ErrorCode.group_max_size_reached,
                "The consumer group has reached its maximum capacity of "
                f"{self.config.group_members_max} members.",
            )
        member = self._member(
            now, group, member_id, member_epoch, instance_id=instance_id, owned=owned
        )
        previous_assigned = member.assigned
        subscription_changed = False
        if member.member_epoch == 0 and member.member_id not in group.members:
            group.members[member.member_id] = member
            if instance_id is not None:
                group.static_members[instance_id] = member.member_id
            subscription_changed = True
        if names is not None and names != member.subscribed_topic_names:
            member.subscribed_topic_names = names
            subscription_changed = True
        if regex is not None and regex != member.subscribed_topic_regex:
            member.subscribed_topic_regex = regex or None
            subscription_changed = True
        if request.rack_id is not None:
            member.rack_id = request.rack_id
        if request.rebalance_timeout_ms != -1:
            member.rebalance_timeout_ms = request.rebalance_timeout_ms
        assignor = request.server_assignor
        if assignor is not None and assignor != member.server_assignor:
            member.server_assignor = assignor
            subscription_changed = True
        member.client_id, member.client_host = request.client_id, request.client_host
        member.last_seen = now
        member.classic = None  # it speaks the consumer protocol now
        if subscription_changed:
            member.topic_ids = resolve(member, metadata)
        self._refresh(group, metadata, bump=subscription_changed)
        self._reconcile(now, group, member, owned)
        self._timer_changed(group)
        full = joining or (
            request.rebalance_timeout_ms != -1 and names is not None and owned is not None
        )
        changed = member.assigned != previous_assigned
        return ConsumerHeartbeatResult(
            ErrorCode.none,
            None,
            member.member_id,
            member.member_epoch,
            self.config.consumer_heartbeat_interval_ms,
            member.assigned if full or changed else None,
        )

    def _member(
        self,
        now: float,
        group: Group,
        member_id: str,
        member_epoch: int,
        *,
        instance_id: str | None,
        owned: Assignment | None,
    ) -> Member:
        """The member a heartbeat speaks for: found (epoch checked), or new when joining."""
        joining = member_epoch == 0
        if instance_id is not None:
            holder_id = group.static_members.get(instance_id)
            holder = None if holder_id is None else group.members[holder_id]
            if joining:
                if holder is None:
                    return self._new_member(now, member_id, instance_id)
                if (
                    holder.member_id != member_id
                    and holder.member_epoch != LEAVE_GROUP_STATIC_EPOCH
                ):
                    raise Refused(
                        ErrorCode.unreleased_instance_id,
                        f"Static member {printable(member_id)} with instance id "
                        f"{printable(instance_id)} cannot join the group because the instance "
                        f"id is owned by {printable(holder.member_id)} member.",
                    )
                # The instance comes back (KIP-848 static membership): it takes the
                # old member's place and assignment under its new member id, and
                # reconciles from epoch 0 without a new target for the group.
                self._replace(group, holder, member_id)
                return group.members[member_id]
            if holder is None:
                raise Refused(
                    ErrorCode.unknown_member_id, f"Instance id {printable(instance_id)} is unknown."
                )
            if holder.member_id != member_id:
                raise Refused(
                    ErrorCode.fenced_instance_id,
                    f"Static member {printable(member_id)} with instance id "
                    f"{printable(instance_id)} was fenced by member {printable(holder.member_id)}.",
                )
            self._check_epoch(holder, member_epoch, owned)
            return holder
        member = group.members.get(member_id)
        if member is None:
            if not joining:
                raise Refused(
                    ErrorCode.unknown_member_id,
                    f"Member {printable(member_id)} is not a member of group "
                    f"{printable(group.group_id)}.",
                )
            return self._new_member(now, member_id, None)
        if joining:
            # A member that rejoins under its id (after being fenced, the client
            # keeps its id from v1) starts over: it owns nothing now.
            self._remove(group, member)
            return self._new_member(now, member_id, None)
        self._check_epoch(member, member_epoch, owned)
        return member

    def _new_member(self, now: float, member_id: str, instance_id: str | None) -> Member:
        return Member(
            member_id=member_id,
            instance_id=instance_id,
            rack_id=None,
            client_id="",
            client_host="",
            rebalance_timeout_ms=-1,
            subscribed_topic_names=(),
            subscribed_topic_regex=None,
            server_assignor=None,
            last_seen=now,
        )

    @staticmethod
    def _check_epoch(member: Member, received: int, owned: Assignment | None) -> None:
        if received > member.member_epoch:
            raise Refused(
                ErrorCode.fenced_member_epoch,
                f"The consumer group member has a greater member epoch ({received}) than the one "
                f"known by the group coordinator ({member.member_epoch}). The member must abandon "
                "all its partitions and rejoin.",
            )
        if received < member.member_epoch and not (
            # The answer that moved the member on may have been lost.
            received == member.previous_member_epoch
            and owned is not None
            and owned <= member.assigned
        ):
            raise Refused(
                ErrorCode.fenced_member_epoch,
                f"The consumer group member has a smaller member epoch ({received}) than the one "
                f"known by the group coordinator ({member.member_epoch}). The member must abandon "
                "all its partitions and rejoin.",
            )

    def _replace(self, group: Group, old: Member, member_id: str) -> None:
        """A static member's new incarnation takes the old one's place and partitions."""
        del group.members[old.member_id]
        target = group.target.pop(old.member_id, None)
        new = attrs.evolve(
            old,
            member_id=member_id,
            member_epoch=0,
            previous_member_epoch=0,
            state=MemberState.STABLE,
            pending_revocation=EMPTY,
            revocation_deadline=math.inf,
        )
        for key in old.pending_revocation:
            del group.owners[key]
        for key in old.assigned:
            group.owners[key] = member_id
        group.members[member_id] = new
        if target is not None:
            group.target[member_id] = target
        assert old.instance_id is not None
        group.static_members[old.instance_id] = member_id
        logger.info(
            "static member %s of group %s rejoins as %s",
            printable(old.instance_id),
            printable(group.group_id),
            printable(member_id),
        )

    # --- the group's target assignment --------------------------------------------------

    def _refresh(self, group: Group, metadata: ClusterMetadata, *, bump: bool) -> None:
        """Bump the group epoch if asked or if a subscribed topic changed, and compute the
        new target assignment."""
        if group.metadata_version != metadata.version:
            for member in group.members.values():
                member.topic_ids = resolve(member, metadata)
            group.metadata_version = metadata.version
        subscribed = set().union(*(member.topic_ids for member in group.members.values()))
        subscription = {
            topic_id: metadata.topics_by_id[topic_id].partitions for topic_id in sorted(subscribed)
        }
        if subscription != group.subscription:
            group.subscription = subscription
            group.topic_names = {
                topic_id: metadata.topics_by_id[topic_id].name for topic_id in subscription
            }
            bump = True
        if bump:
            self._assign(group)

    @staticmethod
    def _assign(group: Group) -> None:
        """A new group epoch and its target assignment, with the assignor most members
        ask for (Kafka's rule; ties by name, none named: the default)."""
        group.group_epoch += 1
        counts = Counter(
            member.server_assignor for member in group.members.values() if member.server_assignor
        )
        group.assignor_name = (
            min(counts, key=lambda name: (-counts[name], name)) if counts else next(iter(ASSIGNORS))
        )
        group.target = ASSIGNORS[group.assignor_name](
            {member_id: member.topic_ids for member_id, member in group.members.items()},
            group.subscription,
            group.target,
        )
        group.assignment_epoch = group.group_epoch
        logger.info(
            "group %s: epoch %d, %d members, assignor %s",
            printable(group.group_id),
            group.group_epoch,
            len(group.members),
            group.assignor_name,
        )

    def _reconcile(
        self, now: float, group: Group, member: Member, owned: Assignment | None
    ) -> None:
        """Move a member one step towards its target (Kafka's CurrentAssignmentBuilder)."""
        epoch = group.assignment_epoch
        if member.state is MemberState.STABLE and member.member_epoch == epoch:
            return
        if member.state is MemberState.UNREVOKED_PARTITIONS:
            if owned is None or owned & member.pending_revocation:
                return  # still owns some of what it must give up
            self._next_assignment(now, group, member, member.member_epoch + 1, owned)
        else:
            self._next_assignment(now, group, member, member.member_epoch, owned)

    def _next_assignment(
        self, now: float, group: Group, member: Member, epoch: int, owned: Assignment | None
    ) -> None:
        target = group.target.get(member.member_id, EMPTY)
        kept = member.assigned & target
        revoke = member.assigned - kept
        wanted = target - kept
        free = frozenset(key for key in wanted if key not in group.owners)
        unreleased = len(free) < len(wanted)
        if revoke and (owned is None or owned & revoke):
            self._set(group, member, kept, revoke)
            self._move(member, epoch, MemberState.UNREVOKED_PARTITIONS)
            member.revocation_deadline = now + member.rebalance_timeout_ms / 1000
            return
        self._set(group, member, kept | free, EMPTY)
        state = MemberState.UNRELEASED_PARTITIONS if unreleased else MemberState.STABLE
        self._move(member, group.assignment_epoch, state)
        member.revocation_deadline = math.inf

    @staticmethod
    def _move(member: Member, epoch: int, state: MemberState) -> None:
        if epoch != member.member_epoch:
            member.previous_member_epoch = member.member_epoch
            member.member_epoch = epoch
        member.state = state

    @staticmethod
    def _set(group: Group, member: Member, assigned: Assignment, pending: Assignment) -> None:
        for key in member.assigned | member.pending_revocation:
            del group.owners[key]
        member.assigned, member.pending_revocation = assigned, pending
        for key in assigned | pending:
            assert key not in group.owners, (key, group.owners[key], member.member_id)
            group.owners[key] = member.member_id

    # --- leaving, fencing, deadlines ----------------------------------------------------

    def _leave(self, now: float, request: ConsumerHeartbeat) -> ConsumerHeartbeatResult:
        group_id, member_id, member_epoch, instance_id = (
            request.group_id,
            request.member_id,
            request.member_epoch,
            request.instance_id,
        )
        group = self._groups.get(group_id)
        if group is None:
            raise Refused(
                ErrorCode.unknown_member_id, f"Consumer group {printable(group_id)} not found."
            )
        if instance_id is None:
            member = group.members.get(member_id)
            if member is None:
                raise Refused(
                    ErrorCode.unknown_member_id,
                    f"Member {printable(member_id)} is not a member of group "
                    f"{printable(group_id)}.",
                )
        else:
            holder = group.static_members.get(instance_id)
            if holder is None:
                raise Refused(
                    ErrorCode.unknown_member_id, f"Instance id {printable(instance_id)} is unknown."
                )
            if holder != member_id:
                raise Refused(
                    ErrorCode.fenced_instance_id,
                    f"Static member {printable(member_id)} with instance id "
                    f"{printable(instance_id)} was fenced by member {printable(holder)}.",
                )
            member = group.members[holder]
            if member_epoch == LEAVE_GROUP_STATIC_EPOCH:
                # Gone for now: it keeps its partitions (nobody else gets them) until
                # it comes back under the same instance id or its session ends.
                self._set(group, member, member.assigned, EMPTY)
                member.member_epoch = LEAVE_GROUP_STATIC_EPOCH
                member.state = MemberState.STABLE
                member.revocation_deadline = math.inf
                member.last_seen = now
                self._timer_changed(group)
                logger.info(
                    "static member %s left group %s for now",
                    printable(instance_id),
                    printable(group_id),
                )
                return ConsumerHeartbeatResult(
                    ErrorCode.none, None, member_id, LEAVE_GROUP_STATIC_EPOCH
                )
        self._fence(group, member, "left the group")
        return ConsumerHeartbeatResult(ErrorCode.none, None, member_id, member_epoch)

    def _remove(self, group: Group, member: Member) -> None:
        self._set(group, member, EMPTY, EMPTY)
        del group.members[member.member_id]
        group.target.pop(member.member_id, None)
        if member.instance_id is not None:
            del group.static_members[member.instance_id]

    def _fence(self, group: Group, member: Member, reason: str) -> None:
        """Remove a member; the others get a new target without it."""
        self._remove(group, member)
        logger.info(
            "member %s %s; group %s has %d members",
            printable(member.member_id),
            reason,
            printable(group.group_id),
            len(group.members),
        )
        if group.members and all(other.classic is not None for other in group.members.values()):
            # Back to the classic protocol at the epoch the members know, as
            # Kafka: the classic group then rebalances them.
            self.mixed.maybe_downgrade(group)
            self._timer_changed(group)
            return
        # The members left are resolved against the metadata they were last
        # resolved with; a newer one is applied at the next heartbeat.
        subscribed = set().union(*(other.topic_ids for other in group.members.values()))
        group.subscription = {
            topic_id: count
            for topic_id, count in group.subscription.items()
            if topic_id in subscribed
        }
        self._assign(group)
        self._timer_changed(group)

    def _session_deadline(self, member: Member) -> float:
        timeout_ms = (
            self.config.consumer_session_timeout_ms
            if member.classic is None
            else member.classic.session_timeout_ms
        )
        return member.last_seen + timeout_ms / 1000

    def next_deadline(self, group_id: str) -> float | None:
        group = self._groups.get(group_id)
        if group is None or not group.members:
            return None
        return min(
            min(
                self._session_deadline(member),
                member.revocation_deadline,
                math.inf if member.classic is None else member.classic.deadline,
            )
            for member in group.members.values()
        )

    def expire(self, group_id: str, now: float) -> None:
        """Remove members whose session ended, fence those that did not revoke in time."""
        group = self._groups.get(group_id)
        if group is None:
            return
        for member in list(group.members.values()):
            if group.group_id not in self._groups:
                return  # handed back to the classic protocol
            if self._session_deadline(member) <= now:
                self._fence(group, member, "timed out (no heartbeat within the session timeout)")
            elif member.revocation_deadline <= now:
                self._fence(
                    group,
                    member,
                    f"did not revoke its partitions within {member.rebalance_timeout_ms} ms",
                )
            elif member.classic is not None and member.classic.deadline <= now:
                self._fence(
                    group,
                    member,
                    f"did not join or sync within its rebalance timeout "
                    f"({member.rebalance_timeout_ms} ms)",
                )

    # --- the other group APIs -----------------------------------------------------------

    def has_group(self, group_id: str) -> bool:
        return group_id in self._groups

    def has_members(self, group_id: str) -> bool:
        group = self._groups.get(group_id)
        return group is not None and bool(group.members)

    def group_count(self) -> int:
        return len(self._groups)

    def delete_group(self, group_id: str) -> int | None:
        """Forget an Empty group: NONE, NON_EMPTY_GROUP, or None if it is not one of ours."""
        group = self._groups.get(group_id)
        if group is None:
            return None
        if group.members:
            return ErrorCode.non_empty_group
        del self._groups[group_id]
        return ErrorCode.none

    def subscribed_topics(self, group_id: str, metadata: ClusterMetadata) -> frozenset[str]:
        """The names of the topics the group's members subscribe to (OffsetDelete)."""
        group = self._groups.get(group_id)
        if group is None:
            return frozenset()
        names: set[str] = set()
        for member in group.members.values():
            names.update(member.subscribed_topic_names)
            for topic_id in resolve(member, metadata):
                names.add(metadata.topics_by_id[topic_id].name)
        return frozenset(names)

    def validate_offset_commit(
        self,
        now: float,
        *,
        group_id: str,
        member_id: str,
        member_epoch: int,
        api_version: int | None = None,
    ) -> tuple[int, str]:
        """Kafka's check of an OffsetCommit to a consumer group: (error code, message)."""
        group = self._groups[group_id]
        if member_epoch < 0 and not group.members:
            return ErrorCode.none, ""
        member = group.members.get(member_id)
        if member is not None and member.classic is not None:
            if member_epoch != member.member_epoch:
                return (
                    ErrorCode.illegal_generation,
                    f"The received generation id {member_epoch} does not match the expected "
                    f"member epoch {member.member_epoch}.",
                )
            return ErrorCode.none, ""
        if api_version is not None and api_version < _OFFSET_COMMIT_MEMBER_EPOCH_VERSION:
            return (
                ErrorCode.unsupported_version,
                "OffsetCommit version 9 or above must be used by members using the modern "
                "group protocol",
            )
        return self.validate_offset_fetch(group_id, member_id, member_epoch)

    def validate_offset_fetch(
        self, group_id: str, member_id: str | None, member_epoch: int
    ) -> tuple[int, str]:
        """Kafka's check of a member's OffsetCommit or OffsetFetch v9: its epoch is current."""
        group = self._groups[group_id]
        member = None if member_id is None else group.members.get(member_id)
        if member is None:
            return (
                ErrorCode.unknown_member_id,
                f"Member {printable(member_id)} is not a member of group {printable(group_id)}.",
            )
        if member_epoch != member.member_epoch:
            return (
                ErrorCode.stale_member_epoch,
                f"The received member epoch {member_epoch} does not match the expected member "
                f"epoch {member.member_epoch}.",
            )
        return ErrorCode.none, ""

    def describe(self, group_id: str) -> ConsumerGroupDescription | None:
        group = self._groups.get(group_id)
        if group is None:
            return None
        members = tuple(
            ConsumerGroupMemberDescription(
                member.member_id,
                member.instance_id,
                member.rack_id,
                member.member_epoch,
                member.client_id,
                member.client_host,
                member.subscribed_topic_names,
                member.subscribed_topic_regex,
                member.assigned,
                group.target.get(member.member_id, EMPTY),
                classic=member.classic is not None,
            )
            for member in group.members.values()
        )
        return ConsumerGroupDescription(
            ErrorCode.none,
            group_id,
            None,
            group.state.value,
            group.group_epoch,
            group.assignment_epoch,
            group.assignor_name or next(iter(ASSIGNORS)),
            members,
        )

    def listings(self) -> list[GroupListing]:
        return [
            GroupListing(group_id, CONSUMER_PROTOCOL_TYPE, group.state.value, "consumer")
            for group_id, group in self._groups.items()
        ]

    def groups_with_deadlines(self) -> list[str]:
        return [group_id for group_id, group in self._groups.items() if group.members]

    def close(self) -> None:
        self.closed = True

    def assert_invariants(self) -> None:
        """Check the invariants of every group (tests call this after each step)."""
        for group_id, group in self._groups.items():
            assert group.group_id == group_id
            assert group.assignment_epoch <= group.group_epoch
            owners: dict[tuple[str, int], str] = {}
            for member_id, member in group.members.items():
                assert member.member_id == member_id
                assert not member.assigned & member.pending_revocation
                for key in member.assigned | member.pending_revocation:
                    assert key not in owners, f"{key} owned by {owners[key]} and {member_id}"
                    owners[key] = member_id
                if member.state is MemberState.UNREVOKED_PARTITIONS:
                    assert member.pending_revocation
                else:
                    assert not member.pending_revocation
                assert member.member_epoch <= group.assignment_epoch
            assert owners == group.owners
            assert set(group.target) <= set(group.members)
            for instance, holder in group.static_members.items():
                assert group.members[holder].instance_id == instance
            assert len(group.static_members) == sum(
                member.instance_id is not None for member in group.members.values()
            )

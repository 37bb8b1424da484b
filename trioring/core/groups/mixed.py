"""Classic members inside consumer-protocol groups: Kafka 4.0's mixed groups, its online
upgrade and downgrade (``group.consumer.migration.policy=bidirectional``).

A classic group of consumers becomes a consumer group when a consumer-protocol
member joins it; its classic members keep speaking JoinGroup, SyncGroup,
Heartbeat and LeaveGroup, and the broker assigns them as it assigns the
others (they are all followers: JoinGroup answers at once, with no leader,
and SyncGroup carries their share). When the last consumer-protocol member
leaves, the group goes back to the classic protocol. docs/protocol.md has
the rules.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from typing import TYPE_CHECKING

from kio.schema.errors import ErrorCode

from trioring._logging import printable
from trioring.cluster.model import ClusterMetadata
from trioring.core.groups.assignors import Assignment
from trioring.core.groups.consumer_model import (
    CONSUMER_PROTOCOL_TYPE,
    EMPTY,
    Classic,
    Group,
    Member,
    MemberState,
    Refused,
    resolve,
)
from trioring.core.groups.results import (
    ClassicGroupExport,
    ClassicMemberExport,
    JoinGroupResult,
    LeaveGroupMemberResult,
    LeaveGroupResult,
    SyncGroupResult,
)
from trioring.protocol.kafka.consumer_protocol import (
    encode_assignment,
    parse_assignment,
    parse_subscription,
)

if TYPE_CHECKING:
    from trioring.core.groups.consumer import ConsumerGroupStateMachine

__all__ = ["MixedGroups"]

logger = logging.getLogger("trioring.groups")

#: JoinGroup v4 is the first that asks an unknown member to rejoin with an id.
_JOIN_MEMBER_ID_REQUIRED_VERSION = 4


class MixedGroups:
    """The classic protocol's side of a consumer group state machine."""

    def __init__(self, machine: ConsumerGroupStateMachine) -> None:
        self._m = machine

    def downgrade_if_classic(self, group_id: str) -> None:
        """Hand the group back to the classic protocol if only classic members are left
        (a consumer-protocol member that upgraded it was then refused)."""
        group = self._m._groups.get(group_id)
        if group is not None:
            self.maybe_downgrade(group)

    def maybe_downgrade(self, group: Group) -> None:
        """Hand a group whose members all speak the classic protocol back to the classic
        state machine, as Kafka 4.0 does when its last consumer-protocol member leaves."""
        if not group.members or any(m.classic is None for m in group.members.values()):
            return
        del self._m._groups[group.group_id]
        self._m.downgrades.append(
            ClassicGroupExport(
                group.group_id,
                group.group_epoch,
                CONSUMER_PROTOCOL_TYPE,
                tuple(
                    ClassicMemberExport(
                        member.member_id,
                        member.instance_id,
                        member.client_id,
                        member.client_host,
                        member.classic.session_timeout_ms,
                        member.rebalance_timeout_ms,
                        member.classic.protocols,
                        member.classic.protocols[0][1],
                        self._assignment_bytes(group, member),
                    )
                    for member in group.members.values()
                    if member.classic is not None
                ),
            )
        )
        logger.info("group %s moves back to the classic protocol", printable(group.group_id))

    def adopt(self, now: float, export: ClassicGroupExport, metadata: ClusterMetadata) -> bool:
        """Take over a classic group with members (Kafka 4.0's online upgrade, when a
        consumer-protocol member joins it); False if its members' consumer protocol
        cannot be read (the group then stays classic).

        Each member keeps its current assignment as its target, at the group's
        generation as epoch, until the joining member makes a new target.
        """
        if export.protocol_type != CONSUMER_PROTOCOL_TYPE:
            return False
        parsed = []
        for exported in export.members:
            subscription = parse_subscription(exported.metadata)
            assignment = parse_assignment(exported.assignment)
            if subscription is None or assignment is None or not exported.protocols:
                return False
            parsed.append((exported, subscription, assignment))
        group = self._m._groups[export.group_id] = Group(
            export.group_id,
            group_epoch=export.generation_id,
            assignment_epoch=export.generation_id,
            metadata_version=metadata.version,
        )
        for exported, subscription, assignment in parsed:
            member = self._m._new_member(now, exported.member_id, exported.group_instance_id)
            member.client_id, member.client_host = exported.client_id, exported.client_host
            member.rack_id = subscription.rack_id
            member.rebalance_timeout_ms = exported.rebalance_timeout_ms
            member.subscribed_topic_names = tuple(sorted(set(subscription.topics)))
            member.member_epoch = member.previous_member_epoch = export.generation_id
            member.classic = Classic(
                exported.session_timeout_ms, exported.protocols, subscription.version
            )
            member.topic_ids = resolve(member, metadata)
            group.members[member.member_id] = member
            if member.instance_id is not None:
                group.static_members[member.instance_id] = member.member_id
            owned = self._topic_partitions(assignment, metadata) - group.owners.keys()
            self._m._set(group, member, frozenset(owned), EMPTY)
            group.target[member.member_id] = member.assigned
        subscribed = set().union(*(member.topic_ids for member in group.members.values()))
        group.subscription = {
            topic_id: metadata.topics_by_id[topic_id].partitions for topic_id in sorted(subscribed)
        }
        group.topic_names = {
            topic_id: metadata.topics_by_id[topic_id].name for topic_id in group.subscription
        }
        self._m._timer_changed(group)
        return True

    @staticmethod
    def _topic_partitions(
        partitions: Iterable[tuple[str, Iterable[int]]], metadata: ClusterMetadata
    ) -> Assignment:
        """(topic name, partitions) as (topic id, partition), for topics that exist."""
        keys: set[tuple[str, int]] = set()
        for name, numbers in partitions:
            info = metadata.topics.get(name)
            if info is not None and not info.internal:
                keys.update((info.topic_id, number) for number in numbers)
        return frozenset(keys)

    @staticmethod
    def _assignment_bytes(group: Group, member: Member) -> bytes:
        """A classic member's assignment as its consumer protocol writes it (by topic name)."""
        assert member.classic is not None
        by_topic: dict[str, list[int]] = {}
        for topic_id, partition in sorted(member.assigned):
            name = group.topic_names.get(topic_id)
            if name is not None:
                by_topic.setdefault(name, []).append(partition)
        return encode_assignment(member.classic.version, sorted(by_topic.items()))

    def classic_join(
        self,
        now: float,
        *,
        group_id: str,
        member_id: str,
        instance_id: str | None,
        protocol_type: str,
        protocols: tuple[tuple[str, bytes], ...],
        session_timeout_ms: int,
        rebalance_timeout_ms: int,
        client_id: str,
        client_host: str,
        api_version: int,
        metadata: ClusterMetadata,
    ) -> JoinGroupResult:
        """JoinGroup of a classic member to a consumer-protocol group, answered at once with
        its member epoch as generation; the broker assigns (the member is a follower)."""
        group = self._m._groups[group_id]
        unknown = member_id == ""
        if unknown:
            member_id = self._m._new_member_id()
        try:
            config = self._m.config
            if not (
                config.group_min_session_timeout_ms
                <= session_timeout_ms
                <= config.group_max_session_timeout_ms
            ):
                raise Refused(ErrorCode.invalid_session_timeout, "session timeout out of range")
            if rebalance_timeout_ms <= 0:
                raise Refused(ErrorCode.invalid_request, "rebalance timeout must be positive")
            if (
                (unknown or member_id not in group.members)
                and (instance_id is None or instance_id not in group.static_members)
                and len(group.members) >= self._m.config.group_members_max
            ):
                raise Refused(ErrorCode.group_max_size_reached, "the group is full")
            self._check_classic_protocols(group, member_id, protocol_type, protocols)
            subscription = parse_subscription(protocols[0][1])
            if subscription is None:
                raise Refused(
                    ErrorCode.inconsistent_group_protocol, "unreadable consumer subscription"
                )
            if unknown and instance_id is None and api_version >= _JOIN_MEMBER_ID_REQUIRED_VERSION:
                # As Kafka: rejoin with this id (no pending member is kept here).
                return JoinGroupResult(ErrorCode.member_id_required, member_id=member_id)
            member = self._classic_member_for_join(now, group, member_id, instance_id, unknown)
        except Refused as refused:
            return JoinGroupResult(refused.error_code, member_id=member_id)
        names = tuple(sorted(set(subscription.topics)))
        changed = member.member_id not in group.members or names != member.subscribed_topic_names
        if member.member_id not in group.members:
            group.members[member.member_id] = member
            if instance_id is not None:
                group.static_members[instance_id] = member.member_id
        member.subscribed_topic_names = names
        member.subscribed_topic_regex = None
        member.rack_id = subscription.rack_id
        member.rebalance_timeout_ms = rebalance_timeout_ms
        member.client_id, member.client_host = client_id, client_host
        member.classic = Classic(
            session_timeout_ms,
            protocols,
            subscription.version,
            deadline=now + rebalance_timeout_ms / 1000,  # it must sync by then
        )
        member.last_seen = now
        if changed:
            member.topic_ids = resolve(member, metadata)
        self._m._refresh(group, metadata, bump=changed)
        self._m._reconcile(now, group, member, self._topic_partitions(subscription.owned, metadata))
        self._m._timer_changed(group)
        return JoinGroupResult(
            ErrorCode.none,
            generation_id=member.member_epoch,
            protocol_type=CONSUMER_PROTOCOL_TYPE,
            protocol_name=protocols[0][0],
            member_id=member.member_id,
        )

    def _check_classic_protocols(
        self,
        group: Group,
        member_id: str,
        protocol_type: str,
        protocols: tuple[tuple[str, bytes], ...],
    ) -> None:
        """Kafka's rule: the consumer protocol type, and a protocol every other classic
        member offers too."""
        names = {name for name, _ in protocols}
        if protocol_type != CONSUMER_PROTOCOL_TYPE or not names:
            raise Refused(ErrorCode.inconsistent_group_protocol, "not the consumer protocol")
        for other in group.members.values():
            if other.member_id != member_id and other.classic is not None:
                names &= {name for name, _ in other.classic.protocols}
        if not names:
            raise Refused(
                ErrorCode.inconsistent_group_protocol,
                f"Member {printable(member_id)}'s protocols are not supported.",
            )

    def _classic_member_for_join(
        self, now: float, group: Group, member_id: str, instance_id: str | None, unknown: bool
    ) -> Member:
        if instance_id is None:
            member = group.members.get(member_id)
            return member if member is not None else self._m._new_member(now, member_id, None)
        holder_id = group.static_members.get(instance_id)
        if holder_id is None:
            if not unknown:
                raise Refused(
                    ErrorCode.unknown_member_id,
                    f"Instance id {printable(instance_id)} is unknown.",
                )
            return self._m._new_member(now, member_id, instance_id)
        if unknown:
            # The instance restarted: the new member takes the old one's place.
            self._m._replace(group, group.members[holder_id], member_id)
            return group.members[member_id]
        if holder_id != member_id:
            raise Refused(
                ErrorCode.fenced_instance_id,
                f"Static member {printable(member_id)} with instance id "
                f"{printable(instance_id)} was fenced by member {printable(holder_id)}.",
            )
        return group.members[holder_id]

    def _classic_member(
        self,
        group: Group,
        member_id: str,
        instance_id: str | None,
        generation_id: int | None = None,
    ) -> tuple[Member, Classic]:
        """The classic member a request names (and its generation, when given, checked)."""
        if instance_id is None:
            member = group.members.get(member_id)
        else:
            holder = group.static_members.get(instance_id)
            if holder is not None and holder != member_id:
                raise Refused(
                    ErrorCode.fenced_instance_id,
                    f"Static member {printable(member_id)} was fenced by {printable(holder)}.",
                )
            member = None if holder is None else group.members[holder]
        if member is None or member.classic is None:
            raise Refused(
                ErrorCode.unknown_member_id,
                f"Member {printable(member_id)} is not a classic member of group "
                f"{printable(group.group_id)}.",
            )
        if generation_id is not None and generation_id != member.member_epoch:
            raise Refused(ErrorCode.illegal_generation, "wrong generation")
        return member, member.classic

    def _must_rejoin(self, now: float, group: Group, member: Member, classic: Classic) -> None:
        """REBALANCE_IN_PROGRESS, and a deadline to rejoin by, when the member has
        something to pick up: a new epoch, partitions to revoke, partitions now free."""
        waiting = member.state is MemberState.UNRELEASED_PARTITIONS and not any(
            key not in group.owners
            for key in group.target.get(member.member_id, EMPTY) - member.assigned
        )
        if (
            member.member_epoch < group.group_epoch
            or member.state is MemberState.UNREVOKED_PARTITIONS
            or (member.state is MemberState.UNRELEASED_PARTITIONS and not waiting)
        ):
            if classic.deadline == math.inf:
                classic.deadline = now + member.rebalance_timeout_ms / 1000
                self._m._timer_changed(group)
            raise Refused(ErrorCode.rebalance_in_progress, "the member must rejoin")

    def classic_sync(
        self,
        now: float,
        *,
        group_id: str,
        generation_id: int,
        member_id: str,
        instance_id: str | None,
    ) -> SyncGroupResult:
        """SyncGroup of a classic member: its assignment as the coordinator computed it."""
        group = self._m._groups[group_id]
        try:
            member, classic = self._classic_member(group, member_id, instance_id, generation_id)
            if (
                group.group_epoch > member.member_epoch
                and member.state is not MemberState.UNREVOKED_PARTITIONS
            ):
                self._must_rejoin(now, group, member, classic)
        except Refused as refused:
            return SyncGroupResult(refused.error_code)
        classic.deadline = math.inf
        member.last_seen = now
        self._m._timer_changed(group)
        return SyncGroupResult(
            ErrorCode.none,
            self._assignment_bytes(group, member),
            CONSUMER_PROTOCOL_TYPE,
            classic.protocols[0][0],
        )

    def classic_heartbeat(
        self,
        now: float,
        *,
        group_id: str,
        generation_id: int,
        member_id: str,
        instance_id: str | None,
    ) -> int:
        """Heartbeat of a classic member: REBALANCE_IN_PROGRESS when it should rejoin."""
        group = self._m._groups[group_id]
        try:
            member, classic = self._classic_member(group, member_id, instance_id, generation_id)
            member.last_seen = now
            self._must_rejoin(now, group, member, classic)
        except Refused as refused:
            return refused.error_code
        return ErrorCode.none

    def classic_leave(
        self,
        now: float,
        *,
        group_id: str,
        member_ids: tuple[str, ...] | list[str],
        instance_ids: tuple[str | None, ...] | list[str | None],
    ) -> LeaveGroupResult:
        """LeaveGroup of classic members of a consumer-protocol group (by id or instance id)."""
        results = []
        for member_id, instance_id in zip(member_ids, instance_ids, strict=True):
            group = self._m._groups.get(group_id)
            code: int = ErrorCode.unknown_member_id
            if group is not None:
                try:
                    if instance_id is not None and not member_id:
                        holder = group.static_members.get(instance_id, "")
                        member, _ = self._classic_member(group, holder, instance_id)
                    else:
                        member, _ = self._classic_member(group, member_id, instance_id)
                    self._m._fence(group, member, "left the group")
                    code = ErrorCode.none
                except Refused as refused:
                    code = refused.error_code
            results.append(LeaveGroupMemberResult(member_id, code))
        return LeaveGroupResult(ErrorCode.none, tuple(results))

"""The classic consumer-group state machine: synchronous transitions, the clock passed in.

Members join (JoinGroup), the broker picks the protocol they all support and
names a leader, the leader computes the assignment on the client side and
hands it back (SyncGroup), and the broker relays each member its share.
Heartbeats keep members alive; a member that falls silent for its session
timeout is removed and the others rebalance.

The states and transitions follow Kafka's GroupCoordinator/GroupMetadata
(Empty, PreparingRebalance, CompletingRebalance, Stable; "Dead" only in
answers about groups we do not know). Nothing here awaits or reads a clock:
every transition takes ``now`` (seconds, Trio's clock in the coordinator)
and returns at once. A JoinGroup or SyncGroup that must wait for other
members returns a :class:`Pending` key; the answer comes out later in
:attr:`GroupStateMachine.answers`, when some transition completes it. The
groups whose deadlines may have moved are collected in
:attr:`GroupStateMachine.timer_changes`. The coordinator
(``coordinator.py``) turns both into Trio waiters and timer tasks.
"""

from __future__ import annotations

import enum
import logging
import math
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence

import attrs
from kio.schema.errors import ErrorCode

from trioring._constants import (
    GROUP_NAME_LENGTH_MAX,
    GROUP_PROTOCOLS_MAX,
    GROUP_STRING_LENGTH_MAX,
    MEMBER_ASSIGNMENT_BYTES_MAX,
    MEMBER_METADATA_BYTES_MAX,
)
from trioring._logging import RateLimitedLogger, printable
from trioring.config import GroupConfig
from trioring.core.groups.results import (
    ClassicGroupExport,
    ClassicMemberExport,
    GroupDescription,
    GroupListing,
    GroupMemberDescription,
    JoinGroupMember,
    JoinGroupResult,
    LeaveGroupMemberResult,
    LeaveGroupResult,
    ListGroupsResult,
    SyncGroupResult,
)
from trioring.protocol.kafka.consumer_protocol import subscribed_topics

__all__ = ["Answer", "GroupState", "GroupStateMachine", "Pending"]

logger = logging.getLogger("trioring.groups")
#: Lines a client can cause by the thousand (groups it cannot create).
group_log = RateLimitedLogger(logger)

NONE = ErrorCode.none
COORDINATOR_NOT_AVAILABLE = ErrorCode.coordinator_not_available
ILLEGAL_GENERATION = ErrorCode.illegal_generation
INCONSISTENT_GROUP_PROTOCOL = ErrorCode.inconsistent_group_protocol
INVALID_GROUP_ID = ErrorCode.invalid_group_id
UNKNOWN_MEMBER_ID = ErrorCode.unknown_member_id
INVALID_SESSION_TIMEOUT = ErrorCode.invalid_session_timeout
REBALANCE_IN_PROGRESS = ErrorCode.rebalance_in_progress
INVALID_REQUEST = ErrorCode.invalid_request
MEMBER_ID_REQUIRED = ErrorCode.member_id_required
GROUP_MAX_SIZE_REACHED = ErrorCode.group_max_size_reached
FENCED_INSTANCE_ID = ErrorCode.fenced_instance_id
NON_EMPTY_GROUP = ErrorCode.non_empty_group
GROUP_ID_NOT_FOUND = ErrorCode.group_id_not_found

#: The protocol type of Kafka consumers, whose member metadata names their topics.
CONSUMER_PROTOCOL_TYPE = "consumer"

#: JoinGroup v4 is the first that asks an unknown member to rejoin with an id.
_JOIN_MEMBER_ID_REQUIRED_VERSION = 4


class GroupState(enum.Enum):
    """Kafka's group states; the value is the string DescribeGroups and ListGroups send."""

    EMPTY = "Empty"
    PREPARING_REBALANCE = "PreparingRebalance"
    COMPLETING_REBALANCE = "CompletingRebalance"
    STABLE = "Stable"
    DEAD = "Dead"


@attrs.frozen
class Pending:
    """A JoinGroup ("join") or SyncGroup ("sync") whose answer comes later."""

    group_id: str
    member_id: str
    kind: str


@attrs.frozen
class Answer:
    """The answer to a pending JoinGroup or SyncGroup."""

    pending: Pending
    result: JoinGroupResult | SyncGroupResult


@attrs.define(eq=False)
class _Member:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    session_timeout_s: float
    rebalance_timeout_ms: int
    protocols: tuple[tuple[str, bytes], ...]
    protocol_names: frozenset[str]
    last_seen: float
    assignment: bytes = b""
    #: Awaits the end of the join phase (Kafka: awaitingJoinCallback).
    awaiting_join: bool = False
    #: A follower awaiting the leader's assignment (Kafka: awaitingSyncCallback).
    awaiting_sync: bool = False

    def metadata(self, protocol: str) -> bytes:
        for name, metadata in self.protocols:
            if name == protocol:
                return metadata
        raise AssertionError(f"member {self.member_id} does not support protocol {protocol}")

    @property
    def kept_alive(self) -> bool:
        # As Kafka's shouldKeepAlive: a member waiting for the coordinator
        # cannot heartbeat, so its session does not run meanwhile.
        return self.awaiting_join or self.awaiting_sync

    @property
    def session_deadline(self) -> float:
        return self.last_seen + self.session_timeout_s


@attrs.define(eq=False)
class _Group:
    group_id: str
    state: GroupState = GroupState.EMPTY
    generation_id: int = 0
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader: str | None = None
    members: dict[str, _Member] = attrs.Factory(dict)
    #: Member ids handed out with MEMBER_ID_REQUIRED -> when they expire.
    pending: dict[str, float] = attrs.Factory(dict)
    # PreparingRebalance: when the join phase ends (or, for a group that was
    # Empty, when the current initial delay ends).
    join_deadline: float = math.inf
    join_initial: bool = False
    join_remaining_ms: int = 0
    new_member_added: bool = False
    # CompletingRebalance/Stable: members that have not sent SyncGroup since
    # the join phase ended are removed at sync_deadline (Kafka's pending-sync timeout).
    sync_pending: set[str] = attrs.Factory(set)
    sync_deadline: float = math.inf
    #: Static members (KIP-345): group.instance.id -> the member id that holds it now.
    static_members: dict[str, str] = attrs.Factory(dict)

    def fenced(self, group_instance_id: str | None, member_id: str) -> bool:
        """Whether ``member_id`` claims an instance id another member holds now (Kafka's
        isStaticMemberFenced): that client was replaced by a newer one."""
        if group_instance_id is None:
            return False
        holder = self.static_members.get(group_instance_id)
        return holder is not None and holder != member_id

    def rebalance_timeout_ms(self) -> int:
        return max((member.rebalance_timeout_ms for member in self.members.values()), default=0)


def new_member_id(client_id: str) -> str:
    return f"{client_id}-{uuid.uuid4()}"


def _join_error(error_code: int, member_id: str = "") -> JoinGroupResult:
    return JoinGroupResult(error_code, member_id=member_id)


def _valid_group_id(group_id: str) -> bool:
    return isinstance(group_id, str) and 0 < len(group_id) <= GROUP_NAME_LENGTH_MAX


class GroupStateMachine:
    """All consumer groups of one coordinator, and every transition between their states."""

    def __init__(
        self, config: GroupConfig, new_member_id: Callable[[str], str] = new_member_id
    ) -> None:
        self.config = config
        self._new_member_id = new_member_id
        self._groups: dict[str, _Group] = {}
        #: How many groups the other protocol's machine holds (they share groups_max).
        self.other_groups: Callable[[], int] = lambda: 0
        self.closed = False
        #: Answers to pending JoinGroups and SyncGroups, in the order they came.
        self.answers: list[Answer] = []
        #: Group id -> the earliest deadline that may have moved (-inf: recompute).
        self.timer_changes: dict[str, float] = {}

    def take_answers(self) -> list[Answer]:
        answers, self.answers = self.answers, []
        return answers

    def take_timer_changes(self) -> dict[str, float]:
        changes, self.timer_changes = self.timer_changes, {}
        return changes

    def close(self) -> None:
        """Answer every pending JoinGroup and SyncGroup with COORDINATOR_NOT_AVAILABLE."""
        self.closed = True
        for group in self._groups.values():
            for member in group.members.values():
                if member.awaiting_join:
                    self._answer_join(group, member, _join_error(COORDINATOR_NOT_AVAILABLE))
                if member.awaiting_sync:
                    self._answer_sync(group, member, SyncGroupResult(COORDINATOR_NOT_AVAILABLE))

    def _answer_join(self, group: _Group, member: _Member, result: JoinGroupResult) -> None:
        assert member.awaiting_join
        member.awaiting_join = False
        self.answers.append(Answer(Pending(group.group_id, member.member_id, "join"), result))

    def _answer_sync(self, group: _Group, member: _Member, result: SyncGroupResult) -> None:
        assert member.awaiting_sync
        member.awaiting_sync = False
        self.answers.append(Answer(Pending(group.group_id, member.member_id, "sync"), result))

    def _timer_changed(self, group: _Group, deadline: float = -math.inf) -> None:
        if not self.closed:
            previous = self.timer_changes.get(group.group_id, math.inf)
            self.timer_changes[group.group_id] = min(previous, deadline)

    # --- JoinGroup --------------------------------------------------------------------

    def join(
        self,
        now: float,
        *,
        group_id: str,
        member_id: str,
        protocol_type: str,
        protocols: Sequence[tuple[str, bytes]],
        session_timeout_ms: int,
        rebalance_timeout_ms: int,
        group_instance_id: str | None,
        client_id: str,
        client_host: str,
        api_version: int,
    ) -> JoinGroupResult | Pending:
        if self.closed:
            return _join_error(COORDINATOR_NOT_AVAILABLE, member_id)
        if not _valid_group_id(group_id):
            return _join_error(INVALID_GROUP_ID, member_id)
        config = self.config
        if not (
            config.group_min_session_timeout_ms
            <= session_timeout_ms
            <= config.group_max_session_timeout_ms
        ):
            return _join_error(INVALID_SESSION_TIMEOUT, member_id)
        if rebalance_timeout_ms <= 0 or len(protocols) > GROUP_PROTOCOLS_MAX:
            return _join_error(INVALID_REQUEST, member_id)
        strings = [client_id, client_host, protocol_type, group_instance_id or ""]
        strings.extend(name for name, _ in protocols)
        if any(len(string) > GROUP_STRING_LENGTH_MAX for string in strings):
            return _join_error(INVALID_REQUEST, member_id)
        if sum(len(metadata) for _, metadata in protocols) > MEMBER_METADATA_BYTES_MAX:
            return _join_error(INVALID_REQUEST, member_id)
        member_protocols = tuple((name, bytes(metadata)) for name, metadata in protocols)
        names = frozenset(name for name, _ in member_protocols)
        new_member = _Member(
            member_id=member_id,
            group_instance_id=group_instance_id,
            client_id=client_id,
            client_host=client_host,
            session_timeout_s=session_timeout_ms / 1000,
            rebalance_timeout_ms=rebalance_timeout_ms,
            protocols=member_protocols,
            protocol_names=names,
            last_seen=now,
        )
        group = self._groups.get(group_id)

        if not member_id:
            if group is None:
                if not (protocol_type and names):
                    return _join_error(INCONSISTENT_GROUP_PROTOCOL)
                group = self._create_group(group_id)
                if group is None:
                    return _join_error(GROUP_MAX_SIZE_REACHED)
            holder = (
                None
                if group_instance_id is None
                else group.members.get(group.static_members.get(group_instance_id, ""))
            )
            if not self._supports(
                group, None if holder is None else holder.member_id, protocol_type, names
            ):
                return _join_error(INCONSISTENT_GROUP_PROTOCOL)
            if holder is None and len(group.members) >= config.group_members_max:
                return _join_error(GROUP_MAX_SIZE_REACHED)
            new_member.member_id = self._new_member_id(client_id)
            assert new_member.member_id, "member ids are non-empty"
            assert new_member.member_id not in group.members
            assert new_member.member_id not in group.pending
            if holder is not None:
                # A static member back (a restart): it takes its old place, no rebalance.
                return self._replace_static_member(now, group, holder, new_member)
            if group_instance_id is not None:
                # A new static member joins at once: its instance id names it, so
                # the MEMBER_ID_REQUIRED round trip is not needed (as Kafka).
                group.static_members[group_instance_id] = new_member.member_id
                return self._add_member_and_rebalance(now, group, new_member, protocol_type)
            if api_version >= _JOIN_MEMBER_ID_REQUIRED_VERSION:
                if len(group.pending) >= config.group_members_max:
                    return _join_error(GROUP_MAX_SIZE_REACHED)
                deadline = now + new_member.session_timeout_s
                group.pending[new_member.member_id] = deadline
                logger.debug(
                    "group %s: new member id %s for client %s must rejoin with it",
                    printable(group_id),
                    printable(new_member.member_id),
                    printable(client_id),
                )
                self._timer_changed(group, deadline)
                return _join_error(MEMBER_ID_REQUIRED, new_member.member_id)
            return self._add_member_and_rebalance(now, group, new_member, protocol_type)

        if group is None:
            return _join_error(UNKNOWN_MEMBER_ID, member_id)
        if group.fenced(group_instance_id, member_id):
            return _join_error(FENCED_INSTANCE_ID, member_id)
        if not self._supports(group, member_id, protocol_type, names):
            return _join_error(INCONSISTENT_GROUP_PROTOCOL, member_id)
        if member_id in group.pending:
            if len(group.members) >= config.group_members_max:
                return _join_error(GROUP_MAX_SIZE_REACHED)
            del group.pending[member_id]
            return self._add_member_and_rebalance(now, group, new_member, protocol_type)
        member = group.members.get(member_id)
        if member is None:
            return _join_error(UNKNOWN_MEMBER_ID, member_id)
        member.last_seen = now
        matches = member.protocols == member_protocols
        member.protocols = member_protocols
        member.protocol_names = names
        member.session_timeout_s = new_member.session_timeout_s
        member.rebalance_timeout_ms = new_member.rebalance_timeout_ms
        if group.state is GroupState.PREPARING_REBALANCE:
            return self._await_join(now, group, member)
        if group.state is GroupState.COMPLETING_REBALANCE:
            if matches:
                # It probably lost the JoinGroup answer: send it again.
                return self._join_result(group, member)
            self._prepare_rebalance(now, group, f"member {member_id} rejoined with new metadata")
            return self._await_join(now, group, member)
        assert group.state is GroupState.STABLE, group.state
        if group.leader == member_id or not matches:
            # A leader's JoinGroup asks for a rebalance (e.g. topic metadata
            # changed); new metadata needs one.
            self._prepare_rebalance(now, group, f"member {member_id} rejoined")
            return self._await_join(now, group, member)
        return self._join_result(group, member)

    def _replace_static_member(
        self, now: float, group: _Group, old: _Member, new: _Member
    ) -> JoinGroupResult | Pending:
        """A static member rejoined with no member id: the new id takes the old one's place.

        As Kafka's updateStaticMemberAndRebalance: the old member's waiting
        requests get FENCED_INSTANCE_ID, the assignment stays, and a Stable
        group (or one awaiting SyncGroup) rebalances only if the member's
        metadata for the group's protocol changed; the leader gets the members
        and skip_assignment, so it does not assign anew.
        """
        if old.awaiting_join:
            self._answer_join(group, old, _join_error(FENCED_INSTANCE_ID, old.member_id))
        if old.awaiting_sync:
            self._answer_sync(group, old, SyncGroupResult(FENCED_INSTANCE_ID))
        new.assignment = old.assignment
        assert new.group_instance_id is not None
        group.members = {
            (new.member_id if member_id == old.member_id else member_id): (
                new if member is old else member
            )
            for member_id, member in group.members.items()
        }
        if old.member_id in group.sync_pending:
            group.sync_pending.discard(old.member_id)
            group.sync_pending.add(new.member_id)
        if group.leader == old.member_id:
            group.leader = new.member_id
        group.static_members[new.group_instance_id] = new.member_id
        logger.info(
            "static member %s of group %s is back as %s (was %s)",
            printable(new.group_instance_id),
            printable(group.group_id),
            printable(new.member_id),
            printable(old.member_id),
        )
        self._timer_changed(group)
        if group.state is GroupState.PREPARING_REBALANCE:
            return self._await_join(now, group, new)
        assert group.protocol_name is not None, group.state
        if group.protocol_name in new.protocol_names and new.metadata(
            group.protocol_name
        ) == old.metadata(group.protocol_name):
            if group.state is GroupState.STABLE:
                return attrs.evolve(
                    self._join_result(group, new), skip_assignment=group.leader == new.member_id
                )
            return self._join_result(group, new)
        self._prepare_rebalance(now, group, f"static member {new.group_instance_id} changed")
        return self._await_join(now, group, new)

    def _supports(
        self, group: _Group, member_id: str | None, protocol_type: str, names: frozenset[str]
    ) -> bool:
        """Whether a member may (re)join offering ``names``: one must be supported by all others."""
        if not (protocol_type and names):
            return False
        others = [member for member in group.members.values() if member.member_id != member_id]
        if not others:
            return not group.members or group.protocol_type == protocol_type
        if group.protocol_type != protocol_type:
            return False
        return any(all(name in other.protocol_names for other in others) for name in names)

    def _create_group(self, group_id: str) -> _Group | None:
        if len(self._groups) + self.other_groups() >= self.config.groups_max:
            # Forget the oldest Empty group without pending members; its
            # committed offsets stay in the OffsetStore.
            evictable = next(
                (
                    old
                    for old in self._groups.values()
                    if old.state is GroupState.EMPTY and not old.pending
                ),
                None,
            )
            if evictable is None:
                group_log.warning(
                    "cannot create group %s: %d groups are active",
                    printable(group_id),
                    len(self._groups),
                )
                return None
            del self._groups[evictable.group_id]
            logger.info("forgot empty group %s to make room", printable(evictable.group_id))
        group = _Group(group_id)
        self._groups[group_id] = group
        return group

    def _add_member_and_rebalance(
        self, now: float, group: _Group, member: _Member, protocol_type: str
    ) -> Pending:
        if group.state is GroupState.PREPARING_REBALANCE and group.join_initial:
            group.new_member_added = True
        if not group.members:
            group.protocol_type = protocol_type
        group.members[member.member_id] = member
        if group.leader is None:
            group.leader = member.member_id
        logger.info(
            "member %s (client %s from %s) joins group %s",
            printable(member.member_id),
            printable(member.client_id),
            printable(member.client_host),
            printable(group.group_id),
        )
        if group.state is GroupState.PREPARING_REBALANCE:
            return self._await_join(now, group, member)
        member.awaiting_join = True
        self._prepare_rebalance(now, group, f"member {member.member_id} joined")
        return Pending(group.group_id, member.member_id, "join")

    def _await_join(self, now: float, group: _Group, member: _Member) -> Pending:
        assert group.state is GroupState.PREPARING_REBALANCE
        member.awaiting_join = True
        self._maybe_complete_join(now, group)
        return Pending(group.group_id, member.member_id, "join")

    def _join_result(self, group: _Group, member: _Member) -> JoinGroupResult:
        assert group.protocol_name is not None and group.leader is not None
        members: tuple[JoinGroupMember, ...] = ()
        if member.member_id == group.leader:
            members = tuple(
                JoinGroupMember(
                    other.member_id, other.group_instance_id, other.metadata(group.protocol_name)
                )
                for other in group.members.values()
            )
        return JoinGroupResult(
            NONE,
            generation_id=group.generation_id,
            protocol_type=group.protocol_type,
            protocol_name=group.protocol_name,
            leader=group.leader,
            member_id=member.member_id,
            members=members,
        )

    # --- Rebalance ------------------------------------------------------------------

    def _prepare_rebalance(self, now: float, group: _Group, reason: str) -> None:
        assert group.members, "an empty group has nothing to rebalance"
        assert group.state is not GroupState.PREPARING_REBALANCE
        if group.state is GroupState.COMPLETING_REBALANCE:
            # Followers waiting for the leader's assignment must rejoin instead.
            for member in group.members.values():
                member.assignment = b""
                if member.awaiting_sync:
                    self._answer_sync(group, member, SyncGroupResult(REBALANCE_IN_PROGRESS))
                    member.last_seen = now
        initial = group.state is GroupState.EMPTY
        timeout_ms = group.rebalance_timeout_ms()
        group.state = GroupState.PREPARING_REBALANCE
        # Members may change their protocols now; the vote at the end decides anew.
        group.protocol_name = None
        group.join_initial = initial
        group.new_member_added = False
        group.sync_pending.clear()
        group.sync_deadline = math.inf
        if initial:
            delay_ms = min(self.config.initial_rebalance_delay_ms, timeout_ms)
            group.join_remaining_ms = timeout_ms - delay_ms
            group.join_deadline = now + delay_ms / 1000
        else:
            group.join_deadline = now + timeout_ms / 1000
        logger.info(
            "preparing to rebalance group %s (generation %d): %s",
            printable(group.group_id),
            group.generation_id,
            printable(reason),
        )
        self._timer_changed(group)
        self._maybe_complete_join(now, group)

    def _maybe_complete_join(self, now: float, group: _Group) -> None:
        if group.state is not GroupState.PREPARING_REBALANCE:
            return
        if group.members:
            # A group that was Empty waits out its initial delay for more
            # members; others end the join phase once everyone has rejoined
            # and no member is still on its way in with a new id.
            if group.join_initial or group.pending:
                return
            if not all(member.awaiting_join for member in group.members.values()):
                return
        self._complete_join(now, group)

    def _complete_join(self, now: float, group: _Group) -> None:
        """End the join phase: drop who did not rejoin and start the next generation."""
        if group.state is GroupState.PREPARING_REBALANCE:
            for member in list(group.members.values()):
                if not member.awaiting_join:
                    logger.info(
                        "member %s of group %s did not rejoin in time; removing it",
                        printable(member.member_id),
                        printable(group.group_id),
                    )
                    self._drop_member(group, member)
        group.generation_id += 1
        group.sync_pending.clear()
        group.sync_deadline = math.inf
        group.join_deadline = math.inf
        if not group.members:
            group.state = GroupState.EMPTY
            group.protocol_name = None
            group.leader = None
            logger.info(
                "group %s is empty (generation %d)", printable(group.group_id), group.generation_id
            )
            self._timer_changed(group)
            return
        group.protocol_name = self._select_protocol(group)
        group.state = GroupState.COMPLETING_REBALANCE
        group.sync_pending = set(group.members)
        group.sync_deadline = now + group.rebalance_timeout_ms() / 1000
        assert group.leader in group.members
        for member in group.members.values():
            member.assignment = b""
            member.last_seen = now
            assert member.awaiting_join, "members that did not rejoin were removed"
            self._answer_join(group, member, self._join_result(group, member))
        logger.info(
            "group %s generation %d: %d members, protocol %s, leader %s",
            printable(group.group_id),
            group.generation_id,
            len(group.members),
            printable(group.protocol_name),
            printable(group.leader),
        )
        self._timer_changed(group)

    def _select_protocol(self, group: _Group) -> str:
        """Kafka's vote: each member votes for its favourite protocol that all support."""
        members = list(group.members.values())
        candidates = frozenset.intersection(*(member.protocol_names for member in members))
        assert candidates, "joins are refused unless every member shares a protocol"
        votes = Counter(
            next(name for name, _ in member.protocols if name in candidates) for member in members
        )
        most = max(votes.values())
        # Ties go to the leader's preference, so the choice is deterministic.
        assert group.leader is not None
        for name, _ in group.members[group.leader].protocols:
            if votes.get(name) == most:
                return name
        raise AssertionError("the leader supports every candidate protocol")

    def _drop_member(self, group: _Group, member: _Member) -> None:
        """Remove a member; the caller moves the group on (see _after_removal)."""
        if member.awaiting_join:
            self._answer_join(group, member, _join_error(UNKNOWN_MEMBER_ID))
        if member.awaiting_sync:
            self._answer_sync(group, member, SyncGroupResult(REBALANCE_IN_PROGRESS))
        del group.members[member.member_id]
        instance = member.group_instance_id
        if instance is not None and group.static_members.get(instance) == member.member_id:
            del group.static_members[instance]
        group.sync_pending.discard(member.member_id)
        if group.leader == member.member_id:
            group.leader = next(iter(group.members), None)

    def _remove_member(self, now: float, group: _Group, member: _Member, reason: str) -> None:
        self._drop_member(group, member)
        logger.info(
            "member %s %s; removed from group %s",
            printable(member.member_id),
            printable(reason),
            printable(group.group_id),
        )
        self._after_removal(now, group, f"member {member.member_id} {reason}")

    def _after_removal(self, now: float, group: _Group, reason: str) -> None:
        if not group.members:
            if group.state is not GroupState.EMPTY:
                self._complete_join(now, group)
        elif group.state in (GroupState.STABLE, GroupState.COMPLETING_REBALANCE):
            self._prepare_rebalance(now, group, reason)
        else:
            self._maybe_complete_join(now, group)

    # --- Deadlines ------------------------------------------------------------------

    def next_deadline(self, group_id: str) -> float | None:
        """When ``expire`` must next run for the group; None while it has nothing to time."""
        group = self._groups.get(group_id)
        if group is None:
            return None
        if not group.members and not group.pending:
            assert group.state is GroupState.EMPTY
            return None
        deadline = min(group.pending.values(), default=math.inf)
        if group.state is GroupState.PREPARING_REBALANCE:
            deadline = min(deadline, group.join_deadline)
        if group.sync_pending:
            deadline = min(deadline, group.sync_deadline)
        for member in group.members.values():
            if not member.kept_alive:
                deadline = min(deadline, member.session_deadline)
        return deadline

    def expire(self, group_id: str, now: float) -> None:
        """Act on every deadline of the group that ``now`` has reached."""
        group = self._groups.get(group_id)
        if group is None:
            return
        expired = [member_id for member_id, deadline in group.pending.items() if deadline <= now]
        for member_id in expired:
            del group.pending[member_id]
            logger.debug(
                "group %s: new member id %s was never used",
                printable(group.group_id),
                printable(member_id),
            )
        if group.state is GroupState.PREPARING_REBALANCE:
            if now >= group.join_deadline:
                delay_ms = min(self.config.initial_rebalance_delay_ms, group.join_remaining_ms)
                if group.join_initial and group.new_member_added and delay_ms > 0:
                    group.join_remaining_ms -= delay_ms
                    group.join_deadline = now + delay_ms / 1000
                    group.new_member_added = False
                else:
                    self._complete_join(now, group)
            elif expired:
                self._maybe_complete_join(now, group)
        if group.sync_pending and now >= group.sync_deadline:
            assert group.state in (GroupState.COMPLETING_REBALANCE, GroupState.STABLE)
            for member_id in sorted(group.sync_pending):
                logger.info(
                    "member %s of group %s did not sync in time; removing it",
                    printable(member_id),
                    printable(group.group_id),
                )
                self._drop_member(group, group.members[member_id])
            self._after_removal(now, group, "members did not sync in time")
        for member in list(group.members.values()):
            if (
                group.members.get(member.member_id) is member
                and not member.kept_alive
                and member.session_deadline <= now
            ):
                self._remove_member(now, group, member, "session timed out")

    # --- SyncGroup -------------------------------------------------------------------

    def sync(
        self,
        now: float,
        *,
        group_id: str,
        generation_id: int,
        member_id: str,
        assignments: Mapping[str, bytes],
        protocol_type: str | None,
        protocol_name: str | None,
        group_instance_id: str | None = None,
    ) -> SyncGroupResult | Pending:
        if self.closed:
            return SyncGroupResult(COORDINATOR_NOT_AVAILABLE)
        if not _valid_group_id(group_id):
            return SyncGroupResult(INVALID_GROUP_ID)
        group = self._groups.get(group_id)
        if group is not None and group.fenced(group_instance_id, member_id):
            return SyncGroupResult(FENCED_INSTANCE_ID)
        member = None if group is None else group.members.get(member_id)
        if group is None or member is None:
            return SyncGroupResult(UNKNOWN_MEMBER_ID)
        if generation_id != group.generation_id:
            return SyncGroupResult(ILLEGAL_GENERATION)
        if (protocol_type is not None and protocol_type != group.protocol_type) or (
            protocol_name is not None and protocol_name != group.protocol_name
        ):
            return SyncGroupResult(INCONSISTENT_GROUP_PROTOCOL)
        if group.state is GroupState.PREPARING_REBALANCE:
            return SyncGroupResult(REBALANCE_IN_PROGRESS)
        member.last_seen = now
        group.sync_pending.discard(member_id)
        if group.state is GroupState.STABLE:
            return self._sync_result(group, member)
        assert group.state is GroupState.COMPLETING_REBALANCE, group.state
        if member_id != group.leader:
            member.awaiting_sync = True
            return Pending(group.group_id, member.member_id, "sync")
        if any(
            len(assignment) > MEMBER_ASSIGNMENT_BYTES_MAX for assignment in assignments.values()
        ):
            return SyncGroupResult(INVALID_REQUEST)
        for each in group.members.values():
            each.assignment = bytes(assignments.get(each.member_id, b""))
        group.state = GroupState.STABLE
        for each in group.members.values():
            if each.awaiting_sync:
                self._answer_sync(group, each, self._sync_result(group, each))
                each.last_seen = now
        logger.info(
            "group %s generation %d is stable with %d members",
            printable(group.group_id),
            group.generation_id,
            len(group.members),
        )
        self._timer_changed(group)
        return self._sync_result(group, member)

    @staticmethod
    def _sync_result(group: _Group, member: _Member) -> SyncGroupResult:
        return SyncGroupResult(NONE, member.assignment, group.protocol_type, group.protocol_name)

    # --- Heartbeat, LeaveGroup, OffsetCommit ------------------------------------------

    def heartbeat(
        self,
        now: float,
        *,
        group_id: str,
        generation_id: int,
        member_id: str,
        group_instance_id: str | None = None,
    ) -> int:
        """Heartbeat: keep the member alive; REBALANCE_IN_PROGRESS tells it to rejoin."""
        if self.closed:
            return COORDINATOR_NOT_AVAILABLE
        if not _valid_group_id(group_id):
            return INVALID_GROUP_ID
        group = self._groups.get(group_id)
        if group is not None and group.fenced(group_instance_id, member_id):
            return FENCED_INSTANCE_ID
        member = None if group is None else group.members.get(member_id)
        if group is None or member is None:
            return UNKNOWN_MEMBER_ID
        if generation_id != group.generation_id:
            return ILLEGAL_GENERATION
        member.last_seen = now
        if group.state is GroupState.PREPARING_REBALANCE:
            return REBALANCE_IN_PROGRESS
        return NONE

    def leave(
        self,
        now: float,
        *,
        group_id: str,
        member_ids: Sequence[str],
        group_instance_ids: Sequence[str | None] = (),
    ) -> LeaveGroupResult:
        """LeaveGroup: remove members (v0-2 send one); the others rebalance.

        ``group_instance_ids`` (v3+, parallel to ``member_ids``): a static
        member may be named by its instance id alone (member id ""), as
        Kafka's admin tools remove one; a member id that does not hold the
        instance id it names is FENCED_INSTANCE_ID.
        """
        if self.closed:
            return LeaveGroupResult(COORDINATOR_NOT_AVAILABLE)
        if not _valid_group_id(group_id):
            return LeaveGroupResult(INVALID_GROUP_ID)
        group = self._groups.get(group_id)
        instances = list(group_instance_ids) or [None] * len(member_ids)
        assert len(instances) == len(member_ids)
        results = []
        for member_id, instance in zip(member_ids, instances, strict=True):
            error_code: int = UNKNOWN_MEMBER_ID
            if not member_id and instance is not None:
                holder = None if group is None else group.static_members.get(instance)
                if group is not None and holder is not None:
                    self._remove_member(now, group, group.members[holder], "was removed")
                    error_code = NONE
            elif group is not None and member_id in group.pending:
                del group.pending[member_id]
                logger.debug(
                    "group %s: new member id %s left", printable(group_id), printable(member_id)
                )
                self._maybe_complete_join(now, group)
                error_code = NONE
            elif group is not None and group.fenced(instance, member_id):
                error_code = FENCED_INSTANCE_ID
            elif group is not None and member_id in group.members:
                self._remove_member(now, group, group.members[member_id], "left")
                error_code = NONE
            results.append(LeaveGroupMemberResult(member_id, error_code))
        return LeaveGroupResult(NONE, tuple(results))

    def validate_offset_commit(
        self,
        now: float,
        *,
        group_id: str,
        generation_id: int,
        member_id: str,
        group_instance_id: str | None = None,
    ) -> int:
        """Whether an OffsetCommit may go ahead (NONE) or the Kafka error code to answer.

        A commit with a negative generation is a simple commit by a client
        outside group management: allowed while the group has no members.
        A member's commit counts as a heartbeat. As Kafka, commits are allowed
        while the group prepares a rebalance (a consumer commits from its
        partitions-revoked callback before rejoining) and refused with
        REBALANCE_IN_PROGRESS between JoinGroup and SyncGroup.
        """
        if self.closed:
            return COORDINATOR_NOT_AVAILABLE
        if not _valid_group_id(group_id):
            return INVALID_GROUP_ID
        group = self._groups.get(group_id)
        if group is None:
            return NONE if generation_id < 0 else ILLEGAL_GENERATION
        if group.fenced(group_instance_id, member_id):
            return FENCED_INSTANCE_ID
        if generation_id < 0 and not group.members:
            return NONE
        member = group.members.get(member_id)
        if member is None:
            return UNKNOWN_MEMBER_ID
        if generation_id != group.generation_id:
            return ILLEGAL_GENERATION
        if group.state is GroupState.COMPLETING_REBALANCE:
            return REBALANCE_IN_PROGRESS
        member.last_seen = now
        return NONE

    # --- DeleteGroups, OffsetDelete ------------------------------------------------------

    def delete_group(self, group_id: str) -> int | None:
        """Forget an Empty group (DeleteGroups): NONE, NON_EMPTY_GROUP, or None if unknown here.

        Its committed offsets are the caller's to delete; a group known only
        by them is None here.
        """
        if self.closed:
            return COORDINATOR_NOT_AVAILABLE
        group = self._groups.get(group_id)
        if group is None:
            return None
        if group.members or group.pending:
            return NON_EMPTY_GROUP
        del self._groups[group_id]
        logger.info("deleted group %s", printable(group_id))
        return NONE

    def has_group(self, group_id: str) -> bool:
        return group_id in self._groups

    def group_count(self) -> int:
        return len(self._groups)

    # --- conversion to and from the consumer protocol (KIP-848) -----------------------

    def export_group(self, group_id: str) -> ClassicGroupExport | None:
        """A group with members as the consumer protocol would take it over; None if none."""
        group = self._groups.get(group_id)
        if group is None or not group.members:
            return None
        return ClassicGroupExport(
            group_id,
            group.generation_id,
            group.protocol_type,
            tuple(
                ClassicMemberExport(
                    member.member_id,
                    member.group_instance_id,
                    member.client_id,
                    member.client_host,
                    round(member.session_timeout_s * 1000),
                    member.rebalance_timeout_ms,
                    member.protocols,
                    # Every protocol of a consumer carries the same subscription.
                    member.metadata(group.protocol_name)
                    if group.protocol_name is not None
                    else member.protocols[0][1],
                    member.assignment,
                )
                for member in group.members.values()
            ),
        )

    def surrender(self, group_id: str) -> None:
        """Hand a group over to the consumer protocol (Kafka 4.0's online upgrade): pending
        joins and syncs answer REBALANCE_IN_PROGRESS, so those members rejoin the
        converted group."""
        group = self._groups.pop(group_id)
        for member in group.members.values():
            if member.awaiting_join:
                self._answer_join(
                    group, member, _join_error(REBALANCE_IN_PROGRESS, member.member_id)
                )
            if member.awaiting_sync:
                self._answer_sync(group, member, SyncGroupResult(REBALANCE_IN_PROGRESS))
        logger.info("group %s moves to the consumer protocol", printable(group_id))

    def adopt(self, now: float, export: ClassicGroupExport) -> None:
        """Take over a group whose last consumer-protocol member left (Kafka 4.0's online
        downgrade): its classic members keep their assignments and rebalance at once."""
        assert export.group_id not in self._groups and export.members
        group = _Group(
            export.group_id,
            generation_id=export.generation_id,
            protocol_type=export.protocol_type,
        )
        for exported in export.members:
            member = _Member(
                member_id=exported.member_id,
                group_instance_id=exported.group_instance_id,
                client_id=exported.client_id,
                client_host=exported.client_host,
                session_timeout_s=exported.session_timeout_ms / 1000,
                rebalance_timeout_ms=exported.rebalance_timeout_ms,
                protocols=exported.protocols,
                protocol_names=frozenset(name for name, _ in exported.protocols),
                last_seen=now,
                assignment=exported.assignment,
            )
            group.members[member.member_id] = member
            if member.group_instance_id is not None:
                group.static_members[member.group_instance_id] = member.member_id
        group.leader = next(iter(group.members))
        group.state = GroupState.STABLE
        group.protocol_name = self._select_protocol(group)
        self._groups[group.group_id] = group
        self._prepare_rebalance(now, group, "converted from the consumer protocol")

    def offset_delete_check(self, group_id: str) -> tuple[int, frozenset[str] | None]:
        """Whether OffsetDelete may go ahead, and the topics it must not touch.

        As Kafka: offsets of a group with members may be deleted only when it
        uses the consumer protocol (NON_EMPTY_GROUP otherwise), and not for a
        topic a member subscribes to (None: the subscriptions are unreadable,
        so every topic counts as subscribed).
        """
        if self.closed:
            return COORDINATOR_NOT_AVAILABLE, frozenset()
        group = self._groups.get(group_id)
        if group is None or not group.members:
            return NONE, frozenset()
        if group.protocol_type != CONSUMER_PROTOCOL_TYPE:
            return NON_EMPTY_GROUP, frozenset()
        topics: set[str] = set()
        for member in group.members.values():
            # Every protocol a member offers: the one chosen next may be any.
            for _, metadata in member.protocols:
                found = subscribed_topics(metadata)
                if found is None:
                    return NONE, None
                topics |= found
        return NONE, frozenset(topics)

    # --- DescribeGroups, ListGroups --------------------------------------------------

    def describe_groups(
        self, group_ids: Iterable[str], committed_groups: Callable[[], Iterable[str]]
    ) -> list[GroupDescription]:
        """DescribeGroups; unknown groups are "Dead", groups with only offsets "Empty"."""
        descriptions = []
        offset_groups: set[str] | None = None
        for group_id in group_ids:
            if self.closed:
                descriptions.append(
                    GroupDescription(COORDINATOR_NOT_AVAILABLE, group_id, "", "", "")
                )
                continue
            group = self._groups.get(group_id)
            if group is not None:
                descriptions.append(self._describe(group))
                continue
            if offset_groups is None:
                offset_groups = set(committed_groups())
            state = GroupState.EMPTY if group_id in offset_groups else GroupState.DEAD
            descriptions.append(GroupDescription(NONE, group_id, state.value, "", ""))
        return descriptions

    @staticmethod
    def _describe(group: _Group) -> GroupDescription:
        stable = group.state is GroupState.STABLE
        members = []
        for member in group.members.values():
            metadata = assignment = b""
            if stable:
                assert group.protocol_name is not None
                metadata = member.metadata(group.protocol_name)
                assignment = member.assignment
            members.append(
                GroupMemberDescription(
                    member.member_id,
                    member.group_instance_id,
                    member.client_id,
                    member.client_host,
                    metadata,
                    assignment,
                )
            )
        return GroupDescription(
            NONE,
            group.group_id,
            group.state.value,
            group.protocol_type or "",
            (group.protocol_name or "") if stable else "",
            tuple(members),
            generation_id=group.generation_id,
            leader=group.leader or "",
        )

    def list_groups(
        self, committed_groups: Iterable[str], states: Collection[str] | None = None
    ) -> ListGroupsResult:
        """ListGroups, including groups known only by their committed offsets."""
        if self.closed:
            return ListGroupsResult(COORDINATOR_NOT_AVAILABLE)
        listings = {
            group_id: GroupListing(group_id, group.protocol_type or "", group.state.value)
            for group_id, group in self._groups.items()
        }
        for group_id in committed_groups:
            if group_id not in listings:
                listings[group_id] = GroupListing(group_id, "", GroupState.EMPTY.value)
        # Case-insensitive, as Kafka's filter (KIP-518).
        wanted = {state.lower() for state in states} if states else None
        return ListGroupsResult(
            NONE,
            tuple(
                listing
                for _, listing in sorted(listings.items())
                if wanted is None or listing.state.lower() in wanted
            ),
        )

    # --- Checks ---------------------------------------------------------------------

    def groups_with_deadlines(self) -> list[str]:
        """Groups that need a timer (members or pending members)."""
        return [g.group_id for g in self._groups.values() if g.members or g.pending]

    def assert_invariants(self) -> None:
        """Check the state machine's invariants (tests call this after every step)."""
        for group_id, group in self._groups.items():
            assert group.group_id == group_id
            assert (group.state is GroupState.EMPTY) == (not group.members), group
            assert group.state is not GroupState.DEAD
            assert group.generation_id >= 0
            if group.members:
                assert group.leader in group.members
                assert group.protocol_type
            else:
                assert group.leader is None
            assert (group.protocol_name is not None) == (
                group.state in (GroupState.COMPLETING_REBALANCE, GroupState.STABLE)
            )
            assert group.sync_pending <= set(group.members)
            for instance, holder in group.static_members.items():
                assert group.members[holder].group_instance_id == instance
            assert len(group.static_members) == sum(
                member.group_instance_id is not None for member in group.members.values()
            )
            assert not set(group.pending) & set(group.members)
            for member in group.members.values():
                if member.awaiting_join:
                    assert group.state is GroupState.PREPARING_REBALANCE
                if member.awaiting_sync:
                    assert group.state is GroupState.COMPLETING_REBALANCE
                if group.protocol_name is not None:
                    assert group.protocol_name in member.protocol_names
            if group.members:
                assert frozenset.intersection(
                    *(member.protocol_names for member in group.members.values())
                )

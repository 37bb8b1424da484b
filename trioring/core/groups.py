"""GroupCoordinator: Kafka's classic consumer-group protocol for one shard's groups.

Members join (JoinGroup), the broker picks the protocol they all support and
names a leader, the leader computes the assignment on the client side and
hands it back (SyncGroup), and the broker relays each member its share.
Heartbeats keep members alive; a member that falls silent for its session
timeout is removed and the others rebalance. Committed offsets live in the
OffsetStore; the coordinator only says whether a commit is allowed.

The state machine follows Kafka's GroupCoordinator/GroupMetadata (states
Empty, PreparingRebalance, CompletingRebalance, Stable; "Dead" only in answers
about groups we do not know). Every state change is synchronous code; the only
awaits are a caller waiting for its JoinGroup or SyncGroup answer and one
timer task per group with something to time (session timeouts, rebalance and
sync deadlines, pending members). Deadlines use Trio's clock, so tests run
them in virtual time.

A caller cancelled while waiting (the client disconnected) leaves the group as
it was: as in Kafka, which does not see disconnects, its join or sync stays
registered and the member stays until its session times out.
"""

from __future__ import annotations

import enum
import logging
import math
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Generic, Protocol, TypeVar

import attrs
import trio

from trioring._constants import FRAME_BYTES_MAX_DEFAULT, GROUP_NAME_LENGTH_MAX, MIB
from trioring._logging import RateLimitedLogger, printable
from trioring.errors import InvalidArgumentError

__all__ = [
    "GroupConfig",
    "GroupCoordinator",
    "GroupDescription",
    "GroupListing",
    "GroupMemberDescription",
    "GroupState",
    "JoinGroupMember",
    "JoinGroupResult",
    "LeaveGroupMemberResult",
    "LeaveGroupResult",
    "ListGroupsResult",
    "SyncGroupResult",
]

logger = logging.getLogger("trioring.groups")
#: Lines a client can cause by the thousand (groups it cannot create).
group_log = RateLimitedLogger(logger)

# --- Limits ------------------------------------------------------------------------
# These belong in trioring/_constants.py with the other limits; they live here
# until that file's owner moves them.

#: Members of one group, by default (Kafka: group.max.size, unbounded there).
GROUP_MEMBERS_MAX_DEFAULT = 1000
#: Groups one coordinator keeps in memory, by default. At the limit the oldest
#: Empty group is forgotten to make room (its committed offsets stay).
GROUPS_MAX_DEFAULT = 10_000
#: Protocols (assignors) one member may offer; real clients offer one to three.
GROUP_PROTOCOLS_MAX = 64
#: Bytes of one member's protocol metadata, all its protocols together.
MEMBER_METADATA_BYTES_MAX = 1 * MIB
#: Bytes of the assignment the leader gives one member.
MEMBER_ASSIGNMENT_BYTES_MAX = 1 * MIB
#: Characters of a client-chosen string the coordinator keeps (client id and
#: host, instance id, protocol type and names): Kafka's int16 string limit.
GROUP_STRING_LENGTH_MAX = 32_767

assert GROUP_MEMBERS_MAX_DEFAULT >= 1
assert GROUPS_MAX_DEFAULT >= 1
# One member's metadata or assignment must fit in a request frame.
assert MEMBER_METADATA_BYTES_MAX < FRAME_BYTES_MAX_DEFAULT
assert MEMBER_ASSIGNMENT_BYTES_MAX < FRAME_BYTES_MAX_DEFAULT

# --- Kafka error codes -------------------------------------------------------------
NONE = 0
COORDINATOR_NOT_AVAILABLE = 15
ILLEGAL_GENERATION = 22
INCONSISTENT_GROUP_PROTOCOL = 23
INVALID_GROUP_ID = 24
UNKNOWN_MEMBER_ID = 25
INVALID_SESSION_TIMEOUT = 26
REBALANCE_IN_PROGRESS = 27
INVALID_REQUEST = 42
MEMBER_ID_REQUIRED = 79
GROUP_MAX_SIZE_REACHED = 81

#: generation_id of "no generation" (Kafka's NoGeneration).
NO_GENERATION = -1
#: JoinGroup v4 is the first that asks an unknown member to rejoin with an id.
_JOIN_MEMBER_ID_REQUIRED_VERSION = 4


class GroupState(enum.Enum):
    """Kafka's group states; the value is the string DescribeGroups and ListGroups send."""

    EMPTY = "Empty"
    PREPARING_REBALANCE = "PreparingRebalance"
    COMPLETING_REBALANCE = "CompletingRebalance"
    STABLE = "Stable"
    DEAD = "Dead"


def _non_negative(name: str) -> Callable[[object, attrs.Attribute[int], int], None]:
    def check(_instance: object, _attribute: attrs.Attribute[int], value: int) -> None:
        if not isinstance(value, int) or value < 0:
            raise InvalidArgumentError(f"{name} must be a non-negative integer, not {value!r}")

    return check


def _positive(name: str) -> Callable[[object, attrs.Attribute[int], int], None]:
    def check(_instance: object, _attribute: attrs.Attribute[int], value: int) -> None:
        if not isinstance(value, int) or value <= 0:
            raise InvalidArgumentError(f"{name} must be a positive integer, not {value!r}")

    return check


@attrs.frozen
class GroupConfig:
    """Settings of the group coordinator; Kafka's broker settings of the same names."""

    #: Shortest session timeout a member may ask for (group.min.session.timeout.ms).
    group_min_session_timeout_ms: int = attrs.field(
        default=6_000, validator=_positive("group_min_session_timeout_ms")
    )
    #: Longest session timeout a member may ask for (group.max.session.timeout.ms).
    group_max_session_timeout_ms: int = attrs.field(
        default=1_800_000, validator=_positive("group_max_session_timeout_ms")
    )
    #: How long the first rebalance of an Empty group waits for more members,
    #: extended by each newcomer up to the rebalance timeout
    #: (group.initial.rebalance.delay.ms; Kafka's 3000 is too slow for a
    #: single consumer that must be stable within a second).
    initial_rebalance_delay_ms: int = attrs.field(
        default=300, validator=_non_negative("initial_rebalance_delay_ms")
    )
    #: Members of one group (group.max.size).
    group_members_max: int = attrs.field(
        default=GROUP_MEMBERS_MAX_DEFAULT, validator=_positive("group_members_max")
    )
    #: Groups kept in memory; the oldest Empty group is forgotten past it.
    groups_max: int = attrs.field(default=GROUPS_MAX_DEFAULT, validator=_positive("groups_max"))

    def __attrs_post_init__(self) -> None:
        if self.group_min_session_timeout_ms > self.group_max_session_timeout_ms:
            raise InvalidArgumentError(
                f"group_min_session_timeout_ms ({self.group_min_session_timeout_ms}) is larger "
                f"than group_max_session_timeout_ms ({self.group_max_session_timeout_ms})"
            )


# --- Results -------------------------------------------------------------------------


@attrs.frozen
class JoinGroupMember:
    member_id: str
    group_instance_id: str | None
    metadata: bytes


@attrs.frozen
class JoinGroupResult:
    """The JoinGroup answer; ``members`` is filled for the leader only.

    ``protocol_type`` / ``protocol_name`` are None when there is none (errors);
    JoinGroup v0-6 send "" for None.
    """

    error_code: int
    generation_id: int = NO_GENERATION
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader: str = ""
    member_id: str = ""
    members: tuple[JoinGroupMember, ...] = ()


@attrs.frozen
class SyncGroupResult:
    error_code: int
    assignment: bytes = b""
    protocol_type: str | None = None
    protocol_name: str | None = None


@attrs.frozen
class LeaveGroupMemberResult:
    member_id: str
    error_code: int


@attrs.frozen
class LeaveGroupResult:
    """``error_code`` is for the whole request; each member has its own.

    LeaveGroup v0-2 carry one member and one error: send that member's code.
    """

    error_code: int
    members: tuple[LeaveGroupMemberResult, ...] = ()


@attrs.frozen
class GroupMemberDescription:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    #: Metadata for the chosen protocol; empty unless the group is Stable (as Kafka).
    metadata: bytes
    #: Empty unless the group is Stable (as Kafka).
    assignment: bytes


@attrs.frozen
class GroupDescription:
    """One group of a DescribeGroups answer.

    ``generation_id`` and ``leader`` are not in the DescribeGroups response;
    they are here for tools and tests.
    """

    error_code: int
    group_id: str
    state: str
    protocol_type: str
    #: The chosen protocol's name while Stable, else "" (as Kafka).
    protocol_data: str
    members: tuple[GroupMemberDescription, ...] = ()
    generation_id: int = NO_GENERATION
    leader: str = ""


@attrs.frozen
class GroupListing:
    group_id: str
    protocol_type: str
    state: str


@attrs.frozen
class ListGroupsResult:
    error_code: int
    groups: tuple[GroupListing, ...] = ()


class CommittedGroups(Protocol):
    """What the coordinator needs of the OffsetStore: the groups with committed offsets."""

    def groups(self) -> Iterable[str]: ...


# --- Internal state ----------------------------------------------------------------

_T = TypeVar("_T")


class _Waiter(Generic[_T]):
    """An answer some callers wait for; resolved once."""

    __slots__ = ("event", "result")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.result: _T | None = None

    def resolve(self, result: _T) -> None:
        assert not self.event.is_set(), "a waiter is resolved once"
        self.result = result
        self.event.set()

    async def wait(self) -> _T:
        await self.event.wait()
        assert self.result is not None
        return self.result


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
    #: Set while the member awaits the end of the join phase (Kafka: awaitingJoinCallback).
    join_waiter: _Waiter[JoinGroupResult] | None = None
    #: Set while a follower awaits the leader's assignment (Kafka: awaitingSyncCallback).
    sync_waiter: _Waiter[SyncGroupResult] | None = None

    def metadata(self, protocol: str) -> bytes:
        for name, metadata in self.protocols:
            if name == protocol:
                return metadata
        raise AssertionError(f"member {self.member_id} does not support protocol {protocol}")

    @property
    def kept_alive(self) -> bool:
        # As Kafka's shouldKeepAlive: a member waiting for the coordinator
        # cannot heartbeat, so its session does not run meanwhile.
        return self.join_waiter is not None or self.sync_waiter is not None

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
    # The group's timer task (see GroupCoordinator._run_timer).
    timer_running: bool = False
    timer_deadline: float = -math.inf
    timer_wakeup: trio.Event = attrs.Factory(trio.Event)

    def rebalance_timeout_ms(self) -> int:
        return max((member.rebalance_timeout_ms for member in self.members.values()), default=0)


def _new_member_id(client_id: str) -> str:
    return f"{client_id}-{uuid.uuid4()}"


def _join_error(error_code: int, member_id: str = "") -> JoinGroupResult:
    return JoinGroupResult(error_code, member_id=member_id)


def _valid_group_id(group_id: str) -> bool:
    return isinstance(group_id, str) and 0 < len(group_id) <= GROUP_NAME_LENGTH_MAX


class GroupCoordinator:
    """All consumer groups of one shard.

    Open it with :meth:`open`; the context owns the timer tasks. JoinGroup and
    SyncGroup are async (they wait for other members); everything else
    answers at once and is synchronous.
    """

    def __init__(
        self,
        config: GroupConfig,
        offsets: CommittedGroups,
        nursery: trio.Nursery,
        new_member_id: Callable[[str], str] = _new_member_id,
    ) -> None:
        self.config = config
        self._offsets = offsets
        self._nursery = nursery
        self._new_member_id = new_member_id
        self._groups: dict[str, _Group] = {}
        self._closed = False

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        config: GroupConfig | None = None,
        *,
        offsets: CommittedGroups,
        new_member_id: Callable[[str], str] = _new_member_id,
    ) -> AsyncIterator[GroupCoordinator]:
        """Run a coordinator for the duration of the ``async with`` block.

        On exit every waiting JoinGroup/SyncGroup answers
        COORDINATOR_NOT_AVAILABLE (clients look for the coordinator again) and
        the timers stop.
        """
        async with trio.open_nursery() as nursery:
            coordinator = cls(config or GroupConfig(), offsets, nursery, new_member_id)
            try:
                yield coordinator
            finally:
                coordinator._close()
                nursery.cancel_scope.cancel()

    def _close(self) -> None:
        self._closed = True
        closed_join = _join_error(COORDINATOR_NOT_AVAILABLE)
        closed_sync = SyncGroupResult(COORDINATOR_NOT_AVAILABLE)
        for group in self._groups.values():
            for member in group.members.values():
                if member.join_waiter is not None:
                    member.join_waiter.resolve(closed_join)
                    member.join_waiter = None
                if member.sync_waiter is not None:
                    member.sync_waiter.resolve(closed_sync)
                    member.sync_waiter = None
        logger.debug("group coordinator closed with %d groups", len(self._groups))

    # --- JoinGroup --------------------------------------------------------------------

    async def join_group(
        self,
        *,
        group_id: str,
        member_id: str,
        protocol_type: str,
        protocols: Sequence[tuple[str, bytes]],
        session_timeout_ms: int,
        rebalance_timeout_ms: int | None = None,
        group_instance_id: str | None = None,
        client_id: str,
        client_host: str,
        api_version: int,
    ) -> JoinGroupResult:
        """JoinGroup: wait until the join phase ends and answer with the new generation.

        ``rebalance_timeout_ms`` None (JoinGroup v0) means the session
        timeout, as Kafka. ``group_instance_id`` is accepted and reported but
        static membership is not implemented: every member is dynamic.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        outcome = self._join(
            group_id=group_id,
            member_id=member_id,
            protocol_type=protocol_type,
            protocols=protocols,
            session_timeout_ms=session_timeout_ms,
            rebalance_timeout_ms=(
                session_timeout_ms if rebalance_timeout_ms is None else rebalance_timeout_ms
            ),
            group_instance_id=group_instance_id,
            client_id=client_id,
            client_host=client_host,
            api_version=api_version,
        )
        if isinstance(outcome, JoinGroupResult):
            await trio.lowlevel.cancel_shielded_checkpoint()
            return outcome
        return await outcome.wait()

    def _join(
        self,
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
    ) -> JoinGroupResult | _Waiter[JoinGroupResult]:
        if self._closed:
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
        now = trio.current_time()
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
            if not self._supports(group, None, protocol_type, names):
                return _join_error(INCONSISTENT_GROUP_PROTOCOL)
            if len(group.members) >= config.group_members_max:
                return _join_error(GROUP_MAX_SIZE_REACHED)
            new_member.member_id = self._new_member_id(client_id)
            assert new_member.member_id, "member ids are non-empty"
            assert new_member.member_id not in group.members
            assert new_member.member_id not in group.pending
            if api_version >= _JOIN_MEMBER_ID_REQUIRED_VERSION:
                if len(group.pending) >= config.group_members_max:
                    return _join_error(GROUP_MAX_SIZE_REACHED)
                deadline = now + new_member.session_timeout_s
                group.pending[new_member.member_id] = deadline
                logger.debug(
                    "group %s: new member id %s for client %s must rejoin with it",
                    group_id,
                    new_member.member_id,
                    client_id,
                )
                self._wake_timer(group, deadline)
                return _join_error(MEMBER_ID_REQUIRED, new_member.member_id)
            return self._add_member_and_rebalance(group, new_member, protocol_type)

        if group is None:
            return _join_error(UNKNOWN_MEMBER_ID, member_id)
        if not self._supports(group, member_id, protocol_type, names):
            return _join_error(INCONSISTENT_GROUP_PROTOCOL, member_id)
        if member_id in group.pending:
            if len(group.members) >= config.group_members_max:
                return _join_error(GROUP_MAX_SIZE_REACHED)
            del group.pending[member_id]
            return self._add_member_and_rebalance(group, new_member, protocol_type)
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
            return self._await_join(group, member)
        if group.state is GroupState.COMPLETING_REBALANCE:
            if matches:
                # It probably lost the JoinGroup answer: send it again.
                return self._join_result(group, member)
            self._prepare_rebalance(group, f"member {member_id} rejoined with new metadata")
            return self._await_join(group, member)
        assert group.state is GroupState.STABLE, group.state
        if group.leader == member_id or not matches:
            # A leader's JoinGroup asks for a rebalance (e.g. topic metadata
            # changed); new metadata needs one.
            self._prepare_rebalance(group, f"member {member_id} rejoined")
            return self._await_join(group, member)
        return self._join_result(group, member)

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
        if len(self._groups) >= self.config.groups_max:
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
                logger.warning(
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
        self, group: _Group, member: _Member, protocol_type: str
    ) -> _Waiter[JoinGroupResult]:
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
            waiter = self._await_join(group, member)
        else:
            member.join_waiter = _Waiter()
            waiter = member.join_waiter
            self._prepare_rebalance(group, f"member {member.member_id} joined")
        return waiter

    def _await_join(self, group: _Group, member: _Member) -> _Waiter[JoinGroupResult]:
        assert group.state is GroupState.PREPARING_REBALANCE
        if member.join_waiter is None:
            member.join_waiter = _Waiter()
        waiter = member.join_waiter
        self._maybe_complete_join(group)
        return waiter

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

    def _prepare_rebalance(self, group: _Group, reason: str) -> None:
        assert group.members, "an empty group has nothing to rebalance"
        assert group.state is not GroupState.PREPARING_REBALANCE
        now = trio.current_time()
        if group.state is GroupState.COMPLETING_REBALANCE:
            # Followers waiting for the leader's assignment must rejoin instead.
            for member in group.members.values():
                member.assignment = b""
                if member.sync_waiter is not None:
                    member.sync_waiter.resolve(SyncGroupResult(REBALANCE_IN_PROGRESS))
                    member.sync_waiter = None
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
        self._wake_timer(group)
        self._maybe_complete_join(group)

    def _maybe_complete_join(self, group: _Group) -> None:
        if group.state is not GroupState.PREPARING_REBALANCE:
            return
        if group.members:
            # A group that was Empty waits out its initial delay for more
            # members; others end the join phase once everyone has rejoined
            # and no member is still on its way in with a new id.
            if group.join_initial or group.pending:
                return
            if not all(member.join_waiter is not None for member in group.members.values()):
                return
        self._complete_join(group)

    def _complete_join(self, group: _Group) -> None:
        """End the join phase: drop who did not rejoin and start the next generation."""
        now = trio.current_time()
        if group.state is GroupState.PREPARING_REBALANCE:
            for member in list(group.members.values()):
                if member.join_waiter is None:
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
            self._wake_timer(group)
            return
        group.protocol_name = self._select_protocol(group)
        group.state = GroupState.COMPLETING_REBALANCE
        group.sync_pending = set(group.members)
        group.sync_deadline = now + group.rebalance_timeout_ms() / 1000
        assert group.leader in group.members
        for member in group.members.values():
            member.assignment = b""
            member.last_seen = now
            waiter = member.join_waiter
            member.join_waiter = None
            assert waiter is not None, "members that did not rejoin were removed"
            waiter.resolve(self._join_result(group, member))
        logger.info(
            "group %s generation %d: %d members, protocol %s, leader %s",
            printable(group.group_id),
            group.generation_id,
            len(group.members),
            printable(group.protocol_name),
            printable(group.leader),
        )
        self._wake_timer(group)

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
        if member.join_waiter is not None:
            member.join_waiter.resolve(_join_error(UNKNOWN_MEMBER_ID))
            member.join_waiter = None
        if member.sync_waiter is not None:
            member.sync_waiter.resolve(SyncGroupResult(REBALANCE_IN_PROGRESS))
            member.sync_waiter = None
        del group.members[member.member_id]
        group.sync_pending.discard(member.member_id)
        if group.leader == member.member_id:
            group.leader = next(iter(group.members), None)

    def _remove_member(self, group: _Group, member: _Member, reason: str) -> None:
        self._drop_member(group, member)
        logger.info(
            "member %s %s; removed from group %s",
            printable(member.member_id),
            printable(reason),
            printable(group.group_id),
        )
        self._after_removal(group, f"member {member.member_id} {reason}")

    def _after_removal(self, group: _Group, reason: str) -> None:
        if not group.members:
            if group.state is not GroupState.EMPTY:
                self._complete_join(group)
        elif group.state in (GroupState.STABLE, GroupState.COMPLETING_REBALANCE):
            self._prepare_rebalance(group, reason)
        else:
            self._maybe_complete_join(group)

    # --- Timers ---------------------------------------------------------------------

    def _wake_timer(self, group: _Group, deadline: float = -math.inf) -> None:
        """Make the group's timer task notice a deadline (default: recompute all)."""
        if self._closed:
            return
        if not group.timer_running:
            group.timer_running = True
            group.timer_deadline = -math.inf
            self._nursery.start_soon(self._run_timer, group, name=f"group {group.group_id} timer")
        elif deadline < group.timer_deadline:
            group.timer_deadline = -math.inf
            group.timer_wakeup.set()

    async def _run_timer(self, group: _Group) -> None:
        """Expire what is due, then sleep until the next deadline or a state change.

        Runs while the group has members or pending members; a heartbeat only
        moves a deadline later, so it needs no wake-up.
        """
        try:
            while True:
                now = trio.current_time()
                self._expire(group, now)
                deadline = self._next_deadline(group)
                if deadline is None:
                    return
                # Each pass handles every due deadline, so the loop never spins.
                assert deadline > now, (group.group_id, group.state, deadline, now)
                group.timer_deadline = deadline
                group.timer_wakeup = trio.Event()
                with trio.move_on_at(deadline):
                    await group.timer_wakeup.wait()
                group.timer_deadline = -math.inf
        finally:
            group.timer_running = False

    def _next_deadline(self, group: _Group) -> float | None:
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

    def _expire(self, group: _Group, now: float) -> None:
        expired = [member_id for member_id, deadline in group.pending.items() if deadline <= now]
        for member_id in expired:
            del group.pending[member_id]
            logger.debug("group %s: new member id %s was never used", group.group_id, member_id)
        if group.state is GroupState.PREPARING_REBALANCE:
            if now >= group.join_deadline:
                delay_ms = min(self.config.initial_rebalance_delay_ms, group.join_remaining_ms)
                if group.join_initial and group.new_member_added and delay_ms > 0:
                    group.join_remaining_ms -= delay_ms
                    group.join_deadline = now + delay_ms / 1000
                    group.new_member_added = False
                else:
                    self._complete_join(group)
            elif expired:
                self._maybe_complete_join(group)
        if group.sync_pending and now >= group.sync_deadline:
            assert group.state in (GroupState.COMPLETING_REBALANCE, GroupState.STABLE)
            for member_id in sorted(group.sync_pending):
                logger.info(
                    "member %s of group %s did not sync in time; removing it",
                    printable(member_id),
                    printable(group.group_id),
                )
                self._drop_member(group, group.members[member_id])
            self._after_removal(group, "members did not sync in time")
        for member in list(group.members.values()):
            if (
                group.members.get(member.member_id) is member
                and not member.kept_alive
                and member.session_deadline <= now
            ):
                self._remove_member(group, member, "session timed out")

    # --- SyncGroup -------------------------------------------------------------------

    async def sync_group(
        self,
        *,
        group_id: str,
        generation_id: int,
        member_id: str,
        assignments: Mapping[str, bytes],
        group_instance_id: str | None = None,
        protocol_type: str | None = None,
        protocol_name: str | None = None,
    ) -> SyncGroupResult:
        """SyncGroup: the leader hands in the assignment; every member gets its share.

        A follower waits for the leader's SyncGroup. ``protocol_type`` and
        ``protocol_name`` (v5+) are checked when given.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        outcome = self._sync(
            group_id=group_id,
            generation_id=generation_id,
            member_id=member_id,
            assignments=assignments,
            protocol_type=protocol_type,
            protocol_name=protocol_name,
        )
        if isinstance(outcome, SyncGroupResult):
            await trio.lowlevel.cancel_shielded_checkpoint()
            return outcome
        return await outcome.wait()

    def _sync(
        self,
        *,
        group_id: str,
        generation_id: int,
        member_id: str,
        assignments: Mapping[str, bytes],
        protocol_type: str | None,
        protocol_name: str | None,
    ) -> SyncGroupResult | _Waiter[SyncGroupResult]:
        if self._closed:
            return SyncGroupResult(COORDINATOR_NOT_AVAILABLE)
        if not _valid_group_id(group_id):
            return SyncGroupResult(INVALID_GROUP_ID)
        group = self._groups.get(group_id)
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
        now = trio.current_time()
        member.last_seen = now
        group.sync_pending.discard(member_id)
        if group.state is GroupState.STABLE:
            return self._sync_result(group, member)
        assert group.state is GroupState.COMPLETING_REBALANCE, group.state
        if member_id != group.leader:
            if member.sync_waiter is None:
                member.sync_waiter = _Waiter()
            return member.sync_waiter
        if any(
            len(assignment) > MEMBER_ASSIGNMENT_BYTES_MAX for assignment in assignments.values()
        ):
            return SyncGroupResult(INVALID_REQUEST)
        for each in group.members.values():
            each.assignment = bytes(assignments.get(each.member_id, b""))
        group.state = GroupState.STABLE
        for each in group.members.values():
            if each.sync_waiter is not None:
                each.sync_waiter.resolve(self._sync_result(group, each))
                each.sync_waiter = None
                each.last_seen = now
        logger.info(
            "group %s generation %d is stable with %d members",
            printable(group.group_id),
            group.generation_id,
            len(group.members),
        )
        self._wake_timer(group)
        return self._sync_result(group, member)

    @staticmethod
    def _sync_result(group: _Group, member: _Member) -> SyncGroupResult:
        return SyncGroupResult(NONE, member.assignment, group.protocol_type, group.protocol_name)

    # --- Heartbeat, LeaveGroup, OffsetCommit ------------------------------------------

    def heartbeat(
        self,
        *,
        group_id: str,
        generation_id: int,
        member_id: str,
        group_instance_id: str | None = None,
    ) -> int:
        """Heartbeat: keep the member alive; REBALANCE_IN_PROGRESS tells it to rejoin."""
        if self._closed:
            return COORDINATOR_NOT_AVAILABLE
        if not _valid_group_id(group_id):
            return INVALID_GROUP_ID
        group = self._groups.get(group_id)
        member = None if group is None else group.members.get(member_id)
        if group is None or member is None:
            return UNKNOWN_MEMBER_ID
        if generation_id != group.generation_id:
            return ILLEGAL_GENERATION
        member.last_seen = trio.current_time()
        if group.state is GroupState.PREPARING_REBALANCE:
            return REBALANCE_IN_PROGRESS
        return NONE

    def leave_group(self, *, group_id: str, member_ids: Sequence[str]) -> LeaveGroupResult:
        """LeaveGroup: remove members (v0-2 send one); the others rebalance."""
        if self._closed:
            return LeaveGroupResult(COORDINATOR_NOT_AVAILABLE)
        if not _valid_group_id(group_id):
            return LeaveGroupResult(INVALID_GROUP_ID)
        group = self._groups.get(group_id)
        results = []
        for member_id in member_ids:
            error_code = UNKNOWN_MEMBER_ID
            if group is not None and member_id in group.pending:
                del group.pending[member_id]
                logger.debug("group %s: new member id %s left", group_id, member_id)
                self._maybe_complete_join(group)
                error_code = NONE
            elif group is not None and member_id in group.members:
                self._remove_member(group, group.members[member_id], "left")
                error_code = NONE
            results.append(LeaveGroupMemberResult(member_id, error_code))
        return LeaveGroupResult(NONE, tuple(results))

    def validate_offset_commit(
        self,
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
        if self._closed:
            return COORDINATOR_NOT_AVAILABLE
        if not _valid_group_id(group_id):
            return INVALID_GROUP_ID
        group = self._groups.get(group_id)
        if group is None:
            return NONE if generation_id < 0 else ILLEGAL_GENERATION
        if generation_id < 0 and not group.members:
            return NONE
        member = group.members.get(member_id)
        if member is None:
            return UNKNOWN_MEMBER_ID
        if generation_id != group.generation_id:
            return ILLEGAL_GENERATION
        if group.state is GroupState.COMPLETING_REBALANCE:
            return REBALANCE_IN_PROGRESS
        member.last_seen = trio.current_time()
        return NONE

    # --- DescribeGroups, ListGroups --------------------------------------------------

    def describe_groups(self, group_ids: Iterable[str]) -> list[GroupDescription]:
        """DescribeGroups; unknown groups are "Dead", groups with only offsets "Empty"."""
        descriptions = []
        offset_groups: set[str] | None = None
        for group_id in group_ids:
            if self._closed:
                descriptions.append(
                    GroupDescription(COORDINATOR_NOT_AVAILABLE, group_id, "", "", "")
                )
                continue
            group = self._groups.get(group_id)
            if group is not None:
                descriptions.append(self._describe(group))
                continue
            if offset_groups is None:
                offset_groups = set(self._offsets.groups())
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

    def list_groups(self, states: Collection[str] | None = None) -> ListGroupsResult:
        """ListGroups, including groups known only by their committed offsets.

        ``states`` (ListGroups v4) keeps the groups in those states; None or
        empty keeps all.
        """
        if self._closed:
            return ListGroupsResult(COORDINATOR_NOT_AVAILABLE)
        listings = {
            group_id: GroupListing(group_id, group.protocol_type or "", group.state.value)
            for group_id, group in self._groups.items()
        }
        for group_id in self._offsets.groups():
            if group_id not in listings:
                listings[group_id] = GroupListing(group_id, "", GroupState.EMPTY.value)
        wanted = set(states) if states else None
        return ListGroupsResult(
            NONE,
            tuple(
                listing
                for _, listing in sorted(listings.items())
                if wanted is None or listing.state in wanted
            ),
        )

    # --- Checks ---------------------------------------------------------------------

    def _assert_invariants(self) -> None:
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
            assert not set(group.pending) & set(group.members)
            if group.members or group.pending:
                assert group.timer_running or self._closed
            for member in group.members.values():
                if member.join_waiter is not None:
                    assert group.state is GroupState.PREPARING_REBALANCE
                    assert not member.join_waiter.event.is_set()
                if member.sync_waiter is not None:
                    assert group.state is GroupState.COMPLETING_REBALANCE
                    assert not member.sync_waiter.event.is_set()
                if group.protocol_name is not None:
                    assert group.protocol_name in member.protocol_names
            if group.members:
                assert frozenset.intersection(
                    *(member.protocol_names for member in group.members.values())
                )

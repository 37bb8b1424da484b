"""GroupCoordinator: the group state machine on Trio's clock, with waiters and timers.

The state machine (``state.py``) decides; this module only waits. A
JoinGroup or SyncGroup that must wait for other members parks on a waiter
keyed by (group, member, kind) until the state machine answers it; each
group with something to time (session timeouts, rebalance and sync
deadlines, pending members) has one timer task that sleeps until its next
deadline and lets the state machine expire what is due. Deadlines use
Trio's clock, so tests run them in virtual time.

A caller cancelled while waiting (the client disconnected) leaves the group
as it was: as in Kafka, which does not see disconnects, its join or sync
stays registered and the member stays until its session times out.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Generic, Protocol, TypeVar

import trio
from kio.schema.errors import ErrorCode

from trioring.cluster.model import ClusterMetadata
from trioring.config import GroupConfig
from trioring.core.groups.consumer import ConsumerGroupStateMachine
from trioring.core.groups.consumer_model import ConsumerHeartbeat
from trioring.core.groups.results import (
    ConsumerGroupDescription,
    ConsumerHeartbeatResult,
    GroupDescription,
    GroupListing,
    JoinGroupResult,
    LeaveGroupResult,
    ListGroupsResult,
    SyncGroupResult,
)
from trioring.core.groups.state import GroupStateMachine, Pending, new_member_id

__all__ = ["CommittedGroups", "GroupCoordinator"]

logger = logging.getLogger("trioring.groups")

_T = TypeVar("_T")


class CommittedGroups(Protocol):
    """What the coordinator needs of the committed offsets: the groups that have some."""

    def groups(self) -> Iterable[str]: ...


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


class _Timer:
    """One group's timer task: its next deadline, and how to wake it early."""

    __slots__ = ("deadline", "wakeup")

    def __init__(self) -> None:
        self.deadline = -math.inf
        self.wakeup = trio.Event()


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
        new_member_id: Callable[[str], str] = new_member_id,
    ) -> None:
        self.config = config
        self._offsets = offsets
        self._nursery = nursery
        self._state = GroupStateMachine(config, new_member_id)
        #: The consumer group protocol's groups (KIP-848); a group id is in one
        #: of the two machines at a time.
        self._consumer = ConsumerGroupStateMachine(config, self._state.group_count)
        self._state.other_groups = self._consumer.group_count
        self._waiters: dict[Pending, _Waiter[JoinGroupResult] | _Waiter[SyncGroupResult]] = {}
        self._timers: dict[str, _Timer] = {}

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        config: GroupConfig | None = None,
        *,
        offsets: CommittedGroups,
        new_member_id: Callable[[str], str] = new_member_id,
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
                coordinator._state.close()
                coordinator._consumer.close()
                coordinator._settle()
                nursery.cancel_scope.cancel()

    # --- waiting and timing -------------------------------------------------------------

    def _settle(self) -> None:
        """Hand out the state machine's answers and (re)start the timers it asks for."""
        state = self._state
        for export in self._consumer.take_downgrades():
            state.adopt(trio.current_time(), export)
        for answer in state.take_answers():
            waiter = self._waiters.pop(answer.pending, None)
            if waiter is not None:  # None: the caller gave up waiting (disconnected)
                waiter.resolve(answer.result)  # type: ignore[arg-type]
        changes = state.take_timer_changes()
        for group_id, deadline in self._consumer.take_timer_changes().items():
            changes[group_id] = min(deadline, changes.get(group_id, deadline))
        for group_id, deadline in changes.items():
            timer = self._timers.get(group_id)
            if timer is None:
                timer = self._timers[group_id] = _Timer()
                self._nursery.start_soon(self._run_timer, group_id, timer, name="group timer")
            elif deadline < timer.deadline:
                timer.deadline = -math.inf
                timer.wakeup.set()

    async def _run_timer(self, group_id: str, timer: _Timer) -> None:
        """Expire what is due, then sleep until the next deadline or a state change.

        Runs while the group has members or pending members; a heartbeat only
        moves a deadline later, so it needs no wake-up.
        """
        try:
            while True:
                now = trio.current_time()
                self._state.expire(group_id, now)
                self._consumer.expire(group_id, now)
                deadlines = [
                    deadline
                    for deadline in (
                        self._state.next_deadline(group_id),
                        self._consumer.next_deadline(group_id),
                    )
                    if deadline is not None
                ]
                deadline = min(deadlines, default=None)
                # The state machines may ask for this very timer again: it runs.
                self._state.timer_changes.pop(group_id, None)
                self._consumer.timer_changes.pop(group_id, None)
                self._settle()
                if deadline is None:
                    return
                # Each pass handles every due deadline, so the loop never spins.
                assert deadline > now, (group_id, deadline, now)
                timer.deadline = deadline
                timer.wakeup = trio.Event()
                with trio.move_on_at(deadline):
                    await timer.wakeup.wait()
                timer.deadline = -math.inf
        finally:
            del self._timers[group_id]

    async def _wait(self, outcome: _T | Pending) -> _T:
        """Return a result at once, or park on the answer to a pending request."""
        if not isinstance(outcome, Pending):
            self._settle()
            await trio.lowlevel.cancel_shielded_checkpoint()
            return outcome
        waiter = self._waiters.get(outcome)
        if waiter is None:
            waiter = self._waiters[outcome] = _Waiter()
        self._settle()
        return await waiter.wait()  # type: ignore[return-value]

    # --- the Kafka group APIs -----------------------------------------------------------

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
        metadata: ClusterMetadata | None = None,
    ) -> JoinGroupResult:
        """JoinGroup: wait until the join phase ends and answer with the new generation.

        ``rebalance_timeout_ms`` None (JoinGroup v0) means the session
        timeout, as Kafka. A ``group_instance_id`` makes a static member
        (KIP-345): rejoining under it with no member id takes the old
        member's place without a rebalance.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._consumer.has_group(group_id):
            if self._consumer.has_members(group_id):
                # A classic member of a consumer-protocol group (Kafka 4.0's
                # mixed groups): the broker assigns, the answer comes at once.
                result = self._consumer.mixed.classic_join(
                    trio.current_time(),
                    group_id=group_id,
                    member_id=member_id,
                    instance_id=group_instance_id,
                    protocol_type=protocol_type,
                    protocols=tuple((name, bytes(data)) for name, data in protocols),
                    session_timeout_ms=session_timeout_ms,
                    rebalance_timeout_ms=(
                        session_timeout_ms if rebalance_timeout_ms is None else rebalance_timeout_ms
                    ),
                    client_id=client_id,
                    client_host=client_host,
                    api_version=api_version,
                    # No metadata (a direct call, not a request): no topics to assign.
                    metadata=metadata or ClusterMetadata("", 1),
                )
                return await self._wait(result)
            self._consumer.delete_group(group_id)
        outcome = self._state.join(
            trio.current_time(),
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
        return await self._wait(outcome)

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
        if self._consumer.has_group(group_id):
            result = self._consumer.mixed.classic_sync(
                trio.current_time(),
                group_id=group_id,
                generation_id=generation_id,
                member_id=member_id,
                instance_id=group_instance_id,
            )
            return await self._wait(result)
        outcome = self._state.sync(
            trio.current_time(),
            group_id=group_id,
            generation_id=generation_id,
            member_id=member_id,
            assignments=assignments,
            protocol_type=protocol_type,
            protocol_name=protocol_name,
            group_instance_id=group_instance_id,
        )
        return await self._wait(outcome)

    def heartbeat(
        self,
        *,
        group_id: str,
        generation_id: int,
        member_id: str,
        group_instance_id: str | None = None,
    ) -> int:
        """Heartbeat: keep the member alive; REBALANCE_IN_PROGRESS tells it to rejoin."""
        if self._consumer.has_group(group_id):
            code = self._consumer.mixed.classic_heartbeat(
                trio.current_time(),
                group_id=group_id,
                generation_id=generation_id,
                member_id=member_id,
                instance_id=group_instance_id,
            )
            self._settle()
            return code
        code = self._state.heartbeat(
            trio.current_time(),
            group_id=group_id,
            generation_id=generation_id,
            member_id=member_id,
            group_instance_id=group_instance_id,
        )
        self._settle()
        return code

    def leave_group(
        self,
        *,
        group_id: str,
        member_ids: Sequence[str],
        group_instance_ids: Sequence[str | None] = (),
    ) -> LeaveGroupResult:
        """LeaveGroup: remove members (v0-2 send one); the others rebalance."""
        if self._consumer.has_group(group_id):
            result = self._consumer.mixed.classic_leave(
                trio.current_time(),
                group_id=group_id,
                member_ids=list(member_ids),
                instance_ids=list(group_instance_ids) or [None] * len(member_ids),
            )
            self._settle()
            return result
        result = self._state.leave(
            trio.current_time(),
            group_id=group_id,
            member_ids=member_ids,
            group_instance_ids=group_instance_ids,
        )
        self._settle()
        return result

    def consumer_group_heartbeat(
        self, request: ConsumerHeartbeat, metadata: ClusterMetadata
    ) -> ConsumerHeartbeatResult:
        """ConsumerGroupHeartbeat (KIP-848): join, stay, reconcile or leave; answers at once."""
        group_id, member_id, member_epoch = (
            request.group_id,
            request.member_id,
            request.member_epoch,
        )
        if self._state.has_group(group_id) and not self._consumer.has_group(group_id):
            export = self._state.export_group(group_id)
            if export is None:
                self._state.delete_group(group_id)  # Empty: the consumer protocol takes it
            elif member_epoch == 0 and self._consumer.mixed.adopt(
                trio.current_time(), export, metadata
            ):
                # Kafka 4.0's online upgrade: a consumer-protocol member joins a
                # classic group of consumers, which becomes a consumer group.
                self._state.surrender(group_id)
            elif member_epoch != 0:
                # A member the group no longer has (it became classic after this
                # member was removed): it rejoins.
                return ConsumerHeartbeatResult(
                    ErrorCode.unknown_member_id,
                    f"Group {group_id} has no member {member_id}.",
                    member_id or None,
                    member_epoch,
                )
            else:
                return ConsumerHeartbeatResult(
                    ErrorCode.group_id_not_found,
                    f"Group {group_id} is not a consumer group: its classic members do not "
                    "use the consumer protocol.",
                    member_id or None,
                    member_epoch,
                )
        result = self._consumer.heartbeat(trio.current_time(), request, metadata)
        if result.error_code != ErrorCode.none:
            self._consumer.mixed.downgrade_if_classic(group_id)
        self._settle()
        return result

    def consumer_group_describe(self, group_id: str) -> ConsumerGroupDescription:
        """ConsumerGroupDescribe of one group; GROUP_ID_NOT_FOUND unless it is a consumer group."""
        description = self._consumer.describe(group_id)
        if description is not None:
            return description
        message = (
            f"Group {group_id} is not a consumer group."
            if self._state.has_group(group_id)
            else f"Group {group_id} not found."
        )
        return ConsumerGroupDescription(ErrorCode.group_id_not_found, group_id, message)

    def validate_offset_commit(
        self,
        *,
        group_id: str,
        generation_id: int,
        member_id: str,
        group_instance_id: str | None = None,
        api_version: int | None = None,
    ) -> int:
        """Whether an OffsetCommit may go ahead (NONE) or the Kafka error code to answer.

        For a consumer group ``generation_id`` is the member epoch
        (STALE_MEMBER_EPOCH when it is not the member's), and a member must
        commit with OffsetCommit v9+ (``api_version``; None: not on the wire).
        """
        if self._consumer.has_group(group_id):
            code, _ = self._consumer.validate_offset_commit(
                trio.current_time(),
                group_id=group_id,
                member_id=member_id,
                member_epoch=generation_id,
                api_version=api_version,
            )
            return code
        code = self._state.validate_offset_commit(
            trio.current_time(),
            group_id=group_id,
            generation_id=generation_id,
            member_id=member_id,
            group_instance_id=group_instance_id,
        )
        self._settle()
        return code

    def validate_offset_fetch(
        self, group_id: str, member_id: str | None, member_epoch: int
    ) -> tuple[int, str]:
        """OffsetFetch v9 from a member: (NONE, "") or Kafka's error and message.

        Only consumer-protocol groups know member epochs; for the others the
        fields are ignored.
        """
        if not self._consumer.has_group(group_id):
            return ErrorCode.none, ""
        return self._consumer.validate_offset_fetch(group_id, member_id, member_epoch)

    def delete_group(self, group_id: str) -> int | None:
        """Forget an Empty group: NONE, NON_EMPTY_GROUP, or None if it has no state here."""
        consumer = self._consumer.delete_group(group_id)
        if consumer is not None:
            return consumer
        result = self._state.delete_group(group_id)
        self._settle()
        return result

    def has_group(self, group_id: str) -> bool:
        """Whether the group has state here (members, or an Empty group not yet forgotten)."""
        return self._state.has_group(group_id) or self._consumer.has_group(group_id)

    def offset_delete_check(
        self, group_id: str, metadata: ClusterMetadata
    ) -> tuple[int, frozenset[str] | None]:
        """NONE or NON_EMPTY_GROUP, and the topics whose offsets must stay (None: all)."""
        if self._consumer.has_group(group_id):
            return ErrorCode.none, self._consumer.subscribed_topics(group_id, metadata)
        return self._state.offset_delete_check(group_id)

    def describe_groups(self, group_ids: Iterable[str]) -> list[GroupDescription]:
        """DescribeGroups; unknown groups are "Dead", groups with only offsets "Empty".

        A consumer-protocol group is "Dead" here too, as in Kafka: it is
        described by ConsumerGroupDescribe.
        """
        group_ids = list(group_ids)
        descriptions = self._state.describe_groups(group_ids, self._offsets.groups)
        return [
            GroupDescription(ErrorCode.none, description.group_id, "Dead", "", "")
            if self._consumer.has_group(description.group_id)
            and description.error_code == ErrorCode.none
            else description
            for description in descriptions
        ]

    def list_groups(self, states: Collection[str] | None = None) -> ListGroupsResult:
        """ListGroups, including groups known only by their committed offsets.

        ``states`` (ListGroups v4) keeps the groups in those states; None or
        empty keeps all.
        """
        consumer = self._consumer.listings()
        consumer_ids = {listing.group_id for listing in consumer}
        result = self._state.list_groups(
            (group for group in self._offsets.groups() if group not in consumer_ids), None
        )
        if result.error_code != ErrorCode.none:
            return result
        listings: list[GroupListing] = sorted(
            [*result.groups, *consumer], key=lambda listing: listing.group_id
        )
        # Case-insensitive, as Kafka's filter (KIP-518).
        wanted = {state.lower() for state in states} if states else None
        return ListGroupsResult(
            ErrorCode.none,
            tuple(
                listing for listing in listings if wanted is None or listing.state.lower() in wanted
            ),
        )

    def _assert_invariants(self) -> None:
        """Check the state machine's invariants and that every group that needs a timer has one."""
        self._state.assert_invariants()
        self._consumer.assert_invariants()
        assert not {g for g in self._state.groups_with_deadlines() if self._consumer.has_group(g)}
        if not self._state.closed:
            for group_id in [
                *self._state.groups_with_deadlines(),
                *self._consumer.groups_with_deadlines(),
            ]:
                assert group_id in self._timers, f"group {group_id} has deadlines but no timer"
        for pending, waiter in self._waiters.items():
            assert not waiter.event.is_set(), pending

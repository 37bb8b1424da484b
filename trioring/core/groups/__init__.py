"""Kafka's classic consumer-group protocol for one shard's groups.

``state.py`` is the state machine (synchronous transitions, the clock passed
in); ``coordinator.py`` runs it on Trio's clock with waiters and timers;
``results.py`` holds what the group APIs answer. Committed offsets live in
the OffsetStore; the coordinator only says whether a commit is allowed.
"""

from trioring.config import GroupConfig
from trioring.core.groups.coordinator import CommittedGroups, GroupCoordinator
from trioring.core.groups.results import (
    NO_GENERATION,
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
from trioring.core.groups.state import GroupState, GroupStateMachine

__all__ = [
    "NO_GENERATION",
    "CommittedGroups",
    "GroupConfig",
    "GroupCoordinator",
    "GroupDescription",
    "GroupListing",
    "GroupMemberDescription",
    "GroupState",
    "GroupStateMachine",
    "JoinGroupMember",
    "JoinGroupResult",
    "LeaveGroupMemberResult",
    "LeaveGroupResult",
    "ListGroupsResult",
    "SyncGroupResult",
]

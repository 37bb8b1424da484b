"""Kafka's consumer groups for one shard: the classic protocol and KIP-848's.

``state.py`` is the classic state machine and ``consumer.py`` the consumer
protocol's (KIP-848: its data in ``consumer_model.py``, the server assignors
in ``assignors.py``, classic members inside consumer groups in ``mixed.py``;
the consumer protocol embedded in classic metadata is read and written by
``trioring.protocol.kafka.consumer_protocol``), both synchronous with the clock passed in;
``coordinator.py`` runs them on Trio's clock with waiters and timers;
``results.py`` holds what the group APIs answer. Committed offsets live in
the OffsetStore; the coordinator only says whether a commit is allowed.
"""

from trioring.config import GroupConfig
from trioring.core.groups.consumer import ConsumerGroupState, ConsumerGroupStateMachine
from trioring.core.groups.consumer_model import ConsumerHeartbeat
from trioring.core.groups.coordinator import CommittedGroups, GroupCoordinator
from trioring.core.groups.results import (
    NO_GENERATION,
    ConsumerGroupDescription,
    ConsumerGroupMemberDescription,
    ConsumerHeartbeatResult,
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
    "ConsumerGroupDescription",
    "ConsumerGroupMemberDescription",
    "ConsumerGroupState",
    "ConsumerGroupStateMachine",
    "ConsumerHeartbeat",
    "ConsumerHeartbeatResult",
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

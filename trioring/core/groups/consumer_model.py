"""What the consumer group protocol's state machine keeps (KIP-848): groups, members,
their states, and how a member's subscription resolves to topics.

Shared by ``consumer.py`` (the protocol's own members) and ``mixed.py``
(classic members inside a consumer group).
"""

from __future__ import annotations

import enum
import functools
import math

import attrs
import re2

from trioring.cluster.model import ClusterMetadata
from trioring.core.groups.assignors import Assignment

__all__ = [
    "CONSUMER_PROTOCOL_TYPE",
    "EMPTY",
    "LEAVE_GROUP_EPOCH",
    "LEAVE_GROUP_STATIC_EPOCH",
    "Classic",
    "ConsumerGroupState",
    "ConsumerHeartbeat",
    "Group",
    "Member",
    "MemberState",
    "Refused",
    "compile_regex",
    "resolve",
]

#: Member epochs a heartbeat sends to leave: for good, or (a static member) for now.
LEAVE_GROUP_EPOCH = -1
LEAVE_GROUP_STATIC_EPOCH = -2
#: The protocol type ListGroups reports for these groups.
CONSUMER_PROTOCOL_TYPE = "consumer"
EMPTY: Assignment = frozenset()


@attrs.frozen
class ConsumerHeartbeat:
    """A ConsumerGroupHeartbeat as the coordinator reads it. Fields a client leaves
    unchanged since its last heartbeat are None (-1 for the rebalance timeout);
    ``owned`` is what the member reports owning, as (topic id, partition)."""

    group_id: str
    member_id: str
    member_epoch: int
    instance_id: str | None = None
    rack_id: str | None = None
    rebalance_timeout_ms: int = -1
    subscribed_topic_names: tuple[str, ...] | None = None
    subscribed_topic_regex: str | None = None
    server_assignor: str | None = None
    owned: Assignment | None = None
    client_id: str = ""
    client_host: str = ""
    #: ConsumerGroupHeartbeat v1+ makes the client choose its member id.
    api_version: int = 1


class ConsumerGroupState(enum.Enum):
    """Kafka's consumer group states, as ListGroups and ConsumerGroupDescribe name them."""

    EMPTY = "Empty"
    ASSIGNING = "Assigning"
    RECONCILING = "Reconciling"
    STABLE = "Stable"


class MemberState(enum.Enum):
    STABLE = "stable"
    #: Waiting for the member to give up partitions (its epoch stays).
    UNREVOKED_PARTITIONS = "unrevoked_partitions"
    #: At the target epoch, waiting for partitions other members still own.
    UNRELEASED_PARTITIONS = "unreleased_partitions"


class Refused(Exception):
    """A heartbeat refused with a Kafka error code and a message for the client."""

    def __init__(self, error_code: int, message: str) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message


@attrs.define(eq=False)
class Member:
    member_id: str
    instance_id: str | None
    rack_id: str | None
    client_id: str
    client_host: str
    rebalance_timeout_ms: int
    subscribed_topic_names: tuple[str, ...]
    subscribed_topic_regex: str | None
    server_assignor: str | None
    last_seen: float
    member_epoch: int = 0
    previous_member_epoch: int = -1
    state: MemberState = MemberState.STABLE
    assigned: Assignment = EMPTY
    pending_revocation: Assignment = EMPTY
    #: The topic ids its subscription resolves to at ``resolved_version`` of the metadata.
    topic_ids: frozenset[str] = frozenset()
    #: When an UNREVOKED_PARTITIONS member is fenced unless it has revoked.
    revocation_deadline: float = math.inf
    #: Set for a member that speaks the classic protocol in this group.
    classic: Classic | None = None


@attrs.define(eq=False)
class Classic:
    """What a classic member (JoinGroup/SyncGroup/Heartbeat) adds (Kafka 4.0 mixed groups)."""

    session_timeout_ms: int
    protocols: tuple[tuple[str, bytes], ...]
    #: Its subscription's version: its assignment is written in the same one.
    version: int
    #: Fenced unless it sends SyncGroup after a join, or JoinGroup when told to rejoin, by then.
    deadline: float = math.inf


@attrs.define(eq=False)
class Group:
    group_id: str
    group_epoch: int = 0
    assignment_epoch: int = 0
    members: dict[str, Member] = attrs.Factory(dict)
    #: instance id -> the member id that holds it.
    static_members: dict[str, str] = attrs.Factory(dict)
    #: member id -> its target assignment at ``assignment_epoch``.
    target: dict[str, Assignment] = attrs.Factory(dict)
    #: (topic id, partition) -> the member that owns it (assigned or pending revocation).
    owners: dict[tuple[str, int], str] = attrs.Factory(dict)
    #: Partitions per subscribed topic id the target was computed for.
    subscription: dict[str, int] = attrs.Factory(dict)
    metadata_version: int = -1
    assignor_name: str = ""
    #: Topic id -> name of the topics subscribed, as last resolved (classic assignments
    #: name topics).
    topic_names: dict[str, str] = attrs.Factory(dict)

    @property
    def state(self) -> ConsumerGroupState:
        if not self.members:
            return ConsumerGroupState.EMPTY
        if self.group_epoch > self.assignment_epoch:
            return ConsumerGroupState.ASSIGNING
        for member in self.members.values():
            if member.state is not MemberState.STABLE or member.member_epoch not in (
                self.assignment_epoch,
                LEAVE_GROUP_STATIC_EPOCH,
            ):
                return ConsumerGroupState.RECONCILING
        return ConsumerGroupState.STABLE


_RE2_OPTIONS = re2.Options()
#: A bad pattern is the client's mistake: answered, not logged by RE2 to stderr.
_RE2_OPTIONS.log_errors = False


@functools.lru_cache(maxsize=256)
def compile_regex(pattern: str) -> re2._Regexp:
    """RE2 pattern (re2.error if invalid); bounded by RE2's own memory limit."""
    return re2.compile(pattern, _RE2_OPTIONS)


def resolve(member: Member, metadata: ClusterMetadata) -> frozenset[str]:
    """The ids of the topics a member's subscription names, as the metadata has them now."""
    ids = set()
    for name in member.subscribed_topic_names:
        info = metadata.topics.get(name)
        if info is not None and not info.internal:
            ids.add(info.topic_id)
    if member.subscribed_topic_regex is not None:
        pattern = compile_regex(member.subscribed_topic_regex)
        for name, info in metadata.user_topics().items():
            if pattern.fullmatch(name):
                ids.add(info.topic_id)
    return frozenset(ids)

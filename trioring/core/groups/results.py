"""What the group coordinator answers: one value type per Kafka group API."""

from __future__ import annotations

import attrs

__all__ = [
    "NO_GENERATION",
    "ClassicGroupExport",
    "ClassicMemberExport",
    "ConsumerGroupDescription",
    "ConsumerGroupMemberDescription",
    "ConsumerHeartbeatResult",
    "GroupDescription",
    "GroupListing",
    "GroupMemberDescription",
    "JoinGroupMember",
    "JoinGroupResult",
    "LeaveGroupMemberResult",
    "LeaveGroupResult",
    "ListGroupsResult",
    "SyncGroupResult",
]

#: generation_id of "no generation" (Kafka's NoGeneration).
NO_GENERATION = -1


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
    #: JoinGroup v9+ (KIP-814): the leader gets the members but must not assign
    #: anew (a static leader rejoined a Stable group).
    skip_assignment: bool = False


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
    #: "classic" or "consumer" (the KIP-848 protocol), as ListGroups v5 names them.
    group_type: str = "classic"


@attrs.frozen
class ListGroupsResult:
    error_code: int
    groups: tuple[GroupListing, ...] = ()


# --- The consumer group protocol (KIP-848) ---------------------------------------


@attrs.frozen
class ClassicMemberExport:
    """A classic member as it moves between the two protocols' state machines."""

    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    session_timeout_ms: int
    rebalance_timeout_ms: int
    protocols: tuple[tuple[str, bytes], ...]
    #: Its subscription: the chosen protocol's metadata (its first protocol's if none is).
    metadata: bytes
    #: Its current assignment (ConsumerProtocolAssignment bytes; empty: none).
    assignment: bytes


@attrs.frozen
class ClassicGroupExport:
    """A group of classic members converted from or to the consumer protocol (KIP-848)."""

    group_id: str
    generation_id: int
    protocol_type: str | None
    members: tuple[ClassicMemberExport, ...]


@attrs.frozen
class ConsumerHeartbeatResult:
    """ConsumerGroupHeartbeat's answer. ``assignment`` is None when unchanged (Kafka
    sends it on a full request or when it changed); partitions are (topic id, partition)."""

    error_code: int
    error_message: str | None = None
    member_id: str | None = None
    member_epoch: int = -1
    heartbeat_interval_ms: int = 0
    assignment: frozenset[tuple[str, int]] | None = None


@attrs.frozen
class ConsumerGroupMemberDescription:
    member_id: str
    instance_id: str | None
    rack_id: str | None
    member_epoch: int
    client_id: str
    client_host: str
    subscribed_topic_names: tuple[str, ...]
    subscribed_topic_regex: str | None
    assignment: frozenset[tuple[str, int]]
    target_assignment: frozenset[tuple[str, int]]
    #: A member that speaks the classic protocol in this group (Kafka 4.0 mixed groups).
    classic: bool = False


@attrs.frozen
class ConsumerGroupDescription:
    """ConsumerGroupDescribe of one group; an error (GROUP_ID_NOT_FOUND...) has no members."""

    error_code: int
    group_id: str
    error_message: str | None = None
    state: str = ""
    group_epoch: int = 0
    assignment_epoch: int = 0
    assignor_name: str = ""
    members: tuple[ConsumerGroupMemberDescription, ...] = ()

"""The steps of a fuzz history: what the harness asks of a broker, and the faults it injects.

A history is a list of these. Hypothesis draws them (``strategies``), the
runner plays them against a target and checks the broker against the model
after each, and a failing history shrinks to a few of them, printed as a
script that plays it again (``trioring.fuzz.replay``).

Steps name topics, groups and producers by small indexes, not names, so
that every step is meaningful in every history: a step on a topic that
does not exist (yet, or any more) checks that the broker says so. Offsets
are positions between a partition's log start (0.0) and high watermark
(1.0), so they stay meaningful as a history shrinks; positions outside
[0, 1] ask for offsets out of range.
"""

from __future__ import annotations

from typing import Literal

import attrs

#: Topics, groups and idempotent producers a history can name (by index).
TOPICS_MAX = 3
GROUPS_MAX = 2
#: Members a group can have at once (each joins over its own connection).
MEMBERS_MAX = 2
PRODUCERS_MAX = 2
PARTITIONS_MAX = 4
RECORDS_PER_PRODUCE_MAX = 20

Compression = Literal["none", "gzip", "snappy", "lz4", "zstd"]
FaultKind = Literal["enospc", "eio-write", "eio-read", "eio-sync", "slow"]
NetKind = Literal["reset-mid-request", "reset-after-send", "stop-reading"]


@attrs.frozen
class CreateTopic:
    topic: int
    partitions: int


@attrs.frozen
class DeleteTopic:
    topic: int


@attrs.frozen
class AddPartitions:
    """CreatePartitions to ``total`` partitions (INVALID_PARTITIONS unless it grows)."""

    topic: int
    total: int


@attrs.frozen
class Produce:
    """One batch of ``records`` records; ``producer`` is an idempotent producer's index.

    ``retry`` sends the same request again after its answer, as a client does
    when an answer is lost: an idempotent producer must not duplicate.
    """

    topic: int
    partition: int
    acks: Literal[0, 1, -1]
    records: int
    compression: Compression = "none"
    keyed: bool = False
    producer: int | None = None
    retry: bool = False


@attrs.frozen
class Fetch:
    topic: int
    partition: int
    position: float


@attrs.frozen
class ListOffsets:
    topic: int
    partition: int


@attrs.frozen
class DeleteRecords:
    topic: int
    partition: int
    position: float


@attrs.frozen
class Commit:
    """OffsetCommit of ``position`` in the partition, as the group's member if it has one."""

    group: int
    topic: int
    partition: int
    position: float


@attrs.frozen
class FetchCommitted:
    group: int


@attrs.frozen
class JoinGroup:
    """Member ``member`` joins ``group``, subscribed to ``topic``: a rebalance that the
    group's other members take part in (they rejoin, the leader assigns, all sync)."""

    group: int
    topic: int
    member: int = 0


@attrs.frozen
class LeaveGroup:
    """Member ``member`` leaves ``group``; the others must rejoin (a rebalance)."""

    group: int
    member: int = 0


@attrs.frozen
class Restart:
    """A clean stop and start: nothing acknowledged, at any acks, may be lost."""


@attrs.frozen
class Kill:
    """SIGKILL the broker (``worker`` None) or one worker; the page cache survives."""

    worker: int | None = None


@attrs.frozen
class PowerLoss:
    """Cut the power (embedded target): unsynced writes are dropped or torn (``seed``)."""

    seed: int


@attrs.frozen
class DiskFault:
    """Fail the next ``count`` disk operations of a kind (embedded target)."""

    kind: FaultKind
    count: int


@attrs.frozen
class ClearFaults:
    """The disk works again (space freed): the broker must resume by itself."""


@attrs.frozen
class NetFault:
    """A misbehaving connection next to the harness's own (wire targets)."""

    kind: NetKind
    topic: int


Step = (
    CreateTopic
    | DeleteTopic
    | AddPartitions
    | Produce
    | Fetch
    | ListOffsets
    | DeleteRecords
    | Commit
    | FetchCommitted
    | JoinGroup
    | LeaveGroup
    | Restart
    | Kill
    | PowerLoss
    | DiskFault
    | ClearFaults
    | NetFault
)

__all__ = [
    "AddPartitions",
    "ClearFaults",
    "Commit",
    "CreateTopic",
    "DeleteRecords",
    "DeleteTopic",
    "DiskFault",
    "Fetch",
    "FetchCommitted",
    "JoinGroup",
    "Kill",
    "LeaveGroup",
    "ListOffsets",
    "NetFault",
    "PowerLoss",
    "Produce",
    "Restart",
    "Step",
]

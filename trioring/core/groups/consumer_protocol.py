"""The consumer protocol embedded in classic groups: a member's subscription (its JoinGroup
metadata) and its assignment (SyncGroup), Kafka's ConsumerProtocolSubscription v0-3 and
ConsumerProtocolAssignment v0-3.

The broker reads them where it must understand a classic consumer: OffsetDelete
(which topics a group subscribes to), and classic members of a consumer-protocol
group (KIP-848), whose assignment the broker computes and writes. Hand-written
and bounded: every count is checked against the bytes left before anything is
allocated, as these bytes come straight from clients. Versions above 3 are read
as 3: newer versions only add fields at the end.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

import attrs

__all__ = [
    "Subscription",
    "encode_assignment",
    "parse_assignment",
    "parse_subscription",
    "subscribed_topics",
]

_OWNED_PARTITIONS_VERSION = 1
_GENERATION_VERSION = 2
_RACK_VERSION = 3


@attrs.frozen
class Subscription:
    version: int
    topics: tuple[str, ...]
    #: (topic name, partitions) the member owns (v1+; empty before).
    owned: tuple[tuple[str, tuple[int, ...]], ...] = ()
    rack_id: str | None = None


class _Reader:
    __slots__ = ("data", "position")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.position = 0

    def unpack(self, fmt: str) -> int:
        (value,) = struct.unpack_from(fmt, self.data, self.position)
        self.position += struct.calcsize(fmt)
        return int(value)

    def count(self, element_bytes_min: int) -> int:
        count = self.unpack(">i")
        if count < 0 or count * element_bytes_min > len(self.data) - self.position:
            raise ValueError("array count larger than the bytes left")
        return count

    def string(self, nullable: bool = False) -> str | None:
        length = self.unpack(">h")
        if length < 0:
            if nullable:
                return None
            raise ValueError("null string")
        end = self.position + length
        if end > len(self.data):
            raise ValueError("string past the end")
        text = self.data[self.position : end].decode("utf-8")
        self.position = end
        return text

    def skip_bytes(self) -> None:
        length = self.unpack(">i")
        if length > len(self.data) - self.position:
            raise ValueError("bytes past the end")
        self.position += max(length, 0)

    def topic_partitions(self) -> tuple[tuple[str, tuple[int, ...]], ...]:
        result = []
        for _ in range(self.count(6)):
            topic = self.string()
            assert topic is not None
            partitions = tuple(self.unpack(">i") for _ in range(self.count(4)))
            result.append((topic, partitions))
        return tuple(result)


def _topics(reader: _Reader) -> tuple[int, list[str]]:
    version = reader.unpack(">h")
    if version < 0:
        raise ValueError("negative version")
    topics = []
    for _ in range(reader.count(2)):
        topic = reader.string()
        assert topic is not None
        topics.append(topic)
    return version, topics


def subscribed_topics(metadata: bytes) -> frozenset[str] | None:
    """Just the topics of a subscription (every version starts with them); None if unreadable.

    Lenient on purpose: OffsetDelete needs only the topics, whatever follows.
    """
    try:
        return frozenset(_topics(_Reader(bytes(metadata)))[1])
    except (struct.error, ValueError, UnicodeDecodeError):
        return None


def parse_subscription(metadata: bytes) -> Subscription | None:
    """A member's subscription, or None if the bytes are not one."""
    reader = _Reader(bytes(metadata))
    try:
        version, topics = _topics(reader)
        reader.skip_bytes()  # user data
        owned: tuple[tuple[str, tuple[int, ...]], ...] = ()
        rack_id = None
        if version >= _OWNED_PARTITIONS_VERSION:
            owned = reader.topic_partitions()
        if version >= _GENERATION_VERSION:
            reader.unpack(">i")
        if version >= _RACK_VERSION:
            rack_id = reader.string(nullable=True)
    except (struct.error, ValueError, UnicodeDecodeError):
        return None
    return Subscription(version, tuple(topics), owned, rack_id)


def parse_assignment(data: bytes) -> tuple[tuple[str, tuple[int, ...]], ...] | None:
    """The partitions of an assignment, or None if the bytes are not one (empty: none)."""
    if not data:
        return ()
    reader = _Reader(bytes(data))
    try:
        if reader.unpack(">h") < 0:
            return None
        return reader.topic_partitions()
    except (struct.error, ValueError, UnicodeDecodeError):
        return None


def encode_assignment(version: int, partitions: Iterable[tuple[str, Sequence[int]]]) -> bytes:
    """ConsumerProtocolAssignment in ``version`` (0-3 share one layout), no user data."""
    out = [struct.pack(">h", min(max(version, 0), _RACK_VERSION))]
    topics = list(partitions)
    out.append(struct.pack(">i", len(topics)))
    for topic, numbers in topics:
        name = topic.encode("utf-8")
        out.append(struct.pack(">h", len(name)) + name)
        out.append(struct.pack(f">i{len(numbers)}i", len(numbers), *numbers))
    out.append(struct.pack(">i", -1))
    return b"".join(out)

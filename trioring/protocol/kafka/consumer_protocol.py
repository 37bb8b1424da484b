"""The consumer protocol embedded in classic groups: a member's subscription (its JoinGroup
metadata) and its assignment (SyncGroup), Kafka's ConsumerProtocolSubscription v0-3 and
ConsumerProtocolAssignment v0-3.

The broker reads them where it must understand a classic consumer: OffsetDelete
(which topics a group subscribes to), and classic members of a consumer-protocol
group (KIP-848), whose assignment the broker computes and writes. The client
(trioring.client) writes subscriptions and, as a group's leader, reads its
members' subscriptions and writes their assignments. Hand-written
and bounded: every count is checked against the bytes left before anything is
allocated, as these bytes come straight from clients. Versions above 3 are read
as 3: newer versions only add fields at the end.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

import attrs

__all__ = [
    "SUBSCRIPTION_VERSION_MAX",
    "Subscription",
    "encode_assignment",
    "encode_subscription",
    "parse_assignment",
    "parse_subscription",
    "subscribed_topics",
]

_OWNED_PARTITIONS_VERSION = 1
_GENERATION_VERSION = 2
_RACK_VERSION = 3
#: The newest ConsumerProtocolSubscription version this codec writes.
SUBSCRIPTION_VERSION_MAX = _RACK_VERSION


@attrs.frozen
class Subscription:
    version: int
    topics: tuple[str, ...]
    #: (topic name, partitions) the member owns (v1+; empty before).
    owned: tuple[tuple[str, tuple[int, ...]], ...] = ()
    rack_id: str | None = None
    #: The assignor's opaque bytes (None: null).
    user_data: bytes | None = None
    #: The generation the member's owned partitions are from (v2+; -1: not given).
    generation_id: int = -1


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

    def bytes_(self) -> bytes | None:
        length = self.unpack(">i")
        if length > len(self.data) - self.position:
            raise ValueError("bytes past the end")
        if length < 0:
            return None
        value = self.data[self.position : self.position + length]
        self.position += length
        return value

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
        user_data = reader.bytes_()
        owned: tuple[tuple[str, tuple[int, ...]], ...] = ()
        rack_id = None
        generation_id = -1
        if version >= _OWNED_PARTITIONS_VERSION:
            owned = reader.topic_partitions()
        if version >= _GENERATION_VERSION:
            generation_id = reader.unpack(">i")
        if version >= _RACK_VERSION:
            rack_id = reader.string(nullable=True)
    except (struct.error, ValueError, UnicodeDecodeError):
        return None
    return Subscription(version, tuple(topics), owned, rack_id, user_data, generation_id)


def _string(text: str) -> bytes:
    data = text.encode("utf-8")
    return struct.pack(">h", len(data)) + data


def _topic_partitions(partitions: Iterable[tuple[str, Sequence[int]]]) -> list[bytes]:
    topics = list(partitions)
    out = [struct.pack(">i", len(topics))]
    for topic, numbers in topics:
        out.append(_string(topic))
        out.append(struct.pack(f">i{len(numbers)}i", len(numbers), *numbers))
    return out


def encode_subscription(subscription: Subscription) -> bytes:
    """ConsumerProtocolSubscription in ``subscription.version`` (0-3): each version adds
    the fields that follow, so an older version just stops sooner."""
    version = subscription.version
    assert 0 <= version <= SUBSCRIPTION_VERSION_MAX, version
    out = [struct.pack(">hi", version, len(subscription.topics))]
    out += [_string(topic) for topic in subscription.topics]
    user_data = subscription.user_data
    out.append(struct.pack(">i", -1) if user_data is None else struct.pack(">i", len(user_data)))
    out.append(user_data or b"")
    if version >= _OWNED_PARTITIONS_VERSION:
        out += _topic_partitions(subscription.owned)
    if version >= _GENERATION_VERSION:
        out.append(struct.pack(">i", subscription.generation_id))
    if version >= _RACK_VERSION:
        rack = subscription.rack_id
        out.append(struct.pack(">h", -1) if rack is None else _string(rack))
    return b"".join(out)


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
    out += _topic_partitions(partitions)
    out.append(struct.pack(">i", -1))
    return b"".join(out)

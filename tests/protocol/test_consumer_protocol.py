"""The consumer protocol embedded in classic group metadata: our bounded codec against kio's."""

from __future__ import annotations

import io
import struct

from hypothesis import given
from hypothesis import strategies as st
from kio.schema.consumer_protocol_assignment.v1.data import (
    ConsumerProtocolAssignment,
)
from kio.schema.consumer_protocol_subscription.v3.data import (
    ConsumerProtocolSubscription,
    TopicPartition,
)
from kio.serial import entity_reader, entity_writer

from trioring.protocol.kafka.consumer_protocol import (
    Subscription,
    encode_assignment,
    encode_subscription,
    parse_assignment,
    parse_subscription,
    subscribed_topics,
)

names = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=8)
partitions = st.lists(st.integers(0, 2**31 - 1), max_size=4).map(tuple)


@given(
    st.lists(names, max_size=4).map(tuple),
    st.lists(st.tuples(names, partitions), max_size=3).map(tuple),
    st.none() | names,
    st.none() | st.binary(max_size=8),
)
def test_subscriptions_kio_writes_are_read_back(topics, owned, rack_id, user_data) -> None:  # type: ignore[no-untyped-def]
    buffer = io.BytesIO()
    entity_writer(ConsumerProtocolSubscription)(
        buffer,
        ConsumerProtocolSubscription(
            topics=topics,
            user_data=user_data,
            owned_partitions=tuple(TopicPartition(topic=t, partitions=p) for t, p in owned),
            generation_id=7,
            rack_id=rack_id,
        ),
    )
    data = struct.pack(">h", 3) + buffer.getvalue()
    subscription = Subscription(3, topics, owned, rack_id, user_data, 7)
    assert parse_subscription(data) == subscription
    assert subscribed_topics(data) == frozenset(topics)
    # What the client writes is byte for byte what kio writes.
    assert encode_subscription(subscription) == data


@given(
    st.integers(0, 3),
    st.lists(names, max_size=4).map(tuple),
    st.lists(st.tuples(names, partitions), max_size=3).map(tuple),
    st.none() | st.binary(max_size=8),
    st.integers(-1, 2**31 - 1),
)
def test_every_version_we_write_reads_back(version, topics, owned, user_data, generation) -> None:  # type: ignore[no-untyped-def]
    written = Subscription(version, topics, owned, "rack", user_data, generation)
    read = parse_subscription(encode_subscription(written))
    assert read is not None
    assert (read.version, read.topics, read.user_data) == (version, topics, user_data)
    assert read.owned == (owned if version >= 1 else ())
    assert read.generation_id == (generation if version >= 2 else -1)
    assert read.rack_id == ("rack" if version >= 3 else None)


@given(st.lists(st.tuples(names, partitions), max_size=4))
def test_assignments_we_write_are_kios(assigned) -> None:  # type: ignore[no-untyped-def]
    data = encode_assignment(1, assigned)
    decoded, _ = entity_reader(ConsumerProtocolAssignment)(data[2:], 0)
    assert [(t.topic, tuple(t.partitions)) for t in decoded.assigned_partitions] == [
        (t, tuple(p)) for t, p in assigned
    ]
    assert decoded.user_data is None
    assert parse_assignment(data) == tuple((t, tuple(p)) for t, p in assigned)


@given(st.binary(max_size=96))
def test_any_bytes_parse_or_are_refused_never_raise(data: bytes) -> None:
    parse_subscription(data)
    parse_assignment(data)
    subscribed_topics(data)


def test_counts_larger_than_the_bytes_are_refused() -> None:
    huge = struct.pack(">hi", 1, 2**31 - 1)
    assert parse_subscription(huge) is None
    assert parse_assignment(huge) is None
    assert parse_assignment(b"") == ()

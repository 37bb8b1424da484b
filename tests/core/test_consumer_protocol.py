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

from trioring.core.groups.consumer_protocol import (
    Subscription,
    encode_assignment,
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
    assert parse_subscription(data) == Subscription(3, topics, owned, rack_id)
    assert subscribed_topics(data) == frozenset(topics)


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

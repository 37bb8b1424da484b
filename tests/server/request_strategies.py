"""Hypothesis strategies for well-formed Kafka requests with adversarial field values.

Every request decodes as its schema says (kio encodes it), but its values
are what a hostile or broken client sends: negative, zero, huge, null where
nullable, duplicates, unknown names, names with control characters. Used by
test_request_fuzz.py against a real broker process.

Durations are kept under half a second: a Fetch that long-polls for
2**31 ms, or a JoinGroup with a rebalance timeout of days, waits because it
was asked to, which is not a hang. Partition counts likewise keep to the
edges and small values: a topic of 10,000 partitions takes about 40 s to
create here (each partition's files are made and synced), which is work
asked for, not a fault, and it would outlast the test's 10 s exchange.
Everything else ranges over its type.
"""

from __future__ import annotations

import dataclasses
import datetime
import types
import typing
import uuid
from typing import Any

from hypothesis import strategies as st
from kio.static.primitive import (
    Interval,
    Records,
    i32Timedelta,
    i64Timedelta,
)

from trioring.protocol.records import Record, build_batch

#: A topic the test creates up front, so requests naming it reach real partitions.
KNOWN_TOPIC = "fuzz-known"
KNOWN_GROUP = "fuzz-group"

NAMES = [
    "",
    KNOWN_TOPIC,
    KNOWN_GROUP,
    "fuzz-new",
    "__consumer_offsets",
    "__cluster_metadata",
    ".",
    "..",
    "a/b",
    "a" * 249,
    "a" * 250,
    "bad\x1b[31mname\n",
    "\u202eevil",
    "x" * 5000,
]

_VALID_BATCH = build_batch([Record(key=b"k", value=b"fuzz")])
_CORRUPT_BATCH = _VALID_BATCH[:-1] + bytes([_VALID_BATCH[-1] ^ 0xFF])
RECORDS = [b"", _VALID_BATCH, _CORRUPT_BATCH, _VALID_BATCH + _VALID_BATCH, b"\x00" * 61]


def _interval(cls: type[Interval]) -> st.SearchStrategy[int]:
    low, high = cls.__low__, cls.__high__
    edges = [
        value
        for value in (low, low + 1, -2, -1, 0, 1, 2, 3, high - 1, high)
        if low <= value <= high
    ]
    return st.one_of(st.sampled_from(edges), st.integers(low, high)).map(cls)


def _duration(cls: type) -> st.SearchStrategy[Any]:
    milliseconds = st.sampled_from([-(2**31), -1000, -1, 0, 1, 50, 200, 400])
    return milliseconds.map(lambda ms: cls.parse(datetime.timedelta(milliseconds=ms)))


#: Fields that are partition counts (CreateTopics, CreatePartitions).
PARTITION_COUNT_FIELDS = frozenset({"num_partitions", "count"})
#: Invalid ones of every kind, and valid ones that are quick to create.
PARTITION_COUNTS = [-(2**31), -2, -1, 0, 1, 2, 3, 8, 10_001, 2**31 - 1]


def _strings(cls: type) -> st.SearchStrategy[Any]:
    return st.one_of(st.sampled_from(NAMES), st.text(max_size=20)).map(cls)


def _for_type(annotation: Any) -> st.SearchStrategy[Any]:
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        options = [option for option in typing.get_args(annotation) if option is not type(None)]
        (option,) = options
        return st.one_of(st.none(), _for_type(option))
    if typing.get_origin(annotation) is tuple:
        element = _for_type(typing.get_args(annotation)[0])
        # Small arrays, often with the same element twice (duplicate partitions,
        # topics, groups).
        return st.one_of(
            st.lists(element, max_size=3),
            element.map(lambda value: [value, value]),
        ).map(tuple)
    if dataclasses.is_dataclass(annotation):
        return entity(annotation)
    if annotation is bool:
        return st.booleans()
    if annotation in (i32Timedelta, i64Timedelta):
        return _duration(annotation)
    if isinstance(annotation, type) and issubclass(annotation, Records):
        return st.sampled_from(RECORDS).map(Records)
    if annotation is uuid.UUID:
        # Zero (no id), all ones, and random ids no topic has.
        return st.one_of(
            st.sampled_from([uuid.UUID(int=0), uuid.UUID(int=2**128 - 1)]),
            st.uuids(),
        )
    if annotation is bytes:
        return st.one_of(st.sampled_from([b"", b"\x00\x01"]), st.binary(max_size=40))
    if isinstance(annotation, type) and issubclass(annotation, Interval):
        return _interval(annotation)
    if isinstance(annotation, type) and issubclass(annotation, str):
        return _strings(annotation)
    raise AssertionError(f"no strategy for request field type {annotation!r}: add one")


def entity(cls: type) -> st.SearchStrategy[Any]:
    """A kio request or nested entity of ``cls`` with adversarial field values."""
    fields = {
        field.name: st.sampled_from(PARTITION_COUNTS).map(field.type)
        if field.name in PARTITION_COUNT_FIELDS
        else _for_type(field.type)
        for field in dataclasses.fields(cls)
    }
    return st.fixed_dictionaries(fields).map(lambda values: cls(**values))


def client_ids() -> st.SearchStrategy[str | None]:
    return st.one_of(st.none(), st.sampled_from(["", "fuzz", "evil\x1b[2J\r\nid", "x" * 3000]))

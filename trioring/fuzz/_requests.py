"""Well-formed Kafka requests with adversarial field values, for every API.

Every request decodes as its schema says (kio encodes it), but its values
are what a hostile or broken client sends: negative, zero, huge, null where
nullable, duplicates, unknown names, names with control characters.

Two ways to draw them, from the same value pools:

- :func:`entity` and :func:`client_ids`: hypothesis strategies, for property
  tests (tests/server/test_request_fuzz.py) that want shrinking.
- :func:`draw_entity` and :func:`draw_client_id`: one draw from a
  ``random.Random``, for the wire fuzzer. Hypothesis cannot be seeded per
  example outside a test, and a draw here costs tens of microseconds, not
  milliseconds: the fuzzer makes hundreds of thousands.

Durations are kept under half a second: a Fetch that long-polls for
2**31 ms, or a JoinGroup with a rebalance timeout of days, waits because it
was asked to, which is not a hang. Partition counts likewise keep to the
edges and small values: a topic of 10,000 partitions takes about 40 s to
create here (each partition's files are made and synced), which is work
asked for, not a fault, and it would outlast a test's 10 s exchange.
Everything else ranges over its type.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import random
import types
import typing
import uuid
from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st
from kio.static.primitive import (
    Interval,
    Records,
    i32Timedelta,
    i64Timedelta,
)

from trioring.protocol.records import Record, build_batch

__all__ = [
    "KNOWN_GROUP",
    "KNOWN_TOPIC",
    "NAMES",
    "PARTITION_COUNTS",
    "PARTITION_COUNT_FIELDS",
    "RECORDS",
    "client_ids",
    "draw_client_id",
    "draw_entity",
    "entity",
]

#: A topic the fuzzers create up front, so requests naming it reach real partitions.
KNOWN_TOPIC = "fuzz-known"
KNOWN_GROUP = "fuzz-group"

#: Every name a request may carry (topics, groups, members, configs), besides
#: short random text. A client of the fuzzer that must stay out of reach of
#: fuzzed requests names its topic with nothing here nor of 20 characters or fewer.
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
#: Characters of the random text names beside NAMES.
RANDOM_NAME_LENGTH_MAX = 20

#: A fixed timestamp (2026-01-01), not the clock: a seed must draw the same bytes every run.
_BATCH_TIMESTAMP_MS = 1_767_225_600_000
_VALID_BATCH = build_batch([Record(key=b"k", value=b"fuzz")], now_ms=_BATCH_TIMESTAMP_MS)
_CORRUPT_BATCH = _VALID_BATCH[:-1] + bytes([_VALID_BATCH[-1] ^ 0xFF])
RECORDS = [b"", _VALID_BATCH, _CORRUPT_BATCH, _VALID_BATCH + _VALID_BATCH, b"\x00" * 61]

#: Every duration a request carries, in milliseconds (see the module docstring).
DURATIONS_MS = [-(2**31), -1000, -1, 0, 1, 50, 200, 400]

#: Fields that are partition counts (CreateTopics, CreatePartitions).
PARTITION_COUNT_FIELDS = frozenset({"num_partitions", "count"})
#: Invalid ones of every kind, and valid ones that are quick to create.
PARTITION_COUNTS = [-(2**31), -2, -1, 0, 1, 2, 3, 8, 10_001, 2**31 - 1]

CLIENT_IDS = ["", "fuzz", "evil\x1b[2J\r\nid", "x" * 3000]

_UUIDS = [uuid.UUID(int=0), uuid.UUID(int=2**128 - 1)]
_BYTES = [b"", b"\x00\x01"]
#: Bytes of the random byte strings beside _BYTES.
_RANDOM_BYTES_MAX = 40
#: Elements of the random arrays (an array may also hold one element twice).
_ARRAY_LENGTH_MAX = 3


def _edges(cls: type[Interval]) -> list[int]:
    low, high = cls.__low__, cls.__high__
    return [
        value
        for value in (low, low + 1, -2, -1, 0, 1, 2, 3, high - 1, high)
        if low <= value <= high
    ]


def _optional_of(annotation: Any) -> Any | None:
    """The type inside ``X | None``, or None when ``annotation`` is not optional."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        options = [option for option in typing.get_args(annotation) if option is not type(None)]
        (option,) = options
        return option
    return None


def _is_subclass(annotation: Any, cls: type) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, cls)


def _unknown(annotation: Any) -> AssertionError:
    return AssertionError(f"no strategy for request field type {annotation!r}: add one")


# --- hypothesis strategies ------------------------------------------------------------------


def _interval(cls: type[Interval]) -> st.SearchStrategy[Any]:
    return st.one_of(st.sampled_from(_edges(cls)), st.integers(cls.__low__, cls.__high__)).map(cls)


def _duration(cls: Any) -> st.SearchStrategy[Any]:
    return st.sampled_from(DURATIONS_MS).map(
        lambda ms: cls.parse(datetime.timedelta(milliseconds=ms))
    )


def _strings(cls: Any) -> st.SearchStrategy[Any]:
    return st.one_of(st.sampled_from(NAMES), st.text(max_size=RANDOM_NAME_LENGTH_MAX)).map(cls)


def _for_type(annotation: Any) -> st.SearchStrategy[Any]:
    option = _optional_of(annotation)
    if option is not None:
        return st.one_of(st.none(), _for_type(option))
    if typing.get_origin(annotation) is tuple:
        element = _for_type(typing.get_args(annotation)[0])
        # Small arrays, often with the same element twice (duplicate partitions,
        # topics, groups).
        return st.one_of(
            st.lists(element, max_size=_ARRAY_LENGTH_MAX),
            element.map(lambda value: [value, value]),
        ).map(tuple)
    if dataclasses.is_dataclass(annotation):
        return entity(annotation)  # type: ignore[arg-type]
    if annotation is bool:
        return st.booleans()
    if annotation in (i32Timedelta, i64Timedelta):
        return _duration(annotation)
    if _is_subclass(annotation, Records):
        return st.sampled_from(RECORDS).map(Records)
    if annotation is uuid.UUID:
        # Zero (no id), all ones, and random ids no topic has.
        return st.one_of(st.sampled_from(_UUIDS), st.uuids())
    if annotation is bytes:
        return st.one_of(st.sampled_from(_BYTES), st.binary(max_size=_RANDOM_BYTES_MAX))
    if _is_subclass(annotation, Interval):
        return _interval(annotation)
    if _is_subclass(annotation, str):
        return _strings(annotation)
    raise _unknown(annotation)


@functools.cache
def entity(cls: type) -> st.SearchStrategy[Any]:
    """A kio request or nested entity of ``cls`` with adversarial field values.

    Built once per class: Hypothesis works out a new strategy's properties
    (can it be empty, are its values reusable) on its first draw, which cost
    more than the draw itself when every example built the strategy anew.
    """
    fields = {
        field.name: st.sampled_from(PARTITION_COUNTS).map(field.type)  # type: ignore[arg-type]
        if field.name in PARTITION_COUNT_FIELDS
        else _for_type(field.type)
        for field in dataclasses.fields(cls)
    }
    return st.fixed_dictionaries(fields).map(lambda values: cls(**values))


def client_ids() -> st.SearchStrategy[str | None]:
    return st.one_of(st.none(), st.sampled_from(CLIENT_IDS))


# --- draws from a random.Random ----------------------------------------------------------------

Drawer = Callable[[random.Random], Any]


def _random_text(rng: random.Random) -> str:
    length = rng.randint(0, RANDOM_NAME_LENGTH_MAX)
    # Mostly ASCII, some of any plane; never a surrogate (not encodable as UTF-8).
    characters = []
    for _ in range(length):
        if rng.random() < 0.7:
            characters.append(chr(rng.randint(0x20, 0x7E)))
        else:
            code = rng.randint(0, 0x10FFFF)
            characters.append(chr(code) if not 0xD800 <= code <= 0xDFFF else "\ufffd")
    return "".join(characters)


def _draw_interval(cls: Any) -> Drawer:
    edges = _edges(cls)
    low, high = cls.__low__, cls.__high__

    def draw(rng: random.Random) -> Any:
        return cls(rng.choice(edges) if rng.random() < 0.5 else rng.randint(low, high))

    return draw


def _draw_choice(values: list[Any]) -> Drawer:
    return lambda rng: rng.choice(values)


@functools.cache
def _drawer(annotation: Any) -> Drawer:
    """How to draw a value of ``annotation``, built once per type (draws are hot)."""
    option = _optional_of(annotation)
    if option is not None:
        inner = _drawer(option)
        return lambda rng: None if rng.random() < 0.25 else inner(rng)
    if typing.get_origin(annotation) is tuple:
        element = _drawer(typing.get_args(annotation)[0])

        def draw_array(rng: random.Random) -> tuple[Any, ...]:
            if rng.random() < 0.2:
                value = element(rng)
                return (value, value)
            return tuple(element(rng) for _ in range(rng.randint(0, _ARRAY_LENGTH_MAX)))

        return draw_array
    if dataclasses.is_dataclass(annotation):
        return _entity_drawer(annotation)  # type: ignore[arg-type]
    if annotation is bool:
        return lambda rng: rng.random() < 0.5
    if annotation in (i32Timedelta, i64Timedelta):
        return _draw_choice(
            [annotation.parse(datetime.timedelta(milliseconds=ms)) for ms in DURATIONS_MS]
        )
    if _is_subclass(annotation, Records):
        return _draw_choice([Records(records) for records in RECORDS])
    if annotation is uuid.UUID:
        return lambda rng: (
            rng.choice(_UUIDS) if rng.random() < 0.5 else uuid.UUID(int=rng.getrandbits(128))
        )
    if annotation is bytes:
        return lambda rng: (
            rng.choice(_BYTES)
            if rng.random() < 0.5
            else rng.randbytes(rng.randint(0, _RANDOM_BYTES_MAX))
        )
    if _is_subclass(annotation, Interval):
        return _draw_interval(annotation)
    if _is_subclass(annotation, str):
        cls = annotation
        return lambda rng: cls(rng.choice(NAMES) if rng.random() < 0.5 else _random_text(rng))
    raise _unknown(annotation)


@functools.cache
def _entity_drawer(cls: type) -> Drawer:
    fields = []
    for field in dataclasses.fields(cls):
        annotation: Any = field.type  # kio's fields carry types, never strings
        if field.name in PARTITION_COUNT_FIELDS:
            fields.append((field.name, _draw_choice([annotation(n) for n in PARTITION_COUNTS])))
        else:
            fields.append((field.name, _drawer(annotation)))

    def draw(rng: random.Random) -> Any:
        return cls(**{name: drawer(rng) for name, drawer in fields})

    return draw


def draw_entity(cls: type, rng: random.Random) -> Any:
    """One kio request or nested entity of ``cls``, drawn from ``rng`` as :func:`entity` draws."""
    return _entity_drawer(cls)(rng)


def draw_client_id(rng: random.Random) -> str | None:
    return None if rng.random() < 0.2 else rng.choice(CLIENT_IDS)

"""Shared helpers of the Kafka codec tests: example kio objects and frame builders."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import io
import itertools
import struct
import types
import typing
import uuid
from typing import Any

from kio.schema.errors import ErrorCode
from kio.serial import entity_writer
from kio.static.primitive import (
    Interval,
    Records,
    TZAware,
    i32Timedelta,
    i64Timedelta,
)

from trioring.protocol.kafka import (
    SUPPORTED_VERSIONS,
    encode_request_header,
    is_flexible,
    request_schema,
    response_schema,
)

#: Every (api_key, api_version) the broker advertises.
SUPPORTED_PAIRS = [
    (api_key, api_version)
    for api_key, (low, high) in sorted(SUPPORTED_VERSIONS.items())
    for api_version in range(low, high + 1)
]


class Variant(enum.Enum):
    """Which example of a schema to build."""

    #: Every optional field set, arrays of two, values at the edges of their ranges.
    FULL = "full"
    #: Nullable fields null, arrays empty, small values.
    MINIMAL = "minimal"


def _edge_int(low: int, high: int, counter: int, variant: Variant) -> int:
    if variant is Variant.MINIMAL:
        return max(low, min(high, counter % 7))
    # Cycle through the extremes and an ordinary value so each field type meets all three.
    choice = counter % 3
    if choice == 0:
        return high
    if choice == 1:
        return low
    return max(low, min(high, 1000 + counter))


class _Builder:
    def __init__(self, variant: Variant) -> None:
        self.variant = variant
        self.counter = itertools.count(1)

    def value(self, annotation: Any) -> Any:
        origin = typing.get_origin(annotation)
        if origin in (types.UnionType, typing.Union):
            arguments = [a for a in typing.get_args(annotation) if a is not type(None)]
            (inner,) = arguments
            if self.variant is Variant.MINIMAL:
                return None
            return self.value(inner)
        if origin is tuple:
            inner, _ellipsis = typing.get_args(annotation)
            count = 2 if self.variant is Variant.FULL else 0
            return tuple(self.value(inner) for _ in range(count))
        if origin is typing.ClassVar:
            raise AssertionError("class variables are not fields")
        counter = next(self.counter)
        if dataclasses.is_dataclass(annotation):
            return self.entity(annotation)
        if annotation is bool:
            return counter % 2 == 0
        if annotation is ErrorCode:
            return ErrorCode.none if self.variant is Variant.MINIMAL else ErrorCode(counter % 50)
        if isinstance(annotation, type) and issubclass(annotation, Interval):
            return annotation(
                _edge_int(annotation.__low__, annotation.__high__, counter, self.variant)
            )
        if annotation is i32Timedelta:
            milliseconds = _edge_int(-(2**31), 2**31 - 1, counter, self.variant)
            return i32Timedelta.parse(datetime.timedelta(milliseconds=milliseconds))
        if annotation is i64Timedelta:
            # datetime.timedelta cannot hold every int64 of milliseconds.
            milliseconds = _edge_int(-(2**40), 2**40, counter, self.variant)
            return i64Timedelta.parse(datetime.timedelta(milliseconds=milliseconds))
        if annotation is TZAware:
            moment = datetime.datetime(2026, 11, 21, 12, 0, counter % 60, tzinfo=datetime.UTC)
            return TZAware.parse(moment)
        if annotation is uuid.UUID:
            return uuid.UUID(int=counter)
        if annotation is Records:
            return Records(bytes(range(counter % 200)) * (3 if self.variant is Variant.FULL else 1))
        if annotation is bytes:
            return bytes(range(counter % 50))
        if isinstance(annotation, type) and issubclass(annotation, str):
            text = f"name-{counter}" if self.variant is Variant.MINIMAL else f"näme-é-{counter}"
            return annotation(text)
        raise NotImplementedError(f"no example for {annotation!r}")

    def entity(self, schema: type[Any]) -> Any:
        hints = typing.get_type_hints(schema)
        values = {field.name: self.value(hints[field.name]) for field in dataclasses.fields(schema)}
        return schema(**values)


def build_example(schema: type[Any], variant: Variant) -> Any:
    """A deterministic example instance of a kio entity class."""
    return _Builder(variant).entity(schema)


def encode_entity(entity: Any) -> bytes:
    buffer = io.BytesIO()
    entity_writer(type(entity))(buffer, entity)
    return buffer.getvalue()


def request_frame(
    api_key: int,
    api_version: int,
    body: bytes,
    *,
    correlation_id: int = 1234,
    client_id: str | None = "trioring-test",
) -> bytes:
    """A request frame (no size prefix) with the header version the API expects."""
    header = encode_request_header(
        api_key,
        api_version,
        correlation_id,
        client_id,
        flexible=is_flexible(api_key, api_version),
    )
    return header + body


def example_request_frames() -> list[tuple[int, int, bytes]]:
    """One valid frame per supported (api, version) and variant."""
    frames = []
    for api_key, api_version in SUPPORTED_PAIRS:
        for variant in Variant:
            request = build_example(request_schema(api_key, api_version), variant)
            frames.append(
                (api_key, api_version, request_frame(api_key, api_version, encode_entity(request)))
            )
    return frames


def example_response(api_key: int, api_version: int, variant: Variant) -> Any:
    return build_example(response_schema(api_key, api_version), variant)


SIZE = struct.Struct(">i")

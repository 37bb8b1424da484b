"""The ApiVersions response: what this broker speaks, v0-v4, and the UNSUPPORTED_VERSION answer."""

from __future__ import annotations

import dataclasses
import datetime
import functools
import struct
import sys
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

from kio.schema.errors import ErrorCode
from kio.static.primitive import i16, i32Timedelta, i64

from trioring.protocol.kafka._responses import encode_response
from trioring.protocol.kafka._schemas import (
    ADVERTISED_VERSIONS,
    ApiKey,
    response_schema,
)

#: Feature ranges this broker supports, as a Kafka 4.0 node reports them in
#: ApiVersions v3+ (KIP-584). Only what is implemented: metadata.version from
#: 3.3-IV3 (7, Kafka 4.0's minimum) to 4.0-IV3 (25), the protocol level
#: trioring answers at; kraft.version 0 (a static single controller, no
#: KIP-853 voter changes); group.version 0-1 (1: the consumer group protocol of
#: KIP-848, finalized as in a Kafka 4.0 cluster); transaction.version 0 (no
#: transactions).
SUPPORTED_FEATURES: Final[Mapping[str, tuple[int, int]]] = MappingProxyType(
    {
        "group.version": (0, 1),
        "kraft.version": (0, 0),
        "metadata.version": (7, 25),
        "transaction.version": (0, 0),
    }
)

#: Cluster-wide finalized levels. Kafka leaves level-0 features out of this
#: list; metadata.version is set once, when the cluster is created, and never
#: changes (there is no UpdateFeatures), so its epoch is 0.
FINALIZED_FEATURES: Final[Mapping[str, int]] = MappingProxyType(
    {"group.version": 1, "metadata.version": 25}
)
FINALIZED_FEATURES_EPOCH = 0


def _field_names(cls: type) -> frozenset[str]:
    return frozenset(field.name for field in dataclasses.fields(cls))


@functools.cache
def _classes(api_version: int) -> tuple[type[Any], type[Any], type[Any], type[Any]]:
    response_class = response_schema(ApiKey.API_VERSIONS, api_version)
    module = sys.modules[response_class.__module__]
    return (
        response_class,
        module.ApiVersion,
        getattr(module, "SupportedFeatureKey", object),
        getattr(module, "FinalizedFeatureKey", object),
    )


def build_api_versions_response(
    api_version: int,
    *,
    error_code: int = 0,
    throttle_time_ms: int = 0,
    supported_versions: Mapping[int, tuple[int, int]] = ADVERTISED_VERSIONS,
    with_features: bool = True,
) -> Any:
    """kio's ApiVersions response of ``api_version`` (0-4) listing ``supported_versions``.

    v0 has no throttle time; ``throttle_time_ms`` is ignored there. From v3
    on the features go in their tagged fields (``with_features``); as in
    Kafka, v3 leaves out supported features whose minimum is 0 (older
    clients refuse a 0 minimum).
    """
    response_class, api_class, supported_class, finalized_class = _classes(api_version)
    fields: dict[str, Any] = {
        "error_code": ErrorCode(error_code),
        "api_keys": tuple(
            api_class(api_key=i16(key), min_version=i16(low), max_version=i16(high))
            for key, (low, high) in sorted(supported_versions.items())
        ),
    }
    names = _field_names(response_class)
    if "throttle_time" in names:
        fields["throttle_time"] = i32Timedelta.parse(
            datetime.timedelta(milliseconds=throttle_time_ms)
        )
    if "supported_features" in names and with_features:
        fields["supported_features"] = tuple(
            supported_class(name=name, min_version=i16(low), max_version=i16(high))
            for name, (low, high) in sorted(SUPPORTED_FEATURES.items())
            if low > 0 or api_version >= 4
        )
        fields["finalized_features_epoch"] = i64(FINALIZED_FEATURES_EPOCH)
        fields["finalized_features"] = tuple(
            finalized_class(name=name, max_version_level=i16(level), min_version_level=i16(level))
            for name, level in sorted(FINALIZED_FEATURES.items())
        )
    return response_class(**fields)


def encode_api_versions_response(
    correlation_id: int,
    api_version: int,
    *,
    error_code: int = 0,
    throttle_time_ms: int = 0,
    supported_versions: Mapping[int, tuple[int, int]] = ADVERTISED_VERSIONS,
) -> bytes:
    """The framed answer to an ApiVersions request of any version, supported or not.

    A version we do not speak gets UNSUPPORTED_VERSION (35) in a v0 body that
    still lists our ranges, as Kafka does: the client then retries with the
    highest version both sides know. Closing the connection instead makes
    librdkafka reconnect forever and kafka-python time out. Any other
    ``error_code`` (INVALID_REQUEST for a bad client software name) is
    answered, as Kafka does, with no ranges.

    Every connection asks this first, and building the answer through kio
    costs 0.35-0.6 ms; a frame encoded once per kind of answer is copied
    with the request's correlation id instead.
    """
    low, high = supported_versions[ApiKey.API_VERSIONS]
    if not low <= api_version <= high:
        api_version, error_code, throttle_time_ms = -1, ErrorCode.unsupported_version, 0
    frame = _encoded_frame(
        api_version, int(error_code), throttle_time_ms, tuple(sorted(supported_versions.items()))
    )
    return b"".join((frame[: _INT32.size], _INT32.pack(correlation_id), frame[2 * _INT32.size :]))


_INT32 = struct.Struct(">i")
#: Frames kept by _encoded_frame: a server answers a handful of kinds (per
#: version, with or without an error); any other caller's are rebuilt.
_ENCODED_FRAMES_KEPT = 32


@functools.lru_cache(maxsize=_ENCODED_FRAMES_KEPT)
def _encoded_frame(
    api_version: int,
    error_code: int,
    throttle_time_ms: int,
    ranges: tuple[tuple[int, tuple[int, int]], ...],
) -> bytes:
    """The answer with correlation id 0; ``api_version`` -1 is the UNSUPPORTED_VERSION one."""
    supported_versions = dict(ranges)
    if api_version < 0:
        response = build_api_versions_response(
            0, error_code=error_code, supported_versions=supported_versions
        )
        return encode_response(ApiKey.API_VERSIONS, 0, 0, response)
    ok = error_code == ErrorCode.none
    response = build_api_versions_response(
        api_version,
        error_code=error_code,
        throttle_time_ms=throttle_time_ms,
        supported_versions=supported_versions if ok else {},
        with_features=ok,
    )
    return encode_response(ApiKey.API_VERSIONS, api_version, 0, response)

"""The ApiVersions response: what this broker speaks, v0-v3, and the UNSUPPORTED_VERSION answer."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import TypeAlias

from kio.schema.api_versions.v0 import response as v0
from kio.schema.api_versions.v1 import response as v1
from kio.schema.api_versions.v2 import response as v2
from kio.schema.api_versions.v3 import response as v3
from kio.schema.errors import ErrorCode
from kio.static.primitive import i16, i32Timedelta

from trioring.protocol.kafka._responses import encode_response
from trioring.protocol.kafka._schemas import SUPPORTED_VERSIONS, ApiKey

ApiVersionsResponse: TypeAlias = (
    v0.ApiVersionsResponse
    | v1.ApiVersionsResponse
    | v2.ApiVersionsResponse
    | v3.ApiVersionsResponse
)


def build_api_versions_response(
    api_version: int,
    *,
    error_code: int = 0,
    throttle_time_ms: int = 0,
    supported_versions: Mapping[int, tuple[int, int]] = SUPPORTED_VERSIONS,
) -> ApiVersionsResponse:
    """kio's ApiVersions response of ``api_version`` (0-3) listing ``supported_versions``.

    v0 has no throttle time; ``throttle_time_ms`` is ignored there.
    """
    code = ErrorCode(error_code)
    ranges = sorted(supported_versions.items())
    if api_version == 0:
        return v0.ApiVersionsResponse(
            error_code=code,
            api_keys=tuple(
                v0.ApiVersion(api_key=i16(key), min_version=i16(low), max_version=i16(high))
                for key, (low, high) in ranges
            ),
        )
    throttle_time = i32Timedelta.parse(datetime.timedelta(milliseconds=throttle_time_ms))
    if api_version == 1:
        return v1.ApiVersionsResponse(
            error_code=code,
            api_keys=tuple(
                v1.ApiVersion(api_key=i16(key), min_version=i16(low), max_version=i16(high))
                for key, (low, high) in ranges
            ),
            throttle_time=throttle_time,
        )
    if api_version == 2:
        return v2.ApiVersionsResponse(
            error_code=code,
            api_keys=tuple(
                v2.ApiVersion(api_key=i16(key), min_version=i16(low), max_version=i16(high))
                for key, (low, high) in ranges
            ),
            throttle_time=throttle_time,
        )
    if api_version == 3:
        return v3.ApiVersionsResponse(
            error_code=code,
            api_keys=tuple(
                v3.ApiVersion(api_key=i16(key), min_version=i16(low), max_version=i16(high))
                for key, (low, high) in ranges
            ),
            throttle_time=throttle_time,
        )
    raise ValueError(f"ApiVersions response v{api_version} does not exist here (v0-v3 do)")


def encode_api_versions_response(
    correlation_id: int,
    api_version: int,
    *,
    error_code: int = 0,
    throttle_time_ms: int = 0,
    supported_versions: Mapping[int, tuple[int, int]] = SUPPORTED_VERSIONS,
) -> bytes:
    """The framed answer to an ApiVersions request of any version, supported or not.

    A version we do not speak gets UNSUPPORTED_VERSION (35) in a v0 body that
    still lists our ranges, as Kafka does: the client then retries with the
    highest version both sides know. Closing the connection instead makes
    librdkafka reconnect forever and kafka-python time out. Any other
    ``error_code`` (INVALID_REQUEST for a bad client software name) is
    answered, as Kafka does, with no ranges.
    """
    low, high = supported_versions[ApiKey.API_VERSIONS]
    if low <= api_version <= high:
        response = build_api_versions_response(
            api_version,
            error_code=error_code,
            throttle_time_ms=throttle_time_ms,
            supported_versions=supported_versions if error_code == ErrorCode.none else {},
        )
        return encode_response(ApiKey.API_VERSIONS, api_version, correlation_id, response)
    response = build_api_versions_response(
        0,
        error_code=ErrorCode.unsupported_version,
        supported_versions=supported_versions,
    )
    return encode_response(ApiKey.API_VERSIONS, 0, correlation_id, response)

"""The ApiVersions answer: our ranges, v0-v3, and UNSUPPORTED_VERSION in a v0 body."""

from __future__ import annotations

import datetime
import struct

import pytest
from kio.schema.errors import ErrorCode
from kio.serial import entity_reader

from trioring.protocol.kafka import (
    SUPPORTED_VERSIONS,
    ApiKey,
    build_api_versions_response,
    encode_api_versions_response,
    response_schema,
)

RESPONSE_HEADER = struct.Struct(">ii")


def decode(frame: bytes, api_version: int) -> object:
    size, _correlation_id = RESPONSE_HEADER.unpack_from(frame, 0)
    assert size == len(frame) - 4
    # Response header v0 for every version: the body follows the correlation id.
    response, consumed = entity_reader(response_schema(ApiKey.API_VERSIONS, api_version))(
        frame, RESPONSE_HEADER.size
    )
    assert RESPONSE_HEADER.size + consumed == len(frame)
    return response


@pytest.mark.parametrize("api_version", range(4))
def test_lists_every_supported_range(api_version: int) -> None:
    response = build_api_versions_response(api_version, throttle_time_ms=5)
    assert response.error_code == ErrorCode.none
    assert type(response).__version__ == api_version
    ranges = {item.api_key: (item.min_version, item.max_version) for item in response.api_keys}
    assert ranges == dict(SUPPORTED_VERSIONS)
    assert [item.api_key for item in response.api_keys] == sorted(SUPPORTED_VERSIONS)
    if api_version >= 1:
        assert response.throttle_time == datetime.timedelta(milliseconds=5)


@pytest.mark.parametrize("api_version", range(4))
def test_encoded_response_of_each_version(api_version: int) -> None:
    frame = encode_api_versions_response(-3, api_version)
    assert RESPONSE_HEADER.unpack_from(frame, 0)[1] == -3
    assert decode(frame, api_version) == build_api_versions_response(api_version)


@pytest.mark.parametrize("api_version", [4, 5, 127, -1])
def test_unsupported_version_gets_error_35_in_a_v0_body(api_version: int) -> None:
    frame = encode_api_versions_response(99, api_version)
    assert RESPONSE_HEADER.unpack_from(frame, 0)[1] == 99
    response = decode(frame, 0)
    assert response == build_api_versions_response(0, error_code=35)
    assert frame[8:10] == b"\x00\x23"  # error code 35 right after the v0 header


def test_custom_ranges() -> None:
    ranges = {ApiKey.API_VERSIONS: (0, 2), ApiKey.METADATA: (1, 1)}
    frame = encode_api_versions_response(1, 3, supported_versions=ranges)
    response = decode(frame, 0)
    assert response == build_api_versions_response(0, error_code=35, supported_versions=ranges)


def test_version_beyond_three_cannot_be_built() -> None:
    with pytest.raises(ValueError, match="v4 does not exist here"):
        build_api_versions_response(4)

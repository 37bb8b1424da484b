"""The ApiVersions answer: our ranges and features, v0-v4, and UNSUPPORTED_VERSION in a v0 body."""

from __future__ import annotations

import datetime
import struct

import pytest
from kio.schema.errors import ErrorCode
from kio.serial import entity_reader

from trioring.protocol.kafka import (
    ADVERTISED_VERSIONS,
    FINALIZED_FEATURES,
    SUPPORTED_FEATURES,
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


@pytest.mark.parametrize("api_version", range(5))
def test_lists_every_advertised_range(api_version: int) -> None:
    response = build_api_versions_response(api_version, throttle_time_ms=5)
    assert response.error_code == ErrorCode.none
    assert type(response).__version__ == api_version
    ranges = {item.api_key: (item.min_version, item.max_version) for item in response.api_keys}
    assert ranges == dict(ADVERTISED_VERSIONS)
    assert [item.api_key for item in response.api_keys] == sorted(ADVERTISED_VERSIONS)
    if api_version >= 1:
        assert response.throttle_time == datetime.timedelta(milliseconds=5)


def test_advertised_ranges_are_the_supported_ones_but_produce_from_v0() -> None:
    # Kafka 4.0 does the same (KAFKA-18659): old librdkafka compresses only
    # when Produce v0 is in the range; v0-v2 requests are still refused.
    assert ADVERTISED_VERSIONS[ApiKey.PRODUCE] == (0, SUPPORTED_VERSIONS[ApiKey.PRODUCE][1])
    assert SUPPORTED_VERSIONS[ApiKey.PRODUCE][0] == 3
    assert {k: v for k, v in ADVERTISED_VERSIONS.items() if k != ApiKey.PRODUCE} == {
        k: v for k, v in SUPPORTED_VERSIONS.items() if k != ApiKey.PRODUCE
    }


@pytest.mark.parametrize("api_version", [3, 4])
def test_features_from_v3(api_version: int) -> None:
    response = build_api_versions_response(api_version)
    supported = {f.name: (f.min_version, f.max_version) for f in response.supported_features}
    # v3 leaves out features whose minimum is 0, as Kafka does (old clients refuse it).
    expected = {
        name: versions
        for name, versions in SUPPORTED_FEATURES.items()
        if api_version >= 4 or versions[0] > 0
    }
    assert supported == expected
    assert supported["metadata.version"] == (7, 25)  # 3.3-IV3 .. 4.0-IV3
    finalized = {
        f.name: (f.min_version_level, f.max_version_level) for f in response.finalized_features
    }
    assert finalized == {name: (level, level) for name, level in FINALIZED_FEATURES.items()}
    assert response.finalized_features_epoch == 0
    for name, level in FINALIZED_FEATURES.items():
        assert SUPPORTED_FEATURES[name][0] <= level <= SUPPORTED_FEATURES[name][1]


def test_error_answer_has_no_features() -> None:
    response = build_api_versions_response(4, error_code=42, with_features=False)
    assert response.supported_features == ()
    assert response.finalized_features_epoch == -1


@pytest.mark.parametrize("api_version", range(5))
def test_encoded_response_of_each_version(api_version: int) -> None:
    frame = encode_api_versions_response(-3, api_version)
    assert RESPONSE_HEADER.unpack_from(frame, 0)[1] == -3
    assert decode(frame, api_version) == build_api_versions_response(api_version)


@pytest.mark.parametrize("api_version", [5, 127, -1])
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


def test_version_beyond_four_cannot_be_built() -> None:
    with pytest.raises(ValueError, match="not a supported version"):
        build_api_versions_response(5)


@pytest.mark.parametrize("api_version", [0, 3, 4, 9])
@pytest.mark.parametrize("error_code", [ErrorCode.none, ErrorCode.invalid_request])
def test_answers_kept_between_requests_differ_only_by_correlation_id(
    api_version: int, error_code: ErrorCode
) -> None:
    """The frame is encoded once per kind of answer; each request gets its own id."""
    frames = [
        encode_api_versions_response(correlation_id, api_version, error_code=error_code)
        for correlation_id in (7, -(2**31), 2**31 - 1, 7)
    ]
    assert [RESPONSE_HEADER.unpack_from(f, 0)[1] for f in frames] == [7, -(2**31), 2**31 - 1, 7]
    assert len({f[:4] + f[8:] for f in frames}) == 1
    assert frames[0] == frames[3]
    shown = api_version if api_version <= 4 else 0
    ok = error_code == ErrorCode.none
    expected = build_api_versions_response(
        shown,
        error_code=error_code if api_version <= 4 else ErrorCode.unsupported_version,
        supported_versions=ADVERTISED_VERSIONS if ok or api_version > 4 else {},
        with_features=ok or api_version > 4,
    )
    assert decode(frames[0], shown) == expected


def test_answers_kept_follow_the_ranges_and_throttle_asked() -> None:
    plain = encode_api_versions_response(1, 2)
    narrow = {ApiKey.API_VERSIONS: (0, 3), ApiKey.METADATA: (1, 1)}
    assert decode(encode_api_versions_response(1, 2, supported_versions=narrow), 2) == (
        build_api_versions_response(2, supported_versions=narrow)
    )
    throttled = decode(encode_api_versions_response(1, 2, throttle_time_ms=250), 2)
    assert throttled == build_api_versions_response(2, throttle_time_ms=250)
    assert encode_api_versions_response(1, 2) == plain

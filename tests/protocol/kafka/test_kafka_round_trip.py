"""Every supported (api, version): kio-encoded requests decode, our responses decode in kio."""

from __future__ import annotations

import dataclasses
import struct
from typing import Any

import pytest
from kafka_codec_support import (
    SUPPORTED_PAIRS,
    Variant,
    build_example,
    encode_entity,
    example_response,
    request_frame,
)
from kio.index import load_request_schema
from kio.serial import entity_reader

from trioring.errors import ProtocolError
from trioring.protocol.kafka import (
    SUPPORTED_VERSIONS,
    ApiKey,
    decode_request,
    decode_request_body,
    encode_request_header,
    encode_response,
    encode_response_chunks,
    parse_request_header,
    request_schema,
    response_schema,
)

RESPONSE_HEADER = struct.Struct(">ii")


def test_supported_versions_are_kafka_4_0s() -> None:
    # Kafka 4.0's upper bounds; the lower bounds that old clients need.
    assert dict(SUPPORTED_VERSIONS) == {
        0: (3, 12),
        1: (4, 17),
        2: (1, 10),
        3: (0, 13),
        8: (2, 9),
        9: (1, 9),
        10: (0, 6),
        11: (0, 9),
        12: (0, 4),
        13: (0, 5),
        14: (0, 5),
        15: (0, 6),
        16: (0, 5),
        18: (0, 4),
        19: (2, 7),
        20: (1, 6),
        22: (0, 5),
        32: (0, 4),
        33: (0, 2),
        21: (0, 2),
        35: (1, 4),
        37: (0, 3),
        42: (0, 2),
        43: (0, 2),
        44: (0, 1),
        45: (0, 0),
        46: (0, 0),
        47: (0, 0),
        55: (0, 2),
        60: (0, 2),
        61: (0, 0),
        68: (0, 1),
        69: (0, 1),
        75: (0, 0),
    }


@pytest.mark.parametrize(("api_key", "api_version"), SUPPORTED_PAIRS)
def test_schemas_match_the_requested_version(api_key: int, api_version: int) -> None:
    for schema in (request_schema(api_key, api_version), response_schema(api_key, api_version)):
        assert (schema.__api_key__, schema.__version__) == (api_key, api_version)


def test_schema_lookup_refuses_unsupported_versions() -> None:
    with pytest.raises(ValueError, match="not a supported version"):
        request_schema(ApiKey.PRODUCE, 13)
    with pytest.raises(ValueError, match="not a supported version"):
        response_schema(99, 0)


@pytest.mark.parametrize("variant", list(Variant))
@pytest.mark.parametrize(("api_key", "api_version"), SUPPORTED_PAIRS)
def test_request_round_trip(api_key: int, api_version: int, variant: Variant) -> None:
    request = build_example(request_schema(api_key, api_version), variant)
    frame = request_frame(
        api_key, api_version, encode_entity(request), correlation_id=-99, client_id="rt"
    )
    decoded = decode_request(frame)
    assert decoded.error is None
    assert decoded.body == request
    assert type(decoded.body) is type(request)
    header = decoded.header
    assert (header.api_key, header.api_version, header.correlation_id) == (
        api_key,
        api_version,
        -99,
    )
    assert header.client_id == "rt"


@pytest.mark.parametrize(("api_key", "api_version"), SUPPORTED_PAIRS)
def test_bytes_after_the_body_are_ignored_as_by_kafka(api_key: int, api_version: int) -> None:
    # Kafka's parser ignores them, and librdkafka 2.16 sends 3 after an
    # all-topics Metadata v9+ body (below).
    request = build_example(request_schema(api_key, api_version), Variant.MINIMAL)
    frame = request_frame(api_key, api_version, encode_entity(request) + b"\x01\x00\x00")
    decoded = decode_request(frame)
    assert decoded.error is None
    assert decoded.body == request


def test_librdkafkas_all_topics_metadata_request_decodes() -> None:
    # confluent-kafka 2.16's AdminClient.list_topics() at Metadata v13, as captured.
    frame = bytes.fromhex("0003000d00000003000772646b61666b610000000000010000")
    decoded = decode_request(frame)
    assert decoded.error is None
    assert decoded.body is not None
    assert decoded.body.topics is None


#: Versions whose request body is not empty (ApiVersions v0-2, ListGroups v0-1 are).
NON_EMPTY_REQUEST_PAIRS = [
    (api_key, api_version)
    for api_key, api_version in SUPPORTED_PAIRS
    if dataclasses.fields(request_schema(api_key, api_version))
]


@pytest.mark.parametrize(("api_key", "api_version"), NON_EMPTY_REQUEST_PAIRS)
def test_truncated_request_is_refused_with_its_header(api_key: int, api_version: int) -> None:
    request = build_example(request_schema(api_key, api_version), Variant.FULL)
    frame = request_frame(api_key, api_version, encode_entity(request))
    decoded = decode_request(frame[:-1])
    assert isinstance(decoded.error, ProtocolError)
    assert "request body is malformed" in str(decoded.error)
    assert decoded.header.correlation_id == 1234


def test_decode_body_refuses_a_header_with_an_error() -> None:
    frame = encode_request_header(99, 0, 1, None, flexible=False)
    header, error = parse_request_header(frame)
    assert error is not None
    with pytest.raises(ValueError, match="not fully parsed"):
        decode_request_body(header, frame)


def test_unknown_tagged_field_in_a_flexible_body_is_a_protocol_error() -> None:
    # kio refuses tags it does not know (KeyError); Kafka would skip them. No
    # client sends any in ApiVersions v3, the only flexible version we speak.
    body = b"\x02a\x02b" + b"\x01\x05\x01x"
    decoded = decode_request(request_frame(ApiKey.API_VERSIONS, 3, body))
    assert isinstance(decoded.error, ProtocolError)
    assert "KeyError" in str(decoded.error)


def test_describe_configs_v0_differs_from_v1_only_where_kafka_says() -> None:
    v0_request = [field.name for field in dataclasses.fields(request_schema(32, 0))]
    v1_request = [field.name for field in dataclasses.fields(load_request_schema(32, 1))]
    assert v1_request == [*v0_request, "include_synonyms"]
    response = build_example(response_schema(32, 0), Variant.FULL)
    config = response.results[0].configs[0]
    assert [field.name for field in dataclasses.fields(config)] == [
        "name",
        "value",
        "read_only",
        "is_default",
        "is_sensitive",
    ]


def split_response(frame: bytes, flexible_header: bool) -> tuple[int, bytes]:
    (size, correlation_id) = RESPONSE_HEADER.unpack_from(frame, 0)
    assert size == len(frame) - 4
    body = frame[RESPONSE_HEADER.size :]
    if flexible_header:
        assert body[:1] == b"\x00", "response header v1 carries an empty tagged-field section"
        body = body[1:]
    return correlation_id, body


def decode_response(api_key: int, api_version: int, body: bytes) -> Any:
    schema = response_schema(api_key, api_version)
    decoded, size = entity_reader(schema)(body, 0)
    assert size == len(body)
    return decoded


@pytest.mark.parametrize("variant", list(Variant))
@pytest.mark.parametrize(("api_key", "api_version"), SUPPORTED_PAIRS)
def test_response_round_trip(api_key: int, api_version: int, variant: Variant) -> None:
    response = example_response(api_key, api_version, variant)
    frame = encode_response(api_key, api_version, 2**31 - 1, response)
    # Only flexible versions use response header v1, and never ApiVersions.
    flexible_header = response_schema(api_key, api_version).__flexible__
    if api_key == ApiKey.API_VERSIONS:
        flexible_header = False
    correlation_id, body = split_response(frame, flexible_header)
    assert correlation_id == 2**31 - 1
    assert decode_response(api_key, api_version, body) == response
    assert encode_response_chunks(api_key, api_version, 2**31 - 1, response) == [frame]


def test_api_versions_v3_response_header_is_v0() -> None:
    response = example_response(ApiKey.API_VERSIONS, 3, Variant.MINIMAL)
    frame = encode_response(ApiKey.API_VERSIONS, 3, 7, response)
    # v0 header: the error code (int16 0) follows the correlation id directly.
    assert frame[4:8] == b"\x00\x00\x00\x07"
    assert frame[8:10] == b"\x00\x00"


def test_response_must_match_the_api_and_version() -> None:
    response = example_response(ApiKey.METADATA, 4, Variant.MINIMAL)
    with pytest.raises(ValueError, match="cannot answer Metadata v3"):
        encode_response(ApiKey.METADATA, 3, 1, response)
    with pytest.raises(ValueError, match="cannot answer Fetch v4"):
        encode_response(ApiKey.FETCH, 4, 1, response)

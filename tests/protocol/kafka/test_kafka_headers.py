"""Request header parsing: v1 and v2, unsupported APIs keep their correlation id."""

from __future__ import annotations

import struct

import pytest

from trioring.errors import ProtocolError
from trioring.protocol.kafka import (
    SUPPORTED_VERSIONS,
    ApiKey,
    UnsupportedVersionError,
    decode_request,
    encode_request_header,
    is_flexible,
    parse_request_header,
    read_unsigned_varint,
    skip_tagged_fields,
)

PREFIX = struct.Struct(">hhi")


#: The first flexible version (KIP-482) of each API, from Kafka's message definitions.
KAFKA_FIRST_FLEXIBLE_VERSION = {
    ApiKey.PRODUCE: 9,
    ApiKey.FETCH: 12,
    ApiKey.LIST_OFFSETS: 6,
    ApiKey.METADATA: 9,
    ApiKey.OFFSET_COMMIT: 8,
    ApiKey.OFFSET_FETCH: 6,
    ApiKey.FIND_COORDINATOR: 3,
    ApiKey.JOIN_GROUP: 6,
    ApiKey.HEARTBEAT: 4,
    ApiKey.LEAVE_GROUP: 4,
    ApiKey.SYNC_GROUP: 4,
    ApiKey.DESCRIBE_GROUPS: 5,
    ApiKey.LIST_GROUPS: 3,
    ApiKey.API_VERSIONS: 3,
    ApiKey.CREATE_TOPICS: 5,
    ApiKey.DELETE_TOPICS: 4,
    ApiKey.INIT_PRODUCER_ID: 2,
    ApiKey.DESCRIBE_CONFIGS: 4,
    ApiKey.ALTER_CONFIGS: 2,
    ApiKey.CREATE_PARTITIONS: 2,
    ApiKey.DESCRIBE_CLUSTER: 0,
    ApiKey.DELETE_RECORDS: 2,
    ApiKey.DELETE_GROUPS: 2,
    ApiKey.OFFSET_DELETE: 99,  # never flexible
    ApiKey.DESCRIBE_LOG_DIRS: 2,
    ApiKey.DESCRIBE_TOPIC_PARTITIONS: 0,
    ApiKey.ELECT_LEADERS: 2,
    ApiKey.INCREMENTAL_ALTER_CONFIGS: 1,
    ApiKey.ALTER_PARTITION_REASSIGNMENTS: 0,
    ApiKey.LIST_PARTITION_REASSIGNMENTS: 0,
    ApiKey.DESCRIBE_QUORUM: 0,
    ApiKey.DESCRIBE_PRODUCERS: 0,
    ApiKey.CONSUMER_GROUP_HEARTBEAT: 0,
    ApiKey.CONSUMER_GROUP_DESCRIBE: 0,
}


def test_flexible_versions_are_kafkas() -> None:
    for api_key, (low, high) in SUPPORTED_VERSIONS.items():
        for api_version in range(low, high + 1):
            expected = api_version >= KAFKA_FIRST_FLEXIBLE_VERSION[api_key]
            assert is_flexible(api_key, api_version) == expected, (api_key, api_version)


def test_header_v1() -> None:
    frame = encode_request_header(3, 4, 77, "client", flexible=False) + b"body"
    header, error = parse_request_header(frame)
    assert error is None
    assert (header.api_key, header.api_version, header.correlation_id) == (3, 4, 77)
    assert header.client_id == "client"
    assert header.header_version == 1
    assert header.body_offset == len(frame) - 4


def test_header_v2_skips_tagged_fields() -> None:
    prefix = PREFIX.pack(18, 3, -5) + b"\x00\x02id"
    # Two unknown tagged fields (tag 0 of 3 bytes, tag 7 of 0 bytes): Kafka says ignore them.
    tagged_fields = b"\x02" + b"\x00\x03abc" + b"\x07\x00"
    frame = prefix + tagged_fields + b"BODY"
    header, error = parse_request_header(frame)
    assert error is None
    assert header.correlation_id == -5
    assert header.client_id == "id"
    assert header.header_version == 2
    assert frame[header.body_offset :] == b"BODY"


def test_flexible_header_client_id_is_an_int16_string() -> None:
    # A compact string would start with a varint length (0x03 for "id"); Kafka keeps int16.
    frame = encode_request_header(18, 3, 1, "id", flexible=True)
    assert frame[8:12] == b"\x00\x02id"
    assert frame[12:] == b"\x00"


def test_null_and_empty_client_id() -> None:
    header, error = parse_request_header(encode_request_header(3, 0, 1, None, flexible=False))
    assert error is None and header.client_id is None
    header, error = parse_request_header(encode_request_header(3, 0, 1, "", flexible=False))
    assert error is None and header.client_id == ""


def test_non_ascii_client_id() -> None:
    header, error = parse_request_header(
        encode_request_header(3, 0, 1, "prod-é-客户", flexible=False)
    )
    assert error is None and header.client_id == "prod-é-客户"


@pytest.mark.parametrize("length", [0, 1, 7])
def test_frame_without_correlation_id_raises(length: int) -> None:
    with pytest.raises(ProtocolError, match="shorter than the 8-byte header prefix"):
        parse_request_header(PREFIX.pack(3, 0, 99)[:length])
    with pytest.raises(ProtocolError):
        decode_request(PREFIX.pack(3, 0, 99)[:length])


def test_unknown_api_key_keeps_correlation_id() -> None:
    frame = encode_request_header(71, 0, 4242, "librdkafka", flexible=True)
    header, error = parse_request_header(frame)
    assert isinstance(error, UnsupportedVersionError)
    assert error.kafka_error_code == 35
    assert (error.api_key, error.api_version) == (71, 0)
    assert "API key 71 is not supported" in str(error)
    assert header.correlation_id == 4242
    assert header.client_id == "librdkafka"
    assert header.header_version is None and header.body_offset is None


@pytest.mark.parametrize(
    ("api_key", "api_version"), [(18, 5), (18, 99), (0, 2), (0, 13), (1, 18), (3, 14), (-1, 0)]
)
def test_unsupported_version_keeps_correlation_id(api_key: int, api_version: int) -> None:
    frame = encode_request_header(api_key, api_version, 31337, "kafka-python", flexible=True)
    request = decode_request(frame + b"whatever follows")
    assert isinstance(request.error, UnsupportedVersionError)
    assert request.body is None
    assert request.header.correlation_id == 31337
    assert request.header.api_key == api_key
    assert request.header.api_version == api_version


def test_unsupported_version_message_names_the_range() -> None:
    _header, error = parse_request_header(encode_request_header(18, 5, 1, "x", flexible=True))
    assert str(error) == "ApiVersions v5 is not supported; this broker speaks v0-v4"


@pytest.mark.parametrize(
    ("tail", "message"),
    [
        (b"", "ends before its client id"),
        (b"\x00", "ends before its client id"),
        (b"\x00\x05ab", "runs past the end"),
        (b"\xff\xfe", "negative length -2"),
        (b"\x00\x02\xff\xfe", "not UTF-8"),
    ],
)
def test_malformed_client_id_keeps_correlation_id(tail: bytes, message: str) -> None:
    header, error = parse_request_header(PREFIX.pack(3, 1, 8) + tail)
    assert isinstance(error, ProtocolError)
    assert not isinstance(error, UnsupportedVersionError)
    assert message in str(error)
    assert header.correlation_id == 8
    assert header.client_id is None
    assert header.body_offset is None


@pytest.mark.parametrize(
    "tagged_fields",
    [
        b"",
        b"\x01",
        b"\x01\x00",
        b"\x01\x00\x05abc",
        b"\x80\x80\x80\x80\x80\x01",
        b"\xff\xff\xff\xff\x7f",
    ],
)
def test_malformed_header_tagged_fields(tagged_fields: bytes) -> None:
    frame = PREFIX.pack(18, 3, 12) + b"\x00\x00" + tagged_fields
    header, error = parse_request_header(frame)
    assert isinstance(error, ProtocolError)
    assert header.correlation_id == 12
    assert header.client_id == ""
    assert header.body_offset is None


def test_unsigned_varint() -> None:
    assert read_unsigned_varint(b"\x00", 0) == (0, 1)
    assert read_unsigned_varint(b"\x7f", 0) == (127, 1)
    assert read_unsigned_varint(b"\x80\x01", 0) == (128, 2)
    assert read_unsigned_varint(b"x\xff\xff\xff\xff\x0f", 1) == (2**32 - 1, 6)
    with pytest.raises(ProtocolError, match="does not fit in 32 bits"):
        read_unsigned_varint(b"\xff\xff\xff\xff\x1f", 0)
    with pytest.raises(ProtocolError, match="longer than 5 bytes"):
        read_unsigned_varint(b"\x80\x80\x80\x80\x80\x00", 0)
    with pytest.raises(ProtocolError, match="past the end"):
        read_unsigned_varint(b"\x80", 0)


def test_skip_tagged_fields() -> None:
    assert skip_tagged_fields(b"\x00rest", 0) == 1
    big_field = b"\x01" + b"\x05" + b"\x80\x01" + b"z" * 128
    assert skip_tagged_fields(big_field + b"rest", 0) == len(big_field)

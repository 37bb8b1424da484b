"""The shape check that runs before kio: counts and lengths bounded by the frame.

kio's native decoder reserves memory by the counts a client sends, and a
failed reservation aborts the process. These tests decode under an
address-space limit, where such a reservation fails instead of being
quietly granted by overcommit as it is on a large machine.
"""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import pytest
from kafka_codec_support import SUPPORTED_PAIRS, example_request_frames

from trioring.errors import ProtocolError
from trioring.protocol.kafka import decode_request, encode_request_header, request_schema
from trioring.protocol.kafka._shape import check_request_shape

HERE = Path(__file__).resolve().parent
#: Room for the interpreter and its imports, far below what a planted count asks for.
ADDRESS_SPACE_BYTES = 1 << 30


def test_extreme_lengths_everywhere_do_not_abort_the_decoder() -> None:
    result = subprocess.run(
        [sys.executable, str(HERE / "shape_sweep.py"), str(ADDRESS_SPACE_BYTES)],
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    # Most mutations are refused; some (a planted value in a plain int) decode.
    assert int(result.stdout) > 1000


@pytest.mark.parametrize(("api_key", "api_version"), SUPPORTED_PAIRS)
def test_every_supported_schema_has_a_shape(api_key: int, api_version: int) -> None:
    # Decoding runs the shape check first: a kafka_type it does not know fails
    # here (an AssertionError), not on a client's request; valid frames pass.
    for key, version, frame in example_request_frames():
        if (key, version) == (api_key, api_version):
            assert decode_request(frame).error is None


#: Decodes a Metadata v1 answer of 8 bytes that claims 2**31 - 1 brokers.
RESPONSE_SCRIPT = """
import resource, struct, sys
resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[1]), int(sys.argv[1])))
from trioring.errors import ProtocolError
from trioring.protocol.kafka._client import decode_response
try:
    decode_response(3, 1, struct.pack(">ii", 7, 0x7FFFFFFF))
except ProtocolError as error:
    print(error)
"""


def test_a_response_claiming_more_than_its_bytes_is_refused_not_aborted() -> None:
    """Found by the wire fuzzer: the client's decoder reserved what a broker's count
    claimed (17 GiB here) and the failed reservation aborted the client's process."""
    result = subprocess.run(
        [sys.executable, "-c", RESPONSE_SCRIPT, str(ADDRESS_SPACE_BYTES)],
        cwd=HERE.parents[2],  # this tree's trioring
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "array brokers claims 2147483647 elements" in result.stdout


def _metadata_v4(body: bytes) -> ProtocolError | None:
    frame = encode_request_header(3, 4, 1, None, flexible=False) + body
    return decode_request(frame).error


def test_a_count_beyond_the_bytes_left_is_refused() -> None:
    # Each topic name takes at least its 2-byte length: 3 of them need 6 bytes.
    error = _metadata_v4(struct.pack(">i", 3) + b"\x00\x00\x00\x00" + b"\x00")
    assert error is not None
    assert "array topics claims 3 elements of at least 2 bytes but 5 bytes are left" in str(error)


def test_a_count_the_bytes_can_hold_reaches_kio() -> None:
    body = struct.pack(">i", 2) + b"\x00\x01a\x00\x01b" + b"\x00"
    assert _metadata_v4(body) is None


def test_arrays_of_fixed_size_elements_are_checked_by_arithmetic() -> None:
    # Fetch v4 partitions are 16 bytes each; claim two, send one.
    header = encode_request_header(1, 4, 1, None, flexible=False)
    partition = struct.pack(">iqi", 0, 0, 1024)
    body = struct.pack(">iiiib", -1, 500, 1, 1024, 0) + struct.pack(">i", 1) + b"\x00\x01t"
    whole = decode_request(header + body + struct.pack(">i", 1) + partition)
    assert whole.error is None
    short = decode_request(header + body + struct.pack(">i", 2) + partition)
    assert short.error is not None
    assert "array partitions claims 2 elements of at least 16 bytes" in str(short.error)


def test_a_null_where_the_schema_allows_none_is_refused() -> None:
    # DescribeConfigs v1: resources may not be null (kio would decode None).
    frame = encode_request_header(32, 1, 1, None, flexible=False) + b"\xff\xff\xff\xff\x00"
    error = decode_request(frame).error
    assert error is not None and "non-nullable array resources" in str(error)


def test_a_null_where_the_schema_allows_it_passes() -> None:
    # Metadata v4: a null topics array asks for every topic.
    assert _metadata_v4(b"\xff\xff\xff\xff\x01") is None


def test_a_string_longer_than_the_frame_is_refused() -> None:
    error = _metadata_v4(struct.pack(">ih", 1, 0x7FFF) + b"abc")
    assert error is not None and "string name needs 32767 bytes but 3 are left" in str(error)


def test_unknown_tagged_fields_are_skipped_by_size() -> None:
    # CreatePartitions v2: no topics, timeout, validate_only, then one tagged
    # field of 3 bytes the shape check steps over (kio then refuses the tag).
    header = encode_request_header(37, 2, 1, None, flexible=True)
    body = b"\x01" + struct.pack(">i", 1000) + b"\x00"
    check_request_shape(request_schema(37, 2), body + b"\x01\x07\x03xyz", 0)
    with pytest.raises(
        ProtocolError,
        match=r"tagged field of 9 bytes runs past the end of the frame \(3 bytes remain\)",
    ):
        check_request_shape(request_schema(37, 2), body + b"\x01\x07\x09xyz", 0)
    assert decode_request(header + body + b"\x00").error is None


def _describe_topic_partitions(cursor: bytes) -> ProtocolError | None:
    # One topic "t", limit 10, then the nullable cursor struct, then the tagged fields.
    body = b"\x02\x02t\x00" + struct.pack(">i", 10) + cursor + b"\x00"
    frame = encode_request_header(75, 0, 1, None, flexible=True) + body
    return decode_request(frame).error


def test_a_nullable_struct_is_checked_by_its_marker() -> None:
    assert _describe_topic_partitions(b"\xff") is None  # null
    assert _describe_topic_partitions(b"\x01\x02t" + struct.pack(">i", 3) + b"\x00") is None
    error = _describe_topic_partitions(b"\x02\x02t" + struct.pack(">i", 3) + b"\x00")
    assert error is not None and "presence marker 2" in str(error)
    # Present, but the body ends inside it.
    assert _describe_topic_partitions(b"\x01\x02t\x00") is not None

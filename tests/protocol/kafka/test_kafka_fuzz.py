"""Decode fuzzing: any bytes give ProtocolError (raised or returned) and nothing else."""

from __future__ import annotations

import itertools
import os
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka_codec_support import SUPPORTED_PAIRS, example_request_frames

from trioring.errors import ProtocolError
from trioring.protocol.kafka import (
    FrameDecoder,
    decode_request,
    encode_frame,
    encode_request_header,
    is_flexible,
)

#: KAFKA_CODEC_FUZZ_EXAMPLES=100000 runs a long fuzz; the default keeps the suite fast.
EXAMPLES = int(os.environ.get("KAFKA_CODEC_FUZZ_EXAMPLES", "1000"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FRAMES = example_request_frames()
PREFIX = struct.Struct(">hhi")


def exercise(frame: bytes) -> None:
    """Decode one frame; a ProtocolError is fine, returned or raised, anything else fails."""
    try:
        request = decode_request(frame)
    except ProtocolError:
        return
    # With an error nothing was decoded; without one the body must be there.
    assert (request.body is None) == (request.error is not None)
    if request.error is not None:
        assert isinstance(request.error, ProtocolError)


@FUZZ
@given(st.binary(max_size=200))
def test_random_frames(frame: bytes) -> None:
    exercise(frame)


@FUZZ
@given(pair=st.sampled_from(SUPPORTED_PAIRS), body=st.binary(max_size=200))
def test_random_bodies_behind_valid_headers(pair: tuple[int, int], body: bytes) -> None:
    api_key, api_version = pair
    header = encode_request_header(
        api_key, api_version, 1, "fuzz", flexible=is_flexible(api_key, api_version)
    )
    exercise(header + body)


def test_every_truncation_of_every_valid_frame() -> None:
    for _api_key, _api_version, frame in FRAMES:
        for length in range(len(frame)):
            exercise(frame[:length])


@st.composite
def mutated_frames(draw: st.DrawFn) -> bytes:
    _api_key, _api_version, original = draw(st.sampled_from(FRAMES))
    frame = bytearray(original)
    for _ in range(draw(st.integers(1, 6))):
        position = draw(st.integers(0, max(0, len(frame) - 1)))
        action = draw(st.sampled_from(["replace", "insert", "delete", "length"]))
        if action == "replace" and frame:
            frame[position] = draw(st.integers(0, 255))
        elif action == "insert":
            frame[position:position] = draw(st.binary(min_size=1, max_size=8))
        elif action == "delete" and frame:
            del frame[position : position + draw(st.integers(1, 8))]
        elif action == "length" and len(frame) >= position + 4:
            # Length fields are where decoders overrun: plant extreme ones.
            value = draw(st.sampled_from([-2, -1, 0, 0x7FFF, 0x7FFFFFFF, -(2**31), 2**16]))
            struct.pack_into(">i", frame, position, value)
    if draw(st.booleans()):
        # Parse the body with another supported schema than the one it was written for.
        api_key, api_version = draw(st.sampled_from(SUPPORTED_PAIRS))
        if len(frame) >= PREFIX.size:
            _old_key, _old_version, correlation_id = PREFIX.unpack_from(frame, 0)
            PREFIX.pack_into(frame, 0, api_key, api_version, correlation_id)
    return bytes(frame)


@settings(FUZZ, max_examples=EXAMPLES * 3)
@given(mutated_frames())
def test_mutated_frames(frame: bytes) -> None:
    exercise(frame)


@FUZZ
@given(
    stream=st.binary(max_size=400),
    cuts=st.lists(st.integers(0, 400), max_size=10),
    frame_bytes_max=st.sampled_from([0, 8, 64, 1024, 100 * 1024 * 1024]),
)
def test_random_streams_through_the_frame_decoder(
    stream: bytes, cuts: list[int], frame_bytes_max: int
) -> None:
    decoder = FrameDecoder(frame_bytes_max)
    positions = sorted({cut % (len(stream) + 1) for cut in cuts} | {0, len(stream)})
    try:
        for start, end in itertools.pairwise(positions):
            decoder.feed(stream[start:end])
            for frame in decoder.frames():
                assert len(frame) <= frame_bytes_max
                exercise(frame)
    except ProtocolError:
        pass


@FUZZ
@given(st.lists(st.sampled_from(FRAMES), max_size=8), st.integers(1, 50))
def test_valid_frames_stream_byte_ranges(
    frames: list[tuple[int, int, bytes]], piece_bytes: int
) -> None:
    stream = b"".join(encode_frame(frame) for _key, _version, frame in frames)
    decoder = FrameDecoder()
    decoded = []
    for start in range(0, len(stream), piece_bytes):
        decoder.feed(stream[start : start + piece_bytes])
        decoded.extend(decode_request(frame) for frame in decoder.frames())
    assert [request.error for request in decoded] == [None] * len(frames)
    assert [request.header.api_key for request in decoded] == [key for key, _v, _f in frames]


@pytest.mark.parametrize(
    "body",
    [
        # Array counts that would allocate gigabytes if trusted.
        struct.pack(">hii", -1, 1000, 0x7FFFFFFF),
        struct.pack(">hiii", -1, 1000, 1, 0x7FFFFFFF),
        b"\xff\xff" + b"\x00\x00\x03\xe8" + b"\x80\x00\x00\x00",
    ],
)
def test_huge_counts_in_produce_bodies(body: bytes) -> None:
    header = encode_request_header(0, 7, 1, None, flexible=False)
    request = decode_request(header + body)
    assert isinstance(request.error, ProtocolError)


@pytest.mark.parametrize(
    ("api_key", "api_version", "body", "cause"),
    [
        # Metadata v4: one topic whose name is not UTF-8.
        (3, 4, b"\x00\x00\x00\x01\x00\x02\xff\xfe\x01", "InvalidUnicode"),
        # Metadata v4: array count -2.
        (3, 4, b"\xff\xff\xff\xfe\x01", "shape: non-nullable array topics"),
        # Produce v7: records length -2.
        (
            0,
            7,
            b"\xff\xff\xff\xff\x00\x00\x03\xe8\x00\x00\x00\x01\x00\x01t"
            b"\x00\x00\x00\x01\x00\x00\x00\x00\xff\xff\xff\xfe",
            "shape: bytes records has length -2",
        ),
        # Produce v7: the body stops inside the timeout.
        (0, 7, b"\xff\xff\xff\xff\x00\x00", "shape: timeout needs 4 bytes but 2 are left"),
        # ApiVersions v3: a null compact string where a string is required.
        (18, 3, b"\x00\x02b\x00", "shape: non-nullable string client_software_name"),
        # ApiVersions v3: an unsigned varint of more than 5 bytes.
        (18, 3, b"\xff\xff\xff\xff\xff\x02b\x00", "shape: unsigned varint is longer than 5 bytes"),
        # ApiVersions v3: a tagged field kio does not know.
        (18, 3, b"\x02a\x02b\x01\x05\x01x", "KeyError"),
        # OffsetCommit v2: a retention time beyond what datetime.timedelta holds.
        (
            8,
            2,
            b"\x00\x01g\x00\x00\x00\x01\x00\x01m\x7f\xff\xff\xff\xff\xff\xff\xff\x00\x00\x00\x00",
            "ValueError",
        ),
    ],
)
def test_kio_failures_become_protocol_errors(
    api_key: int, api_version: int, body: bytes, cause: str
) -> None:
    """``cause``: the kio exception behind the error, or "shape: ..." where the
    shape check (before kio) refuses the body with a message holding "..."."""
    header = encode_request_header(
        api_key, api_version, 1, None, flexible=is_flexible(api_key, api_version)
    )
    request = decode_request(header + body)
    assert type(request.error) is ProtocolError
    if cause.startswith("shape: "):
        assert request.error.__cause__ is None
        assert cause.removeprefix("shape: ") in str(request.error)
    else:
        assert type(request.error.__cause__).__name__ == cause
    assert request.header.correlation_id == 1

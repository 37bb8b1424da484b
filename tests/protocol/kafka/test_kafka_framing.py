"""FrameDecoder and encode_frame: splitting, batching, limits."""

from __future__ import annotations

import itertools
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trioring.errors import ProtocolError
from trioring.protocol.kafka import FRAME_BYTES_MAX_DEFAULT, FrameDecoder, encode_frame
from trioring.protocol.kafka._framing import LARGE_FRAME_BYTES

SIZE = struct.Struct(">i")
PAYLOADS = [b"", b"a", b"hello world", bytes(range(256)) * 40, b"\x00" * 3]


def drain(decoder: FrameDecoder) -> list[bytes]:
    return list(decoder.frames())


def test_encode_frame_prefixes_size() -> None:
    assert encode_frame(b"abc") == b"\x00\x00\x00\x03abc"
    assert encode_frame(b"") == b"\x00\x00\x00\x00"
    assert encode_frame(memoryview(b"xy")) == b"\x00\x00\x00\x02xy"
    assert encode_frame(bytearray(b"xy")) == b"\x00\x00\x00\x02xy"


def test_default_limit_is_kafkas_socket_request_max_bytes() -> None:
    assert FRAME_BYTES_MAX_DEFAULT == 104_857_600
    assert FrameDecoder().frame_bytes_max == FRAME_BYTES_MAX_DEFAULT


def test_one_frame() -> None:
    decoder = FrameDecoder()
    decoder.feed(encode_frame(b"payload"))
    assert decoder.next_frame() == b"payload"
    assert decoder.next_frame() is None
    assert decoder.buffered_bytes == 0


def test_next_frame_returns_bytes_not_a_view() -> None:
    decoder = FrameDecoder()
    decoder.feed(bytearray(encode_frame(b"payload")))
    frame = decoder.next_frame()
    assert type(frame) is bytes


def test_byte_at_a_time() -> None:
    stream = b"".join(encode_frame(payload) for payload in PAYLOADS)
    decoder = FrameDecoder()
    frames = []
    for index in range(len(stream)):
        decoder.feed(stream[index : index + 1])
        frames.extend(drain(decoder))
    assert frames == PAYLOADS
    assert decoder.buffered_bytes == 0


def test_many_frames_in_one_feed() -> None:
    payloads = [f"frame {index}".encode() * index for index in range(500)]
    decoder = FrameDecoder()
    decoder.feed(b"".join(encode_frame(payload) for payload in payloads))
    assert drain(decoder) == payloads


def test_partial_frames_stay_buffered() -> None:
    decoder = FrameDecoder()
    stream = encode_frame(b"first") + encode_frame(b"second")
    decoder.feed(stream[:12])
    assert decoder.next_frame() == b"first"
    assert decoder.next_frame() is None
    assert decoder.buffered_bytes == 12 - 9
    decoder.feed(stream[12:])
    assert decoder.next_frame() == b"second"
    assert decoder.next_frame() is None


def test_feeding_without_draining_keeps_every_frame() -> None:
    decoder = FrameDecoder()
    for payload in PAYLOADS:
        decoder.feed(encode_frame(payload))
    assert drain(decoder) == PAYLOADS


@settings(max_examples=200, deadline=None)
@given(
    payloads=st.lists(st.binary(max_size=300), max_size=20),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=30),
)
def test_any_split_yields_the_same_frames(payloads: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(encode_frame(payload) for payload in payloads)
    positions = sorted({cut % (len(stream) + 1) for cut in cuts} | {0, len(stream)})
    decoder = FrameDecoder()
    frames = []
    for start, end in itertools.pairwise(positions):
        decoder.feed(stream[start:end])
        frames.extend(drain(decoder))
    assert frames == payloads


def test_frame_at_the_limit_is_accepted() -> None:
    decoder = FrameDecoder(frame_bytes_max=10)
    decoder.feed(encode_frame(b"x" * 10))
    assert decoder.next_frame() == b"x" * 10


def test_oversize_frame_is_refused_from_its_size_alone() -> None:
    decoder = FrameDecoder(frame_bytes_max=10)
    with pytest.raises(ProtocolError, match=r"frame size 11 bytes exceeds the limit of 10 bytes"):
        # Only the size prefix: the body never needs to arrive.
        decoder.feed(SIZE.pack(11))
    assert decoder.buffered_bytes == 0


def test_huge_size_is_refused_without_buffering() -> None:
    decoder = FrameDecoder()
    with pytest.raises(ProtocolError, match=r"2147483647 bytes exceeds the limit of 104857600"):
        decoder.feed(SIZE.pack(2**31 - 1) + b"x" * 100)
    assert decoder.buffered_bytes == 0


def test_negative_size_is_refused() -> None:
    decoder = FrameDecoder()
    with pytest.raises(ProtocolError, match="frame size -1 is negative"):
        decoder.feed(SIZE.pack(-1))


def test_size_split_across_feeds_is_checked_when_complete() -> None:
    decoder = FrameDecoder(frame_bytes_max=100)
    decoder.feed(b"\x00\x00")
    decoder.feed(b"\x01")
    with pytest.raises(ProtocolError, match="exceeds the limit"):
        decoder.feed(b"\x00")


def test_bad_size_after_good_frames_yields_the_good_ones_first() -> None:
    decoder = FrameDecoder(frame_bytes_max=100)
    decoder.feed(encode_frame(b"ok") + SIZE.pack(101))
    assert decoder.next_frame() == b"ok"
    with pytest.raises(ProtocolError, match="exceeds the limit"):
        decoder.next_frame()


def test_decoder_stays_failed() -> None:
    decoder = FrameDecoder(frame_bytes_max=1)
    with pytest.raises(ProtocolError):
        decoder.feed(SIZE.pack(2))
    with pytest.raises(ProtocolError, match="already failed"):
        decoder.feed(encode_frame(b"x"))
    with pytest.raises(ProtocolError, match="already failed"):
        decoder.next_frame()


def test_limit_must_fit_int32() -> None:
    with pytest.raises(ValueError, match="frame_bytes_max"):
        FrameDecoder(frame_bytes_max=2**31)
    with pytest.raises(ValueError, match="frame_bytes_max"):
        FrameDecoder(frame_bytes_max=-1)


def test_large_frame_in_many_small_feeds() -> None:
    # 8 MiB in 4 KiB pieces: copying the buffer on each feed would move ~8 GiB.
    payload = bytes(range(256)) * (8 * 4096)
    stream = encode_frame(payload)
    decoder = FrameDecoder()
    for start in range(0, len(stream), 4096):
        decoder.feed(stream[start : start + 4096])
        if start + 4096 < len(stream):
            assert decoder.next_frame() is None
    assert decoder.next_frame() == payload
    assert decoder.buffered_bytes == 0


# Frames at or above LARGE_FRAME_BYTES are assembled from chunks (one join);
# these cover that path and its hand-over back to the buffer.
_LARGE = st.integers(min_value=LARGE_FRAME_BYTES, max_value=LARGE_FRAME_BYTES + 5000).map(
    lambda size: bytes(range(251)) * (size // 251) + b"x" * (size % 251)
)


@settings(max_examples=100, deadline=None)
@given(
    payloads=st.lists(st.one_of(st.binary(max_size=300), _LARGE), max_size=8),
    cuts=st.lists(st.integers(min_value=0, max_value=1 << 20), max_size=30),
    drain_every_feed=st.booleans(),
)
def test_large_frames_any_split_yield_the_same_frames(
    payloads: list[bytes], cuts: list[int], drain_every_feed: bool
) -> None:
    stream = b"".join(encode_frame(payload) for payload in payloads)
    positions = sorted({cut % (len(stream) + 1) for cut in cuts} | {0, len(stream)})
    decoder = FrameDecoder()
    frames = []
    fed = 0
    for start, end in itertools.pairwise(positions):
        decoder.feed(stream[start:end])
        fed += end - start
        if drain_every_feed:
            frames.extend(drain(decoder))
            returned = sum(len(frame) + 4 for frame in frames)
            assert decoder.buffered_bytes == fed - returned
    frames.extend(drain(decoder))
    assert frames == payloads
    assert decoder.buffered_bytes == 0


def test_large_frame_then_bad_size_is_refused() -> None:
    payload = b"p" * LARGE_FRAME_BYTES
    stream = encode_frame(payload) + SIZE.pack(-1)
    decoder = FrameDecoder()
    decoder.feed(stream[:100])
    decoder.feed(stream[100:])
    assert decoder.next_frame() == payload
    with pytest.raises(ProtocolError, match="negative"):
        decoder.next_frame()

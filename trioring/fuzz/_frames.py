"""The wire fuzzer's frames, sans-IO: a seed in, a deterministic sequence of pipelines out.

:class:`WireFrames` draws pipelines (:class:`Burst`) of frames from one
``random.Random(seed)``: valid requests of every advertised API and version
(adversarial values, from ``_requests``), and mutations of them — bit flips,
inserted and deleted bytes, truncation, spliced headers and bodies, wrong
API keys, versions and header versions, lying client id lengths,
correlation id games, random payloads, oversized frames, lying size
prefixes and unframed garbage. Nothing here depends on what a server
answers, so a seed names the same frames on every run: frame ``index`` of
seed ``seed`` is :func:`frame_at` ``(seed, index)``.

Mutated frames come last in their pipeline: most of them make the server
close the connection, and frames behind them would never be read. A
pipeline ends with the connection kept (the fuzzer then sends a sentinel
request and waits for its answer), with a half-close (after a frame whose
size prefix lies: nothing after it can be framed), or with a hang-up (the
fuzzer closes without reading the answers).
"""

from __future__ import annotations

import datetime
import random
import struct
from collections.abc import Iterator, Mapping
from typing import Any, Literal

import attrs

from trioring._constants import (
    FRAME_BYTES_MAX_DEFAULT,
    REQUEST_HEADER_FIXED_BYTES,
    WIRE_FUZZ_DRAWS_MAX,
    WIRE_FUZZ_LARGE_FRAME_BYTES_MAX,
    WIRE_FUZZ_OVERSIZED_SENT_BYTES_MAX,
    WIRE_FUZZ_PARTITIONS_MAX,
    WIRE_FUZZ_PIPELINE_FRAMES_MAX,
    WIRE_FUZZ_POOL_FRAMES_PER_VERSION,
    WIRE_FUZZ_RANDOM_FRAME_BYTES_MAX,
    WIRE_FUZZ_SESSION_MS_MAX,
    WIRE_FUZZ_WAIT_MS_MAX,
)
from trioring.fuzz._requests import draw_client_id, draw_entity
from trioring.protocol.kafka import (
    ApiKey,
    decode_request,
    is_flexible,
    is_supported,
    request_schema,
)
from trioring.protocol.kafka._client import encode_request
from trioring.server import advertised_versions

__all__ = [
    "BREAKS_FRAMING",
    "MUTATION_KINDS",
    "Burst",
    "Ending",
    "FuzzFrame",
    "WireFrames",
    "frame_at",
    "wire_cases",
]

_SIZE = struct.Struct(">i")
_INT16 = struct.Struct(">h")
_INT32 = struct.Struct(">i")
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
_INT16_MIN, _INT16_MAX = -(2**15), 2**15 - 1

#: Every kind of frame, unmutated ones ("valid") first. A frame's kind is
#: what was done to a valid request to make it.
MUTATION_KINDS = (
    "valid",
    "correlation_id",
    "bit_flip",
    "byte_insert",
    "byte_delete",
    "truncate",
    "splice",
    "api_key",
    "api_version",
    "header_version",
    "client_id",
    "random",
    "large",
    "length_lie",
    "oversized",
    "random_stream",
)
#: Kinds after which the server cannot cut the byte stream where the fuzzer
#: did: each is the last frame of its pipeline, which ends with a half-close.
BREAKS_FRAMING = frozenset({"length_lie", "oversized", "random_stream"})
#: Kinds a server answers like any valid request (the correlation id and
#: trailing bytes are the client's to choose): they may stand anywhere in a
#: pipeline, and a connection closed after only these is a finding.
WELL_FORMED = frozenset({"valid", "correlation_id", "large"})

#: How the last frame of a pipeline is made (relative weights): a third
#: unmutated, the rest spread over the mutations, the expensive ones rare.
_LAST_FRAME_WEIGHTS: Mapping[str, int] = {
    "valid": 30,
    "correlation_id": 6,
    "bit_flip": 14,
    "byte_insert": 5,
    "byte_delete": 5,
    "truncate": 5,
    "splice": 4,
    "api_key": 4,
    "api_version": 6,
    "header_version": 4,
    "client_id": 4,
    "random": 5,
    "large": 1,
    "length_lie": 5,
    "oversized": 1,
    "random_stream": 2,
}
assert set(_LAST_FRAME_WEIGHTS) == set(MUTATION_KINDS)
#: The frames before the last: unmutated, and now and then a correlation id game.
_CORRELATION_GAME_RATIO = 0.15
#: Of the frames drawn from the pool, the share drawn fresh (and put in the pool).
_FRESH_RATIO = 0.25

Ending = Literal["more", "answer", "answer_then_close", "half_close", "hang_up"]
#: How pipelines that keep their framing end: mostly answered and the
#: connection kept, sometimes closed by the fuzzer after the answer, or
#: before it (a client that vanishes with requests in flight). After a
#: well-formed last frame the connection stays open, so the next pipeline
#: may follow at once ("more"), without waiting for answers: deeper
#: pipelines, and fewer round trips.
_ENDING_WEIGHTS: Mapping[Ending, int] = {"answer": 90, "answer_then_close": 6, "hang_up": 4}
_MORE_RATIO = 0.5

#: APIs whose requests can ask the broker to wait or to work for long.
_WAITING_APIS = frozenset(
    {
        ApiKey.FETCH,
        ApiKey.JOIN_GROUP,
        ApiKey.CONSUMER_GROUP_HEARTBEAT,
        ApiKey.CREATE_TOPICS,
        ApiKey.CREATE_PARTITIONS,
    }
)


@attrs.frozen
class FuzzFrame:
    """One fuzzed frame: exactly the bytes written, size prefix(es) included."""

    index: int
    kind: str
    data: bytes

    @property
    def breaks_framing(self) -> bool:
        return self.kind in BREAKS_FRAMING


@attrs.frozen
class Burst:
    """Frames written back to back on one connection, and how the pipeline ends."""

    frames: tuple[FuzzFrame, ...]
    ending: Ending


@attrs.frozen
class _Valid:
    """A valid request frame (size prefix included) and where its body starts."""

    api_key: int
    api_version: int
    data: bytes
    body_offset: int


def wire_cases() -> list[tuple[int, int]]:
    """Every (API key, version) the broker advertises and serves.

    Produce v0-v2 are advertised (old librdkafka needs v0 in the range to
    compress) but refused, as by Kafka 4.0: they are left to the mutations.
    """
    return [
        (key, version)
        for key, (low, high) in sorted(advertised_versions().items())
        for version in range(low, high + 1)
        if is_supported(key, version)
    ]


def _header_bytes(data: bytes, api_key: int, api_version: int) -> int:
    """Bytes of the request header in a frame built by encode_request (size prefix included)."""
    client_id_length = int(_INT16.unpack_from(data, 4 + REQUEST_HEADER_FIXED_BYTES)[0])
    offset = 4 + REQUEST_HEADER_FIXED_BYTES + 2 + max(client_id_length, 0)
    if is_flexible(api_key, api_version):
        offset += 1  # an empty tagged-field section, all encode_request writes
    return offset


def _milliseconds(value: datetime.timedelta) -> int:
    return int(value.total_seconds() * 1000)


def _asks_for_long_work(payload: bytes) -> bool:
    """Whether the server would decode ``payload`` into a request that waits or works long."""
    if len(payload) < 2 or _INT16.unpack_from(payload)[0] not in _WAITING_APIS:
        return False
    try:
        request = decode_request(payload)
    except Exception:  # too short for a correlation id: the server closes
        return False
    body: Any = request.body
    if body is None:
        return False
    api_key = request.header.api_key
    if api_key == ApiKey.FETCH:
        return _milliseconds(body.max_wait) > WIRE_FUZZ_WAIT_MS_MAX
    if api_key == ApiKey.JOIN_GROUP:
        rebalance = getattr(body, "rebalance_timeout", None)
        return _milliseconds(body.session_timeout) > WIRE_FUZZ_SESSION_MS_MAX or (
            rebalance is not None and _milliseconds(rebalance) > WIRE_FUZZ_WAIT_MS_MAX
        )
    if api_key == ApiKey.CONSUMER_GROUP_HEARTBEAT:
        return _milliseconds(body.rebalance_timeout) > WIRE_FUZZ_WAIT_MS_MAX
    if api_key == ApiKey.CREATE_TOPICS:
        return any(int(topic.num_partitions) > WIRE_FUZZ_PARTITIONS_MAX for topic in body.topics)
    return any(int(topic.count) > WIRE_FUZZ_PARTITIONS_MAX for topic in body.topics)


class WireFrames:
    """The frames of one seed, in pipelines: :meth:`next_burst` until ``frames`` are out.

    ``frame_bytes_max`` is the server's frame limit (its
    ``frame_bytes_max``): oversized frames and lying size prefixes aim at it.
    """

    def __init__(self, seed: int, *, frame_bytes_max: int = FRAME_BYTES_MAX_DEFAULT) -> None:
        self.seed = seed
        self.frame_bytes_max = frame_bytes_max
        self._rng = random.Random(seed)
        self._cases = wire_cases()
        self._pool: dict[tuple[int, int], list[_Valid]] = {}
        self._versions: dict[int, list[int]] = {}
        for key, version in self._cases:
            self._versions.setdefault(key, []).append(version)
        self._kinds = list(_LAST_FRAME_WEIGHTS)
        self._kind_weights = list(_LAST_FRAME_WEIGHTS.values())
        self._endings: list[Ending] = list(_ENDING_WEIGHTS)
        self._ending_weights = list(_ENDING_WEIGHTS.values())
        #: Index of the next frame.
        self.index = 0
        self._previous_correlation_id = 0

    # --- pipelines -------------------------------------------------------------------------

    def next_burst(self, frames_left: int) -> Burst:
        """The next pipeline, of at most ``frames_left`` frames (at least one)."""
        assert frames_left >= 1
        rng = self._rng
        # Mostly short pipelines, a few up to the limit.
        length = min(frames_left, WIRE_FUZZ_PIPELINE_FRAMES_MAX, 1 + int(rng.expovariate(1 / 3)))
        frames = []
        for _ in range(length - 1):
            kind = "correlation_id" if rng.random() < _CORRELATION_GAME_RATIO else "valid"
            frames.append(self._frame(kind))
        last = self._frame(rng.choices(self._kinds, self._kind_weights)[0])
        frames.append(last)
        ending: Ending
        if last.breaks_framing:
            ending = "half_close"
        elif last.kind in WELL_FORMED and rng.random() < _MORE_RATIO:
            ending = "more"
        else:
            ending = rng.choices(self._endings, self._ending_weights)[0]
        return Burst(tuple(frames), ending)

    def __iter__(self) -> Iterator[FuzzFrame]:
        """Every frame, pipeline after pipeline, without end."""
        while True:
            yield from self.next_burst(WIRE_FUZZ_PIPELINE_FRAMES_MAX).frames

    # --- frames ----------------------------------------------------------------------------

    def _frame(self, kind: str) -> FuzzFrame:
        index = self.index
        self.index += 1
        # The frame's index is its correlation id (unless a game changes it),
        # so an answer names the frame it answers.
        correlation_id = index & _INT32_MAX
        mutate = getattr(self, f"_{kind}")
        for _ in range(WIRE_FUZZ_DRAWS_MAX):
            data: bytes = mutate(correlation_id)
            if not _asks_for_long_work(data[4:]):
                break
        else:
            # Every draw asked for long work (not seen in practice): an
            # ApiVersions v0 request, which never does.
            data = encode_request(
                ApiKey.API_VERSIONS,
                0,
                correlation_id,
                "fuzz",
                request_schema(ApiKey.API_VERSIONS, 0)(),
            )
            kind = "valid"
        self._previous_correlation_id = correlation_id
        return FuzzFrame(index, kind, data)

    def _valid_request(self, correlation_id: int) -> _Valid:
        """A valid request of a random API and version, with ``correlation_id``."""
        rng = self._rng
        case = rng.choice(self._cases)
        pool = self._pool.setdefault(case, [])
        if len(pool) < WIRE_FUZZ_POOL_FRAMES_PER_VERSION or rng.random() < _FRESH_RATIO:
            api_key, api_version = case
            body = draw_entity(request_schema(api_key, api_version), rng)
            data = encode_request(api_key, api_version, 0, draw_client_id(rng), body)
            valid = _Valid(api_key, api_version, data, _header_bytes(data, api_key, api_version))
            if len(pool) < WIRE_FUZZ_POOL_FRAMES_PER_VERSION:
                pool.append(valid)
            else:
                pool[rng.randrange(len(pool))] = valid
        else:
            valid = rng.choice(pool)
        data = valid.data
        return attrs.evolve(
            valid, data=b"".join((data[:8], _INT32.pack(correlation_id), data[12:]))
        )

    def _reframed(self, payload: bytes | bytearray) -> bytes:
        return _SIZE.pack(len(payload)) + payload

    def _valid(self, correlation_id: int) -> bytes:
        return self._valid_request(correlation_id).data

    def _correlation_id(self, correlation_id: int) -> bytes:
        game = self._rng.choice(
            [0, -1, _INT32_MIN, _INT32_MAX, self._previous_correlation_id, self._random_int32()]
        )
        return self._valid_request(game).data

    def _random_int32(self) -> int:
        return self._rng.randint(_INT32_MIN, _INT32_MAX)

    def _bit_flip(self, correlation_id: int) -> bytes:
        rng = self._rng
        payload = bytearray(self._valid_request(correlation_id).data[4:])
        for _ in range(rng.choice((1, 1, 1, 2, 3, 4, 8))):
            payload[rng.randrange(len(payload))] ^= 1 << rng.randrange(8)
        return self._reframed(payload)

    def _interesting_bytes(self, count: int) -> bytes:
        rng = self._rng
        if rng.random() < 0.5:
            return rng.randbytes(count)
        return bytes(rng.choice((0x00, 0x01, 0x7F, 0x80, 0xFF)) for _ in range(count))

    def _byte_insert(self, correlation_id: int) -> bytes:
        rng = self._rng
        payload = self._valid_request(correlation_id).data[4:]
        position = rng.randrange(len(payload) + 1)
        inserted = self._interesting_bytes(rng.randint(1, 8))
        return self._reframed(payload[:position] + inserted + payload[position:])

    def _byte_delete(self, correlation_id: int) -> bytes:
        rng = self._rng
        payload = self._valid_request(correlation_id).data[4:]
        count = rng.randint(1, 8)
        position = rng.randrange(max(len(payload) - count, 0) + 1)
        return self._reframed(payload[:position] + payload[position + count :])

    def _truncate(self, correlation_id: int) -> bytes:
        payload = self._valid_request(correlation_id).data[4:]
        return self._reframed(payload[: self._rng.randrange(len(payload))])

    def _splice(self, correlation_id: int) -> bytes:
        """The header of one request before the body of another (of any API)."""
        head = self._valid_request(correlation_id)
        tail = self._valid_request(correlation_id)
        return self._reframed(head.data[4 : head.body_offset] + tail.data[tail.body_offset :])

    def _replace_int16(self, correlation_id: int, offset: int, value: int) -> bytes:
        payload = bytearray(self._valid_request(correlation_id).data[4:])
        _INT16.pack_into(payload, offset, value)
        return self._reframed(payload)

    def _api_key(self, correlation_id: int) -> bytes:
        rng = self._rng
        key = rng.choice(
            [
                -1,
                _INT16_MIN,
                _INT16_MAX,
                rng.choice(list(self._versions)),  # another API's key, its body kept
                rng.randint(0, 100),  # mostly APIs nobody serves here
                rng.randint(_INT16_MIN, _INT16_MAX),
            ]
        )
        return self._replace_int16(correlation_id, 0, key)

    def _api_version(self, correlation_id: int) -> bytes:
        rng = self._rng
        valid = self._valid_request(correlation_id)
        versions = self._versions[valid.api_key]
        version = rng.choice(
            [
                -1,
                _INT16_MIN,
                _INT16_MAX,
                min(versions) - 1,
                max(versions) + 1,
                rng.choice(versions),  # another version's layout read from this body
                rng.randint(_INT16_MIN, _INT16_MAX),
            ]
        )
        payload = bytearray(valid.data[4:])
        _INT16.pack_into(payload, 2, version)
        return self._reframed(payload)

    def _header_version(self, correlation_id: int) -> bytes:
        """Header v1 where v2 is due and back, or tagged fields that lie about their sizes."""
        rng = self._rng
        valid = self._valid_request(correlation_id)
        data = valid.data
        head, body = data[4 : valid.body_offset], data[valid.body_offset :]
        if is_flexible(valid.api_key, valid.api_version):
            if rng.random() < 0.5:
                return self._reframed(head[:-1] + body)  # v1: no tagged fields
            # One tagged field: a random tag, and a size that may run past the frame.
            size = rng.choice((0, 1, 127, 0x7F, len(body) + 1))
            tagged = bytes((1, rng.randrange(0x80), size & 0x7F)) + rng.randbytes(min(size, 4))
            return self._reframed(head[:-1] + tagged + body)
        return self._reframed(head + b"\x00" + body)  # v2 on a non-flexible request

    def _client_id(self, correlation_id: int) -> bytes:
        """A client id whose int16 length lies, or whose bytes are not UTF-8."""
        rng = self._rng
        valid = self._valid_request(correlation_id)
        payload = bytearray(valid.data[4:])
        if rng.random() < 0.25:
            # Replace the client id by bytes that are not UTF-8.
            end = valid.body_offset - 4
            if is_flexible(valid.api_key, valid.api_version):
                end -= 1
            invalid = b"\xff\xfe\xc0"
            payload[REQUEST_HEADER_FIXED_BYTES:end] = _INT16.pack(len(invalid)) + invalid
            return self._reframed(payload)
        length = rng.choice((-2, _INT16_MIN, _INT16_MAX, len(payload), rng.randint(0, 64)))
        _INT16.pack_into(payload, REQUEST_HEADER_FIXED_BYTES, length)
        return self._reframed(payload)

    def _random(self, correlation_id: int) -> bytes:
        """Random bytes in a correct frame: too short, or behind a real API key and version."""
        rng = self._rng
        size = rng.choice(
            (
                rng.randint(0, REQUEST_HEADER_FIXED_BYTES - 1),
                rng.randint(REQUEST_HEADER_FIXED_BYTES, 64),
                rng.randint(64, 4096),
                rng.randint(0, WIRE_FUZZ_RANDOM_FRAME_BYTES_MAX),
            )
        )
        payload = bytearray(rng.randbytes(size))
        if size >= REQUEST_HEADER_FIXED_BYTES and rng.random() < 0.7:
            api_key, api_version = rng.choice(self._cases)
            struct.pack_into(">hhi", payload, 0, api_key, api_version, correlation_id)
        return self._reframed(payload)

    def _large(self, correlation_id: int) -> bytes:
        """A valid request padded with trailing bytes (ignored, as Kafka ignores them)
        to a frame far larger than one receive: the server assembles it from parts."""
        rng = self._rng
        payload = self._valid_request(correlation_id).data[4:]
        size = rng.randint(256 * 1024, WIRE_FUZZ_LARGE_FRAME_BYTES_MAX)
        padding = size - len(payload)
        filler = b"\x00" * padding if rng.random() < 0.5 else rng.randbytes(max(padding, 0))
        return self._reframed(payload + filler)

    def _length_lie(self, correlation_id: int) -> bytes:
        rng = self._rng
        payload = self._valid_request(correlation_id).data[4:]
        size = rng.choice(
            (
                len(payload) + rng.randint(1, 1000),  # more than comes: the server waits
                rng.randrange(len(payload)),  # less: the rest is read as the next frame
                0,
                -1,
                _INT32_MIN,
                self.frame_bytes_max + 1,
                _INT32_MAX,
            )
        )
        return _SIZE.pack(size) + payload

    def _oversized(self, correlation_id: int) -> bytes:
        """A size prefix at the frame limit (or past it), then only part of the frame."""
        rng = self._rng
        limit = self.frame_bytes_max
        size = rng.choice((limit - 1, limit, limit + 1, _INT32_MAX))
        head = self._valid_request(correlation_id).data[4:]
        sent = min(size, rng.randint(0, WIRE_FUZZ_OVERSIZED_SENT_BYTES_MAX))
        body = head[:sent] + b"\x00" * max(sent - len(head), 0)
        return _SIZE.pack(size) + body

    def _random_stream(self, correlation_id: int) -> bytes:
        """Bytes with no framing at all."""
        rng = self._rng
        return rng.randbytes(rng.randint(1, 4096))


def frame_at(
    seed: int,
    index: int,
    *,
    frames: int | None = None,
    frame_bytes_max: int = FRAME_BYTES_MAX_DEFAULT,
) -> FuzzFrame:
    """Frame ``index`` of the run of ``seed`` (of ``frames`` frames in all, which
    shapes only its last pipeline), to replay a failure. Draws every frame before it."""
    if not 0 <= index < (index + 1 if frames is None else frames):
        raise ValueError(f"frame index {index} is not within the run's {frames} frames")
    generator = WireFrames(seed, frame_bytes_max=frame_bytes_max)
    while True:
        left = WIRE_FUZZ_PIPELINE_FRAMES_MAX if frames is None else frames - generator.index
        for frame in generator.next_burst(min(left, WIRE_FUZZ_PIPELINE_FRAMES_MAX)).frames:
            if frame.index == index:
                return frame

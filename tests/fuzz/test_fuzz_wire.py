"""The wire fuzzer: its frames are the seed's, a run finds nothing wrong with a sound
broker, and each of its checks fails when a broker does something wrong.

The broker misbehaves on purpose here in two ways: a middleware that loses
an acknowledged record on the read path (the well-behaved client's
verification must see it), and a proxy that changes the correlation id of
one answer (the answer check must see it).
"""

from __future__ import annotations

import contextlib
import functools
import os
import struct
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from trioring.fuzz._answers import AnswerChecker, AnswerError
from trioring.fuzz._frames import (
    BREAKS_FRAMING,
    MUTATION_KINDS,
    WELL_FORMED,
    Burst,
    WireFrames,
    frame_at,
)
from trioring.fuzz._wire import WireProgress, fuzz_wire
from trioring.fuzz._wire_process import fuzz_wire_against_process
from trioring.handlers.context import HandlerContext
from trioring.handlers.messages import FetchedPartition, FetchRequest, FetchResponse
from trioring.protocol.kafka import (
    ApiKey,
    build_api_versions_response,
    decode_request,
    encode_response,
    request_schema,
)
from trioring.protocol.kafka._client import encode_request
from trioring.protocol.records import iterate_batches
from trioring.testing import BrokerProcess, open_embedded_broker

SIZE = struct.Struct(">i")
#: The prefix of the well-behaved client's topic (the rest is random per run).
VERIFY_TOPIC_PREFIX = "trioring-wire-fuzz-verify-"


def bursts(seed: int, frames: int) -> list[Burst]:
    generator = WireFrames(seed)
    drawn = []
    while generator.index < frames:
        drawn.append(generator.next_burst(min(frames - generator.index, 16)))
    return drawn


# --- the frames ---------------------------------------------------------------------------


def test_a_seed_names_the_same_frames_every_time() -> None:
    first, again, other = bursts(11, 3000), bursts(11, 3000), bursts(12, 3000)
    assert first == again
    frames = [frame for burst in first for frame in burst.frames]
    assert [frame.index for frame in frames] == list(range(3000))
    assert [frame.data for frame in frames] != [
        frame.data for burst in other for frame in burst.frames
    ]
    # A failure names a frame by seed and index; frame_at gives its bytes back.
    assert frame_at(11, 1234) == frames[1234]
    assert frame_at(11, 2999, frames=3000) == frames[2999]


DIGEST_SCRIPT = """
import hashlib, sys
from trioring.fuzz._frames import WireFrames
digest = hashlib.sha256()
for _, frame in zip(range(int(sys.argv[2])), WireFrames(int(sys.argv[1]))):
    digest.update(frame.kind.encode() + frame.data)
print(digest.hexdigest())
"""


def frames_digest(seed: int, frames: int, hash_seed: str) -> str:
    """The digest of a seed's first frames, drawn in a fresh interpreter."""
    environment = {**os.environ, "PYTHONHASHSEED": hash_seed}
    result = subprocess.run(
        [sys.executable, "-c", DIGEST_SCRIPT, str(seed), str(frames)],
        env=environment,
        cwd=Path(__file__).resolve().parents[2],  # this tree's trioring
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return result.stdout.strip()


def test_a_seed_names_the_same_frames_in_every_process() -> None:
    # Nothing may come from the clock, the string hash seed or the address space.
    assert frames_digest(4, 2000, "1") == frames_digest(4, 2000, "2")


def test_pipelines_hold_every_kind_and_mutations_only_at_their_end() -> None:
    drawn = bursts(5, 20_000)
    kinds = Counter(frame.kind for burst in drawn for frame in burst.frames)
    assert set(kinds) == set(MUTATION_KINDS), set(MUTATION_KINDS) - set(kinds)
    for burst in drawn:
        *before, last = burst.frames
        assert all(frame.kind in WELL_FORMED for frame in before)
        assert (burst.ending == "half_close") == (last.kind in BREAKS_FRAMING)
        if burst.ending == "more":
            assert last.kind in WELL_FORMED, "a pipeline goes on only where nothing broke"
    for burst in drawn[:500]:
        for frame in burst.frames:
            if frame.kind in WELL_FORMED:
                request = decode_request(frame.data[4:])
                assert request.error is None, (frame, request.error)
                if frame.kind != "correlation_id":
                    assert request.header.correlation_id == frame.index


# --- the answer check (sans-IO) -----------------------------------------------------------


def api_versions(correlation_id: int) -> bytes:
    body = request_schema(ApiKey.API_VERSIONS, 0)()
    return encode_request(ApiKey.API_VERSIONS, 0, correlation_id, "test", body)


def produce(correlation_id: int) -> bytes:
    """A Produce v3 frame; only its header matters to the checker."""
    return SIZE.pack(8) + struct.pack(">hhi", ApiKey.PRODUCE, 3, correlation_id)


def answer(correlation_id: int) -> bytes:
    return encode_response(ApiKey.API_VERSIONS, 0, correlation_id, build_api_versions_response(0))


def checker_after(*frames: bytes) -> AnswerChecker:
    checker = AnswerChecker(frame_bytes_max=1 << 20)
    for index, frame in enumerate(frames):
        checker.sent(frame, index)
    return checker


def test_answers_in_order_pass_and_an_acks_zero_produce_may_go_unanswered() -> None:
    checker = checker_after(api_versions(1), produce(2), api_versions(3), api_versions(1))
    checker.received(answer(1) + answer(3)[:9])  # and part of the next
    checker.received(answer(3)[9:] + answer(1))
    assert checker.answers == 3 and checker.position_after(3)


@pytest.mark.parametrize(
    ("answers", "problem"),
    [
        ([answer(2), answer(1)], "correlation id 2 answers no request in order"),
        ([answer(1), answer(1)], "correlation id 1 answers no request in order"),
        ([answer(7)], "correlation id 7"),
        ([SIZE.pack(4) + SIZE.pack(1) + b""], None),
        ([SIZE.pack(200 << 20)], "an answer frame of 209715200 bytes"),
        ([SIZE.pack(6) + SIZE.pack(1) + b"\xff\xff"], "does not decode"),
    ],
)
def test_a_wrong_answer_fails(answers: list[bytes], problem: str | None) -> None:
    checker = checker_after(api_versions(1), api_versions(2))
    with pytest.raises(AnswerError, match=problem or "does not decode"):
        for data in answers:
            checker.received(data)


def test_an_answer_after_a_request_too_short_to_answer_fails() -> None:
    # The server must close the connection at a frame without a correlation id.
    checker = checker_after(SIZE.pack(3) + b"abc", api_versions(5))
    with pytest.raises(AnswerError, match="correlation id 5"):
        checker.received(answer(5))


def test_after_a_lying_size_prefix_the_checker_frames_as_the_server_does() -> None:
    frame = api_versions(9)
    # The size says 4 bytes more: the server takes the next frame's prefix with it.
    lie = SIZE.pack(SIZE.unpack_from(frame)[0] + 4) + frame[4:]
    checker = checker_after(lie, api_versions(10))
    assert [request.correlation_id for request in checker.requests] == [9]
    checker.received(answer(9))
    with pytest.raises(AnswerError, match="correlation id 10"):
        checker.received(answer(10))


# --- runs ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_bounded_run_finds_nothing_wrong_with_the_broker(tmp_path: Path) -> None:
    summary = fuzz_wire_against_process(frames=20_000, seed=2026, directory=tmp_path)
    assert summary.ok, "\n\n".join(summary.failures)
    assert summary.frames_sent == summary.frames_requested == 20_000
    assert all(summary.frames_by_kind[kind] > 0 for kind in MUTATION_KINDS), summary
    assert summary.responses > 10_000 and summary.responses_unchecked == 0
    assert summary.connections_closed_by_server > 0 and summary.probes >= 2
    assert summary.records_verified == summary.records_acknowledged > 0
    assert summary.rss_baseline_bytes is not None and summary.rss_peak_bytes is not None


def broker_process(tmp_path: Path) -> BrokerProcess:
    return BrokerProcess(tmp_path / "data").start()


async def test_a_broker_that_dies_is_reported(tmp_path: Path) -> None:
    broker = broker_process(tmp_path)
    try:
        assert broker.process is not None
        pid = broker.process.pid

        def kill_after_some_frames(progress: WireProgress) -> None:
            if progress.frames_sent >= 1000 and broker.process is not None:
                broker.process.kill()  # SIGKILL: reaped below, by kill()

        summary = await fuzz_wire(
            broker.bootstrap,
            frames=1_000_000,
            seed=8,
            broker_pid=pid,
            progress=kill_after_some_frames,
        )
    finally:
        broker.kill()
    assert not summary.ok and summary.frames_sent < 1_000_000
    assert any(f"the broker process {pid} died" in f for f in summary.failures), summary.failures


async def test_memory_past_the_bound_is_reported(tmp_path: Path) -> None:
    broker = broker_process(tmp_path)
    try:
        assert broker.process is not None
        summary = await fuzz_wire(
            broker.bootstrap,
            frames=100_000,
            seed=9,
            broker_pid=broker.process.pid,
            rss_growth_bytes_max=1,  # a page more than at the start is too much
        )
    finally:
        broker.stop()
    assert summary.rss_peak_bytes is not None and summary.frames_sent < 100_000
    assert any("the broker's memory grew" in f for f in summary.failures), summary.failures


class LoseFirstBatch:
    """Middleware: Fetch answers lose the first batch of the well-behaved client's
    partition 0 (a broker that lost acknowledged records)."""

    def __init__(self) -> None:
        self.lost = 0

    def __call__(self, handler: Callable[..., Any]) -> Callable[..., Any]:
        async def losing(context: HandlerContext, request: Any) -> Any:
            response = await handler(context, request)
            if not isinstance(request, FetchRequest):
                return response
            assert isinstance(response, FetchResponse)
            return FetchResponse(tuple(self._lose(fetched) for fetched in response.partitions))

        return losing

    def _lose(self, fetched: FetchedPartition) -> FetchedPartition:
        if not (fetched.topic.startswith(VERIFY_TOPIC_PREFIX) and fetched.partition == 0):
            return fetched
        batches = list(iterate_batches(fetched.records))
        if not batches or batches[0][1].base_offset != 0:
            return fetched
        self.lost += 1
        position, header = batches[0]
        return FetchedPartition(
            fetched.topic,
            fetched.partition,
            fetched.records[position + header.size_bytes :],
            fetched.high_watermark,
            fetched.log_start_offset,
        )


async def test_the_verification_sees_an_acknowledged_record_lost(tmp_path: Path) -> None:
    middleware = LoseFirstBatch()
    async with open_embedded_broker(tmp_path / "data", middleware=[middleware]) as broker:
        summary = await fuzz_wire(broker.bootstrap, frames=1000, seed=7, connections=4)
    assert middleware.lost > 0
    assert summary.records_acknowledged > 0
    assert summary.records_verified < summary.records_acknowledged
    assert not summary.ok
    # The partition is read past the hole (or stalls at it, if nothing follows).
    assert any("is missing" in failure for failure in summary.failures), summary.failures


#: The fuzzer's own requests (its pipelines' sentinels) carry correlation ids from here.
OWN_CORRELATION_IDS = range(-(2**30), -(2**30) + 10**7)


async def proxy_connection(client: trio.SocketStream, port: int, answers_seen: list[int]) -> None:
    """Forward both ways; change the correlation id of the third answer to one of the
    fuzzer's own requests (its sentinel ApiVersions)."""
    async with client, await trio.open_tcp_stream("127.0.0.1", port) as server:

        async def upstream() -> None:
            while data := await client.receive_some(1 << 16):
                await server.send_all(data)
            await server.send_eof()

        async def downstream() -> None:
            buffer = bytearray()
            while data := await server.receive_some(1 << 16):
                buffer += data
                while len(buffer) >= 8 and len(buffer) >= 4 + SIZE.unpack_from(buffer)[0]:
                    size, correlation_id = struct.unpack_from(">ii", buffer)
                    if correlation_id in OWN_CORRELATION_IDS:
                        answers_seen.append(correlation_id)
                        if len(answers_seen) == 3:
                            struct.pack_into(">i", buffer, 4, correlation_id + 1)
                    await client.send_all(bytes(buffer[: 4 + size]))
                    del buffer[: 4 + size]
            await client.aclose()

        async with trio.open_nursery() as nursery:
            nursery.cancel_scope.deadline = trio.current_time() + 30
            for direction in (upstream, downstream):
                nursery.start_soon(_quietly, direction, nursery.cancel_scope)


async def _quietly(direction: Callable[[], Any], scope: trio.CancelScope) -> None:
    """Either direction ending (or breaking) ends the connection."""
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
        await direction()
    scope.cancel()


async def test_the_answer_check_sees_a_wrong_correlation_id(tmp_path: Path) -> None:
    answers_seen: list[int] = []
    async with (
        open_embedded_broker(tmp_path / "data") as broker,
        trio.open_nursery() as nursery,
    ):
        port = int(broker.bootstrap.rpartition(":")[2])
        listeners = await nursery.start(
            functools.partial(
                trio.serve_tcp,
                lambda stream: proxy_connection(stream, port, answers_seen),
                0,
                host="127.0.0.1",
            )
        )
        proxy_port = listeners[0].socket.getsockname()[1]
        summary = await fuzz_wire(f"127.0.0.1:{proxy_port}", frames=500, seed=3, connections=2)
        nursery.cancel_scope.cancel()
    assert len(answers_seen) >= 3
    assert not summary.ok
    assert any(
        f"correlation id {answers_seen[2] + 1} answers no request in order" in failure
        for failure in summary.failures
    ), summary.failures

"""The wire fuzzer: fuzzed frames at a live server, and what must still hold.

:func:`fuzz_wire` writes the frames of a seed (``_frames``) over many
connections at once, pipelined, and checks while it runs that:

- every answer is one the server may give (``_answers``): in order, to the
  request with its correlation id, decodable, or the connection closed;
  a pipeline of well-formed requests is answered, not closed, and
  answered within WIRE_FUZZ_ANSWER_SECONDS;
- the broker lives: its process runs (given ``broker_pid``; checked twice
  a second), and a fresh connection answers ApiVersions within
  WIRE_FUZZ_PROBE_SECONDS after every WIRE_FUZZ_PROBE_INTERVAL_FRAMES
  frames or so (at the next check) and at the end;
- its memory is bounded: the resident memory of the process and its
  children (given ``broker_pid``) stays within ``rss_growth_bytes_max``
  of what it was once the run was set up;
- a well-behaved client loses nothing: a producer (acks=all, idempotent)
  writes known records to a topic of its own all along, and at the end
  every acknowledged record is read back at its offset, once, in order,
  byte for byte.

Failures are collected, never raised: the run stops early after one that
leaves nothing to test (a dead or hung broker) and returns a
:class:`WireSummary` either way, with the seed and frame indices to replay
each failure (``frame_at``) and the bytes of the first few.
"""

from __future__ import annotations

import hashlib
import secrets
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import attrs
import trio

from trioring._constants import (
    FRAME_BYTES_MAX_DEFAULT,
    RECEIVE_BYTES,
    WIRE_FUZZ_ANSWER_SECONDS,
    WIRE_FUZZ_CONNECT_FAILURES_MAX,
    WIRE_FUZZ_CONNECT_RETRY_SECONDS,
    WIRE_FUZZ_CONNECT_SECONDS,
    WIRE_FUZZ_CONNECTION_BURSTS_MAX,
    WIRE_FUZZ_CONNECTIONS_DEFAULT,
    WIRE_FUZZ_FAILURE_HEX_BYTES_MAX,
    WIRE_FUZZ_FAILURES_MAX,
    WIRE_FUZZ_FAILURES_WITH_BYTES_MAX,
    WIRE_FUZZ_PIPELINE_FRAMES_MAX,
    WIRE_FUZZ_PROBE_INTERVAL_FRAMES,
    WIRE_FUZZ_PROBE_SECONDS,
    WIRE_FUZZ_PRODUCE_INTERVAL_SECONDS,
    WIRE_FUZZ_PRODUCE_RECORDS_PER_ROUND,
    WIRE_FUZZ_RSS_GROWTH_BYTES_MAX_DEFAULT,
    WIRE_FUZZ_SAMPLE_INTERVAL_SECONDS,
    WIRE_FUZZ_SETUP_SECONDS,
    WIRE_FUZZ_VERIFY_PARTITIONS,
    WIRE_FUZZ_VERIFY_SECONDS,
    WIRE_FUZZ_VERIFY_STALL_SECONDS,
)
from trioring.client import open_admin, open_consumer, open_producer, parse_bootstrap
from trioring.errors import TrioringError
from trioring.fuzz._answers import AnswerChecker, AnswerError
from trioring.fuzz._frames import MUTATION_KINDS, WELL_FORMED, Burst, FuzzFrame, WireFrames
from trioring.fuzz._procfs import process_alive, process_tree_rss_bytes
from trioring.fuzz._requests import KNOWN_TOPIC
from trioring.protocol.kafka import ApiKey, request_schema
from trioring.protocol.kafka._client import encode_request

__all__ = ["WireProgress", "WireSummary", "fuzz_wire"]

#: Partitions of KNOWN_TOPIC, which fuzzed requests name (created if missing).
_KNOWN_TOPIC_PARTITIONS = 2
#: Kafka's TOPIC_ALREADY_EXISTS: the setup's topics may exist from an earlier run.
_TOPIC_ALREADY_EXISTS = 36
_SENTINEL_CLIENT_ID = "trioring-wire-fuzz"
_PRODUCER_CLIENT_ID = "trioring-wire-fuzz-producer"
#: The first correlation id of the fuzzer's own requests (sentinels, probes):
#: far from the frame indices that fuzzed frames carry as theirs.
_OWN_CORRELATION_ID_FIRST = -(2**30)
_PROBE_CORRELATION_ID = 0x7EEDBEEF
#: Records described one by one in a partition's failure (the rest are counted).
_RECORDS_DESCRIBED_MAX = 5


@attrs.frozen
class WireProgress:
    """How far a run is, for a progress line (``progress`` is called about twice a second)."""

    frames_sent: int
    frames_requested: int
    responses: int
    connections_opened: int
    records_acknowledged: int
    failures: int
    rss_bytes: int | None
    elapsed_seconds: float


@attrs.frozen
class WireSummary:
    """The outcome of one run. ``ok`` when nothing failed; ``to_json()`` for reports."""

    seed: int
    bootstrap: str
    frames_requested: int
    #: Fuzzed frames written (the fuzzer's own sentinels and probes are not counted).
    frames_sent: int
    frames_by_kind: Mapping[str, int]
    #: Pipelines written; connections the fuzzer opened, those the server
    #: closed, and those the fuzzer closed with requests in flight.
    bursts: int
    connections_opened: int
    connections_closed_by_server: int
    connections_hung_up: int
    #: Answers checked (in order, right correlation id, decodable), and those
    #: whose API and version this codec cannot decode (only their place was checked).
    responses: int
    responses_unchecked: int
    probes: int
    records_acknowledged: int
    records_verified: int
    #: The broker's resident memory, all its processes, once set up and at
    #: its highest (None without ``broker_pid``).
    rss_baseline_bytes: int | None
    rss_peak_bytes: int | None
    #: The whole run (set-up and reading back included), and the part spent fuzzing.
    elapsed_seconds: float
    fuzzing_seconds: float
    failures: tuple[str, ...]
    #: Failures found, those beyond WIRE_FUZZ_FAILURES_MAX not kept in ``failures``.
    failures_total: int

    @property
    def ok(self) -> bool:
        return self.failures_total == 0

    @property
    def frames_per_second(self) -> float:
        """Frames sent per second of fuzzing."""
        return self.frames_sent / self.fuzzing_seconds if self.fuzzing_seconds > 0 else 0.0

    def with_failures(self, failures: list[str]) -> WireSummary:
        """This summary with more failures (found after the run: the broker's exit, its log)."""
        kept = (*self.failures, *failures)[: max(WIRE_FUZZ_FAILURES_MAX, len(self.failures))]
        return attrs.evolve(self, failures=kept, failures_total=self.failures_total + len(failures))

    def to_json(self) -> dict[str, Any]:
        fields = attrs.asdict(self)
        fields["frames_by_kind"] = dict(self.frames_by_kind)
        fields["failures"] = list(self.failures)
        fields["ok"] = self.ok
        fields["frames_per_second"] = round(self.frames_per_second, 1)
        fields["elapsed_seconds"] = round(self.elapsed_seconds, 3)
        fields["fuzzing_seconds"] = round(self.fuzzing_seconds, 3)
        return fields


def known_record(seed: int, number: int) -> tuple[bytes, bytes]:
    """Key and value of the well-behaved producer's record ``number``: values of
    0 to 1000 arbitrary bytes, reproducible from the seed and the number."""
    key = b"%d" % number
    digest = hashlib.blake2b(b"%d:%d" % (seed, number)).digest()
    length = (number * 7919) % 1001
    value = (digest * (length // len(digest) + 1))[:length]
    return key, value


class _Run:
    """One fuzzing run: its frames, its counters, its failures."""

    def __init__(
        self,
        bootstrap: str,
        *,
        frames: int,
        seed: int,
        broker_pid: int | None,
        rss_growth_bytes_max: int,
        frame_bytes_max: int,
        progress: Callable[[WireProgress], None] | None,
    ) -> None:
        self.bootstrap = bootstrap
        self.host, self.port = parse_bootstrap(bootstrap)[0]
        self.frames_requested = frames
        self.seed = seed
        self.broker_pid = broker_pid
        self.rss_growth_bytes_max = rss_growth_bytes_max
        self.frame_bytes_max = frame_bytes_max
        self.progress = progress
        self.generator = WireFrames(seed, frame_bytes_max=frame_bytes_max)
        # A name no fuzzed request carries: longer than any random name, not in NAMES.
        self.topic = f"trioring-wire-fuzz-verify-{secrets.token_hex(8)}"
        self.started = trio.current_time()
        #: When the fuzzing began and ended (the producer's topic was made, and
        #: the last connection ended).
        self.fuzzing_started: float | None = None
        self.fuzzing_ended: float | None = None
        self.stopped = trio.Event()
        self.fuzzing_done = trio.Event()
        self.fuzz_scope = trio.CancelScope()
        self.producer_scope = trio.CancelScope()
        self.producer_done = trio.Event()
        self.frames_by_kind: Counter[str] = Counter(dict.fromkeys(MUTATION_KINDS, 0))
        self.frames_sent = 0
        self.bursts = 0
        self.connections_opened = 0
        self.connections_closed_by_server = 0
        self.connections_hung_up = 0
        self.connect_failures_in_a_row = 0
        self.responses = 0
        self.responses_unchecked = 0
        self.probes = 0
        self.next_probe_frames = WIRE_FUZZ_PROBE_INTERVAL_FRAMES
        self.own_correlation_id = _OWN_CORRELATION_ID_FIRST
        #: partition -> [(offset, record number)], as acknowledged.
        self.acknowledged: dict[int, list[tuple[int, int]]] = {}
        self.records_acknowledged = 0
        self.records_failed = 0
        self.records_verified = 0
        self.rss_baseline: int | None = None
        self.rss_peak: int | None = None
        self.failures: list[str] = []
        self.failures_total = 0

    # --- failures ----------------------------------------------------------------------------

    def fail(self, message: str, frames: tuple[FuzzFrame, ...] = ()) -> None:
        if self.stopped.is_set():
            return  # what fails once the broker is gone or hung only follows from that
        self.failures_total += 1
        if len(self.failures) >= WIRE_FUZZ_FAILURES_MAX:
            return
        text = f"seed {self.seed}: {message}"
        if frames:
            text += "; frames " + ", ".join(f"{frame.index} ({frame.kind})" for frame in frames)
            if len(self.failures) < WIRE_FUZZ_FAILURES_WITH_BYTES_MAX:
                text += "".join(
                    f"\n  frame {frame.index}: {frame.data[:WIRE_FUZZ_FAILURE_HEX_BYTES_MAX].hex()}"
                    + ("..." if len(frame.data) > WIRE_FUZZ_FAILURE_HEX_BYTES_MAX else "")
                    for frame in frames
                )
        self.failures.append(text)

    def stop(self, message: str) -> None:
        """A failure that ends the run (the broker is gone or hung)."""
        self.fail(message)
        self.stopped.set()
        self.fuzz_scope.cancel()
        # Its records cannot be acknowledged by a broker that is gone; its
        # delivery timeout would hold the run for minutes.
        self.producer_scope.cancel()

    async def guarded(self, what: str, task: Callable[[], Awaitable[None]]) -> None:
        """Run one of the run's tasks; a bug of the fuzzer's own ends the run as a failure."""
        try:
            await task()
        except Exception:
            self.stop(f"the fuzzer's {what} failed (a fuzzer bug):\n{traceback.format_exc()}")

    # --- frames --------------------------------------------------------------------------------

    @property
    def frames_left(self) -> int:
        return self.frames_requested - self.generator.index

    def next_burst(self) -> Burst:
        burst = self.generator.next_burst(min(self.frames_left, WIRE_FUZZ_PIPELINE_FRAMES_MAX))
        self.bursts += 1
        return burst

    def next_own_correlation_id(self) -> int:
        self.own_correlation_id += 1
        return self.own_correlation_id

    def summary(self) -> WireSummary:
        return WireSummary(
            seed=self.seed,
            bootstrap=self.bootstrap,
            frames_requested=self.frames_requested,
            frames_sent=self.frames_sent,
            frames_by_kind=dict(self.frames_by_kind),
            bursts=self.bursts,
            connections_opened=self.connections_opened,
            connections_closed_by_server=self.connections_closed_by_server,
            connections_hung_up=self.connections_hung_up,
            responses=self.responses,
            responses_unchecked=self.responses_unchecked,
            probes=self.probes,
            records_acknowledged=self.records_acknowledged,
            records_verified=self.records_verified,
            rss_baseline_bytes=self.rss_baseline,
            rss_peak_bytes=self.rss_peak,
            elapsed_seconds=trio.current_time() - self.started,
            fuzzing_seconds=(
                (self.fuzzing_ended or trio.current_time()) - self.fuzzing_started
                if self.fuzzing_started is not None
                else 0.0
            ),
            failures=tuple(self.failures),
            failures_total=self.failures_total,
        )

    # --- connections ---------------------------------------------------------------------------

    async def fuzz_connections(self) -> None:
        """Open connection after connection and fuzz each, until the frames are out."""
        while self.frames_left > 0:
            try:
                with trio.fail_after(WIRE_FUZZ_CONNECT_SECONDS):
                    stream = await trio.open_tcp_stream(self.host, self.port)
            except (OSError, trio.TooSlowError) as error:
                self.connect_failures_in_a_row += 1
                if self.stop_if_dead():
                    return
                if self.connect_failures_in_a_row >= WIRE_FUZZ_CONNECT_FAILURES_MAX:
                    self.stop(
                        f"{self.connect_failures_in_a_row} connections in a row could not be "
                        f"opened, the last: {error!r}"
                    )
                    return
                await trio.sleep(WIRE_FUZZ_CONNECT_RETRY_SECONDS)
                continue
            self.connect_failures_in_a_row = 0
            self.connections_opened += 1
            async with stream:
                await _Connection(self, stream).run()

    # --- the broker's health -------------------------------------------------------------------

    async def probe(self) -> None:
        """A fresh connection must answer ApiVersions in time; stop the run if not."""
        self.probes += 1
        correlation_id = _PROBE_CORRELATION_ID
        checker = AnswerChecker(self.frame_bytes_max)
        request = _api_versions_request(correlation_id)
        checker.sent(request, -1)
        try:
            with trio.fail_after(WIRE_FUZZ_PROBE_SECONDS):
                async with await trio.open_tcp_stream(self.host, self.port) as stream:
                    await stream.send_all(request)
                    while checker.answers == 0:
                        data = await stream.receive_some(RECEIVE_BYTES)
                        if not data:
                            raise AnswerError("the connection closed before the answer")
                        checker.received(data)
        except trio.TooSlowError:
            if self.stop_if_dead():
                return
            self.stop(
                f"hang: a new connection got no ApiVersions answer within "
                f"{WIRE_FUZZ_PROBE_SECONDS} s after {self.frames_sent} frames"
            )
        except (OSError, trio.BrokenResourceError, AnswerError) as error:
            if self.stop_if_dead():
                return
            self.stop(
                f"the broker does not answer a new connection after {self.frames_sent} "
                f"frames: {error!r}"
            )

    def died(self) -> str:
        return f"the broker process {self.broker_pid} died after {self.frames_sent} frames"

    def stop_if_dead(self) -> bool:
        """Stop the run if the broker process is gone (what failed then follows from that)."""
        if self.broker_pid is not None and not process_alive(self.broker_pid):
            self.stop(self.died())
        return self.stopped.is_set()

    def read_broker(self) -> tuple[bool, int | None]:
        """Whether the broker process runs, and its memory (run in a thread: it reads /proc)."""
        if self.broker_pid is None:
            return True, None
        return process_alive(self.broker_pid), process_tree_rss_bytes(self.broker_pid)

    async def sample(self) -> None:
        """Check the broker's process and memory, and report progress."""
        alive, rss = await trio.to_thread.run_sync(self.read_broker)
        if not alive:
            self.stop(self.died())
            return
        if rss is not None:
            if self.rss_baseline is None:
                self.rss_baseline = rss
            self.rss_peak = max(self.rss_peak or 0, rss)
            if rss > self.rss_baseline + self.rss_growth_bytes_max:
                self.stop(
                    f"the broker's memory grew from {self.rss_baseline} to {rss} bytes "
                    f"(more than {self.rss_growth_bytes_max}) after {self.frames_sent} frames"
                )
        if self.progress is not None:
            self.progress(
                WireProgress(
                    frames_sent=self.frames_sent,
                    frames_requested=self.frames_requested,
                    responses=self.responses,
                    connections_opened=self.connections_opened,
                    records_acknowledged=self.records_acknowledged,
                    failures=self.failures_total,
                    rss_bytes=rss,
                    elapsed_seconds=trio.current_time() - self.started,
                )
            )

    async def watch(self) -> None:
        """Sample and probe until the fuzzing is done."""
        while not self.fuzzing_done.is_set() and not self.stopped.is_set():
            with trio.move_on_after(WIRE_FUZZ_SAMPLE_INTERVAL_SECONDS):
                await self.fuzzing_done.wait()
            await self.sample()
            if self.frames_sent >= self.next_probe_frames and not self.stopped.is_set():
                self.next_probe_frames = self.frames_sent + WIRE_FUZZ_PROBE_INTERVAL_FRAMES
                await self.probe()

    # --- the well-behaved client -------------------------------------------------------------

    async def set_up(self) -> None:
        """Create KNOWN_TOPIC (fuzzed requests name it) and the producer's topic."""
        async with open_admin(self.bootstrap, client_id="trioring-wire-fuzz-admin") as admin:
            for name, partitions in (
                (KNOWN_TOPIC, _KNOWN_TOPIC_PARTITIONS),
                (self.topic, WIRE_FUZZ_VERIFY_PARTITIONS),
            ):
                try:
                    await admin.create_topic(name, partitions=partitions, replication_factor=1)
                except TrioringError as error:
                    if getattr(error, "kafka_error_code", None) != _TOPIC_ALREADY_EXISTS:
                        raise

    async def produce(self) -> None:
        """Write known records (acks=all, idempotent) until the fuzzing is done."""
        try:
            with self.producer_scope:
                await self._produce()
        finally:
            self.producer_done.set()

    async def _produce(self) -> None:
        number = 0
        try:
            async with open_producer(
                self.bootstrap, acks="all", client_id=_PRODUCER_CLIENT_ID
            ) as producer:
                while not self.fuzzing_done.is_set():
                    handles = []
                    for _ in range(WIRE_FUZZ_PRODUCE_RECORDS_PER_ROUND):
                        key, value = known_record(self.seed, number)
                        handles.append((number, producer.send_nowait(self.topic, value, key=key)))
                        number += 1
                    for record, handle in handles:
                        try:
                            metadata = await handle.wait()
                        except TrioringError as error:
                            self.records_failed += 1
                            self.fail(
                                f"the well-behaved producer's record {record} failed: {error}"
                            )
                            continue
                        self.acknowledged.setdefault(metadata.partition, []).append(
                            (metadata.offset, record)
                        )
                        self.records_acknowledged += 1
                    with trio.move_on_after(WIRE_FUZZ_PRODUCE_INTERVAL_SECONDS):
                        await self.fuzzing_done.wait()
        except TrioringError as error:
            self.fail(f"the well-behaved producer failed after {number} records: {error!r}")

    async def verify(self) -> None:
        """Read the producer's topic back: each acknowledged record at its offset, once."""
        partitions = [(self.topic, partition) for partition in range(WIRE_FUZZ_VERIFY_PARTITIONS)]
        async with open_admin(self.bootstrap, client_id="trioring-wire-fuzz-admin") as admin:
            starts = await admin.list_offsets(partitions, "earliest")
            ends = await admin.list_offsets(partitions, "latest")
        read: dict[int, list[Any]] = {partition: [] for _, partition in partitions}
        async with open_consumer(
            self.bootstrap, auto_offset_reset="earliest", client_id="trioring-wire-fuzz-consumer"
        ) as consumer:
            # Read to the end by position, not by count: a partition that lost
            # records is still read to its end, and then found short.
            unread = [tp for tp in partitions if ends[tp] > starts[tp]]
            consumer.assign(unread)
            positions = {tp: -1 for tp in unread}
            moved = {tp: trio.current_time() for tp in unread}
            while unread:
                for record in await consumer.getmany(timeout_s=WIRE_FUZZ_SAMPLE_INTERVAL_SECONDS):
                    read[record.partition].append(record)
                for tp in list(unread):
                    position = await consumer.position(*tp)
                    if position >= ends[tp]:
                        unread.remove(tp)
                    elif position != positions[tp]:
                        positions[tp], moved[tp] = position, trio.current_time()
                    elif trio.current_time() - moved[tp] > WIRE_FUZZ_VERIFY_STALL_SECONDS:
                        self.fail(
                            f"{tp[0]}-{tp[1]}: reading stalled at offset {position} "
                            f"(its end is {ends[tp]}): the broker serves nothing there"
                        )
                        unread.remove(tp)
        for _, partition in partitions:
            self._check_partition(partition, starts[(self.topic, partition)], read[partition])

    def _check_partition(self, partition: int, start: int, records: list[Any]) -> None:
        where = f"{self.topic}-{partition}"
        if start != 0:
            self.fail(f"{where} starts at offset {start}, not 0: records were deleted")
        by_offset = {}
        expected_offset: int | None = start
        for record in records:
            if record.offset != expected_offset and expected_offset is not None:
                self.fail(f"{where}: offset {record.offset} read where {expected_offset} was due")
                expected_offset = None  # said once
            elif expected_offset is not None:
                expected_offset += 1
            if record.offset in by_offset:
                self.fail(f"{where}: offset {record.offset} read twice")
            by_offset[record.offset] = record
        acknowledged = dict(self.acknowledged.get(partition, []))
        wrong = []
        for offset, number in sorted(acknowledged.items()):
            key, value = known_record(self.seed, number)
            record = by_offset.get(offset)
            if record is None:
                wrong.append(f"record {number} at offset {offset} is missing")
            elif record.key != key or record.value != value or record.headers:
                wrong.append(
                    f"record {number} at offset {offset} reads back as key {record.key!r}, "
                    f"{len(record.value or b'')} bytes of value "
                    f"{(record.value or b'')[:32].hex()}..., headers {record.headers!r}"
                )
            else:
                self.records_verified += 1
        if wrong:
            self.fail(
                f"{where}: {len(wrong)} of {len(acknowledged)} acknowledged records are not "
                f"as written: " + "; ".join(wrong[:_RECORDS_DESCRIBED_MAX])
            )
        unacknowledged = sorted(set(by_offset) - set(acknowledged))
        if unacknowledged and self.records_failed == 0:
            # Every send was acknowledged: anything else is a duplicate or a stranger.
            self.fail(
                f"{where}: {len(unacknowledged)} records that were never acknowledged, "
                f"first at offset {unacknowledged[0]} (key {by_offset[unacknowledged[0]].key!r})"
            )


def _api_versions_request(correlation_id: int) -> bytes:
    return encode_request(
        ApiKey.API_VERSIONS,
        0,
        correlation_id,
        _SENTINEL_CLIENT_ID,
        request_schema(ApiKey.API_VERSIONS, 0)(),
    )


class _Connection:
    """One fuzzing connection: pipelines out, answers checked as they come back."""

    def __init__(self, run: _Run, stream: trio.SocketStream) -> None:
        self.fuzzing = run
        self.stream = stream
        self.checker = AnswerChecker(run.frame_bytes_max)
        #: Whether the server closed the connection (or it broke), and whether
        #: the pipeline's sentinel is answered; ``wakeup`` is set when either becomes true.
        self.closed = False
        self.answered = False
        self.wakeup = trio.Event()
        #: Position of the pipeline's sentinel in the checker's requests.
        self.sentinel: int | None = None
        #: The frames of the last two pipelines or so, for failure reports.
        self.recent: tuple[FuzzFrame, ...] = ()
        #: The frames sent since the last sentinel was answered.
        self.unanswered: tuple[FuzzFrame, ...] = ()
        self.failed = False

    async def run(self) -> None:
        run = self.fuzzing
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._receive)
            for _ in range(WIRE_FUZZ_CONNECTION_BURSTS_MAX):
                if run.frames_left <= 0 or run.stopped.is_set():
                    break
                if not await self._burst(run.next_burst()):
                    break
            nursery.cancel_scope.cancel()

    async def _burst(self, burst: Burst) -> bool:
        """Write one pipeline and wait for what its ending needs; whether to go on."""
        run = self.fuzzing
        checker = self.checker
        self.recent = (*self.recent[-WIRE_FUZZ_PIPELINE_FRAMES_MAX:], *burst.frames)
        self.unanswered += burst.frames
        for frame in burst.frames:
            checker.sent(frame.data, frame.index)
            run.frames_by_kind[frame.kind] += 1
        data = [frame.data for frame in burst.frames]
        run.frames_sent += len(burst.frames)
        answering = burst.ending in ("answer", "answer_then_close")
        if answering:
            data.append(_api_versions_request(run.next_own_correlation_id()))
            checker.sent(data[-1], -1)
            self.sentinel = len(checker.requests) - 1
        self.answered = False
        self.wakeup = trio.Event()
        with trio.move_on_after(WIRE_FUZZ_ANSWER_SECONDS) as scope:
            try:
                await self.stream.send_all(b"".join(data))
                if burst.ending == "hang_up":
                    run.connections_hung_up += 1
                    return False
                if burst.ending == "half_close":
                    await self.stream.send_eof()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # the server closed it: the receiver sees that too
            if burst.ending == "more" and not self.closed:
                return True
            while not (self.closed or (answering and self.answered)):
                await self.wakeup.wait()
                self.wakeup = trio.Event()
        if self.failed:
            return False
        if scope.cancelled_caught:
            run.fail(
                f"no answer to a pipeline (ending: {burst.ending}) within "
                f"{WIRE_FUZZ_ANSWER_SECONDS} s, and the connection is still open",
                self.unanswered,
            )
            return False
        if answering and self.answered:
            self.unanswered = ()
            return burst.ending == "answer"
        if (
            burst.ending != "half_close"
            and all(frame.kind in WELL_FORMED for frame in self.unanswered)
            and not run.stop_if_dead()
        ):
            run.fail(
                "the server closed the connection instead of answering well-formed requests",
                self.unanswered,
            )
        return False

    async def _receive(self) -> None:
        run = self.fuzzing
        checker = self.checker
        try:
            while True:
                try:
                    data = await self.stream.receive_some(RECEIVE_BYTES)
                except trio.BrokenResourceError:
                    data = b""
                if not data:
                    run.connections_closed_by_server += 1
                    return
                before, unchecked = checker.answers, checker.answers_unchecked
                try:
                    checker.received(data)
                except AnswerError as error:
                    self.failed = True
                    run.fail(str(error), self.recent)
                    return
                finally:
                    run.responses += checker.answers - before
                    run.responses_unchecked += checker.answers_unchecked - unchecked
                if self.sentinel is not None and checker.position_after(self.sentinel):
                    self.sentinel = None
                    self.answered = True
                    self.wakeup.set()
        finally:
            self.closed = True
            self.wakeup.set()


async def fuzz_wire(
    bootstrap: str,
    *,
    frames: int,
    seed: int,
    connections: int = WIRE_FUZZ_CONNECTIONS_DEFAULT,
    broker_pid: int | None = None,
    rss_growth_bytes_max: int = WIRE_FUZZ_RSS_GROWTH_BYTES_MAX_DEFAULT,
    frame_bytes_max: int = FRAME_BYTES_MAX_DEFAULT,
    progress: Callable[[WireProgress], None] | None = None,
) -> WireSummary:
    """Fuzz the broker at ``bootstrap`` ("HOST:PORT") with ``frames`` frames of ``seed``.

    ``broker_pid`` (the broker's process, workers included as its children)
    turns on the process and memory checks. ``frame_bytes_max`` is the
    broker's request frame limit, which oversized frames aim at. Raises only
    for arguments out of range; every failure found is in the summary.
    """
    if frames < 0:
        raise ValueError(f"frames must be 0 or more, not {frames}")
    if connections < 1:
        raise ValueError(f"connections must be 1 or more, not {connections}")
    run = _Run(
        bootstrap,
        frames=frames,
        seed=seed,
        broker_pid=broker_pid,
        rss_growth_bytes_max=rss_growth_bytes_max,
        frame_bytes_max=frame_bytes_max,
        progress=progress,
    )
    try:
        with trio.fail_after(WIRE_FUZZ_SETUP_SECONDS):
            await run.set_up()
    except (OSError, TrioringError, trio.TooSlowError) as error:
        run.fail(f"could not set up (create the fuzzer's topics): {error!r}")
        return run.summary()
    await run.sample()  # the memory baseline
    run.fuzzing_started = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run.guarded, "watcher", run.watch)
        nursery.start_soon(run.guarded, "producer", run.produce)
        with run.fuzz_scope:
            async with trio.open_nursery() as fuzzers:
                for _ in range(connections):
                    fuzzers.start_soon(run.guarded, "connection", run.fuzz_connections)
        run.fuzzing_ended = trio.current_time()
        run.fuzzing_done.set()
        with trio.move_on_after(WIRE_FUZZ_ANSWER_SECONDS) as waiting:
            await run.producer_done.wait()
        if waiting.cancelled_caught:
            run.fail(
                f"the well-behaved producer's last records were not acknowledged within "
                f"{WIRE_FUZZ_ANSWER_SECONDS} s of the end"
            )
            run.producer_scope.cancel()
    if not run.stopped.is_set():
        await run.guarded("final probe", run.probe)
    if not run.stopped.is_set():
        await run.sample()
    if run.records_acknowledged and not run.stopped.is_set():
        try:
            with trio.fail_after(WIRE_FUZZ_VERIFY_SECONDS):
                await run.verify()
        except (OSError, TrioringError, trio.TooSlowError) as error:
            run.fail(f"could not read the well-behaved producer's records back: {error!r}")
    return run.summary()

"""Many idle connections and clients that do not read their answers.

- 1,000 idle TCP connections to a broker process: its RSS grows by a bounded
  amount per connection, a normal client produces and consumes meanwhile,
  and every idle connection is closed after ``connections_max_idle_ms``.
- A client that sends Fetch requests for big answers and never reads them
  holds at most one answer's worth of broker memory, does not stall other
  clients, and is closed once it has taken nothing for ``connections_max_idle_ms``.
"""

from __future__ import annotations

import contextlib
import datetime
import resource
import select
import socket
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from kio.schema.fetch.v11.request import FetchPartition, FetchRequest, FetchTopic
from kio.schema.produce.v7.request import PartitionProduceData, ProduceRequest, TopicProduceData
from kio.static.primitive import i16, i32, i32Timedelta, i64
from server_support import encode_request, exchange

from trioring import Record
from trioring.protocol.kafka import ApiKey
from trioring.protocol.records import build_batch
from trioring.testing import BrokerProcess
from trioring.uring._uring import uring_unavailable_reason

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "interop"))
from interop_wire import api_versions_round_trip, broker_log

IDLE_CONNECTIONS = 1000
#: What the test allows one idle connection to cost the broker's RSS (its
#: tasks, cancel scopes, channel and decoder; the socket's kernel memory is
#: not in the RSS). Measured with Python 3.11: about 16.5 KB with io_uring,
#: 14 KB with the fallback backend.
IDLE_CONNECTION_BYTES_MAX = 32 * 1024
IDLE_MS = 3000
#: The slow reader's answers: one Fetch of 16 batches of about 1 MB.
ANSWER_BYTES = 16 * 1_000_000


@pytest.fixture(params=["uring", "fallback"])
def io_backend(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    if kind == "uring":
        unavailable = uring_unavailable_reason()
        if unavailable is not None:
            pytest.skip(f"io_uring unavailable: {unavailable.strerror}")
    return kind


def idle_settings(tmp_path: Path) -> Path:
    settings = tmp_path / "broker.toml"
    settings.write_text(f"[server]\nconnections_max_idle_ms = {IDLE_MS}\n")
    return settings


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def open_files(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def raise_open_files_limit(wanted: int) -> None:
    """Both ends of every connection live on this machine: make room (the broker inherits it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            pytest.skip(f"needs {wanted} open files, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def produce_request(topic: str, values: list[bytes], acks: int = -1) -> Any:
    return ProduceRequest(
        transactional_id=None,
        acks=i16(acks),
        timeout=i32Timedelta.parse(datetime.timedelta(seconds=5)),
        topic_data=(
            TopicProduceData(
                name=topic,  # type: ignore[arg-type]
                partition_data=(
                    PartitionProduceData(
                        index=i32(0),
                        records=build_batch([Record(value=value) for value in values]),
                    ),
                ),
            ),
        ),
    )


def fetch_request(topic: str, offset: int, max_bytes: int, max_wait_ms: int = 0) -> FetchRequest:
    return FetchRequest(
        max_wait=i32Timedelta.parse(datetime.timedelta(milliseconds=max_wait_ms)),
        min_bytes=i32(1),
        max_bytes=i32(max_bytes),
        topics=(
            FetchTopic(
                topic=topic,  # type: ignore[arg-type]
                partitions=(
                    FetchPartition(
                        partition=i32(0),
                        fetch_offset=i64(offset),
                        partition_max_bytes=i32(max_bytes),
                    ),
                ),
            ),
        ),
        forgotten_topics_data=(),
        rack_id="",
    )


def produce_and_consume(port: int, topic: str, value: bytes) -> None:
    """A normal client's round: produce (acks=all), then fetch it back."""
    produced = exchange(port, ApiKey.PRODUCE, 7, produce_request(topic, [value]))
    partition = produced.responses[0].partition_responses[0]
    assert int(partition.error_code) == 0
    fetched = exchange(
        port, ApiKey.FETCH, 11, fetch_request(topic, int(partition.base_offset), 1 << 20)
    )
    answer = fetched.responses[0].partitions[0]
    assert int(answer.error_code) == 0
    assert value in bytes(answer.records)


def closed_by_peer(connection: socket.socket) -> bool:
    # poll, not select: descriptors of a long test run pass select's 1024.
    poller = select.poll()
    poller.register(connection, select.POLLIN)
    if not poller.poll(0):
        return False
    try:
        return connection.recv(1) == b""
    except ConnectionResetError:
        return True


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_a_thousand_idle_connections_cost_little_and_are_closed_when_idle(
    tmp_path: Path, io_backend: str
) -> None:
    raise_open_files_limit(2 * IDLE_CONNECTIONS + 256)
    arguments = ["--config", str(idle_settings(tmp_path)), "--io-backend", io_backend]
    with BrokerProcess(tmp_path / "data", extra_arguments=arguments) as broker:
        assert broker.process is not None
        pid = broker.process.pid
        topic = broker.create_topic("busy")
        produce_and_consume(broker.port, topic, b"warm-up")  # every code path loaded
        api_versions_round_trip(broker.port)
        files_before = open_files(pid)
        rss_before = rss_bytes(pid)
        opened_at = time.monotonic()
        connections = [
            socket.create_connection(("127.0.0.1", broker.port), timeout=10)
            for _ in range(IDLE_CONNECTIONS)
        ]
        try:
            # The listener accepts in arrival order: once a later connection is
            # answered, the idle ones are accepted.
            api_versions_round_trip(broker.port)
            time.sleep(0.2)
            assert open_files(pid) >= files_before + IDLE_CONNECTIONS - 5
            rss_growth = rss_bytes(pid) - rss_before
            per_connection = rss_growth / IDLE_CONNECTIONS
            print(
                f"RSS growth {rss_growth / 1024:.0f} KiB: {per_connection:.0f} bytes a connection"
            )
            assert per_connection < IDLE_CONNECTION_BYTES_MAX
            # A normal client is served meanwhile, and is not idle.
            value = 0
            while time.monotonic() - opened_at < IDLE_MS / 1000 * 0.6:
                produce_and_consume(broker.port, topic, b"busy-%d" % value)
                value += 1
            assert not any(closed_by_peer(c) for c in connections), "closed before idle"
            # Every idle one is closed after connections_max_idle_ms.
            deadline = opened_at + IDLE_MS / 1000 + 20
            while not all(closed_by_peer(c) for c in connections):
                assert time.monotonic() < deadline, "idle connections were not closed"
                time.sleep(0.1)
            assert time.monotonic() - opened_at >= IDLE_MS / 1000 * 0.9
            deadline = time.monotonic() + 10
            # (A few descriptors of the other clients' connections may come and go.)
            while open_files(pid) > files_before + 5:
                assert time.monotonic() < deadline, "the broker kept their descriptors"
                time.sleep(0.05)
            produce_and_consume(broker.port, topic, b"after")
        finally:
            for connection in connections:
                connection.close()
        assert broker.stop() == 0
    assert "Traceback" not in broker_log(broker)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_a_client_that_never_reads_holds_one_answer_and_stalls_nobody(
    tmp_path: Path, io_backend: str
) -> None:
    arguments = ["--config", str(idle_settings(tmp_path)), "--io-backend", io_backend]
    with BrokerProcess(tmp_path / "data", extra_arguments=arguments, log_level="INFO") as broker:
        assert broker.process is not None
        pid = broker.process.pid
        big = broker.create_topic("big")
        quiet = broker.create_topic("quiet")
        for index in range(ANSWER_BYTES // 1_000_000):
            value = bytes([index]) * 1_000_000
            produced = exchange(broker.port, ApiKey.PRODUCE, 7, produce_request(big, [value]))
            assert int(produced.responses[0].partition_responses[0].error_code) == 0
        produce_and_consume(broker.port, quiet, b"warm-up")
        rss_before = rss_bytes(pid)
        slow = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            slow.connect(("127.0.0.1", broker.port))
            # Twenty pipelined Fetches of everything, never read.
            slow.sendall(
                b"".join(
                    encode_request(
                        ApiKey.FETCH, 11, fetch_request(big, 0, 2 * ANSWER_BYTES), correlation
                    )
                    for correlation in range(1, 21)
                )
            )
            peak = rss_before
            started = time.monotonic()
            rounds = 0
            while time.monotonic() - started < IDLE_MS / 1000 * 0.6:
                round_started = time.monotonic()
                produce_and_consume(broker.port, quiet, b"meanwhile-%d" % rounds)
                assert time.monotonic() - round_started < 2.0, "another client was stalled"
                peak = max(peak, rss_bytes(pid))
                rounds += 1
            growth = peak - rss_before
            print(f"RSS growth {growth / 2**20:.1f} MiB, one answer {ANSWER_BYTES / 2**20:.1f} MiB")
            assert rounds >= 3
            # One answer (and what the socket took of it), not one per request read.
            assert growth < 2 * ANSWER_BYTES
            # Taking nothing for connections_max_idle_ms closes it.
            deadline = started + IDLE_MS / 1000 + 15
            while "took none of its answers" not in broker_log(broker):
                assert time.monotonic() < deadline, "the slow reader was not closed"
                time.sleep(0.05)
            assert time.monotonic() - started >= IDLE_MS / 1000 * 0.9
            # What the socket took of the first answer, then the end.
            slow.settimeout(10)
            with contextlib.suppress(ConnectionResetError):  # unread requests: a reset
                while slow.recv(1 << 20):
                    pass
        finally:
            slow.close()
        produce_and_consume(broker.port, quiet, b"after")
        assert broker.stop() == 0
    log = broker_log(broker)
    assert "took none of its answers" in log
    assert "Traceback" not in log

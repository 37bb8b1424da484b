"""``python -m trioring`` as an operator meets it: help, version, mistakes, locks, stops.

Every start-up mistake is one line on stderr and exit code 2, without a
traceback (``--log-level DEBUG`` adds it); two processes never share a data
directory; SIGTERM does not wait out a long-polling fetch.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import confluent_kafka
import pytest
from kio.schema.metadata.v4.request import MetadataRequest, MetadataRequestTopic

import trioring
import trioring.cli
from trioring.protocol.kafka import ApiKey
from trioring.server._cli import TABLES, read_config_file, setting_keys
from trioring.testing import BrokerProcess

sys.path.insert(0, str(Path(__file__).resolve().parent / "interop"))
sys.path.insert(0, str(Path(__file__).resolve().parent / "server"))
from interop_wire import create_topic
from server_support import encode_request, exchange, long_poll

TIMEOUT_SECONDS = 60


def run(*arguments: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trioring", *arguments],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        cwd=cwd,
        check=False,
    )


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("trioring: error: "), lines[0]
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def test_version() -> None:
    result = run("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"trioring {trioring.__version__}"


def test_each_command_has_its_own_help() -> None:
    serve = run("serve", "--help").stdout
    assert "--listen" in serve and "--config" in serve and "--seconds" not in serve
    demo = run("demo", "--help").stdout
    assert "--seconds" in demo and "--listen" not in demo
    top = run("--help").stdout
    assert "serve" in top and "demo" in top and "--version" in top


def test_missing_config_file(tmp_path: Path) -> None:
    assert_one_line_error(
        run("--config", str(tmp_path / "nope.toml")), "nope.toml", "does not exist"
    )


@pytest.mark.parametrize(
    ("toml", "fragments"),
    [
        ("[log]\nsegment_bytez = 5\n", ["unknown key 'segment_bytez' in [log]", "segment_bytes"]),
        ("[server]\nport = 'x'\n", ["[server] port must be an integer"]),
        ("[kafka]\n", ["unknown table(s) [kafka]"]),
        ("not = toml = at all", ["not valid TOML"]),
        ("[log]\nsegment_bytes = 5\n", ["segment_bytes must be between"]),
        ("[broker]\nio_backend = 'fast'\n", ["io_backend must be 'auto' or 'uring' or 'fallback'"]),
    ],
)
def test_bad_config_files_name_the_key(tmp_path: Path, toml: str, fragments: list[str]) -> None:
    config = tmp_path / "broker.toml"
    config.write_text(toml)
    assert_one_line_error(
        run("--config", str(config), "--data-dir", str(tmp_path / "data")), *fragments
    )


def test_config_file_keys_are_applied(tmp_path: Path) -> None:
    config = tmp_path / "broker.toml"
    config.write_text(
        "[broker]\nflush_interval_ms = -1\n[log]\nretention_bytes = -1\n"
        "[groups]\ninitial_rebalance_delay_ms = 0\n[server]\nconnections_max_idle_ms = 1000\n"
    )
    tables = read_config_file(str(config))
    assert tables == {
        "broker": {"flush_interval_ms": None},
        "log": {"retention_bytes": None},
        "groups": {"initial_rebalance_delay_ms": 0},
        "server": {"connections_max_idle_ms": 1000},
    }


def test_unusable_data_directory(tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory")
    assert_one_line_error(
        run("--data-dir", str(a_file), "--listen", "127.0.0.1:0"), "is not a directory"
    )
    assert_one_line_error(
        run("--data-dir", str(a_file / "below"), "--listen", "127.0.0.1:0"),
        "cannot create the data directory",
    )


@pytest.mark.parametrize("workers", ["1", "2"])
def test_port_in_use(tmp_path: Path, workers: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run(
            "--data-dir",
            str(tmp_path / "data"),
            "--listen",
            f"127.0.0.1:{port}",
            "--workers",
            workers,
        )
        line = assert_one_line_error(result, "cannot listen on 127.0.0.1:", "in use")
        # Worker i listens on port + i: with two workers the one that fails first
        # is reported, and port + 1 may happen to be taken by another process too.
        ports = [port] if workers == "1" else [port, port + 1]
        assert any(f"127.0.0.1:{taken_port}:" in line for taken_port in ports), line
        debug = run(
            "--data-dir",
            str(tmp_path / "data"),
            "--listen",
            f"127.0.0.1:{port}",
            "--log-level",
            "DEBUG",
            "--workers",
            workers,
        )
    assert debug.returncode == 2 and "Traceback" in debug.stderr
    last = debug.stderr.strip().splitlines()[-1]
    assert last.startswith("trioring: error: ") and "cannot listen" in last


def test_bad_listen_address() -> None:
    assert_one_line_error(run("--listen", "nonsense"), "--listen must look like HOST:PORT")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--fault-control", "127.0.0.1:70000"], "--fault-control: the port must be 0-65535, not"),
        (["--fault-control", "127.0.0.1:65535", "--workers", "2"], "--fault-control: worker i"),
        (["--listen", "127.0.0.1:65535", "--workers", "2"], "--listen: worker i"),
        (["--advertised", "example.com:65535", "--workers", "2"], "--advertised: worker i"),
        (["--fault-control", "127.0.0.1:65534", "--workers", "3"], "a port up to 65533"),
    ],
)
def test_ports_past_65535_are_refused(
    arguments: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before: ``--fault-control 127.0.0.1:70000`` served on port 4464 (70000 - 65536),
    with 65535 and two workers worker 1 served on a free port (the docs say PORT + 1),
    and ``--listen 127.0.0.1:65535 --workers 2`` restarted worker 1 forever."""

    def started(*arguments: object) -> None:
        raise AssertionError("the broker started")

    monkeypatch.setattr("trioring.server._cli.trio.run", started)
    code = trioring.cli.main(["serve", "--workers", "1", *arguments])
    result = subprocess.CompletedProcess([], code, "", capsys.readouterr().err)
    line = assert_one_line_error(result, message)
    if "worker i" in message:
        assert "worker i uses port 65535 + i, and worker 1's 65536 is past 65535" in line


def test_a_second_process_on_a_data_directory_is_refused(tmp_path: Path) -> None:
    """Before: ``demo`` dropped a running server's topic from topics.json, and a
    second ``serve`` deleted a partition directory and truncated the offsets log."""
    data = tmp_path / "data"
    with BrokerProcess(data) as broker:
        assert broker.process is not None
        producer = confluent_kafka.Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
        producer.produce("precious", b"record")
        assert producer.flush(15) == 0
        metadata_before = metadata_log_bytes(data)
        for command in (
            ["demo", "--data-dir", str(data), "--seconds", "0.2"],
            ["serve", "--data-dir", str(data), "--listen", "127.0.0.1:0"],
        ):
            assert_one_line_error(run(*command), "is in use by process", str(broker.process.pid))
        assert metadata_log_bytes(data) == metadata_before
        assert (data / "precious-0").is_dir()
        # SIGKILL: the kernel drops the lock with the process; no stale lock remains.
        broker.kill()
        broker.start()
        assert b"precious" in metadata_before


def metadata_log_bytes(data: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted((data / "__cluster_metadata-0").glob("*.log")))


def test_demo_has_a_directory_of_its_own(tmp_path: Path) -> None:
    result = run("demo", "--seconds", "0.2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "trioring-demo-data").is_dir()
    assert not (tmp_path / "trioring-data").exists()


def _long_poll_fetch(port: int, topic: str, max_wait_ms: int, partition: int = 0) -> socket.socket:
    frame = encode_request(ApiKey.FETCH, 11, long_poll(topic, max_wait_ms, partition), 9)
    connection = socket.create_connection(("127.0.0.1", port), timeout=30)
    connection.sendall(frame)
    return connection


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_answers_long_polls_at_once_and_stops(tmp_path: Path, workers: int) -> None:
    """Before, SIGTERM waited out the whole 5 s grace period for a 30 s long poll.

    With two workers, every worker drains, and none is left running.
    """
    with BrokerProcess(tmp_path / "data", workers=workers) as broker:
        create_topic(broker.port, "idle", workers)
        connections = [
            _long_poll_fetch(port, "idle", 30_000, partition=partition)
            for partition, port in enumerate(
                _owners(broker, "idle") if workers > 1 else [broker.port]
            )
        ]
        pids = [broker.worker_pid(index) for index in range(workers)] if workers > 1 else []
        time.sleep(0.3)  # the fetches are waiting now
        assert broker.process is not None
        started = time.monotonic()
        broker.process.send_signal(signal.SIGTERM)
        answers = [connection.recv(1 << 16) for connection in connections]
        answered_after = time.monotonic() - started
        code = broker._wait()
        stopped_after = time.monotonic() - started
        for connection in connections:
            connection.close()
    for answer in answers:
        assert answer[4:8] == struct.pack(">i", 9), "the fetch was answered"
    assert code == 0
    assert answered_after < 2.0 and stopped_after < 3.0, (answered_after, stopped_after)
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists(), f"worker {pid} outlived the supervisor"


def _owners(broker: BrokerProcess, topic: str) -> list[int]:
    """The port of the worker that owns each partition of ``topic``."""
    response = exchange(
        broker.port,
        ApiKey.METADATA,
        4,
        MetadataRequest(
            topics=(MetadataRequestTopic(name=topic),),  # type: ignore[arg-type]
            allow_auto_topic_creation=False,
        ),
    )
    ports = {int(b.node_id): int(b.port) for b in response.brokers}
    (answer,) = response.topics
    partitions = sorted(answer.partitions, key=lambda p: p.partition_index)
    return [ports[int(p.leader_id)] for p in partitions]


def test_workers_can_be_pinned_to_cpus(tmp_path: Path) -> None:
    with BrokerProcess(tmp_path / "data", workers=2, extra_arguments=["--pin-cpus"]) as broker:
        allowed = sorted(os.sched_getaffinity(0))
        for index in range(2):
            status = Path(f"/proc/{broker.worker_pid(index)}/status").read_text()
            (line,) = [ln for ln in status.splitlines() if ln.startswith("Cpus_allowed_list:")]
            assert line.split()[1] == str(allowed[index % len(allowed)])


def test_every_settings_key_is_documented() -> None:
    page = (Path(__file__).resolve().parent.parent / "docs" / "configuration.md").read_text()
    for table in TABLES:
        section = page.split(f"## [{table}]", 1)[1].split("\n## ", 1)[0]
        for key in setting_keys(table):
            assert f"| `{key}` |" in section, f"[{table}] {key} is not in docs/configuration.md"

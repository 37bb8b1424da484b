"""``trioring topics / groups / produce / consume`` against a real broker process.

Most cases call ``trioring.cli.main`` in this process (the broker is a real
process either way; a Python start per command would cost the suite half a
second each); the cases about pipes, stdin and signals run the command as a
process, as a user's shell does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from trioring.cli import main
from trioring.testing import BrokerProcess

COMMAND_SECONDS_MAX = 60


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    # Two workers: leaders, coordinators and log sizes come from two nodes.
    with BrokerProcess(tmp_path_factory.mktemp("cli") / "data", workers=2) as process:
        yield process


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class Run:
    """``trioring ARGS -b BROKER`` in this process: exit code, stdout bytes, stderr text."""

    def __init__(self, broker: BrokerProcess, capfdbinary: pytest.CaptureFixture[bytes]) -> None:
        self.broker = broker
        self.capture = capfdbinary

    def __call__(self, *arguments: str) -> tuple[int, bytes, str]:
        self.capture.readouterr()
        try:
            code = main([*arguments, "-b", self.broker.bootstrap])
        except SystemExit as exited:  # argparse's mistakes
            assert isinstance(exited.code, int)
            code = exited.code
        out, err = self.capture.readouterr()
        return code, out, err.decode()

    def ok(self, *arguments: str) -> bytes:
        code, out, err = self(*arguments)
        assert code == 0, err
        return out

    def json(self, *arguments: str) -> list[dict]:  # type: ignore[type-arg]
        return [json.loads(line) for line in self.ok(*arguments, "--json").splitlines()]


@pytest.fixture
def run(broker: BrokerProcess, capfdbinary: pytest.CaptureFixture[bytes]) -> Run:
    return Run(broker, capfdbinary)


def one_error_line(err: str, *fragments: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("trioring: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], err


def test_topics_lifecycle(run: Run) -> None:
    topic = unique("topics")
    run.ok("topics", "create", topic, "-p", "3", "-c", "retention.ms=3600000")
    code, _, err = run("topics", "create", topic, "-p", "3")
    assert code == 1
    one_error_line(err, "already exists")
    run.ok("topics", "create", topic, "--if-not-exists")

    assert topic in run.ok("topics", "list").decode().split("\n")
    assert {"topic": topic, "partitions": 3} in run.json("topics", "list")
    [described] = run.json("topics", "describe", topic)
    assert [p["partition"] for p in described["partitions"]] == [0, 1, 2]
    assert {p["leader"] for p in described["partitions"]} == {0, 1}  # both workers lead some
    assert all(p["start_offset"] == p["end_offset"] == 0 for p in described["partitions"])
    assert described["configs"]["retention.ms"] == "3600000"
    # Plain text for pipes: a tab-separated header and one line per partition.
    text = run.ok("topics", "describe", topic).decode().splitlines()
    assert text[0].split("\t") == [
        "partition",
        "leader",
        "start_offset",
        "end_offset",
        "size_bytes",
    ]
    assert [line.split("\t")[0] for line in text[1:4]] == ["0", "1", "2"]

    run.ok("topics", "add-partitions", topic, "-p", "5")
    [described] = run.json("topics", "describe", topic)
    assert len(described["partitions"]) == 5
    code, _, err = run("topics", "add-partitions", topic, "-p", "4")
    assert code == 1
    one_error_line(err, "has 5 partitions already")

    run.ok("topics", "delete", topic)
    assert topic not in run.ok("topics", "list").decode().split("\n")
    code, _, err = run("topics", "delete", topic)
    assert code == 1
    one_error_line(err, topic)
    run.ok("topics", "delete", topic, "--if-exists")
    code, _, err = run("topics", "describe", topic)
    assert code == 1
    one_error_line(err, "does not exist")


def test_produce_and_consume_round_trip(run: Run, tmp_path: Path) -> None:
    topic = unique("roundtrip")
    run.ok("topics", "create", topic, "-p", "2")
    lines = [b"k%d:value %d" % (i, i) for i in range(40)] + [b"no key here", b"\xff\xfe:raw"]
    source = tmp_path / "input.txt"
    source.write_bytes(b"\n".join(lines) + b"\n")
    run.ok("produce", topic, "--file", str(source), "-K", ":", "-H", "origin=test", "-z", "zstd")
    [described] = run.json("topics", "describe", topic)
    assert sum(p["end_offset"] for p in described["partitions"]) == len(lines)
    assert all(p["size_bytes"] > 0 for p in described["partitions"])

    records = [
        json.loads(line)
        for line in run.ok("consume", topic, "--from-beginning", "-F", "json").splitlines()
    ]
    assert len(records) == len(lines)
    by_key = {r["key"]: r for r in records}
    assert by_key["k7"]["value"] == "value 7"
    assert by_key[None]["value"] == "no key here"
    assert all(r["headers"] == [["origin", "test"]] for r in records)
    # Keys go to partitions by Kafka's partitioner: one key, one partition.
    assert {r["partition"] for r in records} == {0, 1}

    # A --format writes the bytes as they are, undecodable ones too.
    raw = run.ok("consume", topic, "--from-beginning", "-F", r"{key}\t{value}")
    assert set(raw.splitlines()) == {b"k%d\tvalue %d" % (i, i) for i in range(40)} | {
        b"\tno key here",
        b"\xff\xfe\traw",
    }
    # Where to start: an offset, N before the end, a partition, a timestamp, a count.
    p0 = [r for r in records if r["partition"] == 0]
    out = run.ok("consume", topic, "-p", "0", "-o", "2", "-F", "{offset}")
    assert [int(x) for x in out.split()] == list(range(2, len(p0)))
    out = run.ok("consume", topic, "-p", "0", "-o", "-3", "-F", "{offset}")
    assert [int(x) for x in out.split()] == list(range(len(p0) - 3, len(p0)))
    assert run.ok("consume", topic, "--from-beginning", "-c", "5").count(b"\n") == 5
    assert run.ok("consume", topic) == b""  # from the end, not following: nothing
    future_ms = str(int(time.time() * 1000) + 3_600_000)
    assert run.ok("consume", topic, "--timestamp", future_ms) == b""
    assert run.ok("consume", topic, "--timestamp", "0").count(b"\n") == len(lines)


def test_produce_reports_a_refused_line_and_delivers_the_rest(run: Run, tmp_path: Path) -> None:
    topic = unique("longline")
    run.ok("topics", "create", topic, "-p", "1")
    source = tmp_path / "input.txt"
    source.write_bytes(b"before\n" + b"x" * (2 << 20) + b"\nafter\n")
    code, _, err = run("produce", topic, "--file", str(source), "-H", "raw=\udcff")
    assert code == 1
    assert "line 2 is longer than" in err
    assert err.strip().splitlines()[-1].startswith("trioring: error: 1 of 3 records")
    got = run.ok("consume", topic, "--from-beginning", "-F", "{value} {headers}")
    assert got.splitlines() == [b"before raw=\xff", b"after raw=\xff"]


def test_consume_offsets_stay_within_the_log(run: Run, broker: BrokerProcess) -> None:
    confluent_admin = pytest.importorskip("confluent_kafka.admin")
    confluent_kafka = pytest.importorskip("confluent_kafka")
    topic = unique("bounded")
    run.ok("topics", "create", topic, "-p", "1")
    source = "".join(f"{i}\n" for i in range(20))
    producer = confluent_kafka.Producer({"bootstrap.servers": broker.bootstrap})
    for line in source.splitlines():
        producer.produce(topic, line.encode(), partition=0)
    assert producer.flush(30) == 0
    admin = confluent_admin.AdminClient({"bootstrap.servers": broker.bootstrap})
    [future] = admin.delete_records([confluent_kafka.TopicPartition(topic, 0, 15)]).values()
    future.result(timeout=30)
    # Before the log start (deleted): from the log start; past the end: nothing.
    assert run.ok("consume", topic, "-o", "3").split() == [b"15", b"16", b"17", b"18", b"19"]
    assert run.ok("consume", topic, "-o", "-100").split() == [b"15", b"16", b"17", b"18", b"19"]
    assert run.ok("consume", topic, "-o", "-2").split() == [b"18", b"19"]
    assert run.ok("consume", topic, "-o", "1000") == b""
    # Following, from an offset: the same start, then it waits (until --count here).
    assert run.ok("consume", topic, "-f", "-o", "-2", "-c", "2").split() == [b"18", b"19"]
    assert run.ok("consume", topic, "-f", "-p", "0", "--from-beginning", "-c", "1") == b"15\n"


def test_group_consume_commits_and_the_groups_commands(run: Run, tmp_path: Path) -> None:
    topic, group = unique("grouped"), unique("group")
    run.ok("topics", "create", topic, "-p", "3")
    source = tmp_path / "input.txt"
    source.write_text("".join(f"{i}\n" for i in range(30)))
    run.ok("produce", topic, "--file", str(source))

    first = run.ok("consume", topic, "-g", group, "--from-beginning", "-c", "10").split()
    assert len(first) == 10
    rest = run.ok("consume", topic, "-g", group, "--from-beginning").split()
    # The second run resumed at the first's commits: every record exactly once.
    assert sorted(int(x) for x in first + rest) == list(range(30))

    assert any(g["group"] == group for g in run.json("groups", "list"))
    [described] = run.json("groups", "describe", group)
    assert described["state"] == "Empty" and described["members"] == []
    assert {(o["partition"], o["lag"]) for o in described["offsets"]} == {(0, 0), (1, 0), (2, 0)}

    # Dry run by default: the plan is shown, nothing changes.
    plan = run.ok("groups", "reset-offsets", group, "--topic", f"{topic}:0,2", "--to-earliest")
    assert plan.decode().splitlines()[0].split("\t") == [
        "topic",
        "partition",
        "committed",
        "new_offset",
    ]
    [again] = run.json("groups", "describe", group)
    assert again["offsets"] == described["offsets"]
    run.ok(
        "groups", "reset-offsets", group, "--topic", f"{topic}:0,2", "--to-earliest", "--execute"
    )
    [moved] = run.json("groups", "describe", group)
    lags = {o["partition"]: o for o in moved["offsets"]}
    assert lags[0]["committed"] == 0 and lags[2]["committed"] == 0
    assert lags[1]["lag"] == 0
    reread = run.ok("consume", topic, "-g", group).split()
    assert len(reread) == lags[0]["end"] + lags[2]["end"]
    run.ok("groups", "reset-offsets", group, "--all-topics", "--shift-by", "-1", "--execute")
    [shifted] = run.json("groups", "describe", group)
    # One back, kept within the log (an empty partition stays at 0).
    assert all(o["lag"] == min(1, o["end"]) for o in shifted["offsets"])

    # Its topic deleted, the group's offsets still show (with no end), and
    # --all-topics has nothing left to move.
    run.ok("topics", "delete", topic)
    [orphaned] = run.json("groups", "describe", group)
    assert {(o["partition"], o["end"], o["lag"]) for o in orphaned["offsets"]} == {
        (0, None, None),
        (1, None, None),
        (2, None, None),
    }
    code, _, err = run("groups", "reset-offsets", group, "--all-topics", "--to-earliest")
    assert code == 1
    one_error_line(err, "no commits in a topic that exists")

    run.ok("groups", "delete", group)
    code, _, err = run("groups", "describe", group)
    assert code == 1
    one_error_line(err, "no group")


def test_mistakes_are_one_line_and_an_exit_code(
    run: Run, capfdbinary: pytest.CaptureFixture[bytes]
) -> None:
    code, _, err = run("consume", unique("missing"))
    assert code == 1
    one_error_line(err, "does not exist")
    code, _, err = run("consume", "x", "-F", "{nope}")
    assert code == 2
    one_error_line(err, "unknown placeholder {nope}")
    code, _, err = run("consume", "x", "-g", "g", "-o", "3")
    assert code == 2
    one_error_line(err, "--group")
    code, _, err = run("produce", "x", "-H", "novalue")
    assert code == 2
    one_error_line(err, "KEY=VALUE")
    code, _, err = run("produce", "x", "--file", "/nonexistent/input")
    assert code == 1
    one_error_line(err, "cannot read")

    for arguments in (
        ["topics", "create", "bad name"],
        ["consume", "x", "--connect-timeout", "-1"],
        ["produce", "x", "-H", "\udcff=value"],  # a key that is not UTF-8 (PEP 383)
    ):
        code, _, err = run(*arguments)
        assert code == 2, err
        one_error_line(err)

    capfdbinary.readouterr()
    assert main(["topics", "list", "-b", "127.0.0.1:1"]) == 1
    one_error_line(capfdbinary.readouterr().err.decode(), "cannot reach a broker", "refused")
    assert main(["topics", "list", "-b", "nonsense"]) == 2
    one_error_line(capfdbinary.readouterr().err.decode(), "not HOST:PORT")
    for arguments in (["consume"], ["produce", "t", "--acks", "7"], ["topics"]):
        with pytest.raises(SystemExit) as exited:
            main(arguments)  # argparse's mistakes: one line too, not the usage text
        assert exited.value.code == 2
        one_error_line(capfdbinary.readouterr().err.decode(), "--help")


# --- as a shell runs it -----------------------------------------------------------------


def trioring(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "trioring", *arguments]


def test_stdin_pipes_and_signals(broker: BrokerProcess) -> None:
    topic = unique("shell")
    bootstrap = ["-b", broker.bootstrap]
    produced = subprocess.run(
        trioring("produce", topic, *bootstrap),
        input="".join(f"line {i}\n" for i in range(2000)),
        capture_output=True,
        check=False,
        text=True,
        timeout=COMMAND_SECONDS_MAX,
    )
    assert produced.returncode == 0, produced.stderr

    # The reader of stdout goes away: a quiet exit, no traceback.
    pipeline = subprocess.run(
        f"{' '.join(trioring('consume', topic, '--from-beginning', *bootstrap))} | head -n 3; "
        "exit ${PIPESTATUS[0]}",
        shell=True,
        executable="/bin/bash",
        capture_output=True,
        check=False,
        text=True,
        timeout=COMMAND_SECONDS_MAX,
    )
    assert pipeline.stdout.splitlines() == ["line 0", "line 1", "line 2"]
    assert pipeline.returncode == 141 and pipeline.stderr == "", pipeline.stderr

    # Following: SIGINT and SIGTERM end it cleanly; on SIGTERM a group member commits
    # everything it wrote before it leaves.
    for stop, expected in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
        group = unique("follow")
        follower = subprocess.Popen(
            # Trio's signal receiver hears SIGINT even where the parent ignores it
            # (a pytest-xdist worker does), as a terminal's process would.
            trioring("consume", topic, "-f", "-g", group, "--from-beginning", *bootstrap),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert follower.stdout is not None
            seen = [follower.stdout.readline() for _ in range(2000)]
            assert seen[0] == "line 0\n" and seen[-1] == "line 1999\n"
            follower.send_signal(stop)
            out, err = follower.communicate(timeout=COMMAND_SECONDS_MAX)
        finally:
            if follower.poll() is None:
                follower.kill()
                follower.wait()
        assert follower.returncode == expected, err
        assert "Traceback" not in err and out == ""
        if stop == signal.SIGTERM:
            described = subprocess.run(
                trioring("groups", "describe", group, "--json", *bootstrap),
                capture_output=True,
                check=False,
                text=True,
                timeout=COMMAND_SECONDS_MAX,
            )
            offsets = json.loads(described.stdout)["offsets"]
            assert offsets and all(o["lag"] == 0 for o in offsets), offsets


def test_reset_offsets_refuses_a_group_with_members(run: Run, broker: BrokerProcess) -> None:
    topic, group = unique("busy"), unique("busy")
    run.ok("topics", "create", topic, "-p", "1")
    follower = subprocess.Popen(
        trioring("consume", topic, "-f", "-g", group, "-b", broker.bootstrap),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + COMMAND_SECONDS_MAX
        described: dict = {}  # type: ignore[type-arg]
        while time.monotonic() < deadline:
            code, out, _ = run("groups", "describe", group, "--json")
            described = json.loads(out) if code == 0 else {}
            if described.get("members") and described["members"][0]["partitions"]:
                break
            time.sleep(0.2)
        assert described["members"][0]["partitions"] == [f"{topic}-0"]
        assert described["offsets"][0]["member_id"] == described["members"][0]["member_id"]
        code, _, err = run(
            "groups", "reset-offsets", group, "--topic", topic, "--to-earliest", "--execute"
        )
        assert code == 1
        one_error_line(err, "active member")
        # A second member gets no partition (the first holds the only one): without
        # -f it ends, rather than wait for one.
        assert run.ok("consume", topic, "-g", group) == b""
    finally:
        follower.send_signal(signal.SIGTERM)
        try:
            follower.wait(timeout=COMMAND_SECONDS_MAX)
        except subprocess.TimeoutExpired:
            follower.kill()
            follower.wait()


def test_a_reader_that_stops_reading_neither_stalls_the_member_nor_loses_records(
    run: Run, broker: BrokerProcess, tmp_path: Path
) -> None:
    """stdout is a pipe nobody reads: the writes block (in a thread, so the group's
    heartbeats go on), SIGTERM still ends the command at once, and the commit covers
    only records that reached the pipe, not the batch whose write was cut."""
    topic, group = unique("stuck"), unique("stuck")
    source = tmp_path / "input.txt"
    source.write_text("".join(f"line {i:06}\n" for i in range(30_000)))  # 360 KB
    run.ok("topics", "create", topic, "-p", "1")
    run.ok("produce", topic, "--file", str(source))
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    follower = None
    try:
        follower = subprocess.Popen(
            trioring(
                "consume", topic, "-f", "-g", group, "--from-beginning", "-b", broker.bootstrap
            ),
            stdout=write_end,
            stderr=subprocess.PIPE,
        )
        os.close(write_end)
        deadline = time.monotonic() + COMMAND_SECONDS_MAX
        while time.monotonic() < deadline:  # until the group committed while blocked
            code, out, _ = run("groups", "describe", group, "--json")
            offsets = json.loads(out)["offsets"] if code == 0 else []
            if offsets and offsets[0]["committed"] not in (None, -1):
                break
            time.sleep(0.5)
        follower.send_signal(signal.SIGTERM)
        _, err = follower.communicate(timeout=COMMAND_SECONDS_MAX)
        assert follower.returncode == 143, err
        piped = b""
        while chunk := os.read(read_end, 1 << 20):
            piped += chunk
    finally:
        os.close(read_end)
        if follower is not None and follower.poll() is None:  # the test failed early
            follower.kill()
            follower.wait()
    # The cut write may have left part of a record in the pipe: not a whole line.
    lines = piped[: piped.rfind(b"\n") + 1].splitlines()
    assert 0 < len(lines) < 30_000
    assert lines == [b"line %06d" % i for i in range(len(lines))]
    # Nothing is committed that did not reach the pipe whole; the cut batch is
    # read again by the group (at least once).
    [described] = run.json("groups", "describe", group)
    assert 0 < described["offsets"][0]["committed"] <= len(lines)


def test_produce_stopped_mid_input_still_sends_every_line_it_read(
    run: Run, broker: BrokerProcess
) -> None:
    """--rate holds lines that were read from stdin but not yet sent; Ctrl-C sends
    them too (they were dropped, and the exit code said nothing)."""
    topic = unique("paced")
    run.ok("topics", "create", topic, "-p", "1")
    producer = subprocess.Popen(
        trioring("produce", topic, "--rate", "2", "-b", broker.bootstrap),
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert producer.stdin is not None
        producer.stdin.write(b"".join(b"%d\n" % i for i in range(10)))
        producer.stdin.flush()  # and the input stays open: more may come
        deadline = time.monotonic() + COMMAND_SECONDS_MAX
        while time.monotonic() < deadline:
            [described] = run.json("topics", "describe", topic)
            if described["partitions"][0]["end_offset"] >= 1:
                break
            time.sleep(0.1)
        producer.send_signal(signal.SIGINT)
        _, err = producer.communicate(timeout=COMMAND_SECONDS_MAX)
    finally:
        if producer.poll() is None:
            producer.kill()
            producer.wait()
    assert producer.returncode == 130, err
    got = run.ok("consume", topic, "--from-beginning").split()
    assert got == [b"%d" % i for i in range(10)]

"""``trioring bench produce|consume|e2e`` against one broker process: the JSON
summary's numbers hold together, the text forms, the mistakes (exit 2), an
unreachable broker and an unknown topic (exit 1, one line), several processes
and Ctrl-C. Tiny counts: speed is measured in benchmarks/, never asserted."""

from __future__ import annotations

import itertools
import json
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from trioring.cli import _parser, main
from trioring.cli._bench import _shares, run_bench
from trioring.cli._common import CommandError
from trioring.client import open_admin, open_consumer
from trioring.testing import BrokerProcess

TIMEOUT_SECONDS = 60


@pytest.fixture(scope="module")
def bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with BrokerProcess(tmp_path_factory.mktemp("bench") / "data") as broker:
        yield broker.bootstrap


def bench(capsys: pytest.CaptureFixture[str], *arguments: str) -> tuple[int, str, str]:
    code = main(["bench", *arguments])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def bench_json(capsys: pytest.CaptureFixture[str], *arguments: str) -> dict[str, Any]:
    code, out, err = bench(capsys, *arguments, "--json")
    assert code == 0, err
    assert len(out.splitlines()) == 1, out  # one JSON object and nothing else
    result: dict[str, Any] = json.loads(out)
    return result


def assert_sane(result: dict[str, Any], mode: str, records: int) -> None:
    assert result["mode"] == mode == result["settings"]["mode"]
    assert result["records"] == records
    assert result["elapsed_s"] > 0
    assert result["records_per_s"] > 0 and result["mb_per_s"] > 0
    assert result["interrupted"] is False
    if mode == "consume":
        assert result["latency_ms"] is None and result["histogram"] is None
        return
    latency = result["latency_ms"]
    assert latency["count"] == records
    assert 0 <= latency["min"] <= latency["p50"] <= latency["p99"] <= latency["p99_9"]
    assert latency["p99_9"] <= latency["max"]
    histogram = result["histogram"]
    assert sum(bucket["count"] for bucket in histogram) == records
    for before, after in itertools.pairwise(histogram):
        assert before["to_ms"] == after["from_ms"]
    assert result["failed"] == 0 and result["sent"] == records


def test_produce(capsys: pytest.CaptureFixture[str], bootstrap: str) -> None:
    result = bench_json(
        capsys,
        "produce",
        *("--bootstrap", bootstrap, "--topic", "produce", "--partitions", "3"),
        *("--count", "300", "--record-bytes", "100", "--acks", "1"),
    )
    assert_sane(result, "produce", 300)
    assert result["bytes"] == 300 * 100
    settings = result["settings"]
    assert (settings["partitions"], settings["record_bytes"], settings["acks"]) == (3, 100, "1")
    assert (settings["processes"], settings["count"], settings["topic"]) == (1, 300, "produce")


def test_produce_for_seconds_as_text(capsys: pytest.CaptureFixture[str], bootstrap: str) -> None:
    code, out, _ = bench(
        capsys,
        "produce",
        *("--bootstrap", bootstrap, "--topic", "produce-text", "--seconds", "0.3"),
        *("--rate", "1000", "--compression", "lz4"),
    )
    assert code == 0
    summary, header, *rows = out.splitlines()
    assert summary.startswith("bench produce: ") and "records/s" in summary
    assert "latency ms p50 " in summary and "acks=all" in summary and "6 partitions" in summary
    assert header.split("\t") == ["from_ms", "to_ms", "records", "percent"]
    records = int(summary.split()[2])
    assert 0 < records <= 1000 * 0.3 + 10  # paced
    assert sum(int(row.split("\t")[2]) for row in rows) == records


def test_consume_from_the_beginning(capsys: pytest.CaptureFixture[str], bootstrap: str) -> None:
    common = ("--bootstrap", bootstrap, "--topic", "consume")
    bench_json(capsys, "produce", *common, "--count", "400", "--partitions", "2", "-s", "200")
    result = bench_json(capsys, "consume", *common, "--count", "250")
    assert_sane(result, "consume", 250)
    assert result["bytes"] == 250 * 200
    # The records' size is what was read (before: --record-bytes, 1024 by default).
    assert result["settings"]["record_bytes"] == 200
    code, out, _ = bench(capsys, "consume", *common, "--count", "10", "--record-bytes", "7")
    assert code == 0 and "200 B records on average" in out.splitlines()[0]
    # The whole topic in --seconds: it stops at the end it found.
    result = bench_json(capsys, "consume", *common, "--seconds", "30")
    assert result["records"] == 400 and result["reached_end"] is True
    # More than it holds: said plainly, before reading.
    code, out, err = bench(capsys, "consume", *common, "--count", "401")
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "holds 400 records, fewer than --count 401" in err


def test_consume_as_a_group_and_produce_first(
    capsys: pytest.CaptureFixture[str], bootstrap: str
) -> None:
    common = ("--bootstrap", bootstrap, "--topic", "consume-group", "--group", "g")
    result = bench_json(capsys, "consume", *common, "--count", "150", "--produce-first")
    assert_sane(result, "consume", 150)
    assert result["settings"]["produce_first"] is True
    # The group committed what it read: the next run finds nothing past it.
    code, _, err = bench(capsys, "consume", *common, "--count", "1")
    assert code == 1 and "held only 0 records past the group's committed offsets" in err


async def test_consume_as_a_group_member_given_no_partitions_ends(
    capsys: pytest.CaptureFixture[str], bootstrap: str
) -> None:
    """Before: a member the group gave no partitions (another member held them all)
    waited for some for ever; only --seconds ended the run."""
    topic, group = "consume-held", "held"
    async with open_admin(bootstrap) as admin:
        await admin.create_topic(topic, partitions=1)
    # Member ids start with the client id: the range assignor gives the one
    # partition to this member, whose id sorts first.
    async with open_consumer(
        bootstrap, group_id=group, topics=[topic], client_id="a-holder", heartbeat_interval_ms=100
    ) as holder:
        with trio.fail_after(10):
            while not holder.assignment():
                await holder.getmany(timeout_s=0.05)
            arguments = ["--bootstrap", bootstrap, "--topic", topic, "--group", group]
            options = _parser().parse_args(["bench", "consume", *arguments, "--count", "5"])
            with pytest.raises(CommandError, match="gave this member none of the partitions"):
                await run_bench(options)
        assert holder.assignment() == {(topic, 0)}
    assert "0 records" in capsys.readouterr().out  # the summary, then the error


def test_e2e(capsys: pytest.CaptureFixture[str], bootstrap: str) -> None:
    result = bench_json(
        capsys, "e2e", "--bootstrap", bootstrap, "--topic", "e2e", "--count", "200", "--acks", "1"
    )
    assert_sane(result, "e2e", 200)
    assert result["missing"] == 0


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["produce", "--count", "0"], "--count must be 1 or more"),
        (["produce", "--seconds", "-1"], "--seconds must be more than 0"),
        (["e2e", "--record-bytes", "7"], "--record-bytes must be 8 to"),
        (["produce", "--processes", "3", "--count", "2"], "fewer records than --processes"),
        (["consume", "--group", "g", "--processes", "2"], "--group with --processes"),
        (["produce", "--rate", "0"], "--rate must be more than 0"),
    ],
)
def test_usage_mistakes(
    capsys: pytest.CaptureFixture[str], arguments: list[str], message: str
) -> None:
    code, out, err = bench(capsys, *arguments)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("trioring: error: ") and message in err


@pytest.mark.parametrize(
    "arguments",
    [["produce", "--count", "1", "--seconds", "1"], ["produce", "--count", "x"], ["fast"]],
)
def test_flags_argparse_refuses(capsys: pytest.CaptureFixture[str], arguments: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["bench", *arguments])
    assert exited.value.code == 2


def test_unreachable_broker_and_unknown_topic(
    capsys: pytest.CaptureFixture[str], bootstrap: str
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{probe.getsockname()[1]}"
    code, out, err = bench(capsys, "produce", "--bootstrap", closed, "--count", "1")
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "cannot reach a broker" in err
    code, out, err = bench(capsys, "consume", "--bootstrap", bootstrap, "--topic", "nothing")
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "topic 'nothing' does not exist" in err


def run(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trioring", "bench", *arguments],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        check=False,
    )


def test_several_processes(bootstrap: str) -> None:
    result = run(
        "e2e",
        *("--bootstrap", bootstrap, "--topic", "processes", "--partitions", "4"),
        *("--count", "301", "--processes", "2", "--json"),
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert_sane(summary, "e2e", 301)
    assert summary["settings"]["processes"] == 2


async def _wait_for_records(bootstrap: str, topic: str) -> None:
    """Until ``topic`` holds a record: a bench producing to it has started its load."""
    async with open_admin(bootstrap) as admin:
        with trio.fail_after(TIMEOUT_SECONDS):
            while True:
                info = (await admin.describe_topics()).get(topic)
                if info is not None and info.partitions:
                    keys = [(topic, partition.partition) for partition in info.partitions]
                    if any((await admin.list_offsets(keys, "latest")).values()):
                        return
                await trio.sleep(0.1)


def test_ctrl_c_still_reports(bootstrap: str, tmp_path: Path) -> None:
    output = tmp_path / "out"
    with output.open("w") as stdout:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "trioring", "bench", "produce", "--bootstrap", bootstrap),
                *("--topic", "interrupted", "--seconds", "60", "--rate", "500", "--json"),
            ],
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
        )
        interrupted = False
        try:
            # Once the load runs (a Ctrl-C while Python still imports ends the
            # process with a traceback, as any Python program; one before the
            # load starts ends it with "interrupted" and no summary).
            trio.run(_wait_for_records, bootstrap, "interrupted")
            process.send_signal(signal.SIGINT)
            interrupted = True
            _, err = process.communicate(timeout=TIMEOUT_SECONDS)
        finally:
            if process.poll() is None:
                process.kill()
                _, err = process.communicate()
                if interrupted:
                    pytest.fail(f"the bench did not end after Ctrl-C; its stderr: {err}")
    assert process.returncode == 130, err
    summary = json.loads(output.read_text())
    assert summary["interrupted"] is True
    assert summary["records"] == summary["sent"] and summary["failed"] == 0


@pytest.mark.parametrize(
    ("total", "weights", "shares"),
    [
        (10, [1, 1, 1], [4, 3, 3]),
        (10, [3, 0, 7], [3, 0, 7]),
        (5, [0, 0], [3, 2]),
        (7, [2, 9], [1, 6]),
    ],
)
def test_counts_are_shared_by_what_each_process_can_read(
    total: int, weights: list[int], shares: list[int]
) -> None:
    assert _shares(total, weights) == shares

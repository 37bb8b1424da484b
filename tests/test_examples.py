"""The README's commands and examples keep working."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

from trioring.demo import run_demo
from trioring.testing import BrokerProcess

ROOT = Path(__file__).resolve().parent.parent


def test_embedded_example_resumes_from_committed_offset(tmp_path: Path) -> None:
    def run() -> str:
        completed = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "embedded.py"), str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return completed.stdout

    first = run()
    assert "produced at offset 0" in first
    assert "committed {('events', 0): 1}" in first
    second = run()
    assert "produced at offset 1" in second
    # Only the new record is consumed: the group resumed at its committed offset.
    assert "\n1 b'user-1'" in second and "\n0 b'user-1'" not in second
    assert "committed {('events', 0): 2}" in second


def test_demo_command_runs_and_resumes(tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "trioring",
        "demo",
        "--data-dir",
        str(tmp_path),
        "--seconds",
        "0.5",
    ]
    first = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    assert "resumes at 0" in first.stdout
    assert "done: produced" in first.stdout
    second = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    assert "resumes at 0" not in second.stdout


async def test_demo_consumes_everything_it_produces(tmp_path: Path) -> None:
    lines: list[str] = []
    counts = await run_demo(str(tmp_path), seconds=0.3, records_per_second=500, say=lines.append)
    assert counts["produced"] > 0
    assert counts["consumed"] == counts["produced"]
    assert counts["committed_offset"] == counts["produced"]
    again = await run_demo(str(tmp_path), seconds=0.2, records_per_second=500, say=lines.append)
    assert again["committed_offset"] == counts["produced"] + again["produced"]


def test_default_command_serves_kafka_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    """``python -m trioring`` with no command is the server; SIGTERM flushes and exits 0."""
    command = [
        sys.executable,
        "-m",
        "trioring",
        "--data-dir",
        str(tmp_path / "data"),
        "--listen",
        "127.0.0.1:0",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert "listening on 127.0.0.1:" in first and "(Kafka protocol)" in first
        assert "I/O backend" in first and str(tmp_path / "data") in first
        # The line says which backend runs and why (e.g. "uring (io_uring ring
        # set up)", or "fallback (io_uring unavailable: ...)").
        assert re.search(r"I/O backend (uring|fallback) \([^)]+\)", first), first
        process.send_signal(signal.SIGTERM)
        stdout, _ = process.communicate(timeout=30)
    finally:
        process.kill()
        process.wait(timeout=30)
    assert process.returncode == 0
    assert "all data flushed" in stdout


def test_readme_embedded_example_runs_twice(tmp_path: Path) -> None:
    """The README's code, as written, on the same data directory twice (the second
    run used to fail: its topic exists, and the error came wrapped in a group)."""
    readme = (ROOT / "README.md").read_text()
    code = readme.split("## Embedded use", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    assert 'open_broker("./data")' in code
    script = tmp_path / "readme_example.py"
    script.write_text(code.replace('"./data"', repr(str(tmp_path / "data"))))
    outputs = [
        subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=True
        ).stdout
        for _ in range(2)
    ]
    assert outputs[0].splitlines()[0] == "0"  # the first record's offset
    assert outputs[1].splitlines()[0] == "1"


def test_readme_client_example_runs(tmp_path: Path) -> None:
    """The README's Trio client example, as written, against a broker process."""
    readme = (ROOT / "README.md").read_text()
    code = readme.split("## Trio client", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    assert '"127.0.0.1:9092"' in code
    with BrokerProcess(tmp_path / "data") as broker:
        script = tmp_path / "readme_client.py"
        script.write_text(code.replace('"127.0.0.1:9092"', repr(broker.bootstrap)))
        outputs = [
            subprocess.run(
                [sys.executable, str(script)],
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            ).stdout
            for _ in range(2)
        ]
        # The group consumer's example reads them back as a group member.
        consumer_code = readme.split("## Trio client", 1)[1].split("```python\n", 2)[2]
        consumer_code = consumer_code.split("```", 1)[0]
        assert "async def consume()" in consumer_code
        script = tmp_path / "readme_consumer.py"
        script.write_text(
            consumer_code.replace('"127.0.0.1:9092"', repr(broker.bootstrap))
            + "\n\nimport trio\n\n\nasync def _bounded():\n"
            + "    with trio.move_on_after(2.5):\n        await consume()\n\n\ntrio.run(_bounded)\n"
        )
        consumed = subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=True
        ).stdout
        broker.stop()
    assert outputs == ["0 0\n", "0 1\n"]  # auto-created with one partition
    assert consumed == "0 0 b'hello'\n0 1 b'hello'\n"

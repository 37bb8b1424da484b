"""The README's commands and examples keep working.

Every script in examples/ runs as a user would run it, as a child process,
against one broker process shared by the module (each test on topics and
groups of its own), with flags that keep it short.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from trioring.client import ConsumerRecord, open_admin, open_consumer
from trioring.demo import run_demo
from trioring.testing import BrokerProcess

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
#: Seconds one example run may take before the test fails (they take 1-6 s).
EXAMPLE_SECONDS = 60
#: The group examples' steps without the pauses a human needs to follow them.
GROUP_FLAGS = ["--records", "30", "--rate", "100", "--stagger", "0.2"]


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


# --- the scripts in examples/ ---------------------------------------------------------------


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """One broker process for the module's example runs."""
    with BrokerProcess(tmp_path_factory.mktemp("examples") / "data") as process:
        yield process


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _example_command(script: str, *arguments: str) -> list[str]:
    return [sys.executable, str(EXAMPLES / script), *arguments]


def _example_environment() -> dict[str, str]:
    """The examples import trioring from this tree, as the tests do."""
    paths = [str(ROOT), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


def run_example(script: str, *arguments: str) -> str:
    completed = subprocess.run(
        _example_command(script, *arguments),
        check=False,  # the assert below shows the example's stderr
        capture_output=True,
        text=True,
        timeout=EXAMPLE_SECONDS,
        env=_example_environment(),
    )
    assert completed.returncode == 0, f"{script}: {completed.stderr}\n{completed.stdout}"
    return completed.stdout


def _offsets(text: str) -> dict[int, int]:
    """``0:3 1:12`` as {0: 3, 1: 12}."""
    pairs = (pair.split(":") for pair in text.split() if pair != "-")
    return {int(partition): int(offset) for partition, offset in pairs}


def _committed(output: str, when: str) -> dict[int, int]:
    """The committed offsets a group example printed ``before`` or ``after`` its run."""
    match = re.search(rf"^{when}: group \S+ committed offsets ([\d: ]+)", output, re.MULTILINE)
    return {} if match is None else _offsets(match.group(1))


def _group_states(output: str) -> list[dict[str, frozenset[int]]]:
    """What each member holds after every assignment or revocation it printed."""
    holding: dict[str, frozenset[int]] = {}
    states = []
    for line in output.splitlines():
        match = re.fullmatch(r"(member-\d): (assigned|revoked) \[([\d, ]*)\]", line)
        if match is None:
            continue
        name, kind, numbers = match.groups()
        partitions = frozenset(int(n) for n in numbers.split(", ") if n)
        if kind == "assigned":
            holding[name] = partitions
        else:
            holding[name] = holding.get(name, frozenset()) - partitions
        states.append(dict(holding))
    return states


def _splits(states: list[dict[str, frozenset[int]]], members: set[str]) -> bool:
    """Whether at some point exactly ``members`` held the 6 partitions, each once."""
    for state in states:
        holders = {name for name, partitions in state.items() if partitions}
        held = [p for partitions in state.values() for p in partitions]
        if holders == members and sorted(held) == list(range(6)):
            return True
    return False


def _first_offsets(output: str) -> dict[int, int]:
    """The first offset any member read in each partition."""
    first: dict[int, int] = {}
    for match in re.finditer(r"left after reading \d+ records \(first offsets ([^)]*)\)", output):
        for partition, offset in _offsets(match.group(1)).items():
            first[partition] = min(offset, first.get(partition, offset))
    return first


def _check_group_run(output: str, records: int) -> None:
    """Three members split the partitions, two after member-2 left; every record read once."""
    states = _group_states(output)
    assert _splits(states, {"member-1", "member-2", "member-3"}), output
    left = output.index("member-2: leaving")
    assert _splits(_group_states(output[left:]), {"member-1", "member-3"}), output
    assert f"read {records} records in all" in output
    before, after = _committed(output, "before"), _committed(output, "after")
    assert sum(after.values()) - sum(before.values()) == records, output


def test_consumer_group_example_splits_commits_and_resumes(broker: BrokerProcess) -> None:
    topic, group = _name("orders"), _name("readers")
    flags = ["--bootstrap", broker.bootstrap, "--topic", topic, "--group", group, *GROUP_FLAGS]
    first = run_example("consumer_group.py", *flags)
    assert f"created topic {topic} with 6 partitions" in first
    assert "has no committed offsets" in first
    _check_group_run(first, 30)
    assert re.search(r"^after: .*\(lag 0\)$", first, re.MULTILINE), first

    second = run_example("consumer_group.py", *flags)
    # It resumes where the first run committed: its members' first offsets are those.
    committed = _committed(first, "after")
    assert _committed(second, "before") == committed
    first_read = _first_offsets(second)
    assert first_read and all(first_read[p] == committed[p] for p in first_read), second
    _check_group_run(second, 30)


def _with_default_sigint(command: list[str]) -> list[str]:
    """``command``, hearing SIGINT as from a terminal: a pytest-xdist worker ignores
    SIGINT, and a child inherits that (asyncio, aiokafka's example, then never hears
    Ctrl-C). Python first, restoring the default, then exec: no preexec_fn, which is
    unsafe in a process with threads."""
    restore = (
        "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
        "os.execv(sys.argv[1], sys.argv[1:])"
    )
    return [sys.executable, "-c", restore, *command]


@pytest.mark.parametrize(
    "script", ["consumer_group.py", "consumer_group_confluent.py", "consumer_group_aiokafka.py"]
)
def test_group_examples_leave_the_group_on_ctrl_c(broker: BrokerProcess, script: str) -> None:
    """Ctrl-C mid-run: no traceback, and the members left (the group is empty at once)."""
    topic, group = _name("orders"), _name("readers")
    flags = ["--bootstrap", broker.bootstrap, "--topic", topic, "--group", group]
    process = subprocess.Popen(
        _with_default_sigint(_example_command(script, *flags, "--stagger", "5")),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_example_environment(),
    )
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("member-1: assigned"):
                break
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=EXAMPLE_SECONDS)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert "Traceback" not in err and "Ctrl-C: the members" in out, err

    async def members() -> int:
        async with open_admin(broker.bootstrap) as admin:
            return len((await admin.describe_group(group)).members)

    assert trio.run(members) == 0


def test_confluent_and_aiokafka_group_examples_share_the_group(broker: BrokerProcess) -> None:
    """The librdkafka members read and commit; the aiokafka members resume from there."""
    pytest.importorskip("confluent_kafka")
    pytest.importorskip("aiokafka")
    topic, group = _name("orders"), _name("readers")
    flags = ["--bootstrap", broker.bootstrap, "--topic", topic, "--group", group, *GROUP_FLAGS]
    confluent = run_example("consumer_group_confluent.py", *flags)
    assert f"created topic {topic} with 6 partitions" in confluent
    _check_group_run(confluent, 30)
    aiokafka = run_example("consumer_group_aiokafka.py", *flags)
    assert _committed(aiokafka, "before") == _committed(confluent, "after")
    _check_group_run(aiokafka, 30)


_DELIVERY = re.compile(r"^(customer-\d+): partition (\d+) offset (\d+)$", re.MULTILINE)


def test_producer_example_prints_delivery_results(broker: BrokerProcess) -> None:
    topic = _name("orders")
    output = run_example(
        "producer.py", "--bootstrap", broker.bootstrap, "--topic", topic, "--count", "12"
    )
    assert f"created topic {topic} with 6 partitions" in output
    deliveries = [(key, int(p), int(o)) for key, p, o in _DELIVERY.findall(output)]
    assert len(deliveries) == 12
    # A key always goes to one partition; each partition's offsets are dense, in send order.
    assert len({key: p for key, p, _ in deliveries}) == 5
    assert all(len({p for k, p, _ in deliveries if k == key}) == 1 for key, _, _ in deliveries)
    for partition in {p for _, p, _ in deliveries}:
        offsets = [o for _, p, o in deliveries if p == partition]
        assert offsets == list(range(len(offsets)))
    assert re.search(r"^sent 12 records as producer id \d+$", output, re.MULTILINE), output


def test_tail_example_follows_what_is_written_after_it_starts(broker: BrokerProcess) -> None:
    topic = _name("orders")
    run_example("producer.py", "--bootstrap", broker.bootstrap, "--topic", topic, "--count", "3")
    tail = subprocess.Popen(
        _example_command(
            "tail.py", "--bootstrap", broker.bootstrap, "--topic", topic, "--count", "10"
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_example_environment(),
    )
    # A tail that never prints its first line is killed, and readline returns.
    watchdog = threading.Timer(EXAMPLE_SECONDS, tail.kill)
    watchdog.start()
    try:
        assert tail.stdout is not None
        # Printed once it knows where each partition ends: what comes later, it prints.
        assert tail.stdout.readline().startswith(f"following {topic} from offsets ")
        produced = run_example(
            "producer.py", "--bootstrap", broker.bootstrap, "--topic", topic, "--count", "10"
        )
        output, errors = tail.communicate(timeout=EXAMPLE_SECONDS)
    finally:
        watchdog.cancel()
        tail.kill()
        tail.wait()
    assert tail.returncode == 0, errors
    followed = re.findall(r"^partition (\d+) offset (\d+) (\S+): (.*)$", output, re.MULTILINE)
    # The ten records of the second run, not the three of the first.
    assert sorted(value for *_, value in followed) == sorted(f"order {i}" for i in range(10))
    delivered = {(p, o, key) for key, p, o in _DELIVERY.findall(produced)}
    assert {(p, o, key) for p, o, key, _ in followed} == delivered
    # From the beginning, it prints all thirteen, and stops once nothing more comes.
    everything = run_example(
        "tail.py",
        "--bootstrap",
        broker.bootstrap,
        "--topic",
        topic,
        "--from-beginning",
        "--idle-seconds",
        "0.5",
    )
    values = re.findall(r"^partition \d+ offset \d+ \S+: (.*)$", everything, re.MULTILINE)
    assert sorted(values) == sorted(
        [f"order {i}" for i in range(3)] + [f"order {i}" for i in range(10)]
    )
    assert everything.endswith("nothing new for 0.5 s: stopping\n")


def test_embedded_with_listener_example_serves_and_consumes_in_process(tmp_path: Path) -> None:
    output = run_example(
        "embedded_with_listener.py",
        "--data-dir",
        str(tmp_path / "data"),
        "--count",
        "5",
        "--seconds",
        "0.5",
    )
    assert re.search(r"^serving Kafka clients on 127\.0\.0\.1:\d+;", output, re.MULTILINE)
    produced = re.findall(r"^produced over the wire: partition (\d+) offset (\d+)$", output, re.M)
    consumed = re.findall(
        r"^consumed in-process: partition (\d+) offset (\d+): b'hello (\d)'$", output, re.M
    )
    assert len(produced) == 5
    # What went in through the port came out in-process, every record once.
    assert sorted((p, o) for p, o, _ in consumed) == sorted(produced)
    assert sorted(n for *_, n in consumed) == ["0", "1", "2", "3", "4"]
    assert output.endswith("stopped\n")


async def _read_topic(bootstrap: str, topic: str, count: int) -> list[ConsumerRecord]:
    """Every record of the topic, once ``count`` have come (then a little more, to see
    none follows)."""
    records: list[ConsumerRecord] = []
    async with open_admin(bootstrap) as admin:
        partitions = (await admin.describe_topic(topic)).partitions
    async with open_consumer(bootstrap, auto_offset_reset="earliest") as consumer:
        consumer.assign([(topic, p.partition) for p in partitions])
        with trio.fail_after(EXAMPLE_SECONDS):
            while len(records) < count:
                records += await consumer.getmany(timeout_s=1)
        records += await consumer.getmany(timeout_s=0.3)
    return records


async def _lag(bootstrap: str, group: str) -> int:
    async with open_admin(bootstrap) as admin:
        return sum(lag.lag for lag in (await admin.group_lag(group)).values())


def test_pipeline_example_writes_every_output_once_and_commits(broker: BrokerProcess) -> None:
    source, sink, group = _name("orders"), _name("processed"), _name("pipeline")
    flags = ["--bootstrap", broker.bootstrap, "--input", source, "--output", sink]
    flags += ["--group", group, "--seed", "40", "--idle-seconds", "1"]
    first = run_example("at_least_once_pipeline.py", *flags)
    assert f"wrote 40 sample orders to {source}" in first
    assert "stopping after 40 records" in first
    outputs = trio.run(_read_topic, broker.bootstrap, sink, 40)
    # In a clean run, exactly once: each input's output, no duplicate.
    assert sorted(r.value for r in outputs if r.value) == sorted(b"ORDER %d" % i for i in range(40))
    sources = [dict(r.headers)["source"] for r in outputs]
    assert len(set(sources)) == 40
    assert all(s is not None and s.startswith(f"{source}/".encode()) for s in sources)
    # Every input offset is committed: a next run would start after them.
    assert trio.run(_lag, broker.bootstrap, group) == 0


def test_every_example_is_listed_with_its_command_and_run_here() -> None:
    listing = (EXAMPLES / "README.md").read_text()
    tests = Path(__file__).read_text()
    for script in sorted(EXAMPLES.glob("*.py")):
        assert f"`python examples/{script.name}" in listing, script.name
        assert f'"{script.name}"' in tests, f"no test runs {script.name}"

"""Start-up of the test fixtures: how long until a test can use its broker.

- embedded (``trioring_broker``): ``open_embedded_broker`` on an empty
  directory until its block starts (broker open, Kafka listener bound),
  then the first acks=all produce to a new topic; and ``open_broker``
  alone. Timed in this process, after imports, each run on a fresh directory.
- process (``trioring_server``): ``BrokerProcess(faults=True).start()``
  from the fork until the broker answers an ApiVersions request on its port,
  with ``--workers 1`` and ``--workers 2``; and, for scale, the bare
  interpreter, ``python -m trioring --version`` (the imports every broker
  process and command pays before it can work) and ``python -c "import
  trioring.server._cli"`` (the same imports in a program that uses trioring
  as a library, where kio also imports Hypothesis: trioring/_startup.py).

Median, lowest and highest of ``--runs`` runs each (default 7)::

    python benchmarks/startup.py [--runs 7] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import trio

import trioring
from trioring import Record
from trioring.protocol.kafka import ApiKey, request_schema
from trioring.protocol.kafka._build import build
from trioring.protocol.kafka._client import decode_response, encode_request
from trioring.testing import BrokerProcess, open_embedded_broker

#: Seconds one start may take before the run is abandoned.
START_SECONDS = 60.0


def summary(seconds: list[float]) -> dict[str, float]:
    """Milliseconds: median, lowest, highest."""
    return {
        "median_ms": round(statistics.median(seconds) * 1000, 1),
        "min_ms": round(min(seconds) * 1000, 1),
        "max_ms": round(max(seconds) * 1000, 1),
    }


def embedded_runs(runs: int, parent: Path) -> dict[str, list[float]]:
    async def main() -> dict[str, list[float]]:
        times: dict[str, list[float]] = {
            "open_broker": [],
            "embedded fixture ready": [],
            "embedded first acks=all produce": [],
        }
        for run in range(runs):
            start = time.perf_counter()
            async with trioring.open_broker(parent / f"plain-{run}"):
                times["open_broker"].append(time.perf_counter() - start)
            start = time.perf_counter()
            async with open_embedded_broker(parent / f"fixture-{run}") as embedded:
                ready = time.perf_counter()
                times["embedded fixture ready"].append(ready - start)
                topic = await embedded.create_topic()
                await embedded.broker.produce(topic, 0, [Record(value=b"x")], acks="all")
                times["embedded first acks=all produce"].append(time.perf_counter() - ready)
        return times

    return trio.run(main)


def answers_api_versions(port: int) -> None:
    """Send ApiVersions v0 and read the whole answer: the broker serves Kafka."""
    body = build(request_schema(ApiKey.API_VERSIONS, 0))
    with socket.create_connection(("127.0.0.1", port), timeout=START_SECONDS) as sock:
        sock.sendall(encode_request(ApiKey.API_VERSIONS, 0, 1, "startup", body))
        (size,) = struct.unpack(">i", receive_exactly(sock, 4))
        decode_response(ApiKey.API_VERSIONS, 0, receive_exactly(sock, size))


def receive_exactly(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionError("closed before the answer")
        data += chunk
    return data


def process_runs(runs: int, parent: Path, workers: int) -> list[float]:
    times = []
    for run in range(runs):
        broker = BrokerProcess(parent / f"process-{workers}-{run}", workers=workers, faults=True)
        start = time.perf_counter()
        broker.start()
        try:
            answers_api_versions(broker.port)
            times.append(time.perf_counter() - start)
        finally:
            broker.stop()
    return times


def command_runs(runs: int, command: list[str]) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, check=True, timeout=START_SECONDS, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return times


def machine() -> dict[str, str]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {
        "cpus": str(len(os.sched_getaffinity(0))),
        "cpu": cpu,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "load_average_at_end": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    options = parser.parse_args()
    cases: dict[str, Callable[[Path], list[float]]] = {
        "python -c pass": lambda _: command_runs(options.runs, [sys.executable, "-c", "pass"]),
        "python -m trioring --version": lambda _: command_runs(
            options.runs, [sys.executable, "-m", "trioring", "--version"]
        ),
        "python -c 'import trioring.server._cli'": lambda _: command_runs(
            options.runs, [sys.executable, "-c", "import trioring.server._cli"]
        ),
        "process fixture ready, --workers 1": lambda parent: process_runs(options.runs, parent, 1),
        "process fixture ready, --workers 2": lambda parent: process_runs(options.runs, parent, 2),
    }
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="trioring-startup-") as directory:
        parent = Path(directory)
        for name, seconds in embedded_runs(options.runs, parent).items():
            results[name] = summary(seconds)
        for name, run in cases.items():
            results[name] = summary(run(parent))
    if options.json:
        print(json.dumps({"runs": options.runs, "machine": machine(), "results": results}))
        return
    print(f"{options.runs} runs each; " + "; ".join(f"{k}: {v}" for k, v in machine().items()))
    print("| case | median ms | min ms | max ms |")
    print("|---|---:|---:|---:|")
    for name, numbers in results.items():
        print(f"| {name} | {numbers['median_ms']} | {numbers['min_ms']} | {numbers['max_ms']} |")


if __name__ == "__main__":
    main()

"""One worker against N workers of trioring, on the same machine, in one run.

The broker runs as ``python -m trioring serve --workers W`` (W = 1, then
``--workers``) with its defaults: segments on disk, fdatasync before acks=all
is answered, the io_uring backend where it works. The load comes
from one kcat process per partition (C: librdkafka and a file of records,
``kcat -P -l`` / ``kcat -C -c``; Debian's package), started together, the
phase timed from their start to the last one's end; with ``--client python``
(or without kcat) from ``--clients`` confluent-kafka processes that connect
first and start on a "go".

Cases: 1 KiB records (``--record-bytes``), ``--partitions`` partitions (4),
acks=1 and acks=all; a produce phase of ``--mib`` MiB of record values in
all, then a consume phase reading them back from offset 0. The two broker
shapes alternate within each repeat (``--repeat``), so slow drift of the
machine's other load is spread over both; the tables give the median over
the repeats and the ratio N workers / 1 worker of the medians.

Reported: MB/s of record values (10^6 bytes), and the broker's CPU seconds
per GB (the supervisor and its workers, from /proc), and the client's cores
(every client process). On a machine with fewer cores than workers +
clients, the clients and the broker take CPU from each other: the client
cores column says how much of the machine the load generator used.

    python benchmarks/workers_scaling.py [--workers 2] [--clients 4] [--mib 256]
        [--repeat 3] [--output results.md]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import confluent_kafka
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kafka_peers import machine_lines, process_tree_cpu

from trioring.testing import BrokerProcess

#: Seconds a client may take to connect, and a phase to end.
CONNECT_SECONDS = 30.0
PHASE_SECONDS = 600.0


# --------------------------------------------------------------------------- client roles


def run_producer(options: argparse.Namespace) -> int:
    producer = confluent_kafka.Producer(
        {
            "bootstrap.servers": options.bootstrap,
            "acks": options.acks,
            "linger.ms": 5,
            "batch.size": 1 << 20,
            "batch.num.messages": 100_000,
            "queue.buffering.max.messages": 1_000_000,
            "compression.type": "none",
            "delivery.report.only.error": True,
        }
    )
    producer.list_topics(options.topic, timeout=CONNECT_SECONDS)
    value = b"x" * options.record_bytes
    partitions = [int(p) for p in options.partitions.split(",")]
    print("ready", flush=True)
    sys.stdin.readline()
    produce = producer.produce
    for index in range(options.count):
        partition = partitions[index % len(partitions)]
        while True:
            try:
                produce(options.topic, value, partition=partition)
                break
            except BufferError:
                producer.poll(0.01)
        if not index & 0xFFFF:
            producer.poll(0)
    left = producer.flush(PHASE_SECONDS)
    print(json.dumps({"undelivered": left}), flush=True)
    return 0 if left == 0 else 1


def run_consumer(options: argparse.Namespace) -> int:
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": options.bootstrap,
            "group.id": "workers-scaling",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            "fetch.queue.backoff.ms": 0,
        }
    )
    consumer.list_topics(options.topic, timeout=CONNECT_SECONDS)
    partitions = [int(p) for p in options.partitions.split(",")]
    print("ready", flush=True)
    sys.stdin.readline()
    consumer.assign([confluent_kafka.TopicPartition(options.topic, p, 0) for p in partitions])
    received = 0
    deadline = time.monotonic() + PHASE_SECONDS
    while received < options.count and time.monotonic() < deadline:
        wanted = min(10_000, options.count - received)
        for message in consumer.consume(num_messages=wanted, timeout=1.0):
            if message.error() is None:
                received += 1
    consumer.close()
    print(json.dumps({"received": received}), flush=True)
    return 0 if received == options.count else 1


# --------------------------------------------------------------------------- one case


@dataclass
class Phase:
    seconds: float
    bytes: int
    broker_cpu: float
    client_cores: float

    @property
    def megabytes_per_second(self) -> float:
        return self.bytes / 1e6 / self.seconds

    @property
    def broker_cpu_seconds_per_gigabyte(self) -> float:
        return self.broker_cpu / (self.bytes / 1e9)


def _client_command(
    role: str,
    options: argparse.Namespace,
    bootstrap: str,
    topic: str,
    partitions: list[int],
    count: int,
    acks: str,
    records_file: Path,
) -> list[str]:
    if options.client == "kcat":
        (partition,) = partitions
        if role == "produce":
            return [
                "kcat",
                "-P",
                "-b",
                bootstrap,
                "-t",
                topic,
                "-p",
                str(partition),
                "-X",
                f"acks={acks}",
                "-X",
                "linger.ms=5",
                "-X",
                "batch.num.messages=100000",
                "-X",
                "queue.buffering.max.messages=1000000",
                "-X",
                "queue.buffering.max.kbytes=1048576",
                "-l",
                str(records_file),
            ]
        return [
            "kcat",
            "-C",
            "-b",
            bootstrap,
            "-t",
            topic,
            "-p",
            str(partition),
            "-o",
            "beginning",
            "-c",
            str(count),
            "-q",
            "-f",
            "",
        ]
    return [
        sys.executable,
        __file__,
        "--role",
        role,
        "--bootstrap",
        bootstrap,
        "--topic",
        topic,
        "--partitions",
        ",".join(map(str, partitions)),
        "--count",
        str(count),
        "--record-bytes",
        str(options.record_bytes),
        "--acks",
        acks,
    ]


def run_phase(
    role: str,
    broker: BrokerProcess,
    topic: str,
    options: argparse.Namespace,
    count: int,
    acks: str,
    records_file: Path,
) -> Phase:
    """All clients at once; timed from their start (kcat) or their "go" (Python) to the last end."""
    clients, partitions = options.clients, options.partitions
    per_client = count // clients
    assert broker.process is not None
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    broker_before = process_tree_cpu(broker.process.pid)
    start = time.perf_counter()
    processes = []
    for client in range(clients):
        mine = [p for p in range(partitions) if p % clients == client] or [client % partitions]
        command = _client_command(
            role, options, broker.bootstrap, topic, mine, per_client, acks, records_file
        )
        processes.append(
            subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL if options.client == "kcat" else None,
                text=True,
            )
        )
    try:
        if options.client != "kcat":
            # Connected first; the phase starts at "go".
            for process in processes:
                assert process.stdout is not None
                if process.stdout.readline().strip() != "ready":
                    raise RuntimeError(f"a {role} client did not connect")
            broker_before = process_tree_cpu(broker.process.pid)
            start = time.perf_counter()
            for process in processes:
                assert process.stdin is not None
                process.stdin.write("go\n")
                process.stdin.flush()
        for process in processes:
            process.communicate(timeout=PHASE_SECONDS)
            if process.returncode != 0:
                raise RuntimeError(f"a {role} client failed (exit {process.returncode})")
        seconds = time.perf_counter() - start
        broker_cpu = process_tree_cpu(broker.process.pid) - broker_before
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    client_cpu = (children_after.ru_utime - children_before.ru_utime) + (
        children_after.ru_stime - children_before.ru_stime
    )
    return Phase(
        seconds, per_client * clients * options.record_bytes, broker_cpu, client_cpu / seconds
    )


def run_case(
    workers: int, directory: Path, args: argparse.Namespace, acks: str, records_file: Path
) -> tuple[Phase, Phase]:
    count = args.mib * (1 << 20) // args.record_bytes
    with BrokerProcess(directory / "data", workers=workers) as broker:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        topic = f"scaling-{acks}"
        for future in admin.create_topics([NewTopic(topic, args.partitions, 1)]).values():
            future.result(CONNECT_SECONDS)
        del admin
        produced = run_phase("produce", broker, topic, args, count, acks, records_file)
        consumed = run_phase("consume", broker, topic, args, count, acks, records_file)
        broker.stop()
    return produced, consumed


# --------------------------------------------------------------------------- report


def client_description(args: argparse.Namespace) -> str:
    if args.client == "kcat":
        version = subprocess.run(["kcat", "-V"], capture_output=True, text=True, check=False)
        lines = [ln for ln in (version.stdout + version.stderr).splitlines() if "Version" in ln]
        return f"kcat {lines[0].split('(', 1)[0].split()[-1] if lines else '(unknown version)'}"
    return f"confluent-kafka {confluent_kafka.version()} in Python"


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def report(
    args: argparse.Namespace, results: dict[tuple[str, str, int], list[Phase]], parent: Path
) -> str:
    lines = [
        f"# trioring: 1 worker vs {args.workers} workers",
        "",
        f"{args.partitions} partitions, {args.record_bytes}-byte records, {args.mib} MiB per "
        f"phase, {args.clients} client processes ({client_description(args)}), median of "
        f"{args.repeat} repeats (the shapes alternate within each repeat).",
        "",
        *(line for line in machine_lines(parent) if not line.startswith("- client:")),
        "",
        "| phase | acks | workers | MB/s | broker CPU s/GB | client cores | "
        f"MB/s ratio {args.workers}/1 |",
        "|---|---|---|---|---|---|---|",
    ]
    for phase in ("produce", "consume"):
        for acks in args.acks:
            one = results[(phase, acks, 1)]
            many = results[(phase, acks, args.workers)]
            ratio = median([p.megabytes_per_second for p in many]) / median(
                [p.megabytes_per_second for p in one]
            )
            for workers, runs in ((1, one), (args.workers, many)):
                lines.append(
                    f"| {phase} | {acks} | {workers} | "
                    f"{median([p.megabytes_per_second for p in runs]):.0f} "
                    f"({min(p.megabytes_per_second for p in runs):.0f}-"
                    f"{max(p.megabytes_per_second for p in runs):.0f}) | "
                    f"{median([p.broker_cpu_seconds_per_gigabyte for p in runs]):.2f} | "
                    f"{median([p.client_cores for p in runs]):.2f} | "
                    f"{f'{ratio:.2f}' if workers != 1 else ''} |"
                )
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 2
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--role", choices=["produce", "consume"], help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", help=argparse.SUPPRESS)
    parser.add_argument("--topic", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=max(2, cpus))
    parser.add_argument("--partitions", default="4")
    parser.add_argument("--clients", type=int)
    parser.add_argument("--record-bytes", type=int, default=1024)
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--acks", default="1,all")
    parser.add_argument(
        "--client",
        choices=["kcat", "python"],
        default="kcat" if shutil.which("kcat") else "python",
        help="load generator: kcat (C, one process per partition) or confluent-kafka in Python",
    )
    parser.add_argument("--output")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.role == "produce":
        return run_producer(args)
    if args.role == "consume":
        return run_consumer(args)
    args.partitions = int(args.partitions)
    args.clients = args.partitions if args.client == "kcat" else (args.clients or args.partitions)
    args.acks = args.acks.split(",")
    results: dict[tuple[str, str, int], list[Phase]] = {}
    with tempfile.TemporaryDirectory(prefix="workers-scaling-") as temporary:
        parent = Path(temporary)
        records_file = parent / "records.txt"
        per_client = args.mib * (1 << 20) // args.record_bytes // args.clients
        # kcat sends each line as one record: record_bytes - 1 bytes and a newline.
        records_file.write_bytes((b"x" * (args.record_bytes - 1) + b"\n") * per_client)
        for repeat in range(args.repeat):
            for acks in args.acks:
                shapes = [1, args.workers] if repeat % 2 == 0 else [args.workers, 1]
                for workers in shapes:
                    directory = parent / f"r{repeat}-{acks}-{workers}"
                    produced, consumed = run_case(workers, directory, args, acks, records_file)
                    results.setdefault(("produce", acks, workers), []).append(produced)
                    results.setdefault(("consume", acks, workers), []).append(consumed)
                    print(
                        f"repeat {repeat} acks={acks} workers={workers}: produce "
                        f"{produced.megabytes_per_second:.0f} MB/s, consume "
                        f"{consumed.megabytes_per_second:.0f} MB/s",
                        file=sys.stderr,
                        flush=True,
                    )
        text = report(args, results, parent)
    print(text)
    if args.output:
        Path(args.output).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Zero-copy Fetch against the copy path, on both I/O backends, in one run, as ratios.

The broker runs as ``python -m trioring serve --workers 1`` on one data
directory per record size, in four modes that take turns within each repeat:

- ``uring zero-copy``: ``--io-backend uring`` (records spliced file -> pipe -> socket);
- ``uring copy``: the same with ``[server] fetch_zero_copy = false`` (records
  pread, CRC-checked and copied into the answer);
- ``fallback sendfile``: ``--io-backend fallback`` (``os.sendfile``, in the loop for
  pieces the page cache holds, in a thread for the others);
- ``fallback copy``: the fallback with ``fetch_zero_copy = false``.

The data (``--mib`` MiB of 1 KiB records, and ``--small-mib`` MiB of 100 B
records, in one partition) is produced once, before anything is measured,
with confluent-kafka (linger 5 ms, 1 MiB batches); it stays in the page
cache. Each case starts 1 or ``--fan-out`` confluent-kafka consumer
processes that connect first, then on a "go" all read the whole partition
from offset 0 with ``assign()`` (librdkafka's default fetch sizes: 1 MiB per
partition, and ``fetch.queue.backoff.ms=0``). The phase is timed from the
go to the last consumer's end.

A last case per mode takes the consumers' cost out: a raw client (one thread
per connection, ``--raw-connections`` of them, plain sockets, no Python per
record) sends ``--raw-fetches`` Fetch requests of 1 MiB from offsets spread
over the partition, one in flight per connection, and reads each answer into
one buffer. The broker is then the bottleneck, and its CPU per Fetch is what
it costs to answer one. That case's MB/s and s/GB count the answers' bytes
(batches and framing), not record values.

Reported per case: MB/s of record values delivered to all consumers
together (10^6 bytes), and the broker's CPU seconds per GB delivered (its
process tree, from /proc: each thread's nanoseconds, see
``kafka_peers.TreeCpu``). Ratios: zero-copy / copy on the same backend. On
this 2-core machine the consumers (librdkafka plus Python per message) use
most of the CPU, so MB/s is mostly the clients' pace; CPU per GB is the
broker's own cost.

First, the kernel's own floor: what a zero-copy send can save at all on this
machine. A child process with no Python per byte sends a page-cached file of
``--floor-mib`` MiB to a reader (this process) over loopback TCP, 1 MiB at a
time, by ``pread`` + ``send``, by ``sendfile``, by ``splice`` through a
pipe, and by ``send`` from an mmap of the file (one copy, in the kernel);
its CPU seconds per GB, and each way's ratio to ``pread`` + ``send``.
On loopback the sender's CPU also pays for the receiving side's TCP work
(softirq), which zero-copy does not shorten.

    python benchmarks/zero_copy_fetch.py [--mib 512] [--small-mib 64] [--fan-out 10]
        [--floor-mib 256] [--repeat 3] [--raw-fetches 3000] [--raw-connections 4]
        [--output results.md]
"""

from __future__ import annotations

import argparse
import datetime
import fcntl
import json
import mmap
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import confluent_kafka
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kafka_peers import TreeCpu, machine_busy_cpu, machine_lines

from trioring.protocol.kafka import ApiKey, request_schema
from trioring.protocol.kafka._build import build, sibling
from trioring.protocol.kafka._client import encode_request
from trioring.testing import BrokerProcess

#: Seconds a client may take to connect, and a phase to end.
CONNECT_SECONDS = 30.0
PHASE_SECONDS = 600.0
TOPIC = "zero-copy"
MODES = {
    "uring zero-copy": ("uring", True),
    "uring copy": ("uring", False),
    "fallback sendfile": ("fallback", True),
    "fallback copy": ("fallback", False),
}
#: (zero-copy mode, copy mode) pairs compared.
PAIRS = (("uring zero-copy", "uring copy"), ("fallback sendfile", "fallback copy"))
CPU_RATIO_TARGET = 0.6
#: The key of the raw Fetch client's case in the results (where the others
#: have their number of consumers).
RAW_CLIENT = 0
#: Fetch version the raw client sends (the first flexible one), and its limits:
#: librdkafka's defaults (1 MiB per partition, 50 MiB per answer).
RAW_FETCH_VERSION = 12
RAW_PARTITION_BYTES = 1 << 20
RAW_ANSWER_BYTES = 50 << 20
#: An answer smaller than this holds no record batch (an error, or nothing
#: found): the run fails. Not more: a Fetch returns whole batches, and with
#: batches of up to 1 MiB an answer may hold one of half a MiB or less.
RAW_ANSWER_BYTES_MIN = 4096


# --------------------------------------------------------------------------- consumer role


def run_consumer(options: argparse.Namespace) -> int:
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": options.bootstrap,
            "group.id": "zero-copy-bench",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            "fetch.queue.backoff.ms": 0,
        }
    )
    consumer.list_topics(TOPIC, timeout=CONNECT_SECONDS)
    print("ready", flush=True)
    sys.stdin.readline()
    consumer.assign([confluent_kafka.TopicPartition(TOPIC, 0, 0)])
    received = 0
    wrong = 0
    deadline = time.monotonic() + PHASE_SECONDS
    while received < options.count and time.monotonic() < deadline:
        wanted = min(10_000, options.count - received)
        for message in consumer.consume(num_messages=wanted, timeout=1.0):
            if message.error() is not None:
                continue
            received += 1
            value = message.value()
            if value is None or len(value) != options.record_bytes:
                wrong += 1
    consumer.close()
    print(json.dumps({"received": received, "wrong": wrong}), flush=True)
    return 0 if received == options.count and not wrong else 1


def raw_fetch_frame(correlation_id: int, offset: int) -> bytes:
    schema = request_schema(ApiKey.FETCH, RAW_FETCH_VERSION)
    partition = build(
        sibling(schema, "FetchPartition"),
        partition=0,
        current_leader_epoch=-1,
        fetch_offset=offset,
        last_fetched_epoch=-1,
        log_start_offset=-1,
        partition_max_bytes=RAW_PARTITION_BYTES,
    )
    body = build(
        schema,
        replica_id=-1,
        max_wait=datetime.timedelta(milliseconds=500),
        min_bytes=1,
        max_bytes=RAW_ANSWER_BYTES,
        isolation_level=0,
        session_id=0,
        session_epoch=-1,
        topics=(build(sibling(schema, "FetchTopic"), topic=TOPIC, partitions=(partition,)),),
        forgotten_topics_data=(),
        rack_id="",
    )
    return encode_request(ApiKey.FETCH, RAW_FETCH_VERSION, correlation_id, "raw-fetch", body)


def run_raw_fetcher(options: argparse.Namespace) -> int:
    """Send ``options.count`` Fetch requests over ``options.connections`` connections."""
    # Offsets spread over the partition, each with at least 1 MiB after it.
    last = options.records - 2 * RAW_PARTITION_BYTES // options.record_bytes
    step = max(1, last // 64)
    frames = [raw_fetch_frame(index, (index * step) % max(1, last)) for index in range(64)]
    sockets = [
        socket.create_connection(("127.0.0.1", options.port), timeout=PHASE_SECONDS)
        for _ in range(options.connections)
    ]
    per_connection = options.count // options.connections
    received: list[int] = []
    failures: list[str] = []

    def fetch(sock: socket.socket, first: int) -> None:
        buffer = bytearray(2 * RAW_PARTITION_BYTES)
        view = memoryview(buffer)
        total = 0
        try:
            for index in range(first, first + per_connection):
                sock.sendall(frames[index % len(frames)])
                head = 0
                while head < 8:  # size and correlation id
                    got = sock.recv_into(view[head:8])
                    if not got:
                        raise EOFError("the broker closed the connection")
                    head += got
                size, correlation_id = struct.unpack_from(">ii", buffer)
                if correlation_id != index % len(frames) or size < RAW_ANSWER_BYTES_MIN:
                    raise ValueError(f"answer {correlation_id} of {size} bytes")
                left = size - 4
                while left:
                    got = sock.recv_into(view, min(left, len(buffer)))
                    if not got:
                        raise EOFError("the broker closed the connection")
                    left -= got
                total += size
        except (OSError, ValueError) as error:
            failures.append(str(error))
        received.append(total)

    print("ready", flush=True)
    sys.stdin.readline()
    threads = [
        threading.Thread(target=fetch, args=(sock, index * per_connection))
        for index, sock in enumerate(sockets)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for sock in sockets:
        sock.close()
    print(json.dumps({"fetches": per_connection * len(sockets), "bytes": sum(received)}))
    if failures:
        print(f"raw fetch failed: {failures[0]}", file=sys.stderr)
    return 1 if failures else 0


# --------------------------------------------------------------------------- the kernel's floor

#: "send from a mapping": send(2) straight from an mmap of the file, one copy in
#: the kernel (page cache -> socket buffers) and none in user space: not
#: zero-copy, but on some days cheaper than both zero-copy ways on loopback
#: here (docs/uring.md), so the table shows it.
FLOOR_WAYS = ("pread + send", "sendfile", "splice", "send from a mapping")
FLOOR_PIECE_BYTES = 1 << 20


def run_floor_sender(options: argparse.Namespace) -> int:
    """Send ``options.file`` whole to 127.0.0.1:``options.port`` one way; print CPU seconds."""
    fd = os.open(options.file, os.O_RDONLY)
    size = os.fstat(fd).st_size
    os.pread(fd, size, 0)  # in the page cache before the clock starts
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, FLOOR_PIECE_BYTES)
    with socket.create_connection(("127.0.0.1", options.port)) as sock:
        out = sock.fileno()
        start = time.process_time()
        mapping = mmap.mmap(fd, size, prot=mmap.PROT_READ)
        mapped = memoryview(mapping)
        for offset in range(0, size, FLOOR_PIECE_BYTES):
            count = min(FLOOR_PIECE_BYTES, size - offset)
            if options.way == "pread + send":
                sock.sendall(os.pread(fd, count, offset))
            elif options.way == "send from a mapping":
                sock.sendall(mapped[offset : offset + count])
            elif options.way == "sendfile":
                sent = 0
                while sent < count:
                    sent += os.sendfile(out, fd, offset + sent, count - sent)
            else:
                in_pipe = os.splice(fd, write_end, count, offset_src=offset)
                while in_pipe:
                    in_pipe -= os.splice(read_end, out, in_pipe)
        cpu = time.process_time() - start
        mapped.release()
        mapping.close()
    print(json.dumps({"cpu": cpu, "bytes": size}), flush=True)
    return 0


def floor_once(path: Path, way: str) -> float:
    """The sender's CPU seconds per GB for one way."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        command = [
            sys.executable,
            __file__,
            "--role",
            "floor-send",
            "--file",
            str(path),
            "--way",
            way,
            "--port",
            str(server.getsockname()[1]),
        ]
        sender = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        try:
            server.settimeout(CONNECT_SECONDS)
            connection, _ = server.accept()
            with connection:
                connection.settimeout(PHASE_SECONDS)
                buffer = bytearray(FLOOR_PIECE_BYTES)
                while connection.recv_into(buffer):
                    pass
            output, _ = sender.communicate(timeout=PHASE_SECONDS)
        finally:
            stop(sender)
    if sender.returncode != 0:
        raise RuntimeError(f"the {way} sender failed")
    result = json.loads(output)
    return float(result["cpu"]) / (float(result["bytes"]) / 1e9)


def kernel_floor(parent: Path, mebibytes: int, repeat: int) -> dict[str, list[float]]:
    path = parent / "floor"
    with open(path, "wb") as file:
        for _ in range(mebibytes):
            file.write(os.urandom(1 << 20))
    runs: dict[str, list[float]] = {way: [] for way in FLOOR_WAYS}
    for _ in range(repeat):
        for way in FLOOR_WAYS:
            runs[way].append(floor_once(path, way))
    path.unlink()
    return runs


def floor_lines(runs: dict[str, list[float]], mebibytes: int) -> list[str]:
    copy = median(runs["pread + send"])
    lines = [
        f"## The kernel's floor: {mebibytes} MiB to a loopback socket, no Python per byte",
        "",
        "| way | sender CPU s/GB | / pread + send |",
        "|---|---:|---:|",
    ]
    for way in FLOOR_WAYS:
        value = median(runs[way])
        lines.append(f"| {way} | {value:.3f} | {value / copy:.2f} |")
    return [*lines, ""]


# --------------------------------------------------------------------------- one case


@dataclass
class Result:
    seconds: float
    bytes: int
    broker_cpu: float
    #: CPU seconds the whole machine was busy (the consumers, mostly).
    machine_cpu: float
    #: Fetch requests answered (the raw client's case only).
    fetches: int = 0

    @property
    def megabytes_per_second(self) -> float:
        return self.bytes / 1e6 / self.seconds

    @property
    def cpu_seconds_per_gigabyte(self) -> float:
        return self.broker_cpu / (self.bytes / 1e9)


def produce(data_dir: Path, record_bytes: int, count: int) -> None:
    with BrokerProcess(data_dir, workers=1) as broker:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        for future in admin.create_topics([NewTopic(TOPIC, 1, 1)]).values():
            future.result(CONNECT_SECONDS)
        producer = confluent_kafka.Producer(
            {
                "bootstrap.servers": broker.bootstrap,
                "acks": "1",
                "linger.ms": 5,
                "batch.size": 1 << 20,
                "batch.num.messages": 100_000,
                "queue.buffering.max.messages": 1_000_000,
                "compression.type": "none",
                "delivery.report.only.error": True,
            }
        )
        value = b"v" * record_bytes
        for index in range(count):
            while True:
                try:
                    producer.produce(TOPIC, value, partition=0)
                    break
                except BufferError:
                    producer.poll(0.01)
            if not index & 0xFFFF:
                producer.poll(0)
        if producer.flush(PHASE_SECONDS):
            raise RuntimeError("records left undelivered")
        broker.stop()


def timed_phase(
    broker: BrokerProcess, commands: list[list[str]], who: str
) -> tuple[float, float, float, list[str]]:
    """Start the clients, wait until each prints "ready", then say "go" to all and
    time them to the last one's end: seconds, the broker's CPU seconds, the
    machine's busy CPU seconds, and each client's output."""
    assert broker.process is not None
    processes = [
        subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for command in commands
    ]
    outputs = []
    try:
        for process in processes:
            assert process.stdout is not None
            if process.stdout.readline().strip() != "ready":
                raise RuntimeError(f"{who} did not connect")
        broker_before = TreeCpu.of(broker.process.pid)
        machine_before = machine_busy_cpu()
        start = time.perf_counter()
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        for process in processes:
            output, _ = process.communicate(timeout=PHASE_SECONDS)
            if process.returncode != 0:
                raise RuntimeError(f"{who} failed: {output.strip()}")
            outputs.append(output)
        seconds = time.perf_counter() - start
        broker_cpu = TreeCpu.of(broker.process.pid) - broker_before
        machine_cpu = machine_busy_cpu() - machine_before
    finally:
        for process in processes:
            stop(process)
    return seconds, broker_cpu, machine_cpu, outputs


def consume(broker: BrokerProcess, consumers: int, record_bytes: int, count: int) -> Result:
    command = [
        sys.executable,
        __file__,
        "--role",
        "consume",
        "--bootstrap",
        broker.bootstrap,
        "--count",
        str(count),
        "--record-bytes",
        str(record_bytes),
    ]
    seconds, broker_cpu, machine_cpu, _ = timed_phase(broker, [command] * consumers, "a consumer")
    return Result(seconds, consumers * count * record_bytes, broker_cpu, machine_cpu)


def fetch_raw(
    broker: BrokerProcess, args: argparse.Namespace, record_bytes: int, count: int
) -> Result:
    command = [
        sys.executable,
        __file__,
        "--role",
        "raw-fetch",
        "--port",
        str(broker.port),
        "--count",
        str(args.raw_fetches),
        "--connections",
        str(args.raw_connections),
        "--records",
        str(count),
        "--record-bytes",
        str(record_bytes),
    ]
    seconds, broker_cpu, machine_cpu, (output,) = timed_phase(
        broker, [command], "the raw Fetch client"
    )
    result = json.loads(output)
    return Result(seconds, result["bytes"], broker_cpu, machine_cpu, result["fetches"])


def run_mode(
    mode: str,
    data_dir: Path,
    config_dir: Path,
    record_bytes: int,
    count: int,
    args: argparse.Namespace,
) -> dict[int, Result]:
    backend, zero_copy = MODES[mode]
    config = config_dir / f"{mode.replace(' ', '-')}.toml"
    config.write_text(f"[server]\nfetch_zero_copy = {'true' if zero_copy else 'false'}\n")
    arguments = ["--io-backend", backend, "--config", str(config)]
    results = {}
    with BrokerProcess(data_dir, workers=1, extra_arguments=arguments) as broker:
        consume(broker, 1, record_bytes, min(count, 20_000))  # connections and caches warm
        for consumers in (1, args.fan_out):
            results[consumers] = consume(broker, consumers, record_bytes, count)
        results[RAW_CLIENT] = fetch_raw(broker, args, record_bytes, count)
        broker.stop()
    return results


# --------------------------------------------------------------------------- report


def stop(process: subprocess.Popen[str]) -> None:
    """Kill a child still running (a phase that failed or timed out)."""
    if process.poll() is None:
        process.kill()
        process.wait()


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def report(
    args: argparse.Namespace,
    runs: dict[tuple[int, str, int], list[Result]],
    floor: dict[str, list[float]],
    parent: Path,
) -> str:
    lines = [
        "# Zero-copy Fetch: trioring's zero-copy and copy paths on both backends",
        "",
        *machine_lines(parent),
        f"- {args.repeat} repeats, modes alternating; medians. Broker: one worker.",
        f"- Data: {args.mib} MiB of 1 KiB records and {args.small_mib} MiB of 100 B records, "
        "one partition, page cache warm.",
        "",
        *floor_lines(floor, args.floor_mib),
    ]
    verdicts = []
    for record_bytes in (1024, 100):
        for consumers in (1, args.fan_out, RAW_CLIENT):
            if consumers == RAW_CLIENT:
                title = (
                    f"## {record_bytes} B records, the raw Fetch client "
                    f"({args.raw_connections} connections, {args.raw_fetches} Fetches)"
                )
            else:
                title = f"## {record_bytes} B records, {consumers} consumer" + (
                    "s" if consumers > 1 else ""
                )
            lines += [
                title,
                "",
                "| mode | seconds | MB/s delivered | broker CPU s/GB "
                "| broker cores | rest of the machine, cores | broker CPU per Fetch, us |",
                "|---|---:|---:|---:|---:|---:|---:|",
            ]
            cpu: dict[str, float] = {}
            for mode in MODES:
                results = runs[(record_bytes, mode, consumers)]
                seconds = median([r.seconds for r in results])
                rate = median([r.megabytes_per_second for r in results])
                cpu[mode] = median([r.cpu_seconds_per_gigabyte for r in results])
                cores = [
                    median([r.broker_cpu / r.seconds for r in results]),
                    median([max(0.0, r.machine_cpu - r.broker_cpu) / r.seconds for r in results]),
                ]
                per_fetch = (
                    f"{median([r.broker_cpu / r.fetches * 1e6 for r in results]):,.0f}"
                    if consumers == RAW_CLIENT
                    else ""
                )
                lines.append(
                    f"| {mode} | {seconds:.2f} | {rate:,.1f} | {cpu[mode]:.3f} | "
                    + " | ".join(f"{c:.2f}" for c in cores)
                    + f" | {per_fetch} |"
                )
            lines.append("")
            for zero_copy, copy in PAIRS:
                ratio = cpu[zero_copy] / cpu[copy] if cpu[copy] else float("nan")
                verdict = "hit" if ratio <= CPU_RATIO_TARGET else "miss"
                lines.append(
                    f"- CPU per GB, {zero_copy} / {copy}: {ratio:.2f} "
                    f"({verdict}: target <= {CPU_RATIO_TARGET})"
                )
                verdicts.append(verdict)
            lines.append("")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--role", choices=["consume", "floor-send", "raw-fetch"], help=argparse.SUPPRESS
    )
    parser.add_argument("--file", help=argparse.SUPPRESS)
    parser.add_argument("--way", choices=FLOOR_WAYS, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--record-bytes", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--records", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--connections", type=int, help=argparse.SUPPRESS)
    parser.add_argument(
        "--raw-fetches", type=int, default=3000, help="Fetch requests of the raw client (3000)"
    )
    parser.add_argument(
        "--raw-connections", type=int, default=4, help="connections of the raw client (4)"
    )
    parser.add_argument("--mib", type=int, default=512, help="MiB of 1 KiB records (512)")
    parser.add_argument("--small-mib", type=int, default=64, help="MiB of 100 B records (64)")
    parser.add_argument("--fan-out", type=int, default=10, help="consumers of the fan-out case")
    parser.add_argument(
        "--floor-mib", type=int, default=256, help="MiB sent for the kernel's floor (256)"
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--output", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    if (
        args.role is None
        and min(
            args.mib,
            args.small_mib,
            args.fan_out,
            args.floor_mib,
            args.repeat,
            args.raw_connections,
        )
        < 1
    ):
        parser.error(
            "--mib, --small-mib, --fan-out, --floor-mib, --repeat and --raw-connections "
            "must be at least 1"
        )
    if args.role is None and args.raw_fetches < args.raw_connections:
        parser.error("--raw-fetches must be at least --raw-connections")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.role == "consume":
        return run_consumer(args)
    if args.role == "floor-send":
        return run_floor_sender(args)
    if args.role == "raw-fetch":
        return run_raw_fetcher(args)
    runs: dict[tuple[int, str, int], list[Result]] = {}
    with tempfile.TemporaryDirectory(prefix="zero-copy-bench-") as temporary:
        parent = Path(temporary)
        print("the kernel's floor", file=sys.stderr)
        floor = kernel_floor(parent, args.floor_mib, args.repeat)
        sizes = {1024: args.mib * (1 << 20) // 1024, 100: args.small_mib * (1 << 20) // 100}
        for record_bytes, count in sizes.items():
            print(f"producing {count:,} records of {record_bytes} B", file=sys.stderr)
            produce(parent / f"data-{record_bytes}", record_bytes, count)
        modes = list(MODES)
        for repeat in range(args.repeat):
            # Rotate the order, so slow drift of the machine spreads over every mode.
            order = modes[repeat % len(modes) :] + modes[: repeat % len(modes)]
            for record_bytes, count in sizes.items():
                for mode in order:
                    print(f"repeat {repeat + 1}: {record_bytes} B, {mode}", file=sys.stderr)
                    results = run_mode(
                        mode,
                        parent / f"data-{record_bytes}",
                        parent,
                        record_bytes,
                        count,
                        args,
                    )
                    for consumers, result in results.items():
                        runs.setdefault((record_bytes, mode, consumers), []).append(result)
        text = report(args, runs, floor, parent)
    print(text)
    if args.output is not None:
        args.output.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

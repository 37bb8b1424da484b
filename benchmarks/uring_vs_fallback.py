"""io_uring backend against the fallback, ratios in one run (issue 3's benchmark).

(a) produce-path appends, acks="all", 64 concurrent producers, batches of
    100 x 1 KiB records: MB/s and CPU seconds per GB (this process's CPU,
    all threads, including io_uring's kernel workers, which belong to it).
(b) 32 and 1 connections doing 1 KiB request/response against an echo
    server on the backend's streams (server in a child process): round trips
    per second and server CPU per round trip, with two clients. "trio": Trio
    streams in this process, which cost more CPU per round trip than the
    server, so the server is partly idle and its CPU includes waking up for
    few connections at a time. "epoll": a bare select.epoll loop in a child
    process, cheaper per round trip than the server, so that the server is
    the bottleneck (about one core busy) and its CPU per round trip is what
    serving costs.
(c) one 256 MiB log segment served to a socket with ``send_file_range``
    (splice over the ring, sendfile for Trio's sockets): MB/s.
(d) the cost of one operation: 1 and 64 tasks reading 4 KiB at a time from a
    file in the page cache (``pread``: on the ring, or in a worker thread for
    the fallback), in a child process: reads per second and CPU per read.

Cases alternate between backends, ``--repeat`` times; the median counts.
Not a test: run it on a quiet machine and record the numbers in docs/uring.md.

    python benchmarks/uring_vs_fallback.py
    python benchmarks/uring_vs_fallback.py --cases a --repeat 5
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import trio

import trioring
from trioring.protocol.records import Record, build_batch
from trioring.uring import (
    FallbackBackend,
    FileBackend,
    UringBackend,
)
from trioring.uring._uring import uring_unavailable_reason

#: "uring-ring-receive": the ring backend whose streams wait for bytes with ring
#: receives (the default waits on Trio's epoll; see trioring/uring/_socket.py).
#: "...-offloop-reads": every read goes to the ring or a thread, even one the
#: page cache holds (the default reads those in the loop; see _fallback.py).
BACKENDS = (
    "fallback",
    "uring",
    "uring-ring-receive",
    "fallback-offloop-reads",
    "uring-offloop-reads",
)
MESSAGE_BYTES = 1024


def make_backend(name: str) -> FileBackend:
    inline = not name.endswith("-offloop-reads")
    if name.startswith("fallback"):
        return FallbackBackend(cached_reads_inline=inline)
    return UringBackend(receive_on_ring=name == "uring-ring-receive", cached_reads_inline=inline)


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of every thread of ``pid`` (from /proc, in clock ticks)."""
    with open(f"/proc/{pid}/stat") as file:
        fields = file.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- (a) appends -------------------------------------------------------------------------


async def appends(
    backend_name: str, directory: str, megabytes: int, producers: int
) -> dict[str, float]:
    shutil.rmtree(directory, ignore_errors=True)
    os.sync()
    batch = build_batch([Record(value=os.urandom(MESSAGE_BYTES)) for _ in range(100)])
    batches_total = megabytes * 1_000_000 // len(batch)
    remaining = batches_total
    config = trioring.BrokerConfig(data_dir=directory)
    async with trioring.open_broker(config, backend=make_backend(backend_name)) as broker:
        await broker.create_topic("bench", partitions=1)

        async def produce() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                await broker.produce_batch("bench", 0, batch, acks="all")

        cpu, start = time.process_time(), time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(producers):
                nursery.start_soon(produce)
        seconds = time.perf_counter() - start
        cpu = time.process_time() - cpu
    shutil.rmtree(directory, ignore_errors=True)
    gigabytes = batches_total * len(batch) / 1e9
    return {"MB/s": gigabytes * 1000 / seconds, "CPU s/GB": cpu / gigabytes}


# --- (b) and (c): servers in a child process ------------------------------------------------

SERVER_SCRIPT = r"""
import os, sys, trio
sys.path.insert(0, sys.argv[3])
from uring_vs_fallback import make_backend
from trioring.uring import open_tcp_listeners_for, send_file_range

kind, backend_name = sys.argv[1], sys.argv[2]
path = sys.argv[4] if len(sys.argv) > 4 else None

async def echo(stream):
    async with stream:
        try:
            while True:
                data = await stream.receive_some(65536)
                if not data:
                    return
                await stream.send_all(data)
        except trio.BrokenResourceError:
            return   # a client that closes with an answer unread resets the connection

async def serve_file(stream):
    async with stream:
        fd = os.open(path, os.O_RDONLY)
        try:
            await send_file_range(stream, fd, 0, os.fstat(fd).st_size)
        finally:
            os.close(fd)

async def main():
    backend = make_backend(backend_name)
    listeners = await open_tcp_listeners_for(backend, 0, host="127.0.0.1")
    print(listeners[0].socket.getsockname()[1], flush=True)
    handler = echo if kind == "echo" else serve_file
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, handler, listeners)
        await trio.to_thread.run_sync(sys.stdin.read)   # until the parent closes stdin
        nursery.cancel_scope.cancel()
    await backend.aclose()

trio.run(main)
"""


#: Set by --baseline-tree: a checkout (extensions built) whose trioring serves the
#: backends named "base:...", to compare two versions of the code in one run.
BASELINE_TREE: dict[str, str] = {}
BASELINE_PREFIX = "base:"


class ServerProcess:
    def __init__(self, kind: str, backend_name: str, path: str | None = None) -> None:
        environment = dict(os.environ)
        if backend_name.startswith(BASELINE_PREFIX):
            backend_name = backend_name.removeprefix(BASELINE_PREFIX)
            environment["PYTHONPATH"] = BASELINE_TREE["path"]
        arguments = [kind, backend_name, os.path.dirname(os.path.abspath(__file__))]
        if path is not None:
            arguments.append(path)
        self.process = subprocess.Popen(
            [sys.executable, "-c", SERVER_SCRIPT, *arguments],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=environment,
            # Not the caller's directory, which could hold another trioring.
            cwd=os.path.dirname(os.path.abspath(__file__)),
        )
        assert self.process.stdout is not None
        self.port = int(self.process.stdout.readline())

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.process.pid)

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


EPOLL_CLIENT_SCRIPT = r"""
import select, socket, sys, time
port, connections, seconds, size = (int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]),
                                    int(sys.argv[4]))
message = bytes(size)
epoll = select.epoll()
sockets, received = {}, {}
for _ in range(connections):
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setblocking(False)
    sockets[sock.fileno()], received[sock.fileno()] = sock, 0
    epoll.register(sock.fileno(), select.EPOLLIN)
print("ready", flush=True)
sys.stdin.readline()
start = time.perf_counter()
deadline, count = start + seconds, 0
for sock in sockets.values():
    sock.send(message)
while time.perf_counter() < deadline:
    for fd, _ in epoll.poll(0.1):
        try:
            data = sockets[fd].recv(size - received[fd])
        except BlockingIOError:
            continue
        if not data:
            raise SystemExit("the echo server closed a connection")
        received[fd] += len(data)
        if received[fd] == size:
            received[fd] = 0
            count += 1
            sockets[fd].send(message)  # 1 KiB: the buffer has room
elapsed = time.perf_counter() - start
print(count, elapsed, flush=True)
sys.stdin.readline()   # the parent read the server's CPU: now close (and stop echoing)
"""


def echo_round_trips(
    client: str, backend_name: str, connections: int, seconds: float
) -> dict[str, float]:
    if client == "trio":
        return trio.run(trio_echo_round_trips, backend_name, connections, seconds)
    server = ServerProcess("echo", backend_name)
    try:
        arguments = [server.port, connections, seconds, MESSAGE_BYTES]
        process = subprocess.Popen(
            [sys.executable, "-c", EPOLL_CLIENT_SCRIPT, *map(str, arguments)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert process.stdin is not None and process.stdout is not None
        try:
            if process.stdout.readline().strip() != "ready":
                raise RuntimeError("the epoll client did not connect")
            cpu = server.cpu_seconds()
            process.stdin.write("go\n")
            process.stdin.flush()
            count_text, elapsed_text = process.stdout.readline().split()
            cpu = server.cpu_seconds() - cpu
            process.stdin.write("done\n")
            process.stdin.close()
            process.wait(timeout=15)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    finally:
        server.stop()
    round_trips, elapsed = int(count_text), float(elapsed_text)
    return {
        "round trips/s": round_trips / elapsed,
        "server CPU us/round trip": cpu / round_trips * 1e6,
    }


async def trio_echo_round_trips(
    backend_name: str, connections: int, seconds: float
) -> dict[str, float]:
    server = ServerProcess("echo", backend_name)
    message = os.urandom(MESSAGE_BYTES)
    counts = [0] * connections
    try:
        streams = [await trio.open_tcp_stream("127.0.0.1", server.port) for _ in range(connections)]
        for stream in streams:
            stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        async def client(index: int, stream: trio.SocketStream, deadline: float) -> None:
            while trio.current_time() < deadline:
                await stream.send_all(message)
                received = 0
                while received < MESSAGE_BYTES:
                    data = await stream.receive_some(MESSAGE_BYTES - received)
                    assert data, "the echo server closed the connection"
                    received += len(data)
                counts[index] += 1

        cpu, start = server.cpu_seconds(), time.perf_counter()
        async with trio.open_nursery() as nursery:
            deadline = trio.current_time() + seconds
            for index, stream in enumerate(streams):
                nursery.start_soon(client, index, stream, deadline)
        elapsed = time.perf_counter() - start
        cpu = server.cpu_seconds() - cpu
        for stream in streams:
            await stream.aclose()
    finally:
        server.stop()
    round_trips = sum(counts)
    return {
        "round trips/s": round_trips / elapsed,
        "server CPU us/round trip": cpu / round_trips * 1e6,
    }


async def serve_segment(backend_name: str, path: str, size: int) -> dict[str, float]:
    server = ServerProcess("file", backend_name, path)
    try:
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        received = 0
        cpu, start = server.cpu_seconds(), time.perf_counter()
        while True:
            data = await stream.receive_some(1 << 20)
            if not data:
                break
            received += len(data)
        elapsed = time.perf_counter() - start
        cpu = server.cpu_seconds() - cpu
        await stream.aclose()
    finally:
        server.stop()
    assert received == size, f"received {received} of {size} bytes"
    return {"MB/s": size / elapsed / 1e6, "server CPU s/GB": cpu / (size / 1e9)}


READS_SCRIPT = r"""
import json, os, sys, time, trio
sys.path.insert(0, sys.argv[2])
from uring_vs_fallback import make_backend

backend_name, path = sys.argv[1], sys.argv[3]
tasks, seconds = int(sys.argv[4]), float(sys.argv[5])

async def main():
    backend = make_backend(backend_name)
    fd = os.open(path, os.O_RDONLY)
    pages = os.fstat(fd).st_size // 4096
    count = 0

    async def reader(index):
        nonlocal count
        offset = index % pages * 4096
        while trio.current_time() < deadline:
            await backend.pread(fd, 4096, offset)
            count += 1

    await backend.pread(fd, 4096, 0)   # set up the ring, start a thread
    cpu, start = time.process_time(), time.perf_counter()
    deadline = trio.current_time() + seconds
    async with trio.open_nursery() as nursery:
        for index in range(tasks):
            nursery.start_soon(reader, index)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    os.close(fd)
    await backend.aclose()
    print(json.dumps({"reads/s": count / elapsed, "CPU us/read": cpu / count * 1e6}))

trio.run(main)
"""


def page_cache_reads(backend_name: str, path: str, tasks: int, seconds: float) -> dict[str, float]:
    environment = dict(os.environ)
    if backend_name.startswith(BASELINE_PREFIX):
        backend_name = backend_name.removeprefix(BASELINE_PREFIX)
        environment["PYTHONPATH"] = BASELINE_TREE["path"]
    directory = os.path.dirname(os.path.abspath(__file__))
    arguments = [backend_name, directory, path, str(tasks), str(seconds)]
    output = subprocess.run(
        [sys.executable, "-c", READS_SCRIPT, *arguments],
        env=environment,
        cwd=directory,
        check=True,
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    ).stdout
    result: dict[str, float] = json.loads(output)
    return result


# --- driver ------------------------------------------------------------------------------


def run_case(
    title: str,
    repeat: int,
    measure: Callable[[str], dict[str, float]],
    targets: dict[str, str],
    backends: list[str],
) -> None:
    """Alternate ``backends`` ``repeat`` times; print medians and each one's ratio to the first."""
    results: dict[str, list[dict[str, float]]] = {name: [] for name in backends}
    for _ in range(repeat):
        for name in backends:
            results[name].append(measure(name))
    base, others = backends[0], backends[1:]
    print(f"\n### {title} (median of {repeat})\n")
    header = " | ".join([*backends, *(f"{name} / {base}" for name in others)])
    print(f"| metric | {header} | target |")
    print("|---|" + "---:|" * (len(backends) + len(others)) + "---|")
    for metric in results[base][0]:
        values = {name: statistics.median(r[metric] for r in results[name]) for name in backends}
        # Small figures (CPU seconds per GB) need more than one decimal.
        cells = [
            f"{values[name]:,.1f}" if values[name] >= 10 else f"{values[name]:.3f}"
            for name in backends
        ]
        cells += [f"{values[name] / values[base]:.2f}" for name in others]
        print(f"| {metric} | {' | '.join(cells)} | {targets.get(metric, '')} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default="abcd", help="any of a, b, c, d")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", default=None, help="directory on the disk to measure")
    parser.add_argument("--append-megabytes", type=int, default=256)
    parser.add_argument("--producers", type=int, default=64)
    parser.add_argument("--connections", default="32,1", help="comma-separated, for (b)")
    parser.add_argument(
        "--echo-clients", default="trio,epoll", help="comma-separated, for (b): trio, epoll"
    )
    parser.add_argument("--echo-seconds", type=float, default=3.0)
    parser.add_argument("--segment-mebibytes", type=int, default=256)
    parser.add_argument("--read-tasks", default="1,64", help="comma-separated, for (d)")
    parser.add_argument("--read-seconds", type=float, default=3.0)
    parser.add_argument(
        "--backends",
        default="fallback,uring",
        help=f"comma-separated, the first is the baseline; any of {', '.join(BACKENDS)}",
    )
    parser.add_argument(
        "--baseline-tree",
        default=None,
        help=f"a checkout with built extensions: {BASELINE_PREFIX}NAME backends in (b) and (c) "
        "run their server on its code (e.g. --backends base:uring,uring)",
    )
    options = parser.parse_args()
    if not set(options.echo_clients.split(",")) <= {"trio", "epoll"}:
        parser.error("--echo-clients: trio, epoll or both")
    backends = options.backends.split(",")
    names = {name.removeprefix(BASELINE_PREFIX) for name in backends}
    if len(backends) < 2 or not names <= set(BACKENDS):
        parser.error(f"--backends: two or more of {', '.join(BACKENDS)}, each maybe base:")
    if any(name.startswith(BASELINE_PREFIX) for name in backends):
        if options.baseline_tree is None or "a" in options.cases:
            parser.error("base: backends need --baseline-tree, and only cases b, c, d use it")
        BASELINE_TREE["path"] = os.path.abspath(options.baseline_tree)
    unavailable = uring_unavailable_reason()
    if unavailable is not None:
        raise SystemExit(f"io_uring unavailable here: {unavailable.strerror}")
    root = tempfile.mkdtemp(prefix="trioring-uring-bench-", dir=options.dir)
    try:
        print(f"# io_uring vs fallback ({os.cpu_count()} cores, data in {root})")
        if "a" in options.cases:
            run_case(
                f"(a) appends, acks=all, {options.producers} producers, 100 x 1 KiB batches, "
                f"{options.append_megabytes} MB",
                options.repeat,
                lambda name: trio.run(
                    appends,
                    name,
                    os.path.join(root, "appends"),
                    options.append_megabytes,
                    options.producers,
                ),
                {"MB/s": ">= 1.0", "CPU s/GB": "<= 0.8"},
                backends,
            )
        if "b" in options.cases:
            for client in options.echo_clients.split(","):
                for connections in (int(count) for count in options.connections.split(",")):
                    run_case(
                        f"(b) {connections} connection(s), 1 KiB request/response, "
                        f"{options.echo_seconds:g} s, {client} client",
                        options.repeat,
                        lambda name, client=client, connections=connections: (  # type: ignore[misc]
                            echo_round_trips(client, name, connections, options.echo_seconds)
                        ),
                        {"round trips/s": ">= 1.2", "server CPU us/round trip": "<= 0.8"},
                        backends,
                    )
        if "c" in options.cases:
            path = os.path.join(root, "00000000000000000000.log")
            with open(path, "wb") as file:
                chunk = os.urandom(1 << 20)
                for _ in range(options.segment_mebibytes):
                    file.write(chunk)
            run_case(
                f"(c) serving a {options.segment_mebibytes} MiB segment to a socket (page cache)",
                options.repeat,
                lambda name: trio.run(serve_segment, name, path, options.segment_mebibytes << 20),
                {"MB/s": ">= 1.0"},
                backends,
            )
        if "d" in options.cases:
            path = os.path.join(root, "reads")
            with open(path, "wb") as file:
                file.write(os.urandom(1 << 20))
            for tasks in (int(count) for count in options.read_tasks.split(",")):
                run_case(
                    f"(d) {tasks} task(s) reading 4 KiB at a time from the page cache",
                    options.repeat,
                    lambda name, tasks=tasks: page_cache_reads(  # type: ignore[misc]
                        name, path, tasks, options.read_seconds
                    ),
                    {"CPU us/read": "<= 0.8"},
                    backends,
                )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

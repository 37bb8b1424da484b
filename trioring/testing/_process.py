"""BrokerProcess: a real trioring broker process for tests.

``BrokerProcess`` runs ``python -m trioring serve`` as a child process bound to
127.0.0.1 on a free port, so tests can kill and restart it like a real
server::

    from trioring.testing import BrokerProcess

    with BrokerProcess(tmp_path) as broker:
        producer = confluent_kafka.Producer({"bootstrap.servers": broker.bootstrap})
        ...
        broker.restart()          # same data, same port
        broker.kill()             # SIGKILL, for crash tests

With ``workers=N`` the broker is a supervisor and N worker processes, one
Kafka node each (``addresses``); ``kill_worker(i)`` SIGKILLs one worker,
which the supervisor restarts.

With ``faults=True`` the broker injects faults on command (``serve
--fault-control``): ``broker.faults.fail("Produce", "NOT_LEADER_OR_FOLLOWER")``.
Faults live in the broker's processes, so a restarted broker (or worker)
starts with none.
"""

from __future__ import annotations

import datetime
import os
import random
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

from kio.schema.errors import ErrorCode
from kio.static.primitive import i32Timedelta

from trioring._constants import (
    TEST_CREATE_TOPIC_ANSWER_BYTES_MAX,
    TEST_CREATE_TOPIC_SECONDS,
)
from trioring.protocol.kafka import ApiKey, request_schema
from trioring.protocol.kafka._build import build, sibling
from trioring.protocol.kafka._client import decode_response, encode_request
from trioring.testing._control import FaultControl
from trioring.testing._embedded import unique_topic_name

STARTUP_SECONDS_MAX = 30.0
STOP_SECONDS_MAX = 30.0
#: Where a multi-worker broker's consecutive ports are looked for: below Linux's
#: ephemeral range (32768-60999), so no outgoing connection takes one meanwhile.
_PORT_BLOCK_RANGE = (20_000, 32_000)
_PORT_BLOCK_TRIES_MAX = 200


def _free_port_block(count: int) -> int:
    """A first port such that ``count`` consecutive loopback ports are free now.

    Port 0 gives each worker a random port; a restart, which must reuse the
    same ports, would then ask for port+1.. which something else may hold.
    """
    chooser = random.Random()
    for _ in range(_PORT_BLOCK_TRIES_MAX):
        base = chooser.randrange(_PORT_BLOCK_RANGE[0], _PORT_BLOCK_RANGE[1] - count)
        sockets = []
        try:
            for port in range(base, base + count):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sockets.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for sock in sockets:
                sock.close()
        return base
    raise RuntimeError(f"no {count} consecutive free ports in {_PORT_BLOCK_RANGE}")


#: CreateTopics v4: every trioring speaks it, and it is not flexible (simpler framing).
_CREATE_TOPICS_VERSION = 4


def _wait_gone(pids: Sequence[int], seconds: float = STOP_SECONDS_MAX) -> None:
    """Wait until none of ``pids`` exists any more (they are not our children: poll)."""
    deadline = time.monotonic() + seconds
    for pid in pids:
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            status = Path(f"/proc/{pid}/stat")
            try:
                if status.read_text().rsplit(")", 1)[1].split()[0] == "Z":
                    break  # a zombie: dead, waiting for its parent to reap it
            except OSError:
                break
            time.sleep(0.01)


def _receive_exactly(sock: socket.socket, count: int) -> bytes:
    data = bytearray()
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise RuntimeError("the broker closed the connection before answering")
        data += chunk
    return bytes(data)


def _fault_addresses(text: str) -> list[tuple[str, int]]:
    """The endpoints on the broker's second line: "trioring fault control on
    HOST:PORT (testing only)", or with workers "... on 0 at HOST:PORT, 1 at HOST:PORT ..."."""
    listed = text.split(" fault control on ", 1)[1].rsplit(" (", 1)[0]
    addresses = []
    for entry in listed.split(", "):
        host, _, port = entry.rpartition(" at ")[2].rpartition(":")
        addresses.append((host, int(port)))
    return addresses


class BrokerProcess:
    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        extra_arguments: Sequence[str] = (),
        log_level: str = "WARNING",
        log_path: str | os.PathLike[str] | None = None,
        workers: int = 1,
        faults: bool = False,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.workers = workers
        #: Whether the broker serves fault control (``faults``).
        self.fault_control = faults
        #: Every worker's fault control endpoint (host, port), worker 0 first.
        self.fault_addresses: list[tuple[str, int]] = []
        #: Every worker's address (host, port), worker 0 first.
        self.addresses: list[tuple[str, int]] = []
        self.extra_arguments = list(extra_arguments)
        self.log_level = log_level
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        #: The broker's stderr; by default beside the data directory.
        self.log_path = (
            Path(log_path)
            if log_path is not None
            else self.data_dir.parent / f"{self.data_dir.name}.broker.log"
        )

    @property
    def bootstrap(self) -> str:
        assert self.port, "the broker is not started"
        return f"127.0.0.1:{self.port}"

    @property
    def faults(self) -> FaultControl:
        """The broker's faults (``faults=True``): ``fail``, ``delay``, ``drop_connection``,
        ``clear``, ``pending``, ``injected``, sent to every worker; counts are per worker."""
        if not self.fault_control:
            raise RuntimeError("this BrokerProcess was started without faults=True")
        return FaultControl(lambda: self.fault_addresses)

    def create_topic(
        self,
        name: str | None = None,
        partitions: int = 1,
        *,
        configs: Mapping[str, str] | None = None,
    ) -> str:
        """Create a topic (by default uniquely named) and return its name, once every
        worker serves it. Blocking, with no client library: usable from any test."""
        name = unique_topic_name() if name is None else name
        request = request_schema(ApiKey.CREATE_TOPICS, _CREATE_TOPICS_VERSION)
        body = build(
            request,
            topics=(
                build(
                    sibling(request, "CreatableTopic"),
                    name=name,
                    num_partitions=partitions,
                    replication_factor=1,
                    assignments=(),
                    configs=tuple(
                        build(sibling(request, "CreatableTopicConfig"), name=key, value=value)
                        for key, value in (configs or {}).items()
                    ),
                ),
            ),
            timeout=i32Timedelta.parse(datetime.timedelta(seconds=TEST_CREATE_TOPIC_SECONDS)),
            validate_only=False,
        )
        frame = encode_request(
            ApiKey.CREATE_TOPICS, _CREATE_TOPICS_VERSION, 1, "trioring-testing", body
        )
        with socket.create_connection(
            ("127.0.0.1", self.port), timeout=TEST_CREATE_TOPIC_SECONDS
        ) as sock:
            sock.sendall(frame)
            (size,) = struct.unpack(">i", _receive_exactly(sock, 4))
            if not 0 < size <= TEST_CREATE_TOPIC_ANSWER_BYTES_MAX:
                raise RuntimeError(f"CreateTopics: an answer of {size} bytes")
            response = decode_response(
                ApiKey.CREATE_TOPICS, _CREATE_TOPICS_VERSION, _receive_exactly(sock, size)
            )
        (topic,) = response.topics
        if topic.error_code != ErrorCode.none:
            raise RuntimeError(
                f"cannot create topic {name!r}: {ErrorCode(topic.error_code).name.upper()} "
                f"{topic.error_message or ''}".rstrip()
            )
        return name

    def start(self) -> BrokerProcess:
        assert self.process is None, "already running"
        if self.port == 0 and self.workers > 1:
            self.port = _free_port_block(self.workers)
        command = [
            sys.executable,
            "-m",
            "trioring",
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--listen",
            f"127.0.0.1:{self.port}",
            "--log-level",
            self.log_level,
            "--workers",
            str(self.workers),
            *(["--fault-control", "127.0.0.1:0"] if self.fault_control else []),
            *self.extra_arguments,
        ]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log)
        log.close()
        deadline = time.monotonic() + STARTUP_SECONDS_MAX
        try:
            self.port = self._read_port(self._read_line(deadline))
            if self.fault_control:
                self.fault_addresses = _fault_addresses(self._read_line(deadline))
        except BaseException:
            # A broker that did not start (a port in use, a bad flag) is not left running.
            self._terminate()
            raise
        return self

    def _read_line(self, deadline: float) -> str:
        """The broker's next line on stdout, read byte by byte so nothing after it is taken."""
        process = self.process
        assert process is not None and process.stdout is not None
        line = b""
        while not line.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or process.poll() is not None:
                self._terminate()
                raise RuntimeError(
                    f"broker did not start within {STARTUP_SECONDS_MAX} s; "
                    f"its log: {self.log_path}\n{self.log_path.read_text()[-2000:]}"
                )
            ready, _, _ = select.select([process.stdout], [], [], min(remaining, 0.5))
            if ready:
                line += os.read(process.stdout.fileno(), 1)
        return line.decode()

    def _read_port(self, text: str) -> int:
        # "trioring listening on 127.0.0.1:PORT (Kafka protocol), ...
        #  [; N workers: 0 at HOST:PORT, 1 at HOST:PORT]"
        address = text.split(" listening on ", 1)[1].split(" ", 1)[0]
        host, _, port = address.rpartition(":")
        self.addresses = [(host, int(port))]
        if " workers: " in text:
            self.addresses = []
            for entry in text.rstrip().split(" workers: ", 1)[1].split(", "):
                # "0 at HOST:PORT (backend)"
                address = entry.split(" at ", 1)[1].split(" ", 1)[0]
                worker_host, _, worker_port = address.rpartition(":")
                self.addresses.append((worker_host, int(worker_port)))
        return int(port)

    def stop(self) -> int:
        """SIGTERM and wait: the broker flushes and exits 0. Returns the exit code."""
        if self.process is None:
            return 0
        self.process.send_signal(signal.SIGTERM)
        return self._wait()

    def kill(self) -> int:
        """SIGKILL: a crash. Acknowledged acks=all data must survive it.

        Worker processes die with the supervisor (the kernel kills them);
        this returns once they are gone too.
        """
        if self.process is None:
            return 0
        children = self._children()
        self.process.kill()
        code = self._wait()
        _wait_gone(children)
        return code

    def worker_pid(self, index: int) -> int:
        """The pid of worker ``index`` now (it changes when the worker restarts)."""
        for pid in self._children():
            try:
                arguments = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if (
                b"trioring.worker" in arguments
                and arguments[arguments.index(b"--index") + 1] == str(index).encode()
            ):
                return pid
        raise LookupError(f"no worker {index} is running")

    def kill_worker(self, index: int) -> int:
        """SIGKILL worker ``index`` (the supervisor restarts it); returns its pid."""
        pid = self.worker_pid(index)
        os.kill(pid, signal.SIGKILL)
        _wait_gone([pid])
        return pid

    def _children(self) -> list[int]:
        """Pids of the broker's child processes (its workers), from /proc (Linux)."""
        if self.process is None:
            return []
        children = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # "pid (comm) state ppid ...": comm may hold spaces; ppid follows ") X ".
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == self.process.pid:
                children.append(int(entry.name))
        return children

    def restart(self, *, kill: bool = False) -> BrokerProcess:
        """Stop (or kill) and start again on the same port with the same data."""
        if kill:
            self.kill()
        else:
            self.stop()
        return self.start()

    def _wait(self) -> int:
        assert self.process is not None
        try:
            code = self.process.wait(timeout=STOP_SECONDS_MAX)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait(timeout=STOP_SECONDS_MAX)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.process = None
        self.fault_addresses = []  # they went with the process
        return code

    def _terminate(self) -> None:
        if self.process is not None:
            self.kill()

    def __enter__(self) -> BrokerProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._terminate() if exc_type is not None else self.stop()

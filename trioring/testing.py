"""Test helpers: a real trioring broker, for test suites that would otherwise need Kafka.

``BrokerProcess`` runs ``python -m trioring serve`` as a child process bound to
127.0.0.1 on a free port, so tests can kill and restart it like a real
server::

    from trioring.testing import BrokerProcess

    with BrokerProcess(tmp_path) as broker:
        producer = confluent_kafka.Producer({"bootstrap.servers": broker.bootstrap})
        ...
        broker.restart()          # same data, same port
        broker.kill()             # SIGKILL, for crash tests
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

STARTUP_SECONDS_MAX = 30.0
STOP_SECONDS_MAX = 30.0


class BrokerProcess:
    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        *,
        extra_arguments: Sequence[str] = (),
        log_level: str = "WARNING",
        log_path: str | os.PathLike[str] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
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

    def start(self) -> BrokerProcess:
        assert self.process is None, "already running"
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
            *self.extra_arguments,
        ]
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log)
        log.close()
        self.port = self._read_port()
        return self

    def _read_port(self) -> int:
        process = self.process
        assert process is not None and process.stdout is not None
        deadline = time.monotonic() + STARTUP_SECONDS_MAX
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
        text = line.decode()
        # "trioring listening on 127.0.0.1:PORT (Kafka protocol), ..."
        address = text.split(" listening on ", 1)[1].split(" ", 1)[0]
        return int(address.rsplit(":", 1)[1])

    def stop(self) -> int:
        """SIGTERM and wait: the broker flushes and exits 0. Returns the exit code."""
        if self.process is None:
            return 0
        self.process.send_signal(signal.SIGTERM)
        return self._wait()

    def kill(self) -> int:
        """SIGKILL: a crash. Acknowledged acks=all data must survive it."""
        if self.process is None:
            return 0
        self.process.kill()
        return self._wait()

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
        return code

    def _terminate(self) -> None:
        if self.process is not None:
            self.process.kill()
            self._wait()

    def __enter__(self) -> BrokerProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._terminate() if exc_type is not None else self.stop()

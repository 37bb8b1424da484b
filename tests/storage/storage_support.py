"""Helpers shared by the storage tests (not a test module).

- :class:`FakeClock`: the injected wall clock, advanced by tests.
- :class:`TestBackend`: the fallback backend plus bookkeeping (which fds are
  open, per-file counts of writes and syncs) and fault injection (failing or
  half-done writes, failing syncs, truncates and opens, reads and syncs that
  park until released). ``crash()`` closes every descriptor it handed out without
  flushing anything, which is what a killed process leaves behind: the page
  cache keeps what was written, in-memory state (pending index entries, the
  durable offset) is gone.
- :class:`TrioPortal`: one ``trio.run`` in a helper thread that synchronous
  code (a hypothesis state machine) submits async calls to, so every step of
  one example runs in the same Trio run.
"""

from __future__ import annotations

import errno
import os
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import trio

from trioring.protocol.records import Record, build_batch, iterate_batches
from trioring.storage.log import LogConfig
from trioring.uring import Buffer, FallbackBackend, UringBackend

T = TypeVar("T")

CLOCK_START_S = 1_700_000_000.0


def log_config(**overrides: object) -> LogConfig:
    """Settings for a test log: 1 MB segments, an index entry every 500 bytes, kept forever."""
    settings: dict[str, object] = {
        "segment_bytes": 1_000_000,
        "index_interval_bytes": 500,
        "retention_ms": None,
    }
    settings.update(overrides)
    return LogConfig(**settings)  # type: ignore[arg-type]


class FakeClock:
    """Seconds as a float, like ``time.time``; moves only when told.

    Time is kept in whole milliseconds; the float handed out sits half a
    millisecond past it, so ``int(clock() * 1000)`` (what PartitionLog does)
    gives exactly :meth:`now_ms` despite float rounding.
    """

    def __init__(self, start: float = CLOCK_START_S) -> None:
        self._ms = round(start * 1000)

    def __call__(self) -> float:
        return (self._ms + 0.5) / 1000

    def advance_ms(self, milliseconds: int) -> None:
        self._ms += milliseconds

    def now_ms(self) -> int:
        assert int(self() * 1000) == self._ms
        return self._ms


class Gate:
    """Parks reads (or syncs) of files whose path ends with ``suffix`` until released."""

    def __init__(self, suffix: str) -> None:
        self.suffix = suffix
        self.reached = trio.Event()
        self.release = trio.Event()


class TestBackend(FallbackBackend):
    __test__ = False  # not a pytest class

    def __init__(self) -> None:
        super().__init__()
        self.paths: dict[int, str] = {}
        self.sync_calls: Counter[str] = Counter()
        self.write_calls: Counter[str] = Counter()
        self.pread_bytes = 0
        #: None, "enospc" (nothing written) or "half" (half written, then ENOSPC).
        self.write_fault: str | None = None
        #: The error a write fault raises (ENOSPC, or EIO for a failing disk).
        self.write_fault_errno = errno.ENOSPC
        #: Reads of matching files fail with EIO.
        self.read_fault = False
        self.sync_fault = False
        self.truncate_fault = False
        #: Faults hit only files whose name ends with this.
        self.fault_suffix = ".log"
        #: The next this-many opens of files ending with ``open_fault_suffix`` fail (EMFILE).
        self.open_faults = 0
        self.open_fault_suffix = ".index"
        self.read_gate: Gate | None = None
        self.sync_gate: Gate | None = None
        #: Holds writes to matching files (as a slow disk would) until released.
        self.write_gate: Gate | None = None

    def _faulty(self, fd: int) -> bool:
        return self.paths.get(fd, "").endswith(self.fault_suffix)

    @property
    def open_paths(self) -> list[str]:
        return sorted(self.paths.values())

    def log_sync_count(self) -> int:
        return sum(n for path, n in self.sync_calls.items() if path.endswith(".log"))

    def log_write_count(self) -> int:
        return sum(n for path, n in self.write_calls.items() if path.endswith(".log"))

    async def open(self, path: str, flags: int, mode: int = 0o644) -> int:
        if self.open_faults and path.endswith(self.open_fault_suffix):
            self.open_faults -= 1
            await trio.lowlevel.checkpoint()
            raise OSError(errno.EMFILE, "Too many open files (injected)")
        fd = await super().open(path, flags, mode)
        self.paths[fd] = path
        return fd

    async def close(self, fd: int) -> None:
        assert fd in self.paths, f"closing fd {fd} that is not open"
        del self.paths[fd]
        await super().close(fd)

    @property
    def writes_inline(self) -> bool:
        # A gated write has to wait, which only the async path can.
        return self.write_gate is None and super().writes_inline

    def write_now(self, fd: int, buffers: Sequence[Buffer], offset: int) -> int:
        self.write_calls[self.paths.get(fd, "?")] += 1
        self._inject_write_fault(fd, buffers, offset)
        return super().write_now(fd, buffers, offset)

    async def pwritev(self, fd: int, buffers: Sequence[Buffer], offset: int) -> int:
        self.write_calls[self.paths.get(fd, "?")] += 1
        gate = self.write_gate
        if gate is not None and self.paths.get(fd, "").endswith(gate.suffix):
            gate.reached.set()
            # Like the real write: a schedule point that cancellation can't stop.
            with trio.CancelScope(shield=True):
                await gate.release.wait()
        if self.write_fault is not None and self._faulty(fd):
            await trio.lowlevel.cancel_shielded_checkpoint()
            self._inject_write_fault(fd, buffers, offset)
        return await super().pwritev(fd, buffers, offset)

    def _inject_write_fault(self, fd: int, buffers: Sequence[Buffer], offset: int) -> None:
        if self.write_fault is not None and self._faulty(fd):
            if self.write_fault == "half":
                data = b"".join(bytes(b) for b in buffers)
                os.pwrite(fd, data[: len(data) // 2], offset)
            raise OSError(
                self.write_fault_errno, f"{os.strerror(self.write_fault_errno)} (injected)"
            )

    async def pread(self, fd: int, size: int, offset: int) -> bytes:
        gate = self.read_gate
        if gate is not None and self.paths.get(fd, "").endswith(gate.suffix):
            gate.reached.set()
            await gate.release.wait()
        if self.read_fault and self._faulty(fd):
            await trio.lowlevel.checkpoint()
            raise OSError(errno.EIO, "Input/output error (injected)")
        data = await super().pread(fd, size, offset)
        self.pread_bytes += len(data)
        return data

    async def fdatasync(self, fd: int) -> None:
        self.sync_calls[self.paths.get(fd, "?")] += 1
        gate = self.sync_gate
        if gate is not None and self.paths.get(fd, "").endswith(gate.suffix):
            gate.reached.set()
            await gate.release.wait()
        if self.sync_fault and self._faulty(fd):
            await trio.lowlevel.checkpoint()
            raise OSError(errno.EIO, "Input/output error (injected)")
        await super().fdatasync(fd)

    async def ftruncate(self, fd: int, size: int) -> None:
        if self.truncate_fault and self._faulty(fd):
            await trio.lowlevel.checkpoint()
            raise OSError(errno.EIO, "Input/output error (injected)")
        await super().ftruncate(fd, size)

    def crash(self) -> None:
        """Close every open descriptor behind the log's back (a killed process)."""
        for fd in list(self.paths):
            os.close(fd)
        self.paths.clear()


class TrioPortal:
    """Runs async functions for synchronous callers inside one long ``trio.run``."""

    def __init__(self) -> None:
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._thread_main, daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    def _thread_main(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as error:  # reported by close()
            self._error = error
            self._ready.set()

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        self._ready.set()
        await self._stop.wait()

    def run(self, function: Callable[..., Awaitable[T]], *args: Any) -> T:
        return trio.from_thread.run(function, *args, trio_token=self._token)

    def close(self) -> None:
        trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        self._thread.join()
        if self._error is not None:
            raise self._error


# --- record batches -------------------------------------------------------------


def batch(
    values: Sequence[bytes | None],
    *,
    now_ms: int,
    key: bytes | None = None,
    compression: str = "none",
    timestamps: Sequence[int] | None = None,
) -> bytes:
    records = [
        Record(
            key=key,
            value=value,
            timestamp_ms=None if timestamps is None else timestamps[i],
        )
        for i, value in enumerate(values)
    ]
    return build_batch(records, now_ms=now_ms, compression=compression)


def read_file(path: str) -> bytes:
    with open(path, "rb") as file:
        return file.read()


def file_size(path: str) -> int:
    return os.path.getsize(path)


def exists(path: str) -> bool:
    return os.path.exists(path)


def segment_files(directory: str) -> list[tuple[int, str]]:
    """(base offset, path) of each segment log file, in order."""
    return sorted(
        (int(name[: -len(".log")]), os.path.join(directory, name))
        for name in os.listdir(directory)
        if name.endswith(".log")
    )


def file_batches(path: str) -> list[tuple[int, int, int]]:
    """(position, base offset, size) of each batch in a segment file (must be whole)."""
    with open(path, "rb") as file:
        data = file.read()
    return [(position, h.base_offset, h.size_bytes) for position, h in iterate_batches(data)]


class UringTestBackend(TestBackend, UringBackend):
    """TestBackend's bookkeeping and faults over the io_uring backend.

    The method order is UringTestBackend, TestBackend, UringBackend,
    FallbackBackend: TestBackend's ``super()`` calls reach the ring. Writes go
    through the ring too (not inline, the backend's default), so the fault
    injection exercises the ring's write path; the plain ``UringBackend``
    the storage tests also use covers the default.
    """

    __test__ = False

    def __init__(self) -> None:
        super().__init__()
        self._write_on_ring = True

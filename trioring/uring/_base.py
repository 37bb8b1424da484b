"""The I/O interface every backend implements (io_uring or fallback): files and listeners.

Storage does its file I/O only through this interface, so the io_uring
backend (one ring per worker) and the portable fallback are interchangeable
and the storage tests run over both.

Rules every implementation keeps:
- No method blocks the Trio loop on the disk for long: fdatasync and reads
  that may miss the page cache run off-loop (in a thread or in the kernel).
- Every async method checkpoints.
- Writes and syncs are not cancellable mid-flight: once issued they run to
  completion, and a cancellation is delivered after they finish. A partial
  WAL write cannot be un-written, so callers must see its real outcome.
  ``pwritev`` goes further: it is a schedule point but never raises
  Cancelled, so a caller that has committed to a write needs no shielding
  cancel scope around it.
- A backend whose writes are page-cache copies made in the loop says so with
  ``writes_inline`` and offers ``write_now``, the same write as a plain
  function. The log then takes the append's schedule point itself and writes
  without two more coroutine layers (about 1 us of a lone producer's ~25 us
  of Python per batch), and can decide when to skip that schedule point.
- Errors are OSError with the errno of the failed call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import trio

Buffer = bytes | bytearray | memoryview


class FileBackend(Protocol):
    """File operations on raw file descriptors."""

    @property
    def name(self) -> str:
        """Short name logged at start-up ("uring" or "fallback")."""
        ...

    async def open(self, path: str, flags: int, mode: int = 0o644) -> int: ...

    async def close(self, fd: int) -> None: ...

    async def pwritev(self, fd: int, buffers: Sequence[Buffer], offset: int) -> int:
        """Write all of ``buffers`` at ``offset``; return bytes written (always all)."""
        ...

    @property
    def writes_inline(self) -> bool:
        """Whether :meth:`write_now` may be called (writes are made in the loop)."""
        ...

    def write_now(self, fd: int, buffers: Sequence[Buffer], offset: int) -> int:
        """``pwritev`` without the schedule point; only when ``writes_inline``."""
        ...

    async def pread(self, fd: int, size: int, offset: int) -> bytes:
        """Read up to ``size`` bytes at ``offset``; short only at end of file."""
        ...

    async def fdatasync(self, fd: int) -> None: ...

    async def fsync_directory(self, path: str) -> None:
        """Make a directory's entries (created, renamed, deleted files) durable."""
        ...

    async def ftruncate(self, fd: int, size: int) -> None: ...

    async def file_size(self, fd: int) -> int: ...

    async def rename(self, source: str, destination: str) -> None:
        """Atomically replace ``destination`` with ``source`` (rename(2))."""
        ...

    async def unlink(self, path: str) -> None: ...

    async def make_directory(self, path: str) -> bool:
        """Create ``path`` (and parents); return whether it was created."""
        ...

    async def list_directory(self, path: str) -> list[str]: ...

    async def open_tcp_listeners(
        self, port: int, *, host: str | None = None, backlog: int | None = None
    ) -> list[trio.SocketListener | Any]:
        """TCP listeners whose streams do their I/O through this backend.

        The fallback gives Trio's listeners; io_uring gives listeners whose
        sockets wait in the ring (``RingListener``), where the kernel can.
        Call inside the Trio run that uses the backend.
        """
        ...

    async def aclose(self) -> None:
        """Release the backend (the ring); outstanding operations are drained."""
        ...

"""io_uring backend: reads, writes and syncs through one ring per Trio run.

On the ring: ``pread`` (unless the page cache holds every byte asked for:
then it is read in the loop with preadv2(RWF_NOWAIT), several times cheaper
than a ring round trip; see ``_fallback.py``; ``cached_reads_inline=False``
sends every read to the ring), ``fdatasync`` and the extra ``write_and_fdatasync``
(a write linked to an fdatasync with IOSQE_IO_LINK: one submission, no round
trip in between). ``pwritev`` runs inline in the loop by default, like the
fallback's: on ext4 a buffered write through io_uring is handed to a kernel
worker thread, and measured here a 100 KiB write through the ring cost 4.6x
an inline ``os.pwritev`` (a page-cache copy of microseconds), while an
fdatasync through the ring cost 0.82-0.87x one through a thread.
``write_on_ring=True`` sends writes through the ring too (tests and
benchmarks use it; see docs/uring.md); ``receive_on_ring=True`` makes the
listeners' streams wait for bytes with ring receives instead of Trio's epoll
(see ``_socket.py``). Everything else (open, close, rename,
unlink, make_directory, list_directory, ftruncate, fsync_directory,
file_size) is rare metadata work inherited from the fallback (threads, or
inline where it cannot block).

The ring is set up lazily by the first request inside a Trio run, so
``UringBackend()`` can be built anywhere (``open_backend`` is synchronous);
``aclose`` or the end of that run tears it down, and a later request in
another run sets up a new one. See ``_ring.py`` for batching, reaping and
cancellation.
"""

from __future__ import annotations

import errno
import logging
import sys
from collections.abc import Sequence
from typing import Any

import trio

from trioring._constants import (
    COMPLETION_ENTRIES_DEFAULT,
    IOVECS_MAX,
    OPERATIONS_IN_FLIGHT_MAX,
    PROBE_ENTRIES,
    READ_BUFFER_REUSE_BYTES_MIN,
    READ_BUFFERS_KEPT_BYTES_MAX,
    READ_THREADS_MAX,
    READ_WRITE_BYTES_MAX,
    RING_ENTRIES_DEFAULT,
)
from trioring.uring import _ring, _socket
from trioring.uring._base import Buffer
from trioring.uring._fallback import FallbackBackend, write_all

IO_URING_DISABLED_PATH = "/proc/sys/kernel/io_uring_disabled"

#: (pointer, length) of bytes still to write.
_Piece = tuple[Any, int]


logger = logging.getLogger("trioring.uring")


class UringUnavailableError(OSError):
    """io_uring cannot run here (errno and reason say why)."""


class UringBackend(FallbackBackend):
    """FileBackend over io_uring (see the module docstring).

    A subclass of the fallback so the metadata operations are shared, and so
    test backends that extend the fallback with fault injection can be put
    over the ring by multiple inheritance.
    """

    def __init__(
        self,
        *,
        ring_entries: int = RING_ENTRIES_DEFAULT,
        completion_entries: int = COMPLETION_ENTRIES_DEFAULT,
        operations_in_flight_max: int = OPERATIONS_IN_FLIGHT_MAX,
        read_threads_max: int = READ_THREADS_MAX,
        write_on_ring: bool = False,
        receive_on_ring: bool = False,
        cached_reads_inline: bool = True,
    ) -> None:
        super().__init__(read_threads_max=read_threads_max, cached_reads_inline=cached_reads_inline)
        self._write_on_ring = write_on_ring
        self._receive_on_ring = receive_on_ring
        if _ring.EXTENSION_IMPORT_ERROR is not None:
            raise UringUnavailableError(
                errno.ENOSYS, f"the io_uring extension is not built: {_ring.EXTENSION_IMPORT_ERROR}"
            )
        self._ring_entries = ring_entries
        self._completion_entries = completion_entries
        self._operations_in_flight_max = operations_in_flight_max
        self._ring: _ring.Ring | None = None
        #: Large read buffers kept for the next read, by size (a power of two),
        #: and their total (see READ_BUFFER_REUSE_BYTES_MIN).
        self._read_buffers: dict[int, list[Any]] = {}
        self._read_buffers_bytes = 0

    @property
    def name(self) -> str:
        return "uring"

    def _running_ring(self) -> _ring.Ring:
        ring = self._ring
        if ring is not None and not ring.closed and not ring.in_current_run():
            # Its run ended without closing it (only an internal error in Trio
            # does that): abandoned, since the kernel may still write into
            # buffers of requests it had in flight.
            logger.warning("io_uring: a ring left open by an earlier Trio run is abandoned")
            ring = None
        if ring is None or ring.closed:
            ring = _ring.Ring(
                entries=self._ring_entries,
                completion_entries=self._completion_entries,
                operations_in_flight_max=self._operations_in_flight_max,
            )
            ring.start()
            self._ring = ring
        return ring

    def socket_ring(self) -> _ring.Ring | None:
        """This run's ring for socket I/O (see ``_socket.py``), or None if the
        kernel's io_uring can't wait for sockets without a thread each
        (no IORING_FEAT_FAST_POLL, before Linux 5.7)."""
        ring = self._running_ring()
        return ring if ring.supports_sockets else None

    async def open_tcp_listeners(  # type: ignore[override]
        self, port: int, *, host: str | None = None, backlog: int | None = None
    ) -> list[trio.SocketListener | _socket.RingListener]:
        """Listeners on this run's ring, or Trio's where the kernel's io_uring
        cannot wait for sockets without a thread each (before Linux 5.7)."""
        listeners = await trio.open_tcp_listeners(port, host=host, backlog=backlog)
        ring = self.socket_ring()
        if ring is None:
            logger.info("sockets: Trio's (this kernel's io_uring has no fast poll)")
            return list(listeners)
        logger.info("sockets: io_uring")
        return list(
            _socket.ring_listeners_from(ring, listeners, receive_on_ring=self._receive_on_ring)
        )

    def statistics(self) -> dict[str, int]:
        ring = self._ring
        if ring is None or ring.closed:
            return {}
        return {**ring.statistics(), "read_buffers_kept_bytes": self._read_buffers_bytes}

    async def aclose(self) -> None:
        # The ring stays referenced while it closes, so requests made during
        # teardown are refused by it instead of setting up a new ring.
        ring = self._ring
        if ring is None:
            await trio.lowlevel.checkpoint()
        else:
            await ring.aclose()

    # --- on the ring -------------------------------------------------------------------

    async def pread(self, fd: int, size: int, offset: int) -> bytes:
        await trio.lowlevel.checkpoint_if_cancelled()
        if size < 0 or offset < 0:
            raise OSError(errno.EINVAL, "negative size or offset")
        data = self._read_cached(fd, size, offset)
        if data is not None:
            # Cheaper than any ring round trip (see _fallback.py).
            await trio.lowlevel.cancel_shielded_checkpoint()
            return data
        ring = self._running_ring()
        size = min(size, READ_WRITE_BYTES_MAX)
        if size < READ_BUFFER_REUSE_BYTES_MIN:
            buffer = _ring.allocate_uninitialized(size)
            capacity = 0
        else:
            capacity = 1 << (size - 1).bit_length()
            kept = self._read_buffers.get(capacity)
            if kept:
                buffer = kept.pop()
                self._read_buffers_bytes -= capacity
            else:
                buffer = _ring.allocate_uninitialized(capacity)
        (result,) = await ring.perform(
            ((_ring.lib.trioring_prep_read, (fd, buffer, size, offset)),),
            buffer,
            cancellable=True,
        )
        # Completed (perform returns or raises only then): the kernel is done
        # with the buffer, whatever happens next.
        data = bytes(_ring.ffi.buffer(buffer, max(result, 0)))
        if capacity and self._read_buffers_bytes + capacity <= READ_BUFFERS_KEPT_BYTES_MAX:
            self._read_buffers.setdefault(capacity, []).append(buffer)
            self._read_buffers_bytes += capacity
        if result < 0:
            raise _ring.os_error(result)
        return data

    @property
    def writes_inline(self) -> bool:
        return not self._write_on_ring

    def write_now(self, fd: int, buffers: Sequence[Buffer], offset: int) -> int:
        assert not self._write_on_ring, "write_now is only for inline writes"
        return write_all(fd, buffers, offset)

    async def pwritev(self, fd: int, buffers: Sequence[Buffer], offset: int) -> int:
        if not self._write_on_ring:
            return await super().pwritev(fd, buffers, offset)
        return await self._write(fd, buffers, offset, sync=False)

    async def write_and_fdatasync(self, fd: int, buffers: Sequence[Buffer], offset: int) -> int:
        """``pwritev`` then ``fdatasync`` as one linked submission; return bytes written.

        Like both, not cancellable once started. Raises the write's error, or
        the sync's if the write succeeded.
        """
        return await self._write(fd, buffers, offset, sync=True)

    async def fdatasync(self, fd: int) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        ring = self._running_ring()
        (result,) = await ring.perform((_fdatasync_request(fd),), None, cancellable=False)
        if result < 0:
            raise _ring.os_error(result)

    async def _write(self, fd: int, buffers: Sequence[Buffer], offset: int, *, sync: bool) -> int:
        # No cancel point: a write is never cancelled (see _base.py); waiting
        # for its completion is the schedule point.
        assert len(buffers) <= IOVECS_MAX, "callers bound iovecs per write"
        if offset < 0:
            raise OSError(errno.EINVAL, "negative offset")
        ring = self._running_ring()
        from_buffer = _ring.ffi.from_buffer
        handles = [from_buffer(buffer) for buffer in buffers]
        pieces = [(handle, len(handle)) for handle in handles if len(handle)]
        if not pieces and not sync:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return 0
        written = 0
        # Rounds of one write: no checkpoint between them, and the ring is
        # held open, so a short write is continued, never abandoned half-done
        # because of a cancellation or a teardown.
        ring.hold()
        try:
            while pieces:
                write_request, iovecs = _write_request(fd, pieces, offset + written, link=sync)
                requests = (write_request, _fdatasync_request(fd)) if sync else (write_request,)
                results = await ring.perform(
                    requests, (handles, iovecs), cancellable=False, held=True
                )
                count = results[0]
                if count < 0:
                    raise _ring.os_error(count)
                if count == 0:
                    raise OSError(errno.ENOSPC, "no progress writing to file (disk full?)")
                written += count
                pieces = _advance(pieces, count)
                if sync and not pieces:
                    # A short write broke the chain (the sync came back
                    # ECANCELED); only the last round's sync counts.
                    if results[1] < 0:
                        raise _ring.os_error(results[1])
                    return written
            if sync:  # nothing to write, just the sync
                (result,) = await ring.perform(
                    (_fdatasync_request(fd),), None, cancellable=False, held=True
                )
                if result < 0:
                    raise _ring.os_error(result)
            return written
        finally:
            ring.release()


def _fdatasync_request(fd: int) -> _ring.Request:
    return (_ring.lib.trioring_prep_fsync, (fd, _ring.lib.IORING_FSYNC_DATASYNC, 0))


def _write_request(
    fd: int, pieces: list[_Piece], offset: int, *, link: bool
) -> tuple[_ring.Request, Any]:
    """The SQE for ``pieces`` at ``offset``, and the iovec array it points to (or None)."""
    lib = _ring.lib
    sqe_flags = lib.TRIORING_SQE_IO_LINK if link else 0
    if len(pieces) == 1:
        pointer, length = pieces[0]
        length = min(length, READ_WRITE_BYTES_MAX)
        return (lib.trioring_prep_write, (fd, pointer, length, offset, sqe_flags)), None
    iovecs = _ring.ffi.new("struct iovec[]", len(pieces))
    for index, (pointer, length) in enumerate(pieces):
        iovec = iovecs[index]
        iovec.iov_base = pointer
        iovec.iov_len = length
    return (lib.trioring_prep_writev, (fd, iovecs, len(pieces), offset, sqe_flags)), iovecs


def _advance(pieces: list[_Piece], count: int) -> list[_Piece]:
    index = 0
    while index < len(pieces) and count >= pieces[index][1]:
        count -= pieces[index][1]
        index += 1
    rest = pieces[index:]
    if rest and count:
        pointer, length = rest[0]
        rest[0] = (pointer + count, length - count)
    return rest


# --- availability ------------------------------------------------------------------------


def uring_unavailable_reason() -> UringUnavailableError | None:
    """Why io_uring can't run here (errno and a sentence), or None if a ring sets up."""
    if not sys.platform.startswith("linux"):
        return UringUnavailableError(errno.ENOSYS, f"io_uring is Linux-only, not {sys.platform}")
    if _ring.EXTENSION_IMPORT_ERROR is not None:
        return UringUnavailableError(
            errno.ENOSYS,
            f"the io_uring extension is not built or cannot load ({_ring.EXTENSION_IMPORT_ERROR})",
        )
    try:
        handle = _ring.setup_ring_handle(PROBE_ENTRIES, 2 * PROBE_ENTRIES)
    except OSError as error:
        return UringUnavailableError(error.errno, _explain_setup_error(error))
    _ring.close_ring_handle(handle)
    return None


def _explain_setup_error(error: OSError) -> str:
    code = error.errno
    name = errno.errorcode.get(code or 0, str(code))
    if code == errno.ENOSYS:
        return "the kernel has no io_uring (io_uring_setup: ENOSYS)"
    if code == errno.EPERM:
        disabled = _read_io_uring_disabled()
        if disabled == "2":
            return f"io_uring is disabled by {IO_URING_DISABLED_PATH} = 2 (io_uring_setup: EPERM)"
        if disabled == "1":
            return (
                f"io_uring is restricted by {IO_URING_DISABLED_PATH} = 1 to the group in "
                "/proc/sys/kernel/io_uring_group (io_uring_setup: EPERM)"
            )
        return "io_uring_setup is not permitted (EPERM): a seccomp filter, e.g. a container's"
    if code == errno.EOPNOTSUPP:
        return "the kernel's io_uring lacks features this backend needs (Linux 5.6 or newer)"
    if code == errno.ENOMEM:
        return "no memory for the ring (io_uring_setup: ENOMEM; RLIMIT_MEMLOCK on old kernels)"
    return f"io_uring_setup failed: {name} ({error.strerror})"


def _read_io_uring_disabled() -> str | None:
    try:
        with open(IO_URING_DISABLED_PATH) as file:
            return file.read().strip()
    except OSError:
        return None

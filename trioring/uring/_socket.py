"""TCP streams and listeners over the io_uring ring, and serving file ranges to them.

:class:`RingSocketStream` is a ``trio.abc.HalfCloseableStream`` over a
socket and the ring of the Trio run (see ``_ring.py``). Bytes already
waiting, and room already free, are taken with one plain recv(2) / send(2),
as Trio's sockets do. A send the socket can't take whole continues as
IORING_OP_SEND on the ring, and requests from many connections queued in one
scheduler batch go to the kernel in one ``io_uring_enter``. A receive that
finds no bytes waits on Trio's epoll and then calls recv(2) again, unless
the stream was made with ``receive_on_ring=True``: then it becomes an
IORING_OP_RECV that the kernel completes when the bytes come.

Measured (1 KiB echo, server CPU per round trip; docs/uring.md):
- A stream that always went through the ring cost the same as Trio's with
  32 connections and 1.7x Trio's with one connection (more scheduler
  batches per round trip: submit, reap, wake); taking ready bytes directly
  brought both to parity on the first development machine.
- On the second (2026-12-07), waiting receives on the ring cost 1.34x
  Trio's CPU per round trip at one connection and 1.22x at 32; once the
  ring submitted and reaped from the run loop's hooks with COOP_TASKRUN
  (see ``_ring.py``), 1.22x and 0.88x.
- Waiting on epoll instead: 0.91x and 0.84x, this stream's lighter Python
  path being the difference.
- So receives wait on epoll by default. A multishot receive (bytes landing
  in a pool of provided buffers) was tried: 1.17x and 0.83x, not kept.
- With a client that keeps the server busy, this stream costs 0.64-0.66x
  Trio's CPU per round trip at 32 connections. Receives that skip the
  first recv(2) after one found nothing were tried: no gain against a slow
  client, 1.1-1.4x the CPU against a fast one (the bytes are usually
  there), not kept.

Cancellation and close, the parts that make a completion-based stream hard:

- A cancelled receive waiting on epoll took nothing. A cancelled receive on
  the ring submits an async-cancel and waits for the real completion
  (``Abort.FAILED``). If the receive completed anyway, its
  bytes are kept in a pending buffer (at most one receive,
  ``PENDING_RECEIVE_BYTES_MAX``) that the next ``receive_some`` returns, and
  Cancelled is raised: a byte is never lost, duplicated or reordered.
- A cancelled ``send_all`` stops between or inside rounds on the ring. If no
  byte of it went out the stream is intact; otherwise the peer got a prefix
  of the data, so the stream is marked broken (later sends raise
  BrokenResourceError), as a cancelled Trio ``send_all`` leaves its stream
  in an unknown state.
- ``aclose`` wakes a receive waiting on epoll (``notify_closing``), cancels
  the stream's requests still in flight, waits for their
  completions (shielded: the kernel owns the buffers until then, and a
  request still queued must not reach the kernel with a reused fd number),
  then closes the descriptor. The interrupted calls raise ClosedResourceError.
- ``send_eof`` is a plain ``shutdown(SHUT_WR)``: it never blocks, so a ring
  round trip (IORING_OP_SHUTDOWN) would only add latency.

``send_file_range`` serves part of a file to a stream. Over the ring it
splices file -> pipe -> socket (IORING_OP_SPLICE, two requests linked in one
submission), the pipe lent from a small pool per ring, so the bytes go from
the page cache to the socket without a copy through Python. For Trio's
sockets it uses ``os.sendfile``: in the loop for pieces the page cache holds
(``_pagecache.py``), in a worker thread for the others (a page-cache miss
must not block the loop). For any other stream, preads and ``send_all``:
callers work with either backend.
"""

from __future__ import annotations

import errno
import math
import operator
import os
import select
import socket
import weakref
from collections.abc import Sequence
from contextlib import suppress
from types import TracebackType
from typing import Any, NoReturn, TypeAlias

import trio

from trioring._constants import (
    FILE_CHUNK_BYTES_MAX,
    PENDING_RECEIVE_BYTES_MAX,
    RECEIVE_BUFFER_BYTES_MIN,
    RECEIVE_BYTES_DEFAULT,
    RECEIVE_BYTES_MAX,
    SEND_BYTES_MAX,
    SPLICE_PIPE_BYTES,
    SPLICE_PIPES_MAX,
)
from trioring.uring import _pagecache, _ring
from trioring.uring._base import Buffer, FileBackend

__all__ = [
    "RingListener",
    "RingSocketStream",
    "TcpListener",
    "TcpStream",
    "open_tcp_listeners_for",
    "ring_listeners_from",
    "send_file_range",
]


#: Errors that mean the descriptor is gone: the stream was closed under us.
_CLOSED_ERRNOS = frozenset({errno.EBADF, errno.ENOTSOCK})
#: accept(2) errors that concern only the one connection being accepted (Linux
#: reports a pending error of the new connection from accept); keep accepting.
_CONNECTION_ACCEPT_ERRNOS = frozenset(
    {
        errno.ECONNABORTED,
        errno.EPROTO,
        errno.EPERM,  # a firewall rule refused it
        errno.ENETDOWN,
        errno.ENOPROTOOPT,
        errno.EHOSTDOWN,
        errno.ENONET,
        errno.EHOSTUNREACH,
        errno.EOPNOTSUPP,
        errno.ENETUNREACH,
        errno.ETIMEDOUT,
    }
)
_SEND_FLAGS = socket.MSG_NOSIGNAL  # EPIPE instead of killing the process with SIGPIPE
_ACCEPT_FLAGS = socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC
#: splice offset meaning "none": pipes have no file position.
_NO_OFFSET = -1
_STREAM_CLOSED_MESSAGE = "the stream was closed during the operation"
#: sendfile(2) errors that come from the file, not the socket: raised as
#: OSError (the caller closes the connection and says why), not as a broken
#: stream.
_FILE_SIDE_ERRNOS = frozenset({errno.EIO, errno.EOVERFLOW, errno.ESPIPE, errno.EINVAL})
_LISTENER_CLOSED_MESSAGE = "the listener was closed during accept"


class _ConflictDetector:
    """BusyResourceError when a second task enters while one is inside (as Trio's streams do)."""

    __slots__ = ("_held", "_message")

    def __init__(self, message: str) -> None:
        self._message = message
        self._held = False

    def __enter__(self) -> None:
        if self._held:
            raise trio.BusyResourceError(self._message)
        self._held = True

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._held = False


def _stream_error(negative_errno: int) -> trio.ClosedResourceError | trio.BrokenResourceError:
    error = _ring.os_error(negative_errno)
    if -negative_errno in _CLOSED_ERRNOS:
        return trio.ClosedResourceError("the socket was already closed")
    broken = trio.BrokenResourceError(f"socket connection broken: {error}")
    broken.__cause__ = error
    return broken


async def _wait_ready(
    ring: _ring.Ring, owner: _ring.OperationOwner, fd: int, poll_mask: int
) -> None:
    """Wait (IORING_OP_POLL_ADD) until ``fd`` is ready for ``poll_mask`` or has an error.

    A schedule point only: callers check for cancellation first. Waiting on
    the ring rather than Trio's epoll means the owner's close and the ring's
    teardown end this wait like any other request.
    """
    (result,) = await ring.perform(
        ((_ring.lib.trioring_prep_poll, (fd, poll_mask)),), None, cancellable=True, owner=owner
    )
    if result < 0:
        raise _stream_error(result)


def _splice_request(
    fd_in: int, offset_in: int, fd_out: int, size: int, *, more: bool, link: bool = False
) -> _ring.Request:
    """A splice of ``size`` bytes into a pipe or socket.

    ``more``: more bytes follow (SPLICE_F_MORE, like MSG_MORE: TCP need not
    push a partial segment). ``link``: the next request runs only if this
    one moves all ``size`` bytes.
    """
    lib = _ring.lib
    flags = os.SPLICE_F_MORE if more else 0
    sqe_flags = lib.TRIORING_SQE_IO_LINK if link else 0
    return (
        lib.trioring_prep_splice,
        (fd_in, offset_in, fd_out, _NO_OFFSET, size, flags, sqe_flags),
    )


class RingSocketStream(trio.abc.HalfCloseableStream):
    """A connected stream socket whose I/O goes through ``ring`` (see the module docstring).

    Takes ownership of ``sock`` (closed by :meth:`aclose`) and makes it
    non-blocking. Create and use it inside the Trio run that owns ``ring``.

    .. attribute:: socket

       The wrapped ``socket.socket``, for ``getpeername``, ``getsockname`` and
       options. Do not read from or write to it directly.
    """

    def __init__(
        self, ring: _ring.Ring, sock: socket.socket, *, receive_on_ring: bool = False
    ) -> None:
        if sock.type != socket.SOCK_STREAM:
            raise ValueError("RingSocketStream requires a SOCK_STREAM socket")
        if sock.gettimeout() != 0.0:
            sock.setblocking(False)
        self.socket = sock
        self._fd = sock.fileno()
        self._ring = ring
        #: Whether a receive that finds no bytes waits as an IORING_OP_RECV
        #: (True) or on Trio's epoll, then recv(2) (False, the default: it
        #: costs less CPU; see the module docstring).
        self._receive_on_ring = receive_on_ring
        self._owner = _ring.OperationOwner()
        self._send_conflict = _ConflictDetector("another task is sending on this stream")
        self._receive_conflict = _ConflictDetector("another task is receiving on this stream")
        #: Bytes of a receive that completed although its caller was cancelled.
        self._pending = b""
        #: The kernel's receive buffer, kept between receives (see _fit_receive_buffer).
        self._receive_buffer: Any = None
        self._receive_buffer_bytes = RECEIVE_BUFFER_BYTES_MIN
        self._closed = False
        self._sent_eof = False
        #: Why sending is impossible (a send interrupted part-way or a broken
        #: connection), or None.
        self._broken_reason: str | None = None
        # Request/response traffic: send each response at once rather than
        # waiting for the peer's ACK of the previous one (Nagle). Unix sockets
        # have no such option.
        with suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    # --- socket-like helpers ------------------------------------------------------------

    def setsockopt(self, level: int, option: int, value: int | Buffer) -> None:
        self.socket.setsockopt(level, option, value)

    def getsockopt(self, level: int, option: int) -> int:
        return self.socket.getsockopt(level, option)

    def getpeername(self) -> Any:
        return self.socket.getpeername()

    def getsockname(self) -> Any:
        return self.socket.getsockname()

    def statistics(self) -> dict[str, int]:
        return {
            "operations_in_flight": len(self._owner),
            "pending_receive_bytes": len(self._pending),
            "receive_buffer_bytes": self._receive_buffer_bytes,
        }

    # --- receiving ----------------------------------------------------------------------

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if max_bytes is None:
            max_bytes = RECEIVE_BYTES_DEFAULT
        else:
            max_bytes = operator.index(max_bytes)
            if max_bytes < 1:
                raise ValueError("max_bytes must be >= 1")
        with self._receive_conflict:
            self._raise_if_closed()
            if self._pending:
                await trio.lowlevel.checkpoint()
                kept, self._pending = self._pending[:max_bytes], self._pending[max_bytes:]
                return kept
            await trio.lowlevel.checkpoint_if_cancelled()
            try:
                # Bytes already waiting are cheaper to take with one recv(2)
                # here than with a ring round trip (see the module docstring).
                ready = self.socket.recv(min(max_bytes, RECEIVE_BYTES_MAX))
            except BlockingIOError:
                pass
            except OSError as error:
                raise _stream_error(-(error.errno or errno.EIO)) from error
            else:
                await trio.lowlevel.cancel_shielded_checkpoint()
                return ready
            if not self._receive_on_ring:
                return await self._receive_after_wait(max_bytes)
            while True:
                buffer = self._receive_buffer
                if buffer is None:
                    buffer = _ring.allocate_uninitialized(self._receive_buffer_bytes)
                    self._receive_buffer = buffer
                size = min(max_bytes, self._receive_buffer_bytes)
                (result,) = await self._ring.perform(
                    ((_ring.lib.trioring_prep_recv, (self._fd, buffer, size, 0, 0)),),
                    buffer,
                    cancellable=True,
                    owner=self._owner,
                )
                self._raise_if_closed()
                if result != -errno.EAGAIN:
                    break
                # Kernels that honour O_NONBLOCK for ring requests say EAGAIN
                # instead of waiting: wait here, then ask again.
                await _wait_ready(self._ring, self._owner, self._fd, select.POLLIN)
                self._raise_if_closed()
                await trio.lowlevel.checkpoint_if_cancelled()
            if result < 0:
                raise _stream_error(result)
            if result == 0:
                return b""
            data: bytes = _ring.ffi.buffer(buffer, result)[:]
            self._fit_receive_buffer(result, size)
            if trio.current_effective_deadline() == -math.inf:
                # Cancelled while the receive was completing: keep the bytes
                # for the next call rather than hand them to a task that is
                # unwinding (or drop them). (A synchronous test first: this
                # runs once per receive.)
                assert len(data) <= PENDING_RECEIVE_BYTES_MAX
                self._pending = data
                await trio.lowlevel.checkpoint()
                raise AssertionError("a cancelled task passed a checkpoint")
            return data

    async def _receive_after_wait(self, max_bytes: int) -> bytes:
        """Wait on Trio's epoll until bytes (or EOF, or an error) arrive, then recv(2)
        them. The wait is the schedule point; a cancelled wait took nothing."""
        while True:
            await trio.lowlevel.wait_readable(self.socket)
            self._raise_if_closed()
            try:
                return self.socket.recv(min(max_bytes, RECEIVE_BYTES_MAX))
            except BlockingIOError:
                continue  # a spurious wake-up
            except OSError as error:
                raise _stream_error(-(error.errno or errno.EIO)) from error

    def _fit_receive_buffer(self, received: int, asked: int) -> None:
        """Size the next receive buffer to what arrives.

        The buffer is kept for the next receive (one at a time per stream):
        allocating up to ``max_bytes`` per receive made glibc move the heap
        top twice per receive (measured: 45,000 brk calls in 4 s of echo).
        It doubles when a receive filled it and halves when one used a
        quarter, so an idle connection holds ``RECEIVE_BUFFER_BYTES_MIN`` and
        a bulk transfer soon receives ``RECEIVE_BYTES_MAX`` at a time.
        """
        capacity = self._receive_buffer_bytes
        if received == asked == capacity and capacity < RECEIVE_BYTES_MAX:
            self._receive_buffer_bytes = min(2 * capacity, RECEIVE_BYTES_MAX)
            self._receive_buffer = None
        elif received <= capacity // 4 and capacity > RECEIVE_BUFFER_BYTES_MIN:
            self._receive_buffer_bytes = max(capacity // 2, RECEIVE_BUFFER_BYTES_MIN)
            self._receive_buffer = None

    # --- sending ------------------------------------------------------------------------

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        with self._send_conflict:
            self._raise_if_cannot_send()
            length = data.nbytes if isinstance(data, memoryview) else len(data)
            if length == 0:
                await trio.lowlevel.checkpoint()
                return
            await trio.lowlevel.checkpoint_if_cancelled()
            try:
                # Usually the socket's buffer has room: one send(2) here is
                # cheaper than a ring round trip (see the module docstring).
                sent = self.socket.send(data, _SEND_FLAGS)
            except BlockingIOError:
                sent = 0
            except OSError as error:
                self._raise_broken(-(error.errno or errno.EIO))
            if sent == length:
                await trio.lowlevel.cancel_shielded_checkpoint()
                return
            pointer = _ring.ffi.from_buffer(data)
            try:
                send = _ring.lib.trioring_prep_send
                first_round = True  # the direct send was the cancel point
                while sent < length:
                    if not first_round:
                        await trio.lowlevel.checkpoint_if_cancelled()
                    first_round = False
                    size = min(length - sent, SEND_BYTES_MAX)
                    (result,) = await self._ring.perform(
                        ((send, (self._fd, pointer + sent, size, _SEND_FLAGS, 0)),),
                        pointer,
                        cancellable=True,
                        owner=self._owner,
                    )
                    self._raise_if_closed()
                    if result > 0:
                        sent += result
                    elif result == -errno.EAGAIN:  # as for receives
                        await _wait_ready(self._ring, self._owner, self._fd, select.POLLOUT)
                        self._raise_if_closed()
                    else:
                        # 0: no progress on a stream socket, the connection is gone.
                        self._raise_broken(result or -errno.EPIPE)
            except BaseException:
                if sent and self._broken_reason is None:
                    self._broken_reason = f"send_all interrupted after {sent} of {length} bytes"
                raise
            finally:
                # No request uses the buffer any more (perform returns only
                # after the completion): end the export now, so a bytearray
                # can be resized as soon as send_all returns.
                _ring.ffi.release(pointer)

    async def wait_send_all_might_not_block(self) -> None:
        with self._send_conflict:
            self._raise_if_closed()
            await trio.lowlevel.checkpoint_if_cancelled()
            await _wait_ready(self._ring, self._owner, self._fd, select.POLLOUT)
            self._raise_if_closed()

    async def send_eof(self) -> None:
        with self._send_conflict:
            self._raise_if_closed()
            await trio.lowlevel.checkpoint()
            if self._sent_eof:
                return
            try:
                self.socket.shutdown(socket.SHUT_WR)
            except OSError as error:
                raise _stream_error(-(error.errno or errno.EIO)) from error
            self._sent_eof = True

    async def send_file_range(self, file_fd: int, offset: int, count: int) -> None:
        """Send ``count`` bytes of ``file_fd`` from ``offset`` (see :func:`send_file_range`)."""
        if offset < 0 or count < 0:
            raise ValueError("offset and count must not be negative")
        with self._send_conflict:
            self._raise_if_cannot_send()
            if count == 0:
                await trio.lowlevel.checkpoint()
                return
            await trio.lowlevel.checkpoint_if_cancelled()
            pipes = _splice_pipes(self._ring)
            pipe = await pipes.acquire()
            sent = 0
            in_pipe = 0  # bytes spliced into the pipe and not sent yet
            try:
                while sent < count:
                    await trio.lowlevel.checkpoint_if_cancelled()
                    more = sent + in_pipe < count
                    if in_pipe == 0:
                        filled, drained = await self._splice_through(
                            pipe, file_fd, offset + sent, count - sent
                        )
                        # Counted before anything can raise, so that a pipe
                        # left holding bytes is never lent again.
                        in_pipe = max(filled, 0)
                        if filled <= 0:
                            self._raise_if_closed()
                            if filled == 0:
                                raise EOFError(f"the file ends before offset {offset + count}")
                            raise _ring.os_error(filled)
                    else:
                        (drained,) = await self._ring.perform(
                            (
                                _splice_request(
                                    pipe.read_fd, _NO_OFFSET, self._fd, in_pipe, more=more
                                ),
                            ),
                            None,
                            cancellable=False,
                            owner=self._owner,
                        )
                    if drained > 0:
                        in_pipe -= drained
                        sent += drained
                    self._raise_if_closed()
                    if drained < 0 and drained not in (-errno.EAGAIN, -errno.ECANCELED):
                        self._raise_broken(drained)
                    if in_pipe:
                        # The socket's buffer is full (EAGAIN, a short splice,
                        # or a short fill broke the link: ECANCELED). The rest
                        # waits in the pipe; the wait is a ring request too, so
                        # closing the stream or the ring ends it.
                        await trio.lowlevel.checkpoint_if_cancelled()
                        await _wait_ready(self._ring, self._owner, self._fd, select.POLLOUT)
                        self._raise_if_closed()
            except BaseException:
                if (sent or in_pipe) and self._broken_reason is None:
                    self._broken_reason = (
                        f"send_file_range interrupted after {sent} of {count} bytes"
                    )
                raise
            finally:
                # A pipe still holding bytes would send them to its next borrower.
                pipes.release(pipe, reusable=in_pipe == 0)

    async def _splice_through(
        self, pipe: _SplicePipe, file_fd: int, offset: int, remaining: int
    ) -> tuple[int, int]:
        """Fill the empty pipe from the file and send what the socket takes.

        Returns the two results: bytes put in the pipe (or -errno), bytes of
        them sent (or -errno). The splices are linked, so one submission does
        both; a short fill breaks the link (the second comes back ECANCELED).
        Splices run in kernel worker threads and never wait long (the pipe
        starts empty, the socket is non-blocking), so they are left to end
        rather than cancelled.
        """
        size = min(remaining, pipe.capacity_bytes)
        filled, drained = await self._ring.perform(
            (
                _splice_request(file_fd, offset, pipe.write_fd, size, more=False, link=True),
                _splice_request(pipe.read_fd, _NO_OFFSET, self._fd, size, more=size < remaining),
            ),
            None,
            cancellable=False,
            owner=self._owner,
        )
        return filled, drained

    def _raise_broken(self, negative_errno: int) -> NoReturn:
        error = _stream_error(negative_errno)
        if isinstance(error, trio.BrokenResourceError):
            self._broken_reason = str(error)
        raise error

    # --- closing ------------------------------------------------------------------------

    async def aclose(self) -> None:
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        self._closed = True
        self._pending = b""
        # A receive waiting on Trio's epoll gets ClosedResourceError.
        trio.lowlevel.notify_closing(self.socket)
        if self._owner:
            self._ring.cancel_owned(self._owner, _STREAM_CLOSED_MESSAGE)
            with trio.CancelScope(shield=True):
                await self._owner.wait_drained()
        self.socket.close()
        self._receive_buffer = None
        await trio.lowlevel.checkpoint()

    def _raise_if_closed(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("the stream is closed")

    def _raise_if_cannot_send(self) -> None:
        self._raise_if_closed()
        if self._sent_eof:
            raise trio.ClosedResourceError("can't send data after sending EOF")
        if self._broken_reason is not None:
            raise trio.BrokenResourceError(f"the stream is broken: {self._broken_reason}")


class RingListener(trio.abc.Listener[RingSocketStream]):
    """A listening socket whose accepts go through ``ring``; yields :class:`RingSocketStream`.

    Takes ownership of ``sock``. An accept that completed although its caller
    was cancelled keeps the new connection for the next :meth:`accept` (or
    closes it in :meth:`aclose`): none is leaked or dropped.
    """

    def __init__(
        self, ring: _ring.Ring, sock: socket.socket, *, receive_on_ring: bool = False
    ) -> None:
        if sock.type != socket.SOCK_STREAM:
            raise ValueError("RingListener requires a SOCK_STREAM socket")
        if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            raise ValueError("RingListener requires a listening socket")
        if sock.gettimeout() != 0.0:
            sock.setblocking(False)
        self.socket = sock
        self._ring = ring
        self._receive_on_ring = receive_on_ring
        self._owner = _ring.OperationOwner()
        self._accept_conflict = _ConflictDetector("another task is accepting on this listener")
        self._pending_fd: int | None = None
        self._closed = False

    async def accept(self) -> RingSocketStream:
        with self._accept_conflict:
            while True:
                if self._closed:
                    raise trio.ClosedResourceError("the listener is closed")
                if self._pending_fd is not None:
                    await trio.lowlevel.checkpoint()
                    fd, self._pending_fd = self._pending_fd, None
                    return self._stream(fd)
                await trio.lowlevel.checkpoint_if_cancelled()
                (result,) = await self._ring.perform(
                    ((_ring.lib.trioring_prep_accept, (self.socket.fileno(), _ACCEPT_FLAGS)),),
                    None,
                    cancellable=True,
                    owner=self._owner,
                )
                if self._closed:
                    if result >= 0:
                        os.close(result)
                    raise trio.ClosedResourceError("the listener is closed")
                if result == -errno.EAGAIN:  # as for receives
                    await _wait_ready(self._ring, self._owner, self.socket.fileno(), select.POLLIN)
                    continue
                if result < 0:
                    if -result in _CLOSED_ERRNOS:
                        raise trio.ClosedResourceError("the listening socket was already closed")
                    if -result in _CONNECTION_ACCEPT_ERRNOS:
                        continue
                    raise _ring.os_error(result)
                try:
                    await trio.lowlevel.checkpoint_if_cancelled()
                except BaseException:
                    self._pending_fd = result
                    raise
                return self._stream(result)

    def statistics(self) -> dict[str, int]:
        return {
            "operations_in_flight": len(self._owner),
            "pending_connections": int(self._pending_fd is not None),
        }

    def _stream(self, fd: int) -> RingSocketStream:
        try:
            # Family and protocol given, so the socket module asks the kernel
            # nothing; SOCK_NONBLOCK tells it the fd already is (accept4 flags).
            sock = socket.socket(
                self.socket.family,
                socket.SOCK_STREAM | socket.SOCK_NONBLOCK,
                self.socket.proto,
                fileno=fd,
            )
        except BaseException:
            os.close(fd)
            raise
        return RingSocketStream(self._ring, sock, receive_on_ring=self._receive_on_ring)

    async def aclose(self) -> None:
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        self._closed = True
        if self._owner:
            self._ring.cancel_owned(self._owner, _LISTENER_CLOSED_MESSAGE)
            with trio.CancelScope(shield=True):
                await self._owner.wait_drained()
        if self._pending_fd is not None:
            os.close(self._pending_fd)
            self._pending_fd = None
        self.socket.close()
        await trio.lowlevel.checkpoint()


#: What the server accepts and serves: Trio's TCP objects or the ring's.
TcpStream: TypeAlias = trio.SocketStream | RingSocketStream
TcpListener: TypeAlias = trio.SocketListener | RingListener


# --- splice pipes ---------------------------------------------------------------------------


class _SplicePipe:
    __slots__ = ("capacity_bytes", "read_fd", "write_fd")

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe2(os.O_CLOEXEC)
        try:
            import fcntl  # noqa: PLC0415 (POSIX-only; this module runs only where io_uring does)

            with suppress(PermissionError):
                # EPERM: above pipe-max-size, or the user's pipe pages are used
                # up; the default 64 KiB still works, only more slowly.
                fcntl.fcntl(self.write_fd, fcntl.F_SETPIPE_SZ, SPLICE_PIPE_BYTES)
            self.capacity_bytes: int = fcntl.fcntl(self.write_fd, fcntl.F_GETPIPE_SZ)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        os.close(self.read_fd)
        os.close(self.write_fd)


class _SplicePipes:
    """Empty pipes lent to one ``send_file_range`` at a time, at most SPLICE_PIPES_MAX per ring.

    Closed with the ring; a pipe returned with bytes in it (an interrupted
    transfer) is closed instead of reused.
    """

    def __init__(self, ring: _ring.Ring) -> None:
        self._idle: list[_SplicePipe] = []
        self._slots = trio.Semaphore(SPLICE_PIPES_MAX)
        self._closed = False
        ring.call_at_close(self.close)

    async def acquire(self) -> _SplicePipe:
        await self._slots.acquire()
        try:
            return self._idle.pop() if self._idle else _SplicePipe()
        except BaseException:
            self._slots.release()
            raise

    def release(self, pipe: _SplicePipe, *, reusable: bool) -> None:
        if reusable and not self._closed:
            self._idle.append(pipe)
        else:
            pipe.close()
        self._slots.release()

    def close(self) -> None:
        self._closed = True
        for pipe in self._idle:
            pipe.close()
        self._idle.clear()

    def statistics(self) -> dict[str, int]:
        return {"idle": len(self._idle), "lent": SPLICE_PIPES_MAX - self._slots.value}


_pipes_by_ring: weakref.WeakKeyDictionary[_ring.Ring, _SplicePipes] = weakref.WeakKeyDictionary()


def _splice_pipes(ring: _ring.Ring) -> _SplicePipes:
    pipes = _pipes_by_ring.get(ring)
    if pipes is None:
        pipes = _pipes_by_ring[ring] = _SplicePipes(ring)
    return pipes


# --- serving file ranges, any stream --------------------------------------------------------


async def send_file_range(
    stream: trio.abc.HalfCloseableStream,
    file_fd: int,
    offset: int,
    count: int,
    *,
    cached_inline: bool = True,
) -> None:
    """Send bytes ``[offset, offset + count)`` of the file ``file_fd`` on ``stream``.

    Over a :class:`RingSocketStream` the bytes are spliced (file -> pipe ->
    socket) on the ring. Over a ``trio.SocketStream`` they go by
    ``os.sendfile``: in the loop for each 1 MiB piece the page cache holds
    whole (see ``_pagecache.py``), in a worker thread for the others, or for
    all of them with ``cached_inline=False`` (tests and benchmarks of that
    path). Over any other stream, by preads and ``send_all``. ``file_fd``'s
    position is not used or moved.

    Raises EOFError if the file ends before ``offset + count``. Like
    ``send_all``, an interrupted call (cancelled, or the file ended) may have
    sent part of the range: a RingSocketStream is then marked broken; close
    other streams yourself. Do not send on ``stream`` from another task
    meanwhile (only the RingSocketStream can detect it).
    """
    if offset < 0 or count < 0:
        raise ValueError("offset and count must not be negative")
    if isinstance(stream, RingSocketStream):
        await stream.send_file_range(file_fd, offset, count)
    elif isinstance(stream, trio.SocketStream):
        await _sendfile(stream, file_fd, offset, count, cached_inline=cached_inline)
    else:
        await _pread_and_send(stream, file_fd, offset, count)


async def _sendfile(
    stream: trio.SocketStream, file_fd: int, offset: int, count: int, *, cached_inline: bool
) -> None:
    if count == 0:
        await trio.lowlevel.checkpoint()
        return
    await trio.lowlevel.checkpoint_if_cancelled()
    sent = 0
    scheduled = False  # whether other tasks have had a chance to run meanwhile
    while sent < count:
        socket_fd = stream.socket.fileno()
        if socket_fd == -1:
            raise trio.ClosedResourceError("the socket was already closed")
        size = min(count - sent, FILE_CHUNK_BYTES_MAX)
        try:
            if cached_inline and _pagecache.holds(file_fd, offset + sent, size):
                result = os.sendfile(socket_fd, file_fd, offset + sent, size)
            else:
                # The socket is non-blocking: the thread returns as soon as
                # its buffer is full; it exists for file pages not in the
                # cache.
                scheduled = True
                result = await trio.to_thread.run_sync(
                    os.sendfile, socket_fd, file_fd, offset + sent, size
                )
        except BlockingIOError:
            scheduled = True
            await stream.socket.wait_writable()
            continue
        except OSError as error:
            if error.errno in _FILE_SIDE_ERRNOS:
                raise
            raise _stream_error(-(error.errno or errno.EIO)) from error
        if result == 0:
            raise EOFError(f"the file ends before offset {offset + count}")
        sent += result
    if not scheduled:  # sent in the loop without a wait: still a schedule point
        await trio.lowlevel.cancel_shielded_checkpoint()


async def _pread_and_send(
    stream: trio.abc.HalfCloseableStream, file_fd: int, offset: int, count: int
) -> None:
    if count == 0:
        await trio.lowlevel.checkpoint()
        return
    sent = 0
    while sent < count:
        size = min(count - sent, FILE_CHUNK_BYTES_MAX)
        data = await trio.to_thread.run_sync(os.pread, file_fd, size, offset + sent)
        if not data:
            raise EOFError(f"the file ends before offset {offset + count}")
        await stream.send_all(data)
        sent += len(data)


# --- choosing ---------------------------------------------------------------------------------


async def open_tcp_listeners_for(
    backend: FileBackend, port: int, *, host: str | None = None, backlog: int | None = None
) -> list[TcpListener]:
    """TCP listeners for the I/O backend in use (``backend.open_tcp_listeners``)."""
    return await backend.open_tcp_listeners(port, host=host, backlog=backlog)


def ring_listeners_from(
    ring: _ring.Ring, listeners: Sequence[trio.SocketListener], *, receive_on_ring: bool = False
) -> list[RingListener]:
    """Move the listening sockets of Trio ``listeners`` onto ``ring`` (they are consumed).

    ``receive_on_ring``: their streams wait for bytes with ring receives (see
    :class:`RingSocketStream`)."""
    ring_listeners = []
    for listener in listeners:
        trio_socket = listener.socket
        family, kind, protocol = trio_socket.family, trio_socket.type, trio_socket.proto
        sock = socket.socket(family, kind, protocol, fileno=trio_socket.detach())
        ring_listeners.append(RingListener(ring, sock, receive_on_ring=receive_on_ring))
    return ring_listeners

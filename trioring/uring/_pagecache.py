"""Whether the page cache holds a file range: cachestat(2), Linux 6.5 and later.

Used by ``send_file_range`` over Trio's sockets (the fallback backend): a
1 MiB piece the page cache holds whole goes to the socket by ``sendfile``
in the event loop, where it cannot wait (the socket is non-blocking, the
file's pages need no disk read); any other piece goes by ``sendfile`` in a
worker thread, which may wait for the disk. The thread hop cost more than
the send: zero-copy Fetch with the fallback backend took 0.52 s of broker
CPU per GB with cached pieces sent in the loop against 0.93 s all in
threads (one consumer; 0.61 against 0.70 with ten; medians of 5,
docs/uring.md).

The io_uring backend keeps splicing on the ring (file -> pipe -> socket)
even for cached pieces: with ten consumers, sendfile in its loop cost
1.2-1.4x the splices' CPU per GB in six A/B runs (by their medians, three
variants of it); with one consumer the runs went both ways.

cachestat is one system call that counts the cached pages of a range, about
4 us for 1 MiB here (ctypes included): far cheaper than the hop it saves.
Python has no wrapper, so it is called through ``syscall(2)`` with its
number, which is 451 on every architecture named in ``_SYSCALL_NUMBERS``;
elsewhere, on older kernels (ENOSYS) and in seccomp sandboxes that refuse it
(EPERM), :func:`holds` answers False for good and every range goes off the
loop as before.

The answer can go stale: the kernel may drop a page between the check and
the send, and the send then waits for one disk read in the loop. That needs
memory pressure within microseconds of the check, on a page that was just
counted; the loop blocks for one read at most, never indefinitely.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import platform
from typing import Any

__all__ = ["holds"]

#: cachestat's number in the generic system call table (Linux 6.5).
_SYSCALL_NUMBERS = {"x86_64": 451, "aarch64": 451, "riscv64": 451, "ppc64le": 451, "s390x": 451}
#: Errors after which cachestat is never tried again in this process.
_UNAVAILABLE_ERRNOS = frozenset({errno.ENOSYS, errno.EPERM, errno.EOPNOTSUPP})


class _Range(ctypes.Structure):
    _fields_ = [("offset", ctypes.c_uint64), ("length", ctypes.c_uint64)]


class _Stat(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_uint64)
        for name in ("cache", "dirty", "writeback", "evicted", "recently_evicted")
    ]


class _Cachestat:
    def __init__(self, libc: Any, number: int) -> None:
        self._syscall = libc.syscall
        self._number = number
        self.available = True
        self._page_bytes = os.sysconf("SC_PAGE_SIZE")

    def holds(self, fd: int, offset: int, count: int) -> bool:
        if not self.available or count <= 0 or offset < 0:
            return False
        stat = _Stat()
        result = self._syscall(
            self._number, fd, ctypes.byref(_Range(offset, count)), ctypes.byref(stat), 0
        )
        if result != 0:
            if ctypes.get_errno() in _UNAVAILABLE_ERRNOS:
                self.available = False
            return False  # EBADF and the like: the off-loop path reports them
        page = self._page_bytes
        pages = (offset + count - 1) // page - offset // page + 1
        return bool(stat.cache >= pages)


@functools.cache
def _cachestat() -> _Cachestat | None:
    number = _SYSCALL_NUMBERS.get(platform.machine())
    if number is None:
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    libc.syscall.restype = ctypes.c_long
    return _Cachestat(libc, number)


def holds(fd: int, offset: int, count: int) -> bool:
    """True if the page cache holds every byte of ``[offset, offset + count)`` of ``fd``
    (pages past the end of the file are not held); False if not, or unknown."""
    cachestat = _cachestat()
    return cachestat is not None and cachestat.holds(fd, offset, count)

"""glibc's heap: give freed memory back to the system, and keep some of it for reuse.

**Returning it** (``malloc_trim``). A large request arrives as many
receive-sized chunks, each its own allocation; glibc's ``free`` returns
memory to the system only from the top of the heap, so once 30 connections'
partial frames were freed the broker could keep 120 MiB of free but resident
heap for good (it depended on what else happened to sit above the chunks).
``malloc_trim(0)`` also releases the free pages in the middle of the heap.

**Keeping it** (``mallopt``, server processes only). The opposite problem:
a Fetch read on the copy path allocates a few MiB at a time (the read, the
whole batches cut from it, the answer) and frees them a moment later. With
glibc's defaults ``free`` gave that back from the heap's top as soon as
more than twice the largest freed block was free there, and the next
Fetch's allocations took it back, page by page: 112,000 page faults and 716
``brk`` calls while one consumer read 256 MiB through the io_uring backend's
copy path, whose read copies out of a ring buffer in the event loop's thread
(44 page faults for the fallback, whose reads allocate in worker threads).
Broker CPU per GB: 1.8-2.0 s with the defaults, 0.89 s without the churn.
Server processes therefore keep up to ``HEAP_TRIM_THRESHOLD_BYTES`` free at
the top and take allocations up to ``HEAP_MMAP_THRESHOLD_BYTES`` from the
heap; ``malloc_trim`` above still returns memory after large requests.

Elsewhere (musl, macOS) both do nothing: those allocators follow their own
rules.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import platform
from typing import Any

from trioring._constants import HEAP_MMAP_THRESHOLD_BYTES, HEAP_TRIM_THRESHOLD_BYTES

__all__ = ["keep_free_heap_for_reuse", "return_free_heap"]

#: mallopt parameters (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: How an operator sets glibc's malloc parameters: if any is set, theirs stand.
_GLIBC_MALLOC_VARIABLES = (
    "MALLOC_TRIM_THRESHOLD_",
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TOP_PAD_",
    "MALLOC_MMAP_MAX_",
)


@functools.cache
def _glibc() -> Any:
    """The process's C library if it is glibc, else None."""
    if platform.libc_ver()[0] != "glibc":
        return None
    library = ctypes.util.find_library("c")
    if library is None:
        return None
    try:
        libc = ctypes.CDLL(library)
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    except (OSError, AttributeError):
        return None
    return libc


def return_free_heap() -> bool:
    """Release free heap pages to the system; whether the allocator could.

    Blocking (it walks the heap, a few milliseconds for hundreds of MiB): run
    it in a thread. ctypes drops the GIL for the call.
    """
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


def keep_free_heap_for_reuse() -> bool:
    """For a server process: have glibc keep freed heap for the next allocations
    (see the module docstring); whether it now does.

    Process-wide, so only ``python -m trioring`` and its workers call it, at
    start-up: an application embedding the broker chooses its own allocator
    settings. Not applied when the environment sets glibc's own (for
    example ``MALLOC_TRIM_THRESHOLD_``, or ``glibc.malloc`` tunables).
    """
    libc = _glibc()
    if libc is None:
        return False
    if any(name in os.environ for name in _GLIBC_MALLOC_VARIABLES) or "glibc.malloc." in (
        os.environ.get("GLIBC_TUNABLES", "")
    ):
        return False
    # Setting either turns off glibc's own adjustment of both, so both are set.
    return bool(
        libc.mallopt(_M_MMAP_THRESHOLD, HEAP_MMAP_THRESHOLD_BYTES)
        and libc.mallopt(_M_TRIM_THRESHOLD, HEAP_TRIM_THRESHOLD_BYTES)
    )

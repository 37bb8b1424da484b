"""Give freed heap memory back to the operating system (glibc's ``malloc_trim``).

A large request arrives as many receive-sized chunks, each its own
allocation; glibc's ``free`` returns memory to the system only from the top
of the heap, so once 30 connections' partial frames were freed the broker
could keep 120 MiB of free but resident heap for good (it depended on what
else happened to sit above the chunks). ``malloc_trim(0)`` also releases the
free pages in the middle of the heap. Elsewhere (musl, macOS) this does
nothing: those allocators return memory by their own rules.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable

__all__ = ["return_free_heap"]


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    library = ctypes.util.find_library("c")
    if library is None:
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL(library).malloc_trim
    except (OSError, AttributeError):
        return None  # not glibc
    return trim


def return_free_heap() -> bool:
    """Release free heap pages to the system; whether the allocator could.

    Blocking (it walks the heap, a few milliseconds for hundreds of MiB): run
    it in a thread. ctypes drops the GIL for the call.
    """
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True

"""cffi (API mode) build of ``trioring.uring._ring_ffi``: a minimal io_uring binding.

It compiles against the kernel UAPI header ``<linux/io_uring.h>`` only (no
liburing): raw ``io_uring_setup`` / ``io_uring_enter`` / ``io_uring_register``
through syscall(2), the SQ and CQ rings mapped with mmap. The ring bookkeeping
(heads, tails, masks, memory barriers, partial submits, overflow flushing)
lives in C so the Python side makes one call per SQE and one call per batch of
completions.

The C lives in ``_ring.c`` and ``_ring.h`` beside this file; what Python
sees is CDEF below plus the header's CDEF section, in cffi's declaration
syntax. Built by setup.py
(``cffi_modules``) at install time; for development,
``python setup.py build_ext --inplace`` puts it beside this file.
"""

from __future__ import annotations

import os

# No stubs for cffi on the type-checking path (types-cffi is optional).
import cffi  # type: ignore[import-untyped,unused-ignore]

MODULE_NAME = "trioring.uring._ring_ffi"

# What Python sees besides the header's CDEF section (see header_cdef).
# ``struct trioring_ring`` is partial ("...;"): Python reads only the public
# fields, the mapped pointers stay private to C.
CDEF = """
struct trioring_ring {
    int ring_fd;
    unsigned sq_entries;
    unsigned cq_entries;
    unsigned features;
    unsigned setup_flags;
    uint64_t overflow_flushes;
    ...;
};

struct iovec {
    void *iov_base;
    size_t iov_len;
};

#define IORING_FSYNC_DATASYNC ...
#define IORING_FEAT_FAST_POLL ...
#define IORING_SETUP_COOP_TASKRUN ...
#define TRIORING_SQE_IO_LINK ...
"""

#: The C implementation, compiled into the extension module (see make_builder).
SOURCE_DIRECTORY = os.path.dirname(os.path.abspath(__file__))
SOURCE_FILE = "_ring.c"
HEADER_FILE = "_ring.h"


def header_cdef() -> str:
    """The declarations between the BEGIN CDEF and END CDEF marks of _ring.h.

    One source for the function prototypes: cffi checks them against the
    compiled C, and a prototype written twice would drift.
    """
    with open(os.path.join(SOURCE_DIRECTORY, HEADER_FILE), encoding="utf-8") as header:
        text = header.read()
    begin = text.index("BEGIN CDEF")
    begin = text.index("*/", begin) + 2
    end = text.index("/* END CDEF */", begin)
    return text[begin:end]


def make_builder() -> cffi.FFI:
    builder = cffi.FFI()
    builder.cdef(CDEF + header_cdef())
    # The generated module includes the .c file (one translation unit, so the
    # struct layout cffi checks is the one the functions use).
    builder.set_source(
        MODULE_NAME,
        f'#include "{SOURCE_FILE}"',
        include_dirs=[SOURCE_DIRECTORY],
        depends=[os.path.join(SOURCE_DIRECTORY, name) for name in (SOURCE_FILE, HEADER_FILE)],
        extra_compile_args=["-O2", "-std=gnu99"],
    )
    return builder


ffibuilder = make_builder()

"""cffi (API mode) build of ``trioring.uring._ring_ffi``: a minimal io_uring binding.

It compiles against the kernel UAPI header ``<linux/io_uring.h>`` only (no
liburing): raw ``io_uring_setup`` / ``io_uring_enter`` / ``io_uring_register``
through syscall(2), the SQ and CQ rings mapped with mmap. The ring bookkeeping
(heads, tails, masks, memory barriers, partial submits, overflow flushing)
lives in C so the Python side makes one call per SQE and one call per batch of
completions.

The C lives in ``_ring.c`` and ``_ring.h`` beside this file; CDEF below is
the part of it Python sees, in cffi's declaration syntax. Built by setup.py
(``cffi_modules``) at install time; for development,
``python setup.py build_ext --inplace`` puts it beside this file.
"""

from __future__ import annotations

import os

# No stubs for cffi on the type-checking path (types-cffi is optional).
import cffi  # type: ignore[import-untyped,unused-ignore]

MODULE_NAME = "trioring.uring._ring_ffi"

# What Python sees. ``struct trioring_ring`` is partial ("...;"): Python reads
# only the public fields, the mapped pointers stay private to C.
CDEF = """
struct trioring_ring {
    int ring_fd;
    int event_fd;
    unsigned sq_entries;
    unsigned cq_entries;
    unsigned features;
    unsigned setup_flags;
    uint64_t overflow_flushes;
    ...;
};

struct trioring_completion {
    uint64_t user_data;
    int32_t res;
    uint32_t flags;
};

struct iovec {
    void *iov_base;
    size_t iov_len;
};

#define IORING_FSYNC_DATASYNC ...
#define IORING_FEAT_FAST_POLL ...
#define TRIORING_SQE_IO_LINK ...

int trioring_ring_setup(struct trioring_ring **ring_out, unsigned entries, unsigned cq_entries);
void trioring_ring_close(struct trioring_ring *ring);

unsigned trioring_sq_space(struct trioring_ring *ring);
unsigned trioring_sq_unsubmitted(struct trioring_ring *ring);

int trioring_prep_read(struct trioring_ring *ring, int fd, void *buffer, uint32_t length,
                       uint64_t offset, uint64_t user_data);
int trioring_prep_write(struct trioring_ring *ring, int fd, const void *buffer, uint32_t length,
                        uint64_t offset, unsigned sqe_flags, uint64_t user_data);
int trioring_prep_writev(struct trioring_ring *ring, int fd, const struct iovec *iovecs,
                         unsigned count, uint64_t offset, unsigned sqe_flags, uint64_t user_data);
int trioring_prep_fsync(struct trioring_ring *ring, int fd, unsigned fsync_flags,
                        unsigned sqe_flags, uint64_t user_data);
int trioring_prep_cancel(struct trioring_ring *ring, uint64_t target_user_data,
                         uint64_t user_data);
int trioring_prep_poll(struct trioring_ring *ring, int fd, unsigned poll_mask,
                       uint64_t user_data);
int trioring_prep_accept(struct trioring_ring *ring, int fd, unsigned accept_flags,
                         uint64_t user_data);
int trioring_prep_recv(struct trioring_ring *ring, int fd, void *buffer, uint32_t length,
                       unsigned msg_flags, unsigned recvsend_flags, uint64_t user_data);
int trioring_prep_send(struct trioring_ring *ring, int fd, const void *buffer, uint32_t length,
                       unsigned msg_flags, unsigned recvsend_flags, uint64_t user_data);
int trioring_prep_splice(struct trioring_ring *ring, int fd_in, int64_t offset_in, int fd_out,
                         int64_t offset_out, uint32_t length, unsigned splice_flags,
                         unsigned sqe_flags, uint64_t user_data);

int trioring_submit(struct trioring_ring *ring);
unsigned trioring_sq_discard(struct trioring_ring *ring, uint64_t *user_data_out, unsigned max);
unsigned trioring_reap(struct trioring_ring *ring, struct trioring_completion *out,
                       unsigned max, int *error_out);
int trioring_eventfd_clear(struct trioring_ring *ring);
"""

#: The C implementation, compiled into the extension module (see make_builder).
SOURCE_DIRECTORY = os.path.dirname(os.path.abspath(__file__))
SOURCE_FILE = "_ring.c"


def make_builder() -> cffi.FFI:
    builder = cffi.FFI()
    builder.cdef(CDEF)
    # The generated module includes the .c file (one translation unit, so the
    # struct layout cffi checks is the one the functions use).
    builder.set_source(
        MODULE_NAME,
        f'#include "{SOURCE_FILE}"',
        include_dirs=[SOURCE_DIRECTORY],
        depends=[os.path.join(SOURCE_DIRECTORY, name) for name in ("_ring.c", "_ring.h")],
        extra_compile_args=["-O2", "-std=gnu99"],
    )
    return builder


ffibuilder = make_builder()

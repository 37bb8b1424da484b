# Types of the cffi-generated extension (built by _build_ring.py). cffi values
# (pointers, arrays, structs) are ``Any`` at this boundary; the functions are
# typed so callers get their arity and integer results checked.
from typing import Any

ffi: Any

class _Lib:
    IORING_FSYNC_DATASYNC: int
    IORING_FEAT_FAST_POLL: int
    IORING_SETUP_COOP_TASKRUN: int
    TRIORING_SQE_IO_LINK: int
    def trioring_ring_setup(self, ring_out: Any, entries: int, cq_entries: int, /) -> int: ...
    def trioring_ring_close(self, ring: Any, /) -> None: ...
    def trioring_sq_space(self, ring: Any, /) -> int: ...
    def trioring_sq_unsubmitted(self, ring: Any, /) -> int: ...
    def trioring_prep_read(
        self, ring: Any, fd: int, buffer: Any, length: int, offset: int, user_data: int, /
    ) -> int: ...
    def trioring_prep_write(
        self,
        ring: Any,
        fd: int,
        buffer: Any,
        length: int,
        offset: int,
        sqe_flags: int,
        user_data: int,
        /,
    ) -> int: ...
    def trioring_prep_writev(
        self,
        ring: Any,
        fd: int,
        iovecs: Any,
        count: int,
        offset: int,
        sqe_flags: int,
        user_data: int,
        /,
    ) -> int: ...
    def trioring_prep_fsync(
        self, ring: Any, fd: int, fsync_flags: int, sqe_flags: int, user_data: int, /
    ) -> int: ...
    def trioring_prep_cancel(self, ring: Any, target_user_data: int, user_data: int, /) -> int: ...
    def trioring_prep_poll(self, ring: Any, fd: int, poll_mask: int, user_data: int, /) -> int: ...
    def trioring_prep_accept(
        self, ring: Any, fd: int, accept_flags: int, user_data: int, /
    ) -> int: ...
    def trioring_prep_recv(
        self,
        ring: Any,
        fd: int,
        buffer: Any,
        length: int,
        msg_flags: int,
        recvsend_flags: int,
        user_data: int,
        /,
    ) -> int: ...
    def trioring_prep_send(
        self,
        ring: Any,
        fd: int,
        buffer: Any,
        length: int,
        msg_flags: int,
        recvsend_flags: int,
        user_data: int,
        /,
    ) -> int: ...
    def trioring_prep_splice(
        self,
        ring: Any,
        fd_in: int,
        offset_in: int,
        fd_out: int,
        offset_out: int,
        length: int,
        splice_flags: int,
        sqe_flags: int,
        user_data: int,
        /,
    ) -> int: ...
    def trioring_submit(self, ring: Any, /) -> int: ...
    def trioring_sq_discard(self, ring: Any, user_data_out: Any, max: int, /) -> int: ...
    def trioring_reap(self, ring: Any, out: Any, max: int, error_out: Any, /) -> int: ...

lib: _Lib

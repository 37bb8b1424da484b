"""Limits of the io_uring backend, named ``*_max`` and asserted against each other.

They live beside the backend (not in ``trioring._constants``) because nothing
outside ``trioring.uring`` depends on them.
"""

from __future__ import annotations

#: Submission queue entries. One scheduler batch rarely queues more; if it
#: does, the submitter submits a full queue and refills it (nothing waits on it).
RING_ENTRIES_DEFAULT = 256
#: Operations waiting for their completion at once, per ring; more wait for a slot.
OPERATIONS_IN_FLIGHT_MAX = 1024
#: Completion queue entries: every operation in flight plus one async-cancel
#: each fits, so with the defaults the completion queue cannot overflow (the
#: overflow path still exists for rings configured smaller, and is tested).
COMPLETION_ENTRIES_DEFAULT = 2 * OPERATIONS_IN_FLIGHT_MAX
#: Requests in one linked chain (a write and the fdatasync linked to it).
LINKED_REQUESTS_MAX = 2
#: Completions copied out of the ring per call into C.
REAP_BATCH_MAX = 256
#: iovecs in one writev (Linux's IOV_MAX).
IOVECS_MAX = 1024
#: Bytes the kernel moves in one read or write (Linux's MAX_RW_COUNT); bigger
#: requests come back short and are continued.
READ_WRITE_BYTES_MAX = 0x7FFFF000
#: Consecutive transient submit failures (EAGAIN, EBUSY) before the queued
#: requests fail with that error instead of being retried.
SUBMIT_FAILURES_MAX = 100
#: Pause before retrying a transient submit failure (the kernel is short of memory).
SUBMIT_RETRY_DELAY_S = 0.001
#: Ring size used to check that io_uring works at all.
PROBE_ENTRIES = 2

# --- sockets (_socket.py) ---------------------------------------------------------------

#: Bytes one ``receive_some`` asks the kernel for when the caller names no size
#: (Trio's default too).
RECEIVE_BYTES_DEFAULT = 64 * 1024
#: Largest receive buffer of a stream; a bigger ``max_bytes`` is clamped
#: (the server asks for 256 KiB).
RECEIVE_BYTES_MAX = 1024 * 1024
#: Smallest receive buffer of a stream, what an idle connection holds (its
#: receive waits in the kernel with this buffer).
RECEIVE_BUFFER_BYTES_MIN = 4 * 1024
#: Bytes a cancelled receive that completed anyway keeps for the next
#: ``receive_some``: at most one receive's worth.
PENDING_RECEIVE_BYTES_MAX = RECEIVE_BYTES_MAX
#: Bytes handed to the kernel in one send request; more is sent in rounds.
SEND_BYTES_MAX = READ_WRITE_BYTES_MAX
#: Capacity asked for the pipe a file range is spliced through. Below ~1 MiB
#: splice could not keep up with loopback (measured); Linux's default
#: ``/proc/sys/fs/pipe-max-size`` is exactly this, and a refusal keeps 64 KiB.
SPLICE_PIPE_BYTES = 1024 * 1024
#: Pipes per ring for splicing, each lent to one ``send_file_range`` at a time
#: (more wait). Bounded because the kernel charges pipe capacity to the user
#: (``pipe-user-pages-soft``: 64 MiB by default, then new pipes shrink).
SPLICE_PIPES_MAX = 8
#: Bytes per round when a file range is sent without splice: one ``os.sendfile``
#: call in a worker thread (Trio sockets) or one pread + ``send_all`` (other streams).
FILE_CHUNK_BYTES_MAX = 1024 * 1024

assert COMPLETION_ENTRIES_DEFAULT >= 2 * OPERATIONS_IN_FLIGHT_MAX, "a cancel per operation fits"
assert RING_ENTRIES_DEFAULT >= LINKED_REQUESTS_MAX, "a chain fits in an empty submission queue"
assert READ_WRITE_BYTES_MAX < 1 << 32, "lengths go to the kernel as u32"
assert RECEIVE_BYTES_DEFAULT <= RECEIVE_BYTES_MAX
assert RECEIVE_BUFFER_BYTES_MIN <= RECEIVE_BYTES_MAX
assert PENDING_RECEIVE_BYTES_MAX >= RECEIVE_BYTES_MAX, "a whole receive fits in the pending buffer"
assert SEND_BYTES_MAX < 1 << 32, "lengths go to the kernel as u32"
assert SPLICE_PIPE_BYTES < 1 << 31, "splice lengths go to the kernel as u32"
assert SPLICE_PIPES_MAX * SPLICE_PIPE_BYTES <= 16 * 1024 * 1024, "far below the user's pipe pages"

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

assert COMPLETION_ENTRIES_DEFAULT >= 2 * OPERATIONS_IN_FLIGHT_MAX, "a cancel per operation fits"
assert RING_ENTRIES_DEFAULT >= LINKED_REQUESTS_MAX, "a chain fits in an empty submission queue"
assert READ_WRITE_BYTES_MAX < 1 << 32, "lengths go to the kernel as u32"

"""One io_uring instance driven by the Trio run that uses it.

Lifecycle: a :class:`Ring` is set up inside a Trio run and starts one system
task there, which owns it until :meth:`Ring.aclose` or the end of the run,
and a Trio instrument (:class:`_LoopHooks`) that lets the run loop itself
submit and reap:

- **Submission batching.** ``perform`` writes its SQEs straight into the
  submission queue (or into a backlog when the queue is full). Just before
  the run loop waits for I/O (the instrument's ``before_io_wait``, once per
  scheduler batch) everything queued during the batch goes to the kernel
  with one ``io_uring_enter``. A submit the kernel refuses for a while
  (EAGAIN, EBUSY) is retried by the submitter task, with a delay, which a
  run loop hook cannot do.
- **Reaping.** The ring's fd is readable (poll) while completions wait in
  the completion queue (or in the kernel's overflow list). Right after the
  run loop's I/O wait (``after_io_wait``) the queue is drained, and the
  waiting tasks run in the batch that follows. ``before_io_wait`` reaps
  too, right after its submit, but only when the loop is not going to
  sleep (a zero timeout): otherwise the completions are left in the queue,
  so the ring fd stays readable and the I/O wait returns at once. The
  reaper task waits for the fd with ``trio.lowlevel.wait_readable``, so a
  sleeping loop wakes when a completion arrives, and reaps too. Since the
  queue is drained just before each I/O wait of a busy loop, the reaper
  wakes only when the loop had nothing else to run (it was about to sleep,
  or slept), not once per batch of a busy loop; and no eventfd has to be
  signalled and cleared.
- **Completions without interrupts**: the ring is set up with
  IORING_SETUP_COOP_TASKRUN (5.19): the kernel runs the work that posts a
  socket's completion at this thread's next system call instead of
  interrupting it (an inter-processor interrupt, costly in a VM); a thread
  sleeping in epoll_wait is still woken.
- **Why hooks, not tasks alone** (measured, docs/uring.md): with a submitter
  and a reaper task only, each operation cost two more scheduler batches
  (the submitter's, then the reaper's, each waking the next) and their
  Python. If the instrument fails (it raises, and Trio removes it), the
  tasks take over: ``perform`` wakes the submitter, which submits and reaps
  in the next batch, as before the hooks.
- **Cancellation** (Trio's pattern for completion-based I/O, as in
  ``trio._core._io_windows.wait_overlapped``): the abort function of a
  cancellable request queues an IORING_OP_ASYNC_CANCEL and returns
  ``Abort.FAILED``, so the task keeps waiting for the real completion; the
  request's buffers stay referenced from the in-flight table until it comes.
  A request that completed anyway reports its result; one the kernel
  cancelled raises ``Cancelled``. Writes and syncs are not cancellable: their
  abort function does nothing, and the cancellation reaches the caller at its
  next checkpoint, after the outcome is known.
- **Owned requests** (sockets): a request made for an :class:`OperationOwner`
  (one socket) can be cancelled by that owner's close
  (:meth:`Ring.cancel_owned`; its waiter gets ``ClosedResourceError``), and the
  owner can wait until none of its requests is in flight, so the descriptor is
  closed only once the kernel is done with it. Owned requests do not take one
  of the ``operations_in_flight_max`` slots: a socket keeps a receive in
  flight for as long as it is idle, which would starve file I/O of slots;
  they are bounded instead by their owners (one receive and one send per
  stream, one accept per listener) and the server's connection limit. More
  of them than completion entries may complete between two reaps; the
  kernel then keeps the rest aside (IORING_FEAT_NODROP) and reaping fetches
  them, as with any overflow.
- **Teardown** (``aclose``): refuse new requests, cancel every cancellable
  request in flight, keep submitting and reaping until every operation has
  ended (including further rounds of a write that came back short, which
  holds the ring open), then close the ring. When the run
  ends without ``aclose`` (its system tasks are cancelled), the same happens
  by hand in the system task, shielded, before the run returns.
"""

from __future__ import annotations

import errno
import logging
import os
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import trio

from trioring._constants import (
    LINKED_REQUESTS_MAX,
    REAP_BATCH_MAX,
    SUBMIT_FAILURES_MAX,
    SUBMIT_RETRY_DELAY_SECONDS,
)

try:
    from trioring.uring._ring_ffi import ffi, lib
except ImportError as error:  # not built (no compiler, not Linux) or cffi missing
    EXTENSION_IMPORT_ERROR: ImportError | None = error
else:
    EXTENSION_IMPORT_ERROR = None
    # Read buffers are filled by the kernel: zeroing them first is wasted work.
    _allocate_uninitialized = ffi.new_allocator(should_clear_after_alloc=False)

__all__ = [
    "EXTENSION_IMPORT_ERROR",
    "OperationOwner",
    "Request",
    "Ring",
    "allocate_uninitialized",
    "close_ring_handle",
    "ffi",
    "lib",
    "os_error",
    "setup_ring_handle",
]

logger = logging.getLogger("trioring.uring")

#: user_data of async-cancel requests: their completions wake nobody.
CANCEL_USER_DATA = 0
#: Submit errors that go away once completions are reaped or memory frees up.
_TRANSIENT_SUBMIT_ERRORS = frozenset({errno.EAGAIN, errno.EBUSY, errno.EINTR})
#: Results of a request the kernel stopped because we cancelled it
#: (EINTR: a blocking request interrupted in an io-wq worker).
_CANCELLED_RESULTS = frozenset({-errno.ECANCELED, -errno.EINTR})

Prepare = Callable[..., int]
"""A ``lib.trioring_prep_*`` function: (ring, *arguments, user_data) -> 0 or -EBUSY."""
Request = tuple[Prepare, tuple[Any, ...]]
"""One SQE to be: its prep function and the arguments between the ring and user_data."""


def os_error(negative_errno: int) -> OSError:
    code = -negative_errno
    return OSError(code, os.strerror(code))


def setup_ring_handle(entries: int, completion_entries: int) -> Any:
    """Set up a ring in C (io_uring_setup, mmap); OSError with the errno if refused."""
    if EXTENSION_IMPORT_ERROR is not None:
        message = f"the io_uring extension is not built: {EXTENSION_IMPORT_ERROR}"
        raise OSError(errno.ENOSYS, message)
    handle_out = ffi.new("struct trioring_ring **")
    result = lib.trioring_ring_setup(handle_out, entries, completion_entries)
    if result < 0:
        raise os_error(result)
    return handle_out[0]


def close_ring_handle(handle: Any) -> None:
    lib.trioring_ring_close(handle)


def allocate_uninitialized(size: int) -> Any:
    """A ``char[size]`` for the kernel to read into."""
    return _allocate_uninitialized("char[]", size)


class OperationOwner:
    """The requests one resource (a socket) has in flight on a ring.

    Closing the resource cancels them (:meth:`Ring.cancel_owned`) and waits
    with :meth:`wait_drained` before closing its descriptor: a request still
    queued must never be submitted against a closed, maybe reused, fd number.
    """

    __slots__ = ("_drained", "operations")

    def __init__(self) -> None:
        self.operations: set[_Operation] = set()
        self._drained: trio.Event | None = None

    def __len__(self) -> int:
        return len(self.operations)

    async def wait_drained(self) -> None:
        """Return once none of the owner's requests is in flight (not a cancel point)."""
        if not self.operations:
            return
        if self._drained is None:
            self._drained = trio.Event()
        await self._drained.wait()

    def _discard(self, operation: _Operation) -> None:
        self.operations.discard(operation)
        if not self.operations and self._drained is not None:
            self._drained.set()
            self._drained = None


class _Operation:
    """One ``perform`` call: one SQE, or a linked chain of them, and its waiter."""

    __slots__ = (
        "cancel_requested",
        "cancellable",
        "closed_message",
        "completions_pending",
        "first_user_data",
        "keepalive",
        "owner",
        "raise_cancel",
        "results",
        "task",
    )

    def __init__(
        self,
        task: trio.lowlevel.Task,
        first_user_data: int,
        request_count: int,
        keepalive: object,
        *,
        cancellable: bool,
        owner: OperationOwner | None,
    ) -> None:
        self.task = task
        self.first_user_data = first_user_data
        self.results = [0] * request_count
        self.completions_pending = request_count
        # The kernel reads or writes these buffers until the completion comes.
        self.keepalive = keepalive
        self.cancellable = cancellable
        self.cancel_requested = False
        self.raise_cancel: trio.lowlevel.RaiseCancelT | None = None
        #: Why the request was cancelled when it was not its waiter's cancellation.
        self.closed_message = "the io_uring ring closed during the request"
        self.owner = owner


class Ring:
    """See the module docstring. Create and use it inside one Trio run."""

    def __init__(
        self, *, entries: int, completion_entries: int, operations_in_flight_max: int
    ) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._handle = setup_ring_handle(entries, completion_entries)
        self.fd: int = self._handle.ring_fd
        self.submission_entries: int = self._handle.sq_entries
        self.completion_entries: int = self._handle.cq_entries
        self._features: int = self._handle.features
        self._setup_flags: int = self._handle.setup_flags
        self._operations_in_flight_max = operations_in_flight_max
        #: Every operation in flight (teardown waits for none).
        self._operation_count = 0
        #: Those without an owner, which take one of the operations_in_flight_max slots.
        self._slotted_operation_count = 0
        self._slot_released = trio.lowlevel.ParkingLot()
        #: user_data -> operation, for every SQE handed out and not completed.
        self._in_flight: dict[int, _Operation] = {}
        self._next_user_data = CANCEL_USER_DATA + LINKED_REQUESTS_MAX
        #: Chains waiting for room in the submission queue, in order.
        self._backlog: deque[tuple[Sequence[Request], int]] = deque()
        self._submit_requested = False
        #: The submitter task is retrying a refused submit: the hooks leave it to it.
        self._submit_retrying = False
        #: The -errno of a submit the hooks got refused, for the submitter.
        self._submit_refused = 0
        self._submitter_parked: trio.lowlevel.Task | None = None
        #: Installed in the run while the ring is open; None if it failed or is removed.
        self._hooks: _LoopHooks | None = None
        self._completions = ffi.new("struct trioring_completion[]", REAP_BATCH_MAX)
        self._reap_error = ffi.new("int *")
        #: Multi-round operations (a write continued after a short write) under way.
        self._holds = 0
        self._close_requested = trio.Event()
        self._idle = trio.Event()
        self._closing = False
        self._closed = trio.Event()
        self._submit_calls = 0
        self._completion_count = 0
        self._cancel_requests = 0
        self._lost_completions_logged = False
        self._close_callbacks: list[Callable[[], None]] = []

    # --- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        trio.lowlevel.spawn_system_task(self._main, name=f"trioring io_uring fd {self.fd}")
        self._hooks = _LoopHooks(self)
        trio.lowlevel.add_instrument(self._hooks)

    @property
    def closing(self) -> bool:
        """True from the start of teardown: new requests are refused."""
        return self._closing

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def in_current_run(self) -> bool:
        """Whether this ring belongs to the Trio run calling (a ring serves one run)."""
        return self._token is trio.lowlevel.current_trio_token()

    @property
    def supports_sockets(self) -> bool:
        """Whether socket requests wait by poll in the kernel (IORING_FEAT_FAST_POLL, 5.7).

        Without it an idle receive would hold a kernel worker thread.
        """
        return bool(self._features & lib.IORING_FEAT_FAST_POLL)

    def call_at_close(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the ring has closed (to release per-ring resources)."""
        self._raise_if_closing()
        self._close_callbacks.append(callback)

    async def aclose(self) -> None:
        """Cancel what can be cancelled, wait for every operation to end, close the ring."""
        if self._closed.is_set():
            await trio.lowlevel.checkpoint()
            return
        self._close_requested.set()
        await self._closed.wait()

    def hold(self) -> None:
        """Keep the ring open until :meth:`release`, for an operation of several rounds.

        Raises ClosedResourceError once teardown has begun. While held, the
        holder's ``perform(..., held=True)`` calls are accepted during
        teardown, so a write is finished rather than abandoned half-done.
        """
        self._raise_if_closing()
        self._holds += 1

    def release(self) -> None:
        assert self._holds > 0
        self._holds -= 1
        self._set_idle_if_drained()

    def statistics(self) -> dict[str, int]:
        return {
            "operations_in_flight": self._operation_count,
            "owned_operations_in_flight": self._operation_count - self._slotted_operation_count,
            "requests_in_flight": len(self._in_flight),
            "backlog": len(self._backlog),
            "submit_calls": self._submit_calls,
            "completions": self._completion_count,
            "cancel_requests": self._cancel_requests,
            "loop_hooks": int(self._hooks is not None),
            "cooperative_task_run": int(bool(self._setup_flags & lib.IORING_SETUP_COOP_TASKRUN)),
            "overflow_flushes": int(self._handle.overflow_flushes) if self._handle else 0,
            "submission_entries": self.submission_entries,
            "completion_entries": self.completion_entries,
        }

    async def _main(self) -> None:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._reap_forever)
                nursery.start_soon(self._submit_forever)
                await self._close_requested.wait()
                # aclose: the reaper and submitter keep serving until every
                # operation (and every round of a held one) has ended.
                self._begin_closing()
                await self._idle.wait()
                nursery.cancel_scope.cancel()
        finally:
            # Also reached when the run ends (its system tasks are cancelled;
            # only system tasks can still have requests in flight then).
            # Buffers in flight belong to the kernel until their completions
            # come back, so this runs shielded to the end.
            with trio.CancelScope(shield=True):
                await self._shut_down()

    def _begin_closing(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._slot_released.unpark_all()
        for operation in {id(op): op for op in self._in_flight.values()}.values():
            if operation.cancellable and not operation.cancel_requested:
                # raise_cancel stays None: the waiter learns the ring closed.
                operation.cancel_requested = True
                self._queue_cancels(operation)
                self._request_submit()
        self._set_idle_if_drained()

    def _set_idle_if_drained(self) -> None:
        if self._closing and self._operation_count == 0 and self._holds == 0:
            self._idle.set()

    async def _shut_down(self) -> None:
        """Drain whatever is still in flight by hand, then close the ring."""
        self._begin_closing()
        # The submitter and reaper are gone (the submitter maybe mid-retry):
        # from here this task alone submits and reaps. Without the hooks too,
        # since a hook reaping the last completion while this task waits for
        # the ring fd to turn readable would leave it waiting forever.
        self._remove_hooks()
        self._submit_retrying = False
        refused, self._submit_refused = self._submit_refused, 0
        await self._flush(refused)
        while self._in_flight:
            await trio.lowlevel.wait_readable(self.fd)
            self._reap()
            if self._backlog or lib.trioring_sq_unsubmitted(self._handle):
                await self._flush()
        trio.lowlevel.notify_closing(self.fd)
        close_ring_handle(self._handle)
        self._handle = ffi.NULL
        self._closed.set()
        callbacks, self._close_callbacks = self._close_callbacks, []
        for callback in callbacks:
            callback()

    # --- requests -------------------------------------------------------------------

    async def perform(
        self,
        requests: Sequence[Request],
        keepalive: object,
        *,
        cancellable: bool,
        held: bool = False,
        owner: OperationOwner | None = None,
    ) -> list[int]:
        """Run ``requests`` (linked if more than one) and return their results (``-errno``).

        The caller checkpoints for cancellation *before* calling; this waits
        (a schedule point) until every request completes. ``keepalive`` (the
        buffers and iovecs the kernel uses) is referenced until then.
        ``held``: the caller holds the ring (:meth:`hold`), so teardown
        accepts this request. ``owner``: the resource whose close may cancel
        the request (see :class:`OperationOwner`); it takes no slot.
        """
        assert 0 < len(requests) <= LINKED_REQUESTS_MAX
        assert not held or self._holds > 0
        self._raise_if_closing(held=held)
        if owner is None:
            while self._slotted_operation_count >= self._operations_in_flight_max:
                await self._slot_released.park()
                self._raise_if_closing(held=held)
            self._slotted_operation_count += 1
        first_user_data = self._next_user_data
        self._next_user_data += LINKED_REQUESTS_MAX
        operation = _Operation(
            trio.lowlevel.current_task(),
            first_user_data,
            len(requests),
            keepalive,
            cancellable=cancellable,
            owner=owner,
        )
        if owner is not None:
            owner.operations.add(operation)
        self._operation_count += 1
        for index in range(len(requests)):
            self._in_flight[first_user_data + index] = operation
        self._queue(requests, first_user_data)
        self._request_submit()

        def abort(raise_cancel: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
            if operation.cancellable and not operation.cancel_requested:
                operation.cancel_requested = True
                operation.raise_cancel = raise_cancel
                self._queue_cancels(operation)
                self._request_submit()
            return trio.lowlevel.Abort.FAILED

        await trio.lowlevel.wait_task_rescheduled(abort)
        results = operation.results
        if operation.cancel_requested and any(r in _CANCELLED_RESULTS for r in results):
            if operation.raise_cancel is not None:
                operation.raise_cancel()
            raise trio.ClosedResourceError(operation.closed_message)
        return results

    def cancel_owned(self, owner: OperationOwner, message: str) -> None:
        """Cancel ``owner``'s cancellable requests; their waiters get ClosedResourceError(message).

        Requests that are not cancellable run to completion. Await
        ``owner.wait_drained()`` before closing the resource.
        """
        for operation in owner.operations:
            if operation.cancellable and not operation.cancel_requested:
                operation.cancel_requested = True
                operation.closed_message = message
                self._queue_cancels(operation)
                self._request_submit()

    def _raise_if_closing(self, *, held: bool = False) -> None:
        # A holder gets in until the ring is really closed (which only the
        # end of the run does while it holds).
        if self._closed.is_set() or (self._closing and not held):
            raise trio.ClosedResourceError("the io_uring ring is closed")

    def _queue(self, requests: Sequence[Request], first_user_data: int) -> None:
        handle = self._handle
        if not self._backlog:
            if len(requests) == 1:
                prepare, arguments = requests[0]
                if prepare(handle, *arguments, first_user_data) == 0:
                    return
            elif lib.trioring_sq_space(handle) >= len(requests):
                # A chain's SQEs must be adjacent, so all or none go in now.
                for index, (prepare, arguments) in enumerate(requests):
                    result = prepare(handle, *arguments, first_user_data + index)
                    assert result == 0
                return
        self._backlog.append((requests, first_user_data))

    def _queue_cancels(self, operation: _Operation) -> None:
        # Queued behind the target if it is still in the backlog (order is
        # kept), so the kernel always sees the request before its cancel.
        self._cancel_requests += 1
        for index in range(len(operation.results)):
            user_data = operation.first_user_data + index
            if user_data in self._in_flight:
                self._queue(((lib.trioring_prep_cancel, (user_data,)),), CANCEL_USER_DATA)

    def _request_submit(self) -> None:
        if not self._submit_requested:
            self._submit_requested = True
            if self._hooks is None:
                self._wake_submitter()

    # --- run loop hooks -----------------------------------------------------------------

    def _before_io_wait(self, timeout: float) -> None:
        """Submit what this batch queued; reap if the loop will not sleep (see the
        module docstring)."""
        if self._submit_requested and not self._submit_retrying:
            self._submit_requested = False
            result = self._submit_now(reap=False)
            if result != 0:
                # Whatever it leads to (a retry after a delay, or failing the
                # queued requests, which wakes their tasks) happens in the
                # submitter task, which wakes the loop.
                self._submit_refused = result
                self._submit_retrying = True
                self._submit_requested = True
                self._wake_submitter_from_hook()
        # Reaping wakes tasks, so only if the loop will not sleep before they
        # run; drained now, the ring fd will not wake the reaper needlessly.
        if timeout == 0 and self._in_flight:
            self._reap()

    def _after_io_wait(self) -> None:
        """Wake the waiters of whatever completed during the I/O wait."""
        if self._in_flight:
            self._reap()

    def _hooks_failed(self) -> None:
        # Trio logs the exception and removes the instrument; the tasks go on
        # alone. The hook may have failed between taking the submit request
        # and submitting: the submitter looks (a spare submit costs nothing).
        self._hooks = None
        self._submit_requested = True
        self._wake_submitter_from_hook()

    def _wake_submitter_from_hook(self) -> None:
        # A task rescheduled from a hook would wait for the loop's I/O wait,
        # which may be long (its timeout is already decided): this wakes the
        # loop too (Trio's wake-up fd). Only on rare paths.
        self._token.run_sync_soon(self._wake_submitter)

    def _remove_hooks(self) -> None:
        hooks, self._hooks = self._hooks, None
        if hooks is not None:
            trio.lowlevel.remove_instrument(hooks)

    # --- submitter --------------------------------------------------------------------

    def _wake_submitter(self) -> None:
        task = self._submitter_parked
        if task is not None:
            self._submitter_parked = None
            trio.lowlevel.reschedule(task)

    async def _submit_forever(self) -> None:
        """Submits when the hooks hand a refused submit over, or when there are no hooks."""
        while True:
            # Before parking: work handed over before this task first ran (or
            # while it was busy) found no parked task to wake.
            while self._submit_requested and (self._hooks is None or self._submit_retrying):
                refused, self._submit_refused = self._submit_refused, 0
                self._submit_requested = False
                await self._flush(refused)
                # Done retrying: the hooks submit again from the next batch on.
                self._submit_retrying = False
            self._submitter_parked = trio.lowlevel.current_task()
            await trio.lowlevel.wait_task_rescheduled(self._abort_submitter_wait)

    def _abort_submitter_wait(self, _: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
        self._submitter_parked = None
        return trio.lowlevel.Abort.SUCCEEDED

    def _submit_now(self, *, reap: bool = True) -> int:
        """Submit everything queued, making room from the backlog, reaping after each
        submit if ``reap``; 0, or the submit's -errno (what is left stays queued)."""
        while True:
            self._move_backlog()
            result: int = lib.trioring_submit(self._handle)
            self._submit_calls += 1
            if reap:
                self._reap()
            if result != 0 or not self._backlog:
                return result

    async def _flush(self, refused: int = 0) -> None:
        """Submit everything queued (``_submit_now``), retrying refusals that pass,
        with a delay. ``refused``: the -errno the hooks' submit just got, if any."""
        failures = 0
        result = refused
        while True:
            if result == 0:
                result = self._submit_now()
                if result == 0:
                    return
            if not self._retry_submit(result, failures):
                return
            failures += 1
            await trio.sleep(SUBMIT_RETRY_DELAY_SECONDS)
            result = 0

    def _retry_submit(self, result: int, failures: int) -> bool:
        """Whether a submit refused with ``result`` (-errno) after ``failures`` earlier
        refusals is worth retrying; if not, fail every request still queued."""
        if -result in _TRANSIENT_SUBMIT_ERRORS and failures < SUBMIT_FAILURES_MAX:
            return True
        logger.error("io_uring submit failed: %s; failing queued requests", os_error(result))
        self._fail_unsubmitted(result)
        return False

    def _move_backlog(self) -> None:
        backlog = self._backlog
        handle = self._handle
        while backlog:
            requests, first_user_data = backlog[0]
            if lib.trioring_sq_space(handle) < len(requests):
                return
            backlog.popleft()
            for index, (prepare, arguments) in enumerate(requests):
                result = prepare(handle, *arguments, first_user_data + index)
                assert result == 0

    def _fail_unsubmitted(self, negative_errno: int) -> None:
        """Take back the SQEs the kernel refused and complete them with the error."""
        user_data_out = ffi.new("uint64_t[]", self.submission_entries)
        count = lib.trioring_sq_discard(self._handle, user_data_out, self.submission_entries)
        for index in range(count):
            self._complete(user_data_out[index], negative_errno)
        while self._backlog:
            requests, first_user_data = self._backlog.popleft()
            for index in range(len(requests)):
                self._complete(first_user_data + index, negative_errno)

    # --- reaper ------------------------------------------------------------------------

    async def _reap_forever(self) -> None:
        while True:
            await trio.lowlevel.wait_readable(self.fd)
            self._reap()

    def _reap(self) -> None:
        completions = self._completions
        while True:
            count = lib.trioring_reap(self._handle, completions, REAP_BATCH_MAX, self._reap_error)
            for index in range(count):
                completion = completions[index]
                self._complete(completion.user_data, completion.res)
            if self._reap_error[0] and not self._lost_completions_logged:
                # EBADR: the kernel could not allocate an overflow entry and
                # dropped a completion; its waiter will never wake.
                self._lost_completions_logged = True
                logger.error(
                    "io_uring lost completions (%s); requests may hang",
                    os_error(self._reap_error[0]),
                )
            if count < REAP_BATCH_MAX:
                return

    def _complete(self, user_data: int, result: int) -> None:
        self._completion_count += 1
        if user_data == CANCEL_USER_DATA:
            return
        operation = self._in_flight.pop(user_data)
        operation.results[user_data - operation.first_user_data] = result
        operation.completions_pending -= 1
        if operation.completions_pending == 0:
            operation.keepalive = None
            self._operation_count -= 1
            owner = operation.owner
            if owner is None:
                self._slotted_operation_count -= 1
                if self._slot_released:
                    self._slot_released.unpark()
            else:
                owner._discard(operation)
            trio.lowlevel.reschedule(operation.task)
            if self._closing:
                self._set_idle_if_drained()


class _LoopHooks(trio.abc.Instrument):
    """Submits and reaps for one ring from Trio's run loop (see the module docstring).

    Only the two I/O-wait hooks are defined, so Trio calls nothing else.
    """

    def __init__(self, ring: Ring) -> None:
        self._ring = ring

    def before_io_wait(self, timeout: float) -> None:
        try:
            self._ring._before_io_wait(timeout)
        except BaseException:
            self._ring._hooks_failed()
            raise

    def after_io_wait(self, timeout: float) -> None:
        try:
            self._ring._after_io_wait()
        except BaseException:
            self._ring._hooks_failed()
            raise

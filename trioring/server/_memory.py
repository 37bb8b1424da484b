"""RequestMemory: a byte budget for requests read and not yet answered, shared by connections.

Kafka's ``queued.max.request.bytes``. Without it, 30 connections each
sending most of a 99 MiB frame held 3 GiB. A connection reserves a frame's
whole size as soon as the frame's size prefix arrives and before reading its
body; when the budget cannot cover it, that connection stops reading (TCP
pushes back on the client) until answered requests give bytes back. Whole
reservations mean every reserved frame can complete, so connections never
deadlock on each other's partial frames.

Large frames (above ``small_request_bytes_max``) may use only the budget
less a reserve kept for small requests, and queue for it first come, first
served (so a large frame is not starved by other large ones). A few clients
holding huge partial frames then cannot stop everyone else: ApiVersions,
Metadata, fetches and ordinary produces keep being read and answered.

Small frames that arrive whole within one receive are already in memory:
they are charged without waiting (:meth:`charge`), which may overshoot the
budget by at most one receive per connection; the next read of every
connection then waits until usage is back under the budget
(:meth:`wait_for_room`).

Freed request buffers do not always leave the process by themselves (see
trioring/_heap.py): :attr:`heap_trim_due` is set once large frames have
given back HEAP_TRIM_RELEASED_BYTES, for the server to return free heap.
"""

from __future__ import annotations

from collections import deque

import attrs
import trio

from trioring._constants import (
    HEAP_TRIM_RELEASED_BYTES,
    SMALL_REQUEST_BYTES_MAX,
    SMALL_REQUESTS_RESERVE_DIVISOR,
)

__all__ = ["RequestMemory", "RequestMemoryStatistics"]


@attrs.frozen
class RequestMemoryStatistics:
    bytes_max: int
    bytes_used: int
    #: Of which large frames' reservations.
    large_bytes_used: int
    #: Connections waiting for a reservation (not reading meanwhile).
    waiting: int
    #: Times a connection had to wait for memory since start.
    waits_total: int


class _Waiter:
    __slots__ = ("bytes", "granted", "large")

    def __init__(self, size: int, large: bool) -> None:
        self.bytes = size
        self.large = large
        self.granted = trio.Event()


class RequestMemory:
    def __init__(
        self, bytes_max: int, *, small_request_bytes_max: int = SMALL_REQUEST_BYTES_MAX
    ) -> None:
        assert bytes_max > 0 and small_request_bytes_max > 0
        self.bytes_max = bytes_max
        self.small_request_bytes_max = small_request_bytes_max
        #: What large frames may hold together: the rest is kept for small requests.
        self.large_bytes_max = bytes_max - bytes_max // SMALL_REQUESTS_RESERVE_DIVISOR
        self.bytes_used = 0
        self.large_bytes_used = 0
        self._waiters: deque[_Waiter] = deque()
        self._room = trio.Event()
        self._waits_total = 0
        #: Large frames' bytes given back since the last heap trim.
        self._released_large_bytes = 0
        #: Set once that reaches HEAP_TRIM_RELEASED_BYTES; see heap_trimmed().
        self.heap_trim_due = trio.Event()

    def statistics(self) -> RequestMemoryStatistics:
        return RequestMemoryStatistics(
            self.bytes_max,
            self.bytes_used,
            self.large_bytes_used,
            len(self._waiters),
            self._waits_total,
        )

    def is_large(self, size: int) -> bool:
        """Whether a frame of ``size`` bytes is a large one (see the module docstring)."""
        return size > self.small_request_bytes_max

    def charge(self, size: int) -> None:
        """Count ``size`` bytes already in memory (no waiting; may overshoot the budget)."""
        assert size >= 0
        self._take(size, self.is_large(size))

    async def reserve(self, size: int) -> None:
        """Wait until ``size`` bytes fit, and take them (release with the same size).

        A frame larger than the large frames' share is taken once no other
        large frame is held, so a frame the frame-size limit allows is never
        refused forever.
        """
        assert size >= 0
        large = self.is_large(size)
        if not self._queued(large) and self._fits(size, large):
            self._take(size, large)
            await trio.lowlevel.checkpoint()
            return
        waiter = _Waiter(size, large)
        self._waiters.append(waiter)
        self._waits_total += 1
        try:
            await waiter.granted.wait()
        except BaseException:
            if waiter.granted.is_set():
                self.release(size)  # granted as we were cancelled: give it back
            else:
                self._waiters.remove(waiter)
                self._grant()  # the waiters behind us may fit now
            raise

    def _queued(self, large: bool) -> bool:
        """Whether a waiter of the same kind is already queued (first come, first served)."""
        return any(waiter.large == large for waiter in self._waiters)

    def _fits(self, size: int, large: bool) -> bool:
        if not large:
            return self.bytes_used + size <= self.bytes_max or self.bytes_used == 0
        if self.large_bytes_used == 0:
            return self.bytes_used + size <= self.bytes_max or self.bytes_used == 0
        return (
            self.large_bytes_used + size <= self.large_bytes_max
            and self.bytes_used + size <= self.bytes_max
        )

    def _take(self, size: int, large: bool) -> None:
        self.bytes_used += size
        if large:
            self.large_bytes_used += size

    def release(self, size: int, *, large: bool | None = None) -> None:
        """Give back one frame's bytes (its size says whether it was large), or with
        ``large`` the bytes of several frames of that kind together: several small
        frames may add up to more than a large one, and are not one."""
        assert 0 <= size <= self.bytes_used, (size, self.bytes_used)
        if large is None:
            large = self.is_large(size)
        self.bytes_used -= size
        if large:
            assert size <= self.large_bytes_used, (size, self.large_bytes_used)
            self.large_bytes_used -= size
            self._released_large_bytes += size
            if self._released_large_bytes >= HEAP_TRIM_RELEASED_BYTES:
                self.heap_trim_due.set()
        self._grant()

    def heap_trimmed(self) -> None:
        """The server is returning free heap now: count releases from zero again."""
        self._released_large_bytes = 0
        self.heap_trim_due = trio.Event()

    def _grant(self) -> None:
        # The first waiter of each kind, in order; a kind stops at its first
        # waiter that does not fit, so nobody overtakes within a kind.
        blocked = set()
        for waiter in list(self._waiters):
            if waiter.large in blocked:
                continue
            if self._fits(waiter.bytes, waiter.large):
                self._waiters.remove(waiter)
                self._take(waiter.bytes, waiter.large)
                waiter.granted.set()
            else:
                blocked.add(waiter.large)
        if self.bytes_used < self.bytes_max:
            self._room.set()

    async def wait_for_room(self) -> None:
        """Return once usage is under the budget (readers between frames call this)."""
        while self.bytes_used >= self.bytes_max:
            if self._room.is_set():
                self._room = trio.Event()
            await self._room.wait()
        await trio.lowlevel.checkpoint()

"""LogSlice: whole batches of a log named by file ranges, for sends that never copy them.

A zero-copy Fetch answers with the bytes of segment files sent straight to
the socket (splice over io_uring, ``os.sendfile`` otherwise). The read that
finds those bytes returns a LogSlice instead of ``bytes``: the segments it
names are held open (``Segment.acquire``) until :meth:`LogSlice.release`, so
retention or DeleteRecords deleting one meanwhile unlinks the file but
leaves its descriptor, and the bytes, to the send. Whoever receives a
LogSlice must release it, sent or not.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import trio

from trioring.uring import FileBackend

if TYPE_CHECKING:
    from trioring.storage.segment import LogSegment


class FileRange:
    """``count`` bytes of the file ``fd`` from byte ``position``."""

    __slots__ = ("count", "fd", "position")

    def __init__(self, fd: int, position: int, count: int) -> None:
        assert position >= 0 and count > 0, (position, count)
        self.fd = fd
        self.position = position
        self.count = count

    def __repr__(self) -> str:
        return f"FileRange(fd={self.fd}, position={self.position}, count={self.count})"


class LogSlice:
    """Whole batches as ranges of held-open segment files (see the module docstring).

    ``len()`` is the byte count, so a Fetch response encodes it as its
    records' length; ``next_offset`` is the offset after its last batch.
    """

    __slots__ = ("_backend", "_segments", "_size", "next_offset", "ranges", "released")

    def __init__(
        self,
        backend: FileBackend,
        segments: Sequence[LogSegment],
        ranges: Sequence[FileRange],
        next_offset: int,
    ) -> None:
        assert ranges, "a slice names at least one range"
        self._backend = backend
        #: Acquired by the read, each once; released by release().
        self._segments = tuple(segments)
        self.ranges = tuple(ranges)
        self._size = sum(r.count for r in ranges)
        self.next_offset = next_offset
        self.released = False

    def __len__(self) -> int:
        return self._size

    def __repr__(self) -> str:
        return f"LogSlice({self._size} bytes in {len(self.ranges)} ranges, next {self.next_offset})"

    async def read(self) -> bytes:
        """The bytes, copied (for a caller that cannot send file ranges)."""
        assert not self.released, "read after release"
        parts = [await self._backend.pread(r.fd, r.count, r.position) for r in self.ranges]
        data = b"".join(parts)
        if len(data) != self._size:
            raise EOFError(f"a segment file ended: read {len(data)} of {self._size} bytes")
        return data

    async def release(self) -> None:
        """Let the segments go (idempotent); one deleted meanwhile is closed now."""
        if self.released:
            return
        self.released = True
        # Shielded: a segment left acquired would keep a deleted file's space for good.
        with trio.CancelScope(shield=True):
            for segment in self._segments:
                await segment.release(self._backend)

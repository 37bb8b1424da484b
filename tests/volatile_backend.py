"""A file backend whose unsynced writes live only in this process's memory.

Writes become real only at fdatasync, so killing the process loses exactly
what a power cut would lose of file data: everything written but not synced.
(Directory operations - create, rename, unlink - still happen at once; this
models lost file data, not lost directory entries.)
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import trio

from trioring.uring import Buffer, FallbackBackend


class VolatileBackend(FallbackBackend):
    def __init__(self) -> None:
        super().__init__()
        self._dirty: dict[int, list[tuple[int, bytes]]] = {}
        self._sizes: dict[int, int] = {}

    async def open(self, path: str, flags: int, mode: int = 0o644) -> int:
        fd = await super().open(path, flags, mode)
        self._dirty[fd] = []
        self._sizes[fd] = os.fstat(fd).st_size
        return fd

    async def close(self, fd: int) -> None:
        # Closing does not sync: the data stays "in the page cache" (lost at kill).
        self._dirty.pop(fd, None)
        self._sizes.pop(fd, None)
        await super().close(fd)

    async def pwritev(self, fd: int, buffers: Sequence[Buffer], offset: int) -> int:
        await trio.lowlevel.cancel_shielded_checkpoint()
        return self.write_now(fd, buffers, offset)

    def write_now(self, fd: int, buffers: Sequence[Buffer], offset: int) -> int:
        data = b"".join(bytes(b) for b in buffers)
        self._dirty[fd].append((offset, data))
        self._sizes[fd] = max(self._sizes[fd], offset + len(data))
        return len(data)

    async def pread(self, fd: int, size: int, offset: int) -> bytes:
        real = bytearray(await super().pread(fd, size, offset))
        end = min(offset + size, self._sizes[fd])
        if len(real) < end - offset:
            real.extend(bytes(end - offset - len(real)))
        for write_offset, data in self._dirty[fd]:
            start = max(write_offset, offset)
            stop = min(write_offset + len(data), end)
            if start < stop:
                real[start - offset : stop - offset] = data[
                    start - write_offset : stop - write_offset
                ]
        return bytes(real[: max(0, end - offset)])

    async def file_size(self, fd: int) -> int:
        return self._sizes[fd]

    async def ftruncate(self, fd: int, size: int) -> None:
        await super().ftruncate(fd, size)
        self._sizes[fd] = size
        kept = []
        for write_offset, data in self._dirty[fd]:
            if write_offset < size:
                kept.append((write_offset, data[: size - write_offset]))
        self._dirty[fd] = kept

    async def fdatasync(self, fd: int) -> None:
        pending, self._dirty[fd] = self._dirty[fd], []
        for write_offset, data in pending:
            await FallbackBackend.pwritev(self, fd, [data], write_offset)
        await super().fdatasync(fd)

"""FaultyBackend: a file backend with a simulated page cache, power loss and disk errors.

The embedded target runs the broker over this backend. The real files are
the *disk*; every write goes to an in-memory *page cache* first and reaches
the disk only when fdatasync succeeds. So the harness can:

- cut the power (:meth:`FaultyBackend.power_off`): what was never synced is
  lost, except for a random part of it that the kernel had written back
  already, kept whole or torn at any byte (writeback order is not write
  order, so either a prefix of the writes or any subset of them survives);
- crash the process without losing the page cache (:meth:`crash`): every
  write made so far survives, as after a SIGKILL;
- fail operations: ENOSPC on writes (some bytes may land first, as a short
  write does), EIO on writes, reads or syncs, and slow I/O.

A failed fdatasync keeps the PostgreSQL "fsyncgate" behaviour of Linux: the
dirty pages it could not write are marked clean. Reads still see them, but
they never reach the disk and are gone after a power loss. A broker that
retries the sync and trusts the page cache is caught by the next power loss.

Simulation shortcuts, all safe for what is checked: syncs and reads run in
the loop with no thread and no real fdatasync (the disk's contents are what
counts, not the real device's durability); directory operations (create,
rename, unlink, truncate) reach the disk at once, so lost directory entries
are not modelled.
"""

from __future__ import annotations

import errno
import os
import random
from collections.abc import Sequence

import attrs
import trio

from trioring.uring import Buffer, FallbackBackend

#: The operations a fault can hit.
OPERATIONS = ("write", "read", "sync")


@attrs.define
class Fault:
    """One injected fault: ``error`` (an errno, or 0 for slow) on the next ``count`` calls."""

    kind: str
    operation: str
    error: int
    count: int
    #: For slow I/O: the delay added to each call.
    delay_s: float = 0.0
    #: Calls it failed (or slowed) so far.
    hits: int = 0


@attrs.define
class _Cached:
    """Page-cache pages of one write: ``lost`` once a failed sync dropped them."""

    offset: int
    data: bytes
    sequence: int
    lost: bool = False


class _File:
    """The page cache of one file (by inode: it survives close and reopen)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.cached: list[_Cached] = []

    def write(self, offset: int, data: bytes, sequence: int) -> None:
        end = offset + len(data)
        # Newest data wins: keep the entries disjoint, so their order never matters.
        kept: list[_Cached] = []
        for entry in self.cached:
            entry_end = entry.offset + len(entry.data)
            if entry_end <= offset or entry.offset >= end:
                kept.append(entry)
                continue
            if entry.offset < offset:
                kept.append(
                    _Cached(
                        entry.offset,
                        entry.data[: offset - entry.offset],
                        entry.sequence,
                        entry.lost,
                    )
                )
            if entry_end > end:
                kept.append(
                    _Cached(end, entry.data[end - entry.offset :], entry.sequence, entry.lost)
                )
        kept.append(_Cached(offset, data, sequence))
        self.cached = kept
        self.size = max(self.size, end)

    def truncate(self, size: int) -> None:
        kept = []
        for entry in self.cached:
            if entry.offset < size:
                kept.append(
                    _Cached(
                        entry.offset, entry.data[: size - entry.offset], entry.sequence, entry.lost
                    )
                )
        self.cached = kept
        self.size = size

    def overlay(self, disk: bytes, offset: int, size: int) -> bytes:
        end = min(offset + size, self.size)
        if end <= offset:
            return b""
        view = bytearray(disk[: end - offset])
        view.extend(bytes(end - offset - len(view)))
        for entry in self.cached:
            start = max(entry.offset, offset)
            stop = min(entry.offset + len(entry.data), end)
            if start < stop:
                view[start - offset : stop - offset] = entry.data[
                    start - entry.offset : stop - entry.offset
                ]
        return bytes(view)


class PoweredOffError(OSError):
    """Every call after the power is cut fails so: the broker on it is dead."""

    def __init__(self) -> None:
        super().__init__(errno.EIO, "the simulated power is off")


class FaultyBackend(FallbackBackend):
    """The fallback backend over a simulated page cache, with faults (see the module)."""

    def __init__(self) -> None:
        super().__init__()
        self._files: dict[tuple[int, int], _File] = {}
        self._file_of_fd: dict[int, tuple[int, int]] = {}
        self._path_of_fd: dict[int, str] = {}
        #: Where the pages of files no descriptor holds open go at write-back.
        self._closed_paths: dict[tuple[int, int], str] = {}
        self._sequence = 0
        self._powered = True
        self.faults: list[Fault] = []

    # --- fault control --------------------------------------------------------------------

    def inject(self, fault: Fault) -> None:
        assert fault.operation in OPERATIONS, fault.operation
        self.faults.append(fault)

    def clear(self) -> None:
        self.faults.clear()

    def unsynced_bytes(self) -> int:
        return sum(
            len(entry.data)
            for file in self._files.values()
            for entry in file.cached
            if not entry.lost
        )

    def power_off(self, rng: random.Random) -> dict[str, int]:
        """Cut the power: write back a random part of the unsynced data, drop the rest.

        Returns what happened, for the summary: writes kept, torn, dropped.
        """
        self._powered = False
        outcome = {"kept": 0, "torn": 0, "dropped": 0}
        prefix_order = rng.random() < 0.5
        for (device, inode), file in self._files.items():
            path = self._path_of_inode(device, inode)
            entries = sorted((e for e in file.cached if not e.lost), key=lambda e: e.sequence)
            outcome["dropped"] += sum(1 for e in file.cached if e.lost)
            if path is None or not entries:
                outcome["dropped"] += len(entries)
                continue
            if prefix_order:
                # Written back in write order up to a point, the last one torn.
                cut = rng.randrange(len(entries) + 1)
                plan = [(e, len(e.data)) for e in entries[:cut]]
                if cut < len(entries):
                    plan.append((entries[cut], rng.randrange(len(entries[cut].data) + 1)))
            else:
                # Any subset, each kept whole, torn or dropped.
                plan = []
                for entry in entries:
                    choice = rng.random()
                    if choice < 0.4:
                        plan.append((entry, len(entry.data)))
                    elif choice < 0.6:
                        plan.append((entry, rng.randrange(len(entry.data) + 1)))
            outcome["dropped"] += len(entries) - len(plan)
            self._write_back((device, inode), path, plan, outcome)
        self._files.clear()
        return outcome

    def crash(self) -> None:
        """The process dies, the machine does not: the page cache reaches the disk.

        Lost pages (a failed sync dropped them) stay lost.
        """
        if not self._powered and not self._files:
            return
        self._powered = False
        for (device, inode), file in self._files.items():
            path = self._path_of_inode(device, inode)
            entries = sorted((e for e in file.cached if not e.lost), key=lambda e: e.sequence)
            if path is not None and entries:
                self._write_back((device, inode), path, [(e, len(e.data)) for e in entries], None)
        self._files.clear()

    def _write_back(
        self,
        key: tuple[int, int],
        path: str,
        plan: Sequence[tuple[_Cached, int]],
        outcome: dict[str, int] | None,
    ) -> None:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        except OSError:
            return
        try:
            status = os.fstat(fd)
            if (status.st_dev, status.st_ino) != key:  # that file is gone
                return
            for entry, length in plan:
                os.pwrite(fd, entry.data[:length], entry.offset)
                if outcome is not None:
                    outcome["kept" if length == len(entry.data) else "torn"] += 1
        finally:
            os.close(fd)

    def _stale(self, key: tuple[int, int]) -> bool:
        path = self._closed_paths.get(key)
        if path is None:
            return True
        try:
            status = os.stat(path)
        except OSError:
            return True
        return (status.st_dev, status.st_ino) != key

    def _path_of_inode(self, device: int, inode: int) -> str | None:
        for fd, key in self._file_of_fd.items():
            if key == (device, inode):
                return self._path_of_fd[fd]
        return self._closed_paths.get((device, inode))

    # --- the faults themselves --------------------------------------------------------------

    async def _enter(self, operation: str) -> int:
        """Apply the faults due for ``operation``: returns an errno to fail with, or 0."""
        if not self._powered:
            raise PoweredOffError
        for fault in self.faults:
            if fault.operation != operation or fault.count <= 0:
                continue
            fault.count -= 1
            fault.hits += 1
            if fault.error == 0:
                await trio.sleep(fault.delay_s)
                continue
            return fault.error
        return 0

    def _enter_now(self, operation: str) -> int:
        if not self._powered:
            raise PoweredOffError
        for fault in self.faults:
            if fault.operation == operation and fault.count > 0 and fault.error != 0:
                fault.count -= 1
                fault.hits += 1
                return fault.error
        return 0

    # --- FileBackend ----------------------------------------------------------------------

    @property
    def name(self) -> str:
        return "faulty"

    async def open(self, path: str, flags: int, mode: int = 0o644) -> int:
        if not self._powered:
            raise PoweredOffError
        await trio.lowlevel.checkpoint()
        created = bool(flags & os.O_CREAT) and not os.path.exists(path)  # noqa: ASYNC240 - simulated disk
        fd = os.open(path, flags | os.O_CLOEXEC, mode)
        status = os.fstat(fd)
        key = (status.st_dev, status.st_ino)
        # A new file may get the inode number of one removed behind this
        # backend's back (a deleted topic's directory): its old pages are not
        # this file's pages.
        if key in self._files and (
            created or (key not in self._file_of_fd.values() and self._stale(key))
        ):
            del self._files[key]
        if key not in self._files:
            self._files[key] = _File(status.st_size)
        if flags & os.O_TRUNC:
            self._files[key].truncate(0)
        self._file_of_fd[fd] = key
        self._path_of_fd[fd] = path
        return fd

    async def close(self, fd: int) -> None:
        await trio.lowlevel.checkpoint()
        key = self._file_of_fd.pop(fd)
        path = self._path_of_fd.pop(fd)
        # The page cache outlives the descriptor: remember where its pages go.
        self._closed_paths[key] = path
        os.close(fd)

    async def pwritev(self, fd: int, buffers: Sequence[Buffer], offset: int) -> int:
        await trio.lowlevel.cancel_shielded_checkpoint()
        error = await self._enter("write") if self.faults else self._enter_now("write")
        return self._write(fd, buffers, offset, error)

    def write_now(self, fd: int, buffers: Sequence[Buffer], offset: int) -> int:
        return self._write(fd, buffers, offset, self._enter_now("write"))

    def _write(self, fd: int, buffers: Sequence[Buffer], offset: int, error: int) -> int:
        data = b"".join(bytes(buffer) for buffer in buffers)
        if error:
            if error == errno.ENOSPC and data:
                # A short write lands some bytes before the disk is full.
                self._sequence += 1
                part = data[: (offset + len(data)) % max(1, len(data))]
                if part:
                    self._files[self._file_of_fd[fd]].write(offset, part, self._sequence)
            raise OSError(error, os.strerror(error))
        self._sequence += 1
        self._files[self._file_of_fd[fd]].write(offset, data, self._sequence)
        return len(data)

    async def pread(self, fd: int, size: int, offset: int) -> bytes:
        error = await self._enter("read")
        await trio.lowlevel.checkpoint()
        if error:
            raise OSError(error, os.strerror(error))
        file = self._files[self._file_of_fd[fd]]
        return file.overlay(os.pread(fd, size, offset), offset, size)

    async def fdatasync(self, fd: int) -> None:
        error = await self._enter("sync")
        await trio.lowlevel.checkpoint()
        file = self._files[self._file_of_fd[fd]]
        if error:
            # fsyncgate: the pages that failed are clean now, and never written.
            for entry in file.cached:
                entry.lost = True
            raise OSError(error, os.strerror(error))
        kept = []
        for entry in file.cached:
            if entry.lost:
                kept.append(entry)
            else:
                os.pwrite(fd, entry.data, entry.offset)
        file.cached = kept

    async def fsync_directory(self, path: str) -> None:
        error = await self._enter("sync")
        await trio.lowlevel.checkpoint()
        if error:
            raise OSError(error, os.strerror(error))

    async def ftruncate(self, fd: int, size: int) -> None:
        if not self._powered:
            raise PoweredOffError
        await trio.lowlevel.checkpoint()
        os.ftruncate(fd, size)
        self._files[self._file_of_fd[fd]].truncate(size)

    async def file_size(self, fd: int) -> int:
        if not self._powered:
            raise PoweredOffError
        await trio.lowlevel.checkpoint()
        return self._files[self._file_of_fd[fd]].size

    async def rename(self, source: str, destination: str) -> None:
        if not self._powered:
            raise PoweredOffError
        await trio.lowlevel.checkpoint()
        self._forget_path(destination)
        os.replace(source, destination)
        # Files, or a directory's files (a deleted topic is set aside so).
        for key, path in list(self._closed_paths.items()):
            if path == source or path.startswith(source + os.sep):
                self._closed_paths[key] = destination + path[len(source) :]
        for fd, path in list(self._path_of_fd.items()):
            if path == source or path.startswith(source + os.sep):
                self._path_of_fd[fd] = destination + path[len(source) :]

    async def unlink(self, path: str) -> None:
        if not self._powered:
            raise PoweredOffError
        await trio.lowlevel.checkpoint()
        self._forget_path(path)
        os.unlink(path)

    def _forget_path(self, path: str) -> None:
        try:
            status = os.stat(path)
        except OSError:
            return
        key = (status.st_dev, status.st_ino)
        if status.st_nlink <= 1 and key not in self._file_of_fd.values():
            self._files.pop(key, None)
            self._closed_paths.pop(key, None)

    # Directory work runs in the loop too (no thread hop): a simulation needs no
    # real latency, and a campaign makes and removes thousands of directories.

    async def make_directory(self, path: str) -> bool:
        if not self._powered:
            raise PoweredOffError
        await trio.lowlevel.checkpoint()
        try:
            os.makedirs(path)
        except FileExistsError:
            return False
        return True

    async def list_directory(self, path: str) -> list[str]:
        if not self._powered:
            raise PoweredOffError
        await trio.lowlevel.checkpoint()
        return os.listdir(path)

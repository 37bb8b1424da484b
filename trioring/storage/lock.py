"""DataDirectoryLock: one process owns a data directory at a time.

Two brokers on one directory destroy each other's data without a word: each
rewrites the topic list from its own memory, and start-up removes partition
directories it does not know (one run lost a topic and a committed-offsets
log that way). Kafka guards ``log.dirs`` with a ``.lock`` file; so do we, with
an advisory ``flock`` taken before anything in the directory is read or
written. The lock is released by the kernel when the process dies, so a
crash never leaves a stale lock behind. The holder writes its pid into the
file, so the refusal can name it.
"""

from __future__ import annotations

import errno
import fcntl
import os

import trio

from trioring.errors import DataDirectoryInUseError, StorageError

__all__ = ["LOCK_FILE", "DataDirectoryLock"]

LOCK_FILE = ".lock"
#: Bytes of the lock file read to find the holder's pid.
_PID_BYTES_MAX = 64


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, _PID_BYTES_MAX, 0).decode("ascii", "replace").strip()
    except OSError:
        return ""
    return text if text.isdigit() else ""


def _lock(data_dir: str) -> int:
    """Create the directory if needed, then open and lock its lock file (blocking calls)."""
    if os.path.exists(data_dir) and not os.path.isdir(data_dir):
        raise StorageError(f"data directory {data_dir} is not a directory; choose another")
    try:
        os.makedirs(data_dir, exist_ok=True)
    except OSError as error:
        raise StorageError(
            f"cannot create the data directory {data_dir}: {error.strerror}; "
            "choose a directory you can write (--data-dir)"
        ) from None
    path = os.path.join(data_dir, LOCK_FILE)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as error:
        raise StorageError(
            f"cannot open the lock file {path}: {error.strerror}; "
            "the data directory must be writable by this user"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        holder = _holder(fd)
        os.close(fd)
        if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            by = f"process {holder}" if holder else "another process"
            raise DataDirectoryInUseError(
                f"data directory {data_dir} is in use by {by} (lock file {path}); "
                "stop that broker first, or give this one its own --data-dir"
            ) from None
        raise StorageError(f"cannot lock {path}: {error.strerror}") from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError:
        pass  # the pid is a courtesy for the error message; the lock is what counts
    return fd


class DataDirectoryLock:
    """Held from :meth:`acquire` until :meth:`release` (or the process ends)."""

    def __init__(self, data_dir: str, fd: int) -> None:
        self.data_dir = data_dir
        self._fd: int | None = fd

    @classmethod
    async def acquire(cls, data_dir: str) -> DataDirectoryLock:
        """Lock ``data_dir`` (creating it), or raise DataDirectoryInUseError at once."""
        fd = await trio.to_thread.run_sync(_lock, data_dir)
        return cls(data_dir, fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def fileno(self) -> int:
        """The lock file's descriptor: a child process that inherits it shares the lock,
        so a new broker cannot take the directory while any worker still runs."""
        assert self._fd is not None, "the lock is released"
        return self._fd

    def release(self) -> None:
        """Unlock. The file stays: removing it would race with a new holder opening it."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the last descriptor releases the flock

"""Small durable files: replaced atomically, read whole."""

from __future__ import annotations

import contextlib
import os

import trio

from trioring.errors import StorageError
from trioring.uring import FileBackend

#: Suffix of the temporary file a replacement writes before its rename.
TEMPORARY_SUFFIX = ".tmp"


async def replace_file(
    backend: FileBackend, path: str, payload: bytes, *, sync_directory: bool = True
) -> None:
    """Replace ``path`` with ``payload`` so a crash leaves the old or the new file, never a mix.

    Write a temporary file, fdatasync it, rename it over ``path``, and (by
    default) fsync the directory so the rename itself survives a power cut.
    A failure (a full disk, say) raises StorageError and leaves no temporary
    file behind; ``path`` keeps its old content.
    """
    temporary = path + TEMPORARY_SUFFIX
    try:
        fd = await backend.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            await backend.pwritev(fd, [payload], 0)
            await backend.fdatasync(fd)
        finally:
            await backend.close(fd)
        await backend.rename(temporary, path)
    except OSError as error:
        with trio.CancelScope(shield=True), contextlib.suppress(OSError):
            await backend.unlink(temporary)
        raise StorageError(f"writing {path} failed: {error.strerror or error}") from error
    if sync_directory:
        try:
            await backend.fsync_directory(os.path.dirname(path) or ".")
        except OSError as error:
            raise StorageError(
                f"syncing the directory of {path} failed: {error.strerror or error}"
            ) from error


async def read_file(backend: FileBackend, path: str) -> bytes | None:
    """The whole file, or None if it does not exist."""
    try:
        fd = await backend.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        return await backend.pread(fd, await backend.file_size(fd), 0)
    finally:
        await backend.close(fd)

"""Small durable files: replaced atomically, read whole."""

from __future__ import annotations

import os

from trioring.uring import FileBackend


async def replace_file(
    backend: FileBackend, path: str, payload: bytes, *, sync_directory: bool = True
) -> None:
    """Replace ``path`` with ``payload`` so a crash leaves the old or the new file, never a mix.

    Write a temporary file, fdatasync it, rename it over ``path``, and (by
    default) fsync the directory so the rename itself survives a power cut.
    """
    temporary = path + ".tmp"
    fd = await backend.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        await backend.pwritev(fd, [payload], 0)
        await backend.fdatasync(fd)
    finally:
        await backend.close(fd)
    await backend.rename(temporary, path)
    if sync_directory:
        await backend.fsync_directory(os.path.dirname(path) or ".")


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

"""The data directory's layout: one directory per partition, and how deleted ones go.

``<data_dir>/<topic>-<partition>/`` holds a partition's segments (Kafka's
naming). A deleted partition's directory is first renamed
``<topic>-<partition>.<uuid>-delete`` (durably), then removed; start-up
removes what a crash left half way, and sets aside partition directories
that belong to no topic.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import uuid
from collections.abc import Mapping

import trio

from trioring.uring import FileBackend

__all__ = [
    "DELETED_SUFFIX",
    "deleted_directory_name",
    "partition_directory",
    "remove_deleted_directories",
    "set_aside_orphans",
]

logger = logging.getLogger("trioring.storage")

#: Ends the name of a deleted partition's directory until it is removed.
DELETED_SUFFIX = "-delete"
#: Longest file name Linux file systems take (NAME_MAX).
_NAME_BYTES_MAX = 255
_PARTITION_DIRECTORY = re.compile(r"(.+)-(\d+)")


def partition_directory(data_dir: str, topic: str, partition: int) -> str:
    """Kafka's naming: ``<data_dir>/<topic>-<partition>``."""
    return os.path.join(data_dir, f"{topic}-{partition}")


def deleted_directory_name(entry: str) -> str:
    """The name a partition directory ``entry`` takes while it waits for removal.

    Kafka's scheme: a unique id and the suffix, with the topic part cut so the
    name stays within NAME_MAX (a 249-character topic name plus "-0.deleted"
    does not fit, and the rename failed).
    """
    suffix = f".{uuid.uuid4().hex}{DELETED_SUFFIX}"
    return entry[: _NAME_BYTES_MAX - len(suffix)] + suffix


async def set_aside(backend: FileBackend, data_dir: str, entry: str) -> str:
    """Rename a partition directory for removal (not yet durable: fsync the data dir).

    Returns the new name.
    """
    deleted = deleted_directory_name(entry)
    await backend.rename(os.path.join(data_dir, entry), os.path.join(data_dir, deleted))
    return deleted


async def remove_deleted_directories(backend: FileBackend, data_dir: str) -> None:
    for entry in await backend.list_directory(data_dir):
        # ".deleted": what trioring 0.1 named them.
        if entry.endswith((DELETED_SUFFIX, ".deleted")):
            await trio.to_thread.run_sync(shutil.rmtree, os.path.join(data_dir, entry))


async def set_aside_orphans(
    backend: FileBackend, data_dir: str, partitions: Mapping[str, int]
) -> None:
    """Set aside partition directories of no topic in ``partitions`` (name -> count).

    They are what an interrupted delete, or a creation that failed half way,
    left behind. Names starting with "__" are trioring's own.
    """
    orphans = []
    for entry in await backend.list_directory(data_dir):
        match = _PARTITION_DIRECTORY.fullmatch(entry)
        if match is None or entry.startswith("__"):
            continue
        count = partitions.get(match.group(1))
        if count is None or int(match.group(2)) >= count:
            orphans.append(entry)
    for entry in orphans:
        logger.warning("%s: belongs to no topic (interrupted delete); removing it", entry)
        await set_aside(backend, data_dir, entry)
    if orphans:
        await backend.fsync_directory(data_dir)

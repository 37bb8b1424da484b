"""A broker process seen from outside, through Linux's /proc: alive, and how much memory."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["process_alive", "process_tree_rss_bytes"]

_PROC = Path("/proc")
_KIB = 1024


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after "pid (comm)"; None if there is no such process."""
    try:
        stat = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # comm may hold spaces and parentheses: the fields start after the last ")".
    return stat.rsplit(")", 1)[1].split()


def process_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie is dead, waiting for its parent to reap it)."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir(_PROC):
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found = []
    unvisited = [pid]
    while unvisited:
        parent = unvisited.pop()
        for child in children.get(parent, ()):
            found.append(child)
            unvisited.append(child)
    return found


def _rss_bytes(pid: int) -> int:
    try:
        status = (_PROC / str(pid) / "status").read_text()
    except OSError:
        return 0  # gone meanwhile
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * _KIB
    return 0  # a kernel thread, or a zombie: no memory of its own


def process_tree_rss_bytes(pid: int) -> int | None:
    """Resident memory of ``pid`` and all its descendants (a supervisor and its
    workers), in bytes; None if ``pid`` does not run."""
    if not process_alive(pid):
        return None
    return _rss_bytes(pid) + sum(_rss_bytes(child) for child in _descendants(pid))

"""Helpers shared by the io_uring tests (not a test module)."""

from __future__ import annotations

import os

import pytest

from trioring.uring._uring import uring_unavailable_reason

_UNAVAILABLE = uring_unavailable_reason()

#: Skips a test (or module) where no io_uring ring can be set up.
requires_uring = pytest.mark.skipif(
    _UNAVAILABLE is not None,
    reason=f"io_uring unavailable: {_UNAVAILABLE and _UNAVAILABLE.strerror}",
)


def open_fds() -> list[str]:
    """This process's open descriptors (to compare before and after)."""
    return sorted(os.listdir("/proc/self/fd"))


def close_all(*fds: int) -> None:
    for fd in fds:
        os.close(fd)

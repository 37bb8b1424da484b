"""Helpers shared by the io_uring tests (not a test module)."""

from __future__ import annotations

import os
import random

import pytest
import trio

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


async def pause_randomly(chooser: random.Random) -> None:
    """Pace a writer in a cancellation race: sometimes the reader finds data
    already there, sometimes it has to wait for it."""
    if chooser.random() < 0.5:
        await trio.sleep(chooser.random() * 0.0005)
    else:
        for _ in range(chooser.randrange(4)):
            await trio.lowlevel.checkpoint()


async def cancel_after(scope: trio.CancelScope, checkpoints: int, delay_s: float) -> None:
    """Cancel ``scope`` after some checkpoints and a delay (a race's other side)."""
    for _ in range(checkpoints):
        await trio.lowlevel.checkpoint()
    await trio.sleep(delay_s)
    scope.cancel()

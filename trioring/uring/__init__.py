"""I/O backends: the interface storage uses, and the choice of implementation.

The io_uring implementation (cffi, one ring per worker) plugs in here; until
it lands, ``open_backend("auto")`` selects the fallback and says why.
"""

from __future__ import annotations

import logging
from typing import Literal

from trioring.uring._base import Buffer, FileBackend
from trioring.uring._fallback import FallbackBackend

BackendChoice = Literal["auto", "uring", "fallback"]

logger = logging.getLogger("trioring.uring")


def open_backend(choice: BackendChoice = "auto") -> FileBackend:
    """Return the file backend for ``choice``, logging which one runs and why."""
    if choice == "fallback":
        logger.info("I/O backend: fallback (chosen by configuration)")
        return FallbackBackend()
    if choice == "uring":
        raise NotImplementedError(
            "io_backend='uring' is not available in this build yet; "
            "use io_backend='auto' or 'fallback'"
        )
    if choice != "auto":
        raise ValueError(f"io_backend must be 'auto', 'uring' or 'fallback', not {choice!r}")
    logger.info("I/O backend: fallback (the io_uring backend is not built into this version)")
    return FallbackBackend()


__all__ = ["BackendChoice", "Buffer", "FallbackBackend", "FileBackend", "open_backend"]

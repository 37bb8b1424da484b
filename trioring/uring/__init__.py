"""I/O backends: the interface storage uses, and the choice of implementation.

``open_backend("auto")`` uses io_uring when the extension is built and a
ring can be set up, and otherwise the fallback, logging once which backend
runs and why. The uring backend sets its ring up lazily inside the Trio run
that first uses it, so this stays a plain function; ``await backend.aclose()``
releases the ring (the end of the run does too).

Sockets follow the file backend: ``open_tcp_listeners_for(backend, ...)``
gives ring listeners and streams (``_socket.py``) under the uring backend and
Trio's under the fallback; both are ``trio.abc`` listeners and
half-closeable streams, and ``send_file_range`` serves a file range to either.
"""

from __future__ import annotations

import logging
from typing import Literal

from trioring.uring._base import Buffer, FileBackend
from trioring.uring._fallback import FallbackBackend
from trioring.uring._socket import (
    RingListener,
    RingSocketStream,
    TcpListener,
    TcpStream,
    open_tcp_listeners_for,
    send_file_range,
)
from trioring.uring._uring import UringBackend, UringUnavailableError, uring_unavailable_reason

BackendChoice = Literal["auto", "uring", "fallback"]

logger = logging.getLogger("trioring.uring")


def open_backend(choice: BackendChoice = "auto") -> FileBackend:
    """Return the file backend for ``choice``, logging which one runs and why.

    ``"uring"`` raises :class:`UringUnavailableError` (an OSError with the
    errno of the failed check) when io_uring cannot run here.
    """
    if choice == "fallback":
        return _chosen(FallbackBackend(), "chosen by configuration")
    if choice not in ("auto", "uring"):
        raise ValueError(f"io_backend must be 'auto', 'uring' or 'fallback', not {choice!r}")
    unavailable = uring_unavailable_reason()
    if unavailable is None:
        return _chosen(UringBackend(), "io_uring ring set up")
    if choice == "uring":
        raise UringUnavailableError(
            unavailable.errno,
            f"io_backend='uring' but io_uring is unavailable: {unavailable.strerror}",
        )
    return _chosen(FallbackBackend(), f"io_uring unavailable: {unavailable.strerror}")


def _chosen(backend: FallbackBackend, reason: str) -> FileBackend:
    backend.selection_reason = reason
    logger.info("I/O backend: %s (%s)", backend.name, reason)
    return backend


__all__ = [
    "BackendChoice",
    "Buffer",
    "FallbackBackend",
    "FileBackend",
    "RingListener",
    "RingSocketStream",
    "TcpListener",
    "TcpStream",
    "UringBackend",
    "UringUnavailableError",
    "open_backend",
    "open_tcp_listeners_for",
    "send_file_range",
]

"""Log lines a client can cause: rate-limited, with untrusted text escaped.

A fuzzing or misconfigured client can make the broker want to say the same
thing a hundred thousand times (one run produced 110,943 WARNING lines); and
client ids, topic names and error messages built from request fields may
carry control bytes that rewrite a terminal or forge log lines. Every log
line about client input goes through :class:`RateLimitedLogger` and
:func:`printable`.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable

from trioring._constants import (
    LOG_BURST_LINES_MAX,
    LOG_RATE_INTERVAL_SECONDS,
    LOG_RATE_KEYS_MAX,
    LOG_UNTRUSTED_CHARACTERS_MAX,
)

__all__ = ["RateLimitedLogger", "printable"]


def printable(value: object, characters_max: int = LOG_UNTRUSTED_CHARACTERS_MAX) -> str:
    """``value`` as one line of visible characters: control characters escaped, long text cut.

    Escaping uses Python's string escapes (``\\n``, ``\\x1b``, ``\\u202e``), so
    what was sent can still be read off the line exactly.
    """
    text = value if isinstance(value, str) else str(value)
    cut = len(text) - characters_max
    if cut > 0:
        text = text[:characters_max]
    if not text.isprintable():
        # repr escapes exactly the characters str.isprintable rejects.
        text = repr(text)[1:-1]
    if cut > 0:
        text += f"... ({cut} more characters)"
    return text


class _Window:
    __slots__ = ("lines", "started", "suppressed")

    def __init__(self, started: float) -> None:
        self.started = started
        self.lines = 0
        self.suppressed = 0


class RateLimitedLogger:
    """At most ``burst`` lines per key per ``interval_seconds``; the rest are counted.

    The key defaults to the message template, so "closing connection: %s"
    is limited as one kind of line whatever the peer. The first line after a
    window with suppressed lines says how many were left out. Keys are kept
    for the ``keys_max`` most recent kinds (least recently used dropped), so
    keys built from client input cannot grow memory.
    """

    def __init__(
        self,
        logger: logging.Logger,
        *,
        burst: int = LOG_BURST_LINES_MAX,
        interval_seconds: float = LOG_RATE_INTERVAL_SECONDS,
        keys_max: int = LOG_RATE_KEYS_MAX,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        assert burst >= 1 and interval_seconds > 0 and keys_max >= 1
        self.logger = logger
        self.burst = burst
        self.interval_seconds = interval_seconds
        self.keys_max = keys_max
        self._clock = clock
        self._windows: OrderedDict[Hashable, _Window] = OrderedDict()

    def warning(self, message: str, *args: object, key: Hashable = None, **kwargs: object) -> None:
        self.log(logging.WARNING, message, *args, key=key, **kwargs)

    def error(self, message: str, *args: object, key: Hashable = None, **kwargs: object) -> None:
        self.log(logging.ERROR, message, *args, key=key, **kwargs)

    def info(self, message: str, *args: object, key: Hashable = None, **kwargs: object) -> None:
        self.log(logging.INFO, message, *args, key=key, **kwargs)

    def log(
        self, level: int, message: str, *args: object, key: Hashable = None, **kwargs: object
    ) -> None:
        if not self.logger.isEnabledFor(level):
            return
        key = (level, message) if key is None else key
        now = self._clock()
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = _Window(now)
            if len(self._windows) > self.keys_max:
                self._windows.popitem(last=False)
        else:
            self._windows.move_to_end(key)
        suppressed = 0
        if now - window.started >= self.interval_seconds:
            suppressed = window.suppressed
            window.started, window.lines, window.suppressed = now, 0, 0
        if window.lines >= self.burst:
            window.suppressed += 1
            return
        window.lines += 1
        if suppressed:
            message += " (%d more like this were not logged before this one)"
            args = (*args, suppressed)
        self.logger.log(level, message, *args, **kwargs)  # type: ignore[arg-type]

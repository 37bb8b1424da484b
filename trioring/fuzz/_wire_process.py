"""The wire fuzzer against a broker process of its own (``python -m trioring serve``).

:func:`fuzz_wire_against_process` is synchronous (it runs its own Trio
loop), for the command line: it starts the broker on a free loopback port,
fuzzes it with the process and memory checks on, stops it, and adds to the
summary what only the end shows: that the broker stopped cleanly (exit code
0 on SIGTERM) and that its log holds no sign of a bug (a traceback, an
ERROR or CRITICAL line, "failed unexpectedly").
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import trio

from trioring._constants import (
    FRAME_BYTES_MAX_DEFAULT,
    WIRE_FUZZ_CONNECTIONS_DEFAULT,
    WIRE_FUZZ_RSS_GROWTH_BYTES_MAX_DEFAULT,
)
from trioring.fuzz._wire import WireProgress, WireSummary, fuzz_wire
from trioring.testing import BrokerProcess

__all__ = ["BAD_LOG_MARKERS", "fuzz_wire_against_process", "unexpected_log_lines"]

#: What a broker's log shows only when it met something it did not expect: the
#: error boundary's lines, and tracebacks. Bad input from clients is logged as
#: WARNING (and rate-limited), never with these.
BAD_LOG_MARKERS = (
    "Traceback",
    " ERROR ",
    " CRITICAL ",
    "failed unexpectedly",
    "unexpected error",
)
#: Characters of the broker's log quoted in a failure, and lines from its
#: first sign of a bug (a whole traceback, usually).
_LOG_TAIL_CHARACTERS = 3000
_LOG_EXCERPT_LINES = 60
#: The broker's settings for fuzzing: group joins complete at once instead of
#: waiting 300 ms for more members, so fuzzed joins keep their connection briefly.
_BROKER_CONFIG = "[groups]\ninitial_rebalance_delay_ms = 0\n"


def unexpected_log_lines(log: str) -> list[str]:
    """The lines of a broker's log that show it met something it did not expect."""
    return [line for line in log.splitlines() if any(m in line for m in BAD_LOG_MARKERS)]


def fuzz_wire_against_process(
    *,
    frames: int,
    seed: int,
    connections: int = WIRE_FUZZ_CONNECTIONS_DEFAULT,
    workers: int = 1,
    rss_growth_bytes_max: int = WIRE_FUZZ_RSS_GROWTH_BYTES_MAX_DEFAULT,
    directory: str | os.PathLike[str] | None = None,
    progress: Callable[[WireProgress], None] | None = None,
) -> WireSummary:
    """Start a broker (``workers`` worker processes), fuzz it, stop it, check its exit and log.

    The broker's data and log go to ``directory`` (kept, for a look after a
    failure) or to a temporary directory removed at the end. Blocking: call
    it outside Trio.
    """
    with tempfile.TemporaryDirectory(prefix="trioring-wire-fuzz-") as temporary:
        base = Path(directory) if directory is not None else Path(temporary)
        base.mkdir(parents=True, exist_ok=True)
        config = base / "broker.toml"
        config.write_text(_BROKER_CONFIG)
        broker = BrokerProcess(
            base / "data", workers=workers, extra_arguments=["--config", str(config)]
        )
        broker.start()
        try:
            assert broker.process is not None
            summary = trio.run(
                functools.partial(
                    fuzz_wire,
                    broker.bootstrap,
                    frames=frames,
                    seed=seed,
                    connections=connections,
                    broker_pid=broker.process.pid,
                    rss_growth_bytes_max=rss_growth_bytes_max,
                    frame_bytes_max=FRAME_BYTES_MAX_DEFAULT,
                    progress=progress,
                )
            )
        except BaseException:
            broker.kill()
            raise
        code = broker.stop()
        try:
            log = broker.log_path.read_text(errors="replace")
        except FileNotFoundError:
            log = ""
        failures = []
        if code != 0:
            failures.append(
                f"seed {seed}: the broker exited with {code} on SIGTERM; its log ends:\n"
                + log[-_LOG_TAIL_CHARACTERS:]
            )
        bad = unexpected_log_lines(log)
        if bad:
            lines = log.splitlines()
            first = lines.index(bad[0])
            failures.append(
                f"seed {seed}: the broker logged {len(bad)} lines that show a bug; from the "
                f"first:\n" + "\n".join(lines[first : first + _LOG_EXCERPT_LINES])
            )
        return summary.with_failures(failures)

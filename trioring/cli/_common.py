"""What the client subcommands share: ``--bootstrap``, output, and how errors end a command.

Output is for two readers. On a terminal: tables and colour (rich). Into a
pipe or a file: plain tab-separated lines with a header, or ``--json``, so
scripts never parse a drawing. Errors are one line on stderr and a non-zero
exit code: 1 when the broker or the request failed, 2 for a usage mistake
(argparse's code), 130 for Ctrl-C, 141 when the reader of stdout went away
(as a process killed by SIGPIPE, but after a clean close of the client),
143 when stopped by SIGTERM.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import signal
import struct
import sys
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import IO, Any

import trio

from trioring._constants import (
    CLI_API_VERSIONS_ANSWER_BYTES_MAX,
    CLI_CONNECT_TIMEOUT_SECONDS_DEFAULT,
)
from trioring._exception_groups import leaf_exceptions
from trioring.client import parse_bootstrap
from trioring.errors import InvalidArgumentError, TrioringError

BOOTSTRAP_DEFAULT = "127.0.0.1:9092"
#: The environment variable that replaces BOOTSTRAP_DEFAULT (as rpk's RPK_BROKERS).
BOOTSTRAP_VARIABLE = "TRIORING_BOOTSTRAP"

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141
EXIT_TERMINATED = 143


class SignalStop:
    """Ctrl-C and SIGTERM cancel ``scope``, around a command's reading: the command
    then ends as at any other end (commits, flushes, leaves its group).

    Watched for the whole of :meth:`watching`'s block, the client's close at its
    end included: a second signal (a second Ctrl-C; GNU timeout sends one to the
    process and one to its group) must not cut that close short, which would
    leave uncommitted records and a member in its group until its session
    expires. The close is bounded by the client's request timeout.
    """

    def __init__(self) -> None:
        self.scope = trio.CancelScope()
        #: The signal that stopped the command, if one did.
        self.signal: int | None = None

    @asynccontextmanager
    async def watching(self) -> AsyncIterator[SignalStop]:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watch, signals)
                try:
                    yield self
                finally:
                    nursery.cancel_scope.cancel()

    async def _watch(self, signals: AsyncIterator[int]) -> None:
        async for number in signals:
            if self.signal is None:
                self.signal = number
                self.scope.cancel()
            else:
                note("stopping already: finishing what was read, then closing")

    def exit_code(self) -> int:
        if self.signal is None:
            return EXIT_OK
        return EXIT_INTERRUPTED if self.signal == signal.SIGINT else EXIT_TERMINATED


class UsageError(InvalidArgumentError):
    """A mistake in the command's arguments that argparse could not see (exit 2)."""


class CommandError(TrioringError):
    """The command could not do what was asked (exit 1); the message says why."""


def client_parent() -> argparse.ArgumentParser:
    """Flags every client subcommand takes."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "-b",
        "--bootstrap",
        default=os.environ.get(BOOTSTRAP_VARIABLE) or BOOTSTRAP_DEFAULT,
        metavar="HOST:PORT[,...]",
        help=f"a broker to start from (default: ${BOOTSTRAP_VARIABLE}, else "
        f"{BOOTSTRAP_DEFAULT}); any Kafka broker works",
    )
    parent.add_argument(
        "--connect-timeout",
        type=_seconds,
        default=CLI_CONNECT_TIMEOUT_SECONDS_DEFAULT,
        metavar="SECONDS",
        help="give up when no bootstrap broker accepts a connection within this "
        "(default: %(default)s)",
    )
    return parent


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds") from None
    if not 0 < seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"{value!r}: give a number of seconds above 0")
    return seconds


#: Kafka's rule for topic names (kafka.common.internals.Topic): at most 249
#: characters of ASCII letters, digits, '.', '_' and '-', and not '.' or '..'.
_TOPIC_NAME = re.compile(r"[a-zA-Z0-9._-]{1,249}")


def topic_name(value: str) -> str:
    """An argparse type: a topic name Kafka accepts, checked before anything is sent."""
    if not _TOPIC_NAME.fullmatch(value) or value in (".", ".."):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a topic name: at most 249 of the characters a-z A-Z 0-9 . _ -"
        )
    return value


def iso_time_ms(value: str, flag: str) -> int:
    """An ISO-8601 time as milliseconds since the epoch; one without a zone is local
    time, as kafka-consumer-groups takes it."""
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(
            f"{flag} {value!r} is not ISO-8601 (for example 2026-12-01T10:00:00+00:00)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.astimezone()
    timestamp_ms = int(moment.timestamp() * 1000)
    if timestamp_ms < 0:
        raise UsageError(f"{flag} {value!r} is before 1970: give a later time")
    return timestamp_ms


def bootstrap_of(options: argparse.Namespace) -> str:
    try:
        parse_bootstrap(options.bootstrap)
    except InvalidArgumentError as error:
        raise UsageError(f"--bootstrap: {error}") from None
    return str(options.bootstrap)


async def check_reachable(options: argparse.Namespace) -> str:
    """The bootstrap string, once one of its brokers accepts a TCP connection.

    The client would retry an unreachable broker for seconds and then report
    every attempt; a person at a prompt wants "is it running?" at once.
    """
    bootstrap = bootstrap_of(options)
    reasons = []
    for host, port in parse_bootstrap(bootstrap):
        try:
            with trio.fail_after(options.connect_timeout):
                stream = await trio.open_tcp_stream(host, port)
        except trio.TooSlowError:
            reasons.append(f"{host}:{port}: no answer within {options.connect_timeout} s")
            continue
        except OSError as error:
            # Trio's "all attempts to connect failed" holds the real reasons in its cause.
            causes = [
                os.strerror(leaf.errno)
                for leaf in leaf_exceptions(error.__cause__ or error)
                if isinstance(leaf, OSError) and leaf.errno
            ]
            reason = ", ".join(dict.fromkeys(causes)) or str(error)
            reasons.append(f"{host}:{port}: {reason}")
            continue
        try:
            with trio.fail_after(options.connect_timeout):
                await _api_versions(stream)
        except (trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            reasons.append(
                f"{host}:{port} accepted a connection but gave no Kafka answer within "
                f"{options.connect_timeout} s (a Kafka broker, and not stopped or hung?)"
            )
            continue
        finally:
            await stream.aclose()
        return bootstrap
    raise CommandError(
        f"cannot reach a broker ({'; '.join(reasons)}): is it running? "
        "(start one with 'python -m trioring', or give --bootstrap HOST:PORT)"
    )


#: ApiVersions v0 (key 18) with correlation id 1 and client id "trioring-cli": every
#: Kafka broker answers it, whatever its version.
_API_VERSIONS_PROBE = struct.pack(">hhih", 18, 0, 1, len(b"trioring-cli")) + b"trioring-cli"


async def _api_versions(stream: trio.abc.Stream) -> None:
    """Send ApiVersions and read the whole answer; raise if there is none."""
    await stream.send_all(struct.pack(">i", len(_API_VERSIONS_PROBE)) + _API_VERSIONS_PROBE)
    wanted = 4
    received = bytearray()
    while len(received) < wanted:
        chunk = await stream.receive_some(wanted - len(received))
        if not chunk:
            raise trio.BrokenResourceError("the connection closed before an answer")
        received += chunk
        if wanted == 4 and len(received) == 4:
            size = struct.unpack(">i", received)[0]
            if not 4 <= size <= CLI_API_VERSIONS_ANSWER_BYTES_MAX:
                raise trio.BrokenResourceError(f"an answer of {size} bytes is no ApiVersions")
            wanted = 4 + size


def text(data: bytes | None) -> str:
    """Bytes as text for output: undecodable bytes survive (surrogateescape), so
    writing the text back with :data:`ENCODING_ERRORS` gives the same bytes."""
    return "" if data is None else data.decode("utf-8", "surrogateescape")


ENCODING_ERRORS = "surrogateescape"


class Output:
    """Where a command writes its results: stdout, as tables on a terminal."""

    def __init__(self, stream: IO[str] | None = None, *, json_output: bool = False) -> None:
        self.stream = sys.stdout if stream is None else stream
        self.terminal = self.stream.isatty()
        self.json_output = json_output

    def write(self, line: str) -> None:
        self.stream.write(line)
        self.stream.write("\n")

    def json(self, value: Any) -> None:
        self.write(json.dumps(value, ensure_ascii=False))

    def table(
        self,
        columns: Sequence[str],
        rows: Iterable[Sequence[object]],
        *,
        title: str | None = None,
    ) -> None:
        cells = [[("" if cell is None else str(cell)) for cell in row] for row in rows]
        if not self.terminal:
            # Tab-separated with a header line: cut(1), awk and sort read it.
            self.write("\t".join(columns))
            for row_cells in cells:
                self.write("\t".join(cell.replace("\t", " ") for cell in row_cells))
            return
        from rich.console import Console  # noqa: PLC0415 - only on a terminal: 50 ms to import
        from rich.table import Table  # noqa: PLC0415
        from rich.text import Text  # noqa: PLC0415

        # Text, never markup: a group or topic named "[red]" or "[/x]" is data.
        table = Table(
            title=None if title is None else Text(title), title_justify="left", header_style="bold"
        )
        for column in columns:
            table.add_column(Text(column), overflow="fold")
        for row_cells in cells:
            table.add_row(*(Text(cell) for cell in row_cells))
        Console(file=self.stream).print(table)

    def flush(self) -> None:
        self.stream.flush()


def note(message: str) -> None:
    """A status line for a person: on stderr, only when stderr is a terminal."""
    if sys.stderr.isatty():
        print(message, file=sys.stderr)


def parse_pairs(values: Sequence[str] | None, flag: str) -> list[tuple[str, str]]:
    """``KEY=VALUE`` flags, in order; a missing ``=`` is a usage mistake."""
    pairs = []
    for value in values or ():
        key, separator, rest = value.partition("=")
        if not separator or not key:
            raise UsageError(f"{flag} {value!r} is not KEY=VALUE")
        pairs.append((key, rest))
    return pairs

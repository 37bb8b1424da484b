"""``python -m trioring`` / ``trioring``: the command line.

``serve`` (the default when no command is given) runs a broker with a Kafka
listener; ``demo`` runs a produce / tail / commit demo through the embedded
broker. ``topics``, ``groups``, ``produce``, ``consume`` and ``bench`` are
clients: they work against trioring and any Kafka broker (``--bootstrap``).
docs/cli.md documents every subcommand.

An operator's mistake at start-up (a flag, the configuration file, a port
in use, a data directory that is locked or unusable) is one line on stderr
and exit code 2; ``--log-level DEBUG`` adds the traceback. A client command
that fails says why in one line and exits 1 (2 for a usage mistake).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
import typing
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any

import trio

import trioring
from trioring._exception_groups import leaf_exceptions
from trioring.cli import _bench, _consume, _fuzz, _groups, _produce, _topics
from trioring.cli._common import (
    EXIT_BROKEN_PIPE,
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    UsageError,
    client_parent,
)
from trioring.demo import DEMO_DATA_DIR_DEFAULT, run_demo
from trioring.errors import InvalidArgumentError, TrioringError
from trioring.server._cli import add_arguments, serve_main

__all__ = ["main"]

#: The client subcommands, each a module with ``add_parser(commands, parents)``.
CLIENT_COMMANDS = (_topics, _groups, _produce, _consume, _bench)
COMMANDS = ("serve", "demo", "topics", "groups", "produce", "consume", "bench", "fuzz")


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage mistake as one line (argparse prints the usage first)."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(EXIT_USAGE, f"trioring: error: {message} (see {self.prog} --help)\n")


def _log_level_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--log-level",
        default="WARNING",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        type=str.upper,
        help="default: %(default)s; DEBUG also prints tracebacks of errors",
    )
    return parent


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="trioring",
        description="trioring: a Kafka-compatible log broker on Trio. "
        "With no command, 'serve' runs a broker with a Kafka listener on 127.0.0.1:9092. "
        "topics, groups, produce, consume and bench work against any Kafka broker.",
    )
    parser.add_argument("--version", action="version", version=f"trioring {trioring.__version__}")
    # Any: typeshed types a parent as the subparsers' own class (_Parser).
    commands: Any = parser.add_subparsers(dest="command", metavar="COMMAND")
    parent = _log_level_parent()
    serve = commands.add_parser(
        "serve",
        parents=[parent],
        help="run a broker with a Kafka listener (the default)",
        description="Run a broker with a Kafka listener until SIGINT/SIGTERM. "
        "Settings: defaults, then the --config TOML file, then these flags "
        "(docs/configuration.md lists every key).",
    )
    add_arguments(serve)
    demo = commands.add_parser(
        "demo",
        parents=[parent],
        help="produce, tail and commit through the embedded broker for a few seconds",
        description="Produce, tail and commit through the embedded broker; run it twice "
        "to see the consumer resume from its committed offset.",
    )
    demo.add_argument(
        "--data-dir",
        default=DEMO_DATA_DIR_DEFAULT,
        help="default: %(default)s (its own, so it never touches a server's data)",
    )
    demo.add_argument("--seconds", type=float, default=5.0, help="default: %(default)s")
    demo.add_argument(
        "--rate", type=float, default=200.0, help="records per second (default: %(default)s)"
    )
    client_parents = [parent, client_parent()]
    for module in CLIENT_COMMANDS:
        module.add_parser(commands, client_parents)
    _fuzz.add_parser(commands, [parent])
    return parser


def _with_default_command(argv: Sequence[str]) -> list[str]:
    """``python -m trioring --listen ...`` means ``serve --listen ...``."""
    arguments = list(argv)
    if arguments and (arguments[0] in COMMANDS or arguments[0] in ("-h", "--help", "--version")):
        return arguments
    return ["serve", *arguments]


def _operator_error(error: BaseException) -> BaseException | None:
    """The one error to report as a mistake of the operator or a failure of the
    request, or None for a bug.

    Trio nurseries wrap what is raised inside them in exception groups;
    a start-up mistake is the one real exception inside.
    """
    leaves = [leaf for leaf in leaf_exceptions(error) if not isinstance(leaf, trio.Cancelled)]
    if len(leaves) == 1 and isinstance(leaves[0], TrioringError | OSError):
        return leaves[0]
    return None


def _describe(error: BaseException) -> str:
    if isinstance(error, OSError) and not isinstance(error, TrioringError) and error.strerror:
        where = f" ({error.filename})" if error.filename else ""
        return f"{error.strerror}{where}"
    return " ".join(str(error).split())  # one line, whatever the message holds


def _broken_pipe(error: BaseException) -> bool:
    return any(isinstance(leaf, BrokenPipeError) for leaf in leaf_exceptions(error))


def _silence_stdout() -> None:
    """The reader of stdout went away: later writes (Python's own flush at exit
    included) go nowhere instead of raising again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def main(argv: Sequence[str] | None = None) -> int:
    options = _parser().parse_args(_with_default_command(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(
        level=options.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    client = options.command not in ("serve", "demo", "fuzz")
    try:
        if options.command == "serve":
            return serve_main(options)
        if options.command == "demo":
            demo = partial(
                run_demo,
                options.data_dir,
                seconds=options.seconds,
                records_per_second=options.rate,
            )
            trio.run(demo)
            return 0
        if options.command == "fuzz":
            return _fuzz.fuzz_main(options)
        run: Callable[[argparse.Namespace], Awaitable[int]] = options.run
        code = trio.run(run, options)
        sys.stdout.flush()
        return code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BaseException as error:
        if any(isinstance(leaf, KeyboardInterrupt) for leaf in leaf_exceptions(error)):
            print("interrupted", file=sys.stderr)  # inside a nursery: wrapped in a group
            return EXIT_INTERRUPTED
        if client and _broken_pipe(error):
            _silence_stdout()
            return EXIT_BROKEN_PIPE
        mistake = _operator_error(error)
        if mistake is None:
            raise  # a bug: the traceback is what helps
        if options.log_level == "DEBUG":
            traceback.print_exception(error)
        print(f"trioring: error: {_describe(mistake)}", file=sys.stderr)
        if not client or isinstance(mistake, UsageError | InvalidArgumentError):
            return EXIT_USAGE
        return EXIT_FAILURE

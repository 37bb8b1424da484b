"""``python -m trioring``: command-line entry point.

``serve`` (the default) runs a broker with a Kafka listener; ``demo`` runs
a produce / tail / commit demo through the embedded broker.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from functools import partial

import trio

from trioring.demo import run_demo
from trioring.errors import TrioringError
from trioring.server._cli import add_arguments, serve_main

DATA_DIR_DEFAULT = "./trioring-data"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trioring",
        description="trioring: a Kafka-compatible log broker on Trio. "
        "'serve' (the default) runs a broker with a Kafka listener on 127.0.0.1:9092.",
    )
    parser.add_argument(
        "command",
        nargs="?",
        default="serve",
        choices=["serve", "demo"],
        help="serve (default): a broker with a Kafka listener; demo: the embedded demo",
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="demo: default %(default)s")
    parser.add_argument(
        "--rate", type=float, default=200.0, help="demo: records per second (%(default)s)"
    )
    add_arguments(parser)
    parser.add_argument(
        "--log-level",
        default="WARNING",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        type=str.upper,
        help="default: %(default)s",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    options = _parser().parse_args(argv)
    logging.basicConfig(
        level=options.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        if options.command == "serve":
            return serve_main(options)
        demo = partial(
            run_demo,
            options.data_dir or DATA_DIR_DEFAULT,
            seconds=options.seconds,
            records_per_second=options.rate,
        )
        trio.run(demo)
    except TrioringError as error:
        print(f"trioring: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; committed offsets are saved", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

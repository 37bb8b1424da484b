"""Start-up of trioring's own processes: importing this module is the first thing they do.

kio (the Kafka schema library) registers Hypothesis strategies for its types
when Hypothesis is installed, which it always is with trioring (kio and
``trioring fuzz`` depend on it). That import brings in Hypothesis, and through
its plugins trio.testing and pytest: about 0.5 s of CPU in a process whose
whole import takes 1.3 s, paid by the supervisor, every worker (again at each
restart) and every command line call. No broker or client code uses those
strategies, so a process started as trioring (``python -m trioring...`` or the
``trioring`` script) imports kio as if Hypothesis were absent.

Only there: a program that imports trioring as a library keeps kio as it is,
and ``trioring fuzz`` still imports Hypothesis itself afterwards.
"""

from __future__ import annotations

import os
import sys

#: Interpreter options that take their value as the next argument.
_OPTIONS_WITH_VALUE = frozenset({"-X", "-W", "--check-hash-based-pycs"})


def runs_as_trioring(argv: list[str]) -> bool:
    """Whether the interpreter command line ``argv`` (``sys.orig_argv``) runs trioring."""
    arguments = iter(argv[1:])
    for argument in arguments:
        if argument == "-m":
            module = next(arguments, "")
            return module == "trioring" or module.startswith("trioring.")
        if argument in _OPTIONS_WITH_VALUE:
            next(arguments, None)
        elif argument in {"-c", "-"} or not argument.startswith("-"):
            # A script (the ``trioring`` console script is one), code, or stdin.
            return os.path.basename(argument) == "trioring"
    return False


def import_kio_without_hypothesis() -> None:
    if "kio" in sys.modules or "hypothesis" in sys.modules:
        return  # too late, or Hypothesis is in use here: kio as it is
    # None in sys.modules makes ``import hypothesis...`` raise ImportError,
    # which kio catches (kio.static._phantom).
    sys.modules["hypothesis"] = None  # type: ignore[assignment]
    try:
        import kio.static._phantom  # noqa: F401, PLC0415
    finally:
        del sys.modules["hypothesis"]


if runs_as_trioring(sys.orig_argv):
    import_kio_without_hypothesis()

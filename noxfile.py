"""Every check CI runs: ``nox`` (all sessions) or ``nox -s tests``."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True

SOURCES = ["trioring", "_trioring_pytestplugin.py", "tests", "benchmarks", "examples", "noxfile.py"]


@nox.session
def tests(session: nox.Session) -> None:
    """The test suite: dependencies as pip installs them, trioring from this tree."""
    # pytest imports trioring from this source tree (tests/ is a package, so
    # its parent goes first on sys.path); pip install also puts the built
    # io_uring extension here (setup.py), and TRIORING_REQUIRE_URING in
    # .ci/run fails the run if it is missing.
    session.install(".[test]")
    # One pytest worker per CPU (pytest-xdist), each test file on one worker, so a
    # file's module-scoped broker process starts once: on the 2-CPU CI machine
    # the suite took 394 s instead of 690 s. `nox -s tests -- -n 0` runs it serially.
    session.run("python", "-m", "pytest", "-n", "auto", "--dist", "loadfile", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.5")
    session.run("ruff", "check", *SOURCES)
    session.run("ruff", "format", "--check", *SOURCES)


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy strict on the package and the pytest plugin (which needs pytest's types)."""
    session.install(".", "mypy>=1.10", "pytest>=8.4")
    session.run("mypy")

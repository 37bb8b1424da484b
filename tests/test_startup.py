"""trioring's own processes start without Hypothesis (trioring/_startup.py); others do not."""

from __future__ import annotations

import subprocess
import sys

import pytest

from trioring._startup import runs_as_trioring


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["python", "-m", "trioring"], True),
        (["python", "-m", "trioring", "serve", "-m", "x"], True),
        (["python", "-m", "trioring.worker", "--control-fd", "5"], True),
        (["python", "-X", "importtime", "-u", "-m", "trioring"], True),
        (["/venv/bin/python3", "/venv/bin/trioring", "topics", "list"], True),
        (["python", "-m", "trioringx"], False),
        (["python", "-m", "pytest", "-m", "trioring"], False),
        (["python", "-X", "-m", "-m", "pytest"], False),
        (["python", "app.py", "-m", "trioring"], False),
        (["python", "-c", "import trioring", "-m", "trioring"], False),
        (["python", "-m"], False),
        (["python"], False),
    ],
)
def test_which_command_lines_are_trioring_processes(argv: list[str], expected: bool) -> None:
    assert runs_as_trioring(argv) is expected


def _imported(arguments: list[str]) -> set[str]:
    """The modules a Python process imports (the names -X importtime lists)."""
    ran = subprocess.run(
        [sys.executable, "-X", "importtime", *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return {
        line.rsplit("|", 1)[1].strip()
        for line in ran.stderr.splitlines()
        if line.startswith("import time:") and line.count("|") == 2
    }


def test_the_command_line_imports_neither_hypothesis_nor_the_fuzz_harness() -> None:
    imported = _imported(["-m", "trioring", "--version"])
    assert "kio.static._phantom" in imported  # the checks below mean something
    # kio's attempt to import hypothesis.strategies is listed; it fails at once.
    assert {"hypothesis", "hypothesis.core", "pytest"}.isdisjoint(imported)
    assert not [name for name in imported if name.startswith("trioring.fuzz")]


def test_a_program_importing_trioring_keeps_kio_as_it_is() -> None:
    # kio registers its types' Hypothesis strategies where Hypothesis is installed.
    assert "hypothesis.core" in _imported(["-c", "import trioring"])

"""The command line's shared parts: terminal tables, and the first check of a broker."""

from __future__ import annotations

import io
import socket

import pytest

from trioring.cli import main
from trioring.cli._common import Output


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_terminal_tables_print_data_as_text_never_as_markup() -> None:
    terminal = Terminal()
    out = Output(terminal)
    assert out.terminal
    # A group or topic may be named like rich markup; it is data.
    out.table(["group", "state"], [("[/bad]", "[red]Stable")], title="[b]groups")
    drawn = terminal.getvalue()
    assert "[/bad]" in drawn and "[red]Stable" in drawn and "[b]groups" in drawn


def test_a_listener_that_never_answers_is_one_line_soon(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """It accepts connections (the kernel completes them) but sends nothing: a hung or
    stopped broker. The client alone would retry for minutes."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        code = main(["topics", "list", "-b", f"127.0.0.1:{port}", "--connect-timeout", "0.5"])
    assert code == 1
    [line] = capfd.readouterr().err.strip().splitlines()
    assert line.startswith("trioring: error: cannot reach a broker") and "no Kafka answer" in line

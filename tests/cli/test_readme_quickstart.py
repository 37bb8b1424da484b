"""The README's quickstart commands, as written, against a broker process."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from trioring.testing import BrokerProcess

README = Path(__file__).resolve().parents[2] / "README.md"
COMMAND_SECONDS_MAX = 120


def quickstart_commands() -> list[str]:
    """The shell lines of the README block that uses the installed ``trioring`` command."""
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text(), flags=re.DOTALL)
    [block] = [b for b in blocks if ".venv/bin/trioring" in b]
    return [line for line in block.splitlines() if line.strip()]


def test_readme_quickstart_commands_work(tmp_path: Path) -> None:
    commands = quickstart_commands()
    used = {re.findall(r"\.venv/bin/trioring (\S+)", line)[0] for line in commands}
    assert used >= {
        "topics",
        "produce",
        "consume",
    }
    outputs = []
    with BrokerProcess(tmp_path / "data") as broker:
        # The README's commands reach 127.0.0.1:9092; the test's broker is on a free
        # port, named by the variable every client command reads first.
        environment = {**os.environ, "TRIORING_BOOTSTRAP": broker.bootstrap}
        for line in commands:
            shell_line = line.replace(".venv/bin/trioring", f"{sys.executable} -m trioring")
            # The bench's 5 s are the README's; 1 s shows the same here.
            shell_line = shell_line.replace("--seconds 5", "--seconds 1")
            result = subprocess.run(
                ["bash", "-o", "pipefail", "-c", shell_line],
                capture_output=True,
                text=True,
                env=environment,
                timeout=COMMAND_SECONDS_MAX,
                check=False,
            )
            assert result.returncode == 0, f"{line}\n{result.stderr}"
            outputs.append(result.stdout)
    consumed = outputs[next(i for i, line in enumerate(commands) if " consume " in line)]
    # "{partition}:{offset} {key}={value}": both records, whatever their partitions.
    assert {line.split(" ", 1)[1] for line in consumed.splitlines()} == {"alice=hello", "bob=hi"}

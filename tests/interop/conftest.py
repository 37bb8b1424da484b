"""Fixtures for the interop suite: real trioring broker processes on 127.0.0.1.

``broker`` is a fresh broker per test; ``module_broker`` is shared by one test
module (tests that use it pick unique topic names with ``topic_name``). Both
are stopped at teardown, which also checks that the broker exited cleanly and
logged no error or traceback.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from interop_wire import broker_log, unexpected_log_lines

from trioring.testing import BrokerProcess


def _run_broker(data_dir: Path) -> Iterator[BrokerProcess]:
    with BrokerProcess(data_dir) as broker:
        yield broker
        running = broker.process is not None
        code = broker.stop()
    assert not running or code == 0, (
        f"broker exited with {code}; log:\n{broker_log(broker)[-3000:]}"
    )
    bad = unexpected_log_lines(broker)
    assert not bad, "broker logged errors:\n" + "\n".join(bad[:20])


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[BrokerProcess]:
    """A broker of its own for one test (killing or restarting it is fine)."""
    yield from _run_broker(tmp_path / "data")


@pytest.fixture(scope="module")
def module_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """A broker shared by the tests of one module; do not stop or restart it."""
    yield from _run_broker(tmp_path_factory.mktemp("broker") / "data")


@pytest.fixture
def topic_name() -> str:
    return f"interop-{uuid.uuid4().hex[:12]}"

"""trioring's pytest plugin (entry point ``pytest11: trioring``): brokers as fixtures.

- ``trioring_broker``: a :class:`trioring.testing.EmbeddedBroker` in the
  test's Trio run (pytest-trio), on the test's ``tmp_path``, with ``.faults``.
- ``trioring_server``: a :class:`trioring.testing.BrokerProcess` on a free
  127.0.0.1 port, on ``tmp_path``, with ``.faults``; stopped after the test.
- ``trioring_server_session``: one BrokerProcess for the whole session;
  after each test that used it, its faults are cleared, and it is started
  again if the test killed it.
- ``trioring_topic_name``: a topic name no other test uses.

A module of its own, outside the ``trioring`` package (as Hypothesis keeps
``_hypothesis_pytestplugin``): pytest imports every installed plugin at
start-up, in every project of the environment, before Hypothesis's plugin
may have loaded. Importing trioring there would cost every pytest run about
0.6 s, and its import of kio, which registers Hypothesis strategies, would
make Hypothesis warn (an error under ``filterwarnings = error``). So trioring
is imported only when a fixture is used. Nothing here imports pytest-trio:
sync tests (confluent-kafka, kafka-python) use the process fixtures without
it. See docs/testing.md.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from trioring.testing import BrokerProcess, EmbeddedBroker

__all__ = [
    "trioring_broker",
    "trioring_server",
    "trioring_server_session",
    "trioring_topic_name",
]

#: The session's broker, for the hook that tidies it between tests.
_SESSION_SERVER = pytest.StashKey["BrokerProcess"]()
#: Bytes of a broker's log shown with a failed test. (Here, not in
#: trioring/_constants.py: importing that would import trioring, see above.)
_LOG_TAIL_BYTES = 4000
_SERVER_FIXTURES = ("trioring_server", "trioring_server_session")


@pytest.fixture
async def trioring_broker(tmp_path: Path) -> AsyncIterator[EmbeddedBroker]:
    """An embedded broker in this test's Trio run, with ``.faults`` and a Kafka listener."""
    from trioring.testing import open_embedded_broker  # noqa: PLC0415 - see the docstring

    async with open_embedded_broker(tmp_path / "trioring-embedded") as broker:
        yield broker


@pytest.fixture
def trioring_server(tmp_path: Path) -> Iterator[BrokerProcess]:
    """A broker process (``python -m trioring serve``) with fault control, for one test."""
    from trioring.testing import BrokerProcess  # noqa: PLC0415

    with BrokerProcess(tmp_path / "trioring-server", faults=True) as server:
        yield server


@pytest.fixture(scope="session")
def trioring_server_session(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BrokerProcess]:
    """One broker process with fault control for the whole session (topics persist
    between tests: name them with ``trioring_topic_name``)."""
    from trioring.testing import BrokerProcess  # noqa: PLC0415

    data_dir = tmp_path_factory.mktemp("trioring-session") / "data"
    with BrokerProcess(data_dir, faults=True) as server:
        request.config.stash[_SESSION_SERVER] = server
        try:
            yield server
        finally:
            del request.config.stash[_SESSION_SERVER]


@pytest.fixture
def trioring_topic_name(request: pytest.FixtureRequest) -> str:
    """A topic name from the test's name, unique in the session (Kafka's legal characters)."""
    from trioring.testing import unique_topic_name  # noqa: PLC0415

    prefix = re.sub(r"[^a-zA-Z0-9._-]+", "-", request.node.name).strip("-.")[:100]
    return unique_topic_name(prefix or "topic")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Before fixtures are torn down: hand the next test a session broker as it was."""
    server = item.config.stash.get(_SESSION_SERVER, None)
    if server is None or "trioring_server_session" not in getattr(item, "fixturenames", ()):
        return
    if server.process is None or server.process.poll() is not None:
        if nextitem is not None:  # after the last test the session fixture stops it
            server.kill()  # what a crash left (workers, its stdout), if anything
            server.start()
    else:
        server.faults.clear()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed test that used a broker process shows the end of the broker's log."""
    report = yield
    if report.failed:
        funcargs = getattr(item, "funcargs", {})
        for name in _SERVER_FIXTURES:
            log_path = getattr(funcargs.get(name), "log_path", None)
            if isinstance(log_path, Path) and log_path.exists():
                with open(log_path, "rb") as log:
                    log.seek(0, 2)
                    log.seek(max(0, log.tell() - _LOG_TAIL_BYTES))
                    tail = log.read().decode(errors="replace")
                if tail:
                    report.sections.append((f"trioring broker log ({log_path})", tail))
    return report

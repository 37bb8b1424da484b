"""Fixtures for the interop suite: real trioring broker processes on 127.0.0.1.

``broker`` is a fresh broker per test; ``module_broker`` is shared by one test
module (tests that use it pick unique topic names with ``topic_name``). Both
are stopped at teardown, which also checks that the broker exited cleanly and
logged no error or traceback.

Both run the broker on an I/O backend (``io_backend``): "uring" (io_uring for
files and sockets) where io_uring works, else "fallback" (threads and Trio's
sockets). The modules in ``BOTH_BACKENDS_MODULES`` run against both, a subset
that covers produce, fetch, every codec, framing and bad input while keeping
the doubled part of the suite short (about 25 s).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from interop_wire import broker_log, unexpected_log_lines

from trioring.testing import BrokerProcess
from trioring.uring._uring import uring_unavailable_reason

BOTH_BACKENDS_MODULES = frozenset({"test_interop_roundtrip", "test_interop_malformed"})

_URING_UNAVAILABLE = uring_unavailable_reason()
_URING = pytest.param(
    "uring",
    marks=pytest.mark.skipif(
        _URING_UNAVAILABLE is not None,
        reason=f"io_uring unavailable: {_URING_UNAVAILABLE and _URING_UNAVAILABLE.strerror}",
    ),
)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "io_backend" not in metafunc.fixturenames:
        return
    module_name = metafunc.module.__name__.rpartition(".")[2]
    if module_name in BOTH_BACKENDS_MODULES:
        backends = [_URING, "fallback"]
    else:
        backends = ["uring" if _URING_UNAVAILABLE is None else "fallback"]
    # Module scope: module_broker is shared by the tests of a module and backend.
    metafunc.parametrize("io_backend", backends, scope="module")


#: Consumer-protocol (KIP-848) members heartbeat every 0.5 s instead of Kafka's 5 s,
#: so the tests that rebalance such groups take seconds, not tens of seconds.
FAST_CONSUMER_GROUPS = "[groups]\nconsumer_heartbeat_interval_ms = 500\n"


def _run_broker(
    data_dir: Path, io_backend: str, workers: int = 1, config: str | None = None
) -> Iterator[BrokerProcess]:
    arguments = ["--io-backend", io_backend]
    if config is not None:
        config_path = data_dir.parent / "broker.toml"
        config_path.write_text(config)
        arguments += ["--config", str(config_path)]
    with BrokerProcess(data_dir, extra_arguments=arguments, workers=workers) as broker:
        yield broker
        running = broker.process is not None
        code = broker.stop()
    assert not running or code == 0, (
        f"broker exited with {code}; log:\n{broker_log(broker)[-3000:]}"
    )
    bad = unexpected_log_lines(broker)
    assert not bad, "broker logged errors:\n" + "\n".join(bad[:20])


@pytest.fixture
def broker(tmp_path: Path, io_backend: str) -> Iterator[BrokerProcess]:
    """A broker of its own for one test (killing or restarting it is fine)."""
    yield from _run_broker(tmp_path / "data", io_backend)


@pytest.fixture(scope="module")
def module_broker(
    tmp_path_factory: pytest.TempPathFactory, io_backend: str
) -> Iterator[BrokerProcess]:
    """A broker shared by the tests of one module and backend; do not stop or restart it."""
    yield from _run_broker(tmp_path_factory.mktemp("broker") / "data", io_backend)


@pytest.fixture
def topic_name() -> str:
    return f"interop-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def cluster(tmp_path: Path, io_backend: str) -> Iterator[BrokerProcess]:
    """A broker of two worker processes for one test (kill or restart freely)."""
    yield from _run_broker(tmp_path / "data", io_backend, workers=2)


@pytest.fixture(scope="module")
def module_cluster(
    tmp_path_factory: pytest.TempPathFactory, io_backend: str
) -> Iterator[BrokerProcess]:
    """Two worker processes shared by a module's tests; do not stop or restart it."""
    yield from _run_broker(tmp_path_factory.mktemp("cluster") / "data", io_backend, workers=2)


@pytest.fixture
def fast_groups_broker(tmp_path: Path, io_backend: str) -> Iterator[BrokerProcess]:
    """``broker`` whose consumer-protocol members heartbeat every 0.5 s."""
    yield from _run_broker(tmp_path / "data", io_backend, config=FAST_CONSUMER_GROUPS)


@pytest.fixture
def fast_groups_cluster(tmp_path: Path, io_backend: str) -> Iterator[BrokerProcess]:
    """``cluster`` whose consumer-protocol members heartbeat every 0.5 s."""
    yield from _run_broker(tmp_path / "data", io_backend, workers=2, config=FAST_CONSUMER_GROUPS)

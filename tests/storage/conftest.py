"""Runs every storage test over both file backends.

Test functions get a ``[fallback]`` and a ``[uring]`` variant. For the uring
one, the test module's ``TestBackend`` and ``FallbackBackend`` names are
swapped for their io_uring counterparts (same fault-injection hooks), so the
tests need no change. The hypothesis state machine (a unittest TestCase,
which pytest does not parametrize) runs over uring from
tests/uring/test_uring_storage_stateful.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from storage_support import FakeClock, UringTestBackend

from trioring.uring import UringBackend
from trioring.uring._uring import uring_unavailable_reason

STORAGE_BACKENDS = ["fallback", "uring"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "storage_backend" in metafunc.fixturenames:
        metafunc.parametrize("storage_backend", STORAGE_BACKENDS, indirect=True)


@pytest.fixture(autouse=True)
def storage_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The backend under test: "fallback" or "uring"."""
    kind: str = getattr(request, "param", "fallback")
    if kind == "uring":
        unavailable = uring_unavailable_reason()
        if unavailable is not None:
            pytest.skip(f"io_uring unavailable: {unavailable.strerror}")
        replacements = {"TestBackend": UringTestBackend, "FallbackBackend": UringBackend}
        for name, replacement in replacements.items():
            if hasattr(request.module, name):
                monkeypatch.setattr(request.module, name, replacement)
    return kind


@pytest.fixture
def directory(tmp_path: Path) -> str:
    """Where a test's partition log lives."""
    return str(tmp_path / "topic-0")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()

"""The storage state machine (tests/storage/test_log_stateful.py) over io_uring.

pytest does not parametrize unittest TestCases, so the storage conftest
cannot give the state machine a uring variant; this module runs a subclass of
it with the module's ``TestBackend`` swapped for ``UringTestBackend`` (the
same bookkeeping and fault injection, over the ring).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

STORAGE_TESTS = str(Path(__file__).resolve().parent.parent / "storage")
if STORAGE_TESTS not in sys.path:
    sys.path.insert(0, STORAGE_TESTS)

import test_log_stateful  # noqa: E402
from storage_support import UringTestBackend  # noqa: E402
from uring_support import requires_uring  # noqa: E402

from trioring.storage.log import DurableEnd  # noqa: E402

pytestmark = [pytest.mark.slow, requires_uring]


@pytest.fixture(autouse=True)
def uring_test_backend(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(test_log_stateful, "TestBackend", UringTestBackend)
    yield


class UringLogMachine(test_log_stateful.LogMachine):
    def concurrent_appends(self, data: object) -> None:
        """Not a rule here (this plain method hides the parent's rule).

        Over the ring a write is a real wait for a completion, so how
        concurrent appends group into writes depends on timing, and with it
        where segments roll. Hypothesis must replay a test case exactly, so
        a timing-dependent file layout made it fail with
        FlakyStrategyDefinition. Concurrent appends over the ring are
        covered by tests/storage/test_log.py's uring variants.
        """
        raise AssertionError("not a rule in the uring variant")

    def _open(self, discard_after: DurableEnd | None = None) -> None:
        super()._open(discard_after)
        assert isinstance(self.backend, UringTestBackend), "the log runs over the ring"


UringLogMachine.TestCase.settings = test_log_stateful.LogMachine.TestCase.settings
TestUringPartitionLogStateful = UringLogMachine.TestCase

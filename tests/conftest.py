"""Suite-wide hooks and settings.

``TRIORING_REQUIRE_URING=1`` (set by .ci/run) turns every "io_uring
unavailable" skip into a failure: CI must run the io_uring variants, and a
broken extension build must not pass as a run that quietly skipped them.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Generator

import pytest
from hypothesis import settings

URING_SKIP_REASON = "io_uring unavailable"
PLUGIN = "_trioring_pytestplugin"

# The trioring pytest plugin (tests/testing/ uses its fixtures) is loaded by
# its entry point where trioring is installed with it (nox installs this
# tree), and from here where it is not (an editable install made before the
# entry point existed). Never both: pytest refuses one module registered twice.
if not any(
    entry_point.value == PLUGIN for entry_point in importlib.metadata.entry_points(group="pytest11")
):
    pytest_plugins = [PLUGIN]


# No per-example deadline: it is a timed assertion, and the suite runs on two
# workers (pytest-xdist, noxfile.py) beside broker processes, where a 200 ms
# example can take longer without anything being wrong. Example counts stay
# as each test sets them.
settings.register_profile("trioring", deadline=None)
settings.load_profile("trioring")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if (
        report.skipped
        and os.environ.get("TRIORING_REQUIRE_URING") == "1"
        and URING_SKIP_REASON in str(report.longrepr)
    ):
        report.outcome = "failed"
        report.longrepr = (
            f"{report.longrepr}\nTRIORING_REQUIRE_URING=1: the io_uring variant must run here "
            "(is the extension built? see docs/uring.md)"
        )

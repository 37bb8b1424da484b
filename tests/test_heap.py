"""trioring/_heap.py: server processes keep freed heap for reuse (glibc)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc", reason="glibc's malloc parameters; elsewhere a no-op"
)

#: A Fetch on the copy path in miniature: three 1 MiB blocks (the read, the
#: batches cut from it, the answer) allocated, touched and freed, 50 times.
#: Prints the page faults of the 50 rounds after a first one.
CHURN = r"""
import resource, sys
from trioring._heap import keep_free_heap_for_reuse
print(keep_free_heap_for_reuse() if sys.argv[1] == "keep" else "default")

def churn():
    blocks = [bytes([index]) * (1 << 20) for index in range(3)]
    del blocks

churn()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(50):
    churn()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _churn(mode: str, **environment: str) -> tuple[str, int]:
    result = subprocess.run(
        [sys.executable, "-c", CHURN, mode],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, **environment},
    )
    applied, faults = result.stdout.split()
    return applied, int(faults)


def test_freed_blocks_are_reused_instead_of_faulted_in_again() -> None:
    _, default_faults = _churn("default")
    applied, kept_faults = _churn("keep")
    assert applied == "True"
    # With glibc's defaults each round gives most of the 3 MiB back and faults
    # them in again (about 480 of the 768 pages here); kept, none.
    assert default_faults > 50 * 200, default_faults
    assert kept_faults < 50 * 5, kept_faults


def test_the_operators_own_malloc_settings_stand() -> None:
    applied, faults = _churn("keep", MALLOC_TRIM_THRESHOLD_="131072")
    assert applied == "False"
    assert faults > 50 * 200, faults
    applied, _ = _churn("keep", GLIBC_TUNABLES="glibc.malloc.trim_threshold=131072")
    assert applied == "False"

"""Acknowledged data survives a real process being SIGKILLed mid-stream.

Two backends: the fallback (a real process crash: the page cache survives)
and the volatile backend, which keeps unsynced writes in process memory, so
the kill also loses everything not fdatasynced, as a power cut would.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trio

import trioring
from tests.crash_producer import TOPIC, record_value

CHILD = Path(__file__).with_name("crash_producer.py")
ACKS_PER_ROUND_MIN = 150
WAIT_SECONDS_MAX = 60.0


def _count_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _run_and_kill(data_dir: Path, acks: Path, backend: str, rng: random.Random) -> None:
    before = _count_lines(acks)
    child = subprocess.Popen(
        [sys.executable, str(CHILD), str(data_dir), str(acks), backend],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + WAIT_SECONDS_MAX
        while _count_lines(acks) - before < ACKS_PER_ROUND_MIN:
            if child.poll() is not None:
                raise AssertionError(f"producer exited early: {child.stderr.read().decode()}")
            if time.monotonic() > deadline:
                raise AssertionError("producer did not acknowledge enough records in time")
            time.sleep(0.01)
        # Kill at a random moment mid-stream, not right after a poll.
        time.sleep(rng.uniform(0, 0.05))
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=30)
        assert child.stderr is not None
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL


def _acknowledged(acks: Path) -> dict[int, tuple[str, int, int]]:
    acked: dict[int, tuple[str, int, int]] = {}
    for line in acks.read_text().splitlines():
        base, producer, sequence, count = line.split()
        acked[int(base)] = (producer, int(sequence), int(count))
    return acked


async def _read_all(data_dir: Path) -> list[trioring.Record]:
    async with trioring.open_broker(data_dir) as broker:
        records: list[trioring.Record] = []
        offset = 0
        end = await broker.list_offset(TOPIC, 0, "latest")
        while offset < end:
            fetched = await broker.fetch(TOPIC, 0, offset)
            records.extend(fetched.records)
            assert fetched.next_offset is not None
            offset = fetched.next_offset
        return records


def _check(data_dir: Path, acks: Path) -> int:
    records = trio.run(_read_all, data_dir)
    # Offsets are contiguous from 0 and every record is intact.
    assert [r.offset for r in records] == list(range(len(records)))
    by_offset = {r.offset: r for r in records}
    acked = _acknowledged(acks)
    for base, (producer, sequence, count) in acked.items():
        producer_index = int(producer.split(":")[0])
        for index in range(count):
            record = by_offset.get(base + index)
            assert record is not None, f"acknowledged offset {base + index} is missing"
            assert record.value == record_value(producer_index, sequence, index), (
                f"acknowledged offset {base + index} holds the wrong data"
            )
    # Per producer, acknowledged sequences appear in order.
    last_offset: dict[str, int] = {}
    for base, (producer, _sequence, _count) in sorted(
        acked.items(), key=lambda kv: (kv[1][0], kv[1][1])
    ):
        assert base > last_offset.get(producer, -1)
        last_offset[producer] = base
    return len(acked)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["fallback", "volatile"])
def test_acknowledged_records_survive_sigkill(tmp_path: Path, backend: str) -> None:
    rng = random.Random(os.getpid())
    data_dir = tmp_path / "data"
    acks = tmp_path / "acks"
    total = 0
    for _round in range(3):
        _run_and_kill(data_dir, acks, backend, rng)
        total = _check(data_dir, acks)
    assert total >= 3 * ACKS_PER_ROUND_MIN

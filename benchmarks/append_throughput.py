"""Append throughput of the produce path against the disk's own limits.

Batches of 100 x 1 KiB records go through the same path a Kafka produce
takes (handler validation with CRC check, coalesced append, group-commit
flush for acks="all"). In the same run, plain loops measure the disk's
limits at the same sizes:

- acks=1 is compared with a plain write loop of batch-sized writes;
- acks="all" is compared with a write+fdatasync loop that syncs after the
  same number of bytes as the broker's group commits did (equal bytes per
  fdatasync), so the ratio isolates trioring's overhead from the batching
  that group commit provides.

Each run writes the same number of bytes to a fresh file; files are deleted
and the page cache flushed between runs so every run starts equal. Each
trioring run is paired with a limit run right after it, and the ratio is the
median of the pairs' ratios: on a virtual machine the disk's speed drifts by
tens of percent within a minute, and pairing keeps that drift out of the
ratio.

    python benchmarks/append_throughput.py [--dir DIR] [--megabytes N] [--backend uring]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence

import attrs
import trio

import trioring
from trioring.protocol.records import CRC32C_IMPLEMENTATION, build_batch
from trioring.uring import FallbackBackend, UringBackend

RECORDS_PER_BATCH = 100
RECORD_BYTES = 1024


class CountingBackend(FallbackBackend):
    """The fallback backend, counting fdatasyncs of log segments."""

    def __init__(self, **options: object) -> None:
        super().__init__(**options)  # type: ignore[arg-type]
        self.log_syncs = 0
        self._log_fds: set[int] = set()

    async def open(self, path: str, flags: int, mode: int = 0o644) -> int:
        fd = await super().open(path, flags, mode)
        if path.endswith(".log"):
            self._log_fds.add(fd)
        return fd

    async def fdatasync(self, fd: int) -> None:
        if fd in self._log_fds:
            self.log_syncs += 1
        await super().fdatasync(fd)

    # pwritev is not wrapped: a layer there would add to every append.


class CountingUringBackend(CountingBackend, UringBackend):
    """The io_uring backend (default settings), counting fdatasyncs of log segments."""


BACKENDS: dict[str, type[CountingBackend]] = {
    "fallback": CountingBackend,
    "uring": CountingUringBackend,
}


@attrs.frozen
class Measurement:
    name: str
    bytes_written: int
    seconds: float
    cpu_seconds: float
    syncs: int = 0

    @property
    def megabytes_per_second(self) -> float:
        return self.bytes_written / self.seconds / 1e6

    @property
    def bytes_per_sync(self) -> float:
        return self.bytes_written / self.syncs if self.syncs else 0.0


def _drop_dirty_state(directory: str) -> None:
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)
    os.sync()


def plain_write_loop(directory: str, batch: bytes, total_bytes: int) -> Measurement:
    _drop_dirty_state(directory)
    fd = os.open(os.path.join(directory, "plain"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    cpu, start, written = time.process_time(), time.perf_counter(), 0
    while written < total_bytes:
        written += os.write(fd, batch)
    seconds = time.perf_counter() - start
    cpu = time.process_time() - cpu
    os.close(fd)
    return Measurement("plain write loop", written, seconds, cpu)


def write_sync_loop(
    directory: str, batch: bytes, total_bytes: int, bytes_per_sync: float
) -> Measurement:
    _drop_dirty_state(directory)
    fd = os.open(os.path.join(directory, "synced"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    cpu, start, written, syncs = time.process_time(), time.perf_counter(), 0, 0
    since_sync = 0
    while written < total_bytes:
        size = os.write(fd, batch)
        written += size
        since_sync += size
        if since_sync >= bytes_per_sync:
            os.fdatasync(fd)
            syncs += 1
            since_sync = 0
    if since_sync:
        os.fdatasync(fd)
        syncs += 1
    seconds = time.perf_counter() - start
    cpu = time.process_time() - cpu
    os.close(fd)
    return Measurement(
        f"write+fdatasync loop, {bytes_per_sync / 1024:.0f} KiB per sync",
        written,
        seconds,
        cpu,
        syncs,
    )


async def broker_run(
    directory: str,
    batch: bytes,
    total_bytes: int,
    producers: int,
    acks: int | str,
    backend_class: type[CountingBackend],
) -> Measurement:
    _drop_dirty_state(directory)
    backend = backend_class()
    config = trioring.BrokerConfig(data_dir=directory)
    async with trioring.open_broker(config, backend=backend) as broker:
        await broker.create_topic("bench", partitions=1)
        batches_total = total_bytes // len(batch)
        remaining = batches_total

        async def produce() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                await broker.produce_batch("bench", 0, batch, acks=acks)  # type: ignore[arg-type]

        syncs_before = backend.log_syncs
        cpu, start = time.process_time(), time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(producers):
                nursery.start_soon(produce)
        seconds = time.perf_counter() - start
        cpu = time.process_time() - cpu
        syncs = backend.log_syncs - syncs_before
    return Measurement(
        f"trioring acks={acks}, {producers} producer{'s' if producers > 1 else ''}",
        batches_total * len(batch),
        seconds,
        cpu,
        syncs,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default=None, help="directory on the disk to measure")
    parser.add_argument("--megabytes", type=int, default=512, help="per acks=1 run")
    parser.add_argument(
        "--sync-megabytes", type=int, default=256, help="per acks=all / fdatasync run"
    )
    parser.add_argument(
        "--repeat", type=int, default=5, help="paired runs per case; the median counts"
    )
    parser.add_argument("--producers", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--backend", choices=sorted(BACKENDS), default="fallback")
    options = parser.parse_args(argv)

    base = options.dir or tempfile.mkdtemp(prefix="trioring-bench-")
    directory = os.path.join(base, "work")
    records = [trioring.Record(value=os.urandom(RECORD_BYTES)) for _ in range(RECORDS_PER_BATCH)]
    batch = build_batch(records)
    total = options.megabytes << 20
    sync_total = options.sync_megabytes << 20

    backend_class = BACKENDS[options.backend]

    def median(runs: list[Measurement]) -> Measurement:
        return sorted(runs, key=lambda m: m.megabytes_per_second)[len(runs) // 2]

    # (trioring median, limit median, median of the pairs' ratios)
    rows: list[tuple[Measurement, Measurement, float]] = []
    try:
        for acks, size in ((1, total), ("all", sync_total)):
            for producers in options.producers:
                runs, limits = [], []
                for _ in range(options.repeat):
                    run = trio.run(
                        broker_run, directory, batch, size, producers, acks, backend_class
                    )
                    if acks == 1:
                        limit = plain_write_loop(directory, batch, size)
                    else:
                        limit = write_sync_loop(directory, batch, size, run.bytes_per_sync)
                    runs.append(run)
                    limits.append(limit)
                ratio = statistics.median(
                    r.megabytes_per_second / limit.megabytes_per_second
                    for r, limit in zip(runs, limits, strict=True)
                )
                rows.append((median(runs), median(limits), ratio))
    finally:
        shutil.rmtree(base, ignore_errors=True)

    print(
        f"batch: {RECORDS_PER_BATCH} x {RECORD_BYTES} B records = {len(batch)} bytes; "
        f"{options.backend} backend; CRC32C by {CRC32C_IMPLEMENTATION}; "
        f"median of {options.repeat} paired runs; "
        f"python {sys.version.split()[0]}, {os.cpu_count()} cores"
    )
    print()
    print(
        "| case | MB/s | CPU s per GB | KiB per fdatasync | limit (same run) | limit MB/s | ratio |"
    )
    print("|---|---:|---:|---:|---|---:|---:|")
    for run, limit, ratio in rows:
        per_sync = f"{run.bytes_per_sync / 1024:.0f}" if run.syncs else "-"
        print(
            f"| {run.name} | {run.megabytes_per_second:.0f} | "
            f"{run.cpu_seconds / (run.bytes_written / 1e9):.2f} | {per_sync} | {limit.name} | "
            f"{limit.megabytes_per_second:.0f} | {ratio:.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What ``trioring bench`` shows: a live progress bar on stderr (terminals only),
then the summary: tables on a terminal, one line and a tab-separated
histogram into a pipe, or one JSON object with ``--json``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import trio

from trioring._constants import CLI_BENCH_PROGRESS_SECONDS
from trioring.cli._bench._histogram import LatencyHistogram
from trioring.cli._bench._load import Control, Measurement
from trioring.cli._common import Output

#: The percentiles reported, and their names in the JSON summary.
PERCENTILES = (("p50", 50.0), ("p99", 99.0), ("p99_9", 99.9))
_BAR_WIDTH = 40


def _ms(value_us: int | float) -> float:
    return round(value_us / 1000, 3)


def latency_summary(histogram: LatencyHistogram | None) -> dict[str, Any] | None:
    if histogram is None or not histogram.count:
        return None
    summary: dict[str, Any] = {
        "count": histogram.count,
        "min": _ms(histogram.min_us),
        "mean": _ms(histogram.mean_us()),
    }
    for name, percent in PERCENTILES:
        summary[name] = _ms(histogram.percentile_us(percent))
    summary["max"] = _ms(histogram.max_us)
    return summary


def summary(measurement: Measurement, settings: dict[str, Any]) -> dict[str, Any]:
    """The run as one JSON-able object (docs/cli.md names every field)."""
    elapsed = measurement.elapsed_seconds()
    histogram = measurement.latency
    buckets = [] if histogram is None else histogram.summary_buckets()
    result: dict[str, Any] = {
        "mode": settings["mode"],
        "settings": settings,
        "records": measurement.records,
        "bytes": measurement.bytes,
        "elapsed_s": round(elapsed, 6),
        "records_per_s": round(measurement.records / elapsed, 1) if elapsed else 0.0,
        "mb_per_s": round(measurement.bytes / elapsed / 1e6, 3) if elapsed else 0.0,
        "interrupted": measurement.interrupted,
    }
    if settings["mode"] in ("produce", "e2e"):
        result["sent"] = measurement.sent
        result["failed"] = measurement.failed
    if settings["mode"] == "e2e":
        result["missing"] = measurement.missing
    if settings["mode"] == "consume":
        result["startup_s"] = round(measurement.startup_ns / 1e9, 6)
        result["reached_end"] = measurement.reached_end
    result["latency_ms"] = latency_summary(histogram)
    result["histogram"] = (
        [
            {
                "from_ms": _ms(low),
                "to_ms": None if high is None else _ms(high),
                "count": count,
            }
            for low, high, count in buckets
        ]
        if histogram is not None
        else None
    )
    return result


def _settings_text(settings: dict[str, Any]) -> str:
    parts = [
        f"topic {settings['topic']}",
        f"{settings['partitions']} partitions",
        f"{settings['processes']} process" + ("es" if settings["processes"] != 1 else ""),
    ]
    if settings["mode"] != "consume":
        parts.append(f"{settings['record_bytes']} B records")
    elif settings["record_bytes"] is not None:
        parts.append(f"{settings['record_bytes']:g} B records on average")
    if settings["mode"] != "consume" or settings.get("produce_first"):
        parts += [
            f"acks={settings['acks']}",
            f"compression {settings['compression']}",
            f"linger {settings['linger_ms']} ms",
            f"batch {settings['batch_bytes']} B",
        ]
        if settings["rate"] is not None:
            parts.append(f"rate {settings['rate']:g}/s")
    if settings.get("group"):
        parts.append(f"group {settings['group']}")
    return ", ".join(parts)


def _latency_text(latency: dict[str, Any] | None) -> str:
    if latency is None:
        return ""
    return (
        f"; latency ms p50 {latency['p50']:g} p99 {latency['p99']:g} "
        f"p99.9 {latency['p99_9']:g} max {latency['max']:g}"
    )


def _range_text(entry: dict[str, Any]) -> str:
    if entry["to_ms"] is None:
        return f">= {entry['from_ms']:g} ms"
    return f"{entry['from_ms']:g}-{entry['to_ms']:g} ms"


def write_summary(output: Output, result: dict[str, Any]) -> None:
    if output.json_output:
        output.json(result)
        return
    settings = result["settings"]
    latency = result["latency_ms"]
    histogram = result["histogram"] or []
    total = sum(entry["count"] for entry in histogram)
    if not output.terminal:
        extra = "" if not result["interrupted"] else " (interrupted)"
        output.write(
            f"bench {result['mode']}: {result['records']} records in {result['elapsed_s']:.2f} s"
            f"{extra}: {result['records_per_s']:.0f} records/s, {result['mb_per_s']:.1f} MB/s"
            f"{_latency_text(latency)} ({_settings_text(settings)})"
        )
        if histogram:
            output.table(
                ["from_ms", "to_ms", "records", "percent"],
                [
                    [
                        f"{entry['from_ms']:g}",
                        "" if entry["to_ms"] is None else f"{entry['to_ms']:g}",
                        entry["count"],
                        f"{100 * entry['count'] / total:.2f}",
                    ]
                    for entry in histogram
                ],
            )
        return
    rows: list[list[object]] = [
        ["records", f"{result['records']:,}"],
        [
            "time",
            f"{result['elapsed_s']:.2f} s" + (" (interrupted)" if result["interrupted"] else ""),
        ],
        ["records/s", f"{result['records_per_s']:,.0f}"],
        ["MB/s", f"{result['mb_per_s']:,.1f}"],
    ]
    if "startup_s" in result:
        rows.append(["start-up", f"{result['startup_s']:.2f} s"])
    if result.get("failed"):
        rows.append(["failed", f"{result['failed']:,}"])
    if result.get("missing"):
        rows.append(["missing", f"{result['missing']:,}"])
    if latency is not None:
        what = "end-to-end latency" if result["mode"] == "e2e" else "latency"
        for name, label in (("p50", "p50"), ("p99", "p99"), ("p99_9", "p99.9"), ("max", "max")):
            rows.append([f"{what} {label}", f"{latency[name]:g} ms"])
    output.write(f"trioring bench {result['mode']}: {_settings_text(settings)}")
    output.table(["measure", "value"], rows)
    if histogram:
        peak = max(entry["count"] for entry in histogram)
        output.table(
            ["latency", "records", "%", ""],
            [
                [
                    _range_text(entry),
                    f"{entry['count']:,}",
                    f"{100 * entry['count'] / total:.1f}",
                    "█" * round(_BAR_WIDTH * entry["count"] / peak),
                ]
                for entry in histogram
            ],
        )


async def show_progress(
    mode: str,
    control: Control,
    live: Callable[[], tuple[int, int]],
    *,
    count: int | None,
    seconds: float | None,
) -> None:
    """A progress bar on stderr until cancelled; ``live()`` is (records, bytes) so far."""
    from rich.console import Console  # noqa: PLC0415 - terminals only: 50 ms to import
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn  # noqa: PLC0415

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[detail]}"),
        console=Console(stderr=True),
        transient=True,
    ) as progress:
        task = progress.add_task(f"bench {mode}", total=count or seconds, detail="connecting")
        while True:
            await trio.sleep(CLI_BENCH_PROGRESS_SECONDS)
            if control.started_at is None:
                continue
            records, size = live()
            elapsed = max(trio.current_time() - control.started_at, 1e-9)
            done = records if count is not None else min(elapsed, seconds or 0.0)
            progress.update(
                task,
                completed=done,
                detail=f"{records:,} records  {records / elapsed:,.0f}/s  "
                f"{size / elapsed / 1e6:,.1f} MB/s",
            )

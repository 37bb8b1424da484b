"""``trioring bench produce|consume|e2e``: a load generator on the Trio client.

It measures throughput (records/s, MB/s of record values) and latency
(``_load`` says what is timed) against trioring or any Kafka broker, in one
process or several (``_workers``), and reports a summary (``_report``) with
percentiles from a bounded histogram (``_histogram``). docs/cli.md
documents every flag and number.

Ctrl-C ends the measured load early: the summary of what was measured is
still written, and the exit code is 130, so a script can tell a cut-short
run from a whole one. A second Ctrl-C aborts at once.
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

import trio
from kio.schema.errors import ErrorCode

from trioring._constants import (
    CLI_BENCH_PARTITIONS_DEFAULT,
    CLI_BENCH_PROCESSES_MAX,
    CLI_BENCH_RECORD_BYTES_DEFAULT,
    CLI_BENCH_RECORD_BYTES_MAX,
    CLI_BENCH_SECONDS_DEFAULT,
    PRODUCER_BATCH_BYTES_DEFAULT,
    PRODUCER_LINGER_MS_DEFAULT,
)
from trioring.cli._bench._load import (
    STAMP_BYTES,
    Control,
    LoadSettings,
    Measurement,
    run_load,
)
from trioring.cli._bench._report import show_progress, summary, write_summary
from trioring.cli._bench._workers import Workers, serve_as_worker
from trioring.cli._common import (
    EXIT_INTERRUPTED,
    CommandError,
    Output,
    UsageError,
    bootstrap_of,
    check_reachable,
    note,
)
from trioring.client import Admin, open_admin
from trioring.errors import KafkaError

__all__ = ["add_parser"]

TOPIC_DEFAULT = "trioring-bench"
_MODES = {
    "produce": (
        "send records as fast as the broker takes them (or at --rate)",
        "Send records to the topic (created with --partitions if missing) for --seconds "
        "or --count, and report records/s, MB/s and the latency from send to "
        "acknowledgement.",
    ),
    "consume": (
        "read records from the beginning of the topic (or as a --group)",
        "Read the topic's records from the beginning (or from a group's committed "
        "offsets) for --seconds or --count, and report records/s and MB/s. The topic "
        "must hold them: fill it with 'trioring bench produce' or --produce-first.",
    ),
    "e2e": (
        "produce and consume at once: end-to-end latency",
        "Produce and consume at once, and report the latency from the creation of each "
        "record (a timestamp in its first 8 bytes) to its consumption, with throughput.",
    ),
}


def _bench_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("-t", "--topic", default=TOPIC_DEFAULT, help="default: %(default)s")
    parent.add_argument(
        "--partitions",
        type=int,
        metavar="N",
        help="partitions of the topic when the bench creates it "
        f"(default: {CLI_BENCH_PARTITIONS_DEFAULT}); an existing topic is used as it is",
    )
    parent.add_argument(
        "-s",
        "--record-bytes",
        type=int,
        default=CLI_BENCH_RECORD_BYTES_DEFAULT,
        metavar="BYTES",
        help="bytes of each record's value (default: %(default)s)",
    )
    amount = parent.add_mutually_exclusive_group()
    amount.add_argument(
        "-n", "--count", type=int, metavar="N", help="records in all (over every process)"
    )
    amount.add_argument(
        "-d",
        "--seconds",
        type=float,
        metavar="S",
        help=f"how long to run (default: {CLI_BENCH_SECONDS_DEFAULT:g} unless --count is given)",
    )
    parent.add_argument(
        "--acks", choices=["0", "1", "all"], default="all", help="default: %(default)s"
    )
    parent.add_argument(
        "-z",
        "--compression",
        choices=["none", "gzip", "snappy", "lz4", "zstd"],
        default="none",
        help="default: %(default)s (values are random bytes: this measures its cost, "
        "not its savings)",
    )
    parent.add_argument(
        "--linger-ms",
        type=int,
        default=PRODUCER_LINGER_MS_DEFAULT,
        metavar="MS",
        help="linger.ms (default: %(default)s)",
    )
    parent.add_argument(
        "--batch-bytes",
        type=int,
        default=PRODUCER_BATCH_BYTES_DEFAULT,
        metavar="BYTES",
        help="batch.size (default: %(default)s)",
    )
    parent.add_argument(
        "-P",
        "--processes",
        type=int,
        default=1,
        metavar="N",
        help="run the load in N processes at once and add up what they measure "
        "(default: %(default)s)",
    )
    parent.add_argument(
        "--rate",
        type=float,
        metavar="RECORDS/S",
        help="send at most this many records a second, over every process (default: no cap)",
    )
    parent.add_argument(
        "--json", action="store_true", help="write one JSON object to stdout, nothing else"
    )
    # A worker process of --processes: how its parent starts it (see _workers).
    parent.add_argument("--worker", metavar="I/N", help=argparse.SUPPRESS)
    parent.add_argument("--worker-partitions", metavar="P,...", help=argparse.SUPPRESS)
    return parent


def add_parser(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    bench = commands.add_parser(
        "bench",
        help="measure throughput and latency: produce, consume or e2e",
        description="A load generator on trioring's client, against trioring or any Kafka "
        "broker. Ctrl-C ends a run early and still reports it (exit code 130).",
    )
    modes = bench.add_subparsers(dest="mode", metavar="MODE", required=True)
    shared = _bench_parent()
    for mode, (summary_help, description) in _MODES.items():
        parser = modes.add_parser(
            mode, parents=[*parents, shared], help=summary_help, description=description
        )
        if mode == "consume":
            parser.add_argument(
                "-g",
                "--group",
                help="read as a member of this consumer group, from its committed offsets "
                "(where none: from the beginning), committing what it read",
            )
            parser.add_argument(
                "--produce-first",
                action="store_true",
                help="first fill the topic with --count records (or for --seconds), with "
                "the producer flags",
            )
        parser.set_defaults(run=run_bench)


# --- checking and planning ---------------------------------------------------------------


def _check_options(options: argparse.Namespace) -> None:
    mode = options.mode
    if options.count is None and options.seconds is None:
        options.seconds = CLI_BENCH_SECONDS_DEFAULT
    if options.seconds is not None and not options.seconds > 0:
        raise UsageError(f"--seconds must be more than 0, not {options.seconds}")
    for flag, value in (
        ("--count", options.count),
        ("--partitions", options.partitions),
        ("--batch-bytes", options.batch_bytes),
        ("--processes", options.processes),
    ):
        if value is not None and value < 1:
            raise UsageError(f"{flag} must be 1 or more, not {value}")
    if options.linger_ms < 0:
        raise UsageError(f"--linger-ms must be 0 or more, not {options.linger_ms}")
    smallest = STAMP_BYTES if mode == "e2e" else 0
    if not smallest <= options.record_bytes <= CLI_BENCH_RECORD_BYTES_MAX:
        why = " (e2e keeps a timestamp in the first 8)" if mode == "e2e" else ""
        raise UsageError(
            f"--record-bytes must be {smallest} to {CLI_BENCH_RECORD_BYTES_MAX}{why}, "
            f"not {options.record_bytes}"
        )
    if options.rate is not None and not options.rate > 0:
        raise UsageError(f"--rate must be more than 0, not {options.rate}")
    if options.processes > CLI_BENCH_PROCESSES_MAX:
        raise UsageError(
            f"--processes must be at most {CLI_BENCH_PROCESSES_MAX}, not {options.processes}"
        )
    if options.count is not None and options.count < options.processes:
        raise UsageError(
            f"--count {options.count} is fewer records than --processes {options.processes}"
        )
    if mode == "consume" and options.group is not None and options.processes > 1:
        raise UsageError(
            "--group with --processes is not supported: the processes would need to "
            "agree when the group has read --count; use one process, or no --group"
        )


def _report_settings(
    options: argparse.Namespace, partitions: int, measurement: Measurement
) -> dict[str, Any]:
    """The settings that shape the numbers, for the summary."""
    record_bytes: float | None = options.record_bytes
    if options.mode == "consume":
        # What was read, whoever wrote it: --record-bytes sizes only the records
        # the bench writes (--produce-first's may be among others).
        read = measurement.records
        record_bytes = round(measurement.bytes / read, 1) if read else None
    return {
        "mode": options.mode,
        "bootstrap": options.bootstrap,
        "topic": options.topic,
        "partitions": partitions,
        "record_bytes": record_bytes,
        "count": options.count,
        "seconds": options.seconds,
        "acks": options.acks,
        "compression": options.compression,
        "linger_ms": options.linger_ms,
        "batch_bytes": options.batch_bytes,
        "processes": options.processes,
        "rate": options.rate,
        "group": getattr(options, "group", None),
        "produce_first": getattr(options, "produce_first", False),
    }


def _load_settings(
    options: argparse.Namespace,
    *,
    mode: str | None = None,
    read: tuple[int, ...] = (),
    write: tuple[int, ...] = (),
    ends: dict[int, int] | None = None,
) -> LoadSettings:
    return LoadSettings(
        mode=mode or options.mode,
        topic=options.topic,
        record_bytes=options.record_bytes,
        count=options.count,
        seconds=options.seconds,
        acks=options.acks,
        compression=None if options.compression == "none" else options.compression,
        linger_ms=options.linger_ms,
        batch_bytes=options.batch_bytes,
        rate=options.rate,
        read_partitions=read,
        write_partitions=write,
        group=getattr(options, "group", None),
        end_offsets=dict(ends or {}),
    )


async def _partitions(admin: Admin, options: argparse.Namespace, *, create: bool) -> list[int]:
    """The topic's partitions; created with ``--partitions`` first if missing and ``create``."""
    topic = options.topic
    try:
        info = await admin.describe_topic(topic)
    except KafkaError as error:
        if error.kafka_error_code != ErrorCode.unknown_topic_or_partition:
            raise
        if not create:
            raise CommandError(
                f"topic {topic!r} does not exist: fill it first with 'trioring bench produce "
                f"--topic {topic}', or give --produce-first"
            ) from None
        try:
            await admin.create_topic(
                topic, partitions=options.partitions or CLI_BENCH_PARTITIONS_DEFAULT
            )
        except KafkaError as creating:
            if creating.kafka_error_code != ErrorCode.topic_already_exists:
                raise  # another run created it meanwhile: use it
        info = await admin.describe_topic(topic)
    else:
        if options.partitions is not None and options.partitions != len(info.partitions):
            print(
                f"trioring: note: topic {topic!r} exists with {len(info.partitions)} "
                f"partitions; --partitions {options.partitions} is not applied",
                file=sys.stderr,
            )
    return sorted(partition.partition for partition in info.partitions)


def _shares(total: int, weights: list[int]) -> list[int]:
    """``total`` split in proportion to ``weights``, no share above its weight
    when ``total`` <= sum(weights); evenly when every weight is 0."""
    if not any(weights):
        weights = [1] * len(weights)
    whole = sum(weights)
    shares = [total * weight // whole for weight in weights]
    rest = total - sum(shares)
    for index in sorted(range(len(weights)), key=lambda i: shares[i] - weights[i]):
        if not rest:
            break
        shares[index] += 1
        rest -= 1
    return shares


def _worker_command(
    options: argparse.Namespace,
    index: int,
    *,
    count: int | None,
    rate: float | None,
    partitions: list[int],
) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "trioring",
        "bench",
        options.mode,
        "--bootstrap",
        options.bootstrap,
        "--log-level",
        options.log_level,
        "--topic",
        options.topic,
        "--record-bytes",
        str(options.record_bytes),
        "--acks",
        options.acks,
        "--compression",
        options.compression,
        "--linger-ms",
        str(options.linger_ms),
        "--batch-bytes",
        str(options.batch_bytes),
        "--worker",
        f"{index}/{options.processes}",
    ]
    if count is not None:
        command += ["--count", str(count)]
    else:
        command += ["--seconds", repr(options.seconds)]
    if rate is not None:
        command += ["--rate", repr(rate)]
    if partitions:
        command += ["--worker-partitions", ",".join(map(str, partitions))]
    return command


def _worker_commands(
    options: argparse.Namespace, partitions: list[int], available: dict[int, int]
) -> list[list[str]]:
    """A command line per worker process: --count and --rate split between them;
    for consume and e2e, partitions of its own (the i-th, i+N-th, ...), and for
    consume a share of --count in proportion to what its partitions hold."""
    processes = options.processes
    split = [partitions[index::processes] for index in range(processes)]
    counts: list[int | None] = [None] * processes
    if options.count is not None:
        weights = (
            [sum(available[p] for p in part) for part in split]
            if options.mode == "consume"
            else [1] * processes
        )
        counts = list(_shares(options.count, weights))
    rate = None if options.rate is None else options.rate / processes
    return [
        _worker_command(
            options,
            index,
            count=counts[index],
            rate=rate,
            partitions=split[index] if options.mode != "produce" else [],
        )
        for index in range(processes)
    ]


# --- running -----------------------------------------------------------------------------


async def _serve_worker(options: argparse.Namespace) -> int:
    bootstrap = bootstrap_of(options)
    partitions = tuple(int(p) for p in (options.worker_partitions or "").split(",") if p)
    ends: dict[int, int] = {}
    if options.mode == "consume":
        async with open_admin(bootstrap, client_id="trioring-bench") as admin:
            offsets = await admin.list_offsets([(options.topic, p) for p in partitions], "latest")
        ends = {partition: offset for (_, partition), offset in offsets.items()}
    write = partitions if options.mode == "e2e" else ()
    settings = _load_settings(options, read=partitions, write=write, ends=ends)
    return await serve_as_worker(bootstrap, settings)


async def _no_wait() -> None:
    await trio.lowlevel.checkpoint()


async def _fill(bootstrap: str, options: argparse.Namespace) -> Measurement:
    """--produce-first: the producer load, in this process, before the measured reading."""
    filled = Measurement("produce")
    await run_load(bootstrap, _load_settings(options, mode="produce"), filled, Control(), _no_wait)
    if filled.failed:
        raise CommandError(
            f"filling the topic: {filled.failed} of {filled.sent} records were not "
            f"delivered; the first: {filled.first_error}"
        )
    note(f"filled topic {options.topic!r} with {filled.records} records")
    return filled


async def run_bench(options: argparse.Namespace) -> int:
    _check_options(options)
    if options.worker is not None:
        return await _serve_worker(options)
    output = Output(json_output=options.json)
    mode = options.mode
    bootstrap = await check_reachable(options)
    produce_first = mode == "consume" and options.produce_first
    async with open_admin(bootstrap, client_id="trioring-bench") as admin:
        partitions = await _partitions(admin, options, create=mode != "consume" or produce_first)
        if produce_first:
            await _fill(bootstrap, options)
        ends: dict[int, int] = {}
        available: dict[int, int] = {}
        if mode == "consume":
            keys = [(options.topic, p) for p in partitions]
            latest = await admin.list_offsets(keys, "latest")
            earliest = await admin.list_offsets(keys, "earliest")
            ends = {p: latest[(options.topic, p)] for p in partitions}
            available = {p: ends[p] - earliest[(options.topic, p)] for p in partitions}
    held = sum(available.values())
    if (
        mode == "consume"
        and options.group is None
        and options.count is not None
        and held < options.count
    ):
        raise CommandError(
            f"topic {options.topic!r} holds {held} records, fewer "
            f"than --count {options.count}: fill it first with 'trioring bench produce "
            f"--topic {options.topic} --count {options.count}', or give --produce-first"
        )
    processes = options.processes
    if mode != "produce" and processes > len(partitions):
        raise UsageError(
            f"--processes {processes} is more than the {len(partitions)} partitions of "
            f"{options.topic!r}: each process {'reads' if mode == 'consume' else 'uses'} "
            "partitions of its own"
        )
    control = Control()
    measurement = Measurement(mode)
    workers = Workers()
    live = (lambda: (measurement.records, measurement.bytes)) if processes == 1 else workers.live

    async def watch_interrupts(nursery: trio.Nursery) -> None:
        with trio.open_signal_receiver(signal.SIGINT) as signals:
            async for _ in signals:
                if control.interrupted:
                    raise KeyboardInterrupt
                note("stopping: Ctrl-C again to abort")
                control.stop()
                nursery.start_soon(workers.stop)

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch_interrupts, nursery)
            if sys.stderr.isatty():
                nursery.start_soon(
                    lambda: show_progress(
                        mode, control, live, count=options.count, seconds=options.seconds
                    )
                )
            if processes == 1:
                read = tuple(partitions) if mode != "produce" else ()
                settings = _load_settings(options, read=read, ends=ends)
                await run_load(bootstrap, settings, measurement, control, _no_wait)
            else:
                commands = _worker_commands(options, partitions, available)
                for result in await workers.run(commands, control):
                    measurement.merge(result)
                measurement.interrupted = measurement.interrupted or control.interrupted
            nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        if group.subgroup(KeyboardInterrupt) is not None:
            raise KeyboardInterrupt from None
        raise
    reported = _report_settings(options, len(partitions), measurement)
    write_summary(output, summary(measurement, reported))
    output.flush()
    _check_outcome(options, measurement)
    return EXIT_INTERRUPTED if measurement.interrupted else 0


def _check_outcome(options: argparse.Namespace, measurement: Measurement) -> None:
    """A run that did not do what was asked fails (exit 1), after its summary."""
    if measurement.failed:
        raise CommandError(
            f"{measurement.failed} of {measurement.sent} records were not delivered; "
            f"the first: {measurement.first_error}"
        )
    if measurement.missing:
        raise CommandError(
            f"{measurement.missing} of {measurement.sent} records produced were not "
            "consumed within the drain time after the last send"
        )
    if measurement.unassigned:
        raise CommandError(
            f"group {options.group!r} gave this member none of the partitions of topic "
            f"{options.topic!r}: its other members hold them all, so there is nothing to read"
        )
    wanted = options.count
    if (
        options.mode == "consume"
        and not measurement.interrupted
        and wanted is not None
        and measurement.records < wanted
    ):
        where = "past the group's committed offsets" if options.group else "from its beginning"
        raise CommandError(
            f"topic {options.topic!r} held only {measurement.records} records {where}, "
            f"fewer than --count {wanted}: produce more first (or give --produce-first)"
        )

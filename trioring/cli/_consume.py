"""``trioring consume TOPIC``: records to stdout, as kcat -C.

Without ``--follow`` it reads to the end offsets it found at start and exits
(kcat's ``-e``); with it, it waits for new records until interrupted. Values
are written as the bytes they are, one record per line by default.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import string
import sys
from collections.abc import Callable
from typing import Any

import attrs
import trio

from trioring._constants import (
    CLI_CONSUME_BATCH_RECORDS_MAX,
    CLI_CONSUME_END_CHECK_SECONDS,
    CLI_CONSUME_UNASSIGNED_SECONDS,
    CLI_CONSUME_WRITE_GRACE_SECONDS,
)
from trioring.cli._common import (
    ENCODING_ERRORS,
    SignalStop,
    UsageError,
    check_reachable,
    iso_time_ms,
    note,
    text,
    topic_name,
)
from trioring.client import Consumer, ConsumerRecord, open_admin, open_consumer

#: The placeholders of ``--format``; ``{value}\n`` is the default.
FIELDS = ("topic", "partition", "offset", "timestamp", "key", "value", "headers")
FORMAT_DEFAULT = "{value}"


def add_parser(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    consume = commands.add_parser(
        "consume",
        parents=parents,
        help="write a topic's records to stdout",
        description="Write a topic's records to stdout, one per line. Without --follow it "
        "stops at the end offsets it found when it started. It starts at each "
        "partition's end unless told otherwise (as kafka-console-consumer); with "
        "--group, at the group's committed offsets.",
    )
    consume.add_argument("topic", type=topic_name)
    consume.add_argument(
        "-g",
        "--group",
        help="read as a member of this consumer group, committing what it wrote",
    )
    start = consume.add_mutually_exclusive_group()
    start.add_argument(
        "--from-beginning",
        action="store_true",
        help="start at each partition's log start (with --group: where nothing is committed)",
    )
    start.add_argument(
        "-o",
        "--offset",
        type=int,
        metavar="N",
        help="start at offset N; a negative N is N records before the end",
    )
    start.add_argument(
        "--timestamp",
        metavar="MS|ISO-8601",
        help="start at the first record at or after this time (ms since the epoch, "
        "or e.g. 2026-12-01T10:00:00+00:00)",
    )
    consume.add_argument(
        "-p",
        "--partition",
        type=int,
        action="append",
        help="read only this partition (repeat for more; default: all)",
    )
    consume.add_argument("-c", "--count", type=int, metavar="N", help="exit after N records")
    consume.add_argument(
        "-f",
        "--follow",
        action="store_true",
        help="keep waiting for new records (until Ctrl-C or --count)",
    )
    consume.add_argument(
        "-F",
        "--format",
        default=FORMAT_DEFAULT,
        help="each record as this text, a newline added: placeholders "
        + ", ".join("{" + field + "}" for field in FIELDS)
        + r" (\t and \n understood); 'json' for JSON lines (default: %(default)s)",
    )
    consume.set_defaults(run=consume_records)


def _formatter(spec: str) -> Callable[[ConsumerRecord], bytes]:
    """The function that writes one record, checked before anything is read."""
    if spec == "json":

        def as_json(record: ConsumerRecord) -> bytes:
            # JSON holds text: bytes that are not UTF-8 become U+FFFD here; a
            # --format keeps them as they are.
            def decoded(data: bytes | None) -> str | None:
                return None if data is None else data.decode("utf-8", "replace")

            line = json.dumps(
                {
                    "topic": record.topic,
                    "partition": record.partition,
                    "offset": record.offset,
                    "timestamp": record.timestamp_ms,
                    "key": decoded(record.key),
                    "value": decoded(record.value),
                    "headers": [[k, decoded(v)] for k, v in record.headers],
                },
                ensure_ascii=False,
            )
            return line.encode() + b"\n"

        return as_json
    template = spec.replace("\\t", "\t").replace("\\n", "\n") + "\n"
    if template == "{value}\n":
        return lambda record: (record.value or b"") + b"\n"
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as error:
        raise UsageError(f"--format {spec!r}: {error}") from None
    for _, field, _, conversion in parsed:
        if field is not None and field not in FIELDS:
            raise UsageError(
                f"--format {spec!r}: unknown placeholder {{{field}}}; the placeholders are "
                + ", ".join("{" + name + "}" for name in FIELDS)
            )
        if conversion is not None:
            raise UsageError(f"--format {spec!r}: conversions such as !{conversion} are not taken")

    def formatted(record: ConsumerRecord) -> bytes:
        line = template.format(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            timestamp=record.timestamp_ms,
            key=text(record.key),
            value=text(record.value),
            headers=",".join(f"{k}={text(v)}" for k, v in record.headers),
        )
        return line.encode("utf-8", ENCODING_ERRORS)

    try:  # a format spec such as {offset:q} fails here, not on the first record
        formatted(ConsumerRecord("t", 0, 0, b"", b"", (), 0))
    except (ValueError, TypeError) as error:
        raise UsageError(f"--format {spec!r}: {error}") from None
    return formatted


def _timestamp_ms(value: str) -> int:
    """--timestamp: milliseconds since the epoch, or ISO-8601."""
    return int(value) if value.isdigit() else iso_time_ms(value, "--timestamp")


def _check_options(options: argparse.Namespace) -> None:
    if options.group is not None and (
        options.offset is not None or options.timestamp is not None or options.partition
    ):
        raise UsageError(
            "--group reads what the group assigns, from its committed offsets: drop "
            "--offset/--timestamp/--partition, or move the group with "
            "'trioring groups reset-offsets'"
        )
    if options.count is not None and options.count < 1:
        raise UsageError(f"--count must be 1 or more, not {options.count}")


async def _position_from(
    consumer: Consumer,
    options: argparse.Namespace,
    bounds: dict[tuple[str, int], tuple[int, int]],
) -> None:
    """Where an assigned consumer starts (a group member starts at its commits).

    ``bounds``: each partition's (log start, end) when the command started. An
    offset is kept within them, as kcat does: before the log start (deleted
    by retention or DeleteRecords) it starts at the log start, past the end
    at the end.
    """
    if options.from_beginning:
        await consumer.seek_to_beginning()
    elif options.timestamp is not None:
        await consumer.seek_to_timestamp(_timestamp_ms(options.timestamp))
    elif options.offset is not None:
        for tp in consumer.assignment():
            start, end = bounds[tp]
            wanted = end + options.offset if options.offset < 0 else options.offset
            consumer.seek(*tp, min(max(wanted, start), end))
    else:
        await consumer.seek_to_end()


@attrs.define
class _Written:
    """Whether a batch's write went through whole (set by the writing thread)."""

    whole: bool = False


async def _write(fd: int, data: bytes, written: _Written) -> None:
    """Write all of ``data`` to ``fd`` at once (a pipe's reader sees each batch as it
    comes), from a thread: a reader that stops reading blocks the write, and a
    blocked event loop would stop the group's heartbeats (the member would be
    dropped from the group). On Ctrl-C the command goes on without waiting for a
    write its reader never takes. The descriptor, not sys.stdout: an abandoned
    write must hold no lock that the exit's flush of sys.stdout would wait for.
    ``written.whole`` says afterwards whether it all went, cancelled or not (a
    cancel may land just as the thread finishes)."""

    token = trio.lowlevel.current_trio_token()
    finished = trio.Event()

    def write() -> None:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            written.whole = True
        finally:
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(finished.set, trio_token=token)

    try:
        await trio.to_thread.run_sync(write, abandon_on_cancel=True)
    finally:
        if not written.whole:
            # Cancelled: the thread may be finishing this very moment (its reader
            # has the bytes already). A moment's grace, so that a batch that went
            # out is counted as written (and committed), not read again.
            with trio.CancelScope(shield=True), trio.move_on_after(CLI_CONSUME_WRITE_GRACE_SECONDS):
                await finished.wait()


def _unread(consumer: Consumer, records: list[ConsumerRecord]) -> None:
    """Give back records whose write was cut short: the consumer's position goes
    back to the first of them, so that leaving the group commits only what was
    written (the rest is read again: at least once)."""
    first: dict[tuple[str, int], int] = {}
    for record in records:
        first.setdefault((record.topic, record.partition), record.offset)
    owned = consumer.assignment()
    for (topic, partition), offset in first.items():
        if (topic, partition) in owned:
            consumer.seek(topic, partition, offset)


async def _at_end(consumer: Consumer, ends: dict[tuple[str, int], int]) -> bool:
    """Whether every partition the consumer reads has been read to its end at start."""
    assigned = consumer.assignment()
    if not assigned:
        return False  # a group member before its first assignment
    for topic, partition in assigned:
        end = ends.get((topic, partition))
        if end is not None and await consumer.position(topic, partition) < end:
            return False
    return True


async def consume_records(options: argparse.Namespace) -> int:
    _check_options(options)
    write_record = _formatter(options.format)
    bootstrap = await check_reachable(options)
    async with open_admin(bootstrap, client_id="trioring-cli") as admin:
        info = await admin.describe_topic(options.topic)  # an unknown topic fails here
        partitions = sorted(p.partition for p in info.partitions)
        for partition in options.partition or ():
            if partition not in partitions:
                raise UsageError(
                    f"topic {options.topic!r} has no partition {partition} "
                    f"(it has {len(partitions)})"
                )
        chosen = sorted(set(options.partition)) if options.partition else partitions
        keys = [(options.topic, p) for p in chosen]
        # Asked only when used: the end to stop at, and both bounds for an offset.
        offset_given = options.group is None and options.offset is not None
        ends = {}
        if offset_given or not options.follow:
            ends = await admin.list_offsets(keys, "latest")
        starts = await admin.list_offsets(keys, "earliest") if offset_given else {}
    sys.stdout.flush()  # nothing of ours may wait in its buffer: records go to the fd
    output = sys.stdout.fileno()
    consumed = 0
    stop = SignalStop()
    #: Per partition, the offset after the last record written out: what a group
    #: member commits at the end (a write cut short by Ctrl-C is not written).
    written: dict[tuple[str, int], int] = {}
    group = options.group
    #: When the group last gave this member its partitions (None: not yet).
    assigned_at: float | None = None

    async def on_assigned(partitions: set[tuple[str, int]]) -> None:
        nonlocal assigned_at
        assigned_at = trio.current_time()
        await trio.lowlevel.checkpoint()

    async with (
        stop.watching(),
        open_consumer(
            bootstrap,
            group_id=group,
            topics=[options.topic] if group is not None else None,
            auto_offset_reset="earliest" if options.from_beginning else "latest",
            on_assigned=on_assigned if group is not None else None,
            client_id="trioring-cli",
        ) as consumer,
    ):
        if group is None:
            consumer.assign(keys)
            bounds = {tp: (starts[tp], ends[tp]) for tp in starts}
            await _position_from(consumer, options, bounds)

        with stop.scope:
            while not (options.count is not None and consumed >= options.count):
                wanted = CLI_CONSUME_BATCH_RECORDS_MAX
                if options.count is not None:
                    wanted = min(wanted, options.count - consumed)
                records = await consumer.getmany(
                    timeout_s=CLI_CONSUME_END_CHECK_SECONDS, max_records=wanted
                )
                if records:
                    batch = _Written()
                    try:
                        await _write(output, b"".join(map(write_record, records)), batch)
                    finally:
                        if batch.whole:  # these may be committed
                            consumed += len(records)
                            for record in records:
                                written[(record.topic, record.partition)] = record.offset + 1
                        else:  # cut short: they are read again
                            _unread(consumer, records)
                if options.follow:
                    continue
                if await _at_end(consumer, ends):
                    break
                if (
                    assigned_at is not None
                    and not consumer.assignment()
                    and trio.current_time() - assigned_at >= CLI_CONSUME_UNASSIGNED_SECONDS
                ):
                    # Other members hold every partition: there is nothing for this one
                    # to read to the end of. (A member that joins a group may get
                    # nothing at first, then partitions a moment later: hence the wait.)
                    note(
                        f"the group {group!r} assigned this member no partition "
                        f"(other members hold all {len(partitions)}): nothing to read"
                    )
                    break
        if group is not None:
            # Commit what was written of the partitions this member still owns
            # (a revoked one's were committed as it went; committing them again
            # could move back its new owner's offset). Auto-commit alone would
            # leave the last read uncommitted, as Java's does until the next poll.
            # A write cut short by Ctrl-C or a closed pipe is not committed: those
            # records are read again (at least once).
            owned = consumer.assignment()
            finished = {tp: offset for tp, offset in written.items() if tp in owned}
            if finished:
                await consumer.commit(finished)
    note(f"consumed {consumed} records from {options.topic!r}")
    return stop.exit_code()

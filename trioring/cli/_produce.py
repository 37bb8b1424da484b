"""``trioring produce TOPIC``: one record per input line, as kcat -P."""

from __future__ import annotations

import argparse
import collections
import os
import sys
from collections.abc import AsyncIterator
from typing import Any

import trio

from trioring._constants import (
    CLI_PRODUCE_LINE_BYTES_MAX,
    CLI_PRODUCE_READ_BYTES,
    CLI_PRODUCE_UNCHECKED_RECORDS_MAX,
)
from trioring.cli._common import (
    CommandError,
    SignalStop,
    UsageError,
    check_reachable,
    note,
    parse_pairs,
    topic_name,
)
from trioring.client import SendHandle, open_admin, open_producer
from trioring.errors import TrioringError


def add_parser(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    produce = commands.add_parser(
        "produce",
        parents=parents,
        help="send lines of stdin (or a file) as records",
        description="Send each line of stdin (or --file) as one record. Exits 0 once "
        "every record is acknowledged, 1 if any could not be delivered.",
    )
    produce.add_argument("topic", type=topic_name)
    produce.add_argument("--file", help="read this file instead of stdin")
    produce.add_argument(
        "-K",
        "--key-separator",
        metavar="SEP",
        help="split each line at the first SEP into key and value (a line without SEP has no key)",
    )
    produce.add_argument(
        "-H",
        "--header",
        action="append",
        metavar="KEY=VALUE",
        help="a header on every record (repeat for more)",
    )
    produce.add_argument(
        "-p", "--partition", type=int, help="default: by key (Kafka's partitioner)"
    )
    produce.add_argument(
        "--acks", choices=["0", "1", "all"], default="all", help="default: %(default)s"
    )
    produce.add_argument(
        "-z",
        "--compression",
        choices=["none", "gzip", "snappy", "lz4", "zstd"],
        default="none",
        help="default: %(default)s",
    )
    produce.add_argument(
        "--rate", type=float, metavar="RECORDS/S", help="send at most this many records a second"
    )
    produce.set_defaults(run=produce_lines)


class _LineReader:
    """The input's lines without their line ends, the last one even without one;
    None for a line longer than CLI_PRODUCE_LINE_BYTES_MAX, which is skipped
    (memory stays bounded whatever the input). :meth:`rest` gives what was read
    but not taken yet, for a stop that must still send it."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._pending = bytearray()
        #: Where the part of ``_pending`` not taken yet starts.
        self._start = 0
        #: Inside a line too long to send: its bytes are dropped up to its end.
        self._skipping = False

    def _take(self) -> bytes | bool | None:
        """The next whole line (None: one too long), or False when none is whole yet."""
        while True:
            end = self._pending.find(b"\n", self._start)
            if end < 0:
                if len(self._pending) - self._start > CLI_PRODUCE_LINE_BYTES_MAX:
                    self._pending.clear()
                    self._start = 0
                    if not self._skipping:
                        self._skipping = True
                        return None
                return False
            line = self._pending[self._start : end]
            self._start = end + 1
            if self._skipping:  # the end of a line reported as too long already
                self._skipping = False
                continue
            if len(line) > CLI_PRODUCE_LINE_BYTES_MAX:
                return None
            return bytes(line).removesuffix(b"\r")

    def rest(self) -> list[bytes | None]:
        """The lines read but not taken yet, the unfinished last one included."""
        lines: list[bytes | None] = []
        while (line := self._take()) is not False:
            assert not isinstance(line, bool)
            lines.append(line)
        if len(self._pending) > self._start and not self._skipping:
            lines.append(bytes(self._pending[self._start :]).removesuffix(b"\r"))
        self._pending.clear()
        self._start = 0
        return lines

    async def lines(self) -> AsyncIterator[bytes | None]:
        while True:
            while (line := self._take()) is not False:
                assert not isinstance(line, bool)
                yield line
            chunk = await self._stream.receive_some(CLI_PRODUCE_READ_BYTES)
            if not chunk:
                break
            del self._pending[: self._start]
            self._start = 0
            self._pending += chunk
        for line in self.rest():
            yield line


def _open_input(path: str | None) -> trio.lowlevel.FdStream:
    if path is None:
        # A duplicate: FdStream makes its descriptor non-blocking and puts
        # it back when closed, and the shell's stdin is left as it was.
        return trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    try:
        return trio.lowlevel.FdStream(os.open(path, os.O_RDONLY))
    except OSError as error:
        raise CommandError(f"cannot read {path}: {error.strerror}") from None


async def produce_lines(options: argparse.Namespace) -> int:
    # Arguments hold bytes that are not UTF-8 as surrogates (PEP 383): fsencode
    # gives back the bytes the shell passed. A header's key is a string in Kafka.
    headers = [(key, os.fsencode(value)) for key, value in parse_pairs(options.header, "--header")]
    for header_key, _ in headers:
        try:
            header_key.encode()
        except UnicodeEncodeError:
            raise UsageError(f"--header key {header_key!r} is not UTF-8 text") from None
    separator = None if options.key_separator is None else os.fsencode(options.key_separator)
    if separator == b"":
        raise UsageError("--key-separator is empty: give one or more characters")
    if options.rate is not None and options.rate <= 0:
        raise UsageError(f"--rate must be more than 0, not {options.rate}")
    acks: Any = "all" if options.acks == "all" else int(options.acks)
    bootstrap = await check_reachable(options)
    if options.partition is not None:
        # Checked first: a record for a partition that does not exist would
        # wait for a leader until delivery_timeout_ms (2 minutes).
        async with open_admin(bootstrap, client_id="trioring-cli") as admin:
            info = await admin.describe_topic(options.topic)
        if not 0 <= options.partition < len(info.partitions):
            raise UsageError(
                f"topic {options.topic!r} has no partition {options.partition} "
                f"(it has {len(info.partitions)})"
            )
    sent = failed = 0
    first_error: str | None = None
    unchecked: collections.deque[SendHandle] = collections.deque()

    def refused(reason: str) -> None:
        """A record that will not be delivered: count it, say the first, go on."""
        nonlocal failed, first_error
        failed += 1
        if first_error is None:
            first_error = reason
            print(f"trioring: a record was not delivered: {reason}", file=sys.stderr)

    async def check_oldest() -> None:
        """Wait for the oldest unchecked record's outcome. It leaves the queue only
        once known: a cancelled wait leaves it for the final check."""
        try:
            await unchecked[0].wait()
        except Exception as error:  # the record's delivery failed: count it, go on
            refused(str(error))
        unchecked.popleft()

    stop = SignalStop()
    async with (
        stop.watching(),
        open_producer(
            bootstrap,
            acks=acks,
            idempotence=acks == "all",
            compression=None if options.compression == "none" else options.compression,
            client_id="trioring-cli",
        ) as producer,
        _open_input(options.file) as source,
    ):
        #: When the next record may go, with --rate.
        next_send = trio.current_time()

        async def send(line: bytes | None, number: int, *, paced: bool) -> None:
            """Queue line ``number`` as a record (or count it refused); return once queued."""
            nonlocal next_send
            if line is None:
                refused(
                    f"line {number} is longer than {CLI_PRODUCE_LINE_BYTES_MAX} bytes "
                    "(is the input text with one record per line?)"
                )
                return
            record_key: bytes | None = None
            value = line
            if separator is not None:
                head, found, tail = line.partition(separator)
                if found:
                    record_key, value = head, tail
            if paced and options.rate is not None:
                # Paced from the later of now and the last slot: a quiet spell in
                # the input earns no burst afterwards.
                next_send = max(next_send, trio.current_time())
                await trio.sleep_until(next_send)
                next_send += 1 / options.rate
            while True:
                try:
                    handle = producer.send_nowait(
                        options.topic,
                        value,
                        key=record_key,
                        headers=headers,
                        partition=options.partition,
                    )
                except trio.WouldBlock:
                    # The buffer is full: the oldest record's batch frees room when
                    # it is acknowledged (a flush would drain the whole pipeline).
                    if unchecked:
                        await check_oldest()
                    else:
                        await producer.flush()
                    continue
                except TrioringError as error:  # too large for a request, say
                    refused(f"line {number}: {error}")
                    return
                unchecked.append(handle)
                return

        reader = _LineReader(source)
        #: The line being queued when a signal came (it is queued after the stop).
        interrupted: tuple[bytes | None, int] | None = None
        # Ctrl-C and SIGTERM stop the reading; every line read is still sent (below),
        # delivered (the flush) and reported.
        with stop.scope:
            async for line in reader.lines():
                sent += 1
                interrupted = (line, sent)
                await send(line, sent, paced=True)
                interrupted = None
                while unchecked and (
                    unchecked[0].done() or len(unchecked) > CLI_PRODUCE_UNCHECKED_RECORDS_MAX
                ):
                    await check_oldest()
                if sent % 100 == 0:
                    await trio.lowlevel.checkpoint()  # the sender runs alongside the reading
        if stop.signal is not None:
            # What was read is sent now, without pacing: the line cut short, then
            # the rest of what the reader holds (read from the input, not yet taken).
            if interrupted is not None:
                await send(*interrupted, paced=False)
            for line in reader.rest():
                sent += 1
                await send(line, sent, paced=False)
        await producer.flush()
        while unchecked:
            await check_oldest()
    note(f"produced {sent - failed} of {sent} records to {options.topic!r}")
    if failed:
        raise CommandError(
            f"{failed} of {sent} records were not delivered; the first: {first_error}"
        )
    return stop.exit_code()

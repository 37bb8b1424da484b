"""Consumer: reads partitions from their leaders, assigned by the user or by a group.

The user assigns partitions (``assign``), or subscribes to topics or a
pattern as a member of a group (``_group.py`` keeps the membership and sets
the assignment); each partition has a position, the
offset of the next record the user gets. One background task schedules the
work and never blocks: it starts, for each leader node, one Fetch at a time
covering that node's assigned partitions that are not paused, whose position
is known and whose buffer is not full. A partition whose position is not yet
known (freshly assigned, or out of range) is resolved first: from the group's
committed offset if there is a group, else by ``auto_offset_reset`` with
ListOffsets. Errors that mean the metadata is stale (NOT_LEADER_OR_FOLLOWER,
UNKNOWN_TOPIC_OR_PARTITION, a broken connection) refresh it and retry after a
backoff that grows to ``CLIENT_RETRY_BACKOFF_MAX_MS_DEFAULT``; errors that
retrying cannot fix are kept on the partition and raised to the reader.

Fetched records wait in a buffer per partition; the buffer's bytes are
bounded by ``max_partition_fetch_bytes`` (a partition is not fetched again
while its buffer holds that much), so a reader that stops reading stops the
fetching. Every task lives in the consumer's nursery: leaving the ``async
with`` block, or cancelling a reader, leaves none behind.

Committing outside a group is Kafka's "simple consumer" commit: OffsetCommit
to the group's coordinator with generation -1 and member id "". A member
commits as itself, in its generation.

Records a read call returns are the reader's until its next read call starts:
only then does the consumer count them as finished, which is what automatic
commits and revocations commit.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import math
import re
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, Literal, NamedTuple

import attrs
import trio
from kio.schema.errors import ErrorCode

from trioring._broker import Broker
from trioring._constants import (
    CLIENT_AUTO_COMMIT_INTERVAL_MS_DEFAULT,
    CLIENT_COORDINATOR_ATTEMPTS_MAX,
    CLIENT_FETCH_BYTES_MAX_DEFAULT,
    CLIENT_FETCH_MAX_WAIT_MS_DEFAULT,
    CLIENT_FETCH_MIN_BYTES_DEFAULT,
    CLIENT_FRAME_BYTES_MAX,
    CLIENT_GETMANY_RECORDS_MAX_DEFAULT,
    CLIENT_HEARTBEAT_INTERVAL_MS_DEFAULT,
    CLIENT_METADATA_MAX_AGE_MS_DEFAULT,
    CLIENT_PARTITION_FETCH_BYTES_MAX_DEFAULT,
    CLIENT_REBALANCE_TIMEOUT_MS_DEFAULT,
    CLIENT_REQUEST_TIMEOUT_MS_DEFAULT,
    CLIENT_SESSION_TIMEOUT_MS_DEFAULT,
)
from trioring._exception_groups import BodyError, body_exception_unwrapped
from trioring.client._assignors import ASSIGNORS
from trioring.client._backoff import backoff_s
from trioring.client._cluster import Cluster
from trioring.client._connection import BrokerConnection, ConnectionBrokenError
from trioring.client._group import GroupMembership, RebalanceCallback
from trioring.client._offsets import COORDINATOR_RETRY_ERRORS, GroupOffsets, by_topic
from trioring.errors import (
    InvalidArgumentError,
    KafkaError,
    OffsetOutOfRangeError,
    ProtocolError,
    TrioringError,
)
from trioring.handlers.messages import EARLIEST_TIMESTAMP, LATEST_TIMESTAMP
from trioring.protocol.kafka import ApiKey, request_schema
from trioring.protocol.kafka._build import build, sibling
from trioring.protocol.records import Header, ParsedBatch, iterate_batches, parse_batch

__all__ = [
    "Consumer",
    "ConsumerRecord",
    "NoOffsetError",
    "open_consumer",
]

logger = logging.getLogger("trioring.client")

TopicPartition = tuple[str, int]
OffsetReset = Literal["earliest", "latest", "none"]


#: Partition errors that a metadata refresh and another try may cure.
_STALE_METADATA_ERRORS = frozenset(
    {
        ErrorCode.not_leader_or_follower,
        ErrorCode.unknown_topic_or_partition,
        ErrorCode.leader_not_available,
        ErrorCode.fenced_leader_epoch,
        ErrorCode.unknown_leader_epoch,
        ErrorCode.kafka_storage_error,
        ErrorCode.replica_not_available,
        ErrorCode.offset_not_available,
        ErrorCode.request_timed_out,
        ErrorCode.network_exception,
    }
)


class NoOffsetError(TrioringError):
    """A partition has no position to start from and ``auto_offset_reset`` is "none"."""

    kafka_error_code = ErrorCode.offset_out_of_range


class _RetryLater(Exception):
    """A retriable failure: back off, refresh the metadata, try again."""


class ConsumerRecord(NamedTuple):
    """One record read from a partition.

    A named tuple: the consumer makes one per record, and a tuple is built in
    a sixth of the time a frozen attrs instance takes (measured: 0.3 us
    against 1.8 us).
    """

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[Header, ...]
    timestamp_ms: int


@attrs.define(eq=False)
class _PartitionState:
    #: Offset of the next record the user gets; None until resolved.
    position: int | None
    #: How to resolve a missing position: "committed", "earliest", "latest" or "none".
    reset: str
    #: Offset of the next record to fetch (position plus what is buffered).
    fetch_offset: int = 0
    paused: bool = False
    #: Fetched batches, parsed; records are built as the reader takes them.
    buffer: deque[ParsedBatch[ConsumerRecord]] = attrs.Factory(deque)
    buffered_records: int = 0
    buffered_bytes: int = 0
    #: Bumped by every seek and reset: answers to older requests are dropped.
    epoch: int = 0
    #: seek_to_* calls waiting for their offsets: the resolver leaves the position
    #: to them (else its auto_offset_reset answer, landing first, would void theirs).
    seeking: int = 0
    #: An error retrying cannot fix, raised to the next reader.
    error: Exception | None = None
    #: The position before the records the reader holds now (None: it holds none).
    unfinished_from: int | None = None
    #: The group is taking the partition away: the reader gets no more of its records.
    revoking: bool = False
    high_watermark: int = -1
    log_start_offset: int = -1


class Consumer:
    """Reads assigned partitions. Open it with :func:`open_consumer`."""

    def __init__(
        self,
        cluster: Cluster,
        nursery: trio.Nursery,
        *,
        group_id: str | None,
        auto_offset_reset: OffsetReset,
        fetch_max_wait_ms: int,
        fetch_min_bytes: int,
        max_partition_fetch_bytes: int,
        fetch_max_bytes: int,
        isolation_level: Literal["read_uncommitted"],
    ) -> None:
        self._cluster = cluster
        self._nursery = nursery
        self.group_id = group_id
        self._offsets = None if group_id is None else GroupOffsets(cluster, group_id)
        self._auto_offset_reset = auto_offset_reset
        self._fetch_max_wait = datetime.timedelta(milliseconds=fetch_max_wait_ms)
        self._fetch_min_bytes = fetch_min_bytes
        self._partition_bytes_max = max_partition_fetch_bytes
        self._fetch_bytes_max = fetch_max_bytes
        self._isolation_level = 0 if isolation_level == "read_uncommitted" else 1
        self._partitions: dict[TopicPartition, _PartitionState] = {}
        #: Set and replaced on every change a waiting task may care about.
        self._changed = trio.Event()
        self._fetching: set[int] = set()
        self._resolving: set[TopicPartition] = set()
        self._node_failures: dict[int, int] = {}
        self._metadata_wanted = False
        self._metadata_failures = 0
        self._refreshing = False
        self._resolve_failures = 0
        self._next_reader = 0
        self._fetch_turn = 0
        #: The group membership, when the consumer subscribes (set by open_consumer).
        self.membership: GroupMembership | None = None
        #: Partitions of the records the last read call returned.
        self._held: list[_PartitionState] = []
        #: Errors for the reader from the group (a failed join, a raising callback).
        self._reader_errors: deque[Exception] = deque()
        self._counters = {
            "fetches": 0,
            "fetch_failures": 0,
            "records_fetched": 0,
            "records_delivered": 0,
            "metadata_refreshes": 0,
            "offset_resets": 0,
        }

    # --- assignment and positions ----------------------------------------------------------

    def assign(self, partitions: Iterable[TopicPartition]) -> None:
        """Read exactly these partitions from now on (replaces the previous assignment).

        Partitions kept keep their positions and buffers; new ones start from
        the group's committed offset if there is a group and one is
        committed, else as ``auto_offset_reset`` says.
        """
        if self.membership is not None:
            raise InvalidArgumentError(
                "this consumer subscribes as a member of its group, which assigns its "
                "partitions: open a consumer without topics or pattern to assign by hand"
            )
        self._assign(partitions)

    def _assign(self, partitions: Iterable[TopicPartition]) -> None:
        wanted: dict[TopicPartition, None] = {}
        for topic, partition in partitions:
            if not isinstance(topic, str) or not topic:
                raise InvalidArgumentError(f"topic {topic!r} is not a topic name")
            if not isinstance(partition, int) or partition < 0:
                raise InvalidArgumentError(f"partition {partition!r} is not a partition index")
            wanted[(topic, partition)] = None
        reset = "committed" if self.group_id is not None else self._auto_offset_reset
        self._partitions = {
            tp: self._partitions.get(tp) or _PartitionState(position=None, reset=reset)
            for tp in wanted
        }
        self._notify()

    def assignment(self) -> set[TopicPartition]:
        """The partitions assigned."""
        return set(self._partitions)

    # --- what the group membership uses ------------------------------------------------------

    def _set_group_assignment(self, partitions: Iterable[TopicPartition]) -> None:
        kept = set(partitions)
        self._held = [s for s in self._held if any(self._partitions.get(tp) is s for tp in kept)]
        self._assign(sorted(kept))

    async def _reader_done_with(self, partitions: Iterable[TopicPartition]) -> None:
        """Return once the reader holds no records of ``partitions`` (it came back for
        more, or never read them), and give it none of theirs meanwhile.

        Without the second half a reader with records buffered would never be seen
        done: each read call takes new records as it finishes the last ones. The
        caller takes the partitions away (``_set_group_assignment``) before its next
        checkpoint, or the reader would miss their records for good.
        """
        states = [state for tp in partitions if (state := self._partitions.get(tp)) is not None]
        for state in states:
            state.revoking = True
        try:
            while any(held is state for held in self._held for state in states):
                await self._changed.wait()
        finally:
            for state in states:
                state.revoking = False

    def _finished_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """The offset after the records the reader has finished with, per partition."""
        offsets = {}
        for tp in partitions:
            state = self._partitions.get(tp)
            if state is None or state.position is None:
                continue
            offsets[tp] = state.position if state.unfinished_from is None else state.unfinished_from
        return offsets

    def _raise_to_reader(self, error: Exception) -> None:
        """Have the reader's next read (or the one waiting) raise ``error``."""
        self._reader_errors.append(error)
        self._notify()

    def _release_held(self) -> None:
        if self._held:
            for state in self._held:
                state.unfinished_from = None
            self._held = []
            self._notify()

    def _begin_read(self) -> None:
        """A read call starts: the records the last one returned are finished.
        Then an error the group has for the reader is raised."""
        self._release_held()
        self._raise_reader_error()

    def _raise_reader_error(self) -> None:
        """Raise the group's next error for the reader (a fatal one stays, for every read)."""
        if self._reader_errors:
            error = self._reader_errors.popleft()
            if self.membership is not None and error is self.membership.fatal:
                self._reader_errors.append(error)  # it stays: the membership has ended
            raise error

    def _state(self, topic: str, partition: int) -> _PartitionState:
        state = self._partitions.get((topic, partition))
        if state is None:
            raise InvalidArgumentError(
                f"partition {topic}-{partition} is not assigned to this consumer (assign it first)"
            )
        return state

    def seek(self, topic: str, partition: int, offset: int) -> None:
        """Read ``topic``-``partition`` from ``offset`` next (buffered records are dropped)."""
        if not isinstance(offset, int) or offset < 0:
            raise InvalidArgumentError(f"offset {offset!r} is not an offset (0 or more)")
        self._set_position(self._state(topic, partition), offset)

    def _set_position(self, state: _PartitionState, offset: int) -> None:
        state.position = state.fetch_offset = offset
        state.unfinished_from = None
        state.buffer.clear()
        state.buffered_records = state.buffered_bytes = 0
        state.epoch += 1
        state.error = None
        self._notify()

    async def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        """Read these partitions (all assigned if none given) from their log start."""
        await self._seek_to(partitions, EARLIEST_TIMESTAMP)

    async def seek_to_end(self, *partitions: TopicPartition) -> None:
        """Read only records produced from now on in these partitions (all if none given)."""
        await self._seek_to(partitions, LATEST_TIMESTAMP)

    async def seek_to_timestamp(self, timestamp_ms: int, *partitions: TopicPartition) -> None:
        """Read these partitions (all assigned if none given) from their first record
        with a timestamp at or after ``timestamp_ms``; a partition with none such is
        read from its end (as Java's offsetsForTimes, then seekToEnd)."""
        if not isinstance(timestamp_ms, int) or timestamp_ms < 0:
            raise InvalidArgumentError(
                f"timestamp_ms {timestamp_ms!r} is not a timestamp (ms since the epoch, 0 or more)"
            )
        await self._seek_to(partitions, timestamp_ms)

    async def _seek_to(self, partitions: Sequence[TopicPartition], timestamp: int) -> None:
        chosen = list(partitions) or list(self._partitions)
        if not chosen:
            await trio.lowlevel.checkpoint()  # nothing to seek, but still a checkpoint
            return
        states = {tp: self._state(*tp) for tp in chosen}
        epochs = {tp: state.epoch for tp, state in states.items()}
        for state in states.values():
            state.seeking += 1
        try:
            offsets = await self._list_offsets_retrying(dict.fromkeys(chosen, timestamp))
            past_the_end = [tp for tp, offset in offsets.items() if offset < 0]
            if past_the_end:  # no record at or after the timestamp
                offsets.update(
                    await self._list_offsets_retrying(dict.fromkeys(past_the_end, LATEST_TIMESTAMP))
                )
        finally:
            for state in states.values():
                state.seeking -= 1
            self._notify()  # a cancelled seek leaves the position to the resolver
        for tp, offset in offsets.items():
            state = states[tp]
            if self._partitions.get(tp) is state and state.epoch == epochs[tp]:
                self._set_position(state, offset)

    async def position(self, topic: str, partition: int) -> int:
        """The offset of the next record this consumer returns from the partition.

        Waits until a freshly assigned partition's position is resolved; raises
        the partition's error if it cannot be.
        """
        state = self._state(topic, partition)
        while True:
            if state.error is not None:
                raise state.error
            if state.position is not None:
                await trio.lowlevel.checkpoint()
                return state.position
            if self._partitions.get((topic, partition)) is not state:
                raise InvalidArgumentError(f"partition {topic}-{partition} was unassigned")
            await self._changed.wait()

    def pause(self, *partitions: TopicPartition) -> None:
        """Stop fetching and returning these partitions until :meth:`resume`."""
        for tp in partitions:
            self._state(*tp).paused = True
        self._notify()

    def resume(self, *partitions: TopicPartition) -> None:
        for tp in partitions:
            self._state(*tp).paused = False
        self._notify()

    def paused(self) -> set[TopicPartition]:
        return {tp for tp, state in self._partitions.items() if state.paused}

    # --- reading ---------------------------------------------------------------------------

    def __aiter__(self) -> Consumer:
        return self

    async def __anext__(self) -> ConsumerRecord:
        # Cancellation is checked before a record is taken, never after: a
        # record taken is a record returned.
        await trio.lowlevel.checkpoint_if_cancelled()
        self._begin_read()
        while True:
            records = self._take(1)
            if records:
                await trio.lowlevel.cancel_shielded_checkpoint()
                return records[0]
            await self._changed.wait()
            self._raise_reader_error()

    async def getmany(
        self,
        *,
        timeout_s: float = math.inf,
        max_records: int = CLIENT_GETMANY_RECORDS_MAX_DEFAULT,
    ) -> list[ConsumerRecord]:
        """The records available now, up to ``max_records``, waiting up to ``timeout_s``
        for the first; an empty list if none came. Records of one partition are
        in offset order; partitions take turns."""
        if max_records < 1:
            raise InvalidArgumentError(f"max_records must be 1 or more, not {max_records}")
        deadline = trio.current_time() + timeout_s
        # As in __anext__: records taken are never lost to a cancellation.
        await trio.lowlevel.checkpoint_if_cancelled()
        self._begin_read()
        while True:
            records = self._take(max_records)
            if records:
                await trio.lowlevel.cancel_shielded_checkpoint()
                return records
            with trio.move_on_at(deadline) as scope:
                await self._changed.wait()
            self._raise_reader_error()
            if scope.cancelled_caught:
                return self._take(max_records)

    def _take(self, records_max: int) -> list[ConsumerRecord]:
        """Pop up to ``records_max`` buffered records, raising a partition's error once
        the records fetched before it are read."""
        states = list(self._partitions.values())
        for state in states:
            if state.error is not None and not state.paused and not state.buffer:
                error, state.error = state.error, None
                # The scheduler tries the partition again: one out of range, or
                # without a position, fails again until the user seeks it.
                self._notify()
                raise error
        taken: list[ConsumerRecord] = []
        if not states:
            return taken
        start = self._next_reader % len(states)
        self._next_reader += 1
        for index in range(len(states)):
            state = states[(start + index) % len(states)]
            if state.paused or state.revoking or not state.buffer:
                continue
            was_full = state.buffered_bytes >= self._partition_bytes_max
            if state.unfinished_from is None:
                state.unfinished_from = state.position
                self._held.append(state)
            buffered = state.buffered_records
            while state.buffer and len(taken) < records_max:
                batch = state.buffer[0]
                chunk = batch.take(records_max - len(taken))
                if not batch:
                    state.buffer.popleft()
                if chunk:
                    taken += chunk
                    state.position = chunk[-1].offset + 1
            count = buffered - sum(map(len, state.buffer))
            state.buffered_records -= count
            # Records are charged the average of their partition's buffer.
            state.buffered_bytes -= state.buffered_bytes * count // max(buffered, 1)
            if not state.buffer:
                state.position = state.fetch_offset
            if was_full and state.buffered_bytes < self._partition_bytes_max:
                self._notify()
            if len(taken) >= records_max:
                break
        self._counters["records_delivered"] += len(taken)
        return taken

    # --- scheduling ------------------------------------------------------------------------

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _run(self) -> None:
        """Start fetches, resolutions and metadata refreshes as they become due."""
        while True:
            changed = self._changed
            self._schedule()
            await changed.wait()

    def _schedule(self) -> None:
        cluster = self._cluster
        by_node: dict[int, list[TopicPartition]] = {}
        unresolved: list[TopicPartition] = []
        for tp, state in self._partitions.items():
            if state.error is not None:
                continue
            leader = cluster.leader(*tp)
            if leader is None:
                self._metadata_wanted = True
                continue
            if state.position is None:
                if tp not in self._resolving and not state.seeking:
                    unresolved.append(tp)
                continue
            if state.paused or state.buffered_bytes >= self._partition_bytes_max:
                continue
            by_node.setdefault(leader, []).append(tp)
        if self._metadata_wanted and not self._refreshing:
            self._refreshing = True
            self._nursery.start_soon(self._refresh_metadata)
        if unresolved:
            self._resolving.update(unresolved)
            self._nursery.start_soon(self._resolve, unresolved)
        for node, partitions in by_node.items():
            if node not in self._fetching:
                self._fetching.add(node)
                self._nursery.start_soon(self._fetch, node, partitions, name=f"fetch node {node}")

    async def _refresh_metadata(self) -> None:
        try:
            await trio.sleep(backoff_s(self._metadata_failures))
            topics = sorted({topic for topic, _ in self._partitions})
            self._metadata_wanted = False
            self._counters["metadata_refreshes"] += 1
            try:
                await self._cluster.refresh(topics)
            except (ConnectionBrokenError, KafkaError) as error:
                logger.debug("consumer: metadata refresh failed: %s", error)
                self._metadata_failures += 1
                self._metadata_wanted = True
            else:
                self._metadata_failures = 0
                # Partitions still without a leader are asked for again, later.
                if any(self._cluster.leader(*tp) is None for tp in self._partitions):
                    self._metadata_failures += 1
        finally:
            self._refreshing = False
            self._notify()

    # --- resolving positions ------------------------------------------------------------------

    async def _resolve(self, scheduled: list[TopicPartition]) -> None:
        """Find the positions of freshly assigned (or reset) partitions."""
        # The assignment may have changed between scheduling and this task's start.
        states = {tp: state for tp in scheduled if (state := self._partitions.get(tp)) is not None}
        partitions = list(states)
        epochs = {tp: state.epoch for tp, state in states.items()}

        def current(tp: TopicPartition) -> bool:
            state = states[tp]
            return self._partitions.get(tp) is state and state.epoch == epochs[tp]

        try:
            await trio.sleep(backoff_s(self._resolve_failures))
            committed_wanted = [tp for tp in partitions if states[tp].reset == "committed"]
            if committed_wanted:
                committed = await self._group_offsets().fetch(committed_wanted)
                for tp in committed_wanted:
                    if not current(tp) or states[tp].seeking:
                        continue
                    offset = committed.get(tp)
                    if offset is not None:
                        self._apply_position(states[tp], offset)
                    else:
                        states[tp].reset = self._auto_offset_reset
            timestamps: dict[TopicPartition, int] = {}
            for tp in partitions:
                state = states[tp]
                if not current(tp) or state.position is not None:
                    continue
                if state.reset == "none":
                    state.error = NoOffsetError(
                        f"partition {tp[0]}-{tp[1]} has no committed offset or its offset is "
                        "out of range, and auto_offset_reset is 'none': seek it to an offset"
                    )
                    continue
                timestamps[tp] = (
                    EARLIEST_TIMESTAMP if state.reset == "earliest" else LATEST_TIMESTAMP
                )
            if timestamps:
                offsets = await self._list_offsets(timestamps)
                for tp, offset in offsets.items():
                    if current(tp) and not states[tp].seeking:
                        self._counters["offset_resets"] += 1
                        self._apply_position(states[tp], offset)
            self._resolve_failures = 0
        except (_RetryLater, ConnectionBrokenError) as error:
            logger.debug("consumer: resolving positions failed, will retry: %s", error)
            self._resolve_failures += 1
            self._metadata_wanted = True
        except KafkaError as error:
            if error.kafka_error_code in COORDINATOR_RETRY_ERRORS:
                # The group's coordinator is away (a broker restarting): try later.
                self._resolve_failures += 1
                return
            for tp in partitions:
                if current(tp) and states[tp].position is None:
                    states[tp].error = error
        finally:
            self._resolving.difference_update(scheduled)
            self._notify()

    def _apply_position(self, state: _PartitionState, offset: int) -> None:
        state.position = state.fetch_offset = offset
        state.unfinished_from = None
        state.buffer.clear()
        state.buffered_records = state.buffered_bytes = 0
        state.epoch += 1
        state.reset = self._auto_offset_reset

    async def _list_offsets_retrying(
        self, timestamps: dict[TopicPartition, int]
    ) -> dict[TopicPartition, int]:
        for attempt in range(CLIENT_COORDINATOR_ATTEMPTS_MAX):
            try:
                return await self._list_offsets(timestamps)
            except (_RetryLater, ConnectionBrokenError) as error:
                if attempt + 1 == CLIENT_COORDINATOR_ATTEMPTS_MAX:
                    raise KafkaError(
                        f"ListOffsets failed {CLIENT_COORDINATOR_ATTEMPTS_MAX} times: {error}",
                        ErrorCode.leader_not_available,
                    ) from None
                await trio.sleep(backoff_s(attempt + 1))
                with contextlib.suppress(ConnectionBrokenError):
                    await self._cluster.refresh({topic for topic, _ in timestamps})
        raise AssertionError("unreachable")

    async def _list_offsets(
        self, timestamps: dict[TopicPartition, int]
    ) -> dict[TopicPartition, int]:
        """The offset for each partition's timestamp, asked of each leader."""
        by_node: dict[int, list[TopicPartition]] = {}
        for tp in timestamps:
            leader = self._cluster.leader(*tp)
            if leader is None:
                raise _RetryLater(f"partition {tp[0]}-{tp[1]} has no known leader")
            by_node.setdefault(leader, []).append(tp)
        offsets: dict[TopicPartition, int] = {}
        for node, partitions in by_node.items():
            answers = await self._cluster.list_offsets_at(
                node, {tp: timestamps[tp] for tp in partitions}, self._isolation_level
            )
            for tp, (code, offset) in answers.items():
                error = ErrorCode(code)
                if error in _STALE_METADATA_ERRORS:
                    raise _RetryLater(f"ListOffsets {tp[0]}-{tp[1]}: {error.name}")
                if error != ErrorCode.none:
                    raise KafkaError(f"ListOffsets {tp[0]}-{tp[1]}: {error.name}", error)
                offsets[tp] = offset
        missing = set(timestamps) - set(offsets)
        if missing:
            raise _RetryLater(f"ListOffsets did not answer for {sorted(missing)}")
        return offsets

    # --- fetching --------------------------------------------------------------------------

    async def _fetch(self, node: int, partitions: list[TopicPartition]) -> None:
        """One Fetch to ``node`` for ``partitions``; its records into the buffers."""
        # The assignment may have changed between scheduling and this task's start.
        sent = {
            tp: (state, state.epoch)
            for tp in partitions
            if (state := self._partitions.get(tp)) is not None
        }
        stale = False
        try:
            await trio.sleep(backoff_s(self._node_failures.get(node, 0)))
            # The positions as they are now (the backoff may have seen seeks).
            sent = {
                tp: (state, state.epoch)
                for tp, (state, _) in sent.items()
                if self._partitions.get(tp) is state and state.position is not None
            }
            if not sent:
                return
            connection = await self._cluster.connection(node)
            response = await self._fetch_request(connection, sent)
            self._counters["fetches"] += 1
            top_error = ErrorCode(getattr(response, "error_code", ErrorCode.none))
            if top_error != ErrorCode.none:
                raise _RetryLater(f"Fetch from node {node}: {top_error.name}")
            for topic in response.responses:
                for answer in topic.partitions:
                    tp = (topic.topic, int(answer.partition_index))
                    entry = sent.get(tp)
                    if entry is None:
                        continue
                    state, epoch = entry
                    if self._partitions.get(tp) is not state or state.epoch != epoch:
                        continue  # sought or unassigned meanwhile
                    stale |= self._apply_fetched(tp, state, answer)
            self._node_failures.pop(node, None)
        except (_RetryLater, ConnectionBrokenError) as error:
            logger.debug("consumer: fetch from node %d failed: %s", node, error)
            stale = True
        finally:
            if stale:
                self._counters["fetch_failures"] += 1
                self._node_failures[node] = self._node_failures.get(node, 0) + 1
                self._metadata_wanted = True
            self._fetching.discard(node)
            self._notify()

    async def _fetch_request(
        self,
        connection: BrokerConnection,
        sent: Mapping[TopicPartition, tuple[_PartitionState, int]],
    ) -> Any:
        version = connection.version(ApiKey.FETCH)
        schema = request_schema(ApiKey.FETCH, version)
        topic_class = sibling(schema, "FetchTopic")
        partition_class = sibling(schema, "FetchPartition")
        # Partitions take turns at the head of the request: a broker returns a
        # batch larger than max_partition_fetch_bytes whole only for the first
        # partition (KIP-74), so a fixed order could starve the others forever.
        order = list(sent)
        self._fetch_turn += 1
        turn = self._fetch_turn % len(order)
        topics = by_topic(order[turn:] + order[:turn])
        _, response = await connection.request(
            ApiKey.FETCH,
            replica_id=-1,
            max_wait=self._fetch_max_wait,
            min_bytes=self._fetch_min_bytes,
            max_bytes=self._fetch_bytes_max,
            isolation_level=self._isolation_level,
            session_id=0,
            session_epoch=-1,
            topics=tuple(
                build(
                    topic_class,
                    topic=topic,
                    partitions=tuple(
                        build(
                            partition_class,
                            partition=p,
                            current_leader_epoch=-1,
                            fetch_offset=sent[(topic, p)][0].fetch_offset,
                            last_fetched_epoch=-1,
                            log_start_offset=-1,
                            partition_max_bytes=self._partition_bytes_max,
                        )
                        for p in indexes
                    ),
                )
                for topic, indexes in topics.items()
            ),
            forgotten_topics_data=(),
            rack_id="",
        )
        return response

    def _apply_fetched(self, tp: TopicPartition, state: _PartitionState, answer: Any) -> bool:
        """Take one partition's part of a Fetch response; True if the metadata is stale."""
        code = ErrorCode(answer.error_code)
        if code == ErrorCode.offset_out_of_range:
            log_start = int(getattr(answer, "log_start_offset", -1))
            self._counters["offset_resets"] += 1
            if self._auto_offset_reset == "none":
                state.error = OffsetOutOfRangeError(
                    f"offset {state.fetch_offset} of partition {tp[0]}-{tp[1]} is out of range "
                    f"(log start {log_start}, high watermark {int(answer.high_watermark)}) "
                    "and auto_offset_reset is 'none': seek it to an offset",
                    log_start_offset=log_start,
                    high_watermark=int(answer.high_watermark),
                )
            else:
                state.position = None
                state.reset = self._auto_offset_reset
                state.buffer.clear()
                state.buffered_records = state.buffered_bytes = 0
                state.epoch += 1
            return False
        if code in _STALE_METADATA_ERRORS:
            logger.debug("consumer: fetch %s-%d: %s", tp[0], tp[1], code.name)
            return True
        if code != ErrorCode.none:
            state.error = KafkaError(f"Fetch {tp[0]}-{tp[1]}: {code.name}", code)
            return False
        state.high_watermark = int(answer.high_watermark)
        state.log_start_offset = int(getattr(answer, "log_start_offset", -1))
        data = answer.records
        if not data:
            return False
        try:
            self._take_batches(tp, state, data)
        except ProtocolError as error:
            state.error = error
        return False

    def _take_batches(self, tp: TopicPartition, state: _PartitionState, data: bytes) -> None:
        topic, partition = tp
        fetched = 0
        for position, header in iterate_batches(data, allow_partial_tail=True):
            if header.next_offset <= state.fetch_offset:
                continue  # before the position: a batch the broker sent whole
            if header.is_control:
                # read_uncommitted: transaction markers are not records.
                state.fetch_offset = header.next_offset
                continue
            _, parsed = parse_batch(
                data,
                position,
                ConsumerRecord,
                topic=topic,
                partition=partition,
                from_offset=state.fetch_offset,
            )
            if parsed:
                state.buffer.append(parsed)
                state.buffered_records += len(parsed)
                state.buffered_bytes += parsed.decoded_bytes
                fetched += len(parsed)
            # Compaction may leave the batch's last offsets without records.
            state.fetch_offset = header.next_offset
        if not state.buffer:
            state.position = state.fetch_offset
        self._counters["records_fetched"] += fetched

    # --- committed offsets -----------------------------------------------------------------

    async def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None:
        """Commit ``offsets`` (the next offset to read, per partition) for the group;
        None commits the current position of every assigned partition that has one."""
        group_offsets = self._group_offsets()
        if self.membership is not None and self.membership.fatal is not None:
            await trio.lowlevel.checkpoint()
            raise self.membership.fatal  # the membership has ended: nothing can be committed
        if offsets is None:
            offsets = {
                tp: state.position
                for tp, state in self._partitions.items()
                if state.position is not None
            }
        for (topic, partition), offset in offsets.items():
            if not isinstance(offset, int) or offset < 0:
                raise InvalidArgumentError(
                    f"offset {offset!r} for {topic}-{partition} is not an offset (0 or more)"
                )
        if not offsets:
            await trio.lowlevel.checkpoint()
            return
        if self.membership is not None:
            await self.membership.commit(dict(offsets))
            return
        error = await group_offsets.commit(offsets)
        if error is not None:
            raise KafkaError(f"OffsetCommit for group {self.group_id!r}: {error.name}", error)

    async def committed(self, topic: str, partition: int) -> int | None:
        """The group's committed offset for the partition; None if there is none."""
        offsets = await self._group_offsets().fetch([(topic, partition)])
        return offsets.get((topic, partition))

    def _group_offsets(self) -> GroupOffsets:
        if self._offsets is None:
            raise InvalidArgumentError(
                "committed offsets belong to a group: open the consumer with group_id=..."
            )
        return self._offsets

    # --- statistics ------------------------------------------------------------------------

    def statistics(self) -> dict[str, Any]:
        return {
            **self._counters,
            "group_id": self.group_id,
            "group": None if self.membership is None else self.membership.statistics(),
            "fetching_nodes": sorted(self._fetching),
            "node_failures": dict(self._node_failures),
            "partitions": {
                f"{topic}-{partition}": {
                    "position": state.position,
                    "fetch_offset": state.fetch_offset,
                    "buffered_records": state.buffered_records,
                    "buffered_bytes": state.buffered_bytes,
                    "high_watermark": state.high_watermark,
                    "log_start_offset": state.log_start_offset,
                    "paused": state.paused,
                    "error": None if state.error is None else str(state.error),
                }
                for (topic, partition), state in self._partitions.items()
            },
        }


@asynccontextmanager
async def open_consumer(
    bootstrap_or_broker: str | Sequence[str] | Broker | None = None,
    *,
    group_id: str | None = None,
    topics: Iterable[str] | None = None,
    pattern: str | re.Pattern[str] | None = None,
    group_instance_id: str | None = None,
    assignors: Sequence[str] = ("range", "cooperative-sticky"),
    on_assigned: RebalanceCallback | None = None,
    on_revoked: RebalanceCallback | None = None,
    on_lost: RebalanceCallback | None = None,
    enable_auto_commit: bool = True,
    auto_commit_interval_ms: int = CLIENT_AUTO_COMMIT_INTERVAL_MS_DEFAULT,
    session_timeout_ms: int = CLIENT_SESSION_TIMEOUT_MS_DEFAULT,
    heartbeat_interval_ms: int = CLIENT_HEARTBEAT_INTERVAL_MS_DEFAULT,
    rebalance_timeout_ms: int = CLIENT_REBALANCE_TIMEOUT_MS_DEFAULT,
    metadata_max_age_ms: int = CLIENT_METADATA_MAX_AGE_MS_DEFAULT,
    auto_offset_reset: OffsetReset = "latest",
    fetch_max_wait_ms: int = CLIENT_FETCH_MAX_WAIT_MS_DEFAULT,
    fetch_min_bytes: int = CLIENT_FETCH_MIN_BYTES_DEFAULT,
    max_partition_fetch_bytes: int = CLIENT_PARTITION_FETCH_BYTES_MAX_DEFAULT,
    fetch_max_bytes: int = CLIENT_FETCH_BYTES_MAX_DEFAULT,
    isolation_level: Literal["read_uncommitted"] = "read_uncommitted",
    client_id: str = "trioring-consumer",
    request_timeout_ms: int = CLIENT_REQUEST_TIMEOUT_MS_DEFAULT,
    cluster: Cluster | None = None,
) -> AsyncIterator[Consumer]:
    """A consumer for the block (see the module docstring).

    Give ``bootstrap_or_broker`` ("host:port,...", or an embedded Broker to reach
    in-process) and it opens a cluster of its own, or ``cluster`` to share one
    with a producer. With ``topics`` or ``pattern``
    (a regular expression the whole topic name must match) it joins
    ``group_id`` and reads what the group assigns it; without, it reads what
    :meth:`Consumer.assign` gives it. Group settings are Kafka's consumer
    settings under Python names (``assignors`` is partition.assignment.strategy,
    ``rebalance_timeout_ms`` max.poll.interval.ms). ``on_assigned``,
    ``on_revoked`` and ``on_lost`` are awaited with the set of partitions
    concerned, as Java's ConsumerRebalanceListener; an exception they raise
    comes out of the reader's next read.

    Leaving the block leaves the group: automatic commits are committed,
    ``on_revoked`` is called, and LeaveGroup is sent (a static member, with
    ``group_instance_id``, keeps its place until its session times out).
    """
    if auto_offset_reset not in ("earliest", "latest", "none"):
        raise InvalidArgumentError(
            f"auto_offset_reset must be 'earliest', 'latest' or 'none', not {auto_offset_reset!r}"
        )
    if isolation_level != "read_uncommitted":
        raise InvalidArgumentError(
            f"isolation_level {isolation_level!r} is not supported yet (only 'read_uncommitted')"
        )
    if not 0 <= fetch_max_wait_ms < request_timeout_ms:
        raise InvalidArgumentError(
            f"fetch_max_wait_ms ({fetch_max_wait_ms}) must be 0 or more and below "
            f"request_timeout_ms ({request_timeout_ms})"
        )
    if not 1 <= max_partition_fetch_bytes <= fetch_max_bytes < CLIENT_FRAME_BYTES_MAX:
        raise InvalidArgumentError(
            f"need 1 <= max_partition_fetch_bytes ({max_partition_fetch_bytes}) <= "
            f"fetch_max_bytes ({fetch_max_bytes}) < {CLIENT_FRAME_BYTES_MAX}"
        )
    if fetch_min_bytes < 0:
        raise InvalidArgumentError(f"fetch_min_bytes must be 0 or more, not {fetch_min_bytes}")
    if group_id is not None and not group_id:
        raise InvalidArgumentError("group_id must be a non-empty string or None")
    subscription = _subscription(
        group_id=group_id,
        topics=topics,
        pattern=pattern,
        assignors=assignors,
        session_timeout_ms=session_timeout_ms,
        heartbeat_interval_ms=heartbeat_interval_ms,
        rebalance_timeout_ms=rebalance_timeout_ms,
        auto_commit_interval_ms=auto_commit_interval_ms,
        group_instance_id=group_instance_id,
    )
    async with AsyncExitStack() as stack:
        if cluster is None:
            if bootstrap_or_broker is None:
                raise InvalidArgumentError("give bootstrap addresses, a broker or a cluster")
            cluster = await stack.enter_async_context(
                Cluster.open(
                    bootstrap_or_broker,
                    client_id=client_id,
                    request_timeout_ms=request_timeout_ms,
                    metadata_max_age_ms=metadata_max_age_ms,
                )
            )
        body = BodyError()
        async with body_exception_unwrapped(body), trio.open_nursery() as nursery:
            consumer = Consumer(
                cluster,
                nursery,
                group_id=group_id,
                auto_offset_reset=auto_offset_reset,
                fetch_max_wait_ms=fetch_max_wait_ms,
                fetch_min_bytes=fetch_min_bytes,
                max_partition_fetch_bytes=max_partition_fetch_bytes,
                fetch_max_bytes=fetch_max_bytes,
                isolation_level=isolation_level,
            )
            if subscription is not None:
                assert group_id is not None
                subscribed_topics, compiled = subscription
                consumer.membership = GroupMembership(
                    consumer,
                    cluster,
                    group_id=group_id,
                    topics=subscribed_topics,
                    pattern=compiled,
                    group_instance_id=group_instance_id,
                    assignors=assignors,
                    session_timeout_ms=session_timeout_ms,
                    rebalance_timeout_ms=rebalance_timeout_ms,
                    heartbeat_interval_ms=heartbeat_interval_ms,
                    auto_commit_interval_ms=auto_commit_interval_ms if enable_auto_commit else None,
                    metadata_interval_ms=min(metadata_max_age_ms, session_timeout_ms),
                    on_assigned=on_assigned,
                    on_revoked=on_revoked,
                    on_lost=on_lost,
                )
            nursery.start_soon(consumer._run, name="consumer scheduler")
            membership_scope = trio.CancelScope()
            if consumer.membership is not None:
                nursery.start_soon(
                    _run_membership, consumer.membership, membership_scope, name="group member"
                )
            try:
                yield consumer
            except BaseException as error:
                body.error = error
                raise
            finally:
                membership_scope.cancel()
                # Cancelled from outside, the connections are being cancelled too:
                # leaving would only retry against them. The group notices when
                # the member's session times out (docs/client.md).
                if consumer.membership is not None and not _cancelled(body.error):
                    await _leave(consumer.membership, request_timeout_ms, body.error is None)
                nursery.cancel_scope.cancel()


def _cancelled(error: BaseException | None) -> bool:
    """Whether the block is being left by a cancellation (alone, or in a group)."""
    if isinstance(error, trio.Cancelled):
        return True
    if isinstance(error, BaseExceptionGroup):
        _, rest = error.split(trio.Cancelled)
        return rest is None
    return False


async def _run_membership(member: GroupMembership, scope: trio.CancelScope) -> None:
    with scope:
        await member.run()


async def _leave(member: GroupMembership, request_timeout_ms: int, reader_finished: bool) -> None:
    """Leave the group on the way out, within the request timeout, even when cancelled."""
    with trio.CancelScope(shield=True), trio.move_on_after(request_timeout_ms / 1000):
        try:
            await member.close(reader_finished=reader_finished)
        except (KafkaError, ConnectionBrokenError) as error:
            logger.info("group %s: leaving failed: %s", member.group_id, error)


def _subscription(
    *,
    group_id: str | None,
    topics: Iterable[str] | None,
    pattern: str | re.Pattern[str] | None,
    assignors: Sequence[str],
    session_timeout_ms: int,
    heartbeat_interval_ms: int,
    rebalance_timeout_ms: int,
    auto_commit_interval_ms: int,
    group_instance_id: str | None,
) -> tuple[tuple[str, ...] | None, re.Pattern[str] | None] | None:
    """Check the group settings: (topics, compiled pattern), or None without a subscription."""
    if topics is None and pattern is None:
        return None
    if topics is not None and pattern is not None:
        raise InvalidArgumentError("give topics or pattern, not both")
    if group_id is None:
        raise InvalidArgumentError("subscribing needs a group: give group_id=...")
    names: tuple[str, ...] | None = None
    if topics is not None:
        if isinstance(topics, str):
            raise InvalidArgumentError("topics is a list of names, not one string")
        names = tuple(topics)
        if not names or not all(isinstance(t, str) and t for t in names):
            raise InvalidArgumentError(f"topics must be non-empty topic names, not {names!r}")
    compiled: re.Pattern[str] | None = None
    if pattern is not None:
        try:
            compiled = re.compile(pattern) if isinstance(pattern, str) else pattern
        except re.error as error:
            raise InvalidArgumentError(f"pattern {pattern!r} is not a regex: {error}") from None
    if not assignors or isinstance(assignors, str):
        raise InvalidArgumentError("assignors is a non-empty list of assignor names")
    unknown = [name for name in assignors if name not in ASSIGNORS]
    if unknown:
        raise InvalidArgumentError(f"unknown assignors {unknown}: choose from {sorted(ASSIGNORS)}")
    if not 0 < heartbeat_interval_ms < session_timeout_ms:
        raise InvalidArgumentError(
            f"heartbeat_interval_ms ({heartbeat_interval_ms}) must be above 0 and below "
            f"session_timeout_ms ({session_timeout_ms})"
        )
    if rebalance_timeout_ms < 1 or auto_commit_interval_ms < 1:
        raise InvalidArgumentError(
            "rebalance_timeout_ms and auto_commit_interval_ms must be 1 or more"
        )
    if group_instance_id is not None and not group_instance_id:
        raise InvalidArgumentError("group_instance_id must be a non-empty string or None")
    return names, compiled

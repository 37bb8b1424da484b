"""The model: what a Kafka broker has promised so far, and the checks against it.

Pure bookkeeping (no I/O): the player (``_play.py``) asks the broker and
hands each answer here. A broken promise raises :class:`ContractViolation`
naming what the broker did and what it had promised.

The promises, for one partition:

- A record is acknowledged at an offset. It stays readable there, once, with
  the same value, until DeleteRecords passes it or its topic is deleted;
  only a power loss (or a failed fdatasync) may take it away, and then only
  if it was not durable. Acknowledged with acks=all means durable, and so is
  every offset below it (one log, one fdatasync covers all before it).
- A crash that keeps the page cache (SIGKILL) loses nothing acknowledged.
- Offsets are dense: the records from log start to high watermark have every
  offset, in order.
- The high watermark and log start never go backwards, except that a loss
  may take the high watermark back to the last durable offset.
- A record whose produce got no answer (acks=0, a broken connection, an
  error that leaves it unknown) may be there or not, but only once.
"""

from __future__ import annotations

import attrs


class ContractViolation(Exception):
    """The broker broke a promise the model holds it to."""


@attrs.define
class PartitionModel:
    #: The highest log start and high watermark the broker has reported.
    log_start: int = 0
    high_watermark: int = 0
    #: offset -> value of every acknowledged record not yet deleted.
    acknowledged: dict[int, bytes] = attrs.Factory(dict)
    #: Every offset below this was acknowledged written (survives a SIGKILL).
    written_end: int = 0
    #: Every offset below this is durable (survives a power loss).
    durable_end: int = 0
    #: offset -> value read back, acknowledged or not: it may not change.
    observed: dict[int, bytes] = attrs.Factory(dict)
    #: Set by a loss (power loss, failed fdatasync): offsets from here on may be lost.
    loss_floor: int | None = None
    #: Records produced with no known outcome: the high watermark may be this far
    #: past the last one seen (so an offset there may be in range).
    unknown_records: int = 0
    #: Values produced here whose outcome is unknown: each may be here, once.
    maybe: set[bytes] = attrs.Factory(set)
    #: The highest offset DeleteRecords was asked for (answered or not): the log
    #: start may not pass it.
    deletable_to: int = 0

    def allow_loss(self, floor: int) -> None:
        self.loss_floor = floor if self.loss_floor is None else min(self.loss_floor, floor)

    def lose_from(self, end: int, what: str) -> None:
        """The broker's log ends at ``end`` now: drop what a loss took, if allowed."""
        if self.loss_floor is None:
            raise ContractViolation(
                f"{what}: the log ends at offset {end}, but it reached {self.high_watermark} "
                "and no fault allowed a loss"
            )
        if end < self.loss_floor:
            lost = sorted(o for o in self.acknowledged if o >= end)
            raise ContractViolation(
                f"{what}: the log ends at offset {end}, but offsets up to {self.loss_floor} "
                f"were acknowledged durable or written before a crash (lost: {lost[:10]})"
            )
        if end < self.high_watermark:
            for offset in [o for o in self.acknowledged if o >= end]:
                del self.acknowledged[offset]
            for offset in [o for o in self.observed if o >= end]:
                del self.observed[offset]
            self.high_watermark = end
            self.written_end = min(self.written_end, end)
            self.durable_end = min(self.durable_end, end)

    def check_offsets(self, log_start: int, high_watermark: int, what: str) -> None:
        """A reported (log start, high watermark): neither may go back, start <= end."""
        if log_start > high_watermark:
            raise ContractViolation(
                f"{what}: log start {log_start} is past the high watermark {high_watermark}"
            )
        if log_start < self.log_start:
            raise ContractViolation(
                f"{what}: log start went back from {self.log_start} to {log_start}"
            )
        if log_start > max(self.log_start, self.deletable_to):
            raise ContractViolation(
                f"{what}: log start moved to {log_start}, past {self.deletable_to}, the most "
                "DeleteRecords asked for"
            )
        if high_watermark < self.high_watermark:
            self.lose_from(high_watermark, what)
        if high_watermark < self.written_end and self.loss_floor is None:
            raise ContractViolation(
                f"{what}: high watermark {high_watermark} is below offset {self.written_end}, "
                "which was acknowledged"
            )
        self.high_watermark = max(self.high_watermark, high_watermark)
        self.raise_log_start(log_start)

    def raise_log_start(self, log_start: int) -> None:
        self.log_start = max(self.log_start, log_start)
        for offset in [o for o in self.acknowledged if o < self.log_start]:
            del self.acknowledged[offset]
        for offset in [o for o in self.observed if o < self.log_start]:
            del self.observed[offset]

    def acknowledge(
        self, base_offset: int, values: list[bytes], *, durable: bool, what: str
    ) -> None:
        end = base_offset + len(values)
        if base_offset < self.high_watermark:
            # Appends after a loss start where the log now ends; without a loss,
            # an offset below the high watermark is an offset handed out twice.
            self.lose_from(base_offset, what)
        for offset in range(base_offset, end):
            if offset in self.acknowledged:
                raise ContractViolation(
                    f"{what}: offset {offset} acknowledged twice "
                    f"({self.acknowledged[offset]!r}, then {values[offset - base_offset]!r})"
                )
        if base_offset < self.log_start:
            raise ContractViolation(
                f"{what}: acknowledged at offset {base_offset}, "
                f"below the log start {self.log_start}"
            )
        for offset, value in zip(range(base_offset, end), values, strict=True):
            self.acknowledged[offset] = value
            seen = self.observed.get(offset)
            if seen is not None and seen != value:
                raise ContractViolation(
                    f"{what}: acknowledged {value!r} at offset {offset}, where {seen!r} was read"
                )
        self.written_end = max(self.written_end, end)
        if durable:
            self.durable_end = max(self.durable_end, end)
            if self.loss_floor is not None:
                # Durable now, and so is everything below: no later loss may take it.
                self.loss_floor = max(self.loss_floor, end)
        self.high_watermark = max(self.high_watermark, end)

    def check_read(
        self, offset: int, value: bytes, seen_values: dict[bytes, int], what: str
    ) -> None:
        """A record read at ``offset``: acknowledged there, or an unacknowledged one, once."""
        expected = self.acknowledged.get(offset)
        if expected is not None and expected != value:
            if self.loss_floor is None or offset < self.loss_floor:
                raise ContractViolation(
                    f"{what}: offset {offset} holds {value!r}, "
                    f"but {expected!r} was acknowledged there"
                )
            # A loss took the acknowledged record; what is there now must be
            # a record of unknown outcome (checked below).
            del self.acknowledged[offset]
            expected = None
        if expected is None and value not in self.maybe:
            raise ContractViolation(
                f"{what}: offset {offset} holds {value!r}, which was never produced to this "
                "partition or was acknowledged at another offset"
            )
        seen = self.observed.get(offset)
        if (
            seen is not None
            and seen != value
            and (self.loss_floor is None or offset < self.loss_floor)
        ):
            raise ContractViolation(
                f"{what}: offset {offset} held {seen!r} and now holds {value!r}"
            )
        self.observed[offset] = value
        other = seen_values.get(value)
        if other is not None and other != offset:
            raise ContractViolation(f"{what}: {value!r} is at offsets {other} and {offset}")
        seen_values[value] = offset


@attrs.define
class TopicModel:
    partitions: list[PartitionModel]


@attrs.define
class ProducerModel:
    """An idempotent producer: its id, epoch and the next sequence per partition."""

    producer_id: int
    epoch: int
    sequences: dict[tuple[int, int], int] = attrs.Factory(dict)
    #: A loss (power loss, failed fdatasync) may have taken its last batches, and
    #: with them the broker's state of it: its next batch may be refused.
    after_loss: bool = False


@attrs.define
class MemberModel:
    member_id: str
    generation: int
    #: When it joined (trio time): the player sends no heartbeats, so after the
    #: session timeout the coordinator may have removed it.
    joined_at: float = 0.0


@attrs.define
class Model:
    topics: dict[int, TopicModel] = attrs.Factory(dict)
    #: (group, topic, partition) -> committed offset.
    committed: dict[tuple[int, int, int], int] = attrs.Factory(dict)
    #: group -> member slot -> member, as of the last rebalance the player saw.
    members: dict[int, dict[int, MemberModel]] = attrs.Factory(dict)
    #: group -> until when (trio time) its members may be mid-rebalance (one left).
    rebalancing_until: dict[int, float] = attrs.Factory(dict)
    producers: dict[int, ProducerModel] = attrs.Factory(dict)
    #: The last generation of each group seen: generations only go up.
    generations: dict[int, int] = attrs.Factory(dict)

    def partition(self, topic: int, partition: int) -> PartitionModel | None:
        model = self.topics.get(topic)
        if model is None or not 0 <= partition < len(model.partitions):
            return None
        return model.partitions[partition]

    def all_partitions(self) -> list[tuple[int, int, PartitionModel]]:
        return [
            (topic, index, partition)
            for topic, model in self.topics.items()
            for index, partition in enumerate(model.partitions)
        ]

    def allow_loss(self, *, durable_only: bool) -> None:
        """A fault that may drop what is not durable (``durable_only``) or nothing written."""
        for _, _, partition in self.all_partitions():
            partition.allow_loss(partition.durable_end if durable_only else partition.written_end)
        if durable_only:
            # A SIGKILL keeps the page cache, and with it every producer's batches.
            for producer in self.producers.values():
                producer.after_loss = True

    def loss_realized(self) -> None:
        """The broker has recovered from the loss (and been checked): no more may go."""
        for _, _, partition in self.all_partitions():
            partition.loss_floor = None

"""ProducerStateTable: idempotent producers' sequence state of one partition.

Kafka's idempotent producer stamps each batch with (producer id, epoch, base
sequence). The broker keeps, per producer, its epoch and the last few
batches it appended, so that a retried batch is answered with the offsets it
got the first time (no duplicate) and a batch that skips sequences is
refused (no gap). The state is rebuilt from batch headers, so it lives with
the log: checkpointed with the recovery point, and replayed from the batches
recovery checks after it.
"""

from __future__ import annotations

from collections import deque

import attrs
from kio.schema.errors import ErrorCode

from trioring.errors import TrioringError
from trioring.protocol.records import NO_PRODUCER_ID, BatchHeader

#: Batches remembered per producer for duplicate detection (Kafka: 5, the most
#: a producer may have in flight with idempotence).
PRODUCER_BATCHES_MAX = 5
_SEQUENCE_MODULUS = 1 << 31


class OutOfOrderSequenceError(TrioringError):
    kafka_error_code = ErrorCode.out_of_order_sequence_number


class InvalidProducerEpochError(TrioringError):
    kafka_error_code = ErrorCode.invalid_producer_epoch


class UnknownProducerIdError(TrioringError):
    kafka_error_code = ErrorCode.unknown_producer_id


@attrs.frozen
class ProducerBatch:
    first_sequence: int
    last_sequence: int
    base_offset: int
    last_offset: int


@attrs.define
class ProducerEntry:
    epoch: int
    last_timestamp_ms: int
    batches: deque[ProducerBatch] = attrs.field(factory=lambda: deque(maxlen=PRODUCER_BATCHES_MAX))


def last_sequence(header: BatchHeader) -> int:
    return (header.base_sequence + header.last_offset_delta) % _SEQUENCE_MODULUS


@attrs.frozen
class ActiveProducer:
    """One producer's state in a partition, as DescribeProducers reports it."""

    producer_id: int
    epoch: int
    #: The sequence of its last record here (-1: none remembered).
    last_sequence: int
    last_timestamp_ms: int


class ProducerStateTable:
    def __init__(self) -> None:
        self._entries: dict[int, ProducerEntry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def check(self, header: BatchHeader) -> ProducerBatch | None:
        """Validate a batch about to be appended.

        Returns the earlier batch if this one is a retry of it (answer with
        its offsets, append nothing), None if it may be appended; raises
        OutOfOrderSequenceError, InvalidProducerEpochError or
        UnknownProducerIdError as Kafka does.
        """
        if header.producer_id == NO_PRODUCER_ID:
            return None
        entry = self._entries.get(header.producer_id)
        first = header.base_sequence
        if entry is None:
            if first != 0:
                raise UnknownProducerIdError(
                    f"producer {header.producer_id} is unknown to this partition and its batch "
                    f"starts at sequence {first}, not 0"
                )
            return None
        if header.producer_epoch < entry.epoch:
            raise InvalidProducerEpochError(
                f"producer {header.producer_id} epoch {header.producer_epoch} is older than "
                f"{entry.epoch}: another producer with this id replaced it"
            )
        if header.producer_epoch > entry.epoch:
            if first != 0:
                raise OutOfOrderSequenceError(
                    f"producer {header.producer_id}'s new epoch {header.producer_epoch} "
                    f"must start at sequence 0, not {first}"
                )
            return None
        last = last_sequence(header)
        for batch in entry.batches:
            if batch.first_sequence == first and batch.last_sequence == last:
                return batch
        expected = (entry.batches[-1].last_sequence + 1) % _SEQUENCE_MODULUS if entry.batches else 0
        if first != expected:
            raise OutOfOrderSequenceError(
                f"producer {header.producer_id} sent sequence {first}, expected {expected}"
            )
        return None

    def record(self, header: BatchHeader, base_offset: int, timestamp_ms: int) -> None:
        """Note an appended batch (at its assigned ``base_offset``)."""
        if header.producer_id == NO_PRODUCER_ID:
            return
        entry = self._entries.get(header.producer_id)
        if entry is None or header.producer_epoch > entry.epoch:
            entry = ProducerEntry(header.producer_epoch, timestamp_ms)
            self._entries[header.producer_id] = entry
        elif header.producer_epoch < entry.epoch:
            return  # a stale epoch found by recovery: the newer one wins
        entry.last_timestamp_ms = max(entry.last_timestamp_ms, timestamp_ms)
        entry.batches.append(
            ProducerBatch(
                header.base_sequence,
                last_sequence(header),
                base_offset,
                base_offset + header.last_offset_delta,
            )
        )

    def active(self) -> list[ActiveProducer]:
        """Every producer this partition remembers, by producer id."""
        return [
            ActiveProducer(
                producer_id,
                entry.epoch,
                entry.batches[-1].last_sequence if entry.batches else -1,
                entry.last_timestamp_ms,
            )
            for producer_id, entry in sorted(self._entries.items())
        ]

    def expire(self, now_ms: int, expiration_ms: int) -> int:
        """Forget producers silent for ``expiration_ms`` (Kafka: producer.id.expiration.ms)."""
        stale = [
            producer_id
            for producer_id, entry in self._entries.items()
            if now_ms - entry.last_timestamp_ms > expiration_ms
        ]
        for producer_id in stale:
            del self._entries[producer_id]
        return len(stale)

    def to_json(self) -> dict[str, list[object]]:
        return {
            str(producer_id): [
                entry.epoch,
                entry.last_timestamp_ms,
                [
                    [b.first_sequence, b.last_sequence, b.base_offset, b.last_offset]
                    for b in entry.batches
                ],
            ]
            for producer_id, entry in self._entries.items()
        }

    @classmethod
    def from_json(cls, data: dict[str, list[object]]) -> ProducerStateTable:
        """Inverse of :meth:`to_json`; ValueError/TypeError/KeyError on malformed input."""
        table = cls()
        for producer_id, (epoch, last_timestamp_ms, batches) in data.items():
            entry = ProducerEntry(int(epoch), int(last_timestamp_ms))  # type: ignore[call-overload]
            for first, last, base, end in batches:  # type: ignore[attr-defined]
                entry.batches.append(ProducerBatch(int(first), int(last), int(base), int(end)))
            table._entries[int(producer_id)] = entry
        return table

"""The default partitioner of Kafka's Java client and librdkafka's ``murmur2_random``.

A keyed record goes to ``murmur2(key) & 0x7fffffff % partitions``, so records
with one key land on the same partition whoever produced them. Keyless records
stick to one partition until its batch is sent, then another is drawn at
random (KIP-480), which fills batches instead of scattering single records.
"""

from __future__ import annotations

import random

__all__ = ["StickyPartitioner", "murmur2", "partition_for_key"]

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's ``Utils.murmur2``: MurmurHash2, 32 bits, as a signed int."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    whole = length - length % 4
    for i in range(0, whole, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = (h * _M) & _MASK
        h ^= k
    tail = length % 4
    if tail == 3:
        h ^= data[whole + 2] << 16
    if tail >= 2:
        h ^= data[whole + 1] << 8
    if tail >= 1:
        h ^= data[whole]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for_key(key: bytes, partitions: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class StickyPartitioner:
    """Keyless records: one partition per topic until told its batch went out."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._random = rng or random.Random()
        self._current: dict[str, int] = {}

    def partition(self, topic: str, partitions: int) -> int:
        current = self._current.get(topic)
        if current is None or current >= partitions:
            current = self._current[topic] = self._random.randrange(partitions)
        return current

    def batch_sent(self, topic: str, partition: int, partitions: int) -> None:
        """The sticky partition's batch is full or sent: move to another one."""
        if self._current.get(topic) == partition and partitions > 1:
            others = [p for p in range(partitions) if p != partition]
            self._current[topic] = self._random.choice(others)

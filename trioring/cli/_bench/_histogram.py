"""A latency histogram of fixed size: log-linear buckets, as HdrHistogram's.

Values are whole microseconds. Below 2 * ``SUB_BUCKETS`` (256 µs) every
value has a bucket of its own; above, each power of two is cut into
``SUB_BUCKETS`` (128) equal buckets, so a bucket is at most 1/128 (0.8 %)
of its values wide. The bucket array never grows (``BUCKETS`` counts, about
4,000, for values up to 2**36 µs, 19 hours; larger ones count in the last
bucket), so an unbounded run holds bounded memory and histograms of several
processes merge by adding counts.

Percentiles are nearest-rank: the smallest recorded value with at least p %
of the records at or below it, reported as the highest value its bucket
holds (never above the largest value recorded). So a reported percentile is
the exact one, or at most 0.8 % above it.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

#: Linear buckets per power of two above the exact range.
SUB_BUCKET_BITS = 7
SUB_BUCKETS = 1 << SUB_BUCKET_BITS
#: Values below this have a bucket each.
EXACT_VALUES = 2 * SUB_BUCKETS
#: Values at or above this count in the last bucket (19 hours in microseconds).
VALUE_BITS_MAX = 36
BUCKETS = EXACT_VALUES + (VALUE_BITS_MAX - SUB_BUCKET_BITS - 1) * SUB_BUCKETS

assert VALUE_BITS_MAX > SUB_BUCKET_BITS + 1

#: The edges of the coarse buckets a person reads (``summary_buckets``), in µs:
#: 1-2-5 steps from 10 µs to 100 s.
SUMMARY_EDGES_US = (
    *(step * 10**exponent for exponent in range(1, 9) for step in (1, 2, 5)),
    10**9,
)


def bucket_index(value_us: int) -> int:
    """The bucket a value counts in."""
    if value_us < EXACT_VALUES:
        return max(value_us, 0)
    shift = value_us.bit_length() - SUB_BUCKET_BITS - 1
    index = EXACT_VALUES + (shift - 1) * SUB_BUCKETS + (value_us >> shift) - SUB_BUCKETS
    return min(index, BUCKETS - 1)


def bucket_range(index: int) -> tuple[int, int]:
    """The values a bucket holds: (lowest, highest), both included."""
    if index < EXACT_VALUES:
        return index, index
    shift = (index - EXACT_VALUES) // SUB_BUCKETS + 1
    lowest = ((index - EXACT_VALUES) % SUB_BUCKETS + SUB_BUCKETS) << shift
    return lowest, lowest + (1 << shift) - 1


class LatencyHistogram:
    """Counts of latencies in microseconds, with exact count, sum, min and max."""

    __slots__ = ("count", "counts", "max_us", "min_us", "sum_us")

    def __init__(self) -> None:
        self.counts = [0] * BUCKETS
        self.count = 0
        self.sum_us = 0
        self.min_us = 0
        self.max_us = 0

    def record(self, value_us: int) -> None:
        """Count one latency (a negative one, from clocks out of step, counts as 0)."""
        value_us = max(value_us, 0)
        self.counts[bucket_index(value_us)] += 1
        if not self.count or value_us < self.min_us:
            self.min_us = value_us
        self.max_us = max(self.max_us, value_us)
        self.count += 1
        self.sum_us += value_us

    def record_many(self, values_us: list[int]) -> None:
        """Count several latencies: :meth:`record` for each, in a quarter of the time
        (the bench counts every record it sends)."""
        if not values_us:
            return
        low = min(values_us)
        if low < 0:
            values_us = [value if value > 0 else 0 for value in values_us]
            low = 0
        counts = self.counts
        for value in values_us:
            if value < EXACT_VALUES:
                counts[value] += 1
            else:
                shift = value.bit_length() - SUB_BUCKET_BITS - 1
                index = EXACT_VALUES + (shift - 2) * SUB_BUCKETS + (value >> shift)
                counts[index if index < BUCKETS else BUCKETS - 1] += 1
        if not self.count or low < self.min_us:
            self.min_us = low
        high = max(values_us)
        self.max_us = max(self.max_us, high)
        self.count += len(values_us)
        self.sum_us += sum(values_us)

    def merge(self, other: LatencyHistogram) -> None:
        if not other.count:
            return
        if not self.count or other.min_us < self.min_us:
            self.min_us = other.min_us
        self.max_us = max(self.max_us, other.max_us)
        self.count += other.count
        self.sum_us += other.sum_us
        self.counts = [
            mine + theirs for mine, theirs in zip(self.counts, other.counts, strict=True)
        ]

    def percentile_us(self, percent: float) -> int:
        """The nearest-rank percentile (see the module docstring); 0 when empty."""
        if not 0 <= percent <= 100:
            raise ValueError(f"a percentile is 0..100, not {percent}")
        if not self.count:
            return 0
        rank = max(1, math.ceil(percent / 100 * self.count))
        seen = 0
        for index, bucket_count in enumerate(self.counts):
            seen += bucket_count
            if seen >= rank:
                return max(self.min_us, min(bucket_range(index)[1], self.max_us))
        raise AssertionError("the counts add up to less than count")

    def mean_us(self) -> float:
        return self.sum_us / self.count if self.count else 0.0

    def summary_buckets(self) -> list[tuple[int, int | None, int]]:
        """Coarse log-scale buckets ``(from_us, to_us, count)`` for a person to read:
        1-2-5 steps (``SUMMARY_EDGES_US``), from the one holding the smallest value
        to the one holding the largest; the first starts at 0, the last may be
        open (``to_us`` None). A fine bucket counts in the coarse one its lowest
        value falls in, so an edge is exact up to a fine bucket's width (0.8 %).
        The counts add up to ``count``."""
        if not self.count:
            return []
        edges = (0, *SUMMARY_EDGES_US)
        totals = [0] * len(edges)
        position = 0
        for index, bucket_count in _nonzero(self.counts):
            lowest = bucket_range(index)[0]
            while position + 1 < len(edges) and edges[position + 1] <= lowest:
                position += 1
            totals[position] += bucket_count
        used = [position for position, total in enumerate(totals) if total]
        return [
            (
                edges[position],
                edges[position + 1] if position + 1 < len(edges) else None,
                totals[position],
            )
            for position in range(used[0], used[-1] + 1)
        ]

    def to_json(self) -> dict[str, Any]:
        """A form that survives JSON (sparse counts), for :meth:`from_json`."""
        return {
            "count": self.count,
            "sum_us": self.sum_us,
            "min_us": self.min_us,
            "max_us": self.max_us,
            "buckets": [[index, bucket_count] for index, bucket_count in _nonzero(self.counts)],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LatencyHistogram:
        histogram = cls()
        for index, bucket_count in data["buckets"]:
            if not 0 <= index < BUCKETS or bucket_count < 0:
                raise ValueError(f"not a histogram bucket: {index}, {bucket_count}")
            histogram.counts[index] += bucket_count
        histogram.count = int(data["count"])
        histogram.sum_us = int(data["sum_us"])
        histogram.min_us = int(data["min_us"])
        histogram.max_us = int(data["max_us"])
        if sum(histogram.counts) != histogram.count:
            raise ValueError("the histogram's counts do not add up to its count")
        return histogram


def _nonzero(counts: list[int]) -> Iterator[tuple[int, int]]:
    return ((index, bucket_count) for index, bucket_count in enumerate(counts) if bucket_count)

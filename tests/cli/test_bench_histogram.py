"""The bench's latency histogram against exact percentiles of known samples."""

from __future__ import annotations

import itertools
import math

from hypothesis import given
from hypothesis import strategies as st

from trioring.cli._bench._histogram import (
    BUCKETS,
    EXACT_VALUES,
    SUB_BUCKETS,
    LatencyHistogram,
    bucket_index,
    bucket_range,
)

PERCENTS = (0.0, 1.0, 50.0, 90.0, 99.0, 99.9, 100.0)


def exact_percentile(values: list[int], percent: float) -> int:
    """Nearest rank: the smallest value with at least ``percent`` % of them at or below it."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(percent / 100 * len(ordered))) - 1]


def histogram_of(values: list[int]) -> LatencyHistogram:
    histogram = LatencyHistogram()
    for value in values:
        histogram.record(value)
    return histogram


def test_buckets_tile_the_values() -> None:
    previous_highest = -1
    for index in range(BUCKETS):
        lowest, highest = bucket_range(index)
        assert lowest == previous_highest + 1
        assert bucket_index(lowest) == index and bucket_index(highest) == index
        # At most 1/SUB_BUCKETS of the bucket's values wide: the reported error bound.
        assert highest - lowest + 1 <= max(1, lowest // SUB_BUCKETS)
        previous_highest = highest
    assert bucket_index(10**15) == BUCKETS - 1


def test_a_known_sample() -> None:
    # 1..1000 µs, then a slow tail of ten values in the milliseconds and one of 2 s.
    values = [*range(1, 1001), *(5_000 + 1_000 * step for step in range(10)), 2_000_000]
    histogram = histogram_of(values)
    assert histogram.count == 1011 and histogram.max_us == 2_000_000 and histogram.min_us == 1
    # Below 256 µs every value has a bucket of its own: exact.
    assert exact_percentile(values, 10) == 102 == histogram.percentile_us(10)
    # Above, the highest value of the exact percentile's bucket (at most 0.8 % above it).
    assert exact_percentile(values, 50) == 506
    assert bucket_range(bucket_index(506)) == (506, 507) and histogram.percentile_us(50) == 507
    assert exact_percentile(values, 99) == 5_000
    assert bucket_range(bucket_index(5_000)) == (4_992, 5_023)
    assert histogram.percentile_us(99) == 5_023
    assert exact_percentile(values, 99.9) == 14_000 and histogram.percentile_us(99.9) == 14_015
    # Never above the largest value recorded, which is kept exactly.
    assert histogram.percentile_us(100) == 2_000_000
    assert histogram.mean_us() == sum(values) / len(values)


@given(st.lists(st.integers(min_value=0, max_value=10**10), min_size=1, max_size=300))
def test_percentiles_are_exact_or_within_their_bucket(values: list[int]) -> None:
    histogram = histogram_of(values)
    for percent in PERCENTS:
        exact = exact_percentile(values, percent)
        reported = histogram.percentile_us(percent)
        assert exact <= reported <= max(values)
        assert reported <= bucket_range(bucket_index(exact))[1]
        if exact < EXACT_VALUES:
            assert reported == exact
        else:
            assert reported - exact <= exact / SUB_BUCKETS
    assert histogram.percentile_us(100) == max(values)


@given(
    st.lists(st.integers(min_value=-5, max_value=10**9), max_size=200),
    st.lists(st.integers(min_value=0, max_value=10**9), max_size=200),
)
def test_record_many_merge_and_json_agree_with_record(first: list[int], second: list[int]) -> None:
    one_by_one = histogram_of(first + second)
    many = LatencyHistogram()
    many.record_many(first)
    other = LatencyHistogram()
    other.record_many(second)
    many.merge(LatencyHistogram.from_json(other.to_json()))
    for histogram in (many, LatencyHistogram.from_json(many.to_json())):
        assert histogram.counts == one_by_one.counts
        assert (histogram.count, histogram.sum_us, histogram.min_us, histogram.max_us) == (
            one_by_one.count,
            one_by_one.sum_us,
            one_by_one.min_us,
            one_by_one.max_us,
        )


@given(st.lists(st.integers(min_value=0, max_value=10**10), min_size=1, max_size=300))
def test_summary_buckets_add_up_and_hold_their_values(values: list[int]) -> None:
    histogram = histogram_of(values)
    buckets = histogram.summary_buckets()
    assert sum(count for _, _, count in buckets) == len(values)
    assert buckets[0][0] == 0 or buckets[0][2] > 0
    assert buckets[-1][2] > 0
    for (_, high, _), (low, _, _) in itertools.pairwise(buckets):
        assert high == low  # contiguous, empty ones between included
    # Each value is counted in the bucket its fine bucket's lowest value falls in.
    for value in values:
        lowest = bucket_range(bucket_index(value))[0]
        assert any(low <= lowest and (high is None or lowest < high) for low, high, _ in buckets)


def test_an_empty_histogram() -> None:
    histogram = LatencyHistogram()
    assert histogram.percentile_us(99) == 0
    assert histogram.summary_buckets() == []
    assert histogram.mean_us() == 0.0

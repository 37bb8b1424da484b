"""A Fetch answer is capped at FETCH_RESPONSE_BYTES_MAX whatever the request asks,
as Kafka's broker caps it with fetch.max.bytes: the answer is built in memory.

Before: a request's max_bytes (up to 2 GiB) was the only bound of the answer.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

import trioring
from trioring import Record
from trioring.handlers.messages import FetchPartition, FetchRequest
from trioring.protocol.records import build_batch

# The module, not the function trioring.handlers re-exports under its name.
fetch_module = importlib.import_module("trioring.handlers.fetch")


async def test_the_answer_is_capped_whatever_the_request_asks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch_bytes = len(build_batch([Record(value=b"x" * 400)]))
    monkeypatch.setattr(fetch_module, "FETCH_RESPONSE_BYTES_MAX", 3 * batch_bytes)
    async with trioring.open_broker(tmp_path) as broker:
        await broker.create_topic("t", 3)
        for partition in range(3):
            for _ in range(4):
                await broker.produce("t", partition, [Record(value=b"x" * 400)], acks=1)
        response = await broker.handlers.fetch(
            broker.handler_context(),
            FetchRequest(
                [FetchPartition("t", p, 0, 1 << 30) for p in range(3)], max_bytes=(1 << 31) - 1
            ),
        )
    sizes = [len(p.records) for p in response.partitions]
    assert sum(sizes) == 3 * batch_bytes, sizes

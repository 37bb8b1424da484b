"""The demo ``python -m trioring`` runs: produce, tail and commit in-process.

A producer appends a record every few milliseconds with acks="all"; a
consumer in group "demo" tails the partition with long-poll fetches and
commits what it has processed. Run it twice: the second run resumes from
the committed offset, because everything is durable in the data directory.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import trio

import trioring

TOPIC = "demo"
GROUP = "demo-consumer"
#: The demo's own directory: never a running server's (./trioring-data).
DEMO_DATA_DIR_DEFAULT = "./trioring-demo-data"


async def run_demo(
    data_dir: str,
    *,
    seconds: float = 5.0,
    records_per_second: float = 200.0,
    say: Callable[[str], object] = print,
) -> dict[str, int]:
    """Run the demo for ``seconds``; return counts (also used by the tests)."""
    config = trioring.BrokerConfig(data_dir=data_dir)
    async with trioring.open_broker(config) as broker:
        if TOPIC not in broker.topics():
            await broker.create_topic(TOPIC, partitions=1)
        start_offset = (await broker.committed_offsets(GROUP)).get((TOPIC, 0), 0)
        end_offset = await broker.list_offset(TOPIC, 0, "latest")
        say(
            f"trioring demo: data in {data_dir}, I/O backend {broker.io_backend}; "
            f"topic {TOPIC!r} holds offsets up to {end_offset}, "
            f"group {GROUP!r} resumes at {start_offset}"
        )
        counts = {"produced": 0, "consumed": 0, "committed_offset": start_offset}
        done = trio.Event()

        async def produce() -> None:
            interval = 1.0 / records_per_second
            sequence = 0
            deadline = trio.current_time() + seconds
            while trio.current_time() < deadline:
                value = json.dumps({"sequence": sequence, "sent_at": time.time()}).encode()
                await broker.produce(
                    TOPIC, 0, [trioring.Record(key=b"demo", value=value)], acks="all"
                )
                counts["produced"] += 1
                sequence += 1
                await trio.sleep(interval)
            done.set()

        async def consume() -> None:
            offset = start_offset
            latencies_ms: list[float] = []
            last_report = trio.current_time()
            while True:
                fetched = await broker.fetch(TOPIC, 0, offset, max_wait=0.5)
                now = time.time()
                for record in fetched.records:
                    sent_at = json.loads(record.value or b"{}").get("sent_at")
                    if sent_at is not None:
                        latencies_ms.append((now - sent_at) * 1000)
                if fetched.next_offset is not None:
                    counts["consumed"] += len(fetched.records)
                    offset = fetched.next_offset
                    await broker.commit_offsets(GROUP, {(TOPIC, 0): offset})
                    counts["committed_offset"] = offset
                if trio.current_time() - last_report >= 1.0 and latencies_ms:
                    latencies_ms.sort()
                    say(
                        f"  produced {counts['produced']}, consumed {counts['consumed']}, "
                        f"committed offset {offset}, produce-to-consume p50 "
                        f"{latencies_ms[len(latencies_ms) // 2]:.1f} ms"
                    )
                    latencies_ms.clear()
                    last_report = trio.current_time()
                if done.is_set() and offset >= broker.shard.log(TOPIC, 0).high_watermark.value:
                    return

        async with trio.open_nursery() as nursery:
            nursery.start_soon(produce)
            nursery.start_soon(consume)
        say(
            f"done: produced {counts['produced']}, consumed {counts['consumed']}, "
            f"committed offset {counts['committed_offset']}. Run again to resume from there."
        )
        return counts

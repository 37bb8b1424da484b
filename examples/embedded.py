"""The README's embedded example, runnable: ``python examples/embedded.py [DATA_DIR]``."""

from __future__ import annotations

import sys
import tempfile

import trio

import trioring


async def main(data_dir: str) -> None:
    async with trioring.open_broker(data_dir) as broker:
        if "events" not in broker.topics():
            await broker.create_topic("events", partitions=3)

        # acks="all" returns once the batch is on disk (fdatasync, group-committed).
        result = await broker.produce(
            "events",
            0,
            [trioring.Record(key=b"user-1", value=b"signed up", headers=[("source", b"web")])],
            acks="all",
        )
        print("produced at offset", result.base_offset)

        # Resume from the group's committed offset (0 the first time).
        offset = (await broker.committed_offsets("group-a")).get(("events", 0), 0)
        fetched = await broker.fetch("events", 0, offset=offset, max_wait=0.5)
        for record in fetched.records:
            print(record.offset, record.key, record.value, record.headers)
        if fetched.next_offset is not None:
            await broker.commit_offsets("group-a", {("events", 0): fetched.next_offset})
        print("high watermark", fetched.high_watermark)
        print("committed", await broker.committed_offsets("group-a"))


if __name__ == "__main__":
    trio.run(main, sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp())

"""Cancelling the consumer's reads, commits and close at random points (hypothesis),
in-process: no task is left behind, and a record taken is a record returned, so
the records a reader got are every partition's first records, each once."""

from __future__ import annotations

import contextlib
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from client_support import open_target
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from interop_clients import Record

from trioring.client import ConsumerRecord, open_consumer
from trioring.errors import KafkaError

#: Records in each of the topic's two partitions: more than any example reads.
RECORDS_PER_PARTITION = 100
#: Bound on any one step that is not cancelled on purpose.
STEP_SECONDS = 5.0
GROUP_SETTINGS: dict[str, Any] = {
    "session_timeout_ms": 6000,
    "heartbeat_interval_ms": 100,
    "auto_commit_interval_ms": 20,
}


def _task_names() -> Counter[str]:
    """The names of the tasks alive now, counted."""
    names: Counter[str] = Counter()
    pending = [trio.lowlevel.current_root_task()]
    while pending:
        task = pending.pop()
        names[task.name] += 1
        pending += [child for nursery in task.child_nurseries for child in nursery.child_tasks]
    return names


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    operations=st.lists(
        st.tuples(
            st.sampled_from(["next", "getmany", "commit"]),
            st.sampled_from([None, 0.0, 0.0005, 0.005]),
        ),
        min_size=1,
        max_size=8,
    ),
    close_after=st.sampled_from([None, 0.0, 0.002, 0.02]),
    group=st.booleans(),
)
def test_cancelling_reads_commits_and_close_loses_and_leaks_nothing(
    tmp_path_factory: pytest.TempPathFactory,
    operations: list[tuple[str, float | None]],
    close_after: float | None,
    group: bool,
) -> None:
    data_dir: Path = tmp_path_factory.mktemp("cancel") / "data"

    async def run() -> None:
        async with open_target(None, data_dir) as target:
            topic = f"cancel-{uuid.uuid4().hex[:8]}"
            await target.create_topic(topic, 2)
            await target.produce(
                topic,
                [
                    Record(b"k", b"%d-%d" % (p, i), (), partition=p)
                    for p in (0, 1)
                    for i in range(RECORDS_PER_PARTITION)
                ],
            )
            before = _task_names()
            got: list[ConsumerRecord] = []
            settings = GROUP_SETTINGS if group else {}
            with trio.move_on_after(STEP_SECONDS if close_after is None else close_after):
                async with open_consumer(
                    target.connect,
                    group_id=f"g-{uuid.uuid4().hex[:8]}",
                    topics=[topic] if group else None,
                    auto_offset_reset="earliest",
                    fetch_max_wait_ms=10,
                    **settings,
                ) as consumer:
                    if not group:
                        consumer.assign([(topic, 0), (topic, 1)])
                    for kind, cancel_after in operations:
                        limit = STEP_SECONDS if cancel_after is None else cancel_after
                        with trio.move_on_after(limit):
                            if kind == "next":
                                got.append(await consumer.__anext__())
                            elif kind == "getmany":
                                got.extend(await consumer.getmany(timeout_s=0.05, max_records=7))
                            else:
                                # A member's commit may meet a rebalance.
                                with contextlib.suppress(KafkaError):
                                    await consumer.commit()
            await trio.testing.wait_all_tasks_blocked()
            leaked = _task_names() - before
            # The embedded broker's coordinator times a group's rebalance in a task
            # of its own, which ends by itself: not the client's.
            del leaked["group timer"]
            assert not leaked, f"tasks leaked: {leaked}"
            for partition in (0, 1):
                values = [r.value for r in got if r.partition == partition]
                offsets = [r.offset for r in got if r.partition == partition]
                assert offsets == list(range(len(offsets))), "a record lost or doubled"
                assert values == [b"%d-%d" % (partition, i) for i in range(len(values))]

    trio.run(run)

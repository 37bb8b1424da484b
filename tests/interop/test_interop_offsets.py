"""ListOffsets (watermarks, offsets for times, offset reset) and committed offsets
without group membership (assign() + commit: OffsetCommit with generation -1).
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from interop_clients import confluent_consumer, import_kafka_python
from interop_wire import create_topic

confluent_kafka = pytest.importorskip("confluent_kafka")
TopicPartition = confluent_kafka.TopicPartition

BASE_MS = 1_700_000_000_000
#: Partition 2's timestamps are out of order, one record per batch.
UNORDERED_MS = [BASE_MS + 5000, BASE_MS + 1000, BASE_MS + 3000, BASE_MS + 2000]


def _produce(bootstrap: str, topic: str, batches: list[list[tuple[int, int]]]) -> None:
    """Each inner list (partition, timestamp) is flushed as one batch."""
    producer = confluent_kafka.Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 50, "message.timeout.ms": 30_000}
    )
    errors = []
    try:
        for batch in batches:
            for partition, timestamp in batch:
                producer.produce(
                    topic,
                    value=b"%d@%d" % (partition, timestamp),
                    partition=partition,
                    timestamp=timestamp,
                    on_delivery=lambda error, _message: errors.append(error),
                )
            assert producer.flush(30) == 0
    finally:
        producer.close()
    assert errors and not any(errors), errors


@pytest.fixture
def timed_topic(module_broker, topic_name):
    """Partition 0: 10 records 1 s apart, one per batch; partition 1: 5 records
    1 s apart in one batch; partition 2: out-of-order timestamps."""
    create_topic(module_broker.port, topic_name, 3)
    batches = [[(0, BASE_MS + i * 1000)] for i in range(10)]
    batches.append([(1, BASE_MS + i * 1000) for i in range(5)])
    batches += [[(2, timestamp)] for timestamp in UNORDERED_MS]
    _produce(module_broker.bootstrap, topic_name, batches)
    return topic_name


def _first_offset_at_or_after(timestamps: list[int], target: int) -> int:
    """Kafka's answer: the first offset whose timestamp is >= target, else -1 (end)."""
    return next((i for i, ts in enumerate(timestamps) if ts >= target), -1)


def test_watermarks(module_broker, timed_topic, topic_name):
    create_topic(module_broker.port, topic_name + "-empty", 1)
    consumer = confluent_consumer(module_broker.bootstrap)
    try:
        marks = [
            consumer.get_watermark_offsets(TopicPartition(timed_topic, p), timeout=10)
            for p in range(3)
        ]
        assert marks == [(0, 10), (0, 5), (0, len(UNORDERED_MS))]
        empty = consumer.get_watermark_offsets(TopicPartition(topic_name + "-empty", 0), timeout=10)
        assert empty == (0, 0)
    finally:
        consumer.close()


def test_offsets_for_times(module_broker, timed_topic):
    timelines = {
        0: [BASE_MS + i * 1000 for i in range(10)],
        1: [BASE_MS + i * 1000 for i in range(5)],
        2: UNORDERED_MS,
    }
    targets = [
        0,
        BASE_MS - 1,
        BASE_MS,
        BASE_MS + 1,
        BASE_MS + 999,
        BASE_MS + 1000,
        BASE_MS + 2500,
        BASE_MS + 4000,
        BASE_MS + 4500,
        BASE_MS + 5001,
        BASE_MS + 9000,
        BASE_MS + 9001,
        BASE_MS + 10**9,
    ]
    consumer = confluent_consumer(module_broker.bootstrap)
    try:
        for target in targets:
            answers = consumer.offsets_for_times(
                [TopicPartition(timed_topic, p, target) for p in range(3)], timeout=10
            )
            for answer in answers:
                assert answer.error is None, answer.error
                expected = _first_offset_at_or_after(timelines[answer.partition], target)
                assert answer.offset == expected, (
                    f"partition {answer.partition}, timestamp {target - BASE_MS:+d} ms from base: "
                    f"offset {answer.offset}, expected {expected}"
                )
    finally:
        consumer.close()


@pytest.mark.parametrize(("reset", "first"), [("earliest", 0), ("latest", 10)])
def test_auto_offset_reset_uses_list_offsets(module_broker, timed_topic, reset, first):
    consumer = confluent_consumer(
        module_broker.bootstrap, **{"auto.offset.reset": reset, "group.id": uuid.uuid4().hex}
    )
    try:
        consumer.assign([TopicPartition(timed_topic, 0)])  # no committed offset: reset
        if reset == "latest":
            # Give the reset (a ListOffsets for the latest offset) time to resolve
            # before producing more; nothing may arrive meanwhile.
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                assert not consumer.consume(num_messages=1, timeout=0.1)
            _produce(module_broker.bootstrap, timed_topic, [[(0, BASE_MS + 10_000)]])
        deadline = time.monotonic() + 10
        messages = []
        while not messages:
            assert time.monotonic() < deadline, "no record after the offset reset"
            messages = consumer.consume(num_messages=1, timeout=0.5)
        assert messages[0].error() is None, messages[0].error()
        assert messages[0].offset() == first
    finally:
        consumer.close()


# --- committed offsets without a group -------------------------------------------------------


def _committed(bootstrap: str, group: str, topic: str) -> list[tuple[int, str | None]]:
    consumer = confluent_consumer(bootstrap, **{"group.id": group})
    try:
        answers = consumer.committed([TopicPartition(topic, p) for p in range(2)], timeout=10)
    finally:
        consumer.close()
    for answer in answers:
        assert answer.error is None, answer.error
    return [(answer.offset, answer.metadata) for answer in answers]


def test_committed_offsets_with_assign_survive_restarts(broker, topic_name):
    create_topic(broker.port, topic_name, 2)
    _produce(broker.bootstrap, topic_name, [[(p, BASE_MS + i) for i in range(10)] for p in (0, 1)])
    group = f"group-{uuid.uuid4().hex[:8]}"

    consumer = confluent_consumer(broker.bootstrap, **{"group.id": group})
    try:
        consumer.assign([TopicPartition(topic_name, 0), TopicPartition(topic_name, 1)])
        results = consumer.commit(
            offsets=[
                TopicPartition(topic_name, 0, 5, metadata="checkpoint"),
                TopicPartition(topic_name, 1, 3),
            ],
            asynchronous=False,
        )
        assert [(r.partition, r.offset, r.error) for r in results] == [(0, 5, None), (1, 3, None)]
        committed = consumer.committed(
            [TopicPartition(topic_name, 0), TopicPartition(topic_name, 1)], timeout=10
        )
        assert [(c.offset, c.metadata) for c in committed] == [(5, "checkpoint"), (3, None)]
        # Committing to a topic that does not exist fails like Kafka does.
        with pytest.raises(confluent_kafka.KafkaException) as raised:
            consumer.commit(
                offsets=[TopicPartition(topic_name + "-none", 0, 1)], asynchronous=False
            )
        assert raised.value.args[0].code() == confluent_kafka.KafkaError.UNKNOWN_TOPIC_OR_PART
    finally:
        consumer.close()

    expected = [(5, "checkpoint"), (3, None)]
    assert _committed(broker.bootstrap, group, topic_name) == expected
    # Another group has nothing committed.
    assert _committed(broker.bootstrap, group + "-other", topic_name) == [
        (confluent_kafka.OFFSET_INVALID, None),
        (confluent_kafka.OFFSET_INVALID, None),
    ]

    broker.restart()
    assert _committed(broker.bootstrap, group, topic_name) == expected
    broker.restart(kill=True)
    assert _committed(broker.bootstrap, group, topic_name) == expected

    # A consumer assigned without an offset starts at the committed one.
    consumer = confluent_consumer(broker.bootstrap, **{"group.id": group})
    try:
        consumer.assign([TopicPartition(topic_name, 0), TopicPartition(topic_name, 1)])
        first: dict[int, int] = {}
        deadline = time.monotonic() + 10
        while len(first) < 2:
            assert time.monotonic() < deadline, f"only partitions {sorted(first)} delivered"
            for message in consumer.consume(num_messages=100, timeout=0.5):
                assert message.error() is None, message.error()
                first.setdefault(message.partition(), message.offset())
        assert first == {0: 5, 1: 3}
    finally:
        consumer.close()


def test_committed_offsets_are_shared_by_all_clients(module_broker, topic_name):
    """confluent-kafka commits, kafka-python and aiokafka read it and commit in turn."""
    kafka = import_kafka_python()
    aiokafka = pytest.importorskip("aiokafka")
    create_topic(module_broker.port, topic_name, 2)
    group = f"group-{uuid.uuid4().hex[:8]}"

    consumer = confluent_consumer(module_broker.bootstrap, **{"group.id": group})
    try:
        consumer.commit(offsets=[TopicPartition(topic_name, 0, 7)], asynchronous=False)
    finally:
        consumer.close()

    partition_0 = kafka.TopicPartition(topic_name, 0)
    partition_1 = kafka.TopicPartition(topic_name, 1)
    kafka_consumer = kafka.KafkaConsumer(
        bootstrap_servers=module_broker.bootstrap, group_id=group, enable_auto_commit=False
    )
    try:
        kafka_consumer.assign([partition_0, partition_1])
        assert kafka_consumer.committed(partition_0) == 7
        assert kafka_consumer.committed(partition_1) is None
        kafka_consumer.commit(
            {partition_1: kafka.structs.OffsetAndMetadata(11, "from kafka-python", -1)}
        )
        stored = kafka_consumer.committed(partition_1, metadata=True)
        assert (stored.offset, stored.metadata) == (11, "from kafka-python")
    finally:
        kafka_consumer.close()

    async def with_aiokafka() -> tuple[int | None, int | None, int | None]:
        async_consumer = aiokafka.AIOKafkaConsumer(
            bootstrap_servers=module_broker.bootstrap, group_id=group, enable_auto_commit=False
        )
        await async_consumer.start()
        try:
            async with asyncio.timeout(30):
                partitions = [aiokafka.TopicPartition(topic_name, p) for p in range(2)]
                async_consumer.assign(partitions)
                before = [await async_consumer.committed(tp) for tp in partitions]
                await async_consumer.commit({partitions[0]: (13, "from aiokafka")})
                return before[0], before[1], await async_consumer.committed(partitions[0])
        finally:
            await async_consumer.stop()

    assert asyncio.run(with_aiokafka()) == (7, 11, 13)
    assert [offset for offset, _ in _committed(module_broker.bootstrap, group, topic_name)] == [
        13,
        11,
    ]

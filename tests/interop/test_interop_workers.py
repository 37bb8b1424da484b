"""A broker of two worker processes, as Kafka clients see it: two nodes.

Metadata lists both workers on their own ports and each partition's leader
is its owner; every client produces and consumes through them byte-exact; a
consumer group of three works whichever worker coordinates it; topic changes
through one worker are seen by the other at once; a request to the wrong
worker gets Kafka's NOT_LEADER_OR_FOLLOWER / NOT_COORDINATOR and clients
recover by themselves; a killed worker is restarted and loses nothing
acknowledged; a killed supervisor leaves no process behind; and the data
and committed offsets survive going from one worker to two and back.
"""

from __future__ import annotations

import datetime
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from interop_clients import (
    CONSUMERS,
    NULL_HEADER_OK,
    NULL_RECORD_OK,
    PRODUCERS,
    check_round_trip,
    import_kafka_python,
    sample_records,
)
from interop_wire import broker_log, create_topic, metadata_v4
from kio.schema.create_topics.v3.request import CreatableTopic, CreateTopicsRequest
from kio.schema.delete_topics.v2.request import DeleteTopicsRequest
from kio.schema.errors import ErrorCode
from kio.schema.find_coordinator.v1.request import FindCoordinatorRequest
from kio.schema.heartbeat.v1.request import HeartbeatRequest
from kio.schema.produce.v7.request import PartitionProduceData, ProduceRequest, TopicProduceData
from kio.static.primitive import i8, i16, i32, i32Timedelta

from trioring.protocol.kafka import ApiKey
from trioring.protocol.records import Record, build_batch
from trioring.testing import BrokerProcess

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "server"))
from server_support import exchange

confluent_kafka = pytest.importorskip("confluent_kafka")

PARTITIONS = 4
#: Seconds any one phase may take.
PHASE_SECONDS = 45.0


def port_of(cluster: BrokerProcess, worker: int) -> int:
    return cluster.addresses[worker][1]


def bootstrap_of(cluster: BrokerProcess, worker: int) -> str:
    host, port = cluster.addresses[worker]
    return f"{host}:{port}"


def leaders(port: int, topic: str) -> list[int]:
    """Each partition's leader, from a raw Metadata v4 of the worker on ``port``."""
    response = exchange(
        port,
        ApiKey.METADATA,
        4,
        _metadata_request([topic]),
    )
    (answer,) = [t for t in response.topics if t.name == topic]
    assert int(answer.error_code) == 0, answer
    return [int(p.leader_id) for p in sorted(answer.partitions, key=lambda p: p.partition_index)]


def _metadata_request(topics: list[str] | None) -> Any:
    from kio.schema.metadata.v4.request import MetadataRequest, MetadataRequestTopic  # noqa: PLC0415

    return MetadataRequest(
        topics=None if topics is None else tuple(MetadataRequestTopic(name=t) for t in topics),  # type: ignore[arg-type]
        allow_auto_topic_creation=False,
    )


def coordinator_of(port: int, group: str) -> int:
    response = exchange(
        port, ApiKey.FIND_COORDINATOR, 1, FindCoordinatorRequest(key=group, key_type=i8(0))
    )
    assert int(response.error_code) == 0, response
    return int(response.node_id)


def group_coordinated_by(cluster: BrokerProcess, worker: int) -> str:
    """A fresh group name whose coordinator is ``worker``."""
    for _ in range(200):
        group = f"group-{uuid.uuid4().hex[:10]}"
        if coordinator_of(port_of(cluster, 0), group) == worker:
            return group
    raise AssertionError(f"no group name found for worker {worker}")


# --- what clients see ---------------------------------------------------------------------


def test_metadata_lists_every_worker_and_leaders_on_both(module_cluster, topic_name):
    create_topic(port_of(module_cluster, 0), topic_name, PARTITIONS)
    for worker in (0, 1):
        response = exchange(
            port_of(module_cluster, worker), ApiKey.METADATA, 4, _metadata_request(None)
        )
        nodes = sorted((int(b.node_id), b.host, int(b.port)) for b in response.brokers)
        assert nodes == [
            (0, *module_cluster.addresses[0]),
            (1, *module_cluster.addresses[1]),
        ]
        assert module_cluster.addresses[0][1] != module_cluster.addresses[1][1]
        assert sorted(leaders(port_of(module_cluster, worker), topic_name)) == [0, 0, 1, 1]


@pytest.mark.parametrize("client", ["confluent-kafka", "kafka-python", "aiokafka"])
def test_every_client_produces_and_consumes_through_both_workers(
    module_cluster, topic_name, client
):
    if client == "kafka-python":
        import_kafka_python()
    else:
        pytest.importorskip({"confluent-kafka": "confluent_kafka", "aiokafka": "aiokafka"}[client])
    create_topic(port_of(module_cluster, 1), topic_name, PARTITIONS)
    records = sample_records(
        160,
        partitions=PARTITIONS,
        null_record_ok=NULL_RECORD_OK[client],
        null_header_ok=NULL_HEADER_OK[client],
    )
    bootstrap = bootstrap_of(module_cluster, 0)
    delivered = PRODUCERS[client](bootstrap, topic_name, records)
    consumed = CONSUMERS[client](bootstrap, topic_name, PARTITIONS, len(records))
    check_round_trip(records, delivered, consumed, PARTITIONS)


def test_topic_changes_through_one_worker_are_seen_by_the_other_at_once(module_cluster):
    name = f"seen-{uuid.uuid4().hex[:8]}"
    created = exchange(
        port_of(module_cluster, 1),
        ApiKey.CREATE_TOPICS,
        3,
        CreateTopicsRequest(
            topics=(
                CreatableTopic(
                    name=name,  # type: ignore[arg-type]
                    num_partitions=i32(3),
                    replication_factor=i16(1),
                    assignments=(),
                    configs=(),
                ),
            ),
            timeout=i32Timedelta.parse(datetime.timedelta(seconds=10)),
            validate_only=False,
        ),
    )
    assert int(created.topics[0].error_code) == 0
    assert metadata_v4(port_of(module_cluster, 0), [name], allow_auto_topic_creation=False) == {
        name: (0, 3)
    }
    deleted = exchange(
        port_of(module_cluster, 0),
        ApiKey.DELETE_TOPICS,
        2,
        DeleteTopicsRequest(
            topic_names=(name,),  # type: ignore[arg-type]
            timeout=i32Timedelta.parse(datetime.timedelta(seconds=10)),
        ),
    )
    assert int(deleted.responses[0].error_code) == 0
    assert metadata_v4(port_of(module_cluster, 1), [name], allow_auto_topic_creation=False) == {
        name: (ErrorCode.unknown_topic_or_partition, 0)
    }


def test_the_wrong_worker_answers_as_kafka_and_clients_recover(module_cluster, topic_name):
    create_topic(port_of(module_cluster, 0), topic_name, PARTITIONS)
    owners = leaders(port_of(module_cluster, 0), topic_name)
    partition = owners.index(1)  # a partition worker 1 owns
    produce = ProduceRequest(
        transactional_id=None,
        acks=i16(1),
        timeout=i32Timedelta.parse(datetime.timedelta(seconds=5)),
        topic_data=(
            TopicProduceData(
                name=topic_name,  # type: ignore[arg-type]
                partition_data=(
                    PartitionProduceData(
                        index=i32(partition), records=build_batch([Record(value=b"wrong")])
                    ),
                ),
            ),
        ),
    )
    answer = exchange(port_of(module_cluster, 0), ApiKey.PRODUCE, 7, produce)
    code = int(answer.responses[0].partition_responses[0].error_code)
    assert code == ErrorCode.not_leader_or_follower
    group = group_coordinated_by(module_cluster, 1)
    heartbeat = exchange(
        port_of(module_cluster, 0),
        ApiKey.HEARTBEAT,
        1,
        HeartbeatRequest(group_id=group, generation_id=i32(1), member_id="m"),  # type: ignore[arg-type]
    )
    assert int(heartbeat.error_code) == ErrorCode.not_coordinator
    # A client bootstrapped on the wrong worker refreshes its metadata and
    # goes to the owner: the record lands where it belongs.
    producer = confluent_kafka.Producer(
        {"bootstrap.servers": bootstrap_of(module_cluster, 0), "acks": "all"}
    )
    reports: list[Any] = []
    producer.produce(
        topic_name, b"right", partition=partition, on_delivery=lambda e, m: reports.append((e, m))
    )
    assert producer.flush(PHASE_SECONDS) == 0
    ((error, message),) = reports
    assert error is None and message.partition() == partition and message.offset() == 0


# --- consumer groups ------------------------------------------------------------------------


class GroupMember:
    """A confluent-kafka consumer in a thread of its own, committing what it processes."""

    def __init__(self, bootstrap: str, group: str, topic: str, name: str) -> None:
        self.consumed: list[tuple[int, int, bytes]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._consumer = confluent_kafka.Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": group,
                "client.id": name,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": 10_000,
                "heartbeat.interval.ms": 500,
            }
        )
        self._consumer.subscribe([topic])
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            message = self._consumer.poll(0.2)
            if message is None:
                continue
            if message.error():
                self.errors.append(str(message.error()))
                continue
            self.consumed.append((message.partition(), message.offset(), message.value()))
            self._consumer.commit(message=message, asynchronous=False)
        self._consumer.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=PHASE_SECONDS)


@pytest.mark.parametrize("coordinator", [0, 1])
def test_a_group_of_three_consumes_everything_once_whoever_coordinates(
    module_cluster, topic_name, coordinator
):
    create_topic(port_of(module_cluster, 0), topic_name, 6)
    group = group_coordinated_by(module_cluster, coordinator)
    bootstrap = bootstrap_of(module_cluster, 1 - coordinator)
    members = [GroupMember(bootstrap, group, topic_name, f"member-{i}") for i in range(3)]
    try:
        producer = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "acks": "all"})
        for index in range(600):
            producer.produce(topic_name, b"record-%d" % index, key=b"%d" % index)
        assert producer.flush(PHASE_SECONDS) == 0
        deadline = time.monotonic() + PHASE_SECONDS
        while time.monotonic() < deadline:
            if sum(len(member.consumed) for member in members) >= 600:
                break
            time.sleep(0.1)
    finally:
        for member in members:
            member.stop()
    counts = Counter(value for member in members for _, _, value in member.consumed)
    assert set(counts) == {b"record-%d" % index for index in range(600)}
    # A rebalance may redeliver records consumed and not yet committed; the
    # members commit each record before the next, so nothing is seen twice.
    assert max(counts.values()) == 1, [v for v, n in counts.items() if n > 1][:5]
    assert sum(1 for member in members if member.consumed) >= 2, "the partitions were shared"
    consumer = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        committed = consumer.committed(
            [confluent_kafka.TopicPartition(topic_name, p) for p in range(6)], timeout=10
        )
    finally:
        consumer.close()
    ends = Counter(partition for member in members for partition, _, _ in member.consumed)
    assert {tp.partition: tp.offset for tp in committed} == {p: ends[p] for p in range(6)}


# --- processes ------------------------------------------------------------------------------


def test_a_killed_worker_is_restarted_and_loses_nothing_acknowledged(cluster, topic_name):
    create_topic(port_of(cluster, 0), topic_name, PARTITIONS)
    producer = confluent_kafka.Producer(
        {
            "bootstrap.servers": ",".join(bootstrap_of(cluster, w) for w in (0, 1)),
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 2,
            "message.timeout.ms": 60_000,
        }
    )
    acknowledged: list[tuple[int, int, bytes]] = []
    failed: list[str] = []

    def report(error: Any, message: Any) -> None:
        if error is None:
            acknowledged.append((message.partition(), message.offset(), message.value()))
        else:
            failed.append(str(error))

    killed_pid = None
    for index in range(3000):
        producer.produce(topic_name, b"load-%d" % index, key=b"%d" % index, on_delivery=report)
        producer.poll(0)
        if index == 1000:
            killed_pid = cluster.kill_worker(1)
        if index % 100 == 0:
            time.sleep(0.01)
    assert producer.flush(PHASE_SECONDS) == 0
    assert not failed, failed[:5]
    assert cluster.worker_pid(1) != killed_pid, "the supervisor started a new worker 1"
    assert "worker 1 (pid" in broker_log(cluster) and "restarting it" in broker_log(cluster)
    # Every acknowledged record is there, once, in order, at dense offsets.
    consumed = CONSUMERS["confluent-kafka"](
        bootstrap_of(cluster, 0), topic_name, PARTITIONS, len(acknowledged)
    )
    stored = sorted((c.partition, c.offset, c.value) for c in consumed)
    assert sorted(acknowledged) == stored
    for partition in range(PARTITIONS):
        offsets = [offset for p, offset, _ in stored if p == partition]
        assert offsets == list(range(len(offsets)))
    values = [value for _, _, value in stored]
    assert len(values) == len(set(values)) == 3000


def test_a_killed_supervisor_leaves_no_process(cluster):
    pids = [cluster.worker_pid(0), cluster.worker_pid(1)]
    cluster.kill()
    for pid in pids:
        assert (
            not Path(f"/proc/{pid}").exists()
            or "Z" in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[:1]
        )


def test_data_and_offsets_survive_one_worker_then_two(tmp_path, io_backend):
    data = tmp_path / "data"
    topic = "kept"
    with BrokerProcess(data, workers=1, extra_arguments=["--io-backend", io_backend]) as one:
        create_topic(one.port, topic, PARTITIONS)
        producer = confluent_kafka.Producer({"bootstrap.servers": one.bootstrap, "acks": "all"})
        for index in range(200):
            producer.produce(topic, b"v%d" % index, key=b"%d" % index)
        assert producer.flush(PHASE_SECONDS) == 0
        consumer = confluent_kafka.Consumer(
            {"bootstrap.servers": one.bootstrap, "group.id": "kept-group"}
        )
        offsets = [confluent_kafka.TopicPartition(topic, p, 10 + p) for p in range(PARTITIONS)]
        consumer.commit(offsets=offsets, asynchronous=False)
        consumer.close()
    for workers in (2, 1, 2):
        with BrokerProcess(
            data, workers=workers, extra_arguments=["--io-backend", io_backend]
        ) as broker:
            consumed = CONSUMERS["confluent-kafka"](broker.bootstrap, topic, PARTITIONS, 200)
            assert sorted(c.value for c in consumed) == sorted(b"v%d" % i for i in range(200))
            consumer = confluent_kafka.Consumer(
                {"bootstrap.servers": broker.bootstrap, "group.id": "kept-group"}
            )
            try:
                committed = consumer.committed(
                    [confluent_kafka.TopicPartition(topic, p) for p in range(PARTITIONS)],
                    timeout=10,
                )
            finally:
                consumer.close()
            assert [tp.offset for tp in committed] == [10 + p for p in range(PARTITIONS)]
            if workers == 2:
                assert sorted(leaders(broker.port, topic)) == [0, 0, 1, 1]

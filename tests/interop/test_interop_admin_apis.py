"""The Kafka 4.0 admin APIs from real admin clients (confluent-kafka, kafka-python), error
cases included: DeleteRecords (and the log start surviving a SIGKILL), DeleteGroups,
OffsetDelete, DescribeLogDirs, DescribeTopicPartitions."""

from __future__ import annotations

import uuid

import pytest
from interop_clients import confluent_consumer, import_kafka_python

from trioring.testing import BrokerProcess


def _confluent():
    return pytest.importorskip("confluent_kafka")


def _admin(bootstrap: str):
    admin_module = pytest.importorskip("confluent_kafka.admin")
    return admin_module.AdminClient({"bootstrap.servers": bootstrap})


def _create(bootstrap: str, topic: str, partitions: int = 2) -> None:
    admin_module = pytest.importorskip("confluent_kafka.admin")
    admin = _admin(bootstrap)  # kept alive until the future is done
    futures = admin.create_topics([admin_module.NewTopic(topic, partitions)], request_timeout=10)
    futures[topic].result(timeout=15)


def _produce(bootstrap: str, topic: str, partition: int, count: int) -> None:
    producer = _confluent().Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    for i in range(count):
        producer.produce(topic, value=b"v%d" % i, partition=partition)
        producer.flush(10)  # one batch per record, so offsets fall inside batches too
    assert producer.flush(10) == 0


def _earliest(bootstrap: str, topic: str, partition: int) -> int:
    confluent_kafka = _confluent()
    consumer = confluent_consumer(bootstrap)
    try:
        low, _high = consumer.get_watermark_offsets(
            confluent_kafka.TopicPartition(topic, partition), timeout=10
        )
    finally:
        consumer.close()
    return int(low)


def _read_offsets(bootstrap: str, topic: str, partition: int, count: int) -> list[int]:
    confluent_kafka = _confluent()
    consumer = confluent_consumer(bootstrap)
    offsets: list[int] = []
    try:
        consumer.assign(
            [confluent_kafka.TopicPartition(topic, partition, confluent_kafka.OFFSET_BEGINNING)]
        )
        for _ in range(200):
            message = consumer.poll(0.1)
            if message is not None and message.error() is None:
                offsets.append(message.offset())
            if len(offsets) >= count:
                break
    finally:
        consumer.close()
    return offsets


def test_delete_records_from_confluent_and_kafka_python(module_broker: BrokerProcess) -> None:
    confluent_kafka = _confluent()
    bootstrap = module_broker.bootstrap
    topic = f"delete-records-{uuid.uuid4().hex[:8]}"
    _create(bootstrap, topic)
    _produce(bootstrap, topic, 0, 10)

    admin = _admin(bootstrap)
    futures = admin.delete_records([confluent_kafka.TopicPartition(topic, 0, 4)])
    [(_, future)] = futures.items()
    assert future.result(timeout=15).low_watermark == 4
    assert _earliest(bootstrap, topic, 0) == 4
    assert _read_offsets(bootstrap, topic, 0, 6) == [4, 5, 6, 7, 8, 9]

    # Past the high watermark: OFFSET_OUT_OF_RANGE, nothing moves.
    futures = admin.delete_records([confluent_kafka.TopicPartition(topic, 0, 11)])
    [(_, future)] = futures.items()
    with pytest.raises(confluent_kafka.KafkaException) as caught:
        future.result(timeout=15)
    assert caught.value.args[0].code() == confluent_kafka.KafkaError.OFFSET_OUT_OF_RANGE
    assert _earliest(bootstrap, topic, 0) == 4

    kafka = import_kafka_python()
    kafka_admin = kafka.KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        # -1: up to the high watermark.
        result = kafka_admin.delete_records({kafka.TopicPartition(topic, 0): -1})
        assert result[kafka.TopicPartition(topic, 0)]["low_watermark"] == 10
        with pytest.raises(kafka.errors.UnknownTopicOrPartitionError):
            kafka_admin.delete_records({kafka.TopicPartition(topic, 7): 0})
    finally:
        kafka_admin.close()
    assert _earliest(bootstrap, topic, 0) == 10
    assert _earliest(bootstrap, topic, 1) == 0


def test_delete_records_survives_sigkill(broker: BrokerProcess) -> None:
    confluent_kafka = _confluent()
    topic = f"delete-kill-{uuid.uuid4().hex[:8]}"
    _create(broker.bootstrap, topic, partitions=1)
    _produce(broker.bootstrap, topic, 0, 6)
    admin = _admin(broker.bootstrap)
    futures = admin.delete_records([confluent_kafka.TopicPartition(topic, 0, 3)])
    [(_, future)] = futures.items()
    assert future.result(timeout=15).low_watermark == 3
    broker.restart(kill=True)
    assert _earliest(broker.bootstrap, topic, 0) == 3
    assert _read_offsets(broker.bootstrap, topic, 0, 3) == [3, 4, 5]


def _commit(bootstrap: str, group: str, topic: str, offsets: dict[int, int]) -> None:
    confluent_kafka = _confluent()
    consumer = confluent_consumer(bootstrap, **{"group.id": group})
    try:
        consumer.commit(
            offsets=[
                confluent_kafka.TopicPartition(topic, partition, offset)
                for partition, offset in offsets.items()
            ],
            asynchronous=False,
        )
    finally:
        consumer.close()


def _committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    confluent_kafka = _confluent()
    consumer = confluent_consumer(bootstrap, **{"group.id": group})
    try:
        found = consumer.committed(
            [confluent_kafka.TopicPartition(topic, p) for p in (0, 1)], timeout=10
        )
    finally:
        consumer.close()
    return {tp.partition: tp.offset for tp in found if tp.offset >= 0}


def test_delete_groups_and_offsets(module_broker: BrokerProcess) -> None:
    confluent_kafka = _confluent()
    bootstrap = module_broker.bootstrap
    topic = f"delete-groups-{uuid.uuid4().hex[:8]}"
    _create(bootstrap, topic)
    group, other = f"g-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:8]}"
    _commit(bootstrap, group, topic, {0: 3, 1: 5})
    _commit(bootstrap, other, topic, {0: 1, 1: 2})

    kafka = import_kafka_python()
    kafka_admin = kafka.KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        # OffsetDelete of one partition of an Empty group.
        result = kafka_admin.delete_group_offsets(group, [kafka.TopicPartition(topic, 0)])
        assert result == {kafka.TopicPartition(topic, 0): kafka.errors.NoError}
        assert _committed(bootstrap, group, topic) == {1: 5}
        with pytest.raises(kafka.errors.GroupIdNotFoundError):
            kafka_admin.delete_group_offsets("no-such-group", [kafka.TopicPartition(topic, 0)])

        # DeleteGroups: the group goes with its offsets; an unknown group is GROUP_ID_NOT_FOUND.
        results = dict(kafka_admin.delete_groups([group, "no-such-group"]))
        assert results == {group: "OK", "no-such-group": "GroupIdNotFoundError"}
        assert _committed(bootstrap, group, topic) == {}
    finally:
        kafka_admin.close()

    # confluent-kafka's DeleteGroups, and a group with a live member (NON_EMPTY_GROUP).
    member = confluent_consumer(bootstrap, **{"group.id": other, "session.timeout.ms": 6000})
    try:
        member.subscribe([topic])
        for _ in range(100):
            member.poll(0.1)
            if member.assignment():
                break
        assert member.assignment()
        admin = _admin(bootstrap)
        [future] = admin.delete_consumer_groups([other], request_timeout=10).values()
        with pytest.raises(confluent_kafka.KafkaException) as caught:
            future.result(timeout=15)
        assert caught.value.args[0].code() == confluent_kafka.KafkaError.NON_EMPTY_GROUP

        # OffsetDelete of a topic a member subscribes to: GROUP_SUBSCRIBED_TO_TOPIC.
        kafka_admin = kafka.KafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            result = kafka_admin.delete_group_offsets(other, [kafka.TopicPartition(topic, 1)])
        finally:
            kafka_admin.close()
        assert result == {kafka.TopicPartition(topic, 1): kafka.errors.GroupSubscribedToTopicError}
    finally:
        member.close()
    assert _committed(bootstrap, other, topic) == {0: 1, 1: 2}
    admin = _admin(bootstrap)
    [future] = admin.delete_consumer_groups([other], request_timeout=10).values()
    assert future.result(timeout=15) is None
    assert _committed(bootstrap, other, topic) == {}


def test_describe_log_dirs_from_kafka_python(module_broker: BrokerProcess) -> None:
    bootstrap = module_broker.bootstrap
    topic = f"log-dirs-{uuid.uuid4().hex[:8]}"
    _create(bootstrap, topic)
    _produce(bootstrap, topic, 1, 3)
    kafka = import_kafka_python()
    kafka_admin = kafka.KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        answer = kafka_admin.describe_log_dirs({topic: [0, 1]})
    finally:
        kafka_admin.close()
    [broker] = answer
    [log_dir] = broker["log_dirs"]
    assert log_dir["error_code"] == 0
    assert log_dir["log_dir"] == str(module_broker.data_dir.resolve())
    assert log_dir["total_bytes"] >= log_dir["usable_bytes"] > 0
    [described] = log_dir["topics"]
    assert described["name"] == topic
    sizes = {
        p["partition_index"]: (p["partition_size"], p["offset_lag"])
        for p in described["partitions"]
    }
    assert sizes[0] == (0, 0)
    # Three one-record batches of a few dozen bytes each.
    assert 3 * 61 <= sizes[1][0] <= 3 * 100 and sizes[1][1] == 0


def test_describe_topic_partitions_from_kafka_python(module_broker: BrokerProcess) -> None:
    bootstrap = module_broker.bootstrap
    topic = f"dtp-{uuid.uuid4().hex[:8]}"
    _create(bootstrap, topic, partitions=3)
    kafka = import_kafka_python()
    kafka_admin = kafka.KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        first = kafka_admin.describe_topic_partitions([topic], response_partition_limit=2)
        rest = kafka_admin.describe_topic_partitions(
            [topic], response_partition_limit=2, cursor=first["next_cursor"]
        )
        missing = kafka_admin.describe_topic_partitions([f"{topic}-missing"])
    finally:
        kafka_admin.close()
    [page] = first["topics"]
    assert (page["name"], page["error_code"]) == (topic, 0)
    assert [p["partition_index"] for p in page["partitions"]] == [0, 1]
    assert first["next_cursor"] == {"topic_name": topic, "partition_index": 2}
    [page] = rest["topics"]
    assert [p["partition_index"] for p in page["partitions"]] == [2]
    assert rest["next_cursor"] is None
    assert [t["error_code"] for t in missing["topics"]] == [3]  # UNKNOWN_TOPIC_OR_PARTITION


def test_reassignments_and_elections_as_a_one_replica_cluster(
    module_broker: BrokerProcess,
) -> None:
    confluent_kafka = _confluent()
    bootstrap = module_broker.bootstrap
    topic = f"replicas-{uuid.uuid4().hex[:8]}"
    _create(bootstrap, topic, partitions=2)

    admin = _admin(bootstrap)
    election = admin.elect_leaders(
        confluent_kafka.ElectionType.PREFERRED,
        [confluent_kafka.TopicPartition(topic, 0), confluent_kafka.TopicPartition(topic, 9)],
    )
    results = election.result(timeout=15)
    codes = {tp.partition: error.code() for tp, error in results.items()}
    assert codes == {
        0: confluent_kafka.KafkaError.ELECTION_NOT_NEEDED,
        9: confluent_kafka.KafkaError.UNKNOWN_TOPIC_OR_PART,
    }
    # Every partition: none needs an election, so none is reported.
    assert admin.elect_leaders(confluent_kafka.ElectionType.UNCLEAN).result(timeout=15) == {}

    kafka = import_kafka_python()
    kafka_admin = kafka.KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        assert kafka_admin.list_partition_reassignments() == {}
        assert kafka_admin.list_partition_reassignments({topic: [0, 1]}) == {}
        tp0, tp1 = kafka.TopicPartition(topic, 0), kafka.TopicPartition(topic, 1)
        result = kafka_admin.alter_partition_reassignments({tp0: [0], tp1: None})
        assert result[tp0] is None  # already there: done
        assert result[tp1] is kafka.errors.NoReassignmentInProgressError
        result = kafka_admin.alter_partition_reassignments({tp0: [0, 1], tp1: [7]})
        assert (
            result[tp0] is kafka.errors.InvalidReplicationAssignmentError
        )  # node 1 does not exist
        assert result[tp1] is kafka.errors.InvalidReplicationAssignmentError
        # kafka-python treats ELECTION_NOT_NEEDED as success, as Kafka's tools do;
        # an unknown partition is an error.
        kafka_admin.elect_leaders(0, {topic: [1]})
        with pytest.raises(kafka.errors.UnknownTopicOrPartitionError):
            kafka_admin.elect_leaders(0, {topic: [5]})
    finally:
        kafka_admin.close()


def test_describe_metadata_quorum_from_kafka_python(module_broker: BrokerProcess) -> None:
    kafka = import_kafka_python()
    kafka_admin = kafka.KafkaAdminClient(bootstrap_servers=module_broker.bootstrap)
    try:
        quorum = kafka_admin.describe_metadata_quorum()
    finally:
        kafka_admin.close()
    [topic] = quorum["topics"]
    assert topic["topic_name"] == "__cluster_metadata"
    [partition] = topic["partitions"]
    assert (partition["error"], partition["leader_id"], partition["leader_epoch"]) == (None, 0, 0)
    assert partition["high_watermark"] >= 0
    assert [voter["replica_id"] for voter in partition["current_voters"]] == [0]
    assert [(node["node_id"], node["listeners"][0]["port"]) for node in quorum["nodes"]] == [
        (0, module_broker.port)
    ]


def test_describe_producers_from_kafka_python(module_broker: BrokerProcess) -> None:
    """An idempotent producer's state on each partition it wrote: its id, epoch and last
    sequence, as the broker keeps it for deduplication."""
    bootstrap = module_broker.bootstrap
    topic = f"producers-{uuid.uuid4().hex[:8]}"
    _create(bootstrap, topic)
    producer = _confluent().Producer(
        {"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 0}
    )
    for i in range(4):
        producer.produce(topic, value=b"v%d" % i, partition=1)
        producer.flush(10)
    assert producer.flush(10) == 0
    kafka = import_kafka_python()
    kafka_admin = kafka.KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        states = kafka_admin.describe_producers(
            [kafka.TopicPartition(topic, 0), kafka.TopicPartition(topic, 1)]
        )
        with pytest.raises(kafka.errors.UnknownTopicOrPartitionError):
            kafka_admin.describe_producers([kafka.TopicPartition(topic, 7)], broker_id=0)
    finally:
        kafka_admin.close()
    assert states[kafka.TopicPartition(topic, 0)].active_producers == []
    [state] = states[kafka.TopicPartition(topic, 1)].active_producers
    assert state.producer_id >= 0 and state.producer_epoch == 0
    assert state.last_sequence == 3  # four one-record batches, sequences 0-3
    assert state.last_timestamp > 0
    assert (state.coordinator_epoch, state.current_transaction_start_offset) == (-1, -1)

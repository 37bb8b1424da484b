"""What the Kafka 4.0 versions add, over the wire: topic ids, batched requests,
the new special timestamps, filters, and the fields of the newer answers."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from kio.index import load_request_schema
from kio.schema.errors import ErrorCode
from kio.static.primitive import i32Timedelta
from server_support import KafkaWire, running_server

import trioring
from trioring import Record
from trioring.handlers import list_offsets
from trioring.handlers.messages import ListOffsetsRequest

TOPIC = "kafka-4"
GROUP_OPERATIONS = {3, 6, 8}
TOPIC_OPERATIONS = {3, 4, 5, 6, 7, 8, 10, 11}


def ms(milliseconds: int) -> Any:
    return i32Timedelta.parse(datetime.timedelta(milliseconds=milliseconds))


def schema(api_key: int, version: int, name: str) -> Any:
    """A nested request class of one version (kio names them per message)."""
    module = __import__(load_request_schema(api_key, version).__module__, fromlist=[name])
    return getattr(module, name)


def bits(field: int) -> set[int]:
    return {bit for bit in range(32) if field >> bit & 1}


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[trioring.Broker, KafkaWire]]:
    async with running_server(tmp_path / "data") as (broker, server):
        await broker.create_topic(TOPIC, partitions=2)
        await broker.produce(TOPIC, 0, [Record(value=b"a", timestamp_ms=t) for t in (5, 90, 7)])
        connection = await KafkaWire.connect(server.port)
        yield broker, connection
        await connection.aclose()


def topic_id(broker: trioring.Broker) -> uuid.UUID:
    info = broker.handler_context().cluster.current.topics[TOPIC]
    return uuid.UUID(info.topic_id)


async def test_fetch_names_topics_by_id_from_v13(served: Any) -> None:
    broker, wire = served
    known, unknown = topic_id(broker), uuid.uuid4()
    fetch_topic = schema(1, 17, "FetchTopic")
    fetch_partition = schema(1, 17, "FetchPartition")
    request = load_request_schema(1, 17)(
        max_wait=ms(0),
        min_bytes=0,
        max_bytes=1 << 20,
        isolation_level=0,
        session_id=0,
        session_epoch=-1,
        topics=tuple(
            fetch_topic(
                topic_id=tid,
                partitions=(
                    fetch_partition(partition=0, fetch_offset=0, partition_max_bytes=1 << 20),
                ),
            )
            for tid in (known, unknown)
        ),
        forgotten_topics_data=(),
        rack_id="",
    )
    response = await wire.request(1, 17, request)
    by_id = {topic.topic_id: topic.partitions[0] for topic in response.responses}
    assert by_id[known].error_code == ErrorCode.none
    assert by_id[known].high_watermark == 3
    assert by_id[known].records is not None and len(by_id[known].records) > 0
    assert by_id[unknown].error_code == ErrorCode.unknown_topic_id


@pytest.mark.parametrize(
    ("version", "timestamp", "expected"),
    [
        (6, -3, None),  # max timestamp needs v7
        (7, -3, (1, 90)),
        (7, -4, None),
        (8, -4, (0, -1)),
        (8, -5, None),
        (9, -5, (-1, -1)),
        (10, -3, (1, 90)),
    ],
)
async def test_list_offsets_special_timestamps_follow_the_version(
    served: Any, version: int, timestamp: int, expected: tuple[int, int] | None
) -> None:
    _broker, wire = served
    request_class = load_request_schema(2, version)
    topic_class = schema(2, version, "ListOffsetsTopic")
    partition_class = schema(2, version, "ListOffsetsPartition")
    fields: dict[str, Any] = {
        "replica_id": -1,
        "isolation_level": 0,
        "topics": (
            topic_class(
                name=TOPIC,
                partitions=(partition_class(partition_index=0, timestamp=timestamp),),
            ),
        ),
    }
    if version >= 10:
        fields["timeout"] = ms(1000)
    response = await wire.request(2, version, request_class(**fields))
    (partition,) = response.topics[0].partitions
    if expected is None:
        assert partition.error_code == ErrorCode.unsupported_version
    else:
        assert partition.error_code == ErrorCode.none
        assert (partition.offset, partition.timestamp) == expected
        assert partition.leader_epoch == (0 if expected[0] >= 0 else -1)


async def test_metadata_by_id_with_ids_and_operations(served: Any) -> None:
    broker, wire = served
    known, unknown = topic_id(broker), uuid.uuid4()
    topic_class = schema(3, 13, "MetadataRequestTopic")
    request = load_request_schema(3, 13)(
        topics=(topic_class(topic_id=known, name=None), topic_class(topic_id=unknown, name=None)),
        allow_auto_topic_creation=True,
        include_topic_authorized_operations=True,
    )
    response = await wire.request(3, 13, request)
    assert response.error_code == ErrorCode.none
    found, missing = response.topics
    assert (found.name, found.topic_id, found.error_code) == (TOPIC, known, ErrorCode.none)
    assert len(found.partitions) == 2
    assert bits(found.topic_authorized_operations) == TOPIC_OPERATIONS
    assert (missing.name, missing.topic_id) == (None, unknown)
    assert missing.error_code == ErrorCode.unknown_topic_id
    # v10-11 cannot name topics by id.
    request = load_request_schema(3, 11)(
        topics=(schema(3, 11, "MetadataRequestTopic")(topic_id=known, name=None),),
        allow_auto_topic_creation=False,
        include_topic_authorized_operations=False,
    )
    response = await wire.request(3, 11, request)
    assert [t.error_code for t in response.topics] == [ErrorCode.unsupported_version]


async def test_create_and_delete_topics_by_id(served: Any) -> None:
    _broker, wire = served
    creatable = schema(19, 7, "CreatableTopic")
    request = load_request_schema(19, 7)(
        topics=(
            creatable(
                name="made", num_partitions=-1, replication_factor=-1, assignments=(), configs=()
            ),
            creatable(
                name="bad", num_partitions=1, replication_factor=3, assignments=(), configs=()
            ),
        ),
        timeout=ms(10_000),
        validate_only=False,
    )
    made, bad = (await wire.request(19, 7, request)).topics
    assert made.error_code == ErrorCode.none
    assert (made.num_partitions, made.replication_factor) == (1, 1)
    assert made.topic_id is not None and made.topic_id.int != 0
    assert {c.name: c.value for c in made.configs}["cleanup.policy"] == "delete"
    assert bad.error_code == ErrorCode.invalid_replication_factor
    assert (bad.num_partitions, bad.configs) == (-1, ())

    state = schema(20, 6, "DeleteTopicState")
    unknown = uuid.uuid4()
    request = load_request_schema(20, 6)(
        topics=(
            state(name=None, topic_id=made.topic_id),
            state(name=None, topic_id=unknown),
            state(name="made", topic_id=unknown),
        ),
        timeout=ms(10_000),
    )
    deleted, missing, both = (await wire.request(20, 6, request)).responses
    assert (deleted.name, deleted.topic_id, deleted.error_code) == (
        "made",
        made.topic_id,
        ErrorCode.none,
    )
    assert missing.error_code == ErrorCode.unknown_topic_id
    assert both.error_code == ErrorCode.invalid_request


async def test_batched_group_requests(served: Any) -> None:
    _broker, wire = served
    # FindCoordinator v4+: several keys at once, each answered.
    request = load_request_schema(10, 6)(key_type=0, coordinator_keys=("g1", "g2"))
    coordinators = (await wire.request(10, 6, request)).coordinators
    assert [(c.key, c.error_code, c.node_id) for c in coordinators] == [
        ("g1", ErrorCode.none, 0),
        ("g2", ErrorCode.none, 0),
    ]
    request = load_request_schema(10, 6)(key_type=9, coordinator_keys=("g1",))
    (refused,) = (await wire.request(10, 6, request)).coordinators
    assert refused.error_code == ErrorCode.invalid_request

    # OffsetCommit v9 (classic, simple commit), then OffsetFetch v8+ for two groups.
    commit_topic = schema(8, 9, "OffsetCommitRequestTopic")
    commit_partition = schema(8, 9, "OffsetCommitRequestPartition")
    request = load_request_schema(8, 9)(
        group_id="g1",
        generation_id_or_member_epoch=-1,
        member_id="",
        group_instance_id=None,
        topics=(
            commit_topic(
                name=TOPIC,
                partitions=(
                    commit_partition(partition_index=0, committed_offset=2, committed_metadata="m"),
                ),
            ),
        ),
    )
    response = await wire.request(8, 9, request)
    assert response.topics[0].partitions[0].error_code == ErrorCode.none
    group = schema(9, 9, "OffsetFetchRequestGroup")
    request = load_request_schema(9, 9)(
        groups=(group(group_id="g1", topics=None), group(group_id="g2", topics=None)),
        require_stable=True,
    )
    g1, g2 = (await wire.request(9, 9, request)).groups
    assert (g1.group_id, g1.error_code) == ("g1", ErrorCode.none)
    assert [
        (t.name, [(p.partition_index, p.committed_offset) for p in t.partitions]) for t in g1.topics
    ] == [(TOPIC, [(0, 2)])]
    assert (g2.group_id, g2.topics) == ("g2", ())

    # DescribeGroups v6: GROUP_ID_NOT_FOUND for a group that does not exist.
    request = load_request_schema(15, 6)(
        groups=("g1", "nobody"), include_authorized_operations=True
    )
    g1_described, nobody = (await wire.request(15, 6, request)).groups
    assert (g1_described.error_code, g1_described.group_state) == (ErrorCode.none, "Empty")
    assert bits(g1_described.authorized_operations) == GROUP_OPERATIONS
    assert nobody.error_code == ErrorCode.group_id_not_found
    assert nobody.error_message == "Group nobody not found."

    # ListGroups v5: state and type filters.
    for states, types, expected in [
        ((), (), ["g1"]),
        (("empty",), (), ["g1"]),
        (("Stable",), (), []),
        ((), ("Classic",), ["g1"]),
        ((), ("consumer",), []),
    ]:
        request = load_request_schema(16, 5)(states_filter=states, types_filter=types)
        listed = (await wire.request(16, 5, request)).groups
        assert [g.group_id for g in listed] == expected, (states, types)
        assert all((g.group_state, g.group_type) == ("Empty", "classic") for g in listed)

    # LeaveGroup v3+: several members, each with its own answer.
    identity = schema(13, 5, "MemberIdentity")
    request = load_request_schema(13, 5)(
        group_id="g1",
        members=(
            identity(member_id="m1", group_instance_id=None),
            identity(member_id="m2", group_instance_id="i2"),
        ),
    )
    response = await wire.request(13, 5, request)
    assert [(m.member_id, m.group_instance_id, m.error_code) for m in response.members] == [
        ("m1", None, ErrorCode.unknown_member_id),
        ("m2", "i2", ErrorCode.unknown_member_id),
    ]


@pytest.mark.parametrize("version", [0, 1, 2])
async def test_describe_cluster(served: Any, version: int) -> None:
    _broker, wire = served
    fields: dict[str, Any] = {"include_cluster_authorized_operations": True}
    if version >= 1:
        fields["endpoint_type"] = 1
    if version >= 2:
        fields["include_fenced_brokers"] = True
    response = await wire.request(60, version, load_request_schema(60, version)(**fields))
    assert response.error_code == ErrorCode.none
    assert response.cluster_id
    assert response.controller_id == 0
    assert [(b.broker_id, b.host) for b in response.brokers] == [(0, "127.0.0.1")]
    assert response.brokers[0].port > 0
    assert bits(response.cluster_authorized_operations) == {5, 7, 8, 9, 10, 11, 12, 13, 14}
    if version >= 2:
        assert response.brokers[0].is_fenced is False


@pytest.mark.parametrize(
    ("endpoint_type", "code"),
    [(2, ErrorCode.mismatched_endpoint_type), (0, ErrorCode.unsupported_endpoint_type)],
)
async def test_describe_cluster_refuses_other_endpoint_types(
    served: Any, endpoint_type: int, code: ErrorCode
) -> None:
    _broker, wire = served
    request = load_request_schema(60, 1)(
        include_cluster_authorized_operations=False, endpoint_type=endpoint_type
    )
    response = await wire.request(60, 1, request)
    assert response.error_code == code
    assert response.error_message
    assert response.brokers == ()


@pytest.mark.parametrize("version", [0, 1, 2])
async def test_delete_records(served: Any, version: int) -> None:
    broker, wire = served
    topic_class = schema(21, version, "DeleteRecordsTopic")
    partition_class = schema(21, version, "DeleteRecordsPartition")

    async def delete(*entries: tuple[str, int, int]) -> list[tuple[str, int, int, int]]:
        request = load_request_schema(21, version)(
            topics=tuple(
                topic_class(name=name, partitions=(partition_class(partition_index=p, offset=o),))
                for name, p, o in entries
            ),
            timeout=ms(1000),
        )
        response = await wire.request(21, version, request)
        return [
            (t.name, p.partition_index, p.low_watermark, p.error_code)
            for t in response.topics
            for p in t.partitions
        ]

    assert await delete((TOPIC, 0, 2)) == [(TOPIC, 0, 2, ErrorCode.none)]
    assert await delete((TOPIC, 0, 1), (TOPIC, 1, -1)) == [
        (TOPIC, 0, 2, ErrorCode.none),  # below the start: nothing changes
        (TOPIC, 1, 0, ErrorCode.none),  # -1 on an empty partition
    ]
    assert await delete(
        (TOPIC, 0, 4), (TOPIC, 1, -2), ("nope", 0, 0), ("__consumer_offsets", 0, 0)
    ) == [
        (TOPIC, 0, -1, ErrorCode.offset_out_of_range),
        (TOPIC, 1, -1, ErrorCode.offset_out_of_range),
        ("nope", 0, -1, ErrorCode.unknown_topic_or_partition),
        ("__consumer_offsets", 0, -1, ErrorCode.invalid_topic_exception),
    ]
    assert await delete((TOPIC, 0, 3), (TOPIC, 0, 3)) == [
        (TOPIC, 0, -1, ErrorCode.invalid_request),
        (TOPIC, 0, -1, ErrorCode.invalid_request),
    ]
    # ListOffsets by timestamp skips records below the start: offset 1 (ts 90) is gone.
    found = await list_offsets(broker.handler_context(), ListOffsetsRequest(TOPIC, 0, 50))
    assert (found.offset, found.timestamp_ms) == (-1, -1)
    found = await list_offsets(broker.handler_context(), ListOffsetsRequest(TOPIC, 0, 6))
    assert (found.offset, found.timestamp_ms) == (2, 7)
    assert await delete((TOPIC, 0, -1)) == [(TOPIC, 0, 3, ErrorCode.none)]


@pytest.mark.parametrize("version", [0, 1, 2])
async def test_delete_groups(served: Any, version: int) -> None:
    broker, wire = served
    await broker.commit_offsets("done", {(TOPIC, 0): 1})
    request = load_request_schema(42, version)(groups_names=("done", "never", "", "done"))
    response = await wire.request(42, version, request)
    assert [(r.group_id, r.error_code) for r in response.results] == [
        ("done", ErrorCode.none),
        ("never", ErrorCode.group_id_not_found),
        ("", ErrorCode.invalid_group_id),
        ("done", ErrorCode.group_id_not_found),  # already deleted by the first entry
    ]
    assert await broker.committed_offsets("done") == {}


async def test_offset_delete(served: Any) -> None:
    broker, wire = served
    await broker.commit_offsets("od", {(TOPIC, 0): 1, (TOPIC, 1): 2})
    topic_class = schema(47, 0, "OffsetDeleteRequestTopic")
    partition_class = schema(47, 0, "OffsetDeleteRequestPartition")

    async def offset_delete(group: str, partitions: tuple[int, ...]) -> Any:
        request = load_request_schema(47, 0)(
            group_id=group,
            topics=(
                topic_class(
                    name=TOPIC,
                    partitions=tuple(partition_class(partition_index=p) for p in partitions),
                ),
            ),
        )
        return await wire.request(47, 0, request)

    response = await offset_delete("od", (1, 5))
    assert response.error_code == ErrorCode.none
    assert [(p.partition_index, p.error_code) for p in response.topics[0].partitions] == [
        (1, ErrorCode.none),
        (5, ErrorCode.none),  # nothing committed there: nothing to delete, as Kafka answers
    ]
    assert set(await broker.committed_offsets("od")) == {(TOPIC, 0)}
    for group, code in (("never", ErrorCode.group_id_not_found), ("", ErrorCode.invalid_group_id)):
        response = await offset_delete(group, (0,))
        assert (response.error_code, response.topics) == (code, ())


@pytest.mark.parametrize("version", [1, 2, 3, 4])
async def test_describe_log_dirs(served: Any, version: int, tmp_path: Path) -> None:
    broker, wire = served
    await broker.commit_offsets("g", {(TOPIC, 0): 1})  # opens an offsets partition
    response = await wire.request(35, version, load_request_schema(35, version)(topics=None))
    if version >= 3:
        assert response.error_code == ErrorCode.none
    [result] = response.results
    assert result.error_code == ErrorCode.none
    assert result.log_dir == str((tmp_path / "data").resolve())
    sizes = {
        (topic.name, p.partition_index): (p.partition_size, p.offset_lag, p.is_future_key)
        for topic in result.topics
        for p in topic.partitions
    }
    log = broker.handler_context().shard.log(TOPIC, 0)
    assert sizes[(TOPIC, 0)] == (log.size_bytes, 0, False)
    assert log.size_bytes > 0
    assert sizes[(TOPIC, 1)] == (0, 0, False)
    assert any(name == "__consumer_offsets" for name, _ in sizes)
    if version >= 4:
        assert result.total_bytes >= result.usable_bytes > 0

    # Only what is asked for; unknown topics and partitions are left out.
    wanted_class = schema(35, version, "DescribableLogDirTopic")
    request = load_request_schema(35, version)(
        topics=(
            wanted_class(topic=TOPIC, partitions=(1, 9)),
            wanted_class(topic="nope", partitions=(0,)),
        )
    )
    [result] = (await wire.request(35, version, request)).results
    assert [(t.name, [p.partition_index for p in t.partitions]) for t in result.topics] == [
        (TOPIC, [1])
    ]


async def test_describe_topic_partitions_pages_with_a_cursor(served: Any) -> None:
    broker, wire = served
    await broker.create_topic("a", partitions=3)
    await broker.create_topic("z", partitions=1)
    topic_class = schema(75, 0, "TopicRequest")
    cursor_class = schema(75, 0, "Cursor")

    async def page(
        names: tuple[str, ...], limit: int, cursor: tuple[str, int] | None = None
    ) -> tuple[list[tuple[str, int, list[int]]], tuple[str, int] | None]:
        request = load_request_schema(75, 0)(
            topics=tuple(topic_class(name=name) for name in names),
            response_partition_limit=limit,
            cursor=None
            if cursor is None
            else cursor_class(topic_name=cursor[0], partition_index=cursor[1]),
        )
        response = await wire.request(75, 0, request)
        topics = [
            (t.name, t.error_code, [p.partition_index for p in t.partitions])
            for t in response.topics
        ]
        next_cursor = response.next_cursor
        return topics, None if next_cursor is None else (
            next_cursor.topic_name,
            next_cursor.partition_index,
        )

    ok = ErrorCode.none
    assert await page((), 2) == ([("a", ok, [0, 1])], ("a", 2))
    assert await page((), 2, ("a", 2)) == ([("a", ok, [2]), (TOPIC, ok, [0])], (TOPIC, 1))
    assert await page((), 2, (TOPIC, 1)) == ([(TOPIC, ok, [1]), ("z", ok, [0])], None)
    # A page that ends exactly at a topic's end points at the next topic.
    assert await page((), 3) == ([("a", ok, [0, 1, 2])], (TOPIC, 0))
    # A limit below 1 is 1, as Kafka.
    assert await page(("z",), 0) == ([("z", ok, [0])], None)
    # Named topics: sorted, unknown ones answered, nothing created.
    unknown = ErrorCode.unknown_topic_or_partition
    assert await page(("z", "nope", "a"), 10) == (
        [("a", ok, [0, 1, 2]), ("nope", unknown, []), ("z", ok, [0])],
        None,
    )
    assert "nope" not in broker.handler_context().cluster.current.topics
    # A cursor on a topic not asked for, or at a negative partition: INVALID_REQUEST.
    invalid = ErrorCode.invalid_request
    assert await page(("z",), 10, ("a", 0)) == ([("z", invalid, [])], None)
    assert await page(("a",), 10, ("a", -1)) == ([("a", invalid, [])], None)

    request = load_request_schema(75, 0)(topics=(topic_class(name="a"),))
    [topic] = (await wire.request(75, 0, request)).topics
    assert topic.topic_id == uuid.UUID(
        broker.handler_context().cluster.current.topics["a"].topic_id
    )
    assert bits(topic.topic_authorized_operations) == TOPIC_OPERATIONS
    assert [(p.leader_id, p.replica_nodes, p.isr_nodes) for p in topic.partitions] == [
        (0, (0,), (0,))
    ] * 3


@pytest.mark.parametrize("version", [0, 1, 2])
async def test_elect_leaders(served: Any, version: int) -> None:
    _broker, wire = served
    topic_class = schema(43, version, "TopicPartitions")
    fields: dict[str, Any] = {
        "topic_partitions": (topic_class(topic=TOPIC, partitions=(0, 1, 7)),),
        "timeout": ms(1000),
    }
    if version >= 1:
        fields["election_type"] = 0
    response = await wire.request(43, version, load_request_schema(43, version)(**fields))
    [result] = response.replica_election_results
    assert [(p.partition_id, p.error_code) for p in result.partition_result] == [
        (0, ErrorCode.election_not_needed),
        (1, ErrorCode.election_not_needed),
        (7, ErrorCode.unknown_topic_or_partition),
    ]
    assert all(p.error_message for p in result.partition_result)
    fields["topic_partitions"] = None
    response = await wire.request(43, version, load_request_schema(43, version)(**fields))
    assert response.replica_election_results == ()
    if version >= 1:
        fields["election_type"] = 5
        fields["topic_partitions"] = (topic_class(topic=TOPIC, partitions=(0,)),)
        response = await wire.request(43, version, load_request_schema(43, version)(**fields))
        assert response.error_code == ErrorCode.invalid_request


async def test_partition_reassignments(served: Any) -> None:
    _broker, wire = served
    listed = await wire.request(46, 0, load_request_schema(46, 0)(timeout=ms(1000), topics=None))
    assert (listed.error_code, listed.topics) == (ErrorCode.none, ())
    topic_class = schema(45, 0, "ReassignableTopic")
    partition_class = schema(45, 0, "ReassignablePartition")
    targets = [(0, (0,)), (1, None), (0, ()), (1, (0, 0)), (0, (3,)), (9, (0,))]
    request = load_request_schema(45, 0)(
        timeout=ms(1000),
        topics=(
            topic_class(
                name=TOPIC,
                partitions=tuple(
                    partition_class(partition_index=p, replicas=r) for p, r in targets
                ),
            ),
        ),
    )
    response = await wire.request(45, 0, request)
    assert response.error_code == ErrorCode.none
    assert [p.error_code for p in response.responses[0].partitions] == [
        ErrorCode.none,
        ErrorCode.no_reassignment_in_progress,
        ErrorCode.invalid_replica_assignment,
        ErrorCode.invalid_replica_assignment,
        ErrorCode.invalid_replica_assignment,
        ErrorCode.unknown_topic_or_partition,
    ]


@pytest.mark.parametrize("version", [0, 1, 2])
async def test_describe_quorum(served: Any, version: int) -> None:
    broker, wire = served
    topic_class = schema(55, version, "TopicData")
    partition_class = schema(55, version, "PartitionData")

    def request(*pairs: tuple[str, int]) -> Any:
        return load_request_schema(55, version)(
            topics=tuple(
                topic_class(topic_name=name, partitions=(partition_class(partition_index=p),))
                for name, p in pairs
            )
        )

    response = await wire.request(55, version, request(("__cluster_metadata", 0)))
    assert response.error_code == ErrorCode.none
    [partition] = response.topics[0].partitions
    version_now = broker.handler_context().cluster.current.version
    assert (partition.error_code, partition.leader_id, partition.leader_epoch) == (
        ErrorCode.none,
        0,
        0,
    )
    assert partition.high_watermark == version_now > 0  # the topic's creation at least
    [voter] = partition.current_voters
    assert (voter.replica_id, voter.log_end_offset) == (0, version_now)
    assert partition.observers == ()
    if version >= 1:
        assert voter.last_fetch_timestamp > 0 and voter.last_caught_up_timestamp > 0
    if version >= 2:
        [node] = response.nodes
        assert node.node_id == 0 and node.listeners[0].host == "127.0.0.1"

    for pairs in ((("__cluster_metadata", 1),), (("other", 0),), (("__cluster_metadata", 0),) * 2):
        response = await wire.request(55, version, request(*pairs))
        assert response.error_code == ErrorCode.none
        codes = [p.error_code for t in response.topics for p in t.partitions]
        assert codes == [ErrorCode.unknown_topic_or_partition] * len(pairs)


@pytest.mark.parametrize("version", [0, 1])
async def test_consumer_group_heartbeat_and_describe(served: Any, version: int) -> None:
    """KIP-848 over the wire: join, the assignment by topic id, describe, leave."""
    broker, wire = served
    known = topic_id(broker)
    owned_class = schema(68, version, "TopicPartitions")

    def heartbeat(**fields: Any) -> Any:
        request = {
            "group_id": "kip848",
            "member_id": "member-1",
            "member_epoch": 0,
            "rebalance_timeout": ms(30_000),
            "subscribed_topic_names": (TOPIC,),
            "topic_partitions": (),
            **fields,
        }
        return wire.request(68, version, load_request_schema(68, version)(**request))

    joined = await heartbeat(**({"member_id": ""} if version == 0 else {}))
    assert joined.error_code == ErrorCode.none, joined
    assert joined.member_epoch == 1 and joined.member_id
    assert joined.heartbeat_interval.total_seconds() == 5
    [topic] = joined.assignment.topic_partitions
    assert (topic.topic_id, sorted(topic.partitions)) == (known, [0, 1])
    member_id = joined.member_id
    again = await heartbeat(
        member_id=member_id,
        member_epoch=1,
        rebalance_timeout=ms(-1),
        subscribed_topic_names=None,
        topic_partitions=(owned_class(topic_id=known, partitions=(0, 1)),),
    )
    assert (again.error_code, again.member_epoch, again.assignment) == (ErrorCode.none, 1, None)
    fenced = await heartbeat(member_id=member_id, member_epoch=7, topic_partitions=None)
    assert fenced.error_code == ErrorCode.fenced_member_epoch and fenced.error_message

    described = await wire.request(
        69,
        version,
        load_request_schema(69, version)(
            group_ids=("kip848", "nobody"), include_authorized_operations=True
        ),
    )
    group, missing = described.groups
    assert (group.error_code, group.group_state, group.group_epoch, group.assignor_name) == (
        ErrorCode.none,
        "Stable",
        1,
        "uniform",
    )
    assert bits(group.authorized_operations) == GROUP_OPERATIONS
    [member] = group.members
    assert (member.member_id, member.member_epoch, member.subscribed_topic_names) == (
        member_id,
        1,
        (TOPIC,),
    )
    [assigned] = member.assignment.topic_partitions
    assert (assigned.topic_id, assigned.topic_name, sorted(assigned.partitions)) == (
        known,
        TOPIC,
        [0, 1],
    )
    assert member.target_assignment == member.assignment
    if version >= 1:
        assert member.member_type == 1
    assert missing.error_code == ErrorCode.group_id_not_found

    listed = await wire.request(
        16, 5, load_request_schema(16, 5)(states_filter=(), types_filter=("consumer",))
    )
    assert [(g.group_id, g.group_type, g.group_state) for g in listed.groups] == [
        ("kip848", "consumer", "Stable")
    ]
    # OffsetFetch v9 and OffsetCommit v9 from the member: its epoch must be current.
    fetch_group = schema(9, 9, "OffsetFetchRequestGroup")
    for epoch, code in ((1, ErrorCode.none), (2, ErrorCode.stale_member_epoch)):
        fetched = await wire.request(
            9,
            9,
            load_request_schema(9, 9)(
                groups=(
                    fetch_group(
                        group_id="kip848", member_id=member_id, member_epoch=epoch, topics=None
                    ),
                ),
                require_stable=False,
            ),
        )
        assert fetched.groups[0].error_code == code
    commit_topic = schema(8, 8, "OffsetCommitRequestTopic")
    commit_partition = schema(8, 8, "OffsetCommitRequestPartition")
    old_commit = await wire.request(
        8,
        8,
        load_request_schema(8, 8)(
            group_id="kip848",
            generation_id_or_member_epoch=1,
            member_id=member_id,
            topics=(
                commit_topic(
                    name=TOPIC,
                    partitions=(
                        commit_partition(
                            partition_index=0, committed_offset=1, committed_metadata=None
                        ),
                    ),
                ),
            ),
        ),
    )
    assert old_commit.topics[0].partitions[0].error_code == ErrorCode.unsupported_version
    left = await heartbeat(member_id=member_id, member_epoch=-1, topic_partitions=None)
    assert (left.error_code, left.member_epoch) == (ErrorCode.none, -1)


async def _describe_topic_configs(
    wire: KafkaWire, version: int, synonyms: bool = False
) -> dict[str, Any]:
    resource_class = schema(32, version, "DescribeConfigsResource")
    fields: dict[str, Any] = {
        "resources": (
            resource_class(resource_type=2, resource_name=TOPIC, configuration_keys=None),
        )
    }
    if version >= 1:
        fields["include_synonyms"] = synonyms
    if version >= 3:
        fields["include_documentation"] = True
    response = await wire.request(32, version, load_request_schema(32, version)(**fields))
    (result,) = response.results
    assert result.error_code == ErrorCode.none
    return {entry.name: entry for entry in result.configs}


@pytest.mark.parametrize("version", [0, 1, 2])
async def test_alter_configs(served: Any, version: int) -> None:
    broker, wire = served
    resource_class = schema(33, version, "AlterConfigsResource")
    config_class = schema(33, version, "AlterableConfig")

    async def alter(
        *resources: tuple[int, str, dict[str, str | None]], validate_only: bool = False
    ) -> list[tuple[int, str, int]]:
        request = load_request_schema(33, version)(
            resources=tuple(
                resource_class(
                    resource_type=kind,
                    resource_name=name,
                    configs=tuple(config_class(name=k, value=v) for k, v in configs.items()),
                )
                for kind, name, configs in resources
            ),
            validate_only=validate_only,
        )
        response = await wire.request(33, version, request)
        for result in response.responses:
            assert (result.error_code == ErrorCode.none) == (result.error_message is None)
        return [(r.resource_type, r.resource_name, r.error_code) for r in response.responses]

    assert await alter((2, TOPIC, {"retention.ms": "1000"}), validate_only=True) == [
        (2, TOPIC, ErrorCode.none)
    ]
    assert (await _describe_topic_configs(wire, 1))["retention.ms"].value == "604800000"
    assert await alter((2, TOPIC, {"retention.ms": "1000", "segment.bytes": "4096"})) == [
        (2, TOPIC, ErrorCode.none)
    ]
    assert broker.shard.log(TOPIC, 1).config.segment_bytes == 4096
    entries = await _describe_topic_configs(wire, 1, synonyms=True)
    assert entries["retention.ms"].value == "1000"
    assert entries["retention.ms"].config_source == 1
    assert [(s.name, s.value, s.source) for s in entries["retention.ms"].synonyms] == [
        ("retention.ms", "1000", 1),
        ("log.retention.ms", "604800000", 5),
    ]
    assert await alter(
        (2, TOPIC, {"min.insync.replicas": "2"}),
        (2, "nope", {"retention.ms": "1"}),
        (2, "a b", {"retention.ms": "1"}),
        (8, "0", {"trioring": "DEBUG"}),
        (4, "", {"num.io.threads": "1"}),
        (2, TOPIC, {"retention.ms": "5"}),
    ) == [
        (2, TOPIC, ErrorCode.invalid_request),  # named twice
        (2, "nope", ErrorCode.unknown_topic_or_partition),
        (2, "a b", ErrorCode.invalid_topic_exception),
        (8, "0", ErrorCode.invalid_request),
        (4, "", ErrorCode.invalid_request),
        (2, TOPIC, ErrorCode.invalid_request),
    ]
    assert await alter((2, TOPIC, {"min.insync.replicas": "2"})) == [
        (2, TOPIC, ErrorCode.invalid_config)
    ]
    assert await alter((2, TOPIC, {"retention.ms": None})) == [
        (2, TOPIC, ErrorCode.invalid_request)
    ]
    # Nothing named: every override goes, the defaults come back.
    assert await alter((2, TOPIC, {})) == [(2, TOPIC, ErrorCode.none)]
    assert (await _describe_topic_configs(wire, 1))["retention.ms"].config_source == 5
    # The cluster-wide default (resource "") changes it for every topic without its own.
    assert await alter((4, "", {"log.retention.ms": "60000"})) == [(4, "", ErrorCode.none)]
    retention = (await _describe_topic_configs(wire, 1))["retention.ms"]
    assert (retention.value, retention.config_source) == ("60000", 3)
    assert broker.shard.log(TOPIC, 0).config.retention_ms == 60000


@pytest.mark.parametrize("version", [0, 1])
async def test_incremental_alter_configs(served: Any, version: int) -> None:
    broker, wire = served
    resource_class = schema(44, version, "AlterConfigsResource")
    config_class = schema(44, version, "AlterableConfig")

    async def alter(name: str, *changes: tuple[str, int, str | None]) -> tuple[int, str | None]:
        request = load_request_schema(44, version)(
            resources=(
                resource_class(
                    resource_type=2,
                    resource_name=name,
                    configs=tuple(
                        config_class(name=k, config_operation=op, value=v) for k, op, v in changes
                    ),
                ),
            ),
            validate_only=False,
        )
        response = await wire.request(44, version, request)
        (result,) = response.responses
        assert result.resource_name == name
        return result.error_code, result.error_message

    assert await alter(TOPIC, ("retention.bytes", 0, "100000"), ("segment.ms", 0, "60000")) == (
        ErrorCode.none,
        None,
    )
    assert await alter(TOPIC, ("segment.ms", 1, None)) == (ErrorCode.none, None)
    config = broker.shard.log(TOPIC, 0).config
    assert (config.retention_bytes, config.segment_ms) == (100000, 604800000)
    code, message = await alter(TOPIC, ("retention.bytes", 2, "1"))
    assert code == ErrorCode.invalid_config and "not LIST" in str(message)
    code, message = await alter(TOPIC, ("cleanup.policy", 2, "compact"))
    assert code == ErrorCode.invalid_config
    code, message = await alter(TOPIC, ("no.such.config", 0, "1"))
    assert code == ErrorCode.invalid_config and "no.such.config" in str(message)
    entries = await _describe_topic_configs(wire, 3)
    assert entries["retention.bytes"].value == "100000"
    assert entries["retention.bytes"].config_type == 5
    assert entries["retention.bytes"].documentation


@pytest.mark.parametrize("version", [1, 4])
async def test_describe_broker_configs(tmp_path: Path, version: int) -> None:
    async with running_server(tmp_path / "data") as (_broker, server):
        wire = await KafkaWire.connect(server.port)
        resource_class = schema(32, version, "DescribeConfigsResource")
        fields: dict[str, Any] = {
            "resources": tuple(
                resource_class(resource_type=4, resource_name=name, configuration_keys=None)
                for name in ("0", "", "3")
            ),
            "include_synonyms": True,
        }
        if version >= 3:
            fields["include_documentation"] = True
        response = await wire.request(32, version, load_request_schema(32, version)(**fields))
        await wire.aclose()
    this, default, other = response.results
    assert (this.error_code, default.error_code, other.error_code) == (
        ErrorCode.none,
        ErrorCode.none,
        ErrorCode.invalid_request,
    )
    assert default.configs == () and other.configs == ()
    entries = {entry.name: entry for entry in this.configs}
    assert len(entries) >= 280
    address = f"PLAINTEXT://127.0.0.1:{server.port}"
    assert entries["listeners"].value == address
    assert entries["advertised.listeners"].value == address
    assert entries["node.id"].value == "0"
    assert entries["ssl.truststore.password"].is_sensitive
    assert entries["ssl.truststore.password"].value is None
    assert [(s.name, s.value, s.source) for s in entries["log.segment.bytes"].synonyms] == [
        ("log.segment.bytes", str(1 << 30), 5)
    ]
    if version >= 3:
        assert entries["log.retention.ms"].config_type == 5
        assert entries["num.io.threads"].documentation

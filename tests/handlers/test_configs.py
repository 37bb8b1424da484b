"""DescribeConfigs, AlterConfigs and IncrementalAlterConfigs through the handlers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio
from kio.schema.errors import ErrorCode

import trioring
from trioring import Record
from trioring.cluster.topic_configs import BROKER_DEFAULTS, derive_overrides, log_defaults
from trioring.config import BrokerConfig, LogConfig
from trioring.handlers import HandlerContext
from trioring.handlers._kafka_configs import BROKER_CONFIGS, TOPIC_CONFIGS
from trioring.handlers.messages import (
    APPEND_CONFIG,
    BROKER_RESOURCE,
    DEFAULT_CONFIG_SOURCE,
    DELETE_CONFIG,
    DYNAMIC_BROKER_CONFIG_SOURCE,
    DYNAMIC_DEFAULT_BROKER_CONFIG_SOURCE,
    SET_CONFIG,
    STATIC_BROKER_CONFIG_SOURCE,
    SUBTRACT_CONFIG,
    TOPIC_CONFIG_SOURCE,
    TOPIC_RESOURCE,
    AlterConfigsRequest,
    AlterConfigsResource,
    ConfigChange,
    ConfigEntry,
    ConfigResource,
    ConfigSynonym,
    CreateTopicsRequest,
    DescribeConfigsRequest,
    IncrementalAlterConfigsRequest,
    NewTopic,
)

WEEK_MS = str(7 * 24 * 3600 * 1000)


@pytest.fixture
async def broker(tmp_path) -> AsyncIterator[trioring.Broker]:
    async with trioring.open_broker(tmp_path) as opened:
        await opened.create_topic("t", partitions=2)
        yield opened


@pytest.fixture
def context(broker: trioring.Broker) -> HandlerContext:
    return broker.handler_context()


async def describe(
    broker: trioring.Broker, topic: str = "t", synonyms: bool = False
) -> dict[str, ConfigEntry]:
    response = await broker.handlers.describe_configs(
        broker.handler_context(),
        DescribeConfigsRequest((ConfigResource(TOPIC_RESOURCE, topic),), synonyms),
    )
    (result,) = response.results
    assert result.error is None, result.error
    return {entry.name: entry for entry in result.entries}


async def alter(
    broker: trioring.Broker,
    changes: dict[str, str | None],
    *,
    name: str = "t",
    resource_type: int = TOPIC_RESOURCE,
    validate_only: bool = False,
) -> int:
    """AlterConfigs of one resource; its error code."""
    response = await broker.handlers.alter_configs(
        broker.handler_context(),
        AlterConfigsRequest(
            (
                AlterConfigsResource(
                    resource_type,
                    name,
                    tuple(ConfigChange(key, value) for key, value in changes.items()),
                ),
            ),
            validate_only,
        ),
    )
    (result,) = response.results
    return 0 if result.error is None else result.error.kafka_error_code


async def incremental(
    broker: trioring.Broker,
    *changes: tuple[str, int, str | None],
    name: str = "t",
    resource_type: int = TOPIC_RESOURCE,
) -> tuple[int, str | None]:
    response = await broker.handlers.incremental_alter_configs(
        broker.handler_context(),
        IncrementalAlterConfigsRequest(
            (
                AlterConfigsResource(
                    resource_type,
                    name,
                    tuple(ConfigChange(key, value, op) for key, op, value in changes),
                ),
            )
        ),
    )
    (result,) = response.results
    if result.error is None:
        return 0, None
    return result.error.kafka_error_code, str(result.error)


async def test_describe_lists_every_kafka_topic_config(broker):
    entries = await describe(broker)
    assert set(entries) == set(TOPIC_CONFIGS)
    assert len(entries) >= 30
    retention = entries["retention.ms"]
    assert (retention.value, retention.source, retention.is_default) == (
        WEEK_MS,
        DEFAULT_CONFIG_SOURCE,
        True,
    )
    assert retention.read_only is False
    assert retention.config_type == 5 and retention.documentation
    # What trioring does not apply: Kafka's default, read-only, and said plainly.
    insync = entries["min.insync.replicas"]
    assert (insync.value, insync.read_only) == ("1", True)
    assert insync.documentation is not None and "does not use" in insync.documentation
    assert entries["cleanup.policy"].config_type == 7


async def test_alter_configs_replaces_every_override(broker):
    assert await alter(broker, {"retention.ms": "1000", "segment.bytes": "2048"}) == 0
    entries = await describe(broker)
    assert entries["retention.ms"].value == "1000"
    assert entries["retention.ms"].source == TOPIC_CONFIG_SOURCE
    assert entries["segment.bytes"].value == "2048"
    for partition in (0, 1):
        config = broker.shard.log("t", partition).config
        assert (config.retention_ms, config.segment_bytes) == (1000, 2048)
    # AlterConfigs: what is not named reverts to the broker's default.
    assert await alter(broker, {"retention.bytes": "5000"}) == 0
    entries = await describe(broker)
    assert entries["retention.ms"].value == WEEK_MS
    assert entries["retention.ms"].source == DEFAULT_CONFIG_SOURCE
    assert entries["retention.bytes"].value == "5000"
    assert broker.shard.log("t", 0).config == LogConfig(retention_bytes=5000)
    assert dict(broker.topics()["t"].overrides) == {"retention.bytes": "5000"}


async def test_incremental_set_delete_append_subtract(broker):
    assert await incremental(broker, ("retention.ms", SET_CONFIG, "60000")) == (0, None)
    assert await incremental(broker, ("segment.ms", SET_CONFIG, "3600000")) == (0, None)
    entries = await describe(broker)
    assert (entries["retention.ms"].value, entries["segment.ms"].value) == ("60000", "3600000")
    # DELETE reverts to the default, the rest stays.
    assert await incremental(broker, ("retention.ms", DELETE_CONFIG, None)) == (0, None)
    entries = await describe(broker)
    assert (entries["retention.ms"].value, entries["segment.ms"].value) == (WEEK_MS, "3600000")
    # Lists: appending what is there changes nothing; compact cannot be had.
    assert await incremental(broker, ("cleanup.policy", APPEND_CONFIG, "delete")) == (0, None)
    code, message = await incremental(broker, ("cleanup.policy", APPEND_CONFIG, "compact"))
    assert code == ErrorCode.invalid_config and "cleanup.policy" in str(message)
    code, message = await incremental(broker, ("cleanup.policy", SUBTRACT_CONFIG, "delete"))
    assert code == ErrorCode.invalid_config
    # APPEND and SUBTRACT are for lists only, as in Kafka.
    code, message = await incremental(broker, ("retention.ms", APPEND_CONFIG, "1"))
    assert code == ErrorCode.invalid_config and "not LIST" in str(message)
    code, message = await incremental(broker, ("retention.ms", SUBTRACT_CONFIG, "1"))
    assert code == ErrorCode.invalid_config
    code, message = await incremental(broker, ("retention.ms", 9, "1"))
    assert code == ErrorCode.invalid_request
    # Nothing that failed changed anything.
    assert dict(broker.topics()["t"].overrides) == {
        "cleanup.policy": "delete",
        "segment.ms": "3600000",
    }


async def test_validate_only_changes_nothing(broker):
    assert await alter(broker, {"retention.ms": "1000"}, validate_only=True) == 0
    assert (await describe(broker))["retention.ms"].value == WEEK_MS
    assert await alter(broker, {"retention.ms": "-5"}, validate_only=True) == (
        ErrorCode.invalid_config
    )


@pytest.mark.parametrize(
    ("changes", "code", "named"),
    [
        ({"retention.mss": "1"}, ErrorCode.invalid_config, "retention.mss"),
        ({"min.insync.replicas": "2"}, ErrorCode.invalid_config, "min.insync.replicas"),
        ({"max.message.bytes": "100"}, ErrorCode.invalid_config, "max.message.bytes"),
        ({"retention.ms": "soon"}, ErrorCode.invalid_config, "retention.ms"),
        ({"retention.ms": "-2"}, ErrorCode.invalid_config, "retention.ms"),
        ({"retention.ms": "1_000"}, ErrorCode.invalid_config, "retention.ms"),
        ({"retention.ms": str(2**63)}, ErrorCode.invalid_config, "retention.ms"),
        ({"segment.bytes": str(2**31)}, ErrorCode.invalid_config, "segment.bytes"),
        ({"segment.bytes": "10"}, ErrorCode.invalid_config, "segment_bytes"),
        ({"cleanup.policy": "compact"}, ErrorCode.invalid_config, "cleanup.policy"),
        ({"retention.ms": None}, ErrorCode.invalid_request, "retention.ms"),
    ],
)
async def test_alter_refuses_what_trioring_cannot_apply(broker, changes, code, named):
    response = await broker.handlers.alter_configs(
        broker.handler_context(),
        AlterConfigsRequest(
            (
                AlterConfigsResource(
                    TOPIC_RESOURCE, "t", tuple(ConfigChange(k, v) for k, v in changes.items())
                ),
            )
        ),
    )
    (result,) = response.results
    assert result.error is not None
    assert result.error.kafka_error_code == code
    assert named in str(result.error)
    assert broker.topics()["t"].overrides == ()


@pytest.mark.parametrize(
    ("name", "resource_type", "code"),
    [
        ("missing", TOPIC_RESOURCE, ErrorCode.unknown_topic_or_partition),
        ("bad name!", TOPIC_RESOURCE, ErrorCode.invalid_topic_exception),
        ("", TOPIC_RESOURCE, ErrorCode.invalid_request),
        ("__consumer_offsets", TOPIC_RESOURCE, ErrorCode.invalid_topic_exception),
        ("t", 8, ErrorCode.invalid_request),  # BROKER_LOGGER
        ("g", 32, ErrorCode.invalid_request),  # GROUP
        ("t", 99, ErrorCode.invalid_request),
        ("", BROKER_RESOURCE, ErrorCode.invalid_request),  # static in trioring
        ("7", BROKER_RESOURCE, ErrorCode.invalid_request),
        ("x", BROKER_RESOURCE, ErrorCode.invalid_request),
    ],
)
async def test_alter_resource_errors(broker, name, resource_type, code):
    assert await alter(broker, {"retention.ms": "1"}, name=name, resource_type=resource_type) == (
        code
    )


async def test_a_resource_named_twice_fails_both_and_others_go_on(broker):
    await broker.create_topic("u")
    resource = AlterConfigsResource(TOPIC_RESOURCE, "t", (ConfigChange("retention.ms", "1"),))
    other = AlterConfigsResource(TOPIC_RESOURCE, "u", (ConfigChange("retention.ms", "2"),))
    twice = AlterConfigsResource(
        TOPIC_RESOURCE, "t", (ConfigChange("retention.ms", "1"), ConfigChange("retention.ms", "3"))
    )
    response = await broker.handlers.alter_configs(
        broker.handler_context(), AlterConfigsRequest((resource, other, resource))
    )
    codes = [r.error.kafka_error_code if r.error else 0 for r in response.results]
    assert codes == [ErrorCode.invalid_request, 0, ErrorCode.invalid_request]
    assert dict(broker.topics()["u"].overrides) == {"retention.ms": "2"}
    response = await broker.handlers.incremental_alter_configs(
        broker.handler_context(), IncrementalAlterConfigsRequest((twice,))
    )
    assert response.results[0].error is not None
    assert response.results[0].error.kafka_error_code == ErrorCode.invalid_request


async def test_synonyms_name_the_broker_configs(broker):
    assert await alter(broker, {"retention.ms": "1000"}) == 0
    entries = await describe(broker, synonyms=True)
    assert entries["retention.ms"].synonyms == (
        ConfigSynonym("retention.ms", "1000", TOPIC_CONFIG_SOURCE),
        ConfigSynonym("log.retention.ms", WEEK_MS, DEFAULT_CONFIG_SOURCE),
    )
    assert entries["segment.bytes"].synonyms == (
        ConfigSynonym("log.segment.bytes", str(1 << 30), DEFAULT_CONFIG_SOURCE),
    )
    assert (await describe(broker))["retention.ms"].synonyms == ()


async def test_the_brokers_own_defaults_are_static_broker_configs(tmp_path):
    config = BrokerConfig(data_dir=tmp_path, log=LogConfig(retention_ms=5000))
    async with trioring.open_broker(config) as broker:
        await broker.create_topic("t")
        entries = await describe(broker, synonyms=True)
        retention = entries["retention.ms"]
        assert (retention.value, retention.source) == ("5000", STATIC_BROKER_CONFIG_SOURCE)
        assert retention.synonyms == (
            ConfigSynonym("log.retention.ms", "5000", STATIC_BROKER_CONFIG_SOURCE),
            ConfigSynonym("log.retention.ms", WEEK_MS, DEFAULT_CONFIG_SOURCE),
        )
        # A topic's own value over the broker's; removing it falls back to the broker's.
        assert await incremental(broker, ("retention.ms", SET_CONFIG, "7000")) == (0, None)
        assert broker.shard.log("t", 0).config.retention_ms == 7000
        assert await incremental(broker, ("retention.ms", DELETE_CONFIG, None)) == (0, None)
        assert broker.shard.log("t", 0).config.retention_ms == 5000


async def test_lower_retention_deletes_old_segments(broker):
    assert await alter(broker, {"segment.bytes": "1024"}) == 0
    for index in range(8):
        await broker.produce("t", 0, [Record(value=bytes(600), key=str(index).encode())])
    log = broker.shard.log("t", 0)
    segments = log.segment_count
    assert segments >= 4
    assert await log.enforce_retention() == 0  # no limit yet
    assert await alter(broker, {"segment.bytes": "1024", "retention.bytes": "1300"}) == 0
    assert await log.enforce_retention() > 0
    assert log.segment_count < segments
    assert log.log_start_offset > 0


async def test_configs_survive_a_restart(tmp_path):
    async with trioring.open_broker(tmp_path) as broker:
        await broker.create_topic("t")
        assert await alter(broker, {"retention.ms": "1234", "segment.ms": "60000"}) == 0
    async with trioring.open_broker(tmp_path) as broker:
        entries = await describe(broker)
        assert (entries["retention.ms"].value, entries["segment.ms"].value) == ("1234", "60000")
        assert broker.shard.log("t", 0).config.retention_ms == 1234


async def test_create_topics_configs_are_the_topics_own(broker, context):
    response = await broker.handlers.create_topics(
        context,
        CreateTopicsRequest((NewTopic("c", 1, 1, (), (("retention.ms", WEEK_MS),)),)),
    )
    (result,) = response.results
    assert result.error is None
    assert dict(broker.topics()["c"].overrides) == {"retention.ms": WEEK_MS}
    entries = await describe(broker, "c")
    # Equal to the default, but set for the topic: Kafka calls it the topic's.
    assert entries["retention.ms"].source == TOPIC_CONFIG_SOURCE


async def describe_broker(
    broker: trioring.Broker, name: str = "0", synonyms: bool = False
) -> tuple[int, dict[str, ConfigEntry]]:
    response = await broker.handlers.describe_configs(
        broker.handler_context(),
        DescribeConfigsRequest((ConfigResource(BROKER_RESOURCE, name),), synonyms),
    )
    (result,) = response.results
    code = 0 if result.error is None else result.error.kafka_error_code
    return code, {entry.name: entry for entry in result.entries}


async def test_describe_broker_lists_every_kafka_broker_config(tmp_path):
    config = BrokerConfig(data_dir=tmp_path, log=LogConfig(retention_ms=5000), default_partitions=3)
    async with trioring.open_broker(config) as broker:
        code, entries = await describe_broker(broker, synonyms=True)
    assert code == 0
    assert set(entries) == set(BROKER_CONFIGS)
    # The log.* topic defaults change at run time; the rest is static.
    assert {name for name, entry in entries.items() if not entry.read_only} == set(BROKER_DEFAULTS)
    # What trioring has: its real values, STATIC_BROKER_CONFIG where the operator set them.
    retention = entries["log.retention.ms"]
    assert (retention.value, retention.source) == ("5000", STATIC_BROKER_CONFIG_SOURCE)
    assert retention.synonyms == (
        ConfigSynonym("log.retention.ms", "5000", STATIC_BROKER_CONFIG_SOURCE),
    )
    assert (entries["num.partitions"].value, entries["num.partitions"].source) == (
        "3",
        STATIC_BROKER_CONFIG_SOURCE,
    )
    segment = entries["log.segment.bytes"]
    assert (segment.value, segment.source, segment.is_default) == (
        str(1 << 30),
        DEFAULT_CONFIG_SOURCE,
        True,
    )
    assert entries["node.id"].value == "0"
    assert entries["log.dirs"].value == str(tmp_path.resolve())
    assert entries["offsets.topic.num.partitions"].value == "16"
    assert entries["log.retention.hours"].value is None
    # What it has not: Kafka's default, documented as such; secrets never shown.
    threads = entries["num.io.threads"]
    assert (threads.value, threads.source) == ("8", DEFAULT_CONFIG_SOURCE)
    assert threads.documentation is not None and "no such setting" in threads.documentation
    password = entries["ssl.keystore.password"]
    assert (password.value, password.sensitive, password.config_type) == (None, True, 9)
    # In-process there is no listener.
    assert entries["listeners"].value == "PLAINTEXT://:9092"
    assert "no such setting" in str(entries["listeners"].documentation)


async def test_describe_broker_names_this_node_or_the_cluster_default(broker):
    # "": the dynamic cluster-wide configs, none yet.
    assert await describe_broker(broker, "") == (0, {})
    assert (await describe_broker(broker, "1"))[0] == ErrorCode.invalid_request
    assert (await describe_broker(broker, "x"))[0] == ErrorCode.invalid_request
    response = await broker.handlers.describe_configs(
        broker.handler_context(),
        DescribeConfigsRequest(
            (ConfigResource(BROKER_RESOURCE, "0", ("log.segment.bytes", "nope")),)
        ),
    )
    assert [entry.name for entry in response.results[0].entries] == ["log.segment.bytes"]


async def alter_cluster(broker: trioring.Broker, *changes: tuple[str, int, str | None]) -> int:
    code, _message = await incremental(broker, *changes, name="", resource_type=BROKER_RESOURCE)
    return code


async def test_cluster_wide_defaults_reach_the_topics_that_follow_them(broker):
    await broker.create_topic("own")
    assert await alter(broker, {"retention.ms": "9000"}, name="own") == 0
    assert await alter_cluster(broker, ("log.retention.ms", SET_CONFIG, "1000")) == 0
    assert broker.shard.log("t", 1).config.retention_ms == 1000
    assert broker.shard.log("own", 0).config.retention_ms == 9000  # its own value stays
    entries = await describe(broker, synonyms=True)
    retention = entries["retention.ms"]
    assert (retention.value, retention.source) == ("1000", DYNAMIC_DEFAULT_BROKER_CONFIG_SOURCE)
    assert retention.synonyms == (
        ConfigSynonym("log.retention.ms", "1000", DYNAMIC_DEFAULT_BROKER_CONFIG_SOURCE),
        ConfigSynonym("log.retention.ms", WEEK_MS, DEFAULT_CONFIG_SOURCE),
    )
    code, cluster = await describe_broker(broker, "", synonyms=True)
    assert code == 0 and list(cluster) == ["log.retention.ms"]
    assert cluster["log.retention.ms"].source == DYNAMIC_DEFAULT_BROKER_CONFIG_SOURCE
    _code, node = await describe_broker(broker, "0", synonyms=True)
    assert (node["log.retention.ms"].value, node["log.retention.ms"].read_only) == ("1000", False)
    assert [s.source for s in node["log.retention.ms"].synonyms] == [
        DYNAMIC_DEFAULT_BROKER_CONFIG_SOURCE,
        DEFAULT_CONFIG_SOURCE,
    ]
    # A new topic takes the new default; a topic's own value reverts to it.
    await broker.create_topic("new")
    assert broker.shard.log("new", 0).config.retention_ms == 1000
    assert await incremental(broker, ("retention.ms", DELETE_CONFIG, None), name="own") == (0, None)
    assert broker.shard.log("own", 0).config.retention_ms == 1000
    # DELETE puts the static default back everywhere.
    assert await alter_cluster(broker, ("log.retention.ms", DELETE_CONFIG, None)) == 0
    assert broker.shard.log("t", 0).config.retention_ms == int(WEEK_MS)
    assert (await describe_broker(broker, ""))[1] == {}


async def test_cluster_wide_defaults_are_validated(broker):
    assert await alter_cluster(broker, ("log.retention.ms", SET_CONFIG, "soon")) == (
        ErrorCode.invalid_config
    )
    assert await alter_cluster(broker, ("log.segment.bytes", SET_CONFIG, "10")) == (
        ErrorCode.invalid_config
    )
    assert await alter_cluster(broker, ("log.retention.ms", APPEND_CONFIG, "1")) == (
        ErrorCode.invalid_config
    )
    code, message = await incremental(
        broker, ("num.io.threads", SET_CONFIG, "4"), name="", resource_type=BROKER_RESOURCE
    )
    assert code == ErrorCode.invalid_request and "static in trioring" in str(message)
    assert (
        await alter(
            broker,
            {"log.roll.ms": "5000"},
            name="",
            resource_type=BROKER_RESOURCE,
            validate_only=True,
        )
        == 0
    )
    assert broker.handler_context().cluster.current.broker_defaults == {}
    # AlterConfigs replaces the whole set.
    assert await alter(broker, {"log.roll.ms": "5000"}, name="", resource_type=BROKER_RESOURCE) == 0
    assert (
        await alter(
            broker, {"log.retention.bytes": "100000"}, name="", resource_type=BROKER_RESOURCE
        )
        == 0
    )
    assert broker.handler_context().cluster.current.broker_defaults == {
        "log.retention.bytes": "100000"
    }
    assert broker.shard.log("t", 0).config == LogConfig(retention_bytes=100000)


async def test_cluster_wide_defaults_survive_a_restart(tmp_path):
    async with trioring.open_broker(tmp_path) as broker:
        await broker.create_topic("t")
        assert await alter_cluster(broker, ("log.segment.bytes", SET_CONFIG, "4096")) == 0
    async with trioring.open_broker(tmp_path) as broker:
        assert broker.shard.log("t", 0).config.segment_bytes == 4096
        assert (await describe(broker))["segment.bytes"].source == (
            DYNAMIC_DEFAULT_BROKER_CONFIG_SOURCE
        )


def test_a_topic_without_recorded_configs_keeps_what_differs_from_the_default():
    default = log_defaults(LogConfig(), {"log.retention.ms": "1000"})
    assert default.retention_ms == 1000
    baked = LogConfig(retention_ms=1000, segment_bytes=4096)
    assert derive_overrides(baked, default) == {"segment.bytes": "4096"}
    assert derive_overrides(LogConfig(retention_bytes=None), LogConfig(retention_bytes=5)) == {
        "retention.bytes": "-1"
    }


async def test_a_nodes_own_defaults_apply_to_its_partitions_over_the_clusters(broker):
    assert await alter_cluster(broker, ("log.retention.ms", SET_CONFIG, "1000")) == 0
    code, _message = await incremental(
        broker, ("log.retention.ms", SET_CONFIG, "2000"), name="0", resource_type=BROKER_RESOURCE
    )
    assert code == 0
    assert broker.shard.log("t", 0).config.retention_ms == 2000
    entries = await describe(broker, synonyms=True)
    assert entries["retention.ms"].value == "2000"
    assert [s.source for s in entries["retention.ms"].synonyms] == [
        DYNAMIC_BROKER_CONFIG_SOURCE,
        DYNAMIC_DEFAULT_BROKER_CONFIG_SOURCE,
        DEFAULT_CONFIG_SOURCE,
    ]
    _code, node = await describe_broker(broker, "0", synonyms=True)
    assert (node["log.retention.ms"].value, node["log.retention.ms"].source) == (
        "2000",
        DYNAMIC_BROKER_CONFIG_SOURCE,
    )
    # The topic's own value still wins; removing the node's falls back to the cluster's.
    assert await alter(broker, {"retention.ms": "7"}) == 0
    assert broker.shard.log("t", 0).config.retention_ms == 7
    assert await alter(broker, {}) == 0
    assert broker.shard.log("t", 0).config.retention_ms == 2000
    assert await alter(broker, {}, name="0", resource_type=BROKER_RESOURCE) == 0
    assert broker.shard.log("t", 0).config.retention_ms == 1000
    assert broker.handler_context().cluster.current.node_defaults == {}


async def test_topics_follow_log_settings_changed_between_starts(tmp_path):
    async with trioring.open_broker(
        BrokerConfig(data_dir=tmp_path, log=LogConfig(retention_ms=5000))
    ) as broker:
        await broker.create_topic("follows")
        await broker.create_topic("own")
        assert await alter(broker, {"retention.ms": "9000"}, name="own") == 0
    async with trioring.open_broker(
        BrokerConfig(data_dir=tmp_path, log=LogConfig(retention_ms=7000))
    ) as broker:
        assert broker.shard.log("follows", 0).config.retention_ms == 7000
        assert broker.shard.log("own", 0).config.retention_ms == 9000
        entries = await describe(broker, "follows")
        assert (entries["retention.ms"].value, entries["retention.ms"].source) == (
            "7000",
            STATIC_BROKER_CONFIG_SOURCE,
        )


async def test_concurrent_incremental_changes_all_hold(broker):
    changes = [
        ("retention.ms", "1000"),
        ("retention.bytes", "2000"),
        ("segment.ms", "3000"),
        ("index.interval.bytes", "500"),
    ]
    broker_changes = [("log.roll.ms", "4000"), ("log.retention.bytes", "5000")]
    async with trio.open_nursery() as nursery:
        for name, value in changes:
            nursery.start_soon(incremental, broker, (name, SET_CONFIG, value))
        for name, value in broker_changes:
            nursery.start_soon(alter_cluster, broker, (name, SET_CONFIG, value))
    assert dict(broker.topics()["t"].overrides) == dict(changes)
    assert broker.handler_context().cluster.current.broker_defaults == dict(broker_changes)

"""Topic and broker configs from real admin clients: confluent-kafka's alter_configs,
incremental_alter_configs and describe_configs (with synonyms), kafka-python's
alter_configs and describe_configs; errors as Kafka gives them; a change
surviving a SIGKILL, reaching the worker that owns a partition, and retention
acting on it."""

from __future__ import annotations

import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from interop_clients import import_kafka_python
from interop_wire import broker_log
from kio.index import load_request_schema

from trioring.protocol.kafka import ApiKey
from trioring.testing import BrokerProcess

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "server"))
from server_support import exchange

WEEK_MS = "604800000"


def _admin_module() -> Any:
    return pytest.importorskip("confluent_kafka.admin")


def _admin(bootstrap: str) -> Any:
    return _admin_module().AdminClient({"bootstrap.servers": bootstrap})


def _create(bootstrap: str, topic: str, partitions: int = 1) -> None:
    admin = _admin(bootstrap)  # kept alive until the future is done
    futures = admin.create_topics([_admin_module().NewTopic(topic, partitions)], request_timeout=10)
    futures[topic].result(timeout=15)


def _describe(bootstrap: str, topic: str) -> dict[str, Any]:
    """librdkafka always asks for synonyms."""
    module = _admin_module()
    admin = _admin(bootstrap)
    resource = module.ConfigResource(module.ResourceType.TOPIC, topic)
    futures = admin.describe_configs([resource], request_timeout=10)
    entries: dict[str, Any] = futures[resource].result(timeout=15)
    return entries


def _incremental(bootstrap: str, topic: str, *changes: tuple[str, str, str | None]) -> None:
    module = _admin_module()
    admin = _admin(bootstrap)
    resource = module.ConfigResource(
        module.ResourceType.TOPIC,
        topic,
        incremental_configs=[
            module.ConfigEntry(
                name, value, incremental_operation=getattr(module.AlterConfigOpType, op)
            )
            for name, op, value in changes
        ],
    )
    futures = admin.incremental_alter_configs([resource], request_timeout=10)
    futures[resource].result(timeout=15)


def test_confluent_alters_and_describes_topic_configs(module_broker: BrokerProcess) -> None:
    module = _admin_module()
    bootstrap = module_broker.bootstrap
    topic = f"configs-{uuid.uuid4().hex[:8]}"
    _create(bootstrap, topic)
    entries = _describe(bootstrap, topic)
    assert len(entries) >= 30
    assert entries["retention.ms"].value == WEEK_MS
    assert entries["retention.ms"].source == module.ConfigSource.DEFAULT_CONFIG.value
    assert entries["min.insync.replicas"].is_read_only

    _incremental(bootstrap, topic, ("retention.ms", "SET", "60000"), ("segment.ms", "SET", "1000"))
    _incremental(bootstrap, topic, ("segment.ms", "DELETE", None))
    entries = _describe(bootstrap, topic)
    retention = entries["retention.ms"]
    assert retention.value == "60000"
    assert retention.source == module.ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert [(s.name, s.value) for s in retention.synonyms.values()] == [
        ("retention.ms", "60000"),
        ("log.retention.ms", WEEK_MS),
    ]
    assert entries["segment.ms"].value == WEEK_MS

    # The legacy AlterConfigs replaces the whole set: retention.ms reverts.
    admin = _admin(bootstrap)
    resource = module.ConfigResource(
        module.ResourceType.TOPIC, topic, set_config={"retention.bytes": "1000000"}
    )
    with pytest.warns(DeprecationWarning):
        futures = admin.alter_configs([resource], request_timeout=10)
    futures[resource].result(timeout=15)
    entries = _describe(bootstrap, topic)
    assert entries["retention.ms"].value == WEEK_MS
    assert entries["retention.bytes"].value == "1000000"


def test_confluent_sees_kafkas_errors(module_broker: BrokerProcess) -> None:
    confluent_kafka = pytest.importorskip("confluent_kafka")
    bootstrap = module_broker.bootstrap
    topic = f"configs-bad-{uuid.uuid4().hex[:8]}"
    _create(bootstrap, topic)
    cases = [
        (topic, ("min.insync.replicas", "SET", "2"), confluent_kafka.KafkaError.INVALID_CONFIG),
        (topic, ("retention.mss", "SET", "2"), confluent_kafka.KafkaError.INVALID_CONFIG),
        (topic, ("retention.ms", "APPEND", "2"), confluent_kafka.KafkaError.INVALID_CONFIG),
        (topic, ("cleanup.policy", "SET", "compact"), confluent_kafka.KafkaError.INVALID_CONFIG),
        (
            "missing-topic",
            ("retention.ms", "SET", "1"),
            confluent_kafka.KafkaError.UNKNOWN_TOPIC_OR_PART,
        ),
    ]
    for name, change, code in cases:
        with pytest.raises(confluent_kafka.KafkaException) as raised:
            _incremental(bootstrap, name, change)
        assert raised.value.args[0].code() == code, (change, raised.value)
    assert _describe(bootstrap, topic)["retention.ms"].value == WEEK_MS


def test_kafka_python_alters_and_describes(module_broker: BrokerProcess) -> None:
    kafka = import_kafka_python()
    config_resource, resource_type = kafka.admin.ConfigResource, kafka.admin.ConfigResourceType
    bootstrap = module_broker.bootstrap
    topic = f"configs-kp-{uuid.uuid4().hex[:8]}"
    _create(bootstrap, topic)

    def resource(**configs: str) -> Any:
        return config_resource(resource_type.TOPIC, topic, configs=configs)

    admin = kafka.KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        # IncrementalAlterConfigs (its default here), then the legacy AlterConfigs.
        assert admin.alter_configs([resource(**{"retention.ms": "120000"})]) == {
            "topic": {topic: "OK"}
        }
        assert admin.alter_configs([resource(**{"segment.ms": "3600000"})], incremental=False) == {
            "topic": {topic: "OK"}
        }
        # kafka-python refuses read-only configs itself; sent anyway, trioring refuses.
        with pytest.raises(ValueError, match=r"flush\.ms"):
            admin.alter_configs([resource(**{"flush.ms": "1"})])
        refused = admin.alter_configs([resource(**{"flush.ms": "1"})], raise_on_unknown=False)
        assert "[Error 40]" in refused["topic"][topic] and "flush.ms" in refused["topic"][topic]
        modified = admin.describe_configs(
            [config_resource(resource_type.TOPIC, topic)], include_synonyms=True
        )
        everything = admin.describe_configs(
            [config_resource(resource_type.TOPIC, topic)], config_filter="all"
        )
    finally:
        admin.close()
    # kafka-python's legacy AlterConfigs sends the other modified configs too
    # (AlterConfigs replaces the whole set), so retention.ms stays.
    entries = modified["topic"][topic]
    assert {name: entry["value"] for name, entry in entries.items()} == {
        "retention.ms": "120000",
        "segment.ms": "3600000",
    }
    assert entries["segment.ms"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"
    assert [s["name"] for s in entries["segment.ms"]["synonyms"]] == ["segment.ms", "log.roll.ms"]
    assert len(everything["topic"][topic]) >= 30


def _describe_broker(bootstrap: str, node: str) -> dict[str, Any]:
    module = _admin_module()
    admin = _admin(bootstrap)
    resource = module.ConfigResource(module.ResourceType.BROKER, node)
    futures = admin.describe_configs([resource], request_timeout=10)
    entries: dict[str, Any] = futures[resource].result(timeout=15)
    return entries


def test_broker_configs_from_confluent_and_kafka_python(module_broker: BrokerProcess) -> None:
    module = _admin_module()
    kafka = import_kafka_python()
    bootstrap = module_broker.bootstrap
    entries = _describe_broker(bootstrap, "0")
    assert len(entries) >= 280
    assert entries["advertised.listeners"].value == f"PLAINTEXT://{bootstrap}"
    assert entries["log.dirs"].value == str(module_broker.data_dir.resolve())
    assert entries["log.retention.ms"].value == WEEK_MS
    assert entries["log.retention.ms"].source == module.ConfigSource.DEFAULT_CONFIG.value
    assert entries["ssl.key.password"].is_sensitive and entries["ssl.key.password"].value is None
    writable = {name for name, entry in entries.items() if not entry.is_read_only}
    assert writable == {
        "log.index.interval.bytes",
        "log.retention.bytes",
        "log.retention.ms",
        "log.roll.ms",
        "log.segment.bytes",
    }

    admin = kafka.KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        described = admin.describe_configs(
            [kafka.admin.ConfigResource(kafka.admin.ConfigResourceType.BROKER, "0")],
            config_filter="all",
        )
    finally:
        admin.close()
    configs = described["broker"]["0"]
    assert configs["node.id"]["value"] == "0"
    assert configs["num.partitions"]["config_source"] == "DEFAULT_CONFIG"


def test_kafka_python_alters_a_brokers_log_defaults(broker: BrokerProcess) -> None:
    kafka = import_kafka_python()
    resource_class, kinds = kafka.admin.ConfigResource, kafka.admin.ConfigResourceType
    admin = kafka.KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        answer = admin.alter_configs(
            [resource_class(kinds.BROKER, "0", configs={"log.retention.bytes": "123456"})]
        )
        assert answer == {"broker": {"0": "OK"}}
        # Static configs: kafka-python refuses them itself (read-only); sent anyway, trioring does.
        refused = admin.alter_configs(
            [resource_class(kinds.BROKER, "0", configs={"num.io.threads": "2"})],
            raise_on_unknown=False,
        )
        assert "[Error 42]" in refused["broker"]["0"]
        described = admin.describe_configs([resource_class(kinds.BROKER, "0")])
    finally:
        admin.close()
    modified = described["broker"]["0"]
    assert modified["log.retention.bytes"]["value"] == "123456"
    assert modified["log.retention.bytes"]["config_source"] == "DYNAMIC_BROKER_CONFIG"


def _alter_broker(bootstrap: str, node: str, name: str, op: str, value: str | None) -> None:
    module = _admin_module()
    admin = _admin(bootstrap)
    resource = module.ConfigResource(
        module.ResourceType.BROKER,
        node,
        incremental_configs=[
            module.ConfigEntry(
                name, value, incremental_operation=getattr(module.AlterConfigOpType, op)
            )
        ],
    )
    futures = admin.incremental_alter_configs([resource], request_timeout=10)
    futures[resource].result(timeout=15)


def _alter_cluster_default(port: int, name: str, value: str) -> None:
    """IncrementalAlterConfigs on the cluster default (broker resource ""), over the wire:
    neither Python client can name it (Kafka's Java Admin and kafka-configs.sh can)."""
    request_class = load_request_schema(ApiKey.INCREMENTAL_ALTER_CONFIGS, 1)
    module = sys.modules[request_class.__module__]
    request = request_class(
        resources=(
            module.AlterConfigsResource(
                resource_type=4,
                resource_name="",
                configs=(module.AlterableConfig(name=name, config_operation=0, value=value),),
            ),
        ),
        validate_only=False,
    )
    response = exchange(port, ApiKey.INCREMENTAL_ALTER_CONFIGS, 1, request)
    assert [r.error_code for r in response.responses] == [0], response


def test_broker_configs_other_than_the_topic_defaults_are_static(
    module_broker: BrokerProcess,
) -> None:
    confluent_kafka = pytest.importorskip("confluent_kafka")
    with pytest.raises(confluent_kafka.KafkaException) as raised:
        _alter_broker(module_broker.bootstrap, "0", "num.io.threads", "SET", "4")
    error = raised.value.args[0]
    assert error.code() == confluent_kafka.KafkaError.INVALID_REQUEST, error
    assert "static in trioring" in error.str()
    with pytest.raises(confluent_kafka.KafkaException) as raised:
        _alter_broker(module_broker.bootstrap, "0", "log.roll.ms", "APPEND", "4")
    assert raised.value.args[0].code() == confluent_kafka.KafkaError.INVALID_CONFIG


def test_a_change_survives_sigkill(broker: BrokerProcess) -> None:
    topic = f"configs-kill-{uuid.uuid4().hex[:8]}"
    _create(broker.bootstrap, topic)
    _incremental(broker.bootstrap, topic, ("retention.ms", "SET", "3000000"))
    _alter_cluster_default(broker.port, "log.segment.bytes", "2000000")
    broker.restart(kill=True)
    entries = _describe(broker.bootstrap, topic)
    assert entries["retention.ms"].value == "3000000"
    assert entries["segment.bytes"].value == "2000000"
    assert _describe_broker(broker.bootstrap, "0")["log.segment.bytes"].value == "2000000"


def test_retention_acts_on_a_change_in_the_owning_worker(tmp_path: Path) -> None:
    confluent_kafka = pytest.importorskip("confluent_kafka")
    module = _admin_module()
    config = tmp_path / "broker.toml"
    config.write_text("[broker]\nretention_check_interval_ms = 200\n")
    data_dir = tmp_path / "data"
    with BrokerProcess(data_dir, workers=2, extra_arguments=["--config", str(config)]) as broker:
        bootstrap = broker.bootstrap
        topic = f"configs-two-{uuid.uuid4().hex[:8]}"
        _create(bootstrap, topic, partitions=2)  # one partition on each worker
        _incremental(bootstrap, topic, ("segment.bytes", "SET", "1024"))
        producer = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
        for index in range(12):
            for partition in (0, 1):
                producer.produce(topic, value=bytes(500), key=b"%d" % index, partition=partition)
            producer.flush(10)  # one batch each: the segments roll every two batches
        assert producer.flush(10) == 0
        segments = {
            partition: len(list((data_dir / f"{topic}-{partition}").glob("*.log")))
            for partition in (0, 1)
        }
        assert min(segments.values()) >= 4, segments
        _incremental(bootstrap, topic, ("retention.bytes", "SET", "1500"))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            left = {
                partition: len(list((data_dir / f"{topic}-{partition}").glob("*.log")))
                for partition in (0, 1)
            }
            if all(left[p] < segments[p] for p in (0, 1)):
                break
            time.sleep(0.2)
        else:
            pytest.fail(
                f"retention did not act: {segments} -> {left}\n{broker_log(broker)[-2000:]}"
            )
        # Each worker describes itself, reached at its own address.
        worker = _describe_broker(bootstrap, "1")
        host, port = broker.addresses[1]
        assert worker["node.id"].value == "1"
        assert worker["advertised.listeners"].value == f"PLAINTEXT://{host}:{port}"
        assert worker["log.retention.check.interval.ms"].value == "200"
        # A cluster-wide default reaches both workers; a node's own only that node.
        _alter_cluster_default(broker.port, "log.roll.ms", "3600000")
        _alter_broker(bootstrap, "1", "log.roll.ms", "SET", "7200000")
        sources = module.ConfigSource
        rolls = {node: _describe_broker(bootstrap, node)["log.roll.ms"] for node in ("0", "1")}
        assert (rolls["0"].value, rolls["0"].source) == (
            "3600000",
            sources.DYNAMIC_DEFAULT_BROKER_CONFIG.value,
        )
        assert (rolls["1"].value, rolls["1"].source) == (
            "7200000",
            sources.DYNAMIC_BROKER_CONFIG.value,
        )
        assert _describe(bootstrap, topic)["segment.ms"].value in ("3600000", "7200000")
        consumer = confluent_kafka.Consumer(
            {"bootstrap.servers": bootstrap, "group.id": "configs-two"}
        )
        try:
            for partition in (0, 1):
                low, high = consumer.get_watermark_offsets(
                    confluent_kafka.TopicPartition(topic, partition), timeout=10
                )
                assert 0 < low < high == 12
        finally:
            consumer.close()

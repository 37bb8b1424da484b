"""Kafka 4.0's topic configs: names, types, defaults, broker synonyms, and what trioring does.

A table, not logic. DescribeConfigs lists every config a Kafka 4.0 broker
lists, so tools that read them (kafka-configs, UIs, Terraform providers)
find each name; the documentation of the ones trioring does not apply says
so plainly. The documentation strings are trioring's own.
"""

from __future__ import annotations

from typing import Final, NamedTuple

__all__ = [
    "BOOLEAN",
    "CLASS",
    "DOUBLE",
    "INT",
    "LIST",
    "LONG",
    "PASSWORD",
    "SHORT",
    "STRING",
    "TOPIC_CONFIGS",
    "KafkaConfig",
]

# Kafka's ConfigType (DescribeConfigs v3+).
BOOLEAN: Final = 1
STRING: Final = 2
INT: Final = 3
SHORT: Final = 4
LONG: Final = 5
DOUBLE: Final = 6
LIST: Final = 7
CLASS: Final = 8
PASSWORD: Final = 9

_NOT_USED = "trioring does not use this config: it is listed because Kafka 4.0 lists it."
_LONG_MAX = str(2**63 - 1)


class KafkaConfig(NamedTuple):
    name: str
    config_type: int
    #: Kafka 4.0's default as DescribeConfigs shows it (None: null).
    kafka_default: str | None
    #: Broker configs that set it for topics without their own value, most
    #: specific first (Kafka's order of synonyms).
    synonyms: tuple[str, ...]
    #: What it does in trioring (or that trioring does not use it).
    documentation: str


def _unused(
    name: str, config_type: int, default: str | None, synonyms: tuple[str, ...], what: str
) -> KafkaConfig:
    return KafkaConfig(name, config_type, default, synonyms, f"{what} {_NOT_USED}")


#: Every topic config of Kafka 4.0, by name.
TOPIC_CONFIGS: Final[dict[str, KafkaConfig]] = {
    config.name: config
    for config in (
        KafkaConfig(
            "cleanup.policy",
            LIST,
            "delete",
            ("log.cleanup.policy",),
            "How old segments are removed: 'delete' by retention. trioring does not compact "
            "user topics: 'compact' is refused.",
        ),
        _unused("compression.gzip.level", INT, "-1", ("compression.gzip.level",), "Gzip level."),
        _unused("compression.lz4.level", INT, "9", ("compression.lz4.level",), "LZ4 level."),
        KafkaConfig(
            "compression.type",
            STRING,
            "producer",
            ("compression.type",),
            "trioring stores batches as the producer compressed them ('producer'); "
            "recompression is not supported.",
        ),
        _unused("compression.zstd.level", INT, "3", ("compression.zstd.level",), "Zstd level."),
        _unused(
            "delete.retention.ms",
            LONG,
            "86400000",
            ("log.cleaner.delete.retention.ms",),
            "How long compaction keeps tombstones.",
        ),
        _unused(
            "file.delete.delay.ms",
            LONG,
            "60000",
            ("log.segment.delete.delay.ms",),
            "Delay before a deleted segment file goes; trioring removes it at once.",
        ),
        _unused(
            "flush.messages",
            LONG,
            _LONG_MAX,
            ("log.flush.interval.messages",),
            "Forced flush every N messages; trioring flushes acks=all writes before it "
            "answers and acks=1 writes every flush_interval_ms.",
        ),
        _unused(
            "flush.ms",
            LONG,
            _LONG_MAX,
            ("log.flush.interval.ms",),
            "Forced flush interval; trioring's is the broker-wide flush_interval_ms.",
        ),
        _unused(
            "follower.replication.throttled.replicas",
            LIST,
            "",
            (),
            "Replication throttling; trioring keeps one replica.",
        ),
        KafkaConfig(
            "index.interval.bytes",
            INT,
            "4096",
            ("log.index.interval.bytes",),
            "Bytes of records between sparse offset index entries; applies to new segments.",
        ),
        _unused(
            "leader.replication.throttled.replicas",
            LIST,
            "",
            (),
            "Replication throttling; trioring keeps one replica.",
        ),
        _unused(
            "local.retention.bytes",
            LONG,
            "-2",
            ("log.local.retention.bytes",),
            "Local retention with tiered storage, which trioring does not have.",
        ),
        _unused(
            "local.retention.ms",
            LONG,
            "-2",
            ("log.local.retention.ms",),
            "Local retention with tiered storage, which trioring does not have.",
        ),
        _unused(
            "max.compaction.lag.ms",
            LONG,
            _LONG_MAX,
            ("log.cleaner.max.compaction.lag.ms",),
            "Compaction lag.",
        ),
        KafkaConfig(
            "max.message.bytes",
            INT,
            "1048588",
            ("message.max.bytes",),
            "The largest record batch a producer may send: the broker's batch_bytes_max "
            "(message.max.bytes) for every topic; not settable per topic in trioring.",
        ),
        _unused(
            "message.timestamp.after.max.ms",
            LONG,
            "3600000",
            ("log.message.timestamp.after.max.ms",),
            "How far in the future a record timestamp may be.",
        ),
        _unused(
            "message.timestamp.before.max.ms",
            LONG,
            _LONG_MAX,
            ("log.message.timestamp.before.max.ms",),
            "How far in the past a record timestamp may be.",
        ),
        KafkaConfig(
            "message.timestamp.type",
            STRING,
            "CreateTime",
            ("log.message.timestamp.type",),
            "Records keep the producer's timestamp (CreateTime); LogAppendTime is not supported.",
        ),
        _unused(
            "min.cleanable.dirty.ratio",
            DOUBLE,
            "0.5",
            ("log.cleaner.min.cleanable.ratio",),
            "When compaction runs.",
        ),
        _unused(
            "min.compaction.lag.ms",
            LONG,
            "0",
            ("log.cleaner.min.compaction.lag.ms",),
            "Compaction lag.",
        ),
        _unused(
            "min.insync.replicas",
            INT,
            "1",
            ("min.insync.replicas",),
            "Replicas an acks=all write needs; trioring keeps one replica, made durable "
            "before acks=all is answered.",
        ),
        _unused(
            "preallocate", BOOLEAN, "false", ("log.preallocate",), "Preallocating segment files."
        ),
        _unused(
            "remote.log.copy.disable",
            BOOLEAN,
            "false",
            (),
            "Tiered storage, which trioring does not have.",
        ),
        _unused(
            "remote.log.delete.on.disable",
            BOOLEAN,
            "false",
            (),
            "Tiered storage, which trioring does not have.",
        ),
        _unused(
            "remote.storage.enable",
            BOOLEAN,
            "false",
            (),
            "Tiered storage, which trioring does not have.",
        ),
        KafkaConfig(
            "retention.bytes",
            LONG,
            "-1",
            ("log.retention.bytes",),
            "The size a partition may grow to before its oldest segments are deleted; "
            "-1: no limit. Applied at the next retention pass.",
        ),
        KafkaConfig(
            "retention.ms",
            LONG,
            "604800000",
            ("log.retention.ms", "log.retention.minutes", "log.retention.hours"),
            "How long a segment is kept after its newest record, in ms; -1: forever. "
            "Applied at the next retention pass.",
        ),
        KafkaConfig(
            "segment.bytes",
            INT,
            "1073741824",
            ("log.segment.bytes",),
            "The size at which a partition rolls to a new segment file; applies from the "
            "next roll.",
        ),
        _unused(
            "segment.index.bytes",
            INT,
            "10485760",
            ("log.index.size.max.bytes",),
            "Preallocated index size; trioring's sparse indexes grow as needed.",
        ),
        _unused(
            "segment.jitter.ms",
            LONG,
            "0",
            ("log.roll.jitter.ms", "log.roll.jitter.hours"),
            "Random jitter of time-based rolls.",
        ),
        KafkaConfig(
            "segment.ms",
            LONG,
            "604800000",
            ("log.roll.ms", "log.roll.hours"),
            "The age at which a partition rolls to a new segment, in ms.",
        ),
        _unused(
            "unclean.leader.election.enable",
            BOOLEAN,
            "false",
            ("unclean.leader.election.enable",),
            "Leader election from out-of-sync replicas; trioring keeps one replica.",
        ),
    )
}

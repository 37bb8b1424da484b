"""Which APIs and versions trioring speaks, and the kio schema of each."""

from __future__ import annotations

import enum
import functools
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final, cast

from kio.index import load_request_schema, load_response_schema
from kio.static.protocol import RequestPayload, ResponsePayload

from trioring.protocol.kafka import _describe_configs_v0


class ApiKey(enum.IntEnum):
    """Kafka API keys trioring answers (numbering is Kafka's)."""

    PRODUCE = 0
    FETCH = 1
    LIST_OFFSETS = 2
    METADATA = 3
    OFFSET_COMMIT = 8
    OFFSET_FETCH = 9
    FIND_COORDINATOR = 10
    JOIN_GROUP = 11
    HEARTBEAT = 12
    LEAVE_GROUP = 13
    SYNC_GROUP = 14
    DESCRIBE_GROUPS = 15
    LIST_GROUPS = 16
    API_VERSIONS = 18
    CREATE_TOPICS = 19
    DELETE_TOPICS = 20
    DELETE_RECORDS = 21
    INIT_PRODUCER_ID = 22
    DESCRIBE_CONFIGS = 32
    ALTER_CONFIGS = 33
    DESCRIBE_LOG_DIRS = 35
    CREATE_PARTITIONS = 37
    DELETE_GROUPS = 42
    ELECT_LEADERS = 43
    INCREMENTAL_ALTER_CONFIGS = 44
    ALTER_PARTITION_REASSIGNMENTS = 45
    LIST_PARTITION_REASSIGNMENTS = 46
    OFFSET_DELETE = 47
    DESCRIBE_QUORUM = 55
    DESCRIBE_CLUSTER = 60
    DESCRIBE_PRODUCERS = 61
    CONSUMER_GROUP_HEARTBEAT = 68
    CONSUMER_GROUP_DESCRIBE = 69
    DESCRIBE_TOPIC_PARTITIONS = 75


#: Inclusive version range trioring decodes and answers, per API key: Kafka
#: 4.0's upper bounds (flexible versions included, KIP-482), and lower bounds
#: kept where older clients need them. Old librdkafka enables the v2 record
#: format only when Produce 3 and Fetch 4 are inside the ranges, zstd only with
#: Produce 7 / Fetch 10 (../docs/protocol.md lists the ranges with reasons).
SUPPORTED_VERSIONS: Final[Mapping[int, tuple[int, int]]] = MappingProxyType(
    {
        ApiKey.PRODUCE: (3, 12),
        ApiKey.FETCH: (4, 17),
        ApiKey.LIST_OFFSETS: (1, 10),
        ApiKey.METADATA: (0, 13),
        ApiKey.OFFSET_COMMIT: (2, 9),
        ApiKey.OFFSET_FETCH: (1, 9),
        ApiKey.FIND_COORDINATOR: (0, 6),
        ApiKey.JOIN_GROUP: (0, 9),
        ApiKey.HEARTBEAT: (0, 4),
        ApiKey.LEAVE_GROUP: (0, 5),
        ApiKey.SYNC_GROUP: (0, 5),
        ApiKey.DESCRIBE_GROUPS: (0, 6),
        ApiKey.LIST_GROUPS: (0, 5),
        ApiKey.API_VERSIONS: (0, 4),
        ApiKey.CREATE_TOPICS: (2, 7),
        ApiKey.DELETE_TOPICS: (1, 6),
        ApiKey.INIT_PRODUCER_ID: (0, 5),
        ApiKey.DESCRIBE_CONFIGS: (0, 4),
        ApiKey.ALTER_CONFIGS: (0, 2),
        ApiKey.INCREMENTAL_ALTER_CONFIGS: (0, 1),
        ApiKey.CREATE_PARTITIONS: (0, 3),
        ApiKey.DESCRIBE_CLUSTER: (0, 2),
        ApiKey.DELETE_RECORDS: (0, 2),
        ApiKey.DELETE_GROUPS: (0, 2),
        ApiKey.OFFSET_DELETE: (0, 0),
        ApiKey.DESCRIBE_LOG_DIRS: (1, 4),
        ApiKey.DESCRIBE_TOPIC_PARTITIONS: (0, 0),
        ApiKey.ELECT_LEADERS: (0, 2),
        ApiKey.ALTER_PARTITION_REASSIGNMENTS: (0, 0),
        ApiKey.LIST_PARTITION_REASSIGNMENTS: (0, 0),
        ApiKey.DESCRIBE_QUORUM: (0, 2),
        ApiKey.DESCRIBE_PRODUCERS: (0, 0),
        ApiKey.CONSUMER_GROUP_HEARTBEAT: (0, 1),
        ApiKey.CONSUMER_GROUP_DESCRIBE: (0, 1),
    }
)

#: What ApiVersions advertises: the supported ranges, except that Produce
#: starts at v0 although v0-v2 are refused (the connection closes), exactly as
#: Kafka 4.0 does (KAFKA-18659): librdkafka before 2.11.1 (Debian's kcat)
#: compresses with gzip, snappy or lz4 only when Produce v0 is in the range.
#: No client picks v0-v2 while v3 or later is on offer.
ADVERTISED_VERSIONS: Final[Mapping[int, tuple[int, int]]] = MappingProxyType(
    {**SUPPORTED_VERSIONS, ApiKey.PRODUCE: (0, SUPPORTED_VERSIONS[ApiKey.PRODUCE][1])}
)


def api_name(api_key: int) -> str:
    """``Produce``-style name for messages; unknown keys read as ``API key N``."""
    try:
        return ApiKey(api_key).name.title().replace("_", "")
    except ValueError:
        return f"API key {api_key}"


def is_supported(api_key: int, api_version: int) -> bool:
    versions = SUPPORTED_VERSIONS.get(api_key)
    return versions is not None and versions[0] <= api_version <= versions[1]


def _check_supported(api_key: int, api_version: int) -> None:
    if not is_supported(api_key, api_version):
        raise ValueError(f"{api_name(api_key)} v{api_version} is not a supported version")


# Schemas load lazily: importing all ~110 kio modules up front costs ~0.2 s of
# start-up, and a broker meets only the few versions its clients pick.
@functools.cache
def request_schema(api_key: int, api_version: int) -> type[RequestPayload]:
    """The kio request class of a supported (api_key, api_version); ValueError otherwise."""
    _check_supported(api_key, api_version)
    if api_key == ApiKey.DESCRIBE_CONFIGS and api_version == 0:
        return cast(type[RequestPayload], _describe_configs_v0.DescribeConfigsRequest)
    return load_request_schema(api_key, api_version)


@functools.cache
def response_schema(api_key: int, api_version: int) -> type[ResponsePayload]:
    """The kio response class of a supported (api_key, api_version); ValueError otherwise."""
    _check_supported(api_key, api_version)
    if api_key == ApiKey.DESCRIBE_CONFIGS and api_version == 0:
        return cast(type[ResponsePayload], _describe_configs_v0.DescribeConfigsResponse)
    return load_response_schema(api_key, api_version)


def is_flexible(api_key: int, api_version: int) -> bool:
    """Whether a supported version uses compact encodings and tagged fields (KIP-482)."""
    return request_schema(api_key, api_version).__flexible__

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
    INIT_PRODUCER_ID = 22
    DESCRIBE_CONFIGS = 32
    CREATE_PARTITIONS = 37


#: Inclusive version range advertised in ApiVersions, per API key. Lower bounds
#: matter: old librdkafka enables the v2 record format only when Produce 3 and
#: Fetch 4 are inside the ranges, zstd only with Produce 7 / Fetch 10.
SUPPORTED_VERSIONS: Final[Mapping[int, tuple[int, int]]] = MappingProxyType(
    {
        ApiKey.PRODUCE: (3, 7),
        ApiKey.FETCH: (4, 11),
        ApiKey.LIST_OFFSETS: (1, 2),
        ApiKey.METADATA: (0, 4),
        ApiKey.OFFSET_COMMIT: (2, 3),
        ApiKey.OFFSET_FETCH: (1, 3),
        ApiKey.FIND_COORDINATOR: (0, 1),
        ApiKey.JOIN_GROUP: (0, 5),
        ApiKey.HEARTBEAT: (0, 1),
        ApiKey.LEAVE_GROUP: (0, 1),
        ApiKey.SYNC_GROUP: (0, 3),
        ApiKey.DESCRIBE_GROUPS: (0, 1),
        ApiKey.LIST_GROUPS: (0, 1),
        ApiKey.API_VERSIONS: (0, 3),
        ApiKey.CREATE_TOPICS: (2, 4),
        ApiKey.DELETE_TOPICS: (1, 2),
        ApiKey.INIT_PRODUCER_ID: (0, 1),
        ApiKey.DESCRIBE_CONFIGS: (0, 1),
        ApiKey.CREATE_PARTITIONS: (0, 3),
    }
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

"""trioring: a Kafka-compatible, durable, partitioned log broker built on Trio.

Public names live here; everything else may change between versions.
"""

# First, before kio is imported: see its docstring (start-up time of our own processes).
import trioring._startup  # noqa: F401
from trioring._broker import Broker, FetchResult, ProduceResult, open_broker
from trioring.cluster.model import TopicInfo
from trioring.config import BrokerConfig
from trioring.core.offsets import CommittedOffset
from trioring.errors import (
    BrokerClosedError,
    ConfigurationError,
    CorruptRecordError,
    DataDirectoryInUseError,
    InvalidArgumentError,
    InvalidConfigError,
    InvalidPartitionsError,
    InvalidRecordError,
    InvalidRequiredAcksError,
    InvalidTopicError,
    OffsetOutOfRangeError,
    ProtocolError,
    RecordTooLargeError,
    StorageError,
    TopicExistsError,
    TrioringError,
    UnknownTopicOrPartitionError,
    UnsupportedCompressionError,
)
from trioring.handlers import Handler, HandlerContext, Handlers, Middleware
from trioring.protocol.compression import Compression
from trioring.protocol.records import Record
from trioring.storage.log import LogConfig
from trioring.supervisor import Supervisor, serve_cluster

__version__ = "0.1.0"

__all__ = [
    "Broker",
    "BrokerClosedError",
    "BrokerConfig",
    "CommittedOffset",
    "Compression",
    "ConfigurationError",
    "CorruptRecordError",
    "DataDirectoryInUseError",
    "FetchResult",
    "Handler",
    "HandlerContext",
    "Handlers",
    "InvalidArgumentError",
    "InvalidConfigError",
    "InvalidPartitionsError",
    "InvalidRecordError",
    "InvalidRequiredAcksError",
    "InvalidTopicError",
    "LogConfig",
    "Middleware",
    "OffsetOutOfRangeError",
    "ProduceResult",
    "ProtocolError",
    "Record",
    "RecordTooLargeError",
    "StorageError",
    "Supervisor",
    "TopicExistsError",
    "TopicInfo",
    "TrioringError",
    "UnknownTopicOrPartitionError",
    "UnsupportedCompressionError",
    "open_broker",
    "serve_cluster",
]

"""Exceptions users can see.

Every operating error a caller can cause or meet is a subclass of
:class:`TrioringError` whose message says what happened and what to do.
Each error that has a Kafka counterpart carries its Kafka error code, so the
network server maps exceptions to wire error codes in one place.
"""

from __future__ import annotations

from kio.schema.errors import ErrorCode


class TrioringError(Exception):
    """Base class of every error trioring raises on purpose."""

    #: Kafka protocol error code this error maps to (-1 = UNKNOWN_SERVER_ERROR).
    kafka_error_code: int = ErrorCode.unknown_server_error


class ProtocolError(TrioringError):
    """Bytes that do not decode as the Kafka protocol or record format say.

    The protocol layer raises only this for malformed input: never IndexError,
    struct.error or UnicodeDecodeError.
    """

    kafka_error_code = ErrorCode.corrupt_message


class CorruptRecordError(ProtocolError):
    """A record batch whose CRC32C or framing is wrong."""

    kafka_error_code = ErrorCode.corrupt_message


class UnsupportedCompressionError(ProtocolError):
    """A batch names a compression codec trioring cannot decode."""

    kafka_error_code = ErrorCode.unsupported_compression_type


class InvalidArgumentError(TrioringError, ValueError):
    """A caller passed a value outside what the operation accepts."""

    kafka_error_code = ErrorCode.invalid_request


class InvalidRequiredAcksError(InvalidArgumentError):
    kafka_error_code = ErrorCode.invalid_required_acks


class InvalidTopicError(InvalidArgumentError):
    kafka_error_code = ErrorCode.invalid_topic_exception


class InvalidPartitionsError(InvalidArgumentError):
    kafka_error_code = ErrorCode.invalid_partitions


class RecordTooLargeError(InvalidArgumentError):
    kafka_error_code = ErrorCode.message_too_large


class UnknownTopicOrPartitionError(TrioringError, LookupError):
    kafka_error_code = ErrorCode.unknown_topic_or_partition


class TopicExistsError(TrioringError):
    kafka_error_code = ErrorCode.topic_already_exists


class OffsetOutOfRangeError(TrioringError):
    kafka_error_code = ErrorCode.offset_out_of_range

    def __init__(self, message: str, *, log_start_offset: int, high_watermark: int) -> None:
        super().__init__(message)
        self.log_start_offset = log_start_offset
        self.high_watermark = high_watermark


class StorageError(TrioringError):
    """The disk refused an operation (full disk, I/O error, permissions).

    The partition stays consistent: nothing that failed to write is
    acknowledged, and the log is truncated back to its last whole batch.
    """

    kafka_error_code = ErrorCode.kafka_storage_error


class CorruptLogError(TrioringError):
    """Stored data that fails its checks when read back (CRC32C, framing, offsets).

    The file was damaged after it was written (a bad disk, a bit flip, an
    outside write); the batches before the damage stay readable. Kafka's
    broker answers CORRUPT_MESSAGE for such data, and its consumer reports
    it to the application instead of retrying.
    """

    kafka_error_code = ErrorCode.corrupt_message

    def __init__(self, message: str, *, path: str, position: int) -> None:
        super().__init__(message)
        #: The damaged file and the byte position of the first damaged batch.
        self.path = path
        self.position = position


class NotLeaderOrFollowerError(TrioringError):
    """The partition is served by another worker (node): clients refresh metadata and go there."""

    kafka_error_code = ErrorCode.not_leader_or_follower


class BrokerClosedError(TrioringError):
    """The broker (or partition) was closed while the operation ran."""

    kafka_error_code = ErrorCode.not_leader_or_follower  # clients retry elsewhere


__all__ = [
    "BrokerClosedError",
    "CorruptLogError",
    "CorruptRecordError",
    "InvalidArgumentError",
    "InvalidPartitionsError",
    "InvalidRequiredAcksError",
    "InvalidTopicError",
    "NotLeaderOrFollowerError",
    "OffsetOutOfRangeError",
    "ProtocolError",
    "RecordTooLargeError",
    "StorageError",
    "TopicExistsError",
    "TrioringError",
    "UnknownTopicOrPartitionError",
    "UnsupportedCompressionError",
]


class KafkaError(TrioringError):
    """A refusal that has no class of its own: the Kafka error code says why."""

    def __init__(self, message: str, kafka_error_code: int) -> None:
        super().__init__(message)
        self.kafka_error_code = kafka_error_code


class GroupCoordinatorError(KafkaError):
    """The group coordinator refused a request (the code says why: Kafka's codes)."""


class InvalidRecordError(InvalidArgumentError):
    """A batch that is well-formed but not acceptable (e.g. transactional, control)."""

    kafka_error_code = ErrorCode.invalid_record


class InvalidConfigError(InvalidArgumentError):
    """A topic or broker config name or value that trioring does not accept."""

    kafka_error_code = ErrorCode.invalid_config


class InvalidGroupIdError(InvalidArgumentError):
    """A consumer group id Kafka does not accept (empty, or too long)."""

    kafka_error_code = ErrorCode.invalid_group_id


class ReplicationFactorError(InvalidArgumentError):
    """A replication factor other than 1: trioring keeps one replica per partition."""

    kafka_error_code = ErrorCode.invalid_replication_factor


class ReplicaAssignmentError(InvalidArgumentError):
    """A manual replica assignment trioring cannot follow."""

    kafka_error_code = ErrorCode.invalid_replica_assignment


class DataDirectoryInUseError(TrioringError):
    """Another process holds the data directory's lock: two brokers must never share one."""


class ConfigurationError(TrioringError):
    """An operator's mistake in the command line or the configuration file."""


__all__ += [
    "ConfigurationError",
    "DataDirectoryInUseError",
    "GroupCoordinatorError",
    "InvalidConfigError",
    "InvalidGroupIdError",
    "InvalidRecordError",
    "KafkaError",
    "ReplicaAssignmentError",
    "ReplicationFactorError",
]


class ConfigsChangedError(TrioringError):
    """Configs changed between reading them and writing an incremental change based on
    them (another IncrementalAlterConfigs won the race): the handler reads and tries again."""

    kafka_error_code = ErrorCode.request_timed_out


__all__ += ["ConfigsChangedError"]

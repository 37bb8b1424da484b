"""Exceptions users can see.

Every operating error a caller can cause or meet is a subclass of
:class:`TrioringError` whose message says what happened and what to do.
Each error that has a Kafka counterpart carries its Kafka error code, so the
network server maps exceptions to wire error codes in one place.
"""

from __future__ import annotations


class TrioringError(Exception):
    """Base class of every error trioring raises on purpose."""

    #: Kafka protocol error code this error maps to (-1 = UNKNOWN_SERVER_ERROR).
    kafka_error_code: int = -1


class ProtocolError(TrioringError):
    """Bytes that do not decode as the Kafka protocol or record format say.

    The protocol layer raises only this for malformed input: never IndexError,
    struct.error or UnicodeDecodeError.
    """

    kafka_error_code = 2  # CORRUPT_MESSAGE


class CorruptRecordError(ProtocolError):
    """A record batch whose CRC32C or framing is wrong."""

    kafka_error_code = 2  # CORRUPT_MESSAGE


class UnsupportedCompressionError(ProtocolError):
    """A batch names a compression codec trioring cannot decode."""

    kafka_error_code = 76  # UNSUPPORTED_COMPRESSION_TYPE


class InvalidArgumentError(TrioringError, ValueError):
    """A caller passed a value outside what the operation accepts."""

    kafka_error_code = 42  # INVALID_REQUEST


class InvalidRequiredAcksError(InvalidArgumentError):
    kafka_error_code = 21  # INVALID_REQUIRED_ACKS


class InvalidTopicError(InvalidArgumentError):
    kafka_error_code = 17  # INVALID_TOPIC_EXCEPTION


class InvalidPartitionsError(InvalidArgumentError):
    kafka_error_code = 37  # INVALID_PARTITIONS


class RecordTooLargeError(InvalidArgumentError):
    kafka_error_code = 10  # MESSAGE_TOO_LARGE


class UnknownTopicOrPartitionError(TrioringError, LookupError):
    kafka_error_code = 3  # UNKNOWN_TOPIC_OR_PARTITION


class TopicExistsError(TrioringError):
    kafka_error_code = 36  # TOPIC_ALREADY_EXISTS


class OffsetOutOfRangeError(TrioringError):
    kafka_error_code = 1  # OFFSET_OUT_OF_RANGE

    def __init__(self, message: str, *, log_start_offset: int, high_watermark: int) -> None:
        super().__init__(message)
        self.log_start_offset = log_start_offset
        self.high_watermark = high_watermark


class StorageError(TrioringError):
    """The disk refused an operation (full disk, I/O error, permissions).

    The partition stays consistent: nothing that failed to write is
    acknowledged, and the log is truncated back to its last whole batch.
    """

    kafka_error_code = 56  # KAFKA_STORAGE_ERROR


class BrokerClosedError(TrioringError):
    """The broker (or partition) was closed while the operation ran."""

    kafka_error_code = 6  # NOT_LEADER_OR_FOLLOWER: clients retry elsewhere


__all__ = [
    "BrokerClosedError",
    "CorruptRecordError",
    "InvalidArgumentError",
    "InvalidPartitionsError",
    "InvalidRequiredAcksError",
    "InvalidTopicError",
    "OffsetOutOfRangeError",
    "ProtocolError",
    "RecordTooLargeError",
    "StorageError",
    "TopicExistsError",
    "TrioringError",
    "UnknownTopicOrPartitionError",
    "UnsupportedCompressionError",
]


class GroupCoordinatorError(TrioringError):
    """The group coordinator refused a request (the code says why: Kafka's codes)."""

    def __init__(self, message: str, kafka_error_code: int) -> None:
        super().__init__(message)
        self.kafka_error_code = kafka_error_code


class InvalidRecordError(InvalidArgumentError):
    """A batch that is well-formed but not acceptable (e.g. transactional, control)."""

    kafka_error_code = 87  # INVALID_RECORD


__all__ += ["GroupCoordinatorError", "InvalidRecordError"]

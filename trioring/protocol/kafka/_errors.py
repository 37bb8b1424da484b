"""Errors of the Kafka codec; all are ProtocolError so callers catch one type."""

from __future__ import annotations

from kio.schema.errors import ErrorCode

from trioring.errors import ProtocolError


class UnsupportedVersionError(ProtocolError):
    """A request names an API key or version outside :data:`SUPPORTED_VERSIONS`.

    For ApiVersions the server answers with a v0 body carrying this code and
    its ranges (clients then retry with a version we speak); for any other
    API Kafka closes the connection.
    """

    kafka_error_code = ErrorCode.unsupported_version

    def __init__(self, message: str, *, api_key: int, api_version: int) -> None:
        super().__init__(message)
        self.api_key = api_key
        self.api_version = api_version

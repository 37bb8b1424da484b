"""Building kio responses for any version: :mod:`trioring.protocol.kafka._build`,
shared with the client, which builds requests the same way."""

from trioring.protocol.kafka._build import (
    NO_THROTTLE,
    OPERATIONS_NOT_REQUESTED,
    ZERO_UUID,
    build,
    sibling,
)

__all__ = ["NO_THROTTLE", "OPERATIONS_NOT_REQUESTED", "ZERO_UUID", "build", "sibling"]

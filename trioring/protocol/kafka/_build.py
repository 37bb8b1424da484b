"""Building kio messages for whichever version is spoken.

Kafka versions add and drop fields; kio has one dataclass per version. We
describe a message once, with every field any version has, and keep the
ones the chosen version's class declares: the server builds responses so,
the client requests.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import sys
import uuid
from typing import Any

from kio.schema.errors import ErrorCode
from kio.static.primitive import i32Timedelta

NO_THROTTLE = i32Timedelta.parse(datetime.timedelta(0))
#: The topic id of no topic (kio reads it from the wire as None).
ZERO_UUID = uuid.UUID(int=0)
#: An authorized-operations field (KIP-430) the client did not ask for.
OPERATIONS_NOT_REQUESTED = -(2**31)


@functools.cache
def _field_names(cls: type) -> frozenset[str]:
    return frozenset(field.name for field in dataclasses.fields(cls))


def sibling(response_class: type, name: str) -> type:
    """The nested class ``name`` of the same schema version as ``response_class``."""
    cls: type = getattr(sys.modules[response_class.__module__], name)
    return cls


def build(cls: type, **fields: Any) -> Any:
    """Instantiate ``cls`` with the fields it declares, converting error codes and times."""
    names = _field_names(cls)
    kept: dict[str, Any] = {}
    for name, value in fields.items():
        if name not in names:
            continue
        if name == "error_code" and isinstance(value, int):
            kept[name] = ErrorCode(value)
        elif name == "throttle_time" and value is None:
            kept[name] = NO_THROTTLE
        else:
            kept[name] = value
    if "throttle_time" in names and "throttle_time" not in kept:
        kept["throttle_time"] = NO_THROTTLE
    return cls(**kept)

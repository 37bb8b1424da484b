"""What every handler receives besides its request, and handler composition."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import attrs

from trioring.core.shard import Shard

RequestT = TypeVar("RequestT")
ResponseT = TypeVar("ResponseT")


@attrs.frozen
class HandlerContext:
    shard: Shard
    #: The Kafka client id, or "embedded" for in-process calls.
    client_id: str = "embedded"


Handler = Callable[[HandlerContext, Any], Awaitable[Any]]
"""``async def handler(ctx, request) -> response``."""

Middleware = Callable[[Handler], Handler]
"""A function from handler to handler: auth, quotas, metrics, user hooks."""


def compose(handler: Handler, *middleware: Middleware) -> Handler:
    """Wrap ``handler`` so the first middleware runs outermost."""
    for wrap in reversed(middleware):
        handler = wrap(handler)
    return handler

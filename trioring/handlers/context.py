"""What every handler receives besides its request, and handler composition."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import attrs
import trio

from trioring.core.shard import Shard

RequestT = TypeVar("RequestT")
ResponseT = TypeVar("ResponseT")


@attrs.frozen
class HandlerContext:
    shard: Shard
    #: The Kafka client id, or "embedded" for in-process calls.
    client_id: str = "embedded"
    #: Called (at most once) by a handler when the rest of its work can no
    #: longer affect the order of later requests: produce calls it after its
    #: append, before it waits for the fdatasync. The Kafka server then
    #: starts the connection's next request (appends stay in request order,
    #: their fdatasyncs overlap). None when nobody waits on it.
    order_released: Callable[[], None] | None = None
    #: Set when the server stops: long-polling requests (Fetch) answer at
    #: once with what they have instead of waiting out their max_wait.
    stopping: trio.Event | None = None


Handler = Callable[[HandlerContext, Any], Awaitable[Any]]
"""``async def handler(ctx, request) -> response``."""

Middleware = Callable[[Handler], Handler]
"""A function from handler to handler: auth, quotas, metrics, user hooks."""


def compose(handler: Handler, *middleware: Middleware) -> Handler:
    """Wrap ``handler`` so the first middleware runs outermost."""
    for wrap in reversed(middleware):
        handler = wrap(handler)
    return handler

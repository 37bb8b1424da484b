"""What every handler receives besides its request, and handler composition."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, TypeAlias, TypeVar

import attrs
import trio

from trioring.cluster.view import ClusterView
from trioring.config import ServerConfig
from trioring.core.shard import Shard
from trioring.storage.slices import LogSlice

RequestT = TypeVar("RequestT")
ResponseT = TypeVar("ResponseT")


@attrs.frozen
class HandlerContext:
    #: This worker's partitions, committed offsets and groups.
    shard: Shard
    #: The cluster as this worker sees it; topic changes go through it.
    cluster: ClusterView
    #: The Kafka client id, or "embedded" for the embedded API's calls.
    client_id: str = "embedded"
    #: The client's address ("" for the embedded API's calls, "in-process" for
    #: the client's in-process transport).
    client_host: str = ""
    #: Called (at most once) by a handler when the rest of its work can no
    #: longer affect the order of later requests: produce calls it after its
    #: append, before it waits for the fdatasync. The Kafka server then
    #: starts the connection's next request (appends stay in request order,
    #: their fdatasyncs overlap). None when nobody waits on it.
    order_released: Callable[[], None] | None = None
    #: Set when the server stops: long-polling requests (Fetch, a JoinGroup
    #: waiting for a rebalance) answer at once instead of waiting on.
    stopping: trio.Event | None = None
    #: Whether Metadata may create the topics it names (auto.create.topics.enable).
    auto_create_topics: bool = True
    #: The Kafka listener's settings, its port the one bound (None in-process):
    #: the broker configs DescribeConfigs reports.
    server: ServerConfig | None = None
    #: Closes the client's connection instead of answering (fault injection,
    #: trioring.testing): the request running is cancelled, those read after
    #: it are never answered, as when a broker's connection breaks. None when
    #: the call has no connection (the embedded API's calls).
    drop_connection: Callable[[], None] | None = None
    #: Set by a listener that sends file ranges itself (zero-copy Fetch):
    #: Fetch then answers large records as LogSlices and hands each to this
    #: first; the listener releases them once sent, or when the connection
    #: ends. None: records are always bytes (the embedded API, the copy path).
    hold_slice: Callable[[LogSlice], None] | None = None


Handler: TypeAlias = Callable[[HandlerContext, RequestT], Awaitable[ResponseT]]
"""``async def handler(ctx, request) -> response``."""


class Middleware(Protocol):
    """A function from handler to handler: auth, quotas, metrics, routing, user hooks.

    It must keep the handler's request and response types (it may check,
    count, delay or refuse, and it returns what the handler returns).
    """

    def __call__(
        self, handler: Handler[RequestT, ResponseT], /
    ) -> Handler[RequestT, ResponseT]: ...


def compose(
    handler: Handler[RequestT, ResponseT], *middleware: Middleware
) -> Handler[RequestT, ResponseT]:
    """Wrap ``handler`` so the first middleware runs outermost."""
    for wrap in reversed(middleware):
        handler = wrap(handler)
    return handler

"""Handlers: Kafka semantics as composable async functions.

``async def handler(ctx, request) -> response``. The embedded Broker and the
network server call the same handlers; middleware wraps them all.
"""

from __future__ import annotations

import attrs

from trioring.handlers.admin import create_topic
from trioring.handlers.context import Handler, HandlerContext, Middleware, compose
from trioring.handlers.fetch import fetch
from trioring.handlers.offsets import commit_offsets, fetch_offsets, list_offsets
from trioring.handlers.produce import produce, validate_batches


@attrs.frozen
class Handlers:
    """The handler for each operation; ``wrap`` applies middleware to all of them."""

    produce: Handler = produce
    fetch: Handler = fetch
    list_offsets: Handler = list_offsets
    commit_offsets: Handler = commit_offsets
    fetch_offsets: Handler = fetch_offsets
    create_topic: Handler = create_topic

    def wrap(self, *middleware: Middleware) -> Handlers:
        return Handlers(
            **{
                field.name: compose(getattr(self, field.name), *middleware)
                for field in attrs.fields(Handlers)
            }
        )


__all__ = [
    "Handler",
    "HandlerContext",
    "Handlers",
    "Middleware",
    "commit_offsets",
    "compose",
    "create_topic",
    "fetch",
    "fetch_offsets",
    "list_offsets",
    "produce",
    "validate_batches",
]

"""Give the body of our context managers its own exceptions back, unwrapped.

A context manager that holds a nursery sees the exception of its ``async
with`` body pass through that nursery, which (with Trio's strict exception
groups) wraps it in an ExceptionGroup. Then ``except TopicExistsError``
around ``async with trioring.open_broker(...)`` never matches. Trio's
guidance for nurseries inside library context managers is to hand the body's
exception back as it was raised when nothing else went wrong; that is what
:func:`body_exception_unwrapped` does. If a background task failed too, the
group is raised as it is, so no error is lost.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import trio

__all__ = ["BodyError", "body_exception_unwrapped", "leaf_exceptions"]


def leaf_exceptions(error: BaseException) -> Iterator[BaseException]:
    """The exceptions inside ``error``, through any nesting of exception groups."""
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            yield from leaf_exceptions(inner)
    else:
        yield error


class BodyError:
    """Records the exception the body of a context manager raised (see module docstring)."""

    __slots__ = ("error",)

    def __init__(self) -> None:
        self.error: BaseException | None = None


@asynccontextmanager
async def body_exception_unwrapped(body: BodyError) -> AsyncIterator[None]:
    """Around the nurseries of a context manager: re-raise the body's error bare.

    Use it as the outermost layer, and record the body's exception in
    ``body`` where the context manager yields::

        body = BodyError()
        async with body_exception_unwrapped(body), trio.open_nursery() as nursery:
            try:
                yield thing
            except BaseException as error:
                body.error = error
                raise

    Cancelled exceptions that came with the body's error (the nursery
    cancelling its tasks because of it) do not count as other errors.
    """
    try:
        yield
    except BaseExceptionGroup as group:
        error = body.error
        if error is None:
            raise
        others = [
            leaf
            for leaf in leaf_exceptions(group)
            if leaf is not error and not isinstance(leaf, trio.Cancelled)
        ]
        if others or not any(leaf is error for leaf in leaf_exceptions(group)):
            raise
        # Raised from inside this except block, Python would chain the group
        # as __context__; the body's error keeps its own context instead.
        context = error.__context__
        try:
            raise error
        finally:
            error.__context__ = context

"""EmbeddedBroker: an in-process broker for Trio tests, with faults and a Kafka listener."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from trioring._broker import Broker, open_broker
from trioring._constants import TEST_BROKER_SHUTDOWN_GRACE_SECONDS
from trioring._exception_groups import BodyError, body_exception_unwrapped
from trioring.config import BrokerConfig, ServerConfig
from trioring.handlers import Middleware
from trioring.server import KafkaServer, serve_kafka
from trioring.storage.log import LogConfig
from trioring.testing._faults import FaultInjector

__all__ = ["EmbeddedBroker", "open_embedded_broker"]


def unique_topic_name(prefix: str = "topic") -> str:
    """A topic name no other test has used: ``prefix`` and 12 random hex digits."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


class EmbeddedBroker:
    """A broker in this Trio program (``trioring_broker``). Open with :func:`open_embedded_broker`.

    - ``broker``: the :class:`trioring.Broker`, for the embedded API and the
      in-process client (``trioring.client.open_producer(broker.broker)``).
    - ``bootstrap``: its Kafka listener on 127.0.0.1, for clients that speak
      the wire protocol from this program (``trioring.client``) or from a
      thread or process (confluent-kafka in ``trio.to_thread.run_sync``).
    - ``faults``: the :class:`FaultInjector` every request goes through.
    - ``restart()``: close (flushing everything) and open again on the same
      data directory and port, faults kept.
    """

    def __init__(
        self,
        config: BrokerConfig,
        faults: FaultInjector,
        middleware: Sequence[Middleware],
        listen: bool,
    ) -> None:
        self.config = config
        self.faults = faults
        self._middleware = (faults, *middleware)
        self._listen = listen
        self._port = 0
        self._broker: Broker | None = None
        self._server: KafkaServer | None = None
        #: Set to close the broker that runs; _run opens it again unless stopping.
        self._close = trio.Event()
        self._opened = trio.Event()
        self._stopping = False

    @property
    def data_dir(self) -> Path:
        return Path(self.config.data_dir)

    @property
    def broker(self) -> Broker:
        if self._broker is None:
            raise RuntimeError("the embedded broker is closed (restarting, or its block ended)")
        return self._broker

    @property
    def bootstrap(self) -> str:
        """``127.0.0.1:PORT`` of the Kafka listener (the same port after a restart)."""
        if not self._listen:
            raise RuntimeError("this embedded broker serves no Kafka listener (listen=False)")
        return f"127.0.0.1:{self._port}"

    @property
    def server(self) -> KafkaServer:
        """The Kafka listener (its ``statistics()``, say)."""
        if self._server is None:
            raise RuntimeError("this embedded broker serves no Kafka listener now")
        return self._server

    async def create_topic(
        self, name: str | None = None, partitions: int = 1, *, config: LogConfig | None = None
    ) -> str:
        """Create a topic (by default uniquely named) and return its name."""
        name = unique_topic_name() if name is None else name
        await self.broker.create_topic(name, partitions, config=config)
        return name

    async def restart(self) -> None:
        """Close the broker (every partition flushed, connections closed) and open it
        again on the same data directory, with the same faults and listener port.

        This is a clean stop, not a crash: kill a :class:`BrokerProcess` to test
        recovery. In-process clients hold the old Broker: open them again on
        ``broker`` after this; wire clients reconnect by themselves.
        """
        self._opened = trio.Event()
        self._close.set()
        await self._opened.wait()

    async def _run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        started = False
        while True:
            async with (
                open_broker(self.config, middleware=self._middleware) as broker,
                trio.open_nursery() as nursery,
            ):
                if self._listen:
                    config = ServerConfig(
                        host="127.0.0.1",
                        port=self._port,
                        shutdown_grace_seconds=TEST_BROKER_SHUTDOWN_GRACE_SECONDS,
                    )
                    self._server = await nursery.start(serve_kafka, broker, config)
                    self._port = self._server.port
                self._broker = broker
                self._close = trio.Event()
                self._opened.set()
                if not started:
                    task_status.started()
                    started = True
                await self._close.wait()
                self._broker = None
                if self._server is not None:
                    await self._server.drain()
                    with trio.move_on_after(TEST_BROKER_SHUTDOWN_GRACE_SECONDS):
                        await self._server.wait_closed()
                    self._server = None
                nursery.cancel_scope.cancel()
            if self._stopping:
                return


@asynccontextmanager
async def open_embedded_broker(
    data_dir: str | os.PathLike[str] | BrokerConfig,
    *,
    faults: FaultInjector | None = None,
    middleware: Sequence[Middleware] = (),
    listen: bool = True,
) -> AsyncIterator[EmbeddedBroker]:
    """An :class:`EmbeddedBroker` on ``data_dir`` (or a BrokerConfig) for the block.

    ``faults`` (a new FaultInjector by default) runs outermost, before
    ``middleware``; ``listen=False`` serves no Kafka listener.
    """
    if isinstance(data_dir, BrokerConfig):
        config = data_dir
    else:
        config = BrokerConfig(data_dir=os.fspath(data_dir))
    embedded = EmbeddedBroker(
        config, FaultInjector() if faults is None else faults, middleware, listen
    )
    body = BodyError()
    async with body_exception_unwrapped(body), trio.open_nursery() as nursery:
        await nursery.start(embedded._run)
        try:
            yield embedded
        except BaseException as error:
            body.error = error
            raise
        finally:
            embedded._stopping = True
            embedded._close.set()

"""A worker process: one ``trio.run`` with its own I/O backend (io_uring ring), its own
partitions and its own Kafka listener.

The supervisor starts ``python -m trioring.worker`` with one end of a socket
pair (the control channel, ``cluster/channel.py``) and the data directory's
lock inherited. The first message says who the worker is (index, settings,
the cluster metadata); the worker opens its shard, listens at base port +
index, and says it is ready. From then on it follows the metadata and node
addresses the supervisor pushes, asks the controller for topic changes and
producer ids, and drains when told to (or when the supervisor goes away).

It dies with the supervisor: ``PR_SET_PDEATHSIG`` makes the kernel kill it
if the supervisor is killed, and the end of the control channel makes it
stop if the signal was missed.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import errno
import itertools
import logging
import os
import signal
import socket
import sys
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import trio
from kio.schema.errors import ErrorCode

from trioring._broker import Broker
from trioring._constants import WORKER_ANSWER_SECONDS
from trioring._exception_groups import leaf_exceptions
from trioring._heap import keep_free_heap_for_reuse
from trioring.cluster.channel import Channel, ChannelClosed, error_from_json
from trioring.cluster.model import ClusterMetadata, Node, TopicInfo, config_to_json
from trioring.cluster.view import ClusterView
from trioring.config import broker_config_from_json
from trioring.core.shard import Shard
from trioring.errors import BrokerClosedError, KafkaError
from trioring.handlers import Handlers
from trioring.server import KafkaServer, ServerConfig, serve_kafka
from trioring.storage.log import LogConfig
from trioring.uring import open_backend

__all__ = ["RemoteClusterView", "main", "run_worker"]

logger = logging.getLogger("trioring.worker")

#: prctl(2) option: the signal this process gets when its parent dies.
_PR_SET_PDEATHSIG = 1


class RemoteClusterView(ClusterView):
    """A worker's view: the controller is in the supervisor, across the control channel."""

    def __init__(self, worker_index: int, metadata: ClusterMetadata, channel: Channel) -> None:
        super().__init__(worker_index, metadata)
        self._channel = channel
        self._ids = itertools.count(1)
        self._waiting: dict[int, tuple[trio.Event, list[dict[str, Any]]]] = {}
        self._closed = False

    def deliver(self, reply: dict[str, Any]) -> None:
        waiting = self._waiting.pop(int(reply["reply"]), None)
        if waiting is not None:  # None: the asker gave up (cancelled)
            event, box = waiting
            box.append(reply)
            event.set()

    def close(self) -> None:
        """The channel is gone: every request waiting for an answer fails."""
        self._closed = True
        for event, box in self._waiting.values():
            box.append({"error": {"type": "BrokerClosedError", "message": "the broker stops"}})
            event.set()
        self._waiting.clear()

    async def _request(self, op: str, **arguments: Any) -> Any:
        if self._closed:
            raise BrokerClosedError("the broker stops")
        request_id = next(self._ids)
        event = trio.Event()
        box: list[dict[str, Any]] = []
        self._waiting[request_id] = (event, box)
        try:
            await self._channel.send({"id": request_id, "op": op, **arguments})
            # The controller answers within its own bound per worker; this one
            # only guards against a supervisor that stopped answering.
            with trio.move_on_after(2 * WORKER_ANSWER_SECONDS + 5) as waited:
                await event.wait()
            if waited.cancelled_caught:
                raise KafkaError(
                    "the controller did not answer in time", ErrorCode.request_timed_out
                )
        except ChannelClosed:
            raise BrokerClosedError("the broker stops") from None
        finally:
            self._waiting.pop(request_id, None)
        (reply,) = box
        if "error" in reply:
            raise error_from_json(reply["error"])
        return reply.get("result")

    async def _create_topic(
        self,
        name: str,
        partitions: int | None,
        config: LogConfig | None,
        overrides: Mapping[str, str] | None,
    ) -> TopicInfo:
        result = await self._request(
            "create_topic",
            name=name,
            partitions=partitions,
            config=None if config is None else config_to_json(config),
            overrides=None if overrides is None else dict(overrides),
        )
        return TopicInfo.from_json(result)

    async def _alter_topic_config(
        self,
        name: str,
        config: LogConfig,
        overrides: Mapping[str, str],
        expected: TopicInfo | None,
    ) -> TopicInfo:
        result = await self._request(
            "alter_topic_config",
            name=name,
            config=config_to_json(config),
            overrides=dict(overrides),
            expected=None if expected is None else expected.to_json(),
        )
        return TopicInfo.from_json(result)

    async def _create_partitions(self, name: str, total: int) -> TopicInfo:
        return TopicInfo.from_json(await self._request("create_partitions", name=name, total=total))

    async def _delete_topic(self, name: str) -> None:
        await self._request("delete_topic", name=name)

    async def _alter_broker_defaults(
        self, configs: Mapping[str, str], node: str, expected: Mapping[str, str] | None
    ) -> None:
        await self._request(
            "alter_broker_defaults",
            configs=dict(configs),
            node=node,
            expected=None if expected is None else dict(expected),
        )

    async def _allocate_producer_ids(self, count: int) -> int:
        return int(await self._request("allocate_producer_ids", count=count))


async def _follow(channel: Channel, view: RemoteClusterView, shard: Shard) -> str:
    """Act on the supervisor's messages until it says drain ("drain") or goes away ("gone")."""
    while True:
        try:
            message = await channel.receive()
        except ChannelClosed:
            return "gone"
        if "reply" in message:
            view.deliver(message)
            continue
        op = message.get("op")
        if op == "metadata":
            metadata = ClusterMetadata.from_json(message["metadata"])
            failures: dict[tuple[str, int], Exception] = {}
            if metadata.version > view.current.version:
                failures = dict(await shard.apply(metadata))
                view.metadata.value = metadata
            try:
                await channel.send(
                    {
                        "op": "applied",
                        "version": metadata.version,
                        "failures": [
                            [topic, partition, str(error)]
                            for (topic, partition), error in failures.items()
                        ],
                    }
                )
            except ChannelClosed:
                return "gone"
        elif op == "nodes":
            view.nodes.value = tuple(Node(*node) for node in message["nodes"])
        elif op == "drain":
            return "drain"
        else:
            logger.error("unknown control message %r", op)


async def run_worker(channel: Channel) -> int:
    """Serve as the worker the supervisor's first message describes; return the exit code."""
    start = await channel.receive()
    index = int(start["index"])
    broker_config = broker_config_from_json(start["broker_config"])
    server_config = ServerConfig(**start["server_config"])
    metadata = ClusterMetadata.from_json(start["metadata"])
    fault_control: tuple[str, int] | None = None
    if start.get("fault_control") is not None:
        control_host, control_port = start["fault_control"]
        fault_control = (str(control_host), int(control_port))
    try:
        backend = open_backend(broker_config.io_backend)
    except OSError as error:
        await _say_failed(channel, f"I/O backend {broker_config.io_backend}", error)
        return 2
    view = RemoteClusterView(index, metadata, channel)
    try:
        async with (
            Shard.open(broker_config, backend, metadata, worker_index=index) as shard,
            trio.open_nursery() as nursery,
        ):
            handlers = Handlers()
            injector = None
            if fault_control is not None:
                # Test-only code (serve --fault-control), imported only when asked for.
                from trioring.testing._faults import FaultInjector  # noqa: PLC0415

                injector = FaultInjector()
                handlers = handlers.wrap(injector)
            broker = Broker(shard, view, handlers, nursery)
            try:
                server: KafkaServer = await nursery.start(
                    partial(serve_kafka, broker, server_config, publish_node=False)
                )
            except OSError as error:
                where = f"{server_config.host}:{server_config.port}"
                await _say_failed(channel, f"cannot listen on {where}", error)
                nursery.cancel_scope.cancel()
                return 2
            fault_control_port = None
            if injector is not None and fault_control is not None:
                from trioring.testing._control import serve_fault_control  # noqa: PLC0415

                host, port = fault_control
                try:
                    fault_control_port = await nursery.start(
                        serve_fault_control, injector, host, port
                    )
                except OSError as error:
                    await _say_failed(
                        channel, f"cannot serve fault control on {host}:{port}", error
                    )
                    nursery.cancel_scope.cancel()
                    return 2
            reason = "signal"
            try:
                await channel.send(
                    {
                        "op": "ready",
                        "port": server.port,
                        "backend": broker.io_backend,
                        "reason": broker.io_backend_reason,
                        "fault_control_port": fault_control_port,
                    }
                )
            except ChannelClosed:
                reason = "gone"  # the supervisor stopped while this worker started
            with trio.open_signal_receiver(signal.SIGTERM) as signals:
                async with trio.open_nursery() as waiting:

                    async def follow() -> None:
                        nonlocal reason
                        reason = await _follow(channel, view, shard)
                        waiting.cancel_scope.cancel()

                    async def on_signal() -> None:
                        async for _ in signals:
                            logger.warning("SIGTERM: draining")
                            waiting.cancel_scope.cancel()
                            return

                    if reason != "gone":
                        waiting.start_soon(follow)
                        waiting.start_soon(on_signal)
            view.close()
            await server.drain()
            grace = server_config.shutdown_grace_seconds if reason == "drain" else 1.0
            with trio.move_on_after(grace):
                await server.wait_closed()
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await backend.aclose()
    return 0


async def _say_failed(channel: Channel, what: str, error: OSError) -> None:
    """Tell the supervisor why this worker could not start (a port in use, say)."""
    message = f"{what}: {error.strerror or error}"
    if error.errno == errno.EADDRINUSE:
        message += "; stop what uses it, or choose another --listen"
    with contextlib.suppress(ChannelClosed):
        await channel.send({"op": "failed", "error": {"message": message}})


def _die_with_parent(supervisor_pid: int) -> None:
    """Have the kernel kill this process when the supervisor dies (Linux)."""
    library = ctypes.util.find_library("c")
    if library is not None:
        libc = ctypes.CDLL(library, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != supervisor_pid:
        # The supervisor died before the line above: nobody would stop us.
        os._exit(1)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trioring.worker", add_help=False)
    parser.add_argument("--control-fd", type=int, required=True)
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--supervisor-pid", type=int, required=True)
    parser.add_argument("--log-level", default="WARNING")
    parser.add_argument("--cpu", type=int)
    options = parser.parse_args(argv)
    _die_with_parent(options.supervisor_pid)
    keep_free_heap_for_reuse()
    # Ctrl-C in a terminal reaches every process of the group: the
    # supervisor decides what happens (it drains the workers).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if options.cpu is not None:
        os.sched_setaffinity(0, {options.cpu})
    logging.basicConfig(
        level=options.log_level,
        format=f"%(asctime)s %(levelname)s worker-{options.index} %(name)s: %(message)s",
    )
    sock = socket.socket(fileno=options.control_fd)

    async def run() -> int:
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
        channel = Channel(stream)
        try:
            return await run_worker(channel)
        except BaseException as error:
            # The supervisor went away while we were talking to it: nothing
            # to report to anyone, and nothing was lost (data is flushed on
            # the way out of the shard).
            leaves = [e for e in leaf_exceptions(error) if not isinstance(e, trio.Cancelled)]
            if leaves and all(isinstance(leaf, ChannelClosed) for leaf in leaves):
                return 0
            raise
        finally:
            with trio.CancelScope(shield=True):
                await channel.aclose()

    return trio.run(run)


if __name__ == "__main__":
    sys.exit(main())

"""The supervisor: one Trio nursery, one task per worker process; it hosts the controller.

``serve_cluster`` locks the data directory, opens the controller (the
cluster metadata), and runs ``workers`` worker processes
(``trioring/worker.py``), worker i listening on base port + i. Each worker
task starts its process, feeds it metadata over its control channel,
answers its requests for topic changes and producer ids, and restarts it
with a doubling pause (0.1 s up to 10 s) when it dies, logging why.
Changes are serialized: the controller persists one, every running worker
applies it and says so, and only then is the worker that asked answered.

Processes: the supervisor starts workers from its main thread, and each
worker asks the kernel (PR_SET_PDEATHSIG) to kill it when the supervisor
dies, so no worker outlives a supervisor killed with SIGKILL. Workers
inherit the data directory's lock: a new broker cannot take the directory
while any old worker still runs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

import attrs
import trio

from trioring._broker import move_legacy_offsets_of
from trioring._constants import (
    WORKER_ANSWER_SECONDS,
    WORKER_EXIT_SECONDS,
    WORKER_RESTART_DELAY_FIRST_SECONDS,
    WORKER_RESTART_DELAY_LAST_SECONDS,
    WORKER_STABLE_SECONDS,
)
from trioring._exception_groups import leaf_exceptions
from trioring.cluster.channel import Channel, ChannelClosed, error_to_json
from trioring.cluster.controller import Controller, create_topic_everywhere
from trioring.cluster.model import (
    ClusterMetadata,
    Node,
    TopicInfo,
    config_from_json,
    overrides_from_json,
)
from trioring.config import BrokerConfig, ServerConfig, broker_config_to_json
from trioring.errors import ConfigurationError, InvalidArgumentError, StorageError, TrioringError
from trioring.storage.lock import DataDirectoryLock
from trioring.uring import FallbackBackend

__all__ = ["Supervisor", "WorkerState", "serve_cluster"]

logger = logging.getLogger("trioring.supervisor")


@attrs.define(eq=False)
class WorkerState:
    """What the supervisor knows of one worker."""

    index: int
    #: The port it listens on; kept across restarts (0 until first bound).
    port: int = 0
    backend: str = ""
    backend_reason: str = ""
    pid: int | None = None
    restarts: int = 0
    channel: Channel | None = None
    #: The last metadata version it has applied.
    applied_version: int = 0
    applied: trio.Event = attrs.Factory(trio.Event)
    failures: list[list[Any]] = attrs.Factory(list)
    ready: bool = False
    #: Why its last start failed (a port in use, say), if it said.
    start_error: str | None = None
    #: The port of its fault control endpoint (testing only; 0: none yet);
    #: kept across restarts, as ``port`` is.
    fault_control_port: int = 0


class Supervisor:
    def __init__(
        self,
        controller: Controller,
        broker_config: BrokerConfig,
        server_config: ServerConfig,
        workers: int,
        *,
        lock: DataDirectoryLock,
        pin_cpus: bool = False,
        log_level: str = "WARNING",
        fault_control: tuple[str, int] | None = None,
    ) -> None:
        self.controller = controller
        self.broker_config = broker_config
        self.server_config = server_config
        self.workers = [WorkerState(index) for index in range(workers)]
        self._lock = lock
        self._pin_cpus = pin_cpus
        self._log_level = log_level
        #: Where worker 0 serves fault control (tests only; worker i at port + i).
        self._fault_control = fault_control
        self._change_lock = trio.Lock()
        self._stopping = False
        self._all_ready = trio.Event()
        self._processes: dict[int, subprocess.Popen[bytes]] = {}
        cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        self._cpus = cpus

    # --- addresses ------------------------------------------------------------------

    def listen_port(self, index: int) -> int:
        state = self.workers[index]
        if state.port:
            return state.port  # the same port after a restart
        base = self.server_config.port
        return 0 if base == 0 else base + index

    def nodes(self) -> tuple[Node, ...]:
        """Every worker clients can reach, as Kafka nodes (node id = worker index)."""
        config = self.server_config
        host = config.advertised_host or config.host
        nodes = []
        for state in self.workers:
            if not state.port:
                continue
            port = (
                state.port
                if config.advertised_port is None
                else config.advertised_port + state.index
            )
            nodes.append(Node(state.index, host, port))
        return tuple(nodes)

    # --- running ----------------------------------------------------------------------

    async def run(
        self, *, task_status: trio.TaskStatus[Supervisor] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Run every worker until cancelled; started() once all are ready the first time.

        Cancelling drains the workers (:meth:`stop`) before this returns. A
        worker that fails to start the first time (its port is taken, its
        I/O backend cannot run) ends the supervisor with that error.
        """
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._run_workers)
            try:
                await self._all_ready.wait()
                task_status.started(self)
                await trio.sleep_forever()
            finally:
                with trio.CancelScope(shield=True):
                    await self.stop()

    async def _run_workers(self) -> None:
        # Shielded: the workers stop when stop() drains them, not when the
        # caller is cancelled (run() turns that into a stop()).
        with trio.CancelScope(shield=True):
            async with trio.open_nursery() as nursery:
                for state in self.workers:
                    nursery.start_soon(self._run_worker, state, name=f"worker {state.index}")

    async def stop(self) -> None:
        """Drain every worker (stop accepting, finish in-flight requests, flush) and wait.

        Workers still running after the grace period and WORKER_EXIT_SECONDS are killed.
        """
        self._stopping = True
        self._all_ready.set()  # nobody waits for a start any more
        for state in self.workers:
            if state.channel is not None:
                with contextlib.suppress(ChannelClosed):
                    await state.channel.send({"op": "drain"})
        with trio.move_on_after(self.server_config.shutdown_grace_seconds + WORKER_EXIT_SECONDS):
            while self._processes:  # noqa: ASYNC110 - a few polls at shutdown
                await trio.sleep(0.02)
        for process in list(self._processes.values()):
            if process.poll() is None:
                process.kill()

    async def _run_worker(self, state: WorkerState) -> None:
        delay = WORKER_RESTART_DELAY_FIRST_SECONDS
        while not self._stopping:
            started = trio.current_time()
            code = await self._run_process(state)
            if self._stopping:
                return
            if state.start_error is not None and not state.restarts and not state.port:
                # It never started: an operator's mistake, not a crash to retry.
                raise ConfigurationError(f"worker {state.index}: {state.start_error}")
            if code is not None and code < 0:
                why = f"was killed by {signal.Signals(-code).name}"
            else:
                why = f"exited with code {code}"
            if trio.current_time() - started >= WORKER_STABLE_SECONDS:
                delay = WORKER_RESTART_DELAY_FIRST_SECONDS
            logger.warning(
                "worker %d (pid %s) %s; restarting it in %.1f s", state.index, state.pid, why, delay
            )
            state.restarts += 1
            await trio.sleep(delay)
            delay = min(delay * 2, WORKER_RESTART_DELAY_LAST_SECONDS)

    async def _run_process(self, state: WorkerState) -> int | None:
        """Start the worker process, serve its channel until it exits; its exit code."""
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        command = [
            sys.executable,
            "-m",
            "trioring.worker",
            "--control-fd",
            str(child.fileno()),
            "--index",
            str(state.index),
            "--supervisor-pid",
            str(os.getpid()),
            "--log-level",
            self._log_level,
        ]
        if self._pin_cpus and self._cpus:
            command += ["--cpu", str(self._cpus[state.index % len(self._cpus)])]
        # From this (the main) thread: PR_SET_PDEATHSIG follows the thread that
        # started the child, and Trio's worker threads come and go.
        process = subprocess.Popen(  # noqa: ASYNC220 - a fork and exec: milliseconds
            command, pass_fds=(child.fileno(), self._lock.fileno()), stdin=subprocess.DEVNULL
        )
        child.close()
        state.pid = process.pid
        state.start_error = None
        self._processes[state.index] = process
        channel = Channel(trio.SocketStream(trio.socket.from_stdlib_socket(parent)))
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._serve_channel, state, channel, nursery)
                await _wait_for_exit(process)
                nursery.cancel_scope.cancel()
        finally:
            state.ready = False
            state.channel = None
            with trio.CancelScope(shield=True):
                # A worker still running sees its channel end and drains.
                await channel.aclose()
                if process.poll() is None:
                    with trio.move_on_after(WORKER_EXIT_SECONDS):
                        await _wait_for_exit(process)
                    if process.poll() is None:
                        process.kill()
                        process.wait()
                self._processes.pop(state.index, None)
        return process.returncode

    async def _serve_channel(
        self, state: WorkerState, channel: Channel, nursery: trio.Nursery
    ) -> None:
        try:
            await channel.send(
                {
                    "op": "start",
                    "index": state.index,
                    "broker_config": broker_config_to_json(self.broker_config),
                    "server_config": self._worker_server_config(state),
                    "metadata": self.controller.current.to_json(),
                    "fault_control": self._worker_fault_control(state),
                }
            )
            while True:
                message = await channel.receive()
                if "id" in message:
                    nursery.start_soon(self._answer, channel, message)
                elif message.get("op") == "applied":
                    state.applied_version = max(state.applied_version, int(message["version"]))
                    state.failures = list(message.get("failures", []))
                    state.applied.set()
                    state.applied = trio.Event()
                elif message.get("op") == "ready":
                    await self._ready(state, channel, message)
                elif message.get("op") == "failed":
                    state.start_error = str(message.get("error", {}).get("message", "failed"))
        except ChannelClosed:
            pass  # the process is ending; _run_process learns how

    def _worker_server_config(self, state: WorkerState) -> dict[str, Any]:
        values = attrs.asdict(self.server_config)
        values["port"] = self.listen_port(state.index)
        if self.server_config.advertised_port is not None:
            values["advertised_port"] = self.server_config.advertised_port + state.index
        return values

    def _worker_fault_control(self, state: WorkerState) -> list[Any] | None:
        """Where the worker serves fault control: [host, port], or None (not asked for)."""
        if self._fault_control is None:
            return None
        host, base = self._fault_control
        if state.fault_control_port:
            return [host, state.fault_control_port]  # the same port after a restart
        return [host, 0 if base == 0 else base + state.index]

    async def _ready(self, state: WorkerState, channel: Channel, message: dict[str, Any]) -> None:
        state.port = int(message["port"])
        state.fault_control_port = int(message.get("fault_control_port") or 0)
        state.backend = str(message.get("backend", ""))
        state.backend_reason = str(message.get("reason", ""))
        async with self._change_lock:
            # Changes made while it started did not reach it: bring it up to date.
            current = self.controller.current
            await channel.send({"op": "metadata", "metadata": current.to_json()})
            state.channel = channel
            state.ready = True
        await self._send_nodes()
        if all(worker.ready for worker in self.workers):
            self._all_ready.set()
        logger.info("worker %d ready on port %d (pid %s)", state.index, state.port, state.pid)

    async def _send_nodes(self) -> None:
        nodes = [[node.node_id, node.host, node.port] for node in self.nodes()]
        for worker in self.workers:
            if worker.channel is not None:
                with contextlib.suppress(ChannelClosed):
                    await worker.channel.send({"op": "nodes", "nodes": nodes})

    # --- changes the workers ask for ------------------------------------------------------

    async def distribute(self, metadata: ClusterMetadata) -> Mapping[tuple[str, int], StorageError]:
        """Send ``metadata`` to every running worker; once each applied it, the failures."""
        failures: dict[tuple[str, int], StorageError] = {}
        waiting = []
        for state in self.workers:
            if state.channel is None or state.applied_version >= metadata.version:
                continue
            try:
                await state.channel.send({"op": "metadata", "metadata": metadata.to_json()})
                waiting.append(state)
            except ChannelClosed:
                continue  # it restarts, and gets the current metadata then
        for state in waiting:
            with trio.move_on_after(WORKER_ANSWER_SECONDS):
                while state.channel is not None and state.applied_version < metadata.version:
                    await state.applied.wait()
            if state.applied_version < metadata.version:
                logger.warning(
                    "worker %d did not apply metadata version %d in time",
                    state.index,
                    metadata.version,
                )
                continue
            for topic, partition, message in state.failures:
                failures[(str(topic), int(partition))] = StorageError(str(message))
        return failures

    async def _answer(self, channel: Channel, message: dict[str, Any]) -> None:
        op = message.get("op")
        try:
            if op == "allocate_producer_ids":
                result: Any = await self.controller.allocate_producer_ids(int(message["count"]))
            else:
                async with self._change_lock:
                    result = await self._change(op, message)
            reply: dict[str, Any] = {"reply": message["id"], "result": result}
        except Exception as error:  # the worker re-raises it for its client
            reply = {"reply": message["id"], "error": error_to_json(error)}
        with contextlib.suppress(ChannelClosed):
            await channel.send(reply)

    async def _change(self, op: Any, message: dict[str, Any]) -> Any:
        controller = self.controller
        if op == "create_topic":
            config = message.get("config")
            topic = await create_topic_everywhere(
                controller,
                self.distribute,
                str(message["name"]),
                message.get("partitions"),
                None if config is None else config_from_json(config),
                overrides=None
                if message.get("overrides") is None
                else dict(overrides_from_json(message["overrides"])),
            )
            return topic.to_json()
        if op == "alter_topic_config":
            try:
                altered = await controller.alter_topic_config(
                    str(message["name"]),
                    config_from_json(message["config"]),
                    dict(overrides_from_json(message["overrides"])),
                    None
                    if message.get("expected") is None
                    else TopicInfo.from_json(message["expected"]),
                )
            finally:
                await self.distribute(controller.current)
            return altered.to_json()
        if op == "create_partitions":
            try:
                grown = await controller.create_partitions(
                    str(message["name"]), int(message["total"])
                )
            finally:
                await self.distribute(controller.current)
            return grown.to_json()
        if op == "alter_broker_defaults":
            configs = {str(key): str(value) for key, value in dict(message["configs"]).items()}
            try:
                expected = message.get("expected")
                await controller.alter_broker_defaults(
                    configs,
                    str(message.get("node", "")),
                    None if expected is None else {str(k): str(v) for k, v in expected.items()},
                )
            finally:
                await self.distribute(controller.current)
            return None
        if op == "delete_topic":
            try:
                await controller.delete_topic(str(message["name"]))
            finally:
                await self.distribute(controller.current)
            return None
        raise InvalidArgumentError(f"unknown control request {op!r}")


async def _wait_for_exit(process: subprocess.Popen[bytes]) -> None:
    """Wait for a child process to exit (a pidfd where Linux has them, else a thread)."""
    try:
        pidfd = os.pidfd_open(process.pid)
    except (AttributeError, OSError):
        await trio.to_thread.run_sync(process.wait, abandon_on_cancel=True)
        return
    try:
        await trio.lowlevel.wait_readable(pidfd)
    finally:
        os.close(pidfd)
    process.wait()


async def serve_cluster(
    broker_config: BrokerConfig,
    server_config: ServerConfig,
    *,
    workers: int,
    pin_cpus: bool = False,
    log_level: str = "WARNING",
    fault_control: tuple[str, int] | None = None,
    task_status: trio.TaskStatus[Supervisor] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run a broker of ``workers`` worker processes in this Trio program, until cancelled.

    ``task_status.started`` gets the Supervisor once every worker listens
    (``supervisor.nodes()`` are their addresses). Cancelling drains the
    workers first (``shutdown_grace_seconds``); ``supervisor.stop()`` drains
    them without cancelling. Middleware cannot cross into worker processes:
    use ``open_broker`` for in-process middleware. The one exception is for
    tests: ``fault_control`` (a loopback host and base port) gives each
    worker a FaultInjector and its control endpoint (trioring.testing).
    """
    if workers < 1:
        raise InvalidArgumentError(f"a broker needs at least 1 worker, not {workers}")
    if fault_control is not None:
        # Checked here: a worker that refused it would only be restarted, again and again.
        from trioring.testing._control import check_loopback  # noqa: PLC0415 - test-only code

        check_loopback(fault_control[0])
    lock = await DataDirectoryLock.acquire(broker_config.data_dir)
    backend = FallbackBackend()
    try:
        async with Controller.open(broker_config, backend, workers=workers) as controller:
            await move_legacy_offsets_of(broker_config, backend)
            supervisor = Supervisor(
                controller,
                broker_config,
                server_config,
                workers,
                lock=lock,
                pin_cpus=pin_cpus,
                log_level=log_level,
                fault_control=fault_control,
            )
            try:
                await supervisor.run(task_status=task_status)
            except BaseExceptionGroup as group:
                # A worker that could not start: its one error, as raised.
                errors = [
                    leaf for leaf in leaf_exceptions(group) if not isinstance(leaf, trio.Cancelled)
                ]
                if len(errors) == 1 and isinstance(errors[0], TrioringError):
                    raise errors[0] from None
                raise
            finally:
                with trio.CancelScope(shield=True):
                    await supervisor.stop()
    finally:
        with trio.CancelScope(shield=True):
            await backend.aclose()
        lock.release()

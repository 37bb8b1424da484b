"""Targets: the broker a history is played against, and the faults it can be given.

- :class:`EmbeddedTarget`: trioring in this process over :class:`FaultyBackend`
  (power loss, crashes, disk errors, slow I/O); thousands of steps a second.
- :class:`ProcessTarget`: ``python -m trioring serve`` (optionally with
  workers), SIGKILLed for real.
- :class:`BootstrapTarget`: any Kafka-protocol broker at an address; crashes
  only through a ``--restart-command`` the user gives.

Each holds the Trio client's Cluster that the player talks through; a
restart opens a new one (the old connections died with the broker).
"""

from __future__ import annotations

import datetime
import errno
import logging
import os
import random
import shlex
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import trio
from kio.static.primitive import i32Timedelta

from trioring._broker import open_broker
from trioring._constants import FUZZ_RECOVERY_SECONDS, FUZZ_STEP_SECONDS_MAX
from trioring._exception_groups import BodyError, body_exception_unwrapped
from trioring.client._cluster import Cluster
from trioring.client._connection import ConnectionBrokenError
from trioring.config import BrokerConfig, GroupConfig
from trioring.fuzz._backend import Fault, FaultyBackend
from trioring.fuzz._model import ContractViolation
from trioring.protocol.kafka import ApiKey

logger = logging.getLogger("trioring.fuzz")

#: Faults by kind -> (operation, errno, delay): what a DiskFault step injects.
DISK_FAULTS: dict[str, tuple[str, int, float]] = {
    "enospc": ("write", errno.ENOSPC, 0.0),
    "eio-write": ("write", errno.EIO, 0.0),
    "eio-read": ("read", errno.EIO, 0.0),
    "eio-sync": ("sync", errno.EIO, 0.0),
    "slow": ("sync", 0, 0.02),
}

_REQUEST_TIMEOUT_MS = 15_000


class Target:
    """What the player needs of a broker; the fault methods a target lacks raise."""

    #: The faults this target can inject (a subset of the CLI's --faults kinds).
    faults: frozenset[str] = frozenset()
    #: Whether clients reach it over TCP (network faults need a socket).
    wire = False
    workers = 1
    #: Another broker, whose coordinators and topic changes settle in the
    #: background: retriable answers are allowed a while after the start and
    #: after topic changes. trioring's own targets are held to answer at once.
    settles_slowly = False

    def __init__(self, name_prefix: str) -> None:
        self.name_prefix = name_prefix
        self._cluster: Cluster | None = None
        self._injected: dict[str, int] = {}

    @property
    def cluster(self) -> Cluster:
        assert self._cluster is not None, "the target is not running"
        return self._cluster

    @property
    def injected(self) -> dict[str, int]:
        """Faults injected so far, by kind (disk faults: the calls they failed)."""
        return dict(self._injected)

    def count(self, kind: str, number: int = 1) -> None:
        self._injected[kind] = self._injected.get(kind, 0) + number

    async def restart(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot restart")

    async def kill(self, worker: int | None) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot be killed")

    async def power_loss(self, seed: int) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot lose power")

    def disk_fault(self, kind: str, count: int) -> None:
        raise NotImplementedError(f"{type(self).__name__} has no simulated disk")

    def clear_disk_faults(self) -> None:
        pass

    def disk_faults_active(self) -> bool:
        return False

    def address(self, node: int) -> tuple[str, int]:
        return self.cluster.brokers[node]


class EmbeddedTarget(Target):
    faults = frozenset({"kill", "power-loss", "enospc", "eio", "slow"})

    def __init__(
        self,
        data_dir: str,
        nursery: trio.Nursery,
        backend_factory: Callable[[], FaultyBackend] = FaultyBackend,
    ) -> None:
        super().__init__("fuzz-")
        self._backend_factory = backend_factory
        self.config = BrokerConfig(
            data_dir=data_dir,
            io_backend="fallback",
            # No periodic flush (Kafka's default): acks=1 data stays unsynced
            # until an acks=all write or a checkpoint, so power losses have more
            # to lose and the model more to check.
            flush_interval_ms=None,
            # Offline partitions are tried again at each retention check.
            retention_check_interval_ms=100,
            groups=GroupConfig(initial_rebalance_delay_ms=0),
        )
        self._nursery = nursery
        self.backend = backend_factory()
        self._scope: trio.CancelScope | None = None
        self._stopped: trio.Event | None = None
        self._dying = False
        #: Every disk fault injected (its ``hits`` count the calls it failed).
        self._disk_faults: list[Fault] = []

    @classmethod
    @asynccontextmanager
    async def open(
        cls, data_dir: str, *, backend_factory: Callable[[], FaultyBackend] = FaultyBackend
    ) -> AsyncIterator[EmbeddedTarget]:
        """``backend_factory`` makes the disk of each boot (a FaultyBackend subclass
        tests a backend's own behaviour under the same faults)."""
        body = BodyError()
        async with body_exception_unwrapped(body), trio.open_nursery() as nursery:
            target = cls(data_dir, nursery, backend_factory)
            await target._start()
            try:
                yield target
            except BaseException as error:
                body.error = error
                raise
            finally:
                await target._stop()
                nursery.cancel_scope.cancel()

    async def _start(self) -> None:
        self._dying = False
        # The disk's faults outlast the process: a full disk is full after a restart too.
        faults = self.backend.faults
        self.backend = self._backend_factory()
        self.backend.faults = faults
        self._stopped = trio.Event()
        faulty = self.disk_faults_active()
        try:
            self._scope, self._cluster = await self._nursery.start(self._run)
        except Exception as error:
            if not faulty:
                raise
            # A broker may refuse to start on a failing disk (its cluster
            # metadata unreadable, say), with an error; the operator mends
            # the disk and starts it again.
            logger.info("the broker did not start on the faulty disk: %s", error)
            self.count("start-refused")
            self.clear_disk_faults()
            self._stopped = trio.Event()
            self._scope, self._cluster = await self._nursery.start(self._run)

    def disk_faults_active(self) -> bool:
        return any(fault.count > 0 for fault in self.backend.faults)

    async def _run(self, *, task_status: trio.TaskStatus[tuple[trio.CancelScope, Cluster]]) -> None:
        assert self._stopped is not None
        stopped = self._stopped
        try:
            with trio.CancelScope() as scope:
                try:
                    async with (
                        open_broker(self.config, backend=self.backend) as broker,
                        Cluster.open(
                            broker,
                            allow_auto_create_topics=False,
                            request_timeout_ms=_REQUEST_TIMEOUT_MS,
                        ) as cluster,
                    ):
                        task_status.started((scope, cluster))
                        await trio.sleep_forever()
                except Exception:
                    if not self._dying:
                        raise
                    # The broker died with its disk: what it says on the way out is noise.
                except BaseExceptionGroup as group:
                    if not self._dying:
                        raise
                    _, rest = group.split(Exception)
                    if rest is not None:
                        raise rest from None
        finally:
            stopped.set()

    async def _stop(self) -> None:
        if self._scope is not None and self._stopped is not None:
            self._scope.cancel()
            # Bounded: a broker that does not stop once cancelled is a hang.
            with trio.fail_after(FUZZ_STEP_SECONDS_MAX):
                await self._stopped.wait()
        self._scope = self._cluster = None
        # The process is gone; the machine is not: its page cache reaches the disk.
        self.backend.crash()

    async def restart(self) -> None:
        # A clean stop, unless the disk fails it (then it is as good as a kill).
        self._dying = bool(self.backend.faults)
        await self._stop()
        await self._start()

    async def kill(self, worker: int | None) -> None:
        # The process dies at once, the page cache does not (SIGKILL).
        self._dying = True
        self.backend.crash()
        await self._stop()
        self.count("kill")
        await self._start()

    async def power_loss(self, seed: int) -> None:
        self._dying = True
        outcome = self.backend.power_off(random.Random(seed))
        await self._stop()
        self.count("power-loss")
        self.count("writes-kept", outcome["kept"])
        self.count("writes-torn", outcome["torn"])
        self.count("writes-dropped", outcome["dropped"])
        await self._start()

    def disk_fault(self, kind: str, count: int) -> None:
        operation, error, delay_s = DISK_FAULTS[kind]
        fault = Fault(kind, operation, error, count, delay_s)
        self.backend.inject(fault)
        self._disk_faults.append(fault)

    @property
    def injected(self) -> dict[str, int]:
        counts = dict(self._injected)
        for fault in self._disk_faults:
            if fault.hits:
                counts[fault.kind] = counts.get(fault.kind, 0) + fault.hits
        return counts

    def clear_disk_faults(self) -> None:
        self.backend.clear()


class _WireTarget(Target):
    """A broker reached over TCP: the Cluster lives in a task of the target's nursery,
    so a step that restarts the broker can open the next one inside its own scope."""

    wire = True

    def __init__(self, name_prefix: str, nursery: trio.Nursery) -> None:
        super().__init__(name_prefix)
        self._nursery = nursery
        self._cluster_scope: trio.CancelScope | None = None
        self._cluster_done: trio.Event | None = None

    @property
    def bootstrap(self) -> str:
        raise NotImplementedError

    async def _connect(self) -> None:
        self._cluster_done = trio.Event()
        self._cluster_scope, self._cluster = await self._nursery.start(
            self._hold_cluster, self.bootstrap, self._cluster_done
        )

    async def _hold_cluster(
        self,
        bootstrap: str,
        done: trio.Event,
        *,
        task_status: trio.TaskStatus[tuple[trio.CancelScope, Cluster]],
    ) -> None:
        try:
            with trio.CancelScope() as scope:
                async with Cluster.open(
                    bootstrap,
                    allow_auto_create_topics=False,
                    request_timeout_ms=_REQUEST_TIMEOUT_MS,
                ) as cluster:
                    task_status.started((scope, cluster))
                    await trio.sleep_forever()
        finally:
            done.set()

    async def _disconnect(self) -> None:
        if self._cluster_scope is not None and self._cluster_done is not None:
            self._cluster_scope.cancel()
            with trio.CancelScope(shield=True):
                await self._cluster_done.wait()
        self._cluster_scope = self._cluster = None


class ProcessTarget(_WireTarget):
    faults = frozenset({"kill", "net"})

    def __init__(
        self, data_dir: str, nursery: trio.Nursery, *, workers: int, log_path: str
    ) -> None:
        super().__init__("fuzz-", nursery)
        from trioring.testing import BrokerProcess  # noqa: PLC0415 - only this target needs it

        self.workers = workers
        self.broker = BrokerProcess(
            data_dir, workers=workers, log_path=log_path, log_level="WARNING"
        )

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap

    @classmethod
    @asynccontextmanager
    async def open(
        cls, data_dir: str, *, workers: int = 1, log_path: str | None = None
    ) -> AsyncIterator[ProcessTarget]:
        body = BodyError()
        async with body_exception_unwrapped(body), trio.open_nursery() as nursery:
            target = cls(
                data_dir,
                nursery,
                workers=workers,
                log_path=log_path or os.path.join(data_dir, "broker.log"),
            )
            try:
                await trio.to_thread.run_sync(target.broker.start)
                await target._connect()
                yield target
            except BaseException as error:
                body.error = error
                raise
            finally:
                try:
                    await target._disconnect()
                finally:
                    # Stopped by pid whatever happened above: a test leaves no broker behind.
                    with trio.CancelScope(shield=True):
                        await trio.to_thread.run_sync(target.broker.stop)

    async def restart(self) -> None:
        await self._disconnect()
        await trio.to_thread.run_sync(self.broker.restart)
        await self._connect()

    async def kill(self, worker: int | None) -> None:
        if worker is None or self.workers == 1:
            await self._disconnect()
            await trio.to_thread.run_sync(lambda: self.broker.restart(kill=True))
            await self._connect()
            self.count("kill")
            return
        # The supervisor starts the worker again; clients find it when it is back.
        index = worker % self.workers
        with trio.move_on_after(FUZZ_RECOVERY_SECONDS):
            while True:
                try:
                    await trio.to_thread.run_sync(self.broker.kill_worker, index)
                    break
                except LookupError:
                    # Still being restarted after the last kill: wait for it.
                    await trio.sleep(0.05)
            self.count("kill-worker")
            return
        raise ContractViolation(
            f"worker {index} was not running again {FUZZ_RECOVERY_SECONDS:g} s after it was killed"
        )


class BootstrapTarget(_WireTarget):
    """Any Kafka-protocol broker; crashes only by ``restart_command``."""

    settles_slowly = True

    def __init__(self, bootstrap: str, restart_command: str | None, nursery: trio.Nursery) -> None:
        super().__init__(f"trioring-fuzz-{os.getpid()}-{random.getrandbits(24):06x}-", nursery)
        self._bootstrap = bootstrap
        self.restart_command = restart_command
        if restart_command is not None:
            self.faults = frozenset({"kill", "net"})
        else:
            self.faults = frozenset({"net"})

    @property
    def bootstrap(self) -> str:
        return self._bootstrap

    @classmethod
    @asynccontextmanager
    async def open(
        cls, bootstrap: str, restart_command: str | None
    ) -> AsyncIterator[BootstrapTarget]:
        body = BodyError()
        async with body_exception_unwrapped(body), trio.open_nursery() as nursery:
            target = cls(bootstrap, restart_command, nursery)
            await target._connect()
            try:
                yield target
            except BaseException as error:
                body.error = error
                raise
            finally:
                await target._disconnect()

    async def _connect(self) -> None:
        await super()._connect()
        # Reachable at all? One bounded try, so a wrong address is one clear error.
        with trio.move_on_after(FUZZ_RECOVERY_SECONDS):
            while True:
                try:
                    await self.cluster.refresh([], auto_create=False)
                    return
                except ConnectionBrokenError:
                    await trio.sleep(0.2)
        raise ConnectionBrokenError(f"no broker answers at {self.bootstrap}")

    async def delete_topics(self) -> None:
        """Delete the topics this run created (by their prefix), so a shared broker keeps none.

        Never raises: it runs after a failure too, which it must not hide.
        """
        try:
            if self._cluster is None:
                await self._connect()
            await self._delete_topics()
        except Exception as error:
            logger.warning(
                "could not delete this run's topics (%s*) at %s: %s",
                self.name_prefix,
                self.bootstrap,
                error,
            )

    async def _delete_topics(self) -> None:
        await self.cluster.refresh(None, auto_create=False)
        names = tuple(name for name in self.cluster.topics if name.startswith(self.name_prefix))
        if names:
            connection = await self.cluster.any_connection()
            await connection.request(
                ApiKey.DELETE_TOPICS,
                topic_names=names,
                topics=(),
                timeout=i32Timedelta.parse(datetime.timedelta(seconds=10)),
            )

    async def restart(self) -> None:
        # The user's command is the only way to stop this broker: as a kill.
        await self.kill(None)

    async def kill(self, worker: int | None) -> None:
        assert self.restart_command is not None
        await self._disconnect()
        result = await trio.run_process(
            shlex.split(self.restart_command), check=False, capture_stdout=True, capture_stderr=True
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"--restart-command exited {result.returncode}: "
                f"{result.stderr.decode(errors='replace').strip()[-500:]}"
            )
        self.count("kill")
        await self._connect()


__all__ = [
    "DISK_FAULTS",
    "BootstrapTarget",
    "EmbeddedTarget",
    "ProcessTarget",
    "Target",
]

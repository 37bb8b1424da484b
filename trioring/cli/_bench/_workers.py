"""``--processes N``: worker processes that each run the load, started together.

A worker is ``python -m trioring bench MODE ... --worker I/N``. It talks to
its parent in JSON lines on stdout (``{"ready": true}`` once connected, then
``{"progress": {...}}`` now and then, and ``{"result": {...}}``: its
:class:`Measurement`) and listens on stdin: ``go`` starts the measured load
(so every worker starts at once, after all have connected), ``stop`` ends it
early. Workers run in sessions of their own, so a Ctrl-C at the terminal
reaches only the parent, which tells them ``stop`` and still merges what
they measured. When the parent dies, however it dies, a worker's stdin ends
and the worker exits at once; when the parent fails, it kills them.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from typing import Any

import attrs
import trio

from trioring._constants import (
    CLI_BENCH_PROGRESS_SECONDS,
    CLI_BENCH_WORKER_START_SECONDS,
    CLI_BENCH_WORKER_STDERR_BYTES_MAX,
)
from trioring.cli._bench._load import Control, LoadSettings, Measurement, run_load
from trioring.cli._common import EXIT_FAILURE, CommandError

#: Longer lines from a worker are not its messages: something is wrong.
_LINE_BYTES_MAX = 1 << 20


async def _lines(stream: trio.abc.ReceiveStream) -> AsyncIterator[bytes]:
    pending = bytearray()
    while chunk := await stream.receive_some():
        pending += chunk
        start = 0
        while (end := pending.find(b"\n", start)) >= 0:
            yield bytes(pending[start:end])
            start = end + 1
        del pending[:start]
        if len(pending) > _LINE_BYTES_MAX:
            raise CommandError("a worker process wrote a line too long to be its report")


# --- in the worker -----------------------------------------------------------------------


def _emit(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def serve_as_worker(bootstrap: str, settings: LoadSettings) -> int:
    """Run the load as the parent says, reporting to it on stdout."""
    control = Control()
    measurement = Measurement(settings.mode)
    go = trio.Event()

    async def listen() -> None:
        stream = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
        async for line in _lines(stream):
            if line == b"stop":
                control.stop()
            if line in (b"go", b"stop"):
                go.set()
        # The parent is gone (its end of the pipe closed): nobody would read a result.
        os._exit(EXIT_FAILURE)

    async def ready() -> None:
        _emit({"ready": True})
        await go.wait()

    async def report() -> None:
        while True:
            await trio.sleep(CLI_BENCH_PROGRESS_SECONDS)
            _emit({"progress": {"records": measurement.records, "bytes": measurement.bytes}})

    async with trio.open_nursery() as nursery:
        nursery.start_soon(listen)
        nursery.start_soon(report)
        await run_load(bootstrap, settings, measurement, control, ready)
        nursery.cancel_scope.cancel()
    _emit({"result": measurement.to_json()})
    return 0


# --- in the parent -----------------------------------------------------------------------


@attrs.define(eq=False)
class _Worker:
    index: int
    process: trio.Process
    ready: bool = False
    records: int = 0
    bytes: int = 0
    result: Measurement | None = None
    stderr: bytearray = attrs.Factory(bytearray)
    stderr_closed: trio.Event = attrs.Factory(trio.Event)


class Workers:
    """The worker processes of one run, as the parent sees them."""

    def __init__(self) -> None:
        self._workers: list[_Worker] = []
        self._all_ready = trio.Event()

    def live(self) -> tuple[int, int]:
        """Records and bytes measured so far, as the workers last reported."""
        return (
            sum(worker.records for worker in self._workers),
            sum(worker.bytes for worker in self._workers),
        )

    async def stop(self) -> None:
        """Ask every worker to end its load early (they still report)."""
        for worker in self._workers:
            await self._tell(worker, b"stop\n")

    async def run(self, commands: Sequence[list[str]], control: Control) -> list[Measurement]:
        """Start a worker per command, start their loads together once all are
        ready, and return their measurements."""
        try:
            async with trio.open_nursery() as nursery:
                for index, command in enumerate(commands):
                    process = await trio.lowlevel.open_process(
                        command,
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE,
                        start_new_session=True,
                    )
                    worker = _Worker(index, process)
                    self._workers.append(worker)
                    nursery.start_soon(self._watch, worker, len(commands))
                    nursery.start_soon(self._keep_stderr, worker)
                with trio.move_on_after(CLI_BENCH_WORKER_START_SECONDS) as waiting:
                    await self._all_ready.wait()
                if waiting.cancelled_caught:
                    raise CommandError(
                        f"the worker processes were not ready within "
                        f"{CLI_BENCH_WORKER_START_SECONDS:.0f} s"
                    )
                for worker in self._workers:
                    await self._tell(worker, b"go\n")
                control.started_at = trio.current_time()
        finally:
            with trio.CancelScope(shield=True):
                for worker in self._workers:
                    if worker.process.returncode is None:
                        worker.process.kill()
                    await worker.process.wait()
        results = []
        for worker in self._workers:
            if worker.result is None:
                raise CommandError(f"worker process {worker.index} ended without a result")
            results.append(worker.result)
        return results

    async def _tell(self, worker: _Worker, message: bytes) -> None:
        stdin = worker.process.stdin
        if stdin is None or worker.process.returncode is not None:
            return
        # One that ended already cannot be told; _watch says how it ended.
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await stdin.send_all(message)

    async def _watch(self, worker: _Worker, count: int) -> None:
        stdout = worker.process.stdout
        assert stdout is not None
        async for line in _lines(stdout):
            try:
                message = json.loads(line)
            except ValueError:
                raise CommandError(
                    f"worker process {worker.index} wrote what is not its report: {line[:80]!r}"
                ) from None
            if "ready" in message:
                worker.ready = True
                if all(other.ready for other in self._workers) and len(self._workers) == count:
                    self._all_ready.set()
            elif "progress" in message:
                worker.records = int(message["progress"]["records"])
                worker.bytes = int(message["progress"]["bytes"])
            elif "result" in message:
                worker.result = Measurement.from_json(message["result"])
                worker.records = worker.result.records
                worker.bytes = worker.result.bytes
        code = await worker.process.wait()
        await worker.stderr_closed.wait()
        if code != 0:
            raise CommandError(
                f"worker process {worker.index} failed: {self._reason(worker, code)}"
            )

    async def _keep_stderr(self, worker: _Worker) -> None:
        stderr = worker.process.stderr
        assert stderr is not None
        while chunk := await stderr.receive_some():
            worker.stderr += chunk
            del worker.stderr[:-CLI_BENCH_WORKER_STDERR_BYTES_MAX]
        worker.stderr_closed.set()

    @staticmethod
    def _reason(worker: _Worker, code: int) -> str:
        """The worker's own one-line error, or how it ended."""
        lines = worker.stderr.decode("utf-8", "replace").strip().splitlines()
        errors = [line for line in lines if line.startswith("trioring: error: ")]
        if errors:
            return errors[-1].removeprefix("trioring: error: ")
        if lines:
            return lines[-1]
        return f"killed by signal {-code}" if code < 0 else f"exit code {code}"

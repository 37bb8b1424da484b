"""The fault control endpoint: a broker process's FaultInjector, driven from a test.

``python -m trioring serve --fault-control 127.0.0.1:PORT`` (a test-only
flag) installs a FaultInjector in the broker, in every worker with
``--workers N``, and serves this endpoint next to each: JSON lines over TCP,
one request object a line, one answer a line::

    {"action": "fail", "api": "Produce", "error": "NOT_LEADER_OR_FOLLOWER", "count": 2}
    {"action": "delay", "api": "Fetch", "seconds": 0.5, "count": null}
    {"action": "drop_connection", "api": "OffsetCommit", "count": 1}
    {"action": "clear"}
    {"action": "pending"}
    {"action": "injected"}

Answers are ``{"ok": true, ...}`` or ``{"ok": false, "error": "why"}``.

Whoever reaches the port can make the broker fail, so it binds to a
loopback address only. Its input is untrusted all the same: lines are
bounded, a request that is not a JSON object closes the connection, a
request with a wrong field is answered with why, and nothing that arrives
here can stop the broker. :class:`FaultControl` is the test's side.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import trio
from kio.schema.errors import ErrorCode

from trioring._constants import (
    FAULT_CONTROL_ANSWER_BYTES_MAX,
    FAULT_CONTROL_ANSWER_SECONDS,
    FAULT_CONTROL_CLIENT_SECONDS,
    FAULT_CONTROL_CONNECTIONS_MAX,
    FAULT_CONTROL_IDLE_SECONDS,
    FAULT_CONTROL_LINE_BYTES_MAX,
    FAULT_CONTROL_REFUSAL_SECONDS,
)
from trioring._logging import RateLimitedLogger, printable
from trioring.errors import InvalidArgumentError
from trioring.protocol.kafka import ApiKey
from trioring.testing._faults import Fault, FaultInjector, Injection, entry_json

__all__ = ["FaultControl", "check_loopback", "serve_fault_control"]

logger = logging.getLogger("trioring.testing")
#: Lines a client of the endpoint can cause.
client_log = RateLimitedLogger(logger)


def check_loopback(host: str) -> None:
    """InvalidArgumentError unless ``host`` is a loopback IP address (127.0.0.1, ::1)."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise InvalidArgumentError(
            f"the fault control endpoint listens on a loopback address only (127.0.0.1 or "
            f"::1), not {host!r}: whoever reaches it can make the broker fail"
        )


# --- the broker's side ---------------------------------------------------------------


async def serve_fault_control(
    injector: FaultInjector,
    host: str,
    port: int,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``injector``'s endpoint on ``host:port`` until cancelled; started() gets the port."""
    check_loopback(host)
    (listener,) = await trio.open_tcp_listeners(port, host=host)
    slots = trio.Semaphore(FAULT_CONTROL_CONNECTIONS_MAX)
    task_status.started(listener.socket.getsockname()[1])
    await trio.serve_listeners(partial(_serve_connection, injector, slots), [listener])


async def _serve_connection(
    injector: FaultInjector, slots: trio.Semaphore, stream: trio.SocketStream
) -> None:
    async with stream:
        try:
            if slots.value == 0:
                client_log.warning(
                    "fault control: refused a connection, %d open", FAULT_CONTROL_CONNECTIONS_MAX
                )
                await _refuse(stream)
                return
            async with slots:
                await _serve_lines(injector, stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        except Exception as error:
            # The endpoint's last boundary: nothing that arrives here stops the broker.
            client_log.error(
                "fault control: closing a connection after an unexpected error: %r",
                error,
                exc_info=error,
            )


async def _refuse(stream: trio.SocketStream) -> None:
    """Tell a connection over the limit why it is closed, if that takes no waiting."""
    with trio.move_on_after(FAULT_CONTROL_REFUSAL_SECONDS):
        await stream.send_all(
            _line(
                {
                    "ok": False,
                    "error": f"{FAULT_CONTROL_CONNECTIONS_MAX} control connections are open "
                    "already: try again when one is closed",
                }
            )
        )
        # Take the request it may have sent: a close with bytes unread is a
        # reset, which could discard the line above before the client reads it.
        await stream.receive_some(FAULT_CONTROL_LINE_BYTES_MAX)


async def _serve_lines(injector: FaultInjector, stream: trio.SocketStream) -> None:
    """Answer requests until the client closes, sends no whole request for
    FAULT_CONTROL_IDLE_SECONDS, leaves an answer untaken for
    FAULT_CONTROL_ANSWER_SECONDS, or sends a line that closes the connection."""
    buffer = bytearray()
    while True:
        with trio.move_on_after(FAULT_CONTROL_IDLE_SECONDS) as idle:
            while (end := buffer.find(b"\n")) < 0 and len(buffer) < FAULT_CONTROL_LINE_BYTES_MAX:
                data = await stream.receive_some(FAULT_CONTROL_LINE_BYTES_MAX)
                if not data:
                    return
                buffer += data
        if idle.cancelled_caught:
            return
        if not 0 <= end < FAULT_CONTROL_LINE_BYTES_MAX:
            error = f"a line is at most {FAULT_CONTROL_LINE_BYTES_MAX} bytes"
            answer: dict[str, Any] = {"ok": False, "error": error}
            keep_open = False
        else:
            line = bytes(buffer[:end])
            del buffer[: end + 1]
            answer, keep_open = _answer(injector, line)
        # An answer waits in the socket's buffers until the client reads it; once
        # they are full, a client that never reads would hold this for good.
        with trio.move_on_after(FAULT_CONTROL_ANSWER_SECONDS) as answering:
            await stream.send_all(_line(answer))
        if answering.cancelled_caught:
            client_log.warning(
                "fault control: closing a connection that left its answer unread for %g s",
                FAULT_CONTROL_ANSWER_SECONDS,
            )
            return
        if not keep_open:
            return


def _line(answer: dict[str, Any]) -> bytes:
    # Entries are bounded in these bytes (FAULT_ENTRY_JSON_BYTES_MAX), and so is the line.
    return entry_json(answer) + b"\n"


def _answer(injector: FaultInjector, line: bytes) -> tuple[dict[str, Any], bool]:
    """The answer to one request line, and whether the connection stays open."""
    try:
        request = json.loads(line)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        client_log.warning("fault control: closing a connection that sent %s", printable(line))
        return {"ok": False, "error": "not a JSON line"}, False
    if not isinstance(request, dict):
        return {"ok": False, "error": "a request is a JSON object"}, False
    action = request.get("action")
    try:
        if action == "clear":
            injector.clear()
            return {"ok": True}, True
        if action == "pending":
            return {"ok": True, "pending": [fault.to_json() for fault in injector.pending()]}, True
        if action == "injected":
            return {
                "ok": True,
                "injected": [injection.to_json() for injection in injector.injected()],
                "total": injector.injections_total,
            }, True
        injector.add(Fault.from_json(request))
    except InvalidArgumentError as error:
        return {"ok": False, "error": str(error)}, True
    return {"ok": True}, True


# --- the test's side -----------------------------------------------------------------


class FaultControlError(Exception):
    """The fault control endpoint refused a request or could not be reached."""


class FaultControl:
    """A test's handle on a broker process's faults: the FaultInjector methods, sent to
    every worker's control endpoint (``BrokerProcess.faults``).

    Each worker process has its own injector, so counts are per worker: with
    ``--workers 2``, ``fail("Produce", ..., count=1)`` fails the next Produce
    that reaches worker 0 and the next one that reaches worker 1. Pass
    ``worker=i`` to reach one worker only (the partition's leader, say).
    Calls block for a round trip on 127.0.0.1 (well under a millisecond).
    """

    def __init__(
        self, addresses: Sequence[tuple[str, int]] | Callable[[], Sequence[tuple[str, int]]]
    ) -> None:
        #: Where each worker's endpoint is, worker 0 first (a function: they
        #: change when the broker process restarts).
        self._addresses = addresses if callable(addresses) else (lambda: tuple(addresses))

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return list(self._addresses())

    def fail(
        self,
        api: str | ApiKey,
        error: ErrorCode | str,
        count: int = 1,
        *,
        worker: int | None = None,
    ) -> None:
        """As :meth:`FaultInjector.fail`, in each worker (or ``worker``)."""
        self._send(Fault.fail(api, error, count).to_json(), worker)

    def delay(
        self,
        api: str | ApiKey,
        seconds: float,
        count: int | None = None,
        *,
        worker: int | None = None,
    ) -> None:
        """As :meth:`FaultInjector.delay`, in each worker (or ``worker``)."""
        self._send(Fault.delay(api, seconds, count).to_json(), worker)

    def drop_connection(
        self, api: str | ApiKey, count: int = 1, *, worker: int | None = None
    ) -> None:
        """As :meth:`FaultInjector.drop_connection`, in each worker (or ``worker``)."""
        self._send(Fault.drop_connection(api, count).to_json(), worker)

    def clear(self, *, worker: int | None = None) -> None:
        """Forget every pending fault and the record of injections."""
        self._send({"action": "clear"}, worker)

    def pending(self, *, worker: int | None = None) -> list[Fault]:
        """Every worker's pending faults (worker 0's first)."""
        return [
            Fault.from_json(fault)
            for answer in self._send({"action": "pending"}, worker)
            for fault in answer["pending"]
        ]

    def injected(self, *, worker: int | None = None) -> list[Injection]:
        """Every worker's injections, each with its ``worker`` index (worker 0's first)."""
        return [
            Injection.from_json(injection, index)
            for index, answer in self._answers({"action": "injected"}, worker)
            for injection in answer["injected"]
        ]

    def _send(self, request: dict[str, Any], worker: int | None) -> list[dict[str, Any]]:
        return [answer for _, answer in self._answers(request, worker)]

    def _answers(
        self, request: dict[str, Any], worker: int | None
    ) -> list[tuple[int, dict[str, Any]]]:
        addresses = self.addresses
        if not addresses:
            raise FaultControlError("the broker serves no fault control endpoint")
        if worker is None:
            chosen = list(enumerate(addresses))
        elif 0 <= worker < len(addresses):
            chosen = [(worker, addresses[worker])]
        else:
            raise InvalidArgumentError(f"worker must be 0-{len(addresses) - 1}, not {worker}")
        line = json.dumps(request).encode() + b"\n"
        return [(index, _exchange(address, line)) for index, address in chosen]


def _exchange(address: tuple[str, int], line: bytes) -> dict[str, Any]:
    """Send one request line, read its answer line (blocking, bounded in time and size)."""
    try:
        with socket.create_connection(address, timeout=FAULT_CONTROL_CLIENT_SECONDS) as sock:
            sock.sendall(line)
            received = bytearray()
            while not received.endswith(b"\n"):
                if len(received) > FAULT_CONTROL_ANSWER_BYTES_MAX:
                    raise FaultControlError(
                        f"fault control at {address[0]}:{address[1]}: an answer over "
                        f"{FAULT_CONTROL_ANSWER_BYTES_MAX} bytes"
                    )
                chunk = sock.recv(64 * 1024)
                if not chunk:
                    raise FaultControlError(
                        f"fault control at {address[0]}:{address[1]} closed without answering"
                    )
                received += chunk
    except OSError as error:
        raise FaultControlError(
            f"fault control at {address[0]}:{address[1]} unreachable: {error}"
        ) from None
    try:
        answer = json.loads(received)
    except ValueError:
        raise FaultControlError(
            f"{address[0]}:{address[1]} answered something that is not JSON: is it a "
            "trioring fault control endpoint?"
        ) from None
    if not isinstance(answer, dict) or answer.get("ok") is not True:
        why = answer.get("error") if isinstance(answer, dict) else answer
        raise FaultControlError(f"fault control at {address[0]}:{address[1]} refused: {why}")
    return answer

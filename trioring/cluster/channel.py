"""The control channel between the supervisor and a worker: JSON messages on a socket pair.

Each message is a JSON object behind a 4-byte big-endian length, at most
``CONTROL_MESSAGE_BYTES_MAX``. The supervisor pushes metadata and node
addresses and asks a worker to drain; a worker asks the controller for
changes (requests carry an ``id``, answers a ``reply`` with a ``result`` or
an ``error``). Nothing here knows what the messages mean: ``supervisor.py``
and ``worker.py`` do.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import trio

from trioring import errors
from trioring._constants import CONTROL_MESSAGE_BYTES_MAX

__all__ = ["Channel", "ChannelClosed", "error_from_json", "error_to_json"]

_SIZE = struct.Struct(">I")
Message = dict[str, Any]


class ChannelClosed(Exception):
    """The other end went away (a worker or the supervisor died or stopped)."""


class Channel:
    def __init__(self, stream: trio.abc.Stream) -> None:
        self._stream = stream
        self._buffer = bytearray()
        self._send_lock = trio.Lock()

    async def send(self, message: Message) -> None:
        payload = json.dumps(message, separators=(",", ":")).encode()
        if len(payload) > CONTROL_MESSAGE_BYTES_MAX:
            raise ValueError(f"control message of {len(payload)} bytes is over the limit")
        async with self._send_lock:
            try:
                await self._stream.send_all(_SIZE.pack(len(payload)) + payload)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as error:
                raise ChannelClosed(str(error)) from None

    async def receive(self) -> Message:
        """The next message; ChannelClosed at the end of the stream."""
        while True:
            if len(self._buffer) >= _SIZE.size:
                (size,) = _SIZE.unpack_from(self._buffer)
                if size > CONTROL_MESSAGE_BYTES_MAX:
                    raise ChannelClosed(f"control message of {size} bytes is over the limit")
                if len(self._buffer) >= _SIZE.size + size:
                    payload = bytes(self._buffer[_SIZE.size : _SIZE.size + size])
                    del self._buffer[: _SIZE.size + size]
                    message = json.loads(payload)
                    if not isinstance(message, dict):
                        raise ChannelClosed("a control message is not a JSON object")
                    return message
            try:
                data = await self._stream.receive_some(1 << 16)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as error:
                raise ChannelClosed(str(error)) from None
            if not data:
                raise ChannelClosed("the other end closed the channel")
            self._buffer += data

    async def aclose(self) -> None:
        await self._stream.aclose()


def error_to_json(error: BaseException) -> dict[str, Any]:
    """An exception to send as an answer: its class (if ours), message and Kafka code."""
    code = getattr(error, "kafka_error_code", -1)
    return {"type": type(error).__name__, "message": str(error), "code": int(code)}


def error_from_json(data: dict[str, Any]) -> errors.TrioringError:
    """The exception the controller raised, rebuilt on the worker's side."""
    kind = getattr(errors, str(data.get("type")), None)
    message = str(data.get("message", ""))
    code = int(data.get("code", -1))
    if (
        isinstance(kind, type)
        and issubclass(kind, errors.TrioringError)
        and not issubclass(kind, errors.KafkaError | errors.OffsetOutOfRangeError)
    ):
        error: errors.TrioringError = kind(message)
        return error
    return errors.KafkaError(message, code)

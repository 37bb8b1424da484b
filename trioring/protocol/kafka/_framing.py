"""Kafka framing: every request and response is an int32 big-endian size, then that many bytes."""

from __future__ import annotations

import struct
from collections.abc import Iterator

from trioring._constants import (
    FRAME_BYTES_MAX_DEFAULT,
    FRAME_BYTES_MAX_LIMIT,
    FRAME_SIZE_BYTES,
)
from trioring.errors import ProtocolError

_SIZE = struct.Struct(">i")
assert _SIZE.size == FRAME_SIZE_BYTES

#: Frames at least this big are assembled from the fed chunks with one join
#: instead of being appended to the buffer and then copied out (two copies):
#: a 1 MiB produce costs one copy less, about 5% of the broker's CPU.
LARGE_FRAME_BYTES = 64 * 1024


class FrameDecoder:
    """Cut a byte stream into frames, sans-IO: :meth:`feed` bytes, take :meth:`next_frame`.

    A frame is the payload after one size prefix (request header and body).
    A size that is negative or above ``frame_bytes_max`` raises ProtocolError
    as soon as its four bytes arrive, before any of the body is waited for;
    after that the decoder stays failed and every call raises again.

    Memory: the partial frame at the end of the buffer is at most
    ``FRAME_SIZE_BYTES + frame_bytes_max``; complete frames stay buffered until
    taken, so a caller that drains with :meth:`next_frame` (or :meth:`frames`)
    after each :meth:`feed` holds at most that plus one fed chunk.
    """

    __slots__ = (
        "_buffer",
        "_failure",
        "_parts",
        "_parts_bytes",
        "_parts_frame_bytes",
        "_start",
        "frame_bytes_max",
    )

    def __init__(self, frame_bytes_max: int = FRAME_BYTES_MAX_DEFAULT) -> None:
        if not 0 <= frame_bytes_max <= FRAME_BYTES_MAX_LIMIT:
            raise ValueError(
                f"frame_bytes_max {frame_bytes_max} must be within 0..{FRAME_BYTES_MAX_LIMIT}"
            )
        self.frame_bytes_max = frame_bytes_max
        self._buffer = bytearray()
        # Taking a frame only moves this cursor; the consumed prefix is dropped
        # in feed(), so a run of frames costs no copying of the buffer tail.
        self._start = 0
        self._failure: ProtocolError | None = None
        # A large frame being assembled (its size prefix already taken):
        # the chunks fed since, their total, and the frame's size.
        self._parts: list[bytes] | None = None
        self._parts_bytes = 0
        self._parts_frame_bytes = 0

    @property
    def buffered_bytes(self) -> int:
        """Bytes fed and not yet returned as frames."""
        buffered = len(self._buffer) - self._start
        if self._parts is not None:
            buffered += FRAME_SIZE_BYTES + self._parts_bytes
        return buffered

    @property
    def partial_frame_bytes(self) -> int:
        """Size of the frame being received (its size prefix in, its body not whole); else 0.

        After :meth:`frames` is drained, this is the frame the next bytes
        belong to: a server reserves that much memory before reading on.
        """
        if self._failure is not None:
            return 0
        if self._parts is not None:
            return self._parts_frame_bytes
        if len(self._buffer) - self._start < FRAME_SIZE_BYTES:
            return 0
        (size,) = _SIZE.unpack_from(self._buffer, self._start)
        if not 0 <= size <= self.frame_bytes_max:
            return 0  # next_frame raises for it
        if len(self._buffer) - self._start - FRAME_SIZE_BYTES >= size:
            return 0  # whole: not partial
        return int(size)

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append received bytes; raise ProtocolError if the next frame's size is invalid."""
        self._raise_if_failed()
        if self._parts is not None:
            self._parts.append(bytes(data))  # no copy for bytes, what streams return
            self._parts_bytes += len(self._parts[-1])
            return
        if self._start:
            # CPython drops a bytearray prefix by moving its start pointer, not
            # the bytes, so this stays O(1) even behind a large partial frame.
            del self._buffer[: self._start]
            self._start = 0
        self._buffer += data
        size = self._next_size()
        if size is not None and size >= LARGE_FRAME_BYTES:
            body_start = FRAME_SIZE_BYTES  # the buffer starts at this frame (see above)
            received = len(self._buffer) - body_start
            if received < size:
                # Still arriving: collect the rest as chunks, join once when whole.
                with memoryview(self._buffer) as view:
                    self._parts = [bytes(view[body_start:])]
                self._parts_bytes = received
                self._parts_frame_bytes = size
                self._buffer.clear()

    def next_frame(self) -> bytes | None:
        """The next whole frame without its size prefix, or None until more bytes arrive.

        Returns ``bytes`` (not a view) because kio decodes only read-only buffers.
        """
        self._raise_if_failed()
        if self._parts is not None:
            return self._next_assembled_frame()
        size = self._next_size()
        if size is None:
            return None
        start = self._start + FRAME_SIZE_BYTES
        end = start + size
        buffer = self._buffer
        if end > len(buffer):
            return None
        # One copy, straight from the buffer (slicing the bytearray would copy twice).
        with memoryview(buffer) as view:
            frame = bytes(view[start:end])
        if end == len(buffer):
            # Fully drained: release the memory of a large frame at once.
            buffer.clear()
            self._start = 0
        else:
            self._start = end
        return frame

    def _next_assembled_frame(self) -> bytes | None:
        parts = self._parts
        assert parts is not None
        size = self._parts_frame_bytes
        if self._parts_bytes < size:
            return None
        # Where the frame ends: in parts[index], after ``cut`` of its bytes.
        taken = 0
        index = 0
        while taken + len(parts[index]) < size:
            taken += len(parts[index])
            index += 1
        cut = size - taken
        last = parts[index]
        frame = b"".join([*parts[:index], last[:cut]])
        self._parts = None
        self._parts_bytes = self._parts_frame_bytes = 0
        # What follows the frame goes back to the (empty) buffer.
        assert not self._buffer and not self._start
        self._buffer += memoryview(last)[cut:]
        for part in parts[index + 1 :]:
            self._buffer += part
        return frame

    def frames(self) -> Iterator[bytes]:
        """Yield every whole frame buffered now."""
        while (frame := self.next_frame()) is not None:
            yield frame

    def _next_size(self) -> int | None:
        """Size of the frame at the cursor, checked; None while its prefix is incomplete."""
        if len(self._buffer) - self._start < FRAME_SIZE_BYTES:
            return None
        (size,) = _SIZE.unpack_from(self._buffer, self._start)
        if size < 0 or size > self.frame_bytes_max:
            # Drop what we hold: the connection is unusable and the memory may be large.
            self._buffer = bytearray()
            self._start = 0
            if size < 0:
                self._failure = ProtocolError(f"frame size {size} is negative")
            else:
                self._failure = ProtocolError(
                    f"frame size {size} bytes exceeds the limit of {self.frame_bytes_max} bytes "
                    "(socket.request.max.bytes)"
                )
            raise self._failure
        return int(size)

    def _raise_if_failed(self) -> None:
        if self._failure is not None:
            raise ProtocolError(
                f"frame decoder already failed and cannot resynchronise: {self._failure}"
            )


def encode_frame(payload: bytes | bytearray | memoryview) -> bytes:
    """Prefix ``payload`` with its int32 size."""
    size = memoryview(payload).nbytes
    if size > FRAME_BYTES_MAX_LIMIT:
        raise ValueError(f"payload of {size} bytes does not fit an int32 frame size")
    return b"".join((_SIZE.pack(size), payload))

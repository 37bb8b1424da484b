"""What a server may answer to the bytes the wire fuzzer sent on one connection, sans-IO.

The fuzzer tells :class:`AnswerChecker` every frame it writes and feeds it
every byte the server sends back. The checker cuts the bytes sent as the
server must (int32 size prefixes, a size that is negative or above the
server's limit ends the stream), so even after a lying size prefix it knows
which requests the server can have read, and it holds each answer to them:

- an answer is a frame of sane size whose correlation id is that of the
  next request the server read, in order: a server answers every request
  but an acks=0 Produce, or closes the connection (then nothing follows);
- the answer decodes as the response to that request's API and version
  (ApiVersions answers a version it does not speak in v0).

A Produce may go unanswered (acks=0), so one answer may fit several places
when correlation ids repeat (the fuzzer plays such games): the checker
follows every place that fits, and fails only when none does.
"""

from __future__ import annotations

import struct

import attrs

from trioring._constants import (
    FRAME_SIZE_BYTES,
    REQUEST_HEADER_FIXED_BYTES,
    WIRE_FUZZ_RESPONSE_BYTES_MAX,
)
from trioring.errors import ProtocolError
from trioring.protocol.kafka import ApiKey, api_name, is_supported
from trioring.protocol.kafka._client import decode_response

__all__ = ["AnswerChecker", "AnswerError", "Request"]

_SIZE = struct.Struct(">i")
_PREFIX = struct.Struct(">hhi")
#: Bytes of a response's correlation id: an answer must hold at least that.
_CORRELATION_ID_BYTES = 4


class AnswerError(Exception):
    """The server's bytes are not an answer it may give to what was sent."""


@attrs.frozen
class Request:
    """A request as the server cut it from the bytes sent."""

    #: None if the frame is shorter than a request header's fixed part: the
    #: server cannot answer it and must close the connection.
    correlation_id: int | None
    api_key: int
    api_version: int
    #: Index of the fuzzed frame it starts in (-1 for the fuzzer's own requests).
    frame: int

    def describe(self) -> str:
        if self.correlation_id is None:
            return f"a frame too short for a header (from frame {self.frame})"
        return (
            f"{api_name(self.api_key)} v{self.api_version} correlation id "
            f"{self.correlation_id} (from frame {self.frame})"
        )


class AnswerChecker:
    """One connection: requests written in, answers checked as they come back."""

    def __init__(self, frame_bytes_max: int) -> None:
        self.frame_bytes_max = frame_bytes_max
        #: Every request the server can have read, in order.
        self.requests: list[Request] = []
        #: Positions in ``requests`` the next answer may answer (see the module docstring).
        self._positions = {0}
        self._sent = bytearray()
        #: The frame the first byte of ``_sent`` belongs to.
        self._sent_from = -1
        #: The server cannot frame anything after a bad size prefix.
        self._sent_unframeable = False
        self._received = bytearray()
        self.answers = 0
        #: Answers whose API and version this codec does not decode (another broker's).
        self.answers_unchecked = 0

    # --- what the fuzzer sends ---------------------------------------------------------------

    def sent(self, data: bytes, frame: int) -> list[Request]:
        """Record bytes written (of fuzzed ``frame``); return the requests they complete."""
        if self._sent_unframeable:
            return []
        if not self._sent:
            self._sent_from = frame
        self._sent += data
        sent = self._sent
        position = 0
        completed = []
        while len(sent) - position >= FRAME_SIZE_BYTES:
            (size,) = _SIZE.unpack_from(sent, position)
            if not 0 <= size <= self.frame_bytes_max:
                self._sent_unframeable = True
                break
            end = position + FRAME_SIZE_BYTES + size
            if end > len(sent):
                break
            start = position + FRAME_SIZE_BYTES
            if size >= REQUEST_HEADER_FIXED_BYTES:
                api_key, api_version, correlation_id = _PREFIX.unpack_from(sent, start)
                request = Request(correlation_id, api_key, api_version, self._sent_from)
            else:
                request = Request(None, -1, -1, self._sent_from)
            completed.append(request)
            position = end
            self._sent_from = frame  # the next request starts in this data
        del sent[:position]
        self.requests += completed
        return completed

    def position_after(self, request_index: int) -> bool:
        """Whether every request up to ``request_index`` has been answered (or skipped)."""
        return self._positions == {request_index + 1}

    # --- what the server sends -----------------------------------------------------------------

    def received(self, data: bytes) -> None:
        """Check the server's bytes; AnswerError at the first that cannot be right."""
        self._received += data
        received = self._received
        position = 0
        try:
            while len(received) - position >= FRAME_SIZE_BYTES:
                (size,) = _SIZE.unpack_from(received, position)
                if not _CORRELATION_ID_BYTES <= size <= WIRE_FUZZ_RESPONSE_BYTES_MAX:
                    raise AnswerError(f"an answer frame of {size} bytes")
                end = position + FRAME_SIZE_BYTES + size
                if end > len(received):
                    break
                self._answer(bytes(received[position + FRAME_SIZE_BYTES : end]))
                position = end
        finally:
            del received[:position]

    def _answer(self, frame: bytes) -> None:
        (correlation_id,) = _SIZE.unpack_from(frame)
        answered: dict[int, Request] = {}
        for start in self._positions:
            for index in range(start, len(self.requests)):
                request = self.requests[index]
                if request.correlation_id is None:
                    break  # the server must close here
                if request.correlation_id == correlation_id:
                    answered[index + 1] = request
                if request.api_key != ApiKey.PRODUCE:
                    break  # only an acks=0 Produce goes unanswered
        if not answered:
            expected = sorted(
                {
                    self.requests[index].describe()
                    for index in self._positions
                    if index < len(self.requests)
                }
            )
            raise AnswerError(
                f"an answer with correlation id {correlation_id} answers no request in order; "
                f"next due: {', '.join(expected) or 'none (every request was answered)'}"
            )
        decodable = [request for request in answered.values() if _decodes(request, frame)]
        if not decodable:
            if not any(_checkable(request) for request in answered.values()):
                self.answers_unchecked += 1
            else:
                request = next(r for r in answered.values() if _checkable(r))
                raise AnswerError(
                    f"the answer to {request.describe()} does not decode: "
                    f"{_decode_error(request, frame)}"
                )
        else:
            answered = {
                position: request
                for position, request in answered.items()
                if request in decodable or not _checkable(request)
            }
        self._positions = set(answered)
        self.answers += 1


def _checkable(request: Request) -> bool:
    return request.api_key == ApiKey.API_VERSIONS or is_supported(
        request.api_key, request.api_version
    )


def _versions(request: Request) -> list[int]:
    """The versions the answer may be in: ApiVersions answers an unknown version in v0."""
    if request.api_key == ApiKey.API_VERSIONS:
        if is_supported(request.api_key, request.api_version):
            return [request.api_version, 0]
        return [0]
    return [request.api_version] if is_supported(request.api_key, request.api_version) else []


def _decode_error(request: Request, frame: bytes) -> str | None:
    """Why the answer does not decode in any version it may be in (None: it does)."""
    error = "no version to decode it in"
    for version in _versions(request):
        try:
            decode_response(request.api_key, version, frame)
        except ProtocolError as problem:
            error = str(problem)
        except Exception as problem:  # the codec's bug, but the answer is still wrong
            error = f"{type(problem).__name__}: {problem}"
        else:
            return None
    return error


def _decodes(request: Request, frame: bytes) -> bool:
    return _checkable(request) and _decode_error(request, frame) is None

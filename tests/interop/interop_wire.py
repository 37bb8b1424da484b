"""Raw Kafka wire helpers for the interop tests: sockets and hand-written encodings.

Independent of trioring's codec and of every client library, so the tests can
create topics, inspect served record batches and send malformed input without
trusting the code under test to describe itself.
"""

from __future__ import annotations

import dataclasses
import socket
import struct
import time
from collections import Counter
from types import TracebackType

from trioring.testing import BrokerProcess

API_PRODUCE = 0
API_FETCH = 1
API_METADATA = 3
API_API_VERSIONS = 18
API_CREATE_TOPICS = 19

UNSUPPORTED_VERSION = 35
CODEC_NAMES = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}

#: Seconds any single raw socket operation may take.
SOCKET_SECONDS = 10.0


def request_header(
    api_key: int, api_version: int, correlation_id: int, client_id: bytes | None = b"interop-raw"
) -> bytes:
    """Request header v1 (api key, version, correlation id, int16-length client id)."""
    head = struct.pack(">hhi", api_key, api_version, correlation_id)
    if client_id is None:
        return head + struct.pack(">h", -1)
    return head + struct.pack(">h", len(client_id)) + client_id


def frame(payload: bytes) -> bytes:
    return struct.pack(">i", len(payload)) + payload


def string(text: str) -> bytes:
    data = text.encode()
    return struct.pack(">h", len(data)) + data


def nullable_string(text: str | None) -> bytes:
    return struct.pack(">h", -1) if text is None else string(text)


class Reader:
    """Big-endian cursor over a response body."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.position = 0

    def take(self, count: int) -> bytes:
        end = self.position + count
        assert end <= len(self.data), (
            f"response ends early: wanted {count} bytes at {self.position}"
        )
        chunk = self.data[self.position : end]
        self.position = end
        return chunk

    def int8(self) -> int:
        return struct.unpack(">b", self.take(1))[0]

    def int16(self) -> int:
        return struct.unpack(">h", self.take(2))[0]

    def int32(self) -> int:
        return struct.unpack(">i", self.take(4))[0]

    def int64(self) -> int:
        return struct.unpack(">q", self.take(8))[0]

    def string(self) -> str | None:
        length = self.int16()
        return None if length < 0 else self.take(length).decode()

    def bytes_(self) -> bytes | None:
        length = self.int32()
        return None if length < 0 else self.take(length)

    @property
    def remaining(self) -> int:
        return len(self.data) - self.position


class RawConnection:
    """A blocking TCP connection to the broker with deadline-bounded reads."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.socket = socket.create_connection((host, port), timeout=SOCKET_SECONDS)
        self.local_address = "{}:{}".format(*self.socket.getsockname()[:2])

    def __enter__(self) -> RawConnection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self.socket.close()

    def send(self, data: bytes) -> None:
        self.socket.settimeout(SOCKET_SECONDS)
        self.socket.sendall(data)

    def receive_exactly(self, count: int, timeout: float = SOCKET_SECONDS) -> bytes:
        deadline = time.monotonic() + timeout
        chunks: list[bytes] = []
        received = 0
        while received < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"received {received} of {count} bytes in {timeout} s")
            self.socket.settimeout(remaining)
            chunk = self.socket.recv(count - received)
            if not chunk:
                raise ConnectionError(f"connection closed after {received} of {count} bytes")
            chunks.append(chunk)
            received += len(chunk)
        return b"".join(chunks)

    def receive_frame(self, timeout: float = SOCKET_SECONDS) -> bytes:
        """One response frame without its size prefix."""
        (size,) = struct.unpack(">i", self.receive_exactly(4, timeout))
        assert 0 <= size < 1 << 30, f"absurd response size {size}"
        return self.receive_exactly(size, timeout)

    def request(self, payload: bytes, timeout: float = SOCKET_SECONDS) -> bytes:
        self.send(frame(payload))
        return self.receive_frame(timeout)

    def read_until_closed(self, timeout: float) -> tuple[str, bytes]:
        """Read until the peer closes: ("eof" | "reset" | "timeout", bytes received)."""
        deadline = time.monotonic() + timeout
        received = bytearray()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return "timeout", bytes(received)
            self.socket.settimeout(remaining)
            try:
                chunk = self.socket.recv(65536)
            except TimeoutError:
                return "timeout", bytes(received)
            except ConnectionResetError:
                return "reset", bytes(received)
            if not chunk:
                return "eof", bytes(received)
            received += chunk


# --- the broker's log -------------------------------------------------------------------

#: Log markers that mean the broker hit something unexpected.
BAD_LOG_MARKERS = ("Traceback", " ERROR ", " CRITICAL ")


def broker_log(broker: BrokerProcess) -> str:
    try:
        return broker.log_path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def unexpected_log_lines(broker: BrokerProcess) -> list[str]:
    return [
        line
        for line in broker_log(broker).splitlines()
        if any(marker in line for marker in BAD_LOG_MARKERS)
    ]


# --- ApiVersions -------------------------------------------------------------------------


def api_versions_v0_request(correlation_id: int, api_version: int = 0) -> bytes:
    return request_header(API_API_VERSIONS, api_version, correlation_id)


def decode_api_versions_v0(
    response: bytes,
) -> tuple[int, int, dict[int, tuple[int, int]]]:
    """(correlation id, error code, {api key: (min, max)}) of a v0-format response."""
    reader = Reader(response)
    correlation_id = reader.int32()
    error_code = reader.int16()
    count = reader.int32()
    assert 0 <= count < 1000, f"absurd ApiVersions array length {count}"
    ranges = {}
    for _ in range(count):
        key, low, high = reader.int16(), reader.int16(), reader.int16()
        ranges[key] = (low, high)
    assert reader.remaining == 0, f"{reader.remaining} unexpected bytes after a v0 body"
    return correlation_id, error_code, ranges


def api_versions_round_trip(port: int) -> dict[int, tuple[int, int]]:
    """A fresh connection, ApiVersions v0, checked: the broker answers sanely."""
    with RawConnection(port) as connection:
        correlation_id, code, ranges = decode_api_versions_v0(
            connection.request(api_versions_v0_request(4242))
        )
    assert (correlation_id, code) == (4242, 0)
    return ranges


# --- CreateTopics v2 ------------------------------------------------------------------------


def create_topic(
    port: int, name: str, partitions: int, configs: dict[str, str] | None = None
) -> None:
    """CreateTopics v2 by hand, replication factor 1; raises AssertionError on an error code."""
    config_items = sorted((configs or {}).items())
    body = (
        struct.pack(">i", 1)
        + string(name)
        + struct.pack(">ih", partitions, 1)
        + struct.pack(">i", 0)  # no manual assignments
        + struct.pack(">i", len(config_items))
        + b"".join(string(key) + nullable_string(value) for key, value in config_items)
        + struct.pack(">i?", 10_000, False)
    )
    with RawConnection(port) as connection:
        response = connection.request(request_header(API_CREATE_TOPICS, 2, 7) + body)
    reader = Reader(response)
    assert reader.int32() == 7
    reader.int32()  # throttle time
    assert reader.int32() == 1
    assert reader.string() == name
    code, message = reader.int16(), reader.string()
    assert code == 0, f"CreateTopics {name!r} failed: error {code}: {message}"


# --- Fetch v4 --------------------------------------------------------------------------------


def _fetch_v4(
    connection: RawConnection, topic: str, partition: int, offset: int
) -> tuple[int, int, bytes]:
    """(error code, high watermark, records) of one partition."""
    body = (
        struct.pack(">iiiib", -1, 100, 1, 4 << 20, 0)
        + struct.pack(">i", 1)
        + string(topic)
        + struct.pack(">i", 1)
        + struct.pack(">iqi", partition, offset, 4 << 20)
    )
    reader = Reader(connection.request(request_header(API_FETCH, 4, 99) + body))
    assert reader.int32() == 99
    reader.int32()  # throttle time
    assert reader.int32() == 1
    assert reader.string() == topic
    assert reader.int32() == 1
    assert reader.int32() == partition
    code = reader.int16()
    high_watermark = reader.int64()
    reader.int64()  # last stable offset
    aborted = reader.int32()
    for _ in range(max(aborted, 0)):
        reader.int64()
        reader.int64()
    records = reader.bytes_() or b""
    return code, high_watermark, records


@dataclasses.dataclass(frozen=True)
class BatchHeader:
    """The fields of a served record batch's header the tests look at."""

    base_offset: int
    codec: str
    last_offset_delta: int
    producer_id: int
    producer_epoch: int
    base_sequence: int


def served_batch_headers(port: int, topic: str, partition: int) -> tuple[list[BatchHeader], int]:
    """Every record batch the broker serves for a partition: ([header], high watermark).

    Walks the log with raw Fetch v4 requests and reads each batch's header as
    the broker sends it: attributes at byte 21 (low three bits: the codec),
    lastOffsetDelta at 23, producerId, producerEpoch and baseSequence at 43-56.
    """
    batches: list[BatchHeader] = []
    offset = 0
    deadline = time.monotonic() + 60
    with RawConnection(port) as connection:
        while True:
            assert time.monotonic() < deadline, "walking the partition took too long"
            code, high_watermark, records = _fetch_v4(connection, topic, partition, offset)
            assert code == 0, f"Fetch {topic}-{partition}@{offset}: error {code}"
            if offset >= high_watermark:
                return batches, high_watermark
            position = 0
            progressed = False
            while position + 61 <= len(records):
                base_offset, batch_length = struct.unpack_from(">qi", records, position)
                if position + 12 + batch_length > len(records):
                    break  # a partial batch at the end of the response
                magic = records[position + 16]
                assert magic == 2, f"batch at offset {base_offset} has magic {magic}"
                (attributes,) = struct.unpack_from(">h", records, position + 21)
                (last_offset_delta,) = struct.unpack_from(">i", records, position + 23)
                producer_id, producer_epoch, base_sequence = struct.unpack_from(
                    ">qhi", records, position + 43
                )
                if base_offset + last_offset_delta >= offset:
                    batches.append(
                        BatchHeader(
                            base_offset,
                            CODEC_NAMES[attributes & 7],
                            last_offset_delta,
                            producer_id,
                            producer_epoch,
                            base_sequence,
                        )
                    )
                    offset = base_offset + last_offset_delta + 1
                    progressed = True
                position += 12 + batch_length
            assert progressed, f"Fetch {topic}-{partition}@{offset} returned no whole batch"


def served_batches(port: int, topic: str, partition: int) -> tuple[list[tuple[int, str]], int]:
    """Every record batch the broker serves for a partition: ([(base offset, codec)], hw)."""
    headers, high_watermark = served_batch_headers(port, topic, partition)
    return [(header.base_offset, header.codec) for header in headers], high_watermark


def served_codecs(port: int, topic: str, partitions: int) -> tuple[Counter[str], int]:
    """(batches per codec, total high watermark) over all partitions of a topic."""
    codecs: Counter[str] = Counter()
    total = 0
    for partition in range(partitions):
        batches, high_watermark = served_batches(port, topic, partition)
        codecs.update(codec for _, codec in batches)
        total += high_watermark
    return codecs, total


# --- Metadata v4 ----------------------------------------------------------------------------


def metadata_v4(
    port: int, topics: list[str] | None, *, allow_auto_topic_creation: bool
) -> dict[str, tuple[int, int]]:
    """Metadata v4 by hand: {topic: (error code, partition count)}."""
    if topics is None:
        names = struct.pack(">i", -1)
    else:
        names = struct.pack(">i", len(topics)) + b"".join(string(name) for name in topics)
    body = names + struct.pack(">?", allow_auto_topic_creation)
    with RawConnection(port) as connection:
        reader = Reader(connection.request(request_header(API_METADATA, 4, 31) + body))
    assert reader.int32() == 31
    reader.int32()  # throttle time
    for _ in range(reader.int32()):  # brokers
        reader.int32()
        reader.string()
        reader.int32()
        reader.string()
    reader.string()  # cluster id
    reader.int32()  # controller id
    result = {}
    for _ in range(reader.int32()):
        code = reader.int16()
        name = reader.string()
        reader.int8()  # is_internal
        partitions = reader.int32()
        for _ in range(partitions):
            reader.int16()
            reader.int32()
            reader.int32()
            for _ in range(reader.int32()):  # replicas
                reader.int32()
            for _ in range(reader.int32()):  # isr
                reader.int32()
        assert name is not None
        result[name] = (code, partitions)
    assert reader.remaining == 0
    return result

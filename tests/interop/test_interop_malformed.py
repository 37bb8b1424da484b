"""Malformed input over raw sockets: the broker closes that one connection, logs
one line naming the peer, and keeps serving everyone else.

All cases share one broker; after each, the broker process must still be
alive and a real client (confluent-kafka, acks=all, with a delivery check)
must still work against it.
"""

from __future__ import annotations

import re
import socket
import struct
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from interop_wire import (
    API_API_VERSIONS,
    API_METADATA,
    API_PRODUCE,
    UNSUPPORTED_VERSION,
    RawConnection,
    api_versions_round_trip,
    api_versions_v0_request,
    broker_log,
    decode_api_versions_v0,
    frame,
    request_header,
)

from trioring.testing import BrokerProcess

CLOSE_SECONDS = 5.0
LOG_SECONDS = 5.0
HEALTH_TOPIC = "interop-malformed-health"


def assert_broker_serves(broker: BrokerProcess) -> None:
    """The process lives, answers raw ApiVersions, and a real client gets an acks=all ack."""
    assert broker.process is not None and broker.process.poll() is None, "the broker died"
    api_versions_round_trip(broker.port)
    confluent_kafka = pytest.importorskip("confluent_kafka")
    producer = confluent_kafka.Producer(
        {
            "bootstrap.servers": broker.bootstrap,
            "acks": "all",
            "linger.ms": 0,
            "message.timeout.ms": 10_000,
        }
    )
    reports = []
    try:
        producer.produce(HEALTH_TOPIC, b"still alive", on_delivery=lambda e, m: reports.append(e))
        assert producer.flush(15) == 0, "no delivery report within 15 s"
    finally:
        producer.close()
    assert reports == [None], reports


def _peer_lines(broker: BrokerProcess, peer: str, since: int) -> list[str]:
    pattern = re.compile(rf"\s{re.escape(peer)}:\s")
    return [line for line in broker_log(broker)[since:].splitlines() if pattern.search(line)]


def _wait_for_peer_lines(broker: BrokerProcess, peer: str, since: int) -> list[str]:
    deadline = time.monotonic() + LOG_SECONDS
    while not (lines := _peer_lines(broker, peer, since)) and time.monotonic() < deadline:
        time.sleep(0.02)
    return lines


def _send_and_expect_close(broker: BrokerProcess, data: bytes) -> tuple[str, list[str]]:
    """Send ``data``, expect the broker to close without answering; returns
    (the peer address the broker saw, its log lines about that peer)."""
    since = len(broker_log(broker))
    with RawConnection(broker.port) as connection:
        connection.send(data)
        # Not shutting down our side: the broker must close on its own.
        outcome, received = connection.read_until_closed(CLOSE_SECONDS)
        peer = connection.local_address
    assert outcome in ("eof", "reset"), f"the broker kept the connection open ({outcome})"
    assert received == b"", f"the broker answered garbage with {received!r}"
    return peer, _wait_for_peer_lines(broker, peer, since)


BAD_INPUTS = {
    "garbage": b"\xde\xad\xbe\xef" * 16,
    "size 2**31-1": struct.pack(">i", 2**31 - 1),
    "size 2**31-1 with data": struct.pack(">i", 2**31 - 1) + b"\x00" * 100,
    "negative size -1": struct.pack(">i", -1),
    "negative size -2**31": struct.pack(">i", -(2**31)),
    "empty frame": frame(b""),
    "frame shorter than a header": frame(b"\x00\x03\x00"),
    "unknown api key": frame(request_header(9999, 0, 1)),
    "negative api key": frame(request_header(-7, 0, 1)),
    "produce v99": frame(request_header(API_PRODUCE, 99, 1) + b"\x00" * 32),
    "produce v2 (below the supported range)": frame(request_header(API_PRODUCE, 2, 1)),
    "metadata v4 with a truncated body": frame(
        request_header(API_METADATA, 4, 1) + b"\x00\x00\x00\x05"
    ),
    "client id longer than the frame": frame(
        struct.pack(">hhih", API_METADATA, 4, 1, 3000) + b"ab"
    ),
    "client id with negative length": frame(struct.pack(">hhih", API_METADATA, 4, 1, -5)),
}


@pytest.mark.parametrize("data", list(BAD_INPUTS.values()), ids=list(BAD_INPUTS))
def test_bad_input_closes_only_that_connection(module_broker, data):
    # A client connected before the bad input keeps working through it.
    with RawConnection(module_broker.port) as bystander:
        peer, lines = _send_and_expect_close(module_broker, data)
        _, code, _ = decode_api_versions_v0(bystander.request(api_versions_v0_request(5)))
        assert code == 0
    assert len(lines) == 1, f"expected one log line about {peer}, got {lines}"
    assert "closing connection" in lines[0]
    assert_broker_serves(module_broker)


def test_bytes_after_a_valid_body_are_ignored_as_by_kafka(module_broker):
    # Kafka's parser ignores them; librdkafka 2.16 sends some (docs/protocol.md).
    since = len(broker_log(module_broker))
    with RawConnection(module_broker.port) as connection:
        body = struct.pack(">i?", 0, False) + b"\xff" * 7  # no topics, no auto-creation
        connection.send(frame(request_header(API_METADATA, 4, 21) + body))
        answer = connection.receive_frame()
        assert struct.unpack_from(">i", answer)[0] == 21  # answered, correlation id kept
        peer = connection.local_address
    assert _peer_lines(module_broker, peer, since) == []
    assert_broker_serves(module_broker)


def test_truncated_frame_is_waited_for_then_dropped(module_broker):
    since = len(broker_log(module_broker))
    with RawConnection(module_broker.port) as connection:
        header = request_header(API_API_VERSIONS, 0, 3)
        connection.send(struct.pack(">i", len(header) + 50) + header)
        # The rest of the frame may still come: no answer, no close.
        outcome, received = connection.read_until_closed(0.5)
        assert (outcome, received) == ("timeout", b"")
        peer = connection.local_address
    # The client hung up mid-frame: nothing to log, nothing broken.
    time.sleep(0.2)
    assert _peer_lines(module_broker, peer, since) == []
    assert_broker_serves(module_broker)


def test_request_split_byte_by_byte_and_pipelined(module_broker):
    requests = [api_versions_v0_request(correlation_id) for correlation_id in (11, 12, 13)]
    with RawConnection(module_broker.port) as connection:
        connection.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for byte in frame(requests[0]):
            connection.send(bytes([byte]))
            time.sleep(0.001)
        assert decode_api_versions_v0(connection.receive_frame())[:2] == (11, 0)
        # Two requests in one send: two answers, in order.
        connection.send(frame(requests[1]) + frame(requests[2]))
        answers = [decode_api_versions_v0(connection.receive_frame())[:2] for _ in range(2)]
        assert answers == [(12, 0), (13, 0)]


def test_api_versions_v99_gets_unsupported_version_in_a_v0_body(module_broker):
    since = len(broker_log(module_broker))
    with RawConnection(module_broker.port) as connection:
        for body in (b"", b"\x00\x01\x02 a body in a format from the future"):
            response = connection.request(request_header(API_API_VERSIONS, 99, 77) + body)
            # int32 size (stripped), int32 correlation id, int16 error code, then
            # the v0 array of (api key, min, max): nothing else.
            assert struct.unpack_from(">ih", response) == (77, UNSUPPORTED_VERSION)
            correlation_id, code, ranges = decode_api_versions_v0(response)
            assert (correlation_id, code) == (77, UNSUPPORTED_VERSION)
            assert ranges[API_API_VERSIONS][0] == 0 and ranges[API_API_VERSIONS][1] >= 3
            low, high = ranges[API_PRODUCE]
            assert low <= 3 <= 7 <= high  # old librdkafka needs both in range
            assert ranges[1][0] <= 4  # Fetch 4: the v2 record format for old librdkafka
            assert 71 not in ranges  # GetTelemetrySubscriptions would be called
            for key, (low, high) in ranges.items():
                assert 0 <= low <= high, f"API {key}: range {low}..{high}"
        # The connection stays usable: the client retries with a version we share.
        _, code, ranges_v0 = decode_api_versions_v0(connection.request(api_versions_v0_request(78)))
        assert code == 0 and ranges_v0 == ranges
    assert _peer_lines(module_broker, connection.local_address, since) == []
    assert_broker_serves(module_broker)


# --- random input ----------------------------------------------------------------------------

#: APIs whose random bodies are harmless to execute (no CreateTopics with
#: absurd partition counts, no Fetch, JoinGroup or SyncGroup that may wait for minutes).
_HARMLESS_APIS = [0, 2, 3, 8, 9, 10, 12, 13, 15, 16, 18, 20, 22, 32, 9999]

random_input = st.one_of(
    st.binary(max_size=300),
    st.binary(max_size=300).map(frame),
    st.builds(
        lambda key, version, correlation_id, body: frame(
            request_header(key, version, correlation_id) + body
        ),
        st.sampled_from(_HARMLESS_APIS),
        st.integers(-1, 12),
        st.integers(-(2**31), 2**31 - 1),
        st.binary(max_size=200),
    ),
)


@pytest.mark.slow
@settings(
    max_examples=50,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(data=random_input)
def test_random_bytes_never_hurt_the_broker(module_broker, data):
    since = len(broker_log(module_broker))
    with RawConnection(module_broker.port) as connection:
        connection.send(data)
        connection.socket.shutdown(socket.SHUT_WR)
        # Whatever it makes of the bytes, after our EOF the broker closes.
        outcome, _ = connection.read_until_closed(CLOSE_SECONDS)
        peer = connection.local_address
    assert outcome in ("eof", "reset"), f"connection left open after EOF ({outcome})"
    assert len(_peer_lines(module_broker, peer, since)) <= 1
    assert_broker_serves(module_broker)


# --- valid requests with values Kafka refuses ---------------------------------------------


def test_kafka_python_with_a_negative_partition_fetch_limit(module_broker, topic_name):
    """Before: ``max_partition_fetch_bytes=-1`` made the broker process exit
    (InvalidArgumentError from the fetch handler, handled nowhere). Now that
    partition gets INVALID_REQUEST, which kafka-python raises, and the broker
    goes on serving everyone, this client too once it asks sanely."""
    kafka = pytest.importorskip("kafka")
    producer = kafka.KafkaProducer(bootstrap_servers=module_broker.bootstrap)
    producer.send(topic_name, b"kept").get(timeout=15)
    producer.close()
    consumer = kafka.KafkaConsumer(
        topic_name,
        bootstrap_servers=module_broker.bootstrap,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=-1,
        consumer_timeout_ms=5000,
    )
    try:
        with pytest.raises(kafka.errors.InvalidRequestError):
            list(consumer)
    finally:
        consumer.close()
    assert_broker_serves(module_broker)
    consumer = kafka.KafkaConsumer(
        topic_name,
        bootstrap_servers=module_broker.bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
    )
    try:
        assert next(consumer).value == b"kept"
    finally:
        consumer.close()

"""Every advertised API at every advertised version, with adversarial field values.

Hypothesis builds well-formed requests (they decode as their schema says)
whose values are what a hostile or broken client sends (trioring.fuzz's
request strategies, which the wire fuzzer draws from too).
A real broker process must answer each with a response that decodes (error
codes as Kafka gives them) or close that connection, and then go on serving:
after every example it answers ApiVersions on a new connection, and at the
end a real client (confluent-kafka) produces and consumes through it. No
request may reach the boundary that catches bugs: the broker's log must show
no traceback and no "failed unexpectedly".
"""

from __future__ import annotations

import datetime
import socket
import struct
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kio.schema.create_topics.v3.request import CreatableTopic, CreateTopicsRequest
from kio.static.primitive import i32Timedelta
from server_support import exchange

from trioring.fuzz._requests import KNOWN_TOPIC, client_ids, entity
from trioring.protocol.kafka import (
    ApiKey,
    encode_request_header,
    is_supported,
    request_schema,
)
from trioring.server import advertised_versions
from trioring.testing import BrokerProcess

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "interop"))
from interop_wire import api_versions_round_trip, broker_log, unexpected_log_lines

SOCKET_SECONDS = 10.0
SIZE = struct.Struct(">i")
HEALTH_TOPIC = "fuzz-health"

#: Every advertised version the broker serves (Produce v0-v2 are advertised
#: but refused, as by Kafka 4.0: see test_produce_before_v3_closes_the_connection).
CASES = [
    (key, version)
    for key, (low, high) in sorted(advertised_versions().items())
    for version in range(low, high + 1)
    if is_supported(key, version)
]


@pytest.fixture(scope="module", params=[1, 2], ids=["1-worker", "2-workers"])
def broker(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[BrokerProcess]:
    """One broker process, or a supervisor and two workers (requests go to worker 0)."""
    directory = tmp_path_factory.mktemp("fuzz")
    config = directory / "broker.toml"
    # Joins complete at once (no 300 ms wait for more members per example).
    config.write_text("[groups]\ninitial_rebalance_delay_ms = 0\n")
    with BrokerProcess(
        directory / "data", workers=request.param, extra_arguments=["--config", str(config)]
    ) as process:
        _create_known_topic(process.port)
        yield process
        assert process.process is not None and process.process.poll() is None, "broker died"
        _check_real_client(process)
        code = process.stop()
    assert code == 0, f"broker exited with {code}:\n{broker_log(process)[-3000:]}"
    bad = unexpected_log_lines(process)
    log = broker_log(process)
    assert not bad, "broker logged errors:\n" + "\n".join(bad[:20])
    assert "failed unexpectedly" not in log and "unexpected error" not in log, log[-3000:]


def _create_known_topic(port: int) -> None:
    request = CreateTopicsRequest(
        topics=(
            CreatableTopic(
                name=KNOWN_TOPIC,  # type: ignore[arg-type]
                num_partitions=2,  # type: ignore[arg-type]
                replication_factor=1,  # type: ignore[arg-type]
                assignments=(),
                configs=(),
            ),
        ),
        timeout=_parse_ms(5000),
        validate_only=False,
    )
    outcome = exchange(port, ApiKey.CREATE_TOPICS, 3, request, "fuzz-setup")
    assert outcome != "closed"


def _parse_ms(milliseconds: int) -> Any:
    return i32Timedelta.parse(datetime.timedelta(milliseconds=milliseconds))


def _check_real_client(broker: BrokerProcess) -> None:
    confluent_kafka = pytest.importorskip("confluent_kafka")
    producer = confluent_kafka.Producer(
        {"bootstrap.servers": broker.bootstrap, "acks": "all", "message.timeout.ms": 10_000}
    )
    reports: list[Any] = []
    producer.produce(HEALTH_TOPIC, b"alive", on_delivery=lambda error, _: reports.append(error))
    assert producer.flush(15) == 0 and reports == [None], reports
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": "fuzz-health",
            "auto.offset.reset": "earliest",
        }
    )
    try:
        consumer.subscribe([HEALTH_TOPIC])
        deadline = time.monotonic() + 20
        message = None
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                break
        assert message is not None and message.value() == b"alive"
    finally:
        consumer.close()


@pytest.mark.slow
@pytest.mark.parametrize(("api_key", "version"), CASES, ids=[f"{k}v{v}" for k, v in CASES])
@settings(
    max_examples=25,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_adversarial_requests_get_error_codes_not_a_dead_broker(
    broker: BrokerProcess, api_key: int, version: int, data: st.DataObject
) -> None:
    body = data.draw(entity(request_schema(api_key, version)), label="request")
    client_id = data.draw(client_ids(), label="client_id")
    outcome = exchange(broker.port, api_key, version, body, client_id)
    if outcome == "closed":
        # Only frames that break the wire rules may close the connection, and
        # these are well-formed; the one exception is a request naming an
        # API the broker refuses outright, which none of these is.
        pytest.fail(f"the broker closed the connection instead of answering {body!r}")
    assert broker.process is not None and broker.process.poll() is None, "the broker died"
    api_versions_round_trip(broker.port)


@pytest.mark.parametrize("version", [0, 1, 2])
def test_produce_before_v3_closes_the_connection(broker: BrokerProcess, version: int) -> None:
    # Advertised (old librdkafka needs v0 in the range to compress) but, as in
    # Kafka 4.0, refused: the connection closes and the broker serves on.
    body = struct.pack(">hi", 1, 1000) + struct.pack(">i", 0)  # acks, timeout, no topics
    frame = encode_request_header(ApiKey.PRODUCE, version, 42, "old", flexible=False) + body
    with socket.create_connection(("127.0.0.1", broker.port), timeout=SOCKET_SECONDS) as sock:
        sock.sendall(SIZE.pack(len(frame)) + frame)
        assert sock.recv(1) == b"", "the connection stays open"
    assert broker.process is not None and broker.process.poll() is None, "the broker died"
    api_versions_round_trip(broker.port)

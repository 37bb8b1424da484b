"""Broker restarts under real clients: idempotent producers and acks=all durability.

Idempotent producers stream sequence-numbered records from a background
thread; the main thread restarts the broker (SIGKILL, or SIGTERM for a
graceful stop) after the first acknowledgements. To be sure the restart hits
records the client has sent but not had acknowledged, the broker is frozen
with SIGSTOP first: the producer keeps sending into its socket, nothing can be
acknowledged, and then the frozen broker is killed (or resumed straight into a
graceful shutdown). Afterwards every record must be there exactly once, in
order, at the offset its acknowledgement named.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from interop_clients import (
    CONSUMERS,
    NULL_HEADER_OK,
    NULL_RECORD_OK,
    PRODUCERS,
    check_round_trip,
    close_confluent_producer,
    import_kafka_python,
    sample_records,
)
from interop_wire import create_topic

from trioring.testing import BrokerProcess

PARTITIONS = 3
RECORDS = 6000
#: Acknowledgements to wait for before freezing the broker.
ACKS_BEFORE_RESTART = 1000
#: Records handed to the client between pauses, and the pause: a steady stream.
CHUNK = 100
PAUSE_SECONDS = 0.02
#: How long the frozen broker lets the client pile up unacknowledged requests.
FREEZE_SECONDS = 0.3
STREAM_SECONDS = 90.0
FILLER = b"." * 100


def sequence_value(sequence: int) -> bytes:
    return b"%08d|" % sequence + FILLER


class StreamingProducer:
    """Produces ``total`` records (partition = sequence % partitions) in a thread."""

    def __init__(self, bootstrap: str, topic: str, total: int) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.total = total
        self.produced = 0
        self.acked: list[tuple[int, int, int]] = []  # (sequence, partition, offset)
        self.errors: list[str] = []
        self.acked_at_restart = -1
        self._thread = threading.Thread(target=self._run_guarded, daemon=True)

    def start(self) -> StreamingProducer:
        self._thread.start()
        return self

    def join(self) -> None:
        self._thread.join(STREAM_SECONDS + 30)
        assert not self._thread.is_alive(), "the producer thread did not finish"

    def _run_guarded(self) -> None:
        try:
            self.run()
        except BaseException as error:  # reported by the test, not lost in the thread
            self.errors.append(f"producer thread: {error!r}")

    def run(self) -> None:
        raise NotImplementedError


class ConfluentStreamingProducer(StreamingProducer):
    def run(self) -> None:
        confluent_kafka = pytest.importorskip("confluent_kafka")
        producer = confluent_kafka.Producer(
            {
                "bootstrap.servers": self.bootstrap,
                "enable.idempotence": True,
                "linger.ms": 2,
                "message.timeout.ms": int(STREAM_SECONDS * 1000),
                "reconnect.backoff.max.ms": 500,
            }
        )

        def report(error: Any, message: Any) -> None:
            if error is not None:
                self.errors.append(str(error))
            else:
                sequence = int(message.value()[:8])
                self.acked.append((sequence, message.partition(), message.offset()))

        try:
            for sequence in range(self.total):
                producer.produce(
                    self.topic,
                    value=sequence_value(sequence),
                    partition=sequence % PARTITIONS,
                    on_delivery=report,
                )
                self.produced = sequence + 1
                if sequence % CHUNK == CHUNK - 1:
                    producer.poll(0)
                    time.sleep(PAUSE_SECONDS)
            deadline = time.monotonic() + STREAM_SECONDS
            while len(producer) and time.monotonic() < deadline:
                producer.poll(0.1)
        finally:
            close_confluent_producer(producer)


class KafkaPythonStreamingProducer(StreamingProducer):
    def run(self) -> None:
        kafka = import_kafka_python()
        producer = kafka.KafkaProducer(
            bootstrap_servers=self.bootstrap,
            enable_idempotence=True,
            acks="all",
            linger_ms=2,
            reconnect_backoff_max_ms=500,
            delivery_timeout_ms=int(STREAM_SECONDS * 1000),
        )

        def acknowledged(sequence: int, metadata: Any) -> None:
            self.acked.append((sequence, metadata.partition, metadata.offset))

        def failed(sequence: int, error: BaseException) -> None:
            self.errors.append(f"record {sequence}: {error!r}")

        try:
            for sequence in range(self.total):
                future = producer.send(
                    self.topic, value=sequence_value(sequence), partition=sequence % PARTITIONS
                )
                future.add_callback(acknowledged, sequence)
                future.add_errback(failed, sequence)
                self.produced = sequence + 1
                if sequence % CHUNK == CHUNK - 1:
                    time.sleep(PAUSE_SECONDS)
            producer.flush(timeout=STREAM_SECONDS)
        finally:
            producer.close(timeout=10)


STREAMERS = {
    "confluent-kafka": ConfluentStreamingProducer,
    "kafka-python": KafkaPythonStreamingProducer,
}


def _require(client: str) -> None:
    if client == "kafka-python":
        import_kafka_python()
    else:
        pytest.importorskip("confluent_kafka")


def _wait_for_acks(stream: StreamingProducer, count: int) -> None:
    deadline = time.monotonic() + 30
    while len(stream.acked) < count:
        assert not stream.errors, stream.errors[:5]
        assert time.monotonic() < deadline, f"only {len(stream.acked)} acks after 30 s"
        time.sleep(0.005)


def _signal(pid: int, signal_number: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal_number)


@contextlib.contextmanager
def _tolerating_leaked_client_sockets() -> Iterator[None]:
    """kafka-python 3.0 leaks the socket of each refused connection attempt
    (kafka/net/inet.py does not close it) and logs each failure with a
    traceback that references it. pytest keeps captured log records until the
    session ends, so those sockets would raise their ResourceWarning (an error
    here) at exit. Silence its logger while the broker is down, and collect the
    sockets with their warning ignored.
    """
    kafka_logger = logging.getLogger("kafka")
    level = kafka_logger.level
    kafka_logger.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            try:
                yield
            finally:
                gc.collect()
    finally:
        kafka_logger.setLevel(level)


def _restart_frozen(broker: BrokerProcess, *, kill: bool) -> None:
    """Restart a SIGSTOPped broker: SIGKILL it, or let it shut down gracefully."""
    assert broker.process is not None
    pid = broker.process.pid
    if kill:
        assert broker.kill() == -signal.SIGKILL
    else:
        # SIGTERM stays pending while the process is stopped; SIGCONT lets it
        # run the graceful shutdown with the client's requests in its sockets.
        resume = threading.Timer(0.2, _signal, (pid, signal.SIGCONT))
        resume.start()
        try:
            assert broker.stop() == 0
        finally:
            resume.cancel()
            resume.join()
    broker.start()


def _stream_through_a_restart(
    broker: BrokerProcess, stream: StreamingProducer, *, kill: bool
) -> None:
    stream.start()
    try:
        _wait_for_acks(stream, ACKS_BEFORE_RESTART)
        assert broker.process is not None
        os.kill(broker.process.pid, signal.SIGSTOP)
        time.sleep(FREEZE_SECONDS)
        # Nothing can be acknowledged now; responses received before the
        # freeze have been handled during it.
        stream.acked_at_restart = len(stream.acked)
        assert stream.produced > stream.acked_at_restart, "no record was unacknowledged"
        _restart_frozen(broker, kill=kill)
        if kill:
            assert len(stream.acked) == stream.acked_at_restart, "a dead broker acknowledged"
    finally:
        stream.join()


@pytest.mark.parametrize("kill", [True, False], ids=["sigkill", "graceful"])
@pytest.mark.parametrize("client", list(STREAMERS))
def test_idempotent_producer_survives_a_restart_mid_stream(broker, topic_name, client, kill):
    _require(client)
    create_topic(broker.port, topic_name, PARTITIONS)
    stream = STREAMERS[client](broker.bootstrap, topic_name, RECORDS)
    with _tolerating_leaked_client_sockets():
        _stream_through_a_restart(broker, stream, kill=kill)

    assert not stream.errors, stream.errors[:5]
    assert stream.acked_at_restart < RECORDS, "the restart came after the last acknowledgement"
    assert sorted(sequence for sequence, _, _ in stream.acked) == list(range(RECORDS))
    consumed = CONSUMERS[client](broker.bootstrap, topic_name, PARTITIONS, RECORDS)
    by_position = {(c.partition, c.offset): c.value for c in consumed}
    assert len(by_position) == len(consumed) == RECORDS
    for partition in range(PARTITIONS):
        here = sorted((c for c in consumed if c.partition == partition), key=lambda c: c.offset)
        assert [c.offset for c in here] == list(range(len(here))), f"partition {partition} gaps"
        sequences = [int((c.value or b"")[:8]) for c in here]
        expected = list(range(partition, RECORDS, PARTITIONS))
        duplicates = len(sequences) - len(set(sequences))
        missing = sorted(set(expected) - set(sequences))[:10]
        assert sequences == expected, (
            f"partition {partition}: {duplicates} duplicates, missing {missing}, "
            f"in order: {sequences == sorted(sequences)}"
        )
    for sequence, partition, offset in stream.acked:
        assert by_position[(partition, offset)] == sequence_value(sequence), (
            f"acknowledged record {sequence} is not at {partition}/{offset}"
        )


@pytest.mark.parametrize("client", list(PRODUCERS))
def test_acks_all_records_survive_sigkill(broker, topic_name, client):
    if client == "kafka-python":
        import_kafka_python()
    else:
        pytest.importorskip({"confluent-kafka": "confluent_kafka", "aiokafka": "aiokafka"}[client])
    create_topic(broker.port, topic_name, PARTITIONS)
    records = sample_records(
        600,
        partitions=PARTITIONS,
        null_record_ok=NULL_RECORD_OK[client],
        null_header_ok=NULL_HEADER_OK[client],
        seed=11,
    )
    acks_option = {"confluent-kafka": {"acks": "all"}}.get(client, {"acks": "all"})
    delivered = PRODUCERS[client](broker.bootstrap, topic_name, records, **acks_option)

    # Every record is acknowledged: crash at once, no graceful flush.
    assert broker.kill() == -signal.SIGKILL
    broker.start()

    consumed = CONSUMERS[client](broker.bootstrap, topic_name, PARTITIONS, len(records))
    check_round_trip(records, delivered, consumed, PARTITIONS)

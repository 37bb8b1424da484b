"""The fault control endpoint: faults set from a test reach a broker process (one worker
or several), and whatever arrives on the endpoint cannot stop the broker."""

from __future__ import annotations

import json
import time
from typing import Any, cast

import pytest
import trio
from kio.schema.errors import ErrorCode

import trioring.cli
from trioring._constants import (
    FAULT_CLIENT_ID_JSON_BYTES_MAX,
    FAULT_CONTROL_CONNECTIONS_MAX,
    FAULT_COUNT_MAX,
    FAULT_ENTRY_JSON_BYTES_MAX,
    FAULT_INJECTIONS_RECORDED_MAX,
)
from trioring.errors import ConfigurationError, InvalidArgumentError
from trioring.handlers import HandlerContext
from trioring.handlers.messages import ListOffsetsRequest
from trioring.server._cli import serve_main
from trioring.testing import (
    API_NAMES,
    BrokerProcess,
    Fault,
    FaultControl,
    FaultControlError,
    FaultInjector,
    Injection,
)
from trioring.testing._control import check_loopback, serve_fault_control
from trioring.testing._faults import entry_json, kept_client_id

#: Seconds any one step may take before the test fails.
STEP_SECONDS = 20.0


async def _exchange(port: int, data: bytes) -> tuple[list[Any], bool]:
    """Send ``data``; the answers until the endpoint closes (or goes quiet), and whether
    it closed. (A close with bytes unread is a reset: answers may be lost then.)"""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    received = b""
    closed = False
    async with stream:
        try:
            await stream.send_all(data)
            with trio.move_on_after(0.3):
                while chunk := await stream.receive_some():
                    received += chunk
                closed = True
        except trio.BrokenResourceError:
            closed = True
    return [json.loads(line) for line in received.splitlines()], closed


async def test_control_endpoint_refuses_garbage_and_keeps_serving() -> None:
    injector = FaultInjector()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_fault_control, injector, "127.0.0.1", 0)
        # Not JSON, not an object, too deep: an error, then the end.
        for garbage in (b"\xff\xfe\n", b"[1, 2]\n", b"[" * 3000 + b"\n"):
            answers, closed = await _exchange(port, garbage)
            assert [answer["ok"] for answer in answers] == [False], garbage[:10]
            assert closed, garbage[:10]
        # Too long: the end (the error sent first may be lost to the reset).
        answers, closed = await _exchange(port, b"x" * 5000)
        assert closed and [answer["ok"] for answer in answers] in ([], [False])
        # A request with a wrong field is answered, and the connection stays.
        answers, closed = await _exchange(
            port,
            b'{"action": "fail", "api": "Produc", "error": "INVALID_RECORD"}\n'
            b'{"action": "fail", "api": "Produce", "error": "INVALID_RECORD", "count": 2}\n'
            b'{"action": "pending"}\n',
        )
        assert not closed
        assert answers[0]["ok"] is False and "the APIs are" in answers[0]["error"]
        assert answers[1] == {"ok": True}
        assert answers[2]["pending"] == [
            {"action": "fail", "api": "Produce", "count": 2, "error": "INVALID_RECORD"}
        ]
        # Connections are bounded: past the limit, one is told so and closed at once.
        streams = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(8)]
        answers, closed = await _exchange(port, b'{"action": "pending"}\n')
        assert closed and [answer["ok"] for answer in answers] == [False]
        assert "8 control connections are open already" in answers[0]["error"]
        control = FaultControl([("127.0.0.1", port)])
        with pytest.raises(FaultControlError, match="refused: 8 control connections"):
            await trio.to_thread.run_sync(control.clear)
        for stream in streams:
            await stream.aclose()
        await trio.sleep(0.05)
        # The test's side, from a thread (it blocks).
        await trio.to_thread.run_sync(control.clear)
        await trio.to_thread.run_sync(lambda: control.delay("Fetch", 0.5, count=3))
        assert [f.count for f in await trio.to_thread.run_sync(control.pending)] == [3]
        with pytest.raises(InvalidArgumentError):
            control.fail("Produce", "NO_SUCH_ERROR")  # refused before anything is sent
        nursery.cancel_scope.cancel()
    assert [(f.api, f.seconds) for f in injector.pending()] == [("Fetch", 0.5)]
    with pytest.raises(FaultControlError, match="unreachable"):
        control.clear()


async def _record_injections(injector: FaultInjector, client_ids: list[str]) -> None:
    """Injections made by requests from these clients, in turn, until the record is full."""
    injector.delay("ListOffsets", 0)  # every ListOffsets, at no cost

    async def handler(ctx: HandlerContext, request: ListOffsetsRequest) -> None:
        await trio.lowlevel.checkpoint()

    handle = injector(handler)
    for index in range(FAULT_INJECTIONS_RECORDED_MAX):
        client_id = client_ids[index % len(client_ids)]
        ctx = HandlerContext(cast(Any, None), cast(Any, None), client_id=client_id)
        await handle(ctx, ListOffsetsRequest("topic", 0, -1))


async def test_clients_that_never_read_their_answers_do_not_keep_others_out(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Before: an answer's write had no time limit (the idle limit covered reads only),
    so 8 clients that sent requests and never read held every slot for good."""
    monkeypatch.setattr("trioring.testing._control.FAULT_CONTROL_ANSWER_SECONDS", 0.2)
    injector = FaultInjector()
    await _record_injections(injector, ["x" * 300])  # an "injected" answer: ~350 KB
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_fault_control, injector, "127.0.0.1", 0)
        silent: list[trio.SocketStream] = []
        try:
            for _ in range(FAULT_CONTROL_CONNECTIONS_MAX):
                silent.append(await trio.open_tcp_stream("127.0.0.1", port))
                await silent[-1].send_all(b'{"action": "injected"}\n' * 190)  # never read
            # The answers fill the sockets' buffers; then each connection is closed
            # within the deadline, and a new client is served again.
            with trio.fail_after(5):
                while True:
                    answers, _ = await _exchange(port, b'{"action": "clear"}\n')
                    if answers == [{"ok": True}]:
                        break
                    await trio.sleep(0.05)
        finally:
            for stream in silent:
                await stream.aclose()
        nursery.cancel_scope.cancel()
    assert "left its answer unread" in caplog.text
    assert injector.injected() == []


async def test_injections_answer_within_its_bound_whatever_the_client_ids() -> None:
    """Before: a client id was cut to 100 characters, but JSON wrote an emoji as 12
    bytes: a full record of them was a 1.3 MB answer, past the 1 MiB the client takes."""
    injector = FaultInjector()
    client_ids = ["😀" * 100, "\x00" * 500, '"\\' * 300, "\ud800" * 50, "é" * 32767, "rdkafka"]
    await _record_injections(injector, client_ids)
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_fault_control, injector, "127.0.0.1", 0)
        control = FaultControl([("127.0.0.1", port)])
        injected = await trio.to_thread.run_sync(control.injected)
        nursery.cancel_scope.cancel()
    assert len(injected) == FAULT_INJECTIONS_RECORDED_MAX
    kept = [injection.client_id for injection in injected[: len(client_ids)]]
    assert kept == ["😀" * 49, "\x00" * 33, '"\\' * 49 + '"', "?" * 50, "é" * 99, "rdkafka"]


def test_an_answer_entry_is_bounded() -> None:
    """The longest fault and injection fit FAULT_ENTRY_JSON_BYTES_MAX, which bounds
    an answer (the asserts in trioring/_constants.py)."""
    api = max(API_NAMES, key=len)
    error = max(ErrorCode, key=lambda code: len(code.name))
    seconds = 1.2345678901234567e-05  # as long as a float in 0-600 s is written
    longest = [
        Fault.fail(api, error, FAULT_COUNT_MAX),
        Fault.delay(api, seconds, FAULT_COUNT_MAX),
        Fault.drop_connection(api, FAULT_COUNT_MAX),
    ]
    for fault in longest:
        assert len(entry_json(fault.to_json())) <= FAULT_ENTRY_JSON_BYTES_MAX
    for client_id in ("😀" * 100, "\x01" * 100, "a" * 1000):
        kept = kept_client_id(client_id)
        assert len(entry_json(kept)) <= FAULT_CLIENT_ID_JSON_BYTES_MAX
        assert len(entry_json(kept + client_id[len(kept)])) > FAULT_CLIENT_ID_JSON_BYTES_MAX
        injection = Injection(api, "drop_connection", error.name.upper(), seconds, kept, 63)
        assert len(entry_json(injection.to_json())) <= FAULT_ENTRY_JSON_BYTES_MAX


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.1", "localhost", "example.com"])
def test_control_endpoint_is_loopback_only(host: str) -> None:
    with pytest.raises(InvalidArgumentError, match="loopback"):
        check_loopback(host)
    options = trioring.cli._parser().parse_args(["serve", "--fault-control", f"{host}:0"])
    with pytest.raises(ConfigurationError, match="loopback"):
        serve_main(options)


def _confluent_produce(bootstrap: str, topic: str, partition: int, count: int) -> list[Any]:
    """Each record's delivery error (None: delivered), one produce request each."""
    confluent_kafka = pytest.importorskip("confluent_kafka")
    producer = confluent_kafka.Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 0, "message.timeout.ms": 20_000}
    )
    errors: list[Any] = []
    for _ in range(count):
        producer.produce(
            topic, b"v", partition=partition, on_delivery=lambda e, m: errors.append(e)
        )
        producer.flush(STEP_SECONDS)
    return [None if error is None else error.name() for error in errors]


@pytest.mark.slow
def test_faults_in_a_broker_process(trioring_server: BrokerProcess) -> None:
    topic = trioring_server.create_topic(partitions=1)
    faults = trioring_server.faults
    faults.fail("Produce", "INVALID_RECORD")
    assert _confluent_produce(trioring_server.bootstrap, topic, 0, 2) == [
        "INVALID_RECORD",
        None,
    ]
    (injection,) = faults.injected()
    assert (injection.api, injection.error, injection.client_id, injection.worker) == (
        "Produce",
        "INVALID_RECORD",
        "rdkafka",
        0,
    )
    # Garbage on the endpoint costs that connection, never the broker.
    ((_, port),) = trioring_server.fault_addresses
    trio.run(_exchange, port, b"\x00\xff" * 3000)
    faults.clear()
    assert faults.injected() == []
    assert _confluent_produce(trioring_server.bootstrap, topic, 0, 1) == [None]
    with pytest.raises(RuntimeError, match="TOPIC_ALREADY_EXISTS"):
        trioring_server.create_topic(topic)


@pytest.mark.slow
def test_faults_in_every_worker(tmp_path: Any) -> None:
    with BrokerProcess(tmp_path / "data", workers=2, faults=True) as broker:
        assert len(broker.fault_addresses) == 2
        topic = broker.create_topic(partitions=2)
        faults = broker.faults
        faults.fail("Produce", "INVALID_RECORD")  # counts are per worker
        assert len(faults.pending()) == 2
        # Partition i is worker i's: each worker fails its next Produce once.
        for partition in (0, 1):
            assert _confluent_produce(broker.bootstrap, topic, partition, 2) == [
                "INVALID_RECORD",
                None,
            ]
        assert sorted(i.worker for i in faults.injected()) == [0, 1]
        faults.delay("Fetch", 1.0, worker=1)
        assert [f.api for f in faults.pending(worker=1)] == ["Fetch"]
        assert faults.pending(worker=0) == []
        # A restarted worker serves its endpoint on the same port, with no faults.
        addresses = list(broker.fault_addresses)
        broker.kill_worker(1)
        deadline = time.monotonic() + STEP_SECONDS
        while True:
            try:
                assert faults.pending(worker=1) == []
                break
            except FaultControlError:
                assert time.monotonic() < deadline, "worker 1 did not come back"
                time.sleep(0.05)
        assert broker.fault_addresses == addresses

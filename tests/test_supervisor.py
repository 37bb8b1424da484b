"""The supervisor embedded in a Trio program, and its processes' lives.

``trioring.serve_cluster`` runs in the caller's nursery; cancelling it
drains the workers (long polls answered at once), and no process outlives it.
"""

from __future__ import annotations

import os
import socket
import sys
from functools import partial
from pathlib import Path

import pytest
import trio
from kio.schema.errors import ErrorCode

import trioring
from trioring.protocol.kafka import ApiKey
from trioring.server import ServerConfig

sys.path.insert(0, str(Path(__file__).resolve().parent / "server"))
sys.path.insert(0, str(Path(__file__).resolve().parent / "interop"))
from interop_wire import create_topic
from server_support import KafkaWire, exchange, long_poll


def children() -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == os.getpid() and fields[0] != "Z":
                found.append(int(entry.name))
    return found


async def test_a_trio_program_hosts_a_broker_of_two_workers(tmp_path: Path) -> None:
    config = trioring.BrokerConfig(data_dir=str(tmp_path / "data"))
    answers = []
    async with trio.open_nursery() as clients:
        async with trio.open_nursery() as host:
            supervisor: trioring.Supervisor = await host.start(
                partial(
                    trioring.serve_cluster,
                    config,
                    ServerConfig(port=0, shutdown_grace_seconds=10),
                    workers=2,
                )
            )
            nodes = supervisor.nodes()
            assert [node.node_id for node in nodes] == [0, 1]
            assert len(children()) == 2
            await trio.to_thread.run_sync(create_topic, nodes[1].port, "hosted", 2)
            # The topic is everywhere at once, its partitions on both workers.
            metadata = supervisor.controller.current
            assert set(metadata.user_topics()) == {"hosted"}
            assert sorted(metadata.topics["hosted"].owners) == [0, 1]
            owner = metadata.topics["hosted"].owners[0]
            wire = await KafkaWire.connect(nodes[owner].port)

            async def fetch() -> None:
                answers.append(await wire.request(ApiKey.FETCH, 11, long_poll("hosted", 60_000)))

            clients.start_soon(fetch)
            await trio.sleep(0.3)
            started = trio.current_time()
            # Cancelling the host drains the workers: the long poll is answered now.
            host.cancel_scope.cancel()
        stopped_after = trio.current_time() - started
    assert stopped_after < 5, stopped_after
    assert answers and int(answers[0].responses[0].partitions[0].error_code) == 0
    await wire.aclose()
    assert children() == []
    # The lock is free again: the data directory opens in-process.
    async with trioring.open_broker(config) as broker:
        assert "hosted" in broker.topics()


async def test_a_worker_that_cannot_listen_stops_the_start(tmp_path: Path) -> None:
    # Worker 0 listens on `first`, worker 1 on `first + 1`, which the test holds. `first` is
    # held too until just before the start, so that no other test's server takes it meanwhile.
    for _ in range(100):
        free, taken = socket.socket(), socket.socket()
        free.bind(("127.0.0.1", 0))
        first = free.getsockname()[1]
        try:
            taken.bind(("127.0.0.1", first + 1))
            break
        except OSError:
            free.close()
            taken.close()
    else:
        pytest.fail("found no two consecutive free ports")
    with taken:
        taken.listen()
        free.close()
        config = trioring.BrokerConfig(data_dir=str(tmp_path / "data"))
        expected = f"cannot listen on 127.0.0.1:{first + 1}"
        with trio.fail_after(30), pytest.raises(trioring.ConfigurationError, match=expected):
            await trioring.serve_cluster(config, ServerConfig(port=first), workers=2)
    assert children() == []


async def test_changes_asked_of_a_dead_worker_are_not_lost(tmp_path: Path) -> None:
    """A worker killed and restarted gets the metadata it missed."""
    config = trioring.BrokerConfig(data_dir=str(tmp_path / "data"))
    async with trio.open_nursery() as nursery:
        supervisor: trioring.Supervisor = await nursery.start(
            partial(trioring.serve_cluster, config, ServerConfig(port=0), workers=2)
        )
        port0, port1 = (node.port for node in supervisor.nodes())
        old = supervisor.workers[1].pid
        assert old is not None
        os.kill(old, 9)
        await trio.to_thread.run_sync(create_topic, port0, "while-down", 4)
        with trio.fail_after(20):
            while not supervisor.workers[1].ready or supervisor.workers[1].pid == old:  # noqa: ASYNC110
                await trio.sleep(0.05)
        from kio.schema.metadata.v4.request import MetadataRequest  # noqa: PLC0415

        response = await trio.to_thread.run_sync(
            exchange,
            port1,
            ApiKey.METADATA,
            4,
            MetadataRequest(topics=None, allow_auto_topic_creation=False),
        )
        topics = {t.name: int(t.error_code) for t in response.topics}
        assert topics == {"while-down": ErrorCode.none}
        nursery.cancel_scope.cancel()
    assert children() == []

"""The pytest plugin as a user meets it: a test suite of their own, in a pytest of its own,
that finds the fixtures through the entry point pyproject.toml declares."""

from __future__ import annotations

import os
import re
import textwrap
import tomllib
from pathlib import Path

import pytest

import trioring

pytest_plugins = ["pytester"]

#: This source tree (the user's pytest imports trioring from it).
SOURCE_TREE = Path(trioring.__file__).resolve().parent.parent

USER_TESTS = """
import socket
import time

import confluent_kafka
import pytest

from trioring.client import open_producer
from trioring.errors import KafkaError


def produce(bootstrap, topic, partition=0):
    producer = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    errors = []
    producer.produce(topic, b"v", partition=partition, on_delivery=lambda e, m: errors.append(e))
    producer.flush(20)
    return errors


def test_sync_confluent(trioring_server_session, trioring_topic_name):
    # (trioring_server, the same broker for one test, is tests/testing's everywhere else.)
    server = trioring_server_session
    assert trioring_topic_name.startswith("test_sync_confluent-")
    topic = server.create_topic(trioring_topic_name, partitions=2)
    server.faults.fail("Produce", "NOT_LEADER_OR_FOLLOWER", count=1)
    assert produce(server.bootstrap, topic, partition=1) == [None]
    assert [i.error for i in server.faults.injected()] == ["NOT_LEADER_OR_FOLLOWER"]


@pytest.mark.trio
async def test_embedded(trioring_broker):
    topic = await trioring_broker.create_topic()
    trioring_broker.faults.fail("Produce", "INVALID_RECORD")
    async with open_producer(trioring_broker.broker, linger_ms=0) as producer:
        with pytest.raises(KafkaError, match="INVALID_RECORD"):
            await producer.send(topic, b"refused")
        assert (await producer.send(topic, b"taken")).offset == 0
    await trioring_broker.restart()
    assert await trioring_broker.broker.list_offset(topic, 0, "latest") == 1


def test_session_leaves_a_fault(trioring_server_session):
    trioring_server_session.faults.fail("Produce", "INVALID_RECORD", count=5)


def test_session_faults_were_cleared(trioring_server_session):
    assert trioring_server_session.faults.pending() == []
    trioring_server_session.kill()


def test_session_broker_was_started_again(trioring_server_session):
    topic = trioring_server_session.create_topic()
    assert produce(trioring_server_session.bootstrap, topic) == [None]


def test_failure_shows_the_broker_log(trioring_server_session):
    with socket.create_connection(("127.0.0.1", trioring_server_session.port)) as sock:
        sock.sendall(b"\\x00\\x00\\x00\\x02\\xff\\xff")  # not a request: the broker logs it
        sock.recv(1)
    time.sleep(0.2)
    assert False, "on purpose"
"""


def _install_entry_point(pytester: pytest.Pytester, tmp_path: Path) -> None:
    """The entry point as pyproject.toml declares it, installed as pip would: a
    dist-info on the path. (Where trioring is installed with it too, pytest
    loads one of the two: they have the same name.)"""
    project = tomllib.loads((SOURCE_TREE / "pyproject.toml").read_text())
    entry_points = project["project"]["entry-points"]["pytest11"]
    site = tmp_path / "site"
    dist_info = site / "trioring_plugin_check-0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: trioring-plugin-check\n")
    (dist_info / "entry_points.txt").write_text(
        "[pytest11]\n" + "".join(f"{name} = {value}\n" for name, value in entry_points.items())
    )
    path = os.pathsep.join([str(SOURCE_TREE), str(site), os.environ.get("PYTHONPATH", "")])
    pytester._monkeypatch.setenv("PYTHONPATH", path.rstrip(os.pathsep))


def test_plugin_from_its_entry_point(pytester: pytest.Pytester, tmp_path: Path) -> None:
    _install_entry_point(pytester, tmp_path)
    pytester.makepyfile(test_user=textwrap.dedent(USER_TESTS))
    # As strict as this project: a plugin that makes Hypothesis warn at start-up
    # (it would, importing trioring before Hypothesis's plugin loads) fails here.
    pytester.makeini("[pytest]\nfilterwarnings = error\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v", timeout=120)
    result.assert_outcomes(passed=5, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_failure_shows_the_broker_log FAILED*",
            "*trioring broker log*",
            "*closing connection*",
        ]
    )


def test_the_examples_of_docs_testing_md_pass(pytester: pytest.Pytester, tmp_path: Path) -> None:
    """docs/testing.md's examples, as a user would paste them into a test file."""
    text = (SOURCE_TREE / "docs" / "testing.md").read_text()
    examples = text.split("### Examples", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", examples, flags=re.DOTALL)
    assert len(blocks) >= 3
    _install_entry_point(pytester, tmp_path)
    pytester.makepyfile(test_docs="\n\n".join(blocks))
    pytester.makeini("[pytest]\nfilterwarnings = error\ntrio_mode = true\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v", timeout=120)
    tests = sum(block.count("\ndef test_") + block.count("async def test_") for block in blocks)
    result.assert_outcomes(passed=tests)

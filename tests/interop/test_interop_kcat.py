"""Debian's kcat (its own, older librdkafka) against the broker: -L, -P and -C."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from interop_wire import create_topic, served_codecs

KCAT = shutil.which("kcat") or shutil.which("kafkacat")
pytestmark = pytest.mark.skipif(KCAT is None, reason="kcat is not installed")

KCAT_SECONDS = 30
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


@pytest.fixture
def kcat(module_broker, tmp_path):
    """Run kcat against the shared broker with an empty config file; returns a runner."""
    config = tmp_path / "kcat.conf"
    config.write_text("")

    def run(*arguments: str, input_bytes: bytes | None = None) -> subprocess.CompletedProcess:
        assert KCAT is not None
        return subprocess.run(
            [KCAT, "-b", module_broker.bootstrap, *arguments],
            input=input_bytes,
            capture_output=True,
            timeout=KCAT_SECONDS,
            env={"KCAT_CONFIG": str(config), "PATH": "/usr/bin:/bin"},
            check=False,
        )

    return run


def test_kcat_metadata_lists_the_broker_and_topics(module_broker, kcat, topic_name):
    create_topic(module_broker.port, topic_name, 3)
    create_topic(module_broker.port, topic_name + "-single", 1)

    listed = kcat("-L")
    assert listed.returncode == 0, listed.stderr
    text = listed.stdout.decode()
    assert " 1 brokers:" in text
    assert f"broker 0 at 127.0.0.1:{module_broker.port}" in text
    assert f'topic "{topic_name}" with 3 partitions:' in text
    assert f'topic "{topic_name}-single" with 1 partitions:' in text

    as_json = kcat("-L", "-J")
    assert as_json.returncode == 0, as_json.stderr
    metadata = json.loads(as_json.stdout)
    assert [(b["id"], b["name"]) for b in metadata["brokers"]] == [
        (0, f"127.0.0.1:{module_broker.port}")
    ]
    topics = {t["topic"]: t for t in metadata["topics"]}
    assert sorted(p["partition"] for p in topics[topic_name]["partitions"]) == [0, 1, 2]
    for partition in topics[topic_name]["partitions"]:
        assert partition["leader"] == 0
        assert [r["id"] for r in partition["replicas"]] == [0]

    one_topic = kcat("-L", "-t", topic_name + "-single")
    assert one_topic.returncode == 0, one_topic.stderr
    assert f'topic "{topic_name}-single" with 1 partitions:' in one_topic.stdout.decode()


@pytest.mark.parametrize("codec", CODECS)
def test_kcat_produce_file_then_consume(module_broker, kcat, topic_name, tmp_path, codec):
    lines = [
        b"first line",
        "unicode: ünïcödé ✓".encode(),
        b"tabs\tand  spaces ",
        b"x" * 50_000,  # one long, compressible line
        bytes(range(32, 127)),
        b"last line",
    ]
    source = tmp_path / "lines.txt"
    source.write_bytes(b"\n".join(lines) + b"\n")

    produced = kcat("-P", "-t", topic_name, "-l", str(source), "-z", codec)
    if produced.returncode != 0 and b"compression" in produced.stderr.lower():
        pytest.skip(f"this kcat build cannot use {codec}: {produced.stderr.decode().strip()}")
    assert produced.returncode == 0, produced.stderr

    consumed = kcat("-C", "-t", topic_name, "-e", "-o", "beginning", "-q")
    assert consumed.returncode == 0, consumed.stderr
    assert consumed.stdout.split(b"\n") == [*lines, b""]
    _, high_watermark = served_codecs(module_broker.port, topic_name, 1)
    assert high_watermark == len(lines)


#: Old librdkafka (Debian's kcat bundles 2.0.2) compresses with gzip, snappy or
#: lz4 only if the advertised Produce range overlaps 0..0 (librdkafka issue
#: #4956, the trap Kafka 4.0 hit when KIP-896 dropped Produce v0-v2). As Kafka
#: 4.0 does since KAFKA-18659, trioring advertises Produce from v0 (and still
#: refuses v0-v2 requests), so these batches arrive compressed.
@pytest.mark.parametrize(
    "codec",
    [
        "gzip",
        "snappy",
        "lz4",
        "zstd",
    ],
)
def test_kcat_batches_are_stored_compressed(module_broker, kcat, topic_name, tmp_path, codec):
    source = tmp_path / "compressible.txt"
    source.write_bytes(b"".join(b"record %d %s\n" % (i, b"abc" * 300) for i in range(20)))
    produced = kcat("-P", "-t", topic_name, "-l", str(source), "-z", codec)
    if produced.returncode != 0 and b"compression" in produced.stderr.lower():
        pytest.skip(f"this kcat build cannot use {codec}: {produced.stderr.decode().strip()}")
    assert produced.returncode == 0, produced.stderr
    codecs, high_watermark = served_codecs(module_broker.port, topic_name, 1)
    assert high_watermark == 20
    assert codecs[codec] > 0, f"kcat -z {codec} stored batches: {dict(codecs)}"


def test_kcat_keys_headers_and_null_values(module_broker, kcat, topic_name):
    create_topic(module_broker.port, topic_name, 1)
    produced = kcat(
        "-P",
        "-t",
        topic_name,
        "-K",
        ":",
        "-Z",
        "-H",
        "source=kcat",
        "-H",
        "empty=",
        input_bytes=b"k1:value one\nk2:\nk3:value three\n",
    )
    assert produced.returncode == 0, produced.stderr

    consumed = kcat("-C", "-t", topic_name, "-e", "-o", "beginning", "-q", "-J")
    assert consumed.returncode == 0, consumed.stderr
    messages = [json.loads(line) for line in consumed.stdout.splitlines()]
    assert [(m["offset"], m["key"], m["payload"]) for m in messages] == [
        (0, "k1", "value one"),
        (1, "k2", None),  # -Z: the empty value was sent as NULL
        (2, "k3", "value three"),
    ]
    for message in messages:
        assert message["tstype"] == "create"
        headers = message["headers"]
        if isinstance(headers, list):  # kcat 1.7 prints ["name", "value", ...]
            headers = list(zip(headers[::2], headers[1::2], strict=True))
        else:
            headers = list(headers.items())
        assert headers == [("source", "kcat"), ("empty", "")]

    # Offsets and formats: the last record only, by offset.
    tail = kcat("-C", "-t", topic_name, "-e", "-o", "2", "-q", "-f", "%k=%s@%p:%o\\n")
    assert tail.returncode == 0, tail.stderr
    assert tail.stdout == b"k3=value three@0:2\n"

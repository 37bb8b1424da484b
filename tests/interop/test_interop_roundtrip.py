"""Each real client produces varied records with each codec and reads them back.

Checks: byte-exact keys, values (null and empty where the client allows),
headers (duplicates, unicode names, empty and null values) and CreateTime
timestamps; every record exactly once, in send order per partition, over a
3-partition topic; and, with raw Fetch requests, that the broker really
stores and serves batches in the codec the client was told to use.
"""

from __future__ import annotations

import pytest
from interop_clients import (
    COMPRESSION_OPTION,
    CONSUMERS,
    NULL_HEADER_OK,
    NULL_RECORD_OK,
    PRODUCERS,
    check_round_trip,
    sample_records,
)
from interop_wire import create_topic, served_codecs

PARTITIONS = 3
RECORDS = 240
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
CLIENTS = ["confluent-kafka", "kafka-python", "aiokafka"]
CLIENT_MODULES = {
    "confluent-kafka": "confluent_kafka",
    "kafka-python": "kafka",
    "aiokafka": "aiokafka",
}


def _compression_config(client: str, codec: str) -> dict[str, str | None]:
    if codec == "none":
        return {COMPRESSION_OPTION[client]: "none" if client == "confluent-kafka" else None}
    return {COMPRESSION_OPTION[client]: codec}


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("client", CLIENTS)
def test_produce_then_consume_round_trip(module_broker, topic_name, client, codec):
    if client == "kafka-python":
        from interop_clients import import_kafka_python  # noqa: PLC0415 - skips if missing

        import_kafka_python()
    else:
        pytest.importorskip(CLIENT_MODULES[client])
    create_topic(module_broker.port, topic_name, PARTITIONS)
    records = sample_records(
        RECORDS,
        partitions=PARTITIONS,
        null_record_ok=NULL_RECORD_OK[client],
        null_header_ok=NULL_HEADER_OK[client],
    )

    delivered = PRODUCERS[client](
        module_broker.bootstrap, topic_name, records, **_compression_config(client, codec)
    )
    consumed = CONSUMERS[client](module_broker.bootstrap, topic_name, PARTITIONS, len(records))

    check_round_trip(records, delivered, consumed, PARTITIONS)
    codecs, high_watermarks = served_codecs(module_broker.port, topic_name, PARTITIONS)
    assert high_watermarks == len(records), "the topic holds records nobody sent"
    # A client may send a batch uncompressed when compressing does not pay off.
    assert set(codecs) <= {codec, "none"}, codecs
    assert codecs[codec] > 0, f"no {codec} batch was stored: {codecs}"


def test_each_client_reads_what_the_others_wrote(module_broker, topic_name):
    """Cross-client: records written by each client, read back by each client."""
    for module in CLIENT_MODULES.values():
        if module == "kafka":
            from interop_clients import import_kafka_python  # noqa: PLC0415

            import_kafka_python()
        else:
            pytest.importorskip(module)
    create_topic(module_broker.port, topic_name, PARTITIONS)
    sent = []
    delivered = []
    for index, (client, codec) in enumerate(zip(CLIENTS, ["zstd", "lz4", "gzip"], strict=True)):
        records = sample_records(
            60, partitions=PARTITIONS, null_record_ok=False, null_header_ok=False, seed=index
        )
        delivered += PRODUCERS[client](
            module_broker.bootstrap, topic_name, records, **_compression_config(client, codec)
        )
        sent += records
    for client in CLIENTS:
        consumed = CONSUMERS[client](module_broker.bootstrap, topic_name, PARTITIONS, len(sent))
        check_round_trip(sent, delivered, consumed, PARTITIONS)

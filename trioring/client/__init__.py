"""trioring.client: a Trio-native Kafka client.

Work in progress (issue 14): the wire transport (``Cluster``, pipelined
``BrokerConnection``) and the producer. See docs/client.md.
"""

from trioring.client._cluster import Cluster, parse_bootstrap
from trioring.client._connection import BrokerConnection, ConnectionBrokenError, UnsupportedApiError
from trioring.client._producer import Producer, RecordMetadata, SendHandle, open_producer

__all__ = [
    "BrokerConnection",
    "Cluster",
    "ConnectionBrokenError",
    "Producer",
    "RecordMetadata",
    "SendHandle",
    "UnsupportedApiError",
    "open_producer",
    "parse_bootstrap",
]

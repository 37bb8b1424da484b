"""trioring.client: a Trio-native Kafka client.

Work in progress (issue 14): the wire transport (``Cluster``, pipelined
``BrokerConnection``) and the producer. See docs/client.md.
"""

from trioring.client._cluster import Cluster, parse_bootstrap
from trioring.client._connection import BrokerConnection, ConnectionBrokenError, UnsupportedApiError
from trioring.client._consumer import Consumer, ConsumerRecord, NoOffsetError, open_consumer

__all__ = [
    "BrokerConnection",
    "Cluster",
    "ConnectionBrokenError",
    "Consumer",
    "ConsumerRecord",
    "NoOffsetError",
    "UnsupportedApiError",
    "open_consumer",
    "parse_bootstrap",
]

"""trioring.client: a Trio-native Kafka client.

Work in progress (issue 14): the wire transport (``Cluster``, pipelined
``BrokerConnection``) and the producer. See docs/client.md.
"""

from trioring.client._cluster import Cluster, parse_bootstrap
from trioring.client._connection import BrokerConnection, ConnectionBrokenError, UnsupportedApiError

__all__ = [
    "BrokerConnection",
    "Cluster",
    "ConnectionBrokenError",
    "UnsupportedApiError",
    "parse_bootstrap",
]

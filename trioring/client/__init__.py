"""trioring.client: a Trio-native Kafka client.

Two transports behind ``BrokerConnection``, the
wire (``Cluster`` of pipelined ``WireConnection``) and in-process (an embedded
``Broker`` instead of addresses: ``InProcessConnection``), the producer, the
consumer (of assigned partitions, or a group member), and the admin client.
See docs/client.md.
"""

from trioring.client._admin import (
    Admin,
    GroupDescription,
    GroupListing,
    GroupMember,
    PartitionLag,
    open_admin,
)
from trioring.client._cluster import Cluster, parse_bootstrap
from trioring.client._connection import (
    BrokerConnection,
    ConnectionBrokenError,
    UnsupportedApiError,
    WireConnection,
)
from trioring.client._consumer import Consumer, ConsumerRecord, NoOffsetError, open_consumer
from trioring.client._group import CommitFailedError, GroupMembership, RebalanceCallback
from trioring.client._inprocess import InProcessConnection
from trioring.client._producer import Producer, RecordMetadata, SendHandle, open_producer

__all__ = [
    "Admin",
    "BrokerConnection",
    "Cluster",
    "CommitFailedError",
    "ConnectionBrokenError",
    "Consumer",
    "ConsumerRecord",
    "GroupDescription",
    "GroupListing",
    "GroupMember",
    "GroupMembership",
    "InProcessConnection",
    "NoOffsetError",
    "PartitionLag",
    "Producer",
    "RebalanceCallback",
    "RecordMetadata",
    "SendHandle",
    "UnsupportedApiError",
    "WireConnection",
    "open_admin",
    "open_consumer",
    "open_producer",
    "parse_bootstrap",
]

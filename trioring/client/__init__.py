"""trioring.client: a Trio-native Kafka client.

Work in progress (issue 14): the wire transport (``Cluster``, pipelined
``BrokerConnection``), the producer, the consumer without group membership,
and the admin client. See docs/client.md.
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
from trioring.client._connection import BrokerConnection, ConnectionBrokenError, UnsupportedApiError
from trioring.client._consumer import Consumer, ConsumerRecord, NoOffsetError, open_consumer
from trioring.client._group import CommitFailedError, GroupMembership, RebalanceCallback
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
    "NoOffsetError",
    "PartitionLag",
    "Producer",
    "RebalanceCallback",
    "RecordMetadata",
    "SendHandle",
    "UnsupportedApiError",
    "open_admin",
    "open_consumer",
    "open_producer",
    "parse_bootstrap",
]

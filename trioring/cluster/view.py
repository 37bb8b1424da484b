"""ClusterView: what a worker knows of the cluster, and how it asks for changes.

A worker holds the cluster metadata as a watchable value (``metadata``) and
the addresses clients reach the workers at (``nodes``). It never changes
the metadata itself: topic creation and deletion, new partitions and
producer-id blocks are requests to the controller, which answers once the
change is durable and every worker has it. :class:`LocalClusterView` talks
to a controller in the same process (the embedded broker);
``trioring.worker`` has the one that talks over the control channel.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping

import trio
import trio_util

from trioring._constants import PRODUCER_ID_BLOCK_SIZE
from trioring.cluster.controller import Controller, Distribute, create_topic_everywhere
from trioring.cluster.model import ClusterMetadata, Node, TopicInfo
from trioring.errors import StorageError
from trioring.storage.log import LogConfig

__all__ = ["ClusterView", "LocalClusterView"]


class ClusterView(abc.ABC):
    def __init__(self, worker_index: int, metadata: ClusterMetadata) -> None:
        self.worker_index = worker_index
        self.metadata: trio_util.AsyncValue[ClusterMetadata] = trio_util.AsyncValue(metadata)
        #: Every worker's advertised address; node id = worker index.
        self.nodes: trio_util.AsyncValue[tuple[Node, ...]] = trio_util.AsyncValue(())
        self._producer_ids_lock = trio.Lock()
        self._next_producer_id = 0
        self._producer_ids_end = 0

    @property
    def current(self) -> ClusterMetadata:
        """``metadata.value``, typed."""
        value: ClusterMetadata = self.metadata.value
        return value

    @property
    def current_nodes(self) -> tuple[Node, ...]:
        """``nodes.value``, typed."""
        value: tuple[Node, ...] = self.nodes.value
        return value

    @property
    def cluster_id(self) -> str:
        return self.current.cluster_id

    def node(self, node_id: int) -> Node | None:
        for node in self.current_nodes:
            if node.node_id == node_id:
                return node
        return None

    async def create_topic(
        self,
        name: str,
        partitions: int | None = None,
        config: LogConfig | None = None,
        overrides: Mapping[str, str] | None = None,
    ) -> TopicInfo:
        """Create a topic; returns once this worker has opened its share of it.

        ``overrides``: the Kafka configs a client gave, which made ``config``.
        """
        return await self._create_topic(name, partitions, config, overrides)

    async def alter_topic_config(
        self,
        name: str,
        config: LogConfig,
        overrides: Mapping[str, str],
        expected: TopicInfo | None = None,
    ) -> TopicInfo:
        """Replace a topic's configs; returns once every worker applies them.

        ``expected``: the topic as the change was computed from it; ConfigsChangedError
        if its configs changed meanwhile.
        """
        return await self._alter_topic_config(name, config, overrides, expected)

    async def create_partitions(self, name: str, total: int) -> TopicInfo:
        return await self._create_partitions(name, total)

    async def alter_broker_defaults(
        self,
        configs: Mapping[str, str],
        node: str = "",
        expected: Mapping[str, str] | None = None,
    ) -> None:
        """Replace the dynamic broker configs of the cluster ("") or of one node; returns
        once every worker has them (and the topics that follow them their new configs).
        ``expected``: what they were when the change was computed (ConfigsChangedError if
        they changed meanwhile)."""
        await self._alter_broker_defaults(configs, node, expected)

    async def delete_topic(self, name: str) -> None:
        await self._delete_topic(name)

    async def allocate_producer_id(self) -> int:
        """An idempotent producer id no worker ever hands out again (from a reserved block)."""
        async with self._producer_ids_lock:
            if self._next_producer_id >= self._producer_ids_end:
                first = await self._allocate_producer_ids(PRODUCER_ID_BLOCK_SIZE)
                self._next_producer_id = first
                self._producer_ids_end = first + PRODUCER_ID_BLOCK_SIZE
            producer_id = self._next_producer_id
            self._next_producer_id += 1
            return producer_id

    @abc.abstractmethod
    async def _create_topic(
        self,
        name: str,
        partitions: int | None,
        config: LogConfig | None,
        overrides: Mapping[str, str] | None,
    ) -> TopicInfo: ...

    @abc.abstractmethod
    async def _alter_topic_config(
        self,
        name: str,
        config: LogConfig,
        overrides: Mapping[str, str],
        expected: TopicInfo | None,
    ) -> TopicInfo: ...

    @abc.abstractmethod
    async def _create_partitions(self, name: str, total: int) -> TopicInfo: ...

    @abc.abstractmethod
    async def _alter_broker_defaults(
        self, configs: Mapping[str, str], node: str, expected: Mapping[str, str] | None
    ) -> None: ...

    @abc.abstractmethod
    async def _delete_topic(self, name: str) -> None: ...

    @abc.abstractmethod
    async def _allocate_producer_ids(self, count: int) -> int: ...


class LocalClusterView(ClusterView):
    """The view of the one worker of an embedded broker: the controller is in-process.

    ``apply`` is the worker's shard following new metadata; a change returns
    once it has.
    """

    def __init__(self, controller: Controller, apply: Distribute, worker_index: int = 0) -> None:
        super().__init__(worker_index, controller.current)
        self._controller = controller
        self._apply = apply

    async def _distribute(
        self, metadata: ClusterMetadata
    ) -> Mapping[tuple[str, int], StorageError]:
        failures = await self._apply(metadata)
        self.metadata.value = metadata
        return failures

    async def _follow(self) -> None:
        await self._distribute(self._controller.current)

    async def _create_topic(
        self,
        name: str,
        partitions: int | None,
        config: LogConfig | None,
        overrides: Mapping[str, str] | None,
    ) -> TopicInfo:
        return await create_topic_everywhere(
            self._controller, self._distribute, name, partitions, config, overrides=overrides
        )

    async def _alter_topic_config(
        self,
        name: str,
        config: LogConfig,
        overrides: Mapping[str, str],
        expected: TopicInfo | None,
    ) -> TopicInfo:
        try:
            return await self._controller.alter_topic_config(name, config, overrides, expected)
        finally:
            await self._follow()

    async def _create_partitions(self, name: str, total: int) -> TopicInfo:
        try:
            return await self._controller.create_partitions(name, total)
        finally:
            await self._follow()

    async def _delete_topic(self, name: str) -> None:
        try:
            await self._controller.delete_topic(name)
        finally:
            await self._follow()

    async def _alter_broker_defaults(
        self, configs: Mapping[str, str], node: str, expected: Mapping[str, str] | None
    ) -> None:
        try:
            await self._controller.alter_broker_defaults(configs, node, expected)
        finally:
            await self._follow()

    async def _allocate_producer_ids(self, count: int) -> int:
        return await self._controller.allocate_producer_ids(count)

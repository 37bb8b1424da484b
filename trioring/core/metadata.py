"""TopicStore: the durable list of topics and their settings.

One JSON document, replaced atomically (write a temporary file, fdatasync,
rename, fsync the directory), so a crash leaves either the old or the new
list, never a torn one. Topics change rarely; a document is simpler to
inspect and repair by hand than a log, at no cost that matters.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from typing import Any

import attrs
import trio

from trioring._constants import PARTITIONS_MAX, TOPIC_NAME_LENGTH_MAX
from trioring.errors import InvalidPartitionsError, InvalidTopicError, StorageError
from trioring.storage.files import read_file, remove_temporary_files, replace_file
from trioring.storage.log import LogConfig
from trioring.uring import FileBackend

METADATA_DIRECTORY = "__cluster_metadata"
TOPICS_FILE = "topics.json"
_FORMAT_VERSION = 1
_TOPIC_NAME = re.compile(r"[a-zA-Z0-9._-]+")
#: Names trioring uses for its own directories.
RESERVED_TOPIC_NAMES = frozenset({METADATA_DIRECTORY, "__consumer_offsets"})


@attrs.frozen
class TopicInfo:
    name: str
    partitions: int
    topic_id: str
    config: LogConfig


def validate_topic_name(name: str) -> None:
    """Kafka's rules: 1-249 of ``[a-zA-Z0-9._-]``, not ``.`` or ``..``."""
    if not isinstance(name, str) or not name:
        raise InvalidTopicError("a topic name must be a non-empty string")
    if len(name) > TOPIC_NAME_LENGTH_MAX:
        raise InvalidTopicError(
            f"topic name is {len(name)} characters; the limit is {TOPIC_NAME_LENGTH_MAX}"
        )
    if name in {".", ".."} or not _TOPIC_NAME.fullmatch(name):
        raise InvalidTopicError(
            f"topic name {name!r} is not allowed: use letters, digits, '.', '_' and '-'"
        )
    if name in RESERVED_TOPIC_NAMES:
        raise InvalidTopicError(f"topic name {name!r} is reserved for trioring's own use")


def validate_partitions(partitions: int) -> None:
    if not isinstance(partitions, int) or not 1 <= partitions <= PARTITIONS_MAX:
        raise InvalidPartitionsError(
            f"a topic needs between 1 and {PARTITIONS_MAX} partitions, not {partitions!r}"
        )


def _config_to_json(config: LogConfig) -> dict[str, Any]:
    return attrs.asdict(config)


def _config_from_json(data: dict[str, Any]) -> LogConfig:
    known = {field.name for field in attrs.fields(LogConfig)}
    return LogConfig(**{key: value for key, value in data.items() if key in known})


class TopicStore:
    def __init__(self, data_dir: str, backend: FileBackend) -> None:
        self._directory = os.path.join(data_dir, METADATA_DIRECTORY)
        self._path = os.path.join(self._directory, TOPICS_FILE)
        self._backend = backend
        self.topics: dict[str, TopicInfo] = {}

    async def load(self) -> None:
        backend = self._backend
        if await backend.make_directory(self._directory):
            await backend.fsync_directory(os.path.dirname(self._directory))
        # A replacement a crash or a full disk interrupted: the real file is intact.
        await remove_temporary_files(backend, self._directory)
        raw = await read_file(backend, self._path)
        if raw is None:
            self.topics = {}
            return
        try:
            document = json.loads(raw)
            if not isinstance(document, dict):
                raise ValueError(f"expected a JSON object, found {type(document).__name__}")
            if document.get("version") != _FORMAT_VERSION:
                raise ValueError(f"unknown format version {document.get('version')!r}")
            self.topics = {
                entry["name"]: TopicInfo(
                    name=entry["name"],
                    partitions=int(entry["partitions"]),
                    topic_id=entry["topic_id"],
                    config=_config_from_json(entry["config"]),
                )
                for entry in document["topics"]
            }
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise StorageError(
                f"{self._path} is unreadable ({error}); restore it from a backup or remove "
                "the data directory to start empty"
            ) from None

    def new_topic(self, name: str, partitions: int, config: LogConfig) -> TopicInfo:
        return TopicInfo(name, partitions, uuid.uuid4().hex, config)

    async def save(self, topics: dict[str, TopicInfo]) -> None:
        """Persist ``topics`` atomically; only then make them the current list."""
        document = {
            "version": _FORMAT_VERSION,
            "topics": [
                {
                    "name": topic.name,
                    "partitions": topic.partitions,
                    "topic_id": topic.topic_id,
                    "config": _config_to_json(topic.config),
                }
                for topic in sorted(topics.values(), key=lambda t: t.name)
            ],
        }
        payload = json.dumps(document, indent=1).encode()
        await replace_file(self._backend, self._path, payload)
        self.topics = dict(topics)


#: Producer ids reserved durably at a time; a restart skips the rest of a block.
PRODUCER_ID_BLOCK_SIZE = 1000
PRODUCER_IDS_FILE = "producer-ids"
_PRODUCER_IDS_MAGIC = "trioring-producer-ids-v1"


class ProducerIdAllocator:
    """Hands out idempotent producer ids that never repeat, even across crashes.

    Ids are reserved in blocks: the end of the current block is persisted
    (atomically) before any id from it is handed out.
    """

    def __init__(self, data_dir: str, backend: FileBackend) -> None:
        self._directory = os.path.join(data_dir, METADATA_DIRECTORY)
        self._path = os.path.join(self._directory, PRODUCER_IDS_FILE)
        self._backend = backend
        self._next = 0
        self._block_end = 0
        self._lock = trio.Lock()

    async def load(self) -> None:
        raw = await read_file(self._backend, self._path)
        if raw is None:
            return
        text = raw.decode("ascii", "replace")
        fields = text.split()
        if len(fields) != 2 or fields[0] != _PRODUCER_IDS_MAGIC or not fields[1].isdigit():
            raise StorageError(
                f"{self._path} is unreadable ({text[:80]!r}); restore it from a backup: "
                "reusing producer ids could make the broker drop new records as duplicates"
            )
        self._next = self._block_end = int(fields[1])

    async def allocate(self) -> int:
        async with self._lock:
            if self._next >= self._block_end:
                block_end = self._next + PRODUCER_ID_BLOCK_SIZE
                await self._persist(block_end)
                self._block_end = block_end
            producer_id = self._next
            self._next += 1
            return producer_id

    async def _persist(self, block_end: int) -> None:
        payload = f"{_PRODUCER_IDS_MAGIC} {block_end}\n".encode()
        await replace_file(self._backend, self._path, payload)

"""Wire adapters of committed offsets: OffsetCommit and OffsetFetch."""

from __future__ import annotations

from typing import Any

from kio.schema.errors import ErrorCode

from trioring.core.offsets import CommittedOffset
from trioring.handlers.messages import OffsetCommitRequest, OffsetFetchRequest
from trioring.protocol.kafka import ApiKey, response_schema
from trioring.server.apis._build import build, sibling
from trioring.server.apis._context import NONE, ApiContext, error_code

__all__ = ["OFFSET_METADATA_CHARACTERS_MAX", "offset_commit", "offset_fetch"]

#: Kafka's offset.metadata.max.bytes (counted in characters, as Kafka does).
OFFSET_METADATA_CHARACTERS_MAX = 4096


#: OffsetFetch v8+ asks for many groups at once (KIP-709).
OFFSET_FETCH_BATCH_VERSION = 8


async def offset_fetch(ctx: ApiContext, version: int, request: Any) -> Any:
    response_class = response_schema(ApiKey.OFFSET_FETCH, version)
    if version < OFFSET_FETCH_BATCH_VERSION:
        topic_class = sibling(response_class, "OffsetFetchResponseTopic")
        partition_class = sibling(response_class, "OffsetFetchResponsePartition")
        topics, top_code = await _group_offsets(
            ctx, version, request.group_id, request.topics, topic_class, partition_class
        )
        return build(response_class, topics=topics, error_code=top_code)
    group_class = sibling(response_class, "OffsetFetchResponseGroup")
    topic_class = sibling(response_class, "OffsetFetchResponseTopics")
    partition_class = sibling(response_class, "OffsetFetchResponsePartitions")
    groups = []
    for group in request.groups:
        topics, code = await _group_offsets(
            ctx,
            version,
            group.group_id,
            group.topics,
            topic_class,
            partition_class,
            member=(getattr(group, "member_id", None), getattr(group, "member_epoch", -1)),
        )
        groups.append(build(group_class, group_id=group.group_id, topics=topics, error_code=code))
    return build(response_class, groups=tuple(groups))


async def _group_offsets(  # noqa: PLR0917  # one call per version family
    ctx: ApiContext,
    version: int,
    group_id: str,
    requested_topics: Any,
    topic_class: type,
    partition_class: type,
    member: tuple[str | None, int] = (None, -1),
) -> tuple[tuple[Any, ...], int]:
    """One group's committed offsets as response topics, and the group's error code.

    Without transactions no offset is ever pending, so ``require_stable``
    (v7+) needs nothing; the member id and epoch of v9 are those of a
    consumer-protocol (KIP-848) member, checked by the handler.
    """
    try:
        response = await ctx.handlers.fetch_offsets(
            ctx.handler_context(),
            OffsetFetchRequest(group_id, member_id=member[0], member_epoch=int(member[1])),
        )
        committed = response.offsets
        top_code = NONE
    except Exception as error:
        committed, top_code = {}, error_code(error)
    if requested_topics is None:
        requested: dict[str, list[int]] = {}
        for topic, partition in sorted(committed):
            requested.setdefault(topic, []).append(partition)
    else:
        requested = {t.name: list(t.partition_indexes) for t in requested_topics}
    topics = []
    for name, partitions in requested.items():
        entries = []
        for partition in partitions:
            value = committed.get((name, partition))
            entries.append(
                build(
                    partition_class,
                    partition_index=partition,
                    committed_offset=-1 if value is None else value.offset,
                    committed_leader_epoch=-1,
                    metadata="" if value is None else value.metadata,
                    error_code=top_code if version < 2 else NONE,
                )
            )
        topics.append(build(topic_class, name=name, partitions=tuple(entries)))
    return tuple(topics), top_code


async def offset_commit(ctx: ApiContext, version: int, request: Any) -> Any:
    response_class = response_schema(ApiKey.OFFSET_COMMIT, version)
    topic_class = sibling(response_class, "OffsetCommitResponseTopic")
    partition_class = sibling(response_class, "OffsetCommitResponsePartition")
    codes: dict[tuple[str, int], int] = {}
    group_code: int = NONE
    offsets = {}
    for topic in request.topics:
        for partition in topic.partitions:
            key = (topic.name, partition.partition_index)
            metadata = partition.committed_metadata or ""
            if len(metadata) > OFFSET_METADATA_CHARACTERS_MAX:
                codes[key] = ErrorCode.offset_metadata_too_large
                continue
            offsets[key] = CommittedOffset(partition.committed_offset, metadata)
    try:
        response = await ctx.handlers.commit_offsets(
            ctx.handler_context(),
            OffsetCommitRequest(
                request.group_id,
                offsets,
                generation_id=int(request.generation_id_or_member_epoch),
                member_id=request.member_id,
                group_instance_id=getattr(request, "group_instance_id", None),
                api_version=version,
            ),
        )
        codes.update((tp, error_code(error)) for tp, error in response.errors.items())
    except Exception as error:
        group_code = error_code(error)
    topics = tuple(
        build(
            topic_class,
            name=topic.name,
            partitions=tuple(
                build(
                    partition_class,
                    partition_index=partition.partition_index,
                    error_code=codes.get((topic.name, partition.partition_index), group_code),
                )
                for partition in topic.partitions
            ),
        )
        for topic in request.topics
    )
    return build(response_class, topics=topics)

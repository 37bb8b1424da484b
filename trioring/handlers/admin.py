"""Topic administration."""

from __future__ import annotations

from trioring.handlers.context import HandlerContext
from trioring.handlers.messages import CreateTopicRequest, CreateTopicResponse


async def create_topic(ctx: HandlerContext, request: CreateTopicRequest) -> CreateTopicResponse:
    topic = await ctx.shard.create_topic(request.name, request.partitions, request.config)
    return CreateTopicResponse(topic)

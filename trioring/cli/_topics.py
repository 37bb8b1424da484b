"""``trioring topics list|create|delete|describe|add-partitions``."""

from __future__ import annotations

import argparse
from typing import Any

from kio.schema.errors import ErrorCode

from trioring.cli._common import (
    CommandError,
    Output,
    check_reachable,
    note,
    parse_pairs,
    topic_name,
)
from trioring.client import open_admin
from trioring.errors import KafkaError


def add_parser(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    topics = commands.add_parser(
        "topics",
        help="list, create, delete and describe topics",
        description="Topics of any Kafka broker: list, create, delete, describe, add-partitions.",
    )
    actions = topics.add_subparsers(dest="action", metavar="ACTION", required=True)

    listing = actions.add_parser("list", parents=parents, help="topic names and partitions")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(run=list_topics)

    create = actions.add_parser("create", parents=parents, help="create a topic")
    create.add_argument("topic", type=topic_name)
    create.add_argument(
        "-p", "--partitions", type=int, default=-1, help="default: the broker's default"
    )
    create.add_argument(
        "-r",
        "--replication-factor",
        type=int,
        default=-1,
        help="default: the broker's default (trioring has no replicas: 1)",
    )
    create.add_argument(
        "-c",
        "--config",
        action="append",
        metavar="KEY=VALUE",
        help="a topic config such as retention.ms=3600000 (repeat for more)",
    )
    create.add_argument(
        "--if-not-exists", action="store_true", help="succeed if the topic exists already"
    )
    create.set_defaults(run=create_topic)

    delete = actions.add_parser("delete", parents=parents, help="delete a topic and its data")
    delete.add_argument("topic", type=topic_name)
    delete.add_argument("--if-exists", action="store_true", help="succeed if there is no topic")
    delete.set_defaults(run=delete_topic)

    describe = actions.add_parser(
        "describe",
        parents=parents,
        help="partitions (leader, start and end offsets, size) and configs",
    )
    describe.add_argument("topic", type=topic_name)
    describe.add_argument("--json", action="store_true", help="one JSON object")
    describe.set_defaults(run=describe_topic)

    grow = actions.add_parser(
        "add-partitions", parents=parents, help="raise a topic's partition count"
    )
    grow.add_argument("topic", type=topic_name)
    grow.add_argument(
        "-p",
        "--partitions",
        type=int,
        required=True,
        help="the new total (as kafka-topics --alter --partitions)",
    )
    grow.set_defaults(run=add_partitions)


async def list_topics(options: argparse.Namespace) -> int:
    bootstrap = await check_reachable(options)
    out = Output()
    async with open_admin(bootstrap, client_id="trioring-cli") as admin:
        topics = await admin.describe_topics()
    if options.json:
        for name, info in topics.items():
            out.json({"topic": name, "partitions": len(info.partitions)})
    elif out.terminal:
        out.table(["topic", "partitions"], [(n, len(i.partitions)) for n, i in topics.items()])
    else:
        for name in topics:  # names alone: `trioring topics list | xargs ...`
            out.write(name)
    return 0


async def create_topic(options: argparse.Namespace) -> int:
    bootstrap = await check_reachable(options)
    configs = dict(parse_pairs(options.config, "--config"))
    async with open_admin(bootstrap, client_id="trioring-cli") as admin:
        try:
            await admin.create_topic(
                options.topic,
                partitions=options.partitions,
                replication_factor=options.replication_factor,
                configs=configs,
            )
        except KafkaError as error:
            if error.kafka_error_code == ErrorCode.topic_already_exists and options.if_not_exists:
                note(f"topic {options.topic!r} exists already")
                return 0
            raise
        info = await admin.describe_topic(options.topic)
    note(f"created topic {options.topic!r} with {len(info.partitions)} partitions")
    return 0


async def delete_topic(options: argparse.Namespace) -> int:
    bootstrap = await check_reachable(options)
    async with open_admin(bootstrap, client_id="trioring-cli") as admin:
        try:
            await admin.delete_topic(options.topic)
        except KafkaError as error:
            if error.kafka_error_code == ErrorCode.unknown_topic_or_partition and options.if_exists:
                note(f"there is no topic {options.topic!r}")
                return 0
            raise
    note(f"deleted topic {options.topic!r}")
    return 0


async def add_partitions(options: argparse.Namespace) -> int:
    bootstrap = await check_reachable(options)
    async with open_admin(bootstrap, client_id="trioring-cli") as admin:
        info = await admin.describe_topic(options.topic)
        if options.partitions <= len(info.partitions):
            raise CommandError(
                f"topic {options.topic!r} has {len(info.partitions)} partitions already: "
                "give a larger total (Kafka cannot remove partitions)"
            )
        await admin.create_partitions(options.topic, options.partitions)
    note(f"topic {options.topic!r} now has {options.partitions} partitions")
    return 0


async def describe_topic(options: argparse.Namespace) -> int:
    bootstrap = await check_reachable(options)
    out = Output()
    async with open_admin(bootstrap, client_id="trioring-cli") as admin:
        info = await admin.describe_topic(options.topic)
        keys = [(options.topic, p.partition) for p in info.partitions]
        starts = await admin.list_offsets(keys, "earliest")
        ends = await admin.list_offsets(keys, "latest")
        try:
            sizes = await admin.log_sizes(keys)
        except KafkaError as error:
            # Sizes are a convenience: a broker that will not tell them (Kafka asks for
            # the DESCRIBE permission on the cluster) leaves them blank.
            note(f"sizes unavailable: {error}")
            sizes = {}
        configs = await admin.describe_topic_configs(options.topic)
    partitions = [
        {
            "partition": p.partition,
            "leader": p.leader,
            "start_offset": starts[(options.topic, p.partition)],
            "end_offset": ends[(options.topic, p.partition)],
            "size_bytes": sizes.get((options.topic, p.partition)),
        }
        for p in sorted(info.partitions, key=lambda p: p.partition)
    ]
    if options.json:
        out.json(
            {
                "topic": options.topic,
                "topic_id": info.topic_id,
                "partitions": partitions,
                "configs": configs,
            }
        )
        return 0
    columns = ["partition", "leader", "start_offset", "end_offset", "size_bytes"]
    out.table(
        columns,
        [[entry[column] for column in columns] for entry in partitions],
        title=f"topic {options.topic}: {len(partitions)} partitions",
    )
    if out.terminal:
        out.table(["config", "value"], sorted(configs.items()), title=f"configs of {options.topic}")
    else:
        out.write("")
        out.write("config\tvalue")
        for key, value in sorted(configs.items()):
            out.write(f"{key}\t{'' if value is None else value}")
    return 0

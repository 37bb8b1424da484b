"""``trioring groups list|describe|reset-offsets|delete``."""

from __future__ import annotations

import argparse
from typing import Any

from trioring.cli._common import (
    CommandError,
    Output,
    UsageError,
    check_reachable,
    iso_time_ms,
    note,
)
from trioring.client import Admin, open_admin


def add_parser(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    groups = commands.add_parser(
        "groups",
        help="list, describe, reset and delete consumer groups",
        description="Consumer groups of any Kafka broker: list, describe (members, "
        "assignments, committed offsets, lag), reset-offsets, delete.",
    )
    actions = groups.add_subparsers(dest="action", metavar="ACTION", required=True)

    listing = actions.add_parser("list", parents=parents, help="groups and their states")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(run=list_groups)

    describe = actions.add_parser(
        "describe",
        parents=parents,
        help="members, assignments, committed offsets and lag per partition",
    )
    describe.add_argument("group")
    describe.add_argument("--json", action="store_true", help="one JSON object")
    describe.set_defaults(run=describe_group)

    reset = actions.add_parser(
        "reset-offsets",
        parents=parents,
        help="move a group's committed offsets (the group must have no members)",
        description="Move a group's committed offsets, as kafka-consumer-groups "
        "--reset-offsets: shows the plan, and applies it only with --execute. The group "
        "must have no active members.",
    )
    reset.add_argument("group")
    scope = reset.add_mutually_exclusive_group(required=True)
    scope.add_argument(
        "--topic",
        action="append",
        metavar="TOPIC[:P,P...]",
        help="a topic, all its partitions or the ones listed (repeat for more)",
    )
    scope.add_argument(
        "--all-topics", action="store_true", help="every topic the group has committed in"
    )
    to = reset.add_mutually_exclusive_group(required=True)
    to.add_argument("--to-earliest", action="store_true", help="each partition's log start")
    to.add_argument("--to-latest", action="store_true", help="each partition's end")
    to.add_argument("--to-offset", type=int, metavar="N", help="offset N (kept within the log)")
    to.add_argument(
        "--to-datetime",
        metavar="ISO-8601",
        help="the first record at or after this time, e.g. 2026-12-01T10:00:00+00:00",
    )
    to.add_argument(
        "--to-timestamp", type=int, metavar="MS", help="the first record at or after this (ms)"
    )
    to.add_argument(
        "--shift-by", type=int, metavar="N", help="move the committed offset by N (may be < 0)"
    )
    reset.add_argument("--execute", action="store_true", help="apply the plan (default: show it)")
    reset.set_defaults(run=reset_offsets)

    delete = actions.add_parser(
        "delete", parents=parents, help="delete a group with no members, and its offsets"
    )
    delete.add_argument("group")
    delete.set_defaults(run=delete_group)


async def list_groups(options: argparse.Namespace) -> int:
    bootstrap = await check_reachable(options)
    out = Output()
    async with open_admin(bootstrap, client_id="trioring-cli") as admin:
        groups = await admin.list_groups()
    if options.json:
        for group in groups:
            out.json(
                {
                    "group": group.group_id,
                    "state": group.state,
                    "protocol_type": group.protocol_type,
                    "type": group.group_type,
                }
            )
    else:
        out.table(
            ["group", "state", "protocol_type"],
            [(g.group_id, g.state, g.protocol_type) for g in groups],
        )
    return 0


async def describe_group(options: argparse.Namespace) -> int:
    bootstrap = await check_reachable(options)
    out = Output()
    async with open_admin(bootstrap, client_id="trioring-cli") as admin:
        description = await admin.describe_group(options.group)
        lags = await admin.group_lag(options.group)
    if description.state == "Dead" and not lags:
        raise CommandError(f"there is no group {options.group!r}")
    owner = {tp: m.member_id for m in description.members for tp in m.assignment}
    members: list[dict[str, Any]] = [
        {
            "member_id": m.member_id,
            "group_instance_id": m.group_instance_id,
            "client_id": m.client_id,
            "host": m.client_host,
            "partitions": [f"{topic}-{partition}" for topic, partition in m.assignment],
        }
        for m in description.members
    ]
    # Partitions assigned but never committed in show too, with no committed offset.
    offsets = []
    for topic, partition in sorted(set(lags) | set(owner)):
        lag = lags.get((topic, partition))
        # None: never committed, or its topic deleted since.
        known = lag if lag is not None and lag.end >= 0 else None
        offsets.append(
            {
                "topic": topic,
                "partition": partition,
                "committed": None if lag is None else lag.committed,
                "end": None if known is None else known.end,
                "lag": None if known is None else known.lag,
                "member_id": owner.get((topic, partition)),
            }
        )
    summary = {
        "group": options.group,
        "state": description.state,
        "protocol_type": description.protocol_type,
        "protocol": description.protocol,
        "coordinator": description.coordinator,
    }
    if options.json:
        out.json({**summary, "members": members, "offsets": offsets})
        return 0
    out.table(list(summary), [list(summary.values())], title=f"group {options.group}")
    if not out.terminal:
        out.write("")
    out.table(
        ["member_id", "client_id", "host", "partitions"],
        [(m["member_id"], m["client_id"], m["host"], ",".join(m["partitions"])) for m in members],
        title="members",
    )
    if not out.terminal:
        out.write("")
    columns = ["topic", "partition", "committed", "end", "lag", "member_id"]
    out.table(columns, [[entry[c] for c in columns] for entry in offsets], title="offsets")
    return 0


def _scope(options: argparse.Namespace) -> dict[str, list[int] | None]:
    """``--topic T`` / ``--topic T:0,2``: the topics asked for, with their partitions or
    None for all of them."""
    topics: dict[str, list[int] | None] = {}
    for value in options.topic or ():
        name, separator, listed = value.partition(":")
        if not name:
            raise UsageError(f"--topic {value!r} names no topic")
        if not separator:
            topics[name] = None
            continue
        try:
            partitions = [int(p) for p in listed.split(",")]
        except ValueError:
            raise UsageError(
                f"--topic {value!r}: the partitions are numbers separated by commas"
            ) from None
        topics[name] = sorted(set(partitions))
    return topics


async def _targets(
    admin: Admin, options: argparse.Namespace, committed: dict[tuple[str, int], int]
) -> list[tuple[str, int]]:
    if options.all_topics:
        if not committed:
            raise CommandError(
                f"group {options.group!r} has no commits in a topic that exists: nothing to move"
            )
        return sorted(committed)
    targets = []
    for topic, partitions in _scope(options).items():
        info = await admin.describe_topic(topic)
        existing = sorted(p.partition for p in info.partitions)
        for partition in partitions if partitions is not None else existing:
            if partition not in existing:
                raise UsageError(
                    f"topic {topic!r} has no partition {partition} (it has {len(existing)})"
                )
            targets.append((topic, partition))
    return targets


async def _plan(
    admin: Admin,
    options: argparse.Namespace,
    targets: list[tuple[str, int]],
    committed: dict[tuple[str, int], int],
) -> dict[tuple[str, int], int]:
    starts = await admin.list_offsets(targets, "earliest")
    ends = await admin.list_offsets(targets, "latest")
    if options.to_earliest:
        return starts
    if options.to_latest:
        return ends
    if options.to_datetime is not None or options.to_timestamp is not None:
        if options.to_datetime is not None:
            timestamp_ms = iso_time_ms(options.to_datetime, "--to-datetime")
        else:
            timestamp_ms = options.to_timestamp
            if timestamp_ms < 0:
                raise UsageError(f"--to-timestamp {timestamp_ms} is before 1970")
        found = await admin.list_offsets(targets, timestamp_ms)
        # No record at or after the time: the end, as Kafka's tool does.
        return {tp: offset if offset >= 0 else ends[tp] for tp, offset in found.items()}
    plan = {}
    for tp in targets:
        if options.to_offset is not None:
            wanted = options.to_offset
        else:
            wanted = committed.get(tp, ends[tp]) + options.shift_by
        # Kept within the log, as kafka-consumer-groups does.
        plan[tp] = min(max(wanted, starts[tp]), ends[tp])
    return plan


async def reset_offsets(options: argparse.Namespace) -> int:
    bootstrap = await check_reachable(options)
    out = Output()
    async with open_admin(bootstrap, client_id="trioring-cli") as admin:
        if options.execute:  # checked first: nothing else matters while it runs
            description = await admin.describe_group(options.group)
            if description.members:
                raise CommandError(
                    f"group {options.group!r} has {len(description.members)} active "
                    f"member(s) (state {description.state}): stop its consumers first"
                )
        lags = await admin.group_lag(options.group)
        # Partitions of deleted topics are left out: there is nothing to move to.
        committed = {tp: lag.committed for tp, lag in lags.items() if lag.end >= 0}
        targets = await _targets(admin, options, committed)
        plan = await _plan(admin, options, targets, committed)
        if options.execute:
            await admin.alter_group_offsets(options.group, plan)
    out.table(
        ["topic", "partition", "committed", "new_offset"],
        [(t, p, committed.get((t, p)), offset) for (t, p), offset in sorted(plan.items())],
        title=f"group {options.group}: {'new' if options.execute else 'planned'} offsets",
    )
    if not options.execute:
        note("not applied: add --execute to commit these offsets")
    return 0


async def delete_group(options: argparse.Namespace) -> int:
    bootstrap = await check_reachable(options)
    async with open_admin(bootstrap, client_id="trioring-cli") as admin:
        await admin.delete_group(options.group)
    note(f"deleted group {options.group!r}")
    return 0

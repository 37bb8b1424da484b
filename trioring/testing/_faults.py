"""Fault injection: a middleware that fails, delays or drops chosen requests.

``FaultInjector`` wraps every handler (``open_broker(..., middleware=[faults])``;
the broker process installs one per worker with ``serve --fault-control``).
Tests tell it what to do to the next requests of a Kafka API::

    faults.fail("Produce", "NOT_LEADER_OR_FOLLOWER", count=2)
    faults.delay("Fetch", 0.5)                  # every Fetch, until cleared
    faults.drop_connection("OffsetCommit")      # the next one: close the socket

A fault acts before the handler runs, so a failed or dropped request changed
nothing in the broker: a produce that failed appended nothing, and a client's
retry cannot duplicate it.

Counts are per handler call. The handlers of Produce, ListOffsets and
DeleteRecords are called once per partition of a request (Kafka answers
those per partition, and so does a failure), every other API's once per
request. Metadata's handler also answers DescribeCluster and
DescribeTopicPartitions, so their requests count as Metadata. ApiVersions
has no handler and cannot be touched.
"""

from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final, Literal, get_args

import attrs
import trio
from kio.schema.errors import ErrorCode

from trioring._constants import (
    FAULT_CLIENT_ID_JSON_BYTES_MAX,
    FAULT_COUNT_MAX,
    FAULT_DELAY_SECONDS_MAX,
    FAULT_ENTRY_JSON_BYTES_MAX,
    FAULT_INJECTIONS_RECORDED_MAX,
    FAULT_RULES_MAX,
)
from trioring.errors import InvalidArgumentError, KafkaError
from trioring.handlers.context import Handler, HandlerContext, RequestT, ResponseT
from trioring.handlers.messages import (
    AlterConfigsRequest,
    AlterReassignmentsRequest,
    ConsumerGroupDescribeRequest,
    ConsumerGroupHeartbeatRequest,
    CreatePartitionsRequest,
    CreateTopicRequest,
    CreateTopicsRequest,
    DeleteGroupsRequest,
    DeleteRecordsRequest,
    DeleteTopicsRequest,
    DescribeConfigsRequest,
    DescribeGroupsRequest,
    DescribeLogDirsRequest,
    DescribeProducersRequest,
    DescribeQuorumRequest,
    ElectLeadersRequest,
    FetchRequest,
    FindCoordinatorRequest,
    HeartbeatRequest,
    IncrementalAlterConfigsRequest,
    InitProducerIdRequest,
    JoinGroupRequest,
    LeaveGroupRequest,
    ListGroupsRequest,
    ListOffsetsRequest,
    ListReassignmentsRequest,
    MetadataRequest,
    OffsetCommitRequest,
    OffsetDeleteRequest,
    OffsetFetchRequest,
    ProduceRequest,
    SyncGroupRequest,
)
from trioring.protocol.kafka import ApiKey, api_name

__all__ = ["API_NAMES", "API_OF_REQUEST", "Action", "Fault", "FaultInjector", "Injection"]

Action = Literal["fail", "delay", "drop_connection"]

#: The Kafka API each handler request type serves: the one table faults are
#: named by. (CreateTopicRequest is the embedded API's create_topic.)
API_OF_REQUEST: Final[Mapping[type, ApiKey]] = MappingProxyType(
    {
        ProduceRequest: ApiKey.PRODUCE,
        FetchRequest: ApiKey.FETCH,
        ListOffsetsRequest: ApiKey.LIST_OFFSETS,
        DeleteRecordsRequest: ApiKey.DELETE_RECORDS,
        OffsetCommitRequest: ApiKey.OFFSET_COMMIT,
        OffsetFetchRequest: ApiKey.OFFSET_FETCH,
        MetadataRequest: ApiKey.METADATA,
        FindCoordinatorRequest: ApiKey.FIND_COORDINATOR,
        DescribeQuorumRequest: ApiKey.DESCRIBE_QUORUM,
        CreateTopicRequest: ApiKey.CREATE_TOPICS,
        CreateTopicsRequest: ApiKey.CREATE_TOPICS,
        DeleteTopicsRequest: ApiKey.DELETE_TOPICS,
        CreatePartitionsRequest: ApiKey.CREATE_PARTITIONS,
        DescribeConfigsRequest: ApiKey.DESCRIBE_CONFIGS,
        AlterConfigsRequest: ApiKey.ALTER_CONFIGS,
        IncrementalAlterConfigsRequest: ApiKey.INCREMENTAL_ALTER_CONFIGS,
        DescribeLogDirsRequest: ApiKey.DESCRIBE_LOG_DIRS,
        DescribeProducersRequest: ApiKey.DESCRIBE_PRODUCERS,
        InitProducerIdRequest: ApiKey.INIT_PRODUCER_ID,
        ListReassignmentsRequest: ApiKey.LIST_PARTITION_REASSIGNMENTS,
        AlterReassignmentsRequest: ApiKey.ALTER_PARTITION_REASSIGNMENTS,
        ElectLeadersRequest: ApiKey.ELECT_LEADERS,
        JoinGroupRequest: ApiKey.JOIN_GROUP,
        SyncGroupRequest: ApiKey.SYNC_GROUP,
        HeartbeatRequest: ApiKey.HEARTBEAT,
        LeaveGroupRequest: ApiKey.LEAVE_GROUP,
        DescribeGroupsRequest: ApiKey.DESCRIBE_GROUPS,
        ListGroupsRequest: ApiKey.LIST_GROUPS,
        DeleteGroupsRequest: ApiKey.DELETE_GROUPS,
        OffsetDeleteRequest: ApiKey.OFFSET_DELETE,
        ConsumerGroupHeartbeatRequest: ApiKey.CONSUMER_GROUP_HEARTBEAT,
        ConsumerGroupDescribeRequest: ApiKey.CONSUMER_GROUP_DESCRIBE,
    }
)
#: Request type -> Kafka's name of its API ("Produce", "OffsetCommit").
_NAME_OF_REQUEST: Final = {request: api_name(key) for request, key in API_OF_REQUEST.items()}
#: Every name a fault may name, as Kafka spells it.
API_NAMES: Final = frozenset(_NAME_OF_REQUEST.values())
#: Lower case, no underscores -> name: "offset_commit" and "OFFSET_COMMIT" work too.
_NAMES_FOLDED: Final = {name.lower(): name for name in API_NAMES}


def _api(api: object) -> str:
    """Kafka's name of the API ``api`` names (a name in any case, or an ApiKey)."""
    if isinstance(api, ApiKey):
        api = api_name(api)
    if isinstance(api, str):
        name = _NAMES_FOLDED.get(api.replace("_", "").lower())
        if name is not None:
            return name
    raise InvalidArgumentError(
        f"no fault can be injected into API {api!r}: it is not one trioring has a handler "
        f"for; the APIs are {', '.join(sorted(API_NAMES))}"
    )


def _error(error: object) -> ErrorCode:
    """The ErrorCode ``error`` names (a member, or its name in any case)."""
    code: ErrorCode | None = None
    if isinstance(error, ErrorCode):
        code = error
    elif isinstance(error, str):
        code = ErrorCode.__members__.get(error.lower())
        if code is None:
            raise InvalidArgumentError(
                f"unknown Kafka error {error!r}: name a member of "
                "kio.schema.errors.ErrorCode, e.g. NOT_LEADER_OR_FOLLOWER"
            )
    else:
        raise InvalidArgumentError(
            f"a fault's error is a kio.schema.errors.ErrorCode or its name, not {error!r}"
        )
    if code == ErrorCode.none:
        raise InvalidArgumentError("ErrorCode.none is not an error: nothing would fail")
    return code


def _count(count: object, *, unbounded: bool) -> int | None:
    if count is None and unbounded:
        return None
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= FAULT_COUNT_MAX:
        allowed = f"1-{FAULT_COUNT_MAX}" + (" or None (until cleared)" if unbounded else "")
        raise InvalidArgumentError(f"a fault's count must be {allowed}, not {count!r}")
    return count


def _seconds(seconds: object) -> float:
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not math.isfinite(seconds)
        or not 0 <= seconds <= FAULT_DELAY_SECONDS_MAX
    ):
        raise InvalidArgumentError(
            f"a delay must be 0-{FAULT_DELAY_SECONDS_MAX:g} seconds, not {seconds!r}"
        )
    return float(seconds)


@attrs.frozen
class Fault:
    """What to do to the next ``count`` requests of ``api`` (None: every one until cleared).

    Build one with :meth:`FaultInjector.fail`, ``delay`` or ``drop_connection``
    (or :meth:`from_json`): they check every field.
    """

    api: str
    action: Action
    count: int | None
    error: ErrorCode | None = None
    seconds: float = 0.0

    @classmethod
    def fail(cls, api: str | ApiKey, error: ErrorCode | str, count: int = 1) -> Fault:
        return _checked("fail", api, count, error=error)

    @classmethod
    def delay(cls, api: str | ApiKey, seconds: float, count: int | None = None) -> Fault:
        return _checked("delay", api, count, seconds=seconds)

    @classmethod
    def drop_connection(cls, api: str | ApiKey, count: int = 1) -> Fault:
        return _checked("drop_connection", api, count)

    def to_json(self) -> dict[str, Any]:
        value: dict[str, Any] = {"action": self.action, "api": self.api, "count": self.count}
        if self.action == "fail":
            assert self.error is not None
            value["error"] = self.error.name.upper()
        elif self.action == "delay":
            value["seconds"] = self.seconds
        return value

    @classmethod
    def from_json(cls, value: object) -> Fault:
        """A fault from its JSON form (untrusted: InvalidArgumentError if it is not one)."""
        if not isinstance(value, dict):
            raise InvalidArgumentError(f"a fault is a JSON object, not {type(value).__name__}")
        action: Action
        given = value.get("action")
        if given == "fail" or given == "delay" or given == "drop_connection":  # noqa: PLR1714 - narrows to Action
            action = given
        else:
            raise InvalidArgumentError(
                f"a fault's action is one of {', '.join(sorted(_FIELDS))}, not {given!r}"
            )
        unknown = set(value) - _FIELDS[action]
        if unknown:
            raise InvalidArgumentError(
                f"unknown field(s) {', '.join(sorted(map(repr, unknown)))} of a {action} fault"
            )
        return _checked(
            action,
            value.get("api"),
            value.get("count", None if action == "delay" else 1),
            error=value.get("error"),
            seconds=value.get("seconds"),
        )


#: The fields of each action's JSON form.
_FIELDS: Final[Mapping[str, frozenset[str]]] = MappingProxyType(
    {
        "fail": frozenset({"action", "api", "count", "error"}),
        "delay": frozenset({"action", "api", "count", "seconds"}),
        "drop_connection": frozenset({"action", "api", "count"}),
    }
)
assert set(_FIELDS) == set(get_args(Action))


def _checked(
    action: Action, api: object, count: object, *, error: object = None, seconds: object = None
) -> Fault:
    """A Fault, every field checked (its arguments may come from anywhere)."""
    if action == "fail":
        return Fault(_api(api), action, _count(count, unbounded=False), _error(error))
    if action == "delay":
        return Fault(_api(api), action, _count(count, unbounded=True), seconds=_seconds(seconds))
    return Fault(_api(api), action, _count(count, unbounded=False))


@attrs.frozen
class Injection:
    """One fault that acted on one request."""

    api: str
    action: Action
    #: The Kafka error's name (NOT_LEADER_OR_FOLLOWER) for a "fail".
    error: str | None
    #: The latency added, for a "delay".
    seconds: float
    #: The id of the client whose request it was, cut to what takes 200 bytes in
    #: JSON (FAULT_CLIENT_ID_JSON_BYTES_MAX: 198 ASCII characters, 49 emoji).
    client_id: str
    #: The worker process that injected it (None in-process).
    worker: int | None = None

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_json(cls, value: dict[str, Any], worker: int | None = None) -> Injection:
        return cls(
            str(value["api"]),
            value["action"],
            None if value.get("error") is None else str(value["error"]),
            float(value.get("seconds", 0.0)),
            str(value.get("client_id", "")),
            worker,
        )


def entry_json(value: object) -> bytes:
    """``value`` as the control endpoint's answers write it: JSON, UTF-8, non-ASCII
    characters as they are (an escape would take 6 or 12 bytes for 2 to 4)."""
    return json.dumps(value, ensure_ascii=False).encode()


def kept_client_id(client_id: str) -> str:
    """The longest start of ``client_id`` whose JSON string takes at most
    FAULT_CLIENT_ID_JSON_BYTES_MAX bytes (what bounds an answer of injections)."""
    # A character takes at least a byte: no more than this can be kept. A lone
    # surrogate (an embedded caller's string; the wire's are UTF-8) cannot be
    # written as UTF-8: it becomes "?".
    kept = client_id[:FAULT_CLIENT_ID_JSON_BYTES_MAX].encode(errors="replace").decode()
    if len(entry_json(kept)) <= FAULT_CLIENT_ID_JSON_BYTES_MAX:
        return kept
    size = 2  # the quotes
    for index, character in enumerate(kept):
        size += len(entry_json(character)) - 2  # escapes are per character
        if size > FAULT_CLIENT_ID_JSON_BYTES_MAX:
            return kept[:index]
    raise AssertionError("the whole was too long, so some start of it is")


@attrs.define
class _Rule:
    fault: Fault
    #: Requests it still acts on; None: every one until cleared.
    remaining: int | None


class FaultInjector:
    """Middleware that fails, delays or drops the requests tests choose.

    ``open_broker(data_dir, middleware=[faults])``, then from the test::

        faults.fail("Produce", "NOT_LEADER_OR_FOLLOWER", count=2)

    For each request, every pending delay of its API adds its latency, then
    the oldest pending fail or drop of its API acts (faults of one kind queue
    up in the order they were added, as librdkafka's mock cluster pushes
    request errors). Each fault that acted counts the request and is gone
    after its count.
    """

    def __init__(self) -> None:
        self._rules: list[_Rule] = []
        self._injections: deque[Injection] = deque(maxlen=FAULT_INJECTIONS_RECORDED_MAX)
        #: Every injection since the last clear(), the forgotten ones included.
        self.injections_total = 0
        #: The delays under way (one per request held; the server bounds those),
        #: for clear() to end.
        self._delays: set[trio.CancelScope] = set()
        #: Set (and replaced) at each injection, for wait_injected().
        self._injection_made = trio.Event()

    def __call__(self, handler: Handler[RequestT, ResponseT], /) -> Handler[RequestT, ResponseT]:
        async def with_faults(ctx: HandlerContext, request: RequestT) -> ResponseT:
            # Without faults pending, a request costs one test of a list.
            if self._rules:
                name = _NAME_OF_REQUEST.get(type(request))
                if name is not None:
                    await self._inject(name, ctx)
            return await handler(ctx, request)

        return with_faults

    # --- what tests call ---------------------------------------------------------------

    def fail(self, api: str | ApiKey, error: ErrorCode | str, count: int = 1) -> None:
        """Answer the next ``count`` requests of ``api`` with Kafka ``error``.

        ``api`` is Kafka's name of the API ("Produce", "JoinGroup",
        "OffsetCommit") or its ApiKey; ``error`` an ErrorCode or its name
        ("NOT_LEADER_OR_FOLLOWER").
        """
        self.add(Fault.fail(api, error, count))

    def delay(self, api: str | ApiKey, seconds: float, count: int | None = None) -> None:
        """Hold the next ``count`` requests of ``api`` (None: all, until cleared)
        ``seconds`` before they run. The wait ends early at clear(), and when the
        broker stops (the request then runs, as requests in flight do at a stop)."""
        self.add(Fault.delay(api, seconds, count))

    def drop_connection(self, api: str | ApiKey, count: int = 1) -> None:
        """Close the client's connection instead of answering the next ``count``
        requests of ``api``; an embedded API call (no connection) raises
        KafkaError(NETWORK_EXCEPTION) instead."""
        self.add(Fault.drop_connection(api, count))

    def add(self, fault: Fault) -> None:
        if len(self._rules) >= FAULT_RULES_MAX:
            raise InvalidArgumentError(
                f"{FAULT_RULES_MAX} faults are pending already: clear() them first"
            )
        self._rules.append(_Rule(fault, fault.count))

    def clear(self) -> None:
        """Forget every pending fault and the record of injections; end the delays
        under way."""
        self._rules.clear()
        self._injections.clear()
        self.injections_total = 0
        for scope in self._delays:
            scope.cancel()

    def pending(self) -> list[Fault]:
        """The faults still to act, each with the count it has left."""
        return [attrs.evolve(rule.fault, count=rule.remaining) for rule in self._rules]

    def injected(self) -> list[Injection]:
        """The injections so far, oldest first (the last 1000: see ``injections_total``)."""
        return list(self._injections)

    async def wait_injected(self, total: int = 1) -> None:
        """Return once ``total`` injections were made since the last clear() (a test's
        way to know a request it started is being failed, held or dropped)."""
        while self.injections_total < total:
            await self._injection_made.wait()
        await trio.lowlevel.checkpoint()

    # --- what requests meet ------------------------------------------------------------

    async def _inject(self, name: str, ctx: HandlerContext) -> None:
        delay_seconds = 0.0
        outcome: Fault | None = None
        for rule in list(self._rules):  # a copy: rules that run out leave the list
            fault = rule.fault
            if fault.api != name:
                continue
            if fault.action == "delay":
                delay_seconds += fault.seconds
            elif outcome is None:
                outcome = fault
            else:
                continue  # a later fail or drop: its turn comes with a later request
            if rule.remaining is not None:
                rule.remaining -= 1
                if rule.remaining == 0:
                    self._rules.remove(rule)
            self._record(fault, ctx)
        if delay_seconds:
            # Until the delay is over, clear() cancels it, or the server stops
            # (a delay must not hold up a shutdown).
            with trio.move_on_after(delay_seconds) as delay:
                self._delays.add(delay)
                try:
                    if ctx.stopping is None:
                        await trio.sleep_forever()
                    else:
                        await ctx.stopping.wait()
                finally:
                    self._delays.discard(delay)
        if outcome is None:
            return
        if outcome.action == "fail":
            assert outcome.error is not None
            raise KafkaError(
                f"{outcome.error.name.upper()} injected by trioring.testing into {name}",
                outcome.error,
            )
        if ctx.drop_connection is not None:
            ctx.drop_connection()
            # The drop cancelled this request: Cancelled comes out of this
            # checkpoint. The error below is for a connection that did not.
            await trio.lowlevel.checkpoint()
        raise KafkaError(
            f"connection drop injected by trioring.testing into {name} (this call has no "
            "connection to drop)",
            ErrorCode.network_exception,
        )

    def _record(self, fault: Fault, ctx: HandlerContext) -> None:
        injection = Injection(
            fault.api,
            fault.action,
            None if fault.error is None else fault.error.name.upper(),
            fault.seconds,
            kept_client_id(ctx.client_id),
        )
        assert len(entry_json(injection.to_json())) <= FAULT_ENTRY_JSON_BYTES_MAX, injection
        self._injections.append(injection)
        self.injections_total += 1
        self._injection_made.set()
        self._injection_made = trio.Event()

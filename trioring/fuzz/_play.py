"""The player: plays a history's steps against a target and checks each answer.

Every request is a plain Kafka request built for the version the broker
speaks (the Trio client's connections, no retries of its own), so the same
player drives an embedded trioring, a trioring process, or any Kafka broker.
Each answer goes to the model (``_model.py``), which raises
ContractViolation when the broker breaks a promise; an answer the contract
does not allow at all (an error code with no reason) is one too.

Errors a real client retries (NOT_LEADER_OR_FOLLOWER, a coordinator moving
or loading, ...) are retried here for a bounded time after a restart or a
fault, when the contract lets the broker be briefly unavailable, and are
violations otherwise.
"""

from __future__ import annotations

import math
import random
import socket
import struct
from collections.abc import Callable
from typing import Any

import trio
from kio.schema.errors import ErrorCode

from trioring._constants import (
    FUZZ_DISK_RECOVERY_SECONDS,
    FUZZ_GROUP_REBALANCE_TIMEOUT_MS,
    FUZZ_GROUP_SESSION_TIMEOUT_MS,
    FUZZ_IDEMPOTENT_RESENDS_MAX,
    FUZZ_RECOVERY_SECONDS,
    FUZZ_STALLED_CONNECTIONS_MAX,
    FUZZ_STALLED_FETCHES,
)
from trioring.client._cluster import Cluster
from trioring.client._connection import BrokerConnection, ConnectionBrokenError
from trioring.errors import TrioringError
from trioring.fuzz import _kafka as kafka
from trioring.fuzz import steps as s
from trioring.fuzz._model import (
    ContractViolation,
    MemberModel,
    Model,
    PartitionModel,
    ProducerModel,
    TopicModel,
)
from trioring.fuzz._targets import Target
from trioring.protocol.kafka.consumer_protocol import (
    SUBSCRIPTION_VERSION_MAX,
    Subscription,
    encode_assignment,
    encode_subscription,
)
from trioring.protocol.records import Record, build_batch, decode_batch, list_batches

#: Error codes that say "not now, ask again" (Kafka's retriable errors the player meets).
_RETRIABLE = frozenset(
    {
        ErrorCode.not_leader_or_follower,
        ErrorCode.leader_not_available,
        ErrorCode.coordinator_load_in_progress,
        ErrorCode.coordinator_not_available,
        ErrorCode.not_coordinator,
        ErrorCode.request_timed_out,
        ErrorCode.network_exception,
        ErrorCode.rebalance_in_progress,
    }
)
#: What a disk fault may make the broker answer instead of doing the work.
_DISK_ERRORS = frozenset(
    {
        ErrorCode.kafka_storage_error,
        ErrorCode.not_leader_or_follower,
        ErrorCode.coordinator_not_available,
        ErrorCode.not_coordinator,
    }
)


class _Unavailable(Exception):
    """A retriable answer; the player asks again while the contract allows it."""


def _settled(api: str, code: int) -> ErrorCode:
    """An answer's error code, unless it says "not now": then _Unavailable (asked again)."""
    error = ErrorCode(code)
    if error in _RETRIABLE:
        raise _Unavailable(f"{api}: {error.name}")
    return error


class Player:
    """Plays steps against ``target``, holding the model of what it has been promised."""

    def __init__(self, target: Target, *, log: Callable[[str], None] | None = None) -> None:
        self.target = target
        self.model = Model()
        self._log = log
        self._values = 0
        self._nonce = random.Random().getrandbits(32)
        #: Until when (trio time) the broker may be unavailable: after a restart or a fault.
        self._unavailable_until = -math.inf
        self._started = False
        #: Until when storage errors stay allowed once no disk fault is in force.
        self._disk_grace_until = -math.inf
        #: Whether a failing fdatasync was injected (its loss may come late: at recovery).
        self._sync_fault_injected = False
        #: Connections that stopped reading (``NetFault("stop-reading")``), oldest first.
        self._stalled: list[trio.SocketStream] = []
        #: Produce answers other than NONE, by error name (the summary shows them).
        self.errors: dict[str, int] = {}
        self.counts: dict[str, int] = {
            "records_acknowledged": 0,
            "records_verified": 0,
            "records_unknown": 0,
            "idempotent_resends": 0,
        }

    # --- names --------------------------------------------------------------------------

    def topic_name(self, topic: int) -> str:
        return f"{self.target.name_prefix}t{topic}"

    def group_name(self, group: int) -> str:
        return f"{self.target.name_prefix}g{group}"

    def _value(self) -> bytes:
        self._values += 1
        return b"fz-%08x-%d" % (self._nonce, self._values)

    # --- playing ------------------------------------------------------------------------

    async def play(self, step: s.Step) -> None:
        if not self._started:
            self._started = True
            if self.target.settles_slowly:
                # Another broker: its offsets topic and coordinators come up lazily.
                self.unavailable_for(FUZZ_RECOVERY_SECONDS)
        method = getattr(self, f"_play_{type(step).__name__}")
        await method(step)

    def _expired(self, member: MemberModel) -> bool:
        session_s = FUZZ_GROUP_SESSION_TIMEOUT_MS / 1000
        return trio.current_time() - member.joined_at >= session_s

    def _storage_errors_allowed(self) -> bool:
        """A disk fault is in force, or ended less than FUZZ_DISK_RECOVERY_SECONDS ago."""
        now = trio.current_time()
        if self.target.disk_faults_active():
            self._disk_grace_until = now + FUZZ_DISK_RECOVERY_SECONDS
            return True
        return now < self._disk_grace_until

    async def _retrying(self, what: str, attempt: Callable[[], Any]) -> Any:
        """``attempt()`` again while it is unavailable and the contract allows it."""
        while True:
            try:
                return await attempt()
            except (_Unavailable, ConnectionBrokenError) as error:
                if trio.current_time() >= self._unavailable_until:
                    raise ContractViolation(f"{what}: {error}") from None
                await trio.sleep(0.05)

    def _settling(self) -> None:
        """Another broker applies topic changes in the background (KRaft brokers update
        their metadata before their partitions): retriable answers are allowed a while."""
        if self.target.settles_slowly:
            self.unavailable_for(FUZZ_RECOVERY_SECONDS)

    def unavailable_for(self, seconds: float) -> None:
        self._unavailable_until = max(self._unavailable_until, trio.current_time() + seconds)

    @property
    def _cluster(self) -> Cluster:
        return self.target.cluster

    async def _any(self) -> BrokerConnection:
        return await self._cluster.any_connection()

    async def _leader(self, topic: int, partition: int) -> BrokerConnection:
        name = self.topic_name(topic)
        await self._cluster.refresh([name], auto_create=False)
        info = self._cluster.topics.get(name)
        if info is None or not 0 <= partition < len(info.partitions):
            # Unknown here: any broker says so as well as the leader would.
            return await self._any()
        leader = info.partitions[partition].leader
        if leader < 0:
            raise _Unavailable(f"{name}-{partition} has no leader")
        return await self._cluster.connection(leader)

    # --- topics -------------------------------------------------------------------------

    async def _play_CreateTopic(self, step: s.CreateTopic) -> None:
        name = self.topic_name(step.topic)

        async def attempt() -> int:
            code = await kafka.create_topic(await self._any(), name, step.partitions)
            return _settled("CreateTopics", code)

        what = f"create topic {name} ({step.partitions} partitions)"
        code = await self._retrying(what, attempt)
        exists = step.topic in self.model.topics
        if code == ErrorCode.none and not exists:
            self.model.topics[step.topic] = TopicModel(
                [PartitionModel() for _ in range(step.partitions)]
            )
            await self._await_metadata(name, step.partitions)
            self._settling()
        elif code == ErrorCode.topic_already_exists and exists:
            pass
        elif code == ErrorCode.kafka_storage_error and self._storage_errors_allowed():
            # Not created (Kafka: the controller failed to write it).
            if await self._topic_partitions(name) is not None:
                raise ContractViolation(f"{what}: answered {code.name}, but the topic exists")
        else:
            raise ContractViolation(
                f"{what}: answered {code.name} while the topic "
                f"{'exists' if exists else 'does not exist'}"
            )

    async def _topic_partitions(self, name: str) -> int | None:
        await self._cluster.refresh([name], auto_create=False)
        info = self._cluster.topics.get(name)
        return None if info is None else len(info.partitions)

    async def _await_metadata(self, name: str, partitions: int | None) -> None:
        """Wait until the metadata shows ``partitions`` with leaders (None: the topic gone).

        Kafka's topic changes spread to every broker in the background; a
        client waits for them, and so does the player, for a bounded time.
        """
        with trio.move_on_after(FUZZ_RECOVERY_SECONDS):
            while True:
                await self._cluster.refresh([name], auto_create=False)
                info = self._cluster.topics.get(name)
                if partitions is None and info is None:
                    return
                if (
                    partitions is not None
                    and info is not None
                    and len(info.partitions) == partitions
                    and all(p.leader >= 0 for p in info.partitions)
                ):
                    return
                await trio.sleep(0.02)
        raise ContractViolation(
            f"topic {name}: the metadata did not show "
            f"{'it gone' if partitions is None else f'{partitions} partitions'} "
            f"within {FUZZ_RECOVERY_SECONDS} s"
        )

    async def _play_DeleteTopic(self, step: s.DeleteTopic) -> None:
        name = self.topic_name(step.topic)

        async def attempt() -> int:
            return _settled("DeleteTopics", await kafka.delete_topics(await self._any(), (name,)))

        what = f"delete topic {name}"
        code = await self._retrying(what, attempt)
        exists = step.topic in self.model.topics
        if code == ErrorCode.none and exists:
            del self.model.topics[step.topic]
            # Kafka forgets committed offsets of deleted topics (not promised when).
            for key in [k for k in self.model.committed if k[1] == step.topic]:
                del self.model.committed[key]
            for producer in self.model.producers.values():
                for sequence_key in [k for k in producer.sequences if k[0] == step.topic]:
                    del producer.sequences[sequence_key]
            await self._await_metadata(name, None)
            self._settling()
        elif not (
            (code == ErrorCode.unknown_topic_or_partition and not exists)
            or (code == ErrorCode.kafka_storage_error and self._storage_errors_allowed())
        ):
            raise ContractViolation(
                f"{what}: answered {code.name} while the topic "
                f"{'exists' if exists else 'does not exist'}"
            )

    async def _play_AddPartitions(self, step: s.AddPartitions) -> None:
        name = self.topic_name(step.topic)

        async def attempt() -> int:
            code = await kafka.create_partitions(await self._any(), name, step.total)
            return _settled("CreatePartitions", code)

        what = f"grow topic {name} to {step.total} partitions"
        code = await self._retrying(what, attempt)
        topic = self.model.topics.get(step.topic)
        if topic is None:
            allowed = {ErrorCode.unknown_topic_or_partition}
        elif step.total > len(topic.partitions):
            allowed = {ErrorCode.none}
        else:
            allowed = {ErrorCode.invalid_partitions}
        if self._storage_errors_allowed():
            allowed.add(ErrorCode.kafka_storage_error)
        if code not in allowed:
            raise ContractViolation(f"{what}: answered {code.name}, expected one of {allowed}")
        if code == ErrorCode.none and topic is not None:
            topic.partitions.extend(
                PartitionModel() for _ in range(step.total - len(topic.partitions))
            )
            await self._await_metadata(name, step.total)
            self._settling()

    # --- producing ----------------------------------------------------------------------

    async def _producer(self, slot: int) -> ProducerModel:
        known = self.model.producers.get(slot)
        if known is not None:
            return known

        async def attempt() -> ProducerModel:
            answer, producer_id, epoch = await kafka.init_producer_id(await self._any())
            code = ErrorCode(answer)
            if code in _RETRIABLE or (code in _DISK_ERRORS and self._storage_errors_allowed()):
                raise _Unavailable(f"InitProducerId: {code.name}")
            if code != ErrorCode.none:
                raise ContractViolation(f"InitProducerId answered {code.name}")
            return ProducerModel(producer_id, epoch)

        saved = self._unavailable_until
        if self._storage_errors_allowed():
            # The id block may have to be written to a failing disk: keep trying a while.
            self.unavailable_for(FUZZ_DISK_RECOVERY_SECONDS)
        try:
            producer: ProducerModel = await self._retrying("InitProducerId", attempt)
        finally:
            self._unavailable_until = saved
        self.model.producers[slot] = producer
        return producer

    async def _play_Produce(self, step: s.Produce) -> None:
        name = self.topic_name(step.topic)
        what = f"produce {step.records} records to {name}-{step.partition} (acks={step.acks})"
        partition = self.model.partition(step.topic, step.partition)
        producer = None
        if step.producer is not None and partition is not None:
            producer = await self._producer(step.producer)
        values = [self._value() for _ in range(step.records)]
        sequence = -1
        if producer is not None:
            sequence = producer.sequences.get((step.topic, step.partition), 0)
        batch = build_batch(
            [Record(key=value if step.keyed else None, value=value) for value in values],
            compression=step.compression,
            producer_id=producer.producer_id if producer is not None else -1,
            producer_epoch=producer.epoch if producer is not None else -1,
            base_sequence=sequence,
        )
        if partition is not None:
            partition.maybe.update(values)

        async def send(connection: BrokerConnection) -> tuple[int, int]:
            return await kafka.produce(connection, name, step.partition, step.acks, batch)

        async def attempt() -> tuple[int, int]:
            code, base_offset = await send(await self._leader(step.topic, step.partition))
            if code in _RETRIABLE and code != ErrorCode.request_timed_out:
                # Not written (NOT_LEADER and the like): asking again cannot duplicate.
                raise _Unavailable(f"Produce: {ErrorCode(code).name}")
            return code, base_offset

        try:
            code, base_offset = await self._retrying(what, attempt)
        except ContractViolation:
            if (
                not self._storage_errors_allowed()
                and trio.current_time() >= self._unavailable_until
            ):
                raise
            code, base_offset = ErrorCode.network_exception, -1
        except ConnectionBrokenError:
            code, base_offset = ErrorCode.network_exception, -1
        if (
            producer is not None
            and partition is not None
            and step.acks != 0
            and code
            in (
                ErrorCode.network_exception,
                ErrorCode.request_timed_out,
                ErrorCode.kafka_storage_error,
            )
        ):
            # An idempotent producer sends the same batch again, as a client
            # does after a lost answer or a refused write: whether or not the
            # first one was written, the records may then be there only once.
            code, base_offset = await self._resend(attempt, what)
        if step.acks == 0:
            self._unknown(partition, values)
            self._forget_producer(step.producer)
            if partition is None:
                # Kafka closes the connection of an acks=0 Produce it refuses.
                self._settling()
            return
        if partition is None:
            if code != ErrorCode.unknown_topic_or_partition:
                raise ContractViolation(
                    f"{what}: answered {ErrorCode(code).name} for a partition that does not exist"
                )
            return
        if code == ErrorCode.none:
            self._acknowledge(step, partition, values, base_offset, what)
            if producer is not None:
                producer.sequences[(step.topic, step.partition)] = sequence + len(values)
                if step.retry:
                    await self._play_retry(
                        step, values=values, base_offset=base_offset, send=send, what=what
                    )
            return
        self._unknown(partition, values)
        self.errors[ErrorCode(code).name] = self.errors.get(ErrorCode(code).name, 0) + 1
        self._forget_producer(step.producer)
        if code in (ErrorCode.network_exception, ErrorCode.request_timed_out):
            return
        if code in _DISK_ERRORS and self._storage_errors_allowed():
            return
        if (
            producer is not None
            and producer.after_loss
            and code
            in (
                ErrorCode.out_of_order_sequence_number,
                ErrorCode.unknown_producer_id,
                ErrorCode.invalid_producer_epoch,
            )
        ):
            # A loss took the producer's last batches: its sequence is ahead now.
            return
        raise ContractViolation(f"{what}: answered {ErrorCode(code).name}")

    async def _resend(self, attempt: Callable[[], Any], what: str) -> tuple[int, int]:
        """The same idempotent batch again, a few times (a client retries longer; the
        point here is the duplicate check, not waiting out a broken disk)."""
        code, base_offset = ErrorCode.network_exception, -1
        for _ in range(FUZZ_IDEMPOTENT_RESENDS_MAX):
            await trio.sleep(0.05)
            try:
                code, base_offset = await attempt()
            except (_Unavailable, ConnectionBrokenError):
                code = ErrorCode.network_exception
                continue
            if code not in (ErrorCode.kafka_storage_error, ErrorCode.request_timed_out):
                break
        self.counts["idempotent_resends"] += 1
        if code == ErrorCode.duplicate_sequence_number:
            # Written once, at an offset the broker no longer says: still unknown.
            return ErrorCode.network_exception, -1
        return code, base_offset

    def _unknown(self, partition: PartitionModel | None, values: list[bytes]) -> None:
        """Records that may or may not have been written (the values are in ``maybe``)."""
        self.counts["records_unknown"] += len(values)
        if partition is not None:
            partition.maybe.update(values)
            partition.unknown_records += len(values)

    def _forget_producer(self, slot: int | None) -> None:
        """After an unknown outcome an idempotent producer starts again with a new id."""
        if slot is not None:
            self.model.producers.pop(slot, None)

    def _acknowledge(
        self,
        step: s.Produce,
        partition: PartitionModel,
        values: list[bytes],
        base_offset: int,
        what: str,
    ) -> None:
        partition.acknowledge(base_offset, values, durable=step.acks == -1, what=what)
        if not self._storage_errors_allowed():
            # The broker writes again, so any loss a fault allowed has happened.
            partition.loss_floor = None
        partition.maybe.difference_update(values)
        self.counts["records_acknowledged"] += len(values)

    async def _play_retry(
        self,
        step: s.Produce,
        *,
        values: list[bytes],
        base_offset: int,
        send: Callable[[BrokerConnection], Any],
        what: str,
    ) -> None:
        """The same idempotent batch again: the broker must answer it without a second copy."""
        try:
            code, again = await send(await self._leader(step.topic, step.partition))
        except ConnectionBrokenError:
            return
        if code == ErrorCode.none and again == base_offset:
            return
        if code == ErrorCode.duplicate_sequence_number:
            return
        if code in _RETRIABLE or (code in _DISK_ERRORS and self._storage_errors_allowed()):
            return
        raise ContractViolation(
            f"{what}, sent again: answered {ErrorCode(code).name} at offset {again}, "
            f"not the first answer's offset {base_offset}"
        )

    # --- reading ------------------------------------------------------------------------

    def _offset_at(self, partition: PartitionModel | None, position: float) -> int:
        if partition is None:
            return max(0, int(position * 10))
        start, end = partition.log_start, partition.high_watermark
        if position < 0:
            return start - 1 - int(-position * 10)
        if position > 1:
            return end + 1 + int((position - 1) * 10)
        return start + int(position * (end - start))

    async def _fetch_once(
        self, topic: int, partition_index: int, offset: int
    ) -> tuple[int, int, int, bytes]:
        """(error, high watermark, log start, records) of one Fetch at ``offset``."""
        connection = await self._leader(topic, partition_index)
        return await kafka.fetch(connection, self.topic_name(topic), partition_index, offset)

    def _check_records(
        self,
        partition: PartitionModel,
        *,
        offset: int,
        high_watermark: int,
        data: bytes,
        seen_values: dict[bytes, int],
        what: str,
    ) -> int:
        """Check the records of a Fetch from ``offset``; return the next offset to read."""
        expected = offset
        try:
            for position, _header in list_batches(data, allow_partial_tail=True):
                _, records = decode_batch(data, position)
                for record in records:
                    record_offset = record.offset
                    assert record_offset is not None
                    if record_offset < offset:
                        continue  # the start of a batch that holds ``offset``
                    if record_offset >= high_watermark:
                        raise ContractViolation(
                            f"{what}: record at offset {record_offset} is past the high "
                            f"watermark {high_watermark}"
                        )
                    if record_offset != expected:
                        raise ContractViolation(
                            f"{what}: offsets not dense: {record_offset} follows {expected - 1}"
                        )
                    partition.check_read(record_offset, record.value or b"", seen_values, what)
                    self.counts["records_verified"] += 1
                    expected += 1
        except TrioringError as error:
            raise ContractViolation(f"{what}: the records do not decode: {error}") from None
        return expected

    async def _play_Fetch(self, step: s.Fetch) -> None:
        partition = self.model.partition(step.topic, step.partition)
        offset = self._offset_at(partition, step.position)
        name = self.topic_name(step.topic)
        what = f"fetch {name}-{step.partition} at offset {offset}"

        async def attempt() -> tuple[int, int, int, bytes]:
            answer = await self._fetch_once(step.topic, step.partition, offset)
            _settled("Fetch", answer[0])
            return answer

        code, high_watermark, log_start, data = await self._retrying(what, attempt)
        if partition is None:
            if code not in (ErrorCode.unknown_topic_or_partition, ErrorCode.unknown_topic_id):
                raise ContractViolation(
                    f"{what}: answered {ErrorCode(code).name}; no such partition"
                )
            return
        if code == ErrorCode.kafka_storage_error and self._storage_errors_allowed():
            return
        in_range = partition.log_start <= offset <= partition.high_watermark
        if code == ErrorCode.offset_out_of_range:
            if in_range and partition.loss_floor is None:
                raise ContractViolation(
                    f"{what}: OFFSET_OUT_OF_RANGE, but the log holds offsets "
                    f"{partition.log_start}-{partition.high_watermark}"
                )
            return
        if code != ErrorCode.none:
            raise ContractViolation(f"{what}: answered {ErrorCode(code).name}")
        if log_start < 0:
            log_start = partition.log_start
        partition.check_offsets(log_start, high_watermark, what)
        if not log_start <= offset <= high_watermark:
            raise ContractViolation(
                f"{what}: answered records, but the offset is outside the log "
                f"({log_start}-{high_watermark})"
            )
        self._check_records(
            partition,
            offset=offset,
            high_watermark=high_watermark,
            data=data,
            seen_values={},
            what=what,
        )

    async def _list_offsets(self, topic: int, partition_index: int) -> tuple[int, int, int]:
        """(error, log start, high watermark) by ListOffsets."""
        results = []
        for timestamp in (kafka.EARLIEST, kafka.LATEST):
            connection = await self._leader(topic, partition_index)
            code, offset = await kafka.list_offset(
                connection, self.topic_name(topic), partition_index, timestamp
            )
            if code != ErrorCode.none:
                return code, -1, -1
            results.append(offset)
        return ErrorCode.none, results[0], results[1]

    async def _play_ListOffsets(self, step: s.ListOffsets) -> None:
        partition = self.model.partition(step.topic, step.partition)
        what = f"list offsets of {self.topic_name(step.topic)}-{step.partition}"

        async def attempt() -> tuple[int, int, int]:
            answer = await self._list_offsets(step.topic, step.partition)
            _settled("ListOffsets", answer[0])
            return answer

        code, log_start, high_watermark = await self._retrying(what, attempt)
        if partition is None:
            if code != ErrorCode.unknown_topic_or_partition:
                raise ContractViolation(
                    f"{what}: answered {ErrorCode(code).name}; no such partition"
                )
            return
        if code == ErrorCode.kafka_storage_error and self._storage_errors_allowed():
            return
        if code != ErrorCode.none:
            raise ContractViolation(f"{what}: answered {ErrorCode(code).name}")
        partition.check_offsets(log_start, high_watermark, what)

    async def _play_DeleteRecords(self, step: s.DeleteRecords) -> None:
        partition = self.model.partition(step.topic, step.partition)
        offset = self._offset_at(partition, step.position)
        name = self.topic_name(step.topic)
        what = f"delete records of {name}-{step.partition} before offset {offset}"

        async def attempt() -> tuple[int, int]:
            connection = await self._leader(step.topic, step.partition)
            code, low_watermark = await kafka.delete_records(
                connection, name, step.partition, offset
            )
            return _settled("DeleteRecords", code), low_watermark

        if partition is not None:
            # Answered or not, the log start may move up to here from now on.
            partition.deletable_to = max(partition.deletable_to, offset)
        code, low_watermark = await self._retrying(what, attempt)
        if partition is None:
            if code != ErrorCode.unknown_topic_or_partition:
                raise ContractViolation(
                    f"{what}: answered {ErrorCode(code).name}; no such partition"
                )
            return
        if code in _DISK_ERRORS and self._storage_errors_allowed():
            return
        if code == ErrorCode.offset_out_of_range:
            if 0 <= offset <= partition.high_watermark and partition.loss_floor is None:
                raise ContractViolation(
                    f"{what}: OFFSET_OUT_OF_RANGE, but the high watermark is "
                    f"{partition.high_watermark}"
                )
            return
        if code != ErrorCode.none:
            raise ContractViolation(f"{what}: answered {ErrorCode(code).name}")
        if (
            offset > partition.high_watermark + partition.unknown_records
            and partition.loss_floor is None
        ):
            # DeleteRecords past the high watermark is OFFSET_OUT_OF_RANGE in Kafka.
            raise ContractViolation(f"{what}: accepted past the high watermark")
        if low_watermark < max(partition.log_start, min(offset, partition.high_watermark)):
            raise ContractViolation(
                f"{what}: the new log start is {low_watermark}, below the offset asked for"
            )
        if low_watermark > max(partition.log_start, offset):
            raise ContractViolation(
                f"{what}: the new log start is {low_watermark}, past the offset asked for"
            )
        partition.raise_log_start(low_watermark)

    # --- groups -------------------------------------------------------------------------

    async def _coordinator(self, group: int, what: str) -> BrokerConnection:
        code, _message, connection = await self._cluster.coordinator(self.group_name(group))
        if connection is None:
            if ErrorCode(code) in _RETRIABLE or (
                ErrorCode(code) in _DISK_ERRORS and self._storage_errors_allowed()
            ):
                raise _Unavailable(f"FindCoordinator: {ErrorCode(code).name}")
            raise ContractViolation(f"{what}: FindCoordinator answered {ErrorCode(code).name}")
        return connection

    async def _play_Commit(self, step: s.Commit) -> None:
        partition = self.model.partition(step.topic, step.partition)
        offset = max(0, self._offset_at(partition, step.position))
        topic_name = self.topic_name(step.topic)
        group = self.group_name(step.group)
        members = self.model.members.get(step.group, {})
        member = members[min(members)] if members else None
        what = f"commit offset {offset} of {topic_name}-{step.partition} for group {group}"

        async def attempt() -> int:
            connection = await self._coordinator(step.group, what)
            code = ErrorCode(
                await kafka.offset_commit(
                    connection,
                    group,
                    None if member is None else (member.member_id, member.generation),
                    name=topic_name,
                    partition=step.partition,
                    offset=offset,
                )
            )
            if code in _RETRIABLE - {ErrorCode.rebalance_in_progress}:
                raise _Unavailable(f"OffsetCommit: {code.name}")
            return code

        try:
            code = await self._retrying(what, attempt)
        except ContractViolation:
            if not self._storage_errors_allowed():
                raise
            code = ErrorCode.coordinator_not_available
        key = (step.group, step.topic, step.partition)
        if code == ErrorCode.none:
            if partition is not None:
                self.model.committed[key] = offset
            return
        if partition is None and code == ErrorCode.unknown_topic_or_partition:
            return
        if code in _DISK_ERRORS and self._storage_errors_allowed():
            # Unknown: it may have been written before the sync failed.
            self.model.committed.pop(key, None)
            return
        if code in (
            ErrorCode.unknown_member_id,
            ErrorCode.illegal_generation,
            ErrorCode.rebalance_in_progress,
        ) and (
            self._rebalancing(step.group)
            or (
                member is not None
                and (trio.current_time() < self._unavailable_until or self._expired(member))
            )
        ):
            # Refused, so not written: a member left and the others have not
            # rejoined yet, a restart forgot the members (they live in memory),
            # or a session ran out (the player sends no heartbeats).
            if member is not None:
                self.model.members.pop(step.group, None)
            return
        raise ContractViolation(f"{what}: answered {ErrorCode(code).name}")

    async def _play_FetchCommitted(self, step: s.FetchCommitted) -> None:
        group = self.group_name(step.group)
        expected = {
            (topic, partition): offset
            for (g, topic, partition), offset in self.model.committed.items()
            if g == step.group
        }
        what = f"fetch committed offsets of group {group}"
        if not expected:
            return

        async def attempt() -> dict[tuple[str, int], tuple[int, int]]:
            connection = await self._coordinator(step.group, what)
            by_topic: dict[str, list[int]] = {}
            for topic, partition in expected:
                by_topic.setdefault(self.topic_name(topic), []).append(partition)
            group_code, answers = await kafka.offset_fetch(connection, group, by_topic)
            code = _settled("OffsetFetch", group_code)
            if code != ErrorCode.none:
                raise ContractViolation(f"{what}: answered {code.name}")
            return answers

        answers = await self._retrying(what, attempt)
        for (topic, partition), offset in expected.items():
            code, committed = answers.get((self.topic_name(topic), partition), (None, None))
            if code != ErrorCode.none or committed != offset:
                raise ContractViolation(
                    f"{what}: {self.topic_name(topic)}-{partition} committed {offset} but "
                    f"reads {committed} ({getattr(code, 'name', code)})"
                )

    async def _member_connection(self, group: int, slot: int, what: str) -> BrokerConnection:
        """The coordinator, over a connection of this member's own: a broker answers a
        connection's requests in order and holds a JoinGroup for the whole
        rebalance, so members sharing one would wait for each other for ever."""
        _code, _message, connection = await self._cluster.coordinator(
            self.group_name(group), rebalance=slot % 2 == 1
        )
        if connection is None:
            return await self._coordinator(group, what)  # raises with the reason
        return connection

    async def _join(self, step: s.JoinGroup, slot: int, member_id: str, what: str) -> Any:
        """One member's JoinGroup (with an empty id: asks for one, MEMBER_ID_REQUIRED)."""
        subscription = encode_subscription(
            Subscription(version=SUBSCRIPTION_VERSION_MAX, topics=(self.topic_name(step.topic),))
        )
        return await kafka.join_group(
            await self._member_connection(step.group, slot, what),
            self.group_name(step.group),
            member_id,
            subscription,
            session_timeout_ms=FUZZ_GROUP_SESSION_TIMEOUT_MS,
            rebalance_timeout_ms=FUZZ_GROUP_REBALANCE_TIMEOUT_MS,
        )

    async def _play_JoinGroup(self, step: s.JoinGroup) -> None:
        """A rebalance: the joining member and every other member join at once (as their
        clients would on being told to), the leader assigns, and all sync."""
        group = self.group_name(step.group)
        what = f"member {step.member} joins group {group}"
        known = self.model.members.get(step.group, {})
        member_ids = {slot: member.member_id for slot, member in known.items()}
        member_ids.setdefault(step.member, "")

        async def attempt() -> dict[int, Any]:
            # A member without an id asks for one first (MEMBER_ID_REQUIRED, which
            # starts no rebalance), so that one round of joins is one rebalance.
            for slot in [slot for slot, member_id in member_ids.items() if not member_id]:
                response = await self._join(step, slot, "", what)
                code = _settled("JoinGroup", response.error_code)
                if code != ErrorCode.member_id_required:
                    self._join_error(code, what)
                member_ids[slot] = str(response.member_id)
            answers: dict[int, Any] = {}

            async def join_one(slot: int) -> None:
                answers[slot] = await self._join(step, slot, member_ids[slot], what)

            async with trio.open_nursery() as nursery:
                for slot in member_ids:
                    nursery.start_soon(join_one, slot)
            for slot, response in answers.items():
                code = _settled("JoinGroup", response.error_code)
                if code == ErrorCode.unknown_member_id:
                    # Forgotten (a restart, a rebalance it missed): a new id, a new round.
                    member_ids[slot] = ""
                    raise _Unavailable("JoinGroup: UNKNOWN_MEMBER_ID")
                if code != ErrorCode.none:
                    self._join_error(code, what)
            if len({int(response.generation_id) for response in answers.values()}) > 1:
                # A member joined a rebalance that ended before the others came:
                # they all join again, as clients told to rejoin do.
                raise _Unavailable("JoinGroup: members in different generations")
            return answers

        # Forgotten members and split generations are the protocol at work, not
        # faults: the rounds they cost are allowed for a bounded time (this step's).
        saved = self._unavailable_until
        self.unavailable_for(FUZZ_RECOVERY_SECONDS)
        try:
            answers = await self._retrying(what, attempt)
        finally:
            self._unavailable_until = saved
        member_ids = {slot: str(response.member_id) for slot, response in answers.items()}
        generations = {int(response.generation_id) for response in answers.values()}
        leaders = {str(response.leader) for response in answers.values()}
        if len(generations) != 1 or len(leaders) != 1:
            raise ContractViolation(
                f"{what}: one rebalance, but generations {sorted(generations)} and leaders "
                f"{sorted(leaders)}"
            )
        generation, leader = generations.pop(), leaders.pop()
        last = self.model.generations.get(step.group, -1)
        if generation <= last:
            raise ContractViolation(f"{what}: generation {generation} after generation {last}")
        if leader not in member_ids.values():
            raise ContractViolation(f"{what}: {leader!r} leads, but is not a member")
        leader_slot = next(slot for slot, member_id in member_ids.items() if member_id == leader)
        listed = {str(m.member_id) for m in answers[leader_slot].members}
        if listed != set(member_ids.values()):
            raise ContractViolation(
                f"{what}: the leader was told of members {sorted(listed)}, but "
                f"{sorted(member_ids.values())} joined"
            )
        self.model.generations[step.group] = generation
        # Each member gets a distinct assignment, so a mix-up shows.
        assigned = {
            member_ids[slot]: encode_assignment(0, [(self.topic_name(step.topic), [slot])])
            for slot in member_ids
        }
        synced: dict[int, tuple[int, bytes]] = {}

        async def sync_one(slot: int) -> None:
            synced[slot] = await kafka.sync_group(
                await self._member_connection(step.group, slot, what),
                group,
                member_ids[slot],
                generation,
                assignments=assigned if slot == leader_slot else {},
                rebalance_timeout_ms=FUZZ_GROUP_REBALANCE_TIMEOUT_MS,
            )

        async with trio.open_nursery() as nursery:
            for slot in member_ids:
                nursery.start_soon(sync_one, slot)
        now = trio.current_time()
        members: dict[int, MemberModel] = {}
        for slot, (sync_code, assignment) in synced.items():
            if sync_code in _DISK_ERRORS and self._storage_errors_allowed():
                continue
            if sync_code != ErrorCode.none:
                raise ContractViolation(
                    f"{what}: member {slot}'s SyncGroup answered {ErrorCode(sync_code).name}"
                )
            if assignment != assigned[member_ids[slot]]:
                raise ContractViolation(
                    f"{what}: member {slot} was given another member's assignment"
                )
            members[slot] = MemberModel(member_ids[slot], generation, now)
        self.model.members[step.group] = members
        self.model.rebalancing_until.pop(step.group, None)

    def _join_error(self, code: ErrorCode, what: str) -> None:
        if code in _DISK_ERRORS and self._storage_errors_allowed():
            raise _Unavailable(f"JoinGroup: {code.name}")
        if code == ErrorCode.rebalance_in_progress:
            raise _Unavailable(f"JoinGroup: {code.name}")
        raise ContractViolation(f"{what}: JoinGroup answered {code.name}")

    def _rebalancing(self, group: int) -> bool:
        return trio.current_time() < self.model.rebalancing_until.get(group, -math.inf)

    async def _play_LeaveGroup(self, step: s.LeaveGroup) -> None:
        members = self.model.members.get(step.group, {})
        member = members.pop(step.member, None)
        if member is None:
            return
        if members:
            # The others must rejoin: until they do, or the rebalance times out
            # and the coordinator drops them, their commits may be refused.
            self.model.members[step.group] = {}
            self.model.rebalancing_until[step.group] = trio.current_time() + (
                FUZZ_GROUP_REBALANCE_TIMEOUT_MS / 1000 + FUZZ_RECOVERY_SECONDS
            )
        group = self.group_name(step.group)
        what = f"member {step.member} leaves group {group}"

        async def attempt() -> int:
            connection = await self._coordinator(step.group, what)
            group_code, member_code = await kafka.leave_group(connection, group, member.member_id)
            code = _settled("LeaveGroup", group_code)
            if code == ErrorCode.none:
                code = _settled("LeaveGroup", member_code)
            return code

        code = await self._retrying(what, attempt)
        if code == ErrorCode.none:
            return
        if code in (ErrorCode.unknown_member_id, ErrorCode.illegal_generation) and (
            trio.current_time() < self._unavailable_until or self._expired(member)
        ):
            return
        raise ContractViolation(f"{what}: answered {code.name}")

    # --- faults -------------------------------------------------------------------------

    def _after_restart(self) -> None:
        self.unavailable_for(FUZZ_RECOVERY_SECONDS)
        # Members and generations live in the coordinator's memory (as in
        # Kafka, members rejoin after a coordinator restart).
        self.model.generations.clear()

    async def _restarted(self) -> None:
        """After a restart or crash: check everything, then no more loss is allowed
        (unless a failing fdatasync may still take what is not durable)."""
        self._after_restart()
        await self.verify()
        self.model.loss_realized()
        if self._sync_faults_pending():
            self.model.allow_loss(durable_only=True)

    def _sync_faults_pending(self) -> bool:
        return self.target.disk_faults_active() and self._sync_fault_injected

    async def _play_Restart(self, step: s.Restart) -> None:
        if self.target.disk_faults_active():
            # A stop the disk fails is a crash: the page cache survives, no more.
            self.model.allow_loss(durable_only=False)
        await self.target.restart()
        await self._restarted()

    async def _play_Kill(self, step: s.Kill) -> None:
        self.model.allow_loss(durable_only=False)
        await self.target.kill(step.worker)
        await self._restarted()

    async def _play_PowerLoss(self, step: s.PowerLoss) -> None:
        self.model.allow_loss(durable_only=True)
        await self.target.power_loss(step.seed)
        await self._restarted()

    async def _play_DiskFault(self, step: s.DiskFault) -> None:
        if step.kind == "eio-sync":
            # fsyncgate: what was not durable may be dropped when the partition recovers.
            self.model.allow_loss(durable_only=True)
            self._sync_fault_injected = True
        self.target.disk_fault(step.kind, step.count)
        self._disk_grace_until = trio.current_time() + FUZZ_DISK_RECOVERY_SECONDS

    async def _play_ClearFaults(self, step: s.ClearFaults) -> None:
        if self._storage_errors_allowed():
            # The broker may take a while to find the disk working again.
            self._disk_grace_until = trio.current_time() + FUZZ_DISK_RECOVERY_SECONDS
            self.unavailable_for(FUZZ_DISK_RECOVERY_SECONDS)
        self.target.clear_disk_faults()

    async def _play_NetFault(self, step: s.NetFault) -> None:
        """A connection that breaks or stalls beside the player's own (wire targets only)."""
        if not self.target.wire or step.topic not in self.model.topics:
            return
        name = self.topic_name(step.topic)
        await self._cluster.refresh([name], auto_create=False)
        info = self._cluster.topics.get(name)
        if info is None or not info.partitions or info.partitions[0].leader < 0:
            return
        host, port = self.target.address(info.partitions[0].leader)
        versions = await self._any()
        self.target.count(f"net-{step.kind}")
        if step.kind == "stop-reading":
            frames = [
                kafka.fetch_frame(versions, name, correlation_id)
                for correlation_id in range(FUZZ_STALLED_FETCHES)
            ]
        else:
            values = [self._value() for _ in range(3)]
            frames = [kafka.produce_frame(versions, name, values)]
            if step.kind == "reset-mid-request":
                frames = [frames[0][: len(frames[0]) // 2]]
            else:
                self._unknown(self.model.partition(step.topic, 0), values)
        try:
            stream = await trio.open_tcp_stream(host, port)
        except OSError as error:
            raise ContractViolation(f"cannot connect to {host}:{port}: {error}") from None
        try:
            with trio.move_on_after(1.0):
                for frame in frames:
                    await stream.send_all(frame)
        except (trio.BrokenResourceError, OSError):
            pass
        if step.kind == "stop-reading":
            # Left open, never read: the broker must not let it stall anyone else.
            self._stalled.append(stream)
            while len(self._stalled) > FUZZ_STALLED_CONNECTIONS_MAX:
                await self._stalled.pop(0).aclose()
            return
        # A reset, not a goodbye: the broker sees ECONNRESET.
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await stream.aclose()

    async def aclose(self) -> None:
        for stream in self._stalled:
            with trio.CancelScope(shield=True):
                await stream.aclose()
        self._stalled.clear()

    async def finish(self) -> None:
        """The end of a history: the disk is healed, every partition takes writes again
        (by itself, within the recovery time), and everything checks out."""
        await self._play_ClearFaults(s.ClearFaults())
        for topic, index, _partition in self.model.all_partitions():
            deadline = trio.current_time() + FUZZ_DISK_RECOVERY_SECONDS
            while True:
                before = self.counts["records_acknowledged"]
                await self._play_Produce(s.Produce(topic, index, -1, 1))
                if self.counts["records_acknowledged"] > before:
                    break
                if trio.current_time() >= deadline:
                    raise ContractViolation(
                        f"{self.topic_name(topic)}-{index} did not take writes again within "
                        f"{FUZZ_DISK_RECOVERY_SECONDS:.0f} s of the disk working again"
                    )
                await trio.sleep(0.1)
        await self.verify()

    # --- verification -------------------------------------------------------------------

    async def verify(self) -> None:
        """Read every partition whole and check it against the model."""
        for topic, index, partition in self.model.all_partitions():
            await self._verify_partition(topic, index, partition)
        for group in {g for g, _, _ in self.model.committed}:
            await self._play_FetchCommitted(s.FetchCommitted(group))

    async def _verify_partition(self, topic: int, index: int, partition: PartitionModel) -> None:
        name = f"{self.topic_name(topic)}-{index}"
        what = f"verify {name}"

        async def attempt() -> tuple[int, int, int]:
            answer = await self._list_offsets(topic, index)
            if answer[0] in _RETRIABLE or (
                answer[0] == ErrorCode.kafka_storage_error and self._storage_errors_allowed()
            ):
                raise _Unavailable(f"ListOffsets: {ErrorCode(answer[0]).name}")
            return answer

        code, log_start, high_watermark = await self._retrying(what, attempt)
        if code != ErrorCode.none:
            raise ContractViolation(f"{what}: ListOffsets answered {ErrorCode(code).name}")
        partition.check_offsets(log_start, high_watermark, what)
        seen_values: dict[bytes, int] = {}
        offset = log_start
        while offset < high_watermark:
            at = offset

            async def fetch(at: int = at) -> tuple[int, int, int, bytes]:
                answer = await self._fetch_once(topic, index, at)
                if answer[0] in _RETRIABLE or (
                    answer[0] == ErrorCode.kafka_storage_error and self._storage_errors_allowed()
                ):
                    raise _Unavailable(f"Fetch: {ErrorCode(answer[0]).name}")
                return answer

            code, fetched_high, _fetched_start, data = await self._retrying(what, fetch)
            if code != ErrorCode.none:
                raise ContractViolation(
                    f"{what}: Fetch at offset {offset} answered {ErrorCode(code).name}"
                )
            offset = self._check_records(
                partition,
                offset=offset,
                high_watermark=min(high_watermark, fetched_high),
                data=data,
                seen_values=seen_values,
                what=what,
            )
            if offset == at:
                raise ContractViolation(
                    f"{what}: Fetch at offset {at} returned no records below the high "
                    f"watermark {high_watermark}"
                )
        missing = sorted(o for o in partition.acknowledged if o >= high_watermark)
        if missing:
            raise ContractViolation(f"{what}: acknowledged offsets {missing[:10]} are gone")

"""Every limit in one place (TigerBeetle style): named ``*_max``, asserted against each other.

Configurable limits take their defaults from here; limits that guard memory
safety of the code itself are fixed.
"""

from __future__ import annotations

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB

# --- Record batch format (Kafka RecordBatch v2) ---------------------------------
#: Bytes of the fixed RecordBatch v2 header before the first record.
BATCH_HEADER_BYTES = 61
#: baseOffset (8) + batchLength (4): the part of the header outside batchLength.
BATCH_LOG_OVERHEAD_BYTES = 12
#: Records in one batch we agree to decode (a corrupt count must not allocate).
BATCH_RECORDS_MAX = 1 << 20
#: Decompressed size of one batch we agree to produce (guards against zip bombs).
#: Kafka's default fetch.max.bytes is 50 MiB; a real batch stays well below this.
BATCH_DECOMPRESSED_BYTES_MAX = 64 * MIB
#: Headers on one record.
RECORD_HEADERS_MAX = 1 << 16

# --- Produce / storage defaults --------------------------------------------------
#: Largest batch a producer may send (Kafka: message.max.bytes, 1 MiB + overhead).
BATCH_BYTES_MAX_DEFAULT = 1 * MIB + 12
#: Segment size before a roll (Kafka: segment.bytes). Positions must fit in uint32.
SEGMENT_BYTES_DEFAULT = 1 * GIB
SEGMENT_BYTES_MAX = (1 << 31) - 1
SEGMENT_BYTES_MIN = 1 * KIB
#: Segment age before a roll (Kafka: segment.ms, 7 days).
SEGMENT_MS_DEFAULT = 7 * 24 * 3600 * 1000
#: Bytes between sparse index entries (Kafka: index.interval.bytes).
INDEX_INTERVAL_BYTES_DEFAULT = 4 * KIB
#: Retention (Kafka: retention.ms 7 days, retention.bytes unlimited).
RETENTION_MS_DEFAULT = 7 * 24 * 3600 * 1000
#: How often acks=1 data is flushed; bounds what a machine crash can lose.
FLUSH_INTERVAL_MS_DEFAULT = 1000
#: How often each log's recovery point is checkpointed (bounds start-up scan).
RECOVERY_CHECKPOINT_INTERVAL_MS_DEFAULT = 10_000
#: How often retention runs (Kafka: log.retention.check.interval.ms is 5 min).
RETENTION_CHECK_INTERVAL_MS_DEFAULT = 60_000

#: Batches that one write system call carries; each batch costs two iovecs and
#: Linux accepts at most IOV_MAX (1024) per writev.
WRITE_BATCHES_MAX = 256
#: Bytes that one coalesced write carries.
WRITE_BYTES_MAX = 16 * MIB
#: Appends waiting for the partition writer; more wait on the semaphore.
APPENDS_PENDING_MAX = 1024
#: An inline append skips its schedule point when its log took one less than
#: this long ago (trio#1757, "skip schedule points if we've done one recently
#: enough", suggests 0.5-5 ms). A yield costs ~4 us here, as much as the rest
#: of a lone producer's Python; other tasks still run at least this often.
APPEND_SCHEDULE_INTERVAL_SECONDS = 0.0005
#: Bytes one fetch of one partition may return (Kafka: max.partition.fetch.bytes cap).
FETCH_BYTES_MAX = 64 * MIB
#: Bytes one Fetch answer holds at most, whatever the request asks (Kafka's
#: broker setting fetch.max.bytes, 55 MiB): the answer is built in memory.
FETCH_RESPONSE_BYTES_MAX = 55 * MIB
#: Concurrent file reads running in worker threads, per process.
READ_THREADS_MAX = 16
#: A partition taken offline by a disk error is reopened from disk at once,
#: then, while that fails, after pauses doubling from the first to the last.
PARTITION_RECOVERY_DELAY_FIRST_SECONDS = 0.1
PARTITION_RECOVERY_DELAY_LAST_SECONDS = 30.0

assert 0 < PARTITION_RECOVERY_DELAY_FIRST_SECONDS <= PARTITION_RECOVERY_DELAY_LAST_SECONDS

# --- Kafka wire protocol ----------------------------------------------------------
#: Bytes of the int32 size prefix in front of every Kafka request and response.
FRAME_SIZE_BYTES = 4
#: Largest request frame accepted by default, size prefix excluded
#: (Kafka: socket.request.max.bytes, 100 MiB).
FRAME_BYTES_MAX_DEFAULT = 100 * MIB
#: Largest value the int32 size prefix can carry.
FRAME_BYTES_MAX_LIMIT = (1 << 31) - 1
#: Bytes of the fixed request header prefix: api_key int16, api_version int16,
#: correlation_id int32. With fewer there is no correlation id to answer to.
REQUEST_HEADER_FIXED_BYTES = 8
#: Fetch records sections up to this size are copied into the surrounding
#: response chunk; larger ones are handed to the caller by reference, so a big
#: fetch costs one vectored write instead of a copy, and a fetch of many small
#: partitions stays one chunk instead of hundreds of tiny writes.
FETCH_RECORDS_COPY_BYTES_MAX = 64 * KIB
#: A zero-copy Fetch sends a partition's records from its segment files when
#: they are at least this large; smaller ones are read (and CRC-checked) and
#: copied into the response, which costs less than the send's ring round trips.
FETCH_ZERO_COPY_BYTES_MIN = FETCH_RECORDS_COPY_BYTES_MAX

#: Distinct Metadata answers kept encoded (a few per client configuration).
METADATA_CACHE_ENTRIES_MAX = 64
#: Partitions one DescribeTopicPartitions answer holds at most (Kafka's
#: max.request.partition.size.limit default); the client pages on with the cursor.
DESCRIBE_TOPIC_PARTITIONS_MAX = 2000
#: Requests up to this size are "small" for the server's request-memory budget:
#: large frames may hold only the budget less a reserve kept for small ones, so
#: clients holding huge partial frames cannot stop ordinary requests.
SMALL_REQUEST_BYTES_MAX = 1 * MIB
#: The reserve for small requests is the budget divided by this (1/8).
SMALL_REQUESTS_RESERVE_DIVISOR = 8
#: Bytes read from a socket at a time.
RECEIVE_BYTES = 256 * KIB
#: Once large requests (over SMALL_REQUEST_BYTES_MAX) have given back this many
#: bytes of the request budget, the server returns free heap to the system
#: (trioring/_heap.py), after a pause so the requests' buffers are gone too.
HEAP_TRIM_RELEASED_BYTES = 64 * MIB
HEAP_TRIM_DELAY_SECONDS = 0.5
#: Server processes: glibc keeps up to this much freed memory at the top of the
#: heap for the next allocations (instead of returning it at once), and takes
#: allocations up to the second from the heap rather than from fresh mappings
#: (trioring/_heap.py; glibc's maximum for the second is 32 MiB).
HEAP_TRIM_THRESHOLD_BYTES = 64 * MIB
HEAP_MMAP_THRESHOLD_BYTES = 32 * MIB

assert 0 < FRAME_BYTES_MAX_DEFAULT <= FRAME_BYTES_MAX_LIMIT
# A frame that arrives whole within one receive is charged as a small request.
assert RECEIVE_BYTES <= SMALL_REQUEST_BYTES_MAX
assert FETCH_RECORDS_COPY_BYTES_MAX < FRAME_BYTES_MAX_DEFAULT

#: Open connections per listener (Kafka: max.connections, unlimited by default).
CONNECTIONS_MAX_DEFAULT = 10_000
#: Requests read from one connection and not yet answered (librdkafka and the
#: Java client keep up to 5 in flight); past it the connection is not read.
IN_FLIGHT_REQUESTS_MAX_DEFAULT = 5
#: Upper bound of the setting: each in-flight request may hold a whole frame.
IN_FLIGHT_REQUESTS_LIMIT = 100
#: Seconds in-flight requests get to finish after a shutdown signal.
SHUTDOWN_GRACE_DEFAULT_SECONDS = 5.0
#: Bytes of requests read and not yet answered, all connections together
#: (Kafka: queued.max.request.bytes, unlimited there). Must hold at least one
#: frame of frame_bytes_max.
QUEUED_REQUEST_BYTES_MAX_DEFAULT = 256 * MIB
#: A connection with no request in flight and no bytes arriving for this
#: long is closed (Kafka: connections.max.idle.ms, 10 minutes). So is one
#: that takes none of its answers' bytes for this long.
CONNECTIONS_MAX_IDLE_MS_DEFAULT = 10 * 60 * 1000
#: A connection starts no new request while more than this many bytes of its
#: answers wait to be sent: a client that does not read its answers holds
#: at most this plus one answer (Kafka reads a connection's next request
#: only once its answer is sent).
RESPONSE_BYTES_UNSENT_MAX = 1 * MIB
#: Answers go to the socket in pieces of at most this many bytes; each piece
#: must be taken within connections_max_idle_ms.
SEND_PIECE_BYTES = 1 * MIB

assert QUEUED_REQUEST_BYTES_MAX_DEFAULT >= FRAME_BYTES_MAX_DEFAULT
assert 1 <= IN_FLIGHT_REQUESTS_MAX_DEFAULT <= IN_FLIGHT_REQUESTS_LIMIT

# --- Topics ----------------------------------------------------------------------
TOPIC_NAME_LENGTH_MAX = 249
PARTITIONS_MAX = 10_000
GROUP_NAME_LENGTH_MAX = 32_767

# --- Consumer groups -------------------------------------------------------------
#: Members of one group, by default (Kafka: group.max.size, unbounded there).
GROUP_MEMBERS_MAX_DEFAULT = 1000
#: Groups one coordinator keeps in memory, by default. At the limit the oldest
#: Empty group is forgotten to make room (its committed offsets stay).
GROUPS_MAX_DEFAULT = 10_000
#: Protocols (assignors) one member may offer; real clients offer one to three.
GROUP_PROTOCOLS_MAX = 64
#: Bytes of one member's protocol metadata, all its protocols together.
MEMBER_METADATA_BYTES_MAX = 1 * MIB
#: Bytes of the assignment the leader gives one member.
MEMBER_ASSIGNMENT_BYTES_MAX = 1 * MIB
#: Characters of a client-chosen string the coordinator keeps (client id and
#: host, instance id, protocol type and names): Kafka's int16 string limit.
GROUP_STRING_LENGTH_MAX = 32_767
#: Session timeouts members may ask for, by default (Kafka's
#: group.min.session.timeout.ms and group.max.session.timeout.ms).
GROUP_MIN_SESSION_TIMEOUT_MS_DEFAULT = 6_000
GROUP_MAX_SESSION_TIMEOUT_MS_DEFAULT = 1_800_000
#: How long the first rebalance of an Empty group waits for more members
#: (Kafka's group.initial.rebalance.delay.ms is 3000: too slow for a single
#: consumer that must be stable within a second).
INITIAL_REBALANCE_DELAY_MS_DEFAULT = 300
#: The consumer group protocol (KIP-848): a member silent this long is removed,
#: and members are asked to heartbeat this often (Kafka's
#: group.consumer.session.timeout.ms and group.consumer.heartbeat.interval.ms).
CONSUMER_SESSION_TIMEOUT_MS_DEFAULT = 45_000
CONSUMER_HEARTBEAT_INTERVAL_MS_DEFAULT = 5_000

assert GROUP_MEMBERS_MAX_DEFAULT >= 1
assert GROUPS_MAX_DEFAULT >= 1
# One member's metadata or assignment must fit in a request frame.
assert MEMBER_METADATA_BYTES_MAX < FRAME_BYTES_MAX_DEFAULT
assert MEMBER_ASSIGNMENT_BYTES_MAX < FRAME_BYTES_MAX_DEFAULT

# --- Cluster metadata ------------------------------------------------------------
#: The controller's metadata log is rewritten as one snapshot past this size.
METADATA_LOG_COMPACT_BYTES = 1 * MIB
#: Producer ids a worker reserves from the controller at a time (Kafka's
#: AllocateProducerIds hands out 1000); a restarted worker skips the rest.
PRODUCER_ID_BLOCK_SIZE = 1000

# --- Workers and the supervisor -------------------------------------------------
#: The highest TCP port. Worker i listens on the base port + i (and serves
#: fault control on its base port + i), so base + workers - 1 must not pass it.
PORT_MAX = 65535
#: Largest message on a worker's control channel (a metadata snapshot of
#: every topic is the largest: ~200 bytes a topic).
CONTROL_MESSAGE_BYTES_MAX = 64 * MIB
#: Attempts of an incremental config change that raced with another one
#: (each reads the configs again); the controller serializes changes, so a
#: second attempt almost always succeeds.
CONFIG_CHANGE_ATTEMPTS_MAX = 8
#: How long a raced config change waits for this worker to see the winner.
CONFIG_CHANGE_WAIT_SECONDS = 5.0
#: A worker that dies is restarted after a pause that doubles from the
#: first to the last; one that ran this long before dying starts again
#: from the first.
WORKER_RESTART_DELAY_FIRST_SECONDS = 0.1
WORKER_RESTART_DELAY_LAST_SECONDS = 10.0
WORKER_STABLE_SECONDS = 30.0
#: How long the supervisor waits for a worker to say it has new metadata (or
#: that it is ready) before it carries on without that worker.
WORKER_ANSWER_SECONDS = 30.0
#: After the drain's grace period, how long workers get to flush and exit
#: before they are killed.
WORKER_EXIT_SECONDS = 30.0

assert WORKER_RESTART_DELAY_FIRST_SECONDS <= WORKER_RESTART_DELAY_LAST_SECONDS

# --- Committed offsets -----------------------------------------------------------
#: Partitions of the internal __consumer_offsets topic (Kafka:
#: offsets.topic.num.partitions, 50 there). Fixed for the life of a data
#: directory: a group's partition, and so its coordinator, follows from it.
#: A partition's log is created when the first group that hashes to it commits.
OFFSETS_TOPIC_PARTITIONS = 16
#: Offsets-log size past which it is rewritten as a snapshot of the live state.
OFFSETS_LOG_COMPACT_BYTES_DEFAULT = 64 * MIB
#: Records per batch when the offsets log writes a snapshot.
OFFSETS_SNAPSHOT_BATCH_RECORDS_MAX = 1000

assert 2 * WRITE_BATCHES_MAX <= 1024, "two iovecs per batch must fit IOV_MAX"
assert BATCH_BYTES_MAX_DEFAULT <= WRITE_BYTES_MAX
assert SEGMENT_BYTES_DEFAULT <= SEGMENT_BYTES_MAX
assert FETCH_BYTES_MAX <= SEGMENT_BYTES_MAX

# --- Logging ---------------------------------------------------------------------
#: Lines of one kind (one message template) logged per interval; the rest are
#: counted and the count is reported with the next line of that kind.
LOG_BURST_LINES_MAX = 20
LOG_RATE_INTERVAL_SECONDS = 60.0
#: Kinds of rate-limited lines remembered (least recently used forgotten).
LOG_RATE_KEYS_MAX = 1024
#: Characters of a client-chosen string (client id, topic name) put in a log line.
LOG_UNTRUSTED_CHARACTERS_MAX = 200

# --- io_uring backend (trioring.uring) -------------------------------------------
#: Submission queue entries. One scheduler batch rarely queues more; if it
#: does, the submit before the loop's I/O wait submits a full queue and refills
#: it from the backlog (nothing waits on it).
RING_ENTRIES_DEFAULT = 256
#: Operations waiting for their completion at once, per ring; more wait for a slot.
OPERATIONS_IN_FLIGHT_MAX = 1024
#: Completion queue entries: every operation in flight plus one async-cancel
#: each fits, so with the defaults the completion queue cannot overflow (the
#: overflow path still exists for rings configured smaller, and is tested).
COMPLETION_ENTRIES_DEFAULT = 2 * OPERATIONS_IN_FLIGHT_MAX
#: Requests in one linked chain (a write and the fdatasync linked to it).
LINKED_REQUESTS_MAX = 2
#: Completions copied out of the ring per call into C.
REAP_BATCH_MAX = 256
#: iovecs in one writev (Linux's IOV_MAX).
IOVECS_MAX = 1024
#: Bytes the kernel moves in one read or write (Linux's MAX_RW_COUNT); bigger
#: requests come back short and are continued.
READ_WRITE_BYTES_MAX = 0x7FFFF000
#: Reads through the ring of at least this many bytes read into buffers kept
#: for the next read: a fresh buffer this large is fresh memory from the
#: kernel, and its page faults cost 5x a thread's whole pread per MiB
#: (measured: 955 against 192 us of CPU per 1 MiB read from the page cache).
READ_BUFFER_REUSE_BYTES_MIN = 64 * 1024
#: Bytes of such buffers kept per backend between reads (more are freed).
READ_BUFFERS_KEPT_BYTES_MAX = 8 * 1024 * 1024
#: Reads up to this size whose bytes the page cache holds are made in the loop
#: (preadv2 with RWF_NOWAIT, into one buffer per backend of at most this size);
#: larger ones always go to the ring or a thread (trioring/uring/_fallback.py).
CACHED_READ_BYTES_MAX = 8 * 1024 * 1024
#: Consecutive transient submit failures (EAGAIN, EBUSY) before the queued
#: requests fail with that error instead of being retried.
SUBMIT_FAILURES_MAX = 100
#: Pause before retrying a transient submit failure (the kernel is short of memory).
SUBMIT_RETRY_DELAY_SECONDS = 0.001
#: Ring size used to check that io_uring works at all.
PROBE_ENTRIES = 2

# --- sockets (_socket.py) ---------------------------------------------------------------

#: Bytes one ``receive_some`` asks the kernel for when the caller names no size
#: (Trio's default too).
RECEIVE_BYTES_DEFAULT = 64 * 1024
#: Largest receive buffer of a stream; a bigger ``max_bytes`` is clamped
#: (the server asks for 256 KiB).
RECEIVE_BYTES_MAX = 1024 * 1024
#: Smallest receive buffer of a stream, what an idle connection holds (its
#: receive waits in the kernel with this buffer).
RECEIVE_BUFFER_BYTES_MIN = 4 * 1024
#: Bytes a cancelled receive that completed anyway keeps for the next
#: ``receive_some``: at most one receive's worth.
PENDING_RECEIVE_BYTES_MAX = RECEIVE_BYTES_MAX
#: Bytes handed to the kernel in one send request; more is sent in rounds.
SEND_BYTES_MAX = READ_WRITE_BYTES_MAX
#: Capacity asked for the pipe a file range is spliced through. Below ~1 MiB
#: splice could not keep up with loopback (measured); Linux's default
#: ``/proc/sys/fs/pipe-max-size`` is exactly this, and a refusal keeps 64 KiB.
SPLICE_PIPE_BYTES = 1024 * 1024
#: Pipes per ring for splicing, each lent to one ``send_file_range`` at a time
#: (more wait). Bounded because the kernel charges pipe capacity to the user
#: (``pipe-user-pages-soft``: 64 MiB by default, then new pipes shrink).
SPLICE_PIPES_MAX = 8
#: Bytes per round when a file range is sent without splice: one ``os.sendfile``
#: call in a worker thread (Trio sockets) or one pread + ``send_all`` (other streams).
FILE_CHUNK_BYTES_MAX = 1024 * 1024

assert COMPLETION_ENTRIES_DEFAULT >= 2 * OPERATIONS_IN_FLIGHT_MAX, "a cancel per operation fits"
assert RING_ENTRIES_DEFAULT >= LINKED_REQUESTS_MAX, "a chain fits in an empty submission queue"
assert READ_WRITE_BYTES_MAX < 1 << 32, "lengths go to the kernel as u32"
assert RECEIVE_BYTES_DEFAULT <= RECEIVE_BYTES_MAX
assert RECEIVE_BUFFER_BYTES_MIN <= RECEIVE_BYTES_MAX
assert PENDING_RECEIVE_BYTES_MAX >= RECEIVE_BYTES_MAX, "a whole receive fits in the pending buffer"
assert SEND_BYTES_MAX < 1 << 32, "lengths go to the kernel as u32"
assert SPLICE_PIPE_BYTES < 1 << 31, "splice lengths go to the kernel as u32"
assert SPLICE_PIPES_MAX * SPLICE_PIPE_BYTES <= 16 * 1024 * 1024, "far below the user's pipe pages"

# --- The Trio Kafka client (trioring.client) ---------------------------------------
#: Requests one client connection has sent and not yet had answered (Kafka's
#: max.in.flight.requests.per.connection is 5 for an idempotent producer; the
#: others pipeline more).
CLIENT_IN_FLIGHT_REQUESTS_MAX = 32
#: How long a request may wait for its answer (Kafka's request.timeout.ms).
CLIENT_REQUEST_TIMEOUT_MS_DEFAULT = 30_000
#: How long connecting to a broker may take (Kafka's socket.connection.setup.timeout.ms).
CLIENT_CONNECT_TIMEOUT_MS_DEFAULT = 10_000
#: Bytes read from a broker's socket at a time.
CLIENT_RECEIVE_BYTES = 256 * KIB
#: Largest response frame the client accepts (Kafka's fetch.max.bytes is 50 MiB).
CLIENT_FRAME_BYTES_MAX = 128 * MIB
#: Metadata is refreshed at least this often (Kafka's metadata.max.age.ms).
CLIENT_METADATA_MAX_AGE_MS_DEFAULT = 300_000
#: First and largest pause before retrying a failed request (retry.backoff.ms,
#: retry.backoff.max.ms).
CLIENT_RETRY_BACKOFF_MS_DEFAULT = 100
CLIENT_RETRY_BACKOFF_MAX_MS_DEFAULT = 1_000

#: How long a Fetch may wait at the broker for ``fetch_min_bytes`` (fetch.max.wait.ms).
CLIENT_FETCH_MAX_WAIT_MS_DEFAULT = 500
#: Bytes a Fetch waits for before the broker answers (fetch.min.bytes).
CLIENT_FETCH_MIN_BYTES_DEFAULT = 1
#: Bytes one partition may return in one Fetch (max.partition.fetch.bytes). It
#: is also how much a partition's buffer of fetched, unread records may hold
#: before the consumer stops fetching it.
CLIENT_PARTITION_FETCH_BYTES_MAX_DEFAULT = 1 * MIB
#: Bytes one Fetch response may hold (fetch.max.bytes).
CLIENT_FETCH_BYTES_MAX_DEFAULT = 50 * MIB
#: Tries of a coordinator request (FindCoordinator, OffsetCommit, OffsetFetch)
#: that met a retriable error (coordinator moving, loading, unreachable), and of
#: an admin call (leader or coordinator moving, a broker restarting).
CLIENT_COORDINATOR_ATTEMPTS_MAX = 10
#: Records one ``getmany`` returns at most unless told otherwise (max.poll.records).
CLIENT_GETMANY_RECORDS_MAX_DEFAULT = 500
#: Group membership of the consumer, Kafka 4.0's consumer defaults:
#: session.timeout.ms, heartbeat.interval.ms, max.poll.interval.ms (the
#: rebalance timeout the member asks for), auto.commit.interval.ms.
CLIENT_SESSION_TIMEOUT_MS_DEFAULT = 45_000
CLIENT_HEARTBEAT_INTERVAL_MS_DEFAULT = 3_000
CLIENT_REBALANCE_TIMEOUT_MS_DEFAULT = 300_000
CLIENT_AUTO_COMMIT_INTERVAL_MS_DEFAULT = 5_000
#: JoinGroup may wait for the whole rebalance; the client waits this much longer.
CLIENT_JOIN_GRACE_MS = 5_000

assert CLIENT_IN_FLIGHT_REQUESTS_MAX >= 1
assert CLIENT_RETRY_BACKOFF_MS_DEFAULT <= CLIENT_RETRY_BACKOFF_MAX_MS_DEFAULT
assert CLIENT_FETCH_MAX_WAIT_MS_DEFAULT < CLIENT_REQUEST_TIMEOUT_MS_DEFAULT, (
    "a long poll is no timeout"
)
assert CLIENT_PARTITION_FETCH_BYTES_MAX_DEFAULT <= CLIENT_FETCH_BYTES_MAX_DEFAULT
assert CLIENT_FETCH_BYTES_MAX_DEFAULT < CLIENT_FRAME_BYTES_MAX, (
    "a whole Fetch response fits a frame"
)
#: The producer's defaults, Kafka's: linger.ms (5 since Kafka 4.0), batch.size,
#: buffer.memory, max.request.size, delivery.timeout.ms, and max.block.ms (how
#: long ``send`` may wait for a topic's metadata and then for room in the buffer).
PRODUCER_LINGER_MS_DEFAULT = 5
PRODUCER_BATCH_BYTES_DEFAULT = 16 * KIB
PRODUCER_BUFFER_BYTES_DEFAULT = 32 * MIB
PRODUCER_REQUEST_BYTES_MAX_DEFAULT = 1 * MIB
PRODUCER_DELIVERY_TIMEOUT_MS_DEFAULT = 120_000
PRODUCER_MAX_BLOCK_MS_DEFAULT = 60_000

assert PRODUCER_BATCH_BYTES_DEFAULT <= PRODUCER_REQUEST_BYTES_MAX_DEFAULT
assert PRODUCER_REQUEST_BYTES_MAX_DEFAULT <= PRODUCER_BUFFER_BYTES_DEFAULT

# --- Command line (trioring topics / groups / produce / consume) -----------------
#: How long a command waits for a bootstrap broker to accept a connection.
CLI_CONNECT_TIMEOUT_SECONDS_DEFAULT = 5.0
#: A command's first request (ApiVersions) checks the broker answers at all; an
#: answer lists some 80 APIs at 7 bytes each: a much larger one is not Kafka's.
CLI_API_VERSIONS_ANSWER_BYTES_MAX = 64 * KIB
#: Records whose delivery ``trioring produce`` has not checked yet; the oldest is
#: awaited when there are more, so a long input holds bounded memory.
CLI_PRODUCE_UNCHECKED_RECORDS_MAX = 10_000
#: Bytes ``trioring produce`` reads from its input at a time.
CLI_PRODUCE_READ_BYTES = 64 * KIB
#: A line longer than this is refused: a record is at most max.request.size anyway.
CLI_PRODUCE_LINE_BYTES_MAX = 1 * MIB
#: Records ``trioring consume`` takes from the consumer per read.
CLI_CONSUME_BATCH_RECORDS_MAX = 500
#: How often a non-following ``trioring consume`` checks whether it has read to the end.
CLI_CONSUME_END_CHECK_SECONDS = 0.2
#: How long a non-following group member of ``trioring consume`` holds an empty
#: assignment before it concludes the other members hold every partition. (A
#: cooperative rebalance gives a new member nothing first, its partitions a
#: moment later.)
CLI_CONSUME_UNASSIGNED_SECONDS = 3.0
#: On Ctrl-C or SIGTERM, how long consume waits for a write already under way to
#: finish (its reader may have the bytes; then they count as written).
CLI_CONSUME_WRITE_GRACE_SECONDS = 0.5

# --- Fault injection (trioring.testing; a test-only feature) ---------------------
#: Fault rules pending at once in one injector (each a few hundred bytes).
FAULT_RULES_MAX = 1024
#: Requests one rule may affect; None (until cleared) is the unbounded choice.
FAULT_COUNT_MAX = 1_000_000
#: Latency one rule may add to a request (longer would outlive any client timeout).
FAULT_DELAY_SECONDS_MAX = 600.0
#: Injections remembered for ``injected()``, the oldest forgotten first (a total
#: is counted regardless).
FAULT_INJECTIONS_RECORDED_MAX = 1000
#: Bytes of a client id kept in an injection's record, as its JSON string in an
#: answer (UTF-8, quotes and escapes included: a character takes 1-6 bytes
#: there). Kafka allows 32767 characters.
FAULT_CLIENT_ID_JSON_BYTES_MAX = 200
#: Bytes of one pending fault's or one injection's JSON in an answer: the
#: client id above, and under 256 for the rest (an API's and an error's names,
#: a float).
FAULT_ENTRY_JSON_BYTES_MAX = 512
#: Bytes of one request line on the fault control endpoint, newline included.
FAULT_CONTROL_LINE_BYTES_MAX = 4 * KIB
#: Bytes of one answer line a control client accepts: the whole injection
#: record, or every pending fault, with room to spare.
FAULT_CONTROL_ANSWER_BYTES_MAX = 1 * MIB
#: Control connections open at once per broker process; more are answered
#: with an error and closed at once.
FAULT_CONTROL_CONNECTIONS_MAX = 8
#: A control connection that sends no whole request for this long is closed.
FAULT_CONTROL_IDLE_SECONDS = 30.0
#: A control connection that has not taken its answer this long after it was
#: ready is closed: a client that never reads would hold its slot for good.
FAULT_CONTROL_ANSWER_SECONDS = 10.0
#: How long an over-the-limit connection's error line may take to send (into
#: a new connection's empty buffer it takes no waiting).
FAULT_CONTROL_REFUSAL_SECONDS = 0.1
#: How long a control client waits to connect and for each answer.
FAULT_CONTROL_CLIENT_SECONDS = 10.0

#: The test fixtures' brokers: how long a stop lets requests in flight finish
#: (a test's clients are done by then), how long BrokerProcess.create_topic
#: waits, and the largest answer it reads (one topic's is a few hundred bytes).
TEST_BROKER_SHUTDOWN_GRACE_SECONDS = 1.0
TEST_CREATE_TOPIC_SECONDS = 30.0
TEST_CREATE_TOPIC_ANSWER_BYTES_MAX = 64 * KIB

# An answer's entries, each with its ", " separator, and its envelope
# ('{"ok": true, "injected": [...], "total": N}' and the newline) in under 128 bytes.
assert (
    max(FAULT_INJECTIONS_RECORDED_MAX, FAULT_RULES_MAX) * (FAULT_ENTRY_JSON_BYTES_MAX + 2) + 128
    <= FAULT_CONTROL_ANSWER_BYTES_MAX
)
assert FAULT_CLIENT_ID_JSON_BYTES_MAX + 256 <= FAULT_ENTRY_JSON_BYTES_MAX

# --- Command line: trioring bench ------------------------------------------------
CLI_BENCH_SECONDS_DEFAULT = 10.0
CLI_BENCH_RECORD_BYTES_DEFAULT = 1024
#: A record value within Kafka's default message.max.bytes (1048588) with the
#: batch's and the record's framing.
CLI_BENCH_RECORD_BYTES_MAX = 1_000_000
#: Partitions of the topic the bench creates when it does not exist.
CLI_BENCH_PARTITIONS_DEFAULT = 6
CLI_BENCH_PROCESSES_MAX = 64
#: Records the bench's producer queues between two checkpoints: its sender task
#: must run alongside, or nothing is sent until the loop waits for room.
CLI_BENCH_YIELD_RECORDS = 100
#: With ``--rate``, records are sent in steps about this far apart.
CLI_BENCH_RATE_STEP_SECONDS = 0.01
#: Random bytes the record values are cut from: incompressible, and not the same
#: from one record to the next (a batch of equal values would compress to nothing).
CLI_BENCH_VALUE_POOL_BYTES = 1 * MIB
#: Records the consumer side takes per read.
CLI_BENCH_CONSUME_RECORDS_MAX = 500
#: How long a read waits before the consumer checks whether it is at the end.
CLI_BENCH_END_CHECK_SECONDS = 0.2
#: After the producer of ``bench e2e`` stops, how long its consumer waits for the rest.
CLI_BENCH_DRAIN_SECONDS = 10.0
#: How often the progress bar, and a worker process's report to its parent, is updated.
CLI_BENCH_PROGRESS_SECONDS = 0.25
#: How long worker processes may take to connect and be ready to start together.
CLI_BENCH_WORKER_START_SECONDS = 60.0
#: The tail of a worker process's stderr kept for the parent's error message.
CLI_BENCH_WORKER_STDERR_BYTES_MAX = 16 * KIB

assert (
    CLI_BENCH_RECORD_BYTES_DEFAULT
    <= CLI_BENCH_RECORD_BYTES_MAX
    <= PRODUCER_REQUEST_BYTES_MAX_DEFAULT
)
assert CLI_BENCH_RECORD_BYTES_MAX <= CLI_BENCH_VALUE_POOL_BYTES

# --- the fuzz harness (trioring.fuzz) ---------------------------------------------------

#: Every fault kind the harness knows (``trioring fuzz --faults``); each target takes
#: the ones it can inject. Here, not in trioring.fuzz, so the command line's parser
#: does not import the harness (and Hypothesis) for every command.
FUZZ_FAULT_KINDS = ("kill", "power-loss", "enospc", "eio", "slow", "net")
#: Steps per history, at most (``--history-steps``); Hypothesis draws shorter ones too.
FUZZ_HISTORY_STEPS_MAX = 40

#: How long the broker may be unavailable after a restart, a crash or cleared disk
#: faults before the harness calls it a failure (Kafka's clients retry this long).
FUZZ_RECOVERY_SECONDS = 10.0
#: How long after the disk works again the broker may still refuse work with storage
#: errors: its retries of offline partitions back off to PARTITION_RECOVERY_DELAY_LAST_SECONDS.
FUZZ_DISK_RECOVERY_SECONDS = PARTITION_RECOVERY_DELAY_LAST_SECONDS + 5.0
#: Longest a step may take before the harness calls it a hang (recovery included).
FUZZ_STEP_SECONDS_MAX = 60.0
#: The harness's group members: a session long enough to outlast slow steps, and a
#: rebalance timeout short enough that a lone member's JoinGroup answers at once.
FUZZ_GROUP_SESSION_TIMEOUT_MS = 45_000
FUZZ_GROUP_REBALANCE_TIMEOUT_MS = 1_000
#: Times an idempotent batch with no answer (or a storage error) is sent again.
FUZZ_IDEMPOTENT_RESENDS_MAX = 3
#: Connections a history may leave stalled (a client that stopped reading).
FUZZ_STALLED_CONNECTIONS_MAX = 8

assert FUZZ_RECOVERY_SECONDS * 2 < FUZZ_STEP_SECONDS_MAX
assert FUZZ_DISK_RECOVERY_SECONDS < FUZZ_STEP_SECONDS_MAX
#: Fetches a stalled connection sends before it stops reading (each asks for 64 MiB).
FUZZ_STALLED_FETCHES = 16

# --- The wire fuzzer (trioring.fuzz, _wire.py) -------------------------------------
#: Connections fuzzing at once. Requests on one connection run one after
#: another (a long-polling Fetch holds its connection), so throughput comes
#: from many connections, not deep pipelines.
WIRE_FUZZ_CONNECTIONS_DEFAULT = 32
#: Frames written back to back before the fuzzer waits for their answers.
#: Beyond the server's in-flight limit (5) they wait in the socket buffers.
WIRE_FUZZ_PIPELINE_FRAMES_MAX = 16
#: Pipelines one connection carries before the fuzzer closes it itself.
WIRE_FUZZ_CONNECTION_BURSTS_MAX = 32
#: Encoded valid requests kept per API and version; each frame either reuses
#: one (cheap) or draws a fresh one in its place (about 40 us).
WIRE_FUZZ_POOL_FRAMES_PER_VERSION = 4
#: Fuzzed requests that would make the broker wait longer than this (a Fetch's
#: max_wait, a JoinGroup's rebalance timeout), or groups whose members outlive
#: this (session timeout), are drawn again: that waiting is asked for, and a
#: flipped bit can ask for 24 days of it.
WIRE_FUZZ_WAIT_MS_MAX = 1000
WIRE_FUZZ_SESSION_MS_MAX = 10_000
#: Likewise for partition counts: 10,000 partitions take ~40 s to create
#: (~4 ms each), and a pipeline may hold several such requests.
WIRE_FUZZ_PARTITIONS_MAX = 16
#: Draws of one frame before the fuzzer takes an unmutated request instead.
WIRE_FUZZ_DRAWS_MAX = 16
#: Bytes of a whole oversized frame (a valid request padded with trailing bytes).
WIRE_FUZZ_LARGE_FRAME_BYTES_MAX = 2 * MIB
#: Bytes sent after a size prefix near the frame limit (the rest never comes:
#: the fuzzer half-closes), so a campaign never writes GiBs.
WIRE_FUZZ_OVERSIZED_SENT_BYTES_MAX = 1 * MIB
#: Bytes of random payload in a random frame (most are far shorter).
WIRE_FUZZ_RANDOM_FRAME_BYTES_MAX = 64 * KIB
#: Largest response frame the fuzzer accepts as sane (a Fetch answers at most
#: FETCH_BYTES_MAX per partition; the fuzzed ones ask for little).
WIRE_FUZZ_RESPONSE_BYTES_MAX = 128 * MIB
#: A pipeline must be answered (or its connection closed) within this; every
#: request is bounded by the waits above, so longer is a hang.
WIRE_FUZZ_ANSWER_SECONDS = 30.0
#: How long opening a connection may take.
WIRE_FUZZ_CONNECT_SECONDS = 10.0
#: Connections in a row that could not be opened before the run stops, and
#: the pause after each.
WIRE_FUZZ_CONNECT_FAILURES_MAX = 20
WIRE_FUZZ_CONNECT_RETRY_SECONDS = 0.05
#: A fresh connection must answer ApiVersions within WIRE_FUZZ_PROBE_SECONDS
#: after every WIRE_FUZZ_PROBE_INTERVAL_FRAMES frames (and at the end).
WIRE_FUZZ_PROBE_INTERVAL_FRAMES = 2000
WIRE_FUZZ_PROBE_SECONDS = 10.0
#: How often the broker's pid and memory are checked and progress is reported.
WIRE_FUZZ_SAMPLE_INTERVAL_SECONDS = 0.5
#: The broker's resident memory (all its processes) may grow this much over
#: its size once the run is set up.
WIRE_FUZZ_RSS_GROWTH_BYTES_MAX_DEFAULT = 512 * MIB
#: The well-behaved client's rate: this many records, then a pause.
WIRE_FUZZ_PRODUCE_RECORDS_PER_ROUND = 10
WIRE_FUZZ_PRODUCE_INTERVAL_SECONDS = 0.05
#: Partitions of the well-behaved client's topic.
WIRE_FUZZ_VERIFY_PARTITIONS = 3
#: How long setting up (topics) and reading every record back may take.
WIRE_FUZZ_SETUP_SECONDS = 60.0
WIRE_FUZZ_VERIFY_SECONDS = 120.0
#: Reading back stops at a partition whose position has not moved for this
#: long short of its end (the broker serves nothing there): a finding, not a wait.
WIRE_FUZZ_VERIFY_STALL_SECONDS = 5.0
#: Failures kept in the summary (more are counted), and how many of them
#: carry their frames' bytes in hex, up to WIRE_FUZZ_FAILURE_HEX_BYTES_MAX each.
WIRE_FUZZ_FAILURES_MAX = 100
WIRE_FUZZ_FAILURES_WITH_BYTES_MAX = 5
WIRE_FUZZ_FAILURE_HEX_BYTES_MAX = 4 * KIB

assert WIRE_FUZZ_WAIT_MS_MAX * WIRE_FUZZ_PIPELINE_FRAMES_MAX < WIRE_FUZZ_ANSWER_SECONDS * 1000, (
    "a pipeline of requests that each wait as long as allowed is answered in time"
)
assert WIRE_FUZZ_LARGE_FRAME_BYTES_MAX < FRAME_BYTES_MAX_DEFAULT
assert WIRE_FUZZ_OVERSIZED_SENT_BYTES_MAX < FRAME_BYTES_MAX_DEFAULT
assert CLIENT_FRAME_BYTES_MAX <= WIRE_FUZZ_RESPONSE_BYTES_MAX

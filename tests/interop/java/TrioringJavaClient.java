// The official Java Kafka client, driven by the interop tests through stdin and stdout.
//
//   java TrioringJavaClient version
//   java TrioringJavaClient produce --bootstrap HOST:PORT --topic T
//        [--compression none|gzip|snappy|lz4|zstd] [--linger-ms MS] [--client-id ID]
//   java TrioringJavaClient consume --bootstrap HOST:PORT --topic T --group G [--client-id ID]
//        [--group-instance-id ID (a static member: closing does not leave the group)]
//        [--protocol classic|consumer] [--max-records N] [--idle-ms MS]
//        [--max-poll-records N] [--poll-ms MS] [--pause-ms MS (after each poll: a slow member)]
//      classic only: [--assignment-strategy range|roundrobin|sticky|cooperative-sticky|CLASS]
//        [--session-timeout-ms MS] [--heartbeat-interval-ms MS] [--max-poll-interval-ms MS]
//      consumer (KIP-848) only: [--remote-assignor uniform|range]
//
// Every line printed on stdout is one event, space-separated, so a test can parse
// it without a JSON library on this side. Keys, values and header values are
// "=" and their base64 (so empty is "=", a word of its own), "~" for null; a
// header list is "-" when empty, else name:value pairs (both so encoded) joined
// by commas. A partition list is "-" or comma-separated.
//
// produce reads records from stdin, one per line, tab-separated:
//   PARTITION TIMESTAMP_MS KEY VALUE HEADERS   ("-" partition or timestamp: the client's choice)
// and prints, as the broker acknowledges them (in order within a partition):
//   ACK INDEX PARTITION OFFSET          FAILED INDEX MESSAGE
//   DONE ACKED FAILED                   (last; exit status 0 only if none failed)
//
// consume prints:
//   SUBSCRIBED
//   ASSIGNED PARTITIONS GENERATION      (onPartitionsAssigned: in cooperative mode only
//   STARTS P:OFFSET|none,...             the added partitions; STARTS: their committed offsets)
//   REVOKED PARTITIONS                  (onPartitionsRevoked; cooperative: only those that move)
//   LOST PARTITIONS                     (onPartitionsLost: no commit possible)
//   RECORD TOPIC PARTITION OFFSET KEY VALUE HEADERS TIMESTAMP_MS
//   COMMITTED P:NEXT_OFFSET,...         (a synchronous commit succeeded)
//   COMMIT_DEFERRED REASON              (a rebalance is in progress; retried after the next poll)
//   COMMIT_FAILED P:NEXT_OFFSET,... REASON
//   CLOSING REASON                      (then close(): revokes what it owns, leaves the group
//                                        unless it is a static member)
//   EXIT REASON RECORDS
// It commits what it consumed after every poll and, for revoked partitions, in
// onPartitionsRevoked, so that a record is committed before anyone else can
// read it. It stops at --max-records, after --idle-ms without records, when
// stdin is closed, or on SIGTERM, and always closes the consumer (a dynamic
// member leaves the group) before it exits.
//
// Errors: "ERROR CLASS MESSAGE" on stdout and exit status 1.

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.Collection;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;

import org.apache.kafka.clients.consumer.CloseOptions;
import org.apache.kafka.clients.consumer.CommitFailedException;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.RebalanceInProgressException;
import org.apache.kafka.common.errors.WakeupException;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.utils.AppInfoParser;

public final class TrioringJavaClient {
    private static final Duration CLOSE_TIMEOUT = Duration.ofSeconds(20);
    private static final Duration COMMIT_TIMEOUT = Duration.ofSeconds(15);
    private static final long SHUTDOWN_JOIN_MS = 30_000;

    private TrioringJavaClient() {}

    // --- output ---------------------------------------------------------------------------

    private static synchronized void emit(String line) {
        System.out.println(line);
        System.out.flush();
    }

    private static String encode(byte[] data) {
        return data == null ? "~" : "=" + Base64.getEncoder().encodeToString(data);
    }

    private static byte[] decode(String text) {
        if (text.equals("~")) {
            return null;
        }
        if (!text.startsWith("=")) {
            throw new IllegalArgumentException("bytes must be ~ or =BASE64, got " + text);
        }
        return Base64.getDecoder().decode(text.substring(1));
    }

    private static String encodeHeaders(Iterable<Header> headers) {
        List<String> parts = new ArrayList<>();
        for (Header header : headers) {
            parts.add(encode(header.key().getBytes(StandardCharsets.UTF_8)) + ":" + encode(header.value()));
        }
        return parts.isEmpty() ? "-" : String.join(",", parts);
    }

    private static List<Header> decodeHeaders(String text) {
        List<Header> headers = new ArrayList<>();
        if (text.equals("-")) {
            return headers;
        }
        for (String part : text.split(",")) {
            String[] pair = part.split(":", 2);
            headers.add(new RecordHeader(new String(decode(pair[0]), StandardCharsets.UTF_8), decode(pair[1])));
        }
        return headers;
    }

    private static String partitions(Collection<TopicPartition> partitions) {
        TreeSet<Integer> sorted = new TreeSet<>();
        for (TopicPartition partition : partitions) {
            sorted.add(partition.partition());
        }
        if (sorted.isEmpty()) {
            return "-";
        }
        List<String> parts = new ArrayList<>();
        for (int partition : sorted) {
            parts.add(Integer.toString(partition));
        }
        return String.join(",", parts);
    }

    private static String offsets(Map<TopicPartition, OffsetAndMetadata> offsets) {
        TreeMap<Integer, String> sorted = new TreeMap<>();
        for (Map.Entry<TopicPartition, OffsetAndMetadata> entry : offsets.entrySet()) {
            OffsetAndMetadata offset = entry.getValue();
            sorted.put(entry.getKey().partition(), offset == null ? "none" : Long.toString(offset.offset()));
        }
        List<String> parts = new ArrayList<>();
        for (Map.Entry<Integer, String> entry : sorted.entrySet()) {
            parts.add(entry.getKey() + ":" + entry.getValue());
        }
        return parts.isEmpty() ? "-" : String.join(",", parts);
    }

    private static String oneWord(String text) {
        return text == null ? "-" : text.replaceAll("\\s+", "_");
    }

    // --- options --------------------------------------------------------------------------

    private static Map<String, String> options(String[] arguments) {
        Map<String, String> options = new HashMap<>();
        for (int index = 1; index < arguments.length; index += 2) {
            if (!arguments[index].startsWith("--") || index + 1 >= arguments.length) {
                throw new IllegalArgumentException("expected --name value, got " + arguments[index]);
            }
            options.put(arguments[index].substring(2), arguments[index + 1]);
        }
        return options;
    }

    private static String required(Map<String, String> options, String name) {
        String value = options.remove(name);
        if (value == null) {
            throw new IllegalArgumentException("missing --" + name);
        }
        return value;
    }

    private static String optional(Map<String, String> options, String name, String fallback) {
        String value = options.remove(name);
        return value == null ? fallback : value;
    }

    private static void noneLeft(Map<String, String> options) {
        if (!options.isEmpty()) {
            throw new IllegalArgumentException("unknown options " + options.keySet());
        }
    }

    private static String assignor(String name) {
        switch (name) {
            case "range":
                return "org.apache.kafka.clients.consumer.RangeAssignor";
            case "roundrobin":
                return "org.apache.kafka.clients.consumer.RoundRobinAssignor";
            case "sticky":
                return "org.apache.kafka.clients.consumer.StickyAssignor";
            case "cooperative-sticky":
                return "org.apache.kafka.clients.consumer.CooperativeStickyAssignor";
            default:
                return name; // a class name
        }
    }

    // --- produce --------------------------------------------------------------------------

    private static int produce(Map<String, String> options) throws Exception {
        String topic = required(options, "topic");
        Properties properties = new Properties();
        properties.put("bootstrap.servers", required(options, "bootstrap"));
        properties.put("client.id", optional(options, "client-id", "trioring-java-producer"));
        properties.put("enable.idempotence", "true");
        properties.put("acks", "all");
        properties.put("compression.type", optional(options, "compression", "none"));
        properties.put("linger.ms", optional(options, "linger-ms", "5"));
        properties.put("max.in.flight.requests.per.connection", "5");
        properties.put("request.timeout.ms", "10000");
        properties.put("delivery.timeout.ms", "30000");
        properties.put("max.block.ms", "30000");
        properties.put("key.serializer", ByteArraySerializer.class.getName());
        properties.put("value.serializer", ByteArraySerializer.class.getName());
        noneLeft(options);

        AtomicInteger acked = new AtomicInteger();
        AtomicInteger failed = new AtomicInteger();
        BufferedReader input = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(properties)) {
            int index = 0;
            for (String line = input.readLine(); line != null; line = input.readLine()) {
                if (line.isEmpty()) {
                    continue;
                }
                String[] fields = line.split("\t", -1);
                if (fields.length != 5) {
                    throw new IllegalArgumentException("record line needs 5 fields: " + line);
                }
                Integer partition = fields[0].equals("-") ? null : Integer.valueOf(fields[0]);
                Long timestamp = fields[1].equals("-") ? null : Long.valueOf(fields[1]);
                ProducerRecord<byte[], byte[]> record = new ProducerRecord<>(
                    topic, partition, timestamp, decode(fields[2]), decode(fields[3]), decodeHeaders(fields[4]));
                final int number = index++;
                producer.send(record, (metadata, error) -> {
                    if (error != null) {
                        failed.incrementAndGet();
                        emit("FAILED " + number + " " + oneWord(error.toString()));
                    } else {
                        acked.incrementAndGet();
                        emit("ACK " + number + " " + metadata.partition() + " " + metadata.offset());
                    }
                });
            }
            producer.flush();
            producer.close(CLOSE_TIMEOUT);
        }
        emit("DONE " + acked.get() + " " + failed.get());
        return failed.get() == 0 ? 0 : 1;
    }

    // --- consume --------------------------------------------------------------------------

    /** One consumer, its stop request and the offsets it consumed but has not committed yet. */
    private static final class Consume implements ConsumerRebalanceListener {
        final KafkaConsumer<byte[], byte[]> consumer;
        final AtomicReference<String> stopReason = new AtomicReference<>();
        final Map<TopicPartition, OffsetAndMetadata> pending = new HashMap<>();

        Consume(KafkaConsumer<byte[], byte[]> consumer) {
            this.consumer = consumer;
        }

        void requestStop(String reason) {
            if (stopReason.compareAndSet(null, reason)) {
                consumer.wakeup();
            }
        }

        /** Commit what is pending for ``partitions`` (all if null). */
        void commit(Collection<TopicPartition> partitions) {
            Map<TopicPartition, OffsetAndMetadata> offsets = new HashMap<>();
            for (Map.Entry<TopicPartition, OffsetAndMetadata> entry : pending.entrySet()) {
                if (partitions == null || partitions.contains(entry.getKey())) {
                    offsets.put(entry.getKey(), entry.getValue());
                }
            }
            if (offsets.isEmpty()) {
                return;
            }
            try {
                consumer.commitSync(offsets, COMMIT_TIMEOUT);
            } catch (RebalanceInProgressException error) {
                emit("COMMIT_DEFERRED " + oneWord(error.getMessage()));
                return;
            } catch (CommitFailedException error) {
                emit("COMMIT_FAILED " + offsets(offsets) + " " + oneWord(error.getMessage()));
                pending.keySet().removeAll(offsets.keySet());
                return;
            }
            emit("COMMITTED " + offsets(offsets));
            for (Map.Entry<TopicPartition, OffsetAndMetadata> entry : offsets.entrySet()) {
                pending.remove(entry.getKey(), entry.getValue());
            }
        }

        @Override
        public void onPartitionsRevoked(Collection<TopicPartition> partitions) {
            emit("REVOKED " + partitions(partitions));
            commit(partitions);
            pending.keySet().removeAll(partitions);
        }

        @Override
        public void onPartitionsAssigned(Collection<TopicPartition> partitions) {
            emit("ASSIGNED " + partitions(partitions) + " " + consumer.groupMetadata().generationId());
            if (!partitions.isEmpty()) {
                emit("STARTS " + offsets(consumer.committed(Set.copyOf(partitions), COMMIT_TIMEOUT)));
            }
        }

        @Override
        public void onPartitionsLost(Collection<TopicPartition> partitions) {
            emit("LOST " + partitions(partitions));
            pending.keySet().removeAll(partitions);
        }
    }

    private static int consume(Map<String, String> options) throws Exception {
        String topic = required(options, "topic");
        String protocol = optional(options, "protocol", "classic");
        long maxRecords = Long.parseLong(optional(options, "max-records", "0"));
        long idleMs = Long.parseLong(optional(options, "idle-ms", "0"));
        Duration pollTimeout = Duration.ofMillis(Long.parseLong(optional(options, "poll-ms", "100")));
        long pauseMs = Long.parseLong(optional(options, "pause-ms", "0"));
        Properties properties = new Properties();
        properties.put("bootstrap.servers", required(options, "bootstrap"));
        properties.put("group.id", required(options, "group"));
        properties.put("client.id", optional(options, "client-id", "trioring-java-consumer"));
        String instance = options.remove("group-instance-id");
        boolean staticMember = instance != null;
        if (staticMember) {
            properties.put("group.instance.id", instance);
        }
        properties.put("group.protocol", protocol);
        properties.put("enable.auto.commit", "false");
        properties.put("auto.offset.reset", "earliest");
        properties.put("max.poll.records", optional(options, "max-poll-records", "500"));
        properties.put("request.timeout.ms", "10000");
        properties.put("key.deserializer", ByteArrayDeserializer.class.getName());
        properties.put("value.deserializer", ByteArrayDeserializer.class.getName());
        if (protocol.equals("classic")) {
            properties.put("partition.assignment.strategy", assignor(optional(options, "assignment-strategy", "range")));
            properties.put("session.timeout.ms", optional(options, "session-timeout-ms", "6000"));
            properties.put("heartbeat.interval.ms", optional(options, "heartbeat-interval-ms", "500"));
            properties.put("max.poll.interval.ms", optional(options, "max-poll-interval-ms", "20000"));
        } else {
            // KIP-848: the broker assigns; the client may only name its assignor.
            String remote = options.remove("remote-assignor");
            if (remote != null) {
                properties.put("group.remote.assignor", remote);
            }
        }
        noneLeft(options);

        KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(properties);
        Consume state = new Consume(consumer);
        watchStdin(state);
        Thread main = Thread.currentThread();
        // SIGTERM: stop like a closed stdin; main halts the JVM once it has closed.
        Thread hook = new Thread(() -> {
            state.requestStop("sigterm");
            try {
                main.join(SHUTDOWN_JOIN_MS);
            } catch (InterruptedException error) {
                Thread.currentThread().interrupt();
            }
        });
        Runtime.getRuntime().addShutdownHook(hook);

        long records = 0;
        try {
            consumer.subscribe(List.of(topic), state);
            emit("SUBSCRIBED");
            long lastRecordAt = System.nanoTime();
            while (state.stopReason.get() == null) {
                if (maxRecords > 0 && records >= maxRecords) {
                    state.stopReason.compareAndSet(null, "max-records");
                    break;
                }
                if (idleMs > 0 && (System.nanoTime() - lastRecordAt) / 1_000_000 >= idleMs) {
                    state.stopReason.compareAndSet(null, "idle");
                    break;
                }
                ConsumerRecords<byte[], byte[]> batch = consumer.poll(pollTimeout);
                for (ConsumerRecord<byte[], byte[]> record : batch) {
                    emit("RECORD " + record.topic() + " " + record.partition() + " " + record.offset() + " "
                        + encode(record.key()) + " " + encode(record.value()) + " "
                        + encodeHeaders(record.headers()) + " " + record.timestamp());
                    state.pending.put(
                        new TopicPartition(record.topic(), record.partition()),
                        new OffsetAndMetadata(record.offset() + 1));
                    records++;
                }
                if (!batch.isEmpty()) {
                    lastRecordAt = System.nanoTime();
                }
                state.commit(null);
                if (pauseMs > 0) {
                    Thread.sleep(pauseMs);
                }
            }
        } catch (WakeupException error) {
            // requestStop: fall through to the final commit and close.
        } finally {
            finalCommit(state);
            emit("CLOSING " + state.stopReason.get());
            // A dynamic member leaves the group; a static one stays until its session
            // times out, so that it can come back without a rebalance (KIP-345).
            CloseOptions.GroupMembershipOperation membership = staticMember
                ? CloseOptions.GroupMembershipOperation.REMAIN_IN_GROUP
                : CloseOptions.GroupMembershipOperation.LEAVE_GROUP;
            consumer.close(CloseOptions.groupMembershipOperation(membership).withTimeout(CLOSE_TIMEOUT));
        }
        emit("EXIT " + state.stopReason.get() + " " + records);
        return 0;
    }

    private static void finalCommit(Consume state) {
        for (int attempt = 0; attempt < 2; attempt++) {
            try {
                state.commit(null);
                return;
            } catch (WakeupException error) {
                // a stop request's wakeup fires once, maybe here: try again
            } catch (RuntimeException error) {
                emit("COMMIT_FAILED " + offsets(state.pending) + " " + oneWord(error.toString()));
                return;
            }
        }
    }

    private static void watchStdin(Consume state) {
        Thread watcher = new Thread(() -> {
            try {
                while (System.in.read() >= 0) {
                    // nothing is read from stdin; its end is the signal
                }
            } catch (java.io.IOException error) {
                // treat like end of input
            }
            state.requestStop("stdin-closed");
        });
        watcher.setDaemon(true);
        watcher.start();
    }

    // --- main -----------------------------------------------------------------------------

    public static void main(String[] arguments) {
        int status;
        try {
            if (arguments.length == 0) {
                throw new IllegalArgumentException("usage: version | produce ... | consume ...");
            }
            Map<String, String> options = options(arguments);
            switch (arguments[0]) {
                case "version":
                    emit("VERSION " + AppInfoParser.getVersion());
                    status = 0;
                    break;
                case "produce":
                    status = produce(options);
                    break;
                case "consume":
                    status = consume(options);
                    break;
                default:
                    throw new IllegalArgumentException("unknown subcommand " + arguments[0]);
            }
        } catch (Throwable error) {
            emit("ERROR " + error.getClass().getName() + " " + oneWord(error.getMessage()));
            error.printStackTrace();
            status = 1;
        }
        System.out.flush();
        // halt, not exit: the shutdown hook waits for this thread, which is done.
        Runtime.getRuntime().halt(status);
    }
}

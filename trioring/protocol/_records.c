/* The records section of a Kafka RecordBatch v2, parsed for the consumer's hot path.
 *
 * Python cannot walk a batch's varints faster than about 3 us a record; this
 * walks them in C and hands back, per record, where its fields are, so that
 * Python only slices keys and values out and builds one tuple per record.
 * Every length and count is checked against the bytes left before it is
 * used: the bytes come from a broker, which may be any broker. */

#include <stddef.h>
#include <stdint.h>

#include "_records.h"

/* A zigzag varint of at most ``max_bytes`` bytes; 0 when it runs past the end,
 * is too long or does not fit in 64 bits. */
static int read_varint(const uint8_t *data, size_t size, size_t *position, int max_bytes,
                       int64_t *value)
{
    uint64_t result = 0;
    int shift = 0;
    for (int index = 0; index < max_bytes; index++) {
        if (*position >= size)
            return 0;
        uint8_t byte = data[(*position)++];
        if (shift == 63 && byte > 1)
            return 0; /* more than 64 bits: refused, as the Python reader does */
        result |= (uint64_t)(byte & 0x7F) << shift;
        if (!(byte & 0x80)) {
            *value = (int64_t)(result >> 1) ^ -(int64_t)(result & 1);
            return 1;
        }
        shift += 7;
    }
    return 0;
}

#define VARINT32_BYTES 5
#define VARINT64_BYTES 10

int64_t trioring_parse_records(const uint8_t *data, size_t size, int32_t count,
                               int32_t last_offset_delta, int64_t base_timestamp,
                               int64_t headers_max, int64_t *out, size_t *error_position)
{
    size_t position = 0;
    int64_t previous_delta = -1;
    for (int32_t index = 0; index < count; index++) {
        int64_t *fields = out + (size_t)index * TRIORING_RECORD_FIELDS;
        int64_t length, timestamp_delta, offset_delta, key_length, value_length, header_count;
        *error_position = position;
        if (!read_varint(data, size, &position, VARINT32_BYTES, &length))
            return TRIORING_RECORDS_TRUNCATED;
        if (length < 0 || length > (int64_t)(size - position))
            return TRIORING_RECORDS_BAD_LENGTH;
        size_t record_end = position + (size_t)length;
        if (position >= size)
            return TRIORING_RECORDS_TRUNCATED;
        position++; /* attributes */
        if (!read_varint(data, size, &position, VARINT64_BYTES, &timestamp_delta))
            return TRIORING_RECORDS_TRUNCATED;
        int64_t timestamp;
        if (__builtin_add_overflow(base_timestamp, timestamp_delta, &timestamp))
            return TRIORING_RECORDS_BAD_TIMESTAMP;
        if (!read_varint(data, size, &position, VARINT32_BYTES, &offset_delta))
            return TRIORING_RECORDS_TRUNCATED;
        if (!(previous_delta < offset_delta && offset_delta <= last_offset_delta))
            return TRIORING_RECORDS_BAD_OFFSET_DELTA;
        previous_delta = offset_delta;
        if (!read_varint(data, size, &position, VARINT32_BYTES, &key_length))
            return TRIORING_RECORDS_TRUNCATED;
        if (key_length < -1 || key_length > (int64_t)(size - position))
            return TRIORING_RECORDS_BAD_FIELD;
        size_t key_start = position;
        if (key_length > 0)
            position += (size_t)key_length;
        if (!read_varint(data, size, &position, VARINT32_BYTES, &value_length))
            return TRIORING_RECORDS_TRUNCATED;
        if (value_length < -1 || value_length > (int64_t)(size - position))
            return TRIORING_RECORDS_BAD_FIELD;
        size_t value_start = position;
        if (value_length > 0)
            position += (size_t)value_length;
        if (!read_varint(data, size, &position, VARINT32_BYTES, &header_count))
            return TRIORING_RECORDS_TRUNCATED;
        if (header_count < 0 || header_count > headers_max)
            return TRIORING_RECORDS_BAD_HEADER_COUNT;
        size_t headers_start = position;
        for (int64_t header = 0; header < header_count; header++) {
            int64_t name_length, header_value_length;
            if (!read_varint(data, size, &position, VARINT32_BYTES, &name_length))
                return TRIORING_RECORDS_TRUNCATED;
            if (name_length < 0 || name_length > (int64_t)(size - position))
                return TRIORING_RECORDS_BAD_FIELD;
            position += (size_t)name_length;
            if (!read_varint(data, size, &position, VARINT32_BYTES, &header_value_length))
                return TRIORING_RECORDS_TRUNCATED;
            if (header_value_length < -1 || header_value_length > (int64_t)(size - position))
                return TRIORING_RECORDS_BAD_FIELD;
            if (header_value_length > 0)
                position += (size_t)header_value_length;
        }
        if (position != record_end)
            return TRIORING_RECORDS_LENGTH_MISMATCH;
        fields[0] = offset_delta;
        fields[1] = timestamp;
        fields[2] = (int64_t)key_start;
        fields[3] = key_length;
        fields[4] = (int64_t)value_start;
        fields[5] = value_length;
        fields[6] = (int64_t)headers_start;
        fields[7] = header_count;
    }
    *error_position = position;
    if (position != size)
        return TRIORING_RECORDS_TRAILING_BYTES;
    return count;
}

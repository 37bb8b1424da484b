#ifndef TRIORING_RECORDS_H
#define TRIORING_RECORDS_H

#include <stddef.h>
#include <stdint.h>

/* BEGIN CDEF (what cffi sees: see _build_records.py) */
#define TRIORING_RECORD_FIELDS 8
#define TRIORING_RECORDS_TRUNCATED -1
#define TRIORING_RECORDS_BAD_LENGTH -2
#define TRIORING_RECORDS_BAD_OFFSET_DELTA -3
#define TRIORING_RECORDS_BAD_FIELD -4
#define TRIORING_RECORDS_BAD_HEADER_COUNT -5
#define TRIORING_RECORDS_LENGTH_MISMATCH -6
#define TRIORING_RECORDS_TRAILING_BYTES -7
#define TRIORING_RECORDS_BAD_TIMESTAMP -8

/* Parse ``count`` records of a decompressed records section. For each record,
 * TRIORING_RECORD_FIELDS int64s go to ``out``: offset delta, timestamp
 * (base_timestamp plus the record's delta), key start, key length (-1: null),
 * value start, value length (-1: null), headers start, header count. Returns
 * ``count``, or one of the negative codes above with ``error_position`` at
 * the start of the record (or the byte) at fault. */
int64_t trioring_parse_records(const uint8_t *data, size_t size, int32_t count,
                               int32_t last_offset_delta, int64_t base_timestamp,
                               int64_t headers_max, int64_t *out, size_t *error_position);
/* END CDEF */

#endif

# Types of the cffi-generated extension (built by _build_records.py).
from typing import Any

ffi: Any

class _Lib:
    TRIORING_RECORD_FIELDS: int
    TRIORING_RECORDS_TRUNCATED: int
    TRIORING_RECORDS_BAD_LENGTH: int
    TRIORING_RECORDS_BAD_OFFSET_DELTA: int
    TRIORING_RECORDS_BAD_FIELD: int
    TRIORING_RECORDS_BAD_HEADER_COUNT: int
    TRIORING_RECORDS_LENGTH_MISMATCH: int
    TRIORING_RECORDS_TRAILING_BYTES: int
    TRIORING_RECORDS_BAD_TIMESTAMP: int
    def trioring_parse_records(
        self,
        data: Any,
        size: int,
        count: int,
        last_offset_delta: int,
        base_timestamp: int,
        headers_max: int,
        out: Any,
        error_position: Any,
        /,
    ) -> int: ...

lib: _Lib

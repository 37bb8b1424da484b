"""cffi (API mode) build of ``trioring.protocol._records_ffi``: the consumer's record parser.

The C lives in ``_records.c`` and ``_records.h`` beside this file; what Python
sees is the header's CDEF section. Built by setup.py (``cffi_modules``) at
install time, like the io_uring extension, and optional like it: without a
compiler, ``trioring.protocol.records`` parses records in Python (about three
times slower). For development, ``python setup.py build_ext --inplace`` puts
it beside this file.
"""

from __future__ import annotations

import os

# No stubs for cffi on the type-checking path (types-cffi is optional).
import cffi  # type: ignore[import-untyped,unused-ignore]

MODULE_NAME = "trioring.protocol._records_ffi"
SOURCE_DIRECTORY = os.path.dirname(os.path.abspath(__file__))
SOURCE_FILE = "_records.c"
HEADER_FILE = "_records.h"


def header_cdef() -> str:
    """The declarations between the BEGIN CDEF and END CDEF marks of _records.h."""
    with open(os.path.join(SOURCE_DIRECTORY, HEADER_FILE), encoding="utf-8") as header:
        text = header.read()
    begin = text.index("BEGIN CDEF")
    begin = text.index("*/", begin) + 2
    end = text.index("/* END CDEF */", begin)
    return text[begin:end]


def make_builder() -> cffi.FFI:
    builder = cffi.FFI()
    builder.cdef(header_cdef())
    builder.set_source(
        MODULE_NAME,
        f'#include "{SOURCE_FILE}"',
        include_dirs=[SOURCE_DIRECTORY],
        depends=[os.path.join(SOURCE_DIRECTORY, name) for name in (SOURCE_FILE, HEADER_FILE)],
        extra_compile_args=["-O2", "-std=gnu99"],
    )
    return builder


ffibuilder = make_builder()

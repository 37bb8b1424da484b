"""Build hook for the optional C extensions; all other metadata is in pyproject.toml.

The cffi extension ``trioring.uring._ring_ffi`` compiles against the kernel's
``<linux/io_uring.h>`` at install time; ``trioring.protocol._records_ffi``
parses fetched records for the client's consumer. Both are optional: without
a compiler, kernel headers or Linux, the build warns and the package
installs anyway, running the fallback backend and parsing records in Python.
"""

from __future__ import annotations

import sys
import warnings
from typing import Any

from setuptools import setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CCompilerError, ExecError, FileError, PlatformError

_BUILD_ERRORS = (CCompilerError, ExecError, PlatformError, OSError)


def _warn_skipped(what: str, error: BaseException) -> None:
    warnings.warn(
        f"trioring: not building {what} ({error}); the fallback I/O backend will be used",
        stacklevel=2,
    )


class OptionalBuildExt(build_ext):
    """build_ext that warns instead of failing when an extension can't compile."""

    def run(self) -> None:
        try:
            super().run()
        except _BUILD_ERRORS as error:
            _warn_skipped("C extensions", error)
            return
        # Also put the built extension beside the sources, as an in-place
        # build would: `python -m trioring` run from a checkout imports the
        # package from the checkout (the current directory comes first on
        # sys.path), which would otherwise run without io_uring.
        try:
            self.copy_extensions_to_source()
        except (FileError, *_BUILD_ERRORS) as error:
            warnings.warn(
                f"trioring: could not copy the built extension into the source tree ({error}); "
                "run the installed package from outside the checkout to use io_uring",
                stacklevel=2,
            )

    def build_extension(self, extension: Any) -> None:
        try:
            super().build_extension(extension)
        except _BUILD_ERRORS as error:
            _warn_skipped(extension.name, error)


def _cffi_arguments() -> dict[str, Any]:
    if not sys.platform.startswith("linux"):
        return {}
    try:
        import cffi  # noqa: F401, PLC0415 (only to know whether cffi_modules can work)
    except ImportError as error:
        _warn_skipped("the io_uring extension", error)
        return {}
    return {
        "cffi_modules": [
            "trioring/uring/_build_ring.py:ffibuilder",
            "trioring/protocol/_build_records.py:ffibuilder",
        ]
    }


setup(cmdclass={"build_ext": OptionalBuildExt}, **_cffi_arguments())

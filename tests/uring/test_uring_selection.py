"""open_backend: "auto" uses io_uring when a ring sets up and otherwise falls
back, logging why; "uring" raises a clear error; "fallback" is taken as told."""

from __future__ import annotations

import errno
import logging
from pathlib import Path

import pytest
from uring_support import requires_uring

from trioring.uring import (
    FallbackBackend,
    UringBackend,
    UringUnavailableError,
    _ring,
    _uring,
    open_backend,
)

LOGGER = "trioring.uring"


def refuse_setup(monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    def setup_ring_handle(entries: int, completion_entries: int) -> object:
        raise OSError(code, "refused (test)")

    monkeypatch.setattr(_ring, "setup_ring_handle", setup_ring_handle)
    # As if the extension were built, so these run (and check the set-up
    # path) where it is not.
    monkeypatch.setattr(_ring, "EXTENSION_IMPORT_ERROR", None)


@requires_uring
def test_auto_uses_uring_when_a_ring_sets_up(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, LOGGER):
        backend = open_backend("auto")
    assert isinstance(backend, UringBackend)
    assert backend.name == "uring"
    assert [r.getMessage() for r in caplog.records] == ["I/O backend: uring (io_uring ring set up)"]
    assert isinstance(open_backend("uring"), UringBackend)


@pytest.mark.parametrize(
    ("code", "why"),
    [
        (errno.ENOSYS, "the kernel has no io_uring"),
        (errno.EPERM, "seccomp"),
        (errno.EOPNOTSUPP, "Linux 5.6 or newer"),
        (errno.ENOMEM, "no memory for the ring"),
        (errno.EINVAL, "io_uring_setup failed: EINVAL"),
    ],
)
def test_auto_falls_back_and_logs_why(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, code: int, why: str
) -> None:
    refuse_setup(monkeypatch, code)
    monkeypatch.setattr(_uring, "IO_URING_DISABLED_PATH", "/nonexistent/io_uring_disabled")
    with caplog.at_level(logging.INFO, LOGGER):
        backend = open_backend("auto")
    assert type(backend) is FallbackBackend
    (record,) = caplog.records
    assert record.getMessage().startswith("I/O backend: fallback (io_uring unavailable: ")
    assert why in record.getMessage()


@pytest.mark.parametrize(("setting", "why"), [("2", "= 2"), ("1", "io_uring_group")])
def test_eperm_explained_by_the_io_uring_disabled_sysctl(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
    setting: str,
    why: str,
) -> None:
    refuse_setup(monkeypatch, errno.EPERM)
    sysctl = tmp_path / "io_uring_disabled"
    sysctl.write_text(setting + "\n")
    monkeypatch.setattr(_uring, "IO_URING_DISABLED_PATH", str(sysctl))
    with caplog.at_level(logging.INFO, LOGGER):
        assert type(open_backend("auto")) is FallbackBackend
    assert why in caplog.records[0].getMessage()


def test_auto_falls_back_when_the_extension_is_missing(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_ring, "EXTENSION_IMPORT_ERROR", ImportError("no _ring_ffi (test)"))
    with caplog.at_level(logging.INFO, LOGGER):
        assert type(open_backend("auto")) is FallbackBackend
    assert "extension is not built" in caplog.records[0].getMessage()
    with pytest.raises(UringUnavailableError):
        UringBackend(write_on_ring=True)


def test_uring_choice_raises_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    refuse_setup(monkeypatch, errno.ENOSYS)
    with pytest.raises(UringUnavailableError) as info:
        open_backend("uring")
    assert info.value.errno == errno.ENOSYS
    assert "io_backend='uring' but io_uring is unavailable" in str(info.value)
    assert isinstance(info.value, OSError)


def test_fallback_choice_and_bad_choice(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, LOGGER):
        assert type(open_backend("fallback")) is FallbackBackend
    assert caplog.records[0].getMessage() == "I/O backend: fallback (chosen by configuration)"
    with pytest.raises(ValueError, match="io_backend must be"):
        open_backend("threads")  # type: ignore[arg-type]

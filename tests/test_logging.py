"""Log lines about client input: rate-limited per kind, untrusted text escaped."""

from __future__ import annotations

import logging

import pytest

from trioring._logging import RateLimitedLogger, printable


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_printable_escapes_control_characters_and_cuts_long_text() -> None:
    assert printable("plain-client_id.1") == "plain-client_id.1"
    assert printable("evil\x1b[2J\r\nid") == "evil\\x1b[2J\\r\\nid"
    assert printable("\u202eevil") == "\\u202eevil"
    assert printable("ünïcode ok") == "ünïcode ok"
    assert printable(None) == "None"
    long = printable("x" * 1000, characters_max=10)
    assert long == "xxxxxxxxxx... (990 more characters)"
    assert "\n" not in printable("a\nb" * 500)


def test_a_kind_of_line_is_limited_per_interval_and_the_count_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    log = RateLimitedLogger(
        logging.getLogger("test.rate"), burst=3, interval_seconds=60, clock=clock
    )
    caplog.set_level(logging.WARNING, logger="test.rate")
    for peer in range(100):
        log.warning("%s: closing connection: %s", f"peer{peer}", "garbage")
    assert [r.getMessage() for r in caplog.records] == [
        f"peer{peer}: closing connection: garbage" for peer in range(3)
    ]
    # Another kind of line has a budget of its own.
    log.warning("other kind %d", 1)
    assert caplog.records[-1].getMessage() == "other kind 1"
    caplog.clear()
    clock.now += 61
    log.warning("%s: closing connection: %s", "peer100", "garbage")
    assert [r.getMessage() for r in caplog.records] == [
        "peer100: closing connection: garbage (97 more like this were not logged before this one)"
    ]


def test_explicit_keys_and_bounded_memory(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    log = RateLimitedLogger(
        logging.getLogger("test.keys"), burst=1, interval_seconds=60, keys_max=4, clock=clock
    )
    caplog.set_level(logging.WARNING, logger="test.keys")
    for partition in range(3):
        for _ in range(5):
            log.warning("%s: appends fail", f"t-{partition}", key=f"t-{partition}")
    assert len(caplog.records) == 3  # once per key
    for key in range(1000):
        log.warning("k", key=key)
    assert len(log._windows) == 4


def test_disabled_levels_cost_nothing(caplog: pytest.LogCaptureFixture) -> None:
    log = RateLimitedLogger(logging.getLogger("test.quiet"))
    caplog.set_level(logging.ERROR, logger="test.quiet")
    log.warning("never")
    assert not caplog.records and not log._windows

"""How long the client waits before trying again, after ``failures`` failures in a row."""

from __future__ import annotations

from trioring._constants import CLIENT_RETRY_BACKOFF_MAX_MS_DEFAULT, CLIENT_RETRY_BACKOFF_MS_DEFAULT

__all__ = ["backoff_s"]


def backoff_s(failures: int) -> float:
    """0 before the first failure, then 100 ms doubling to at most 1 s (Kafka's
    retry.backoff.ms and retry.backoff.max.ms defaults)."""
    if failures <= 0:
        return 0.0
    milliseconds = min(
        CLIENT_RETRY_BACKOFF_MS_DEFAULT * 2 ** min(failures - 1, 16),
        CLIENT_RETRY_BACKOFF_MAX_MS_DEFAULT,
    )
    return float(milliseconds) / 1000

"""docs/protocol.md lists every API trioring advertises, with the versions it advertises."""

from __future__ import annotations

import re
from pathlib import Path

from trioring.protocol.kafka._schemas import ADVERTISED_VERSIONS, SUPPORTED_VERSIONS, ApiKey

DOC = Path(__file__).resolve().parents[3] / "docs" / "protocol.md"


def _versions(low: int, high: int) -> str:
    return str(low) if low == high else f"{low}-{high}"


def test_every_advertised_api_has_a_row_with_its_versions() -> None:
    rows = {
        int(key): versions.strip()
        for key, versions in re.findall(
            r"^\| [A-Za-z]+ \((\d+)\) \| ([^|]+)\|", DOC.read_text(), re.M
        )
    }
    for api_key, (low, high) in ADVERTISED_VERSIONS.items():
        supported = _versions(*SUPPORTED_VERSIONS[api_key])
        expected = supported
        if (low, high) != SUPPORTED_VERSIONS[api_key]:
            expected = f"{supported} (advertised {_versions(low, high)})"
        assert rows.get(api_key) == expected, ApiKey(api_key).name
    assert set(rows) == set(ADVERTISED_VERSIONS), "a row for an API that is not advertised"

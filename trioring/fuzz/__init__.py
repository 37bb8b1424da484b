"""trioring.fuzz: a seeded, shrinking fault-injection harness (``python -m trioring fuzz``).

Hypothesis draws histories of Kafka requests and faults (``trioring.fuzz.steps``);
a player runs them against a broker (embedded over a simulated disk, a
``trioring serve`` process it SIGKILLs, or any Kafka broker at an address) and
checks every answer against a model of what the broker has promised. A
failure shrinks to a short history, printed as a script that calls
:func:`replay`. See docs/reliability.md.
"""

from trioring.fuzz._backend import FaultyBackend
from trioring.fuzz._model import ContractViolation
from trioring.fuzz._run import (
    FAULT_KINDS,
    CampaignSettings,
    HistoryFailed,
    Summary,
    history_strategy,
    replay,
    run_campaign,
)

__all__ = [
    "FAULT_KINDS",
    "CampaignSettings",
    "ContractViolation",
    "FaultyBackend",
    "HistoryFailed",
    "Summary",
    "history_strategy",
    "replay",
    "run_campaign",
]

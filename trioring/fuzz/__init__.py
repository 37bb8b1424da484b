"""trioring.fuzz: a seeded, shrinking fault-injection harness (``python -m trioring fuzz``).

Hypothesis draws histories of Kafka requests and faults (``trioring.fuzz.steps``);
a player runs them against a broker (embedded over a simulated disk, a
``trioring serve`` process it SIGKILLs, or any Kafka broker at an address) and
checks every answer against a model of what the broker has promised. A
failure shrinks to a short history, printed as a script that calls
:func:`replay`. :func:`fuzz_wire` is the wire fuzzer: mutated and random frames
of every API and version at a live broker, beside a well-behaved client. See
docs/reliability.md.
"""

from trioring.fuzz._backend import Fault, FaultyBackend
from trioring.fuzz._frames import MUTATION_KINDS, FuzzFrame, WireFrames, frame_at
from trioring.fuzz._model import ContractViolation
from trioring.fuzz._requests import client_ids, draw_client_id, draw_entity, entity
from trioring.fuzz._run import (
    FAULT_KINDS,
    CampaignSettings,
    HistoryFailed,
    Summary,
    history_strategy,
    replay,
    run_campaign,
)
from trioring.fuzz._targets import EmbeddedTarget
from trioring.fuzz._wire import WireProgress, WireSummary, fuzz_wire
from trioring.fuzz._wire_process import fuzz_wire_against_process

__all__ = [
    "FAULT_KINDS",
    "MUTATION_KINDS",
    "CampaignSettings",
    "ContractViolation",
    "EmbeddedTarget",
    "Fault",
    "FaultyBackend",
    "FuzzFrame",
    "HistoryFailed",
    "Summary",
    "WireFrames",
    "WireProgress",
    "WireSummary",
    "client_ids",
    "draw_client_id",
    "draw_entity",
    "entity",
    "frame_at",
    "fuzz_wire",
    "fuzz_wire_against_process",
    "history_strategy",
    "replay",
    "run_campaign",
]

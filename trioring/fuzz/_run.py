"""Campaigns: Hypothesis draws histories, the player plays them, failures shrink to a script.

A campaign is rounds of Hypothesis runs, each seeded from the campaign's
seed and the round's number, until the step budget is spent: the same seed
plays the same histories (as far as the broker's own timing allows). On the
first failure Hypothesis shrinks the history; the shortest history seen to
fail is reported as a script that plays it again (``replay``), whether or
not the last shrink step reproduced it (a timing-dependent failure may not).
Shrinking has a time budget: past it, the best history so far is reported.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

import attrs
import trio
from hypothesis import HealthCheck, Phase, Verbosity, given, seed, settings
from hypothesis import strategies as st
from hypothesis.errors import HypothesisException

from trioring._constants import (
    FUZZ_FAULT_KINDS,
    FUZZ_HISTORY_STEPS_MAX,
    FUZZ_STEP_SECONDS_MAX,
)
from trioring.fuzz import steps as s
from trioring.fuzz._model import ContractViolation
from trioring.fuzz._play import Player
from trioring.fuzz._targets import BootstrapTarget, EmbeddedTarget, ProcessTarget, Target

TargetKind = Literal["embedded", "process", "bootstrap"]

#: trioring.fuzz's public name for the fault kinds (kept in the constants table).
FAULT_KINDS = FUZZ_FAULT_KINDS
#: Histories per Hypothesis run (a round), by target: process histories cost seconds each.
_ROUND_EXAMPLES = {"embedded": 25, "process": 4, "bootstrap": 4}
#: How long shrinking a failure may take before the best history so far is reported.
SHRINK_SECONDS_MAX = 300.0


@attrs.frozen
class CampaignSettings:
    target: TargetKind = "embedded"
    seed: int = 0
    steps: int = 1000
    faults: frozenset[str] = frozenset(FAULT_KINDS)
    workers: int = 1
    bootstrap: str | None = None
    restart_command: str | None = None
    #: Where the broker's data (and a process broker's log) go; a temporary directory if None.
    work_dir: str | None = None
    history_steps_max: int = FUZZ_HISTORY_STEPS_MAX
    shrink_seconds_max: float = SHRINK_SECONDS_MAX


@attrs.define
class Summary:
    """What a campaign did; ``failure`` and ``script`` are set when the broker failed."""

    target: str
    seed: int
    steps: int = 0
    histories: int = 0
    faults_injected: dict[str, int] = attrs.Factory(dict)
    records_acknowledged: int = 0
    records_verified: int = 0
    records_unknown: int = 0
    #: Idempotent batches sent again after no answer or a storage error.
    idempotent_resends: int = 0
    #: Produce answers other than NONE, by error name.
    produce_errors: dict[str, int] = attrs.Factory(dict)
    elapsed_s: float = 0.0
    failure: str | None = None
    failing_steps: int | None = None
    script: str | None = None

    def add(self, player: Player, target: Target, steps: int) -> None:
        self.steps += steps
        self.histories += 1
        for kind, number in target.injected.items():
            self.faults_injected[kind] = self.faults_injected.get(kind, 0) + number
        self.records_acknowledged += player.counts["records_acknowledged"]
        self.records_verified += player.counts["records_verified"]
        self.records_unknown += player.counts["records_unknown"]
        self.idempotent_resends += player.counts["idempotent_resends"]
        for name, number in player.errors.items():
            self.produce_errors[name] = self.produce_errors.get(name, 0) + number

    def as_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


class HistoryFailed(Exception):
    """A history broke the contract (or hung, or crashed the harness's broker)."""

    def __init__(self, message: str, steps_played: int) -> None:
        super().__init__(message)
        self.steps_played = steps_played


# --- drawing histories -----------------------------------------------------------------------


def _target_faults(settings: CampaignSettings) -> frozenset[str]:
    available = {
        "embedded": EmbeddedTarget.faults,
        "process": ProcessTarget.faults,
        "bootstrap": frozenset({"net"} | ({"kill"} if settings.restart_command else set())),
    }[settings.target]
    return settings.faults & available


def step_strategy(faults: frozenset[str], *, workers: int = 1) -> st.SearchStrategy[s.Step]:
    """One step; the kinds weighted so that most histories produce, read and check."""
    # Mostly the first topic and low partitions, which exist in most histories;
    # sometimes others, which may not (the broker must say so).
    topic = st.sampled_from([0, 0, 0, 0, 1, 2])
    partition = st.sampled_from([0, 0, 0, 1, 1, 2, 3])
    position = st.one_of(st.floats(0, 1), st.sampled_from([-0.5, 0.0, 1.0, 1.5]))
    producer = st.one_of(st.none(), st.integers(0, s.PRODUCERS_MAX - 1))
    produce = st.builds(
        s.Produce,
        topic=topic,
        partition=partition,
        acks=st.sampled_from([1, -1, -1, 0]),
        records=st.integers(1, s.RECORDS_PER_PRODUCE_MAX),
        compression=st.sampled_from(["none", "none", "gzip", "snappy", "lz4", "zstd"]),
        keyed=st.booleans(),
        producer=producer,
        retry=st.booleans(),
    )
    group = st.integers(0, s.GROUPS_MAX - 1)
    weighted: list[tuple[int, st.SearchStrategy[Any]]] = [
        (10, produce),
        (4, st.builds(s.Fetch, topic=topic, partition=partition, position=position)),
        (2, st.builds(s.ListOffsets, topic=topic, partition=partition)),
        (2, st.builds(s.CreateTopic, topic=topic, partitions=st.integers(1, s.PARTITIONS_MAX))),
        (1, st.builds(s.DeleteTopic, topic=topic)),
        (1, st.builds(s.AddPartitions, topic=topic, total=st.integers(1, s.PARTITIONS_MAX))),
        (1, st.builds(s.DeleteRecords, topic=topic, partition=partition, position=position)),
        (
            2,
            st.builds(s.Commit, group=group, topic=topic, partition=partition, position=position),
        ),
        (1, st.builds(s.FetchCommitted, group=group)),
        (
            2,
            st.builds(
                s.JoinGroup, group=group, topic=topic, member=st.integers(0, s.MEMBERS_MAX - 1)
            ),
        ),
        (1, st.builds(s.LeaveGroup, group=group, member=st.integers(0, s.MEMBERS_MAX - 1))),
    ]
    if "kill" in faults:
        weighted.append((1, st.just(s.Restart())))
        worker = st.none() if workers == 1 else st.one_of(st.none(), st.integers(0, workers - 1))
        # Where the disk cannot fail (a broker process), SIGKILL is the fault that
        # matters most: drawn three times as often.
        kill_weight = 1 if faults & {"power-loss", "enospc", "eio"} else 3
        weighted.append((kill_weight, st.builds(s.Kill, worker=worker)))
    if "power-loss" in faults:
        weighted.append((2, st.builds(s.PowerLoss, seed=st.integers(0, 2**32 - 1))))
    disk = [
        kind
        for kind, wanted in (
            ("enospc", "enospc"),
            ("eio-write", "eio"),
            ("eio-read", "eio"),
            ("eio-sync", "eio"),
            ("slow", "slow"),
        )
        if wanted in faults
    ]
    if disk:
        weighted.append(
            (2, st.builds(s.DiskFault, kind=st.sampled_from(disk), count=st.integers(1, 20)))
        )
        weighted.append((2, st.just(s.ClearFaults())))
    if "net" in faults:
        weighted.append(
            (
                1,
                st.builds(
                    s.NetFault,
                    kind=st.sampled_from(["reset-mid-request", "reset-after-send", "stop-reading"]),
                    topic=topic,
                ),
            )
        )
    # Hypothesis has no weighted one_of (and one_of folds repeated strategies
    # into one; integers favour their bounds): sample from the choices repeated
    # by weight. It shrinks towards the first, a produce.
    choices = [strategy for weight, strategy in weighted for _ in range(weight)]
    return st.sampled_from(choices).flatmap(lambda strategy: strategy)


def history_strategy(
    faults: frozenset[str], *, workers: int = 1, steps_max: int = FUZZ_HISTORY_STEPS_MAX
) -> st.SearchStrategy[list[s.Step]]:
    """A history: a first topic (so most steps have something to work on), then steps."""
    first = st.builds(s.CreateTopic, topic=st.just(0), partitions=st.sampled_from([2, 1, 3, 4]))
    step = step_strategy(faults, workers=workers)
    # A drawn length, not st.lists' short average: long histories find more, and
    # shrinking still shortens them (the length shrinks first).
    rest = st.integers(1, steps_max - 1).flatmap(
        lambda length: st.lists(step, min_size=length, max_size=length)
    )
    return st.tuples(first, rest).map(lambda pair: [pair[0], *pair[1]])


# --- playing one history ---------------------------------------------------------------------


async def play_history(
    history: Sequence[s.Step],
    target: Target,
    *,
    on_step: Callable[[int, s.Step], None] | None = None,
) -> Player:
    """Play ``history`` on ``target``, then check everything; HistoryFailed if it broke."""
    player = Player(target)
    played = 0
    try:
        for played, step in enumerate(history, 1):
            if on_step is not None:
                on_step(played, step)
            started = trio.current_time()
            with trio.move_on_after(FUZZ_STEP_SECONDS_MAX):
                await player.play(step)
            # Measured, not only cancelled: a step stuck in shielded work (a sync
            # that takes minutes) is not cancellable, and is a hang all the same.
            if trio.current_time() - started >= FUZZ_STEP_SECONDS_MAX:
                raise ContractViolation(
                    f"step {played} ({step!r}) took over {FUZZ_STEP_SECONDS_MAX:g} s: a hang"
                )
        with trio.fail_after(FUZZ_STEP_SECONDS_MAX * 2):
            await player.finish()
    except ContractViolation as violation:
        raise HistoryFailed(f"step {played}: {violation}", played) from None
    except trio.TooSlowError:
        raise HistoryFailed("the final check took too long: a hang", played) from None
    except Exception as error:
        raise HistoryFailed(
            f"step {played}: the harness met an unexpected error: "
            f"{''.join(traceback.format_exception(error)).strip()}",
            played,
        ) from None
    finally:
        await player.aclose()
    return player


async def _run_one(
    history: Sequence[s.Step], settings: CampaignSettings, work_dir: str, summary: Summary | None
) -> None:
    async def played(target: Target) -> None:
        player = await play_history(history, target)
        if summary is not None:
            summary.add(player, target, len(history))

    data_dir = tempfile.mkdtemp(prefix="history-", dir=work_dir)
    try:
        await _play_on_target(settings, data_dir, played)
    finally:
        # Passing or not: a failure's script plays it again, and a shrink tries
        # thousands of histories.
        _remove_tree(data_dir)


async def _play_on_target(
    settings: CampaignSettings, data_dir: str, played: Callable[[Target], Awaitable[None]]
) -> None:
    if settings.target == "embedded":
        async with EmbeddedTarget.open(data_dir) as embedded:
            await played(embedded)
    elif settings.target == "process":
        async with ProcessTarget.open(data_dir, workers=settings.workers) as process:
            await played(process)
    else:
        assert settings.bootstrap is not None
        async with BootstrapTarget.open(settings.bootstrap, settings.restart_command) as remote:
            try:
                await played(remote)
            finally:
                with trio.CancelScope(shield=True), trio.move_on_after(30):
                    await remote.delete_topics()


def _run_sync(
    history: Sequence[s.Step], settings: CampaignSettings, work_dir: str, summary: Summary | None
) -> None:
    """One history in its own ``trio.run``; whatever fails comes out as HistoryFailed."""
    try:
        trio.run(_run_one, history, settings, work_dir, summary)
    except HistoryFailed:
        raise
    except BaseExceptionGroup as group:
        failures = [e for e in _leaves(group) if isinstance(e, HistoryFailed)]
        if failures:
            raise failures[0] from None
        raise HistoryFailed(_describe(group), len(history)) from None
    except Exception as error:
        raise HistoryFailed(_describe(error), len(history)) from None


def _leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error]


def _describe(error: BaseException) -> str:
    return "the broker or the harness failed: " + "".join(traceback.format_exception(error)).strip()


def _remove_tree(path: str) -> None:
    import shutil  # noqa: PLC0415 - only here

    shutil.rmtree(path, ignore_errors=True)


# --- campaigns -------------------------------------------------------------------------------


def run_campaign(
    settings: CampaignSettings, *, progress: Callable[[Summary], None] | None = None
) -> Summary:
    """Play histories until ``settings.steps`` steps are played or one fails."""
    summary = Summary(target=settings.target, seed=settings.seed)
    faults = _target_faults(settings)
    strategy = history_strategy(
        faults, workers=settings.workers, steps_max=settings.history_steps_max
    )
    started = time.monotonic()
    owned_dir = None
    if settings.work_dir is None:
        owned_dir = tempfile.TemporaryDirectory(
            prefix="trioring-fuzz-", dir=_scratch_parent(settings)
        )
        work_dir = owned_dir.name
    else:
        work_dir = settings.work_dir
        os.makedirs(work_dir, exist_ok=True)
    shortest: list[tuple[list[s.Step], str]] = []
    first_failure_at: list[float] = []

    def play(history: list[s.Step]) -> None:
        failing = bool(shortest)
        if failing and time.monotonic() - first_failure_at[0] > settings.shrink_seconds_max:
            return  # out of shrinking time: the best so far stands
        try:
            _run_sync(history, settings, work_dir, None if failing else summary)
        except HistoryFailed as failure:
            cut = history[: failure.steps_played]
            if not shortest:
                first_failure_at.append(time.monotonic())
            if not shortest or len(cut) < len(shortest[0][0]):
                shortest[:] = [(cut, str(failure))]
            raise
        if progress is not None and not failing:
            summary.elapsed_s = time.monotonic() - started
            progress(summary)

    round_number = 0
    try:
        while summary.steps < settings.steps and not shortest:
            examples = _ROUND_EXAMPLES[settings.target]
            remaining = settings.steps - summary.steps
            examples = max(
                1, min(examples, math.ceil(remaining / (settings.history_steps_max / 2)))
            )
            test = settings_for(examples)(given(strategy)(play))
            test = seed(settings.seed * 1_000_003 + round_number)(test)
            # The failure is in ``shortest``, whatever Hypothesis makes of it.
            with contextlib.suppress(HistoryFailed, HypothesisException):
                test()
            round_number += 1
    finally:
        if owned_dir is not None and not shortest:
            owned_dir.cleanup()
    summary.elapsed_s = time.monotonic() - started
    if shortest:
        history, message = shortest[0]
        summary.failure = message
        summary.failing_steps = len(history)
        summary.script = render_script(history, settings, message)
    return summary


def _scratch_parent(settings: CampaignSettings) -> str | None:
    """Where the embedded target's brokers live: memory (/dev/shm) where there is one.

    Its disk is simulated (what survives a power loss is decided in
    FaultyBackend, not by the device), so a RAM file system changes nothing
    checked and makes a campaign about 1.4x faster (files are made and removed
    by the thousand). Other targets use the usual temporary directory.
    """
    shared = "/dev/shm"
    if settings.target == "embedded" and os.path.isdir(shared) and os.access(shared, os.W_OK):
        return shared
    return None


def settings_for(examples: int) -> Any:
    return settings(
        # Its notes (a slow shrink, say) would land in the JSON summary on stdout.
        verbosity=Verbosity.quiet,
        max_examples=examples,
        database=None,
        deadline=None,
        derandomize=False,
        phases=[Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
        print_blob=False,
    )


# --- scripts ---------------------------------------------------------------------------------


def render_script(history: Sequence[s.Step], settings: CampaignSettings, message: str) -> str:
    """A Python script that plays ``history`` again against the same kind of target."""
    steps = "\n".join(f"        {step!r}," for step in history)
    arguments = [f"target={settings.target!r}"]
    if settings.workers != 1:
        arguments.append(f"workers={settings.workers}")
    if settings.bootstrap is not None:
        arguments.append(f"bootstrap={settings.bootstrap!r}")
    if settings.restart_command is not None:
        arguments.append(f"restart_command={settings.restart_command!r}")
    quoted = message.replace('"""', "'''").replace("\\", "\\\\")
    return (
        f'"""A history that broke the broker\'s contract (trioring fuzz --seed {settings.seed}).\n'
        f"\n{quoted}\n"
        '"""\n\n'
        "from trioring.fuzz import replay\n"
        "from trioring.fuzz.steps import *  # noqa: F403\n\n"
        "replay(\n"
        "    [\n"
        f"{steps}\n"
        "    ],\n"
        f"    {', '.join(arguments)},\n"
        ")\n"
    )


def replay(
    history: Sequence[s.Step],
    *,
    target: TargetKind = "embedded",
    workers: int = 1,
    bootstrap: str | None = None,
    restart_command: str | None = None,
) -> None:
    """Play one history (a failure's script calls this); raises HistoryFailed if it fails."""
    settings = CampaignSettings(
        target=target, workers=workers, bootstrap=bootstrap, restart_command=restart_command
    )
    with tempfile.TemporaryDirectory(prefix="trioring-fuzz-") as work_dir:
        _run_sync(list(history), settings, work_dir, None)

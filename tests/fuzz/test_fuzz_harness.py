"""trioring.fuzz: the harness finds broken promises, and trioring keeps them under faults.

The harness itself is tested first (a harness that cannot fail proves
nothing): a disk that lies about fdatasync, a broker that duplicates, and
model bookkeeping each make it fail. Then bounded campaigns, the ones CI
runs on every push: the embedded target with every fault kind, the process
target with SIGKILLs of the broker and of a worker, and the bootstrap target
pointed at a broker process as a user points it at Kafka.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings

from trioring.fuzz import (
    CampaignSettings,
    ContractViolation,
    FaultyBackend,
    HistoryFailed,
    _kafka,
    _run,
    history_strategy,
    replay,
    run_campaign,
)
from trioring.fuzz._model import PartitionModel
from trioring.fuzz._run import play_history, render_script
from trioring.fuzz._targets import EmbeddedTarget
from trioring.fuzz.steps import (
    ClearFaults,
    Commit,
    CreateTopic,
    DeleteRecords,
    DeleteTopic,
    DiskFault,
    Fetch,
    FetchCommitted,
    JoinGroup,
    Kill,
    LeaveGroup,
    PowerLoss,
    Produce,
    Restart,
)
from trioring.testing import BrokerProcess

ALL_EMBEDDED_FAULTS = frozenset({"kill", "power-loss", "enospc", "eio", "slow"})


class SwallowingDisk(FaultyBackend):
    """A broker that retries a failed fdatasync and trusts the page cache: its data
    dies with the power although it was acknowledged after the retry "worked"."""

    async def fdatasync(self, fd: int) -> None:
        try:
            await super().fdatasync(fd)
        except OSError:
            await trio.lowlevel.checkpoint()


class LyingDisk(FaultyBackend):
    """fdatasync of the topics' files says yes and does nothing: acks=all data dies
    with the power (the cluster metadata is synced, so the topics themselves survive)."""

    async def fdatasync(self, fd: int) -> None:
        if "fuzz-t" in self._path_of_fd[fd]:
            await trio.lowlevel.checkpoint()
            return
        await super().fdatasync(fd)


async def play_embedded(history: list[Any], tmp_path: Path, backend: type = FaultyBackend) -> None:
    async with EmbeddedTarget.open(str(tmp_path), backend_factory=backend) as target:
        await play_history(history, target)


# --- the harness can fail ---------------------------------------------------------------------


async def test_a_disk_that_lies_about_fdatasync_loses_acknowledged_records(tmp_path: Path) -> None:
    history = [
        CreateTopic(topic=0, partitions=1),
        Produce(topic=0, partition=0, acks=-1, records=5),
        PowerLoss(seed=1),
    ]
    with pytest.raises(HistoryFailed, match="acknowledged"):
        await play_embedded(history, tmp_path / "lying", LyingDisk)
    # The same history on an honest disk keeps every acknowledged record.
    await play_embedded(history, tmp_path / "honest")


async def test_trusting_the_page_cache_after_a_failed_fdatasync_is_caught(tmp_path: Path) -> None:
    history = [
        CreateTopic(topic=0, partitions=1),
        DiskFault(kind="eio-sync", count=1),
        Produce(topic=0, partition=0, acks=-1, records=3),
        Produce(topic=0, partition=0, acks=-1, records=3),
        PowerLoss(seed=1),
    ]
    with pytest.raises(HistoryFailed, match="durable"):
        await play_embedded(history, tmp_path / "swallowing", SwallowingDisk)
    await play_embedded(history, tmp_path / "honest")


async def test_acks_1_records_may_die_with_the_power_but_not_with_the_process(
    tmp_path: Path,
) -> None:
    # No fdatasync at all: acks=1 data lives in the page cache.
    power = [
        CreateTopic(topic=0, partitions=1),
        Produce(topic=0, partition=0, acks=1, records=5),
        PowerLoss(seed=7),
        Produce(topic=0, partition=0, acks=1, records=2),
    ]
    await play_embedded(power, tmp_path / "power", LyingDisk)
    kill = [*power[:2], Kill(), Fetch(topic=0, partition=0, position=0.0)]
    await play_embedded(kill, tmp_path / "kill", LyingDisk)


def test_the_model_catches_duplicates_gaps_and_going_back() -> None:
    partition = PartitionModel()
    partition.acknowledge(0, [b"a", b"b"], durable=False, what="produce")
    # Offset 1 handed out again.
    with pytest.raises(ContractViolation, match="no fault allowed a loss"):
        partition.acknowledge(1, [b"c"], durable=False, what="produce")
    seen: dict[bytes, int] = {}
    partition.check_read(0, b"a", seen, "read")
    with pytest.raises(ContractViolation, match="never produced"):
        partition.check_read(2, b"stranger", seen, "read")
    partition.maybe.add(b"a")
    with pytest.raises(ContractViolation, match="is at offsets"):
        partition.check_read(2, b"a", seen, "read")
    with pytest.raises(ContractViolation, match="no fault allowed a loss"):
        partition.check_offsets(0, 1, "list offsets")
    partition.deletable_to = 1
    partition.raise_log_start(1)
    with pytest.raises(ContractViolation, match="log start went back"):
        partition.check_offsets(0, 2, "list offsets")
    with pytest.raises(ContractViolation, match="the most DeleteRecords asked for"):
        partition.check_offsets(2, 2, "list offsets")


def test_the_model_lets_a_power_loss_take_what_was_not_durable_and_nothing_else() -> None:
    lossy = PartitionModel()
    lossy.acknowledge(0, [b"a", b"b"], durable=True, what="produce")
    lossy.acknowledge(2, [b"c"], durable=False, what="produce")
    lossy.allow_loss(lossy.durable_end)
    lossy.check_offsets(0, 2, "after the power loss")
    assert 2 not in lossy.acknowledged
    with pytest.raises(ContractViolation, match="durable"):
        lossy.check_offsets(0, 1, "after the power loss")
    # Acknowledged durable after the fault: the floor rises with it.
    later = PartitionModel()
    later.allow_loss(0)
    later.acknowledge(0, [b"x", b"y"], durable=True, what="produce")
    with pytest.raises(ContractViolation, match="durable"):
        later.check_offsets(0, 0, "after the power loss")
    # A value that replaces a lost one must be one of this partition's unknowns.
    replaced = PartitionModel()
    replaced.acknowledge(0, [b"p"], durable=False, what="produce")
    replaced.allow_loss(0)
    with pytest.raises(ContractViolation, match="never produced"):
        replaced.check_read(0, b"from-elsewhere", {}, "read")


async def test_a_hang_is_a_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_run, "FUZZ_STEP_SECONDS_MAX", 0.5)
    history = [
        CreateTopic(topic=0, partitions=1),
        DiskFault(kind="slow", count=1000),
        Produce(topic=0, partition=0, acks=-1, records=1),
        Produce(topic=0, partition=0, acks=-1, records=1),
    ]

    class SlowDisk(FaultyBackend):
        def inject(self, fault: Any) -> None:
            # Twice the step limit: the step is measured, and a sleep never ends
            # early. Not longer: the broker's shielded syncs on the way down
            # wait it out too, five of them (5 s each took 25 s).
            fault.delay_s = 1.0
            super().inject(fault)

    with pytest.raises(HistoryFailed, match="hang"):
        await play_embedded(history, tmp_path, SlowDisk)


# --- histories, seeds and scripts -------------------------------------------------------------


def test_a_seed_draws_the_same_histories(monkeypatch: pytest.MonkeyPatch) -> None:
    drawn: list[list[list[Any]]] = [[], []]
    run = [0]

    def record(history: Any, _settings: Any, _work_dir: str, summary: Any) -> None:
        drawn[run[0]].append(list(history))
        summary.steps += len(history)

    monkeypatch.setattr(_run, "_run_sync", record)
    for index in range(2):
        run[0] = index
        run_campaign(CampaignSettings(seed=1234, steps=200, faults=ALL_EMBEDDED_FAULTS))
    assert drawn[0] == drawn[1]
    assert sum(len(history) for history in drawn[0]) >= 200


@settings(max_examples=50, suppress_health_check=list(HealthCheck))
@given(history_strategy(frozenset({"kill", "net", "power-loss", "enospc", "eio", "slow"})))
def test_every_history_renders_as_a_script_that_names_its_steps(history: list[Any]) -> None:
    script = render_script(history, CampaignSettings(seed=5), "step 3: something broke")
    compile(script, "<script>", "exec")
    assert script.count("\n        ") == len(history)
    assert isinstance(history[0], CreateTopic)


def test_a_script_plays_its_history_again(tmp_path: Path) -> None:
    history = [
        CreateTopic(topic=0, partitions=2),
        Produce(
            topic=0, partition=1, acks=-1, records=3, compression="zstd", producer=0, retry=True
        ),
        PowerLoss(seed=3),
        Fetch(topic=0, partition=1, position=0.0),
    ]
    script = tmp_path / "history.py"
    script.write_text(render_script(history, CampaignSettings(seed=9), "a message"))
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr


# --- regressions the harness found (each its shrunk history) -----------------------------------


@pytest.mark.parametrize(
    "history",
    [
        # A topic deleted and created again: its new files are new files (the
        # simulated disk once took an inode number used again for the old file).
        [
            CreateTopic(topic=0, partitions=2),
            Produce(topic=0, partition=0, acks=1, records=1),
            Fetch(topic=0, partition=0, position=0.0),
            DeleteTopic(topic=0),
            CreateTopic(topic=0, partitions=3),
        ],
        # A disk that refuses the recovery point at start-up: the broker may
        # refuse to start (then the harness mends the disk), never hang or crash.
        [CreateTopic(topic=0, partitions=1), DiskFault(kind="enospc", count=1), Restart()],
        [
            CreateTopic(topic=0, partitions=1),
            Restart(),
            DiskFault(kind="enospc", count=1),
            Restart(),
        ],
        # The cluster metadata log stayed offline after a failed fdatasync, so
        # InitProducerId (and every topic change) failed until a restart.
        [
            CreateTopic(topic=0, partitions=1),
            DiskFault(kind="eio-sync", count=13),
            DeleteTopic(topic=0),
            Produce(topic=0, partition=0, acks=0, records=3, keyed=True, producer=1, retry=True),
        ],
        # A fetch meeting a read error answered UNKNOWN_SERVER_ERROR.
        [
            CreateTopic(topic=0, partitions=1),
            DiskFault(kind="eio-read", count=1),
            Produce(topic=0, partition=0, acks=1, records=1),
            Fetch(topic=0, partition=0, position=0.0),
        ],
        # DeleteRecords past acks=0 records that a power loss then took: the log
        # started at its recovered end, so its start went back from 6 to 0.
        [
            CreateTopic(topic=0, partitions=2),
            Produce(topic=0, partition=1, acks=0, records=6),
            DeleteRecords(topic=0, partition=1, position=1.5),
            PowerLoss(seed=0),
        ],
        # A clean stop on a full disk is a crash as far as the page cache goes.
        [
            CreateTopic(topic=0, partitions=1),
            Produce(topic=0, partition=0, acks=1, records=4),
            DiskFault(kind="enospc", count=50),
            Restart(),
            ClearFaults(),
        ],
    ],
)
def test_regression(history: list[Any]) -> None:
    replay(history)


# --- campaigns (CI runs these on every push) --------------------------------------------------


def test_embedded_campaign_with_every_fault_kind(tmp_path: Path) -> None:
    summary = run_campaign(
        CampaignSettings(
            seed=int(os.environ.get("TRIORING_FUZZ_SEED", "20261207")),
            steps=1500,
            faults=ALL_EMBEDDED_FAULTS,
            work_dir=str(tmp_path),
            shrink_seconds_max=60,
        )
    )
    assert summary.failure is None, summary.script
    assert summary.steps >= 1500
    for kind in ("kill", "power-loss", "enospc", "eio-write", "eio-sync"):
        assert summary.faults_injected.get(kind, 0) > 0, (kind, summary.faults_injected)
    assert summary.records_acknowledged > 500
    assert summary.records_verified >= summary.records_acknowledged


@pytest.mark.slow
def test_process_campaign_with_kills_of_the_broker_and_of_a_worker(tmp_path: Path) -> None:
    summary = run_campaign(
        CampaignSettings(
            target="process",
            # Seed 69 draws two histories, the second of 28 steps with three
            # SIGKILLs of the broker and three of a worker (seed 7's 60 steps
            # drew twelve short histories, a broker start each, and no worker
            # kill): more faults in a third of the time. A Hypothesis release
            # may draw other histories for a seed (as for the embedded campaign
            # above): if only the kill counts fail, choose a seed that draws both.
            seed=69,
            steps=30,
            workers=2,
            faults=frozenset({"kill", "net"}),
            work_dir=str(tmp_path),
            history_steps_max=30,
            shrink_seconds_max=30,
        )
    )
    assert summary.failure is None, summary.script
    assert summary.faults_injected.get("kill", 0) >= 1, summary.faults_injected
    assert summary.faults_injected.get("kill-worker", 0) >= 1, summary.faults_injected
    assert summary.records_acknowledged > 0


@pytest.mark.slow
def test_the_bootstrap_target_plays_against_any_broker(tmp_path: Path) -> None:
    with BrokerProcess(tmp_path / "data") as broker:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "trioring",
                "fuzz",
                "--bootstrap",
                broker.bootstrap,
                "--steps",
                "60",
                "--seed",
                "3",
                "--faults",
                "net",
                "--shrink-seconds",
                "30",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        summary = json.loads(result.stdout)
        assert summary["target"] == "bootstrap"
        assert summary["steps"] >= 60
        # Its topics are gone again.
        listed = subprocess.run(
            [sys.executable, "-m", "trioring", "topics", "list", "-b", broker.bootstrap],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert "trioring-fuzz-" not in listed.stdout


def test_the_command_line_says_what_it_did_and_refuses_mistakes() -> None:
    ran = subprocess.run(
        [sys.executable, "-m", "trioring", "fuzz", "--steps", "100", "--seed", "11"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    summary = json.loads(ran.stdout)
    assert summary["seed"] == 11 and summary["failure"] is None
    assert "seed 11" in ran.stderr
    wire = subprocess.run(
        [sys.executable, "-m", "trioring", "fuzz", "--wire-frames", "3000", "--seed", "11"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert wire.returncode == 0, wire.stderr
    report = json.loads(wire.stdout)
    assert report["frames_sent"] == 3000 and report["failures_total"] == 0
    for arguments, message in [
        (
            ["--faults", "lightning"],
            "unknown fault kind lightning; known: kill, power-loss, enospc, eio, slow, net",
        ),
        (["--restart-command", "true"], "--restart-command needs --bootstrap"),
        (["--steps", "0"], "--steps must be at least 1 and --history-steps at least 2"),
    ]:
        refused = subprocess.run(
            [sys.executable, "-m", "trioring", "fuzz", *arguments],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert refused.returncode == 2
        assert refused.stderr.strip().splitlines() == [f"trioring: error: {message}"]


REBALANCES = [
    CreateTopic(topic=0, partitions=2),
    JoinGroup(group=0, topic=0, member=0),
    JoinGroup(group=0, topic=0, member=1),
    Commit(group=0, topic=0, partition=0, position=0.5),
    JoinGroup(group=0, topic=0, member=0),
    LeaveGroup(group=0, member=1),
    Commit(group=0, topic=0, partition=1, position=0.0),
    JoinGroup(group=0, topic=0, member=1),
    Restart(),
    JoinGroup(group=0, topic=0, member=0),
    FetchCommitted(group=0),
    LeaveGroup(group=0, member=0),
    LeaveGroup(group=0, member=1),
]


@pytest.mark.parametrize("target", ["embedded", "process"])
def test_rebalances_between_two_members(target: str) -> None:
    replay(REBALANCES, target=target, **({"workers": 2} if target == "process" else {}))


async def test_a_member_given_another_members_assignment_is_caught(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = _kafka.sync_group

    async def swapped(*args: Any, **kwargs: Any) -> tuple[int, bytes]:
        code, assignment = await real(*args, **kwargs)
        return code, assignment[::-1]

    monkeypatch.setattr(_kafka, "sync_group", swapped)
    with pytest.raises(HistoryFailed, match="another member's assignment"):
        await play_embedded(REBALANCES[:3], tmp_path)

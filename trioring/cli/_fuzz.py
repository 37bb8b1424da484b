"""``trioring fuzz``: a seeded fault-injection campaign against a broker (docs/reliability.md).

Histories of Kafka requests and faults, drawn by Hypothesis from ``--seed``,
are played against the target and checked against a model of what the broker
promised. The run prints progress on stderr and a JSON summary on stdout; a
failure also prints the seed and the shrunk history as a Python script that
plays it again, and exits 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shlex
import shutil
import sys
import time
from functools import partial
from typing import Any

import trio

from trioring._constants import FUZZ_FAULT_KINDS, FUZZ_HISTORY_STEPS_MAX
from trioring.cli._common import EXIT_FAILURE, UsageError, bootstrap_of, check_reachable

#: How often the progress line is written (stderr).
_PROGRESS_SECONDS = 2.0


def add_parser(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    fuzz = commands.add_parser(
        "fuzz",
        parents=parents,
        help="play seeded histories of requests and faults against a broker and check it",
        description="A property-based fault-injection campaign: Hypothesis draws histories "
        "(produce at every acks, idempotent retries, fetch, list offsets, delete records, "
        "topics, commits, group joins) mixed with faults, plays them against the target, "
        "and checks every answer against a model of the Kafka contract. A failure is shrunk "
        "to a short history and printed as a runnable Python script. Exit 0: no failure; "
        "1: the broker broke its contract (or hung); 2: a usage mistake.",
    )
    fuzz.add_argument(
        "--target",
        choices=["embedded", "process"],
        help="embedded: trioring in this process over a simulated disk (fast; power loss, "
        "ENOSPC, EIO, slow I/O, crashes); process: 'trioring serve' processes, killed for "
        "real (default: %(default)s; --bootstrap instead plays against any broker)",
    )
    fuzz.add_argument(
        "--bootstrap",
        metavar="HOST:PORT",
        help="play against this Kafka-protocol broker (trioring, Kafka, Redpanda); its "
        "topics are named trioring-fuzz-* and deleted at the end",
    )
    fuzz.add_argument(
        "--restart-command",
        metavar="COMMAND",
        help="with --bootstrap: a command that crashes and restarts that broker (enables "
        "the kill fault)",
    )
    fuzz.add_argument("--workers", type=int, help="process target: worker processes (default: 1)")
    fuzz.add_argument("--seed", type=int, help="default: random (printed, to run it again)")
    fuzz.add_argument(
        "--steps", type=int, default=1000, help="steps to play in all (default: %(default)s)"
    )
    fuzz.add_argument(
        "--faults",
        default=",".join(FUZZ_FAULT_KINDS),
        help="comma-separated fault kinds: "
        f"{', '.join(FUZZ_FAULT_KINDS)}, or 'none' (default: all; each target takes those it "
        "can inject)",
    )
    fuzz.add_argument(
        "--history-steps",
        type=int,
        default=FUZZ_HISTORY_STEPS_MAX,
        help="longest history (default: %(default)s)",
    )
    fuzz.add_argument(
        "--wire-frames",
        type=int,
        default=0,
        help="instead of histories: send this many mutated and random Kafka frames "
        "(every API and version) to the broker, beside a well-behaved client",
    )
    fuzz.add_argument("--script", metavar="FILE", help="write a failure's script here too")
    fuzz.add_argument(
        "--work-dir",
        metavar="DIR",
        help="where the brokers' data and logs go (default: a temporary directory, "
        "kept after a failure)",
    )
    fuzz.add_argument(
        "--shrink-seconds",
        type=float,
        default=300.0,
        help="longest time spent shrinking a failure (default: %(default)s)",
    )
    fuzz.set_defaults(run=None)


def _check_options(options: argparse.Namespace) -> None:
    """Every mistake in the flags is one line and exit 2, before anything runs."""
    if options.steps < 1 or options.history_steps < 2:
        raise UsageError("--steps must be at least 1 and --history-steps at least 2")
    if options.bootstrap and options.target:
        raise UsageError("--bootstrap plays against that broker: leave out --target")
    if options.workers is not None and (options.target or "embedded") == "embedded":
        raise UsageError("--workers is for --target process")
    options.workers = 1 if options.workers is None else options.workers
    if options.workers < 1:
        raise UsageError("--workers must be at least 1")
    if options.restart_command and not options.bootstrap:
        raise UsageError("--restart-command needs --bootstrap")
    if options.restart_command:
        try:
            command = shlex.split(options.restart_command)
        except ValueError as error:
            raise UsageError(f"--restart-command: {error}") from None
        if not command or shutil.which(command[0]) is None:
            raise UsageError(f"--restart-command: no program {command[:1]} on PATH")
    if options.script:
        directory = os.path.dirname(os.path.abspath(options.script))
        if not os.path.isdir(directory) or not os.access(directory, os.W_OK):
            raise UsageError(f"--script: cannot write in {directory}")
    if options.bootstrap:
        bootstrap_of(options)
        reachable = argparse.Namespace(bootstrap=options.bootstrap, connect_timeout=10.0)
        trio.run(check_reachable, reachable)


def _faults(text: str) -> frozenset[str]:
    if text.strip() in ("", "none"):
        return frozenset()
    kinds = frozenset(part.strip() for part in text.split(",") if part.strip())
    unknown = sorted(kinds - set(FUZZ_FAULT_KINDS))
    if unknown:
        raise UsageError(
            f"unknown fault kind {', '.join(unknown)}; known: {', '.join(FUZZ_FAULT_KINDS)}"
        )
    return kinds


def fuzz_main(options: argparse.Namespace) -> int:
    """Run the campaign; 0 if the broker kept its contract, 1 if not."""
    from trioring.fuzz._run import (  # noqa: PLC0415 - hypothesis is imported only for fuzz
        CampaignSettings,
        Summary,
        TargetKind,
        run_campaign,
    )

    _check_options(options)
    seed = options.seed if options.seed is not None else random.SystemRandom().getrandbits(32)
    target: TargetKind = "bootstrap" if options.bootstrap else options.target or "embedded"
    faults = _faults(options.faults)
    if options.wire_frames:
        return _wire_main(options, seed)
    settings = CampaignSettings(
        target=target,
        seed=seed,
        steps=options.steps,
        faults=faults,
        workers=options.workers,
        bootstrap=options.bootstrap,
        restart_command=options.restart_command,
        work_dir=options.work_dir,
        history_steps_max=options.history_steps,
        shrink_seconds_max=options.shrink_seconds,
    )
    _quiet_broker_logs(options.log_level)
    print(
        f"trioring fuzz: seed {seed}, {target} target, {options.steps} steps, "
        f"faults: {', '.join(sorted(faults)) or 'none'}",
        file=sys.stderr,
    )
    last = [time.monotonic()]

    def progress(summary: Summary) -> None:
        now = time.monotonic()
        if now - last[0] < _PROGRESS_SECONDS:
            return
        last[0] = now
        faults_text = ", ".join(f"{k} {v}" for k, v in sorted(summary.faults_injected.items()))
        print(
            f"  {summary.steps}/{options.steps} steps, {summary.histories} histories, "
            f"{summary.records_acknowledged} records acknowledged, "
            f"{summary.records_verified} verified; faults: {faults_text or 'none'}",
            file=sys.stderr,
            flush=True,
        )

    summary = run_campaign(settings, progress=progress)
    report = summary.as_json()
    report.pop("script")
    print(json.dumps(report, sort_keys=True))
    if summary.failure is None:
        return 0
    print(
        f"trioring fuzz: FAILED (seed {seed}, after {summary.steps} steps): {summary.failure}",
        file=sys.stderr,
    )
    assert summary.script is not None
    written = False
    if options.script:
        try:
            with open(options.script, "w", encoding="utf-8") as file:
                file.write(summary.script)
            written = True
            print(f"the shrunk history, as a script: {options.script}", file=sys.stderr)
        except OSError as error:
            print(f"trioring fuzz: could not write {options.script}: {error}", file=sys.stderr)
    if not written:
        print("the shrunk history, as a script:\n", file=sys.stderr)
        print(summary.script, file=sys.stderr)
    return EXIT_FAILURE


def _quiet_broker_logs(level: str) -> None:
    """The embedded brokers' own complaints about the faults are expected; keep them
    out of the progress unless asked for (``--log-level INFO`` or lower)."""
    if logging.getLevelName(level) > logging.INFO:
        logging.getLogger("trioring").setLevel(logging.CRITICAL)
        logging.getLogger("trioring.fuzz").setLevel(logging.WARNING)


def _wire_main(options: argparse.Namespace, seed: int) -> int:
    """The wire fuzzer: mutated and random frames at a broker, beside a well-behaved client."""
    from trioring.fuzz._wire import WireProgress, fuzz_wire  # noqa: PLC0415
    from trioring.fuzz._wire_process import fuzz_wire_against_process  # noqa: PLC0415

    if options.wire_frames < 0:
        raise UsageError("--wire-frames must be at least 1")
    where = options.bootstrap or f"a 'trioring serve' process ({options.workers} workers)"
    print(
        f"trioring fuzz: wire fuzzer, seed {seed}, {options.wire_frames} frames at {where}",
        file=sys.stderr,
    )
    last = [time.monotonic()]

    def progress(state: WireProgress) -> None:
        now = time.monotonic()
        if now - last[0] < _PROGRESS_SECONDS:
            return
        last[0] = now
        rss = "" if state.rss_bytes is None else f", broker RSS {state.rss_bytes / 2**20:.0f} MiB"
        print(
            f"  {state.frames_sent}/{state.frames_requested} frames, {state.responses} answers, "
            f"{state.connections_opened} connections, {state.records_acknowledged} records "
            f"acknowledged, {state.failures} failures{rss}",
            file=sys.stderr,
            flush=True,
        )

    if options.bootstrap:
        summary = trio.run(
            partial(
                fuzz_wire,
                options.bootstrap,
                frames=options.wire_frames,
                seed=seed,
                progress=progress,
            )
        )
    else:
        summary = fuzz_wire_against_process(
            frames=options.wire_frames,
            seed=seed,
            workers=options.workers,
            directory=options.work_dir,
            progress=progress,
        )
    print(json.dumps(summary.to_json(), sort_keys=True))
    if summary.ok:
        return 0
    print(
        f"trioring fuzz: FAILED (wire fuzzer, seed {seed}): {len(summary.failures)} failures; "
        "each names its frame (trioring.fuzz.frame_at(seed, index) rebuilds it)",
        file=sys.stderr,
    )
    for failure in summary.failures[:20]:
        print(f"  {failure}", file=sys.stderr)
    return EXIT_FAILURE


__all__ = ["add_parser", "fuzz_main"]

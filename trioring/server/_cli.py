"""``python -m trioring serve``: run a broker with a Kafka listener until signalled.

SIGINT / SIGTERM: stop accepting, answer long-polls at once, let in-flight
requests finish (up to ``shutdown_grace_seconds``), flush every partition,
exit 0. A second signal exits at once.

Settings come from the defaults, then the ``--config`` TOML file, then the
flags. The TOML tables are ``[broker]``, ``[log]``, ``[groups]`` and
``[server]``, their keys the fields of BrokerConfig, LogConfig, GroupConfig
and ServerConfig (docs/configuration.md); an unknown table or key, or a value
of the wrong type, is refused with its name.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import signal
import sys
import tomllib
import types
import typing
from functools import partial
from typing import TYPE_CHECKING, Any

import attrs
import trio

import trioring
from trioring._constants import PORT_MAX
from trioring._heap import keep_free_heap_for_reuse
from trioring.config import BrokerConfig, GroupConfig, ServerConfig
from trioring.errors import ConfigurationError, InvalidArgumentError
from trioring.server._server import KafkaServer, serve_kafka
from trioring.storage.log import LogConfig
from trioring.supervisor import Supervisor, serve_cluster

if TYPE_CHECKING:
    from trioring.testing._faults import FaultInjector

logger = logging.getLogger("trioring.server")

DATA_DIR_DEFAULT = "./trioring-data"
LISTEN_DEFAULT = "127.0.0.1:9092"

#: TOML table -> the settings class its keys belong to.
TABLES: dict[str, type] = {
    "broker": BrokerConfig,
    "log": LogConfig,
    "groups": GroupConfig,
    "server": ServerConfig,
}
#: BrokerConfig fields that are not plain settings (tables of their own, or code).
_NOT_KEYS = {"broker": {"log", "groups", "clock"}}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", help="TOML file with [broker], [log], [groups] and [server] tables"
    )
    parser.add_argument("--data-dir", help=f"default: {DATA_DIR_DEFAULT}")
    parser.add_argument("--listen", help=f"HOST:PORT to listen on (default: {LISTEN_DEFAULT})")
    parser.add_argument("--advertised", help="HOST:PORT clients are told to connect to")
    parser.add_argument("--flush-interval-ms", type=int, help="flush acks=1 data this often")
    parser.add_argument("--retention-ms", type=int, help="-1: keep forever")
    parser.add_argument("--retention-bytes", type=int, help="-1: unlimited")
    parser.add_argument("--segment-bytes", type=int)
    parser.add_argument("--io-backend", choices=["auto", "uring", "fallback"])
    parser.add_argument(
        "--workers",
        type=int,
        help=f"worker processes, one per core (default: the {default_workers()} CPUs this "
        "process may run on); worker i listens on the --listen port + i; 1 serves in this "
        "process",
    )
    parser.add_argument(
        "--pin-cpus", action="store_true", help="pin worker i to the i-th CPU it may run on"
    )
    parser.add_argument(
        "--fault-control",
        metavar="HOST:PORT",
        help="for tests only: inject faults into requests on command from this loopback "
        "address (port 0: a free one, announced on stdout; worker i at PORT + i); "
        "see docs/testing.md",
    )


def default_workers() -> int:
    """One worker per CPU this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _host_port(value: str, flag: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigurationError(f"{flag} must look like HOST:PORT, not {value!r}")
    return host, int(port)


def _check_worker_ports(what: str, port: int, workers: int) -> None:
    """ConfigurationError unless the port of every worker is one: worker i uses
    ``port`` + i (0: each a free one)."""
    if not 0 <= port <= PORT_MAX:
        raise ConfigurationError(f"{what}: the port must be 0-{PORT_MAX}, not {port}")
    last = port + workers - 1
    if port and last > PORT_MAX:
        raise ConfigurationError(
            f"{what}: worker i uses port {port} + i, and worker {workers - 1}'s {last} is "
            f"past {PORT_MAX}: choose a port up to {PORT_MAX - workers + 1}, or 0 for free ones"
        )


def setting_keys(table: str) -> dict[str, Any]:
    """The keys a TOML table takes, with the type each value must have."""
    settings_class = TABLES[table]
    hints = typing.get_type_hints(settings_class)
    skipped = _NOT_KEYS.get(table, set())
    return {
        field.name: hints[field.name]
        for field in attrs.fields(settings_class)
        if field.name not in skipped and field.init
    }


def _type_name(expected: Any) -> str:
    if typing.get_origin(expected) is typing.Literal:
        return " or ".join(repr(value) for value in typing.get_args(expected))
    if isinstance(expected, type):
        return {"int": "an integer", "float": "a number", "str": "a string", "bool": "true/false"}[
            expected.__name__
        ]
    return str(expected)


def _matches(value: object, expected: Any) -> bool:
    origin = typing.get_origin(expected)
    if origin is typing.Union or isinstance(expected, types.UnionType):
        return any(_matches(value, option) for option in typing.get_args(expected))
    if origin is typing.Literal:
        return value in typing.get_args(expected)
    if expected is type(None):
        return value is None
    if expected is bool:
        return isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if expected is str:
        return isinstance(value, str)
    raise AssertionError(f"no TOML check for {expected!r}")


def _check_table(source: str, table: str, values: object) -> dict[str, Any]:
    if not isinstance(values, dict):
        raise ConfigurationError(f"{source}: [{table}] must be a table")
    keys = setting_keys(table)
    checked: dict[str, Any] = {}
    for key, given in values.items():
        if key not in keys:
            raise ConfigurationError(
                f"{source}: unknown key {key!r} in [{table}]; known keys: {', '.join(sorted(keys))}"
            )
        expected = keys[key]
        value = given
        # TOML has no null: -1 means "unlimited" where a setting takes None.
        if value == -1 and _matches(None, expected) and not isinstance(value, bool):
            value = None
        if not _matches(value, expected):
            raise ConfigurationError(
                f"{source}: [{table}] {key} must be {_type_name(expected)}, not {given!r}"
            )
        checked[key] = value
    return checked


def read_config_file(path: str) -> dict[str, dict[str, Any]]:
    """The tables of a TOML settings file, every key checked (ConfigurationError if wrong)."""
    try:
        with open(path, "rb") as handle:
            document = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigurationError(f"config file {path} does not exist") from None
    except OSError as error:
        raise ConfigurationError(f"cannot read config file {path}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigurationError(f"config file {path} is not valid TOML: {error}") from None
    unknown = set(document) - set(TABLES)
    if unknown:
        raise ConfigurationError(
            f"{path}: unknown table(s) {', '.join(f'[{name}]' for name in sorted(unknown))}; "
            f"known tables: {', '.join(f'[{name}]' for name in TABLES)}"
        )
    return {table: _check_table(path, table, values) for table, values in document.items()}


def build_configs(options: argparse.Namespace) -> tuple[BrokerConfig, ServerConfig]:
    """Defaults, then the TOML file, then command-line flags."""
    file = read_config_file(options.config) if options.config else {}
    log_settings = file.get("log", {})
    broker_settings = file.get("broker", {})
    group_settings = file.get("groups", {})
    server_settings = file.get("server", {})
    for flag in ("retention_ms", "retention_bytes"):
        value = getattr(options, flag)
        if value is not None:
            log_settings[flag] = None if value < 0 else value
    if options.segment_bytes is not None:
        log_settings["segment_bytes"] = options.segment_bytes
    broker_settings.setdefault("data_dir", DATA_DIR_DEFAULT)
    if options.data_dir:
        broker_settings["data_dir"] = options.data_dir
    if options.flush_interval_ms is not None:
        broker_settings["flush_interval_ms"] = options.flush_interval_ms
    if options.io_backend:
        broker_settings["io_backend"] = options.io_backend
    host, port = _host_port(options.listen or LISTEN_DEFAULT, "--listen")
    server_settings.setdefault("host", host)
    server_settings.setdefault("port", port)
    if options.listen:
        server_settings["host"], server_settings["port"] = host, port
    if options.advertised:
        advertised_host, advertised_port = _host_port(options.advertised, "--advertised")
        server_settings["advertised_host"] = advertised_host
        server_settings["advertised_port"] = advertised_port
    try:
        broker_config = BrokerConfig(
            log=LogConfig(**log_settings), groups=GroupConfig(**group_settings), **broker_settings
        )
        server_config = ServerConfig(**server_settings)
    except InvalidArgumentError as error:
        raise ConfigurationError(f"invalid setting: {error}") from None
    return broker_config, server_config


async def _serve(
    broker: trioring.Broker, config: ServerConfig, nursery: trio.Nursery
) -> KafkaServer:
    try:
        server: KafkaServer = await nursery.start(serve_kafka, broker, config)
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            advice = "stop what uses it, or choose another --listen"
        else:
            advice = "check --listen"
        raise ConfigurationError(
            f"cannot listen on {config.host}:{config.port}: {error.strerror}; {advice}"
        ) from None
    return server


async def run_server(
    broker_config: BrokerConfig,
    server_config: ServerConfig,
    *,
    fault_control: tuple[str, int] | None = None,
) -> int:
    injector = None
    if fault_control is not None:
        # Test-only code, imported only when asked for.
        from trioring.testing._faults import FaultInjector  # noqa: PLC0415

        injector = FaultInjector()
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with (
            trioring.open_broker(
                broker_config, middleware=() if injector is None else (injector,)
            ) as broker,
            trio.open_nursery() as nursery,
        ):
            server = await _serve(broker, server_config, nursery)
            control_port = None
            if injector is not None and fault_control is not None:
                control_port = await _serve_fault_control(injector, fault_control, nursery)
            reason = f" ({broker.io_backend_reason})" if broker.io_backend_reason else ""
            # BrokerProcess (trioring.testing) reads the address off this line.
            print(
                f"trioring listening on {server_config.host}:{server.port} (Kafka protocol), "
                f"I/O backend {broker.io_backend}{reason}, data in {broker_config.data_dir}",
                flush=True,
            )
            if fault_control is not None:
                print(
                    f"trioring fault control on {fault_control[0]}:{control_port} (testing only)",
                    flush=True,
                )
            async for received in signals:
                logger.warning("%s: shutting down", signal.Signals(received).name)
                nursery.start_soon(_exit_on_second_signal, signals)
                await server.drain()
                with trio.move_on_after(server_config.shutdown_grace_seconds):
                    await server.wait_closed()
                nursery.cancel_scope.cancel()
                break
    # Leaving open_broker flushed and closed every partition.
    print("trioring stopped; all data flushed", flush=True)
    return 0


async def _serve_fault_control(
    injector: FaultInjector, address: tuple[str, int], nursery: trio.Nursery
) -> int:
    from trioring.testing._control import serve_fault_control  # noqa: PLC0415

    host, port = address
    try:
        control_port: int = await nursery.start(serve_fault_control, injector, host, port)
    except OSError as error:
        raise ConfigurationError(
            f"cannot serve fault control on {host}:{port}: {error.strerror}; check --fault-control"
        ) from None
    return control_port


async def _exit_on_second_signal(signals: Any) -> None:
    async for received in signals:
        print(f"{signal.Signals(received).name} again: exiting now", file=sys.stderr, flush=True)
        os._exit(1)


async def run_cluster(
    broker_config: BrokerConfig,
    server_config: ServerConfig,
    *,
    workers: int,
    pin_cpus: bool,
    log_level: str,
    fault_control: tuple[str, int] | None = None,
) -> int:
    """The supervisor and its worker processes, until SIGINT or SIGTERM drains them."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            started: list[Supervisor] = []

            async def stop_on_signal() -> None:
                # Watched from before the start: a worker that fails again and again
                # as it starts keeps the supervisor from being ready, and a signal
                # then must still stop it (it was held until the start finished).
                async for received in signals:
                    logger.warning("%s: shutting down", signal.Signals(received).name)
                    nursery.start_soon(_exit_on_second_signal, signals)
                    if started:
                        await started[0].stop()
                    # Before the start finished, cancelling it drains what runs
                    # (Supervisor.run stops its workers as it is cancelled).
                    nursery.cancel_scope.cancel()
                    return

            nursery.start_soon(stop_on_signal)
            supervisor: Supervisor = await nursery.start(
                partial(
                    serve_cluster,
                    broker_config,
                    server_config,
                    workers=workers,
                    pin_cpus=pin_cpus,
                    log_level=log_level,
                    fault_control=fault_control,
                )
            )
            first = supervisor.workers[0]
            reason = f" ({first.backend_reason})" if first.backend_reason else ""
            addresses = ", ".join(
                f"{state.index} at {server_config.host}:{state.port} ({state.backend})"
                for state in supervisor.workers
            )
            print(
                f"trioring listening on {server_config.host}:{first.port} (Kafka protocol), "
                f"I/O backend {first.backend}{reason}, data in {broker_config.data_dir}; "
                f"{workers} workers: {addresses}",
                flush=True,
            )
            if fault_control is not None:
                controls = ", ".join(
                    f"{state.index} at {fault_control[0]}:{state.fault_control_port}"
                    for state in supervisor.workers
                )
                print(f"trioring fault control on {controls} (testing only)", flush=True)
            started.append(supervisor)
    print("trioring stopped; all data flushed", flush=True)
    return 0


def serve_main(options: argparse.Namespace) -> int:
    broker_config, server_config = build_configs(options)
    broker_config = attrs.evolve(broker_config, data_dir=os.path.abspath(broker_config.data_dir))
    workers = default_workers() if options.workers is None else options.workers
    if workers < 1:
        raise ConfigurationError(f"--workers must be at least 1, not {workers}")
    _check_worker_ports(
        "--listen" if options.listen else "[server] port", server_config.port, workers
    )
    if server_config.advertised_port is not None:
        _check_worker_ports(
            "--advertised" if options.advertised else "[server] advertised_port",
            server_config.advertised_port,
            workers,
        )
    fault_control = None
    if options.fault_control:
        from trioring.testing._control import check_loopback  # noqa: PLC0415 - test-only code

        fault_control = _host_port(options.fault_control, "--fault-control")
        _check_worker_ports("--fault-control", fault_control[1], workers)
        try:
            check_loopback(fault_control[0])
        except InvalidArgumentError as error:
            raise ConfigurationError(f"--fault-control: {error}") from None
    keep_free_heap_for_reuse()
    if workers == 1:
        return trio.run(
            partial(run_server, broker_config, server_config, fault_control=fault_control)
        )
    return trio.run(
        partial(
            run_cluster,
            broker_config,
            server_config,
            workers=workers,
            pin_cpus=options.pin_cpus,
            log_level=options.log_level,
            fault_control=fault_control,
        )
    )


__all__ = [
    "add_arguments",
    "build_configs",
    "default_workers",
    "read_config_file",
    "run_cluster",
    "run_server",
    "serve_main",
]

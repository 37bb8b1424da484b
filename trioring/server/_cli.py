"""``python -m trioring serve``: run a broker with a Kafka listener until signalled.

SIGINT / SIGTERM: stop accepting, let in-flight requests finish (up to
``shutdown_grace_seconds``), flush every partition, exit 0. A second signal
exits at once.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tomllib
from typing import Any

import attrs
import trio

import trioring
from trioring.config import BrokerConfig
from trioring.errors import InvalidArgumentError
from trioring.server._config import ServerConfig
from trioring.server._server import KafkaServer, serve_kafka
from trioring.storage.log import LogConfig

logger = logging.getLogger("trioring.server")

DATA_DIR_DEFAULT = "./trioring-data"
LISTEN_DEFAULT = "127.0.0.1:9092"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="TOML file with [broker], [log] and [server] tables")
    parser.add_argument("--data-dir", help=f"default: {DATA_DIR_DEFAULT}")
    parser.add_argument("--listen", help=f"HOST:PORT to listen on (default: {LISTEN_DEFAULT})")
    parser.add_argument("--advertised", help="HOST:PORT clients are told to connect to")
    parser.add_argument("--flush-interval-ms", type=int, help="flush acks=1 data this often")
    parser.add_argument("--retention-ms", type=int, help="-1: keep forever")
    parser.add_argument("--retention-bytes", type=int, help="-1: unlimited")
    parser.add_argument("--segment-bytes", type=int)
    parser.add_argument("--io-backend", choices=["auto", "uring", "fallback"])


def _host_port(value: str, flag: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise InvalidArgumentError(f"{flag} must look like HOST:PORT, not {value!r}")
    return host, int(port)


def build_configs(options: argparse.Namespace) -> tuple[BrokerConfig, ServerConfig]:
    """Defaults, then the TOML file, then command-line flags."""
    file: dict[str, Any] = {}
    if options.config:
        with open(options.config, "rb") as handle:
            file = tomllib.load(handle)
    unknown = set(file) - {"broker", "log", "server"}
    if unknown:
        raise InvalidArgumentError(f"unknown tables in {options.config}: {sorted(unknown)}")
    log_settings = dict(file.get("log", {}))
    broker_settings = dict(file.get("broker", {}))
    server_settings = dict(file.get("server", {}))
    if options.retention_ms is not None:
        log_settings["retention_ms"] = options.retention_ms
    if options.retention_bytes is not None:
        log_settings["retention_bytes"] = options.retention_bytes
    if options.segment_bytes is not None:
        log_settings["segment_bytes"] = options.segment_bytes
    for key in ("retention_ms", "retention_bytes"):
        if log_settings.get(key, 0) is not None and log_settings.get(key, 0) < 0:
            log_settings[key] = None
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
        log_config = LogConfig(**log_settings)
        broker_config = BrokerConfig(log=log_config, **broker_settings)
        server_config = ServerConfig(**server_settings)
    except TypeError as error:
        raise InvalidArgumentError(f"invalid setting: {error}") from None
    return broker_config, server_config


async def run_server(broker_config: BrokerConfig, server_config: ServerConfig) -> int:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trioring.open_broker(broker_config) as broker, trio.open_nursery() as nursery:
            server: KafkaServer = await nursery.start(serve_kafka, broker, server_config)
            reason = f" ({broker.io_backend_reason})" if broker.io_backend_reason else ""
            print(
                f"trioring listening on {server_config.host}:{server.port} (Kafka protocol), "
                f"I/O backend {broker.io_backend}{reason}, data in {broker_config.data_dir}",
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


async def _exit_on_second_signal(signals: Any) -> None:
    async for received in signals:
        print(f"{signal.Signals(received).name} again: exiting now", file=sys.stderr, flush=True)
        os._exit(1)


def serve_main(options: argparse.Namespace) -> int:
    broker_config, server_config = build_configs(options)
    broker_config = attrs.evolve(broker_config, data_dir=os.path.abspath(broker_config.data_dir))
    return trio.run(run_server, broker_config, server_config)


__all__ = ["add_arguments", "build_configs", "run_server", "serve_main"]

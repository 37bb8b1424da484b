"""The Kafka wire-protocol listener."""

from trioring.config import ServerConfig
from trioring.server._server import KafkaServer, advertised_versions, serve_kafka

__all__ = ["KafkaServer", "ServerConfig", "advertised_versions", "serve_kafka"]

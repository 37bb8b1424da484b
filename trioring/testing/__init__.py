"""Test helpers: a real trioring broker, for test suites that would otherwise need Kafka.

- :class:`BrokerProcess` runs ``python -m trioring serve`` as a child process
  bound to 127.0.0.1 on a free port, so tests can kill and restart it like a
  real server::

      from trioring.testing import BrokerProcess

      with BrokerProcess(tmp_path, faults=True) as broker:
          producer = confluent_kafka.Producer({"bootstrap.servers": broker.bootstrap})
          broker.faults.fail("Produce", "NOT_LEADER_OR_FOLLOWER", count=2)
          ...
          broker.restart()          # same data, same port
          broker.kill()             # SIGKILL, for crash tests

  With ``workers=N`` the broker is a supervisor and N worker processes, one
  Kafka node each (``addresses``); ``kill_worker(i)`` SIGKILLs one worker,
  which the supervisor restarts.
- :func:`open_embedded_broker` gives an :class:`EmbeddedBroker`: a broker in
  the caller's Trio run, with a Kafka listener and a :class:`FaultInjector`.
- :class:`FaultInjector` is the middleware that fails, delays or drops the
  requests a test chooses; :class:`FaultControl` drives the ones inside a
  broker process.

The pytest plugin (``_trioring_pytestplugin``, loaded by pytest when trioring
is installed) turns these into fixtures: ``trioring_broker``,
``trioring_server``, ``trioring_server_session``, ``trioring_topic_name``.
See docs/testing.md.
"""

from trioring.testing._control import FaultControl, FaultControlError
from trioring.testing._embedded import EmbeddedBroker, open_embedded_broker, unique_topic_name
from trioring.testing._faults import API_NAMES, Fault, FaultInjector, Injection
from trioring.testing._process import BrokerProcess

__all__ = [
    "API_NAMES",
    "BrokerProcess",
    "EmbeddedBroker",
    "Fault",
    "FaultControl",
    "FaultControlError",
    "FaultInjector",
    "Injection",
    "open_embedded_broker",
    "unique_topic_name",
]

"""Test helpers: a real trioring broker, for test suites that would otherwise need Kafka.

``BrokerProcess`` runs ``python -m trioring serve`` as a child process bound to
127.0.0.1 on a free port, so tests can kill and restart it like a real
server::

    from trioring.testing import BrokerProcess

    with BrokerProcess(tmp_path) as broker:
        producer = confluent_kafka.Producer({"bootstrap.servers": broker.bootstrap})
        ...
        broker.restart()          # same data, same port
        broker.kill()             # SIGKILL, for crash tests

With ``workers=N`` the broker is a supervisor and N worker processes, one
Kafka node each (``addresses``); ``kill_worker(i)`` SIGKILLs one worker,
which the supervisor restarts.
"""

from trioring.testing._process import BrokerProcess

__all__ = ["BrokerProcess"]

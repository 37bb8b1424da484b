"""A Trio app that embeds the broker, serves it to Kafka clients, and consumes in-process.

No broker to start first::

    python examples/embedded_with_listener.py

The broker lives in this program (``trioring.open_broker``, data in
``--data-dir``, a new temporary directory by default), and ``serve_kafka``
serves it on ``--port`` (0: any free port; the address is printed) from the
app's own nursery. A Kafka client writes to the port, here the Trio client,
sending ``--count`` records over the wire; any other works too while the app
runs (``echo hello | kcat -b ADDRESS -t events -P``). The app's own consumer
reads the topic in-process (``open_consumer(broker)``): the same handlers as
the listener's, without a socket. It serves for ``--seconds``, or until
Ctrl-C.
"""

from __future__ import annotations

import argparse
import math
import signal
import tempfile

import trio

import trioring
from trioring.client import open_consumer, open_producer
from trioring.server import ServerConfig, serve_kafka


async def consume_in_process(broker: trioring.Broker, topic: str) -> None:
    partitions = [(topic, p) for p in range(broker.topics()[topic].partitions)]
    async with open_consumer(broker, auto_offset_reset="earliest") as consumer:
        consumer.assign(partitions)
        async for record in consumer:
            where = f"partition {record.partition} offset {record.offset}"
            print(f"consumed in-process: {where}: {record.value!r}", flush=True)


async def main(args: argparse.Namespace) -> None:
    data_dir = args.data_dir or tempfile.mkdtemp(prefix="trioring-")
    async with trioring.open_broker(data_dir) as broker:
        if args.topic not in broker.topics():  # a second run on the same data finds it
            await broker.create_topic(args.topic, partitions=3)
        async with trio.open_nursery() as nursery:
            # start() returns once the listener is bound, with the port it got.
            server = await nursery.start(
                serve_kafka, broker, ServerConfig(host=args.host, port=args.port)
            )
            address = f"{args.host}:{server.port}"
            print(f"serving Kafka clients on {address}; data in {data_dir}", flush=True)
            nursery.start_soon(consume_in_process, broker, args.topic)

            # Any Kafka client: this one goes through the port like the others.
            async with open_producer(address) as producer:
                for number in range(args.count):
                    where = await producer.send(args.topic, b"hello %d" % number)
                    print(
                        f"produced over the wire: partition {where.partition} "
                        f"offset {where.offset}",
                        flush=True,
                    )

            # Serve until the time is up or Ctrl-C, whichever comes first.
            with (
                trio.move_on_after(math.inf if args.seconds is None else args.seconds),
                trio.open_signal_receiver(signal.SIGINT) as signals,
            ):
                async for _ in signals:
                    break
            # Stops the listener and the consumer; then open_broker flushes and closes.
            nursery.cancel_scope.cancel()
    print("stopped")


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--data-dir", help="the broker's data (default: a new temporary one)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: any free)")
    parser.add_argument("--topic", default="events")
    parser.add_argument("--count", type=int, default=5, help="records to produce over the wire")
    parser.add_argument("--seconds", type=float, help="serve this long (default: until Ctrl-C)")
    return parser.parse_args()


if __name__ == "__main__":
    trio.run(main, parse_arguments())

"""The main job on an embedded default (run through ./scripts/demo).

Starts a local Kafka broker, creates a ``demo`` topic fed by a live ticker of
JSON price events, and serves the proxy at ws://127.0.0.1:9080/kafka until
Ctrl-C. Then it stops everything it started.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import signal
import sys
import time
from typing import TextIO

import trio

from kafka_ws_trio import ProxyConfig, ServerConfig, serve_proxy, tune_gc
from kafka_ws_trio._cli import listen_failure
from kafka_ws_trio.testing import KafkaBroker, start_broker, stop_broker

TOPIC = "demo"


class _Unbreakable(io.TextIOBase):
    """A text stream that keeps working when its reader is gone (``./scripts/demo | tee log``, then Ctrl-C).

    Ctrl-C reaches ``tee`` too; the demo's next write would raise
    BrokenPipeError, and a write on the way to stopping the broker must not
    keep it from being stopped. After the first broken write, output goes
    nowhere.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream: TextIO | None = stream

    def write(self, text: str) -> int:
        if self._stream is not None:
            try:
                self._stream.write(text)
            except (BrokenPipeError, ValueError):  # ValueError: written to after being closed
                self._stream = None
        return len(text)

    def flush(self) -> None:
        if self._stream is not None:
            try:
                self._stream.flush()
            except (BrokenPipeError, ValueError):
                self._stream = None


SYMBOLS = ("ACME", "GLOBEX", "INITECH", "UMBRELLA")


def ensure_topic(broker: KafkaBroker) -> None:
    from kafka.errors import TopicAlreadyExistsError

    from kafka_ws_trio.testing import create_topic

    try:
        create_topic(broker, TOPIC, partitions=1)
    except TopicAlreadyExistsError:
        pass


async def ticker(broker: KafkaBroker, interval: float) -> None:
    """Produce one JSON event every ``interval`` seconds, keyed by symbol."""
    from kafka import KafkaProducer

    producer = await trio.to_thread.run_sync(lambda: KafkaProducer(**broker.client_config(), linger_ms=0))
    prices = {symbol: 100.0 for symbol in SYMBOLS}

    def publish(value: bytes, key: bytes) -> None:
        producer.send(TOPIC, value, key=key).get(timeout=10)

    try:
        while True:
            symbol = random.choice(SYMBOLS)
            prices[symbol] = round(prices[symbol] * random.uniform(0.99, 1.01), 2)
            event = {"symbol": symbol, "price": prices[symbol], "ts": int(time.time() * 1000)}
            await trio.to_thread.run_sync(publish, json.dumps(event).encode(), symbol.encode())
            await trio.sleep(interval)
    finally:
        with trio.move_on_after(5, shield=True):
            await trio.to_thread.run_sync(lambda: producer.close(timeout=5))


async def run(args: argparse.Namespace) -> None:
    print("Starting a local Kafka broker (the first run downloads it from Maven Central) ...", file=sys.stderr)
    broker = await trio.to_thread.run_sync(
        lambda: start_broker(args.kafka_version, name=args.kafka_name, port_base=args.kafka_port_base)
    )
    try:
        await trio.to_thread.run_sync(ensure_topic, broker)
        config = ProxyConfig.single_route([broker.bootstrap], server=ServerConfig(host=args.host, port=args.port))
        # The receiver stays installed until everything has stopped, so a second
        # Ctrl-C during shutdown is absorbed instead of interrupting the cleanup.
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(ticker, broker, args.interval)
                server = await nursery.start(serve_proxy, config)
                url = f"{server.url}/kafka"
                print(
                    f"""
  kafka-ws-trio is serving Kafka {broker.version} over WebSocket at  {url}
  Topic '{TOPIC}' (partition 0) gets a JSON price event every {args.interval}s.

  Watch it live, in another terminal:
      .venv/bin/kafka-ws-trio tail {url} --topic {TOPIC} --from latest --follow
  Write a record of your own (that tail shows it), in a third:
      echo hello | .venv/bin/kafka-ws-trio produce {url} --topic {TOPIC}
  Ask for offsets:
      .venv/bin/kafka-ws-trio offsets {url} --topic {TOPIC} --at earliest
  Any APISIX PubSub client works unchanged against {url}.
  Kafka itself: {broker.bootstrap} (PLAINTEXT).

  Press Ctrl-C to stop.
""",
                    flush=True,
                )
                async for _ in signals:
                    print("Stopping ...", file=sys.stderr)
                    nursery.cancel_scope.cancel()
                    break
    finally:
        await trio.to_thread.run_sync(stop_broker, broker)


def main() -> int:
    parser = argparse.ArgumentParser(description="Run kafka-ws-trio on a local broker with a live demo topic.")
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=9080, help="port to serve on (default 9080)")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between demo events (default 0.5)")
    parser.add_argument("--kafka-version", default="4", help="Kafka release line: 4 or 3.9 (default 4)")
    parser.add_argument("--kafka-name", help="name of the broker instance (default: one per release line)")
    parser.add_argument("--kafka-port-base", type=int, help="first of the broker's five ports (default 25092 for 4)")
    args = parser.parse_args()
    sys.stdout = _Unbreakable(sys.stdout)  # type: ignore[assignment]
    sys.stderr = _Unbreakable(sys.stderr)  # type: ignore[assignment]
    tune_gc()
    try:
        trio.run(run, args)
    except KeyboardInterrupt:
        pass  # a second Ctrl-C during shutdown; the cleanup already ran
    except Exception as exc:  # errors leave Trio wrapped in exception groups: say it in one line
        problem = listen_failure(exc, args.host, args.port)
        if problem is None:
            raise
        print(f"demo: error: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

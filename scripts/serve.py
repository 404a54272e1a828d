"""Serve the proxy from a plain ``trio.run`` script.

    python scripts/serve.py examples/proxy.toml

The same thing as ``kafka-ws-trio serve --config FILE``, written the way a Trio
application embeds the proxy: ``serve_proxy`` runs in a nursery next to the
application's own tasks (here, one that logs statistics). Ctrl-C stops it.
"""

from __future__ import annotations

import logging
import signal
import sys

import trio

from kafka_ws_trio import ProxyServer, load_config, serve_proxy, tune_gc


async def report(server: ProxyServer) -> None:
    while True:
        await trio.sleep(30)
        stats = server.statistics()
        logging.info("%d sessions open, %d commands so far", stats.sessions_open, stats.commands_total)


async def main(config_path: str) -> None:
    config = load_config(config_path)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            server = await nursery.start(serve_proxy, config)
            nursery.start_soon(report, server)
            print(f"listening on {server.url}", flush=True)
            async for _ in signals:
                # Cancelling serve_proxy is its graceful shutdown: sessions get 1001.
                nursery.cancel_scope.cancel()
                break


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    tune_gc()  # this process is all proxy: see tune_gc's docstring
    try:
        trio.run(main, sys.argv[1])
    except KeyboardInterrupt:
        pass  # a second Ctrl-C while shutting down

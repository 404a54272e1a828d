"""SIGHUP makes `kafka-ws-trio serve --config FILE` read the file again (issue 14), as a user runs it: a process.

A good file's routes are served at once (sessions on deleted or changed routes
are closed with 1001, the others go on); a bad one is refused with the
key-path error in the log, and the running config stays.
"""

from __future__ import annotations

import functools
import signal
import subprocess
import sys
from pathlib import Path
from typing import Final

import pytest
import trio
from _support import listening_url, serves, stop_process
from trio_websocket import ConnectionClosed, open_websocket_url

from kafka_ws_trio._proto import encode_ping_request
from kafka_ws_trio.testing import KafkaBroker

COMMAND: Final = str(Path(sys.executable).parent / "kafka-ws-trio")
START_TIMEOUT: Final = 30


def routes(broker: KafkaBroker, *uris: str, server: str = "") -> str:
    text = f"[server]\nport = 0\ngrace_period = 5\n{server}\n"
    for uri in uris:
        text += f'[[routes]]\nuri = "{uri}"\nnodes = ["{broker.bootstrap}"]\n'
    return text


async def log_holds(log: Path, text: str, seconds: float = 15) -> bool:
    """Whether the server's log comes to hold ``text`` within ``seconds``."""
    with trio.move_on_after(seconds):
        # Polling on purpose: the child writes its log to a file; nothing signals a new line.
        while text not in await trio.Path(log).read_text():  # noqa: ASYNC110
            await trio.sleep(0.05)
        return True
    return False


@pytest.mark.timeout(90)
async def test_sighup_serves_the_file_s_new_routes_and_a_bad_file_changes_nothing(
    kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    config = tmp_path / "proxy.toml"
    config.write_text(routes(kafka_broker, "/a", "/b"))
    log = tmp_path / "serve.log"
    with log.open("wb") as stderr:
        run = functools.partial(
            trio.run_process, [COMMAND, "serve", "--config", str(config)], stdout=subprocess.PIPE, stderr=stderr
        )
        async with trio.open_nursery() as nursery:
            process: trio.Process = await nursery.start(functools.partial(run, check=False))
            try:
                base = await listening_url(process, START_TIMEOUT)
                async with open_websocket_url(base + "/a") as on_a, open_websocket_url(base + "/b") as on_b:
                    config.write_text(routes(kafka_broker, "/a", "/c", server="max_sessions = 5"))
                    process.send_signal(signal.SIGHUP)
                    with trio.fail_after(15), pytest.raises(ConnectionClosed) as closed:
                        await on_b.get_message()
                    assert (closed.value.reason.code, closed.value.reason.reason) == (1001, "route deleted")
                    assert await serves(base + "/c")
                    assert not await serves(base + "/b")  # 404 now
                    await on_a.send_message(encode_ping_request(2, b"still"))
                    await on_a.get_message()  # /a did not change: its session goes on
                    assert await log_holds(log, "[server] settings take a restart: max_sessions")

                    config.write_text(routes(kafka_broker, "/a") + 'nodes_typo = ["x"]\n')
                    process.send_signal(signal.SIGHUP)
                    assert await log_holds(log, 'routes[0].nodes_typo: unknown key; did you mean "nodes"?')
                    assert await log_holds(log, "config not reloaded; the running one stays")
                    assert await serves(base + "/c")  # the running routes stay
                    await on_a.send_message(encode_ping_request(3, b"still"))
                    await on_a.get_message()
            finally:
                await stop_process(process, 15)

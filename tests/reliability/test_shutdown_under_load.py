"""Graceful shutdown under load: SIGTERM while many sessions are busy fetching.

The proxy runs as ``kafka-ws-trio serve`` with a short ``grace_period``. Every session
has a fetch on its way when the signal comes (some wait at the log end, inside Kafka);
each must be closed with 1001 ("going away") within the grace period, and the process
must exit with status 0.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Final

import _reliability
import attrs
import pytest
import trio
from _reliability import WAIT, mode, settled
from trio_websocket import ConnectionClosed, open_websocket_url

from kafka_ws_trio._proto import FetchAnswer, decode_response, encode_fetch_request
from kafka_ws_trio.testing import KafkaBroker, create_topic, produce

pytestmark = pytest.mark.reliability

GRACE_PERIOD: Final = 3.0
#: Records in the topic the sessions read; a quarter of the sessions wait at its end.
RECORDS: Final = 100
#: How long a fetch at the log end waits inside Kafka: long enough to be caught there.
FETCH_MAX_WAIT: Final = 1.0
#: Round trips each session makes before the signal.
WARM_ROUNDS: Final = 2
#: Seconds beyond the grace period for the close frame to arrive at a client on a busy
#: machine (the grace period is the proxy's promise; the margin is generous on purpose).
DELIVERY_MARGIN: Final = 5.0
#: Seconds beyond the grace period for the process to exit: closing Kafka consumers is
#: bounded by the proxy's CLOSE_TIMEOUT (5 s).
EXIT_MARGIN: Final = 10.0


@attrs.define
class Busy:
    """One session's view: round trips made, and how and when its connection ended."""

    rounds: int = 0
    closed_at: float | None = None
    code: int | None = None
    problem: str | None = None


async def busy_session(url: str, topic: str, index: int, busy: Busy) -> None:
    """Fetch without pause until the proxy closes the connection."""
    at_end = index % 4 == 0
    sequence = 0
    try:
        async with open_websocket_url(url, connect_timeout=WAIT) as ws:
            while True:
                sequence += 1
                offset = RECORDS if at_end else (index + sequence) % RECORDS
                await ws.send_message(encode_fetch_request(sequence, topic, 0, offset))
                with trio.fail_after(WAIT):
                    reply = await ws.get_message()
                assert isinstance(reply, bytes)
                answer = decode_response(reply)
                if not isinstance(answer, FetchAnswer) or answer.sequence != sequence:
                    busy.problem = f"round {sequence}: {answer}"
                    return
                busy.rounds += 1
    except ConnectionClosed as exc:
        busy.closed_at = trio.current_time()
        busy.code = exc.reason.code


@pytest.mark.timeout(mode().limit(120, 300))
async def test_sigterm_closes_every_busy_session_with_1001_within_the_grace_period(
    kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    sessions = mode().shutdown_sessions
    topic = await trio.to_thread.run_sync(create_topic, kafka_broker)
    await trio.to_thread.run_sync(produce, kafka_broker, topic, [f"r{n}".encode() for n in range(RECORDS)])
    config = _reliability.write_config(
        tmp_path / "proxy.toml",
        kafka_broker.bootstrap,
        server={"grace_period": GRACE_PERIOD},
        route={"fetch_max_wait": FETCH_MAX_WAIT},
    )
    views = [Busy() for _ in range(sessions)]
    async with _reliability.proxy_process(config, tmp_path / "proxy.log") as proxy, trio.open_nursery() as nursery:
        for index, busy in enumerate(views):
            nursery.start_soon(busy_session, proxy.url, topic, index, busy)
        warmed = await settled(lambda: all(v.rounds >= WARM_ROUNDS or v.problem for v in views), 60)
        assert warmed, f"sessions did not get going: {sorted(v.rounds for v in views)[:10]}"
        assert not [v.problem for v in views if v.problem]
        assert proxy.established() == sessions

        signalled = trio.current_time()
        proxy.process.send_signal(signal.SIGTERM)
        with trio.fail_after(GRACE_PERIOD + EXIT_MARGIN):
            status = await proxy.process.wait()
        exited = trio.current_time() - signalled
        # The sessions' tasks end by themselves once their connection is closed.
    log = proxy.log_text()

    closes = sorted(v.closed_at - signalled for v in views if v.closed_at is not None)
    codes = sorted({v.code for v in views})
    print(
        f"\nshutdown: {sessions} busy sessions; closed {len(closes)}, codes {codes}, "
        f"last close {closes[-1] if closes else float('nan'):.2f}s after SIGTERM; "
        f"the process exited {status} after {exited:.2f}s"
    )
    assert not [v.problem for v in views if v.problem]
    assert codes == [1001], f"close codes {codes}"
    assert len(closes) == sessions
    assert closes[-1] <= GRACE_PERIOD + DELIVERY_MARGIN, f"the last session closed {closes[-1]:.2f}s after SIGTERM"
    assert status == 0, f"exit status {status}\n{log[-3000:]}"
    assert "Traceback" not in log, log[-3000:]


@pytest.mark.timeout(120)
async def test_a_second_sigterm_during_the_grace_period_does_not_cut_the_shutdown_short(
    kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    """SIGTERM, then SIGTERM and SIGINT again while a session that never answers the close holds the
    shutdown: the process still closes it, logs "stopped" and exits 0 (before, the second signal was
    delivered again as the signal receiver closed, and the default handler killed the process)."""
    config = _reliability.write_config(
        tmp_path / "proxy.toml", kafka_broker.bootstrap, server={"grace_period": GRACE_PERIOD}
    )
    async with _reliability.proxy_process(config, tmp_path / "proxy.log") as proxy:
        host, port = proxy.url.removeprefix("ws://").split("/", 1)[0].rsplit(":", 1)
        stream = await trio.open_tcp_stream(host, int(port))
        async with stream:
            # An upgrade, then silence: the close the proxy sends at shutdown is never answered.
            request = f"GET /kafka HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            request += "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            await stream.send_all(request.encode())
            with trio.fail_after(WAIT):
                assert b"101" in await stream.receive_some()
            proxy.process.send_signal(signal.SIGTERM)
            await trio.sleep(0.5)
            proxy.process.send_signal(signal.SIGTERM)
            await trio.sleep(0.2)
            proxy.process.send_signal(signal.SIGINT)
            with trio.fail_after(GRACE_PERIOD + EXIT_MARGIN):
                status = await proxy.process.wait()
    log = proxy.log_text()
    assert status == 0, f"exit status {status}\n{log[-3000:]}"
    assert "got SIGTERM again; still closing sessions" in log, log[-3000:]
    assert log.rstrip().endswith("stopped"), log[-3000:]


@pytest.mark.timeout(120)
async def test_a_second_sigterm_during_shutdown_delay_ends_the_delay(kafka_broker: KafkaBroker, tmp_path: Path) -> None:
    """With shutdown_delay = 60, a first SIGTERM keeps serving (the session open, /readyz 503); a second one
    goes on to close the session with 1001 at once, and the process exits 0 long before the 60 s."""
    delay = 60.0
    config = _reliability.write_config(
        tmp_path / "proxy.toml",
        kafka_broker.bootstrap,
        server={"grace_period": GRACE_PERIOD, "shutdown_delay": delay, "ready_check_interval": 0.2},
    )
    async with (
        _reliability.proxy_process(config, tmp_path / "proxy.log") as proxy,
        open_websocket_url(proxy.url, connect_timeout=WAIT) as ws,
    ):
        await readyz_turns(proxy.url, "200")
        signalled = trio.current_time()
        proxy.process.send_signal(signal.SIGTERM)
        await readyz_turns(proxy.url, "503")
        await ws.send_message(encode_fetch_request(1, "no-such-topic", 0, 0))
        with trio.fail_after(WAIT):
            answer = decode_response(await ws.get_message())  # still served during the delay
        assert answer.sequence == 1, answer
        proxy.process.send_signal(signal.SIGTERM)
        with trio.fail_after(GRACE_PERIOD + DELIVERY_MARGIN), pytest.raises(ConnectionClosed) as closed:
            await ws.get_message()
        assert closed.value.reason.code == 1001
        with trio.fail_after(GRACE_PERIOD + EXIT_MARGIN):
            status = await proxy.process.wait()
        assert trio.current_time() - signalled < delay / 2
    log = proxy.log_text()
    assert status == 0, f"exit status {status}\n{log[-3000:]}"
    assert "serving 60s more (shutdown_delay; a second signal ends it)" in log, log[-3000:]
    assert "got SIGTERM; closing sessions (grace period 3s)" in log, log[-3000:]
    assert "got SIGTERM again; closing sessions now, without the rest of shutdown_delay" in log, log[-3000:]


async def readyz_turns(url: str, status: str) -> None:
    """Wait (within WAIT) until GET /readyz on the proxy's port answers ``status``."""
    answer = ""
    with trio.move_on_after(WAIT):
        while not (answer := await trio.to_thread.run_sync(readyz, url)).startswith(status):  # noqa: ASYNC110 - polling another process
            await trio.sleep(0.1)
        return
    raise AssertionError(f"/readyz did not turn {status}: {answer}")


def readyz(url: str) -> str:
    """``STATUS BODY`` of GET /readyz on the proxy's port (blocking: call it in a thread)."""
    import urllib.error
    import urllib.request

    base = url.replace("ws://", "http://", 1).rsplit("/", 1)[0]
    try:
        with urllib.request.urlopen(base + "/readyz", timeout=2) as answer:
            return f"{answer.status} {answer.read().decode()}"
    except urllib.error.HTTPError as refused:
        return f"{refused.code} {refused.read().decode()}"
    except OSError as exc:
        return f"unreachable {exc}"

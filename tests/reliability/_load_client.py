"""A load-generating client process for the sustained-load test.

    python _load_client.py URL TOPIC RECORDS SESSIONS SECONDS INTERVAL

Opens SESSIONS WebSockets to the proxy route URL, waits until all are open, then for
SECONDS each session sends one request every INTERVAL seconds on average (Fetch at a
random offset of TOPIC, whose record N holds ``load-N``; ListOffset of its end, which is
RECORDS; Ping), checks every answer, and closes normally. Prints one JSON line with
the counts and latencies. Run by the test as a process of its own, so that several of
them can drive the proxy with more than one core.
"""

from __future__ import annotations

import json
import random
import sys
import time
from typing import Final, TypeAlias

import attrs
import trio
from trio_websocket import ConnectionClosed, HandshakeError, WebSocketConnection, open_websocket_url

from kafka_ws_trio._proto import (
    ErrorAnswer,
    Fetch,
    FetchAnswer,
    ListOffset,
    MalformedResponse,
    OffsetAnswer,
    Ping,
    Pong,
    Response,
    decode_response,
    encode_fetch_request,
    encode_list_offset_request,
    encode_ping_request,
)

#: Seconds for one answer, and for one opening handshake.
ANSWER_TIMEOUT: Final = 10.0
CONNECT_TIMEOUT: Final = 30.0
#: Seconds for the closing handshake at the end.
WAIT: Final = 10.0
#: Handshakes in progress at once.
CONNECTING_AT_ONCE: Final = 50
#: ListOffset's timestamp for the log end.
LATEST: Final = -1

#: What a load session asks, described by the proxy's own request events.
LoadRequest: TypeAlias = Fetch | ListOffset | Ping


def record_value(offset: int) -> bytes:
    return f"load-{offset}".encode()


@attrs.define
class Counts:
    connected: int = 0
    connect_failures: int = 0
    requests: int = 0
    answers: int = 0
    error_responses: int = 0
    wrong_answers: int = 0
    timeouts: int = 0
    dropped: int = 0
    closed_cleanly: int = 0
    #: Sessions that got at least one answer.
    answered_sessions: int = 0
    latencies: list[float] = attrs.Factory(list)
    examples: list[str] = attrs.Factory(list)

    def note(self, text: str) -> None:
        if len(self.examples) < 5:
            self.examples.append(text)


@attrs.frozen
class Plan:
    url: str
    topic: str
    records: int
    sessions: int
    seconds: float
    interval: float


def request_for(rng: random.Random, sequence: int, plan: Plan) -> LoadRequest:
    """The next request of a session: Fetch, ListOffset and Ping in turn."""
    kind = sequence % 3
    if kind == 0:
        return Fetch(sequence, plan.topic, 0, rng.randrange(plan.records))
    if kind == 1:
        return ListOffset(sequence, plan.topic, 0, LATEST)
    return Ping(sequence, rng.randbytes(8))


def encode(request: LoadRequest) -> bytes:
    """The frame of ``request``, written by the proxy's own sans-IO codec."""
    if isinstance(request, Fetch):
        return encode_fetch_request(request.sequence, request.topic, request.partition, request.offset)
    if isinstance(request, ListOffset):
        return encode_list_offset_request(request.sequence, request.topic, request.partition, request.timestamp)
    return encode_ping_request(request.sequence, request.state)


def check(request: LoadRequest, answer: Response, plan: Plan) -> str | None:
    """Why ``answer`` does not answer ``request`` correctly; None when it does."""
    if isinstance(answer, MalformedResponse):
        return f"an answer that does not parse: {answer.reason}"
    if answer.sequence != request.sequence:
        return f"sequence {answer.sequence} for {request.sequence}"
    if isinstance(answer, ErrorAnswer):
        return None  # counted apart
    if isinstance(request, Ping):
        return None if isinstance(answer, Pong) and answer.state == request.state else str(answer)
    if isinstance(request, ListOffset):
        return None if isinstance(answer, OffsetAnswer) and answer.offset == plan.records else str(answer)
    records = answer.records if isinstance(answer, FetchAnswer) else ()
    if not records or records[0].offset != request.offset:
        return f"fetch at {request.offset}: {str(answer)[:200]}"
    for record in records:
        if record.value != record_value(record.offset):
            return f"fetch at {request.offset}: {record.value!r} at {record.offset}"
    return None


async def session(
    index: int, plan: Plan, counts: Counts, connecting: trio.Semaphore, start: trio.Event, end: list[float]
) -> None:
    """One WebSocket: open it (a few handshakes at a time), then send requests until the end."""
    await connecting.acquire()
    connected = False
    try:
        async with open_websocket_url(
            plan.url, connect_timeout=CONNECT_TIMEOUT, disconnect_timeout=CONNECT_TIMEOUT
        ) as ws:
            connecting.release()
            connected = True
            counts.connected += 1
            await start.wait()
            if await send_requests(ws, index, plan, counts, end[0]):
                counts.closed_cleanly += 1
    except (OSError, HandshakeError) as exc:
        counts.connect_failures += 1
        counts.note(f"session {index} could not connect: {exc!r}")
    finally:
        if not connected:
            connecting.release()


async def send_requests(ws: WebSocketConnection, index: int, plan: Plan, counts: Counts, end: float) -> bool:
    """One request every ``plan.interval`` s on average, each answer checked; False if the session broke off.

    At least one request is made. How many more depends on how busy the machine is: the
    pace is a plan, never a promise, and the test asserts no rate.
    """
    rng = random.Random(index)
    sequence = 0
    await trio.sleep(rng.uniform(0, plan.interval))  # spread the sessions out
    # The first request goes out whatever the clock says, so that every session is tested
    # even on a machine too busy to keep to the plan's pace.
    while sequence == 0 or trio.current_time() < end:
        sequence += 1
        request = request_for(rng, sequence, plan)
        started = trio.current_time()
        counts.requests += 1
        try:
            with trio.move_on_after(ANSWER_TIMEOUT) as waited:
                await ws.send_message(encode(request))
                reply = await ws.get_message()
        except ConnectionClosed as exc:
            counts.dropped += 1
            counts.note(f"session {index} dropped: {exc.reason}")
            return False
        if waited.cancelled_caught:
            counts.timeouts += 1
            counts.note(f"session {index}: no answer to {request} in {ANSWER_TIMEOUT}s")
            return False
        counts.latencies.append(trio.current_time() - started)
        counts.answers += 1
        if sequence == 1:
            counts.answered_sessions += 1
        answer = decode_response(reply) if isinstance(reply, bytes) else MalformedResponse("a text frame")
        if isinstance(answer, ErrorAnswer):
            counts.error_responses += 1
            counts.note(f"session {index}: error {answer.code} {answer.message}")
        problem = check(request, answer, plan)
        if problem is not None:
            counts.wrong_answers += 1
            counts.note(f"session {index}: {problem}")
        await trio.sleep(rng.uniform(0.5, 1.5) * plan.interval)
    return True


async def main(plan: Plan) -> dict[str, object]:
    counts = Counts()
    connecting = trio.Semaphore(CONNECTING_AT_ONCE)
    start = trio.Event()
    end = [0.0]
    opened = time.monotonic()
    async with trio.open_nursery() as nursery:
        for index in range(plan.sessions):
            nursery.start_soon(session, index, plan, counts, connecting, start, end)
        while counts.connected + counts.connect_failures < plan.sessions:  # noqa: ASYNC110 - a count, no event
            await trio.sleep(0.05)
        connect_seconds = time.monotonic() - opened
        end[0] = trio.current_time() + plan.seconds
        start.set()
    latencies = sorted(counts.latencies)

    def at(fraction: float) -> float:
        return latencies[min(len(latencies) - 1, int(fraction * len(latencies)))] if latencies else 0.0

    summary = attrs.asdict(counts)
    del summary["latencies"]
    summary.update(
        connect_seconds=round(connect_seconds, 2),
        p50_ms=round(at(0.5) * 1000, 1),
        p99_ms=round(at(0.99) * 1000, 1),
        max_ms=round(at(1.0) * 1000, 1),
    )
    return summary


if __name__ == "__main__":
    url, topic, records, sessions, seconds, interval = sys.argv[1:7]
    plan = Plan(url, topic, int(records), int(sessions), float(seconds), float(interval))
    print(json.dumps(trio.run(main, plan)), flush=True)

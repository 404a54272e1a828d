"""The Trio client's streams (``PubSubClient.subscribe``) against a real proxy and broker: credit
topped up as batches are taken, resuming from positions, seek, filters, unsubscribing when the
block is left, and the proxy's problems and endings. The last tests put a fake proxy in front
of the client, for what a real one never does."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Final

import pytest
import trio
from _support import WAIT, running_proxy, settled
from trio_websocket import ConnectionClosed, WebSocketRequest, serve_websocket

from kafka_ws_trio._config import ProxyConfig, ServerConfig
from kafka_ws_trio._pb import pubsub_pb2 as pb
from kafka_ws_trio._proto import (
    ErrorCode,
    Subscribe,
    Unsubscribe,
    decode_request,
    encode_ok,
    encode_stream_event_ended,
    encode_subscribe_answer,
)
from kafka_ws_trio.client import (
    EARLIEST,
    Batch,
    Filter,
    HeaderMatch,
    PubSubClient,
    PubSubError,
    Stream,
    StreamEnded,
    StreamProblem,
    open_client,
)
from kafka_ws_trio.testing import KafkaBroker, Record, create_topic, produce

pytestmark = pytest.mark.timeout(90)

#: Seconds a whole read of a test's records may take (a busy machine runs five test suites at once).
READ: Final = 30.0


@asynccontextmanager
async def _proxy_client(broker: KafkaBroker, **server: int) -> AsyncIterator[PubSubClient]:
    """A client of a proxy of its own, on a free port."""
    config = ProxyConfig.single_route(broker.bootstrap, server=ServerConfig(port=0, **server))
    async with running_proxy(config) as proxy, open_client(f"{proxy.url}/kafka") as client:
        yield client


@pytest.fixture
async def client(kafka_broker: KafkaBroker) -> AsyncIterator[PubSubClient]:
    async with _proxy_client(kafka_broker) as connected:
        yield connected


def _offsets(batches: list[Batch]) -> list[tuple[int, int]]:
    return [(batch.partition, record.offset) for batch in batches for record in batch.records]


async def _read_to_the_end(stream: Stream) -> list[Batch]:
    """Every batch of a ``follow=False`` stream."""
    batches = []
    with trio.fail_after(READ):
        async for batch in stream:
            batches.append(batch)
    return batches


@pytest.mark.parametrize(("window", "window_bytes"), [(50, 0), (1000, 3000)], ids=["records", "bytes"])
async def test_credit_is_topped_up_as_batches_are_taken_and_a_slow_reader_stops_the_proxy(
    client: PubSubClient, kafka_broker: KafkaBroker, window: int, window_bytes: int
) -> None:
    topic = create_topic(kafka_broker)
    produce(kafka_broker, topic, [b"x" * 100] * 2000)
    async with client.subscribe(
        topic, start=EARLIEST, window=window, window_bytes=window_bytes, follow=False
    ) as stream:
        batches: list[Batch] = []
        with trio.fail_after(READ):
            async for batch in stream:
                batches.append(batch)
                assert len(batch.records) <= window
                assert stream.buffered <= window
                if len(batches) == 3:
                    await trio.sleep(0.5)  # a slow reader: the proxy has 2,000 records to send meanwhile
                    assert stream.buffered <= window
    assert _offsets(batches) == [(0, offset) for offset in range(2000)]
    assert len(batches) >= 2000 * 100 / (window_bytes or window * 100), "each batch stays within the window"
    assert stream.positions == {0: 2000}
    assert stream.caught_up == {0}
    assert stream.lag == {0: 0}


async def test_resuming_from_positions_loses_nothing_and_repeats_nothing(
    client: PubSubClient, kafka_broker: KafkaBroker
) -> None:
    topic = create_topic(kafka_broker, partitions=3)
    for partition in range(3):
        produce(kafka_broker, topic, [b"first"] * 30, partition=partition)
    first: list[Batch] = []
    async with client.subscribe(topic, start=EARLIEST, window=7) as stream:
        with trio.fail_after(READ):
            async for batch in stream:
                first.append(batch)
                if len(_offsets(first)) >= 40:
                    break
        saved = stream.positions
    assert sorted(saved) == [0, 1, 2]
    for partition in range(3):
        produce(kafka_broker, topic, [b"second"] * 10, partition=partition)
    rest: list[Batch] = []
    async with client.subscribe(topic, start=saved) as stream:
        with trio.fail_after(READ):
            async for batch in stream:
                rest.append(batch)
                if len(_offsets(first + rest)) >= 120:
                    break
        with trio.move_on_after(0.5):  # anything more would be a repeat
            async for batch in stream:
                rest.append(batch)
    delivered = _offsets(first) + _offsets(rest)
    assert sorted(delivered) == [(partition, offset) for partition in range(3) for offset in range(40)]
    assert stream.positions == {0: 40, 1: 40, 2: 40}


async def test_seek_moves_a_partition_and_drops_what_was_read_before(
    client: PubSubClient, kafka_broker: KafkaBroker
) -> None:
    topic = create_topic(kafka_broker)
    base = 1_700_000_000_000
    produce(kafka_broker, topic, [Record(b"v", timestamp_ms=base + offset * 1000) for offset in range(100)])
    async with client.subscribe(topic, start=EARLIEST, window=10) as stream:
        records = aiter(stream)
        with trio.fail_after(READ):
            assert (await anext(records)).records[0].offset == 0
            await stream.seek(0, 50)
            assert stream.positions == {0: 50}
            assert (await anext(records)).records[0].offset == 50
            await stream.seek(0, datetime.fromtimestamp((base + 30_500) / 1000, tz=timezone.utc))
            assert stream.positions == {0: 31}, "the first record at or after the time"
            assert (await anext(records)).records[0].offset == 31
            await stream.seek(0, EARLIEST)
            assert (await anext(records)).records[0].offset == 0
        with pytest.raises(ValueError, match="does not read partition 3"):
            await stream.seek(3, 0)


async def test_a_filter_delivers_only_matching_records_and_positions_move_past_the_rest(
    client: PubSubClient, kafka_broker: KafkaBroker
) -> None:
    topic = create_topic(kafka_broker)
    produce(
        kafka_broker,
        topic,
        [
            Record(b"v", key=b"eu-%d" % n if n % 3 else b"us-%d" % n, headers=[("src", b"web" if n % 2 else b"app")])
            for n in range(12)
        ],
    )
    wanted = Filter(key_prefix=b"eu-", headers=(HeaderMatch("src", b"web"),))
    async with client.subscribe(topic, start=EARLIEST, filter=wanted, follow=False) as stream:
        batches = await _read_to_the_end(stream)
    assert [offset for _, offset in _offsets(batches)] == [1, 5, 7, 11]
    assert stream.positions == {0: 12}


async def _unknown_to_the_proxy(client: PubSubClient, stream_id: int) -> bool:
    """Whether a grant to ``stream_id`` is refused as UNKNOWN_STREAM (a grant to an open stream gets no answer)."""
    grant = pb.PubSubReq(cmd_credit=pb.CmdCredit(subscription=stream_id, credit=pb.Credit(records=1)))
    with trio.move_on_after(WAIT):
        answer = await client.request(grant)
        return answer.error_resp.code == ErrorCode.UNKNOWN_STREAM
    return False


async def test_leaving_the_block_unsubscribes_even_by_an_exception(
    client: PubSubClient, kafka_broker: KafkaBroker
) -> None:
    topic = create_topic(kafka_broker)
    async with client.subscribe(topic) as left:
        pass
    with pytest.raises(LookupError):
        async with client.subscribe(topic) as failed:
            raise LookupError
    with trio.move_on_after(0.5):
        async with client.subscribe(topic) as cancelled:
            await trio.sleep_forever()
    for stream in (left, failed, cancelled):
        assert await _unknown_to_the_proxy(client, stream.id), stream


async def test_a_record_too_large_is_reported_and_its_partition_goes_on_after_a_seek(
    kafka_broker: KafkaBroker, caplog: pytest.LogCaptureFixture
) -> None:
    topic = create_topic(kafka_broker)
    produce(kafka_broker, topic, [b"small", b"L" * 4000, b"after"])
    async with _proxy_client(kafka_broker, max_message_size=2048) as client:
        async with client.subscribe(topic, start=EARLIEST) as stream:
            events = aiter(stream.events())
            with trio.fail_after(READ):
                first = await anext(events)
                assert isinstance(first, Batch) and [r.value for r in first.records] == [b"small"]
                problem = await anext(events)
                assert isinstance(problem, StreamProblem)
                assert (problem.code, problem.partition) == (ErrorCode.RECORD_TOO_LARGE, 0)
                assert problem.message.startswith("record at offset 1 is ")
                await stream.seek(0, 2)
                after = await anext(events)
                assert isinstance(after, Batch) and [r.value for r in after.records] == [b"after"]
        # Iterating for batches only, the problem is logged.
        caplog.set_level(logging.WARNING, "kafka_ws_trio.client")
        async with client.subscribe(topic, start=EARLIEST) as stream, trio.open_nursery() as nursery:
            nursery.start_soon(_read_to_the_end, stream)
            assert await settled(lambda: "record at offset 1 is " in caplog.text, READ)
            nursery.cancel_scope.cancel()


# ---------------------------------------------------------- a fake proxy


async def _fake_proxy(pushes: Callable[[int], list[bytes]], run: Callable[[PubSubClient], Awaitable[None]]) -> None:
    """Run ``run`` with a client of a proxy that answers a subscribe and then sends ``pushes(stream id)``."""

    async def serve(request: WebSocketRequest) -> None:
        ws = await request.accept()
        with contextlib.suppress(ConnectionClosed):  # the client is done
            while True:
                command = decode_request(await ws.get_message())
                if isinstance(command, Subscribe):
                    await ws.send_message(encode_subscribe_answer(command.sequence, [(0, 0)]))
                    for push in pushes(command.sequence):
                        await ws.send_message(push)
                elif isinstance(command, Unsubscribe):
                    await ws.send_message(encode_ok(command.sequence))

    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_websocket, serve, "127.0.0.1", 0, None)
        async with open_client(f"ws://127.0.0.1:{server.port}/kafka") as client:
            with trio.fail_after(WAIT):
                await run(client)
        nursery.cancel_scope.cancel()


def _batch(stream_id: int, offsets: range) -> bytes:
    messages = [pb.KafkaMessage(offset=offset, value=b"v") for offset in offsets]
    batch = pb.StreamBatch(partition=0, messages=messages, next_offset=offsets.stop, high_watermark=offsets.stop)
    return pb.PubSubResp(sequence=stream_id, stream_batch=batch).SerializeToString()


async def test_an_ended_stream_raises_stream_ended_after_what_came_before() -> None:
    def pushes(stream_id: int) -> list[bytes]:
        return [
            _batch(stream_id, range(2)),
            encode_stream_event_ended(stream_id, ErrorCode.TOPIC_NOT_FOUND, "not found topic"),
        ]

    async def run(client: PubSubClient) -> None:
        batches = []
        async with client.subscribe("t", start=EARLIEST) as stream:
            with pytest.raises(StreamEnded) as ended:  # noqa: PT012 (the batches before the end come first)
                async for batch in stream:
                    batches.append(batch)
        assert _offsets(batches) == [(0, 0), (0, 1)]
        assert (ended.value.code, ended.value.message) == (ErrorCode.TOPIC_NOT_FOUND, "not found topic")
        assert str(ended.value) == f"stream {stream.id} ended: not found topic (code 10)"
        assert isinstance(ended.value, PubSubError)

    await _fake_proxy(pushes, run)


async def test_a_proxy_pushing_past_the_credit_ends_the_iteration_instead_of_filling_memory() -> None:
    async def run(client: PubSubClient) -> None:
        async with client.subscribe("t", window=5) as stream:
            with pytest.raises(PubSubError, match="pushed past the credit granted"):
                async for _ in stream:
                    pass
        assert stream.buffered == 0, "nothing of it was kept"

    await _fake_proxy(lambda stream_id: [_batch(stream_id, range(6))], run)


# ---------------------------------------------------------- the README


def test_the_readme_streams_example_runs_as_printed(kafka_broker: KafkaBroker, repo_root: Path, tmp_path: Path) -> None:
    readme = (repo_root / "README.md").read_text()
    section = re.search(r"^### Streams\n(.*?)(?=^#+ )", readme, re.DOTALL | re.MULTILINE)
    assert section, "the README lost its Streams section"
    [program] = re.findall(r"^```python\n(.*?)^```", section[1], re.DOTALL | re.MULTILINE)
    [expected] = re.findall(r"^```text\n(.*?)^```", section[1], re.DOTALL | re.MULTILINE)
    (tmp_path / "streams.py").write_text(program)
    env = {name: value for name, value in os.environ.items() if not name.startswith("KAFKA_")}
    env["KAFKA_BOOTSTRAP"] = kafka_broker.bootstrap
    result = subprocess.run(
        [sys.executable, "streams.py"], capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected

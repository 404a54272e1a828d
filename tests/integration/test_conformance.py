"""schema/README.md, "Conformance checklist": one test per row, against a real broker
and a real proxy, spoken to in raw PubSub frames.

Rows 2, 4, 5, 11 and 12 run twice: through trio-websocket (the proxy's own library)
and through ``websockets``, an independent implementation, because the contract says
clients written independently must work.
"""

from __future__ import annotations

import collections
import random
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, Final

import pytest
import trio
from _support import (
    DIAGNOSIS_MARGIN,
    WS_LIBRARIES,
    expect_error,
    fetch,
    fetch_all,
    fetched,
    free_port,
    http_get,
    http_status,
    length_delimited,
    list_offset,
    listed,
    message_fields,
    open_frames,
    parse,
    ping,
    request,
    running_proxy,
    sequence_field,
)
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import TopicAlreadyExistsError

from kafka_ws_trio._config import (
    DEFAULT_REQUEST_TIMEOUT,
    ProxyConfig,
    RouteConfig,
    SaslConfig,
    ServerConfig,
    TlsConfig,
)
from kafka_ws_trio._pb import pubsub_pb2 as pb
from kafka_ws_trio._proto import ErrorCode
from kafka_ws_trio._server import ProxyServer
from kafka_ws_trio.testing import KafkaBroker, Record, create_topic, produce

pytestmark = pytest.mark.timeout(60)

TOPIC: Final = "test-consumer"
VALUES: Final = [f"testmsg{n}".encode() for n in range(1, 31)]
MECHANISMS: Final = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
#: request_timeout of the routes that are meant to fail (TLS without the CA, wrong passwords):
#: kafka-python only gives up after it, so it sets how long those rows take.
FAILING_ROUTE_TIMEOUT: Final = 2.0
WRONG_PASSWORD: Final = "not-the-password"
CODECS: Final = ("gzip", "snappy", "lz4", "zstd")
#: Repeated and empty header values too; kafka-python cannot send a null one.
HEADERS: Final = [("trace", b"abc"), ("empty", b""), ("trace", b"2")]
PIPELINED: Final = 500
PIPELINE_RECORDS: Final = 10


# ---------------------------------------------------------------- fixtures


def _read_partition(broker: KafkaBroker, topic: str) -> tuple[set[int], int, int, list[bytes | None]]:
    """(partitions, earliest offset, end offset, values) of ``topic``'s partition 0."""
    consumer = KafkaConsumer(**broker.client_config(), enable_auto_commit=False, request_timeout_ms=10_000)
    try:
        partitions = set(consumer.partitions_for_topic(topic) or ())
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        earliest = consumer.beginning_offsets([tp])[tp]
        end = consumer.end_offsets([tp])[tp]
        consumer.seek(tp, earliest)
        values: list[bytes | None] = []
        deadline = time.monotonic() + 20
        while len(values) < end - earliest and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                values.extend(r.value for r in records)
        return partitions, earliest, end, values
    finally:
        consumer.close()


@pytest.fixture(scope="module")
def conformance_topic(kafka_broker: KafkaBroker) -> str:
    """``test-consumer``: one partition holding testmsg1..testmsg30 at offsets 0..29, one batch each.

    Idempotent, because one broker serves several tox environments in turn: an
    existing topic is checked instead of written again.
    """
    try:
        create_topic(kafka_broker, TOPIC)
    except TopicAlreadyExistsError:
        pass
    partitions, earliest, end, values = _read_partition(kafka_broker, TOPIC)
    if partitions != {0}:
        pytest.fail(f"topic {TOPIC!r} exists with partitions {sorted(partitions)}; the checklist needs exactly one")
    if end == 0:
        offsets = produce(kafka_broker, TOPIC, VALUES, batch_per_record=True)
        assert offsets == list(range(30))
    elif (earliest, end, values) != (0, 30, VALUES):
        pytest.fail(
            f"topic {TOPIC!r} exists but does not hold exactly testmsg1..testmsg30 at offsets 0..29 "
            f"(offsets {earliest}..{end - 1}, values {values[:3]}...); delete it and run again"
        )
    return TOPIC


@pytest.fixture(scope="module")
def conformance_config(kafka_broker: KafkaBroker, conformance_topic: str) -> ProxyConfig:
    """Every route the checklist needs; the proxy connects to Kafka only when a route is used."""
    broker = kafka_broker
    ssl, sasl, sasl_ssl = broker.address("SSL"), broker.address("SASL_PLAINTEXT"), broker.address("SASL_SSL")
    with_ca = TlsConfig(verify=True, ca_file=broker.ca_file)
    user, right_password = broker.sasl_username, broker.sasl_password
    assert user and right_password, "the broker has no SASL user"

    def login(mechanism: str, password: str = right_password) -> SaslConfig:
        return SaslConfig(mechanism=mechanism, username=user, password=password)

    failing = {"request_timeout": FAILING_ROUTE_TIMEOUT}
    routes = [
        RouteConfig("/kafka", broker.bootstrap),
        RouteConfig("/closed", f"127.0.0.1:{free_port()}"),
        RouteConfig("/tls/verify-off", ssl, tls=TlsConfig(verify=False)),
        RouteConfig("/tls/verify-without-ca", ssl, tls=TlsConfig(verify=True), **failing),
        RouteConfig("/tls/verify-with-ca", ssl, tls=with_ca),
        *(RouteConfig(f"/sasl/{m}", sasl, sasl=login(m)) for m in MECHANISMS),
        *(RouteConfig(f"/sasl-wrong/{m}", sasl, sasl=login(m, WRONG_PASSWORD), **failing) for m in MECHANISMS),
        RouteConfig("/sasl-ssl/SCRAM-SHA-512", sasl_ssl, tls=with_ca, sasl=login("SCRAM-SHA-512")),
    ]
    return ProxyConfig(ServerConfig(port=0), routes)


@pytest.fixture
async def proxy(conformance_config: ProxyConfig) -> AsyncIterator[ProxyServer]:
    async with running_proxy(conformance_config) as server:
        yield server


@pytest.fixture(params=WS_LIBRARIES)
def ws_library(request: pytest.FixtureRequest) -> str:
    library: str = request.param
    return library


@pytest.fixture
def pipeline_topic(kafka_broker: KafkaBroker) -> str:
    """A second topic with two partitions of PIPELINE_RECORDS records each, ``p<partition>-<n>``."""
    topic = create_topic(kafka_broker, partitions=2)
    for partition in (0, 1):
        values = [f"p{partition}-{n}".encode() for n in range(PIPELINE_RECORDS)]
        produce(kafka_broker, topic, values, partition=partition)
    return topic


# ----------------------------------------------------------------- helpers


def list_offset_failure(reason: str, topic: str = TOPIC, partition: int = 0) -> str:
    return f"failed to list offset, topic: {topic}, partition: {partition}, err: {reason}"


def fetch_failure(reason: str, topic: str = TOPIC, partition: int = 0) -> str:
    return f"failed to fetch message, topic: {topic}, partition: {partition}, err: {reason}"


def assert_fetched_from_14(messages: Sequence[pb.KafkaMessage]) -> None:
    assert messages, "no records"
    assert messages[0].offset == 14
    assert messages[0].value == b"testmsg15"
    offsets = [m.offset for m in messages]
    assert offsets == list(range(14, 14 + len(offsets))), "records below 14, out of order or missing"
    assert [m.value for m in messages] == VALUES[14 : 14 + len(offsets)]


async def assert_route_reads(proxy: ProxyServer, uri: str) -> None:
    """The route reaches the broker: it lists test-consumer's end and fetches from offset 14."""
    async with open_frames("trio-websocket", proxy.url + uri) as client:
        assert listed(await request(client, list_offset(1, TOPIC, 0, -1)), 1) == 30, uri
        assert_fetched_from_14(fetched(await request(client, fetch(2, TOPIC, 0, 14)), 2))


async def route_failure(proxy: ProxyServer, uri: str) -> tuple[float, pb.ErrorResp]:
    """Seconds until a list-offset through the route failed, and its error."""
    async with open_frames("trio-websocket", proxy.url + uri) as client:
        started = trio.current_time()
        response = await request(client, list_offset(5, TOPIC, 0, -1))
        elapsed = trio.current_time() - started
    assert response.WhichOneof("resp") == "error_resp", f"{uri}: {response}"
    assert response.sequence == 5
    return elapsed, response.error_resp


def produce_one_batch(
    broker: KafkaBroker, topic: str, records: Sequence[Record], compression: str | None
) -> list[tuple[int, int]]:
    """Write ``records`` as a single record batch; return each one's (offset, timestamp).

    Nothing is sent before ``flush()`` (linger far longer than the test), so every
    record lands in the one batch the producer sends then, compressed as a whole.
    """
    producer = KafkaProducer(
        **broker.client_config(),
        acks="all",
        compression_type=compression,
        linger_ms=600_000,
        delivery_timeout_ms=700_000,
        batch_size=1 << 20,
        max_block_ms=30_000,
    )
    try:
        futures = [
            producer.send(
                topic, value=r.value, key=r.key, headers=list(r.headers), partition=0, timestamp_ms=r.timestamp_ms
            )
            for r in records
        ]
        producer.flush(timeout=30)
        metadata = [future.get(timeout=30) for future in futures]
    finally:
        producer.close(timeout=30)
    return [(m.offset, m.timestamp) for m in metadata]


# -------------------------------------------------------------------- rows


async def test_row01_plain_get_400_unknown_path_404(proxy: ProxyServer) -> None:
    assert await http_status(proxy.port, http_get("/kafka", upgrade=False)) == 400
    assert await http_status(proxy.port, http_get("/not-a-route", upgrade=True)) == 404
    # The same opening handshake on the route is accepted: the 404 was the path's doing.
    assert await http_status(proxy.port, http_get("/kafka", upgrade=True)) == 101


async def test_row02_list_offset_on_missing_topic(proxy: ProxyServer, ws_library: str) -> None:
    async with open_frames(ws_library, proxy.url + "/kafka") as client:
        response = await request(client, list_offset(2, "not-exist", 0, -1))
    expect_error(response, 2, ErrorCode.TOPIC_NOT_FOUND, list_offset_failure("not found topic", topic="not-exist"))


async def test_row03_fetch_on_missing_topic(proxy: ProxyServer) -> None:
    async with open_frames("trio-websocket", proxy.url + "/kafka") as client:
        response = await request(client, fetch(3, "not-exist", 0, 0))
    expect_error(response, 3, ErrorCode.TOPIC_NOT_FOUND, fetch_failure("not found topic", topic="not-exist"))


async def test_row04_list_offset_earliest_latest_and_by_time(proxy: ProxyServer, ws_library: str) -> None:
    async with open_frames(ws_library, proxy.url + "/kafka") as client:
        assert listed(await request(client, list_offset(41, TOPIC, 0, -2)), 41) == 0
        assert listed(await request(client, list_offset(42, TOPIC, 0, -1)), 42) == 30
        assert listed(await request(client, list_offset(43, TOPIC, 0, 9_999_999_999_999)), 43) == -1
        assert listed(await request(client, list_offset(44, TOPIC, 0, 1_500_000_000_000)), 44) == 0
        # The contract's own encoding of ListOffset(test-consumer, 0, -2) with sequence 1.
        contract = bytes.fromhex("080192021a0a0d746573742d636f6e73756d657218feffffffffffffffff01")
        await client.send(contract)
        assert listed(parse(await client.receive()), 1) == 0


async def test_row05_fetch_from_14_returns_nothing_below(proxy: ProxyServer, ws_library: str) -> None:
    async with open_frames(ws_library, proxy.url + "/kafka") as client:
        assert_fetched_from_14(fetched(await request(client, fetch(5, TOPIC, 0, 14)), 5))
        # The contract's own encoding of Fetch(test-consumer, 0, 14) with sequence 6.
        await client.send(bytes.fromhex("08068a02110a0d746573742d636f6e73756d6572180e"))
        assert_fetched_from_14(fetched(parse(await client.receive()), 6))


async def test_row06_fetch_beyond_the_log_is_offset_out_of_range(proxy: ProxyServer) -> None:
    async with open_frames("trio-websocket", proxy.url + "/kafka") as client:
        response = await request(client, fetch(6, TOPIC, 0, 999))
    expect_error(response, 6, ErrorCode.OFFSET_OUT_OF_RANGE, fetch_failure("OFFSET_OUT_OF_RANGE"))


async def test_row07_missing_partition(proxy: ProxyServer) -> None:
    async with open_frames("trio-websocket", proxy.url + "/kafka") as client:
        listing = await request(client, list_offset(71, TOPIC, 7, -1))
        fetching = await request(client, fetch(72, TOPIC, 7, 0))
    expect_error(listing, 71, ErrorCode.PARTITION_NOT_FOUND, list_offset_failure("not found partition", partition=7))
    expect_error(fetching, 72, ErrorCode.PARTITION_NOT_FOUND, fetch_failure("not found partition", partition=7))


async def test_row08_closed_port_fails_in_time_naming_the_broker(
    proxy: ProxyServer, conformance_config: ProxyConfig
) -> None:
    route = conformance_config.route_for("/closed")
    assert route is not None
    node = route.nodes[0]
    async with open_frames("trio-websocket", proxy.url + "/closed") as client:
        started = trio.current_time()
        # Both at once: neither may wait behind the other's attempt.
        await client.send(list_offset(81, TOPIC, 0, -1))
        await client.send(fetch(82, TOPIC, 0, 0))
        responses = {r.sequence: r for r in [parse(await client.receive()), parse(await client.receive())]}
        elapsed = trio.current_time() - started
    assert elapsed < DEFAULT_REQUEST_TIMEOUT
    reason = f"broker unreachable: {node}"
    expect_error(responses[81], 81, ErrorCode.BROKER_UNREACHABLE, list_offset_failure(reason))
    expect_error(responses[82], 82, ErrorCode.BROKER_UNREACHABLE, fetch_failure(reason))


async def test_row09_tls_verify_off_works_verify_needs_the_ca(proxy: ProxyServer) -> None:
    failures: list[tuple[float, pb.ErrorResp]] = []

    async def fail_without_ca() -> None:
        failures.append(await route_failure(proxy, "/tls/verify-without-ca"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(assert_route_reads, proxy, "/tls/verify-off")
        nursery.start_soon(assert_route_reads, proxy, "/tls/verify-with-ca")
        nursery.start_soon(fail_without_ca)
    [(elapsed, error)] = failures
    assert error.code == ErrorCode.TLS_FAILED
    assert error.message.startswith(list_offset_failure("TLS certificate verify failed: ")), error.message
    assert "certificate" in error.message.removeprefix(list_offset_failure("TLS "))
    assert elapsed < FAILING_ROUTE_TIMEOUT + DIAGNOSIS_MARGIN


async def test_row10_sasl_right_password_works_wrong_one_fails(proxy: ProxyServer) -> None:
    failures: dict[str, tuple[float, pb.ErrorResp]] = {}

    async def fail(mechanism: str) -> None:
        failures[mechanism] = await route_failure(proxy, f"/sasl-wrong/{mechanism}")

    async with trio.open_nursery() as nursery:
        for mechanism in MECHANISMS:
            nursery.start_soon(assert_route_reads, proxy, f"/sasl/{mechanism}")
            nursery.start_soon(fail, mechanism)
        nursery.start_soon(assert_route_reads, proxy, "/sasl-ssl/SCRAM-SHA-512")
    for mechanism, (elapsed, error) in failures.items():
        assert error.code == ErrorCode.AUTHENTICATION_FAILED, (mechanism, error)
        assert error.message == list_offset_failure("SASL authentication failed"), mechanism
        assert elapsed < FAILING_ROUTE_TIMEOUT + DIAGNOSIS_MARGIN, mechanism


GARBAGE: Final = (b"\xff\xff\xff\xff\xff", b"not a protobuf frame", b"\x08", b"\x0a\x05ab")


async def test_row11_ping_empty_text_garbage_and_unknown_command(proxy: ProxyServer, ws_library: str) -> None:
    async with open_frames(ws_library, proxy.url + "/kafka") as client:
        pong = await request(client, ping(111, b"test"))
        assert (pong.WhichOneof("resp"), pong.sequence, pong.pong_resp.state) == ("pong_resp", 111, b"test")

        empty = pb.PubSubReq(sequence=112, cmd_empty=pb.CmdEmpty()).SerializeToString()
        expect_error(await request(client, empty), 112, ErrorCode.UNKNOWN_COMMAND, "unknown command")

        # A text frame gets no reply: the next response is the ping's sent after it.
        await client.send("a text frame, which the protocol skips")
        after_text = await request(client, ping(113, b"after text"))
        assert (after_text.sequence, after_text.pong_resp.state) == (113, b"after text")
        assert proxy.statistics().text_frames_total == 1

        for garbage in GARBAGE:
            expect_error(await request(client, garbage), 0, ErrorCode.WRONG_COMMAND, "wrong command")

        # Command number 60, unknown to this server, with a sub-message of its own (35 to 41 are
        # taken or planned: streams, produce, transactions).
        future_command = sequence_field(114) + length_delimited(60, length_delimited(1, b"from the future"))
        expect_error(await request(client, future_command), 114, ErrorCode.UNKNOWN_COMMAND, "unknown command")

        still_usable = await request(client, ping(115, b"still here"))
        assert (still_usable.sequence, still_usable.pong_resp.state) == (115, b"still here")


SEQUENCES: Final = (0, -1, 2**63 - 1, -(2**63))


async def test_row12_sequences_echo_exactly_and_may_follow_the_command(proxy: ProxyServer, ws_library: str) -> None:
    fetch_command = pb.CmdKafkaFetch(topic=TOPIC, partition=0, offset=14).SerializeToString()
    list_command = pb.CmdKafkaListOffset(topic=TOPIC, partition=0, timestamp=-1).SerializeToString()
    # The hand encoder agrees with protobuf's (and the contract's hex) when sequence comes first ...
    sequence_first = sequence_field(6) + length_delimited(33, fetch_command)
    assert sequence_first == fetch(6, TOPIC, 0, 14)
    assert sequence_first.hex() == "08068a02110a0d746573742d636f6e73756d6572180e"
    async with open_frames(ws_library, proxy.url + "/kafka") as client:
        for sequence in SEQUENCES:
            pong = await request(client, ping(sequence, b"s"))
            assert (pong.sequence, pong.pong_resp.state) == (sequence, b"s")
            assert listed(await request(client, list_offset(sequence, TOPIC, 0, -1)), sequence) == 30
            failure = await request(client, fetch(sequence, TOPIC, 0, 999))
            assert (failure.sequence, failure.error_resp.code) == (sequence, ErrorCode.OFFSET_OUT_OF_RANGE)
        # ... so these, with sequence after the command, are what another encoder may send.
        after = await request(client, length_delimited(33, fetch_command) + sequence_field(6))
        assert_fetched_from_14(fetched(after, 6))
        after = await request(client, length_delimited(34, list_command) + sequence_field(-(2**63)))
        assert listed(after, -(2**63)) == 30
        # An explicitly empty sub-message: CmdPing with no state.
        explicit = await request(client, sequence_field(2**63 - 1) + length_delimited(32, b""))
        assert explicit.WhichOneof("resp") == "pong_resp"
        assert (explicit.sequence, explicit.pong_resp.state) == (2**63 - 1, b"")


@pytest.mark.timeout(90)
async def test_row13_pipelined_requests_answered_once_in_partition_order(
    proxy: ProxyServer, pipeline_topic: str
) -> None:
    rng = random.Random(13)
    values: dict[tuple[str, int], list[bytes]] = {
        (TOPIC, 0): VALUES,
        **{(pipeline_topic, p): [f"p{p}-{n}".encode() for n in range(PIPELINE_RECORDS)] for p in (0, 1)},
    }
    lanes = list(values)
    frames: list[bytes] = []
    #: sequence -> (lane or None for a ping, what the response must say)
    expected: dict[int, tuple[tuple[str, int] | None, Any]] = {}
    for n in range(PIPELINED):
        sequence = 3 * n - PIPELINED  # negative and positive ones
        lane = rng.choice(lanes)
        topic, partition = lane
        kind = rng.choices(["ping", "list", "fetch"], [1, 2, 3])[0]
        if kind == "ping":
            frames.append(ping(sequence, str(sequence).encode()))
            expected[sequence] = (None, ("pong_resp", str(sequence).encode()))
        elif kind == "list":
            timestamp = rng.choice([-1, -2])
            frames.append(list_offset(sequence, topic, partition, timestamp))
            answer = len(values[lane]) if timestamp == -1 else 0
            expected[sequence] = (lane, ("kafka_list_offset_resp", answer))
        else:
            offset = rng.randrange(len(values[lane]))
            frames.append(fetch(sequence, topic, partition, offset))
            expected[sequence] = (lane, ("kafka_fetch_resp", (offset, values[lane][offset])))

    arrived: list[int] = []
    async with open_frames("trio-websocket", proxy.url + "/kafka") as client:

        async def send_all() -> None:
            for frame in frames:
                await client.send(frame)

        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(send_all)
                for _ in range(PIPELINED):
                    response = parse(await client.receive())
                    kind = response.WhichOneof("resp")
                    assert response.sequence in expected, response
                    _, (want_kind, want) = expected[response.sequence]
                    assert kind == want_kind, response
                    if kind == "pong_resp":
                        assert response.pong_resp.state == want
                    elif kind == "kafka_list_offset_resp":
                        assert response.kafka_list_offset_resp.offset == want
                    else:
                        first = response.kafka_fetch_resp.messages[0]
                        assert (first.offset, first.value) == want
                    arrived.append(response.sequence)
        # Nothing else is on its way: the next response is this ping's.
        last = await request(client, ping(PIPELINED, b"last"))
        assert (last.sequence, last.pong_resp.state) == (PIPELINED, b"last")

    sent = list(expected)
    assert collections.Counter(arrived) == collections.Counter(sent), "not every request answered exactly once"
    for lane in lanes:
        in_request_order = [s for s in sent if expected[s][0] == lane]
        assert [s for s in arrived if expected[s][0] == lane] == in_request_order, lane


async def test_row14_nulls_headers_and_every_codec_round_trip(
    proxy: ProxyServer, kafka_broker: KafkaBroker, kafka_topic: str
) -> None:
    base = 1_700_000_000_000
    batches: list[tuple[str | None, list[Record]]] = [
        (
            None,
            [
                Record(b"null key", timestamp_ms=base),
                Record(b"empty key", key=b"", timestamp_ms=base + 1),
                Record(b"", key=b"empty value", timestamp_ms=base + 2),
                Record(None, key=b"tombstone", timestamp_ms=base + 3),
                Record(b"h", key=b"h", headers=HEADERS, timestamp_ms=base + 4),
            ],
        ),
        *(
            (
                codec,
                [
                    Record(
                        f"{codec} record {n} ".encode() * 20,
                        key=None if n == 1 else f"{codec}-{n}".encode(),
                        headers=[("codec", codec.encode())] if n == 3 else [],
                        timestamp_ms=base + 100 * (i + 1) + n,
                    )
                    for n in range(5)
                ],
            )
            for i, codec in enumerate(CODECS)
        ),
    ]
    expected: list[tuple[Any, ...]] = []
    first_offsets: dict[str | None, int] = {}
    for codec, records in batches:
        written = await trio.to_thread.run_sync(produce_one_batch, kafka_broker, kafka_topic, records, codec)
        first_offsets[codec] = written[0][0]
        for (offset, timestamp), record in zip(written, records, strict=True):
            assert timestamp == record.timestamp_ms
            expected.append((offset, timestamp, record.key, record.value, [tuple(h) for h in record.headers]))
    end = expected[-1][0] + 1

    def broker_polls() -> int:
        return proxy.statistics().upstreams["/kafka"].broker_polls

    async with open_frames("trio-websocket", proxy.url + "/kafka") as client:
        # From the middle of each compressed batch, highest first: each such fetch lies
        # below what the proxy has seen so far, so it is read from Kafka, not its cache.
        for codec in reversed(CODECS):
            middle = first_offsets[codec] + 2
            polls = broker_polls()
            messages = fetched(await request(client, fetch(middle, kafka_topic, 0, middle)), middle)
            assert broker_polls() > polls, f"{codec}: answered without reading Kafka"
            assert [m.offset for m in messages] == list(range(middle, middle + len(messages))), codec
            assert [message_fields(m) for m in messages] == expected[middle : middle + len(messages)], codec
        everything = await fetch_all(client, kafka_topic, 0, 0, end)
    assert [message_fields(m) for m in everything] == expected

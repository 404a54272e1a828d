"""The ops endpoints' answers without a server: readiness and the metrics exposition (issue 14)."""

from __future__ import annotations

import json
import threading

from hypothesis import given
from hypothesis import strategies as st

from kafka_ws_trio._ops import Family, Histogram, MetricsEndpoint, Readiness, healthz
from kafka_ws_trio._proto import (
    ErrorCode,
    Record,
    answer_code,
    encode_error,
    encode_fetch,
    encode_list_offset,
    encode_ok,
    encode_pong,
    encode_subscribe_answer,
)
from kafka_ws_trio._session import LATENCY_BUCKETS, Tally


def test_healthz_is_a_plain_ok() -> None:
    answer = healthz()
    assert (answer.status, answer.body) == (200, b"ok\n")


def test_not_ready_until_every_route_is_checked_and_reachable() -> None:
    readiness = Readiness(["/a", "/b"])
    assert not readiness.ready
    assert json.loads(readiness.respond().body)["routes"] == {"/a": "not checked yet", "/b": "not checked yet"}
    readiness.checked("/a", None)
    readiness.checked("/b", "broker unreachable: 127.0.0.1:1")
    answer = readiness.respond()
    assert answer.status == 503
    assert json.loads(answer.body)["routes"] == {"/a": "reachable", "/b": "broker unreachable: 127.0.0.1:1"}
    readiness.checked("/b", None)
    assert readiness.ready and readiness.respond().status == 200


def test_shutdown_makes_it_unready_whatever_the_routes_say() -> None:
    readiness = Readiness(["/a"])
    readiness.checked("/a", None)
    readiness.shutting_down = True
    answer = readiness.respond()
    assert answer.status == 503
    assert json.loads(answer.body) == {"ready": False, "shutting_down": True, "routes": {"/a": "reachable"}}


def test_readyz_may_leave_kafka_out_but_never_shutdown() -> None:
    readiness = Readiness(["/a"])
    readiness.checked("/a", "broker unreachable: 127.0.0.1:1")
    assert readiness.respond().status == 503
    answer = readiness.respond("exclude=kafka")
    assert answer.status == 200
    assert json.loads(answer.body) == {
        "ready": True,
        "shutting_down": False,
        "routes": {"/a": "broker unreachable: 127.0.0.1:1"},
        "excluded": ["kafka"],
    }
    readiness.shutting_down = True
    assert readiness.respond("exclude=kafka").status == 503


def test_readyz_ignores_what_it_cannot_exclude_and_says_so() -> None:
    readiness = Readiness(["/a"])
    readiness.checked("/a", None)
    readiness.shutting_down = True
    answer = readiness.respond("exclude=kafka,+shutdown,,&exclude=kakfa")  # a typo must not pull a fleet
    assert answer.status == 503
    assert json.loads(answer.body)["excluded"] == ["kafka"]
    assert json.loads(answer.body)["unknown_excluded"] == ["kakfa", "shutdown"]


def test_a_proxy_is_ever_ready_once_a_probe_got_200_even_with_kafka_excluded() -> None:
    readiness = Readiness(["/a"])
    readiness.checked("/a", "broker unreachable: 127.0.0.1:1")
    assert not readiness.ever_ready
    assert readiness.respond().status == 503 and not readiness.ever_ready
    assert readiness.respond("exclude=kafka").status == 200
    assert readiness.ever_ready  # a balancer probing that may send it clients: a shutdown waits shutdown_delay


def test_families_are_rendered_by_prometheus_client_at_each_scrape() -> None:
    seen = [0]

    def families() -> list[Family]:
        seen[0] += 1
        return [
            Family.single("sessions_open", "sessions open now", "gauge", 3),
            Family("upstream_broker_polls", "polls", "counter", ("route",), ((('/k"1\\',), 7.0),)),
        ]

    endpoint = MetricsEndpoint(families)
    text = endpoint.respond().body.decode()
    assert "# TYPE kafka_ws_trio_sessions_open gauge\nkafka_ws_trio_sessions_open 3.0\n" in text
    assert "# TYPE kafka_ws_trio_upstream_broker_polls_total counter" in text  # the library adds the _total
    assert 'kafka_ws_trio_upstream_broker_polls_total{route="/k\\"1\\\\"} 7.0' in text  # escaped by the library
    endpoint.render()
    assert seen[0] == 2  # built afresh at each scrape, never cached


def test_a_snapshot_is_rendered_in_another_thread_without_asking_for_the_families_again() -> None:
    asked = [0]

    def families() -> list[Family]:
        asked[0] += 1
        return [Family.single("sessions_open", "sessions open now", "gauge", 5)]

    endpoint = MetricsEndpoint(families)
    snapshot = endpoint.snapshot()
    rendered: list[bytes] = []
    thread = threading.Thread(target=lambda: rendered.append(endpoint.render(snapshot)))
    thread.start()
    thread.join(timeout=10)
    assert asked[0] == 1
    text = rendered[0].decode()
    assert "kafka_ws_trio_sessions_open 5.0" in text
    assert "process_resident_memory_bytes" in text and "python_info{" in text  # the library's collectors
    assert "kafka_ws_trio_sessions_open" not in endpoint.render(()).decode()  # nothing kept from the last render


def test_a_histogram_s_buckets_are_made_cumulative_with_its_sum_and_count() -> None:
    histogram = Histogram("command_seconds", "latency", ("kind",), (0.01, 0.1), ((("fetch",), (2, 1, 1), 0.75),))
    text = MetricsEndpoint(lambda: [histogram]).render().decode()
    for line in (
        'kafka_ws_trio_command_seconds_bucket{kind="fetch",le="0.01"} 2.0',
        'kafka_ws_trio_command_seconds_bucket{kind="fetch",le="0.1"} 3.0',
        'kafka_ws_trio_command_seconds_bucket{kind="fetch",le="+Inf"} 4.0',
        'kafka_ws_trio_command_seconds_count{kind="fetch"} 4.0',
        'kafka_ws_trio_command_seconds_sum{kind="fetch"} 0.75',
    ):
        assert line in text


def test_the_tally_puts_each_latency_in_the_first_bucket_it_fits() -> None:
    tally = Tally()
    for seconds in (0.0005, 0.001, 0.0011, 30.0):
        tally.took("fetch", seconds)
    counts = tally.latency["fetch"]
    assert counts[0] == 2  # at most 1 ms: 0.5 ms and exactly 1 ms
    assert counts[1] == 1  # 1.1 ms: the 2.5 ms bucket
    assert counts[-1] == 1 and len(counts) == len(LATENCY_BUCKETS) + 1  # past the last bound: +Inf
    assert tally.latency_sum["fetch"] == 0.0005 + 0.001 + 0.0011 + 30.0


@given(
    sequence=st.integers(min_value=0, max_value=2**63 - 1),
    code=st.sampled_from(list(ErrorCode)).filter(lambda c: c != ErrorCode.UNSPECIFIED),
    message=st.text(max_size=300),
)
def test_answer_code_reads_an_error_response_s_code(sequence: int, code: ErrorCode, message: str) -> None:
    assert answer_code(encode_error(sequence, code, message)) == int(code)


@given(sequence=st.integers(min_value=0, max_value=2**63 - 1), state=st.binary(max_size=100))
def test_answer_code_is_0_for_answers_that_are_not_errors(sequence: int, state: bytes) -> None:
    for frame in (
        encode_pong(sequence, state),
        encode_ok(sequence),
        encode_list_offset(sequence, 42),
        encode_subscribe_answer(sequence, [(0, 5)]),
        encode_fetch(sequence, [Record(offset=7, timestamp=1, key=b"k", value=state)], 1 << 20)[0],
    ):
        assert answer_code(frame) == 0


@given(st.binary(max_size=64))
def test_answer_code_never_raises_on_garbage(frame: bytes) -> None:
    assert answer_code(frame) >= 0


def test_the_tally_counts_answers_by_kind_and_code() -> None:
    tally = Tally()
    tally.answered("fetch", encode_error(3, ErrorCode.TOPIC_NOT_FOUND, "not found topic"))
    tally.answered("fetch", (b"head", b"body"))  # an answer from memory: head and body, never an error
    tally.answered("ping", encode_pong(4, b""))
    assert tally.results == {("fetch", 10): 1, ("fetch", 0): 1, ("ping", 0): 1}

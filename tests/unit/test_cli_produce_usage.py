"""``kafka-ws-trio produce`` without a broker: its help, the mistakes it refuses before connecting
(one line on stderr, no traceback), and the pure parts: reading lines, cutting commands, the
summary and the status line. What it writes is checked against the real broker in
tests/integration/test_cli_produce.py."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections import deque
from pathlib import Path
from typing import Final

import pytest

from kafka_ws_trio._cli import (
    COMMAND_OVERHEAD_BYTES,
    FAILURES_LISTED,
    PRODUCE_COMMAND_BYTES,
    PRODUCE_FRAME_BYTES,
    _build_parser,
    _Item,
    _Lines,
    _next_command,
    _produce_plan,
    _ProducePlan,
    _stop_reason,
    _Tally,
    _Unsendable,
    produce_status_text,
    produce_summary,
)
from kafka_ws_trio._proto import Acks, ErrorCode, NotWritten, OutRecord, Written, encode_produce_request

COMMAND = str(Path(sys.executable).parent / "kafka-ws-trio")
#: No proxy listens on port 9: a mistake noticed only when connecting would say so instead.
NOWHERE: Final = "ws://127.0.0.1:9/kafka"
KIB: Final = 1024


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([COMMAND, *args], capture_output=True, text=True, timeout=60, input="")


def _plan(*options: str) -> _ProducePlan:
    return _produce_plan(_build_parser().parse_args(["produce", NOWHERE, "--topic", "t", *options]))


def test_help_lists_produce_and_its_options_with_examples() -> None:
    top = _run("--help")
    assert top.returncode == 0
    assert "produce" in top.stdout
    help_text = _run("produce", "--help")
    assert help_text.returncode == 0
    text = " ".join(help_text.stdout.split())
    for needed in (
        "--topic",
        "--key K",
        "--header K=V",
        "--partition N",
        "--acks {all,leader,none}",
        "--file PATH [PATH ...]",
        "--batch N",
        "--timeout S",
        "each line of stdin is one record's value",
        "Exit status 0 when every record was written",
        "echo hello | kafka-ws-trio produce ws://127.0.0.1:9080/kafka --topic demo",
    ):
        assert needed in text, needed


@pytest.mark.parametrize(
    ("options", "first_line"),
    [
        (
            ["--header", "source"],
            "kafka-ws-trio: error: --header takes KEY=VALUE, not 'source'",
        ),
        (
            ["--header", "=web"],
            "kafka-ws-trio: error: --header takes KEY=VALUE, not '=web'",
        ),
        (
            ["--partition", "-1"],
            "kafka-ws-trio: error: --partition must be 0 or more",
        ),
        (
            ["--batch", "0"],
            "kafka-ws-trio: error: --batch takes 1 to 10000 records (the most one produce command may carry), not 0",
        ),
        (
            ["--batch", "10001"],
            "kafka-ws-trio: error: --batch takes 1 to 10000 records (the most one produce command may carry), "
            "not 10001",
        ),
        (
            ["--file", "/no/such/file"],
            "kafka-ws-trio: error: cannot read --file /no/such/file: No such file or directory",
        ),
        (
            ["--file", "/"],
            "kafka-ws-trio: error: cannot read --file /: Is a directory",
        ),
    ],
    ids=["header-without-value", "header-without-key", "partition-below-0", "batch-0", "batch-10001", "no-file", "dir"],
)
def test_produce_mistakes_get_one_sentence_before_any_connection(options: list[str], first_line: str) -> None:
    result = _run("produce", NOWHERE, "--topic", "t", *options)
    assert result.returncode == 1
    assert result.stderr.splitlines()[0] == first_line
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_produce_to_a_url_that_is_not_websocket_is_refused_before_connecting() -> None:
    result = _run("produce", "http://127.0.0.1:9080/kafka", "--topic", "t")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "kafka-ws-trio: error: the proxy URL must start with ws:// or wss://, "
        "e.g. ws://127.0.0.1:9080/kafka (got 'http://127.0.0.1:9080/kafka')"
    ]


def test_produce_with_an_unknown_acks_level_is_a_usage_error() -> None:
    result = _run("produce", NOWHERE, "--topic", "t", "--acks", "most")
    assert result.returncode == 2
    assert "argument --acks: invalid choice: 'most'" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.timeout(30)
def test_produce_to_a_proxy_that_is_not_running_says_so_in_one_line() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, never listening: refused
        result = subprocess.run(
            [COMMAND, "produce", f"ws://127.0.0.1:{port}/kafka", "--topic", "t"],
            input="hello\n",
            capture_output=True,
            text=True,
            timeout=25,
        )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"kafka-ws-trio: error: could not connect to the proxy at 127.0.0.1:{port}: "
        "nothing is listening there (connection refused); is the proxy running, and on that port?"
    ]
    assert result.stdout == ""


def test_produce_options_become_the_plan_of_every_record(tmp_path: Path) -> None:
    one, two = tmp_path / "one.json", tmp_path / "two.bin"
    one.write_text("{}")
    two.write_bytes(b"\x00")
    plan = _plan(
        "--key",
        "eu-1",
        "--header",
        "source=cli",
        "--header",
        "query=a=b",
        "--header",
        "empty=",
        "--partition",
        "2",
        "--acks",
        "leader",
        "--batch",
        "7",
        "--file",
        str(one),
        str(two),
        "--file",
        str(one),
    )
    assert plan.record(b"v") == OutRecord(
        key=b"eu-1",
        value=b"v",
        headers=(("source", b"cli"), ("query", b"a=b"), ("empty", b"")),
        partition=2,
    )
    assert (plan.acks, plan.batch, plan.files) == (Acks.LEADER, 7, (str(one), str(two), str(one)))
    assert [plan.origin(i) for i in range(3)] == [str(one), str(two), str(one)]


def test_produce_defaults_read_stdin_and_let_the_route_and_producer_choose() -> None:
    plan = _plan()
    assert plan.record(b"v") == OutRecord(value=b"v")
    assert (plan.acks, plan.batch, plan.files) == (Acks.ROUTE_DEFAULT, 100, ())
    assert [plan.origin(i) for i in (0, 41)] == ["line 1", "line 42"]


def test_lines_are_cut_at_newlines_across_reads_keeping_empty_ones_and_an_unended_last() -> None:
    lines = _Lines(limit=100)
    assert lines.feed(b"one\ntw") == [b"one"]
    assert lines.feed(b"o") == []
    assert lines.feed(b"\n\nthree\r\n") == [b"two", b"", b"three\r"]
    assert lines.end() == []
    assert lines.feed(b"last") == []
    assert lines.end() == [b"last"]


def test_a_line_longer_than_the_limit_is_kept_only_as_its_size_and_the_next_lines_are_whole() -> None:
    lines = _Lines(limit=10)
    assert lines.feed(b"x" * 8) == []
    assert lines.feed(b"y" * 8) == []
    assert lines.feed(b"z" * 8 + b"\nok\n" + b"w" * 11) == [_Unsendable(24), b"ok"]
    assert lines.end() == [_Unsendable(11)]


def _cut(values: list[_Item], plan: _ProducePlan) -> list[list[bytes] | _Unsendable]:
    pending: deque[_Item] = deque(values)
    commands = []
    while pending:
        commands.append(_next_command(pending, plan))
    return commands


def test_commands_hold_at_most_batch_records() -> None:
    assert [len(c) for c in _cut([b"v"] * 250, _plan()) if isinstance(c, list)] == [100, 100, 50]
    assert [len(c) for c in _cut([b"v"] * 5, _plan("--batch", "2")) if isinstance(c, list)] == [2, 2, 1]


def test_commands_stay_under_their_byte_budget_and_a_large_record_goes_alone() -> None:
    plan = _plan()
    third = b"x" * (200 * KIB)
    large = b"y" * (700 * KIB)
    commands = _cut([third, third, third, large, third], plan)
    assert [[len(v) // KIB for v in c] for c in commands if isinstance(c, list)] == [[200, 200], [200], [700], [200]]
    for command in commands:
        assert isinstance(command, list)
        frame = encode_produce_request(1, plan.topic, [plan.record(v) for v in command])
        assert len(frame) < PRODUCE_FRAME_BYTES


def test_a_record_no_command_can_carry_is_set_apart_in_its_place() -> None:
    plan = _plan("--key", "k")
    too_large = b"z" * (plan.largest_value + 1)
    assert _cut([b"a", b"b", too_large, b"c", _Unsendable(5_000_000), b"d"], plan) == [
        [b"a", b"b"],
        _Unsendable(len(too_large)),
        [b"c"],
        _Unsendable(5_000_000),
        [b"d"],
    ]


@pytest.mark.parametrize("size", [0, 127, 128, 16_383, 16_384, 2**20 - 4096])
@pytest.mark.parametrize("headers", [(), (("h", b""),), (("source", b"cli"), ("trace", b"x" * 300))])
def test_the_overhead_bounds_the_encoded_size_so_the_largest_value_fits_a_frame(
    size: int, headers: tuple[tuple[str, bytes], ...]
) -> None:
    """A record's bytes in a command are at most its value plus ``plan.overhead``, and a command at most
    its records plus COMMAND_OVERHEAD_BYTES and the topic: so the largest value alone fits a frame."""
    topic = "t" * 249  # the longest name Kafka allows
    options = ["--key", "k" * 40, "--partition", "2147483647"]
    for key, value in headers:
        options += ["--header", f"{key}={value.decode()}"]
    plan = _produce_plan(_build_parser().parse_args(["produce", NOWHERE, "--topic", topic, *options]))
    value = b"v" * min(size, plan.largest_value)
    for count in (1, 3):
        frame = encode_produce_request(2**62, topic, [plan.record(value)] * count, acks=Acks.ALL)
        assert len(frame) <= count * (len(value) + plan.overhead) + COMMAND_OVERHEAD_BYTES + len(topic)
    largest = encode_produce_request(2**62, topic, [plan.record(b"v" * plan.largest_value)], acks=Acks.ALL)
    assert len(largest) <= PRODUCE_FRAME_BYTES
    assert PRODUCE_COMMAND_BYTES <= PRODUCE_FRAME_BYTES // 2


def _tally(results: list[Written | NotWritten], *, taken: int | None = None, sent: int | None = None) -> _Tally:
    tally = _Tally(taken=len(results) if taken is None else taken, sent=len(results) if sent is None else sent)
    tally.record(0, results)
    return tally


def test_summary_of_everything_written_names_each_partitions_first_and_last_offset() -> None:
    results: list[Written | NotWritten] = [Written(2, 10 + i, 0) for i in range(3)] + [Written(0, 7, 0)]
    assert produce_summary("orders", _tally(results), _plan().origin) == (
        "wrote 4 records to orders\n  partition 0: 1 record, offset 7\n  partition 2: 3 records, offsets 10 to 12"
    )


def test_summary_lists_the_first_failures_with_where_they_came_from_then_counts_the_rest() -> None:
    failures = FAILURES_LISTED + 5
    results: list[Written | NotWritten] = [Written(0, 0, 0)]
    results += [NotWritten(-1, ErrorCode.RECORD_TOO_LARGE, f"too large {i}") for i in range(failures)]
    lines = produce_summary("t", _tally(results), _plan().origin).splitlines()
    assert lines[:3] == [
        f"wrote 1 of {failures + 1} records to t",
        "  partition 0: 1 record, offset 0",
        f"{failures} records failed:",
    ]
    assert lines[3] == "  record 1 (line 2): too large 0"
    assert lines[3 + FAILURES_LISTED - 1] == f"  record {FAILURES_LISTED} (line {FAILURES_LISTED + 1}): too large 19"
    assert lines[3 + FAILURES_LISTED :] == ["  ... and 5 more"]


def test_summary_of_acks_none_an_empty_input_an_unanswered_command_and_ctrl_c() -> None:
    assert produce_summary("t", _tally([Written(1, -1, -1)] * 2), _plan().origin) == (
        "wrote 2 records to t\n  partition 1: 2 records, offsets not known (acks none)"
    )
    assert produce_summary("t", _Tally(), _plan().origin) == "nothing to write to t: the input was empty"
    tally = _tally([Written(0, 5, 0)], taken=101, sent=101)
    tally.interrupted = True
    assert produce_summary("t", tally, _plan().origin).splitlines() == [
        "wrote 1 of 101 records to t",
        "  partition 0: 1 record, offset 5",
        "100 records sent got no answer: they may or may not have been written",
        "stopped by Ctrl-C before the input ended",
    ]


def test_a_first_command_failing_whole_for_a_reason_of_every_record_stops_produce() -> None:
    missing = [NotWritten(-1, ErrorCode.TOPIC_NOT_FOUND, "failed ..., err: not found topic")] * 3
    assert _stop_reason("orders", _Tally(), missing) == (
        "topic 'orders' not found; nothing was written (the proxy does not create topics)"
    )
    nowhere = [NotWritten(7, ErrorCode.PARTITION_NOT_FOUND, "failed ..., err: not found partition (the topic has 3)")]
    assert _stop_reason("t", _Tally(), nowhere) == (
        "nothing was written: failed ..., err: not found partition (the topic has 3)"
    )
    # Reasons of one record, a mix, or something already written: produce goes on.
    assert _stop_reason("t", _Tally(), [NotWritten(0, ErrorCode.RECORD_TOO_LARGE, "too large")]) is None
    assert _stop_reason("t", _Tally(), [missing[0], nowhere[0]]) is None
    assert _stop_reason("t", _tally([Written(0, 0, 0)]), missing) is None


def test_the_status_line_shows_sent_acknowledged_failed_and_records_per_second_within_the_width() -> None:
    assert produce_status_text(12_000, 11_500, 3, 5432.4, 80) == (
        "12,000 records sent, 11,500 acknowledged, 3 failed; 5,432/s"
    )
    cut = produce_status_text(12_000, 11_500, 3, 5432.4, 30)
    assert len(cut) == 30
    assert cut.endswith("...")

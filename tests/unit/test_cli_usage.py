"""The console command without a broker: its help, a bad config refused at start, and
``tune_gc``. Commands run as separate processes, as a user runs them."""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Final

import pytest

from kafka_ws_trio.client import DEFAULT_CONNECT_TIMEOUT

COMMAND = str(Path(sys.executable).parent / "kafka-ws-trio")


def test_a_bad_config_fails_at_start_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "proxy.toml"
    config.write_text(
        '[server]\nport = 9080\n[[routes]]\nuri = "/kafka"\nnodes = ["127.0.0.1:9092"]\n'
        'sasl = { mechanism = "MD5", username = "u", password = "hunter2" }\n'
    )
    result = subprocess.run([COMMAND, "serve", "--config", str(config)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "routes[0].sasl.mechanism" in result.stderr
    assert "hunter2" not in result.stderr


def test_help_explains_every_command() -> None:
    result = subprocess.run([COMMAND, "--help"], capture_output=True, text=True, timeout=60, check=True)
    for command in ("serve", "offsets", "tail", "broker"):
        assert command in result.stdout
    serve = subprocess.run([COMMAND, "serve", "--help"], capture_output=True, text=True, timeout=60, check=True)
    for text in ("--config", "--kafka", "--host", "--port", "SIGTERM"):
        assert text in serve.stdout


def test_help_stands_alone_for_a_pip_user_without_a_checkout() -> None:
    broker = subprocess.run([COMMAND, "broker", "--help"], capture_output=True, text=True, timeout=60, check=True)
    text = " ".join(broker.stdout.split())
    for needed in (
        "Java 17",
        "Maven Central",
        "$KAFKA_WS_TRIO_HOME",
        "~/.cache/kafka-ws-trio",
        "kafka-ws-trio broker up",
    ):
        assert needed in text
    serve = subprocess.run([COMMAND, "serve", "--help"], capture_output=True, text=True, timeout=60, check=True)
    # Checkout-only paths appear only as such.
    for help_text in (text, " ".join(serve.stdout.split())):
        for path in re.finditer(r"(scripts|examples)/", help_text):
            nearby = help_text[max(0, path.start() - 60) : path.end() + 60]
            assert "checkout" in nearby, nearby


def test_tune_gc_freezes_what_exists_and_raises_the_thresholds() -> None:
    import gc

    from kafka_ws_trio import tune_gc
    from kafka_ws_trio._runtime import GC_THRESHOLDS

    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert gc.get_freeze_count() > 0
        assert GC_THRESHOLDS[0] > before[0]
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_serve_on_a_busy_port_says_so_in_one_line_without_a_traceback() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [COMMAND, "serve", "--kafka", "127.0.0.1:9", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert result.stderr.splitlines()[0] == (
        f"kafka-ws-trio: error: cannot listen on 127.0.0.1:{port}: "
        f"the port is already in use (another proxy?); try --port {port + 1}"
    )
    assert "Traceback" not in result.stderr


class _Group(Exception):
    """Shaped like an exception group (Python 3.10 has no built-in one): errors leave Trio nurseries so."""

    def __init__(self, *exceptions: BaseException) -> None:
        super().__init__("group")
        self.exceptions = exceptions


def test_listen_failures_are_found_inside_nested_exception_groups() -> None:
    import errno

    from kafka_ws_trio._cli import listen_failure

    busy = OSError(errno.EADDRINUSE, "Address already in use")
    assert listen_failure(_Group(_Group(busy)), "0.0.0.0", 9080) == (
        "cannot listen on 0.0.0.0:9080: the port is already in use (another proxy?); try --port 9081"
    )
    assert listen_failure(_Group(OSError(errno.EADDRNOTAVAIL, "x")), "10.9.9.9", 80) == (
        "cannot listen on 10.9.9.9:80: this machine has no such address; check --host"
    )
    assert listen_failure(_Group(busy, busy), "h", 1) is None, "two errors are not one listening failure"
    assert listen_failure(ValueError("no"), "h", 1) is None


@pytest.mark.parametrize(
    ("args", "first_line"),
    [
        (
            ["tail", "http://127.0.0.1:9080/kafka", "--topic", "t"],
            "kafka-ws-trio: error: the proxy URL must start with ws:// or wss://, "
            "e.g. ws://127.0.0.1:9080/kafka (got 'http://127.0.0.1:9080/kafka')",
        ),
        (
            ["offsets", "127.0.0.1:9080/kafka", "--topic", "t"],
            "kafka-ws-trio: error: the proxy URL must start with ws:// or wss://, "
            "e.g. ws://127.0.0.1:9080/kafka (got '127.0.0.1:9080/kafka')",
        ),
        (
            ["tail", "ws://127.0.0.1:9/kafka", "--topic", "t", "--from", "bogus"],
            "kafka-ws-trio: error: --from takes earliest, latest, an offset, a time (ISO 8601, "
            "e.g. 2024-05-01T12:00:00Z) or an age (e.g. -30s, -5m, -2h, -1d), not 'bogus'",
        ),
        (
            ["tail", "ws://127.0.0.1:9/kafka", "--topic", "t", "--from", "-5x"],
            "kafka-ws-trio: error: --from takes earliest, latest, an offset, a time (ISO 8601, "
            "e.g. 2024-05-01T12:00:00Z) or an age (e.g. -30s, -5m, -2h, -1d), not '-5x'",
        ),
        (
            ["tail", "ws://127.0.0.1:9/kafka", "--topic", "t", "--partition", "all", "--from", "5"],
            "kafka-ws-trio: error: --from OFFSET names an offset of one partition; give --partition N too",
        ),
        (
            ["tail", "ws://127.0.0.1:9/kafka", "--topic", "t", "--header", "=web"],
            "kafka-ws-trio: error: --header takes KEY=VALUE or KEY, not '=web'",
        ),
        (
            ["offsets", "ws://127.0.0.1:9/kafka", "--topic", "t", "--at", "yesterday"],
            "kafka-ws-trio: error: --at takes earliest, latest or milliseconds, not 'yesterday'",
        ),
        (
            ["tail", "ws://127.0.0.1:9/kafka", "--topic", "t", "--max", "-1"],
            "kafka-ws-trio: error: --max must be 0 or more",
        ),
    ],
)
def test_mistakes_on_the_command_line_get_one_sentence_before_any_connection(args: list[str], first_line: str) -> None:
    # Port 9 has no proxy: a message about connecting would mean the mistake was noticed too late.
    result = subprocess.run([COMMAND, *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.splitlines()[0] == first_line
    assert "Traceback" not in result.stderr


def test_tail_max_0_prints_nothing() -> None:
    result = subprocess.run(
        [COMMAND, "tail", "ws://127.0.0.1:9/kafka", "--topic", "t", "--max", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


#: Seconds a connection failure may take beyond the command's own start-up and exit: half the
#: client's connect timeout, which the old client waited out. (Start-up is measured in the same
#: test: under load, Python and its imports alone took over 5 s.)
QUICK_FAILURE_S = DEFAULT_CONNECT_TIMEOUT / 2


@pytest.fixture(scope="module")
def startup_seconds() -> float:
    """How long the command takes to fail with no network at all (a URL it refuses before connecting)."""
    started = time.monotonic()
    result = _run("offsets", "http://127.0.0.1:9/kafka", "--topic", "t")
    assert result.returncode == 1 and "must start with ws://" in result.stderr, result.stderr
    return time.monotonic() - started


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([COMMAND, *args], capture_output=True, text=True, timeout=25)


def _serve_once(answer: bytes | None) -> tuple[socket.socket, threading.Thread]:
    """A TCP server for one connection: it reads the upgrade request, writes ``answer`` and closes
    (``None``: it closes without a word).

    It always reads the request first: closing with the request unread makes the kernel reset the
    connection instead, or not, depending on whether the request had arrived yet (a race the
    ``closes-at-once`` case lost now and then under load, and then said "reset").
    """
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def run() -> None:
        connection, _ = server.accept()
        with connection:
            request = b""
            while b"\r\n\r\n" not in request and (data := connection.recv(4096)):
                request += data
            if answer is not None:
                connection.sendall(answer)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return server, thread


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (
            None,
            "not a WebSocket server (it closed the connection without an HTTP answer to the upgrade request)",
        ),
        (
            b"\x00\x01garbage\n",
            "not a WebSocket server (it answered b'\\x00\\x01garbage\\n', which is not HTTP)",
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<html>\n<body>hi</body>\n</html>\n",
            "it answered 'HTTP/1.1 200 OK' instead of switching to WebSocket, then closed the connection",
        ),
        (b"\x15\x03\x03\x00\x02\x02\x46", "it answered in TLS; use wss://"),
    ],
    ids=["closes-at-once", "garbage", "http-200-until-close", "tls"],
)
def test_a_server_that_is_not_the_proxy_is_named_at_once(
    answer: bytes | None, reason: str, startup_seconds: float
) -> None:
    startup = startup_seconds
    server, thread = _serve_once(answer)
    with server:
        port = server.getsockname()[1]
        started = time.monotonic()
        result = _run("offsets", f"ws://127.0.0.1:{port}/kafka", "--topic", "t")
        elapsed = time.monotonic() - started
    thread.join(5)
    assert result.returncode == 1
    assert result.stderr.splitlines()[0] == (
        f"kafka-ws-trio: error: could not connect to the proxy at 127.0.0.1:{port}: {reason}"
    )
    assert "Traceback" not in result.stderr
    assert elapsed - startup < QUICK_FAILURE_S, f"{elapsed:.1f} s, of which {startup:.1f} s start-up"


@pytest.mark.timeout(30)
def test_an_http_error_page_is_quoted_on_one_line() -> None:
    page = b"<html>\n<body>\n" + b"x" * 300 + b"\n</body>\n</html>\n"
    server, thread = _serve_once(
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: %d\r\n\r\n%s" % (len(page), page)
    )
    with server:
        port = server.getsockname()[1]
        result = _run("tail", f"ws://127.0.0.1:{port}/kafka", "--topic", "t")
    thread.join(5)
    assert result.returncode == 1
    assert result.stderr.splitlines()[0] == (
        "kafka-ws-trio: error: the proxy refused the connection with HTTP 503 "
        f"(<html> <body> {'x' * 83}...); is that the proxy's address?"
    )
    assert "Traceback" not in result.stderr


@pytest.mark.timeout(30)
def test_nothing_listening_and_an_unknown_name_are_said_so() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, never listening: refused
        refused = _run("offsets", f"ws://127.0.0.1:{port}/kafka", "--topic", "t")
    unknown = _run("offsets", "ws://no-such-host.invalid:9080/kafka", "--topic", "t")
    assert refused.returncode == 1
    assert refused.stderr.splitlines()[0] == (
        f"kafka-ws-trio: error: could not connect to the proxy at 127.0.0.1:{port}: "
        "nothing is listening there (connection refused); is the proxy running, and on that port?"
    )
    assert unknown.returncode == 1
    # The resolver's own words end the line (they differ between C libraries).
    assert unknown.stderr.splitlines()[0].startswith(
        "kafka-ws-trio: error: could not connect to the proxy at no-such-host.invalid:9080: "
        "the name 'no-such-host.invalid' does not resolve ("
    )
    assert "Traceback" not in refused.stderr + unknown.stderr


@pytest.mark.timeout(30)
async def test_a_server_that_never_answers_fails_at_the_connect_timeout_saying_so() -> None:
    from kafka_ws_trio.client import ConnectFailed, open_client

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # the kernel completes the TCP handshake; nobody ever reads
        port = silent.getsockname()[1]
        with pytest.raises(ConnectFailed) as failed:
            async with open_client(f"ws://127.0.0.1:{port}/kafka", connect_timeout=0.5):
                pytest.fail("connected to a server that never answered")
    assert str(failed.value) == (
        f"could not connect to the proxy at 127.0.0.1:{port}: "
        "no answer to the WebSocket upgrade request came within 0.5 s"
    )


@pytest.mark.timeout(30)
async def test_an_error_inside_the_client_block_comes_out_as_itself() -> None:
    """open_client runs a nursery; the caller still gets its own exception, not a group of one."""
    import trio
    from trio_websocket import WebSocketRequest, serve_websocket

    from kafka_ws_trio.client import open_client

    async def accept(request: WebSocketRequest) -> None:
        ws = await request.accept()
        await ws.get_message()

    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_websocket, accept, "127.0.0.1", 0, None)
        with pytest.raises(LookupError, match="mine"):
            async with open_client(f"ws://127.0.0.1:{server.port}/kafka"):
                raise LookupError("mine")
        nursery.cancel_scope.cancel()


NOW: Final = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
NOW_MS: Final = 1_714_564_800_000


@pytest.mark.parametrize(
    ("text", "start"),
    [
        ("earliest", ("list", -2)),
        ("latest", ("list", -1)),
        ("42", ("offset", 42)),
        ("-30s", ("time", NOW_MS - 30_000)),
        ("-5m", ("time", NOW_MS - 300_000)),
        ("-2h", ("time", NOW_MS - 7_200_000)),
        ("-1d", ("time", NOW_MS - 86_400_000)),
        ("2024-05-01T12:00:00Z", ("time", NOW_MS)),
        ("2024-05-01T14:00:00.250+02:00", ("time", NOW_MS + 250)),
    ],
)
def test_tail_from_reads_offsets_iso_times_and_ages(text: str, start: tuple[str, int]) -> None:
    from kafka_ws_trio._cli import _parse_from

    assert _parse_from(text, NOW) == start


def test_tail_from_an_age_is_joined_to_its_option_so_argparse_does_not_take_it_for_one() -> None:
    from kafka_ws_trio._cli import _build_parser, _joined_dashed_values

    argv = _joined_dashed_values(["tail", "ws://h/kafka", "--topic", "t", "--from", "-5m", "--max", "-1"])
    assert argv == ["tail", "ws://h/kafka", "--topic", "t", "--from=-5m", "--max", "-1"]
    assert _build_parser().parse_args(argv).start == "-5m"


def test_the_status_line_shows_records_per_second_and_each_partitions_lag_within_the_width() -> None:
    from kafka_ws_trio._cli import status_text

    assert status_text(12345, 1234.4, {2: 0, 0: 1500}, 80) == "12,345 records, 1,234/s; lag p0 1,500, p2 0"
    assert status_text(0, 0.0, {}, 80) == "0 records, 0/s; lag not known yet"
    cut = status_text(5, 1.0, {p: 100 for p in range(50)}, 40)
    assert len(cut) == 40
    assert cut.endswith("...")


@pytest.mark.timeout(30)
async def test_tail_reads_a_proxy_without_streams_with_fetch() -> None:
    """APISIX answers a subscribe 'unknown command': tail falls back to Fetch for one partition, unfiltered."""
    import trio
    from trio_websocket import ConnectionClosed, WebSocketRequest, serve_websocket

    from kafka_ws_trio._proto import (
        ErrorCode,
        Fetch,
        ListOffset,
        Record,
        Subscribe,
        decode_request,
        encode_error,
        encode_fetch,
        encode_list_offset,
    )

    records = [Record(offset, 0, None, b"v%d" % offset) for offset in range(3)]

    async def apisix(request: WebSocketRequest) -> None:
        ws = await request.accept()
        with contextlib.suppress(ConnectionClosed):  # tail is done
            while True:
                command = decode_request(await ws.get_message())
                if isinstance(command, Subscribe):
                    await ws.send_message(encode_error(command.sequence, ErrorCode.UNKNOWN_COMMAND, "unknown command"))
                elif isinstance(command, ListOffset):
                    await ws.send_message(encode_list_offset(command.sequence, 1))
                elif isinstance(command, Fetch):
                    await ws.send_message(encode_fetch(command.sequence, records[command.offset :], 1 << 20)[0])

    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_websocket, apisix, "127.0.0.1", 0, None)
        url = f"ws://127.0.0.1:{server.port}/kafka"
        with trio.fail_after(25):
            tail = [COMMAND, "tail", url, "--topic", "t"]
            fetched = await trio.run_process([*tail, "--from", "-5m"], capture_stdout=True)
            refused = [
                await trio.run_process([*tail, *option], capture_stderr=True, check=False)
                for option in (["--key", "k"], ["--read-committed"])
            ]
        nursery.cancel_scope.cancel()
    assert [line.split("\t")[1] for line in fetched.stdout.decode().splitlines()] == ["v1", "v2"]
    for result in refused:
        assert result.returncode == 1
        assert result.stderr.decode().splitlines() == [
            "kafka-ws-trio: error: the proxy does not serve streams (APISIX, or an older kafka-ws-trio), "
            "which --partition all, --key, --key-prefix, --header and --read-committed need"
        ]

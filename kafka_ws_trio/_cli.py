"""The ``kafka-ws-trio`` console command: serve, offsets, tail, broker."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import re
import shutil
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Final, TextIO

import attrs
import trio

from ._config import ConfigError, ProxyConfig, ServerConfig, load_config
from ._runtime import tune_gc
from ._version import __version__

if TYPE_CHECKING:
    from ._proto import Filter, Record
    from .client import PubSubClient, Stream

log = logging.getLogger("kafka_ws_trio.cli")

#: Exit statuses.
EXIT_OK: Final = 0
EXIT_ERROR: Final = 1
EXIT_USAGE: Final = 2
#: Characters of an HTTP error body quoted when a server refuses the WebSocket upgrade.
QUOTED_BODY_CHARS: Final = 100
#: Seconds between redraws of tail's status line (on a terminal only).
STATUS_INTERVAL: Final = 0.25
#: Seconds of history tail's records/s is measured over.
RATE_SPAN: Final = 2.0
#: An age for tail --from: a number and its unit.
_AGE: Final = re.compile(r"-(\d+)([smhd])")
_AGE_UNITS: Final = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_FROM_WORDING: Final = (
    "--from takes earliest, latest, an offset, a time (ISO 8601, e.g. 2024-05-01T12:00:00Z) "
    "or an age (e.g. -30s, -5m, -2h, -1d)"
)


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kafka-ws-trio",
        description="A WebSocket proxy that lets browsers and other clients read Apache Kafka, "
        "speaking Apache APISIX's PubSub protocol.",
        epilog="Run 'kafka-ws-trio COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = sub.add_parser(
        "serve",
        help="run the proxy",
        description="Run the proxy until SIGINT or SIGTERM; then close every session with 1001 and exit 0.",
        epilog="Examples:\n  kafka-ws-trio serve --config proxy.toml\n"
        "  kafka-ws-trio serve --kafka 127.0.0.1:9092   (one route, /kafka, no TLS or SASL)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = serve.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--config",
        metavar="FILE",
        help="TOML config file; the README's Configuration section lists its keys (examples/proxy.toml in a checkout)",
    )
    source.add_argument(
        "--kafka", metavar="HOST:PORT[,HOST:PORT...]", help="serve one route, /kafka, to these plaintext brokers"
    )
    serve.add_argument("--host", help="listen on this address (overrides [server] host)")
    serve.add_argument("--port", type=int, help="listen on this port, 0 for any free one (overrides [server] port)")
    serve.add_argument(
        "--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="overrides [server] log_level"
    )

    offsets = sub.add_parser(
        "offsets",
        help="ask a proxy for a partition's offset (ListOffset)",
        epilog="Example: kafka-ws-trio offsets ws://127.0.0.1:9080/kafka --topic demo --partition 0 --at earliest",
    )
    _client_args(offsets)
    offsets.add_argument(
        "--at",
        default="latest",
        metavar="earliest|latest|MS",
        help="earliest, latest (the next offset to be written; default), or a time in ms since the epoch",
    )

    tail = sub.add_parser(
        "tail",
        help="print a topic's records through a proxy (a stream)",
        description="Print records of a topic, one a line: offset, time, key and headers, a tab, the value\n"
        "(partition= first when more than one partition is read). Without --follow, stop once\n"
        "every partition read is at its end.\n\n"
        "The proxy sends the records as a stream, filtered on its side. A proxy without streams\n"
        "(APISIX, or an older kafka-ws-trio) is read with Fetch: one partition, no filters.\n"
        "On a terminal, stderr shows a status line: records/s and each partition's lag.",
        epilog="Examples:\n"
        "  kafka-ws-trio tail ws://127.0.0.1:9080/kafka --topic demo --partition all --from -5m --follow\n"
        "  kafka-ws-trio tail ws://127.0.0.1:9080/kafka --topic orders --from 2024-05-01T12:00:00Z "
        "--key-prefix eu- --header source=web --max 100",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _client_args(tail, all_partitions=True)
    tail.add_argument(
        "--from",
        dest="start",
        default="earliest",
        metavar="earliest|latest|OFFSET|TIME",
        help="where to start (default earliest): an offset (with one --partition), or a time: ISO 8601 "
        "(local time without an offset) or an age such as -30s, -5m, -2h, -1d",
    )
    tail.add_argument("--follow", "-f", action="store_true", help="keep waiting for new records (Ctrl-C to stop)")
    tail.add_argument("--max", type=int, metavar="N", help="stop after N records")
    tail.add_argument(
        "--key", action="append", default=[], metavar="K", help="only records with this key (repeat: any of them)"
    )
    tail.add_argument("--key-prefix", metavar="P", help="only records whose key starts with P")
    tail.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="K=V",
        help="only records with header K equal to V, or with a header K at all when there is no =V "
        "(repeat: all of them)",
    )

    tail.add_argument(
        "--read-committed",
        action="store_true",
        help="leave out records of aborted and still-open transactions (stops at the last stable offset)",
    )

    sub.add_parser(
        "broker",
        help="run a local Kafka broker for tests and demos (see 'kafka-ws-trio broker --help')",
        add_help=False,
    )
    return parser


def _client_args(parser: argparse.ArgumentParser, *, all_partitions: bool = False) -> None:
    parser.add_argument("url", help="the proxy route, e.g. ws://127.0.0.1:9080/kafka")
    parser.add_argument("--topic", required=True)
    if all_partitions:
        parser.add_argument("--partition", default="0", metavar="N|all", help="a partition, or all (default 0)")
    else:
        parser.add_argument("--partition", type=int, default=0, help="default 0")
    parser.add_argument("--timeout", type=float, default=30.0, metavar="S", help="seconds per request (default 30)")


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # kafka-python logs every reconnect attempt at ERROR; our own messages name the cause.
    logging.getLogger("kafka").setLevel(logging.CRITICAL if level != "DEBUG" else logging.DEBUG)


class _WithoutServerListeningLine(logging.Filter):
    """Drops the server's "listening on" log record: ``serve`` prints a fuller line itself.

    ``serve_proxy`` logs that record for applications that embed the proxy;
    the command prints its own (version, routes, how to stop) on stdout, where
    scripts read the URL, so the log would say the same thing twice.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        from ._server import LISTENING_EVENT

        return getattr(record, "event", None) != LISTENING_EVENT


def _serve_config(args: argparse.Namespace) -> ProxyConfig:
    if args.config:
        config = load_config(args.config)
    else:
        nodes = [n.strip() for n in args.kafka.split(",") if n.strip()]
        config = ProxyConfig.single_route(nodes, server=ServerConfig())
    overrides = {
        k: v for k, v in (("host", args.host), ("port", args.port), ("log_level", args.log_level)) if v is not None
    }
    if overrides:
        try:
            config = attrs.evolve(config, server=attrs.evolve(config.server, **overrides))
        except ConfigError as exc:
            raise ConfigError(exc.problem, key=f"--{exc.key.rsplit('.', 1)[-1]}") from None
    return config


async def _serve(config: ProxyConfig) -> None:
    from ._server import serve_proxy

    # The receiver stays installed until shutdown is over: a second signal is absorbed.
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            server = await nursery.start(serve_proxy, config)
            print(
                f"kafka-ws-trio {__version__} listening on {server.url} "
                f"(routes: {', '.join(r.uri for r in config.routes)}); Ctrl-C to stop",
                flush=True,
            )
            async for signum in signals:
                log.info(
                    "got %s; closing sessions (grace period %.0fs)",
                    signal.Signals(signum).name,
                    config.server.grace_period,
                )
                nursery.cancel_scope.cancel()
                break
    log.info("stopped")


def _parse_at(text: str) -> int:
    named = {"latest": -1, "earliest": -2}
    if text in named:
        return named[text]
    try:
        value = int(text)
    except ValueError:
        raise SystemExit(f"kafka-ws-trio: error: --at takes earliest, latest or milliseconds, not {text!r}") from None
    if value < 0:
        raise SystemExit("kafka-ws-trio: error: --at milliseconds must be 0 or more")
    return value


def _format_record(record: Record, partition: int | None = None) -> str:
    """A record's line; ``partition`` is named first when given (tail reads more than one)."""
    when = datetime.fromtimestamp(record.timestamp / 1000, tz=timezone.utc).isoformat(timespec="milliseconds")
    key = "null" if record.key is None else record.key.decode("utf-8", "backslashreplace")
    value = "null" if record.value is None else record.value.decode("utf-8", "backslashreplace")
    headers = "".join(
        f" {k}={'null' if v is None else v.decode('utf-8', 'backslashreplace')}" for k, v in record.headers
    )
    where = "" if partition is None else f"partition={partition} "
    return f"{where}offset={record.offset} time={when} key={key}{headers}\t{value}"


def _check_url(url: str) -> None:
    """Refuse, before connecting, a URL that cannot name a proxy route."""
    if not url.startswith(("ws://", "wss://")):
        raise SystemExit(
            f"kafka-ws-trio: error: the proxy URL must start with ws:// or wss://, "
            f"e.g. ws://127.0.0.1:9080/kafka (got {url!r})"
        )


def _parse_from(text: str, now: datetime | None = None) -> tuple[str, int]:
    """``--from``: ("list", -2 or -1) for earliest or latest, ("offset", N) for an offset, ("time", ms)
    for an ISO 8601 time (local time without an offset) or an age such as ``-5m`` before ``now``."""
    named = {"earliest": -2, "latest": -1}
    if text in named:
        return "list", named[text]
    if re.fullmatch(r"-?\d+", text):
        if text.startswith("-"):
            raise SystemExit("kafka-ws-trio: error: --from offsets must be 0 or more (an age needs a unit: -5m)")
        return "offset", int(text)
    if age := _AGE.fullmatch(text):
        moment = (now or datetime.now(timezone.utc)) - timedelta(**{_AGE_UNITS[age[2]]: int(age[1])})
    else:
        try:  # Python before 3.11 does not read a Z for UTC
            moment = datetime.fromisoformat(re.sub(r"[zZ]$", "+00:00", text))
        except ValueError:
            raise SystemExit(f"kafka-ws-trio: error: {_FROM_WORDING}, not {text!r}") from None
    ms = round(moment.timestamp() * 1000)
    if ms < 0:
        raise SystemExit(f"kafka-ws-trio: error: --from {text} is before 1970, when Kafka's time starts")
    return "time", ms


def _parse_partition(text: str) -> int | None:
    """``tail --partition``: a partition number, or None for all."""
    if text == "all":
        return None
    if not text.isdigit():
        raise SystemExit(f"kafka-ws-trio: error: --partition takes a partition number (0 or more) or all, not {text!r}")
    return int(text)


def _tail_filter(args: argparse.Namespace) -> Filter | None:
    """The filter --key, --key-prefix and --header ask for; None without them."""
    from ._proto import Filter, HeaderMatch

    matches = []
    for header in args.header:
        key, equals, value = header.partition("=")
        if not key:
            raise SystemExit(f"kafka-ws-trio: error: --header takes KEY=VALUE or KEY, not {header!r}")
        matches.append(HeaderMatch(key, value.encode() if equals else None))
    if not (args.key or args.key_prefix is not None or matches):
        return None
    prefix = None if args.key_prefix is None else args.key_prefix.encode()
    return Filter(tuple(key.encode() for key in args.key), prefix, tuple(matches))


def _joined_dashed_values(argv: Sequence[str]) -> list[str]:
    """``--from -5m`` as ``--from=-5m``: argparse takes a value starting with '-' for an option."""
    joined: list[str] = []
    for arg in argv:
        if joined and joined[-1] == "--from" and re.match(r"-\d", arg):
            joined[-1] = f"--from={arg}"
        else:
            joined.append(arg)
    return joined


async def _offsets(args: argparse.Namespace) -> int:
    from .client import open_client

    _check_url(args.url)
    at = _parse_at(args.at)
    async with open_client(args.url, request_timeout=args.timeout) as client:
        print(await client.list_offset(args.topic, args.partition, at))
    return EXIT_OK


async def _out_of_range(
    client: PubSubClient, topic: str, partition: int, offset: int, *, unless_inside: bool = False
) -> str:
    """The sentence for an offset Kafka refused as OFFSET_OUT_OF_RANGE: which offsets the partition holds
    (``unless_inside``: the empty string when the partition holds ``offset``, or writes it next).

    The proxy's answer keeps APISIX's wording, which names no range; asking
    for the earliest and latest offsets lets the user pick a valid ``--from``.
    """
    from .client import EARLIEST, LATEST

    earliest = await client.list_offset(topic, partition, EARLIEST)
    latest = await client.list_offset(topic, partition, LATEST)
    if unless_inside and earliest <= offset <= latest:
        return ""
    if latest == earliest + 1:
        holds = f"it holds only offset {earliest} (the next record gets {latest})"
    elif latest > earliest:
        holds = f"it holds offsets {earliest} to {latest - 1} (the next record gets {latest})"
    else:
        holds = f"it holds no records now (the next record gets offset {latest})"
    return (
        f"kafka-ws-trio: error: offset {offset} is out of range for {topic} partition {partition}: "
        f"{holds}; use --from earliest or --from latest"
    )


async def _tail(args: argparse.Namespace) -> int:
    from ._proto import ErrorCode
    from .client import PubSubError, open_client

    _check_url(args.url)
    kind, start = _parse_from(args.start)
    partition = _parse_partition(args.partition)
    matcher = _tail_filter(args)
    if args.max is not None and args.max < 0:
        raise SystemExit("kafka-ws-trio: error: --max must be 0 or more")
    if kind == "offset" and partition is None:
        raise SystemExit("kafka-ws-trio: error: --from OFFSET names an offset of one partition; give --partition N too")
    if args.max == 0:
        return EXIT_OK
    async with open_client(args.url, request_timeout=args.timeout) as client:
        if kind == "offset":
            assert partition is not None
            # Checked first: the stream would wait at an offset past the log end for it to come.
            if problem := await _out_of_range(client, args.topic, partition, start, unless_inside=True):
                raise SystemExit(problem)
        try:
            return await _tail_stream(client, args, partition, (kind, start), matcher)
        except PubSubError as exc:
            if exc.code == ErrorCode.OFFSET_OUT_OF_RANGE and kind == "offset":
                assert partition is not None
                raise SystemExit(await _out_of_range(client, args.topic, partition, start)) from None
            if exc.code != ErrorCode.UNKNOWN_COMMAND:
                raise
        if partition is None or matcher is not None or args.read_committed:
            raise SystemExit(
                "kafka-ws-trio: error: the proxy does not serve streams (APISIX, or an older kafka-ws-trio), "
                "which --partition all, --key, --key-prefix, --header and --read-committed need"
            )
        return await _tail_fetch(client, args, partition, (kind, start))


async def _tail_stream(
    client: PubSubClient,
    args: argparse.Namespace,
    partition: int | None,
    start: tuple[str, int],
    matcher: Filter | None,
) -> int:
    """Tail through a stream; raises ``PubSubError`` as the proxy refuses the subscribe."""
    from .client import DEFAULT_WINDOW, Batch, StreamProblem

    kind, value = start
    begin: int | datetime | dict[int, int] = value
    if kind == "time":
        begin = datetime.fromtimestamp(value / 1000, tz=timezone.utc)
    elif kind == "offset":
        assert partition is not None
        begin = {partition: value}
    count = 0
    window = DEFAULT_WINDOW if args.max is None else min(args.max, DEFAULT_WINDOW)
    status = _StatusLine(sys.stderr) if sys.stderr.isatty() else None
    async with client.subscribe(
        args.topic,
        partitions=None if partition is None else [partition],
        start=begin,
        filter=matcher,
        window=window,
        follow=args.follow,
        read_committed=args.read_committed,
    ) as stream:
        started = stream.positions
        async with trio.open_nursery() as nursery:
            if status is not None:
                nursery.start_soon(status.keep_drawing, stream, lambda: count)
            try:
                async for event in stream.events():
                    if isinstance(event, StreamProblem):
                        where = "" if event.partition is None else f" (partition {event.partition})"
                        _status_aside(status, f"kafka-ws-trio: the proxy reports{where}: {event.message}")
                    if not isinstance(event, Batch) or not event.records:
                        continue
                    named = event.partition if len(stream.positions) > 1 else None
                    records = event.records[: None if args.max is None else args.max - count]
                    _status_aside(status, "\n".join(_format_record(record, named) for record in records), sys.stdout)
                    count += len(records)
                    if count == args.max:
                        return EXIT_OK
            finally:
                if status is not None:
                    status.clear()
                nursery.cancel_scope.cancel()
        if count == 0:
            print(_nothing_read(started, matcher is not None), file=sys.stderr)
    return EXIT_OK


def _status_aside(status: _StatusLine | None, text: str, out: TextIO = sys.stderr) -> None:
    """Print ``text`` (lines) with the status line out of the way; it is drawn again at its next turn."""
    if status is not None:
        status.clear()
    print(text, file=out, flush=True)


def _nothing_read(positions: Mapping[int, int], filtered: bool) -> str:
    """What tail says when it read no records from ``positions``, where the partitions started."""
    what = "matching records" if filtered else "records"
    if len(positions) == 1:
        [offset] = positions.values()
        return f"kafka-ws-trio: no {what} at or after offset {offset}; use --follow to wait for new ones"
    return (
        f"kafka-ws-trio: no {what} in any of {len(positions)} partitions from where they started; "
        "use --follow to wait for new ones"
    )


async def _tail_fetch(client: PubSubClient, args: argparse.Namespace, partition: int, start: tuple[str, int]) -> int:
    """Tail one partition with Fetch, for a proxy that does not serve streams."""
    from ._proto import ErrorCode
    from .client import LATEST, PubSubError

    kind, offset = start
    if kind != "offset":
        offset = await client.list_offset(args.topic, partition, offset)
        if offset < 0:  # no record as recent as that time: the log end
            offset = await client.list_offset(args.topic, partition, LATEST)
    count = 0
    while True:
        try:
            records = await client.fetch(args.topic, partition, offset)
        except PubSubError as exc:
            if exc.code != ErrorCode.OFFSET_OUT_OF_RANGE:
                raise
            raise SystemExit(await _out_of_range(client, args.topic, partition, offset)) from None
        for record in records:
            print(_format_record(record), flush=True)
            offset = record.offset + 1
            count += 1
            if args.max is not None and count >= args.max:
                return EXIT_OK
        if not records and not args.follow:
            if count == 0:
                print(
                    f"kafka-ws-trio: no records at or after offset {offset}; use --follow to wait for new ones",
                    file=sys.stderr,
                )
            return EXIT_OK


def status_text(records: int, rate: float, lag: Mapping[int, int], width: int) -> str:
    """tail's status line: records so far, records/s, and each partition's lag, cut to ``width`` characters."""
    lags = ", ".join(f"p{partition} {lag[partition]:,}" for partition in sorted(lag)) or "not known yet"
    text = f"{records:,} records, {rate:,.0f}/s; lag {lags}"
    return text if len(text) <= width else text[: max(0, width - 3)] + "..."


class _StatusLine:
    """tail's status line on a terminal's stderr: drawn over itself, cleared before other output and at exit."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._shown = False

    def draw(self, text: str) -> None:
        self._out.write(f"\r{text}\x1b[K")
        self._out.flush()
        self._shown = True

    def clear(self) -> None:
        if self._shown:
            self._out.write("\r\x1b[K")
            self._out.flush()
            self._shown = False

    async def keep_drawing(self, stream: Stream, count: Callable[[], int]) -> None:
        """Redraw every ``STATUS_INTERVAL`` with the records/s of the last ``RATE_SPAN`` seconds."""
        samples: deque[tuple[float, int]] = deque()
        while True:
            now, records = time.monotonic(), count()
            samples.append((now, records))
            while now - samples[0][0] > RATE_SPAN:
                samples.popleft()
            elapsed = now - samples[0][0]
            rate = (records - samples[0][1]) / elapsed if elapsed > 0 else 0.0
            width = shutil.get_terminal_size().columns - 1
            self.draw(status_text(records, rate, stream.lag, width))
            await trio.sleep(STATUS_INTERVAL)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit status."""
    parser = _build_parser()
    args, rest = parser.parse_known_args(_joined_dashed_values(sys.argv[1:] if argv is None else argv))
    if args.command == "broker":
        from .testing import _broker

        return _broker.main(rest, prog="kafka-ws-trio broker")
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        if args.command == "serve":
            config = _serve_config(args)
            _setup_logging(config.server.log_level)
            logging.getLogger("kafka_ws_trio.server").addFilter(_WithoutServerListeningLine())
            tune_gc()
            try:
                trio.run(_serve, config)
            except Exception as exc:
                problem = listen_failure(exc, config.server.host, config.server.port)
                if problem is None:
                    raise
                print(f"kafka-ws-trio: error: {problem}", file=sys.stderr)
                return EXIT_ERROR
            return EXIT_OK
        _setup_logging("WARNING")
        runner = _offsets if args.command == "offsets" else _tail
        return trio.run(runner, args)
    except ConfigError as exc:
        for line in str(exc).splitlines():  # one line per mistake, each one greppable
            print(f"kafka-ws-trio: config error: {line}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_OK
    except Exception as exc:
        if isinstance(unwrap(exc), BrokenPipeError):  # whoever read stdout left (tail ... | head): stop quietly
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return EXIT_OK
        return _report(exc)


def unwrap(exc: BaseException) -> BaseException:
    """The one error inside nested single-member exception groups (how errors leave Trio nurseries)."""
    # Duck-typed: Python 3.10 has no built-in BaseExceptionGroup (trio uses a backport there).
    while True:
        inner = getattr(exc, "exceptions", None)
        if not isinstance(inner, tuple) or len(inner) != 1 or not isinstance(inner[0], BaseException):
            return exc
        exc = inner[0]


def listen_failure(exc: BaseException, host: str, port: int) -> str | None:
    """The sentence for a server that could not start listening, or None when ``exc`` is something else."""
    error = unwrap(exc)
    if not isinstance(error, OSError) or error.errno is None:
        return None
    where = f"{host}:{port}"
    if error.errno == errno.EADDRINUSE:
        return f"cannot listen on {where}: the port is already in use (another proxy?); try --port {port + 1}"
    if error.errno == errno.EACCES:
        return f"cannot listen on {where}: permission denied (ports below 1024 need privileges)"
    if error.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {where}: this machine has no such address; check --host"
    return f"cannot listen on {where}: {error.strerror or error}"


def _report(exc: Exception) -> int:
    """One line saying what went wrong and what to do, instead of a traceback."""
    from trio_websocket import ConnectionClosed, ConnectionRejected, HandshakeError

    from .client import ConnectFailed, PubSubError, StreamEnded

    exc = unwrap(exc)  # type: ignore[assignment]
    if isinstance(exc, StreamEnded):
        message = f"the proxy ended the stream: {exc.message} (code {exc.code})"
    elif isinstance(exc, PubSubError):
        message = f"the proxy answered: {exc.message} (code {exc.code})"
    elif isinstance(exc, ConnectFailed):
        message = str(exc)
    elif isinstance(exc, ConnectionRejected):
        # One line, however long or many-lined the body (a web server's HTML page, say).
        body = " ".join((exc.body or b"").decode("utf-8", "replace").split())
        if len(body) > QUOTED_BODY_CHARS:
            body = body[: QUOTED_BODY_CHARS - 3] + "..."
        hint = "check the URL's path" if exc.status_code == 404 else "is that the proxy's address?"
        message = f"the proxy refused the connection with HTTP {exc.status_code} ({body or 'no body'}); {hint}"
    elif isinstance(exc, HandshakeError | OSError):
        cause = exc.__cause__ or exc.__context__ or exc
        message = (
            f"could not connect to the proxy ({str(cause) or type(cause).__name__}); is it running at that address?"
        )
    elif isinstance(exc, ConnectionClosed):
        message = f"the proxy closed the connection: {exc.reason}"
    elif isinstance(exc, trio.TooSlowError):
        message = "the proxy did not answer in time (raise --timeout?)"
    else:
        log.exception("unexpected error")
        message = f"unexpected error: {exc!r}"
    print(f"kafka-ws-trio: error: {message}", file=sys.stderr)
    return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())

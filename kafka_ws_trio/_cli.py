"""The ``kafka-ws-trio`` console command: serve, offsets, tail, produce, hash-key, status, broker."""

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
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Final, TextIO, TypeAlias

import attrs
import trio

from . import _admin_cli as admin_cli
from ._admin_cli import Unreachable, http_call
from ._config import ConfigError, ProxyConfig, ServerConfig, load_config
from ._logs import setup_logging
from ._runtime import tune_gc
from ._version import __version__

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager

    from ._proto import Acks, Filter, OutRecord, ProduceResult, Record
    from ._server import ProxyServer
    from .client import PubSubClient, Stream

log = logging.getLogger("kafka_ws_trio.cli")

#: Exit statuses.
EXIT_OK: Final = 0
EXIT_ERROR: Final = 1
EXIT_USAGE: Final = 2
#: Characters of an HTTP error body quoted when a server refuses the WebSocket upgrade.
QUOTED_BODY_CHARS: Final = 100
#: The environment variable the client commands read their token from when --token is not given.
TOKEN_ENV: Final = "KAFKA_WS_TRIO_TOKEN"
#: The signal that makes ``serve`` reload its TLS certificate (none on Windows).
RELOAD_SIGNALS: Final = (signal.SIGHUP,) if hasattr(signal, "SIGHUP") else ()
#: serve's options that override [server] keys, and the keys.
_SERVE_OVERRIDES: Final = {
    "--host": "host",
    "--port": "port",
    "--log-level": "log_level",
    "--log-format": "log_format",
    "--tls-cert": "tls_cert_file",
    "--tls-key": "tls_key_file",
    "--ops-port": "ops_port",
    "--ops-host": "ops_host",
}
#: Seconds between redraws of tail's status line (on a terminal only).
STATUS_INTERVAL: Final = 0.25
#: Seconds of history tail's records/s is measured over.
RATE_SPAN: Final = 2.0
#: An age for tail --from: a number and its unit.
_AGE: Final = re.compile(r"-(\d+)([smhd])")
_AGE_UNITS: Final = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
#: The proxy's default frame size (its max_message_size): a produce command must fit in one frame.
PRODUCE_FRAME_BYTES: Final = 1_048_576
#: Bytes of records one produce command carries at most, well below a frame (a record larger
#: than this goes alone, when it fits in a frame at all).
PRODUCE_COMMAND_BYTES: Final = 512 * 1024
#: At most what a record's encoding adds to its key and value (tags, lengths, partition), and a header's to its own.
RECORD_OVERHEAD_BYTES: Final = 32
HEADER_OVERHEAD_BYTES: Final = 20
#: At most what a produce command adds to its records, besides the topic's name (sequence, acks, tags, lengths).
COMMAND_OVERHEAD_BYTES: Final = 64
#: produce's default --batch.
DEFAULT_PRODUCE_BATCH: Final = 100
#: Failed records a produce summary lists one by one; the rest are counted.
FAILURES_LISTED: Final = 20
#: Bytes produce reads from stdin at a time, and the chunks (or files) it reads ahead of the commands.
READ_CHUNK_BYTES: Final = 65_536
READ_AHEAD: Final = 4
#: status: seconds each request to the ops port may take (its --timeout default), and its exit statuses.
STATUS_TIMEOUT: Final = 5.0
EXIT_NOT_READY: Final = 1
EXIT_UNREACHABLE: Final = 2
#: status: the metrics it prints, by sample name (without the kafka_ws_trio_ prefix), and their words.
_STATUS_TOTALS: Final = {
    "sessions_open": "sessions open",
    "commands_total": "commands",
    "command_errors_total": "error responses",
    "kafka_threads_busy": "Kafka threads busy",
}
_STATUS_PER_ROUTE: Final = {
    "upstream_readers_open": "partition readers",
    "upstream_consumers_open": "Kafka consumers",
    "upstream_fetches_parked": "parked fetches",
    "upstream_stream_taps": "stream partitions",
    "upstream_records_produced_total": "records produced",
}
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
        description="Run the proxy until SIGINT or SIGTERM; then /readyz answers 503, and after shutdown_delay\n"
        "every session answers the commands it holds and is closed with 1001, and it exits 0.\n"
        "SIGHUP reloads the TLS certificate and key (--tls-cert, --tls-key) for new connections and,\n"
        "with --config, the file's routes: new ones serve at once, sessions on changed or deleted\n"
        "ones are closed with 1001, the others go on; a file that does not load changes nothing.",
        epilog="Examples:\n  kafka-ws-trio serve --config proxy.toml\n"
        "  kafka-ws-trio serve --kafka 127.0.0.1:9092   (one route, /kafka, no TLS or SASL)\n"
        "  kafka-ws-trio serve --kafka 127.0.0.1:9092 --tls-cert proxy.pem --tls-key proxy.key   (wss://)",
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
    serve.add_argument(
        "--log-format",
        choices=["text", "json"],
        help="text, or json: one JSON object a line on stderr (time, level, logger, event, message, "
        "then the line's own fields such as route, session, principal); overrides [server] log_format",
    )
    serve.add_argument(
        "--tls-cert",
        metavar="FILE",
        help="serve wss://: the server certificate, then any intermediates (PEM); needs --tls-key "
        "(overrides [server] tls_cert_file)",
    )
    serve.add_argument(
        "--tls-key", metavar="FILE", help="the certificate's private key (PEM; overrides [server] tls_key_file)"
    )
    serve.add_argument(
        "--ops-port",
        type=int,
        metavar="PORT",
        help="serve /metrics (Prometheus), /healthz and /readyz on this port, 0 for any free one "
        "(overrides [server] ops_port; default: none)",
    )
    serve.add_argument(
        "--ops-host", metavar="ADDRESS", help="the ops port's address (overrides [server] ops_host; default 127.0.0.1)"
    )

    offsets = sub.add_parser(
        "offsets",
        help="ask a proxy for a partition's offset (ListOffset), or a consumer group's committed offsets",
        description="Print one offset of a partition (ListOffset). With --group, print the offsets the\n"
        "consumer group has committed for the topic instead, one line per partition it committed:\n"
        "the partition, the committed offset, the latest offset and the lag between them. The group\n"
        "is not joined: its members are not disturbed.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Examples:\n"
        "  kafka-ws-trio offsets ws://127.0.0.1:9080/kafka --topic demo --partition 0 --at earliest\n"
        "  kafka-ws-trio offsets ws://127.0.0.1:9080/kafka --topic demo --group billing",
    )
    _client_args(offsets)
    offsets.add_argument(
        "--at",
        default="latest",
        metavar="earliest|latest|MS",
        help="earliest, latest (the next offset to be written; default), or a time in ms since the epoch",
    )
    offsets.add_argument("--group", metavar="G", help="print the committed offsets of this consumer group")

    tail = sub.add_parser(
        "tail",
        help="print a topic's records through a proxy (a stream)",
        description="Print records of a topic, one a line: offset, time, key and headers, a tab, the value\n"
        "(partition= first when more than one partition is read). Without --follow, stop once\n"
        "every partition read is at its end.\n\n"
        "The proxy sends the records as a stream, filtered on its side. A proxy without streams\n"
        "(APISIX, or an older kafka-ws-trio) is read with Fetch: one partition, no filters.\n"
        "On a terminal, stderr shows a status line: records/s and each partition's lag.\n\n"
        "With --group, tail joins that Kafka consumer group instead of naming partitions: the\n"
        "group assigns them (each line starts with partition=), and each starts at the group's\n"
        "committed offset, else where --from says. With --commit, after each batch of records is\n"
        "printed, tail commits the offsets past what it printed, so the next run in the group goes\n"
        "on after it. A commit Kafka refuses because the group is rebalancing is reported on\n"
        "stderr and tail goes on (the next batch commits again).",
        epilog="Examples:\n"
        "  kafka-ws-trio tail ws://127.0.0.1:9080/kafka --topic demo --partition all --from -5m --follow\n"
        "  kafka-ws-trio tail ws://127.0.0.1:9080/kafka --topic orders --from 2024-05-01T12:00:00Z "
        "--key-prefix eu- --header source=web --max 100\n"
        "  kafka-ws-trio tail ws://127.0.0.1:9080/kafka --topic orders --group billing --commit --follow",
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
    tail.add_argument(
        "--group",
        metavar="G",
        help="join consumer group G, which assigns the partitions (instead of --partition); "
        "partitions the group has committed start there",
    )
    tail.add_argument(
        "--commit",
        action="store_true",
        help="with --group: after each batch printed, commit the offsets past the records printed",
    )

    produce = sub.add_parser(
        "produce",
        help="write records to a topic through a proxy",
        description="Write records to a topic: each line of stdin is one record's value (the newline dropped),\n"
        "or, with --file, each file's whole content is one record's value. They go in commands of at\n"
        "most --batch records, one command at a time, in the order read; the proxy does not create\n"
        "topics. At the end, stdout gets a summary: the records written, each partition's first and\n"
        "last offset, and the records that failed. Exit status 0 when every record was written, else 1.\n\n"
        "On a terminal, stderr shows a status line: records sent, acknowledged and failed, records/s.\n"
        "Ctrl-C stops reading; the records already sent are waited for and summed up.",
        epilog="Examples:\n"
        "  echo hello | kafka-ws-trio produce ws://127.0.0.1:9080/kafka --topic demo\n"
        "  kafka-ws-trio produce ws://127.0.0.1:9080/kafka --topic orders --key eu-1 --header source=cli "
        "< orders.jsonl\n"
        "  kafka-ws-trio produce ws://127.0.0.1:9080/kafka --topic images --file a.png b.png --acks leader",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _client_args(produce, producing=True)
    produce.add_argument("--key", metavar="K", help="the key of every record (default: none)")
    produce.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="K=V",
        help="a header on every record (repeat for more; K= for an empty value)",
    )
    produce.add_argument(
        "--acks",
        choices=["all", "leader", "none"],
        help="wait for every in-sync replica (all), the partition leader, or nothing (none: no offsets "
        "are known); default: the route's (all unless the proxy is configured otherwise)",
    )
    produce.add_argument(
        "--file",
        dest="files",
        action="extend",
        nargs="+",
        default=[],
        metavar="PATH",
        help="write each file's whole content as one record (repeat or list several) instead of reading stdin",
    )
    produce.add_argument(
        "--batch",
        type=int,
        default=DEFAULT_PRODUCE_BATCH,
        metavar="N",
        help=f"records per command, at most (default {DEFAULT_PRODUCE_BATCH}; commands also stay under "
        f"{PRODUCE_COMMAND_BYTES // 1024} KiB)",
    )

    hash_key = sub.add_parser(
        "hash-key",
        help="make a new API key and the hash a route's config stores for it",
        description='Make a new API key for a route with auth = "api_key". The key goes to the client once\n'
        "(it is printed here and stored nowhere); the config keeps only its salted scrypt hash.\n"
        "The key is printed on stdout, the [[routes.api_keys]] table to paste on stderr, so\n"
        "'kafka-ws-trio hash-key --id app > app.key' keeps the key out of the terminal's scrollback.",
        epilog="Example:\n  kafka-ws-trio hash-key --id dashboard --principal dashboard",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    hash_key.add_argument("--id", required=True, help="the key's id: letters, digits and '-' (it is not secret)")
    hash_key.add_argument("--principal", help="who the key names in ACL rules and logs (default: the id)")

    status = sub.add_parser(
        "status",
        help="print a proxy's health and key metrics, read from its ops port",
        description="Ask a proxy's ops port (serve --ops-port, or [server] ops_port) for /healthz, /readyz and\n"
        "/metrics, and print a short summary: whether the proxy is ready and each route's state,\n"
        "then sessions open, commands, error responses and Kafka threads busy, and per route the\n"
        "partition readers, Kafka consumers open, parked fetches, stream partitions and records\n"
        "produced. The requests go straight to the URL, not through an HTTP proxy.\n\n"
        "Exit status 0 when the proxy is ready, 1 when it answers but is not ready (a route's\n"
        "brokers unreachable, not checked yet, or shutting down), 2 when it cannot be reached.",
        epilog="Example:\n  kafka-ws-trio status http://127.0.0.1:9081",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    status.add_argument("url", help="the ops port's base URL, e.g. http://127.0.0.1:9081")
    status.add_argument(
        "--timeout",
        type=float,
        default=STATUS_TIMEOUT,
        metavar="S",
        help=f"seconds each request may take (default {STATUS_TIMEOUT:g})",
    )

    admin_cli.add_parser(sub)

    sub.add_parser(
        "broker",
        help="run a local Kafka broker for tests and demos (see 'kafka-ws-trio broker --help')",
        add_help=False,
    )
    return parser


def _client_args(parser: argparse.ArgumentParser, *, all_partitions: bool = False, producing: bool = False) -> None:
    parser.add_argument("url", help="the proxy route, e.g. ws://127.0.0.1:9080/kafka")
    parser.add_argument("--topic", required=True)
    if producing:
        parser.add_argument(
            "--partition",
            type=int,
            metavar="N",
            help="write every record to this partition (default: the producer picks: by the key's hash, "
            "as the Java client does, or spread without a key)",
        )
    elif all_partitions:
        parser.add_argument("--partition", metavar="N|all", help="a partition, or all (default 0)")
    else:
        parser.add_argument("--partition", type=int, default=0, help="default 0")
    parser.add_argument("--timeout", type=float, default=30.0, metavar="S", help="seconds per request (default 30)")
    parser.add_argument(
        "--ca-file", metavar="FILE", help="for wss://: trust the CA certificates in FILE (PEM) instead of the system's"
    )
    parser.add_argument(
        "--token",
        metavar="TOKEN",
        help=f"sent as 'Authorization: Bearer TOKEN' (an API key or a JWT); default: the environment "
        f"variable {TOKEN_ENV}, which other users cannot see, unlike a command line",
    )


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
    if (args.tls_cert is None) != (args.tls_key is None):
        raise SystemExit(
            "kafka-ws-trio: error: --tls-cert and --tls-key go together: give both (the certificate "
            "and its private key) or neither"
        )
    overrides = {
        key: getattr(args, option[2:].replace("-", "_"))
        for option, key in _SERVE_OVERRIDES.items()
        if getattr(args, option[2:].replace("-", "_")) is not None
    }
    for key in ("tls_cert_file", "tls_key_file"):
        if key in overrides:
            overrides[key] = os.path.abspath(overrides[key])  # read again, as given, on SIGHUP
    if overrides:
        try:
            config = attrs.evolve(config, server=attrs.evolve(config.server, **overrides))
        except ConfigError as exc:
            key = exc.key.rsplit(".", 1)[-1]
            option = next((option for option, name in _SERVE_OVERRIDES.items() if name == key), None)
            raise ConfigError(exc.problem, key=option or f"server.{key}") from None
    return config


async def _serve(config: ProxyConfig, reread: Callable[[], ProxyConfig] | None = None) -> None:
    """Serve ``config`` until SIGINT or SIGTERM; on SIGHUP reload the TLS files and, with ``reread``, the routes."""
    from ._server import serve_proxy

    # The receiver stays installed until shutdown is over, and a task takes the signals that come
    # meanwhile: a signal left in a receiver when it closes is delivered again, to the default
    # handler, which would kill the process half-way through its shutdown.
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, *RELOAD_SIGNALS) as signals:
        async with trio.open_nursery() as absorbing:
            async with trio.open_nursery() as nursery:
                server = await nursery.start(serve_proxy, config)
                ops = (
                    f"; metrics on http://{config.server.ops_host}:{server.ops_port}/metrics"
                    if server.ops_port is not None
                    else ""
                )
                print(
                    f"kafka-ws-trio {__version__} listening on {server.url} "
                    f"(routes: {', '.join(r.uri for r in config.routes)}){ops}; Ctrl-C to stop",
                    flush=True,
                )
                async for signum in signals:
                    if signum in RELOAD_SIGNALS:
                        log.info("got %s; reloading the TLS certificate", signal.Signals(signum).name)
                        server.reload_tls()
                        if reread is not None:
                            await _reload_routes(server, reread)
                        continue
                    log.info(
                        "got %s; closing sessions (grace period %.0fs)",
                        signal.Signals(signum).name,
                        config.server.grace_period,
                    )
                    nursery.cancel_scope.cancel()
                    absorbing.start_soon(_absorb_signals, signals, server)
                    break
            absorbing.cancel_scope.cancel()
    log.info("stopped")


async def _reload_routes(server: ProxyServer, reread: Callable[[], ProxyConfig]) -> None:
    """Read the config file again and serve its routes; a file that does not load changes nothing.

    Routes change at once (``ProxyServer.update_routes``: sessions on changed or deleted
    routes are closed with 1001). ``[server]`` settings take a restart: changed ones are named.
    """
    try:
        fresh = await trio.to_thread.run_sync(reread)
    except ConfigError as exc:
        log.error("config not reloaded; the running one stays:\n%s", exc, extra={"event": "reload_refused"})
        return
    except SystemExit as exc:  # a usage mistake _serve_config reports by exiting
        log.error("config not reloaded; the running one stays: %s", exc, extra={"event": "reload_refused"})
        return
    try:
        changes = await server.update_routes(fresh.routes)
    except (ConfigError, OSError, ValueError) as exc:  # a route's key or JWKS file that no longer reads
        log.error("config not reloaded; the running one stays: %s", exc, extra={"event": "reload_refused"})
        return
    differing = [
        field.name
        for field in attrs.fields(type(fresh.server))
        if getattr(fresh.server, field.name) != getattr(server.config.server, field.name)
    ]
    if differing:
        log.warning(
            "config reloaded, but [server] settings take a restart: %s",
            ", ".join(differing),
            extra={"event": "reload_needs_restart"},
        )
    if not changes:
        log.info("config reloaded: the routes are as they were", extra={"event": "config_reloaded"})


async def _absorb_signals(signals: AsyncIterator[int], server: ProxyServer) -> None:
    """Take the signals that come during shutdown: one ends ``shutdown_delay``; the grace period goes on."""
    async for signum in signals:
        name = signal.Signals(signum).name
        if signum in RELOAD_SIGNALS:
            log.info("got %s during shutdown; not reloading", name)
        elif server.end_shutdown_delay():
            log.info("got %s again; closing sessions now, without the rest of shutdown_delay", name)
        else:
            log.info("got %s again; still closing sessions", name)


def _open_client(args: argparse.Namespace) -> AbstractAsyncContextManager[PubSubClient]:
    """The client commands' connection: ``args.url`` with the timeout, token and CA file they were given."""
    import ssl

    from .client import open_client

    context = None
    if args.ca_file is not None:
        if not args.url.startswith("wss://"):
            raise SystemExit("kafka-ws-trio: error: --ca-file is for wss:// URLs; this one is not")
        try:
            context = ssl.create_default_context(cafile=args.ca_file)
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or exc
            raise SystemExit(
                f"kafka-ws-trio: error: --ca-file: cannot load CA certificates (PEM) from {args.ca_file} ({reason})"
            ) from None
    token = args.token if args.token is not None else os.environ.get(TOKEN_ENV) or None
    if token is not None and (not token or not all("!" <= ch <= "~" for ch in token)):
        where = "--token" if args.token is not None else TOKEN_ENV
        raise SystemExit(f"kafka-ws-trio: error: {where}: a token is printable ASCII without spaces (not shown)")
    return open_client(args.url, request_timeout=args.timeout, token=token, ssl_context=context)


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
    _check_url(args.url)
    if args.group is not None:
        return await _group_offsets(args)
    at = _parse_at(args.at)
    async with _open_client(args) as client:
        print(await client.list_offset(args.topic, args.partition, at))
    return EXIT_OK


async def _group_offsets(args: argparse.Namespace) -> int:
    """``offsets --group``: a line per partition the group committed, with its lag; a sentence when none."""
    from .client import LATEST

    _check_group_name(args.group)
    async with _open_client(args) as client:
        committed = await client.group_offsets(args.group, args.topic)
        if not committed:
            print(f"group {args.group} has committed no offsets for topic {args.topic}", file=sys.stderr)
            return EXIT_OK
        for partition, offset in sorted(committed.items()):
            latest = await client.list_offset(args.topic, partition, LATEST)
            print(f"partition={partition} committed={offset} latest={latest} lag={max(latest - offset, 0)}")
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
    from .client import PubSubError

    _check_url(args.url)
    kind, start = _parse_from(args.start)
    _check_group_options(args, kind)
    partition = None if args.group is not None else _parse_partition(args.partition or "0")
    matcher = _tail_filter(args)
    if args.max is not None and args.max < 0:
        raise SystemExit("kafka-ws-trio: error: --max must be 0 or more")
    if kind == "offset" and partition is None:
        raise SystemExit("kafka-ws-trio: error: --from OFFSET names an offset of one partition; give --partition N too")
    if args.max == 0:
        return EXIT_OK
    async with _open_client(args) as client:
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
        if args.group is not None:
            raise SystemExit(
                "kafka-ws-trio: error: the proxy does not serve streams (APISIX, or an older kafka-ws-trio), "
                "which --group needs"
            )
        if partition is None or matcher is not None or args.read_committed:
            raise SystemExit(
                "kafka-ws-trio: error: the proxy does not serve streams (APISIX, or an older kafka-ws-trio), "
                "which --partition all, --key, --key-prefix, --header and --read-committed need"
            )
        return await _tail_fetch(client, args, partition, (kind, start))


def _check_group_name(group: str) -> None:
    if not group:
        raise SystemExit("kafka-ws-trio: error: --group takes a group name, not an empty one")


def _check_group_options(args: argparse.Namespace, start_kind: str) -> None:
    """Refuse the flag combinations --group and --commit do not take."""
    if args.commit and args.group is None:
        raise SystemExit("kafka-ws-trio: error: --commit needs --group: only a consumer group has offsets to commit")
    if args.group is None:
        return
    _check_group_name(args.group)
    if args.partition is not None:
        raise SystemExit(
            "kafka-ws-trio: error: --group and --partition do not go together: the group assigns the partitions"
        )
    if start_kind == "offset":
        raise SystemExit(
            "kafka-ws-trio: error: --from OFFSET names an offset of one partition, and --group reads the ones "
            "the group assigns; use earliest, latest or a time"
        )


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
        group=args.group,
    ) as stream:
        started = stream.positions
        async with trio.open_nursery() as nursery:
            if status is not None:
                nursery.start_soon(
                    status.keep_drawing,
                    lambda: count,
                    lambda records, rate, width: status_text(records, rate, stream.lag, width),
                )
            try:
                async for event in stream.events():
                    if isinstance(event, StreamProblem):
                        where = "" if event.partition is None else f" (partition {event.partition})"
                        _status_aside(status, f"kafka-ws-trio: the proxy reports{where}: {event.message}")
                    if not isinstance(event, Batch) or not event.records:
                        continue
                    named = event.partition if args.group is not None or len(stream.positions) > 1 else None
                    records = event.records[: None if args.max is None else args.max - count]
                    _status_aside(status, "\n".join(_format_record(record, named) for record in records), sys.stdout)
                    count += len(records)
                    if args.commit:
                        # Past what was printed: the whole batch, or up to where --max cut it.
                        after = event.next_offset if len(records) == len(event.records) else records[-1].offset + 1
                        await _commit_printed(stream, event.partition, after, status)
                    if count == args.max:
                        return EXIT_OK
            finally:
                if status is not None:
                    status.clear()
                nursery.cancel_scope.cancel()
        if count == 0:
            print(_nothing_read(started, matcher is not None), file=sys.stderr)
    return EXIT_OK


async def _commit_printed(stream: Stream, partition: int, offset: int, status: _StatusLine | None) -> None:
    """tail --commit: commit ``offset`` for ``partition``, past what was printed. A commit the group's
    rebalance refused is reported and tail goes on: the next batch commits again."""
    from ._proto import ErrorCode
    from .client import PubSubError

    if partition not in stream.assignment:
        return  # revoked meanwhile: the group's new owner reads it from the last commit
    try:
        await stream.commit({partition: offset})
    except PubSubError as exc:
        if exc.code not in (ErrorCode.NOT_ASSIGNED, ErrorCode.COMMIT_FAILED):
            raise
        _status_aside(
            status, f"kafka-ws-trio: could not commit partition {partition} at offset {offset}: {exc.message}"
        )


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


# ------------------------------------------------------------------ produce


@attrs.frozen
class _Unsendable:
    """An input record too large for any produce command: only its size is kept."""

    size: int


#: One record of the input: its value, or the size of one too large to send.
_Item: TypeAlias = bytes | _Unsendable


@attrs.frozen
class _ProducePlan:
    """What ``produce`` writes and how, its options checked."""

    topic: str
    key: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    partition: int | None
    acks: Acks
    batch: int
    #: The files whose contents are the records; empty: stdin's lines are.
    files: tuple[str, ...]

    @property
    def overhead(self) -> int:
        """At most the bytes a record takes in a command besides its value: key, headers, encoding."""
        headers = sum(len(key.encode()) + len(value) + HEADER_OVERHEAD_BYTES for key, value in self.headers)
        return len(self.key or b"") + headers + RECORD_OVERHEAD_BYTES

    @property
    def largest_value(self) -> int:
        """The largest value a command can carry (alone): a frame, less the rest of the command."""
        return PRODUCE_FRAME_BYTES - COMMAND_OVERHEAD_BYTES - len(self.topic.encode()) - self.overhead

    def record(self, value: bytes) -> OutRecord:
        from ._proto import OutRecord

        return OutRecord(key=self.key, value=value, headers=self.headers, partition=self.partition)

    def origin(self, index: int) -> str:
        """Where record ``index`` (from 0) came from: its line of stdin, or its file."""
        return self.files[index] if self.files else f"line {index + 1}"


def _produce_plan(args: argparse.Namespace) -> _ProducePlan:
    """produce's options, checked before connecting: one sentence for the first mistake."""
    from ._proto import MAX_PRODUCE_RECORDS, Acks

    headers = []
    for header in args.header:
        key, equals, value = header.partition("=")
        if not key or not equals:
            raise SystemExit(f"kafka-ws-trio: error: --header takes KEY=VALUE, not {header!r}")
        headers.append((key, os.fsencode(value)))
    if args.partition is not None and args.partition < 0:
        raise SystemExit("kafka-ws-trio: error: --partition must be 0 or more")
    if not 1 <= args.batch <= MAX_PRODUCE_RECORDS:
        raise SystemExit(
            f"kafka-ws-trio: error: --batch takes 1 to {MAX_PRODUCE_RECORDS} records "
            f"(the most one produce command may carry), not {args.batch}"
        )
    for path in args.files:
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise SystemExit(f"kafka-ws-trio: error: cannot read --file {path}: {exc.strerror or exc}") from None
    if not args.files and sys.stdin is None:
        raise SystemExit("kafka-ws-trio: error: there is no stdin to read records from; give --file PATH")
    return _ProducePlan(
        topic=args.topic,
        key=None if args.key is None else os.fsencode(args.key),
        headers=tuple(headers),
        partition=args.partition,
        acks=Acks.ROUTE_DEFAULT if args.acks is None else Acks[args.acks.upper()],
        batch=args.batch,
        files=tuple(args.files),
    )


class _Lines:
    """Bytes cut into lines, the newline dropped; a line longer than ``limit`` bytes is kept only as its size."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._parts: list[bytes] = []
        self._size = 0

    def feed(self, chunk: bytes) -> list[_Item]:
        """The lines ``chunk`` completes."""
        *ended, rest = chunk.split(b"\n")
        lines = [self._line(piece) for piece in ended]
        self._add(rest)
        return lines

    def end(self) -> list[_Item]:
        """The last line, when the input does not end with a newline."""
        return [self._line(b"")] if self._size else []

    def _add(self, piece: bytes) -> None:
        self._size += len(piece)
        if self._size > self._limit:
            self._parts.clear()
        elif piece:
            self._parts.append(piece)

    def _line(self, piece: bytes) -> _Item:
        self._add(piece)
        line = _Unsendable(self._size) if self._size > self._limit else b"".join(self._parts)
        self._parts.clear()
        self._size = 0
        return line


def _next_command(pending: deque[_Item], plan: _ProducePlan) -> list[bytes] | _Unsendable:
    """Take the next command's values from the front of ``pending`` (not empty): at most ``plan.batch``
    of them and ``PRODUCE_COMMAND_BYTES`` of records, or one larger record alone; or the first item
    alone when no command can carry it."""
    first = pending.popleft()
    if isinstance(first, _Unsendable) or len(first) > plan.largest_value:
        return first if isinstance(first, _Unsendable) else _Unsendable(len(first))
    overhead = plan.overhead
    values = [first]
    used = len(first) + overhead
    while pending and len(values) < plan.batch:
        value = pending[0]
        if isinstance(value, _Unsendable) or used + len(value) + overhead > PRODUCE_COMMAND_BYTES:
            break
        values.append(value)
        used += len(value) + overhead
        pending.popleft()
    return values


@attrs.define
class _Tally:
    """What produce has done so far: for its status line and its summary."""

    #: Records taken from the input (sent, or refused here): the index of the next one.
    taken: int = 0
    sent: int = 0
    #: Records the proxy answered for, written or not.
    answered: int = 0
    written: int = 0
    failed: int = 0
    #: Partition -> [records written, first offset, last offset].
    partitions: dict[int, list[int]] = attrs.Factory(dict)
    #: The first ``FAILURES_LISTED`` failures: record index and message.
    failures: list[tuple[int, str]] = attrs.Factory(list)
    #: Ctrl-C stopped the reading of the input.
    interrupted: bool = False
    #: Why the input could not be read to its end.
    input_error: str | None = None

    def fail(self, index: int, message: str) -> None:
        self.failed += 1
        if len(self.failures) < FAILURES_LISTED:
            self.failures.append((index, message))

    def record(self, first: int, results: Sequence[ProduceResult]) -> None:
        """The proxy's results for the records ``first``, ``first + 1`` ..."""
        from ._proto import Written

        self.answered += len(results)
        for index, result in enumerate(results, first):
            if not isinstance(result, Written):
                self.fail(index, result.message)
                continue
            self.written += 1
            seen = self.partitions.setdefault(result.partition, [0, result.offset, result.offset])
            seen[0] += 1
            seen[1] = min(seen[1], result.offset)
            seen[2] = max(seen[2], result.offset)


def _records(count: int) -> str:
    return f"{count} record" if count == 1 else f"{count} records"


def produce_summary(topic: str, tally: _Tally, origin: Callable[[int], str]) -> str:
    """What produce prints at the end: records written, each partition's offsets, the records that failed."""
    if tally.taken == 0:
        lines = [f"nothing to write to {topic}: the input was empty"]
    elif tally.written == tally.taken:
        lines = [f"wrote {_records(tally.taken)} to {topic}"]
    else:
        lines = [f"wrote {tally.written} of {_records(tally.taken)} to {topic}"]
    for partition, (count, first, last) in sorted(tally.partitions.items()):
        where = "offsets not known (acks none)" if last < 0 else f"offset {first}" if first == last else ""
        lines.append(f"  partition {partition}: {_records(count)}, {where or f'offsets {first} to {last}'}")
    if tally.failed:
        lines.append(f"{_records(tally.failed)} failed:")
        lines.extend(f"  record {index} ({origin(index)}): {message}" for index, message in tally.failures)
        if tally.failed > len(tally.failures):
            lines.append(f"  ... and {tally.failed - len(tally.failures)} more")
    if unanswered := tally.sent - tally.answered:
        they = "it" if unanswered == 1 else "they"
        lines.append(f"{_records(unanswered)} sent got no answer: {they} may or may not have been written")
    if tally.interrupted:
        lines.append("stopped by Ctrl-C before the input ended")
    return "\n".join(lines)


def produce_status_text(sent: int, written: int, failed: int, rate: float, width: int) -> str:
    """produce's status line: records sent, acknowledged and failed, and records/s, cut to ``width``."""
    text = f"{sent:,} records sent, {written:,} acknowledged, {failed:,} failed; {rate:,.0f}/s"
    return text if len(text) <= width else text[: max(0, width - 3)] + "..."


def _stop_reason(topic: str, tally: _Tally, results: Sequence[ProduceResult]) -> str | None:
    """The sentence that ends produce at once: nothing is written yet, and every record of a command
    failed for a reason every other record would fail for too (no such topic, Kafka unreachable)."""
    from ._proto import ErrorCode, NotWritten

    if tally.written or not results or not all(isinstance(result, NotWritten) for result in results):
        return None
    codes = {result.code for result in results if isinstance(result, NotWritten)}
    stopping = {
        ErrorCode.TOPIC_NOT_FOUND,
        ErrorCode.PARTITION_NOT_FOUND,
        ErrorCode.BROKER_UNREACHABLE,
        ErrorCode.AUTHENTICATION_FAILED,
        ErrorCode.TLS_FAILED,
    }
    if len(codes) != 1 or not codes <= stopping:
        return None
    if codes == {ErrorCode.TOPIC_NOT_FOUND}:
        return f"topic {topic!r} not found; nothing was written (the proxy does not create topics)"
    first = results[0]
    assert isinstance(first, NotWritten)
    return f"nothing was written: {first.message}"


async def _read_stdin(send: trio.MemorySendChannel[list[_Item]], largest: int, tally: _Tally) -> None:
    """stdin's lines, as they come: what one read gives goes at once (a typed line goes out as typed)."""
    lines = _Lines(largest)
    fd = sys.stdin.fileno()
    try:
        # os.read, not sys.stdin: a thread abandoned in a buffered read holds its lock at exit.
        while chunk := await trio.to_thread.run_sync(os.read, fd, READ_CHUNK_BYTES, abandon_on_cancel=True):
            if items := lines.feed(chunk):
                await send.send(items)
    except OSError as exc:
        tally.input_error = f"cannot read stdin: {exc.strerror or exc}; the rest of it was not sent"
        return
    if items := lines.end():
        await send.send(items)


async def _read_files(send: trio.MemorySendChannel[list[_Item]], plan: _ProducePlan, tally: _Tally) -> None:
    """Each file whole, one at a time; one too large for a command only as its size."""
    for path in plan.files:
        file = trio.Path(path)
        try:
            size = (await file.stat()).st_size
            item: _Item = _Unsendable(size) if size > plan.largest_value else await file.read_bytes()
        except OSError as exc:
            tally.input_error = f"cannot read {path}: {exc.strerror or exc}; it and the files after it were not sent"
            return
        await send.send([item])


async def _read_input(
    plan: _ProducePlan, send: trio.MemorySendChannel[list[_Item]], scope: trio.CancelScope, tally: _Tally
) -> None:
    async with send:
        with scope:
            if plan.files:
                await _read_files(send, plan, tally)
            else:
                await _read_stdin(send, plan.largest_value, tally)


async def _send_records(
    client: PubSubClient, plan: _ProducePlan, receive: trio.MemoryReceiveChannel[list[_Item]], tally: _Tally
) -> str | Exception | None:
    """Write what ``receive`` brings, one command at a time, in order. Returns why it stopped
    early: a sentence, or an error to report; None when the input ended (or Ctrl-C stopped it)."""
    from trio_websocket import ConnectionClosed

    from ._proto import ErrorCode, NotWritten
    from .client import PubSubError

    pending: deque[_Item] = deque()
    async with receive:
        while not tally.interrupted:
            try:
                if not pending:
                    pending.extend(await receive.receive())
                # Whatever else has come, for a full command (files: a command's worth of bytes at most).
                held = sum(len(item) for item in pending if isinstance(item, bytes))
                while len(pending) < plan.batch and held < PRODUCE_COMMAND_BYTES:
                    more = receive.receive_nowait()
                    pending.extend(more)
                    held += sum(len(item) for item in more if isinstance(item, bytes))
            except trio.WouldBlock:
                pass
            except trio.EndOfChannel:
                if not pending:
                    return None
            values = _next_command(pending, plan)
            first = tally.taken
            if isinstance(values, _Unsendable):
                tally.taken += 1
                tally.fail(
                    first,
                    f"not sent: {values.size:,} bytes, more than one produce command can carry (it must fit in "
                    f"the proxy's {PRODUCE_FRAME_BYTES:,}-byte frame with the key and headers)",
                )
                continue
            tally.taken += len(values)
            tally.sent += len(values)
            try:
                results = await client.produce(plan.topic, [plan.record(value) for value in values], acks=plan.acks)
            except PubSubError as exc:  # refused whole: none of its records was written
                tally.record(first, [NotWritten(-1, exc.code, exc.message)] * len(values))
                if exc.code == ErrorCode.UNKNOWN_COMMAND:
                    return (
                        "the proxy does not take produce commands (APISIX, an older kafka-ws-trio, or a route "
                        "with produce = false); nothing was written"
                    )
                if exc.code != ErrorCode.OVERLOADED:  # would refuse the next ones too
                    return f"the proxy refused a produce command: {exc.message} (code {exc.code})"
                continue
            except (ConnectionClosed, trio.TooSlowError) as exc:
                return exc
            tally.record(first, results)
            if stop := _stop_reason(plan.topic, tally, results):
                return stop
    return None


async def _on_interrupt(
    signals: AsyncIterator[int], reading: trio.CancelScope, everything: trio.CancelScope, tally: _Tally
) -> None:
    """The first Ctrl-C stops the reading (what was sent is still waited for); the second, everything."""
    async for _ in signals:
        if tally.interrupted:
            everything.cancel()
            return
        tally.interrupted = True
        reading.cancel()


async def _produce_records(
    client: PubSubClient, plan: _ProducePlan, tally: _Tally, status: _StatusLine | None
) -> str | Exception | None:
    send, receive = trio.open_memory_channel[list[_Item]](READ_AHEAD)
    reading = trio.CancelScope()
    outcome: str | Exception | None = None
    with trio.open_signal_receiver(signal.SIGINT) as interrupts:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_read_input, plan, send, reading, tally)
            nursery.start_soon(_on_interrupt, interrupts, reading, nursery.cancel_scope, tally)
            if status is not None:
                nursery.start_soon(
                    status.keep_drawing,
                    lambda: tally.answered,
                    lambda answered, rate, width: produce_status_text(
                        tally.sent, tally.written, tally.failed, rate, width
                    ),
                )
            try:
                outcome = await _send_records(client, plan, receive, tally)
            finally:
                if status is not None:
                    status.clear()
                nursery.cancel_scope.cancel()
    return outcome


async def _produce(args: argparse.Namespace) -> int:
    _check_url(args.url)
    plan = _produce_plan(args)
    typing = not plan.files and sys.stdin.isatty()
    # Not while someone types on the terminal: the line would be drawn over what they type.
    status = _StatusLine(sys.stderr) if sys.stderr.isatty() and not typing else None
    tally = _Tally()
    async with _open_client(args) as client:
        if typing:
            print("kafka-ws-trio: one record a line; Ctrl-D to finish", file=sys.stderr, flush=True)
        outcome = await _produce_records(client, plan, tally, status)
    if isinstance(outcome, str) and not tally.written:
        print(f"kafka-ws-trio: error: {outcome}", file=sys.stderr)
        return EXIT_ERROR
    print(produce_summary(plan.topic, tally, plan.origin), flush=True)
    if isinstance(outcome, str):
        print(f"kafka-ws-trio: error: {outcome}", file=sys.stderr)
        return EXIT_ERROR
    if outcome is not None:
        return _report(outcome)
    if tally.input_error is not None:
        print(f"kafka-ws-trio: error: {tally.input_error}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK if tally.failed == 0 and tally.sent == tally.answered else EXIT_ERROR


def status_text(records: int, rate: float, lag: Mapping[int, int], width: int) -> str:
    """tail's status line: records so far, records/s, and each partition's lag, cut to ``width`` characters."""
    lags = ", ".join(f"p{partition} {lag[partition]:,}" for partition in sorted(lag)) or "not known yet"
    text = f"{records:,} records, {rate:,.0f}/s; lag {lags}"
    return text if len(text) <= width else text[: max(0, width - 3)] + "..."


class _StatusLine:
    """tail's and produce's status line on a terminal's stderr: drawn over itself, cleared before other
    output and at exit."""

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

    async def keep_drawing(self, count: Callable[[], int], describe: Callable[[int, float, int], str]) -> None:
        """Redraw every ``STATUS_INTERVAL``: ``describe(records, records/s, width)``, the rate over the
        last ``RATE_SPAN`` seconds of ``count()``."""
        samples: deque[tuple[float, int]] = deque()
        while True:
            now, records = time.monotonic(), count()
            samples.append((now, records))
            while now - samples[0][0] > RATE_SPAN:
                samples.popleft()
            elapsed = now - samples[0][0]
            rate = (records - samples[0][1]) / elapsed if elapsed > 0 else 0.0
            width = shutil.get_terminal_size().columns - 1
            self.draw(describe(records, rate, width))
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
            setup_logging(config.server.log_level, config.server.log_format)
            logging.getLogger("kafka_ws_trio.server").addFilter(_WithoutServerListeningLine())
            tune_gc()
            try:
                trio.run(_serve, config, (lambda: _serve_config(args)) if args.config else None)
            except Exception as exc:
                problem = listen_failure(exc, config.server.host, config.server.port)
                if problem is None:
                    raise
                print(f"kafka-ws-trio: error: {problem}", file=sys.stderr)
                return EXIT_ERROR
            return EXIT_OK
        if args.command == "hash-key":
            return _hash_key(args)
        if args.command == "status":
            return _status(args.url, args.timeout)
        if args.command == "routes":
            return admin_cli.run(args)
        setup_logging("WARNING")
        runners = {"offsets": _offsets, "tail": _tail, "produce": _produce}
        return trio.run(runners[args.command], args)
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


def _hash_key(args: argparse.Namespace) -> int:
    from ._auth import new_key

    try:
        key, stored = new_key(args.id)
    except ValueError as exc:
        print(f"kafka-ws-trio: error: --id: {exc}", file=sys.stderr)
        return EXIT_USAGE
    principal = args.principal or args.id
    print(
        'Add this to the route (auth must include "api_key"); the key itself is on stdout:\n\n'
        f'[[routes.api_keys]]\nid = "{args.id}"\nprincipal = "{principal}"\nhash = "{stored}"\n',
        file=sys.stderr,
    )
    print(key)
    return EXIT_OK


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() else f"{value:.3f}"


def _status_metrics(text: str) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """From Prometheus' text format: the totals :data:`_STATUS_TOTALS` names, and per route those of
    :data:`_STATUS_PER_ROUTE` (summed over the route's Kafka logins)."""
    from prometheus_client.parser import text_string_to_metric_families

    from ._ops._metrics import PREFIX

    totals: dict[str, float] = {}
    routes: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name = sample.name.removeprefix(PREFIX)
            if name in _STATUS_TOTALS and not sample.labels:
                totals[name] = totals.get(name, 0.0) + sample.value
            elif name.startswith("upstream_") and "route" in sample.labels:
                figures = routes.setdefault(sample.labels["route"], {})
                figures[name] = figures.get(name, 0.0) + sample.value
    for figures in routes.values():
        created = figures.get("upstream_consumers_created_total", 0.0)
        figures["upstream_consumers_open"] = created - figures.get("upstream_consumers_closed_total", 0.0)
    return totals, routes


def _status(url: str, timeout: float) -> int:
    """``status URL``: the ops port's health and key metrics in a few lines; 0 ready, 1 not ready, 2 no answer."""
    import json

    if not url.startswith(("http://", "https://")):
        print(
            f"kafka-ws-trio: error: status takes the ops port's http:// URL, e.g. http://127.0.0.1:9081 (got {url!r})",
            file=sys.stderr,
        )
        return EXIT_USAGE
    base = url.rstrip("/")
    try:
        health, _ = http_call(f"{base}/healthz", timeout)
        if health != 200:
            raise Unreachable(f"{base}/healthz answered HTTP {health}, not 200: is that a kafka-ws-trio ops port?")
        readiness_status, body = http_call(f"{base}/readyz", timeout)
        try:
            readiness = json.loads(body)
            ready, routes = bool(readiness["ready"]), dict(readiness["routes"])
        except (ValueError, KeyError, TypeError):
            raise Unreachable(
                f"{base}/readyz answered HTTP {readiness_status} without its JSON: is that a kafka-ws-trio ops port?"
            ) from None
        metrics_status, exposition = http_call(f"{base}/metrics", timeout)
    except Unreachable as exc:
        print(f"kafka-ws-trio: error: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    print(f"{base}: {'ready' if ready else 'NOT READY'}{' (shutting down)' if readiness.get('shutting_down') else ''}")
    for route, state in routes.items():
        print(f"  route {route}: {state}")
    if metrics_status != 200:
        print(
            f"no metrics: {base}/metrics answered HTTP {metrics_status} "
            "(the proxy's own port has none; use its ops port)"
        )
        return EXIT_OK if ready else EXIT_NOT_READY
    try:
        totals, per_route = _status_metrics(exposition)
    except ValueError as exc:
        print(f"no metrics: {base}/metrics is not in Prometheus' text format ({exc})")
        return EXIT_OK if ready else EXIT_NOT_READY
    print(", ".join(f"{words} {_number(totals.get(name, 0.0))}" for name, words in _STATUS_TOTALS.items()))
    for route in [*routes, *sorted(set(per_route) - set(routes))]:
        if route in per_route:
            figures = ", ".join(
                f"{words} {_number(per_route[route].get(name, 0.0))}" for name, words in _STATUS_PER_ROUTE.items()
            )
            print(f"route {route}: {figures}")
    return EXIT_OK if ready else EXIT_NOT_READY


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
        if exc.status == 401:
            message += f" (--token, or the environment variable {TOKEN_ENV}, gives the token)"
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

"""``kafka-ws-trio routes list|get|put|delete``: the admin API from the command line, and the ops port's HTTP.

The commands call a proxy's admin API on its ops port (README "Operating it")
with the admin key from ``--admin-key`` or ``$KAFKA_WS_TRIO_ADMIN_KEY``. A
route to PUT comes from a file, JSON or TOML, holding the keys of one
``[[routes]]`` table (``-`` reads standard input). Exit status: 0 done, 1 the
proxy refused (its ``error_msg`` is printed), 2 a usage mistake or no answer.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Final
from urllib.parse import quote

#: Where the commands look for the admin key when --admin-key is not given.
ADMIN_KEY_ENV: Final = "KAFKA_WS_TRIO_ADMIN_KEY"
#: Seconds each request may take: more than the server gives a change with a route store (its
#: admin_timeout, 20 s with the defaults, then 5 s to send the answer).
ADMIN_TIMEOUT: Final = 30.0
EXIT_OK: Final = 0
EXIT_REFUSED: Final = 1
EXIT_USAGE: Final = 2


class Unreachable(Exception):
    """The ops port gave no HTTP answer; the message says what happened."""


def http_call(
    url: str, timeout: float, *, method: str = "GET", body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, str]:
    """The status and body of one request (an error status is an answer too); :class:`Unreachable` without one."""
    import http.client
    import urllib.error
    import urllib.request

    # Straight to the address: an http_proxy in the environment is not asked about a loopback ops port.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        try:
            with opener.open(request, timeout=timeout) as answer:
                return int(answer.status), answer.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as refused:
            with refused:
                return refused.code, refused.read().decode("utf-8", "replace")
    except urllib.error.URLError as exc:
        reason = getattr(exc.reason, "strerror", None) or exc.reason
        raise Unreachable(f"cannot reach {url} ({reason}); is the proxy running with that ops port?") from None
    except (OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise Unreachable(f"cannot reach {url} ({reason}); is the proxy running with that ops port?") from None


def add_parser(sub: Any) -> None:
    """The ``routes`` command and its four subcommands."""
    routes = sub.add_parser(
        "routes",
        help="list, show, add, change or delete a running proxy's routes (its admin API)",
        description="Call a proxy's admin API on its ops port ([server] ops_port and admin_keys). Changes apply\n"
        "at once: sessions on a changed or deleted route are closed with 1001, the others go on.\n"
        "They live in memory: a restart or a SIGHUP reload replaces them with the config file's.\n"
        f"The admin key comes from --admin-key or ${ADMIN_KEY_ENV}.\n\n"
        "Exit status 0 when done, 1 when the proxy refused (its reason is printed), 2 for a usage\n"
        "mistake or when the proxy cannot be reached.",
        epilog="Examples:\n"
        "  kafka-ws-trio routes list http://127.0.0.1:9081\n"
        "  kafka-ws-trio routes get http://127.0.0.1:9081 /kafka\n"
        "  kafka-ws-trio routes put http://127.0.0.1:9081 /live route.toml   (nodes = [...], produce = true ...)\n"
        "  kafka-ws-trio routes delete http://127.0.0.1:9081 /live",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verbs = routes.add_subparsers(dest="verb", metavar="{list,get,put,delete}", required=True)
    for verb, text in (
        ("list", "print each route: its uri and brokers"),
        ("get", "print one route's settings as JSON"),
        ("put", "add a route, or replace one, from a JSON or TOML file of its keys"),
        ("delete", "delete a route"),
    ):
        command = verbs.add_parser(verb, help=text, description=text[0].upper() + text[1:] + ".")
        command.add_argument("url", help="the ops port's base URL, e.g. http://127.0.0.1:9081")
        if verb != "list":
            command.add_argument("uri", help="the route's WebSocket path, e.g. /kafka")
        if verb == "put":
            command.add_argument("file", help="JSON or TOML: the keys of one [[routes]] table; - for stdin")
        command.add_argument("--admin-key", metavar="KEY", help=f"the admin key (default: ${ADMIN_KEY_ENV})")
        command.add_argument(
            "--timeout", type=float, default=ADMIN_TIMEOUT, metavar="S", help="seconds each request may take"
        )


def _fail(message: str, status: int = EXIT_USAGE) -> int:
    print(f"kafka-ws-trio: error: {message}", file=sys.stderr)
    return status


def _route_file(path: str) -> dict[str, Any] | str:
    """The table in ``path`` (JSON, else TOML), or why it cannot be read."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]
    try:
        text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()  # noqa: SIM115
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror or exc}"
    try:
        table = json.loads(text)
    except ValueError:
        try:
            table = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            return f"{path} is neither JSON nor TOML ({exc})"
    if not isinstance(table, dict):
        return f"{path} must hold one table: the keys of a [[routes]] table"
    return table


def run(args: argparse.Namespace) -> int:
    """Carry out ``routes <verb>``."""
    key = args.admin_key or os.environ.get(ADMIN_KEY_ENV)
    if not key:
        return _fail(f"an admin key is needed: --admin-key KEY or ${ADMIN_KEY_ENV}")
    if not args.url.startswith(("http://", "https://")):
        return _fail(f"routes takes the ops port's http:// URL, e.g. http://127.0.0.1:9081 (got {args.url!r})")
    base = args.url.rstrip("/") + "/admin/routes"
    uri = getattr(args, "uri", None)
    if uri is not None and not uri.startswith("/"):
        return _fail(f"a route's uri starts with '/' (got {uri!r})")
    target = base if uri is None else f"{base}/{quote(uri[1:], safe='')}"
    headers = {"X-API-KEY": key}
    body = None
    method = {"list": "GET", "get": "GET", "put": "PUT", "delete": "DELETE"}[args.verb]
    if args.verb == "put":
        table = _route_file(args.file)
        if isinstance(table, str):
            return _fail(table)
        body = json.dumps(table).encode()
        headers["Content-Type"] = "application/json"
    try:
        status, text = http_call(target, args.timeout, method=method, body=body, headers=headers)
    except Unreachable as exc:
        return _fail(str(exc))
    try:
        answer = json.loads(text)
    except ValueError:
        return _fail(f"{target} answered HTTP {status}: {text.strip()[:200]}", EXIT_REFUSED)
    if status >= 400:
        return _fail(str(answer.get("error_msg", text.strip())), EXIT_REFUSED)
    if args.verb == "list":
        for entry in answer["list"]:
            value = entry["value"]
            print(f"{value['uri']}\t{', '.join(value.get('nodes', []))}")
    elif args.verb == "delete":
        print(f"deleted {uri}")
    else:
        print(json.dumps(answer["value"], indent=2))
    return EXIT_OK

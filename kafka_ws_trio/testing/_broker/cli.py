"""The broker manager's command line: ``scripts/kafka`` and ``kafka-ws-trio broker``."""

from __future__ import annotations

import argparse
import shlex
import sys

from .base import DEFAULT_LINE, VERSIONS, BrokerError
from .process import DEFAULT_PORT_BASES, DEFAULT_START_TIMEOUT_S, default_name, down, status, stop, up


def env_lines(env: dict[str, str]) -> str:
    """Shell lines to ``eval``; a last comment line says whether ``up`` started the broker."""
    keys = [k for k in env if k != "KAFKA_STARTED"]
    started = "yes" if env.get("KAFKA_STARTED") == "1" else "no (it was already up)"
    return "".join(f"export {k}={shlex.quote(env[k])}\n" for k in keys) + f"# started: {started}\n"


def _epilog(prog: str) -> str:
    """The help's closing text: it stands alone for a pip user, who has no checkout and no scripts/kafka."""
    return (
        "Typical use:\n"
        f'  eval "$({prog} up)"   # sets KAFKA_BOOTSTRAP, KAFKA_CA_FILE, KAFKA_SASL_...\n'
        '  kafka-ws-trio serve --kafka "$KAFKA_BOOTSTRAP"\n'
        f"  {prog} down\n"
        "\n"
        "Needs Java 17 or newer, Maven (mvn), openssl and keytool on PATH. The first 'up' of a\n"
        "Kafka version downloads its jars from Maven Central. Jars, certificates and broker\n"
        "data go to $KAFKA_WS_TRIO_HOME if set, else ~/.cache/kafka-ws-trio (under\n"
        "$XDG_CACHE_HOME if set). In a checkout of the project, scripts/kafka is this same\n"
        "command and the files go to the checkout's .kafka folder."
    )


def _build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run a real Apache Kafka broker (KRaft, one node) on 127.0.0.1 for tests and demos.\n"
        "'up' starts it and prints its addresses and credentials as shell lines to eval.",
        epilog=_epilog(prog),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{up,down,stop,status}")
    p_up = sub.add_parser("up", help="start a broker (or find the running one) and print its env as shell lines")
    p_up.add_argument(
        "--version",
        default=DEFAULT_LINE,
        metavar="LINE",
        help=f"release line: {' or '.join(VERSIONS)} (pinned to {', '.join(VERSIONS.values())}); "
        f"default {DEFAULT_LINE}",
    )
    p_up.add_argument(
        "--port-base",
        type=int,
        metavar="N",
        help="use ports N..N+4 (default: " + ", ".join(f"{v} for {k}" for k, v in DEFAULT_PORT_BASES.items()) + ")",
    )
    p_up.add_argument("--name", help="instance name, to run several brokers of one line (default kafka4 / kafka39)")
    p_up.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_START_TIMEOUT_S,
        metavar="S",
        help=f"seconds to wait for the broker to answer (default {DEFAULT_START_TIMEOUT_S:.0f})",
    )
    p_down = sub.add_parser("down", help="stop brokers started by 'up' and delete their data")
    p_down.add_argument("--name", help="stop only this instance (default: all)")
    p_down.add_argument("--version", metavar="LINE", help="stop only the default instance of this line")
    p_stop = sub.add_parser("stop", help="stop a broker but keep its data ('up --name NAME' starts it again)")
    p_stop.add_argument("--name", default=default_name(DEFAULT_LINE), help="the instance (default kafka4)")
    p_stop.add_argument("--kill", action="store_true", help="SIGKILL instead of a clean shutdown")
    sub.add_parser("status", help="say which brokers are running")
    return parser


def main(argv: list[str] | None = None, prog: str = "scripts/kafka") -> int:
    """Run one broker command; return the exit status (1 with a one-line reason when it fails)."""
    args = _build_parser(prog).parse_args(argv)
    try:
        if args.command == "up":
            env = up(args.version, name=args.name, port_base=args.port_base, timeout=args.timeout)
            sys.stdout.write(env_lines(env))
        elif args.command == "down":
            down(args.name or (default_name(args.version) if args.version else None))
        elif args.command == "stop":
            stop(args.name, kill=args.kill)
        else:
            lines = status()
            print("\n".join(lines) if lines else "no broker is running")
    except BrokerError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    return 0

"""The ``kafka-ws-trio`` console command."""

from __future__ import annotations

import argparse
import sys

from ._version import __version__


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the process exit status."""
    parser = argparse.ArgumentParser(
        prog="kafka-ws-trio",
        description="A WebSocket proxy that lets browsers and other clients read Apache Kafka "
        "using Apache APISIX's PubSub protocol.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser(
        "broker",
        help="run a local Kafka broker for tests and demos (same as scripts/kafka; see 'broker --help')",
        add_help=False,
    )
    args, rest = parser.parse_known_args(argv)
    if args.command == "broker":
        from .testing import _broker

        return _broker.main(rest, prog="kafka-ws-trio broker")
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())

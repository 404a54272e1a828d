"""The orchestrator: ``scripts/bench``'s flags, the run, and the cleanup whatever happens.

It starts a broker of its own (unless ``--bootstrap``), runs the chosen
scenarios, each timed run on a fresh proxy process, prints the table and a
verdict per target, writes the JSON, and stops every process it started by PID
and the broker, also after a failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .auth import run_auth_handshake, run_quota_isolation
from .broker import broker_down, broker_pid, broker_up, listener_pid
from .children import Child, say
from .context import Bench
from .fanout import run_fanout, run_stream_fanout
from .fetch import run_fetch, run_stream_partitions, run_stream_throughput
from .groups import run_group_members, run_group_rebalance, run_group_throughput
from .identity import run_kafka_identity
from .meta import run_meta
from .ops import run_ops_scrape
from .plan import BROKER_PORT_BASE, FULL, QUICK, SCENARIOS, BenchError, raise_nofile
from .produce import run_produce_fanin, run_produce_latency, run_produce_throughput
from .report import print_table, print_verdicts, write_json
from .sessions import run_churn, run_first_byte, run_idle, run_idle_streams
from .targets import evaluate


def _options(pairs: list[str]) -> dict[str, Any]:
    """KEY=VALUE strings as a dict; VALUE is read as JSON when it parses (numbers), else kept as text."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"expected KEY=VALUE, got {pair!r}")
        try:
            options[key] = json.loads(value)
        except ValueError:
            options[key] = value
    return options


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/bench",
        description="Measure kafka-ws-trio: fetch and stream throughput, fan-out latency by fetch and by stream, "
        "idle sessions and streams, churn, first byte, produce throughput, latency and fan-in, consumer-group "
        "throughput, rebalance and members, handshakes with credentials, isolation from a throttled principal, "
        "the cost of per-principal Kafka logins, and what scraping /metrics costs.",
    )
    parser.add_argument("--quick", action="store_true", help="a reduced run of every scenario (under 5 minutes)")
    parser.add_argument("--json", metavar="FILE", type=Path, help="write every figure to FILE")
    parser.add_argument("--only", metavar="LIST", help=f"comma-separated scenarios to run, of: {', '.join(SCENARIOS)}")
    parser.add_argument("--bootstrap", metavar="HOST:PORT", help="use this running broker instead of starting one")
    parser.add_argument("--client-procs", type=int, default=4, metavar="N", help="load-client processes (default 4)")
    parser.add_argument(
        "--pipeline",
        type=int,
        default=4,
        metavar="K",
        help="fetches in flight when reading through the proxy (default 4)",
    )
    parser.add_argument(
        "--server",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="what-if: override a [server] setting of the proxy, e.g. workers=1 (repeatable)",
    )
    parser.add_argument(
        "--route",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="what-if: override a [[routes]] setting of the proxy, e.g. fetch_max_wait=0.05 (repeatable)",
    )
    parser.add_argument(
        "--profile", metavar="DIR", type=Path, help="record py-spy profiles of the proxy (collapsed stacks) into DIR"
    )
    parser.add_argument(
        "--proxy-package",
        metavar="DIR",
        type=Path,
        help="before/after runs: the proxy process (only it) imports kafka_ws_trio from the tree DIR, "
        "e.g. a git worktree of an older commit; the load clients keep this tree's",
    )
    args = parser.parse_args(argv)
    try:
        args.server_options = _options(args.server)
        args.route_options = _options(args.route)
    except ValueError as exc:
        parser.error(str(exc))
    args.scenarios = SCENARIOS if not args.only else tuple(s.strip() for s in args.only.split(","))
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    if args.proxy_package is not None:
        args.proxy_package = args.proxy_package.resolve()
        if not (args.proxy_package / "kafka_ws_trio" / "__init__.py").is_file():
            parser.error(f"--proxy-package: no kafka_ws_trio package under {args.proxy_package}")
    return args


def _terminate(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _steps(bench: Bench) -> dict[str, Callable[[], None]]:
    def fetch() -> None:
        run_fetch(bench, 1024, "fetch_throughput")
        run_fetch(bench, 100, "fetch_throughput_100b")

    return {
        "first_byte": lambda: run_first_byte(bench),
        "fetch": fetch,
        "fanout": lambda: run_fanout(bench),
        "idle": lambda: run_idle(bench),
        "churn": lambda: run_churn(bench),
        "stream_throughput": lambda: run_stream_throughput(bench),
        "stream_fanout": lambda: run_stream_fanout(bench),
        "stream_partitions": lambda: run_stream_partitions(bench),
        "idle_streams": lambda: run_idle_streams(bench),
        "produce_throughput": lambda: run_produce_throughput(bench),
        "produce_latency": lambda: run_produce_latency(bench),
        "produce_fanin": lambda: run_produce_fanin(bench),
        "group_throughput": lambda: run_group_throughput(bench),
        "group_rebalance": lambda: run_group_rebalance(bench),
        "group_members": lambda: run_group_members(bench),
        "auth_handshake": lambda: run_auth_handshake(bench),
        "quota_isolation": lambda: run_quota_isolation(bench),
        "kafka_identity": lambda: run_kafka_identity(bench),
        "ops_scrape": lambda: run_ops_scrape(bench),
    }


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    raise_nofile()
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    plan = QUICK if args.quick else FULL
    logdir = Path(tempfile.mkdtemp(prefix="kwt-bench-"))
    if args.profile is not None:
        args.profile.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    own_broker = args.bootstrap is None
    status = 1
    results: dict[str, Any] = {}
    bench: Bench | None = None
    try:
        if own_broker:
            env = broker_up()
        else:  # the other listeners and SASL users as `eval "$(scripts/kafka up)"` exported them
            env = {**{k: v for k, v in os.environ.items() if k.startswith("KAFKA_")}, "KAFKA_BOOTSTRAP": args.bootstrap}
        bench = Bench(
            plan=plan,
            bootstrap=env["KAFKA_BOOTSTRAP"],
            broker_pid=(broker_pid() if env["KAFKA_BOOTSTRAP"] == f"127.0.0.1:{BROKER_PORT_BASE}" else None)
            or listener_pid(env["KAFKA_BOOTSTRAP"]),
            logdir=logdir,
            client_procs=args.client_procs,
            depth=args.pipeline,
            profile_dir=args.profile,
            server_options=args.server_options,
            route_options=args.route_options,
            package_root=args.proxy_package,
            results=results,
            broker_env=env,
        )
        results["meta"] = run_meta(plan, args, env.get("KAFKA_VERSION", "unknown"))
        say(f"{plan.name} run of the proxy package at {results['meta']['package_root']}; logs in {logdir}")
        steps = _steps(bench)
        for name in args.scenarios:
            say(f"scenario: {name}")
            steps[name]()
        results["targets"] = evaluate(results)
        results["meta"]["seconds"] = round(time.monotonic() - started, 1)
        results["meta"]["proxies_started"] = bench.proxies_started
        print_table(results)
        status = 0
    except BenchError as exc:
        say(f"bench failed: {exc}")
        _verdicts_so_far(results)
    except KeyboardInterrupt:
        say("interrupted; stopping everything the bench started")
        status = 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup short
        Child.stop_all()
        if own_broker:
            broker_down()
        if args.json is not None and results:
            write_json(args.json, results)
            say(f"wrote {args.json}")
    say(f"done in {time.monotonic() - started:.0f}s")
    return status


def _verdicts_so_far(results: dict[str, Any]) -> None:
    """After a failed scenario: the verdicts of the scenarios that finished, and the rest as not run."""
    try:
        results["targets"] = evaluate(results)
    except (KeyError, TypeError) as exc:  # a scenario left a partial section behind
        say(f"no verdicts: {exc!r}")
        return
    print_verdicts(results)

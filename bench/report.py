"""The report: the table printed at the end of a run, one verdict line per target, and the JSON file.

Figures are rounded here, for printing only. A figure checked against a bound
is shown rounded towards the failing side (0.7996 against ">= 0.8" prints
0.799), so a printed value never seems to meet a bound its verdict says it
missed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .plan import CLIENT_BOUND_PCT
from .targets import TARGETS


def _n(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _down(value: float, digits: int) -> str:
    """``value`` with ``digits`` decimals, rounded down (for a figure that must be at least a bound)."""
    scale = 10**digits
    return _n(math.floor(value * scale) / scale, digits)


def _up(value: float, digits: int) -> str:
    """``value`` with ``digits`` decimals, rounded up (for a figure that must be at most a bound)."""
    scale = 10**digits
    return _n(math.ceil(value * scale) / scale, digits)


def late(run: dict[str, Any], key: str) -> str:
    """A fan-out percentile in ms, or "> WAIT" when it lies among deliveries still missing after the wait."""
    value = run[key]
    return _n(value, 1) if value is not None else f"> {run['wait_seconds'] * 1000:,.0f}"


def table_rows(results: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """(scenario, figure, measured, target and verdict, what it is up against)."""
    verdict = {v["figure"]: ("PASS" if v["pass"] else "FAIL") for v in results.get("targets", [])}

    def judged(figure: str, target: str) -> str:
        return f"{target} {verdict[figure]}" if figure in verdict else target

    def load(section: dict[str, Any]) -> str:
        bound = " CLIENT-BOUND" if section["client_proc_max_cpu_pct"] > CLIENT_BOUND_PCT else ""
        return (
            f"proxy CPU {section['proxy_cpu_pct']:.0f}% of a core, RSS {section['proxy_rss_mib']:.0f} MiB; "
            f"broker {section['broker_cpu_pct']:.0f}%, clients {section['clients_cpu_pct']:.0f}% "
            f"(max {section['client_proc_max_cpu_pct']:.0f}%/proc{bound}), "
            f"other load {section['other_load_cpu_pct']:.0f}%"
        )

    rows: list[tuple[str, str, str, str, str]] = []
    reads = (
        ("fetch_throughput", "fetch 1 KiB", ">= 0.8", "pipelined client"),
        ("fetch_throughput_100b", "fetch 100 B", "", "pipelined client"),
        ("stream_throughput", "stream 1 KiB", ">= 0.9", "stream client"),
    )
    for key, label, bound, client in reads:
        if key not in results:
            continue
        f = results[key]
        ceiling = f"confluent-kafka direct {_n(f['confluent_kafka_records_per_s'])}/s"
        rows += [
            (label, "proxy records/s", _n(f["proxy_records_per_s"]), "", ceiling),
            (
                "",
                "proxy MB/s (values)",
                _n(f["proxy_mb_per_s"], 1),
                "",
                f"kafka-python direct {_n(f['kafka_python_records_per_s'])}/s",
            ),
            (
                "",
                "ratio vs kafka-python",
                _down(f["ratio_vs_kafka_python"], 2),
                judged(f"{key}.ratio_vs_kafka_python", bound) if bound else "",
                load(f) + f"; {client} {f['client_cpu_pct']:.0f}%",
            ),
        ]
    if "stream_partitions" in results:
        spread = results["stream_partitions"]
        rows += [
            (
                f"stream {spread['partitions']} parts",
                "records/s",
                _n(spread["records_per_s"]),
                "",
                f"one stream over one partition {_n(spread['single_partition_records_per_s'])}/s",
            ),
            (
                "",
                "ratio vs 1 partition",
                _down(spread["ratio_vs_single_partition"], 2),
                judged("stream_partitions.ratio_vs_single_partition", ">= 0.8"),
                load(spread) + f"; stream client {spread['client_cpu_pct']:.0f}%",
            ),
        ]
    for key, label in (("fanout", "fanout"), ("stream_fanout", "streams")):
        if key not in results:
            continue
        fan = results[key]
        for sessions, run in fan["by_sessions"].items():
            top = int(sessions) == fan["sessions"]
            pushes = f"{_n(run['stream_batches_per_s'])} batches/s pushed, " if "stream_batches_per_s" in run else ""
            rows += [
                (
                    f"{label} {sessions}",
                    "p50 / p99 ms",
                    f"{late(run, 'p50_ms')} / {late(run, 'p99_ms')}",
                    judged(f"{key}.p99_ms", "p99 <= 250") if top else "",
                    load(run),
                ),
                (
                    "",
                    "broker polls/s",
                    _n(run["broker_fetch_requests_per_s"], 1),
                    judged(f"{key}.broker_fetch_rate_flat", "flat") if top else "",
                    f"{_n(run['deliveries'])} deliveries to {run['latency_sessions']} sampled sessions, "
                    f"{_n(run['deliveries_missing'])} missing, {pushes}"
                    f"{_n(run['frames_per_s'])} frames/s to clients",
                ),
            ]
    for key, label in (("idle_sessions", "idle"), ("idle_streams", "idle streams")):
        if key not in results:
            continue
        idle = results[key]
        rows += [
            (
                f"{label} {idle['sessions']:,}",
                "RSS KiB/session",
                _up(idle["rss_per_session_kib"], 1),
                judged(f"{key}.rss_per_session_kib", "<= 32"),
                f"RSS {idle['proxy_rss_mib_before']:.0f} -> {idle['proxy_rss_mib_open']:.0f} MiB; held "
                f"{idle['held_seconds']:.0f} s: proxy CPU {idle['held_proxy_cpu_pct']:.0f}%, "
                f"{idle['held_broker_polls_per_s']:.1f} broker polls/s",
            ),
            (
                "",
                "open seconds",
                _n(idle["open_seconds"], 1),
                "",
                f"{_n(idle['opens_per_s'])} {'subscribed sessions' if key == 'idle_streams' else 'handshakes'}/s; "
                + load(idle),
            ),
        ]
    if "churn" in results:
        churn = results["churn"]
        before, after = churn["before"], churn["after"]
        rows += [
            (f"churn {churn['sessions']:,}", "sessions/s", _n(churn["per_s"]), "", load(churn)),
            (
                "",
                "leaked threads",
                str(churn["leaked_threads"]),
                judged("churn.leaked_threads", "== 0"),
                f"{before['threads']} -> {after['threads']}",
            ),
            (
                "",
                "leaked fds",
                str(churn["leaked_fds"]),
                judged("churn.leaked_fds", "== 0"),
                f"{before['fds']} -> {after['fds']}",
            ),
            (
                "",
                "RSS growth %",
                _up(churn["rss_growth_pct"], 2),
                judged("churn.rss_growth_pct", "<= 5"),
                f"{before['rss_mib']:.1f} -> {after['rss_mib']:.1f} MiB",
            ),
        ]
    if "first_byte" in results:
        first = results["first_byte"]
        rows += [
            (
                "first byte",
                "p50 / p99 ms",
                f"{_up(first['p50_ms'], 2)} / {_n(first['p99_ms'], 2)}",
                judged("first_byte.p50_ms", "p50 <= 10"),
                load(first),
            )
        ]
    rows += _produce_rows(results, judged, load)
    rows += _ops_rows(results, judged, load)
    return rows


def _produce_rows(
    results: dict[str, Any], judged: Callable[[str, str], str], load: Callable[[dict[str, Any]], str]
) -> list[tuple[str, str, str, str, str]]:
    rows: list[tuple[str, str, str, str, str]] = []
    if "produce_throughput" in results:
        f = results["produce_throughput"]
        producer = f["producer"]
        rows += [
            (
                "produce 1 KiB",
                "proxy records/s",
                _n(f["proxy_records_per_s"]),
                "",
                f"kafka-python direct {_n(f['kafka_python_records_per_s'])}/s "
                f"({_n(f['direct_in_flight_records'])} records in flight)",
            ),
            (
                "",
                "proxy MB/s (values)",
                _n(f["proxy_mb_per_s"], 1),
                "",
                f"{f['records_per_command']} records/command, {f['commands_in_flight']} commands in flight; "
                f"acks {producer['acks']}, idempotence {producer['enable_idempotence']}, "
                f"linger {producer['linger_ms']} ms, batch {_n(producer['batch_size'])} B",
            ),
            (
                "",
                "ratio vs kafka-python",
                _down(f["ratio_vs_kafka_python"], 2),
                judged("produce_throughput.ratio_vs_kafka_python", ">= 0.8"),
                load(f) + f"; writer client {f['client_cpu_pct']:.0f}%",
            ),
        ]
    if "produce_latency" in results:
        lat = results["produce_latency"]
        rows += [
            (
                "produce latency",
                "p50 / p99 ms",
                f"{_n(lat['p50_ms'], 2)} / {_up(lat['p99_ms'], 2)}",
                "",
                f"kafka-python direct {_n(lat['kafka_python_p50_ms'], 2)} / {_n(lat['kafka_python_p99_ms'], 2)} ms; "
                f"{_n(lat['commands'])} commands of one record, one after another",
            ),
            (
                "",
                "p99 vs kafka-python",
                _up(lat["p99_ratio_vs_kafka_python"], 2),
                judged("produce_latency.p99_ratio_vs_kafka_python", "<= 3"),
                load(lat),
            ),
        ]
    if "produce_fanin" in results:
        fan = results["produce_fanin"]
        first = f"; first: {fan['first_error']}" if fan["first_error"] else ""
        rows += [
            (
                f"produce fan-in {fan['sessions']:,}",
                "p50 / p99 ms",
                f"{late(fan, 'p50_ms')} / {late(fan, 'p99_ms')}",
                judged("produce_fanin.p99_ms", "p99 <= 250"),
                load(fan),
            ),
            (
                "",
                "errors",
                str(fan["errors"]),
                judged("produce_fanin.errors", "== 0"),
                f"{_n(fan['commands_per_s'])} commands/s sent ({fan['rate_per_session']}/s a session), "
                f"{_n(fan['acknowledged_per_s'])}/s acknowledged in the window, "
                f"{_n(fan['unanswered_in_window'])} never answered{first}",
            ),
        ]
    rows += _group_rows(results, judged, load)
    rows += _access_rows(results, judged, load)
    return rows


def _group_rows(
    results: dict[str, Any], judged: Callable[[str, str], str], load: Callable[[dict[str, Any]], str]
) -> list[tuple[str, str, str, str, str]]:
    """The consumer-group scenarios' rows (issue 12)."""
    rows: list[tuple[str, str, str, str, str]] = []
    if "group_throughput" in results:
        g = results["group_throughput"]
        rows += [
            (
                f"group {g['members']} members",
                "proxy records/s",
                _n(g["proxy_records_per_s"]),
                "",
                f"kafka-python direct {_n(g['kafka_python_records_per_s'])}/s "
                f"({g['members']} KafkaConsumers with a group_id, a process each)",
            ),
            (
                "",
                "proxy MB/s (values)",
                _n(g["proxy_mb_per_s"], 1),
                "",
                f"{_n(g['records'])} records over {g['partitions']} partitions; "
                f"members joined in {', '.join(_n(s, 1) for s in g['join_answer_seconds'])} s",
            ),
            (
                "",
                "ratio vs kafka-python",
                _down(g["ratio_vs_kafka_python"], 2),
                judged("group_throughput.ratio_vs_kafka_python", ">= 0.8"),
                load(g) + f"; member clients {g['client_cpu_pct']:.0f}%",
            ),
        ]
    if "group_rebalance" in results:
        r = results["group_rebalance"]
        slowest = _up(r["max_seconds"], 2) if r["max_seconds"] is not None else f"> {r['wait_seconds']:.0f}"
        median = _n(r["median_seconds"], 2) if r["median_seconds"] is not None else f"> {r['wait_seconds']:.0f}"
        answers = r["unsubscribe_answer_seconds"]
        rows += [
            (
                f"group rebalance x{r['repeats']}",
                "median / max s",
                f"{median} / {slowest}",
                judged("group_rebalance.max_seconds", "max <= 3"),
                f"unsubscribe answered in {min(answers):.2f}-{max(answers):.2f} s; "
                f"{r['handover_mismatches']} hand-over offsets off; {r['produce_rate']} records/s produced",
            ),
        ]
    if "group_members" in results:
        m = results["group_members"]
        before, after = m["before"], m["after"]
        refused = f"then OVERLOADED ({m['refusal_message']})" if m["refused"] else "not refused"
        rows += [
            (
                f"group members {m['members']}",
                "KiB / threads / broker conns per member",
                f"{_n(m['rss_per_member_kib'], 1)} / {_n(m['threads_per_member'], 2)} / "
                f"{_n(m['broker_connections_per_member'], 2)}",
                "",
                f"RSS {before['rss_mib']:.0f} -> {after['rss_mib']:.0f} MiB, threads {before['threads']} -> "
                f"{after['threads']}, broker connections {before['broker_connections']} -> "
                f"{after['broker_connections']}; {refused}",
            ),
        ]
    return rows


def _access_rows(
    results: dict[str, Any], judged: Callable[[str, str], str], load: Callable[[dict[str, Any]], str]
) -> list[tuple[str, str, str, str, str]]:
    """The authentication and quota scenarios' rows (issue 13)."""
    rows: list[tuple[str, str, str, str, str]] = []
    if "auth_handshake" in results:
        a = results["auth_handshake"]
        by = a["by_auth"]
        none, jwt, keyed = by["none"], by["jwt"], by["api_key"]
        rows += [
            (
                "auth handshake",
                "JWT first byte p50 / p99 ms",
                f"{_up(a['jwt_first_byte_p50_ms'], 2)} / {_n(a['jwt_first_byte_p99_ms'], 2)}",
                judged("auth_handshake.jwt_first_byte_p50_ms", "p50 <= 10"),
                f"no credential {_n(a['none_first_byte_p50_ms'], 2)} / {_n(a['none_first_byte_p99_ms'], 2)} ms, "
                f"API key {_n(a['api_key_first_byte_p50_ms'], 2)} / {_n(a['api_key_first_byte_p99_ms'], 2)} ms; "
                + load(jwt),
            ),
            (
                "",
                "handshakes/s JWT / none",
                f"{_n(a['jwt_handshakes_per_s'])} / {_n(a['none_handshakes_per_s'])}",
                "",
                f"ratio {a['jwt_vs_none_handshakes_per_s']:.2f}; "
                f"API key (scrypt) {_n(a['api_key_handshakes_per_s'], 1)}/s; "
                f"{a['concurrency']} at a time; proxy CPU per handshake {_n(jwt['proxy_cpu_us_per_handshake'])} / "
                f"{_n(none['proxy_cpu_us_per_handshake'])} / {_n(keyed['proxy_cpu_us_per_handshake'])} us "
                "(JWT / none / API key)",
            ),
        ]
    if "quota_isolation" in results:
        q = results["quota_isolation"]
        throttled, baseline = q["runs"]["throttled"], q["runs"]["baseline"]
        bound = _n(q["p99_bound_ms"], 1) if q["p99_bound_ms"] is not None else "-"
        rows += [
            (
                "quota isolation",
                "A p50 / p99 ms, B throttled",
                f"{late(throttled, 'p50_ms')} / {late(throttled, 'p99_ms')}",
                judged("quota_isolation.p99_ms", f"p99 <= {bound}"),
                load(throttled),
            ),
            (
                "",
                "A p50 / p99 ms, alone",
                f"{late(baseline, 'p50_ms')} / {late(baseline, 'p99_ms')}",
                "",
                f"B: {_n(q['writer_commands_per_s'])} commands/s, {_n(q['writer_refused_per_s'])}/s QUOTA_EXCEEDED, "
                f"{_n(q['writer_written_per_s'], 1)} records/s written (quota {q['writer_quota_records_per_s']}/s); "
                f"proxy {_n(throttled['proxy_commands_per_s'])} commands/s with B, "
                f"CPU {baseline['proxy_cpu_pct']:.0f}% without",
            ),
        ]
    if "kafka_identity" in results:
        k = results["kafka_identity"]
        runs = k["runs"]
        rows += [
            (
                "kafka identity",
                "own login first byte p50 warm / cold ms",
                f"{_up(k['warm_first_byte_p50_ms'], 2)} / {_up(k['cold_first_byte_p50_ms'], 2)}",
                judged("kafka_identity.warm_first_byte_p50_ms", "warm within route x 1.25 + 1")
                + ", "
                + judged("kafka_identity.cold_first_byte_p50_ms", "cold <= 250"),
                f"route's own login {_n(k['route_login_first_byte_p50_ms'], 2)} ms; p99 warm "
                f"{_n(k['warm_first_byte_p99_ms'], 2)}, cold {_n(k['cold_first_byte_p99_ms'], 2)} ms; "
                + load(runs["own_login_cold"]),
            ),
        ]
    return rows


def _ops_rows(
    results: dict[str, Any], judged: Callable[[str, str], str], load: Callable[[dict[str, Any]], str]
) -> list[tuple[str, str, str, str, str]]:
    """The ops port's scenario's rows (issue 14)."""
    if "ops_scrape" not in results:
        return []
    o = results["ops_scrape"]
    runs = o["runs"]
    scraped = runs["scraped"]
    return [
        (
            f"ops scrape {o['sessions']:,}",
            "scrape p50 / p99 ms",
            f"{_n(o['scrape_p50_ms'], 2)} / {_up(o['scrape_p99_ms'], 2)}",
            judged("ops_scrape.scrape_p99_ms", "p99 <= 250"),
            f"{o['scrapes']} scrapes one after another, {_n(o['body_bytes'])} B and {o['series']} series each, "
            f"proxy CPU {_n(o['proxy_cpu_us_per_scrape'])} us/scrape ({o['held_proxy_cpu_pct']:.0f}% of a core "
            f"without scrapes); {o['streams']} streams open; " + load(runs["scrape"]),
        ),
        (
            "",
            "first byte p50 / p99 ms, scraped",
            f"{_up(o['first_byte_p50_ms'], 2)} / {_n(o['first_byte_p99_ms'], 2)}",
            judged("ops_scrape.first_byte_p50_ms", f"p50 <= {_n(o['first_byte_bound_ms'], 2)}"),
            f"without a scraper {_n(o['baseline_first_byte_p50_ms'], 2)} / {_n(o['baseline_first_byte_p99_ms'], 2)} "
            f"ms; {scraped['scrapes']} scrapes every {o['scrape_interval_ms']} ms beside them "
            f"(p50 {_n(scraped['scrape_p50_ms'], 2)} ms); " + load(scraped),
        ),
    ]


def print_table(results: dict[str, Any]) -> None:
    """The header line (what was measured), the table, and one verdict line per target."""
    meta = results["meta"]
    changes = ", ".join(line[3:] for line in meta["package_changes"]) or "none"
    print(
        f"{meta['plan']['name']} run; proxy package {meta['package_commit']} at {meta['package_root']} "
        f"(sources {meta['package_sha256']}, uncommitted package changes: {changes}); bench {meta['commit']}; "
        f"{meta['cpus']} CPUs, Kafka {meta['kafka_version']}, Python {meta['python']}"
    )
    rows = table_rows(results)
    header = ("scenario", "figure", "measured", "target", "up against")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    lines = [
        " | ".join(cell.ljust(width) for cell, width in zip(row[:4], widths, strict=True)) + " | " + row[4]
        for row in [header, *rows]
    ]
    lines.insert(1, "-+-".join("-" * w for w in widths) + "-+-" + "-" * 10)
    print("\n".join(lines))
    print()
    print_verdicts(results)


def _shown(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value).lower() if isinstance(value, bool) else "none"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def print_verdicts(results: dict[str, Any]) -> None:
    """One line per target, whatever happened: PASS, FAIL, or not run (its scenario was left out or failed)."""
    verdicts = {v["figure"]: v for v in results.get("targets", [])}
    for target in TARGETS:
        verdict = verdicts.get(target.figure)
        if verdict is None:
            print(f"target {target.figure} {target.target}: NOT RUN")
        else:
            outcome = "PASS" if verdict["pass"] else "FAIL"
            print(f"target {target.figure} {target.target}: {outcome} ({_shown(verdict['value'])})")
    failed = [v["figure"] for v in verdicts.values() if not v["pass"]]
    passed = len(verdicts) - len(failed)
    not_run = len(TARGETS) - len(verdicts)
    print(
        f"targets: {passed} pass, {len(failed)} fail, {not_run} not run" + (f" ({', '.join(failed)})" if failed else "")
    )


def write_json(path: Path, results: dict[str, Any]) -> None:
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")

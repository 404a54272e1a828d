"""Write examples/grafana-dashboard.json, the Grafana dashboard of a proxy's /metrics.

    python scripts/gen_dashboard.py           # (re)write the file
    python scripts/gen_dashboard.py --check   # exit 1 if the file is not what this script writes

The JSON is generated so that it stays consistent (ids, grid positions, the same
label filters in every query) and reproducible: the same script always writes the
same bytes. Edit this script, not the JSON, and run it again.

Only the standard library is used. The dashboard asks for a Prometheus data source
when it is imported (the ``DS_PROMETHEUS`` variable), and offers ``instance`` and
``route`` variables built from the proxy's own metrics.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OUTPUT = Path(__file__).resolve().parents[1] / "examples" / "grafana-dashboard.json"
DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
#: Label filters: every query is narrowed to the chosen proxies, and the per-route ones to the chosen routes.
PROXY = 'instance=~"$instance"'
ROUTE = 'instance=~"$instance", route=~"$route"'
RATE = "$__rate_interval"


def proxy(metric: str, matcher: str = "") -> str:
    """The metric's selector on the dashboard's proxies, with one more label ``matcher`` if given."""
    return f"{metric}{{{PROXY}{',' + matcher if matcher else ''}}}"


def route(metric: str) -> str:
    return f"{metric}{{{ROUTE}}}"


def per_instance(expr: str) -> str:
    return f"sum by (instance) ({expr})"


def per_route(expr: str) -> str:
    return f"sum by (route) ({expr})"


def rate(selector: str) -> str:
    return f"rate({selector}[{RATE}])"


@dataclass
class Layout:
    """Places panels left to right in rows of 24 columns, and numbers them."""

    panels: list[dict[str, Any]] = field(default_factory=list)
    x: int = 0
    y: int = 0
    row_height: int = 0

    def _next_id(self) -> int:
        return len(self.panels) + 1

    def row(self, title: str) -> None:
        self._wrap()
        self.panels.append(
            {
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y},
                "id": self._next_id(),
                "panels": [],
                "title": title,
                "type": "row",
            }
        )
        self.y += 1

    def add(self, panel: dict[str, Any], width: int, height: int = 8) -> None:
        if self.x + width > 24:
            self._wrap()
        panel["gridPos"] = {"h": height, "w": width, "x": self.x, "y": self.y}
        panel["id"] = self._next_id()
        self.panels.append(panel)
        self.x += width
        self.row_height = max(self.row_height, height)

    def _wrap(self) -> None:
        if self.x:
            self.y += self.row_height
        self.x, self.row_height = 0, 0


def targets(*queries: tuple[str, str]) -> list[dict[str, Any]]:
    """Prometheus targets from (expression, legend) pairs, lettered A, B, ..."""
    return [
        {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend, "range": True, "refId": chr(ord("A") + i)}
        for i, (expr, legend) in enumerate(queries)
    ]


def timeseries(title: str, description: str, unit: str, *queries: tuple[str, str]) -> dict[str, Any]:
    return {
        "datasource": DATASOURCE,
        "description": description,
        "fieldConfig": {
            "defaults": {
                "custom": {"drawStyle": "line", "fillOpacity": 10, "lineWidth": 1, "showPoints": "never"},
                "min": 0,
                "unit": unit,
            },
            "overrides": [],
        },
        "options": {
            "legend": {
                "calcs": ["lastNotNull", "max"],
                "displayMode": "table",
                "placement": "bottom",
                "showLegend": True,
            },
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        "targets": targets(*queries),
        "title": title,
        "type": "timeseries",
    }


def readiness() -> dict[str, Any]:
    return {
        "datasource": DATASOURCE,
        "description": (
            "kafka_ws_trio_ready: 1 while /readyz answers 200 (every route's brokers answered the last check), "
            "0 before the first check, while a route's brokers are unreachable, and from the moment shutdown starts."
        ),
        "fieldConfig": {
            "defaults": {
                "mappings": [
                    {
                        "options": {
                            "0": {"color": "red", "index": 0, "text": "not ready"},
                            "1": {"color": "green", "index": 1, "text": "ready"},
                        },
                        "type": "value",
                    }
                ],
                "thresholds": {
                    "mode": "absolute",
                    "steps": [{"color": "red", "value": None}, {"color": "green", "value": 1}],
                },
                "unit": "none",
            },
            "overrides": [],
        },
        "options": {
            "colorMode": "background",
            "graphMode": "none",
            "justifyMode": "auto",
            "orientation": "auto",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "textMode": "value_and_name",
        },
        "targets": targets((proxy("kafka_ws_trio_ready"), "{{instance}}")),
        "title": "Ready",
        "type": "stat",
    }


def panels() -> list[dict[str, Any]]:
    layout = Layout()

    layout.row("Proxies")
    layout.add(readiness(), 6)
    layout.add(
        timeseries(
            "Sessions open",
            "WebSocket sessions open now, per proxy.",
            "short",
            (per_instance(proxy("kafka_ws_trio_sessions_open")), "{{instance}}"),
        ),
        6,
    )
    layout.add(
        timeseries(
            "Sessions opened and rejected",
            "Sessions opened per second, and upgrades refused because max_sessions were open.",
            "ops",
            (per_instance(rate(proxy("kafka_ws_trio_sessions_opened_total"))), "opened {{instance}}"),
            (per_instance(rate(proxy("kafka_ws_trio_sessions_rejected_total"))), "rejected {{instance}}"),
        ),
        6,
    )
    layout.add(
        timeseries(
            "Kafka threads busy",
            "Threads calling Kafka now, of the server's kafka_threads (32 by default). "
            "Near the limit, commands wait for a thread.",
            "short",
            (per_instance(proxy("kafka_ws_trio_kafka_threads_busy")), "{{instance}}"),
        ),
        6,
    )

    layout.row("Commands")
    layout.add(
        timeseries(
            "Commands",
            "Commands received (binary frames), error responses sent and text frames skipped, per second.",
            "ops",
            (per_instance(rate(proxy("kafka_ws_trio_commands_total"))), "commands {{instance}}"),
            (per_instance(rate(proxy("kafka_ws_trio_command_errors_total"))), "errors {{instance}}"),
            (per_instance(rate(proxy("kafka_ws_trio_text_frames_total"))), "text frames {{instance}}"),
        ),
        8,
    )
    layout.add(
        timeseries(
            "Error ratio",
            "Error responses per command. Refusals a client asked for (ACLs, quotas, offsets out of range) "
            "count as well as Kafka failures.",
            "percentunit",
            (
                f"{per_instance(rate(proxy('kafka_ws_trio_command_errors_total')))}"
                f" / {per_instance(rate(proxy('kafka_ws_trio_commands_total')))}",
                "{{instance}}",
            ),
        ),
        8,
    )
    layout.add(
        timeseries(
            "Queue depth and in flight",
            "Commands waiting for a session worker (queued) and being carried out (in flight), all sessions together.",
            "short",
            (per_instance(proxy("kafka_ws_trio_commands_queued")), "queued {{instance}}"),
            (per_instance(proxy("kafka_ws_trio_commands_in_flight")), "in flight {{instance}}"),
        ),
        8,
    )

    # The metrics of these two rows came with issue 14's second part (commands by kind and result, latency
    # histograms, sessions closed by code, handshakes refused, frames and bytes).
    layout.row("Commands by kind and latency")
    layout.add(
        timeseries(
            "Commands by kind",
            "Commands received per second, by kind.",
            "ops",
            (f"sum by (kind) ({rate(proxy('kafka_ws_trio_commands_by_kind_total'))})", "{{kind}}"),
        ),
        8,
    )
    errors = proxy("kafka_ws_trio_command_results_total", 'result!="OK"')
    layout.add(
        timeseries(
            "Error responses by kind and result",
            "Commands answered with an error response per second, by kind and error code (schema/README.md "
            "lists the codes).",
            "ops",
            (f"sum by (kind, result) ({rate(errors)})", "{{kind}} {{result}}"),
        ),
        8,
    )
    layout.add(
        timeseries(
            "Commands refused by code",
            "Commands refused by the principal's rights (60, 61) or quotas (62) per second, by error code.",
            "ops",
            (f"sum by (code) ({rate(proxy('kafka_ws_trio_commands_refused_total'))})", "{{code}}"),
        ),
        8,
    )
    for quantile, name in ((0.5, "median"), (0.99, "99th percentile")):
        buckets = f"sum by (kind, le) ({rate(proxy('kafka_ws_trio_command_seconds_bucket'))})"
        layout.add(
            timeseries(
                f"Command latency, {name}",
                f"Seconds from a command's receipt to its answer being written, {name} by kind "
                "(commands a session worker answers; a ping is answered at once).",
                "s",
                (f"histogram_quantile({quantile}, {buckets})", "{{kind}}"),
            ),
            12,
        )

    layout.row("Sessions and traffic")
    layout.add(
        timeseries(
            "Sessions closed by code",
            "Sessions closed per second, by WebSocket close code (1000 normal, 1001 going away, 1006 abnormal, ...).",
            "ops",
            (f"sum by (code) ({rate(proxy('kafka_ws_trio_sessions_closed_total'))})", "{{code}}"),
        ),
        6,
    )
    layout.add(
        timeseries(
            "Handshakes refused by status",
            "Upgrades refused by the access checks (401, 403, 429) or for want of a Kafka login place (503), "
            "per second.",
            "ops",
            (f"sum by (status) ({rate(proxy('kafka_ws_trio_handshakes_refused_total'))})", "{{status}}"),
        ),
        6,
    )
    layout.add(
        timeseries(
            "WebSocket messages",
            "WebSocket messages received and sent per second.",
            "ops",
            (per_instance(rate(proxy("kafka_ws_trio_frames_in_total"))), "in {{instance}}"),
            (per_instance(rate(proxy("kafka_ws_trio_frames_out_total"))), "out {{instance}}"),
        ),
        6,
    )
    layout.add(
        timeseries(
            "WebSocket payload bytes",
            "Payload bytes of the WebSocket messages received and sent, per second.",
            "Bps",
            (per_instance(rate(proxy("kafka_ws_trio_bytes_in_total"))), "in {{instance}}"),
            (per_instance(rate(proxy("kafka_ws_trio_bytes_out_total"))), "out {{instance}}"),
        ),
        6,
    )

    layout.row("Process")
    layout.add(
        timeseries(
            "Resident memory",
            "The proxy process's resident memory (prometheus-client's process collector). docs/ARCHITECTURE.md "
            "'Bounds, and the worst case of memory' says how it grows with sessions, streams and partition readers.",
            "bytes",
            (per_instance(proxy("process_resident_memory_bytes")), "{{instance}}"),
        ),
        8,
    )
    layout.add(
        timeseries(
            "CPU",
            "CPU seconds per second the proxy process used, all its threads together (1 is one core).",
            "short",
            (per_instance(rate(proxy("process_cpu_seconds_total"))), "{{instance}}"),
        ),
        8,
    )
    layout.add(
        timeseries(
            "Open files",
            "File descriptors open (sockets to clients and brokers, mostly), against the process's limit.",
            "short",
            (per_instance(proxy("process_open_fds")), "open {{instance}}"),
            (per_instance(proxy("process_max_fds")), "limit {{instance}}"),
        ),
        8,
    )

    layout.row("Partition readers ($route)")
    layout.add(
        timeseries(
            "Partition readers open",
            "Partition readers (a Kafka consumer each), shared by every session of a route reading the partition.",
            "short",
            (per_route(route("kafka_ws_trio_upstream_readers_open")), "{{route}}"),
        ),
        8,
    )
    layout.add(
        timeseries(
            "Kafka consumers created and closed",
            "Kafka consumers created and closed per second. A steady churn means readers close idle and reopen.",
            "ops",
            (per_route(rate(route("kafka_ws_trio_upstream_consumers_created_total"))), "created {{route}}"),
            (per_route(rate(route("kafka_ws_trio_upstream_consumers_closed_total"))), "closed {{route}}"),
        ),
        8,
    )
    layout.add(
        timeseries(
            "Broker polls",
            "Polls of Kafka by partition readers, per second.",
            "ops",
            (per_route(rate(route("kafka_ws_trio_upstream_broker_polls_total"))), "{{route}}"),
        ),
        8,
    )
    hits = per_route(rate(route("kafka_ws_trio_upstream_cache_hits_total")))
    polls = per_route(rate(route("kafka_ws_trio_upstream_broker_polls_total")))
    layout.add(
        timeseries(
            "Cache-hit ratio",
            "Reads answered from a reader's window of recent records, against those plus the polls of Kafka: "
            "cache hits / (cache hits + broker polls). Many sessions tailing one partition push it towards 1.",
            "percentunit",
            (f"{hits} / ({hits} + {polls})", "{{route}}"),
        ),
        8,
    )
    layout.add(
        timeseries(
            "Parked fetches",
            "Fetches held at a log end waiting for records (now), and parked fetches answered per second.",
            "short",
            (per_route(route("kafka_ws_trio_upstream_fetches_parked")), "parked {{route}}"),
            (per_route(rate(route("kafka_ws_trio_upstream_parked_answered_total"))), "answered/s {{route}}"),
        ),
        8,
    )
    layout.add(
        timeseries(
            "Connect failures and refused readers",
            "Failed attempts to reach a route's brokers, and commands refused because max_partition_readers "
            "were busy, per second.",
            "ops",
            (per_route(rate(route("kafka_ws_trio_upstream_connect_failures_total"))), "connect failures {{route}}"),
            (per_route(rate(route("kafka_ws_trio_upstream_readers_refused_total"))), "readers refused {{route}}"),
        ),
        8,
    )

    layout.row("Streams ($route)")
    layout.add(
        timeseries(
            "Stream partitions",
            "Partitions of push streams being fed (one pump each, whatever the number of streams on it).",
            "short",
            (per_route(route("kafka_ws_trio_upstream_stream_taps")), "{{route}}"),
        ),
        8,
    )
    layout.add(
        timeseries(
            "Stream records",
            "Records pushed to streams per second.",
            "ops",
            (per_route(rate(route("kafka_ws_trio_upstream_stream_records_total"))), "{{route}}"),
        ),
        8,
    )
    layout.add(
        timeseries(
            "Stream batches",
            "Batches pushed to streams per second.",
            "ops",
            (per_route(rate(route("kafka_ws_trio_upstream_stream_batches_total"))), "{{route}}"),
        ),
        8,
    )
    layout.add(
        timeseries(
            "Credit-starved streams",
            "Push streams reading now, and those behind the log end with no credit left: records wait for the "
            "client's next grant. Many starved streams point at clients that grant too little or read too slowly.",
            "short",
            (per_route(route("kafka_ws_trio_upstream_streams")), "streams {{route}}"),
            (per_route(route("kafka_ws_trio_upstream_streams_starved")), "starved {{route}}"),
        ),
        8,
    )
    layout.add(
        timeseries(
            "Stream lag by topic",
            "Records the push streams are behind each topic's log end (as its readers last saw it), summed over "
            "their partitions, per route and topic.",
            "short",
            (
                f"sum by (route, topic) ({route('kafka_ws_trio_upstream_topic_stream_lag')})",
                "{{route}} {{topic}}",
            ),
        ),
        8,
    )
    layout.add(
        timeseries(
            "Largest stream lag by topic",
            "Records the stream partition furthest behind lags by, per route and topic: one slow client shows "
            "here even when the sum is small.",
            "short",
            (
                f"max by (route, topic) ({route('kafka_ws_trio_upstream_topic_stream_lag_max')})",
                "{{route}} {{topic}}",
            ),
        ),
        8,
    )

    layout.row("Produce, transactions and groups ($route)")
    layout.add(
        timeseries(
            "Produced records",
            "Records produced (with their result) and produced records that failed, per second.",
            "ops",
            (per_route(rate(route("kafka_ws_trio_upstream_records_produced_total"))), "produced {{route}}"),
            (per_route(rate(route("kafka_ws_trio_upstream_records_failed_total"))), "failed {{route}}"),
        ),
        8,
    )
    layout.add(
        timeseries(
            "Produce records in flight",
            "Records handed to Kafka and not acknowledged yet.",
            "short",
            (per_route(route("kafka_ws_trio_upstream_produce_records_in_flight")), "{{route}}"),
        ),
        8,
    )
    layout.add(
        timeseries(
            "Produce bytes in flight",
            "Bytes handed to Kafka and not acknowledged yet.",
            "bytes",
            (per_route(route("kafka_ws_trio_upstream_produce_bytes_in_flight")), "{{route}}"),
        ),
        8,
    )
    layout.add(
        timeseries(
            "Transactions",
            "Transactional producers lent to a session now, and transactions begun per second.",
            "short",
            (per_route(route("kafka_ws_trio_upstream_transactions_open")), "open {{route}}"),
            (per_route(rate(route("kafka_ws_trio_upstream_transactions_begun_total"))), "begun/s {{route}}"),
        ),
        8,
    )
    layout.add(
        timeseries(
            "Group members",
            "Consumer group members open now (a Kafka consumer each), and members joined per second.",
            "short",
            (per_route(route("kafka_ws_trio_upstream_group_members_open")), "open {{route}}"),
            (per_route(rate(route("kafka_ws_trio_upstream_group_members_joined_total"))), "joined/s {{route}}"),
        ),
        8,
    )
    layout.add(
        timeseries(
            "Group rebalances",
            "Rebalances the route's group members took part in, per second: each assignment a member receives "
            "counts once, so a rebalance of three members here counts 3. A steady rate means members keep "
            "joining and leaving, or fail to keep their membership.",
            "ops",
            (per_route(rate(route("kafka_ws_trio_upstream_group_rebalances_total"))), "{{route}}"),
        ),
        8,
    )
    return layout.panels


def query_variable(name: str, label: str, query: str) -> dict[str, Any]:
    """A multi-value variable of one label's values, with an "All" that stands for each of them.

    No catch-all regex: the Process row's ``process_*`` metrics are every Python or Go target's too,
    and "All" must mean the proxies (the instances that have ``kafka_ws_trio_ready``), not them.
    """
    return {
        "current": {},
        "datasource": DATASOURCE,
        "definition": query,
        "includeAll": True,
        "label": label,
        "multi": True,
        "name": name,
        "options": [],
        "query": query,
        "refresh": 2,
        "regex": "",
        "sort": 1,
        "type": "query",
    }


def dashboard() -> dict[str, Any]:
    return {
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "description": "kafka-ws-trio, the WebSocket to Kafka proxy: what its ops port's /metrics says.",
        "editable": True,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "links": [],
        "panels": panels(),
        "refresh": "30s",
        "schemaVersion": 39,
        "tags": ["kafka", "websocket", "kafka-ws-trio"],
        "templating": {
            "list": [
                {
                    "current": {},
                    "hide": 0,
                    "includeAll": False,
                    "label": "Prometheus",
                    "multi": False,
                    "name": "DS_PROMETHEUS",
                    "options": [],
                    "query": "prometheus",
                    "refresh": 1,
                    "regex": "",
                    "type": "datasource",
                },
                query_variable("instance", "Proxy", "label_values(kafka_ws_trio_ready, instance)"),
                query_variable(
                    "route", "Route", 'label_values(kafka_ws_trio_upstream_readers_open{instance=~"$instance"}, route)'
                ),
            ]
        },
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "title": "kafka-ws-trio",
        "uid": "kafka-ws-trio",
        "version": 1,
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description="Write examples/grafana-dashboard.json.")
    parser.add_argument("--check", action="store_true", help="only compare: exit 1 if the file differs")
    args = parser.parse_args()
    text = render()
    if args.check:
        if not OUTPUT.exists() or OUTPUT.read_text(encoding="utf-8") != text:
            print(f"{OUTPUT} is not what {Path(__file__).name} writes: run it again", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

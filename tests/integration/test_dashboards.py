"""The monitoring examples (issue 14): examples/prometheus.yml, its rules and the Grafana dashboard.

Debian's ``promtool`` accepts the scrape config and the rules, and the rules pass
their unit tests (examples/prometheus-rules.test.yml). Every metric the dashboard,
the rules and their tests query is one that a running proxy's /metrics exposes, so
a renamed metric breaks here and not on an operator's screen. The dashboard is what
scripts/gen_dashboard.py writes, each of its panels asks the Prometheus data source
chosen at import for at least one query, and promtool parses every query.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any, Final

import pytest
import trio
from _support import running_proxy

from kafka_ws_trio import ProxyConfig, ServerConfig
from kafka_ws_trio._config import RouteConfig
from kafka_ws_trio.testing import KafkaBroker

pytestmark = pytest.mark.timeout(60)

CONFIG: Final = "examples/prometheus.yml"
RULES: Final = "examples/prometheus-rules.yml"
RULE_TESTS: Final = "examples/prometheus-rules.test.yml"
DASHBOARD: Final = "examples/grafana-dashboard.json"
DATASOURCE: Final = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}

#: A PromQL identifier: a metric name, a recorded rule's name (with colons), a function, a label or a keyword.
IDENTIFIER: Final = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
STRING: Final = re.compile(r'"(?:[^"\\]|\\.)*"')
#: What a family of the exposition's ``# TYPE`` line can be selected by in PromQL.
SERIES_SUFFIXES: Final = {
    "counter": ("_total",),
    "gauge": ("",),
    "untyped": ("",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("", "_sum", "_count"),
}


def promtool(repo_root: Path, *args: str) -> str:
    """Run promtool from the repository's top, as the examples' comments tell a reader to; its output."""
    binary = shutil.which("promtool")
    assert binary is not None, "promtool is missing (Debian: apt-get install prometheus; scripts/test installs it)"
    done = subprocess.run([binary, *args], cwd=repo_root, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, f"promtool {' '.join(args)}:\n{done.stdout}{done.stderr}"
    return done.stdout + done.stderr


def yaml_values(text: str, key: str) -> list[str]:
    """The values of every ``key:`` in a YAML file, on its line or as a ``|``/``>`` block under it, unquoted."""
    lines = text.splitlines()
    found = []
    for i, line in enumerate(lines):
        match = re.match(rf"^(\s*)(?:- )?{key}:\s*(.*?)\s*$", line)
        if match is None:
            continue
        indent, value = len(match.group(1)), match.group(2)
        if value.rstrip("-+") in ("|", ">"):
            block = []
            for following in lines[i + 1 :]:
                if following.strip() and len(following) - len(following.lstrip()) <= indent:
                    break
                block.append(following.strip())
            value = " ".join(block).strip()
        elif value[:1] in ("'", '"') and value[-1:] == value[:1]:
            value = value[1:-1]
        found.append(value)
    return found


def identifiers(expr: str) -> set[str]:
    """The names in a PromQL expression, string literals (label values, regexes) left out."""
    return set(IDENTIFIER.findall(STRING.sub('""', expr)))


def exposed_names(exposition: str) -> set[str]:
    """Every series name PromQL can select from this exposition: its samples' names, and those its
    ``# TYPE`` lines promise (a counter's ``_total``, a histogram's ``_bucket``, ``_sum`` and ``_count``),
    so that a labelled family with no samples yet counts too."""
    names: set[str] = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split()
            base = family.removesuffix("_total") if kind == "counter" else family
            names.update(base + suffix for suffix in SERIES_SUFFIXES[kind])
        elif line and not line.startswith("#"):
            match = IDENTIFIER.match(line)
            assert match is not None, line
            names.add(match.group())
    return names


def dashboard_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """The dashboard's panels, rows left out (and the panels of collapsed rows taken in)."""
    found = []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            found.extend(panel.get("panels", []))
        else:
            found.append(panel)
    return found


def dashboard_expressions(dashboard: dict[str, Any]) -> list[str]:
    """Every query of the dashboard: its panels' targets and its variables' label_values()."""
    exprs = [target["expr"] for panel in dashboard_panels(dashboard) for target in panel["targets"]]
    exprs += [variable["query"] for variable in dashboard["templating"]["list"] if variable["type"] == "query"]
    return exprs


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text: str = answer.read().decode()
        return text


@pytest.fixture
def dashboard(repo_root: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((repo_root / DASHBOARD).read_text(encoding="utf-8"))
    return loaded


def test_promtool_accepts_the_scrape_config_and_the_rules_it_loads(repo_root: Path) -> None:
    assert "SUCCESS: 1 rule files found" in promtool(repo_root, "check", "config", CONFIG)
    promtool(repo_root, "check", "rules", RULES)


def test_the_alert_rules_pass_their_promtool_unit_tests(repo_root: Path) -> None:
    promtool(repo_root, "test", "rules", RULE_TESTS)


async def test_the_dashboard_and_the_rules_query_only_metrics_a_running_proxy_exposes(
    kafka_broker: KafkaBroker, repo_root: Path, dashboard: dict[str, Any]
) -> None:
    config = ProxyConfig(ServerConfig(port=0, ops_port=0), (RouteConfig("/kafka", kafka_broker.bootstrap),))
    async with running_proxy(config) as server:
        assert server.ops_port is not None
        exposed = exposed_names(await trio.to_thread.run_sync(scrape, server.ops_port))
    assert "kafka_ws_trio_commands_total" in exposed  # the exposition was read, with its counters' suffix

    rules = (repo_root / RULES).read_text(encoding="utf-8")
    rule_tests = (repo_root / RULE_TESTS).read_text(encoding="utf-8")
    rule_exprs = yaml_values(rules, "expr")
    # The extraction saw every rule: as many expressions as promtool finds rules.
    assert f"SUCCESS: {len(rule_exprs)} rules found" in promtool(repo_root, "check", "rules", RULES)
    recorded = set(yaml_values(rules, "record"))
    queries = {
        DASHBOARD: dashboard_expressions(dashboard),
        RULES: rule_exprs,
        RULE_TESTS: yaml_values(rule_tests, "expr") + yaml_values(rule_tests, "series"),
    }
    for source, exprs in queries.items():
        assert exprs, f"no expressions found in {source}"
        for expr in exprs:
            names = identifiers(expr)
            # The proxy's own metrics, and prometheus-client's process and Python collectors it serves too.
            ours = {name for name in names if name.startswith(("kafka_ws_trio_", "process_", "python_"))}
            assert ours <= exposed, f"{source}: {expr!r} names metrics the proxy does not expose: {ours - exposed}"
            records = {name for name in names if ":" in name}
            assert records <= recorded, f"{source}: {expr!r} names rules that are not recorded: {records - recorded}"
            assert ours or records or names & {"up"}, f"{source}: {expr!r} queries nothing of the proxy's"
    for expr in queries[DASHBOARD]:
        assert not {name for name in identifiers(expr) if ":" in name}, f"{expr!r}: the dashboard needs no rules"


def test_every_dashboard_panel_asks_the_chosen_prometheus_for_at_least_one_query(dashboard: dict[str, Any]) -> None:
    assert dashboard["schemaVersion"] >= 39
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    assert re.fullmatch(
        r"label_values\(kafka_ws_trio_upstream_readers_open(\{.*\})?, route\)", variables["route"]["query"]
    )
    for variable in variables.values():
        if variable["type"] == "query":
            assert variable["datasource"] == DATASOURCE, variable["name"]

    panels = dashboard_panels(dashboard)
    assert panels
    for panel in panels:
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], f"{panel['title']}: no query"
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
            assert target["expr"].strip(), f"{panel['title']}: an empty query"
        assert len({target["refId"] for target in panel["targets"]}) == len(panel["targets"]), panel["title"]

    everything = dashboard["panels"] + [inner for row in dashboard["panels"] for inner in row.get("panels", [])]
    assert len({panel["id"] for panel in everything}) == len(everything), "two panels share an id"
    cells: dict[tuple[int, int], str] = {}
    for panel in dashboard["panels"]:
        place = panel["gridPos"]
        assert place["x"] >= 0 and place["w"] > 0 and place["x"] + place["w"] <= 24, panel["title"]
        for x in range(place["x"], place["x"] + place["w"]):
            for y in range(place["y"], place["y"] + place["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[x, y]}"
                cells[x, y] = panel["title"]


def test_every_dashboard_query_is_valid_promql(repo_root: Path, dashboard: dict[str, Any], tmp_path: Path) -> None:
    """promtool parses them as the expressions of recording rules, Grafana's variables filled in as Grafana would."""
    filled = {"$__rate_interval": "1m", "$instance": ".*", "$route": ".*"}
    exprs = [target["expr"] for panel in dashboard_panels(dashboard) for target in panel["targets"]]
    rules = ["groups:", "  - name: dashboard", "    rules:"]
    for i, expr in enumerate(exprs):
        for variable, value in filled.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"{expr!r}: a variable the dashboard does not define"
        rules += [f"      - record: dashboard_query_{i}", f"        expr: {json.dumps(expr)}"]
    (tmp_path / "dashboard-rules.yml").write_text("\n".join(rules) + "\n")
    checked = promtool(repo_root, "check", "rules", str(tmp_path / "dashboard-rules.yml"))
    assert f"SUCCESS: {len(exprs)} rules found" in checked


def test_the_dashboard_is_what_its_generator_writes(repo_root: Path) -> None:
    checked = subprocess.run(
        [sys.executable, "scripts/gen_dashboard.py", "--check"],
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr

"""The operators' dashboard (docs/grafana/actorim.json) shows what a node exports: every query of
every panel and variable names metrics that a real node serves at /metrics, and the panels
operators look at in an incident are there (docs/operations.md, "A dashboard")."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support import RunningNode, http_get

REPO = Path(__file__).resolve().parents[1]
GRAFANA = REPO / "docs" / "grafana"
METRIC = re.compile(r"\bactorim_[a-z_]+\b")

# What each panel an operator relies on must query: (panel title, a metric, or a metric with the
# label matcher that selects it).
PROMISED = [
    ("Connections", "actorim_connections"),
    ("Deliveries per second", "actorim_messages_delivered_total"),
    ("Send latency", "actorim_delivery_latency_seconds_bucket"),
    ("Store commit time", "actorim_store_commit_seconds_bucket"),
    ("Outbox overflows", "actorim_slow_consumer_closes_total"),
    ("Circuit breakers", "actorim_circuit_breaker_state"),
    ("Hub blocked", "actorim_hub_blocked"),
    (
        "Connects per second (reconnect storms)",
        'actorim_commands_total{instance=~"$instance", command="connect"}',
    ),
    ("Connections refused (admission control)", "actorim_setups_refused_total"),
]


def _dashboard() -> dict[str, Any]:
    return json.loads((GRAFANA / "actorim.json").read_text())


def _queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable."""
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            yield f"variable {variable['name']}", variable["definition"]


def _exported(body: str) -> set[str]:
    """Every series name /metrics serves, and the names of families with no series yet (a
    labelled counter before its first count, the breaker gauge of a node without Redis)."""
    names = set()
    for family in text_string_to_metric_families(body):
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
        if family.type == "counter":
            names.add(family.name + "_total")
        elif family.type == "histogram":
            names.update(family.name + suffix for suffix in ("_bucket", "_sum", "_count"))
    return names


def test_every_query_of_the_dashboard_names_metrics_a_node_exports(
    start_node: Callable[..., RunningNode],
) -> None:
    node = start_node(store="sqlite")
    status, _, body = http_get(node.http + "/metrics")
    assert status == 200
    exported = _exported(body.decode())
    queries = list(_queries(_dashboard()))
    assert queries
    for where, expr in queries:
        named = set(METRIC.findall(expr))
        assert named, f"{where}: {expr!r} names no actorim metric"
        assert named <= exported, (
            f"{where}: {expr!r} queries {sorted(named - exported)}, which /metrics does not serve"
        )


def test_the_dashboard_has_the_panels_operators_look_at() -> None:
    panels = {panel["title"]: panel for panel in _dashboard()["panels"]}
    for title, wanted in PROMISED:
        assert title in panels, f"no panel {title!r}"
        exprs = [target["expr"] for target in panels[title]["targets"]]
        assert any(wanted in expr for expr in exprs), f"{title!r} does not query {wanted}"


def test_the_provisioning_files_load_the_dashboard_from_a_folder_and_name_prometheus() -> None:
    dashboards = yaml.safe_load((GRAFANA / "provisioning/dashboards/actorim.yaml").read_text())
    (provider,) = dashboards["providers"]
    assert provider["type"] == "file" and provider["options"]["path"]
    sources = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yaml").read_text())
    assert [source["type"] for source in sources["datasources"]] == ["prometheus"]
    # Every panel reads the data source chosen in the dashboard's variable, not a fixed one.
    for panel in _dashboard()["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]

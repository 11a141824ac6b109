"""The Grafana dashboard (deploy/grafana/dashboards/entroq-redis.json) against the service's metrics.

- Static: the JSON parses; every query parses as PromQL (promql-parser, in the test extra) after
  Grafana's variables are substituted; every metric and label it uses is one the service specifies;
  the panels the issue asks for are there; the layout has no overlaps.
- Live: ``entroq-redis serve`` runs on a free port (embedded store), gets a little traffic, and every
  metric family the dashboard queries is in its /metrics with the right type and labels, and the
  claim and modify panels' route filters match routes the service really reports.
"""

from __future__ import annotations

import base64
import importlib
import json
import pathlib
import re
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import httpx
import pytest
from deploy_support import free_port, running_service
from prometheus_client.parser import text_string_to_metric_families

ROOT = pathlib.Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "entroq-redis.json"

# The service's metrics contract: family -> (type, labels).
METRICS: dict[str, tuple[str, frozenset[str]]] = {
    # queue, l1, l2, l3: EntroQ v1's labels; name: EntroQ v0.9's (the same queue name).
    "entroq_queue_size": ("gauge", frozenset({"queue", "l1", "l2", "l3", "name", "type"})),
    "entroq_http_requests": ("counter", frozenset({"route", "outcome"})),
    "entroq_http_request_duration_seconds": ("histogram", frozenset({"route", "outcome"})),
    "entroq_dependency_errors": ("counter", frozenset({"kind"})),
    "entroq_waiting_claims": ("gauge", frozenset()),
    "entroq_claim_wait_seconds": ("histogram", frozenset()),
    "entroq_store_roundtrip_seconds": ("histogram", frozenset({"op"})),
}
QUEUE_SIZE_TYPES = {"total", "claimed", "available", "future", "maxClaims"}
CLAIM_ROUTES = "(?i).*claim.*"
MODIFY_ROUTES = "(?i).*modify.*"

# Grafana's variables, replaced by values a real query could have.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "1h",
    "$queue": ".*",
    "$l1": ".*",
    "$l2": ".*",
    "$l3": ".*",
}

# Every query of EntroQ's own dashboard (deploy/grafana/entroq-dashboard.json of
# github.com/shiblon/entroq at a7fbfaa, after v1.1.0; label_values(...) variables as their
# selectors). A team moving from EntroQ keeps that dashboard: these must select our series.
ENTROQ_DASHBOARD_QUERIES = [
    'entroq_queue_size{l1=~"$l1", l2=~"$l2", l3=~"$l3", type="total"}',
    'entroq_queue_size{l1=~"$l1", l2=~"$l2", l3=~"$l3", type="claimed"}',
    'entroq_queue_size{l1=~"$l1", l2=~"$l2", l3=~"$l3", type="available"}',
    'entroq_queue_size{l1=~"$l1", l2=~"$l2", l3=~"$l3", type="maxClaims"}',
    'sum(entroq_queue_size{l1=~"$l1", type="total"}) by (l1)',
    "entroq_queue_size",
    'entroq_queue_size{l1=~"$l1"}',
    'entroq_queue_size{l2=~"$l2"}',
]
# EntroQ v0.9's gauge had the labels name and type; its users' queries look like this.
ENTROQ_V09_QUERIES = ['sum by (name) (entroq_queue_size{type="total"})']


def _promql() -> ModuleType:
    try:
        return importlib.import_module("promql_parser")
    except ImportError:
        pytest.fail(
            "promql-parser is not installed; it comes with the test extra: pip install '.[test]'",
            pytrace=False,
        )


@dataclass
class Selector:
    series: str  # the series name as written, e.g. entroq_http_requests_total
    family: str  # the metric family it belongs to, e.g. entroq_http_requests
    labels: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # label -> [(op, value)]


def family_of(series: str) -> str:
    """The family a series name belongs to under the spec (histogram and counter suffixes)."""
    for suffix, kind in (("_bucket", "histogram"), ("_sum", "histogram"), ("_count", "histogram")):
        base = series.removesuffix(suffix)
        if base != series and METRICS.get(base, ("",))[0] == kind:
            return base
    base = series.removesuffix("_total")
    if base != series and METRICS.get(base, ("",))[0] == "counter":
        return base
    return series


def analyse(expr: str) -> tuple[list[Selector], set[str]]:
    """The series selectors of a PromQL expression and the labels its aggregations group by."""
    promql = _promql()
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr}"
    ast = promql.parse(expr)
    selectors: list[Selector] = []
    grouping: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, promql.VectorSelector):
            assert node.name, f"selector without a metric name in {expr}"
            selector = Selector(node.name, family_of(node.name))
            for matcher in node.matchers.matchers:
                op = str(matcher.op).rpartition(".")[2]
                selector.labels.setdefault(matcher.name, []).append((op, matcher.value))
            selectors.append(selector)
        elif isinstance(node, promql.AggregateExpr) and node.modifier is not None:
            grouping.update(node.modifier.labels)

    promql.walk(ast, visit)
    return selectors, grouping


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    panels = []
    for panel in dashboard["panels"]:
        panels += panel.get("panels", []) if panel["type"] == "row" else [panel]
    return panels


def queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL) for every query in the dashboard, template variables included."""
    found = [(p["title"], t["expr"]) for p in _panels(dashboard) for t in p.get("targets", [])]
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        text = query.get("query", "") if isinstance(query, dict) else str(query or "")
        match = re.fullmatch(r"label_values\((\w+),\s*\w+\)", text)
        if variable["type"] == "query":
            assert match, f"variable {variable['name']}: unsupported query {text!r}"
            found.append((f"variable {variable['name']}", match.group(1)))
    return found


# ---- static --------------------------------------------------------------------------------------


def test_dashboard_shape(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] and dashboard["title"]
    panels = _panels(dashboard)
    ids = [p["id"] for p in dashboard["panels"]] + [p["id"] for p in panels if p not in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in panels:
        if panel["type"] == "row":
            continue
        # Panels follow the data source variable, so the dashboard imports into any Grafana.
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert ref_ids and len(ref_ids) == len(set(ref_ids)), panel["title"]
        assert all(t["expr"].strip() for t in panel["targets"]), panel["title"]


def test_panels_do_not_overlap(dashboard: dict[str, Any]) -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]


def test_every_query_parses_and_uses_specified_metrics_and_labels(dashboard: dict[str, Any]) -> None:
    for title, expr in queries(dashboard):
        selectors, grouping = analyse(expr)
        assert selectors, f"{title}: {expr} queries no metric"
        allowed_grouping: set[str] = {"instance", "job"}
        for selector in selectors:
            assert selector.family in METRICS, f"{title}: {selector.series} is not a service metric"
            kind, labels = METRICS[selector.family]
            usable = labels | {"instance", "job"} | ({"le"} if selector.series.endswith("_bucket") else set())
            assert set(selector.labels) <= usable, f"{title}: unknown label in {expr}"
            allowed_grouping |= usable
            if kind == "histogram":
                assert selector.series != selector.family, f"{title}: query {selector.family}_bucket"
            for op, value in selector.labels.get("type", []):
                values = value.split("|") if op in ("Re", "NotRe") else [value]
                assert set(values) <= QUEUE_SIZE_TYPES, f"{title}: unknown queue size type in {expr}"
        assert grouping <= allowed_grouping, (
            f"{title}: groups by unknown labels {grouping - allowed_grouping}"
        )


def test_entroq_dashboard_queries_use_our_labels() -> None:
    for expr in ENTROQ_DASHBOARD_QUERIES + ENTROQ_V09_QUERIES:
        selectors, grouping = analyse(expr)
        for selector in selectors:
            assert set(selector.labels) <= METRICS[selector.family][1], expr
        assert grouping <= METRICS["entroq_queue_size"][1], expr


def test_dashboard_covers_what_the_issue_asks(dashboard: dict[str, Any]) -> None:
    analysed = [(title, expr, *analyse(expr)) for title, expr in queries(dashboard)]

    def panels_with(condition: Any) -> list[str]:
        return [
            title for title, expr, selectors, grouping in analysed if condition(expr, selectors, grouping)
        ]

    def route_filter(selectors: list[Selector], regex: str) -> bool:
        return any(("Re", regex) in s.labels.get("route", []) for s in selectors)

    assert panels_with(lambda e, s, g: "type" in g and any(x.family == "entroq_queue_size" for x in s))
    # Grouped by top-level prefix, as EntroQ's dashboard does.
    assert panels_with(lambda e, s, g: "l1" in g and any(x.family == "entroq_queue_size" for x in s))
    assert panels_with(
        lambda e, s, g: (
            "rate(" in e
            and route_filter(s, CLAIM_ROUTES)
            and any(x.family == "entroq_http_requests" for x in s)
        )
    )
    assert panels_with(
        lambda e, s, g: (
            "rate(" in e
            and route_filter(s, MODIFY_ROUTES)
            and any(x.family == "entroq_http_requests" for x in s)
        )
    )
    assert panels_with(lambda e, s, g: "kind" in g and any(x.family == "entroq_dependency_errors" for x in s))
    for family in ("entroq_http_request_duration_seconds", "entroq_claim_wait_seconds"):
        for quantile in ("0.5", "0.95", "0.99"):
            assert panels_with(
                lambda e, s, g, f=family, q=quantile: (
                    e.startswith(f"histogram_quantile({q},") and any(x.family == f for x in s)
                )
            ), (family, quantile)
    assert panels_with(lambda e, s, g: any(x.family == "entroq_store_roundtrip_seconds" for x in s))
    assert panels_with(lambda e, s, g: any(x.family == "entroq_waiting_claims" for x in s))


def test_analysis_rejects_unknown_metrics() -> None:
    """The checks above really look: a typo in a metric name is not a service metric."""
    selectors, grouping = analyse(
        'sum by (route) (rate(entroq_http_request_total{route="x"}[$__rate_interval]))'
    )
    assert [s.family for s in selectors] == ["entroq_http_request_total"]
    assert "entroq_http_request_total" not in METRICS and grouping == {"route"}


# ---- live ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def service_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``entroq-redis serve`` on a free loopback port with the embedded store."""
    workdir = tmp_path_factory.mktemp("serve")
    exe = shutil.which("entroq-redis", path=str(pathlib.Path(sys.executable).parent))
    assert exe, f"entroq-redis is not installed next to {sys.executable}"
    port = free_port()
    command = [exe, "serve", "--host", "127.0.0.1", "--port", str(port), "--data", str(workdir / "data")]
    with running_service(command, workdir, port):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def exported(service_url: str) -> dict[str, Any]:
    """The service's metric families after a little traffic of every kind the dashboard shows."""
    # A nested name, so that every level label (l1, l2, l3) has a value to select.
    queue = "/deploy/check/nested/queue"
    value = base64.b64encode(b"hello").decode()
    with httpx.Client(base_url=service_url, timeout=10) as client:
        client.get("/api/v0/time")
        client.post("/api/v0/modify", json={"inserts": [{"queue": queue, "value": value}]})
        client.post(
            "/api/v0/claim", json={"queues": [queue], "claimantId": "deploy-check", "durationMs": "60000"}
        )
        client.post(
            "/api/v0/claim/wait",
            json={"queues": [queue + "-empty"], "claimantId": "deploy-check", "durationMs": "1000"},
            headers={"X-Server-Timeout": "0.2"},
        )
        client.post(
            "/api/v0/modify", json={"deletes": [{"id": "no-such-task", "version": 0, "queue": queue}]}
        )
        client.get("/api/v0/queues/stats")
        response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {family.name: family for family in text_string_to_metric_families(response.text)}


def test_service_exports_every_specified_metric(exported: dict[str, Any]) -> None:
    for name, (kind, labels) in METRICS.items():
        assert name in exported, f"/metrics has no {name}"
        assert exported[name].type == kind, f"{name} is a {exported[name].type}, not a {kind}"
        for sample in exported[name].samples:
            assert set(sample.labels) - {"le"} == labels, f"{sample.name} has labels {sorted(sample.labels)}"
    for sample in exported["entroq_queue_size"].samples:
        assert sample.labels["type"] in QUEUE_SIZE_TYPES, sample


def test_every_dashboard_metric_is_exported(dashboard: dict[str, Any], exported: dict[str, Any]) -> None:
    for title, expr in queries(dashboard):
        for selector in analyse(expr)[0]:
            family = exported.get(selector.family)
            assert family is not None, f"{title}: {selector.series} is not in /metrics"
            if selector.series != selector.family:  # _bucket, _sum, _count, _total
                assert any(s.name == selector.series for s in family.samples) or not family.samples, (
                    f"{title}: {family.name} has samples but none named {selector.series}"
                )


def test_claim_and_modify_panels_match_real_routes(exported: dict[str, Any]) -> None:
    routes = {s.labels["route"] for s in exported["entroq_http_requests"].samples}
    assert any(re.fullmatch(CLAIM_ROUTES, r) for r in routes), f"no claim route among {sorted(routes)}"
    assert any(re.fullmatch(MODIFY_ROUTES, r) for r in routes), f"no modify route among {sorted(routes)}"
    assert not re.fullmatch(CLAIM_ROUTES, "/metrics") and not re.fullmatch(MODIFY_ROUTES, "/api/v0/time")


def _selects(selector: Selector, labels: dict[str, str]) -> bool:
    """Whether a sample with ``labels`` matches the selector (Prometheus: a missing label is "")."""
    for name, matchers in selector.labels.items():
        have = labels.get(name, "")
        for op, wanted in matchers:
            matched = {
                "Equal": have == wanted,
                "NotEqual": have != wanted,
                "Re": re.fullmatch(wanted, have) is not None,
                "NotRe": re.fullmatch(wanted, have) is None,
            }[op]
            if not matched:
                return False
    return True


def test_entroq_dashboard_selects_our_series(exported: dict[str, Any]) -> None:
    """EntroQ's dashboard, run against what we export: each selector finds a series, and the
    level labels are EntroQ's values for the nested queue (l1..l3 from the queue name)."""
    samples = exported["entroq_queue_size"].samples
    for expr in ENTROQ_DASHBOARD_QUERIES + ENTROQ_V09_QUERIES:
        for selector in analyse(expr)[0]:
            assert any(_selects(selector, s.labels) for s in samples), f"{expr} selects nothing"
    nested = [s for s in samples if s.labels["queue"] == "/deploy/check/nested/queue"]
    assert {s.labels["type"] for s in nested} == QUEUE_SIZE_TYPES
    for sample in nested:
        assert sample.labels["name"] == sample.labels["queue"]
        assert (sample.labels["l1"], sample.labels["l2"], sample.labels["l3"]) == (
            "/deploy",
            "/deploy/check",
            "/deploy/check/nested",
        )
    narrowed = analyse('entroq_queue_size{l1=~"/deploy", l2=~"/deploy/check", type="total"}')[0][0]
    assert [s.value for s in samples if _selects(narrowed, s.labels)] == [1.0]

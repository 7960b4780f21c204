"""The Grafana dashboard queries only the metrics `serve_app.observability.Metrics` defines,
by tags they carry, and has a panel for each of them."""

import ast
import json
import re

from tests.conftest import REPO

DASHBOARD = REPO / "kuberay" / "grafana" / "happykube-dashboard.json"
# Tags ray.serve.metrics adds to every metric of a replica, and Prometheus's bucket bound.
IMPLICIT_TAGS = {"deployment", "replica", "application", "le"}
SUFFIXES = {"Counter": ("_total",), "Histogram": ("_bucket", "_sum", "_count")}


def _defined_metrics() -> dict[str, tuple[str, set[str]]]:
    """{name: (kind, tag keys)} of the metrics built in `Metrics.__init__`."""
    tree = ast.parse((REPO / "serve_app" / "observability.py").read_text())
    metrics: dict[str, tuple[str, set[str]]] = {}
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
    for call in calls:
        kind = call.func.id  # type: ignore[attr-defined]
        if kind in SUFFIXES:
            tags = next((kw.value for kw in call.keywords if kw.arg == "tag_keys"), None)
            tag_keys = set(ast.literal_eval(tags)) if tags else set()
            metrics[ast.literal_eval(call.args[0])] = (kind, tag_keys)
    return metrics


def _exprs() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel["targets"]]


def test_every_query_names_a_defined_metric_and_its_tags() -> None:
    metrics = _defined_metrics()
    assert {"happykube_requests", "happykube_cache_lookups", "happykube_db_write_seconds"} <= set(
        metrics
    )
    series = {
        f"ray_{name}{suffix}": tags
        for name, (kind, tags) in metrics.items()
        for suffix in SUFFIXES[kind]
    }
    for expr in _exprs():
        for used in re.findall(r"\bray_happykube_\w+", expr):
            assert used in series, (used, expr)
            matchers = " ".join(re.findall(r"\{([^}]*)\}", expr))
            labels = set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers))
            for group in re.findall(r"by \(([^)]*)\)", expr):
                labels |= {label.strip() for label in group.split(",")}
            assert labels <= series[used] | IMPLICIT_TAGS, (expr, labels - series[used])


def test_every_metric_has_a_panel() -> None:
    queried = " ".join(_exprs())
    for name in _defined_metrics():
        assert f"ray_{name}_" in queried, f"no panel reads {name}"


def test_panels_have_unique_ids_and_do_not_overlap() -> None:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    cells = [
        (p["gridPos"]["x"] + dx, p["gridPos"]["y"] + dy)
        for p in panels
        for dx in range(p["gridPos"]["w"])
        for dy in range(p["gridPos"]["h"])
    ]
    assert len(cells) == len(set(cells))

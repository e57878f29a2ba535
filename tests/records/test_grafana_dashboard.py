"""The shipped Grafana dashboard only queries metrics the proxy exports, and covers all of them."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client.metrics import MetricWrapperBase

from guard import metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "grafana" / "guardtune.json"
_SUFFIXES = ("_bucket", "_count", "_sum", "_total", "_created")


def _exported() -> set[str]:
    names = set()
    for collector in vars(metrics).values():
        if isinstance(collector, MetricWrapperBase):  # the metrics module's own collectors only
            names.update(fam.name for fam in collector.describe())
    return {_base(n) for n in names}


def _base(name: str) -> str:
    for suffix in _SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def test_dashboard_queries_only_exported_metrics_and_every_one_is_shown() -> None:
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    used = {_base(m) for e in exprs for m in re.findall(r"\bguard_[a-z0-9_]+", e)}
    exported = _exported()
    assert used - exported == set(), f"dashboard queries unknown metrics: {used - exported}"
    assert exported - used == set(), f"metrics missing from the dashboard: {exported - used}"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))

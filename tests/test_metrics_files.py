"""The alert rules and the Grafana dashboard in deploy/ name only metrics crmhub exports (issue 15, item 5)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from ruamel.yaml import YAML

from crmhub.metrics import Metrics
from crmhub.store import open_store

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
METRIC = re.compile(r"\bcrmhub_[a-z_]+\b")


SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def exported(tmp_path: Path) -> set[str]:
    """Every sample name a hub's /metrics can show (store gauges included), whether or not it has samples yet."""
    store = open_store(f"sqlite:///{tmp_path / 'crmhub.db'}")
    try:
        families = list(Metrics(store, crms=["salesforce"], channels=["twilio"]).registry.collect())
    finally:
        store.close()
    names = {family.name + suffix for family in families for suffix in SUFFIXES.get(family.type, ("",))}
    return names | {"crmhub_lag_seconds"}  # a store gauge family shown only once a stream has a cursor


def test_every_alert_names_exported_metrics(tmp_path: Path) -> None:
    rules = YAML(typ="safe").load((DEPLOY / "prometheus-alerts.yml").read_text())
    expressions = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    assert len(expressions) >= 7
    used = {name for expr in expressions for name in METRIC.findall(expr)}
    assert used and used <= exported(tmp_path), used - exported(tmp_path)


def test_every_dashboard_panel_names_exported_metrics(tmp_path: Path) -> None:
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    used = {name for expr in expressions for name in METRIC.findall(expr)}
    names = exported(tmp_path)
    assert used <= names, used - names
    assert {"crmhub_delivery_latency_seconds_bucket", "crmhub_api_call_duration_seconds_bucket"} <= used

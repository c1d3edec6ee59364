"""deploy/grafana/streetgate.json: every query names metrics and labels /metrics really exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from prometheus_client.openmetrics.parser import text_string_to_metric_families

from gateway.runtime.metrics import render
from tests.support.snapshots import snapshot

DASHBOARD = Path(__file__).parents[2] / "deploy" / "grafana" / "streetgate.json"
METRIC = re.compile(r"\bstreetgate_[a-z_]+\b")
#: Label matchers inside {...}: name=value, name=~value, name!=value.
MATCHER = re.compile(r"([a-z_]+)\s*(?:=~|!~|!=|=)\s*\"")
#: Labels Prometheus adds to every scraped series.
SCRAPE_LABELS = {"instance", "job"}


def exported() -> dict[str, set[str]]:
    """Sample name -> label names, from render() of a realistic snapshot, parsed independently."""
    names: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(render(snapshot())):  # type: ignore[no-untyped-call]
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
    return names


def queries(node: Any) -> list[str]:
    """Every PromQL text in the dashboard: panel targets and template variable queries."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            promql = key in {"expr", "definition"} or (key == "query" and "streetgate_" in value)
            if isinstance(value, str) and promql:
                found.append(value)
            else:
                found += queries(value)
    elif isinstance(node, list):
        for item in node:
            found += queries(item)
    return found


def test_every_dashboard_query_names_exported_metrics_and_labels() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    texts = queries(dashboard)
    assert len(texts) >= 20
    metrics = exported()
    used: set[str] = set()
    for text in texts:
        names = METRIC.findall(text)
        assert names, f"a query without a streetgate metric: {text}"
        for name in names:
            if name in metrics:
                used.add(name)
            else:
                # a stateset's label carries the family's name: streetgate_device_health="down"
                assert re.search(rf"\b{name}\s*=", text), f"{name} is not exported: {text}"
                assert any(name in labels for labels in metrics.values()), text
        labels = set(MATCHER.findall(text)) - SCRAPE_LABELS
        allowed = set().union(*(metrics[n] for n in names if n in metrics))
        assert labels <= allowed, f"labels {labels - allowed} not exported (query: {text})"
    # Every panel has a query, and the dashboard looks at the device and uplink figures.
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
    assert {
        "streetgate_device_health",
        "streetgate_device_errors_total",
        "streetgate_forwarder_state",
        "streetgate_outbox_readings",
        "streetgate_outbox_oldest_age_seconds",
    } <= used


def test_the_checker_catches_a_metric_that_does_not_exist() -> None:
    assert "streetgate_outbox_depth" not in exported()
    assert "streetgate_outbox_readings" in exported()

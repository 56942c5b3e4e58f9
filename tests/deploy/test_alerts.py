"""deploy/alerts/: valid PromQL, only metrics the operator exports, and the alerts a platform team expects."""

from __future__ import annotations

import re
from typing import Any

import prometheus_client
import promql_parser
import pytest
import yaml

from regcred import metrics
from tests.deploy.chart_tools import ROOT

RULES_FILE = ROOT / "deploy" / "alerts" / "regcred-operator-rules.yaml"
REQUIRED = {"RegcredCredentialNotReady", "RegcredTokenExpiringSoon", "RegcredRefreshFailing",
            "RegcredNamespacesFailing"}


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES_FILE.read_text())
    assert document["apiVersion"] == "monitoring.coreos.com/v1" and document["kind"] == "PrometheusRule"
    return [rule for group in document["spec"]["groups"] for rule in group["rules"]]


def exported_series() -> dict[str, set[str]]:
    """{series name: label names} of the operator's metrics (a counter `x` is exported as `x_total`)."""
    out: dict[str, set[str]] = {}
    for value in vars(metrics).values():
        if isinstance(value, prometheus_client.metrics.MetricWrapperBase):
            name = value._name + ("_total" if isinstance(value, prometheus_client.Counter) else "")
            out[name] = set(value._labelnames)
    return out


def selectors(expr: str) -> list[promql_parser.VectorSelector]:
    found: list[promql_parser.VectorSelector] = []

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.append(node)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return found


def test_the_required_alerts_exist() -> None:
    assert {rule["alert"] for rule in rules()} >= REQUIRED


@pytest.mark.parametrize("rule", rules(), ids=lambda rule: rule["alert"])
def test_each_alert_is_valid_promql_on_exported_metrics(rule: dict[str, Any]) -> None:
    series = exported_series()
    used = selectors(rule["expr"])
    assert used
    for selector in used:
        assert selector.name in series, f"{selector.name} is not a metric regcred.metrics exports"
        for matcher in selector.matchers.matchers:
            assert matcher.name in series[selector.name], f"{selector.name} has no label {matcher.name}"
    grouping = set(re.findall(r"by \(([^)]*)\)", rule["expr"]))
    for labels in grouping:
        assert {"job", "credential"} <= {label.strip() for label in labels.split(",")}, labels


@pytest.mark.parametrize("rule", rules(), ids=lambda rule: rule["alert"])
def test_each_alert_says_what_and_how_bad(rule: dict[str, Any]) -> None:
    assert re.fullmatch(r"Regcred[A-Z][A-Za-z]+", rule["alert"])
    assert rule["labels"]["severity"] in {"critical", "warning", "info"}
    assert re.fullmatch(r"\d+[mh]", rule["for"])
    assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_the_alerts_read_the_label_values_the_operator_writes() -> None:
    values = " ".join(rule["expr"] for rule in rules())
    assert set(re.findall(r'result="(\w+)"', values)) <= {"success", "failure"}
    assert set(re.findall(r'state="(\w+)"', values)) <= {"selected", "synced", "failed", "conflicts"}

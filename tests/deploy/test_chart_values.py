"""values.yaml and values.schema.json: every key documented and typed, bad values rejected by Helm itself."""

from __future__ import annotations

import json
import re
from typing import Any

import helm_python as helm
import pytest
import yaml

from tests.deploy.chart_tools import CHART, render

VALUES_FILE = CHART / "values.yaml"
SCHEMA_FILE = CHART / "values.schema.json"
# Values that are Kubernetes objects passed through as they are: their inner keys are Kubernetes' own.
PASSTHROUGH = {"resources", "podSecurityContext", "securityContext", "topologySpreadConstraints"}
KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z][A-Za-z0-9]*):")


def documented_keys() -> list[tuple[str, str | None]]:
    """(dotted key, the first line of the comment block above it) for every key of values.yaml outside
    passthroughs."""
    lines = VALUES_FILE.read_text().splitlines()
    found: list[tuple[str, str | None]] = []
    path: list[tuple[int, str]] = []
    for number, line in enumerate(lines):
        match = KEY_LINE.match(line)
        if not match:
            continue
        indent, key = len(match["indent"]), match["key"]
        path = [(i, k) for i, k in path if i < indent]
        if any(k in PASSTHROUGH for _, k in path):
            continue
        path.append((indent, key))
        start = number
        while start and lines[start - 1].strip().startswith("#"):
            start -= 1
        found.append((".".join(k for _, k in path), lines[start].strip() if start < number else None))
    return found


def test_every_value_is_documented_by_a_comment_starting_with_its_name() -> None:
    keys = documented_keys()
    assert len(keys) > 60
    undocumented = [key for key, comment in keys if comment is None
                    or not comment.startswith(f"# {key.rsplit('.', 1)[-1]} -- ")]
    assert not undocumented, f"keys whose comment does not start `# <name> -- `: {undocumented}"


def test_values_are_camel_case() -> None:
    assert all(re.fullmatch(r"[a-z][A-Za-z0-9]*", part) for key, _ in documented_keys() for part in key.split("."))


def schema_paths(schema: dict[str, Any], prefix: str = "") -> set[str]:
    paths: set[str] = set()
    for name, sub in (schema.get("properties") or {}).items():
        path = f"{prefix}{name}"
        paths.add(path)
        if name not in PASSTHROUGH:
            paths |= schema_paths(sub, f"{path}.")
    return paths


def test_the_schema_and_values_yaml_name_the_same_keys() -> None:
    schema = json.loads(SCHEMA_FILE.read_text())
    in_values = {key for key, _ in documented_keys()}
    assert schema_paths(schema) - {"global"} == in_values


def test_the_defaults_pass_the_schema() -> None:
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema(yaml.safe_load(VALUES_FILE.read_text()))


BAD_VALUES: dict[str, tuple[dict[str, Any], str]] = {
    "replicaCount below 1": ({"replicaCount": 0}, "/replicaCount"),
    "replicaCount as a string": ({"replicaCount": "2"}, "/replicaCount"),
    "an unknown top-level key": ({"replicas": 2}, "additional properties 'replicas'"),
    "an unknown nested key": ({"metrics": {"serviceMonitor": {"enable": True}}}, "additional properties 'enable'"),
    "a bad pullPolicy": ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
    "a digest that is not sha256": ({"image": {"digest": "latest"}}, "/image/digest"),
    "several replicas without peering": ({"peering": {"enabled": False}}, "/replicaCount"),
    "peering.enabled as a string": ({"peering": {"enabled": "yes"}}, "/peering/enabled"),
    "a peering name that is not a DNS name": ({"peering": {"name": "Regcred_Operator"}}, "/peering/name"),
    "watchNamespaces as a string": ({"watchNamespaces": "team-a,team-b"}, "/watchNamespaces"),
    "an invalid namespace name": ({"watchNamespaces": ["Team A"]}, "/watchNamespaces/0"),
    "a namespace listed twice": ({"watchNamespaces": ["a", "a"]}, "/watchNamespaces"),
    "a metrics port out of range": ({"metrics": {"port": 70000}}, "/metrics/port"),
    "a bad scrape interval": ({"metrics": {"serviceMonitor": {"interval": "30 seconds"}}}, "/interval"),
    "resyncSeconds too small": ({"settings": {"resyncSeconds": 1}}, "/settings/resyncSeconds"),
    "writeConcurrency zero": ({"settings": {"writeConcurrency": 0}}, "/settings/writeConcurrency"),
    "an endpoint that is not a URL": ({"settings": {"endpoints": {"ecr": "vpce-123"}}}, "/endpoints/ecr"),
    "an insecure registry with a scheme": ({"settings": {"insecureRegistries": ["http://r:5000"]}},
                                           "/insecureRegistries/0"),
    "a credential without a spec": ({"registryCredentials": [{"name": "hub"}]}, "/registryCredentials/0"),
    "a credential with an invalid name": ({"registryCredentials": [{"name": "Hub!", "spec": {}}]},
                                          "/registryCredentials/0/name"),
    "a credential with labels (not allowed)": (
        {"registryCredentials": [{"name": "hub", "spec": {}, "labels": {"a": "b"}}]}, "additional properties"),
    "a topology spread without topologyKey": ({"topologySpreadConstraints": [{"maxSkew": 1}]},
                                              "/topologySpreadConstraints/0"),
    "an env var without a name": ({"extraEnv": [{"value": "x"}]}, "/extraEnv/0"),
    "crds.enabled as a string": ({"crds": {"enabled": "true"}}, "/crds/enabled"),
    "serviceAccount annotations not strings": ({"serviceAccount": {"annotations": {"a": 1}}},
                                               "/serviceAccount/annotations/a"),
    "a PDB in bad units": ({"podDisruptionBudget": {"maxUnavailable": "one"}}, "/podDisruptionBudget/maxUnavailable"),
}


@pytest.mark.parametrize("case", BAD_VALUES)
def test_helm_rejects_bad_values(case: str) -> None:
    values, where = BAD_VALUES[case]
    with pytest.raises(helm.HelmValuesError) as error:
        render(values)
    assert where in str(error.value), str(error.value)


def test_the_templates_refuse_what_the_schema_cannot_see() -> None:
    with pytest.raises(helm.HelmError, match="must differ"):
        render({"metrics": {"port": 8080}})
    with pytest.raises(helm.HelmError, match="serviceAccount.name is required"):
        render({"serviceAccount": {"create": False}})

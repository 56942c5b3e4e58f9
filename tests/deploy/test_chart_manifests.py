"""Every manifest the chart renders is valid: against the Kubernetes schemas of several versions
(kubernetes-validate, strict: unknown fields fail), and custom resources against their CRD's own
openAPIV3Schema (jsonschema), for the default values and each non-default shape."""

from __future__ import annotations

import functools
import json
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from tests.deploy.chart_tools import SCENARIOS, Manifest, lint, render

# The oldest and newest minor versions the chart supports, and one between.
KUBERNETES_VERSIONS = ("1.29", "1.32", "1.35")
# Kinds whose schema is the CRD's (below); kubernetes-validate knows only the built-in kinds.
CUSTOM_KINDS = {"RegistryCredential", "ClusterKopfPeering", "KopfPeering", "ServiceMonitor"}
# Kinds the chart renders only on a newer Kubernetes (the template fails below that version).
SINCE = {"ValidatingAdmissionPolicy": (1, 30), "ValidatingAdmissionPolicyBinding": (1, 30)}


@functools.cache
def rendered(scenario: str) -> tuple[Manifest, ...]:
    return tuple(render(SCENARIOS[scenario]))


@functools.cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """{(apiVersion, kind): openAPIV3Schema} of the CRDs the chart itself renders."""
    schemas: dict[tuple[str, str], dict[str, Any]] = {}
    for crd in rendered("default"):
        if crd["kind"] != "CustomResourceDefinition":
            continue
        for version in crd["spec"]["versions"]:
            key = (f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])
            schemas[key] = version["schema"]["openAPIV3Schema"]
    return schemas


@functools.cache
def _validate_builtin(document: str, version: str) -> str | None:
    """kubernetes-validate's verdict on one (serialised) manifest; cached, the same objects recur."""
    try:
        kubernetes_validate.validate(json.loads(document), version, strict=True)
    except kubernetes_validate.ValidationError as error:
        return f"{'.'.join(str(p) for p in error.path)}: {error.message}"
    return None


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_helm_lint_is_clean_in_strict_mode(scenario: str) -> None:
    report = lint(SCENARIOS[scenario])
    problems = [m for m in report["messages"] if m["severity"] >= 2] + report["errors"]
    assert not problems, problems


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_builtin_kinds_match_the_kubernetes_schemas(scenario: str, version: str) -> None:
    problems = {
        f"{o['kind']}/{o['metadata']['name']}": error
        for o in rendered(scenario) if o["kind"] not in CUSTOM_KINDS
        and SINCE.get(o["kind"], (0, 0)) <= tuple(int(part) for part in version.split("."))
        for error in [_validate_builtin(json.dumps(o, sort_keys=True), version)] if error
    }
    assert not problems, problems


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_custom_resources_match_their_crd(scenario: str) -> None:
    checked = 0
    for obj in rendered(scenario):
        schema = crd_schemas().get((obj["apiVersion"], obj["kind"]))
        if schema is None:
            assert obj["kind"] not in CUSTOM_KINDS - {"ServiceMonitor"}, f"no CRD renders {obj['kind']}"
            continue
        jsonschema.validate({k: v for k, v in obj.items() if k != "metadata"}, schema)
        checked += 1
    if scenario == "credentials-from-values":
        assert checked == 2  # the two RegistryCredentials (the replicas create the peering object)


def test_a_malformed_registry_credential_from_values_is_caught_by_the_crd_schema() -> None:
    """The check above has teeth: a spec the CRD rejects fails it (the API server would reject it too)."""
    bad = {"registryCredentials": [{"name": "broken", "spec": {"provider": {"static": {}}, "secretName": "x"}}]}
    (credential,) = [o for o in render(bad) if o["kind"] == "RegistryCredential"]
    schema = crd_schemas()[("regcred.dev/v1alpha1", "RegistryCredential")]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({k: v for k, v in credential.items() if k != "metadata"}, schema)


def test_the_service_monitor_has_the_prometheus_operator_shape() -> None:
    """No schema ships for ServiceMonitor here; check the fields prometheus-operator reads."""
    (monitor,) = [o for o in rendered("service-monitor") if o["kind"] == "ServiceMonitor"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint == {"port": "metrics", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}
    (service,) = [o for o in rendered("service-monitor") if o["kind"] == "Service"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [service["metadata"]["namespace"]]}


def test_the_kubernetes_schemas_have_teeth() -> None:
    """A misspelt field (what a template typo produces) fails the check above."""
    deployment = next(o for o in rendered("default") if o["kind"] == "Deployment")
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFileSystem"] = True
    assert "readOnlyRootFileSystem" in (_validate_builtin(json.dumps(broken), KUBERNETES_VERSIONS[-1]) or "")

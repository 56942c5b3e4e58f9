"""Rendering the Helm chart with Helm's own engine (helm-python-sdk: the Helm v4 Go SDK, offline)."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "regcred-operator"
TOP_LEVEL_CRDS = ROOT / "crds"
CHART_CRDS = CHART / "files" / "crds"
RELEASE, NAMESPACE = "regcred", "regcred-system"

Manifest = dict[str, Any]

# The value sets every chart test renders: the defaults and the non-default shapes users pick.
SCENARIOS: dict[str, dict[str, Any]] = {
    "default": {},
    "namespaces-mode": {"watchNamespaces": ["team-a", "team-b"]},
    "remediation-off": {"remediation": {"enabled": False}},
    "standalone": {"peering": {"enabled": False}, "replicaCount": 1},
    "service-monitor": {"metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"},
                                                       "scrapeTimeout": "10s"}}},
    "credentials-from-values": {"registryCredentials": [
        {"name": "dockerhub", "annotations": {"team": "platform"}, "spec": {
            "provider": {"static": {"registry": "docker.io",
                                    "secretRef": {"namespace": NAMESPACE, "name": "hub-token"}}},
            "secretName": "regcred",
            "namespaces": {"selector": {"matchLabels": {"pulls-from": "dockerhub"}}, "exclude": ["kube-system"]},
            "serviceAccounts": ["default"],
        }},
        {"name": "prod-ecr", "spec": {
            "provider": {"ecr": {"region": "eu-west-1", "registryIds": ["123456789012"]}},
            "secretName": "ecr-pull",
            "namespaces": {"names": ["payments", "web"]},
            "remediation": {"strategy": "DeletePods", "cooldown": "10m"},
        }},
    ]},
    "irsa": {"serviceAccount": {"annotations": {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/regcred-operator"}}},
    "crds-off": {"crds": {"enabled": False}},
    "hardened": {"admissionPolicy": {"enabled": True},
                 "networkPolicy": {"enabled": True, "apiServerCidrs": ["10.0.0.10/32", "10.96.0.1/32"],
                                   "egressCidrs": ["10.20.0.0/16"], "egressPorts": [443, 5000],
                                   "ingressPeers": [{"namespaceSelector": {"matchLabels": {
                                       "kubernetes.io/metadata.name": "monitoring"}}}]}},
    "everything-else": {
        "image": {"digest": "sha256:" + "a" * 64, "pullSecrets": ["ghcr-pull"]},
        "extraArgs": ["--verbose"],
        "extraEnv": [{"name": "HTTPS_PROXY", "value": "http://proxy.internal:3128"}],
        "extraEnvFrom": [{"secretRef": {"name": "aws-keys"}}],
        "extraVolumes": [{"name": "ca", "configMap": {"name": "corporate-ca"}}],
        "extraVolumeMounts": [{"name": "ca", "mountPath": "/etc/ssl/corporate", "readOnly": True}],
        "podAnnotations": {"example.com/scrape": "true"}, "podLabels": {"team": "platform"},
        "priorityClassName": "system-cluster-critical",
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "infra", "effect": "NoSchedule"}],
        "podDisruptionBudget": {"minAvailable": 1, "maxUnavailable": None},
        "replicaCount": 3,
        "metrics": {"enabled": False},
        "watchNamespaces": ["team-a"], "rbac": {"sourceSecretNamespaces": ["regcred-system", "vault-sync"],
                                                        "argocdNamespaces": ["argocd"]},
        "settings": {"eventsNamespace": "regcred-system", "insecureRegistries": ["registry.local:5000"],
                     "tokenRealmHosts": ["auth.example.net", "tokens.example.org:8443"],
                     "endpoints": {"ecr": "https://api.ecr.eu-west-1.vpce.amazonaws.com",
                                   "githubApi": "https://github.example.com/api/v3",
                                   "azureAuthority": "https://login.microsoftonline.us"}},
    },
}


@functools.cache
def _chart() -> helm.Chart:
    return helm.Chart.load(CHART)


def render_files(values: dict[str, Any] | None = None) -> dict[str, str]:
    """{template path: rendered text}, as `helm template` renders them (values checked against the schema)."""
    rendered: dict[str, str] = _chart().render(values or {}, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return rendered


def render(values: dict[str, Any] | None = None) -> list[Manifest]:
    """Every object the chart renders (hooks included), in template order."""
    objects: list[Manifest] = []
    for path, text in sorted(render_files(values).items()):
        if path.endswith("NOTES.txt"):
            continue
        objects.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objects


def notes(values: dict[str, Any] | None = None) -> str:
    return next(text for path, text in render_files(values).items() if path.endswith("NOTES.txt"))


def of_kind(objects: Iterable[Manifest], kind: str) -> list[Manifest]:
    return [o for o in objects if o.get("kind") == kind]


def one(objects: Iterable[Manifest], kind: str) -> Manifest:
    (found,) = of_kind(objects, kind)
    return found


def lint(values: dict[str, Any] | None = None) -> dict[str, Any]:
    """`helm lint --strict`: warnings count as errors."""
    report: dict[str, Any] = helm.lint(CHART, values or {}, strict=True, namespace=NAMESPACE)
    return report


def rule_triples(role: Manifest) -> set[tuple[str, str, str]]:
    """(apiGroup, resource[/subresource], verb) for every combination a Role or ClusterRole grants."""
    return {
        (group, resource, verb)
        for rule in role.get("rules") or []
        for group in rule.get("apiGroups") or []
        for resource in rule.get("resources") or []
        for verb in rule.get("verbs") or []
    }

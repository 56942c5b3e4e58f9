"""What the chart renders for each shape of values: the Deployment's security defaults and settings,
RBAC without wildcards and with a reason for every rule, labels, peering objects, CRDs, optional objects."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.deploy.chart_tools import CHART, NAMESPACE, RELEASE, SCENARIOS, Manifest, notes, of_kind, one, render

TEMPLATES = CHART / "templates"


def container(objects: list[Manifest]) -> dict[str, Any]:
    (operator,) = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    return dict(operator)


def env(objects: list[Manifest]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container(objects)["env"]}


# -- the Deployment ------------------------------------------------------------------------------


def test_security_defaults() -> None:
    deployment = one(render(), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"] == {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001,
                                      "fsGroup": 10001, "seccompProfile": {"type": "RuntimeDefault"}}
    assert pod["automountServiceAccountToken"] is True  # the operator talks to the API with its token
    assert container(render())["securityContext"] == {
        "runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    # The root filesystem is read-only: /tmp is a writable emptyDir.
    assert {"name": "tmp", "mountPath": "/tmp"} in container(render())["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}} in pod["volumes"]
    assert "hostNetwork" not in pod and "hostPID" not in pod


def test_the_default_deployment_runs_the_operator_with_peering_and_probes() -> None:
    objects = render()
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    main = container(objects)
    assert main["image"] == "ghcr.io/regcred-dev/regcred-operator:0.1.0"  # the tag defaults to appVersion
    assert main["command"] == ["regcred", "run", "--liveness", "http://0.0.0.0:8080/healthz"]
    assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert main["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert {p["name"]: p["containerPort"] for p in main["ports"]} == {"health": 8080, "metrics": 9090}
    assert env(objects) == {
        "REGCRED_PEERING_NAME": "regcred-operator", "REGCRED_PEERING_LIFETIME_SECONDS": "60",
        "REGCRED_REMEDIATION": "true", "REGCRED_METRICS_PORT": "9090",
        "REGCRED_RESYNC_SECONDS": "300", "REGCRED_WRITE_CONCURRENCY": "16", "REGCRED_REMEDIATIONS_PER_MINUTE": "10",
        "REGCRED_RETRY_INITIAL_SECONDS": "10", "REGCRED_RETRY_MAX_SECONDS": "300",
        "REGCRED_EVENTS_NAMESPACE": "default", "REGCRED_STATE_NAMESPACE": "regcred-system",
    }
    spread = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert spread == [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway",
                       "labelSelector": {"matchLabels": deployment["spec"]["selector"]["matchLabels"]}}]
    pdb = one(objects, "PodDisruptionBudget")
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": deployment["spec"]["selector"]}


def test_the_settings_reach_the_operator_as_its_environment() -> None:
    objects = render(SCENARIOS["everything-else"])
    variables = env(objects)
    assert variables["REGCRED_WATCH_NAMESPACES"] == "team-a"
    assert variables["REGCRED_METRICS_PORT"] == "0"
    assert variables["REGCRED_EVENTS_NAMESPACE"] == "regcred-system"
    assert variables["REGCRED_INSECURE_REGISTRIES"] == "registry.local:5000"
    assert variables["REGCRED_TOKEN_REALM_HOSTS"] == "auth.example.net,tokens.example.org:8443"
    assert variables["REGCRED_ECR_ENDPOINT_URL"] == "https://api.ecr.eu-west-1.vpce.amazonaws.com"
    assert variables["REGCRED_GITHUB_API_URL"] == "https://github.example.com/api/v3"
    assert variables["REGCRED_AZURE_AUTHORITY_HOST"] == "https://login.microsoftonline.us"
    assert "REGCRED_STS_ENDPOINT_URL" not in variables  # empty settings are not passed at all
    assert variables["HTTPS_PROXY"] == "http://proxy.internal:3128"
    main = container(objects)
    assert main["image"] == "ghcr.io/regcred-dev/regcred-operator@sha256:" + "a" * 64
    assert main["command"][-1] == "--verbose"
    assert main["envFrom"] == [{"secretRef": {"name": "aws-keys"}}]
    assert {"name": "ca", "mountPath": "/etc/ssl/corporate", "readOnly": True} in main["volumeMounts"]
    assert [p["name"] for p in main["ports"]] == ["health"]
    pod = one(objects, "Deployment")["spec"]["template"]
    assert pod["metadata"]["labels"]["team"] == "platform"
    assert pod["metadata"]["annotations"] == {"example.com/scrape": "true"}
    assert pod["spec"]["imagePullSecrets"] == [{"name": "ghcr-pull"}]
    assert pod["spec"]["priorityClassName"] == "system-cluster-critical"
    assert pod["spec"]["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert one(objects, "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    assert not of_kind(objects, "Service")


def test_standalone_runs_one_replica_that_is_replaced_not_rolled() -> None:
    objects = render(SCENARIOS["standalone"])
    deployment = one(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}  # never two acting at once
    assert env(objects)["REGCRED_PEERING_NAME"] == ""  # kopf runs standalone
    assert "REGCRED_PEERING_LIFETIME_SECONDS" not in env(objects)
    assert not of_kind(objects, "ClusterKopfPeering") and not of_kind(objects, "PodDisruptionBudget")
    assert "topologySpreadConstraints" not in deployment["spec"]["template"]["spec"]


def test_remediation_off_tells_the_operator() -> None:
    assert env(render(SCENARIOS["remediation-off"]))["REGCRED_REMEDIATION"] == "false"


def test_irsa_annotation_lands_on_the_service_account() -> None:
    objects = render(SCENARIOS["irsa"])
    account = one(objects, "ServiceAccount")
    assert account["metadata"]["annotations"] == {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/regcred-operator"}
    assert one(objects, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == account["metadata"]["name"]
    (subject,) = one(objects, "ClusterRoleBinding")["subjects"]
    assert subject == {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": NAMESPACE}


def test_an_existing_service_account_can_be_used() -> None:
    objects = render({"serviceAccount": {"create": False, "name": "platform-operator"}})
    assert not of_kind(objects, "ServiceAccount")
    assert one(objects, "ClusterRoleBinding")["subjects"][0]["name"] == "platform-operator"


# -- RBAC ------------------------------------------------------------------------------------------


def rbac_objects(objects: list[Manifest]) -> list[Manifest]:
    return of_kind(objects, "ClusterRole") + of_kind(objects, "Role")


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_no_rbac_rule_has_a_wildcard(scenario: str) -> None:
    for role in rbac_objects(render(SCENARIOS[scenario])):
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule.get(field, []), (role["metadata"], rule)
            assert "nonResourceURLs" not in rule


def test_every_rule_in_the_templates_has_a_framework_or_application_comment() -> None:
    rules = 0
    for template in sorted(TEMPLATES.glob("*")):
        lines = template.read_text().splitlines()
        for number, line in enumerate(lines):
            if line.strip().startswith("- apiGroups:"):
                rules += 1
                start = number
                while lines[start - 1].strip().startswith("#"):
                    start -= 1
                comment = lines[start].strip() if start < number else ""
                assert re.match(r"# (Framework|Application): \S", comment), f"{template.name}:{number + 1}"
    assert rules >= 12


def test_rbac_follows_the_chart_name_and_can_be_left_to_others() -> None:
    objects = render({"rbac": {"create": False}})
    assert not rbac_objects(objects) and not of_kind(objects, "ClusterRoleBinding")


# -- labels and names ------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_objects_carry_only_the_recommended_labels(scenario: str) -> None:
    for obj in render(SCENARIOS[scenario]):
        labels = obj["metadata"].get("labels") or {}
        extra = {k for k in labels if not k.startswith("app.kubernetes.io/") and k != "helm.sh/chart"}
        if obj["kind"] == "ServiceMonitor":
            extra -= {"release"}  # asked for in values: what Prometheus selects
        assert not extra, (obj["kind"], extra)
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["helm.sh/chart"] == "regcred-operator-0.1.0"


def test_names_follow_the_release() -> None:
    objects = render()
    names = {o["metadata"]["name"] for o in objects if o["kind"] not in ("CustomResourceDefinition",
                                                                         "ClusterKopfPeering")}
    assert names == {"regcred-regcred-operator", "regcred-regcred-operator-metrics"}
    assert {o["metadata"]["name"] for o in render({"fullnameOverride": "regcred"}) if o["kind"] == "Deployment"} == {
        "regcred"}


# -- CRDs, peering, credentials from values --------------------------------------------------------


def test_crds_are_kept_on_uninstall_and_can_be_left_out() -> None:
    crds = of_kind(render(), "CustomResourceDefinition")
    assert {c["metadata"]["name"] for c in crds} == {
        "registrycredentials.regcred.dev", "clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"}
    for crd in crds:
        assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    assert not of_kind(render(SCENARIOS["crds-off"]), "CustomResourceDefinition")
    for crd in of_kind(render({"crds": {"keep": False}}), "CustomResourceDefinition"):
        assert "annotations" not in crd["metadata"]


def test_the_peering_crds_can_be_left_to_another_kopf_operator() -> None:
    """kopf's peering CRDs are shared by every kopf operator: another one's chart may own them already."""
    crds = of_kind(render({"crds": {"peering": False}}), "CustomResourceDefinition")
    assert [c["metadata"]["name"] for c in crds] == ["registrycredentials.regcred.dev"]
    assert {c["metadata"]["name"] for c in of_kind(render(), "CustomResourceDefinition")
            if c["spec"]["group"] == "kopf.dev"} == {"clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"}


def test_peering_follows_the_mode_and_the_chart_has_no_peering_object() -> None:
    """The replicas create the peering object themselves: a chart hook would be recreated empty by every
    upgrade, and kopf un-pauses every standby on an empty peering object (two replicas act)."""
    for scenario in SCENARIOS.values():
        objects = render(scenario)
        assert not of_kind(objects, "ClusterKopfPeering") and not of_kind(objects, "KopfPeering")
        assert not [o for o in objects if "helm.sh/hook" in (o["metadata"].get("annotations") or {})]
    assert env(render())["REGCRED_PEERING_NAME"] == "regcred-operator"
    objects = render(SCENARIOS["namespaces-mode"])
    assert env(objects)["REGCRED_WATCH_NAMESPACES"] == "team-a,team-b"
    sharded = render({"watchNamespaces": ["team-c"], "peering": {"name": "regcred-shard-2"}})
    assert env(sharded)["REGCRED_PEERING_NAME"] == "regcred-shard-2"


def test_registry_credentials_from_values() -> None:
    credentials = {c["metadata"]["name"]: c for c in of_kind(render(SCENARIOS["credentials-from-values"]),
                                                               "RegistryCredential")}
    assert set(credentials) == {"dockerhub", "prod-ecr"}
    hub = credentials["dockerhub"]
    assert hub["apiVersion"] == "regcred.dev/v1alpha1"
    assert hub["spec"] == SCENARIOS["credentials-from-values"]["registryCredentials"][0]["spec"]
    assert hub["metadata"]["annotations"]["team"] == "platform"
    assert "namespace" not in hub["metadata"]  # cluster-scoped
    # Never a hook: a hook is deleted and recreated on each upgrade, which would remove the Secrets.
    assert not any(k.startswith("helm.sh/hook") for c in credentials.values()
                   for k in c["metadata"].get("annotations", {}))


def test_metrics_service_and_optional_service_monitor() -> None:
    service = one(render(), "Service")
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 9090, "targetPort": "metrics", "protocol": "TCP"}]
    assert service["spec"]["selector"] == one(render(), "Deployment")["spec"]["selector"]["matchLabels"]
    assert not of_kind(render(), "ServiceMonitor")
    assert one(render(SCENARIOS["service-monitor"]), "ServiceMonitor")


def test_notes_explain_the_installation() -> None:
    text = notes()
    assert "serving the whole cluster" in text and "kubectl get registrycredentials" in text
    # What was installed, how to check it, a first credential with its source Secret, and the doctor.
    assert "is installed as regcred-regcred-operator in regcred-system" in text
    assert "kubectl -n regcred-system get pods -l app.kubernetes.io/instance=regcred" in text
    assert "kubectl -n regcred-system create secret generic dockerhub-token" in text
    assert "kind: RegistryCredential" in text and "regcred doctor -n <namespace>" in text
    assert "serving the namespaces team-a, team-b" in notes(SCENARIOS["namespaces-mode"])
    assert "install the CRDs yourself" in notes(SCENARIOS["crds-off"])

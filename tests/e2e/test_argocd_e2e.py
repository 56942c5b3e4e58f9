"""Argo CD repository credential templates (spec.argocd) end to end: the Secret Argo CD reads appears in its
namespace, is refreshed with the token in one patch, is restored when someone edits or deletes it, and goes
with the credential or with the spec's `argocd` block; someone else's Secret of that name is left alone and
reported. ECR is moto in server mode, with the clock test_freshness.py uses (moto's tokens expire on
2015-01-01T00:00Z)."""

from __future__ import annotations

import base64
import dataclasses
import datetime
from typing import Any

import pytest

from regcred.clock import ManualClock
from tests.e2e.harness import (
    OPERATOR_USER_AGENTS,
    TEST_SETTINGS,
    Cluster,
    OperatorFactory,
    chart_identity_objects,
    eventually,
)
from tests.e2e.test_freshness import ECR_HOST, START, ecr_spec, settings_for

pytestmark = pytest.mark.e2e

ARGOCD = "argocd"
TEMPLATE = "regcred-charts"  # the default name: regcred-<credential>


@pytest.fixture
def argo(cluster: Cluster) -> Cluster:
    cluster.namespace("regcred-system")
    cluster.source_secret("regcred-system", "aws-keys", {
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLEKEYID0001", "AWS_SECRET_ACCESS_KEY": "example-secret-access-key"})
    cluster.source_secret("regcred-system", "hub", {"username": "acme-ci", "password": "dckr_pat_1"})
    cluster.namespace("web", {"pulls-from": "ecr"})  # what ecr_spec selects
    cluster.namespace(ARGOCD)
    return cluster


def static_spec(**overrides: Any) -> dict[str, Any]:
    return {
        "provider": {"static": {"registry": "docker.io", "secretRef": {"namespace": "regcred-system", "name": "hub"}}},
        "secretName": "hub-pull",
        "namespaces": {"names": ["web"]},
        **overrides,
    }


def template(cluster: Cluster, name: str = TEMPLATE) -> tuple[dict[str, str], Any]:
    """The template's decoded fields, and the Secret."""
    secret = cluster.core.read_namespaced_secret(name, ARGOCD)
    return {key: base64.b64decode(value).decode() for key, value in (secret.data or {}).items()}, secret


def absent(cluster: Cluster, name: str = TEMPLATE) -> None:
    assert name not in {s.metadata.name for s in cluster.core.list_namespaced_secret(ARGOCD).items}


def pull_password(cluster: Cluster) -> str:
    config = cluster.dockerconfig("web", "ecr-pull")
    password: str = config["auths"][ECR_HOST]["password"]
    return password


def test_the_template_appears_is_refreshed_with_one_patch_and_goes_with_the_credential(
    argo: Cluster, operator: OperatorFactory, moto_url: str, clean_aws_env: None
) -> None:
    clock = ManualClock(START)
    operator.start(clock=clock, settings=settings_for(moto_url))
    argo.apply_credential("charts", ecr_spec(argocd={"namespace": ARGOCD}))

    fields, secret = eventually(lambda: template(argo))
    assert fields == {"type": "helm", "enableOCI": "true", "url": ECR_HOST, "username": "AWS",
                      "password": pull_password(argo)}
    assert secret.metadata.labels["argocd.argoproj.io/secret-type"] == "repo-creds"
    assert secret.metadata.labels["app.kubernetes.io/managed-by"] == "regcred-operator"
    assert secret.metadata.annotations["regcred.dev/expiration-time"] == "2015-01-01T00:00:00Z"
    eventually(lambda: _equal(argo.credential("charts")["status"].get("argocd"),
                              {"namespace": ARGOCD, "secrets": [TEMPLATE], "synced": True}))
    status = argo.credential("charts")["status"]
    assert status["namespaces"] == {"selected": 1, "synced": 1, "failed": 0, "conflicts": 0}  # not a pull Secret
    assert fields["password"] not in str(status)

    # The refresh (8 h into the 12-hour token): one patch of the template, holding what the pull Secret holds.
    argo.backend.reset_requests()
    clock.advance(datetime.timedelta(hours=8, minutes=1))
    eventually(lambda: _equal(template(argo)[1].metadata.annotations["regcred.dev/minted-time"],
                              "2014-12-31T20:01:00Z"))
    assert template(argo)[0]["password"] == pull_password(argo)
    writes = [(r.verb, r.name) for r in argo.backend.requests
              if r.user_agent in OPERATOR_USER_AGENTS and r.resource == "secrets" and r.namespace == ARGOCD
              and r.verb in ("create", "update", "patch", "delete")]
    assert writes == [("patch", TEMPLATE)]

    # Someone edits it, then deletes it: restored within seconds (the managed-Secret watch).
    argo.core.patch_namespaced_secret(TEMPLATE, ARGOCD, {"data": {"url": base64.b64encode(b"evil.example").decode()}})
    eventually(lambda: _equal(template(argo)[0]["url"], ECR_HOST))
    argo.core.delete_namespaced_secret(TEMPLATE, ARGOCD)
    eventually(lambda: _equal(template(argo)[0]["url"], ECR_HOST))

    argo.custom.delete_cluster_custom_object("regcred.dev", "v1alpha1", "registrycredentials", "charts")
    eventually(lambda: absent(argo))
    eventually(lambda: _equal(argo.secrets("regcred.dev/credential=charts"), {}))


def test_dropping_argocd_from_the_spec_deletes_the_template(argo: Cluster, operator: OperatorFactory) -> None:
    operator.start()
    argo.apply_credential("charts", static_spec(argocd={"namespace": ARGOCD, "url": "registry-1.docker.io/acme"}))
    fields, _ = eventually(lambda: template(argo))
    assert (fields["url"], fields["username"], fields["password"]) == ("registry-1.docker.io/acme", "acme-ci",
                                                                       "dckr_pat_1")

    argo.apply_credential("charts", static_spec())
    eventually(lambda: absent(argo))
    eventually(lambda: _equal(argo.credential("charts")["status"].get("argocd"), None))
    assert argo.dockerconfig("web", "hub-pull")["auths"]  # the pull Secret stays


def test_someone_elses_secret_of_that_name_is_left_alone_and_reported(
    argo: Cluster, operator: OperatorFactory
) -> None:
    argo.core.create_namespaced_secret(ARGOCD, {
        "metadata": {"name": TEMPLATE, "labels": {"argocd.argoproj.io/secret-type": "repo-creds"}},
        "stringData": {"type": "helm", "url": "charts.example.com", "username": "them", "password": "theirs"}})
    theirs = argo.core.read_namespaced_secret(TEMPLATE, ARGOCD)
    operator.start()
    argo.apply_credential("charts", static_spec(argocd={"namespace": ARGOCD}))

    def reported() -> None:
        status = argo.credential("charts")["status"]
        assert (status["argocd"]["synced"], status["argocd"]["reason"]) == (False, "SecretConflict")
        assert (argo.condition("charts")["status"], argo.condition("charts")["reason"]) == (
            "False", "ArgoCdSecretConflict")
    eventually(reported)
    assert argo.dockerconfig("web", "hub-pull")["auths"]  # the pull Secrets are served all the same
    assert "dckr_pat_1" not in str(argo.credential("charts")["status"])

    argo.custom.delete_cluster_custom_object("regcred.dev", "v1alpha1", "registrycredentials", "charts")
    eventually(lambda: _equal(argo.secrets("regcred.dev/credential=charts"), {}))
    after = argo.core.read_namespaced_secret(TEMPLATE, ARGOCD)
    assert (after.data, after.metadata.resource_version) == (theirs.data, theirs.metadata.resource_version)


def test_namespaces_mode_writes_argo_cds_namespace_through_the_charts_role(
    argo: Cluster, operator: OperatorFactory
) -> None:
    """Argo CD's namespace is not served: the operator lists it where the spec or the status says, and on a
    real cluster does so as the chart's ServiceAccount with only rbac.argocdNamespaces' Role there (any 403
    fails the test)."""
    rbac = chart_identity_objects({"watchNamespaces": ["web"], "rbac": {"argocdNamespaces": [ARGOCD]}})
    operator.start(settings=dataclasses.replace(TEST_SETTINGS, watch_namespaces=("web",)), rbac=rbac)
    argo.apply_credential("charts", static_spec(argocd={"namespace": ARGOCD}))
    fields, _ = eventually(lambda: template(argo), timeout=20)
    assert (fields["url"], fields["password"]) == ("registry-1.docker.io", "dckr_pat_1")

    argo.apply_credential("charts", static_spec())  # found again through the namespace the status names
    eventually(lambda: absent(argo))
    argo.apply_credential("charts", static_spec(argocd={"namespace": ARGOCD}))
    eventually(lambda: template(argo))
    argo.custom.delete_cluster_custom_object("regcred.dev", "v1alpha1", "registrycredentials", "charts")
    eventually(lambda: _equal(argo.secrets("regcred.dev/credential=charts"), {}))


def _equal(actual: object, expected: object) -> None:
    assert actual == expected

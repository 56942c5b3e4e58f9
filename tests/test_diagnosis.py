"""Deciding, per stuck container, whether a fresh credential fixes it: only credential-shaped causes on
registries this credential serves, after the fresh Secret is in place; ambiguous ones settled by a probe."""

from __future__ import annotations

from typing import Any

from regcred.classify import Category
from regcred.diagnosis import Action, decide, stuck_containers
from regcred.imageref import ImageRef
from regcred.probe import ProbeResult, Verdict

ECR = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"


def pod(image: str, reason: str, message: str, pull_secrets: tuple[str, ...] = ("ecr-pull",)) -> dict[str, Any]:
    return {
        "metadata": {"name": "web-1", "namespace": "shop"},
        "spec": {"imagePullSecrets": [{"name": s} for s in pull_secrets]},
        "status": {"phase": "Pending", "containerStatuses": [
            {"name": "app", "image": image, "state": {"waiting": {"reason": reason, "message": message}}},
        ]},
    }


def decision(body: dict[str, Any], **overrides: Any) -> Any:
    (stuck,) = stuck_containers(body)
    options: dict[str, Any] = {"served_hosts": [ECR], "secret_name": "ecr-pull",
                               "account_pull_secrets": ["ecr-pull"], "secret_in_place": True}
    options.update(overrides)
    return decide(body, stuck, **options)


EXPIRED = (f'failed to pull and unpack image "{ECR}/app:v1": failed to resolve reference "{ECR}/app:v1": '
           f"unexpected status from HEAD request to https://{ECR}/v2/app/manifests/v1: 403 Forbidden")
MISSING = (f'rpc error: code = NotFound desc = failed to pull and unpack image "{ECR}/app:v2": failed to '
           f'resolve reference "{ECR}/app:v2": {ECR}/app:v2: not found')


def test_an_auth_failure_on_a_served_registry_is_remediated() -> None:
    result = decision(pod(f"{ECR}/app:v1", "ErrImagePull", EXPIRED))
    assert result.action is Action.REMEDIATE
    assert result.cause is Category.FORBIDDEN


def test_a_missing_tag_is_explained_not_restarted() -> None:
    result = decision(pod(f"{ECR}/app:v2", "ErrImagePull", MISSING))
    assert result.action is Action.EXPLAIN
    assert result.cause is Category.NOT_FOUND
    assert "v2 does not exist" in result.why
    assert "would not help" in result.why


def test_another_registry_is_none_of_our_business() -> None:
    result = decision(pod("ghcr.io/acme/app:v1", "ErrImagePull", "401 Unauthorized"))
    assert result.action is Action.IGNORE


def test_nothing_happens_before_the_fresh_secret_is_in_place() -> None:
    result = decision(pod(f"{ECR}/app:v1", "ImagePullBackOff", EXPIRED), secret_in_place=False)
    assert result.action is Action.IGNORE


def test_a_pod_created_before_its_account_carried_the_secret_is_remediated() -> None:
    result = decision(pod(f"{ECR}/app:v1", "ErrImagePull", MISSING, pull_secrets=()))
    assert result.action is Action.REMEDIATE
    assert "before its ServiceAccount carried ecr-pull" in result.why


def test_an_ambiguous_message_is_settled_by_the_probe() -> None:
    hub = "docker.io/acme/private:1"
    ambiguous = ('Failed to pull image "acme/private:1": Error response from daemon: pull access denied for '
                 "acme/private, repository does not exist or may require 'docker login': denied: requested "
                 "access to the resource is denied")
    body = pod(hub, "ErrImagePull", ambiguous, pull_secrets=("hub",))
    served = {"served_hosts": ["https://index.docker.io/v1/"], "secret_name": "hub", "account_pull_secrets": []}

    def exists(image: ImageRef) -> ProbeResult:
        return ProbeResult(Verdict.OK, 200, f"{image} exists.")

    def missing(image: ImageRef) -> ProbeResult:
        return ProbeResult(Verdict.NOT_FOUND, 404, f"repository {image.repository} does not exist.")

    assert decision(body, probe=exists, **served).action is Action.REMEDIATE
    refused = decision(body, probe=missing, **served)
    assert refused.action is Action.EXPLAIN
    assert refused.ambiguous
    assert "does not exist" in refused.why

"""What the controllers and the kubelet would do in a real cluster, played for the demo and the benchmarks:
a Deployment with one pod, and that pod's status after a failed pull."""

from __future__ import annotations

import datetime
import uuid

from regcred.kube import MERGE_PATCH, KubeApi
from regcred.workloads import RESTARTED_AT_ANNOTATION


def deployment_with_pod(kube: KubeApi, namespace: str, name: str, image: str, pull_secret: str) -> str:
    """A Deployment and one pod it controls (as its ReplicaSet would make it); returns the pod's name."""
    deployment = kube.request("POST", f"/apis/apps/v1/namespaces/{namespace}/deployments", body={
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": {"app": name}}, "template": {
            "metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "app", "image": image}]}}}})
    owner = {"apiVersion": "apps/v1", "kind": "Deployment", "name": name, "uid": deployment["metadata"]["uid"],
             "controller": True}
    pod = f"{name}-7f9c4"
    kube.request("POST", f"/api/v1/namespaces/{namespace}/pods", body={
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod, "ownerReferences": [owner]},
        "spec": {"containers": [{"name": "app", "image": image}], "imagePullSecrets": [{"name": pull_secret}]}})
    return pod


def report_pull_failure(kube: KubeApi, namespace: str, pod: str, image: str, message: str,
                        at: datetime.datetime | None = None) -> None:
    """The pod's status as the kubelet writes it after a failed pull, and its Warning Event (reason Failed,
    pkg/kubelet/images/image_manager.go); ``at``: when the pull failed (default now)."""
    when = (at or datetime.datetime.now(datetime.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    uid = kube.request("GET", f"/api/v1/namespaces/{namespace}/pods/{pod}")["metadata"]["uid"]
    kube.request("POST", f"/api/v1/namespaces/{namespace}/events", body={
        "apiVersion": "v1", "kind": "Event", "metadata": {"name": f"{pod}.{uuid.uuid4().hex[:16]}"},
        "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": pod, "namespace": namespace, "uid": uid},
        "reason": "Failed", "type": "Warning", "message": f'Failed to pull image "{image}": {message}',
        "source": {"component": "kubelet"}, "firstTimestamp": when, "lastTimestamp": when, "count": 1})
    kube.request("PATCH", f"/api/v1/namespaces/{namespace}/pods/{pod}/status", content_type=MERGE_PATCH, body={
        "status": {"phase": "Pending", "containerStatuses": [{"name": "app", "image": image, "state": {
            "waiting": {"reason": "ErrImagePull", "message": message}}}]}})


def restarted_at(kube: KubeApi, namespace: str, deployment: str) -> str | None:
    """When the operator rolled the Deployment (its pod-template annotation), or None."""
    template = kube.request("GET", f"/apis/apps/v1/namespaces/{namespace}/deployments/{deployment}")["spec"]["template"]
    value: str | None = ((template.get("metadata") or {}).get("annotations") or {}).get(RESTARTED_AT_ANNOTATION)
    return value


def stuck_replicaset_pods(kube: KubeApi, namespace: str, name: str, image: str, pods: int,
                          failed_at: datetime.datetime, pull_secret: str | None = None) -> list[str]:
    """A Deployment, its ReplicaSet and `pods` pods of it (as the controllers make them; with `pull_secret`
    listed in the pods' own imagePullSecrets, or none), each stuck on a 401 since `failed_at`; their names."""
    template = {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "app", "image": image}]}}
    deployment = kube.request("POST", f"/apis/apps/v1/namespaces/{namespace}/deployments", body={
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": {"app": name}}, "template": template}})
    replicaset = kube.request("POST", f"/apis/apps/v1/namespaces/{namespace}/replicasets", body={
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": f"{name}-5d9", "ownerReferences": [_controller(deployment)]},
        "spec": {"selector": {"matchLabels": {"app": name}}, "template": template}})
    names = [f"{name}-5d9-{index:03d}" for index in range(pods)]
    for pod in names:
        spec: dict[str, object] = {"containers": [{"name": "app", "image": image}]}
        if pull_secret:
            spec["imagePullSecrets"] = [{"name": pull_secret}]
        kube.request("POST", f"/api/v1/namespaces/{namespace}/pods", body={
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod, "labels": {"app": name}, "ownerReferences": [_controller(replicaset)]},
            "spec": spec})
        report_pull_failure(kube, namespace, pod, image, f'failed to pull and unpack image "{image}": 401 Unauthorized',
                            at=failed_at)
    return names


def _controller(obj: dict[str, object]) -> dict[str, object]:
    metadata = obj["metadata"]
    assert isinstance(metadata, dict)
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": metadata["name"], "uid": metadata["uid"],
            "controller": True}

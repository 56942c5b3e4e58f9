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

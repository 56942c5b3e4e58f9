"""The one layer that talks to the Kubernetes API (through the official client).

Objects go in and come out as plain dicts decoded from the API's JSON: the client's model classes cost
more CPU than the requests themselves when thousands of Secrets are listed.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import kubernetes

from regcred import GROUP, PLURAL, VERSION
from regcred.providers.base import SourceSecretNotFound
from regcred.redact import redact

JSON = "application/json"
USER_AGENT = "regcred-operator"
MERGE_PATCH = "application/merge-patch+json"
MAX_EVENT_MESSAGE = 1024  # what the API server keeps of an Event's message


class KubeError(Exception):
    """An API call failed. `reason` is the API's own (NotFound, Conflict, Forbidden, ...)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status, self.reason, self.message = status, reason, message

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:  # a stale resourceVersion, or the object already exists
        return self.status == 409


def load_api_client(kubeconfig: str | None = None, *, pool_size: int = 32) -> kubernetes.client.ApiClient:
    """An API client for the cluster named by KUBECONFIG / ~/.kube/config, or the in-cluster config."""
    configuration = kubernetes.client.Configuration()
    # Read KUBECONFIG now: the client library reads it once, when first imported.
    kubeconfig = kubeconfig or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or None
    try:
        kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, client_configuration=configuration
        )
    except kubernetes.config.ConfigException:
        if kubeconfig:
            raise
        kubernetes.config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    configuration.connection_pool_maxsize = pool_size
    client = kubernetes.client.ApiClient(configuration)
    client.user_agent = USER_AGENT  # so that audit logs (and tests) can tell the operator's requests apart
    return client


class KubeApi:
    """Typed verbs on the few resources the operator touches. Safe to use from several threads."""

    def __init__(
        self, api_client: kubernetes.client.ApiClient, *, page_size: int = 500, namespaces: tuple[str, ...] = ()
    ) -> None:
        self.api_client = api_client
        self.page_size = page_size
        # Served namespaces (empty: all). Namespaced collections are then listed one namespace at a time,
        # which is what namespace-scoped RBAC (Roles) allows.
        self.namespaces = namespaces

    # -- transport -------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str | int] | None = None,
        body: Any = None,
        content_type: str = JSON,
    ) -> Any:
        headers = {"Accept": JSON}
        if body is not None:
            headers["Content-Type"] = content_type
        method_, url, headers_, body_, post = self.api_client.param_serialize(
            method, path, query_params=list((query or {}).items()), header_params=headers, body=body,
            auth_settings=["BearerToken"],
        )
        response = self.api_client.call_api(method_, url, header_params=headers_, body=body_, post_params=post)
        raw: bytes = response.read()  # type: ignore[no-untyped-call]
        if response.status >= 400:
            try:
                status = json.loads(raw)
                reason, message = status.get("reason") or "", status.get("message") or ""
            except ValueError:
                reason, message = "", raw[:200].decode(errors="replace")
            raise KubeError(response.status, reason or str(response.status), message)
        return json.loads(raw) if raw else None

    def list_all(self, path: str, **query: str) -> list[dict[str, Any]]:
        """All items of a collection, page by page."""
        items: list[dict[str, Any]] = []
        params: dict[str, str | int] = {k: v for k, v in query.items() if v}
        params["limit"] = self.page_size
        while True:
            page = self.request("GET", path, query=params)
            items.extend(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return items
            params["continue"] = token

    # -- namespaces, secrets, service accounts -----------------------------------------------------

    def list_namespaces(self) -> list[dict[str, Any]]:
        return self.list_all("/api/v1/namespaces")

    def list_namespaced_collection(self, plural: str, **query: str) -> list[dict[str, Any]]:
        """A core collection across the served namespaces: one cluster-wide LIST, or one per namespace."""
        if not self.namespaces:
            return self.list_all(f"/api/v1/{plural}", **query)
        return [item for ns in self.namespaces for item in self.list_all(_namespaced(plural, ns), **query)]

    def list_secrets(self, *, label_selector: str) -> list[dict[str, Any]]:
        return self.list_namespaced_collection("secrets", labelSelector=label_selector)

    def read_secret_data(self, namespace: str, name: str) -> dict[str, bytes]:
        """A Secret's decoded data. This is the SecretReader handed to providers."""
        try:
            secret = self.request("GET", _namespaced("secrets", namespace, name))
        except KubeError as error:
            if error.not_found:
                raise SourceSecretNotFound(
                    f"Secret {namespace}/{name} does not exist; create it or fix the reference."
                ) from None
            raise
        return {key: base64.b64decode(value) for key, value in (secret.get("data") or {}).items()}

    def create_secret(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.request("POST", _namespaced("secrets", namespace), body=body)
        return result

    def patch_secret(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "PATCH", _namespaced("secrets", namespace, name), body=patch, content_type=MERGE_PATCH
        )
        return result

    def delete_secret(self, namespace: str, name: str) -> None:
        try:
            self.request("DELETE", _namespaced("secrets", namespace, name))
        except KubeError as error:
            if not error.not_found:
                raise

    def list_service_accounts(self) -> list[dict[str, Any]]:
        return self.list_namespaced_collection("serviceaccounts")

    def read_service_account(self, namespace: str, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", _namespaced("serviceaccounts", namespace, name))
        return result

    def replace_service_account(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """PUT guarded by the body's metadata.resourceVersion: a concurrent change answers 409 Conflict."""
        metadata = body["metadata"]
        result: dict[str, Any] = self.request(
            "PUT", _namespaced("serviceaccounts", metadata["namespace"], metadata["name"]), body=body
        )
        return result

    # -- the RegistryCredential itself ---------------------------------------------------------------

    def patch_credential_status(self, name: str, status: Mapping[str, Any]) -> None:
        self.request(
            "PATCH", f"/apis/{GROUP}/{VERSION}/{PLURAL}/{quote(name)}/status",
            body={"status": status}, content_type=MERGE_PATCH,
        )

    def post_event(
        self, obj: Mapping[str, Any], *, api_version: str, kind: str, type_: str, reason: str, message: str,
        namespace: str, now: str,
    ) -> None:
        """An Event about any object (a credential, a workload, a pod); the message is scrubbed of the secrets
        the operator holds (regcred.redact.HELD), then cut to the 1024 characters an Event keeps.

        ``api_version`` and ``kind`` come from the caller, which knows what it read: an item of a LIST carries
        neither (only the List does), and ``kubectl describe`` finds an object's Events by involvedObject kind,
        name, namespace and uid. ``namespace`` is where the Event goes: the object's own, or for a
        cluster-scoped object the events namespace (Settings.events_namespace).
        """
        metadata = obj.get("metadata") or {}
        name = metadata.get("name", "")
        involved = {"apiVersion": api_version, "kind": kind, "name": name, "uid": metadata.get("uid")}
        if metadata.get("namespace"):
            involved["namespace"] = metadata["namespace"]
        elif namespace != "default":
            # The API server's validation of an Event without eventTime (legacyValidateEvent in Kubernetes'
            # pkg/apis/core/validation/events.go): an involvedObject without a namespace is accepted only in the
            # namespace "" or "default"; otherwise involvedObject.namespace must equal the Event's namespace.
            # (`kubectl describe` of a cluster-scoped object selects involvedObject.namespace="", so it shows
            # only the Events posted in "default".)
            involved["namespace"] = namespace
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{name}.{uuid.uuid4().hex[:16]}", "namespace": namespace},
            "involvedObject": involved,
            "type": type_,
            "reason": reason,
            "message": redact(message, limit=MAX_EVENT_MESSAGE),
            "source": {"component": "regcred-operator"},
            "reportingComponent": "regcred-operator",
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        self.request("POST", _namespaced("events", namespace), body=body)

    # -- pods and workloads (diagnosis and remediation) ----------------------------------------------

    def list_pending_pods(self, namespace: str | None = None) -> list[dict[str, Any]]:
        """Pods not yet running: a server-side selector, so healthy pods are never transferred."""
        if namespace:
            return self.list_all(_namespaced("pods", namespace), fieldSelector="status.phase=Pending")
        return self.list_namespaced_collection("pods", fieldSelector="status.phase=Pending")

    def list_pod_failure_events(self, namespace: str, name: str, uid: str | None, limit: int = 50
                                ) -> list[dict[str, Any]]:
        """One pod's `Failed` Events (the kubelet's pull errors): one bounded page, selected by the server.

        The field selector is evaluated by the API server (Event's selectable fields, pkg/registry/core/event/
        strategy.go ToSelectableFields: involvedObject.name/.uid, reason, ...), so no other Event is sent.
        """
        selector = f"involvedObject.name={name},reason=Failed"
        if uid:
            selector += f",involvedObject.uid={uid}"
        page = self.request("GET", _namespaced("events", namespace),
                            query={"fieldSelector": selector, "limit": limit})
        return list((page or {}).get("items") or [])[:limit]

    def read_pending_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        """One pod, if it still exists and is not running yet (None otherwise). A LIST by name, not a GET:
        the operator's RBAC lets it list and watch pods, not read any one of them."""
        items = self.list_all(_namespaced("pods", namespace),
                              fieldSelector=f"metadata.name={name},status.phase=Pending")
        return items[0] if items else None

    def get_or_none(self, path: str) -> dict[str, Any] | None:
        """An object by its API path; None when it does not exist."""
        try:
            result: dict[str, Any] = self.request("GET", path)
        except KubeError as error:
            if error.not_found:
                return None
            raise
        return result

    def read_namespaced(self, api: str, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        """Any namespaced object by API group/version and plural; None when it does not exist."""
        return self.get_or_none(_object_path(api, plural, namespace, name))

    def read_namespace(self, name: str) -> dict[str, Any] | None:
        return self.get_or_none(f"/api/v1/namespaces/{quote(name)}")

    def patch_namespaced(
        self, api: str, plural: str, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "PATCH", _object_path(api, plural, namespace, name), body=patch, content_type=MERGE_PATCH
        )
        return result

    def delete_pod(self, namespace: str, name: str, uid: str | None = None) -> None:
        """Delete a pod; with its uid as a precondition, so that a pod recreated under the same name survives."""
        body = {"preconditions": {"uid": uid}} if uid else None
        try:
            self.request("DELETE", _namespaced("pods", namespace, name), body=body)
        except KubeError as error:
            if not error.not_found:
                raise

    def ensure_peering(self, name: str) -> bool:
        """Create kopf's peering object(s) if missing; False when the peering CRD is not installed."""
        body = {"apiVersion": "kopf.dev/v1", "metadata": {"name": name}}
        paths = ([(f"/apis/kopf.dev/v1/namespaces/{quote(ns)}/kopfpeerings", "KopfPeering") for ns in self.namespaces]
                 or [("/apis/kopf.dev/v1/clusterkopfpeerings", "ClusterKopfPeering")])
        for path, kind in paths:
            try:
                self.request("POST", path, body={**body, "kind": kind})
            except KubeError as error:
                if error.not_found:
                    return False
                if not error.conflict:
                    raise
        return True

    def read_credential(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", f"/apis/{GROUP}/{VERSION}/{PLURAL}/{quote(name)}")
        return result


def _object_path(api: str, plural: str, namespace: str, name: str) -> str:
    prefix = "/api/v1" if api == "v1" else f"/apis/{api}"
    return f"{prefix}/namespaces/{quote(namespace)}/{plural}/{quote(name)}"


def _namespaced(plural: str, namespace: str, name: str | None = None) -> str:
    path = f"/api/v1/namespaces/{quote(namespace)}/{plural}"
    return f"{path}/{quote(name)}" if name else path

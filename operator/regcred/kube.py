"""The one layer that talks to the Kubernetes API (through the official client).

Objects go in and come out as plain dicts decoded from the API's JSON: the client's model classes cost
more CPU than the requests themselves when thousands of Secrets are listed.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import os
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import quote

import kubernetes
import urllib3

from regcred import GROUP, PLURAL, VERSION
from regcred.providers.base import ProviderError, SourceSecretNotFound
from regcred.redact import redact

JSON = "application/json"
USER_AGENT = "regcred-operator"
MERGE_PATCH = "application/merge-patch+json"
DEFAULT_TIMEOUT = (10.0, 30.0)  # (connect, read) seconds; REGCRED_API_TIMEOUT_SECONDS sets the read part
MAX_EVENT_MESSAGE = 1024  # what the API server keeps of an Event's message


class KubeError(Exception):
    """An API call failed. `reason` is the API's own (NotFound, Conflict, Forbidden, ...), or, with status 0,
    what went wrong on the way (Timeout, ConnectionError): no answer came."""

    def __init__(self, status: int, reason: str, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status, self.reason, self.message = status, reason, message
        self.retry_after = retry_after  # seconds, when the server said how long to wait (429, 503)

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:  # a stale resourceVersion, or the object already exists
        return self.status == 409


def load_api_client(kubeconfig: str | None = None, *, context: str | None = None, pool_size: int = 32
                    ) -> kubernetes.client.ApiClient:
    """An API client for the cluster named by KUBECONFIG / ~/.kube/config (its current context, or
    ``context``), or the in-cluster config."""
    configuration = kubernetes.client.Configuration()
    # Read KUBECONFIG now: the client library reads it once, when first imported.
    kubeconfig = kubeconfig or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or None
    try:
        kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, context=context, client_configuration=configuration
        )
    except kubernetes.config.ConfigException:
        if kubeconfig or context:
            raise
        kubernetes.config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    configuration.connection_pool_maxsize = pool_size
    # A call that got no answer is not repeated inside the client (each repeat would wait the whole read
    # timeout again); the operator retries it with its own back-off. A refused connection is tried again.
    configuration.retries = urllib3.Retry(total=2, connect=2, read=0, redirect=0, status=0, other=0)
    client = kubernetes.client.ApiClient(configuration)
    client.user_agent = USER_AGENT  # so that audit logs (and tests) can tell the operator's requests apart
    return client


class KubeApi:
    """Typed verbs on the few resources the operator touches. Safe to use from several threads."""

    def __init__(
        self, api_client: kubernetes.client.ApiClient, *, page_size: int = 500, namespaces: tuple[str, ...] = (),
        timeout: tuple[float, float] | None = DEFAULT_TIMEOUT,
    ) -> None:
        self.api_client = api_client
        self.page_size = page_size
        # (connect, read) seconds for every call: a half-open connection must not hold a credential's
        # reconciliation (and its lock) forever.
        self.timeout = timeout
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
        try:
            response = self.api_client.call_api(method_, url, header_params=headers_, body=body_, post_params=post,
                                                _request_timeout=self.timeout)
            raw: bytes = response.read()  # type: ignore[no-untyped-call]
        except urllib3.exceptions.HTTPError as error:  # no answer: a timeout, a reset, a refused connection
            raise _transport_error(method, path, error) from None
        if response.status >= 400:
            try:
                status = json.loads(raw)
                reason, message = status.get("reason") or "", status.get("message") or ""
            except ValueError:
                reason, message = "", raw[:200].decode(errors="replace")
            raise KubeError(response.status, reason or str(response.status), message,
                            retry_after=_retry_after(response.getheader("Retry-After")))  # type: ignore[no-untyped-call]
        return json.loads(raw) if raw else None

    def list_all(self, path: str, **query: str) -> list[dict[str, Any]]:
        """All items of a collection, page by page."""
        return list(self.iter_all(path, **query))

    def iter_all(self, path: str, **query: str) -> Iterator[dict[str, Any]]:
        """The items of a collection as the pages come: a caller that keeps only what it needs of each item
        never holds the whole collection decoded (thousands of namespaces or ServiceAccounts)."""
        params: dict[str, str | int] = {k: v for k, v in query.items() if v}
        params["limit"] = self.page_size
        while True:
            page = self.request("GET", path, query=params)
            yield from page.get("items") or []
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return
            params["continue"] = token

    # -- namespaces, secrets, service accounts -----------------------------------------------------

    def list_namespaces(self) -> Iterator[dict[str, Any]]:
        return self.iter_all("/api/v1/namespaces")

    def list_credentials(self) -> Iterator[dict[str, Any]]:
        return self.iter_all(f"/apis/{GROUP}/{VERSION}/{PLURAL}")

    def list_namespaced_collection(self, plural: str, **query: str) -> list[dict[str, Any]]:
        """A core collection across the served namespaces: one cluster-wide LIST, or one per namespace."""
        return list(self.iter_namespaced_collection(plural, **query))

    def iter_namespaced_collection(self, plural: str, **query: str) -> Iterator[dict[str, Any]]:
        if not self.namespaces:
            yield from self.iter_all(f"/api/v1/{plural}", **query)
            return
        for ns in self.namespaces:
            yield from self.iter_all(_namespaced(plural, ns), **query)

    def list_secrets(self, *, label_selector: str, also: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
        """Secrets by label across the served namespaces, and in namespaces mode also in ``also`` (where a
        credential writes outside them: Argo CD's namespace)."""
        found = self.list_namespaced_collection("secrets", labelSelector=label_selector)
        if self.namespaces:
            for ns in sorted(also - set(self.namespaces)):
                found.extend(self.list_all(_namespaced("secrets", ns), labelSelector=label_selector))
        return found

    def read_secret_data(self, namespace: str, name: str) -> dict[str, bytes]:
        """A Secret's decoded data. This is the SecretReader handed to providers."""
        try:
            secret = self.request("GET", _namespaced("secrets", namespace, name))
        except KubeError as error:
            if error.not_found:
                raise SourceSecretNotFound(
                    f"Secret {namespace}/{name} does not exist; create it or fix the reference."
                ) from None
            if error.status == 403:  # likely namespaces mode: the chart grants `get` only where it is told
                raise ProviderError(
                    f"The operator may not read Secret {namespace}/{name} (403 Forbidden): grant its ServiceAccount "
                    f"`get` on Secrets in {namespace} (with the Helm chart in namespaces mode: add {namespace} to "
                    "rbac.sourceSecretNamespaces).", reason="SourceSecretForbidden", retryable=False,
                ) from None
            raise ProviderError(f"Could not read Secret {namespace}/{name}: {error.reason or error.status}.",
                                reason="SourceSecretUnreadable") from None
        return {key: base64.b64decode(value) for key, value in (secret.get("data") or {}).items()}

    def read_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.get_or_none(_namespaced("secrets", namespace, name))

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

    def list_service_accounts(self) -> Iterator[dict[str, Any]]:
        return self.iter_namespaced_collection("serviceaccounts")

    def read_service_account(self, namespace: str, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", _namespaced("serviceaccounts", namespace, name))
        return result

    def patch_service_account(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        """A merge patch; a metadata.resourceVersion in it is a precondition (409 Conflict when the account
        changed since): the apiserver's generic store refuses an update whose object carries another
        resourceVersion than the stored one (k8s.io/apiserver pkg/registry/generic/registry/store.go, Update)."""
        result: dict[str, Any] = self.request(
            "PATCH", _namespaced("serviceaccounts", namespace, name), body=patch, content_type=MERGE_PATCH
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

    # -- watching the credentials' source Secrets (regcred.sources) --------------------------------------

    def for_watches(self, connections: int) -> KubeApi:
        """The same API with a connection pool of its own, big enough for this many long-lived watches: they
        must not take the connections the reconciliations write with."""
        configuration = copy.copy(self.api_client.configuration)
        configuration.connection_pool_maxsize = connections
        client = kubernetes.client.ApiClient(configuration)
        client.user_agent = self.api_client.user_agent
        return KubeApi(client, page_size=self.page_size, namespaces=self.namespaces, timeout=self.timeout)

    def secret_list_version(self, namespace: str, name: str) -> str:
        """The resourceVersion to watch one Secret from: a LIST selected server-side by namespace and name (the
        Secret need not exist), so that a watch started from it misses no change."""
        page = self.request("GET", _namespaced("secrets", namespace), query={"fieldSelector": f"metadata.name={name}"})
        return str(((page or {}).get("metadata") or {}).get("resourceVersion") or "")

    def watch_secret(
        self, namespace: str, name: str, resource_version: str, *, timeout_seconds: int,
        on_open: Callable[[WatchStream], None] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """One Secret's watch events (ADDED, MODIFIED, DELETED, BOOKMARK, ERROR) after a resourceVersion, selected
        by the API server (field selector metadata.name in the namespace: no other Secret is sent). Ends when
        the server closes the stream, after ``timeout_seconds``; ``on_open`` gets a handle that ends it from
        another thread."""
        path = _namespaced("secrets", namespace)
        query = {"watch": "true", "fieldSelector": f"metadata.name={name}", "resourceVersion": resource_version,
                 "allowWatchBookmarks": "true", "timeoutSeconds": str(timeout_seconds)}
        method_, url, headers_, body_, post = self.api_client.param_serialize(
            "GET", path, query_params=list(query.items()), header_params={"Accept": JSON},
            auth_settings=["BearerToken"],
        )
        connect = self.timeout[0] if self.timeout else DEFAULT_TIMEOUT[0]
        try:  # no byte for longer than the server's own timeout: a dead connection
            response = self.api_client.call_api(method_, url, header_params=headers_, body=body_, post_params=post,
                                                _request_timeout=(connect, timeout_seconds + 30.0))
        except urllib3.exceptions.HTTPError as error:
            raise _transport_error("WATCH", path, error) from None
        raw: urllib3.BaseHTTPResponse = response.response
        if response.status >= 400:
            try:
                status = json.loads(raw.read(64 * 1024) or b"{}")
            except ValueError:
                status = {}
            finally:
                raw.close()
            raise KubeError(response.status, status.get("reason") or str(response.status), status.get("message") or "",
                            retry_after=_retry_after(raw.headers.get("Retry-After")))
        if on_open is not None:
            on_open(WatchStream(raw))
        finished = False
        try:
            for line in raw:
                if line.strip():
                    yield json.loads(line)
            finished = True
        except urllib3.exceptions.HTTPError as error:
            raise _transport_error("WATCH", path, error) from None
        finally:
            if finished:
                raw.release_conn()
            else:
                raw.close()


class WatchStream:
    """An open watch: close() ends it from any thread (the reading thread then sees the stream end)."""

    def __init__(self, response: urllib3.BaseHTTPResponse) -> None:
        self._response = response

    def close(self) -> None:
        with contextlib.suppress(Exception):  # already closed, or never connected: nothing to end
            self._response.shutdown()


def _transport_error(method: str, path: str, error: urllib3.exceptions.HTTPError) -> KubeError:
    """One line for a call that got no answer (the exception's own text is a long urllib3 story)."""
    cause = error.reason if isinstance(error, urllib3.exceptions.MaxRetryError) and error.reason else error
    timed_out = isinstance(cause, urllib3.exceptions.TimeoutError)
    reason = "Timeout" if timed_out else "ConnectionError"
    what = "no answer in time" if timed_out else f"the connection failed ({type(cause).__name__})"
    return KubeError(0, reason, f"{method} {path}: {what}")


def _retry_after(value: object) -> float | None:
    """Seconds from a Retry-After header (delta-seconds only, as the API server sends it), bounded to an hour."""
    if not isinstance(value, str) or not value.strip().isdigit() or len(value.strip()) > 6:
        return None
    return min(float(value.strip()), 3600.0)


def _object_path(api: str, plural: str, namespace: str, name: str) -> str:
    prefix = "/api/v1" if api == "v1" else f"/apis/{api}"
    return f"{prefix}/namespaces/{quote(namespace)}/{plural}/{quote(name)}"


def _namespaced(plural: str, namespace: str, name: str | None = None) -> str:
    path = f"/api/v1/namespaces/{quote(namespace)}/{plural}"
    return f"{path}/{quote(name)}" if name else path

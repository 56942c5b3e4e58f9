"""An in-memory stand-in for `regcred.kube.KubeApi`: the verbs the Reconciler calls, on plain dicts.

Fast enough for a thousand reconciliations a minute (the emulated API server is an HTTP server; this is a
dict). Objects are stored as the API would return them (Secret data base64-encoded); a create of an existing
name answers 409, a replace with a stale resourceVersion 409, a missing object 404, a Secret over 1 MiB 422.
"""

from __future__ import annotations

import base64
import copy
import itertools
import threading
from collections.abc import Mapping
from typing import Any

from regcred.kube import KubeError
from regcred.providers.base import SourceSecretNotFound
from regcred_sandbox.patches import merge_patch  # RFC 7386, as the emulated API server applies it
from regcred_sandbox.selectors import LabelSelector

MAX_SECRET_BYTES = 1024 * 1024  # the API server's limit on a Secret's data


def _selected(labels: Mapping[str, Any], selector: str) -> bool:
    return LabelSelector.parse(selector).matches({"metadata": {"labels": labels}})


class FakeKube:
    def __init__(self, namespaces: list[dict[str, Any]] | None = None) -> None:
        self.namespaces = namespaces or []
        self.credentials: list[dict[str, Any]] = []  # RegistryCredential bodies, for list_credentials
        self.secrets: dict[tuple[str, str], dict[str, Any]] = {}
        self.service_accounts: dict[tuple[str, str], dict[str, Any]] = {}
        self.status: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        # Pods, workloads and their Events, for diagnosis and remediation.
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}  # (plural, namespace, name)
        self.pod_events: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.deleted_pods: list[tuple[str, str]] = []
        self._versions = itertools.count(1)
        self._lock = threading.Lock()

    # -- setting the scene -------------------------------------------------------------------------

    def put_secret(self, body: Mapping[str, Any]) -> None:
        metadata = body["metadata"]
        self.secrets[(metadata["namespace"], metadata["name"])] = copy.deepcopy(dict(body))

    def put_source_secret(self, namespace: str, name: str, data: Mapping[str, bytes]) -> None:
        encoded = {key: base64.b64encode(value).decode() for key, value in data.items()}
        self.put_secret({"metadata": {"namespace": namespace, "name": name}, "type": "Opaque", "data": encoded})

    def put_service_account(self, body: Mapping[str, Any]) -> None:
        metadata = body["metadata"]
        stored = copy.deepcopy(dict(body))
        stored["metadata"]["resourceVersion"] = str(next(self._versions))
        self.service_accounts[(metadata["namespace"], metadata["name"])] = stored

    # -- the KubeApi verbs ---------------------------------------------------------------------------

    def list_namespaces(self) -> list[dict[str, Any]]:
        return copy.deepcopy(self.namespaces)

    def list_credentials(self) -> list[dict[str, Any]]:
        return copy.deepcopy(self.credentials)

    def list_secrets(self, *, label_selector: str, also: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
        with self._lock:
            return [copy.deepcopy(secret) for secret in self.secrets.values()
                    if _selected((secret.get("metadata") or {}).get("labels") or {}, label_selector)]

    def read_secret_data(self, namespace: str, name: str) -> dict[str, bytes]:
        secret = self.secrets.get((namespace, name))
        if secret is None:
            raise SourceSecretNotFound(f"Secret {namespace}/{name} does not exist; create it or fix the reference.")
        return {key: base64.b64decode(value) for key, value in (secret.get("data") or {}).items()}

    def read_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            return copy.deepcopy(self.secrets.get((namespace, name)))

    def _check_size(self, body: Mapping[str, Any]) -> None:
        size = sum(len(str(value)) * 3 // 4 for value in (body.get("data") or {}).values())
        if size > MAX_SECRET_BYTES:
            raise KubeError(422, "Invalid", f"Secret is too long: must have at most {MAX_SECRET_BYTES} bytes")

    def create_secret(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        name = body["metadata"]["name"]
        self._check_size(body)
        with self._lock:
            if (namespace, name) in self.secrets:
                raise KubeError(409, "AlreadyExists", f'secrets "{name}" already exists')
            self.secrets[(namespace, name)] = copy.deepcopy(dict(body))
            return copy.deepcopy(self.secrets[(namespace, name)])

    def patch_secret(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        with self._lock:
            if (namespace, name) not in self.secrets:
                raise KubeError(404, "NotFound", f'secrets "{name}" not found')
            patched = copy.deepcopy(merge_patch(self.secrets[(namespace, name)], dict(patch)))
            self._check_size(patched)
            self.secrets[(namespace, name)] = patched
            return copy.deepcopy(patched)

    def delete_secret(self, namespace: str, name: str) -> None:
        with self._lock:
            self.secrets.pop((namespace, name), None)

    def list_service_accounts(self) -> list[dict[str, Any]]:
        return [copy.deepcopy(account) for account in self.service_accounts.values()]

    def read_service_account(self, namespace: str, name: str) -> dict[str, Any]:
        account = self.service_accounts.get((namespace, name))
        if account is None:
            raise KubeError(404, "NotFound", f'serviceaccounts "{name}" not found')
        return copy.deepcopy(account)

    def patch_service_account(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        with self._lock:
            current = self.service_accounts.get((namespace, name))
            if current is None:
                raise KubeError(404, "NotFound", f'serviceaccounts "{name}" not found')
            wanted_version = (patch.get("metadata") or {}).get("resourceVersion")
            if wanted_version and wanted_version != current["metadata"]["resourceVersion"]:
                raise KubeError(409, "Conflict", "the object has been modified")
            self.put_service_account(merge_patch(current, dict(patch)))
            return copy.deepcopy(self.service_accounts[(namespace, name)])

    def patch_credential_status(self, name: str, status: Mapping[str, Any]) -> None:
        self.status[name] = copy.deepcopy(merge_patch(self.status.get(name) or {}, dict(status)))

    def post_event(self, obj: Mapping[str, Any], *, api_version: str, kind: str, type_: str, reason: str,
                   message: str, namespace: str, now: str) -> None:
        self.events.append({"kind": kind, "type": type_, "reason": reason, "message": message})

    # -- pods and workloads ------------------------------------------------------------------------

    def read_namespaced(self, api: str, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        if plural == "secrets":
            found = self.secrets.get((namespace, name))
        elif plural == "serviceaccounts":
            found = self.service_accounts.get((namespace, name))
        else:
            found = self.objects.get((plural, namespace, name))
        return copy.deepcopy(found)

    def read_namespace(self, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(next((ns for ns in self.namespaces if ns["metadata"]["name"] == name), None))

    def patch_namespaced(self, api: str, plural: str, namespace: str, name: str,
                         patch: Mapping[str, Any]) -> dict[str, Any]:
        if (plural, namespace, name) not in self.objects:
            raise KubeError(404, "NotFound", f'{plural} "{name}" not found')
        patched = copy.deepcopy(merge_patch(self.objects[(plural, namespace, name)], dict(patch)))
        self.objects[(plural, namespace, name)] = patched
        return copy.deepcopy(patched)

    def list_pod_failure_events(self, namespace: str, name: str, uid: str | None, limit: int = 50
                                ) -> list[dict[str, Any]]:
        return copy.deepcopy(self.pod_events.get((namespace, name), [])[:limit])

    def delete_pod(self, namespace: str, name: str, uid: str | None = None) -> None:
        self.deleted_pods.append((namespace, name))

    def read_credential(self, name: str) -> dict[str, Any]:
        return {"metadata": {"name": name}, "status": copy.deepcopy(self.status.get(name) or {})}

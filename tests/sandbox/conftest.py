"""Fixtures for the emulated API server's own tests: a fresh cluster per test (it starts in ~5 ms)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest

from regcred_sandbox import EmulatedCluster

GADGETS_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "gadgets.example.dev"},
    "spec": {
        "group": "example.dev",
        "scope": "Namespaced",
        "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget", "shortNames": ["gd"]},
        "versions": [{
            "name": "v1",
            "served": True,
            "storage": True,
            "subresources": {"status": {}},
            "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
            "additionalPrinterColumns": [
                {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
                {"name": "Expires", "type": "date", "jsonPath": ".status.expirationTime"},
                {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
            ],
        }],
    },
}

# Cluster-scoped and without a status subresource: the other corner of the matrix.
WIDGETS_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.dev"},
    "spec": {
        "group": "example.dev",
        "scope": "Cluster",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [{
            "name": "v1",
            "served": True,
            "storage": True,
            "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
        }],
    },
}


@pytest.fixture
def cluster() -> Iterator[EmulatedCluster]:
    with EmulatedCluster() as emulated:
        emulated.install_crd(GADGETS_CRD)
        yield emulated


@pytest.fixture
def client(cluster: EmulatedCluster) -> Iterator[Any]:
    api_client = cluster.api_client()
    yield api_client
    api_client.close()


@pytest.fixture
def core(client: Any) -> Any:
    return kubernetes.client.CoreV1Api(client)


@pytest.fixture
def custom(client: Any) -> Any:
    return kubernetes.client.CustomObjectsApi(client)


def status_of(error: kubernetes.client.ApiException) -> dict[str, Any]:
    """The Status body of an API error, as the real server sends it."""
    body: dict[str, Any] = json.loads(error.body)
    assert body["kind"] == "Status"
    assert body["code"] == error.status
    return body


def raw(cluster: EmulatedCluster, method: str, path: str, body: Any = None,
        content_type: str = "application/json", headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """A plain HTTP request, for what the official client cannot send (odd methods, media types)."""
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    request = urllib.request.Request(cluster.url + path, data=data, method=method,  # noqa: S310  # http only
                                     headers={"Content-Type": content_type, **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310  # our own http URL
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")

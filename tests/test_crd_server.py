"""The RegistryCredential CRD in a real kube-apiserver: what tests/test_crd.py can only approximate.

tests/test_crd.py judges objects with `jsonschema`, which knows nothing of structural schemas,
pruning, defaulting, x-kubernetes-list-type or CEL. Here the API server is the judge:

- the CRD is accepted as written (a structural schema whose CEL rules compile) and stored unchanged;
- every example is accepted and stored as sent plus exactly the schema's defaults (nothing pruned);
- every object test_crd.py rejects is refused with 422, naming the same field and the same rule,
  and every object it accepts is accepted;
- what only the server checks (CEL rules, list-type set, pruning) is refused;
- `kubectl explain` prints the field descriptions.

One control plane serves the whole module: every test creates cluster-scoped objects under its own names.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from regcred.kube import JSON, MERGE_PATCH, KubeApi
from tests import test_crd
from tests.control_plane import ControlPlane, Etcd
from tests.test_crd import APP, BASE, DELETE, INVALID, TOKEN_REF, changed, walk

CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
CREDENTIALS = "/apis/regcred.dev/v1alpha1/registrycredentials"
# The server appends this to the causes when a type or required error kept it from running the CEL rules.
RULES_NOT_CHECKED = "some validation rules were not checked"


# --- talking to the API server -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Response:
    status: int
    body: dict[str, Any]
    warnings: list[str]  # the Warning headers: unknown fields, deprecated keywords, ...

    @property
    def causes(self) -> list[dict[str, str]]:
        return list((self.body.get("details") or {}).get("causes") or [])


@dataclasses.dataclass
class Server:
    plane: ControlPlane
    client: Any  # a kubernetes.client.ApiClient, as the admin
    crd_created: Response | None = None  # the answer to the CRD's own POST

    def call(self, method: str, path: str, body: Any = None) -> Response:
        """One request. Unlike KubeApi.request, errors are returned, with their causes and the Warning
        headers: they are what these tests look at."""
        headers = {"Accept": JSON, **({"Content-Type": JSON} if body is not None else {})}
        method_, url, headers_, body_, post = self.client.param_serialize(
            method, path, header_params=headers, body=body, auth_settings=["BearerToken"])
        response = self.client.call_api(method_, url, header_params=headers_, body=body_, post_params=post)
        raw = response.read()
        return Response(response.status, json.loads(raw) if raw else {}, response.getheaders().getlist("Warning"))

    def create(self, obj: dict[str, Any]) -> Response:
        return self.call("POST", CREDENTIALS, obj)

    def get(self, name: str) -> dict[str, Any]:
        response = self.call("GET", f"{CREDENTIALS}/{name}")
        assert response.status == 200, response.body
        return response.body


@pytest.fixture(scope="module")
def server(control_plane_assets: Path, shared_etcd: Etcd) -> Iterator[Server]:
    """A real cluster with the CRD installed from crds/ exactly as it is shipped."""
    with ControlPlane(control_plane_assets, shared_etcd) as plane:
        server = Server(plane, plane.api_client())
        server.crd_created = server.call("POST", CRDS, test_crd.load_crd())
        # Refused means a non-structural schema, a keyword v1 forbids or a CEL rule that does not compile.
        assert server.crd_created.status == 201, server.crd_created.body.get("message")
        plane.install_crd(test_crd.load_crd())  # already there: waits for Established
        yield server
        server.client.close()


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return test_crd.load_schema()


@pytest.fixture(scope="module")
def validator(schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def named(obj: dict[str, Any], name: str) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    obj["metadata"]["name"] = name
    return obj


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


# --- the CRD itself ------------------------------------------------------------------------------


def test_the_crd_is_accepted_and_stored_as_written(server: Server) -> None:
    created = server.crd_created
    assert created is not None
    assert created.warnings == []
    # Whatever the server does not understand it drops: a misspelled keyword would be missing here.
    version = test_crd.the_version(test_crd.load_crd())
    assert test_crd.the_version(created.body) == version
    stored = server.call("GET", f"{CRDS}/{created.body['metadata']['name']}").body
    conditions = {c["type"]: c["status"] for c in stored["status"]["conditions"]}
    assert conditions == {"NamesAccepted": "True", "Established": "True"}
    assert stored["status"]["acceptedNames"]["shortNames"] == ["regcred"]


# --- examples: accepted, nothing pruned, exactly the declared defaults added -------------------------


def compare(sent: Any, stored: Any, node: dict[str, Any], path: str) -> tuple[dict[str, Any], list[str]]:
    """What the server added (schema path -> value) and what it lost or rewrote on the way to etcd."""
    added: dict[str, Any] = {}
    lost: list[str] = []
    if isinstance(sent, dict) and isinstance(stored, dict):
        properties = node.get("properties", {})
        extra = node.get("additionalProperties")
        lost += [f"{path}.{key}: pruned" for key in sent.keys() - stored.keys()]
        for key, value in stored.items():
            child, child_path = (properties[key], f"{path}.{key}") if key in properties else (
                extra if isinstance(extra, dict) else {}, f"{path}{{}}")
            if key not in sent:
                added[child_path] = value
                continue
            more_added, more_lost = compare(sent[key], value, child, child_path)
            added |= more_added
            lost += more_lost
    elif isinstance(sent, list) and isinstance(stored, list) and len(sent) == len(stored):
        for sent_item, stored_item in zip(sent, stored, strict=True):
            more_added, more_lost = compare(sent_item, stored_item, node.get("items", {}), f"{path}[]")
            added |= more_added
            lost += more_lost
    elif sent != stored or type(sent) is not type(stored):
        lost.append(f"{path}: {sent!r} stored as {stored!r}")
    return added, lost


def declared_defaults(sent: Any, node: dict[str, Any], path: str) -> dict[str, Any]:
    """What the schema says the server must add to ``sent``: each absent property with a default, filled
    recursively (remediation defaults to {} and then gets its own properties' defaults)."""
    expected: dict[str, Any] = {}
    if isinstance(sent, dict):
        for key, child in node.get("properties", {}).items():
            if key in sent:
                expected |= declared_defaults(sent[key], child, f"{path}.{key}")
            elif "default" in child:
                expected[f"{path}.{key}"] = test_crd.apply_defaults(copy.deepcopy(child["default"]), child)
    elif isinstance(sent, list):
        for item in sent:
            expected |= declared_defaults(item, node.get("items", {}), f"{path}[]")
    return expected


def default_paths(added: dict[str, Any], schema: dict[str, Any]) -> set[str]:
    """The schema paths of the defaults in ``added``, including those inside a defaulted object."""
    paths: set[str] = set()

    def visit(value: Any, node: dict[str, Any], path: str) -> None:
        if "default" in node:
            paths.add(path)
        if isinstance(value, dict):
            for key, item in value.items():
                visit(item, node.get("properties", {}).get(key, {}), f"{path}.{key}")

    for path, value in added.items():
        visit(value, test_crd.node_at(schema, path), path)
    return paths


def round_trip(server: Server, obj: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """Create ``obj``, read it back from etcd, and return the defaults the server added to its spec."""
    created = server.create(obj)
    assert created.status == 201, created.body.get("message")
    assert created.warnings == []  # the server warns about fields it does not know, then prunes them
    stored = server.get(obj["metadata"]["name"])
    added, lost = compare(obj["spec"], stored["spec"], schema["properties"]["spec"], "spec")
    assert lost == []
    assert added == declared_defaults(obj["spec"], schema["properties"]["spec"], "spec")
    # test_crd.py's model of defaulting agrees with the server's.
    assert stored["spec"] == test_crd.apply_defaults(copy.deepcopy(obj), schema)["spec"]
    return added


@pytest.mark.parametrize("name", test_crd.EXAMPLE_NAMES)
def test_example_round_trips_with_only_the_declared_defaults_added(name: str, server: Server,
                                                                   schema: dict[str, Any]) -> None:
    for example in test_crd.load_example(name):
        added = round_trip(server, example, schema)
        # No example sets dryRun: so each one also shows the server defaulting.
        assert "spec.remediation.dryRun" in default_paths(added, schema)


def test_every_declared_default_is_applied_by_the_server(server: Server, schema: dict[str, Any]) -> None:
    # Objects that leave out every defaulted field between them.
    bare = changed({"spec.remediation": DELETE, "spec.refresh": DELETE, "spec.argocd": {}})
    providers = {
        "ghcr-app": {"ghcr": {"app": APP}},
        "ghcr-pat": {"ghcr": {"username": "bot", "tokenSecretRef": TOKEN_REF}},
        "gar-key": {"gar": {"registries": ["gcr.io"], "credentialsSecretRef": {"namespace": "ops", "name": "gcp"}}},
        "acr": {"acr": {"registry": "myregistry.azurecr.io"}},
    }
    applied: set[str] = set()
    for key, provider in providers.items():
        obj = named(bare, f"defaults-{key}")
        obj["spec"]["provider"] = copy.deepcopy(provider)
        applied |= default_paths(round_trip(server, obj, schema), schema)
    declared = {path for path, node, in_junctor in walk(schema) if "default" in node and not in_junctor}
    assert applied == declared
    assert server.get("defaults-ghcr-app")["spec"]["provider"]["ghcr"] == {
        "registry": "ghcr.io",
        "app": {**APP, "apiUrl": "https://api.github.com",
                "privateKeySecretRef": {**APP["privateKeySecretRef"], "key": "private-key.pem"}},
    }


# --- test_crd.py's valid objects are accepted ----------------------------------------------------------

VALID = [
    ("base", {}),
    *((f"provider-{i}", {"spec.provider": p}) for i, p in test_crd.VALID_PROVIDERS),
    *((f"duration-{i}", {"spec.refresh.beforeExpiry": d}) for i, d in enumerate(test_crd.GO_DURATIONS)),
    *((f"service-accounts-{i}", {"spec.serviceAccounts": a}) for i, a in enumerate(test_crd.SERVICE_ACCOUNT_FORMS)),
]


@pytest.mark.parametrize("changes", [c for _, c in VALID], ids=[i for i, _ in VALID])
def test_what_jsonschema_accepts_the_server_accepts(changes: dict[str, Any], request: pytest.FixtureRequest,
                                                    server: Server, schema: dict[str, Any]) -> None:
    obj = named(changed(changes), f"valid-{slug(request.node.callspec.id)}")
    round_trip(server, obj, schema)


# --- test_crd.py's invalid objects are refused, for the same reason ---------------------------------


def server_path(where: str) -> str:
    """jsonschema's ``spec.names.0`` as the server writes it: ``spec.names[0]``."""
    return re.sub(r"\.(\d+)(?=\.|$)", r"[\1]", where)


def expected_causes(error: jsonschema.ValidationError) -> list[tuple[str, str, str]]:
    """How the server words the error jsonschema found: (reason, field, a piece of the message)."""
    field = server_path(test_crd.error_path(error))
    value = error.validator_value
    match error.validator:
        case "required":  # jsonschema names the object, the server each missing field
            return [("FieldValueRequired", f"{field}.{key}".lstrip("."), "Required value")
                    for key in value if key not in error.instance]
        case "pattern":
            reason, text = "FieldValueInvalid", f"should match '{value}'"
        case "type":
            reason, text = "FieldValueTypeInvalid", f"must be of type {value}"
        case "enum":
            reason, text = "FieldValueNotSupported", "supported values: " + ", ".join(f'"{v}"' for v in value)
        case "minProperties":
            reason, text = "FieldValueInvalid", f"should have at least {value} properties"
        case "maxProperties":
            reason, text = "FieldValueTooMany", f"must have at most {value} item"
        case "minItems":
            reason, text = "FieldValueInvalid", f"should have at least {value} items"
        # The server reports a junctor without a field, naming it in the message.
        case "anyOf":
            reason, text = "FieldValueInvalid", f'"{field}" must validate at least one schema (anyOf)'
        case "oneOf":
            reason, text = "FieldValueInvalid", f'"{field}" must validate one and only one schema (oneOf)'
        case "not":
            reason, text = "FieldValueInvalid", f'"{field}" must not validate the schema (not)'
        case other:
            raise AssertionError(f"teach this test how the server words {other}")
    return [(reason, field, text)]


def cause_field(cause: dict[str, str]) -> str | None:
    """The field a cause is about: its own, or the one its message quotes (junctors); None for the notice
    that CEL rules were skipped."""
    if cause.get("field") not in (None, "", "<nil>"):
        return cause["field"]
    quoted = re.search(r'"([^"]+)" must (?:validate|not validate)', cause["message"])
    if quoted:
        return quoted.group(1)
    assert RULES_NOT_CHECKED in cause["message"], cause
    return None


@pytest.mark.parametrize(("changes", "where", "keyword"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_what_jsonschema_rejects_the_server_refuses_for_the_same_reason(
    changes: dict[str, Any], where: str, keyword: str, request: pytest.FixtureRequest,
    server: Server, validator: jsonschema.Draft202012Validator,
) -> None:
    obj = named(changed(changes), f"invalid-{slug(request.node.callspec.id)}")
    response = server.create(obj)
    assert (response.status, response.body.get("reason")) == (422, "Invalid"), response.body
    causes = response.causes
    (error,) = [e for e in validator.iter_errors(obj) if (test_crd.error_path(e), e.validator) == (where, keyword)]
    for reason, field, text in expected_causes(error):
        assert any(c["reason"] == reason and cause_field(c) == field and text in c["message"] for c in causes), (
            reason, field, text, causes)
        assert field in response.body["message"]
    # Nothing else is wrong: like test_crd.py, every cause lies on the way to the expected field or below it.
    target = server_path(where)
    for cause in causes:
        field = cause_field(cause)
        assert field is None or target.startswith(field) or field.startswith(target), cause


# --- what only the server checks --------------------------------------------------------------------------

SERVER_ONLY = [
    # (id, changes to BASE, the field the server names (None: the root), a piece of its message)
    ("star with another ServiceAccount", {"spec.serviceAccounts": ["*", "default"]},
     "spec.serviceAccounts", 'spec.serviceAccounts may contain "*" only on its own.'),
    ("name longer than 63", {"metadata.name": "n" * 64}, None, "metadata.name must be at most 63 characters"),
    ("namespace listed twice", {"spec.namespaces.names": ["web", "web"]},
     "spec.namespaces.names[1]", 'Duplicate value: "web"'),
    ("registryId listed twice", {"spec.provider.ecr.registryIds": ["123456789012", "123456789012"]},
     "spec.provider.ecr.registryIds[1]", 'Duplicate value: "123456789012"'),
    # Digits the pattern admits, a duration no one means (and an overflow for a naive parser).
    ("a duration of millions of years", {"spec.refresh.beforeExpiry": "30000000000h"},
     "spec.refresh.beforeExpiry", "must be at most 8760h (a year)"),
    ("a cooldown over a year", {"spec.remediation.cooldown": "8761h"},
     "spec.remediation.cooldown", "must be at most 8760h (a year)"),
    ("argocd template named like the pull Secret", {"spec.argocd": {"name": "regcred"}},
     "spec", "spec.argocd.name must differ from spec.secretName."),
    # An unknown provider is pruned, which leaves none: jsonschema counts it as the one provider.
    ("unknown provider", {"spec.provider": {"quay": {"registry": "quay.io"}}},
     "spec.provider", "spec.provider must set exactly one of ecr, ghcr, gar, acr or static."),
]  # fmt: skip


@pytest.mark.parametrize(("changes", "field", "text"), [c[1:] for c in SERVER_ONLY], ids=[c[0] for c in SERVER_ONLY])
def test_what_only_the_server_checks(changes: dict[str, Any], field: str | None, text: str,
                                     request: pytest.FixtureRequest, server: Server,
                                     validator: jsonschema.Draft202012Validator) -> None:
    obj = changed(changes)
    if "metadata.name" not in changes:
        obj = named(obj, f"server-only-{slug(request.node.callspec.id)}")
    assert list(validator.iter_errors(obj)) == []  # why this needs the server
    response = server.create(obj)
    assert (response.status, response.body.get("reason")) == (422, "Invalid"), response.body
    assert any(text in c["message"] and c.get("field") == (field or "<nil>") for c in response.causes), (
        response.causes)


def test_a_name_of_63_characters_is_accepted(server: Server, schema: dict[str, Any]) -> None:
    round_trip(server, named(BASE, "n" * 63), schema)  # the CEL rule's boundary


# --- kubectl explain ---------------------------------------------------------------------------------------


def kubectl_binary() -> str:
    beside = Path(sys.executable).parent / "kubectl"
    found = str(beside) if beside.exists() else shutil.which("kubectl")
    if not found:
        if os.environ.get("CI") == "true":
            pytest.fail("kubectl is not installed")
        pytest.skip("kubectl is not installed")
    return found


def test_kubectl_explain_prints_the_descriptions(server: Server, schema: dict[str, Any], tmp_path: Path) -> None:
    kubectl = kubectl_binary()
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "KUBECONFIG": server.plane.kubeconfig_path}
    # The server publishes a new CRD's OpenAPI a moment after Established.
    deadline = time.monotonic() + 30
    while True:
        result = subprocess.run([kubectl, "explain", "registrycredentials.spec.provider"], env=env,
                                capture_output=True, text=True, timeout=30, check=False)
        if result.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())  # kubectl wraps the descriptions
    provider = test_crd.node_at(schema, "spec.provider")
    assert "KIND: RegistryCredential" in text and "VERSION: v1alpha1" in text
    assert f"FIELD: provider <Object> DESCRIPTION: {' '.join(provider['description'].split())}" in text
    for key, node in provider["properties"].items():
        assert f"{key} <Object> {' '.join(node['description'].split())}" in text


def test_kubectl_get_shows_why_a_credential_is_not_ready(server: Server, tmp_path: Path) -> None:
    """`kubectl get registrycredentials` names the Ready reason in its default columns; `-o wide` adds the message."""
    kubectl = kubectl_binary()
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "KUBECONFIG": server.plane.kubeconfig_path}
    assert server.create(named(copy.deepcopy(BASE), "not-ready")).status == 201
    message = "Secret regcred-system/hub does not exist; create it or fix the reference."
    KubeApi(server.client).request("PATCH", f"{CREDENTIALS}/not-ready/status", content_type=MERGE_PATCH, body={
        "status": {"provider": "static", "conditions": [{
            "type": "Ready", "status": "False", "reason": "SourceSecretNotFound", "message": message,
            "lastTransitionTime": "2026-12-01T12:00:00Z"}]}})

    def get(*args: str) -> list[list[str]]:
        result = subprocess.run([kubectl, "get", "registrycredentials", "not-ready", *args], env=env,
                                capture_output=True, text=True, timeout=30, check=True)
        return [re.split(r"\s{2,}", line.strip()) for line in result.stdout.splitlines()]

    header, row = get()
    assert header[:4] == ["NAME", "PROVIDER", "READY", "REASON"]
    assert dict(zip(header, row, strict=False))["READY"] == "False"
    assert dict(zip(header, row, strict=False))["REASON"] == "SourceSecretNotFound"
    assert "MESSAGE" not in header
    wide = get("-o", "wide")
    assert "MESSAGE" in wide[0]
    assert wide[1][-1] == message

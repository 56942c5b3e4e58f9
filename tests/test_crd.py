"""The RegistryCredential CRD is the user-facing API: these tests keep it honest without a cluster.

- every example in examples/ is accepted by the CRD's own schema, with no unknown field;
- malformed objects are rejected, each for the reason it is malformed;
- the schema stays a legal structural schema that `kubectl explain` can document: every
  property described, no keyword the API server forbids, defaults valid, CEL rules in place.

The schema is checked with `jsonschema`, which ignores the x-kubernetes-* keywords; the CEL
rules (x-kubernetes-validations) only run in a real API server, so here they are checked
for presence and shape only. tests/test_crd_server.py sends the same objects (EXAMPLE_NAMES,
INVALID, VALID_PROVIDERS, GO_DURATIONS, SERVICE_ACCOUNT_FORMS) to a real kube-apiserver.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CRD_PATH = ROOT / "crds" / "registrycredentials.regcred.dev.yaml"
EXAMPLES_DIR = ROOT / "examples"
EXAMPLE_NAMES = ["static-dockerhub.yaml", "ecr.yaml", "ecr-public.yaml", "ghcr-pat.yaml", "ghcr-app.yaml", "gar.yaml",
                 "acr-workload-identity.yaml", "acr-service-principal.yaml", "argocd-repo-creds.yaml",
                 "shared-pull-secret.yaml"]

JUNCTORS = ("allOf", "anyOf", "oneOf", "not")
# The keywords apiextensions.k8s.io/v1 accepts in a structural schema (JSONSchemaProps minus
# what v1 forbids: $ref, definitions, dependencies, patternProperties, additionalItems, uniqueItems).
ALLOWED_KEYWORDS = {
    "description", "type", "format", "title", "default", "example", "externalDocs", "nullable",
    "maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum", "multipleOf",
    "maxLength", "minLength", "pattern", "maxItems", "minItems", "enum",
    "maxProperties", "minProperties", "required", "items", "properties", "additionalProperties",
    *JUNCTORS,
    "x-kubernetes-preserve-unknown-fields", "x-kubernetes-embedded-resource",
    "x-kubernetes-int-or-string", "x-kubernetes-list-type", "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type", "x-kubernetes-validations",
}  # fmt: skip
# What a structural schema must not say inside a junctor: those belong to the outer schema.
FORBIDDEN_IN_JUNCTORS = {"type", "description", "default", "additionalProperties", "nullable"}


# --- loading -------------------------------------------------------------------------------------


def load_crd() -> dict[str, Any]:
    return yaml.safe_load(CRD_PATH.read_text(encoding="utf-8"))


def the_version(crd: dict[str, Any]) -> dict[str, Any]:
    (version,) = crd["spec"]["versions"]
    return version


def load_schema() -> dict[str, Any]:
    return the_version(load_crd())["schema"]["openAPIV3Schema"]


@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    return load_crd()


@pytest.fixture(scope="module")
def schema(crd: dict[str, Any]) -> dict[str, Any]:
    return the_version(crd)["schema"]["openAPIV3Schema"]


@pytest.fixture(scope="module")
def validator(schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def load_example(name: str) -> list[dict[str, Any]]:
    documents = [d for d in yaml.safe_load_all((EXAMPLES_DIR / name).read_text(encoding="utf-8")) if d]
    # RegistryCredentials only (two where an example shows credentials sharing a Secret); source Secrets
    # appear only as commented templates.
    assert documents and {d.get("kind") for d in documents} == {"RegistryCredential"}, name
    return documents


# --- schema helpers ------------------------------------------------------------------------------


def walk(node: dict[str, Any], path: str = "", in_junctor: bool = False) -> Iterator[tuple[str, dict[str, Any], bool]]:
    """Every schema node with a readable path: ``spec.provider.ecr.registryIds[]``, ``matchLabels{}``.

    Nodes inside allOf/anyOf/oneOf/not are yielded with ``in_junctor=True`` and a ``<anyOf:0>`` path part.
    """
    yield path, node, in_junctor
    for key, child in node.get("properties", {}).items():
        yield from walk(child, f"{path}.{key}" if path else key, in_junctor)
    if isinstance(node.get("items"), dict):
        yield from walk(node["items"], f"{path}[]", in_junctor)
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}{{}}", in_junctor)
    for junctor in JUNCTORS:
        branches = node.get(junctor)
        if branches is None:
            continue
        for index, branch in enumerate(branches if isinstance(branches, list) else [branches]):
            yield from walk(branch, f"{path}<{junctor}:{index}>", True)


def node_at(schema: dict[str, Any], path: str) -> dict[str, Any]:
    """The schema node for a dotted path such as ``spec.namespaces.names[]``."""
    nodes = {p: n for p, n, in_junctor in walk(schema) if not in_junctor}
    return nodes[path]


def apply_defaults(value: Any, schema: dict[str, Any]) -> Any:
    """Default like the API server: fill missing properties from ``default``, then descend."""
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for key, prop in properties.items():
            if key not in value and "default" in prop:
                value[key] = copy.deepcopy(prop["default"])
        for key, item in value.items():
            if key in properties:
                apply_defaults(item, properties[key])
            elif isinstance(schema.get("additionalProperties"), dict):
                apply_defaults(item, schema["additionalProperties"])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            apply_defaults(item, schema["items"])
    return value


def unknown_fields(value: Any, schema: dict[str, Any], path: str = "") -> Iterator[str]:
    """Fields the API server would prune (or refuse under strict field validation): typos in examples."""
    if isinstance(value, dict):
        properties = schema.get("properties")
        extra = schema.get("additionalProperties")
        if properties is None and extra is None:
            return  # metadata: the API server's own schema applies
        for key, item in value.items():
            child = f"{path}.{key}" if path else key
            if properties is not None and key in properties:
                yield from unknown_fields(item, properties[key], child)
            elif isinstance(extra, dict):
                yield from unknown_fields(item, extra, child)
            else:
                yield child
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            yield from unknown_fields(item, schema["items"], f"{path}.{index}")


def error_path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(part) for part in error.absolute_path)


# --- the CRD's identity --------------------------------------------------------------------------


def test_identity_and_names(crd: dict[str, Any]) -> None:
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["kind"] == "CustomResourceDefinition"
    spec = crd["spec"]
    assert crd["metadata"]["name"] == f"{spec['names']['plural']}.{spec['group']}"
    assert spec["group"] == "regcred.dev"
    assert spec["scope"] == "Cluster"
    assert spec["names"] == {
        "kind": "RegistryCredential",
        "listKind": "RegistryCredentialList",
        "plural": "registrycredentials",
        "singular": "registrycredential",
        "shortNames": ["regcred"],
        "categories": ["regcred"],
    }
    version = the_version(crd)
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}


def test_printer_columns(crd: dict[str, Any], schema: dict[str, Any]) -> None:
    columns = the_version(crd)["additionalPrinterColumns"]
    default = [(c["name"], c["type"], c["jsonPath"]) for c in columns[:6]]
    assert default == [
        ("Provider", "string", ".status.provider"),
        ("Ready", "string", '.status.conditions[?(@.type=="Ready")].status'),
        ("Reason", "string", '.status.conditions[?(@.type=="Ready")].reason'),  # why not, at a glance
        ("Expires", "date", ".status.expirationTime"),
        ("Namespaces", "integer", ".status.namespaces.synced"),
        ("Age", "date", ".metadata.creationTimestamp"),
    ]
    assert all(c.get("priority", 0) > 0 for c in columns[6:]), "extra columns belong in -o wide only"
    # Every column points at a field the schema declares (metadata is the API server's).
    for column in columns:
        path = re.sub(r"\[\?\(@\.type==\"\w+\"\)\]", "[]", column["jsonPath"].lstrip("."))
        if not path.startswith("metadata."):
            node_at(schema, path)


# --- examples ------------------------------------------------------------------------------------


def test_every_example_is_listed() -> None:
    assert sorted(p.name for p in EXAMPLES_DIR.glob("*.yaml")) == sorted(EXAMPLE_NAMES)


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_example_is_valid(name: str, schema: dict[str, Any], validator: jsonschema.Draft202012Validator) -> None:
    for example in load_example(name):
        assert example["apiVersion"] == "regcred.dev/v1alpha1"
        assert len(example["metadata"]["name"]) <= 63
        assert "namespace" not in example["metadata"], "RegistryCredential is cluster-scoped"
        errors = [f"{error_path(e)}: {e.message}" for e in validator.iter_errors(example)]
        assert errors == []
        assert list(unknown_fields(example, schema)) == []
        # Still valid once the API server has filled in the defaults.
        assert list(validator.iter_errors(apply_defaults(copy.deepcopy(example), schema))) == []


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_example_explains_itself(name: str) -> None:
    text = (EXAMPLES_DIR / name).read_text(encoding="utf-8")
    header = text.split("apiVersion:", 1)[0]
    assert header.count("\n#") >= 5, "each example opens with a comment header"
    assert re.search(r"(?i)permission|role", header), "the header names the minimal cloud permission"


# --- rejected objects ----------------------------------------------------------------------------

DELETE = object()

BASE: dict[str, Any] = {
    "apiVersion": "regcred.dev/v1alpha1",
    "kind": "RegistryCredential",
    "metadata": {"name": "base"},
    "spec": {
        "provider": {"ecr": {"region": "eu-west-1", "registryIds": ["123456789012"]}},
        "secretName": "regcred",
        "namespaces": {
            "names": ["web"],
            "selector": {"matchExpressions": [{"key": "team", "operator": "In", "values": ["shop"]}]},
        },
        "refresh": {"beforeExpiry": "30m"},
        "remediation": {"strategy": "RolloutRestart", "cooldown": "10m"},
    },
}

STATIC = {"registry": "docker.io", "secretRef": {"namespace": "regcred-system", "name": "hub"}}
TOKEN_REF = {"namespace": "regcred-system", "name": "ghcr-pat"}
ACR_TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
ACR_CLIENT = "3f1c2b9a-6d4e-4c1f-9a0b-2e8d7c6b5a41"
APP = {
    "appId": 1,
    "installationId": 2,
    "privateKeySecretRef": {"namespace": "regcred-system", "name": "gh-app"},
}


def changed(changes: dict[str, Any]) -> dict[str, Any]:
    """BASE with dotted paths set (or removed with DELETE); list indexes are numbers."""
    obj = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        target: Any = obj
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if value is DELETE:
            del target[last]
        else:
            target[last] = copy.deepcopy(value)
    return obj


INVALID = [
    # (id, changes to BASE, where the error is, which keyword rejects it)
    ("no provider", {"spec.provider": DELETE}, "spec", "required"),
    ("empty provider", {"spec.provider": {}}, "spec.provider", "minProperties"),
    ("two providers", {"spec.provider.static": STATIC}, "spec.provider", "maxProperties"),
    ("static without secretRef", {"spec.provider": {"static": {"registry": "docker.io"}}},
     "spec.provider.static", "required"),
    ("secretRef without namespace", {"spec.provider": {"static": {**STATIC, "secretRef": {"name": "hub"}}}},
     "spec.provider.static.secretRef", "required"),
    ("ecr without region", {"spec.provider.ecr.region": DELETE}, "spec.provider.ecr", "oneOf"),
    ("ecr public false without region", {"spec.provider.ecr": {"public": False}}, "spec.provider.ecr", "oneOf"),
    ("ecr public in another region", {"spec.provider.ecr": {"public": True, "region": "eu-west-1"}},
     "spec.provider.ecr", "oneOf"),
    ("ecr public with registryIds", {"spec.provider.ecr.public": True}, "spec.provider.ecr", "oneOf"),
    ("ecr public not a boolean", {"spec.provider.ecr": {"public": "yes"}}, "spec.provider.ecr.public", "type"),
    ("bad region", {"spec.provider.ecr.region": "Europe (Ireland)"}, "spec.provider.ecr.region", "pattern"),
    ("availability zone for region", {"spec.provider.ecr.region": "eu-west-1a"}, "spec.provider.ecr.region",
     "pattern"),
    ("bad registryId", {"spec.provider.ecr.registryIds": ["12345"]}, "spec.provider.ecr.registryIds.0",
     "pattern"),
    ("registryId as a number", {"spec.provider.ecr.registryIds": [123456789012]},
     "spec.provider.ecr.registryIds.0", "type"),
    ("user ARN for assumeRoleArn", {"spec.provider.ecr.assumeRoleArn": "arn:aws:iam::123456789012:user/bob"},
     "spec.provider.ecr.assumeRoleArn", "pattern"),
    ("bad duration", {"spec.refresh.beforeExpiry": "30 minutes"}, "spec.refresh.beforeExpiry", "pattern"),
    ("duration without unit", {"spec.remediation.cooldown": "600"}, "spec.remediation.cooldown", "pattern"),
    ("bad secretName", {"spec.secretName": "Bad_Name"}, "spec.secretName", "pattern"),
    ("no secretName", {"spec.secretName": DELETE}, "spec", "required"),
    ("no namespaces", {"spec.namespaces": DELETE}, "spec", "required"),
    ("namespaces empty", {"spec.namespaces": {}}, "spec.namespaces", "anyOf"),
    ("namespaces only exclude", {"spec.namespaces": {"exclude": ["kube-system"]}}, "spec.namespaces", "anyOf"),
    ("namespaces names empty", {"spec.namespaces": {"names": []}}, "spec.namespaces", "anyOf"),
    ("bad namespace name", {"spec.namespaces.names": ["Web"]}, "spec.namespaces.names.0", "pattern"),
    ("ghcr with both token and app",
     {"spec.provider": {"ghcr": {"username": "bot", "tokenSecretRef": TOKEN_REF, "app": APP}}},
     "spec.provider.ghcr", "oneOf"),
    ("ghcr token without username", {"spec.provider": {"ghcr": {"tokenSecretRef": TOKEN_REF}}},
     "spec.provider.ghcr", "oneOf"),
    ("ghcr with neither token nor app", {"spec.provider": {"ghcr": {"username": "bot"}}},
     "spec.provider.ghcr", "oneOf"),
    ("ghcr appId not a number", {"spec.provider": {"ghcr": {"app": {**APP, "appId": "my-app"}}}},
     "spec.provider.ghcr.app.appId", "type"),
    ("ghcr app without installationId",
     {"spec.provider": {"ghcr": {"app": {k: v for k, v in APP.items() if k != "installationId"}}}},
     "spec.provider.ghcr.app", "required"),
    ("gar without registries", {"spec.provider": {"gar": {"registries": []}}},
     "spec.provider.gar.registries", "minItems"),
    ("gar registry with a scheme", {"spec.provider": {"gar": {"registries": ["https://gcr.io"]}}},
     "spec.provider.gar.registries.0", "pattern"),
    ("gar impersonating a user",
     {"spec.provider": {"gar": {"registries": ["gcr.io"], "impersonateServiceAccount": "me@gmail.com"}}},
     "spec.provider.gar.impersonateServiceAccount", "pattern"),
    ("acr registry that is not a login server", {"spec.provider": {"acr": {"registry": "myregistry.azurecr.com"}}},
     "spec.provider.acr.registry", "pattern"),
    ("acr with two identities",
     {"spec.provider": {"acr": {"registry": "myregistry.azurecr.io", "workloadIdentity": {}, "managedIdentity": {}}}},
     "spec.provider.acr", "not"),
    ("acr service principal without secretRef",
     {"spec.provider": {"acr": {"registry": "myregistry.azurecr.io",
                                "servicePrincipal": {"tenantId": ACR_TENANT, "clientId": ACR_CLIENT}}}},
     "spec.provider.acr.servicePrincipal", "required"),
    ("acr client id that is not a GUID",
     {"spec.provider": {"acr": {"registry": "myregistry.azurecr.io", "managedIdentity": {"clientId": "puller"}}}},
     "spec.provider.acr.managedIdentity.clientId", "pattern"),
    ("bad remediation strategy", {"spec.remediation.strategy": "Restart"}, "spec.remediation.strategy", "enum"),
    ("selector expression with bad operator", {"spec.namespaces.selector.matchExpressions.0.operator": "Equals"},
     "spec.namespaces.selector.matchExpressions.0.operator", "enum"),
    ("In without values", {"spec.namespaces.selector.matchExpressions.0.values": DELETE},
     "spec.namespaces.selector.matchExpressions.0", "anyOf"),
    ("Exists with values", {"spec.namespaces.selector.matchExpressions.0.operator": "Exists"},
     "spec.namespaces.selector.matchExpressions.0", "anyOf"),
    ("selector expression without key", {"spec.namespaces.selector.matchExpressions.0.key": DELETE},
     "spec.namespaces.selector.matchExpressions.0", "required"),
    ("matchLabels value not a string", {"spec.namespaces.selector.matchLabels": {"team": 1}},
     "spec.namespaces.selector.matchLabels.team", "type"),
    ("bad ServiceAccount name", {"spec.serviceAccounts": ["Default"]}, "spec.serviceAccounts.0", "pattern"),
    ("verify without image", {"spec.verify": {}}, "spec.verify", "required"),
    ("argocd url with a scheme", {"spec.argocd": {"url": "oci://registry.example.com/charts"}}, "spec.argocd.url",
     "pattern"),
    ("argocd namespace not a name", {"spec.argocd": {"namespace": "Argo CD"}}, "spec.argocd.namespace", "pattern"),
    ("argocd name not a name", {"spec.argocd": {"name": "Repo_Creds"}}, "spec.argocd.name", "pattern"),
    ("spec missing", {"spec": DELETE}, "", "required"),
]  # fmt: skip


@pytest.mark.parametrize(("changes", "where", "keyword"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_object_is_rejected_for_the_right_reason(
    changes: dict[str, Any], where: str, keyword: str, validator: jsonschema.Draft202012Validator
) -> None:
    errors = list(validator.iter_errors(changed(changes)))
    found = [(error_path(e), e.validator) for e in errors]
    assert (where, keyword) in found, found
    # Nothing else is wrong: every error lies on the way to the expected one (an enum failure
    # also fails the anyOf of the object holding it) or below it.
    for path, _ in found:
        assert where.startswith(path) or path.startswith(where), found


def test_base_object_is_valid(validator: jsonschema.Draft202012Validator) -> None:
    assert list(validator.iter_errors(BASE)) == []


# Valid objects, module-level so that tests/test_crd_server.py sends the same ones to a real API server.
VALID_PROVIDERS: list[tuple[str, dict[str, Any]]] = [
    ("static-harbor",
     {"static": {"registry": "harbor.example.com:8443", "secretRef": {"namespace": "ops", "name": "robot"}}}),
    ("ecr-govcloud",
     {"ecr": {"region": "us-gov-west-1", "assumeRoleArn": "arn:aws-us-gov:iam::123456789012:role/pull"}}),
    ("ecr-china", {"ecr": {"region": "cn-north-1", "assumeRoleArn": "arn:aws-cn:iam::123456789012:role/path/pull"}}),
    ("ecr-public", {"ecr": {"public": True}}),
    ("ecr-public-us-east-1-assumed-role",
     {"ecr": {"public": True, "region": "us-east-1", "assumeRoleArn": "arn:aws:iam::123456789012:role/pull"}}),
    ("ecr-public-false", {"ecr": {"public": False, "region": "eu-west-1", "registryIds": ["123456789012"]}}),
    ("ghcr-pat", {"ghcr": {"username": "bot", "tokenSecretRef": TOKEN_REF}}),
    ("ghcr-app", {"ghcr": {"app": APP}}),
    ("ghcr-app-username", {"ghcr": {"username": "bot", "app": APP}}),
    ("gar", {"gar": {"registries": ["us-central1-docker.pkg.dev", "eu.gcr.io"]}}),
    ("acr-workload-identity-from-the-environment", {"acr": {"registry": "myregistry.azurecr.io"}}),
    ("acr-workload-identity", {"acr": {"registry": "myregistry-abc123def456ghij.azurecr.io", "workloadIdentity": {
        "tenantId": ACR_TENANT, "clientId": ACR_CLIENT}}}),
    ("acr-service-principal", {"acr": {"registry": "contosogov.azurecr.us", "servicePrincipal": {
        "tenantId": "contoso.onmicrosoft.com", "clientId": ACR_CLIENT,
        "secretRef": {"namespace": "ops", "name": "acr-sp"}}}}),
    ("acr-managed-identity-arm-scope", {"acr": {"registry": "contoso.azurecr.cn", "managedIdentity": {},
                                                "scope": "https://management.chinacloudapi.cn/.default"}}),
]  # fmt: skip
GO_DURATIONS = ["30m", "1h30m", "90s", "1.5h", "500ms", "2h0m0s"]
SERVICE_ACCOUNT_FORMS = [["default"], ["*"], [], ["default", "builder"]]


@pytest.mark.parametrize("provider", [p for _, p in VALID_PROVIDERS], ids=[i for i, _ in VALID_PROVIDERS])
def test_valid_provider_variants(provider: dict[str, Any], validator: jsonschema.Draft202012Validator) -> None:
    assert list(validator.iter_errors(changed({"spec.provider": provider}))) == []


@pytest.mark.parametrize("duration", GO_DURATIONS)
def test_go_durations_are_accepted(duration: str, validator: jsonschema.Draft202012Validator) -> None:
    assert list(validator.iter_errors(changed({"spec.refresh.beforeExpiry": duration}))) == []


@pytest.mark.parametrize("accounts", SERVICE_ACCOUNT_FORMS)
def test_service_account_forms(accounts: list[str], validator: jsonschema.Draft202012Validator) -> None:
    assert list(validator.iter_errors(changed({"spec.serviceAccounts": accounts}))) == []


# --- defaults ------------------------------------------------------------------------------------


def test_defaults_the_api_server_fills_in(schema: dict[str, Any]) -> None:
    minimal = changed({"spec.remediation": DELETE, "spec.refresh": DELETE})
    spec = apply_defaults(minimal, schema)["spec"]
    assert spec["serviceAccounts"] == ["default"]
    assert spec["remediation"] == {"strategy": "RolloutRestart", "cooldown": "10m", "dryRun": False}
    assert "refresh" not in spec, "no default: the operator refreshes at about 2/3 of the lifetime"

    ghcr = apply_defaults({"app": copy.deepcopy(APP)}, node_at(schema, "spec.provider.ghcr"))
    assert ghcr["registry"] == "ghcr.io"
    assert ghcr["app"]["apiUrl"] == "https://api.github.com"
    assert ghcr["app"]["privateKeySecretRef"]["key"] == "private-key.pem"
    pat = apply_defaults({"tokenSecretRef": dict(TOKEN_REF)}, node_at(schema, "spec.provider.ghcr"))
    assert pat["tokenSecretRef"]["key"] == "token"
    gar = apply_defaults(
        {"credentialsSecretRef": {"namespace": "a", "name": "b"}}, node_at(schema, "spec.provider.gar")
    )
    assert gar["credentialsSecretRef"]["key"] == "key.json"


def test_every_default_is_valid_where_it_stands(schema: dict[str, Any]) -> None:
    defaults = [(path, node) for path, node, _ in walk(schema) if "default" in node]
    assert len(defaults) >= 8
    for path, node in defaults:
        problems = list(jsonschema.Draft202012Validator(node).iter_errors(node["default"]))
        assert problems == [], path


# --- structure: what kubectl explain shows and what the API server accepts -----------------------


def test_every_property_has_a_description(schema: dict[str, Any]) -> None:
    undocumented = [
        path or "<root>"
        for path, node, in_junctor in walk(schema)
        # The API server allows nothing but `type: object` on the root metadata.
        if not in_junctor and path != "metadata" and len(str(node.get("description", "")).strip()) < 10
    ]
    assert undocumented == []


def test_schema_is_structural(schema: dict[str, Any]) -> None:
    assert schema["properties"]["metadata"] == {"type": "object"}
    problems: list[str] = []
    for path, node, in_junctor in walk(schema):
        where = path or "<root>"
        if unknown := set(node) - ALLOWED_KEYWORDS:
            problems.append(f"{where}: keywords the API server rejects: {sorted(unknown)}")
        if in_junctor:
            if forbidden := set(node) & FORBIDDEN_IN_JUNCTORS:
                problems.append(f"{where}: {sorted(forbidden)} not allowed inside a junctor")
            if any(k.startswith("x-kubernetes-") for k in node):
                problems.append(f"{where}: x-kubernetes-* not allowed inside a junctor")
            continue
        if node.get("type") not in {"object", "array", "string", "integer", "number", "boolean"}:
            problems.append(f"{where}: every node needs a type")
        if "properties" in node and "additionalProperties" in node:
            problems.append(f"{where}: properties and additionalProperties are mutually exclusive")
        if node.get("type") == "array" and not isinstance(node.get("items"), dict):
            problems.append(f"{where}: arrays need an items schema")
        # A property a junctor talks about must exist in the schema itself.
        for junctor in JUNCTORS:
            branches = node.get(junctor, [])
            for branch in branches if isinstance(branches, list) else [branches]:
                for key in branch.get("properties", {}):
                    if key not in node.get("properties", {}):
                        problems.append(f"{where}: {junctor} mentions {key}, which is not a property")
                for key in branch.get("required", []):
                    if key not in node.get("properties", {}):
                        problems.append(f"{where}: {junctor} requires {key}, which is not a property")
        for key in node.get("required", []):
            if key not in node.get("properties", {}):
                problems.append(f"{where}: requires undeclared property {key}")
        list_type = node.get("x-kubernetes-list-type")
        if list_type == "set" and node["items"].get("type") not in {"string", "integer", "number", "boolean"}:
            problems.append(f"{where}: a set holds scalars only")
        if list_type == "map":
            for key in node.get("x-kubernetes-list-map-keys", []):
                if key not in node["items"].get("required", []):
                    problems.append(f"{where}: map key {key} must be required")
        if pattern := node.get("pattern"):
            re.compile(pattern)
            # The API server runs patterns with Go's RE2: no lookaround, no backreferences.
            if re.search(r"\(\?[=!<]|\\[1-9]", pattern):
                problems.append(f"{where}: pattern is not RE2")
    assert problems == []


def test_status_is_documented_and_bounded(schema: dict[str, Any]) -> None:
    status = schema["properties"]["status"]["properties"]
    assert set(status) >= {
        "observedGeneration", "provider", "conditions", "expirationTime", "lastRefreshTime",
        "registries", "namespaces", "failedNamespaces", "remediations", "argocd",
    }  # fmt: skip
    conditions = status["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    condition = conditions["items"]["properties"]
    assert condition["status"]["enum"] == ["True", "False", "Unknown"]
    assert condition["lastTransitionTime"]["format"] == "date-time"
    assert set(status["namespaces"]["properties"]) == {"selected", "synced", "failed", "conflicts"}
    assert status["failedNamespaces"]["maxItems"] == 50
    assert set(status["failedNamespaces"]["items"]["properties"]) == {"namespace", "reason", "message"}
    assert status["remediations"]["maxItems"] == 20
    assert set(status["remediations"]["items"]["properties"]) == {
        "time", "namespace", "kind", "name", "action", "reason", "result",
    }  # fmt: skip
    assert status["remediations"]["items"]["properties"]["result"]["enum"] == ["Pending", "Replaced", "Ineffective"]


# --- CEL rules: present, where expected, with a message for people -------------------------------


def test_cel_rules_are_in_place(schema: dict[str, Any]) -> None:
    rules = {
        path: [r["rule"] for r in node["x-kubernetes-validations"]]
        for path, node, _ in walk(schema)
        if "x-kubernetes-validations" in node
    }
    assert set(rules) == {
        "",
        "spec",
        "spec.provider",
        "spec.provider.ecr",
        "spec.provider.ghcr",
        "spec.provider.acr",
        "spec.namespaces",
        "spec.namespaces.selector.matchExpressions[]",
        "spec.serviceAccounts",
        "spec.refresh.beforeExpiry",
        "spec.remediation.cooldown",
    }
    assert "metadata.name" in rules[""][0]
    assert rules["spec"] == ["!has(self.argocd) || !has(self.argocd.name) || self.argocd.name != self.secretName"]
    assert rules["spec.refresh.beforeExpiry"] == rules["spec.remediation.cooldown"] == [
        "duration(self) <= duration('8760h')"]
    assert all(f"has(self.{p})" in rules["spec.provider"][0] for p in ("ecr", "ghcr", "gar", "acr", "static"))
    assert all(f"has(self.{p})" in rules["spec.provider.acr"][0]
               for p in ("workloadIdentity", "servicePrincipal", "managedIdentity"))
    assert any("tokenSecretRef" in r and "app" in r for r in rules["spec.provider.ghcr"])
    assert any("username" in r for r in rules["spec.provider.ghcr"])
    assert any("region" in r and "public" in r for r in rules["spec.provider.ecr"])
    assert any("registryIds" in r and "public" in r for r in rules["spec.provider.ecr"])
    assert "names" in rules["spec.namespaces"][0]
    assert "selector" in rules["spec.namespaces"][0]
    assert "'*'" in rules["spec.serviceAccounts"][0]
    for _, node, _ in walk(schema):
        for rule in node.get("x-kubernetes-validations", []):
            assert set(rule) <= {"rule", "message", "messageExpression", "reason", "fieldPath", "optionalOldSelf"}
            assert rule["message"].rstrip().endswith("."), rule
            # Balanced brackets: the cheapest syntax check available without a CEL compiler.
            for opening, closing in ("()", "[]"):
                assert rule["rule"].count(opening) == rule["rule"].count(closing), rule


class _StrictLoader(yaml.SafeLoader):
    """Refuses a mapping key given twice: PyYAML keeps the last one silently, Go's YAML decoders may refuse the file."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        keys = [self.construct_object(key, deep=deep) for key, _ in node.value]
        repeated = sorted({str(k) for k in keys if keys.count(k) > 1})
        assert not repeated, f"keys given twice at line {node.start_mark.line + 1}: {repeated}"
        return super().construct_mapping(node, deep=deep)


@pytest.mark.parametrize("path", [CRD_PATH, *sorted(EXAMPLES_DIR.glob("*.yaml"))], ids=lambda p: p.name)
def test_no_key_is_given_twice(path: Path) -> None:
    list(yaml.load_all(path.read_text(encoding="utf-8"), Loader=_StrictLoader))

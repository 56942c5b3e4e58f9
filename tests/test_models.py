"""Parsing a RegistryCredential spec: what users write, and the sentences they get back when it is wrong."""

import datetime

import pytest

from regcred.models import (
    DOCKER_HUB_HOST,
    AcrSpec,
    EcrSpec,
    SecretRef,
    SpecError,
    normalize_registry_host,
    parse_credential,
    parse_duration,
)

STATIC = {"static": {"registry": "docker.io", "secretRef": {"namespace": "regcred-system", "name": "hub"}}}


def spec(**overrides: object) -> dict[str, object]:
    return {"provider": STATIC, "secretName": "regcred", "namespaces": {"names": ["web"]}, **overrides}


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30m", 1800), ("1h30m", 5400), ("90s", 90), ("1.5h", 5400), ("500ms", 0.5)],
)
def test_durations_read_like_kubectl(text: str, seconds: float) -> None:
    assert parse_duration(text, field="x").total_seconds() == seconds


@pytest.mark.parametrize("text", ["30 minutes", "", "m", "10", "1h 30m", "-5m"])
def test_bad_durations_name_the_field(text: str) -> None:
    with pytest.raises(SpecError, match="spec.refresh.beforeExpiry must be a duration"):
        parse_duration(text, field="spec.refresh.beforeExpiry")


@pytest.mark.parametrize("text", ["30000000000h", "8761h", "9" * 63 + "h", "525601m"])
def test_durations_are_bounded_to_a_year(text: str) -> None:
    """The schema's pattern admits any digits: no overflow, a sentence instead."""
    with pytest.raises(SpecError, match="spec.remediation.cooldown must be at most 8760h"):
        parse_duration(text, field="spec.remediation.cooldown")


def test_an_over_long_duration_is_refused_without_echoing_it_whole() -> None:
    with pytest.raises(SpecError) as refused:
        parse_duration("1h" * 1000, field="x")
    assert len(str(refused.value)) < 200


@pytest.mark.parametrize(
    ("registry", "host"),
    [
        ("docker.io", DOCKER_HUB_HOST),
        ("index.docker.io", DOCKER_HUB_HOST),
        ("https://registry-1.docker.io/", DOCKER_HUB_HOST),
        ("harbor.example.com", "harbor.example.com"),
        ("https://registry.local:5000/v2/", "registry.local:5000"),
    ],
)
def test_registry_hosts_are_written_as_docker_clients_look_them_up(registry: str, host: str) -> None:
    assert normalize_registry_host(registry) == host


def test_a_full_spec_parses() -> None:
    parsed = parse_credential("shop", spec(
        namespaces={"names": ["web"], "selector": {"matchLabels": {"team": "shop"}}, "exclude": ["kube-system"]},
        serviceAccounts=["*"],
        refresh={"beforeExpiry": "30m"},
    ))
    assert parsed.provider_name == "static"
    assert parsed.refresh_before_expiry == datetime.timedelta(minutes=30)
    assert parsed.attaches_all_service_accounts
    selection = parsed.namespaces
    assert selection.selects("web", {})
    assert selection.selects("orders", {"team": "shop"})
    assert not selection.selects("kube-system", {"team": "shop"})
    assert not selection.selects("other", {"team": "ops"})


def test_service_accounts_default_to_default() -> None:
    assert parse_credential("shop", spec()).service_accounts == ("default",)


def test_match_expressions_follow_kubernetes_semantics() -> None:
    parsed = parse_credential("shop", spec(namespaces={"selector": {"matchExpressions": [
        {"key": "team", "operator": "In", "values": ["a", "b"]},
        {"key": "env", "operator": "NotIn", "values": ["dev"]},
        {"key": "pci", "operator": "DoesNotExist"},
        {"key": "tier", "operator": "Exists"},
    ]}}))
    selects = parsed.namespaces.selects
    assert selects("x", {"team": "a", "tier": "1"})
    assert selects("x", {"team": "b", "tier": "1", "env": "prod"})
    assert not selects("x", {"team": "a", "tier": "1", "env": "dev"})
    assert not selects("x", {"team": "a", "tier": "1", "pci": "yes"})
    assert not selects("x", {"team": "a"})
    assert not selects("x", {"team": "c", "tier": "1"})


def test_an_empty_selector_selects_every_namespace() -> None:
    parsed = parse_credential("shop", spec(namespaces={"selector": {}, "exclude": ["kube-system"]}))
    assert parsed.namespaces.selects("anything", {})
    assert not parsed.namespaces.selects("kube-system", {})


@pytest.mark.parametrize("region", [{}, {"region": "us-east-1"}], ids=["no-region", "us-east-1"])
def test_ecr_public_mints_in_us_east_1_with_the_usual_aws_credentials(region: dict[str, str]) -> None:
    parsed = parse_credential("public", spec(provider={"ecr": {
        "public": True, **region, "assumeRoleArn": "arn:aws:iam::123456789012:role/pull",
        "credentialsSecretRef": {"namespace": "regcred-system", "name": "aws-keys"}}}))
    assert parsed.provider == EcrSpec(
        region="us-east-1", assume_role_arn="arn:aws:iam::123456789012:role/pull",
        credentials_secret_ref=SecretRef(namespace="regcred-system", name="aws-keys"), public=True)
    assert parsed.source_secrets == {("regcred-system", "aws-keys")}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"provider": {}}, "exactly one of static, ecr, ghcr, gar or acr"),
        ({"provider": {**STATIC, "ecr": {"region": "eu-west-1"}}}, "exactly one of"),
        ({"secretName": "Bad_Name"}, "not a valid Secret name"),
        ({"secretName": None}, "spec.secretName is required"),
        ({"namespaces": {"exclude": ["a"]}}, "needs names, a selector, or both"),
        ({"namespaces": {"selector": {"matchExpressions": [{"key": "t", "operator": "Maybe"}]}}},
         "operator must be In, NotIn, Exists or DoesNotExist"),
        ({"namespaces": {"selector": {"matchExpressions": [{"key": "t", "operator": "In"}]}}},
         "needs at least one value"),
        ({"provider": {"static": {"registry": "docker.io", "secretRef": {"name": "hub"}}}},
         "secretRef needs both namespace and name"),
        ({"provider": {"ecr": {}}}, "region is required"),
        ({"provider": {"ecr": {"public": False}}}, "region is required"),
        ({"provider": {"ecr": {"public": "true"}}}, "public must be true or false"),
        ({"provider": {"ecr": {"public": True, "region": "eu-west-1"}}}, "region must be us-east-1 or unset"),
        ({"provider": {"ecr": {"public": True, "registryIds": ["123456789012"]}}},
         "registryIds cannot be set with public: true"),
        ({"refresh": {"beforeExpiry": "30 minutes"}}, "beforeExpiry must be a duration"),
        ({"remediation": {"strategy": "Reboot"}}, "strategy must be RolloutRestart, DeletePods or None"),
        ({"remediation": {"cooldown": "30000000000h"}}, "cooldown must be at most 8760h"),
        ({"provider": {"ghcr": {"app": {"appId": 1, "installationId": 2, "apiUrl": "http://[",
                                        "privateKeySecretRef": {"namespace": "a", "name": "b"}}}}},
         r"app.apiUrl must be an http\(s\) URL"),
        ({"provider": {"acr": {"registry": "https://myregistry.azurecr.io"}}},
         "registry must be the registry's login server, such as myregistry.azurecr.io"),
        ({"provider": {"acr": {"registry": "myregistry.azurecr.io", "workloadIdentity": {}, "managedIdentity": {}}}},
         "at most one of workloadIdentity, servicePrincipal or managedIdentity"),
        ({"provider": {"acr": {"registry": "myregistry.azurecr.io", "servicePrincipal": {"tenantId": "t"}}}},
         "servicePrincipal needs tenantId, clientId and secretRef"),
        ({"provider": {"acr": {"registry": "myregistry.azurecr.io", "scope": "https://management.azure.com/"}}},
         "scope must be an Entra ID scope"),
    ],
)
def test_invalid_specs_say_what_to_fix(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        parse_credential("shop", spec(**overrides))


def test_acr_defaults_to_workload_identity_and_the_acr_audience() -> None:
    parsed = parse_credential("shop", spec(provider={"acr": {"registry": "MyRegistry.azurecr.io"}}))
    assert parsed.provider == AcrSpec(registry="myregistry.azurecr.io", identity="WorkloadIdentity",
                                      scope="https://containerregistry.azure.net/.default")
    assert parsed.provider_name == "acr"
    assert parsed.source_secrets == frozenset()


def test_an_acr_service_principal_reads_its_secret() -> None:
    parsed = parse_credential("shop", spec(provider={"acr": {"registry": "contoso.azurecr.us", "servicePrincipal": {
        "tenantId": "contoso.onmicrosoft.com", "clientId": "3f1c2b9a-6d4e-4c1f-9a0b-2e8d7c6b5a41",
        "secretRef": {"namespace": "ops", "name": "acr-sp"}}}}))
    assert isinstance(parsed.provider, AcrSpec)
    assert (parsed.provider.identity, parsed.provider.tenant_id) == ("ServicePrincipal", "contoso.onmicrosoft.com")
    assert parsed.source_secrets == frozenset({("ops", "acr-sp")})

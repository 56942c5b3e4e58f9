"""Typed, validated model of a RegistryCredential's spec, parsed once at the top of each handler.

The CRD schema rejects what a schema can; this module rejects the rest (e.g. a malformed label
selector) with a sentence that tells the user what to fix.
"""

from __future__ import annotations

import dataclasses
import datetime
import re
import urllib.parse
from collections.abc import Mapping
from typing import Any

DOCKER_HUB_HOST = "https://index.docker.io/v1/"
DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io", "hub.docker.com"})

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class SpecError(ValueError):
    """The spec cannot work as written. The message is a sentence telling the user what to fix."""

    reason = "InvalidSpec"


MAX_DURATION = datetime.timedelta(days=365)


def parse_duration(text: str, *, field: str) -> datetime.timedelta:
    """Parse a Go-style duration such as ``30m``, ``1h30m`` or ``90s`` (the format kubectl users know)."""
    parts = _DURATION_PART.findall(text[:64])
    if not text or len(text) > 64 or "".join(number + unit for number, unit in parts) != text:
        raise SpecError(f"{field} must be a duration such as 30m, 1h30m or 90s, not {text[:64]!r}.")
    seconds = sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts)
    # The schema admits any digits (30000000000h): bounded here, so no overflow ever leaves a reconciliation.
    if seconds > MAX_DURATION.total_seconds():
        raise SpecError(f"{field} must be at most 8760h (a year), not {text!r}.")
    return datetime.timedelta(seconds=seconds)


def parse_api_url(text: str, *, field: str) -> str:
    """An http(s) base URL the operator can call; checked here so a bad one is a sentence, not a ValueError later."""
    try:
        parsed = urllib.parse.urlsplit(text)
        parsed.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.hostname or len(text) > 2048:
        raise SpecError(f"{field} must be an http(s) URL such as https://github.example.com/api/v3, "
                        f"not {text[:100]!r}.")
    return text


def normalize_registry_host(registry: str) -> str:
    """The key a Docker/containerd client looks up in ``auths`` for this registry.

    Docker Hub is written as ``https://index.docker.io/v1/``, as ``docker login`` writes it; the kubelet
    also accepts it for ``docker.io/...`` images. Other registries are bare ``host[:port]``.
    """
    host = registry.strip().removeprefix("https://").removeprefix("http://").rstrip("/")
    host = host.split("/", 1)[0]
    if not host:
        raise SpecError("the registry host must not be empty.")
    if host.lower() in DOCKER_HUB_ALIASES:
        return DOCKER_HUB_HOST
    return host


@dataclasses.dataclass(frozen=True)
class SecretRef:
    namespace: str
    name: str
    key: str | None = None

    @classmethod
    def parse(cls, raw: Mapping[str, Any], *, field: str, default_key: str | None = None) -> SecretRef:
        namespace, name = raw.get("namespace"), raw.get("name")
        if not namespace or not name:
            raise SpecError(f"{field} needs both namespace and name.")
        return cls(namespace=str(namespace), name=str(name), key=str(raw.get("key") or default_key or "") or None)

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclasses.dataclass(frozen=True)
class StaticSpec:
    registry: str
    secret_ref: SecretRef


@dataclasses.dataclass(frozen=True)
class EcrSpec:
    region: str
    registry_ids: tuple[str, ...] = ()
    assume_role_arn: str | None = None
    credentials_secret_ref: SecretRef | None = None
    public: bool = False  # ECR Public (public.ecr.aws) instead of the private registries


@dataclasses.dataclass(frozen=True)
class GhcrAppSpec:
    app_id: str
    installation_id: str
    private_key_secret_ref: SecretRef
    api_url: str = "https://api.github.com"


@dataclasses.dataclass(frozen=True)
class GhcrSpec:
    registry: str = "ghcr.io"
    username: str | None = None
    token_secret_ref: SecretRef | None = None
    app: GhcrAppSpec | None = None


@dataclasses.dataclass(frozen=True)
class GarSpec:
    registries: tuple[str, ...]
    credentials_secret_ref: SecretRef | None = None
    impersonate_service_account: str | None = None


ACR_IDENTITIES = ("WorkloadIdentity", "ServicePrincipal", "ManagedIdentity")
ACR_SCOPE = "https://containerregistry.azure.net/.default"
# An ACR login server: the registry's name (5-50 letters and digits), with a domain name label hash when the
# registry has one, in Azure's public cloud, Azure Government or Azure operated by 21Vianet (China).
_ACR_LOGIN_SERVER = re.compile(r"^[a-z0-9]{5,50}(-[a-z0-9]{1,32})?\.azurecr\.(io|us|cn)$")


@dataclasses.dataclass(frozen=True)
class AcrSpec:
    registry: str
    identity: str = "WorkloadIdentity"  # one of ACR_IDENTITIES
    tenant_id: str | None = None
    client_id: str | None = None
    credentials_secret_ref: SecretRef | None = None  # ServicePrincipal only
    scope: str = ACR_SCOPE


ProviderSpec = StaticSpec | EcrSpec | GhcrSpec | GarSpec | AcrSpec
# ECR Public's GetAuthorizationToken exists in this region only.
ECR_PUBLIC_REGION = "us-east-1"

_SELECTOR_OPERATORS = frozenset({"In", "NotIn", "Exists", "DoesNotExist"})


@dataclasses.dataclass(frozen=True)
class LabelRequirement:
    key: str
    operator: str  # In | NotIn | Exists | DoesNotExist
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "In":
            return labels.get(self.key) in self.values
        if self.operator == "NotIn":
            return labels.get(self.key) not in self.values
        if self.operator == "Exists":
            return self.key in labels
        return self.key not in labels


@dataclasses.dataclass(frozen=True)
class LabelSelector:
    """A standard Kubernetes LabelSelector; every requirement must hold (matchLabels are `In` of one value)."""

    requirements: tuple[LabelRequirement, ...]

    @classmethod
    def parse(cls, raw: Mapping[str, Any], *, field: str) -> LabelSelector:
        requirements: list[LabelRequirement] = []
        match_labels = raw.get("matchLabels") or {}
        if not isinstance(match_labels, Mapping):
            raise SpecError(f"{field}.matchLabels must be a map of label keys to values.")
        for key, value in match_labels.items():
            requirements.append(LabelRequirement(str(key), "In", frozenset({str(value)})))
        for index, expression in enumerate(raw.get("matchExpressions") or []):
            where = f"{field}.matchExpressions[{index}]"
            key, operator = expression.get("key"), expression.get("operator")
            values = expression.get("values") or []
            if not key:
                raise SpecError(f"{where} needs a key.")
            if operator not in _SELECTOR_OPERATORS:
                raise SpecError(f"{where}.operator must be In, NotIn, Exists or DoesNotExist, not {operator!r}.")
            if operator in ("In", "NotIn") and not values:
                raise SpecError(f"{where} uses {operator}, which needs at least one value.")
            if operator in ("Exists", "DoesNotExist") and values:
                raise SpecError(f"{where} uses {operator}, which takes no values; remove them.")
            requirements.append(LabelRequirement(str(key), operator, frozenset(map(str, values))))
        return cls(tuple(requirements))

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(requirement.matches(labels) for requirement in self.requirements)


@dataclasses.dataclass(frozen=True)
class NamespaceSelection:
    """Target namespaces: (names + those matching the selector) minus exclude."""

    names: frozenset[str] = frozenset()
    selector: LabelSelector | None = None
    exclude: frozenset[str] = frozenset()

    def selects(self, name: str, labels: Mapping[str, str]) -> bool:
        if name in self.exclude:
            return False
        return name in self.names or (self.selector is not None and self.selector.matches(labels))


# An OCI registry prefix as Argo CD matches Helm OCI repositories: host[:port] and an optional path, no scheme.
_OCI_PREFIX = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?(:[0-9]{1,5})?(/[a-z0-9._/-]*)?$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@dataclasses.dataclass(frozen=True)
class ArgoCdSpec:
    """An Argo CD repository credential template (regcred.argocd) written next to the pull Secrets."""

    namespace: str = "argocd"
    url: str | None = None  # None: one template per registry host the token serves
    name: str | None = None  # None: regcred-<credential>


@dataclasses.dataclass(frozen=True)
class CredentialSpec:
    name: str
    provider: ProviderSpec
    secret_name: str
    namespaces: NamespaceSelection
    service_accounts: tuple[str, ...] = ("default",)
    refresh_before_expiry: datetime.timedelta | None = None
    verify_image: str | None = None
    remediation_strategy: str = "RolloutRestart"
    remediation_cooldown: datetime.timedelta = datetime.timedelta(minutes=10)
    remediation_dry_run: bool = False
    argocd: ArgoCdSpec | None = None

    @property
    def provider_name(self) -> str:
        return _PROVIDER_NAMES[type(self.provider)]

    @property
    def attaches_all_service_accounts(self) -> bool:
        return "*" in self.service_accounts

    @property
    def source_secrets(self) -> frozenset[tuple[str, str]]:
        """(namespace, name) of every Secret the provider reads: what the operator watches for changes."""
        provider = self.provider
        refs: list[SecretRef | None]
        if isinstance(provider, StaticSpec):
            refs = [provider.secret_ref]
        elif isinstance(provider, EcrSpec):
            refs = [provider.credentials_secret_ref]
        elif isinstance(provider, GhcrSpec):
            refs = [provider.token_secret_ref, provider.app.private_key_secret_ref if provider.app else None]
        elif isinstance(provider, AcrSpec):
            refs = [provider.credentials_secret_ref]
        else:
            refs = [provider.credentials_secret_ref]
        return frozenset((ref.namespace, ref.name) for ref in refs if ref is not None)


_PROVIDER_NAMES: dict[type[Any], str] = {
    StaticSpec: "static", EcrSpec: "ecr", GhcrSpec: "ghcr", GarSpec: "gar", AcrSpec: "acr",
}


def parse_credential(name: str, spec: Mapping[str, Any]) -> CredentialSpec:
    """Parse and validate a RegistryCredential spec, or raise SpecError saying what to fix."""
    secret_name = spec.get("secretName")
    if not secret_name or not isinstance(secret_name, str):
        raise SpecError("spec.secretName is required: the name of the pull secret to write in each namespace.")
    if len(secret_name) > 253 or not _DNS_SUBDOMAIN.match(secret_name):
        raise SpecError(f"spec.secretName {secret_name!r} is not a valid Secret name (lowercase DNS subdomain).")

    raw_namespaces = spec.get("namespaces") or {}
    selector_raw = raw_namespaces.get("selector")
    selection = NamespaceSelection(
        names=frozenset(raw_namespaces.get("names") or ()),
        # An empty selector ({}) selects every namespace, as everywhere in Kubernetes.
        selector=None if selector_raw is None else LabelSelector.parse(selector_raw, field="spec.namespaces.selector"),
        exclude=frozenset(raw_namespaces.get("exclude") or ()),
    )
    if not selection.names and selection.selector is None:
        raise SpecError("spec.namespaces needs names, a selector, or both, to say where the secret goes.")

    refresh = spec.get("refresh") or {}
    before = refresh.get("beforeExpiry")
    remediation = spec.get("remediation") or {}
    strategy = remediation.get("strategy", "RolloutRestart")
    if strategy not in ("RolloutRestart", "DeletePods", "None"):
        raise SpecError(f"spec.remediation.strategy must be RolloutRestart, DeletePods or None, not {strategy!r}.")
    return CredentialSpec(
        name=name,
        provider=_parse_provider(spec.get("provider") or {}),
        secret_name=secret_name,
        namespaces=selection,
        service_accounts=tuple(spec.get("serviceAccounts", ["default"])),
        refresh_before_expiry=parse_duration(before, field="spec.refresh.beforeExpiry") if before else None,
        verify_image=(spec.get("verify") or {}).get("image") or None,
        remediation_strategy=strategy,
        remediation_cooldown=parse_duration(remediation.get("cooldown", "10m"), field="spec.remediation.cooldown"),
        remediation_dry_run=bool(remediation.get("dryRun", False)),
        argocd=_parse_argocd(spec.get("argocd"), secret_name),
    )


def _parse_argocd(raw: object, secret_name: str) -> ArgoCdSpec | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise SpecError("spec.argocd must be an object such as {namespace: argocd}.")
    namespace = raw.get("namespace") or "argocd"
    if not isinstance(namespace, str) or len(namespace) > 63 or not _DNS_LABEL.match(namespace):
        raise SpecError(f"spec.argocd.namespace must be a namespace name, not {str(namespace)[:100]!r}.")
    url = raw.get("url") or None
    if url is not None and (not isinstance(url, str) or len(url) > 512 or not _OCI_PREFIX.match(url)):
        raise SpecError("spec.argocd.url must be a registry prefix without a scheme, such as "
                        f"123456789012.dkr.ecr.eu-west-1.amazonaws.com/charts, not {str(url)[:100]!r}.")
    name = raw.get("name") or None
    if name is not None and (not isinstance(name, str) or len(name) > 253 or not _DNS_SUBDOMAIN.match(name)):
        raise SpecError(f"spec.argocd.name {str(name)[:100]!r} is not a valid Secret name (lowercase DNS subdomain).")
    if name == secret_name:  # the pull Secret of that namespace, if it is selected, would be overwritten
        raise SpecError("spec.argocd.name must differ from spec.secretName.")
    return ArgoCdSpec(namespace=namespace, url=url.rstrip("/") if url else None, name=name)


FORCE_SYNC_ANNOTATION = "regcred.dev/force-sync"


def force_sync_request(credential: Mapping[str, Any], status: Mapping[str, Any] | None = None) -> str | None:
    """The value of the credential's force-sync annotation when it has not been handled yet, else None.

    Any new value (a timestamp, say) asks for one new mint and a rewrite everywhere; the handled value is
    recorded in ``status.lastForceSync`` (``status``: the newest the caller knows, else the object's own), so
    neither the same value applied again nor a restart mints again.
    """
    annotations = (credential.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(FORCE_SYNC_ANNOTATION)
    if not value:
        return None
    handled = (status if status is not None else credential.get("status") or {}).get("lastForceSync")
    return None if value == handled else str(value)


def provider_key(raw: Mapping[str, Any]) -> str | None:
    """Which of static, ecr, ghcr, gar or acr a `spec.provider` block sets; None unless exactly one."""
    chosen = [key for key in ("static", "ecr", "ghcr", "gar", "acr") if raw.get(key) is not None]
    return chosen[0] if len(chosen) == 1 else None


def _check_ecr_public(block: Mapping[str, Any], where: str) -> None:
    """ECR Public hands out its tokens in one region only, and one token opens every public registry."""
    region = block.get("region")
    if region and region != ECR_PUBLIC_REGION:
        raise SpecError(
            f"{where}.region must be {ECR_PUBLIC_REGION} or unset with public: true, not {str(region)[:40]!r}: "
            f"ECR Public issues its tokens in {ECR_PUBLIC_REGION} only."
        )
    if block.get("registryIds"):
        raise SpecError(
            f"{where}.registryIds cannot be set with public: true: one ECR Public token serves public.ecr.aws "
            "for every account."
        )


def _parse_provider(raw: Mapping[str, Any]) -> ProviderSpec:
    kind = provider_key(raw)
    if kind is None:
        raise SpecError("spec.provider must set exactly one of static, ecr, ghcr, gar or acr.")
    block: Mapping[str, Any] = raw[kind]
    where = f"spec.provider.{kind}"
    if kind == "static":
        if not block.get("registry"):
            raise SpecError(f"{where}.registry is required, e.g. docker.io or harbor.example.com.")
        return StaticSpec(
            registry=normalize_registry_host(block["registry"]),
            secret_ref=SecretRef.parse(block.get("secretRef") or {}, field=f"{where}.secretRef"),
        )
    if kind == "ecr":
        public = block.get("public", False)
        if not isinstance(public, bool):
            raise SpecError(f"{where}.public must be true or false, not {str(public)[:40]!r}.")
        if public:
            _check_ecr_public(block, where)
        elif not block.get("region"):
            raise SpecError(f"{where}.region is required, e.g. eu-west-1.")
        creds = block.get("credentialsSecretRef")
        return EcrSpec(
            region=block.get("region") or ECR_PUBLIC_REGION,
            registry_ids=tuple(str(i) for i in block.get("registryIds") or ()),
            assume_role_arn=block.get("assumeRoleArn") or None,
            credentials_secret_ref=SecretRef.parse(creds, field=f"{where}.credentialsSecretRef") if creds else None,
            public=public,
        )
    if kind == "ghcr":
        app = block.get("app")
        token_ref = block.get("tokenSecretRef")
        if (app is None) == (token_ref is None):
            raise SpecError(f"{where} needs exactly one of tokenSecretRef (a PAT) or app (a GitHub App).")
        return GhcrSpec(
            registry=normalize_registry_host(block.get("registry") or "ghcr.io"),
            username=block.get("username"),
            token_secret_ref=(
                SecretRef.parse(token_ref, field=f"{where}.tokenSecretRef", default_key="token") if token_ref else None
            ),
            app=GhcrAppSpec(
                app_id=str(app.get("appId")),
                installation_id=str(app.get("installationId")),
                private_key_secret_ref=SecretRef.parse(
                    app.get("privateKeySecretRef") or {}, field=f"{where}.app.privateKeySecretRef",
                    default_key="private-key.pem",
                ),
                api_url=parse_api_url(app.get("apiUrl") or "https://api.github.com", field=f"{where}.app.apiUrl"),
            ) if app else None,
        )
    if kind == "acr":
        return _parse_acr(block, where)
    registries = tuple(normalize_registry_host(r) for r in block.get("registries") or ())
    if not registries:
        raise SpecError(f"{where}.registries needs at least one host, e.g. europe-docker.pkg.dev.")
    creds = block.get("credentialsSecretRef")
    return GarSpec(
        registries=registries,
        credentials_secret_ref=(
            SecretRef.parse(creds, field=f"{where}.credentialsSecretRef", default_key="key.json") if creds else None
        ),
        impersonate_service_account=block.get("impersonateServiceAccount") or None,
    )


def _parse_acr(block: Mapping[str, Any], where: str) -> AcrSpec:
    registry = str(block.get("registry") or "").strip().lower()
    if not _ACR_LOGIN_SERVER.match(registry):
        raise SpecError(f"{where}.registry must be the registry's login server, such as myregistry.azurecr.io "
                        f"(or .azurecr.us, .azurecr.cn), not {registry[:100]!r}.")
    chosen = [(identity, block[key]) for identity, key in zip(
        ACR_IDENTITIES, ("workloadIdentity", "servicePrincipal", "managedIdentity"), strict=True)
        if block.get(key) is not None]
    if len(chosen) > 1:
        raise SpecError(f"{where} takes at most one of workloadIdentity, servicePrincipal or managedIdentity.")
    identity, options = chosen[0] if chosen else ("WorkloadIdentity", {})
    creds = options.get("secretRef")
    if identity == "ServicePrincipal" and (not options.get("tenantId") or not options.get("clientId") or not creds):
        raise SpecError(f"{where}.servicePrincipal needs tenantId, clientId and secretRef.")
    scope = block.get("scope") or ACR_SCOPE
    if not isinstance(scope, str) or not scope.startswith("https://") or not scope.endswith("/.default"):
        raise SpecError(f"{where}.scope must be an Entra ID scope such as {ACR_SCOPE}, not {str(scope)[:100]!r}.")
    return AcrSpec(
        registry=registry,
        identity=identity,
        tenant_id=str(options["tenantId"]) if options.get("tenantId") else None,
        client_id=str(options["clientId"]) if options.get("clientId") else None,
        credentials_secret_ref=(
            SecretRef.parse(creds, field=f"{where}.servicePrincipal.secretRef") if creds else None
        ),
        scope=scope,
    )

"""Operator settings, loaded once at startup from environment variables prefixed REGCRED_."""

from __future__ import annotations

import dataclasses
import datetime
import os
from collections.abc import Mapping


def _seconds(env: Mapping[str, str], name: str, default: float) -> datetime.timedelta:
    return datetime.timedelta(seconds=float(env.get(name, default)))


def _own_namespace() -> str | None:
    """The namespace of the pod the operator runs in (in a cluster), from its ServiceAccount mount."""
    try:
        with open(_SERVICE_ACCOUNT_NAMESPACE, encoding="utf-8") as file:
            return file.read(256).strip() or None
    except OSError:
        return None


_SERVICE_ACCOUNT_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


@dataclasses.dataclass(frozen=True)
class Settings:
    # How often every credential is re-read and re-checked even without events (repairs anything a missed
    # watch event left behind; source Secrets beyond max_source_watches are picked up only then).
    resync_interval: datetime.timedelta = datetime.timedelta(minutes=5)
    # Parallel API writes during a fan-out: enough to hide API latency across thousands of namespaces,
    # few enough not to trip API priority and fairness on a busy control plane.
    write_concurrency: int = 16
    # Back-off after a failed mint: first delay, doubled per failure up to the maximum.
    retry_initial: datetime.timedelta = datetime.timedelta(seconds=10)
    retry_max: datetime.timedelta = datetime.timedelta(minutes=5)
    # Events arriving within this window are handled by one reconciliation.
    debounce: datetime.timedelta = datetime.timedelta(seconds=0.5)
    # Overrides for VPC/FIPS endpoints and for tests (boto3's AWS_ENDPOINT_URL_ECR also works).
    ecr_endpoint_url: str | None = None
    sts_endpoint_url: str | None = None
    # ECR Public's API endpoint (ecr with public: true); boto3's AWS_ENDPOINT_URL_ECR_PUBLIC also works.
    ecr_public_endpoint_url: str | None = None
    # Replaces the GitHub API URL of every ghcr credential (an egress proxy; tests).
    github_api_url: str | None = None
    # Base URL of Google's IAM credentials API for impersonation, e.g. https://iamcredentials.googleapis.com
    # (Private Service Connect; tests). Its token-exchange (STS) URL for workload identity federation.
    google_iam_endpoint_url: str | None = None
    google_sts_endpoint_url: str | None = None
    # Where a workload identity federation configuration from a Secret may take its subject token from: file
    # paths, http(s) URL prefixes, "azure", "aws", or "none" (None: the gar provider's documented defaults).
    google_credential_sources: tuple[str, ...] | None = None
    # The Microsoft Entra ID authority of acr credentials (default: azure-identity's, AZURE_AUTHORITY_HOST or
    # https://login.microsoftonline.com): sovereign clouds; tests. And the base URL ACR's token exchange is sent
    # to instead of https://<registry> (an egress proxy; tests).
    azure_authority_host: str | None = None
    acr_exchange_url: str | None = None
    # Registries probed over plain HTTP by spec.verify (a self-hosted registry without TLS; tests).
    insecure_registries: frozenset[str] = frozenset()
    # Hosts (``host`` or ``host:port``) trusted as the token service of any registry, beyond the registry's
    # own host, its domain and the known token services: a Bearer realm elsewhere gets no credentials.
    token_realm_hosts: frozenset[str] = frozenset()
    # At most this many remediations (restarts, pod deletions) per minute across all credentials: a bad
    # rollout of many workloads at once must not turn into a restart storm.
    remediations_per_minute: int = 10
    # What the rate limit holds back waits in a queue (one entry per workload, worked through oldest first as
    # the window frees); beyond this many, more are not queued (logged) and are found by a sweep once half have gone.
    remediation_backlog_size: int = 10_000
    # Serve only these namespaces (empty: the whole cluster). RegistryCredentials and Namespaces are still
    # read cluster-wide; Secrets, ServiceAccounts and Pods only in these, so the RBAC can be Roles.
    watch_namespaces: tuple[str, ...] = ()
    # Diagnosis and remediation of pods stuck pulling; off: no pod watch, no workload is ever touched.
    remediation_enabled: bool = True
    # kopf peering: replicas share one peering object and only the highest priority acts. Empty name:
    # standalone (one replica). Priority: random per process unless set, so identical replicas never tie.
    peering_name: str = ""
    peering_priority: int | None = None
    # How long a replica's peering entry lives without a keep-alive: how soon a standby takes over
    # from a replica that died without saying goodbye.
    peering_lifetime_seconds: int = 60
    # At most this many source Secrets (referenced by credentials) are watched, one watch each; changes to
    # any others are applied at the next resync.
    max_source_watches: int = 100
    # Prometheus metrics on this port (0: off) and address.
    metrics_port: int = 0
    metrics_address: str = "0.0.0.0"  # noqa: S104 - Prometheus scrapes the pod's IP
    # Seconds to wait for the API server's answer to one call (connecting: 10 s): then the call counts as
    # failed and is retried, so that a half-open connection cannot stall a credential for good.
    api_read_timeout: float = 30.0
    # Namespace of the operator's own Events about cluster-scoped credentials (what kubectl shows).
    events_namespace: str = "default"
    # The operator's own namespace, where it keeps each credential's minted token (see regcred.store):
    # only the operator and the cluster's admins may write Secrets there.
    state_namespace: str = "regcred-system"

    @property
    def api_timeout(self) -> tuple[float, float]:
        """(connect, read) seconds for each API call."""
        return min(10.0, self.api_read_timeout), self.api_read_timeout

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        defaults = cls()
        return cls(
            resync_interval=_seconds(env, "REGCRED_RESYNC_SECONDS", defaults.resync_interval.total_seconds()),
            write_concurrency=int(env.get("REGCRED_WRITE_CONCURRENCY", defaults.write_concurrency)),
            retry_initial=_seconds(env, "REGCRED_RETRY_INITIAL_SECONDS", defaults.retry_initial.total_seconds()),
            retry_max=_seconds(env, "REGCRED_RETRY_MAX_SECONDS", defaults.retry_max.total_seconds()),
            debounce=_seconds(env, "REGCRED_DEBOUNCE_SECONDS", defaults.debounce.total_seconds()),
            ecr_endpoint_url=env.get("REGCRED_ECR_ENDPOINT_URL") or None,
            sts_endpoint_url=env.get("REGCRED_STS_ENDPOINT_URL") or None,
            ecr_public_endpoint_url=env.get("REGCRED_ECR_PUBLIC_ENDPOINT_URL") or None,
            events_namespace=env.get("REGCRED_EVENTS_NAMESPACE", defaults.events_namespace),
            api_read_timeout=float(env.get("REGCRED_API_TIMEOUT_SECONDS", defaults.api_read_timeout)),
            state_namespace=env.get("REGCRED_STATE_NAMESPACE") or _own_namespace() or defaults.state_namespace,
            github_api_url=env.get("REGCRED_GITHUB_API_URL") or None,
            watch_namespaces=tuple(n.strip() for n in env.get("REGCRED_WATCH_NAMESPACES", "").split(",") if n.strip()),
            remediation_enabled=env.get("REGCRED_REMEDIATION", "true").strip().lower() not in ("false", "0", "no"),
            # `regcred run` takes part in peering by default; kopf runs standalone when no peering object exists.
            peering_name=env.get("REGCRED_PEERING_NAME", "regcred-operator"),
            peering_priority=int(env["REGCRED_PEERING_PRIORITY"]) if env.get("REGCRED_PEERING_PRIORITY") else None,
            peering_lifetime_seconds=int(env.get("REGCRED_PEERING_LIFETIME_SECONDS", 60)),
            max_source_watches=int(env.get("REGCRED_MAX_SOURCE_WATCHES", defaults.max_source_watches)),
            metrics_port=int(env.get("REGCRED_METRICS_PORT", 9090)),
            metrics_address=env.get("REGCRED_METRICS_ADDRESS", "0.0.0.0"),  # noqa: S104
            remediations_per_minute=int(env.get("REGCRED_REMEDIATIONS_PER_MINUTE", defaults.remediations_per_minute)),
            remediation_backlog_size=int(env.get("REGCRED_REMEDIATION_BACKLOG_SIZE",
                                                 defaults.remediation_backlog_size)),
            google_iam_endpoint_url=env.get("REGCRED_GOOGLE_IAM_ENDPOINT_URL") or None,
            google_sts_endpoint_url=env.get("REGCRED_GOOGLE_STS_ENDPOINT_URL") or None,
            google_credential_sources=tuple(
                entry.strip() for entry in env["REGCRED_GOOGLE_CREDENTIAL_SOURCES"].split(",") if entry.strip()
            ) if env.get("REGCRED_GOOGLE_CREDENTIAL_SOURCES", "").strip() else None,
            azure_authority_host=env.get("REGCRED_AZURE_AUTHORITY_HOST") or None,
            acr_exchange_url=env.get("REGCRED_ACR_EXCHANGE_URL") or None,
            insecure_registries=frozenset(h.strip() for h in env.get("REGCRED_INSECURE_REGISTRIES", "").split(",")
                                          if h.strip()),
            token_realm_hosts=frozenset(h.strip().lower() for h in env.get("REGCRED_TOKEN_REALM_HOSTS", "").split(",")
                                        if h.strip()),
        )

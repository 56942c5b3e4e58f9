"""Prometheus metrics, with the de-facto client library. Names follow Prometheus conventions.

`deploy/alerts/regcred-operator-rules.yaml` alerts on these; keep the names in step with it.
"""

from __future__ import annotations

import contextlib

import prometheus_client as prom

CREDENTIAL_READY = prom.Gauge(
    "regcred_credential_ready", "1 when the credential's Ready condition is True, else 0.", ["credential"])
TOKEN_EXPIRY = prom.Gauge(
    "regcred_token_expiry_timestamp_seconds", "When the written token expires (Unix time); absent without expiry.",
    ["credential"])
REFRESHES = prom.Counter(
    "regcred_refresh_total", "Attempts to mint (or read) a credential's token, by result.", ["credential", "result"])
SECRETS_WRITTEN = prom.Counter(
    "regcred_secrets_written_total",
    "Secrets created, patched or deleted: pull Secrets and Argo CD repository credential templates.",
    ["credential", "verb"])
NAMESPACES = prom.Gauge(
    "regcred_namespaces", "Namespaces of a credential by state (selected, synced, failed, conflicts).",
    ["credential", "state"])
REMEDIATIONS = prom.Counter(
    "regcred_remediations_total", "Workloads restarted or pods deleted, by action and diagnosed cause.",
    ["credential", "action", "cause"])
REMEDIATIONS_PENDING = prom.Gauge(
    "regcred_remediations_pending", "Workloads whose remediation waits for the global rate limit.", ["credential"])
PULL_FAILURES = prom.Counter(
    "regcred_pull_failures_total", "Pods stuck pulling from a credential's registries, by diagnosed cause.",
    ["credential", "cause"])

REMEDIATIONS_INEFFECTIVE = prom.Counter(
    "regcred_remediations_ineffective_total",
    "Rollouts after which the stuck pod they were for was still there (see the RemediationIneffective Events).",
    ["credential"])
CREDENTIAL_REJECTED = prom.Gauge(
    "regcred_credential_rejected",
    "1 while pods fail with the credential in place and a probe with it is refused too (a bad credential), else 0.",
    ["credential"])


def forget(credential: str) -> None:
    """Drop a deleted credential's gauges, so that no alert fires for what no longer exists."""
    for gauge in (CREDENTIAL_READY, TOKEN_EXPIRY, CREDENTIAL_REJECTED, REMEDIATIONS_PENDING):
        with contextlib.suppress(KeyError):
            gauge.remove(credential)
    for state in ("selected", "synced", "failed", "conflicts"):
        with contextlib.suppress(KeyError):
            NAMESPACES.remove(credential, state)


def serve(port: int, address: str = "0.0.0.0") -> object:  # noqa: S104 - scraped from other pods
    """Serve /metrics in a background thread; returns what stops it (`.shutdown()`)."""
    server, _thread = prom.start_http_server(port, addr=address)
    return server

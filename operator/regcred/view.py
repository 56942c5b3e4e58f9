"""What the operator knows of namespaces and ServiceAccounts between resyncs, fed by the watches it has anyway.

Why: a namespace that no credential selects, or a ServiceAccount edit that changes no attachment, must cost
no request; and a credential woken by an event must not re-read every namespace and ServiceAccount of the
cluster. The view answers "which credentials does this event concern" (so only those are woken) and gives
an event-driven reconciliation the namespaces and the ServiceAccounts that need a write. A periodic resync
still LISTs everything (level-based safety: a missed event is repaired within the resync period).

Only what decisions need is kept: a namespace's labels and whether it is terminating; a ServiceAccount's
pull-secret names and the operator's attached-secrets record. Thread-safe: kopf's event loop writes, the
reconciliation threads read.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from regcred.fanout import ATTACHED_ANNOTATION, attach_update, attached_by, wants_attachment
from regcred.models import CredentialSpec


@dataclasses.dataclass(frozen=True)
class NamespaceInfo:
    name: str
    labels: Mapping[str, str]
    terminating: bool

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> NamespaceInfo:
        metadata = body.get("metadata") or {}
        labels = {str(k): str(v) for k, v in (metadata.get("labels") or {}).items()}
        return cls(str(metadata.get("name", "")), labels, (body.get("status") or {}).get("phase") == "Terminating")


@dataclasses.dataclass(frozen=True)
class AccountInfo:
    namespace: str
    name: str
    pull_secrets: tuple[str, ...]  # imagePullSecrets names, in order
    attached: str | None  # the operator's attached-secrets annotation, as found (parsed by fanout only)

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> AccountInfo:
        metadata = body.get("metadata") or {}
        entries = body.get("imagePullSecrets") or []
        names = tuple(str(e.get("name")) for e in entries if isinstance(e, Mapping) and e.get("name"))
        raw = (metadata.get("annotations") or {}).get(ATTACHED_ANNOTATION)
        return cls(str(metadata.get("namespace", "")), str(metadata.get("name", "")), names,
                   raw if isinstance(raw, str) else None)

    def needs(self, spec: CredentialSpec, served: bool) -> bool:
        """Whether this credential must change this account (``served``: it serves the account's namespace):
        the one rule of fanout.attach_update, applied to what the view holds."""
        wanted = served and wants_attachment(spec.service_accounts, self.name)
        body = {"metadata": {"name": self.name, "namespace": self.namespace,
                             "annotations": {ATTACHED_ANNOTATION: self.attached} if self.attached is not None else {}},
                "imagePullSecrets": [{"name": name} for name in self.pull_secrets]}
        if not wanted and spec.name not in attached_by(body):
            return False
        return attach_update(body, spec.name, spec.secret_name if wanted else None) is not None


def selected(spec: CredentialSpec, namespace: NamespaceInfo, served_namespaces: tuple[str, ...]) -> bool:
    """Whether a credential's Secret belongs in this namespace now (the one rule, for the view and the pass)."""
    return (not namespace.terminating
            and (not served_namespaces or namespace.name in served_namespaces)
            and spec.namespaces.selects(namespace.name, namespace.labels))


class ClusterView:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._namespaces: dict[str, NamespaceInfo] = {}
        self._accounts: dict[tuple[str, str], AccountInfo] = {}
        # Every event gets the next number; each key remembers its last one (deletions too), so that a full
        # LIST, which may be older than an event that came while it was on its way, never undoes that event.
        self._sequence = 0
        self._namespace_seen: dict[str, int] = {}
        self._account_seen: dict[tuple[str, str], int] = {}

    # -- fed by watch events, and by the full LISTs of resyncs ------------------------------------------------

    def mark(self) -> int:
        """Taken before a full LIST: what the LIST cannot know about is what happened after it."""
        with self._lock:
            return self._sequence

    def namespace_event(self, body: Mapping[str, Any], deleted: bool) -> NamespaceInfo:
        """Record a namespace event; returns what it says of the namespace."""
        info = NamespaceInfo.of(body)
        with self._lock:
            self._sequence += 1
            self._namespace_seen[info.name] = self._sequence
            if deleted:
                self._namespaces.pop(info.name, None)
            else:
                self._namespaces[info.name] = info
        return info

    def account_event(self, body: Mapping[str, Any], deleted: bool) -> AccountInfo:
        info = AccountInfo.of(body)
        key = (info.namespace, info.name)
        with self._lock:
            self._sequence += 1
            self._account_seen[key] = self._sequence
            if deleted:
                self._accounts.pop(key, None)
            else:
                self._accounts[key] = info
        return info

    def replace_namespaces(self, items: Iterable[Mapping[str, Any]], mark: int) -> None:
        """A full LIST of namespaces, started at ``mark``: it replaces what no later event has told."""
        listed = {info.name: info for info in map(NamespaceInfo.of, items)}
        with self._lock:
            _replace(self._namespaces, listed, self._namespace_seen, mark)

    def replace_accounts(self, items: Iterable[Mapping[str, Any]], mark: int) -> None:
        listed = {(info.namespace, info.name): info for info in map(AccountInfo.of, items)}
        with self._lock:
            _replace(self._accounts, listed, self._account_seen, mark)

    # -- read by reconciliations ---------------------------------------------------------------------------------

    def namespaces(self) -> list[NamespaceInfo]:
        with self._lock:
            return list(self._namespaces.values())

    def accounts_needing(self, spec: CredentialSpec, targets: frozenset[str]) -> list[tuple[str, str]]:
        """(namespace, name) of the ServiceAccounts this credential must change, as far as the view knows."""
        with self._lock:
            accounts = list(self._accounts.values())
        return [(a.namespace, a.name) for a in accounts if a.needs(spec, a.namespace in targets)]

    def clear(self) -> None:
        """Forget everything (a replica that pauses: its watches stop, so what it knew goes stale)."""
        with self._lock:
            self._namespaces.clear()
            self._accounts.clear()
            self._namespace_seen.clear()
            self._account_seen.clear()


def _replace(known: dict[Any, Any], listed: Mapping[Any, Any], seen: dict[Any, int], mark: int) -> None:
    for key in [key for key in known if key not in listed and seen.get(key, 0) <= mark]:
        del known[key]  # gone, and no event since the LIST started says otherwise
    for key, info in listed.items():
        if seen.get(key, 0) <= mark:
            known[key] = info


# (credential name, its spec, the namespaces it serves now) for each credential being served.
Served = Iterable[tuple[str, CredentialSpec, frozenset[str]]]


def concerned_by_namespace(served: Served, namespace: NamespaceInfo, deleted: bool,
                           watch_namespaces: tuple[str, ...]) -> list[str]:
    """The credentials a namespace event changes something for: it enters or leaves their selection."""
    return [name for name, spec, namespaces in served
            if (not deleted and selected(spec, namespace, watch_namespaces)) != (namespace.name in namespaces)]


def concerned_by_account(served: Served, account: AccountInfo) -> list[str]:
    """The credentials that must change this ServiceAccount (not those whose entry it already carries right:
    the operator's own writes wake nobody)."""
    return [name for name, spec, namespaces in served if account.needs(spec, account.namespace in namespaces)]


__all__ = ["AccountInfo", "ClusterView", "NamespaceInfo", "concerned_by_account", "concerned_by_namespace",
           "selected"]

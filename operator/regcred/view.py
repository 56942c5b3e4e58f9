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
import datetime
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from regcred.fanout import ATTACHED_ANNOTATION, attach_update, wants_attachment
from regcred.models import CredentialSpec, SpecError, parse_credential


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
    resource_version: str = ""  # a write from this record is guarded by it (a stale record costs a 409, no more)

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> AccountInfo:
        metadata = body.get("metadata") or {}
        entries = body.get("imagePullSecrets")
        names = tuple(str(e.get("name")) for e in entries if isinstance(e, Mapping) and e.get("name")) \
            if isinstance(entries, list) else ()
        raw = (metadata.get("annotations") or {}).get(ATTACHED_ANNOTATION)
        version = metadata.get("resourceVersion")
        return cls(str(metadata.get("namespace", "")), str(metadata.get("name", "")), names,
                   raw if isinstance(raw, str) else None, version if isinstance(version, str) else "")

    def body(self) -> dict[str, Any]:
        """What of the account the attachment rule reads and writes, in the API's shape (for fanout's rule)."""
        return {"metadata": {"name": self.name, "namespace": self.namespace, "resourceVersion": self.resource_version,
                             "annotations": {ATTACHED_ANNOTATION: self.attached} if self.attached is not None else {}},
                "imagePullSecrets": [{"name": name} for name in self.pull_secrets]}

    def wanted_secret(self, spec: CredentialSpec, served: bool) -> str | None:
        """The Secret this credential wants listed on this account (``served``: it serves the namespace)."""
        return spec.secret_name if served and wants_attachment(spec.service_accounts, self.name) else None

    def needs(self, spec: CredentialSpec, served: bool) -> bool:
        """Whether this credential must change this account: the one rule of fanout.attach_update, applied to
        what the view holds."""
        return self.needs_secret(spec.name, self.wanted_secret(spec, served))

    def needs_secret(self, credential: str, secret_name: str | None) -> bool:
        if secret_name is None and self.attached is None:
            return False  # nothing of ours on it, nothing wanted: the common case, without parsing
        return attach_update(self.body(), credential, secret_name) is not None


@dataclasses.dataclass(frozen=True)
class CredentialInfo:
    """A RegistryCredential as the sharing of pull Secrets needs it (regcred.shared): its parsed spec, or None
    when the spec is invalid or the credential is being deleted (it contributes to no Secret then)."""

    name: str
    spec: CredentialSpec | None

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> CredentialInfo:
        metadata = body.get("metadata") or {}
        name = str(metadata.get("name", ""))
        if metadata.get("deletionTimestamp"):
            return cls(name, None)
        try:
            return cls(name, parse_credential(name, body.get("spec") or {}))
        except SpecError:
            return cls(name, None)


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
        self._credentials: dict[str, CredentialInfo] = {}
        # Every event gets the next number; each key remembers its last one (deletions too), so that a full
        # LIST, which may be older than an event that came while it was on its way, never undoes that event.
        self._sequence = 0
        self._namespace_seen: dict[str, int] = {}
        self._account_seen: dict[tuple[str, str], int] = {}
        self._credential_seen: dict[str, int] = {}
        # When the last full LIST of each started: one LIST serves every credential's full pass for a while.
        self._listed_at: dict[str, datetime.datetime] = {}
        self._list_locks = {kind: threading.Lock() for kind in ("namespaces", "serviceaccounts", "credentials")}

    # -- fed by watch events, and by the full LISTs of resyncs ------------------------------------------------

    def mark(self) -> int:
        """Taken before a full LIST: what the LIST cannot know about is what happened after it."""
        with self._lock:
            return self._sequence

    def namespace_event(self, body: Mapping[str, Any], deleted: bool) -> NamespaceInfo:
        """Record a namespace event; returns what it says of the namespace."""
        info = NamespaceInfo.of(body)
        self._record(self._namespaces, self._namespace_seen, info.name, info, deleted)
        return info

    def account_event(self, body: Mapping[str, Any], deleted: bool) -> AccountInfo:
        """Record a ServiceAccount as an event or a write's answer tells it; returns what the view then holds.

        The answer to the operator's own write comes before the watch event of an earlier write of that account:
        the older version must not replace the newer one (a cleanup would miss an entry the view no longer
        shows). etcd's resourceVersions grow with every write, so they are compared when both are numbers."""
        info = AccountInfo.of(body)
        key = (info.namespace, info.name)
        if not deleted:
            with self._lock:
                known = self._accounts.get(key)
            if known is not None and _older(info.resource_version, known.resource_version):
                return known
        self._record(self._accounts, self._account_seen, key, info, deleted)
        return info

    def credential_event(self, body: Mapping[str, Any], deleted: bool) -> CredentialInfo:
        info = CredentialInfo.of(body)
        self._record(self._credentials, self._credential_seen, info.name, info, deleted)
        return info

    def _record(self, known: dict[Any, Any], seen: dict[Any, int], key: Any, info: Any, deleted: bool) -> None:
        with self._lock:
            self._sequence += 1
            seen[key] = self._sequence
            if deleted:
                known.pop(key, None)
            else:
                known[key] = info

    def replace_namespaces(self, items: Iterable[Mapping[str, Any]], mark: int) -> None:
        """A full LIST of namespaces, started at ``mark``: it replaces what no later event has told."""
        listed = {info.name: info for info in map(NamespaceInfo.of, items)}  # page by page: never all bodies
        with self._lock:
            _replace(self._namespaces, listed, self._namespace_seen, mark)

    def replace_accounts(self, items: Iterable[Mapping[str, Any]], mark: int) -> None:
        listed = {(info.namespace, info.name): info for info in map(AccountInfo.of, items)}
        with self._lock:
            _replace(self._accounts, listed, self._account_seen, mark)

    def replace_credentials(self, items: Iterable[Mapping[str, Any]], mark: int) -> None:
        listed = {info.name: info for info in map(CredentialInfo.of, items)}
        with self._lock:
            _replace(self._credentials, listed, self._credential_seen, mark)

    def refresh(self, kind: str, lister: Callable[[], Iterable[Mapping[str, Any]]], now: datetime.datetime,
                max_age: datetime.timedelta) -> bool:
        """Replace ``kind`` ("namespaces", "serviceaccounts" or "credentials") from a full LIST, unless a LIST that
        started within ``max_age`` already did (watch events have kept the view current since). One LIST at a time:
        credentials whose full passes come together wait for it and share it, instead of each holding every
        object decoded at once. True when this call LISTed."""
        replace = {"namespaces": self.replace_namespaces, "serviceaccounts": self.replace_accounts,
                   "credentials": self.replace_credentials}[kind]
        with self._list_locks[kind]:
            with self._lock:
                listed_at = self._listed_at.get(kind)
            if listed_at is not None and now - max_age < listed_at <= now:
                return False
            mark = self.mark()
            replace(lister(), mark)
            with self._lock:
                self._listed_at[kind] = now
            return True

    # -- read by reconciliations ---------------------------------------------------------------------------------

    def namespaces(self) -> list[NamespaceInfo]:
        with self._lock:
            return list(self._namespaces.values())

    def namespace(self, name: str) -> NamespaceInfo | None:
        with self._lock:
            return self._namespaces.get(name)

    def sharing(self, secret_name: str) -> list[CredentialSpec]:
        """The valid credentials whose pull Secret has this name, by name (regcred.shared)."""
        with self._lock:
            infos = list(self._credentials.values())
        return sorted((i.spec for i in infos if i.spec is not None and i.spec.secret_name == secret_name),
                      key=lambda spec: spec.name)

    def account(self, namespace: str, name: str) -> AccountInfo | None:
        with self._lock:
            return self._accounts.get((namespace, name))

    def accounts_attached_to(self, credential: str) -> list[AccountInfo]:
        """The accounts carrying an entry of this credential, as far as the view knows."""
        with self._lock:
            accounts = list(self._accounts.values())
        return [a for a in accounts if a.attached is not None and a.needs_secret(credential, None)]

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
            self._credentials.clear()
            self._namespace_seen.clear()
            self._account_seen.clear()
            self._credential_seen.clear()
            self._listed_at.clear()


def _older(version: str, than: str) -> bool:
    return version.isdigit() and than.isdigit() and int(version) < int(than)


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


__all__ = ["AccountInfo", "ClusterView", "CredentialInfo", "NamespaceInfo", "concerned_by_account",
           "concerned_by_namespace", "selected"]

"""ServiceAccounts as a unit: one write per account brings every credential's entry up to date at once.

Why: with several credentials attaching to the same accounts (`default` in every namespace, typically), each
credential writing its own entry means one write per credential per account, and the credentials race each
other into 409 Conflicts. Here a write of an account by one credential also adds the entries of the other
credentials whose Secret is already in place in that namespace (they `offer` where it is), and writes of the
same account are serialized, so the next credential finds its entry there and writes nothing.

Writes are merge patches computed from the view (regcred.view) and guarded by the account's resourceVersion:
a stale view costs a 409 and one GET, never a lost entry of someone else. Entries are only added on behalf of
other credentials, never removed: a credential's own pass (or its cleanup) removes its entries.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from regcred.fanout import ATTACHED_ANNOTATION, attach_update, wants_attachment
from regcred.kube import KubeApi, KubeError
from regcred.models import CredentialSpec
from regcred.status import FailedNamespace
from regcred.view import AccountInfo, ClusterView
from regcred.writer import failure_reason

logger = logging.getLogger("regcred")

_CONFLICT_RETRIES = 5
# The Secret a credential wants listed on an account (None: no entry of it).
Wanted = Callable[[AccountInfo], str | None]


@dataclasses.dataclass
class Offer:
    """Where a credential's Secret is in place, and which accounts of those namespaces want it (guarded by the
    writer's lock: Secret writes add namespaces from the pool's threads)."""

    secret_name: str
    service_accounts: tuple[str, ...]
    namespaces: set[str]


class AccountWriter:
    def __init__(self, kube: KubeApi, view: ClusterView, pool: concurrent.futures.Executor) -> None:
        self.kube = kube
        self.view = view
        self.pool = pool
        self._offers: dict[str, Offer] = {}
        self._lock = threading.Lock()
        self._account_locks: dict[tuple[str, str], tuple[threading.Lock, int]] = {}

    # -- where each credential's Secret is ------------------------------------------------------------

    def narrow(self, spec: CredentialSpec, namespaces: Iterable[str]) -> None:
        """Before a credential changes its Secrets: offered only where its Secret stays in place (``namespaces``),
        not at all when its Secret's name or accounts changed, so that no other credential's write adds an entry
        for a Secret being deleted or not yet written."""
        with self._lock:
            offered = self._offers.get(spec.name)
            if offered is None or (offered.secret_name, offered.service_accounts) != (spec.secret_name,
                                                                                      spec.service_accounts):
                offered = self._offers[spec.name] = Offer(spec.secret_name, spec.service_accounts, set())
            offered.namespaces = set(namespaces)

    def offer(self, credential: str, namespace: str) -> None:
        """The credential's Secret was just written in this namespace (called as each write succeeds, so that
        the account writes of credentials whose Secrets are written meanwhile already carry its entry)."""
        with self._lock:
            offered = self._offers.get(credential)
            if offered is not None:
                offered.namespaces.add(namespace)

    def withdraw(self, credential: str) -> None:
        with self._lock:
            self._offers.pop(credential, None)

    # -- writes ------------------------------------------------------------------------------------

    def sync(self, spec: CredentialSpec, targets: frozenset[str], *, leave: frozenset[str] = frozenset()
             ) -> tuple[list[FailedNamespace], int]:
        """Attach where wanted, detach where not (except in the namespaces to ``leave`` alone), for the accounts
        the view says need it: the failures, and how many accounts were changed."""
        keys = [key for key in self.view.accounts_needing(spec, targets | leave) if key[0] not in leave]
        return self._write_all(keys, spec.name, lambda info: info.wanted_secret(spec, info.namespace in targets))

    def detach_everywhere(self, credential: str) -> tuple[list[FailedNamespace], int]:
        """Remove the credential's entries from every account (its cleanup)."""
        keys = [(a.namespace, a.name) for a in self.view.accounts_attached_to(credential)]
        return self._write_all(keys, credential, lambda _info: None)

    def _write_all(self, keys: list[tuple[str, str]], credential: str,
                   wanted: Wanted) -> tuple[list[FailedNamespace], int]:
        failed: list[FailedNamespace] = []
        changed = 0
        for failure, wrote in self.pool.map(lambda key: self._write(key, credential, wanted), keys):
            if failure is not None:
                failed.append(failure)
            changed += wrote
        return failed, changed

    def _write(self, key: tuple[str, str], credential: str, wanted: Wanted) -> tuple[FailedNamespace | None, bool]:
        """One account, one write at a time: read what the view holds (the write before ours is in it), write
        only if this credential still needs a change, and then with every offered entry at once."""
        namespace, name = key
        with self._serialized(key):
            for _ in range(_CONFLICT_RETRIES):
                info = self.view.account(namespace, name)
                if info is None:
                    return None, False  # deleted meanwhile
                secret_name = wanted(info)
                if not info.needs_secret(credential, secret_name):
                    return None, False  # a write for another credential brought it up to date
                try:
                    result = self.kube.patch_service_account(namespace, name,
                                                             self._patch(info, credential, secret_name))
                    self.view.account_event(result, deleted=False)
                    return None, True
                except KubeError as error:
                    if error.not_found:
                        return None, False
                    if not error.conflict:
                        return FailedNamespace(namespace, failure_reason(error), f"Could not update ServiceAccount "
                                               f"{namespace}/{name}: {error.reason or error.status}.",
                                               retry_after=error.retry_after), False
                try:  # the view was stale: read the account again
                    self.view.account_event(self.kube.read_service_account(namespace, name), deleted=False)
                except KubeError as reread_error:
                    if reread_error.not_found:
                        return None, False
                    return FailedNamespace(namespace, failure_reason(reread_error), f"Could not read ServiceAccount "
                                           f"{namespace}/{name}: {reread_error.reason or reread_error.status}.",
                                           retry_after=reread_error.retry_after), False
            return FailedNamespace(namespace, "Conflict",
                                   f"ServiceAccount {namespace}/{name} kept changing under us; will retry."), False

    def _patch(self, info: AccountInfo, credential: str, secret_name: str | None) -> dict[str, Any]:
        body = info.body()
        updated = attach_update(body, credential, secret_name) or body
        with self._lock:
            others = [(other, offer.secret_name) for other, offer in self._offers.items() if other != credential
                      and info.namespace in offer.namespaces and wants_attachment(offer.service_accounts, info.name)]
        for other, secret_name in others:
            updated = attach_update(updated, other, secret_name) or updated
        annotations = updated["metadata"].get("annotations") or {}
        # imagePullSecrets has no merge key: the list is written whole; the resourceVersion guards it.
        return {"metadata": {"resourceVersion": info.resource_version,
                             "annotations": {ATTACHED_ANNOTATION: annotations.get(ATTACHED_ANNOTATION)}},
                "imagePullSecrets": updated["imagePullSecrets"]}

    @contextlib.contextmanager
    def _serialized(self, key: tuple[str, str]) -> Iterator[None]:
        with self._lock:
            lock, users = self._account_locks.get(key, (threading.Lock(), 0))
            self._account_locks[key] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._lock:
                lock, users = self._account_locks[key]
                if users == 1:
                    del self._account_locks[key]
                else:
                    self._account_locks[key] = (lock, users - 1)


__all__ = ["AccountWriter", "Offer"]

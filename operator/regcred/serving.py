"""What each credential serves now, as the reconciliations leave it; read by remediation and the handlers.

Written only by the Reconciler (a pass's result) and by remediation (a revision the registry rejects); read
from the event loop and the worker threads, so each record is replaced whole, never changed in place.
"""

from __future__ import annotations

import dataclasses
import datetime
import threading
from collections.abc import Mapping
from typing import Any

from regcred.models import CredentialSpec
from regcred.providers import Token


@dataclasses.dataclass(frozen=True)
class Serving:
    """What a credential currently serves, for diagnosis: where, which hosts, with which Secret revision."""

    credential: Mapping[str, Any] = dataclasses.field(repr=False)
    spec: CredentialSpec
    namespaces: frozenset[str]
    token: Token = dataclasses.field(repr=False)
    revision: str  # the content hash of the Secret now written
    # When the operator made this revision (minted it, or read a changed static secret): its own record,
    # published as status.lastRefreshTime. Diagnosis compares pod failures with it.
    since: datetime.datetime | None = None
    # The data hashes of its Argo CD templates (regcred.argocd), for the managed-Secret watch.
    outputs: frozenset[str] = frozenset()

    @property
    def name(self) -> str:
        return self.spec.name


@dataclasses.dataclass(frozen=True)
class InFlight:
    """What a pass in flight works from and writes, recorded as soon as it has read the namespaces: a watch event
    is judged against it, so that its own writes do not wake the credential again and what it did not see does."""

    spec: CredentialSpec
    namespaces: frozenset[str]
    revision: str | None = None  # known once it has its token
    outputs: frozenset[str] = frozenset()


class ServingRegistry:
    """The `Serving` record of each credential this process serves, and the revisions its registry rejected."""

    def __init__(self) -> None:
        self._serving: dict[str, Serving] = {}
        # Credentials whose registry rejects the revision in place (set by remediation), by revision.
        self._rejected: dict[str, str] = {}
        self._in_flight: dict[str, InFlight] = {}

    def get(self, name: str) -> Serving | None:
        return self._serving.get(name)

    def all(self) -> dict[str, Serving]:
        """A copy: the caller may iterate it while passes go on in other threads."""
        return dict(self._serving)

    def serve(self, serving: Serving) -> None:
        self._serving[serving.name] = serving

    def begin(self, name: str, spec: CredentialSpec, namespaces: frozenset[str]) -> None:
        """A pass starts working from this spec and these namespaces (read from the view)."""
        self._in_flight[name] = InFlight(spec, namespaces)

    def writing(self, name: str, revision: str, outputs: frozenset[str] = frozenset()) -> None:
        """The pass in flight writes this content (and these Argo CD templates)."""
        in_flight = self._in_flight.get(name)
        if in_flight is not None:
            self._in_flight[name] = dataclasses.replace(in_flight, revision=revision, outputs=outputs)

    def end(self, name: str) -> None:
        self._in_flight.pop(name, None)

    def holds(self, name: str, revision: str) -> bool:
        """Whether a Secret of this content is what the credential serves, or what its pass in flight writes."""
        serving, in_flight = self._serving.get(name), self._in_flight.get(name)
        return (serving is not None and serving.revision == revision) or (
            in_flight is not None and in_flight.revision == revision)

    def holds_output(self, name: str, revision: str) -> bool:
        """The same for an Argo CD template (regcred.argocd): one of the revisions served or being written."""
        serving, in_flight = self._serving.get(name), self._in_flight.get(name)
        return (serving is not None and revision in serving.outputs) or (
            in_flight is not None and revision in in_flight.outputs)

    def judged(self) -> list[tuple[str, CredentialSpec, frozenset[str]]]:
        """Each credential served or being reconciled, with what a watch event about it is judged against: while
        a pass is in flight, the spec and namespaces that pass works from, even on a credential's first pass
        (an event it did not see must wake it again, one that its writes caused must not); else what it serves."""
        judged = {name: (serving.spec, serving.namespaces) for name, serving in dict(self._serving).items()}
        judged.update((name, (flight.spec, flight.namespaces)) for name, flight in dict(self._in_flight).items())
        return [(name, spec, namespaces) for name, (spec, namespaces) in judged.items()]

    def stop(self, name: str) -> None:
        """The credential serves nothing (an invalid spec, or forgotten)."""
        self._serving.pop(name, None)

    def reject(self, name: str, revision: str) -> None:
        self._rejected[name] = revision

    def rejected(self, name: str) -> str | None:
        return self._rejected.get(name)

    def clear_rejected(self, name: str) -> None:
        self._rejected.pop(name, None)

    def forget(self, name: str) -> None:
        self._serving.pop(name, None)
        self._rejected.pop(name, None)
        self._in_flight.pop(name, None)


class CredentialLocks:
    """One pass, cleanup or remediation status write at a time per credential: a cleanup must not race a late
    write, and a condition set from outside a pass must not be lost to the pass's own status write."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    def __call__(self, name: str) -> threading.Lock:
        with self._lock:
            return self._locks.setdefault(name, threading.Lock())

    def drop(self, name: str) -> None:
        with self._lock:
            self._locks.pop(name, None)


__all__ = ["CredentialLocks", "Serving", "ServingRegistry"]

"""The token source: a credential's token kept in hand, read back from the operator's store, or minted.

Mints only when the token in hand is due for refresh (or a user-managed source changed), backs off per
credential when minting fails, probes `spec.verify.image` with a fresh token before it may be served, and
records the token in the operator's own namespace (regcred.store) so that a restart need not mint again.
Cloud calls go through `providers/`, cluster reads and writes through `KubeApi`.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import logging
import random
import threading
from collections.abc import Callable, Mapping
from typing import Any

from regcred import dockerconfig as dc
from regcred.config import Settings
from regcred.fanout import format_time
from regcred.imageref import ImageRef
from regcred.kube import KubeApi, KubeError
from regcred.models import CredentialSpec
from regcred.probe import Prober
from regcred.providers import Provider, ProviderError, Token
from regcred.store import StoredToken, read_stored, store_name

logger = logging.getLogger("regcred")

ProviderFactory = Callable[..., Provider]
# Never refresh more often than this, whatever a provider claims (a token that arrives nearly expired
# must not turn into a tight mint loop).
_MIN_REFRESH_INTERVAL = datetime.timedelta(seconds=30)


@dataclasses.dataclass(frozen=True)
class HeldToken:
    """A token in hand, with what decides when to replace it."""

    token: Token
    content: bytes = dataclasses.field(repr=False)
    provider_hash: str
    minted_at: datetime.datetime
    refresh_at: datetime.datetime | None  # None: user-managed or without expiry, re-read at every reconciliation


class VerificationFailed(ProviderError):
    """A freshly minted token could not pull spec.verify.image: it is not written."""

    reason = "VerificationFailed"
    retryable = True

    def __init__(self, message: str, record: dict[str, Any]) -> None:
        super().__init__(message)
        self.record = record


def refresh_time(
    minted_at: datetime.datetime,
    expires_at: datetime.datetime,
    before_expiry: datetime.timedelta | None,
    rng: random.Random,
) -> datetime.datetime:
    """When to mint again: `before_expiry` ahead of expiry (default a third of the lifetime), minus jitter.

    The lead is capped at half the lifetime so that a short-lived token (15 min under workload identity
    federation) with a long `beforeExpiry` does not refresh continuously. The jitter (up to a tenth of the
    lead, at most 5 minutes) spreads the mints of many credentials and replicas; it only ever makes the
    refresh earlier.
    """
    lifetime = max(expires_at - minted_at, datetime.timedelta(0))
    lead = min(before_expiry if before_expiry is not None else lifetime / 3, lifetime / 2)
    jitter = rng.uniform(0, min(lead.total_seconds() / 10, 300))
    return expires_at - lead - datetime.timedelta(seconds=jitter)


def provider_hash(spec: Mapping[str, Any]) -> str:
    """Identifies the provider configuration a token came from: a changed provider block means mint again."""
    return hashlib.sha256(json.dumps(spec.get("provider") or {}, sort_keys=True).encode()).hexdigest()[:16]


def still_valid(token: Token, now: datetime.datetime) -> bool:
    """Whether a token in hand may still be served while a new one cannot be had (a minute to spare)."""
    return token.expires_at is None or token.expires_at - now > datetime.timedelta(minutes=1)


def next_mint(held: HeldToken, now: datetime.datetime) -> datetime.datetime | None:
    """When the token in hand is due for a refresh (None: it is read again at every pass), never in a tight loop."""
    return None if held.refresh_at is None else max(held.refresh_at, now + _MIN_REFRESH_INTERVAL)


class TokenSource:
    def __init__(self, kube: KubeApi, settings: Settings, *, prober: Prober, rng: random.Random) -> None:
        self.kube = kube
        self.settings = settings
        self.prober = prober
        self.rng = rng
        self._held: dict[str, HeldToken] = {}
        self._failures: dict[str, int] = {}  # failed mints in a row, per credential
        # What the token store (regcred.store) holds per credential, as this process last read or wrote it:
        # written only when the held token changes.
        self._stored: dict[str, StoredToken] = {}
        self._lock = threading.Lock()
        self.provider_calls = 0  # for benchmarks and tests: how often a cloud was asked for a token

    def previous(self, spec: CredentialSpec, phash: str) -> HeldToken | None:
        """The token in hand for this provider configuration: from memory, else from the operator's own store.

        Never from the pull Secrets in target namespaces: a tenant can write those (see regcred.store)."""
        held = self._held.get(spec.name)
        if held is None or held.provider_hash != phash:
            held = self._token_from_store(spec, phash)
        return held

    def served(self, name: str, *, read: bool = True) -> StoredToken | None:
        """What a credential serves as far as this process knows: its token in hand, else its record in the store
        (read from the cluster only when ``read``; a credential sharing a Secret with one reconciled later than
        itself after a restart needs it). Never from a target namespace's Secret (see regcred.store)."""
        held = self._held.get(name)
        if held is not None:
            return StoredToken(held.content, held.provider_hash, held.minted_at, held.token.expires_at)
        stored = self._stored.get(name)
        if stored is None and read:
            try:
                stored = self._read_store(name)
            except KubeError as error:
                logger.warning("Could not read the token store of credential %s (%s %s).", name, error.status,
                               error.reason)
                return None
        return stored

    def token_for(
        self, spec: CredentialSpec, provider: Provider, phash: str, previous: HeldToken | None,
        now: datetime.datetime, *, force: bool = False,
    ) -> tuple[HeldToken, bool]:
        """The token in hand while it is fresh, else a newly minted one (True: minted now). ``force``: mint
        even when the token in hand is fresh (the force-sync annotation)."""
        renewable = not provider.user_managed
        if renewable and not force and previous is not None and previous.refresh_at is not None \
                and now < previous.refresh_at:
            return previous, False

        with self._lock:
            self.provider_calls += 1
        token = provider.mint(self.kube.read_secret_data)
        if token.expires_at is not None and token.expires_at <= now:
            raise ProviderError(
                f"The {spec.provider_name} provider returned a token that expired at "
                f"{format_time(token.expires_at)}, before now ({format_time(now)}); check the operator's clock.",
                reason="TokenAlreadyExpired",
            )
        content = dc.render(token)
        if not renewable and previous is not None and (previous.content, previous.token.expires_at) == (
                content, token.expires_at):
            return previous, False  # what the person put in the Secret has not changed
        refresh_at = (
            refresh_time(now, token.expires_at, spec.refresh_before_expiry, self.rng)
            if token.expires_at is not None and renewable else None
        )
        return HeldToken(token, content, phash, now, refresh_at), True

    def verify(self, image: ImageRef, token: Token, now: datetime.datetime) -> dict[str, Any]:
        """Probe spec.verify.image with a fresh token before it may replace the written one."""
        if not image.matching_auth_keys(token.hosts):
            raise ProviderError(
                f"spec.verify.image {image} is on {image.registry}, which this credential does not serve "
                f"({', '.join(token.hosts)}); pick an image from one of those registries.",
                reason="VerifyImageNotServed", retryable=False,
            )
        result = self.prober.probe(image, (token.username, token.password))
        record = {"image": str(image), "verdict": str(result.verdict), "time": format_time(now),
                  "message": result.detail}
        if not result.ok:  # never held, never written: the next try mints again
            raise VerificationFailed(
                f"The new token could not pull {image}: {result.detail} The written Secrets keep the previous "
                "token.", record,
            )
        return record

    def minted(self, name: str) -> None:
        """The provider answered: the mint back-off starts afresh."""
        self._failures.pop(name, None)

    def keep(self, name: str, held: HeldToken) -> None:
        """The token now served: held in memory, and recorded in the store when that changed."""
        self._held[name] = held
        self._store(name, held)

    def retry_delay(self, name: str, error: ProviderError) -> datetime.timedelta:
        """Exponential back-off per credential for failed mints (longer when trying again cannot help soon)."""
        failures = self._failures[name] = self._failures.get(name, 0) + 1
        delay = min(self.settings.retry_initial * 2 ** (failures - 1), self.settings.retry_max)
        if not error.retryable:
            delay = max(delay, min(self.settings.retry_max, self.settings.resync_interval))
        jittered: datetime.timedelta = delay * self.rng.uniform(0.8, 1.0)
        return jittered

    def delete_stored(self, name: str) -> None:
        """Delete the credential's token store Secret (on the credential's deletion)."""
        self.kube.delete_secret(self.settings.state_namespace, store_name(name))

    def forget(self, name: str) -> None:
        with self._lock:
            for cache in (self._stored, self._held, self._failures):
                cache.pop(name, None)

    def _token_from_store(self, spec: CredentialSpec, phash: str) -> HeldToken | None:
        """The token this operator (this process before a restart, or the replica it takes over from) recorded
        in its namespace, so that a restart need not mint again."""
        try:
            stored = self._read_store(spec.name)
        except KubeError as error:
            logger.warning("Could not read the token store of credential %s in namespace %s (%s %s); "
                           "a new token is minted.", spec.name, self.settings.state_namespace,
                           error.status, error.reason)
            return None
        if stored is None:
            return None
        token = dc.parse_token(stored.content, stored.expires_at)
        if stored.provider_hash != phash or token is None:
            return None
        refresh_at = (
            refresh_time(stored.minted_at, stored.expires_at, spec.refresh_before_expiry, self.rng)
            if stored.expires_at is not None else None
        )
        return HeldToken(token, stored.content, phash, stored.minted_at, refresh_at)

    def _read_store(self, name: str) -> StoredToken | None:
        """The credential's record in the store, read from the cluster (None: none, or not intact), and
        remembered as what the store holds."""
        stored = read_stored(self.kube.read_secret(self.settings.state_namespace, store_name(name)), name)
        if stored is not None:
            with self._lock:
                self._stored[name] = stored
        return stored

    def _store(self, name: str, held: HeldToken) -> None:
        """Record the held token in the operator's namespace when it differs from what is recorded there.

        A failure costs only itself: the token is still served; it is written again at the next reconciliation,
        and until then a restart would mint once more."""
        stored = StoredToken(held.content, held.provider_hash, held.minted_at, held.token.expires_at)
        if self._stored.get(name) == stored:
            return
        namespace = self.settings.state_namespace
        try:
            if name in self._stored:
                try:
                    self.kube.patch_secret(namespace, store_name(name), stored.patch())
                except KubeError as error:
                    if not error.not_found:
                        raise
                    self.kube.create_secret(namespace, stored.body(name, namespace))
            else:
                try:
                    self.kube.create_secret(namespace, stored.body(name, namespace))
                except KubeError as error:
                    if not error.conflict:
                        raise
                    self.kube.patch_secret(namespace, store_name(name), stored.patch())
        except KubeError as error:
            logger.warning("Could not record the token of credential %s in namespace %s (%s %s); a restart "
                           "before the next try would mint again.", name, namespace, error.status, error.reason)
            return
        self._stored[name] = stored


__all__ = ["HeldToken", "ProviderFactory", "TokenSource", "VerificationFailed", "next_mint", "provider_hash",
           "refresh_time", "still_valid"]

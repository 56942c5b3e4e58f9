"""One reconciliation of one RegistryCredential: parse, get a token, fan out, attach, report.

No kopf here: the handlers call `Reconciler.reconcile()` and `Reconciler.cleanup()` and sleep until
the returned wake-up time. Everything that talks to the cluster goes through `KubeApi`.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
import hashlib
import json
import logging
import random
import threading
from collections.abc import Callable, Mapping
from typing import Any

from regcred import CREDENTIAL_LABEL, GROUP, KIND, MANAGED_BY_LABEL, MANAGED_BY_VALUE, VERSION, metrics
from regcred import dockerconfig as dc
from regcred.clock import Clock
from regcred.config import Settings
from regcred.fanout import (
    SecretAction,
    SecretContent,
    attach_update,
    attached_by,
    diff_secret,
    format_time,
    plan_secrets,
    wants_attachment,
)
from regcred.imageref import ImageRef, InvalidImageReference
from regcred.kube import KubeApi, KubeError
from regcred.models import CredentialSpec, SpecError, force_sync_request, parse_credential, provider_key
from regcred.probe import Prober
from regcred.providers import Provider, ProviderError, Token, provider_for
from regcred.redact import HELD, redact_json
from regcred.status import (
    CREDENTIAL_REJECTED,
    MAX_FAILED_NAMESPACES,
    READY,
    SECRETS_SYNCED,
    TOKEN_EXPIRING,
    TOKEN_READY,
    VERIFIED,
    Condition,
    FailedNamespace,
    find_condition,
    merge_conditions,
    summarise_failures,
)
from regcred.store import StoredToken, read_stored, store_name
from regcred.view import ClusterView, NamespaceInfo, selected

logger = logging.getLogger("regcred")

ProviderFactory = Callable[..., Provider]
_SA_CONFLICT_RETRIES = 5
# A resync wake-up comes at the resync period, give or take the clock's rounding: it still counts as full.
_FULL_PASS_SLACK = datetime.timedelta(seconds=1)
# Back-off of a credential whose writes failed: seconds, not the resync period.
_WRITE_RETRY_INITIAL = datetime.timedelta(seconds=1)
_WRITE_RETRY_MAX = datetime.timedelta(seconds=60)
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

    @property
    def name(self) -> str:
        return self.spec.name


@dataclasses.dataclass(frozen=True)
class Outcome:
    """When to reconcile again, and how many Secret writes this reconciliation made."""

    wake_at: datetime.datetime
    writes: int = 0


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


class Reconciler:
    def __init__(
        self,
        kube: KubeApi,
        settings: Settings,
        clock: Clock,
        *,
        providers: ProviderFactory = provider_for,
        prober: Prober | None = None,
        rng: random.Random | None = None,
        view: ClusterView | None = None,
    ) -> None:
        self.kube = kube
        self.settings = settings
        self.clock = clock
        self.providers = providers
        self.prober = prober or Prober(insecure_registries=settings.insecure_registries,
                                        token_realm_hosts=settings.token_realm_hosts)
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._held: dict[str, HeldToken] = {}
        self._failures: dict[str, int] = {}  # failed mints in a row, per credential
        self._write_failures: dict[str, int] = {}  # passes in a row with failed writes or reads, per credential
        self._not_before: dict[str, datetime.datetime] = {}  # Retry-After: no pass of the credential before then
        self._full_at: dict[str, datetime.datetime] = {}  # the last pass that LISTed namespaces and accounts
        self.view = view or ClusterView()
        # What the token store (regcred.store) holds per credential, as this process last read or wrote it:
        # written only when the held token changes.
        self._stored: dict[str, StoredToken] = {}
        # The status this process last wrote, per credential: the operator is its only writer, and the
        # object it is handed may not show the latest write yet (watch lag).
        self._published: dict[str, Mapping[str, Any]] = {}
        # Credentials whose registry rejects the revision in place (set by remediation), by revision.
        self.rejected: dict[str, str] = {}
        self.serving: dict[str, Serving] = {}  # replaced whole, so readers in other threads see a consistent one
        self._lock = threading.Lock()
        # One reconciliation or cleanup at a time per credential: a cleanup must not race a late write.
        self._credential_locks: dict[str, threading.Lock] = {}
        self._pool = concurrent.futures.ThreadPoolExecutor(settings.write_concurrency, "regcred-write")
        self.provider_calls = 0  # for benchmarks and tests: how often a cloud was asked for a token

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- the loop body ---------------------------------------------------------------------------

    def _lock_for(self, name: str) -> threading.Lock:
        with self._lock:
            return self._credential_locks.setdefault(name, threading.Lock())

    def reconcile(self, credential: Mapping[str, Any]) -> Outcome:
        name: str = (credential.get("metadata") or {})["name"]
        with self._lock_for(name):
            return self._reconcile(name, credential)

    def _reconcile(self, name: str, credential: Mapping[str, Any]) -> Outcome:
        now = self.clock.now()
        not_before = self._not_before.get(name)
        if not_before is not None and now < not_before:  # the API server asked us to wait (Retry-After)
            return Outcome(wake_at=not_before)
        try:
            spec = parse_credential(name, credential.get("spec") or {})
            provider = self.providers(spec.provider, self.settings)
            verify_image = _parse_verify_image(spec)
        except SpecError as error:
            self.serving.pop(name, None)
            metrics.CREDENTIAL_READY.labels(name).set(0)
            self._publish(credential, [Condition(READY, "False", error.reason, str(error))], {})
            return Outcome(wake_at=now + self.settings.resync_interval)

        try:
            return self._serve(name, credential, spec, provider, verify_image, now)
        except KubeError as error:  # a read the pass depends on failed: only this credential waits, briefly
            return self._api_failed(credential, error, now)

    def _serve(self, name: str, credential: Mapping[str, Any], spec: CredentialSpec, provider: Provider,
               verify_image: ImageRef | None, now: datetime.datetime) -> Outcome:
        # A full pass LISTs namespaces and ServiceAccounts (the first one, and one per resync period); a pass
        # woken by an event between them works from the view the watches keep (regcred.view).
        last_full = self._full_at.get(name)
        full = last_full is None or now - last_full >= self.settings.resync_interval - _FULL_PASS_SLACK
        if full:
            mark = self.view.mark()
            listed = self.kube.list_namespaces()
            self.view.replace_namespaces(listed, mark)
            namespaces = [NamespaceInfo.of(ns) for ns in listed]
        else:
            namespaces = self.view.namespaces()
        targets = sorted(ns.name for ns in namespaces if selected(spec, ns, self.settings.watch_namespaces))
        managed = self.kube.list_secrets(label_selector=_credential_selector(name))
        phash = provider_hash(credential.get("spec") or {})

        verification: dict[str, Any] = {}
        previous = self._previous_token(spec, phash)
        refresh_failure: ProviderError | None = None
        published_status = self._published.get(name) or credential.get("status") or {}
        force = force_sync_request(credential, published_status)
        handled_force = published_status.get("lastForceSync")
        try:
            held, minted = self._token_for(spec, provider, phash, previous, now, force=force is not None)
            # Status, Events and log lines hide it from now on (a registry or a probe may echo it).
            HELD.hold(name, credentials=[(held.token.username, held.token.password)])
            if minted and verify_image is not None:
                verification = self._verify(verify_image, held.token, now)
        except ProviderError as error:
            metrics.REFRESHES.labels(name, "failure").inc()
            if previous is not None and previous.token.expires_at is not None:
                # What is written expires then, whether or not this process minted it: the expiry alerts need it.
                metrics.TOKEN_EXPIRY.labels(name).set(previous.token.expires_at.timestamp())
            if previous is None or provider.user_managed or not _still_valid(previous.token, now):
                metrics.CREDENTIAL_READY.labels(name).set(0)
                return self._mint_failed(credential, spec, managed, error, now)
            # A provider outage: the token in hand is still good, so it keeps being served (new namespaces,
            # repaired Secrets); only the mint waits for its back-off. Not for what a person keeps in a Secret
            # (static, a PAT): when that cannot be read, nothing vouches for the old content any more.
            held, minted, refresh_failure = previous, False, error
            HELD.hold(name, credentials=[(held.token.username, held.token.password)])
        else:
            self._failures.pop(name, None)
            handled_force = force or handled_force  # the provider answered: never forced again for this value
        self._held[name] = held
        self._store(name, held)
        if minted:
            metrics.REFRESHES.labels(name, "success").inc()

        desired = SecretContent(
            credential=name, secret_name=spec.secret_name, content=held.content, provider_hash=phash,
            minted_at=held.minted_at, expires_at=held.token.expires_at,
        )
        actions = plan_secrets(desired, targets, managed)
        failed = [f for f in self._pool.map(lambda action: self._apply(action, name, desired), actions)
                  if f is not None]
        failed_names = {f.namespace for f in failed}
        synced_targets = [ns for ns in targets if ns not in failed_names]
        # Where our Secret's write failed and is retried, the ServiceAccounts are left as they are: detaching
        # now would only attach again on the retry (two needless writes, and pods made meanwhile get no entry).
        retried = {f.namespace for f in failed if f.reason != "SecretConflict"}
        account_failures, accounts_changed = self._attach_service_accounts(spec, synced_targets, full=full,
                                                                           leave=retried)
        failed.extend(account_failures)
        writes = len(actions)
        if minted or actions or accounts_changed:  # the default level: one line per reconciliation that did something
            logger.info("Credential %s: %s.", name, _changes(held.token if minted else None, actions, failed,
                                                             accounts_changed))
        revision = dc.content_hash(held.content)
        self.serving[name] = Serving(credential, spec, frozenset(synced_targets), held.token, revision,
                                     held.minted_at)

        synced = summarise_failures(failed)
        # Stable wording whether minted now or reused, so that a no-change resync writes nothing.
        notice = provider.expiry_notice(held.token.expires_at, now) if provider.user_managed else None
        token_condition = Condition(TOKEN_READY, "True", "TokenValid", " ".join(
            filter(None, [_token_message(held.token), notice if held.token.expires_at is None else None])))
        expiring = notice is not None and held.token.expires_at is not None
        extra_conditions = [Condition(
            TOKEN_EXPIRING, "True" if expiring else "False", "TokenExpiresSoon" if expiring else "NotExpiringSoon",
            notice if expiring and notice else "The token is not about to expire.",
        )] if provider.user_managed else []
        ready = Condition(READY, synced.status, "Ready" if synced.status == "True" else synced.reason,
                          "Pull secrets are up to date in every selected namespace."
                          if synced.status == "True" else synced.message)
        wake_at = now + self.settings.resync_interval
        if refresh_failure is not None:
            delay = self._mint_retry_delay(name, refresh_failure)
            until = (f"is valid until {format_time(held.token.expires_at)}" if held.token.expires_at
                     else "does not expire")
            message = (f"Getting a new token failed: {refresh_failure} The current token {until} and is still "
                       f"served. Retrying in {int(delay.total_seconds())}s.")
            logger.warning("Credential %s: getting a token failed (%s); the current one is still served.",
                           name, refresh_failure.reason)
            token_condition = Condition(TOKEN_READY, "False", refresh_failure.reason, message)
            ready = Condition(READY, "False", refresh_failure.reason, message)
            wake_at = min(wake_at, now + delay)
        counts = {
            "selected": len(targets),
            "synced": len(targets) - len({f.namespace for f in failed}),
            "failed": len({f.namespace for f in failed if f.reason != "SecretConflict"}),
            "conflicts": len({f.namespace for f in failed if f.reason == "SecretConflict"}),
        }
        verified: list[Condition] = []
        rejected_revision = self.rejected.get(name)
        if rejected_revision is not None and rejected_revision != revision:  # a new revision: judged afresh
            self.rejected.pop(name, None)
            metrics.CREDENTIAL_REJECTED.labels(name).set(0)
            verified.append(Condition(CREDENTIAL_REJECTED, "False", "NewRevision",
                                      "A new revision of the credential is in place; no pod has failed with it yet."))
        if verification:  # only when a freshly minted token was checked; otherwise the last result stands
            verified.append(Condition(VERIFIED, "True", "VerificationSucceeded", verification["message"]))
        elif isinstance(refresh_failure, VerificationFailed):
            verified.append(Condition(VERIFIED, "False", refresh_failure.reason, ready.message))
            verification = refresh_failure.record
        published = self._publish(
            credential,
            [ready, token_condition, synced, *extra_conditions, *verified],
            {
                **({"verification": verification} if verification else {}),
                "expirationTime": format_time(held.token.expires_at) if held.token.expires_at else None,
                "lastRefreshTime": format_time(held.minted_at),
                **({"lastForceSync": handled_force} if handled_force else {}),
                "registries": list(held.token.hosts),
                "namespaces": counts,
                "failedNamespaces": [f.as_status() for f in failed[:MAX_FAILED_NAMESPACES]],
            },
            minted_event=_minted_event(held.token) if minted else None,
        )
        if full:
            self._full_at[name] = now
        retry = [f for f in failed if f.reason != "SecretConflict"]
        if retry or not published:  # failed writes are retried on their own short back-off, not at the resync
            wake_at = min(wake_at, now + self._write_retry_delay(name, [f.retry_after for f in retry]))
        else:
            self._write_failures.pop(name, None)
            self._not_before.pop(name, None)
        metrics.CREDENTIAL_READY.labels(name).set(1 if ready.status == "True" else 0)
        if held.token.expires_at is not None:
            metrics.TOKEN_EXPIRY.labels(name).set(held.token.expires_at.timestamp())
        for state, count in counts.items():
            metrics.NAMESPACES.labels(name, state).set(count)
        if held.refresh_at is not None and refresh_failure is None:
            wake_at = min(wake_at, max(held.refresh_at, now + _MIN_REFRESH_INTERVAL))
        return Outcome(wake_at=wake_at, writes=writes)

    def cleanup(self, name: str) -> None:
        """Remove everything a credential wrote: its Secrets and its ServiceAccount entries."""
        with self._lock_for(name):
            self._cleanup(name)
        with self._lock:
            self._credential_locks.pop(name, None)

    def _cleanup(self, name: str) -> None:
        managed = self.kube.list_secrets(label_selector=_credential_selector(name))
        actions = [SecretAction("delete", s["metadata"]["namespace"], s["metadata"]["name"]) for s in managed]
        list(self._pool.map(lambda action: self._apply(action, name), actions))
        for account in self.kube.list_service_accounts():
            if name in attached_by(account):
                self._update_service_account(account, name, None)
        self.kube.delete_secret(self.settings.state_namespace, store_name(name))
        self._forget(name)
        HELD.forget(name)
        logger.info("Removed %d Secret(s) and the ServiceAccount entries of credential %s.", len(actions), name)

    def forget(self, name: str) -> None:
        """Drop what this process knows of a credential (held token, what the store and the status hold, what it
        serves, its failures and gauges) once its credential loop stops, e.g. when peering pauses this replica:
        the replica that acts meanwhile mints, writes and publishes, and whatever was cached here is stale when
        this one resumes (it would write its old token back, or skip a status write). Waits for a pass in
        flight, so that none writes its results back afterwards."""
        with self._lock_for(name):
            self._forget(name)

    def _forget(self, name: str) -> None:
        with self._lock:
            for cache in (self._stored, self._write_failures, self._not_before, self._full_at, self._held,
                          self._failures, self._published, self.rejected):
                cache.pop(name, None)
            self.serving.pop(name, None)
        metrics.forget(name)

    # -- tokens ------------------------------------------------------------------------------------

    def _previous_token(self, spec: CredentialSpec, phash: str) -> HeldToken | None:
        """The token in hand for this provider configuration: from memory, else from the operator's own store.

        Never from the pull Secrets in target namespaces: a tenant can write those (see regcred.store)."""
        held = self._held.get(spec.name)
        if held is None or held.provider_hash != phash:
            held = self._token_from_store(spec, phash)
        return held

    def _token_for(
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

    def _verify(self, image: ImageRef, token: Token, now: datetime.datetime) -> dict[str, Any]:
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

    def _token_from_store(self, spec: CredentialSpec, phash: str) -> HeldToken | None:
        """The token this operator (this process before a restart, or the replica it takes over from) recorded
        in its namespace, so that a restart need not mint again."""
        try:
            secret = self.kube.read_secret(self.settings.state_namespace, store_name(spec.name))
        except KubeError as error:
            logger.warning("Could not read the token store of credential %s in namespace %s (%s %s); "
                           "a new token is minted.", spec.name, self.settings.state_namespace,
                           error.status, error.reason)
            return None
        stored = read_stored(secret, spec.name)
        if stored is None:
            return None
        self._stored[spec.name] = stored
        token = dc.parse_token(stored.content, stored.expires_at)
        if stored.provider_hash != phash or token is None:
            return None
        refresh_at = (
            refresh_time(stored.minted_at, stored.expires_at, spec.refresh_before_expiry, self.rng)
            if stored.expires_at is not None else None
        )
        return HeldToken(token, stored.content, phash, stored.minted_at, refresh_at)

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

    def _mint_failed(
        self,
        credential: Mapping[str, Any],
        spec: CredentialSpec,
        managed: list[dict[str, Any]],
        error: ProviderError,
        now: datetime.datetime,
    ) -> Outcome:
        """Never make it worse: the Secrets already written stay as they are; retry with back-off."""
        name = spec.name
        delay = self._mint_retry_delay(name, error)
        kept = f" The {len(managed)} Secret(s) already written are left unchanged." if managed else ""
        message = f"{error}{kept} Retrying in {int(delay.total_seconds())}s."
        logger.warning("Credential %s: getting a token failed (%s): %s", name, error.reason, message)
        conditions = [Condition(READY, "False", error.reason, message),
                      Condition(TOKEN_READY, "False", error.reason, message)]
        fields: dict[str, Any] = {}
        if isinstance(error, VerificationFailed):
            conditions.append(Condition(VERIFIED, "False", error.reason, message))
            fields["verification"] = error.record
        self._publish(credential, conditions, fields)
        return Outcome(wake_at=now + delay)

    def _mint_retry_delay(self, name: str, error: ProviderError) -> datetime.timedelta:
        """Exponential back-off per credential for failed mints (longer when trying again cannot help soon)."""
        failures = self._failures[name] = self._failures.get(name, 0) + 1
        delay = min(self.settings.retry_initial * 2 ** (failures - 1), self.settings.retry_max)
        if not error.retryable:
            delay = max(delay, min(self.settings.retry_max, self.settings.resync_interval))
        jittered: datetime.timedelta = delay * self.rng.uniform(0.8, 1.0)
        return jittered

    def _write_retry_delay(self, name: str, retry_after: list[float | None]) -> datetime.timedelta:
        """Failed writes (and a status that could not be written) are tried again in seconds, doubling per pass
        that still fails, and never sooner than the API server asked (Retry-After)."""
        failures = self._write_failures[name] = self._write_failures.get(name, 0) + 1
        delay: datetime.timedelta = min(_WRITE_RETRY_INITIAL * 2 ** (failures - 1), _WRITE_RETRY_MAX)
        delay *= self.rng.uniform(0.8, 1.0)
        asked = datetime.timedelta(seconds=max((s for s in retry_after if s is not None), default=0.0))
        if asked:  # honoured even when an event wakes the credential sooner (at most a minute)
            self._not_before[name] = self.clock.now() + min(asked, _WRITE_RETRY_MAX)
        return max(delay, asked)

    def _api_failed(self, credential: Mapping[str, Any], error: KubeError, now: datetime.datetime) -> Outcome:
        """A read the reconciliation needs failed (listing namespaces, Secrets or ServiceAccounts): one line in
        the log, Ready=False saying so, and another try in seconds. What is written stays as it is."""
        name: str = (credential.get("metadata") or {})["name"]
        delay = self._write_retry_delay(name, [error.retry_after])
        message = (f"Could not read the cluster ({error.reason or error.status}: {error.message[:200]}). "
                   f"Retrying in {int(delay.total_seconds())}s.")
        logger.warning("Credential %s: %s", name, message)
        metrics.CREDENTIAL_READY.labels(name).set(0)
        self._publish(credential, [Condition(READY, "False", "ApiUnavailable", message)], {})
        return Outcome(wake_at=now + delay)

    # -- writes -------------------------------------------------------------------------------------

    def _apply(self, action: SecretAction, credential: str, desired: SecretContent | None = None
               ) -> FailedNamespace | None:
        where = f"{action.namespace}/{action.name}"
        try:
            if action.verb == "create":
                self._create(action, desired)
            elif action.verb == "patch":
                self.kube.patch_secret(action.namespace, action.name, action.body or {})
            elif action.verb == "recreate":
                self.kube.delete_secret(action.namespace, action.name)
                self._create(action, desired)
            else:
                self.kube.delete_secret(action.namespace, action.name)
            metrics.SECRETS_WRITTEN.labels(credential, action.verb).inc()
        except SecretConflict as conflict:
            return FailedNamespace(action.namespace, "SecretConflict", str(conflict))
        except KubeError as error:
            logger.warning("Could not %s Secret %s: %s %s", action.verb, where, error.status, error.reason)
            return FailedNamespace(action.namespace, _failure_reason(error),
                                   f"Could not {action.verb} Secret {where}: {error.reason or error.status}.",
                                   retry_after=error.retry_after)
        return None

    def _create(self, action: SecretAction, desired: SecretContent | None) -> None:
        """Create the Secret; when one of that name exists already (409), look before calling it a conflict: our
        own (a write that raced ours, or a list that lagged) is patched; another's is left alone."""
        try:
            self.kube.create_secret(action.namespace, action.body or {})
            return
        except KubeError as error:
            if not error.conflict:
                raise
        existing = self.kube.read_secret(action.namespace, action.name)
        if existing is None:  # gone again in between: the next pass creates it
            raise KubeError(409, "Conflict", f"Secret {action.namespace}/{action.name} was created and deleted "
                                             "while being written")
        labels = (existing.get("metadata") or {}).get("labels") or {}
        if desired is None or labels.get(MANAGED_BY_LABEL) != MANAGED_BY_VALUE or \
                labels.get(CREDENTIAL_LABEL) != desired.credential:
            raise SecretConflict(f"Secret {action.namespace}/{action.name} exists and is not managed by "
                                 "regcred-operator; it was left alone.")
        if existing.get("type") != dc.SECRET_TYPE:
            raise KubeError(409, "Conflict", f"Secret {action.namespace}/{action.name} has another type")
        patch = diff_secret(desired, existing)
        if patch is not None:
            self.kube.patch_secret(action.namespace, action.name, patch)

    def _attach_service_accounts(self, spec: CredentialSpec, targets: list[str], *, full: bool,
                                 leave: set[str] | frozenset[str] = frozenset()
                                 ) -> tuple[list[FailedNamespace], int]:
        """Attach where wanted, detach where not (except in the namespaces to ``leave`` alone): the failures, and
        how many ServiceAccounts were changed.

        A full pass looks at every ServiceAccount (one LIST); otherwise only the ones the view says need this
        credential's change are read (and a stale view costs one GET, never a wrong write)."""
        target_set = set(targets)
        failed: list[FailedNamespace] = []
        changed = 0
        if full:
            mark = self.view.mark()
            accounts = self.kube.list_service_accounts()
            self.view.replace_accounts(accounts, mark)
        else:
            accounts = []
            for namespace, account_name in self.view.accounts_needing(spec, frozenset(targets) | frozenset(leave)):
                if namespace in leave:
                    continue
                try:  # one account that cannot be read costs only itself
                    found = self.kube.read_namespaced("v1", "serviceaccounts", namespace, account_name)
                except KubeError as error:
                    failed.append(FailedNamespace(namespace, _failure_reason(error), f"Could not read ServiceAccount "
                                                  f"{namespace}/{account_name}: {error.reason or error.status}.",
                                                  retry_after=error.retry_after))
                    continue
                if found:
                    accounts.append(found)
        for account in accounts:
            metadata = account.get("metadata") or {}
            if metadata.get("namespace") in leave:
                continue
            wanted = metadata.get("namespace") in target_set and wants_attachment(
                spec.service_accounts, metadata.get("name", "")
            )
            if not wanted and spec.name not in attached_by(account):
                continue
            secret_name = spec.secret_name if wanted else None
            if attach_update(account, spec.name, secret_name) is None:
                continue
            failure = self._update_service_account(account, spec.name, secret_name)
            if failure is not None:
                failed.append(failure)
            else:
                changed += 1
        return failed, changed

    def _update_service_account(
        self, account: Mapping[str, Any], credential: str, secret_name: str | None
    ) -> FailedNamespace | None:
        """Read-modify-write guarded by resourceVersion; a concurrent change means read again and retry."""
        namespace, name = account["metadata"]["namespace"], account["metadata"]["name"]
        for _ in range(_SA_CONFLICT_RETRIES):
            updated = attach_update(account, credential, secret_name)
            if updated is None:
                return None
            try:
                self.view.account_event(self.kube.replace_service_account(updated), deleted=False)
                return None
            except KubeError as error:
                if error.not_found:
                    return None
                if not error.conflict:
                    return FailedNamespace(namespace, _failure_reason(error),
                                           f"Could not update ServiceAccount {namespace}/{name}: {error.reason}.")
            try:
                account = self.kube.read_service_account(namespace, name)
            except KubeError as reread_error:
                if reread_error.not_found:
                    return None
                return FailedNamespace(namespace, _failure_reason(reread_error),
                                       f"Could not read ServiceAccount {namespace}/{name}: {reread_error.reason}.",
                                       retry_after=reread_error.retry_after)
        return FailedNamespace(namespace, "Conflict",
                               f"ServiceAccount {namespace}/{name} kept changing under us; will retry.")

    # -- status and events ----------------------------------------------------------------------------

    def _publish(
        self,
        credential: Mapping[str, Any],
        conditions: list[Condition],
        fields: Mapping[str, Any],
        *,
        minted_event: tuple[str, str] | None = None,
    ) -> bool:
        """Write status only when it changed; post Events on Ready transitions and on new tokens.

        False when the status could not be written (then no Event either: it is all tried again soon)."""
        metadata = credential.get("metadata") or {}
        current: Mapping[str, Any] = self._published.get(metadata["name"]) or credential.get("status") or {}
        now = format_time(self.clock.now())
        generation = metadata.get("generation")
        status: dict[str, Any] = {
            "observedGeneration": generation,
            "conditions": merge_conditions(current.get("conditions") or [], conditions, now=now,
                                           generation=generation),
            **redact_json(fields),
        }
        provider = provider_key((credential.get("spec") or {}).get("provider") or {})
        if provider:
            status["provider"] = provider
        if SECRETS_SYNCED not in {c.type for c in conditions}:  # nothing was synced: keep the last counts
            status["conditions"] = [c for c in status["conditions"] if c["type"] != SECRETS_SYNCED] + [
                c for c in current.get("conditions") or [] if c.get("type") == SECRETS_SYNCED
            ]
        if any(current.get(key) != value for key, value in status.items()):
            try:
                self.kube.patch_credential_status(metadata["name"], status)
            except KubeError as error:
                if not error.not_found:
                    logger.warning("Could not write the status of credential %s: %s %s", metadata.get("name"),
                                   error.status, error.reason)
                    return False
            self._published[metadata["name"]] = {**current, **status}
        before, after = find_condition(current, READY), find_condition(status, READY)
        events = []
        if minted_event is not None:
            events.append(("Normal", *minted_event))
        if after is not None and (
            before is None or (before.get("status"), before.get("reason")) != (after["status"], after["reason"])
        ):
            events.append(("Normal" if after["status"] == "True" else "Warning", after["reason"], after["message"]))
        for warning_type in (TOKEN_EXPIRING,):  # warnings that are not failures: an Event when they start
            was, now_ = find_condition(current, warning_type), find_condition(status, warning_type)
            if now_ is not None and now_["status"] == "True" and (was is None or was.get("status") != "True"):
                events.append(("Warning", now_["reason"], now_["message"]))
        for type_, reason, message in events:
            try:
                self.post_credential_event(credential, type_, reason, message, now)
            except KubeError as error:  # an Event is a courtesy: never fail a reconciliation for one
                logger.warning("Could not post Event %s for %s: %s", reason, metadata.get("name"), error.reason)
        return True

    def publish_condition(self, credential: Mapping[str, Any], condition: Condition) -> bool:
        """Set one condition on a credential's status (for remediation's findings), through the same record
        of what was published, so that the next reconciliation keeps it. True when it changed."""
        name: str = (credential.get("metadata") or {})["name"]
        with self._lock_for(name):
            current: Mapping[str, Any] = self._published.get(name) or credential.get("status") or {}
            before = find_condition(current, condition.type)
            if before is not None and (before.get("status"), before.get("reason"), before.get("message")) == (
                    condition.status, condition.reason, condition.message):
                return False
            conditions = merge_conditions(current.get("conditions") or [], [condition],
                                          now=format_time(self.clock.now()), generation=None)
            self.kube.patch_credential_status(name, {"conditions": conditions})
            self._published[name] = {**current, "conditions": conditions}
            return True

    def post_credential_event(self, credential: Mapping[str, Any], type_: str, reason: str, message: str,
                              now: str) -> None:
        """An Event about a credential (cluster-scoped: it goes to the events namespace). Failures propagate."""
        self.kube.post_event(credential, api_version=f"{GROUP}/{VERSION}", kind=KIND, type_=type_, reason=reason,
                             message=message, namespace=self.settings.events_namespace, now=now)


class SecretConflict(Exception):
    """A Secret of the wanted name exists and is someone else's: it is left alone and reported."""


class VerificationFailed(ProviderError):
    """A freshly minted token could not pull spec.verify.image: it is not written."""

    reason = "VerificationFailed"
    retryable = True

    def __init__(self, message: str, record: dict[str, Any]) -> None:
        super().__init__(message)
        self.record = record


def _parse_verify_image(spec: CredentialSpec) -> ImageRef | None:
    if spec.verify_image is None:
        return None
    try:
        return ImageRef.parse(spec.verify_image)
    except InvalidImageReference as error:
        raise SpecError(f"spec.verify.image {spec.verify_image!r} is not an image reference: {error}") from None


def _credential_selector(name: str) -> str:
    return f"{MANAGED_BY_LABEL}={MANAGED_BY_VALUE},{CREDENTIAL_LABEL}={name}"


def _failure_reason(error: KubeError) -> str:
    if error.status == 403:
        return "Forbidden"
    return error.reason if error.reason and error.reason.isalpha() else "WriteFailed"


def _changes(minted: Token | None, actions: list[SecretAction], failed: list[FailedNamespace],
             accounts_changed: int) -> str:
    """What a reconciliation did, for its one log line: the new token's hosts and expiry (never the token),
    the Secrets created, patched or deleted, the ServiceAccounts updated."""
    parts = []
    if minted is not None:
        until = f", valid until {format_time(minted.expires_at)}" if minted.expires_at else ""
        parts.append(f"new token for {', '.join(minted.hosts)}{until}")
    failed_namespaces = {f.namespace for f in failed}
    done: dict[str, int] = {}
    for action in actions:
        if action.namespace not in failed_namespaces:
            done[action.verb] = done.get(action.verb, 0) + 1
    verbs = {"create": "created", "patch": "patched", "recreate": "recreated", "delete": "deleted"}
    secrets = [f"{verbs[verb]} {count}" for verb, count in done.items()]
    if secrets:
        parts.append(f"Secrets {', '.join(secrets)}")
    if accounts_changed:
        parts.append(f"{accounts_changed} ServiceAccount(s) updated")
    if failed:
        parts.append(f"{len(failed_namespaces)} namespace(s) failed (see its status)")
    return "; ".join(parts) or "nothing changed"


def _still_valid(token: Token, now: datetime.datetime) -> bool:
    """Whether a token in hand may still be served while a new one cannot be had (a minute to spare)."""
    return token.expires_at is None or token.expires_at - now > datetime.timedelta(minutes=1)


def _token_message(token: Token) -> str:
    until = f"is valid until {format_time(token.expires_at)}" if token.expires_at else "does not expire"
    return f"The token for {', '.join(token.hosts)} {until}."


def _minted_event(token: Token) -> tuple[str, str]:
    until = f", valid until {format_time(token.expires_at)}" if token.expires_at else ""
    return "TokenRefreshed", f"Minted a token for {', '.join(token.hosts)}{until}."


__all__ = ["HeldToken", "Outcome", "Reconciler", "Serving", "refresh_time"]

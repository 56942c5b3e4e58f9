"""One reconciliation of one RegistryCredential: parse, get a token, fan out, attach, report.

No kopf here: the handlers call `Reconciler.reconcile()` and `Reconciler.cleanup()` and sleep until
the returned wake-up time. The `Reconciler` orchestrates one pass over its parts: the token source
(regcred.tokens), the writer (regcred.writer), the reporter (regcred.report) and the record of what each
credential serves (regcred.serving). Everything that talks to the cluster goes through `KubeApi`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import logging
import random
from collections.abc import Mapping
from typing import Any

from regcred import CREDENTIAL_LABEL, MANAGED_BY_LABEL, MANAGED_BY_VALUE, argocd
from regcred import dockerconfig as dc
from regcred.accounts import AccountWriter
from regcred.clock import Clock
from regcred.config import Settings
from regcred.fanout import SecretAction, format_time, plan_composed
from regcred.imageref import ImageRef, InvalidImageReference
from regcred.kube import KubeApi, KubeError
from regcred.models import CredentialSpec, SpecError, force_sync_request, parse_credential
from regcred.probe import Prober
from regcred.providers import Provider, ProviderError, Token, provider_for
from regcred.redact import HELD
from regcred.report import Reporter, minted_event, token_message
from regcred.serving import CredentialLocks, Serving, ServingRegistry
from regcred.shared import Composer, Contribution, conflict_message
from regcred.status import (
    CREDENTIAL_REJECTED,
    MAX_FAILED_NAMESPACES,
    READY,
    TOKEN_EXPIRING,
    TOKEN_READY,
    VERIFIED,
    Condition,
    FailedNamespace,
    summarise_failures,
)
from regcred.store import StoredToken
from regcred.tokens import ProviderFactory, TokenSource, VerificationFailed, next_mint, provider_hash, still_valid
from regcred.view import ClusterView, selected
from regcred.writer import SecretWriter, WriteBackoff

logger = logging.getLogger("regcred")

# A resync wake-up comes at the resync period, give or take the clock's rounding: it still counts as full.
_FULL_PASS_SLACK = datetime.timedelta(seconds=1)
# A full pass shares a LIST of namespaces or ServiceAccounts that another credential's full pass started this
# recently (at most half the resync period): the watches have kept the view current since.
_SHARED_LIST_AGE = datetime.timedelta(seconds=30)
# How often a pass reads the namespaces again until a read agrees with what it recorded (Reconciler._begin): more
# than once only when namespace events keep coming within microseconds.
_TARGET_READS = 4


@dataclasses.dataclass(frozen=True)
class Outcome:
    """When to reconcile again, how many Secret writes this reconciliation made, and which other credentials
    to wake: those it shares Secrets with, when who shares with whom or a host conflict changed (their status
    says so too, regcred.shared)."""

    wake_at: datetime.datetime
    writes: int = 0
    wake: frozenset[str] = frozenset()


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
        rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self.tokens = TokenSource(kube, settings, rng=rng, prober=prober or Prober(
            insecure_registries=settings.insecure_registries, token_realm_hosts=settings.token_realm_hosts))
        self.writer = SecretWriter(kube, settings)
        self.backoff = WriteBackoff(clock, rng)  # passes whose writes or reads failed, and Retry-After
        self._locks = CredentialLocks()  # one reconciliation or cleanup at a time per credential
        self._sharing = CredentialLocks()  # and per pull Secret name, taken after the credential's
        self.reporter = Reporter(kube, settings, clock, self._locks)
        self.served = ServingRegistry()
        self._full_at: dict[str, datetime.datetime] = {}  # the last pass that LISTed namespaces and accounts
        # Per credential, whom it shared Secrets with and their host conflicts at its last pass.
        self._shared_seen: dict[str, tuple[tuple[str, ...], tuple[tuple[str, tuple[str, ...]], ...]]] = {}
        self.view = view or ClusterView()
        self.accounts = AccountWriter(kube, self.view, self.writer.pool)

    @property
    def _shared_list_age(self) -> datetime.timedelta:
        return min(_SHARED_LIST_AGE, self.settings.resync_interval / 2)

    def close(self) -> None:
        self.writer.close()

    # -- the loop body ---------------------------------------------------------------------------

    def reconcile(self, credential: Mapping[str, Any]) -> Outcome:
        name: str = (credential.get("metadata") or {})["name"]
        with self._locks(name):
            return self._reconcile(name, credential)

    def _reconcile(self, name: str, credential: Mapping[str, Any]) -> Outcome:
        now = self.clock.now()
        not_before = self.backoff.waiting(name, now)
        if not_before is not None:  # the API server asked us to wait (Retry-After)
            return Outcome(wake_at=not_before)
        try:
            spec = parse_credential(name, credential.get("spec") or {})
            provider = self.providers(spec.provider, self.settings)
            verify_image = _parse_verify_image(spec)
        except SpecError as error:
            self.served.stop(name)
            self.reporter.not_ready(name)
            self.reporter.publish(credential, [Condition(READY, "False", error.reason, str(error))], {})
            return Outcome(wake_at=now + self.settings.resync_interval)

        try:
            with contextlib.ExitStack() as turns:
                return self._serve(name, credential, spec, provider, verify_image, now, turns)
        except KubeError as error:  # a read the pass depends on failed: only this credential waits, briefly
            return self._api_failed(credential, error, now)
        finally:
            self.served.end(name)

    def _serve(self, name: str, credential: Mapping[str, Any], spec: CredentialSpec, provider: Provider,
               verify_image: ImageRef | None, now: datetime.datetime, turns: contextlib.ExitStack) -> Outcome:
        # A full pass LISTs namespaces and ServiceAccounts (the first one, and one per resync period); a pass
        # woken by an event between them works from the view the watches keep (regcred.view).
        last_full = self._full_at.get(name)
        full = last_full is None or now - last_full >= self.settings.resync_interval - _FULL_PASS_SLACK
        if full:
            self.view.refresh("namespaces", self.kube.list_namespaces, now, self._shared_list_age)
            self.view.refresh("credentials", self.kube.list_credentials, now, self._shared_list_age)
        targets = self._begin(spec)
        published_status = self.reporter.published(credential)
        sharing = self._overlapping(spec, targets)
        if sharing:  # credentials that write the same Secrets take turns (regcred.shared)
            turns.enter_context(self._sharing(spec.secret_name))
        # One LIST finds the pull Secrets (those of the credentials sharing its Secret's name too) and the Argo CD
        # templates (in namespaces mode, also where those are).
        managed, outputs = argocd.split(self.kube.list_secrets(
            label_selector=_credential_selector(name, *(other.name for other in sharing)),
            also=argocd.namespaces(spec.argocd, published_status)))
        outputs = [o for o in outputs if ((o.get("metadata") or {}).get("labels") or {}).get(CREDENTIAL_LABEL) == name]
        phash = provider_hash(credential.get("spec") or {})

        verification: dict[str, Any] = {}
        previous = self.tokens.previous(spec, phash)
        refresh_failure: ProviderError | None = None
        force = force_sync_request(credential, published_status)
        handled_force = published_status.get("lastForceSync")
        try:
            held, minted = self.tokens.token_for(spec, provider, phash, previous, now, force=force is not None)
            # Status, Events and log lines hide it from now on (a registry or a probe may echo it).
            HELD.hold(name, credentials=[(held.token.username, held.token.password)])
            if minted and verify_image is not None:
                verification = self.tokens.verify(verify_image, held.token, now)
        except ProviderError as error:
            # What is written expires then, whether or not this process minted it.
            self.reporter.refresh_failed(name, previous.token.expires_at if previous is not None else None)
            if previous is None or provider.user_managed or not still_valid(previous.token, now):
                self.reporter.not_ready(name)
                return self._mint_failed(credential, spec, managed, error, now)
            # A provider outage: the token in hand is still good, so it keeps being served (new namespaces,
            # repaired Secrets); only the mint waits for its back-off. Not for what a person keeps in a Secret
            # (static, a PAT): when that cannot be read, nothing vouches for the old content any more.
            held, minted, refresh_failure = previous, False, error
            HELD.hold(name, credentials=[(held.token.username, held.token.password)])
        else:
            self.tokens.minted(name)
            handled_force = force or handled_force  # the provider answered: never forced again for this value
        self.tokens.keep(name, held)
        if minted:
            self.reporter.refreshed(name)

        composer = self._composer(spec, Contribution(spec, StoredToken(held.content, phash, held.minted_at,
                                                                   held.token.expires_at)), sharing)
        listed = {(s.get("metadata") or {}).get("namespace", "") for s in managed
                  if (s.get("metadata") or {}).get("name") == spec.secret_name}
        actions = plan_composed(name, spec.secret_name, composer.wanted(name, targets, listed), managed)
        host_conflicts = composer.conflicts()
        templates = argocd.desired(name, spec.argocd, held.token, held.minted_at, held.token.expires_at)
        template_actions = argocd.plan(templates, outputs)
        revision = dc.content_hash(held.content)
        # Until the pass ends, the watch events of its own writes are known for what they are (no self-wake).
        self.served.writing(name, revision, templates.revisions)
        failed, synced_targets, accounts_changed = self._write(spec, actions, targets, full, now)
        template_failures = self.writer.apply(template_actions, name, templates)
        writes = len(actions)
        if minted or actions or template_actions or accounts_changed:  # default level: one line per pass that acted
            logger.info("Credential %s: %s.", name, _changes(held.token if minted else None, actions, failed,
                                                             accounts_changed, template_actions, template_failures))
        self.served.serve(Serving(credential, spec, frozenset(synced_targets), held.token, revision, held.minted_at,
                                  outputs=templates.revisions))

        synced = summarise_failures(failed)
        # Stable wording whether minted now or reused, so that a no-change resync writes nothing.
        notice = provider.expiry_notice(held.token.expires_at, now) if provider.user_managed else None
        token_condition = Condition(TOKEN_READY, "True", "TokenValid", " ".join(
            filter(None, [token_message(held.token), notice if held.token.expires_at is None else None])))
        expiring = notice is not None and held.token.expires_at is not None
        extra_conditions = [Condition(
            TOKEN_EXPIRING, "True" if expiring else "False", "TokenExpiresSoon" if expiring else "NotExpiringSoon",
            notice if expiring and notice else "The token is not about to expire.",
        )] if provider.user_managed else []
        ready = Condition(READY, synced.status, "Ready" if synced.status == "True" else synced.reason,
                          "Pull secrets are up to date in every selected namespace."
                          if synced.status == "True" else synced.message)
        if host_conflicts and ready.status == "True":  # some pods may get the other credential's entry
            ready = Condition(READY, "False", "HostConflict",
                              conflict_message(name, spec.secret_name, host_conflicts))
        if template_failures and ready.status == "True":  # Argo CD cannot pull charts with it: not ready either
            first = template_failures[0]
            ready = Condition(READY, "False", "ArgoCdSecretConflict" if first.reason == "SecretConflict"
                              else "ArgoCdSecretFailed", f"Argo CD repository credentials: {first.message}")
        wake_at = now + self.settings.resync_interval
        if refresh_failure is not None:
            delay = self.tokens.retry_delay(name, refresh_failure)
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
        rejected_revision = self.served.rejected(name)
        if rejected_revision is not None and rejected_revision != revision:  # a new revision: judged afresh
            self.served.clear_rejected(name)
            self.reporter.rejected(name, False)
            verified.append(Condition(CREDENTIAL_REJECTED, "False", "NewRevision",
                                      "A new revision of the credential is in place; no pod has failed with it yet."))
        if verification:  # only when a freshly minted token was checked; otherwise the last result stands
            verified.append(Condition(VERIFIED, "True", "VerificationSucceeded", verification["message"]))
        elif isinstance(refresh_failure, VerificationFailed):
            verified.append(Condition(VERIFIED, "False", refresh_failure.reason, ready.message))
            verification = refresh_failure.record
        published = self.reporter.publish(
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
                "argocd": argocd.status(spec.argocd, templates, template_failures),
                "sharedWith": composer.sharing_with() or None,
            },
            minted_event=minted_event(held.token) if minted else None,
        )
        if full:
            self._full_at[name] = now
        retry = [f for f in failed + template_failures if f.reason != "SecretConflict"]
        if retry or not published:  # failed writes are retried on their own short back-off, not at the resync
            wake_at = min(wake_at, now + self.backoff.delay(name, [f.retry_after for f in retry]))
        else:
            self.backoff.succeeded(name)
        self.reporter.served(name, ready.status == "True", held.token.expires_at, counts)
        mint_at = next_mint(held, now)
        if mint_at is not None and refresh_failure is None:
            wake_at = min(wake_at, mint_at)
        return Outcome(wake_at=wake_at, writes=writes, wake=self._sharing_changed(name, composer))

    def _begin(self, spec: CredentialSpec) -> list[str]:
        """The namespaces the credential's Secret belongs in, as the view has them, recorded as what its pass in
        flight works from (regcred.serving). Read again once recorded: a namespace event that came between the
        read and the record was judged without it and woke nobody, yet this pass did not see it."""
        targets = self._selected(spec)
        for _ in range(_TARGET_READS):
            self.served.begin(spec.name, spec, frozenset(targets))
            read = self._selected(spec)
            if read == targets:
                break
            targets = read
        else:  # namespaces kept changing as fast as they were read: the last read stands (the resync repairs)
            self.served.begin(spec.name, spec, frozenset(targets))
        return targets

    def _selected(self, spec: CredentialSpec) -> list[str]:
        return sorted(ns.name for ns in self.view.namespaces() if selected(spec, ns, self.settings.watch_namespaces))

    def _write(self, spec: CredentialSpec, actions: list[SecretAction], targets: list[str],
               full: bool, now: datetime.datetime) -> tuple[list[FailedNamespace], list[str], int]:
        """Write the Secrets, then the ServiceAccounts: the failures, where the Secret is in place, how many
        accounts changed."""
        name = spec.name
        # Other credentials' account writes add this one's entry where its Secret is in place: not where it is
        # being created or deleted, until that is done.
        pending = {action.namespace for action in actions if action.verb in ("create", "recreate", "delete")}
        self.accounts.narrow(spec, (ns for ns in targets if ns not in pending))
        failed = self.writer.apply(actions, name, done=lambda action: self.accounts.offer(
            name, action.namespace) if action.verb in ("create", "recreate") else None)
        failed_names = {f.namespace for f in failed}
        synced_targets = [ns for ns in targets if ns not in failed_names]
        # Where our Secret's write failed and is retried, the ServiceAccounts are left as they are: detaching
        # now would only attach again on the retry (two needless writes, and pods made meanwhile get no entry).
        retried = frozenset(f.namespace for f in failed if f.reason != "SecretConflict")
        if full:
            self.view.refresh("serviceaccounts", self.kube.list_service_accounts, now, self._shared_list_age)
        account_failures, accounts_changed = self.accounts.sync(spec, frozenset(synced_targets), leave=retried)
        failed.extend(account_failures)
        return failed, synced_targets, accounts_changed

    def _sharing_changed(self, name: str, composer: Composer) -> frozenset[str]:
        """The credentials to wake because whom this one shares with, or a conflict between them, changed since its
        last pass (those it shared with before and now). Once both have seen it, nobody is woken again."""
        seen = (tuple(composer.sharing_with()), tuple((host, tuple(o)) for host, o in composer.conflicts().items()))
        before = self._shared_seen.get(name, ((), ()))
        if seen == before:
            return frozenset()
        self._shared_seen[name] = seen
        return frozenset(before[0]) | frozenset(seen[0])

    def _overlapping(self, spec: CredentialSpec, targets: list[str]) -> list[CredentialSpec]:
        """The credentials with the same Secret name that select a namespace where this one's Secret goes or was
        (by its last pass): those it shares Secrets with. Others of that name are as unrelated as any."""
        others = [other for other in self.view.sharing(spec.secret_name) if other.name != spec.name]
        if not others:
            return []
        served = self.served.get(spec.name)
        where = [info for info in map(self.view.namespace, set(targets) | (served.namespaces if served else set()))
                 if info is not None]
        watch = self.settings.watch_namespaces
        return [other for other in others if any(selected(other, info, watch) for info in where)]

    def _composer(self, spec: CredentialSpec, own: Contribution | None, sharing: list[CredentialSpec], *,
                  read: bool = True) -> Composer:
        """The composition of the Secrets named like ``spec``'s: its own token (``own``; None: it gives nothing, as
        in its cleanup) and what each credential sharing the name serves (``read``: its store record may be read
        from the cluster; not from the event loop)."""
        contributions = [own] if own is not None else []
        for other in sharing:
            served = self.tokens.served(other.name, read=read)
            if served is not None:
                contributions.append(Contribution(other, served))
        members = [spec.name, *(other.name for other in self.view.sharing(spec.secret_name))]
        return Composer(spec.secret_name, contributions, members, self.view.namespace, self.settings.watch_namespaces)

    def concerned_by_secret(self, body: Mapping[str, Any], deleted: bool) -> list[str]:
        """The credentials a watch event of a written Secret must wake: those whose Secret was deleted, or edited
        by someone else. Intact means: holds what is served now, or what a pass in flight writes (the operator's
        own record, whatever the annotations claim), so that its own writes wake nobody."""
        metadata = body.get("metadata") or {}
        credential = (metadata.get("labels") or {}).get(CREDENTIAL_LABEL)
        if not credential:
            return []
        if argocd.is_output(body):  # an Argo CD template (regcred.argocd)
            intact = self.served.holds_output(credential, argocd.secret_hash(body))
            return [credential] if deleted or not intact else []
        content = dc.decode_data(body)
        sharing = self.view.sharing(str(metadata.get("name", "")))
        if len(sharing) < 2:
            intact = content is not None and self.served.holds(credential, dc.content_hash(content))
            return [credential] if deleted or not intact else []
        # A shared Secret: intact when it holds what the records compose there now (the records change before a
        # pass writes, so its own writes match).
        composer = self._composer(sharing[0], None, sharing, read=False)
        contributors = composer.contributors(str(metadata.get("namespace", "")))
        expected = composer.content(contributors)
        intact = content is not None and expected is not None and content == expected.content
        # Those whose entries belong there (not every credential of that Secret name: each team may have one).
        return sorted({credential, *(c.name for c in contributors)}) if deleted or not intact else []

    def cleanup(self, name: str, credential: Mapping[str, Any] | None = None) -> list[str]:
        """Remove everything a credential wrote: its Secrets (pull Secrets and Argo CD templates, found where its
        spec or status says in namespaces mode) and its ServiceAccount entries. Returns the credentials it shared
        Secrets with (regcred.shared): their status changes too."""
        with self._locks(name):
            shared_with = self._cleanup(name, credential or {})
        self._locks.drop(name)
        return shared_with

    def _cleanup(self, name: str, credential: Mapping[str, Any]) -> list[str]:
        try:
            spec: CredentialSpec | None = parse_credential(name, credential.get("spec") or {})
        except SpecError:
            spec = None
        where = argocd.namespaces(spec.argocd if spec else None, credential.get("status") or {})
        self.view.refresh("credentials", self.kube.list_credentials, self.clock.now(), self._shared_list_age)
        sharing = self._overlapping(spec, self._selected(spec)) if spec is not None else []
        with self._sharing(spec.secret_name) if spec is not None and sharing else contextlib.nullcontext():
            pull, outputs = argocd.split(self.kube.list_secrets(
                label_selector=_credential_selector(name, *(other.name for other in sharing)), also=where))
            if spec is not None and sharing:  # its entries leave the Secrets it shares; the others' stay
                composer = self._composer(spec, None, sharing)
                listed = {s["metadata"]["namespace"] for s in pull if s["metadata"]["name"] == spec.secret_name}
                actions = plan_composed(name, spec.secret_name, composer.wanted(name, (), listed), pull)
            else:
                actions = [SecretAction("delete", s["metadata"]["namespace"], s["metadata"]["name"]) for s in pull]
            actions += [SecretAction("delete", s["metadata"]["namespace"], s["metadata"]["name"]) for s in outputs
                        if s["metadata"].get("labels", {}).get(CREDENTIAL_LABEL) == name]
            self.accounts.withdraw(name)
            self.writer.apply(actions, name)
        self.view.refresh("serviceaccounts", self.kube.list_service_accounts, self.clock.now(),
                          self._shared_list_age)
        self.accounts.detach_everywhere(name)
        self.tokens.delete_stored(name)
        self._forget(name)
        HELD.forget(name)
        logger.info("Removed %d Secret(s) and the ServiceAccount entries of credential %s.", len(actions), name)
        return [other.name for other in sharing]

    def forget(self, name: str) -> None:
        """Drop what this process knows of a credential (held token, what the store and the status hold, what it
        serves, its failures and gauges) once its credential loop stops, e.g. when peering pauses this replica:
        the replica that acts meanwhile mints, writes and publishes, and whatever was cached here is stale when
        this one resumes (it would write its old token back, or skip a status write). Waits for a pass in
        flight, so that none writes its results back afterwards."""
        with self._locks(name):
            self._forget(name)

    def _forget(self, name: str) -> None:
        self.tokens.forget(name)
        self.backoff.forget(name)
        self._full_at.pop(name, None)
        self._shared_seen.pop(name, None)
        self.served.forget(name)
        self.accounts.withdraw(name)
        self.reporter.forget(name)

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
        delay = self.tokens.retry_delay(name, error)
        kept = f" The {len(managed)} Secret(s) already written are left unchanged." if managed else ""
        message = f"{error}{kept} Retrying in {int(delay.total_seconds())}s."
        logger.warning("Credential %s: getting a token failed (%s): %s", name, error.reason, message)
        conditions = [Condition(READY, "False", error.reason, message),
                      Condition(TOKEN_READY, "False", error.reason, message)]
        fields: dict[str, Any] = {}
        if isinstance(error, VerificationFailed):
            conditions.append(Condition(VERIFIED, "False", error.reason, message))
            fields["verification"] = error.record
        self.reporter.publish(credential, conditions, fields)
        return Outcome(wake_at=now + delay)

    def _api_failed(self, credential: Mapping[str, Any], error: KubeError, now: datetime.datetime) -> Outcome:
        """A read the reconciliation needs failed (listing namespaces, Secrets or ServiceAccounts): one line in
        the log, Ready=False saying so, and another try in seconds. What is written stays as it is."""
        name: str = (credential.get("metadata") or {})["name"]
        delay = self.backoff.delay(name, [error.retry_after])
        message = (f"Could not read the cluster ({error.reason or error.status}: {error.message[:200]}). "
                   f"Retrying in {int(delay.total_seconds())}s.")
        logger.warning("Credential %s: %s", name, message)
        self.reporter.not_ready(name)
        self.reporter.publish(credential, [Condition(READY, "False", "ApiUnavailable", message)], {})
        return Outcome(wake_at=now + delay)


def _parse_verify_image(spec: CredentialSpec) -> ImageRef | None:
    if spec.verify_image is None:
        return None
    try:
        return ImageRef.parse(spec.verify_image)
    except InvalidImageReference as error:
        raise SpecError(f"spec.verify.image {spec.verify_image!r} is not an image reference: {error}") from None


def _credential_selector(*names: str) -> str:
    """The pull Secrets (and Argo CD templates) labelled with any of these credentials."""
    if len(names) == 1:
        return f"{MANAGED_BY_LABEL}={MANAGED_BY_VALUE},{CREDENTIAL_LABEL}={names[0]}"
    return f"{MANAGED_BY_LABEL}={MANAGED_BY_VALUE},{CREDENTIAL_LABEL} in ({','.join(sorted(names))})"


def _changes(minted: Token | None, actions: list[SecretAction], failed: list[FailedNamespace],
             accounts_changed: int, template_actions: list[SecretAction], template_failures: list[FailedNamespace]
             ) -> str:
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
    failed_templates = {f.namespace for f in template_failures}
    templates = [f"{verbs[a.verb]} {a.namespace}/{a.name}" for a in template_actions
                 if a.namespace not in failed_templates]
    if templates:
        parts.append(f"Argo CD repository credentials {', '.join(templates)}")
    if template_failures:
        parts.append("Argo CD repository credentials failed (see its status)")
    if accounts_changed:
        parts.append(f"{accounts_changed} ServiceAccount(s) updated")
    if failed:
        parts.append(f"{len(failed_namespaces)} namespace(s) failed (see its status)")
    return "; ".join(parts) or "nothing changed"



__all__ = ["Outcome", "Reconciler"]

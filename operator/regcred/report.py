"""The reporter: a credential's status (written only when it changed), its Events and its gauges.

The operator is the only writer of a credential's status; this keeps what this process last wrote, since the
object a pass is handed may not show that write yet (watch lag).
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Mapping
from typing import Any

from regcred import GROUP, KIND, VERSION, metrics
from regcred.clock import Clock
from regcred.config import Settings
from regcred.fanout import format_time
from regcred.kube import KubeApi, KubeError
from regcred.models import provider_key
from regcred.providers import Token
from regcred.redact import redact_json
from regcred.serving import CredentialLocks
from regcred.status import READY, SECRETS_SYNCED, TOKEN_EXPIRING, Condition, find_condition, merge_conditions

logger = logging.getLogger("regcred")


class Reporter:
    def __init__(self, kube: KubeApi, settings: Settings, clock: Clock, locks: CredentialLocks) -> None:
        self.kube = kube
        self.settings = settings
        self.clock = clock
        self._locks = locks
        # The status this process last wrote, per credential.
        self._published: dict[str, Mapping[str, Any]] = {}

    def published(self, credential: Mapping[str, Any]) -> Mapping[str, Any]:
        """The credential's status as this process last wrote it, else as the object shows it."""
        name: str = (credential.get("metadata") or {})["name"]
        return self._published.get(name) or credential.get("status") or {}

    def publish(
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
        with self._locks(name):
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

    # -- gauges and counters (regcred.metrics) --------------------------------------------------------

    def not_ready(self, name: str) -> None:
        metrics.CREDENTIAL_READY.labels(name).set(0)

    def refreshed(self, name: str) -> None:
        metrics.REFRESHES.labels(name, "success").inc()

    def refresh_failed(self, name: str, expires_at: datetime.datetime | None) -> None:
        """A mint failed; ``expires_at``: when the token in hand (written, whoever minted it) expires."""
        metrics.REFRESHES.labels(name, "failure").inc()
        if expires_at is not None:  # the expiry alerts need it
            metrics.TOKEN_EXPIRY.labels(name).set(expires_at.timestamp())

    def rejected(self, name: str, rejected: bool) -> None:
        """Whether the registry rejects the credential's revision in place (CredentialRejected)."""
        metrics.CREDENTIAL_REJECTED.labels(name).set(1 if rejected else 0)

    def served(self, name: str, ready: bool, expires_at: datetime.datetime | None, counts: Mapping[str, int]
               ) -> None:
        """The gauges of a pass that served: Ready, the token's expiry, the namespaces by state."""
        metrics.CREDENTIAL_READY.labels(name).set(1 if ready else 0)
        if expires_at is not None:
            metrics.TOKEN_EXPIRY.labels(name).set(expires_at.timestamp())
        for state, count in counts.items():
            metrics.NAMESPACES.labels(name, state).set(count)

    def forget(self, name: str) -> None:
        """Drop what this process wrote for the credential: its status record and its gauges."""
        self._published.pop(name, None)
        metrics.forget(name)


def token_message(token: Token) -> str:
    until = f"is valid until {format_time(token.expires_at)}" if token.expires_at else "does not expire"
    return f"The token for {', '.join(token.hosts)} {until}."


def minted_event(token: Token) -> tuple[str, str]:
    until = f", valid until {format_time(token.expires_at)}" if token.expires_at else ""
    return "TokenRefreshed", f"Minted a token for {', '.join(token.hosts)}{until}."


__all__ = ["Reporter", "minted_event", "token_message"]

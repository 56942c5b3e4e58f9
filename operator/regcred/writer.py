"""The writer: applies a credential's planned Secret actions (regcred.fanout) on a bounded pool, and the
short back-off of a credential whose writes failed.

A failed write costs only its namespace: it comes back as a `FailedNamespace`, the others go on.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from regcred import metrics
from regcred.clock import Clock
from regcred.config import Settings
from regcred.fanout import SecretAction
from regcred.kube import KubeApi, KubeError
from regcred.status import FailedNamespace

logger = logging.getLogger("regcred")

# Back-off of a credential whose writes failed: seconds, not the resync period.
_WRITE_RETRY_INITIAL = datetime.timedelta(seconds=1)
_WRITE_RETRY_MAX = datetime.timedelta(seconds=60)


class SecretConflict(Exception):
    """A Secret of the wanted name exists and is someone else's: it is left alone and reported."""


def failure_reason(error: KubeError) -> str:
    """The CamelCase reason a failed write is reported with."""
    if error.status == 403:
        return "Forbidden"
    return error.reason if error.reason and error.reason.isalpha() else "WriteFailed"


class Desired(Protocol):
    """What a credential's Secrets of one kind must be (its pull Secrets, or its Argo CD templates): enough to
    tell an existing Secret of the wanted name apart from someone else's, and to repair it."""

    @property
    def secret_type(self) -> str: ...

    def owns(self, existing: Mapping[str, Any]) -> bool: ...

    def repair(self, existing: Mapping[str, Any]) -> dict[str, Any] | None: ...


class SecretWriter:
    def __init__(self, kube: KubeApi, settings: Settings) -> None:
        self.kube = kube
        self.pool = concurrent.futures.ThreadPoolExecutor(settings.write_concurrency, "regcred-write")

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    def apply(self, actions: Sequence[SecretAction], credential: str, desired: Desired | None = None, *,
              done: Callable[[SecretAction], None] | None = None) -> list[FailedNamespace]:
        """Run the actions on the write pool: the namespaces whose write failed (the others are done). ``done`` is
        called with each action as soon as it succeeded (from a pool thread)."""
        def run(action: SecretAction) -> FailedNamespace | None:
            failure = self._apply(action, credential, desired)
            if failure is None and done is not None:
                done(action)
            return failure

        return [f for f in self.pool.map(run, actions) if f is not None]

    def _apply(self, action: SecretAction, credential: str, desired: Desired | None = None
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
            return FailedNamespace(action.namespace, failure_reason(error),
                                   f"Could not {action.verb} Secret {where}: {error.reason or error.status}.",
                                   retry_after=error.retry_after)
        return None

    def _create(self, action: SecretAction, desired: Desired | None) -> None:
        """Create the Secret; when one of that name exists already (409), look before calling it a conflict: our
        own (a write that raced ours, or a list that lagged) is patched; another's is left alone."""
        if action.content is not None:  # a pull Secret: its body is built now, and it judges what it finds
            desired = action.content
        body = action.content.body(action.namespace) if action.content is not None else action.body
        try:
            self.kube.create_secret(action.namespace, body or {})
            return
        except KubeError as error:
            if not error.conflict:
                raise
        existing = self.kube.read_secret(action.namespace, action.name)
        if existing is None:  # gone again in between: the next pass creates it
            raise KubeError(409, "Conflict", f"Secret {action.namespace}/{action.name} was created and deleted "
                                             "while being written")
        if desired is None or not desired.owns(existing):
            raise SecretConflict(f"Secret {action.namespace}/{action.name} exists and is not managed by "
                                 "regcred-operator; it was left alone.")
        if existing.get("type") != desired.secret_type:
            raise KubeError(409, "Conflict", f"Secret {action.namespace}/{action.name} has another type")
        patch = desired.repair(existing)
        if patch is not None:
            self.kube.patch_secret(action.namespace, action.name, patch)


class WriteBackoff:
    """Per credential: passes in a row whose writes (or reads, or status write) failed, and the time before
    which the API server asked for no further pass (Retry-After)."""

    def __init__(self, clock: Clock, rng: random.Random) -> None:
        self.clock = clock
        self.rng = rng
        self._failures: dict[str, int] = {}
        self._not_before: dict[str, datetime.datetime] = {}

    def waiting(self, name: str, now: datetime.datetime) -> datetime.datetime | None:
        """Until when the API server asked this credential to wait (None: it may go ahead)."""
        not_before = self._not_before.get(name)
        return not_before if not_before is not None and now < not_before else None

    def delay(self, name: str, retry_after: list[float | None]) -> datetime.timedelta:
        """Failed writes (and a status that could not be written) are tried again in seconds, doubling per pass
        that still fails, and never sooner than the API server asked (Retry-After)."""
        failures = self._failures[name] = self._failures.get(name, 0) + 1
        delay: datetime.timedelta = min(_WRITE_RETRY_INITIAL * 2 ** (failures - 1), _WRITE_RETRY_MAX)
        delay *= self.rng.uniform(0.8, 1.0)
        asked = datetime.timedelta(seconds=max((s for s in retry_after if s is not None), default=0.0))
        if asked:  # honoured even when an event wakes the credential sooner (at most a minute)
            self._not_before[name] = self.clock.now() + min(asked, _WRITE_RETRY_MAX)
        return max(delay, asked)

    def succeeded(self, name: str) -> None:
        self._failures.pop(name, None)
        self._not_before.pop(name, None)

    forget = succeeded


__all__ = ["SecretConflict", "SecretWriter", "WriteBackoff", "failure_reason"]

"""Watching the Secrets that credentials read (a static secretRef, cloud keys, a PAT, an app key).

A rotated password, or a missing source Secret created at last, is applied within seconds rather than at
the next resync. kopf already watches Secrets, with a server-side label selector for the ones the operator
writes, and cannot watch the same resource twice with other selectors; so this module keeps one small watch
per referenced Secret, selected by the API server by namespace and name (`fieldSelector=metadata.name=...`
in that namespace): no other Secret of the cluster is ever sent to the operator.

The set of referenced Secrets comes from the credentials' parsed specs: each credential's daemon tells
`SourceWatcher.track` what it references before each reconciliation, and `forget` when it stops (deleted,
or this replica paused by peering), so watches run only while this replica serves a credential that needs
them. A change (ADDED, MODIFIED, DELETED) kicks every credential that references that Secret.

Each watch is a thread (the official client's streams block): it lists the one Secret (for a
resourceVersion), watches from there, resumes from the last resourceVersion it saw when the server closes
the stream, and lists again on 410 Gone. A failure (403 in namespaces mode, the network) backs off and is
retried, is logged once per change of state, and never stops anything else.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Protocol

from regcred.kube import KubeError, WatchStream
from regcred.models import SpecError, parse_credential

logger = logging.getLogger("regcred")

Ref = tuple[str, str]  # (namespace, name) of a source Secret

# The API server closes each watch after this long (the watch then resumes from its resourceVersion): a
# silently dead connection is noticed within about this long.
WATCH_TIMEOUT_SECONDS = 290


class WatchApi(Protocol):
    """What a watch needs of regcred.kube.KubeApi."""

    def secret_list_version(self, namespace: str, name: str) -> str: ...

    def watch_secret(self, namespace: str, name: str, resource_version: str, *, timeout_seconds: int,
                     on_open: Callable[[WatchStream], None] | None = None) -> Iterator[dict[str, Any]]: ...


def referenced_secrets(credential: Mapping[str, Any]) -> frozenset[Ref]:
    """The (namespace, name) of every Secret a credential's provider reads; none for a spec that does not parse."""
    name = (credential.get("metadata") or {}).get("name") or ""
    try:
        return parse_credential(name, credential.get("spec") or {}).source_secrets
    except SpecError:
        return frozenset()


class SourceWatcher:
    """Which credentials reference which Secrets, and one watch per referenced Secret (at most max_watches).

    ``kick(credential)`` is called from the watch threads: it must be thread-safe. Safe to use from any thread.
    """

    def __init__(
        self, api: Callable[[], WatchApi], kick: Callable[[str], None], *, max_watches: int = 100,
        retry_initial: float = 1.0, retry_max: float = 60.0, timeout_seconds: int = WATCH_TIMEOUT_SECONDS,
    ) -> None:
        self._make_api = api
        self._api: WatchApi | None = None
        self._kick = kick
        self.max_watches = max_watches
        self.retry_initial, self.retry_max = retry_initial, retry_max
        self.timeout_seconds = timeout_seconds
        self._lock = threading.Lock()
        self._refs: dict[str, frozenset[Ref]] = {}  # per credential
        self._watches: dict[Ref, _SecretWatch] = {}
        self._over_limit = False
        self._closed = False

    # -- the referenced set --------------------------------------------------------------------------

    def track(self, credential: str, refs: Iterable[Ref]) -> None:
        """What a credential references now; watches start and stop to match."""
        wanted = frozenset(refs)
        with self._lock:
            if self._closed or self._refs.get(credential, frozenset()) == wanted:
                return
            if wanted:
                self._refs[credential] = wanted
            else:
                self._refs.pop(credential, None)
            stopped = self._sync()
        for watch in stopped:
            watch.stop()

    def forget(self, credential: str) -> None:
        self.track(credential, ())

    def credentials_for(self, ref: Ref) -> list[str]:
        with self._lock:
            return sorted(name for name, refs in self._refs.items() if ref in refs)

    @property
    def watched(self) -> frozenset[Ref]:
        with self._lock:
            return frozenset(self._watches)

    def _sync(self) -> list[_SecretWatch]:
        """Start the watches now wanted and take out the others (returned, to be stopped outside the lock)."""
        wanted = sorted(set().union(*self._refs.values()))
        over = len(wanted) > self.max_watches
        if over != self._over_limit:
            self._over_limit = over
            if over:
                logger.warning("Credentials reference %d source Secrets; only %d are watched "
                               "(REGCRED_MAX_SOURCE_WATCHES): changes to the others are applied at the next resync.",
                               len(wanted), self.max_watches)
            else:
                logger.info("Every referenced source Secret is watched again (%d).", len(wanted))
        keep = set(wanted[:self.max_watches])
        stopped = [self._watches.pop(ref) for ref in list(self._watches) if ref not in keep]
        for ref in sorted(keep - set(self._watches)):
            if self._api is None:
                self._api = self._make_api()
            watch = _SecretWatch(ref, self._api, self._changed, retry=(self.retry_initial, self.retry_max),
                                 timeout_seconds=self.timeout_seconds)
            self._watches[ref] = watch
            watch.start()
        return stopped

    def _changed(self, ref: Ref) -> None:
        for credential in self.credentials_for(ref):
            self._kick(credential)

    def close(self, timeout: float = 2.0) -> None:
        """Stop every watch (operator shutdown)."""
        with self._lock:
            self._closed = True
            watches = list(self._watches.values())
            self._watches.clear()
            self._refs.clear()
            api, self._api = self._api, None
        for watch in watches:
            watch.stop()
        deadline = time.monotonic() + timeout  # for them all: a thread still in a LIST is a daemon, left to end
        for watch in watches:
            watch.join(max(deadline - time.monotonic(), 0.0))
        close = getattr(getattr(api, "api_client", None), "close", None)
        if close is not None:
            close()


class _SecretWatch:
    """One Secret's watch, in a thread of its own, until stop()."""

    def __init__(self, ref: Ref, api: WatchApi, changed: Callable[[Ref], None], *, retry: tuple[float, float],
                 timeout_seconds: int) -> None:
        self.ref = ref
        self._api = api
        self._changed = changed
        self._retry = retry
        self._timeout_seconds = timeout_seconds
        self._stopped = threading.Event()
        self._stream: WatchStream | None = None
        self._state = ""
        self._failures = 0
        self._thread = threading.Thread(target=self._run, name=f"regcred-source-{ref[0]}/{ref[1]}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        stream = self._stream
        if stream is not None:
            stream.close()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def _opened(self, stream: WatchStream) -> None:
        self._stream = stream
        if self._stopped.is_set():
            stream.close()
        self._failures = 0
        self._report("watching")

    def _report(self, state: str) -> None:
        """One log line per change of state, not per retry."""
        if state == self._state:
            return
        where = f"{self.ref[0]}/{self.ref[1]}"
        if state == "watching":
            (logger.info if self._state else logger.debug)("Watching source Secret %s%s.", where,
                                                           " again" if self._state else "")
        else:
            logger.warning("Cannot watch source Secret %s (%s); retrying with back-off. Its changes are applied "
                           "at the next resync until then.", where, state)
        self._state = state

    def _run(self) -> None:
        namespace, name = self.ref
        version = ""  # empty: list first
        listed = False
        while not self._stopped.is_set():
            try:
                if not version:
                    version = self._api.secret_list_version(namespace, name)
                    if listed:  # listed again (410 Gone, a failure): a change may have gone unseen meanwhile
                        self._changed(self.ref)
                    listed = True
                version = self._watch_from(version)
            except Exception as error:  # a watch never crashes anything: back off and retry
                if self._stopped.is_set():
                    break
                self._failures += 1
                self._report(_describe(error))
                initial, most = self._retry
                delay = min(initial * 2 ** min(self._failures - 1, 16), most) * random.uniform(0.8, 1.0)  # noqa: S311
                self._stopped.wait(delay)
            finally:
                self._stream = None

    def _watch_from(self, version: str) -> str:
        """Watch until the server ends the stream; the resourceVersion to resume from (empty: list again)."""
        namespace, name = self.ref
        for event in self._api.watch_secret(namespace, name, version, timeout_seconds=self._timeout_seconds,
                                            on_open=self._opened):
            if self._stopped.is_set():
                break
            kind, obj = event.get("type"), event.get("object") or {}
            if kind == "ERROR":
                if obj.get("code") == 410:  # the resourceVersion is too old: list again
                    return ""
                raise KubeError(int(obj.get("code") or 500), str(obj.get("reason") or "Error"),
                                str(obj.get("message") or ""))
            version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
            if kind in ("ADDED", "MODIFIED", "DELETED"):
                self._changed(self.ref)
        return version


def _describe(error: Exception) -> str:
    if isinstance(error, KubeError):
        return f"{error.status} {error.reason}" if error.status else error.reason
    return type(error).__name__


__all__ = ["WATCH_TIMEOUT_SECONDS", "Ref", "SourceWatcher", "referenced_secrets"]

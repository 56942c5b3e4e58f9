"""The one scrubber of everything the operator shows: status, Events, log lines, `regcred doctor`, and the
texts that providers and the registry probe build from what a registry or a cloud answered.

:func:`redact` is applied once a text is formatted and before it is cut to a length: every secret in play
is replaced by one marker, and only then is the text shortened, so that a cut can never leave the first
half of a secret behind (a registry that echoes the credential it was sent would otherwise get a prefix of
it into a Ready message). The secrets in play are those the caller names (a provider's source keys, a
probe's password and Bearer token) and those the operator holds (:data:`HELD`: the tokens it wrote, which
the reconciler registers), in every form they are written in: as they are, JSON-escaped, line by line,
base64 (standard and URL-safe, padded or not, alone or inside a longer base64 text) and, for a user name
and password, base64 of ``user:password`` (the HTTP Basic and ``.dockerconfigjson`` ``auth`` form).
"""

from __future__ import annotations

import base64
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

MARKER = "<redacted>"
ELLIPSIS = "…"
MIN_SECRET = 4  # a shorter "secret" would blank out ordinary words
_MIN_PART = 8  # a line of a secret, or a piece of its base64 inside a longer base64 text
_MIN_LINE = 16  # lines of a multi-line secret (a PEM key) hidden one by one

Credentials = tuple[str, str]  # (username, password)


def forms(secret: str) -> set[str]:
    """Every way ``secret`` may be written in a text: itself, JSON-escaped, each long line, and base64."""
    if len(secret) < MIN_SECRET:
        return set()
    found = {secret, json.dumps(secret)[1:-1]}
    found.update(line.strip() for line in secret.splitlines()
                 if len(line.strip()) >= _MIN_LINE and not line.startswith("-----"))
    found.update(_base64_forms(secret.encode()))
    return {form for form in found if len(form) >= MIN_SECRET and form not in MARKER}


def credential_forms(username: str, password: str) -> set[str]:
    """The password's forms and base64 of ``user:password``."""
    return forms(password) | _base64_forms(f"{username}:{password}".encode()) if password else set()


def _base64_forms(raw: bytes) -> set[str]:
    """``raw`` in base64, whole (with and without padding), and the part of its encoding that does not
    depend on what comes before or after it in a longer base64 text, at each of the three alignments."""
    found: set[str] = set()
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw).decode()
        if offset == 0:
            found.update({encoded, encoded.rstrip("=")})
        core = encoded.rstrip("=")[(offset * 4 + 2) // 3: len(encoded.rstrip("=")) - 2]
        if len(core) >= _MIN_PART:
            found.add(core)
    return found | {form.translate(str.maketrans("+/", "-_")) for form in found}


class Needles:
    """A set of strings to hide, indexed by their first characters: finding them all costs one dictionary
    lookup per character of the text, however many secrets are held."""

    def __init__(self, needles: Iterable[str] = ()) -> None:
        index: dict[str, list[str]] = {}
        for needle in set(needles):
            if len(needle) >= MIN_SECRET:
                index.setdefault(needle[:MIN_SECRET], []).append(needle)
        self._index = {head: sorted(found, key=len, reverse=True) for head, found in index.items()}

    def __bool__(self) -> bool:
        return bool(self._index)

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Where the needles occur in ``text``, overlapping ones included."""
        found: list[tuple[int, int]] = []
        if not self._index:
            return found
        for start in range(len(text) - MIN_SECRET + 1):
            for needle in self._index.get(text[start:start + MIN_SECRET], ()):
                if text.startswith(needle, start):
                    found.append((start, start + len(needle)))
                    break  # the longest one here; shorter ones here lie inside it
        return found


def redact(
    text: str,
    secrets: Iterable[str] = (),
    *,
    credentials: Iterable[Credentials] = (),
    limit: int | None = None,
) -> str:
    """``text`` with every form of each secret (``secrets``, the passwords of ``credentials`` and base64 of
    their ``user:password``, and every secret in :data:`HELD`) replaced by :data:`MARKER`, then cut to at
    most ``limit`` characters (ending in an ellipsis when cut).

    Overlapping or adjacent occurrences become a single marker, so that no piece of either survives.
    """
    return _redact(text, Needles(_needles_of(secrets, credentials)), limit)


def _redact(text: str, given: Needles, limit: int | None = None) -> str:
    merged: list[list[int]] = []
    for start, stop in sorted(HELD.needles().spans(text) + given.spans(text)):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], stop)
        else:
            merged.append([start, stop])
    if merged:
        parts, end = [], 0
        for start, stop in merged:
            parts += [text[end:start], MARKER]
            end = stop
        parts.append(text[end:])
        text = "".join(parts)
    if limit is not None and len(text) > limit:
        cut = limit - len(ELLIPSIS)
        marker = text.find(MARKER, max(cut - len(MARKER) + 1, 0))
        if marker != -1 and marker < cut:
            cut = marker  # a marker cut in half would only puzzle a reader
        text = text[:cut] + ELLIPSIS
    return text


def _needles_of(secrets: Iterable[str], credentials: Iterable[Credentials]) -> set[str]:
    found = {form for secret in secrets for form in forms(secret)}
    found.update(form for username, password in credentials for form in credential_forms(username, password))
    return found


class HeldSecrets:
    """The secrets the operator holds now, by owner (a credential's name), for the texts whose callers do not
    know them: status, Events and log lines. Bounded: the newest few per owner, and the newest owners."""

    PER_OWNER = 4  # the token in place, and the last few minted (one that failed verification, say)
    MAX_OWNERS = 4096

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: OrderedDict[str, tuple[frozenset[str], ...]] = OrderedDict()
        self._needles: Needles | None = Needles()

    def hold(self, owner: str, *secrets: str, credentials: Iterable[Credentials] = ()) -> None:
        entry = frozenset(_needles_of(secrets, credentials))
        with self._lock:
            previous = self._held.pop(owner, ())
            self._held[owner] = (entry, *(e for e in previous if e != entry))[: self.PER_OWNER]
            while len(self._held) > self.MAX_OWNERS:
                self._held.popitem(last=False)
            if previous[:1] != (entry,):  # a reconciliation that keeps its token changes nothing
                self._needles = None

    def forget(self, owner: str) -> None:
        with self._lock:
            if self._held.pop(owner, None) is not None:
                self._needles = None

    def clear(self) -> None:
        with self._lock:
            self._held.clear()
            self._needles = None

    def needles(self) -> Needles:
        with self._lock:
            if self._needles is None:
                self._needles = Needles(form for entries in self._held.values() for entry in entries for form in entry)
            return self._needles


HELD = HeldSecrets()


def redact_json(value: Any, secrets: Iterable[str] = (), *, credentials: Iterable[Credentials] = ()) -> Any:
    """``value`` (JSON: dicts, lists, strings, numbers) with :func:`redact` applied to every string."""
    given = Needles(_needles_of(secrets, credentials))
    return map_strings(value, lambda text: _redact(text, given))


def map_strings(value: Any, change: Callable[[str], str]) -> Any:
    """``value`` (JSON) with ``change`` applied to every string in it, keys included."""
    if isinstance(value, str):
        return change(value)
    if isinstance(value, Mapping):
        return {map_strings(k, change): map_strings(v, change) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [map_strings(v, change) for v in value]
    return value

"""The pull Secret's content: a `kubernetes.io/dockerconfigjson` document, and reading one back."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from regcred.providers.base import Token

SECRET_TYPE = "kubernetes.io/dockerconfigjson"  # noqa: S105 - a type name, not a password
DATA_KEY = ".dockerconfigjson"


def render(token: Token) -> bytes:
    """The `.dockerconfigjson` bytes for a token: one `auths` entry per host. Deterministic for hashing."""
    auth = base64.b64encode(f"{token.username}:{token.password}".encode()).decode()
    entries = {host: {"username": token.username, "password": token.password, "auth": auth} for host in token.hosts}
    return _canonical(entries)


def _canonical(entries: Mapping[str, Any]) -> bytes:
    return json.dumps({"auths": entries}, sort_keys=True, separators=(",", ":")).encode()


def auths(content: bytes) -> dict[str, Any] | None:
    """The `auths` entries of `.dockerconfigjson` bytes, or None when they are not a JSON object of objects
    (the content of a Secret in a target namespace may have been written by a tenant)."""
    try:
        document = json.loads(content)
    except (ValueError, RecursionError):
        return None
    entries = document.get("auths") if isinstance(document, dict) else None
    if not isinstance(entries, dict) or not all(isinstance(entry, dict) for entry in entries.values()):
        return None
    return entries


def compose(contents: Sequence[bytes]) -> bytes:
    """One `.dockerconfigjson` holding the entries of several credentials' contents (regcred.shared). A host
    given twice keeps the entry of the first content; one content comes back as it is rendered."""
    merged: dict[str, Any] = {}
    for content in contents:
        for host, entry in (auths(content) or {}).items():
            merged.setdefault(host, entry)
    return _canonical(merged)


def member_revision(content: bytes, hosts: Sequence[str]) -> str | None:
    """The revision of one credential's entries inside a Secret that may hold other credentials' too: the hash
    of those hosts' entries as `render` writes them, so that for a Secret holding only that credential's token
    it is its content hash. None when the content cannot be read or lacks one of the hosts."""
    entries = auths(content)
    if entries is None or not hosts or any(host not in entries for host in hosts):
        return None
    return content_hash(_canonical({host: entries[host] for host in hosts}))


def content_hash(content: bytes) -> str:
    """A short digest of the secret content, safe to show (a hash of a high-entropy token reveals nothing)."""
    return hashlib.sha256(content).hexdigest()[:32]


def encode_data(content: bytes) -> dict[str, str]:
    return {DATA_KEY: base64.b64encode(content).decode()}


def decode_data(secret: Mapping[str, Any]) -> bytes | None:
    """The `.dockerconfigjson` bytes of a Secret as listed by the API, or None when absent or malformed."""
    encoded = (secret.get("data") or {}).get(DATA_KEY)
    if not isinstance(encoded, str):
        return None
    try:
        return base64.b64decode(encoded, validate=True)
    except ValueError:  # binascii.Error, or a str that is not ASCII
        return None


def parse_token(content: bytes, expires_at: datetime.datetime | None) -> Token | None:
    """Rebuild the Token a Secret was rendered from (so a restart need not mint again), or None.

    The content may have been edited by a tenant: anything but one username and password for every host
    (or JSON nested too deep to read) is None.
    """
    entries = auths(content)
    if not entries:
        return None
    hosts = tuple(sorted(entries))
    username, password = entries[hosts[0]].get("username"), entries[hosts[0]].get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        return None
    if not all(entries[h].get("username") == username and entries[h].get("password") == password for h in hosts):
        return None
    return Token(hosts=hosts, username=username, password=password, expires_at=expires_at)

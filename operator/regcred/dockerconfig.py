"""The pull Secret's content: a `kubernetes.io/dockerconfigjson` document, and reading one back."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from regcred.providers.base import Token

SECRET_TYPE = "kubernetes.io/dockerconfigjson"  # noqa: S105 - a type name, not a password
DATA_KEY = ".dockerconfigjson"


def render(token: Token) -> bytes:
    """The `.dockerconfigjson` bytes for a token: one `auths` entry per host. Deterministic for hashing."""
    auth = base64.b64encode(f"{token.username}:{token.password}".encode()).decode()
    entries = {host: {"username": token.username, "password": token.password, "auth": auth} for host in token.hosts}
    return json.dumps({"auths": entries}, sort_keys=True, separators=(",", ":")).encode()


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
    try:
        document = json.loads(content)
    except (ValueError, RecursionError):
        return None
    auths = document.get("auths") if isinstance(document, dict) else None
    if not isinstance(auths, dict) or not auths or not all(isinstance(entry, dict) for entry in auths.values()):
        return None
    hosts = tuple(sorted(auths))
    username, password = auths[hosts[0]].get("username"), auths[hosts[0]].get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        return None
    if not all(auths[h].get("username") == username and auths[h].get("password") == password for h in hosts):
        return None
    return Token(hosts=hosts, username=username, password=password, expires_at=expires_at)

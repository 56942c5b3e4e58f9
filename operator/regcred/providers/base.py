"""The one small interface every registry provider implements."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable, Mapping
from typing import Protocol


@dataclasses.dataclass(frozen=True)
class Token:
    """A registry credential as minted: which hosts it opens, with which username and password, until when.

    ``expires_at`` is None for credentials that do not expire by themselves (static ones).
    """

    hosts: tuple[str, ...]
    username: str
    password: str = dataclasses.field(repr=False)  # never in a repr, so never in a log line
    expires_at: datetime.datetime | None

    def __post_init__(self) -> None:
        if not self.hosts:
            raise ValueError("a token must open at least one registry host")
        if self.expires_at is not None and self.expires_at.tzinfo is None:
            raise ValueError("expires_at must be timezone-aware")


# Reads a Kubernetes Secret's decoded data: (namespace, name) -> {key: bytes}.
# Raises SourceSecretNotFound when it does not exist. Injected by the caller, so that
# providers never talk to the Kubernetes API themselves.
SecretReader = Callable[[str, str], Mapping[str, bytes]]


class ProviderError(Exception):
    """Minting failed. ``reason`` is a CamelCase condition reason; the message is a sentence for users.

    Messages never contain secret values.
    """

    reason: str = "MintFailed"
    # Whether retrying the same spec can help (a network blip) or the user must change something.
    retryable: bool = True

    def __init__(self, message: str, *, reason: str | None = None, retryable: bool | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason
        if retryable is not None:
            self.retryable = retryable


class SourceSecretNotFound(ProviderError):
    reason = "SourceSecretNotFound"
    retryable = False


class InvalidSourceSecret(ProviderError):
    reason = "InvalidSourceSecret"
    retryable = False


class Provider(Protocol):
    """Mints one Token for a credential's provider block. Called once per credential per lifetime.

    ``user_managed`` providers (static credentials, GitHub PATs) only read what a person put in a Secret:
    the operator cannot renew it, so it re-reads the Secret at every reconciliation instead of keeping
    the token until a refresh time, and only reports (and warns about) its expiry.
    """

    @property
    def user_managed(self) -> bool: ...

    def mint(self, read_secret: SecretReader) -> Token: ...

    def expiry_notice(self, expires_at: datetime.datetime | None, now: datetime.datetime) -> str | None:
        """A sentence for status about a user-managed token's expiry (soon, never, unknown), or None."""
        ...


def utcnow() -> datetime.datetime:
    """The providers' default clock (a test gives its own)."""
    return datetime.datetime.now(datetime.UTC)

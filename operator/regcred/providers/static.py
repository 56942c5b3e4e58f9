"""Fixed credentials from a Secret: Docker Hub access tokens, Harbor/Quay robots, self-hosted registries."""

from __future__ import annotations

import datetime

from regcred.models import StaticSpec
from regcred.providers.base import InvalidSourceSecret, SecretReader, Token

# The pull Secret holds the password twice (once base64-encoded): this keeps it under the API's 1 MiB.
MAX_VALUE_BYTES = 256 * 1024


class StaticProvider:
    user_managed = True  # the operator re-reads the Secret; it cannot renew what a person created

    def __init__(self, spec: StaticSpec) -> None:
        self.spec = spec

    def expiry_notice(self, expires_at: datetime.datetime | None, now: datetime.datetime) -> str | None:
        return None  # nothing a person must do about it

    def mint(self, read_secret: SecretReader) -> Token:
        ref = self.spec.secret_ref
        data = read_secret(ref.namespace, ref.name)
        missing = [key for key in ("username", "password") if not data.get(key)]
        if missing:
            raise InvalidSourceSecret(
                f"Secret {ref} has no {' or '.join(missing)} key; "
                "a static credential needs both `username` and `password`."
            )
        if max(len(data["username"]), len(data["password"])) > MAX_VALUE_BYTES:
            raise InvalidSourceSecret(
                f"Secret {ref} holds a username or password longer than {MAX_VALUE_BYTES // 1024} KiB; a pull "
                "Secret must fit the API's 1 MiB limit with the password in it twice."
            )
        try:
            username, password = data["username"].decode(), data["password"].decode()
        except UnicodeDecodeError:
            raise InvalidSourceSecret(f"Secret {ref} holds a username or password that is not UTF-8 text.") from None
        return Token(hosts=(self.spec.registry,), username=username, password=password, expires_at=None)

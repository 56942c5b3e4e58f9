"""Registry providers: one module per registry cloud, all behind `Provider.mint() -> Token`.

Only this package talks to clouds (boto3, google-auth, GitHub's API).
"""

from __future__ import annotations

from regcred.config import Settings
from regcred.models import EcrSpec, ProviderSpec, SpecError, StaticSpec
from regcred.providers.base import (
    InvalidSourceSecret,
    Provider,
    ProviderError,
    SecretReader,
    SourceSecretNotFound,
    Token,
)

__all__ = [
    "InvalidSourceSecret",
    "Provider",
    "ProviderError",
    "SecretReader",
    "SourceSecretNotFound",
    "Token",
    "provider_for",
]


def provider_for(spec: ProviderSpec, settings: Settings) -> Provider:
    """The provider for a credential's `spec.provider` block."""
    if isinstance(spec, StaticSpec):
        from regcred.providers.static import StaticProvider

        return StaticProvider(spec)
    if isinstance(spec, EcrSpec):
        from regcred.providers.ecr import EcrProvider

        return EcrProvider(
            spec, ecr_endpoint_url=settings.ecr_endpoint_url, sts_endpoint_url=settings.sts_endpoint_url
        )
    raise SpecError(f"The {type(spec).__name__.removesuffix('Spec').lower()} provider is not available yet in "
                    "this version of regcred-operator; use static or ecr.")

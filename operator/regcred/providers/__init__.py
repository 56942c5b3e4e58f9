"""Registry providers: one module per registry cloud, all behind `Provider.mint() -> Token`.

Only this package talks to clouds (boto3, google-auth, azure-identity, GitHub's API, ACR's token exchange).
"""

from __future__ import annotations

from regcred.config import Settings
from regcred.models import AcrSpec, EcrSpec, GarSpec, GhcrSpec, ProviderSpec, SpecError, StaticSpec
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
            spec, ecr_endpoint_url=settings.ecr_endpoint_url, sts_endpoint_url=settings.sts_endpoint_url,
            ecr_public_endpoint_url=settings.ecr_public_endpoint_url,
        )
    if isinstance(spec, GhcrSpec):
        from regcred.providers.ghcr import GhcrProvider

        # One /user check per PAT per resync period, however often the credential wakes up.
        return GhcrProvider(spec, api_url_override=settings.github_api_url, recheck_after=settings.resync_interval)
    if isinstance(spec, GarSpec):
        from regcred.providers.gar import GarProvider

        return GarProvider(spec, iam_endpoint_override=settings.google_iam_endpoint_url,
                           sts_endpoint_override=settings.google_sts_endpoint_url,
                           credential_sources=settings.google_credential_sources)
    if isinstance(spec, AcrSpec):
        from regcred.providers.acr import AcrProvider

        return AcrProvider(spec, authority_host=settings.azure_authority_host, exchange_url=settings.acr_exchange_url)
    raise SpecError(f"Unknown provider {type(spec).__name__}.")

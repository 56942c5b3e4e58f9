"""WWW-Authenticate parsing on headers as real registries send them."""

from __future__ import annotations

import pytest

from regcred.probe import Challenge, parse_www_authenticate


@pytest.mark.parametrize(
    ("header", "scheme", "params"),
    [
        pytest.param(
            'Bearer realm="https://auth.docker.io/token",service="registry.docker.io"',
            "bearer",
            {"realm": "https://auth.docker.io/token", "service": "registry.docker.io"},
            id="docker-hub-ping",
        ),
        pytest.param(
            'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
            'scope="repository:library/nosuchimage:pull",error="insufficient_scope"',
            "bearer",
            {
                "realm": "https://auth.docker.io/token",
                "service": "registry.docker.io",
                "scope": "repository:library/nosuchimage:pull",
                "error": "insufficient_scope",
            },
            id="docker-hub-manifest",
        ),
        pytest.param(
            'Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:user/image:pull"',
            "bearer",
            {"realm": "https://ghcr.io/token", "service": "ghcr.io", "scope": "repository:user/image:pull"},
            id="ghcr",
        ),
        pytest.param(
            'Bearer realm="https://europe-docker.pkg.dev/v2/token",service="europe-docker.pkg.dev"',
            "bearer",
            {"realm": "https://europe-docker.pkg.dev/v2/token", "service": "europe-docker.pkg.dev"},
            id="gar",
        ),
        pytest.param(
            'Bearer realm="https://gcr.io/v2/token",service="gcr.io"',
            "bearer",
            {"realm": "https://gcr.io/v2/token", "service": "gcr.io"},
            id="gcr",
        ),
        pytest.param(
            'Bearer realm="https://harbor.example.com/service/token",service="harbor-registry"',
            "bearer",
            {"realm": "https://harbor.example.com/service/token", "service": "harbor-registry"},
            id="harbor",
        ),
        pytest.param(
            'Bearer realm="https://quay.io/v2/auth",service="quay.io"',
            "bearer",
            {"realm": "https://quay.io/v2/auth", "service": "quay.io"},
            id="quay",
        ),
        pytest.param(
            'Basic realm="https://123456789012.dkr.ecr.eu-west-1.amazonaws.com/",service="ecr.amazonaws.com"',
            "basic",
            {"realm": "https://123456789012.dkr.ecr.eu-west-1.amazonaws.com/", "service": "ecr.amazonaws.com"},
            id="ecr",
        ),
        pytest.param(
            'Bearer realm="https://myreg.azurecr.io/oauth2/token",service="myreg.azurecr.io"',
            "bearer",
            {"realm": "https://myreg.azurecr.io/oauth2/token", "service": "myreg.azurecr.io"},
            id="acr",
        ),
        pytest.param(
            'Basic realm="basic-realm"',
            "basic",
            {"realm": "basic-realm"},
            id="distribution-htpasswd",
        ),
        pytest.param(
            # distribution's push challenge: a comma inside a quoted value.
            'Bearer realm="http://127.0.0.1:5001/token",service="registry",scope="repository:team/app:pull,push"',
            "bearer",
            {"realm": "http://127.0.0.1:5001/token", "service": "registry", "scope": "repository:team/app:pull,push"},
            id="comma-in-quotes",
        ),
        pytest.param(
            # Several scopes are space-separated inside one quoted value.
            'Bearer realm="https://r/token", scope="repository:a:pull repository:b:pull"',
            "bearer",
            {"realm": "https://r/token", "scope": "repository:a:pull repository:b:pull"},
            id="space-in-quotes",
        ),
        pytest.param(
            'bearer  REALM = "https://r/token" ,  Service="svc"',
            "bearer",
            {"realm": "https://r/token", "service": "svc"},
            id="case-and-whitespace",
        ),
        pytest.param(
            "Bearer realm=https://r.example/token,service=r.example",
            "bearer",
            {"realm": "https://r.example/token", "service": "r.example"},
            id="unquoted",
        ),
        pytest.param(
            r'Bearer realm="https://r/token",error_description="say \"no\", twice"',
            "bearer",
            {"realm": "https://r/token", "error_description": 'say "no", twice'},
            id="escaped-quotes",
        ),
    ],
)
def test_single_challenge(header: str, scheme: str, params: dict[str, str]) -> None:
    (challenge,) = parse_www_authenticate(header)
    assert challenge.scheme == scheme
    assert dict(challenge.params) == params


def test_several_challenges_in_one_value() -> None:
    # requests joins repeated WWW-Authenticate headers with ", ".
    header = 'Basic realm="a, b", Bearer realm="https://r/token",service="s", Negotiate YWJj==, NTLM'
    assert parse_www_authenticate(header) == [
        Challenge("basic", {"realm": "a, b"}),
        Challenge("bearer", {"realm": "https://r/token", "service": "s"}),
        Challenge("negotiate", {}, token68="YWJj=="),
        Challenge("ntlm", {}),
    ]


def test_accessors() -> None:
    (challenge,) = parse_www_authenticate(
        'Bearer realm="https://r/token",service="s",scope="repository:x:pull",error="invalid_token"'
    )
    assert (challenge.realm, challenge.service, challenge.scope, challenge.error) == (
        "https://r/token",
        "s",
        "repository:x:pull",
        "invalid_token",
    )


@pytest.mark.parametrize("header", ["", "   ", ",,,", '"', "=", 'Bearer realm="unterminated', "Bearer realm="])
def test_garbage_never_raises(header: str) -> None:
    for challenge in parse_www_authenticate(header):
        assert challenge.scheme

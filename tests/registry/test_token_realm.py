"""Where the probe sends credentials: a registry's Bearer challenge names the token service (the realm),
and a hostile or careless registry must not receive ``user:password`` at a host of its choosing.

The servers here are all on 127.0.0.1; ``localhost`` serves as "another host" (the same address under a
name the registry does not vouch for). Each test records what the would-be thief received.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest

from regcred.config import Settings
from regcred.imageref import ImageRef
from regcred.probe import Prober, Verdict
from tests.registry.harness import ScriptedServer, SigningKey, make_server_tls, session

MANIFEST = "/v2/team/app/manifests/v1"
USER, PASSWORD = "bob", "s3cret-pass-123"
BASIC = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
DIGEST = "sha256:" + "4" * 64


def ref(host: str) -> ImageRef:
    return ImageRef(host, "team/app", "v1")


@pytest.fixture
def tls(signing_key: SigningKey, tmp_path: Path) -> tuple[object, str]:
    context, ca_bundle = make_server_tls(signing_key, tmp_path)
    return context, str(ca_bundle)


@pytest.fixture
def tls_registry(tls: tuple[object, str]) -> Iterator[ScriptedServer]:
    server = ScriptedServer(tls=tls[0])  # type: ignore[arg-type]
    yield server
    server.close()


@pytest.fixture
def thief() -> Iterator[ScriptedServer]:
    """A plain-HTTP token service that hands out a token to anyone, and records what it was sent."""
    server = ScriptedServer()
    server.route("/token", 200, {"Content-Type": "application/json"}, {"token": "stolen-token-1"})
    yield server
    server.close()


@pytest.fixture
def tls_thief(tls: tuple[object, str]) -> Iterator[ScriptedServer]:
    """The same over HTTPS, with a certificate valid for localhost (and 127.0.0.1)."""
    server = ScriptedServer(tls=tls[0])  # type: ignore[arg-type]
    server.route("/token", 200, {"Content-Type": "application/json"}, {"token": "stolen-token-1"})
    yield server
    server.close()


def port(server: ScriptedServer) -> str:
    return server.host.rsplit(":", 1)[1]


def challenge(realm: str) -> dict[str, str]:
    return {"WWW-Authenticate": f'Bearer realm="{realm}",service="hostile"'}


def credentials_received(server: ScriptedServer) -> list[str]:
    return [seen[2]["Authorization"] for seen in server.seen if "Authorization" in seen[2]]


def assert_refused(result: object, server: ScriptedServer) -> None:
    assert credentials_received(server) == []
    assert server.seen == []  # nothing at all was sent there
    assert result.verdict is Verdict.OTHER, result  # type: ignore[attr-defined]
    assert "nothing was sent" in result.detail  # type: ignore[attr-defined]
    assert PASSWORD not in repr(result) and BASIC.split()[1] not in repr(result)


def test_http_realm_from_https_registry_is_refused(
    tls_registry: ScriptedServer, thief: ScriptedServer, tls: tuple[object, str]
) -> None:
    """A registry reached over https names a plain-http realm (another port of the same address): no downgrade."""
    realm = f"http://{thief.host}/token"
    tls_registry.route("/v2/", 401, challenge(realm))
    tls_registry.route(MANIFEST, 200, {"Docker-Content-Digest": DIGEST})
    result = Prober(session=session(), timeout=2, verify=tls[1]).probe(ref(tls_registry.host), (USER, PASSWORD))
    assert_refused(result, thief)
    assert result.detail.startswith(f"The registry {tls_registry.host} named the token service {realm}")
    assert "plain http" in result.detail


def test_http_realm_on_another_host_of_an_insecure_registry_is_refused(
    scripted: ScriptedServer, thief: ScriptedServer
) -> None:
    """An insecure (plain http) registry may name a plain-http realm only on its own host."""
    realm = f"http://localhost:{port(thief)}/token"
    scripted.route("/v2/", 401, challenge(realm))
    scripted.route(MANIFEST, 200, {"Docker-Content-Digest": DIGEST})
    prober = Prober(session=session(), insecure_registries={scripted.host}, timeout=2)
    result = prober.probe(ref(scripted.host), (USER, PASSWORD))
    assert_refused(result, thief)
    assert "only to the registry's own host" in result.detail


def test_https_realm_on_a_host_the_registry_does_not_vouch_for_is_refused(
    tls_registry: ScriptedServer, tls_thief: ScriptedServer, tls: tuple[object, str]
) -> None:
    realm = f"https://localhost:{port(tls_thief)}/token"
    tls_registry.route("/v2/", 401, challenge(realm))
    tls_registry.route(MANIFEST, 200, {"Docker-Content-Digest": DIGEST})
    result = Prober(session=session(), timeout=2, verify=tls[1]).probe(ref(tls_registry.host), (USER, PASSWORD))
    assert_refused(result, tls_thief)
    assert "REGCRED_TOKEN_REALM_HOSTS" in result.detail


def test_challenge_on_the_manifest_is_checked_too(scripted: ScriptedServer, thief: ScriptedServer) -> None:
    """An open /v2/ and a hostile challenge on the manifest: the second challenge is held to the same rule."""
    scripted.route("/v2/", 200)
    scripted.route(MANIFEST, 401, challenge(f"http://localhost:{port(thief)}/token"))
    prober = Prober(session=session(), insecure_registries={scripted.host}, timeout=2)
    assert_refused(prober.probe(ref(scripted.host), (USER, PASSWORD)), thief)


@pytest.mark.parametrize("entry", ["localhost", "localhost:{port}"])
def test_allow_list_admits_a_separate_host(
    tls_registry: ScriptedServer, tls_thief: ScriptedServer, tls: tuple[object, str], entry: str
) -> None:
    tls_registry.route("/v2/", 401, challenge(f"https://localhost:{port(tls_thief)}/token"))
    tls_registry.route(MANIFEST, 200, {"Docker-Content-Digest": DIGEST})
    allowed = {entry.format(port=port(tls_thief))}
    prober = Prober(session=session(), timeout=2, verify=tls[1], token_realm_hosts=allowed)
    result = prober.probe(ref(tls_registry.host), (USER, PASSWORD))
    assert result.verdict is Verdict.OK, result
    assert credentials_received(tls_thief) == [BASIC]
    head = next(seen for seen in tls_registry.seen if seen[0] == "HEAD")
    assert head[2]["Authorization"] == "Bearer stolen-token-1"


def test_allow_list_does_not_admit_plain_http(scripted: ScriptedServer, thief: ScriptedServer) -> None:
    scripted.route("/v2/", 401, challenge(f"http://localhost:{port(thief)}/token"))
    prober = Prober(session=session(), insecure_registries={scripted.host}, token_realm_hosts={"localhost"}, timeout=2)
    assert_refused(prober.probe(ref(scripted.host), (USER, PASSWORD)), thief)


def test_anonymous_token_request_may_go_to_any_https_realm(
    tls_registry: ScriptedServer, tls_thief: ScriptedServer, tls: tuple[object, str]
) -> None:
    tls_registry.route("/v2/", 401, challenge(f"https://localhost:{port(tls_thief)}/token"))
    tls_registry.route(MANIFEST, 200, {"Docker-Content-Digest": DIGEST})
    result = Prober(session=session(), timeout=2, verify=tls[1]).probe(ref(tls_registry.host))
    assert result.verdict is Verdict.OK, result
    assert len(tls_thief.seen) == 1 and credentials_received(tls_thief) == []


def test_no_credentials_through_a_redirect_to_another_host(scripted: ScriptedServer, thief: ScriptedServer) -> None:
    """The registry's own token service redirects elsewhere: not followed with credentials."""
    scripted.route("/v2/", 401, challenge(f"http://{scripted.host}/token"))
    scripted.route("/token", 302, {"Location": f"http://localhost:{port(thief)}/token"})
    prober = Prober(session=session(), insecure_registries={scripted.host}, timeout=2)
    result = prober.probe(ref(scripted.host), (USER, PASSWORD))
    assert_refused(result, thief)
    assert "redirected" in result.detail


def test_redirect_on_the_same_host_is_followed(scripted: ScriptedServer) -> None:
    scripted.route("/v2/", 401, challenge(f"http://{scripted.host}/token"))
    scripted.route("/token", 307, {"Location": "/v2/token"})
    scripted.route("/v2/token", 200, {"Content-Type": "application/json"}, {"token": "tok-123456"})
    scripted.route(MANIFEST, 200, {"Docker-Content-Digest": DIGEST})
    prober = Prober(session=session(), insecure_registries={scripted.host}, timeout=2)
    result = prober.probe(ref(scripted.host), (USER, PASSWORD))
    assert result.verdict is Verdict.OK, result
    assert [seen[2].get("Authorization") for seen in scripted.seen if "token" in seen[1]] == [BASIC, BASIC]


INSECURE = frozenset({"127.0.0.1:5000", "plain.example"})


@pytest.mark.parametrize(
    ("registry", "realm", "allowed"),
    [
        # The real challenges of the well-known registries (see test_challenge.py).
        ("registry-1.docker.io", "https://auth.docker.io/token", True),
        ("ghcr.io", "https://ghcr.io/token", True),
        ("europe-docker.pkg.dev", "https://europe-docker.pkg.dev/v2/token", True),
        ("gcr.io", "https://gcr.io/v2/token", True),
        ("eu.gcr.io", "https://eu.gcr.io/v2/token", True),
        ("quay.io", "https://quay.io/v2/auth", True),
        ("myreg.azurecr.io", "https://myreg.azurecr.io/oauth2/token", True),
        ("harbor.example.com", "https://harbor.example.com/service/token", True),
        ("registry.gitlab.com", "https://gitlab.com/jwt/auth", True),
        ("registry.example.com:5000", "https://auth.example.com/token", True),  # same registrable domain
        ("registry.example.co.uk", "https://auth.example.co.uk/token", True),
        ("127.0.0.1:5000", "http://127.0.0.1:5001/token", True),  # insecure registry, its own host
        ("plain.example:8080", "http://PLAIN.example/token", True),
        # Refused.
        ("registry-1.docker.io", "http://auth.docker.io/token", False),  # downgrade
        ("ghcr.io", "http://ghcr.io/token", False),  # downgrade, even on the same host
        ("registry-1.docker.io", "https://auth.docker.io.evil.example/token", False),
        ("registry-1.docker.io", "https://auth.docker.io@evil.example/token", False),
        ("ghcr.io", "https://evil.io/token", False),
        ("myreg.azurecr.io", "https://evil.azurecr.io/oauth2/token", False),  # a shared suffix vouches for nobody
        ("europe-docker.pkg.dev", "https://evil.pkg.dev/token", False),
        ("123.dkr.ecr.eu-west-1.amazonaws.com", "https://evil.s3.amazonaws.com/token", False),
        ("registry.example.co.uk", "https://evil.co.uk/token", False),
        ("10.0.0.5:5000", "https://10.0.0.6/token", False),
        ("127.0.0.1:5000", "http://localhost:5001/token", False),  # insecure: only its own host
        ("127.0.0.1:5000", "http://127.0.0.2/token", False),
        ("127.0.0.1:5000", "https://evil.example/token", False),
        ("registry.example.com", "ftp://registry.example.com/token", False),
        ("registry.example.com", "/token", False),
        ("registry.example.com", "http://[", False),
        ("registry.example.com", "https://registry.example.com:99999/token", False),
    ],
)
def test_realm_rule(registry: str, realm: str, allowed: bool) -> None:
    refusal = Prober(insecure_registries=INSECURE).realm_refusal(registry, realm)
    assert (refusal is None) is allowed, refusal
    if refusal is not None:
        assert refusal.endswith("nothing was sent.") and refusal[0].isupper()


def test_allow_list_entries() -> None:
    prober = Prober(token_realm_hosts={"auth.example.net", "tokens.example.org:8443"})
    assert prober.realm_refusal("registry.example.com", "https://AUTH.example.net/token") is None
    assert prober.realm_refusal("registry.example.com", "https://auth.example.net:444/token") is None
    assert prober.realm_refusal("registry.example.com", "https://tokens.example.org:8443/t") is None
    assert prober.realm_refusal("registry.example.com", "https://tokens.example.org/t") is not None
    assert prober.realm_refusal("registry.example.com", "http://auth.example.net/token") is not None


def test_setting_from_env() -> None:
    env = {"REGCRED_TOKEN_REALM_HOSTS": " auth.example.net , tokens.example.org:8443,,"}
    assert Settings.from_env(env).token_realm_hosts == frozenset({"auth.example.net", "tokens.example.org:8443"})
    assert Settings.from_env({}).token_realm_hosts == frozenset()


def test_no_token_through_a_manifest_redirect_to_another_host(scripted: ScriptedServer, thief: ScriptedServer) -> None:
    """A manifest redirect (a blob store) to another host gets no Authorization header (requests strips it)."""
    scripted.route("/v2/", 401, challenge(f"http://{scripted.host}/token"))
    scripted.route("/token", 200, {"Content-Type": "application/json"}, {"token": "tok-123456"})
    scripted.route(MANIFEST, 307, {"Location": f"http://localhost:{port(thief)}/token"})
    prober = Prober(session=session(), insecure_registries={scripted.host}, timeout=2)
    prober.probe(ref(scripted.host), (USER, PASSWORD))
    assert thief.seen and credentials_received(thief) == []


def test_a_garbage_redirect_of_the_token_request_is_refused(scripted: ScriptedServer) -> None:
    scripted.route("/v2/", 401, challenge(f"http://{scripted.host}/token"))
    scripted.route("/token", 302, {"Location": "http://["})
    prober = Prober(session=session(), insecure_registries={scripted.host}, timeout=2)
    result = prober.probe(ref(scripted.host), (USER, PASSWORD))
    assert result.verdict is Verdict.OTHER, result
    assert result.detail == f"The token service at {scripted.host} redirected to a URL that does not parse."

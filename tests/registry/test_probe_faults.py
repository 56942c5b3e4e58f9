"""The probe on answers a real registry will not give on demand: a scripted server, dead ports, timeouts."""

from __future__ import annotations

import base64
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from regcred.imageref import ImageRef
from regcred.probe import MANIFEST_ACCEPT, Prober, Verdict, probe
from tests.registry.harness import ScriptedServer, SigningKey, free_port, make_server_tls, session

MANIFEST = "/v2/team/app/manifests/v1"
BEARER = 'Bearer realm="http://{host}/token",service="scripted"'


def prober(host: str) -> Prober:
    return Prober(session=session(), insecure_registries={host}, timeout=2)


def ref(host: str) -> ImageRef:
    return ImageRef(host, "team/app", "v1")


def test_rate_limited(scripted: ScriptedServer) -> None:
    scripted.route("/v2/", 200)
    scripted.route(
        MANIFEST,
        429,
        {"Retry-After": "60", "RateLimit-Limit": "100;w=21600", "RateLimit-Remaining": "0;w=21600"},
        {"errors": [{"code": "TOOMANYREQUESTS", "message": "You have reached your pull rate limit."}]},
    )
    result = prober(scripted.host).probe(ref(scripted.host))
    assert result.verdict is Verdict.RATE_LIMITED
    assert result.status_code == 429
    assert "Retry-After: 60" in result.detail and "RateLimit-Remaining: 0;w=21600" in result.detail
    # No second request to a registry that asks us to slow down (so no body, so no error code).
    assert [seen[0] for seen in scripted.seen] == ["GET", "HEAD"]
    assert result.error_code is None


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_error(scripted: ScriptedServer, status: int) -> None:
    scripted.route("/v2/", 200)
    scripted.route(MANIFEST, status)
    result = prober(scripted.host).probe(ref(scripted.host))
    assert result.verdict is Verdict.SERVER_ERROR
    assert result.status_code == status


def test_server_error_on_ping(scripted: ScriptedServer) -> None:
    scripted.route("/v2/", 503, body={"errors": [{"code": "UNAVAILABLE", "message": "maintenance"}]})
    result = prober(scripted.host).probe(ref(scripted.host))
    assert result.verdict is Verdict.SERVER_ERROR
    assert result.detail == f"{scripted.host} answered the API check /v2/ 503 (registry says: maintenance)."
    assert len(result.evidence) == 1


def test_forbidden_with_registry_message(scripted: ScriptedServer) -> None:
    scripted.route("/v2/", 200)
    scripted.route(
        MANIFEST, 403, body={"errors": [{"code": "DENIED", "message": "requested access to the resource is denied"}]}
    )
    result = prober(scripted.host).probe(ref(scripted.host), ("bob", "s3cret-pass"))
    assert result.verdict is Verdict.FORBIDDEN
    assert result.error_code == "DENIED"
    assert "requested access to the resource is denied" in result.detail


def test_name_unknown_on_manifest(scripted: ScriptedServer) -> None:
    """Registries that say NAME_UNKNOWN on the manifest (Docker Hub, GHCR do) are believed directly."""
    scripted.route("/v2/", 200)
    scripted.route(MANIFEST, 404, body={"errors": [{"code": "NAME_UNKNOWN", "message": "repository name not known"}]})
    result = prober(scripted.host).probe(ref(scripted.host))
    assert result.verdict is Verdict.NOT_FOUND
    assert result.detail.startswith(f"Repository team/app does not exist on {scripted.host}")
    assert not any("tags/list" in line for line in result.evidence)


def test_other_statuses(scripted: ScriptedServer) -> None:
    scripted.route("/v2/", 200)
    scripted.route(MANIFEST, 400, body={"errors": [{"code": "MANIFEST_INVALID", "message": "bad"}]})
    result = prober(scripted.host).probe(ref(scripted.host))
    assert result.verdict is Verdict.OTHER
    assert result.status_code == 400
    assert result.error_code == "MANIFEST_INVALID"


def test_not_a_registry(scripted: ScriptedServer) -> None:
    result = prober(scripted.host).probe(ref(scripted.host))  # every path 404, /v2/ too
    assert result.verdict is Verdict.OTHER
    assert "does not serve the registry v2 API" in result.detail


def test_bearer_flow_and_what_is_sent(scripted: ScriptedServer) -> None:
    challenge = BEARER.format(host=scripted.host)
    scripted.route("/v2/", 401, {"WWW-Authenticate": challenge})
    scripted.route("/token", 200, {"Content-Type": "application/json"}, {"token": "tok-123456", "expires_in": 300})
    scripted.route(MANIFEST, 200, {"Docker-Content-Digest": "sha256:" + "1" * 64})
    result = prober(scripted.host).probe(ref(scripted.host), ("bob", "s3cret-pass"))
    assert result.verdict is Verdict.OK, result
    token_request = next(seen for seen in scripted.seen if seen[1].startswith("/token"))
    assert "scope=repository%3Ateam%2Fapp%3Apull" in token_request[1] and "service=scripted" in token_request[1]
    assert token_request[2]["Authorization"] == "Basic " + base64.b64encode(b"bob:s3cret-pass").decode()
    head = next(seen for seen in scripted.seen if seen[0] == "HEAD")
    assert head[2]["Authorization"] == "Bearer tok-123456"
    assert head[2]["Accept"] == MANIFEST_ACCEPT
    for media in ("oci.image.index.v1", "manifest.list.v2", "oci.image.manifest.v1", "distribution.manifest.v2"):
        assert media in head[2]["Accept"]
    assert "tok-123456" not in repr(result) and "s3cret-pass" not in repr(result)
    assert result.evidence[1] == (
        f"GET http://{scripted.host}/token?scope=repository:team/app:pull&service=scripted as user 'bob'"
        " → 200 token issued"
    )


def test_token_service_error(scripted: ScriptedServer) -> None:
    scripted.route("/v2/", 401, {"WWW-Authenticate": BEARER.format(host=scripted.host)})
    scripted.route("/token", 500)
    result = prober(scripted.host).probe(ref(scripted.host), ("bob", "pw"))
    assert result.verdict is Verdict.SERVER_ERROR
    assert result.detail.startswith(f"The token service http://{scripted.host}/token answered 500")


def test_token_service_denies(scripted: ScriptedServer) -> None:
    scripted.route("/v2/", 401, {"WWW-Authenticate": BEARER.format(host=scripted.host)})
    scripted.route("/token", 403, body={"details": "account suspended"})
    result = prober(scripted.host).probe(ref(scripted.host), ("bob", "pw"))
    assert result.verdict is Verdict.FORBIDDEN
    assert "account suspended" in result.detail


def test_token_service_unreachable(scripted: ScriptedServer) -> None:
    dead = f"127.0.0.1:{free_port()}"
    scripted.route("/v2/", 401, {"WWW-Authenticate": f'Bearer realm="http://{dead}/token",service="s"'})
    result = prober(scripted.host).probe(ref(scripted.host))
    assert result.verdict is Verdict.UNREACHABLE
    assert result.detail.startswith(f"Could not reach the token service at {dead}")


def test_basic_challenge_sends_credentials(scripted: ScriptedServer) -> None:
    """ECR answers a Basic challenge; the credentials go straight to the manifest request."""
    scripted.route("/v2/", 401, {"WWW-Authenticate": 'Basic realm="https://x/",service="ecr.amazonaws.com"'})
    scripted.route(MANIFEST, 200)
    result = prober(scripted.host).probe(ref(scripted.host), ("AWS", "ecr-password"))
    assert result.verdict is Verdict.OK
    head = next(seen for seen in scripted.seen if seen[0] == "HEAD")
    assert head[2]["Authorization"] == "Basic " + base64.b64encode(b"AWS:ecr-password").decode()


def test_challenge_on_the_manifest_is_followed(scripted: ScriptedServer) -> None:
    """/v2/ open, but the repository asks for a token: the probe follows that challenge once."""
    scripted.route("/v2/", 200)
    scripted.route(
        MANIFEST,
        401,
        {"WWW-Authenticate": BEARER.format(host=scripted.host) + ',scope="repository:team/app:pull"'},
        {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]},
    )
    scripted.route("/token", 200, body={"access_token": "tok-abcdef"})
    result = prober(scripted.host).probe(ref(scripted.host), ("bob", "pw-123"))
    assert result.verdict is Verdict.UNAUTHORIZED  # still 401 after the token: reported, not retried forever
    heads = [seen for seen in scripted.seen if seen[0] == "HEAD"]
    assert len(heads) == 2
    assert "Authorization" not in heads[0][2] and heads[1][2]["Authorization"] == "Bearer tok-abcdef"
    assert "rejected the credentials of user 'bob'" in result.detail


def test_unreachable_port() -> None:
    host = f"127.0.0.1:{free_port()}"
    result = prober(host).probe(ref(host))
    assert result.verdict is Verdict.UNREACHABLE
    assert result.status_code is None
    assert "Connection refused" in result.detail
    assert result.evidence == (f"GET http://{host}/v2/ → [Errno 111] Connection refused",)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield int(sock.getsockname()[1])


def test_timeout_is_unreachable(silent_port: int) -> None:
    host = f"127.0.0.1:{silent_port}"
    result = Prober(session=session(), insecure_registries={host}, timeout=0.3).probe(ref(host))
    assert result.verdict is Verdict.UNREACHABLE
    assert "did not answer in time" in result.detail


def test_unknown_host_is_unreachable() -> None:
    result = probe("no-such-host.invalid/app:v1", timeout=2, session=session())
    assert result.verdict is Verdict.UNREACHABLE


def test_scheme_for() -> None:
    p = Prober(insecure_registries={"127.0.0.1:5000", "plain.example"})
    assert p.scheme_for("127.0.0.1:5000") == "http"
    assert p.scheme_for("127.0.0.1:5001") == "https"
    assert p.scheme_for("PLAIN.example:8080") == "http"  # a bare host covers its ports
    assert p.scheme_for("ghcr.io") == "https"


def test_docker_hub_goes_to_registry_1(scripted: ScriptedServer) -> None:
    """The probe talks to registry-1.docker.io for docker.io images (seen through a mapping session)."""
    seen: list[str] = []

    class Recording(type(session())):  # type: ignore[misc]
        def request(self, method: str, url: str, *args: object, **kwargs: object) -> object:
            seen.append(url)
            return super().request(method, url.replace("registry-1.docker.io", scripted.host), *args, **kwargs)

    s = Recording()
    s.trust_env = False
    Prober(session=s, insecure_registries={"registry-1.docker.io"}, timeout=2).probe("nginx")
    assert seen[0] == "http://registry-1.docker.io/v2/"


def test_redacts_secret_query_parameters(scripted: ScriptedServer) -> None:
    scripted.route("/v2/", 200)
    scripted.route(MANIFEST, 307, {"Location": f"http://{scripted.host}/blob?X-Amz-Signature=abc123&ok=1"})
    scripted.route("/blob", 200, {"Docker-Content-Digest": "sha256:" + "2" * 64})
    result = prober(scripted.host).probe(ref(scripted.host))
    assert result.verdict is Verdict.OK  # redirects are followed
    assert result.evidence[-1].endswith(
        f"(redirected to http://{scripted.host}/blob?X-Amz-Signature=<redacted>&ok=1)"
    ), result.evidence
    assert "abc123" not in repr(result)


def test_tls_verification(signing_key: SigningKey, tmp_path: Path) -> None:
    """An HTTPS registry with a certificate nobody trusts: tls; with its CA bundle given: ok."""
    context, ca_bundle = make_server_tls(signing_key, tmp_path)
    server = ScriptedServer(tls=context)
    try:
        server.route("/v2/", 200)
        server.route(MANIFEST, 200, {"Docker-Content-Digest": "sha256:" + "3" * 64})
        untrusted = Prober(session=session(), timeout=2).probe(ref(server.host))
        assert untrusted.verdict is Verdict.TLS
        assert "certificate verify failed" in untrusted.detail
        trusted = Prober(session=session(), timeout=2, verify=str(ca_bundle)).probe(ref(server.host))
        assert trusted.verdict is Verdict.OK, trusted
        assert trusted.evidence[0] == f"GET https://{server.host}/v2/ → 200 OK"
    finally:
        server.close()

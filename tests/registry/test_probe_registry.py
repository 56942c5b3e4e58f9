"""The probe against a real registry (Debian's docker-registry, CNCF distribution 2.8) in both auth modes.

What distribution 2.8 answers, as these tests pin it down:

- a missing repository, with good credentials: the manifest request is 404 ``MANIFEST_UNKNOWN`` (the
  same code as a missing tag); only the tag list says ``NAME_UNKNOWN``, which the probe then reports.
- a missing repository, without credentials: 401, exactly as for an existing one (htpasswd: Basic
  challenge; token: the anonymous token carries no access and the manifest request answers
  ``insufficient_scope``). A registry cannot tell a stranger whether a repository exists.
- a wrong password: htpasswd answers 401 on the manifest; with token auth the token service refuses it.
"""

from __future__ import annotations

import pytest

from regcred.imageref import ImageRef
from regcred.probe import Prober, Verdict
from tests.registry.harness import INDEX_TAG, OCI_TAG, PASSWORD, REPO, TAG, USERNAME, Registry, session

GOOD = (USERNAME, PASSWORD)
WRONG = (USERNAME, "wrong-password")


def prober(registry: Registry, **options: object) -> Prober:
    return Prober(session=session(), insecure_registries={registry.host}, timeout=5, **options)  # type: ignore[arg-type]


def image(registry: Registry, repository: str = REPO, tag: str = TAG) -> ImageRef:
    return ImageRef(registry.host, repository, tag)


def assert_no_secrets(result: object, *secrets: str) -> None:
    text = repr(result)
    for secret in secrets:
        assert secret not in text


@pytest.mark.parametrize("tag", [TAG, OCI_TAG, INDEX_TAG])
def test_good_credentials_ok(registry: Registry, tag: str) -> None:
    """Docker schema 2, OCI manifest and OCI index all answer 200 because every type is in Accept."""
    result = prober(registry).probe(image(registry, tag=tag), GOOD)
    assert result.verdict is Verdict.OK, result
    assert result.ok
    assert result.status_code == 200
    assert result.digest is not None and result.digest.startswith("sha256:")
    assert "exists" in result.detail
    assert result.evidence[0].startswith(f"GET http://{registry.host}/v2/ → 401 ")
    assert result.evidence[-1].startswith(f"HEAD http://{registry.host}/v2/{REPO}/manifests/{tag}")
    assert_no_secrets(result, PASSWORD)


def test_by_digest(registry: Registry) -> None:
    digest = prober(registry).probe(image(registry), GOOD).digest
    assert digest is not None
    result = prober(registry).probe(ImageRef(registry.host, REPO, None, digest), GOOD)
    assert result.verdict is Verdict.OK
    assert result.digest == digest
    missing = prober(registry).probe(ImageRef(registry.host, REPO, None, "sha256:" + "0" * 64), GOOD)
    assert missing.verdict is Verdict.NOT_FOUND
    assert missing.detail.startswith(f"Manifest sha256:{'0' * 64} does not exist in {registry.host}/{REPO}")


def test_wrong_password_unauthorized(registry: Registry) -> None:
    result = prober(registry).probe(image(registry), WRONG)
    assert result.verdict is Verdict.UNAUTHORIZED
    assert result.status_code == 401
    assert "rejected the credentials of user 'alice'" in result.detail
    if registry.mode == "token":
        assert result.detail.startswith("The token service http://127.0.0.1:")
        assert "incorrect username or password" in result.detail
    else:
        assert result.error_code == "UNAUTHORIZED"
    assert_no_secrets(result, "wrong-password")


def test_no_credentials_unauthorized(registry: Registry) -> None:
    result = prober(registry).probe(image(registry))
    assert result.verdict is Verdict.UNAUTHORIZED
    assert result.status_code == 401
    assert "requires credentials" in result.detail and "none were given" in result.detail
    if registry.mode == "token":
        # Anonymous callers get a token, but one without access (Docker Hub does the same).
        assert "anonymously → 200 token issued" in result.evidence[1]
        assert "insufficient_scope" in result.detail
        assert registry.token_service is not None
        assert registry.token_service.requests[-1]["user"] is None


def test_missing_tag_not_found(registry: Registry) -> None:
    result = prober(registry).probe(image(registry, tag="no-such-tag"), GOOD)
    assert result.verdict is Verdict.NOT_FOUND
    assert result.status_code == 404
    assert result.error_code == "MANIFEST_UNKNOWN"
    assert result.detail.startswith(f"Tag no-such-tag does not exist in {registry.host}/{REPO}")
    assert "its tags include" in result.detail and TAG in result.detail


def test_missing_tag_without_listing_tags(registry: Registry) -> None:
    result = prober(registry, list_tags=False).probe(image(registry, tag="no-such-tag"), GOOD)
    assert result.verdict is Verdict.NOT_FOUND
    assert result.detail.startswith("Tag no-such-tag does not exist")
    assert not any("tags/list" in line for line in result.evidence)


def test_missing_repository_with_credentials(registry: Registry) -> None:
    """distribution answers MANIFEST_UNKNOWN for a missing repository too; the tag list says NAME_UNKNOWN."""
    result = prober(registry).probe(image(registry, repository="team/missing"), GOOD)
    assert result.verdict is Verdict.NOT_FOUND
    assert result.status_code == 404
    assert any(line.endswith("404 MANIFEST_UNKNOWN") for line in result.evidence)
    assert result.evidence[-1].endswith("tags/list?n=10 as user 'alice' → 404 NAME_UNKNOWN") or result.evidence[
        -1
    ].endswith("tags/list?n=10 with a Bearer token → 404 NAME_UNKNOWN")
    assert result.error_code == "NAME_UNKNOWN"
    assert result.detail.startswith(f"Repository team/missing does not exist on {registry.host}")

    # Without the tag list, the registry's own word is all there is.
    plain = prober(registry, list_tags=False).probe(image(registry, repository="team/missing"), GOOD)
    assert plain.verdict is Verdict.NOT_FOUND
    assert plain.error_code == "MANIFEST_UNKNOWN"
    assert plain.detail.startswith(f"Tag {TAG} does not exist in {registry.host}/team/missing")


def test_missing_repository_without_credentials(registry: Registry) -> None:
    """Anonymous: a missing repository looks exactly like an existing private one (401)."""
    missing = prober(registry).probe(image(registry, repository="team/missing"))
    existing = prober(registry).probe(image(registry))
    assert missing.verdict is existing.verdict is Verdict.UNAUTHORIZED
    assert missing.status_code == existing.status_code == 401
    assert missing.error_code == existing.error_code == "UNAUTHORIZED"


def test_evidence_never_holds_secrets(registry: Registry) -> None:
    results = [
        prober(registry).probe(image(registry), GOOD),
        prober(registry).probe(image(registry, tag="nope"), GOOD),
        prober(registry).probe(image(registry), WRONG),
    ]
    for result in results:
        text = repr(result)
        assert PASSWORD not in text and "wrong-password" not in text
        assert "Basic " not in text.replace('Basic realm="', "")  # challenges yes, credentials never
        assert "eyJ" not in text  # no JWT


def test_open_registry_needs_no_credentials(open_registry: Registry) -> None:
    result = prober(open_registry).probe(image(open_registry))
    assert result.verdict is Verdict.OK
    assert result.evidence[0] == f"GET http://{open_registry.host}/v2/ → 200 OK"
    # Credentials are not sent where no challenge asks for them.
    assert " as user" not in result.evidence[1]
    assert prober(open_registry).probe(image(open_registry), GOOD).verdict is Verdict.OK


def test_https_to_plain_http_registry_is_tls(open_registry: Registry) -> None:
    """Without the insecure-registry setting the probe speaks TLS to a plain-HTTP port: a TLS verdict."""
    result = Prober(session=session(), timeout=5).probe(image(open_registry))
    assert result.verdict is Verdict.TLS
    assert result.status_code is None
    assert result.detail.startswith(f"TLS with {open_registry.host} failed")
    assert "WRONG_VERSION_NUMBER" in result.detail or "record layer" in result.detail
    assert result.evidence == (f"GET https://{open_registry.host}/v2/ → {result.detail.split('failed: ')[1][:-1]}",)


def test_token_service_on_another_port_of_the_registry_host_gets_the_credentials(registry: Registry) -> None:
    """distribution's token auth with its token service on another port of 127.0.0.1 (plain http, the registry
    configured insecure): the realm is on the registry's own host, so the credentials go there."""
    if registry.mode != "token":
        pytest.skip("token auth only")
    assert registry.token_service is not None
    assert registry.token_service.url.split("/")[2] != registry.host  # another port
    result = prober(registry).probe(image(registry), GOOD)
    assert result.verdict is Verdict.OK, result
    assert registry.token_service.requests[-1]["user"] == USERNAME
    # Not configured insecure (so reached over https), the same registry's plain-http realm gets nothing.
    refused = Prober(session=session(), timeout=5).realm_refusal(registry.host, registry.token_service.url)
    assert refused is not None and "plain http" in refused

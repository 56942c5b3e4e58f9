"""Image references are read the way Docker, containerd and the kubelet read them."""

from __future__ import annotations

import pytest

from regcred.imageref import ImageRef, InvalidImageReference, parse

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "host", "repository", "tag", "digest"),
    [
        # Docker Hub: default registry, library/ for official images, default tag.
        ("nginx", "docker.io", "library/nginx", "latest", None),
        ("nginx:1.27", "docker.io", "library/nginx", "1.27", None),
        ("bitnami/redis", "docker.io", "bitnami/redis", "latest", None),
        ("docker.io/nginx", "docker.io", "library/nginx", "latest", None),
        ("docker.io/library/nginx:stable", "docker.io", "library/nginx", "stable", None),
        ("index.docker.io/bitnami/redis:7", "docker.io", "bitnami/redis", "7", None),
        # A first component is a host only with a '.', a ':', as localhost or with upper case.
        ("ghcr.io/acme/app:v1", "ghcr.io", "acme/app", "v1", None),
        ("localhost/app", "localhost", "app", "latest", None),
        ("localhost:5000/team/app:dev", "localhost:5000", "team/app", "dev", None),
        ("127.0.0.1:5000/app", "127.0.0.1:5000", "app", "latest", None),
        ("[::1]:5000/app:1", "[::1]:5000", "app", "1", None),
        ("Registry/app", "Registry", "app", "latest", None),
        ("europe-docker.pkg.dev/proj/repo/img:tag", "europe-docker.pkg.dev", "proj/repo/img", "tag", None),
        (
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com/app:1.0",
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
            "app",
            "1.0",
            None,
        ),
        # A ':' before the last '/' is a port, not a tag.
        ("registry.example.com:8443/a/b", "registry.example.com:8443", "a/b", "latest", None),
        # Digests, alone and with a tag.
        (f"nginx@{DIGEST}", "docker.io", "library/nginx", None, DIGEST),
        (f"ghcr.io/acme/app:v1@{DIGEST}", "ghcr.io", "acme/app", "v1", DIGEST),
        # Separators in repository paths.
        ("quay.io/my-org/my_app.v2__x", "quay.io", "my-org/my_app.v2__x", "latest", None),
        ("harbor.local/proj/a--b:T_1.0-rc", "harbor.local", "proj/a--b", "T_1.0-rc", None),
    ],
)
def test_parse(text: str, host: str, repository: str, tag: str | None, digest: str | None) -> None:
    ref = parse(text)
    assert ref == ImageRef(host, repository, tag, digest)
    assert ImageRef.parse(text) == ref


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("Nginx", "lowercase"),
        ("ghcr.io/Acme/app", "lowercase"),
        ("nginx:", "tag"),
        ("nginx:-bad", "tag"),
        ("nginx:" + "x" * 129, "tag"),
        ("nginx@sha256:abc", "digest"),
        ("nginx@sha256:" + "AB" * 32, "lower-case"),
        ("nginx@sha256:" + "ab" * 33, "64"),
        ("nginx@" + "ab" * 32, "digest"),
        ("https://ghcr.io/acme/app", "scheme"),
        (" nginx", "whitespace"),
        ("ghcr.io/acme//app", "repository"),
        ("ghcr.io/acme/app/", "repository"),
        ("ghcr.io/-acme/app", "repository"),
        ("host_name.io/app", "host"),
        ("ab" * 32, "image ID"),
        ("ghcr.io/" + "a" * 250, "255"),
    ],
)
def test_invalid(text: str, reason: str) -> None:
    with pytest.raises(InvalidImageReference) as raised:
        parse(text)
    assert reason in str(raised.value)
    assert repr(text) in str(raised.value)
    assert isinstance(raised.value, ValueError)


def test_properties_docker_hub() -> None:
    ref = parse("nginx")
    assert ref.reference == "latest"
    assert ref.api_host == "registry-1.docker.io"
    assert ref.auth_keys == ("https://index.docker.io/v1/", "index.docker.io", "docker.io")
    assert str(ref) == "docker.io/library/nginx:latest"
    assert ref.familiar == "nginx:latest"
    assert ref.name == "docker.io/library/nginx"
    assert ref.is_docker_hub


def test_properties_other_registry() -> None:
    ref = parse(f"localhost:5000/team/app:v1@{DIGEST}")
    assert ref.reference == DIGEST  # runtimes pull by digest when both are given
    assert ref.api_host == "localhost:5000"
    assert ref.auth_keys == ("localhost:5000", "https://localhost:5000", "http://localhost:5000")
    assert str(ref) == f"localhost:5000/team/app:v1@{DIGEST}"
    assert ref.familiar == str(ref)
    assert str(parse(f"bitnami/redis@{DIGEST}")) == f"docker.io/bitnami/redis@{DIGEST}"


def test_str_round_trips() -> None:
    for text in ("nginx", "ghcr.io/acme/app:v1", f"quay.io/a/b:c@{DIGEST}", f"localhost:5000/x@{DIGEST}"):
        ref = parse(text)
        assert parse(str(ref)) == ref
        assert parse(ref.familiar) == ref


def test_needs_tag_or_digest() -> None:
    with pytest.raises(ValueError, match="tag or a digest"):
        ImageRef("ghcr.io", "acme/app", None, None)


def test_matching_auth_keys() -> None:
    hub = parse("bitnami/redis:7")
    keys = ["ghcr.io", "https://index.docker.io/v1/", "docker.io/bitnami", "docker.io/other", "registry-1.docker.io"]
    # The path-scoped key is more specific; keys for other repositories or hosts do not serve it.
    assert hub.matching_auth_keys(keys) == ["docker.io/bitnami", "https://index.docker.io/v1/"]

    gar = parse("europe-docker.pkg.dev/proj/repo/img:1")
    keys = ["https://europe-docker.pkg.dev", "*.dev", "*-docker.pkg.dev", "europe-docker.pkg.dev/proj/other", "pkg.dev"]
    assert gar.matching_auth_keys(keys) == ["https://europe-docker.pkg.dev", "*-docker.pkg.dev"]

    local = parse("localhost:5000/app")
    assert local.matching_auth_keys(["localhost", "localhost:5001", "http://localhost:5000/v2/"]) == [
        "http://localhost:5000/v2/"
    ]

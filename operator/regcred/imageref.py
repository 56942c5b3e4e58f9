"""Image references parsed the way Docker, containerd and the kubelet read them.

``nginx`` means ``docker.io/library/nginx:latest``; the first path component is a registry host
only when it contains ``.`` or ``:``, is ``localhost``, or has upper-case letters (repository
paths never do). The grammar follows the CNCF distribution ``reference`` package.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from collections.abc import Iterable

DOCKER_HUB = "docker.io"
DOCKER_HUB_API_HOST = "registry-1.docker.io"  # docker.io itself only redirects to the website
DOCKER_HUB_AUTH_KEY = "https://index.docker.io/v1/"  # the key `docker login` writes
_DOCKER_HUB_ALIASES = frozenset({DOCKER_HUB, "index.docker.io"})
DEFAULT_TAG = "latest"
_NAME_MAX = 255

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_PATH = re.compile(rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*")
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?")
_TAG = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
_DIGEST = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}")
# Registered algorithms have a fixed, lower-case hex length; a wrong one never resolves.
_DIGEST_HEX_LENGTH = {"sha256": 64, "sha384": 96, "sha512": 128}
_HEX64 = re.compile(r"[a-f0-9]{64}")


class InvalidImageReference(ValueError):
    """The text is not an image reference a container runtime would accept. The message says why."""

    def __init__(self, reference: str, reason: str) -> None:
        super().__init__(f"invalid image reference {reference!r}: {reason}")
        self.reference = reference
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class ImageRef:
    """A normalised image reference: ``registry/repository[:tag][@digest]``.

    ``registry`` is ``docker.io`` for Docker Hub, ``repository`` carries ``library/`` for official
    images. At least one of ``tag`` and ``digest`` is set; with both, runtimes pull by digest.
    """

    registry: str
    repository: str
    tag: str | None = DEFAULT_TAG
    digest: str | None = None

    def __post_init__(self) -> None:
        if self.tag is None and self.digest is None:
            raise ValueError("an image reference needs a tag or a digest")

    @classmethod
    def parse(cls, text: str) -> ImageRef:
        return parse(text)

    @property
    def reference(self) -> str:
        """What goes after ``/manifests/`` in the registry API: the digest if any, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    @property
    def name(self) -> str:
        return f"{self.registry}/{self.repository}"

    @property
    def is_docker_hub(self) -> bool:
        return self.registry == DOCKER_HUB

    @property
    def api_host(self) -> str:
        """The host (and port) that serves the v2 API for this registry."""
        return DOCKER_HUB_API_HOST if self.is_docker_hub else self.registry

    @property
    def auth_keys(self) -> tuple[str, ...]:
        """The exact docker-config ``auths`` keys that serve this registry, most usual first.

        For partial, path-scoped, wildcard or scheme-prefixed keys use :meth:`matching_auth_keys`.
        """
        if self.is_docker_hub:
            return (DOCKER_HUB_AUTH_KEY, "index.docker.io", DOCKER_HUB)
        return (self.registry, f"https://{self.registry}", f"http://{self.registry}")

    @property
    def familiar(self) -> str:
        """The short form people write and ``docker`` prints: ``nginx:latest``, ``ghcr.io/o/app@sha256:…``."""
        name = self.name
        if self.is_docker_hub:
            name = self.repository.removeprefix("library/")
        return _with_reference(name, self.tag, self.digest)

    def matching_auth_keys(self, keys: Iterable[str]) -> list[str]:
        """The keys of a docker-config ``auths`` map that the kubelet would use for this image, best first.

        Like the kubelet's keyring: a scheme and a ``/v1/`` or ``/v2/`` suffix are ignored, a path
        must prefix the repository, ``*`` matches within one DNS label, ports must be equal, and
        ``index.docker.io`` keys serve Docker Hub images. Longer (more specific) paths come first.
        """
        found: list[tuple[int, int, str]] = []
        for position, key in enumerate(keys):
            host, path = _split_auth_key(key)
            if not host:
                continue
            if not (_hosts_match(host, self.registry) or (self.is_docker_hub and host in _DOCKER_HUB_ALIASES)):
                continue
            if path and not (self.repository == path or self.repository.startswith(path + "/")):
                continue
            found.append((-len(path), position, key))
        return [key for _, _, key in sorted(found)]

    def __str__(self) -> str:
        return _with_reference(self.name, self.tag, self.digest)


def parse(text: str) -> ImageRef:
    """Parse an image reference as a container runtime would, or raise :class:`InvalidImageReference`."""
    if not text:
        raise InvalidImageReference(text, "it is empty")
    if text != text.strip():
        raise InvalidImageReference(text, "it has leading or trailing whitespace")
    if "://" in text:
        raise InvalidImageReference(text, "an image reference has no scheme (drop the http:// or https://)")
    if _HEX64.fullmatch(text):
        # Docker refuses these: they would be indistinguishable from an image ID.
        raise InvalidImageReference(text, "a 64-character hexadecimal string is an image ID, not a repository name")

    remainder, at, digest = text.partition("@")
    if at:
        _check_digest(text, digest)
    name, tag = _split_tag(remainder)
    if tag is not None and not _TAG.fullmatch(tag):
        raise InvalidImageReference(text, f"tag {tag!r} is not valid (letters, digits, '_', '.', '-'; at most 128)")
    if not name:
        raise InvalidImageReference(text, "the repository name is empty")

    registry, repository = _split_registry(name)
    if not _DOMAIN.fullmatch(registry):
        raise InvalidImageReference(text, f"registry {registry!r} is not a valid host[:port]")
    if not _PATH.fullmatch(repository):
        if _PATH.fullmatch(repository.lower()):
            raise InvalidImageReference(text, "the repository name must be lowercase")
        raise InvalidImageReference(text, f"repository {repository!r} is not a valid repository path")
    if len(registry) + 1 + len(repository) > _NAME_MAX:
        raise InvalidImageReference(text, f"the repository name is longer than {_NAME_MAX} characters")

    if tag is None and not digest:
        tag = DEFAULT_TAG
    return ImageRef(registry=registry, repository=repository, tag=tag, digest=digest or None)


def _split_tag(name: str) -> tuple[str, str | None]:
    # A tag is after the last ':' that follows the last '/'; an earlier ':' is the registry's port.
    colon = name.rfind(":")
    if colon > name.rfind("/"):
        return name[:colon], name[colon + 1 :]
    return name, None


def _split_registry(name: str) -> tuple[str, str]:
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost" or first.lower() != first):
        registry, repository = first, rest
    else:
        registry, repository = DOCKER_HUB, name
    if registry == "index.docker.io":
        registry = DOCKER_HUB
    if registry == DOCKER_HUB and "/" not in repository:
        repository = f"library/{repository}"
    return registry, repository


def _check_digest(text: str, digest: str) -> None:
    if not _DIGEST.fullmatch(digest):
        raise InvalidImageReference(text, f"digest {digest!r} is not algorithm:hex (e.g. sha256:<64 hex digits>)")
    algorithm, _, encoded = digest.partition(":")
    length = _DIGEST_HEX_LENGTH.get(algorithm)
    if length is not None and (len(encoded) != length or encoded != encoded.lower()):
        raise InvalidImageReference(text, f"a {algorithm} digest has exactly {length} lower-case hex digits")


def _with_reference(name: str, tag: str | None, digest: str | None) -> str:
    return name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")


def _split_auth_key(key: str) -> tuple[str, str]:
    """``https://host:5000/v2/some/path/`` -> (``host:5000``, ``some/path``); lower-cased host."""
    rest = key.strip()
    for scheme in ("https://", "http://"):
        if rest.lower().startswith(scheme):
            rest = rest[len(scheme) :]
            break
    host, _, path = rest.partition("/")
    path = path.strip("/")
    if path in ("v1", "v2") or path.startswith(("v1/", "v2/")):
        path = path[3:]
    return host.lower(), path


def _hosts_match(pattern: str, host: str) -> bool:
    pattern_host, _, pattern_port = pattern.partition(":")
    real_host, _, real_port = host.lower().partition(":")
    if pattern_port != real_port:
        return False
    pattern_labels, labels = pattern_host.split("."), real_host.split(".")
    # Like the kubelet: a glob never spans a dot, so *.example.com does not match a.b.example.com.
    return len(pattern_labels) == len(labels) and all(
        fnmatch.fnmatchcase(label, glob) for glob, label in zip(pattern_labels, labels, strict=True)
    )

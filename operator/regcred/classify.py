"""Classifies image-pull failures from what the kubelet reports.

The input is a container's ``state.waiting.reason`` and ``message`` (``ErrImagePull``,
``ImagePullBackOff``, ``InvalidImageName``, ``ErrImageNeverPull``...) or a pod Event
(``Failed``: "Failed to pull image ...", ``BackOff``: "Back-off pulling image ...",
``FailedToRetrieveImagePullSecret``). The wording depends on the runtime (containerd, CRI-O
and Docker/cri-dockerd each wrap the registry's answer differently) and on the registry (Docker
Hub, ECR, GHCR, GAR/GCR, ACR, Quay, Harbor, distribution), so the rules below match phrases,
never a bare status number, and are checked in a fixed order, most specific first.

How a message is read:

* Only its first and last 4 KB: real messages are far shorter, the cause sits at either end, and the
  cost of a call stays bounded whatever a registry or a proxy put in the middle. Every pattern is
  linear in what it reads (anchored at token starts, possessive where it cannot need to give back).
* The text after the last ``desc =`` is the runtime's own error; the gRPC code before it
  (``code = NotFound``) is not evidence: containerd says ``NotFound`` for a platform mismatch.
* When the kubelet tried several credentials it joins their errors in ``[..., ...]``; each is
  classified and the most informative one wins (a definite answer over an ambiguous one; a
  missing tag seen with a credential over a refusal seen without it). With mirrors, CRI-O writes
  "(Mirrors also failed: [mirror: error]...): registry: error"; the registry's own error decides,
  and only when it was cut off are the mirrors' read, the most informative winning.
* From 1.32 the kubelet's waiting message while backing off carries the last pull error
  (``Back-off pulling image "X": ErrImagePull: <error>``) and is read like any other; before 1.32,
  and in the BackOff Event always, it is bare and ``unknown``.
* Status numbers are looked for only after URLs, image references, hosts, digests and long
  digit runs are blanked, and only as phrases (``401 Unauthorized``, ``403 (Forbidden)``,
  ``status 429``), so an ECR account id such as ``401234567890`` or a digest is never read as
  one. The Docker Engine API's own codes (``(HTTP code 500) server error``, ``API error (500)``,
  ``status code=InternalServerError``) are not the registry's and never count.

Decisions worth knowing:

* Messages a registry uses for both "missing" and "private" are ``ambiguous``: Docker's "pull
  access denied for X, repository does not exist or may require 'docker login'" (and its older
  "not found: does not exist or no pull access"), containerd's "insufficient_scope: authorization
  failed", Quay's "unauthorized: access to the requested resource is not authorized", and a
  refused *anonymous* token ("failed to fetch anonymous token: ... 401/403"). These are filed as
  ``unauthorized`` because the registry refused rather than denied existence, and because
  probing with a credential is what settles them. GHCR's terse "denied" / "denied: denied", Docker
  Hub's "requested access to the resource is denied" and GAR's "Permission ... denied ... (or it
  may not exist)" are ``forbidden`` and ambiguous. A definite reason after Docker's ambiguous
  wrapper wins: "...may require 'docker login': denied: Your authorization token has expired" is
  ``unauthorized`` and "...: denied: User: arn:... is not authorized to perform:
  ecr:BatchGetImage" is ``forbidden``, neither ambiguous.
* "context deadline exceeded" is ``unreachable``, though it is also what a pull slower than the
  runtime's deadline says; the evidence shows the phrase so a reader can tell.
* "exec format error" is a start error, not a pull error (the container crash-loops), but its
  cause is the image's platform, so it is ``platform``.
* The kubelet's own "pull QPS exceeded" (``registryPullQPS``) is ``rate_limited``.
* "no space left on device", an I/O error, or ``ErrImageNeverPull`` are ``other``: the node, not
  the registry or the credential. So is a layer that fails to unpack ("failed to extract layer",
  snapshotter errors; a "...: not found" there is the node's own content store) and a download
  whose bytes do not match their digest ("unexpected commit digest"): the node keeps the bad
  partial download until it is cleared there.
* A signature or admission policy that refuses the image (CRI-O's "Source image rejected",
  ``SignatureValidationFailed``, "rejected by policy", a sigstore or Kyverno admission webhook that
  "denied the request") is ``other``: no credential, registry or restart helps.
* CRI-O's short names that resolve nowhere ("did not resolve to an alias and no unqualified-search
  registries") are ``invalid_reference``: the reference must name its registry on that node.
* A transfer cut short ("unexpected EOF", a bare "...: EOF", a reset connection) is ``unreachable``;
  a registry that could not be pinged, with no cause recognised, is too (a last resort).
* A bare "Back-off pulling image ..." and "Error: ErrImagePull" carry no cause: ``unknown`` (read
  the ``Failed`` event instead).
* Any other "denied: <reason>" (the registry's DENIED code) is ``forbidden``, e.g. GCR's "denied:
  Artifact Registry API has not been used in project ...". When Docker cannot parse an error body
  (an HTML page from a proxy or an outage) it names the status, "error parsing HTTP 404 response
  body", and that status decides. Another 4xx ("400 Bad Request", "412 Precondition Failed") is
  ``other``. Old Docker's ", HTTP code 401" is the registry's status; the engine's own
  "(HTTP code 500)" is not.
* ACR answers "unauthorized: authentication required" for a missing tag too; that is not
  recognisable from the text and stays a definite ``unauthorized``.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Sequence

__all__ = ["CREDENTIAL_CATEGORIES", "Category", "Classification", "classify", "extract_image"]

_EVIDENCE_LIMIT = 120


class Category(enum.StrEnum):
    NOT_FOUND = "not_found"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    RATE_LIMITED = "rate_limited"
    UNREACHABLE = "unreachable"
    TLS = "tls"
    INVALID_REFERENCE = "invalid_reference"
    PLATFORM = "platform"
    SECRET_MISSING = "secret_missing"  # noqa: S105 (a category name, not a password)
    REGISTRY_SERVER_ERROR = "registry_server_error"
    OTHER = "other"
    UNKNOWN = "unknown"


# What a fresher credential (or an attached secret) can fix.
CREDENTIAL_CATEGORIES = frozenset({Category.UNAUTHORIZED, Category.FORBIDDEN, Category.SECRET_MISSING})


@dataclasses.dataclass(frozen=True)
class Classification:
    """The verdict on one message. ``evidence`` is the phrase that decided it, quoted from the message."""

    category: Category
    ambiguous: bool
    evidence: str
    image: str | None = None


@dataclasses.dataclass(frozen=True)
class _Rule:
    category: Category
    pattern: re.Pattern[str]
    ambiguous: bool = False
    scrubbed: bool = False  # match against the text with references and numbers blanked


def _rule(category: Category, regex: str, *, ambiguous: bool = False, scrubbed: bool = False) -> _Rule:
    return _Rule(category, re.compile(regex, re.IGNORECASE | re.MULTILINE), ambiguous, scrubbed)


def _status_after(lead: str, status: str) -> str:
    """``lead``, then ``status`` as a word later on the same line.

    The search from one ``lead`` stops at the next, so a line that repeats ``lead`` without a status is
    read once, not once per repetition.
    """
    return rf"{lead}(?:(?!{lead})[^\n])*?\b(?:{status})\b"


_C = Category
# First match wins: local and definite causes first, then the network, then what the registry said.
_RULES: tuple[_Rule, ...] = (
    # The kubelet could not read an imagePullSecret.
    _rule(_C.SECRET_MISSING, r"unable to retrieve (?:some image pull secrets|pull secret)"),
    _rule(_C.SECRET_MISSING, r"\bsecrets? \\?\"[^\"\\]*\\?\" not found"),
    # The reference itself is malformed.
    _rule(_C.INVALID_REFERENCE, r"invalid reference format"),
    _rule(_C.INVALID_REFERENCE, r"couldn't parse image (?:reference|name)"),
    _rule(_C.INVALID_REFERENCE, r"failed to apply default image tag"),
    _rule(_C.INVALID_REFERENCE, r"repository name (?:must be (?:lowercase|canonical)|component must match)"),
    _rule(_C.INVALID_REFERENCE, r"\bInvalidImageName\b"),
    # CRI-O cannot complete a short name: the reference must name its registry on this node.
    _rule(
        _C.INVALID_REFERENCE,
        r"did not resolve to an alias and no unqualified-search registries|no registries configured while trying to "
        r"pull an unqualified image|short-name resolution enforced",
    ),
    # The node, not the registry.
    _rule(_C.OTHER, r"is not present with pull policy of never"),
    _rule(_C.OTHER, r"\bErrImageNeverPull\b"),
    _rule(_C.OTHER, r"no space left on device"),
    _rule(_C.OTHER, r"disk quota exceeded"),
    _rule(_C.OTHER, r"input/output error"),
    _rule(_C.OTHER, r"read-only file system"),
    # Unpacking a layer on the node failed (a "not found" there is the node's own store, not the registry).
    _rule(
        _C.OTHER,
        r"failed to (?:extract|register|apply) layer|failed to unpack image on snapshotter|failed to prepare "
        r"extraction|snapshotter not loaded|failed to convert whiteout file|error processing tar file|"
        r"apply layer error",
    ),
    # The bytes that arrived do not match their digest: a corrupted or cut download the node keeps until
    # it is cleared there, whatever the registry serves next.
    _rule(_C.OTHER, r"unexpected commit (?:digest|size)|failed size validation|digest did not match|digest mismatch"),
    # The image exists but not for this node's OS/architecture.
    _rule(_C.PLATFORM, r"no match for (?:current )?platform(?: \S+)? in manifest"),
    _rule(_C.PLATFORM, r"no matching manifest for \S+(?: in the manifest list entries)?"),
    _rule(_C.PLATFORM, r"no image found in (?:image index|manifest list) for architecture"),
    _rule(_C.PLATFORM, r"does not match the specified platform"),
    _rule(_C.PLATFORM, r"no supported platform found in manifest list"),
    _rule(_C.PLATFORM, r"image operating system \S+ cannot be used on this platform"),
    _rule(_C.PLATFORM, r"exec format error"),
    # A signature check or an admission policy refused the image: no credential, registry or restart helps.
    _rule(_C.OTHER, r"source image rejected|\b(?:rejected|prohibited) by policy\b"),
    _rule(_C.OTHER, r"\bSignatureValidationFailed\b|the signature validation failed"),
    _rule(_C.OTHER, r"admission webhook \S+ denied the request"),
    _rule(_C.OTHER, r"\bimage (?:signature )?verification failed\b|\bno matching signatures\b"),
    # The network: checked before anything the registry might have said, because a token fetch
    # that timed out is still a timeout.
    _rule(_C.UNREACHABLE, r"tls handshake timeout"),
    _rule(_C.UNREACHABLE, r"no such host"),
    _rule(_C.UNREACHABLE, r"server misbehaving"),
    _rule(_C.UNREACHABLE, r"temporary failure in name resolution"),
    _rule(_C.UNREACHABLE, r"connection refused"),
    _rule(_C.UNREACHABLE, r"connection reset by peer"),
    _rule(_C.UNREACHABLE, r"connection timed out"),
    _rule(_C.UNREACHABLE, r"network is unreachable"),
    _rule(_C.UNREACHABLE, r"no route to host"),
    _rule(_C.UNREACHABLE, r"\bi/o timeout"),
    _rule(_C.UNREACHABLE, r"client\.timeout exceeded[^)\n]*"),
    _rule(_C.UNREACHABLE, r"request canceled while waiting for connection"),
    _rule(_C.UNREACHABLE, r"context deadline exceeded"),
    _rule(_C.UNREACHABLE, r"\bproxyconnect tcp"),
    _rule(_C.UNREACHABLE, r"\bdial tcp\b"),
    _rule(_C.UNREACHABLE, r"unexpected EOF"),
    _rule(_C.UNREACHABLE, r":\s+EOF\b"),  # the connection closed: Get "https://...": EOF
    # TLS: an untrusted, expired or mismatched certificate, or plain HTTP where HTTPS was expected.
    _rule(_C.TLS, r"server gave HTTP response to HTTPS client"),
    _rule(_C.TLS, r"x509: [^:\n\"}]+"),
    _rule(_C.TLS, r"tls: failed to verify certificate"),
    _rule(_C.TLS, r"remote error: tls: [a-z ]+"),
    _rule(_C.TLS, r"tls: (?:handshake failure|bad certificate|unrecognized name|protocol version)"),
    _rule(_C.TLS, r"first record does not look like a TLS handshake"),
    _rule(_C.TLS, r"certificate verify failed"),
    # Rate limits: the registry's, and the kubelet's own registryPullQPS.
    _rule(_C.RATE_LIMITED, r"\btoomanyrequests\b"),
    _rule(_C.RATE_LIMITED, r"pull rate limit"),
    _rule(_C.RATE_LIMITED, r"\b429 too many requests\b", scrubbed=True),
    _rule(_C.RATE_LIMITED, r"\btoo many requests\b"),
    _rule(_C.RATE_LIMITED, r"(?:\bstatus(?: code)?:?|(?<!\()\bHTTP code) 429\b", scrubbed=True),
    _rule(_C.RATE_LIMITED, r"pull QPS exceeded"),
    _rule(_C.RATE_LIMITED, r"\brate exceeded\b"),
    # Docker names the status when the body is not JSON (an HTML page from a proxy or an outage).
    _rule(_C.NOT_FOUND, r"error parsing HTTP 404 response body"),
    _rule(_C.UNAUTHORIZED, r"error parsing HTTP 401 response body"),
    _rule(_C.FORBIDDEN, r"error parsing HTTP 403 response body"),
    _rule(_C.RATE_LIMITED, r"error parsing HTTP 429 response body"),
    _rule(_C.REGISTRY_SERVER_ERROR, r"error parsing HTTP 5\d\d response body"),
    _rule(_C.OTHER, r"error parsing HTTP 4\d\d response body"),
    # Definite credential reasons: these win over the ambiguous wrappers around them.
    _rule(_C.UNAUTHORIZED, r"authorization token has expired"),
    _rule(_C.UNAUTHORIZED, r"security token included in the request is invalid"),
    _rule(_C.UNAUTHORIZED, r"no basic auth credentials"),
    _rule(_C.UNAUTHORIZED, r"incorrect username or password"),
    _rule(_C.UNAUTHORIZED, r"cannot be authenticated"),
    _rule(_C.UNAUTHORIZED, r"unauthenticated requests do not have permission"),
    _rule(_C.UNAUTHORIZED, r"\bunauthenticated\b"),
    _rule(_C.FORBIDDEN, r"is not authorized to perform: [\w:*-]+"),
    _rule(
        _C.FORBIDDEN,
        r"permission \\?\"artifactregistry\.[\w.]+\\?\" denied on resource \\?\"[^\"\\]*\\?\" \(or it may not exist\)",
        ambiguous=True,
    ),
    _rule(_C.FORBIDDEN, r"permission \\?\"artifactregistry\.[\w.]+\\?\" denied"),
    _rule(_C.FORBIDDEN, r"permission denied for \S+ from request"),
    _rule(_C.FORBIDDEN, r"\bis not allowed access\b"),  # ACR firewall
    # A token endpoint refused us. Anonymous means no credential was sent: missing or private.
    _rule(
        _C.UNAUTHORIZED, _status_after("failed to fetch anonymous token: ", "401|403"), ambiguous=True, scrubbed=True
    ),
    _rule(_C.UNAUTHORIZED, _status_after("failed to fetch oauth token: ", "401"), scrubbed=True),
    _rule(_C.FORBIDDEN, _status_after("failed to fetch oauth token: ", "403"), scrubbed=True),
    _rule(_C.FORBIDDEN, _status_after("requesting bearer token: ", "403"), ambiguous=True, scrubbed=True),
    _rule(_C.UNAUTHORIZED, _status_after("requesting bearer token: ", "401"), ambiguous=True, scrubbed=True),
    # Registry wordings.
    _rule(_C.UNAUTHORIZED, r"access to the requested resource is not authorized", ambiguous=True),  # Quay
    _rule(_C.UNAUTHORIZED, r"unauthorized to access repository"),  # Harbor
    # Docker Hub's answer for a missing or private repository, both errors listed by containers/image.
    _rule(
        _C.UNAUTHORIZED,
        r"requested access to the resource is denied\s+unauthorized: authentication required",
        ambiguous=True,
    ),
    _rule(_C.UNAUTHORIZED, r"authentication required"),
    # "Missing or private": Docker, containerd and old Docker wordings.
    _rule(
        _C.UNAUTHORIZED, r"repository does not exist or may require (?:'docker login'|authorization)", ambiguous=True
    ),
    _rule(_C.UNAUTHORIZED, r"does not exist or no pull access", ambiguous=True),
    _rule(_C.UNAUTHORIZED, r"insufficient_scope(?:: authorization failed)?", ambiguous=True),
    _rule(_C.FORBIDDEN, r"requested access to the resource is denied", ambiguous=True),
    _rule(_C.FORBIDDEN, r"\bdenied: denied\b", ambiguous=True),  # GHCR
    _rule(_C.FORBIDDEN, r"(?::|error from registry:)\s*denied\s*$", ambiguous=True),  # GHCR, terse
    # Status lines, with references and numbers blanked first.
    _rule(_C.FORBIDDEN, r"\b403 \(?forbidden\)?", scrubbed=True),
    _rule(_C.FORBIDDEN, r"(?:\bstatus(?: code)?:?|(?<!\()\bHTTP code) 403\b", scrubbed=True),
    _rule(_C.FORBIDDEN, r":\s*forbidden\s*$"),
    _rule(_C.UNAUTHORIZED, r"\b401 unauthorized\b", scrubbed=True),
    _rule(_C.UNAUTHORIZED, r"(?:\bstatus(?: code)?:?|(?<!\()\bHTTP code) 401\b", scrubbed=True),
    _rule(_C.UNAUTHORIZED, r"(?::|error from registry:)\s*unauthorized\s*$"),
    _rule(_C.FORBIDDEN, r"\bdenied: (?!denied\b)[^\n]{0,60}"),  # the registry's DENIED code, any reason
    # The registry says the name, tag or digest does not exist.
    _rule(_C.NOT_FOUND, r"manifest unknown"),
    _rule(_C.NOT_FOUND, r"\bMANIFEST_UNKNOWN\b"),
    _rule(_C.NOT_FOUND, r"manifest tagged by .{0,80}? is not found"),
    _rule(_C.NOT_FOUND, r"manifest for \S+ not found"),
    _rule(_C.NOT_FOUND, r"repository name not known to registry"),
    _rule(_C.NOT_FOUND, r"\bname unknown\b"),
    _rule(_C.NOT_FOUND, r"\bNAME_UNKNOWN\b"),
    _rule(_C.NOT_FOUND, r"\bblob unknown\b"),
    _rule(_C.NOT_FOUND, r"does not exist in the registry"),
    _rule(_C.NOT_FOUND, r"\btag \S+ not found in repository"),
    _rule(_C.NOT_FOUND, r"not found or deleted"),
    _rule(_C.NOT_FOUND, r"\brepository \S+ not found"),
    _rule(_C.NOT_FOUND, r"\berror: image \S+ not found\b"),  # Docker 1.x
    _rule(_C.NOT_FOUND, r"could not fetch content descriptor"),
    _rule(_C.NOT_FOUND, r"\b404 not found\b", scrubbed=True),
    _rule(_C.NOT_FOUND, r"(?:\bstatus(?: code)?:?|(?<!\()\bHTTP code) 404\b", scrubbed=True),
    _rule(_C.NOT_FOUND, r"(?<!\S)\S+: not found(?=\s*$|\\?\")"),  # containerd: ...reference "x": x: not found
    # The registry failed.
    _rule(
        _C.REGISTRY_SERVER_ERROR,
        r"\b5\d\d \(?(?:internal server error|bad gateway|service (?:temporarily )?unavailable|gateway time-?out)\)?",
        scrubbed=True,
    ),
    _rule(_C.REGISTRY_SERVER_ERROR, r"unexpected http (?:code|status):? 5\d\d\b", scrubbed=True),
    _rule(_C.REGISTRY_SERVER_ERROR, r"(?:\bstatus(?: code)?:?|(?<!\()\bHTTP code) 5\d\d\b", scrubbed=True),
    _rule(_C.REGISTRY_SERVER_ERROR, r"\b(?:bad gateway|service (?:temporarily )?unavailable|gateway time-?out)\b"),
    # An answer none of the above explains.
    _rule(
        _C.OTHER,
        r"\b4\d\d \(?(?:bad request|method not allowed|not acceptable|conflict|gone|precondition failed|"
        r"(?:payload|request entity) too large|unsupported media type|unprocessable entity)\b",
        scrubbed=True,
    ),
    # Last resorts.
    _rule(_C.UNAUTHORIZED, r"\bunauthorized\b"),
    _rule(_C.FORBIDDEN, r"\bforbidden\b"),
    _rule(_C.UNREACHABLE, r"unable to ping registry endpoint|pinging (?:container|docker) registry"),
)

# Waiting or event reasons that decide by themselves.
_DECISIVE_REASONS = {
    "InvalidImageName": Category.INVALID_REFERENCE,
    "ErrImageNeverPull": Category.OTHER,
    "FailedToRetrieveImagePullSecret": Category.SECRET_MISSING,
}
# Reasons that say something only when the message says nothing.
_FALLBACK_REASONS = {
    "RegistryUnavailable": Category.UNREACHABLE,
    "ImageInspectError": Category.OTHER,
    "SignatureValidationFailed": Category.OTHER,
}

# Least informative last; within a tie a definite answer beats an ambiguous one.
_PREFERENCE = (
    Category.SECRET_MISSING,
    Category.INVALID_REFERENCE,
    Category.PLATFORM,
    Category.NOT_FOUND,
    Category.FORBIDDEN,
    Category.UNAUTHORIZED,
    Category.RATE_LIMITED,
    Category.TLS,
    Category.UNREACHABLE,
    Category.REGISTRY_SERVER_ERROR,
    Category.OTHER,
    Category.UNKNOWN,
)

_DESC = "desc = "
_NEXT_RPC_ERROR = re.compile(r",\s*(?=rpc error: code = )")
# containers/image (CRI-O, podman) with mirrors configured: "(Mirrors also failed: [mirror: error]\n...):
# registry: error". The registry's own error, last, decides; the mirrors' are read when it is missing.
_MIRRORS = "(Mirrors also failed: "
_MIRROR_ATTEMPT = re.compile(r"\[([^\[\]]*)\]")

# Blanked before any status number is looked for; evidence shows the blanks as an ellipsis.
# Each starts only where a token starts (the lookbehinds) and never gives back what it consumed
# (possessive quantifiers), so a long run without the character it needs is read once, not once per
# position: a 100 KB token of digits or dotted names costs linear time, not quadratic.
_ELIDED = "…"
_SCRUB = (
    re.compile(r"(?<![\w+.-])[a-z][a-z0-9+.-]*+://[^\s\"'<>]++", re.IGNORECASE),  # URLs
    re.compile(r"(?<![^\s\"'])[^\s\"'/@]*+[/@][^\s\"']*+"),  # anything with a path or a digest: references, hosts/paths
    re.compile(r"(?<![^\s\"':])[^\s\"':]++:(?=[^\s\"'])[^\s\"']++"),  # name:tag, algorithm:hex, host:port
    re.compile(r"(?<![\w-])\b(?:[a-z0-9-]++\.)+[a-z0-9-]+\b", re.IGNORECASE),  # bare hosts, IPs, versions
    re.compile(r"\b[0-9a-f]{12,}+\b", re.IGNORECASE),  # ids and digests without an algorithm
    re.compile(r"\d{5,}"),  # account and project numbers
)


# What is read of a message: its first and its last 4 KB. A kubelet message is short (the longest of
# the real ones in tests/data/pull_failures.yaml is under 900 characters); a longer one carries someone
# else's output pasted in, such as a proxy's HTML page after "error parsing HTTP 403 response body" or a
# long list of per-credential errors, and the cause is stated at the start (the kubelet's and the
# runtime's wrapping, the registry's status line) or at the end (the runtime's own error after the last
# "desc ="). Dropping the middle bounds the cost of every call however long the message is: the operator
# classifies each stuck container it sees in a watch, and a message is text a registry or a proxy chose.
# The newline around the mark keeps a phrase from being read across the cut.
_HEAD = 4096
_TAIL = 4096
_CUT = "\n…\n"


def classify(message: str, reason: str | None = None) -> Classification:
    """Classify one kubelet message (a waiting message or an Event message) and its reason.

    Never raises; a message with nothing recognisable is :attr:`Category.UNKNOWN`. Only the first and
    last 4 KB of a longer message are read.
    """
    text = _bounded(message or "")
    image = extract_image(text)
    reason = (reason or "").strip()
    if reason in _DECISIVE_REASONS:
        return Classification(_DECISIVE_REASONS[reason], False, f"reason {reason}", image)

    parts = _parts(text)
    best = min((_match(part) for part in parts), key=_rank)
    if best.category is Category.UNKNOWN and parts != [text]:
        best = _match(text)  # nothing recognisable after "desc =": the wrapper may still say something
    if best.category is Category.UNKNOWN and reason in _FALLBACK_REASONS:
        return Classification(_FALLBACK_REASONS[reason], False, f"reason {reason}", image)
    return dataclasses.replace(best, image=image)


def _bounded(text: str) -> str:
    if len(text) <= _HEAD + len(_CUT) + _TAIL:
        return text
    return text[:_HEAD] + _CUT + text[-_TAIL:]


def _parts(message: str) -> list[str]:
    """The runtime's own error(s): after the last ``desc =``, one per credential when aggregated; with
    mirrors, the registry's own error, or each mirror's when the registry's was cut off."""
    start, end = message.find("["), message.rfind("]")
    if 0 <= start < end:
        pieces = _NEXT_RPC_ERROR.split(message[start + 1 : end])
        if len(pieces) > 1:
            return [_after_desc(piece) for piece in pieces]
    mirrors = message.find(_MIRRORS)
    if mirrors >= 0:
        closing = message.find("]): ", mirrors)
        if closing >= 0:
            return [message[closing + len("]): ") :]]
        attempts = _MIRROR_ATTEMPT.findall(message, mirrors)
        if attempts:  # the registry's own error was cut off
            return attempts
    return [_after_desc(message)]


def _after_desc(text: str) -> str:
    index = text.rfind(_DESC)
    if index < 0:
        return text
    return text[index + len(_DESC) :] or text


def _match(text: str) -> Classification:
    scrubbed = _scrub(text)
    for rule in _RULES:
        found = rule.pattern.search(scrubbed if rule.scrubbed else text)
        if found:
            return Classification(rule.category, rule.ambiguous, _evidence(found.group(0)))
    return Classification(Category.UNKNOWN, False, "")


def _scrub(text: str) -> str:
    for pattern in _SCRUB:
        text = pattern.sub(_ELIDED, text)
    return text


def _evidence(phrase: str) -> str:
    phrase = re.sub(f"{_ELIDED}+", _ELIDED, " ".join(phrase.split())).strip(" :")
    if len(phrase) > _EVIDENCE_LIMIT:
        phrase = phrase[: _EVIDENCE_LIMIT - 1] + "…"
    return phrase


def _rank(verdict: Classification) -> tuple[bool, bool, int]:
    return (verdict.category is Category.UNKNOWN, verdict.ambiguous, _PREFERENCE.index(verdict.category))


# ---------------------------------------------------------------------------------------------
# The image the message is about.

_QUOTED_REF = re.compile(
    r"(?:pull(?:ing)?(?: and unpack)? image|sandbox image|container image|default image tag|"
    r"resolve reference|parse image reference|PullImage)\s*\\?\"(?P<ref>[^\"\\\s]+)\\?\"",
    re.IGNORECASE,
)
_PLAIN_REFS: Sequence[re.Pattern[str]] = (
    re.compile(r"pull access denied for (?P<ref>[^,\s]+),"),
    re.compile(r"manifest for (?P<ref>\S+) not found"),
    re.compile(r"image pull failed for (?P<ref>[^,\s]+),"),
    re.compile(r"(?<![^\s\"'])docker://(?P<ref>\S+?):\s"),
    re.compile(r"failed to resolve ref (?P<ref>\S+?):\s"),
    re.compile(r"repository (?P<ref>\S+) not found"),
    re.compile(r"^\\?\"(?P<ref>[^\"\\\s]+)\\?\":"),
    re.compile(r"[Ff]ailed to pull image (?P<ref>[^\s\"]+):\s"),
)
_READING_MANIFEST = re.compile(r"reading manifest (?P<ref>\S+) in (?P<repo>\S+?):\s", re.IGNORECASE)
_MANIFEST_URL = re.compile(
    r"(?<![\w/.:-])https?://(?P<host>[^/\s\"]+)/v2/(?P<repo>\S+?)/manifests/(?P<ref>sha256:[0-9a-f]{64}|\w[\w.-]*)"
)
_DOCKER_HUB_API_HOSTS = frozenset({"registry-1.docker.io", "index.docker.io"})


def extract_image(message: str) -> str | None:
    """The image reference a message is about, as written there, or ``None``."""
    message = _bounded(message)
    for quoted in _QUOTED_REF.finditer(message):
        if _plausible(quoted.group("ref")):
            return quoted.group("ref")
    for pattern in _PLAIN_REFS:
        plain = pattern.search(message)
        if plain and _plausible(plain.group("ref")):
            return plain.group("ref")
    manifest = _READING_MANIFEST.search(message)
    if manifest:
        return _join(manifest.group("repo"), manifest.group("ref"))
    url = _MANIFEST_URL.search(message)
    if url:
        host = url.group("host")
        host = "docker.io" if host in _DOCKER_HUB_API_HOSTS else host
        return _join(f"{host}/{url.group('repo')}", url.group("ref"))
    return None


def _join(repository: str, reference: str) -> str:
    return f"{repository}{'@' if reference.startswith('sha256:') else ':'}{reference}"


def _plausible(reference: str) -> bool:
    return any(character.isalnum() for character in reference)

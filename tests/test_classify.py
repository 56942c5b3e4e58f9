"""The image-pull failure classifier: against real messages (tests/data/pull_failures.yaml) and the traps.

The corpus floor is every entry right, category and ``ambiguous`` flag, in every category, unless
it is listed in KNOWN_MISSES with the reason. bench/classifier_accuracy.py prints the same figures.
"""

from __future__ import annotations

import collections
import pathlib
from typing import Any

import pytest
import yaml

from regcred.classify import CREDENTIAL_CATEGORIES, Category, Classification, classify, extract_image

CORPUS_PATH = pathlib.Path(__file__).parent / "data" / "pull_failures.yaml"
CORPUS: list[dict[str, Any]] = yaml.safe_load(CORPUS_PATH.read_text(encoding="utf-8"))

# source -> why the classifier is allowed to get it wrong. Empty: every corpus message is classified right.
KNOWN_MISSES: dict[str, str] = {}

RUNTIMES = {"containerd", "cri-o", "docker", "unknown"}
REGISTRIES = {"dockerhub", "ecr", "ghcr", "gar", "gcr", "acr", "quay", "harbor", "distribution", "other"}


def _id(entry: dict[str, Any]) -> str:
    return str(entry["source"]).removeprefix("https://github.com/")


# ---------------------------------------------------------------------------------------------
# The corpus itself.


def test_the_corpus_is_large_and_well_formed() -> None:
    assert len(CORPUS) >= 100
    for entry in CORPUS:
        assert set(entry) <= {
            "message",
            "reason",
            "expected",
            "ambiguous",
            "runtime",
            "registry",
            "source",
            "split",
            "note",
        }
        assert isinstance(entry["message"], str) and entry["message"].strip()
        assert entry["reason"] is None or isinstance(entry["reason"], str)
        Category(entry["expected"])
        assert isinstance(entry["ambiguous"], bool)
        assert entry["runtime"] in RUNTIMES
        assert entry["registry"] in REGISTRIES
        assert entry["source"].startswith("https://")
        assert entry["split"] in {"tuning", "holdout", "blind"}
    assert len({(entry["message"], entry["reason"]) for entry in CORPUS}) == len(CORPUS), "duplicate entries"


def test_every_category_has_at_least_three_real_messages() -> None:
    counts = collections.Counter(entry["expected"] for entry in CORPUS)
    assert {category.value: counts[category.value] >= 3 for category in Category} == {
        category.value: True for category in Category
    }


def test_the_corpus_spans_the_runtimes_and_registries() -> None:
    assert {entry["runtime"] for entry in CORPUS} == RUNTIMES
    assert {entry["registry"] for entry in CORPUS} == REGISTRIES


@pytest.mark.parametrize("category", list(Category), ids=str)
def test_corpus_accuracy_per_category(category: Category) -> None:
    wrong = []
    for entry in CORPUS:
        if entry["expected"] != category.value or entry["source"] in KNOWN_MISSES:
            continue
        verdict = classify(entry["message"], entry["reason"])
        if verdict.category is not category or verdict.ambiguous is not entry["ambiguous"]:
            wrong.append(
                f"{_id(entry)}: got {verdict.category.value} ambiguous={verdict.ambiguous} ({verdict.evidence!r})"
            )
    assert wrong == []


def test_known_misses_are_still_misses() -> None:
    """An allowlisted miss that now passes should leave the allowlist."""
    for entry in CORPUS:
        if entry["source"] in KNOWN_MISSES:
            verdict = classify(entry["message"], entry["reason"])
            assert verdict.category.value != entry["expected"] or verdict.ambiguous is not entry["ambiguous"]


@pytest.mark.parametrize("entry", CORPUS, ids=_id)
def test_evidence_is_quoted_from_the_message(entry: dict[str, Any]) -> None:
    verdict = classify(entry["message"], entry["reason"])
    if verdict.category is Category.UNKNOWN:
        assert verdict.evidence == ""
        return
    if verdict.evidence.startswith("reason "):
        assert verdict.evidence == f"reason {entry['reason']}"
        return
    flat = " ".join(entry["message"].split()).lower()
    for piece in verdict.evidence.lower().split("…"):
        assert piece.strip(" :") in flat
    assert len(verdict.evidence) <= 120


# ---------------------------------------------------------------------------------------------
# Digits in account ids, digests and tags are not status codes.

ECR_HOST = "401234567890.dkr.ecr.eu-west-1.amazonaws.com"


def test_an_ecr_account_id_with_401_is_not_unauthorized() -> None:
    image = f"{ECR_HOST}/shop/api:v404"
    message = (
        f'Failed to pull image "{image}": rpc error: code = NotFound desc = failed to pull and unpack image '
        f'"{image}": failed to resolve reference "{image}": {image}: not found'
    )
    assert classify(message, "ErrImagePull") == Classification(Category.NOT_FOUND, False, f"{image}: not found", image)


@pytest.mark.parametrize("account", ["403000000001", "404404404404", "429000000429", "503000000503"])
def test_no_account_id_reads_as_a_status(account: str) -> None:
    host = f"{account}.dkr.ecr.us-east-1.amazonaws.com"
    message = (
        f"Error response from daemon: manifest for {host}/app:{account[:3]} not found: manifest unknown: "
        "Requested image not found"
    )
    assert classify(message).category is Category.NOT_FOUND
    assert classify(f'Back-off pulling image "{host}/app:{account[:3]}"', "BackOff").category is Category.UNKNOWN


def test_a_digest_full_of_status_numbers_is_not_a_status() -> None:
    digest = "sha256:" + "401403404429500502503" * 3 + "0"
    message = (
        f'Failed to pull image "registry.example.com/team/app@{digest}": rpc error: code = Unknown desc = '
        f'failed to pull and unpack image "registry.example.com/team/app@{digest}": failed to copy: '
        f"httpReadSeeker: failed open: content at https://registry.example.com/v2/team/app/manifests/{digest} "
        "not found: not found"
    )
    assert classify(message).category is Category.NOT_FOUND


@pytest.mark.parametrize(
    ("project", "answer", "category"),
    [
        ("team-401", "500 Internal Server Error", Category.REGISTRY_SERVER_ERROR),
        ("team-403", "503 Service Unavailable", Category.REGISTRY_SERVER_ERROR),
        ("team-429", "401 Unauthorized", Category.UNAUTHORIZED),
    ],
)
def test_a_number_in_the_token_url_is_not_the_status(project: str, answer: str, category: Category) -> None:
    message = (
        f'failed to resolve reference "registry.example.com/{project}/app:1": failed to authorize: failed to fetch '
        f"oauth token: unexpected status from GET request to https://registry.example.com/token?scope=repository:"
        f"{project}/app:pull&service=registry.example.com: {answer}"
    )
    assert classify(message).category is category


def test_a_status_after_the_url_is_read() -> None:
    message = (
        'Failed to pull image "403000000001.dkr.ecr.us-east-1.amazonaws.com/app:1": failed to resolve reference '
        '"403000000001.dkr.ecr.us-east-1.amazonaws.com/app:1": unexpected status from HEAD request to '
        "https://403000000001.dkr.ecr.us-east-1.amazonaws.com/v2/app/manifests/1: 401 Unauthorized"
    )
    verdict = classify(message)
    assert (verdict.category, verdict.ambiguous, verdict.evidence) == (Category.UNAUTHORIZED, False, "401 Unauthorized")


def test_the_docker_engines_own_status_is_not_the_registrys() -> None:
    assert classify("HTTP code is 502 which indicates error: undefined - Bad response from Docker engine").category is (
        Category.UNKNOWN
    )
    assert classify(
        "(HTTP code 500) server error - Get https://registry-1.docker.io/v2/: dial tcp: i/o timeout"
    ).category is (Category.UNREACHABLE)


# ---------------------------------------------------------------------------------------------
# The runtime's own error, after "desc =", decides.


def test_the_text_after_desc_is_preferred() -> None:
    message = (
        'Failed to pull image "ghcr.io/acme/app:1": rpc error: code = NotFound desc = failed to pull and unpack '
        'image "ghcr.io/acme/app:1": no match for platform in manifest: not found'
    )
    assert classify(message).category is Category.PLATFORM  # not not_found, whatever the gRPC code says


def test_the_last_desc_wins_over_what_comes_before() -> None:
    message = (
        "PullImage from cache failed: manifest unknown: rpc error: code = Unknown desc = rpc error: code = Unknown "
        "desc = received unexpected HTTP status: 503 Service Unavailable"
    )
    verdict = classify(message)
    assert (verdict.category, verdict.evidence) == (Category.REGISTRY_SERVER_ERROR, "503 Service Unavailable")


def test_the_wrapper_is_read_when_nothing_follows_desc() -> None:
    message = 'Failed to apply default image tag "a b": couldn\'t parse image reference "a b": rpc error: desc = '
    assert classify(message).category is Category.INVALID_REFERENCE


def test_of_several_credentials_tried_the_most_informative_answer_wins() -> None:
    message = (
        'Failed to pull image "acr.azurecr.io/app": [rpc error: code = Unknown desc = Error response from daemon: '
        "manifest for acr.azurecr.io/app:latest not found: manifest unknown: manifest unknown, rpc error: code = "
        "Unknown desc = Error response from daemon: Get https://acr.azurecr.io/v2/app/manifests/latest: "
        "unauthorized: authentication required]"
    )
    assert classify(message).category is Category.NOT_FOUND
    message = (
        'Failed to pull image "x": [rpc error: code = Unknown desc = received unexpected HTTP status: 500 Internal '
        "Server Error, rpc error: code = Unknown desc = unauthorized: authentication required]"
    )
    assert classify(message).category is Category.UNAUTHORIZED


def test_with_mirrors_the_registrys_own_error_decides() -> None:
    # containers/image: "(Mirrors also failed: [mirror: error]\n[mirror: error]): registry: error"
    mirrors = (
        "rpc error: code = Unknown desc = initializing source docker://quay.io/acme/app:1: (Mirrors also failed: "
        "[mirror.example.com/acme/app:1: manifest unknown]\n[cache.example.com/acme/app:1: manifest unknown])"
    )
    registry = ": quay.io/acme/app:1: unauthorized: access to the requested resource is not authorized"
    verdict = classify(mirrors + registry)
    assert (verdict.category, verdict.ambiguous) == (Category.UNAUTHORIZED, True)
    assert classify(mirrors).category is Category.NOT_FOUND  # the registry's own error was cut off


def test_the_back_off_message_carries_the_pull_error_from_kubernetes_1_32() -> None:
    # pkg/kubelet/images/image_manager.go appends the previous pull's "<reason>: <message>" (#127918).
    cause = (
        'ErrImagePull: failed to pull and unpack image "ghcr.io/acme/app:1": failed to resolve reference '
        '"ghcr.io/acme/app:1": failed to authorize: failed to fetch oauth token: unexpected status from GET '
        "request to https://ghcr.io/token?scope=repository%3Aacme%2Fapp%3Apull: 403 Forbidden"
    )
    verdict = classify(f'Back-off pulling image "ghcr.io/acme/app:1": {cause}', "ImagePullBackOff")
    assert (verdict.category, verdict.image) == (Category.FORBIDDEN, "ghcr.io/acme/app:1")
    assert classify('Back-off pulling image "ghcr.io/acme/app:1"', "BackOff").category is Category.UNKNOWN


@pytest.mark.parametrize(
    "message",
    [
        'Failed to pull image "appscode/kubed:v0.11.0": rpc error: code = Unknown desc = failed to pull and unpack '
        'image "docker.io/appscode/kubed:v0.11.0": failed to unpack image on snapshotter overlayfs: content digest '
        "sha256:6e02c8465a9200baea2c07f4d7a9e423c17046f271b95be1e70c4bb94464e0af: not found",
        "pulling image: rpc error: code = Unknown desc = Source image rejected: Required email wrong@mail.com not "
        'found (got []string{"sgrunert@redhat.com"})',
        "Forbidden: this image is prohibited by policy: only images imported into the registry are allowed",
    ],
    ids=["unpacking-not-found", "signature-not-found", "policy-forbidden"],
)
def test_not_found_and_forbidden_said_by_the_node_or_a_policy_are_not_the_registrys(message: str) -> None:
    assert classify(message).category is Category.OTHER


# ---------------------------------------------------------------------------------------------
# Missing or private?

DOCKER_HUB_AMBIGUOUS = (
    'Failed to pull image "acme/private-api:2.1": rpc error: code = Unknown desc = Error response from daemon: '
    "pull access denied for acme/private-api, repository does not exist or may require 'docker login': "
    "denied: requested access to the resource is denied"
)


def test_docker_hubs_missing_or_private_message_is_flagged_ambiguous() -> None:
    verdict = classify(DOCKER_HUB_AMBIGUOUS, "ErrImagePull")
    assert verdict.category is Category.UNAUTHORIZED
    assert verdict.ambiguous
    assert verdict.evidence == "repository does not exist or may require 'docker login'"
    assert verdict.image == "acme/private-api:2.1"


@pytest.mark.parametrize(
    "message",
    [
        "pull access denied, repository does not exist or may require authorization: server message: "
        "insufficient_scope: authorization failed",
        "Error reading manifest 1.0 in quay.io/acme/app: unauthorized: access to the requested resource is not "
        "authorized",
        "failed to authorize: failed to fetch anonymous token: unexpected status from GET request to "
        "https://ghcr.io/token?scope=repository%3Aacme%2Fapp%3Apull&service=ghcr.io: 403 Forbidden",
    ],
    ids=["containerd-insufficient-scope", "quay", "anonymous-token"],
)
def test_other_missing_or_private_wordings_are_ambiguous(message: str) -> None:
    verdict = classify(message)
    assert (verdict.category, verdict.ambiguous) == (Category.UNAUTHORIZED, True)


def test_a_definite_reason_after_the_ambiguous_wrapper_wins() -> None:
    expired = (
        "pull access denied for 123456789012.dkr.ecr.us-east-2.amazonaws.com/test, repository does not exist or "
        "may require 'docker login': denied: Your authorization token has expired. Reauthenticate and try again."
    )
    assert classify(expired) == Classification(
        Category.UNAUTHORIZED,
        False,
        "authorization token has expired",
        "123456789012.dkr.ecr.us-east-2.amazonaws.com/test",
    )
    iam = (
        "pull access denied for 123456789012.dkr.ecr.us-west-2.amazonaws.com/app, repository does not exist or may "
        "require 'docker login': denied: User: arn:aws:sts::123456789012:assumed-role/node/i-0abc is not authorized "
        "to perform: ecr:BatchGetImage on resource: arn:aws:ecr:us-west-2:123456789012:repository/app"
    )
    verdict = classify(iam)
    assert (verdict.category, verdict.ambiguous, verdict.evidence) == (
        Category.FORBIDDEN,
        False,
        "is not authorized to perform: ecr:BatchGetImage",
    )


def test_a_timed_out_token_fetch_is_the_network_not_the_credential() -> None:
    message = (
        'failed to resolve reference "docker.io/library/nginx:latest": failed to authorize: failed to fetch anonymous '
        'token: Get "https://auth.docker.io/token?scope=repository%3Alibrary%2Fnginx%3Apull": dial tcp '
        "199.59.148.222:443: i/o timeout"
    )
    assert classify(message).category is Category.UNREACHABLE


# ---------------------------------------------------------------------------------------------
# Reasons.


@pytest.mark.parametrize(
    ("reason", "category"),
    [
        ("InvalidImageName", Category.INVALID_REFERENCE),
        ("ErrImageNeverPull", Category.OTHER),
        ("FailedToRetrieveImagePullSecret", Category.SECRET_MISSING),
    ],
)
def test_some_reasons_decide_alone(reason: str, category: Category) -> None:
    verdict = classify("401 Unauthorized", reason)  # the message cannot overrule them
    assert (verdict.category, verdict.evidence) == (category, f"reason {reason}")


def test_other_reasons_only_fill_in_for_a_silent_message() -> None:
    assert classify("", "RegistryUnavailable").category is Category.UNREACHABLE
    assert classify("manifest unknown", "RegistryUnavailable").category is Category.NOT_FOUND
    assert classify('Back-off pulling image "nginx"', "ImagePullBackOff").category is Category.UNKNOWN


def test_a_missing_pull_secret_is_not_a_missing_image() -> None:
    message = (
        'Unable to retrieve pull secret default/regcred for default/web-1 due to secret "regcred" not found.  '
        "The image pull may not succeed."
    )
    assert classify(message).category is Category.SECRET_MISSING


def test_credential_categories() -> None:
    assert frozenset({Category.UNAUTHORIZED, Category.FORBIDDEN, Category.SECRET_MISSING}) == CREDENTIAL_CATEGORIES


@pytest.mark.parametrize(
    "message", ["", "   ", "\x00\xff", "[", "]]][[", "desc = ", "rpc error: code = Unknown desc ="]
)
def test_never_raises(message: str) -> None:
    assert classify(message).category is Category.UNKNOWN


# ---------------------------------------------------------------------------------------------
# Long and hostile messages: the text is someone else's (a registry's, a proxy's), so every call must
# stay cheap whatever it contains. How long it takes is printed by bench/classifier_accuracy.py; here
# the timeout only keeps a regression from hanging the suite.

HTML_403 = (
    'Failed to pull image "registry.example.com/team/app:1": rpc error: code = Unknown desc = Error response from '
    "daemon: error parsing HTTP 403 response body: invalid character '<' looking for beginning of value: "
    '"<html><head><title>403 Forbidden</title></head><body>'
)


@pytest.mark.timeout(10)
def test_a_100_kb_message_is_read_at_its_start_and_its_end() -> None:
    body = "<p>" + "x" * 100_000 + "</p>"
    verdict = classify(HTML_403 + body + '</body></html>"', "ErrImagePull")
    assert (verdict.category, verdict.image) == (Category.FORBIDDEN, "registry.example.com/team/app:1")
    tail_only = "padding " * 12_500 + 'failed to resolve reference "ghcr.io/acme/app:2": ghcr.io/acme/app:2: not found'
    assert classify(tail_only).category is Category.NOT_FOUND
    middle_only = "padding " * 6_250 + "manifest unknown " + "padding " * 6_250
    assert classify(middle_only).category is Category.UNKNOWN  # the middle of a long message is not read


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    "message",
    [
        "rpc error: code = Unknown desc = " * 3_000,
        "1" * 100_000,
        "a." * 50_000,
        "a-" * 50_000,
        "-." * 50_000,
        "x" * 100_000 + ":",
        "[" + "rpc error: code = Unknown desc = x, " * 2_800 + "]",
        "failed to fetch anonymous token: " * 3_000,
        "requesting bearer token: " * 4_000,
        "docker://a" * 10_000,
        "https://h/v2/" * 8_000,
        "a: not founda" * 8_000,
    ],
    ids=[
        "desc",
        "digits",
        "dotted-hosts",
        "dashes",
        "dash-dots",
        "no-colon-till-the-end",
        "credentials",
        "anonymous-token",
        "bearer-token",
        "docker-urls",
        "registry-urls",
        "not-found-glued",
    ],
)
def test_pathological_messages_are_classified_not_hung_on(message: str) -> None:
    assert classify(message) == Classification(Category.UNKNOWN, False, "", None)


# ---------------------------------------------------------------------------------------------
# The image a message is about.


@pytest.mark.parametrize(
    ("message", "image"),
    [
        ('Failed to pull image "nginx:1.25": rpc error: code = Unknown desc = ...', "nginx:1.25"),
        ('Back-off pulling image "ghcr.io/acme/app@sha256:' + "a" * 64 + '"', "ghcr.io/acme/app@sha256:" + "a" * 64),
        ('Container image "app:local" is not present with pull policy of Never', "app:local"),
        ('failed to resolve reference \\"docker.io/acme/app:1\\": pull access denied', "docker.io/acme/app:1"),
        ("Error response from daemon: pull access denied for acme/app, repository does not exist", "acme/app"),
        (
            "Error reading manifest sha256:" + "b" * 64 + " in quay.io/acme/app: unauthorized: x",
            "quay.io/acme/app@sha256:" + "b" * 64,
        ),
        (
            "Error initializing source docker://quay.io/acme/app:1.0: reading manifest 1.0 in quay.io/acme/app: x",
            "quay.io/acme/app:1.0",
        ),
        (
            'Failed to pull image "": Get https://1234.dkr.ecr.eu-west-1.amazonaws.com/v2/team/app/manifests/v2: '
            "no basic auth credentials",
            "1234.dkr.ecr.eu-west-1.amazonaws.com/team/app:v2",
        ),
        ("Get https://registry-1.docker.io/v2/library/mysql/manifests/latest: EOF", "docker.io/library/mysql:latest"),
        ('Failed to pull image "***": unauthorized', None),
        ("toomanyrequests: You have reached your pull rate limit", None),
    ],
)
def test_the_image_is_found(message: str, image: str | None) -> None:
    assert extract_image(message) == image
    assert classify(message).image == image

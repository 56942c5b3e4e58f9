"""A registry probe survives whatever a registry, its token service or a proxy in between answers.

The probe (spec.verify.image, diagnosis, `regcred doctor`) reads the registry's WWW-Authenticate challenge,
its token service's JSON, error bodies, tag lists, redirects and Link headers. Answers are generated and
served through requests and urllib3 (tests/canned_http.py), no network. The properties: probe() returns a
ProbeResult with a detail, never raises, never repeats the password or the token it was given, and takes
bounded time; parse_www_authenticate takes linear time on adversarial headers.
"""

from __future__ import annotations

import json
import time

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from regcred.probe import Prober, ProbeResult, parse_www_authenticate
from tests.canned_http import HEADER_TEXT, STATUSES, Answer, header_value, headers, session
from tests.hostile import BYTES, HOSTILE_TEXT, JSON_VALUES, TEXT, json_text

IMAGE = "registry.example.com/team/app:1.0"
PASSWORD = "c4n4ry-pr0be-password"
TOKEN = "c4n4ry-pr0be-token"
BOUND_SECONDS = 3.0
FUZZ = settings(max_examples=500, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.large_base_example])

PARAMS = st.dictionaries(st.sampled_from(["realm", "service", "scope", "error", "REALM"]), st.one_of(
    st.sampled_from(["https://registry.example.com/token", "https://auth.example.com/token", "http://[",
                     "https://registry.example.com:99999/token", "registry.example.com", "insufficient_scope"]),
    HOSTILE_TEXT.map(header_value)), max_size=4)
CHALLENGES = st.one_of(
    HEADER_TEXT,
    st.tuples(st.sampled_from(["Bearer", "bearer", "Basic", "Negotiate", ""]), PARAMS).map(
        lambda parts: f"{parts[0]} " + ",".join(f'{name}="{value}"' for name, value in parts[1].items())),
    st.sampled_from(['Bearer ' + 'a="' * 10_000, 'Bearer realm="' + "\\" * 50_000, "Bearer " + "a=b, " * 10_000,
                     ", " * 30_000, 'Basic realm="x", Bearer realm="https://registry.example.com/token"']),
)
BODIES = st.one_of(
    BYTES,
    json_text().map(lambda text: text.encode("utf-8", "surrogatepass")),
    st.fixed_dictionaries({}, optional={"token": JSON_VALUES, "access_token": JSON_VALUES,
                                        "errors": JSON_VALUES, "tags": JSON_VALUES, "details": JSON_VALUES}).map(
        lambda body: json.dumps(body).encode()),
    st.just(json.dumps({"token": TOKEN}).encode()),
    st.lists(st.fixed_dictionaries({"code": JSON_VALUES, "message": JSON_VALUES}), max_size=3).map(
        lambda errors: json.dumps({"errors": errors}).encode()),
)
ANSWERS = st.lists(st.tuples(STATUSES, headers({"WWW-Authenticate": CHALLENGES, "Docker-Content-Digest": HEADER_TEXT,
                                                 "Retry-After": HEADER_TEXT}), BODIES),
                   min_size=1, max_size=5)


def check(result: ProbeResult) -> None:
    assert isinstance(result, ProbeResult)
    assert result.detail.strip()
    shown = " ".join([result.detail, *result.evidence])
    assert PASSWORD not in shown and TOKEN not in shown, shown[:300]


# The crashes this test found, kept as examples (each was an exception out of probe()).
@example(answers=[(401, [("Content-Length", "100")], b"cut short")], credentials=True)
@example(answers=[(401, [("Content-Encoding", "gzip")], b"not gzip")], credentials=True)
@example(answers=[(500, [], b"[" * 60_000)], credentials=True)
@FUZZ
@given(answers=ANSWERS, credentials=st.booleans())
def test_a_probe_survives_any_answer(answers: list[Answer], credentials: bool) -> None:
    client, _ = session(answers)
    prober = Prober(session=client, token_realm_hosts=["auth.example.com"])
    started = time.monotonic()
    check(prober.probe(IMAGE, ("puller", PASSWORD) if credentials else None))
    assert time.monotonic() - started < BOUND_SECONDS


@settings(max_examples=500, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(header=st.one_of(TEXT, CHALLENGES))
def test_www_authenticate_is_parsed_in_linear_time(header: str) -> None:
    started = time.monotonic()
    for challenge in parse_www_authenticate(header):
        assert challenge.scheme == challenge.scheme.lower()
        assert all(isinstance(value, str) for value in challenge.params.values())
    assert time.monotonic() - started < BOUND_SECONDS


def test_a_redirect_whose_body_cannot_be_read_twice_is_an_answer_not_a_crash() -> None:
    """Seen once by the fuzzer under load: requests re-reads a redirect's body that failed to decode, and urllib3 2
    raises RuntimeError for that read."""
    client, _ = session([(200, [], b"{}")])

    def request(*_: object, **__: object) -> None:
        raise RuntimeError("Calling read(decode_content=False) is not supported after read(decode_content=True) "
                           "was called.")

    client.request = request  # type: ignore[method-assign,assignment]
    result = Prober(session=client).probe(IMAGE, ("puller", PASSWORD))
    check(result)
    assert "redirect whose body could not be read" in result.detail

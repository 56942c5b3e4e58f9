"""A `requests` transport that answers from a list, no network: for fuzzing what servers answer.

Mounted on a Session, it serves each request the next canned (status, headers, body), the last one repeating.
The answer goes through urllib3's HTTPResponse and requests' own response building, so redirects, Link
headers, content encodings and JSON decoding are requests' and urllib3's real code.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import requests
import urllib3
from hypothesis import strategies as st

from tests.hostile import TEXT, TIMESTAMPS

Answer = tuple[int, list[tuple[str, str]], bytes]


def header_value(text: str) -> str:
    """What an HTTP header can carry: latin-1 text on one line, at most 64 KiB (http.client's line limit)."""
    return text.encode("latin-1", "replace").decode("latin-1").replace("\r", " ").replace("\n", " ")[:65_536]


HEADER_TEXT = st.one_of(TEXT, TIMESTAMPS).map(header_value)
STATUSES = st.one_of(st.sampled_from([200, 201, 204, 301, 302, 307, 400, 401, 403, 404, 429, 500, 502, 503]),
                     st.integers(100, 599))
# Headers every server may send, whatever the API: encodings that do not match the body, Links, redirects.
COMMON_HEADERS = {
    "Content-Encoding": st.sampled_from(["gzip", "deflate", "br", "identity", "gzip, gzip", "x-unknown"]),
    "Content-Type": st.sampled_from(["application/json", "text/html", "application/json; charset=utf-16"]),
    "Content-Length": st.one_of(st.integers(0, 100_000).map(str), st.just("-1")),  # a connection cut short
    "Link": st.one_of(HEADER_TEXT, st.just('<https://x/v2/r/tags/list?n=10&last=a>; rel="next"'), st.just("<>;")),
    "Location": st.one_of(HEADER_TEXT, st.sampled_from(["http://[", "https://elsewhere.example/", "/v2/", "//x:99999",
                                                        "https://registry.example.com:0/"])),
}


def headers(specific: dict[str, st.SearchStrategy[str]]) -> st.SearchStrategy[list[tuple[str, str]]]:
    """Some of the common and the API's own headers, and odd ones."""
    return st.fixed_dictionaries({}, optional={**COMMON_HEADERS, **specific}).map(lambda d: list(d.items())).flatmap(
        lambda known: st.lists(st.tuples(st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,20}", fullmatch=True),
                                         HEADER_TEXT), max_size=2).map(lambda odd: known + odd))


class Canned(requests.adapters.HTTPAdapter):
    def __init__(self, answers: Sequence[Answer]) -> None:
        super().__init__()
        self.answers = list(answers)
        self.sent: list[requests.PreparedRequest] = []

    def send(self, request: requests.PreparedRequest, stream: bool = False, timeout: Any = None,
             verify: Any = True, cert: Any = None, proxies: Any = None) -> requests.Response:
        self.sent.append(request)
        status, fields, body = self.answers[min(len(self.sent), len(self.answers)) - 1]
        if status < 200 or status in (204, 304) or request.method == "HEAD":
            body = b""  # http.client reads no body for these
        raw = urllib3.HTTPResponse(body=io.BytesIO(body), headers=urllib3.HTTPHeaderDict(fields), status=status,
                                   reason="Fuzzed", preload_content=False, decode_content=False)
        return self.build_response(request, raw)  # Session.send reads the body unless stream=True


def session(answers: Sequence[Answer]) -> tuple[requests.Session, Canned]:
    canned = Canned(answers)
    client = requests.Session()
    client.trust_env = False
    client.mount("http://", canned)
    client.mount("https://", canned)
    return client, canned

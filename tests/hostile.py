"""Hypothesis strategies for what a careless user, a hostile tenant or a broken server can send.

Shared by the fuzz tests (tests/test_fuzz_*.py): free text, bytes, JSON documents and timestamps at the
extremes that a parser must survive (non-UTF-8, megabytes, nesting thousands deep, years 1 and 9999 with an
offset that pushes them out of range).
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

# Free text where a schema has no pattern: what a careless user or a tenant might write.
HOSTILE_TEXT = st.one_of(
    st.text(max_size=80),
    st.sampled_from(["http://[", "https://h:99999/", "", " ", "../../etc/passwd", "[" * 200, "\x00", "é" * 70]),
)

# Texts no parser should choke on or spend quadratic time on: long runs, deep nesting, odd digits.
ADVERSARIAL_TEXT = st.sampled_from([
    "[" * 100_000,
    "{\"a\":" * 50_000,
    '"' * 100_000,
    "\\" * 100_000,
    "9" * 100_000,
    "²",
    "١٢٣",
    "a" * 1_000_000,
    " \t" * 50_000,
    "\udcff",  # a lone surrogate: str, but not encodable as UTF-8
    "\u2028\u2029\x85",
])

TEXT = st.one_of(HOSTILE_TEXT, ADVERSARIAL_TEXT)

# Timestamps as an annotation or a response may carry them: valid, out of range once converted to UTC, or not
# timestamps at all.
TIMESTAMPS = st.one_of(
    st.sampled_from([
        "2026-12-01T18:00:00Z", "0001-01-01T00:00:00+01:00", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59-01:00",
        "9999-12-31T23:59:59Z", "9999-12-31T23:59:59.999999+00:00", "2026-12-01", "2026-12-01T18:00:00",
        "2026-13-45T99:99:99Z", "now", "", "1e400", "\uff12\uff10\uff12\uff16-12-01T18:00:00Z",
    ]),
    st.datetimes(timezones=st.timezones()).map(lambda moment: moment.isoformat()),
    HOSTILE_TEXT,
)

# Any JSON value, a few levels deep, with the odd strings and numbers in it.
JSON_VALUES: st.SearchStrategy[Any] = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), HOSTILE_TEXT),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(HOSTILE_TEXT, inner, max_size=4),
    max_leaves=12,
)


def json_text(values: st.SearchStrategy[Any] = JSON_VALUES) -> st.SearchStrategy[str]:
    """JSON documents, and texts that are almost JSON (cut short, nested too deep, numbers too long)."""
    return st.one_of(
        values.map(json.dumps),
        values.map(lambda value: json.dumps(value)[:-1]),
        st.sampled_from(["[" * 5_000 + "]" * 5_000, "{\"a\":" * 3_000 + "1" + "}" * 3_000, "1" * 5_000, "NaN",
                         "{\"a\": 1e999}", "", "null", "\ufeff{}"]),
        TEXT,
    )


# Bytes as a Secret's data may hold them: text, not UTF-8, huge, JSON and almost JSON.
BYTES = st.one_of(
    st.binary(max_size=64),
    TEXT.map(lambda text: text.encode("utf-8", "surrogatepass")),
    json_text().map(lambda text: text.encode("utf-8", "surrogatepass")),
    st.sampled_from([b"\xff\xfe", b"\x00" * 10, b"\xc3", b"x" * 2_000_000, b" \n "]),
)

"""Everything the CRD's schema admits is parsed into a spec or refused with a sentence: never an exception.

Specs are generated from the CRD's own schema (a small schema-to-strategy walk below: types, patterns,
enums, bounds; the CEL rules and junctors are not applied, so this is a superset of what a real API
server admits). Strings drawn from a pattern include the extremes a pattern allows and a person never
means (`30000000000h`, hosts of 200 characters). What the operator cannot use must become a SpecError's
sentence for ``Ready=False``, never a crash that stalls the reconciliation.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from regcred.models import SpecError, parse_credential
from tests.hostile import HOSTILE_TEXT
from tests.test_crd import load_schema

SPEC_SCHEMA: dict[str, Any] = load_schema()["properties"]["spec"]


def strategy(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values that satisfy a schema's type, pattern, enum and bounds (junctors and CEL are left out)."""
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "object":
        properties = schema.get("properties") or {}
        required = [name for name in schema.get("required") or [] if name in properties]
        optional = {name: strategy(sub) for name, sub in properties.items() if name not in required}
        if not properties:  # a free map (labels): keys and values as a user writes them
            return st.dictionaries(st.from_regex(r"[a-z][a-z0-9.-]{0,20}", fullmatch=True), HOSTILE_TEXT, max_size=3)
        return st.fixed_dictionaries({name: strategy(properties[name]) for name in required}, optional=optional)
    if kind == "array":
        return st.lists(strategy(schema.get("items") or {}), max_size=min(int(schema.get("maxItems", 4)), 4))
    if kind == "integer":
        return st.integers(min_value=schema.get("minimum", -(2**63)), max_value=schema.get("maximum", 2**63 - 1))
    if kind == "boolean":
        return st.booleans()
    if kind == "string":
        if "pattern" in schema:
            text = st.from_regex(schema["pattern"], fullmatch=True)
            return text.filter(lambda t: len(t) <= int(schema.get("maxLength", 10_000)))
        return HOSTILE_TEXT
    return st.one_of(st.none(), st.integers(), HOSTILE_TEXT)  # x-kubernetes-int-or-string and the like


@settings(max_examples=1000, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])
@given(spec=strategy(SPEC_SCHEMA))
def test_a_schema_valid_spec_is_parsed_or_refused_with_a_sentence(spec: dict[str, Any]) -> None:
    try:
        parsed = parse_credential("fuzzed", spec)
    except SpecError as refused:
        message = str(refused)
        assert message.endswith("."), message  # a sentence for Ready=False
        assert len(message) < 1_000, message[:200]
    else:
        assert parsed.secret_name == spec["secretName"]

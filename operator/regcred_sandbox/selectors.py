"""
Label selectors and field selectors as the API server parses them from query strings.

Parsing happens once per request; matching is a few dict look-ups per object, so a filtered
list stays O(n) in the number of objects.
"""

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

_KEY = r'[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?'
_VALUE = r'([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?'
_KEY_RE = re.compile(_KEY)
_VALUE_RE = re.compile(_VALUE)
_SET_RE = re.compile(rf'^\s*({_KEY})\s+(in|notin)\s*\((.*)\)\s*$')
_EQ_RE = re.compile(rf'^\s*({_KEY})\s*(==|=|!=)\s*(.*?)\s*$')


class SelectorError(ValueError):
    """An unparseable selector: 400 BadRequest."""


@dataclasses.dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # '=', '!=', 'in', 'notin', 'exists', '!'
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        match self.op:
            case 'exists':
                return present
            case '!':
                return not present
            case '=' | 'in':
                return present and labels[self.key] in self.values
            case _:  # '!=' and 'notin' also match objects without the label
                return not present or labels[self.key] not in self.values


def _split_terms(text: str) -> list[str]:
    """Split on commas outside of parentheses: ``a in (x,y),b`` is two terms."""
    terms: list[str] = []
    depth, start = 0, 0
    for i, char in enumerate(text):
        if char == '(':
            depth += 1
        elif char == ')':
            depth -= 1
        elif char == ',' and depth == 0:
            terms.append(text[start:i])
            start = i + 1
    terms.append(text[start:])
    return [term.strip() for term in terms if term.strip()]


@dataclasses.dataclass(frozen=True)
class LabelSelector:
    requirements: tuple[Requirement, ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> 'LabelSelector':
        requirements: list[Requirement] = []
        for term in _split_terms(text or ''):
            if term.startswith('!'):
                key = term[1:].strip()
                if not _KEY_RE.fullmatch(key):
                    raise SelectorError(f"Invalid label selector term: {term!r}")
                requirements.append(Requirement(key, '!'))
            elif match := _SET_RE.match(term):
                values = frozenset(v.strip() for v in match.group(4).split(','))
                if not all(_VALUE_RE.fullmatch(v) for v in values):
                    raise SelectorError(f"Invalid label selector values: {term!r}")
                requirements.append(Requirement(match.group(1), match.group(3), values))
            elif match := _EQ_RE.match(term):
                key, op, value = match.group(1), match.group(3), match.group(4)
                if not _VALUE_RE.fullmatch(value):
                    raise SelectorError(f"Invalid label selector value: {term!r}")
                requirements.append(Requirement(key, '!=' if op == '!=' else '=', frozenset([value])))
            elif _KEY_RE.fullmatch(term):
                requirements.append(Requirement(term, 'exists'))
            else:
                raise SelectorError(f"Invalid label selector term: {term!r}")
        return cls(tuple(requirements))

    def __bool__(self) -> bool:
        return bool(self.requirements)

    def matches(self, obj: Mapping[str, Any]) -> bool:
        labels = obj.get('metadata', {}).get('labels') or {}
        return all(req.matches(labels) for req in self.requirements)


def _field_value(obj: Mapping[str, Any], path: tuple[str, ...]) -> str:
    node: Any = obj
    for part in path:
        if not isinstance(node, Mapping):
            return ''
        node = node.get(part)
    if node is None:
        return ''
    if isinstance(node, bool):
        return 'true' if node else 'false'
    return str(node)


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts, current, escaped = [], [], False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif char == '\\':
            escaped = True
        elif char == sep:
            parts.append(''.join(current))
            current = []
        else:
            current.append(char)
    parts.append(''.join(current))
    return parts


@dataclasses.dataclass(frozen=True)
class FieldSelector:
    """
    Any dotted path is accepted (``metadata.name``, ``status.phase``, ``type``, ``spec.nodeName``).

    The real server accepts only a few fields per resource and answers 400 on others;
    here, every field works, and a missing field compares as an empty string (as it does there).
    """
    requirements: tuple[tuple[tuple[str, ...], bool, str], ...] = ()  # (path, equal?, value)

    @classmethod
    def parse(cls, text: str | None) -> 'FieldSelector':
        requirements: list[tuple[tuple[str, ...], bool, str]] = []
        for term in _split_unescaped(text or '', ','):
            if not term.strip():
                continue
            match = re.match(r'^\s*([A-Za-z0-9_.\-/]+)\s*(==|=|!=)(.*)$', term)
            if not match:
                raise SelectorError(f"Invalid field selector term: {term!r}")
            path = tuple(match.group(1).split('.'))
            requirements.append((path, match.group(2) != '!=', match.group(3).strip()))
        return cls(tuple(requirements))

    def __bool__(self) -> bool:
        return bool(self.requirements)

    def matches(self, obj: Mapping[str, Any]) -> bool:
        return all((_field_value(obj, path) == value) == equal for path, equal, value in self.requirements)

    def value_of(self, path: str) -> str | None:
        """The exact value required for a field, if any (to narrow look-ups by name or namespace)."""
        for req_path, equal, value in self.requirements:
            if equal and '.'.join(req_path) == path:
                return value
        return None

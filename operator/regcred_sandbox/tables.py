"""
Server-side printing (``meta.k8s.io/v1`` Table) for ``kubectl get``.

Builtins get NAME, a few well-known columns and AGE; custom resources get NAME plus
their CRD's ``additionalPrinterColumns`` (simple JSONPath only), or NAME and AGE.
"""

import datetime
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

_FILTER_RE = re.compile(r'''^\?\(@\.([A-Za-z0-9_.\-]+)\s*==\s*["']([^"']*)["']\)$''')
_TOKEN_RE = re.compile(r'\.([^.\[]+)|\[([^\]]*)\]')


def jsonpath(obj: Any, path: str) -> Any:
    """The first value at a simple JSONPath: ``.a.b``, ``.a[0]``, ``.a[*].b``, ``.a[?(@.k=="v")].b``."""
    path = path.strip()
    if path.startswith('{') and path.endswith('}'):
        path = path[1:-1]
    path = path.removeprefix('$')
    nodes: list[Any] = [obj]
    for match in _TOKEN_RE.finditer(path):
        field, bracket = match.group(1), match.group(2)
        found: list[Any] = []
        for node in nodes:
            if field is not None:
                if isinstance(node, Mapping) and field in node:
                    found.append(node[field])
            elif isinstance(node, list):
                if bracket == '*':
                    found.extend(node)
                elif bracket.lstrip('-').isdigit():
                    index = int(bracket)
                    if -len(node) <= index < len(node):
                        found.append(node[index])
                elif filter_match := _FILTER_RE.match(bracket):
                    keys, value = filter_match.group(1).split('.'), filter_match.group(2)
                    for item in node:
                        probe = item
                        for key in keys:
                            probe = probe.get(key) if isinstance(probe, Mapping) else None
                        if probe is not None and str(probe) == value:
                            found.append(item)
        nodes = found
    return nodes[0] if nodes else None


def parse_time(value: str) -> datetime.datetime | None:
    try:
        return datetime.datetime.fromisoformat(value.replace('Z', '+00:00'))
    except (TypeError, ValueError):
        return None


def human_duration(seconds: float) -> str:
    """The same rounding as Kubernetes' ``duration.HumanDuration`` (what AGE shows)."""
    if seconds < -1:
        return '<invalid>'
    secs = max(int(seconds), 0)
    if secs < 120:
        return f'{secs}s'
    minutes = secs // 60
    if minutes < 10:
        return f'{minutes}m{secs % 60}s' if secs % 60 else f'{minutes}m'
    if minutes < 180:
        return f'{minutes}m'
    hours = minutes // 60
    if hours < 8:
        return f'{hours}h{minutes % 60}m' if minutes % 60 else f'{hours}h'
    if hours < 48:
        return f'{hours}h'
    if hours < 24 * 8:
        return f'{hours // 24}d{hours % 24}h' if hours % 24 else f'{hours // 24}d'
    if hours < 24 * 365 * 2:
        return f'{hours // 24}d'
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f'{hours // 24 // 365}y{days}d' if days else f'{hours // 24 // 365}y'
    return f'{hours // 24 // 365}y'


def age(value: Any, now: datetime.datetime) -> str:
    when = parse_time(value) if isinstance(value, str) else None
    return '<unknown>' if when is None else human_duration((now - when).total_seconds())


Column = tuple[str, str, Callable[[Mapping[str, Any]], Any]]  # (name, type, getter)

# The well-known columns of a few builtins, as the real server prints them (between NAME and AGE).
BUILTIN_COLUMNS: dict[str, list[Column]] = {
    'Namespace': [('Status', 'string', lambda o: jsonpath(o, '.status.phase'))],
    'Secret': [
        ('Type', 'string', lambda o: o.get('type')),
        ('Data', 'integer', lambda o: len(o.get('data') or {})),
    ],
    'ServiceAccount': [('Secrets', 'integer', lambda o: len(o.get('secrets') or []))],
    'ConfigMap': [('Data', 'integer', lambda o: len(o.get('data') or {}) + len(o.get('binaryData') or {}))],
    'Pod': [('Status', 'string', lambda o: jsonpath(o, '.status.phase'))],
}


def _column_getter(path: str, ctype: str, now: datetime.datetime) -> Callable[[Mapping[str, Any]], Any]:
    def getter(obj: Mapping[str, Any]) -> Any:
        value = jsonpath(obj, path)
        return age(value, now) if ctype == 'date' and value is not None else value
    return getter


def build_table(
        objs: Sequence[Mapping[str, Any]],
        *,
        kind: str,
        printer_columns: Sequence[Mapping[str, Any]] | None,
        include_object: str,
        resource_version: str,
) -> dict[str, Any]:
    now = datetime.datetime.now(datetime.UTC)
    definitions: list[dict[str, Any]] = [
        {'name': 'Name', 'type': 'string', 'format': 'name', 'priority': 0,
         'description': 'Name must be unique within a namespace.'},
    ]
    getters: list[Callable[[Mapping[str, Any]], Any]] = [lambda o: o.get('metadata', {}).get('name')]

    if printer_columns:  # a custom resource with additionalPrinterColumns
        for column in printer_columns:
            definitions.append({
                'name': column.get('name', ''), 'type': column.get('type', 'string'),
                'format': column.get('format', ''), 'description': column.get('description', ''),
                'priority': column.get('priority', 0),
            })
            getters.append(_column_getter(column.get('jsonPath', ''), column.get('type', 'string'), now))
    else:
        for name, ctype, getter in BUILTIN_COLUMNS.get(kind, []):
            definitions.append({'name': name, 'type': ctype, 'format': '', 'description': '', 'priority': 0})
            getters.append(getter)
        definitions.append({'name': 'Age', 'type': 'string', 'format': '', 'priority': 0,
                            'description': 'CreationTimestamp is a timestamp of when the object was created.'})
        getters.append(lambda o: age(o.get('metadata', {}).get('creationTimestamp'), now))

    rows = []
    for obj in objs:
        if include_object == 'None':
            embedded: Any = None
        elif include_object == 'Object':
            embedded = obj
        else:
            embedded = {'kind': 'PartialObjectMetadata', 'apiVersion': 'meta.k8s.io/v1',
                        'metadata': obj.get('metadata', {})}
        rows.append({'cells': [getter(obj) for getter in getters], 'object': embedded})

    return {
        'kind': 'Table',
        'apiVersion': 'meta.k8s.io/v1',
        'metadata': {'resourceVersion': resource_version},
        'columnDefinitions': definitions,
        'rows': rows,
    }

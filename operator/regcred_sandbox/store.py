"""
The storage of one resource: its discovery info, its objects and its bounded watch history.
"""

import asyncio
import dataclasses
import datetime
import json
import re
from collections.abc import Mapping
from typing import Any

ALL_VERBS = frozenset({'create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'})
_VERSION_RE = re.compile(r'^v(\d+)(?:(alpha|beta)(\d+))?$')

Obj = dict[str, Any]


def now_str() -> str:
    return datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%dT%H:%M:%SZ')


def version_priority(version: str) -> tuple[int, int, int, str]:
    """Sort key of Kubernetes version priority: v2 > v1 > v1beta2 > v1beta1 > v1alpha1 > others."""
    match = _VERSION_RE.match(version)
    if not match:
        return (3, 0, 0, version)
    stage = {None: 0, 'beta': 1, 'alpha': 2}[match.group(2)]
    return (stage, -int(match.group(1)), -int(match.group(3) or 0), version)


@dataclasses.dataclass(eq=False)
class WatchEvent:
    rv: int
    type: str
    obj: Obj
    prev: Obj | None


@dataclasses.dataclass(eq=False)
class Store:
    """One resource (shared by its served versions): its discovery info, objects and watch history."""
    group: str
    plural: str
    kind: str
    singular: str
    namespaced: bool
    versions: list[str]  # served, by priority
    storage_version: str
    verbs: frozenset[str] = ALL_VERBS
    shortnames: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: frozenset[str] = frozenset()
    custom: bool = False
    printer_columns: dict[str, list[Obj]] = dataclasses.field(default_factory=dict)

    objects: dict[str, dict[str, Obj]] = dataclasses.field(default_factory=dict)  # ns ('' if none) → name
    events: list[WatchEvent] = dataclasses.field(default_factory=list)
    event_rvs: list[int] = dataclasses.field(default_factory=list)
    compacted_rv: int = 0  # watching from an older resourceVersion answers 410 Expired
    changed: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    closed: bool = False
    _sorted: list[tuple[str, str]] | None = None
    _encoded: dict[tuple[str, str], tuple[Obj, bytes]] = dataclasses.field(default_factory=dict)
    _encoded_items: dict[tuple[str, str], tuple[Obj, bytes]] = dataclasses.field(default_factory=dict)

    @property
    def qualified(self) -> str:
        return f'{self.plural}.{self.group}' if self.group else self.plural

    def api_version(self, version: str | None = None) -> str:
        version = version or self.storage_version
        return f'{self.group}/{version}' if self.group else version

    def get(self, namespace: str | None, name: str) -> Obj | None:
        return self.objects.get(namespace or '', {}).get(name)

    def keys(self, namespace: str | None) -> list[tuple[str, str]]:
        """Sorted (namespace, name) keys, as etcd lists them; cached for cluster-wide listings."""
        if namespace is not None:
            return [(namespace, name) for name in sorted(self.objects.get(namespace, {}))]
        if self._sorted is None:
            self._sorted = sorted((ns, name) for ns, names in self.objects.items() for name in names)
        return self._sorted

    def put(self, obj: Obj) -> None:
        meta = obj['metadata']
        names = self.objects.setdefault(meta.get('namespace', '') if self.namespaced else '', {})
        if meta['name'] not in names:
            self._sorted = None
        names[meta['name']] = obj

    def pop(self, obj: Obj) -> None:
        meta = obj['metadata']
        namespace = meta.get('namespace', '') if self.namespaced else ''
        names = self.objects.get(namespace, {})
        names.pop(meta['name'], None)
        self._encoded.pop((meta.get('namespace', ''), meta['name']), None)
        self._encoded_items.pop((meta.get('namespace', ''), meta['name']), None)
        if not names:
            self.objects.pop(namespace, None)
        self._sorted = None

    def record(self, event: WatchEvent, limit: int) -> None:
        self.events.append(event)
        self.event_rvs.append(event.rv)
        if len(self.events) > limit + limit // 4:  # trim in batches: amortised O(1) per event
            dropped = len(self.events) - limit
            self.compacted_rv = self.event_rvs[dropped - 1]
            del self.events[:dropped]
            del self.event_rvs[:dropped]
        self.wake()

    def wake(self) -> None:
        event, self.changed = self.changed, asyncio.Event()
        event.set()

    def present(self, obj: Obj, version: str) -> Obj:
        """The object as seen through a served version (all versions share the storage)."""
        if version == self.storage_version:
            return obj
        return {**obj, 'apiVersion': self.api_version(version)}

    def present_item(self, obj: Obj, version: str) -> Obj:
        """The object as an item of a List: a builtin's items carry no kind or apiVersion (the List does);
        a custom resource's items keep theirs, as the real server serves them."""
        if self.custom:
            return self.present(obj, version)
        return without(obj, 'apiVersion', 'kind')

    def encode(self, obj: Obj, version: str) -> bytes:
        """The object's JSON, cached: stored objects never change, and lists re-send most of them."""
        return self._encode(obj, version, item=False)

    def encode_item(self, obj: Obj, version: str) -> bytes:
        """The object's JSON as an item of a List (see present_item), cached like encode()."""
        return self._encode(obj, version, item=True)

    def _encode(self, obj: Obj, version: str, *, item: bool) -> bytes:
        if version != self.storage_version:
            return dumps(self.present_item(obj, version) if item else self.present(obj, version))
        cache = self._encoded_items if item and not self.custom else self._encoded
        meta = obj['metadata']
        key = (meta.get('namespace', ''), meta['name'])
        cached = cache.get(key)
        if cached is not None and cached[0] is obj:  # holding obj keeps its id() from being reused
            return cached[1]
        encoded = dumps(self.present_item(obj, version) if item else obj)
        if self.get(key[0], key[1]) is obj:  # only current objects: deleted ones would leak
            cache[key] = (obj, encoded)
        return encoded


def dumps(payload: Any) -> bytes:
    return json.dumps(payload, separators=(',', ':')).encode()


def fresh(obj: Obj) -> Obj:
    """A shallow copy with its own metadata: enough to stamp metadata without touching the original."""
    copy = dict(obj)
    copy['metadata'] = dict(copy.get('metadata') or {})
    return copy


def without(obj: Mapping[str, Any], *keys: str) -> Obj:
    return {key: val for key, val in obj.items() if key not in keys}

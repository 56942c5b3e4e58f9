"""
The emulated Kubernetes API server: kmock's ``KubernetesEmulator`` with a real server's semantics.

kmock provides the resource catalogue of the builtins (``resources.load_bundled()``), the
handler protocol for aiohttp, and the base class. Its request pipeline is replaced here:
kmock matches every request against its whole request history (O(requests) per request) and
keeps objects in one flat list, which cannot serve thousands of requests; its object semantics
lack resource versions, conflicts, selectors, status subresources and strategic merges.

Objects are stored per resource and namespace, are never mutated in place (the watch history
keeps references to them), and everything runs on the server's own event loop: no locks.
"""

import asyncio
import base64
import bisect
import collections
import contextlib
import gzip
import importlib.resources
import json
import logging
import random
import re
import threading
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

import aiohttp.web
import kmock
import yaml

from regcred_sandbox import patches, tables
from regcred_sandbox.protocol import RESET, ApiError, ApiRequest, Chaos, Fault, RequestRecord
from regcred_sandbox.selectors import FieldSelector, LabelSelector, SelectorError
from regcred_sandbox.store import ALL_VERBS, Obj, Store, WatchEvent, dumps, fresh, now_str, version_priority, without

logger = logging.getLogger(__name__)

DEFAULT_NAMESPACES = ('default', 'kube-system', 'kube-public', 'kube-node-lease')
STATUS_VERBS = frozenset({'get', 'patch', 'update'})
# Metadata that only the server writes: kept from the stored object on every update.
SERVER_METADATA = ('name', 'namespace', 'uid', 'creationTimestamp', 'resourceVersion', 'generation',
                   'deletionTimestamp', 'deletionGracePeriodSeconds')
# Kinds whose names the real server validates as DNS subdomains (RBAC & co. allow more).
_DNS_SUBDOMAIN = re.compile(r'^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$')
_DNS_LABEL = re.compile(r'^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$')
_CHECKED_NAMES = {'Secret', 'ConfigMap', 'ServiceAccount', 'Pod', 'Deployment', 'StatefulSet', 'DaemonSet'}


class ApiServer(kmock.KubernetesEmulator):
    """
    The aiohttp handler of the emulated API server. Run it with :class:`EmulatedCluster`.

    Every method must be called on the server's event loop; the cluster marshals calls there.
    kmock's DSL reactions and its ``objects`` array are not consulted: the state lives in stores
    here; inject failures with :meth:`EmulatedCluster.inject_fault`.
    """

    def __init__(
            self, *,
            history_limit: int = 10_000,
            bookmark_interval: float = 60.0,
            namespaces: Iterable[str] = DEFAULT_NAMESPACES,
    ) -> None:
        super().__init__()
        self.history_limit = history_limit
        self.bookmark_interval = bookmark_interval
        self.latency: float = 0.0
        self.faults: list[Fault] = []
        self.chaos: Chaos | None = None  # random faults (EmulatedCluster.chaos)
        self.records: list[RequestRecord] = []
        self.lock = threading.Lock()  # guards faults and records: touched from other threads too
        self.closing = False
        self._rv = 0
        self._stores: dict[tuple[str, str], Store] = {}  # (group, plural)
        self._served: dict[tuple[str, str, str], Store] = {}  # (group, version, plural)
        self._ns_counts: collections.Counter[str] = collections.Counter()  # namespaced objects per namespace

        # As resources.load_bundled(), without its deprecated importlib.resources.read_binary().
        bundled = importlib.resources.files('kmock._internal').joinpath('resources.json.gz').read_bytes()
        self.resources.load_data(gzip.decompress(bundled))
        self._load_builtins()
        self._namespaces = self._stores['', 'namespaces']
        self._crds = self._stores['apiextensions.k8s.io', 'customresourcedefinitions']
        for name in namespaces:
            self.create_object(self._namespaces, None, {'metadata': {'name': name}})

    # -- Registry -----------------------------------------------------------------------------

    def _load_builtins(self) -> None:
        grouped: dict[tuple[str, str], list[tuple[str, kmock.ResourceInfo]]] = collections.defaultdict(list)
        for resource in self.resources:
            info = self.resources[resource]
            if resource.group is not None and resource.version and resource.plural:
                grouped[resource.group, resource.plural].append((resource.version, info))
        for (group, plural), entries in grouped.items():
            versions = sorted((version for version, _ in entries), key=version_priority)
            info = dict(entries)[versions[0]]
            kind = info.kind or plural.capitalize()
            self._add_store(Store(
                group=group, plural=plural, kind=kind, singular=info.singular or kind.lower(),
                namespaced=info.namespaced if info.namespaced is not None else True,
                versions=versions, storage_version=versions[0],
                verbs=frozenset(info.verbs) or ALL_VERBS,
                shortnames=tuple(sorted(info.shortnames)), categories=tuple(sorted(info.categories)),
                subresources=frozenset(info.subresources) & {'status'},
            ))

    def _add_store(self, store: Store) -> None:
        self._stores[store.group, store.plural] = store
        for version in store.versions:
            self._served[store.group, version, store.plural] = store

    def find_store(self, resource: str) -> Store:
        """A store by ``plural``, ``plural.group``, ``group/version/plural`` or ``version/plural``."""
        if '/' in resource:
            *prefix, plural = resource.split('/')
            group = prefix[0] if len(prefix) == 2 else ''
            store = self._stores.get((group, plural))
        else:
            plural, _, group = resource.partition('.')
            store = self._stores.get((group, plural))
            if store is None and not group:
                store = next((s for s in self._stores.values() if s.plural == plural), None)
        if store is None:
            raise KeyError(f"Unknown resource: {resource!r}")
        return store

    def _crd_store(self, crd: Obj) -> Store:
        """Validate a CRD (422 as the real server would) and describe the resource it defines."""
        name = crd.get('metadata', {}).get('name', '')
        spec = crd.get('spec')
        problems: list[str] = []
        if not isinstance(spec, dict):
            raise ApiError(422, f'CustomResourceDefinition.apiextensions.k8s.io "{name}" is invalid: '
                                'spec: Required value')
        group: str = spec.get('group') or ''
        names, scope = spec.get('names') or {}, spec.get('scope')
        versions = spec.get('versions') or []
        if not group:
            problems.append('spec.group: Required value')
        if not names.get('plural') or not names.get('kind'):
            problems.append('spec.names: Required value: plural and kind are required')
        if scope not in ('Namespaced', 'Cluster'):
            problems.append(f'spec.scope: Unsupported value: {scope!r}')
        if not versions or not all(isinstance(v, dict) and v.get('name') for v in versions):
            problems.append('spec.versions: Required value')
        elif sum(bool(v.get('storage')) for v in versions) != 1:
            problems.append('spec.versions: Invalid value: must have exactly one version marked as storage version')
        if not problems and name != f"{names['plural']}.{group}":
            problems.append(f"metadata.name: Invalid value: {name!r}: must be spec.names.plural+\".\"+spec.group")
        if problems:
            raise ApiError(422, f'CustomResourceDefinition.apiextensions.k8s.io "{name}" is invalid: '
                                + ', '.join(problems), details={'name': name, 'group': 'apiextensions.k8s.io',
                                                                'kind': 'CustomResourceDefinition'})
        served = [v for v in versions if v.get('served', True)]
        storage = next(v['name'] for v in versions if v.get('storage'))
        return Store(
            group=group, plural=names['plural'], kind=names['kind'],
            singular=names.get('singular') or names['kind'].lower(),
            namespaced=scope == 'Namespaced',
            versions=sorted((v['name'] for v in served), key=version_priority),
            storage_version=storage,
            shortnames=tuple(names.get('shortNames') or ()), categories=tuple(names.get('categories') or ()),
            subresources=frozenset(sub for v in served for sub in (v.get('subresources') or {})) & {'status'},
            custom=True,
            printer_columns={v['name']: list(v.get('additionalPrinterColumns') or []) for v in served},
        )

    def _register_crd(self, crd: Obj) -> None:
        fresh = self._crd_store(crd)
        old = self._stores.get((fresh.group, fresh.plural))
        if old is not None:  # an updated CRD keeps its objects and watchers
            for version in old.versions:
                self._served.pop((old.group, version, old.plural), None)
            for field in ('kind', 'singular', 'namespaced', 'versions', 'storage_version', 'shortnames',
                          'categories', 'subresources', 'printer_columns'):
                setattr(old, field, getattr(fresh, field))
            fresh = old
        self._add_store(fresh)
        for version in fresh.versions:
            self.resources[kmock.resource(fresh.group, version, fresh.plural)] = kmock.ResourceInfo(
                namespaced=fresh.namespaced, kind=fresh.kind, singular=fresh.singular, verbs=fresh.verbs,
                shortnames=fresh.shortnames, categories=fresh.categories, subresources=fresh.subresources,
            )

    def _unregister_crd(self, crd: Obj) -> None:
        spec = crd.get('spec', {})
        store = self._stores.pop((spec.get('group', ''), spec.get('names', {}).get('plural', '')), None)
        if store is None:
            return
        for version in store.versions:
            self._served.pop((store.group, version, store.plural), None)
            if kmock.resource(store.group, version, store.plural) in self.resources:
                del self.resources[kmock.resource(store.group, version, store.plural)]
        for names in store.objects.values():
            for obj in names.values():
                if store.namespaced:
                    self._ns_counts[obj['metadata'].get('namespace', '')] -= 1
        store.objects.clear()
        store.closed = True  # the real server deletes the custom resources with their definition
        store.wake()

    # -- Thread-safe knobs --------------------------------------------------------------------

    def add_fault(self, fault: Fault) -> None:
        with self.lock:
            self.faults.append(fault)

    def _take_fault(self, request: ApiRequest) -> Fault | None:
        if not self.faults:  # a racy but safe fast path: appends are atomic
            return None
        with self.lock:
            for fault in self.faults:
                if fault.matches(request):
                    fault.hits += 1
                    if fault.times is not None and fault.hits >= fault.times:
                        self.faults.remove(fault)
                    return fault
        return None

    def _record(self, request: ApiRequest, status: int) -> None:
        request.recorded = True
        record = RequestRecord(
            method=request.method, verb=request.verb, group=request.group, version=request.version,
            resource=request.plural, subresource=request.subresource, namespace=request.namespace,
            name=request.name, status=status, path=request.path, params=request.params,
            user_agent=request.raw.headers.get('User-Agent', ''),
        )
        with self.lock:
            self.records.append(record)

    def close(self) -> None:
        """End all watch-streams (the HTTP server waits for open requests when stopping)."""
        self.closing = True
        for store in self._stores.values():
            store.wake()

    # -- HTTP entry point ---------------------------------------------------------------------

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        request = await ApiRequest.parse(raw_request)
        response: aiohttp.web.StreamResponse
        try:
            if self.latency > 0:
                await asyncio.sleep(self.latency)
            fault = self._take_fault(request)
            if fault is not None and fault.stall > 0:
                await asyncio.sleep(fault.stall)
            if fault is not None and fault.status:
                raise ApiError(fault.status, fault.message or f"Injected fault: HTTP {fault.status}")
            chaos = self.chaos.draw(request) if fault is None and self.chaos is not None else None
            if chaos == RESET:
                return await self._reset(request)
            if chaos is not None:
                raise ApiError(chaos, f"Injected fault (chaos): HTTP {chaos}")
            response = await self._serve(request)
        except ApiError as e:
            response = self._error(e)
        except Exception as e:
            logger.exception("The emulated API server failed on %s %s", request.method, request.path)
            response = self._error(ApiError(500, f"Internal error in the emulated API server: {e!r}"))
        if not request.recorded:
            self._record(request, response.status)
        return response

    async def _reset(self, request: ApiRequest) -> aiohttp.web.StreamResponse:
        """Close the connection without answering: the client sees a reset (recorded as status 0)."""
        self._record(request, RESET)
        transport = request.raw.transport
        if transport is not None:
            transport.abort()
        await asyncio.sleep(5)  # handler_cancellation: the lost connection cancels this at once
        return aiohttp.web.Response(status=500)  # (without it: written to a closed transport, i.e. nowhere)

    @staticmethod
    def _json(payload: Any, status: int = 200) -> aiohttp.web.Response:
        return aiohttp.web.Response(body=dumps(payload), status=status, content_type='application/json')

    @staticmethod
    def _raw_json(body: bytes, status: int = 200) -> aiohttp.web.Response:
        return aiohttp.web.Response(body=body, status=status, content_type='application/json')

    def _error(self, error: ApiError) -> aiohttp.web.Response:
        response = self._json(error.status(), status=error.code)
        if error.code == 429:
            response.headers['Retry-After'] = '1'
        return response

    async def _serve(self, request: ApiRequest) -> aiohttp.web.StreamResponse:
        if not request.is_resource:
            if request.method != 'GET':
                raise ApiError(405, f"the server does not allow this method on the requested resource: {request.path}")
            return self._discovery(request)

        store = self._served.get((request.group, request.version, request.plural))
        if store is None:
            raise ApiError(404, "the server could not find the requested resource")
        if request.namespace is not None and not store.namespaced:
            raise ApiError(404, "the server could not find the requested resource")
        if store.namespaced and request.namespace is None and request.verb in ('create', 'get', 'update',
                                                                               'patch', 'delete'):
            raise ApiError(404 if request.name else 405, "the server could not find the requested resource")
        if request.subresource is not None:
            if request.subresource not in store.subresources:
                raise ApiError(404, "the server could not find the requested resource")
            if request.verb not in STATUS_VERBS:
                raise ApiError(405, f"the server does not allow this method on the requested resource: {request.path}")
        elif request.verb not in store.verbs:
            raise ApiError(405, f"the server does not allow this method on the requested resource: {request.path}")

        dry_run = request.params.get('dryRun') == 'All'
        status_only = request.subresource == 'status'
        version = request.version
        match request.verb:
            case 'watch':
                return await self._watch(request, store)
            case 'list':
                return self._list_response(request, store)
            case 'get':
                obj = self._get(store, request.namespace, request.name or '')
                return self._object_response(request, store, obj)
            case 'create':
                obj = self.create_object(store, request.namespace, request.json(), dry_run=dry_run)
                return self._raw_json(store.encode(obj, version), status=201)
            case 'update':
                obj = self.update_object(store, request.namespace, request.name or '', request.json(),
                                         status_only=status_only, dry_run=dry_run)
                return self._raw_json(store.encode(obj, version))
            case 'patch':
                content_type = request.raw.headers.get('Content-Type', '')
                obj = self.patch_object(store, request.namespace, request.name or '', request.body, content_type,
                                        status_only=status_only, dry_run=dry_run)
                return self._raw_json(store.encode(obj, version))
            case 'delete':
                obj = self.delete_object(store, request.namespace, request.name or '', request.json() or {},
                                         dry_run=dry_run)
                return self._raw_json(store.encode(obj, version))
            case 'deletecollection':
                deleted = [self.delete_object(store, obj['metadata'].get('namespace'), obj['metadata']['name'],
                                              {}, dry_run=dry_run)
                           for obj in self._select(request, store)[0]]
                return self._json({'kind': f'{store.kind}List', 'apiVersion': store.api_version(version),
                                   'metadata': {'resourceVersion': str(self._rv)},
                                   'items': [store.present_item(obj, version) for obj in deleted]})
            case _:
                raise ApiError(405, f"the server does not allow this method on the requested resource: {request.path}")

    # -- Discovery ----------------------------------------------------------------------------

    def _discovery(self, request: ApiRequest) -> aiohttp.web.Response:
        path = request.path.rstrip('/') or '/'
        if path == '/version':
            return self._json({
                'major': '1', 'minor': '37', 'gitVersion': 'v1.37.0', 'gitCommit': 'emulated',
                'gitTreeState': 'clean', 'buildDate': '2026-01-01T00:00:00Z', 'goVersion': 'go1.25',
                'compiler': 'gc', 'platform': 'linux/amd64', 'emulationMajor': '1', 'emulationMinor': '37',
            })
        if path in ('/healthz', '/livez', '/readyz'):
            return aiohttp.web.Response(text='ok')
        if path == '/api':
            host = request.raw.host
            return self._json({'kind': 'APIVersions', 'versions': ['v1'],
                               'serverAddressByClientCIDRs': [{'clientCIDR': '0.0.0.0/0', 'serverAddress': host}]})
        if path == '/apis':
            return self._json({'kind': 'APIGroupList', 'apiVersion': 'v1', 'groups': list(self._groups().values())})
        if path == '/':
            paths = {'/api', '/api/v1', '/apis', '/version', '/healthz', '/livez', '/readyz'}
            paths |= {f'/apis/{g}' for g in self._groups()}
            paths |= {f'/apis/{s.group}/{v}' for s in self._stores.values() if s.group for v in s.versions}
            return self._json({'paths': sorted(paths)})
        parts = [part for part in path.split('/') if part]
        if parts[0] == 'apis' and len(parts) == 2 and parts[1] in self._groups():
            return self._json({'kind': 'APIGroup', 'apiVersion': 'v1', **self._groups()[parts[1]]})
        if (parts[0] == 'api' and len(parts) == 2) or (parts[0] == 'apis' and len(parts) == 3):
            group = '' if parts[0] == 'api' else parts[1]
            version = parts[-1]
            stores = [s for (g, v, _), s in self._served.items() if g == group and v == version]
            if stores:
                return self._json({
                    'kind': 'APIResourceList', 'apiVersion': 'v1',
                    'groupVersion': f'{group}/{version}' if group else version,
                    'resources': [entry for store in sorted(stores, key=lambda s: s.plural)
                                  for entry in self._resource_entries(store)],
                })
        raise ApiError(404, "the server could not find the requested resource")

    def _groups(self) -> dict[str, Obj]:
        versions: dict[str, set[str]] = collections.defaultdict(set)
        for store in self._stores.values():
            if store.group:
                versions[store.group].update(store.versions)
        groups = {}
        for group in sorted(versions):
            ordered = sorted(versions[group], key=version_priority)
            entries = [{'groupVersion': f'{group}/{v}', 'version': v} for v in ordered]
            groups[group] = {'name': group, 'versions': entries, 'preferredVersion': entries[0]}
        return groups

    @staticmethod
    def _resource_entries(store: Store) -> list[Obj]:
        entry: Obj = {'name': store.plural, 'singularName': store.singular, 'namespaced': store.namespaced,
                      'kind': store.kind, 'verbs': sorted(store.verbs)}
        if store.shortnames:
            entry['shortNames'] = list(store.shortnames)
        if store.categories:
            entry['categories'] = list(store.categories)
        entries = [entry]
        for subresource in sorted(store.subresources):
            entries.append({'name': f'{store.plural}/{subresource}', 'singularName': '',
                            'namespaced': store.namespaced, 'kind': store.kind, 'verbs': sorted(STATUS_VERBS)})
        return entries

    # -- Reading ------------------------------------------------------------------------------

    def _get(self, store: Store, namespace: str | None, name: str) -> Obj:
        obj = store.get(namespace, name)
        if obj is None:
            raise self._not_found(store, name)
        return obj

    @staticmethod
    def _not_found(store: Store, name: str) -> ApiError:
        return ApiError(404, f'{store.qualified} "{name}" not found',
                        details={'name': name, 'group': store.group, 'kind': store.plural})

    def _wants_table(self, request: ApiRequest) -> bool:
        return 'as=Table' in request.raw.headers.get('Accept', '')

    def _table(self, request: ApiRequest, store: Store, objs: list[Obj], rv: str) -> Obj:
        columns = store.printer_columns.get(request.version) if store.custom else None
        return tables.build_table(
            [store.present(obj, request.version) for obj in objs], kind=store.kind, printer_columns=columns,
            include_object=request.params.get('includeObject', 'Metadata'), resource_version=rv,
        )

    def _object_response(self, request: ApiRequest, store: Store, obj: Obj) -> aiohttp.web.Response:
        if self._wants_table(request):
            return self._json(self._table(request, store, [obj], obj['metadata'].get('resourceVersion', '')))
        return self._raw_json(store.encode(obj, request.version))

    def _selectors(self, request: ApiRequest) -> tuple[LabelSelector, FieldSelector]:
        try:
            return (LabelSelector.parse(request.params.get('labelSelector')),
                    FieldSelector.parse(request.params.get('fieldSelector')))
        except SelectorError as e:
            raise ApiError(400, f"unable to parse requirement: {e}") from e

    def _select(self, request: ApiRequest, store: Store) -> tuple[list[Obj], str, str]:
        """Matching objects (sorted, paginated), the list's resourceVersion, the continue token."""
        labels, fields = self._selectors(request)
        labels_match = labels.matches if labels else None
        fields_match = fields.matches if fields else None
        namespace = request.namespace
        list_rv = self._rv
        keys = store.keys(namespace)
        start = 0
        if token := request.params.get('continue'):
            try:
                list_rv, last_ns, last_name = json.loads(base64.urlsafe_b64decode(token))
            except ValueError as e:
                raise ApiError(400, f"invalid continue token: {e}") from e
            start = bisect.bisect_right(keys, (last_ns, last_name))
        elif (name := fields.value_of('metadata.name')) is not None:  # a cheap narrowing for kubectl --wait
            keys = [key for key in keys if key[1] == name]
        try:
            limit = int(request.params.get('limit') or 0)
        except ValueError as e:
            raise ApiError(400, f"invalid limit: {e}") from e

        items: list[Obj] = []
        token = ''
        for index in range(start, len(keys)):
            ns, name = keys[index]
            obj = store.objects[ns][name]
            if (labels_match is None or labels_match(obj)) and (fields_match is None or fields_match(obj)):
                if limit and len(items) == limit:
                    last = items[-1]['metadata']
                    position = [list_rv, last.get('namespace', '') if store.namespaced else '', last['name']]
                    token = base64.urlsafe_b64encode(json.dumps(position).encode()).decode()
                    break
                items.append(obj)
        return items, str(list_rv), token

    def _list_response(self, request: ApiRequest, store: Store) -> aiohttp.web.Response:
        items, rv, token = self._select(request, store)
        if self._wants_table(request):
            return self._json(self._table(request, store, items, rv))
        meta: Obj = {'resourceVersion': rv}
        if token:
            meta['continue'] = token
        head = dumps({'kind': f'{store.kind}List', 'apiVersion': store.api_version(request.version),
                       'metadata': meta})
        items_json = b','.join(store.encode_item(obj, request.version) for obj in items)
        return self._raw_json(head[:-1] + b',"items":[' + items_json + b']}')

    # -- Watching -----------------------------------------------------------------------------

    async def _watch(self, request: ApiRequest, store: Store) -> aiohttp.web.StreamResponse:
        labels, fields = self._selectors(request)
        namespace, name = request.namespace, request.name
        rv_param = request.params.get('resourceVersion', '')
        initial = request.flag('sendInitialEvents') or rv_param in ('', '0')
        bookmarks = request.flag('allowWatchBookmarks')
        as_table = self._wants_table(request)
        version = request.version
        try:
            cursor = self._rv if initial else int(rv_param)
            timeout = float(request.params.get('timeoutSeconds') or 1800)
        except ValueError as e:
            raise ApiError(400, f"invalid watch parameters: {e}") from e

        def matches(obj: Obj | None) -> bool:
            if obj is None:
                return False
            meta = obj['metadata']
            return ((namespace is None or meta.get('namespace') == namespace)
                    and (name is None or meta['name'] == name)
                    and (not labels or labels.matches(obj)) and (not fields or fields.matches(obj)))

        def line(event_type: str, obj: Obj) -> bytes:
            if event_type in ('BOOKMARK', 'ERROR'):
                encoded = dumps(obj)
            elif as_table:  # kubectl get -w: every event carries a one-row Table
                encoded = dumps(self._table(request, store, [obj], obj['metadata'].get('resourceVersion', '')))
            else:
                encoded = store.encode(obj, version)
            return b'{"type":"' + event_type.encode() + b'","object":' + encoded + b'}\n'

        def bookmark(initial_end: bool = False) -> bytes:
            meta: Obj = {'resourceVersion': str(self._rv)}
            if initial_end:
                meta['annotations'] = {'k8s.io/initial-events-end': 'true'}
            return line('BOOKMARK', {'kind': store.kind, 'apiVersion': store.api_version(), 'metadata': meta})

        # Take the snapshot before the first await, so that it is consistent with the cursor.
        snapshot = [obj for ns, n in store.keys(namespace) if matches(obj := store.objects[ns][n])] if initial else []
        expired = not initial and cursor < store.compacted_rv

        response = aiohttp.web.StreamResponse(headers={'Content-Type': 'application/json'})
        response.enable_chunked_encoding()
        await response.prepare(request.raw)
        self._record(request, 200)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        next_bookmark = loop.time() + self.bookmark_interval
        try:
            if expired:
                error = ApiError(410, f"too old resource version: {cursor} ({store.compacted_rv})", reason='Expired')
                await response.write(line('ERROR', error.status()))
                return response
            for obj in snapshot:
                await response.write(line('ADDED', obj))
            if request.flag('sendInitialEvents') and bookmarks:
                await response.write(bookmark(initial_end=True))

            while not self.closing and not store.closed:
                if cursor < store.compacted_rv:  # a slow consumer fell out of the kept history
                    error = ApiError(410, f"too old resource version: {cursor} ({store.compacted_rv})",
                                     reason='Expired')
                    await response.write(line('ERROR', error.status()))
                    return response
                changed = store.changed
                pending = store.events[bisect.bisect_right(store.event_rvs, cursor):]
                for event in pending:
                    cursor = event.rv
                    now, before = matches(event.obj), matches(event.prev)
                    if event.type == 'MODIFIED' and now != before:  # moved in or out of the selection
                        await response.write(line('ADDED' if now else 'DELETED', event.obj))
                    elif now:
                        await response.write(line(event.type, event.obj))
                if pending:
                    continue

                now_time = loop.time()
                if now_time >= deadline:
                    if bookmarks:  # as the real server does just before closing on timeout
                        await response.write(bookmark())
                    break
                if bookmarks and now_time >= next_bookmark:
                    await response.write(bookmark())
                    next_bookmark = now_time + self.bookmark_interval
                wake_at = min(deadline, next_bookmark) if bookmarks else deadline
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), timeout=max(wake_at - now_time, 0.001))
        except ConnectionError:  # the client has gone away
            return response
        await response.write_eof()
        return response

    # -- Writing ------------------------------------------------------------------------------

    def _commit(self, store: Store, obj: Obj, event_type: str, prev: Obj | None) -> Obj:
        self._rv += 1
        obj['metadata']['resourceVersion'] = str(self._rv)
        if event_type == 'DELETED':
            store.pop(obj)
        else:
            store.put(obj)
        store.record(WatchEvent(self._rv, event_type, obj, prev), self.history_limit)
        return obj

    def _check_namespace(self, namespace: str) -> None:
        ns = self._namespaces.get(None, namespace)
        if ns is None:
            raise ApiError(404, f'namespaces "{namespace}" not found',
                           details={'name': namespace, 'kind': 'namespaces'})
        if ns['metadata'].get('deletionTimestamp'):
            raise ApiError(403, f"unable to create new content in namespace {namespace} "
                                "because it is being terminated", reason='Forbidden')

    def _invalid(self, store: Store, name: str, problem: str) -> ApiError:
        return ApiError(422, f'{store.kind} "{name}" is invalid: {problem}',
                        details={'name': name, 'group': store.group, 'kind': store.kind})

    def _normalize(self, store: Store, obj: Obj, *, creating: bool) -> None:
        """What the real server's registry strategies do on writes to some builtins."""
        meta = obj['metadata']
        for key in ('finalizers', 'labels', 'annotations', 'ownerReferences'):
            if key in meta and not meta[key]:  # Go's omitempty: empty collections are not served
                del meta[key]
        if store.group == '' and store.plural == 'secrets':
            string_data = obj.pop('stringData', None)
            if isinstance(string_data, dict) and string_data:
                data = dict(obj.get('data') or {})
                for key, val in string_data.items():
                    data[key] = base64.b64encode(str(val).encode()).decode()
                obj['data'] = data
            obj['type'] = obj.get('type') or 'Opaque'
        elif store is self._namespaces:
            meta['labels'] = {**(meta.get('labels') or {}), 'kubernetes.io/metadata.name': meta['name']}
            if creating:
                obj['spec'] = {'finalizers': ['kubernetes'], **(obj.get('spec') or {})}
                obj['status'] = {'phase': 'Active'}
        elif store.group == '' and store.plural == 'pods' and creating:
            obj['status'] = {'phase': 'Pending'}
        elif store is self._crds:
            info = self._crd_store(obj)
            if creating:
                accepted = obj['spec']['names']
                obj['status'] = {
                    'acceptedNames': accepted, 'storedVersions': [info.storage_version],
                    'conditions': [
                        {'type': 'NamesAccepted', 'status': 'True', 'reason': 'NoConflicts',
                         'message': 'no conflicts found', 'lastTransitionTime': meta['creationTimestamp']},
                        {'type': 'Established', 'status': 'True', 'reason': 'InitialNamesAccepted',
                         'message': 'the initial names have been accepted',
                         'lastTransitionTime': meta['creationTimestamp']},
                    ],
                }

    def _validate(self, store: Store, obj: Obj) -> None:
        """What the real server's validation rejects, for the few rules the emulator keeps."""
        if store.group == '' and store.plural == 'events':
            # legacyValidateEvent (pkg/apis/core/validation/events.go), which every core/v1 Event write passes:
            # without eventTime, an involvedObject without a namespace only in "" or "default", otherwise in
            # its own namespace; with eventTime, an involvedObject without a namespace only in "default" or
            # "kube-system".
            namespace = obj['metadata'].get('namespace', '')
            involved = str((obj.get('involvedObject') or {}).get('namespace') or '')
            if not obj.get('eventTime'):
                wrong = namespace not in ('', 'default') if not involved else namespace != involved
            else:
                wrong = not involved and namespace not in ('default', 'kube-system')
            if wrong:
                raise self._invalid(store, obj['metadata']['name'], f'involvedObject.namespace: Invalid value: '
                                                                    f'"{involved}": does not match event.namespace')

    def create_object(self, store: Store, namespace: str | None, body: Any, *, dry_run: bool = False) -> Obj:
        if not isinstance(body, dict) or not isinstance(body.get('metadata', {}), dict):
            raise ApiError(400, "the request body must be an object with metadata")
        if body.get('kind') not in (None, '', store.kind):
            raise ApiError(400, f"the kind {body.get('kind')!r} does not match the resource {store.qualified}")
        obj = fresh(body)
        meta = obj['metadata']
        obj['apiVersion'], obj['kind'] = store.api_version(), store.kind

        if store.namespaced:
            given = meta.get('namespace')
            if given and namespace and given != namespace:
                raise ApiError(400, "the namespace of the provided object does not match the namespace "
                                    "sent on the request")
            namespace = namespace or given
            if not namespace:
                raise ApiError(400, "a namespace is required for a namespaced resource")
            self._check_namespace(namespace)
            meta['namespace'] = namespace
        else:
            meta.pop('namespace', None)
            namespace = None

        name = meta.get('name')
        if not name:
            prefix = meta.get('generateName')
            if not prefix:
                raise self._invalid(store, '', 'metadata.name: Required value: name or generateName is required')
            for _ in range(100):
                name = prefix + ''.join(random.choices('bcdfghjklmnpqrstvwxz2456789', k=5))  # noqa: S311
                if store.get(namespace, name) is None:
                    break
            meta['name'] = name
        if not isinstance(name, str) or not self._valid_name(store, name):
            raise self._invalid(store, str(name), f'metadata.name: Invalid value: {name!r}: '
                                                  'a lowercase RFC 1123 name must consist of lower case '
                                                  "alphanumeric characters, '-' or '.'")
        if store.get(namespace, name) is not None:
            raise ApiError(409, f'{store.qualified} "{name}" already exists', reason='AlreadyExists',
                           details={'name': name, 'group': store.group, 'kind': store.plural})

        for key in ('resourceVersion', 'deletionTimestamp', 'deletionGracePeriodSeconds'):
            meta.pop(key, None)
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=now_str(), generation=1)
        if 'status' in store.subresources:
            obj.pop('status', None)  # status is only written through the /status subresource
        if store.group == '' and store.plural == 'pods':
            self._admit_service_account(obj, namespace or '')
        self._normalize(store, obj, creating=True)
        self._validate(store, obj)
        if dry_run:
            return obj
        self._commit(store, obj, 'ADDED', None)
        if store.namespaced and namespace:
            self._ns_counts[namespace] += 1
        if store is self._crds:
            self._register_crd(obj)
        return obj

    def _admit_service_account(self, pod: Obj, namespace: str) -> None:
        """The one rule of the ServiceAccount admission plugin that the operator depends on: a pod created
        without ``imagePullSecrets`` gets its ServiceAccount's (``default`` unless it names one); a pod that
        lists any of its own keeps exactly those. Kubernetes: plugin/pkg/admission/serviceaccount/admission.go,
        ``Admit`` (``if len(pod.Spec.ImagePullSecrets) == 0 { ... serviceAccount.ImagePullSecrets ... }``),
        on create only. Unlike the plugin, a missing ServiceAccount is not refused (403) and no token volume
        is mounted."""
        spec = pod.get('spec')
        if not isinstance(spec, dict):
            return
        spec['serviceAccountName'] = spec.get('serviceAccountName') or spec.get('serviceAccount') or 'default'
        if spec.get('imagePullSecrets'):
            return
        account = self._stores['', 'serviceaccounts'].get(namespace, spec['serviceAccountName'])
        names = [ref.get('name') for ref in (account or {}).get('imagePullSecrets') or [] if isinstance(ref, dict)]
        if names:
            spec['imagePullSecrets'] = [{'name': name} for name in names]

    @staticmethod
    def _valid_name(store: Store, name: str) -> bool:
        if store.kind == 'Namespace':
            return bool(_DNS_LABEL.match(name))
        if store.custom or (store.group in ('', 'apps') and store.kind in _CHECKED_NAMES):
            return bool(_DNS_SUBDOMAIN.match(name))
        return '/' not in name and '%' not in name and name not in ('.', '..')

    def update_object(self, store: Store, namespace: str | None, name: str, body: Any, *,
               status_only: bool = False, dry_run: bool = False) -> Obj:
        old = self._get(store, namespace, name)
        if not isinstance(body, dict) or not isinstance(body.get('metadata', {}), dict):
            raise ApiError(400, "the request body must be an object with metadata")
        meta = body.get('metadata', {})
        if meta.get('name', name) != name:
            raise ApiError(400, f"the name of the object ({meta.get('name')}) does not match "
                                f"the name on the URL ({name})")
        if store.namespaced and meta.get('namespace', namespace) != namespace:
            raise ApiError(400, "the namespace of the provided object does not match "
                                "the namespace sent on the request")
        if body.get('kind') not in (None, '', store.kind):
            raise ApiError(400, f"the kind {body.get('kind')!r} does not match the resource {store.qualified}")
        return self._write(store, old, body, status_only=status_only, dry_run=dry_run)

    def patch_object(self, store: Store, namespace: str | None, name: str, body: bytes, content_type: str, *,
              status_only: bool = False, dry_run: bool = False) -> Obj:
        media = content_type.split(';')[0].strip().lower()
        try:
            patch = yaml.safe_load(body) if media == 'application/apply-patch+yaml' else json.loads(body or b'null')
        except (ValueError, yaml.YAMLError) as e:
            raise ApiError(400, f"the patch is not valid: {e}") from e
        old = store.get(namespace, name)
        if old is None and media == 'application/apply-patch+yaml' and not status_only:
            return self.create_object(store, namespace, patch, dry_run=dry_run)  # server-side apply creates
        if old is None:
            raise self._not_found(store, name)
        try:
            match media:
                case 'application/json-patch+json':
                    new = patches.json_patch(old, patch)
                case 'application/merge-patch+json':
                    new = patches.merge_patch(old, patch)
                case 'application/strategic-merge-patch+json' | 'application/apply-patch+yaml' if not store.custom:
                    new = patches.strategic_merge_patch(old, patch, kind=store.kind)
                case 'application/apply-patch+yaml':  # an approximation of server-side apply
                    new = patches.merge_patch(old, patch)
                case 'application/strategic-merge-patch+json':
                    raise ApiError(415, f"the body of the request was in an unknown format - accepted media "
                                        f"types include: application/json-patch+json, application/merge-patch+json, "
                                        f"application/apply-patch+yaml (strategic merge patch is not supported "
                                        f"for custom resources like {store.qualified})")
                case _:
                    raise ApiError(415, f"the body of the request was in an unknown format: {media!r}")
        except patches.PatchError as e:
            raise self._invalid(store, name, str(e)) from e
        except patches.PatchFormatError as e:
            raise ApiError(400, str(e)) from e
        if not isinstance(new, dict) or not isinstance(new.get('metadata', {}), dict):
            raise self._invalid(store, name, "the patched object is not an object with metadata")
        return self._write(store, old, new, status_only=status_only, dry_run=dry_run)

    def _write(self, store: Store, old: Obj, new: Obj, *, status_only: bool, dry_run: bool) -> Obj:
        old_meta = old['metadata']
        name = old_meta['name']
        new_rv = (new.get('metadata') or {}).get('resourceVersion')
        if new_rv and new_rv != old_meta['resourceVersion']:
            raise ApiError(409, f'Operation cannot be fulfilled on {store.qualified} "{name}": the object has '
                                'been modified; please apply your changes to the latest version and try again',
                           reason='Conflict', details={'name': name, 'group': store.group, 'kind': store.plural})

        if status_only:
            result = fresh(old)
            if 'status' in new:
                result['status'] = new['status']
            else:
                result.pop('status', None)
        else:
            result = fresh(new)
            meta = result['metadata']
            for key in SERVER_METADATA:
                if key in old_meta:
                    meta[key] = old_meta[key]
                else:
                    meta.pop(key, None)
            result['apiVersion'], result['kind'] = old['apiVersion'], old['kind']
            if 'status' in store.subresources:
                if 'status' in old:
                    result['status'] = old['status']
                else:
                    result.pop('status', None)
            added_finalizers = set(meta.get('finalizers') or []) - set(old_meta.get('finalizers') or [])
            if old_meta.get('deletionTimestamp') and added_finalizers:
                raise self._invalid(store, name, 'metadata.finalizers: Forbidden: no new finalizers can be added '
                                                 'if the object is being deleted')
            self._normalize(store, result, creating=False)
            self._validate(store, result)

        if result == old:  # a no-op write changes nothing, not even the resourceVersion
            return old
        if without(result, 'metadata', 'status') != without(old, 'metadata', 'status'):
            result['metadata']['generation'] = int(old_meta.get('generation') or 0) + 1
        if dry_run:
            return result
        if self._releasable(store, result):  # the last finalizer is gone: deleted, not modified
            return self._remove(store, result)
        self._commit(store, result, 'MODIFIED', old)
        if store is self._crds:
            self._register_crd(result)
        return result

    def _releasable(self, store: Store, obj: Obj) -> bool:
        """Whether an object's deletion waits no more for finalizers (nor for content, for namespaces)."""
        meta = obj['metadata']
        if not meta.get('deletionTimestamp') or meta.get('finalizers'):
            return False
        return store is not self._namespaces or self._ns_counts[meta['name']] <= 0

    def delete_object(self, store: Store, namespace: str | None, name: str, options: Any, *,
               dry_run: bool = False) -> Obj:
        old = self._get(store, namespace, name)
        preconditions = (options.get('preconditions') if isinstance(options, dict) else None) or {}
        for key in ('uid', 'resourceVersion'):
            if preconditions.get(key) and preconditions[key] != old['metadata'].get(key):
                raise ApiError(409, f'Operation cannot be fulfilled on {store.qualified} "{name}": Precondition '
                                    f'failed: {key}: {preconditions[key]}, ObjectMeta.{key}: '
                                    f'{old["metadata"].get(key)}', reason='Conflict',
                               details={'name': name, 'group': store.group, 'kind': store.plural})
        if dry_run:
            return old
        return self._delete(store, old)

    def _delete(self, store: Store, old: Obj) -> Obj:
        meta = old['metadata']
        if meta.get('deletionTimestamp'):
            return old
        # Pods are deleted gracefully: a real server first writes the deletionTimestamp (a MODIFIED event that
        # watchers see), then removes a pod that no kubelet runs and no finalizer holds (a DELETED event).
        graceful = store.group == '' and store.plural == 'pods'
        if not meta.get('finalizers') and store is not self._namespaces and not graceful:
            return self._remove(store, old)

        marked = fresh(old)
        marked['metadata'].update(deletionTimestamp=now_str(), deletionGracePeriodSeconds=0)
        if store is self._namespaces:
            marked['status'] = {**(old.get('status') or {}), 'phase': 'Terminating'}
        self._commit(store, marked, 'MODIFIED', old)
        if graceful and not meta.get('finalizers'):
            return self._remove(store, marked)
        if store is self._namespaces:  # the namespace controller's job, done synchronously
            for other in list(self._stores.values()):
                if other.namespaced:
                    for obj in list(other.objects.get(meta['name'], {}).values()):
                        self._delete(other, obj)
            current = self._namespaces.get(None, meta['name'])
            if current is not None and self._releasable(store, current):
                self._remove(store, current)
        return marked

    def _remove(self, store: Store, obj: Obj) -> Obj:
        gone = self._commit(store, fresh(obj), 'DELETED', obj)
        if store is self._crds:
            self._unregister_crd(gone)
        if store.namespaced:
            namespace = gone['metadata'].get('namespace', '')
            self._ns_counts[namespace] -= 1
            ns = self._namespaces.get(None, namespace)
            if ns is not None and self._releasable(self._namespaces, ns):
                self._remove(self._namespaces, ns)
        return gone

    # -- Helpers for the cluster's synchronous API --------------------------------------------

    def apply(self, body: Obj) -> Obj:
        """Create an object from a manifest, or replace the existing one (used by ``install_crd``)."""
        api_version, kind = body.get('apiVersion', ''), body.get('kind', '')
        group, _, version = api_version.rpartition('/')
        store = next((s for (g, v, _), s in self._served.items() if g == group and v == version and s.kind == kind),
                     None)
        if store is None:
            raise ApiError(404, f"no resource of kind {kind!r} is served in {api_version!r}")
        meta = body.get('metadata') or {}
        existing = store.get(meta.get('namespace'), meta.get('name', ''))
        if existing is None:
            return self.create_object(store, meta.get('namespace'), patches.clone(body))
        replacement = patches.clone(body)
        replacement.get('metadata', {}).pop('resourceVersion', None)  # replace unconditionally
        return self._write(store, existing, replacement, status_only=False, dry_run=False)

    def objects_of(self, resource: str, namespace: str | None = None) -> Iterator[Obj]:
        store = self.find_store(resource)
        for ns, name in store.keys(namespace):
            yield store.objects[ns][name]

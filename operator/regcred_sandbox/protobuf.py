"""
Just enough of the Kubernetes protobuf encoding to read what ``kubectl create <kind>`` sends.

kubectl's typed commands (``create namespace|secret|serviceaccount|configmap``) send protobuf
and cannot be told otherwise; everything else (``apply``, ``create -f``, ``label``, kopf, the
Python client) speaks JSON. Only the request bodies of these few kinds are decoded; other kinds
answer 415. Field numbers are those of k8s.io/api/core/v1/generated.proto.
"""

import base64
import datetime
from typing import Any

MAGIC = b'k8s\x00'

# A schema maps field numbers to (json name, type, repeated); a type is a scalar name or a schema.
Schema = dict[int, tuple[str, Any, bool]]

_TIME: Schema = {1: ('seconds', 'int', False), 2: ('nanos', 'int', False)}
_OWNER_REFERENCE: Schema = {
    1: ('kind', 'string', False), 3: ('name', 'string', False), 4: ('uid', 'string', False),
    5: ('apiVersion', 'string', False), 6: ('controller', 'bool', False), 7: ('blockOwnerDeletion', 'bool', False),
}
_OBJECT_META: Schema = {
    1: ('name', 'string', False), 2: ('generateName', 'string', False), 3: ('namespace', 'string', False),
    5: ('uid', 'string', False), 6: ('resourceVersion', 'string', False), 7: ('generation', 'int', False),
    8: ('creationTimestamp', _TIME, False), 11: ('labels', 'map', False), 12: ('annotations', 'map', False),
    13: ('ownerReferences', _OWNER_REFERENCE, True), 14: ('finalizers', 'string', True),
}
_OBJECT_REFERENCE: Schema = {
    1: ('kind', 'string', False), 2: ('namespace', 'string', False), 3: ('name', 'string', False),
    4: ('uid', 'string', False), 5: ('apiVersion', 'string', False), 6: ('resourceVersion', 'string', False),
    7: ('fieldPath', 'string', False),
}
KINDS: dict[tuple[str, str], Schema] = {
    ('v1', 'Namespace'): {
        1: ('metadata', _OBJECT_META, False), 2: ('spec', {1: ('finalizers', 'string', True)}, False),
    },
    ('v1', 'Secret'): {
        1: ('metadata', _OBJECT_META, False), 2: ('data', 'map-bytes', False), 3: ('type', 'string', False),
        4: ('stringData', 'map', False), 5: ('immutable', 'bool', False),
    },
    ('v1', 'ConfigMap'): {
        1: ('metadata', _OBJECT_META, False), 2: ('data', 'map', False), 3: ('binaryData', 'map-bytes', False),
        4: ('immutable', 'bool', False),
    },
    ('v1', 'ServiceAccount'): {
        1: ('metadata', _OBJECT_META, False), 2: ('secrets', _OBJECT_REFERENCE, True),
        3: ('imagePullSecrets', {1: ('name', 'string', False)}, True),
        4: ('automountServiceAccountToken', 'bool', False),
    },
}


class UnsupportedKind(ValueError):
    pass


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result, shift = 0, 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes) -> list[tuple[int, int | bytes]]:
    fields: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos:pos + length], pos + length
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value, pos = int.from_bytes(data[pos:pos + size], 'little'), pos + size
        else:
            raise ValueError(f"Unsupported protobuf wire type: {wire}")
        fields.append((number, value))
    return fields


def _message(data: bytes, schema: Schema) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for number, value in _fields(data):
        if number not in schema:
            continue  # fields the emulator has no use for: status, managedFields, ...
        name, kind, repeated = schema[number]
        if kind in ('map', 'map-bytes'):
            assert isinstance(value, bytes)
            entry = dict(_fields(value))
            key, val = entry.get(1, b''), entry.get(2, b'')
            assert isinstance(key, bytes)
            assert isinstance(val, bytes)
            text = base64.b64encode(val).decode() if kind == 'map-bytes' else val.decode()
            result.setdefault(name, {})[key.decode()] = text
            continue
        if kind == 'string':
            assert isinstance(value, bytes)
            decoded: Any = value.decode()
            if not decoded and not repeated:
                continue  # proto2 sends unset strings as ""; Go's JSON would omit them
        elif kind == 'int':
            decoded = value
        elif kind == 'bool':
            decoded = bool(value)
        elif kind is _TIME:
            assert isinstance(value, bytes)
            seconds = _message(value, _TIME).get('seconds', 0)
            decoded = datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime('%Y-%m-%dT%H:%M:%SZ')
        else:
            assert isinstance(value, bytes)
            decoded = _message(value, kind)
        if repeated:
            result.setdefault(name, []).append(decoded)
        else:
            result[name] = decoded
    return result


def decode(body: bytes) -> dict[str, Any]:
    """A JSON-like object from a ``k8s\\x00``-enveloped protobuf body (runtime.Unknown)."""
    if not body.startswith(MAGIC):
        raise ValueError("Not a Kubernetes protobuf body")
    envelope = dict(_fields(body[len(MAGIC):]))
    type_bytes = envelope.get(1, b'')
    type_meta = dict(_fields(type_bytes)) if isinstance(type_bytes, bytes) else {}
    api_version, kind, raw = type_meta.get(1, b''), type_meta.get(2, b''), envelope.get(2, b'')
    assert isinstance(api_version, bytes)
    assert isinstance(kind, bytes)
    assert isinstance(raw, bytes)
    schema = KINDS.get((api_version.decode(), kind.decode()))
    if schema is None:
        raise UnsupportedKind(f"{api_version.decode()}/{kind.decode()}")
    return {'apiVersion': api_version.decode(), 'kind': kind.decode(), **_message(raw, schema)}

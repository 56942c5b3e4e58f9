"""
An emulated Kubernetes API server for trying and testing the operator without a cluster.

It serves kopf, the official ``kubernetes`` client and ``kubectl`` over real HTTP with a real
server's semantics: resourceVersions and 409 conflicts, watches from a resourceVersion (410 when
too old), label and field selectors, the status subresource, strategic merge / merge / JSON
patches, finalizers, namespace deletion, CRDs, Status errors, server-side Tables for kubectl.
Like a real server, the items of a builtin's LIST carry no ``kind`` or ``apiVersion`` (only the
List does; a custom resource's items keep theirs), and an Event's namespace is validated against
its ``involvedObject`` (legacyValidateEvent in pkg/apis/core/validation/events.go).

It is not a cluster. Known differences from a real API server:

- no controllers (no pods behind deployments, no ServiceAccount token secrets, no garbage
  collection by ownerReferences, no ``default`` ServiceAccount in a new namespace), no
  authentication or RBAC;
- of admission, only the ServiceAccount plugin's pull-secret rule: a pod created without
  ``imagePullSecrets`` gets its ServiceAccount's (``serviceAccountName`` defaults to ``default``);
  unlike the plugin, a missing ServiceAccount is not refused and no token volume is mounted;
  no other plugin (NamespaceLifecycle's 403 in a terminating namespace is emulated);
- CRD schemas are not validated, defaulted or pruned; no conversion between versions
  (all served versions share one storage, only ``apiVersion`` differs);
- namespace deletion runs synchronously (Terminating only while finalizers hold content), so
  a watcher never sees a namespace Terminating with its content still there, as it does on a
  real server until the namespace controller has removed it; deleting a CRD drops its objects
  at once;
- a deleted pod is marked (``deletionTimestamp``, a MODIFIED event) and then removed, as a real
  server does with a pod that no kubelet runs; there is no grace period (no kubelet);
- server-side apply is a merge (no field managers); no OpenAPI (``kubectl explain`` and
  kubectl's client-side validation need ``--validate=false``); protobuf request bodies only
  for what ``kubectl create namespace|secret|serviceaccount|configmap`` sends;
- every object gets ``metadata.generation``; any dotted path works in field selectors.
"""

from regcred_sandbox.cluster import EmulatedCluster
from regcred_sandbox.protocol import RESET, ApiError, Chaos, Fault, RequestRecord
from regcred_sandbox.server import ApiServer

__all__ = ['RESET', 'ApiError', 'ApiServer', 'Chaos', 'EmulatedCluster', 'Fault', 'RequestRecord']

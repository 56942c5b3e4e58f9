"""
An emulated Kubernetes API server for trying and testing the operator without a cluster.

It serves kopf, the official ``kubernetes`` client and ``kubectl`` over real HTTP; it is not a
cluster: there are no controllers, no admission webhooks, no schema validation or pruning.
"""

from regcred.sandbox.cluster import EmulatedCluster
from regcred.sandbox.protocol import ApiError, Fault, RequestRecord
from regcred.sandbox.server import ApiServer

__all__ = ['ApiError', 'ApiServer', 'EmulatedCluster', 'Fault', 'RequestRecord']

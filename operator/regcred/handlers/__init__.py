"""kopf wiring only: thin, typed handlers, one domain call each. Run with `kopf run -m regcred.handlers -A`."""

from regcred.handlers import cluster, credentials, lifecycle, pods

__all__ = ["cluster", "credentials", "lifecycle", "pods"]

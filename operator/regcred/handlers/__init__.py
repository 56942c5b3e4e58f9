"""kopf wiring only: thin, typed handlers, one domain call each. Run with `kopf run -m regcred.handlers -A`."""

from regcred.config import Settings
from regcred.handlers import cluster, credentials, lifecycle

__all__ = ["cluster", "credentials", "lifecycle"]

# Without remediation the operator does not watch pods at all (and its RBAC has no pod rules).
if Settings.from_env().remediation_enabled:
    from regcred.handlers import pods

    __all__ += ["pods"]

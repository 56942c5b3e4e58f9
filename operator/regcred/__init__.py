"""regcred-operator: fresh image-pull credentials in every namespace that needs them."""

GROUP = "regcred.dev"
VERSION = "v1alpha1"
PLURAL = "registrycredentials"
KIND = "RegistryCredential"

# Labels on everything the operator writes: one to find it all, one to find one credential's objects.
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "regcred-operator"
CREDENTIAL_LABEL = f"{GROUP}/credential"

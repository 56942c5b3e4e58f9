{{/*
RBAC rules, one place for both modes. Every rule says who needs it: `# Framework:` (kopf itself) or
`# Application:` (the operator's own calls), and why; verbs are the minimum, and each rule is proven
by tests/deploy/test_rbac.py against the requests the operator really makes. No wildcards.
*/}}

{{/* Rules on cluster-scoped resources: in the ClusterRole in both modes. */}}
{{- define "regcred-operator.clusterScopedRules" -}}
# Framework: kopf serves RegistryCredentials: it lists and watches them, and patches its finalizer
# (regcred.dev/cleanup) and its bookkeeping annotations onto them.
- apiGroups: [regcred.dev]
  resources: [registrycredentials]
  verbs: [list, watch, patch]
# Application: the operator writes each credential's status (conditions, counts, expiry).
- apiGroups: [regcred.dev]
  resources: [registrycredentials/status]
  verbs: [patch]
{{- if .Values.remediation.enabled }}
# Application: remediation reads a credential's current status to append to its remediation history.
- apiGroups: [regcred.dev]
  resources: [registrycredentials]
  verbs: [get]
{{- end }}
# Application: namespaces are selected by name and labels; new and relabelled ones are watched.
- apiGroups: [""]
  resources: [namespaces]
  verbs: [list, watch]
{{- if .Values.remediation.enabled }}
# Application: remediation reads a namespace's opt-out annotation (regcred.dev/remediate).
- apiGroups: [""]
  resources: [namespaces]
  verbs: [get]
{{- end }}
# Framework: kopf watches CustomResourceDefinitions to notice served resources appearing and going.
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
{{- end }}

{{/* Rules on the served namespaces' objects: in the ClusterRole (cluster-wide mode) or a Role per watched namespace. */}}
{{- define "regcred-operator.namespacedRules" -}}
# Application: the pull Secrets: listed by label, watched (kopf, label-selected) to restore edited or
# deleted ones, read, created, patched and deleted (when a namespace leaves the selection, on cleanup).
# The Secrets that RegistryCredentials reference are read, and each is listed and watched by name
# (fieldSelector metadata.name), so that a rotation applies within seconds.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, watch, create, patch, delete]
# Application: ServiceAccounts get the pull secret in imagePullSecrets (a merge patch guarded by the
# resourceVersion: the list has no merge key); new ones are watched.
- apiGroups: [""]
  resources: [serviceaccounts]
  verbs: [get, list, watch, patch]
# Application: Events on credentials and on the workloads that were remediated or explained.
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- if .Values.remediation.enabled }}
# Application: Pending pods are watched (server-side field selector status.phase=Pending) and listed
# after a refresh; stuck pods of a StatefulSet (OrderedReady), a Job or a bare ReplicaSet are deleted.
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch, delete]
# Application: a stuck pod's own Failed Events say why its pull failed (before Kubernetes 1.32 the
# back-off status does not) and when: one bounded LIST per pod, selected server-side by the pod.
- apiGroups: [""]
  resources: [events]
  verbs: [list]
# Application: remediation reads the stuck pod's workload and rolls it (a pod-template annotation, like
# `kubectl rollout restart`) or records on it that its pods were deleted.
- apiGroups: [apps]
  resources: [deployments, daemonsets, statefulsets, replicasets]
  verbs: [get, patch]
# Application: a Job's pod template is immutable: its stuck pods are deleted and the Job records it.
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, patch]
{{- end }}
{{- end }}

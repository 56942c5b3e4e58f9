{{/* The chart's name. */}}
{{- define "regcred-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The objects' name: <release>-<chart>, or the release name when it already contains the chart's name. */}}
{{- define "regcred-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The chart label's value. */}}
{{- define "regcred-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The pod selector: stable across upgrades. */}}
{{- define "regcred-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "regcred-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels on every object the chart creates: app.kubernetes.io/* and helm.sh/chart only. */}}
{{- define "regcred-operator.labels" -}}
helm.sh/chart: {{ include "regcred-operator.chart" . }}
{{ include "regcred-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: regcred-operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The operator's ServiceAccount. */}}
{{- define "regcred-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "regcred-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image reference: repository@digest, or repository:tag (tag defaults to appVersion). */}}
{{- define "regcred-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The RBAC subject: the operator's ServiceAccount. */}}
{{- define "regcred-operator.subject" -}}
- kind: ServiceAccount
  name: {{ include "regcred-operator.serviceAccountName" . }}
  namespace: {{ .Release.Namespace }}
{{- end }}

{{/*
The namespaces in which namespaces mode needs a Role, as a JSON object
{namespace: {"watched": bool, "events": bool, "sources": bool, "store": bool, "argocd": bool}}:
the watched ones, the events namespace, the namespaces of the credentials' source Secrets, the
release namespace (the operator's token store) and Argo CD's namespaces (repository credential templates).
*/}}
{{- define "regcred-operator.roleNamespaces" -}}
{{- $out := dict }}
{{- range .Values.watchNamespaces }}
{{- $_ := set $out . (dict "watched" true "events" false "sources" false "store" false "argocd" false) }}
{{- end }}
{{- $store := get $out .Release.Namespace | default (dict "watched" false "events" false "sources" false "store" false "argocd" false) }}
{{- $_ := set $store "store" true }}
{{- $_ := set $out .Release.Namespace $store }}
{{- $events := .Values.settings.eventsNamespace }}
{{- $entry := get $out $events | default (dict "watched" false "events" false "sources" false "store" false "argocd" false) }}
{{- $_ := set $entry "events" true }}
{{- $_ := set $out $events $entry }}
{{- $sources := .Values.rbac.sourceSecretNamespaces | default (list .Release.Namespace) }}
{{- range $sources }}
{{- $entry := get $out . | default (dict "watched" false "events" false "sources" false "store" false "argocd" false) }}
{{- $_ := set $entry "sources" true }}
{{- $_ := set $out . $entry }}
{{- end }}
{{- range .Values.rbac.argocdNamespaces }}
{{- $entry := get $out . | default (dict "watched" false "events" false "sources" false "store" false "argocd" false) }}
{{- $_ := set $entry "argocd" true }}
{{- $_ := set $out . $entry }}
{{- end }}
{{- toJson $out }}
{{- end }}

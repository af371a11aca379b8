{{/* The chart's name. */}}
{{- define "walship.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The full name: the release name, with the chart name unless the release name has it. */}}
{{- define "walship.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "walship.selectorLabels" -}}
app.kubernetes.io/name: {{ include "walship.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "walship.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "walship.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "walship.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "walship.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "walship.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* A runbook URL for an alert. */}}
{{- define "walship.runbook" -}}
{{- printf "%s/%s.md" (trimSuffix "/" .root.Values.monitoring.runbookBaseUrl) .alert -}}
{{- end -}}

{{/*
The namespaces of the namespaced mode, as a JSON list: operator.watchNamespaces plus
operator.watchNamespace, de-duplicated. Empty = cluster mode (every namespace).
*/}}
{{- define "walship.watchNamespaces" -}}
{{- $list := concat (.Values.operator.watchNamespaces | default list) (list) -}}
{{- if .Values.operator.watchNamespace -}}
{{- $list = append $list .Values.operator.watchNamespace -}}
{{- end -}}
{{- toJson (uniq $list) -}}
{{- end -}}

{{/*
A number as PromQL and people read it: 10485760, not 1.048576e+07 (how a YAML integer of a million or
more would print, since values are float64); a fraction stays as it is (0.5).
*/}}
{{- define "walship.number" -}}
{{- if eq (float64 .) (floor .) -}}{{- int64 . -}}{{- else -}}{{- . -}}{{- end -}}
{{- end -}}

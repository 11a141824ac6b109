{{/* Chart name, truncated to the 63 characters Kubernetes names allow. */}}
{{- define "entroq-redis.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release name + chart name, unless the release name already contains it. */}}
{{- define "entroq-redis.fullname" -}}
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

{{- define "entroq-redis.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "entroq-redis.labels" -}}
helm.sh/chart: {{ include "entroq-redis.chart" . }}
{{ include "entroq-redis.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "entroq-redis.selectorLabels" -}}
app.kubernetes.io/name: {{ include "entroq-redis.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "entroq-redis.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "entroq-redis.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "entroq-redis.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The bundled Valkey: name, labels and in-cluster URL. */}}
{{- define "entroq-redis.valkey.fullname" -}}
{{- printf "%s-valkey" (include "entroq-redis.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "entroq-redis.valkey.selectorLabels" -}}
app.kubernetes.io/name: {{ include "entroq-redis.name" . }}-valkey
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "entroq-redis.valkey.labels" -}}
helm.sh/chart: {{ include "entroq-redis.chart" . }}
{{ include "entroq-redis.valkey.selectorLabels" . }}
app.kubernetes.io/component: store
app.kubernetes.io/version: {{ .Values.valkey.image.tag | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Name and key of the Secret that holds the store URL. */}}
{{- define "entroq-redis.redisSecretName" -}}
{{- if .Values.redis.existingSecret }}
{{- .Values.redis.existingSecret }}
{{- else }}
{{- printf "%s-redis" (include "entroq-redis.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "entroq-redis.redisSecretKey" -}}
{{- if .Values.redis.existingSecret }}
{{- .Values.redis.existingSecretKey }}
{{- else }}
{{- "redis-url" }}
{{- end }}
{{- end }}

{{/* Exactly one store: the bundled Valkey, or an external one. Fails the render otherwise. */}}
{{- define "entroq-redis.validateStore" -}}
{{- $external := or .Values.redis.url .Values.redis.existingSecret }}
{{- if and .Values.valkey.enabled $external }}
{{- fail "Choose one store: set valkey.enabled=false to use redis.url / redis.existingSecret, or leave those empty to use the bundled Valkey." }}
{{- end }}
{{- if and (not .Values.valkey.enabled) (not $external) }}
{{- fail "No store configured: set redis.url (or redis.existingSecret) to an external Redis/Valkey, or valkey.enabled=true for the bundled one." }}
{{- end }}
{{- if and .Values.redis.url .Values.redis.existingSecret }}
{{- fail "Set only one of redis.url and redis.existingSecret." }}
{{- end }}
{{- if and (eq .Values.authz.mode "rego") (not .Values.authz.rego.policy) (not .Values.authz.rego.existingConfigMap) }}
{{- fail "authz.mode=rego needs authz.rego.policy (Rego source) or authz.rego.existingConfigMap." }}
{{- end }}
{{- $dataSources := 0 }}
{{- range (list (and (not .Values.authz.rego.existingConfigMap) .Values.authz.rego.policyData) (and .Values.authz.rego.existingConfigMap .Values.authz.rego.existingConfigMapDataKey) .Values.authz.rego.existingDataSecret) }}
{{- if . }}{{ $dataSources = add1 $dataSources }}{{ end }}
{{- end }}
{{- if gt $dataSources 1 }}
{{- fail "Give the policy data one way: authz.rego.policyData, authz.rego.existingConfigMapDataKey or authz.rego.existingDataSecret." }}
{{- end }}
{{- end }}

{{/* The Secret holding the policy data: the user's (authz.rego.existingDataSecret) or the chart's. */}}
{{- define "entroq-redis.authzDataSecretName" -}}
{{- if .Values.authz.rego.existingDataSecret }}
{{- .Values.authz.rego.existingDataSecret }}
{{- else }}
{{- printf "%s-authz-data" (include "entroq-redis.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "entroq-redis.authzConfigMapName" -}}
{{- if .Values.authz.rego.existingConfigMap }}
{{- .Values.authz.rego.existingConfigMap }}
{{- else }}
{{- printf "%s-authz" (include "entroq-redis.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
